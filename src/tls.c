/*
 * tls.c - TLS with GnuTLS under a PbConn (see tls.h).
 *
 * Owns the GnuTLS library, credentials and sessions. GnuTLS is not
 * linked: it is loaded with dlopen() by its soname (the system's search
 * path; never a path of ours) the first time it is needed, and called
 * through the table gt, whose entries are typed from GnuTLS's own header.
 * So a process that needs no TLS does not map libgnutls and the eight
 * libraries it pulls in (p11-kit, nettle, hogweed, gmp, tasn1, idn2,
 * unistring, ffi): 40 mappings fewer for every fork to copy, a few ms
 * less for every exec (README, "Cost of a connection: gnutls's part").
 *
 * The server's certificate and key are read whole at start (as root),
 * and parsed at once or at the first handshake (PbTlsLoad). They are
 * checked one file at a time, so that an error names the file at fault
 * (GnuTLS's own errors name none).
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
/* PB_GNUTLS_SONAME, read by src/meson.build from the library the headers
 * belong to */
#include "gnutls-soname.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
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

/* GnuTLS's functions and the one variable (free) that we use. */
#define GNUTLS_SYMBOLS(X)                                                      \
	X(alert_get)                                                           \
	X(alert_get_name)                                                      \
	X(alert_send)                                                          \
	X(alert_send_appropriate)                                              \
	X(bye)                                                                 \
	X(certificate_allocate_credentials)                                    \
	X(certificate_free_credentials)                                        \
	X(certificate_server_set_request)                                      \
	X(certificate_set_x509_key_mem2)                                       \
	X(certificate_set_x509_system_trust)                                   \
	X(certificate_set_x509_trust_file)                                     \
	X(certificate_type_get)                                                \
	X(certificate_verification_status_print)                               \
	X(certificate_verify_peers3)                                           \
	X(check_version)                                                       \
	X(cipher_get)                                                          \
	X(cipher_get_key_size)                                                 \
	X(ciphersuite_get)                                                     \
	X(credentials_set)                                                     \
	X(deinit)                                                              \
	X(error_is_fatal)                                                      \
	X(free)                                                                \
	X(global_init)                                                         \
	X(handshake)                                                           \
	X(handshake_set_timeout)                                               \
	X(init)                                                                \
	X(priority_set_direct)                                                 \
	X(privkey_deinit)                                                      \
	X(privkey_export_x509)                                                 \
	X(privkey_generate)                                                    \
	X(privkey_get_pk_algorithm)                                            \
	X(privkey_import_x509_raw)                                             \
	X(privkey_init)                                                        \
	X(privkey_sign_data2)                                                  \
	X(privkey_sign_hash)                                                   \
	X(protocol_get_name)                                                   \
	X(protocol_get_version)                                                \
	X(pubkey_deinit)                                                       \
	X(pubkey_export2)                                                      \
	X(pubkey_export_ecc_raw)                                               \
	X(pubkey_get_pk_algorithm)                                             \
	X(pubkey_import)                                                       \
	X(pubkey_import_ecc_raw)                                               \
	X(pubkey_import_privkey)                                               \
	X(pubkey_init)                                                         \
	X(pubkey_verify_data2)                                                 \
	X(pubkey_verify_hash2)                                                 \
	X(record_check_pending)                                                \
	X(record_get_direction)                                                \
	X(record_recv)                                                         \
	X(record_send)                                                         \
	X(server_name_set)                                                     \
	X(set_default_priority_append)                                         \
	X(strerror)                                                            \
	X(transport_set_int2)                                                  \
	X(x509_crt_deinit)                                                     \
	X(x509_crt_list_import2)                                               \
	X(x509_privkey_deinit)                                                 \
	X(x509_privkey_export2_pkcs8)                                          \
	X(x509_privkey_import2)                                                \
	X(x509_privkey_init)

