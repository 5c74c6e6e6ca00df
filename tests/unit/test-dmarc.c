/* test-dmarc.c - DMARC records, policy discovery by the tree walk,
 * alignment and disposition, with zone data fed through a PbResolver. */
#include "dmarc.h"
#include "error.h"
#include "zone.h"

static void
test_record(void)
{
	g_autofree char *why = NULL;
	g_autoptr(PbDmarcRecord) r = pb_dmarc_record_parse(
	    "v=DMARC1 ; p = Reject; sp=quarantine;np=none; adkim=s; aspf=r;"
	    " pct=30; t=y; psd=n; rua=mailto:a@example.com, bad ,"
	    "mailto:b@example.com!10m; ruf=mailto:f@example.com; fo=1:d;"
	    " p=none; future=tag;",
	    &why);
	g_autoptr(PbDmarcRecord) d =
	    pb_dmarc_record_parse("v=DMARC1;p=quarantine", &why);
	g_autoptr(PbDmarcRecord) odd =
	    pb_dmarc_record_parse("v=DMARC1; p=none; pct=300; adkim=x; "
	                          "psd=maybe",
	                          &why);

	g_assert_null(why);
	g_assert_cmpint(r->p, ==, PB_DMARC_POLICY_REJECT); /* first p= */
	g_assert_true(r->has_sp && r->has_np);
	g_assert_cmpint(r->sp, ==, PB_DMARC_POLICY_QUARANTINE);
	g_assert_cmpint(r->np, ==, PB_DMARC_POLICY_NONE);
	g_assert_true(r->adkim_strict);
	g_assert_false(r->aspf_strict);
	g_assert_cmpuint(r->pct, ==, 30);
	g_assert_true(r->testing);
	g_assert_cmpint(r->psd, ==, 'n');
	g_assert_cmpuint(r->rua->len, ==, 2);
	g_assert_cmpstr(r->rua->pdata[1], ==, "mailto:b@example.com!10m");
	g_assert_cmpuint(r->ruf->len, ==, 1);
	g_assert_cmpstr(r->fo, ==, "1:d");
	/* the defaults, and bad values that fall back to them */
	g_assert_false(d->has_sp || d->has_np || d->adkim_strict ||
	               d->aspf_strict || d->testing);
	g_assert_cmpuint(d->pct, ==, 100);
	g_assert_cmpint(d->psd, ==, 'u');
	g_assert_cmpuint(odd->pct, ==, 100);
	g_assert_false(odd->adkim_strict);
	g_assert_cmpint(odd->psd, ==, 'u');
}

static void
test_record_bad(void)
{
	static const char *const unusable[] = {"v=DMARC1",
	                                       "v=DMARC1; p=bogus",
	                                       "v=DMARC1; p=reject; sp=x",
	                                       "p=reject; v=DMARC1",
	                                       "v=DMARC2; p=reject",
	                                       "v=dmarc1; p=reject",
	                                       "v=spf1 -all"};
	g_autofree char *why = NULL;
	g_autoptr(PbDmarcRecord) r = pb_dmarc_record_parse(
	    "v=DMARC1; p=bogus; sp=reject; rua=mailto:r@example.com", &why);

	for (guint i = 0; i < G_N_ELEMENTS(unusable); i++) {
		g_autofree char *reason = NULL;
		g_assert_null(pb_dmarc_record_parse(unusable[i], &reason));
		g_assert_nonnull(reason);
	}
	/* a bad p= with a report address: p=none (RFC 9989 section 4.7) */
	g_assert_nonnull(r);
	g_assert_cmpint(r->p, ==, PB_DMARC_POLICY_NONE);
	g_assert_false(r->has_sp);
}

/* The zone of these tests: example.com publishes RECORD. */
static TestZone *
zone_with(const char *record)
{
	TestZone *z = test_zone_new();

	test_zone_add1(z, "_dmarc.example.com", "TXT", record);
	test_zone_add1(z, "example.com", "A", "192.0.2.1");
	test_zone_add1(z, "news.example.com", "A", "192.0.2.2");
	return z;
}

typedef struct {
	const char *from, *spf, *dkim;
	PbSpfResult spf_result;
	guint fields, sample;
} Msg;

static PbDmarcResult
check(TestZone *z, const Msg *m, PbDmarcOutcome *out)
{
	const char *dkim[] = {"unrelated.example.net", m->dkim, NULL};
	PbDmarcRequest req = {.from_domain = m->from,
	                      .from_fields = m->fields ? m->fields : 1,
	                      .spf_domain = m->spf,
	                      .spf_result = m->spf_result,
	                      .dkim_domains = dkim,
	                      .sample = m->sample,
	                      .deadline = pb_deadline_in(10)};

	return pb_dmarc_check(test_zone_resolver(z), &req, out);
}

