/* test-dnscheck.c - pillarbox-dns: the records it recommends and how it
 * judges what DNS holds, with zone data fed through a PbResolver. */
#include "dkim.h"
#include "dnscheck.h"
#include "error.h"
#include "zone.h"

#include <string.h>
#include <sys/socket.h>

#define HOST "mx.example.org"
#define ADDR "192.0.2.10"
#define ADDR6 "2001:db8::10"
#define REV "10.2.0.192.in-addr.arpa"
#define NOW 1764691200 /* 2025-12-02 16:00:00 UTC */

typedef struct {
	TestZone *z;
	PbPrivKey *key, *other;
	char *record; /* our key's TXT text */
	PbDnsDkimKey dkim[2];
	const char *addresses[3];
	const char *domains[3];
	PbDnsCheckRequest req;
} F;

static char *
record_of(PbPrivKey *key)
{
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) parts = pb_dkim_key_record(key, &error);

	g_assert_no_error(error);
	return g_strjoinv("", parts);
}

static void
mx(TestZone *z, const char *domain, const char *host)
{
	const char *v[] = {"10", host, NULL};

	test_zone_add(z, domain, "MX", v);
}

/* example.org published right; every test spoils what it tests. */
static void
setup(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	static char *signed_for[] = {"example.org", "example.net",
	                             "example.com", "slow.example", NULL};

	f->z = test_zone_new();
	f->key = pb_privkey_generate(PB_KEY_ED25519, 0, &error);
	f->other = pb_privkey_generate(PB_KEY_ED25519, 0, &error);
	g_assert_no_error(error);
	f->record = record_of(f->key);
	f->dkim[0] = (PbDnsDkimKey){f->key, "sel"};
	f->domains[0] = "example.org";
	f->req = (PbDnsCheckRequest){.hostname = HOST,
	                             .helo = HOST,
	                             .addresses = f->addresses,
	                             .domains = f->domains,
	                             .dkim = f->dkim,
	                             .dkim_domains = signed_for,
	                             .now = NOW,
	                             .deadline = pb_deadline_in(10)};
	test_zone_add1(f->z, HOST, "A", ADDR);
	test_zone_add1(f->z, REV, "PTR", HOST);
	mx(f->z, "example.org", HOST);
	test_zone_add1(f->z, "example.org", "TXT", "v=spf1 mx -all");
	test_zone_add1(f->z, "sel._domainkey.example.org", "TXT", f->record);
	test_zone_add1(f->z, "_dmarc.example.org", "TXT",
	               "v=DMARC1; p=quarantine; rua=mailto:p@example.org");
}

static void
teardown(F *f, gconstpointer data)
{
	test_zone_free(f->z);
	pb_privkey_free(f->key);
	pb_privkey_free(f->other);
	g_free(f->record);
}

static PbDnsReport *
run(F *f)
{
	return pb_dnscheck_run(test_zone_resolver(f->z), &f->req);
}

/* The check NAME of SECTION (0: the host, then the domains). */
static const PbDnsCheck *
find(const PbDnsReport *rep, guint section, const char *name)
{
	const PbDnsSection *s = rep->sections->pdata[section];

	for (guint i = 0; i < s->checks->len; i++) {
		const PbDnsCheck *k = s->checks->pdata[i];
		if (g_str_equal(k->name, name))
			return k;
	}
	g_error("no check %s", name);
}

static void
expect(const PbDnsReport *rep, guint section, const char *name,
       PbCheckStatus status)
{
	const PbDnsCheck *k = find(rep, section, name);

	g_assert_cmpstr(pb_check_status_name(k->status), ==,
	                pb_check_status_name(status));
	if (status == PB_CHECK_OK)
		g_assert_null(k->fix);
	else
		g_assert_nonnull(k->fix);
}

