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
 */
#include "admin.h"
#include "durable.h"
#include "error.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
