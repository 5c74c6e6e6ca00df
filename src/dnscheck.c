/*
 * dnscheck.c - pillarbox-dns: what to publish in DNS, and whether it is
 * right.
 *
 * Owns the records a pillarbox host recommends (its A/AAAA and PTR; per
 * domain MX, SPF, the DKIM keys, DMARC, and MTA-STS and TLS-RPT for
 * later) and the judging of what live DNS holds: MX at this host,
 * forward-confirmed reverse DNS, the HELO name, SPF evaluated by spf.c
 * for this host's addresses, the DKIM key records against our private
 * keys, DMARC by dmarc.c's parser and tree walk.
 * Guarantees: each check has exactly one status; a lookup that times out
 * or fails (SERVFAIL) is TEMP, never a verdict; DNS through the caller's
 * PbResolver only, with one deadline; nothing is written.
 */
#include "dnscheck.h"
#include "dkim.h"
#include "dmarc.h"
#include "error.h"
#include "spf.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

/* Addresses that are nobody's (RFC 5737, RFC 3849): an SPF record that
 * passes them passes every host. */
#define PROBE_V4 "192.0.2.1"
#define PROBE_V6 "2001:db8::1"

typedef struct {
	PbResolver *r;
	const PbDnsCheckRequest *req;
	GPtrArray *addrs; /* this host's, canonical */
	PbDnsSection *sec;
	gboolean mx_here; /* the domain's MX is this host (or none yet) */
} Ctx;

const char *
pb_check_status_name(PbCheckStatus status)
{
	static const char *const names[] = {"OK", "WARN", "TEMP", "MISSING",
	                                    "WRONG"};

	return names[status];
}

static void
record_free(PbDnsRecord *r)
{
	g_free(r->name);
	g_free(r->type);
	g_free(r->value);
	g_strfreev(r->strings);
	g_free(r->zone);
	g_free(r->note);
	g_free(r);
}

static void
check_free(PbDnsCheck *c)
{
	g_free(c->name);
	g_free(c->found);
	g_free(c->expected);
	g_free(c->fix);
	g_free(c);
}

static void
section_free(PbDnsSection *s)
{
	g_free(s->domain);
	g_ptr_array_unref(s->records);
	g_ptr_array_unref(s->checks);
	g_free(s);
}

void
pb_dns_report_free(PbDnsReport *rep)
{
	if (rep == NULL)
		return;
	g_free(rep->hostname);
	g_free(rep->helo);
	g_ptr_array_unref(rep->addresses);
	g_ptr_array_unref(rep->sections);
	g_free(rep);
}

/* ---- building blocks ---- */

/* The canonical text of a numeric address, NULL if it is none. */
static char *
canon_ip(const char *text, int *family, guint8 *bytes)
{
	char buf[INET6_ADDRSTRLEN];
	int fam = strchr(text, ':') ? AF_INET6 : AF_INET;

	if (inet_pton(fam, text, bytes) != 1 ||
	    inet_ntop(fam, bytes, buf, sizeof buf) == NULL)
		return NULL;
	if (family)
		*family = fam;
	return g_strdup(buf);
}

/* The PTR query name of a numeric address. */
static char *
reverse_of(const char *addr)
{
	guint8 bytes[16];
	int family;
	g_autofree char *canon = canon_ip(addr, &family, bytes);

	g_assert_nonnull(canon);
	return pb_dns_reverse_name(family, bytes);
}

static gboolean
has_string(const GPtrArray *list, const char *s)
{
	for (guint i = 0; list && i < list->len; i++)
		if (g_ascii_strcasecmp(list->pdata[i], s) == 0)
			return TRUE;
	return FALSE;
}

static char *
join(const GPtrArray *list, const char *sep)
{
	g_autoptr(GString) s = g_string_new(NULL);

	for (guint i = 0; list && i < list->len; i++)
		g_string_append_printf(s, "%s%s", i ? sep : "",
		                       (char *)list->pdata[i]);
	return g_strdup(s->str);
}

static void
add_record(Ctx *c, const char *name, const char *type, const char *value,
           gboolean optional, const char *note)
{
	PbDnsRecord *r = g_new0(PbDnsRecord, 1);

	r->name = g_strdup(name);
	r->type = g_strdup(type);
	r->value = g_strdup(value);
	r->optional = optional;
	r->note = g_strdup(note);
	if (strcmp(type, "TXT") == 0) {
		r->strings = pb_dns_txt_split(value);
		r->zone = pb_dns_zone_txt(name, r->strings);
	} else {
		r->zone = g_strdup_printf(
		    "%s. IN %s %s%s", name, type, value,
		    strcmp(type, "A") == 0 || strcmp(type, "AAAA") == 0 ? ""
		                                                        : ".");
	}
	g_ptr_array_add(c->sec->records, r);
}

/* Adds a check; FOUND, EXPECTED and FIX are taken (may be NULL). */
static void
add_check(Ctx *c, const char *name, PbCheckStatus status, gboolean required,
          char *found, char *expected, char *fix)
{
	PbDnsCheck *k = g_new0(PbDnsCheck, 1);

	k->name = g_strdup(name);
	k->status = status;
	k->required = required;
	k->found = found;
	k->expected = expected;
	k->fix = status == PB_CHECK_OK ? (g_free(fix), NULL) : fix;
	g_ptr_array_add(c->sec->checks, k);
}

static void
add_temp(Ctx *c, const char *name, gboolean required, const char *what)
{
	add_check(c, name, PB_CHECK_TEMP, required, NULL, NULL,
	          g_strdup_printf("DNS did not answer for %s (timeout or "
	                          "SERVFAIL): run pillarbox-dns again",
	                          what));
}

/* One query; the records (or NULL) into *OUT. */
static PbDnsStatus
lookup(Ctx *c, const char *name, PbDnsType type, GPtrArray **out)
{
	PbDnsQuery q, *qs[] = {&q};

	pb_dns_query_init(&q, name, type);
	c->r->lookup(c->r, qs, 1, c->req->deadline);
	*out = g_steal_pointer(&q.records);
	pb_dns_query_clear(&q);
	return q.status;
}