/* The result and disposition of M against RECORD at example.com. */
static void
expect(const char *record, const Msg *m, PbDmarcResult result,
       PbDmarcPolicy disposition)
{
	g_autoptr(TestZone) z = zone_with(record);
	PbDmarcOutcome out;

	g_assert_cmpstr(pb_dmarc_result_name(check(z, m, &out)), ==,
	                pb_dmarc_result_name(result));
	g_assert_cmpstr(pb_dmarc_policy_name(out.disposition), ==,
	                pb_dmarc_policy_name(disposition));
	pb_dmarc_outcome_clear(&out);
}

static void
test_reject_and_none(void)
{
	Msg spoof = {"example.com", "evil.example.net", NULL, PB_SPF_PASS};
	Msg good = {"example.com", "example.com", NULL, PB_SPF_PASS};
	Msg softfail = {"example.com", "example.com", NULL, PB_SPF_SOFTFAIL};
	g_autoptr(TestZone) z = zone_with("v=DMARC1; p=reject");
	PbDmarcOutcome out;

	expect("v=DMARC1; p=reject", &spoof, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_REJECT);
	expect("v=DMARC1; p=reject", &good, PB_DMARC_PASS,
	       PB_DMARC_POLICY_NONE);
	expect("v=DMARC1; p=reject", &softfail, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_REJECT);
	expect("v=DMARC1; p=none; rua=mailto:r@example.com", &spoof,
	       PB_DMARC_FAIL, PB_DMARC_POLICY_NONE);
	g_assert_cmpint(check(z, &spoof, &out), ==, PB_DMARC_FAIL);
	g_assert_cmpstr(out.from_domain, ==, "example.com");
	g_assert_cmpstr(out.policy_domain, ==, "example.com");
	g_assert_false(out.spf_aligned);
	g_assert_null(out.dkim_domain);
	g_assert_nonnull(out.problem);
	pb_dmarc_outcome_clear(&out);
}

static void
test_alignment(void)
{
	Msg spf_sub = {"example.com", "bounce.example.com", NULL, PB_SPF_PASS};
	Msg dkim_sub = {"news.example.com", NULL, "mail.example.com",
	                PB_SPF_NONE};
	Msg dkim_same = {"Example.COM.", NULL, "example.com", PB_SPF_NONE};
	Msg dkim_other = {"example.com", NULL, "example.org", PB_SPF_NONE};
	g_autoptr(TestZone) z = zone_with("v=DMARC1; p=reject");
	PbDmarcOutcome out;

	expect("v=DMARC1; p=reject", &spf_sub, PB_DMARC_PASS,
	       PB_DMARC_POLICY_NONE);
	expect("v=DMARC1; p=reject; aspf=s", &spf_sub, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_REJECT);
	expect("v=DMARC1; p=reject", &dkim_sub, PB_DMARC_PASS,
	       PB_DMARC_POLICY_NONE);
	expect("v=DMARC1; p=reject; adkim=s", &dkim_sub, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_REJECT);
	expect("v=DMARC1; p=reject; adkim=s", &dkim_same, PB_DMARC_PASS,
	       PB_DMARC_POLICY_NONE);
	expect("v=DMARC1; p=reject", &dkim_other, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_REJECT);
	g_assert_cmpint(check(z, &dkim_sub, &out), ==, PB_DMARC_PASS);
	g_assert_cmpstr(out.dkim_domain, ==, "mail.example.com");
	pb_dmarc_outcome_clear(&out);
}

static void
test_subdomain_policy(void)
{
	const char *rec = "v=DMARC1; p=reject; sp=quarantine; np=none";
	Msg sub = {"news.example.com", "other.example.net", NULL, PB_SPF_PASS};
	Msg gone = {"nosuch.example.com", NULL, NULL, PB_SPF_NONE};
	Msg top = {"example.com", NULL, NULL, PB_SPF_NONE};
	g_autoptr(TestZone) z = zone_with(rec);
	PbDmarcOutcome out;

	expect(rec, &sub, PB_DMARC_FAIL, PB_DMARC_POLICY_QUARANTINE);
	expect(rec, &gone, PB_DMARC_FAIL, PB_DMARC_POLICY_NONE);
	expect(rec, &top, PB_DMARC_FAIL, PB_DMARC_POLICY_REJECT);
	/* without sp= and np=, p= covers the subdomains */
	expect("v=DMARC1; p=reject", &sub, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_REJECT);
	expect("v=DMARC1; p=reject", &gone, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_REJECT);
	/* a record of the subdomain's own is its policy */
	test_zone_add1(z, "_dmarc.news.example.com", "TXT", "v=DMARC1; p=none");
	g_assert_cmpint(check(z, &sub, &out), ==, PB_DMARC_FAIL);
	g_assert_cmpstr(out.policy_domain, ==, "news.example.com");
	g_assert_cmpint(out.disposition, ==, PB_DMARC_POLICY_NONE);
	pb_dmarc_outcome_clear(&out);
}

static void
test_several_from(void)
{
	Msg m = {"example.com", "example.com", "example.com", PB_SPF_PASS, 2};

	expect("v=DMARC1; p=reject", &m, PB_DMARC_FAIL, PB_DMARC_POLICY_REJECT);
}

