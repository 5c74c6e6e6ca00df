/* tests/bench/procs.c - the machine's own baselines for scripts/bench, and
 * the reaper under which it runs inetd-style servers.
 *
 * Owns: nothing of pillarbox; compiled by scripts/bench with cc into its
 * temporary folder (never installed, never linked with pillarbox).
 *
 *   procs fork N     N times fork + _exit, each waited for
 *   procs exec N     N times fork + exec /bin/true, each waited for
 *   procs run N PROG [ARG...]
 *                    N times fork + exec PROG with /dev/null as its
 *                    stdin, stdout and stderr (an inetd service that gets
 *                    EOF at once: the cost of starting and ending it)
 *       prints "cpu_ms FAULTS": CPU (user + system, parent and child) and
 *       minor page faults (parent and child) per operation, from
 *       getrusage(RUSAGE_SELF) and getrusage(RUSAGE_CHILDREN) around the
 *       loop: the cost a listener or an inetd pays for a process that
 *       does nothing, on this machine, now.
 *   procs reap CMD [ARG...]
 *       runs CMD as a child subreaper (PR_SET_CHILD_SUBREAPER): whatever
 *       CMD's children leave behind (a session's detached delivery, once
 *       the session has exited) is reparented here and reaped here, so
 *       this process's cutime/cstime and cminflt hold all of the work of
 *       the tree. SIGTERM and SIGINT are passed on to CMD; it exits when
 *       CMD and every orphan have ended.
 *
 * Guarantees: no output but the one line (fork, exec); exit status 0 on
 * success, 2 on a usage error, 1 when a system call fails. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static double
ms(const struct rusage *a, const struct rusage *b)
{
	return (double)(b->ru_utime.tv_sec - a->ru_utime.tv_sec +
	                b->ru_stime.tv_sec - a->ru_stime.tv_sec) *
	           1e3 +
	       (double)(b->ru_utime.tv_usec - a->ru_utime.tv_usec +
	                b->ru_stime.tv_usec - a->ru_stime.tv_usec) /
	           1e3;
}

/* The child: _exit at once (ARGV NULL), or exec ARGV on /dev/null. */
static void
child_exec(char **argv)
{
	int null;

	if (argv == NULL)
		_exit(0);
	if ((null = open("/dev/null", O_RDWR)) < 0)
		_exit(126);
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	if (null > 2)
		close(null);
	execv(argv[0], argv);
	_exit(127);
}

static int
baseline(long n, char **argv)
{
	struct rusage s0, s1, c0, c1;

	getrusage(RUSAGE_SELF, &s0);
	getrusage(RUSAGE_CHILDREN, &c0);
	for (long i = 0; i < n; i++) {
		int status;
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0)
			child_exec(argv);
		while (waitpid(pid, &status, 0) < 0)
			if (errno != EINTR) {
				perror("waitpid");
				return 1;
			}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "procs: the child failed\n");
			return 1;
		}
	}
	getrusage(RUSAGE_SELF, &s1);
	getrusage(RUSAGE_CHILDREN, &c1);
	printf("%.4f %.2f\n", (ms(&s0, &s1) + ms(&c0, &c1)) / (double)n,
	       (double)(s1.ru_minflt - s0.ru_minflt + c1.ru_minflt -
	                c0.ru_minflt) /
	           (double)n);
	return 0;
}

static volatile sig_atomic_t child;

static void
pass_on(int sig)
{
	if (child > 0)
		kill(child, sig);
}

static int
reap(char **argv)
{
	struct sigaction sa = {.sa_handler = pass_on};
	int status, main_status = 1;
	pid_t pid;

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		perror("prctl");
		return 1;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if ((pid = fork()) < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		execvp(argv[0], argv);
		perror(argv[0]);
		_exit(127);
	}
	child = pid;
	while ((pid = wait(&status)) != -1 || errno == EINTR)
		if (pid == child) {
			main_status =
			    WIFEXITED(status) ? WEXITSTATUS(status) : 0;
			child = 0;
		}
	return main_status;
}

int
main(int argc, char **argv)
{
	static char *true_argv[] = {"/bin/true", NULL};

	if (argc == 3 && strcmp(argv[1], "fork") == 0)
		return baseline(atol(argv[2]), NULL);
	if (argc == 3 && strcmp(argv[1], "exec") == 0)
		return baseline(atol(argv[2]), true_argv);
	if (argc >= 4 && strcmp(argv[1], "run") == 0)
		return baseline(atol(argv[2]), argv + 3);
	if (argc >= 3 && strcmp(argv[1], "reap") == 0)
		return reap(argv + 2);
	fprintf(stderr, "usage: procs fork N | procs exec N | "
	                "procs run N PROG [ARG...] | procs reap CMD...\n");
	return 2;
}