/* gt.NAME points at gnutls_NAME, typed by the header we compile against:
 * a function's pointer for a function; for the variable gnutls_free, its
 * address (so it is called as (*gt.free)(p)). Filled once by
 * library_load(), never changed after. */
#define GT_FIELD(name) __typeof__(gnutls_##name) *name;
static struct {
	GNUTLS_SYMBOLS(GT_FIELD)
} gt;
#undef GT_FIELD

/* The server's files, as read at start; the parsed credentials from the
 * first use on. */
struct _PbTlsServer {
	char *crt_file, *key_file;
	GString *crt, *key; /* NULL once parsed; the key wiped then */
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

/* ---- the library ---- */

/* Fills gt from the library named by its soname: the dynamic linker's
 * search of the system's folders (for a set-user-id process glibc ignores
 * LD_LIBRARY_PATH; we never give a path). NULL, or why it failed. */
static char *
library_open(void)
{
	void *lib = dlopen(PB_GNUTLS_SONAME, RTLD_NOW | RTLD_LOCAL);
	int r;

	if (lib == NULL)
		return g_strdup_printf("TLS is not available: %s", dlerror());
#define GT_LOAD(name)                                                          \
	if ((gt.name = (__typeof__(gt.name))dlsym(lib, "gnutls_" #name)) ==    \
	    NULL)                                                              \
		goto missing;
	GNUTLS_SYMBOLS(GT_LOAD)
#undef GT_LOAD
	/* an older library than the headers may lack what they promise */
	if (gt.check_version(GNUTLS_VERSION) == NULL)
		return g_strdup_printf("TLS is not available: %s is GnuTLS "
		                       "%s, pillarbox was built for %s",
		                       PB_GNUTLS_SONAME, gt.check_version(NULL),
		                       GNUTLS_VERSION);
	if ((r = gt.global_init()) < 0)
		return g_strdup_printf("TLS is not available: GnuTLS: %s",
		                       gt.strerror(r));
	return NULL;
missing:
	/* the table stays half filled, but unused: every entry point
	 * calls library_load() first, which fails again */
	return g_strdup_printf("TLS is not available: %s: %s", PB_GNUTLS_SONAME,
	                       dlerror());
}

/* Loads GnuTLS on the first call; later calls say how that went. */
static gboolean
library_load(GError **error)
{
	static gsize done = 0;
	static char *failure = NULL;

	if (g_once_init_enter(&done)) {
		failure = library_open();
		g_once_init_leave(&done, 1);
	}
	if (failure != NULL) {
		g_set_error_literal(error, PB_ERROR, PB_ERROR_TEMP, failure);
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

static void
wipe(GString *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s->str, s->allocated_len);
	g_string_free(s, TRUE);
}

/* Reads FILE (the [tls] WHAT) whole, bounded by MAX_PEM, straight into a
 * string sized beforehand: no copy of a key is left behind in freed
 * memory (wipe() clears it). NULL on error. */
static GString *
read_pem(const char *what, const char *file, GError **error)
{
	g_auto(PbFd) fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	GString *text;
	gsize room;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) < 0)
		return config_error(error, what, file, g_strerror(errno)), NULL;
	if (!S_ISREG(st.st_mode))
		return config_error(error, what, file, "not a regular file"),
		       NULL;
	if (st.st_size > MAX_PEM)
		return config_error(error, what, file, "too large"), NULL;
	/* one byte more than the file: it must not have grown since fstat */
	room = (gsize)st.st_size + 1;
	text = g_string_sized_new(room);
	while ((n = read(fd, text->str + text->len, room - text->len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || text->len + (gsize)n == room) {
			config_error(error, what, file,
			             n < 0 ? g_strerror(errno)
			                   : "it changed while being read");
			wipe(text);
			return NULL;
		}
		text->len += (gsize)n;
	}
	text->str[text->len] = '\0';
	return text;
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
	int r = gt.x509_crt_list_import2(&crts, &n, &d, GNUTLS_X509_FMT_PEM,
	                                 GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);

	if (r < 0)
		return config_error(error, "certificate", file,
		                    r == GNUTLS_E_CERTIFICATE_LIST_UNSORTED
		                        ? "the chain is not in order (the "
		                          "server's certificate first, then "
		                          "each issuer)"
		                        : gt.strerror(r));
	for (unsigned i = 0; i < n; i++)
		gt.x509_crt_deinit(crts[i]);
	(*gt.free)(crts);
	return TRUE;
}

static gboolean
check_key(const char *file, GString *pem, GError **error)
{
	gnutls_datum_t d = datum(pem);
	gnutls_x509_privkey_t key;
	int r;

	if ((r = gt.x509_privkey_init(&key)) < 0)
		return config_error(error, "key", file, gt.strerror(r));
	r = gt.x509_privkey_import2(key, &d, GNUTLS_X509_FMT_PEM, NULL,
	                            GNUTLS_PKCS_PLAIN);
	gt.x509_privkey_deinit(key);
	if (r == GNUTLS_E_DECRYPTION_FAILED)
		return config_error(error, "key", file,
		                    "an encrypted key (pillarbox needs it "
		                    "unencrypted)");
	if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE ||
	    r == GNUTLS_E_BASE64_DECODING_ERROR)
		return config_error(error, "key", file,
		                    "no PEM private key found");
	if (r < 0)
		return config_error(error, "key", file, gt.strerror(r));
	return TRUE;
}

/* Hands both files to GnuTLS, which also checks that the key is the
 * certificate's. */
static gboolean
set_pair(PbTlsServer *srv, GError **error)
{
	gnutls_datum_t dc = datum(srv->crt), dk = datum(srv->key);
	int r;

	if ((r = gt.certificate_allocate_credentials(&srv->cred)) < 0) {
		srv->cred = NULL;
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gt.strerror(r));
		return FALSE;
	}
	r = gt.certificate_set_x509_key_mem2(srv->cred, &dc, &dk,
	                                     GNUTLS_X509_FMT_PEM, NULL, 0);
	if (r >= 0)
		return TRUE;
	gt.certificate_free_credentials(srv->cred);
	srv->cred = NULL;
	if (r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[tls] key %s does not match certificate %s",
		            srv->key_file, srv->crt_file);
	else
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[tls] certificate %s and key %s: %s",
		            srv->crt_file, srv->key_file, gt.strerror(r));
	return FALSE;
}

