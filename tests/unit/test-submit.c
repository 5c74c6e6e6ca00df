/* test-submit.c - local submission: address lists, qualification, and
 * what pb_submit() queues for a given input. */
#include "config.h"
#include "error.h"
#include "queue.h"
#include "submit.h"

#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

static const char conf[] = "[main]\nhostname = mx.example.org\n"
                           "domains = example.org\n"
                           "[smtpd]\nmax_message_size = 8K\n";

static void
test_address_list(void)
{
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);

	pb_submit_address_list(
	    " Alice <alice@example.org>, \"Bob, Jr.\" <bob@example.net>,"
	    " carol@example.com (Carol), team: dave@example.org, "
	    "\"e v\"@example.org; undisclosed-recipients:;",
	    out);
	g_assert_cmpuint(out->len, ==, 5);
	g_assert_cmpstr(g_ptr_array_index(out, 0), ==, "alice@example.org");
	g_assert_cmpstr(g_ptr_array_index(out, 1), ==, "bob@example.net");
	g_assert_cmpstr(g_ptr_array_index(out, 2), ==, "carol@example.com");
	g_assert_cmpstr(g_ptr_array_index(out, 3), ==, "dave@example.org");
	g_assert_cmpstr(g_ptr_array_index(out, 4), ==, "\"e v\"@example.org");
}

static void
test_qualify(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg =
	    pb_config_load_data(conf, strlen(conf), "t", "/tmp", &error);
	g_autofree char *a = pb_submit_qualify(cfg, "root", &error);
	g_autofree char *b = pb_submit_qualify(cfg, "x@Example.NET", &error);
	g_autofree char *c = NULL;

	g_assert_no_error(error);
	g_assert_cmpstr(a, ==, "root@example.org");
	g_assert_cmpstr(b, ==, "x@example.net");
	c = pb_submit_qualify(cfg, "bad address@", &error);
	g_assert_null(c);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
}

typedef struct {
	char *dir;
	PbConfig *cfg;
	PbQueue *q;
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;

	f->dir = g_dir_make_tmp("pbsubmit-XXXXXX", &error);
	g_assert_no_error(error);
	f->cfg = pb_config_load_data(conf, strlen(conf), "t", f->dir, &error);
	g_assert_no_error(error);
	f->q = pb_queue_open(f->cfg->queue, &error);
	g_assert_no_error(error);
}

static void
teardown(Fixture *f, gconstpointer data)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);

	g_assert_cmpint(system(cmd), ==, 0);
	pb_queue_free(f->q);
	pb_config_free(f->cfg);
	g_free(f->dir);
}

/* Submits INPUT; returns the queued data (or NULL with *ERROR). */
static char *
submit(Fixture *f, PbSubmission *sub, const char *input, gsize len,
       PbEnvelope **env, GError **error)
{
	int p[2];
	g_autofree char *id = NULL;
	g_autofree char *path = NULL;
	char *data = NULL;
	gboolean ok;

	g_assert_cmpint(pipe(p), ==, 0);
	g_assert_cmpint(write(p[1], input, len), ==, (gssize)len);
	close(p[1]);
	ok = pb_submit(f->cfg, f->q, sub, p[0], &id, error);
	close(p[0]);
	if (!ok)
		return NULL;
	*env = pb_queue_read_envelope(f->q, id, error);
	g_assert_nonnull(*env);
	path = g_build_filename(f->cfg->queue, "msg", id, NULL);
	g_assert_true(g_file_get_contents(path, &data, NULL, NULL));
	return data;
}

static void
test_plain(Fixture *f, gconstpointer data)
{
	char *rcpts[] = {"alice", "bob@example.net, ", NULL};
	PbSubmission sub = {.sender = "root@example.org",
	                    .login = "root",
	                    .recipients = rcpts,
	                    .dot_ends = TRUE};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = NULL;
	const char in[] = "Subject: hi\nTo: someone@else.test\n\nbody\n"
	                  "..two dots\n.\nnot read\n";
	g_autofree char *out = submit(f, &sub, in, strlen(in), &env, &error);

	g_assert_no_error(error);
	g_assert_cmpstr(env->sender, ==, "root@example.org");
	g_assert_cmpuint(env->rcpts->len, ==, 2);
	g_assert_cmpstr(((PbRecipient *)env->rcpts->pdata[0])->address, ==,
	                "alice@example.org");
	g_assert_true(g_str_has_prefix(out, "Received: by mx.example.org"));
	g_assert_nonnull(strstr(out, "\r\nFrom: root@example.org\r\n"));
	g_assert_nonnull(strstr(out, "\r\nDate: "));
	g_assert_nonnull(strstr(out, "\r\nMessage-ID: <"));
	g_assert_nonnull(strstr(out, "\r\nSubject: hi\r\nTo: someone@else.test"
	                             "\r\n\r\nbody\r\n..two dots\r\n"));
	g_assert_true(g_str_has_suffix(out, "..two dots\r\n"));
	g_assert_null(strstr(out, "not read"));
	g_assert_null(strstr(out, "\n\n"));
}

