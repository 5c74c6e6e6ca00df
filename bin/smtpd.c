/* smtpd - the SMTP server (see DESIGN.md: smtpd [-c FILE] [--listen
 * ADDR:PORT]... [--submission] [--tls]). */
#include "error.h"
#include "listener.h"
#include "log.h"
#include "privs.h"
#include "program.h"
#include "smtp-serve.h"
#include "tls.h"

static gboolean
drop(void *ctx, GError **error)
{
	return pb_privs_drop(((PbSmtpServe *)ctx)->cfg->user, error);
}

static gboolean
serve(void *ctx, int rfd, int wfd, const PbPeer *peer)
{
	return pb_smtp_serve(ctx, rfd, wfd, peer);
}

int
main(int argc, char **argv)
{
	g_autofree char *conf = NULL;
	g_autofree char *busy = NULL;
	g_auto(GStrv) listen = NULL;
	gboolean submission = FALSE, tls = FALSE;
	GOptionEntry entries[] = {
	    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf,
	     "Configuration file", "FILE"},
	    /* taken as bytes (FILENAME): a STRING is converted from the
	     * locale's charset, iconv and a gconv mapping the listener
	     * would then carry into every fork */
	    {"listen", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &listen,
	     "Bind and accept on ADDR:PORT or [IPv6]:PORT (repeatable)",
	     "ADDR:PORT"},
	    {"submission", 0, 0, G_OPTION_ARG_NONE, &submission,
	     "Port 587 behaviour: AUTH before MAIL, the sender must be the "
	     "user's",
	     NULL},
	    {"tls", 0, 0, G_OPTION_ARG_NONE, &tls, "Implicit TLS (port 465)",
	     NULL},
	    {NULL}};
	g_autoptr(GOptionContext) ctx = g_option_context_new("- SMTP server");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	g_autoptr(PbTlsServer) creds = NULL;
	g_autoptr(PbDkimSigner) dkim = NULL;
	PbSmtpServe how = {0};
	PbListenLimits limits = {0};
	gboolean shielded;

	/* first: under inetd nothing may reach the client through stderr */
	shielded = pb_listener_shield_stderr();
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!pb_program_options(ctx, &argc, &argv))
		return PB_EX_USAGE;
	if (argc > 1) {
		g_printerr("smtpd: unexpected argument %s\n", argv[1]);
		return PB_EX_USAGE;
	}
	cfg = pb_program_start("smtpd", conf, FALSE, TRUE, &error);
	if (cfg == NULL)
		return pb_program_fail("smtpd", error);
	/* under inetd, stderr was the client: log to syslog instead */
	if (shielded && g_str_equal(cfg->log, "stderr"))
		(void)pb_log_open("smtpd", "syslog", NULL);
	/* the key is read before privileges are dropped */
	if ((tls || pb_tls_configured(cfg)) &&
	    (creds = pb_tls_server_new(cfg, pb_tls_load_for(tls, listen),
	                               &error)) == NULL)
		return pb_program_fail("smtpd", error);
	/* so is the DKIM key (parsed at the first signature) */
	if ((dkim = pb_dkim_signer_new(cfg, &error)) == NULL && error != NULL)
		return pb_program_fail("smtpd", error);
	how.cfg = cfg;
	how.tls = creds;
	how.dkim = dkim;
	how.implicit_tls = tls;
	how.submission = submission;
	limits.max_connections = cfg->max_connections;
	limits.max_per_ip = cfg->max_connections_per_ip;
	limits.max_use = cfg->smtpd_max_use;
	limits.max_idle = (guint)MIN(cfg->smtpd_max_idle, G_MAXUINT);
	limits.busy = busy = g_strdup_printf(
	    "421 4.7.0 %s Too many connections from your address\r\n",
	    cfg->hostname);
	if (!pb_listener_run(listen, &limits, drop, serve, &how, &error))
		return pb_program_fail("smtpd", error);
	return 0;
}
