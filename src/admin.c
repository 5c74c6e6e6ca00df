/*
 * admin.c - the operator's actions on the queue, the queue check and the
 * status file (see admin.h).
 *
 * It knows the layout queue.h documents (msg/, env/, tmp/) only to look
 * for damage: a check reads the folders as they are, without trusting
 * that every entry is well formed. Repairs move files into corrupt/
 * (created 0700 on first use) with a rename and an fsync of both
 * folders; the only files it removes are tmp/ leftovers, which are
 * never the only copy of anything.
 *
 * The DKIM commands (mailuser dkim-keygen, dkim-verify) live here too: a
 * new key is written once, never over an existing file, mode 0600 and
 * owned by [main] user.
 */
#include "admin.h"
#include "dkim.h"
#include "dns.h"
#include "durable.h"
#include "error.h"
#include "log.h"
#include "self.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STALE_AGE (24 * 3600) /* what runq's clean-up also waits */

gboolean
pb_admin_apply(PbQueue *q, const char *id, PbAdminAction action, GError **error)
{
	static const char *const names[] = {"held", "released", "requeued",
	                                    "deleted"};
	g_autoptr(PbQueueEntry) e = pb_queue_lock(q, id, error);
	PbEnvelope *env;

	if (e == NULL)
		return FALSE;
	env = pb_queue_entry_envelope(e);
	switch (action) {
	case PB_ADMIN_DELETE:
		if (!pb_queue_entry_remove(e, error))
			return FALSE;
		pb_log_info(id, "removed by the operator (no bounce)");
		return TRUE;
	case PB_ADMIN_HOLD:
		env->held = TRUE;
		break;
	case PB_ADMIN_RELEASE:
	case PB_ADMIN_REQUEUE:
		if (action == PB_ADMIN_RELEASE)
			env->held = FALSE;
		for (guint i = 0; i < env->rcpts->len; i++) {
			PbRecipient *r = g_ptr_array_index(env->rcpts, i);
			if (r->state == PB_RCPT_PENDING)
				r->next_attempt = 0;
		}
		break;
	}
	if (!pb_queue_entry_update(e, error))
		return FALSE;
	pb_log_info(id, "%s by the operator", names[action]);
	return TRUE;
}

GPtrArray *
pb_admin_all(PbQueue *q, GError **error)
{
	return pb_queue_list(q, error);
}

gint64
pb_admin_id_time(const char *id)
{
	guint64 usec;
	char head[14];

	if (strlen(id) != 22)
		return -1;
	memcpy(head, id, 13);
	head[13] = '\0';
	if (!g_ascii_string_to_unsigned(head, 16, 0, G_MAXUINT64, &usec, NULL))
		return -1;
	return (gint64)(usec / G_USEC_PER_SEC);
}

/* The entries of DIR (not . and ..), sorted. */
static GPtrArray *
names_in(const char *dir, GError **error)
{
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return pb_throw_errno(error, "cannot read %s", dir), NULL;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			g_ptr_array_add(out, g_strdup(de->d_name));
		errno = 0;
	}
	if (errno != 0) {
		pb_throw_errno(error, "cannot read %s", dir);
		closedir(d);
		return NULL;
	}
	closedir(d);
	g_ptr_array_sort(out, (GCompareFunc)g_strcmp0);
	return g_steal_pointer(&out);
}

static gboolean
is_queue_id(const char *name)
{
	if (strlen(name) != 22)
		return FALSE;
	for (const char *p = name; *p; p++)
		if (!g_ascii_isdigit(*p) && !(*p >= 'A' && *p <= 'F'))
			return FALSE;
	return TRUE;
}

/* Moves SUB/NAME into corrupt/NAME.SUB; both folders fsync'ed. */
static gboolean
move_aside(PbQueue *q, const char *sub, const char *name, GError **error)
{
	g_autofree char *from_dir =
	    g_build_filename(pb_queue_dir(q), sub, NULL);
	g_autofree char *to_dir =
	    g_build_filename(pb_queue_dir(q), "corrupt", NULL);
	g_autofree char *from = g_build_filename(from_dir, name, NULL);
	g_autofree char *base = g_strdup_printf("%s.%s", name, sub);
	g_autofree char *to = g_build_filename(to_dir, base, NULL);

	if (!pb_mkdirs(to_dir, 0700, error))
		return FALSE;
	if (rename(from, to) < 0)
		return pb_throw_errno(error, "cannot move %s aside", from);
	return pb_fsync_dir(to_dir, error) && pb_fsync_dir(from_dir, error);
}

