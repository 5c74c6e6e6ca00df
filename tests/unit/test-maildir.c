/* test-maildir.c - unique names, streaming delivery, CRLF to LF, sizes,
 * idempotent (stable-name) delivery, no symbolic links followed, modes. */
#include "error.h"
#include "maildir.h"

#include <fcntl.h>
#include <stdio.h>
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
test_unique_for(void)
{
	g_autofree char *a =
	    pb_maildir_unique_for(1763800000123456, "0004D2007", "mx/a:b");

	g_assert_cmpstr(a, ==,
	                "1763800000.M123456Q0004D2007.mx\\057a"
	                "\\072b");
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

static char *scratch; /* made in main, removed after the tests */

static char *
make_dir(void)
{
	static guint made;
	g_autoptr(GError) error = NULL;
	g_autofree char *top = g_strdup_printf("%s/%u", scratch, made++);
	char *dir;

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
	g_assert_true(pb_maildir_deliver(dir, NULL, "Return-Path: <a@b>\n", fd,
	                                 &name, NULL, &error));
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
	g_assert_true(
	    pb_maildir_deliver(dir, NULL, "", p[0], &name, NULL, &error));
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
	g_assert_false(
	    pb_maildir_deliver(dir, NULL, "", fd, NULL, NULL, &error));
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
	g_assert_true(
	    pb_maildir_deliver(dir, NULL, "", fd, NULL, NULL, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(count(dir, "new"), ==, 1);
	g_assert_true(g_file_test(cur, G_FILE_TEST_IS_DIR));

	g_assert_cmpint(system(rm), ==, 0);
	g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
	g_assert_true(
	    pb_maildir_deliver(dir, NULL, "", fd, NULL, NULL, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(count(dir, "new"), ==, 1);
	g_assert_cmpuint(count(dir, "tmp"), ==, 0);
	close(fd);
}

#define STABLE "1763800000.M5Q0004D2007.host"

static GPtrArray *
list(const char *dir, const char *sub)
{
	g_autofree char *path = g_build_filename(dir, sub, NULL);
	GDir *d = g_dir_open(path, 0, NULL);
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	const char *n;

	g_assert_nonnull(d);
	while ((n = g_dir_read_name(d)) != NULL)
		g_ptr_array_add(names, g_strdup(n));
	g_dir_close(d);
	return names;
}

/* Delivers "x" under the stable name; returns *AGAIN. */
static gboolean
deliver_stable(const char *dir, char **name)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GString) in = g_string_new("Subject: x\r\n\r\nx\r\n");
	gboolean again = FALSE;
	int fd = temp_fd(in);

	g_assert_true(
	    pb_maildir_deliver(dir, STABLE, "", fd, name, &again, &error));
	g_assert_no_error(error);
	close(fd);
	return again;
}

/* A repeated delivery finds the first copy (the crash after the link and
 * before the queue knew): in new/ through the marker, through the link's
 * EEXIST once the marker is gone. */
static void
test_stable_again(void)
{
	g_autofree char *dir = make_dir();
	g_autofree char *first = NULL;
	g_autofree char *second = NULL;
	g_autofree char *third = NULL;

	g_assert_false(deliver_stable(dir, &first));
	g_assert_true(g_str_has_prefix(first, STABLE ",S="));
	g_assert_cmpuint(count(dir, "new"), ==, 1);
	g_assert_cmpuint(count(dir, "tmp"), ==, 1); /* the marker */
	g_assert_true(deliver_stable(dir, &second));
	g_assert_cmpstr(second, ==, first);
	g_assert_cmpuint(count(dir, "new"), ==, 1);
	pb_maildir_settle(dir, STABLE);
	g_assert_cmpuint(count(dir, "tmp"), ==, 0);
	g_assert_true(deliver_stable(dir, &third));
	g_assert_cmpstr(third, ==, first);
	g_assert_cmpuint(count(dir, "new"), ==, 1);
	g_assert_cmpuint(count(dir, "cur"), ==, 0);
	pb_maildir_settle(dir, STABLE);
	g_assert_cmpuint(count(dir, "tmp"), ==, 0);
}

/* A POP3 or IMAP server moved the first copy to cur/ with flags before
 * the retry: the marker makes the retry look there. */
static void
test_stable_cur(void)
{
	g_autofree char *dir = make_dir();
	g_autofree char *first = NULL;
	g_autofree char *again = NULL;
	g_autofree char *from = NULL;
	g_autofree char *to = NULL;
	g_autoptr(GPtrArray) cur = NULL;

	g_assert_false(deliver_stable(dir, &first));
	from = g_build_filename(dir, "new", first, NULL);
	to = g_strdup_printf("%s/cur/%s:2,RS", dir, first);
	g_assert_cmpint(rename(from, to), ==, 0);
	g_assert_true(deliver_stable(dir, &again));
	g_assert_cmpuint(count(dir, "new"), ==, 0);
	cur = list(dir, "cur");
	g_assert_cmpuint(cur->len, ==, 1);
	g_assert_cmpstr(again, ==, g_ptr_array_index(cur, 0));
}

/* An attempt that died before its link left a half file in tmp/: the
 * retry delivers the whole message, once. */
static void
test_stable_half(void)
{
	g_autofree char *dir = make_dir();
	g_autofree char *tmp = g_build_filename(dir, "tmp", STABLE, NULL);
	g_autofree char *name = NULL;
	g_autofree char *path = NULL;
	g_autofree char *got = NULL;

	g_assert_true(g_file_set_contents(tmp, "Subj", -1, NULL));
	g_assert_false(deliver_stable(dir, &name));
	path = g_build_filename(dir, "new", name, NULL);
	g_assert_true(g_file_get_contents(path, &got, NULL, NULL));
	g_assert_cmpstr(got, ==, "Subject: x\n\nx\n");
	g_assert_cmpuint(count(dir, "new"), ==, 1);
}

/* A delivery whose write fails leaves no marker and no copy. */
static void
test_stable_fails(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = make_dir();
	int fd = open("/", O_RDONLY | O_DIRECTORY); /* read() fails */

	g_assert_cmpint(fd, >=, 0);
	g_assert_false(
	    pb_maildir_deliver(dir, STABLE, "", fd, NULL, NULL, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
	g_assert_cmpuint(count(dir, "tmp"), ==, 0);
	g_assert_cmpuint(count(dir, "new"), ==, 0);
	close(fd);
}

/* A symbolic link where the Maildir, its tmp/ or its new/ should be is
 * refused: nothing is written where it points. */
static void
test_symlinks(void)
{
	static const char *const where[] = {"", "tmp", "new"};

	for (guint i = 0; i < G_N_ELEMENTS(where); i++) {
		g_autoptr(GError) error = NULL;
		g_autofree char *dir = make_dir();
		g_autofree char *top = g_path_get_dirname(dir);
		g_autofree char *away = g_build_filename(top, "away", NULL);
		g_autofree char *link = g_build_filename(dir, where[i], NULL);
		g_autofree char *rm = g_strdup_printf("rm -r '%s'", link);
		g_autoptr(GString) in = g_string_new("x\r\n");
		int fd = temp_fd(in);

		g_assert_true(pb_maildir_create(away, &error));
		g_assert_cmpint(system(rm), ==, 0);
		g_assert_cmpint(
		    symlink(where[i][0] ? "../away/new" : "away", link), ==, 0);
		g_assert_false(
		    pb_maildir_deliver(dir, NULL, "", fd, NULL, NULL, &error));
		g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
		g_assert_cmpuint(count(away, "new"), ==, 0);
		g_assert_cmpuint(count(away, "tmp"), ==, 0);
		close(fd);
	}
}

/* Folders 0700 and files 0600 whatever the umask (0777 here). */
static void
test_modes(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *made = make_dir();
	g_autofree char *top = g_path_get_dirname(made);
	g_autofree char *dir = g_build_filename(top, "sub", "carol", NULL);
	g_autofree char *name = NULL;
	g_autofree char *path = NULL;
	g_autoptr(GString) in = g_string_new("x\r\n");
	static const char *const subs[] = {"..", ".", "tmp", "new", "cur"};
	struct stat st;
	int fd = temp_fd(in);
	mode_t old = umask(0777);

	g_assert_true(
	    pb_maildir_deliver(dir, NULL, "", fd, &name, NULL, &error));
	umask(old);
	g_assert_no_error(error);
	for (guint i = 0; i < G_N_ELEMENTS(subs); i++) {
		g_autofree char *sub = g_build_filename(dir, subs[i], NULL);
		g_assert_cmpint(stat(sub, &st), ==, 0);
		g_assert_cmpint(st.st_mode & 07777, ==, 0700);
	}
	path = g_build_filename(dir, "new", name, NULL);
	g_assert_cmpint(stat(path, &st), ==, 0);
	g_assert_cmpint(st.st_mode & 07777, ==, 0600);
	close(fd);
}

/* Delivery order: seconds and microseconds compared as numbers (they
 * are not zero-padded), then the rest of the name. */
static void
test_name_compare(void)
{
	const char *order[] = {"999.M999999P1.h",  "1000.M5P1.h",
	                       "1000.M40P1.h",     "1000.M40P2.h",
	                       "1000.M40P2.h:2,S", "1001.h"};

	for (guint i = 0; i < G_N_ELEMENTS(order); i++)
		for (guint j = 0; j < G_N_ELEMENTS(order); j++) {
			gint c = pb_maildir_name_compare(order[i], order[j]);

			g_assert_cmpint(c < 0, ==, i < j);
			g_assert_cmpint(c == 0, ==, i == j);
		}
}

int
main(int argc, char **argv)
{
	g_autofree char *cmd = NULL;
	int rc;

	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/maildir/unique", test_unique);
	g_test_add_func("/maildir/name-sizes", test_name_sizes);
	g_test_add_func("/maildir/name-compare", test_name_compare);
	g_test_add_func("/maildir/deliver/crlf", test_deliver);
	g_test_add_func("/maildir/deliver/pipe", test_deliver_pipe);
	g_test_add_func("/maildir/deliver/fails", test_deliver_fails);
	g_test_add_func("/maildir/deliver/creates", test_deliver_creates);
	g_test_add_func("/maildir/unique-for", test_unique_for);
	g_test_add_func("/maildir/stable/again", test_stable_again);
	g_test_add_func("/maildir/stable/cur", test_stable_cur);
	g_test_add_func("/maildir/stable/half", test_stable_half);
	g_test_add_func("/maildir/stable/fails", test_stable_fails);
	g_test_add_func("/maildir/symlinks", test_symlinks);
	g_test_add_func("/maildir/modes", test_modes);
	scratch = g_dir_make_tmp("test-maildir-XXXXXX", NULL);
	g_assert_nonnull(scratch);
	rc = g_test_run();
	cmd = g_strdup_printf("rm -rf '%s'", scratch);
	g_assert_cmpint(system(cmd), ==, 0);
	return rc;
}
