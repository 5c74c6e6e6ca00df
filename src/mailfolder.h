/*
 * mailfolder.h - the IMAP storage of one account: its Maildir++ tree, in
 * the files Dovecot 2.3 writes, so that a mailbox moves between Dovecot
 * and pillarbox unchanged.
 *
 * On disk (ROOT is the account's Maildir, SPOOL/DOMAIN/USER):
 *   ROOT/{tmp,new,cur}           INBOX
 *   ROOT/.A.B/{tmp,new,cur}      folder "A.B" (name in modified UTF-7, as on
 *   ROOT/.A.B/maildirfolder      the wire; "." is the hierarchy separator)
 *   FOLDER/dovecot-uidlist       version 3: "3 V<uidvalidity> N<uidnext>
 *                                G<guid>", then "<uid> [ext...] :<name>"
 *                                (the last known file name; its base,
 *                                before ":", is the key)
 *   FOLDER/dovecot-uidlist.lock  the lock for the two files below (link(2))
 *   FOLDER/dovecot-keywords      "<index> <keyword>", index 0-25 = 'a'-'z'
 *   ROOT/subscriptions           "V\t2\n\n" then one name a line, levels
 *                                separated by TAB
 *   ROOT/dovecot-uidvalidity     the last UIDVALIDITY handed out (hex),
 *   ROOT/dovecot-uidvalidity.HEX Dovecot's marker of the same value
 * A message's flags are its name's info ":2,<letters>": D F R S T
 * (\Draft \Flagged \Answered \Seen \Deleted), a-z for keywords, all in
 * ASCII order; other letters (P for "passed", ...) and anything after a
 * further "," are kept as they are.
 *
 * Guarantees:
 *  - a UID is keyed by the base name, so a flag change (rename, by us,
 *    pop3d or a local MUA) keeps it; UIDs are assigned in ascending order
 *    under the uidlist lock and the uidlist is replaced tmp -> fsync ->
 *    rename -> fsync of the folder; UIDVALIDITY changes only when the
 *    uidlist is lost, and a folder created (or re-created) gets one larger
 *    than any this account handed out before;
 *  - opening or syncing a folder reads names (readdir of new/ and cur/),
 *    never messages; sizes come from ,W= (else computed once and kept in
 *    the uidlist's W field), INTERNALDATE from the mtime (one stat, when
 *    asked);
 *  - every rename/link/unlink we make is followed by an fsync of the
 *    folder it changed (one per operation, not one per message); APPEND
 *    and COPY return their UIDs only after the message and its folder are
 *    fsync'ed and the uidlist is written;
 *  - files are opened O_NOFOLLOW and must be regular; we create files 0600
 *    and folders 0700; no name that pb_mailfolder_name_check() refuses
 *    reaches the file system, so no name escapes ROOT;
 *  - another process (pop3d, Dovecot, a local MUA) may rename or unlink
 *    messages at any time: a message that moved is found again by its base
 *    name, one that is gone is reported expunged at the next sync, and a
 *    scan that misses a known message (readdir racing a rename) is
 *    repeated, up to three times, taking the union, before anything is
 *    declared expunged.
 * Errors: PB_MAILFOLDER_ERROR (below) for what an IMAP client is told with
 * a response code; PB_ERROR_TEMP for I/O trouble (NO
 * [SERVERBUG]/[UNAVAILABLE]).
 */
#ifndef PB_MAILFOLDER_H
#define PB_MAILFOLDER_H

#include <glib.h>
#include <sys/types.h>

/* The IMAP outcomes of a refused operation (RFC 5530 response codes).
 * XXX a second error domain next to PB_ERROR (STYLE.md 4 asks for one):
 * the session maps each code to its own response code, which
 * PB_ERROR's codes cannot tell apart. */
#define PB_MAILFOLDER_ERROR (pb_mailfolder_error_quark())
GQuark pb_mailfolder_error_quark(void);
typedef enum {
	PB_MAILFOLDER_ERROR_NONEXISTENT,   /* [NONEXISTENT] */
	PB_MAILFOLDER_ERROR_ALREADYEXISTS, /* [ALREADYEXISTS] */
	PB_MAILFOLDER_ERROR_BADNAME,       /* [CANNOT] invalid mailbox name */
	PB_MAILFOLDER_ERROR_CANNOT,        /* [CANNOT] e.g. DELETE INBOX */
	PB_MAILFOLDER_ERROR_READONLY, /* [READ-ONLY]: folder opened read-only */
	PB_MAILFOLDER_ERROR_LIMIT,    /* [LIMIT] e.g. a 27th keyword */
	PB_MAILFOLDER_ERROR_EXPUNGED, /* [EXPUNGEISSUED] message gone */
	PB_MAILFOLDER_ERROR_TOOBIG,   /* [TOOBIG] APPEND over max_size */
} PbMailfolderError;

