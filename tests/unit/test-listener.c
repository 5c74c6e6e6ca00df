/* test-listener.c - the listener's pieces that need no network: client
 * keys, GLib's messages routed to the mail log, and stderr shielded from
 * an inetd client; and, on a loopback socket, a connection slot given back
 * by a child that goes on running. */
#include "listener.h"
#include "log.h"

#include <glib-unix.h>

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void
test_client_key(void)
{
	static const struct {
		const char *ip, *key;
	} cases[] = {
	    {"192.0.2.1", "192.0.2.1"},
	    {"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
	    {"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
	    {"::1", "::/64"},
	    {"", ""},
	};
	char key[80];

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		pb_listener_client_key(cases[i].ip, key, sizeof(key));
		g_assert_cmpstr(key, ==, cases[i].key);
	}
}

/* The session of an inetd-style run: it provokes the GLib-CRITICAL of
 * issue 12 (a range 1..0) and a plain message. */
static gboolean
glib_talks(void *ctx, int rfd, int wfd, const PbPeer *peer)
{
	guint64 n;

	g_assert_false(g_ascii_string_to_unsigned("1", 10, 1, 0, &n, NULL));
	g_message("a message from %s", "GLib");
	return FALSE;
}

static void
test_glib_messages_to_log(void)
{
	g_autofree char *dir = NULL;
	g_autofree char *path = NULL;
	g_autofree char *log = NULL;

	if (g_test_subprocess()) {
		PbListenLimits limits = {.max_connections = 1};
		const char *logfile = g_getenv("TEST_LOG");

		/* as in a daemon: criticals are not fatal */
		g_log_set_always_fatal(G_LOG_FATAL_MASK);
		g_assert_true(pb_log_open("test", logfile, NULL));
		g_assert_true(pb_listener_run(NULL, &limits, NULL, glib_talks,
		                              NULL, NULL));
		return;
	}
	dir = g_dir_make_tmp("test-listener-XXXXXX", NULL);
	path = g_build_filename(dir, "log", NULL);
	g_setenv("TEST_LOG", path, TRUE);
	g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
	g_test_trap_assert_passed();
	g_test_trap_assert_stderr_unmatched("*CRITICAL*");
	g_test_trap_assert_stderr_unmatched("*GLib*");
	g_test_trap_assert_stdout_unmatched("*GLib*");
	g_assert_true(g_file_get_contents(path, &log, NULL, NULL));
	g_assert_nonnull(strstr(log, "GLib: g_ascii_string_to_unsigned: "
	                             "assertion 'min <= max' failed"));
	g_assert_nonnull(strstr(log, "a message from GLib"));
	unlink(path);
	rmdir(dir);
}

/* fd 0 and fd 2 the same socket (inetd): after the shield nothing
 * written to stderr reaches the other end. */
static void
test_shield_stderr(void)
{
	int sv[2];
	char buf[64];

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
	if (fork() == 0) {
		dup2(sv[1], 0);
		dup2(sv[1], 2);
		close(sv[0]);
		close(sv[1]);
		if (!pb_listener_shield_stderr())
			_exit(1);
		(void)!write(2, "leak\n", 5);
		g_printerr("leak too\n");
		_exit(0);
	}
	close(sv[1]);
	/* the child's end closes when it exits: EOF, nothing before */
	g_assert_cmpint(read(sv[0], buf, sizeof(buf)), ==, 0);
	close(sv[0]);
	/* not the same socket: stderr stays as it is */
	g_assert_false(pb_listener_shield_stderr());
}

/* The session of the release test: a greeting, the client's EOF, the slot
 * given back, then a wait on the pipe HOLD (its write end kept by the
 * test) as smtpd's local delivery would go on working. */
static int hold = -1;

static gboolean
greet_release_hold(void *ctx, int rfd, int wfd, const PbPeer *peer)
{
	char c;

	g_assert_cmpint(write(wfd, "hi", 2), ==, 2);
	while (read(rfd, &c, 1) > 0)
		;
	close(rfd);
	if (!pb_listener_release(peer))
		_exit(3);
	(void)!read(hold, &c, 1);
	return FALSE;
}

/* A greeting from the listener on port PORT within 5 s. */
static gboolean
greeted(guint16 port, int *sock)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct pollfd p;
	char buf[2];

	*sock = socket(AF_INET, SOCK_STREAM, 0);
	g_assert_cmpint(connect(*sock, (struct sockaddr *)&sin, sizeof(sin)),
	                ==, 0);
	p.fd = *sock;
	p.events = POLLIN;
	return poll(&p, 1, 5000) == 1 && read(*sock, buf, 2) == 2;
}

