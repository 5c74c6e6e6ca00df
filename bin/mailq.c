/* mailq - list the queue (see DESIGN.md: mailq [-c FILE] [--json]):
 * Postfix's layout, or a JSON array for programs. */
#include "error.h"
#include "program.h"
#include "queue.h"

#include <stdio.h>

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	gboolean json = FALSE;
	GOptionEntry entries[] = {{"config", 'c', 0, G_OPTION_ARG_FILENAME,
	                           &conf, "Configuration file", "FILE"},
	                          {"json", 0, 0, G_OPTION_ARG_NONE, &json,
	                           "A JSON array of the queued messages", NULL},
	                          {NULL}};
	g_autoptr(GOptionContext) ctx =
	    g_option_context_new("- list the mail queue");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	g_autoptr(PbQueue) q = NULL;
	g_autoptr(GString) out = NULL;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	if (argc > 1) {
		g_printerr("mailq: unexpected argument %s\n", argv[1]);
		return PB_EX_USAGE;
	}
	cfg = pb_program_start("mailq", conf, TRUE, FALSE, &error);
	if (cfg == NULL || (q = pb_queue_open(cfg->queue, &error)) == NULL ||
	    (out = pb_queue_format_listing(q, json, &error)) == NULL)
		return pb_program_fail("mailq", error);
	if (fwrite(out->str, 1, out->len, stdout) != out->len ||
	    fflush(stdout) != 0) {
		g_printerr("mailq: cannot write the listing\n");
		return PB_EX_IOERR;
	}
	return PB_EX_OK;
}
