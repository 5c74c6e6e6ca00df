/* runq - one queue run (see DESIGN.md: runq [-c FILE] [-f] [-v]
 * [QUEUE-ID...]). */
#include "error.h"
#include "log.h"
#include "program.h"
#include "runq.h"

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	gboolean force = FALSE, verbose = FALSE;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf,
	     "Configuration file", "FILE"},
	    {"force", 'f', 0, G_OPTION_ARG_NONE, &force,
	     "Try every recipient now, due or not", NULL},
	    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose,
	     "Show each attempt as it happens", NULL},
	    {NULL}};
	g_autoptr(GOptionContext) ctx =
	    g_option_context_new("[QUEUE-ID...] - deliver what is due");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	PbRunqStats stats;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	cfg = pb_program_start("runq", conf, FALSE, FALSE, &error);
	if (cfg == NULL)
		return pb_program_fail("runq", error);
	pb_log_set_verbose(verbose);
	if (!pb_runq_run(cfg, argc > 1 ? argv + 1 : NULL, force, &stats,
			 &error))
		return pb_program_fail("runq", error);
	pb_log_info(NULL,
		    "run done: messages=%u, delivered=%u, deferred=%u, "
		    "bounced=%u, busy=%u",
		    stats.messages, stats.delivered, stats.deferred,
		    stats.bounced, stats.busy);
	return 0;
}
