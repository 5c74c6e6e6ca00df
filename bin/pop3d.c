/* pop3d - the POP3 server (see DESIGN.md: pop3d [-c FILE] [--listen
 * ADDR:PORT]... [--tls]). */
#include "error.h"
#include "listener.h"
#include "log.h"
#include "pop3-serve.h"
#include "privs.h"
#include "program.h"
#include "tls.h"

static gboolean
drop(void *ctx, GError **error)
{
	return pb_privs_drop(((PbPop3Serve *)ctx)->cfg->user, error);
}

/* a session logs in: its process serves no one else (max_use) */
static gboolean
serve(void *ctx, int rfd, int wfd, const PbPeer *peer)
{
	pb_pop3_serve(ctx, rfd, wfd, peer);
	return FALSE;
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
	    /* taken as bytes (FILENAME): a STRING is converted from the
	     * locale's charset, iconv and a gconv mapping the listener
	     * would then carry into every fork */
	    {"listen", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &listen,
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
	PbListenLimits limits = {
	    .busy =
	        "-ERR [SYS/TEMP] Too many connections from your address\r\n"};
	gboolean shielded;

	/* first: under inetd nothing may reach the client through stderr */
	shielded = pb_listener_shield_stderr();
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
	/* under inetd, stderr was the client: log to syslog instead */
	if (shielded && g_str_equal(cfg->log, "stderr"))
		(void)pb_log_open("pop3d", "syslog", NULL);
	/* the key is read before privileges are dropped */
	if ((tls || pb_tls_configured(cfg)) &&
	    (creds = pb_tls_server_new(cfg, pb_tls_load_for(tls, listen),
	                               &error)) == NULL)
		return pb_program_fail("pop3d", error);
	how.cfg = cfg;
	how.tls = creds;
	how.implicit_tls = tls;
	limits.max_connections = cfg->pop3d_max_connections;
	limits.max_per_ip = cfg->pop3d_max_connections_per_ip;
	if (!pb_listener_run(listen, &limits, drop, serve, &how, &error))
		return pb_program_fail("pop3d", error);
	return 0;
}
