/* test-auth.c - the inbound checks (auth.h): the filter of forged
 * Authentication-Results fields (fed whole and split at every octet),
 * the checks over zone data, the header text and the [auth] policy. */
#include "auth.h"
#include "error.h"
#include "zone.h"

#include <string.h>

#define ID "mx.example.org"

static void
collect(void *ctx, const char *buf, gsize len)
{
	g_string_append_len(ctx, buf, len);
}

/* IN through the filter, in pieces of STEP octets (0: whole). */
static char *
filtered(const char *in, gsize step, guint *removed)
{
	GString *out = g_string_new(NULL);
	g_autoptr(PbAuthFilter) f = pb_auth_filter_new(ID, collect, out);
	gsize len = strlen(in);

	for (gsize i = 0; i < len; i += step ? step : len)
		pb_auth_filter_feed(f, in + i, MIN(step ? step : len, len - i));
	pb_auth_filter_finish(f);
	*removed = pb_auth_filter_removed(f);
	return g_string_free(out, FALSE);
}

static const char forged[] =
    "Received: from x\r\n\tby y\r\n"
    "Authentication-Results: MX.example.org; dkim=pass\r\n"
    "authentication-results : other.example; spf=pass\r\n"
    "Authentication-Results:\r\n (comment) mx.example.org;\r\n"
    "\tspf=pass smtp.mailfrom=a@b\r\n"
    "Authentication-Resultsx: mx.example.org; kept, not the field\r\n"
    "Subject: hi\r\n"
    "Authentication-Results: \"mx.example.org\"; dmarc=pass\r\n"
    "\r\n"
    "Authentication-Results: mx.example.org; in the body: kept\r\n";

static const char kept[] =
    "Received: from x\r\n\tby y\r\n"
    "authentication-results : other.example; spf=pass\r\n"
    "Authentication-Resultsx: mx.example.org; kept, not the field\r\n"
    "Subject: hi\r\n"
    "\r\n"
    "Authentication-Results: mx.example.org; in the body: kept\r\n";

static void
test_filter(void)
{
	for (gsize step = 0; step <= 8; step++) {
		guint removed = 0;
		g_autofree char *out = filtered(forged, step, &removed);
		g_assert_cmpstr(out, ==, kept);
		g_assert_cmpuint(removed, ==, 3);
	}
	/* at every split point of two pieces */
	for (gsize cut = 1; cut < sizeof forged - 1; cut++) {
		GString *out = g_string_new(NULL);
		g_autoptr(PbAuthFilter) f =
		    pb_auth_filter_new(ID, collect, out);
		pb_auth_filter_feed(f, forged, cut);
		pb_auth_filter_feed(f, forged + cut, sizeof forged - 1 - cut);
		pb_auth_filter_finish(f);
		g_assert_cmpstr(out->str, ==, kept);
		g_assert_cmpuint(pb_auth_filter_removed(f), ==, 3);
		g_string_free(out, TRUE);
	}
}

/* A field held at the end of the data (no body), LF line ends, a
 * field over PB_AUTH_MAX_FIELD judged on its beginning. */
static void
test_filter_edges(void)
{
	guint removed;
	g_autofree char *a = filtered(
	    "Subject: x\nAuthentication-Results: mx.example.org; none\n\tx", 0,
	    &removed);
	g_autofree char *b = filtered("Authentication-Res", 1, &removed);
	g_autoptr(GString) big = g_string_new("Authentication-Results: ");
	g_autoptr(GString) big_other =
	    g_string_new("Authentication-Results: other; ");

	g_assert_cmpstr(a, ==, "Subject: x\n");
	g_assert_cmpstr(b, ==, "Authentication-Res");
	g_string_append(big, ID "; ");
	for (guint i = 0; i < 1000; i++) {
		g_string_append(big, "dkim=pass\r\n\t");
		g_string_append(big_other, "dkim=pass\r\n\t");
	}
	g_string_append(big, "x\r\nSubject: s\r\n\r\nbody\r\n");
	g_string_append(big_other, "x\r\nSubject: s\r\n\r\nbody\r\n");
	g_autofree char *c = filtered(big->str, 100, &removed);
	g_assert_cmpstr(c, ==, "Subject: s\r\n\r\nbody\r\n");
	g_assert_cmpuint(removed, ==, 1);
	g_autofree char *d = filtered(big_other->str, 100, &removed);
	g_assert_cmpstr(d, ==, big_other->str);
	g_assert_cmpuint(removed, ==, 0);
}

static void
test_is_ours(void)
{
#define OURS(text) pb_auth_field_is_ours(text, strlen(text), ID)
	g_assert_true(OURS("Authentication-Results: mx.example.org; none"));
	g_assert_true(OURS("Authentication-Results: mx.example.org 1; x"));
	g_assert_true(OURS("Authentication-Results:(a (nested) \\) c)"
	                   "MX.Example.Org;none"));
	g_assert_false(OURS("Authentication-Results: mx.example.org.evil; x"));
	g_assert_false(OURS("Authentication-Results: other; mx.example.org"));
	/* no authserv-id to read: not trusted */
	g_assert_true(OURS("Authentication-Results: ; none"));
	g_assert_true(OURS("Authentication-Results: (never closed"));
	g_assert_true(OURS("Authentication-Results: \"mx.example"));
#undef OURS
}

