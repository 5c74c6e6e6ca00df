/*
 * tls.c - TLS with GnuTLS under a PbConn (see tls.h).
 *
 * Owns the GnuTLS credentials and sessions. The server's certificate and
 * key are read and checked here, one file at a time, so that a start-up
 * error names the file at fault (GnuTLS's own errors name none).
 *
 * A session is non-blocking like the connection's fds: a handshake polls
 * in the direction GnuTLS asks for (gnutls_record_get_direction) until
 * its deadline, and the installed transport turns GNUTLS_E_AGAIN into
 * EAGAIN so that conn.c's deadlines apply to TLS as they do to the plain
 * socket. Renegotiation is refused (TLS 1.3 has none, and it was the
 * vehicle of CVE-2009-3555); warning alerts are skipped.
 */
#include "tls.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* appended to the default priorities: TLS 1.2 is the minimum */
#define MIN_VERSION "-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1"
/* and, as a server, AEAD ciphers only (testssl rates CBC "obsolete";
 * Mozilla's intermediate profile has none) and forward secrecy only (no
 * static RSA key exchange): every TLS 1.2 client has both. As a client
 * we keep CBC: opportunistic TLS with an old server beats plaintext. */
#define SERVER_PRIORITY                                                        \
	MIN_VERSION ":-AES-256-CBC:-AES-128-CBC:-CAMELLIA-256-CBC:"            \
	            "-CAMELLIA-128-CBC:-3DES-CBC:-RSA"
/* a certificate chain or a key larger than this is not one */
#define MAX_PEM (1024 * 1024)
/* records in a row that carry no data (alerts, renegotiation attempts)
 * before a read gives up: a peer could otherwise keep us in the loop of
 * tls_read past every deadline */
#define MAX_EMPTY_RECORDS 16

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
	return cfg->tls_certificate != NULL && *cfg->tls_certificate &&
	       cfg->tls_key != NULL && *cfg->tls_key;
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

/* ---- the server's credentials ---- */

static gboolean
config_error(GError **error, const char *what, const char *file,
             const char *reason)
{
	g_set_error(error, PB_ERROR, PB_ERROR_CONFIG, "[tls] %s %s: %s", what,
	            file, reason);
	return FALSE;
}

/* Reads FILE (the [tls] WHAT) whole, bounded by MAX_PEM, straight into
 * TEXT sized beforehand: no copy of a key is left behind in freed
 * memory (wipe() clears TEXT). */
static gboolean
read_pem(const char *what, const char *file, GString *text, GError **error)
{
	g_auto(PbFd) fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) < 0)
		return config_error(error, what, file, g_strerror(errno));
	if (!S_ISREG(st.st_mode))
		return config_error(error, what, file, "not a regular file");
	if (st.st_size > MAX_PEM)
		return config_error(error, what, file, "too large");
	g_string_set_size(text, MAX_PEM + 1);
	g_string_truncate(text, 0);
	while ((n = read(fd, text->str + text->len, MAX_PEM + 1 - text->len)) !=
	       0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return config_error(error, what, file,
			                    g_strerror(errno));
		text->len += (gsize)n;
		if (text->len > MAX_PEM) /* it grew since fstat */
			return config_error(error, what, file, "too large");
	}
	text->str[text->len] = '\0';
	return TRUE;
}

static gnutls_datum_t
datum(GString *s)
{
	return (gnutls_datum_t){(unsigned char *)s->str, (unsigned)s->len};
}

/* The certificate file holds at least one certificate, the server's
 * first, each one signed by the next. */
static gboolean
check_chain(const char *file, GString *pem, GError **error)
{
	gnutls_datum_t d = datum(pem);
	gnutls_x509_crt_t *crts = NULL;
	unsigned n = 0;
	int r =
	    gnutls_x509_crt_list_import2(&crts, &n, &d, GNUTLS_X509_FMT_PEM,
	                                 GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);

	if (r < 0)
		return config_error(error, "certificate", file,
		                    r == GNUTLS_E_CERTIFICATE_LIST_UNSORTED
		                        ? "the chain is not in order (the "
		                          "server's certificate first, then "
		                          "each issuer)"
		                        : gnutls_strerror(r));
	for (unsigned i = 0; i < n; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	return TRUE;
}

static gboolean
check_key(const char *file, GString *pem, GError **error)
{
	gnutls_datum_t d = datum(pem);
	gnutls_x509_privkey_t key;
	int r;

	if ((r = gnutls_x509_privkey_init(&key)) < 0)
		return config_error(error, "key", file, gnutls_strerror(r));
	r = gnutls_x509_privkey_import2(key, &d, GNUTLS_X509_FMT_PEM, NULL,
	                                GNUTLS_PKCS_PLAIN);
	gnutls_x509_privkey_deinit(key);
	if (r == GNUTLS_E_DECRYPTION_FAILED)
		return config_error(error, "key", file,
		                    "an encrypted key (pillarbox needs it "
		                    "unencrypted)");
	if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE ||
	    r == GNUTLS_E_BASE64_DECODING_ERROR)
		return config_error(error, "key", file,
		                    "no PEM private key found");
	if (r < 0)
		return config_error(error, "key", file, gnutls_strerror(r));
	return TRUE;
}

