/*
 * mailfolder.c - the IMAP storage of one account (see mailfolder.h).
 *
 * Owns, under an account's Maildir ROOT: the folders .NAME (created,
 * renamed, removed here), the files dovecot-uidlist, dovecot-keywords and
 * their lock dovecot-uidlist.lock in each folder, ROOT/subscriptions and
 * its lock, ROOT/dovecot-uidvalidity (+ Dovecot's marker file
 * dovecot-uidvalidity.<hex>); and the renames, links and unlinks of
 * messages that IMAP asks for. Delivery (maildir.c) only adds files to
 * new/; pop3d (mailbox.c) renames new/X -> cur/X:2,S and unlinks.
 *
 * Locks are files made with link(2) (safe on NFS): a unique temporary
 * file linked to NAME.lock, trusted by its link count, "PID:HOST" inside
 * (Dovecot's dotlock content); a lock is stale after 2 minutes without a
 * change (Dovecot's uidlist stale timeout) or when its owner on this host
 * is dead. We hold one only while writing: UID assignment, keywords,
 * subscriptions, UIDVALIDITY allocation.
 *
 * The uidlist is read without the lock (it is only ever replaced by a
 * rename); under the lock it is read again before it is rewritten, and
 * records that others added since are kept. Every folder is reached
 * through descriptors opened O_DIRECTORY|O_NOFOLLOW, files with *at()
 * and O_NOFOLLOW, so a symbolic link in the tree leads nowhere.
 *
 * Commit points: a message is in a folder once its link (or rename) is
 * followed by an fsync of that folder; its UID is assigned once the
 * uidlist that names it is renamed into place and the folder fsync'ed.
 * A crash between the two costs a later sync the assignment, nothing
 * else; a MOVE links into the target before it unlinks the source, so a
 * crash leaves at worst two copies.
 */
#include "mailfolder.h"
#include "durable.h"
#include "error.h"
#include "maildir.h"
#include "mutf7.h"
#include "self.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define UIDLIST "dovecot-uidlist"
#define KEYWORDS "dovecot-keywords"
#define SUBSCRIPTIONS "subscriptions"
#define UIDVALIDITY_FILE "dovecot-uidvalidity"
#define LOCK_STALE 120        /* seconds: Dovecot's uidlist lock timeout */
#define LOCK_WAIT_US 10000000 /* how long we wait for a busy lock */
#define FILE_MAX (256 * 1024 * 1024) /* a uidlist of 2 million messages */
#define SMALL_FILE_MAX (1024 * 1024) /* keywords, subscriptions */
#define CHUNK 65536
#define DELETED_PREFIX "..pillarbox-deleted."
#define VSIZE_UNKNOWN G_MAXUINT64
#define SCAN_AGAIN 3 /* scans after the first while messages seem gone */

G_DEFINE_QUARK(pb - mailfolder - error - quark, pb_mailfolder_error)

static const char *const special_names[] = {"Drafts", "Sent", "Trash", "Junk",
                                            "Archive"};
static const guint special_attrs[] = {PB_FOLDER_DRAFTS, PB_FOLDER_SENT,
                                      PB_FOLDER_TRASH, PB_FOLDER_JUNK,
                                      PB_FOLDER_ARCHIVE};

static gboolean fail(GError **error, PbMailfolderError code, const char *fmt,
                     ...) G_GNUC_PRINTF(3, 4);

static gboolean
fail(GError **error, PbMailfolderError code, const char *fmt, ...)
{
	va_list ap;

	if (error == NULL)
		return FALSE;
	va_start(ap, fmt);
	*error = g_error_new_valist(PB_MAILFOLDER_ERROR, (gint)code, fmt, ap);
	va_end(ap);
	return FALSE;
}

/* ---- small file helpers, all relative to a folder descriptor ---- */

