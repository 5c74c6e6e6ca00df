/* test-log: one whole line per event, control characters escaped, at
 * every length (the line is built on the stack up to 2 KB, then on the
 * heap: both sides of that edge). */
#include "log.h"

#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static char *
log_path(char **dir)
{
	*dir = g_dir_make_tmp("test-log-XXXXXX", NULL);
	g_assert_nonnull(*dir);
	return g_build_filename(*dir, "log", NULL);
}

static char *
read_log(const char *path, const char *dir)
{
	char *text = NULL;

	g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
	unlink(path);
	rmdir(dir);
	return text;
}

static void
test_escaped(void)
{
	g_autofree char *dir = NULL;
	g_autofree char *path = log_path(&dir);
	g_autofree char *text = NULL;
	g_autofree char *want = NULL;

	g_assert_true(pb_log_open("test", path, NULL));
	pb_log_info("QID1", "from=<%s>, n=%d", "a\r\nb\x7f\x01", 7);
	text = read_log(path, dir);
	want = g_strdup_printf(" test[%ld]: QID1: from=<a\\x0d\\x0ab\\x7f"
			       "\\x01>, n=7\n",
			       (long)getpid());
	g_assert_true(g_str_has_suffix(text, want));
	/* the file's date in front, then the rest: one line */
	g_assert_true(g_ascii_isdigit(text[0]));
	g_assert_cmpint(strchr(text, '\n') - text + 1, ==, strlen(text));
}

/* Lengths around the stack buffer's size, escapes included (each
 * control character grows fourfold) and far beyond. */
static void
test_every_length(void)
{
	static const gsize lengths[] = {0,    1,    500,  511,  512,
					513,  1990, 2000, 2010, 2020,
					2030, 2040, 2047, 2048, 2049,
					2100, 4096, 100000};
	g_autofree char *dir = NULL;
	g_autofree char *path = log_path(&dir);
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	gsize i;

	g_assert_true(pb_log_open("test", path, NULL));
	for (i = 0; i < G_N_ELEMENTS(lengths); i++) {
		g_autofree char *arg = g_strnfill(lengths[i], 'x');
		if (i % 2 == 1 && lengths[i] > 0)
			arg[lengths[i] / 2] = '\t';
		pb_log_warn(NULL, "%zu:%s.", lengths[i], arg);
	}
	text = read_log(path, dir);
	lines = g_strsplit(text, "\n", -1);
	g_assert_cmpuint(g_strv_length(lines), ==,
			 G_N_ELEMENTS(lengths) + 1);
	for (i = 0; i < G_N_ELEMENTS(lengths); i++) {
		g_autofree char *head =
		    g_strdup_printf("]: %zu:", lengths[i]);
		const char *body = strstr(lines[i], head);
		gsize escapes = i % 2 == 1 && lengths[i] > 0;
		g_assert_nonnull(body);
		body += strlen(head);
		g_assert_cmpuint(strlen(body), ==,
				 lengths[i] + 3 * escapes + 1);
		g_assert_true(g_str_has_suffix(body, "."));
		g_assert_true(escapes == 0 || strstr(body, "\\x09") != NULL);
	}
	g_assert_cmpstr(lines[G_N_ELEMENTS(lengths)], ==, "");
}

/* Forks and waits: the child logs a line (and, when NESTED, forks and
 * waits for a grandchild that logs one too), then _exits. */
static pid_t
fork_logging(gboolean nested)
{
	int status;
	pid_t pid = fork();

	g_assert_cmpint(pid, >=, 0);
	if (pid == 0) {
		pb_log_info(NULL, "child");
		if (nested)
			(void)fork_logging(FALSE);
		_exit(0);
	}
	g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
	g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return pid;
}

/* The pid in each line is the writer's, before and after forks, in a
 * child and a child's child (the pid is cached per process). */
static void
test_pid_across_fork(void)
{
	g_autofree char *dir = NULL;
	g_autofree char *path = log_path(&dir);
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	long pids[4];
	const char *words[4] = {"parent", "child", "child", "parent"};

	g_assert_true(pb_log_open("test", path, NULL));
	pb_log_info(NULL, "parent");
	pids[0] = getpid();
	pids[1] = fork_logging(TRUE);
	pb_log_info(NULL, "parent");
	pids[3] = getpid();
	text = read_log(path, dir);
	lines = g_strsplit(text, "\n", -1);
	g_assert_cmpuint(g_strv_length(lines), ==, 5);
	/* the grandchild's pid is not known here: the line's own, not its
	 * parent's, not ours */
	pids[2] = 0;
	for (guint i = 0; i < 4; i++) {
		const char *open = strstr(lines[i], "test[");
		g_autofree char *tail = NULL;
		long pid;

		g_assert_nonnull(open);
		pid = strtol(open + 5, NULL, 10);
		if (pids[i] != 0)
			g_assert_cmpint(pid, ==, pids[i]);
		else
			g_assert_true(pid > 0 && pid != pids[0] &&
				      pid != pids[1]);
		tail = g_strdup_printf("]: %s", words[i]);
		g_assert_true(g_str_has_suffix(lines[i], tail));
	}
}

/* A prepared line (the deadline's, written from a signal handler):
 * the time it was prepared for, one whole line, escaped like the rest;
 * for syslog, the datagram syslog(3) would send. */
static void
test_prepared(void)
{
	g_autofree char *dir = NULL;
	g_autofree char *path = log_path(&dir);
	g_autofree char *text = NULL;
	g_autofree char *want = NULL;
	g_autofree char *stamp = NULL;
	g_auto(GStrv) lines = NULL;
	PbLogPrepared p = {NULL, 0, -1, FALSE};
	const gint64 when = 1796248867; /* 2026-12-02T22:01:07Z */
	struct tm tm;
	time_t t = (time_t)when;
	char buf[64];

	g_assert_true(pb_log_open("test", path, NULL));
	pb_log_prepare(&p, "QID2", when, "stopped after %ds\r\n", 2);
	pb_log_info(NULL, "before");
	pb_log_emit_prepared(&p);
	pb_log_prepared_clear(&p);
	pb_log_emit_prepared(&p); /* cleared: nothing */
	text = read_log(path, dir);
	g_assert_nonnull(localtime_r(&t, &tm));
	g_assert_cmpuint(strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm),
	                 >, 0);
	want = g_strdup_printf("%s test[%ld]: QID2: stopped after "
	                       "2s\\x0d\\x0a\n",
	                       buf, (long)getpid());
	g_assert_true(g_str_has_suffix(text, want));
	lines = g_strsplit(text, "\n", -1);
	g_assert_cmpuint(g_strv_length(lines), ==, 3); /* 2 and "" */

	g_assert_true(pb_log_open("test", "syslog", NULL));
	pb_log_prepare(&p, "QID3", when, "x");
	g_assert_cmpint(p.fd, ==, -1);
	g_assert_cmpuint(strftime(buf, sizeof buf, "%h %e %T", &tm), >, 0);
	stamp = g_strdup_printf("<20>%s test[%ld]: QID3: x", buf,
	                        (long)getpid());
	g_assert_cmpstr(p.line, ==, stamp);
	g_assert_cmpuint(p.len, ==, strlen(stamp));
	pb_log_prepared_clear(&p);
	g_assert_true(pb_log_open("test", "stderr", NULL));
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/log/escaped", test_escaped);
	g_test_add_func("/log/every-length", test_every_length);
	g_test_add_func("/log/pid-across-fork", test_pid_across_fork);
	g_test_add_func("/log/prepared", test_prepared);
	return g_test_run();
}