static void
test_extract(Fixture *f, gconstpointer data)
{
	PbSubmission sub = {.sender = "u@example.org",
	                    .login = "u",
	                    .full_name = "U Ser",
	                    .extract = TRUE,
	                    .dot_ends = TRUE};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = NULL;
	const char in[] = "To: A <a@example.org>,\n b@example.org\n"
	                  "Cc: c@example.net\nBcc: secret@example.com\n"
	                  "Subject: x\n\n.\nline\n";
	g_autofree char *out = submit(f, &sub, in, strlen(in), &env, &error);

	g_assert_no_error(error);
	g_assert_cmpuint(env->rcpts->len, ==, 4);
	g_assert_cmpstr(((PbRecipient *)env->rcpts->pdata[3])->address, ==,
	                "secret@example.com");
	g_assert_null(strstr(out, "Bcc"));
	g_assert_null(strstr(out, "secret"));
	g_assert_nonnull(strstr(out, "From: \"U Ser\" <u@example.org>\r\n"));
	g_assert_nonnull(
	    strstr(out, "To: A <a@example.org>,\r\n b@example.org"));
	/* with -t and without -i the lone dot still ends the input */
	g_assert_true(g_str_has_suffix(out, "Subject: x\r\n\r\n"));
}

/* Found by fuzz-submit: a header that is not UTF-8 (a Latin-1 Subject)
 * made the field split (GRegex, UTF-8 only) return NULL, and sendmail
 * crashed on it. Header octets are bytes. */
static void
test_latin1_header(Fixture *f, gconstpointer data)
{
	PbSubmission sub = {.sender = "u@example.org",
	                    .login = "u",
	                    .extract = TRUE,
	                    .dot_ends = TRUE};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = NULL;
	const char in[] = "Subject: caf\xe9\nTo: b@example.org\n"
	                  "Bcc: \xe9t\xe9 <c@example.org>\n\nbody\n";
	g_autofree char *out = submit(f, &sub, in, strlen(in), &env, &error);

	g_assert_no_error(error);
	g_assert_cmpuint(env->rcpts->len, ==, 2);
	g_assert_cmpstr(((PbRecipient *)env->rcpts->pdata[1])->address, ==,
	                "c@example.org");
	g_assert_nonnull(strstr(out, "\r\nSubject: caf\xe9\r\n"
	                             "To: b@example.org\r\n\r\nbody\r\n"));
}

