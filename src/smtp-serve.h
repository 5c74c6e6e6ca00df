/*
 * smtp-serve.h - the socket side of an SMTP session: reads lines and DATA
 * from a PbConn with deadlines, feeds the smtp-server state machine,
 * writes its replies, and connects its hooks to the queue and the local
 * recipient tables.
 */
#ifndef PB_SMTP_SERVE_H
#define PB_SMTP_SERVE_H

#include "config.h"
#include "dkim.h"
#include "listener.h"
#include "local.h"
#include "queue.h"
#include "tls.h"

/* How the listener serves its sessions. */
typedef struct {
	const PbConfig *cfg;
	PbTlsServer *tls;      /* NULL: no STARTTLS, no implicit TLS */
	PbDkimSigner *dkim;    /* NULL: no DKIM signing */
	gboolean implicit_tls; /* --tls: TLS before the greeting (465) */
	gboolean submission;   /* --submission: AUTH before MAIL (587) */
	const char *user;      /* sendmail -bs: the local user, as if
	                          authenticated (their own senders only) */
	/* sendmail -bs: fds 0/1 lead to the local program that ran us,
	 * trusted as loopback is (the listener never sets it) */
	gboolean local_program;
} PbSmtpServe;

/* Serves one session on RFD/WFD. Once the client has gone (and the fds
 * are closed) it makes the immediate delivery attempt of the messages it
 * accepted, unless [main] delivery = queue: in this process when every
 * recipient is local (having given the listener its slot back, see
 * pb_listener_release), else forked (pb_smtp_attempt_detached).
 * TRUE: the process may serve another client ([smtpd] max_use): nothing
 * of this one is left in its state, and no password passed through it
 * (a session that tried AUTH, or sendmail -bs, returns FALSE). */
gboolean pb_smtp_serve(const PbSmtpServe *how, int rfd, int wfd,
                       const PbPeer *peer);

/* The immediate delivery attempt of the queued messages IDS (NULL-ended),
 * smtpd's and sendmail's alike: forked, so this returns at once; it takes
 * one of [delivery] parallel slots (none free: the messages wait for
 * runq) and is stopped, with all it started, after [delivery]
 * immediate_timeout. LOCAL NULL: the attempt loads the tables. DETACH:
 * the attempt leaves the caller's session and terminal (pb_program_detach).
 */
void pb_smtp_attempt_detached(const PbConfig *cfg, PbQueue *q, PbLocal *local,
                              char **ids, gboolean detach);

#endif
