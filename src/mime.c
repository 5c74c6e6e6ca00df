/*
 * mime.c - the structure of a message as IMAP shows it: a streaming
 * MIME parser (part tree with offsets and IMAP sizes), ENVELOPE, BODY and
 * BODYSTRUCTURE strings, BODY[section] resolution and header filtering,
 * RFC 5322 dates and the decoding substring matcher of SEARCH.
 *
 * Owns nothing on disk: pure, fed bytes. The parser reads each line once
 * (linear time) and keeps per part only its header (bounded) and a few
 * counters; boundaries are recognised at line starts as Dovecot's
 * message-parser does (a line that starts with "--" and the longest
 * boundary prefix among the open multiparts, innermost first on a tie;
 * the line end before a boundary belongs to the boundary). The strings
 * follow Dovecot 2.3's imap-bodystructure, imap-envelope and imap-quote
 * (read to learn the rules; the code is ours). Guarantees: every limit of
 * mime.h holds whatever the input; no input makes it fail.
 */
#include "mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pb_mime_part_set_type(PbMimePart *part, char **boundary);

/* ------------------------------------------------------------------ */
/* the parser                                                          */

#define BOUNDARY_MAX 200 /* longer boundary parameters are ignored */
#define PREFIX_MAX (2 + BOUNDARY_MAX + 2)

typedef struct {
	PbMimePart *part;
	PbMimePart *last_child;
	char *boundary; /* a multipart still looking for its boundaries */
	gsize blen;
	gboolean in_header;
	/* counters where the header and the body started */
	guint64 crlf_hdr, lines_hdr, crlf_body, lines_body;
} Open;

struct _PbMimeParser {
	PbMimePart *root;
	Open open[PB_MIME_MAX_DEPTH + 2];
	guint nopen;
	guint nparts;
	gsize hdr_total; /* header octets kept in all parts */
	/* global counters: stored octets, IMAP octets, LFs */
	guint64 off, crlf, lines;
	char last; /* last byte fed */
	/* the current line */
	gboolean line_start;
	guint64 l_off, l_crlf, l_lines; /* counters at its start */
	gsize l_hdr_len;                /* header length at its start */
	char prefix[PREFIX_MAX];
	gsize prefix_len;
	gsize l_len;          /* octets of the line so far */
	gboolean l_prev_crlf; /* the previous line ended with CRLF */
	gboolean l_prev_body; /* the previous line was body or header text
	                         (not a boundary or a header's empty line):
	                         its line end goes to the next boundary */
	gboolean cur_body;
	PbMimePart *l_prev_eoh; /* the part whose header the previous line
	                           ended, if it did */
	PbMimePart *cur_eoh;
	gboolean cur_crlf; /* this line ends with CRLF */
};

/* A new part after *LAST (the parent's last child, or NULL), which
 * becomes it: appending stays O(1) for thousands of parts. */
static PbMimePart *
part_new(PbMimePart *parent, PbMimePart **last, guint64 offset)
{
	PbMimePart *p = g_new0(PbMimePart, 1);
	p->parent = parent;
	p->depth = parent != NULL ? parent->depth + 1 : 0;
	p->header_offset = offset;
	if (parent != NULL) {
		if (*last != NULL)
			(*last)->next = p;
		else
			parent->children = p;
		*last = p;
	}
	return p;
}

PbMimeParser *
pb_mime_parser_new(void)
{
	PbMimeParser *p = g_new0(PbMimeParser, 1);
	p->root = part_new(NULL, NULL, 0);
	p->open[0].part = p->root;
	p->open[0].in_header = TRUE;
	p->nopen = 1;
	p->nparts = 1;
	p->line_start = TRUE;
	p->last = '\n';
	return p;
}

static gsize
header_room(gsize len)
{
	gsize room = 256;
	if (len == 0)
		return 0;
	while (room < len + 1)
		room *= 2;
	return room;
}

static void
header_append(PbMimeParser *p, PbMimePart *part, const char *buf, gsize len)
{
	gsize room = PB_MIME_MAX_HEADER - part->header_len;
	room = MIN(room, PB_MIME_MAX_HEADERS - p->hdr_total);
	if (len > room) {
		part->flags |= PB_MIME_PART_HEADER_TRUNCATED;
		len = room;
	}
	if (len == 0)
		return;
	/* the buffer's size is implied by its length: grown by doubling */
	if (header_room(part->header_len) < part->header_len + len + 1)
		part->header = g_realloc(part->header,
		                         header_room(part->header_len + len));
	memcpy(part->header + part->header_len, buf, len);
	part->header_len += len;
	p->hdr_total += len;
	part->header[part->header_len] = '\0';
}

/* Ends the header of O's part at the counters given (its body starts
 * there). */
static void
end_header_at(Open *o, guint64 off, guint64 crlf, guint64 lines)
{
	PbMimePart *part = o->part;
	part->header_size = off - part->header_offset;
	part->header_crlf_size = crlf - o->crlf_hdr;
	part->header_lines = lines - o->lines_hdr;
	part->body_offset = off;
	o->crlf_body = crlf;
	o->lines_body = lines;
	o->in_header = FALSE;
}

/* Ends the body of O's part at the counters given (clamped to where it
 * began). */
static void
end_body_at(Open *o, guint64 off, guint64 crlf, guint64 lines)
{
	PbMimePart *part = o->part;
	if (off < part->body_offset) {
		off = part->body_offset;
		crlf = o->crlf_body;
		lines = o->lines_body;
	}
	part->body_size = off - part->body_offset;
	part->body_crlf_size = crlf - o->crlf_body;
	part->body_lines = lines - o->lines_body;
	g_clear_pointer(&o->boundary, g_free);
}

static void
push_part(PbMimeParser *p, PbMimePart *parent, guint64 off, guint64 crlf,
          guint64 lines)
{
	Open *top = &p->open[p->nopen - 1];
	Open *o = &p->open[p->nopen++];

	g_assert(top->part == parent);
	memset(o, 0, sizeof(*o));
	o->part = part_new(parent, &top->last_child, off);
	o->in_header = TRUE;
	o->crlf_hdr = crlf;
	o->lines_hdr = lines;
	p->nparts++;
}

/* The header of the innermost part ends at the counters given: by its
 * empty line (BLANK), a boundary or the end of the input. A multipart
 * looks for its boundaries only after an empty line; a message/rfc822
 * always gets its message (empty if nothing follows), as in Dovecot. */
static void
header_done(PbMimeParser *p, guint64 off, guint64 crlf, guint64 lines,
            gboolean blank)
{
	Open *o = &p->open[p->nopen - 1];
	PbMimePart *part = o->part;
	char *boundary = NULL;

	if (off < part->header_offset)
		off = part->header_offset, crlf = o->crlf_hdr,
		lines = o->lines_hdr;
	end_header_at(o, off, crlf, lines);
	if (!blank) {
		part->flags |= PB_MIME_PART_NO_BLANK_LINE;
		if (part->header_len > part->header_size)
			part->header_len = part->header_size;
	}
	pb_mime_part_set_type(part, &boundary);
	if ((part->flags & PB_MIME_PART_MULTIPART) != 0 && blank &&
	    boundary != NULL && part->depth < PB_MIME_MAX_DEPTH &&
	    strlen(boundary) <= BOUNDARY_MAX) {
		o->boundary = g_steal_pointer(&boundary);
		o->blen = strlen(o->boundary);
	}
	g_free(boundary);
	if ((part->flags & PB_MIME_PART_MESSAGE) != 0) {
		if (part->depth < PB_MIME_MAX_DEPTH &&
		    p->nparts < PB_MIME_MAX_PARTS)
			push_part(p, part, off, crlf, lines);
		else
			part->flags &= ~PB_MIME_PART_MESSAGE;
	}
}

/* Ends the innermost open part (and its header if still in it). */
static void
close_top(PbMimeParser *p, guint64 off, guint64 crlf, guint64 lines)
{
	while (p->open[p->nopen - 1].in_header)
		header_done(p, off, crlf, lines, FALSE);
	end_body_at(&p->open[p->nopen - 1], off, crlf, lines);
	p->nopen--;
}

/* The open multipart whose boundary starts the current line, or -1. */
static int
find_boundary(PbMimeParser *p, gboolean *closing)
{
	int best = -1;
	gsize best_len = 0;

	if (p->prefix_len < 2 || p->prefix[0] != '-' || p->prefix[1] != '-')
		return -1;
	for (int i = (int)p->nopen - 1; i >= 0; i--) {
		Open *o = &p->open[i];
		if (o->boundary == NULL || o->blen + 2 > p->prefix_len)
			continue;
		if (memcmp(p->prefix + 2, o->boundary, o->blen) != 0)
			continue;
		if (best < 0 || o->blen > best_len) {
			best = i;
			best_len = o->blen;
		}
	}
	if (best >= 0)
		*closing = p->prefix_len >= best_len + 4 &&
		           memcmp(p->prefix + 2 + best_len, "--", 2) == 0;
	return best;
}

/* A boundary of open[M] starts the current line: everything inside it
 * ends before the line end preceding the line. TRUE if a part follows. */
static gboolean
at_boundary(PbMimeParser *p, int m, gboolean closing)
{
	guint64 off = p->l_off, crlf = p->l_crlf, lines = p->l_lines;
	gboolean in_header = p->open[p->nopen - 1].in_header;

	if (p->l_off > 0 && p->l_prev_body) {
		off -= p->l_prev_crlf ? 2 : 1;
		crlf -= 2;
		lines -= 1;
	}
	while ((int)p->nopen - 1 > m) {
		Open *o = &p->open[p->nopen - 1];
		if (o->part == p->l_prev_eoh)
			o->part->flags |= PB_MIME_PART_BLANK_BEFORE_BOUNDARY;
		if (o->in_header && o->part->header_len > p->l_hdr_len)
			o->part->header_len = p->l_hdr_len;
		close_top(p, off, crlf, lines);
		if (in_header) {
			/* a header cut by a boundary: its last line end goes
			 * to the parts around it (Dovecot) */
			off = p->l_off;
			crlf = p->l_crlf;
			lines = p->l_lines;
			in_header = FALSE;
		}
	}
	if (closing) {
		g_clear_pointer(&p->open[m].boundary, g_free);
		return FALSE;
	}
	return p->nparts < PB_MIME_MAX_PARTS;
}

