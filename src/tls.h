/*
 * tls.h - TLS with GnuTLS under a PbConn: the server side (STARTTLS, STLS,
 * implicit TLS on 465/995) and the client side (runq's opportunistic
 * STARTTLS).
 *
 * Priorities: the system's default (GnuTLS's default priority string,
 * which honours the system policy; "NORMAL" if that cannot be used) with
 * SSL 3.0, TLS 1.0 and TLS 1.1 removed: TLS 1.2 is the minimum.
 *
 * Guarantees: a handshake waits no longer than its deadline; after a
 * successful start every read and write of the connection goes through
 * TLS, and pb_conn_pending() counts what GnuTLS holds decrypted. Freeing
 * the connection sends close_notify, best effort and without waiting, so
 * free the PbConn before closing its fds.
 *
 * The caller's duties:
 * - before a STARTTLS handshake, empty the connection's input buffer
 *   (pb_conn_purge_input): nothing sent in the clear before it may be read
 *   as if it came inside TLS (CVE-2011-0411);
 * - when a start fails, close the connection: the handshake may have
 *   consumed part of the peer's data, so the stream is no longer usable in
 *   the clear either;
 * - make the server's PbTlsServer before dropping privileges and before
 *   forking: the key is often readable by root only. The sessions are
 *   made per connection. A PB_TLS_PARSE_LATER server changes at its
 *   first handshake: use it from one thread at a time.
 *
 * GnuTLS itself is loaded (dlopen by soname) when a process first needs
 * it, not at start: a server without [tls], an inetd-style session whose
 * client does not say STARTTLS, a runq that meets no STARTTLS, never map
 * it. When the library cannot be loaded, TLS fails with PB_ERROR_TEMP
 * saying so; everything else works.
 */
#ifndef PB_TLS_H
#define PB_TLS_H

#include <glib.h>

#include "config.h"
#include "conn.h"

/* The server's certificate chain and key, loaded once. */
typedef struct _PbTlsServer PbTlsServer;

/* TRUE when [tls] certificate and key are set. */
gboolean pb_tls_configured(const PbConfig *cfg);

/* When the server's files are parsed (which loads GnuTLS). They are
 * always read at once. */
typedef enum {
	/* now, in this process: a listener's children inherit the parsed
	 * files (and GnuTLS); bad files are reported at start */
	PB_TLS_PARSE_NOW,
	/* at the first handshake, which reports bad files: for one session
	 * per process (inetd style), which maps no GnuTLS unless its client
	 * says STARTTLS */
	PB_TLS_PARSE_LATER,
} PbTlsLoad;

/* The PbTlsLoad for a server with IMPLICIT_TLS or not, given the LISTEN
 * addresses of pb_listener_run (which with none and no $LISTEN_FDS
 * serves one session: listener.h): later only for one session without
 * implicit TLS. */
PbTlsLoad pb_tls_load_for(gboolean implicit_tls, char **listen);

/* Reads [tls] certificate (PEM: the server's certificate first, then its
 * chain) and key (PEM, not encrypted), and parses them WHEN says.
 * PB_ERROR_CONFIG naming the file when one is missing, unreadable, not
 * PEM, or they do not match (for PB_TLS_PARSE_LATER, the last two are
 * found by pb_tls_server_start); PB_ERROR_TEMP when GnuTLS cannot be
 * loaded. */
PbTlsServer *pb_tls_server_new(const PbConfig *cfg, PbTlsLoad when,
                               GError **error);
/* The same from explicit files. */
PbTlsServer *pb_tls_server_new_from_files(const char *certificate,
                                          const char *key, PbTlsLoad when,
                                          GError **error);
void pb_tls_server_free(PbTlsServer *srv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbTlsServer, pb_tls_server_free)

/* The server handshake on CONN's fds, until DEADLINE (pb_deadline_in);
 * on success CONN speaks TLS. Errors: PB_ERROR_TIMEOUT, PB_ERROR_CLOSED
 * (the peer left), PB_ERROR_TEMP (anything else, e.g. a peer that does
 * not speak TLS, or GnuTLS cannot be loaded), PB_ERROR_CONFIG (the files
 * of a PB_TLS_PARSE_LATER server are bad); then the caller closes the
 * connection. */
gboolean pb_tls_server_start(PbConn *conn, PbTlsServer *srv, gint64 deadline,
                             GError **error);

/* The client handshake, sending SERVER_NAME as SNI (unless it is an
 * address literal). The chain is checked against CA_FILE (a PEM file of
 * trusted certificates; NULL: the system's trust store) and SERVER_NAME;
 * *VERIFIED says whether both passed. A failed check is not an error
 * (opportunistic TLS, RFC 7435) unless REQUIRE_VERIFIED: then it is
 * PB_ERROR_TEMP with the reason, and the caller closes the connection.
 * Other errors as pb_tls_server_start. */
gboolean pb_tls_client_start(PbConn *conn, const char *server_name,
                             const char *ca_file, gboolean require_verified,
                             gint64 deadline, gboolean *verified,
                             GError **error);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", Postfix's
 * wording, for Received: and logs; NULL when CONN is not in TLS. */
char *pb_tls_describe(PbConn *conn);

/* ---- keys for signatures (DKIM) ----
 * The same lazily loaded GnuTLS: a process that only hashes (GChecksum)
 * never maps it; the first key operation does. Every function fails with
 * PB_ERROR_TEMP when the library cannot be loaded. */

typedef enum {
	PB_KEY_RSA,
	PB_KEY_ED25519,
} PbKeyType;

/* A private key, parsed. */
typedef struct _PbPrivKey PbPrivKey;

/* Parses PEM (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY", not
 * encrypted): RSA or Ed25519 only. PB_ERROR_DATA saying why when it is
 * not such a key. */
PbPrivKey *pb_privkey_import_pem(const char *pem, gsize len, GError **error);
/* A new key: RSA of BITS, or Ed25519 (BITS ignored). */
PbPrivKey *pb_privkey_generate(PbKeyType type, guint bits, GError **error);
void pb_privkey_free(PbPrivKey *key);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbPrivKey, pb_privkey_free)
PbKeyType pb_privkey_type(const PbPrivKey *key);
guint pb_privkey_bits(const PbPrivKey *key);
/* The key as PEM PKCS#8 (the caller wipes and frees it). */
char *pb_privkey_export_pem(PbPrivKey *key, GError **error);
/* The public half as DKIM publishes it (RFC 6376 3.6.1, RFC 8463 4):
 * RSA a DER SubjectPublicKeyInfo, Ed25519 the raw 32 octets. */
GBytes *pb_privkey_public(PbPrivKey *key, GError **error);
/* Signs a SHA-256 DIGEST (32 octets): RSA with PKCS #1 v1.5 (the digest
 * wrapped in its DigestInfo), Ed25519 with PureEdDSA over the 32 octets
 * themselves (RFC 8463 3). */
GBytes *pb_privkey_sign_sha256(PbPrivKey *key, const guint8 *digest,
                               GError **error);

/* Checks SIG over the SHA-256 DIGEST with the public KEY of TYPE (encoded
 * as pb_privkey_public makes it). TRUE: it verifies. FALSE with
 * PB_ERROR_PERM: the key cannot be used (not one, wrong type, *BITS below
 * MIN_BITS); PB_ERROR_DATA: the signature does not verify. *BITS is the
 * key's size when it could be read (else 0). */
gboolean pb_pubkey_verify_sha256(PbKeyType type, const guint8 *key,
                                 gsize keylen, guint min_bits,
                                 const guint8 *digest, const guint8 *sig,
                                 gsize siglen, guint *bits, GError **error);

#endif