typedef struct {
	PbQueue *q;
	gboolean repair;
	gint64 now;
	GString *report;
	int problems;
} Check;

static void G_GNUC_PRINTF(4, 5)
    problem(Check *c, const char *sub, const char *name, const char *fmt, ...)
{
	va_list ap;
	g_autoptr(GError) error = NULL;

	c->problems++;
	g_string_append_printf(c->report, "%s/%s: ", sub, name);
	va_start(ap, fmt);
	g_string_append_vprintf(c->report, fmt, ap);
	va_end(ap);
	if (!c->repair) {
		g_string_append_c(c->report, '\n');
		return;
	}
	if (g_str_equal(sub, "tmp")) {
		g_autofree char *path =
		    g_build_filename(pb_queue_dir(c->q), sub, name, NULL);
		if (unlink(path) == 0)
			g_string_append(c->report, ": removed\n");
		else
			g_string_append_printf(c->report,
			                       ": cannot remove: %s\n",
			                       g_strerror(errno));
		return;
	}
	if (move_aside(c->q, sub, name, &error))
		g_string_append_printf(c->report, ": moved to corrupt/%s.%s\n",
		                       name, sub);
	else
		g_string_append_printf(c->report, ": %s\n", error->message);
}

static gint64
age_of(Check *c, const char *sub, const char *name)
{
	g_autofree char *path =
	    g_build_filename(pb_queue_dir(c->q), sub, name, NULL);
	struct stat st;

	if (stat(path, &st) < 0)
		return -1;
	return c->now - st.st_mtime;
}

/* One envelope: readable, matching its data. */
static void
check_envelope(Check *c, const char *id, GHashTable *msgs)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = NULL;
	g_autofree char *data =
	    g_build_filename(pb_queue_dir(c->q), "msg", id, NULL);
	struct stat st;

	if (!is_queue_id(id)) {
		problem(c, "env", id, "not a queue id");
		return;
	}
	if (!g_hash_table_contains(msgs, id)) {
		problem(c, "env", id, "envelope without message data");
		return;
	}
	env = pb_queue_read_envelope(c->q, id, &error);
	if (env == NULL) {
		if (g_error_matches(error, PB_ERROR, PB_ERROR_NOTFOUND))
			return; /* delivered meanwhile */
		problem(c, "env", id, "unreadable envelope (%s)",
		        error->message);
		if (c->repair)
			problem(c, "msg", id, "data of an unreadable envelope");
		return;
	}
	if (stat(data, &st) == 0 && (guint64)st.st_size != env->size)
		g_string_append_printf(
		    c->report,
		    "msg/%s: %" G_GUINT64_FORMAT
		    " octets, the envelope says %" G_GUINT64_FORMAT
		    " (left as it is)\n",
		    id, (guint64)st.st_size, env->size);
}

int
pb_admin_check(PbQueue *q, gboolean repair, gint64 now, GString *report,
               GError **error)
{
	g_autofree char *envd = g_build_filename(pb_queue_dir(q), "env", NULL);
	g_autofree char *msgd = g_build_filename(pb_queue_dir(q), "msg", NULL);
	g_autofree char *tmpd = g_build_filename(pb_queue_dir(q), "tmp", NULL);
	g_autoptr(GPtrArray) envs = names_in(envd, error);
	g_autoptr(GPtrArray) msgs = envs ? names_in(msgd, error) : NULL;
	g_autoptr(GPtrArray) tmps = msgs ? names_in(tmpd, error) : NULL;
	g_autoptr(GHashTable) have_msg =
	    g_hash_table_new(g_str_hash, g_str_equal);
	g_autoptr(GHashTable) have_env =
	    g_hash_table_new(g_str_hash, g_str_equal);
	Check c = {q, repair, now, report, 0};

	if (tmps == NULL)
		return -1;
	for (guint i = 0; i < msgs->len; i++)
		g_hash_table_add(have_msg, g_ptr_array_index(msgs, i));
	for (guint i = 0; i < envs->len; i++) {
		g_hash_table_add(have_env, g_ptr_array_index(envs, i));
		check_envelope(&c, g_ptr_array_index(envs, i), have_msg);
	}
	for (guint i = 0; i < msgs->len; i++) {
		const char *id = g_ptr_array_index(msgs, i);
		if (!is_queue_id(id))
			problem(&c, "msg", id, "not a queue id");
		else if (!g_hash_table_contains(have_env, id) &&
		         age_of(&c, "msg", id) > STALE_AGE)
			problem(&c, "msg", id,
			        "message data without an envelope for over a "
			        "day (never accepted)");
	}
	for (guint i = 0; i < tmps->len; i++) {
		const char *name = g_ptr_array_index(tmps, i);
		if (age_of(&c, "tmp", name) > STALE_AGE)
			problem(&c, "tmp", name, "stale temporary file");
	}
	return c.problems;
}