static gboolean
line_is_empty(const PbMimeParser *p)
{
	return p->l_len == 0 || (p->l_len == 1 && p->cur_crlf);
}

/* The current line ended (LF seen, or the input ended without one). */
static void
end_line(PbMimeParser *p, gboolean eof)
{
	Open *top = &p->open[p->nopen - 1];
	gboolean closing = FALSE;
	int m = find_boundary(p, &closing);

	p->cur_eoh = NULL;
	/* the header of a multipart that just started: its own boundaries
	 * are not looked for before its body */
	p->cur_body = TRUE;
	if (m >= 0 && !(top->in_header && m == (int)p->nopen - 1)) {
		p->cur_body = FALSE;
		if (at_boundary(p, m, closing) && !eof)
			push_part(p, p->open[p->nopen - 1].part, p->off,
			          p->crlf, p->lines);
	} else if (top->in_header && !eof && line_is_empty(p)) {
		p->cur_body = FALSE;
		p->cur_eoh = top->part;
		header_done(p, p->off, p->crlf, p->lines, TRUE);
	}
	p->l_prev_crlf = p->cur_crlf;
	p->l_prev_body = p->cur_body;
	p->l_prev_eoh = p->cur_eoh;
	p->line_start = TRUE;
}

static void
begin_line(PbMimeParser *p)
{
	p->line_start = FALSE;
	p->l_off = p->off;
	p->l_crlf = p->crlf;
	p->l_lines = p->lines;
	p->l_hdr_len = p->open[p->nopen - 1].part->header_len;
	p->prefix_len = 0;
	p->l_len = 0;
	p->cur_crlf = FALSE;
}

/* Feeds the bytes of one line, up to and including its LF if any. */
static void
feed_segment(PbMimeParser *p, const char *buf, gsize n, gboolean has_lf)
{
	Open *top = &p->open[p->nopen - 1];
	gsize body = has_lf ? n - 1 : n;

	if (p->prefix_len < PREFIX_MAX) {
		gsize k = MIN(PREFIX_MAX - p->prefix_len, body);
		memcpy(p->prefix + p->prefix_len, buf, k);
		p->prefix_len += k;
	}
	if (top->in_header)
		header_append(p, top->part, buf, n);
	if (has_lf) {
		char before = body > 0 ? buf[body - 1] : p->last;
		p->cur_crlf = (p->l_len + body > 0) && before == '\r';
		p->crlf += n + (before == '\r' && p->l_len + body > 0 ? 0 : 1);
		p->lines++;
	} else
		p->crlf += n;
	p->l_len += body;
	p->off += n;
	p->last = buf[n - 1];
}

void
pb_mime_parser_feed(PbMimeParser *p, const char *buf, gsize len)
{
	while (len > 0) {
		const char *lf;
		gsize n;

		if (p->line_start)
			begin_line(p);
		lf = memchr(buf, '\n', len);
		n = lf != NULL ? (gsize)(lf - buf) + 1 : len;
		feed_segment(p, buf, n, lf != NULL);
		if (lf != NULL)
			end_line(p, FALSE);
		buf += n;
		len -= n;
	}
}

PbMimePart *
pb_mime_parser_finish(PbMimeParser *p)
{
	PbMimePart *root;

	if (!p->line_start && p->l_len > 0)
		end_line(p, TRUE);
	while (p->nopen > 0)
		close_top(p, p->off, p->crlf, p->lines);
	root = g_steal_pointer(&p->root);
	pb_mime_parser_free(p);
	return root;
}

void
pb_mime_parser_free(PbMimeParser *p)
{
	if (p == NULL)
		return;
	for (guint i = 0; i < p->nopen; i++)
		g_free(p->open[i].boundary);
	pb_mime_part_free(p->root);
	g_free(p);
}

PbMimePart *
pb_mime_parse(const char *buf, gsize len)
{
	PbMimeParser *p = pb_mime_parser_new();
	pb_mime_parser_feed(p, buf, len);
	return pb_mime_parser_finish(p);
}

void
pb_mime_part_free(PbMimePart *part)
{
	/* iterative over siblings, recursive over depth (bounded) */
	while (part != NULL) {
		PbMimePart *next = part->next;
		pb_mime_part_free(part->children);
		g_free(part->header);
		g_free(part->type);
		g_free(part->subtype);
		g_free(part);
		part = next;
	}
}

guint64
pb_mime_part_crlf_size(const PbMimePart *part)
{
	return part->header_crlf_size + part->body_crlf_size;
}

/* ------------------------------------------------------------------ */
/* header fields                                                       */

typedef struct {
	const char *name;
	gsize name_len;
	const char *value; /* after the colon and the white space after it */
	gsize value_len;   /* up to the field's last line end (excluded) */
	const char *raw;   /* the whole field, line ends included */
	gsize raw_len;
} Field;

static gboolean
is_lwsp(char c)
{
	return c == ' ' || c == '\t';
}

/* The next field of HDR from *POS; FALSE at the end of the header. */
static gboolean
next_field(const char *hdr, gsize len, gsize *pos, Field *f)
{
	gsize i = *pos, colon, end;

	if (i >= len || hdr[i] == '\n' ||
	    (hdr[i] == '\r' && i + 1 < len && hdr[i + 1] == '\n'))
		return FALSE;
	f->raw = f->name = hdr + i;
	/* the field ends at a line end not followed by white space */
	end = i;
	for (;;) {
		const char *lf = memchr(hdr + end, '\n', len - end);
		if (lf == NULL) {
			end = len;
			break;
		}
		end = (gsize)(lf - hdr) + 1;
		if (end >= len || !is_lwsp(hdr[end]))
			break;
	}
	f->raw_len = end - i;
	colon = i;
	while (colon < end && hdr[colon] != ':' && hdr[colon] != '\n')
		colon++;
	if (colon < end && hdr[colon] == ':') {
		gsize v = colon + 1, ve = end;
		f->name_len = colon - i;
		while (f->name_len > 0 && is_lwsp(f->name[f->name_len - 1]))
			f->name_len--;
		while (v < end && is_lwsp(hdr[v]))
			v++;
		if (ve > v && hdr[ve - 1] == '\n')
			ve--;
		if (ve > v && hdr[ve - 1] == '\r')
			ve--;
		f->value = hdr + v;
		f->value_len = ve - v;
	} else {
		/* no colon: a field with a name and no value */
		f->name_len = colon - i;
		if (f->name_len > 0 && f->name[f->name_len - 1] == '\r')
			f->name_len--;
		f->value = hdr + colon;
		f->value_len = 0;
	}
	*pos = end;
	return TRUE;
}

static gboolean
field_is(const Field *f, const char *name)
{
	gsize n = strlen(name);
	return f->name_len == n && g_ascii_strncasecmp(f->name, name, n) == 0;
}

/* V without its CRs and LFs (the white space that starts a continuation
 * line stays). */
static char *
unfold(const char *v, gsize len)
{
	char *o = g_malloc(len + 1);
	gsize n = 0;
	for (gsize i = 0; i < len; i++)
		if (v[i] != '\r' && v[i] != '\n')
			o[n++] = v[i];
	o[n] = '\0';
	return o;
}

/* The value of the first (LAST: last) field NAME, or NULL. */
static char *
header_value(const PbMimePart *part, const char *name, gboolean last)
{
	gsize pos = 0;
	Field f;
	char *v = NULL;

	if (part->header == NULL)
		return NULL;
	while (next_field(part->header, part->header_len, &pos, &f)) {
		if (!field_is(&f, name))
			continue;
		g_free(v);
		v = g_strndup(f.value, f.value_len);
		if (!last)
			break;
	}
	return v;
}

static gboolean
header_has(const PbMimePart *part, const char *name)
{
	gsize pos = 0;
	Field f;

	if (part->header == NULL)
		return FALSE;
	while (next_field(part->header, part->header_len, &pos, &f))
		if (field_is(&f, name))
			return TRUE;
	return FALSE;
}

/* CR and LF removed; a line end not followed by white space becomes a
 * space (Dovecot's imap_append_nstring_nolf) */
static char *
nolf(const char *s)
{
	GString *o = g_string_new(NULL);
	for (; *s != '\0'; s++) {
		if (*s != '\r' && *s != '\n')
			g_string_append_c(o, *s);
		else if (s[1] != ' ' && s[1] != '\t' && s[1] != '\r' &&
		         s[1] != '\n' && s[1] != '\0')
			g_string_append_c(o, ' ');
	}
	return g_string_free(o, FALSE);
}

char *
pb_mime_header_get(const PbMimePart *part, const char *name)
{
	g_autofree char *v = header_value(part, name, FALSE);
	GString *o;

	if (v == NULL)
		return NULL;
	o = g_string_new(NULL);
	for (const char *s = v; *s != '\0'; s++)
		if (*s != '\r' && *s != '\n')
			g_string_append_c(o, *s);
	return g_string_free(o, FALSE);
}

/* ------------------------------------------------------------------ */
/* RFC 822 tokens (comments, atoms, quoted strings, MIME tokens)       */

typedef struct {
	const char *p, *end;
	GString *last_comment; /* optional */
} Rfc;

static void
rfc_init(Rfc *r, const char *s, gsize len)
{
	r->p = s;
	r->end = s + len;
	r->last_comment = NULL;
}

