/*
 * imap-serve.c - one IMAP connection (see imap-serve.h).
 *
 * Guarantees: every read has the session's autologout timer as its
 * deadline (3 minutes before login, [imapd] timeout after it, never below
 * 30 minutes: pb_imap_server_timeout_seconds); a failed login is answered
 * only after the same pause whether the user exists or not, and counted
 * by ratelimit.c with smtpd's and pop3d's; at STARTTLS everything read in
 * the clear and not yet used is dropped before the handshake; only the
 * authenticated account's Maildir is named to the session; at most
 * [imapd] max_user_connections sessions of one account hold a slot at
 * once, and a slot is freed by the kernel however its process ends; an
 * IDLE session wakes on a change of the folder it watches (inotify, a
 * burst coalesced for COALESCE_MS), on input, every keepalive period and
 * at its autologout deadline, and on nothing else.
 */
#include "imap-serve.h"
#include "accounts.h"
#include "address.h"
#include "conn.h"
#include "error.h"
#include "imap-server.h"
#include "log.h"
#include "login.h"
#include "ratelimit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUTH_DELAY_MS 1000 /* after every failed login, user known or not */
#define COALESCE_MS 50     /* a burst of folder changes: one check */
/* without inotify (EMFILE: the per-user instance limit), IDLE looks at
 * the folder this often instead */
#define IDLE_POLL_MS 5000
#define IDLE_EVENTS                                                            \
	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR |    \
	 IN_DONT_FOLLOW)

typedef struct {
	const PbConfig *cfg;
	const PbImapServe *how;
	const PbPeer *peer;
	PbAccounts *accounts; /* read by the first login: see below */
	char *user;           /* canonical, once the account is open */
	int slot_fd;          /* the per-user connection slot, -1 */
} Serve;

/* TRUE when slot I of FD was free and is ours now. */
static gboolean
lock_slot(int fd, guint i, gboolean *busy, GError **error)
{
	struct flock fl = {
	    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = i, .l_len = 1};

	*busy = FALSE;
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return TRUE;
	if (errno == EAGAIN || errno == EACCES)
		*busy = TRUE;
	else
		pb_throw_errno(error, "lock slot %u", i);
	return FALSE;
}

int
pb_imap_slot_take(const char *maildir, guint max, gboolean *full,
                  GError **error)
{
	g_autofree char *path =
	    g_build_filename(maildir, PB_IMAP_SLOTS_FILE, NULL);
	g_auto(PbFd) fd = -1;
	struct stat st;

	*full = FALSE;
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return pb_throw_errno(error, "%s", path), -1;
	if (fstat(fd, &st) < 0)
		return pb_throw_errno(error, "%s", path), -1;
	if (!S_ISREG(st.st_mode)) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "%s: not a regular file", path);
		return -1;
	}
	for (guint i = 0; i < max; i++) {
		gboolean busy;

		if (lock_slot(fd, i, &busy, error))
			return g_steal_fd(&fd);
		if (!busy) {
			g_prefix_error(error, "%s: ", path);
			return -1;
		}
	}
	*full = TRUE;
	return -1;
}

static gboolean
hook_authenticate(void *data, const char *user, const char *pass)
{
	Serve *sv = data;
	g_autoptr(GError) error = NULL;

	/* read on the first login, not per connection (most connections
	 * of a client that keeps one session open per folder log in once;
	 * a probe never does); unreadable: logged, and the login fails */
	if (sv->accounts == NULL && (sv->accounts = pb_accounts_load(
	                                 sv->cfg->accounts, &error)) == NULL) {
		pb_log_error(NULL, "%s", error->message);
		return FALSE;
	}
	/* the session asked hook_blocked just before */
	return pb_login_verify(sv->cfg, sv->accounts, user, pass, sv->peer->ip);
}

static gboolean
hook_blocked(void *data)
{
	Serve *sv = data;

	return pb_ratelimit_blocked(sv->cfg, sv->peer->ip);
}

