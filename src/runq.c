/*
 * runq.c - one pass over the queue: local recipients into Maildirs,
 * remote ones through a forked child per destination (in the process
 * itself for the lone job of smtpd's and sendmail's disposable immediate
 * attempt), then retries, delay notices, bounces and the removal of
 * finished entries. A local-only pass (smtpd's session, after its client
 * has gone) leaves the entries with remote work to the caller.
 *
 * Owns the decisions of a run; the files belong to queue.c and
 * maildir.c. Guarantees:
 *  - an entry is worked on only while this process holds its lock, so two
 *    runs (or a run and smtpd's immediate attempt) never deliver the same
 *    recipient twice; a locked entry is skipped, not waited for;
 *  - every recipient's outcome is written to the envelope (tmp, fsync,
 *    rename, fsync) as soon as it is known, before the next delivery; a
 *    crash can at worst repeat the one delivery in flight;
 *  - remote children never write the queue: they report outcomes over a
 *    pipe and this process records them; a slow destination holds up only
 *    its own child (at most [delivery] parallel at once); every remote
 *    job runs in a child, so a crash in one destination's delivery
 *    (a signal) defers that job's unreported recipients and the run
 *    goes on;
 *  - the work per message does not depend on the size of the queue.
 */
#include "runq.h"
#include "address.h"
#include "dsn.h"
#include "error.h"
#include "local.h"
#include "log.h"
#include "queue.h"
#include "remote.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* How many locked entries wait for their remote jobs at most. */
#define BATCH 200

typedef struct {
	PbQueueEntry *entry;
} Held;

typedef struct {
	char *domain;
	GPtrArray *messages; /* PbRemoteMessage* */
	GPtrArray *held;     /* Held*, parallel to messages (not owned) */
	GHashTable *reported; /* "M I": outcomes the child reported */
} Job;

typedef struct {
	const PbConfig *cfg;
	PbQueue *q;
	PbLocal *local;
	gint64 now;
	gboolean force;
	gboolean disposable; /* the caller's process is an attempt of its own */
	PbRunqStats *stats;
	GPtrArray *ids;	   /* the work list; DSNs queued on the way join it */
	GHashTable *jobs;  /* domain -> Job* */
	GPtrArray *held;   /* Held* of the current batch */
	GPtrArray *left;   /* local only: the ids with remote work left */
} Run;

static void
held_free(Held *h)
{
	pb_queue_entry_free(h->entry);
	g_free(h);
}

static void
remote_message_free(PbRemoteMessage *m)
{
	g_array_unref(m->rcpts);
	g_free(m);
}

static void
job_free(Job *job)
{
	g_free(job->domain);
	g_ptr_array_unref(job->messages);
	g_ptr_array_unref(job->held);
	g_hash_table_unref(job->reported);
	g_free(job);
}

static char *
domain_of(const char *address)
{
	g_autofree char *local = NULL;
	char *domain = NULL;

	if (!pb_address_split(address, &local, &domain))
		return g_strdup("");
	return domain;
}

gboolean
pb_runq_is_local(const PbConfig *cfg, const char *address)
{
	g_autofree char *domain = domain_of(address);

	return pb_config_is_local_domain(cfg, domain);
}

static gboolean
is_local(Run *run, const char *address)
{
	return pb_runq_is_local(run->cfg, address);
}

static gboolean
is_due(Run *run, const PbRecipient *r)
{
	return r->state == PB_RCPT_PENDING &&
	       (run->force || r->next_attempt <= run->now);
}

/* The wait before the next attempt: doubling from retry_interval. */
static gint64
backoff(const PbConfig *cfg, guint attempts)
{
	gint64 wait = cfg->retry_interval;

	for (guint i = 1; i < attempts && wait < cfg->max_backoff; i++)
		wait *= 2;
	return MIN(wait, cfg->max_backoff);
}

/* Records one attempt's outcome in the envelope (not yet written). */
static void
record(Run *run, const PbEnvelope *env, PbRecipient *r, PbOutcomeKind kind,
       const char *dsn, const char *host, const char *reply, gboolean log)
{
	static const char *const status[] = {"sent", "deferred", "bounced"};
	g_autofree char *text = pb_sanitize_text(reply, 1000);

	pb_recipient_add_attempt(r, run->now, host, text);
	g_free(r->dsn);
	r->dsn = g_strdup(dsn);
	g_free(r->last_error);
	r->last_error = NULL;
	if (kind == PB_OUTCOME_SENT) {
		r->state = PB_RCPT_SENT;
		run->stats->delivered++;
	} else if (kind == PB_OUTCOME_TEMP) {
		r->next_attempt = run->now + backoff(run->cfg, r->attempts);
		r->last_error = g_strdup(text);
		run->stats->deferred++;
	} else {
		r->state = PB_RCPT_FAILED;
		r->last_error = g_strdup(text);
		run->stats->bounced++;
	}
	if (log)
		pb_log_info(env->id,
			    "to=<%s>%s%s%s, relay=%s, delay=%.2f, dsn=%s, "
			    "status=%s (%s)",
			    r->address, r->orig ? ", orig_to=<" : "",
			    r->orig ? r->orig : "", r->orig ? ">" : "",
			    *host ? host : "none",
			    MAX(0.0, g_get_real_time() / 1e6 - (double)env->arrival),
			    dsn, status[kind], text);
}