/* The zone line of the record of TYPE at NAME. */
static const char *
zone_of(const PbDnsReport *rep, guint section, const char *name,
        const char *type)
{
	const PbDnsSection *s = rep->sections->pdata[section];

	for (guint i = 0; i < s->records->len; i++) {
		const PbDnsRecord *r = s->records->pdata[i];
		if (g_str_equal(r->name, name) && g_str_equal(r->type, type))
			return r->zone;
	}
	return NULL;
}

static void
test_split(void)
{
	g_autofree char *text = g_strnfill(600, 'x');
	g_auto(GStrv) parts = pb_dns_txt_split(text);
	g_auto(GStrv) one = pb_dns_txt_split("v=spf1 -all");
	g_autofree char *zone = pb_dns_zone_txt("a.example", parts);
	g_autofree char *zone1 = pb_dns_zone_txt("b.example", one);
	g_autofree char *rev4 =
	    pb_dns_reverse_name(AF_INET, (const guint8 *)"\xc0\x00\x02\x0a");

	g_assert_cmpuint(g_strv_length(parts), ==, 3);
	g_assert_cmpuint(strlen(parts[0]), ==, 255);
	g_assert_cmpuint(strlen(parts[2]), ==, 90);
	g_assert_true(g_str_has_prefix(zone, "a.example. IN TXT ( \"xxx"));
	g_assert_true(g_str_has_suffix(zone, "xxx\" )"));
	g_assert_nonnull(strstr(zone, "\"\n    \""));
	g_assert_cmpstr(zone1, ==, "b.example. IN TXT \"v=spf1 -all\"");
	g_assert_cmpstr(rev4, ==, REV);
}

static void
test_records(F *f, gconstpointer data)
{
	g_autoptr(PbDnsReport) rep = NULL;
	g_autofree char *dkim = NULL;
	const PbDnsSection *s;

	f->addresses[0] = ADDR6;
	f->addresses[1] = ADDR;
	rep = run(f);
	dkim = g_strdup_printf("sel._domainkey.example.org. IN TXT \"%s\"",
	                       f->record);
	g_assert_cmpstr(zone_of(rep, 0, HOST, "AAAA"), ==,
	                HOST ". IN AAAA " ADDR6);
	g_assert_cmpstr(zone_of(rep, 0, REV, "PTR"), ==,
	                REV ". IN PTR " HOST ".");
	g_assert_nonnull(zone_of(rep, 0,
	                         "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
	                         "0.0.8.b.d.0.1.0.0.2.ip6.arpa",
	                         "PTR"));
	g_assert_cmpstr(zone_of(rep, 1, "example.org", "MX"), ==,
	                "example.org. IN MX 10 " HOST ".");
	g_assert_cmpstr(zone_of(rep, 1, "example.org", "TXT"), ==,
	                "example.org. IN TXT \"v=spf1 mx -all\"");
	g_assert_cmpstr(zone_of(rep, 1, "sel._domainkey.example.org", "TXT"),
	                ==, dkim);
	g_assert_cmpstr(zone_of(rep, 1, "_dmarc.example.org", "TXT"), ==,
	                "_dmarc.example.org. IN TXT \"v=DMARC1; p=quarantine; "
	                "rua=mailto:postmaster@example.org\"");
	g_assert_cmpstr(zone_of(rep, 1, "_mta-sts.example.org", "TXT"), ==,
	                "_mta-sts.example.org. IN TXT \"v=STSv1; "
	                "id=20251202160000\"");
	g_assert_cmpstr(zone_of(rep, 1, "_smtp._tls.example.org", "TXT"), ==,
	                "_smtp._tls.example.org. IN TXT \"v=TLSRPTv1; "
	                "rua=mailto:postmaster@example.org\"");
	s = rep->sections->pdata[1];
	g_assert_true(((PbDnsRecord *)s->records->pdata[5])->optional);
	g_assert_false(((PbDnsRecord *)s->records->pdata[3])->optional);
}

