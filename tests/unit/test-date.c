/*
 * test-date.c - dates in the local zone: RFC 5322 form, and the zone
 * read once per process.
 */
#include "date.h"

#include <stdlib.h>

/* 2025-12-02 16:05:09 UTC */
#define T 1764691509

static void
test_rfc5322_local(void)
{
	g_autofree char *s = pb_date_rfc5322(T);
	g_autofree char *summer = pb_date_rfc5322(T - 150 * 86400);

	g_assert_cmpstr(s, ==, "Tue, 02 Dec 2025 17:05:09 +0100");
	g_assert_cmpstr(summer, ==, "Sat, 05 Jul 2025 18:05:09 +0200");
}

static void
test_zone_read_once(void)
{
	g_autoptr(GDateTime) d = NULL;
	g_autofree char *s = NULL;

	/* a later change of TZ does not reach a running program */
	g_assert_true(g_setenv("TZ", "America/New_York", TRUE));
	s = pb_date_rfc5322(T);
	g_assert_cmpstr(s, ==, "Tue, 02 Dec 2025 17:05:09 +0100");
	d = pb_date_local(T);
	g_assert_cmpint(g_date_time_get_utc_offset(d), ==, G_TIME_SPAN_HOUR);
}

static void
test_out_of_range(void)
{
	g_autofree char *s = pb_date_rfc5322(G_MAXINT64);

	g_assert_null(pb_date_local(G_MAXINT64));
	g_assert_cmpstr(s, ==, "Thu, 01 Jan 1970 00:00:00 +0000");
}

int
main(int argc, char **argv)
{
	/* before the first use: the zone every test expects */
	g_assert_true(g_setenv("TZ", "Europe/Berlin", TRUE));
	g_assert_true(g_setenv("LC_ALL", "de_DE.UTF-8", TRUE));
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/date/rfc5322-local", test_rfc5322_local);
	g_test_add_func("/date/zone-read-once", test_zone_read_once);
	g_test_add_func("/date/out-of-range", test_out_of_range);
	return g_test_run();
}
