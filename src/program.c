/*
 * program.c - the common start of every pillarbox program.
 *
 * Guarantees: a program that got past pb_program_start() has a valid
 * configuration, an open log and, when it was started as root and is not
 * a daemon that still has to bind its sockets, runs as [main] user.
 *
 * It takes nothing from its caller that could change what it does
 * (DESIGN.md, guarantee 6): fds 0, 1 and 2 are open (on /dev/null when
 * the caller closed them, so no file we open lands there), the umask is
 * 077 (every file and folder is created with an explicit mode on top),
 * no signal is ignored or blocked, no interval timer runs. A program
 * started set-user-id by someone else also sheds the environment (TZ
 * kept: it only changes how times are written, and the C library refuses
 * zone files outside the system's to such a program), GLib's G_DEBUG,
 * the caller's other descriptors and core dumps, raises the resource
 * limits to their hard values and reads the configuration only through
 * pb_config_load_trusted().
 */
#include "program.h"
#include "error.h"
#include "log.h"
#include "privs.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <unistd.h>

/* The least a delivery needs: a caller who can only lower the limits
 * below these (hard limits) gets no delivery in their process. */
#define MIN_FILES 256

static gboolean sanitized;
static gboolean limits_safe = TRUE;

gboolean
pb_program_setuid(void)
{
	uid_t r = getuid();

	return r != 0 && r != geteuid();
}

/* A descriptor the caller closed would be taken by the next open() and
 * receive what we print on stdout or stderr. */
static void
open_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		if (open("/dev/null", O_RDWR) != fd)
			abort(); /* nothing safe to say it with */
	}
}

/* The signals ignored at exec, as the kernel reports them: the SigIgn
 * mask of /proc/self/status (bit N-1 for signal N), read only from a
 * procfs; FALSE when it cannot be (no /proc: every signal is asked). One
 * read instead of 64 sigaction calls at every start (each a trap to the
 * hypervisor on a paravirtualised guest; inetd execs smtpd per
 * connection). */
static gboolean
ignored_signals(guint64 *mask)
{
	char buf[4096], hex[17];
	struct statfs fs;
	const char *line;
	ssize_t n;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return FALSE;
	if (fstatfs(fd, &fs) < 0 || fs.f_type != PROC_SUPER_MAGIC ||
	    (n = read(fd, buf, sizeof(buf) - 1)) <= 0) {
		close(fd);
		return FALSE;
	}
	close(fd);
	buf[n] = '\0';
	/* "SigIgn:\t" and 16 hex digits */
	line = strstr(buf, "\nSigIgn:\t");
	if (line == NULL || strlen(line + 9) < 17 || line[9 + 16] != '\n')
		return FALSE;
	memcpy(hex, line + 9, 16);
	hex[16] = '\0';
	return g_ascii_string_to_unsigned(hex, 16, 0, G_MAXUINT64, mask, NULL);
}

/* Dispositions and the mask survive exec: SIG_IGN for SIGTERM would make
 * us unstoppable, for SIGCHLD lose our children's status. */
static void
reset_signals(void)
{
	static const struct itimerval zero;
	guint64 ignored = ~G_GUINT64_CONSTANT(0);
	sigset_t none;

	if (!ignored_signals(&ignored))
		ignored = ~G_GUINT64_CONSTANT(0); /* ask for each */
	for (int sig = 1; sig < NSIG && sig <= 64; sig++) {
		struct sigaction sa;
		if (!(ignored & (G_GUINT64_CONSTANT(1) << (sig - 1))))
			continue;
		if (sigaction(sig, NULL, &sa) == 0 &&
		    sa.sa_handler == SIG_IGN) {
			sa.sa_handler = SIG_DFL;
			(void)sigaction(sig, &sa, NULL);
		}
	}
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	(void)setitimer(ITIMER_REAL, &zero, NULL);
	(void)setitimer(ITIMER_VIRTUAL, &zero, NULL);
	(void)setitimer(ITIMER_PROF, &zero, NULL);
}

/* Soft limit up to the hard one (to CAP at most, when it is not below
 * it already); FALSE when the hard one is below MIN (RLIM_INFINITY: no
 * limit is enough). */
static gboolean
raise_limit(int resource, rlim_t min, rlim_t cap)
{
	struct rlimit rl;

	if (getrlimit(resource, &rl) < 0)
		return FALSE;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur < MIN(rl.rlim_max, cap))
		rl.rlim_cur = MIN(rl.rlim_max, cap);
	(void)setrlimit(resource, &rl);
	return rl.rlim_max == RLIM_INFINITY ||
	       (min != RLIM_INFINITY && rl.rlim_max >= min);
}

/* A caller's ulimit -f, -t, -v or -n would stop a delivery between the
 * remote server's 250 and our record of it: sent again and again. */
