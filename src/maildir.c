/*
 * maildir.c - delivery into Maildirs: unique names, tmp/ then new/.
 *
 * Owns the files it creates under DIR/tmp and DIR/new of a Maildir.
 * A delivery streams the message in 64 KiB chunks, CRLF written as LF,
 * into tmp/NAME (O_EXCL, mode 0600), fsyncs and closes it, links it as
 * new/NAME,S=<octets>,W=<octets with CRLF>, removes tmp/NAME and fsyncs
 * new/: that fsync is the commit point. On any failure both names are
 * removed and the error is PB_ERROR_TEMP.
 */
#include "maildir.h"
#include "durable.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

char *
pb_maildir_unique(gint64 sec, gint64 usec, pid_t pid, guint n, const char *host)
{
	GString *s = g_string_new(NULL);

	g_string_append_printf(
	    s, "%" G_GINT64_FORMAT ".M%" G_GINT64_FORMAT "P%ldQ%u.", sec, usec,
	    (long)pid, n);
	/* '/' and ':' as the spec says; ',' too (it starts ",S="), and
	 * anything unprintable, so the name stays one safe token */
	for (const guchar *p = (const guchar *)host; *p != '\0'; p++) {
		if (*p == '/' || *p == ':' || *p == ',' || *p == '\\' ||
		    *p <= 0x20 || *p >= 0x7F)
			g_string_append_printf(s, "\\%03o", *p);
		else
			g_string_append_c(s, (char)*p);
	}
	return g_string_free(s, FALSE);
}

gboolean
pb_maildir_create(const char *dir, GError **error)
{
	static const char *const subs[] = {"tmp", "new", "cur"};

	for (guint i = 0; i < G_N_ELEMENTS(subs); i++) {
		g_autofree char *path = g_build_filename(dir, subs[i], NULL);
		if (!pb_mkdirs(path, 0700, error))
			return FALSE;
	}
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

/* Creates tmp/NAME for a new unique NAME; a Maildir that is not there
 * yet (or lost a folder) is made on the way, so that a delivery into an
 * existing one costs no mkdir. */
static int
create_tmp(const char *dir, char **name, GError **error)
{
	static gint counter;
	g_autofree char *host = NULL;
	gboolean made = FALSE;

	host = g_strdup(g_get_host_name());
	for (int tries = 0; tries < 10; tries++) {
		gint64 now = g_get_real_time();
		g_autofree char *unique = pb_maildir_unique(
		    now / G_USEC_PER_SEC, now % G_USEC_PER_SEC, getpid(),
		    (guint)g_atomic_int_add(&counter, 1), host);
		g_autofree char *path =
		    g_build_filename(dir, "tmp", unique, NULL);
		int fd =
		    open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);

		if (fd >= 0) {
			*name = g_steal_pointer(&unique);
			return fd;
		}
		if (errno == ENOENT && !made) {
			if (!pb_maildir_create(dir, error))
				return -1;
			made = TRUE;
			continue;
		}
		if (errno != EEXIST) {
			pb_throw_errno(error, "create %s", path);
			return -1;
		}
	}
	g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "%s: no unique name", dir);
	return -1;
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

/* Links TMP as NEWPATH; a Maildir with tmp/ but without new/ (a damaged
 * one) gets its folders made again. */
static int
link_new(const char *dir, const char *tmp, const char *newpath)
{
	if (link(tmp, newpath) == 0)
		return 0;
	if (errno != ENOENT || !pb_maildir_create(dir, NULL))
		return -1; /* errno says why */
	return link(tmp, newpath);
}

gboolean
pb_maildir_deliver(const char *dir, const char *header, int fd, char **name,
                   GError **error)
{
	g_autofree Out *o = g_new0(Out, 1);
	g_autofree char *unique = NULL;
	g_autofree char *tmp = NULL;
	g_autofree char *final = NULL;
	g_autofree char *newpath = NULL;
	g_autofree char *newdir = g_build_filename(dir, "new", NULL);

	if ((o->fd = create_tmp(dir, &unique, error)) < 0)
		goto fail;
	tmp = g_build_filename(dir, "tmp", unique, NULL);
	if (!write_file(o, header, fd, error))
		goto fail;
	final =
	    g_strdup_printf("%s,S=%" G_GUINT64_FORMAT ",W=%" G_GUINT64_FORMAT,
	                    unique, o->s, o->w);
	newpath = g_build_filename(newdir, final, NULL);
	if (link_new(dir, tmp, newpath) < 0) {
		pb_throw_errno(error, "link %s", newpath);
		g_clear_pointer(&newpath, g_free);
		goto fail;
	}
	(void)unlink(tmp);
	if (!pb_fsync_dir(newdir, error))
		goto fail;
	if (name != NULL)
		*name = g_steal_pointer(&final);
	return TRUE;
fail:
	if (o->fd >= 0)
		(void)close(o->fd);
	if (tmp != NULL)
		(void)unlink(tmp);
	if (newpath != NULL)
		(void)unlink(newpath);
	g_prefix_error(error, "maildir %s: ", dir);
	if (error != NULL && *error != NULL && (*error)->domain == PB_ERROR)
		(*error)->code = PB_ERROR_TEMP;
	return FALSE;
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
