/*
 * mailbox.c - a Maildir as one POP3 session sees it (see mailbox.h).
 *
 * Owns the lock file DIR/.pop3.lock while a session runs, and the
 * renames and unlinks of the UPDATE state; on opening, it has maildir.c
 * remove the left-overs in tmp/ older than 36 hours. The lock follows
 * liblockfile's recipe: write a unique temporary file, link(2) it to the
 * lock name and trust the link count (NFS may report a lost reply as
 * an error); a lock whose owner on this host is dead, or older than
 * PB_MAILBOX_LOCK_STALE, is broken.
 */
#include "mailbox.h"
#include "durable.h"
#include "error.h"
#include "maildir.h"
#include "self.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536
#define LOCK_REFRESH 60 /* seconds between refreshes of the lock's mtime */
#define LOCK_CHECK 1    /* seconds between looks at the lock's mtime */
#define MAX_UID 70      /* RFC 1939 7: 1 to 70 characters */

typedef struct {
	const char *name; /* the file name in its folder (in strings) */
	const char *uid;  /* in strings */
	guint64 size;     /* octets with CRLF line ends */
	/* the delivery order of the uid (pb_maildir_name_compare's first
	 * two keys), parsed once rather than at every comparison */
	guint64 when, micro;
	gboolean in_new;
	gboolean seen;
} Msg;

struct _PbMailbox {
	char *dir;
	char *lock;
	GArray *msgs;          /* Msg */
	GStringChunk *strings; /* names and uids: no malloc per message */
	gint64 lock_checked;   /* monotonic time of the last look, or 0 */
};

/* ---- the lock ---- */

static gboolean
lock_is_stale(const char *lock)
{
	g_autofree char *text = NULL;
	char owner[256] = "";
	long pid = 0;
	struct stat st;

	if (stat(lock, &st) < 0)
		return errno == ENOENT;
	if (time(NULL) - st.st_mtime > PB_MAILBOX_LOCK_STALE)
		return TRUE;
	if (!g_file_get_contents(lock, &text, NULL, NULL) ||
	    sscanf(text, "%255s %ld", owner, &pid) != 2 || pid <= 0)
		return FALSE;
	/* only a local owner can be checked */
	return g_str_equal(owner, pb_self_host()) && kill((pid_t)pid, 0) < 0 &&
	       errno == ESRCH;
}

static gboolean
lock_take(const char *dir, const char *lock, GError **error)
{
	const char *host = pb_self_host();
	g_autofree char *tmp = NULL;
	g_autofree char *text = NULL;

	tmp = g_strdup_printf("%s/.pop3.lock.%s.%ld.%u", dir, host,
	                      (long)pb_self_pid(), g_random_int());
	text = g_strdup_printf("%s %ld %ld\n", host, (long)pb_self_pid(),
	                       (long)time(NULL));
	for (int attempt = 0; attempt < 2; attempt++) {
		struct stat st;
		gboolean got;
		if (!g_file_set_contents(tmp, text, -1, error))
			return FALSE;
		(void)link(tmp, lock);
		got = stat(tmp, &st) == 0 && st.st_nlink == 2;
		(void)unlink(tmp);
		if (got)
			return TRUE;
		/* XXX two sessions breaking the same stale lock at once
		 * can both win (liblockfile's race too): it takes a dead
		 * session and two logins within the same instant */
		if (attempt == 0 && lock_is_stale(lock))
			(void)unlink(lock);
		else
			break;
	}
	g_set_error(error, PB_ERROR, PB_ERROR_BUSY,
	            "the mailbox is in use by another session");
	return FALSE;
}

/* ---- the scan ---- */

/* The length of the unique part of a Maildir name: before ',' (sizes)
 * and ':' (flags); 0 when that part cannot be a POP3 uid (the MD5 of the
 * name is then). */
static gsize
uid_len(const char *name)
{
	gsize n = strcspn(name, ",:");

	if (n > MAX_UID)
		return 0;
	for (gsize i = 0; i < n; i++)
		if (name[i] < 0x21 || name[i] > 0x7e)
			return 0;
	return n;
}

/* Does NAME have the unique part UID? */
static gboolean
uid_matches(const char *name, const char *uid)
{
	gsize n = uid_len(name);
	g_autofree char *md5 = NULL;

	if (n > 0)
		return strncmp(name, uid, n) == 0 && uid[n] == '\0';
	md5 = g_compute_checksum_for_string(G_CHECKSUM_MD5, name, -1);
	return g_str_equal(md5, uid);
}

