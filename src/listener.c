/*
 * listener.c - getting connections: inetd-style fds 0/1, systemd socket
 * activation ($LISTEN_FDS), or our own bound sockets, with a fork per
 * connection.
 *
 * Owns the listening sockets and the children. Guarantees: at most
 * max_connections children at once (the rest wait in the kernel's
 * backlog); every child is reaped; a child never returns here (it
 * _exit()s after serving); SIGTERM/SIGINT stop the accept loop. The only
 * per-connection cost in the parent is accept + fork.
 */
#include "listener.h"
#include "conn.h"
#include "error.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A burst of connects waits here, not in SYN retries (the kernel caps it
 * at net.core.somaxconn). */
#define BACKLOG SOMAXCONN

gboolean
pb_listener_parse(const char *text, char **addr, guint *port, GError **error)
{
	const char *colon;
	g_autofree char *host = NULL;
	guint64 p = 0;
	struct in6_addr a6;
	struct in_addr a4;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':')
			goto bad;
		host = g_strndup(text + 1, (gsize)(close - text - 1));
		colon = close + 1;
		if (inet_pton(AF_INET6, host, &a6) != 1)
			goto bad;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			goto bad;
		host = g_strndup(text, (gsize)(colon - text));
		if (strcmp(host, "*") == 0) {
			g_free(host);
			host = g_strdup("0.0.0.0");
		}
		if (inet_pton(AF_INET, host, &a4) != 1)
			goto bad;
	}
	if (!g_ascii_string_to_unsigned(colon + 1, 10, 1, 65535, &p, NULL))
		goto bad;
	*addr = g_steal_pointer(&host);
	*port = (guint)p;
	return TRUE;
bad:
	g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		    "bad listen address '%s' (want ADDR:PORT or [IPv6]:PORT)",
		    text);
	return FALSE;
}

/* Text of a socket address; IPv4-mapped IPv6 shown as IPv4. */
static void
addr_text(const struct sockaddr_storage *ss, char *buf, gsize size,
	  guint *port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

	buf[0] = '\0';
	*port = 0;
	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)size);
		*port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], buf,
				  (socklen_t)size);
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, buf,
				  (socklen_t)size);
		*port = ntohs(sin6->sin6_port);
	}
}

static void
fill_peer(int fd, PbPeer *peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(peer, 0, sizeof(*peer));
	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
		addr_text(&ss, peer->ip, sizeof(peer->ip), &peer->port);
	len = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		addr_text(&ss, peer->local_ip, sizeof(peer->local_ip),
			  &peer->local_port);
}

static int
bind_one(const char *text, GError **error)
{
	g_autofree char *host = NULL;
	guint port;
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;
	g_auto(PbFd) fd = -1;

	if (!pb_listener_parse(text, &host, &port, error))
		return -1;
	/* pb_listener_parse let only numeric addresses through */
	(void)pb_sockaddr_numeric(host, port, &ss, &len);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    listen(fd, BACKLOG) < 0) {
		pb_throw_errno(error, "listen on %s", text);
		return -1;
	}
	return g_steal_fd(&fd);
}

/* The sockets systemd passed ($LISTEN_PID must be us). */
static GArray *
inherited_sockets(void)
{
	const char *fds = g_getenv("LISTEN_FDS");
	const char *pid = g_getenv("LISTEN_PID");
	guint64 n = 0, p = 0;
	GArray *out;

	if (fds == NULL ||
	    !g_ascii_string_to_unsigned(fds, 10, 1, 64, &n, NULL))
		return NULL;
	if (pid != NULL && (!g_ascii_string_to_unsigned(pid, 10, 1, G_MAXINT,
							&p, NULL) ||
			    (pid_t)p != getpid()))
		return NULL;
	out = g_array_new(FALSE, FALSE, sizeof(int));
	for (int fd = 3; fd < 3 + (int)n; fd++)
		g_array_append_val(out, fd);
	g_unsetenv("LISTEN_FDS");
	g_unsetenv("LISTEN_PID");
	g_unsetenv("LISTEN_FDNAMES");
	return out;
}

typedef struct {
	GArray *fds; /* listening sockets */
	int sigfd;
	guint children;
	guint max;
	PbServeFunc serve;
	void *ctx;
} Acceptor;

