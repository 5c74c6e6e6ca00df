/* test-dsn.c - bounces and delay notices as queued: their envelope,
 * their MIME structure and fields, the header-only attachment, and the
 * rules that keep reports from looping. */
#include "config.h"
#include "dsn.h"
#include "error.h"
#include "queue.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* Queues TEXT as the original message and opens its data. */
static void
put_original(F *f, const char *text, gsize len)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	g_autofree char *path = NULL;
	PbQueueTx *tx = pb_queue_tx_begin(f->q, &error);

	g_assert_no_error(error);
	g_assert_true(pb_queue_tx_write(tx, text, len, &error));
	pb_envelope_add_rcpt(env, "x@example.net");
	g_assert_true(pb_queue_tx_commit(tx, env, &error));
	g_assert_no_error(error);
	if (f->fd >= 0)
		close(f->fd);
	g_free(f->orig_id);
	f->orig_id = g_strdup(env->id);
	path = g_build_filename(f->cfg->queue, "msg", f->orig_id, NULL);
	f->fd = open(path, O_RDONLY);
	g_assert_cmpint(f->fd, >=, 0);
}

static void
setup(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;

	f->dir = g_dir_make_tmp("pbdsn-XXXXXX", &error);
	g_assert_no_error(error);
	f->cfg = pb_config_load_data(conf, strlen(conf), "t", f->dir, &error);
	g_assert_no_error(error);
	f->q = pb_queue_open(f->cfg->queue, &error);
	g_assert_no_error(error);
	f->fd = -1;
	put_original(f, original, strlen(original));
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

/* The queue keeps the first attempt and the last ones: the notice says
 * how many it leaves out between them. */
static void
test_delay_many_attempts(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "sender@example.com");
	g_autoptr(PbEnvelope) out = NULL;
	g_autofree char *text = NULL;
	PbRecipient *r = g_ptr_array_index(env->rcpts, 1);

	for (int i = 0; i < 10; i++)
		pb_recipient_add_attempt(r, 1763802000 + i, "mx", "451 again");
	text = report(f, PB_DSN_DELAYED, env, &out);
	check_lines(text);
	g_assert_nonnull(strstr(text, "451 4.4.1 try later\r\n"
	                              "    (6 more attempts)\r\n"));
	g_assert_null(strstr(text, "451 4.4.1 still later"));
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

/* The text from FROM to TO with every CRLF taken out (RFC 5322
 * unfolding). */
static char *
unfold(const char *from, const char *to)
{
	GString *out = g_string_new(NULL);

	g_assert_nonnull(to);
	for (const char *p = from; p < to; p++) {
		if (p[0] == '\r' && p[1] == '\n')
			p++;
		else
			g_string_append_c(out, *p);
	}
	return g_string_free(out, FALSE);
}

static void
test_long_reply_folded(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "sender@example.com");
	g_autoptr(PbEnvelope) out = NULL;
	g_autoptr(GString) longer = g_string_new("550 5.7.1");
	g_autofree char *text = NULL;
	g_autofree char *expect = NULL;
	g_autofree char *unfolded = NULL;
	PbRecipient *r = env->rcpts->pdata[0];
	const char *ds;

	for (int i = 0; i < 300; i++)
		g_string_append(longer, i % 7 ? " word" : "  spaced");
	g_free(r->last_error);
	r->last_error = g_strdup(longer->str);
	text = report(f, PB_DSN_FAILED, env, &out);
	check_lines(text);
	/* folded, and unfolding gives the reply back */
	ds = strstr(text, "Diagnostic-Code: smtp; 550 5.7.1");
	g_assert_nonnull(ds);
	g_assert_nonnull(strstr(ds, "\r\n "));
	expect = g_strdup_printf("smtp; %s", longer->str);
	unfolded = unfold(ds + strlen("Diagnostic-Code: "),
	                  strstr(ds, "\r\nLast-Attempt-Date"));
	g_assert_cmpstr(unfolded, ==, expect);
}

