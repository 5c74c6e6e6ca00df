/*
 * fuzz-data-decoder.c - the DATA decoder (dot-unstuffing, CRLF.CRLF, the
 * checks). The same input is fed whole and in chunks of the sizes its
 * first octet picks: both must consume the same octets, produce the same
 * output and report the same problems, and the output never exceeds the
 * size limit.
 */
#include "fuzz.h"
#include "smtp-server.h"

#include <string.h>

#define MAX_SIZE 2048

static void
sink(void *ctx, const char *buf, gsize len)
{
	g_string_append_len(ctx, buf, len);
}

/* Feeds DATA in chunks of STEP (0: whole); returns the octets used. */
static gsize
decode(const char *data, gsize size, gsize step, GString *got,
       guint *problems, gboolean *done)
{
	g_autoptr(PbDataDecoder) dec =
	    pb_data_decoder_new(MAX_SIZE, sink, got);
	gsize pos = 0;

	*done = FALSE;
	while (pos < size && !*done) {
		gsize n = step ? MIN(step, size - pos) : size - pos;
		gsize used = pb_data_decoder_feed(dec, data + pos, n, done);
		g_assert_cmpuint(used, <=, n);
		g_assert_true(used == n || *done);
		pos += used;
	}
	*problems = pb_data_decoder_problems(dec);
	g_assert_cmpuint(pb_data_decoder_size(dec), ==, got->len);
	g_assert_cmpuint(got->len, <=, MAX_SIZE);
	return pos;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(GString) whole = g_string_new(NULL);
	g_autoptr(GString) parts = g_string_new(NULL);
	guint p1, p2;
	gboolean d1, d2;
	gsize u1, u2;

	if (size < 1)
		return 0;
	u1 = decode((const char *)data + 1, size - 1, 0, whole, &p1, &d1);
	u2 = decode((const char *)data + 1, size - 1, 1 + data[0] % 7, parts,
	            &p2, &d2);
	g_assert_cmpuint(u1, ==, u2);
	g_assert_cmpint(d1, ==, d2);
	g_assert_cmpuint(p1, ==, p2);
	g_assert_cmpuint(whole->len, ==, parts->len);
	g_assert_true(memcmp(whole->str, parts->str, whole->len) == 0);
	return 0;
}
