/*
 * fuzz-dns.c - DNS replies: a raw reply packet goes where udns takes it
 * in dns_ioevent() - the question is skipped, the rcode and the answer
 * count decide NXDOMAIN/NODATA - then to udns's own parser for the
 * question's type (dns_parse_mx, dns_parse_a4, dns_parse_a6) and to what
 * dns.c makes of the result: pb_dns_mx_hosts and pb_dns_sort_mx for MX,
 * the numeric text of each address for A and AAAA (on_a4/on_a6).
 *
 * udns comes from Debian, not built with the sanitizers: its own reads
 * are checked only where they go through intercepted functions.
 */
#include "dns.h"
#include "fuzz.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <udns.h>

static void
mx(const char *domain, void *result, int status)
{
	g_autoptr(GRand) rand = g_rand_new_with_seed(1);
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) hosts = NULL;
	gboolean implicit;

	hosts = pb_dns_mx_hosts(domain, result, status, &implicit, &error);
	free(result);
	if (hosts == NULL) {
		g_assert_nonnull(error);
		g_assert_true(g_ascii_isdigit(error->message[0]));
		return;
	}
	g_assert_cmpuint(hosts->len, >, 0);
	pb_dns_sort_mx(hosts, rand);
	for (guint i = 1; i < hosts->len; i++)
		g_assert_cmpuint(((PbMxHost *)hosts->pdata[i - 1])->preference,
		                 <=, ((PbMxHost *)hosts->pdata[i])->preference);
}

static void
addresses(int type, void *result)
{
	char buf[INET6_ADDRSTRLEN];

	if (result && type == DNS_T_A) {
		struct dns_rr_a4 *rr = result;
		for (int i = 0; i < rr->dnsa4_nrr; i++)
			g_assert_nonnull(inet_ntop(AF_INET, &rr->dnsa4_addr[i],
			                           buf, sizeof buf));
	} else if (result) {
		struct dns_rr_a6 *rr = result;
		for (int i = 0; i < rr->dnsa6_nrr; i++)
			g_assert_nonnull(inet_ntop(AF_INET6, &rr->dnsa6_addr[i],
			                           buf, sizeof buf));
	}
	free(result);
}

/* The status udns gives before parsing (dns_ioevent), or 0: parse. */
static int
rcode_status(const guint8 *pkt)
{
	switch (dns_rcode(pkt)) {
	case DNS_R_NOERROR:
		return dns_numan(pkt) ? 0 : DNS_E_NODATA;
	case DNS_R_NXDOMAIN:
		return DNS_E_NXDOMAIN;
	default:
		return DNS_E_TEMPFAIL;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* udns reads a reply into a buffer of this size at most */
	const guint8 *end = data + MIN(size, 4096);
	const guint8 *cur;
	dnsc_t dn[DNS_MAXDN];
	char domain[DNS_MAXNAME];
	void *result = NULL;
	int type, status;

	if (size < DNS_HSIZE || dns_numqd(data) != 1)
		return 0;
	cur = dns_payload(data);
	if (dns_getdn(data, &cur, end, dn, sizeof dn) <= 0 || cur + 4 > end)
		return 0;
	type = (int)dns_get16(cur);
	if (dns_get16(cur + 2) != DNS_C_IN ||
	    (type != DNS_T_MX && type != DNS_T_A && type != DNS_T_AAAA))
		return 0;
	if (dns_dntop(dn, domain, sizeof domain) <= 0)
		return 0;
	if ((status = rcode_status(data)) == 0) {
		dns_parse_fn *parse = type == DNS_T_MX  ? dns_parse_mx
		                      : type == DNS_T_A ? dns_parse_a4
		                                        : dns_parse_a6;
		status = parse(dn, data, cur, end, &result);
		if (status >= 0) {
			g_assert_nonnull(result);
			status = 0;
		}
	}
	if (type == DNS_T_MX)
		mx(domain, status == 0 ? result : NULL, status);
	else
		addresses(type, status == 0 ? result : NULL);
	return 0;
}