/* The checks over zone data: iprev, SPF, DKIM (none here), DMARC. */
static void
check(TestZone *z, const char *ip, const char *sender, const char *msg,
      PbAuthResults *r)
{
	g_autoptr(PbDkimVerify) v = pb_dkim_verify_new();
	PbAuthRequest req = {.ip = ip,
	                     .helo = "client.example.com",
	                     .sender = sender,
	                     .hostname = ID,
	                     .now = 1763800000,
	                     .deadline = pb_deadline_in(10),
	                     .sample = 0};

	pb_dkim_verify_feed(v, msg, strlen(msg));
	pb_auth_check(test_zone_resolver(z), &req, v, r);
}

static TestZone *
zone(void)
{
	TestZone *z = test_zone_new();

	test_zone_add1(z, "7.100.51.198.in-addr.arpa", "PTR",
	               "client.example.com");
	test_zone_add1(z, "client.example.com", "A", "198.51.100.7");
	test_zone_add1(z, "8.100.51.198.in-addr.arpa", "PTR", "liar.test");
	test_zone_add1(z, "liar.test", "A", "192.0.2.1");
	test_zone_add1(z, "example.com", "TXT",
	               "v=spf1 ip4:198.51.100.0/24 -all");
	test_zone_add1(z, "_dmarc.example.com", "TXT", "v=DMARC1; p=reject");
	test_zone_add1(z, "mail.example.com", "TXT", "v=spf1 -all");
	test_zone_add1(z, "client.example.com", "TXT", "v=spf1 a -all");
	test_zone_add1(z, "_dmarc.example.net", "TXT", "v=DMARC1; p=none");
	test_zone_add(z, "slow.test", "TIMEOUT", NULL);
	return z;
}

static const char *const conf = "[main]\nhostname = " ID "\n"
                                "domains = example.org\n";

static PbConfig *
config(const char *extra)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *text = g_strconcat(conf, extra, NULL);
	PbConfig *cfg =
	    pb_config_load_data(text, strlen(text), "t", "/tmp", &error);

	g_assert_no_error(error);
	return cfg;
}

static void
test_pass(void)
{
	g_autoptr(TestZone) z = zone();
	g_autoptr(PbConfig) cfg = config("");
	PbAuthResults r;
	g_autofree char *refusal = NULL;
	g_autofree char *header = NULL;

	check(z, "198.51.100.7", "a@example.com",
	      "From: A <a@example.com>\r\n\r\nx\r\n", &r);
	g_assert_cmpint(r.iprev, ==, PB_IPREV_PASS);
	g_assert_cmpint(r.spf.result, ==, PB_SPF_PASS);
	g_assert_cmpint(r.dmarc.result, ==, PB_DMARC_PASS);
	g_assert_null(refusal = pb_auth_decide(cfg, &r));
	header = pb_auth_header(ID, &r);
	g_assert_cmpstr(header, ==,
	                "Authentication-Results: " ID ";\r\n"
	                "\tiprev=pass policy.iprev=198.51.100.7;\r\n"
	                "\tspf=pass smtp.mailfrom=a@example.com;\r\n"
	                "\tdkim=none;\r\n"
	                "\tdmarc=pass header.from=example.com "
	                "policy.dmarc=reject\r\n");
	g_autofree char *summary = pb_auth_summary(&r);
	g_assert_cmpstr(summary, ==,
	                "iprev=pass spf=pass dkim=none dmarc=pass");
	pb_auth_results_clear(&r);
}

/* p=reject failing: refused unless dmarc_reject = no (then marked). */
static void
test_dmarc_reject(void)
{
	g_autoptr(TestZone) z = zone();
	g_autoptr(PbConfig) cfg = config("");
	g_autoptr(PbConfig) lax = config("[auth]\ndmarc_reject = no\n");
	PbAuthResults r;
	g_autofree char *refusal = NULL;
	g_autofree char *header = NULL;

	check(z, "192.0.2.99", "", "From: a@example.com\r\n\r\nx\r\n", &r);
	g_assert_cmpint(r.iprev, ==, PB_IPREV_FAIL);
	g_assert_true(r.spf_helo);
	g_assert_cmpint(r.spf.result, ==, PB_SPF_FAIL);
	g_assert_cmpint(r.dmarc.result, ==, PB_DMARC_FAIL);
	refusal = pb_auth_decide(cfg, &r);
	g_assert_cmpstr(refusal, ==,
	                "550 5.7.1 Error: refused by the DMARC policy of "
	                "example.com");
	g_assert_null(pb_auth_decide(lax, &r));
	header = pb_auth_header(ID, &r);
	g_assert_nonnull(strstr(header, "\tspf=fail smtp.helo="
	                                "client.example.com;\r\n"));
	g_assert_nonnull(strstr(header, "\tdmarc=fail header.from="
	                                "example.com policy.dmarc=reject"));
	pb_auth_results_clear(&r);
}

