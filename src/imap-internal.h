/*
 * imap-internal.h - what imap-server.c, imap-fetch.c and imap-search.c
 * share: the session struct and the helpers each command uses. Private
 * to those three files; everyone else uses imap-server.h.
 */
#ifndef PB_IMAP_INTERNAL_H
#define PB_IMAP_INTERNAL_H

#include <glib.h>

#include "imap-parser.h"
#include "imap-server.h"
#include "mailfolder.h"

typedef enum {
	ST_NOT_AUTH = 1 << 0,
	ST_AUTH = 1 << 1,
	ST_SELECTED = 1 << 2,
	ST_LOGOUT = 1 << 3,
} ImapState;

typedef enum {
	SUB_NONE,
	SUB_IDLE,         /* after "+ idling", until DONE */
	SUB_AUTHENTICATE, /* after "+ ", waiting for the SASL response */
	SUB_APPEND,       /* the message literal is streamed to a PbAppend */
} ImapSub;

struct _PbImapServer {
	const PbImapHooks *hooks;
	void *data;
	PbLineOut *out;
	char *hostname;
	gboolean plaintext_ok, tls_available, tls;
	guint64 max_message_size;

	ImapState state;
	ImapSub sub;
	PbImapAction action;
	PbImapParser *parser;
	char *sub_tag; /* the tag of the IDLE / AUTHENTICATE / APPEND */
	guint auth_failures, errors;
	char *user;

	PbMailStore *store;
	PbMailFolder *folder; /* SELECTED */
	guint exists_sent;    /* what the client was told last */
	guint recent_sent;
	guint keywords_sent; /* keyword names announced in FLAGS */

	/* APPEND in progress */
	PbAppend *append;
	GError *append_error; /* a write failed: answered at the end */
	PbImapFlags append_flags;
	gint64 append_date;

	gboolean no_expunge;    /* the command in progress is FETCH, STORE
	                           or SEARCH (not their UID forms) */
	const char *no_dirs[1]; /* watch_dirs() when nothing is selected */
};

/* The tagged OK: first, in SELECTED, the folder is synced and its
 * changes sent (EXPUNGE only when the command allows it: s->no_expunge
 * is set for FETCH, STORE and SEARCH, RFC 3501 7.4.1). */
void pb_imap_ok(PbImapServer *s, const char *tag, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
/* Syncs the selected folder and sends what changed. */
void pb_imap_sync(PbImapServer *s, gboolean allow_expunge);

/* Output */
void pb_imap_reply(PbImapServer *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void pb_imap_write(PbImapServer *s, const GString *text);
/* "TAG BAD TEXT", counting toward PB_IMAP_MAX_ERRORS. */
void pb_imap_bad(PbImapServer *s, const char *tag, const char *text);
/* "TAG NO [CODE] text" for a GError of mailfolder or PB_ERROR. */
void pb_imap_no_error(PbImapServer *s, const char *tag, const GError *error);
/* "(\Seen $kw ...)" of message I of the selected folder. */
void pb_imap_append_flags(PbImapServer *s, GString *out, guint i);
/* A compact UID set "1:3,7" of the ascending array UIDS (guint32). */
void pb_imap_append_uid_set(GString *out, const GArray *uids);

/* Message sets of the selected folder as 0-based index ranges (BAD
 * replied and FALSE for a bad set); UID sets map to the messages that
 * exist. */
gboolean pb_imap_message_ranges(PbImapServer *s, const char *tag,
                                const PbImapArg *arg, gboolean uid,
                                GArray **ranges);

/* PB_IMAP_FLAG_* (parser) to PB_MSG_* (mailfolder). */
guint pb_imap_msg_flags(guint imap_flags);

/* FLAGS and PERMANENTFLAGS again when the keyword table grew. */
void pb_imap_announce_keywords(PbImapServer *s);

/* imap-fetch.c: FETCH and STORE (ARGS after the command name). */
void pb_imap_cmd_fetch(PbImapServer *s, const char *tag, const PbImapArg *args,
                       guint n, gboolean uid);
void pb_imap_cmd_store(PbImapServer *s, const char *tag, const PbImapArg *args,
                       guint n, gboolean uid);
/* "* N FETCH (FLAGS (...))" (with UID when WITH_UID) of index I. */
void pb_imap_send_flags(PbImapServer *s, guint i, gboolean with_uid);

/* imap-search.c: SEARCH (ARGS after the command name). */
void pb_imap_cmd_search(PbImapServer *s, const char *tag, const PbImapArg *args,
                        guint n, gboolean uid);

#endif
