/*
 * pop3-serve.c - one POP3 connection (see pop3-serve.h).
 *
 * Guarantees: every read has the [pop3d] timeout (the autologout timer)
 * as deadline; a failed login is answered only after the same pause
 * whether the user exists or not; only the authenticated account's
 * Maildir is opened, and it is unlocked however the session ends; a
 * dropped connection deletes nothing (no UPDATE state).
 */
#include "pop3-serve.h"
#include "accounts.h"
#include "address.h"
#include "conn.h"
#include "error.h"
#include "log.h"
#include "login.h"
#include "mailbox.h"
#include "pop3-server.h"
#include "ratelimit.h"

#include <string.h>
#include <unistd.h>

#define AUTH_DELAY_MS 1000 /* after every failed login, user known or not */

typedef struct {
	const PbConfig *cfg;
	const PbPop3Serve *how;
	const PbPeer *peer;
	PbAccounts *accounts;
	PbMailbox *mb;
	char *user;
} Serve;

static gboolean
hook_authenticate(void *data, const char *user, const char *pass)
{
	Serve *sv = data;

	/* the session asked hook_blocked and hook_accounts_ready just
	 * before */
	return pb_login_verify(sv->cfg, sv->accounts, user, pass, sv->peer->ip);
}

/* The accounts are read at the first login attempt, not at the
 * connection: many connections (probes, a client that only asks CAPA,
 * a QUIT) never need them. */
static gboolean
hook_accounts_ready(void *data)
{
	Serve *sv = data;
	g_autoptr(GError) error = NULL;

	if (sv->accounts == NULL)
		sv->accounts = pb_accounts_load(sv->cfg->accounts, &error);
	if (sv->accounts == NULL)
		pb_log_error(NULL, "%s", error->message);
	return sv->accounts != NULL;
}

static gboolean
hook_blocked(void *data)
{
	Serve *sv = data;

	return pb_ratelimit_blocked(sv->cfg, sv->peer->ip);
}

static PbPop3Open
hook_open(void *data, const char *user)
{
	Serve *sv = data;
	g_autofree char *canonical = pb_address_canonical(user, "");
	g_autofree char *dir = pb_login_maildir(sv->cfg, canonical);
	g_autoptr(GError) error = NULL;

	if (dir == NULL)
		return PB_POP3_OPEN_FAILED;
	sv->mb = pb_mailbox_open(dir, &error);
	if (sv->mb == NULL) {
		pb_log_warn(NULL, "mailbox of <%s>: %s", canonical,
		            error->message);
		return g_error_matches(error, PB_ERROR, PB_ERROR_BUSY)
		           ? PB_POP3_OPEN_IN_USE
		           : PB_POP3_OPEN_FAILED;
	}
	sv->user = g_steal_pointer(&canonical);
	return PB_POP3_OPEN_OK;
}

static guint
hook_count(void *data)
{
	return pb_mailbox_count(((Serve *)data)->mb);
}

static guint64
hook_size(void *data, guint i)
{
	return pb_mailbox_size(((Serve *)data)->mb, i);
}

static const char *
hook_uid(void *data, guint i)
{
	return pb_mailbox_uid(((Serve *)data)->mb, i);
}

static gboolean
hook_send(void *data, guint i, gint64 body_lines, PbLineOut *out)
{
	Serve *sv = data;
	g_autoptr(GError) error = NULL;

	if (pb_mailbox_send(sv->mb, i, body_lines, out, &error))
		return TRUE;
	pb_log_warn(NULL, "mailbox of <%s>: %s", sv->user, error->message);
	return FALSE;
}

static gboolean
hook_commit(void *data, const gboolean *deleted)
{
	Serve *sv = data;
	g_autoptr(GError) error = NULL;

	if (pb_mailbox_commit(sv->mb, deleted, &error))
		return TRUE;
	pb_log_error(NULL, "mailbox of <%s>: %s", sv->user, error->message);
	return FALSE;
}

static const PbPop3Hooks hooks = {
    .authenticate = hook_authenticate,
    .open = hook_open,
    .count = hook_count,
    .size = hook_size,
    .uid = hook_uid,
    .send = hook_send,
    .commit = hook_commit,
    .blocked = hook_blocked,
    .accounts_ready = hook_accounts_ready,
};

static void
converse(Serve *sv, PbConn *conn, PbPop3Server *s)
{
	g_autoptr(GError) error = NULL;
	gint64 timeout = sv->cfg->pop3d_timeout;
	if (sv->how->implicit_tls) {
		if (!pb_tls_server_start(conn, sv->how->tls,
		                         pb_deadline_in(timeout), &error)) {
			pb_log_info(NULL, "TLS from [%s] failed: %s",
			            sv->peer->ip, error->message);
			return;
		}
		pb_pop3_server_tls_started(s);
	}
	pb_pop3_server_greet(s);
	for (;;) {
		PbPop3Action action = pb_pop3_server_next_action(s);
		const char *line;
		gsize len;
		guint flags;
		if (action == PB_POP3_AUTH_DELAY)
			g_usleep(AUTH_DELAY_MS * 1000);
		if (action == PB_POP3_STLS) {
			/* RFC 2595 4: drop what was pipelined after STLS */
			if (!pb_conn_flush(conn, pb_deadline_in(timeout),
			                   &error))
				break;
			pb_conn_purge_input(conn);
			if (!pb_tls_server_start(conn, sv->how->tls,
			                         pb_deadline_in(timeout),
			                         &error))
				break;
			pb_pop3_server_tls_started(s);
			continue;
		}
		if ((action != PB_POP3_NONE || !pb_conn_pending(conn)) &&
		    !pb_conn_flush(conn, pb_deadline_in(timeout), &error))
			break;
		if (action == PB_POP3_CLOSE)
			return;
		if (!pb_conn_read_line(conn, &line, &len, &flags,
		                       pb_deadline_in(timeout), &error))
			break;
		pb_pop3_server_line(s, line, len, flags);
		if (sv->mb != NULL)
			pb_mailbox_keep_locked(sv->mb);
	}
	if (g_error_matches(error, PB_ERROR, PB_ERROR_TIMEOUT)) {
		pb_pop3_server_timeout(s);
		(void)pb_conn_flush(conn, pb_deadline_in(5), NULL);
	}
}

void
pb_pop3_serve(const PbPop3Serve *how, int rfd, int wfd, const PbPeer *peer)
{
	const PbConfig *cfg = how->cfg;
	g_autoptr(PbConn) conn = pb_conn_new(rfd, wfd);
	PbLineOut out = pb_conn_line_out(conn);
	Serve sv = {.cfg = cfg, .how = how, .peer = peer};
	g_autoptr(PbPop3Server) s = NULL;

	pb_log_info(NULL, "connect from [%s]:%u", peer->ip, peer->port);
	s = pb_pop3_server_new(&hooks, &sv, &out, cfg->hostname,
	                       cfg->plaintext_auth ||
	                           pb_login_is_loopback(peer->ip));
	pb_pop3_server_set_tls_available(s, how->tls != NULL);
	converse(&sv, conn, s);
	if (sv.user)
		pb_log_info(NULL,
		            "logout <%s> from [%s]: retrieved=%u, deleted=%u",
		            sv.user, peer->ip, pb_pop3_server_retrieved(s),
		            pb_pop3_server_deleted(s));
	pb_log_info(NULL, "disconnect from [%s]:%u", peer->ip, peer->port);
	g_clear_pointer(&sv.mb, pb_mailbox_close);
	g_free(sv.user);
	pb_accounts_free(sv.accounts);
}
