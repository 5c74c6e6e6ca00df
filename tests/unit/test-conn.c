/*
 * test-conn.c - the line reader and the buffers of conn.c over a real
 * socketpair: flags, bounds, split line ends, deadlines, purge.
 */
#include "conn.h"
#include "error.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
	int peer; /* the test's end */
	PbConn *conn;
	int fd;
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
	int sv[2];

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
	f->peer = sv[0];
	f->fd = sv[1];
	f->conn = pb_conn_new(sv[1], sv[1]);
}

static void
teardown(Fixture *f, gconstpointer data)
{
	pb_conn_free(f->conn);
	close(f->fd);
	close(f->peer);
}

static void
send_str(Fixture *f, const char *s, gsize len)
{
	g_assert_cmpint(write(f->peer, s, len), ==, (gssize)len);
}

/* Reads one line and checks its text and flags. */
static void
expect_line(Fixture *f, const char *text, gsize len, guint flags)
{
	const char *line;
	gsize got;
	guint fl;
	g_autoptr(GError) error = NULL;

	g_assert_true(pb_conn_read_line(f->conn, &line, &got, &fl,
					pb_deadline_in(5), &error));
	g_assert_no_error(error);
	g_assert_cmpmem(line, got, text, len);
	g_assert_cmpuint(fl, ==, flags);
}

static void
test_lines(Fixture *f, gconstpointer data)
{
	static const char in[] = "EHLO a\r\nbare lf\nwith\rcr\r\nn\0l\r\n\r\n";

	send_str(f, in, sizeof(in) - 1);
	expect_line(f, "EHLO a", 6, 0);
	expect_line(f, "bare lf", 7, PB_LINE_BARE_LF);
	expect_line(f, "with\rcr", 7, PB_LINE_BARE_CR);
	expect_line(f, "n\0l", 3, PB_LINE_HAS_NUL);
	expect_line(f, "", 0, 0);
}

static void
test_split_crlf(Fixture *f, gconstpointer data)
{
	/* the CR of a CRLF arrives alone: still a proper line end */
	send_str(f, "QUIT\r", 5);
	send_str(f, "\nNEXT\r", 6);
	send_str(f, "x\r\n", 3);
	expect_line(f, "QUIT", 4, 0);
	expect_line(f, "NEXT\rx", 6, PB_LINE_BARE_CR);
}

static void
test_too_long(Fixture *f, gconstpointer data)
{
	gsize n = PB_CONN_MAX_LINE * 3;
	g_autofree char *big = g_malloc(n);

	memset(big, 'a', n);
	send_str(f, big, n);
	send_str(f, "\r\nNOOP\r\n", 8);
	{
		const char *line;
		gsize got;
		guint fl;
		g_autoptr(GError) error = NULL;
		g_assert_true(pb_conn_read_line(f->conn, &line, &got, &fl,
						pb_deadline_in(5), &error));
		g_assert_cmpuint(got, ==, PB_CONN_MAX_LINE);
		g_assert_cmpuint(fl, ==, PB_LINE_TOO_LONG);
	}
	/* the session stays in step: the next line is the next command */
	expect_line(f, "NOOP", 4, 0);
}

static void
test_timeout(Fixture *f, gconstpointer data)
{
	const char *line;
	gsize got;
	guint fl;
	g_autoptr(GError) error = NULL;
	gint64 start = g_get_monotonic_time();

	send_str(f, "partial", 7);
	g_assert_false(pb_conn_read_line(f->conn, &line, &got, &fl,
					 g_get_monotonic_time() / 1000 + 200,
					 &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TIMEOUT);
	g_assert_cmpint(g_get_monotonic_time() - start, >=, 150000);
}

static void
test_eof(Fixture *f, gconstpointer data)
{
	const char *line;
	gsize got;
	guint fl;
	g_autoptr(GError) error = NULL;

	send_str(f, "half a line", 11);
	shutdown(f->peer, SHUT_WR);
	g_assert_false(pb_conn_read_line(f->conn, &line, &got, &fl,
					 pb_deadline_in(5), &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CLOSED);
}

static void
test_peek_consume_purge(Fixture *f, gconstpointer data)
{
	const char *buf;
	gsize len;
	g_autoptr(GError) error = NULL;

	send_str(f, "STARTTLS\r\nNOOP\r\n", 16);
	expect_line(f, "STARTTLS", 8, 0);
	g_assert_true(pb_conn_pending(f->conn));
	pb_conn_purge_input(f->conn);
	g_assert_false(pb_conn_pending(f->conn));

	send_str(f, "abcdef", 6);
	g_assert_true(pb_conn_peek(f->conn, &buf, &len, pb_deadline_in(5),
				   &error));
	g_assert_cmpmem(buf, len, "abcdef", 6);
	pb_conn_consume(f->conn, 4);
	send_str(f, "\r\n", 2);
	expect_line(f, "ef", 2, 0);
}

static void
test_write_flush(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	PbLineOut out = pb_conn_line_out(f->conn);
	char buf[64];

	pb_line_out_printf(&out, "250 %s\r\n", "ok");
	g_assert_true(pb_conn_printf(f->conn, &error, "221 %d\r\n", 2));
	g_assert_true(pb_conn_flush(f->conn, pb_deadline_in(5), &error));
	g_assert_no_error(error);
	g_assert_cmpint(read(f->peer, buf, sizeof(buf)), ==, 15);
	g_assert_cmpmem(buf, 15, "250 ok\r\n221 2\r\n", 15);
}

static void
test_connect_refused(void)
{
	g_autoptr(GError) error = NULL;
	/* port 1 on loopback: nobody listens there */
	int fd = pb_conn_connect("127.0.0.1", 1, pb_deadline_in(5), &error);

	g_assert_cmpint(fd, ==, -1);
	g_assert_nonnull(error);
	g_assert_nonnull(strstr(error->message, "127.0.0.1 port 1"));
	g_clear_error(&error);
	g_assert_cmpint(pb_conn_connect("mx.example", 25, pb_deadline_in(5),
					&error),
			==, -1);
	g_assert_error(error, PB_ERROR, PB_ERROR_PERM);
}

#define ADD(path, fn)                                                          \
	g_test_add(path, Fixture, NULL, setup, fn, teardown)

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	ADD("/conn/lines/flags", test_lines);
	ADD("/conn/lines/split-crlf", test_split_crlf);
	ADD("/conn/lines/too-long", test_too_long);
	ADD("/conn/read/timeout", test_timeout);
	ADD("/conn/read/eof", test_eof);
	ADD("/conn/read/peek-consume-purge", test_peek_consume_purge);
	ADD("/conn/write/flush", test_write_flush);
	g_test_add_func("/conn/connect/refused", test_connect_refused);
	return g_test_run();
}
