/*
 * pop3-serve.h - one POP3 connection: the loop between the socket and
 * the session state machine (pop3-server.h), with the accounts file and
 * the account's Maildir (mailbox.h) behind the hooks.
 */
#ifndef PB_POP3_SERVE_H
#define PB_POP3_SERVE_H

#include "config.h"
#include "listener.h"
#include "tls.h"

typedef struct {
	const PbConfig *cfg;
	PbTlsServer *tls;      /* NULL: no STLS, no implicit TLS */
	gboolean implicit_tls; /* --tls (995) */
} PbPop3Serve;

/* Serves one session on RFD/WFD; returns when it ends. */
void pb_pop3_serve(const PbPop3Serve *how, int rfd, int wfd,
                   const PbPeer *peer);

#endif
