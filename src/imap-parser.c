/*
 * imap-parser.c - the IMAP command framer and the typed helpers over its
 * argument tree (see imap-parser.h).
 *
 * How it reads: a command is one or more line segments (the text up to
 * an LF) separated by literals. Each segment is collected whole (bounded
 * by the budget) and then tokenised; a segment that ends with "{N}" or
 * "{N+}" stops at the literal, which the caller accepts (buffered),
 * streams or refuses; the tokeniser resumes on the next segment with the
 * open lists kept on a stack. So no token ever spans a read boundary,
 * and feeding byte by byte or all at once gives the same events.
 *
 * Resync: after an error the rest of the line is skipped; only the last
 * octets before its LF are kept, to see whether it announced a {N+}
 * literal, whose octets are skipped too (a {N} one is never invited).
 */
#include "imap-parser.h"

#include "error.h"

#include <string.h>

typedef enum {
	S_LINE,         /* collecting a segment up to LF */
	S_LITERAL_WAIT, /* a literal announced: the caller decides */
	S_LITERAL,      /* reading a buffered literal */
	S_STREAM,       /* handing a literal's octets to the caller */
	S_STREAM_END,   /* the next feed says STREAM_END */
	S_SKIP_LINE,    /* after an error: discarding up to LF */
	S_SKIP_LITERAL, /* discarding a {N+}'s octets, then S_SKIP_LINE */
	S_CLOSED,
} State;

#define TAIL 24

struct _PbImapParser {
	State state;
	gsize max, next_max;
	gboolean authenticated;
	GString *line;       /* the segment being collected */
	gsize used;          /* octets of this command so far */
	gboolean started;    /* a command's first octet has been read */
	gboolean in_command; /* the segment continues a command (literal) */
	gboolean expect_line, raw_line;
	PbImapCommand cmd;
	gboolean cmd_done; /* cmd is complete: freed at the next feed */
	GPtrArray *stack;  /* GArray of PbImapArg: [0] top level, open lists */
	gboolean need_sep;
	/* the literal announced or being read */
	guint64 lit_size;
	gboolean lit_sync, lit_8;
	char *lit_buf;
	gsize lit_got;
	guint64 left; /* S_STREAM, S_SKIP_LITERAL */
	/* the last error */
	char *bad_tag;
	char *err;
	PbImapBadKind bad_kind;
	const char *close_err;  /* why CLOSE, when not err */
	gboolean closed_told;   /* CLOSE was returned */
	gboolean skip_literals; /* S_SKIP_LINE honours a final {N+} */
	char tail[TAIL];
	gsize tail_len;
};

/* ------------------------------------------------------------------ */
/* the argument tree */

static void
arg_clear(PbImapArg *a)
{
	for (guint i = 0; i < a->n; i++)
		arg_clear(&a->list[i]);
	g_free(a->list);
	g_free(a->str);
}

static GArray *
args_new(void)
{
	return g_array_new(FALSE, TRUE, sizeof(PbImapArg));
}

static void
args_free(GArray *args)
{
	for (guint i = 0; i < args->len; i++)
		arg_clear(&g_array_index(args, PbImapArg, i));
	g_array_free(args, TRUE);
}

static void
push_arg(PbImapParser *p, PbImapArg *a)
{
	g_array_append_val((GArray *)p->stack->pdata[p->stack->len - 1], *a);
	p->need_sep = TRUE;
}

static void
push_string(PbImapParser *p, PbImapArgType type, const char *s, gsize len)
{
	PbImapArg a = {0};

	a.type = type;
	a.str = g_strndup(s, len);
	a.len = len;
	push_arg(p, &a);
}

static void
reset_command(PbImapParser *p)
{
	while (p->stack->len > 0) {
		args_free(p->stack->pdata[p->stack->len - 1]);
		g_ptr_array_set_size(p->stack, p->stack->len - 1);
	}
	g_clear_pointer(&p->cmd.tag, g_free);
	g_clear_pointer(&p->cmd.name, g_free);
	g_clear_pointer(&p->lit_buf, g_free);
	memset(&p->cmd, 0, sizeof(p->cmd));
	p->cmd_done = FALSE;
	p->in_command = FALSE;
	p->started = FALSE;
	p->used = 0;
	p->need_sep = FALSE;
	g_string_truncate(p->line, 0);
}

/* The command as far as it goes: tag, name, top-level arguments. */
static void
expose_command(PbImapParser *p)
{
	GArray *top = p->stack->len > 0 ? p->stack->pdata[0] : NULL;

	p->cmd.args = top != NULL ? (PbImapArg *)(void *)top->data : NULL;
	p->cmd.n_args = top != NULL ? top->len : 0;
	p->cmd.size = p->used;
}

/* ------------------------------------------------------------------ */
/* life cycle, settings, accessors */

PbImapParser *
pb_imap_parser_new(void)
{
	PbImapParser *p = g_new0(PbImapParser, 1);

	p->line = g_string_new(NULL);
	p->stack = g_ptr_array_new();
	p->max = p->next_max = PB_IMAP_PARSER_MAX_PRE_AUTH;
	return p;
}

void
pb_imap_parser_free(PbImapParser *p)
{
	if (p == NULL)
		return;
	reset_command(p);
	g_ptr_array_free(p->stack, TRUE);
	g_string_free(p->line, TRUE);
	g_free(p->bad_tag);
	g_free(p->err);
	g_free(p);
}

void
pb_imap_parser_set_authenticated(PbImapParser *p, gboolean authenticated)
{
	p->authenticated = authenticated;
	p->next_max = authenticated ? PB_IMAP_PARSER_MAX_COMMAND
	                            : PB_IMAP_PARSER_MAX_PRE_AUTH;
}

void
pb_imap_parser_set_max_command(PbImapParser *p, gsize max)
{
	g_return_if_fail(max >= 1024);
	p->next_max = max;
}

const PbImapCommand *
pb_imap_parser_command(PbImapParser *p)
{
	return p->cmd.tag != NULL ? &p->cmd : NULL;
}

const char *
pb_imap_parser_tag(PbImapParser *p)
{
	return p->bad_tag;
}

const char *
pb_imap_parser_error(PbImapParser *p)
{
	if (p->closed_told && p->close_err != NULL)
		return p->close_err;
	return p->err != NULL ? p->err : "";
}

PbImapBadKind
pb_imap_parser_bad_kind(PbImapParser *p)
{
	return p->bad_kind;
}

void
pb_imap_parser_literal(PbImapParser *p, guint64 *size, gboolean *sync,
                       gboolean *literal8, guint *depth)
{
	if (size != NULL)
		*size = p->lit_size;
	if (sync != NULL)
		*sync = p->lit_sync;
	if (literal8 != NULL)
		*literal8 = p->lit_8;
	if (depth != NULL)
		*depth = p->stack->len > 0 ? p->stack->len - 1 : 0;
}

guint64
pb_imap_parser_stream_left(PbImapParser *p)
{
	return p->state == S_STREAM ? p->left : 0;
}

void
pb_imap_parser_expect_line(PbImapParser *p)
{
	p->expect_line = TRUE;
}

const char *
pb_imap_parser_line(PbImapParser *p, gsize *len)
{
	if (len != NULL)
		*len = p->line->len;
	return p->line->str;
}

/* ------------------------------------------------------------------ */
/* errors and resynchronisation */

static gboolean
is_atom_char(guchar c)
{
	return c > ' ' && c < 0x7f && strchr("(){%*\"\\]", c) == NULL;
}

static gboolean
is_tag_char(guchar c)
{
	return (is_atom_char(c) || c == ']') && c != '+';
}

/* The tag at the start of S, if it is one and ends: at SP, or at the
 * end of S when S is a COMPLETE line. */
static char *
tag_of(const char *s, gsize len, gboolean complete)
{
	gsize i = 0;

	while (i < len && is_tag_char(s[i]))
		i++;
	if (i == 0 || (i < len && s[i] != ' ') || (i == len && !complete))
		return NULL;
	return g_strndup(s, i);
}

/* Records a BAD for the current command and drops what was parsed. */
static void
set_bad(PbImapParser *p, PbImapBadKind kind, const char *msg, gboolean complete)
{
	g_free(p->bad_tag);
	if (p->cmd.tag != NULL)
		p->bad_tag = g_strdup(p->cmd.tag);
	else if (!p->raw_line)
		p->bad_tag = tag_of(p->line->str, p->line->len, complete);
	else
		p->bad_tag = NULL;
	g_free(p->err);
	p->err = g_strdup(msg);
	p->bad_kind = kind;
	reset_command(p);
}

/* "{N}", "{N+}", "~{N}" ending S: TRUE with its size and kind. A size
 * of more than 32 bits is reported as G_MAXUINT64. */
static gboolean
literal_at_end(const char *s, gsize len, guint64 *size, gboolean *sync)
{
	gsize i, digits;
	guint64 n = 0;

	if (len < 3 || s[len - 1] != '}')
		return FALSE;
	i = len - 1;
	*sync = s[i - 1] != '+';
	if (!*sync)
		i--;
	digits = i;
	while (i > 0 && g_ascii_isdigit(s[i - 1]))
		i--;
	if (i == digits || i == 0 || s[i - 1] != '{')
		return FALSE;
	for (gsize k = i; k < digits; k++)
		n = n > G_MAXUINT32 ? n : n * 10 + (guint64)(s[k] - '0');
	*size = n > G_MAXUINT32 ? G_MAXUINT64 : n;
	return TRUE;
}

/* "digits+}" filling the tail (its CR taken off): a {N+} whose "{" fell out
 * of it (a size written with many leading zeros) */
static gboolean
long_literal_at_end(const char *s, gsize len)
{
	if (len + 1 < TAIL || s[len - 1] != '}' || s[len - 2] != '+')
		return FALSE;
	for (gsize i = 0; i < len - 2; i++)
		if (!g_ascii_isdigit(s[i]))
			return FALSE;
	return TRUE;
}

