/*
 * conn.c - buffered, deadline-bounded I/O on a connection, over a
 * pluggable transport.
 *
 * Owns the input and output buffers of one connection. Guarantees: no
 * read or write waits past its deadline (poll(2) on non-blocking fds);
 * a line is never longer than PB_CONN_MAX_LINE (the excess is skipped up
 * to the LF and the line flagged), so a client cannot make us buffer
 * without bound or desynchronise the session; pb_conn_purge_input()
 * forgets every byte received but not yet consumed.
 */
#include "conn.h"
#include "error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct _PbConn {
	int rfd, wfd;
	const PbTransport *ops;
	void *ctx;

	char *in;       /* PB_CONN_BUFSIZE */
	gsize in_start; /* first unconsumed byte */
	gsize in_end;   /* one past the last received byte */
	GString *out;
	GError *out_error; /* from a PbLineOut write, reported at flush */
	gint64 write_timeout;

	char line[PB_CONN_MAX_LINE + 1]; /* last: not zeroed (pb_conn_new) */
};

typedef struct {
	int rfd, wfd;
	gboolean want_write;
} PlainCtx;

static ssize_t
plain_read(void *ctx, void *buf, size_t len)
{
	PlainCtx *p = ctx;

	p->want_write = FALSE;
	return read(p->rfd, buf, len);
}

static ssize_t
plain_write(void *ctx, const void *buf, size_t len)
{
	PlainCtx *p = ctx;
	ssize_t n;

	p->want_write = TRUE;
	/* MSG_NOSIGNAL: a vanished client must not kill us with SIGPIPE */
	n = send(p->wfd, buf, len, MSG_NOSIGNAL);
	if (n < 0 && errno == ENOTSOCK)
		n = write(p->wfd, buf, len);
	return n;
}

static gsize
plain_pending(void *ctx)
{
	return 0;
}

static gboolean
plain_want_write(void *ctx)
{
	return ((PlainCtx *)ctx)->want_write;
}

static const PbTransport plain_transport = {
    .read = plain_read,
    .write = plain_write,
    .pending = plain_pending,
    .want_write = plain_want_write,
    .free = g_free,
};

PbConn *
pb_conn_new(int rfd, int wfd)
{
	PbConn *conn = g_malloc(sizeof(PbConn));
	PlainCtx *plain = g_new0(PlainCtx, 1);
	int fds[2] = {rfd, wfd};

	/* the line buffer is not zeroed (4 KiB: a page fault fewer) */
	memset(conn, 0, offsetof(PbConn, line));
	/* a socket is both fds: its flags are set once */
	for (guint i = 0; i < (rfd == wfd ? 1 : 2); i++) {
		int fl = fcntl(fds[i], F_GETFL);
		if (fl >= 0 && !(fl & O_NONBLOCK))
			(void)fcntl(fds[i], F_SETFL, fl | O_NONBLOCK);
	}
	plain->rfd = rfd;
	plain->wfd = wfd;
	conn->rfd = rfd;
	conn->wfd = wfd;
	conn->ops = &plain_transport;
	conn->ctx = plain;
	conn->in = g_malloc(PB_CONN_BUFSIZE);
	conn->out = g_string_sized_new(4096);
	conn->write_timeout = 300;
	return conn;
}

void
pb_conn_free(PbConn *conn)
{
	if (conn == NULL)
		return;
	if (conn->ops->free)
		conn->ops->free(conn->ctx);
	g_free(conn->in);
	g_string_free(conn->out, TRUE);
	g_clear_error(&conn->out_error);
	g_free(conn);
}

int
pb_conn_rfd(PbConn *conn)
{
	return conn->rfd;
}

int
pb_conn_wfd(PbConn *conn)
{
	return conn->wfd;
}

void *
pb_conn_transport_ctx(PbConn *conn, const PbTransport *ops)
{
	return conn->ops == ops ? conn->ctx : NULL;
}

void
pb_conn_set_transport(PbConn *conn, const PbTransport *ops, void *ctx)
{
	if (conn->ops->free)
		conn->ops->free(conn->ctx);
	conn->ops = ops;
	conn->ctx = ctx;
}

