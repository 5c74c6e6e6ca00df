/*
 * smtp-client.h - the client side of one SMTP connection (RFC 5321):
 * greeting, EHLO (HELO when EHLO is refused), and message transactions
 * with PIPELINING (RFC 2920) and SIZE (RFC 1870) when offered.
 *
 * Remote replies are untrusted input: a reply is at most
 * PB_SMTP_REPLY_MAX_LINES lines, each kept to PB_SMTP_REPLY_MAX_TEXT
 * octets (the rest of a longer line is read and dropped), and the text is
 * returned sanitised (pb_sanitize_text): no control or 8-bit octet from a
 * remote server reaches the queue, a log or a bounce. Every read has the
 * RFC 5321 4.5.3.2 timeout of its stage from PbConfig.
 */
#ifndef PB_SMTP_CLIENT_H
#define PB_SMTP_CLIENT_H

#include <glib.h>

#include "config.h"
#include "conn.h"

#define PB_SMTP_REPLY_MAX_LINES 100
#define PB_SMTP_REPLY_MAX_TEXT 512

typedef struct {
	guint code; /* 250; 0: no reply (the connection failed) */
	char *text; /* the lines' text joined by spaces, sanitised */
	char *dsn;  /* "5.1.1" from the text, else derived from the code */
} PbSmtpReply;

void pb_smtp_reply_free(PbSmtpReply *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbSmtpReply, pb_smtp_reply_free)

/* Parses one reply line: "250-text", "250 text" or "250". FALSE when
 * it is not a reply line. *LAST is TRUE for the final line; *TEXT points
 * into LINE (at its end when there is no text: LINE must be
 * NUL-terminated, as pb_conn_read_line's lines are). */
gboolean pb_smtp_reply_line(const char *line, gsize len, guint *code,
                            gboolean *last, const char **text);

/* What the server offered in its EHLO reply. */
typedef struct {
	gboolean esmtp;
	gboolean pipelining;
	gboolean size;
	guint64 size_limit; /* 0: none given */
	gboolean eightbitmime;
	gboolean smtputf8;
	gboolean starttls;
} PbSmtpCaps;

/* Parses the capabilities from EHLO's reply lines (TEXT joined). */
void pb_smtp_caps_parse(PbSmtpCaps *caps, const char *const *lines);

typedef struct _PbSmtpClient PbSmtpClient;

/* CONN is borrowed; CFG gives the timeouts and the HELO name. */
PbSmtpClient *pb_smtp_client_new(const PbConfig *cfg, PbConn *conn);
void pb_smtp_client_free(PbSmtpClient *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbSmtpClient, pb_smtp_client_free)

/* Reads the greeting and says EHLO (or HELO). On FALSE, *REPLY (if
 * any) is what refused us, or NULL when the connection failed. */
gboolean pb_smtp_client_start(PbSmtpClient *c, PbSmtpReply **reply,
                              GError **error);

const PbSmtpCaps *pb_smtp_client_caps(PbSmtpClient *c);

/* STARTTLS (RFC 3207) after pb_smtp_client_start: the handshake with SNI
 * SERVER_NAME, the certificate checked (see tls.h), then EHLO again.
 * FALSE: the connection is unusable. *VERIFIED tells the check. */
gboolean pb_smtp_client_starttls(PbSmtpClient *c, const char *server_name,
                                 gboolean require_verified, gboolean *verified,
                                 GError **error);

/* The outcome of one transaction. */
typedef struct {
	PbSmtpReply *mail;  /* MAIL's reply */
	GPtrArray *rcpt;    /* PbSmtpReply* per recipient, always exactly
	                       as many as the recipients given; NULL: no
	                       reply (MAIL failed, or the connection was
	                       lost before that RCPT's reply) */
	PbSmtpReply *data;  /* DATA's reply (354), or NULL */
	PbSmtpReply *final; /* the reply to the final dot, or NULL */
	gboolean dropped;   /* the connection failed during it */
	gboolean after_dot; /* ... after the final dot was sent */
	char *failure;      /* our side gave up (the queued message could
	                       not be read as recorded): why, else NULL;
	                       the final dot was then never sent */
} PbSmtpResult;

void pb_smtp_result_free(PbSmtpResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbSmtpResult, pb_smtp_result_free)

/* One transaction: SENDER (""=<>), RECIPIENTS, the message from DATA_FD
 * (offset 0, SIZE octets, stored CRLF and unstuffed); SMTPUTF8: the
 * message needs it (RFC 6531). MAIL carries SIZE, BODY=8BITMIME and
 * SMTPUTF8 where the server offers them. Never fails as a whole: the
 * result says what each stage answered. */
PbSmtpResult *pb_smtp_client_send(PbSmtpClient *c, const char *sender,
                                  char **recipients, int data_fd, guint64 size,
                                  gboolean smtputf8);

/* The same with PREFIX (header fields, each with its CRLF: the
 * envelope's prepend) sent before the message and counted in SIZE=. */
PbSmtpResult *pb_smtp_client_send_prefixed(PbSmtpClient *c, const char *sender,
                                           char **recipients,
                                           const char *prefix, int data_fd,
                                           guint64 size, gboolean smtputf8);

/* The data as it goes on the wire (pure, streamed in pieces): every
 * line end of the stored message, CRLF, a bare CR or a bare LF, becomes
 * CRLF, and a dot that starts a line is doubled (RFC 5321 4.5.2). */
typedef struct {
	gboolean bol; /* the next octet starts a line */
	gboolean cr;  /* a CR was seen, its line end not yet written */
} PbSmtpStuffer;
#define PB_SMTP_STUFFER_INIT                                                   \
	{                                                                      \
		TRUE, FALSE                                                    \
	}

/* Appends IN (LEN octets of the message) to OUT, at most 2 LEN + 2. */
void pb_smtp_stuff(PbSmtpStuffer *st, const char *in, gsize len, GString *out);
/* Ends the last line if it is open, then the final ".\r\n". */
void pb_smtp_stuff_end(PbSmtpStuffer *st, GString *out);

/* QUIT, best effort. */
void pb_smtp_client_quit(PbSmtpClient *c);

#endif