/* Loads GnuTLS and parses the files read at start, once; then the key
 * lives on in GnuTLS only. */
static gboolean
server_parse(PbTlsServer *srv, GError **error)
{
	if (srv->cred != NULL)
		return TRUE;
	if (!library_load(error) ||
	    !check_chain(srv->crt_file, srv->crt, error) ||
	    !check_key(srv->key_file, srv->key, error) || !set_pair(srv, error))
		return FALSE;
	wipe(g_steal_pointer(&srv->key));
	g_string_free(g_steal_pointer(&srv->crt), TRUE);
	return TRUE;
}

PbTlsServer *
pb_tls_server_new_from_files(const char *certificate, const char *key,
                             PbTlsLoad when, GError **error)
{
	g_autoptr(PbTlsServer) srv = NULL;

	g_return_val_if_fail(certificate != NULL && key != NULL, NULL);
	srv = g_new0(PbTlsServer, 1);
	srv->crt_file = g_strdup(certificate);
	srv->key_file = g_strdup(key);
	if ((srv->crt = read_pem("certificate", certificate, error)) == NULL ||
	    (srv->key = read_pem("key", key, error)) == NULL)
		return NULL;
	if (when == PB_TLS_PARSE_NOW && !server_parse(srv, error))
		return NULL;
	return g_steal_pointer(&srv);
}