/* The A and AAAA records of NAME together: TEMP when either failed, OK
 * when there is any, NXDOMAIN when the name does not exist. */
static PbDnsStatus
lookup_addresses(Ctx *c, const char *name, GPtrArray **out)
{
	PbDnsQuery q[2], *qs[] = {&q[0], &q[1]};
	PbDnsStatus st;

	pb_dns_query_init(&q[0], name, PB_DNS_A);
	pb_dns_query_init(&q[1], name, PB_DNS_AAAA);
	c->r->lookup(c->r, qs, 2, c->req->deadline);
	*out = g_ptr_array_new_with_free_func(g_free);
	for (guint i = 0; i < 2; i++)
		for (guint j = 0; q[i].records && j < q[i].records->len; j++)
			g_ptr_array_add(*out, g_strdup(q[i].records->pdata[j]));
	st = q[0].status == PB_DNS_TEMP || q[1].status == PB_DNS_TEMP
	         ? PB_DNS_TEMP
	     : (*out)->len > 0                ? PB_DNS_OK
	     : q[0].status == PB_DNS_NXDOMAIN ? PB_DNS_NXDOMAIN
	                                      : PB_DNS_NODATA;
	pb_dns_query_clear(&q[0]);
	pb_dns_query_clear(&q[1]);
	return st;
}

/* How many of this host's addresses are in LIST. */
static guint
ours_in(Ctx *c, const GPtrArray *list)
{
	guint n = 0;

	for (guint i = 0; i < c->addrs->len; i++)
		n += has_string(list, c->addrs->pdata[i]);
	return n;
}

/* ---- the host ---- */

/* This host's addresses: the ones given (HOSTNAME's A/AAAA should
 * include them) or HOSTNAME's. */
static void
check_address(Ctx *c)
{
	const char *host = c->req->hostname;
	g_autoptr(GPtrArray) found = NULL;
	PbDnsStatus st = lookup_addresses(c, host, &found);
	g_autofree char *want = NULL;
	g_autofree char *has = join(found, ", ");

	if (st == PB_DNS_TEMP)
		return add_temp(c, "address", TRUE, host);
	if (c->req->addresses == NULL || c->req->addresses[0] == NULL)
		for (guint i = 0; i < found->len; i++)
			g_ptr_array_add(c->addrs, g_strdup(found->pdata[i]));
	want = c->addrs->len ? join(c->addrs, ", ") : NULL;
	if (found->len == 0)
		return add_check(
		    c, "address", PB_CHECK_MISSING, TRUE, NULL,
		    g_steal_pointer(&want),
		    g_strdup_printf("publish the A (and AAAA) records of %s%s",
		                    host,
		                    c->addrs->len ? " above"
		                                  : " (give this host's "
		                                    "addresses with --address "
		                                    "to see them)"));
	add_check(
	    c, "address",
	    ours_in(c, found) == c->addrs->len ? PB_CHECK_OK : PB_CHECK_WRONG,
	    TRUE, g_strdup_printf("%s %s", host, has), g_steal_pointer(&want),
	    g_strdup_printf("publish %s's A/AAAA records above (and "
	                    "remove the others)",
	                    host));
}

/* The names of PTRS (at most 10) whose A/AAAA include ADDR. */
static GPtrArray *
confirmed(Ctx *c, const GPtrArray *ptrs, const char *addr, gboolean *temp)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);

	for (guint i = 0; i < MIN(ptrs->len, 10); i++) {
		g_autoptr(GPtrArray) fwd = NULL;
		if (lookup_addresses(c, ptrs->pdata[i], &fwd) == PB_DNS_TEMP)
			*temp = TRUE;
		if (has_string(fwd, addr))
			g_ptr_array_add(out, g_strdup(ptrs->pdata[i]));
	}
	return out;
}

/* Forward-confirmed reverse DNS of ADDR, named HOSTNAME. */
static void
check_ptr(Ctx *c, const char *addr)
{
	const char *host = c->req->hostname;
	g_autofree char *check = g_strdup_printf("ptr %s", addr);
	g_autofree char *rev = NULL;
	g_autoptr(GPtrArray) ptrs = NULL;
	g_autoptr(GPtrArray) good = NULL;
	gboolean temp = FALSE;

	rev = reverse_of(addr);
	switch (lookup(c, rev, PB_DNS_PTR, &ptrs)) {
	case PB_DNS_TEMP:
		return add_temp(c, check, TRUE, rev);
	case PB_DNS_OK:
		break;
	default:
		return add_check(
		    c, check, PB_CHECK_MISSING, TRUE, NULL, g_strdup(host),
		    g_strdup_printf("ask whoever gave you %s (the hosting "
		                    "provider) to set its PTR record to %s",
		                    addr, host));
	}
	good = confirmed(c, ptrs, addr, &temp);
	if (has_string(good, host))
		return add_check(c, check, PB_CHECK_OK, TRUE, join(ptrs, ", "),
		                 g_strdup(host), NULL);
	if (good->len == 0 && temp)
		return add_temp(c, check, TRUE, "the PTR names' addresses");
	add_check(
	    c, check, good->len ? PB_CHECK_WARN : PB_CHECK_WRONG, TRUE,
	    join(ptrs, ", "), g_strdup(host),
	    good->len
	        ? g_strdup_printf("%s is forward-confirmed but is not %s: "
	                          "set the PTR of %s to %s (or [main] "
	                          "hostname and [delivery] helo to %s)",
	                          (char *)good->pdata[0], host, addr, host,
	                          (char *)good->pdata[0])
	        : g_strdup_printf("no PTR name resolves back to %s: set the "
	                          "PTR of %s to %s (whose A/AAAA must "
	                          "include it)",
	                          addr, addr, host));
}

