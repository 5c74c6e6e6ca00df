/* test-data-decoder.c - DATA: dot-unstuffing, the end only at
 * CRLF.CRLF, and the problems that reject a message. */
#include "smtp-server.h"

#include <string.h>

static void
sink(void *ctx, const char *buf, gsize len)
{
	g_string_append_len(ctx, buf, len);
}

typedef struct {
	GString *out;
	guint problems;
	gboolean done;
	gsize used; /* octets consumed */
} Result;

/* Feeds IN (LEN octets) in pieces of STEP octets (0: all at once). */
static Result
decode(const char *in, gsize len, gsize step, guint64 max)
{
	Result r = {g_string_new(NULL), 0, FALSE, 0};
	g_autoptr(PbDataDecoder) dec = pb_data_decoder_new(max, sink, r.out);

	while (r.used < len && !r.done) {
		gsize n = step ? MIN(step, len - r.used) : len - r.used;
		gsize used = pb_data_decoder_feed(dec, in + r.used, n, &r.done);
		g_assert_cmpuint(used, <=, n);
		if (!r.done)
			g_assert_cmpuint(used, ==, n);
		r.used += used;
	}
	r.problems = pb_data_decoder_problems(dec);
	g_assert_cmpuint(pb_data_decoder_size(dec), ==, r.out->len);
	return r;
}

static void
test_unstuff(void)
{
	const char in[] = "Subject: x\r\n\r\n..leading\r\n.\r\n..\r\nend\r\n"
	                  ".\r\nQUIT\r\n";
	const char want[] = "Subject: x\r\n\r\n.leading\r\n";

	/* every split gives the same result */
	for (gsize step = 0; step < 8; step++) {
		Result r = decode(in, strlen(in), step, 1000);
		g_assert_true(r.done);
		g_assert_cmpstr(r.out->str, ==, want);
		g_assert_cmpuint(r.problems, ==, PB_DATA_OK);
		/* the rest (the next commands) is left */
		g_assert_cmpstr(in + r.used, ==, "..\r\nend\r\n.\r\nQUIT\r\n");
		g_string_free(r.out, TRUE);
	}
}

static void
test_empty_and_unfinished(void)
{
	Result r = decode(".\r\n", 3, 0, 100);

	g_assert_true(r.done);
	g_assert_cmpuint(r.out->len, ==, 0);
	g_string_free(r.out, TRUE);
	r = decode("a\r\n.\r", 5, 1, 100);
	g_assert_false(r.done);
	g_assert_cmpstr(r.out->str, ==, "a\r\n");
	g_string_free(r.out, TRUE);
}

static void
test_bare_lf(void)
{
	/* "\n.\n" must not end the data: the smuggling case */
	const char in[] = "a\n.\nMAIL FROM:<x@y>\r\n.\r\n";
	Result r = decode(in, strlen(in), 0, 1000);

	g_assert_true(r.done);
	g_assert_cmpuint(r.used, ==, strlen(in));
	g_assert_true(r.problems & PB_DATA_BARE_LF);
	g_string_free(r.out, TRUE);
	/* ".\n" is not the end either; the data ends at the CRLF.CRLF */
	r = decode("a\r\n.\n.\r\n", 9, 0, 1000);
	g_assert_false(r.done);
	g_assert_true(r.problems & PB_DATA_BARE_LF);
	g_string_free(r.out, TRUE);
	r = decode("a\r\n.\n.\r\n.\r\n", 12, 0, 1000);
	g_assert_true(r.done);
	g_assert_true(r.problems & PB_DATA_BARE_LF);
	g_string_free(r.out, TRUE);
}

static void
test_bare_cr(void)
{
	const char *cases[] = {"a\rb\r\n.\r\n", "a\r\r\n.\r\n", ".\rx\r\n.\r\n",
	                       "a\r\n\r.\r\n.\r\n"};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		Result r = decode(cases[i], strlen(cases[i]), 1, 1000);
		g_assert_true(r.done);
		g_assert_true(r.problems & PB_DATA_BARE_CR);
		g_assert_false(r.problems & PB_DATA_BARE_LF);
		g_string_free(r.out, TRUE);
	}
}

static void
test_nul_and_long_line(void)
{
	g_autoptr(GString) in = g_string_new(NULL);
	Result r = decode("a\0b\r\n.\r\n", 8, 0, 1000);

	g_assert_true(r.done);
	g_assert_cmpuint(r.problems, ==, PB_DATA_NUL);
	g_string_free(r.out, TRUE);
	g_string_append(in, ".");
	for (int i = 0; i < PB_DATA_MAX_LINE; i++)
		g_string_append_c(in, 'x');
	/* 998 after unstuffing: allowed */
	g_string_append(in, "\r\n.\r\n");
	r = decode(in->str, in->len, 100, 100000);
	g_assert_cmpuint(r.problems, ==, PB_DATA_OK);
	g_string_free(r.out, TRUE);
	g_string_insert_c(in, 1, 'x');
	r = decode(in->str, in->len, 100, 100000);
	g_assert_cmpuint(r.problems, ==, PB_DATA_LONG_LINE);
	g_string_free(r.out, TRUE);
}

static void
test_too_big(void)
{
	const char in[] = "0123456789\r\n0123456789\r\n.\r\nNOOP\r\n";
	Result r = decode(in, strlen(in), 3, 15);

	/* reading goes on to the end; output stops at the limit */
	g_assert_true(r.done);
	g_assert_cmpuint(r.used, ==, strlen(in) - 6);
	g_assert_cmpuint(r.out->len, ==, 15);
	g_assert_cmpuint(r.problems, ==, PB_DATA_TOO_BIG);
	g_string_free(r.out, TRUE);
}

static void
test_received_loop(void)
{
	g_autoptr(GString) in = g_string_new(NULL);
	Result r;

	for (int i = 0; i < PB_DATA_MAX_RECEIVED; i++)
		g_string_append(in, "Received: from x by y\r\n");
	g_string_append(in, "\r\nReceived: in the body does not count\r\n"
	                    ".\r\n");
	r = decode(in->str, in->len, 7, 1 << 20);
	g_assert_cmpuint(r.problems, ==, PB_DATA_OK);
	g_string_free(r.out, TRUE);
	g_string_prepend(in, "RECEIVED: one more\r\n");
	r = decode(in->str, in->len, 7, 1 << 20);
	g_assert_cmpuint(r.problems, ==, PB_DATA_LOOP);
	g_string_free(r.out, TRUE);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/data-decoder/unstuff", test_unstuff);
	g_test_add_func("/data-decoder/empty-and-unfinished",
	                test_empty_and_unfinished);
	g_test_add_func("/data-decoder/bare-lf", test_bare_lf);
	g_test_add_func("/data-decoder/bare-cr", test_bare_cr);
	g_test_add_func("/data-decoder/nul-and-long-line",
	                test_nul_and_long_line);
	g_test_add_func("/data-decoder/too-big", test_too_big);
	g_test_add_func("/data-decoder/received-loop", test_received_loop);
	return g_test_run();
}