static void
test_all_right(F *f, gconstpointer data)
{
	g_autoptr(PbDnsReport) rep = run(f);
	g_autoptr(GString) text = pb_dnscheck_format(rep, FALSE);
	g_autoptr(GString) json = pb_dnscheck_format(rep, TRUE);

	/* no --address: the hostname's */
	g_assert_cmpuint(rep->addresses->len, ==, 1);
	g_assert_cmpstr(rep->addresses->pdata[0], ==, ADDR);
	expect(rep, 0, "address", PB_CHECK_OK);
	expect(rep, 0, "ptr " ADDR, PB_CHECK_OK);
	expect(rep, 0, "helo", PB_CHECK_OK);
	for (guint i = 0; i < 4; i++)
		expect(rep, 1,
		       (const char *[]){"mx", "spf", "dkim sel", "dmarc"}[i],
		       PB_CHECK_OK);
	expect(rep, 1, "mta-sts", PB_CHECK_MISSING);
	g_assert_false(find(rep, 1, "mta-sts")->required);
	g_assert_cmpint(pb_dnscheck_verdict(rep), ==, PB_CHECK_OK);
	g_assert_nonnull(strstr(text->str, "\nResult: all required records "
	                                   "are right\n"));
	g_assert_nonnull(strstr(text->str, "\n  OK       spf                   "
	                                   "v=spf1 mx -all\n"));
	g_assert_nonnull(strstr(json->str, "\"result\":\"ok\""));
	g_assert_nonnull(strstr(
	    json->str, "{\"check\":\"spf\",\"status\":\"ok\","
	               "\"required\":true,\"found\":\"v=spf1 mx -all\""));
}

/* A host that is not what DNS says. */
static void
test_host_wrong(F *f, gconstpointer data)
{
	g_autoptr(PbDnsReport) rep = NULL;

	/* an address not the hostname's, whose PTR names another host that
	 * resolves back to it; another without PTR; HELO without A */
	f->addresses[0] = ADDR;
	f->addresses[1] = "192.0.2.11";
	f->req.helo = "helo.example.org";
	test_zone_add1(f->z, "11.2.0.192.in-addr.arpa", "PTR",
	               "other.example.org");
	test_zone_add1(f->z, "other.example.org", "A", "192.0.2.11");
	rep = run(f);
	expect(rep, 0, "address", PB_CHECK_WRONG);
	expect(rep, 0, "ptr " ADDR, PB_CHECK_OK);
	expect(rep, 0, "ptr 192.0.2.11", PB_CHECK_WARN);
	expect(rep, 0, "helo", PB_CHECK_MISSING);
	g_clear_pointer(&rep, pb_dns_report_free);

	/* a PTR to our name that is not forward-confirmed */
	f->addresses[0] = "192.0.2.12";
	f->addresses[1] = NULL;
	f->req.helo = HOST;
	test_zone_add1(f->z, "12.2.0.192.in-addr.arpa", "PTR", HOST);
	rep = run(f);
	expect(rep, 0, "ptr 192.0.2.12", PB_CHECK_WRONG);
	expect(rep, 0, "helo", PB_CHECK_WRONG);
	g_assert_cmpint(pb_dnscheck_verdict(rep), ==, PB_CHECK_WRONG);
}

/* MX, SPF, DMARC and DKIM of example.net spoilt one by one. */
static void
test_domain_wrong(F *f, gconstpointer data)
{
	g_autoptr(PbDnsReport) rep = NULL;

	f->domains[0] = "example.net";
	mx(f->z, "example.net", "mx.elsewhere.example");
	test_zone_add1(f->z, "mx.elsewhere.example", "A", "198.51.100.1");
	test_zone_add1(f->z, "example.net", "TXT", "v=spf1 mx -all");
	test_zone_add1(f->z, "sel._domainkey.example.net", "TXT",
	               "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMl"
	               "rwIaaPcHURo=");
	test_zone_add1(f->z, "_dmarc.example.net", "TXT", "v=DMARC1; p=none");
	rep = run(f);
	expect(rep, 1, "mx", PB_CHECK_WRONG);
	expect(rep, 1, "spf", PB_CHECK_WRONG);
	g_assert_nonnull(strstr(find(rep, 1, "spf")->found, "fail for " ADDR));
	/* the MX is elsewhere: SPF names this host's address */
	g_assert_cmpstr(find(rep, 1, "spf")->expected, ==,
	                "v=spf1 ip4:" ADDR " -all");
	expect(rep, 1, "dkim sel", PB_CHECK_WRONG);
	g_assert_nonnull(strstr(find(rep, 1, "dkim sel")->fix, "another key"));
	expect(rep, 1, "dmarc", PB_CHECK_WARN);
	g_assert_cmpint(pb_dnscheck_verdict(rep), ==, PB_CHECK_WRONG);
}

