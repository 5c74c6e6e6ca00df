/* test-maildir.c - unique names, streaming delivery, CRLF to LF, sizes. */
#include "error.h"
#include "maildir.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
test_unique(void)
{
	g_autofree char *a =
	    pb_maildir_unique(1763800000, 42, 1234, 7, "mail.example.org");
	g_autofree char *b = pb_maildir_unique(1, 999999, 1, 0, "a/b:c,d e");

	g_assert_cmpstr(a, ==, "1763800000.M42P1234Q7.mail.example.org");
	g_assert_cmpstr(b, ==, "1.M999999P1Q0.a\\057b\\072c\\054d\\040e");
}

static void
test_name_sizes(void)
{
	guint64 s = 0, w = 0;

	g_assert_true(
	    pb_maildir_name_sizes("1.M2P3Q4.host,S=120,W=125", &s, &w));
	g_assert_cmpuint(s, ==, 120);
	g_assert_cmpuint(w, ==, 125);
	g_assert_true(
	    pb_maildir_name_sizes("1.M2P3Q4.host,W=9,S=8:2,S", &s, &w));
	g_assert_cmpuint(s, ==, 8);
	g_assert_cmpuint(w, ==, 9);
	g_assert_false(pb_maildir_name_sizes("1.M2P3Q4.host,S=120", &s, &w));
	g_assert_false(
	    pb_maildir_name_sizes("1.M2P3Q4.host:2,S=1,W=2", &s, &w));
	g_assert_false(pb_maildir_name_sizes("1.host,S=12x,W=1", &s, &w));
	g_assert_false(pb_maildir_name_sizes("1.host,S=,W=1", &s, &w));
}

static char *
make_dir(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *top = g_dir_make_tmp("test-maildir-XXXXXX", &error);
	char *dir;

	g_assert_no_error(error);
	dir = g_build_filename(top, "example.org", "alice", NULL);
	g_assert_true(pb_maildir_create(dir, &error));
	g_assert_no_error(error);
	return dir;
}

static guint
count(const char *dir, const char *sub)
{
	g_autofree char *path = g_build_filename(dir, sub, NULL);
	GDir *d = g_dir_open(path, 0, NULL);
	guint n = 0;

	g_assert_nonnull(d);
	while (g_dir_read_name(d) != NULL)
		n++;
	g_dir_close(d);
	return n;
}

/* A temporary file holding DATA, at offset 0. */
static int
temp_fd(const GString *data)
{
	g_autofree char *path = NULL;
	int fd = g_file_open_tmp("test-maildir-in-XXXXXX", &path, NULL);

	g_assert_cmpint(fd, >=, 0);
	(void)unlink(path);
	g_assert_cmpint(write(fd, data->str, data->len), ==, (gssize)data->len);
	g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
	return fd;
}

/* Lines of CRLF so that CRs land on every side of the 64 KiB boundary,
 * plus a bare CR, a bare LF and a final lone CR. */
static void
test_deliver(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = make_dir();
	g_autofree char *name = NULL;
	g_autofree char *path = NULL;
	g_autofree char *got = NULL;
	g_autoptr(GString) in = g_string_new(NULL);
	g_autoptr(GString) want = g_string_new("Return-Path: <a@b>\n");
	guint64 s, w, lfs = 0;
	gsize len;
	int fd;

	/* 65535 bytes, then CRLF: the CR is the last byte of the first read */
	while (in->len < 65535)
		g_string_append_c(in, 'y');
	g_string_append(in, "\r\nbare\rcr and bare\nlf\r\n");
	for (int i = 0; i < 3000; i++)
		g_string_append(in, "line of text\r\n");
	g_string_append(in, "end\r");
	g_string_append_len(want, in->str, (gssize)in->len);
	g_string_replace(want, "\r\n", "\n", 0);
	g_assert_nonnull(strstr(want->str, "y\nbare\rcr"));
	g_assert_true(g_str_has_suffix(want->str, "\nend\r"));
	for (gsize i = 0; i < want->len; i++)
		lfs += want->str[i] == '\n';
	fd = temp_fd(in);
	g_assert_true(
	    pb_maildir_deliver(dir, "Return-Path: <a@b>\n", fd, &name, &error));
	g_assert_no_error(error);
	close(fd);
	g_assert_cmpuint(count(dir, "tmp"), ==, 0);
	g_assert_cmpuint(count(dir, "new"), ==, 1);
	path = g_build_filename(dir, "new", name, NULL);
	g_assert_true(g_file_get_contents(path, &got, &len, NULL));
	g_assert_cmpuint(len, ==, want->len);
	g_assert_cmpint(memcmp(got, want->str, len), ==, 0);
	g_assert_true(pb_maildir_name_sizes(name, &s, &w));
	g_assert_cmpuint(s, ==, want->len);
	g_assert_cmpuint(w, ==, want->len + lfs);
	g_assert_true(g_ascii_isdigit(name[0]));
	g_assert_nonnull(strstr(name, ".M"));
}