/* Names: at most this many octets (mUTF-7, as on the wire) and levels. */
#define PB_MAILFOLDER_NAME_MAX 200
#define PB_MAILFOLDER_DEPTH_MAX 16
/* Keywords per folder (Maildir letters a-z) and a keyword's length. */
#define PB_MAILFOLDER_KEYWORDS_MAX 26
#define PB_MAILFOLDER_KEYWORD_LEN_MAX 128

/* System flags of a message (\Recent is per session, read-only). */
typedef enum {
	PB_MSG_ANSWERED = 1 << 0,
	PB_MSG_FLAGGED = 1 << 1,
	PB_MSG_DELETED = 1 << 2,
	PB_MSG_SEEN = 1 << 3,
	PB_MSG_DRAFT = 1 << 4,
	PB_MSG_RECENT = 1 << 5,
} PbMsgFlags;
#define PB_MSG_STORABLE                                                        \
	(PB_MSG_ANSWERED | PB_MSG_FLAGGED | PB_MSG_DELETED | PB_MSG_SEEN |     \
	 PB_MSG_DRAFT)

/* LIST attributes of a folder. */
typedef enum {
	PB_FOLDER_HAS_CHILDREN = 1 << 0,
	PB_FOLDER_HAS_NO_CHILDREN = 1 << 1,
	/* no folder on disk, only children ("A" when only .A.B exists):
	 * \NonExistent (LIST-EXTENDED), \Noselect (RFC 3501) */
	PB_FOLDER_NONEXISTENT = 1 << 2,
	PB_FOLDER_SUBSCRIBED = 1 << 3,
	PB_FOLDER_DRAFTS = 1 << 4, /* SPECIAL-USE (RFC 6154) */
	PB_FOLDER_SENT = 1 << 5,
	PB_FOLDER_TRASH = 1 << 6,
	PB_FOLDER_JUNK = 1 << 7,
	PB_FOLDER_ARCHIVE = 1 << 8,
} PbFolderAttrs;

/* Inclusive range of 0-based message indexes of an open folder. */
typedef struct {
	guint first, last;
} PbMsgRange;

/* ---- names ---- */

/* Checks an IMAP mailbox name (mUTF-7 as received): well-formed modified
 * UTF-7 in its one canonical spelling, decoding to no control character
 * (C0, DEL, C1), printable ASCII, none of "/", "\\", "*", "%", no leading
 * "~", no empty level (no leading, trailing or double "."), no level
 * "tmp", "new" or "cur", at most PB_MAILFOLDER_NAME_MAX octets and
 * PB_MAILFOLDER_DEPTH_MAX levels. PB_MAILFOLDER_ERROR_BADNAME. "INBOX" in
 * any case is valid. A LIST pattern is not a name: match patterns
 * against pb_mailstore_list(). */
gboolean pb_mailfolder_name_check(const char *name, GError **error);
/* The canonical form: a first level "INBOX" in any case becomes "INBOX";
 * the rest is unchanged. Call after pb_mailfolder_name_check(). */
char *pb_mailfolder_name_canon(const char *name);

/* ---- the store: one account's tree ---- */

typedef struct _PbMailStore PbMailStore;

/* Opens the account whose INBOX is the Maildir ROOT (made if missing,
 * 0700, never through a symbolic link). */
PbMailStore *pb_mailstore_open(const char *root, GError **error);
void pb_mailstore_free(PbMailStore *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbMailStore, pb_mailstore_free)
const char *pb_mailstore_root(PbMailStore *st);

/* Creates the special-use folders Drafts, Sent, Trash, Junk, Archive that
 * are missing, and subscribes them (for the first login; a folder the
 * user deleted comes back, as with Dovecot's auto = subscribe). */
gboolean pb_mailstore_ensure_special(PbMailStore *st, GError **error);

typedef struct {
	char *name;  /* mUTF-7, canonical ("INBOX", "A.B") */
	guint attrs; /* PbFolderAttrs */
} PbFolderInfo;
void pb_folder_info_free(PbFolderInfo *fi);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbFolderInfo, pb_folder_info_free)

/* Every folder (INBOX first, then sorted by name), including parents
 * that exist only by their children (PB_FOLDER_NONEXISTENT) and, when
 * WITH_SUBSCRIBED, subscribed names that do not exist (NONEXISTENT |
 * SUBSCRIBED). One readdir of ROOT and one read of subscriptions.
 * Pattern matching (LIST's * and %) is the caller's. */
