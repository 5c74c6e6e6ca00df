/*
 * smtp-serve.c - one SMTP connection: the loop between the socket and the
 * session state machine, and the hooks that bind the session to the
 * queue (queue.c) and the recipient tables (local.c).
 *
 * Guarantees: every read has the [smtpd] timeout as deadline; replies are
 * flushed only when the client waits for them (PIPELINING); the queue
 * transaction is committed (durably) before the session may answer 250;
 * the immediate delivery attempt runs only after the client's connection
 * is closed, and holds no connection slot: under a listener the session's
 * own process makes it once it has given its slot back
 * (pb_listener_release); in the inetd style, where nothing can be given
 * back, it delivers mail for local recipients only, and only when an
 * attempt slot is free at once; anything else there (a remote
 * recipient, what local delivery leaves for elsewhere, sendmail -bs's
 * mail) goes to a detached process the session forks (no exec) before it
 * ends. At most
 * [delivery] parallel attempts run at once (each holds a lock on one
 * byte of QUEUE/immediate.lock; with none free the message simply waits
 * for runq), and each is stopped, with everything it started, at
 * [delivery] immediate_timeout after the attempt began: a stopped
 * attempt is a crash as far as the queue is concerned, and runq
 * finishes the job. Either runs as the session ran: as [main] user.
 */
#include "smtp-serve.h"
#include "accounts.h"
#include "address.h"
#include "auth.h"
#include "conn.h"
#include "dns.h"
#include "error.h"
#include "local.h"
#include "log.h"
#include "program.h"
#include "queue.h"
#include "ratelimit.h"
#include "runq.h"
#include "smtp-server.h"
#include "self.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#define AUTH_DELAY_MS 1000 /* after a failed AUTH */
/* all inbound checks of one message together (SPF alone: RFC 7208
 * section 4.6.4 asks for at least 20 s), within [smtpd] timeout */
#define AUTH_CHECK_SECONDS 30

typedef struct {
	const PbConfig *cfg;
	const PbSmtpServe *how;
	const PbPeer *peer;
	PbQueue *q;     /* opened by the first transaction */
	PbLocal *local; /* its tables read when first needed: tables() */
	gboolean tables_failed;
	gboolean remote; /* an accepted message has a remote recipient */
	gboolean tls;    /* the session used TLS (implicit or STARTTLS) */
	PbResolver *resolver; /* the inbound checks': made when first needed */
} Serve;

/* The recipient tables, read on the first lookup or AUTH (a connection
 * that only says QUIT, or relays, reads no file). FALSE (logged once; the
 * session answers 451 4.3.0 from then on): they cannot be read. */
static gboolean
tables(Serve *sv)
{
	g_autoptr(GError) error = NULL;

	if (sv->tables_failed)
		return FALSE;
	if (pb_local_load(sv->local, &error))
		return TRUE;
	pb_log_error(NULL, "%s", error->message);
	sv->tables_failed = TRUE;
	return FALSE;
}

static gboolean
hook_recipient_exists(void *data, const char *address)
{
	Serve *sv = data;

	return tables(sv) && pb_local_exists(sv->local, address);
}

static gboolean
hook_lookup_failed(void *data)
{
	return ((Serve *)data)->tables_failed;
}

/* The session's transaction: the queue's, plus who we are serving. */
typedef struct {
	PbQueueTx *tx;
	Serve *sv;
} Tx;

static void *
hook_tx_begin(void *data, const char **qid, GError **error)
{
	Serve *sv = data;
	PbQueueTx *qtx;
	Tx *tx;

	if (sv->q == NULL &&
	    (sv->q = pb_queue_open(sv->cfg->queue, error)) == NULL) {
		pb_log_error(NULL, "%s", (*error)->message);
		return NULL;
	}
	if ((qtx = pb_queue_tx_begin(sv->q, error)) == NULL)
		return NULL;
	tx = g_new0(Tx, 1);
	tx->tx = qtx;
	tx->sv = data;
	*qid = pb_queue_tx_id(qtx);
	return tx;
}

