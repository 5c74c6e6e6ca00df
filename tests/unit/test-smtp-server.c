/* test-smtp-server.c - the SMTP session driven without a socket: replies
 * collected in a GString, the queue and the recipient table in memory. */
#include "smtp-server.h"

#include <string.h>

static const char conf[] = "[main]\nhostname = mx.example.org\n"
                           "domains = example.org\n"
                           "[smtpd]\nmax_recipients = 3\n"
                           "max_message_size = 1K\n"
                           "relay_networks = 192.0.2.0/24\n";

typedef struct {
	PbConfig *cfg;
	GString *replies;
	PbLineOut out;
	PbSmtpPeer peer;
	PbSmtpServer *s;
	/* the fake queue */
	GString *data;
	char *sender;
	GPtrArray *rcpts;
	guint begun, committed, aborted;
	gboolean fail_begin, fail_commit;
	/* what tx_signed got */
	guint signed_calls;
	char *fields, *domain;
	/* what tx_check got, and its answer */
	guint checks, removed;
	gboolean verified;
	const char *refusal;
} F;

static gboolean
exists(void *data, const char *address)
{
	return g_str_equal(address, "alice@example.org");
}

static void *
tx_begin(void *data, const char **qid, GError **error)
{
	F *f = data;

	if (f->fail_begin) {
		g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOSPC, "full");
		return NULL;
	}
	f->begun++;
	g_string_truncate(f->data, 0);
	*qid = "QID1";
	return f;
}

static gboolean
tx_write(void *tx, const void *buf, gsize len, GError **error)
{
	g_string_append_len(((F *)tx)->data, buf, len);
	return TRUE;
}

static gboolean
tx_commit(void *tx, const char *sender, GPtrArray *rcpts, const char *helo,
          gboolean smtputf8, GError **error)
{
	F *f = tx;

	if (f->fail_commit) {
		g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_IO, "io");
		return FALSE;
	}
	f->committed++;
	g_free(f->sender);
	f->sender = g_strdup(sender);
	g_ptr_array_set_size(f->rcpts, 0);
	for (guint i = 0; i < rcpts->len; i++)
		g_ptr_array_add(f->rcpts, g_strdup(rcpts->pdata[i]));
	return TRUE;
}

static void
tx_abort(void *tx)
{
	((F *)tx)->aborted++;
}

static gint64
now(void *data)
{
	return 1763800000;
}

static gboolean
authenticate(void *data, const char *user, const char *pass)
{
	return g_str_equal(user, "alice@example.org") &&
	       g_str_equal(pass, "secret");
}

static gboolean
sender_allowed(void *data, const char *user, const char *sender)
{
	return g_str_equal(sender, user);
}

static void
tx_signed(void *tx, const char *fields, const char *domain, const char *why)
{
	F *f = tx;

	f->signed_calls++;
	g_free(f->fields);
	g_free(f->domain);
	f->fields = g_strdup(fields);
	f->domain = g_strdup(domain);
}

static char *
tx_check(void *tx, const PbSmtpInbound *in)
{
	F *f = tx;

	f->checks++;
	f->removed = in->removed;
	f->verified = in->verify != NULL;
	g_assert_nonnull(in->helo);
	return g_strdup(f->refusal);
}

static const PbSmtpHooks hooks = {.recipient_exists = exists,
                                  .tx_begin = tx_begin,
                                  .tx_write = tx_write,
                                  .tx_commit = tx_commit,
                                  .tx_abort = tx_abort,
                                  .now = now,
                                  .authenticate = authenticate,
                                  .sender_allowed = sender_allowed,
                                  .tx_signed = tx_signed,
                                  .tx_check = tx_check};

static void
out_write(void *ctx, const char *data, gsize len)
{
	g_string_append_len(ctx, data, len);
}

static void
setup(F *f, gconstpointer ip)
{
	g_autoptr(GError) error = NULL;

	f->cfg = pb_config_load_data(conf, strlen(conf), "t", "/tmp", &error);
	g_assert_no_error(error);
	f->replies = g_string_new(NULL);
	f->out.write = out_write;
	f->out.ctx = f->replies;
	f->peer.ip = ip ? ip : "198.51.100.7";
	f->data = g_string_new(NULL);
	f->rcpts = g_ptr_array_new_with_free_func(g_free);
	f->s = pb_smtp_server_new(f->cfg, &hooks, f, &f->peer, &f->out);
	pb_smtp_server_greet(f->s);
	g_assert_cmpstr(f->replies->str, ==,
	                "220 mx.example.org ESMTP pillarbox\r\n");
	g_string_truncate(f->replies, 0);
}