/* One unbreakable run of 2000 octets: cut, no line past 998. */
static void
test_long_run_cut(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "sender@example.com");
	g_autoptr(PbEnvelope) out = NULL;
	g_autoptr(GString) longer = g_string_new("550 5.7.1 ");
	g_autofree char *text = NULL;
	PbRecipient *r = env->rcpts->pdata[0];

	for (int i = 0; i < 2000; i++)
		g_string_append_c(longer, 'z');
	g_free(r->last_error);
	r->last_error = g_strdup(longer->str);
	text = report(f, PB_DSN_FAILED, env, &out);
	check_lines(text);
	g_assert_nonnull(strstr(text, "zzzz\r\n zzzz"));
}

/* An RFC 5322 header section, unfolded: lower-case name -> value; a
 * field given twice fails. *BODY is set to what follows the empty line
 * (or the end). */
static GHashTable *
fields(const char *text, const char **body)
{
	GHashTable *h =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	g_autoptr(GString) value = NULL;
	char *name = NULL;
	const char *p = text;

	for (;;) {
		const char *eol = strstr(p, "\r\n");
		if (eol == NULL)
			eol = p + strlen(p);
		if (*p == ' ' || *p == '\t') {
			g_assert_nonnull(value);
			g_string_append_len(value, p, eol - p);
		} else {
			if (name) {
				g_assert_false(g_hash_table_contains(h, name));
				g_hash_table_insert(
				    h, name, g_string_free(value, FALSE));
				name = NULL;
				value = NULL;
			}
			if (eol == p || *eol == '\0') {
				*body = *eol ? eol + 2 : eol;
				return h;
			}
			const char *colon = memchr(p, ':', eol - p);
			g_assert_nonnull(colon);
			name = g_ascii_strdown(p, colon - p);
			value = g_string_new_len(colon + 1, eol - colon - 1);
			g_strstrip(value->str);
			value->len = strlen(value->str);
		}
		p = eol + 2;
	}
}

#define FIELD(h, n) ((const char *)g_hash_table_lookup((h), (n)))

/* The parts of a multipart body (each with its headers), checking the
 * preamble, the delimiters and the close delimiter with no epilogue. */
static GPtrArray *
parts(const char *content_type, const char *body)
{
	const char *b = strstr(content_type, "boundary=\"");
	g_autofree char *boundary = NULL;
	g_autofree char *delim = NULL;
	g_auto(GStrv) pieces = NULL;
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
	guint n;

	g_assert_nonnull(b);
	boundary = g_strndup(b + 10, strcspn(b + 10, "\""));
	g_assert_cmpuint(strlen(boundary), >=, 1);
	g_assert_cmpuint(strlen(boundary), <=, 70); /* RFC 2046 */
	delim = g_strdup_printf("\r\n--%s", boundary);
	pieces = g_strsplit(body, delim, -1);
	n = g_strv_length(pieces);
	g_assert_cmpuint(n, >=, 3);
	g_assert_cmpstr(pieces[n - 1], ==, "--\r\n");
	for (guint i = 1; i + 1 < n; i++) {
		g_assert_true(g_str_has_prefix(pieces[i], "\r\n"));
		g_ptr_array_add(out, g_strdup(pieces[i] + 2));
	}
	return out;
}

/* The blocks of a message/delivery-status body. */
static GPtrArray *
status_blocks(const char *body)
{
	GPtrArray *out =
	    g_ptr_array_new_with_free_func((GDestroyNotify)g_hash_table_unref);

	while (*body) {
		const char *next = NULL;
		g_ptr_array_add(out, fields(body, &next));
		while (g_str_has_prefix(next, "\r\n"))
			next += 2;
		body = next;
	}
	return out;
}

