/* test-queue.c - the queue: transactions, envelopes, locks, listing. */
#include "error.h"
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
	char *dir;
	PbQueue *q;
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;

	f->dir = g_dir_make_tmp("test-queue-XXXXXX", &error);
	g_assert_no_error(error);
	f->q = pb_queue_open(f->dir, &error);
	g_assert_no_error(error);
	g_assert_nonnull(f->q);
}

static void
rm_rf(const char *path)
{
	GDir *d = g_dir_open(path, 0, NULL);
	const char *name;

	while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
		g_autofree char *p = g_build_filename(path, name, NULL);
		if (g_file_test(p, G_FILE_TEST_IS_DIR))
			rm_rf(p);
		else
			(void)unlink(p);
	}
	if (d != NULL)
		g_dir_close(d);
	(void)rmdir(path);
}

static void
teardown(Fixture *f, gconstpointer data)
{
	pb_queue_free(f->q);
	rm_rf(f->dir);
	g_free(f->dir);
}

static guint
count_files(const char *dir, const char *sub)
{
	g_autofree char *path = g_build_filename(dir, sub, NULL);
	GDir *d = g_dir_open(path, 0, NULL);
	guint n = 0;

	g_assert_nonnull(d);
	while (g_dir_read_name(d) != NULL)
		n++;
	g_dir_close(d);
	return n;
}

/* Queues a message with DATA for RCPT; returns its id. */
static char *
queue_one(Fixture *f, const char *data, const char *rcpt)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	PbQueueTx *tx = pb_queue_tx_begin(f->q, &error);
	char *id;

	g_assert_no_error(error);
	id = g_strdup(pb_queue_tx_id(tx));
	pb_queue_tx_write(tx, data, strlen(data), &error);
	g_assert_no_error(error);
	g_free(env->sender);
	env->sender = g_strdup("alice@example.org");
	pb_envelope_add_rcpt(env, rcpt);
	g_assert_true(pb_queue_tx_commit(tx, env, &error));
	g_assert_no_error(error);
	g_assert_cmpstr(env->id, ==, id);
	return id;
}

