/* runq - one queue run (see DESIGN.md: runq [-c FILE] [-f] [-v]
 * [QUEUE-ID...]); with --check [--repair], the queue's invariants
 * instead. A full run (no ids) leaves QUEUE/status for monitoring. */
#include "runq.h"
#include "admin.h"
#include "error.h"
#include "log.h"
#include "program.h"
#include "queue.h"

#include <stdio.h>

static int
check(const PbConfig *cfg, gboolean repair)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbQueue) q = pb_queue_open(cfg->queue, &error);
	g_autoptr(GString) report = g_string_new(NULL);
	int problems;

	if (q == NULL)
		return pb_program_fail("runq", error);
	problems = pb_admin_check(q, repair, g_get_real_time() / G_USEC_PER_SEC,
	                          report, &error);
	fputs(report->str, stdout);
	if (problems < 0)
		return pb_program_fail("runq", error);
	printf("%d problem%s found%s\n", problems, problems == 1 ? "" : "s",
	       repair && problems > 0 ? " and repaired" : "");
	return problems > 0 && !repair ? 1 : PB_EX_OK;
}

static void
write_status(const PbConfig *cfg, const PbRunqStats *stats, gint64 started,
             gint64 start_mono)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbQueue) q = pb_queue_open(cfg->queue, &error);
	gint64 ms = (g_get_monotonic_time() - start_mono) / 1000;

	if (q == NULL || !pb_admin_write_status(q, stats, started, ms, &error))
		pb_log_warn(NULL, "cannot write the status file: %s",
		            error->message);
}

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	gboolean force = FALSE, verbose = FALSE, checking = FALSE,
	         repair = FALSE;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf,
	     "Configuration file", "FILE"},
	    {"force", 'f', 0, G_OPTION_ARG_NONE, &force,
	     "Try every recipient now, due or not", NULL},
	    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose,
	     "Show each attempt as it happens", NULL},
	    {"check", 0, 0, G_OPTION_ARG_NONE, &checking,
	     "Verify the queue's invariants instead of delivering", NULL},
	    {"repair", 0, 0, G_OPTION_ARG_NONE, &repair,
	     "With --check: fix what can be fixed (damaged entries are "
	     "moved to QUEUE/corrupt/, never deleted)",
	     NULL},
	    {NULL}};
	g_autoptr(GOptionContext) ctx =
	    g_option_context_new("[QUEUE-ID...] - deliver what is due");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	PbRunqStats stats;
	gint64 started = g_get_real_time() / G_USEC_PER_SEC;
	gint64 start_mono = g_get_monotonic_time();

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	if (repair && !checking) {
		g_printerr("runq: --repair goes with --check\n");
		return PB_EX_USAGE;
	}
	cfg = pb_program_start("runq", conf, checking, FALSE, &error);
	if (cfg == NULL)
		return pb_program_fail("runq", error);
	if (checking)
		return check(cfg, repair);
	pb_log_set_verbose(verbose);
	if (!pb_runq_run(cfg, argc > 1 ? argv + 1 : NULL, force, &stats,
	                 &error))
		return pb_program_fail("runq", error);
	pb_log_info(NULL,
	            "run done: messages=%u, delivered=%u, deferred=%u, "
	            "bounced=%u, busy=%u, corrupt=%u",
	            stats.messages, stats.delivered, stats.deferred,
	            stats.bounced, stats.busy, stats.corrupt);
	if (argc <= 1)
		write_status(cfg, &stats, started, start_mono);
	/* an unreadable envelope was set aside: the run went on, but the
	 * operator has to look (postmaster was told, the log says more) */
	if (stats.corrupt > 0) {
		g_printerr("runq: %u queue entr%s with an unreadable envelope "
		           "set aside in %s/corrupt\n",
		           stats.corrupt, stats.corrupt == 1 ? "y" : "ies",
		           cfg->queue);
		return PB_EX_DATAERR;
	}
	return PB_EX_OK;
}
