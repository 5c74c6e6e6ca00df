/* test-smtp-client.c - the reply parser, and the client against a
 * scripted server on the other end of a socketpair. */
#include "config.h"
#include "conn.h"
#include "error.h"
#include "remote.h"
#include "smtp-client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void
test_reply_line(void)
{
	guint code;
	gboolean last;
	const char *text;

	g_assert_true(
	    pb_smtp_reply_line("250-PIPELINING", 14, &code, &last, &text));
	g_assert_cmpuint(code, ==, 250);
	g_assert_false(last);
	g_assert_cmpstr(text, ==, "PIPELINING");
	g_assert_true(pb_smtp_reply_line("354", 3, &code, &last, &text));
	g_assert_true(last);
	g_assert_cmpstr(text, ==, "");
	/* found by fuzz-smtp-client: the text of a bare "250" lay outside
	 * the line, and read_reply copied 512 octets from there (its length
	 * is counted from the line's start) */
	{
		static const char bare[] = "250", spaced[] = "250 ";
		g_assert_true(
		    pb_smtp_reply_line(bare, 3, &code, &last, &text));
		g_assert_true(text >= bare && text <= bare + 3);
		g_assert_true(
		    pb_smtp_reply_line(spaced, 4, &code, &last, &text));
		g_assert_true(text >= spaced && text <= spaced + 4);
	}
	g_assert_false(pb_smtp_reply_line("25", 2, &code, &last, &text));
	g_assert_false(pb_smtp_reply_line("hello", 5, &code, &last, &text));
	g_assert_false(pb_smtp_reply_line("250x", 4, &code, &last, &text));
	g_assert_false(pb_smtp_reply_line("650 no", 6, &code, &last, &text));
}

static void
test_caps(void)
{
	const char *lines[] = {"mx.example.net hello",
	                       "PIPELINING",
	                       "SIZE 1000",
	                       "8BITMIME",
	                       "STARTTLS",
	                       NULL};
	PbSmtpCaps caps;

	pb_smtp_caps_parse(&caps, lines);
	g_assert_true(caps.esmtp);
	g_assert_true(caps.pipelining);
	g_assert_true(caps.size);
	g_assert_cmpuint(caps.size_limit, ==, 1000);
	g_assert_true(caps.starttls);
	g_assert_false(caps.smtputf8);
}

/* The scripted server: SCRIPT is what it sends, in order; "<" lines
 * mean "read one line first" and what it read is logged in HEARD. */
typedef struct {
	int fd;
	const char *const *script;
	GString *heard;
} Server;

static gpointer
serve(gpointer data)
{
	Server *s = data;
	FILE *in = fdopen(dup(s->fd), "r");
	char line[8192];

	for (guint i = 0; s->script[i]; i++) {
		const char *step = s->script[i];
		if (step[0] == '<') {
			if (fgets(line, sizeof line, in) == NULL)
				break;
			g_string_append(s->heard, line);
		} else if (g_str_equal(step, "DATA>")) {
			/* read the message up to the lone dot */
			while (fgets(line, sizeof line, in) != NULL) {
				g_string_append(s->heard, line);
				if (g_str_equal(line, ".\r\n"))
					break;
			}
		} else if (step[0] == '~') {
			/* silence until the client hangs up */
			while (fgets(line, sizeof line, in) != NULL)
				;
		} else if (step[0] != '-' &&
		           write(s->fd, step, strlen(step)) < 0)
			break;
	}
	fclose(in);
	shutdown(s->fd, SHUT_RDWR);
	return NULL;
}

typedef struct {
	PbConfig *cfg;
	int fds[2];
	PbConn *conn;
	PbSmtpClient *c;
	Server server;
	GThread *thread;
	int msg_fd;
	guint64 msg_size;
} F;

static const char conf[] = "[delivery]\nhelo = out.example.org\n"
                           "greeting_timeout = 2s\ncommand_timeout = 2s\n";
static const char message[] = "Subject: x\r\n\r\n.dot first\r\nplain\r\n..\r\n";

