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
		gint64 ms;
		if (left <= 0 || dns_active(ctx) == 0)
			return;
		/* udns counts in seconds, the deadline in milliseconds */
		ms = wait < 0 ? left : MIN((gint64)wait * 1000, left);
		if (poll(&pfd, 1, (int)ms) > 0)
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

/* The resolver of the authentication checks (dns.h): one udns context
 * for its lifetime, every batch of queries submitted at once. */
typedef struct {
	PbResolver base;
	struct dns_ctx *ctx;
} Udns;

void
pb_resolver_free(PbResolver *r)
{
	if (r != NULL)
		r->destroy(r);
}

void
pb_dns_query_init(PbDnsQuery *q, const char *name, PbDnsType type)
{
	q->name = g_strdup(name);
	q->type = type;
	q->status = PB_DNS_TEMP;
	q->records = NULL;
}

void
pb_dns_query_clear(PbDnsQuery *q)
{
	g_clear_pointer(&q->name, g_free);
	g_clear_pointer(&q->records, g_ptr_array_unref);
}

static char *
name_text(const char *name)
{
	size_t len = strlen(name);

	if (len > 0 && name[len - 1] == '.')
		len--;
	return g_strndup(name, len);
}

/* The N addresses of FAMILY at ADDRS (SIZE octets each) as text. */
static void
add_addresses(GPtrArray *out, int family, const void *addrs, int n, size_t size)
{
	char buf[INET6_ADDRSTRLEN];

	for (int i = 0; i < n; i++)
		if (inet_ntop(family, (const guint8 *)addrs + (size_t)i * size,
		              buf, sizeof buf))
			g_ptr_array_add(out, g_strdup(buf));
}

/* The records of a udns answer of Q's type, as dns.h describes them. */
static void
take_records(PbDnsQuery *q, void *result)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);

	switch (q->type) {
	case PB_DNS_A: {
		struct dns_rr_a4 *rr = result;
		add_addresses(out, AF_INET, rr->dnsa4_addr, rr->dnsa4_nrr,
		              sizeof *rr->dnsa4_addr);
		break;
	}
	case PB_DNS_AAAA: {
		struct dns_rr_a6 *rr = result;
		add_addresses(out, AF_INET6, rr->dnsa6_addr, rr->dnsa6_nrr,
		              sizeof *rr->dnsa6_addr);
		break;
	}
	case PB_DNS_MX: {
		struct dns_rr_mx *rr = result;
		for (int i = 0; i < rr->dnsmx_nrr; i++)
			g_ptr_array_add(out, name_text(rr->dnsmx_mx[i].name));
		break;
	}
	case PB_DNS_TXT: {
		struct dns_rr_txt *rr = result;
		for (int i = 0; i < rr->dnstxt_nrr; i++) {
			const struct dns_txt *t = &rr->dnstxt_txt[i];
			char *s =
			    g_strndup((const char *)t->txt, (gsize)t->len);
			for (int j = 0; j < t->len; j++)
				if (s[j] == '\0')
					s[j] = 0x7f;
			g_ptr_array_add(out, s);
		}
		break;
	}
	case PB_DNS_PTR: {
		struct dns_rr_ptr *rr = result;
		for (int i = 0; i < rr->dnsptr_nrr; i++)
			g_ptr_array_add(out, name_text(rr->dnsptr_ptr[i]));
		break;
	}
	}
	q->records = out;
}

/* One query of a batch in flight. */
typedef struct {
	PbDnsQuery *q;
	struct dns_query *sent;
	gboolean done;
} Pending;

static void
set_status(PbDnsQuery *q, int status)
{
	q->status = status == DNS_E_NXDOMAIN || status == DNS_E_BADQUERY
	                ? PB_DNS_NXDOMAIN
	            : status == DNS_E_NODATA ? PB_DNS_NODATA
	                                     : PB_DNS_TEMP;
}

static void
on_answer(struct dns_ctx *ctx, void *result, void *data)
{
	Pending *p = data;

	p->done = TRUE;
	if (result == NULL) {
		set_status(p->q, dns_status(ctx));
		return;
	}
	take_records(p->q, result);
	free(result);
	p->q->status = p->q->records->len > 0 ? PB_DNS_OK : PB_DNS_NODATA;
	if (p->q->status == PB_DNS_NODATA)
		g_clear_pointer(&p->q->records, g_ptr_array_unref);
}

