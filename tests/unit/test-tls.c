/* test-tls.c - the TLS module over socketpairs: a server and a client
 * PbConn in two threads, line exchanges both ways, certificate checks,
 * the minimum version, close_notify, and the errors at load time and on
 * the wire (plain text, silence, hang-up). A CA and a server certificate
 * (cn and dns_name localhost) are made at test time with certtool. */
#include "conn.h"
#include "error.h"
#include "tls.h"

#include <gnutls/gnutls.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static char *dir;

static char *
path(const char *name)
{
	return g_build_filename(dir, name, NULL);
}

static void
certtool(const char *args)
{
	g_autofree char *cmd = g_strdup_printf(
	    "cd '%s' && certtool %s >/dev/null 2>&1", dir, args);

	g_assert_cmpint(system(cmd), ==, 0);
}

static void
put(const char *name, const char *text)
{
	g_autofree char *p = path(name);

	g_assert_true(g_file_set_contents(p, text, -1, NULL));
}

static void
make_certs(void)
{
	g_autofree char *srv = NULL, *ca = NULL, *chain = NULL;
	g_autofree char *srv_path = NULL, *ca_path = NULL;

	put("ca.tmpl", "cn = pillarbox test CA\nca\ncert_signing_key\n"
	               "expiration_days = 2\n");
	put("srv.tmpl", "cn = localhost\ndns_name = localhost\n"
	                "tls_www_server\nencryption_key\nsigning_key\n"
	                "expiration_days = 2\n");
	certtool("--generate-privkey --key-type=ecdsa --outfile ca.key");
	certtool("--generate-self-signed --load-privkey ca.key "
	         "--template ca.tmpl --outfile ca.pem");
	certtool("--generate-privkey --key-type=ecdsa --outfile srv.key");
	certtool("--generate-certificate --load-privkey srv.key "
	         "--load-ca-certificate ca.pem --load-ca-privkey ca.key "
	         "--template srv.tmpl --outfile srv.pem");
	certtool("--generate-privkey --key-type=ecdsa --password=secret "
	         "--outfile encrypted.key");
	/* an RSA server too: static RSA key exchange is possible with it */
	certtool("--generate-privkey --key-type=rsa --bits=2048 "
	         "--outfile rsa.key");
	certtool("--generate-certificate --load-privkey rsa.key "
	         "--load-ca-certificate ca.pem --load-ca-privkey ca.key "
	         "--template srv.tmpl --outfile rsa.pem");
	put("text.pem", "this is not PEM\n");
	/* a chain file, in order and out of order */
	srv_path = path("srv.pem");
	ca_path = path("ca.pem");
	g_assert_true(g_file_get_contents(srv_path, &srv, NULL, NULL));
	g_assert_true(g_file_get_contents(ca_path, &ca, NULL, NULL));
	chain = g_strconcat(srv, ca, NULL);
	put("chain.pem", chain);
	g_free(chain);
	chain = g_strconcat(ca, srv, NULL);
	put("unsorted.pem", chain);
}

/* the servers of the tests take turns with the two PbTlsLoad */
static PbTlsLoad next_load;

static PbTlsServer *
load_server(const char *cert)
{
	g_autofree char *c = path(cert);
	g_autofree char *k = path("srv.key");
	g_autoptr(GError) error = NULL;
	PbTlsLoad when = next_load++ % 2;
	PbTlsServer *srv = pb_tls_server_new_from_files(c, k, when, &error);

	g_assert_no_error(error);
	g_assert_nonnull(srv);
	return srv;
}

/* ---- the server thread ---- */

typedef enum {
	ECHO,    /* answers "echo: LINE" to each line until EOF */
	TWO,     /* sends two lines in two records, then closes */
	GOODBYE, /* sends one line, then closes */
} Mode;

typedef struct {
	int fd;
	PbTlsServer *srv;
	Mode mode;
	gboolean started;
	GError *error;
} Server;

/* Writes LINE; a failure is kept in S->error (the client may be gone:
 * the test decides whether that matters). */