static void
wipe(GString *s)
{
	explicit_bzero(s->str, s->allocated_len);
	g_string_free(s, TRUE);
}

/* Checks both files, then hands them to GnuTLS, which also checks that
 * the key is the certificate's. */
static gboolean
load_pair(PbTlsServer *srv, const char *certificate, const char *key,
          GError **error)
{
	g_autoptr(GString) crt = g_string_new(NULL);
	GString *k = g_string_new(NULL);
	gnutls_datum_t dc, dk;
	int r = 0;
	gboolean ok;

	ok = read_pem("certificate", certificate, crt, error) &&
	     check_chain(certificate, crt, error) &&
	     read_pem("key", key, k, error) && check_key(key, k, error);
	if (ok) {
		dc = datum(crt);
		dk = datum(k);
		r = gnutls_certificate_set_x509_key_mem2(
		    srv->cred, &dc, &dk, GNUTLS_X509_FMT_PEM, NULL, 0);
	}
	wipe(k); /* the key lives on in GnuTLS only */
	if (ok && r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[tls] key %s does not match certificate %s", key,
		            certificate);
	else if (ok && r < 0)
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[tls] certificate %s and key %s: %s", certificate,
		            key, gnutls_strerror(r));
	return ok && r >= 0;
}

PbTlsServer *
pb_tls_server_new_from_files(const char *certificate, const char *key,
                             GError **error)
{
	g_autoptr(PbTlsServer) srv = NULL;
	int r;

	g_return_val_if_fail(certificate != NULL && key != NULL, NULL);
	if (!global_init(error))
		return NULL;
	srv = g_new0(PbTlsServer, 1);
	if ((r = gnutls_certificate_allocate_credentials(&srv->cred)) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gnutls_strerror(r));
		return NULL;
	}
	if (!load_pair(srv, certificate, key, error))
		return NULL;
	return g_steal_pointer(&srv);
}

PbTlsServer *
pb_tls_server_new(const PbConfig *cfg, GError **error)
{
	if (!pb_tls_configured(cfg)) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[tls] certificate and key must both be set");
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
io_result(ssize_t n)
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
	/* a peer that closes without close_notify: the end of input, which
	 * the protocol above notices (no QUIT, no final dot) */
	if (n == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	errno = ECONNRESET;
	return -1;
}

static ssize_t
tls_read(void *ctx, void *buf, size_t len)
{
	gnutls_session_t s = ((Tls *)ctx)->session;

	for (int i = 0; i < MAX_EMPTY_RECORDS; i++) {
		ssize_t n = gnutls_record_recv(s, buf, len);

		if (n == GNUTLS_E_REHANDSHAKE)
			(void)gnutls_alert_send(s, GNUTLS_AL_WARNING,
			                        GNUTLS_A_NO_RENEGOTIATION);
		else if (n != GNUTLS_E_WARNING_ALERT_RECEIVED)
			return io_result(n);
	}
	errno = ECONNRESET;
	return -1;
}

static ssize_t
tls_write(void *ctx, const void *buf, size_t len)
{
	/* after EAGAIN, conn.c calls again with the same bytes, as GnuTLS
	 * requires */
	return io_result(gnutls_record_send(((Tls *)ctx)->session, buf, len));
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

/* Frees a session that never became a transport. */
static void
tls_discard(Tls *t)
{
	if (t->session)
		gnutls_deinit(t->session);
	if (t->client_cred)
		gnutls_certificate_free_credentials(t->client_cred);
	g_free(t);
}

static void
tls_free(void *ctx)
{
	Tls *t = ctx;

	/* close_notify, best effort: never wait for the peer's */
	(void)gnutls_bye(t->session, GNUTLS_SHUT_WR);
	tls_discard(t);
}

static const PbTransport tls_transport = {
    .read = tls_read,
    .write = tls_write,
    .pending = tls_pending,
    .want_write = tls_want_write,
    .free = tls_free,
};

/* ---- handshakes ---- */

/* Turns a fatal handshake error into a GError an operator can act on. */
static gboolean
handshake_error(gnutls_session_t s, int r, GError **error)
{
	switch (r) {
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		g_set_error(error, PB_ERROR, PB_ERROR_CLOSED,
		            "connection closed during the TLS handshake");
		return FALSE;
	case GNUTLS_E_TIMEDOUT:
		g_set_error(error, PB_ERROR, PB_ERROR_TIMEOUT,
		            "TLS handshake timed out");
		return FALSE;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "TLS handshake failed: the peer sent alert \"%s\"",
		            gnutls_alert_get_name(gnutls_alert_get(s)));
		return FALSE;
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
	case GNUTLS_E_UNEXPECTED_PACKET:
		g_set_error(
		    error, PB_ERROR, PB_ERROR_TEMP,
		    "TLS handshake failed: the peer does not seem to speak TLS "
		    "(%s)",
		    gnutls_strerror(r));
		break;
	default:
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "TLS handshake failed: %s", gnutls_strerror(r));
	}
	/* tell the peer why, best effort */
	(void)gnutls_alert_send_appropriate(s, r);
	return FALSE;
}

