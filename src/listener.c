/*
 * listener.c - getting connections: inetd-style fds 0/1, systemd socket
 * activation ($LISTEN_FDS), or our own bound sockets, with a fork per
 * connection.
 *
 * Owns the listening sockets and the children. Guarantees: at most
 * max_connections children at once (the rest wait in the kernel's
 * backlog), at most max_per_ip per client key (the others get the busy
 * reply and are closed by the parent itself); every child, and every
 * process a child leaves behind (we are their subreaper), is reaped; a
 * child never returns here (it _exit()s after serving); SIGTERM/SIGINT
 * stop the accept loop. The only per-connection cost in the parent is
 * accept + fork and a slot per running child, in pages the children do
 * not inherit (no copy-on-write fault in the parent after a fork). A
 * child that is done with its connection but still has work (smtpd's
 * local delivery) gives its slot back early through a pipe
 * (pb_listener_release): the limits count connections, not processes.
 */
#include "listener.h"
#include "conn.h"
#include "error.h"
#include "log.h"
#include "self.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

void
pb_listener_client_key(const char *ip, char *key, gsize size)
{
	struct in6_addr a6;
	char text[INET6_ADDRSTRLEN];

	if (inet_pton(AF_INET6, ip, &a6) != 1) {
		g_strlcpy(key, ip, size);
		return;
	}
	memset(&a6.s6_addr[8], 0, 8);
	inet_ntop(AF_INET6, &a6, text, sizeof(text));
	g_snprintf(key, size, "%s/64", text);
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

/* One running child: its pid, the token it releases its slot with (see
 * pb_listener_release) and the key its client is counted under. */
typedef struct {
	guint64 token;
	pid_t pid;
	char key[sizeof(((PbPeer *)NULL)->ip) + 4];
} Slot;

/* The write end of the listener's release pipe, set once before the
 * first fork (so no child writes it); -1 in the inetd style. */
static int release_fd = -1;

typedef struct {
	GArray *fds; /* listening sockets */
	int sigfd;
	int done[2]; /* the release pipe: tokens of children done with their
			connection (non-blocking, written atomically) */
	guint children;
	const PbListenLimits *limits;
	/* the parent's bookkeeping, in pages no child inherits (see
	 * private_pages): the children, densely in slots[0..children), and
	 * what poll() is given: the signalfd, the release pipe, the
	 * listening sockets; the last token given */
	void *pages;
	gsize pages_size;
	Slot *slots;
	struct pollfd *pfd;
	guint64 *serial;
	PbServeFunc serve;
	void *ctx;
} Acceptor;

/* Pages that fork() leaves out of the child (MADV_DONTFORK). The parent
 * writes its bookkeeping after every fork: in pages shared with a live
 * child each first write would be a copy-on-write fault, and a TLB flush
 * on every CPU the child ran on (an IPI, a trap to the hypervisor on a
 * paravirtualised guest); measured, the GHashTables and malloc of the
 * former bookkeeping cost the parent 7 of its 9 faults per connection. */
static gboolean
private_pages(Acceptor *a, GError **error)
{
	gsize nfds = a->fds->len + 2;
	gsize size = nfds * sizeof(struct pollfd) + sizeof(guint64) +
		     a->limits->max_connections * sizeof(Slot);
	void *p;

	size = (size + 4095) & ~(gsize)4095;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return pb_throw_errno(error, "mmap");
	if (madvise(p, size, MADV_DONTFORK) < 0) {
		pb_throw_errno(error, "madvise(MADV_DONTFORK)");
		munmap(p, size);
		return FALSE;
	}
	a->pages = p;
	a->pages_size = size;
	a->pfd = p;
	/* struct pollfd is 8 bytes: the counter and the Slots (guint64
	 * first) that follow are aligned */
	a->serial = (guint64 *)(void *)(a->pfd + nfds);
	a->slots = (Slot *)(void *)(a->serial + 1);
	return TRUE;
}

/* A linear scan: at most max_connections slots, compared only when a
 * per-client limit is set (a few microseconds at a thousand). */
static guint
sessions_of(Acceptor *a, const char *key)
{
	guint n = 0;

	for (guint i = 0; i < a->children; i++)
		n += strcmp(a->slots[i].key, key) == 0;
	return n;
}

static void
slot_add(Acceptor *a, pid_t pid, guint64 token, const char *key)
{
	Slot *s = &a->slots[a->children++];

	s->token = token;
	s->pid = pid;
	g_strlcpy(s->key, key, sizeof(s->key));
}

/* The slots whose children said they are done with their connection
 * (their tokens in the pipe) are free; the processes are still reaped.
 * A token is never given twice, so a late one (its child already reaped)
 * frees nothing. */
static void
released(Acceptor *a)
{
	guint64 tokens[64];
	ssize_t n;

	while ((n = read(a->done[0], tokens, sizeof(tokens))) > 0)
		for (gsize t = 0; t < (gsize)n / sizeof(tokens[0]); t++)
			for (guint i = 0; i < a->children; i++)
				if (a->slots[i].token == tokens[t]) {
					a->slots[i] = a->slots[--a->children];
					break;
				}
}

gboolean
pb_listener_release(const PbPeer *peer)
{
	/* 8 bytes, below PIPE_BUF: written whole or not at all; a full pipe
	 * (EAGAIN) or a listener gone (EPIPE) keeps the slot taken */
	return peer->slot != 0 && release_fd >= 0 &&
	       write(release_fd, &peer->slot, sizeof(peer->slot)) ==
		   (ssize_t)sizeof(peer->slot);
}

/* Every ended process: our children, and orphans of theirs that were
 * handed to us (subreaper); only children free a slot. */
static void
reap(Acceptor *a)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (guint i = 0; i < a->children; i++)
			if (a->slots[i].pid == pid) {
				a->slots[i] = a->slots[--a->children];
				break;
			}
}

