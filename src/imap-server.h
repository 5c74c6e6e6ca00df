/*
 * imap-server.h - the IMAP4rev1 session as a state machine (RFC 3501,
 * clarified by RFC 9051), fed raw input octets.
 *
 * It makes no system calls of its own: replies go to a PbLineOut; the
 * account's folders are reached through mailfolder.h, messages through
 * message.h/mime.h; what belongs to the socket side (password check,
 * failed-login rate limit, the per-user connection slot, logging) goes
 * through PbImapHooks, which the tests replace. It keeps no clock: the
 * socket side calls pb_imap_server_check() (IDLE) and
 * pb_imap_server_timeout() (autologout).
 *
 * States: NOT AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT (RFC 3501
 * 3), with IDLE, APPEND (a message literal streamed into the folder) and
 * AUTHENTICATE (waiting for the SASL response) as sub-states.
 *
 * Guarantees: untagged EXISTS/EXPUNGE/FETCH updates are sent only where
 * RFC 3501 7.4.1 allows (never during FETCH, STORE or SEARCH without
 * UID, so message numbers stay stable); a literal's size is checked
 * before "+" is sent; an APPEND literal is never held in memory whole;
 * unknown user and wrong password get one reply and one pause; three
 * failed logins end the session; passwords are never logged or echoed;
 * after STARTTLS nothing read before it is used (the caller purges its
 * buffer; the session resets its own).
 */
#ifndef PB_IMAP_SERVER_H
#define PB_IMAP_SERVER_H

#include <glib.h>

#include "conn.h"

#define PB_IMAP_MAX_AUTH_FAILURES 3   /* the third failure ends it */
#define PB_IMAP_MAX_ERRORS 20         /* BAD commands before BYE */
#define PB_IMAP_KEEPALIVE_SECONDS 120 /* "* OK Still here" in IDLE */
/* the autologout timer (RFC 3501 5.4): before login, and the least
 * after login whatever [imapd] timeout says */
#define PB_IMAP_TIMEOUT_NOT_AUTH_SECONDS 180
#define PB_IMAP_TIMEOUT_MIN_AUTH_SECONDS 1800

typedef enum {
	PB_IMAP_NONE,       /* read more input */
	PB_IMAP_FLUSH,      /* flush output, then read more */
	PB_IMAP_AUTH_DELAY, /* flush after a pause (failed login) */
	PB_IMAP_STARTTLS,   /* flush, purge input, start TLS, then
	                       pb_imap_server_tls_started() */
	PB_IMAP_IDLE,       /* flush; wait for input or a change of the
	                       selected folder (inotify on
	                       pb_imap_server_watch_dirs()), call
	                       pb_imap_server_check() on a change and every
	                       PB_IMAP_KEEPALIVE_SECONDS (it sends the
	                       keepalive) */
	PB_IMAP_CLOSE,      /* flush and close the connection */
} PbImapAction;

typedef enum {
	PB_IMAP_ACCOUNT_OK,
	PB_IMAP_ACCOUNT_LIMIT,  /* too many connections of this user */
	PB_IMAP_ACCOUNT_FAILED, /* no Maildir (a temporary failure) */
} PbImapAccount;

typedef struct {
	/* TRUE if USER's password is PASS. The socket side logs the
	 * attempt and counts a failure in its rate limiter. */
	gboolean (*authenticate)(void *data, const char *user,
	                         const char *pass);
	/* TRUE if this client may not try a password now (too many
	 * failures lately): NO [UNAVAILABLE] and BYE, without a password
	 * check. NULL: never. */
	gboolean (*blocked)(void *data);
	/* After a successful authenticate: takes one of USER's connection
	 * slots ([imapd] max_user_connections, released when the
	 * connection ends) and sets *MAILDIR to the account's Maildir
	 * (newly allocated; the session frees it). */
	PbImapAccount (*open_account)(void *data, const char *user,
	                              char **maildir);
	/* One line for the log (optional, NULL: none); never a password. */
	void (*log)(void *data, const char *message);
} PbImapHooks;

typedef struct {
	const char *hostname;     /* in the greeting (copied) */
	gboolean plaintext_ok;    /* LOGIN/AUTHENTICATE allowed without TLS
	                             (loopback or [tls] plaintext_auth) */
	gboolean tls_available;   /* STARTTLS may be offered */
	gboolean tls_active;      /* implicit TLS (port 993) */
	guint64 max_message_size; /* APPEND limit, APPENDLIMIT=; 0: none */
} PbImapSettings;

typedef struct _PbImapServer PbImapServer;

PbImapServer *pb_imap_server_new(const PbImapHooks *hooks, void *data,
                                 PbLineOut *out,
                                 const PbImapSettings *settings);
void pb_imap_server_free(PbImapServer *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbImapServer, pb_imap_server_free)

/* "* OK [CAPABILITY ...] HOSTNAME IMAP4rev1 ready". */
void pb_imap_server_greet(PbImapServer *s);

/* Feeds raw input; returns how many octets were consumed. It may consume
 * fewer than LEN (it stops after a command that needs an action: check
 * pb_imap_server_next_action()); the caller keeps the rest and calls
 * again after acting. In PB_IMAP_CLOSE it consumes nothing. */
gsize pb_imap_server_feed(PbImapServer *s, const char *buf, gsize len);

/* What the caller does next; reading it resets FLUSH/AUTH_DELAY to
 * NONE (IDLE and CLOSE stay while they hold). */
PbImapAction pb_imap_server_next_action(PbImapServer *s);

/* TLS is up after STARTTLS: the capabilities change (no more
 * LOGINDISABLED/STARTTLS) and the session's own input state is reset. */
void pb_imap_server_tls_started(PbImapServer *s);

/* In IDLE: syncs the selected folder and sends what changed; with
 * KEEPALIVE also "* OK Still here". Outside IDLE: nothing. */
void pb_imap_server_check(PbImapServer *s, gboolean keepalive);

/* The folders whose changes end an IDLE wait (the selected folder's new/
 * and cur/), NULL-terminated, owned by the session; empty when none. */
const char *const *pb_imap_server_watch_dirs(PbImapServer *s);

/* The autologout timer ran out: "* BYE Autologout", then CLOSE. */
void pb_imap_server_timeout(PbImapServer *s);

/* The logged-in user (as given at login), NULL before. */
const char *pb_imap_server_user(PbImapServer *s);

/* The input deadline to use now, in seconds, given [imapd] timeout
 * (TIMEOUT_AUTH): PB_IMAP_TIMEOUT_NOT_AUTH_SECONDS before login, after
 * it TIMEOUT_AUTH but never less than PB_IMAP_TIMEOUT_MIN_AUTH_SECONDS. */
guint pb_imap_server_timeout_seconds(PbImapServer *s, guint timeout_auth);

#endif