static gboolean
save(PbQueueEntry *entry)
{
	g_autoptr(GError) error = NULL;

	if (pb_queue_entry_update(entry, &error))
		return TRUE;
	pb_log_error(pb_queue_entry_envelope(entry)->id,
		     "cannot save the envelope: %s", error->message);
	return FALSE;
}

/* The envelope now records the deliveries in UNSETTLED (account names):
 * their Maildir markers go (see maildir.c). */
static void
settle(Run *run, const PbEnvelope *env, GPtrArray *unsettled)
{
	for (guint i = 0; i < unsettled->len; i++)
		pb_local_settle(run->local, env->id,
				g_ptr_array_index(unsettled, i));
	g_ptr_array_set_size(unsettled, 0);
}

/* Splits "5.1.1 text" (our errors' form) into its dsn and text. */
static const char *
error_dsn(const GError *error, const char *fallback, const char **text)
{
	static char dsn[16];
	const char *m = error->message;

	if (g_ascii_isdigit(m[0]) && m[1] == '.' && strchr(m, ' ') &&
	    strchr(m, ' ') - m < (long)sizeof(dsn)) {
		g_strlcpy(dsn, m, (gsize)(strchr(m, ' ') - m) + 1);
		*text = strchr(m, ' ') + 1;
		return dsn;
	}
	*text = m;
	return fallback;
}

/* TRUE if a recipient of ENV other than ALIAS is ADDRESS already. */
static gboolean
named_already(const PbEnvelope *env, const PbRecipient *alias,
	      const char *address)
{
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *o = g_ptr_array_index(env->rcpts, i);
		if (o != alias && g_ascii_strcasecmp(o->address, address) == 0)
			return TRUE;
	}
	return FALSE;
}

/* Replaces an alias recipient by its targets, each a recipient of its
 * own, so that each is delivered and retried on its own. */
static void
expand(Run *run, PbEnvelope *env, PbRecipient *r, GPtrArray *targets)
{
	const char *orig = r->orig ? r->orig : r->address;

	for (guint i = 0; i < targets->len; i++) {
		const char *target = g_ptr_array_index(targets, i);
		PbRecipient *t;
		/* a target the message already has (named directly, or by
		 * another alias) gets no second copy: local ones are caught
		 * by their mailbox, remote ones here */
		if (named_already(env, r, target)) {
			pb_log_info(env->id,
				    "to=<%s>, orig_to=<%s>, relay=local, "
				    "status=skipped (already a recipient of "
				    "this message: one copy)",
				    target, orig);
			continue;
		}
		t = pb_envelope_add_rcpt(env, target);
		t->orig = g_strdup(orig);
	}
	r->state = PB_RCPT_SENT;
	pb_recipient_add_attempt(r, run->now, "local", "alias expanded");
	pb_log_info(env->id, "to=<%s>, relay=local, status=expanded (%u)",
		    r->address, targets->len);
}

/* An expansion may not take the envelope past its bound (queue.h). */
static gboolean
fits_expanded(const PbEnvelope *env, GPtrArray *targets, GError **error)
{
	if (env->rcpts->len + targets->len > PB_QUEUE_MAX_RCPTS) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
			    "5.5.3 the alias expands to too many recipients "
			    "(at most %d a message)", PB_QUEUE_MAX_RCPTS);
		return FALSE;
	}
	for (guint i = 0; i < targets->len; i++) {
		const char *t = g_ptr_array_index(targets, i);
		if (strlen(t) > PB_ADDRESS_MAX_PATH) {
			g_set_error(error, PB_ERROR, PB_ERROR_PERM,
				    "5.1.3 the alias expands to an address "
				    "longer than %d octets",
				    PB_ADDRESS_MAX_PATH);
			return FALSE;
		}
	}
	return TRUE;
}

/* R's final mailbox is TWIN's, which had its outcome in this pass: R gets
 * the same one (one message, one copy per mailbox). */