/* The HELO name must resolve to this host's addresses. */
static void
check_helo(Ctx *c)
{
	const char *helo = c->req->helo;
	g_autoptr(GPtrArray) found = NULL;
	PbDnsStatus st = lookup_addresses(c, helo, &found);
	g_autofree char *want = join(c->addrs, ", ");
	g_autofree char *has = join(found, ", ");
	guint n = ours_in(c, found);

	if (st == PB_DNS_TEMP)
		return add_temp(c, "helo", TRUE, helo);
	if (found->len == 0)
		return add_check(c, "helo", PB_CHECK_MISSING, TRUE, NULL,
		                 g_steal_pointer(&want),
		                 g_strdup_printf("publish A/AAAA records of %s "
		                                 "(or set [delivery] helo to "
		                                 "a name that has them)",
		                                 helo));
	add_check(c, "helo",
	          c->addrs->len == 0   ? PB_CHECK_WARN
	          : n == c->addrs->len ? PB_CHECK_OK
	          : n > 0              ? PB_CHECK_WARN
	                               : PB_CHECK_WRONG,
	          TRUE, g_strdup_printf("%s %s", helo, has),
	          g_steal_pointer(&want),
	          c->addrs->len == 0
	              ? g_strdup("not compared: no address of this host is "
	                         "known (give --address)")
	              : g_strdup_printf("give %s the A/AAAA records of every "
	                                "address this host sends from",
	                                helo));
}

static void
host_records(Ctx *c)
{
	const char *host = c->req->hostname;

	for (guint i = 0; i < c->addrs->len; i++) {
		const char *a = c->addrs->pdata[i];
		add_record(c, host, strchr(a, ':') ? "AAAA" : "A", a, FALSE,
		           NULL);
	}
	for (guint i = 0; i < c->addrs->len; i++) {
		g_autofree char *rev = reverse_of(c->addrs->pdata[i]);
		add_record(c, rev, "PTR", host, FALSE,
		           "set by the owner of the address (the hosting "
		           "provider), not in your zone");
	}
}

static PbDnsSection *
section_new(const char *domain)
{
	PbDnsSection *s = g_new0(PbDnsSection, 1);

	s->domain = g_strdup(domain);
	s->records =
	    g_ptr_array_new_with_free_func((GDestroyNotify)record_free);
	s->checks = g_ptr_array_new_with_free_func((GDestroyNotify)check_free);
	return s;
}

static void
run_host(Ctx *c)
{
	check_address(c);
	for (guint i = 0; i < c->addrs->len; i++)
		check_ptr(c, c->addrs->pdata[i]);
	check_helo(c);
	host_records(c);
}

/* ---- a domain ---- */

/* TEXT begins with the tag PREFIX ("v=spf1"), any case, and ends there
 * or goes on after a space or ';'. PREFIX NULL: any text. */
static gboolean
starts_tag(const char *text, const char *prefix)
{
	gsize n = prefix ? strlen(prefix) : 0;

	return prefix == NULL || (g_ascii_strncasecmp(text, prefix, n) == 0 &&
	                          strchr(" \t;", text[n]) != NULL);
}

/* The TXT records at NAME that starts_tag(PREFIX). */
static PbDnsStatus
lookup_txt(Ctx *c, const char *name, const char *prefix, GPtrArray **out)
{
	g_autoptr(GPtrArray) all = NULL;
	PbDnsStatus st = lookup(c, name, PB_DNS_TXT, &all);

	*out = g_ptr_array_new_with_free_func(g_free);
	for (guint i = 0; all && i < all->len; i++)
		if (starts_tag(all->pdata[i], prefix))
			g_ptr_array_add(*out, g_strdup(all->pdata[i]));
	return st;
}

