/*
 * dns.h - where mail for a domain goes: MX hosts and their addresses,
 * looked up with udns (RFC 5321 section 5.1, RFC 7505 null MX).
 *
 * Blocking with a deadline (runq's delivery children call it; nothing
 * else waits on them). Guarantees: hosts come sorted by preference, equal
 * preferences in random order; a domain without MX records is its own
 * implicit MX; the error code tells the caller what to do: PB_ERROR_PERM
 * (bounce: NXDOMAIN, null MX) or PB_ERROR_TEMP (retry: SERVFAIL,
 * timeouts, no address for any MX host). Error messages begin with the
 * enhanced status code ("5.1.10 ...").
 */
#ifndef PB_DNS_H
#define PB_DNS_H

#include <glib.h>
#include <sys/socket.h>

#include "config.h"

typedef struct {
	guint preference;
	char *name;
	GPtrArray *addresses; /* char*, numeric IPv6 and IPv4 */
} PbMxHost;

typedef struct {
	GPtrArray *hosts;  /* PbMxHost* */
	gboolean implicit; /* no MX: the domain itself */
} PbMxList;

void pb_mx_list_free(PbMxList *mx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbMxList, pb_mx_list_free)

/* The MX hosts of DOMAIN with their addresses, per [delivery]
 * nameservers (or /etc/resolv.conf). */
PbMxList *pb_dns_resolve_mx(const PbConfig *cfg, const char *domain,
                            GError **error);

/* The addresses of HOST (a numeric address is returned as it is). */
GPtrArray *pb_dns_resolve_host(const PbConfig *cfg, const char *host,
                               GError **error);

/* The hosts of an MX answer (RR as udns's dns_parse_mx makes it from the
 * reply, or NULL with the udns STATUS of a failed query), unsorted and
 * without addresses: the domain itself when there is no MX (*IMPLICIT),
 * NULL with an error for NXDOMAIN, null MX and failures. */
struct dns_rr_mx;
GPtrArray *pb_dns_mx_hosts(const char *domain, const struct dns_rr_mx *rr,
                           int status, gboolean *implicit, GError **error);

/* The TXT records of NAME, each a NULL-terminated array holding its
 * character-strings joined (udns joins them), waiting until
 * DEADLINE (monotonic milliseconds). PB_ERROR_NOTFOUND: NXDOMAIN or no
 * TXT record; PB_ERROR_TEMP: anything else (SERVFAIL, timeout). */
GPtrArray *pb_dns_resolve_txt(const PbConfig *cfg, const char *name,
                              gint64 deadline, GError **error);

/* pb_dns_resolve_txt as a PbDkimLookup (dkim.h): LOOKUP is a
 * PbDnsTxtLookup. */
typedef struct {
	const PbConfig *cfg;
	gint64 deadline; /* monotonic milliseconds */
} PbDnsTxtLookup;
GPtrArray *pb_dns_txt_lookup(const char *name, gpointer lookup, GError **error);

/* Sorts PbMxHost* by preference, shuffling equal ones with RAND. */
void pb_dns_sort_mx(GPtrArray *hosts, GRand *rand);

/* Parses a nameserver "ADDR", "ADDR:PORT", "[IPv6]:PORT" (port 53 by
 * default). */
gboolean pb_dns_parse_server(const char *text, struct sockaddr_storage *sa,
                             GError **error);

#endif