/* iprev: a PTR name whose address is another's fails; a timeout is a
 * temperror; several From fields fail DMARC (asked of the first). */
static void
test_iprev_and_from(void)
{
	g_autoptr(TestZone) z = zone();
	PbAuthResults r;

	check(z, "198.51.100.8", "b@example.net",
	      "From: a@example.net\r\nFrom: b@example.net\r\n\r\n", &r);
	g_assert_cmpint(r.iprev, ==, PB_IPREV_FAIL);
	g_assert_cmpstr(r.from_domain, ==, "example.net");
	g_assert_cmpint(r.dmarc.result, ==, PB_DMARC_FAIL);
	pb_auth_results_clear(&r);
	test_zone_add1(z, "9.100.51.198.in-addr.arpa", "PTR", "slow.test");
	check(z, "198.51.100.9", "x@slow.test", "From: x@slow.test\r\n\r\n",
	      &r);
	g_assert_cmpint(r.iprev, ==, PB_IPREV_TEMPERROR);
	g_assert_cmpint(r.spf.result, ==, PB_SPF_TEMPERROR);
	pb_auth_results_clear(&r);
}

/* A From in one of our domains from outside: refused (or marked),
 * unless DKIM passed for it; a temporary error: 451. */
static void
test_spoofed_local(void)
{
	g_autoptr(TestZone) z = zone();
	g_autoptr(PbConfig) cfg = config("");
	g_autoptr(PbConfig) mark =
	    config("[auth]\nspoofed_local_from = mark\n");
	PbAuthResults r;
	g_autofree char *refusal = NULL;
	g_autofree char *temp = NULL;
	g_autofree char *header = NULL;
	PbDkimResult *d;

	check(z, "198.51.100.7", "x@example.com",
	      "From: boss@Example.ORG\r\n\r\npay\r\n", &r);
	refusal = pb_auth_decide(cfg, &r);
	g_assert_cmpstr(refusal, ==,
	                "550 5.7.1 Error: From domain example.org is local: "
	                "log in to send as it");
	g_assert_null(pb_auth_decide(mark, &r));
	header = pb_auth_header(ID, &r);
	g_assert_nonnull(strstr(header, "(From is a local domain, not "
	                                "authenticated) header.from="
	                                "example.org"));
	d = g_new0(PbDkimResult, 1);
	d->status = PB_DKIM_TEMPERROR;
	d->domain = g_strdup("example.org");
	g_ptr_array_add(r.dkim, d);
	temp = pb_auth_decide(cfg, &r);
	g_assert_true(g_str_has_prefix(temp, "451 4.7.0 "));
	d->status = PB_DKIM_PASS;
	g_assert_null(pb_auth_decide(cfg, &r));
	g_assert_false(r.spoofed_local);
	pb_auth_results_clear(&r);
}

/* Client values are quoted in the header; DKIM results as dkim.c
 * formats them. */
static void
test_header_values(void)
{
	PbAuthResults r = {0};
	PbDkimResult *d = g_new0(PbDkimResult, 1);
	g_autofree char *header = NULL;

	r.ip = g_strdup("2001:db8::1");
	r.sender = g_strdup("\"odd \\\"one\"@example.com");
	r.helo = g_strdup("h");
	r.iprev = PB_IPREV_TEMPERROR;
	r.spf.result = PB_SPF_NONE;
	r.dkim =
	    g_ptr_array_new_with_free_func((GDestroyNotify)pb_dkim_result_free);
	d->status = PB_DKIM_FAIL;
	d->domain = g_strdup("example.com");
	d->selector = g_strdup("s1");
	d->b = g_strdup("abcdefgh1234");
	d->reason = g_strdup("bad signature");
	g_ptr_array_add(r.dkim, d);
	r.dmarc.result = PB_DMARC_NONE;
	header = pb_auth_header(ID, &r);
	g_assert_cmpstr(
	    header, ==,
	    "Authentication-Results: " ID ";\r\n"
	    "\tiprev=temperror policy.iprev=\"2001:db8::1\";\r\n"
	    "\tspf=none smtp.mailfrom=\"\\\"odd \\\\\\\"one\\\"@example.com\";"
	    "\r\n\tdkim=fail reason=\"bad signature\" header.d=example.com "
	    "header.s=s1 header.b=abcdefgh1234;\r\n"
	    "\tdmarc=none\r\n");
	pb_auth_results_clear(&r);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/auth/filter", test_filter);
	g_test_add_func("/auth/filter-edges", test_filter_edges);
	g_test_add_func("/auth/is-ours", test_is_ours);
	g_test_add_func("/auth/pass", test_pass);
	g_test_add_func("/auth/dmarc-reject", test_dmarc_reject);
	g_test_add_func("/auth/iprev-and-from", test_iprev_and_from);
	g_test_add_func("/auth/spoofed-local", test_spoofed_local);
	g_test_add_func("/auth/header-values", test_header_values);
	return g_test_run();
}