static gboolean
server_say(Server *s, PbConn *conn, const char *line)
{
	return pb_conn_printf(conn, &s->error, "%s\r\n", line) &&
	       pb_conn_flush(conn, pb_deadline_in(5), &s->error);
}

static void
server_talk(Server *s, PbConn *conn)
{
	const char *line;
	gsize len;
	guint flags;

	if (s->mode == GOODBYE)
		(void)server_say(s, conn, "goodbye");
	if (s->mode == TWO)
		(void)(server_say(s, conn, "one") &&
		       server_say(s, conn, "two"));
	while (s->mode == ECHO &&
	       pb_conn_read_line(conn, &line, &len, &flags, pb_deadline_in(5),
	                         &s->error) &&
	       pb_conn_printf(conn, NULL, "echo: %.*s\r\n", (int)len, line) &&
	       pb_conn_flush(conn, pb_deadline_in(5), &s->error))
		;
}

static gpointer
serve(gpointer data)
{
	Server *s = data;
	g_autoptr(PbConn) conn = pb_conn_new(s->fd, s->fd);

	s->started =
	    pb_tls_server_start(conn, s->srv, pb_deadline_in(5), &s->error);
	if (s->started)
		server_talk(s, conn);
	return NULL;
}

/* A server in a thread on one end of a socketpair; *FD is the other. */
static GThread *
server_run(Server *s, PbTlsServer *srv, Mode mode, int *fd)
{
	int fds[2];

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
	*s = (Server){.fd = fds[1], .srv = srv, .mode = mode};
	*fd = fds[0];
	return g_thread_new("server", serve, s);
}

static void
server_join(Server *s, GThread *t, int fd)
{
	g_thread_join(t);
	close(fd);
	close(s->fd);
	g_clear_error(&s->error);
}

static char *
read_line(PbConn *conn, GError **error)
{
	const char *line;
	gsize len;
	guint flags;

	if (!pb_conn_read_line(conn, &line, &len, &flags, pb_deadline_in(5),
	                       error))
		return NULL;
	return g_strndup(line, len);
}

/* Client to an ECHO server: returns *VERIFIED, or FALSE with ERROR. */
static gboolean
client_echo(const char *cert, const char *name, const char *trust,
            gboolean require, gboolean *verified, GError **error)
{
	g_autoptr(PbTlsServer) srv = load_server(cert);
	g_autofree char *ca = trust ? path(trust) : NULL;
	g_autofree char *desc = NULL, *got = NULL;
	g_autoptr(PbConn) conn = NULL;
	Server s;
	int fd;
	GThread *t = server_run(&s, srv, ECHO, &fd);
	gboolean ok;

	conn = pb_conn_new(fd, fd);
	ok = pb_tls_client_start(conn, name, ca, require, pb_deadline_in(5),
	                         verified, error);
	if (ok) {
		desc = pb_tls_describe(conn);
		g_assert_true(g_str_has_prefix(desc, "TLSv1.3 with cipher "));
		g_assert_true(g_str_has_suffix(desc, " bits)"));
		g_assert_true(pb_conn_printf(conn, NULL, "ping\r\n"));
		g_assert_true(pb_conn_flush(conn, pb_deadline_in(5), NULL));
		got = read_line(conn, NULL);
		g_assert_cmpstr(got, ==, "echo: ping");
		g_assert_true(s.started);
	}
	g_clear_pointer(&conn, pb_conn_free); /* close_notify: server EOF */
	shutdown(fd, SHUT_RDWR);
	server_join(&s, t, fd);
	return ok;
}

/* ---- handshakes ---- */

static void
test_verified(void)
{
	g_autoptr(GError) error = NULL;
	gboolean verified = FALSE;

	g_assert_true(client_echo("srv.pem", "localhost", "ca.pem", TRUE,
	                          &verified, &error));
	g_assert_no_error(error);
	g_assert_true(verified);
	/* the server's certificate followed by its issuer */
	verified = FALSE;
	g_assert_true(client_echo("chain.pem", "localhost", "ca.pem", TRUE,
	                          &verified, &error));
	g_assert_no_error(error);
	g_assert_true(verified);
}

