/*
 * runq.h - one pass over the queue: the delivery code that runq, smtpd's
 * immediate attempt and sendmail all run.
 */
#ifndef PB_RUNQ_H
#define PB_RUNQ_H

#include <glib.h>

#include "config.h"
#include "local.h"
#include "queue.h"

typedef struct {
	guint messages;	 /* queue entries looked at */
	guint delivered; /* recipients delivered */
	guint deferred;	 /* recipients left for a later run */
	guint bounced;	 /* recipients failed for good */
	guint busy;	 /* entries skipped: another process has them */
	guint corrupt;	 /* entries whose envelope could not be read: set
			    aside in QUEUE/corrupt/, postmaster told */
} PbRunqStats;

/* Delivers what is due (everything with FORCE) of the messages IDS
 * (NULL: the whole queue). Bounces, delay notices and expired messages are
 * handled on the way; the DSN messages it queues are delivered in the
 * same pass. FALSE only when the queue itself cannot be used. */
gboolean pb_runq_run(const PbConfig *cfg, char **ids, gboolean force,
		     PbRunqStats *stats, GError **error);
/* The same, with the queue and the recipient tables the caller has open
 * already (smtpd's session: its immediate attempt loads nothing again). */
gboolean pb_runq_run_on(const PbConfig *cfg, PbQueue *q, PbLocal *local,
			char **ids, gboolean force, PbRunqStats *stats,
			GError **error);
/* The immediate attempt at IDS, in a process of its own that may die
 * (smtpd's and sendmail's): as pb_runq_run_on, but a lone remote job
 * runs in this process instead of a child (a crash loses nothing: the
 * messages stay queued, and runq isolates each destination). */
gboolean pb_runq_attempt(const PbConfig *cfg, PbQueue *q, PbLocal *local,
			 char **ids, PbRunqStats *stats, GError **error);
/* The local part of such an attempt only (smtpd's session process, which
 * starts no remote delivery): as pb_runq_attempt, but an entry that
 * still has due remote recipients once its local ones are done (alias
 * targets elsewhere, a bounce to a remote sender) is left unlocked, its
 * id added to LEFT (g_free'd strings) for a remote attempt. */
gboolean pb_runq_attempt_local(const PbConfig *cfg, PbQueue *q,
			       PbLocal *local, char **ids, GPtrArray *left,
			       PbRunqStats *stats, GError **error);
/* TRUE if ADDRESS's domain is one of ours (a local recipient). */
gboolean pb_runq_is_local(const PbConfig *cfg, const char *address);

#endif
