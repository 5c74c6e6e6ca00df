/*
 * queue.h - the durable mail queue.
 *
 * Layout under QUEUE/ (all folders mode 0700, created when missing):
 *   msg/ID   the message as accepted (CRLF line ends, unstuffed); written
 *            once, never changed; its flock is the message's lock
 *   env/ID   the envelope (text, see queue.c); rewritten atomically
 *   tmp/     envelopes being written (rename into env/)
 * States (qmail's INTERNALS idea): msg/ID without env/ID = not accepted
 * (a session still writing, or one that died: removed by
 * pb_queue_clean_stale after a day); env/ID + msg/ID = queued; neither =
 * done. An entry leaves the queue env first, then msg.
 *
 * Guarantees: pb_queue_tx_commit() returns TRUE only after the data, the
 * envelope and both folders are fsync'ed; every envelope change is a
 * complete new file renamed over the old one, then env/ is fsync'ed.
 * Queue ids are 22 upper-case hex digits: microseconds since the epoch
 * (13), pid (6), a counter (3): unique, time-ordered, safe as file names.
 */
#ifndef PB_QUEUE_H
#define PB_QUEUE_H

#include <glib.h>

#include "address.h"

typedef enum {
	PB_RCPT_PENDING, /* not yet delivered: try again when due */
	PB_RCPT_SENT,    /* delivered (final) */
	PB_RCPT_FAILED,  /* failed for good; the bounce is still owed */
	PB_RCPT_BOUNCED, /* failed and the bounce is queued (final) */
} PbRcptState;

typedef struct {
	gint64 time; /* seconds since the epoch */
	char *host;  /* "mx.example.net[192.0.2.1]:25" or "local" */
	char *reply; /* sanitised reply text: printable ASCII only */
} PbAttempt;

typedef struct {
	char *address; /* "local@domain" as given in RCPT TO */
	char *orig;    /* the original recipient when it came from an
	                  alias expansion, else NULL */
	PbRcptState state;
	guint attempts;
	gint64 last_attempt; /* 0: never */
	gint64 next_attempt; /* 0: as soon as possible */
	char *dsn;           /* enhanced status of the last outcome, or NULL */
	char *last_error;    /* sanitised reply text of the last failure */
	GPtrArray *history;  /* PbAttempt*: the first and the last attempts
	                        (PB_QUEUE_MAX_HISTORY at most) */
} PbRecipient;

typedef struct {
	char *id;
	char *sender;         /* "" is the null sender <> */
	gint64 arrival;       /* seconds since the epoch */
	guint64 size;         /* octets of msg/ID */
	gboolean smtputf8;    /* needs an SMTPUTF8 peer */
	gboolean notice_sent; /* the delay notice went out */
	gboolean held;        /* the operator holds it (not delivered) */
	char *client;         /* "helo [ip]" or "local uid N": informative */
	/* header fields sent before msg/ID, each with its CRLF (the
	 * DKIM-Signature made when the message was accepted: the message
	 * streams into msg/ID before its signature is known), or NULL. At
	 * most PB_QUEUE_MAX_PREPEND octets; not counted in SIZE
	 * (pb_envelope_wire_size counts both) */
	char *prepend;
	GPtrArray *rcpts;     /* PbRecipient* */
} PbEnvelope;

/* What an envelope keeps is bounded per recipient, so that its size has
 * a fixed maximum that the parser accepts, whatever the configuration
 * says now or later (see queue.c for the arithmetic):
 *  - the history: the first PB_QUEUE_HISTORY_FIRST attempts and the last
 *    PB_QUEUE_HISTORY_LAST (the count of all of them is in ATTEMPTS);
 *  - every text field (an error, a reply, the client) is cut to
 *    PB_QUEUE_MAX_TEXT octets as written (escaped), a host to
 *    PB_QUEUE_MAX_HOST, a dsn to PB_QUEUE_MAX_DSN;
 *  - addresses are never cut: a new message's are at most
 *    PB_ADDRESS_MAX_PATH octets, and at most PB_QUEUE_MAX_RCPTS of them
 *    (pb_queue_tx_commit refuses more, alias expansion stops there). */
