/*
 * imap-serve.h - one IMAP connection: the loop between the socket and
 * the session state machine (imap-server.h), with the accounts file, the
 * failed-login rate limit, the per-user connection slots and the IDLE
 * wait (poll and inotify) behind it.
 */
#ifndef PB_IMAP_SERVE_H
#define PB_IMAP_SERVE_H

#include "config.h"
#include "listener.h"
#include "tls.h"

/* The file in an account's Maildir whose bytes 0..N-1 are the slots of
 * [imapd] max_user_connections (one byte-range lock a session). */
#define PB_IMAP_SLOTS_FILE "pillarbox-imapd.slots"

typedef struct {
	const PbConfig *cfg;
	PbTlsServer *tls;      /* NULL: no STARTTLS, no implicit TLS */
	gboolean implicit_tls; /* --tls (993) */
} PbImapServe;

/* Serves one session on RFD/WFD; returns when it ends. */
void pb_imap_serve(const PbImapServe *how, int rfd, int wfd,
                   const PbPeer *peer);

/* Takes a free slot of the ones in MAILDIR/PB_IMAP_SLOTS_FILE (at most
 * MAX): returns an fd holding it (an open file description lock: it is
 * released when the fd is closed or the process ends, even by a crash),
 * or -1: *FULL TRUE when all MAX are taken, else ERROR is set. */
int pb_imap_slot_take(const char *maildir, guint max, gboolean *full,
                      GError **error);

#endif
