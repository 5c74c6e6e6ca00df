/* test-spf.c - the SPF evaluator: records, macros and limits against zone
 * data fed through a PbResolver, the SPF council's RFC 7208 test suite
 * (from Debian's python3-spf, converted by spf-suite.py), and one check
 * of the udns resolver against a dnsmasq started for the test. */
#include "config.h"
#include "dns.h"
#include "error.h"
#include "spf.h"
#include "zone.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#define SUITE "/usr/share/doc/python3-spf/rfc7208-tests.yml.gz"

/* ---- the RFC 7208 suite ---- */

typedef struct {
	guint run, passed;
	GString *failures;
} Tally;

static gboolean
result_in(const char *result, const char *list)
{
	g_auto(GStrv) each = g_strsplit(list, ",", -1);

	return g_strv_contains((const char *const *)each, result);
}

/* One "test" line: ID HELO HOST MAILFROM RESULTS [EXPLANATION]. */
static void
run_case(TestZone *zone, char **f, guint n, Tally *t)
{
	PbSpfRequest req = {.ip = f[3],
	                    .sender = f[4],
	                    .helo = f[2],
	                    .receiver = "receiver.test",
	                    .deadline = pb_deadline_in(60)};
	PbSpfOutcome out;
	const char *got, *exp;

	test_zone_reset_counts(zone);
	got = pb_spf_result_name(
	    pb_spf_check_mailfrom(test_zone_resolver(zone), &req, &out));
	exp = out.explanation ? out.explanation : "DEFAULT";
	t->run++;
	if (result_in(got, f[5]) && (n < 7 || g_str_equal(exp, f[6]))) {
		t->passed++;
		/* where the suite allows several, the first is preferred */
		if (!g_str_has_prefix(f[5], got))
			g_test_message("%s: %s, of %s", f[1], got, f[5]);
	} else
		g_string_append_printf(
		    t->failures, "%s: %s (%s) exp \"%s\", want %s%s%s\n", f[1],
		    got, out.problem ? out.problem : "", exp, f[5],
		    n >= 7 ? " exp " : "", n >= 7 ? f[6] : "");
	pb_spf_outcome_clear(&out);
}

static void
test_suite(void)
{
	g_autofree char *script =
	    g_test_build_filename(G_TEST_DIST, "unit", "spf-suite.py", NULL);
	const char *argv[] = {"/usr/bin/python3", script, SUITE, NULL};
	g_autofree char *text = NULL;
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) lines = NULL;
	g_autoptr(TestZone) zone = NULL;
	Tally t = {.failures = g_string_new(NULL)};
	int status;

	g_assert_true(g_file_test(SUITE, G_FILE_TEST_EXISTS)); /* deps */
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT,
	                           NULL, NULL, &text, NULL, &status, &error));
	g_assert_no_error(error);
	g_assert_true(g_spawn_check_wait_status(status, &error));
	lines = g_strsplit(text, "\n", -1);
	for (guint i = 0; lines[i]; i++) {
		g_auto(GStrv) f = test_zone_fields(lines[i]);
		guint n = g_strv_length(f);
		if (n > 0 && g_str_equal(f[0], "scenario")) {
			g_clear_pointer(&zone, test_zone_free);
			zone = test_zone_new();
		} else if (n >= 3 && g_str_equal(f[0], "rr"))
			test_zone_add(zone, f[1], f[2],
			              (const char *const *)f + 3);
		else if (n >= 6 && g_str_equal(f[0], "test"))
			run_case(zone, f, n, &t);
	}
	g_test_message("RFC 7208 suite: %u cases, %u pass", t.run, t.passed);
	g_assert_cmpstr(t.failures->str, ==, "");
	g_assert_cmpuint(t.run, ==, 203);
	g_string_free(t.failures, TRUE);
}

/* ---- macros (RFC 7208 section 7.4's examples) ---- */

static char *
expand(const char *ip, const char *text, gboolean explain)
{
	g_autoptr(TestZone) zone = test_zone_new();
	PbSpfRequest req = {.ip = ip,
	                    .sender = "strong-bad@email.example.com",
	                    .helo = "mx.example.org",
	                    .receiver = "mx.example.net",
	                    .now = 1700000000,
	                    .deadline = pb_deadline_in(10)};
	g_autofree char *why = NULL;

	return pb_spf_expand(test_zone_resolver(zone), &req,
	                     "email.example.com", text, explain, &why);
}

static void
check_expand(const char *ip, const char *text, const char *want)
{
	g_autofree char *got = expand(ip, text, FALSE);

	g_assert_cmpstr(got, ==, want);
}

