/* mailuser - manage accounts (see DESIGN.md: mailuser [-c FILE]
 * add|passwd|del|list [ADDRESS]) and DKIM keys (README "DKIM":
 * dkim-keygen [--ed25519] [--bits N] [--out FILE] DOMAIN SELECTOR,
 * dkim-verify < MESSAGE). The password is read from stdin when it is not
 * a terminal, else asked twice. Exit codes per sysexits.h; dkim-verify
 * exits 1 when not every signature passes (or there is none). */
#include "accounts.h"
#include "admin.h"
#include "error.h"
#include "program.h"

#include <stdio.h>
#include <string.h>

static gboolean ed25519;
static gint bits = 2048;
static char *out_file;

/* The DKIM subcommands; -1: ARGV is not one of them. */
static int
dkim(const PbConfig *cfg, int argc, char **argv, GError **error)
{
	g_autoptr(GString) out = g_string_new(NULL);
	gboolean pass = FALSE, ok;

	if (strcmp(argv[1], "dkim-keygen") == 0 && argc == 4)
		ok = pb_admin_dkim_keygen(cfg, ed25519, (guint)MAX(bits, 0),
		                          argv[2], argv[3], out_file, out,
		                          error);
	else if (strcmp(argv[1], "dkim-verify") == 0 && argc == 2)
		ok = pb_admin_dkim_verify(cfg, 0, out, &pass, error);
	else
		return -1;
	if (!ok)
		return pb_program_fail("mailuser", *error);
	fputs(out->str, stdout);
	if (fflush(stdout) != 0)
		return PB_EX_IOERR;
	return strcmp(argv[1], "dkim-verify") == 0 && !pass ? 1 : PB_EX_OK;
}

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf,
	     "Configuration file", "FILE"},
	    {"ed25519", 0, 0, G_OPTION_ARG_NONE, &ed25519,
	     "dkim-keygen: an Ed25519 key (else RSA)", NULL},
	    {"bits", 0, 0, G_OPTION_ARG_INT, &bits,
	     "dkim-keygen: RSA key size (default 2048)", "N"},
	    {"out", 0, 0, G_OPTION_ARG_FILENAME, &out_file,
	     "dkim-keygen: the key file to write", "FILE"},
	    {NULL}};
	g_autoptr(GOptionContext) ctx =
	    g_option_context_new("add|passwd|del|list [ADDRESS] | dkim-keygen "
	                         "DOMAIN SELECTOR | dkim-verify");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	gboolean is_dkim;
	int rc;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	is_dkim = argc >= 2 && g_str_has_prefix(argv[1], "dkim-");
	if (argc < 2 || argc > 4 ||
	    (is_dkim ? argc != (strcmp(argv[1], "dkim-keygen") == 0 ? 4 : 2)
	             : (argc == 4 ||
	                (strcmp(argv[1], "list") == 0) != (argc == 2)))) {
		g_printerr(
		    "mailuser: usage: mailuser [-c FILE] "
		    "add|passwd|del ADDRESS | list | dkim-keygen "
		    "[--ed25519] [--bits N] [--out FILE] DOMAIN SELECTOR "
		    "| dkim-verify < MESSAGE\n");
		return PB_EX_USAGE;
	}
	/* keygen keeps root: the key goes beside the configuration, which
	 * [main] user cannot write, and is handed to that user */
	cfg = pb_program_start("mailuser", conf, TRUE,
	                       is_dkim && strcmp(argv[1], "dkim-keygen") == 0,
	                       &error);
	if (cfg == NULL)
		return pb_program_fail("mailuser", error);
	if (is_dkim && (rc = dkim(cfg, argc, argv, &error)) >= 0)
		return rc;
	if (is_dkim) {
		g_printerr("mailuser: unknown command %s\n", argv[1]);
		return PB_EX_USAGE;
	}
	if (!pb_accounts_manage(cfg, argv[1], argc == 3 ? argv[2] : NULL,
	                        &error))
		return pb_program_fail("mailuser", error);
	return PB_EX_OK;
}