static void
test_sampling(void)
{
	Msg in = {"example.com", NULL, NULL, PB_SPF_NONE, 1, 49};
	Msg out = {"example.com", NULL, NULL, PB_SPF_NONE, 1, 50};

	expect("v=DMARC1; p=reject; pct=50", &in, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_REJECT);
	expect("v=DMARC1; p=reject; pct=50", &out, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_QUARANTINE);
	expect("v=DMARC1; p=quarantine; t=y", &in, PB_DMARC_FAIL,
	       PB_DMARC_POLICY_NONE);
}

static void
test_no_policy_and_errors(void)
{
	Msg m = {"example.org", NULL, NULL, PB_SPF_NONE};
	Msg nofrom = {"", NULL, NULL, PB_SPF_NONE};
	g_autoptr(TestZone) z = test_zone_new();
	PbDmarcOutcome out;

	g_assert_cmpint(check(z, &m, &out), ==, PB_DMARC_NONE);
	pb_dmarc_outcome_clear(&out);
	g_assert_cmpint(check(z, &nofrom, &out), ==, PB_DMARC_PERMERROR);
	pb_dmarc_outcome_clear(&out);
	/* two records at one name are none: the walk goes on to the next */
	test_zone_add1(z, "_dmarc.sub.example.org", "TXT", "v=DMARC1; p=none");
	test_zone_add1(z, "_dmarc.sub.example.org", "TXT", "v=DMARC1; p=none");
	test_zone_add1(z, "_dmarc.example.org", "TXT", "v=DMARC1; p=reject");
	m.from = "sub.example.org";
	g_assert_cmpint(check(z, &m, &out), ==, PB_DMARC_FAIL);
	g_assert_cmpstr(out.policy_domain, ==, "example.org");
	pb_dmarc_outcome_clear(&out);
	/* a broken record, a DNS timeout */
	test_zone_add1(z, "_dmarc.broken.example", "TXT", "v=DMARC1; p=x");
	m.from = "broken.example";
	g_assert_cmpint(check(z, &m, &out), ==, PB_DMARC_PERMERROR);
	pb_dmarc_outcome_clear(&out);
	test_zone_add(z, "_dmarc.slow.example", "TIMEOUT", NULL);
	m.from = "slow.example";
	g_assert_cmpint(check(z, &m, &out), ==, PB_DMARC_TEMPERROR);
	pb_dmarc_outcome_clear(&out);
}

static void
test_tree_walk(void)
{
	g_autoptr(TestZone) z = test_zone_new();
	const char *deep = "a.b.c.d.e.f.g.h.i.example.com";
	char *org;

	/* no record anywhere: the name is its own organizational domain,
	 * after at most 8 queries: the name, then 7 labels down to 1 */
	org = pb_dmarc_organizational_domain(test_zone_resolver(z), deep,
	                                     pb_deadline_in(10));
	g_assert_cmpstr(org, ==, deep);
	g_assert_cmpuint(test_zone_queries(z), ==, 8);
	g_free(org);
	/* the shortest name with a record */
	test_zone_add1(z, "_dmarc.example.com", "TXT", "v=DMARC1; p=none");
	test_zone_add1(z, "_dmarc.h.i.example.com", "TXT", "v=DMARC1; p=none");
	org = pb_dmarc_organizational_domain(test_zone_resolver(z), deep,
	                                     pb_deadline_in(10));
	g_assert_cmpstr(org, ==, "example.com");
	g_free(org);
	/* psd=n: that name; psd=y: one label below */
	test_zone_add1(z, "_dmarc.g.h.i.example.com", "TXT",
	               "v=DMARC1; p=none; psd=n");
	org = pb_dmarc_organizational_domain(test_zone_resolver(z), deep,
	                                     pb_deadline_in(10));
	g_assert_cmpstr(org, ==, "g.h.i.example.com");
	g_free(org);
	test_zone_add1(z, "_dmarc.com", "TXT", "v=DMARC1; p=none; psd=y");
	org = pb_dmarc_organizational_domain(
	    test_zone_resolver(z), "mail.shop.com", pb_deadline_in(10));
	g_assert_cmpstr(org, ==, "shop.com");
	g_free(org);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/dmarc/record", test_record);
	g_test_add_func("/dmarc/record/unusable", test_record_bad);
	g_test_add_func("/dmarc/reject-and-none", test_reject_and_none);
	g_test_add_func("/dmarc/alignment", test_alignment);
	g_test_add_func("/dmarc/subdomain-policy", test_subdomain_policy);
	g_test_add_func("/dmarc/several-from", test_several_from);
	g_test_add_func("/dmarc/sampling", test_sampling);
	g_test_add_func("/dmarc/no-policy-and-errors",
	                test_no_policy_and_errors);
	g_test_add_func("/dmarc/tree-walk", test_tree_walk);
	return g_test_run();
}