GPtrArray *pb_mailstore_list(PbMailStore *st, gboolean with_subscribed,
                             GError **error); /* of PbFolderInfo */

/* Does NAME (canonical) exist as a selectable folder? */
gboolean pb_mailstore_exists(PbMailStore *st, const char *name);

/* CREATE: NAME and its missing parents (RFC 3501 6.3.3; a trailing "."
 * is the caller's to strip). ALREADYEXISTS, BADNAME. The folder gets a
 * fresh UIDVALIDITY at once. */
gboolean pb_mailstore_create(PbMailStore *st, const char *name, GError **error);
/* DELETE: removes the folder and its messages (children stay, and NAME
 * then lists as NONEXISTENT when it has any); the folder disappears in
 * one rename before its files are removed. INBOX: CANNOT. */
gboolean pb_mailstore_delete(PbMailStore *st, const char *name, GError **error);
/* RENAME: FROM and its children to TO (ALREADYEXISTS if TO or a child's
 * new name exists, NONEXISTENT, CANNOT when TO is inside FROM, BADNAME
 * when a child's new name is too long); folders keep their UIDVALIDITY and
 * UIDs; subscriptions follow. FROM = INBOX: creates TO (a fresh
 * UIDVALIDITY) and moves INBOX's messages into it (new UIDs there); INBOX
 * stays, empty; its children do not move (RFC 3501 6.3.5). */
gboolean pb_mailstore_rename(PbMailStore *st, const char *from, const char *to,
                             GError **error);

/* SUBSCRIBE / UNSUBSCRIBE (a name need not exist; the file is rewritten
 * durably), and the list of subscribed names (canonical mUTF-7). */
gboolean pb_mailstore_subscribe(PbMailStore *st, const char *name,
                                gboolean subscribe, GError **error);
char **pb_mailstore_subscriptions(PbMailStore *st, GError **error);

typedef struct {
	guint32 messages, recent, unseen, uidnext, uidvalidity;
	guint64 size; /* STATUS=SIZE: sum of RFC822.SIZE */
} PbFolderStatus;
/* STATUS: from names and the uidlist (files new since the last sync get
 * their UIDs now, under the lock, so UIDNEXT is exact); RECENT counts
 * new/. A message without ,W= is read once for SIZE. NONEXISTENT. */
gboolean pb_mailstore_status(PbMailStore *st, const char *name,
                             PbFolderStatus *status, GError **error);

/* ---- an open folder (SELECT / EXAMINE) ---- */

typedef struct _PbMailFolder PbMailFolder;

/* Opens NAME (canonical) and syncs it. READ_ONLY (EXAMINE): flags, \Recent
 * and expunges are never written (UIDs still are: they are not the user's
 * data). Otherwise the messages in new/ are moved to cur/ and the ones
 * this session moved are its \Recent. NONEXISTENT. */
PbMailFolder *pb_mailfolder_open(PbMailStore *st, const char *name,
                                 gboolean read_only, GError **error);
void pb_mailfolder_close(PbMailFolder *f);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbMailFolder, pb_mailfolder_close)

const char *pb_mailfolder_name(PbMailFolder *f);
gboolean pb_mailfolder_read_only(PbMailFolder *f);
guint32 pb_mailfolder_uidvalidity(PbMailFolder *f);
guint32 pb_mailfolder_uidnext(PbMailFolder *f);
/* The folders to watch for a change during IDLE: new/ and cur/, NULL
 * terminated, valid until the folder is closed. */
const char *const *pb_mailfolder_watch_dirs(PbMailFolder *f);

/* The messages as this session knows them, by 0-based index (sequence
 * number - 1), in ascending UID order. Indexes change only in
 * pb_mailfolder_sync(), _expunge() and a MOVE's _copy(); flags also in
 * _store() (and when a read finds another process's rename, reported at
 * the next sync); is_expunged also when a read finds the file gone. */
guint pb_mailfolder_count(PbMailFolder *f);
guint pb_mailfolder_recent_count(PbMailFolder *f);
guint32 pb_mailfolder_uid(PbMailFolder *f, guint i);
/* Binary search: the index of UID, or of the first message with a UID
 * above it (== count when none); TRUE when UID itself is there. */
gboolean pb_mailfolder_find_uid(PbMailFolder *f, guint32 uid, guint *index);
guint pb_mailfolder_flags(PbMailFolder *f, guint i);      /* PbMsgFlags */
guint32 pb_mailfolder_keywords(PbMailFolder *f, guint i); /* bit k: kw k */
/* Set when another process removed the message after the last sync that
 * could report expunges (see PB_SYNC_NO_EXPUNGE): FETCH of it fails. */