static gboolean
hook_tx_write(void *tx, const void *buf, gsize len, GError **error)
{
	return pb_queue_tx_write(((Tx *)tx)->tx, buf, len, error);
}

static gboolean
hook_tx_commit(void *data, const char *sender, GPtrArray *recipients,
               const char *helo, gboolean smtputf8, GError **error)
{
	g_autofree Tx *tx = data;
	g_autoptr(PbEnvelope) env = pb_envelope_new();

	g_free(env->sender);
	env->sender = g_strdup(sender);
	env->smtputf8 = smtputf8;
	env->client =
	    g_strdup_printf("%s [%s]", helo ? helo : "", tx->sv->peer->ip);
	for (guint i = 0; i < recipients->len; i++)
		pb_envelope_add_rcpt(env, g_ptr_array_index(recipients, i));
	if (!pb_queue_tx_commit(tx->tx, env, error))
		return FALSE;
	for (guint i = 0; i < recipients->len; i++)
		tx->sv->remote |= !pb_runq_is_local(
		    tx->sv->cfg, g_ptr_array_index(recipients, i));
	pb_log_info(env->id,
	            "from=<%s>, size=%" G_GUINT64_FORMAT
	            ", nrcpt=%u, client=%s (queued)",
	            env->sender, env->size, recipients->len, env->client);
	return TRUE;
}

static void
hook_tx_abort(void *data)
{
	g_autofree Tx *tx = data;

	pb_queue_tx_abort(tx->tx);
}

static void
hook_tx_signed(void *data, const char *fields, const char *domain,
               const char *why)
{
	Tx *tx = data;

	if (fields != NULL)
		pb_queue_tx_set_prepend(tx->tx, fields);
	if (fields != NULL)
		pb_log_info(pb_queue_tx_id(tx->tx), "dkim: signed d=%s",
		            domain);
	else
		pb_log_info(pb_queue_tx_id(tx->tx), "dkim: not signed: %s",
		            why);
}

/* The inbound checks (auth.h); their Authentication-Results field is
 * prepended. No resolver: 451, a temporary error. */
static char *
hook_tx_check(void *data, const PbSmtpInbound *in)
{
	Tx *tx = data;
	Serve *sv = tx->sv;
	const char *qid = pb_queue_tx_id(tx->tx);
	g_autoptr(GError) error = NULL;
	g_autofree char *summary = NULL;
	g_autofree char *header = NULL;
	char *refusal;
	PbAuthResults r;

	if (in->removed > 0)
		pb_log_info(qid,
		            "auth: removed %u Authentication-Results "
		            "field(s) claiming to be ours",
		            in->removed);
	if (in->verify == NULL)
		return NULL;
	if (sv->resolver == NULL &&
	    (sv->resolver = pb_dns_resolver_new(sv->cfg, &error)) == NULL) {
		pb_log_warn(qid, "auth: %s", error->message);
		return g_strdup("451 4.4.3 Error: cannot check the message "
		                "now (DNS), try again later");
	}
	PbAuthRequest req = {.ip = in->ip,
	                     .helo = in->helo ? in->helo : "",
	                     .sender = in->sender ? in->sender : "",
	                     .hostname = sv->cfg->hostname,
	                     .now = g_get_real_time() / G_USEC_PER_SEC,
	                     .deadline = pb_deadline_in(MIN(
	                         sv->cfg->smtpd_timeout, AUTH_CHECK_SECONDS)),
	                     .sample = (guint)g_random_int_range(0, 100)};
	pb_auth_check(sv->resolver, &req, in->verify, &r);
	refusal = pb_auth_decide(sv->cfg, &r);
	summary = pb_auth_summary(&r);
	if (refusal != NULL)
		pb_log_info(qid, "auth: %s: refused: %s", summary, refusal);
	else {
		pb_log_info(qid, "auth: %s", summary);
		header = pb_auth_header(sv->cfg->hostname, &r);
		pb_queue_tx_set_prepend(tx->tx, header);
	}
	pb_auth_results_clear(&r);
	return refusal;
}