/* The line ended while skipping: a {N+} at its end is skipped too. */
static void
skip_line_done(PbImapParser *p, const char *s, gsize len)
{
	guint64 size;
	gboolean sync;

	if (p->skip_literals && long_literal_at_end(s, len)) {
		p->close_err = "Literal size unreadable";
		p->state = S_CLOSED;
		return;
	}
	if (p->skip_literals && literal_at_end(s, len, &size, &sync) && !sync) {
		if (size > p->max) {
			p->close_err = "Literal too big";
			p->state = S_CLOSED;
			return;
		}
		p->left = size;
		p->state = S_SKIP_LITERAL;
		return;
	}
	reset_command(p);
	p->state = S_LINE;
}

/* A BAD found in the complete segment SEG (the rest of it is ignored). */
static PbImapParseResult
bad_segment(PbImapParser *p, PbImapBadKind kind, const char *msg)
{
	g_autoptr(GString) seg = g_string_new_len(p->line->str, p->line->len);

	set_bad(p, kind, msg, TRUE);
	p->skip_literals = TRUE;
	skip_line_done(p, seg->str, seg->len);
	return PB_IMAP_PARSE_BAD;
}

static void
tail_add(PbImapParser *p, const char *s, gsize len)
{
	if (len >= TAIL) {
		memcpy(p->tail, s + len - TAIL, TAIL);
		p->tail_len = TAIL;
		return;
	}
	if (p->tail_len + len > TAIL) {
		gsize drop = p->tail_len + len - TAIL;

		memmove(p->tail, p->tail + drop, p->tail_len - drop);
		p->tail_len -= drop;
	}
	memcpy(p->tail + p->tail_len, s, len);
	p->tail_len += len;
}

/* A BAD found while the segment is still arriving: skip to its LF. */
static PbImapParseResult
bad_midline(PbImapParser *p, PbImapBadKind kind, const char *msg)
{
	p->tail_len = 0;
	tail_add(p, p->line->str, p->line->len);
	p->skip_literals = !p->raw_line;
	set_bad(p, kind, msg, FALSE);
	p->raw_line = FALSE;
	p->state = S_SKIP_LINE;
	return PB_IMAP_PARSE_BAD;
}

/* ------------------------------------------------------------------ */
/* the tokeniser, over one complete segment */

typedef enum {
	TOK_END,
	TOK_LITERAL,
	TOK_ERROR,
} Tok;

typedef struct {
	const char *s;
	gsize len;
	gsize pos;
	const char *msg;
	PbImapBadKind kind;
} Seg;

static Tok
tok_error(Seg *g, const char *msg)
{
	g->msg = msg;
	g->kind = PB_IMAP_BAD_SYNTAX;
	return TOK_ERROR;
}

static Tok
read_quoted(PbImapParser *p, Seg *g)
{
	g_autoptr(GString) out = g_string_new(NULL);
	gsize i = g->pos + 1;

	for (; i < g->len && g->s[i] != '"'; i++) {
		char c = g->s[i];

		if (c == '\r')
			return tok_error(g, "CR in a quoted string");
		if (c == '\\') {
			if (++i == g->len ||
			    (g->s[i] != '"' && g->s[i] != '\\'))
				return tok_error(
				    g, "Bad escape in a quoted string");
			c = g->s[i];
		}
		g_string_append_c(out, c);
	}
	if (i == g->len)
		return tok_error(g, "Unterminated quoted string");
	g->pos = i + 1;
	push_string(p, PB_IMAP_ARG_QUOTED, out->str, out->len);
	return TOK_END;
}

/* BODY[...] and BODY.PEEK[...]: the section is part of the atom. */
static gboolean
section_atom(const char *s, gsize len)
{
	return (len == 4 && g_ascii_strncasecmp(s, "BODY", 4) == 0) ||
	       (len == 9 && g_ascii_strncasecmp(s, "BODY.PEEK", 9) == 0);
}

/* Only FETCH and UID FETCH have sections: elsewhere '[' is an atom
 * character like any other ("SELECT BODY[" selects the mailbox
 * "BODY[", RFC 3501's ASTRING-CHAR). */
static gboolean
sections_here(const PbImapParser *p)
{
	const GArray *top = p->stack->len > 0 ? p->stack->pdata[0] : NULL;
	const PbImapArg *sub;

	if (g_ascii_strcasecmp(p->cmd.name, "FETCH") == 0)
		return TRUE;
	if (g_ascii_strcasecmp(p->cmd.name, "UID") != 0 || top == NULL ||
	    top->len == 0)
		return FALSE;
	sub = &g_array_index(top, PbImapArg, 0);
	return sub->type == PB_IMAP_ARG_ATOM &&
	       g_ascii_strcasecmp(sub->str, "FETCH") == 0;
}

/* From '[' to its ']' (quoted strings inside may hold ']'). */
static gboolean
skip_section(Seg *g)
{
	gboolean quoted = FALSE;

	for (gsize i = g->pos + 1; i < g->len; i++) {
		guchar c = g->s[i];

		if (c < ' ' || c == 0x7f)
			return FALSE;
		if (quoted && c == '\\' && i + 1 < g->len)
			i++;
		else if (c == '"')
			quoted = !quoted;
		else if (c == ']' && !quoted) {
			g->pos = i + 1;
			return TRUE;
		}
	}
	return FALSE;
}

static Tok
read_atom(PbImapParser *p, Seg *g)
{
	gsize start = g->pos;

	while (g->pos < g->len) {
		guchar c = g->s[g->pos];

		if (c == ' ' || c == '(' || c == ')')
			break;
		if (c == '[' && section_atom(g->s + start, g->pos - start) &&
		    sections_here(p)) {
			if (!skip_section(g))
				return tok_error(g, "Unterminated section");
			continue;
		}
		if (c < ' ' || c == 0x7f || c == '"' || c == '{')
			return tok_error(g, "Invalid character in an atom");
		g->pos++;
	}
	if (g->pos - start == 3 &&
	    g_ascii_strncasecmp(g->s + start, "NIL", 3) == 0)
		push_string(p, PB_IMAP_ARG_NIL, g->s + start, 3);
	else
		push_string(p, PB_IMAP_ARG_ATOM, g->s + start, g->pos - start);
	return TOK_END;
}

/* "{N}" / "{N+}" / "~{N}" must end the segment. */
static Tok
read_literal(PbImapParser *p, Seg *g)
{
	guint64 size;
	gboolean sync;
	gboolean l8 = g->s[g->pos] == '~';
	const char *at = g->s + g->pos + (l8 ? 1 : 0);

	if (!literal_at_end(g->s, g->len, &size, &sync) ||
	    memchr(at + 1, '{', g->s + g->len - at - 1) != NULL ||
	    !g_ascii_isdigit(at[1]))
		return tok_error(g, "Invalid literal");
	if (size == G_MAXUINT64) {
		g->msg = "Literal too big";
		g->kind = PB_IMAP_BAD_TOO_BIG;
		return TOK_ERROR;
	}
	p->lit_size = size;
	p->lit_sync = sync;
	p->lit_8 = l8;
	g->pos = g->len;
	return TOK_LITERAL;
}

static gboolean
close_list(PbImapParser *p)
{
	GArray *list;
	PbImapArg a = {0};

	if (p->stack->len < 2)
		return FALSE;
	list = g_ptr_array_steal_index(p->stack, p->stack->len - 1);
	a.type = PB_IMAP_ARG_LIST;
	a.n = list->len;
	a.list = (PbImapArg *)(void *)g_array_free(list, FALSE);
	push_arg(p, &a);
	return TRUE;
}

static Tok
tokenize(PbImapParser *p, Seg *g)
{
	while (g->pos < g->len) {
		guchar c = g->s[g->pos];
		Tok t = TOK_END;

		if (c == ' ') {
			g->pos++;
			p->need_sep = FALSE;
			continue;
		}
		if (c == ')') {
			if (!close_list(p))
				return tok_error(g, "Unexpected ')'");
			g->pos++;
			continue;
		}
		if (p->need_sep)
			return tok_error(g, "Missing space between arguments");
		if (c == '(') {
			if (p->stack->len > PB_IMAP_PARSER_MAX_DEPTH) {
				g->msg = "Lists nested too deep";
				g->kind = PB_IMAP_BAD_DEPTH;
				return TOK_ERROR;
			}
			g_ptr_array_add(p->stack, args_new());
			g->pos++;
		} else if (c == '"')
			t = read_quoted(p, g);
		else if (c == '{' || (c == '~' && g->pos + 1 < g->len &&
		                      g->s[g->pos + 1] == '{'))
			return read_literal(p, g);
		else
			t = read_atom(p, g);
		if (t != TOK_END)
			return t;
	}
	return TOK_END;
}

/* ------------------------------------------------------------------ */
/* segments and commands */

static PbImapParseResult
continue_command(PbImapParser *p, gsize pos)
{
	Seg g = {p->line->str, p->line->len, pos, NULL, PB_IMAP_BAD_SYNTAX};

	switch (tokenize(p, &g)) {
	case TOK_ERROR:
		return bad_segment(p, g.kind, g.msg);
	case TOK_LITERAL:
		g_string_truncate(p->line, 0);
		p->state = S_LITERAL_WAIT;
		expose_command(p);
		return PB_IMAP_PARSE_LITERAL;
	case TOK_END:
		break;
	}
	if (p->stack->len > 1)
		return bad_segment(p, PB_IMAP_BAD_SYNTAX, "Missing ')'");
	expose_command(p);
	p->cmd_done = TRUE;
	return PB_IMAP_PARSE_COMMAND;
}

/* The first segment: tag SP name [SP arguments]. */
static PbImapParseResult
start_command(PbImapParser *p)
{
	const char *s = p->line->str;
	gsize len = p->line->len, pos, start;
	char *tag = tag_of(s, len, TRUE);

	if (tag == NULL)
		return bad_segment(p, PB_IMAP_BAD_SYNTAX, "Invalid tag");
	p->cmd.tag = tag;
	pos = strlen(tag);
	if (pos == len)
		return bad_segment(p, PB_IMAP_BAD_SYNTAX, "Missing command");
	start = ++pos;
	while (pos < len && is_atom_char(s[pos]))
		pos++;
	if (pos == start || (pos < len && s[pos] != ' '))
		return bad_segment(p, PB_IMAP_BAD_SYNTAX,
		                   "Invalid command name");
	p->cmd.name = g_strndup(s + start, pos - start);
	g_ptr_array_add(p->stack, args_new());
	p->in_command = TRUE;
	p->need_sep = TRUE;
	return continue_command(p, pos);
}

