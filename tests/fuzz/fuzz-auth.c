/*
 * fuzz-auth.c - the filter of Authentication-Results fields claiming to
 * be ours (auth.c), fed outside bytes: the whole input at once, then in
 * two pieces cut where the first byte says.
 *
 * Checked: the output is the same however the input is cut; it is never
 * longer than the input, and ends with the same empty line and body
 * (after the header section nothing is touched).
 */
#include "auth.h"
#include "fuzz.h"

#include <string.h>

static void
collect(void *ctx, const char *buf, gsize len)
{
	g_string_append_len(ctx, buf, len);
}

static GString *
run(const char *data, gsize size, gsize cut, guint *removed)
{
	GString *out = g_string_new(NULL);
	g_autoptr(PbAuthFilter) f =
	    pb_auth_filter_new("mx.example.org", collect, out);

	pb_auth_filter_feed(f, data, cut);
	pb_auth_filter_feed(f, data + cut, size - cut);
	pb_auth_filter_finish(f);
	*removed = pb_auth_filter_removed(f);
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	guint removed1, removed2;
	GString *whole, *cut;
	const char *body;

	if (size == 0)
		return 0;
	whole = run(text + 1, size - 1, 0, &removed1);
	cut = run(text + 1, size - 1, MIN(data[0], size - 1), &removed2);
	g_assert_cmpuint(whole->len, ==, cut->len);
	g_assert_true(memcmp(whole->str, cut->str, whole->len) == 0);
	g_assert_cmpuint(removed1, ==, removed2);
	g_assert_cmpuint(whole->len, <=, size - 1);
	g_assert_true(removed1 > 0 || whole->len == size - 1);
	/* the empty line and the body (the CRLF before it may end a field
	 * that went) */
	body = g_strstr_len(text + 1, size - 1, "\r\n\r\n");
	if (body != NULL)
		body += 2;
	if (body != NULL && whole->len >= (gsize)(text + size - body))
		g_assert_true(
		    memcmp(whole->str + whole->len - (text + size - body), body,
		           text + size - body) == 0);
	(void)pb_auth_field_is_ours(text, size, "mx.example.org");
	g_string_free(whole, TRUE);
	g_string_free(cut, TRUE);
	return 0;
}