static void
test_macro_examples(void)
{
	static const char *const cases[][2] = {
	    {"%{s}", "strong-bad@email.example.com"},
	    {"%{o}", "email.example.com"},
	    {"%{d}", "email.example.com"},
	    {"%{d4}", "email.example.com"},
	    {"%{d3}", "email.example.com"},
	    {"%{d2}", "example.com"},
	    {"%{d1}", "com"},
	    {"%{dr}", "com.example.email"},
	    {"%{d2r}", "example.email"},
	    {"%{l}", "strong-bad"},
	    {"%{l-}", "strong.bad"},
	    {"%{lr}", "strong-bad"},
	    {"%{lr-}", "bad.strong"},
	    {"%{l1r-}", "strong"},
	    {"%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
	    {"%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
	    {"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
	     "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
	    {"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
	     "3.2.0.192.in-addr.strong.lp._spf.example.com"},
	    {"%{d2}.trusted-domains.example.net",
	     "example.com.trusted-domains.example.net"},
	    {"%{d99999999999}", "email.example.com"},
	    {"%{h}%%%-%{S}",
	     "mx.example.org%%20strong-bad%40email.example.com"},
	};

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++)
		check_expand("192.0.2.3", cases[i][0], cases[i][1]);
	check_expand("2001:db8::cb01", "%{ir}.%{v}._spf.%{d2}",
	             "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
	             "8.B.D.0.1.0.0.2.ip6._spf.example.com");
}

static void
test_macro_syntax(void)
{
	static const char *const bad[] = {"%{x}", "%{d0}", "%",        "%{d",
	                                  "%a",   "%{c}",  "%{d2r-x}", "a b"};
	g_autofree char *c = expand("2001:db8::1", "%{c} %{r} %{t} %_x", TRUE);

	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autofree char *got = expand("192.0.2.3", bad[i], FALSE);
		g_assert_cmpstr(got, ==, NULL);
	}
	/* c, r, t and spaces only in exp= texts */
	g_assert_cmpstr(c, ==, "2001:db8::1 mx.example.net 1700000000  x");
}

static void
test_record_valid(void)
{
	static const char *const good[] = {
	    "v=spf1", "v=spf1 -all ",
	    "V=SPF1 a/24//64 mx:%{d}/0 ?ip4:10.0.0.0/8",
	    "v=spf1 ip6:2001:db8::/32 exists:%{ir}.x.example foo=%{l}",
	    "v=spf1 include:_spf.example.com redirect=x.example exp=e.%{d}"};
	static const char *const bad[] = {
	    "v=spf10",
	    "v=spf1 a:foo",
	    "v=spf1 ip4:1.2.3.4/33",
	    "v=spf1 a/024",
	    "v=spf1 ptr/0",
	    "v=spf1 all:x",
	    "v=spf1 redirect=a.example redirect=b.example",
	    "v=spf1 exp=",
	    "v=spf1 include",
	    "v=spf1 -all\r",
	    "v=spf1 ip6:1.2.3.4",
	    "v=spf1 a:%{z}.example"};

	for (guint i = 0; i < G_N_ELEMENTS(good); i++) {
		g_autofree char *why = NULL;
		g_assert_true(pb_spf_record_valid(good[i], &why));
	}
	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autofree char *why = NULL;
		g_assert_false(pb_spf_record_valid(bad[i], &why));
		g_assert_nonnull(why);
	}
}

/* ---- evaluation ---- */

static PbSpfResult
check(TestZone *zone, const char *ip, const char *sender, gint64 deadline,
      PbSpfOutcome *out)
{
	PbSpfRequest req = {.ip = ip,
	                    .sender = sender,
	                    .helo = "helo.example.org",
	                    .deadline = deadline};

	return pb_spf_check_mailfrom(test_zone_resolver(zone), &req, out);
}

static PbSpfResult
result_of(TestZone *zone, const char *ip, const char *sender)
{
	PbSpfOutcome out;
	PbSpfResult r = check(zone, ip, sender, pb_deadline_in(10), &out);

	pb_spf_outcome_clear(&out);
	return r;
}