static int
open_dir_at(int dfd, const char *name)
{
	return openat(dfd, name,
	              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Reads a regular file NAME in DFD, at most MAX octets. FALSE with
 * PB_ERROR_NOTFOUND when it is missing. ST (optional) gets its stat. */
static gboolean
read_file_at(int dfd, const char *name, gsize max, char **text, gsize *len,
             struct stat *st, GError **error)
{
	/* O_NONBLOCK: a FIFO planted here must not hang us */
	g_auto(PbFd) fd =
	    openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat sb;
	g_autofree char *buf = NULL;
	gsize got = 0;

	if (fd < 0)
		return pb_throw_errno(error, "open %s", name);
	if (fstat(fd, &sb) < 0)
		return pb_throw_errno(error, "stat %s", name);
	if (!S_ISREG(sb.st_mode) || (guint64)sb.st_size > max) {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "%s: not a regular file or too large", name);
		return FALSE;
	}
	buf = g_malloc((gsize)sb.st_size + 1);
	while (got < (gsize)sb.st_size) {
		ssize_t n = read(fd, buf + got, (gsize)sb.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pb_throw_errno(error, "read %s", name);
		if (n == 0)
			break; /* shrank: a replace renames, so this is odd */
		got += (gsize)n;
	}
	buf[got] = '\0';
	if (st)
		*st = sb;
	*text = g_steal_pointer(&buf);
	*len = got;
	return TRUE;
}

/* The durability recipe relative to DFD: NAME.tmp<pid> (O_EXCL, 0600),
 * write, fsync, rename over NAME, fsync DFD. */
static gboolean
replace_at(int dfd, const char *name, const char *data, gsize len,
           GError **error)
{
	g_autofree char *tmp =
	    g_strdup_printf("%s.tmp%ld", name, (long)pb_self_pid());
	g_auto(PbFd) fd = -1;

	(void)unlinkat(dfd, tmp, 0); /* a dead process of ours with our pid */
	fd = openat(dfd, tmp,
	            O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return pb_throw_errno(error, "create %s", tmp);
	if (fchmod(fd, 0600) < 0 || !pb_write_all(fd, data, len, error) ||
	    fsync(fd) < 0 || close(g_steal_fd(&fd)) < 0 ||
	    renameat(dfd, tmp, dfd, name) < 0) {
		if (error && *error == NULL)
			pb_throw_errno(error, "write %s", name);
		(void)unlinkat(dfd, tmp, 0);
		return FALSE;
	}
	if (fsync(dfd) < 0)
		return pb_throw_errno(error, "fsync after %s", name);
	return TRUE;
}

static gboolean
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* ---- locks ---- */

static gboolean
lock_is_stale(int dfd, const char *lock)
{
	char text[300] = "";
	long pid = 0;
	struct stat st;
	g_auto(PbFd) fd =
	    openat(dfd, lock, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	ssize_t n;
	char *colon;

	if (fd < 0)
		return errno == ENOENT;
	if (fstat(fd, &st) < 0)
		return FALSE;
	if (time(NULL) - st.st_mtime > LOCK_STALE)
		return TRUE;
	n = read(fd, text, sizeof text - 1);
	if (n <= 0)
		return FALSE;
	text[n] = '\0';
	text[strcspn(text, "\r\n")] = '\0';
	pid = strtol(text, &colon, 10);
	if (*colon != ':' || pid <= 0)
		return FALSE;
	/* only an owner on this host can be checked */
	return g_str_equal(colon + 1, pb_self_host()) && kill((pid_t)pid, 0) < 0 &&
	       errno == ESRCH;
}

/* One attempt: TRUE when we hold LOCK afterwards. */
static gboolean
lock_try(int dfd, const char *lock, GError **error)
{
	const char *host = pb_self_host();
	g_autofree char *tmp = NULL;
	g_autofree char *text = NULL;
	g_auto(PbFd) fd = -1;
	struct stat st;
	gboolean got;

	tmp = g_strdup_printf("%s.%s.%ld.%08x", lock, host,
	                      (long)pb_self_pid(), g_random_int());
	text = g_strdup_printf("%ld:%s\n", (long)pb_self_pid(), host);
	fd = openat(dfd, tmp,
	            O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return pb_throw_errno(error, "create %s", tmp);
	if (!pb_write_all(fd, text, strlen(text), error)) {
		(void)unlinkat(dfd, tmp, 0);
		return FALSE;
	}
	(void)linkat(dfd, tmp, dfd, lock, 0);
	/* NFS may lose the reply of a link that worked: trust the count */
	got = fstat(fd, &st) == 0 && st.st_nlink == 2;
	(void)unlinkat(dfd, tmp, 0);
	return got;
}

/* Takes LOCK in DFD, waiting a while for a busy one and breaking a
 * stale one. PB_ERROR_TEMP when it stays busy. */
static gboolean
lock_take(int dfd, const char *lock, GError **error)
{
	gint64 until = g_get_monotonic_time() + LOCK_WAIT_US;
	gulong pause = 1000;

	for (;;) {
		GError *err = NULL;
		if (lock_try(dfd, lock, &err))
			return TRUE;
		if (err) {
			g_propagate_error(error, err);
			return FALSE;
		}
		if (lock_is_stale(dfd, lock)) {
			/* XXX two processes breaking one stale lock at the
			 * same instant can both win (liblockfile's race) */
			(void)unlinkat(dfd, lock, 0);
			continue;
		}
		if (g_get_monotonic_time() > until)
			break;
		g_usleep(pause);
		pause = MIN(pause * 2, 100000);
	}
	g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "%s is busy", lock);
	return FALSE;
}

static void
lock_release(int dfd, const char *lock)
{
	(void)unlinkat(dfd, lock, 0);
}

/* ---- names ---- */

static gboolean
is_inbox_level(const char *name, gsize len)
{
	return len == 5 && g_ascii_strncasecmp(name, "INBOX", 5) == 0;
}

/* No control characters in the decoded name (C0, DEL, C1). */
static gboolean
decoded_printable(const char *utf8)
{
	for (const char *p = utf8; *p; p = g_utf8_next_char(p)) {
		gunichar c = g_utf8_get_char(p);
		if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
			return FALSE;
	}
	return TRUE;
}

static gboolean
level_ok(const char *level, gsize len)
{
	static const char *const reserved[] = {"tmp", "new", "cur"};

	if (len == 0)
		return FALSE;
	for (guint i = 0; i < G_N_ELEMENTS(reserved); i++)
		if (len == 3 && memcmp(level, reserved[i], 3) == 0)
			return FALSE;
	return TRUE;
}

gboolean
pb_mailfolder_name_check(const char *name, GError **error)
{
	gsize len = name ? strlen(name) : 0;
	g_autofree char *utf8 = NULL;
	guint depth = 0;
	const char *p, *level;

	if (len == 0 || len > PB_MAILFOLDER_NAME_MAX)
		return fail(error, PB_MAILFOLDER_ERROR_BADNAME,
		            "Mailbox name is empty or too long");
	if (is_inbox_level(name, len))
		return TRUE;
	if (name[0] == '~' || strpbrk(name, "/\\*%") != NULL)
		return fail(error, PB_MAILFOLDER_ERROR_BADNAME,
		            "Character not allowed in mailbox name");
	for (level = p = name;; p++) {
		if (*p != '.' && *p != '\0')
			continue;
		if (!level_ok(level, (gsize)(p - level)) ||
		    ++depth > PB_MAILFOLDER_DEPTH_MAX)
			return fail(error, PB_MAILFOLDER_ERROR_BADNAME,
			            "Invalid mailbox name: empty or reserved "
			            "level, or too deep");
		if (*p == '\0')
			break;
		level = p + 1;
	}
	utf8 = pb_mutf7_to_utf8(name, len);
	if (utf8 == NULL || !pb_mutf7_valid(name, len) ||
	    !decoded_printable(utf8))
		return fail(error, PB_MAILFOLDER_ERROR_BADNAME,
		            "Mailbox name is not valid modified UTF-7");
	return TRUE;
}

char *
pb_mailfolder_name_canon(const char *name)
{
	gsize first = strcspn(name, ".");

	if (is_inbox_level(name, first))
		return g_strconcat("INBOX", name + first, NULL);
	return g_strdup(name);
}

/* The folder's directory name under ROOT ("." for INBOX), whatever the
 * case of an INBOX level. */
static char *
dir_name(const char *name)
{
	g_autofree char *canon = pb_mailfolder_name_canon(name);

	return g_str_equal(canon, "INBOX") ? g_strdup(".")
	                                   : g_strconcat(".", canon, NULL);
}

/* ---- dovecot-uidlist ---- */

void
pb_uidlist_free(PbUidlist *ul)
{
	if (ul == NULL)
		return;
	for (guint i = 0; i < ul->recs->len; i++) {
		PbUidRec *r = &g_array_index(ul->recs, PbUidRec, i);
		g_free(r->name);
		g_free(r->ext);
	}
	g_array_unref(ul->recs);
	g_free(ul->header_rest);
	g_free(ul);
}

static PbUidlist *
uidlist_new(guint32 uidvalidity)
{
	PbUidlist *ul = g_new0(PbUidlist, 1);

	ul->version = 3;
	ul->uidvalidity = uidvalidity;
	ul->uidnext = 1;
	ul->recs = g_array_new(FALSE, TRUE, sizeof(PbUidRec));
	return ul;
}

static gboolean
parse_u32(const char *s, gsize len, guint32 *out)
{
	guint64 v = 0;

	if (len == 0 || len > 10)
		return FALSE;
	for (gsize i = 0; i < len; i++) {
		if (!g_ascii_isdigit(s[i]))
			return FALSE;
		v = v * 10 + (guint64)(s[i] - '0');
	}
	if (v == 0 || v >= G_MAXUINT32)
		return FALSE;
	*out = (guint32)v;
	return TRUE;
}

/* "3 V<n> N<n> G<guid> ..." or Dovecot 1's "1 <validity> <next>". */
static gboolean
parse_header(PbUidlist *ul, char *line)
{
	g_auto(GStrv) f = g_strsplit(line, " ", 0);
	g_autoptr(GString) rest = g_string_new(NULL);

	if (f[0] && g_str_equal(f[0], "1") && f[1] && f[2]) {
		ul->version = 1;
		return parse_u32(f[1], strlen(f[1]), &ul->uidvalidity) &&
		       parse_u32(f[2], strlen(f[2]), &ul->uidnext);
	}
	if (f[0] == NULL || !g_str_equal(f[0], "3"))
		return FALSE;
	for (guint i = 1; f[i]; i++) {
		if (f[i][0] == 'V')
			(void)parse_u32(f[i] + 1, strlen(f[i] + 1),
			                &ul->uidvalidity);
		else if (f[i][0] == 'N')
			(void)parse_u32(f[i] + 1, strlen(f[i] + 1),
			                &ul->uidnext);
		else if (f[i][0] != '\0')
			g_string_append_printf(rest, " %s", f[i]);
	}
	if (ul->uidvalidity == 0)
		return FALSE;
	ul->header_rest = rest->len ? g_strdup(rest->str) : NULL;
	return TRUE;
}

/* A record: "<uid> [<ext> ...] :<name>" (version 1: "<uid> <name>"). */
static gboolean
parse_record(PbUidlist *ul, const char *line, PbUidRec *r)
{
	gsize n = strspn(line, "0123456789");
	const char *ext, *name;

	if (!parse_u32(line, n, &r->uid) || line[n] != ' ')
		return FALSE;
	ext = line + n + 1;
	if (ul->version == 1)
		name = ext;
	else if (ext[0] == ':')
		name = ext + 1;
	else if ((name = strstr(ext, " :")) != NULL)
		name += 2;
	else
		return FALSE;
	if (name[0] == '\0' || name[0] == '.' || strchr(name, '/') ||
	    strlen(name) > 255)
		return FALSE;
	r->name = g_strdup(name);
	if (ul->version != 1 && ext[0] != ':')
		r->ext = g_strndup(ext, (gsize)(name - 2 - ext));
	return TRUE;
}

PbUidlist *
pb_uidlist_parse(const char *text, gsize len, GError **error)
{
	g_autoptr(PbUidlist) ul = uidlist_new(0);
	g_autofree char *copy = g_strndup(text, len);
	char *line = copy, *next;
	guint32 last = 0;

	if (memchr(text, '\0', len) != NULL ||
	    (next = strchr(line, '\n')) == NULL)
		goto bad;
	*next++ = '\0';
	if (!parse_header(ul, line))
		goto bad;
	for (line = next; *line; line = next) {
		PbUidRec r = {0};
		next = strchr(line, '\n');
		if (next == NULL)
			break; /* a line being appended: not complete */
		*next++ = '\0';
		if (!parse_record(ul, line, &r))
			continue;
		if (r.uid <= last) {
			g_free(r.name);
			g_free(r.ext);
			continue;
		}
		last = r.uid;
		g_array_append_val(ul->recs, r);
	}
	if (ul->uidnext <= last)
		ul->uidnext = last + 1;
	ul->version = 3;
	return g_steal_pointer(&ul);
bad:
	g_set_error(error, PB_ERROR, PB_ERROR_DATA,
	            "dovecot-uidlist: bad header");
	return NULL;
}

char *
pb_uidlist_format(const PbUidlist *ul, gsize *len)
{
	GString *s = g_string_sized_new(64 + ul->recs->len * 64);

	g_string_append_printf(s, "3 V%u N%u%s\n", ul->uidvalidity, ul->uidnext,
	                       ul->header_rest ? ul->header_rest : "");
	for (guint i = 0; i < ul->recs->len; i++) {
		const PbUidRec *r = &g_array_index(ul->recs, PbUidRec, i);
		g_string_append_printf(s, "%u%s%s :%s\n", r->uid,
		                       r->ext ? " " : "", r->ext ? r->ext : "",
		                       r->name);
	}
	if (len)
		*len = s->len;
	return g_string_free(s, FALSE);
}

/* ---- dovecot-keywords ---- */

/* An IMAP flag-keyword atom (RFC 3501 atom minus "]"), not a \flag. */
static gboolean
keyword_ok(const char *k)
{
	gsize len = strlen(k);

	if (len == 0 || len > PB_MAILFOLDER_KEYWORD_LEN_MAX)
		return FALSE;
	for (gsize i = 0; i < len; i++)
		if ((guchar)k[i] <= 0x20 || (guchar)k[i] >= 0x7f ||
		    strchr("(){%*\"\\]", k[i]) != NULL)
			return FALSE;
	return TRUE;
}

char **
pb_keywords_parse(const char *text, gsize len)
{
	char **kw = g_new0(char *, PB_MAILFOLDER_KEYWORDS_MAX + 1);
	g_autofree char *copy = g_strndup(text, len);
	g_auto(GStrv) lines = g_strsplit(copy, "\n", 0);

	for (guint i = 0; lines[i]; i++) {
		gsize n = strspn(lines[i], "0123456789");
		const char *name = lines[i] + n + 1;
		guint idx;
		gboolean dup = FALSE;
		if (n == 0 || n > 2 || lines[i][n] != ' ' || !keyword_ok(name))
			continue;
		idx = (guint)atoi(lines[i]);
		if (idx >= PB_MAILFOLDER_KEYWORDS_MAX || kw[idx] != NULL)
			continue;
		for (guint k = 0; k < PB_MAILFOLDER_KEYWORDS_MAX; k++)
			dup |= kw[k] && g_ascii_strcasecmp(kw[k], name) == 0;
		if (!dup)
			kw[idx] = g_strdup(name);
	}
	return kw;
}

void
pb_keywords_free(char **kw)
{
	if (kw == NULL)
		return;
	for (guint k = 0; k < PB_MAILFOLDER_KEYWORDS_MAX; k++)
		g_free(kw[k]);
	g_free(kw);
}

static char *
keywords_format(char *const *kw, gsize *len)
{
	GString *s = g_string_new(NULL);

	for (guint k = 0; k < PB_MAILFOLDER_KEYWORDS_MAX; k++)
		if (kw[k])
			g_string_append_printf(s, "%u %s\n", k, kw[k]);
	*len = s->len;
	return g_string_free(s, FALSE);
}

/* ---- subscriptions ---- */

static void
add_subscription(GPtrArray *out, const char *name)
{
	g_autofree char *canon = NULL;

	if (!pb_mailfolder_name_check(name, NULL))
		return;
	canon = pb_mailfolder_name_canon(name);
	for (guint i = 0; i < out->len; i++)
		if (g_str_equal(out->pdata[i], canon))
			return;
	g_ptr_array_add(out, g_steal_pointer(&canon));
}

char **
pb_subscriptions_parse(const char *text, gsize len)
{
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *copy = g_strndup(text, len);
	g_auto(GStrv) lines = g_strsplit(copy, "\n", 0);
	/* version 2: "V\t2", an empty line, then levels split by TAB */
	gboolean v2 = lines[0] && g_str_has_prefix(lines[0], "V\t");

	for (guint i = v2 ? 1 : 0; lines[i]; i++) {
		if (lines[i][0] == '\0')
			continue;
		if (v2)
			g_strdelimit(lines[i], "\t", '.');
		add_subscription(out, lines[i]);
	}
	g_ptr_array_add(out, NULL);
	return (char **)g_ptr_array_free(g_steal_pointer(&out), FALSE);
}

static char *
subscriptions_format(char *const *names, gsize *len)
{
	GString *s = g_string_new("V\t2\n\n");

	for (guint i = 0; names[i]; i++) {
		gsize at = s->len;
		g_string_append(s, names[i]);
		g_strdelimit(s->str + at, ".", '\t');
		g_string_append_c(s, '\n');
	}
	*len = s->len;
	return g_string_free(s, FALSE);
}

/* ---- flags in file names ---- */

static const struct {
	char letter;
	guint flag;
} letters[] = {
    {'D', PB_MSG_DRAFT}, {'F', PB_MSG_FLAGGED}, {'R', PB_MSG_ANSWERED},
    {'S', PB_MSG_SEEN},  {'T', PB_MSG_DELETED},
};

static gsize
base_len(const char *name)
{
	return strcspn(name, ":");
}

/* The letters of a name's info ":2,<letters>[,<rest>]", or NULL. */
static const char *
info_of(const char *name)
{
	const char *p = strchr(name, ':');

	return p && p[1] == '2' && p[2] == ',' ? p + 3 : NULL;
}

static void
parse_flags(const char *name, guint *flags, guint32 *kw)
{
	const char *info = info_of(name);

	*flags = 0;
	*kw = 0;
	for (const char *p = info; p && *p && *p != ','; p++) {
		if (*p >= 'a' && *p <= 'z')
			*kw |= 1u << (*p - 'a');
		for (guint i = 0; i < G_N_ELEMENTS(letters); i++)
			if (*p == letters[i].letter)
				*flags |= letters[i].flag;
	}
}

static gboolean
letter_is_ours(char c)
{
	return (c >= 'a' && c <= 'z') || strchr("DFRST", c) != NULL;
}

/* NAME with its info set to FLAGS and KW; the letters we do not manage
 * (P, other capitals, digits) and anything after a "," are kept. */
static char *
name_with_flags(const char *name, guint flags, guint32 kw)
{
	gboolean set[128] = {FALSE};
	const char *info = info_of(name);
	const char *tail = NULL;
	GString *s = g_string_new_len(name, (gssize)base_len(name));

	for (const char *p = info; p && *p && *p != ','; p++)
		if ((guchar)*p < 128 && *p > 0x20 && !letter_is_ours(*p))
			set[(guchar)*p] = TRUE;
	if (info)
		tail = strchr(info, ',');
	for (guint i = 0; i < G_N_ELEMENTS(letters); i++)
		if (flags & letters[i].flag)
			set[(guchar)letters[i].letter] = TRUE;
	for (guint k = 0; k < 26; k++)
		if (kw & (1u << k))
			set['a' + k] = TRUE;
	g_string_append(s, ":2,");
	for (guint c = 0x21; c < 128; c++)
		if (set[c])
			g_string_append_c(s, (char)c);
	if (tail)
		g_string_append(s, tail);
	return g_string_free(s, FALSE);
}

/* ---- the store ---- */

struct _PbMailStore {
	char *root;
	int rootfd;
};

const char *
pb_mailstore_root(PbMailStore *st)
{
	return st->root;
}

void
pb_mailstore_free(PbMailStore *st)
{
	if (st == NULL)
		return;
	if (st->rootfd >= 0)
		close(st->rootfd);
	g_free(st->root);
	g_free(st);
}

PbMailStore *
pb_mailstore_open(const char *root, GError **error)
{
	g_autoptr(PbMailStore) st = g_new0(PbMailStore, 1);

	st->rootfd = -1;
	st->root = g_strdup(root);
	if (!pb_maildir_create(root, error))
		return NULL;
	st->rootfd =
	    open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (st->rootfd < 0)
		return pb_throw_errno(error, "open %s", root), NULL;
	return g_steal_pointer(&st);
}

/* The largest UIDVALIDITY Dovecot's marker dovecot-uidvalidity.<hex>
 * names (0: none); *MARKER gets its name. */
static guint32
uidvalidity_marker(int rootfd, char **marker)
{
	g_auto(PbFd) fd = open_dir_at(rootfd, ".");
	DIR *d = fd >= 0 ? fdopendir(g_steal_fd(&fd)) : NULL;
	struct dirent *de;
	guint32 best = 0;

	*marker = NULL;
	while (d && (de = readdir(d)) != NULL) {
		const char *hex = de->d_name + strlen(UIDVALIDITY_FILE) + 1;
		guint64 v;
		char *end;
		if (!g_str_has_prefix(de->d_name, UIDVALIDITY_FILE ".") ||
		    strlen(hex) != 8)
			continue;
		v = g_ascii_strtoull(hex, &end, 16);
		if (*end == '\0' && v > best && v <= G_MAXUINT32) {
			best = (guint32)v;
			g_free(*marker);
			*marker = g_strdup(de->d_name);
		}
	}
	if (d)
		closedir(d);
	return best;
}

/* A UIDVALIDITY above every one this account handed out, and above the
 * time when the clock allows (Dovecot's rule), recorded before use. */
static gboolean
next_uidvalidity_locked(PbMailStore *st, guint32 *out, GError **error)
{
	g_autofree char *text = NULL;
	g_autofree char *marker = NULL;
	g_autofree char *hex = NULL;
	g_autofree char *newmarker = NULL;
	gsize len;
	guint32 last = uidvalidity_marker(st->rootfd, &marker);
	guint64 now = (guint64)time(NULL);

	if (read_file_at(st->rootfd, UIDVALIDITY_FILE, 64, &text, &len, NULL,
	                 NULL))
		last = MAX(last, (guint32)g_ascii_strtoull(text, NULL, 16));
	*out = now > last && now < G_MAXUINT32 ? (guint32)now : last + 1;
	if (*out == 0)
		*out = 1; /* XXX wrapped after 4 billion folders */
	hex = g_strdup_printf("%08x", *out);
	if (!replace_at(st->rootfd, UIDVALIDITY_FILE, hex, 8, error))
		return FALSE;
	newmarker = g_strconcat(UIDVALIDITY_FILE ".", hex, NULL);
	if (marker)
		(void)renameat(st->rootfd, marker, st->rootfd, newmarker);
	else {
		int m =
		    openat(st->rootfd, newmarker,
		           O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (m >= 0)
			close(m);
	}
	(void)fsync(st->rootfd);
	return TRUE;
}

static gboolean
next_uidvalidity(PbMailStore *st, guint32 *out, GError **error)
{
	gboolean ok;

	if (!lock_take(st->rootfd, UIDVALIDITY_FILE ".lock", error))
		return FALSE;
	ok = next_uidvalidity_locked(st, out, error);
	lock_release(st->rootfd, UIDVALIDITY_FILE ".lock");
	return ok;
}

/* ---- an open folder: messages ---- */

typedef struct {
	char *name;    /* the file name in new/ or cur/ */
	char *ext;     /* the uidlist's extension fields, or NULL */
	guint64 vsize; /* RFC822.SIZE, VSIZE_UNKNOWN until known */
	gint64 mtime;  /* -1 until looked at */
	guint32 uid;
	guint32 kw;
	guint8 flags; /* PbMsgFlags, RECENT for ours */
	guint8 in_new;
	guint8 expunged; /* gone from disk, not yet reported */
	guint8 changed;  /* flags changed by others, not yet reported */
} Msg;

struct _PbMailFolder {
	PbMailStore *st;
	char *name;
	gboolean ro;
	int dfd, newfd, curfd;
	char *watch[3];
	GArray *msgs; /* Msg, ascending UIDs */
	guint32 uidvalidity, uidnext;
	char *header_rest; /* the uidlist header's other fields */
	struct stat ul_st; /* the uidlist we read last (st_ino 0: none) */
	struct stat kw_st; /* the same for dovecot-keywords */
	char **kw;         /* PB_MAILFOLDER_KEYWORDS_MAX + 1, NULL gaps */
	char **kw_list;    /* the names without gaps, for the caller */
	struct timespec new_mtime, cur_mtime, scan_time;
	gboolean w_dirty;    /* a W size computed: worth writing the uidlist */
	gboolean ul_missing; /* no usable uidlist on disk: write ours */
	PbUidlist *opened;   /* the uidlist read at opening, until used */
	guint recent;
};

static void
msg_clear(Msg *m)
{
	g_free(m->name);
	g_free(m->ext);
}

static void
msgs_free(GArray *msgs)
{
	for (guint i = 0; i < msgs->len; i++)
		msg_clear(&g_array_index(msgs, Msg, i));
	g_array_unref(msgs);
}

static Msg *
msg_at(PbMailFolder *f, guint i)
{
	return &g_array_index(f->msgs, Msg, i);
}

static int
msg_dirfd(PbMailFolder *f, const Msg *m)
{
	return m->in_new ? f->newfd : f->curfd;
}

/* ---- scanning new/ and cur/ ---- */

typedef struct {
	char *name;
	gboolean in_new;
	gboolean used;
} Ent;

static void
ent_free(Ent *e)
{
	g_free(e->name);
	g_free(e);
}

/* A message file name we can keep in the uidlist: no control
 * characters (a newline would end its line), not hidden, not too long. */
static gboolean
name_usable(const char *name)
{
	gsize len = 0;

	if (name[0] == '.' || name[0] == ':')
		return FALSE;
	for (; name[len]; len++)
		if ((guchar)name[len] < 0x20 || name[len] == 0x7f)
			return FALSE;
	return len <= 255;
}

static gboolean
scan_one(int fd, gboolean in_new, GHashTable *h, GError **error)
{
	g_auto(PbFd) dup = open_dir_at(fd, ".");
	DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
	struct dirent *de;

	if (d == NULL)
		return pb_throw_errno(error, "cannot read %s",
		                      in_new ? "new" : "cur");
	g_steal_fd(&dup);
	while ((de = readdir(d)) != NULL) {
		Ent *e;
		gsize n = base_len(de->d_name);
		if (!name_usable(de->d_name) || n == 0 ||
		    de->d_type == DT_DIR || de->d_type == DT_LNK)
			continue;
		e = g_new0(Ent, 1);
		e->name = g_strdup(de->d_name);
		e->in_new = in_new;
		/* cur/ is read second and wins: a message seen in both was
		 * being moved from new/ to cur/ */
		g_hash_table_replace(h, g_strndup(de->d_name, n), e);
	}
	closedir(d);
	return TRUE;
}

/* Base name -> Ent of every file in new/ and cur/ (new/ first: a file
 * moved from new/ to cur/ meanwhile is then seen at least once). */
static gboolean
scan_into(PbMailFolder *f, GHashTable *h, GError **error)
{
	struct stat nst, cst;

	if (fstat(f->newfd, &nst) < 0 || fstat(f->curfd, &cst) < 0)
		return pb_throw_errno(error, "stat %s", f->name);
	clock_gettime(CLOCK_REALTIME, &f->scan_time);
	f->new_mtime = nst.st_mtim;
	f->cur_mtime = cst.st_mtim;
	return scan_one(f->newfd, TRUE, h, error) &&
	       scan_one(f->curfd, FALSE, h, error);
}

static GHashTable *
scan(PbMailFolder *f, GError **error)
{
	g_autoptr(GHashTable) h = g_hash_table_new_full(
	    g_str_hash, g_str_equal, g_free, (GDestroyNotify)ent_free);

	if (!scan_into(f, h, error))
		return NULL;
	return g_steal_pointer(&h);
}

static gboolean
ts_equal(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Nothing to look at: new/, cur/ and the uidlist as at the last scan,
 * and that scan began more than a second after their last change (a
 * change within the file system's clock tick would not show). */
static gboolean
unchanged(PbMailFolder *f)
{
	struct stat nst, cst, ust;

	if (fstat(f->newfd, &nst) < 0 || fstat(f->curfd, &cst) < 0 ||
	    !ts_equal(&nst.st_mtim, &f->new_mtime) ||
	    !ts_equal(&cst.st_mtim, &f->cur_mtime))
		return FALSE;
	if (fstatat(f->dfd, UIDLIST, &ust, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !same_file(&ust, &f->ul_st))
		return FALSE;
	return f->scan_time.tv_sec >
	       MAX(nst.st_mtim.tv_sec, cst.st_mtim.tv_sec) + 1;
}

/* M was renamed to NAME by someone else: its flags there are to be
 * reported (a FETCH) at the next sync. */
static void
msg_rename(Msg *m, const char *name, gboolean in_new)
{
	guint flags;
	guint32 kw;

	g_free(m->name);
	m->name = g_strdup(name);
	m->in_new = (guint8)in_new;
	parse_flags(m->name, &flags, &kw);
	if (flags != (guint)(m->flags & PB_MSG_STORABLE) || kw != m->kw)
		m->changed = TRUE;
	m->flags = (guint8)(flags | (m->flags & PB_MSG_RECENT));
	m->kw = kw;
}

/* Messages by base name, for a refreshed scan. */
static gboolean
refresh_names(PbMailFolder *f, GError **error)
{
	g_autoptr(GHashTable) h = scan(f, error);

	if (h == NULL)
		return FALSE;
	for (guint i = 0; i < f->msgs->len; i++) {
		Msg *m = msg_at(f, i);
		g_autofree char *base = g_strndup(m->name, base_len(m->name));
		Ent *e = g_hash_table_lookup(h, base);
		if (e == NULL ||
		    (g_str_equal(e->name, m->name) && e->in_new == m->in_new))
			continue;
		msg_rename(m, e->name, e->in_new);
	}
	/* what else changed is the next sync's to report: make it look */
	f->new_mtime.tv_sec = f->cur_mtime.tv_sec = 0;
	return TRUE;
}

/* ---- reading the uidlist and keywords ---- */

/* The uidlist on disk when it changed since we read it last (*UL NULL
 * when it did not, or when it is missing or damaged: *MISSING). */
static gboolean
uidlist_reread(PbMailFolder *f, PbUidlist **ul, gboolean *missing,
               GError **error)
{
	g_autofree char *text = NULL;
	g_autoptr(GError) err = NULL;
	struct stat st;
	gsize len;

	*ul = NULL;
	*missing = FALSE;
	if (fstatat(f->dfd, UIDLIST, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    same_file(&st, &f->ul_st))
		return TRUE;
	if (!read_file_at(f->dfd, UIDLIST, FILE_MAX, &text, &len, &st, &err)) {
		if (!g_error_matches(err, PB_ERROR, PB_ERROR_NOTFOUND) &&
		    !g_error_matches(err, PB_ERROR, PB_ERROR_DATA)) {
			g_propagate_error(error, g_steal_pointer(&err));
			return FALSE;
		}
		*missing = f->ul_missing = TRUE;
		memset(&f->ul_st, 0, sizeof f->ul_st);
		return TRUE;
	}
	f->ul_st = st;
	*ul = pb_uidlist_parse(text, len, NULL);
	*missing = *ul == NULL;
	f->ul_missing |= *missing;
	return TRUE;
}

static void
kw_set(PbMailFolder *f, char **kw)
{
	GPtrArray *list = g_ptr_array_new();

	pb_keywords_free(f->kw);
	g_free(f->kw_list);
	f->kw = kw;
	for (guint k = 0; k < PB_MAILFOLDER_KEYWORDS_MAX; k++)
		if (kw[k])
			g_ptr_array_add(list, kw[k]);
	g_ptr_array_add(list, NULL);
	f->kw_list = (char **)g_ptr_array_free(list, FALSE);
}

/* Reads dovecot-keywords of folder DFD (an empty table when missing). */
static char **
keywords_read(int dfd, struct stat *st)
{
	g_autofree char *text = NULL;
	gsize len;

	if (!read_file_at(dfd, KEYWORDS, SMALL_FILE_MAX, &text, &len, st,
	                  NULL)) {
		if (st)
			memset(st, 0, sizeof *st);
		return g_new0(char *, PB_MAILFOLDER_KEYWORDS_MAX + 1);
	}
	return pb_keywords_parse(text, len);
}

/* TRUE when the table grew. */
static gboolean
keywords_reload(PbMailFolder *f)
{
	struct stat st;
	guint before = g_strv_length(f->kw_list);

	if (fstatat(f->dfd, KEYWORDS, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    same_file(&st, &f->kw_st))
		return FALSE;
	if (fstatat(f->dfd, KEYWORDS, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
	    f->kw_st.st_ino == 0)
		return FALSE;
	kw_set(f, keywords_read(f->dfd, &f->kw_st));
	return g_strv_length(f->kw_list) > before;
}

/* ---- UIDs ---- */

/* Delivery order (pb_maildir_name_compare). */
static gint
by_delivery(gconstpointer a, gconstpointer b)
{
	return pb_maildir_name_compare((*(Ent *const *)a)->name,
	                               (*(Ent *const *)b)->name);
}

static gint
by_uid(gconstpointer a, gconstpointer b)
{
	guint32 x = ((const Msg *)a)->uid, y = ((const Msg *)b)->uid;

	return x < y ? -1 : x > y;
}

static guint32
last_uid(PbMailFolder *f)
{
	return f->msgs->len ? msg_at(f, f->msgs->len - 1)->uid : 0;
}

static void
add_msg(GArray *fresh, const Ent *e, guint32 uid, const char *ext)
{
	Msg m = {0};
	guint64 s;
	guint flags;

	m.name = g_strdup(e->name);
	m.ext = g_strdup(ext);
	m.uid = uid;
	m.in_new = (guint8)e->in_new;
	m.mtime = -1;
	m.vsize = VSIZE_UNKNOWN;
	if (!pb_maildir_name_sizes(m.name, &s, &m.vsize) && ext) {
		const char *w = strstr(ext, "W");
		/* a W<size> field of the uidlist */
		for (; w; w = strstr(w + 1, "W"))
			if ((w == ext || w[-1] == ' ') &&
			    g_ascii_isdigit(w[1])) {
				m.vsize = g_ascii_strtoull(w + 1, NULL, 10);
				break;
			}
	}
	parse_flags(m.name, &flags, &m.kw);
	m.flags = (guint8)flags;
	g_array_append_val(fresh, m);
}

/* Entries not yet used that DISK names with a UID above AFTER become
 * messages (in FRESH). */
static void
adopt(GPtrArray *ents, const PbUidlist *disk, guint32 after, GArray *fresh)
{
	g_autoptr(GHashTable) by_base = NULL;

	if (disk == NULL || disk->recs->len == 0)
		return;
	by_base = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	for (guint i = 0; i < disk->recs->len; i++) {
		PbUidRec *r = &g_array_index(disk->recs, PbUidRec, i);
		if (r->uid > after)
			g_hash_table_insert(
			    by_base, g_strndup(r->name, base_len(r->name)), r);
	}
	for (guint i = 0; i < ents->len; i++) {
		Ent *e = ents->pdata[i];
		g_autofree char *base = NULL;
		PbUidRec *r;
		if (e->used)
			continue;
		base = g_strndup(e->name, base_len(e->name));
		if ((r = g_hash_table_lookup(by_base, base)) == NULL)
			continue;
		add_msg(fresh, e, r->uid, r->ext);
		g_hash_table_remove(by_base, base); /* one file per UID */
		e->used = TRUE;
	}
}

static PbUidRec
rec_of(const Msg *m)
{
	return (PbUidRec){m->uid, g_strdup(m->name), g_strdup(m->ext)};
}

static PbUidRec
rec_copy(const PbUidRec *r)
{
	return (PbUidRec){r->uid, g_strdup(r->name), g_strdup(r->ext)};
}

/* What to write: our messages (their current names) merged with the
 * records of DISK above AFTER that we do not have (files others added
 * that our scan has not seen); records at or below AFTER that we do not
 * have are expunged messages. */
static PbUidlist *
uidlist_compose(PbMailFolder *f, const PbUidlist *disk, guint32 after)
{
	PbUidlist *ul = uidlist_new(f->uidvalidity);
	guint i = 0, j = 0;
	guint n = disk ? disk->recs->len : 0;

	ul->header_rest = g_strdup(f->header_rest);
	while (i < f->msgs->len || j < n) {
		const Msg *m = i < f->msgs->len ? msg_at(f, i) : NULL;
		const PbUidRec *r =
		    j < n ? &g_array_index(disk->recs, PbUidRec, j) : NULL;
		PbUidRec out;
		if (r && (r->uid <= after || (m && r->uid == m->uid))) {
			j++;
			continue;
		}
		if (m && m->expunged) {
			i++;
			continue;
		}
		if (m && (r == NULL || m->uid < r->uid)) {
			out = rec_of(m);
			i++;
		} else {
			out = rec_copy(r);
			j++;
		}
		g_array_append_val(ul->recs, out);
	}
	ul->uidnext = MAX(f->uidnext, disk ? disk->uidnext : 1);
	return ul;
}

static gboolean
uidlist_write(PbMailFolder *f, const PbUidlist *disk, guint32 after,
              GError **error)
{
	g_autoptr(PbUidlist) ul = uidlist_compose(f, disk, after);
	gsize len;
	g_autofree char *text = pb_uidlist_format(ul, &len);

	if (!replace_at(f->dfd, UIDLIST, text, len, error))
		return FALSE;
	(void)fstatat(f->dfd, UIDLIST, &f->ul_st, AT_SYMLINK_NOFOLLOW);
	f->w_dirty = FALSE;
	f->ul_missing = FALSE;
	return TRUE;
}

static void
header_from(PbMailFolder *f, const PbUidlist *disk)
{
	if (disk == NULL || disk->uidvalidity != f->uidvalidity)
		return; /* XXX replaced under us: we keep what we told */
	f->uidnext = MAX(f->uidnext, disk->uidnext);
	if (f->header_rest == NULL && disk->header_rest)
		f->header_rest = g_strdup(disk->header_rest);
}

/* Records above AFTER that no file of our scan matched: a file another
 * process numbered that our readdir missed (a rename raced it). Before
 * we hand out UIDs above them, look once more, or the file would get a
 * second UID later. */
static gboolean
adopt_unseen(PbMailFolder *f, const PbUidlist *disk, guint32 after,
             GArray *fresh, GError **error)
{
	g_autoptr(GHashTable) adopted = g_hash_table_new(NULL, NULL);
	g_autoptr(GHashTable) h = NULL;

	for (guint i = 0; i < fresh->len; i++)
		g_hash_table_add(
		    adopted,
		    GUINT_TO_POINTER(g_array_index(fresh, Msg, i).uid));
	for (guint i = 0; i < disk->recs->len; i++) {
		const PbUidRec *r = &g_array_index(disk->recs, PbUidRec, i);
		g_autofree char *base = NULL;
		Ent *e;
		if (r->uid <= after ||
		    g_hash_table_contains(adopted, GUINT_TO_POINTER(r->uid)))
			continue;
		if (h == NULL && (h = scan(f, error)) == NULL)
			return FALSE;
		base = g_strndup(r->name, base_len(r->name));
		if ((e = g_hash_table_lookup(h, base)) != NULL && !e->used) {
			add_msg(fresh, e, r->uid, r->ext);
			e->used = TRUE;
		}
	}
	if (h != NULL) /* this scan's times are not what we applied */
		f->new_mtime.tv_sec = f->cur_mtime.tv_sec = 0;
	return TRUE;
}

/* Under the lock: reads the uidlist again, adopts what it names, gives
 * the rest of ENTS UIDs in delivery order and writes it. */
static gboolean
assign_locked(PbMailFolder *f, GPtrArray *ents, guint32 after, GArray *fresh,
              GError **error)
{
	g_autoptr(PbUidlist) disk = NULL;
	gboolean missing;
	guint old_len;
	guint32 uidnext = f->uidnext;

	memset(&f->ul_st, 0, sizeof f->ul_st); /* read it whatever its stat */
	if (!uidlist_reread(f, &disk, &missing, error))
		return FALSE;
	if (disk && disk->uidvalidity == f->uidvalidity) {
		header_from(f, disk);
		adopt(ents, disk, after, fresh);
		if (!adopt_unseen(f, disk, after, fresh, error))
			return FALSE;
	}
	g_ptr_array_sort(ents, by_delivery);
	for (guint i = 0; i < ents->len; i++) {
		Ent *e = ents->pdata[i];
		if (e->used)
			continue;
		add_msg(fresh, e, f->uidnext++, NULL);
		e->used = TRUE;
	}
	g_array_sort(fresh, by_uid);
	old_len = f->msgs->len;
	g_array_append_vals(f->msgs, fresh->data, fresh->len);
	g_array_set_size(fresh, 0);
	if (uidlist_write(
	        f, disk && disk->uidvalidity == f->uidvalidity ? disk : NULL,
	        after, error))
		return TRUE;
	/* not recorded: these UIDs are not ours to show */
	for (guint i = old_len; i < f->msgs->len; i++)
		msg_clear(msg_at(f, i));
	g_array_set_size(f->msgs, old_len);
	f->uidnext = uidnext;
	return FALSE;
}

/* Files of H that no message of ours has: adopted from the uidlist or
 * given new UIDs (under the lock); NEED_WRITE forces a write. */
static gboolean
add_new(PbMailFolder *f, GHashTable *h, gboolean need_write, GError **error)
{
	g_autoptr(GPtrArray) ents = g_ptr_array_new();
	g_autoptr(GArray) fresh = g_array_new(FALSE, TRUE, sizeof(Msg));
	g_autoptr(PbUidlist) disk = NULL;
	guint32 after = last_uid(f);
	GHashTableIter it;
	Ent *e;
	gboolean missing, ok;

	g_hash_table_iter_init(&it, h);
	while (g_hash_table_iter_next(&it, NULL, (gpointer *)&e))
		if (!e->used)
			g_ptr_array_add(ents, e);
	if (ents->len == 0 && !need_write) {
		g_clear_pointer(&f->opened, pb_uidlist_free);
		return TRUE;
	}
	if (f->opened) { /* read by pb_mailfolder_open(): not twice */
		disk = g_steal_pointer(&f->opened);
		missing = FALSE;
	} else if (!uidlist_reread(f, &disk, &missing, error))
		return FALSE;
	if (disk && disk->uidvalidity == f->uidvalidity) {
		header_from(f, disk);
		adopt(ents, disk, after, fresh);
	}
	if (fresh->len == ents->len && !need_write && !missing) {
		g_array_sort(fresh, by_uid);
		g_array_append_vals(f->msgs, fresh->data, fresh->len);
		g_array_set_size(fresh, 0);
		return TRUE;
	}
	if (!lock_take(f->dfd, UIDLIST ".lock", error))
		return FALSE;
	/* FRESH is adopted again from the uidlist read under the lock */
	for (guint i = 0; i < fresh->len; i++)
		msg_clear(&g_array_index(fresh, Msg, i));
	g_array_set_size(fresh, 0);
	for (guint i = 0; i < ents->len; i++)
		((Ent *)ents->pdata[i])->used = FALSE;
	ok = assign_locked(f, ents, after, fresh, error);
	lock_release(f->dfd, UIDLIST ".lock");
	return ok;
}

/* ---- sync ---- */

static guint
count_missing(PbMailFolder *f, GHashTable *h)
{
	guint missing = 0;

	for (guint i = 0; i < f->msgs->len; i++) {
		Msg *m = msg_at(f, i);
		g_autofree char *base = g_strndup(m->name, base_len(m->name));
		missing += !m->expunged && !g_hash_table_contains(h, base);
	}
	return missing;
}

/* Our messages against the scan: new names, flags changed by others,
 * files gone (expunged). */
static void
apply_known(PbMailFolder *f, GHashTable *h)
{
	for (guint i = 0; i < f->msgs->len; i++) {
		Msg *m = msg_at(f, i);
		g_autofree char *base = g_strndup(m->name, base_len(m->name));
		Ent *e = g_hash_table_lookup(h, base);
		if (e == NULL || e->used) {
			m->expunged = TRUE;
			continue;
		}
		e->used = TRUE;
		m->expunged = FALSE;
		if (!g_str_equal(e->name, m->name) || e->in_new != m->in_new)
			msg_rename(m, e->name, e->in_new);
	}
}

/* new/X -> cur/X:2,: the session whose rename works has \Recent. */
static void
take_recent(PbMailFolder *f)
{
	gboolean moved = FALSE;

	for (guint i = 0; i < f->msgs->len; i++) {
		Msg *m = msg_at(f, i);
		g_autofree char *to = NULL;
		if (!m->in_new || m->expunged)
			continue;
		if (f->ro) {
			if (!(m->flags & PB_MSG_RECENT))
				f->recent++;
			m->flags |= PB_MSG_RECENT;
			continue;
		}
		to =
		    name_with_flags(m->name, m->flags & PB_MSG_STORABLE, m->kw);
		if (renameat(f->newfd, m->name, f->curfd, to) < 0)
			continue; /* another session took it: not ours */
		g_free(m->name);
		m->name = g_steal_pointer(&to);
		m->in_new = FALSE;
		m->flags |= PB_MSG_RECENT;
		f->recent++;
		moved = TRUE;
	}
	/* one fsync of each folder for the whole batch */
	if (moved) {
		(void)fsync(f->curfd);
		(void)fsync(f->newfd);
	}
}

/* Drops the messages marked expunged, appending the "* N EXPUNGE"
 * numbers to OUT (optional). */
static void
remove_expunged(PbMailFolder *f, GArray *out)
{
	guint j = 0;

	for (guint i = 0; i < f->msgs->len; i++) {
		Msg *m = msg_at(f, i);
		if (m->expunged) {
			guint seq = j + 1; /* the ones before it are gone */
			if (out)
				g_array_append_val(out, seq);
			if (m->flags & PB_MSG_RECENT)
				f->recent--;
			msg_clear(m);
			continue;
		}
		if (j != i)
			*msg_at(f, j) = *m;
		j++;
	}
	g_array_set_size(f->msgs, j);
}

static void
report(PbMailFolder *f, PbFolderChanges *ch)
{
	for (guint i = 0; i < f->msgs->len; i++) {
		Msg *m = msg_at(f, i);
		if (!m->changed || m->expunged)
			continue;
		m->changed = FALSE;
		if (ch)
			g_array_append_val(ch->changed, i);
	}
	if (ch) {
		ch->exists = f->msgs->len;
		ch->recent = f->recent;
	}
}

gboolean
pb_mailfolder_sync(PbMailFolder *f, guint flags, PbFolderChanges *ch,
                   GError **error)
{
	g_autoptr(GHashTable) h = NULL;
	gboolean need_write = f->ul_missing;

	if (ch)
		ch->keywords_grew |= keywords_reload(f);
	if (!need_write && unchanged(f))
		goto done;
	/* readdir may miss a file renamed while it reads (by pop3d, a
	 * local MUA, another session): before calling anything expunged,
	 * read the folder again and take the union (a miss is a matter of
	 * timing, a deletion stays) */
	if ((h = scan(f, error)) == NULL)
		return FALSE;
	for (int again = 0; again < SCAN_AGAIN && count_missing(f, h) > 0;
	     again++) {
		if (!scan_into(f, h, error))
			return FALSE;
		f->new_mtime.tv_sec = f->cur_mtime.tv_sec = 0;
	}
	apply_known(f, h);
	if (!add_new(f, h, need_write, error))
		return FALSE;
	take_recent(f);
done:
	if (!(flags & PB_SYNC_NO_EXPUNGE))
		remove_expunged(f, ch ? ch->expunged : NULL);
	report(f, ch);
	return TRUE;
}

void
pb_folder_changes_init(PbFolderChanges *ch)
{
	memset(ch, 0, sizeof *ch);
	ch->expunged = g_array_new(FALSE, FALSE, sizeof(guint));
	ch->changed = g_array_new(FALSE, FALSE, sizeof(guint));
}

void
pb_folder_changes_clear(PbFolderChanges *ch)
{
	g_clear_pointer(&ch->expunged, g_array_unref);
	g_clear_pointer(&ch->changed, g_array_unref);
}

/* ---- opening ---- */

/* new/, cur/ and tmp/ of folder DFD, made when missing (0700). */
static int
subdir(int dfd, const char *sub, GError **error)
{
	int fd = open_dir_at(dfd, sub);

	if (fd < 0 && errno == ENOENT && mkdirat(dfd, sub, 0700) == 0) {
		(void)fsync(dfd);
		fd = open_dir_at(dfd, sub);
	}
	if (fd < 0)
		pb_throw_errno(error, "open %s", sub);
	return fd;
}

/* The folder NAME's descriptor: NONEXISTENT when it is not there. */
static int
folder_fd(PbMailStore *st, const char *name, GError **error)
{
	g_autofree char *dir = dir_name(name);
	int fd = open_dir_at(st->rootfd, dir);

	if (fd < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
		fail(error, PB_MAILFOLDER_ERROR_NONEXISTENT,
		     "Mailbox doesn't exist: %s", name);
	else if (fd < 0)
		pb_throw_errno(error, "open %s", name);
	return fd;
}

/* Reads the uidlist and keywords of a folder just opened; a folder
 * without a usable uidlist gets a new UIDVALIDITY (written at the
 * first sync). */
static gboolean
folder_load(PbMailFolder *f, GError **error)
{
	g_autoptr(PbUidlist) disk = NULL;
	gboolean missing;

	if (!uidlist_reread(f, &disk, &missing, error))
		return FALSE;
	if (disk) {
		f->uidvalidity = disk->uidvalidity;
		f->uidnext = disk->uidnext;
		f->header_rest = g_strdup(disk->header_rest);
		f->opened = g_steal_pointer(&disk); /* the first sync's */
	} else {
		if (!next_uidvalidity(f->st, &f->uidvalidity, error))
			return FALSE;
		f->uidnext = 1;
		f->ul_missing = TRUE;
		f->header_rest = g_strdup_printf(
		    " G%08x%08x%08x%08x", g_random_int(), g_random_int(),
		    g_random_int(), g_random_int());
	}
	kw_set(f, keywords_read(f->dfd, &f->kw_st));
	return TRUE;
}

static PbMailFolder *
folder_new(PbMailStore *st, const char *name, gboolean ro, GError **error)
{
	g_autoptr(PbMailFolder) f = g_new0(PbMailFolder, 1);
	g_autofree char *dir = dir_name(name);

	f->st = st;
	f->name = pb_mailfolder_name_canon(name);
	f->ro = ro;
	f->newfd = f->curfd = -1;
	f->msgs = g_array_new(FALSE, TRUE, sizeof(Msg));
	f->kw = g_new0(char *, PB_MAILFOLDER_KEYWORDS_MAX + 1);
	f->kw_list = g_new0(char *, 1);
	f->watch[0] = g_build_filename(
	    st->root, g_str_equal(dir, ".") ? "" : dir, "new", NULL);
	f->watch[1] = g_build_filename(
	    st->root, g_str_equal(dir, ".") ? "" : dir, "cur", NULL);
	if ((f->dfd = folder_fd(st, name, error)) < 0 ||
	    (f->newfd = subdir(f->dfd, "new", error)) < 0 ||
	    (f->curfd = subdir(f->dfd, "cur", error)) < 0)
		return NULL;
	return g_steal_pointer(&f);
}

PbMailFolder *
pb_mailfolder_open(PbMailStore *st, const char *name, gboolean read_only,
                   GError **error)
{
	g_autoptr(PbMailFolder) f = NULL;

	if (!pb_mailfolder_name_check(name, error))
		return NULL;
	f = folder_new(st, name, read_only, error);
	if (f == NULL || !folder_load(f, error))
		return NULL;
	if (!pb_mailfolder_sync(f, 0, NULL, error))
		return NULL;
	return g_steal_pointer(&f);
}

/* Sizes computed meanwhile go into the uidlist (best effort: a later
 * session computes them again). */
static void
save_sizes(PbMailFolder *f)
{
	g_autoptr(PbUidlist) disk = NULL;
	gboolean missing;

	if (!f->w_dirty || f->ul_missing ||
	    !lock_take(f->dfd, UIDLIST ".lock", NULL))
		return;
	memset(&f->ul_st, 0, sizeof f->ul_st);
	if (uidlist_reread(f, &disk, &missing, NULL) && disk &&
	    disk->uidvalidity == f->uidvalidity)
		(void)uidlist_write(f, disk, last_uid(f), NULL);
	lock_release(f->dfd, UIDLIST ".lock");
}

void
pb_mailfolder_close(PbMailFolder *f)
{
	if (f == NULL)
		return;
	if (f->dfd >= 0 && f->newfd >= 0 && f->curfd >= 0)
		save_sizes(f);
	if (f->dfd >= 0)
		close(f->dfd);
	if (f->newfd >= 0)
		close(f->newfd);
	if (f->curfd >= 0)
		close(f->curfd);
	msgs_free(f->msgs);
	pb_uidlist_free(f->opened);
	pb_keywords_free(f->kw);
	g_free(f->kw_list);
	g_free(f->watch[0]);
	g_free(f->watch[1]);
	g_free(f->header_rest);
	g_free(f->name);
	g_free(f);
}

/* ---- accessors ---- */

const char *
pb_mailfolder_name(PbMailFolder *f)
{
	return f->name;
}

gboolean
pb_mailfolder_read_only(PbMailFolder *f)
{
	return f->ro;
}

guint32
pb_mailfolder_uidvalidity(PbMailFolder *f)
{
	return f->uidvalidity;
}

guint32
pb_mailfolder_uidnext(PbMailFolder *f)
{
	return MAX(f->uidnext, last_uid(f) + 1);
}

const char *const *
pb_mailfolder_watch_dirs(PbMailFolder *f)
{
	return (const char *const *)f->watch;
}

guint
pb_mailfolder_count(PbMailFolder *f)
{
	return f->msgs->len;
}

guint
pb_mailfolder_recent_count(PbMailFolder *f)
{
	return f->recent;
}

guint32
pb_mailfolder_uid(PbMailFolder *f, guint i)
{
	g_return_val_if_fail(i < f->msgs->len, 0);
	return msg_at(f, i)->uid;
}

gboolean
pb_mailfolder_find_uid(PbMailFolder *f, guint32 uid, guint *index)
{
	guint lo = 0, hi = f->msgs->len;

	while (lo < hi) {
		guint mid = lo + (hi - lo) / 2;
		if (msg_at(f, mid)->uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*index = lo;
	return lo < f->msgs->len && msg_at(f, lo)->uid == uid;
}

guint
pb_mailfolder_flags(PbMailFolder *f, guint i)
{
	g_return_val_if_fail(i < f->msgs->len, 0);
	return msg_at(f, i)->flags;
}

guint32
pb_mailfolder_keywords(PbMailFolder *f, guint i)
{
	g_return_val_if_fail(i < f->msgs->len, 0);
	return msg_at(f, i)->kw;
}

gboolean
pb_mailfolder_is_expunged(PbMailFolder *f, guint i)
{
	g_return_val_if_fail(i < f->msgs->len, TRUE);
	return msg_at(f, i)->expunged;
}

const char *const *
pb_mailfolder_keyword_names(PbMailFolder *f)
{
	return (const char *const *)f->kw_list;
}

const char *
pb_mailfolder_keyword_name(PbMailFolder *f, guint k)
{
	return k < PB_MAILFOLDER_KEYWORDS_MAX ? f->kw[k] : NULL;
}

/* ---- reading messages ---- */

/* Opens message M, following renames by other processes (pop3d moving
 * it to cur/, another session storing flags); marks it expunged and fails
 * with EXPUNGED only when OPEN_TRIES reads of the folder in a row lost it:
 * each rename between a read and the open would otherwise pass for an
 * expunge (seen with two sessions storing flags and pop3d at once). */
#define OPEN_TRIES 20

static int
msg_open(PbMailFolder *f, Msg *m, GError **error)
{
	for (int attempt = 0; attempt < OPEN_TRIES; attempt++) {
		int fd = openat(msg_dirfd(f, m), m->name,
		                O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
			if (m->mtime < 0)
				m->mtime = st.st_mtime;
			return fd;
		}
		if (fd >= 0) {
			close(fd);
			g_set_error(error, PB_ERROR, PB_ERROR_DATA,
			            "%s: not a regular file", m->name);
			return -1;
		}
		if (errno != ENOENT)
			return pb_throw_errno(error, "open %s", m->name), -1;
		if (attempt < OPEN_TRIES - 1 && !refresh_names(f, error))
			return -1;
	}
	m->expunged = TRUE;
	fail(error, PB_MAILFOLDER_ERROR_EXPUNGED, "Message was expunged: %s",
	     m->name);
	return -1;
}

int
pb_mailfolder_open_message(PbMailFolder *f, guint i, GError **error)
{
	g_return_val_if_fail(i < f->msgs->len, -1);
	return msg_open(f, msg_at(f, i), error);
}

gboolean
pb_mailfolder_internaldate(PbMailFolder *f, guint i, gint64 *date,
                           GError **error)
{
	Msg *m;

	g_return_val_if_fail(i < f->msgs->len, FALSE);
	m = msg_at(f, i);
	if (m->mtime < 0) {
		struct stat st;
		if (fstatat(msg_dirfd(f, m), m->name, &st,
		            AT_SYMLINK_NOFOLLOW) == 0)
			m->mtime = st.st_mtime;
		else {
			g_auto(PbFd) fd = msg_open(f, m, error);
			if (fd < 0)
				return FALSE;
		}
	}
	*date = m->mtime;
	return TRUE;
}

/* Octets with CRLF line ends of the file FD: read once. */
static gboolean
measure(int fd, guint64 *size, GError **error)
{
	g_autofree char *buf = g_malloc(CHUNK);
	gboolean cr = FALSE;
	ssize_t n;

	*size = 0;
	while ((n = read(fd, buf, CHUNK)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pb_throw_errno(error, "read");
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && !cr)
				(*size)++;
			cr = buf[i] == '\r';
		}
		*size += (guint64)n;
	}
	return TRUE;
}

gboolean
pb_mailfolder_size(PbMailFolder *f, guint i, guint64 *size, GError **error)
{
	Msg *m;

	g_return_val_if_fail(i < f->msgs->len, FALSE);
	m = msg_at(f, i);
	if (m->vsize == VSIZE_UNKNOWN) {
		g_auto(PbFd) fd = msg_open(f, m, error);
		char *ext;
		if (fd < 0 || !measure(fd, &m->vsize, error))
			return FALSE;
		ext = g_strdup_printf("%s%sW%" G_GUINT64_FORMAT,
		                      m->ext ? m->ext : "", m->ext ? " " : "",
		                      m->vsize);
		g_free(m->ext);
		m->ext = ext;
		f->w_dirty = TRUE;
	}
	*size = m->vsize;
	return TRUE;
}

/* ---- keywords ---- */

static gint
kw_find(char *const *kw, const char *name)
{
	for (guint k = 0; k < PB_MAILFOLDER_KEYWORDS_MAX; k++)
		if (kw[k] && g_ascii_strcasecmp(kw[k], name) == 0)
			return (gint)k;
	return -1;
}

/* Under folder DFD's lock: the index of NAME, added to dovecot-keywords
 * when new. *KW is the table read under the lock (replaced). */
static gint
kw_add_locked(int dfd, char ***kw, struct stat *st, const char *name,
              GError **error)
{
	gint k;
	gsize len;
	g_autofree char *text = NULL;

	pb_keywords_free(*kw);
	*kw = keywords_read(dfd, st);
	if ((k = kw_find(*kw, name)) >= 0)
		return k;
	for (k = 0; k < PB_MAILFOLDER_KEYWORDS_MAX && (*kw)[k]; k++)
		;
	if (k == PB_MAILFOLDER_KEYWORDS_MAX)
		return fail(error, PB_MAILFOLDER_ERROR_LIMIT,
		            "Too many keywords in this mailbox"),
		       -1;
	(*kw)[k] = g_strdup(name);
	text = keywords_format(*kw, &len);
	if (!replace_at(dfd, KEYWORDS, text, len, error))
		return -1;
	(void)fstatat(dfd, KEYWORDS, st, AT_SYMLINK_NOFOLLOW);
	return k;
}

gint
pb_mailfolder_keyword(PbMailFolder *f, const char *name, gboolean create,
                      GError **error)
{
	char **kw;
	gint k;

	if (name == NULL || name[0] == '\\' || !keyword_ok(name))
		return fail(error, PB_MAILFOLDER_ERROR_BADNAME,
		            "Invalid keyword"),
		       -1;
	if ((k = kw_find(f->kw, name)) >= 0 || !create)
		return k;
	if (f->ro)
		return fail(error, PB_MAILFOLDER_ERROR_READONLY,
		            "Mailbox is read-only"),
		       -1;
	if (!lock_take(f->dfd, UIDLIST ".lock", error))
		return -1;
	kw = NULL;
	k = kw_add_locked(f->dfd, &kw, &f->kw_st, name, error);
	lock_release(f->dfd, UIDLIST ".lock");
	kw_set(f, kw);
	return k;
}

/* ---- STORE, EXPUNGE ---- */

static gboolean
readonly(PbMailFolder *f, GError **error)
{
	if (!f->ro)
		return FALSE;
	fail(error, PB_MAILFOLDER_ERROR_READONLY, "Mailbox is read-only");
	return TRUE;
}

/* Renames M to carry FLAGS and KW (following it once if it moved). */
static gboolean
rename_flags(PbMailFolder *f, Msg *m, guint flags, guint32 kw,
             gboolean *from_new, GError **error)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		g_autofree char *to = name_with_flags(m->name, flags, kw);
		if (renameat(msg_dirfd(f, m), m->name, f->curfd, to) == 0) {
			*from_new |= m->in_new;
			g_free(m->name);
			m->name = g_steal_pointer(&to);
			m->in_new = FALSE;
			m->flags = (guint8)(flags | (m->flags & PB_MSG_RECENT));
			m->kw = kw;
			return TRUE;
		}
		if (errno != ENOENT)
			return pb_throw_errno(error, "rename %s", m->name);
		if (attempt < OPEN_TRIES - 1 && !refresh_names(f, error))
			return FALSE;
	}
	m->expunged = TRUE; /* gone meanwhile */
	return TRUE;
}

static guint32
named_mask(PbMailFolder *f)
{
	guint32 mask = 0;

	for (guint k = 0; k < PB_MAILFOLDER_KEYWORDS_MAX; k++)
		if (f->kw[k])
			mask |= 1u << k;
	return mask;
}

static void
store_target(PbMailFolder *f, const Msg *m, PbStoreOp op, guint flags,
             guint32 kw, guint *nf, guint32 *nkw)
{
	guint old = m->flags & PB_MSG_STORABLE;

	flags &= PB_MSG_STORABLE;
	switch (op) {
	case PB_STORE_REPLACE:
		*nf = flags;
		/* letters without a name in the table are not the client's */
		*nkw = kw | (m->kw & ~named_mask(f));
		break;
	case PB_STORE_ADD:
		*nf = old | flags;
		*nkw = m->kw | kw;
		break;
	default:
		*nf = old & ~flags;
		*nkw = m->kw & ~kw;
		break;
	}
}

gboolean
pb_mailfolder_store(PbMailFolder *f, const PbMsgRange *ranges, guint n_ranges,
                    PbStoreOp op, guint flags, guint32 keywords,
                    GArray *changed, GError **error)
{
	gboolean from_new = FALSE, any = FALSE;

	if (readonly(f, error))
		return FALSE;
	for (guint r = 0; r < n_ranges; r++)
		for (guint i = ranges[r].first;
		     i <= ranges[r].last && i < f->msgs->len; i++) {
			Msg *m = msg_at(f, i);
			guint nf;
			guint32 nkw;
			if (m->expunged)
				continue;
			store_target(f, m, op, flags, keywords, &nf, &nkw);
			if (nf == (guint)(m->flags & PB_MSG_STORABLE) &&
			    nkw == m->kw)
				continue;
			if (!rename_flags(f, m, nf, nkw, &from_new, error))
				return FALSE;
			any = TRUE;
			if (changed && !m->expunged)
				g_array_append_val(changed, i);
		}
	if (any && fsync(f->curfd) < 0)
		return pb_throw_errno(error, "fsync cur");
	if (from_new && fsync(f->newfd) < 0)
		return pb_throw_errno(error, "fsync new");
	return TRUE;
}

/* Unlinks M (following it once if it moved); gone already is fine. */
static gboolean
unlink_msg(PbMailFolder *f, Msg *m, gboolean *in_new, GError **error)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (unlinkat(msg_dirfd(f, m), m->name, 0) == 0) {
			*in_new |= m->in_new;
			break;
		}
		if (errno != ENOENT)
			return pb_throw_errno(error, "unlink %s", m->name);
		if (attempt < OPEN_TRIES - 1 && !refresh_names(f, error))
			return FALSE;
	}
	m->expunged = TRUE;
	return TRUE;
}

static gboolean
fsync_both(PbMailFolder *f, gboolean new_too, GError **error)
{
	if (fsync(f->curfd) < 0 || (new_too && fsync(f->newfd) < 0))
		return pb_throw_errno(error, "fsync %s", f->name);
	return TRUE;
}

gboolean
pb_mailfolder_expunge(PbMailFolder *f, const PbMsgRange *ranges, guint n_ranges,
                      GArray *expunged, GError **error)
{
	PbMsgRange all = {0, G_MAXUINT};
	gboolean in_new = FALSE, any = FALSE;

	if (readonly(f, error))
		return FALSE;
	if (ranges == NULL) {
		ranges = &all;
		n_ranges = 1;
	}
	for (guint r = 0; r < n_ranges; r++)
		for (guint i = ranges[r].first;
		     i <= ranges[r].last && i < f->msgs->len; i++) {
			Msg *m = msg_at(f, i);
			if (m->expunged || !(m->flags & PB_MSG_DELETED))
				continue;
			if (!unlink_msg(f, m, &in_new, error))
				return FALSE;
			any = TRUE;
		}
	if (any && !fsync_both(f, in_new, error))
		return FALSE;
	remove_expunged(f, expunged);
	return TRUE;
}

/* ---- a target folder of COPY, MOVE and APPEND ---- */

typedef struct {
	int dfd, newfd, curfd, tmpfd;
	char **kw;
	struct stat kw_st;
	gboolean locked;
} Target;

static void
target_close(Target *t)
{
	if (t->locked)
		lock_release(t->dfd, UIDLIST ".lock");
	for (int *fd = &t->dfd; fd <= &t->tmpfd; fd++)
		if (*fd >= 0)
			close(*fd);
	pb_keywords_free(t->kw);
	memset(t, 0, sizeof *t);
	t->dfd = t->newfd = t->curfd = t->tmpfd = -1;
}

/* Opens folder NAME and takes its uidlist lock. */
static gboolean
target_open(PbMailStore *st, const char *name, Target *t, GError **error)
{
	memset(t, 0, sizeof *t);
	t->dfd = t->newfd = t->curfd = t->tmpfd = -1;
	if (!pb_mailfolder_name_check(name, error) ||
	    (t->dfd = folder_fd(st, name, error)) < 0 ||
	    (t->newfd = subdir(t->dfd, "new", error)) < 0 ||
	    (t->curfd = subdir(t->dfd, "cur", error)) < 0 ||
	    (t->tmpfd = subdir(t->dfd, "tmp", error)) < 0 ||
	    !lock_take(t->dfd, UIDLIST ".lock", error))
		return FALSE;
	t->locked = TRUE;
	t->kw = keywords_read(t->dfd, &t->kw_st);
	return TRUE;
}

/* A fresh unique base name "SEC.M<usec>P<pid>Q<n>.HOST" + SIZES. */
static char *
fresh_base(const char *sizes)
{
	static guint counter;
	gint64 now = g_get_real_time();
	g_autofree char *u = NULL;

	u = pb_maildir_unique(now / G_USEC_PER_SEC, now % G_USEC_PER_SEC,
	                      pb_self_pid(), ++counter, pb_self_host());
	return g_strconcat(u, sizes ? sizes : "", NULL);
}

/* Under T's lock: gives the files NAMES (in T's new/ or cur/) the next
 * UIDs, in order, and writes the uidlist; a folder without a usable
 * uidlist gets one with a new UIDVALIDITY. */
static gboolean
target_assign(PbMailStore *st, Target *t, GPtrArray *names,
              guint32 *uidvalidity, guint32 *first, GError **error)
{
	g_autofree char *text = NULL;
	g_autoptr(PbUidlist) ul = NULL;
	g_autoptr(GHashTable) ours =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GArray) keep = g_array_new(FALSE, TRUE, sizeof(PbUidRec));
	gsize len;

	if (read_file_at(t->dfd, UIDLIST, FILE_MAX, &text, &len, NULL, NULL))
		ul = pb_uidlist_parse(text, len, NULL);
	if (ul == NULL) {
		guint32 v;
		if (!next_uidvalidity(st, &v, error))
			return FALSE;
		ul = uidlist_new(v);
		ul->header_rest = g_strdup_printf(
		    " G%08x%08x%08x%08x", g_random_int(), g_random_int(),
		    g_random_int(), g_random_int());
	}
	for (guint i = 0; i < names->len; i++)
		g_hash_table_add(ours, g_strndup(names->pdata[i],
		                                 base_len(names->pdata[i])));
	/* a stale record of the same base would name the file twice */
	for (guint i = 0; i < ul->recs->len; i++) {
		PbUidRec *r = &g_array_index(ul->recs, PbUidRec, i);
		g_autofree char *b = g_strndup(r->name, base_len(r->name));
		if (g_hash_table_contains(ours, b)) {
			g_free(r->name);
			g_free(r->ext);
		} else
			g_array_append_val(keep, *r);
	}
	g_array_set_size(ul->recs, 0);
	g_array_append_vals(ul->recs, keep->data, keep->len);
	*uidvalidity = ul->uidvalidity;
	*first = ul->uidnext;
	for (guint i = 0; i < names->len; i++) {
		PbUidRec r = {ul->uidnext++, g_strdup(names->pdata[i]), NULL};
		g_array_append_val(ul->recs, r);
	}
	text = (g_free(text), pb_uidlist_format(ul, &len));
	return replace_at(t->dfd, UIDLIST, text, len, error);
}

/* The bit in T's table of bit K of F's (under T's lock); -1 when the
 * keyword has no name in F. MAP caches it (-2: not looked up). */
static gboolean
map_keywords(PbMailFolder *f, Target *t, guint32 kw, gint map[26], guint32 *out,
             GError **error)
{
	*out = 0;
	for (guint k = 0; k < 26; k++) {
		if (!(kw & (1u << k)))
			continue;
		if (map[k] == -2)
			map[k] = f->kw[k]
			             ? kw_add_locked(t->dfd, &t->kw, &t->kw_st,
			                             f->kw[k], error)
			             : -1;
		if (map[k] == -1 && f->kw[k])
			return FALSE; /* LIMIT, or the write failed */
		if (map[k] >= 0)
			*out |= 1u << map[k];
	}
	return TRUE;
}

/* ---- COPY, MOVE ---- */

/* A copy of M's bytes (the file system refused a hard link): tmp/, fsync,
 * link as T's cur/TO, the original's mtime kept (INTERNALDATE). */
static gboolean
copy_bytes(PbMailFolder *f, Msg *m, Target *t, const char *to, GError **error)
{
	g_auto(PbFd) in = msg_open(f, m, error);
	g_autofree char *tmp = fresh_base(NULL);
	g_autofree char *buf = g_malloc(CHUNK);
	g_auto(PbFd) out = -1;
	struct stat st;
	ssize_t n;
	gboolean ok = TRUE;

	if (in < 0 || fstat(in, &st) < 0)
		return in < 0 ? FALSE : pb_throw_errno(error, "stat");
	out =
	    openat(t->tmpfd, tmp,
	           O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		return pb_throw_errno(error, "create tmp/%s", tmp);
	while (ok && (n = read(in, buf, CHUNK)) != 0)
		ok = n > 0 ? pb_write_all(out, buf, (gsize)n, error)
		           : errno == EINTR || pb_throw_errno(error, "read");
	if (ok &&
	    (futimens(out, (struct timespec[]){st.st_mtim, st.st_mtim}) < 0 ||
	     fsync(out) < 0 || close(g_steal_fd(&out)) < 0 ||
	     linkat(t->tmpfd, tmp, t->curfd, to, 0) < 0))
		ok = pb_throw_errno(error, "copy into %s", to);
	(void)unlinkat(t->tmpfd, tmp, 0);
	return ok;
}

/* M into T's cur/ as a hard link (a byte copy where links do not work).
 * *NAME: its name there; NULL (and TRUE) when M is gone. */
static gboolean
copy_one(PbMailFolder *f, Msg *m, Target *t, gboolean move, guint32 kw,
         char **name, GError **error)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		gsize bl = base_len(m->name);
		const char *sizes = memchr(m->name, ',', bl);
		g_autofree char *sz =
		    sizes ? g_strndup(sizes, bl - (gsize)(sizes - m->name))
		          : NULL;
		/* MOVE keeps the base name (pop3d's UIDL stays) unless taken */
		g_autofree char *base = move && attempt == 0
		                            ? g_strndup(m->name, bl)
		                            : fresh_base(sz);
		g_autofree char *to =
		    name_with_flags(base, m->flags & PB_MSG_STORABLE, kw);
		if (linkat(msg_dirfd(f, m), m->name, t->curfd, to, 0) == 0) {
			*name = g_steal_pointer(&to);
			return TRUE;
		}
		if (errno == EXDEV || errno == EPERM || errno == EMLINK) {
			*name = g_steal_pointer(&to);
			return copy_bytes(f, m, t, *name, error);
		}
		if (errno != ENOENT && errno != EEXIST)
			return pb_throw_errno(error, "link %s", m->name);
		if (errno == ENOENT && !refresh_names(f, error))
			return FALSE;
	}
	*name = NULL;
	m->expunged = m->expunged || faccessat(msg_dirfd(f, m), m->name, F_OK,
	                                       AT_SYMLINK_NOFOLLOW) < 0;
	return TRUE;
}

static gboolean
same_folder(PbMailFolder *f, const char *dest)
{
	g_autofree char *canon = pb_mailfolder_name_canon(dest);

	return g_str_equal(canon, f->name);
}

/* Links the messages of RANGES into T (SRC_UIDS and NAMES in order). */
static gboolean
copy_all(PbMailFolder *f, const PbMsgRange *ranges, guint n_ranges, Target *t,
         gboolean move, GArray *src_uids, GPtrArray *names, GPtrArray *moved,
         GError **error)
{
	gint map[26];

	for (guint k = 0; k < 26; k++)
		map[k] = -2;
	for (guint r = 0; r < n_ranges; r++)
		for (guint i = ranges[r].first;
		     i <= ranges[r].last && i < f->msgs->len; i++) {
			Msg *m = msg_at(f, i);
			char *name = NULL;
			guint32 kw;
			if (m->expunged)
				continue;
			if (!map_keywords(f, t, m->kw, map, &kw, error) ||
			    !copy_one(f, m, t, move, kw, &name, error))
				return FALSE;
			if (name == NULL)
				continue;
			g_ptr_array_add(names, name);
			g_array_append_val(src_uids, m->uid);
			g_ptr_array_add(moved, m);
		}
	return TRUE;
}

gboolean
pb_mailfolder_copy(PbMailFolder *f, const PbMsgRange *ranges, guint n_ranges,
                   const char *dest, gboolean move, guint32 *dest_uidvalidity,
                   GArray *src_uids, GArray *dest_uids, GArray *expunged,
                   GError **error)
{
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) moved = g_ptr_array_new();
	Target t;
	guint32 first = 0;
	gboolean in_new = FALSE, ok;

	if (move && readonly(f, error))
		return FALSE;
	if (move && same_folder(f, dest))
		return fail(error, PB_MAILFOLDER_ERROR_CANNOT,
		            "Can't move to the same mailbox");
	ok = target_open(f->st, dest, &t, error) &&
	     copy_all(f, ranges, n_ranges, &t, move, src_uids, names, moved,
	              error) &&
	     (names->len == 0 ||
	      ((fsync(t.curfd) == 0 ||
	        pb_throw_errno(error, "fsync %s", dest)) &&
	       target_assign(f->st, &t, names, dest_uidvalidity, &first,
	                     error)));
	target_close(&t);
	if (!ok)
		return FALSE;
	for (guint i = 0; i < names->len; i++) {
		guint32 uid = first + i;
		g_array_append_val(dest_uids, uid);
	}
	if (!move)
		return TRUE;
	/* the copies are safe: now the originals go */
	for (guint i = 0; i < moved->len; i++)
		if (!unlink_msg(f, moved->pdata[i], &in_new, error))
			return FALSE;
	if (moved->len && !fsync_both(f, in_new, error))
		return FALSE;
	remove_expunged(f, expunged);
	return TRUE;
}

/* ---- APPEND ---- */

struct _PbAppend {
	PbMailStore *st;
	char *folder;
	char *tmp; /* its name in tmp/ */
	int fd;
	int tmpfd;
	guint64 max, got, s, w;
	gboolean cr; /* the last chunk ended in CR */
	GString *buf;
};

PbAppend *
pb_append_begin(PbMailStore *st, const char *name, guint64 max_size,
                GError **error)
{
	g_autoptr(PbAppend) a = g_new0(PbAppend, 1);
	g_auto(PbFd) dfd = -1;

	a->fd = a->tmpfd = -1;
	if (!pb_mailfolder_name_check(name, error) ||
	    (dfd = folder_fd(st, name, error)) < 0 ||
	    (a->tmpfd = subdir(dfd, "tmp", error)) < 0)
		return NULL;
	a->st = st;
	a->folder = g_strdup(name);
	a->max = max_size;
	a->tmp = fresh_base(NULL);
	a->buf = g_string_sized_new(CHUNK);
	a->fd =
	    openat(a->tmpfd, a->tmp,
	           O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (a->fd < 0 || fchmod(a->fd, 0600) < 0)
		return pb_throw_errno(error, "create tmp/%s", a->tmp), NULL;
	return g_steal_pointer(&a);
}

/* One octet: CRLF becomes LF; W counts a line end as two. */
static void
append_octet(PbAppend *a, char c)
{
	if (a->cr) {
		a->cr = FALSE;
		g_string_append_c(a->buf, c == '\n' ? '\n' : '\r');
		a->w += c == '\n' ? 2 : 1;
		if (c == '\n')
			return;
	}
	if (c == '\r')
		a->cr = TRUE;
	else {
		g_string_append_c(a->buf, c);
		a->w += c == '\n' ? 2 : 1;
	}
}

static gboolean
append_flush(PbAppend *a, GError **error)
{
	if (!pb_write_all(a->fd, a->buf->str, a->buf->len, error))
		return FALSE;
	a->s += a->buf->len;
	g_string_truncate(a->buf, 0);
	return TRUE;
}

gboolean
pb_append_write(PbAppend *a, const char *buf, gsize len, GError **error)
{
	a->got += len;
	if (a->max && a->got > a->max)
		return fail(error, PB_MAILFOLDER_ERROR_TOOBIG,
		            "Message is too large");
	for (gsize i = 0; i < len; i++) {
		append_octet(a, buf[i]);
		if (a->buf->len >= CHUNK && !append_flush(a, error))
			return FALSE;
	}
	return TRUE;
}

/* Under T's lock: the file as new/NAME or cur/NAME:2,FLAGS, fsync'ed. */
static gboolean
append_link(PbAppend *a, Target *t, guint flags, const char *const *keywords,
            char **name, GError **error)
{
	g_autofree char *base =
	    g_strdup_printf("%s,S=%" G_GUINT64_FORMAT ",W=%" G_GUINT64_FORMAT,
	                    a->tmp, a->s, a->w);
	guint32 kw = 0;
	int dir;

	for (guint i = 0; keywords && keywords[i]; i++) {
		gint k;
		if (!keyword_ok(keywords[i]) || keywords[i][0] == '\\')
			return fail(error, PB_MAILFOLDER_ERROR_BADNAME,
			            "Invalid keyword: %s", keywords[i]);
		if ((k = kw_add_locked(t->dfd, &t->kw, &t->kw_st, keywords[i],
		                       error)) < 0)
			return FALSE;
		kw |= 1u << k;
	}
	flags &= PB_MSG_STORABLE;
	/* no flag: new/, where the next session to look takes \Recent */
	dir = flags || kw ? t->curfd : t->newfd;
	*name = flags || kw ? name_with_flags(base, flags, kw)
	                    : g_steal_pointer(&base);
	if (linkat(a->tmpfd, a->tmp, dir, *name, 0) < 0)
		return pb_throw_errno(error, "link %s", *name);
	(void)unlinkat(a->tmpfd, a->tmp, 0);
	if (fsync(dir) < 0)
		return pb_throw_errno(error, "fsync %s", a->folder);
	return TRUE;
}

static gboolean
append_finish(PbAppend *a, guint flags, const char *const *keywords,
              gint64 date, guint32 *uidvalidity, guint32 *uid, GError **error)
{
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	struct timespec ts[2] = {{date, 0}, {date, 0}};
	char *name = NULL;
	Target t;
	gboolean ok;

	if (a->cr) {
		g_string_append_c(a->buf, '\r');
		a->w++;
		a->cr = FALSE;
	}
	if (!append_flush(a, error) || (date >= 0 && futimens(a->fd, ts) < 0) ||
	    fsync(a->fd) < 0 || close(g_steal_fd(&a->fd)) < 0) {
		if (error && *error == NULL)
			pb_throw_errno(error, "write tmp/%s", a->tmp);
		return FALSE;
	}
	ok = target_open(a->st, a->folder, &t, error) &&
	     append_link(a, &t, flags, keywords, &name, error);
	if (name)
		g_ptr_array_add(names, name);
	ok = ok && target_assign(a->st, &t, names, uidvalidity, uid, error);
	target_close(&t);
	return ok;
}

gboolean
pb_append_commit(PbAppend *a, guint flags, const char *const *keywords,
                 gint64 date, guint32 *uidvalidity, guint32 *uid,
                 GError **error)
{
	gboolean ok =
	    append_finish(a, flags, keywords, date, uidvalidity, uid, error);

	pb_append_abort(a); /* the temporary file is gone by now, or must go */
	return ok;
}

void
pb_append_abort(PbAppend *a)
{
	if (a == NULL)
		return;
	if (a->fd >= 0)
		close(a->fd);
	if (a->tmpfd >= 0) {
		if (a->tmp)
			(void)unlinkat(a->tmpfd, a->tmp, 0);
		close(a->tmpfd);
	}
	if (a->buf)
		g_string_free(a->buf, TRUE);
	g_free(a->tmp);
	g_free(a->folder);
	g_free(a);
}

/* ---- the folder tree ---- */

void
pb_folder_info_free(PbFolderInfo *fi)
{
	if (fi == NULL)
		return;
	g_free(fi->name);
	g_free(fi);
}

/* rm -r of NAME in PARENT, never through a symbolic link. */
static void
remove_tree(int parent, const char *name, guint depth)
{
	int fd = open_dir_at(parent, name);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		(void)unlinkat(parent, name, 0);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (g_str_equal(de->d_name, ".") ||
		    g_str_equal(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 &&
		    (errno == EISDIR || errno == EPERM) && depth < 4)
			remove_tree(dirfd(d), de->d_name, depth + 1);
	}
	closedir(d);
	(void)unlinkat(parent, name, AT_REMOVEDIR);
}

/* The names of the folders on disk (valid names only, no INBOX). */
static GPtrArray *
folder_names(PbMailStore *st, GError **error)
{
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
	int fd = open_dir_at(st->rootfd, ".");
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return pb_throw_errno(error, "read %s", st->root), NULL;
	}
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name + 1;
		struct stat sb;
		g_autofree char *canon = NULL;
		if (g_str_has_prefix(de->d_name, DELETED_PREFIX)) {
			/* a DELETE that was interrupted: finish it */
			remove_tree(dirfd(d), de->d_name, 0);
			continue;
		}
		if (de->d_name[0] != '.' ||
		    !pb_mailfolder_name_check(name, NULL))
			continue;
		canon = pb_mailfolder_name_canon(name);
		/* INBOX is ROOT itself; ".inbox.x" is not how we spell it */
		if (!g_str_equal(canon, name) || g_str_equal(name, "INBOX"))
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) <
		        0 ||
		    !S_ISDIR(sb.st_mode))
			continue;
		g_ptr_array_add(out, g_strdup(name));
	}
	closedir(d);
	return g_steal_pointer(&out);
}

gboolean
pb_mailstore_exists(PbMailStore *st, const char *name)
{
	g_autofree char *canon = NULL;
	g_autofree char *dir = NULL;
	struct stat sb;

	if (!pb_mailfolder_name_check(name, NULL))
		return FALSE;
	canon = pb_mailfolder_name_canon(name);
	dir = dir_name(canon);
	return fstatat(st->rootfd, dir, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(sb.st_mode);
}

static PbFolderInfo *
info_get(GHashTable *h, const char *name, guint attrs)
{
	PbFolderInfo *fi = g_hash_table_lookup(h, name);

	if (fi == NULL) {
		fi = g_new0(PbFolderInfo, 1);
		fi->name = g_strdup(name);
		fi->attrs = attrs;
		g_hash_table_insert(h, fi->name, fi);
	}
	return fi;
}

/* Every level above NAME: HAS_CHILDREN, and NONEXISTENT when new. */
static void
info_parents(GHashTable *h, const char *name)
{
	g_autofree char *p = g_strdup(name);
	char *dot;

	while ((dot = strrchr(p, '.')) != NULL) {
		*dot = '\0';
		info_get(h, p, PB_FOLDER_NONEXISTENT)->attrs |=
		    PB_FOLDER_HAS_CHILDREN;
	}
}

static gint
info_order(gconstpointer a, gconstpointer b)
{
	const PbFolderInfo *x = *(PbFolderInfo *const *)a;
	const PbFolderInfo *y = *(PbFolderInfo *const *)b;
	gboolean xi = g_str_equal(x->name, "INBOX");
	gboolean yi = g_str_equal(y->name, "INBOX");

	if (xi != yi)
		return xi ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void
info_finish(PbFolderInfo *fi)
{
	if (!(fi->attrs & PB_FOLDER_HAS_CHILDREN))
		fi->attrs |= PB_FOLDER_HAS_NO_CHILDREN;
	for (guint i = 0; i < G_N_ELEMENTS(special_names); i++)
		if (g_str_equal(fi->name, special_names[i]))
			fi->attrs |= special_attrs[i];
}

GPtrArray *
pb_mailstore_list(PbMailStore *st, gboolean with_subscribed, GError **error)
{
	g_autoptr(GPtrArray) names = folder_names(st, error);
	g_autoptr(GHashTable) h = NULL;
	g_auto(GStrv) subs = NULL;
	GPtrArray *out;

	if (names == NULL ||
	    (subs = pb_mailstore_subscriptions(st, error)) == NULL)
		return NULL;
	h = g_hash_table_new(g_str_hash, g_str_equal);
	info_get(h, "INBOX", 0);
	for (guint i = 0; i < names->len; i++) {
		info_get(h, names->pdata[i], 0)->attrs &=
		    ~PB_FOLDER_NONEXISTENT;
		info_parents(h, names->pdata[i]);
	}
	for (guint i = 0; subs[i]; i++) {
		PbFolderInfo *fi = g_hash_table_lookup(h, subs[i]);
		if (fi == NULL && with_subscribed)
			fi = info_get(h, subs[i], PB_FOLDER_NONEXISTENT);
		if (fi)
			fi->attrs |= PB_FOLDER_SUBSCRIBED;
	}
	out =
	    g_ptr_array_new_with_free_func((GDestroyNotify)pb_folder_info_free);
	{
		GHashTableIter it;
		PbFolderInfo *fi;
		g_hash_table_iter_init(&it, h);
		while (g_hash_table_iter_next(&it, NULL, (gpointer *)&fi)) {
			info_finish(fi);
			g_ptr_array_add(out, fi);
		}
	}
	g_ptr_array_sort(out, info_order);
	return out;
}

/* ---- CREATE, DELETE, RENAME ---- */

static gboolean
check_canon(const char *name, char **canon, GError **error)
{
	if (!pb_mailfolder_name_check(name, error))
		return FALSE;
	*canon = pb_mailfolder_name_canon(name);
	return TRUE;
}

/* Writes a first uidlist (fresh UIDVALIDITY) into folder FD. */
static gboolean
first_uidlist(PbMailStore *st, int fd, GError **error)
{
	g_autoptr(PbUidlist) ul = NULL;
	g_autofree char *text = NULL;
	guint32 v;
	gsize len;

	if (!next_uidvalidity(st, &v, error))
		return FALSE;
	ul = uidlist_new(v);
	ul->header_rest =
	    g_strdup_printf(" G%08x%08x%08x%08x", g_random_int(),
	                    g_random_int(), g_random_int(), g_random_int());
	text = pb_uidlist_format(ul, &len);
	return replace_at(fd, UIDLIST, text, len, error);
}

/* Makes the folder NAME: .NAME/{cur,new,tmp}, maildirfolder, a uidlist;
 * each made durable (ROOT fsync'ed last). ALREADYEXISTS. */
static gboolean
folder_make(PbMailStore *st, const char *name, GError **error)
{
	g_autofree char *dir = dir_name(name);
	g_auto(PbFd) fd = -1;
	g_auto(PbFd) mf = -1;

	if (mkdirat(st->rootfd, dir, 0700) < 0)
		return errno == EEXIST
		           ? fail(error, PB_MAILFOLDER_ERROR_ALREADYEXISTS,
		                  "Mailbox already exists: %s", name)
		           : pb_throw_errno(error, "mkdir %s", dir);
	if ((fd = open_dir_at(st->rootfd, dir)) < 0)
		return pb_throw_errno(error, "open %s", dir);
	for (guint i = 0; i < 3; i++)
		if (mkdirat(fd, (const char *[]){"cur", "new", "tmp"}[i],
		            0700) < 0 &&
		    errno != EEXIST)
			return pb_throw_errno(error, "mkdir %s", dir);
	mf = openat(fd, "maildirfolder",
	            O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (mf < 0)
		return pb_throw_errno(error, "create %s/maildirfolder", dir);
	if (!first_uidlist(st, fd, error))
		return FALSE;
	if (fsync(fd) < 0 || fsync(st->rootfd) < 0)
		return pb_throw_errno(error, "fsync %s", dir);
	return TRUE;
}

gboolean
pb_mailstore_create(PbMailStore *st, const char *name, GError **error)
{
	g_autofree char *canon = NULL;
	const char *dot;

	if (!check_canon(name, &canon, error))
		return FALSE;
	if (g_str_equal(canon, "INBOX") || pb_mailstore_exists(st, canon))
		return fail(error, PB_MAILFOLDER_ERROR_ALREADYEXISTS,
		            "Mailbox already exists: %s", canon);
	/* the levels above, so that each is selectable (RFC 3501 6.3.3) */
	for (dot = strchr(canon, '.'); dot; dot = strchr(dot + 1, '.')) {
		g_autofree char *parent =
		    g_strndup(canon, (gsize)(dot - canon));
		g_autoptr(GError) err = NULL;
		if (g_str_equal(parent, "INBOX") ||
		    pb_mailstore_exists(st, parent))
			continue;
		if (!folder_make(st, parent, &err) &&
		    !g_error_matches(err, PB_MAILFOLDER_ERROR,
		                     PB_MAILFOLDER_ERROR_ALREADYEXISTS)) {
			g_propagate_error(error, g_steal_pointer(&err));
			return FALSE;
		}
	}
	return folder_make(st, canon, error);
}

gboolean
pb_mailstore_delete(PbMailStore *st, const char *name, GError **error)
{
	g_autofree char *canon = NULL;
	g_autofree char *dir = NULL;
	g_autofree char *gone = NULL;

	if (!check_canon(name, &canon, error))
		return FALSE;
	if (g_str_equal(canon, "INBOX"))
		return fail(error, PB_MAILFOLDER_ERROR_CANNOT,
		            "INBOX can't be deleted");
	dir = dir_name(canon);
	gone = g_strdup_printf(DELETED_PREFIX "%ld.%08x", (long)pb_self_pid(),
	                       g_random_int());
	/* one rename: the folder is gone at once, whatever remains to do */
	if (renameat(st->rootfd, dir, st->rootfd, gone) < 0)
		return errno == ENOENT
		           ? fail(error, PB_MAILFOLDER_ERROR_NONEXISTENT,
		                  "Mailbox doesn't exist: %s", canon)
		           : pb_throw_errno(error, "rename %s", dir);
	if (fsync(st->rootfd) < 0)
		return pb_throw_errno(error, "fsync %s", st->root);
	remove_tree(st->rootfd, gone, 0);
	return TRUE;
}

/* The folders that RENAME FROM moves: FROM and FROM.*, as old/new pairs
 * (PAIRS: old, new, old, new, ...). */
static gboolean
rename_pairs(PbMailStore *st, const char *from, const char *to,
             GPtrArray *pairs, GError **error)
{
	g_autoptr(GPtrArray) names = folder_names(st, error);
	g_autofree char *prefix = g_strconcat(from, ".", NULL);

	if (names == NULL)
		return FALSE;
	for (guint i = 0; i < names->len; i++) {
		const char *n = names->pdata[i];
		g_autofree char *nn = NULL;
		if (!g_str_equal(n, from) && !g_str_has_prefix(n, prefix))
			continue;
		nn = g_strconcat(to, n + strlen(from), NULL);
		if (!pb_mailfolder_name_check(nn, error))
			return FALSE;
		if (pb_mailstore_exists(st, nn))
			return fail(error, PB_MAILFOLDER_ERROR_ALREADYEXISTS,
			            "Mailbox already exists: %s", nn);
		g_ptr_array_add(pairs, g_strdup(n));
		g_ptr_array_add(pairs, g_steal_pointer(&nn));
	}
	if (pairs->len == 0)
		return fail(error, PB_MAILFOLDER_ERROR_NONEXISTENT,
		            "Mailbox doesn't exist: %s", from);
	return TRUE;
}

/* Subscriptions of FROM and FROM.* follow a rename. */
static gboolean
rename_subscriptions(PbMailStore *st, GPtrArray *pairs, GError **error)
{
	g_auto(GStrv) subs = pb_mailstore_subscriptions(st, error);

	if (subs == NULL)
		return FALSE;
	for (guint i = 0; i < pairs->len; i += 2)
		if (g_strv_contains((const char *const *)subs,
		                    pairs->pdata[i]) &&
		    (!pb_mailstore_subscribe(st, pairs->pdata[i], FALSE,
		                             error) ||
		     !pb_mailstore_subscribe(st, pairs->pdata[i + 1], TRUE,
		                             error)))
			return FALSE;
	return TRUE;
}

/* INBOX's messages into TO (made now); INBOX stays, empty. */
static gboolean
rename_inbox(PbMailStore *st, const char *to, GError **error)
{
	g_auto(PbFd) tfd = -1;

	if (!pb_mailstore_create(st, to, error))
		return FALSE;
	if ((tfd = folder_fd(st, to, error)) < 0)
		return FALSE;
	for (guint k = 0; k < 2; k++) {
		const char *sub = k == 0 ? "new" : "cur";
		g_auto(PbFd) from = open_dir_at(st->rootfd, sub);
		g_auto(PbFd) dest = open_dir_at(tfd, sub);
		g_auto(PbFd) dup = from >= 0 ? open_dir_at(from, ".") : -1;
		DIR *d = dup >= 0 ? fdopendir(g_steal_fd(&dup)) : NULL;
		struct dirent *de;
		if (d == NULL || dest < 0) {
			if (d)
				closedir(d);
			return pb_throw_errno(error, "open %s", sub);
		}
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				(void)renameat(from, de->d_name, dest,
				               de->d_name);
		closedir(d);
		if (fsync(dest) < 0 || fsync(from) < 0)
			return pb_throw_errno(error, "fsync %s", sub);
	}
	return TRUE;
}

gboolean
pb_mailstore_rename(PbMailStore *st, const char *from, const char *to,
                    GError **error)
{
	g_autofree char *f = NULL;
	g_autofree char *t = NULL;
	g_autofree char *prefix = NULL;
	g_autoptr(GPtrArray) pairs = g_ptr_array_new_with_free_func(g_free);

	if (!check_canon(from, &f, error) || !check_canon(to, &t, error))
		return FALSE;
	prefix = g_strconcat(f, ".", NULL);
	if (g_str_equal(t, "INBOX") || pb_mailstore_exists(st, t))
		return fail(error, PB_MAILFOLDER_ERROR_ALREADYEXISTS,
		            "Mailbox already exists: %s", t);
	if (g_str_equal(f, "INBOX"))
		return rename_inbox(st, t, error);
	if (g_str_has_prefix(t, prefix))
		return fail(error, PB_MAILFOLDER_ERROR_CANNOT,
		            "Can't rename a mailbox under itself: %s", t);
	if (!rename_pairs(st, f, t, pairs, error))
		return FALSE;
	for (guint i = 0; i < pairs->len; i += 2) {
		g_autofree char *od = dir_name(pairs->pdata[i]);
		g_autofree char *nd = dir_name(pairs->pdata[i + 1]);
		if (renameat2(st->rootfd, od, st->rootfd, nd,
		              RENAME_NOREPLACE) < 0 &&
		    (errno != EINVAL ||
		     renameat(st->rootfd, od, st->rootfd, nd) < 0))
			return pb_throw_errno(error, "rename %s", od);
	}
	if (fsync(st->rootfd) < 0)
		return pb_throw_errno(error, "fsync %s", st->root);
	return rename_subscriptions(st, pairs, error);
}

/* ---- subscriptions ---- */

char **
pb_mailstore_subscriptions(PbMailStore *st, GError **error)
{
	g_autofree char *text = NULL;
	g_autoptr(GError) err = NULL;
	gsize len;

	if (!read_file_at(st->rootfd, SUBSCRIPTIONS, SMALL_FILE_MAX, &text,
	                  &len, NULL, &err)) {
		if (g_error_matches(err, PB_ERROR, PB_ERROR_NOTFOUND))
			return g_new0(char *, 1);
		g_propagate_error(error, g_steal_pointer(&err));
		return NULL;
	}
	return pb_subscriptions_parse(text, len);
}

static gboolean
subscribe_locked(PbMailStore *st, const char *canon, gboolean on,
                 GError **error)
{
	g_auto(GStrv) subs = pb_mailstore_subscriptions(st, error);
	g_autoptr(GPtrArray) out = g_ptr_array_new();
	g_autofree char *text = NULL;
	gboolean there = FALSE;
	gsize len;

	if (subs == NULL)
		return FALSE;
	for (guint i = 0; subs[i]; i++) {
		if (g_str_equal(subs[i], canon)) {
			there = TRUE;
			if (!on)
				continue;
		}
		g_ptr_array_add(out, subs[i]);
	}
	if (there == on)
		return TRUE; /* nothing to change */
	if (on)
		g_ptr_array_add(out, (char *)canon);
	g_ptr_array_add(out, NULL);
	text = subscriptions_format((char *const *)out->pdata, &len);
	return replace_at(st->rootfd, SUBSCRIPTIONS, text, len, error);
}

gboolean
pb_mailstore_subscribe(PbMailStore *st, const char *name, gboolean subscribe,
                       GError **error)
{
	g_autofree char *canon = NULL;
	gboolean ok;

	if (!check_canon(name, &canon, error) ||
	    !lock_take(st->rootfd, SUBSCRIPTIONS ".lock", error))
		return FALSE;
	ok = subscribe_locked(st, canon, subscribe, error);
	lock_release(st->rootfd, SUBSCRIPTIONS ".lock");
	return ok;
}

/* ---- STATUS and the first login ---- */

gboolean
pb_mailstore_status(PbMailStore *st, const char *name, PbFolderStatus *status,
                    GError **error)
{
	g_autofree char *canon = NULL;
	g_autoptr(PbMailFolder) f = NULL;

	if (!check_canon(name, &canon, error) ||
	    (f = pb_mailfolder_open(st, canon, TRUE, error)) == NULL)
		return FALSE;
	memset(status, 0, sizeof *status);
	status->messages = f->msgs->len;
	status->recent = f->recent;
	status->uidnext = pb_mailfolder_uidnext(f);
	status->uidvalidity = f->uidvalidity;
	for (guint i = 0; i < f->msgs->len; i++) {
		guint64 size;
		if (!(msg_at(f, i)->flags & PB_MSG_SEEN))
			status->unseen++;
		/* a message gone meanwhile counts nothing */
		if (pb_mailfolder_size(f, i, &size, NULL))
			status->size += size;
	}
	return TRUE;
}

gboolean
pb_mailstore_ensure_special(PbMailStore *st, GError **error)
{
	for (guint i = 0; i < G_N_ELEMENTS(special_names); i++) {
		g_autoptr(GError) err = NULL;
		if (pb_mailstore_exists(st, special_names[i]))
			continue;
		if (!pb_mailstore_create(st, special_names[i], &err) &&
		    !g_error_matches(err, PB_MAILFOLDER_ERROR,
		                     PB_MAILFOLDER_ERROR_ALREADYEXISTS)) {
			g_propagate_error(error, g_steal_pointer(&err));
			return FALSE;
		}
		if (!pb_mailstore_subscribe(st, special_names[i], TRUE, error))
			return FALSE;
	}
	return TRUE;
}
