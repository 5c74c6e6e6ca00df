/* test-config.c - the configuration loader and its parsers. */
#include "config.h"
#include "error.h"

#include <arpa/inet.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static PbConfig *
load(const char *text, GError **error)
{
	return pb_config_load_data(text, strlen(text), "/etc/pb/test.conf",
	                           "/etc/pb", error);
}

static void
test_defaults(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg =
	    load("[main]\ndomains = Example.ORG\n", &error);

	g_assert_no_error(error);
	g_assert_cmpstr(cfg->domains[0], ==, "example.org");
	g_assert_null(cfg->domains[1]);
	g_assert_cmpstr(cfg->queue, ==, "/etc/pb/queue");
	g_assert_cmpstr(cfg->spool, ==, "/etc/pb/spool");
	g_assert_cmpstr(cfg->log, ==, "syslog");
	g_assert_cmpstr(cfg->user, ==, "pillarbox");
	g_assert_cmpstr(cfg->recipient_delimiter, ==, "+");
	g_assert_false(cfg->delivery_queue);
	g_assert_cmpuint(cfg->max_message_size, ==, 50 * 1024 * 1024);
	g_assert_cmpuint(cfg->max_recipients, ==, 100);
	g_assert_cmpint(cfg->smtpd_timeout, ==, 300);
	g_assert_cmpint(cfg->retry_interval, ==, 900);
	g_assert_cmpint(cfg->max_backoff, ==, 7200);
	g_assert_cmpint(cfg->warn_after, ==, 4 * 3600);
	g_assert_cmpint(cfg->bounce_after, ==, 5 * 86400);
	g_assert_cmpuint(cfg->parallel, ==, 20);
	g_assert_cmpuint(cfg->port, ==, 25);
	g_assert_null(cfg->nameservers[0]);
	g_assert_cmpint(cfg->pop3d_timeout, ==, 600);
	g_assert_null(cfg->tls_certificate);
	g_assert_false(cfg->plaintext_auth);
	g_assert_false(cfg->trust_local_socket);
	g_assert_nonnull(cfg->hostname);
	g_assert_cmpstr(cfg->helo, ==, cfg->hostname);
	g_assert_true(pb_cidr_list_match(cfg->relay_networks, "127.0.0.1"));
	g_assert_true(pb_cidr_list_match(cfg->relay_networks, "::1"));
	g_assert_false(pb_cidr_list_match(cfg->relay_networks, "192.0.2.1"));
}

/* The example of DESIGN.md, word for word in substance. */
static const char full[] = "[main]\n"
                           "# a comment\n"
                           "hostname = mail.example.org\n"
                           "domains = example.org, example.net\n"
                           "queue = /var/spool/pillarbox/queue\n"
                           "spool = spool\n"
                           "accounts = accounts\n"
                           "aliases = aliases\n"
                           "log = maillog\n"
                           "delivery = queue\n"
                           "user = mailer\n"
                           "recipient_delimiter = -\n"
                           "[smtpd]\n"
                           "relay_networks = 10.0.0.0/8, 2001:db8::/32\n"
                           "max_message_size = 10K\n"
                           "max_recipients = 5\n"
                           "max_connections = 7\n"
                           "timeout = 30s\n"
                           "trust_local_socket = yes\n"
                           "[delivery]\n"
                           "retry_interval = 1m\n"
                           "max_backoff = 1h\n"
                           "warn_after = 2h\n"
                           "bounce_after = 1d\n"
                           "parallel = 3\n"
                           "nameservers = 127.0.0.1:5353, ::1, [::1]:53\n"
                           "port = 2525\n"
                           "helo = out.example.org\n"
                           "require_tls = bank.example, Example.NET\n"
                           "require_verified_tls = *\n"
                           "tls_ca_file = ca.pem\n"
                           "[routes]\n"
                           "example.com = 127.0.0.1:2526\n"
                           "Example.NET = [::1]:25\n"
                           "* = smarthost.example.org\n"
                           "[tls]\n"
                           "certificate = cert.pem\n"
                           "key = /etc/ssl/key.pem\n"
                           "plaintext_auth = yes\n"
                           "[pop3d]\n"
                           "timeout = 15m\n";