gboolean pb_mailfolder_is_expunged(PbMailFolder *f, guint i);
/* RFC822.SIZE (octets with CRLF): from ,W=, the uidlist's W, else the
 * file is read once (and W kept in the uidlist at the next write). */
gboolean pb_mailfolder_size(PbMailFolder *f, guint i, guint64 *size,
                            GError **error);
/* INTERNALDATE: the file's mtime in seconds (one stat, then cached). */
gboolean pb_mailfolder_internaldate(PbMailFolder *f, guint i, gint64 *date,
                                    GError **error);
/* A read-only descriptor on the message (O_NOFOLLOW, regular file; a
 * message renamed meanwhile is found again): the caller closes it.
 * PB_MAILFOLDER_ERROR_EXPUNGED when it is gone. */
int pb_mailfolder_open_message(PbMailFolder *f, guint i, GError **error);

/* The keywords defined in this folder (for FLAGS / PERMANENTFLAGS), NULL
 * terminated; and the name of bit K of pb_mailfolder_keywords() (NULL
 * when the letter has no name: such a letter is kept in the file name
 * but not shown). Both valid until the next sync or keyword call.
 * Index k of the list is bit k only when dovecot-keywords has no gaps
 * (ours never have; a hand-edited one may): name bits with
 * pb_mailfolder_keyword_name(). */
const char *const *pb_mailfolder_keyword_names(PbMailFolder *f);
const char *pb_mailfolder_keyword_name(PbMailFolder *f, guint k);
/* The bit of keyword NAME (case-insensitive, RFC 3501 atom chars, not
 * starting with "\\"); CREATE adds it to the table (dovecot-keywords
 * rewritten under the lock): LIMIT when 26 are taken, BADNAME for a bad
 * atom. Without CREATE an unknown keyword is -1 without an error. */
gint pb_mailfolder_keyword(PbMailFolder *f, const char *name, gboolean create,
                           GError **error);

typedef enum {
	PB_SYNC_NO_EXPUNGE = 1 << 0, /* during FETCH/STORE/SEARCH (RFC 3501
	                               7.4.1): keep vanished messages, marked
	                               is_expunged, until a later sync */
} PbSyncFlags;

/* What a sync found, to tell the client. */
typedef struct {
	/* "* N EXPUNGE" to send, in this order (each N already counts the
	 * ones sent before it); the messages are gone from the indexes */
	GArray *expunged; /* guint */
	/* indexes (after the expunges) whose flags or keywords changed by
	 * another process: "* N FETCH (FLAGS ...)" */
	GArray *changed;        /* guint */
	guint exists;           /* the count now: "* EXISTS" when it grew */
	guint recent;           /* "* RECENT" when it changed */
	gboolean keywords_grew; /* send FLAGS and PERMANENTFLAGS again */
} PbFolderChanges;
void pb_folder_changes_init(PbFolderChanges *ch);
void pb_folder_changes_clear(PbFolderChanges *ch);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(PbFolderChanges, pb_folder_changes_clear)

/* Looks at the folder again (NOOP, CHECK, IDLE, after each command): new
 * files get UIDs (under the lock, appended to the index), files moved
 * from new/ become this session's \Recent (unless read-only), flags
 * changed by others and vanished messages are reported in CH. Cheap when
 * nothing changed (the folders' mtimes). */
gboolean pb_mailfolder_sync(PbMailFolder *f, guint flags, PbFolderChanges *ch,
                            GError **error);

typedef enum {
	PB_STORE_REPLACE, /* FLAGS */
	PB_STORE_ADD,     /* +FLAGS */
	PB_STORE_REMOVE,  /* -FLAGS */
} PbStoreOp;
/* STORE: renames each message of the ranges whose flags change (one fsync
 * of cur/ at the end). FLAGS: PbMsgFlags (RECENT ignored), KEYWORDS: bits
 * from pb_mailfolder_keyword(). CHANGED (optional) gets the indexes whose
 * flags changed (for the FETCH replies). A message gone meanwhile is
 * skipped (marked expunged). READONLY on an EXAMINEd folder. */
gboolean pb_mailfolder_store(PbMailFolder *f, const PbMsgRange *ranges,
                             guint n_ranges, PbStoreOp op, guint flags,
                             guint32 keywords, GArray *changed, GError **error);

