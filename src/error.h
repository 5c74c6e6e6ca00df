/*
 * error.h - the one error domain of pillarbox, and small helpers every
 * module shares.
 *
 * PB_ERROR codes say what the caller should do, not where it happened:
 * TEMP (try again later: 4xx, exit 75), PERM (will never work: 5xx),
 * CONFIG (exit 78), USAGE (exit 64), DATA (bad input: exit 65),
 * NOUSER (exit 67), BUSY (someone else holds the lock: skip it),
 * NOTFOUND (the thing is gone), TIMEOUT and CLOSED (the peer stalled or
 * hung up). Only bin/ turns an error into an exit code.
 */
#ifndef PB_ERROR_H
#define PB_ERROR_H

#include <glib.h>

#define PB_ERROR (pb_error_quark())

typedef enum {
	PB_ERROR_TEMP,
	PB_ERROR_PERM,
	PB_ERROR_CONFIG,
	PB_ERROR_USAGE,
	PB_ERROR_DATA,
	PB_ERROR_NOUSER,
	PB_ERROR_BUSY,
	PB_ERROR_NOTFOUND,
	PB_ERROR_TIMEOUT,
	PB_ERROR_CLOSED,
} PbErrorCode;

/* sysexits.h values, spelled out so bin/ need not include it */
enum {
	PB_EX_OK = 0,
	PB_EX_USAGE = 64,
	PB_EX_DATAERR = 65,
	PB_EX_NOUSER = 67,
	PB_EX_SOFTWARE = 70,
	PB_EX_OSERR = 71,
	PB_EX_CANTCREAT = 73,
	PB_EX_IOERR = 74,
	PB_EX_TEMPFAIL = 75,
	PB_EX_NOPERM = 77,
	PB_EX_CONFIG = 78,
};

GQuark pb_error_quark(void);

/* Sets PB_ERROR_TEMP (PB_ERROR_NOTFOUND for ENOENT) with ": strerror"
 * appended; keeps errno; always returns FALSE so callers can
 * "return pb_throw_errno (error, ...)". */
gboolean pb_throw_errno(GError **error, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

/* The sysexits code for an error (NULL: 0). */
int pb_error_exit_code(const GError *error);

/* A file descriptor that closes itself: g_auto(PbFd) fd = -1; */
typedef int PbFd;
void pb_fd_clear(PbFd *fd);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(PbFd, pb_fd_clear)

/* Deadlines everywhere are g_get_monotonic_time() in milliseconds; this
 * is the deadline SECONDS from now. */
gint64 pb_deadline_in(gint64 seconds);

/* Appends TEXT as a JSON string (quoted and escaped); the bytes of text
 * that is not valid UTF-8 as \u00XX. For the --json outputs. */
void pb_json_string(GString *out, const char *text);

#endif
