/*
 * dnscheck.h - pillarbox-dns: the DNS records a pillarbox host and its
 * domains should publish, and whether live DNS has them right.
 *
 * Owns the judging, not the parsing: SPF, DMARC and DKIM key records are
 * read by spf.c, dmarc.c and dkim.c, and SPF is evaluated by spf.c as a
 * receiver would. DNS goes through a PbResolver (dns.h) with one deadline
 * for the whole run. Guarantees: every check ends in exactly one status;
 * a DNS timeout or SERVFAIL is TEMP, never WRONG or MISSING; nothing is
 * written anywhere (the report is returned, bin/ prints it).
 */
#ifndef PB_DNSCHECK_H
#define PB_DNSCHECK_H

#include <glib.h>

#include "config.h"
#include "dns.h"
#include "tls.h"

typedef enum {
	PB_CHECK_OK,
	PB_CHECK_WARN,    /* works, but could be better; exit 0 */
	PB_CHECK_TEMP,    /* DNS did not answer: try again */
	PB_CHECK_MISSING, /* no record */
	PB_CHECK_WRONG,   /* a record that does not do its job */
} PbCheckStatus;

/* "OK", "WARN", "TEMP", "MISSING", "WRONG". */
const char *pb_check_status_name(PbCheckStatus status);

/* One record to publish. */
typedef struct {
	char *name;        /* owner name, no final dot */
	char *type;        /* "MX", "TXT", "A", "AAAA", "PTR" */
	char *value;       /* MX "10 HOST", TXT the text, A an address ... */
	char **strings;    /* TXT: the <= 255-octet strings; else NULL */
	char *zone;        /* the zone-file line */
	gboolean optional; /* for later (MTA-STS, TLS-RPT) */
	char *note;        /* who publishes it, or what else it needs; NULL */
} PbDnsRecord;

/* One line of the table. */
typedef struct {
	char *name; /* "mx", "spf", "dkim SELECTOR", "ptr ADDR"... */
	PbCheckStatus status;
	gboolean required; /* counts toward the exit code */
	char *found;       /* what DNS has (or NULL: nothing) */
	char *expected;    /* what it should have, or NULL */
	char *fix;         /* NULL when OK */
} PbDnsCheck;

/* The host (domain NULL) or one domain. */
typedef struct {
	char *domain;
	GPtrArray *records; /* PbDnsRecord* */
	GPtrArray *checks;  /* PbDnsCheck* */
} PbDnsSection;

typedef struct {
	char *hostname, *helo;
	GPtrArray *addresses; /* char*, canonical text; maybe empty */
	GPtrArray *sections;  /* PbDnsSection*: the host first */
} PbDnsReport;

void pb_dns_report_free(PbDnsReport *rep);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbDnsReport, pb_dns_report_free)

/* A DKIM key of ours and its selector. */
typedef struct {
	PbPrivKey *key;
	const char *selector;
} PbDnsDkimKey;

typedef struct {
	const char *hostname;         /* [main] hostname */
	const char *helo;             /* [delivery] helo (or hostname) */
	const char *const *addresses; /* this host's; NULL: hostname's A/AAAA */
	const char *const *domains;   /* lower case */
	const PbDnsDkimKey *dkim;     /* NULL-key terminated, or NULL: off */
	char *const *dkim_domains;    /* the domains signed for */
	gint64 now;                   /* seconds since the epoch (MTA-STS id) */
	gint64 deadline;              /* monotonic ms, for every lookup */
} PbDnsCheckRequest;

/* Builds the records and runs the checks. ADDRESSES must be numeric. */
PbDnsReport *pb_dnscheck_run(PbResolver *resolver,
                             const PbDnsCheckRequest *req);

/* The run for CFG: DOMAINS (NULL or empty: [main] domains), ADDRESSES
 * (NULL or empty: hostname's), the [dkim] keys, the [delivery]
 * nameservers, 30 s for all lookups. PB_ERROR_USAGE for an address that
 * is not one, PB_ERROR_CONFIG for a key that cannot be read. */
PbDnsReport *pb_dnscheck(const PbConfig *cfg, char **domains, char **addresses,
                         GError **error);

/* The worst status among the required checks. */
PbCheckStatus pb_dnscheck_verdict(const PbDnsReport *rep);

/* The report as text (records, then a table per section), or JSON. */
GString *pb_dnscheck_format(const PbDnsReport *rep, gboolean json);

#endif
