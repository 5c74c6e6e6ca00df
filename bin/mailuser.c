/* mailuser - manage accounts (see DESIGN.md: mailuser [-c FILE]
 * add|passwd|del|list [ADDRESS]). The password is read from stdin when it
 * is not a terminal, else asked twice. Exit codes per sysexits.h. */
#include "accounts.h"
#include "error.h"
#include "program.h"

#include <string.h>

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	GOptionEntry entries[] = {{"config", 'c', 0, G_OPTION_ARG_FILENAME,
	                           &conf, "Configuration file", "FILE"},
	                          {NULL}};
	g_autoptr(GOptionContext) ctx = g_option_context_new(
	    "add|passwd|del|list [ADDRESS] - manage accounts");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	if (argc < 2 || argc > 3 ||
	    (strcmp(argv[1], "list") == 0) != (argc == 2)) {
		g_printerr("mailuser: usage: mailuser [-c FILE] "
		           "add|passwd|del ADDRESS | list\n");
		return PB_EX_USAGE;
	}
	cfg = pb_program_start("mailuser", conf, TRUE, FALSE, &error);
	if (cfg == NULL ||
	    !pb_accounts_manage(cfg, argv[1], argc == 3 ? argv[2] : NULL,
	                        &error))
		return pb_program_fail("mailuser", error);
	return PB_EX_OK;
}