/* The value of TAG in a "tag=value; ..." record, or NULL. */
static char *
tag_value(const char *text, const char *tag)
{
	g_auto(GStrv) parts = g_strsplit(text, ";", -1);

	for (guint i = 0; parts[i]; i++) {
		char *eq = strchr(g_strstrip(parts[i]), '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		if (g_ascii_strcasecmp(g_strchomp(parts[i]), tag) == 0)
			return g_strdup(g_strchug(eq + 1));
	}
	return NULL;
}

/* Whether one of the MX NAMES has one of our addresses. */
static gboolean
mx_addresses_ours(Ctx *c, const GPtrArray *names, gboolean *temp)
{
	for (guint i = 0; i < MIN(names->len, 10); i++) {
		g_autoptr(GPtrArray) fwd = NULL;
		if (lookup_addresses(c, names->pdata[i], &fwd) == PB_DNS_TEMP)
			*temp = TRUE;
		if (ours_in(c, fwd) > 0)
			return TRUE;
	}
	return FALSE;
}

static void
check_mx(Ctx *c, const char *domain)
{
	const char *host = c->req->hostname;
	g_autoptr(GPtrArray) mx = NULL;
	g_autofree char *fix =
	    g_strdup_printf("publish %s. IN MX 10 %s.", domain, host);
	gboolean temp = FALSE;

	c->mx_here = TRUE;
	switch (lookup(c, domain, PB_DNS_MX, &mx)) {
	case PB_DNS_TEMP:
		return add_temp(c, "mx", TRUE, domain);
	case PB_DNS_OK:
		break;
	case PB_DNS_NXDOMAIN:
		return add_check(c, "mx", PB_CHECK_MISSING, TRUE,
		                 g_strdup_printf("%s does not exist", domain),
		                 g_strdup(host),
		                 g_strdup_printf("create the zone of %s with "
		                                 "the records above",
		                                 domain));
	default:
		return add_check(c, "mx", PB_CHECK_MISSING, TRUE, NULL,
		                 g_strdup(host), g_steal_pointer(&fix));
	}
	if (has_string(mx, host) || mx_addresses_ours(c, mx, &temp))
		return add_check(c, "mx", PB_CHECK_OK, TRUE, join(mx, ", "),
		                 g_strdup(host), NULL);
	if (temp)
		return add_temp(c, "mx", TRUE, "the MX hosts' addresses");
	c->mx_here = FALSE;
	add_check(c, "mx", PB_CHECK_WRONG, TRUE,
	          has_string(mx, "") ? g_strdup("null MX: no mail accepted")
	                             : join(mx, ", "),
	          g_strdup(host),
	          g_strdup_printf("%s (unless another host takes the mail "
	                          "of %s on purpose: the SPF record above "
	                          "then names this host's addresses)",
	                          fix, domain));
}

/* The SPF record to publish: "mx" when the MX is (to be) this host,
 * else this host's addresses (or its name, if none is known). */
static char *
spf_text(Ctx *c)
{
	GString *s = g_string_new("v=spf1");

	if (c->mx_here)
		g_string_append(s, " mx");
	for (guint i = 0; !c->mx_here && i < c->addrs->len; i++) {
		const char *a = c->addrs->pdata[i];
		g_string_append_printf(s, " ip%c:%s",
		                       strchr(a, ':') ? '6' : '4', a);
	}
	if (!c->mx_here && c->addrs->len == 0)
		g_string_append_printf(s, " a:%s", c->req->hostname);
	g_string_append(s, " -all");
	return g_string_free(s, FALSE);
}

/* SPF's verdict for mail from postmaster@DOMAIN sent by IP. */
static PbSpfResult
spf_eval(Ctx *c, const char *domain, const char *ip, char **why)
{
	g_autofree char *sender = g_strdup_printf("postmaster@%s", domain);
	PbSpfRequest rq = {.ip = ip,
	                   .sender = sender,
	                   .helo = c->req->helo,
	                   .receiver = c->req->hostname,
	                   .now = c->req->now,
	                   .deadline = c->req->deadline};
	PbSpfOutcome out = {0};
	PbSpfResult res = pb_spf_check_mailfrom(c->r, &rq, &out);

	*why = g_strdup_printf(
	    "%s for %s%s%s%s%s", pb_spf_result_name(res), ip,
	    out.mechanism ? " by " : "", out.mechanism ? out.mechanism : "",
	    out.problem ? ": " : "", out.problem ? out.problem : "");
	pb_spf_outcome_clear(&out);
	return res;
}

/* Does the one valid SPF record REC pass this host, and only it? */
static void
judge_spf(Ctx *c, const char *domain, const char *rec, const char *want)
{
	g_autofree char *bad = NULL;
	gboolean temp = FALSE;
	const char *probe =
	    has_string(c->addrs, PROBE_V4) ? PROBE_V6 : PROBE_V4;
	g_autofree char *why = NULL;

	for (guint i = 0; i < c->addrs->len && bad == NULL; i++) {
		PbSpfResult r = spf_eval(c, domain, c->addrs->pdata[i], &why);
		if (r == PB_SPF_TEMPERROR)
			temp = TRUE;
		else if (r != PB_SPF_PASS)
			bad = g_strdup(why);
		g_clear_pointer(&why, g_free);
	}
	if (bad)
		return add_check(c, "spf", PB_CHECK_WRONG, TRUE,
		                 g_strdup_printf("\"%s\": %s", rec, bad),
		                 g_strdup(want),
		                 g_strdup_printf("publish \"%s\" (or add this "
		                                 "host's addresses before the "
		                                 "all)",
		                                 want));
	if (temp)
		return add_temp(c, "spf", TRUE, "the SPF evaluation");
	if (spf_eval(c, domain, probe, &why) == PB_SPF_PASS)
		return add_check(
		    c, "spf", PB_CHECK_WARN, TRUE,
		    g_strdup_printf("\"%s\": passes any host (%s)", rec, why),
		    g_strdup(want),
		    g_strdup_printf("end it with -all, not +all "
		                    "or ?all: publish \"%s\"",
		                    want));
	add_check(c, "spf", PB_CHECK_OK, TRUE, g_strdup(rec), g_strdup(want),
	          NULL);
}

static void
check_spf(Ctx *c, const char *domain, const char *want)
{
	g_autoptr(GPtrArray) recs = NULL;
	g_autofree char *problem = NULL;
	g_autofree char *fix =
	    g_strdup_printf("publish %s. IN TXT \"%s\"", domain, want);

	if (lookup_txt(c, domain, "v=spf1", &recs) == PB_DNS_TEMP)
		return add_temp(c, "spf", TRUE, domain);
	if (recs->len == 0)
		return add_check(c, "spf", PB_CHECK_MISSING, TRUE, NULL,
		                 g_strdup(want), g_steal_pointer(&fix));
	if (recs->len > 1)
		return add_check(c, "spf", PB_CHECK_WRONG, TRUE,
		                 join(recs, " | "), g_strdup(want),
		                 g_strdup_printf("%d v=spf1 records are a "
		                                 "permerror: keep one, \"%s\"",
		                                 recs->len, want));
	if (!pb_spf_record_valid(recs->pdata[0], &problem))
		return add_check(c, "spf", PB_CHECK_WRONG, TRUE,
		                 g_strdup_printf("\"%s\": %s",
		                                 (char *)recs->pdata[0],
		                                 problem),
		                 g_strdup(want), g_steal_pointer(&fix));
	if (c->addrs->len == 0)
		return add_check(
		    c, "spf", PB_CHECK_WARN, TRUE, g_strdup(recs->pdata[0]),
		    g_strdup(want),
		    g_strdup("valid, but not evaluated: no address "
		             "of this host is known (give "
		             "--address)"));
	judge_spf(c, domain, recs->pdata[0], want);
}

/* The verdict on the key records RECS at NAME for our key WANT. */
static void
judge_dkim(Ctx *c, const char *check, const char *name, GPtrArray *recs,
           const PbDkimKey *want)
{
	gboolean match = FALSE, testing = FALSE, revoked = FALSE;
	g_autofree char *problem = NULL;

	for (guint i = 0; i < recs->len; i++) {
		const char *t = recs->pdata[i];
		g_autoptr(GError) err = NULL;
		g_autoptr(PbDkimKey) k = pb_dkim_key_parse(t, strlen(t), &err);
		if (k == NULL && problem == NULL)
			problem = g_strdup(err->message);
		if (k == NULL || k->type != want->type)
			continue;
		if (g_bytes_equal(k->key, want->key))
			match = TRUE, testing = k->testing;
		else if (g_bytes_get_size(k->key) == 0)
			revoked = TRUE;
	}
	if (match)
		return add_check(
		    c, check,
		    recs->len > 1 || testing ? PB_CHECK_WARN : PB_CHECK_OK,
		    TRUE, join(recs, " | "), NULL,
		    g_strdup(testing ? "t=y (testing): receivers may treat "
		                       "failures as unsigned; publish the "
		                       "record above without it"
		                     : "several records at one name: some "
		                       "verifiers read one; keep only ours"));
	add_check(c, check, PB_CHECK_WRONG, TRUE, join(recs, " | "), NULL,
	          g_strdup_printf("%s: publish the %s record above in its "
	                          "place",
	                          revoked   ? "the key is revoked (empty p=)"
	                          : problem ? problem
	                                    : "another key is published (an "
	                                      "old one?)",
	                          name));
}

static void
check_dkim(Ctx *c, const char *domain, const PbDnsDkimKey *k, const char *text)
{
	g_autofree char *check = g_strdup_printf("dkim %s", k->selector);
	g_autofree char *name =
	    g_strdup_printf("%s._domainkey.%s", k->selector, domain);
	g_autoptr(PbDkimKey) want = pb_dkim_key_parse(text, strlen(text), NULL);
	g_autoptr(GPtrArray) recs = NULL;

	g_assert_nonnull(want); /* our own record */
	if (lookup_txt(c, name, NULL, &recs) == PB_DNS_TEMP)
		return add_temp(c, check, TRUE, name);
	if (recs->len == 0)
		return add_check(
		    c, check, PB_CHECK_MISSING, TRUE, NULL, NULL,
		    g_strdup_printf("publish the %s record above", name));
	judge_dkim(c, check, name, recs, want);
}

/* The text of our DKIM key record for K (pb_dkim_key_record joined). */
static char *
dkim_text(const PbDnsDkimKey *k)
{
	g_auto(GStrv) parts = pb_dkim_key_record(k->key, NULL);

	return parts ? g_strjoinv("", parts) : NULL;
}

/* With no _dmarc record of its own, a domain may have its
 * organizational domain's (RFC 9989 tree walk, dmarc.c). */
static void
dmarc_inherited(Ctx *c, const char *domain, const char *want)
{
	PbDmarcRequest rq = {.from_domain = domain,
	                     .from_fields = 1,
	                     .spf_domain = domain,
	                     .spf_result = PB_SPF_PASS,
	                     .deadline = c->req->deadline};
	PbDmarcOutcome out = {0};
	PbDmarcResult res = pb_dmarc_check(c->r, &rq, &out);
	gboolean none = out.policy == PB_DMARC_POLICY_NONE;

	if (res == PB_DMARC_TEMPERROR)
		add_temp(c, "dmarc", TRUE, "_dmarc");
	else if (res == PB_DMARC_NONE || out.policy_domain == NULL)
		add_check(c, "dmarc", PB_CHECK_MISSING, TRUE, NULL,
		          g_strdup(want),
		          g_strdup_printf("publish _dmarc.%s. IN TXT \"%s\"",
		                          domain, want));
	else
		add_check(c, "dmarc",
		          res == PB_DMARC_PERMERROR ? PB_CHECK_WRONG
		          : none                    ? PB_CHECK_WARN
		                                    : PB_CHECK_OK,
		          TRUE,
		          g_strdup_printf("inherited from _dmarc.%s: p=%s",
		                          out.policy_domain,
		                          pb_dmarc_policy_name(out.policy)),
		          g_strdup(want),
		          g_strdup_printf("publish _dmarc.%s. IN TXT \"%s\"",
		                          domain, want));
	pb_dmarc_outcome_clear(&out);
}

static void
check_dmarc(Ctx *c, const char *domain, const char *want)
{
	g_autofree char *name = g_strdup_printf("_dmarc.%s", domain);
	g_autofree char *fix =
	    g_strdup_printf("publish %s. IN TXT \"%s\"", name, want);
	g_autoptr(GPtrArray) recs = NULL;
	g_autoptr(PbDmarcRecord) rec = NULL;
	g_autofree char *problem = NULL;

	if (lookup_txt(c, name, "v=DMARC1", &recs) == PB_DNS_TEMP)
		return add_temp(c, "dmarc", TRUE, name);
	if (recs->len == 0)
		return dmarc_inherited(c, domain, want);
	if (recs->len > 1)
		return add_check(
		    c, "dmarc", PB_CHECK_WRONG, TRUE, join(recs, " | "),
		    g_strdup(want),
		    g_strdup_printf("several DMARC records count as "
		                    "none: keep one; %s",
		                    fix));
	rec = pb_dmarc_record_parse(recs->pdata[0], &problem);
	if (rec == NULL)
		return add_check(c, "dmarc", PB_CHECK_WRONG, TRUE,
		                 g_strdup_printf("\"%s\": %s",
		                                 (char *)recs->pdata[0],
		                                 problem),
		                 g_strdup(want), g_steal_pointer(&fix));
	add_check(c, "dmarc",
	          rec->p == PB_DMARC_POLICY_NONE ? PB_CHECK_WARN : PB_CHECK_OK,
	          TRUE, g_strdup(recs->pdata[0]), g_strdup(want),
	          g_strdup_printf("p=none only watches: once the rua= reports "
	                          "show your mail passing, %s",
	                          fix));
}

/* MTA-STS's id= is 1 to 32 letters and digits (RFC 8461 3.1); any
 * other tag wants a value. */
static gboolean
tag_valid(const char *tag, const char *value)
{
	gsize n = value ? strlen(value) : 0;

	if (n == 0 || (strcmp(tag, "id") == 0 && n > 32))
		return FALSE;
	for (gsize i = 0; strcmp(tag, "id") == 0 && i < n; i++)
		if (!g_ascii_isalnum(value[i]))
			return FALSE;
	return TRUE;
}

/* An optional record for later: present with TAG (MTA-STS id=, TLS-RPT
 * rua=), or not. */
static void
check_later(Ctx *c, const char *check, const char *name, const char *prefix,
            const char *tag, const char *how)
{
	g_autoptr(GPtrArray) recs = NULL;
	g_autofree char *value = NULL;

	if (lookup_txt(c, name, prefix, &recs) == PB_DNS_TEMP)
		return add_temp(c, check, FALSE, name);
	if (recs->len == 0)
		return add_check(
		    c, check, PB_CHECK_MISSING, FALSE, NULL, NULL,
		    g_strdup_printf("optional, for later: %s", how));
	value = recs->len == 1 ? tag_value(recs->pdata[0], tag) : NULL;
	add_check(
	    c, check, tag_valid(tag, value) ? PB_CHECK_OK : PB_CHECK_WRONG,
	    FALSE, join(recs, " | "), NULL,
	    recs->len > 1 ? g_strdup("several records count as none: keep one, "
	                             "as above")
	                  : g_strdup_printf("no valid %s= tag: publish the "
	                                    "record above",
	                                    tag));
}

/* The records to publish for DOMAIN, in the table's order. */
static void
domain_records(Ctx *c, const char *domain, const char *spf, const char *dmarc,
               char **dkim)
{
	const char *host = c->req->hostname;
	g_autofree char *mx = g_strdup_printf("10 %s", host);
	g_autoptr(GDateTime) now = g_date_time_new_from_unix_utc(
	    c->req->now ? c->req->now : g_get_real_time() / G_USEC_PER_SEC);
	g_autofree char *stamp = g_date_time_format(now, "%Y%m%d%H%M%S");
	g_autofree char *sts = g_strdup_printf("v=STSv1; id=%s", stamp);
	g_autofree char *rpt =
	    g_strdup_printf("v=TLSRPTv1; rua=mailto:postmaster@%s", domain);
	g_autofree char *name = NULL;
	g_autofree char *note = NULL;

	add_record(c, domain, "MX", mx, FALSE, NULL);
	add_record(c, domain, "TXT", spf, FALSE, NULL);
	for (guint i = 0; dkim && dkim[i]; i++) {
		g_free(name);
		name = g_strdup_printf("%s._domainkey.%s",
		                       c->req->dkim[i].selector, domain);
		add_record(c, name, "TXT", dkim[i], FALSE, NULL);
	}
	g_free(name);
	name = g_strdup_printf("_dmarc.%s", domain);
	add_record(c, name, "TXT", dmarc, FALSE, NULL);
	g_free(name);
	name = g_strdup_printf("_mta-sts.%s", domain);
	note = g_strdup_printf("MTA-STS (RFC 8461): only with a policy at "
	                       "https://mta-sts.%s/.well-known/mta-sts.txt "
	                       "(\"mode: testing\", \"mx: %s\"); a new id= "
	                       "at every change of it",
	                       domain, host);
	add_record(c, name, "TXT", sts, TRUE, note);
	g_free(name);
	name = g_strdup_printf("_smtp._tls.%s", domain);
	add_record(c, name, "TXT", rpt, TRUE,
	           "TLS-RPT (RFC 8460): daily reports of failed TLS to you");
}

/* Our DKIM records for DOMAIN (one per key), or NULL with a check that
 * says why there are none. */
static char **
dkim_texts(Ctx *c, const char *domain)
{
	GPtrArray *texts;

	if (c->req->dkim == NULL || c->req->dkim[0].key == NULL) {
		add_check(
		    c, "dkim", PB_CHECK_WARN, TRUE, NULL, NULL,
		    g_strdup("signing is off: mailuser dkim-keygen DOMAIN "
		             "SELECTOR, then [dkim] selector and key"));
		return NULL;
	}
	if (!pb_config_domain_listed((char **)c->req->dkim_domains, domain)) {
		add_check(c, "dkim", PB_CHECK_WARN, TRUE, NULL, NULL,
		          g_strdup_printf("mail from %s is not signed: add it "
		                          "to [dkim] domains",
		                          domain));
		return NULL;
	}
	texts = g_ptr_array_new();
	for (guint i = 0; c->req->dkim[i].key; i++)
		g_ptr_array_add(texts, dkim_text(&c->req->dkim[i]));
	g_ptr_array_add(texts, NULL);
	return (char **)g_ptr_array_free(texts, FALSE);
}

static void
run_domain(Ctx *c, const char *domain)
{
	g_autofree char *spf = NULL;
	g_autofree char *dmarc = g_strdup_printf(
	    "v=DMARC1; p=quarantine; rua=mailto:postmaster@%s", domain);
	g_autofree char *sts = g_strdup_printf("_mta-sts.%s", domain);
	g_autofree char *rpt = g_strdup_printf("_smtp._tls.%s", domain);
	g_auto(GStrv) dkim = NULL;

	check_mx(c, domain);
	spf = spf_text(c);
	check_spf(c, domain, spf);
	dkim = dkim_texts(c, domain);
	for (guint i = 0; dkim && dkim[i]; i++)
		check_dkim(c, domain, &c->req->dkim[i], dkim[i]);
	check_dmarc(c, domain, dmarc);
	check_later(c, "mta-sts", sts, "v=STSv1", "id",
	            "the _mta-sts record above, once the policy is served");
	check_later(c, "tls-rpt", rpt, "v=TLSRPTv1", "rua",
	            "the _smtp._tls record above");
	domain_records(c, domain, spf, dmarc, dkim);
}

PbDnsReport *
pb_dnscheck_run(PbResolver *resolver, const PbDnsCheckRequest *req)
{
	PbDnsReport *rep = g_new0(PbDnsReport, 1);
	Ctx c = {.r = resolver, .req = req};

	rep->hostname = g_strdup(req->hostname);
	rep->helo = g_strdup(req->helo);
	rep->addresses = g_ptr_array_new_with_free_func(g_free);
	rep->sections =
	    g_ptr_array_new_with_free_func((GDestroyNotify)section_free);
	for (guint i = 0; req->addresses && req->addresses[i]; i++) {
		guint8 bytes[16];
		char *a = canon_ip(req->addresses[i], NULL, bytes);
		g_assert_nonnull(a);
		g_ptr_array_add(rep->addresses, a);
	}
	c.addrs = rep->addresses;
	c.sec = section_new(NULL);
	g_ptr_array_add(rep->sections, c.sec);
	run_host(&c);
	for (guint i = 0; req->domains && req->domains[i]; i++) {
		c.sec = section_new(req->domains[i]);
		g_ptr_array_add(rep->sections, c.sec);
		run_domain(&c, req->domains[i]);
	}
	return rep;
}

PbCheckStatus
pb_dnscheck_verdict(const PbDnsReport *rep)
{
	PbCheckStatus worst = PB_CHECK_OK;

	for (guint i = 0; i < rep->sections->len; i++) {
		const PbDnsSection *s = rep->sections->pdata[i];
		for (guint j = 0; j < s->checks->len; j++) {
			const PbDnsCheck *k = s->checks->pdata[j];
			if (k->required && k->status > worst)
				worst = k->status;
		}
	}
	return worst;
}

/* Loads the [dkim] key (or ed25519_key) into K, checking that its record
 * can be made. */
static gboolean
load_key(PbDnsDkimKey *k, const char *what, const char *file,
         const char *selector, GError **error)
{
	g_auto(GStrv) record = NULL;

	k->selector = selector;
	if ((k->key = pb_dkim_privkey_load(what, file, error)) == NULL)
		return FALSE;
	if ((record = pb_dkim_key_record(k->key, error)) == NULL) {
		g_prefix_error(error, "[dkim] %s %s: ", what, file);
		return FALSE;
	}
	return TRUE;
}

static void
keys_clear(PbDnsDkimKey *keys)
{
	for (guint i = 0; keys[i].key; i++)
		pb_privkey_free(keys[i].key);
}

/* Domains as given (lower case, no final dot), or [main] domains. */
static char **
domain_list(const PbConfig *cfg, char **domains)
{
	GPtrArray *out = g_ptr_array_new();

	for (guint i = 0; domains && domains[i]; i++) {
		char *d = g_ascii_strdown(domains[i], -1);
		gsize n = strlen(d);
		if (n > 1 && d[n - 1] == '.')
			d[n - 1] = '\0';
		g_ptr_array_add(out, d);
	}
	if (out->len == 0)
		for (guint i = 0; cfg->domains[i]; i++)
			g_ptr_array_add(out, g_strdup(cfg->domains[i]));
	g_ptr_array_add(out, NULL);
	return (char **)g_ptr_array_free(out, FALSE);
}

PbDnsReport *
pb_dnscheck(const PbConfig *cfg, char **domains, char **addresses,
            GError **error)
{
	PbDnsDkimKey keys[3] = {{0}};
	g_auto(GStrv) list = domain_list(cfg, domains);
	g_autoptr(PbResolver) r = NULL;
	PbDnsReport *rep = NULL;
	guint8 bytes[16];

	for (guint i = 0; addresses && addresses[i]; i++) {
		g_autofree char *a = canon_ip(addresses[i], NULL, bytes);
		if (a == NULL) {
			g_set_error(error, PB_ERROR, PB_ERROR_USAGE,
			            "--address %s: not an IP address",
			            addresses[i]);
			return NULL;
		}
	}
	if ((cfg->dkim_selector == NULL ||
	     load_key(&keys[0], "key", cfg->dkim_key, cfg->dkim_selector,
	              error)) &&
	    (cfg->dkim_ed25519_key == NULL ||
	     load_key(&keys[1], "ed25519_key", cfg->dkim_ed25519_key,
	              cfg->dkim_ed25519_selector, error)) &&
	    (r = pb_dns_resolver_new(cfg, error)) != NULL) {
		PbDnsCheckRequest req = {
		    .hostname = cfg->hostname,
		    .helo = cfg->helo ? cfg->helo : cfg->hostname,
		    .addresses = (const char *const *)addresses,
		    .domains = (const char *const *)list,
		    .dkim = keys,
		    .dkim_domains =
		        cfg->dkim_domains[0] ? cfg->dkim_domains : cfg->domains,
		    .deadline = pb_deadline_in(30)};
		rep = pb_dnscheck_run(r, &req);
	}
	keys_clear(keys);
	return rep;
}

/* ---- output ---- */

/* TEXT cut to the table's width. */
static void
append_cut(GString *out, const char *text)
{
	gsize n = strlen(text);

	if (n <= 64)
		g_string_append(out, text);
	else
		g_string_append_printf(out, "%.60s ...", text);
}

static void
format_records(GString *out, const PbDnsSection *s)
{
	gboolean later = FALSE;

	g_string_append(out, "Publish:\n");
	for (guint i = 0; i < s->records->len; i++) {
		const PbDnsRecord *r = s->records->pdata[i];
		g_auto(GStrv) lines = g_strsplit(r->zone, "\n", -1);
		if (r->optional && !later) {
			g_string_append(out, "  ; optional, for later:\n");
			later = TRUE;
		}
		if (r->note)
			g_string_append_printf(out, "  ; %s\n", r->note);
		for (guint j = 0; lines[j]; j++)
			g_string_append_printf(out, "  %s\n", lines[j]);
	}
}

static void
format_check(GString *out, const PbDnsCheck *k)
{
	g_autofree char *name =
	    g_strdup_printf("%s%s", k->name, k->required ? "" : " (optional)");

	g_string_append_printf(out, "  %-7s  %-20s  ",
	                       pb_check_status_name(k->status), name);
	append_cut(out, k->found ? k->found : "-");
	g_string_append_c(out, '\n');
	if (k->status == PB_CHECK_OK)
		return;
	if (k->expected) {
		g_string_append_printf(out, "  %-7s  %-20s  expected: ", "",
		                       "");
		append_cut(out, k->expected);
		g_string_append_c(out, '\n');
	}
	if (k->fix)
		g_string_append_printf(out, "  %-7s  %-20s  fix: %s\n", "", "",
		                       k->fix);
}

static void
format_text(GString *out, const PbDnsReport *rep)
{
	g_autofree char *addrs = join(rep->addresses, ", ");
	guint counts[PB_CHECK_WRONG + 1] = {0};
	PbCheckStatus verdict = pb_dnscheck_verdict(rep);

	g_string_append_printf(out, "host %s, HELO %s, addresses %s\n",
	                       rep->hostname, rep->helo,
	                       *addrs ? addrs : "(none known)");
	for (guint i = 0; i < rep->sections->len; i++) {
		const PbDnsSection *s = rep->sections->pdata[i];
		g_string_append_printf(out, "\n== %s%s\n",
		                       s->domain ? s->domain : rep->hostname,
		                       s->domain ? "" : " (this host)");
		format_records(out, s);
		g_string_append(out, "Checks:\n");
		for (guint j = 0; j < s->checks->len; j++) {
			const PbDnsCheck *k = s->checks->pdata[j];
			format_check(out, k);
			counts[k->status] += k->required;
		}
	}
	g_string_append_printf(
	    out, "\nResult: %s",
	    verdict <= PB_CHECK_WARN   ? "all required records are right"
	    : verdict == PB_CHECK_TEMP ? "not known yet, DNS did not answer"
	                               : "to be fixed");
	for (int st = PB_CHECK_WRONG, n = 0; st > PB_CHECK_OK; st--)
		if (counts[st])
			g_string_append_printf(out, "%s%u %s",
			                       n++ ? ", " : " (", counts[st],
			                       pb_check_status_name(st));
	g_string_append(out, counts[PB_CHECK_WRONG] + counts[PB_CHECK_MISSING] +
	                             counts[PB_CHECK_TEMP] +
	                             counts[PB_CHECK_WARN]
	                         ? ")\n"
	                         : "\n");
}

static void
json_field(GString *out, const char *key, const char *value, gboolean comma)
{
	pb_json_string(out, key);
	g_string_append_c(out, ':');
	if (value)
		pb_json_string(out, value);
	else
		g_string_append(out, "null");
	if (comma)
		g_string_append_c(out, ',');
}

static void
json_record(GString *out, const PbDnsRecord *r)
{
	g_string_append_c(out, '{');
	json_field(out, "name", r->name, TRUE);
	json_field(out, "type", r->type, TRUE);
	json_field(out, "value", r->value, TRUE);
	g_string_append(out, "\"strings\":");
	if (r->strings == NULL)
		g_string_append(out, "null");
	for (guint i = 0; r->strings && r->strings[i]; i++) {
		g_string_append_c(out, i ? ',' : '[');
		pb_json_string(out, r->strings[i]);
	}
	if (r->strings)
		g_string_append_c(out, ']');
	g_string_append_printf(out, ",\"optional\":%s,",
	                       r->optional ? "true" : "false");
	json_field(out, "note", r->note, TRUE);
	json_field(out, "zone", r->zone, FALSE);
	g_string_append_c(out, '}');
}

static void
json_check(GString *out, const PbDnsCheck *k)
{
	g_autofree char *status =
	    g_ascii_strdown(pb_check_status_name(k->status), -1);

	g_string_append_c(out, '{');
	json_field(out, "check", k->name, TRUE);
	json_field(out, "status", status, TRUE);
	g_string_append_printf(out, "\"required\":%s,",
	                       k->required ? "true" : "false");
	json_field(out, "found", k->found, TRUE);
	json_field(out, "expected", k->expected, TRUE);
	json_field(out, "fix", k->fix, FALSE);
	g_string_append_c(out, '}');
}

static void
json_section(GString *out, const PbDnsSection *s)
{
	g_string_append_c(out, '{');
	if (s->domain)
		json_field(out, "domain", s->domain, TRUE);
	g_string_append(out, "\"records\":[");
	for (guint i = 0; i < s->records->len; i++) {
		if (i)
			g_string_append_c(out, ',');
		json_record(out, s->records->pdata[i]);
	}
	g_string_append(out, "],\"checks\":[");
	for (guint i = 0; i < s->checks->len; i++) {
		if (i)
			g_string_append_c(out, ',');
		json_check(out, s->checks->pdata[i]);
	}
	g_string_append(out, "]}");
}

static void
format_json(GString *out, const PbDnsReport *rep)
{
	g_autofree char *verdict =
	    g_ascii_strdown(pb_check_status_name(pb_dnscheck_verdict(rep)), -1);

	g_string_append_c(out, '{');
	json_field(out, "hostname", rep->hostname, TRUE);
	json_field(out, "helo", rep->helo, TRUE);
	g_string_append(out, "\"addresses\":[");
	for (guint i = 0; i < rep->addresses->len; i++) {
		if (i)
			g_string_append_c(out, ',');
		pb_json_string(out, rep->addresses->pdata[i]);
	}
	g_string_append(out, "],");
	json_field(out, "result", verdict, TRUE);
	g_string_append(out, "\"host\":");
	json_section(out, rep->sections->pdata[0]);
	g_string_append(out, ",\"domains\":[");
	for (guint i = 1; i < rep->sections->len; i++) {
		if (i > 1)
			g_string_append_c(out, ',');
		json_section(out, rep->sections->pdata[i]);
	}
	g_string_append(out, "]}\n");
}

GString *
pb_dnscheck_format(const PbDnsReport *rep, gboolean json)
{
	GString *out = g_string_new(NULL);

	if (json)
		format_json(out, rep);
	else
		format_text(out, rep);
	return out;
}