static void
test_full(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = load(full, &error);
	const PbRoute *r;

	g_assert_no_error(error);
	g_assert_cmpstr(cfg->hostname, ==, "mail.example.org");
	g_assert_cmpstr(cfg->domains[1], ==, "example.net");
	g_assert_cmpstr(cfg->queue, ==, "/var/spool/pillarbox/queue");
	g_assert_cmpstr(cfg->spool, ==, "/etc/pb/spool");
	g_assert_cmpstr(cfg->log, ==, "/etc/pb/maillog");
	g_assert_true(cfg->delivery_queue);
	g_assert_cmpstr(cfg->user, ==, "mailer");
	g_assert_cmpstr(cfg->recipient_delimiter, ==, "-");
	g_assert_cmpuint(cfg->relay_networks->len, ==, 2);
	g_assert_true(pb_cidr_list_match(cfg->relay_networks, "10.1.2.3"));
	g_assert_true(
	    pb_cidr_list_match(cfg->relay_networks, "::ffff:10.1.2.3"));
	g_assert_true(pb_cidr_list_match(cfg->relay_networks, "2001:db8:1::5"));
	g_assert_false(pb_cidr_list_match(cfg->relay_networks, "127.0.0.1"));
	g_assert_cmpuint(cfg->max_message_size, ==, 10240);
	g_assert_cmpuint(cfg->max_recipients, ==, 5);
	g_assert_cmpuint(cfg->max_connections, ==, 7);
	g_assert_cmpint(cfg->smtpd_timeout, ==, 30);
	g_assert_cmpint(cfg->bounce_after, ==, 86400);
	g_assert_cmpuint(cfg->parallel, ==, 3);
	g_assert_cmpstr(cfg->nameservers[0], ==, "127.0.0.1:5353");
	g_assert_cmpstr(cfg->nameservers[2], ==, "[::1]:53");
	g_assert_cmpuint(cfg->port, ==, 2525);
	g_assert_cmpstr(cfg->helo, ==, "out.example.org");
	g_assert_true(pb_config_domain_listed(cfg->require_tls, "example.net"));
	g_assert_false(
	    pb_config_domain_listed(cfg->require_tls, "example.org"));
	g_assert_true(
	    pb_config_domain_listed(cfg->require_verified_tls, "any.test"));
	g_assert_cmpstr(cfg->tls_ca_file, ==, "/etc/pb/ca.pem");
	r = pb_config_route(cfg, "EXAMPLE.com");
	g_assert_nonnull(r);
	g_assert_cmpstr(r->host, ==, "127.0.0.1");
	g_assert_cmpuint(r->port, ==, 2526);
	r = pb_config_route(cfg, "example.net");
	g_assert_cmpstr(r->host, ==, "::1");
	r = pb_config_route(cfg, "anything.test");
	g_assert_cmpstr(r->host, ==, "smarthost.example.org");
	g_assert_cmpuint(r->port, ==, 0);
	g_assert_cmpstr(cfg->tls_certificate, ==, "/etc/pb/cert.pem");
	g_assert_cmpstr(cfg->tls_key, ==, "/etc/ssl/key.pem");
	g_assert_true(cfg->plaintext_auth);
	g_assert_true(cfg->trust_local_socket);
	g_assert_cmpint(cfg->pop3d_timeout, ==, 900);
	g_assert_true(pb_config_is_local_domain(cfg, "EXAMPLE.NET"));
	g_assert_false(pb_config_is_local_domain(cfg, "example.com"));
}

static void
test_no_route(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg =
	    load("[routes]\nexample.com = relay.example.org\n", &error);

	g_assert_no_error(error);
	g_assert_nonnull(pb_config_route(cfg, "example.com"));
	g_assert_null(pb_config_route(cfg, "example.net"));
}

/* [dkim]: off by default; paths made absolute, names lower-cased, the
 * Ed25519 selector derived. */
