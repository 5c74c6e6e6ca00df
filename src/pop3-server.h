/*
 * pop3-server.h - the POP3 session as a state machine (RFC 1939; CAPA
 * and response codes, RFC 2449; AUTH PLAIN, RFC 5034; UTF8, RFC 6856),
 * fed one command line at a time.
 *
 * It makes no system calls: replies go to a PbLineOut, and the accounts
 * and the mailbox are reached through PbPop3Hooks, which the tests
 * replace. States: AUTHORIZATION, TRANSACTION, UPDATE (RFC 1939 3).
 * Guarantees: deletions reach the hooks only at QUIT in TRANSACTION;
 * unknown user and wrong password get the same reply and the same
 * delay (the socket side waits when next_action says so); passwords are
 * never logged or echoed.
 */
#ifndef PB_POP3_SERVER_H
#define PB_POP3_SERVER_H

#include <glib.h>

#include "conn.h"

#define PB_POP3_MAX_AUTH_FAILURES 3
#define PB_POP3_MAX_ERRORS 10

typedef enum {
	PB_POP3_NONE,
	PB_POP3_AUTH_DELAY, /* flush after a pause (a failed login) */
	PB_POP3_STLS,       /* flush, empty the input, start TLS, then call
	                       pb_pop3_server_tls_started() */
	PB_POP3_CLOSE,
} PbPop3Action;

typedef enum {
	PB_POP3_OPEN_OK,
	PB_POP3_OPEN_IN_USE,
	PB_POP3_OPEN_FAILED,
} PbPop3Open;

typedef struct {
	/* TRUE if USER's password is PASS. */
	gboolean (*authenticate)(void *data, const char *user,
	                         const char *pass);
	/* Locks and reads the mailbox of USER (authenticated). */
	PbPop3Open (*open)(void *data, const char *user);
	guint (*count)(void *data);
	guint64 (*size)(void *data, guint i); /* 0-based */
	const char *(*uid)(void *data, guint i);
	/* Writes message I as RETR (BODY_LINES < 0) or TOP does, with the
	 * terminating dot; FALSE if it could not be read. */
	gboolean (*send)(void *data, guint i, gint64 body_lines,
	                 PbLineOut *out);
	/* The UPDATE state: DELETED has count() flags. */
	gboolean (*commit)(void *data, const gboolean *deleted);
	/* TRUE if this client may not try a password now (too many
	 * failures lately): the login gets -ERR [SYS/TEMP] and the session
	 * ends, without a password check. NULL: never. */
	gboolean (*blocked)(void *data);
	/* FALSE if the accounts cannot be read now (asked before every
	 * password check): the login gets -ERR [SYS/TEMP] and the session
	 * ends. NULL: always readable. */
	gboolean (*accounts_ready)(void *data);
} PbPop3Hooks;

typedef struct _PbPop3Server PbPop3Server;

/* PLAINTEXT_OK: USER/PASS and AUTH PLAIN are allowed (TLS, loopback or
 * [tls] plaintext_auth). HOSTNAME is used in the greeting. */
PbPop3Server *pb_pop3_server_new(const PbPop3Hooks *hooks, void *hook_data,
                                 PbLineOut *out, const char *hostname,
                                 gboolean plaintext_ok);
void pb_pop3_server_free(PbPop3Server *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbPop3Server, pb_pop3_server_free)

/* STLS may be offered (RFC 2595). */
void pb_pop3_server_set_tls_available(PbPop3Server *s, gboolean available);
/* TLS is up (STLS or implicit): plaintext logins are allowed now. */
void pb_pop3_server_tls_started(PbPop3Server *s);

void pb_pop3_server_greet(PbPop3Server *s);
void pb_pop3_server_line(PbPop3Server *s, const char *line, gsize len,
                         guint flags);
/* The autologout timer ran out: close without UPDATE. */
void pb_pop3_server_timeout(PbPop3Server *s);
PbPop3Action pb_pop3_server_next_action(PbPop3Server *s);

/* The logged-in user (NULL before), and what the session did. */
const char *pb_pop3_server_user(PbPop3Server *s);
guint pb_pop3_server_retrieved(PbPop3Server *s);
guint pb_pop3_server_deleted(PbPop3Server *s);

#endif