static void
reap(Acceptor *a)
{
	int status;

	while (waitpid(-1, &status, WNOHANG) > 0)
		if (a->children > 0)
			a->children--;
}

/* Accepts one connection and forks its child; FALSE when none was
 * waiting (or it could not be served). */
static gboolean
spawn(Acceptor *a, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	pid_t pid;
	PbPeer peer;
	sigset_t none;

	if (fd < 0)
		return FALSE; /* EAGAIN, or the client is gone already */
	pid = fork();
	if (pid < 0) {
		pb_log_error(NULL, "fork: %s", g_strerror(errno));
		close(fd);
		return FALSE;
	}
	if (pid > 0) {
		a->children++;
		close(fd);
		return TRUE;
	}
	/* the child: no listeners, default signals, serve, exit */
	for (guint i = 0; i < a->fds->len; i++)
		close(g_array_index(a->fds, int, i));
	close(a->sigfd);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	fill_peer(fd, &peer);
	a->serve(a->ctx, fd, fd, &peer);
	_exit(0);
}

/* Returns FALSE on SIGTERM/SIGINT. */
static gboolean
handle_signals(Acceptor *a)
{
	struct signalfd_siginfo si;

	while (read(a->sigfd, &si, sizeof(si)) == sizeof(si))
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			return FALSE;
	reap(a);
	return TRUE;
}

static gboolean
accept_loop(Acceptor *a, GError **error)
{
	g_autofree struct pollfd *pfd = g_new0(struct pollfd, a->fds->len + 1);

	for (;;) {
		/* at the limit, listen only for children ending */
		guint nl = a->children < a->max ? a->fds->len : 0;
		int n;

		pfd[0].fd = a->sigfd;
		pfd[0].events = POLLIN;
		for (guint i = 0; i < nl; i++) {
			pfd[i + 1].fd = g_array_index(a->fds, int, i);
			pfd[i + 1].events = POLLIN;
			pfd[i + 1].revents = 0;
		}
		n = poll(pfd, nl + 1, -1);
		if (n < 0 && errno != EINTR)
			return pb_throw_errno(error, "poll");
		if (n <= 0)
			continue;
		if ((pfd[0].revents & POLLIN) && !handle_signals(a))
			return TRUE;
		/* a burst of connects is taken in one wake-up */
		for (guint i = 0; i < nl; i++)
			if (pfd[i + 1].revents & POLLIN)
				while (a->children < a->max &&
				       spawn(a, pfd[i + 1].fd))
					;
	}
}

static gboolean
serve_sockets(GArray *fds, guint max, PbServeFunc serve, void *ctx,
	      GError **error)
{
	Acceptor a = {.fds = fds, .max = MAX(max, 1), .serve = serve,
		      .ctx = ctx};
	sigset_t mask;
	gboolean ok;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return pb_throw_errno(error, "sigprocmask");
	a.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a.sigfd < 0)
		return pb_throw_errno(error, "signalfd");
	for (guint i = 0; i < fds->len; i++)
		(void)g_unix_set_fd_nonblocking(g_array_index(fds, int, i),
						TRUE, NULL);
	ok = accept_loop(&a, error);
	close(a.sigfd);
	return ok;
}

gboolean
pb_listener_run(char **listen, guint max_connections,
		gboolean (*drop)(void *ctx, GError **error),
		PbServeFunc serve, void *ctx, GError **error)
{
	g_autoptr(GArray) fds = NULL;
	PbPeer peer;

	signal(SIGPIPE, SIG_IGN);
	if (listen != NULL && listen[0] != NULL) {
		fds = g_array_new(FALSE, FALSE, sizeof(int));
		for (guint i = 0; listen[i] != NULL; i++) {
			int fd = bind_one(listen[i], error);
			if (fd < 0)
				return FALSE;
			g_array_append_val(fds, fd);
		}
	} else
		fds = inherited_sockets();
	if (drop != NULL && !drop(ctx, error))
		return FALSE;
	/* read the time zone once, here: the children's log stamps then
	 * need no look at /etc/localtime each */
	tzset();
	if (fds != NULL)
		return serve_sockets(fds, max_connections, serve, ctx, error);
	fill_peer(0, &peer);
	serve(ctx, 0, 1, &peer);
	return TRUE;
}