static void
test_dkim(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) off = load("", &error);
	g_autoptr(PbConfig) cfg = load("[dkim]\nselector = S2026\n"
	                               "key = dkim/rsa.pem\n"
	                               "ed25519_key = /k/ed.pem\n"
	                               "headers = From, Subject\n",
	                               &error);

	g_assert_no_error(error);
	g_assert_null(off->dkim_selector);
	g_assert_cmpstr(cfg->dkim_selector, ==, "s2026");
	g_assert_cmpstr(cfg->dkim_ed25519_selector, ==, "s2026-ed25519");
	g_assert_cmpstr(cfg->dkim_key, ==, "/etc/pb/dkim/rsa.pem");
	g_assert_cmpstr(cfg->dkim_ed25519_key, ==, "/k/ed.pem");
	g_assert_cmpstr(cfg->dkim_headers[1], ==, "subject");
	g_assert_null(cfg->dkim_domains[0]);
}

/* [auth]: every check and refusal on by default. */
static void
test_auth(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) dflt = load("", &error);
	g_autoptr(PbConfig) cfg = load("[auth]\nchecks = no\n"
	                               "dmarc_reject = no\n"
	                               "spoofed_local_from = mark\n",
	                               &error);

	g_assert_no_error(error);
	g_assert_true(dflt->auth_checks && dflt->auth_dmarc_reject &&
	              dflt->auth_spoof_reject);
	g_assert_false(cfg->auth_checks || cfg->auth_dmarc_reject ||
	               cfg->auth_spoof_reject);
}

/* Each bad file and the start of the message it must give. */
static const struct {
	const char *text;
	const char *message;
} bad_files[] = {
    {"[main]\nfoo = 1\n", "/etc/pb/test.conf:2: [main] foo: unknown key"},
    {"[mian]\n", "/etc/pb/test.conf:1: [mian]: unknown group"},
    {"[main]\n\nuser = a\nuser = b\n",
     "/etc/pb/test.conf:4: [main] user: key given twice"},
    {"user = a\n", "/etc/pb/test.conf:1: user: key outside any [group]"},
    {"[main]\njunk\n", "/etc/pb/test.conf:2: not a comment"},
    {"[smtpd]\nmax_recipients = 1001\n",
     "/etc/pb/test.conf:2: [smtpd] max_recipients: more than 1000"},
    {"[smtpd]\ntimeout = 5x\n",
     "/etc/pb/test.conf:2: [smtpd] timeout: not a duration"},
    {"[smtpd]\ntimeout = 0\n",
     "/etc/pb/test.conf:2: [smtpd] timeout: not a duration"},
    {"[smtpd]\nmax_message_size = -1\n",
     "/etc/pb/test.conf:2: [smtpd] max_message_size: not a size"},
    {"[smtpd]\nmax_recipients = many\n",
     "/etc/pb/test.conf:2: [smtpd] max_recipients: not a positive count"},
    {"[smtpd]\nrelay_networks = 10.0.0.0/33\n",
     "/etc/pb/test.conf:2: [smtpd] relay_networks: not a network"},
    {"[main]\ndomains = *\n",
     "/etc/pb/test.conf:2: [main] domains: not a domain name"},
    {"[main]\ndomains = example.org, bad_domain\n",
     "/etc/pb/test.conf:2: [main] domains: not a domain name"},
    {"[main]\ndelivery = later\n",
     "/etc/pb/test.conf:2: [main] delivery: background or queue"},
    {"[main]\nrecipient_delimiter = ab\n",
     "/etc/pb/test.conf:2: [main] recipient_delimiter:"},
    {"[main]\nuser =\n", "/etc/pb/test.conf:2: [main] user: must not"},
    {"[delivery]\nport = 70000\n",
     "/etc/pb/test.conf:2: [delivery] port: not a port number"},
    {"[delivery]\nnameservers = dns.example.org\n",
     "/etc/pb/test.conf:2: [delivery] nameservers: not ADDRESS[:PORT]"},
    {"[delivery]\nmax_backoff = 1m\n",
     "/etc/pb/test.conf:2: [delivery] max_backoff: shorter"},
    {"[routes]\nexample.com = host:port\n",
     "/etc/pb/test.conf:2: [routes] example.com: not a port number"},
    {"[routes]\nexample.com = [not-v6]:25\n",
     "/etc/pb/test.conf:2: [routes] example.com: not an IPv6"},
    {"[tls]\ncertificate = c.pem\n",
     "/etc/pb/test.conf:2: [tls] certificate: certificate and key"},
    {"[tls]\nplaintext_auth = maybe\n",
     "/etc/pb/test.conf:2: [tls] plaintext_auth: yes or no"},
    {"[dkim]\nselector = s1\n",
     "/etc/pb/test.conf:2: [dkim] selector: needs key"},
    {"[dkim]\nkey = k.pem\n",
     "/etc/pb/test.conf:2: [dkim] key: a key needs a selector"},
    {"[dkim]\nselector = bad_sel\n",
     "/etc/pb/test.conf:2: [dkim] selector: not a selector"},
    {"[dkim]\nselector = s\nkey = k\nheaders = to, subject\n",
     "/etc/pb/test.conf:4: [dkim] headers: must include From"},
    {"[dkim]\nheaders = from, dkim-signature\n",
     "/etc/pb/test.conf:2: [dkim] headers: not a header field name"},
    {"[dkim]\nselector = s\nkey = k\ndomains = example.org, *\n",
     "/etc/pb/test.conf:4: [dkim] domains: domains we hold keys for"},
    {"[auth]\n\nspoofed_local_from = drop\n",
     "/etc/pb/test.conf:3: [auth] spoofed_local_from: reject or mark"},
    {"[auth]\ndmarc_reject = maybe\n",
     "/etc/pb/test.conf:2: [auth] dmarc_reject: yes or no"},
    {"[dkim]\nselector = s\nkey = k\ned25519_selector = s\n",
     "/etc/pb/test.conf:4: [dkim] ed25519_selector: must differ"},
    /* found by fuzz-config: GKeyFile set its error twice (a
     * GLib-WARNING) for a bad escape and a backslash at the end */
    {"[main]\nhostname = x.or\\x.or\\\n",
     "/etc/pb/test.conf:2: [main] hostname: a backslash ends the value"},
    {"[main]\nuser = a\\\\\\\n",
     "/etc/pb/test.conf:2: [main] user: a backslash ends the value"},
};