static void
start(F *f, const char *const *script)
{
	g_autoptr(GError) error = NULL;
	char tmpl[] = "/tmp/pbclient-XXXXXX";

	f->cfg = pb_config_load_data(conf, strlen(conf), "t", "/tmp", &error);
	g_assert_no_error(error);
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, f->fds), ==, 0);
	f->server = (Server){f->fds[1], script, g_string_new(NULL)};
	f->thread = g_thread_new("server", serve, &f->server);
	f->conn = pb_conn_new(f->fds[0], f->fds[0]);
	f->c = pb_smtp_client_new(f->cfg, f->conn);
	f->msg_fd = g_mkstemp(tmpl);
	unlink(tmpl);
	g_assert_cmpint(write(f->msg_fd, message, strlen(message)), ==,
	                (gssize)strlen(message));
	f->msg_size = strlen(message);
}

static void
finish(F *f)
{
	pb_smtp_client_free(f->c);
	pb_conn_free(f->conn);
	shutdown(f->fds[0], SHUT_RDWR);
	if (f->thread)
		g_thread_join(f->thread);
	close(f->fds[0]);
	close(f->fds[1]);
	close(f->msg_fd);
	g_string_free(f->server.heard, TRUE);
	pb_config_free(f->cfg);
}

/* Lets the server finish, so that HEARD is complete. */
static void
wait_server(F *f)
{
	shutdown(f->fds[0], SHUT_WR);
	g_thread_join(f->thread);
	f->thread = NULL;
}

static void
test_pipelined_mixed(void)
{
	static const char *const script[] = {
	    "220 mx.example.net ESMTP\r\n",
	    "<EHLO",
	    "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 "
	    "8BITMIME\r\n",
	    "<MAIL",
	    "<RCPT",
	    "<RCPT",
	    "<RCPT",
	    "<DATA",
	    "250 2.1.0 ok\r\n250 2.1.5 ok\r\n450 4.2.1 mailbox "
	    "busy\r\n550-5.1.1 "
	    "no\r\n550 5.1.1 such user\r\n354 go ahead\r\n",
	    "DATA>",
	    "250 2.0.0 queued as X\r\n",
	    "<QUIT",
	    "221 bye\r\n",
	    NULL};
	char *rcpts[] = {"a@example.net", "b@example.net", "c@example.net",
	                 NULL};
	F f = {0};
	g_autoptr(PbSmtpReply) refusal = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(PbSmtpResult) res = NULL;
	PbSmtpReply *r;

	start(&f, script);
	g_assert_true(pb_smtp_client_start(f.c, &refusal, &error));
	g_assert_true(pb_smtp_client_caps(f.c)->pipelining);
	res = pb_smtp_client_send(f.c, "s@example.org", rcpts, f.msg_fd,
	                          f.msg_size, FALSE);
	g_assert_false(res->dropped);
	g_assert_cmpuint(res->mail->code, ==, 250);
	r = res->rcpt->pdata[1];
	g_assert_cmpuint(r->code, ==, 450);
	g_assert_cmpstr(r->dsn, ==, "4.2.1");
	g_assert_cmpstr(r->text, ==, "450 4.2.1 mailbox busy");
	r = res->rcpt->pdata[2];
	g_assert_cmpstr(r->text, ==, "550 5.1.1 no 5.1.1 such user");
	g_assert_cmpstr(r->dsn, ==, "5.1.1");
	g_assert_cmpuint(res->final->code, ==, 250);
	pb_smtp_client_quit(f.c);
	wait_server(&f);
	g_assert_nonnull(
	    strstr(f.server.heard->str,
	           "EHLO out.example.org\r\n"
	           "MAIL FROM:<s@example.org> SIZE=37 BODY=8BITMIME\r\n"
	           "RCPT TO:<a@example.net>\r\n"));
	/* dot-stuffed */
	g_assert_nonnull(strstr(f.server.heard->str,
	                        "Subject: x\r\n\r\n..dot first\r\nplain\r\n"
	                        "...\r\n.\r\nQUIT\r\n"));
	finish(&f);
}