gboolean
pb_admin_write_status(PbQueue *q, const PbRunqStats *stats, gint64 started,
                      gint64 duration_ms, GError **error)
{
	g_autoptr(GPtrArray) ids = pb_queue_list(q, error);
	g_autofree char *path =
	    g_build_filename(pb_queue_dir(q), "status", NULL);
	g_autoptr(GString) s = g_string_new(NULL);
	gint64 oldest = 0;

	if (ids == NULL)
		return FALSE;
	if (ids->len > 0) {
		gint64 t = pb_admin_id_time(g_ptr_array_index(ids, 0));
		if (t > 0 && t < started)
			oldest = started - t;
	}
	g_string_append_printf(
	    s,
	    "time=%" G_GINT64_FORMAT "\nduration_ms=%" G_GINT64_FORMAT
	    "\nmessages=%u\ndelivered=%u\ndeferred=%u\nbounced=%u\nbusy=%u\n"
	    "queue_size=%u\noldest_age=%" G_GINT64_FORMAT "\n",
	    started, duration_ms, stats->messages, stats->delivered,
	    stats->deferred, stats->bounced, stats->busy, ids->len, oldest);
	return pb_durable_replace(path, s->str, s->len, 0644, error);
}

/* ---- DKIM keys and checks ---- */

/* Where a new key goes when no file is named: the [dkim] key (or
 * ed25519_key) when set, else dkim/DOMAIN.SELECTOR.TYPE.pem beside the
 * configuration file. */
static char *
keygen_path(const PbConfig *cfg, gboolean ed25519, const char *domain,
            const char *selector)
{
	const char *set = ed25519 ? cfg->dkim_ed25519_key : cfg->dkim_key;
	g_autofree char *dir = NULL;
	g_autofree char *name = NULL;

	if (set != NULL)
		return g_strdup(set);
	dir = cfg->path ? g_path_get_dirname(cfg->path) : g_get_current_dir();
	name = g_strdup_printf("%s.%s.%s.pem", domain, selector,
	                       ed25519 ? "ed25519" : "rsa");
	return g_build_filename(dir, "dkim", name, NULL);
}

/* PEM into a new FILE (never over an existing one), mode 0600, owned by
 * OWNER when we are root: a temporary file beside it, fsync, link, fsync
 * of the folder. */
static gboolean
write_key(const char *file, const char *pem, const char *owner, GError **error)
{
	g_autofree char *dir = g_path_get_dirname(file);
	g_autofree char *tmp =
	    g_strdup_printf("%s.tmp.%d", file, (int)pb_self_pid());
	struct passwd *pw = geteuid() == 0 ? getpwnam(owner) : NULL;
	g_auto(PbFd) fd = -1;
	gboolean ok;

	if (geteuid() == 0 && pw == NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[main] user %s: no such user", owner);
		return FALSE;
	}
	gboolean made = !g_file_test(dir, G_FILE_TEST_IS_DIR);

	if (!pb_mkdirs(dir, 0700, error))
		return FALSE;
	/* a folder of our own making is the user's (it must reach the key) */
	if (made && pw != NULL && chown(dir, pw->pw_uid, pw->pw_gid) != 0)
		return pb_throw_errno(error, "chown %s", dir);
	if (g_file_test(file, G_FILE_TEST_EXISTS)) {
		g_set_error(error, PB_ERROR, PB_ERROR_USAGE,
		            "%s exists: an existing key is never replaced "
		            "(remove it, or name another file with --out)",
		            file);
		return FALSE;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	          0600);
	if (fd < 0)
		return pb_throw_errno(error, "%s", tmp);
	ok = pb_write_all(fd, pem, strlen(pem), error) &&
	     (pw == NULL || fchown(fd, pw->pw_uid, pw->pw_gid) == 0 ||
	      pb_throw_errno(error, "chown %s", tmp)) &&
	     (fsync(fd) == 0 || pb_throw_errno(error, "fsync %s", tmp)) &&
	     (close(g_steal_fd(&fd)) == 0 ||
	      pb_throw_errno(error, "close %s", tmp)) &&
	     (link(tmp, file) == 0 || pb_throw_errno(error, "%s", file));
	(void)unlink(tmp);
	return ok && pb_fsync_dir(dir, error);
}

