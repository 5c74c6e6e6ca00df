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
 * not inherit (no copy-on-write fault in the parent after a fork), and
 * the children inherit the page tables of its code (see
 * share_code_page_tables): they do not fault it in again. A
 * child that is done with its connection but still has work (smtpd's
 * local delivery) gives its slot back early through a pipe
 * (pb_listener_release): the limits count connections, not processes.
 *
 * With max_use above 1 a child may serve further connections (Postfix's
 * max_use): after a session it says so through the same pipe (its pid
 * with READY set) and waits on its end of a socket pair, where the
 * listener sends it the next accepted socket with its PbPeer; the
 * listener ends it (closes its end: the child reads EOF and exits)
 * after max_idle idle seconds or when it stops. A child is given a
 * connection only after it said it is ready, and only one at a time;
 * one that cannot take it (gone) is ended and the connection goes to
 * another or to a new child. Each child holds only its own end.
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
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
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

/* One connection being served: its child's pid, the token the child
 * releases the slot with (see pb_listener_release) and the key its
 * client is counted under. */
typedef struct {
	guint64 token;
	pid_t pid;
	char key[sizeof(((PbPeer *)NULL)->ip) + 4];
} Slot;

/* The write end of the listener's release pipe, set once before the
 * first fork (so no child writes it); -1 in the inetd style. */
static int release_fd = -1;

/* In the release pipe: a child kept for max_use is ready for its next
 * connection (the rest of the record is its pid); tokens never have it. */
#define READY (G_GUINT64_CONSTANT(1) << 63)

/* A child kept for further connections (max_use): its pid, the
 * listener's end of its socket pair (-1: being ended), whether it waits
 * for a connection and since when (g_get_monotonic_time). */
typedef struct {
	pid_t pid;
	int sock;
	gboolean idle;
	gint64 idle_since;
} Worker;

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
	/* the children kept for max_use (max_workers of them at most,
	 * densely in workers[0..nworkers)), and their sockets again in
	 * memory the children do inherit, so that each can close the
	 * others' (written only when a worker starts or ends) */
	Worker *workers;
	guint nworkers, max_workers;
	int *worker_socks;
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
		     a->limits->max_connections * sizeof(Slot) +
		     a->max_workers * sizeof(Worker);
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
	/* a Slot's size is a multiple of 8 (its guint64 first) */
	a->workers = (Worker *)(void *)(a->slots + a->limits->max_connections);
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

static Worker *
worker_by_pid(Acceptor *a, pid_t pid)
{
	for (guint i = 0; i < a->nworkers; i++)
		if (a->workers[i].pid == pid)
			return &a->workers[i];
	return NULL;
}

/* Ends worker W's wait: its end of the pair closed, it reads EOF and
 * exits (and is reaped like any child). */
static void
worker_end(Acceptor *a, Worker *w)
{
	if (w->sock < 0)
		return;
	for (guint i = 0; i < a->max_workers; i++)
		if (a->worker_socks[i] == w->sock)
			a->worker_socks[i] = -1;
	close(w->sock);
	w->sock = -1;
	w->idle = FALSE;
}

static void
worker_add(Acceptor *a, pid_t pid, int sock)
{
	a->workers[a->nworkers++] = (Worker){.pid = pid, .sock = sock};
	for (guint i = 0; i < a->max_workers; i++)
		if (a->worker_socks[i] < 0) {
			a->worker_socks[i] = sock;
			break;
		}
}

/* The idle worker that was busy last (its pages the warmest; the others
 * then reach max_idle), or NULL. */
static Worker *
idle_worker(Acceptor *a)
{
	Worker *best = NULL;

	for (guint i = 0; i < a->nworkers; i++) {
		Worker *w = &a->workers[i];
		if (w->idle && (best == NULL || w->idle_since >= best->idle_since))
			best = w;
	}
	return best;
}

/* Ends the workers idle for max_idle; the milliseconds until the next
 * one will have been, or -1 (none idle: poll without a timeout). */
static int
retire_idle(Acceptor *a)
{
	gint64 now = g_get_monotonic_time(), next = -1;
	gint64 max_idle = (gint64)a->limits->max_idle * G_USEC_PER_SEC;

	for (guint i = 0; i < a->nworkers; i++) {
		Worker *w = &a->workers[i];
		if (!w->idle)
			continue;
		if (now - w->idle_since >= max_idle)
			worker_end(a, w);
		else if (next < 0 || w->idle_since + max_idle - now < next)
			next = w->idle_since + max_idle - now;
	}
	return next < 0 ? -1 : (int)MIN(next / 1000 + 1, G_MAXINT);
}

/* The slots whose children said they are done with their connection
 * (their tokens in the pipe) are free; the processes are still reaped.
 * A token is never given twice, so a late one (its child already reaped)
 * frees nothing. A READY record makes its worker idle. */
