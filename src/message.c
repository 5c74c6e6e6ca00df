/*
 * message.c - a stored message read for IMAP: parsed from its fd in
 * chunks, a BODY[section]<partial> written with LF -> CRLF, SEARCH BODY
 * and TEXT run over the decoded text.
 *
 * Reads only (pread, PB_MESSAGE_CHUNK octets at a time); holds at most a
 * chunk, its CRLF expansion and the parsed headers, so memory does not
 * depend on the size of the message. Guarantees: a section writes
 * exactly pb_message_section_length() octets (padded with spaces if the
 * file got shorter, then FALSE); errors are PB_ERROR_TEMP.
 */
#include "message.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

static gssize
read_at(int fd, char *buf, gsize len, guint64 off, GError **error)
{
	for (;;) {
		gssize n = pread(fd, buf, len, (off_t)off);
		if (n >= 0)
			return n;
		if (errno != EINTR) {
			pb_throw_errno(error, "read message");
			return -1;
		}
	}
}

PbMimePart *
pb_message_parse_fd(int fd, GError **error)
{
	g_autoptr(PbMimeParser) p = pb_mime_parser_new();
	g_autofree char *buf = g_malloc(PB_MESSAGE_CHUNK);
	guint64 off = 0;

	for (;;) {
		gssize n = read_at(fd, buf, PB_MESSAGE_CHUNK, off, error);
		if (n < 0)
			return NULL;
		if (n == 0)
			break;
		pb_mime_parser_feed(p, buf, (gsize)n);
		off += (guint64)n;
	}
	return pb_mime_parser_finish(g_steal_pointer(&p));
}

struct _PbMessageSection {
	PbMimeRange range;
	GString *filtered; /* HEADER.FIELDS (.NOT): the octets to send */
	guint64 start;     /* IMAP octets skipped */
	guint64 length;    /* IMAP octets sent */
};

PbMessageSection *
pb_message_section_new(const PbMimePart *root, const PbMimeSection *sec,
                       gboolean partial, guint64 start, guint64 count)
{
	PbMessageSection *ms = g_new0(PbMessageSection, 1);
	guint64 total = 0;

	pb_mime_section_resolve(root, sec, &ms->range);
	if (ms->range.exists && ms->range.filter) {
		ms->filtered = g_string_new(NULL);
		pb_mime_filter_header(ms->range.part, ms->range.fields,
		                      ms->range.fields_not, ms->filtered);
		total = ms->filtered->len;
	} else if (ms->range.exists)
		total = ms->range.crlf_size;
	if (partial) {
		ms->start = MIN(start, total);
		ms->length = MIN(count, total - ms->start);
	} else
		ms->length = total;
	return ms;
}

guint64
pb_message_section_length(const PbMessageSection *ms)
{
	return ms->length;
}

void
pb_message_section_free(PbMessageSection *ms)
{
	if (ms == NULL)
		return;
	if (ms->filtered != NULL)
		g_string_free(ms->filtered, TRUE);
	g_free(ms);
}

/* Streaming state of a section being written. */
typedef struct {
	PbLineOut *out;
	GString *buf; /* output not yet written */
	guint64 skip; /* IMAP octets still to skip */
	guint64 left; /* IMAP octets still to send */
	char prev;    /* the stored octet before */
} Emit;

static void
emit_flush(Emit *e)
{
	if (e->buf->len > 0)
		pb_line_out_write(e->out, e->buf->str, e->buf->len);
	g_string_truncate(e->buf, 0);
}

static void
emit_octet(Emit *e, char c)
{
	if (e->skip > 0) {
		e->skip--;
		return;
	}
	if (e->left == 0)
		return;
	g_string_append_c(e->buf, c);
	e->left--;
	if (e->buf->len >= PB_MESSAGE_CHUNK)
		emit_flush(e);
}

static void
emit_stored(Emit *e, const char *s, gsize n)
{
	for (gsize i = 0; i < n && e->left > 0; i++) {
		if (s[i] == '\n' && e->prev != '\r')
			emit_octet(e, '\r');
		/* a NUL is sent as 0x80, as Dovecot does */
		emit_octet(e, s[i] == '\0' ? (char)0x80 : s[i]);
		e->prev = s[i];
	}
}

static gboolean
write_range(PbMessageSection *ms, int fd, Emit *e, GError **error)
{
	gsize size = (gsize)MIN(ms->range.size, PB_MESSAGE_CHUNK);
	g_autofree char *chunk = g_malloc(MAX(size, 1));
	guint64 off = ms->range.offset, end = off + ms->range.size;

	while (off < end && e->left > 0) {
		gsize want = (gsize)MIN(end - off, size);
		gssize n = read_at(fd, chunk, want, off, error);
		if (n < 0)
			return FALSE;
		if (n == 0)
			break;
		emit_stored(e, chunk, (gsize)n);
		off += (guint64)n;
	}
	if (e->left > 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "message shorter than parsed");
		return FALSE;
	}
	return TRUE;
}

gboolean
pb_message_section_write(PbMessageSection *ms, int fd, PbLineOut *out,
                         GError **error)
{
	/* buffers sized for small sections, at most a chunk */
	Emit e = {
	    out,
	    g_string_sized_new((gsize)MIN(ms->length, PB_MESSAGE_CHUNK) + 2),
	    ms->start, ms->length, '\n'};
	gboolean ok = TRUE;

	if (ms->filtered != NULL) {
		if (ms->length > 0)
			pb_line_out_write(out, ms->filtered->str + ms->start,
			                  (gsize)ms->length);
		e.left = 0;
	} else if (ms->length > 0)
		ok = write_range(ms, fd, &e, error);
	/* keep the literal in step whatever happened */
	while (e.left > 0)
		emit_octet(&e, ' ');
	emit_flush(&e);
	g_string_free(e.buf, TRUE);
	return ok;
}