static gboolean
rfc_skip_comment(Rfc *r)
{
	int depth = 1;
	GString *c = r->last_comment;

	if (c != NULL)
		g_string_truncate(c, 0);
	for (r->p++; r->p < r->end; r->p++) {
		char ch = *r->p;
		if (ch == '(')
			depth++;
		else if (ch == ')' && --depth == 0) {
			r->p++;
			return TRUE;
		} else if (ch == '\\') {
			if (++r->p >= r->end)
				return FALSE;
			ch = *r->p;
		} else if (ch == '\r' || ch == '\n')
			continue;
		if (c != NULL && (depth > 1 || ch != '('))
			g_string_append_c(c, ch);
	}
	return FALSE;
}

/* Skips white space, line ends and comments; FALSE at the end (or in a
 * broken comment). */
static gboolean
rfc_skip_lwsp(Rfc *r)
{
	while (r->p < r->end) {
		char c = *r->p;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			r->p++;
		else if (c == '(') {
			if (!rfc_skip_comment(r))
				return FALSE;
		} else
			return TRUE;
	}
	return FALSE;
}

static gboolean
is_atext(unsigned char c)
{
	if (g_ascii_isalnum(c) || c >= 0x80)
		return TRUE;
	return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

static gboolean
is_token(unsigned char c)
{
	return (is_atext(c) || c == '.') && c != '/' && c != '?' && c != '=';
}

/* -1 broken, 0 end of input after it, 1 more follows */
static int
rfc_mime_token(Rfc *r, GString *out)
{
	const char *s = r->p;
	while (r->p < r->end && is_token((unsigned char)*r->p))
		r->p++;
	g_string_append_len(out, s, r->p - s);
	return rfc_skip_lwsp(r) ? 1 : 0;
}

static int
rfc_atom(Rfc *r, GString *out)
{
	const char *s = r->p;
	if (r->p >= r->end || !is_atext((unsigned char)*r->p))
		return -1;
	while (r->p < r->end && is_atext((unsigned char)*r->p))
		r->p++;
	g_string_append_len(out, s, r->p - s);
	return rfc_skip_lwsp(r) ? 1 : 0;
}

static int
rfc_quoted(Rfc *r, GString *out)
{
	for (r->p++; r->p < r->end; r->p++) {
		char c = *r->p;
		if (c == '"') {
			r->p++;
			return rfc_skip_lwsp(r) ? 1 : 0;
		}
		if (c == '\r' || c == '\n')
			continue;
		if (c == '\\') {
			if (++r->p >= r->end)
				return -1;
			c = *r->p;
		}
		g_string_append_c(out, c);
	}
	return -1;
}

/* dot-atom, white space allowed around the dots */
static int
rfc_dot_atom(Rfc *r, GString *out)
{
	int ret = rfc_atom(r, out);
	while (ret > 0 && *r->p == '.') {
		g_string_append_c(out, '.');
		r->p++;
		if (!rfc_skip_lwsp(r))
			return -1;
		ret = rfc_atom(r, out);
	}
	return ret;
}

/* words (atoms, quoted strings, dots) joined by one space */
static int
rfc_phrase(Rfc *r, GString *out)
{
	int ret = 1;
	gsize start = out->len;

	while (r->p < r->end) {
		char c = *r->p;
		if (out->len > start && c != '.')
			g_string_append_c(out, ' ');
		if (c == '"')
			ret = rfc_quoted(r, out);
		else if (c == '.') {
			g_string_append_c(out, '.');
			r->p++;
			ret = rfc_skip_lwsp(r) ? 1 : 0;
		} else if (is_atext((unsigned char)c))
			ret = rfc_atom(r, out);
		else {
			if (out->len > start && out->str[out->len - 1] == ' ')
				g_string_truncate(out, out->len - 1);
			break;
		}
		if (ret <= 0)
			break;
	}
	return out->len > start ? ret : -1;
}

/* ------------------------------------------------------------------ */
/* Content-Type parameters, RFC 2231 continuations merged as Dovecot   */
/* does (pieces sorted, extended values kept %-encoded with their      */
/* charset'language' prefix, key "NAME*")                              */

typedef struct {
	char *key;
	guint idx;
	gboolean extended;
	char *value;
} Piece;

static int
piece_cmp(gconstpointer a, gconstpointer b)
{
	const Piece *x = a, *y = b;
	int c = g_ascii_strcasecmp(x->key, y->key);
	if (c != 0)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* KEY "NAME*N*": fills P, FALSE if KEY is not of that form. */
static gboolean
piece_parse(const char *key, Piece *p)
{
	const char *star = strchr(key, '*'), *s;

	if (star == NULL)
		return FALSE;
	s = star;
	p->idx = 0;
	if (s[1] != '\0') {
		s++;
		for (; *s >= '0' && *s <= '9'; s++)
			p->idx = MIN(p->idx * 10 + (guint)(*s - '0'), 100000u);
	}
	p->extended = *s == '*';
	if (p->extended)
		s++;
	if (*s != '\0')
		return FALSE;
	p->key = g_strndup(key, star - key);
	return TRUE;
}

static void
merge_group(GPtrArray *out, Piece *v, guint i, guint j)
{
	gboolean ok = TRUE, ext = FALSE;
	GString *s;

	for (guint k = i; k < j; k++) {
		if (v[k].idx != k - i)
			ok = FALSE;
		ext |= v[k].extended;
	}
	if (!ok) {
		for (guint k = i; k < j; k++) {
			g_ptr_array_add(
			    out, g_strdup_printf("%s*%u%s", v[k].key, v[k].idx,
			                         v[k].extended ? "*" : ""));
			g_ptr_array_add(out, g_strdup(v[k].value));
		}
		return;
	}
	s = g_string_new(NULL);
	if (!v[i].extended && ext)
		g_string_append(s, "''");
	for (guint k = i; k < j; k++) {
		if (v[k].extended || !ext) {
			g_string_append(s, v[k].value);
			continue;
		}
		for (const char *c = v[k].value; *c != '\0'; c++)
			if (*c == '%')
				g_string_append(s, "%25");
			else
				g_string_append_c(s, *c);
	}
	g_ptr_array_add(out, g_strconcat(v[j - 1].key, ext ? "*" : "", NULL));
	g_ptr_array_add(out, g_string_free(s, FALSE));
}

/* Reads "; key=value" pairs from R; returns key, value, key, value... */
static GPtrArray *
parse_params(Rfc *r)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GArray) pieces = g_array_new(FALSE, TRUE, sizeof(Piece));
	g_autoptr(GString) key = g_string_new(NULL);
	g_autoptr(GString) val = g_string_new(NULL);

	while (r->p < r->end && *r->p == ';' && out->len < 2 * 1000) {
		Piece pc = {0};
		int ret;

		r->p++;
		g_string_truncate(key, 0);
		g_string_truncate(val, 0);
		if (!rfc_skip_lwsp(r) || rfc_mime_token(r, key) <= 0 ||
		    key->len == 0 || *r->p != '=')
			break;
		r->p++;
		if (!rfc_skip_lwsp(r))
			ret = 0;
		else if (*r->p == '"')
			ret = rfc_quoted(r, val);
		else if (*r->p == '=') {
			/* name==?utf-8?b?...?= (broken, but seen) */
			while (r->p < r->end && *r->p != ';' && *r->p != ' ' &&
			       *r->p != '\t' && *r->p != '\r' && *r->p != '\n')
				g_string_append_c(val, *r->p++);
			ret = 1;
		} else
			ret = rfc_mime_token(r, val);
		if (piece_parse(key->str, &pc)) {
			pc.value = g_strdup(val->str);
			g_array_append_val(pieces, pc);
		} else {
			g_ptr_array_add(out, g_strdup(key->str));
			g_ptr_array_add(out, g_strdup(val->str));
		}
		if (ret < 0)
			break;
	}
	if (pieces->len > 0) {
		Piece *v = (Piece *)(void *)pieces->data;
		guint i = 0;
		g_array_sort(pieces, piece_cmp);
		while (i < pieces->len) {
			guint j = i + 1;
			while (j < pieces->len &&
			       g_ascii_strcasecmp(v[i].key, v[j].key) == 0)
				j++;
			merge_group(out, v, i, j);
			i = j;
		}
		for (i = 0; i < pieces->len; i++) {
			g_free(v[i].key);
			g_free(v[i].value);
		}
	}
	return out;
}

/* Content-Type: "type/subtype" and the parameters; FALSE if broken (the
 * type, when there is one, is still returned, without parameters). */
static gboolean
parse_content_type(const char *value, GString *type, GString *subtype,
                   GPtrArray **params)
{
	/* on failure SUBTYPE is empty and TYPE too, except when the value
	 * ends right after the type (Dovecot 2.3's rfc822-parser) */
	Rfc r;
	int ret;

	*params = NULL;
	rfc_init(&r, value, strlen(value));
	if (!rfc_skip_lwsp(&r))
		return FALSE;
	ret = rfc_mime_token(&r, type);
	if (ret <= 0 || type->len == 0)
		return FALSE;
	if (*r.p == '/') {
		r.p++;
		if (rfc_skip_lwsp(&r) && rfc_mime_token(&r, subtype) >= 0 &&
		    subtype->len > 0 && (r.p >= r.end || *r.p == ';')) {
			*params = parse_params(&r);
			return TRUE;
		}
	}
	g_string_truncate(type, 0);
	g_string_truncate(subtype, 0);
	return FALSE;
}

static gboolean
part_is_mime(const PbMimePart *part)
{
	if (part->parent != NULL &&
	    (part->parent->flags & PB_MIME_PART_MULTIPART) != 0)
		return TRUE;
	return header_has(part, "Mime-Version") ||
	       header_has(part, "Content-Type");
}

