/* zone.h - zone data for tests and fuzzers, served through a PbResolver
 * (dns.h) without a network: names with A, AAAA, MX, PTR, TXT, CNAME
 * records and TIMEOUT markers, answered as the SPF council's test-suite
 * driver (pyspf's testspf.py) answers them. */
#ifndef TEST_ZONE_H
#define TEST_ZONE_H

#include "dns.h"

typedef struct TestZone TestZone;

TestZone *test_zone_new(void);
void test_zone_free(TestZone *z);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestZone, test_zone_free)

/* Adds a record of TYPE ("A", "AAAA", "MX" (VALUES: preference, name),
 * "PTR", "CNAME", "TXT" (VALUES: its strings), "TIMEOUT" (no value):
 * every query of NAME for a type without a record before it times out. */
void test_zone_add(TestZone *z, const char *name, const char *type,
                   const char *const *values);
void test_zone_add1(TestZone *z, const char *name, const char *type,
                    const char *value);

/* The resolver answering from Z (owned by Z). Queries after their
 * deadline are PB_DNS_TEMP, as with udns. */
PbResolver *test_zone_resolver(TestZone *z);

/* The queries asked since the last reset. */
guint test_zone_queries(TestZone *z);
void test_zone_reset_counts(TestZone *z);

/* A tab-separated line of spf-suite.py, its fields unescaped (a NUL
 * byte becomes 0x7f, as dns.c turns it). */
char **test_zone_fields(const char *line);

#endif
