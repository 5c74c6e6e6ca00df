/* test-dsn.c - bounces and delay notices as queued: their envelope,
 * their MIME structure and fields, the header-only attachment, and the
 * rules that keep reports from looping. */
#include "config.h"
#include "dsn.h"
#include "error.h"
#include "queue.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static const char conf[] = "[main]\nhostname = mx.example.org\n"
                           "domains = example.org\n";

typedef struct {
	char *dir;
	PbConfig *cfg;
	PbQueue *q;
	int fd; /* the original message */
	char *orig_id;
} F;

static const char original[] = "Received: from a by b\r\n"
                               "Subject: the original\r\n"
                               "From: sender@example.com\r\n"
                               "\r\n"
                               "SECRET BODY TEXT\r\n";

static void
setup(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	PbQueueTx *tx;
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	g_autofree char *path = NULL;

	f->dir = g_dir_make_tmp("pbdsn-XXXXXX", &error);
	f->cfg = pb_config_load_data(conf, strlen(conf), "t", f->dir, &error);
	g_assert_no_error(error);
	f->q = pb_queue_open(f->cfg->queue, &error);
	g_assert_no_error(error);
	tx = pb_queue_tx_begin(f->q, &error);
	g_assert_true(
	    pb_queue_tx_write(tx, original, strlen(original), &error));
	pb_envelope_add_rcpt(env, "x@example.net");
	g_assert_true(pb_queue_tx_commit(tx, env, &error));
	f->orig_id = g_strdup(env->id);
	path = g_build_filename(f->cfg->queue, "msg", f->orig_id, NULL);
	f->fd = open(path, O_RDONLY);
	g_assert_cmpint(f->fd, >=, 0);
}

static void
teardown(F *f, gconstpointer data)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);

	close(f->fd);
	g_assert_cmpint(system(cmd), ==, 0);
	pb_queue_free(f->q);
	pb_config_free(f->cfg);
	g_free(f->orig_id);
	g_free(f->dir);
}

static PbEnvelope *
envelope(F *f, const char *sender)
{
	PbEnvelope *env = pb_envelope_new();
	PbRecipient *r;

	env->id = g_strdup(f->orig_id);
	g_free(env->sender);
	env->sender = g_strdup(sender);
	env->arrival = 1763800000;
	r = pb_envelope_add_rcpt(env, "gone@example.net");
	r->state = PB_RCPT_FAILED;
	r->dsn = g_strdup("5.1.1");
	pb_recipient_add_attempt(r, 1763800100,
	                         "mx.example.net[192.0.2.1]:25 tls=none",
	                         "550 5.1.1 <gone@example.net>: no such user");
	r = pb_envelope_add_rcpt(env, "slow@example.com");
	r->orig = g_strdup("alias@example.org");
	r->dsn = g_strdup("4.4.1");
	pb_recipient_add_attempt(r, 1763800100, "mx.example.com[192.0.2.2]:25",
	                         "451 4.4.1 try later");
	pb_recipient_add_attempt(r, 1763801000, "mx.example.com[192.0.2.2]:25",
	                         "451 4.4.1 still later");
	r = pb_envelope_add_rcpt(env, "done@example.com");
	r->state = PB_RCPT_SENT;
	return env;
}

/* Queues the report; returns its data and envelope. */
static char *
report(F *f, PbDsnKind kind, PbEnvelope *env, PbEnvelope **out)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *id = NULL;
	g_autofree char *path = NULL;
	char *data = NULL;

	g_assert_true(pb_dsn_queue(f->q, f->cfg, kind, env, f->fd, 1763900000,
	                           &id, &error));
	g_assert_no_error(error);
	if (id == NULL)
		return NULL;
	*out = pb_queue_read_envelope(f->q, id, &error);
	g_assert_no_error(error);
	path = g_build_filename(f->cfg->queue, "msg", id, NULL);
	g_assert_true(g_file_get_contents(path, &data, NULL, NULL));
	return data;
}

/* CRLF everywhere, no line over 998. */
static void
check_lines(const char *data)
{
	const char *p = data;

	while (*p) {
		const char *lf = strchr(p, '\n');
		g_assert_nonnull(lf);
		g_assert_true(lf > p && lf[-1] == '\r');
		g_assert_cmpint(lf - p - 1, <=, 998);
		g_assert_null(memchr(p, '\r', lf - p - 1));
		p = lf + 1;
	}
}