static void
teardown(F *f, gconstpointer data)
{
	pb_smtp_server_free(f->s);
	pb_config_free(f->cfg);
	g_string_free(f->replies, TRUE);
	g_string_free(f->data, TRUE);
	g_free(f->sender);
	g_free(f->fields);
	g_free(f->domain);
	g_ptr_array_unref(f->rcpts);
}

/* Feeds INPUT as a client would (lines, or data after 354); returns
 * the replies since the last call. */
static char *
talk(F *f, const char *input)
{
	gsize len = strlen(input), pos = 0;

	while (pos < len) {
		if (pb_smtp_server_in_data(f->s)) {
			pos +=
			    pb_smtp_server_data(f->s, input + pos, len - pos);
			continue;
		}
		const char *nl = strchr(input + pos, '\n');
		gsize end = nl ? (gsize)(nl - input) : len;
		gsize l = end - pos;
		if (l > 0 && input[end - 1] == '\r')
			l--;
		pb_smtp_server_line(f->s, input + pos, l, 0);
		pos = nl ? end + 1 : len;
	}
	char *r = g_strdup(f->replies->str);
	g_string_truncate(f->replies, 0);
	return r;
}

#define EXPECT(f, in, want)                                                    \
	do {                                                                   \
		g_autofree char *got_ = talk(f, in);                           \
		g_assert_cmpstr(got_, ==, want);                               \
	} while (0)

/* RCPT TO alice, then a one-line message: queued. */
static void
rcpt_alice_data(F *f)
{
	EXPECT(f, "RCPT TO:<alice@example.org>\r\nDATA\r\nx\r\n.\r\n",
	       "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
	       "250 2.0.0 Ok: queued as QID1\r\n");
}

