/*
 * admin.h - what the operator does to the queue: hold, release, delete
 * and requeue a message (mailq), verify and repair the queue's
 * invariants (runq --check [--repair]), and the status file each full
 * queue run leaves for monitoring.
 *
 * Guarantees: every change takes the message's lock first (a message
 * being delivered is refused with PB_ERROR_BUSY, never changed under the
 * delivery); repair never deletes a message: a damaged entry is moved
 * into QUEUE/corrupt/ for the operator.
 */
#ifndef PB_ADMIN_H
#define PB_ADMIN_H

#include <glib.h>

#include "queue.h"
#include "runq.h"

typedef enum {
	PB_ADMIN_HOLD,    /* runq leaves it alone until released */
	PB_ADMIN_RELEASE, /* back to normal, due now */
	PB_ADMIN_REQUEUE, /* every pending recipient due now */
	PB_ADMIN_DELETE,  /* removed without a bounce */
} PbAdminAction;

/* Applies ACTION to message ID; logs it. */
gboolean pb_admin_apply(PbQueue *q, const char *id, PbAdminAction action,
                        GError **error);

/* The ids of every queued message (for "ALL"). */
GPtrArray *pb_admin_all(PbQueue *q, GError **error);

/* Checks the queue at time NOW; appends one line per problem to REPORT
 * (with what was done when REPAIR) and returns how many problems were
 * found (-1 on an error that stopped the check). */
int pb_admin_check(PbQueue *q, gboolean repair, gint64 now, GString *report,
                   GError **error);

/* QUEUE/status after a full run: key=value lines (see README). */
gboolean pb_admin_write_status(PbQueue *q, const PbRunqStats *stats,
                               gint64 started, gint64 duration_ms,
                               GError **error);

/* mailuser dkim-keygen: a new RSA key of BITS (2048 to 8192) or Ed25519
 * key for DOMAIN and SELECTOR, written to FILE (NULL: the [dkim] key or
 * ed25519_key when set, else dkim/DOMAIN.SELECTOR.TYPE.pem beside the
 * configuration) mode 0600, owned by [main] user when run as root; never
 * over an existing file. OUT gets the [dkim] lines and the TXT record,
 * in strings of at most 255 octets. */
gboolean pb_admin_dkim_keygen(const PbConfig *cfg, gboolean ed25519, guint bits,
                              const char *domain, const char *selector,
                              const char *file, GString *out, GError **error);

/* mailuser dkim-verify: checks every DKIM signature of the message on FD
 * (keys from DNS, [delivery] nameservers); OUT gets one RFC 8601 resinfo
 * a line ("dkim=none" without signatures); *ALL_PASS: there is one and
 * all pass. */
gboolean pb_admin_dkim_verify(const PbConfig *cfg, int fd, GString *out,
                              gboolean *all_pass, GError **error);

/* The arrival time encoded in a queue id (seconds), or -1. */
gint64 pb_admin_id_time(const char *id);

#endif