static void
pb_mime_part_set_type(PbMimePart *part, char **boundary)
{
	g_autofree char *ct = header_value(part, "Content-Type", FALSE);
	g_autoptr(GString) type = g_string_new(NULL);
	g_autoptr(GString) sub = g_string_new(NULL);
	g_autoptr(GPtrArray) params = NULL;
	gboolean digest = part->parent != NULL &&
	                  (part->parent->flags & PB_MIME_PART_MULTIPART) &&
	                  g_strcmp0(part->parent->subtype, "digest") == 0;

	g_clear_pointer(&part->type, g_free);
	g_clear_pointer(&part->subtype, g_free);
	part->flags &= ~(PB_MIME_PART_MULTIPART | PB_MIME_PART_MESSAGE);
	if (ct != NULL) {
		parse_content_type(ct, type, sub, &params);
		part->type = g_ascii_strdown(type->str, -1);
		part->subtype = g_ascii_strdown(sub->str, -1);
	} else if (ct == NULL && digest) {
		part->type = g_strdup("message");
		part->subtype = g_strdup("rfc822");
	} else {
		part->type = g_strdup("text");
		part->subtype = g_strdup("plain");
	}
	if (strcmp(part->type, "multipart") == 0 && *part->subtype != '\0')
		part->flags |= PB_MIME_PART_MULTIPART;
	else if (strcmp(part->type, "message") == 0 &&
	         strcmp(part->subtype, "rfc822") == 0)
		part->flags |= PB_MIME_PART_MESSAGE;
	for (guint i = 0;
	     boundary != NULL && params != NULL && i + 1 < params->len; i += 2)
		if (g_ascii_strcasecmp(params->pdata[i], "boundary") == 0) {
			*boundary = g_strdup(params->pdata[i + 1]);
			break;
		}
}

/* ------------------------------------------------------------------ */
/* IMAP strings, as Dovecot's imap-quote writes them                   */

static void
append_literal(GString *out, const char *s, gsize len)
{
	g_string_append_printf(out, "{%" G_GSIZE_FORMAT "}\r\n", len);
	g_string_append_len(out, s, len);
}

/* "quoted", or a literal when S has CR, LF, 8-bit octets or more than
 * four characters to escape */
static void
append_string(GString *out, const char *s)
{
	guint escapes = 0;

	for (const char *c = s; *c != '\0'; c++) {
		if (*c == '"' || *c == '\\') {
			if (escapes++ < 4)
				continue;
		} else if (*c != '\r' && *c != '\n' && (guchar)*c < 0x80)
			continue;
		append_literal(out, s, strlen(s));
		return;
	}
	g_string_append_c(out, '"');
	for (const char *c = s; *c != '\0'; c++) {
		if (*c == '"' || *c == '\\')
			g_string_append_c(out, '\\');
		g_string_append_c(out, *c);
	}
	g_string_append_c(out, '"');
}

static void
append_nstring(GString *out, const char *s)
{
	if (s == NULL)
		g_string_append(out, "NIL");
	else
		append_string(out, s);
}

static void
append_nstring_nolf(GString *out, const char *s)
{
	g_autofree char *v = s != NULL ? nolf(s) : NULL;
	append_nstring(out, v);
}

/* white space runs made one space, trimmed, NUL as 0x80; a literal as
 * soon as anything had to change (Dovecot's "for humans") */
static void
append_for_humans(GString *out, const char *s, gsize len)
{
	g_autoptr(GString) t = g_string_new(NULL);
	gboolean lwsp = TRUE, modify = FALSE;

	for (gsize i = 0; i < len; i++) {
		char c = s[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			if (c != ' ' || lwsp)
				modify = TRUE;
			if (!lwsp)
				g_string_append_c(t, ' ');
			lwsp = TRUE;
			continue;
		}
		if (c == '\0' || c == '"' || c == '\\' || (guchar)c >= 0x80)
			modify = TRUE;
		g_string_append_c(t, c == '\0' ? (char)0x80 : c);
		lwsp = FALSE;
	}
	if (lwsp && t->len > 0) {
		g_string_truncate(t, t->len - 1);
		modify = TRUE;
	}
	if (!modify) {
		g_string_append_c(out, '"');
		g_string_append_len(out, s, len);
		g_string_append_c(out, '"');
	} else if (t->len == 0)
		g_string_append(out, "\"\"");
	else
		append_literal(out, t->str, t->len);
}

/* ------------------------------------------------------------------ */
/* BODY and BODYSTRUCTURE                                              */

typedef struct {
	char *type, *subtype;
	GPtrArray *params; /* key, value, ... or NULL */
	char *id, *description, *encoding, *md5, *location;
	char *disposition;
	GPtrArray *disp_params;
	GPtrArray *language; /* or NULL */
} BodyData;

static void
body_data_clear(BodyData *d)
{
	g_free(d->type);
	g_free(d->subtype);
	if (d->params)
		g_ptr_array_unref(d->params);
	g_free(d->id);
	g_free(d->description);
	g_free(d->encoding);
	g_free(d->md5);
	g_free(d->location);
	g_free(d->disposition);
	if (d->disp_params)
		g_ptr_array_unref(d->disp_params);
	if (d->language)
		g_ptr_array_unref(d->language);
}

static void
parse_disposition(BodyData *d, const char *v)
{
	g_autoptr(GString) tok = g_string_new(NULL);
	Rfc r;

	rfc_init(&r, v, strlen(v));
	if (!rfc_skip_lwsp(&r)) {
		d->disposition = g_strdup("");
		return;
	}
	if (rfc_mime_token(&r, tok) < 0)
		return;
	d->disposition = g_strdup(tok->str);
	d->disp_params = parse_params(&r);
}

static void
parse_language(BodyData *d, const char *v)
{
	g_autoptr(GString) tok = g_string_new(NULL);
	Rfc r;

	rfc_init(&r, v, strlen(v));
	rfc_skip_lwsp(&r);
	while (rfc_atom(&r, tok) >= 0) {
		if (d->language == NULL)
			d->language = g_ptr_array_new_with_free_func(g_free);
		g_ptr_array_add(d->language, g_strdup(tok->str));
		g_string_truncate(tok, 0);
		if (r.p >= r.end || *r.p != ',')
			break;
		r.p++;
		rfc_skip_lwsp(&r);
	}
}

static void
body_field(BodyData *d, const Field *f)
{
	g_autofree char *v = g_strndup(f->value, f->value_len);
	const char *n = f->name + 8;
	gsize nl = f->name_len - 8;
#define IS(s) (nl == strlen(s) && g_ascii_strncasecmp(n, s, nl) == 0)

	if (IS("Type") && d->type == NULL) {
		g_autoptr(GString) t = g_string_new(NULL);
		g_autoptr(GString) s = g_string_new(NULL);
		parse_content_type(v, t, s, &d->params);
		d->type = g_strdup(t->str);
		d->subtype = g_strdup(s->str);
	} else if (IS("Transfer-Encoding") && d->encoding == NULL) {
		g_autoptr(GString) t = g_string_new(NULL);
		Rfc r;
		rfc_init(&r, v, strlen(v));
		if (rfc_skip_lwsp(&r) && rfc_mime_token(&r, t) == 0 &&
		    t->len > 0)
			d->encoding = g_strdup(t->str);
	} else if (IS("ID") && d->id == NULL)
		d->id = g_steal_pointer(&v);
	else if (IS("Description") && d->description == NULL)
		d->description = g_steal_pointer(&v);
	else if (IS("MD5") && d->md5 == NULL)
		d->md5 = g_steal_pointer(&v);
	else if (IS("Location") && d->location == NULL)
		d->location = g_steal_pointer(&v);
	else if (IS("Language") && d->language == NULL)
		parse_language(d, v);
	else if (IS("Disposition") && d->disp_params == NULL) {
		g_clear_pointer(&d->disposition, g_free);
		parse_disposition(d, v);
	}
#undef IS
}

static void
body_data_load(BodyData *d, const PbMimePart *part)
{
	gsize pos = 0;
	Field f;

	memset(d, 0, sizeof(*d));
	if (part->header == NULL || !part_is_mime(part))
		return;
	while (next_field(part->header, part->header_len, &pos, &f))
		if (f.name_len > 8 &&
		    g_ascii_strncasecmp(f.name, "Content-", 8) == 0)
			body_field(d, &f);
}

static void
append_params(GString *out, GPtrArray *params, gboolean text)
{
	gboolean charset = FALSE;

	if ((params == NULL || params->len == 0) && !text) {
		g_string_append(out, "NIL");
		return;
	}
	g_string_append_c(out, '(');
	for (guint i = 0; params != NULL && i + 1 < params->len; i += 2) {
		if (i > 0)
			g_string_append_c(out, ' ');
		if (g_ascii_strcasecmp(params->pdata[i], "charset") == 0)
			charset = TRUE;
		append_string(out, params->pdata[i]);
		g_string_append_c(out, ' ');
		append_string(out, params->pdata[i + 1]);
	}
	if (text && !charset) {
		if (params != NULL && params->len > 0)
			g_string_append_c(out, ' ');
		g_string_append(out, "\"charset\" \"us-ascii\"");
	}
	g_string_append_c(out, ')');
}

static void
append_extension(GString *out, const BodyData *d)
{
	g_string_append_c(out, ' ');
	if (d->disposition == NULL)
		g_string_append(out, "NIL");
	else {
		g_string_append_c(out, '(');
		append_string(out, d->disposition);
		g_string_append_c(out, ' ');
		append_params(out, d->disp_params, FALSE);
		g_string_append_c(out, ')');
	}
	g_string_append_c(out, ' ');
	if (d->language == NULL)
		g_string_append(out, "NIL");
	else {
		g_string_append_c(out, '(');
		for (guint i = 0; i < d->language->len; i++) {
			if (i > 0)
				g_string_append_c(out, ' ');
			append_string(out, d->language->pdata[i]);
		}
		g_string_append_c(out, ')');
	}
	g_string_append_c(out, ' ');
	append_nstring_nolf(out, d->location);
}

static void append_part(GString *out, const PbMimePart *part,
                        gboolean extended);

#define EMPTY_BODY                                                             \
	"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "              \
	"\"7bit\" 0 0"

