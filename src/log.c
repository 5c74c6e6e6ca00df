/*
 * log.c - one line per event, to syslog (mail facility), stderr or a file.
 *
 * Owns the log target of the process. Guarantees: each event is one
 * write(2) of one whole line (an O_APPEND file shared by many forked
 * sessions never interleaves half lines); control characters in the
 * text are escaped so a peer cannot forge log lines; logging never fails
 * the caller. A log file is opened without following a symlink, only if
 * it is a regular file, and created with mode 0600 (owned by [main] user
 * when a program started as root creates it, pb_log_give, so that the
 * programs running as that user can append to it too). The pid in each
 * line is the writer's own, also in a child forked after the first line
 * (self.c).
 */
#include "log.h"
#include "error.h"
#include "self.h"

#include <errno.h>
#include <fcntl.h>
#include <paths.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

typedef enum { TO_STDERR, TO_SYSLOG, TO_FILE } LogTarget;

static struct {
	LogTarget target;
	int fd;           /* TO_FILE */
	gboolean created; /* ... by pb_log_open */
	char *ident;
	gboolean verbose;
} logger = {TO_STDERR, -1, FALSE, NULL, FALSE};

/* A log file: appended to, never through a symlink, only a regular file
 * (a FIFO would block us); created 0600. */
static int
open_file(const char *path, gboolean *created)
{
	const int flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NOCTTY |
	                  O_NONBLOCK | O_CLOEXEC;
	struct stat st;
	int fd;

	/* O_EXCL first, to know whether it is ours to hand over */
	fd = open(path, flags | O_CREAT | O_EXCL, 0600);
	*created = fd >= 0;
	if (fd < 0 && errno == EEXIST)
		fd = open(path, flags);
	/* a regular file, or /dev/null to discard (never a FIFO that would
	 * block or a device someone else chose) */
	if (fd >= 0 && (fstat(fd, &st) < 0 ||
	                !(S_ISREG(st.st_mode) ||
	                  (S_ISCHR(st.st_mode) &&
	                   g_str_equal(path, "/dev/null"))))) {
		close(fd);
		errno = EINVAL; /* "Invalid argument": not a regular file */
		return -1;
	}
	return fd;
}

gboolean
pb_log_open(const char *ident, const char *target, GError **error)
{
	g_free(logger.ident);
	logger.ident = g_strdup(ident);
	(void)pb_self_pid(); /* watched from here on, before any fork */
	if (logger.fd >= 0)
		close(logger.fd);
	logger.fd = -1;
	logger.created = FALSE;
	if (g_str_equal(target, "stderr")) {
		logger.target = TO_STDERR;
	} else if (g_str_equal(target, "syslog")) {
		openlog(logger.ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
		logger.target = TO_SYSLOG;
	} else {
		logger.fd = open_file(target, &logger.created);
		if (logger.fd < 0) {
			int saved = errno;
			logger.target = TO_STDERR;
			g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
			            "cannot open the log %s: %s", target,
			            g_strerror(saved));
			return FALSE;
		}
		logger.target = TO_FILE;
	}
	return TRUE;
}

gboolean
pb_log_give(uid_t uid, gid_t gid)
{
	if (logger.fd < 0 || !logger.created)
		return TRUE;
	return fchown(logger.fd, uid, gid) == 0;
}

gboolean
pb_log_created(void)
{
	return logger.fd >= 0 && logger.created;
}

void
pb_log_set_verbose(gboolean verbose)
{
	logger.verbose = verbose;
}

/* "ident[pid]: " plus, for a file, the date of WHEN in front. */
static void
add_prefix(GString *line, gboolean with_date, time_t when)
{
	if (with_date) {
		char stamp[64];
		struct tm tm;
		if (localtime_r(&when, &tm) != NULL &&
		    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S%z ", &tm) >
		        0)
			g_string_append(line, stamp);
	}
	g_string_append_printf(
	    line, "%s[%ld]: ", logger.ident ? logger.ident : g_get_prgname(),
	    (long)pb_self_pid());
}

/* Appends TEXT with control characters escaped. */
static void
append_clean(GString *line, const char *text)
{
	for (const guchar *p = (const guchar *)text; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			g_string_append_printf(line, "\\x%02x", *p);
		else
			g_string_append_c(line, (char)*p);
	}
}