#define PB_QUEUE_HISTORY_FIRST 1
#define PB_QUEUE_HISTORY_LAST 5
#define PB_QUEUE_MAX_HISTORY (PB_QUEUE_HISTORY_FIRST + PB_QUEUE_HISTORY_LAST)
#define PB_QUEUE_MAX_TEXT 512
#define PB_QUEUE_MAX_HOST 320
#define PB_QUEUE_MAX_DSN 32
#define PB_QUEUE_MAX_RCPTS 1000
/* An address as written: each octet at most 4 ("\xHH"). */
#define PB_QUEUE_MAX_ADDRESS (4 * PB_ADDRESS_MAX_PATH)
/* "rcpt bounced U32 I64 I64 ADDRESS", orig, dsn, error, attempts. */
#define PB_QUEUE_RCPT_MAX_OCTETS                                               \
	(80 + PB_QUEUE_MAX_ADDRESS + 8 + PB_QUEUE_MAX_ADDRESS + 8 +            \
	 PB_QUEUE_MAX_DSN + 8 + PB_QUEUE_MAX_TEXT +                            \
	 PB_QUEUE_MAX_HISTORY * (40 + PB_QUEUE_MAX_HOST + PB_QUEUE_MAX_TEXT))
/* The header fields sent before the message (two DKIM signatures with
 * 8192-bit RSA take about 3 KB). */
#define PB_QUEUE_MAX_PREPEND 16384
/* The records before the first rcpt (sender, client and prepend
 * included; prepend escaped: each octet at most 4). */
#define PB_QUEUE_HEADER_MAX_OCTETS                                             \
	(256 + PB_QUEUE_MAX_ADDRESS + PB_QUEUE_MAX_TEXT +                      \
	 4 * PB_QUEUE_MAX_PREPEND)
/* The largest envelope pb_envelope_parse accepts (about 7.9 MB). */
#define PB_QUEUE_MAX_ENVELOPE                                                  \
	(PB_QUEUE_HEADER_MAX_OCTETS +                                          \
	 PB_QUEUE_MAX_RCPTS * PB_QUEUE_RCPT_MAX_OCTETS)

PbEnvelope *pb_envelope_new(void);
void pb_envelope_free(PbEnvelope *env);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbEnvelope, pb_envelope_free)
PbRecipient *pb_envelope_add_rcpt(PbEnvelope *env, const char *address);
/* Appends an attempt to the history (past the bound, the oldest of the
 * last attempts is dropped; the first ones stay) and sets last_attempt,
 * attempts and last_error (for failures). */
void pb_recipient_add_attempt(PbRecipient *rcpt, gint64 time, const char *host,
                              const char *reply);
/* What goes on the wire: the prepended fields and msg/ID. */
guint64 pb_envelope_wire_size(const PbEnvelope *env);
/* TEXT is fit to be prepended: at most PB_QUEUE_MAX_PREPEND octets of
 * header lines, each ended by CRLF, no NUL, no bare CR or LF, the first
 * not a continuation. */
gboolean pb_envelope_prepend_valid(const char *text);
/* TRUE when no recipient is PENDING or FAILED. */
gboolean pb_envelope_is_final(const PbEnvelope *env);

/* The text form, and back (PB_ERROR_DATA on anything malformed). Text
 * fields are escaped so that no CR, LF or NUL can ever be written. */
GString *pb_envelope_format(const PbEnvelope *env);
PbEnvelope *pb_envelope_parse(const char *text, gsize len, GError **error);

/* Makes TEXT safe for the envelope, a log line or a bounce: printable
 * ASCII kept, anything else (controls, 8-bit) as \xHH, at most MAX bytes
 * of input. */
char *pb_sanitize_text(const char *text, gsize max);

typedef struct _PbQueue PbQueue;

PbQueue *pb_queue_open(const char *dir, GError **error);
void pb_queue_free(PbQueue *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbQueue, pb_queue_free)
const char *pb_queue_dir(PbQueue *q);

/* A new message: data streamed into msg/ID, then commit. */
typedef struct _PbQueueTx PbQueueTx;
PbQueueTx *pb_queue_tx_begin(PbQueue *q, GError **error);
const char *pb_queue_tx_id(PbQueueTx *tx);
gboolean pb_queue_tx_write(PbQueueTx *tx, const void *buf, gsize len,
                           GError **error);
/* Whether ENV is within the bounds every envelope keeps (at most
 * PB_QUEUE_MAX_RCPTS recipients, addresses at most PB_ADDRESS_MAX_PATH
 * octets); PB_ERROR_PERM "5.x.x why" when not. */
gboolean pb_envelope_fits(const PbEnvelope *env, GError **error);
/* Header fields (pb_envelope_prepend_valid) for the envelope that
 * pb_queue_tx_commit writes, unless it has its own: for a caller that
 * learns them only once the data is written (a DKIM signature). */