static void
test_bad(void)
{
	for (gsize i = 0; i < G_N_ELEMENTS(bad_files); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(PbConfig) cfg = load(bad_files[i].text, &error);

		g_assert_null(cfg);
		g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
		if (!g_str_has_prefix(error->message, bad_files[i].message))
			g_error("for %s got: %s", bad_files[i].text,
			        error->message);
	}
}

static void
test_duration(void)
{
	gint64 s = -1;

	g_assert_true(pb_parse_duration("45", &s));
	g_assert_cmpint(s, ==, 45);
	g_assert_true(pb_parse_duration("15m", &s));
	g_assert_cmpint(s, ==, 900);
	g_assert_true(pb_parse_duration("2H", &s));
	g_assert_cmpint(s, ==, 7200);
	g_assert_true(pb_parse_duration("5d", &s));
	g_assert_cmpint(s, ==, 432000);
	g_assert_false(pb_parse_duration("", &s));
	g_assert_false(pb_parse_duration("m", &s));
	g_assert_false(pb_parse_duration("1w", &s));
	g_assert_false(pb_parse_duration("1m2", &s));
	g_assert_false(pb_parse_duration("-5", &s));
	g_assert_false(pb_parse_duration("99999999999999999999", &s));
	g_assert_false(pb_parse_duration("100000d", &s));
}

static void
test_size(void)
{
	guint64 b = 0;

	g_assert_true(pb_parse_size("512", &b));
	g_assert_cmpuint(b, ==, 512);
	g_assert_true(pb_parse_size("10k", &b));
	g_assert_cmpuint(b, ==, 10240);
	g_assert_true(pb_parse_size("50M", &b));
	g_assert_cmpuint(b, ==, 52428800);
	g_assert_true(pb_parse_size("2G", &b));
	g_assert_cmpuint(b, ==, 2147483648u);
	g_assert_false(pb_parse_size("2T", &b));
	g_assert_false(pb_parse_size("0", &b));
	g_assert_false(pb_parse_size("M", &b));
	g_assert_false(pb_parse_size("99999999999G", &b));
}