/* max_connections 1: a child done with its connection (released) lets
 * the next client in while it still runs; outside a listener (inetd
 * style) there is nothing to release. */
static void
test_release_frees_the_slot(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	PbPeer inetd = {.slot = 0};
	int lfd = socket(AF_INET, SOCK_STREAM, 0), pipefd[2], a, b, status;
	gboolean first, second;
	pid_t pid;

	g_assert_false(pb_listener_release(&inetd));
	g_assert_cmpint(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
	g_assert_cmpint(listen(lfd, 8), ==, 0);
	g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&sin, &len), ==, 0);
	g_assert_cmpint(pipe(pipefd), ==, 0);
	if ((pid = fork()) == 0) {
		PbListenLimits limits = {.max_connections = 1, .busy = ""};
		char pidtext[16];

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		close(pipefd[1]);
		hold = pipefd[0];
		/* systemd's way: the socket as fd 3 */
		dup2(lfd, 3);
		g_snprintf(pidtext, sizeof(pidtext), "%d", (int)getpid());
		g_setenv("LISTEN_FDS", "1", TRUE);
		g_setenv("LISTEN_PID", pidtext, TRUE);
		_exit(pb_listener_run(NULL, &limits, NULL, greet_release_hold,
		                      NULL, NULL)
		          ? 0
		          : 1);
	}
	close(lfd);
	close(pipefd[0]);
	first = greeted(ntohs(sin.sin_port), &a);
	close(a); /* its child gives the slot back, then waits on the pipe */
	second = greeted(ntohs(sin.sin_port), &b);
	close(b);
	/* the listener stopped before any assertion can end this test */
	close(pipefd[1]);
	kill(pid, SIGTERM);
	g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
	g_assert_true(first);
	g_assert_true(second);
	g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The session of the max_use tests: the greeting is this process's pid
 * and the client's address; then the client's bytes until EOF; a client
 * that sent "x" makes the process serve no one else. */
static gboolean
greet_pid(void *ctx, int rfd, int wfd, const PbPeer *peer)
{
	char c, line[96];
	gboolean again = TRUE;
	int n = g_snprintf(line, sizeof(line), "%d %s\n", (int)getpid(),
	                   peer->ip);

	/* the listener gives sessions non-blocking sockets */
	g_assert_true(g_unix_set_fd_nonblocking(rfd, FALSE, NULL));
	g_assert_cmpint(write(wfd, line, (gsize)n), ==, n);
	while (read(rfd, &c, 1) > 0)
		again = again && c != 'x';
	close(rfd);
	return again;
}