static void
test_ehlo(F *f, gconstpointer data)
{
	EXPECT(f, "EHLO client.example.com\r\n",
	       "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1024\r\n"
	       "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n");
	EXPECT(f, "helo client.example.com\r\n", "250 mx.example.org\r\n");
	EXPECT(f, "EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
	EXPECT(f, "EHLO bad\x01name\r\n",
	       "501 5.5.4 Syntax: EHLO hostname\r\n");
}

static void
test_transaction(F *f, gconstpointer data)
{
	g_free(talk(f, "EHLO client.example.com\r\n"));
	EXPECT(f, "RCPT TO:<alice@example.org>\r\n",
	       "503 5.5.1 Error: need MAIL command\r\n");
	EXPECT(f, "DATA\r\n", "503 5.5.1 Error: need MAIL command\r\n");
	EXPECT(f, "MAIL FROM:<bob@example.com> SIZE=100 BODY=8BITMIME\r\n",
	       "250 2.1.0 Ok\r\n");
	EXPECT(f, "MAIL FROM:<bob@example.com>\r\n",
	       "503 5.5.1 Error: nested MAIL command\r\n");
	EXPECT(f, "DATA\r\n", "503 5.5.1 Error: need RCPT command\r\n");
	EXPECT(f, "RCPT TO:<Alice+Lists@EXAMPLE.org>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(f, "RCPT TO:<alice+lists@example.org>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(f, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	g_assert_cmpint(pb_smtp_server_next_action(f->s), ==, PB_SMTP_FLUSH);
	EXPECT(f, "Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n",
	       "250 2.0.0 Ok: queued as QID1\r\n");
	g_assert_cmpuint(f->committed, ==, 1);
	g_assert_cmpstr(f->sender, ==, "bob@example.com");
	/* duplicates (case apart) collapse */
	g_assert_cmpuint(f->rcpts->len, ==, 1);
	g_assert_cmpstr(f->rcpts->pdata[0], ==, "Alice+Lists@example.org");
	g_assert_true(g_str_has_prefix(
	    f->data->str,
	    "Received: from client.example.com ([198.51.100.7])\r\n\tby "
	    "mx.example.org (pillarbox) with ESMTP id QID1\r\n\tfor "
	    "<Alice+Lists@example.org>;\r\n\tSat, 22 Nov 2025 08:26:40 "
	    "+0000\r\n"));
	g_assert_true(g_str_has_suffix(f->data->str,
	                               "Subject: hi\r\n\r\n.dot\r\nbody\r\n"));
	g_assert_cmpuint(pb_smtp_server_accepted(f->s)->len, ==, 1);
	/* the session is ready for the next transaction */
	EXPECT(f, "MAIL FROM:<>\r\n", "250 2.1.0 Ok\r\n");
	EXPECT(f, "RSET\r\n", "250 2.0.0 Ok\r\n");
	EXPECT(f, "RCPT TO:<alice@example.org>\r\n",
	       "503 5.5.1 Error: need MAIL command\r\n");
	EXPECT(f, "QUIT\r\n", "221 2.0.0 Bye\r\n");
	g_assert_cmpint(pb_smtp_server_next_action(f->s), ==, PB_SMTP_CLOSE);
	EXPECT(f, "NOOP\r\n", "");
}

static void
test_pipelined(F *f, gconstpointer data)
{
	EXPECT(f,
	       "EHLO c\r\nMAIL FROM:<b@example.com>\r\n"
	       "RCPT TO:<nobody@example.org>\r\nRCPT TO:<alice@example.org>\r\n"
	       "DATA\r\nhello\r\n.\r\nQUIT\r\n",
	       "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1024\r\n"
	       "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
	       "250 2.1.0 Ok\r\n"
	       "550 5.1.1 <nobody@example.org>: Recipient address rejected: "
	       "User unknown\r\n"
	       "250 2.1.5 Ok\r\n"
	       "354 End data with <CR><LF>.<CR><LF>\r\n"
	       "250 2.0.0 Ok: queued as QID1\r\n221 2.0.0 Bye\r\n");
	g_assert_cmpuint(f->committed, ==, 1);
	g_assert_cmpuint(f->rcpts->len, ==, 1);
}

static void
test_relay(F *f, gconstpointer data)
{
	g_free(talk(f, "EHLO c\r\nMAIL FROM:<b@example.com>\r\n"));
	EXPECT(f, "RCPT TO:<x@elsewhere.net>\r\n",
	       "554 5.7.1 <x@elsewhere.net>: Relay access denied\r\n");
	EXPECT(f, "RCPT TO:<Postmaster>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(f, "RCPT TO:<POSTMASTER@example.org>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(f, "RCPT TO:<x@[192.0.2.1]>\r\n",
	       "554 5.7.1 <x@[192.0.2.1]>: Relay access denied\r\n");
}

static void
test_relay_allowed(F *f, gconstpointer data)
{
	g_free(talk(f, "EHLO c\r\nMAIL FROM:<b@example.com>\r\n"));
	EXPECT(f, "RCPT TO:<x@elsewhere.net>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(f, "RCPT TO:<y@elsewhere.net>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(f, "RCPT TO:<z@elsewhere.net>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(f, "RCPT TO:<w@elsewhere.net>\r\n",
	       "452 4.5.3 Error: too many recipients\r\n");
}

static void
test_params(F *f, gconstpointer data)
{
	g_free(talk(f, "EHLO c\r\n"));
	EXPECT(f, "MAIL FROM:<b@example.com> SIZE=2000\r\n",
	       "552 5.3.4 Message size exceeds fixed limit\r\n");
	EXPECT(f, "MAIL FROM:<b@example.com> SIZE=x\r\n",
	       "501 5.5.4 Bad SIZE parameter\r\n");
	EXPECT(f, "MAIL FROM:<b@example.com> BODY=BINARYMIME\r\n",
	       "501 5.5.4 Unsupported BODY parameter\r\n");
	EXPECT(f, "MAIL FROM:<b@example.com> RET=FULL\r\n",
	       "555 5.5.4 Unsupported MAIL parameter\r\n");
	EXPECT(f, "MAIL FROM:<j\xc3\xbcrgen@example.com>\r\n",
	       "553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n");
	EXPECT(f, "MAIL FROM:b@example.com\r\n",
	       "501 5.1.7 Bad sender address syntax: Address must be in angle "
	       "brackets\r\n");
	EXPECT(f, "MAIL TO:<b@example.com>\r\n",
	       "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
	EXPECT(f, "MAIL FROM:<j\xc3\xbcrgen@example.com> SMTPUTF8\r\n",
	       "250 2.1.0 Ok\r\n");
	EXPECT(f, "RCPT TO:<alice@example.org> NOTIFY=NEVER\r\n",
	       "555 5.5.4 Unsupported RCPT parameter\r\n");
	rcpt_alice_data(f);
	g_assert_nonnull(strstr(f->data->str, "with UTF8SMTP id"));
}

static void
test_other_commands(F *f, gconstpointer data)
{
	EXPECT(f, "NOOP\r\n", "250 2.0.0 Ok\r\n");
	EXPECT(f, "VRFY alice\r\n",
	       "252 2.5.2 Cannot VRFY user, but will accept message and "
	       "attempt delivery\r\n");
	EXPECT(f, "VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n");
	EXPECT(f, "EXPN staff\r\n", "502 5.5.1 Error: EXPN not available\r\n");
	EXPECT(f, "VERB\r\n", "502 5.5.1 Error: VERB is obsolete\r\n");
	EXPECT(f, "HELP\r\n",
	       "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT "
	       "HELP VRFY\r\n");
	EXPECT(f, "FOO\r\n", "500 5.5.2 Error: command not recognized\r\n");
	pb_smtp_server_line(f->s, "NOOP", 4, PB_LINE_TOO_LONG);
	EXPECT(f, "", "500 5.5.6 Error: line too long\r\n");
	pb_smtp_server_line(f->s, "NO\0OP", 5, 0);
	EXPECT(f, "", "500 5.5.2 Error: bad characters in command\r\n");
	pb_smtp_server_line(f->s, "NOOP\r", 5, PB_LINE_BARE_CR);
	EXPECT(f, "", "500 5.5.2 Error: bad characters in command\r\n");
	/* still in step */
	EXPECT(f, "NOOP\r\n", "250 2.0.0 Ok\r\n");
}

static void
test_too_many_errors(F *f, gconstpointer data)
{
	g_autofree char *all = NULL;

	for (int i = 0; i < 19; i++)
		g_free(talk(f, "BAD\r\n"));
	all = talk(f, "BAD\r\nNOOP\r\n");
	g_assert_cmpstr(all, ==,
	                "500 5.5.2 Error: command not recognized\r\n"
	                "421 4.7.0 mx.example.org Error: too many errors\r\n");
	g_assert_cmpint(pb_smtp_server_next_action(f->s), ==, PB_SMTP_CLOSE);
}

static void
test_data_refused(F *f, gconstpointer data)
{
	static const struct {
		const char *data;
		const char *reply;
	} cases[] = {
	    {"a\nb\r\n.\r\n", "554 5.6.0 Error: bare CR or LF in message "
	                      "(RFC 5321 2.3.8)\r\n"},
	    {"a\rb\r\n.\r\n", "554 5.6.0 Error: bare CR or LF in message "
	                      "(RFC 5321 2.3.8)\r\n"},
	    {"a\r\n\0\r\n.\r\n", NULL},
	};
	g_autoptr(GString) big = g_string_new(NULL);

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_free(talk(f, "RSET\r\nEHLO c\r\nMAIL FROM:<b@example.com>\r\n"
		               "RCPT TO:<alice@example.org>\r\nDATA\r\n"));
		if (cases[i].reply == NULL) {
			/* the NUL: fed with its length */
			pb_smtp_server_data(f->s, cases[i].data, 9);
			EXPECT(f, "",
			       "554 5.6.0 Error: NUL character in message\r\n");
		} else
			EXPECT(f, cases[i].data, cases[i].reply);
	}
	g_assert_cmpuint(f->committed, ==, 0);
	g_assert_cmpuint(f->aborted, ==, 3);
	for (int i = 0; i < 30; i++)
		g_string_append(big,
		                "0123456789012345678901234567890123456789\r\n");
	g_string_append(big, ".\r\nNOOP\r\n");
	g_free(talk(f, "MAIL FROM:<b@example.com>\r\n"
	               "RCPT TO:<alice@example.org>\r\nDATA\r\n"));
	EXPECT(f, big->str,
	       "552 5.3.4 Error: message too big\r\n250 2.0.0 Ok\r\n");
	g_assert_cmpuint(f->aborted, ==, 4);
}

static void
test_queue_failures(F *f, gconstpointer data)
{
	g_free(talk(f, "EHLO c\r\nMAIL FROM:<b@example.com>\r\n"
	               "RCPT TO:<alice@example.org>\r\n"));
	f->fail_begin = TRUE;
	EXPECT(f, "DATA\r\n", "451 4.3.0 Error: queue file write error\r\n");
	f->fail_begin = FALSE;
	f->fail_commit = TRUE;
	EXPECT(f,
	       "MAIL FROM:<b@example.com>\r\nRCPT TO:<alice@example.org>\r\n"
	       "DATA\r\nx\r\n.\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with "
	       "<CR><LF>.<CR><LF>\r\n451 4.3.0 Error: queue file write "
	       "error\r\n");
	g_assert_cmpuint(pb_smtp_server_accepted(f->s)->len, ==, 0);
}

static void
test_timeout(F *f, gconstpointer data)
{
	g_free(talk(f, "EHLO c\r\nMAIL FROM:<b@example.com>\r\n"
	               "RCPT TO:<alice@example.org>\r\nDATA\r\npartial"));
	pb_smtp_server_timeout(f->s);
	EXPECT(f, "", "421 4.4.2 mx.example.org Error: timeout exceeded\r\n");
	g_assert_cmpint(pb_smtp_server_next_action(f->s), ==, PB_SMTP_CLOSE);
	g_assert_cmpuint(f->aborted, ==, 1);
	g_assert_false(pb_smtp_server_in_data(f->s));
}

static void
test_starttls(F *f, gconstpointer data)
{
	PbSmtpOptions opts = {.tls_available = TRUE};
	g_autofree char *ehlo = NULL;

	pb_smtp_server_set_options(f->s, &opts);
	ehlo = talk(f, "EHLO c\r\n");
	g_assert_nonnull(strstr(ehlo, "250-STARTTLS\r\n"));
	EXPECT(f, "STARTTLS now\r\n", "501 5.5.4 Syntax: STARTTLS\r\n");
	g_free(talk(f, "MAIL FROM:<b@example.com>\r\n"));
	EXPECT(f, "STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n");
	g_assert_cmpint(pb_smtp_server_next_action(f->s), ==, PB_SMTP_STARTTLS);
	pb_smtp_server_tls_started(f->s, "TLS1.3");
	/* the session starts over: EHLO again, the transaction is gone */
	EXPECT(f, "MAIL FROM:<b@example.com>\r\n",
	       "503 5.5.1 Error: send HELO/EHLO first\r\n");
	g_clear_pointer(&ehlo, g_free);
	ehlo = talk(f, "EHLO c\r\n");
	g_assert_null(strstr(ehlo, "STARTTLS"));
	EXPECT(f, "STARTTLS\r\n", "503 5.5.1 Error: TLS already active\r\n");
}

static void
test_starttls_unavailable(F *f, gconstpointer data)
{
	g_autofree char *ehlo = talk(f, "EHLO c\r\n");

	g_assert_null(strstr(ehlo, "STARTTLS"));
	EXPECT(f, "STARTTLS\r\n", "454 4.7.0 TLS not available\r\n");
}

/* "AUTH PLAIN" with alice's good credentials. */
static char *
auth_plain_alice(void)
{
	g_autofree char *good =
	    g_base64_encode((const guchar *)"\0alice@example.org\0secret", 25);

	return g_strdup_printf("AUTH PLAIN %s\r\n", good);
}

static void
test_auth(F *f, gconstpointer data)
{
	g_autofree char *good =
	    g_base64_encode((const guchar *)"\0alice@example.org\0secret", 25);
	g_autofree char *bad =
	    g_base64_encode((const guchar *)"\0alice@example.org\0wrong", 24);
	g_autofree char *cmd_good = auth_plain_alice();
	g_autofree char *cmd_bad = g_strdup_printf("AUTH PLAIN %s\r\n", bad);
	g_autofree char *line_good = g_strdup_printf("%s\r\n", good);
	g_autofree char *ehlo = NULL;

	EXPECT(f, "AUTH PLAIN\r\n", "503 5.5.1 Error: send EHLO first\r\n");
	ehlo = talk(f, "EHLO c\r\n");
	/* from loopback (the fixture's peer): offered without TLS */
	g_assert_nonnull(strstr(ehlo, "250-AUTH PLAIN LOGIN\r\n"));
	EXPECT(f, cmd_bad, "535 5.7.8 Error: authentication failed\r\n");
	g_assert_cmpint(pb_smtp_server_next_action(f->s), ==, PB_SMTP_DELAY);
	EXPECT(f, "AUTH CRAM-MD5\r\n",
	       "504 5.5.4 Error: unsupported authentication mechanism\r\n");
	EXPECT(f, "AUTH PLAIN\r\n", "334 \r\n");
	EXPECT(f, "*\r\n", "501 5.7.0 Authentication cancelled\r\n");
	EXPECT(f, "AUTH PLAIN\r\n", "334 \r\n");
	EXPECT(f, line_good, "235 2.7.0 Authentication successful\r\n");
	EXPECT(f, cmd_good, "503 5.5.1 Error: already authenticated\r\n");
	/* authenticated: may relay */
	EXPECT(f,
	       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<x@elsewhere.net>\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
}

/* An AUTH refused before any check still counts as seen: its line may
 * have carried a password (a kept process then serves no one else). */
static void
test_auth_not_from_outside(F *f, gconstpointer data)
{
	g_free(talk(f, "EHLO c\r\nNOOP\r\n"));
	g_assert_false(pb_smtp_server_opaque_input(f->s));
	EXPECT(f, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	       "538 5.7.11 Encryption required for requested authentication "
	       "mechanism\r\n");
	g_assert_true(pb_smtp_server_opaque_input(f->s));
}

static void
test_submission(F *f, gconstpointer data)
{
	PbSmtpOptions opts = {.submission = TRUE};
	g_autofree char *login =
	    g_base64_encode((const guchar *)"alice@example.org", 17);
	g_autofree char *pass = g_base64_encode((const guchar *)"secret", 6);
	g_autofree char *l1 = g_strdup_printf("AUTH LOGIN %s\r\n", login);
	g_autofree char *l2 = g_strdup_printf("%s\r\n", pass);

	pb_smtp_server_set_options(f->s, &opts);
	g_free(talk(f, "EHLO c\r\n"));
	EXPECT(f, "MAIL FROM:<alice@example.org>\r\n",
	       "530 5.7.0 Authentication required\r\n");
	EXPECT(f, l1, "334 UGFzc3dvcmQ6\r\n");
	EXPECT(f, l2, "235 2.7.0 Authentication successful\r\n");
	EXPECT(f, "MAIL FROM:<bob@example.org>\r\n",
	       "553 5.7.1 <bob@example.org>: Sender address rejected: not "
	       "owned by user alice@example.org\r\n");
	EXPECT(f,
	       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@b.example>\r\n"
	       "DATA\r\nx\r\n.\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with "
	       "<CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as QID1\r\n");
	g_assert_nonnull(strstr(f->data->str, "with ESMTPA id"));
}

/* A peer without an IP address (AF_UNIX, a pipe) is neither loopback nor
 * in relay_networks: no plaintext AUTH, no relay. */
static void
test_no_ip_untrusted(F *f, gconstpointer data)
{
	g_autofree char *ehlo = talk(f, "EHLO c\r\n");

	g_assert_null(strstr(ehlo, "AUTH"));
	EXPECT(f, "AUTH PLAIN\r\n",
	       "538 5.7.11 Encryption required for requested authentication "
	       "mechanism\r\n");
	EXPECT(f, "MAIL FROM:<b@example.com>\r\nRCPT TO:<x@elsewhere.net>\r\n",
	       "250 2.1.0 Ok\r\n554 5.7.1 <x@elsewhere.net>: Relay access "
	       "denied\r\n");
	rcpt_alice_data(f);
	g_assert_nonnull(strstr(f->data->str, "Received: from c (local)\r\n"));
}

/* ... unless declared local (sendmail -bs, trust_local_socket). */
static void
test_no_ip_local(F *f, gconstpointer data)
{
	g_autofree char *ehlo = NULL;

	f->peer.local = TRUE;
	ehlo = talk(f, "EHLO c\r\n");
	g_assert_nonnull(strstr(ehlo, "250-AUTH PLAIN LOGIN\r\n"));
	EXPECT(f, "MAIL FROM:<b@example.com>\r\nRCPT TO:<x@elsewhere.net>\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
}

/* RFC 3207 4.2: an identity from AUTH before STARTTLS is forgotten with
 * HELO and the transaction; the relay it allowed goes with it. */
static void
test_starttls_forgets_auth(F *f, gconstpointer data)
{
	PbSmtpOptions opts = {.tls_available = TRUE};
	g_autofree char *auth = auth_plain_alice();
	g_autofree char *ehlo = NULL;

	pb_smtp_server_set_options(f->s, &opts);
	g_free(talk(f, "EHLO c\r\n"));
	EXPECT(f, auth, "235 2.7.0 Authentication successful\r\n");
	EXPECT(f, "STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n");
	pb_smtp_server_tls_started(f->s, "TLS1.3");
	ehlo = talk(f, "EHLO c\r\n");
	g_assert_nonnull(strstr(ehlo, "250-AUTH PLAIN LOGIN\r\n"));
	EXPECT(f,
	       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<x@elsewhere.net>\r\n",
	       "250 2.1.0 Ok\r\n554 5.7.1 <x@elsewhere.net>: Relay access "
	       "denied\r\n");
	rcpt_alice_data(f);
	g_assert_nonnull(strstr(f->data->str, "with ESMTPS id"));
	EXPECT(f, auth, "235 2.7.0 Authentication successful\r\n");
}

/* Submission's kernel-vouched user (sendmail -bs) is no AUTH: it stays. */
static void
test_starttls_keeps_local_user(F *f, gconstpointer data)
{
	PbSmtpOptions opts = {.tls_available = TRUE,
	                      .submission = TRUE,
	                      .user = "alice@example.org"};

	pb_smtp_server_set_options(f->s, &opts);
	pb_smtp_server_tls_started(f->s, "TLS1.3");
	g_free(talk(f, "EHLO c\r\n"));
	EXPECT(f, "MAIL FROM:<alice@example.org>\r\n", "250 2.1.0 Ok\r\n");
}

static gboolean
nothing_exists(void *data, const char *address)
{
	return FALSE;
}

static gboolean
tables_unreadable(void *data)
{
	return TRUE;
}

/* Unreadable tables: a local recipient is not refused (it may exist)
 * but deferred; postmaster and relaying need no table. */
static void
test_lookup_failed(F *f, gconstpointer data)
{
	static const PbSmtpHooks broken = {.recipient_exists = nothing_exists,
	                                   .tx_begin = tx_begin,
	                                   .tx_write = tx_write,
	                                   .tx_commit = tx_commit,
	                                   .tx_abort = tx_abort,
	                                   .now = now,
	                                   .lookup_failed = tables_unreadable};

	pb_smtp_server_free(f->s);
	f->s = pb_smtp_server_new(f->cfg, &broken, f, &f->peer, &f->out);
	EXPECT(f,
	       "EHLO c\r\nMAIL FROM:<b@example.com>\r\n"
	       "RCPT TO:<alice@example.org>\r\n"
	       "RCPT TO:<postmaster@example.org>\r\n",
	       "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1024\r\n"
	       "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
	       "250 2.1.0 Ok\r\n"
	       "451 4.3.0 <alice@example.org>: Temporary lookup failure\r\n"
	       "250 2.1.5 Ok\r\n");
}

/* The key record of tests/data/dkim/rsa2048.pem, for the verifier. */
static GPtrArray *
dkim_lookup(const char *name, gpointer data, GError **error)
{
	GPtrArray *out =
	    g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);

	g_ptr_array_add(out, pb_dkim_key_record(data, error));
	return out;
}

static PbDkimSigner *
test_signer(PbPrivKey **key)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *pem = NULL;
	char *domains[] = {"example.org", NULL};
	PbDkimSigner *signer;

	g_assert_true(
	    g_file_get_contents(g_test_get_filename(G_TEST_DIST, "data", "dkim",
	                                            "rsa2048.pem", NULL),
	                        &pem, NULL, NULL));
	signer = pb_dkim_signer_new_from_pem("sel", NULL, domains, NULL, pem,
	                                     NULL, &error);
	g_assert_no_error(error);
	*key = pb_privkey_import_pem(pem, strlen(pem), &error);
	g_assert_no_error(error);
	return signer;
}

/* relay_networks sending out: signed before commit, and the signature
 * verifies over what was queued; mail coming in is not signed, nor is
 * a message for local recipients only. */
static void
test_dkim(F *f, gconstpointer data)
{
	g_autoptr(PbPrivKey) key = NULL;
	g_autoptr(PbDkimSigner) signer = test_signer(&key);
	PbSmtpOptions opts = {.dkim = signer};
	g_autoptr(PbDkimVerify) v = pb_dkim_verify_new();
	g_autoptr(GPtrArray) results = NULL;
	static const char msg[] = "From: Alice <alice@example.org>\r\n"
	                          "Subject: hi\r\n\r\nbody\r\n.\r\n";

	pb_smtp_server_set_options(f->s, &opts);
	g_free(talk(f, "EHLO client.example.com\r\n"
	               "MAIL FROM:<alice@example.org>\r\n"
	               "RCPT TO:<alice@example.org>\r\nDATA\r\n"));
	g_free(talk(f, msg));
	g_assert_cmpuint(f->committed, ==, 1);
	g_assert_cmpuint(f->signed_calls, ==, 0); /* local only */
	g_free(talk(f, "MAIL FROM:<alice@example.org>\r\n"
	               "RCPT TO:<bob@example.com>\r\nDATA\r\n"));
	g_free(talk(f, msg));
	g_assert_cmpuint(f->committed, ==, 2);
	g_assert_cmpuint(f->signed_calls, ==, 1);
	g_assert_cmpstr(f->domain, ==, "example.org");
	g_assert_true(g_str_has_prefix(f->fields, "DKIM-Signature: v=1;"));
	pb_dkim_verify_feed(v, f->fields, strlen(f->fields));
	pb_dkim_verify_feed(v, f->data->str, f->data->len);
	results = pb_dkim_verify_finish(v, 1763800000, dkim_lookup, key);
	g_assert_cmpuint(results->len, ==, 1);
	g_assert_cmpint(((PbDkimResult *)results->pdata[0])->status, ==,
	                PB_DKIM_PASS);
}

static void
test_dkim_inbound(F *f, gconstpointer data)
{
	g_autoptr(PbPrivKey) key = NULL;
	g_autoptr(PbDkimSigner) signer = test_signer(&key);
	PbSmtpOptions opts = {.dkim = signer};

	pb_smtp_server_set_options(f->s, &opts);
	g_free(talk(f, "EHLO client.example.com\r\n"
	               "MAIL FROM:<x@example.org>\r\n"
	               "RCPT TO:<alice@example.org>\r\nDATA\r\n"
	               "From: x@example.org\r\n\r\nx\r\n.\r\n"));
	g_assert_cmpuint(f->committed, ==, 1);
	g_assert_cmpuint(f->signed_calls, ==, 0);
}

/* The inbound checks: Authentication-Results fields of ours removed
 * from what is stored (another's kept); a message from outside is
 * verified; a refusal from the checks is the answer, and nothing is
 * committed. */
static const char ar_msg[] =
    "Authentication-Results: mx.example.org; dkim=pass\r\n"
    "\tdmarc=pass\r\n"
    "Authentication-Results: other.example; spf=pass\r\n"
    "From: a@example.com\r\n\r\nx\r\n.\r\n";

/* A whole session sending ar_msg to alice. */
static void
send_ar_msg(F *f)
{
	g_free(talk(f, "EHLO client.example.com\r\n"
	               "MAIL FROM:<a@example.com>\r\n"
	               "RCPT TO:<alice@example.org>\r\nDATA\r\n"));
	g_free(talk(f, ar_msg));
}

static void
test_checks_inbound(F *f, gconstpointer data)
{
	send_ar_msg(f);
	g_assert_cmpuint(f->committed, ==, 1);
	g_assert_cmpuint(f->checks, ==, 1);
	g_assert_cmpuint(f->removed, ==, 1);
	g_assert_true(f->verified);
	g_assert_null(strstr(f->data->str, "mx.example.org; dkim"));
	g_assert_nonnull(strstr(f->data->str, "\r\nAuthentication-Results: "
	                                      "other.example; spf=pass\r\n"
	                                      "From: a@example.com\r\n"));
	f->refusal = "550 5.7.1 Error: no";
	g_free(talk(f, "MAIL FROM:<a@example.com>\r\n"
	               "RCPT TO:<alice@example.org>\r\nDATA\r\n"));
	EXPECT(f, ar_msg, "550 5.7.1 Error: no\r\n");
	g_assert_cmpuint(f->committed, ==, 1);
	g_assert_cmpuint(f->aborted, ==, 1);
	/* the session goes on */
	EXPECT(f, "MAIL FROM:<a@example.com>\r\n", "250 2.1.0 Ok\r\n");
}

/* relay_networks: nothing verified, forged fields still removed. */
static void
test_checks_relay(F *f, gconstpointer data)
{
	send_ar_msg(f);
	g_assert_cmpuint(f->committed, ==, 1);
	g_assert_cmpuint(f->checks, ==, 1);
	g_assert_cmpuint(f->removed, ==, 1);
	g_assert_false(f->verified);
}

/* [auth] checks = no: the hook is not called, nothing removed. */
static void
test_checks_off(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *text =
	    g_strconcat(conf, "[auth]\nchecks = no\n", NULL);
	g_autoptr(PbConfig) off =
	    pb_config_load_data(text, strlen(text), "t", "/tmp", &error);
	g_autoptr(PbSmtpServer) s = NULL;

	g_assert_no_error(error);
	s = pb_smtp_server_new(off, &hooks, f, &f->peer, &f->out);
	pb_smtp_server_free(f->s);
	f->s = g_steal_pointer(&s);
	send_ar_msg(f);
	g_assert_cmpuint(f->committed, ==, 1);
	g_assert_cmpuint(f->checks, ==, 0);
	g_assert_nonnull(strstr(f->data->str, "mx.example.org; dkim"));
	pb_smtp_server_free(f->s);
	f->s = pb_smtp_server_new(f->cfg, &hooks, f, &f->peer, &f->out);
}

#define ADD(path, fn, ip) g_test_add(path, F, ip, setup, fn, teardown)

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	ADD("/smtp-server/ehlo", test_ehlo, NULL);
	ADD("/smtp-server/transaction", test_transaction, NULL);
	ADD("/smtp-server/pipelined", test_pipelined, NULL);
	ADD("/smtp-server/lookup-failed", test_lookup_failed, NULL);
	ADD("/smtp-server/relay-denied", test_relay, NULL);
	ADD("/smtp-server/relay-allowed", test_relay_allowed, "192.0.2.9");
	ADD("/smtp-server/dkim/outbound", test_dkim, "192.0.2.9");
	ADD("/smtp-server/dkim/inbound", test_dkim_inbound, NULL);
	ADD("/smtp-server/checks/inbound", test_checks_inbound, NULL);
	ADD("/smtp-server/checks/relay", test_checks_relay, "192.0.2.9");
	ADD("/smtp-server/checks/off", test_checks_off, NULL);
	ADD("/smtp-server/params", test_params, NULL);
	ADD("/smtp-server/other-commands", test_other_commands, NULL);
	ADD("/smtp-server/too-many-errors", test_too_many_errors, NULL);
	ADD("/smtp-server/data-refused", test_data_refused, NULL);
	ADD("/smtp-server/queue-failures", test_queue_failures, NULL);
	ADD("/smtp-server/timeout", test_timeout, NULL);
	ADD("/smtp-server/starttls", test_starttls, NULL);
	ADD("/smtp-server/starttls-unavailable", test_starttls_unavailable,
	    NULL);
	ADD("/smtp-server/auth", test_auth, "127.0.0.1");
	ADD("/smtp-server/auth-not-from-outside", test_auth_not_from_outside,
	    NULL);
	ADD("/smtp-server/submission", test_submission, "127.0.0.1");
	ADD("/smtp-server/no-ip/untrusted", test_no_ip_untrusted, "");
	ADD("/smtp-server/no-ip/local", test_no_ip_local, "");
	ADD("/smtp-server/starttls/forgets-auth", test_starttls_forgets_auth,
	    "127.0.0.1");
	ADD("/smtp-server/starttls/keeps-local-user",
	    test_starttls_keeps_local_user, NULL);
	return g_test_run();
}
