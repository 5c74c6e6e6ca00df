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
	GPtrArray *history;  /* PbAttempt*, every attempt (bounded) */
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
	GPtrArray *rcpts;     /* PbRecipient* */
} PbEnvelope;

#define PB_QUEUE_MAX_HISTORY 64 /* attempts remembered per recipient */

PbEnvelope *pb_envelope_new(void);
void pb_envelope_free(PbEnvelope *env);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbEnvelope, pb_envelope_free)
PbRecipient *pb_envelope_add_rcpt(PbEnvelope *env, const char *address);
/* Appends an attempt to the history (dropping the oldest past the bound)
 * and sets last_attempt, attempts and last_error (for failures). */
void pb_recipient_add_attempt(PbRecipient *rcpt, gint64 time, const char *host,
                              const char *reply);
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
/* ENV's id, size are filled in; arrival if 0. Frees TX either way. */
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
 * vanish meanwhile are skipped; unreadable ones are shown in the text form. */
GString *pb_queue_format_listing(PbQueue *q, gboolean json, gint64 bounce_after,
                                 GError **error);
/* The same, with only the messages KEEP (with DATA) says TRUE to, and no
 * line for an envelope that cannot be read (sendmail -bp by a user). */
typedef gboolean (*PbQueueFilter)(const PbEnvelope *env, gpointer data);
GString *pb_queue_format_listing_of(PbQueue *q, gboolean json,
                                    gint64 bounce_after, PbQueueFilter keep,
                                    gpointer data, GError **error);

#endif