static PbImapAccount
hook_open_account(void *data, const char *user, char **maildir)
{
	Serve *sv = data;
	g_autofree char *canonical = pb_address_canonical(user, "");
	g_autofree char *dir = pb_login_maildir(sv->cfg, canonical);
	g_autoptr(GError) error = NULL;
	gboolean full = FALSE;

	if (dir == NULL || !g_file_test(dir, G_FILE_TEST_IS_DIR)) {
		pb_log_warn(NULL, "no Maildir for <%s>", canonical);
		return PB_IMAP_ACCOUNT_FAILED;
	}
	g_clear_pointer(&sv->user, g_free);
	pb_fd_clear(&sv->slot_fd);
	sv->slot_fd = pb_imap_slot_take(
	    dir, sv->cfg->imapd_max_user_connections, &full, &error);
	if (sv->slot_fd < 0 && full) {
		pb_log_info(NULL,
		            "<%s> from [%s]: max_user_connections (%u) "
		            "reached",
		            canonical, sv->peer->ip,
		            sv->cfg->imapd_max_user_connections);
		return PB_IMAP_ACCOUNT_LIMIT;
	}
	if (sv->slot_fd < 0) {
		pb_log_warn(NULL, "<%s>: %s", canonical, error->message);
		return PB_IMAP_ACCOUNT_FAILED;
	}
	sv->user = g_steal_pointer(&canonical);
	*maildir = g_steal_pointer(&dir);
	return PB_IMAP_ACCOUNT_OK;
}

static void
hook_log(void *data, const char *message)
{
	pb_log_info(NULL, "%s", message);
}

static const PbImapHooks hooks = {
    .authenticate = hook_authenticate,
    .blocked = hook_blocked,
    .open_account = hook_open_account,
    .log = hook_log,
};

/* What ended an IDLE wait. */
typedef enum {
	WAKE_INPUT,
	WAKE_CHANGE,
	WAKE_KEEPALIVE,
	WAKE_TIMEOUT,
} Wake;

/* The IDLE wait's state: an inotify instance on the session's folders
 * (-1: none, then the folder is looked at every IDLE_POLL_MS), the next
 * keepalive and the autologout deadline (monotonic ms). */
typedef struct {
	int fd;
	gint64 keepalive;
	gint64 deadline;
} Idle;

static void
idle_stop(Idle *idle)
{
	pb_fd_clear(&idle->fd);
	idle->deadline = 0;
}

/* Entering IDLE: watch the folders the session names now. */
static void
idle_start(Idle *idle, PbImapServer *s, gint64 timeout)
{
	const char *const *dirs = pb_imap_server_watch_dirs(s);

	idle_stop(idle);
	idle->deadline = pb_deadline_in(timeout);
	idle->keepalive = pb_deadline_in(PB_IMAP_KEEPALIVE_SECONDS);
	idle->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (idle->fd < 0) {
		pb_log_warn(NULL, "inotify: %s (IDLE looks every %d ms)",
		            g_strerror(errno), IDLE_POLL_MS);
		return;
	}
	for (guint i = 0; dirs && dirs[i]; i++)
		if (inotify_add_watch(idle->fd, dirs[i], IDLE_EVENTS) < 0)
			pb_log_warn(NULL, "inotify on %s: %s", dirs[i],
			            g_strerror(errno));
}

/* Reads every queued event, and more arriving within COALESCE_MS. */
static void
idle_drain(int fd)
{
	char buf[4096] __attribute__((aligned(8)));
	gint64 until = g_get_monotonic_time() / 1000 + COALESCE_MS;
	struct pollfd p = {.fd = fd, .events = POLLIN};

	for (;;) {
		gint64 left = until - g_get_monotonic_time() / 1000;

		while (read(fd, buf, sizeof(buf)) > 0)
			;
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return;
	}
}

