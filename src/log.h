/*
 * log.h - one line per event, to syslog (mail facility), stderr or a file.
 *
 * Lines read like Postfix's: "QUEUEID: key=value, key=value" (or without
 * the id when there is none). Never log a password. Logging never fails
 * the caller: a write error is ignored.
 */
#ifndef PB_LOG_H
#define PB_LOG_H

#include <glib.h>
#include <sys/types.h>

/* IDENT is the program name ("smtpd"); TARGET is "syslog", "stderr" or a
 * file path (appended to). Before pb_log_open() lines go to stderr. */
gboolean pb_log_open(const char *ident, const char *target, GError **error);

/* Hands the log file to UID:GID if pb_log_open() created it (a program
 * started as root, for the programs that run as [main] user). */
gboolean pb_log_give(uid_t uid, gid_t gid);

/* TRUE if pb_log_open() created the log file (pb_log_give has work). */
gboolean pb_log_created(void);

/* Also echo every line to stderr (runq -v). */
void pb_log_set_verbose(gboolean verbose);

void pb_log_info(const char *qid, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void pb_log_warn(const char *qid, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void pb_log_error(const char *qid, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* A line prepared now and written later, where nothing may allocate or
 * take a lock (a signal handler that ends the process): it carries the
 * time WHEN (seconds since the epoch), a warning, and goes where the
 * other lines go. pb_log_emit_prepared() is async-signal-safe: one
 * write(2) (a file, stderr), or one datagram to syslog's socket. */
typedef struct {
	char *line;
	gsize len;
	int fd;          /* the log file or stderr; -1: syslog */
	gboolean echo;   /* to stderr as well (pb_log_set_verbose) */
} PbLogPrepared;

void pb_log_prepare(PbLogPrepared *p, const char *qid, gint64 when,
                    const char *fmt, ...) G_GNUC_PRINTF(4, 5);
void pb_log_prepared_clear(PbLogPrepared *p);
void pb_log_emit_prepared(const PbLogPrepared *p);

#endif