static void
append_multipart(GString *out, const PbMimePart *part, const BodyData *d,
                 gboolean extended)
{
	if (part->children == NULL)
		g_string_append(out, extended ? EMPTY_BODY " NIL NIL NIL NIL)"
		                              : EMPTY_BODY ")");
	for (const PbMimePart *c = part->children; c != NULL; c = c->next)
		append_part(out, c, extended);
	g_string_append_c(out, ' ');
	append_string(out, d->subtype != NULL ? d->subtype : "x-unknown");
	if (!extended)
		return;
	g_string_append_c(out, ' ');
	append_params(out, d->params, FALSE);
	append_extension(out, d);
}

static void
append_leaf(GString *out, const PbMimePart *part, const BodyData *d,
            gboolean extended)
{
	gboolean message = (part->flags & PB_MIME_PART_MESSAGE) != 0;
	gboolean text = FALSE;

	if (message)
		g_string_append(out, "\"message\" \"rfc822\"");
	else {
		text =
		    d->type == NULL || g_ascii_strcasecmp(d->type, "text") == 0;
		append_string(out, d->type != NULL ? d->type : "text");
		g_string_append_c(out, ' ');
		append_string(out, d->subtype != NULL ? d->subtype
		                   : text             ? "plain"
		                                      : "unknown");
	}
	g_string_append_c(out, ' ');
	append_params(out, d->params, text);
	g_string_append_c(out, ' ');
	append_nstring_nolf(out, d->id);
	g_string_append_c(out, ' ');
	append_nstring_nolf(out, d->description);
	g_string_append_c(out, ' ');
	if (d->encoding != NULL)
		append_string(out, d->encoding);
	else
		g_string_append(out, "\"7bit\"");
	g_string_append_printf(out, " %" G_GUINT64_FORMAT,
	                       part->body_crlf_size);
	if (text)
		g_string_append_printf(out, " %" G_GUINT64_FORMAT,
		                       part->body_lines);
	else if (message && part->children != NULL) {
		g_string_append(out, " ");
		pb_mime_append_envelope(out, part->children);
		g_string_append_c(out, ' ');
		append_part(out, part->children, extended);
		g_string_append_printf(out, " %" G_GUINT64_FORMAT,
		                       part->body_lines);
	}
	if (!extended)
		return;
	g_string_append_c(out, ' ');
	append_nstring_nolf(out, d->md5);
	append_extension(out, d);
}

static void
append_part(GString *out, const PbMimePart *part, gboolean extended)
{
	BodyData d;

	body_data_load(&d, part);
	if (part->parent != NULL)
		g_string_append_c(out, '(');
	if ((part->flags & PB_MIME_PART_MULTIPART) != 0)
		append_multipart(out, part, &d, extended);
	else
		append_leaf(out, part, &d, extended);
	if (part->parent != NULL)
		g_string_append_c(out, ')');
	body_data_clear(&d);
}

void
pb_mime_append_bodystructure(GString *out, const PbMimePart *part,
                             gboolean extended)
{
	append_part(out, part, extended);
}

/* ------------------------------------------------------------------ */
/* ENVELOPE and addresses (RFC 5322 3.4, with Dovecot's leniency)      */

typedef struct {
	char *name, *route, *mailbox, *domain;
} Addr;

typedef struct {
	Rfc r;
	GArray *addrs; /* Addr */
	GString *comment;
} AddrCtx;

static void
addr_add(AddrCtx *c, const char *name, const char *route, const char *mailbox,
         const char *domain)
{
	Addr a = {g_strdup(name), g_strdup(route), g_strdup(mailbox),
	          g_strdup(domain)};
	if (c->addrs->len < 10000)
		g_array_append_val(c->addrs, a);
	else {
		g_free(a.name);
		g_free(a.route);
		g_free(a.mailbox);
		g_free(a.domain);
	}
}

static int
parse_local_part(AddrCtx *c, GString *out)
{
	int ret;
	/* local-part = dot-atom / quoted-string / obs: word *("." word) */
	for (;;) {
		if (c->r.p < c->r.end && *c->r.p == '"')
			ret = rfc_quoted(&c->r, out);
		else
			ret = rfc_atom(&c->r, out);
		if (ret <= 0 || *c->r.p != '.')
			return ret;
		g_string_append_c(out, '.');
		c->r.p++;
		if (!rfc_skip_lwsp(&c->r))
			return -1;
	}
}

static int
parse_domain(AddrCtx *c, GString *out)
{
	c->r.p++; /* '@' */
	if (!rfc_skip_lwsp(&c->r))
		return -1;
	if (*c->r.p == '[') {
		const char *s = c->r.p;
		while (c->r.p < c->r.end && *c->r.p != ']') {
			if (*c->r.p == '\\' && c->r.p + 1 < c->r.end)
				c->r.p++;
			c->r.p++;
		}
		if (c->r.p >= c->r.end)
			return -1;
		c->r.p++;
		g_string_append_len(out, s, c->r.p - s);
		return rfc_skip_lwsp(&c->r) ? 1 : 0;
	}
	return rfc_dot_atom(&c->r, out);
}

/* addr-spec; a lone word followed by more words is a display name with
 * no address (Dovecot 2.3) */
static int
parse_addr_spec(AddrCtx *c)
{
	g_autoptr(GString) mb = g_string_new(NULL);
	g_autoptr(GString) dom = g_string_new(NULL);
	gboolean quoted = c->r.p < c->r.end && *c->r.p == '"';
	gboolean has_mb = FALSE, has_dom = FALSE, at = FALSE;
	const char *name = NULL, *domain;
	int ret;

	g_string_truncate(c->comment, 0);
	ret = parse_local_part(c, mb);
	has_mb = ret >= 0 && (mb->len > 0 || quoted);
	if (ret != 0 && c->r.p < c->r.end && *c->r.p == '@') {
		at = TRUE;
		ret = parse_domain(c, dom);
		has_dom = ret >= 0 && dom->len > 0;
	}
	domain = has_dom ? dom->str : "MISSING_DOMAIN";
	if (c->comment->len > 0)
		name = c->comment->str;
	else if (!at) {
		gsize len = mb->len;
		g_string_append_c(mb, ' ');
		if (rfc_phrase(&c->r, mb) > 0 || mb->len > len + 1) {
			addr_add(c, mb->str, NULL, "MISSING_MAILBOX",
			         "MISSING_DOMAIN");
			return c->r.p < c->r.end ? 1 : 0;
		}
		g_string_truncate(mb, len);
		if (!quoted && has_mb)
			domain = "";
	}
	addr_add(c, name, NULL, has_mb ? mb->str : "MISSING_MAILBOX", domain);
	return ret;
}

/* name-addr: [phrase] "<" [route ":"] addr-spec ">" */
static int
parse_angle(AddrCtx *c, const char *name)
{
	g_autoptr(GString) route = g_string_new(NULL);
	g_autoptr(GString) mb = g_string_new(NULL);
	g_autoptr(GString) dom = g_string_new(NULL);
	const char *domain = NULL;
	int ret = 1;

	c->r.p++; /* '<' */
	if (!rfc_skip_lwsp(&c->r))
		ret = -1;
	while (ret > 0 && *c->r.p == '@') {
		if (route->len > 0)
			g_string_append_c(route, ',');
		g_string_append_c(route, '@');
		if (parse_domain(c, route) <= 0)
			ret = -1;
		while (ret > 0 && *c->r.p == ',') {
			c->r.p++;
			if (!rfc_skip_lwsp(&c->r))
				ret = -1;
		}
		if (ret > 0 && *c->r.p == ':') {
			c->r.p++;
			if (!rfc_skip_lwsp(&c->r))
				ret = -1;
			break;
		}
	}
	if (ret > 0 && *c->r.p == '>' && route->len == 0 && name == NULL) {
		/* <> */
		c->r.p++;
		addr_add(c, NULL, NULL, "MISSING_MAILBOX", "MISSING_DOMAIN");
		return rfc_skip_lwsp(&c->r) ? 1 : 0;
	}
	if (ret > 0)
		ret = parse_local_part(c, mb);
	if (ret > 0 && *c->r.p == '@') {
		ret = parse_domain(c, dom);
		if (ret >= 0 && dom->len > 0)
			domain = dom->str;
	}
	if (ret > 0 && *c->r.p == '>') {
		c->r.p++;
		ret = rfc_skip_lwsp(&c->r) ? 1 : 0;
	} else {
		domain = "SYNTAX_ERROR";
		ret = -1;
	}
	addr_add(c, name, route->len > 0 ? route->str : NULL,
	         mb->len > 0 ? mb->str : "MISSING_MAILBOX",
	         domain != NULL ? domain : "MISSING_DOMAIN");
	return ret;
}

/* mailbox = name-addr / addr-spec */
static int
parse_mailbox(AddrCtx *c)
{
	g_autoptr(GString) name = g_string_new(NULL);
	const char *start = c->r.p;

	if (c->r.p < c->r.end && *c->r.p == '<')
		return parse_angle(c, NULL);
	if (rfc_phrase(&c->r, name) > 0 && *c->r.p == '<')
		return parse_angle(c, name->len > 0 ? name->str : NULL);
	c->r.p = start;
	return parse_addr_spec(c);
}

/* group = display-name ":" [mailbox-list] ";"; -2: not a group */
static int
parse_group(AddrCtx *c)
{
	g_autoptr(GString) name = g_string_new(NULL);
	int ret;

	if (rfc_phrase(&c->r, name) <= 0 || *c->r.p != ':')
		return -2;
	c->r.p++;
	addr_add(c, NULL, NULL, name->str, NULL);
	ret = rfc_skip_lwsp(&c->r) ? 1 : 0;
	while (ret > 0 && *c->r.p != ';') {
		if (*c->r.p == ',') {
			c->r.p++;
			ret = rfc_skip_lwsp(&c->r) ? 1 : 0;
			continue;
		}
		ret = parse_mailbox(c);
		if (ret > 0 && *c->r.p != ',' && *c->r.p != ';')
			ret = -1;
	}
	addr_add(c, NULL, NULL, NULL, NULL);
	if (ret > 0 && *c->r.p == ';') {
		c->r.p++;
		ret = rfc_skip_lwsp(&c->r) ? 1 : 0;
	}
	return ret;
}

