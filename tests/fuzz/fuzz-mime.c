/*
 * fuzz-mime.c - mime.c and message.c on a hostile message: parsed in
 * one piece and in chunks (the trees must agree), then ENVELOPE, BODY,
 * BODYSTRUCTURE, every section of every part (whole and partial: the
 * octets written must be the length announced), SEARCH BODY/TEXT/HEADER
 * and the Date parser. The message is written to a file (a memfd,
 * truncated and written again for each input) so that message.c reads
 * it through an fd (pread) as imapd does.
 */
#include "fuzz.h"
#include "message.h"
#include "mime.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int msg_fd = -1;

void
fuzz_setup(void)
{
	msg_fd = memfd_create("message", MFD_CLOEXEC);
	g_assert_cmpint(msg_fd, >=, 0);
}

static void
count_write(void *ctx, const char *data, gsize len)
{
	*(guint64 *)ctx += len;
}

static void
send_section(const PbMimePart *root, int fd, const char *text, gboolean partial)
{
	PbMimeSection sec;
	guint64 written = 0;
	PbLineOut out = {count_write, &written};
	PbMessageSection *ms;

	if (!pb_mime_section_parse(text, strlen(text), &sec)) {
		pb_mime_section_clear(&sec);
		return;
	}
	ms = pb_message_section_new(root, &sec, partial, 5, 40);
	g_assert_true(pb_message_section_write(ms, fd, &out, NULL));
	g_assert_cmpuint(written, ==, pb_message_section_length(ms));
	pb_message_section_free(ms);
	pb_mime_section_clear(&sec);
}

/* every section of PART (numbered NUM) and below */
static void
sections(const PbMimePart *root, int fd, const PbMimePart *part,
         const char *num, guint *budget)
{
	static const char *const kinds[] = {
	    "",
	    ".MIME",
	    ".HEADER",
	    ".TEXT",
	    ".HEADER.FIELDS (From Content-Type)",
	    ".HEADER.FIELDS.NOT (Subject)"};
	guint n = 1;

	for (guint k = 0; k < G_N_ELEMENTS(kinds) && *budget > 0; k++) {
		g_autofree char *s = g_strconcat(num, kinds[k], NULL);
		send_section(root, fd, s, FALSE);
		send_section(root, fd, s, TRUE);
		(*budget)--;
	}
	if ((part->flags & PB_MIME_PART_MESSAGE) != 0)
		part = part->children;
	for (const PbMimePart *c = part->children; c != NULL && *budget > 0;
	     c = c->next) {
		g_autofree char *s = g_strdup_printf("%s.%u", num, n++);
		sections(root, fd, c, s, budget);
	}
}

static char *
describe(const PbMimePart *root)
{
	GString *s = g_string_new(NULL);
	pb_mime_append_envelope(s, root);
	pb_mime_append_bodystructure(s, root, TRUE);
	pb_mime_append_bodystructure(s, root, FALSE);
	g_string_append_printf(s, " %" G_GUINT64_FORMAT,
	                       pb_mime_part_crlf_size(root));
	return g_string_free(s, FALSE);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(PbMimeParser) p = pb_mime_parser_new();
	g_autoptr(PbMimePart) root = NULL, chunked = NULL;
	g_autofree char *a = NULL, *b = NULL, *date = NULL;
	guint budget = 40;
	gboolean found;
	gint64 t;
	int tz, fd = msg_fd;

	g_assert_cmpint(ftruncate(fd, 0), ==, 0);
	g_assert_cmpint(pwrite(fd, data, size, 0), ==, (ssize_t)size);
	root = pb_message_parse_fd(fd, NULL);
	g_assert_nonnull(root);
	/* chunks of sizes taken from the input itself */
	for (size_t i = 0; i < size;) {
		size_t n = 1 + (data[i] % 13);
		n = MIN(n, size - i);
		pb_mime_parser_feed(p, (const char *)data + i, n);
		i += n;
	}
	chunked = pb_mime_parser_finish(g_steal_pointer(&p));
	a = describe(root);
	b = describe(chunked);
	g_assert_cmpstr(a, ==, b);

	send_section(root, fd, "", FALSE);
	send_section(root, fd, "HEADER", TRUE);
	send_section(root, fd, "TEXT", TRUE);
	sections(root, fd, root, "1", &budget);

	g_assert_true(pb_message_search(fd, root, PB_MESSAGE_SEARCH_TEXT,
	                                "Ünïcode needle", &found, NULL));
	g_assert_true(pb_message_search(fd, root, PB_MESSAGE_SEARCH_BODY, "a",
	                                &found, NULL));
	(void)pb_mime_search_header(root, "subject", "x");
	date = pb_mime_header_get(root, "Date");
	if (date != NULL)
		(void)pb_mime_date_parse(date, &t, &tz);
	return 0;
}
