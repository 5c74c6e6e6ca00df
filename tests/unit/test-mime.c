/*
 * test-mime.c - mime.c and message.c: the part tree is the same however
 * the bytes are fed (all at once, byte by byte, random chunks), sizes in
 * CRLF octets, sections and partials (exact literal sizes), limits,
 * dates, the case-insensitive matcher and SEARCH over decoded text.
 * The strings themselves are compared with Dovecot's by
 * tests/e2e/test_imap_dovecot_diff.py.
 */
#include <fcntl.h>
#include <malloc.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "message.h"
#include "mime.h"

static GPtrArray *
corpus_files(void)
{
	g_autofree char *dir =
	    g_test_build_filename(G_TEST_DIST, "data", "mime", NULL);
	g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
	GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
	const char *name;

	g_assert_nonnull(d);
	while ((name = g_dir_read_name(d)) != NULL)
		if (g_str_has_suffix(name, ".eml"))
			g_ptr_array_add(files,
			                g_build_filename(dir, name, NULL));
	g_assert_cmpuint(files->len, >=, 50);
	return files;
}

/* everything about a tree, as text */
static void
describe(GString *out, const PbMimePart *p)
{
	for (; p != NULL; p = p->next) {
		g_string_append_printf(
		    out,
		    "[%u %x %s/%s h=%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
		    "/%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
		    " b=%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
		    "/%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT " %zu ",
		    p->depth, p->flags, p->type, p->subtype, p->header_offset,
		    p->header_size, p->header_crlf_size, p->header_lines,
		    p->body_offset, p->body_size, p->body_crlf_size,
		    p->body_lines, p->header_len);
		describe(out, p->children);
		g_string_append_c(out, ']');
	}
}

static char *
describe_all(const PbMimePart *root)
{
	GString *s = g_string_new(NULL);
	describe(s, root);
	pb_mime_append_envelope(s, root);
	pb_mime_append_bodystructure(s, root, TRUE);
	pb_mime_append_bodystructure(s, root, FALSE);
	return g_string_free(s, FALSE);
}

static void
test_chunks(void)
{
	g_autoptr(GPtrArray) files = corpus_files();
	GRand *rand = g_rand_new_with_seed(42);

	for (guint i = 0; i < files->len; i++) {
		g_autofree char *data = NULL;
		gsize len;
		g_autoptr(PbMimePart) whole = NULL;
		g_autofree char *want = NULL;
		PbMimeParser *p;

		g_assert_true(
		    g_file_get_contents(files->pdata[i], &data, &len, NULL));
		whole = pb_mime_parse(data, len);
		want = describe_all(whole);
		/* byte by byte */
		p = pb_mime_parser_new();
		for (gsize k = 0; k < len; k++)
			pb_mime_parser_feed(p, data + k, 1);
		{
			g_autoptr(PbMimePart) t = pb_mime_parser_finish(p);
			g_autofree char *got = describe_all(t);
			g_assert_cmpstr(got, ==, want);
		}
		/* random chunks, several times */
		for (int round = 0; round < 5; round++) {
			gsize k = 0;
			p = pb_mime_parser_new();
			while (k < len) {
				gsize r = (gsize)g_rand_int_range(rand, 1, 200);
				gsize n = MIN(len - k, r);
				pb_mime_parser_feed(p, data + k, n);
				k += n;
			}
			g_autoptr(PbMimePart) t = pb_mime_parser_finish(p);
			g_autofree char *got = describe_all(t);
			g_assert_cmpstr(got, ==, want);
		}
	}
	g_rand_free(rand);
}

/* the same message stored with CRLF line ends: the same IMAP sizes,
 * line counts and strings */
