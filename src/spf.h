/*
 * spf.h - Sender Policy Framework (RFC 7208): may this client address
 * send mail for this domain?
 *
 * check_host() of RFC 7208 section 4 with its limits: at most 10
 * DNS-querying terms (include, a, mx, ptr, exists, redirect), 2 void
 * lookups, 10 MX names per mx and 10 PTR names per ptr or %{p}. DNS goes
 * through a PbResolver (dns.h) with the caller's deadline; a query that
 * has not answered by then is a temperror. Pure otherwise: no clock
 * unless the caller gives none (%{t}), no file, no network of its own.
 * Guarantees: every record is parsed in full before it is evaluated (a
 * syntax error anywhere is a permerror); work is bounded by the limits
 * above; the result is one of the seven of section 2.6.
 */
#ifndef PB_SPF_H
#define PB_SPF_H

#include <glib.h>

#include "dns.h"

typedef enum {
	PB_SPF_NONE,
	PB_SPF_NEUTRAL,
	PB_SPF_PASS,
	PB_SPF_FAIL,
	PB_SPF_SOFTFAIL,
	PB_SPF_TEMPERROR,
	PB_SPF_PERMERROR,
} PbSpfResult;

/* "none", "neutral", ... as Received-SPF and Authentication-Results
 * (RFC 8601) spell them. */
const char *pb_spf_result_name(PbSpfResult result);

typedef struct {
	const char *ip;       /* the client's address, numeric v4 or v6 */
	const char *sender;   /* MAIL FROM without <>, "" for the null path */
	const char *helo;     /* the HELO/EHLO argument */
	const char *receiver; /* our host name (%{r}); NULL: "unknown" */
	gint64 now;           /* seconds since the epoch (%{t}); 0: clock */
	gint64 deadline;      /* monotonic ms (pb_deadline_in) */
} PbSpfRequest;

typedef struct {
	PbSpfResult result;
	char *domain;      /* the identity's domain checked ("" if none) */
	char *mechanism;   /* the term that decided, NULL: default */
	char *explanation; /* fail: the expanded exp= text, else NULL */
	char *problem;     /* permerror, temperror, none: why */
} PbSpfOutcome;

void pb_spf_outcome_clear(PbSpfOutcome *out);

/* The MAIL FROM identity (RFC 7208 section 2.4): the domain of SENDER,
 * or of postmaster@HELO when SENDER is the null path. */
PbSpfResult pb_spf_check_mailfrom(PbResolver *resolver, const PbSpfRequest *req,
                                  PbSpfOutcome *out);

/* The HELO identity (section 2.3): postmaster@HELO. */
PbSpfResult pb_spf_check_helo(PbResolver *resolver, const PbSpfRequest *req,
                              PbSpfOutcome *out);

/* Parses one record's text ("v=spf1 ..."): TRUE when its syntax is
 * valid (what evaluation would not call a permerror before any DNS
 * query), else FALSE with a reason. For the fuzzer and pillarbox-dns. */
gboolean pb_spf_record_valid(const char *record, char **problem);

/* Expands a macro-string of section 7 as the evaluation of REQ's MAIL
 * FROM identity would for DOMAIN (EXPLAIN: an exp= text, where c, r, t
 * and spaces are allowed). NULL with a reason on a syntax error. */
char *pb_spf_expand(PbResolver *resolver, const PbSpfRequest *req,
                    const char *domain, const char *text, gboolean explain,
                    char **problem);

#endif