static void
same_as(Run *run, const PbEnvelope *env, PbRecipient *r,
	const PbRecipient *twin)
{
	g_autofree char *why = g_strdup_printf(
	    "same mailbox as <%s>: %s", twin->address,
	    twin->state == PB_RCPT_SENT ? "delivered once"
					: (twin->last_error ? twin->last_error
							    : "not delivered"));

	record(run, env, r,
	       twin->state == PB_RCPT_SENT	   ? PB_OUTCOME_SENT
	       : twin->state == PB_RCPT_PENDING ? PB_OUTCOME_TEMP
						 : PB_OUTCOME_PERM,
	       twin->dsn ? twin->dsn : "2.0.0", "local", why, TRUE);
}

/* Delivers R's copy into the Maildir of ACCOUNT and records the outcome;
 * a delivery whose marker waits for the envelope to be saved is added to
 * UNSETTLED. */
static void
deliver_to(Run *run, PbQueueEntry *entry, PbRecipient *r, const char *account,
	   GHashTable *seen, GPtrArray *unsettled)
{
	PbEnvelope *env = pb_queue_entry_envelope(entry);
	g_autoptr(GError) error = NULL;
	gboolean again = FALSE;
	const char *text;
	const char *dsn;

	if (seen != NULL && g_hash_table_contains(seen, account)) {
		record(run, env, r, PB_OUTCOME_PERM, "5.4.6", "local",
		       "mail forwarding loop (already Delivered-To)", TRUE);
		return;
	}
	if (!pb_local_deliver(run->local, env->id, env->sender, account,
			      env->prepend, pb_queue_entry_data_fd(entry),
			      &again, &error)) {
		dsn = error_dsn(error, "4.2.0", &text);
		record(run, env, r,
		       g_error_matches(error, PB_ERROR, PB_ERROR_PERM)
			   ? PB_OUTCOME_PERM
			   : PB_OUTCOME_TEMP,
		       dsn, "local", text, TRUE);
		return;
	}
	g_ptr_array_add(unsettled, g_strdup(account));
	record(run, env, r, PB_OUTCOME_SENT, "2.0.0", "local",
	       again ? "delivered to maildir (by an earlier attempt)"
		     : "delivered to maildir",
	       TRUE);
}

/* The final mailboxes of the recipients earlier runs delivered (their
 * copies may have moved to cur/ since, where a delivery would not see
 * them): a recipient of this run bound for one of them is settled like
 * the earlier one. An alias that was expanded is no mailbox. */
static void
known_mailboxes(Run *run, const PbEnvelope *env, GHashTable *mailboxes)
{
	for (guint i = 0; i < env->rcpts->len; i++) {
		PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		g_autoptr(GPtrArray) targets =
		    g_ptr_array_new_with_free_func(g_free);
		g_autofree char *account = NULL;

		if (r->state != PB_RCPT_SENT || !is_local(run, r->address))
			continue;
		account = pb_address_canonical(
		    r->address, r->orig ? "" : run->cfg->recipient_delimiter);
		if (r->orig == NULL &&
		    (!pb_local_resolve(run->local, r->address, targets, NULL) ||
		     targets->len != 1 ||
		     strcmp(g_ptr_array_index(targets, 0), account) != 0))
			continue;
		if (!g_hash_table_contains(mailboxes, account))
			g_hash_table_insert(mailboxes, g_steal_pointer(&account),
					    r);
	}
}

/* Resolves recipient I and delivers it, once per final mailbox:
 * MAILBOXES maps the mailboxes this pass settled to their recipient. */
static void
deliver_local(Run *run, PbQueueEntry *entry, guint i, GHashTable *seen,
	      GHashTable *mailboxes, GPtrArray *unsettled)
{
	PbEnvelope *env = pb_queue_entry_envelope(entry);
	PbRecipient *r = g_ptr_array_index(env->rcpts, i);
	g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GError) error = NULL;
	g_autofree char *account = NULL;
	const char *text;
	const char *dsn;

	/* recipients from an expansion are final: no second alias lookup */
	if (r->orig != NULL)
		account = pb_address_canonical(r->address, "");
	else if (!pb_local_resolve(run->local, r->address, targets, &error)) {
		dsn = error_dsn(error, "5.1.1", &text);
		record(run, env, r, PB_OUTCOME_PERM, dsn, "local", text, TRUE);
		return;
	} else {
		account = pb_address_canonical(r->address,
					       run->cfg->recipient_delimiter);
		if (targets->len != 1 ||
		    strcmp(g_ptr_array_index(targets, 0), account) != 0) {
			if (!fits_expanded(env, targets, &error)) {
				dsn = error_dsn(error, "5.5.3", &text);
				record(run, env, r, PB_OUTCOME_PERM, dsn,
				       "local", text, TRUE);
				return;
			}
			expand(run, env, r, targets);
			return;
		}
	}
	if (g_hash_table_contains(mailboxes, account)) {
		same_as(run, env, r, g_hash_table_lookup(mailboxes, account));
		return;
	}
	g_hash_table_insert(mailboxes, g_strdup(account), r);
	deliver_to(run, entry, r, account, seen, unsettled);
}