static void
test_structure(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "sender@example.com");
	g_autoptr(PbEnvelope) out = NULL;
	g_autofree char *text = report(f, PB_DSN_FAILED, env, &out);
	g_autoptr(GHashTable) h = NULL, p1 = NULL, p2 = NULL, p3 = NULL;
	g_autoptr(GPtrArray) ps = NULL;
	g_autoptr(GPtrArray) blocks = NULL;
	const char *body, *b1, *b2, *b3;
	GHashTable *r;

	h = fields(text, &body);
	g_assert_cmpstr(FIELD(h, "from"), ==,
	                "Mail Delivery System <MAILER-DAEMON@mx.example.org>");
	g_assert_cmpstr(FIELD(h, "to"), ==, "<sender@example.com>");
	g_assert_cmpstr(FIELD(h, "date"), ==,
	                "Sun, 23 Nov 2025 12:13:20 +0000");
	g_assert_true(g_str_has_prefix(FIELD(h, "message-id"), "<"));
	g_assert_true(
	    g_str_has_suffix(FIELD(h, "message-id"), "@mx.example.org>"));
	g_assert_cmpstr(FIELD(h, "auto-submitted"), ==, "auto-replied");
	g_assert_cmpstr(FIELD(h, "mime-version"), ==, "1.0");
	g_assert_true(g_str_has_prefix(FIELD(h, "content-type"),
	                               "multipart/report; "
	                               "report-type=delivery-status;"));
	ps = parts(FIELD(h, "content-type"), body);
	g_assert_cmpuint(ps->len, ==, 3);
	p1 = fields(ps->pdata[0], &b1);
	p2 = fields(ps->pdata[1], &b2);
	p3 = fields(ps->pdata[2], &b3);
	g_assert_cmpstr(FIELD(p1, "content-type"), ==,
	                "text/plain; charset=utf-8");
	g_assert_nonnull(strstr(b1, "<gone@example.net>"));
	g_assert_nonnull(strstr(b1, "no such user"));
	g_assert_cmpstr(FIELD(p2, "content-type"), ==,
	                "message/delivery-status");
	g_assert_cmpstr(FIELD(p3, "content-type"), ==, "text/rfc822-headers");
	/* exactly the original's header section */
	g_assert_cmpstr(b3, ==,
	                "Received: from a by b\r\nSubject: the original\r\n"
	                "From: sender@example.com\r\n");
	blocks = status_blocks(b2);
	g_assert_cmpuint(blocks->len, ==, 2);
	g_assert_cmpstr(FIELD(blocks->pdata[0], "reporting-mta"), ==,
	                "dns; mx.example.org");
	g_assert_cmpstr(FIELD(blocks->pdata[0], "arrival-date"), ==,
	                "Sat, 22 Nov 2025 08:26:40 +0000");
	r = blocks->pdata[1];
	g_assert_cmpstr(FIELD(r, "final-recipient"), ==,
	                "rfc822; gone@example.net");
	g_assert_null(FIELD(r, "original-recipient"));
	g_assert_cmpstr(FIELD(r, "action"), ==, "failed");
	g_assert_cmpstr(FIELD(r, "status"), ==, "5.1.1");
	g_assert_cmpstr(FIELD(r, "remote-mta"), ==, "dns; mx.example.net");
	g_assert_cmpstr(FIELD(r, "diagnostic-code"), ==,
	                "smtp; 550 5.1.1 <gone@example.net>: no such user");
	g_assert_cmpstr(FIELD(r, "last-attempt-date"), ==,
	                "Sat, 22 Nov 2025 08:28:20 +0000");
	g_assert_null(FIELD(r, "will-retry-until"));
}

static void
test_delay_structure(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "sender@example.com");
	g_autoptr(PbEnvelope) out = NULL;
	g_autofree char *text = report(f, PB_DSN_DELAYED, env, &out);
	g_autoptr(GHashTable) h = NULL, p1 = NULL, p2 = NULL;
	g_autoptr(GPtrArray) ps = NULL;
	g_autoptr(GPtrArray) blocks = NULL;
	const char *body, *b1, *b2;
	GHashTable *r;

	h = fields(text, &body);
	g_assert_cmpstr(FIELD(h, "subject"), ==,
	                "Delayed Mail (still being retried)");
	ps = parts(FIELD(h, "content-type"), body);
	g_assert_cmpuint(ps->len, ==, 3);
	p1 = fields(ps->pdata[0], &b1);
	p2 = fields(ps->pdata[1], &b2);
	/* each attempt: time, host, reply; and the deadline */
	g_assert_nonnull(strstr(b1, "Sat, 22 Nov 2025 08:28:20 +0000  "
	                            "mx.example.com[192.0.2.2]:25\r\n"
	                            "        451 4.4.1 try later\r\n"));
	g_assert_nonnull(strstr(b1, "Sat, 22 Nov 2025 08:43:20 +0000  "
	                            "mx.example.com[192.0.2.2]:25\r\n"
	                            "        451 4.4.1 still later\r\n"));
	g_assert_nonnull(strstr(b1, "until Thu, 27 Nov 2025 08:26:40 +0000"));
	blocks = status_blocks(b2);
	g_assert_cmpuint(blocks->len, ==, 2);
	r = blocks->pdata[1];
	g_assert_cmpstr(FIELD(r, "final-recipient"), ==,
	                "rfc822; slow@example.com");
	g_assert_cmpstr(FIELD(r, "original-recipient"), ==,
	                "rfc822; alias@example.org");
	g_assert_cmpstr(FIELD(r, "action"), ==, "delayed");
	g_assert_cmpstr(FIELD(r, "status"), ==, "4.4.1");
	g_assert_cmpstr(FIELD(r, "remote-mta"), ==, "dns; mx.example.com");
	g_assert_cmpstr(FIELD(r, "diagnostic-code"), ==,
	                "smtp; 451 4.4.1 still later");
	g_assert_cmpstr(FIELD(r, "last-attempt-date"), ==,
	                "Sat, 22 Nov 2025 08:43:20 +0000");
	g_assert_cmpstr(FIELD(r, "will-retry-until"), ==,
	                "Thu, 27 Nov 2025 08:26:40 +0000");
}

