/*
 * fuzz-envelope.c - the envelope parser (queue.c). An envelope that
 * parses is formatted and parsed again: the second text equals the
 * first (nothing lost or changed by a rewrite), and no text field can
 * carry a CR, LF or NUL into a file.
 */
#include "fuzz.h"
#include "queue.h"

#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(PbEnvelope) env = NULL;
	g_autoptr(PbEnvelope) again = NULL;
	g_autoptr(GString) text = NULL;
	g_autoptr(GString) text2 = NULL;
	g_autoptr(GError) error = NULL;

	env = pb_envelope_parse((const char *)data, size, &error);
	if (env == NULL) {
		g_assert_nonnull(error);
		return 0;
	}
	(void)pb_envelope_is_final(env);
	text = pb_envelope_format(env);
	g_assert_cmpuint(strlen(text->str), ==, text->len);
	again = pb_envelope_parse(text->str, text->len, &error);
	g_assert_no_error(error);
	text2 = pb_envelope_format(again);
	g_assert_cmpstr(text->str, ==, text2->str);
	return 0;
}