PbTlsServer *
pb_tls_server_new(const PbConfig *cfg, PbTlsLoad when, GError **error)
{
	if (!pb_tls_configured(cfg)) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[tls] certificate and key must both be set");
		return NULL;
	}
	return pb_tls_server_new_from_files(cfg->tls_certificate, cfg->tls_key,
	                                    when, error);
}

PbTlsLoad
pb_tls_load_for(gboolean implicit_tls, char **listen)
{
	/* one session per process (inetd style, listener.h's rule) that
	 * may never say STARTTLS: GnuTLS waits for it */
	if (!implicit_tls && (listen == NULL || listen[0] == NULL) &&
	    g_getenv("LISTEN_FDS") == NULL)
		return PB_TLS_PARSE_LATER;
	/* a listener: parsed once, before forking, for all its children.
	 * Measured (README): a child that loads GnuTLS at STARTTLS pays
	 * ~15 times what a child without it saves by not copying its
	 * mappings; most clients of a TLS-configured server say STARTTLS */
	return PB_TLS_PARSE_NOW;
}

void
pb_tls_server_free(PbTlsServer *srv)
{
	if (srv == NULL)
		return;
	if (srv->cred)
		gt.certificate_free_credentials(srv->cred);
	wipe(srv->key);
	if (srv->crt != NULL)
		g_string_free(srv->crt, TRUE);
	g_free(srv->crt_file);
	g_free(srv->key_file);
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
		ssize_t n = gt.record_recv(s, buf, len);

		if (n == GNUTLS_E_REHANDSHAKE)
			(void)gt.alert_send(s, GNUTLS_AL_WARNING,
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
	return io_result(gt.record_send(((Tls *)ctx)->session, buf, len));
}

static gsize
tls_pending(void *ctx)
{
	return gt.record_check_pending(((Tls *)ctx)->session);
}

static gboolean
tls_want_write(void *ctx)
{
	return gt.record_get_direction(((Tls *)ctx)->session) == 1;
}

/* Frees a session that never became a transport. */
static void
tls_discard(Tls *t)
{
	if (t->session)
		gt.deinit(t->session);
	if (t->client_cred)
		gt.certificate_free_credentials(t->client_cred);
	g_free(t);
}

static void
tls_free(void *ctx)
{
	Tls *t = ctx;

	/* close_notify, best effort: never wait for the peer's */
	(void)gt.bye(t->session, GNUTLS_SHUT_WR);
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
		            gt.alert_get_name(gt.alert_get(s)));
		return FALSE;
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
	case GNUTLS_E_UNEXPECTED_PACKET:
		g_set_error(
		    error, PB_ERROR, PB_ERROR_TEMP,
		    "TLS handshake failed: the peer does not seem to speak TLS "
		    "(%s)",
		    gt.strerror(r));
		break;
	default:
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "TLS handshake failed: %s", gt.strerror(r));
	}
	/* tell the peer why, best effort */
	(void)gt.alert_send_appropriate(s, r);
	return FALSE;
}