/* Waits for the direction the handshake needs, until DEADLINE. */
static gboolean
handshake_wait(PbConn *conn, gnutls_session_t s, gint64 deadline,
               GError **error)
{
	gboolean out = gnutls_record_get_direction(s) == 1;
	struct pollfd pfd = {.fd = out ? pb_conn_wfd(conn) : pb_conn_rfd(conn),
	                     .events = out ? POLLOUT : POLLIN};
	gint64 left = deadline - g_get_monotonic_time() / 1000;
	int n;

	if (left <= 0 || (n = poll(&pfd, 1, (int)MIN(left, G_MAXINT))) == 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TIMEOUT,
		            "TLS handshake timed out");
		return FALSE;
	}
	if (n < 0 && errno != EINTR)
		return pb_throw_errno(error, "poll");
	return TRUE;
}

/* Runs the handshake to its end or the deadline. */
static gboolean
handshake(PbConn *conn, gnutls_session_t s, gint64 deadline, GError **error)
{
	gint64 left = deadline - g_get_monotonic_time() / 1000;

	/* GnuTLS keeps its own clock too (40 s by default): make it ours */
	gnutls_handshake_set_timeout(s, (unsigned)CLAMP(left, 1, G_MAXINT));
	gnutls_transport_set_int2(s, pb_conn_rfd(conn), pb_conn_wfd(conn));
	for (;;) {
		int r = gnutls_handshake(s);

		if (r == GNUTLS_E_SUCCESS)
			return TRUE;
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			if (!handshake_wait(conn, s, deadline, error))
				return FALSE;
		} else if (gnutls_error_is_fatal(r)) {
			return handshake_error(s, r, error);
		}
		/* else a warning alert: go on */
	}
}

static gboolean
session_new(gnutls_session_t *s, unsigned flags, GError **error)
{
	const char *extra =
	    flags & GNUTLS_SERVER ? SERVER_PRIORITY : MIN_VERSION;
	g_autofree char *fallback = g_strconcat("NORMAL:", extra, NULL);
	int r;

	if (!global_init(error))
		return FALSE;
	if ((r = gnutls_init(s, flags | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL)) <
	    0) {
		*s = NULL;
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gnutls_strerror(r));
		return FALSE;
	}
	/* the system's policy; if it cannot be used, GnuTLS's own default */
	if (gnutls_set_default_priority_append(*s, extra, NULL, 0) < 0 &&
	    (r = gnutls_priority_set_direct(*s, fallback, NULL)) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "GnuTLS priorities: %s", gnutls_strerror(r));
		return FALSE;
	}
	return TRUE;
}

gboolean
pb_tls_server_start(PbConn *conn, PbTlsServer *srv, gint64 deadline,
                    GError **error)
{
	Tls *t;
	int r;

	g_return_val_if_fail(srv != NULL, FALSE);
	t = g_new0(Tls, 1);
	if (!session_new(&t->session, GNUTLS_SERVER, error)) {
		tls_discard(t);
		return FALSE;
	}
	if ((r = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
	                                srv->cred)) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gnutls_strerror(r));
		tls_discard(t);
		return FALSE;
	}
	/* client certificates are not used for anything */
	gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_IGNORE);
	if (!handshake(conn, t->session, deadline, error)) {
		tls_discard(t);
		return FALSE;
	}
	pb_conn_set_transport(conn, &tls_transport, t);
	return TRUE;
}