static void
released(Acceptor *a)
{
	guint64 tokens[64];
	ssize_t n;

	while ((n = read(a->done[0], tokens, sizeof(tokens))) > 0)
		for (gsize t = 0; t < (gsize)n / sizeof(tokens[0]); t++) {
			if (tokens[t] & READY) {
				Worker *w = worker_by_pid(
				    a, (pid_t)(tokens[t] & ~READY));
				if (w != NULL && w->sock >= 0) {
					w->idle = TRUE;
					w->idle_since = g_get_monotonic_time();
				}
				continue;
			}
			for (guint i = 0; i < a->children; i++)
				if (a->slots[i].token == tokens[t]) {
					a->slots[i] = a->slots[--a->children];
					break;
				}
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

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		Worker *w = worker_by_pid(a, pid);
		for (guint i = 0; i < a->children; i++)
			if (a->slots[i].pid == pid) {
				a->slots[i] = a->slots[--a->children];
				break;
			}
		if (w != NULL) {
			worker_end(a, w);
			*w = a->workers[--a->nworkers];
		}
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

/* In a worker: its end of the socket pair; closed in any process it
 * forks (see close_worker_sock), so that only the worker can take what
 * the listener sends. */
static int worker_sock = -1;

static void
close_worker_sock(void)
{
	if (worker_sock >= 0)
		close(worker_sock);
	worker_sock = -1;
}

/* Gives W the connection FD with its PEER; FALSE (W is ended): W could
 * not take it (it has gone). */
static gboolean
hand_over(Acceptor *a, Worker *w, int fd, const PbPeer *peer)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = (void *)peer, .iov_len = sizeof(*peer)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *c;

	memset(&ctl, 0, sizeof(ctl));
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	w->idle = FALSE;
	if (sendmsg(w->sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) ==
	    (ssize_t)sizeof(*peer))
		return TRUE;
	/* EPIPE, ECONNRESET: it has just gone (not yet reaped) */
	if (errno != EPIPE && errno != ECONNRESET)
		pb_log_warn(NULL, "passing a connection to process %d: %s",
			    (int)w->pid, g_strerror(errno));
	worker_end(a, w);
	return FALSE;
}

/* In a worker: the next connection (PEER filled), or -1 when the
 * listener ends us (EOF) or sent something else. */
static int
next_connection(PbPeer *peer)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = peer, .iov_len = sizeof(*peer)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *c;
	ssize_t n;
	int fd = -1;

	do
		n = recvmsg(worker_sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		pb_log_warn(NULL, "waiting for a connection: %s",
			    g_strerror(errno));
	c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (c != NULL && c->cmsg_level == SOL_SOCKET &&
	    c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (fd >= 0 && (n != (ssize_t)sizeof(*peer) ||
			(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))) {
		close(fd);
		fd = -1;
	}
	/* a message without its socket (MSG_CTRUNC: no descriptor free) */
	if (fd < 0 && n > 0)
		pb_log_warn(NULL, "a connection passed without its socket%s",
			    (msg.msg_flags & MSG_CTRUNC) ? " (no descriptor free)"
							 : "");
	peer->ip[sizeof(peer->ip) - 1] = '\0';
	peer->local_ip[sizeof(peer->local_ip) - 1] = '\0';
	return fd;
}

static void
on_child(int sig)
{
}

/* In a worker after a session: gives the slot back (again, if the
 * session did already: a token freed frees nothing) and says it is
 * ready, in one write (16 bytes, below PIPE_BUF: whole or not at all),
 * so that the listener never sees the slot free before the worker idle;
 * then waits for the next connection, reaping meanwhile what the session
 * left running (a remote attempt) as it ends: SIGCHLD, blocked but for
 * the wait, interrupts it. -1: the listener ends us, or cannot be told. */
static int
wait_for_next(PbPeer *peer)
{
	guint64 records[2] = {peer->slot, READY | (guint64)pb_self_pid()};
	struct sigaction sa = {.sa_handler = on_child}, dfl;
	struct pollfd p = {.fd = worker_sock, .events = POLLIN};
	sigset_t chld, waiting;
	int fd = -1, n;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &waiting);
	sigdelset(&waiting, SIGCHLD);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, &dfl);
	if (write(release_fd, records, sizeof(records)) ==
	    (ssize_t)sizeof(records)) {
		do {
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
			n = ppoll(&p, 1, NULL, &waiting);
		} while (n < 0 && errno == EINTR);
		if (n > 0)
			fd = next_connection(peer);
	}
	sigaction(SIGCHLD, &dfl, NULL);
	sigprocmask(SIG_UNBLOCK, &chld, NULL);
	return fd;
}

/* The child: no listeners, no other worker's socket, no blocked
 * signals; serve, and as a worker (SOCK its end of the pair) serve
 * again while the session allows it and max_use is not reached; exit.
 * SIGTERM, SIGINT and SIGCHLD keep their default dispositions here (the
 * parent takes them through its signalfd, never a handler, and
 * pb_program_sanitize() undid any SIG_IGN): unblocking them is enough. */