/* Waits in IDLE until input, a change, the keepalive or the deadline. */
static Wake
idle_wait(Idle *idle, PbConn *conn)
{
	for (;;) {
		struct pollfd p[2] = {
		    {.fd = pb_conn_rfd(conn), .events = POLLIN},
		    {.fd = idle->fd, .events = POLLIN}};
		gint64 now = g_get_monotonic_time() / 1000;
		gint64 until = MIN(idle->keepalive, idle->deadline);
		int n;

		if (pb_conn_pending(conn))
			return WAKE_INPUT;
		if (now >= idle->deadline)
			return WAKE_TIMEOUT;
		if (now >= idle->keepalive) {
			idle->keepalive =
			    pb_deadline_in(PB_IMAP_KEEPALIVE_SECONDS);
			return WAKE_KEEPALIVE;
		}
		if (idle->fd < 0)
			until = MIN(until, now + IDLE_POLL_MS);
		n = poll(p, idle->fd < 0 ? 1 : 2, (int)MAX(until - now, 0));
		if (n < 0 && errno != EINTR)
			return WAKE_INPUT; /* the read reports the error */
		/* XXX under TLS a readable socket may hold only part of a
		 * record: the read then waits for the rest (until the
		 * autologout), without keepalives meanwhile */
		if (n > 0 && p[0].revents)
			return WAKE_INPUT;
		if (n > 0 && p[1].revents) {
			idle_drain(idle->fd);
			return WAKE_CHANGE;
		}
		if (n == 0 && idle->fd < 0 && until < idle->keepalive &&
		    until < idle->deadline)
			return WAKE_CHANGE;
	}
}

/* The session is in IDLE: FALSE when the connection is to end (the
 * autologout ran out: the BYE is queued). TRUE with *INPUT when the
 * client sent something. */
static gboolean
idle_step(Idle *idle, PbConn *conn, PbImapServer *s, gboolean *input)
{
	*input = FALSE;
	switch (idle_wait(idle, conn)) {
	case WAKE_INPUT:
		*input = TRUE;
		return TRUE;
	case WAKE_CHANGE:
		pb_imap_server_check(s, FALSE);
		return TRUE;
	case WAKE_KEEPALIVE:
		pb_imap_server_check(s, TRUE);
		return TRUE;
	case WAKE_TIMEOUT:
	default:
		pb_imap_server_timeout(s);
		return FALSE;
	}
}

/* STARTTLS: flush the OK, drop what was pipelined after the command
 * (RFC 3501 6.2.1, CVE-2011-0411), handshake. */
static gboolean
start_tls(Serve *sv, PbConn *conn, PbImapServer *s, gint64 timeout,
          GError **error)
{
	if (!pb_conn_flush(conn, pb_deadline_in(timeout), error))
		return FALSE;
	pb_conn_purge_input(conn);
	if (!pb_tls_server_start(conn, sv->how->tls, pb_deadline_in(timeout),
	                         error)) {
		pb_log_info(NULL, "STARTTLS from [%s] failed: %s", sv->peer->ip,
		            (*error)->message);
		return FALSE;
	}
	pb_imap_server_tls_started(s);
	return TRUE;
}

/* One read: what is buffered (or the next bytes, waiting until the
 * deadline) goes to the session. *STALLED when it took none of it. */
static gboolean
read_feed(PbConn *conn, PbImapServer *s, gint64 timeout, gboolean *stalled,
          GError **error)
{
	const char *buf;
	gsize len, used;

	if (!pb_conn_peek(conn, &buf, &len, pb_deadline_in(timeout), error))
		return FALSE;
	used = pb_imap_server_feed(s, buf, len);
	pb_conn_consume(conn, used);
	*stalled = used == 0;
	return TRUE;
}

/* Does what the session asked. FALSE: the connection ends (*ERROR set
 * when it failed rather than closed). *READ: input is wanted now. */
static gboolean
act(Serve *sv, PbConn *conn, PbImapServer *s, Idle *idle, PbImapAction action,
    gboolean *read, GError **error)
{
	gint64 timeout = pb_imap_server_timeout_seconds(
	    s, (guint)MIN(sv->cfg->imapd_timeout, G_MAXUINT));

	*read = TRUE;
	if (action != PB_IMAP_IDLE)
		idle_stop(idle);
	switch (action) {
	case PB_IMAP_STARTTLS:
		*read = FALSE;
		/* (never asked for when tls_available is FALSE) */
		return sv->how->tls != NULL &&
		       start_tls(sv, conn, s, timeout, error);
	case PB_IMAP_CLOSE:
		(void)pb_conn_flush(conn, pb_deadline_in(timeout), error);
		return FALSE;
	case PB_IMAP_IDLE:
		if (!pb_conn_flush(conn, pb_deadline_in(timeout), error))
			return FALSE;
		if (idle->deadline == 0)
			idle_start(idle, s, timeout);
		if (idle_step(idle, conn, s, read))
			return TRUE;
		/* the autologout's BYE */
		(void)pb_conn_flush(conn, pb_deadline_in(5), NULL);
		return FALSE;
	case PB_IMAP_AUTH_DELAY:
		g_usleep(AUTH_DELAY_MS * 1000);
		return pb_conn_flush(conn, pb_deadline_in(timeout), error);
	case PB_IMAP_FLUSH:
		return pb_conn_flush(conn, pb_deadline_in(timeout), error);
	case PB_IMAP_NONE:
	default:
		/* pipelined commands are answered together */
		return pb_conn_pending(conn) ||
		       pb_conn_flush(conn, pb_deadline_in(timeout), error);
	}
}

