/*
 * explain.h - mailq --explain: why one queued message is where it is.
 *
 * For each recipient: its state, where it goes (local Maildir, a static
 * route, or the MX hosts and addresses as DNS names them now), every
 * attempt remembered (time, host, TLS, reply), the next attempt, and the
 * delay-notice and bounce deadlines. Read-only: takes no lock, so it
 * works while runq holds the message.
 */
#ifndef PB_EXPLAIN_H
#define PB_EXPLAIN_H

#include <glib.h>

#include "config.h"
#include "queue.h"

GString *pb_explain(const PbConfig *cfg, PbQueue *q, const char *id,
                    GError **error);

#endif
