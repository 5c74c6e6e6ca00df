/*
 * dmarc.h - DMARC (RFC 9989, with RFC 7489's pct=): does the domain of
 * the RFC5322.From address stand behind this message, and what does it
 * ask a receiver to do when it does not?
 *
 * Fed what SPF (spf.h) and DKIM found, it discovers the policy by the DNS
 * tree walk of RFC 9989 (no public suffix list: the walk finds the
 * organizational domain from the records published), checks relaxed or
 * strict alignment of the SPF domain and of each DKIM d= domain with the
 * From domain, and gives the result and the disposition. DNS goes
 * through a PbResolver (dns.h) with the caller's deadline; a lookup that
 * fails or has not answered by then is a temperror. Guarantees: at most
 * 8 queries per tree walk (RFC 9989), each _dmarc name asked once per
 * check; at most 10 DKIM domains considered; no clock, no file.
 */
#ifndef PB_DMARC_H
#define PB_DMARC_H

#include <glib.h>

#include "dns.h"
#include "spf.h"

typedef enum {
	PB_DMARC_NONE, /* no policy published (or no From domain to ask) */
	PB_DMARC_PASS,
	PB_DMARC_FAIL,
	PB_DMARC_TEMPERROR,
	PB_DMARC_PERMERROR, /* a policy record that cannot be used */
} PbDmarcResult;

typedef enum {
	PB_DMARC_POLICY_NONE,
	PB_DMARC_POLICY_QUARANTINE,
	PB_DMARC_POLICY_REJECT,
} PbDmarcPolicy;

/* A parsed "v=DMARC1" record. Unknown tags are ignored; bad values of
 * adkim, aspf, pct, t, psd take the default; a bad or missing p (or a
 * bad sp or np) makes the record p=none when it has a valid rua, and
 * unusable otherwise (RFC 9989 section 4.7). */
typedef struct {
	PbDmarcPolicy p, sp, np;
	gboolean has_sp, has_np;
	gboolean adkim_strict, aspf_strict;
	guint pct;            /* RFC 7489's sampling, 100 when absent */
	gboolean testing;     /* t=y (RFC 9989): one step milder */
	char psd;             /* 'y', 'n' or 'u' */
	GPtrArray *rua, *ruf; /* char*: the URIs of valid syntax */
	char *fo;             /* as published, NULL when absent */
} PbDmarcRecord;

/* TEXT starts with the v=DMARC1 tag (other TXT records are not DMARC's). */
gboolean pb_dmarc_is_record(const char *text);

/* NULL with a reason: not a DMARC record, or one that cannot be used. */
PbDmarcRecord *pb_dmarc_record_parse(const char *text, char **problem);
void pb_dmarc_record_free(PbDmarcRecord *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbDmarcRecord, pb_dmarc_record_free)

typedef struct {
	const char *from_domain; /* of the (first) RFC5322.From address */
	guint from_fields;       /* From header fields in the message */
	const char *spf_domain;  /* the domain SPF checked, NULL: none */
	PbSpfResult spf_result;
	const char *const *dkim_domains; /* d= of passing signatures, NULL
	                                    terminated (or NULL) */
	guint sample;    /* 0..99, chosen at random: pct= applies below it */
	gint64 deadline; /* monotonic ms (pb_deadline_in) */
} PbDmarcRequest;

typedef struct {
	PbDmarcResult result;
	PbDmarcPolicy policy;      /* the record's p, sp or np for From */
	PbDmarcPolicy disposition; /* on fail: policy after pct= and t=y */
	char *from_domain;         /* as checked (lower case) */
	char *policy_domain;       /* where the record was found, or NULL */
	gboolean spf_aligned;
	char *dkim_domain; /* the aligned d= domain, or NULL */
	char *problem;     /* fail, none and the errors: why */
} PbDmarcOutcome;

void pb_dmarc_outcome_clear(PbDmarcOutcome *out);

/* "none", "pass", ... as Authentication-Results (RFC 8601) spells them. */
const char *pb_dmarc_result_name(PbDmarcResult result);
/* "none", "quarantine", "reject". */
const char *pb_dmarc_policy_name(PbDmarcPolicy policy);

/* Several From fields are a fail; no From domain is a permerror. */
PbDmarcResult pb_dmarc_check(PbResolver *resolver, const PbDmarcRequest *req,
                             PbDmarcOutcome *out);

/* The organizational domain of DOMAIN found by the tree walk (RFC 9989
 * section 4.10.2): DOMAIN itself when no record says otherwise; NULL
 * on a DNS error. */
char *pb_dmarc_organizational_domain(PbResolver *resolver, const char *domain,
                                     gint64 deadline);

#endif