/* A segment is complete in p->line (without its CRLF). MORE: no event
 * (an empty line between commands is ignored). */
static PbImapParseResult
segment_done(PbImapParser *p)
{
	if (memchr(p->line->str, '\0', p->line->len) != NULL) {
		if (p->raw_line) {
			set_bad(p, PB_IMAP_BAD_SYNTAX, "NUL in a line", TRUE);
			p->raw_line = FALSE;
			return PB_IMAP_PARSE_BAD;
		}
		return bad_segment(p, PB_IMAP_BAD_SYNTAX, "NUL in a command");
	}
	if (p->raw_line) {
		p->raw_line = FALSE;
		p->cmd_done = TRUE;
		return PB_IMAP_PARSE_LINE;
	}
	if (p->in_command)
		return continue_command(p, 0);
	if (p->line->len == 0) {
		reset_command(p);
		return PB_IMAP_PARSE_MORE;
	}
	return start_command(p);
}

static PbImapParseResult
step_line(PbImapParser *p, const char *buf, gsize len, gsize *n)
{
	const char *lf = memchr(buf, '\n', len);
	gsize take = lf != NULL ? (gsize)(lf - buf) + 1 : len;

	if (!p->started) {
		p->started = TRUE;
		p->max = p->next_max;
		if (p->expect_line && !p->in_command) {
			p->expect_line = FALSE;
			p->raw_line = TRUE;
		}
	}
	if (p->used + take > p->max) {
		*n = p->max - p->used;
		g_string_append_len(p->line, buf, *n);
		p->used = p->max;
		return bad_midline(p, PB_IMAP_BAD_TOO_BIG, "Command too long");
	}
	g_string_append_len(p->line, buf, take);
	p->used += take;
	*n = take;
	if (lf == NULL)
		return PB_IMAP_PARSE_MORE;
	g_string_truncate(p->line, p->line->len - 1);
	if (p->line->len > 0 && p->line->str[p->line->len - 1] == '\r')
		g_string_truncate(p->line, p->line->len - 1);
	return segment_done(p);
}

static PbImapParseResult
step_literal(PbImapParser *p, const char *buf, gsize len, gsize *n)
{
	gsize take = MIN(len, p->lit_size - p->lit_got);
	PbImapArg a = {0};

	memcpy(p->lit_buf + p->lit_got, buf, take);
	p->lit_got += take;
	*n = take;
	if (memchr(buf, '\0', take) != NULL) {
		p->left = p->lit_size - p->lit_got;
		p->tail_len = 0;
		p->skip_literals = TRUE;
		set_bad(p, PB_IMAP_BAD_SYNTAX, "NUL in a literal", TRUE);
		p->state = p->left > 0 ? S_SKIP_LITERAL : S_SKIP_LINE;
		return PB_IMAP_PARSE_BAD;
	}
	if (p->lit_got < p->lit_size)
		return PB_IMAP_PARSE_MORE;
	a.type = PB_IMAP_ARG_LITERAL;
	a.literal8 = p->lit_8;
	a.len = p->lit_size;
	a.str = g_steal_pointer(&p->lit_buf);
	a.str[a.len] = '\0';
	push_arg(p, &a);
	p->state = S_LINE;
	return PB_IMAP_PARSE_MORE;
}

static PbImapParseResult
step_skip(PbImapParser *p, const char *buf, gsize len, gsize *n)
{
	const char *lf;

	if (p->state == S_SKIP_LITERAL) {
		*n = MIN(len, p->left);
		p->left -= *n;
		if (p->left == 0) {
			p->state = S_SKIP_LINE;
			p->tail_len = 0;
		}
		return PB_IMAP_PARSE_MORE;
	}
	lf = memchr(buf, '\n', len);
	*n = lf != NULL ? (gsize)(lf - buf) + 1 : len;
	tail_add(p, buf, lf != NULL ? (gsize)(lf - buf) : len);
	if (lf == NULL)
		return PB_IMAP_PARSE_MORE;
	if (p->tail_len > 0 && p->tail[p->tail_len - 1] == '\r')
		p->tail_len--;
	skip_line_done(p, p->tail, p->tail_len);
	return PB_IMAP_PARSE_MORE;
}

static PbImapParseResult
step(PbImapParser *p, const char *buf, gsize len, gsize *n)
{
	switch (p->state) {
	case S_LINE:
		return step_line(p, buf, len, n);
	case S_LITERAL:
		return step_literal(p, buf, len, n);
	case S_STREAM:
		*n = MIN(len, p->left);
		p->left -= *n;
		if (p->left == 0)
			p->state = S_STREAM_END;
		return PB_IMAP_PARSE_STREAM;
	case S_SKIP_LINE:
	case S_SKIP_LITERAL:
		return step_skip(p, buf, len, n);
	default:
		g_assert_not_reached();
	}
}

static void
stream_end(PbImapParser *p)
{
	PbImapArg a = {0};

	a.type = PB_IMAP_ARG_STREAM;
	a.literal8 = p->lit_8;
	a.len = p->lit_size;
	push_arg(p, &a);
	p->state = S_LINE;
}

PbImapParseResult
pb_imap_parser_feed(PbImapParser *p, const char *buf, gsize len,
                    gsize *consumed)
{
	gsize off = 0, n;

	*consumed = 0;
	g_return_val_if_fail(p->state != S_LITERAL_WAIT, PB_IMAP_PARSE_CLOSE);
	if (p->cmd_done)
		reset_command(p);
	for (;;) {
		PbImapParseResult r;

		if (p->state == S_CLOSED) {
			*consumed = off;
			p->closed_told = TRUE;
			return PB_IMAP_PARSE_CLOSE;
		}
		if (p->state == S_STREAM_END) {
			stream_end(p);
			*consumed = off;
			return PB_IMAP_PARSE_STREAM_END;
		}
		if (off == len)
			break;
		r = step(p, buf + off, len - off, &n);
		off += n;
		if (r != PB_IMAP_PARSE_MORE) {
			*consumed = off;
			return r;
		}
	}
	*consumed = off;
	return PB_IMAP_PARSE_MORE;
}

/* ------------------------------------------------------------------ */
/* literals: the caller's answer */

static PbImapLiteralReply
refuse(PbImapParser *p, const char *why)
{
	set_bad(p, PB_IMAP_BAD_TOO_BIG, why, TRUE);
	p->state = p->lit_sync ? S_LINE : S_CLOSED;
	return p->lit_sync ? PB_IMAP_LITERAL_REFUSED : PB_IMAP_LITERAL_CLOSE;
}

/* A {N+} refused for what the command means, not for its size: its
 * octets and the rest of its line are discarded (RFC 7888 4), unless N
 * is over MAX or, before login, over LITERAL-'s 4096. */
static PbImapLiteralReply
refuse_skip(PbImapParser *p, guint64 max, const char *why)
{
	if (p->lit_sync || p->lit_size > max ||
	    (!p->authenticated &&
	     p->lit_size > PB_IMAP_PARSER_MAX_LITERAL_MINUS))
		return refuse(p, p->lit_sync ? why : "Literal too big");
	set_bad(p, PB_IMAP_BAD_SYNTAX, why, TRUE);
	p->left = p->lit_size;
	p->tail_len = 0;
	p->skip_literals = TRUE;
	p->state = p->left > 0 ? S_SKIP_LITERAL : S_SKIP_LINE;
	return PB_IMAP_LITERAL_REFUSED;
}

PbImapLiteralReply
pb_imap_parser_literal_refuse(PbImapParser *p)
{
	g_return_val_if_fail(p->state == S_LITERAL_WAIT, PB_IMAP_LITERAL_CLOSE);
	return refuse_skip(p, p->max, "Literal refused");
}

PbImapLiteralReply
pb_imap_parser_literal_skip(PbImapParser *p, guint64 max)
{
	g_return_val_if_fail(p->state == S_LITERAL_WAIT, PB_IMAP_LITERAL_CLOSE);
	return refuse_skip(p, max, "Literal refused");
}

PbImapLiteralReply
pb_imap_parser_literal_accept(PbImapParser *p)
{
	g_return_val_if_fail(p->state == S_LITERAL_WAIT, PB_IMAP_LITERAL_CLOSE);
	if (p->lit_size > p->max - p->used ||
	    (!p->lit_sync && !p->authenticated &&
	     p->lit_size > PB_IMAP_PARSER_MAX_LITERAL_MINUS))
		return refuse(p, "Literal too big");
	p->used += p->lit_size;
	p->lit_buf = g_malloc(p->lit_size + 1);
	p->lit_got = 0;
	p->state = S_LITERAL;
	if (p->lit_size == 0)
		step_literal(p, "", 0, &(gsize){0});
	return p->lit_sync ? PB_IMAP_LITERAL_SEND_PLUS : PB_IMAP_LITERAL_FEED;
}

PbImapLiteralReply
pb_imap_parser_literal_stream(PbImapParser *p)
{
	g_return_val_if_fail(p->state == S_LITERAL_WAIT, PB_IMAP_LITERAL_CLOSE);
	p->left = p->lit_size;
	p->state = p->left > 0 ? S_STREAM : S_STREAM_END;
	return p->lit_sync ? PB_IMAP_LITERAL_SEND_PLUS : PB_IMAP_LITERAL_FEED;
}

/* ================================================================== */
/* typed helpers */

static gboolean G_GNUC_PRINTF(2, 3) fail(GError **error, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *msg = NULL;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error_literal(error, PB_ERROR, PB_ERROR_DATA, msg);
	return FALSE;
}

/* ASTRING-CHAR: ATOM-CHAR or "]" (strict: no wildcards, "\" or 8-bit) */
static gboolean
astring_chars(const char *s, gsize len)
{
	if (len == 0)
		return FALSE;
	for (gsize i = 0; i < len; i++)
		if (!is_atom_char(s[i]) && s[i] != ']')
			return FALSE;
	return TRUE;
}

gboolean
pb_imap_arg_is_atom(const PbImapArg *arg, const char *word)
{
	return arg != NULL && arg->type == PB_IMAP_ARG_ATOM &&
	       g_ascii_strcasecmp(arg->str, word) == 0;
}