/* EXPUNGE (RANGES NULL) or UID EXPUNGE (only within RANGES): unlinks
 * every message with \Deleted, fsyncs cur/; EXPUNGED gets the
 * "* N EXPUNGE" numbers to send, in order (as PbFolderChanges). */
gboolean pb_mailfolder_expunge(PbMailFolder *f, const PbMsgRange *ranges,
                               guint n_ranges, GArray *expunged,
                               GError **error);

/* COPY (MOVE FALSE: hard link, else a copy) or MOVE (rename) of the
 * messages in RANGES to folder DEST (canonical; NONEXISTENT, and
 * CANNOT when DEST is this folder for a MOVE). Flags and keywords go
 * along (keywords mapped to DEST's table). The new files are fsync'ed and
 * linked, DEST's cur/ fsync'ed, then they get UIDs in DEST under its
 * lock. Fills *DEST_UIDVALIDITY and, in order, SRC_UIDS and DEST_UIDS
 * (guint32, for COPYUID). MOVE: then unlinks the sources (fsync of cur/)
 * and fills EXPUNGED like _expunge(). Messages gone meanwhile are left
 * out. READONLY for a MOVE from an EXAMINEd folder. */
gboolean pb_mailfolder_copy(PbMailFolder *f, const PbMsgRange *ranges,
                            guint n_ranges, const char *dest, gboolean move,
                            guint32 *dest_uidvalidity, GArray *src_uids,
                            GArray *dest_uids, GArray *expunged,
                            GError **error);

/* ---- APPEND, streamed ---- */

typedef struct _PbAppend PbAppend;

/* Starts APPEND to NAME (canonical): a file in NAME's tmp/ (O_EXCL,
 * 0600). MAX_SIZE: TOOBIG as soon as more is written (0: no limit).
 * NONEXISTENT ([TRYCREATE] for the session). */
PbAppend *pb_append_begin(PbMailStore *st, const char *name, guint64 max_size,
                          GError **error);
/* Writes a chunk of the literal; CRLF is stored as LF (a CR at a chunk's
 * end is held until the next one), counting S= and W=. */
gboolean pb_append_write(PbAppend *a, const char *buf, gsize len,
                         GError **error);
/* Finishes: fsync, close, link into cur/ (new/ when FLAGS has no flag
 * and no keyword: the next session to look gets \Recent) named
 * <unique>,S=..,W=..:2,<flags>, fsync of the folder, UID assigned under
 * the lock and the uidlist written; only then TRUE with *UIDVALIDITY and
 * *UID (APPENDUID). KEYWORDS: NULL-terminated names (LIMIT when the
 * table is full); DATE: INTERNALDATE (seconds), < 0 for now. Frees A. */
gboolean pb_append_commit(PbAppend *a, guint flags, const char *const *keywords,
                          gint64 date, guint32 *uidvalidity, guint32 *uid,
                          GError **error);
/* Removes the temporary file and frees A. */
void pb_append_abort(PbAppend *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbAppend, pb_append_abort)

/* ---- parsers of the Dovecot files (pure; fuzzed) ---- */

typedef struct {
	guint version; /* 3 */
	guint32 uidvalidity;
	guint32 uidnext;
	char *header_rest; /* other header fields (G<guid> ...), kept */
	GArray *recs;      /* PbUidRec, ascending UIDs */
} PbUidlist;
typedef struct {
	guint32 uid;
	char *name; /* the last known file name; its base (before ":") is
	               the key */
	char *ext; /* the extension fields before " :" (W<size> ...), or NULL */
} PbUidRec;
/* Parses a dovecot-uidlist (version 3, or Dovecot 1's version 1); bad
 * lines are skipped, a bad header is PB_ERROR_DATA (the folder then gets
 * a new UIDVALIDITY). UIDs out of order or repeated are dropped, and so is
 * an unfinished last line (a writer appending). */
PbUidlist *pb_uidlist_parse(const char *text, gsize len, GError **error);
char *pb_uidlist_format(const PbUidlist *ul, gsize *len);
void pb_uidlist_free(PbUidlist *ul);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbUidlist, pb_uidlist_free)

/* dovecot-keywords: PB_MAILFOLDER_KEYWORDS_MAX + 1 slots, the name of
 * index k in slot k (NULL where none: gaps are possible, so free it with
 * pb_keywords_free(), not g_strfreev()). */
char **pb_keywords_parse(const char *text, gsize len);
void pb_keywords_free(char **kw);
/* subscriptions (version 2, or Dovecot 1's one name a line) into
 * mUTF-7 names with "." separators; names that fail
 * pb_mailfolder_name_check() are dropped. */
char **pb_subscriptions_parse(const char *text, gsize len);

#endif
