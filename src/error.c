/*
 * error.c - the PB_ERROR domain, errno helpers and the exit-code map.
 *
 * Owns nothing on disk. Guarantees: pb_throw_errno() preserves errno and
 * never fails; pb_fd_clear() closes at most once.
 */
#include "error.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

G_DEFINE_QUARK(pb-error-quark, pb_error)

gboolean
pb_throw_errno(GError **error, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	g_autofree char *msg = NULL;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(error, PB_ERROR,
		    saved == ENOENT ? PB_ERROR_NOTFOUND : PB_ERROR_TEMP,
		    "%s: %s", msg, g_strerror(saved));
	errno = saved;
	return FALSE;
}

int
pb_error_exit_code(const GError *error)
{
	if (error == NULL)
		return PB_EX_OK;
	if (error->domain != PB_ERROR)
		return PB_EX_TEMPFAIL;
	switch ((PbErrorCode)error->code) {
	case PB_ERROR_PERM:
	case PB_ERROR_DATA:
		return PB_EX_DATAERR;
	case PB_ERROR_CONFIG:
		return PB_EX_CONFIG;
	case PB_ERROR_USAGE:
		return PB_EX_USAGE;
	case PB_ERROR_NOUSER:
		return PB_EX_NOUSER;
	case PB_ERROR_NOTFOUND:
	case PB_ERROR_TEMP:
	case PB_ERROR_BUSY:
	case PB_ERROR_TIMEOUT:
	case PB_ERROR_CLOSED:
	default:
		return PB_EX_TEMPFAIL;
	}
}

void
pb_fd_clear(PbFd *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		(void)close(*fd);
		*fd = -1;
		errno = saved;
	}
}

gint64
pb_deadline_in(gint64 seconds)
{
	return g_get_monotonic_time() / 1000 + seconds * 1000;
}

/* Appends TEXT as a JSON string; bytes of invalid UTF-8 as \u00XX. */
void
pb_json_string(GString *out, const char *text)
{
	gboolean utf8 = g_utf8_validate(text, -1, NULL);

	g_string_append_c(out, '"');
	for (const guchar *p = (const guchar *)text; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_printf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7F || (*p >= 0x80 && !utf8))
			g_string_append_printf(out, "\\u%04x", *p);
		else
			g_string_append_c(out, (char)*p);
	}
	g_string_append_c(out, '"');
}