static gboolean
hook_authenticate(void *data, const char *user, const char *pass)
{
	Serve *sv = data;
	g_autofree char *canonical = pb_address_canonical(user, "");
	gboolean ok;

	/* checked again: other sessions may have failed meanwhile */
	if (pb_ratelimit_blocked(sv->cfg, sv->peer->ip))
		return FALSE;
	/* read on the first AUTH (or lookup) only: most sessions never
	 * need them; the dummy hash is made by the first verify */
	ok = tables(sv) &&
	     pb_accounts_verify(pb_local_accounts(sv->local), canonical, pass);

	pb_log_info(NULL, "AUTH %s for <%s> from [%s]", ok ? "ok" : "failed",
	            canonical, sv->peer->ip[0] ? sv->peer->ip : "local");
	if (!ok)
		pb_ratelimit_failed(sv->cfg, sv->peer->ip);
	return ok;
}

static gboolean
hook_auth_blocked(void *data)
{
	Serve *sv = data;

	return pb_ratelimit_blocked(sv->cfg, sv->peer->ip);
}

/* The account itself, or an alias that leads to it. */
static gboolean
hook_sender_allowed(void *data, const char *user, const char *sender)
{
	Serve *sv = data;
	g_autofree char *canonical =
	    pb_address_canonical(sender, sv->cfg->recipient_delimiter);
	g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *me = pb_address_canonical(user, "");

	if (g_str_equal(canonical, me))
		return TRUE;
	if (!tables(sv) || !pb_local_exists(sv->local, canonical) ||
	    !pb_local_resolve(sv->local, canonical, targets, NULL))
		return FALSE;
	for (guint i = 0; i < targets->len; i++)
		if (g_str_equal(g_ptr_array_index(targets, i), me))
			return TRUE;
	return FALSE;
}

static gint64
hook_now(void *data)
{
	return g_get_real_time() / G_USEC_PER_SEC;
}

static const PbSmtpHooks hooks = {
    .recipient_exists = hook_recipient_exists,
    .tx_begin = hook_tx_begin,
    .tx_write = hook_tx_write,
    .tx_commit = hook_tx_commit,
    .tx_abort = hook_tx_abort,
    .tx_signed = hook_tx_signed,
    .tx_check = hook_tx_check,
    .now = hook_now,
    .authenticate = hook_authenticate,
    .sender_allowed = hook_sender_allowed,
    .auth_blocked = hook_auth_blocked,
    .lookup_failed = hook_lookup_failed,
};

/* Feeds buffered DATA to the session; FALSE on a read error. */
static gboolean
feed_data(PbConn *conn, PbSmtpServer *s, gint64 deadline, GError **error)
{
	const char *buf;
	gsize len;

	if (!pb_conn_peek(conn, &buf, &len, deadline, error))
		return FALSE;
	pb_conn_consume(conn, pb_smtp_server_data(s, buf, len));
	return TRUE;
}

/* STARTTLS: the 220 out, then what the client pipelined after the
 * command is thrown away (CVE-2011-0411), then the handshake. */
static gboolean
start_tls(Serve *sv, PbConn *conn, PbSmtpServer *s, GError **error)
{
	g_autofree char *desc = NULL;
	gint64 deadline = pb_deadline_in(sv->cfg->smtpd_timeout);

	if (!pb_conn_flush(conn, deadline, error))
		return FALSE;
	pb_conn_purge_input(conn);
	sv->tls = TRUE;
	if (!pb_tls_server_start(conn, sv->how->tls, deadline, error))
		return FALSE;
	desc = pb_tls_describe(conn);
	pb_log_info(NULL, "TLS from [%s]: %s", sv->peer->ip, desc);
	pb_smtp_server_tls_started(s, desc);
	return TRUE;
}