static void
test_cidr(void)
{
	PbCidr c;
	g_autoptr(GArray) nets = g_array_new(FALSE, TRUE, sizeof(PbCidr));

	g_assert_true(pb_cidr_parse("192.0.2.0/25", &c));
	g_assert_cmpint(c.family, ==, AF_INET);
	g_assert_cmpuint(c.prefix, ==, 25);
	g_array_append_val(nets, c);
	g_assert_true(pb_cidr_parse("2001:db8::1", &c));
	g_assert_cmpuint(c.prefix, ==, 128);
	g_array_append_val(nets, c);
	g_assert_true(pb_cidr_list_match(nets, "192.0.2.127"));
	g_assert_false(pb_cidr_list_match(nets, "192.0.2.128"));
	g_assert_true(pb_cidr_list_match(nets, "::ffff:192.0.2.1"));
	g_assert_true(pb_cidr_list_match(nets, "2001:db8::1"));
	g_assert_false(pb_cidr_list_match(nets, "2001:db8::2"));
	g_assert_false(pb_cidr_list_match(nets, "not an address"));
	g_assert_false(pb_cidr_parse("192.0.2.0/", &c));
	g_assert_false(pb_cidr_parse("192.0.2.0/x", &c));
	g_assert_false(pb_cidr_parse("::/129", &c));
	g_assert_false(pb_cidr_parse("300.0.0.1", &c));
	g_assert_true(pb_cidr_parse("0.0.0.0/0", &c));
}

