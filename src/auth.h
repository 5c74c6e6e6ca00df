/*
 * auth.h - the inbound checks of a message from outside (README "Inbound
 * checks"): what SPF (spf.h), DKIM (dkim.h), DMARC (dmarc.h) and iprev
 * (RFC 8601 section 3) say about it, the Authentication-Results field
 * (RFC 8601) that records it, what the [auth] policy makes of it, and the
 * removal of incoming Authentication-Results fields that claim to be ours.
 *
 * No system calls: DNS goes through a PbResolver with the caller's
 * deadline. Guarantees: the filter streams (it holds at most one
 * Authentication-Results field, bounded by PB_AUTH_MAX_FIELD, never the
 * message) and touches nothing after the header section; the header
 * built is one field, folded, of at most a few KiB (values from the
 * client are quoted); a temporary DNS error never gives a 5xx verdict.
 */
#ifndef PB_AUTH_H
#define PB_AUTH_H

#include <glib.h>

#include "config.h"
#include "dkim.h"
#include "dmarc.h"
#include "dns.h"
#include "spf.h"

/* An Authentication-Results field held by the filter: past this size it
 * is judged on its beginning (where the authserv-id is). */
#define PB_AUTH_MAX_FIELD 8192

/* ---- removing Authentication-Results fields that claim to be ours ---- */

/* TRUE if FIELD ("Authentication-Results: id; ...", folded lines joined
 * with their line ends) carries AUTHSERV_ID (case does not matter), or
 * when no authserv-id can be read from it (a field we cannot tell from
 * ours is not trusted). */
gboolean pb_auth_field_is_ours(const char *field, gsize len,
                               const char *authserv_id);

typedef void (*PbAuthSink)(void *ctx, const char *buf, gsize len);
typedef struct _PbAuthFilter PbAuthFilter;

/* Passes the message fed to SINK, without the Authentication-Results
 * fields of the header section that are ours (their continuation lines
 * included). */
PbAuthFilter *pb_auth_filter_new(const char *authserv_id, PbAuthSink sink,
                                 void *ctx);
void pb_auth_filter_feed(PbAuthFilter *f, const char *buf, gsize len);
/* The message ended: a field still held goes out (or not). */
void pb_auth_filter_finish(PbAuthFilter *f);
guint pb_auth_filter_removed(const PbAuthFilter *f);
void pb_auth_filter_free(PbAuthFilter *f);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbAuthFilter, pb_auth_filter_free)

/* ---- the checks ---- */

typedef enum {
	PB_IPREV_PASS,
	PB_IPREV_FAIL,
	PB_IPREV_TEMPERROR,
	PB_IPREV_PERMERROR,
} PbIprevResult;

const char *pb_iprev_result_name(PbIprevResult result);

typedef struct {
	const char *ip;     /* the client's address, numeric */
	const char *helo;   /* HELO/EHLO argument */
	const char *sender; /* MAIL FROM, "" for the null path */
	const char *hostname;
	gint64 now;      /* seconds since the epoch (DKIM x=, SPF %{t}) */
	gint64 deadline; /* monotonic ms, for all checks together */
	guint sample;    /* 0..99, for DMARC's pct= */
} PbAuthRequest;

typedef struct {
	char *ip, *helo, *sender;
	PbIprevResult iprev;
	gboolean spf_helo; /* null path: the HELO identity was checked */
	PbSpfOutcome spf;
	GPtrArray *dkim; /* PbDkimResult*, one per signature checked */
	PbDmarcOutcome dmarc;
	char *from_domain;      /* the first From's domain, or NULL */
	gboolean spoofed_local; /* From is one of our domains, and neither
	                           DMARC nor DKIM passed for it */
} PbAuthResults;

void pb_auth_results_clear(PbAuthResults *r);

/* Runs iprev, SPF, DKIM (finishing V, fed the message) and DMARC, in
 * that order, by REQ's deadline. */
void pb_auth_check(PbResolver *resolver, const PbAuthRequest *req,
                   PbDkimVerify *v, PbAuthResults *out);

/* The [auth] policy: NULL to accept (marked), or the reply refusing the
 * message: "550 5.7.1 ..." for a DMARC reject (dmarc_reject) or a
 * spoofed local From (spoofed_local_from = reject), "451 4.7.0 ..." when
 * a local From could not be checked for a temporary DNS error. Sets
 * R->spoofed_local. */
char *pb_auth_decide(const PbConfig *cfg, PbAuthResults *r);

/* "Authentication-Results: AUTHSERV_ID;\r\n\tiprev=...;\r\n\tspf=...;
 * ...\r\n": one field with its CRLF. */
char *pb_auth_header(const char *authserv_id, const PbAuthResults *r);

/* "iprev=pass spf=pass dkim=pass dmarc=pass" for the log. */
char *pb_auth_summary(const PbAuthResults *r);

#endif