/* NAME's uid, kept in the mailbox's strings. */
static const char *
uid_keep(PbMailbox *mb, const char *name)
{
	gsize n = uid_len(name);
	g_autofree char *md5 = NULL;

	if (n > 0)
		return g_string_chunk_insert_len(mb->strings, name, (gssize)n);
	md5 = g_compute_checksum_for_string(G_CHECKSUM_MD5, name, -1);
	return g_string_chunk_insert(mb->strings, md5);
}

/* The keys pb_maildir_name_compare() orders by, parsed from the uid. */
static void
order_keys(Msg *m)
{
	const char *mark = strstr(m->uid, ".M");

	m->when = g_ascii_strtoull(m->uid, NULL, 10);
	m->micro = mark ? g_ascii_strtoull(mark + 2, NULL, 10) : 0;
}

/* The CRLF size of a file without ,W=: read once. */
static gboolean
measure(const char *path, guint64 *size)
{
	char buf[CHUNK];
	g_auto(PbFd) fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	gboolean cr = FALSE;
	ssize_t n;

	if (fd < 0)
		return FALSE;
	*size = 0;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && !cr)
				(*size)++;
			cr = buf[i] == '\r';
		}
		*size += (guint64)n;
	}
	return n == 0;
}

static gboolean
scan(PbMailbox *mb, const char *sub, GError **error)
{
	g_autofree char *path = g_build_filename(mb->dir, sub, NULL);
	DIR *d = opendir(path);
	struct dirent *de;

	if (d == NULL)
		return pb_throw_errno(error, "cannot read %s", path);
	while ((de = readdir(d)) != NULL) {
		Msg m = {0};
		guint64 s;
		if (de->d_name[0] == '.')
			continue;
		if (!pb_maildir_name_sizes(de->d_name, &s, &m.size)) {
			g_autofree char *file =
			    g_build_filename(path, de->d_name, NULL);
			if (!measure(file, &m.size))
				continue; /* vanished or unreadable */
		}
		m.name = g_string_chunk_insert(mb->strings, de->d_name);
		m.in_new = g_str_equal(sub, "new");
		m.uid = uid_keep(mb, de->d_name);
		order_keys(&m);
		g_array_append_val(mb->msgs, m);
	}
	closedir(d);
	return TRUE;
}

/* Delivery order: pb_maildir_name_compare() of the uids, with its
 * numbers parsed beforehand (100,000 messages take 1.7 million
 * comparisons). */
static gint
by_uid(gconstpointer a, gconstpointer b)
{
	const Msg *x = a, *y = b;

	if (x->when != y->when)
		return x->when < y->when ? -1 : 1;
	if (x->micro != y->micro)
		return x->micro < y->micro ? -1 : 1;
	return strcmp(x->uid, y->uid);
}

PbMailbox *
pb_mailbox_open(const char *dir, GError **error)
{
	g_autoptr(PbMailbox) mb = g_new0(PbMailbox, 1);
	g_autofree char *lock = NULL;

	mb->dir = g_strdup(dir);
	mb->msgs = g_array_new(FALSE, TRUE, sizeof(Msg));
	mb->strings = g_string_chunk_new(CHUNK);
	if (!pb_maildir_create(dir, error))
		return NULL;
	lock = g_build_filename(dir, PB_MAILBOX_LOCK, NULL);
	if (!lock_take(dir, lock, error))
		return NULL;
	mb->lock = g_steal_pointer(&lock); /* ours now: closing removes it */
	pb_maildir_clean_tmp(dir, time(NULL));
	if (!scan(mb, "new", error) || !scan(mb, "cur", error))
		return NULL;
	g_array_sort(mb->msgs, by_uid);
	return g_steal_pointer(&mb);
}

void
pb_mailbox_close(PbMailbox *mb)
{
	if (mb == NULL)
		return;
	if (mb->lock)
		(void)unlink(mb->lock);
	g_free(mb->lock);
	g_free(mb->dir);
	g_array_unref(mb->msgs);
	g_string_chunk_free(mb->strings);
	g_free(mb);
}

void
pb_mailbox_keep_locked(PbMailbox *mb)
{
	struct stat st;
	gint64 now = g_get_monotonic_time();

	/* looked at once a second at most, not at every command (1,000
	 * pipelined RETRs made 1,000 stats) */
	if (mb->lock_checked != 0 &&
	    now - mb->lock_checked < LOCK_CHECK * G_USEC_PER_SEC)
		return;
	mb->lock_checked = now;
	/* a session on another host sharing the spool can judge our lock
	 * only by its age */
	if (stat(mb->lock, &st) == 0 &&
	    time(NULL) - st.st_mtime >= LOCK_REFRESH)
		(void)utimensat(AT_FDCWD, mb->lock, NULL, 0);
}

guint
pb_mailbox_count(PbMailbox *mb)
{
	return mb->msgs->len;
}

