/*
 * fuzz-spf.c - SPF records and macros (spf.c) with zone data fed through
 * tests/unit/zone.c: the input's first line is the TXT record of the
 * sender's domain, every further line "NAME TYPE VALUE" (tab-separated)
 * adds a record, and each line's text is also expanded as a macro-string
 * and as an exp= text. The record is evaluated for an IPv4 and an IPv6
 * client.
 *
 * Checked: a result among the seven, an explanation only with fail, and
 * the work bounded by RFC 7208's limits (no more queries than 10
 * DNS-querying terms of 11 queries each, an exp= and %{p} allow).
 */
#include "error.h"
#include "fuzz.h"
#include "spf.h"
#include "zone.h"

#include <string.h>

#define MAX_QUERIES 140

static void
evaluate(TestZone *zone, const char *ip)
{
	PbSpfRequest req = {.ip = ip,
	                    .sender = "first.last@example.com",
	                    .helo = "helo.example.org",
	                    .receiver = "mx.example.net",
	                    .now = 1700000000,
	                    .deadline = pb_deadline_in(3600)};
	PbSpfOutcome out;
	PbSpfResult r;

	test_zone_reset_counts(zone);
	r = pb_spf_check_mailfrom(test_zone_resolver(zone), &req, &out);
	g_assert_cmpint(r, >=, PB_SPF_NONE);
	g_assert_cmpint(r, <=, PB_SPF_PERMERROR);
	g_assert_true(out.explanation == NULL || r == PB_SPF_FAIL);
	g_assert_cmpuint(test_zone_queries(zone), <=, MAX_QUERIES);
	pb_spf_outcome_clear(&out);
}

static void
expand(TestZone *zone, const char *text)
{
	PbSpfRequest req = {.ip = "2001:db8::1",
	                    .sender = "first.last@example.com",
	                    .helo = "helo.example.org",
	                    .now = 1700000000,
	                    .deadline = pb_deadline_in(3600)};

	for (int explain = 0; explain < 2; explain++) {
		g_autofree char *why = NULL;
		g_autofree char *out =
		    pb_spf_expand(test_zone_resolver(zone), &req, "example.com",
		                  text, explain, &why);
		g_assert_true((out == NULL) != (why == NULL));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autofree char *text = g_strndup((const char *)data, size);
	g_auto(GStrv) lines = g_strsplit(text, "\n", 64);
	g_autoptr(TestZone) zone = test_zone_new();
	g_autofree char *why = NULL;

	if (size > 4096 || lines[0] == NULL)
		return 0;
	test_zone_add1(zone, "example.com", "TXT", lines[0]);
	(void)pb_spf_record_valid(lines[0], &why);
	for (guint i = 1; lines[i]; i++) {
		g_auto(GStrv) f = g_strsplit(lines[i], "\t", 3);
		if (g_strv_length(f) == 3 && f[0][0] != '\0') {
			const char *values[] = {f[2], NULL};
			const char *mx[] = {"10", f[2], NULL};
			test_zone_add(zone, f[0], f[1],
			              g_str_equal(f[1], "MX") ? mx : values);
		}
	}
	for (guint i = 0; lines[i]; i++)
		expand(zone, lines[i]);
	evaluate(zone, "192.0.2.1");
	evaluate(zone, "2001:db8::1");
	return 0;
}
