/* smtpd - the SMTP server (see DESIGN.md: smtpd [-c FILE] [--listen
 * ADDR:PORT]... [--submission] [--tls]). */
#include "error.h"
#include "listener.h"
#include "privs.h"
#include "program.h"
#include "smtp-serve.h"

static gboolean
drop(void *ctx, GError **error)
{
	return pb_privs_drop(((PbConfig *)ctx)->user, error);
}

static void
serve(void *ctx, int rfd, int wfd, const PbPeer *peer)
{
	pb_smtp_serve(ctx, rfd, wfd, peer);
}

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	g_auto(GStrv) listen = NULL;
	gboolean submission = FALSE, tls = FALSE;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf,
	     "Configuration file", "FILE"},
	    {"listen", 0, 0, G_OPTION_ARG_STRING_ARRAY, &listen,
	     "Bind and accept on ADDR:PORT or [IPv6]:PORT (repeatable)",
	     "ADDR:PORT"},
	    {"submission", 0, 0, G_OPTION_ARG_NONE, &submission,
	     "Port 587 behaviour: AUTH before MAIL", NULL},
	    {"tls", 0, 0, G_OPTION_ARG_NONE, &tls, "Implicit TLS (port 465)",
	     NULL},
	    {NULL}};
	g_autoptr(GOptionContext) ctx = g_option_context_new("- SMTP server");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	if (submission || tls) {
		g_set_error(&error, PB_ERROR, PB_ERROR_CONFIG,
			    "--submission and --tls need TLS and AUTH, which "
			    "this version does not have yet");
		return pb_program_fail("smtpd", error);
	}
	cfg = pb_program_start("smtpd", conf, FALSE, TRUE, &error);
	if (cfg == NULL ||
	    !pb_listener_run(listen, cfg->max_connections, drop, serve, cfg,
			     &error))
		return pb_program_fail("smtpd", error);
	return 0;
}