gboolean
pb_imap_arg_string(const PbImapArg *arg, const char **s, gsize *len)
{
	if (arg == NULL || (arg->type != PB_IMAP_ARG_QUOTED &&
	                    arg->type != PB_IMAP_ARG_LITERAL))
		return FALSE;
	*s = arg->str;
	if (len != NULL)
		*len = arg->len;
	return TRUE;
}

gboolean
pb_imap_arg_astring(const PbImapArg *arg, const char **s, gsize *len)
{
	if (arg != NULL && arg->type == PB_IMAP_ARG_ATOM &&
	    astring_chars(arg->str, arg->len)) {
		*s = arg->str;
		if (len != NULL)
			*len = arg->len;
		return TRUE;
	}
	return pb_imap_arg_string(arg, s, len);
}

gboolean
pb_imap_arg_nstring(const PbImapArg *arg, const char **s, gsize *len)
{
	if (arg != NULL && arg->type == PB_IMAP_ARG_NIL) {
		*s = NULL;
		if (len != NULL)
			*len = 0;
		return TRUE;
	}
	return pb_imap_arg_string(arg, s, len);
}

gboolean
pb_imap_arg_mailbox(const PbImapArg *arg, char **name, GError **error)
{
	const char *s;
	gsize len;

	/* NIL is an atom to astring's grammar: a mailbox may be named so */
	if (arg != NULL && arg->type == PB_IMAP_ARG_NIL)
		s = arg->str, len = arg->len;
	else if (!pb_imap_arg_astring(arg, &s, &len))
		return fail(error, "Invalid mailbox name");
	*name = g_strndup(s, len);
	/* "inbox" and "inbox.x" are INBOX and its child (as Dovecot has it) */
	if (len >= 5 && (len == 5 || s[5] == '.') &&
	    g_ascii_strncasecmp(s, "INBOX", 5) == 0)
		memcpy(*name, "INBOX", 5);
	return TRUE;
}

/* ----- sequence sets ----- */

void
pb_imap_seqset_free(PbImapSeqSet *set)
{
	if (set == NULL)
		return;
	g_free(set->ranges);
	g_free(set);
}

/* nz-number or "*" (0) at S[*I] */
static gboolean
seq_number(const char *s, gsize len, gsize *i, guint32 *n)
{
	guint64 v = 0;
	gsize start = *i;

	if (*i < len && s[*i] == '*') {
		(*i)++;
		*n = 0;
		return TRUE;
	}
	if (*i >= len || s[*i] < '1' || s[*i] > '9')
		return FALSE;
	while (*i < len && g_ascii_isdigit(s[*i]) && *i - start < 10)
		v = v * 10 + (guint64)(s[(*i)++] - '0');
	if (v > G_MAXUINT32 || (*i < len && g_ascii_isdigit(s[*i])))
		return FALSE;
	*n = (guint32)v;
	return TRUE;
}

PbImapSeqSet *
pb_imap_seqset_parse(const char *s, gsize len, GError **error)
{
	g_autoptr(GArray) ranges =
	    g_array_new(FALSE, FALSE, sizeof(PbImapRange));
	PbImapSeqSet *set;
	gsize i = 0;

	for (;;) {
		PbImapRange r;

		if (!seq_number(s, len, &i, &r.lo))
			break;
		r.hi = r.lo;
		if (i < len && s[i] == ':' &&
		    (i++, !seq_number(s, len, &i, &r.hi)))
			break;
		g_array_append_val(ranges, r);
		if (i == len) {
			set = g_new0(PbImapSeqSet, 1);
			set->n = ranges->len;
			set->ranges = (PbImapRange *)(void *)g_array_free(
			    g_steal_pointer(&ranges), FALSE);
			return set;
		}
		if (s[i++] != ',')
			break;
	}
	fail(error, "Invalid sequence set");
	return NULL;
}

gboolean
pb_imap_arg_seqset(const PbImapArg *arg, PbImapSeqSet **set, GError **error)
{
	if (arg == NULL || arg->type != PB_IMAP_ARG_ATOM)
		return fail(error, "Invalid sequence set");
	*set = pb_imap_seqset_parse(arg->str, arg->len, error);
	return *set != NULL;
}

guint32
pb_imap_seqset_max(const PbImapSeqSet *set)
{
	guint32 m = 0;

	for (guint i = 0; i < set->n; i++)
		m = MAX(m, MAX(set->ranges[i].lo, set->ranges[i].hi));
	return m;
}

