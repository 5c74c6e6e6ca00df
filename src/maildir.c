/*
 * maildir.c - delivery into Maildirs: unique names, tmp/ then new/.
 *
 * Owns the files it creates under DIR/tmp and DIR/new of a Maildir, and
 * the Maildir's folders when it has to make them (mode 0700 whatever the
 * umask; each one's parent fsync'ed, so that a new mailbox does not lose
 * its folders, and the mail in them, in a power failure). A delivery
 * streams the message in 64 KiB chunks, CRLF written as LF, into tmp/NAME
 * (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), fsyncs and closes it, links it
 * as new/NAME,S=<octets>,W=<octets with CRLF> and fsyncs new/: that fsync
 * is the commit point. On any failure nothing that was not delivered is
 * left and the error is PB_ERROR_TEMP.
 *
 * Symbolic links are never followed below DIR's parent: DIR and its
 * tmp/, new/ and cur/ are opened with O_NOFOLLOW|O_DIRECTORY and the
 * files are made relative to those descriptors, so a link planted where
 * a Maildir or one of its folders should be is an error, not a way out.
 *
 * Exactly once (a delivery retried after a crash): a caller that may
 * repeat a delivery (runq, for a queued message) passes a stable unique
 * part, the same on every attempt (local.c makes it from the queue id:
 * every mailbox gets at most one copy of a queued message, so the id
 * alone names it). Then:
 *  - link() into new/ failing with EEXIST means "delivered before";
 *  - tmp/NAME is kept after the delivery, as a marker, until the caller
 *    has recorded the outcome and calls pb_maildir_settle(); a retry
 *    that finds the marker (its O_EXCL create fails) knows an earlier
 *    attempt got at least that far, and only then scans new/ and cur/
 *    for a name that starts with NAME: a copy a POP3 or IMAP server has
 *    meanwhile moved to cur/NAME...:2,FLAGS is found too. The scan costs
 *    a read of both folders, which grows with the mailbox, so it is done
 *    only on such a retry, never on a first attempt.
 * No fsync is added for this: the marker is not made durable (a power
 * failure may lose it; the EEXIST check on new/ still holds then) and a
 * copy the user already deleted cannot be recognised (it is delivered
 * again: never lost, at worst twice). A marker a crash left unsettled (a
 * link to a message the user may delete since) goes with any other file
 * of tmp/ older than 36 hours (pb_maildir_clean_tmp, the Maildir spec's
 * rule, run by the reader); a retry later than that finds the copy only
 * in new/.
 */
#include "maildir.h"
#include "durable.h"
#include "error.h"
#include "self.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define ALNUM "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/* HOST as one safe token: '/' and ':' as the spec says; ',' too (it
 * starts ",S="), and anything unprintable. */
static void
append_host(GString *s, const char *host)
{
	for (const guchar *p = (const guchar *)host; *p != '\0'; p++) {
		if (*p == '/' || *p == ':' || *p == ',' || *p == '\\' ||
		    *p <= 0x20 || *p >= 0x7F)
			g_string_append_printf(s, "\\%03o", *p);
		else
			g_string_append_c(s, (char)*p);
	}
}

char *
pb_maildir_unique(gint64 sec, gint64 usec, pid_t pid, guint n, const char *host)
{
	GString *s = g_string_new(NULL);

	g_string_append_printf(
	    s, "%" G_GINT64_FORMAT ".M%" G_GINT64_FORMAT "P%ldQ%u.", sec, usec,
	    (long)pid, n);
	append_host(s, host);
	return g_string_free(s, FALSE);
}

char *
pb_maildir_unique_for(gint64 time_usec, const char *key, const char *host)
{
	GString *s = g_string_new(NULL);

	g_return_val_if_fail(
	    key[0] != '\0' && strspn(key, ALNUM) == strlen(key), NULL);
	g_string_append_printf(
	    s, "%" G_GINT64_FORMAT ".M%" G_GINT64_FORMAT "Q%s.",
	    time_usec / G_USEC_PER_SEC, time_usec % G_USEC_PER_SEC, key);
	append_host(s, host);
	return g_string_free(s, FALSE);
}

/* fsync of the folder that holds NAME (under AT): a folder just made
 * there keeps its name through a power failure, as a renamed file. */
static int
sync_parent(int at, const char *name)
{
	g_autofree char *parent = NULL;
	int fd, rc, saved;

	if (at != AT_FDCWD)
		return fsync(at);
	parent = g_path_get_dirname(name);
	if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	rc = fsync(fd);
	saved = errno;
	(void)close(fd);
	errno = saved;
	return rc;
}

