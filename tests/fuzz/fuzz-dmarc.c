/*
 * fuzz-dmarc.c - DMARC records (dmarc.c) and the checks that use them,
 * with zone data fed through tests/unit/zone.c: the input's first line is
 * parsed as a record and published at _dmarc.example.com, every further
 * line "NAME TYPE VALUE" (tab-separated) adds a record; the first names
 * after the record's line are also the From, SPF and DKIM domains of a
 * check.
 *
 * Checked: results and dispositions in range, a disposition only with
 * fail, the queries within what the tree walks allow (8 per walk, one
 * walk for From, SPF and each of at most 10 DKIM domains, plus the 3 of
 * np=).
 */
#include "dmarc.h"
#include "error.h"
#include "fuzz.h"
#include "zone.h"

#define MAX_QUERIES (8 * 12 + 3)

static void
check(TestZone *zone, char **names, guint n)
{
	const char *dkim[12] = {NULL};
	PbDmarcRequest req = {.from_domain = n > 0 ? names[0] : "example.com",
	                      .from_fields = 1,
	                      .spf_domain = n > 1 ? names[1] : "example.com",
	                      .spf_result = PB_SPF_PASS,
	                      .dkim_domains = dkim,
	                      .sample = 50,
	                      .deadline = pb_deadline_in(3600)};
	PbDmarcOutcome out;
	PbDmarcResult r;

	for (guint i = 2; i < n && i - 2 < 11; i++)
		dkim[i - 2] = names[i];
	test_zone_reset_counts(zone);
	r = pb_dmarc_check(test_zone_resolver(zone), &req, &out);
	g_assert_cmpint(r, <=, PB_DMARC_PERMERROR);
	g_assert_cmpint(out.disposition, <=, PB_DMARC_POLICY_REJECT);
	g_assert_true(r == PB_DMARC_FAIL ||
	              out.disposition == PB_DMARC_POLICY_NONE);
	g_assert_cmpuint(test_zone_queries(zone), <=, MAX_QUERIES);
	pb_dmarc_outcome_clear(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autofree char *text = g_strndup((const char *)data, size);
	g_auto(GStrv) lines = g_strsplit(text, "\n", 64);
	g_autoptr(TestZone) zone = test_zone_new();
	g_autoptr(GPtrArray) names = g_ptr_array_new();
	g_autofree char *why = NULL;
	PbDmarcRecord *r;

	if (size > 4096 || lines[0] == NULL)
		return 0;
	r = pb_dmarc_record_parse(lines[0], &why);
	g_assert_true((r == NULL) != (why == NULL));
	g_assert_true(r == NULL || (r->pct <= 100 && r->p <= 2));
	pb_dmarc_record_free(r);
	test_zone_add1(zone, "_dmarc.example.com", "TXT", lines[0]);
	for (guint i = 1; lines[i]; i++) {
		g_auto(GStrv) f = g_strsplit(lines[i], "\t", 3);
		if (g_strv_length(f) == 3 && f[0][0] != '\0') {
			const char *values[] = {f[2], NULL};
			test_zone_add(zone, f[0], f[1], values);
		} else
			g_ptr_array_add(names, lines[i]);
	}
	check(zone, (char **)names->pdata, names->len);
	return 0;
}