static void
test_crlf_stored(void)
{
	g_autoptr(GPtrArray) files = corpus_files();

	for (guint i = 0; i < files->len; i++) {
		g_autofree char *data = NULL;
		gsize len;
		g_autoptr(GString) crlf = g_string_new(NULL);

		g_assert_true(
		    g_file_get_contents(files->pdata[i], &data, &len, NULL));
		if (memchr(data, '\r', len) != NULL)
			continue; /* mixed line ends are their own case */
		for (gsize k = 0; k < len; k++) {
			if (data[k] == '\n')
				g_string_append_c(crlf, '\r');
			g_string_append_c(crlf, data[k]);
		}
		g_autoptr(PbMimePart) a = pb_mime_parse(data, len);
		g_autoptr(PbMimePart) b = pb_mime_parse(crlf->str, crlf->len);
		g_autoptr(GString) sa = g_string_new(NULL);
		g_autoptr(GString) sb = g_string_new(NULL);
		pb_mime_append_envelope(sa, a);
		pb_mime_append_bodystructure(sa, a, TRUE);
		pb_mime_append_envelope(sb, b);
		pb_mime_append_bodystructure(sb, b, TRUE);
		g_assert_cmpstr(sa->str, ==, sb->str);
		g_assert_cmpuint(pb_mime_part_crlf_size(b), ==, crlf->len);
	}
}

static guint64
crlf_len(const char *s, gsize len)
{
	guint64 n = len;
	for (gsize i = 0; i < len; i++)
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			n++;
	return n;
}

static void
test_sizes(void)
{
	g_autoptr(GPtrArray) files = corpus_files();

	for (guint i = 0; i < files->len; i++) {
		g_autofree char *data = NULL;
		gsize len;
		g_assert_true(
		    g_file_get_contents(files->pdata[i], &data, &len, NULL));
		g_autoptr(PbMimePart) root = pb_mime_parse(data, len);
		g_assert_cmpuint(pb_mime_part_crlf_size(root), ==,
		                 crlf_len(data, len));
		g_assert_cmpuint(root->header_size + root->body_size, ==, len);
	}
}

typedef struct {
	GString *s;
} Sink;

static void
sink_write(void *ctx, const char *data, gsize len)
{
	g_string_append_len(((Sink *)ctx)->s, data, len);
}

/* the octets a section sends; checks the announced length */
static char *
section_text(const PbMimePart *root, int fd, const char *section,
             gboolean partial, guint64 start, guint64 count)
{
	PbMimeSection sec;
	Sink sink = {g_string_new(NULL)};
	PbLineOut out = {sink_write, &sink};
	g_autoptr(GError) err = NULL;

	g_assert_true(pb_mime_section_parse(section, strlen(section), &sec));
	PbMessageSection *ms =
	    pb_message_section_new(root, &sec, partial, start, count);
	g_assert_true(pb_message_section_write(ms, fd, &out, &err));
	g_assert_no_error(err);
	g_assert_cmpuint(sink.s->len, ==, pb_message_section_length(ms));
	pb_message_section_free(ms);
	pb_mime_section_clear(&sec);
	return g_string_free(sink.s, FALSE);
}

static void
test_sections(void)
{
	const char *m = "From: a@b.c\nSubject: s\n\nline one\nline two\n";
	g_autofree char *path = NULL;
	int fd = g_file_open_tmp("mime-XXXXXX", &path, NULL);
	g_autoptr(GError) err = NULL;

	g_assert_cmpint(write(fd, m, strlen(m)), ==, (int)strlen(m));
	g_autoptr(PbMimePart) root = pb_message_parse_fd(fd, &err);
	g_assert_no_error(err);

	g_autofree char *all = section_text(root, fd, "", FALSE, 0, 0);
	g_assert_cmpstr(all, ==,
	                "From: a@b.c\r\nSubject: s\r\n\r\n"
	                "line one\r\nline two\r\n");
	g_autofree char *text = section_text(root, fd, "TEXT", FALSE, 0, 0);
	g_assert_cmpstr(text, ==, "line one\r\nline two\r\n");
	g_autofree char *one = section_text(root, fd, "1", FALSE, 0, 0);
	g_assert_cmpstr(one, ==, text);
	g_autofree char *hdr =
	    section_text(root, fd, "HEADER.FIELDS (subject)", FALSE, 0, 0);
	g_assert_cmpstr(hdr, ==, "Subject: s\r\n\r\n");
	g_autofree char *not =
	    section_text(root, fd, "HEADER.FIELDS.NOT (Subject)", FALSE, 0, 0);
	g_assert_cmpstr(not, ==, "From: a@b.c\r\n\r\n");
	/* a partial that starts between the CR and the LF made of a LF */
	g_autofree char *p1 = section_text(root, fd, "TEXT", TRUE, 9, 3);
	g_assert_cmpstr(p1, ==, "\nli");
	/* clamped, and past the end */
	g_autofree char *p2 = section_text(root, fd, "TEXT", TRUE, 15, 100);
	g_assert_cmpstr(p2, ==, "two\r\n");
	g_autofree char *p3 = section_text(root, fd, "TEXT", TRUE, 100, 5);
	g_assert_cmpstr(p3, ==, "");
	g_autofree char *p4 =
	    section_text(root, fd, "HEADER.FIELDS (From)", TRUE, 2, 4);
	g_assert_cmpstr(p4, ==, "om: ");
	g_autofree char *none = section_text(root, fd, "3", FALSE, 0, 0);
	g_assert_cmpstr(none, ==, "");
	close(fd);
	g_unlink(path);
}

