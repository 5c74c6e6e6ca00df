/*
 * self.c - what a process asks the kernel about itself, asked once.
 *
 * Owns the process's copies of its pid and its host's name. A mail
 * program names files after them (queue ids, Maildir unique names, lock
 * files) and writes the pid into every log line: a session did a getpid
 * for each and a uname for every gethostname (glibc's gethostname is a
 * uname), dozens of system calls for one IMAP session. Guarantees: the
 * pid is the caller's own, also in a child forked after it was first
 * read (it is kept per thread and forgotten in the child of every fork
 * by a pthread_atfork handler, registered before the first value is
 * kept); the host name is the one of the first call, as GLib's
 * g_get_host_name() keeps it (a renamed host is seen at the next start
 * of a program).
 */
#include "self.h"

#include <pthread.h>
#include <unistd.h>

/* Thread-local: glibc keeps the main thread's copy in the page of the
 * thread's control block, which fork() writes in the child anyway, so
 * forgetting it there costs no copy-on-write fault. */
static __thread pid_t my_pid;

static void
forget_pid(void)
{
	my_pid = 0;
}

static void
watch_forks(void)
{
	(void)pthread_atfork(NULL, NULL, forget_pid);
}

pid_t
pb_self_pid(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	if (my_pid == 0) {
		(void)pthread_once(&once, watch_forks);
		my_pid = getpid();
	}
	return my_pid;
}

const char *
pb_self_host(void)
{
	static gsize host; /* a char *, never freed: one per process */

	if (g_once_init_enter(&host)) {
		char name[256] = "";

		if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0')
			g_strlcpy(name, "localhost", sizeof name);
		g_once_init_leave(&host, (gsize)g_strdup(name));
	}
	return (const char *)host;
}

void
pb_self_prime(void)
{
	const char *charset;

	(void)pb_self_pid();
	(void)pb_self_host();
	(void)g_get_charset(&charset);
}
