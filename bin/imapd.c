/* imapd - the IMAP server (see DESIGN.md: imapd [-c FILE] [--listen
 * ADDR:PORT]... [--tls]). */
#include "error.h"
#include "imap-serve.h"
#include "listener.h"
#include "log.h"
#include "privs.h"
#include "program.h"
#include "tls.h"

static gboolean
drop(void *ctx, GError **error)
{
	return pb_privs_drop(((PbImapServe *)ctx)->cfg->user, error);
}

/* a session logs in: its process serves no one else (max_use) */
static gboolean
serve(void *ctx, int rfd, int wfd, const PbPeer *peer)
{
	pb_imap_serve(ctx, rfd, wfd, peer);
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
	    {"tls", 0, 0, G_OPTION_ARG_NONE, &tls, "Implicit TLS (port 993)",
	     NULL},
	    {NULL}};
	g_autoptr(GOptionContext) ctx = g_option_context_new("- IMAP server");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	g_autoptr(PbTlsServer) creds = NULL;
	PbImapServe how = {0};
	PbListenLimits limits = {
	    .busy = "* BYE [UNAVAILABLE] Too many connections from your "
	            "address\r\n"};
	gboolean shielded;

	/* first: under inetd nothing may reach the client through stderr */
	shielded = pb_listener_shield_stderr();
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	if (argc > 1) {
		g_printerr("imapd: unexpected argument %s\n", argv[1]);
		return PB_EX_USAGE;
	}
	cfg = pb_program_start("imapd", conf, FALSE, TRUE, &error);
	if (cfg == NULL)
		return pb_program_fail("imapd", error);
	/* under inetd, stderr was the client: log to syslog instead */
	if (shielded && g_str_equal(cfg->log, "stderr"))
		(void)pb_log_open("imapd", "syslog", NULL);
	/* the key is read before privileges are dropped */
	if ((tls || pb_tls_configured(cfg)) &&
	    (creds = pb_tls_server_new(cfg, pb_tls_load_for(tls, listen),
	                               &error)) == NULL)
		return pb_program_fail("imapd", error);
	how.cfg = cfg;
	how.tls = creds;
	how.implicit_tls = tls;
	limits.max_connections = cfg->imapd_max_connections;
	limits.max_per_ip = cfg->imapd_max_connections_per_ip;
	if (!pb_listener_run(listen, &limits, drop, serve, &how, &error))
		return pb_program_fail("imapd", error);
	return 0;
}