/* The loop of STYLE.md section 6. Returns when the session closes: TRUE
 * when we closed it (QUIT, too many errors) with none of the client's
 * input left unread, FALSE when the client went, timed out or failed. */
static gboolean
converse(Serve *sv, PbConn *conn, PbSmtpServer *s)
{
	PbSmtpAction action = PB_SMTP_FLUSH;
	g_autoptr(GError) error = NULL;
	gint64 timeout = sv->cfg->smtpd_timeout;

	if (sv->how->implicit_tls) {
		sv->tls = TRUE;
		if (!pb_tls_server_start(conn, sv->how->tls,
		                         pb_deadline_in(timeout), &error)) {
			pb_log_info(NULL, "TLS from [%s] failed: %s",
			            sv->peer->ip, error->message);
			return FALSE;
		}
		g_autofree char *desc = pb_tls_describe(conn);
		pb_smtp_server_tls_started(s, desc);
	}
	pb_smtp_server_greet(s);
	for (;;) {
		if ((action == PB_SMTP_FLUSH || action == PB_SMTP_CLOSE ||
		     !pb_conn_pending(conn)) &&
		    !pb_conn_flush(conn, pb_deadline_in(timeout), &error))
			break;
		if (action == PB_SMTP_CLOSE)
			return !pb_conn_pending(conn);
		if (pb_smtp_server_in_data(s)) {
			if (!feed_data(conn, s, pb_deadline_in(timeout),
			               &error))
				break;
		} else {
			const char *line;
			gsize len;
			guint flags;
			if (!pb_conn_read_line(conn, &line, &len, &flags,
			                       pb_deadline_in(timeout), &error))
				break;
			pb_smtp_server_line(s, line, len, flags);
		}
		action = pb_smtp_server_next_action(s);
		if (action == PB_SMTP_DELAY) {
			g_usleep(AUTH_DELAY_MS * 1000);
			action = PB_SMTP_FLUSH;
		} else if (action == PB_SMTP_STARTTLS &&
		           !start_tls(sv, conn, s, &error))
			break;
	}
	if (g_error_matches(error, PB_ERROR, PB_ERROR_TIMEOUT)) {
		pb_log_info(NULL, "timeout after %s from %s",
		            pb_smtp_server_in_data(s) ? "DATA" : "command",
		            sv->peer->ip);
		pb_smtp_server_timeout(s);
		(void)pb_conn_flush(conn, pb_deadline_in(5), NULL);
	} else
		pb_log_info(NULL, "lost connection from %s: %s", sv->peer->ip,
		            error->message);
	return FALSE;
}

/* With the session's queue and tables: the attempt reads the tables only
 * when the session has not (LOCAL NULL: they are loaded here). LEFT
 * non-NULL: local recipients only, the ids with remote work go there. */
static void
deliver_now(const PbConfig *cfg, PbQueue *q, PbLocal *local, char **ids,
            GPtrArray *left)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbLocal) own = NULL;
	PbRunqStats stats;

	if (local == NULL)
		local = own = pb_local_new_unloaded(cfg);
	if (!pb_local_load(local, &error) ||
	    !(left != NULL
	          ? pb_runq_attempt_local(cfg, q, local, ids, left, &stats,
	                                  &error)
	          : pb_runq_attempt(cfg, q, local, ids, &stats, &error)))
		pb_log_warn(NULL, "immediate delivery: %s", error->message);
}

/* Locks byte I of FD (QUEUE/immediate.lock); WAIT: block until it is
 * free (an alarm interrupts). */
static gboolean
lock_byte(int fd, guint i, gboolean wait)
{
	struct flock fl = {.l_type = F_WRLCK,
	                   .l_whence = SEEK_SET,
	                   .l_start = i,
	                   .l_len = 1};

	return fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl) == 0;
}

static void
on_wait_alarm(int sig)
{
}