/* the line ends around boundaries, as Dovecot counts them */
static void
test_boundary_line_ends(void)
{
	const char *m = "Content-Type: multipart/mixed; boundary=c\n\n"
	                "--c\nContent-Type: message/rfc822\n\n"
	                "Subject: cut\n--c\n"
	                "Content-Type: message/rfc822\n\n"
	                "Subject: s\n\n--c\n"
	                "\nbody\n\n--c--\n";
	g_autofree char *path = NULL;
	int fd = g_file_open_tmp("mime-XXXXXX", &path, NULL);

	g_assert_cmpint(write(fd, m, strlen(m)), ==, (int)strlen(m));
	g_autoptr(PbMimePart) root = pb_message_parse_fd(fd, NULL);
	const PbMimePart *p1 = root->children, *p2 = p1->next, *p3 = p2->next;

	/* a header cut by a boundary: its last line end goes to the
	 * message/rfc822 part around it */
	g_assert_cmpuint(p1->children->header_size, ==, 12);
	g_assert_cmpuint(p1->body_size, ==, 13);
	g_assert_cmpuint(p1->body_lines, ==, 1);
	g_autofree char *f1 =
	    section_text(root, fd, "1.HEADER.FIELDS (Subject)", FALSE, 0, 0);
	g_assert_cmpstr(f1, ==, "Subject: cut\r\n");
	/* an empty line right before the boundary: not in BODY[2.HEADER] */
	g_autofree char *h2 = section_text(root, fd, "2.HEADER", FALSE, 0, 0);
	g_assert_cmpstr(h2, ==, "Subject: s\r\n");
	g_autofree char *n2 =
	    section_text(root, fd, "2.HEADER.FIELDS.NOT (X)", FALSE, 0, 0);
	g_assert_cmpstr(n2, ==, "Subject: s\r\n\r\n");
	/* a body's last line end belongs to the boundary */
	g_autofree char *b3 = section_text(root, fd, "3", FALSE, 0, 0);
	g_assert_cmpstr(b3, ==, "body\r\n");
	g_assert_cmpuint(p3->body_lines, ==, 1);
	close(fd);
	g_unlink(path);
}

static void
test_section_parse(void)
{
	const char *good[] = {"",
	                      "1",
	                      "1.2.3",
	                      "HEADER",
	                      "text",
	                      "1.MIME",
	                      "2.HEADER.FIELDS (A \"B c\")",
	                      "HEADER.FIELDS.NOT (X)"};
	const char *bad[] = {"0",
	                     "1.",
	                     "MIME",
	                     "1..2",
	                     "HEADER.FIELDS",
	                     "HEADER.FIELDS ()",
	                     "TEXTX",
	                     "1.2x",
	                     "99999999999"};
	PbMimeSection sec;

	for (guint i = 0; i < G_N_ELEMENTS(good); i++) {
		g_assert_true(
		    pb_mime_section_parse(good[i], strlen(good[i]), &sec));
		pb_mime_section_clear(&sec);
	}
	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_assert_false(
		    pb_mime_section_parse(bad[i], strlen(bad[i]), &sec));
		pb_mime_section_clear(&sec);
	}
	g_assert_true(
	    pb_mime_section_parse("2.HEADER.FIELDS (A \"B c\")", 25, &sec));
	g_assert_cmpuint(sec.nparts, ==, 1);
	g_assert_cmpint(sec.kind, ==, PB_MIME_SECTION_HEADER_FIELDS);
	g_assert_cmpstr(sec.fields[1], ==, "B c");
	pb_mime_section_clear(&sec);
}

