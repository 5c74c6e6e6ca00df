/*
 * program.c - the common start of every pillarbox program.
 *
 * Guarantees: a program that got past pb_program_start() has a valid
 * configuration, an open log and, when it was started as root and is not
 * a daemon that still has to bind its sockets, runs as [main] user.
 */
#include "program.h"
#include "error.h"
#include "log.h"
#include "privs.h"

#include <stdio.h>

PbConfig *
pb_program_start(const char *ident, const char *conf, gboolean to_stderr,
		 gboolean keep_root, GError **error)
{
	g_autoptr(PbConfig) cfg = pb_config_load(conf, error);

	if (cfg == NULL)
		return NULL;
	if (!pb_log_open(ident, to_stderr ? "stderr" : cfg->log, error))
		return NULL;
	if (!keep_root && !pb_privs_drop(cfg->user, error))
		return NULL;
	return g_steal_pointer(&cfg);
}

int
pb_program_fail(const char *ident, const GError *error)
{
	fprintf(stderr, "%s: %s\n", ident, error->message);
	return pb_error_exit_code(error);
}

gboolean
pb_program_options(GOptionContext *ctx, int *argc, char ***argv)
{
	g_autoptr(GError) error = NULL;

	if (g_option_context_parse(ctx, argc, argv, &error))
		return TRUE;
	fprintf(stderr, "%s: %s\n", g_get_prgname(), error->message);
	return FALSE;
}
