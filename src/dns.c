/*
 * dns.c - MX and address lookups with udns (see dns.h).
 *
 * One udns context per lookup, driven by poll(2) on its socket until
 * every query has answered or the deadline passed; A and AAAA queries
 * for all MX hosts run at once. Names are queried as given (DNS_NOSRCH:
 * no search list, a mail domain is always fully qualified).
 */
#include "dns.h"
#include "error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <udns.h>

#define LOOKUP_SECONDS 30 /* the whole lookup of one domain */

void
pb_mx_list_free(PbMxList *mx)
{
	if (mx == NULL)
		return;
	g_ptr_array_unref(mx->hosts);
	g_free(mx);
}

static void
mx_host_free(PbMxHost *h)
{
	g_free(h->name);
	if (h->addresses)
		g_ptr_array_unref(h->addresses);
	g_free(h);
}

static gint
by_preference(gconstpointer a, gconstpointer b)
{
	const PbMxHost *x = *(PbMxHost *const *)a, *y = *(PbMxHost *const *)b;

	return x->preference < y->preference   ? -1
	       : x->preference > y->preference ? 1
	                                       : 0;
}

void
pb_dns_sort_mx(GPtrArray *hosts, GRand *rand)
{
	/* shuffle first (Fisher-Yates), then a stable sort keeps the
	 * shuffled order among equal preferences */
	for (guint i = hosts->len; i > 1; i--) {
		guint j = (guint)g_rand_int_range(rand, 0, (gint32)i);
		gpointer t = hosts->pdata[i - 1];
		hosts->pdata[i - 1] = hosts->pdata[j];
		hosts->pdata[j] = t;
	}
	g_ptr_array_sort(hosts, by_preference); /* g_ptr_array_sort is stable */
}

gboolean
pb_dns_parse_server(const char *text, struct sockaddr_storage *sa,
                    GError **error)
{
	if (pb_parse_endpoint(text, 53, sa))
		return TRUE;
	g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
	            "[delivery] nameservers: not ADDRESS[:PORT]: %s", text);
	return FALSE;
}

static gboolean
udns_ready(GError **error)
{
	static gsize done = 0;
	static int status = 0;

	if (g_once_init_enter(&done)) {
		status = dns_init(NULL, 0);
		g_once_init_leave(&done, 1);
	}
	if (status < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "4.4.3 cannot set up the resolver "
		            "(/etc/resolv.conf)");
		return FALSE;
	}
	return TRUE;
}

static struct dns_ctx *
context(const PbConfig *cfg, GError **error)
{
	struct dns_ctx *ctx;

	if (!udns_ready(error) || (ctx = dns_new(NULL)) == NULL) {
		if (error && !*error)
			g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
			            "4.4.3 cannot create a resolver");
		return NULL;
	}
	if (cfg->nameservers && cfg->nameservers[0]) {
		dns_add_serv(ctx, NULL);
		for (guint i = 0; cfg->nameservers[i]; i++) {
			struct sockaddr_storage sa;
			if (!pb_dns_parse_server(cfg->nameservers[i], &sa,
			                         error) ||
			    dns_add_serv_s(ctx, (struct sockaddr *)&sa) < 0) {
				dns_free(ctx);
				if (error && !*error)
					g_set_error(error, PB_ERROR,
					            PB_ERROR_CONFIG,
					            "bad nameserver %s",
					            cfg->nameservers[i]);
				return NULL;
			}
		}
	}
	dns_set_opt(ctx, DNS_OPT_TIMEOUT, 4);
	dns_set_opt(ctx, DNS_OPT_NTRIES, 3);
	if (dns_open(ctx) < 0) {
		dns_free(ctx);
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "4.4.3 cannot open the resolver socket");
		return NULL;
	}
	return ctx;
}

/* Drives CTX until no query is active or the deadline (monotonic ms). */
static void
run(struct dns_ctx *ctx, gint64 deadline)
{
	while (dns_active(ctx) > 0) {
		gint64 left = deadline - g_get_monotonic_time() / 1000;
		int wait = dns_timeouts(ctx, -1, time(NULL));
		struct pollfd pfd = {.fd = dns_sock(ctx), .events = POLLIN};
		if (left <= 0 || dns_active(ctx) == 0)
			return;
		if (wait < 0 || wait * 1000 > left)
			wait = (int)((left + 999) / 1000);
		if (poll(&pfd, 1, wait * 1000) > 0)
			dns_ioevent(ctx, time(NULL));
	}
}

/* One host's address queries. */
typedef struct {
	GPtrArray *addresses;
	int status4, status6;
	int pending;
} Addr;

static void
on_a4(struct dns_ctx *ctx, struct dns_rr_a4 *rr, void *data)
{
	Addr *a = data;
	char buf[INET_ADDRSTRLEN];

	a->status4 = rr ? 0 : dns_status(ctx);
	for (int i = 0; rr && i < rr->dnsa4_nrr; i++)
		if (inet_ntop(AF_INET, &rr->dnsa4_addr[i], buf, sizeof buf))
			g_ptr_array_add(a->addresses, g_strdup(buf));
	free(rr);
	a->pending--;
}

