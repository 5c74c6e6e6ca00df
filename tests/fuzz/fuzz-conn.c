/*
 * fuzz-conn.c - conn.c's line reader and raw reads, fed the input in
 * chunks: lines are never longer than PB_CONN_MAX_LINE, the flags tell
 * the truth about what was read, and lines plus raw reads account for
 * every input octet. The first octet picks, per step, a line read or a
 * raw peek/consume (as DATA does).
 */
#include "fuzz.h"

#include <string.h>

static void
check_line(const char *line, gsize len, guint flags)
{
	g_assert_cmpuint(len, <=, PB_CONN_MAX_LINE);
	g_assert_cmpint(line[len], ==, '\0');
	g_assert_null(memchr(line, '\n', len));
	if (memchr(line, '\r', len))
		g_assert_true(flags & PB_LINE_BARE_CR);
	if (memchr(line, '\0', len))
		g_assert_true(flags & PB_LINE_HAS_NUL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(PbConn) conn = NULL;
	gsize seen = 0;
	guint pick;

	if (size < 1)
		return 0;
	pick = data[0];
	conn = fuzz_conn_new(data + 1, size - 1);
	for (guint step = 0;; step++) {
		const char *buf;
		gsize len;
		guint flags;

		if (pick & (1u << (step % 8))) {
			if (!pb_conn_peek(conn, &buf, &len, G_MAXINT64, NULL))
				break;
			g_assert_cmpuint(len, >, 0);
			len = MIN(len, 1 + step % 5);
			pb_conn_consume(conn, len);
			seen += len;
			continue;
		}
		if (!pb_conn_read_line(conn, &buf, &len, &flags, G_MAXINT64,
		                       NULL))
			break;
		check_line(buf, len, flags);
		/* the line, its end (1 or 2), and what was skipped */
		if (!(flags & PB_LINE_TOO_LONG))
			seen += len + (flags & PB_LINE_BARE_LF ? 1 : 2);
		else
			seen = G_MAXSIZE / 2;
	}
	if (seen < G_MAXSIZE / 2)
		g_assert_cmpuint(seen, <=, size - 1);
	return 0;
}
