/*
 * tls.c - TLS with GnuTLS under a PbConn (see tls.h).
 *
 * The session is non-blocking like the connection's fds: a handshake
 * polls in the direction GnuTLS asks for (gnutls_record_get_direction)
 * until its deadline, and the installed transport turns GNUTLS_E_AGAIN
 * into EAGAIN so that conn.c's deadlines apply to TLS as they do to the
 * plain socket.
 */
#include "tls.h"
#include "error.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <string.h>

/* The system's priorities, without TLS 1.0 and 1.1 */
#define REMOVED_VERSIONS "-VERS-TLS1.0:-VERS-TLS1.1"

struct _PbTlsServer {
	gnutls_certificate_credentials_t cred;
};

typedef struct {
	gnutls_session_t session;
	gnutls_certificate_credentials_t client_cred; /* owned (client) */
} Tls;

gboolean
pb_tls_configured(const PbConfig *cfg)
{
	return cfg->tls_certificate != NULL && cfg->tls_key != NULL;
}

static gboolean
global_init(GError **error)
{
	static gsize done = 0;
	static int status = 0;

	if (g_once_init_enter(&done)) {
		status = gnutls_global_init();
		g_once_init_leave(&done, 1);
	}
	if (status < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gnutls_strerror(status));
		return FALSE;
	}
	return TRUE;
}

PbTlsServer *
pb_tls_server_new_from_files(const char *certificate, const char *key,
                             GError **error)
{
	g_autoptr(PbTlsServer) srv = g_new0(PbTlsServer, 1);
	int r;

	if (!global_init(error))
		return NULL;
	/* open them ourselves first: GnuTLS's errors do not name files */
	for (const char *const *f = (const char *[]){certificate, key, NULL};
	     *f; f++) {
		g_autofree char *text = NULL;
		g_autoptr(GError) ferr = NULL;
		if (!g_file_get_contents(*f, &text, NULL, &ferr)) {
			g_set_error(
			    error, PB_ERROR, PB_ERROR_CONFIG, "[tls] %s: %s",
			    *f == key ? "key" : "certificate", ferr->message);
			return NULL;
		}
	}
	if ((r = gnutls_certificate_allocate_credentials(&srv->cred)) < 0 ||
	    (r = gnutls_certificate_set_x509_key_file2(srv->cred, certificate,
	                                               key, GNUTLS_X509_FMT_PEM,
	                                               NULL, 0)) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[tls] certificate %s and key %s: %s", certificate,
		            key, gnutls_strerror(r));
		return NULL;
	}
	return g_steal_pointer(&srv);
}

PbTlsServer *
pb_tls_server_new(const PbConfig *cfg, GError **error)
{
	if (!pb_tls_configured(cfg)) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[tls] certificate and key are not set");
		return NULL;
	}
	return pb_tls_server_new_from_files(cfg->tls_certificate, cfg->tls_key,
	                                    error);
}

void
pb_tls_server_free(PbTlsServer *srv)
{
	if (srv == NULL)
		return;
	if (srv->cred)
		gnutls_certificate_free_credentials(srv->cred);
	g_free(srv);
}

/* ---- the transport ---- */

static ssize_t
tls_io_result(ssize_t n)
{
	if (n >= 0)
		return n;
	if (n == GNUTLS_E_AGAIN) {
		errno = EAGAIN;
		return -1;
	}
	if (n == GNUTLS_E_INTERRUPTED) {
		errno = EINTR;
		return -1;
	}
	/* a peer that closes without close_notify: the end of input */
	if (n == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	errno = ECONNRESET;
	return -1;
}

static ssize_t
tls_read(void *ctx, void *buf, size_t len)
{
	return tls_io_result(
	    gnutls_record_recv(((Tls *)ctx)->session, buf, len));
}

static ssize_t
tls_write(void *ctx, const void *buf, size_t len)
{
	return tls_io_result(
	    gnutls_record_send(((Tls *)ctx)->session, buf, len));
}

static gsize
tls_pending(void *ctx)
{
	return gnutls_record_check_pending(((Tls *)ctx)->session);
}

static gboolean
tls_want_write(void *ctx)
{
	return gnutls_record_get_direction(((Tls *)ctx)->session) == 1;
}

static void
tls_free(void *ctx)
{
	Tls *t = ctx;

	/* close_notify, best effort: never wait for the peer's */
	(void)gnutls_bye(t->session, GNUTLS_SHUT_WR);
	gnutls_deinit(t->session);
	if (t->client_cred)
		gnutls_certificate_free_credentials(t->client_cred);
	g_free(t);
}

static const PbTransport tls_transport = {
    .read = tls_read,
    .write = tls_write,
    .pending = tls_pending,
    .want_write = tls_want_write,
    .free = tls_free,
};

/* Runs the handshake to its end or the deadline. */
static gboolean
handshake(PbConn *conn, gnutls_session_t s, gint64 deadline, GError **error)
{
	for (;;) {
		int r = gnutls_handshake(s);
		gboolean out;
		struct pollfd pfd;
		gint64 left;

		if (r == GNUTLS_E_SUCCESS)
			return TRUE;
		if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED &&
		    gnutls_error_is_fatal(r)) {
			g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
			            "TLS handshake failed: %s",
			            gnutls_strerror(r));
			return FALSE;
		}
		out = gnutls_record_get_direction(s) == 1;
		pfd.fd = out ? pb_conn_wfd(conn) : pb_conn_rfd(conn);
		pfd.events = out ? POLLOUT : POLLIN;
		left = deadline - g_get_monotonic_time() / 1000;
		if (left <= 0 || poll(&pfd, 1, (int)MIN(left, G_MAXINT)) == 0) {
			g_set_error(error, PB_ERROR, PB_ERROR_TIMEOUT,
			            "TLS handshake timed out");
			return FALSE;
		}
	}
}

