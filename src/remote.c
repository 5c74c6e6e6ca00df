/*
 * remote.c - delivery to one remote destination (see remote.h).
 *
 * The hosts: the [routes] entry for the domain (or "*"), else the MX
 * hosts from DNS in preference order; each host's addresses in turn, at
 * most MAX_ADDRESSES of them in all.
 * As Postfix does: a failure to connect, a greeting or EHLO refused, or a
 * connection lost before MAIL was answered moves on to the next address
 * with the messages still to send; once a server has answered MAIL, its
 * answers are final for this run (4xx defers, 5xx fails the recipient).
 * One connection carries every message of the destination, one
 * transaction per message with all its recipients.
 *
 * Guarantees: every recipient given is reported exactly once; a reply is
 * reported only as smtp-client.c sanitised it; a connection lost after
 * the final dot is a temporary failure logged "possible duplicate".
 */
#include "remote.h"
#include "dns.h"
#include "error.h"
#include "log.h"
#include "smtp-client.h"

#include <string.h>
#include <unistd.h>

/* addresses tried in one delivery (Postfix's smtp_mx_address_limit) */
#define MAX_ADDRESSES 5

typedef struct {
	const PbConfig *cfg;
	PbRemoteReport report;
	void *ctx;
	GPtrArray *todo;  /* PbRemoteMessage* not yet sent */
	char *last_error; /* why the last host did not take the mail */
	const char *last_dsn;
	gboolean last_perm;
	const char *domain;
	const char *tls; /* of the current connection */
} Remote;

/* Reports and logs one recipient's outcome. */
static void
outcome(Remote *r, const PbRemoteMessage *m, guint idx, PbOutcomeKind kind,
        const char *dsn, const char *host, const char *reply)
{
	static const char *const status[] = {"sent", "deferred", "bounced"};
	const PbRecipient *rcpt = g_ptr_array_index(m->env->rcpts, idx);
	PbOutcome o = {kind, dsn, host, reply, *host ? r->tls : "none"};

	pb_log_info(m->env->id,
	            "to=<%s>, relay=%s, delay=%.2f, tls=%s, dsn=%s, status=%s "
	            "(%s)",
	            rcpt->address, *host ? host : "none",
	            MAX(0.0, g_get_real_time() / 1e6 - (double)m->env->arrival),
	            o.tls, dsn, status[kind], reply);
	r->report(r->ctx, m, idx, &o);
}

static PbOutcomeKind
kind_of(guint code)
{
	return code / 100 == 2   ? PB_OUTCOME_SENT
	       : code / 100 == 5 ? PB_OUTCOME_PERM
	                         : PB_OUTCOME_TEMP;
}

/* Everything still to send gets the same outcome. */
static void
report_all(Remote *r, PbOutcomeKind kind, const char *dsn, const char *reply)
{
	for (guint i = 0; i < r->todo->len; i++) {
		const PbRemoteMessage *m = g_ptr_array_index(r->todo, i);
		for (guint j = 0; j < m->rcpts->len; j++)
			outcome(r, m, g_array_index(m->rcpts, guint, j), kind,
			        dsn, "", reply);
	}
	g_ptr_array_set_size(r->todo, 0);
}

/* Why a recipient whose answer is WHY got none, or NULL when it got one
 * (a refusal at RCPT stands, whatever happened later). */
static const char *
unsettled(const PbSmtpResult *res, const PbSmtpReply *why)
{
	if (why != NULL)
		return NULL;
	if (res->failure != NULL)
		return res->failure;
	if (res->after_dot)
		return "lost connection after the end of data";
	return "lost connection during the transaction";
}

/* The outcome of one transaction, per recipient. A recipient whose
 * RCPT was never answered (the server hung up) is deferred; nothing here
 * trusts the result to hold a reply per recipient. */
static void
settle(Remote *r, const PbRemoteMessage *m, const PbSmtpResult *res,
       const char *host)
{
	if (res->failure != NULL)
		pb_log_error(m->env->id, "not sent to %s: %s", host,
		             res->failure);
	if (res->after_dot)
		pb_log_warn(m->env->id,
		            "lost connection with %s after the final dot: "
		            "possible duplicate",
		            host);
	for (guint j = 0; j < m->rcpts->len; j++) {
		guint idx = g_array_index(m->rcpts, guint, j);
		const PbSmtpReply *why = res->mail;
		const char *lost;

		if (why != NULL && why->code / 100 == 2)
			why = j < res->rcpt->len
			          ? g_ptr_array_index(res->rcpt, j)
			          : NULL;
		if (why != NULL && why->code / 100 == 2)
			why = res->data && res->data->code != 354 ? res->data
			                                          : res->final;
		if ((lost = unsettled(res, why)) != NULL)
			outcome(r, m, idx, PB_OUTCOME_TEMP,
			        res->failure ? "4.3.0" : "4.4.2", host, lost);
		else
			outcome(r, m, idx, kind_of(why->code), why->dsn, host,
			        why->text);
	}
}