static void
udns_lookup(PbResolver *self, PbDnsQuery **queries, guint n, gint64 deadline)
{
	static const struct {
		int qtype;
		dns_parse_fn *parse;
	} kinds[] = {
	    [PB_DNS_A] = {DNS_T_A, dns_parse_a4},
	    [PB_DNS_AAAA] = {DNS_T_AAAA, dns_parse_a6},
	    [PB_DNS_MX] = {DNS_T_MX, dns_parse_mx},
	    [PB_DNS_TXT] = {DNS_T_TXT, dns_parse_txt},
	    [PB_DNS_PTR] = {DNS_T_PTR, dns_parse_ptr},
	};
	Udns *u = (Udns *)self;
	g_autofree Pending *p = g_new0(Pending, n);

	for (guint i = 0; i < n; i++) {
		PbDnsQuery *q = queries[i];
		p[i].q = q;
		q->status = PB_DNS_TEMP;
		g_clear_pointer(&q->records, g_ptr_array_unref);
		p[i].sent = dns_submit_p(
		    u->ctx, q->name, DNS_C_IN, kinds[q->type].qtype, DNS_NOSRCH,
		    kinds[q->type].parse, on_answer, &p[i]);
		if (p[i].sent == NULL) {
			set_status(q, dns_status(u->ctx));
			p[i].done = TRUE;
		}
	}
	run(u->ctx, deadline);
	/* what has not answered by the deadline stays PB_DNS_TEMP and is
	 * cancelled, so that a late answer finds no query (udns leaves the
	 * freeing of a cancelled query to its caller) */
	for (guint i = 0; i < n; i++)
		if (!p[i].done) {
			dns_cancel(u->ctx, p[i].sent);
			free(p[i].sent);
		}
}

static void
udns_destroy(PbResolver *self)
{
	Udns *u = (Udns *)self;

	dns_free(u->ctx);
	g_free(u);
}

PbResolver *
pb_dns_resolver_new(const PbConfig *cfg, GError **error)
{
	struct dns_ctx *ctx = context(cfg, error);
	Udns *u;

	if (ctx == NULL)
		return NULL;
	u = g_new0(Udns, 1);
	u->base.lookup = udns_lookup;
	u->base.destroy = udns_destroy;
	u->ctx = ctx;
	return &u->base;
}

GPtrArray *
pb_dns_txt_lookup(const char *name, gpointer lookup, GError **error)
{
	const PbDnsTxtLookup *l = lookup;
	PbDnsQuery q;
	PbDnsQuery *queries[] = {&q};
	GPtrArray *out = NULL;

	pb_dns_query_init(&q, name, PB_DNS_TXT);
	l->resolver->lookup(l->resolver, queries, 1, l->deadline);
	if (q.status == PB_DNS_OK) {
		out =
		    g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
		for (guint i = 0; i < q.records->len; i++) {
			char **rec = g_new0(char *, 2);
			rec[0] = g_strdup(g_ptr_array_index(q.records, i));
			g_ptr_array_add(out, rec);
		}
	} else
		g_set_error(error, PB_ERROR,
		            q.status == PB_DNS_TEMP ? PB_ERROR_TEMP
		                                    : PB_ERROR_NOTFOUND,
		            "TXT lookup for %s: %s", name,
		            q.status == PB_DNS_TEMP ? "failed" : "no record");
	pb_dns_query_clear(&q);
	return out;
}

char *
pb_dns_reverse_name(int family, const guint8 *addr)
{
	GString *s = g_string_new(NULL);

	if (family == AF_INET) {
		g_string_printf(s, "%u.%u.%u.%u.in-addr.arpa", addr[3], addr[2],
		                addr[1], addr[0]);
		return g_string_free(s, FALSE);
	}
	for (int i = 15; i >= 0; i--)
		g_string_append_printf(s, "%x.%x.", addr[i] & 0xf, addr[i] >> 4);
	g_string_append(s, "ip6.arpa");
	return g_string_free(s, FALSE);
}

char **
pb_dns_txt_split(const char *text)
{
	GPtrArray *parts = g_ptr_array_new();
	gsize n = strlen(text);

	for (gsize i = 0; i < n; i += 255)
		g_ptr_array_add(parts, g_strndup(text + i, MIN(255, n - i)));
	if (n == 0)
		g_ptr_array_add(parts, g_strdup(""));
	g_ptr_array_add(parts, NULL);
	return (char **)g_ptr_array_free(parts, FALSE);
}

char *
pb_dns_zone_txt(const char *name, char *const *strings)
{
	GString *s = g_string_new(NULL);
	gboolean several = strings[0] != NULL && strings[1] != NULL;

	g_string_append_printf(s, "%s. IN TXT %s", name, several ? "( " : "");
	for (guint i = 0; strings[i]; i++)
		g_string_append_printf(s, "%s\"%s\"", i ? "\n    " : "",
		                       strings[i]);
	if (several)
		g_string_append(s, " )");
	return g_string_free(s, FALSE);
}