/* When every slot is busy (a burst), the attempt waits for one, at most
 * immediate_timeout, holding one of 4 x parallel waiting places (bytes
 * after the slots): a burst is delivered as soon as slots free up, and a
 * flood still cannot make more than 5 x parallel attempt processes. */
static gboolean
wait_for_slot(const PbConfig *cfg, int fd)
{
	struct sigaction sa = {.sa_handler = on_wait_alarm}, before;
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_len = 1};
	gboolean got = FALSE;
	guint i;

	for (i = cfg->parallel; i < 5 * cfg->parallel; i++)
		if (lock_byte(fd, i, FALSE))
			break;
	if (i == 5 * cfg->parallel)
		return FALSE;
	sigemptyset(&sa.sa_mask); /* no SA_RESTART: the alarm interrupts */
	sigaction(SIGALRM, &sa, &before);
	alarm((guint)MIN(cfg->immediate_timeout, G_MAXUINT));
	got = lock_byte(fd, (guint)pb_self_pid() % cfg->parallel, TRUE);
	alarm(0);
	sigaction(SIGALRM, &before, NULL);
	fl.l_start = i;
	(void)fcntl(fd, F_SETLK, &fl);
	return got;
}

/* One of the [delivery] parallel attempt slots: an fd holding a lock on
 * one byte of QUEUE/immediate.lock (released when this process ends or
 * closes it), or -1 when all are taken and (WAIT) no slot frees up in
 * time (logged) or (not WAIT) at once (not logged). */
static int
take_slot(const PbConfig *cfg, gboolean wait)
{
	g_autofree char *path =
	    g_build_filename(cfg->queue, "immediate.lock", NULL);
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0) {
		pb_log_warn(NULL, "immediate delivery: %s: %s", path,
		            g_strerror(errno));
		return -1;
	}
	for (guint i = 0; i < cfg->parallel; i++)
		if (lock_byte(fd, i, FALSE))
			return fd;
	if (wait && wait_for_slot(cfg, fd))
		return fd;
	close(fd);
	if (!wait)
		return -1;
	pb_log_info(NULL,
	            "immediate delivery: %u attempts running and %u waiting "
	            "already, left for runq",
	            cfg->parallel, 4 * cfg->parallel);
	return -1;
}

/* The deadline of an attempt: an interval timer of the attempt's own
 * process (not a thread: with one, a session's delivery took about
 * 0.6 ms of CPU and 6 page faults more, measured; not a second process:
 * a fork and an exit). SIGALRM's handler writes the line
 * prepared when the timer was set (a handler may not allocate or lock)
 * and kills the attempt's process group, the attempt and the remote
 * children it started with it. A remote attempt forked by an attempt
 * inherits its end (AT set; timers are not inherited, so it sets its
 * own): the timeout bounds both. Nothing else of an attempt uses
 * SIGALRM once it runs (wait_for_slot's alarm is over by then). */
typedef struct {
	gint64 timeout;
	struct timespec at;
	PbLogPrepared line;
	pid_t group; /* the process group this process was in before */
} Deadline;

static Deadline deadline;

static void
on_deadline(int sig)
{
	pb_log_emit_prepared(&deadline.line);
	(void)kill(-getpgrp(), SIGKILL);
	_exit(EX_TEMPFAIL); /* not reached */
}

/* Starts the deadline; FALSE (logged): the attempt must not run. This
 * process leads a process group of its own first (its remote children
 * join it), or is already the leader of one (sendmail's, detached):
 * never the listener's group. */
