/*
 * test-mime.c - mime.c and message.c: structure, sizes, strings,
 * sections, partials, dates and the SEARCH matcher.
 */
#include <glib.h>

#include "message.h"
#include "mime.h"

static void
test_simple(void)
{
	const char *m = "From: A <a@b.c>\nSubject: hi\n\nhello\n";
	g_autoptr(PbMimePart) root = pb_mime_parse(m, strlen(m));
	g_assert_cmpuint(root->header_size, ==, 29);
	g_assert_cmpuint(root->body_size, ==, 6);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/mime/simple", test_simple);
	return g_test_run();
}