/* Waits for the direction the handshake needs, until DEADLINE. */
static gboolean
handshake_wait(PbConn *conn, gnutls_session_t s, gint64 deadline,
               GError **error)
{
	gboolean out = gt.record_get_direction(s) == 1;
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
	gt.handshake_set_timeout(s, (unsigned)CLAMP(left, 1, G_MAXINT));
	gt.transport_set_int2(s, pb_conn_rfd(conn), pb_conn_wfd(conn));
	for (;;) {
		int r = gt.handshake(s);

		if (r == GNUTLS_E_SUCCESS)
			return TRUE;
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			if (!handshake_wait(conn, s, deadline, error))
				return FALSE;
		} else if (gt.error_is_fatal(r)) {
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

	if (!library_load(error))
		return FALSE;
	if ((r = gt.init(s, flags | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL)) < 0) {
		*s = NULL;
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gt.strerror(r));
		return FALSE;
	}
	/* the system's policy; if it cannot be used, GnuTLS's own default */
	if (gt.set_default_priority_append(*s, extra, NULL, 0) < 0 &&
	    (r = gt.priority_set_direct(*s, fallback, NULL)) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "GnuTLS priorities: %s", gt.strerror(r));
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
	if (!server_parse(srv, error))
		return FALSE;
	t = g_new0(Tls, 1);
	if (!session_new(&t->session, GNUTLS_SERVER, error)) {
		tls_discard(t);
		return FALSE;
	}
	if ((r = gt.credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
	                            srv->cred)) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gt.strerror(r));
		tls_discard(t);
		return FALSE;
	}
	/* client certificates are not used for anything */
	gt.certificate_server_set_request(t->session, GNUTLS_CERT_IGNORE);
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
	if ((r = gt.certificate_allocate_credentials(&t->client_cred)) < 0 ||
	    (r = gt.credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
	                            t->client_cred)) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "GnuTLS: %s",
		            gt.strerror(r));
		return FALSE;
	}
	r = ca_file ? gt.certificate_set_x509_trust_file(
	                  t->client_cred, ca_file, GNUTLS_X509_FMT_PEM)
	            : gt.certificate_set_x509_system_trust(t->client_cred);
	if (r < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "TLS trust store %s: %s",
		            ca_file ? ca_file : "(system)", gt.strerror(r));
		return FALSE;
	}
	/* SNI names a host; an address literal is not sent (RFC 6066 3) */
	if (!g_hostname_is_ip_address(server_name) &&
	    (r = gt.server_name_set(t->session, GNUTLS_NAME_DNS, server_name,
	                            strlen(server_name))) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "TLS SNI %s: %s",
		            server_name, gt.strerror(r));
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
	int r = gt.certificate_verify_peers3(s, server_name, &status);

	if (r < 0) {
		*why = g_strdup(gt.strerror(r));
		return FALSE;
	}
	if (status == 0)
		return TRUE;
	if (gt.certificate_verification_status_print(
	        status, gt.certificate_type_get(s), &text, 0) == 0) {
		*why = g_strdup((const char *)text.data);
		(*gt.free)(text.data);
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
		(void)gt.alert_send(t->session, GNUTLS_AL_FATAL,
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
	version = gt.protocol_get_name(gt.protocol_get_version(t->session));
	/* GnuTLS says "TLS1.3", Postfix and OpenSSL "TLSv1.3" */
	if (version != NULL && g_str_has_prefix(version, "TLS1"))
		v = g_strconcat("TLSv", version + 3, NULL);
	else
		v = g_strdup(version ? version : "TLS");
	suite = gt.ciphersuite_get(t->session);
	bits = gt.cipher_get_key_size(gt.cipher_get(t->session)) * 8;
	return g_strdup_printf("%s with cipher %s (%zu/%zu bits)", v,
	                       suite ? suite : "unknown", bits, bits);
}

/* ---- keys for signatures (DKIM) ---- */

struct _PbPrivKey {
	gnutls_privkey_t key;
	PbKeyType type;
	guint bits;
};

static gboolean
key_error(GError **error, int code, const char *what, int r)
{
	g_set_error(error, PB_ERROR, code, "%s: %s", what, gt.strerror(r));
	return FALSE;
}

/* Fills in the type and size; FALSE for anything but RSA and Ed25519. */
static gboolean
privkey_describe(PbPrivKey *k, GError **error)
{
	unsigned bits = 0;
	int alg = gt.privkey_get_pk_algorithm(k->key, &bits);

	k->bits = bits;
	if (alg == GNUTLS_PK_RSA)
		k->type = PB_KEY_RSA;
	else if (alg == GNUTLS_PK_EDDSA_ED25519)
		k->type = PB_KEY_ED25519;
	else {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "neither an RSA nor an Ed25519 key");
		return FALSE;
	}
	return TRUE;
}