static void
converse(Serve *sv, PbConn *conn, PbImapServer *s)
{
	g_autoptr(GError) error = NULL;
	Idle idle = {.fd = -1};
	gboolean stalled = FALSE;

	for (;;) {
		PbImapAction action = pb_imap_server_next_action(s);
		gint64 timeout = pb_imap_server_timeout_seconds(
		    s, (guint)MIN(sv->cfg->imapd_timeout, G_MAXUINT));
		gboolean read;

		if (stalled &&
		    (action == PB_IMAP_NONE || action == PB_IMAP_IDLE)) {
			/* the session took no input and wants more: it
			 * would never get any */
			pb_log_error(NULL,
			             "the session took no input "
			             "from [%s]: closed",
			             sv->peer->ip);
			break;
		}
		stalled = FALSE;
		if (!act(sv, conn, s, &idle, action, &read, &error))
			break;
		if (read && !read_feed(conn, s, timeout, &stalled, &error))
			break;
	}
	idle_stop(&idle);
	if (g_error_matches(error, PB_ERROR, PB_ERROR_TIMEOUT)) {
		pb_imap_server_timeout(s);
		(void)pb_conn_flush(conn, pb_deadline_in(5), NULL);
	}
}

/* Implicit TLS (993) comes before the greeting. */
static gboolean
implicit_tls(Serve *sv, PbConn *conn)
{
	g_autoptr(GError) error = NULL;

	if (!sv->how->implicit_tls)
		return TRUE;
	if (pb_tls_server_start(
	        conn, sv->how->tls,
	        pb_deadline_in(PB_IMAP_TIMEOUT_NOT_AUTH_SECONDS), &error))
		return TRUE;
	pb_log_info(NULL, "TLS from [%s] failed: %s", sv->peer->ip,
	            error->message);
	return FALSE;
}

void
pb_imap_serve(const PbImapServe *how, int rfd, int wfd, const PbPeer *peer)
{
	const PbConfig *cfg = how->cfg;
	g_autoptr(PbConn) conn = pb_conn_new(rfd, wfd);
	PbLineOut out = pb_conn_line_out(conn);
	Serve sv = {.cfg = cfg, .how = how, .peer = peer, .slot_fd = -1};
	PbImapSettings settings = {
	    .hostname = cfg->hostname,
	    .plaintext_ok =
	        cfg->plaintext_auth || pb_login_is_loopback(peer->ip),
	    .tls_available = how->tls != NULL,
	    .tls_active = how->implicit_tls,
	    .max_message_size = cfg->imapd_max_message_size,
	};
	g_autoptr(PbImapServer) s = NULL;

	pb_log_info(NULL, "connect from [%s]:%u", peer->ip, peer->port);
	if (implicit_tls(&sv, conn)) {
		s = pb_imap_server_new(&hooks, &sv, &out, &settings);
		pb_imap_server_greet(s);
		converse(&sv, conn, s);
	}
	if (sv.user)
		pb_log_info(NULL, "logout <%s> from [%s]", sv.user, peer->ip);
	pb_log_info(NULL, "disconnect from [%s]:%u", peer->ip, peer->port);
	g_clear_pointer(&s, pb_imap_server_free);
	pb_fd_clear(&sv.slot_fd);
	g_free(sv.user);
	g_clear_pointer(&sv.accounts, pb_accounts_free);
}