/* Expired recipients fail; failures are bounced; a delay notice goes out
 * once; a finished entry leaves the queue (then TRUE). */
static gboolean
finish(Run *run, PbQueueEntry *entry)
{
	PbEnvelope *env = pb_queue_entry_envelope(entry);
	gboolean failed = FALSE, pending = FALSE;
	g_autoptr(GError) error = NULL;
	g_autofree char *dsn_id = NULL;

	for (guint i = 0; i < env->rcpts->len; i++) {
		PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (r->state == PB_RCPT_PENDING &&
		    run->now >= env->arrival + run->cfg->bounce_after) {
			g_autofree char *why = g_strdup_printf(
			    "message expired after %" G_GINT64_FORMAT
			    " seconds in the queue; last error: %s",
			    run->now - env->arrival,
			    r->last_error ? r->last_error : "none");
			r->state = PB_RCPT_FAILED;
			g_free(r->dsn);
			r->dsn = g_strdup("4.4.7");
			g_free(r->last_error);
			r->last_error = g_strdup(why);
			run->stats->bounced++;
			pb_log_info(env->id, "to=<%s>, status=expired (%s)",
				    r->address, why);
		}
		failed |= r->state == PB_RCPT_FAILED;
		pending |= r->state == PB_RCPT_PENDING;
	}
	if (failed) {
		if (pb_dsn_queue(run->q, run->cfg, PB_DSN_FAILED, env,
				 pb_queue_entry_data_fd(entry), run->now,
				 &dsn_id, &error)) {
			for (guint i = 0; i < env->rcpts->len; i++) {
				PbRecipient *r = g_ptr_array_index(env->rcpts, i);
				if (r->state == PB_RCPT_FAILED)
					r->state = PB_RCPT_BOUNCED;
			}
			save(entry);
		} else
			pb_log_error(env->id, "cannot queue the bounce: %s",
				     error->message);
	} else if (pending && !env->notice_sent &&
		   run->now >= env->arrival + run->cfg->warn_after) {
		if (pb_dsn_queue(run->q, run->cfg, PB_DSN_DELAYED, env,
				 pb_queue_entry_data_fd(entry), run->now,
				 &dsn_id, &error)) {
			env->notice_sent = TRUE;
			save(entry);
		} else
			pb_log_error(env->id, "cannot queue the delay notice: %s",
				     error->message);
	}
	if (dsn_id != NULL)
		g_ptr_array_add(run->ids, g_steal_pointer(&dsn_id));
	g_clear_error(&error);
	if (!pb_envelope_is_final(env))
		return FALSE;
	if (!pb_queue_entry_remove(entry, &error)) {
		pb_log_error(env->id, "cannot remove: %s", error->message);
		return FALSE;
	}
	pb_log_info(env->id, "removed");
	return TRUE;
}

static Job *
job_for(Run *run, const char *domain)
{
	Job *job = g_hash_table_lookup(run->jobs, domain);

	if (job == NULL) {
		job = g_new0(Job, 1);
		job->domain = g_strdup(domain);
		job->messages = g_ptr_array_new_with_free_func(
		    (GDestroyNotify)remote_message_free);
		job->held = g_ptr_array_new();
		job->reported = g_hash_table_new_full(g_str_hash, g_str_equal,
						      g_free, NULL);
		g_hash_table_insert(run->jobs, job->domain, job);
	}
	return job;
}

/* Hands the due remote recipients of an entry to the jobs of their
 * domains; TRUE if there were any. */
