/* test-pop3-server.c - the POP3 session driven without a socket: a fake
 * mailbox of three messages behind the hooks. */
#include "pop3-server.h"

#include <string.h>

typedef struct {
	GString *replies;
	PbLineOut out;
	PbPop3Server *s;
	gboolean in_use;
	gboolean committed;
	gboolean deleted[3];
	guint sent;
	guint count;      /* messages in the fake mailbox (3 or fewer) */
	gboolean blocked; /* the client has failed too often lately */
	guint checks;     /* passwords checked */
	gboolean no_accounts; /* the accounts cannot be read */
} F;

static const char *const bodies[] = {"Subject: one\r\n\r\nbody one\r\n",
                                     "Subject: two\r\n\r\n.dot\r\nl2\r\nl3\r\n",
                                     "Subject: three\r\n\r\nthree\r\n"};

static gboolean
h_auth(void *data, const char *user, const char *pass)
{
	((F *)data)->checks++;
	return g_str_equal(user, "alice@example.org") &&
	       g_str_equal(pass, "s3cret word");
}

static PbPop3Open
h_open(void *data, const char *user)
{
	return ((F *)data)->in_use ? PB_POP3_OPEN_IN_USE : PB_POP3_OPEN_OK;
}

static guint
h_count(void *data)
{
	return ((F *)data)->count;
}

static guint64
h_size(void *data, guint i)
{
	return strlen(bodies[i]);
}

static const char *
h_uid(void *data, guint i)
{
	static const char *const uids[] = {"u1", "u2", "u3"};
	return uids[i];
}

static gboolean
h_send(void *data, guint i, gint64 lines, PbLineOut *out)
{
	((F *)data)->sent++;
	pb_line_out_printf(out,
	                   "<message %u lines %" G_GINT64_FORMAT ">\r\n.\r\n",
	                   i + 1, lines);
	return TRUE;
}

static gboolean
h_commit(void *data, const gboolean *deleted)
{
	F *f = data;

	f->committed = TRUE;
	memcpy(f->deleted, deleted, sizeof f->deleted);
	return TRUE;
}

static gboolean
h_blocked(void *data)
{
	return ((F *)data)->blocked;
}

static gboolean
h_accounts_ready(void *data)
{
	return !((F *)data)->no_accounts;
}

static const PbPop3Hooks hooks = {h_auth,   h_open,    h_count,
                                  h_size,   h_uid,     h_send,
                                  h_commit, h_blocked, h_accounts_ready};

static void
out_write(void *ctx, const char *data, gsize len)
{
	g_string_append_len(ctx, data, len);
}

static void
setup(F *f, gconstpointer plaintext)
{
	f->count = 3;
	f->replies = g_string_new(NULL);
	f->out.write = out_write;
	f->out.ctx = f->replies;
	f->s = pb_pop3_server_new(&hooks, f, &f->out, "mx.example.org",
	                          plaintext == NULL);
	pb_pop3_server_greet(f->s);
	g_assert_cmpstr(f->replies->str, ==,
	                "+OK mx.example.org POP3 server ready\r\n");
	g_string_truncate(f->replies, 0);
}

static void
teardown(F *f, gconstpointer data)
{
	pb_pop3_server_free(f->s);
	g_string_free(f->replies, TRUE);
}

static char *
talk(F *f, const char *input)
{
	g_auto(GStrv) lines = g_strsplit(input, "\r\n", -1);
	char *r;

	for (guint i = 0; lines[i] && lines[i + 1]; i++)
		pb_pop3_server_line(f->s, lines[i], strlen(lines[i]), 0);
	r = g_strdup(f->replies->str);
	g_string_truncate(f->replies, 0);
	return r;
}

#define EXPECT(f, in, want)                                                    \
	do {                                                                   \
		g_autofree char *got_ = talk(f, in);                           \
		g_assert_cmpstr(got_, ==, want);                               \
	} while (0)

static void
login(F *f)
{
	EXPECT(f, "USER alice@example.org\r\nPASS s3cret word\r\n",
	       "+OK\r\n+OK Logged in, 3 messages\r\n");
}