static void
test_commit(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *big = g_strnfill(200000, 'x');
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	g_autofree char *id = NULL;
	g_autofree char *msg = NULL;
	g_autofree char *contents = NULL;
	gsize len;
	PbQueueTx *tx = pb_queue_tx_begin(f->q, &error);
	struct stat st;

	g_assert_no_error(error);
	id = g_strdup(pb_queue_tx_id(tx));
	g_assert_true(pb_queue_tx_write(tx, "Subject: x\r\n\r\n", 14, &error));
	g_assert_true(pb_queue_tx_write(tx, big, 200000, &error));
	g_assert_true(pb_queue_tx_write(tx, "end\r\n", 5, &error));
	pb_envelope_add_rcpt(env, "bob@example.net");
	g_assert_true(pb_queue_tx_commit(tx, env, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(env->size, ==, 200019);
	g_assert_cmpint(env->arrival, >, 0);
	msg = g_build_filename(f->dir, "msg", id, NULL);
	g_assert_true(g_file_get_contents(msg, &contents, &len, NULL));
	g_assert_cmpuint(len, ==, 200019);
	g_assert_cmpint(memcmp(contents + len - 5, "end\r\n", 5), ==, 0);
	g_assert_cmpint(stat(msg, &st), ==, 0);
	g_assert_cmpint(st.st_mode & 0777, ==, 0600);
	g_assert_cmpuint(count_files(f->dir, "env"), ==, 1);
	g_assert_cmpuint(count_files(f->dir, "tmp"), ==, 0);
}

/* Commits TX; returns the data it stored. */
static char *
commit_read(Fixture *f, PbQueueTx *tx)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	g_autofree char *id = g_strdup(pb_queue_tx_id(tx));
	g_autofree char *msg = g_build_filename(f->dir, "msg", id, NULL);
	char *contents = NULL;

	pb_envelope_add_rcpt(env, "bob@example.net");
	g_assert_true(pb_queue_tx_commit(tx, env, &error));
	g_assert_no_error(error);
	g_assert_true(g_file_get_contents(msg, &contents, NULL, NULL));
	return contents;
}

/* The queue's buffer is reused by the next transaction; two at once
 * keep their data apart. */
static void
test_two_transactions(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	PbQueueTx *a = pb_queue_tx_begin(f->q, &error);
	PbQueueTx *b = pb_queue_tx_begin(f->q, &error);
	g_autofree char *got_a = NULL;
	g_autofree char *got_b = NULL;
	g_autofree char *got_c = NULL;
	PbQueueTx *c;

	g_assert_no_error(error);
	g_assert_true(pb_queue_tx_write(a, "A1 ", 3, &error));
	g_assert_true(pb_queue_tx_write(b, "B1 ", 3, &error));
	g_assert_true(pb_queue_tx_write(a, "A2", 2, &error));
	g_assert_true(pb_queue_tx_write(b, "B2", 2, &error));
	got_a = commit_read(f, a);
	c = pb_queue_tx_begin(f->q, &error);
	g_assert_no_error(error);
	g_assert_true(pb_queue_tx_write(c, "C", 1, &error));
	got_b = commit_read(f, b);
	got_c = commit_read(f, c);
	g_assert_cmpstr(got_a, ==, "A1 A2");
	g_assert_cmpstr(got_b, ==, "B1 B2");
	g_assert_cmpstr(got_c, ==, "C");
}

static void
test_abort(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	PbQueueTx *tx = pb_queue_tx_begin(f->q, &error);

	g_assert_no_error(error);
	g_assert_cmpuint(count_files(f->dir, "msg"), ==, 1);
	g_assert_true(pb_queue_tx_write(tx, "abc", 3, &error));
	pb_queue_tx_abort(tx);
	g_assert_cmpuint(count_files(f->dir, "msg"), ==, 0);
	g_assert_cmpuint(count_files(f->dir, "env"), ==, 0);
	g_assert_cmpuint(count_files(f->dir, "tmp"), ==, 0);
}

/* A commit that cannot place its envelope (env/ is not a folder) fails
 * with an error and leaves nothing behind: no data, no envelope file. */
static void
test_commit_fails(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	g_autofree char *envdir = g_build_filename(f->dir, "env", NULL);
	PbQueueTx *tx = pb_queue_tx_begin(f->q, &error);

	g_assert_no_error(error);
	/* the envelope's file is made with the transaction */
	g_assert_cmpuint(count_files(f->dir, "tmp"), ==, 1);
	g_assert_true(
	    pb_queue_tx_write(tx, "Subject: x\r\n\r\nx\r\n", 17, &error));
	g_assert_cmpint(rmdir(envdir), ==, 0);
	g_assert_true(g_file_set_contents(envdir, "", 0, NULL));
	pb_envelope_add_rcpt(env, "bob@example.net");
	g_assert_false(pb_queue_tx_commit(tx, env, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
	g_assert_cmpuint(count_files(f->dir, "msg"), ==, 0);
	g_assert_cmpuint(count_files(f->dir, "tmp"), ==, 0);
	g_assert_cmpint(unlink(envdir), ==, 0);
}

/* Every byte from 1 to 255, and the NUL-free hostile strings. */
static char *
hostile(void)
{
	GString *s = g_string_new("a\r\nrcpt sent 0 0 0 evil@x\\x41\\");

	for (int c = 1; c < 256; c++)
		g_string_append_c(s, (char)c);
	g_string_append(s, " \n\n\r");
	return g_string_free(s, FALSE);
}

/* hostile() without letters and digits, which escaping leaves alone:
 * short enough to be an address (256 octets at most). */
static char *
hostile_address(void)
{
	g_autofree char *h = hostile();
	const char *rest = strchr(h, '\x01'); /* the injection before it */
	GString *s = g_string_new_len(h, rest - h);

	for (const char *p = rest; *p != '\0'; p++)
		if (!g_ascii_isalnum(*p))
			g_string_append_c(s, *p);
	g_assert_cmpuint(s->len, <=, PB_ADDRESS_MAX_PATH);
	return g_string_free(s, FALSE);
}

static PbEnvelope *
sample(void)
{
	PbEnvelope *env = pb_envelope_new();
	PbRecipient *r;

	env->id = pb_queue_new_id();
	env->arrival = 1763800000;
	env->size = 1234;
	env->smtputf8 = TRUE;
	env->held = TRUE;
	env->client = g_strdup("mail.example.net [192.0.2.1]");
	r = pb_envelope_add_rcpt(env, "bob@example.net");
	r->orig = g_strdup("alias@example.org");
	r->dsn = g_strdup("4.4.1");
	r->next_attempt = 1763801000;
	pb_recipient_add_attempt(r, 1763800100, "mx.example.net[192.0.2.1]:25",
	                         "451 4.4.1 Try later");
	r = pb_envelope_add_rcpt(env, "carol@example.org");
	r->state = PB_RCPT_BOUNCED;
	return env;
}

static void
assert_same(const PbEnvelope *a, const PbEnvelope *b)
{
	g_autoptr(GString) fa = pb_envelope_format(a);
	g_autoptr(GString) fb = pb_envelope_format(b);

	g_assert_cmpstr(a->id, ==, b->id);
	g_assert_cmpstr(a->sender, ==, b->sender);
	g_assert_cmpint(a->arrival, ==, b->arrival);
	g_assert_cmpuint(a->rcpts->len, ==, b->rcpts->len);
	g_assert_cmpstr(fa->str, ==, fb->str);
}

/* The prepend record: round trip with its CRLFs, counted in the wire
 * size, only well-formed header lines accepted; without it an envelope
 * reads as before. */
static void
test_prepend(void)
{
	g_autoptr(PbEnvelope) env = sample();
	g_autoptr(PbEnvelope) back = NULL;
	g_autoptr(GString) text = NULL;
	g_autoptr(GError) error = NULL;
	g_autofree char *big = g_strnfill(PB_QUEUE_MAX_PREPEND, 'a');
	static const char *const bad[] = {
	    "X: 1",      "X: 1\n",      "X: 1\r\n\r\n",
	    " X: 1\r\n", "X: 1\rY\r\n", "X: \x01\r\n\nY: 2\r\n"};

	env->prepend = g_strdup("DKIM-Signature: v=1; a=rsa-sha256;\r\n"
	                        "\tb=abc\r\n");
	text = pb_envelope_format(env);
	g_assert_null(strchr(strstr(text->str, "prepend "), '\r'));
	back = pb_envelope_parse(text->str, text->len, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(back->prepend, ==, env->prepend);
	g_assert_cmpuint(pb_envelope_wire_size(back), ==,
	                 1234 + strlen(env->prepend));
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++)
		g_assert_false(pb_envelope_prepend_valid(bad[i]));
	big[PB_QUEUE_MAX_PREPEND - 2] = '\r';
	big[PB_QUEUE_MAX_PREPEND - 1] = '\n';
	g_assert_true(pb_envelope_prepend_valid(big));
	g_free(env->prepend);
	env->prepend = g_strconcat("x", big, NULL);
	g_clear_pointer(&back, pb_envelope_free);
	g_string_free(text, TRUE);
	text = pb_envelope_format(env);
	back = pb_envelope_parse(text->str, text->len, &error);
	g_assert_null(back);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
}

/* GOT is FULL cut to the envelope's bound and marked "...". */
static void
assert_cut(const char *got, const char *full)
{
	g_assert_true(g_str_has_suffix(got, "..."));
	g_assert_cmpint(strncmp(got, full, strlen(got) - 3), ==, 0);
	g_assert_cmpuint(strlen(got), <, strlen(full));
}

static void
test_roundtrip(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = sample();
	g_autoptr(PbEnvelope) back = NULL;
	g_autoptr(GString) text = NULL;
	g_autofree char *evil = hostile();
	g_autofree char *evil_address = hostile_address();
	PbRecipient *r = g_ptr_array_index(env->rcpts, 0);
	PbAttempt *a;

	g_free(env->sender);
	env->sender = g_strdup(evil_address);
	g_free(env->client);
	env->client = g_strdup(evil);
	g_free(r->last_error);
	r->last_error = g_strdup(evil);
	pb_recipient_add_attempt(r, 1763800200, "host with space\r\n", evil);
	text = pb_envelope_format(env);
	/* nothing raw: only printable ASCII and the line ends */
	for (gsize i = 0; i < text->len; i++)
		g_assert_true(text->str[i] == '\n' ||
		              (text->str[i] >= 0x20 && text->str[i] < 0x7F));
	g_assert_null(strstr(text->str, "\nrcpt sent 0 0 0 evil"));
	g_assert_nonnull(strstr(text->str, "\nheld 1\n"));
	back = pb_envelope_parse(text->str, text->len, &error);
	g_assert_no_error(error);
	assert_same(env, back);
	g_assert_cmpstr(back->sender, ==, evil_address);
	/* text fields are cut at their escaped bound; addresses never */
	assert_cut(back->client, evil);
	r = g_ptr_array_index(back->rcpts, 0);
	assert_cut(r->last_error, evil);
	g_assert_cmpstr(r->orig, ==, "alias@example.org");
	g_assert_cmpstr(r->dsn, ==, "4.4.1");
	g_assert_cmpuint(r->attempts, ==, 2);
	g_assert_cmpint(r->next_attempt, ==, 1763801000);
	g_assert_cmpuint(r->history->len, ==, 2);
	a = g_ptr_array_index(r->history, 1);
	g_assert_cmpstr(a->host, ==, "host with space\r\n");
	assert_cut(a->reply, evil);
	g_assert_true(back->smtputf8 && back->held && !back->notice_sent);
	r = g_ptr_array_index(back->rcpts, 1);
	g_assert_cmpint(r->state, ==, PB_RCPT_BOUNCED);
	g_assert_null(r->orig);
}

static void
test_null_sender(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = sample();
	g_autoptr(PbEnvelope) back = NULL;
	g_autoptr(GString) text = pb_envelope_format(env);

	back = pb_envelope_parse(text->str, text->len, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(back->sender, ==, "");
}

static void
test_history_bound(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = sample();
	g_autoptr(PbEnvelope) back = NULL;
	g_autoptr(GString) text = NULL;
	PbRecipient *r = g_ptr_array_index(env->rcpts, 0);
	PbAttempt *a;

	for (int i = 0; i < 100; i++)
		pb_recipient_add_attempt(r, 1763900000 + i, "local",
		                         "451 4.2.0 later");
	g_assert_cmpuint(r->history->len, ==, PB_QUEUE_MAX_HISTORY);
	g_assert_cmpuint(r->attempts, ==, 101);
	/* the first attempt stays, then the last ones */
	a = g_ptr_array_index(r->history, 0);
	g_assert_cmpint(a->time, ==, 1763800100);
	a = g_ptr_array_index(r->history, PB_QUEUE_HISTORY_FIRST);
	g_assert_cmpint(a->time, ==, 1763900000 + 100 - PB_QUEUE_HISTORY_LAST);
	g_assert_cmpstr(r->last_error, ==, "451 4.2.0 later");
	text = pb_envelope_format(env);
	back = pb_envelope_parse(text->str, text->len, &error);
	g_assert_no_error(error);
	assert_same(env, back);
}

/* TEXT of LEN octets made of every byte but NUL, over and over. */
static char *
noise(gsize len)
{
	char *s = g_malloc(len + 1);

	for (gsize i = 0; i < len; i++)
		s[i] = (char)(1 + i % 255);
	s[len] = '\0';
	return s;
}

/* A recipient as runq leaves it after ATTEMPTS deferrals with long,
 * hostile replies from a long host name, at the longest address. */
static void
defer_often(PbEnvelope *env, guint n, guint attempts)
{
	g_autofree char *reply = noise(1000);
	g_autofree char *text = pb_sanitize_text(reply, 1000);
	g_autofree char *host = g_strnfill(300, 'h');
	g_autofree char *local = g_strnfill(64, 'l');

	for (guint i = 0; i < n; i++) {
		g_autofree char *domain = g_strnfill(256 - 65, 'd');
		g_autofree char *addr = NULL;
		PbRecipient *r;

		g_snprintf(domain, 6, "%05u", i);
		domain[5] = 'd';
		addr = g_strdup_printf("%s@%s", local, domain);
		g_assert_cmpuint(strlen(addr), ==, PB_ADDRESS_MAX_PATH);
		r = pb_envelope_add_rcpt(env, addr);
		r->orig = g_strdup(addr);
		for (guint a = 0; a < attempts; a++) {
			pb_recipient_add_attempt(r, 1763900000 + a, host, text);
			g_free(r->dsn);
			r->dsn = g_strdup(text);
			g_free(r->last_error);
			r->last_error = g_strdup(text);
		}
	}
}

/* 100 recipients deferred 70 times with 1000-character replies: the
 * envelope stays under its bound per recipient and parses; so does the
 * largest envelope there can be. */
static void
test_size_bound(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	g_autoptr(PbEnvelope) back = NULL;
	g_autoptr(GString) text = NULL;
	g_autoptr(GString) once = NULL;
	PbRecipient *r;

	env->id = pb_queue_new_id();
	env->client = noise(1000);
	defer_often(env, 100, 70);
	text = pb_envelope_format(env);
	g_assert_cmpuint(text->len, <=,
	                 PB_QUEUE_HEADER_MAX_OCTETS +
	                     100 * PB_QUEUE_RCPT_MAX_OCTETS);
	g_assert_cmpuint(text->len, <, 1024 * 1024); /* the old limit */
	back = pb_envelope_parse(text->str, text->len, &error);
	g_assert_no_error(error);
	r = g_ptr_array_index(back->rcpts, 99);
	g_assert_cmpuint(r->attempts, ==, 70);
	g_assert_cmpuint(r->history->len, ==, PB_QUEUE_MAX_HISTORY);
	g_assert_cmpint(((PbAttempt *)r->history->pdata[0])->time, ==,
	                1763900000);
	/* written again, it is the same: a cut field is not cut twice */
	once = pb_envelope_format(back);
	g_assert_cmpstr(once->str, ==, text->str);
	g_clear_pointer(&back, pb_envelope_free);
	/* the most recipients there can be, each at its worst */
	defer_often(env, PB_QUEUE_MAX_RCPTS - 100, PB_QUEUE_MAX_HISTORY + 1);
	g_assert_true(pb_envelope_fits(env, &error));
	g_string_free(text, TRUE);
	text = pb_envelope_format(env);
	g_assert_cmpuint(text->len, <=, PB_QUEUE_MAX_ENVELOPE);
	back = pb_envelope_parse(text->str, text->len, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(back->rcpts->len, ==, PB_QUEUE_MAX_RCPTS);
	/* one more recipient does not fit */
	pb_envelope_add_rcpt(env, "one@too.many");
	g_assert_false(pb_envelope_fits(env, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_PERM);
}

/* An envelope from before the bound (64 attempts of long replies kept)
 * is read, and its history trimmed to the first and the last. */
static void
test_old_envelope(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = sample();
	g_autoptr(PbEnvelope) back = NULL;
	g_autoptr(GString) text = pb_envelope_format(env);
	g_autofree char *reply = g_strnfill(3000, 'r');
	PbRecipient *r;

	/* sample's last recipient: append old-style attempts to it */
	for (int i = 0; i < 64; i++)
		g_string_append_printf(text, "attempt %d mx %s\n",
		                       1763900000 + i, reply);
	back = pb_envelope_parse(text->str, text->len, &error);
	g_assert_no_error(error);
	r = g_ptr_array_index(back->rcpts, 1);
	g_assert_cmpuint(r->history->len, ==, PB_QUEUE_MAX_HISTORY);
	g_assert_cmpint(((PbAttempt *)r->history->pdata[0])->time, ==,
	                1763900000);
	g_assert_cmpint(((PbAttempt *)r->history->pdata[1])->time, ==,
	                1763900000 + 64 - PB_QUEUE_HISTORY_LAST);
	g_string_free(text, TRUE);
	text = pb_envelope_format(back);
	g_assert_cmpuint(text->len, <, 8 * 1024);
}

/* What a human can use of a damaged envelope: sender and recipients,
 * sanitised, whatever the bytes around them. */
static void
test_salvage(void)
{
	static const char text[] = "pillarbox-envelope 1\nsender a\\x0Db@c\n"
	                           "garbage \x01\xff\n"
	                           "rcpt pending 1 2 3 x@y\nrcpt bad\n"
	                           "rcpt sent 0 0 0 \xe2\x82\xac@z\nrcpt";
	g_autofree char *got = pb_envelope_salvage(text, sizeof text - 1);
	g_autofree char *none = pb_envelope_salvage("\0\0\n\n", 4);
	g_autoptr(GString) many = g_string_new(NULL);
	g_autofree char *listed = NULL;

	g_assert_cmpstr(got, ==,
	                "sender: <a\\x0Db@c>\n"
	                "recipient: <x@y> (pending)\n"
	                "recipient: <\\xE2\\x82\\xAC@z> (sent)\n");
	g_assert_cmpstr(none, ==, "nothing (no sender, no recipient)\n");
	for (int i = 0; i < 60; i++)
		g_string_append_printf(many, "rcpt pending 0 0 0 r%d@x\n", i);
	listed = pb_envelope_salvage(many->str, many->len);
	g_assert_nonnull(strstr(listed, "<r49@x>"));
	g_assert_null(strstr(listed, "<r50@x>"));
	g_assert_true(g_str_has_suffix(listed, "and 10 more recipients\n"));
}

static void
test_malformed(void)
{
	g_autoptr(PbEnvelope) env = sample();
	g_autoptr(GString) good = pb_envelope_format(env);
	static const struct {
		const char *from, *to;
	} edits[] = {
	    {"pillarbox-envelope 1", "pillarbox-envelope 2"},
	    {"held 1", "held 2"},
	    {"held 1", "bogus 1"},
	    {"size 1234", "size -1"},
	    {"size 1234", "size 12x"},
	    {"arrival", "size 5\narrival"},
	    {"rcpt pending", "rcpt waiting"},
	    {"rcpt bounced 0 0 0 ", "rcpt bounced 0 0 "},
	    {"dsn 4.4.1", "dsn 4.4.1\ndsn 4.4.2"},
	    {"orig alias", "orig ali\\xZZas"},
	    {"orig alias", "orig ali\\as"},
	    {"orig alias", "orig ali\ras"},
	    {"orig alias", "orig ali\x80s"},
	    {"client mail", "rcpt pending 0 0 0 x@y\nclient mail"},
	    {"sender \n", ""},
	    {"id ", "id 12"},
	};

	for (guint i = 0; i < G_N_ELEMENTS(edits); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(GString) s = g_string_new(good->str);
		g_autoptr(PbEnvelope) back = NULL;

		g_assert_cmpuint(
		    g_string_replace(s, edits[i].from, edits[i].to, 1), ==, 1);
		back = pb_envelope_parse(s->str, s->len, &error);
		g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
		g_assert_null(back);
	}
	{
		g_autoptr(GError) error = NULL;
		g_autoptr(PbEnvelope) back = NULL;

		/* truncated: no final line end */
		back = pb_envelope_parse(good->str, good->len - 1, &error);
		g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	}
	{
		g_autoptr(GError) error = NULL;
		g_autoptr(PbEnvelope) back = NULL;
		g_autofree char *nul = g_memdup2(good->str, good->len);

		nul[5] = '\0';
		back = pb_envelope_parse(nul, good->len, &error);
		g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	}
	/* an address over 256 octets, which no envelope is written with
	 * (its bounce could not be queued: found by fuzz-dsn) */
	for (guint len = 255; len <= 257; len++) {
		static const char *const lines[] = {"sender \n",
		                                    "rcpt pending 0 0 0 x@y\n",
		                                    "orig alias@example.org\n"};
		for (guint i = 0; i < G_N_ELEMENTS(lines); i++) {
			g_autoptr(GError) error = NULL;
			g_autoptr(GString) s = g_string_new(good->str);
			g_autoptr(GString) a = g_string_new(NULL);
			g_autoptr(PbEnvelope) back = NULL;
			g_autofree char *line = NULL;
			const char *key = i == 0 ? "sender" : i == 1 ? "rcpt" : "orig";

			while (a->len < len - strlen("@example.org"))
				g_string_append_c(a, 'a');
			g_string_append(a, "@example.org");
			line = i == 1 ? g_strdup_printf("rcpt pending 0 0 0 %s\n",
			                                a->str)
			              : g_strdup_printf("%s %s\n", key, a->str);
			if (i == 1)
				g_string_append(s, line);
			else
				g_assert_cmpuint(
				    g_string_replace(s, lines[i], line, 1), ==, 1);
			back = pb_envelope_parse(s->str, s->len, &error);
			if (len <= PB_ADDRESS_MAX_PATH) {
				g_assert_no_error(error);
				g_assert_nonnull(back);
			} else {
				g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
				g_assert_null(back);
			}
		}
	}
}

static void
test_sanitize(void)
{
	g_autofree char *a = pb_sanitize_text("ok \\ \r\n\x01\xc3\xa9", 100);
	g_autofree char *b = pb_sanitize_text("abcdef", 3);
	g_autofree char *c = pb_sanitize_text(NULL, 3);

	g_assert_cmpstr(a, ==, "ok \\ \\x0D\\x0A\\x01\\xC3\\xA9");
	g_assert_cmpstr(b, ==, "abc");
	g_assert_cmpstr(c, ==, "");
}

static void
test_lock(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *id = queue_one(f, "hello\r\n", "bob@example.net");
	g_autoptr(PbQueueEntry) e = pb_queue_lock(f->q, id, &error);
	g_autoptr(PbQueueEntry) e2 = NULL;
	char buf[16];

	g_assert_no_error(error);
	g_assert_cmpstr(pb_queue_entry_envelope(e)->sender, ==,
	                "alice@example.org");
	e2 = pb_queue_lock(f->q, id, &error);
	g_assert_error(error, PB_ERROR, PB_ERROR_BUSY);
	g_assert_null(e2);
	g_clear_error(&error);
	/* the data fd is at 0 on every call */
	g_assert_cmpint(read(pb_queue_entry_data_fd(e), buf, 3), ==, 3);
	g_assert_cmpint(read(pb_queue_entry_data_fd(e), buf, 7), ==, 7);
	g_assert_cmpint(memcmp(buf, "hello\r\n", 7), ==, 0);
	g_clear_pointer(&e, pb_queue_entry_free);
	e2 = pb_queue_lock(f->q, id, &error);
	g_assert_no_error(error);
	g_assert_nonnull(e2);
}

static void
test_lock_missing(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbQueueEntry) e = NULL;
	g_autofree char *id = pb_queue_new_id();

	e = pb_queue_lock(f->q, id, &error);
	g_assert_error(error, PB_ERROR, PB_ERROR_NOTFOUND);
	g_clear_error(&error);
	e = pb_queue_lock(f->q, "../../etc/passwd", &error);
	g_assert_error(error, PB_ERROR, PB_ERROR_NOTFOUND);
	g_assert_null(e);
}

static void
test_update_remove(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *id = queue_one(f, "x\r\n", "bob@example.net");
	g_autoptr(PbQueueEntry) e = pb_queue_lock(f->q, id, &error);
	g_autoptr(PbEnvelope) env = NULL;
	PbRecipient *r;

	g_assert_no_error(error);
	r = g_ptr_array_index(pb_queue_entry_envelope(e)->rcpts, 0);
	r->state = PB_RCPT_SENT;
	pb_recipient_add_attempt(r, 1763800100, "local", "250 ok");
	g_assert_true(pb_queue_entry_update(e, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(count_files(f->dir, "tmp"), ==, 0);
	env = pb_queue_read_envelope(f->q, id, &error);
	g_assert_no_error(error);
	r = g_ptr_array_index(env->rcpts, 0);
	g_assert_cmpint(r->state, ==, PB_RCPT_SENT);
	g_assert_cmpuint(r->attempts, ==, 1);
	g_assert_true(pb_envelope_is_final(env));
	g_assert_true(pb_queue_entry_remove(e, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(count_files(f->dir, "env"), ==, 0);
	g_assert_cmpuint(count_files(f->dir, "msg"), ==, 0);
	g_clear_pointer(&e, pb_queue_entry_free);
	e = pb_queue_lock(f->q, id, &error);
	g_assert_error(error, PB_ERROR, PB_ERROR_NOTFOUND);
}

static void
test_list(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) ids = NULL;
	g_autofree char *a = queue_one(f, "a\r\n", "a@example.net");
	g_autofree char *b = queue_one(f, "b\r\n", "b@example.net");
	g_autofree char *c = queue_one(f, "c\r\n", "c@example.net");
	g_autofree char *junk =
	    g_build_filename(f->dir, "env", ".hidden", NULL);
	g_autofree char *junk2 =
	    g_build_filename(f->dir, "env", "notanid", NULL);

	g_assert_true(g_file_set_contents(junk, "x", 1, NULL));
	g_assert_true(g_file_set_contents(junk2, "x", 1, NULL));
	ids = pb_queue_list(f->q, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(ids->len, ==, 3);
	g_assert_cmpstr(g_ptr_array_index(ids, 0), ==, a);
	g_assert_cmpstr(g_ptr_array_index(ids, 1), ==, b);
	g_assert_cmpstr(g_ptr_array_index(ids, 2), ==, c);
}

static void
make_old(const char *path)
{
	struct timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};

	g_assert_cmpint(utimensat(AT_FDCWD, path, ts, 0), ==, 0);
}

/* The envelope's mtime says when it is due; list_due keeps those. */
static void
test_list_due(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *now_id = queue_one(f, "a\r\n", "bob@example.net");
	g_autofree char *later_id = queue_one(f, "b\r\n", "carol@example.net");
	g_autoptr(PbQueueEntry) e = pb_queue_lock(f->q, later_id, &error);
	g_autoptr(GPtrArray) due = NULL;
	PbRecipient *r;

	g_assert_no_error(error);
	r = g_ptr_array_index(pb_queue_entry_envelope(e)->rcpts, 0);
	r->next_attempt = 2000000000;
	g_assert_true(pb_queue_entry_update(e, &error));
	due = pb_queue_list_due(f->q, 1900000000, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(due->len, ==, 1);
	g_assert_cmpstr(g_ptr_array_index(due, 0), ==, now_id);
	g_clear_pointer(&due, g_ptr_array_unref);
	due = pb_queue_list_due(f->q, 2000000000, &error);
	g_assert_cmpuint(due->len, ==, 2);
	g_clear_pointer(&due, g_ptr_array_unref);
	/* a failed recipient owes a bounce: due at once */
	r->state = PB_RCPT_FAILED;
	g_assert_true(pb_queue_entry_update(e, &error));
	due = pb_queue_list_due(f->q, 1900000000, &error);
	g_assert_cmpuint(due->len, ==, 2);
}

static void
test_clean_stale(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *queued = queue_one(f, "a\r\n", "a@example.net");
	g_autofree char *orphan = pb_queue_new_id();
	g_autofree char *p_orphan =
	    g_build_filename(f->dir, "msg", orphan, NULL);
	g_autofree char *p_young =
	    g_build_filename(f->dir, "msg", "young", NULL);
	g_autofree char *p_queued =
	    g_build_filename(f->dir, "msg", queued, NULL);
	g_autofree char *p_tmp = g_build_filename(f->dir, "tmp", "x.1", NULL);
	PbQueueTx *tx = pb_queue_tx_begin(f->q, &error);
	g_autofree char *p_tx =
	    g_build_filename(f->dir, "msg", pb_queue_tx_id(tx), NULL);

	g_assert_true(g_file_set_contents(p_orphan, "x", 1, NULL));
	g_assert_true(g_file_set_contents(p_young, "x", 1, NULL));
	g_assert_true(g_file_set_contents(p_tmp, "x", 1, NULL));
	make_old(p_orphan);
	make_old(p_queued);
	make_old(p_tmp);
	make_old(p_tx); /* a very slow session: locked, kept */
	g_assert_cmpuint(pb_queue_clean_stale(f->q, 86400, &error), ==, 2);
	g_assert_no_error(error);
	g_assert_false(g_file_test(p_orphan, G_FILE_TEST_EXISTS));
	g_assert_false(g_file_test(p_tmp, G_FILE_TEST_EXISTS));
	g_assert_true(g_file_test(p_young, G_FILE_TEST_EXISTS));
	g_assert_true(g_file_test(p_queued, G_FILE_TEST_EXISTS));
	g_assert_true(g_file_test(p_tx, G_FILE_TEST_EXISTS));
	pb_queue_tx_abort(tx);
}

static void
test_ids(void)
{
	g_autofree char *prev = NULL;
	g_autoptr(GHashTable) seen =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

	for (int i = 0; i < 10000; i++) {
		char *id = pb_queue_new_id();
		g_assert_cmpuint(strlen(id), ==, 22);
		for (int k = 0; k < 22; k++)
			g_assert_true(g_ascii_isxdigit(id[k]) &&
			              !g_ascii_islower(id[k]));
		if (prev != NULL)
			g_assert_cmpstr(prev, <, id);
		g_free(prev);
		prev = g_strdup(id);
		g_assert_true(g_hash_table_add(seen, id));
	}
}

static void
test_listing(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GString) empty =
	    pb_queue_format_listing(f->q, FALSE, 3600, &error);
	g_autoptr(GString) text = NULL;
	g_autoptr(GString) json = NULL;
	g_autofree char *id = queue_one(f, "abc\r\n", "b\"o\\b@example.net");
	g_autoptr(PbQueueEntry) e = pb_queue_lock(f->q, id, &error);
	PbRecipient *r =
	    g_ptr_array_index(pb_queue_entry_envelope(e)->rcpts, 0);

	g_assert_cmpstr(empty->str, ==, "Mail queue is empty\n");
	pb_recipient_add_attempt(r, 1763800100, "mx", "451 4.4.1 \x1b[31mred");
	g_assert_true(pb_queue_entry_update(e, &error));
	text = pb_queue_format_listing(f->q, FALSE, 3600, &error);
	g_assert_no_error(error);
	g_assert_nonnull(strstr(text->str, id));
	g_assert_nonnull(strstr(text->str, "  alice@example.org\n"));
	g_assert_nonnull(strstr(text->str, "(451 4.4.1 \\x1B[31mred)\n"));
	g_assert_true(
	    g_str_has_suffix(text->str, "-- 1 Kbytes in 1 Request.\n"));
	json = pb_queue_format_listing(f->q, TRUE, 3600, &error);
	g_assert_no_error(error);
	g_assert_true(g_str_has_prefix(json->str, "[{\"id\":\""));
	g_assert_nonnull(
	    strstr(json->str, "\"address\":\"b\\\"o\\\\b@example.net\""));
	g_assert_nonnull(
	    strstr(json->str, "\"last_error\":\"451 4.4.1 \\u001b[31mred\""));
	g_assert_nonnull(strstr(json->str, "\"size\":5,"));
	g_assert_nonnull(strstr(json->str, "\"bounce_at\":"));
	g_assert_nonnull(
	    strstr(json->str, "\"state\":\"pending\",\"attempts\":1"));
	g_assert_true(g_str_has_suffix(json->str, "}]\n"));
}

/* A queue entry that is a symbolic link (msg/ID to a file the queue's
 * user may read, env/ID likewise) or not a regular file is refused with
 * a clear error and never followed; so is a symlinked queue folder. */
static void
test_symlink_refused(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *id = queue_one(f, "hello\r\n", "bob@example.net");
	g_autofree char *msg = g_build_filename(f->dir, "msg", id, NULL);
	g_autofree char *env = g_build_filename(f->dir, "env", id, NULL);
	g_autofree char *secret = g_build_filename(f->dir, "secret", NULL);
	g_autofree char *moved = g_build_filename(f->dir, "env-copy", NULL);
	g_autofree char *other = g_build_filename(f->dir, "other", NULL);
	g_autofree char *tmp = g_build_filename(other, "tmp", NULL);
	g_autofree char *link_tmp = g_build_filename(other, "tmp-real", NULL);
	g_autoptr(PbQueueEntry) e = NULL;
	g_autoptr(PbEnvelope) back = NULL;
	g_autoptr(PbQueue) q2 = NULL;

	g_assert_true(g_file_set_contents(secret, "root:x:0:0\n", -1, NULL));
	g_assert_cmpint(unlink(msg), ==, 0);
	g_assert_cmpint(symlink(secret, msg), ==, 0);
	e = pb_queue_lock(f->q, id, &error);
	g_assert_null(e);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	g_assert_nonnull(strstr(error->message, "symbolic link: refused"));
	g_clear_error(&error);
	/* a FIFO is no regular file (and its open does not block) */
	g_assert_cmpint(unlink(msg), ==, 0);
	g_assert_cmpint(mkfifo(msg, 0600), ==, 0);
	e = pb_queue_lock(f->q, id, &error);
	g_assert_null(e);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	g_assert_nonnull(strstr(error->message, "not a regular file"));
	g_clear_error(&error);
	/* the envelope: mailq's unlocked read too */
	g_assert_cmpint(rename(env, moved), ==, 0);
	g_assert_cmpint(symlink(moved, env), ==, 0);
	back = pb_queue_read_envelope(f->q, id, &error);
	g_assert_null(back);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	g_clear_error(&error);
	/* a queue whose tmp/ is a link to another folder */
	g_assert_cmpint(mkdir(other, 0700), ==, 0);
	g_assert_cmpint(mkdir(link_tmp, 0700), ==, 0);
	g_assert_cmpint(symlink(link_tmp, tmp), ==, 0);
	q2 = pb_queue_open(other, &error);
	g_assert_null(q2);
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
}

static gboolean
keep_all(const PbEnvelope *env, gpointer data)
{
	return TRUE;
}

/* An entry set aside (an unreadable envelope): runq's pb_queue_set_aside
 * moves both files into corrupt/, the full listing shows it last, a
 * user's filtered listing does not. */
static void
test_set_aside(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *id = queue_one(f, "abc\r\n", "bob@example.net");
	g_autofree char *other = queue_one(f, "abc\r\n", "carol@example.net");
	g_autofree char *env = g_build_filename(f->dir, "env", id, NULL);
	g_autofree char *salvage = NULL;
	g_autofree char *json = NULL;
	g_autoptr(GString) full = NULL;
	g_autoptr(GString) text = NULL;
	g_autoptr(GString) mine = NULL;
	g_autoptr(PbQueueEntry) e = pb_queue_lock(f->q, id, &error);
	int fd;

	g_assert_no_error(error);
	/* locked by a delivery, or still readable: left alone */
	g_assert_cmpint(pb_queue_set_aside(f->q, id, &salvage, &error), <, 0);
	g_assert_error(error, PB_ERROR, PB_ERROR_BUSY);
	g_clear_error(&error);
	g_clear_pointer(&e, pb_queue_entry_free);
	g_assert_cmpint(pb_queue_set_aside(f->q, id, &salvage, &error), <, 0);
	g_assert_error(error, PB_ERROR, PB_ERROR_BUSY);
	g_clear_error(&error);
	g_assert_true(
	    g_file_set_contents(env, "damaged\nsender x@y\n", -1, NULL));
	fd = pb_queue_set_aside(f->q, id, &salvage, &error);
	g_assert_no_error(error);
	g_assert_cmpint(fd, >=, 0);
	close(fd);
	g_assert_cmpstr(salvage, ==, "sender: <x@y>\n");
	g_assert_cmpuint(count_files(f->dir, "corrupt"), ==, 2);
	g_assert_cmpuint(count_files(f->dir, "env"), ==, 1);
	g_assert_cmpuint(count_files(f->dir, "msg"), ==, 1);
	full = pb_queue_format_listing(f->q, TRUE, 3600, &error);
	json = g_strdup_printf(",{\"id\":\"%s\",\"corrupt\":true}]\n", id);
	g_assert_true(g_str_has_suffix(full->str, json));
	g_assert_nonnull(strstr(full->str, other));
	text = pb_queue_format_listing(f->q, FALSE, 3600, &error);
	g_assert_nonnull(strstr(text->str, "!  (unreadable envelope"));
	mine = pb_queue_format_listing_of(f->q, TRUE, 3600, keep_all, NULL,
	                                  &error);
	g_assert_null(strstr(mine->str, id));
	g_assert_nonnull(strstr(mine->str, other));
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, setup, fn, teardown)
	ADD("/queue/tx/commit", test_commit);
	ADD("/queue/tx/two-at-once", test_two_transactions);
	ADD("/queue/tx/abort", test_abort);
	ADD("/queue/tx/commit-fails", test_commit_fails);
	g_test_add_func("/queue/envelope/roundtrip", test_roundtrip);
	g_test_add_func("/queue/envelope/null-sender", test_null_sender);
	g_test_add_func("/queue/envelope/prepend", test_prepend);
	g_test_add_func("/queue/envelope/history-bound", test_history_bound);
	g_test_add_func("/queue/envelope/malformed", test_malformed);
	g_test_add_func("/queue/envelope/salvage", test_salvage);
	g_test_add_func("/queue/envelope/size-bound", test_size_bound);
	g_test_add_func("/queue/envelope/old-history", test_old_envelope);
	g_test_add_func("/queue/sanitize", test_sanitize);
	ADD("/queue/lock/busy", test_lock);
	ADD("/queue/lock/missing", test_lock_missing);
	ADD("/queue/lock/symlink-refused", test_symlink_refused);
	ADD("/queue/entry/update-remove", test_update_remove);
	ADD("/queue/list", test_list);
	ADD("/queue/list-due", test_list_due);
	ADD("/queue/clean-stale", test_clean_stale);
	g_test_add_func("/queue/ids", test_ids);
	ADD("/queue/listing", test_listing);
	ADD("/queue/set-aside", test_set_aside);
	return g_test_run();
}