guint64
pb_mailbox_size(PbMailbox *mb, guint i)
{
	return g_array_index(mb->msgs, Msg, i).size;
}

const char *
pb_mailbox_uid(PbMailbox *mb, guint i)
{
	return g_array_index(mb->msgs, Msg, i).uid;
}

/* ---- messages moved under us ---- */

/* Another Maildir reader (a local MUA, which knows nothing of our lock)
 * may have moved message M from new/ to cur/ or changed its flags since
 * the login: find it again by its unique name. With OPENED not NULL the
 * file found is opened at once, by the name just read, so that a rename
 * right after the scan cannot take it away again (-1 and errno set if
 * that open failed). */
static gboolean
relocate(PbMailbox *mb, Msg *m, int *opened)
{
	/* new/ before cur/: readers move messages from new/ to cur/, never
	 * back, so one moved between the two reads is found in cur/ */
	static const char *const subs[] = {"new", "cur"};

	for (guint k = 0; k < G_N_ELEMENTS(subs); k++) {
		g_autofree char *path =
		    g_build_filename(mb->dir, subs[k], NULL);
		DIR *d = opendir(path);
		struct dirent *de;
		if (d == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.' ||
			    !uid_matches(de->d_name, m->uid))
				continue;
			if (opened != NULL) {
				*opened = openat(dirfd(d), de->d_name,
				                 O_RDONLY | O_CLOEXEC |
				                     O_NOFOLLOW);
				if (*opened < 0 && errno == ENOENT)
					break; /* renamed again: scan again */
			}
			m->name =
			    g_string_chunk_insert(mb->strings, de->d_name);
			m->in_new = k == 0;
			closedir(d);
			return TRUE;
		}
		closedir(d);
	}
	return FALSE;
}

static char *
msg_path(PbMailbox *mb, const Msg *m)
{
	return g_build_filename(mb->dir, m->in_new ? "new" : "cur", m->name,
	                        NULL);
}

/* Opens message M for reading, following it if it moved. Another reader
 * (imapd storing flags, a MUA) may rename it again between our scan and
 * our open, and a readdir(3) racing renames can miss the entry, so the
 * message is taken for deleted only after RELOCATE_TRIES scans missed
 * it or lost the race. A scan costs two short folder reads and happens
 * only when a rename got in the way. */
#define RELOCATE_TRIES 20

static int
open_msg(PbMailbox *mb, Msg *m)
{
	g_autofree char *path = msg_path(mb, m);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd >= 0 || errno != ENOENT)
		return fd;
	for (int attempt = 0; attempt < RELOCATE_TRIES; attempt++) {
		if (!relocate(mb, m, &fd))
			continue;
		if (fd >= 0 || errno != ENOENT)
			return fd;
	}
	errno = ENOENT; /* deleted by another reader */
	return -1;
}

/* ---- RETR and TOP ---- */

typedef struct {
	PbLineOut *out;
	char *buf; /* CHUNK + 8 octets: what is not yet written to OUT */
	gsize len;
	gboolean bol, cr, header;
	gboolean text;     /* the line has more than CRs so far */
	gint64 body_lines; /* still to send; < 0: all */
	gboolean done;
} Sender;

static void
emit(Sender *s, const char *data, gsize n)
{
	while (n > 0) {
		gsize k = MIN(n, CHUNK - s->len);
		memcpy(s->buf + s->len, data, k);
		s->len += k;
		data += k;
		n -= k;
		if (s->len == CHUNK) {
			pb_line_out_write(s->out, s->buf, s->len);
			s->len = 0;
		}
	}
}

/* The end of a line: LF becomes CRLF; TOP counts the body's lines. */
static void
send_lf(Sender *s)
{
	emit(s, s->cr ? "\n" : "\r\n", s->cr ? 1 : 2);
	if (s->header && !s->text)
		s->header = FALSE;
	else if (!s->header && s->body_lines > 0)
		s->body_lines--;
	if (!s->header && s->body_lines == 0)
		s->done = TRUE;
	s->bol = TRUE;
	s->text = FALSE;
	s->cr = FALSE;
}

/* N octets of the file, up to their first LF at most: copied whole, but
 * a leading dot is doubled (byte-stuffing). */
static void
send_run(Sender *s, const char *p, gsize n)
{
	if (s->bol && p[0] == '.')
		emit(s, ".", 1);
	emit(s, p, n);
	s->bol = FALSE;
	s->cr = p[n - 1] == '\r';
	for (gsize i = 0; i < n && !s->text; i++)
		s->text = p[i] != '\r';
}

