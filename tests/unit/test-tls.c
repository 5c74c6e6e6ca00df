/* test-tls.c - the TLS module over a socketpair: handshakes both ways,
 * certificate checks, and the errors at load time and on the wire.
 * Certificates are made at test time with certtool. */
#include "conn.h"
#include "error.h"
#include "tls.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char *dir;

static void
certtool(const char *args)
{
	g_autofree char *cmd = g_strdup_printf(
	    "cd '%s' && certtool %s >/dev/null 2>&1", dir, args);

	g_assert_cmpint(system(cmd), ==, 0);
}

static void
make_certs(void)
{
	g_autofree char *ca = g_build_filename(dir, "ca.tmpl", NULL);
	g_autofree char *srv = g_build_filename(dir, "srv.tmpl", NULL);

	g_assert_true(g_file_set_contents(
	    ca, "cn = test CA\nca\ncert_signing_key\nexpiration_days = 2\n", -1,
	    NULL));
	g_assert_true(g_file_set_contents(
	    srv,
	    "cn = localhost\ndns_name = localhost\ntls_www_server\n"
	    "encryption_key\nsigning_key\nexpiration_days = 2\n",
	    -1, NULL));
	certtool("--generate-privkey --key-type=ecdsa --outfile ca.key");
	certtool("--generate-self-signed --load-privkey ca.key --template "
	         "ca.tmpl --outfile ca.pem");
	certtool("--generate-privkey --key-type=ecdsa --outfile srv.key");
	certtool("--generate-certificate --load-privkey srv.key "
	         "--load-ca-certificate ca.pem --load-ca-privkey ca.key "
	         "--template srv.tmpl --outfile srv.pem");
}

static char *
path(const char *name)
{
	return g_build_filename(dir, name, NULL);
}

typedef struct {
	int fd;
	PbTlsServer *srv;
	gboolean ok;
	char *error;
	gboolean silent; /* only read, never answer */
} Server;

static gpointer
serve(gpointer data)
{
	Server *s = data;
	g_autoptr(PbConn) conn = pb_conn_new(s->fd, s->fd);
	g_autoptr(GError) error = NULL;
	const char *line;
	gsize len;
	guint flags;

	s->ok = pb_tls_server_start(conn, s->srv, pb_deadline_in(5), &error);
	if (!s->ok) {
		s->error = g_strdup(error->message);
		return NULL;
	}
	if (pb_conn_read_line(conn, &line, &len, &flags, pb_deadline_in(5),
	                      &error) &&
	    len == 4 && memcmp(line, "ping", 4) == 0) {
		(void)pb_conn_printf(conn, NULL, "pong\r\n");
		(void)pb_conn_flush(conn, pb_deadline_in(5), NULL);
	}
	return NULL;
}

static void
test_handshake(void)
{
	g_autofree char *cert = path("srv.pem");
	g_autofree char *key = path("srv.key");
	g_autofree char *ca = path("ca.pem");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbTlsServer) srv =
	    pb_tls_server_new_from_files(cert, key, &error);

	g_assert_no_error(error);
	for (int round = 0; round < 3; round++) {
		int fds[2];
		Server s = {0};
		GThread *t;
		g_autoptr(PbConn) conn = NULL;
		gboolean verified = TRUE, ok;
		const char *line;
		gsize len;
		guint flags;
		g_autofree char *desc = NULL;

		g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==,
		                0);
		s.fd = fds[1];
		s.srv = srv;
		t = g_thread_new("server", serve, &s);
		conn = pb_conn_new(fds[0], fds[0]);
		/* 0: our CA; 1: the system's trust; 2: required and failing */
		ok = pb_tls_client_start(conn, "localhost",
		                         round == 0 ? ca : NULL, round == 2,
		                         pb_deadline_in(5), &verified, &error);
		if (round == 2) {
			g_assert_false(ok);
			g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
			g_clear_error(&error);
			g_clear_pointer(&conn, pb_conn_free);
			shutdown(fds[0], SHUT_RDWR);
		} else {
			g_assert_no_error(error);
			g_assert_true(ok);
			g_assert_cmpint(verified, ==, round == 0);
			desc = pb_tls_describe(conn);
			g_assert_true(g_str_has_prefix(desc, "TLS1."));
			g_assert_true(pb_conn_printf(conn, NULL, "ping\r\n"));
			g_assert_true(
			    pb_conn_flush(conn, pb_deadline_in(5), NULL));
			g_assert_true(
			    pb_conn_read_line(conn, &line, &len, &flags,
			                      pb_deadline_in(5), &error));
			g_assert_cmpint(len, ==, 4);
			g_assert_cmpint(memcmp(line, "pong", 4), ==, 0);
		}
		g_thread_join(t);
		g_clear_pointer(&conn, pb_conn_free);
		close(fds[0]);
		close(fds[1]);
		g_free(s.error);
	}
}

static void
test_load_errors(void)
{
	g_autofree char *cert = path("srv.pem");
	g_autofree char *key = path("srv.key");
	g_autofree char *other = path("ca.key");
	g_autofree char *missing = path("nothing.pem");
	g_autoptr(GError) error = NULL;
	PbTlsServer *srv;

	srv = pb_tls_server_new_from_files(missing, key, &error);
	g_assert_null(srv);
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_assert_nonnull(strstr(error->message, "nothing.pem"));
	g_clear_error(&error);
	/* a key that is not the certificate's */
	srv = pb_tls_server_new_from_files(cert, other, &error);
	g_assert_null(srv);
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_clear_error(&error);
	/* not PEM at all */
	srv = pb_tls_server_new_from_files(cert, "/etc/hostname", &error);
	g_assert_null(srv);
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
}

static void
test_plain_peer_and_silence(void)
{
	g_autofree char *cert = path("srv.pem");
	g_autofree char *key = path("srv.key");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbTlsServer) srv =
	    pb_tls_server_new_from_files(cert, key, &error);
	int fds[2];
	g_autoptr(PbConn) conn = NULL;
	gint64 t0;

	/* a client that speaks SMTP, not TLS */
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
	g_assert_cmpint(write(fds[1], "EHLO x\r\n\r\n\r\n\r\n", 14), ==, 14);
	conn = pb_conn_new(fds[0], fds[0]);
	g_assert_false(
	    pb_tls_server_start(conn, srv, pb_deadline_in(5), &error));
	g_assert_nonnull(error);
	g_clear_error(&error);
	g_clear_pointer(&conn, pb_conn_free);
	close(fds[0]);
	close(fds[1]);
	/* a peer that says nothing: the deadline */
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
	conn = pb_conn_new(fds[0], fds[0]);
	t0 = g_get_monotonic_time();
	g_assert_false(
	    pb_tls_server_start(conn, srv, pb_deadline_in(1), &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TIMEOUT);
	g_assert_cmpint(g_get_monotonic_time() - t0, <, 3 * G_USEC_PER_SEC);
	g_clear_pointer(&conn, pb_conn_free);
	close(fds[0]);
	close(fds[1]);
}

int
main(int argc, char **argv)
{
	int r;
	g_autofree char *cmd = NULL;

	g_test_init(&argc, &argv, NULL);
	dir = g_dir_make_tmp("pbtls-XXXXXX", NULL);
	make_certs();
	g_test_add_func("/tls/handshake", test_handshake);
	g_test_add_func("/tls/load-errors", test_load_errors);
	g_test_add_func("/tls/plain-peer-and-silence",
	                test_plain_peer_and_silence);
	r = g_test_run();
	cmd = g_strdup_printf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		r = 1;
	g_free(dir);
	return r;
}
