/* pillarbox-dns - the DNS records to publish for this host and its
 * domains, checked against live DNS (README "DNS records: pillarbox-dns"):
 *   pillarbox-dns [-c FILE] [--json] [--address IP]... [DOMAIN...]
 * Exit 0 when every required check is OK (or WARN), 1 when one is WRONG
 * or MISSING, 75 when DNS did not answer, 78 on a configuration error. */
#include "dnscheck.h"
#include "error.h"
#include "program.h"

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	g_auto(GStrv) addresses = NULL;
	gboolean json = FALSE;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf,
	     "Configuration file", "FILE"},
	    {"json", 0, 0, G_OPTION_ARG_NONE, &json,
	     "One JSON object for programs", NULL},
	    {"address", 0, 0, G_OPTION_ARG_STRING_ARRAY, &addresses,
	     "This host's address (repeat; default: the hostname's A/AAAA)",
	     "IP"},
	    {NULL}};
	g_autoptr(GOptionContext) ctx = g_option_context_new(
	    "[DOMAIN...] - DNS records to publish, and whether they are right");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	g_autoptr(PbDnsReport) rep = NULL;
	g_autoptr(GString) out = NULL;
	PbCheckStatus verdict;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	/* root reads the DKIM keys as [main] user, their owner */
	cfg = pb_program_start("pillarbox-dns", conf, TRUE, FALSE, &error);
	if (cfg == NULL ||
	    (rep = pb_dnscheck(cfg, argv + 1, addresses, &error)) == NULL)
		return pb_program_fail("pillarbox-dns", error);
	out = pb_dnscheck_format(rep, json);
	if (pb_program_print("pillarbox-dns", out) != PB_EX_OK)
		return PB_EX_IOERR;
	verdict = pb_dnscheck_verdict(rep);
	return verdict <= PB_CHECK_WARN   ? PB_EX_OK
	       : verdict == PB_CHECK_TEMP ? PB_EX_TEMPFAIL
	                                  : 1;
}
