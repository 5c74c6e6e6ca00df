/* mailq - list the queue, explain one message, and repair it (see
 * DESIGN.md: mailq [-c FILE] [--json] [--explain ID]):
 *   mailq                      Postfix's listing
 *   mailq --json               the same as a JSON array for programs
 *   mailq --explain ID         why the message is where it is
 *   mailq --hold ID...|ALL     runq leaves it alone (postsuper -h)
 *   mailq --release ID...|ALL  undo --hold, due now (postsuper -H)
 *   mailq --requeue ID...|ALL  every pending recipient due now
 *   mailq --delete ID...|ALL   remove without a bounce (postsuper -d) */
#include "admin.h"
#include "error.h"
#include "explain.h"
#include "program.h"
#include "queue.h"

#include <stdio.h>
#include <string.h>

/* Applies ACTION to the ids in ARGV (or every message for "ALL"). */
static int
administer(PbQueue *q, PbAdminAction action, int argc, char **argv)
{
	g_autoptr(GPtrArray) ids = NULL;
	g_autoptr(GError) error = NULL;
	int status = PB_EX_OK;

	if (argc == 2 && g_str_equal(argv[1], "ALL")) {
		if ((ids = pb_admin_all(q, &error)) == NULL)
			return pb_program_fail("mailq", error);
	} else {
		ids = g_ptr_array_new_with_free_func(g_free);
		for (int i = 1; i < argc; i++)
			g_ptr_array_add(ids, g_strdup(argv[i]));
	}
	for (guint i = 0; i < ids->len; i++) {
		const char *id = g_ptr_array_index(ids, i);
		if (pb_admin_apply(q, id, action, &error))
			continue;
		if (g_error_matches(error, PB_ERROR, PB_ERROR_BUSY))
			g_printerr("mailq: %s: being delivered right now; "
			           "try again in a moment\n",
			           id);
		else
			g_printerr("mailq: %s: %s\n", id, error->message);
		status = g_error_matches(error, PB_ERROR, PB_ERROR_NOTFOUND)
		             ? PB_EX_DATAERR
		             : PB_EX_TEMPFAIL;
		g_clear_error(&error);
	}
	return status;
}

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	g_autofree char *explain = NULL;
	gboolean json = FALSE, hold = FALSE, release = FALSE, requeue = FALSE,
	         delete = FALSE;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf,
	     "Configuration file", "FILE"},
	    {"json", 0, 0, G_OPTION_ARG_NONE, &json,
	     "A JSON array of the queued messages", NULL},
	    {"explain", 0, 0, G_OPTION_ARG_STRING, &explain,
	     "Why message ID is where it is: route, replies, deadlines", "ID"},
	    {"hold", 0, 0, G_OPTION_ARG_NONE, &hold,
	     "Hold the messages ID... (or ALL): runq leaves them alone", NULL},
	    {"release", 0, 0, G_OPTION_ARG_NONE, &release,
	     "Release held messages; they are due at once", NULL},
	    {"requeue", 0, 0, G_OPTION_ARG_NONE, &requeue,
	     "Make every pending recipient due at the next runq", NULL},
	    {"delete", 0, 0, G_OPTION_ARG_NONE, &delete,
	     "Delete the messages without a bounce", NULL},
	    {NULL}};
	g_autoptr(GOptionContext) ctx = g_option_context_new(
	    "[ID...|ALL] - list and repair the mail queue");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	g_autoptr(PbQueue) q = NULL;
	g_autoptr(GString) out = NULL;
	int actions;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	actions = hold + release + requeue + delete + (explain != NULL);
	if (actions > 1 || (actions == 0 && argc > 1) ||
	    (actions == 1 && !explain && argc < 2) || (explain && argc > 1)) {
		g_printerr("mailq: give one of --hold, --release, --requeue, "
		           "--delete with queue ids (or ALL), or --explain ID, "
		           "or nothing to list the queue\n");
		return PB_EX_USAGE;
	}
	/* repairs are logged where the mail system logs; a listing is not */
	cfg = pb_program_start("mailq", conf, actions == 0 || explain != NULL,
			       FALSE, &error);
	if (cfg == NULL || (q = pb_queue_open(cfg->queue, &error)) == NULL)
		return pb_program_fail("mailq", error);
	if (hold || release || requeue || delete)
		return administer(q,
		                  hold      ? PB_ADMIN_HOLD
		                  : release ? PB_ADMIN_RELEASE
		                  : requeue ? PB_ADMIN_REQUEUE
		                            : PB_ADMIN_DELETE,
		                  argc, argv);
	if (explain)
		out = pb_explain(cfg, q, explain, &error);
	else
		out = pb_queue_format_listing(q, json, cfg->bounce_after, &error);
	if (out == NULL)
		return pb_program_fail("mailq", error);
	return pb_program_print("mailq", out);
}