static void
test_no_header_long_line(Fixture *f, gconstpointer data)
{
	char *rcpts[] = {"alice", NULL};
	PbSubmission sub = {.sender = "", .login = "u", .recipients = rcpts};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = NULL;
	g_autoptr(GString) in = g_string_new("just a body line\n.\n");
	g_autofree char *out = NULL;
	char *p;

	g_string_append(in, "x");
	for (int i = 0; i < 2000; i++)
		g_string_append_c(in, 'y');
	out = submit(f, &sub, in->str, in->len, &env, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(env->sender, ==, "");
	g_assert_nonnull(strstr(out, "\r\n\r\njust a body line\r\n.\r\nxyy"));
	for (p = out; (p = strstr(p, "\r\n")) != NULL; p += 2) {
		char *next = strstr(p + 2, "\r\n");
		if (next)
			g_assert_cmpint(next - (p + 2), <=, 998);
	}
	g_assert_true(g_str_has_suffix(out, "yy\r\n"));
}

static void
test_refused(Fixture *f, gconstpointer data)
{
	char *rcpts[] = {"alice", NULL};
	PbSubmission sub = {.sender = "", .login = "u", .recipients = rcpts};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = NULL;
	g_autoptr(GString) big = g_string_new("Subject: big\n\n");
	g_autoptr(GPtrArray) ids = NULL;
	char *out;

	out = submit(f, &sub, "Subject: a\n\nnul\0byte\n", 20, &env, &error);
	g_assert_null(out);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	g_clear_error(&error);
	for (int i = 0; i < 200; i++)
		g_string_append(big,
		                "0123456789012345678901234567890123456789\n");
	out = submit(f, &sub, big->str, big->len, &env, &error);
	g_assert_null(out);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	g_clear_error(&error);
	sub.recipients = NULL;
	out = submit(f, &sub, "x\n", 2, &env, &error);
	g_assert_null(out);
	g_assert_error(error, PB_ERROR, PB_ERROR_USAGE);
	ids = pb_queue_list(f->q, NULL);
	g_assert_cmpuint(ids->len, ==, 0);
}

/* No bare CR or LF is queued: a CR alone ends a line as LF does, also
 * at the end of the input. */
static void
assert_crlf_only(const char *out)
{
	for (const char *p = out; *p; p++) {
		if (*p == '\r')
			g_assert_cmpint(p[1], ==, '\n');
		if (*p == '\n')
			g_assert_true(p > out && p[-1] == '\r');
	}
}

static void
test_bare_cr(Fixture *f, gconstpointer data)
{
	char *rcpts[] = {"alice", NULL};
	PbSubmission sub = {.sender = "", .login = "u", .recipients = rcpts};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = NULL;
	g_autoptr(PbEnvelope) env2 = NULL;
	const char in[] = "Subject: cr\r\n\r\nbody\r.\rX-Smuggled: yes\r"
	                  "\r\nend\r";
	g_autofree char *out = submit(f, &sub, in, strlen(in), &env, &error);
	g_autofree char *ended = NULL;

	g_assert_no_error(error);
	g_assert_nonnull(strstr(out, "\r\n\r\nbody\r\n.\r\nX-Smuggled: "
	                             "yes\r\n\r\nend\r\n"));
	g_assert_true(g_str_has_suffix(out, "end\r\n"));
	assert_crlf_only(out);
	/* without -i, a "." line ended by a CR ends the input */
	sub.dot_ends = TRUE;
	ended = submit(f, &sub, in, strlen(in), &env2, &error);
	g_assert_no_error(error);
	g_assert_true(g_str_has_suffix(ended, "\r\n\r\nbody\r\n"));
	assert_crlf_only(ended);
}

static void
test_full_name(Fixture *f, gconstpointer data)
{
	char *rcpts[] = {"alice", NULL};
	PbSubmission sub = {.sender = "u@example.org",
	                    .login = "u",
	                    .full_name = "Eve\nX-Injected: 1",
	                    .recipients = rcpts};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbEnvelope) env = NULL;
	g_autoptr(GPtrArray) ids = NULL;
	g_autofree char *out = NULL;

	g_assert_null(submit(f, &sub, "x\n", 2, &env, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_USAGE);
	g_clear_error(&error);
	sub.full_name = "Eve\rBcc: x";
	g_assert_null(submit(f, &sub, "x\n", 2, &env, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_USAGE);
	g_clear_error(&error);
	ids = pb_queue_list(f->q, NULL);
	g_assert_cmpuint(ids->len, ==, 0);
	/* quotes and backslashes stay inside the quoted string */
	sub.full_name = "Eve \"CEO\" <ceo@example.org>, \\";
	out = submit(f, &sub, "x\n", 2, &env, &error);
	g_assert_no_error(error);
	g_assert_nonnull(strstr(out, "\r\nFrom: \"Eve \\\"CEO\\\" "
	                             "<ceo@example.org>, \\\\\" "
	                             "<u@example.org>\r\n"));
}

static void
test_is_users(void)
{
	g_autoptr(PbEnvelope) env = pb_envelope_new();

	g_free(env->sender);
	env->sender = g_strdup("u@example.org");
	g_assert_false(pb_submit_is_users(env, 1000, "u@example.org"));
	env->client = g_strdup("local uid 1000 (u)");
	g_assert_true(pb_submit_is_users(env, 1000, "u@example.org"));
	g_assert_false(pb_submit_is_users(env, 100, "x@example.org"));
	g_assert_false(pb_submit_is_users(env, 10, "x@example.org"));
	g_free(env->client);
	/* sendmail -bs: no IP address, the user's own sender */
	env->client = g_strdup("localhost []");
	g_assert_true(pb_submit_is_users(env, 1000, "U@example.org"));
	g_assert_false(pb_submit_is_users(env, 1000, "v@example.org"));
	g_free(env->client);
	env->client = g_strdup("localhost [192.0.2.1]");
	g_assert_false(pb_submit_is_users(env, 1000, "u@example.org"));
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/submit/address-list", test_address_list);
	g_test_add_func("/submit/qualify", test_qualify);
	g_test_add("/submit/plain", Fixture, NULL, setup, test_plain, teardown);
	g_test_add("/submit/latin1-header", Fixture, NULL, setup,
	           test_latin1_header, teardown);
	g_test_add("/submit/extract", Fixture, NULL, setup, test_extract,
	           teardown);
	g_test_add("/submit/no-header-long-line", Fixture, NULL, setup,
	           test_no_header_long_line, teardown);
	g_test_add("/submit/refused", Fixture, NULL, setup, test_refused,
	           teardown);
	g_test_add("/submit/bare-cr", Fixture, NULL, setup, test_bare_cr,
	           teardown);
	g_test_add("/submit/full-name", Fixture, NULL, setup, test_full_name,
	           teardown);
	g_test_add_func("/submit/is-users", test_is_users);
	return g_test_run();
}