static gboolean
plan_remote(Run *run, Held *held)
{
	PbEnvelope *env = pb_queue_entry_envelope(held->entry);
	g_autoptr(GHashTable) mine =
	    g_hash_table_new(g_str_hash, g_str_equal); /* domain -> msg */
	gboolean any = FALSE;

	for (guint i = 0; i < env->rcpts->len; i++) {
		PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		g_autofree char *domain = NULL;
		PbRemoteMessage *m;
		Job *job;

		if (!is_due(run, r) || is_local(run, r->address))
			continue;
		domain = domain_of(r->address);
		for (char *c = domain; *c; c++)
			*c = g_ascii_tolower(*c);
		job = job_for(run, domain);
		m = g_hash_table_lookup(mine, job->domain);
		if (m == NULL) {
			m = g_new0(PbRemoteMessage, 1);
			m->env = env;
			m->data_fd = pb_queue_entry_data_fd(held->entry);
			m->rcpts = g_array_new(FALSE, FALSE, sizeof(guint));
			g_ptr_array_add(job->messages, m);
			g_ptr_array_add(job->held, held);
			g_hash_table_insert(mine, job->domain, m);
		}
		g_array_append_val(m->rcpts, i);
		any = TRUE;
	}
	return any;
}

/* One outcome as a report line (without its newline): what a delivery
 * child writes on its pipe, and what apply() reads. */
static char *
report_line(const Job *job, const PbRemoteMessage *msg, guint rcpt_index,
	    const PbOutcome *o)
{
	g_autofree char *dsn = pb_sanitize_text(o->dsn ? o->dsn : "", 16);
	g_autofree char *host = pb_sanitize_text(o->host ? o->host : "", 300);
	g_autofree char *tls = pb_sanitize_text(o->tls ? o->tls : "none", 16);
	g_autofree char *reply = pb_sanitize_text(o->reply ? o->reply : "", 2000);
	guint m;

	for (m = 0; m < job->messages->len; m++)
		if (g_ptr_array_index(job->messages, m) == msg)
			break;
	return g_strdup_printf("%u %u %d %s\t%s\t%s\t%s", m, rcpt_index,
			       (int)o->kind, dsn, host, tls, reply);
}

/* In the child: one outcome, one line on the pipe to the parent. */
static void
child_report(void *ctx, const PbRemoteMessage *msg, guint rcpt_index,
	     const PbOutcome *o)
{
	const Job *job = ((const Job **)ctx)[0];
	int fd = GPOINTER_TO_INT(((void **)ctx)[1]);
	g_autofree char *line = report_line(job, msg, rcpt_index, o);
	g_autofree char *nl = g_strconcat(line, "\n", NULL);

	(void)!write(fd, nl, strlen(nl));
}