/* Each spoilt TXT record of example.com, and its verdict. */
static void
test_records_wrong(F *f, gconstpointer data)
{
	static const struct {
		const char *name, *text, *check;
		PbCheckStatus status;
	} cases[] = {
	    {"example.com", "v=spf1 +all", "spf", PB_CHECK_WARN},
	    {"example.com", "v=spf1 mx ip4:300.1.1.1 -all", "spf",
	     PB_CHECK_WRONG},
	    {"example.com", "v=spf1 a -all|v=spf1 mx -all", "spf",
	     PB_CHECK_WRONG},
	    {"example.com", "v=spf10 mx", "spf", PB_CHECK_MISSING},
	    {"_dmarc.example.com", "v=DMARC1; p=bogus", "dmarc",
	     PB_CHECK_WRONG},
	    {"_dmarc.example.com", "v=DMARC1; p=reject|v=DMARC1; p=none",
	     "dmarc", PB_CHECK_WRONG},
	    {"_dmarc.example.com", "some other text", "dmarc",
	     PB_CHECK_MISSING},
	    {"sel._domainkey.example.com", "v=DKIM1; k=ed25519; p=", "dkim sel",
	     PB_CHECK_WRONG},
	    {"sel._domainkey.example.com", "v=DKIM1; k=rsa; p=!!", "dkim sel",
	     PB_CHECK_WRONG},
	    {"_mta-sts.example.com", "v=STSv1; id=no-dashes", "mta-sts",
	     PB_CHECK_WRONG},
	    {"_mta-sts.example.com", "v=STSv1; id=2026a", "mta-sts",
	     PB_CHECK_OK},
	    {"_smtp._tls.example.com", "v=TLSRPTv1;", "tls-rpt",
	     PB_CHECK_WRONG},
	    {"_smtp._tls.example.com", "v=TLSRPTv1; rua=mailto:t@example.com",
	     "tls-rpt", PB_CHECK_OK},
	};

	f->domains[0] = "example.com";
	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(TestZone) z = test_zone_new();
		g_auto(GStrv) texts = g_strsplit(cases[i].text, "|", -1);
		g_autoptr(PbDnsReport) rep = NULL;
		test_zone_add1(z, HOST, "A", ADDR);
		mx(z, "example.com", HOST);
		for (guint j = 0; texts[j]; j++)
			test_zone_add1(z, cases[i].name, "TXT", texts[j]);
		rep = pb_dnscheck_run(test_zone_resolver(z), &f->req);
		g_test_message("%s", cases[i].text);
		expect(rep, 1, cases[i].check, cases[i].status);
	}
}

