/*
 * explain.c - mailq --explain (see explain.h).
 *
 * Answers "where is my mail?" from the envelope alone plus one DNS
 * lookup per remote domain; every text printed came from the envelope,
 * which holds only sanitised text, so a remote reply cannot put control
 * characters on the operator's terminal.
 */
#include "explain.h"
#include "address.h"
#include "date.h"
#include "dns.h"
#include "error.h"

#include <string.h>

static char *
when(gint64 t)
{
	g_autoptr(GDateTime) d = pb_date_local(t);

	return d ? g_date_time_format(d, "%Y-%m-%d %H:%M:%S %z")
	         : g_strdup("?");
}

/* Where mail for DOMAIN goes now: a route, or the MX hosts from DNS. */
static void
explain_destination(GString *out, const PbConfig *cfg, const char *domain,
                    GHashTable *done)
{
	const PbRoute *route;
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMxList) mx = NULL;

	if (g_hash_table_contains(done, domain)) {
		g_string_append_printf(out, "    route: as above for %s\n",
		                       domain);
		return;
	}
	g_hash_table_add(done, g_strdup(domain));
	if (pb_config_is_local_domain(cfg, domain)) {
		g_string_append_printf(out,
		                       "    route: local, the Maildir in "
		                       "%s/%s/\n",
		                       cfg->spool, domain);
		return;
	}
	route = pb_config_route(cfg, domain);
	if (route) {
		g_string_append_printf(out, "    route: [routes] %s:%u\n",
		                       route->host,
		                       route->port ? route->port : cfg->port);
		return;
	}
	mx = pb_dns_resolve_mx(cfg, domain, &error);
	if (mx == NULL) {
		g_string_append_printf(out, "    route: MX lookup now: %s\n",
		                       error->message);
		return;
	}
	g_string_append(out, "    route: MX hosts as DNS names them now:\n");
	for (guint i = 0; i < mx->hosts->len; i++) {
		const PbMxHost *h = g_ptr_array_index(mx->hosts, i);
		g_string_append_printf(out, "      %u %s", h->preference,
		                       h->name);
		for (guint a = 0; h->addresses && a < h->addresses->len; a++)
			g_string_append_printf(
			    out, " %s",
			    (char *)g_ptr_array_index(h->addresses, a));
		if (h->addresses == NULL || h->addresses->len == 0)
			g_string_append(out, " (no address)");
		g_string_append_c(out, '\n');
	}
}

static void
explain_recipient(GString *out, const PbConfig *cfg, const PbEnvelope *env,
                  const PbRecipient *r, GHashTable *done)
{
	static const char *const states[] = {"pending", "delivered",
	                                     "failed (bounce not yet sent)",
	                                     "failed (bounced)"};
	g_autofree char *local = NULL;
	g_autofree char *domain = NULL;

	g_string_append_printf(out, "  <%s>%s%s%s: %s\n", r->address,
	                       r->orig ? " (for <" : "", r->orig ? r->orig : "",
	                       r->orig ? ">)" : "", states[r->state]);
	if (r->state == PB_RCPT_PENDING &&
	    pb_address_split(r->address, &local, &domain))
		explain_destination(out, cfg, domain, done);
	g_string_append_printf(out, "    attempts: %u\n", r->attempts);
	for (guint i = 0; r->history && i < r->history->len; i++) {
		const PbAttempt *a = g_ptr_array_index(r->history, i);
		g_autofree char *t = when(a->time);
		g_string_append_printf(out, "      %s  %s  %s\n", t,
		                       a->host ? a->host : "",
		                       a->reply ? a->reply : "");
	}
	if (r->state == PB_RCPT_PENDING) {
		g_autofree char *next = when(r->next_attempt);
		g_string_append_printf(out, "    next attempt: %s\n",
		                       env->held ? "none while held"
		                       : r->next_attempt == 0
		                           ? "at the next runq"
		                           : next);
	}
	if (r->last_error)
		g_string_append_printf(out, "    last error: %s%s%s\n",
		                       r->dsn ? r->dsn : "", r->dsn ? " " : "",
		                       r->last_error);
}

GString *
pb_explain(const PbConfig *cfg, PbQueue *q, const char *id, GError **error)
{
	g_autoptr(PbEnvelope) env = pb_queue_read_envelope(q, id, error);
	g_autoptr(GString) out = g_string_new(NULL);
	g_autoptr(GHashTable) done =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autofree char *arrival = NULL;
	g_autofree char *warn = NULL;
	g_autofree char *bounce = NULL;

	if (env == NULL) {
		if (error && *error &&
		    g_error_matches(*error, PB_ERROR, PB_ERROR_NOTFOUND)) {
			g_clear_error(error);
			g_set_error(error, PB_ERROR, PB_ERROR_NOTFOUND,
			            "%s is not in the queue (delivered, "
			            "bounced or deleted: see the log)",
			            id);
		}
		return NULL;
	}
	arrival = when(env->arrival);
	warn = when(env->arrival + cfg->warn_after);
	bounce = when(env->arrival + cfg->bounce_after);
	g_string_append_printf(out,
	                       "%s: from <%s>, %" G_GUINT64_FORMAT
	                       " octets, arrived %s from %s%s\n",
	                       env->id, env->sender, env->size, arrival,
	                       env->client ? env->client : "?",
	                       env->held ? ", HELD by the operator" : "");
	if (env->notice_sent)
		g_string_append_printf(out,
		                       "  delay notice: sent (due at %s; "
		                       "only once)\n",
		                       warn);
	else
		g_string_append_printf(out,
		                       "  delay notice: at %s if still "
		                       "undelivered\n",
		                       warn);
	g_string_append_printf(out, "  bounce: at %s if still undelivered\n",
	                       bounce);
	for (guint i = 0; i < env->rcpts->len; i++)
		explain_recipient(out, cfg, env,
		                  g_ptr_array_index(env->rcpts, i), done);
	return g_steal_pointer(&out);
}