/* Makes folder NAME under AT with mode 0700 whatever the umask, its name
 * made durable; one that is there is left as it is. 0, or -1 with errno
 * set. */
static int
make_folder(int at, const char *name)
{
	int fd;

	if (mkdirat(at, name, 0700) < 0)
		return errno == EEXIST ? 0 : -1;
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fchmod(fd, 0700) < 0) {
		int saved = errno;
		(void)close(fd);
		errno = saved;
		return -1;
	}
	if (close(fd) < 0)
		return -1;
	return sync_parent(at, name);
}

/* mkdir -p PATH, each folder it makes with mode 0700. */
static gboolean
make_path(const char *path, GError **error)
{
	g_autofree char *parent = g_path_get_dirname(path);

	if (make_folder(AT_FDCWD, path) == 0)
		return TRUE;
	if (errno != ENOENT || g_str_equal(parent, path))
		return pb_throw_errno(error, "mkdir %s", path);
	if (!make_path(parent, error))
		return FALSE;
	return make_folder(AT_FDCWD, path) == 0 ||
	       pb_throw_errno(error, "mkdir %s", path);
}

/* Opens folder NAME under AT, never through a symbolic link. */
static int
open_folder(int at, const char *name)
{
	return openat(at, name,
	              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

gboolean
pb_maildir_create(const char *dir, GError **error)
{
	static const char *const subs[] = {"tmp", "new", "cur"};
	g_auto(PbFd) fd = -1;

	if (!make_path(dir, error))
		return FALSE;
	if ((fd = open_folder(AT_FDCWD, dir)) < 0)
		return pb_throw_errno(error, "open %s", dir);
	for (guint i = 0; i < G_N_ELEMENTS(subs); i++)
		if (make_folder(fd, subs[i]) < 0)
			return pb_throw_errno(error, "mkdir %s/%s", dir,
			                      subs[i]);
	return TRUE;
}

/* A stream being written: the file and its two sizes. */
typedef struct {
	int fd;
	guint64 s;   /* octets written */
	guint64 w;   /* octets with CRLF line ends */
	gboolean cr; /* the last chunk ended in a CR not yet written */
	char out[CHUNK + 1];
} Out;

static gboolean
out_write(Out *o, const char *buf, gsize len, GError **error)
{
	const char *p = buf;

	while ((p = memchr(p, '\n', (gsize)(buf + len - p))) != NULL) {
		o->w++;
		p++;
	}
	o->s += len;
	o->w += len;
	return pb_write_all(o->fd, buf, len, error);
}

/* Converts one chunk, CRLF to LF; a CR at its end waits for the next. */
static gboolean
convert(Out *o, const char *in, gsize len, GError **error)
{
	gsize n = 0;

	if (o->cr && len > 0 && in[0] != '\n')
		o->out[n++] = '\r';
	o->cr = FALSE;
	for (gsize i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 == len)
			o->cr = TRUE;
		else if (in[i] != '\r' || in[i + 1] != '\n')
			o->out[n++] = in[i];
	}
	return out_write(o, o->out, n, error);
}

static gboolean
copy(Out *o, int fd, GError **error)
{
	g_autofree char *in = g_malloc(CHUNK);

	for (;;) {
		ssize_t n = read(fd, in, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pb_throw_errno(error, "read");
		if (n == 0)
			break;
		if (!convert(o, in, (gsize)n, error))
			return FALSE;
	}
	/* a lone CR at the very end is kept */
	return !o->cr || out_write(o, "\r", 1, error);
}

/* A Maildir's folders, opened without following links. */
typedef struct {
	PbFd dir;
	PbFd tmp;
	PbFd new;
} Folders;

static void
folders_clear(Folders *f)
{
	pb_fd_clear(&f->dir);
	pb_fd_clear(&f->tmp);
	pb_fd_clear(&f->new);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Folders, folders_clear)

static gboolean
try_folders(const char *dir, Folders *f)
{
	folders_clear(f);
	f->tmp = f->new = -1;
	return (f->dir = open_folder(AT_FDCWD, dir)) >= 0 &&
	       (f->tmp = open_folder(f->dir, "tmp")) >= 0 &&
	       (f->new = open_folder(f->dir, "new")) >= 0;
}

/* Opens DIR, tmp/ and new/; a Maildir that is not there yet (or lost a
 * folder) is made on the way, so that a delivery into an existing one
 * costs no mkdir. A link in their place is an error (ELOOP, ENOTDIR). */
static gboolean
open_folders(const char *dir, Folders *f, GError **error)
{
	if (try_folders(dir, f))
		return TRUE;
	if (errno != ENOENT)
		return pb_throw_errno(error, "open %s", dir);
	if (!pb_maildir_create(dir, error))
		return FALSE;
	return try_folders(dir, f) || pb_throw_errno(error, "open %s", dir);
}

/* Creates file NAME under AT: mode 0600 whatever the umask. */
static int
create_at(int at, const char *name)
{
	int fd =
	    openat(at, name,
	           O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd >= 0 && fchmod(fd, 0600) < 0) {
		int saved = errno;
		(void)close(fd);
		(void)unlinkat(at, name, 0);
		errno = saved;
		return -1;
	}
	return fd;
}

/* Creates tmp/NAME for a new unique NAME. */
static int
create_fresh(Folders *f, char **name, GError **error)
{
	static gint counter;
	const char *host = pb_self_host();

	for (int tries = 0; tries < 10; tries++) {
		gint64 now = g_get_real_time();
		g_autofree char *unique = pb_maildir_unique(
		    now / G_USEC_PER_SEC, now % G_USEC_PER_SEC, pb_self_pid(),
		    (guint)g_atomic_int_add(&counter, 1), host);
		int fd = create_at(f->tmp, unique);

		if (fd >= 0) {
			*name = g_steal_pointer(&unique);
			return fd;
		}
		if (errno != EEXIST) {
			pb_throw_errno(error, "create tmp/%s", unique);
			return -1;
		}
	}
	g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "no unique name");
	return -1;
}

/* The name in FOLDER (an fd, not consumed) that is UNIQUE or starts with
 * UNIQUE followed by ',' or ':', or NULL: a read of the whole folder. */
static char *
find_in(int folder, const char *unique)
{
	int fd = dup(folder);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	gsize len = strlen(unique);
	struct dirent *de;
	char *found = NULL;

	if (d == NULL) {
		if (fd >= 0)
			(void)close(fd);
		return NULL;
	}
	rewinddir(d);
	while (found == NULL && (de = readdir(d)) != NULL)
		if (strncmp(de->d_name, unique, len) == 0 &&
		    strchr(",:", de->d_name[len]) != NULL) /* or its NUL */
			found = g_strdup(de->d_name);
	closedir(d);
	return found;
}

/* Creates tmp/UNIQUE for a delivery that may have been tried before.
 * Returns -1 with *FOUND set when an earlier attempt's copy is in new/ or
 * cur/ (then tmp/UNIQUE stays: the marker), or -1 with an error. */
static int
create_stable(Folders *f, const char *unique, char **found, GError **error)
{
	g_auto(PbFd) cur = -1;
	int fd = create_at(f->tmp, unique);

	if (fd >= 0 || errno != EEXIST)
		goto out;
	/* the marker of an earlier attempt: where did it get? */
	if ((*found = find_in(f->new, unique)) != NULL)
		return -1;
	cur = open_folder(f->dir, "cur");
	if (cur >= 0 && (*found = find_in(cur, unique)) != NULL)
		return -1;
	/* not delivered: a file it left half-written goes */
	if (unlinkat(f->tmp, unique, 0) < 0 && errno != ENOENT)
		goto out;
	fd = create_at(f->tmp, unique);
out:
	if (fd < 0)
		pb_throw_errno(error, "create tmp/%s", unique);
	return fd;
}

/* Writes the file: header, message, fsync, close. */
static gboolean
write_file(Out *o, const char *header, int fd, GError **error)
{
	if (!out_write(o, header, strlen(header), error) || !copy(o, fd, error))
		return FALSE;
	if (fsync(o->fd) < 0)
		return pb_throw_errno(error, "fsync");
	if (close(g_steal_fd(&o->fd)) < 0)
		return pb_throw_errno(error, "close");
	return TRUE;
}

/* Writes tmp/UNIQUE and links it into new/; with STABLE, an EEXIST there
 * is an earlier attempt's copy (*FOUND). */
static gboolean
deliver_file(Folders *f, Out *o, const char *unique, gboolean stable,
             const char *header, int fd, char **final, char **found,
             GError **error)
{
	g_autofree char *name = NULL;

	if (!write_file(o, header, fd, error))
		return FALSE;
	name =
	    g_strdup_printf("%s,S=%" G_GUINT64_FORMAT ",W=%" G_GUINT64_FORMAT,
	                    unique, o->s, o->w);
	if (linkat(f->tmp, unique, f->new, name, 0) < 0) {
		if (!stable || errno != EEXIST)
			return pb_throw_errno(error, "link new/%s", name);
		*found = g_steal_pointer(&name);
		return TRUE;
	}
	*final = g_steal_pointer(&name);
	if (!stable)
		(void)unlinkat(f->tmp, unique, 0);
	if (fsync(f->new) < 0)
		return pb_throw_errno(error, "fsync new/");
	return TRUE;
}

gboolean
pb_maildir_deliver(const char *dir, const char *stable, const char *header,
                   int fd, char **name, gboolean *again, GError **error)
{
	/* the 64 KiB buffer is not zeroed: zeroing faulted in 16 fresh
	 * pages a delivery, most of them for a small message never used */
	g_autofree Out *o = g_malloc(sizeof(Out));
	g_auto(Folders) f = {-1, -1, -1};
	g_autofree char *unique = g_strdup(stable);
	g_autofree char *final = NULL;
	g_autofree char *found = NULL;

	memset(o, 0, offsetof(Out, out));
	o->fd = -1;
	if (!open_folders(dir, &f, error))
		goto fail;
	o->fd = stable ? create_stable(&f, stable, &found, error)
	               : create_fresh(&f, &unique, error);
	if (o->fd < 0 && found == NULL)
		goto fail;
	if (found == NULL && !deliver_file(&f, o, unique, stable != NULL,
	                                   header, fd, &final, &found, error))
		goto fail;
	if (again != NULL)
		*again = found != NULL;
	if (name != NULL)
		*name =
		    found ? g_steal_pointer(&found) : g_steal_pointer(&final);
	return TRUE;
fail:
	if (o->fd >= 0)
		(void)close(o->fd);
	if (unique != NULL && f.tmp >= 0)
		(void)unlinkat(f.tmp, unique, 0);
	if (final != NULL)
		(void)unlinkat(f.new, final, 0);
	g_prefix_error(error, "maildir %s: ", dir);
	if (error != NULL && *error != NULL && (*error)->domain == PB_ERROR)
		(*error)->code = PB_ERROR_TEMP;
	return FALSE;
}

void
pb_maildir_settle(const char *dir, const char *unique)
{
	g_autofree char *path = g_build_filename(dir, "tmp", unique, NULL);

	(void)unlink(path);
}

void
pb_maildir_clean_tmp(const char *dir, gint64 now)
{
	g_auto(PbFd) top = open_folder(AT_FDCWD, dir);
	int tmp = top >= 0 ? open_folder(top, "tmp") : -1;
	DIR *d = tmp >= 0 ? fdopendir(tmp) : NULL;
	struct dirent *de;
	struct stat st;

	if (d == NULL) {
		if (tmp >= 0)
			(void)close(tmp);
		return;
	}
	while ((de = readdir(d)) != NULL)
		if (fstatat(tmp, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) &&
		    st.st_mtime < now - PB_MAILDIR_TMP_STALE)
			(void)unlinkat(tmp, de->d_name, 0);
	closedir(d);
}

/* The number after KEY in NAME (up to END), which must end at ',' or END. */
static gboolean
size_field(const char *name, const char *end, const char *key, guint64 *out)
{
	const char *p = g_strstr_len(name, end - name, key);
	char *stop = NULL;

	if (p == NULL || !g_ascii_isdigit(p[strlen(key)]))
		return FALSE;
	errno = 0;
	*out = g_ascii_strtoull(p + strlen(key), &stop, 10);
	return errno == 0 && (stop == end || *stop == ',');
}

gboolean
pb_maildir_name_sizes(const char *name, guint64 *s, guint64 *w)
{
	const char *info = strchr(name, ':');
	const char *end = info ? info : name + strlen(name);

	return size_field(name, end, ",S=", s) &&
	       size_field(name, end, ",W=", w);
}

gint
pb_maildir_name_compare(const char *x, const char *y)
{
	guint64 xs = g_ascii_strtoull(x, NULL, 10);
	guint64 ys = g_ascii_strtoull(y, NULL, 10);
	const char *xm = strstr(x, ".M"), *ym = strstr(y, ".M");
	guint64 xu = xm ? g_ascii_strtoull(xm + 2, NULL, 10) : 0;
	guint64 yu = ym ? g_ascii_strtoull(ym + 2, NULL, 10) : 0;

	if (xs != ys)
		return xs < ys ? -1 : 1;
	if (xu != yu)
		return xu < yu ? -1 : 1;
	return strcmp(x, y);
}