static void
test_capa(F *f, gconstpointer data)
{
	EXPECT(f, "CAPA\r\n",
	       "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
	       "AUTH-RESP-CODE\r\nPIPELINING\r\nUTF8\r\nUSER\r\nSASL PLAIN\r\n"
	       "IMPLEMENTATION pillarbox\r\n.\r\n");
	login(f);
	/* no USER or SASL once logged in */
	EXPECT(f, "CAPA\r\n",
	       "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
	       "AUTH-RESP-CODE\r\nPIPELINING\r\nUTF8\r\n"
	       "IMPLEMENTATION pillarbox\r\n.\r\n");
}

static void
test_transaction(F *f, gconstpointer data)
{
	EXPECT(f, "STAT\r\n",
	       "-ERR Unknown command in AUTHORIZATION state\r\n");
	EXPECT(f, "PASS x\r\n", "-ERR USER first\r\n");
	login(f);
	EXPECT(f, "STAT\r\n", "+OK 3 81\r\n");
	EXPECT(f, "LIST\r\n", "+OK\r\n1 26\r\n2 30\r\n3 25\r\n.\r\n");
	EXPECT(f, "LIST 2\r\nUIDL 3\r\n", "+OK 2 30\r\n+OK 3 u3\r\n");
	EXPECT(f, "RETR 2\r\n",
	       "+OK 30 octets\r\n<message 2 lines -1>\r\n.\r\n");
	EXPECT(f, "TOP 1 5\r\n", "+OK\r\n<message 1 lines 5>\r\n.\r\n");
	EXPECT(f, "DELE 1\r\nDELE 1\r\nRETR 1\r\n",
	       "+OK Marked for deletion\r\n-ERR No such message\r\n"
	       "-ERR No such message\r\n");
	EXPECT(f, "STAT\r\nUIDL\r\n",
	       "+OK 2 55\r\n+OK\r\n2 u2\r\n3 u3\r\n.\r\n");
	EXPECT(f, "RSET\r\nSTAT\r\n", "+OK\r\n+OK 3 81\r\n");
	EXPECT(f, "DELE 3\r\nNOOP\r\nQUIT\r\n",
	       "+OK Marked for deletion\r\n+OK\r\n+OK Bye, 1 deleted\r\n");
	g_assert_true(f->committed);
	g_assert_false(f->deleted[0]);
	g_assert_true(f->deleted[2]);
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_CLOSE);
	g_assert_cmpuint(pb_pop3_server_retrieved(f->s), ==, 1);
}