/* A piece of the file, as RETR or TOP sends it. */
static void
send_piece(Sender *s, const char *p, gsize n)
{
	while (n > 0 && !s->done) {
		const char *lf = memchr(p, '\n', n);
		gsize run = lf != NULL ? (gsize)(lf - p) : n;
		if (run > 0)
			send_run(s, p, run);
		if (lf == NULL)
			return;
		send_lf(s);
		p += run + 1;
		n -= run + 1;
	}
}

gboolean
pb_mailbox_send(PbMailbox *mb, guint i, gint64 body_lines, PbLineOut *out,
                GError **error)
{
	Msg *m = &g_array_index(mb->msgs, Msg, i);
	g_auto(PbFd) fd = open_msg(mb, m);
	g_autofree char *buf = g_malloc(CHUNK + 8);
	g_autofree char *chunk = g_malloc(CHUNK);
	Sender s = {out, buf, 0, TRUE, FALSE, TRUE, FALSE, body_lines, FALSE};
	ssize_t n;

	if (fd < 0)
		return pb_throw_errno(error, "cannot open %s", m->name);
	while (!s.done && (n = read(fd, chunk, CHUNK)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pb_throw_errno(error, "cannot read %s", m->name);
		send_piece(&s, chunk, (gsize)n);
	}
	if (!s.bol)
		emit(&s, "\r\n", 2);
	emit(&s, ".\r\n", 3);
	pb_line_out_write(out, s.buf, s.len);
	if (body_lines < 0)
		m->seen = TRUE;
	return TRUE;
}

/* ---- UPDATE ---- */

/* new/NAME -> cur/NAME[,S=..,W=..]:2,S: the sizes are added so that
 * later sessions need not read a foreign message again. */
static char *
cur_name(PbMailbox *mb, const Msg *m)
{
	guint64 s, w;
	g_autofree char *base = g_strndup(m->name, strcspn(m->name, ":"));
	g_autofree char *path = NULL;
	struct stat st;

	if (pb_maildir_name_sizes(base, &s, &w))
		return g_strdup_printf("%s:2,S", base);
	if (strstr(base, ",S=") != NULL) /* Dovecot's S= alone */
		return g_strdup_printf("%s,W=%" G_GUINT64_FORMAT ":2,S", base,
		                       m->size);
	path = msg_path(mb, m);
	if (stat(path, &st) < 0)
		return g_strdup_printf("%s:2,S", base);
	return g_strdup_printf("%s,S=%" G_GUINT64_FORMAT ",W=%" G_GUINT64_FORMAT
	                       ":2,S",
	                       base, (guint64)st.st_size, m->size);
}

/* Applies the UPDATE state to one message, noting which folders changed;
 * a message another reader moved is followed, one it deleted is gone. */
static gboolean
commit_one(PbMailbox *mb, Msg *m, gboolean deleted, gboolean *new_changed,
           gboolean *cur_changed, GError **error)
{
	/* as open_msg: a message another reader renames meanwhile is
	 * followed; it is gone only when several scans miss it */
	for (int attempt = 0; attempt <= RELOCATE_TRIES; attempt++) {
		g_autofree char *from = NULL;
		g_autofree char *name = NULL;
		g_autofree char *to = NULL;
		int r;
		if (attempt > 0 && !relocate(mb, m, NULL))
			continue;
		if (!deleted && !(m->seen && m->in_new))
			return TRUE; /* nothing to do, or moved to cur/ by now
			              */
		from = msg_path(mb, m);
		if (deleted)
			r = unlink(from);
		else {
			name = cur_name(mb, m);
			to = g_build_filename(mb->dir, "cur", name, NULL);
			r = rename(from, to);
		}
		if (r == 0) {
			*(m->in_new ? new_changed : cur_changed) = TRUE;
			*cur_changed |= !deleted; /* moved into cur/ */
			return TRUE;
		}
		if (errno != ENOENT)
			return pb_throw_errno(error, "cannot %s %s",
			                      deleted ? "delete" : "move",
			                      m->name);
	}
	return TRUE; /* deleted by another reader */
}

gboolean
pb_mailbox_commit(PbMailbox *mb, const gboolean *deleted, GError **error)
{
	g_autofree char *newd = g_build_filename(mb->dir, "new", NULL);
	g_autofree char *curd = g_build_filename(mb->dir, "cur", NULL);
	gboolean new_changed = FALSE, cur_changed = FALSE;

	for (guint i = 0; i < mb->msgs->len; i++)
		if (!commit_one(mb, &g_array_index(mb->msgs, Msg, i),
		                deleted[i], &new_changed, &cur_changed, error))
			return FALSE;
	if ((new_changed && !pb_fsync_dir(newd, error)) ||
	    (cur_changed && !pb_fsync_dir(curd, error)))
		return FALSE;
	return TRUE;
}