void
pb_conn_set_write_timeout(PbConn *conn, gint64 seconds)
{
	conn->write_timeout = seconds;
}

/* Waits until FD is ready for EVENTS or DEADLINE (ms, monotonic) passes. */
static gboolean
wait_fd(int fd, short events, gint64 deadline, GError **error)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = events};
		gint64 left = deadline - g_get_monotonic_time() / 1000;
		int n;

		if (left <= 0) {
			g_set_error(error, PB_ERROR, PB_ERROR_TIMEOUT,
			            "timeout");
			return FALSE;
		}
		n = poll(&pfd, 1, (int)MIN(left, G_MAXINT));
		if (n > 0)
			return TRUE;
		if (n < 0 && errno != EINTR)
			return pb_throw_errno(error, "poll");
	}
}

/* Reads more input into the buffer (compacting it first). */
static gboolean
fill(PbConn *conn, gint64 deadline, GError **error)
{
	if (conn->in_start > 0) {
		memmove(conn->in, conn->in + conn->in_start,
		        conn->in_end - conn->in_start);
		conn->in_end -= conn->in_start;
		conn->in_start = 0;
	}
	g_assert(conn->in_end < PB_CONN_BUFSIZE);
	for (;;) {
		ssize_t n = conn->ops->read(conn->ctx, conn->in + conn->in_end,
		                            PB_CONN_BUFSIZE - conn->in_end);
		if (n > 0) {
			conn->in_end += (gsize)n;
			return TRUE;
		}
		if (n == 0) {
			g_set_error(error, PB_ERROR, PB_ERROR_CLOSED,
			            "connection closed by peer");
			return FALSE;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return pb_throw_errno(error, "read");
		if (!wait_fd(conn->ops->want_write(conn->ctx) ? conn->wfd
		                                              : conn->rfd,
		             conn->ops->want_write(conn->ctx) ? POLLOUT
		                                              : POLLIN,
		             deadline, error))
			return FALSE;
	}
}

/* Copies the bytes of a line into conn->line, noting what is wrong. The
 * caller never passes the CR of the line's own CRLF, so any CR is bare. */
static void
take_line(PbConn *conn, const char *p, gsize n, gsize *len, guint *flags)
{
	gsize keep = MIN(n, (gsize)PB_CONN_MAX_LINE - *len);

	if (memchr(p, '\0', n) != NULL)
		*flags |= PB_LINE_HAS_NUL;
	if (memchr(p, '\r', n) != NULL)
		*flags |= PB_LINE_BARE_CR;
	if (keep < n)
		*flags |= PB_LINE_TOO_LONG;
	memcpy(conn->line + *len, p, keep);
	*len += keep;
}

gboolean
pb_conn_read_line(PbConn *conn, const char **line, gsize *len, guint *flags,
                  gint64 deadline, GError **error)
{
	gsize got = 0;

	*flags = 0;
	for (;;) {
		const char *start = conn->in + conn->in_start;
		gsize avail = conn->in_end - conn->in_start;
		const char *lf = memchr(start, '\n', avail);
		gsize n = lf ? (gsize)(lf - start) : avail;

		if (lf == NULL) {
			/* keep a trailing CR back: it may be half a CRLF */
			if (n > 0 && start[n - 1] == '\r')
				n--;
			take_line(conn, start, n, &got, flags);
			conn->in_start += n;
			if (!fill(conn, deadline, error))
				return FALSE;
			continue;
		}
		if (n > 0 && start[n - 1] == '\r')
			take_line(conn, start, n - 1, &got, flags);
		else {
			take_line(conn, start, n, &got, flags);
			*flags |= PB_LINE_BARE_LF;
		}
		conn->in_start += n + 1;
		conn->line[got] = '\0';
		*line = conn->line;
		*len = got;
		return TRUE;
	}
}

gboolean
pb_conn_peek(PbConn *conn, const char **buf, gsize *len, gint64 deadline,
             GError **error)
{
	if (conn->in_start == conn->in_end) {
		conn->in_start = conn->in_end = 0;
		if (!fill(conn, deadline, error))
			return FALSE;
	}
	*buf = conn->in + conn->in_start;
	*len = conn->in_end - conn->in_start;
	return TRUE;
}

void
pb_conn_consume(PbConn *conn, gsize len)
{
	g_assert(len <= conn->in_end - conn->in_start);
	conn->in_start += len;
}

gboolean
pb_conn_pending(PbConn *conn)
{
	return conn->in_start < conn->in_end ||
	       conn->ops->pending(conn->ctx) > 0;
}

void
pb_conn_purge_input(PbConn *conn)
{
	conn->in_start = conn->in_end = 0;
}

gboolean
pb_conn_flush(PbConn *conn, gint64 deadline, GError **error)
{
	gsize done = 0;

	if (conn->out_error != NULL) {
		g_propagate_error(error, g_steal_pointer(&conn->out_error));
		return FALSE;
	}
	while (done < conn->out->len) {
		ssize_t n = conn->ops->write(conn->ctx, conn->out->str + done,
		                             conn->out->len - done);
		if (n > 0) {
			done += (gsize)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			if (errno == EPIPE || errno == ECONNRESET)
				g_set_error(error, PB_ERROR, PB_ERROR_CLOSED,
				            "connection closed by peer");
			else
				pb_throw_errno(error, "write");
			return FALSE;
		}
		if (!wait_fd(conn->ops->want_write(conn->ctx) ? conn->wfd
		                                              : conn->rfd,
		             conn->ops->want_write(conn->ctx) ? POLLOUT
		                                              : POLLIN,
		             deadline, error))
			return FALSE;
	}
	g_string_truncate(conn->out, 0);
	return TRUE;
}

gboolean
pb_conn_write(PbConn *conn, const void *data, gsize len, GError **error)
{
	g_string_append_len(conn->out, data, (gssize)len);
	if (conn->out->len >= PB_CONN_BUFSIZE)
		return pb_conn_flush(conn, pb_deadline_in(conn->write_timeout),
		                     error);
	return TRUE;
}

gboolean
pb_conn_printf(PbConn *conn, GError **error, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	g_string_append_vprintf(conn->out, fmt, ap);
	va_end(ap);
	return pb_conn_write(conn, "", 0, error);
}

static void
conn_line_out_write(void *ctx, const char *data, gsize len)
{
	PbConn *conn = ctx;

	if (conn->out_error == NULL)
		(void)pb_conn_write(conn, data, len, &conn->out_error);
}

PbLineOut
pb_conn_line_out(PbConn *conn)
{
	PbLineOut out = {conn_line_out_write, conn};

	return out;
}

void
pb_line_out_write(PbLineOut *out, const char *data, gsize len)
{
	out->write(out->ctx, data, len);
}

void
pb_line_out_printf(PbLineOut *out, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	out->write(out->ctx, text, strlen(text));
}

gboolean
pb_sockaddr_numeric(const char *addr, guint port, struct sockaddr_storage *ss,
                    socklen_t *sslen)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((guint16)port);
		*sslen = sizeof(*sin);
		return TRUE;
	}
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((guint16)port);
		*sslen = sizeof(*sin6);
		return TRUE;
	}
	return FALSE;
}

int
pb_conn_connect(const char *addr, guint port, gint64 deadline, GError **error)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	g_auto(PbFd) fd = -1;
	int soerr = 0;
	socklen_t olen = sizeof(soerr);

	if (!pb_sockaddr_numeric(addr, port, &ss, &sslen)) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
		            "not a numeric address: %s", addr);
		return -1;
	}
	fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		pb_throw_errno(error, "socket");
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
		if (errno != EINPROGRESS) {
			pb_throw_errno(error, "connect to %s port %u", addr,
			               port);
			return -1;
		}
		if (!wait_fd(fd, POLLOUT, deadline, error)) {
			g_prefix_error(error, "connect to %s port %u: ", addr,
			               port);
			return -1;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &olen) < 0 ||
		    soerr != 0) {
			errno = soerr ? soerr : errno;
			pb_throw_errno(error, "connect to %s port %u", addr,
			               port);
			return -1;
		}
	}
	return g_steal_fd(&fd);
}
