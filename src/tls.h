/*
 * tls.h - TLS with GnuTLS under a PbConn: the server side (STARTTLS, STLS,
 * implicit TLS on 465/995) and the client side (runq's opportunistic
 * STARTTLS).
 *
 * Priorities: the system's default (GnuTLS's @SYSTEM, which Debian ties to
 * crypto policies) with TLS 1.0 and 1.1 removed: TLS 1.2 is the minimum.
 * Guarantees: a handshake waits no longer than its deadline; after a
 * successful start every read and write of the connection goes through
 * TLS. The caller empties the connection's input buffer before a
 * STARTTLS handshake (pb_conn_purge_input): nothing sent in the clear
 * before it may be read as if it came inside TLS (CVE-2011-0411).
 */
#ifndef PB_TLS_H
#define PB_TLS_H

#include <glib.h>

#include "config.h"
#include "conn.h"

/* The server's certificate and key, loaded once (before privileges are
 * dropped, since the key is often readable by root only). */
typedef struct _PbTlsServer PbTlsServer;

/* TRUE when [tls] certificate and key are set. */
gboolean pb_tls_configured(const PbConfig *cfg);

/* Loads [tls] certificate (a PEM chain) and key; PB_ERROR_CONFIG naming
 * the file when one is missing, unreadable, or they do not match. */
PbTlsServer *pb_tls_server_new(const PbConfig *cfg, GError **error);
/* The same from explicit files (tests, tools). */
PbTlsServer *pb_tls_server_new_from_files(const char *certificate,
                                          const char *key, GError **error);
void pb_tls_server_free(PbTlsServer *srv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbTlsServer, pb_tls_server_free)

/* The server handshake on CONN; on success CONN speaks TLS. */
gboolean pb_tls_server_start(PbConn *conn, PbTlsServer *srv, gint64 deadline,
                             GError **error);

/* The client handshake with SNI SERVER_NAME. The chain is checked
 * against CA_FILE (NULL: the system's trust store) and the host name;
 * *VERIFIED says whether it passed. A failed check is not an error
 * unless REQUIRE_VERIFIED (opportunistic TLS, RFC 7435). */
gboolean pb_tls_client_start(PbConn *conn, const char *server_name,
                             const char *ca_file, gboolean require_verified,
                             gint64 deadline, gboolean *verified,
                             GError **error);

/* "TLS1.3 with AES-256-GCM" for Received: and logs; NULL in the clear. */
char *pb_tls_describe(PbConn *conn);

#endif