/* every section of every corpus message sends what it announced */
static void
test_corpus_sections(void)
{
	g_autoptr(GPtrArray) files = corpus_files();
	const char *secs[] = {"",
	                      "HEADER",
	                      "TEXT",
	                      "1",
	                      "1.MIME",
	                      "2",
	                      "2.MIME",
	                      "2.HEADER",
	                      "2.TEXT",
	                      "1.1",
	                      "1.2.1",
	                      "2.1",
	                      "HEADER.FIELDS (From Subject)",
	                      "HEADER.FIELDS.NOT (From)"};

	for (guint i = 0; i < files->len; i++) {
		int fd = open(files->pdata[i], O_RDONLY);
		g_autoptr(GError) err = NULL;
		g_autoptr(PbMimePart) root = pb_message_parse_fd(fd, &err);
		g_assert_no_error(err);
		for (guint k = 0; k < G_N_ELEMENTS(secs); k++) {
			g_free(section_text(root, fd, secs[k], FALSE, 0, 0));
			g_free(section_text(root, fd, secs[k], TRUE, 3, 17));
		}
		close(fd);
	}
}

static void
test_limits(void)
{
	GString *m =
	    g_string_new("Content-Type: multipart/mixed; boundary=b0\n\n");
	guint depth = 0, parts = 0;

	for (int i = 1; i < 300; i++)
		g_string_append_printf(m,
		                       "--b%d\nContent-Type: multipart/mixed;"
		                       " boundary=b%d\n\n",
		                       i - 1, i);
	for (int i = 0; i < 30000; i++)
		g_string_append(m, "--b299\n\nx\n");
	g_string_append_printf(m, "X-Long: %*s\n", 100000, "y");
	g_autoptr(PbMimePart) root = pb_mime_parse(m->str, m->len);
	for (const PbMimePart *p = root; p != NULL; p = p->children) {
		depth = MAX(depth, p->depth);
		g_assert_cmpuint(p->header_len, <=, PB_MIME_MAX_HEADER);
		for (const PbMimePart *c = p; c != NULL; c = c->next)
			parts++;
	}
	g_assert_cmpuint(depth, <=, PB_MIME_MAX_DEPTH);
	g_assert_cmpuint(parts, <=, PB_MIME_MAX_PARTS);
	g_assert_cmpuint(pb_mime_part_crlf_size(root), ==,
	                 crlf_len(m->str, m->len));
	/* one over-long header */
	g_string_truncate(m, 0);
	g_string_append_printf(m, "Subject: %*s\n\nbody\n", 200000, "z");
	g_autoptr(PbMimePart) big = pb_mime_parse(m->str, m->len);
	g_assert_true(big->flags & PB_MIME_PART_HEADER_TRUNCATED);
	g_assert_cmpuint(big->header_len, ==, PB_MIME_MAX_HEADER);
	g_assert_cmpuint(big->body_size, ==, 5);
	g_string_free(m, TRUE);
}

static void
test_dates(void)
{
	gint64 t;
	int tz;

	g_assert_true(
	    pb_mime_date_parse("Mon, 2 Sep 2024 10:11:09 +0200", &t, &tz));
	g_assert_cmpint(t, ==, 1725264669);
	g_assert_cmpint(tz, ==, 120);
	g_assert_true(pb_mime_date_parse("5 Nov 94 13:05 EST", &t, &tz));
	g_assert_cmpint(tz, ==, -300);
	g_assert_cmpint(t, ==, 784058700);
	g_assert_true(pb_mime_date_parse(" Thu, 13 Feb 1969 23:32:54 -0330 "
	                                 "(comment)",
	                                 &t, &tz));
	g_assert_cmpint(tz, ==, -210);
	g_assert_false(pb_mime_date_parse("yesterday", &t, &tz));
	g_assert_false(pb_mime_date_parse("32 Jan 2024 10:00 +0000", &t, &tz));
	g_assert_false(pb_mime_date_parse("", &t, &tz));
}