static gboolean
arm_deadline(const PbConfig *cfg, char **ids)
{
	Deadline *d = &deadline;
	struct sigaction sa = {.sa_handler = on_deadline};
	struct itimerval left = {{0, 0}, {0, 0}};
	struct timespec now;
	gint64 usec;

	d->group = getpgrp();
	(void)setpgid(0, 0);
	if (getpgrp() != pb_self_pid()) {
		pb_log_warn(ids[0], "immediate delivery: no process group of "
		                    "its own; left for runq");
		return FALSE;
	}
	d->timeout = cfg->immediate_timeout;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (d->at.tv_sec == 0) {
		d->at = now;
		d->at.tv_sec += (time_t)MIN(d->timeout, G_MAXINT32);
	}
	usec = ((gint64)d->at.tv_sec - now.tv_sec) * G_USEC_PER_SEC +
	       (d->at.tv_nsec - now.tv_nsec) / 1000;
	usec = MAX(usec, 1); /* an inherited end already past: at once */
	left.it_value.tv_sec = (time_t)(usec / G_USEC_PER_SEC);
	left.it_value.tv_usec = (suseconds_t)(usec % G_USEC_PER_SEC);
	pb_log_prepare(&d->line, ids[0],
	               (g_get_real_time() + usec) / G_USEC_PER_SEC,
	               "immediate delivery stopped after %" G_GINT64_FORMAT
	               "s; left for runq",
	               d->timeout);
	sigfillset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0 ||
	    setitimer(ITIMER_REAL, &left, NULL) < 0) {
		pb_log_warn(ids[0], "immediate delivery: timer: %s; left for runq",
		            g_strerror(errno));
		return FALSE;
	}
	return TRUE;
}

/* The attempt in this process is over: no timer, no handler, no end
 * for the next one to inherit, and the process back in the group it was
 * in (a listener's kept process serves on, reached by what is sent to
 * the listener's group; what it forked for the attempt is in groups of
 * its own: pb_smtp_attempt_detached). */
static void
disarm_deadline(void)
{
	struct itimerval off = {{0, 0}, {0, 0}};

	(void)setitimer(ITIMER_REAL, &off, NULL);
	(void)signal(SIGALRM, SIG_DFL);
	if (deadline.group > 0 && deadline.group != getpgrp())
		(void)setpgid(0, deadline.group);
	pb_log_prepared_clear(&deadline.line);
	memset(&deadline, 0, sizeof(deadline));
}

void
pb_smtp_attempt_detached(const PbConfig *cfg, PbQueue *q, PbLocal *local,
                         char **ids, gboolean detach)
{
	pid_t pid = fork();
	int slot;

	if (pid < 0)
		pb_log_warn(NULL, "immediate delivery: fork: %s; left for runq",
		            g_strerror(errno));
	/* a group of its own from the start, set on both sides of the fork
	 * (whichever runs first): never in its parent's, which the parent's
	 * own deadline kills and a kept session process leaves again */
	if (pid > 0 && !detach)
		(void)setpgid(pid, pid);
	if (pid != 0)
		return;
	if (detach)
		pb_program_detach();
	else
		(void)setpgid(0, 0);
	if ((slot = take_slot(cfg, TRUE)) < 0 || !arm_deadline(cfg, ids))
		_exit(0);
	deliver_now(cfg, q, local, ids, NULL);
	_exit(0);
}

/* The attempt in the session's own process, SLOT taken: every recipient
 * (ALL), or the local ones, then, with the slot given up (the detached
 * attempt takes its own), a detached attempt at what has remote work
 * left. */
static void
attempt_here(const PbConfig *cfg, PbQueue *q, PbLocal *local, char **ids,
             int slot, gboolean all)
{
	g_autoptr(GPtrArray) left = g_ptr_array_new_with_free_func(g_free);

	if (arm_deadline(cfg, ids))
		deliver_now(cfg, q, local, ids, all ? NULL : left);
	close(slot);
	if (left->len > 0) {
		g_ptr_array_add(left, NULL);
		pb_smtp_attempt_detached(cfg, q, local, (char **)left->pdata,
		                         FALSE);
	}
	disarm_deadline();
}

/* After the client has gone. Once the listener has its connection slot
 * back, every recipient is delivered to in this process (no fork and
 * exit: on a machine where they trap to the hypervisor, half the CPU of
 * a message), remote ones included: waiting on a slow server holds no
 * slot. Where no listener can be told (inetd style: the superserver
 * counts this process until it ends), mail for local recipients only,
 * and only when an attempt slot is free at once (a delivery of a few
 * milliseconds, never a wait); everything else there goes to the
 * detached attempt, as does sendmail -bs's (its caller waits for it to
 * end, never for a delivery). */