static GArray *
parse_addresses(const char *value)
{
	AddrCtx c;
	int ret;

	rfc_init(&c.r, value, strlen(value));
	c.comment = g_string_new(NULL);
	c.r.last_comment = c.comment;
	c.addrs = g_array_new(FALSE, TRUE, sizeof(Addr));
	ret = rfc_skip_lwsp(&c.r) ? 1 : 0;
	while (ret > 0) {
		const char *start = c.r.p;
		if (*c.r.p == ',') {
			c.r.p++;
			ret = rfc_skip_lwsp(&c.r) ? 1 : 0;
			continue;
		}
		ret = parse_group(&c);
		if (ret == -2) {
			c.r.p = start;
			ret = parse_mailbox(&c);
		}
		/* a broken address does not end the list: what follows
		 * a comma is read on (Dovecot) */
		if (c.r.p >= c.r.end || *c.r.p != ',' || c.r.p == start)
			break;
		ret = 1;
	}
	g_string_free(c.comment, TRUE);
	return c.addrs;
}

static void
addrs_free(GArray *a)
{
	for (guint i = 0; i < a->len; i++) {
		Addr *x = &g_array_index(a, Addr, i);
		g_free(x->name);
		g_free(x->route);
		g_free(x->mailbox);
		g_free(x->domain);
	}
	g_array_free(a, TRUE);
}

/* The addresses of every field NAME (Dovecot joins repeated fields). */
static GArray *
field_addresses(const PbMimePart *part, const char *name)
{
	GArray *all = g_array_new(FALSE, TRUE, sizeof(Addr));
	gsize pos = 0;
	Field f;

	while (part->header != NULL &&
	       next_field(part->header, part->header_len, &pos, &f)) {
		g_autofree char *v = NULL;
		GArray *a;
		if (!field_is(&f, name))
			continue;
		v = unfold(f.value, f.value_len);
		a = parse_addresses(v);
		if (all->len + a->len <= 10000) {
			g_array_append_vals(all, a->data, a->len);
			g_array_set_size(a, 0);
		}
		addrs_free(a);
	}
	return all;
}

static void
append_addresses(GString *out, GArray *a)
{
	if (a->len == 0) {
		g_string_append(out, "NIL");
		return;
	}
	g_string_append_c(out, '(');
	for (guint i = 0; i < a->len; i++) {
		Addr *x = &g_array_index(a, Addr, i);
		g_string_append_c(out, '(');
		if (x->name == NULL)
			g_string_append(out, "NIL");
		else
			append_for_humans(out, x->name, strlen(x->name));
		g_string_append_c(out, ' ');
		append_nstring(out, x->route);
		g_string_append_c(out, ' ');
		append_nstring(out, x->mailbox);
		g_string_append_c(out, ' ');
		append_nstring(out, x->domain);
		g_string_append_c(out, ')');
	}
	g_string_append_c(out, ')');
}

void
pb_mime_append_envelope(GString *out, const PbMimePart *part)
{
	static const char *const addr_names[] = {"From", "Sender", "Reply-To",
	                                         "To",   "Cc",     "Bcc"};
	g_autofree char *date = header_value(part, "Date", TRUE);
	g_autofree char *subject = header_value(part, "Subject", TRUE);
	g_autofree char *irt = header_value(part, "In-Reply-To", TRUE);
	g_autofree char *mid = header_value(part, "Message-ID", TRUE);
	GArray *from = field_addresses(part, "From");

	/* the last Date, Subject, ... counts, as in Dovecot */
	g_string_append_c(out, '(');
	append_nstring_nolf(out, date);
	g_string_append_c(out, ' ');
	if (subject == NULL)
		g_string_append(out, "NIL");
	else
		append_for_humans(out, subject, strlen(subject));
	for (guint i = 0; i < G_N_ELEMENTS(addr_names); i++) {
		GArray *a =
		    i == 0 ? from : field_addresses(part, addr_names[i]);
		g_string_append_c(out, ' ');
		/* no Sender or Reply-To: From */
		append_addresses(out,
		                 (i == 1 || i == 2) && a->len == 0 ? from : a);
		if (a != from)
			addrs_free(a);
	}
	addrs_free(from);
	g_string_append_c(out, ' ');
	append_nstring_nolf(out, irt);
	g_string_append_c(out, ' ');
	append_nstring_nolf(out, mid);
	g_string_append_c(out, ')');
}

/* ------------------------------------------------------------------ */
/* sections                                                            */

static gboolean
section_fields(const char *s, const char *end, PbMimeSection *sec)
{
	GPtrArray *f = g_ptr_array_new();

	while (s < end && *s == ' ')
		s++;
	if (s >= end || *s != '(' || end[-1] != ')') {
		g_ptr_array_free(f, TRUE);
		return FALSE;
	}
	s++;
	end--;
	while (s < end) {
		const char *t;
		if (*s == ' ') {
			s++;
			continue;
		}
		if (*s == '"') {
			GString *q = g_string_new(NULL);
			for (s++; s < end && *s != '"'; s++) {
				if (*s == '\\' && s + 1 < end)
					s++;
				g_string_append_c(q, *s);
			}
			s++;
			g_ptr_array_add(f, g_string_free(q, FALSE));
			continue;
		}
		for (t = s; t < end && *t != ' '; t++)
			;
		g_ptr_array_add(f, g_strndup(s, t - s));
		s = t;
	}
	if (f->len == 0 || f->len > 1000) {
		g_ptr_array_free(f, TRUE);
		return FALSE;
	}
	g_ptr_array_add(f, NULL);
	sec->fields = (char **)g_ptr_array_free(f, FALSE);
	return TRUE;
}

gboolean
pb_mime_section_parse(const char *text, gsize len, PbMimeSection *sec)
{
	const char *s = text, *end = text + len;

	memset(sec, 0, sizeof(*sec));
	while (s < end && g_ascii_isdigit(*s)) {
		guint n = 0;
		if (*s == '0' || sec->nparts == PB_MIME_MAX_SECTION_PARTS)
			return FALSE;
		while (s < end && g_ascii_isdigit(*s)) {
			n = n * 10 + (guint)(*s++ - '0');
			if (n > 100000)
				return FALSE;
		}
		sec->parts[sec->nparts++] = n;
		if (s == end)
			return TRUE;
		if (*s++ != '.')
			return FALSE;
	}
#define KW(k)                                                                  \
	((gsize)(end - s) >= strlen(k) &&                                      \
	 g_ascii_strncasecmp(s, k, strlen(k)) == 0)
	if (s == end && sec->nparts == 0)
		sec->kind = PB_MIME_SECTION_ALL;
	else if (KW("HEADER.FIELDS.NOT")) {
		sec->kind = PB_MIME_SECTION_HEADER_FIELDS_NOT;
		return section_fields(s + 17, end, sec);
	} else if (KW("HEADER.FIELDS")) {
		sec->kind = PB_MIME_SECTION_HEADER_FIELDS;
		return section_fields(s + 13, end, sec);
	} else if (KW("HEADER") && end - s == 6)
		sec->kind = PB_MIME_SECTION_HEADER;
	else if (KW("TEXT") && end - s == 4)
		sec->kind = PB_MIME_SECTION_TEXT;
	else if (KW("MIME") && end - s == 4 && sec->nparts > 0)
		sec->kind = PB_MIME_SECTION_MIME;
	else
		return FALSE;
#undef KW
	return TRUE;
}

void
pb_mime_section_clear(PbMimeSection *sec)
{
	g_clear_pointer(&sec->fields, g_strfreev);
}

static void
range_set(PbMimeRange *r, guint64 off, guint64 size, guint64 crlf)
{
	r->exists = TRUE;
	r->offset = off;
	r->size = size;
	r->crlf_size = crlf;
}

/* The header of P as BODY[HEADER] and BODY[n.MIME] send it. */
static void
header_range(PbMimeRange *r, const PbMimePart *p)
{
	guint64 size = p->header_size, crlf = p->header_crlf_size;

	if ((p->flags & PB_MIME_PART_BLANK_BEFORE_BOUNDARY) != 0 && crlf >= 2) {
		gboolean cr = p->header_len >= 2 && p->header_len == size &&
		              p->header[size - 2] == '\r';
		size -= cr ? 2 : 1;
		crlf -= 2;
	}
	range_set(r, p->header_offset, size, crlf);
}

/* The part a path of numbers names, or NULL: N of a multipart is its
 * N-th part; a part that is not one has only "1" (itself), and only a
 * message/rfc822 part goes on below it, into its message (Dovecot's
 * imap-msgpart rules). */
static const PbMimePart *
section_part(const PbMimePart *root, const PbMimeSection *sec)
{
	const PbMimePart *cur = root;

	for (guint i = 0; i < sec->nparts && cur != NULL; i++) {
		guint n = sec->parts[i];
		gboolean more = i + 1 < sec->nparts;
		if ((cur->flags & PB_MIME_PART_MULTIPART) != 0) {
			cur = cur->children;
			while (cur != NULL && --n > 0)
				cur = cur->next;
		} else if (n != 1 ||
		           (more && (cur->flags & PB_MIME_PART_MESSAGE) == 0))
			cur = NULL;
		if (cur != NULL && more &&
		    (cur->flags & PB_MIME_PART_MESSAGE) != 0)
			cur = cur->children;
	}
	return cur;
}

