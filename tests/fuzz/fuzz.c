/* fuzz.c - see fuzz.h. */
#include "fuzz.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
	const uint8_t *data;
	size_t size, pos;
	guint seed; /* varies the chunk sizes */
} Feed;

static ssize_t
feed_read(void *ctx, void *buf, size_t len)
{
	Feed *f = ctx;
	size_t n = MIN(len, f->size - f->pos);

	/* chunks of 1..64 octets, then the rest: lines and DATA
	 * split at every kind of boundary */
	f->seed = f->seed * 1103515245u + 12345u;
	if (f->seed % 4 != 0)
		n = MIN(n, 1 + (f->seed >> 16) % 64);
	memcpy(buf, f->data + f->pos, n);
	f->pos += n;
	return (ssize_t)n;
}

static ssize_t
feed_write(void *ctx, const void *buf, size_t len)
{
	return (ssize_t)len;
}

static gsize
feed_pending(void *ctx)
{
	return 0;
}

static gboolean
feed_want_write(void *ctx)
{
	return FALSE;
}

static const PbTransport feed_transport = {
    .read = feed_read,
    .write = feed_write,
    .pending = feed_pending,
    .want_write = feed_want_write,
    .free = g_free,
};

PbConn *
fuzz_conn_new(const uint8_t *data, size_t size)
{
	PbConn *conn = pb_conn_new(-1, -1);
	Feed *f = g_new0(Feed, 1);

	f->data = data;
	f->size = size;
	f->seed = (guint)size;
	pb_conn_set_transport(conn, &feed_transport, f);
	return conn;
}

static void
drop(void *ctx, const char *data, gsize len)
{
	/* touch every byte so that ASan sees a bad reply buffer */
	volatile char sum = 0;

	for (gsize i = 0; i < len; i++)
		sum ^= data[i];
	(void)sum;
}

PbLineOut
fuzz_line_out(void)
{
	PbLineOut out = {drop, NULL};

	return out;
}

PbConfig *
fuzz_config(const char *text)
{
	g_autoptr(GError) error = NULL;
	PbConfig *cfg = pb_config_load_data(text, strlen(text), "fuzz.conf",
	                                    fuzz_scratch(), &error);

	g_assert_no_error(error);
	return cfg;
}

static char *scratch;

static void
remove_scratch(void)
{
	if (scratch) {
		fuzz_remove_tree(scratch);
	}
}

const char *
fuzz_scratch(void)
{
	if (scratch == NULL) {
		g_autofree char *tmpl =
		    g_build_filename(g_get_tmp_dir(), "pb-fuzz-XXXXXX", NULL);
		scratch = g_mkdtemp(g_steal_pointer(&tmpl));
		g_assert_nonnull(scratch);
		atexit(remove_scratch);
	}
	return scratch;
}

void
fuzz_write_file(const char *path, const void *data, size_t size)
{
	/* written in place: the readers under test take the file as it
	 * is, and a temporary file and a rename per input cost syscalls */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	const char *p = data;

	g_assert_cmpint(fd, >=, 0);
	while (size > 0) {
		ssize_t n = write(fd, p, size);
		g_assert_cmpint(n, >, 0);
		p += n;
		size -= (size_t)n;
	}
	g_assert_cmpint(close(fd), ==, 0);
}

/* Removes the files in the folder open as DIRFD and in its folders;
 * RMDIR_SUBS: the folders too. Reads the entries with getdents64 into a
 * stack buffer: opendir() would malloc 32 KiB per folder, which ASan
 * fills and quarantines (a page fault or more per folder and input). */
static void
empty_at(int dirfd, gboolean rmdir_subs)
{
	char buf[4096] __attribute__((aligned(8)));
	long n;

	while ((n = syscall(SYS_getdents64, dirfd, buf, sizeof buf)) > 0) {
		for (long off = 0; off < n;) {
			struct {
				guint64 ino;
				gint64 off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *e = (void *)(buf + off);
			gboolean dir = e->type == DT_DIR;
			struct stat st;

			off += e->reclen;
			if (strcmp(e->name, ".") == 0 ||
			    strcmp(e->name, "..") == 0)
				continue;
			if (e->type == DT_UNKNOWN)
				dir = fstatat(dirfd, e->name, &st,
				              AT_SYMLINK_NOFOLLOW) == 0 &&
				      S_ISDIR(st.st_mode);
			if (!dir) {
				(void)unlinkat(dirfd, e->name, 0);
				continue;
			}
			int sub = openat(dirfd, e->name,
			                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
			                     O_CLOEXEC);
			if (sub >= 0) {
				empty_at(sub, rmdir_subs);
				close(sub);
			}
			if (rmdir_subs)
				(void)unlinkat(dirfd, e->name, AT_REMOVEDIR);
		}
	}
}

void
fuzz_empty_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		empty_at(fd, FALSE);
		close(fd);
	}
}

void
fuzz_remove_tree(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		(void)unlink(dir);
		return;
	}
	empty_at(fd, TRUE);
	close(fd);
	(void)rmdir(dir);
}

/* A critical or a warning is printed, then abort(): libFuzzer catches
 * SIGABRT and saves the input (GLib's own fatal path raises SIGTRAP,
 * which it does not). */
static void
fatal_log(const char *domain, GLogLevelFlags level, const char *message,
          gpointer data)
{
	g_log_default_handler(domain, level, message, data);
	if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL |
	             G_LOG_LEVEL_WARNING | G_LOG_FLAG_FATAL))
		abort();
}

PbQueue *
fuzz_queue(char **dir)
{
	g_autofree char *path = g_build_filename(fuzz_scratch(), "queue", NULL);
	PbQueue *q = pb_queue_open(path, NULL);

	g_assert_nonnull(q);
	if (dir)
		*dir = g_steal_pointer(&path);
	return q;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	g_log_set_default_handler(fatal_log, NULL);
	(void)pb_log_open("fuzz", "/dev/null", NULL);
	(void)fuzz_scratch();
	if (fuzz_setup)
		fuzz_setup();
	return 0;
}