/* The rfc822-headers part of a bounce of TEXT. */
static char *
attached(F *f, const char *text, gsize len)
{
	g_autoptr(PbEnvelope) env = NULL;
	g_autoptr(PbEnvelope) out = NULL;
	g_autofree char *data = NULL;
	const char *start, *end;

	put_original(f, text, len);
	env = envelope(f, "sender@example.com");
	data = report(f, PB_DSN_FAILED, env, &out);
	check_lines(data);
	start = strstr(data, "Content-Type: text/rfc822-headers\r\n\r\n");
	g_assert_nonnull(start);
	start += strlen("Content-Type: text/rfc822-headers\r\n\r\n");
	end = g_strrstr(start, "\r\n--");
	g_assert_nonnull(end);
	return g_strndup(start, end - start);
}

/* A header section longer than the read chunks, its empty line split
 * across a chunk boundary at every offset. */
static void
test_headers_chunked(F *f, gconstpointer data)
{
	for (gsize at = 8190; at <= 8194; at++) {
		g_autoptr(GString) m = g_string_new(NULL);
		g_autofree char *got = NULL;
		gsize hdr;
		while (m->len + 80 < at)
			g_string_append(m, "X-Filler: 0123456789012345678901234"
			                   "5678901234567890123456789012\r\n");
		g_string_append_printf(m, "X-Last: %*s\r\n",
		                       (int)(at - m->len - 10), "z");
		hdr = m->len;
		g_assert_cmpuint(hdr, ==, at);
		g_string_append(m, "\r\nBODY\r\n");
		got = attached(f, m->str, m->len);
		g_assert_cmpuint(strlen(got), ==, hdr);
		g_assert_true(strncmp(got, m->str, hdr) == 0);
	}
}

static void
test_headers_edges(F *f, gconstpointer data)
{
	g_autofree char *empty = NULL, *nobody = NULL, *cut = NULL;
	g_autoptr(GString) big = g_string_new(NULL);

	/* no header section at all: nothing of the body */
	empty = attached(f, "\r\nBODY ONLY\r\n", 13);
	g_assert_cmpstr(empty, ==, "");
	/* no empty line: all of it is header */
	nobody = attached(f, "Subject: x\r\nFrom: y\r\n", 21);
	g_assert_cmpstr(nobody, ==, "Subject: x\r\nFrom: y\r\n");
	/* a huge header section is cut after a whole line */
	while (big->len < 1024 * 1024)
		g_string_append(big,
		                "X-Many: a header line of some length\r\n");
	g_string_append(big, "\r\nBODY\r\n");
	cut = attached(f, big->str, big->len);
	g_assert_cmpuint(strlen(cut), >, 200 * 1024);
	g_assert_cmpuint(strlen(cut), <=, 256 * 1024);
	g_assert_true(g_str_has_suffix(cut, "length\r\n"));
	g_assert_null(strstr(cut, "BODY"));
}

/* A double bounce for a postmaster aliased elsewhere failing in turn:
 * the original recipient marks it, or it would loop. */