/* The envelope's prepend goes first, counted in SIZE=. */
static void
test_prefixed(void)
{
	static const char *const script[] = {
	    "220 mx.example.net ESMTP\r\n",
	    "<EHLO",
	    "250-mx.example.net\r\n250-PIPELINING\r\n250 SIZE 100000\r\n",
	    "<MAIL",
	    "<RCPT",
	    "<DATA",
	    "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n",
	    "DATA>",
	    "250 2.0.0 queued as X\r\n",
	    NULL};
	char *rcpts[] = {"a@example.net", NULL};
	static const char prefix[] = "DKIM-Signature: v=1;\r\n\tb=x\r\n";
	F f = {0};
	g_autoptr(PbSmtpReply) refusal = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(PbSmtpResult) res = NULL;
	g_autofree char *mail = NULL;

	start(&f, script);
	g_assert_true(pb_smtp_client_start(f.c, &refusal, &error));
	res = pb_smtp_client_send_prefixed(f.c, "s@example.org", rcpts, prefix,
	                                   f.msg_fd, f.msg_size, FALSE);
	g_assert_cmpuint(res->final->code, ==, 250);
	wait_server(&f);
	mail = g_strdup_printf(
	    "MAIL FROM:<s@example.org> SIZE=%" G_GUINT64_FORMAT "\r\n",
	    (guint64)f.msg_size + strlen(prefix));
	g_assert_nonnull(strstr(f.server.heard->str, mail));
	g_assert_nonnull(strstr(f.server.heard->str,
	                        "DATA\r\nDKIM-Signature: v=1;\r\n\tb=x\r\n"
	                        "Subject: x\r\n"));
	finish(&f);
}

static void
test_helo_fallback_and_refusal(void)
{
	static const char *const script[] = {"220 old.example.net\r\n",
	                                     "<EHLO",
	                                     "502 what?\r\n",
	                                     "<HELO",
	                                     "250 old.example.net\r\n",
	                                     "<MAIL",
	                                     "553 5.7.1 sender refused\r\n",
	                                     NULL};
	char *rcpts[] = {"a@example.net", NULL};
	F f = {0};
	g_autoptr(PbSmtpReply) refusal = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(PbSmtpResult) res = NULL;

	start(&f, script);
	g_assert_true(pb_smtp_client_start(f.c, &refusal, &error));
	g_assert_false(pb_smtp_client_caps(f.c)->esmtp);
	res = pb_smtp_client_send(f.c, "", rcpts, f.msg_fd, f.msg_size, TRUE);
	g_assert_cmpuint(res->mail->code, ==, 553);
	g_assert_null(res->rcpt->pdata[0]);
	g_assert_null(res->final);
	wait_server(&f);
	g_assert_nonnull(strstr(f.server.heard->str, "MAIL FROM:<>\r\n"));
	finish(&f);
}

/* A transaction whose recipients were all refused, a 354 all the same
 * (RFC 2920), twice: the second begins with RSET. Found by
 * fuzz-smtp-client: the second refusal's reply overwrote RSET's without
 * freeing it (a leak per such transaction; LeakSanitizer sees it). */
static void
test_refused_twice(void)
{
	static const char *const script[] = {
	    "220 mx.example.net ESMTP\r\n",
	    "<EHLO",
	    "250-mx.example.net\r\n250 PIPELINING\r\n",
	    "<MAIL",
	    "<RCPT",
	    "<DATA",
	    "250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go ahead\r\n",
	    "<.",
	    "554 5.5.1 no valid recipients\r\n",
	    "<RSET",
	    "250 2.0.0 reset\r\n",
	    "<MAIL",
	    "<RCPT",
	    "<DATA",
	    "250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go ahead\r\n",
	    "<.",
	    "554 5.5.1 no valid recipients\r\n",
	    NULL};
	char *rcpts[] = {"a@example.net", NULL};
	F f = {0};
	g_autoptr(PbSmtpReply) refusal = NULL;
	g_autoptr(GError) error = NULL;

	start(&f, script);
	g_assert_true(pb_smtp_client_start(f.c, &refusal, &error));
	for (int i = 0; i < 2; i++) {
		g_autoptr(PbSmtpResult) res = pb_smtp_client_send(
		    f.c, "s@example.org", rcpts, f.msg_fd, f.msg_size, FALSE);
		g_assert_false(res->dropped);
		g_assert_cmpuint(
		    ((PbSmtpReply *)res->rcpt->pdata[0])->code, ==, 550);
		g_assert_null(res->final);
	}
	wait_server(&f);
	g_assert_nonnull(strstr(f.server.heard->str,
	                        "DATA\r\n.\r\nRSET\r\nMAIL FROM:"));
	finish(&f);
}