/* A session that never became the transport; always FALSE. */
static gboolean
discard(Tls *t)
{
	if (t->session)
		gnutls_deinit(t->session);
	if (t->client_cred)
		gnutls_certificate_free_credentials(t->client_cred);
	g_free(t);
	return FALSE;
}

static gboolean
session_new(gnutls_session_t *s, unsigned flags, GError **error)
{
	int r;

	if (!global_init(error))
		return FALSE;
	if ((r = gnutls_init(s, flags | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL)) <
	        0 ||
	    (r = gnutls_set_default_priority_append(*s, REMOVED_VERSIONS, NULL,
	                                            0)) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gnutls_strerror(r));
		return FALSE;
	}
	return TRUE;
}

gboolean
pb_tls_server_start(PbConn *conn, PbTlsServer *srv, gint64 deadline,
                    GError **error)
{
	Tls *t = g_new0(Tls, 1);

	if (!session_new(&t->session, GNUTLS_SERVER, error))
		return discard(t);
	gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, srv->cred);
	gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_IGNORE);
	gnutls_transport_set_int2(t->session, pb_conn_rfd(conn),
	                          pb_conn_wfd(conn));
	if (!handshake(conn, t->session, deadline, error))
		return discard(t);
	pb_conn_set_transport(conn, &tls_transport, t);
	return TRUE;
}

gboolean
pb_tls_client_start(PbConn *conn, const char *server_name, const char *ca_file,
                    gboolean require_verified, gint64 deadline,
                    gboolean *verified, GError **error)
{
	Tls *t = g_new0(Tls, 1);
	unsigned status = 1;
	int r = 0;

	*verified = FALSE;
	if (!session_new(&t->session, GNUTLS_CLIENT, error) ||
	    (r = gnutls_certificate_allocate_credentials(&t->client_cred)) <
	        0 ||
	    (r = ca_file ? gnutls_certificate_set_x509_trust_file(
	                       t->client_cred, ca_file, GNUTLS_X509_FMT_PEM)
	                 : gnutls_certificate_set_x509_system_trust(
	                       t->client_cred)) < 0) {
		if (error && !*error)
			g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
			            "TLS trust store: %s", gnutls_strerror(r));
		return discard(t);
	}
	gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
	                       t->client_cred);
	/* SNI names a host; an address literal is not sent (RFC 6066 3) */
	if (server_name && *server_name &&
	    !g_hostname_is_ip_address(server_name))
		gnutls_server_name_set(t->session, GNUTLS_NAME_DNS, server_name,
		                       strlen(server_name));
	gnutls_transport_set_int2(t->session, pb_conn_rfd(conn),
	                          pb_conn_wfd(conn));
	if (!handshake(conn, t->session, deadline, error))
		return discard(t);
	if (gnutls_certificate_verify_peers3(t->session, server_name,
	                                     &status) == 0)
		*verified = status == 0;
	if (require_verified && !*verified) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "TLS certificate of %s not verified", server_name);
		return discard(t);
	}
	pb_conn_set_transport(conn, &tls_transport, t);
	return TRUE;
}

char *
pb_tls_describe(PbConn *conn)
{
	Tls *t = pb_conn_transport_ctx(conn, &tls_transport);
	const char *version;

	if (t == NULL)
		return NULL;
	version =
	    gnutls_protocol_get_name(gnutls_protocol_get_version(t->session));
	return g_strdup_printf(
	    "%s with cipher %s", version ? version : "TLS",
	    gnutls_cipher_get_name(gnutls_cipher_get(t->session)));
}