gboolean
pb_message_section_send(PbMessageSection *ms, int fd, PbLineOut *out,
                        GError **error)
{
	pb_line_out_printf(out, "{%" G_GUINT64_FORMAT "}\r\n", ms->length);
	return pb_message_section_write(ms, fd, out, error);
}

/* ---- SEARCH BODY / TEXT ---- */

/* Decoded text of one part, converted to UTF-8 when its charset is
 * another one iconv knows (unknown charsets: the octets as they are). */
typedef struct {
	PbMimeMatcher *m;
	PbMimeDecoder *dec;
	GIConv cd;
	GString *dbuf, *held; /* decoded octets; an incomplete sequence */
} Text;

static void
text_convert(Text *t, const char *s, gsize n)
{
	char out[4096];

	g_string_append_len(t->held, s, n);
	s = t->held->str;
	n = t->held->len;
	while (n > 0 && !pb_mime_matcher_found(t->m)) {
		char *in = (char *)s, *o = out;
		gsize il = n, ol = sizeof(out);
		gsize r = g_iconv(t->cd, &in, &il, &o, &ol);
		pb_mime_matcher_feed(t->m, out, (gsize)(o - out));
		if (r == (gsize)-1 && errno == EILSEQ)
			in++, il--; /* skip an octet that is no character */
		else if (r == (gsize)-1 && errno == EINVAL)
			break; /* incomplete: keep it for the next chunk */
		s = in;
		n = il;
	}
	g_string_erase(t->held, 0, (gssize)(t->held->len - n));
}

static void
text_feed(Text *t, const char *s, gsize n)
{
	if (t->dec != NULL) {
		g_string_truncate(t->dbuf, 0);
		pb_mime_decoder_feed(t->dec, s, n, t->dbuf);
		s = t->dbuf->str;
		n = t->dbuf->len;
	}
	if (t->cd != (GIConv)-1)
		text_convert(t, s, n);
	else
		pb_mime_matcher_feed(t->m, s, n);
}

static gboolean
is_utf8ish(const char *cs)
{
	return cs == NULL || strcmp(cs, "utf-8") == 0 ||
	       strcmp(cs, "us-ascii") == 0 || strcmp(cs, "utf8") == 0 ||
	       strcmp(cs, "ascii") == 0;
}

static gboolean
search_part(int fd, const PbMimePart *part, PbMimeMatcher *m, GError **error)
{
	g_autofree char *cs = pb_mime_part_charset(part);
	gsize size = (gsize)MIN(part->body_size, PB_MESSAGE_CHUNK);
	g_autofree char *chunk = g_malloc(MAX(size, 1));
	Text t = {m, pb_mime_decoder_new(part), (GIConv)-1, g_string_new(NULL),
	          g_string_new(NULL)};
	guint64 off = part->body_offset, end = off + part->body_size;
	gboolean ok = TRUE;

	if (!is_utf8ish(cs))
		t.cd = g_iconv_open("UTF-8", cs);
	while (off < end && !pb_mime_matcher_found(m)) {
		gssize n =
		    read_at(fd, chunk, (gsize)MIN(end - off, size), off, error);
		if (n <= 0) {
			ok = n == 0;
			break;
		}
		text_feed(&t, chunk, (gsize)n);
		off += (guint64)n;
	}
	if (t.cd != (GIConv)-1)
		g_iconv_close(t.cd);
	pb_mime_decoder_free(t.dec);
	g_string_free(t.dbuf, TRUE);
	g_string_free(t.held, TRUE);
	return ok;
}

static gboolean
search_tree(int fd, const PbMimePart *part, PbMessageSearchKind kind,
            PbMimeMatcher *m, GError **error)
{
	for (; part != NULL && !pb_mime_matcher_found(m); part = part->next) {
		if (kind == PB_MESSAGE_SEARCH_TEXT && part->parent != NULL &&
		    (part->parent->flags & PB_MIME_PART_MESSAGE) != 0) {
			g_autoptr(GString) h = g_string_new(NULL);
			pb_mime_append_decoded_header(h, part);
			pb_mime_matcher_reset(m);
			pb_mime_matcher_feed(m, h->str, h->len);
			if (pb_mime_matcher_found(m))
				return TRUE;
		}
		if (part->children != NULL) {
			if (!search_tree(fd, part->children, kind, m, error))
				return FALSE;
		} else if (pb_mime_part_searchable(part)) {
			pb_mime_matcher_reset(m);
			if (!search_part(fd, part, m, error))
				return FALSE;
		}
	}
	return TRUE;
}

gboolean
pb_message_search(int fd, const PbMimePart *root, PbMessageSearchKind kind,
                  const char *needle, gboolean *found, GError **error)
{
	g_autoptr(PbMimeMatcher) m = pb_mime_matcher_new(needle);

	*found = FALSE;
	if (kind == PB_MESSAGE_SEARCH_TEXT) {
		g_autoptr(GString) h = g_string_new(NULL);
		pb_mime_append_decoded_header(h, root);
		if (pb_mime_matcher_feed(m, h->str, h->len)) {
			*found = TRUE;
			return TRUE;
		}
	}
	if (!search_tree(fd, root, kind, m, error))
		return FALSE;
	*found = pb_mime_matcher_found(m);
	return TRUE;
}