/* A client session trusting CA_FILE, or the system's store, that asks
 * for SERVER_NAME. */
static gboolean
client_setup(Tls *t, const char *server_name, const char *ca_file,
             GError **error)
{
	int r;

	if (!session_new(&t->session, GNUTLS_CLIENT, error))
		return FALSE;
	if ((r = gnutls_certificate_allocate_credentials(&t->client_cred)) <
	        0 ||
	    (r = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
	                                t->client_cred)) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gnutls_strerror(r));
		return FALSE;
	}
	r = ca_file ? gnutls_certificate_set_x509_trust_file(
	                  t->client_cred, ca_file, GNUTLS_X509_FMT_PEM)
	            : gnutls_certificate_set_x509_system_trust(t->client_cred);
	if (r < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "TLS trust store %s: %s",
		            ca_file ? ca_file : "(system)", gnutls_strerror(r));
		return FALSE;
	}
	/* SNI names a host; an address literal is not sent (RFC 6066 3) */
	if (!g_hostname_is_ip_address(server_name) &&
	    (r = gnutls_server_name_set(t->session, GNUTLS_NAME_DNS,
	                                server_name, strlen(server_name))) <
	        0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "TLS SNI %s: %s",
		            server_name, gnutls_strerror(r));
		return FALSE;
	}
	return TRUE;
}

/* Checks the peer's chain and SERVER_NAME; *WHY gets the reason of a
 * failure. */
static gboolean
client_verify(gnutls_session_t s, const char *server_name, char **why)
{
	unsigned status = 0;
	gnutls_datum_t text = {NULL, 0};
	int r = gnutls_certificate_verify_peers3(s, server_name, &status);

	if (r < 0) {
		*why = g_strdup(gnutls_strerror(r));
		return FALSE;
	}
	if (status == 0)
		return TRUE;
	if (gnutls_certificate_verification_status_print(
	        status, gnutls_certificate_type_get(s), &text, 0) == 0) {
		*why = g_strdup((const char *)text.data);
		gnutls_free(text.data);
	} else {
		*why = g_strdup("verification failed");
	}
	return FALSE;
}

gboolean
pb_tls_client_start(PbConn *conn, const char *server_name, const char *ca_file,
                    gboolean require_verified, gint64 deadline,
                    gboolean *verified, GError **error)
{
	Tls *t;
	g_autofree char *why = NULL;

	g_return_val_if_fail(server_name != NULL && *server_name, FALSE);
	*verified = FALSE;
	t = g_new0(Tls, 1);
	if (!client_setup(t, server_name, ca_file, error) ||
	    !handshake(conn, t->session, deadline, error)) {
		tls_discard(t);
		return FALSE;
	}
	*verified = client_verify(t->session, server_name, &why);
	if (require_verified && !*verified) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "TLS certificate of %s not verified: %s",
		            server_name, why);
		(void)gnutls_alert_send(t->session, GNUTLS_AL_FATAL,
		                        GNUTLS_A_BAD_CERTIFICATE);
		tls_discard(t);
		return FALSE;
	}
	pb_conn_set_transport(conn, &tls_transport, t);
	return TRUE;
}

char *
pb_tls_describe(PbConn *conn)
{
	Tls *t = pb_conn_transport_ctx(conn, &tls_transport);
	const char *version, *suite;
	g_autofree char *v = NULL;
	size_t bits;

	if (t == NULL)
		return NULL;
	version =
	    gnutls_protocol_get_name(gnutls_protocol_get_version(t->session));
	/* GnuTLS says "TLS1.3", Postfix and OpenSSL "TLSv1.3" */
	if (version != NULL && g_str_has_prefix(version, "TLS1"))
		v = g_strconcat("TLSv", version + 3, NULL);
	else
		v = g_strdup(version ? version : "TLS");
	suite = gnutls_ciphersuite_get(t->session);
	bits = gnutls_cipher_get_key_size(gnutls_cipher_get(t->session)) * 8;
	return g_strdup_printf("%s with cipher %s (%zu/%zu bits)", v,
	                       suite ? suite : "unknown", bits, bits);
}
