/* test-listener.c - the listener's pieces that need no network: client
 * keys, GLib's messages routed to the mail log, and stderr shielded from
 * an inetd client; and, on a loopback socket, a connection slot given back
 * by a child that goes on running. */
#include "listener.h"
#include "log.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
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
static void
glib_talks(void *ctx, int rfd, int wfd, const PbPeer *peer)
{
	guint64 n;

	g_assert_false(g_ascii_string_to_unsigned("1", 10, 1, 0, &n, NULL));
	g_message("a message from %s", "GLib");
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

static void
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
	return g_test_run();
}