void pb_queue_tx_set_prepend(PbQueueTx *tx, const char *text);
/* ENV's id, size are filled in; arrival if 0. Frees TX either way.
 * An envelope that does not fit is refused (PB_ERROR_PERM). */
gboolean pb_queue_tx_commit(PbQueueTx *tx, PbEnvelope *env, GError **error);
void pb_queue_tx_abort(PbQueueTx *tx); /* unlinks msg/ID, frees */

/* A queued message, locked (flock on msg/ID) by this process. */
typedef struct _PbQueueEntry PbQueueEntry;

/* Locks ID and reads its envelope. PB_ERROR_BUSY: another process holds
 * it; PB_ERROR_NOTFOUND: no longer queued. */
PbQueueEntry *pb_queue_lock(PbQueue *q, const char *id, GError **error);
PbEnvelope *pb_queue_entry_envelope(PbQueueEntry *e);
/* A read-only fd of msg/ID, positioned at 0 on every call. */
int pb_queue_entry_data_fd(PbQueueEntry *e);
/* Writes the envelope durably (tmp, fsync, rename, fsync env/). */
gboolean pb_queue_entry_update(PbQueueEntry *e, GError **error);
/* Removes env/ID (fsync env/) then msg/ID. */
gboolean pb_queue_entry_remove(PbQueueEntry *e, GError **error);
void pb_queue_entry_free(PbQueueEntry *e); /* unlocks */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbQueueEntry, pb_queue_entry_free)

/* An entry whose envelope cannot be read (PB_ERROR_DATA from
 * pb_queue_lock) is set aside, never deleted: under its lock, msg/ID is
 * linked to QUEUE/corrupt/ID.msg and env/ID moved to corrupt/ID.env (as
 * runq --check --repair does), each step fsync'ed. Returns a read-only
 * fd of the data (locked; the caller closes it) and in *SALVAGE what
 * could be read of the envelope (pb_envelope_salvage); -1 on failure
 * (PB_ERROR_BUSY: locked, or readable again). */
int pb_queue_set_aside(PbQueue *q, const char *id, char **salvage,
                       GError **error);
/* What a human can use of a damaged envelope's TEXT (pure, total: any
 * bytes): "sender: <...>", "arrival: ...", "recipient: <...> (state)"
 * lines, sanitised, at most 50 recipients listed. */
char *pb_envelope_salvage(const char *text, gsize len);

/* The ids in env/, sorted (oldest first). */
GPtrArray *pb_queue_list(PbQueue *q, GError **error);
/* The ids in env/ due at NOW (envelope mtime <= NOW: see queue.c), sorted:
 * what a run without -f has to look at. */
GPtrArray *pb_queue_list_due(PbQueue *q, gint64 now, GError **error);
/* Reads an envelope without locking (mailq). */
PbEnvelope *pb_queue_read_envelope(PbQueue *q, const char *id, GError **error);
/* Removes msg/ files without an envelope and tmp/ files older than
 * MAX_AGE seconds; returns how many. */
guint pb_queue_clean_stale(PbQueue *q, gint64 max_age, GError **error);

/* A new unique queue id (see above). */
char *pb_queue_new_id(void);

/* mailq's listing of the queue, oldest first: Postfix's text layout, or
 * (JSON) an array of objects {id, size, arrival, sender, held,
 * notice_sent, bounce_at (arrival + BOUNCE_AFTER), recipients: [{address, orig,
 * state, attempts, last_attempt, next_attempt, last_error, dsn}]}. Entries that
 * vanish meanwhile are skipped; unreadable ones are shown in the text form.
 * Entries set aside in corrupt/ (pb_queue_set_aside) come last: a line
 * "ID!  (unreadable envelope: set aside in corrupt/)", or in JSON
 * {id, corrupt: true}. */
GString *pb_queue_format_listing(PbQueue *q, gboolean json, gint64 bounce_after,
                                 GError **error);
/* The same, with only the messages KEEP (with DATA) says TRUE to, and no
 * line for an envelope that cannot be read nor for an entry set aside
 * (sendmail -bp by a user). */
typedef gboolean (*PbQueueFilter)(const PbEnvelope *env, gpointer data);
GString *pb_queue_format_listing_of(PbQueue *q, gboolean json,
                                    gint64 bounce_after, PbQueueFilter keep,
                                    gpointer data, GError **error);

#endif