static void
deliver_after(Serve *sv, PbLocal *local, const GPtrArray *accepted)
{
	g_autofree char **ids = g_new0(char *, accepted->len + 1);
	gboolean released;
	int slot;

	for (guint i = 0; i < accepted->len; i++)
		ids[i] = g_ptr_array_index(accepted, i);
	released = !sv->how->local_program && pb_listener_release(sv->peer);
	if (!released && (sv->remote || sv->how->local_program)) {
		pb_smtp_attempt_detached(sv->cfg, sv->q, local, ids, FALSE);
		return;
	}
	slot = take_slot(sv->cfg, released);
	if (slot >= 0)
		attempt_here(sv->cfg, sv->q, local, ids, slot, released);
	else if (!released)
		pb_smtp_attempt_detached(sv->cfg, sv->q, local, ids, FALSE);
}

gboolean
pb_smtp_serve(const PbSmtpServe *how, int rfd, int wfd, const PbPeer *peer)
{
	const PbConfig *cfg = how->cfg;
	Serve sv = {.cfg = cfg, .how = how, .peer = peer};
	PbSmtpOptions opts = {.tls_available = how->tls != NULL,
	                      .submission = how->submission,
	                      .dkim = how->dkim,
	                      .user = how->user};
	g_autoptr(PbLocal) local = pb_local_new_unloaded(cfg);
	g_autoptr(PbConn) conn = pb_conn_new(rfd, wfd);
	/* no IP address (a Unix-domain socket, a pipe): not loopback, and
	 * trusted only when sendmail -bs or the configuration says so */
	PbSmtpPeer speer = {
	    .ip = peer->ip,
	    .local = peer->ip[0] == '\0' &&
	             (how->local_program || cfg->trust_local_socket)};
	PbLineOut out = pb_conn_line_out(conn);
	g_autoptr(PbSmtpServer) s = NULL;
	g_autoptr(GPtrArray) accepted = g_ptr_array_new_with_free_func(g_free);
	gboolean clean, opaque;

	pb_log_info(NULL, "connect from [%s]:%u", speer.ip, peer->port);
	sv.local = local;
	s = pb_smtp_server_new(cfg, &hooks, &sv, &speer, &out);
	pb_smtp_server_set_options(s, &opts);
	clean = converse(&sv, conn, s);
	pb_log_info(NULL, "disconnect from [%s]:%u", speer.ip, peer->port);
	for (guint i = 0; i < pb_smtp_server_accepted(s)->len; i++)
		g_ptr_array_add(accepted, g_strdup(g_ptr_array_index(
		                              pb_smtp_server_accepted(s), i)));
	opaque = pb_smtp_server_opaque_input(s);
	g_clear_pointer(&s, pb_smtp_server_free);
	g_clear_pointer(&conn, pb_conn_free);
	close(rfd);
	if (wfd != rfd)
		close(wfd);
	g_clear_pointer(&sv.resolver, pb_resolver_free);
	if (accepted->len > 0 && !cfg->delivery_queue)
		deliver_after(&sv, local, accepted);
	g_clear_pointer(&sv.q, pb_queue_free);
	/* Another client may follow in this process (README "Kept session
	 * processes") only when everything this one sent was parsed, as
	 * commands or mail, and none of it could have been a password: no
	 * AUTH command, no line refused unparsed, nothing left unread (the
	 * session ended by our close), no TLS (GnuTLS's buffers held the
	 * plaintext, not ours to wipe); never on the submission port, nor
	 * for sendmail -bs. What the session had is freed, none of it is
	 * static (the deadline is disarmed). */
	return clean && !opaque && !sv.tls && !how->submission &&
	       !how->local_program;
}