static int
range_cmp(const void *a, const void *b)
{
	const PbImapRange *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

PbImapSeqSet *
pb_imap_seqset_resolve(const PbImapSeqSet *set, guint32 max)
{
	PbImapSeqSet *r = g_new0(PbImapSeqSet, 1);
	guint k = 0;

	r->ranges = g_new(PbImapRange, set->n + 1);
	for (guint i = 0; i < set->n && max > 0; i++) {
		guint32 lo = set->ranges[i].lo ? set->ranges[i].lo : max;
		guint32 hi = set->ranges[i].hi ? set->ranges[i].hi : max;

		if (lo > hi) {
			guint32 t = lo;
			lo = hi;
			hi = t;
		}
		if (lo > max)
			continue;
		r->ranges[r->n].lo = lo;
		r->ranges[r->n++].hi = MIN(hi, max);
	}
	qsort(r->ranges, r->n, sizeof(PbImapRange), range_cmp);
	for (guint i = 0; i < r->n; i++) {
		if (k > 0 &&
		    (guint64)r->ranges[k - 1].hi + 1 >= r->ranges[i].lo)
			r->ranges[k - 1].hi =
			    MAX(r->ranges[k - 1].hi, r->ranges[i].hi);
		else
			r->ranges[k++] = r->ranges[i];
	}
	r->n = k;
	return r;
}

gboolean
pb_imap_seqset_contains(const PbImapSeqSet *resolved, guint32 n)
{
	guint lo = 0, hi = resolved->n;

	while (lo < hi) {
		guint mid = lo + (hi - lo) / 2;

		if (n < resolved->ranges[mid].lo)
			hi = mid;
		else if (n > resolved->ranges[mid].hi)
			lo = mid + 1;
		else
			return TRUE;
	}
	return FALSE;
}

guint64
pb_imap_seqset_count(const PbImapSeqSet *resolved)
{
	guint64 c = 0;

	for (guint i = 0; i < resolved->n; i++)
		c += (guint64)resolved->ranges[i].hi - resolved->ranges[i].lo +
		     1;
	return c;
}

void
pb_imap_seqset_iter_init(PbImapSeqIter *it, const PbImapSeqSet *resolved)
{
	it->set = resolved;
	it->i = 0;
	it->next = resolved->n > 0 ? resolved->ranges[0].lo : 0;
}

gboolean
pb_imap_seqset_iter_next(PbImapSeqIter *it, guint32 *n)
{
	if (it->i >= it->set->n)
		return FALSE;
	*n = (guint32)it->next;
	if (it->next < it->set->ranges[it->i].hi)
		it->next++;
	else if (++it->i < it->set->n)
		it->next = it->set->ranges[it->i].lo;
	return TRUE;
}

/* ----- flags ----- */

static const struct {
	const char *name;
	guint bit;
} system_flags[] = {
    {"\\Seen", PB_IMAP_FLAG_SEEN},       {"\\Answered", PB_IMAP_FLAG_ANSWERED},
    {"\\Flagged", PB_IMAP_FLAG_FLAGGED}, {"\\Deleted", PB_IMAP_FLAG_DELETED},
    {"\\Draft", PB_IMAP_FLAG_DRAFT},     {"\\Recent", PB_IMAP_FLAG_RECENT},
};

void
pb_imap_flags_clear(PbImapFlags *flags)
{
	g_clear_pointer(&flags->keywords, g_ptr_array_unref);
	flags->system = 0;
}

gboolean
pb_imap_keyword_valid(const char *s, gsize len)
{
	if (len == 0)
		return FALSE;
	for (gsize i = 0; i < len; i++)
		if (!is_atom_char(s[i]))
			return FALSE;
	return TRUE;
}

static gboolean
add_flag(PbImapFlags *flags, GHashTable *seen, const PbImapArg *a,
         GError **error)
{
	g_autofree char *folded = NULL;

	if (a->type != PB_IMAP_ARG_ATOM)
		return fail(error, "Invalid flag");
	if (a->str[0] == '\\') {
		for (guint i = 0; i < G_N_ELEMENTS(system_flags); i++)
			if (g_ascii_strcasecmp(a->str, system_flags[i].name) ==
			    0) {
				flags->system |= system_flags[i].bit;
				return TRUE;
			}
		return fail(error, "Unknown system flag");
	}
	if (!pb_imap_keyword_valid(a->str, a->len))
		return fail(error, "Invalid keyword");
	folded = g_ascii_strdown(a->str, a->len);
	if (g_hash_table_contains(seen, folded))
		return TRUE;
	g_hash_table_add(seen, g_steal_pointer(&folded));
	if (flags->keywords == NULL)
		flags->keywords = g_ptr_array_new_with_free_func(g_free);
	g_ptr_array_add(flags->keywords, g_strdup(a->str));
	return TRUE;
}

gboolean
pb_imap_args_flags(const PbImapArg *args, guint n, PbImapFlags *flags,
                   GError **error)
{
	g_autoptr(GHashTable) seen =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

	memset(flags, 0, sizeof(*flags));
	for (guint i = 0; i < n; i++)
		if (!add_flag(flags, seen, &args[i], error)) {
			pb_imap_flags_clear(flags);
			return FALSE;
		}
	return TRUE;
}

gboolean
pb_imap_arg_flag_list(const PbImapArg *arg, PbImapFlags *flags, GError **error)
{
	memset(flags, 0, sizeof(*flags));
	if (arg == NULL || arg->type != PB_IMAP_ARG_LIST)
		return fail(error, "Flag list expected");
	return pb_imap_args_flags(arg->list, arg->n, flags, error);
}

void
pb_imap_store_clear(PbImapStore *store)
{
	pb_imap_flags_clear(&store->flags);
}

gboolean
pb_imap_args_store(const PbImapArg *args, guint n, PbImapStore *store,
                   GError **error)
{
	const char *item;

	memset(store, 0, sizeof(*store));
	if (n < 2 || args[0].type != PB_IMAP_ARG_ATOM)
		return fail(error, "STORE needs an item and flags");
	item = args[0].str;
	if (*item == '+' || *item == '-')
		store->mode =
		    *item++ == '+' ? PB_IMAP_STORE_ADD : PB_IMAP_STORE_REMOVE;
	if (g_ascii_strcasecmp(item, "FLAGS.SILENT") == 0)
		store->silent = TRUE;
	else if (g_ascii_strcasecmp(item, "FLAGS") != 0)
		return fail(error, "Unknown STORE item");
	if (n == 2 && args[1].type == PB_IMAP_ARG_LIST)
		return pb_imap_arg_flag_list(&args[1], &store->flags, error);
	return pb_imap_args_flags(args + 1, n - 1, &store->flags, error);
}

/* ----- dates ----- */

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static guint
days_in_month(guint year, guint month)
{
	static const guint8 d[] = {31, 28, 31, 30, 31, 30,
	                           31, 31, 30, 31, 30, 31};
	gboolean leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : d[month - 1];
}

/* N digits at S[*I] (exactly MIN_N..MAX_N of them). */
static gboolean
digits(const char *s, gsize len, gsize *i, guint min_n, guint max_n, guint *v)
{
	guint k = 0;

	*v = 0;
	while (*i < len && k < max_n && g_ascii_isdigit(s[*i])) {
		*v = *v * 10 + (guint)(s[(*i)++] - '0');
		k++;
	}
	return k >= min_n && !(*i < len && g_ascii_isdigit(s[*i]));
}

/* "d-Mon-yyyy" at S[*I]; a leading space stands for a tens digit. */
static gboolean
date_text(const char *s, gsize len, gsize *i, PbImapDate *d)
{
	guint m;

	if (*i < len && s[*i] == ' ')
		(*i)++;
	if (!digits(s, len, i, 1, 2, &d->day) || *i + 5 > len || s[*i] != '-')
		return FALSE;
	for (m = 0; m < 12; m++)
		if (g_ascii_strncasecmp(s + *i + 1, months[m], 3) == 0)
			break;
	if (m == 12 || s[*i + 4] != '-')
		return FALSE;
	*i += 5;
	d->month = m + 1;
	if (!digits(s, len, i, 4, 4, &d->year) || d->year == 0)
		return FALSE;
	return d->day >= 1 && d->day <= days_in_month(d->year, d->month);
}

gboolean
pb_imap_parse_date(const char *s, gsize len, PbImapDate *date)
{
	gsize i = 0;

	return len > 0 && s[0] != ' ' && date_text(s, len, &i, date) &&
	       i == len;
}

gint64
pb_imap_date_days(const PbImapDate *date)
{
	/* days from civil (the proleptic Gregorian calendar) */
	gint64 y = (gint64)date->year - (date->month <= 2);
	gint64 era = (y >= 0 ? y : y - 399) / 400;
	gint64 yoe = y - era * 400;
	gint64 mp = (date->month + 9) % 12;
	gint64 doy = (153 * mp + 2) / 5 + date->day - 1;
	gint64 doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

gboolean
pb_imap_arg_date(const PbImapArg *arg, PbImapDate *date, GError **error)
{
	const char *s;
	gsize len;

	if (!pb_imap_arg_astring(arg, &s, &len) ||
	    !pb_imap_parse_date(s, len, date))
		return fail(error, "Invalid date");
	return TRUE;
}

gboolean
pb_imap_parse_date_time(const char *s, gsize len, gint64 *utc, int *zone)
{
	PbImapDate d;
	guint h, m, sec, z;
	gsize i = 0;
	int sign;

	if (!date_text(s, len, &i, &d) || i >= len || s[i++] != ' ' ||
	    !digits(s, len, &i, 2, 2, &h) || i >= len || s[i++] != ':' ||
	    !digits(s, len, &i, 2, 2, &m) || i >= len || s[i++] != ':' ||
	    !digits(s, len, &i, 2, 2, &sec) || i + 1 >= len || s[i++] != ' ' ||
	    (s[i] != '+' && s[i] != '-'))
		return FALSE;
	sign = s[i++] == '-' ? -1 : 1;
	if (!digits(s, len, &i, 4, 4, &z) || i != len || h > 23 || m > 59 ||
	    sec > 60 || z % 100 > 59)
		return FALSE;
	if (utc != NULL)
		*utc = pb_imap_date_days(&d) * 86400 + h * 3600 + m * 60 + sec -
		       sign * (gint64)((z / 100) * 3600 + (z % 100) * 60);
	if (zone != NULL)
		*zone = sign * (int)((z / 100) * 60 + z % 100);
	return TRUE;
}

gboolean
pb_imap_arg_date_time(const PbImapArg *arg, gint64 *utc, int *zone,
                      GError **error)
{
	const char *s;
	gsize len;

	if (!pb_imap_arg_string(arg, &s, &len) ||
	    !pb_imap_parse_date_time(s, len, utc, zone))
		return fail(error, "Invalid date-time");
	return TRUE;
}

/* ----- FETCH ----- */

static void
fetch_body_clear(PbImapFetchBody *b)
{
	g_free(b->name);
	g_free(b->part);
	g_strfreev(b->fields);
}

void
pb_imap_fetch_free(PbImapFetch *fetch)
{
	if (fetch == NULL)
		return;
	for (guint i = 0; i < fetch->n_bodies; i++)
		fetch_body_clear(&fetch->bodies[i]);
	g_free(fetch->bodies);
	g_free(fetch);
}

/* header-list: "(" name *(SP name) ")" with names as atoms or quoted
 * strings; S[*I] is at "(". SHOWN gets the list as the response shows
 * it: upper case, quoted where the client quoted (as Dovecot does). */
static gboolean
header_list(const char *s, gsize len, gsize *i, GPtrArray *fields,
            GString *shown)
{
	if (*i >= len || s[(*i)++] != '(')
		return FALSE;
	for (;;) {
		g_autoptr(GString) name = g_string_new(NULL);
		gboolean quoted = *i < len && s[*i] == '"';

		if (quoted) {
			for ((*i)++; *i < len && s[*i] != '"'; (*i)++) {
				if (s[*i] == '\\' && *i + 1 < len)
					(*i)++;
				g_string_append_c(name, s[*i]);
			}
			if ((*i)++ >= len)
				return FALSE;
		} else
			while (*i < len && is_atom_char(s[*i]))
				g_string_append_c(name, s[(*i)++]);
		for (gsize k = 0; k < name->len; k++)
			if ((guchar)name->str[k] <= ' ' ||
			    name->str[k] == ':' || (guchar)name->str[k] >= 0x7f)
				return FALSE;
		if (name->len == 0 || *i >= len)
			return FALSE;
		g_ptr_array_add(fields, g_ascii_strup(name->str, name->len));
		g_string_append_c(shown, fields->len > 1 ? ' ' : '(');
		if (quoted)
			pb_imap_append_string(
			    shown, fields->pdata[fields->len - 1], name->len);
		else
			g_string_append(shown, fields->pdata[fields->len - 1]);
		if (s[*i] == ')')
			return ++*i, TRUE;
		if (s[(*i)++] != ' ')
			return FALSE;
	}
}

/* section-text after the part numbers (S[*I..]), up to "]" excluded. */
static gboolean
section_text(const char *s, gsize len, gsize *i, PbImapFetchBody *b,
             GString *shown)
{
	static const struct {
		const char *word;
		PbImapSectionKind kind;
	} texts[] = {
	    {"HEADER.FIELDS.NOT ", PB_IMAP_SECTION_HEADER_FIELDS_NOT},
	    {"HEADER.FIELDS ", PB_IMAP_SECTION_HEADER_FIELDS},
	    {"HEADER", PB_IMAP_SECTION_HEADER},
	    {"TEXT", PB_IMAP_SECTION_TEXT},
	    {"MIME", PB_IMAP_SECTION_MIME},
	};
	g_autoptr(GPtrArray) fields = NULL;

	for (guint k = 0; k < G_N_ELEMENTS(texts); k++) {
		gsize wl = strlen(texts[k].word);

		if (len - *i < wl ||
		    g_ascii_strncasecmp(s + *i, texts[k].word, wl))
			continue;
		*i += wl;
		b->kind = texts[k].kind;
		if (b->kind == PB_IMAP_SECTION_MIME && b->n_part == 0)
			return FALSE;
		if (b->kind != PB_IMAP_SECTION_HEADER_FIELDS &&
		    b->kind != PB_IMAP_SECTION_HEADER_FIELDS_NOT)
			return TRUE;
		fields = g_ptr_array_new_with_free_func(g_free);
		if (!header_list(s, len, i, fields, shown))
			return FALSE;
		g_ptr_array_add(fields, NULL);
		b->fields =
		    (char **)g_ptr_array_free(g_steal_pointer(&fields), FALSE);
		return TRUE;
	}
	return FALSE;
}

/* The section between "[" and "]": S/LEN, "]" excluded. */
static gboolean
section_spec(const char *s, gsize len, PbImapFetchBody *b, GString *shown)
{
	g_autoptr(GArray) part = g_array_new(FALSE, FALSE, sizeof(guint32));
	gsize i = 0;

	b->kind = PB_IMAP_SECTION_WHOLE;
	while (i < len && g_ascii_isdigit(s[i])) {
		guint32 n;

		if (!seq_number(s, len, &i, &n) ||
		    part->len >= PB_IMAP_FETCH_MAX_PART_DEPTH)
			return FALSE;
		g_array_append_val(part, n);
		if (i == len)
			break;
		if (s[i++] != '.')
			return FALSE;
	}
	b->n_part = part->len;
	b->part =
	    b->n_part > 0
	        ? (guint32 *)(void *)g_array_free(g_steal_pointer(&part), FALSE)
	        : NULL;
	if (i == len)
		return len == 0 || s[len - 1] != '.';
	return section_text(s, len, &i, b, shown) && i == len;
}

/* "BODY[" canonical section "]" and "<offset>" for the response */
static char *
body_name(const PbImapFetchBody *b, const GString *fields)
{
	static const char *const kinds[] = {
	    "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"};
	GString *n = g_string_new("BODY[");

	for (guint i = 0; i < b->n_part; i++)
		g_string_append_printf(n, "%s%u", i ? "." : "", b->part[i]);
	if (b->n_part > 0 && b->kind != PB_IMAP_SECTION_WHOLE)
		g_string_append_c(n, '.');
	g_string_append(n, kinds[b->kind]);
	if (b->fields != NULL)
		g_string_append_printf(n, " %s)", fields->str);
	g_string_append_c(n, ']');
	if (b->partial)
		g_string_append_printf(n, "<%u>", b->offset);
	return g_string_free(n, FALSE);
}

/* "<" number "." nz-number ">" ending the atom */
static gboolean
partial_spec(const char *s, gsize len, PbImapFetchBody *b)
{
	gsize i = 1;
	guint32 o = 0;

	if (len == 0)
		return TRUE;
	if (s[0] != '<' || s[len - 1] != '>')
		return FALSE;
	if (i < len && s[i] == '0' && i + 1 < len && s[i + 1] == '.')
		i++;
	else if (!seq_number(s, len, &i, &o) || o == 0)
		return FALSE;
	if (i >= len || s[i++] != '.' || !seq_number(s, len, &i, &b->length) ||
	    b->length == 0 || i != len - 1)
		return FALSE;
	b->partial = TRUE;
	b->offset = o;
	return TRUE;
}

/* BODY[...]<...> / BODY.PEEK[...]<...> */
static gboolean
fetch_section(const char *s, gsize len, PbImapFetchBody *b)
{
	const char *open = memchr(s, '[', len), *close;
	g_autoptr(GString) fields = g_string_new(NULL);

	b->peek = open - s == 9;
	close = s + len;
	while (close > open && *close != ']')
		close--;
	if (close == open ||
	    !section_spec(open + 1, (gsize)(close - open - 1), b, fields) ||
	    !partial_spec(close + 1, len - (gsize)(close + 1 - s), b))
		return FALSE;
	b->name = body_name(b, fields);
	return TRUE;
}

static gboolean
fetch_legacy(const char *s, PbImapFetchBody *b)
{
	if (g_ascii_strcasecmp(s, "RFC822") == 0)
		b->kind = PB_IMAP_SECTION_WHOLE;
	else if (g_ascii_strcasecmp(s, "RFC822.HEADER") == 0) {
		b->kind = PB_IMAP_SECTION_HEADER;
		b->peek = TRUE;
	} else if (g_ascii_strcasecmp(s, "RFC822.TEXT") == 0)
		b->kind = PB_IMAP_SECTION_TEXT;
	else
		return FALSE;
	b->name = g_ascii_strup(s, -1);
	return TRUE;
}

static const struct {
	const char *name;
	guint items;
} fetch_simple[] = {
    {"FLAGS", PB_IMAP_FETCH_FLAGS},
    {"UID", PB_IMAP_FETCH_UID},
    {"INTERNALDATE", PB_IMAP_FETCH_INTERNALDATE},
    {"RFC822.SIZE", PB_IMAP_FETCH_RFC822_SIZE},
    {"ENVELOPE", PB_IMAP_FETCH_ENVELOPE},
    {"BODY", PB_IMAP_FETCH_BODY},
    {"BODYSTRUCTURE", PB_IMAP_FETCH_BODYSTRUCTURE},
};

static gboolean
fetch_att(PbImapFetch *f, GArray *bodies, const PbImapArg *a, GError **error)
{
	PbImapFetchBody b = {0};

	if (a->type != PB_IMAP_ARG_ATOM)
		return fail(error, "Invalid FETCH attribute");
	for (guint i = 0; i < G_N_ELEMENTS(fetch_simple); i++)
		if (g_ascii_strcasecmp(a->str, fetch_simple[i].name) == 0) {
			f->items |= fetch_simple[i].items;
			return TRUE;
		}
	if (fetch_legacy(a->str, &b) ||
	    (strchr(a->str, '[') != NULL &&
	     section_atom(a->str, strcspn(a->str, "[")) &&
	     fetch_section(a->str, a->len, &b))) {
		g_array_append_val(bodies, b);
		return TRUE;
	}
	fetch_body_clear(&b);
	return fail(error, "Invalid FETCH attribute");
}

gboolean
pb_imap_arg_fetch(const PbImapArg *arg, PbImapFetch **fetch, GError **error)
{
	static const struct {
		const char *name;
		guint items;
	} macros[] = {
	    {"ALL", PB_IMAP_FETCH_FLAGS | PB_IMAP_FETCH_INTERNALDATE |
	                PB_IMAP_FETCH_RFC822_SIZE | PB_IMAP_FETCH_ENVELOPE},
	    {"FAST", PB_IMAP_FETCH_FLAGS | PB_IMAP_FETCH_INTERNALDATE |
	                 PB_IMAP_FETCH_RFC822_SIZE},
	    {"FULL", PB_IMAP_FETCH_FLAGS | PB_IMAP_FETCH_INTERNALDATE |
	                 PB_IMAP_FETCH_RFC822_SIZE | PB_IMAP_FETCH_ENVELOPE |
	                 PB_IMAP_FETCH_BODY},
	};
	g_autoptr(PbImapFetch) f = g_new0(PbImapFetch, 1);
	g_autoptr(GArray) bodies =
	    g_array_new(FALSE, TRUE, sizeof(PbImapFetchBody));
	const PbImapArg *atts = arg;
	guint n = 1;
	gboolean ok = TRUE;

	for (guint i = 0; arg != NULL && i < G_N_ELEMENTS(macros); i++)
		if (pb_imap_arg_is_atom(arg, macros[i].name)) {
			f->items = macros[i].items;
			*fetch = g_steal_pointer(&f);
			return TRUE;
		}
	if (arg == NULL || (arg->type == PB_IMAP_ARG_LIST && arg->n == 0))
		return fail(error, "FETCH attributes expected");
	if (arg->type == PB_IMAP_ARG_LIST)
		atts = arg->list, n = arg->n;
	for (guint i = 0; i < n && ok; i++)
		ok = fetch_att(f, bodies, &atts[i], error);
	f->n_bodies = bodies->len;
	f->bodies = (PbImapFetchBody *)(void *)g_array_free(
	    g_steal_pointer(&bodies), FALSE);
	if (!ok)
		return FALSE;
	*fetch = g_steal_pointer(&f);
	return TRUE;
}

/* ----- SEARCH ----- */

typedef enum {
	A_NONE,
	A_STRING,
	A_HEADER,
	A_DATE,
	A_NUMBER,
	A_KEYWORD,
	A_SET,
} KeyArg;

static const struct {
	const char *name;
	PbImapSearchKeyType type;
	KeyArg arg;
	gboolean negate;
	const char *field;
} search_keys[] = {
    {"ALL", PB_IMAP_SKEY_ALL, A_NONE, FALSE, NULL},
    {"ANSWERED", PB_IMAP_SKEY_ANSWERED, A_NONE, FALSE, NULL},
    {"DELETED", PB_IMAP_SKEY_DELETED, A_NONE, FALSE, NULL},
    {"DRAFT", PB_IMAP_SKEY_DRAFT, A_NONE, FALSE, NULL},
    {"FLAGGED", PB_IMAP_SKEY_FLAGGED, A_NONE, FALSE, NULL},
    {"SEEN", PB_IMAP_SKEY_SEEN, A_NONE, FALSE, NULL},
    {"RECENT", PB_IMAP_SKEY_RECENT, A_NONE, FALSE, NULL},
    {"UNANSWERED", PB_IMAP_SKEY_ANSWERED, A_NONE, TRUE, NULL},
    {"UNDELETED", PB_IMAP_SKEY_DELETED, A_NONE, TRUE, NULL},
    {"UNDRAFT", PB_IMAP_SKEY_DRAFT, A_NONE, TRUE, NULL},
    {"UNFLAGGED", PB_IMAP_SKEY_FLAGGED, A_NONE, TRUE, NULL},
    {"UNSEEN", PB_IMAP_SKEY_SEEN, A_NONE, TRUE, NULL},
    {"OLD", PB_IMAP_SKEY_RECENT, A_NONE, TRUE, NULL},
    {"KEYWORD", PB_IMAP_SKEY_KEYWORD, A_KEYWORD, FALSE, NULL},
    {"UNKEYWORD", PB_IMAP_SKEY_KEYWORD, A_KEYWORD, TRUE, NULL},
    {"BCC", PB_IMAP_SKEY_HEADER, A_STRING, FALSE, "BCC"},
    {"CC", PB_IMAP_SKEY_HEADER, A_STRING, FALSE, "CC"},
    {"FROM", PB_IMAP_SKEY_HEADER, A_STRING, FALSE, "FROM"},
    {"SUBJECT", PB_IMAP_SKEY_HEADER, A_STRING, FALSE, "SUBJECT"},
    {"TO", PB_IMAP_SKEY_HEADER, A_STRING, FALSE, "TO"},
    {"HEADER", PB_IMAP_SKEY_HEADER, A_HEADER, FALSE, NULL},
    {"BODY", PB_IMAP_SKEY_BODY, A_STRING, FALSE, NULL},
    {"TEXT", PB_IMAP_SKEY_TEXT, A_STRING, FALSE, NULL},
    {"BEFORE", PB_IMAP_SKEY_BEFORE, A_DATE, FALSE, NULL},
    {"ON", PB_IMAP_SKEY_ON, A_DATE, FALSE, NULL},
    {"SINCE", PB_IMAP_SKEY_SINCE, A_DATE, FALSE, NULL},
    {"SENTBEFORE", PB_IMAP_SKEY_SENTBEFORE, A_DATE, FALSE, NULL},
    {"SENTON", PB_IMAP_SKEY_SENTON, A_DATE, FALSE, NULL},
    {"SENTSINCE", PB_IMAP_SKEY_SENTSINCE, A_DATE, FALSE, NULL},
    {"LARGER", PB_IMAP_SKEY_LARGER, A_NUMBER, FALSE, NULL},
    {"SMALLER", PB_IMAP_SKEY_SMALLER, A_NUMBER, FALSE, NULL},
    {"UID", PB_IMAP_SKEY_UID, A_SET, FALSE, NULL},
};

typedef struct {
	const PbImapArg *a;
	guint n;
	guint i;
	GError **error;
} SArgs;

static void
skey_free(PbImapSearchKey *k)
{
	if (k == NULL)
		return;
	for (guint i = 0; i < k->n_children; i++)
		skey_free(k->children[i]);
	g_free(k->children);
	g_free(k->field);
	g_free(k->str);
	pb_imap_seqset_free(k->set);
	g_free(k);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbImapSearchKey, skey_free)

static PbImapSearchKey *
skey_new(PbImapSearchKeyType type)
{
	PbImapSearchKey *k = g_new0(PbImapSearchKey, 1);

	k->type = type;
	return k;
}

static void
skey_add(PbImapSearchKey *parent, PbImapSearchKey *child)
{
	parent->children = g_renew(PbImapSearchKey *, parent->children,
	                           parent->n_children + 1);
	parent->children[parent->n_children++] = child;
}

static PbImapSearchKey *
skey_not(PbImapSearchKey *child)
{
	PbImapSearchKey *k = skey_new(PB_IMAP_SKEY_NOT);

	skey_add(k, child);
	return k;
}

static PbImapSearchKey *search_key(SArgs *c, guint depth);

static PbImapSearchKey *
search_group(const PbImapArg *args, guint n, guint depth, GError **error)
{
	SArgs c = {args, n, 0, error};
	g_autoptr(PbImapSearchKey) and = skey_new(PB_IMAP_SKEY_AND);

	if (n == 0) {
		fail(error, "Empty search key list");
		return NULL;
	}
	while (c.i < n) {
		PbImapSearchKey *k = search_key(&c, depth);

		if (k == NULL)
			return NULL;
		skey_add(and, k);
	}
	if (and->n_children == 1) {
		PbImapSearchKey *only = and->children[0];

		and->n_children = 0;
		return only;
	}
	return g_steal_pointer(&and);
}

/* The argument of a table key, at c->a[c->i]. */
static gboolean
key_arg(SArgs *c, PbImapSearchKey *k, KeyArg kind)
{
	const PbImapArg *a = c->i < c->n ? &c->a[c->i++] : NULL;
	const char *s;
	gsize len;

	switch (kind) {
	case A_NONE:
		c->i -= a != NULL;
		return TRUE;
	case A_STRING:
		if (!pb_imap_arg_astring(a, &s, &len))
			return fail(c->error, "Search string expected");
		k->str = g_strndup(s, len);
		k->len = len;
		return TRUE;
	case A_HEADER:
		if (!pb_imap_arg_astring(a, &s, &len))
			return fail(c->error, "Header field name expected");
		k->field = g_ascii_strup(s, len);
		return key_arg(c, k, A_STRING);
	case A_DATE:
		return pb_imap_arg_date(a, &k->date, c->error);
	case A_NUMBER:
		if (a == NULL || a->type != PB_IMAP_ARG_ATOM ||
		    !g_ascii_isdigit(a->str[0]) ||
		    !g_ascii_string_to_unsigned(a->str, 10, 0, G_MAXUINT64,
		                                &k->number, NULL))
			return fail(c->error, "Number expected");
		return TRUE;
	case A_KEYWORD:
		if (a == NULL || a->type != PB_IMAP_ARG_ATOM ||
		    !pb_imap_keyword_valid(a->str, a->len))
			return fail(c->error, "Keyword expected");
		k->str = g_strndup(a->str, a->len);
		k->len = a->len;
		return TRUE;
	case A_SET:
		return pb_imap_arg_seqset(a, &k->set, c->error);
	}
	return FALSE;
}

static PbImapSearchKey *
table_key(SArgs *c, const PbImapArg *a)
{
	for (guint i = 0; i < G_N_ELEMENTS(search_keys); i++) {
		g_autoptr(PbImapSearchKey) k = NULL;

		if (g_ascii_strcasecmp(a->str, search_keys[i].name) != 0)
			continue;
		k = skey_new(search_keys[i].type);
		k->field = g_strdup(search_keys[i].field);
		if (!key_arg(c, k, search_keys[i].arg))
			return NULL;
		return search_keys[i].negate ? skey_not(g_steal_pointer(&k))
		                             : g_steal_pointer(&k);
	}
	fail(c->error, "Unknown search key");
	return NULL;
}

static PbImapSearchKey *
search_key(SArgs *c, guint depth)
{
	const PbImapArg *a;
	g_autoptr(PbImapSearchKey) k = NULL;

	if (depth >= PB_IMAP_SEARCH_MAX_DEPTH) {
		fail(c->error, "Search program nested too deep");
		return NULL;
	}
	if (c->i >= c->n) {
		fail(c->error, "Missing search key");
		return NULL;
	}
	a = &c->a[c->i++];
	if (a->type == PB_IMAP_ARG_LIST)
		return search_group(a->list, a->n, depth + 1, c->error);
	if (a->type != PB_IMAP_ARG_ATOM) {
		fail(c->error, "Invalid search key");
		return NULL;
	}
	if (g_ascii_isdigit(a->str[0]) || a->str[0] == '*') {
		k = skey_new(PB_IMAP_SKEY_SEQSET);
		return pb_imap_arg_seqset(a, &k->set, c->error)
		           ? g_steal_pointer(&k)
		           : NULL;
	}
	if (g_ascii_strcasecmp(a->str, "NOT") == 0) {
		PbImapSearchKey *child = search_key(c, depth + 1);

		return child != NULL ? skey_not(child) : NULL;
	}
	if (g_ascii_strcasecmp(a->str, "OR") == 0 ||
	    g_ascii_strcasecmp(a->str, "NEW") == 0) {
		gboolean or = a->str[0] == 'O' || a->str[0] == 'o';

		k = skey_new(or ? PB_IMAP_SKEY_OR : PB_IMAP_SKEY_AND);
		for (guint j = 0; j < 2; j++) {
			PbImapSearchKey *child =
			    ! or ? (j == 0
			                ? skey_new(PB_IMAP_SKEY_RECENT)
			                : skey_not(skey_new(PB_IMAP_SKEY_SEEN)))
			         : search_key(c, depth + 1);

			if (child == NULL)
				return NULL;
			skey_add(k, child);
		}
		return g_steal_pointer(&k);
	}
	return table_key(c, a);
}

void
pb_imap_search_free(PbImapSearch *search)
{
	if (search == NULL)
		return;
	g_free(search->charset);
	skey_free(search->root);
	g_free(search);
}

static gboolean
search_return(const PbImapArg *a, PbImapSearch *s, GError **error)
{
	static const char *const opts[] = {"MIN", "MAX", "ALL", "COUNT"};

	if (a == NULL || a->type != PB_IMAP_ARG_LIST)
		return fail(error, "RETURN options expected");
	s->esearch = TRUE;
	for (guint i = 0; i < a->n; i++) {
		guint k = 0;

		while (k < G_N_ELEMENTS(opts) &&
		       !pb_imap_arg_is_atom(&a->list[i], opts[k]))
			k++;
		if (k == G_N_ELEMENTS(opts))
			return fail(error, "Unknown RETURN option");
		s->ret |= 1u << k;
	}
	if (s->ret == 0)
		s->ret = PB_IMAP_SEARCH_RETURN_ALL;
	return TRUE;
}

gboolean
pb_imap_args_search(const PbImapArg *args, guint n, PbImapSearch **search,
                    GError **error)
{
	g_autoptr(PbImapSearch) s = g_new0(PbImapSearch, 1);
	guint i = 0;

	if (i < n && pb_imap_arg_is_atom(&args[i], "RETURN")) {
		if (!search_return(i + 1 < n ? &args[i + 1] : NULL, s, error))
			return FALSE;
		i += 2;
	}
	if (i < n && pb_imap_arg_is_atom(&args[i], "CHARSET")) {
		const char *cs;
		gsize len;

		if (i + 1 >= n || !pb_imap_arg_astring(&args[i + 1], &cs, &len))
			return fail(error, "Charset expected");
		s->charset = g_strndup(cs, len);
		i += 2;
	}
	/* "SEARCH" alone has no argument array at all (args NULL) */
	s->root = search_group(i < n ? args + i : NULL, n - i, 0, error);
	if (s->root == NULL)
		return FALSE;
	*search = g_steal_pointer(&s);
	return TRUE;
}

/* ----- STATUS, LIST ----- */

static const struct {
	const char *name;
	guint bit;
} status_names[] = {
    {"MESSAGES", PB_IMAP_STATUS_MESSAGES},
    {"RECENT", PB_IMAP_STATUS_RECENT},
    {"UIDNEXT", PB_IMAP_STATUS_UIDNEXT},
    {"UIDVALIDITY", PB_IMAP_STATUS_UIDVALIDITY},
    {"UNSEEN", PB_IMAP_STATUS_UNSEEN},
    {"SIZE", PB_IMAP_STATUS_SIZE},
};

gboolean
pb_imap_arg_status_items(const PbImapArg *arg, guint *items, GError **error)
{
	*items = 0;
	if (arg == NULL || arg->type != PB_IMAP_ARG_LIST || arg->n == 0)
		return fail(error, "STATUS items expected");
	for (guint i = 0; i < arg->n; i++) {
		guint k = 0;

		while (
		    k < G_N_ELEMENTS(status_names) &&
		    !pb_imap_arg_is_atom(&arg->list[i], status_names[k].name))
			k++;
		if (k == G_N_ELEMENTS(status_names))
			return fail(error, "Unknown STATUS item");
		*items |= status_names[k].bit;
	}
	return TRUE;
}

void
pb_imap_list_free(PbImapList *list)
{
	if (list == NULL)
		return;
	g_free(list->reference);
	g_strfreev(list->patterns);
	g_free(list);
}

static int
option_index(const PbImapArg *a, const char *const *names)
{
	for (int k = 0; names[k] != NULL; k++)
		if (pb_imap_arg_is_atom(a, names[k]))
			return k;
	return -1;
}

/* An option list: every atom must be one of NAMES (bit = 1 << index). */
static gboolean
option_list(const PbImapArg *a, const char *const *names, guint *bits,
            GError **error)
{
	for (guint i = 0; i < a->n; i++) {
		int k = option_index(&a->list[i], names);

		if (k < 0)
			return fail(error, "Unknown LIST option");
		*bits |= 1u << k;
	}
	return TRUE;
}

static gboolean
list_return(PbImapList *l, const PbImapArg *a, GError **error)
{
	static const char *const names[] = {"SUBSCRIBED", "CHILDREN",
	                                    "SPECIAL-USE", "STATUS", NULL};

	if (a == NULL || a->type != PB_IMAP_ARG_LIST)
		return fail(error, "RETURN options expected");
	for (guint i = 0; i < a->n; i++) {
		int k = option_index(&a->list[i], names);

		if (k < 0)
			return fail(error, "Unknown LIST RETURN option");
		l->ret |= 1u << k;
		if (k == 3 && !pb_imap_arg_status_items(
		                  i + 1 < a->n ? &a->list[++i] : NULL,
		                  &l->status_items, error))
			return FALSE;
	}
	return TRUE;
}

/* list-mailbox: an atom of list-chars, or a string */
static gboolean
list_pattern(const PbImapArg *a, GPtrArray *out)
{
	const char *s;
	gsize len;

	if (a->type == PB_IMAP_ARG_ATOM || a->type == PB_IMAP_ARG_NIL) {
		for (gsize i = 0; i < a->len; i++)
			if (!is_atom_char(a->str[i]) &&
			    strchr("%*]", a->str[i]) == NULL)
				return FALSE;
		g_ptr_array_add(out, g_strndup(a->str, a->len));
		return TRUE;
	}
	if (!pb_imap_arg_string(a, &s, &len))
		return FALSE;
	g_ptr_array_add(out, g_strndup(s, len));
	return TRUE;
}

static gboolean
list_patterns(PbImapList *l, const PbImapArg *a, GError **error)
{
	g_autoptr(GPtrArray) pats = g_ptr_array_new_with_free_func(g_free);
	gboolean ok = TRUE;

	if (a->type == PB_IMAP_ARG_LIST) {
		l->extended = TRUE;
		ok = a->n > 0;
		for (guint i = 0; i < a->n && ok; i++)
			ok = list_pattern(&a->list[i], pats);
	} else
		ok = list_pattern(a, pats);
	if (!ok)
		return fail(error, "Invalid mailbox pattern");
	g_ptr_array_add(pats, NULL);
	l->patterns = (char **)g_ptr_array_free(g_steal_pointer(&pats), FALSE);
	return TRUE;
}

gboolean
pb_imap_args_list(const PbImapArg *args, guint n, PbImapList **list,
                  GError **error)
{
	static const char *const sel[] = {
	    "SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE", NULL};
	g_autoptr(PbImapList) l = g_new0(PbImapList, 1);
	const char *ref;
	gsize len;
	guint i = 0;

	if (n > 0 && args[0].type == PB_IMAP_ARG_LIST) {
		l->extended = TRUE;
		if (!option_list(&args[0], sel, &l->select, error))
			return FALSE;
		if (l->select == PB_IMAP_LIST_SEL_RECURSIVEMATCH)
			return fail(error, "RECURSIVEMATCH alone");
		i++;
	}
	if (i + 2 > n || !pb_imap_arg_astring(&args[i], &ref, &len))
		return fail(error, "LIST needs a reference and a pattern");
	l->reference = g_strndup(ref, len);
	if (!list_patterns(l, &args[i + 1], error))
		return FALSE;
	i += 2;
	if (i < n && pb_imap_arg_is_atom(&args[i], "RETURN")) {
		l->extended = TRUE;
		if (!list_return(l, i + 1 < n ? &args[i + 1] : NULL, error))
			return FALSE;
		i += 2;
	}
	if (i != n)
		return fail(error, "Too many LIST arguments");
	*list = g_steal_pointer(&l);
	return TRUE;
}

/* ----- the LIST pattern matcher ----- */

/* How many leading octets of NAME compare without case: INBOX's. */
static gsize
inbox_prefix(const char *name, char sep)
{
	if (g_ascii_strncasecmp(name, "INBOX", 5) == 0 &&
	    (name[5] == '\0' || name[5] == sep))
		return 5;
	return 0;
}

static gboolean
is_wild(char c)
{
	return c == '*' || c == '%';
}

/* PATTERN without adjacent wildcards ("%*", "*%", "**" are "*"; "%%"
 * is "%"): the same names match, and a state j can be live after i
 * octets only when j <= 2i + 1, which bounds the work by the name. So
 * only the first LIMIT octets are kept (*CUT tells whether more were
 * there: then the end cannot be reached). */
static char *
squeeze(const char *pattern, gsize limit, gboolean *cut)
{
	GString *out = g_string_new(NULL);

	*cut = FALSE;
	for (const char *c = pattern; *c != '\0'; c++) {
		char *last = out->len > 0 ? &out->str[out->len - 1] : NULL;

		if (out->len == limit) {
			*cut = TRUE;
			break;
		}
		if (is_wild(*c) && last != NULL && is_wild(*last)) {
			if (*c == '*')
				*last = '*';
			continue;
		}
		g_string_append_c(out, *c);
	}
	return g_string_free(out, FALSE);
}

/* The NFA over the pattern's positions: a wildcard at j matches the
 * empty string (j -> j+1) or one more octet (stays at j). States above
 * TOP are all 0. Returns the new top. */
static gsize
closure(const char *pat, gsize m, guint8 *set, gsize top)
{
	for (gsize j = 0; j < m && j <= top; j++)
		if (set[j] && is_wild(pat[j])) {
			set[j + 1] = 1;
			top = MAX(top, j + 1);
		}
	return top;
}

/* CUR (live up to *TOP) -> NEXT (all 0) on octet C; CUR is left all 0.
 * FALSE when no state is left. */
static gboolean
nfa_step(const char *pat, gsize m, guint8 *cur, guint8 *next, gsize *top,
         char c, gboolean fold, char sep)
{
	gboolean live = FALSE;
	gsize hi = 0;

	for (gsize j = 0; j <= *top && j < m; j++) {
		gsize to = j + 1;

		if (!cur[j])
			continue;
		if (pat[j] == '*' || (pat[j] == '%' && c != sep))
			to = j;
		else if (pat[j] != c && !(fold && g_ascii_tolower(pat[j]) ==
		                                      g_ascii_tolower(c)))
			continue;
		next[to] = 1;
		hi = MAX(hi, to);
		live = TRUE;
	}
	memset(cur, 0, *top + 1);
	*top = live ? closure(pat, m, next, hi) : 0;
	return live;
}

typedef struct {
	char *pat;
	gsize m;
	gboolean cut; /* pat is a prefix of the pattern */
	guint8 *set;  /* the states left */
	gsize top;
} Nfa;

static void
nfa_clear(Nfa *n)
{
	g_free(n->pat);
	g_free(n->set);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Nfa, nfa_clear)

/* Runs NAME (then SEP when BELOW) through PATTERN. FALSE when no state
 * is left. */
static gboolean
nfa_run(Nfa *n, const char *pattern, const char *name, char sep, gboolean below)
{
	gsize fold = inbox_prefix(name, sep);
	gsize nlen = strlen(name) + (below ? 1 : 0);
	g_autofree guint8 *next = NULL;
	gboolean live = TRUE;

	n->pat = squeeze(pattern, 2 * nlen + 4, &n->cut);
	n->m = strlen(n->pat);
	n->set = g_malloc0(n->m + 1);
	next = g_malloc0(n->m + 1);
	n->set[0] = 1;
	n->top = closure(n->pat, n->m, n->set, 0);
	for (gsize i = 0; i < nlen && live; i++) {
		guint8 *t;
		char c = name[i] != '\0' ? name[i] : sep;

		live = nfa_step(n->pat, n->m, n->set, next, &n->top, c,
		                i < fold, sep);
		t = n->set, n->set = next, next = t;
	}
	return live;
}

gboolean
pb_imap_list_match(const char *pattern, const char *name, char sep)
{
	g_auto(Nfa) n = {0};

	return nfa_run(&n, pattern, name, sep, FALSE) && !n.cut && n.set[n.m];
}

gboolean
pb_imap_list_match_below(const char *pattern, const char *name, char sep)
{
	g_auto(Nfa) n = {0};

	if (!nfa_run(&n, pattern, name, sep, TRUE))
		return FALSE;
	/* a state short of the end: some non-empty rest can reach it */
	for (gsize j = 0; j < n.m && j <= n.top; j++)
		if (n.set[j])
			return TRUE;
	return FALSE;
}

/* ----- APPEND ----- */

gboolean
pb_imap_args_append(const PbImapArg *args, guint n, PbImapFlags *flags,
                    gboolean *has_date, gint64 *date, GError **error)
{
	guint i = 0;

	memset(flags, 0, sizeof(*flags));
	*has_date = FALSE;
	if (i < n && args[i].type == PB_IMAP_ARG_LIST &&
	    !pb_imap_arg_flag_list(&args[i++], flags, error))
		return FALSE;
	if (i < n) {
		if (!pb_imap_arg_date_time(&args[i++], date, NULL, error)) {
			pb_imap_flags_clear(flags);
			return FALSE;
		}
		*has_date = TRUE;
	}
	if (i != n) {
		pb_imap_flags_clear(flags);
		return fail(error, "Invalid APPEND arguments");
	}
	return TRUE;
}

/* ----- output ----- */

#define QUOTED_MAX 1024

void
pb_imap_append_string(GString *out, const char *s, gsize len)
{
	gboolean quote = len <= QUOTED_MAX;

	for (gsize i = 0; i < len && quote; i++)
		quote = (guchar)s[i] >= ' ' && (guchar)s[i] < 0x7f;
	if (!quote) {
		g_string_append_printf(out, "{%" G_GSIZE_FORMAT "}\r\n", len);
		g_string_append_len(out, s, len);
		return;
	}
	g_string_append_c(out, '"');
	for (gsize i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			g_string_append_c(out, '\\');
		g_string_append_c(out, s[i]);
	}
	g_string_append_c(out, '"');
}

void
pb_imap_append_astring(GString *out, const char *s, gsize len)
{
	if (astring_chars(s, len) &&
	    !(len == 3 && g_ascii_strncasecmp(s, "NIL", 3) == 0))
		g_string_append_len(out, s, len);
	else
		pb_imap_append_string(out, s, len);
}

void
pb_imap_append_nstring(GString *out, const char *s, gsize len)
{
	if (s == NULL)
		g_string_append(out, "NIL");
	else
		pb_imap_append_string(out, s, len);
}