static gboolean
reset_limits(void)
{
	struct rlimit none = {0, 0};
	gboolean ok = TRUE;

	(void)setrlimit(RLIMIT_CORE, &none);
	ok &= raise_limit(RLIMIT_FSIZE, RLIM_INFINITY, RLIM_INFINITY);
	ok &= raise_limit(RLIMIT_CPU, RLIM_INFINITY, RLIM_INFINITY);
	ok &= raise_limit(RLIMIT_AS, RLIM_INFINITY, RLIM_INFINITY);
	ok &= raise_limit(RLIMIT_DATA, RLIM_INFINITY, RLIM_INFINITY);
	ok &= raise_limit(RLIMIT_STACK, 8 * 1024 * 1024, 8 * 1024 * 1024);
	ok &= raise_limit(RLIMIT_NOFILE, MIN_FILES, 4096);
	return ok;
}

/* What is left of the caller's environment: TZ only. GLib read G_DEBUG
 * before main(); its fatal-warnings and fatal-criticals are undone. */
static void
reset_environment(void)
{
	g_autofree char *tz = g_strdup(g_getenv("TZ"));

	(void)clearenv();
	if (tz != NULL)
		(void)setenv("TZ", tz, 1);
	(void)setenv("PATH", "/usr/bin:/bin", 1);
	(void)g_log_set_always_fatal(G_LOG_FATAL_MASK);
}

void
pb_program_sanitize(void)
{
	if (sanitized)
		return;
	sanitized = TRUE;
	open_std_fds();
	umask(077);
	reset_signals();
	if (!pb_program_setuid())
		return;
	reset_environment();
	/* the caller's descriptors are theirs, not ours to keep */
	(void)close_range(3, ~0U, 0);
	limits_safe = reset_limits();
	/* past a hard limit the caller set, a write fails (EFBIG) and is
	 * reported rather than killing us half-way */
	signal(SIGXFSZ, SIG_IGN);
}

gboolean
pb_program_limits_safe(void)
{
	return limits_safe;
}

void
pb_program_ignore_terminal(void)
{
	static const int sigs[] = {SIGHUP,  SIGINT,  SIGQUIT,
	                           SIGTSTP, SIGTTIN, SIGTTOU};

	for (gsize i = 0; i < G_N_ELEMENTS(sigs); i++)
		signal(sigs[i], SIG_IGN);
}

void
pb_program_detach(void)
{
	int null;

	(void)setsid();
	if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	umask(077);
	pb_program_ignore_terminal();
}

/* A log file root creates belongs to USER, who runs runq and sendmail.
 * The user is looked up only then: every start of smtpd, pop3d and imapd
 * under inetd would otherwise pay a second passwd lookup (NSS, nscd's
 * socket, /etc/passwd) for nothing. */
static gboolean
give_log(const char *user, GError **error)
{
	struct passwd *pw;

	if (geteuid() != 0 || !pb_log_created() ||
	    (pw = getpwnam(user)) == NULL)
		return TRUE; /* pb_privs_drop() says what is wrong */
	if (pb_log_give(pw->pw_uid, pw->pw_gid))
		return TRUE;
	return pb_throw_errno(error, "cannot hand the log to %s", user);
}

PbConfig *
pb_program_start(const char *ident, const char *conf, gboolean to_stderr,
                 gboolean keep_root, GError **error)
{
	g_autoptr(PbConfig) cfg = NULL;

	pb_program_sanitize();
	cfg = pb_program_setuid()
	          ? pb_config_load_trusted(conf, geteuid(), error)
	          : pb_config_load(conf, error);
	if (cfg == NULL)
		return NULL;
	if (!pb_log_open(ident, to_stderr ? "stderr" : cfg->log, error) ||
	    !give_log(cfg->user, error))
		return NULL;
	if (!keep_root && !pb_privs_drop(cfg->user, error))
		return NULL;
	return g_steal_pointer(&cfg);
}

int
pb_program_fail(const char *ident, const GError *error)
{
	fprintf(stderr, "%s: %s\n", ident, error->message);
	return pb_error_exit_code(error);
}

gboolean
pb_program_options(GOptionContext *ctx, int *argc, char ***argv)
{
	g_autoptr(GError) error = NULL;

	pb_program_sanitize();
	if (g_option_context_parse(ctx, argc, argv, &error))
		return TRUE;
	fprintf(stderr, "%s: %s\n", g_get_prgname(), error->message);
	return FALSE;
}

int
pb_program_print(const char *ident, const GString *out)
{
	if (fwrite(out->str, 1, out->len, stdout) != out->len ||
	    fflush(stdout) != 0) {
		fprintf(stderr, "%s: cannot write to standard output\n", ident);
		return PB_EX_IOERR;
	}
	return PB_EX_OK;
}