void
pb_mime_section_resolve(const PbMimePart *root, const PbMimeSection *sec,
                        PbMimeRange *range)
{
	const PbMimePart *p = section_part(root, sec);

	memset(range, 0, sizeof(*range));
	if (p == NULL)
		return;
	range->part = p;
	if (sec->kind == PB_MIME_SECTION_ALL) {
		if (sec->nparts == 0)
			range_set(range, p->header_offset,
			          p->header_size + p->body_size,
			          pb_mime_part_crlf_size(p));
		else
			range_set(range, p->body_offset, p->body_size,
			          p->body_crlf_size);
		return;
	}
	if (sec->kind == PB_MIME_SECTION_MIME) {
		header_range(range, p);
		return;
	}
	/* HEADER, HEADER.FIELDS, TEXT: of the message a part holds (only a
	 * message/rfc822 part holds one) */
	if (sec->nparts > 0) {
		if ((p->flags & PB_MIME_PART_MESSAGE) == 0)
			return;
		p = p->children;
	}
	range->part = p;
	if (sec->kind == PB_MIME_SECTION_TEXT) {
		range_set(range, p->body_offset, p->body_size,
		          p->body_crlf_size);
		return;
	}
	if (sec->kind == PB_MIME_SECTION_HEADER) {
		header_range(range, p);
		return;
	}
	range_set(range, p->header_offset, p->header_size, p->header_crlf_size);
	{
		range->filter = TRUE;
		range->fields = (const char *const *)sec->fields;
		range->fields_not =
		    sec->kind == PB_MIME_SECTION_HEADER_FIELDS_NOT;
	}
}

/* LF -> CRLF, NUL -> 0x80 (what Dovecot sends for a NUL) */
static void
append_crlf(GString *out, const char *s, gsize len)
{
	for (gsize i = 0; i < len; i++) {
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			g_string_append_c(out, '\r');
		g_string_append_c(out, s[i] == '\0' ? (char)0x80 : s[i]);
	}
}

void
pb_mime_filter_header(const PbMimePart *part, const char *const *fields,
                      gboolean not, GString *out)
{
	gsize pos = 0;
	Field f;

	while (part->header != NULL &&
	       next_field(part->header, part->header_len, &pos, &f)) {
		gboolean in = FALSE;
		for (guint i = 0; fields != NULL && fields[i] != NULL; i++)
			if (field_is(&f, fields[i])) {
				in = TRUE;
				break;
			}
		if (in == not )
			continue;
		/* a last line without its line end (a header that ends the
		 * file or that a boundary cut) stays so */
		append_crlf(out, f.raw, f.raw_len);
	}
	/* Dovecot: one CRLF always ends HEADER.FIELDS (the empty line, or
	 * the end of an unfinished last line); .NOT keeps the empty line
	 * only if the header had one */
	if (!not || (part->flags & PB_MIME_PART_NO_BLANK_LINE) == 0)
		g_string_append(out, "\r\n");
}

/* ------------------------------------------------------------------ */
/* RFC 5322 dates                                                      */

static const char *
date_word(const char *s, char *buf, gsize size)
{
	gsize n = 0;
	while (*s == ' ' || *s == '\t' || *s == ',' || *s == '\r' || *s == '\n')
		s++;
	if (*s == '(') { /* a comment */
		int depth = 0;
		for (; *s != '\0'; s++) {
			if (*s == '(')
				depth++;
			else if (*s == ')' && --depth == 0) {
				s++;
				break;
			}
		}
		return date_word(s, buf, size);
	}
	while (*s != '\0' && *s != ' ' && *s != '\t' && *s != ',' &&
	       *s != '\r' && *s != '\n' && *s != '(') {
		if (n + 1 < size)
			buf[n++] = *s;
		s++;
	}
	buf[n] = '\0';
	return s;
}

static int
zone_minutes(const char *z, gboolean *ok)
{
	static const struct {
		const char *n;
		int m;
	} zones[] = {{"UT", 0},     {"GMT", 0},    {"Z", 0},      {"EST", -300},
	             {"EDT", -240}, {"CST", -360}, {"CDT", -300}, {"MST", -420},
	             {"MDT", -360}, {"PST", -480}, {"PDT", -420}};

	*ok = TRUE;
	if ((z[0] == '+' || z[0] == '-') && strlen(z) == 5 &&
	    g_ascii_isdigit(z[1]) && g_ascii_isdigit(z[2]) &&
	    g_ascii_isdigit(z[3]) && g_ascii_isdigit(z[4])) {
		int m = ((z[1] - '0') * 10 + (z[2] - '0')) * 60 +
		        (z[3] - '0') * 10 + (z[4] - '0');
		return z[0] == '-' ? -m : m;
	}
	for (guint i = 0; i < G_N_ELEMENTS(zones); i++)
		if (g_ascii_strcasecmp(z, zones[i].n) == 0)
			return zones[i].m;
	return 0; /* unknown zones: -0000, as RFC 5322 4.3 says */
}

gboolean
pb_mime_date_parse(const char *s, gint64 *utc, int *tz_min)
{
	static const char *const months[] = {"jan", "feb", "mar", "apr",
	                                     "may", "jun", "jul", "aug",
	                                     "sep", "oct", "nov", "dec"};
	char w[32];
	int day, mon = -1, year, h = 0, mi = 0, sec = 0, tz;
	gboolean ok;
	g_autoptr(GDateTime) dt = NULL;

	s = date_word(s, w, sizeof(w));
	if (!g_ascii_isdigit(w[0])) /* a day name */
		s = date_word(s, w, sizeof(w));
	if (!g_ascii_isdigit(w[0]))
		return FALSE;
	day = atoi(w);
	s = date_word(s, w, sizeof(w));
	for (int i = 0; i < 12; i++)
		if (g_ascii_strncasecmp(w, months[i], 3) == 0 && strlen(w) >= 3)
			mon = i + 1;
	s = date_word(s, w, sizeof(w));
	if (mon < 0 || !g_ascii_isdigit(w[0]) || day < 1 || day > 31)
		return FALSE;
	year = atoi(w);
	if (strlen(w) <= 2)
		year += year < 50 ? 2000 : 1900;
	else if (strlen(w) == 3)
		year += 1900;
	s = date_word(s, w, sizeof(w));
	if (sscanf(w, "%d:%d:%d", &h, &mi, &sec) < 2 || h > 23 || mi > 59 ||
	    sec > 60)
		return FALSE;
	date_word(s, w, sizeof(w));
	tz = zone_minutes(w, &ok);
	dt = g_date_time_new_utc(year, mon, day, h, mi, MIN(sec, 59));
	if (dt == NULL || year < 1 || year > 9999)
		return FALSE;
	*utc = g_date_time_to_unix(dt) - (gint64)tz * 60;
	*tz_min = tz;
	return TRUE;
}

/* ------------------------------------------------------------------ */
/* the SEARCH matcher: KMP over case-folded code points                */

#define RAW_BYTE 0x110000 /* invalid UTF-8 octets: RAW_BYTE + octet */

struct _PbMimeMatcher {
	gunichar *needle;
	guint n;
	guint *fail;
	guint state;
	gboolean found;
	guchar pend[4]; /* an incomplete UTF-8 sequence */
	guint npend;
};

static gunichar
fold(gunichar c)
{
	return c >= RAW_BYTE ? c : g_unichar_tolower(c);
}

/* Decodes one code point from S (LEN > 0): the octets used, or 0 if the
 * sequence may still complete with more input. */
static gsize
utf8_next(const guchar *s, gsize len, gboolean final, gunichar *c)
{
	gunichar u = g_utf8_get_char_validated((const char *)s, (gssize)len);

	if (u == (gunichar)-2 && !final)
		return 0;
	if (u == (gunichar)-1 || u == (gunichar)-2) {
		*c = RAW_BYTE + s[0];
		return 1;
	}
	*c = u;
	return (gsize)g_unichar_to_utf8(u, NULL);
}

PbMimeMatcher *
pb_mime_matcher_new(const char *needle)
{
	PbMimeMatcher *m = g_new0(PbMimeMatcher, 1);
	gsize len = strlen(needle), i = 0;
	guint k = 0;

	m->needle = g_new(gunichar, len + 1);
	while (i < len) {
		gunichar c;
		i += utf8_next((const guchar *)needle + i, len - i, TRUE, &c);
		m->needle[m->n++] = fold(c);
	}
	m->fail = g_new0(guint, m->n + 1);
	for (guint q = 1; q < m->n; q++) {
		while (k > 0 && m->needle[k] != m->needle[q])
			k = m->fail[k];
		if (m->needle[k] == m->needle[q])
			k++;
		m->fail[q + 1] = k;
	}
	m->found = m->n == 0;
	return m;
}

void
pb_mime_matcher_reset(PbMimeMatcher *m)
{
	m->state = 0;
	m->npend = 0;
	m->found = m->n == 0;
}

static void
match_char(PbMimeMatcher *m, gunichar c)
{
	c = fold(c);
	while (m->state > 0 && m->needle[m->state] != c)
		m->state = m->fail[m->state];
	if (m->needle[m->state] == c && ++m->state == m->n) {
		m->found = TRUE;
		m->state = m->fail[m->state];
	}
}

gboolean
pb_mime_matcher_feed(PbMimeMatcher *m, const char *buf, gsize len)
{
	const guchar *s = (const guchar *)buf;

	while (len > 0 && !m->found) {
		gunichar c;
		gsize used;
		if (m->npend > 0 || (s[0] >= 0x80 && len < 4)) {
			/* complete a pending sequence octet by octet */
			m->pend[m->npend++] = *s++;
			len--;
			used = utf8_next(m->pend, m->npend, m->npend == 4, &c);
			if (used == 0)
				continue;
			match_char(m, c);
			/* octets not used start over */
			{
				guchar rest[4];
				guint nr = m->npend - (guint)used;
				memcpy(rest, m->pend + used, nr);
				m->npend = 0;
				for (guint i = 0; i < nr; i++)
					pb_mime_matcher_feed(
					    m, (char *)rest + i, 1);
			}
			continue;
		}
		used = utf8_next(s, len, FALSE, &c);
		if (used == 0) {
			m->pend[m->npend++] = *s++;
			len--;
			continue;
		}
		match_char(m, c);
		s += used;
		len -= used;
	}
	return m->found;
}

gboolean
pb_mime_matcher_found(const PbMimeMatcher *m)
{
	return m->found;
}