static void
test_bad_arguments(F *f, gconstpointer data)
{
	login(f);
	EXPECT(f,
	       "RETR\r\nRETR 0\r\nRETR 4\r\nRETR x\r\nTOP 1\r\nTOP 1 -1\r\n"
	       "LIST 1 2\r\nDELE\r\n",
	       "-ERR Syntax: RETR msg\r\n-ERR No such message\r\n"
	       "-ERR No such message\r\n-ERR No such message\r\n"
	       "-ERR Syntax: TOP msg lines\r\n-ERR Syntax: TOP msg lines\r\n"
	       "-ERR No such message\r\n-ERR No such message\r\n");
	pb_pop3_server_line(f->s, "NOOP", 4, PB_LINE_TOO_LONG);
	EXPECT(f, "", "-ERR Line too long\r\n");
	/* the tenth error ends the session */
	EXPECT(f, "BAD\r\n",
	       "-ERR Unknown command in TRANSACTION state\r\n"
	       "-ERR Too many errors, bye\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_CLOSE);
	g_assert_false(f->committed);
}

static void
test_auth_failures(F *f, gconstpointer data)
{
	EXPECT(f, "USER bob@example.org\r\nPASS s3cret word\r\n",
	       "+OK\r\n-ERR [AUTH] Authentication failed\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==,
	                PB_POP3_AUTH_DELAY);
	EXPECT(f, "USER alice@example.org\r\nPASS wrong\r\n",
	       "+OK\r\n-ERR [AUTH] Authentication failed\r\n");
	EXPECT(f, "USER alice@example.org\r\nPASS wrong\r\n",
	       "+OK\r\n-ERR [AUTH] Authentication failed\r\n"
	       "-ERR Too many failures, bye\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_CLOSE);
}

static void
test_auth_plain(F *f, gconstpointer data)
{
	g_autofree char *token = g_base64_encode(
	    (const guchar *)"\0alice@example.org\0s3cret word", 30);
	g_autofree char *line = g_strdup_printf("AUTH PLAIN %s\r\n", token);

	EXPECT(f, "AUTH\r\n", "+OK\r\nPLAIN\r\n.\r\n");
	EXPECT(f, "AUTH CRAM-MD5\r\n", "-ERR Unsupported mechanism\r\n");
	EXPECT(f, "AUTH PLAIN\r\n", "+ \r\n");
	EXPECT(f, "*\r\n", "-ERR AUTH cancelled\r\n");
	EXPECT(f, "AUTH PLAIN\r\n", "+ \r\n");
	EXPECT(f, "bm90IGJhc2U2NA==\r\n",
	       "-ERR Malformed AUTH PLAIN response\r\n");
	EXPECT(f, line, "+OK Logged in, 3 messages\r\n");
	g_assert_cmpstr(pb_pop3_server_user(f->s), ==, "alice@example.org");
}

/* Acting for another user is a failed login like any other: the same
 * reply, the pause, and the third one ends the session. */
static void
test_auth_plain_authzid(F *f, gconstpointer data)
{
	g_autofree char *token = g_base64_encode(
	    (const guchar *)"bob@example.org\0alice@example.org\0s3cret word",
	    45);
	g_autofree char *line = g_strdup_printf("AUTH PLAIN %s\r\n", token);

	EXPECT(f, line, "-ERR [AUTH] Authentication failed\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==,
	                PB_POP3_AUTH_DELAY);
	g_assert_null(pb_pop3_server_user(f->s));
	EXPECT(f, line, "-ERR [AUTH] Authentication failed\r\n");
	EXPECT(f, line,
	       "-ERR [AUTH] Authentication failed\r\n"
	       "-ERR Too many failures, bye\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_CLOSE);
}

/* Every message number is refused in an empty mailbox (1..0 once reached
 * g_ascii_string_to_unsigned as a range, a GLib-CRITICAL). */
static void
test_empty_mailbox(F *f, gconstpointer data)
{
	f->count = 0;
	EXPECT(f, "USER alice@example.org\r\nPASS s3cret word\r\n",
	       "+OK\r\n+OK Logged in, 0 messages\r\n");
	EXPECT(f, "RETR 1\r\nTOP 1 0\r\nDELE 1\r\nLIST 1\r\nUIDL 1\r\n",
	       "-ERR No such message\r\n-ERR No such message\r\n"
	       "-ERR No such message\r\n-ERR No such message\r\n"
	       "-ERR No such message\r\n");
	EXPECT(f, "STAT\r\nLIST\r\n", "+OK 0 0\r\n+OK\r\n.\r\n");
	g_assert_cmpuint(f->sent, ==, 0);
}

/* A client over the failure limit gets a temporary error, and its
 * password is not even looked at: USER/PASS, then AUTH PLAIN. */
static void
test_blocked(F *f, gconstpointer data)
{
	g_autofree char *token = g_base64_encode(
	    (const guchar *)"\0alice@example.org\0s3cret word", 30);
	g_autofree char *plain = g_strdup_printf("AUTH PLAIN %s\r\n", token);
	const char *logins[] = {
	    "USER alice@example.org\r\nPASS s3cret word\r\n", plain};
	const char *refused =
	    "-ERR [SYS/TEMP] Too many failed logins, try later\r\n";

	f->blocked = TRUE;
	EXPECT(f, logins[0],
	       "+OK\r\n-ERR [SYS/TEMP] Too many failed logins, "
	       "try later\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_CLOSE);
	pb_pop3_server_free(f->s);
	f->s = pb_pop3_server_new(&hooks, f, &f->out, "mx.example.org", TRUE);
	EXPECT(f, logins[1], refused);
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_CLOSE);
	g_assert_cmpuint(f->checks, ==, 0);
	g_assert_null(pb_pop3_server_user(f->s));
}

/* Accounts that cannot be read (read at the first login, not at the
 * connection): a temporary failure, not a wrong password, no pause, no
 * password check. */
static void
test_accounts_unavailable(F *f, gconstpointer data)
{
	f->no_accounts = TRUE;
	EXPECT(f, "CAPA\r\nUSER alice@example.org\r\nPASS s3cret word\r\n",
	       "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
	       "AUTH-RESP-CODE\r\nPIPELINING\r\nUTF8\r\nUSER\r\n"
	       "SASL PLAIN\r\nIMPLEMENTATION pillarbox\r\n.\r\n+OK\r\n"
	       "-ERR [SYS/TEMP] Service not available\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_CLOSE);
	g_assert_cmpuint(f->checks, ==, 0);
	g_assert_null(pb_pop3_server_user(f->s));
}

static void
test_in_use(F *f, gconstpointer data)
{
	f->in_use = TRUE;
	EXPECT(f, "USER alice@example.org\r\nPASS s3cret word\r\n",
	       "+OK\r\n-ERR [IN-USE] Mailbox in use by another session\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_CLOSE);
}

static void
test_plaintext_refused(F *f, gconstpointer data)
{
	EXPECT(f, "CAPA\r\n",
	       "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
	       "AUTH-RESP-CODE\r\nPIPELINING\r\nUTF8\r\n"
	       "IMPLEMENTATION pillarbox\r\n.\r\n");
	EXPECT(f, "USER alice@example.org\r\n",
	       "-ERR [AUTH] Plaintext authentication is not allowed without "
	       "TLS\r\n");
}

static void
test_timeout_no_update(F *f, gconstpointer data)
{
	login(f);
	g_free(talk(f, "DELE 1\r\n"));
	pb_pop3_server_timeout(f->s);
	EXPECT(f, "", "-ERR Autologout; idle for too long\r\n");
	g_assert_false(f->committed);
}

static void
test_stls(F *f, gconstpointer data)
{
	g_autofree char *capa = NULL;

	EXPECT(f, "STLS\r\n", "-ERR STLS not available\r\n");
	pb_pop3_server_set_tls_available(f->s, TRUE);
	capa = talk(f, "CAPA\r\n");
	g_assert_nonnull(strstr(capa, "\r\nSTLS\r\n"));
	g_assert_null(strstr(capa, "USER")); /* not without TLS here */
	EXPECT(f, "STLS\r\n", "+OK Begin TLS negotiation\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_STLS);
	pb_pop3_server_tls_started(f->s);
	g_clear_pointer(&capa, g_free);
	capa = talk(f, "CAPA\r\n");
	g_assert_null(strstr(capa, "STLS"));
	g_assert_nonnull(strstr(capa, "\r\nUSER\r\n"));
	EXPECT(f, "STLS\r\n", "-ERR Already in TLS\r\n");
	login(f);
}

/* RFC 2595 4: a USER given before STLS (perhaps injected by a man in the
 * middle) is forgotten with the rest of the plaintext session. */
static void
test_stls_forgets_user(F *f, gconstpointer data)
{
	pb_pop3_server_set_tls_available(f->s, TRUE);
	EXPECT(f, "USER alice@example.org\r\nSTLS\r\n",
	       "+OK\r\n+OK Begin TLS negotiation\r\n");
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_STLS);
	pb_pop3_server_tls_started(f->s);
	EXPECT(f, "PASS s3cret word\r\n", "-ERR USER first\r\n");
	login(f);
	/* and no STLS once logged in */
	g_autofree char *r = talk(f, "STLS\r\n");
	g_assert_true(g_str_has_prefix(r, "-ERR "));
	g_assert_cmpint(pb_pop3_server_next_action(f->s), ==, PB_POP3_NONE);
}

#define ADD(path, fn, arg) g_test_add(path, F, arg, setup, fn, teardown)

/* ---- a big mailbox: LIST and UIDL written in pieces ---- */

#define BIG 30000 /* LIST's lines fill several 64 KB pieces */

static guint
big_count(void *data)
{
	return BIG;
}

static guint64
big_size(void *data, guint i)
{
	return (guint64)i * 1000003 * 1000; /* past 2^32 too */
}

static const char *
big_uid(void *data, guint i)
{
	static char uid[32];

	g_snprintf(uid, sizeof uid, "%u.M%uP1Q1.host", 1700000000 + i, i);
	return uid;
}

static void
test_list_big(void)
{
	static const PbPop3Hooks big = {h_auth, h_open, big_count, big_size,
	                                big_uid, h_send, h_commit, NULL};
	F f = {0};
	g_autoptr(GString) want_list = g_string_new("+OK\r\n");
	g_autoptr(GString) want_uidl = g_string_new("+OK\r\n");
	g_autoptr(GString) replies = g_string_new(NULL);
	g_autoptr(PbPop3Server) s = NULL;
	PbLineOut out = {out_write, replies};
	guint64 total = 0;
	const char *lines[] = {"USER alice@example.org", "PASS s3cret word",
	                       "DELE 2", "STAT", "LIST", "UIDL"};

	s = pb_pop3_server_new(&big, &f, &out, "mx.example.org", TRUE);
	for (guint i = 0; i < BIG; i++) {
		if (i == 1)
			continue; /* deleted */
		total += big_size(NULL, i);
		g_string_append_printf(want_list, "%u %" G_GUINT64_FORMAT "\r\n",
		                       i + 1, big_size(NULL, i));
		g_string_append_printf(want_uidl, "%u %s\r\n", i + 1,
		                       big_uid(NULL, i));
	}
	g_string_append(want_list, ".\r\n");
	g_string_append(want_uidl, ".\r\n");
	for (guint k = 0; k < G_N_ELEMENTS(lines); k++) {
		g_autofree char *want = NULL;
		g_string_truncate(replies, 0);
		pb_pop3_server_line(s, lines[k], strlen(lines[k]), 0);
		if (k == 3) {
			want = g_strdup_printf("+OK %u %" G_GUINT64_FORMAT "\r\n",
			                       BIG - 1, total);
			g_assert_cmpstr(replies->str, ==, want);
		}
	}
	g_assert_cmpstr(replies->str, ==, want_uidl->str);
	g_string_truncate(replies, 0);
	pb_pop3_server_line(s, "LIST", 4, 0);
	g_assert_cmpstr(replies->str, ==, want_list->str);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	ADD("/pop3-server/capa", test_capa, NULL);
	ADD("/pop3-server/transaction", test_transaction, NULL);
	ADD("/pop3-server/bad-arguments", test_bad_arguments, NULL);
	ADD("/pop3-server/empty-mailbox", test_empty_mailbox, NULL);
	ADD("/pop3-server/auth-failures", test_auth_failures, NULL);
	ADD("/pop3-server/auth-plain", test_auth_plain, NULL);
	ADD("/pop3-server/blocked", test_blocked, NULL);
	ADD("/pop3-server/auth-plain/authzid", test_auth_plain_authzid, NULL);
	ADD("/pop3-server/in-use", test_in_use, NULL);
	ADD("/pop3-server/plaintext-refused", test_plaintext_refused, "no");
	ADD("/pop3-server/timeout-no-update", test_timeout_no_update, NULL);
	ADD("/pop3-server/stls", test_stls, "no");
	ADD("/pop3-server/stls-forgets-user", test_stls_forgets_user, NULL);
	g_test_add_func("/pop3-server/list-big", test_list_big);
	ADD("/pop3-server/accounts-unavailable", test_accounts_unavailable,
	    NULL);
	return g_test_run();
}
