/*
 * remote.h - delivery of queued messages to one remote destination over
 * SMTP: resolve the route or the MX hosts (dns), connect to each address
 * in turn, and run one SMTP transaction per message (smtp-client),
 * reusing the connection for the next message.
 *
 * Runs in a child process forked by runq for one destination; it never
 * touches the queue's envelopes itself: every recipient's outcome is
 * handed to the REPORT callback as soon as it is known (runq saves it).
 * Guarantees: every recipient given is reported exactly once; a
 * connection that drops after the final dot is reported as a temporary
 * failure and logged "possible duplicate".
 */
#ifndef PB_REMOTE_H
#define PB_REMOTE_H

#include <glib.h>

#include "config.h"
#include "queue.h"

typedef enum {
	PB_OUTCOME_SENT,
	PB_OUTCOME_TEMP,
	PB_OUTCOME_PERM,
} PbOutcomeKind;

typedef struct {
	PbOutcomeKind kind;
	const char *dsn;   /* "2.0.0", "4.4.1", "5.1.1" */
	const char *host;  /* "mx.example.net[192.0.2.1]:25", or "" when no
			      host was reached */
	const char *reply; /* the remote reply or our own diagnosis;
			      sanitised (pb_sanitize_text) */
	const char *tls;   /* "none", "unverified" or "verified" */
} PbOutcome;

/* One message to send: the recipients of ENV (indexes into env->rcpts)
 * that belong to this destination. */
typedef struct {
	const PbEnvelope *env;
	int data_fd;	  /* msg/ID, read from offset 0 with pread */
	GArray *rcpts;	  /* guint indexes */
} PbRemoteMessage;

typedef void (*PbRemoteReport)(void *ctx, const PbRemoteMessage *msg,
			       guint rcpt_index, const PbOutcome *outcome);

/* Delivers MESSAGES (PbRemoteMessage*) for DOMAIN (lowercased; the
 * recipients' domain) and reports every recipient. */
void pb_remote_deliver(const PbConfig *cfg, const char *domain,
		       GPtrArray *messages, PbRemoteReport report, void *ctx);

#endif
