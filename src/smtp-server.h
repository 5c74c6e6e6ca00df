/*
 * smtp-server.h - the SMTP server session as a state machine (RFC 5321,
 * 1870 SIZE, 6152 8BITMIME, 2920 PIPELINING, 2034 ENHANCEDSTATUSCODES,
 * 6531 SMTPUTF8), fed one command line or one chunk of DATA at a time.
 *
 * It makes no system calls and reads no clock: replies go to a PbLineOut,
 * and its side effects (recipient lookup, the queue transaction, the time)
 * go through PbSmtpHooks, which the tests replace. Every reply carries an
 * enhanced status code (except the greeting, 221 and EHLO's 250).
 */
#ifndef PB_SMTP_SERVER_H
#define PB_SMTP_SERVER_H

#include <glib.h>

#include "config.h"
#include "conn.h"
#include "dkim.h"

typedef enum {
	PB_SMTP_NONE,     /* read the next input */
	PB_SMTP_FLUSH,    /* flush replies before reading (a DATA 354) */
	PB_SMTP_STARTTLS, /* flush, empty the input, start TLS, then call
	                     pb_smtp_server_tls_started() */
	PB_SMTP_CLOSE,    /* flush and close the connection */
	PB_SMTP_DELAY,    /* pause, then flush (a failed AUTH) */
} PbSmtpAction;

/* Who is on the other end. A peer without an IP address (a Unix-domain
 * socket, a pipe) matches no relay_networks and is not loopback: it is
 * trusted only when LOCAL says so. */
typedef struct {
	const char *ip;   /* "192.0.2.1", "2001:db8::1"; "" when none */
	const char *name; /* reverse DNS name or NULL: the literal is used */
	gboolean local;   /* no IP, but trusted as loopback is (relay,
	                     plaintext AUTH): sendmail -bs, or a socket with
	                     [smtpd] trust_local_socket = yes */
} PbSmtpPeer;

typedef struct _PbSmtpInbound PbSmtpInbound; /* below */

typedef struct {
	/* TRUE if ADDRESS (canonical: pb_address_canonical()) is a local
	 * account or alias. Called for recipients in a local domain. */
	gboolean (*recipient_exists)(void *data, const char *address);

	/* The message transaction. begin() returns an opaque handle and the
	 * queue id (owned by the handle); write() receives the message as
	 * stored: the Received: header first, then the data unstuffed, with
	 * CRLF line ends; commit() makes it durable (after it returns TRUE
	 * the session answers 250) and frees the handle; abort() discards
	 * and frees it. A FALSE/NULL return makes the session answer 451. */
	void *(*tx_begin)(void *data, const char **qid, GError **error);
	gboolean (*tx_write)(void *tx, const void *buf, gsize len,
	                     GError **error);
	gboolean (*tx_commit)(void *tx, const char *sender,
	                      GPtrArray *recipients, const char *helo,
	                      gboolean smtputf8, GError **error);
	void (*tx_abort)(void *tx);

	/* The current time (seconds since the epoch), for Received:. */
	gint64 (*now)(void *data);

	/* SMTP AUTH (RFC 4954): TRUE if USER's password is PASS. NULL: no
	 * AUTH. */
	gboolean (*authenticate)(void *data, const char *user,
	                         const char *pass);
	/* Submission: TRUE if authenticated USER may send as SENDER (its
	 * own address or one of its aliases). */
	gboolean (*sender_allowed)(void *data, const char *user,
	                           const char *sender);
	/* TRUE if the client may not try a password now (too many failures
	 * lately): AUTH gets 454 4.7.0 at once. NULL: never. */
	gboolean (*auth_blocked)(void *data);
	/* TRUE if the tables behind recipient_exists and sender_allowed
	 * could not be read (their FALSE means nothing then): the session
	 * answers 451 4.3.0 instead of refusing. NULL: never. */
	gboolean (*lookup_failed)(void *data);
	/* DKIM (when PbSmtpOptions.dkim is set and the message is ours to
	 * sign): before commit, FIELDS (the DKIM-Signature header fields,
	 * to be sent before the message: pb_queue_tx_set_prepend) for d=
	 * DOMAIN; or FIELDS NULL and WHY (not signed, for the log; when
	 * signing failed the session answers 451). NULL: not offered. */
	void (*tx_signed)(void *tx, const char *fields, const char *domain,
	                  const char *why);
	/* The inbound checks ([auth] checks = yes; README "Inbound
	 * checks"), after the data, before commit: for every message,
	 * which has had the Authentication-Results fields claiming to be
	 * ours removed (IN->removed); for a message from outside (not
	 * authenticated, not a local program, not relay_networks)
	 * IN->verify has been fed the message as stored (our Received:
	 * excepted). Returns NULL to go on (the hook has set the
	 * Authentication-Results field to prepend), or the reply refusing
	 * the message (4xx or 5xx): it is not committed. NULL: no checks,
	 * nothing removed. */
	char *(*tx_check)(void *tx, const PbSmtpInbound *in);
} PbSmtpHooks;