/* A listener on a loopback port with LIMITS, in a child of the test. */
static pid_t
start_listener(const PbListenLimits *limits, guint16 *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	pid_t pid;

	g_assert_cmpint(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
	g_assert_cmpint(listen(lfd, 8), ==, 0);
	g_assert_cmpint(getsockname(lfd, (struct sockaddr *)&sin, &len), ==, 0);
	*port = ntohs(sin.sin_port);
	if ((pid = fork()) == 0) {
		char pidtext[16];

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(lfd, 3);
		g_snprintf(pidtext, sizeof(pidtext), "%d", (int)getpid());
		g_setenv("LISTEN_FDS", "1", TRUE);
		g_setenv("LISTEN_PID", pidtext, TRUE);
		_exit(pb_listener_run(NULL, limits, NULL, greet_pid, NULL, NULL)
		          ? 0
		          : 1);
	}
	close(lfd);
	return pid;
}

/* One connection: the pid of the process that served it (0: no
 * greeting within 5 s); SEND is written before the client closes. */
static int
served_by(guint16 port, const char *send)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int sock = socket(AF_INET, SOCK_STREAM, 0), pid = 0;
	struct pollfd p = {.fd = sock, .events = POLLIN};
	char buf[96];
	ssize_t n = 0;

	g_assert_cmpint(connect(sock, (struct sockaddr *)&sin, sizeof(sin)),
	                ==, 0);
	if (poll(&p, 1, 5000) == 1 && (n = read(sock, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = '\0';
		/* the address given to a kept process is the client's */
		g_assert_nonnull(strstr(buf, " 127.0.0.1\n"));
		pid = atoi(buf);
	}
	if (send != NULL)
		g_assert_cmpint(write(sock, send, strlen(send)), ==,
		                (int)strlen(send));
	close(sock);
	return pid;
}

/* TRUE once PID is gone (reaped by its listener) within 5 s. */
static gboolean
ended(int pid)
{
	for (guint i = 0; i < 500; i++) {
		if (kill(pid, 0) < 0)
			return TRUE;
		g_usleep(10000);
	}
	return FALSE;
}

static void
stop_listener(pid_t pid)
{
	int status;

	kill(pid, SIGTERM);
	g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
	g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* max_use 3, one connection at a time (max_connections 1: each next
 * client gets in only once the slot is given back): one process serves
 * three clients one after the other and then ends; the fourth gets a
 * new one. A session that says it must not serve again (here "x"; in
 * smtpd, one that saw AUTH) ends its process. */
static void
test_max_use(void)
{
	PbListenLimits limits = {.max_connections = 1, .busy = "",
	                         .max_use = 3, .max_idle = 60};
	guint16 port;
	pid_t listener = start_listener(&limits, &port);
	int p1 = served_by(port, "a"), p2 = served_by(port, NULL),
	    p3 = served_by(port, "b"), p4 = served_by(port, "x"),
	    p5 = served_by(port, NULL);

	g_assert_cmpint(p1, >, 0);
	g_assert_cmpint(p2, ==, p1);
	g_assert_cmpint(p3, ==, p1);
	g_assert_true(ended(p1));
	g_assert_cmpint(p4, >, 0);
	g_assert_cmpint(p4, !=, p1);
	g_assert_true(ended(p4));
	g_assert_cmpint(p5, >, 0);
	g_assert_cmpint(p5, !=, p4);
	stop_listener(listener);
	/* an idle kept process ends with its listener */
	g_assert_true(ended(p5));
}

/* Two clients at once get two processes; both are kept, and the next
 * clients (one after the other) are served by them. max_connections 2:
 * the listener accepts only when a slot is free, and a kept process
 * gives its slot back and says it is ready in one write, so one of the
 * two is always idle then. */
static void
test_max_use_parallel(void)
{
	PbListenLimits limits = {.max_connections = 2, .busy = "",
	                         .max_use = 10, .max_idle = 60};
	guint16 port;
	pid_t listener = start_listener(&limits, &port);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int held = socket(AF_INET, SOCK_STREAM, 0), p1, p2, p3;
	char buf[96];
	struct pollfd p = {.fd = held, .events = POLLIN};
	ssize_t n;

	g_assert_cmpint(connect(held, (struct sockaddr *)&sin, sizeof(sin)),
	                ==, 0);
	g_assert_cmpint(poll(&p, 1, 5000), ==, 1);
	n = read(held, buf, sizeof(buf) - 1);
	g_assert_cmpint(n, >, 0);
	buf[n] = '\0';
	p1 = atoi(buf);
	/* the first process is busy: a second one serves */
	p2 = served_by(port, NULL);
	g_assert_cmpint(p2, !=, p1);
	close(held);
	/* both idle now; whichever serves, it is one of them */
	for (guint i = 0; i < 4; i++) {
		p3 = served_by(port, NULL);
		g_assert_true(p3 == p1 || p3 == p2);
	}
	stop_listener(listener);
	g_assert_true(ended(p1));
	g_assert_true(ended(p2));
}

/* max_idle 1: a kept process idle for a second is ended by the
 * listener, and the next client gets a new one. */
static void
test_max_idle(void)
{
	PbListenLimits limits = {.max_connections = 2, .busy = "",
	                         .max_use = 100, .max_idle = 1};
	guint16 port;
	pid_t listener = start_listener(&limits, &port);
	int p1 = served_by(port, NULL), p2;

	g_assert_cmpint(p1, >, 0);
	g_assert_true(ended(p1));
	p2 = served_by(port, NULL);
	g_assert_cmpint(p2, >, 0);
	g_assert_cmpint(p2, !=, p1);
	stop_listener(listener);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/listener/client-key", test_client_key);
	g_test_add_func("/listener/glib-messages-to-log",
	                test_glib_messages_to_log);
	g_test_add_func("/listener/shield-stderr", test_shield_stderr);
	g_test_add_func("/listener/release-frees-the-slot",
	                test_release_frees_the_slot);
	g_test_add_func("/listener/max-use", test_max_use);
	g_test_add_func("/listener/max-use-parallel", test_max_use_parallel);
	g_test_add_func("/listener/max-idle", test_max_idle);
	return g_test_run();
}