static void
on_a6(struct dns_ctx *ctx, struct dns_rr_a6 *rr, void *data)
{
	Addr *a = data;
	char buf[INET6_ADDRSTRLEN];

	a->status6 = rr ? 0 : dns_status(ctx);
	for (int i = 0; rr && i < rr->dnsa6_nrr; i++)
		if (inet_ntop(AF_INET6, &rr->dnsa6_addr[i], buf, sizeof buf))
			g_ptr_array_insert(a->addresses, 0, g_strdup(buf));
	free(rr);
	a->pending--;
}

static gboolean
is_numeric(const char *host)
{
	guint8 buf[16];

	return inet_pton(AF_INET, host, buf) == 1 ||
	       inet_pton(AF_INET6, host, buf) == 1;
}

/* Resolves the addresses of every host in HOSTS at once. */
static void
resolve_hosts(struct dns_ctx *ctx, GPtrArray *hosts, gint64 deadline,
              Addr *addrs)
{
	for (guint i = 0; i < hosts->len; i++) {
		PbMxHost *h = g_ptr_array_index(hosts, i);
		addrs[i].addresses = h->addresses;
		if (is_numeric(h->name)) {
			g_ptr_array_add(h->addresses, g_strdup(h->name));
			continue;
		}
		addrs[i].status4 = addrs[i].status6 = DNS_E_TEMPFAIL;
		if (dns_submit_a6(ctx, h->name, DNS_NOSRCH, on_a6, &addrs[i]))
			addrs[i].pending++;
		if (dns_submit_a4(ctx, h->name, DNS_NOSRCH, on_a4, &addrs[i]))
			addrs[i].pending++;
	}
	run(ctx, deadline);
}

GPtrArray *
pb_dns_resolve_host(const PbConfig *cfg, const char *host, GError **error)
{
	g_autoptr(GPtrArray) hosts =
	    g_ptr_array_new_with_free_func((GDestroyNotify)mx_host_free);
	PbMxHost *h = g_new0(PbMxHost, 1);
	struct dns_ctx *ctx;
	Addr a = {0};
	GPtrArray *out;

	h->name = g_strdup(host);
	h->addresses = g_ptr_array_new_with_free_func(g_free);
	g_ptr_array_add(hosts, h);
	if (is_numeric(host)) {
		g_ptr_array_add(h->addresses, g_strdup(host));
		return g_ptr_array_ref(h->addresses);
	}
	if ((ctx = context(cfg, error)) == NULL)
		return NULL;
	resolve_hosts(ctx, hosts,
	              g_get_monotonic_time() / 1000 + LOOKUP_SECONDS * 1000,
	              &a);
	dns_free(ctx);
	if (h->addresses->len == 0) {
		gboolean gone = a.status4 == DNS_E_NXDOMAIN;
		g_set_error(
		    error, PB_ERROR, gone ? PB_ERROR_PERM : PB_ERROR_TEMP,
		    "%s Host %s not found: %s", gone ? "5.4.4" : "4.4.3", host,
		    dns_strerror(a.status4 ? a.status4 : a.status6));
		return NULL;
	}
	out = g_ptr_array_ref(h->addresses);
	return out;
}

/* The MX query's answer. */
typedef struct {
	struct dns_rr_mx *rr;
	int status;
} Mx;

static void
on_mx(struct dns_ctx *ctx, struct dns_rr_mx *rr, void *data)
{
	Mx *m = data;

	m->rr = rr;
	m->status = rr ? 0 : dns_status(ctx);
}

GPtrArray *
pb_dns_mx_hosts(const char *domain, const struct dns_rr_mx *rr, int status,
                gboolean *implicit, GError **error)
{
	GPtrArray *hosts =
	    g_ptr_array_new_with_free_func((GDestroyNotify)mx_host_free);

	*implicit = FALSE;
	if (rr == NULL && status == DNS_E_NODATA) {
		PbMxHost *h = g_new0(PbMxHost, 1);
		h->name = g_ascii_strdown(domain, -1);
		g_ptr_array_add(hosts, h);
		*implicit = TRUE;
	} else if (rr == NULL) {
		gboolean gone = status == DNS_E_NXDOMAIN;
		g_set_error(error, PB_ERROR,
		            gone ? PB_ERROR_PERM : PB_ERROR_TEMP,
		            gone ? "5.1.2 Domain %s not found (NXDOMAIN)"
		                 : "4.4.3 MX lookup for %s failed: %s",
		            domain, dns_strerror(status));
		g_ptr_array_unref(hosts);
		return NULL;
	} else {
		for (int i = 0; i < rr->dnsmx_nrr; i++) {
			const struct dns_mx *x = &rr->dnsmx_mx[i];
			PbMxHost *h;
			/* RFC 7505: one MX "." is a domain that takes no mail
			 */
			if (rr->dnsmx_nrr == 1 &&
			    (x->name[0] == '\0' || g_str_equal(x->name, "."))) {
				g_set_error(error, PB_ERROR, PB_ERROR_PERM,
				            "5.1.10 Domain %s accepts no mail "
				            "(null MX, RFC 7505)",
				            domain);
				g_ptr_array_unref(hosts);
				return NULL;
			}
			h = g_new0(PbMxHost, 1);
			h->preference = (guint)x->priority;
			h->name = g_ascii_strdown(x->name, -1);
			g_ptr_array_add(hosts, h);
		}
	}
	for (guint i = 0; i < hosts->len; i++)
		((PbMxHost *)hosts->pdata[i])->addresses =
		    g_ptr_array_new_with_free_func(g_free);
	return hosts;
}