/* Same stream through a pipe, whose reads are short and split anywhere. */
static void
test_deliver_pipe(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = make_dir();
	g_autofree char *name = NULL;
	g_autofree char *path = NULL;
	g_autofree char *got = NULL;
	g_autoptr(GString) want = g_string_new(NULL);
	gsize len;
	int p[2];
	pid_t pid;

	g_assert_cmpint(pipe(p), ==, 0);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		for (int i = 0; i < 50000; i++)
			if (write(p[1], i % 2 ? "\r" : "a\n", i % 2 ? 1 : 2) <
			    0)
				_exit(1);
		_exit(0);
	}
	close(p[1]);
	for (int i = 0; i < 50000; i++)
		g_string_append(want, i % 2 ? "\r" : "a\n");
	g_string_replace(want, "\r\n", "\n", 0);
	g_assert_true(pb_maildir_deliver(dir, "", p[0], &name, &error));
	g_assert_no_error(error);
	close(p[0]);
	path = g_build_filename(dir, "new", name, NULL);
	g_assert_true(g_file_get_contents(path, &got, &len, NULL));
	g_assert_cmpuint(len, ==, want->len);
	g_assert_cmpint(memcmp(got, want->str, len), ==, 0);
}

static void
test_deliver_fails(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = make_dir();
	g_autofree char *newdir = g_build_filename(dir, "new", NULL);
	g_autoptr(GString) in = g_string_new("x\r\n");
	int fd = temp_fd(in);

	if (geteuid() == 0) {
		/* root ignores the folder's mode: a file stands where new/
		 * should be, which no mkdir can mend */
		g_assert_cmpint(rmdir(newdir), ==, 0);
		g_assert_true(g_file_set_contents(newdir, "", 0, NULL));
	} else {
		g_assert_cmpint(chmod(newdir, 0500), ==, 0);
	}
	g_assert_false(pb_maildir_deliver(dir, "", fd, NULL, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
	g_assert_cmpuint(count(dir, "tmp"), ==, 0);
	close(fd);
}

/* A missing Maildir, or one that lost new/, is made by the delivery. */
static void
test_deliver_creates(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *made = make_dir();
	g_autofree char *top = g_path_get_dirname(made);
	g_autofree char *dir = g_build_filename(top, "bob", NULL);
	g_autofree char *newdir = g_build_filename(dir, "new", NULL);
	g_autofree char *cur = g_build_filename(dir, "cur", NULL);
	g_autofree char *rm = g_strdup_printf("rm -r '%s'", newdir);
	g_autoptr(GString) in = g_string_new("x\r\n");
	int fd = temp_fd(in);

	g_assert_false(g_file_test(dir, G_FILE_TEST_EXISTS));
	g_assert_true(pb_maildir_deliver(dir, "", fd, NULL, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(count(dir, "new"), ==, 1);
	g_assert_true(g_file_test(cur, G_FILE_TEST_IS_DIR));

	g_assert_cmpint(system(rm), ==, 0);
	g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
	g_assert_true(pb_maildir_deliver(dir, "", fd, NULL, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(count(dir, "new"), ==, 1);
	g_assert_cmpuint(count(dir, "tmp"), ==, 0);
	close(fd);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/maildir/unique", test_unique);
	g_test_add_func("/maildir/name-sizes", test_name_sizes);
	g_test_add_func("/maildir/deliver/crlf", test_deliver);
	g_test_add_func("/maildir/deliver/pipe", test_deliver_pipe);
	g_test_add_func("/maildir/deliver/fails", test_deliver_fails);
	g_test_add_func("/maildir/deliver/creates", test_deliver_creates);
	return g_test_run();
}