static void
write_line(int fd, const GString *line)
{
	/* one write: O_APPEND keeps whole lines whole */
	while (write(fd, line->str, line->len) < 0 && errno == EINTR)
		;
}

static void G_GNUC_PRINTF(3, 0)
    emit(int priority, const char *qid, const char *fmt, va_list ap)
{
	int saved = errno;
	g_autofree char *text = g_strdup_vprintf(fmt, ap);
	g_autoptr(GString) body = g_string_new(NULL);
	g_autoptr(GString) line = g_string_new(NULL);

	if (qid && *qid)
		g_string_append_printf(body, "%s: ", qid);
	append_clean(body, text);
	if (logger.target == TO_SYSLOG)
		syslog(priority, "%s", body->str);
	if (logger.target != TO_SYSLOG || logger.verbose) {
		add_prefix(line, logger.target == TO_FILE, time(NULL));
		g_string_append_len(line, body->str, body->len);
		g_string_append_c(line, '\n');
		if (logger.target == TO_FILE)
			write_line(logger.fd, line);
		if (logger.target != TO_FILE || logger.verbose)
			write_line(STDERR_FILENO, line);
	}
	errno = saved;
}

void
pb_log_info(const char *qid, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(LOG_INFO, qid, fmt, ap);
	va_end(ap);
}

void
pb_log_warn(const char *qid, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(LOG_WARNING, qid, fmt, ap);
	va_end(ap);
}

void
pb_log_error(const char *qid, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(LOG_ERR, qid, fmt, ap);
	va_end(ap);
}

/* ---- lines written from a signal handler ---- */

void
pb_log_prepare(PbLogPrepared *p, const char *qid, gint64 when,
               const char *fmt, ...)
{
	g_autofree char *text = NULL;
	g_autoptr(GString) body = g_string_new(NULL);
	GString *line = g_string_new(NULL);
	va_list ap;

	pb_log_prepared_clear(p);
	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (qid && *qid)
		g_string_append_printf(body, "%s: ", qid);
	append_clean(body, text);
	p->fd = -1;
	if (logger.target == TO_SYSLOG) {
		/* what syslog(3) sends: "<PRI>Mmm dd hh:mm:ss ident[pid]: " */
		char stamp[32];
		time_t t = (time_t)when;
		struct tm tm;

		g_string_append_printf(line, "<%d>", LOG_MAIL | LOG_WARNING);
		if (localtime_r(&t, &tm) != NULL &&
		    strftime(stamp, sizeof stamp, "%h %e %T ", &tm) > 0)
			g_string_append(line, stamp);
		add_prefix(line, FALSE, t);
		g_string_append_len(line, body->str, body->len);
	} else {
		add_prefix(line, logger.target == TO_FILE, (time_t)when);
		g_string_append_len(line, body->str, body->len);
		g_string_append_c(line, '\n');
		p->fd = logger.target == TO_FILE ? logger.fd : STDERR_FILENO;
	}
	p->echo = logger.verbose && logger.target == TO_FILE;
	p->len = line->len;
	p->line = g_string_free(line, FALSE);
}

void
pb_log_prepared_clear(PbLogPrepared *p)
{
	g_clear_pointer(&p->line, g_free);
	p->len = 0;
	p->fd = -1;
	p->echo = FALSE;
}

/* Only calls that are async-signal-safe (POSIX): socket, connect, send,
 * write, close. */
void
pb_log_emit_prepared(const PbLogPrepared *p)
{
	static const struct sockaddr_un dev_log = {AF_UNIX, _PATH_LOG};
	int saved = errno;

	if (p->line == NULL)
		return;
	if (p->fd >= 0) {
		(void)write(p->fd, p->line, p->len);
	} else {
		int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		gsize len = p->len;

		if (s >= 0 && connect(s, (const struct sockaddr *)&dev_log,
		                      sizeof dev_log) < 0 &&
		    errno == EPROTOTYPE) {
			/* a stream /dev/log: lines end with a NUL there */
			close(s);
			s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			len++;
			if (s >= 0 &&
			    connect(s, (const struct sockaddr *)&dev_log,
			            sizeof dev_log) < 0) {
				close(s);
				s = -1;
			}
		}
		if (s >= 0) {
			(void)send(s, p->line, len, MSG_NOSIGNAL);
			close(s);
		}
	}
	if (p->echo)
		(void)write(STDERR_FILENO, p->line, p->len);
	errno = saved;
}
