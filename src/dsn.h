/*
 * dsn.h - delivery status notifications (RFC 3464, RFC 3462
 * multipart/report): bounces (Action: failed) and delay notices
 * (Action: delayed), written straight into the queue as new messages from
 * MAILER-DAEMON with the null sender.
 *
 * Guarantees: the original message is streamed, never held in memory (a
 * bounce attaches its headers only: text/rfc822-headers); remote reply
 * text reaches the report only as sanitised by the queue; a message whose
 * sender is <> is never bounced to its sender: its report (a double
 * bounce) goes to postmaster instead, with the null sender, and a double
 * bounce of a double bounce is only logged.
 */
#ifndef PB_DSN_H
#define PB_DSN_H

#include <glib.h>

#include "config.h"
#include "queue.h"

typedef enum {
	PB_DSN_FAILED,  /* covers the recipients in state PB_RCPT_FAILED */
	PB_DSN_DELAYED, /* covers the recipients in state PB_RCPT_PENDING */
} PbDsnKind;

/* Writes the report for ENV into a new queue message (read the original
 * from DATA_FD, offset 0, with pread); NOW is the time of the report.
 * *NEW_ID (optional) is set to the new queue id, or NULL when nothing was
 * queued (a double bounce of a double bounce, logged). */
gboolean pb_dsn_queue(PbQueue *q, const PbConfig *cfg, PbDsnKind kind,
                      const PbEnvelope *env, int data_fd, gint64 now,
                      char **new_id, GError **error);

/* A notice to postmaster (from <>) that queue entry ID was set aside
 * because its envelope is unreadable (REASON), with what could be read of
 * it (SALVAGE, pb_envelope_salvage's lines) and the message's header
 * attached from DATA_FD; the text names the files in QUEUE/corrupt/.
 * *NEW_ID is the notice's queue id. As a message from <> to postmaster,
 * its own failure is only logged (a double bounce). */
gboolean pb_dsn_queue_unreadable(PbQueue *q, const PbConfig *cfg,
                                 const char *id, const char *reason,
                                 const char *salvage, int data_fd, gint64 now,
                                 char **new_id, GError **error);

#endif