static gboolean
matches(const char *needle, const char *hay, gsize chunk)
{
	g_autoptr(PbMimeMatcher) m = pb_mime_matcher_new(needle);
	gsize len = strlen(hay);
	for (gsize i = 0; i < len; i += chunk)
		pb_mime_matcher_feed(m, hay + i, MIN(chunk, len - i));
	return pb_mime_matcher_found(m);
}

static void
test_matcher(void)
{
	for (gsize c = 1; c < 6; c++) {
		g_assert_true(matches("needle", "a NeEdLe in hay", c));
		g_assert_true(matches("aab", "aaab", c));
		g_assert_true(matches("été", "L'ÉTÉ est là", c));
		g_assert_true(matches("ÄRØ", "Ærø, ärø", c));
		g_assert_false(matches("needle", "needl e", c));
		g_assert_true(matches("", "", c));
		g_assert_true(matches("\xff", "a\xff", c));
		g_assert_false(matches("é", "e", c));
	}
}

static gboolean
search_file(const char *name, PbMessageSearchKind kind, const char *needle)
{
	g_autofree char *path =
	    g_test_build_filename(G_TEST_DIST, "data", "mime", name, NULL);
	int fd = open(path, O_RDONLY);
	g_autoptr(GError) err = NULL;
	g_autoptr(PbMimePart) root = pb_message_parse_fd(fd, &err);
	gboolean found;

	g_assert_no_error(err);
	g_assert_true(pb_message_search(fd, root, kind, needle, &found, &err));
	g_assert_no_error(err);
	close(fd);
	return found;
}

static gboolean
header_has(const char *name, const char *field, const char *needle)
{
	g_autofree char *path =
	    g_test_build_filename(G_TEST_DIST, "data", "mime", name, NULL);
	int fd = open(path, O_RDONLY);
	g_autoptr(PbMimePart) root = pb_message_parse_fd(fd, NULL);
	close(fd);
	return pb_mime_search_header(root, field, needle);
}

static void
test_search(void)
{
	const PbMessageSearchKind B = PB_MESSAGE_SEARCH_BODY;
	const PbMessageSearchKind T = PB_MESSAGE_SEARCH_TEXT;

	/* base64 and quoted-printable decoded, UTF-8 folded */
	g_assert_true(search_file("40-base64-text.eml", B, "bärenhöhle"));
	g_assert_true(search_file("40-base64-text.eml", B, "NEEDLE INSIDE"));
	g_assert_true(
	    search_file("03-multipart-alternative.eml", B, "große rabatte"));
	g_assert_true(search_file("39-qp-soft-breaks.eml", B,
	                          "right here and continues"));
	g_assert_true(search_file("39-qp-soft-breaks.eml", B, "euro sign: €"));
	/* ISO-8859-1 converted */
	g_assert_true(search_file("41-iso-8859-1-body.eml", B, "ÉLÈVE"));
	g_assert_true(search_file("09-rfc2047-names.eml", B, "café crème"));
	/* BODY is not the header; TEXT is */
	g_assert_false(search_file("01-plain.eml", B, "Lunch tomorrow?"));
	g_assert_true(search_file("01-plain.eml", T, "lunch TOMORROW?"));
	g_assert_true(search_file("09-rfc2047-names.eml", T, "understand the"));
	/* attachments are not searched, nested messages are */
	g_assert_false(search_file("04-mixed-attachment.eml", B, "JVBER"));
	g_assert_true(search_file("44-rfc822-in-rfc822.eml", B, "innermost"));
	g_assert_true(search_file("44-rfc822-in-rfc822.eml", T, "inner@"));
	g_assert_false(search_file("01-plain.eml", B, "not there at all"));
	/* HEADER: RFC 2047 decoded, unfolded, "" = the field exists */
	g_assert_true(header_has("09-rfc2047-names.eml", "from", "andré"));
	g_assert_true(header_has("09-rfc2047-names.eml", "Subject",
	                         "read this you understand"));
	g_assert_true(
	    header_has("12-long-folded.eml", "subject", "and then a third"));
	g_assert_true(header_has("01-plain.eml", "Message-ID", ""));
	g_assert_false(header_has("01-plain.eml", "X-Nothing", ""));
	g_assert_true(
	    header_has("16-duplicate-headers.eml", "subject", "first"));
}