/* A key with t=y, and a second record beside ours: WARN. */
static void
test_dkim_warn(F *f, gconstpointer data)
{
	g_autoptr(PbDnsReport) rep = NULL;
	g_autofree char *testing = g_strdup_printf("%s; t=y", f->record);
	g_autofree char *old = record_of(f->other);

	f->domains[0] = "example.com";
	f->domains[1] = "example.net";
	test_zone_add1(f->z, "sel._domainkey.example.com", "TXT", testing);
	test_zone_add1(f->z, "sel._domainkey.example.net", "TXT", old);
	test_zone_add1(f->z, "sel._domainkey.example.net", "TXT", f->record);
	rep = run(f);
	expect(rep, 1, "dkim sel", PB_CHECK_WARN);
	g_assert_nonnull(strstr(find(rep, 1, "dkim sel")->fix, "t=y"));
	expect(rep, 2, "dkim sel", PB_CHECK_WARN);
	/* example.com is not among [dkim] domains */
	f->domains[0] = "example.com.invalid";
	f->domains[1] = NULL;
	g_clear_pointer(&rep, pb_dns_report_free);
	rep = run(f);
	expect(rep, 1, "dkim", PB_CHECK_WARN);
	/* signing off */
	f->req.dkim = NULL;
	g_clear_pointer(&rep, pb_dns_report_free);
	rep = run(f);
	expect(rep, 1, "dkim", PB_CHECK_WARN);
	g_assert_null(
	    zone_of(rep, 1, "sel._domainkey.example.com.invalid", "TXT"));
}

/* A subdomain without _dmarc of its own has its parent's policy. */
static void
test_dmarc_inherited(F *f, gconstpointer data)
{
	g_autoptr(PbDnsReport) rep = NULL;

	f->domains[0] = "lists.example.org";
	f->req.dkim = NULL;
	rep = run(f);
	expect(rep, 1, "dmarc", PB_CHECK_OK);
	g_assert_cmpstr(find(rep, 1, "dmarc")->found, ==,
	                "inherited from _dmarc.example.org: p=quarantine");
	expect(rep, 1, "mx", PB_CHECK_MISSING);
	expect(rep, 1, "spf", PB_CHECK_MISSING);
}

/* DNS that does not answer: TEMP, never WRONG. */
static void
test_temp(F *f, gconstpointer data)
{
	g_autoptr(PbDnsReport) rep = NULL;
	g_autoptr(GString) text = NULL;

	f->domains[0] = "slow.example";
	test_zone_add(f->z, "slow.example", "TIMEOUT", NULL);
	test_zone_add(f->z, "_dmarc.slow.example", "TIMEOUT", NULL);
	test_zone_add(f->z, "sel._domainkey.slow.example", "TIMEOUT", NULL);
	test_zone_add(f->z, REV, "TIMEOUT", NULL);
	rep = run(f);
	expect(rep, 0, "ptr " ADDR, PB_CHECK_OK); /* a PTR came first */
	expect(rep, 1, "mx", PB_CHECK_TEMP);
	expect(rep, 1, "spf", PB_CHECK_TEMP);
	expect(rep, 1, "dkim sel", PB_CHECK_TEMP);
	expect(rep, 1, "dmarc", PB_CHECK_TEMP);
	g_assert_cmpint(pb_dnscheck_verdict(rep), ==, PB_CHECK_TEMP);
	text = pb_dnscheck_format(rep, FALSE);
	g_assert_nonnull(strstr(text->str, "\nResult: not known yet, DNS did "
	                                   "not answer (4 TEMP)\n"));
	/* the host's own name times out: no address known */
	f->domains[0] = NULL;
	test_zone_add(f->z, "unknown.example", "TIMEOUT", NULL);
	f->req.hostname = f->req.helo = "unknown.example";
	g_clear_pointer(&rep, pb_dns_report_free);
	rep = run(f);
	expect(rep, 0, "address", PB_CHECK_TEMP);
	g_assert_cmpuint(rep->addresses->len, ==, 0);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/dnscheck/split", test_split);
#define ADD(path, fn) g_test_add(path, F, NULL, setup, fn, teardown)
	ADD("/dnscheck/records", test_records);
	ADD("/dnscheck/all-right", test_all_right);
	ADD("/dnscheck/host-wrong", test_host_wrong);
	ADD("/dnscheck/domain-wrong", test_domain_wrong);
	ADD("/dnscheck/records-wrong", test_records_wrong);
	ADD("/dnscheck/dkim-warn", test_dkim_warn);
	ADD("/dnscheck/dmarc-inherited", test_dmarc_inherited);
	ADD("/dnscheck/temp", test_temp);
	return g_test_run();
}
