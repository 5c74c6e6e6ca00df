/* test-imap-serve.c - the per-user connection slots of imapd
 * (pb_imap_slot_take): at most MAX held at once, freed by close and by
 * the death of the holder, and a planted symlink is not followed. */
#include "error.h"
#include "imap-serve.h"

#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *
make_dir(void)
{
	g_autoptr(GError) error = NULL;
	char *dir = g_dir_make_tmp("test-imap-serve-XXXXXX", &error);

	g_assert_no_error(error);
	return dir;
}

static void
remove_dir(const char *dir)
{
	g_autofree char *slots =
	    g_build_filename(dir, PB_IMAP_SLOTS_FILE, NULL);

	(void)g_unlink(slots);
	g_assert_cmpint(g_rmdir(dir), ==, 0);
}

static void
test_limit(void)
{
	g_autofree char *dir = make_dir();
	int fds[3];
	gboolean full = TRUE;
	g_autoptr(GError) error = NULL;

	for (guint i = 0; i < 3; i++) {
		fds[i] = pb_imap_slot_take(dir, 3, &full, &error);
		g_assert_no_error(error);
		g_assert_cmpint(fds[i], >=, 0);
		g_assert_false(full);
	}
	/* the fourth: all taken, not an error */
	g_assert_cmpint(pb_imap_slot_take(dir, 3, &full, &error), ==, -1);
	g_assert_no_error(error);
	g_assert_true(full);
	/* a slot given back is free again */
	close(fds[0]);
	fds[0] = pb_imap_slot_take(dir, 3, &full, &error);
	g_assert_no_error(error);
	g_assert_cmpint(fds[0], >=, 0);
	g_assert_cmpint(pb_imap_slot_take(dir, 3, &full, &error), ==, -1);
	g_assert_true(full);
	for (guint i = 0; i < 3; i++)
		close(fds[i]);
	fds[0] = pb_imap_slot_take(dir, 1, &full, &error);
	g_assert_cmpint(fds[0], >=, 0);
	close(fds[0]);
	remove_dir(dir);
}

/* A process that dies holding a slot (killed, crashed) frees it. */
static void
test_dead_holder(void)
{
	g_autofree char *dir = make_dir();
	int pipefd[2];
	char c;
	pid_t pid;
	int status, fd;
	gboolean full;
	g_autoptr(GError) error = NULL;

	g_assert_cmpint(pipe(pipefd), ==, 0);
	pid = fork();
	g_assert_cmpint(pid, >=, 0);
	if (pid == 0) {
		gboolean f;
		int held = pb_imap_slot_take(dir, 1, &f, NULL);

		(void)!write(pipefd[1], held >= 0 ? "y" : "n", 1);
		pause();
		_exit(0);
	}
	g_assert_cmpint(read(pipefd[0], &c, 1), ==, 1);
	g_assert_cmpint(c, ==, 'y');
	g_assert_cmpint(pb_imap_slot_take(dir, 1, &full, &error), ==, -1);
	g_assert_true(full);
	g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
	g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
	fd = pb_imap_slot_take(dir, 1, &full, &error);
	g_assert_no_error(error);
	g_assert_cmpint(fd, >=, 0);
	close(fd);
	close(pipefd[0]);
	close(pipefd[1]);
	remove_dir(dir);
}

/* Whoever can write the Maildir must not make imapd create or lock a
 * file elsewhere; a missing Maildir is an error, not a free slot. */
static void
test_refused(void)
{
	g_autofree char *dir = make_dir();
	g_autofree char *slots =
	    g_build_filename(dir, PB_IMAP_SLOTS_FILE, NULL);
	g_autofree char *gone = g_build_filename(dir, "gone", NULL);
	g_autoptr(GError) error = NULL;
	gboolean full = TRUE;

	g_assert_cmpint(symlink("/etc/passwd", slots), ==, 0);
	g_assert_cmpint(pb_imap_slot_take(dir, 5, &full, &error), ==, -1);
	g_assert_false(full);
	g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
	g_clear_error(&error);
	g_assert_cmpint(g_unlink(slots), ==, 0);

	g_assert_cmpint(g_mkdir(slots, 0700), ==, 0);
	g_assert_cmpint(pb_imap_slot_take(dir, 5, &full, &error), ==, -1);
	g_assert_false(full);
	g_assert_nonnull(error);
	g_clear_error(&error);
	g_assert_cmpint(g_rmdir(slots), ==, 0);

	g_assert_cmpint(pb_imap_slot_take(gone, 5, &full, &error), ==, -1);
	g_assert_false(full);
	g_assert_error(error, PB_ERROR, PB_ERROR_NOTFOUND);
	remove_dir(dir);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/imap-serve/slot-limit", test_limit);
	g_test_add_func("/imap-serve/slot-dead-holder", test_dead_holder);
	g_test_add_func("/imap-serve/slot-refused", test_refused);
	return g_test_run();
}