static pid_t
start_child(Run *run, Job *job, int *rfd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		pb_log_error(NULL, "pipe: %s", g_strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		pb_log_error(NULL, "fork: %s", g_strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		void *ctx[2] = {job, GINT_TO_POINTER(p[1])};
		close(p[0]);
		pb_remote_deliver(run->cfg, job->domain, job->messages,
				  child_report, ctx);
		_exit(0);
	}
	close(p[1]);
	*rfd = p[0];
	return pid;
}

static gboolean
given(const PbRemoteMessage *msg, guint ri)
{
	for (guint j = 0; j < msg->rcpts->len; j++)
		if (g_array_index(msg->rcpts, guint, j) == ri)
			return TRUE;
	return FALSE;
}

/* In the parent: applies one line a child reported. */
static void
apply(Run *run, Job *job, char *line)
{
	char *fields[4] = {NULL};
	guint64 m, ri, kind;
	char *sp1 = strchr(line, ' '), *sp2, *sp3;
	Held *held;
	PbEnvelope *env;
	g_autofree char *host = NULL;

	if (sp1 == NULL || (sp2 = strchr(sp1 + 1, ' ')) == NULL ||
	    (sp3 = strchr(sp2 + 1, ' ')) == NULL)
		goto bad;
	*sp1 = *sp2 = *sp3 = '\0';
	if (job->messages->len == 0 ||
	    !g_ascii_string_to_unsigned(line, 10, 0, job->messages->len - 1,
					&m, NULL) ||
	    !g_ascii_string_to_unsigned(sp1 + 1, 10, 0, G_MAXUINT, &ri,
					NULL) ||
	    !g_ascii_string_to_unsigned(sp2 + 1, 10, 0, 2, &kind, NULL))
		goto bad;
	fields[0] = sp3 + 1;
	for (guint f = 1; f < 4; f++) {
		char *tab = strchr(fields[f - 1], '\t');
		if (tab == NULL)
			goto bad;
		*tab = '\0';
		fields[f] = tab + 1;
	}
	held = g_ptr_array_index(job->held, m);
	env = pb_queue_entry_envelope(held->entry);
	/* only a recipient the job was given, and only once (below) */
	if (!given(g_ptr_array_index(job->messages, m), (guint)ri))
		goto bad;
	/* the TLS outcome rides with the host, so mailq shows it */
	host = *fields[1] ? g_strdup_printf("%s tls=%s", fields[1], fields[2])
			  : g_strdup("");
	if (!g_hash_table_add(job->reported,
			      g_strdup_printf("%u %u", (guint)m, (guint)ri)))
		goto bad; /* a second outcome for one recipient */
	record(run, env, g_ptr_array_index(env->rcpts, ri),
	       (PbOutcomeKind)kind, fields[0], host, fields[3], FALSE);
	save(held->entry);
	return;
bad:
	pb_log_error(NULL, "bad report from a delivery process");
}

typedef struct {
	Job *job;
	pid_t pid;
	int fd;
	GString *buf;
} Child;

/* How a delivery process ended, for the log and the recipients. */
static char *
how_it_ended(int status)
{
	if (WIFSIGNALED(status))
		return g_strdup_printf("killed by signal %d (%s)",
				       WTERMSIG(status),
				       g_strsignal(WTERMSIG(status)));
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		return g_strdup_printf("exit status %d", WEXITSTATUS(status));
	return g_strdup("ended without reporting them");
}

/* After a child's end: every recipient it did not report is deferred
 * (an attempt, so a message that crashes its delivery backs off and
 * expires like any other). */
static void
defer_unreported(Run *run, Job *job, int status)
{
	g_autofree char *how = how_it_ended(status);
	g_autofree char *why = NULL;
	guint n = 0;

	for (guint m = 0; m < job->messages->len; m++) {
		PbRemoteMessage *msg = g_ptr_array_index(job->messages, m);
		Held *held = g_ptr_array_index(job->held, m);
		PbEnvelope *env = pb_queue_entry_envelope(held->entry);

		for (guint j = 0; j < msg->rcpts->len; j++) {
			guint ri = g_array_index(msg->rcpts, guint, j);
			g_autofree char *key = g_strdup_printf("%u %u", m, ri);
			if (g_hash_table_contains(job->reported, key))
				continue;
			if (why == NULL)
				why = g_strdup_printf("delivery process for %s "
						      "%s", job->domain, how);
			record(run, env, g_ptr_array_index(env->rcpts, ri),
			       PB_OUTCOME_TEMP, "4.3.0", "", why, TRUE);
			save(held->entry);
			n++;
		}
	}
	if (n > 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		pb_log_error(NULL,
			     "delivery process for %s %s: %u recipient%s "
			     "deferred",
			     job->domain, how, n, n == 1 ? "" : "s");
}

/* Reads what a child wrote; FALSE at its end. */
static gboolean
drain(Run *run, Child *c)
{
	char chunk[4096];
	ssize_t n = read(c->fd, chunk, sizeof(chunk));
	char *nl;

	if (n < 0 && errno == EINTR)
		return TRUE;
	if (n <= 0) {
		int status = 0;
		close(c->fd);
		while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
			;
		defer_unreported(run, c->job, status);
		g_string_free(c->buf, TRUE);
		return FALSE;
	}
	g_string_append_len(c->buf, chunk, n);
	while ((nl = memchr(c->buf->str, '\n', c->buf->len)) != NULL) {
		*nl = '\0';
		apply(run, c->job, c->buf->str);
		g_string_erase(c->buf, 0, nl - c->buf->str + 1);
	}
	return TRUE;
}

/* In a disposable attempt (pb_runq_attempt): an outcome goes straight to
 * apply(), as a child's report line would. */
static void
own_report(void *ctx, const PbRemoteMessage *msg, guint rcpt_index,
	   const PbOutcome *o)
{
	Run *run = ((Run **)ctx)[0];
	Job *job = ((Job **)ctx)[1];
	g_autofree char *line = report_line(job, msg, rcpt_index, o);

	apply(run, job, line);
}

/* Runs every job, at most [delivery] parallel at once, then finishes the
 * entries they held. */
static void
run_jobs(Run *run)
{
	g_autoptr(GPtrArray) todo = g_ptr_array_new();
	GHashTableIter it;
	gpointer job;
	g_autoptr(GArray) kids = g_array_new(FALSE, FALSE, sizeof(Child));
	guint next = 0;

	g_hash_table_iter_init(&it, run->jobs);
	while (g_hash_table_iter_next(&it, NULL, &job))
		g_ptr_array_add(todo, job);
	/* In a disposable attempt a lone job needs no child: a crash ends
	 * only the attempt, whose messages stay queued for runq (which does
	 * isolate each destination). One fork less per relayed message. */
	if (run->disposable && todo->len == 1) {
		void *ctx[2] = {run, g_ptr_array_index(todo, 0)};
		pb_remote_deliver(run->cfg, ((Job *)ctx[1])->domain,
				  ((Job *)ctx[1])->messages, own_report, ctx);
		next = todo->len;
	}
	/* Otherwise every job, a lone one too, runs in a child: whatever
	 * a remote server makes it do, a crash ends that destination's
	 * attempt only, and this run goes on to expiry, bounces and
	 * notices (the fork costs well under a millisecond: README). */
	while (next < todo->len || kids->len > 0) {
		g_autofree struct pollfd *pfd = NULL;

		while (next < todo->len && kids->len < run->cfg->parallel) {
			Child c = {.job = g_ptr_array_index(todo, next++)};
			c.pid = start_child(run, c.job, &c.fd);
			if (c.pid < 0)
				continue; /* its recipients stay due */
			c.buf = g_string_new(NULL);
			g_array_append_val(kids, c);
		}
		if (kids->len == 0)
			break;
		pfd = g_new0(struct pollfd, kids->len);
		for (guint i = 0; i < kids->len; i++) {
			pfd[i].fd = g_array_index(kids, Child, i).fd;
			pfd[i].events = POLLIN;
		}
		if (poll(pfd, kids->len, -1) < 0 && errno != EINTR)
			break;
		for (guint i = kids->len; i-- > 0;)
			if (pfd[i].revents && !drain(run, &g_array_index(kids, Child, i)))
				g_array_remove_index(kids, i);
	}
	g_hash_table_remove_all(run->jobs);
	for (guint i = 0; i < run->held->len; i++)
		finish(run, ((Held *)g_ptr_array_index(run->held, i))->entry);
	g_ptr_array_set_size(run->held, 0);
}

/* An entry whose envelope cannot be read (WHY) never ends silently: it
 * is set aside with its data (queue.c), counted, logged, and postmaster
 * gets a notice with the message's header and what could be read of the
 * envelope; the notice is delivered in this same run. */
static void
unreadable(Run *run, const char *id, const GError *why)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *salvage = NULL;
	g_autofree char *notice = NULL;
	g_auto(PbFd) fd = pb_queue_set_aside(run->q, id, &salvage, &error);

	if (fd < 0 && g_error_matches(error, PB_ERROR, PB_ERROR_BUSY))
		return; /* another process has it, or it was mended */
	run->stats->corrupt++;
	if (fd < 0) {
		pb_log_error(id, "envelope unreadable (%s); cannot set it "
			     "aside: %s", why->message, error->message);
		return;
	}
	pb_log_error(id,
		     "envelope unreadable (%s): set aside as "
		     "corrupt/%s.env and corrupt/%s.msg",
		     why->message, id, id);
	if (!pb_dsn_queue_unreadable(run->q, run->cfg, id, why->message,
				     salvage, fd, run->now, &notice, &error))
		pb_log_error(id, "cannot queue the postmaster notification: %s",
			     error->message);
	else
		g_ptr_array_add(run->ids, g_steal_pointer(&notice));
}

/* Delivers the due local recipients of ENTRY, saving the envelope after
 * each but the last; UNSETTLED gets the deliveries whose markers wait for
 * the last save. FALSE if the message cannot be read. */
static gboolean
deliver_locals(Run *run, PbQueueEntry *entry, GPtrArray *unsettled)
{
	PbEnvelope *env = pb_queue_entry_envelope(entry);
	g_autoptr(GError) error = NULL;
	g_autoptr(GHashTable) seen = NULL;
	g_autoptr(GHashTable) mailboxes =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

	/* the index runs on as alias expansion appends recipients */
	for (guint i = 0; i < env->rcpts->len; i++) {
		PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (!is_due(run, r) || !is_local(run, r->address))
			continue;
		if (seen == NULL) {
			seen = pb_local_delivered_to(
			    pb_queue_entry_data_fd(entry), &error);
			if (seen == NULL) {
				pb_log_error(env->id, "cannot read: %s",
					     error->message);
				return FALSE;
			}
			known_mailboxes(run, env, mailboxes);
		}
		deliver_local(run, entry, i, seen, mailboxes, unsettled);
		/* the last delivery's state is saved by removing the entry
		 * (finish() below): two fsyncs less per message */
		if (!pb_envelope_is_final(env) && save(entry))
			settle(run, env, unsettled);
	}
	return TRUE;
}

/* TRUE if ENV has a due remote recipient. */
static gboolean
remote_due(Run *run, const PbEnvelope *env)
{
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (is_due(run, r) && !is_local(run, r->address))
			return TRUE;
	}
	return FALSE;
}