PbMxList *
pb_dns_resolve_mx(const PbConfig *cfg, const char *domain, GError **error)
{
	gint64 deadline = g_get_monotonic_time() / 1000 + LOOKUP_SECONDS * 1000;
	struct dns_ctx *ctx = context(cfg, error);
	g_autoptr(GRand) rand = g_rand_new();
	g_autofree Addr *addrs = NULL;
	Mx m = {NULL, DNS_E_TEMPFAIL};
	PbMxList *list;
	GPtrArray *hosts;
	guint with_address = 0;
	gboolean implicit;

	if (ctx == NULL)
		return NULL;
	if (dns_submit_mx(ctx, domain, DNS_NOSRCH, on_mx, &m) == NULL)
		m.status = dns_status(ctx);
	run(ctx, deadline);
	hosts = pb_dns_mx_hosts(domain, m.rr, m.status, &implicit, error);
	free(m.rr);
	if (hosts == NULL) {
		dns_free(ctx);
		return NULL;
	}
	pb_dns_sort_mx(hosts, rand);
	addrs = g_new0(Addr, hosts->len);
	resolve_hosts(ctx, hosts, deadline, addrs);
	dns_free(ctx);
	for (guint i = 0; i < hosts->len; i++)
		with_address +=
		    ((PbMxHost *)hosts->pdata[i])->addresses->len > 0;
	if (with_address == 0) {
		/* an implicit MX whose name does not exist is a bad domain */
		gboolean gone = implicit &&
		                (addrs[0].status4 == DNS_E_NXDOMAIN ||
		                 addrs[0].status4 == DNS_E_NODATA) &&
		                (addrs[0].status6 == DNS_E_NXDOMAIN ||
		                 addrs[0].status6 == DNS_E_NODATA);
		g_set_error(error, PB_ERROR,
		            gone ? PB_ERROR_PERM : PB_ERROR_TEMP,
		            gone ? "5.1.2 Domain %s has no MX and no address"
		                 : "4.4.3 No address found for the mail hosts "
		                   "of %s",
		            domain);
		g_ptr_array_unref(hosts);
		return NULL;
	}
	list = g_new0(PbMxList, 1);
	list->hosts = hosts;
	list->implicit = implicit;
	return list;
}

/* ---- TXT records (DKIM keys) ---- */

typedef struct {
	struct dns_rr_txt *rr;
	int status;
} Txt;

static void
on_txt(struct dns_ctx *ctx, struct dns_rr_txt *rr, void *data)
{
	Txt *t = data;

	t->rr = rr;
	t->status = rr ? 0 : dns_status(ctx);
}

GPtrArray *
pb_dns_resolve_txt(const PbConfig *cfg, const char *name, gint64 deadline,
                   GError **error)
{
	struct dns_ctx *ctx = context(cfg, error);
	Txt t = {NULL, DNS_E_TEMPFAIL};
	GPtrArray *out;

	if (ctx == NULL)
		return NULL;
	if (dns_submit_txt(ctx, name, DNS_C_IN, DNS_NOSRCH, on_txt, &t) == NULL)
		t.status = dns_status(ctx);
	run(ctx, deadline);
	dns_free(ctx);
	if (t.rr == NULL) {
		gboolean none =
		    t.status == DNS_E_NXDOMAIN || t.status == DNS_E_NODATA;
		g_set_error(
		    error, PB_ERROR, none ? PB_ERROR_NOTFOUND : PB_ERROR_TEMP,
		    "TXT lookup for %s: %s", name, dns_strerror(t.status));
		return NULL;
	}
	out = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
	/* udns (dns_parse_txt) has joined each record's character-strings,
	 * dropping their length octets; a NUL inside one ends it here (no
	 * key record holds one) */
	for (int i = 0; i < t.rr->dnstxt_nrr; i++) {
		char **rec = g_new0(char *, 2);
		rec[0] = g_strndup((const char *)t.rr->dnstxt_txt[i].txt,
		                   (gsize)t.rr->dnstxt_txt[i].len);
		g_ptr_array_add(out, rec);
	}
	free(t.rr);
	return out;
}

GPtrArray *
pb_dns_txt_lookup(const char *name, gpointer lookup, GError **error)
{
	const PbDnsTxtLookup *l = lookup;

	return pb_dns_resolve_txt(l->cfg, name, l->deadline, error);
}