/* An empty key, GnuTLS loaded. */
static PbPrivKey *
privkey_new(GError **error)
{
	PbPrivKey *k;
	int r;

	if (!library_load(error))
		return NULL;
	k = g_new0(PbPrivKey, 1);
	if ((r = gt.privkey_init(&k->key)) < 0) {
		g_free(k);
		return key_error(error, PB_ERROR_TEMP, "GnuTLS", r), NULL;
	}
	return k;
}

PbPrivKey *
pb_privkey_import_pem(const char *pem, gsize len, GError **error)
{
	g_autoptr(PbPrivKey) k = privkey_new(error);
	gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
	int r;

	if (k == NULL)
		return NULL;
	r = gt.privkey_import_x509_raw(k->key, &d, GNUTLS_X509_FMT_PEM, NULL,
	                               GNUTLS_PKCS_PLAIN);
	if (r == GNUTLS_E_DECRYPTION_FAILED) {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "an encrypted key (it must be unencrypted)");
		return NULL;
	}
	if (r < 0)
		return key_error(error, PB_ERROR_DATA, "no PEM private key", r),
		       NULL;
	if (!privkey_describe(k, error))
		return NULL;
	return g_steal_pointer(&k);
}

PbPrivKey *
pb_privkey_generate(PbKeyType type, guint bits, GError **error)
{
	g_autoptr(PbPrivKey) k = privkey_new(error);
	int r;

	if (k == NULL)
		return NULL;
	r = type == PB_KEY_RSA
	        ? gt.privkey_generate(k->key, GNUTLS_PK_RSA, bits, 0)
	        : gt.privkey_generate(k->key, GNUTLS_PK_EDDSA_ED25519, 256, 0);
	if (r < 0)
		return key_error(error, PB_ERROR_TEMP, "key generation", r),
		       NULL;
	if (!privkey_describe(k, error))
		return NULL;
	return g_steal_pointer(&k);
}

void
pb_privkey_free(PbPrivKey *k)
{
	if (k == NULL)
		return;
	if (k->key != NULL)
		gt.privkey_deinit(k->key);
	g_free(k);
}

PbKeyType
pb_privkey_type(const PbPrivKey *k)
{
	return k->type;
}

guint
pb_privkey_bits(const PbPrivKey *k)
{
	return k->bits;
}

char *
pb_privkey_export_pem(PbPrivKey *k, GError **error)
{
	gnutls_x509_privkey_t x = NULL;
	gnutls_datum_t out = {NULL, 0};
	char *pem;
	int r;

	if ((r = gt.privkey_export_x509(k->key, &x)) < 0)
		return key_error(error, PB_ERROR_TEMP, "key export", r), NULL;
	r = gt.x509_privkey_export2_pkcs8(x, GNUTLS_X509_FMT_PEM, NULL,
	                                  GNUTLS_PKCS_PLAIN, &out);
	gt.x509_privkey_deinit(x);
	if (r < 0)
		return key_error(error, PB_ERROR_TEMP, "key export", r), NULL;
	pem = g_strndup((const char *)out.data, out.size);
	explicit_bzero(out.data, out.size);
	(*gt.free)(out.data);
	return pem;
}

/* D (allocated by GnuTLS) as GBytes; D freed. */
static GBytes *
datum_bytes(gnutls_datum_t *d)
{
	GBytes *b = g_bytes_new(d->data, d->size);

	(*gt.free)(d->data);
	return b;
}

GBytes *
pb_privkey_public(PbPrivKey *k, GError **error)
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t out = {NULL, 0};
	gnutls_ecc_curve_t curve;
	int r;

	if ((r = gt.pubkey_init(&pub)) < 0)
		return key_error(error, PB_ERROR_TEMP, "GnuTLS", r), NULL;
	r = gt.pubkey_import_privkey(pub, k->key, 0, 0);
	if (r >= 0)
		r = k->type == PB_KEY_RSA
		        ? gt.pubkey_export2(pub, GNUTLS_X509_FMT_DER, &out)
		        : gt.pubkey_export_ecc_raw(pub, &curve, &out, NULL);
	gt.pubkey_deinit(pub);
	if (r < 0)
		return key_error(error, PB_ERROR_TEMP, "public key", r), NULL;
	return datum_bytes(&out);
}

