/*
 * conn.h - a connection: a pair of file descriptors, an input and an
 * output buffer, deadlines on every read and write, and a pluggable
 * transport (plain or TLS) that STARTTLS swaps underneath.
 *
 * Guarantees: every read is bounded (lines to PB_CONN_MAX_LINE octets;
 * longer ones are flagged and skipped to their LF) and waits no longer
 * than its deadline; pb_conn_purge_input() drops everything read but not
 * yet consumed (the STARTTLS injection defence).
 */
#ifndef PB_CONN_H
#define PB_CONN_H

#include <glib.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PB_CONN_MAX_LINE 4096 /* longest line returned (without CRLF) */
#define PB_CONN_BUFSIZE 65536

/* flags of a line */
typedef enum {
	PB_LINE_TOO_LONG = 1 << 0, /* longer than the limit; what is returned
	                              is truncated, the rest was skipped */
	PB_LINE_BARE_LF = 1 << 1,  /* ended by LF without CR */
	PB_LINE_BARE_CR = 1 << 2,  /* a CR not followed by LF inside */
	PB_LINE_HAS_NUL = 1 << 3,  /* a NUL byte inside */
} PbLineFlags;

/* Where protocol sessions write their replies: conn's output buffer in
 * the programs, a GString in the tests. */
typedef struct {
	void (*write)(void *ctx, const char *data, gsize len);
	void *ctx;
} PbLineOut;

void pb_line_out_printf(PbLineOut *out, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);
void pb_line_out_write(PbLineOut *out, const char *data, gsize len);

/* A transport: plain fds or a TLS session. read/write return bytes, 0 at
 * EOF, -1 with errno set (EAGAIN: wait with poll for want_write ? POLLOUT
 * : POLLIN). pending: bytes the transport holds already decrypted. */
typedef struct {
	ssize_t (*read)(void *ctx, void *buf, size_t len);
	ssize_t (*write)(void *ctx, const void *buf, size_t len);
	gsize (*pending)(void *ctx);
	gboolean (*want_write)(void *ctx); /* the last EAGAIN wants POLLOUT */
	void (*free)(void *ctx);
} PbTransport;

typedef struct _PbConn PbConn;

/* RFD and WFD may be equal (a socket) or differ (inetd's 0 and 1). The
 * fds are made non-blocking; they are not closed by pb_conn_free. */
PbConn *pb_conn_new(int rfd, int wfd);
void pb_conn_free(PbConn *conn);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbConn, pb_conn_free)

int pb_conn_rfd(PbConn *conn);
int pb_conn_wfd(PbConn *conn);

/* Replace the transport (plain is the default); the old one is freed. */
void pb_conn_set_transport(PbConn *conn, const PbTransport *ops, void *ctx);
/* The transport's context if OPS is the transport in use, else NULL. */
void *pb_conn_transport_ctx(PbConn *conn, const PbTransport *ops);

/* Reads one line (without its CRLF or LF) into an internal buffer valid
 * until the next call. Errors: PB_ERROR_TIMEOUT, PB_ERROR_CLOSED (EOF,
 * also mid-line), PB_ERROR_TEMP (I/O). */
gboolean pb_conn_read_line(PbConn *conn, const char **line, gsize *len,
                           guint *flags, gint64 deadline, GError **error);

/* Raw input for DATA: makes sure at least one byte is buffered and
 * returns the buffered bytes without consuming them. */
gboolean pb_conn_peek(PbConn *conn, const char **buf, gsize *len,
                      gint64 deadline, GError **error);
void pb_conn_consume(PbConn *conn, gsize len);

/* Bytes already received and not consumed (the client pipelined). */
gboolean pb_conn_pending(PbConn *conn);
void pb_conn_purge_input(PbConn *conn);

/* Buffered output; pb_conn_write flushes by itself when the buffer fills
 * (with a deadline of pb_conn_set_write_timeout seconds, default 300). */
gboolean pb_conn_write(PbConn *conn, const void *data, gsize len,
                       GError **error);
gboolean pb_conn_printf(PbConn *conn, GError **error, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
gboolean pb_conn_flush(PbConn *conn, gint64 deadline, GError **error);
void pb_conn_set_write_timeout(PbConn *conn, gint64 seconds);

/* A PbLineOut that writes into the connection's output buffer (errors are
 * remembered and reported by the next pb_conn_flush). */
PbLineOut pb_conn_line_out(PbConn *conn);

/* Fills SS (and LEN) with a numeric IPv4 or IPv6 ADDR and PORT; FALSE
 * when ADDR is not one (names are never looked up here). */
gboolean pb_sockaddr_numeric(const char *addr, guint port,
                             struct sockaddr_storage *ss, socklen_t *len);

/* Outbound: connects to ADDR (numeric IPv4 or IPv6) PORT before
 * DEADLINE. Returns the fd or -1. */
int pb_conn_connect(const char *addr, guint port, gint64 deadline,
                    GError **error);

#endif