static void
test_greeting_refused(void)
{
	static const char *const script[] = {"554 5.7.1 go away\r\n", NULL};
	F f = {0};
	g_autoptr(PbSmtpReply) refusal = NULL;
	g_autoptr(GError) error = NULL;

	start(&f, script);
	g_assert_false(pb_smtp_client_start(f.c, &refusal, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_PERM);
	g_assert_cmpuint(refusal->code, ==, 554);
	finish(&f);
}

static void
test_endless_and_silent(void)
{
	g_autoptr(GString) flood = g_string_new(NULL);
	const char *script[] = {NULL, NULL};
	F f = {0};
	g_autoptr(PbSmtpReply) refusal = NULL;
	g_autoptr(GError) error = NULL;
	gint64 t0;

	/* a reply that never ends: refused after the line bound */
	for (int i = 0; i < PB_SMTP_REPLY_MAX_LINES + 5; i++)
		g_string_append(flood, "220-blah blah\r\n");
	script[0] = flood->str;
	start(&f, script);
	g_assert_false(pb_smtp_client_start(f.c, &refusal, &error));
	g_assert_null(refusal);
	finish(&f);
	g_clear_error(&error);
	/* a server that says nothing: the greeting timeout (2 s) */
	script[0] = "~";
	memset(&f, 0, sizeof f);
	start(&f, script);
	t0 = g_get_monotonic_time();
	g_assert_false(pb_smtp_client_start(f.c, &refusal, &error));
	g_assert_cmpint(g_get_monotonic_time() - t0, <, 4 * G_USEC_PER_SEC);
	finish(&f);
}

/* Replaces the queued message by TEXT (LEN octets). */
static void
set_message(F *f, const char *text, gsize len)
{
	g_assert_cmpint(ftruncate(f->msg_fd, 0), ==, 0);
	g_assert_cmpint(pwrite(f->msg_fd, text, len, 0), ==, (gssize)len);
	f->msg_size = len;
}

#define GREET_PIPELINING                                                       \
	"220 mx.example.net ESMTP\r\n", "<EHLO",                               \
	    "250-mx.example.net\r\n250 PIPELINING\r\n"

/* The greeting, EHLO with PIPELINING, then MAIL, three RCPTs and DATA
 * read at once. */
#define THREE_PIPELINED                                                        \
	GREET_PIPELINING, "<MAIL", "<RCPT", "<RCPT", "<RCPT", "<DATA"

static PbSmtpResult *
send_three(F *f, const char *const *script)
{
	char *rcpts[] = {"a@example.net", "b@example.net", "c@example.net",
	                 NULL};
	g_autoptr(PbSmtpReply) refusal = NULL;
	g_autoptr(GError) error = NULL;

	start(f, script);
	g_assert_true(pb_smtp_client_start(f->c, &refusal, &error));
	return pb_smtp_client_send(f->c, "s@example.org", rcpts, f->msg_fd,
	                           f->msg_size, FALSE);
}

/* The server hangs up after MAIL's reply, or after some RCPT replies:
 * the result still has an entry per recipient, NULL for no reply. */
static void
test_lost_during_rcpts(void)
{
	static const char *const after_mail[] = {THREE_PIPELINED,
	                                         "250 2.1.0 ok\r\n", NULL};
	static const char *const after_one[] = {
	    THREE_PIPELINED, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n", NULL};
	static const char *const unpipelined[] = {
	    "220 mx\r\n", "<EHLO", "250 mx\r\n",       "<MAIL",
	    "250 ok\r\n", "<RCPT", "550 5.1.1 no\r\n", "<RCPT",
	    NULL};
	const char *const *scripts[] = {after_mail, after_one, unpipelined};
	const guint answered[] = {0, 1, 1};

	for (guint i = 0; i < G_N_ELEMENTS(scripts); i++) {
		F f = {0};
		g_autoptr(PbSmtpResult) res = send_three(&f, scripts[i]);

		g_assert_true(res->dropped);
		g_assert_false(res->after_dot);
		g_assert_cmpuint(res->mail->code, ==, 250);
		g_assert_cmpuint(res->rcpt->len, ==, 3);
		for (guint j = 0; j < 3; j++)
			if (j < answered[i])
				g_assert_nonnull(res->rcpt->pdata[j]);
			else
				g_assert_null(res->rcpt->pdata[j]);
		g_assert_null(res->final);
		finish(&f);
	}
}

static const char *const accept_all[] = {GREET_PIPELINING,
                                         "<MAIL",
                                         "<RCPT",
                                         "<DATA",
                                         "250 ok\r\n250 ok\r\n354 go\r\n",
                                         "DATA>",
                                         "250 2.0.0 queued\r\n",
                                         NULL};

/* One transaction of SIZE octets of the message for one recipient. */
static PbSmtpResult *
send_one(F *f, guint64 size)
{
	char *rcpts[] = {"a@example.net", NULL};
	g_autoptr(PbSmtpReply) refusal = NULL;
	g_autoptr(GError) error = NULL;

	g_assert_true(pb_smtp_client_start(f->c, &refusal, &error));
	return pb_smtp_client_send(f->c, "s@example.org", rcpts, f->msg_fd,
	                           size, FALSE);
}

/* Exactly the recorded size goes out, however long the file. */
static void
test_exact_size(void)
{
	static const char text[] = "Subject: a\r\n\r\nbody\r\nTRAILING GARBAGE";
	g_autoptr(PbSmtpResult) res = NULL;
	F f = {0};

	start(&f, accept_all);
	set_message(&f, text, strlen(text));
	res = send_one(&f, strlen("Subject: a\r\n\r\nbody\r\n"));
	g_assert_false(res->dropped);
	g_assert_cmpuint(res->final->code, ==, 250);
	wait_server(&f);
	g_assert_true(g_str_has_suffix(f.server.heard->str,
	                               "DATA\r\nSubject: a\r\n\r\nbody\r\n"
	                               ".\r\n"));
	g_assert_null(strstr(f.server.heard->str, "TRAILING"));
	finish(&f);
}

/* A file shorter than its envelope says: deferred, and the final dot
 * never sent, so the server cannot take a truncated message. */
static void
test_short_file(void)
{
	g_autoptr(PbSmtpResult) res = NULL;
	F f = {0};

	start(&f, accept_all);
	res = send_one(&f, f.msg_size + 100000);
	g_assert_true(res->dropped);
	g_assert_false(res->after_dot);
	g_assert_null(res->final);
	g_assert_nonnull(strstr(res->failure, "not the 100037"));
	/* the client hangs up in the middle of the data */
	shutdown(f.fds[0], SHUT_RDWR);
	g_thread_join(f.thread);
	f.thread = NULL;
	g_assert_null(strstr(f.server.heard->str, "\r\n.\r\n"));
	finish(&f);
}

/* No bare CR or LF reaches the wire; dot-stuffing stays right after
 * every kind of line end. */
static void
test_bare_cr_lf(void)
{
	static const char text[] = "Subject: x\r\n\r\nbody\r.\rX-Smuggled: yes"
	                           "\n.lf\r\n.crlf\r\r\n\rend";
	static const char wire[] = "Subject: x\r\n\r\nbody\r\n..\r\nX-Smuggled:"
	                           " yes\r\n..lf\r\n..crlf\r\n\r\n\r\nend\r\n"
	                           ".\r\n";
	g_autoptr(PbSmtpResult) res = NULL;
	F f = {0};

	/* the pure form, split at every offset */
	for (gsize cut = 0; cut <= strlen(text); cut++) {
		g_autoptr(GString) out = g_string_new(NULL);
		PbSmtpStuffer st = PB_SMTP_STUFFER_INIT;

		pb_smtp_stuff(&st, text, cut, out);
		pb_smtp_stuff(&st, text + cut, strlen(text) - cut, out);
		pb_smtp_stuff_end(&st, out);
		g_assert_cmpstr(out->str, ==, wire);
	}
	start(&f, accept_all);
	set_message(&f, text, strlen(text));
	res = send_one(&f, f.msg_size);
	g_assert_cmpuint(res->final->code, ==, 250);
	wait_server(&f);
	g_assert_true(g_str_has_suffix(f.server.heard->str, wire));
	finish(&f);
}

/* ---- remote.c over a loopback listener ---- */

typedef struct {
	int listener;
	Server server;
} Tcp;

static gpointer
serve_tcp(gpointer data)
{
	Tcp *t = data;

	t->server.fd = accept(t->listener, NULL, NULL);
	g_assert_cmpint(t->server.fd, >=, 0);
	serve(&t->server);
	close(t->server.fd);
	return NULL;
}

static int
listen_loopback(guint *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	g_assert_cmpint(listen(fd, 4), ==, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&sa, &len), ==, 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void
collect(void *ctx, const PbRemoteMessage *msg, guint rcpt_index,
        const PbOutcome *o)
{
	g_string_append_printf(ctx, "%u %d %s %s\n", rcpt_index, (int)o->kind,
	                       o->dsn, o->reply);
	(void)msg;
}

/* remote.c's settle(): a server that answers MAIL and some RCPTs and
 * then hangs up: each recipient is reported once, the unanswered ones
 * deferred (this crashed: a read past the replies). */
static void
test_remote_lost_during_rcpts(void)
{
	static const char *const script[] = {
	    THREE_PIPELINED, "250 2.1.0 ok\r\n550 5.1.1 no such user\r\n",
	    NULL};
	g_autoptr(PbConfig) cfg = NULL;
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	g_autoptr(GPtrArray) msgs = g_ptr_array_new();
	g_autoptr(GString) got = g_string_new(NULL);
	g_autoptr(GError) error = NULL;
	g_autofree char *text = NULL;
	PbRemoteMessage m = {env, -1, g_array_new(FALSE, FALSE, sizeof(guint))};
	Tcp t = {0};
	GThread *thread;
	guint port;

	t.listener = listen_loopback(&port);
	text = g_strdup_printf("%s[routes]\nexample.net = 127.0.0.1:%u\n", conf,
	                       port);
	cfg = pb_config_load_data(text, strlen(text), "t", "/tmp", &error);
	g_assert_no_error(error);
	t.server = (Server){-1, script, g_string_new(NULL)};
	thread = g_thread_new("server", serve_tcp, &t);
	env->id = g_strdup("0000000000000000000001");
	for (guint i = 0; i < 3; i++) {
		g_autofree char *a = g_strdup_printf("r%u@example.net", i);
		pb_envelope_add_rcpt(env, a);
		g_array_append_val(m.rcpts, i);
	}
	g_ptr_array_add(msgs, &m);
	pb_remote_deliver(cfg, "example.net", msgs, collect, got);
	g_thread_join(thread);
	g_assert_cmpstr(got->str, ==,
	                "0 2 5.1.1 550 5.1.1 no such user\n"
	                "1 1 4.4.2 lost connection during the transaction\n"
	                "2 1 4.4.2 lost connection during the transaction\n");
	g_array_unref(m.rcpts);
	g_string_free(t.server.heard, TRUE);
	close(t.listener);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	/* a server that hangs up must be an error, not a signal */
	signal(SIGPIPE, SIG_IGN);
	g_test_add_func("/smtp-client/reply-line", test_reply_line);
	g_test_add_func("/smtp-client/caps", test_caps);
	g_test_add_func("/smtp-client/pipelined-mixed", test_pipelined_mixed);
	g_test_add_func("/smtp-client/prefixed", test_prefixed);
	g_test_add_func("/smtp-client/helo-fallback",
	                test_helo_fallback_and_refusal);
	g_test_add_func("/smtp-client/greeting-refused", test_greeting_refused);
	g_test_add_func("/smtp-client/refused-twice", test_refused_twice);
	g_test_add_func("/smtp-client/endless-and-silent",
	                test_endless_and_silent);
	g_test_add_func("/smtp-client/lost-during-rcpts",
	                test_lost_during_rcpts);
	g_test_add_func("/smtp-client/exact-size", test_exact_size);
	g_test_add_func("/smtp-client/short-file", test_short_file);
	g_test_add_func("/smtp-client/bare-cr-lf", test_bare_cr_lf);
	g_test_add_func("/remote/lost-during-rcpts",
	                test_remote_lost_during_rcpts);
	return g_test_run();
}