gboolean
pb_admin_dkim_keygen(const PbConfig *cfg, gboolean ed25519, guint bits,
                     const char *domain, const char *selector, const char *file,
                     GString *out, GError **error)
{
	g_autofree char *path =
	    file ? g_canonicalize_filename(file, NULL)
	         : keygen_path(cfg, ed25519, domain, selector);
	g_autoptr(PbPrivKey) key = NULL;
	g_autofree char *pem = NULL;
	g_auto(GStrv) record = NULL;
	g_autofree char *lower = g_ascii_strdown(domain, -1);
	g_autofree char *name = NULL;
	g_autofree char *zone = NULL;

	if (!ed25519 && (bits < 2048 || bits > 8192)) {
		g_set_error(error, PB_ERROR, PB_ERROR_USAGE,
		            "an RSA key of 2048 to 8192 bits, not %u", bits);
		return FALSE;
	}
	if ((key = pb_privkey_generate(ed25519 ? PB_KEY_ED25519 : PB_KEY_RSA,
	                               bits, error)) == NULL ||
	    (pem = pb_privkey_export_pem(key, error)) == NULL ||
	    (record = pb_dkim_key_record(key, error)) == NULL)
		return FALSE;
	name = g_strdup_printf("%s._domainkey.%s", selector, lower);
	zone = pb_dns_zone_txt(name, record);
	if (!write_key(path, pem, cfg->user, error)) {
		explicit_bzero(pem, strlen(pem));
		return FALSE;
	}
	explicit_bzero(pem, strlen(pem));
	g_string_append_printf(
	    out,
	    "# %s key written to %s (mode 0600%s%s)\n"
	    "# in pillarbox.conf:\n#   [dkim]\n"
	    "#   %s = %s\n#   %s = %s\n"
	    "# publish this TXT record:\n%s\n",
	    ed25519 ? "Ed25519" : "RSA", path, geteuid() == 0 ? ", owner " : "",
	    geteuid() == 0 ? cfg->user : "",
	    ed25519 ? "ed25519_selector" : "selector", selector,
	    ed25519 ? "ed25519_key" : "key", path, zone);
	pb_log_info(NULL, "dkim: new %s key for %s, selector %s: %s",
	            ed25519 ? "Ed25519" : "RSA", lower, selector, path);
	return TRUE;
}

gboolean
pb_admin_dkim_verify(const PbConfig *cfg, int fd, GString *out,
                     gboolean *all_pass, GError **error)
{
	g_autoptr(PbDkimVerify) v = pb_dkim_verify_new();
	g_autoptr(GPtrArray) results = NULL;
	g_autofree char *buf = g_malloc(65536);
	g_autoptr(PbResolver) resolver = pb_dns_resolver_new(cfg, error);
	PbDnsTxtLookup dns = {resolver, 0};

	if (resolver == NULL)
		return FALSE;
	for (;;) {
		ssize_t n = read(fd, buf, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pb_throw_errno(error, "reading the message");
		if (n == 0)
			break;
		pb_dkim_verify_feed(v, buf, (gsize)n);
	}
	/* the key lookups, all together, within 20 s */
	dns.deadline = g_get_monotonic_time() / 1000 + 20000;
	results = pb_dkim_verify_finish(v, g_get_real_time() / G_USEC_PER_SEC,
	                                pb_dns_txt_lookup, &dns);
	*all_pass = results->len > 0;
	if (results->len == 0)
		g_string_append(out, "dkim=none\n");
	for (guint i = 0; i < results->len; i++) {
		const PbDkimResult *r = g_ptr_array_index(results, i);
		g_autofree char *line = pb_dkim_result_format(r);
		g_string_append_printf(out, "%s%s\n", line,
		                       r->testing ? " (key in testing mode)"
		                                  : "");
		*all_pass = *all_pass && r->status == PB_DKIM_PASS;
	}
	return TRUE;
}