/* What tx_check is told. */
struct _PbSmtpInbound {
	const char *ip;       /* the client's address */
	const char *helo;     /* HELO/EHLO argument */
	const char *sender;   /* MAIL FROM, "" for the null path */
	guint removed;        /* Authentication-Results fields removed */
	PbDkimVerify *verify; /* from outside: fed; else NULL (no checks) */
};

/* What the listener offers (all FALSE by default). */
typedef struct {
	gboolean tls_available; /* STARTTLS may be offered */
	gboolean submission;    /* port 587: AUTH before MAIL, own sender */
	/* signs what an authenticated client, a local program or
	 * relay_networks sends to a remote recipient; NULL: no signing */
	PbDkimSigner *dkim;
	const char *user;       /* already authenticated (sendmail -bs: the
	                           kernel vouches for the local user) */
} PbSmtpOptions;

typedef struct _PbSmtpServer PbSmtpServer;

/* CFG, HOOKS, PEER and OUT must outlive the session. */
PbSmtpServer *pb_smtp_server_new(const PbConfig *cfg, const PbSmtpHooks *hooks,
                                 void *hook_data, const PbSmtpPeer *peer,
                                 PbLineOut *out);
void pb_smtp_server_free(PbSmtpServer *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbSmtpServer, pb_smtp_server_free)

void pb_smtp_server_set_options(PbSmtpServer *s, const PbSmtpOptions *opts);

/* TLS is up (STARTTLS, or implicit TLS before the greeting): the session
 * starts over (RFC 3207 4.2): HELO/EHLO, the transaction and any identity
 * given with AUTH are forgotten. DESCRIPTION goes into Received:. */
void pb_smtp_server_tls_started(PbSmtpServer *s, const char *description);

/* 220 greeting. */
void pb_smtp_server_greet(PbSmtpServer *s);

/* One command line (without CRLF) with its PbLineFlags. */
void pb_smtp_server_line(PbSmtpServer *s, const char *line, gsize len,
                         guint flags);

/* TRUE while the session expects message data (after 354). */
gboolean pb_smtp_server_in_data(PbSmtpServer *s);

/* Message data as it came from the wire; returns how many bytes were
 * consumed: all of them, or fewer when the end-of-data dot came first
 * (the rest are the next commands). */
gsize pb_smtp_server_data(PbSmtpServer *s, const char *buf, gsize len);

/* The read deadline passed: 421 4.4.2 and close. */
void pb_smtp_server_timeout(PbSmtpServer *s);

/* What the socket side does next (FLUSH and STARTTLS reset to NONE once
 * returned). */
PbSmtpAction pb_smtp_server_next_action(PbSmtpServer *s);

/* Queue ids of messages accepted in this session, in order (for the
 * immediate delivery attempt once the client has gone). */
const GPtrArray *pb_smtp_server_accepted(PbSmtpServer *s);

/* TRUE once the client sent an AUTH command, accepted or not, or a line
 * refused before it was parsed (too long, a NUL, a bare CR): bytes that
 * may have carried a password. */
gboolean pb_smtp_server_opaque_input(PbSmtpServer *s);

/*
 * The DATA decoder (qmail's blast() made explicit): dot-unstuffing, end of
 * data only at CRLF.CRLF, and the checks: a bare CR or LF, a NUL or a line
 * over 998 octets marks the message rejected while it reads on to the end;
 * the size limit stops output but not reading. Bytes go to SINK.
 */
typedef enum {
	PB_DATA_OK = 0,
	PB_DATA_BARE_LF = 1 << 0,
	PB_DATA_BARE_CR = 1 << 1,
	PB_DATA_NUL = 1 << 2,
	PB_DATA_LONG_LINE = 1 << 3,
	PB_DATA_TOO_BIG = 1 << 4,
	PB_DATA_LOOP = 1 << 5, /* more than PB_DATA_MAX_RECEIVED Received: */
} PbDataProblem;

#define PB_DATA_MAX_LINE 998
#define PB_DATA_MAX_RECEIVED 50

typedef struct _PbDataDecoder PbDataDecoder;
typedef void (*PbDataSink)(void *ctx, const char *buf, gsize len);

PbDataDecoder *pb_data_decoder_new(guint64 max_size, PbDataSink sink,
                                   void *ctx);
void pb_data_decoder_free(PbDataDecoder *dec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbDataDecoder, pb_data_decoder_free)
/* Returns bytes consumed; *DONE set once CRLF.CRLF was read. */
gsize pb_data_decoder_feed(PbDataDecoder *dec, const char *buf, gsize len,
                           gboolean *done);
guint pb_data_decoder_problems(PbDataDecoder *dec); /* PbDataProblem */
guint64 pb_data_decoder_size(PbDataDecoder *dec);   /* bytes sent to sink */

#endif