/* Over the per-client limit: the busy reply, sent without waiting (a
 * fresh socket's buffer is empty), and the door closed. */
static void
refuse(Acceptor *a, int fd, const PbPeer *peer)
{
	pb_log_info(NULL, "too many connections from [%s]:%u", peer->ip,
		    peer->port);
	(void)send(fd, a->limits->busy, strlen(a->limits->busy),
		   MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

/* The child: no listeners, no blocked signals, serve, exit. SIGTERM,
 * SIGINT and SIGCHLD keep their default dispositions here (the parent
 * takes them through its signalfd, never a handler, and
 * pb_program_sanitize() undid any SIG_IGN): unblocking them is enough. */
static void G_GNUC_NORETURN
child(Acceptor *a, int fd, const PbPeer *peer)
{
	sigset_t none;

	for (guint i = 0; i < a->fds->len; i++)
		close(g_array_index(a->fds, int, i));
	close(a->sigfd);
	close(a->done[0]);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	a->serve(a->ctx, fd, fd, peer);
	_exit(0);
}

/* Accepts one connection and forks its child; FALSE when none was
 * waiting (or it could not be served). */
static gboolean
spawn(Acceptor *a, int lfd)
{
	/* non-blocking as the session's PbConn wants it (one fcntl less in
	 * the child) */
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	char key[sizeof(((PbPeer *)NULL)->ip) + 4];
	pid_t pid;
	PbPeer peer;

	if (fd < 0)
		return FALSE; /* EAGAIN, or the client is gone already */
	fill_peer(fd, &peer);
	peer.slot = ++*a->serial;
	pb_listener_client_key(peer.ip, key, sizeof(key));
	/* a peer without an address (AF_UNIX) is nobody in particular:
	 * counting them all as one client would let one of them lock out
	 * the rest; max_connections still bounds them */
	if (a->limits->max_per_ip > 0 && peer.ip[0] != '\0' &&
	    sessions_of(a, key) >= a->limits->max_per_ip) {
		refuse(a, fd, &peer);
		return TRUE;
	}
	pid = fork();
	if (pid < 0) {
		pb_log_error(NULL, "fork: %s", g_strerror(errno));
		close(fd);
		return FALSE;
	}
	if (pid == 0)
		child(a, fd, &peer);
	slot_add(a, pid, peer.slot, key);
	close(fd);
	return TRUE;
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
	struct pollfd *pfd = a->pfd;

	for (;;) {
		/* at the limit, listen only for children ending */
		guint max = a->limits->max_connections;
		guint nl = a->children < max ? a->fds->len : 0;
		int n;

		pfd[0].fd = a->sigfd;
		pfd[0].events = POLLIN;
		pfd[1].fd = a->done[0];
		pfd[1].events = POLLIN;
		for (guint i = 0; i < nl; i++) {
			pfd[i + 2].fd = g_array_index(a->fds, int, i);
			pfd[i + 2].events = POLLIN;
			pfd[i + 2].revents = 0;
		}
		n = poll(pfd, nl + 2, -1);
		if (n < 0 && errno != EINTR)
			return pb_throw_errno(error, "poll");
		if (n <= 0)
			continue;
		if (pfd[1].revents & POLLIN)
			released(a);
		if ((pfd[0].revents & POLLIN) && !handle_signals(a))
			return TRUE;
		/* a burst of connects is taken in one wake-up */
		for (guint i = 0; i < nl; i++)
			if (pfd[i + 2].revents & POLLIN)
				while (a->children < max &&
				       spawn(a, pfd[i + 2].fd))
					;
	}
}

/* The heap's free chunks, taken by the listener before its first fork
 * (a list threaded through them). A session allocates first from the
 * free chunks setup left scattered over the heap: every one it writes is
 * a page shared with the listener, a copy-on-write fault (13 heap pages
 * of a QUIT-only smtpd session, measured; README issue 14). Taken here,
 * they are the listener's for good, and what a session allocates comes
 * from the top of the heap, a few contiguous pages (5 such faults). Until
 * malloc returns memory from the top, at most the size of the heap that
 * mallinfo2 reports. */
static void *pinned;

static void
pin_free_chunks(void)
{
	struct mallinfo2 mi = mallinfo2();
	gsize budget = mi.arena;

	for (gsize size = 4096; size >= 16 && budget > 0; size -= 16)
		while (budget > 0) {
			char *top;
			void **p;

			mi = mallinfo2();
			top = (char *)sbrk(0) - mi.keepcost;
			p = malloc(size);
			if (p == NULL)
				return;
			if ((char *)p >= top) {
				free(p);
				break;
			}
			*p = pinned;
			pinned = p;
			budget -= MIN(budget, size);
		}
}

static void
unpin_free_chunks(void)
{
	while (pinned != NULL) {
		void **p = pinned;
		pinned = *p;
		free(p);
	}
}

static gboolean
serve_sockets(GArray *fds, const PbListenLimits *limits, PbServeFunc serve,
	      void *ctx, GError **error)
{
	PbListenLimits lim = *limits;
	Acceptor a = {.fds = fds, .limits = &lim, .serve = serve, .ctx = ctx};
	sigset_t mask;
	gboolean ok;

	lim.max_connections = MAX(lim.max_connections, 1);
	/* what a session leaves running (its delivery attempt) is ours to
	 * reap once the session has gone */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		return pb_throw_errno(error, "prctl(PR_SET_CHILD_SUBREAPER)");

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
	if (pipe2(a.done, O_CLOEXEC | O_NONBLOCK) < 0) {
		close(a.sigfd);
		return pb_throw_errno(error, "pipe");
	}
	if (!private_pages(&a, error)) {
		close(a.sigfd);
		close(a.done[0]);
		close(a.done[1]);
		return FALSE;
	}
	release_fd = a.done[1];
	pb_self_prime();
	pin_free_chunks();
	ok = accept_loop(&a, error);
	unpin_free_chunks();
	release_fd = -1;
	close(a.sigfd);
	close(a.done[0]);
	close(a.done[1]);
	munmap(a.pages, a.pages_size);
	return ok;
}

/* GLib's warnings and criticals (a g_return_if_fail, say) are events for
 * the mail log like any other: never written to stderr. */
static void
glib_message(const char *domain, GLogLevelFlags level, const char *message,
	     gpointer data)
{
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		pb_log_error(NULL, "%s: %s", domain ? domain : "glib", message);
	else if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE))
		pb_log_warn(NULL, "%s: %s", domain ? domain : "glib", message);
}

