/*
 * fuzz-dkim.c - the DKIM parsers and the header canonicaliser. Input: one
 * octet choosing what, then the text:
 *   0   a tag list, then the same text as a DKIM-Signature value and as a
 *       key record;
 *   1   one header field canonicalised (relaxed and simple);
 *   2+  a whole message through the verifier, fed in chunks of that
 *       octet's size, its key lookups answered "no such record".
 * What relaxed canonicalisation makes must be one line, lower-case name,
 * no WSP run, no WSP at either end of the value.
 */
#include "dkim.h"
#include "error.h"
#include "fuzz.h"

#include <string.h>

static void
parsers(const char *text, gsize len)
{
	g_autoptr(GPtrArray) tags = pb_dkim_tags_parse(text, len, NULL);
	g_autoptr(PbDkimSig) sig = pb_dkim_sig_parse(text, len, NULL);
	g_autoptr(PbDkimKey) key = pb_dkim_key_parse(text, len, NULL);

	for (guint i = 0; tags && i < tags->len; i++) {
		const PbDkimTag *t = g_ptr_array_index(tags, i);
		g_assert_true(g_ascii_isalpha(t->name[0]));
		g_assert_true(pb_dkim_tags_get(tags, t->name) == t->value);
	}
	if (sig != NULL) {
		g_assert_true(g_bytes_get_size(sig->bh) == 32);
		g_assert_nonnull(strchr(sig->identity, '@'));
	}
	(void)key;
}

static void
canon(const char *text, gsize len)
{
	g_autoptr(GString) relaxed = g_string_new(NULL);
	g_autoptr(GString) simple = g_string_new(NULL);
	const char *colon, *r;
	gsize n;

	pb_dkim_canon_header(text, len, FALSE, simple);
	g_assert_cmpuint(simple->len, ==, len + 2);
	pb_dkim_canon_header(text, len, TRUE, relaxed);
	if (memchr(text, ':', len) == NULL)
		return;
	/* lengths, not strings: a NUL may be in the field */
	r = relaxed->str;
	n = relaxed->len;
	g_assert_true(n >= 3 && r[n - 2] == '\r' && r[n - 1] == '\n');
	g_assert_true(memchr(r, '\n', n) == r + n - 1);
	g_assert_null(memchr(r, '\t', n));
	for (gsize i = 0; i + 1 < n; i++)
		g_assert_false(r[i] == ' ' &&
		               (r[i + 1] == ' ' || r[i + 1] == '\r'));
	colon = memchr(r, ':', n);
	g_assert_true(colon[1] != ' ');
	for (const char *p = r; p < colon; p++)
		g_assert_false(g_ascii_isupper(*p) || *p == ' ');
}

static GPtrArray *
no_key(const char *name, gpointer data, GError **error)
{
	g_set_error(error, PB_ERROR, PB_ERROR_NOTFOUND, "%s", name);
	return NULL;
}

static void
verify(const char *text, gsize len, gsize chunk)
{
	g_autoptr(PbDkimVerify) v = pb_dkim_verify_new();
	g_autoptr(GPtrArray) results = NULL;

	for (gsize i = 0; i < len; i += chunk)
		pb_dkim_verify_feed(v, text + i, MIN(chunk, len - i));
	results = pb_dkim_verify_finish(v, 0, no_key, NULL);
	g_assert_cmpuint(results->len, <=, PB_DKIM_MAX_SIGNATURES);
	for (guint i = 0; i < results->len; i++) {
		const PbDkimResult *r = g_ptr_array_index(results, i);
		g_autofree char *line = pb_dkim_result_format(r);
		g_assert_true(r->status != PB_DKIM_PASS);
		g_assert_null(strchr(line, '\n'));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data + 1;

	if (size < 1)
		return 0;
	if (data[0] == 0)
		parsers(text, size - 1);
	else if (data[0] == 1)
		canon(text, size - 1);
	else
		verify(text, size - 1, data[0]);
	return 0;
}
