/*
 * durable.c - write, fsync, rename, fsync the folder.
 *
 * Guarantees: when pb_durable_replace() returns TRUE the new contents and
 * the name are on stable storage; when it returns FALSE the old file is
 * untouched and no temporary file is left behind.
 */
#include "durable.h"
#include "error.h"
#include "self.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

gboolean
pb_write_all(int fd, const void *buf, gsize len, GError **error)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return pb_throw_errno(error, "write");
		}
		p += n;
		len -= (gsize)n;
	}
	return TRUE;
}

gboolean
pb_fsync_dir(const char *dir, GError **error)
{
	g_auto(PbFd) fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return pb_throw_errno(error, "open %s", dir);
	if (fsync(fd) < 0)
		return pb_throw_errno(error, "fsync %s", dir);
	return TRUE;
}

/* Makes PATH in PARENT, whose fsync then makes its name durable (as a
 * rename's is): what is later committed inside cannot lose its folder. */
static gboolean
make_one(const char *path, const char *parent, mode_t mode, GError **error)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return pb_fsync_dir(parent, error);
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return TRUE; /* another process made it meanwhile */
	return pb_throw_errno(error, "mkdir %s", path);
}

gboolean
pb_mkdirs(const char *path, mode_t mode, GError **error)
{
	g_autofree char *parent = g_path_get_dirname(path);
	struct stat st;

	/* the common case, a folder that is there, costs one stat */
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return TRUE;
	if (errno == ENOENT && !g_str_equal(parent, path) &&
	    !pb_mkdirs(parent, mode, error))
		return FALSE;
	return make_one(path, parent, mode, error);
}

gboolean
pb_durable_replace(const char *path, const void *data, gsize len,
		   mode_t mode, GError **error)
{
	g_autofree char *dir = g_path_get_dirname(path);
	g_autofree char *tmp = g_strdup_printf("%s.tmp%ld", path, (long)pb_self_pid());
	g_auto(PbFd) fd = -1;

	fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
	if (fd < 0 && errno == EEXIST) {
		/* left by a process of ours that died with this pid */
		(void)unlink(tmp);
		fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
	}
	if (fd < 0)
		return pb_throw_errno(error, "create %s", tmp);
	/* MODE itself, not what the umask leaves of it */
	if (fchmod(fd, mode) < 0 || !pb_write_all(fd, data, len, error) ||
	    fsync(fd) < 0 ||
	    close(g_steal_fd(&fd)) < 0) {
		if (error && *error == NULL)
			pb_throw_errno(error, "writing %s", tmp);
		(void)unlink(tmp);
		return FALSE;
	}
	if (rename(tmp, path) < 0) {
		pb_throw_errno(error, "rename %s", path);
		(void)unlink(tmp);
		return FALSE;
	}
	return pb_fsync_dir(dir, error);
}