static void
test_bounce(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "sender@example.com");
	g_autoptr(PbEnvelope) out = NULL;
	g_autofree char *text = report(f, PB_DSN_FAILED, env, &out);
	const char *headers;

	check_lines(text);
	g_assert_cmpstr(out->sender, ==, "");
	g_assert_cmpuint(out->rcpts->len, ==, 1);
	g_assert_cmpstr(((PbRecipient *)out->rcpts->pdata[0])->address, ==,
	                "sender@example.com");
	g_assert_true(g_str_has_prefix(
	    text,
	    "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
	    "To: <sender@example.com>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"));
	g_assert_nonnull(strstr(text, "\r\nAuto-Submitted: auto-replied\r\n"));
	g_assert_nonnull(strstr(text, "Content-Type: multipart/report; "
	                              "report-type=delivery-status;"));
	g_assert_nonnull(
	    strstr(text, "Reporting-MTA: dns; mx.example.org\r\n"));
	g_assert_nonnull(strstr(text, "Final-Recipient: rfc822; "
	                              "gone@example.net\r\nAction: failed\r\n"
	                              "Status: 5.1.1\r\n"
	                              "Remote-MTA: dns; mx.example.net\r\n"
	                              "Diagnostic-Code: smtp; 550 5.1.1 "
	                              "<gone@example.net>: no such user\r\n"));
	/* only the failed recipient is reported */
	g_assert_null(strstr(text, "slow@example.com"));
	g_assert_null(strstr(text, "done@example.com"));
	headers = strstr(text, "Content-Type: text/rfc822-headers\r\n\r\n");
	g_assert_nonnull(headers);
	g_assert_nonnull(strstr(headers, "Subject: the original\r\n"
	                                 "From: sender@example.com\r\n"));
	g_assert_null(strstr(text, "SECRET BODY"));
	g_assert_true(g_str_has_suffix(text, "--\r\n"));
}

static void
test_delay(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "sender@example.com");
	g_autoptr(PbEnvelope) out = NULL;
	g_autofree char *text = report(f, PB_DSN_DELAYED, env, &out);

	check_lines(text);
	g_assert_nonnull(strstr(text, "Subject: Delayed Mail (still being "
	                              "retried)\r\n"));
	g_assert_nonnull(strstr(text, "Final-Recipient: rfc822; "
	                              "slow@example.com\r\nOriginal-Recipient: "
	                              "rfc822; alias@example.org\r\nAction: "
	                              "delayed\r\nStatus: 4.4.1\r\n"));
	g_assert_nonnull(strstr(text, "Will-Retry-Until: "));
	/* the readable part lists every attempt and the deadline */
	g_assert_nonnull(strstr(text, "451 4.4.1 try later"));
	g_assert_nonnull(strstr(text, "451 4.4.1 still later"));
	g_assert_nonnull(strstr(text, "keeps trying until"));
	g_assert_null(strstr(text, "gone@example.net"));
}

static void
test_double_bounce(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "");
	g_autoptr(PbEnvelope) out = NULL;
	g_autoptr(PbEnvelope) out2 = NULL;
	g_autofree char *text = report(f, PB_DSN_FAILED, env, &out);
	g_autofree char *none = NULL;
	PbRecipient *r;

	g_assert_cmpstr(out->sender, ==, "");
	g_assert_cmpstr(((PbRecipient *)out->rcpts->pdata[0])->address, ==,
	                "postmaster@example.org");
	g_assert_nonnull(strstr(text, "kept here for the postmaster"));
	/* no delay notices for reports */
	none = report(f, PB_DSN_DELAYED, env, &out2);
	g_assert_null(none);
	/* the double bounce failing in turn: logged only */
	g_clear_pointer(&env, pb_envelope_free);
	env = pb_envelope_new();
	env->id = g_strdup(f->orig_id);
	r = pb_envelope_add_rcpt(env, "postmaster@example.org");
	r->state = PB_RCPT_FAILED;
	g_assert_null(report(f, PB_DSN_FAILED, env, &out2));
}

static void
test_long_reply_folded(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "sender@example.com");
	g_autoptr(PbEnvelope) out = NULL;
	g_autoptr(GString) longer = g_string_new("550 5.7.1 ");
	g_autofree char *text = NULL;
	PbRecipient *r = env->rcpts->pdata[0];

	for (int i = 0; i < 300; i++)
		g_string_append(longer, "word ");
	for (int i = 0; i < 2000; i++)
		g_string_append_c(longer, 'z');
	g_free(r->last_error);
	r->last_error = g_strdup(longer->str);
	text = report(f, PB_DSN_FAILED, env, &out);
	check_lines(text);
}

#define ADD(path, fn) g_test_add(path, F, NULL, setup, fn, teardown)

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	ADD("/dsn/bounce", test_bounce);
	ADD("/dsn/delay", test_delay);
	ADD("/dsn/double-bounce", test_double_bounce);
	ADD("/dsn/long-reply-folded", test_long_reply_folded);
	return g_test_run();
}