static void
process(Run *run, const char *id)
{
	g_autoptr(GError) error = NULL;
	PbQueueEntry *entry = pb_queue_lock(run->q, id, &error);
	PbEnvelope *env;
	g_autoptr(GPtrArray) unsettled = g_ptr_array_new_with_free_func(g_free);
	Held *held;

	if (entry == NULL) {
		if (g_error_matches(error, PB_ERROR, PB_ERROR_BUSY))
			run->stats->busy++;
		else if (g_error_matches(error, PB_ERROR, PB_ERROR_DATA))
			unreadable(run, id, error);
		else if (!g_error_matches(error, PB_ERROR, PB_ERROR_NOTFOUND))
			pb_log_error(id, "skipped: %s", error->message);
		return;
	}
	env = pb_queue_entry_envelope(entry);
	if (env->held) {
		pb_queue_entry_free(entry);
		return;
	}
	run->stats->messages++;
	if (!deliver_locals(run, entry, unsettled)) {
		pb_queue_entry_free(entry);
		return;
	}
	/* local only: an entry with remote work is not final, so
	 * deliver_locals saved it after every delivery; it goes, unlocked,
	 * to the caller's remote attempt (finished there) */
	if (run->left != NULL && remote_due(run, env)) {
		g_ptr_array_add(run->left, g_strdup(id));
		pb_queue_entry_free(entry);
		return;
	}
	held = g_new0(Held, 1);
	held->entry = entry;
	if (!plan_remote(run, held)) {
		if (finish(run, entry))
			settle(run, env, unsettled);
		held_free(held);
		return;
	}
	g_ptr_array_add(run->held, held);
	if (run->held->len >= BATCH)
		run_jobs(run);
}