static char **
addresses_of(const PbRemoteMessage *m)
{
	char **out = g_new0(char *, m->rcpts->len + 1);

	for (guint j = 0; j < m->rcpts->len; j++) {
		const PbRecipient *rcpt = g_ptr_array_index(
		    m->env->rcpts, g_array_index(m->rcpts, guint, j));
		out[j] = rcpt->address;
	}
	return out;
}

/* Messages that need SMTPUTF8 cannot go to a server without it. */
static gboolean
refuse_utf8(Remote *r, const PbRemoteMessage *m, PbSmtpClient *c,
            const char *host)
{
	if (!m->env->smtputf8 || pb_smtp_client_caps(c)->smtputf8)
		return FALSE;
	for (guint j = 0; j < m->rcpts->len; j++)
		outcome(r, m, g_array_index(m->rcpts, guint, j),
		        PB_OUTCOME_PERM, "5.6.7", host,
		        "the message needs SMTPUTF8, which the server does not "
		        "offer");
	return TRUE;
}

/* Sends what is left over one connection; messages the server never
 * answered stay in r->todo for the next address. */
/* Opportunistic STARTTLS (RFC 7435), or required by [delivery]
 * require_tls / require_verified_tls: then no TLS means the next host. */
static gboolean
secure(Remote *r, PbSmtpClient *c, const char *name, const char *host)
{
	gboolean need_verified =
	    pb_config_domain_listed(r->cfg->require_verified_tls, r->domain);
	gboolean need = need_verified ||
	                pb_config_domain_listed(r->cfg->require_tls, r->domain);
	g_autoptr(GError) error = NULL;
	gboolean verified;

	r->tls = "none";
	if (!pb_smtp_client_caps(c)->starttls) {
		if (!need)
			return TRUE;
		g_free(r->last_error);
		r->last_error = g_strdup_printf(
		    "TLS is required for %s but %s does not offer STARTTLS",
		    r->domain, host);
		r->last_dsn = "4.7.5";
		r->last_perm = FALSE;
		pb_smtp_client_quit(c);
		return FALSE;
	}
	if (!pb_smtp_client_starttls(c, name, need_verified, &verified,
	                             &error)) {
		g_free(r->last_error);
		r->last_error = g_strdup_printf("TLS with %s failed: %s", host,
		                                error->message);
		r->last_dsn = "4.7.5";
		r->last_perm = FALSE;
		pb_log_info(NULL, "%s", r->last_error);
		return FALSE;
	}
	r->tls = verified ? "verified" : "unverified";
	return TRUE;
}

static void
converse(Remote *r, PbConn *conn, const char *name, const char *host)
{
	g_autoptr(PbSmtpClient) c = pb_smtp_client_new(r->cfg, conn);
	g_autoptr(PbSmtpReply) refusal = NULL;
	g_autoptr(GError) error = NULL;
	if (!pb_smtp_client_start(c, &refusal, &error)) {
		g_free(r->last_error);
		r->last_error =
		    g_strdup_printf("%s said: %s", host, error->message);
		r->last_perm = refusal && refusal->code / 100 == 5;
		return;
	}
	if (!secure(r, c, name, host))
		return;
	while (r->todo->len > 0) {
		const PbRemoteMessage *m = g_ptr_array_index(r->todo, 0);
		g_autofree char **rcpts = addresses_of(m);
		g_autoptr(PbSmtpResult) res = NULL;

		if (refuse_utf8(r, m, c, host)) {
			g_ptr_array_remove_index(r->todo, 0);
			continue;
		}
		/* a DKIM-Signature made at acceptance goes first: every
		 * attempt sends the same octets */
		res = pb_smtp_client_send_prefixed(
		    c, m->env->sender, rcpts, m->env->prepend, m->data_fd,
		    m->env->size, m->env->smtputf8);
		if (res->mail == NULL) { /* never answered: next address */
			g_free(r->last_error);
			r->last_error =
			    g_strdup_printf("lost connection with %s", host);
			r->last_perm = FALSE;
			return;
		}
		settle(r, m, res, host);
		g_ptr_array_remove_index(r->todo, 0);
		if (res->dropped)
			return;
	}
	pb_smtp_client_quit(c);
}