static void
test_outcome(void)
{
	g_autoptr(TestZone) zone = test_zone_new();
	PbSpfOutcome out;

	test_zone_add1(zone, "example.com", "TXT",
	               "v=spf1 ip4:192.0.2.0/24 include:i.example.com "
	               "-all exp=why.example.com");
	test_zone_add1(zone, "i.example.com", "TXT", "v=spf1 a -all");
	test_zone_add1(zone, "i.example.com", "A", "198.51.100.7");
	test_zone_add1(zone, "why.example.com", "TXT", "%{i} is not %{d}'s");
	g_assert_cmpint(check(zone, "198.51.100.7", "a@example.com",
	                      pb_deadline_in(10), &out),
	                ==, PB_SPF_PASS);
	g_assert_cmpstr(out.domain, ==, "example.com");
	g_assert_cmpstr(out.mechanism, ==, "include:i.example.com");
	g_assert_null(out.explanation);
	pb_spf_outcome_clear(&out);
	g_assert_cmpint(check(zone, "203.0.113.9", "a@example.com",
	                      pb_deadline_in(10), &out),
	                ==, PB_SPF_FAIL);
	g_assert_cmpstr(out.mechanism, ==, "-all");
	g_assert_cmpstr(out.explanation, ==,
	                "203.0.113.9 is not "
	                "example.com's");
	pb_spf_outcome_clear(&out);
	/* the deadline passed: every query is a temporary error */
	g_assert_cmpint(check(zone, "198.51.100.7", "a@example.com",
	                      pb_deadline_in(0) - 1, &out),
	                ==, PB_SPF_TEMPERROR);
	g_assert_nonnull(out.problem);
	pb_spf_outcome_clear(&out);
	/* the null path: postmaster@HELO */
	test_zone_add1(zone, "helo.example.org", "TXT", "v=spf1 ?all");
	g_assert_cmpint(
	    check(zone, "198.51.100.7", "", pb_deadline_in(10), &out), ==,
	    PB_SPF_NEUTRAL);
	g_assert_cmpstr(out.domain, ==, "helo.example.org");
	pb_spf_outcome_clear(&out);
}

/* A record of N "a:" terms naming hosts that exist (or not: VOID). */
static TestZone *
zone_of_terms(guint n, gboolean void_names)
{
	TestZone *zone = test_zone_new();
	g_autoptr(GString) rec = g_string_new("v=spf1");

	for (guint i = 0; i < n; i++) {
		g_autofree char *host = g_strdup_printf("h%u.example.com", i);
		g_string_append_printf(rec, " a:%s", host);
		if (!void_names)
			test_zone_add1(zone, host, "A", "192.0.2.1");
	}
	g_string_append(rec, " -all");
	test_zone_add1(zone, "example.com", "TXT", rec->str);
	return zone;
}

static void
test_limits(void)
{
	g_autoptr(TestZone) ten = zone_of_terms(10, FALSE);
	g_autoptr(TestZone) eleven = zone_of_terms(11, FALSE);
	g_autoptr(TestZone) two = zone_of_terms(2, TRUE);
	g_autoptr(TestZone) three = zone_of_terms(3, TRUE);
	g_autoptr(TestZone) mx = test_zone_new();

	g_assert_cmpint(result_of(ten, "192.0.2.9", "x@example.com"), ==,
	                PB_SPF_FAIL);
	g_assert_cmpint(result_of(eleven, "192.0.2.9", "x@example.com"), ==,
	                PB_SPF_PERMERROR);
	g_assert_cmpint(result_of(two, "192.0.2.9", "x@example.com"), ==,
	                PB_SPF_FAIL);
	g_assert_cmpint(result_of(three, "192.0.2.9", "x@example.com"), ==,
	                PB_SPF_PERMERROR);
	/* a match before the limit is reached decides */
	g_assert_cmpint(result_of(eleven, "192.0.2.1", "x@example.com"), ==,
	                PB_SPF_PASS);
	test_zone_add1(mx, "example.com", "TXT", "v=spf1 mx -all");
	for (guint i = 0; i < 10; i++) {
		g_autofree char *host = g_strdup_printf("m%u.example.com", i);
		const char *v[] = {"10", host, NULL};
		test_zone_add(mx, "example.com", "MX", v);
		test_zone_add1(mx, host, "A", "192.0.2.1");
	}
	/* the addresses of all ten asked at once: 1 + 10 queries */
	test_zone_reset_counts(mx);
	g_assert_cmpint(result_of(mx, "192.0.2.1", "x@example.com"), ==,
	                PB_SPF_PASS);
	g_assert_cmpuint(test_zone_queries(mx), ==, 12); /* TXT, MX, 10 A */
	{
		const char *v[] = {"10", "m10.example.com", NULL};
		test_zone_add(mx, "example.com", "MX", v);
	}
	g_assert_cmpint(result_of(mx, "192.0.2.1", "x@example.com"), ==,
	                PB_SPF_PERMERROR);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/spf/macro/examples", test_macro_examples);
	g_test_add_func("/spf/macro/syntax", test_macro_syntax);
	g_test_add_func("/spf/record/valid", test_record_valid);
	g_test_add_func("/spf/outcome", test_outcome);
	g_test_add_func("/spf/limits", test_limits);
	g_test_add_func("/spf/rfc7208-suite", test_suite);
	return g_test_run();
}