gboolean
pb_runq_run(const PbConfig *cfg, char **ids, gboolean force,
	    PbRunqStats *stats, GError **error)
{
	g_autoptr(PbQueue) q = pb_queue_open(cfg->queue, error);
	g_autoptr(PbLocal) local = NULL;

	memset(stats, 0, sizeof(*stats));
	if (q == NULL || (local = pb_local_new(cfg, error)) == NULL)
		return FALSE;
	return pb_runq_run_on(cfg, q, local, ids, force, stats, error);
}

static gboolean
run_on(Run *init, PbQueue *q, PbLocal *local, char **ids, GError **error);

gboolean
pb_runq_run_on(const PbConfig *cfg, PbQueue *q, PbLocal *local, char **ids,
	       gboolean force, PbRunqStats *stats, GError **error)
{
	Run run = {.cfg = cfg, .force = force, .stats = stats};

	return run_on(&run, q, local, ids, error);
}

gboolean
pb_runq_attempt(const PbConfig *cfg, PbQueue *q, PbLocal *local, char **ids,
		PbRunqStats *stats, GError **error)
{
	Run run = {.cfg = cfg, .disposable = TRUE, .stats = stats};

	return run_on(&run, q, local, ids, error);
}

gboolean
pb_runq_attempt_local(const PbConfig *cfg, PbQueue *q, PbLocal *local,
		      char **ids, GPtrArray *left, PbRunqStats *stats,
		      GError **error)
{
	Run run = {.cfg = cfg, .disposable = TRUE, .stats = stats, .left = left};

	return run_on(&run, q, local, ids, error);
}

static gboolean
run_on(Run *init, PbQueue *q, PbLocal *local, char **ids, GError **error)
{
	g_autoptr(GPtrArray) held = NULL;
	Run run = *init;
	gboolean force = run.force;
	PbRunqStats *stats = run.stats;

	memset(stats, 0, sizeof(*stats));
	run.now = g_get_real_time() / G_USEC_PER_SEC;
	if (ids == NULL) {
		run.ids = force ? pb_queue_list(q, error)
				: pb_queue_list_due(q, run.now, error);
		if (run.ids == NULL)
			return FALSE;
		(void)pb_queue_clean_stale(q, 24 * 3600, NULL);
	} else {
		run.ids = g_ptr_array_new_with_free_func(g_free);
		for (guint i = 0; ids[i] != NULL; i++)
			g_ptr_array_add(run.ids, g_strdup(ids[i]));
	}
	run.q = q;
	run.local = local;
	run.jobs = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
					 (GDestroyNotify)job_free);
	run.held = held = g_ptr_array_new_with_free_func((GDestroyNotify)held_free);
	/* the list grows as bounces and notices are queued (also by the
	 * remote jobs): they are delivered in this same run */
	for (guint i = 0; i < run.ids->len;) {
		for (; i < run.ids->len; i++)
			process(&run, g_ptr_array_index(run.ids, i));
		run_jobs(&run);
	}
	g_hash_table_unref(run.jobs);
	g_ptr_array_unref(run.ids);
	return TRUE;
}