static void G_GNUC_NORETURN
child(Acceptor *a, int fd, const PbPeer *peer, int sock)
{
	sigset_t none;
	PbPeer next = *peer;

	for (guint i = 0; i < a->fds->len; i++)
		close(g_array_index(a->fds, int, i));
	for (guint i = 0; i < a->max_workers; i++)
		if (a->worker_socks[i] >= 0)
			close(a->worker_socks[i]);
	close(a->sigfd);
	close(a->done[0]);
	worker_sock = sock;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (guint used = 1;; used++) {
		if (!a->serve(a->ctx, fd, fd, &next) || sock < 0 ||
		    used >= a->limits->max_use)
			_exit(0);
		if ((fd = wait_for_next(&next)) < 0)
			_exit(0);
	}
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
	int pair[2] = {-1, -1};
	pid_t pid;
	PbPeer peer;
	Worker *w;

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
	while ((w = idle_worker(a)) != NULL)
		if (hand_over(a, w, fd, &peer)) {
			slot_add(a, w->pid, peer.slot, key);
			close(fd);
			return TRUE;
		}
	/* a new child, kept for more when there is room for one more
	 * worker (otherwise it serves this connection only) */
	if (a->nworkers < a->max_workers &&
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
		pb_log_warn(NULL, "socketpair: %s", g_strerror(errno));
		pair[0] = pair[1] = -1;
	}
	pid = fork();
	if (pid == 0) {
		if (pair[0] >= 0)
			close(pair[0]);
		child(a, fd, &peer, pair[1]);
	}
	if (pair[1] >= 0)
		close(pair[1]);
	if (pid < 0) {
		pb_log_error(NULL, "fork: %s", g_strerror(errno));
		if (pair[0] >= 0)
			close(pair[0]);
		close(fd);
		return FALSE;
	}
	if (pair[0] >= 0)
		worker_add(a, pid, pair[0]);
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
		int timeout = a->nworkers > 0 ? retire_idle(a) : -1;
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
		n = poll(pfd, nl + 2, timeout);
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

/* The children's code in their page tables from the fork on. fork()
 * copies the page-table entries of a mapping only when it has anonymous
 * pages (an anon_vma); for read-only mappings of files, the program's
 * and libc's code and constants, it copies none, and every child faults
 * each page it runs or reads in again (22 of the 48 faults of a
 * QUIT-only smtpd connection, measured). One page of each such mapping
 * made anonymous gives the mapping an anon_vma, and from then on every
 * fork copies what the listener has mapped. The page is written with
 * the byte it already holds, through /proc/self/mem (as a debugger
 * writes a breakpoint: no mprotect, the mapping never becomes writable),
 * so the code is unchanged; it costs one private page a mapping. Done
 * before privileges are dropped (a process that changed its uid may not
 * open its own /proc/self/mem); where it cannot be done (no /proc, a
 * kernel that refuses such writes) nothing is lost but the gain. */
static void
share_code_page_tables(void)
{
	g_autofree char *maps = NULL;
	g_auto(GStrv) lines = NULL;
	int mem;

	if (!g_file_get_contents("/proc/self/maps", &maps, NULL, NULL))
		return;
	mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	if (mem < 0)
		return;
	lines = g_strsplit(maps, "\n", -1);
	for (guint i = 0; lines[i] != NULL; i++) {
		unsigned long lo, hi, offset, inode;
		char perms[5], dev[16];
		unsigned char byte;

		/* "lo-hi perms offset dev inode path": private, not
		 * writable, of a file */
		if (sscanf(lines[i], "%lx-%lx %4s %lx %15s %lu", &lo, &hi, perms,
			   &offset, dev, &inode) != 6 ||
		    inode == 0 || perms[0] != 'r' || perms[1] != '-' ||
		    perms[3] != 'p')
			continue;
		if (pread(mem, &byte, 1, (off_t)lo) != 1 ||
		    pwrite(mem, &byte, 1, (off_t)lo) != 1)
			break;
	}
	close(mem);
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
	lim.max_use = MAX(lim.max_use, 1);
	a.max_workers = lim.max_use > 1 ? lim.max_connections : 0;
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
	a.worker_socks = g_new(int, MAX(a.max_workers, 1));
	for (guint i = 0; i < a.max_workers; i++)
		a.worker_socks[i] = -1;
	if (a.max_workers > 0)
		(void)pthread_atfork(NULL, NULL, close_worker_sock);
	pb_self_prime();
	pin_free_chunks();
	ok = accept_loop(&a, error);
	unpin_free_chunks();
	/* idle workers end; busy ones finish their session first */
	for (guint i = 0; i < a.nworkers; i++)
		worker_end(&a, &a.workers[i]);
	g_free(a.worker_socks);
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
	if (fds != NULL)
		share_code_page_tables();
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