GBytes *
pb_privkey_sign_sha256(PbPrivKey *k, const guint8 *digest, GError **error)
{
	gnutls_datum_t d = {(unsigned char *)digest, 32};
	gnutls_datum_t sig = {NULL, 0};
	int r =
	    k->type == PB_KEY_RSA
	        ? gt.privkey_sign_hash(k->key, GNUTLS_DIG_SHA256, 0, &d, &sig)
	        : gt.privkey_sign_data2(k->key, GNUTLS_SIGN_EDDSA_ED25519, 0,
	                                &d, &sig);

	if (r < 0)
		return key_error(error, PB_ERROR_TEMP, "signing", r), NULL;
	return datum_bytes(&sig);
}

/* Imports the public KEY of TYPE into PUB; PB_ERROR_PERM when unusable. */
static gboolean
pubkey_import(gnutls_pubkey_t pub, PbKeyType type, const guint8 *key,
              gsize keylen, guint *bits, GError **error)
{
	gnutls_datum_t d = {(unsigned char *)key, (unsigned)keylen};
	unsigned b = 0;
	int r, alg;

	if (type == PB_KEY_ED25519) {
		if (keylen != 32) {
			g_set_error(error, PB_ERROR, PB_ERROR_PERM,
			            "an Ed25519 key is 32 octets, not %zu",
			            keylen);
			return FALSE;
		}
		r = gt.pubkey_import_ecc_raw(pub, GNUTLS_ECC_CURVE_ED25519, &d,
		                             NULL);
	} else
		r = gt.pubkey_import(pub, &d, GNUTLS_X509_FMT_DER);
	if (r < 0)
		return key_error(error, PB_ERROR_PERM, "bad public key", r);
	alg = gt.pubkey_get_pk_algorithm(pub, &b);
	*bits = b;
	if (alg !=
	    (type == PB_KEY_RSA ? GNUTLS_PK_RSA : GNUTLS_PK_EDDSA_ED25519)) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
		            "the public key is not of the signature's type");
		return FALSE;
	}
	return TRUE;
}

gboolean
pb_pubkey_verify_sha256(PbKeyType type, const guint8 *key, gsize keylen,
                        guint min_bits, const guint8 *digest, const guint8 *sig,
                        gsize siglen, guint *bits, GError **error)
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t d = {(unsigned char *)digest, 32};
	gnutls_datum_t s = {(unsigned char *)sig, (unsigned)siglen};
	gboolean ok;
	int r;

	*bits = 0;
	if (!library_load(error))
		return FALSE;
	if ((r = gt.pubkey_init(&pub)) < 0)
		return key_error(error, PB_ERROR_TEMP, "GnuTLS", r);
	ok = pubkey_import(pub, type, key, keylen, bits, error);
	if (ok && type == PB_KEY_RSA && *bits < min_bits) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
		            "a %u-bit key (at least %u wanted)", *bits,
		            min_bits);
		ok = FALSE;
	}
	if (ok) {
		r = type == PB_KEY_RSA
		        ? gt.pubkey_verify_hash2(pub, GNUTLS_SIGN_RSA_SHA256, 0,
		                                 &d, &s)
		        : gt.pubkey_verify_data2(pub, GNUTLS_SIGN_EDDSA_ED25519,
		                                 0, &d, &s);
		if (r < 0)
			ok = key_error(error, PB_ERROR_DATA,
			               "signature did not verify", r);
	}
	gt.pubkey_deinit(pub);
	return ok;
}