void
pb_mime_matcher_free(PbMimeMatcher *m)
{
	if (m == NULL)
		return;
	g_free(m->needle);
	g_free(m->fail);
	g_free(m);
}

/* ------------------------------------------------------------------ */
/* decoding: quoted-printable, base64, RFC 2047                        */

typedef enum { ENC_NONE, ENC_QP, ENC_BASE64 } Enc;

struct _PbMimeDecoder {
	Enc enc;
	/* quoted-printable: "=" and up to one hex digit held */
	char qp[3];
	guint nqp;
	guint b64_bits, b64_n; /* sextets held, how many */
	gboolean b64_end;      /* padding or a stray octet seen: done */
};

/* The value of the last field NAME, unfolded ("" if none): what
 * Dovecot's search decoder reads, MIME-Version or not. */
static char *
last_field(const PbMimePart *part, const char *name)
{
	g_autofree char *v = header_value(part, name, TRUE);
	return v != NULL ? unfold(v, strlen(v)) : g_strdup("");
}

PbMimeDecoder *
pb_mime_decoder_new(const PbMimePart *part)
{
	PbMimeDecoder *d = g_new0(PbMimeDecoder, 1);
	g_autofree char *cte = last_field(part, "Content-Transfer-Encoding");
	g_autoptr(GString) tok = g_string_new(NULL);
	Rfc r;

	rfc_init(&r, cte, strlen(cte));
	if (rfc_skip_lwsp(&r))
		rfc_mime_token(&r, tok);
	if (g_ascii_strcasecmp(tok->str, "quoted-printable") == 0)
		d->enc = ENC_QP;
	else if (g_ascii_strcasecmp(tok->str, "base64") == 0)
		d->enc = ENC_BASE64;
	return d;
}

static int
hexval(char c)
{
	return g_ascii_isxdigit(c) ? g_ascii_xdigit_value(c) : -1;
}

static void
qp_feed(PbMimeDecoder *d, const char *buf, gsize len, GString *out)
{
	for (gsize i = 0; i < len; i++) {
		char c = buf[i];
		if (d->nqp == 0) {
			if (c == '=')
				d->qp[d->nqp++] = c;
			else
				g_string_append_c(out, c);
			continue;
		}
		d->qp[d->nqp++] = c;
		if (d->nqp == 2) {
			if (c == '\n') /* soft line break */
				d->nqp = 0;
			else if (c != '\r' && hexval(c) < 0) {
				g_string_append_len(out, d->qp, 2);
				d->nqp = 0;
			}
			continue;
		}
		if (d->qp[1] == '\r' && c == '\n')
			;
		else if (hexval(d->qp[1]) >= 0 && hexval(c) >= 0)
			g_string_append_c(
			    out, (char)(hexval(d->qp[1]) * 16 + hexval(c)));
		else
			g_string_append_len(out, d->qp, 3);
		d->nqp = 0;
	}
}

static int
b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* base64; white space skipped; padding or any other octet ends the
 * decoding of the part (Dovecot's search does not read past an error) */
static void
b64_feed(PbMimeDecoder *d, const char *buf, gsize len, GString *out)
{
	for (gsize i = 0; i < len && !d->b64_end; i++) {
		int v = b64val(buf[i]);
		if (v < 0) {
			d->b64_end = buf[i] != ' ' && buf[i] != '\t' &&
			             buf[i] != '\r' && buf[i] != '\n';
			continue;
		}
		d->b64_bits = (d->b64_bits << 6) | (guint)v;
		if (++d->b64_n == 4) {
			g_string_append_c(out, (char)(d->b64_bits >> 16));
			g_string_append_c(out, (char)(d->b64_bits >> 8));
			g_string_append_c(out, (char)d->b64_bits);
			d->b64_bits = d->b64_n = 0;
		}
	}
	/* at "=" the octets of an incomplete quartet are still written */
	if (d->b64_end && d->b64_n >= 2) {
		guint bits = d->b64_bits << (6 * (4 - d->b64_n));
		g_string_append_c(out, (char)(bits >> 16));
		if (d->b64_n == 3)
			g_string_append_c(out, (char)(bits >> 8));
		d->b64_n = 0;
	}
}

void
pb_mime_decoder_feed(PbMimeDecoder *d, const char *buf, gsize len, GString *out)
{
	if (d->enc == ENC_QP)
		qp_feed(d, buf, len, out);
	else if (d->enc == ENC_BASE64)
		b64_feed(d, buf, len, out);
	else
		g_string_append_len(out, buf, len);
}

void
pb_mime_decoder_free(PbMimeDecoder *d)
{
	g_free(d);
}

/* One encoded word at S ("=?cs?e?text?="): appends it decoded to OUT and
 * returns its length, or 0 if S is not one. */
static gsize
decode_word(const char *s, gsize len, GString *out)
{
	const char *end = s + len, *cs, *q1, *q2, *txt, *e;
	g_autofree char *charset = NULL;
	g_autoptr(GString) raw = g_string_new(NULL);
	char *conv, *star;

	if (len < 8 || s[0] != '=' || s[1] != '?')
		return 0;
	cs = s + 2;
	q1 = memchr(cs, '?', end - cs);
	if (q1 == NULL || q1 + 3 >= end || q1[2] != '?')
		return 0;
	txt = q1 + 3;
	for (e = txt; e + 1 < end && !(e[0] == '?' && e[1] == '='); e++)
		if (*e == ' ' || *e == '\t' || *e == '\r' || *e == '\n')
			return 0;
	if (e + 1 >= end)
		return 0;
	q2 = e;
	charset = g_strndup(cs, q1 - cs);
	if ((star = strchr(charset, '*')) != NULL)
		*star = '\0';
	if (q1[1] == 'B' || q1[1] == 'b') {
		gsize n;
		g_autofree char *t = g_strndup(txt, q2 - txt);
		g_autofree guchar *b = g_base64_decode(t, &n);
		g_string_append_len(raw, (const char *)b, n);
	} else if (q1[1] == 'Q' || q1[1] == 'q') {
		for (const char *c = txt; c < q2; c++) {
			if (*c == '_')
				g_string_append_c(raw, ' ');
			else if (*c == '=' && c + 2 < q2 && hexval(c[1]) >= 0 &&
			         hexval(c[2]) >= 0) {
				g_string_append_c(
				    raw,
				    (char)(hexval(c[1]) * 16 + hexval(c[2])));
				c += 2;
			} else
				g_string_append_c(raw, *c);
		}
	} else
		return 0;
	conv =
	    g_convert(raw->str, raw->len, "UTF-8", charset, NULL, NULL, NULL);
	if (conv != NULL) {
		g_string_append(out, conv);
		g_free(conv);
	} else
		g_string_append_len(out, raw->str, raw->len);
	return (gsize)(q2 + 2 - s);
}

/* Appends V unfolded with its encoded words decoded (white space
 * between two encoded words dropped). */
static void
append_decoded(GString *out, const char *v, gsize len)
{
	gsize i = 0, pending_ws = 0, ws_at = 0;
	gboolean after_word = FALSE;

	while (i < len) {
		gsize n = v[i] == '=' ? decode_word(v + i, len - i, out) : 0;
		if (n > 0) {
			if (after_word && pending_ws > 0) {
				/* drop the white space between two words: it
				 * was appended already, take it back */
				g_string_erase(out, ws_at, pending_ws);
				/* the decoded word moved left */
			}
			i += n;
			after_word = TRUE;
			pending_ws = 0;
			continue;
		}
		if (v[i] == '\r' || v[i] == '\n') {
			i++;
			continue;
		}
		if (v[i] == ' ' || v[i] == '\t') {
			if (pending_ws == 0)
				ws_at = out->len;
			pending_ws++;
			/* a tab (as a folded line starts) reads as a space */
			g_string_append_c(out, ' ');
			i++;
			continue;
		}
		after_word = FALSE;
		pending_ws = 0;
		g_string_append_c(out, v[i++]);
	}
}

gboolean
pb_mime_search_header(const PbMimePart *root, const char *name,
                      const char *needle)
{
	g_autoptr(PbMimeMatcher) m = pb_mime_matcher_new(needle);
	g_autoptr(GString) t = g_string_new(NULL);
	gsize pos = 0;
	Field f;

	while (root->header != NULL &&
	       next_field(root->header, root->header_len, &pos, &f)) {
		if (!field_is(&f, name))
			continue;
		if (*needle == '\0')
			return TRUE;
		g_string_truncate(t, 0);
		append_decoded(t, f.value, f.value_len);
		pb_mime_matcher_reset(m);
		if (pb_mime_matcher_feed(m, t->str, t->len))
			return TRUE;
	}
	return FALSE;
}

void
pb_mime_append_decoded_header(GString *out, const PbMimePart *part)
{
	gsize pos = 0;
	Field f;

	while (part->header != NULL &&
	       next_field(part->header, part->header_len, &pos, &f)) {
		g_string_append_len(out, f.name, f.name_len);
		g_string_append(out, ": ");
		append_decoded(out, f.value, f.value_len);
		g_string_append_c(out, '\n');
	}
}

gboolean
pb_mime_part_searchable(const PbMimePart *part)
{
	if ((part->flags & (PB_MIME_PART_MULTIPART | PB_MIME_PART_MESSAGE)) !=
	    0)
		return FALSE;
	return part->type == NULL || strcmp(part->type, "text") == 0 ||
	       strcmp(part->type, "message") == 0;
}

char *
pb_mime_part_charset(const PbMimePart *part)
{
	g_autofree char *ct = last_field(part, "Content-Type");
	g_autoptr(GString) t = g_string_new(NULL);
	g_autoptr(GString) sub = g_string_new(NULL);
	g_autoptr(GPtrArray) params = NULL;

	parse_content_type(ct, t, sub, &params);
	for (guint i = 0; params != NULL && i + 1 < params->len; i += 2)
		if (g_ascii_strcasecmp(params->pdata[i], "charset") == 0)
			return g_ascii_strdown(params->pdata[i + 1], -1);
	return NULL;
}