/* Tries one address; TRUE when nothing is left to send. */
static gboolean
try_address(Remote *r, const char *name, const char *addr, guint port)
{
	g_autofree char *host = g_strdup_printf("%s[%s]:%u", name, addr, port);
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConn) conn = NULL;
	int fd = pb_conn_connect(
	    addr, port, pb_deadline_in(r->cfg->connect_timeout), &error);

	if (fd < 0) {
		g_free(r->last_error);
		r->last_error =
		    g_strdup_printf("connect to %s: %s", host, error->message);
		r->last_perm = FALSE;
		pb_log_info(NULL, "connect to %s: %s", host, error->message);
		return FALSE;
	}
	conn = pb_conn_new(fd, fd);
	r->last_dsn = NULL;
	converse(r, conn, name, host);
	g_clear_pointer(&conn, pb_conn_free);
	close(fd);
	return r->todo->len == 0;
}

/* The hosts to try: the route's, or the MX list's. */
static PbMxList *
destinations(Remote *r, const char *domain, guint *port, GError **error)
{
	const PbRoute *route = pb_config_route(r->cfg, domain);
	PbMxList *list;
	PbMxHost *h;

	*port = r->cfg->port;
	if (route == NULL)
		return pb_dns_resolve_mx(r->cfg, domain, error);
	if (route->port)
		*port = route->port;
	h = g_new0(PbMxHost, 1);
	h->name = g_strdup(route->host);
	h->addresses = pb_dns_resolve_host(r->cfg, route->host, error);
	if (h->addresses == NULL) {
		g_free(h->name);
		g_free(h);
		return NULL;
	}
	list = g_new0(PbMxList, 1);
	list->hosts = g_ptr_array_new();
	g_ptr_array_add(list->hosts, h);
	return list;
}

static void
mx_list_free_route(PbMxList *list)
{
	for (guint i = 0; i < list->hosts->len; i++) {
		PbMxHost *h = g_ptr_array_index(list->hosts, i);
		g_free(h->name);
		g_ptr_array_unref(h->addresses);
		g_free(h);
	}
	g_ptr_array_unref(list->hosts);
	g_free(list);
}

void
pb_remote_deliver(const PbConfig *cfg, const char *domain, GPtrArray *messages,
                  PbRemoteReport report, void *ctx)
{
	g_autoptr(GError) error = NULL;
	Remote r = {
	    cfg,   report, ctx,   g_ptr_array_copy(messages, NULL, NULL),
	    NULL,  NULL,   FALSE, domain,
	    "none"};
	gboolean routed = pb_config_route(cfg, domain) != NULL;
	guint port;
	PbMxList *list = NULL;

	/* the copy would free the caller's messages: it only borrows them */
	g_ptr_array_set_free_func(r.todo, NULL);
	list = destinations(&r, domain, &port, &error);
	if (list == NULL) {
		const char *text = error->message;
		g_autofree char *dsn = g_strndup(text, strcspn(text, " "));
		report_all(&r,
		           g_error_matches(error, PB_ERROR, PB_ERROR_PERM)
		               ? PB_OUTCOME_PERM
		               : PB_OUTCOME_TEMP,
		           dsn, text);
	}
	/* at most MAX_ADDRESSES addresses a delivery (Postfix's
	 * smtp_mx_address_limit): a domain naming a hundred silent hosts
	 * cannot hold a delivery for days of timeouts */
	for (guint i = 0, tried = 0;
	     list && i < list->hosts->len && r.todo->len; i++) {
		const PbMxHost *h = g_ptr_array_index(list->hosts, i);
		for (guint a = 0;
		     a < h->addresses->len && tried < MAX_ADDRESSES; a++) {
			tried++;
			if (try_address(&r, h->name,
			                g_ptr_array_index(h->addresses, a),
			                port))
				break;
		}
	}
	if (r.todo->len > 0)
		report_all(&r, r.last_perm ? PB_OUTCOME_PERM : PB_OUTCOME_TEMP,
		           r.last_perm  ? "5.4.0"
		           : r.last_dsn ? r.last_dsn
		                        : "4.4.1",
		           r.last_error ? r.last_error : "no host to try");
	if (list && routed)
		mx_list_free_route(list);
	else if (list)
		pb_mx_list_free(list);
	g_ptr_array_unref(r.todo);
	g_free(r.last_error);
}
