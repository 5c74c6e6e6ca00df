/* pop3d - the POP3 server (see DESIGN.md: pop3d [-c FILE] [--listen
 * ADDR:PORT]... [--tls]). */
#include "error.h"
#include "listener.h"
#include "pop3-serve.h"
#include "privs.h"
#include "program.h"
#include "tls.h"

static gboolean
drop(void *ctx, GError **error)
{
	return pb_privs_drop(((PbPop3Serve *)ctx)->cfg->user, error);
}

static void
serve(void *ctx, int rfd, int wfd, const PbPeer *peer)
{
	pb_pop3_serve(ctx, rfd, wfd, peer);
}

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	g_auto(GStrv) listen = NULL;
	gboolean tls = FALSE;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf,
	     "Configuration file", "FILE"},
	    {"listen", 0, 0, G_OPTION_ARG_STRING_ARRAY, &listen,
	     "Bind and accept on ADDR:PORT or [IPv6]:PORT (repeatable)",
	     "ADDR:PORT"},
	    {"tls", 0, 0, G_OPTION_ARG_NONE, &tls, "Implicit TLS (port 995)",
	     NULL},
	    {NULL}};
	g_autoptr(GOptionContext) ctx = g_option_context_new("- POP3 server");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	g_autoptr(PbTlsServer) creds = NULL;
	PbPop3Serve how = {0};
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	if (argc > 1) {
		g_printerr("pop3d: unexpected argument %s\n", argv[1]);
		return PB_EX_USAGE;
	}
	cfg = pb_program_start("pop3d", conf, FALSE, TRUE, &error);
	if (cfg == NULL)
		return pb_program_fail("pop3d", error);
	/* the key is read before privileges are dropped */
	if ((tls || pb_tls_configured(cfg)) &&
	    (creds = pb_tls_server_new(cfg, &error)) == NULL)
		return pb_program_fail("pop3d", error);
	how.cfg = cfg;
	how.tls = creds;
	how.implicit_tls = tls;
	if (!pb_listener_run(listen, cfg->pop3d_max_connections, drop, serve,
	                     &how, &error))
		return pb_program_fail("pop3d", error);
	return 0;
}
