/*
 * date.c - times written for people and into headers, in the local zone.
 *
 * Owns the process's view of the local time zone: it is read once, at
 * the first use, and kept. GLib 2.74's g_time_zone_new_local() throws its
 * cached zone away on every call when TZ is unset (it compares the zone's
 * identifier with TZ's value) and reads /etc/localtime again: a stat, a
 * readlink and a read of the zone file for every date written, which
 * mailq paid once per queued message and a bounce five times. A zone
 * change takes effect at the next start of a program, as in daemons that
 * call tzset() once.
 *
 * Guarantees: RFC 5322 dates are written in English whatever the locale.
 */
#include "date.h"

static GTimeZone *
local_zone(void)
{
	static gsize zone; /* a GTimeZone *, never freed: one per process */

	if (g_once_init_enter(&zone))
		g_once_init_leave(&zone, (gsize)g_time_zone_new_local());
	return (GTimeZone *)zone;
}

GDateTime *
pb_date_local(gint64 t)
{
	g_autoptr(GDateTime) utc = g_date_time_new_from_unix_utc(t);

	return utc != NULL ? g_date_time_to_timezone(utc, local_zone()) : NULL;
}

char *
pb_date_rfc5322(gint64 t)
{
	static const char *const days[] = {"Mon", "Tue", "Wed", "Thu",
	                                   "Fri", "Sat", "Sun"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
	                                     "May", "Jun", "Jul", "Aug",
	                                     "Sep", "Oct", "Nov", "Dec"};
	g_autoptr(GDateTime) d = pb_date_local(t);
	g_autofree char *rest = NULL;

	if (d == NULL)
		return g_strdup("Thu, 01 Jan 1970 00:00:00 +0000");
	rest = g_date_time_format(d, "%Y %H:%M:%S %z");
	return g_strdup_printf("%s, %02d %s %s",
	                       days[g_date_time_get_day_of_week(d) - 1],
	                       g_date_time_get_day_of_month(d),
	                       months[g_date_time_get_month(d) - 1], rest);
}
