/* fuzz.c - see fuzz.h. */
#include "fuzz.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
		fuzz_empty_dir(scratch);
		(void)rmdir(scratch);
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
	g_autoptr(GError) error = NULL;

	(void)unlink(path);
	g_file_set_contents(path, data, (gssize)size, &error);
	g_assert_no_error(error);
}

void
fuzz_empty_dir(const char *dir)
{
	g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
	const char *name;

	while (d && (name = g_dir_read_name(d)) != NULL) {
		g_autofree char *p = g_build_filename(dir, name, NULL);
		if (g_file_test(p, G_FILE_TEST_IS_DIR) &&
		    !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
			fuzz_empty_dir(p);
		else
			(void)unlink(p);
	}
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