/* in-use heap octets (under ASan these are not the real ones, and the
 * test only shows that nothing fails) */
static gsize
heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd; /* heap chunks and mmapped ones */
}

typedef struct {
	guint64 written;
	gsize base, peak;
} Watch;

static void
watch_write(void *ctx, const char *data, gsize len)
{
	Watch *w = ctx;
	gsize now = heap_in_use();

	w->written += len;
	if (now > w->base && now - w->base > w->peak)
		w->peak = now - w->base;
}

/* a 30 MB message: parsing it and sending it keep memory flat */
static void
test_flat_memory(void)
{
	g_autofree char *path = NULL;
	int fd = g_file_open_tmp("mime-big-XXXXXX", &path, NULL);
	const char *head = "From: a@b.c\nMIME-Version: 1.0\nContent-Type: "
	                   "multipart/mixed; boundary=B\n\n--B\nContent-Type:"
	                   " text/plain\nContent-Transfer-Encoding: base64\n\n";
	g_autofree char *block = g_malloc(77 * 1000);
	guint64 size = 0, lines = 0;
	PbMimeSection sec;
	Watch w = {0};
	PbLineOut out = {watch_write, &w};

	for (int i = 0; i < 1000; i++) {
		memset(block + i * 77, 'Q', 76);
		block[i * 77 + 76] = '\n';
	}
	g_assert_cmpint(write(fd, head, strlen(head)), ==, (int)strlen(head));
	for (int i = 0; i < 400; i++, lines += 1000)
		g_assert_cmpint(write(fd, block, 77000), ==, 77000);
	g_assert_cmpint(write(fd, "--B--\n", 6), ==, 6);
	size = strlen(head) + lines * 77 + 6;

	w.base = heap_in_use();
	g_autoptr(PbMimePart) root = pb_message_parse_fd(fd, NULL);
	g_assert_nonnull(root);
	g_assert_cmpuint(heap_in_use() - MIN(heap_in_use(), w.base), <,
	                 256 * 1024);
	g_assert_cmpuint(pb_mime_part_crlf_size(root), ==, size + lines + 9);
	g_assert_cmpuint(root->children->body_lines, ==, lines - 1);

	g_assert_true(pb_mime_section_parse("1", 1, &sec));
	PbMessageSection *ms = pb_message_section_new(root, &sec, FALSE, 0, 0);
	w.base = heap_in_use();
	g_assert_true(pb_message_section_write(ms, fd, &out, NULL));
	g_assert_cmpuint(w.written, ==, pb_message_section_length(ms));
	g_assert_cmpuint(w.written, ==, lines * 78 - 2);
	g_assert_cmpuint(w.peak, <, 512 * 1024);
	pb_message_section_free(ms);
	close(fd);
	g_unlink(path);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/mime/chunks", test_chunks);
	g_test_add_func("/mime/sizes", test_sizes);
	g_test_add_func("/mime/crlf-stored", test_crlf_stored);
	g_test_add_func("/mime/sections", test_sections);
	g_test_add_func("/mime/section-parse", test_section_parse);
	g_test_add_func("/mime/boundary-line-ends", test_boundary_line_ends);
	g_test_add_func("/mime/corpus-sections", test_corpus_sections);
	g_test_add_func("/mime/limits", test_limits);
	g_test_add_func("/mime/dates", test_dates);
	g_test_add_func("/mime/matcher", test_matcher);
	g_test_add_func("/mime/search", test_search);
	g_test_add_func("/mime/flat-memory", test_flat_memory);
	return g_test_run();
}