static void
test_system_trust(void)
{
	g_autoptr(GError) error = NULL;
	gboolean verified = TRUE;

	/* our test CA is not in the system's store: opportunistic TLS goes
	 * on, unverified */
	g_assert_true(client_echo("srv.pem", "localhost", NULL, FALSE,
	                          &verified, &error));
	g_assert_no_error(error);
	g_assert_false(verified);
}

static void
test_require_verified(void)
{
	g_autoptr(GError) error = NULL;
	gboolean verified = TRUE;

	g_assert_false(
	    client_echo("srv.pem", "localhost", NULL, TRUE, &verified, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
	g_assert_nonnull(strstr(error->message, "not verified"));
	g_assert_false(verified);
}

static void
test_wrong_name(void)
{
	g_autoptr(GError) error = NULL;
	gboolean verified = TRUE;

	/* a trusted chain for another name */
	g_assert_true(client_echo("srv.pem", "mail.example.org", "ca.pem",
	                          FALSE, &verified, &error));
	g_assert_no_error(error);
	g_assert_false(verified);
	g_assert_false(client_echo("srv.pem", "mail.example.org", "ca.pem",
	                           TRUE, &verified, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
	g_assert_nonnull(strstr(error->message, "mail.example.org"));
}

/* ---- a plain GnuTLS client, blocking, for what PbConn cannot show ---- */

static int
raw_handshake(int fd, const char *priority, gnutls_session_t *s,
              gnutls_certificate_credentials_t *cred)
{
	struct timeval tv = {.tv_sec = 5};
	int r;

	/* a missing record fails the test instead of hanging it */
	g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv),
	                ==, 0);
	g_assert_cmpint(gnutls_certificate_allocate_credentials(cred), ==, 0);
	g_assert_cmpint(gnutls_init(s, GNUTLS_CLIENT), ==, 0);
	g_assert_cmpint(gnutls_priority_set_direct(*s, priority, NULL), ==, 0);
	g_assert_cmpint(
	    gnutls_credentials_set(*s, GNUTLS_CRD_CERTIFICATE, *cred), ==, 0);
	gnutls_transport_set_int(*s, fd);
	do
		r = gnutls_handshake(*s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	return r;
}

static void
raw_free(gnutls_session_t s, gnutls_certificate_credentials_t cred)
{
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(cred);
}

/* A client limited to PRIORITY against our server: does it get TLS 1.2
 * (WANT_OK) or no session at all? */
static void
check_client_priority(PbTlsServer *srv, const char *priority, gboolean want_ok)
{
	gnutls_session_t s;
	gnutls_certificate_credentials_t cred;
	Server sv;
	int fd, r;
	GThread *t = server_run(&sv, srv, GOODBYE, &fd);

	r = raw_handshake(fd, priority, &s, &cred);
	if (!want_ok) {
		g_assert_cmpint(r, <, 0);
	} else {
		g_assert_cmpint(r, ==, 0);
		g_assert_cmpint(gnutls_protocol_get_version(s), ==,
		                GNUTLS_TLS1_2);
	}
	shutdown(fd, SHUT_RDWR);
	g_thread_join(t);
	g_assert_cmpint(sv.started, ==, want_ok);
	raw_free(s, cred);
	close(fd);
	close(sv.fd);
	g_clear_error(&sv.error);
}

static void
test_min_version(void)
{
	g_autoptr(PbTlsServer) srv = load_server("srv.pem");

	check_client_priority(srv, "NORMAL:-VERS-ALL:+VERS-TLS1.1", FALSE);
	check_client_priority(srv, "NORMAL:-VERS-ALL:+VERS-TLS1.0", FALSE);
	check_client_priority(srv, "NORMAL:-VERS-ALL:+VERS-TLS1.2", TRUE);
}

/* As a server: AEAD ciphers only (no CBC, which testssl rates
 * "obsolete"). */
static void
test_aead_only(void)
{
	g_autoptr(PbTlsServer) srv = load_server("srv.pem");
	const char *tls12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:";
	g_autofree char *cbc =
	    g_strconcat(tls12, "+AES-256-CBC:+AES-128-CBC", NULL);
	g_autofree char *gcm = g_strconcat(tls12, "+AES-128-GCM", NULL);
	g_autofree char *chacha =
	    g_strconcat(tls12, "+CHACHA20-POLY1305", NULL);

	check_client_priority(srv, cbc, FALSE);
	check_client_priority(srv, gcm, TRUE);
	check_client_priority(srv, chacha, TRUE);
}

/* Every key exchange the server agrees to has forward secrecy: with an
 * RSA certificate, a client offering only static RSA is refused. */
static void
test_forward_secrecy(void)
{
	g_autofree char *c = path("rsa.pem");
	g_autofree char *k = path("rsa.key");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbTlsServer) srv =
	    pb_tls_server_new_from_files(c, k, PB_TLS_PARSE_NOW, &error);
	const char *tls12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:";
	g_autofree char *rsa = g_strconcat(tls12, "+RSA", NULL);
	g_autofree char *ecdhe = g_strconcat(tls12, "+ECDHE-RSA", NULL);

	g_assert_no_error(error);
	check_client_priority(srv, rsa, FALSE);
	check_client_priority(srv, ecdhe, TRUE);
}

static void
test_close_notify(void)
{
	g_autoptr(PbTlsServer) srv = load_server("srv.pem");
	gnutls_session_t s;
	gnutls_certificate_credentials_t cred;
	Server sv;
	int fd;
	GThread *t = server_run(&sv, srv, GOODBYE, &fd);
	char buf[64];

	g_assert_cmpint(raw_handshake(fd, "NORMAL", &s, &cred), ==, 0);
	g_assert_cmpint(gnutls_record_recv(s, buf, sizeof buf), ==, 9);
	g_assert_cmpint(memcmp(buf, "goodbye\r\n", 9), ==, 0);
	/* 0 is close_notify; a bare EOF would be PREMATURE_TERMINATION */
	g_assert_cmpint(gnutls_record_recv(s, buf, sizeof buf), ==, 0);
	g_thread_join(t);
	g_assert_true(sv.started);
	raw_free(s, cred);
	close(fd);
	close(sv.fd);
}

/* ---- records ---- */

/* Two records already sent, then close_notify: each line comes out in
 * turn, then the end. */
static void
test_records(void)
{
	g_autoptr(PbTlsServer) srv = load_server("srv.pem");
	g_autofree char *ca = path("ca.pem");
	g_autoptr(PbConn) conn = NULL;
	g_autoptr(GError) error = NULL;
	g_autofree char *one = NULL, *two = NULL;
	Server s;
	int fd;
	GThread *t = server_run(&s, srv, TWO, &fd);
	gboolean verified;

	conn = pb_conn_new(fd, fd);
	g_assert_true(pb_tls_client_start(
	    conn, "localhost", ca, TRUE, pb_deadline_in(5), &verified, &error));
	g_assert_no_error(error);
	g_thread_join(t); /* both records, and close_notify, are sent */
	one = read_line(conn, &error);
	g_assert_cmpstr(one, ==, "one");
	two = read_line(conn, &error);
	g_assert_cmpstr(two, ==, "two");
	g_assert_null(read_line(conn, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CLOSED);
	g_clear_pointer(&conn, pb_conn_free);
	close(fd);
	close(s.fd);
	g_clear_error(&s.error);
}

/* ---- peers that do not speak TLS ---- */

static void
test_plain_client(void)
{
	g_autoptr(PbTlsServer) srv = load_server("srv.pem");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConn) conn = NULL;
	int fds[2];
	gint64 t0 = g_get_monotonic_time();

	/* a client that goes on in SMTP: the error comes at once */
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
	g_assert_cmpint(write(fds[1], "EHLO x\r\nMAIL FROM:<a@b>\r\n", 25), ==,
	                25);
	conn = pb_conn_new(fds[0], fds[0]);
	g_assert_false(
	    pb_tls_server_start(conn, srv, pb_deadline_in(5), &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
	g_test_message("%s", error->message);
	g_assert_nonnull(strstr(error->message, "not seem to speak TLS"));
	g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC);
	g_clear_pointer(&conn, pb_conn_free);
	close(fds[0]);
	close(fds[1]);
}

static void
test_plain_server(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConn) conn = NULL;
	int fds[2];
	gboolean verified = TRUE;
	gint64 t0 = g_get_monotonic_time();

	/* a server that answers in SMTP instead of a ServerHello */
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
	g_assert_cmpint(write(fds[1], "454 4.7.0 TLS not available\r\n", 30),
	                ==, 30);
	conn = pb_conn_new(fds[0], fds[0]);
	g_assert_false(pb_tls_client_start(conn, "localhost", NULL, FALSE,
	                                   pb_deadline_in(5), &verified,
	                                   &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
	g_test_message("%s", error->message);
	g_assert_nonnull(strstr(error->message, "not seem to speak TLS"));
	g_assert_false(verified);
	/* it gave up at the first wrong byte, not at the 5 s deadline (the
	 * margin is for a loaded machine under AddressSanitizer) */
	g_assert_cmpint(g_get_monotonic_time() - t0, <, 3 * G_USEC_PER_SEC);
	g_clear_pointer(&conn, pb_conn_free);
	close(fds[0]);
	close(fds[1]);
}

static void
test_silent_peer(void)
{
	g_autoptr(PbTlsServer) srv = load_server("srv.pem");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConn) conn = NULL;
	int fds[2];
	gint64 elapsed, t0 = g_get_monotonic_time();

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
	conn = pb_conn_new(fds[0], fds[0]);
	g_assert_false(
	    pb_tls_server_start(conn, srv, pb_deadline_in(1), &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TIMEOUT);
	elapsed = g_get_monotonic_time() - t0;
	g_assert_cmpint(elapsed, >=, G_USEC_PER_SEC / 2);
	g_assert_cmpint(elapsed, <, 3 * G_USEC_PER_SEC);
	g_clear_pointer(&conn, pb_conn_free);
	close(fds[0]);
	close(fds[1]);
}

static void
test_hang_up(void)
{
	g_autoptr(PbTlsServer) srv = load_server("srv.pem");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConn) conn = NULL;
	int fds[2];

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
	close(fds[1]);
	conn = pb_conn_new(fds[0], fds[0]);
	g_assert_false(
	    pb_tls_server_start(conn, srv, pb_deadline_in(5), &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CLOSED);
	g_clear_pointer(&conn, pb_conn_free);
	close(fds[0]);
}

/* ---- loading the server's files ---- */

/* A start on a socketpair with SRV: it must fail before any I/O. */
static GError *
start_error(PbTlsServer *srv)
{
	int fds[2];
	GError *error = NULL;
	PbConn *conn;

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
	conn = pb_conn_new(fds[0], fds[0]);
	g_assert_false(
	    pb_tls_server_start(conn, srv, pb_deadline_in(5), &error));
	pb_conn_free(conn);
	close(fds[0]);
	close(fds[1]);
	return error;
}

/* CERT and KEY are refused, with an error that SAYS what and NAMES the
 * file: at once with PB_TLS_PARSE_NOW, or when unreadable; else, with
 * PB_TLS_PARSE_LATER, at the handshake. */
static void
assert_load_error(const char *cert, const char *key, const char *says,
                  const char *names)
{
	g_autofree char *c = path(cert);
	g_autofree char *k = path(key);
	g_autofree char *n = path(names);

	for (PbTlsLoad when = 0; when <= PB_TLS_PARSE_LATER; when++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(PbTlsServer) srv =
		    pb_tls_server_new_from_files(c, k, when, &error);

		if (srv != NULL) {
			g_assert_cmpint(when, ==, PB_TLS_PARSE_LATER);
			g_assert_no_error(error);
			error = start_error(srv);
		}
		g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
		g_test_message("%d: %s", when, error->message);
		g_assert_nonnull(strstr(error->message, says));
		g_assert_nonnull(strstr(error->message, n));
	}
}

static void
test_load_errors(void)
{
	assert_load_error("nothing.pem", "srv.key", "[tls] certificate",
	                  "nothing.pem");
	assert_load_error("srv.pem", "nothing.key", "[tls] key", "nothing.key");
	assert_load_error("srv.pem", ".", "not a regular file", ".");
	assert_load_error("text.pem", "srv.key", "[tls] certificate",
	                  "text.pem");
	assert_load_error("srv.pem", "text.pem", "no PEM private key",
	                  "text.pem");
	/* the certificate where the key should be */
	assert_load_error("srv.pem", "srv.pem", "no PEM private key",
	                  "srv.pem");
	assert_load_error("srv.pem", "encrypted.key", "encrypted",
	                  "encrypted.key");
	assert_load_error("srv.pem", "ca.key", "does not match", "ca.key");
	assert_load_error("unsorted.pem", "srv.key", "not in order",
	                  "unsorted.pem");
}

/* pb_tls_load_for: later only for the one session of the inetd style
 * without implicit TLS. */
static void
test_load_for(void)
{
	char *addr[] = {"127.0.0.1:25", NULL}, *none[] = {NULL};

	g_unsetenv("LISTEN_FDS");
	g_assert_cmpint(pb_tls_load_for(TRUE, addr), ==, PB_TLS_PARSE_NOW);
	g_assert_cmpint(pb_tls_load_for(TRUE, NULL), ==, PB_TLS_PARSE_NOW);
	g_assert_cmpint(pb_tls_load_for(FALSE, addr), ==, PB_TLS_PARSE_NOW);
	g_assert_cmpint(pb_tls_load_for(FALSE, NULL), ==, PB_TLS_PARSE_LATER);
	g_assert_cmpint(pb_tls_load_for(FALSE, none), ==, PB_TLS_PARSE_LATER);
	g_setenv("LISTEN_FDS", "1", TRUE);
	g_assert_cmpint(pb_tls_load_for(FALSE, NULL), ==, PB_TLS_PARSE_NOW);
	g_unsetenv("LISTEN_FDS");
}

static void
test_config(void)
{
	PbConfig cfg = {0};
	g_autofree char *c = path("srv.pem");
	g_autofree char *k = path("srv.key");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbTlsServer) srv = NULL;

	g_assert_false(pb_tls_configured(&cfg));
	g_assert_null(pb_tls_server_new(&cfg, PB_TLS_PARSE_NOW, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_clear_error(&error);
	cfg.tls_certificate = c;
	g_assert_false(pb_tls_configured(&cfg));
	cfg.tls_key = k;
	g_assert_true(pb_tls_configured(&cfg));
	srv = pb_tls_server_new(&cfg, PB_TLS_PARSE_NOW, &error);
	g_assert_no_error(error);
	g_assert_nonnull(srv);
}

int
main(int argc, char **argv)
{
	int r;
	g_autofree char *cmd = NULL;

	g_test_init(&argc, &argv, NULL);
	dir = g_dir_make_tmp("pbtls-XXXXXX", NULL);
	g_assert_nonnull(dir);
	make_certs();
	/* first: it sets the environment, which is safe before threads */
	g_test_add_func("/tls/load/for", test_load_for);
	g_test_add_func("/tls/handshake/verified", test_verified);
	g_test_add_func("/tls/handshake/system-trust", test_system_trust);
	g_test_add_func("/tls/handshake/require-verified",
	                test_require_verified);
	g_test_add_func("/tls/handshake/wrong-name", test_wrong_name);
	g_test_add_func("/tls/handshake/min-version", test_min_version);
	g_test_add_func("/tls/handshake/aead-only", test_aead_only);
	g_test_add_func("/tls/handshake/forward-secrecy",
	                test_forward_secrecy);
	g_test_add_func("/tls/close-notify", test_close_notify);
	g_test_add_func("/tls/records", test_records);
	g_test_add_func("/tls/peer/plain-client", test_plain_client);
	g_test_add_func("/tls/peer/plain-server", test_plain_server);
	g_test_add_func("/tls/peer/silent", test_silent_peer);
	g_test_add_func("/tls/peer/hang-up", test_hang_up);
	g_test_add_func("/tls/load/errors", test_load_errors);
	g_test_add_func("/tls/load/config", test_config);
	r = g_test_run();
	cmd = g_strdup_printf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		r = 1;
	g_free(dir);
	return r;
}
