/* deliver - the local delivery agent (see DESIGN.md: deliver [-c FILE]
 * [-f SENDER] ADDRESS... < MESSAGE); usable as an MDA by fetchmail or
 * procmail. Exit codes per sysexits.h: 0, 64, 65, 67, 75, 78. */
#include "error.h"
#include "local.h"
#include "program.h"

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	g_autofree char *sender = NULL;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf,
	     "Configuration file", "FILE"},
	    {"from", 'f', 0, G_OPTION_ARG_STRING, &sender,
	     "Envelope sender (Return-Path)", "SENDER"},
	    {NULL}};
	g_autoptr(GOptionContext) ctx =
	    g_option_context_new("ADDRESS... < MESSAGE - deliver locally");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	g_autoptr(PbLocal) local = NULL;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	if (argc < 2) {
		g_printerr("deliver: no recipient address given\n");
		return PB_EX_USAGE;
	}
	cfg = pb_program_start("deliver", conf, FALSE, FALSE, &error);
	if (cfg == NULL || (local = pb_local_new(cfg, &error)) == NULL ||
	    !pb_local_deliver_stream(local, sender ? sender : "", argv + 1, 0,
				     &error))
		return pb_program_fail("deliver", error);
	return 0;
}
