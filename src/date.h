/*
 * date.h - times written for people and into headers, in the local zone.
 */
#ifndef PB_DATE_H
#define PB_DATE_H

#include <glib.h>

/* T (seconds since the epoch) in the local zone; NULL when out of range. */
GDateTime *pb_date_local(gint64 t);

/* T as an RFC 5322 date-time in the local zone, in English whatever the
 * locale: "Wed, 02 Dec 2026 16:05:09 +0100". */
char *pb_date_rfc5322(gint64 t);

#endif
