/*
 * fuzz-pop3-server.c - the POP3 session driven as pop3d's loop drives it
 * (pop3-serve.c), through conn.c's line reader, with a fake mailbox.
 *
 * Input: one octet of options (how many messages, 0 to 3; mailbox in
 * use; plaintext allowed; STLS offered), then the client's bytes.
 */
#include "fuzz.h"
#include "pop3-server.h"

#include <string.h>

static const char *const bodies[] = {"Subject: one\r\n\r\nbody one\r\n",
                                     "Subject: two\r\n\r\n.dot\r\nl2\r\n",
                                     "Subject: three\r\n\r\nthree\r\n"};

typedef struct {
	guint count;
	gboolean in_use;
	gboolean opened;
	gboolean committed;
} Box;

static gboolean
h_auth(void *data, const char *user, const char *pass)
{
	return g_str_equal(user, "alice@example.org") &&
	       g_str_equal(pass, "secret");
}

static PbPop3Open
h_open(void *data, const char *user)
{
	Box *b = data;

	g_assert_false(b->opened);
	b->opened = !b->in_use;
	return b->in_use ? PB_POP3_OPEN_IN_USE : PB_POP3_OPEN_OK;
}

static guint
h_count(void *data)
{
	Box *b = data;

	g_assert_true(b->opened);
	return b->count;
}

static guint64
h_size(void *data, guint i)
{
	Box *b = data;

	g_assert_cmpuint(i, <, b->count);
	return strlen(bodies[i]);
}

static const char *
h_uid(void *data, guint i)
{
	static const char *const uids[] = {"u1", "u2", "u3"};
	Box *b = data;

	g_assert_cmpuint(i, <, b->count);
	return uids[i];
}

static gboolean
h_send(void *data, guint i, gint64 lines, PbLineOut *out)
{
	Box *b = data;

	g_assert_cmpuint(i, <, b->count);
	pb_line_out_write(out, bodies[i], strlen(bodies[i]));
	pb_line_out_write(out, ".\r\n", 3);
	return TRUE;
}

static gboolean
h_commit(void *data, const gboolean *deleted)
{
	Box *b = data;

	g_assert_true(b->opened);
	g_assert_false(b->committed);
	b->committed = TRUE;
	return TRUE;
}

static const PbPop3Hooks hooks = {h_auth, h_open, h_count, h_size,
                                  h_uid,  h_send, h_commit};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	PbLineOut out = fuzz_line_out();
	g_autoptr(PbConn) conn = NULL;
	g_autoptr(PbPop3Server) s = NULL;
	Box box = {0};
	PbPop3Action action = PB_POP3_NONE;

	if (size < 1)
		return 0;
	box.count = data[0] & 3;
	box.in_use = (data[0] & 4) != 0;
	conn = fuzz_conn_new(data + 1, size - 1);
	s = pb_pop3_server_new(&hooks, &box, &out, "mx.example.org",
	                       (data[0] & 8) != 0);
	pb_pop3_server_set_tls_available(s, (data[0] & 16) != 0);
	pb_pop3_server_greet(s);
	while (action != PB_POP3_CLOSE) {
		const char *line;
		gsize len;
		guint flags;

		if (!pb_conn_read_line(conn, &line, &len, &flags, G_MAXINT64,
		                       NULL)) {
			pb_pop3_server_timeout(s);
			break;
		}
		pb_pop3_server_line(s, line, len, flags);
		action = pb_pop3_server_next_action(s);
		if (action == PB_POP3_STLS) {
			pb_conn_purge_input(conn);
			pb_pop3_server_tls_started(s);
		}
	}
	/* deletions reach the mailbox only through QUIT (UPDATE) */
	g_assert_true(!box.committed || action == PB_POP3_CLOSE);
	return 0;
}