static GLogWriterOutput
glib_structured(GLogLevelFlags level, const GLogField *fields, gsize n,
		gpointer data)
{
	const char *domain = NULL, *message = NULL;

	for (gsize i = 0; i < n; i++)
		if (g_str_equal(fields[i].key, "GLIB_DOMAIN"))
			domain = fields[i].value;
		else if (g_str_equal(fields[i].key, "MESSAGE"))
			message = fields[i].value;
	if (message != NULL)
		glib_message(domain, level, message, NULL);
	return G_LOG_WRITER_HANDLED;
}

static void
route_glib_messages(void)
{
	static gboolean done;

	if (done)
		return;
	done = TRUE;
	g_log_set_default_handler(glib_message, NULL);
	g_log_set_writer_func(glib_structured, NULL, NULL);
}

gboolean
pb_listener_shield_stderr(void)
{
	struct stat in, err;
	int null;

	if (fstat(STDIN_FILENO, &in) < 0 || fstat(STDERR_FILENO, &err) < 0 ||
	    !S_ISSOCK(err.st_mode) || in.st_dev != err.st_dev ||
	    in.st_ino != err.st_ino)
		return FALSE;
	null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null < 0 || dup2(null, STDERR_FILENO) < 0)
		close(STDERR_FILENO); /* closed rather than the client's */
	if (null >= 0)
		close(null);
	return TRUE;
}

gboolean
pb_listener_run(char **listen, const PbListenLimits *limits,
		gboolean (*drop)(void *ctx, GError **error),
		PbServeFunc serve, void *ctx, GError **error)
{
	g_autoptr(GArray) fds = NULL;
	PbPeer peer;

	signal(SIGPIPE, SIG_IGN);
	route_glib_messages();
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
		return serve_sockets(fds, limits, serve, ctx, error);
	fill_peer(0, &peer);
	serve(ctx, 0, 1, &peer);
	return TRUE;
}