static void
test_double_bounce_alias(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	g_autoptr(PbEnvelope) out = NULL;
	g_autofree char *text = NULL;
	PbRecipient *r;

	env->id = g_strdup(f->orig_id);
	r = pb_envelope_add_rcpt(env, "pm@elsewhere.example");
	r->orig = g_strdup("PostMaster@example.org");
	r->state = PB_RCPT_FAILED;
	g_assert_null(report(f, PB_DSN_FAILED, env, &out));
	/* but a report from <> to somebody else still reaches postmaster */
	r = pb_envelope_add_rcpt(env, "user@example.org");
	r->state = PB_RCPT_FAILED;
	text = report(f, PB_DSN_FAILED, env, &out);
	g_assert_nonnull(text);
	g_assert_cmpstr(((PbRecipient *)out->rcpts->pdata[0])->address, ==,
	                "postmaster@example.org");
	/* a plain message's report needs no SMTPUTF8 */
	g_assert_false(out->smtputf8);
}

static void
test_smtputf8(F *f, gconstpointer data)
{
	g_autoptr(PbEnvelope) env = envelope(f, "s\xc3\xa9nder@example.com");
	g_autoptr(PbEnvelope) out = NULL;
	g_autofree char *text = NULL;

	env->smtputf8 = TRUE;
	text = report(f, PB_DSN_FAILED, env, &out);
	g_assert_true(out->smtputf8);
	g_assert_cmpstr(((PbRecipient *)out->rcpts->pdata[0])->address, ==,
	                "s\xc3\xa9nder@example.com");
}

#define ADD(path, fn) g_test_add(path, F, NULL, setup, fn, teardown)

/* The notice on an unreadable envelope: to postmaster from <>, naming
 * the entry and its files, with what was salvaged (sanitised) and the
 * header attached, the body not. */
static void
test_unreadable(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *id = NULL;
	g_autofree char *path = NULL;
	g_autofree char *text = NULL;
	g_autoptr(PbEnvelope) out = NULL;
	PbRecipient *r;

	g_assert_true(pb_dsn_queue_unreadable(
	    f->q, f->cfg, f->orig_id, "malformed envelope (line 9)",
	    "sender: <s@example.com>\nrecipient: <a@b> (pending)\n\x01"
	    "evil\n",
	    f->fd, 1763900000, &id, &error));
	g_assert_no_error(error);
	out = pb_queue_read_envelope(f->q, id, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(out->sender, ==, "");
	g_assert_cmpuint(out->rcpts->len, ==, 1);
	r = g_ptr_array_index(out->rcpts, 0);
	g_assert_cmpstr(r->address, ==, "postmaster@example.org");
	path = g_build_filename(f->cfg->queue, "msg", id, NULL);
	g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
	check_lines(text);
	g_assert_nonnull(strstr(text, "To: <postmaster@example.org>\r\n"));
	g_assert_nonnull(strstr(text, "Subject: Queue entry "));
	g_assert_nonnull(strstr(text, f->orig_id));
	g_assert_nonnull(strstr(text, "malformed envelope (line 9)"));
	g_assert_nonnull(strstr(text, "/corrupt/"));
	g_assert_nonnull(strstr(text, "    sender: <s@example.com>\r\n"));
	g_assert_nonnull(strstr(text, "    \\x01evil\r\n"));
	g_assert_nonnull(strstr(text, "Subject: the original\r\n"));
	g_assert_null(strstr(text, "SECRET BODY TEXT"));
}

int
main(int argc, char **argv)
{
	/* the expected dates are in UTC */
	g_setenv("TZ", "UTC", TRUE);
	tzset();
	g_test_init(&argc, &argv, NULL);
	ADD("/dsn/bounce", test_bounce);
	ADD("/dsn/delay", test_delay);
	ADD("/dsn/double-bounce", test_double_bounce);
	ADD("/dsn/long-reply-folded", test_long_reply_folded);
	ADD("/dsn/long-run-cut", test_long_run_cut);
	ADD("/dsn/structure/bounce", test_structure);
	ADD("/dsn/structure/delay", test_delay_structure);
	ADD("/dsn/headers/chunked", test_headers_chunked);
	ADD("/dsn/headers/edges", test_headers_edges);
	ADD("/dsn/double-bounce/alias", test_double_bounce_alias);
	ADD("/dsn/smtputf8", test_smtputf8);
	ADD("/dsn/unreadable-envelope", test_unreadable);
	ADD("/dsn/delay-many-attempts", test_delay_many_attempts);
	return g_test_run();
}
