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

/* Sorts PbMxHost* by preference, shuffling equal ones with RAND. */
void pb_dns_sort_mx(GPtrArray *hosts, GRand *rand);

/* Parses a nameserver "ADDR", "ADDR:PORT", "[IPv6]:PORT" (port 53 by
 * default). */
gboolean pb_dns_parse_server(const char *text, struct sockaddr_storage *sa,
                             GError **error);

/* A resolver for the authentication checks (SPF, DMARC, DKIM): a small
 * interface, so that tests and the RFC 7208 suite runner feed zone data
 * without a network, and the product asks udns.
 *
 * lookup() answers every query of QUERIES at once (udns sends them
 * together and waits for all), by DEADLINE (monotonic milliseconds, as
 * pb_deadline_in gives): what has not answered by then is
 * PB_DNS_TEMP. RECORDS (char*, set only for PB_DNS_OK) hold: A and AAAA
 * numeric addresses, MX host names (preferences dropped, "" for a null
 * MX), TXT the strings of one record joined (RFC 7208 section 3.3; a
 * NUL byte inside is turned into 0x7f so that the record stays as
 * invalid as it was instead of being cut short), PTR names. Names come
 * without a trailing dot. */
typedef enum {
	PB_DNS_A,
	PB_DNS_AAAA,
	PB_DNS_MX,
	PB_DNS_TXT,
	PB_DNS_PTR,
} PbDnsType;

typedef enum {
	PB_DNS_OK,       /* records found */
	PB_DNS_NODATA,   /* the name exists, no record of the type */
	PB_DNS_NXDOMAIN, /* the name does not exist (or cannot: bad syntax) */
	PB_DNS_TEMP,     /* timeout, SERVFAIL, garbled answer */
} PbDnsStatus;

typedef struct {
	char *name; /* in */
	PbDnsType type;
	PbDnsStatus status; /* out */
	GPtrArray *records; /* out: char*, NULL unless PB_DNS_OK */
} PbDnsQuery;

typedef struct PbResolver PbResolver;
struct PbResolver {
	void (*lookup)(PbResolver *self, PbDnsQuery **queries, guint n,
	               gint64 deadline);
	void (*destroy)(PbResolver *self);
};

void pb_resolver_free(PbResolver *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbResolver, pb_resolver_free)

/* Sets up a query (records NULL) and frees what it holds. */
void pb_dns_query_init(PbDnsQuery *q, const char *name, PbDnsType type);
void pb_dns_query_clear(PbDnsQuery *q);

/* The udns resolver, per [delivery] nameservers (or /etc/resolv.conf). */
PbResolver *pb_dns_resolver_new(const PbConfig *cfg, GError **error);

/* A PbResolver's TXT answers as DKIM's key lookup (PbDkimLookup in
 * dkim.h; LOOKUP is a PbDnsTxtLookup): each record a NULL-terminated
 * array of its (joined) text; PB_ERROR_NOTFOUND for NXDOMAIN and
 * NODATA, PB_ERROR_TEMP for the rest, DEADLINE passed included. */
typedef struct {
	PbResolver *resolver;
	gint64 deadline; /* monotonic milliseconds */
} PbDnsTxtLookup;
GPtrArray *pb_dns_txt_lookup(const char *name, gpointer lookup, GError **error);

/* The reverse name of an address (4 or 16 octets of FAMILY) for a PTR
 * query: "4.3.2.1.in-addr.arpa", or IPv6 nibbles under "ip6.arpa". */
char *pb_dns_reverse_name(int family, const guint8 *addr);

/* TEXT as the character-strings of one TXT record: pieces of at most 255
 * octets (RFC 1035 3.3.14), NULL-terminated. */
char **pb_dns_txt_split(const char *text);

/* The zone-file line of a TXT record: NAME. IN TXT "..." (strings inside
 * ( ) one a line when there are several). STRINGS hold no '"' or '\'. */
char *pb_dns_zone_txt(const char *name, char *const *strings);

#endif
