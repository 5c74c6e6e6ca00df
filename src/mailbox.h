/*
 * mailbox.h - one Maildir as a POP3 session sees it (RFC 1939 over the
 * Maildir layout of maildir.h).
 *
 * Guarantees: the session sees new/ and cur/ as they were when it opened
 * the mailbox; the sizes are the octets RETR sends (CRLF line ends), read
 * from the ,W= in the file names, so opening a mailbox reads no message
 * (a foreign file without W= is read once); nothing changes on disk
 * before pb_mailbox_commit() (RFC 1939 UPDATE state): deletions are
 * unlinks, retrieved messages move from new/ to cur/ with the seen flag,
 * each folder fsync'ed; one session per mailbox at a time, by a lock file
 * made with link(2) (safe on NFS, unlike flock), with stale-lock
 * recovery. A message that another Maildir reader (a local MUA) moved or
 * reflagged meanwhile is found again by its unique name.
 */
#ifndef PB_MAILBOX_H
#define PB_MAILBOX_H

#include <glib.h>

#include "conn.h"

#define PB_MAILBOX_LOCK ".pop3.lock"
/* A lock older than this is stale whatever its owner (a session cannot
 * outlive its autologout timer by this much). */
#define PB_MAILBOX_LOCK_STALE (2 * 3600)

typedef struct _PbMailbox PbMailbox;

/* Locks and scans the Maildir DIR (created if missing). PB_ERROR_BUSY
 * when another session holds it. */
PbMailbox *pb_mailbox_open(const char *dir, GError **error);
/* Refreshes the lock's age (when over a minute old), so that a long
 * session is not taken for a dead one by a host sharing the spool; looks
 * at the lock at most once a second. */
void pb_mailbox_keep_locked(PbMailbox *mb);
/* Unlocks without changing anything (a dropped connection). */
void pb_mailbox_close(PbMailbox *mb);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbMailbox, pb_mailbox_close)

guint pb_mailbox_count(PbMailbox *mb);
guint64 pb_mailbox_size(PbMailbox *mb, guint i);    /* 0-based */
const char *pb_mailbox_uid(PbMailbox *mb, guint i); /* the unique name */

/* Writes message I to OUT as RETR (BODY_LINES < 0) or TOP sends it:
 * CRLF line ends, byte-stuffed, then the terminating ".". Streams in
 * chunks. A retrieved message is marked seen. */
gboolean pb_mailbox_send(PbMailbox *mb, guint i, gint64 body_lines,
                         PbLineOut *out, GError **error);

/* The UPDATE state: removes the messages DELETED (gboolean per message),
 * moves the seen ones from new/ to cur/ (pb_mailbox_close unlocks). */
gboolean pb_mailbox_commit(PbMailbox *mb, const gboolean *deleted,
                           GError **error);

#endif