static void
test_load_file(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_dir_make_tmp("pbconf-XXXXXX", &error);
	g_autofree char *path = g_build_filename(dir, "p.conf", NULL);
	g_autofree char *queue = g_build_filename(dir, "q", NULL);
	g_autoptr(PbConfig) cfg = NULL;
	g_autoptr(PbConfig) missing = NULL;

	g_assert_no_error(error);
	g_assert_true(
	    g_file_set_contents(path, "[main]\nqueue = q\n", -1, &error));
	g_setenv("PILLARBOX_CONF", path, TRUE);
	cfg = pb_config_load(NULL, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(cfg->queue, ==, queue);
	g_assert_cmpstr(cfg->path, ==, path);
	g_unsetenv("PILLARBOX_CONF");
	g_assert_cmpint(g_unlink(path), ==, 0);
	missing = pb_config_load(path, &error);
	g_assert_null(missing);
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/* Refused by pb_config_load_trusted with OWNER, the message saying so. */
static void
assert_refused(const char *path, uid_t owner, const char *why)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = pb_config_load_trusted(path, owner, &error);

	g_assert_null(cfg);
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	if (strstr(error->message, why) == NULL)
		g_error("%s: '%s' lacks '%s'", path, error->message, why);
}

static void
test_load_trusted(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_dir_make_tmp("pbtrust-XXXXXX", &error);
	g_autofree char *path = g_build_filename(dir, "p.conf", NULL);
	g_autofree char *link = g_build_filename(dir, "link.conf", NULL);
	g_autofree char *fifo = g_build_filename(dir, "fifo.conf", NULL);
	g_autoptr(PbConfig) cfg = NULL;
	uid_t me = geteuid();

	g_assert_no_error(error);
	g_assert_true(
	    g_file_set_contents(path, "[main]\nqueue = q\n", -1, &error));
	g_assert_cmpint(g_chmod(path, 0644), ==, 0);
	cfg = pb_config_load_trusted(path, me, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(cfg->path, ==, path);
	/* never the environment, never empty or relative */
	g_setenv("PILLARBOX_CONF", path, TRUE);
	assert_refused("", me, "empty");
	assert_refused("p.conf", me, "relative");
	g_assert_null(pb_config_load("", &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_clear_error(&error);
	g_unsetenv("PILLARBOX_CONF");
	/* writable by others: the file, or a folder above it */
	g_assert_cmpint(g_chmod(path, 0664), ==, 0);
	assert_refused(path, me, "refused");
	g_assert_cmpint(g_chmod(path, 0644), ==, 0);
	g_assert_cmpint(g_chmod(dir, 0777), ==, 0);
	assert_refused(path, me, "the folder");
	g_assert_cmpint(g_chmod(dir, 0700), ==, 0);
	/* not a regular file */
	g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
	assert_refused(fifo, me, "not a regular file");
	/* owned by somebody else than root and OWNER */
	if (me == 0) {
		g_assert_cmpint(chown(path, 4242, 4242), ==, 0);
		assert_refused(path, 0, "refused");
		assert_refused(path, 4343, "refused");
		g_clear_pointer(&cfg, pb_config_free);
		cfg = pb_config_load_trusted(path, 4242, &error);
		g_assert_no_error(error);
		g_assert_cmpint(chown(dir, 4242, 4242), ==, 0);
		assert_refused(path, 4343, "the folder");
	}
	/* a symlink is followed to the file it names, which is checked */
	g_assert_cmpint(symlink(path, link), ==, 0);
	g_clear_pointer(&cfg, pb_config_free);
	cfg = pb_config_load_trusted(link, me == 0 ? 4242 : me, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(cfg->path, ==, path);
	g_assert_cmpint(g_unlink(link), ==, 0);
	g_assert_cmpint(g_unlink(fifo), ==, 0);
	g_assert_cmpint(g_unlink(path), ==, 0);
	g_assert_cmpint(g_rmdir(dir), ==, 0);
}

static void
test_endpoint(void)
{
	struct sockaddr_storage sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;

	g_assert_true(pb_parse_endpoint("[::1]", 53, &sa));
	g_assert_cmpint(sa.ss_family, ==, AF_INET6);
	g_assert_cmpuint(ntohs(in6->sin6_port), ==, 53);
	g_assert_true(pb_parse_endpoint("[192.0.2.1]:25", 53, &sa));
	g_assert_cmpint(sa.ss_family, ==, AF_INET);
	g_assert_false(pb_parse_endpoint("[::1]x", 53, &sa));
	g_assert_false(pb_parse_endpoint("192.0.2.1:65536", 53, &sa));
	g_assert_false(pb_parse_endpoint("192.0.2.1:", 53, &sa));
	g_assert_false(pb_parse_endpoint("", 53, &sa));
	g_assert_false(pb_parse_endpoint("[ns.example.org]:53", 53, &sa));
}

/* Tables: lines without their ends, nothing for a missing file, and a
 * clear error for one too large (refused at the bound, not loaded), with
 * a NUL, or unreadable. */
static void
test_table_read(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_dir_make_tmp("pbtable-XXXXXX", &error);
	g_autofree char *path = g_build_filename(dir, "t", NULL);
	g_autofree char *big = g_malloc(16 * 1024 * 1024 + 1);
	char **lines;

	g_assert_no_error(error);
	lines = pb_table_read(path, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(g_strv_length(lines), ==, 0);
	g_strfreev(lines);

	g_assert_true(g_file_set_contents(path, "a\n\nb c\n", -1, NULL));
	lines = pb_table_read(path, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(g_strv_length(lines), ==, 3);
	g_assert_cmpstr(lines[0], ==, "a");
	g_assert_cmpstr(lines[1], ==, "");
	g_assert_cmpstr(lines[2], ==, "b c");
	g_strfreev(lines);

	g_assert_true(g_file_set_contents(path, "last line", -1, NULL));
	lines = pb_table_read(path, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(g_strv_length(lines), ==, 1);
	g_assert_cmpstr(lines[0], ==, "last line");
	g_strfreev(lines);

	g_assert_true(g_file_set_contents(path, "a\0b\n", 4, NULL));
	g_assert_null(pb_table_read(path, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_clear_error(&error);

	memset(big, 'x', 16 * 1024 * 1024 + 1);
	g_assert_true(
	    g_file_set_contents(path, big, 16 * 1024 * 1024 + 1, NULL));
	g_assert_null(pb_table_read(path, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_assert_nonnull(strstr(error->message, "too large"));
	g_clear_error(&error);
	g_assert_cmpint(g_unlink(path), ==, 0);

	/* a folder where the file should be: not a regular file */
	g_assert_cmpint(g_mkdir(path, 0700), ==, 0);
	g_assert_null(pb_table_read(path, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_clear_error(&error);
	g_assert_cmpint(g_rmdir(path), ==, 0);

	/* a symlink is not followed (whoever can write the folder could
	 * point it at a file only the mail user may read) */
	g_assert_cmpint(symlink("/etc/passwd", path), ==, 0);
	g_assert_null(pb_table_read(path, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_assert_nonnull(strstr(error->message, "symbolic link"));
	g_clear_error(&error);
	g_assert_cmpint(g_unlink(path), ==, 0);
	g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/* [imapd]: defaults, values, the 30-minute floor of the autologout
 * timer (RFC 3501 5.4), and max_message_size following [smtpd]'s. */
static void
test_imapd(void)
{
	static const struct {
		const char *text;
		const char *message;
	} bad[] = {
	    {"[imapd]\ntimeout = 29m\n",
	     "/etc/pb/test.conf:2: [imapd] timeout: shorter than 30m"},
	    {"[imapd]\ntimeout = 1799\n", "/etc/pb/test.conf:2: [imapd] timeout"},
	    {"[imapd]\nmax_connections = 0\n",
	     "/etc/pb/test.conf:2: [imapd] max_connections: not a positive"},
	    {"[imapd]\nmax_user_connections = 0\n",
	     "/etc/pb/test.conf:2: [imapd] max_user_connections: not a "
	     "positive"},
	    {"[imapd]\nmax_user_connections = x\n",
	     "/etc/pb/test.conf:2: [imapd] max_user_connections"},
	    {"[imapd]\nmax_message_size = 0\n",
	     "/etc/pb/test.conf:2: [imapd] max_message_size: not a size"},
	    {"[imapd]\nmax_message_size = 5T\n",
	     "/etc/pb/test.conf:2: [imapd] max_message_size: not a size"},
	    {"[imapd]\nmax_connections_per_ip = -1\n",
	     "/etc/pb/test.conf:2: [imapd] max_connections_per_ip"},
	    {"[imapd]\nidle = 5m\n",
	     "/etc/pb/test.conf:2: [imapd] idle: unknown key"},
	};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) dflt = load("", &error);
	g_autoptr(PbConfig) set = NULL;
	g_autoptr(PbConfig) follow = NULL;

	g_assert_no_error(error);
	g_assert_cmpint(dflt->imapd_timeout, ==, 30 * 60);
	g_assert_cmpuint(dflt->imapd_max_connections, ==, 100);
	g_assert_cmpuint(dflt->imapd_max_user_connections, ==, 20);
	g_assert_cmpuint(dflt->imapd_max_connections_per_ip, ==, 10);
	g_assert_cmpuint(dflt->imapd_max_message_size, ==, 50 * 1024 * 1024);

	set = load("[imapd]\ntimeout = 2h\nmax_connections = 7\n"
	           "max_user_connections = 3\nmax_message_size = 10M\n"
	           "max_connections_per_ip = 0\n",
	           &error);
	g_assert_no_error(error);
	g_assert_cmpint(set->imapd_timeout, ==, 7200);
	g_assert_cmpuint(set->imapd_max_connections, ==, 7);
	g_assert_cmpuint(set->imapd_max_user_connections, ==, 3);
	g_assert_cmpuint(set->imapd_max_message_size, ==, 10 * 1024 * 1024);
	g_assert_cmpuint(set->imapd_max_connections_per_ip, ==, 0);

	/* empty (as in DESIGN.md's example): [smtpd]'s, wherever it is set */
	follow = load("[imapd]\nmax_message_size =\ntimeout = 30m\n"
	              "[smtpd]\nmax_message_size = 1K\n",
	              &error);
	g_assert_no_error(error);
	g_assert_cmpuint(follow->imapd_max_message_size, ==, 1024);
	g_assert_cmpint(follow->imapd_timeout, ==, 1800);

	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autoptr(GError) e = NULL;
		g_autoptr(PbConfig) cfg = load(bad[i].text, &e);

		g_assert_null(cfg);
		g_assert_error(e, PB_ERROR, PB_ERROR_CONFIG);
		if (!g_str_has_prefix(e->message, bad[i].message))
			g_error("for %s got: %s", bad[i].text, e->message);
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/config/defaults", test_defaults);
	g_test_add_func("/config/full", test_full);
	g_test_add_func("/config/no-route", test_no_route);
	g_test_add_func("/config/bad", test_bad);
	g_test_add_func("/config/duration", test_duration);
	g_test_add_func("/config/size", test_size);
	g_test_add_func("/config/cidr", test_cidr);
	g_test_add_func("/config/load-file", test_load_file);
	g_test_add_func("/config/load-trusted", test_load_trusted);
	g_test_add_func("/config/table-read", test_table_read);
	g_test_add_func("/config/endpoint", test_endpoint);
	g_test_add_func("/config/imapd", test_imapd);
	g_test_add_func("/config/dkim", test_dkim);
	g_test_add_func("/config/auth", test_auth);
	return g_test_run();
}
