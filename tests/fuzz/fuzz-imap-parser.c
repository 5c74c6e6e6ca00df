/*
 * fuzz-imap-parser.c - the IMAP command parser as a session drives it,
 * then every typed helper on what it parsed.
 *
 * Input: one octet of options (bit 0: authenticated; bit 1: APPEND's
 * top-level literals are streamed; bit 2: literals over 100 octets are
 * refused; bits 3-5: the chunk size; bit 6: refused with a bound of
 * 300 octets instead of the budget), then the client's bytes.
 *
 * Checked besides the sanitizers: the input fed in chunks and fed whole
 * give the same events; a command never exceeds its budget; what the
 * output helper quotes parses back to the same string; resolved
 * sequence sets are sorted, disjoint and within 1..max.
 */
#include "fuzz.h"
#include "imap-parser.h"

#include <string.h>

typedef struct {
	guint8 opts;
	gboolean helpers; /* run the typed helpers on each command */
	GString *log;
	gsize budget;
	guint64 streamed;
} Run;

static void
check_quote(const char *s, gsize len)
{
	g_autoptr(PbImapParser) p = pb_imap_parser_new();
	g_autoptr(GString) line = g_string_new("q SELECT ");
	PbImapParseResult r;
	gsize n, off = 0;
	const char *got;
	gsize got_len;

	if (memchr(s, '\0', len) != NULL)
		return;
	pb_imap_parser_set_max_command(p, 2 * len + 1024);
	pb_imap_append_astring(line, s, len);
	g_string_append(line, "\r\n");
	while ((r = pb_imap_parser_feed(p, line->str + off, line->len - off,
	                                &n)) == PB_IMAP_PARSE_LITERAL) {
		off += n;
		g_assert_cmpint(pb_imap_parser_literal_accept(p), ==,
		                PB_IMAP_LITERAL_SEND_PLUS);
	}
	g_assert_cmpint(r, ==, PB_IMAP_PARSE_COMMAND);
	g_assert_true(pb_imap_arg_astring(&pb_imap_parser_command(p)->args[0],
	                                  &got, &got_len));
	g_assert_cmpmem(got, got_len, s, len);
}

static void
check_seqset(const PbImapSeqSet *set)
{
	static const guint32 maxes[] = {0, 1, 7, 1000, G_MAXUINT32};

	for (guint m = 0; m < G_N_ELEMENTS(maxes); m++) {
		g_autoptr(PbImapSeqSet) r =
		    pb_imap_seqset_resolve(set, maxes[m]);
		PbImapSeqIter it;
		guint32 n, prev = 0;
		guint steps = 0;

		for (guint i = 0; i < r->n; i++) {
			g_assert_cmpuint(r->ranges[i].lo, >=, 1);
			g_assert_cmpuint(r->ranges[i].lo, <=, r->ranges[i].hi);
			g_assert_cmpuint(r->ranges[i].hi, <=, maxes[m]);
			g_assert_true(i == 0 || r->ranges[i].lo >
			                            r->ranges[i - 1].hi + 1ull);
		}
		pb_imap_seqset_iter_init(&it, r);
		while (steps++ < 200 && pb_imap_seqset_iter_next(&it, &n)) {
			g_assert_true(n > prev || steps == 1);
			g_assert_true(pb_imap_seqset_contains(r, n));
			prev = n;
		}
		(void)pb_imap_seqset_count(r);
		(void)pb_imap_seqset_contains(r, 5);
	}
	(void)pb_imap_seqset_max(set);
}

/* The helpers that take one argument. */
static void
one_arg(const PbImapArg *a)
{
	const char *s;
	gsize len;
	g_autofree char *mbox = NULL;
	g_autoptr(PbImapSeqSet) set = NULL;
	g_autoptr(PbImapFetch) f = NULL;
	g_auto(PbImapFlags) flags = {0};
	PbImapDate d;
	gint64 t;
	int zone;
	guint items;

	if (pb_imap_arg_astring(a, &s, &len)) {
		check_quote(s, len);
		g_assert_cmpuint(strlen(s), ==, len);
		g_assert_true(pb_imap_list_match("*", s, '.'));
		g_assert_cmpint(pb_imap_list_match("%", s, '.'), ==,
		                memchr(s, '.', len) == NULL);
	}
	(void)pb_imap_arg_nstring(a, &s, &len);
	(void)pb_imap_arg_mailbox(a, &mbox, NULL);
	if (pb_imap_arg_seqset(a, &set, NULL))
		check_seqset(set);
	(void)pb_imap_arg_fetch(a, &f, NULL);
	(void)pb_imap_arg_flag_list(a, &flags, NULL);
	(void)pb_imap_arg_date(a, &d, NULL);
	(void)pb_imap_arg_date_time(a, &t, &zone, NULL);
	(void)pb_imap_arg_status_items(a, &items, NULL);
	if (a->type == PB_IMAP_ARG_LIST)
		for (guint i = 0; i < a->n; i++)
			one_arg(&a->list[i]);
}

/* The helpers that take an argument list, from every start. */
static void
arg_lists(const PbImapArg *args, guint n)
{
	for (guint i = 0; i < n && i < 3; i++) {
		g_autoptr(PbImapSearch) search = NULL;
		g_autoptr(PbImapList) list = NULL;
		g_auto(PbImapStore) store = {0};
		g_auto(PbImapFlags) flags = {0};
		gboolean has_date;
		gint64 date;

		(void)pb_imap_args_search(args + i, n - i, &search, NULL);
		(void)pb_imap_args_store(args + i, n - i, &store, NULL);
		(void)pb_imap_args_flags(args + i, n - i, &flags, NULL);
		pb_imap_flags_clear(&flags);
		(void)pb_imap_args_append(args + i, MIN(n - i, 2), &flags,
		                          &has_date, &date, NULL);
		if (pb_imap_args_list(args + i, n - i, &list, NULL))
			for (guint k = 0; list->patterns[k] != NULL; k++) {
				(void)pb_imap_list_match(list->patterns[k],
				                         list->reference, '.');
				(void)pb_imap_list_match_below(
				    list->patterns[k], list->reference, '.');
			}
	}
}

static void
on_command(PbImapParser *p, Run *run)
{
	const PbImapCommand *c = pb_imap_parser_command(p);

	g_assert_nonnull(c);
	g_assert_cmpuint(c->size, <=, run->budget);
	g_string_append_printf(run->log, "C %s %s %u\n", c->tag, c->name,
	                       c->n_args);
	if (g_ascii_strcasecmp(c->name, "AUTHENTICATE") == 0 ||
	    g_ascii_strcasecmp(c->name, "IDLE") == 0)
		pb_imap_parser_expect_line(p);
	if (run->helpers) {
		for (guint i = 0; i < c->n_args; i++)
			one_arg(&c->args[i]);
		arg_lists(c->args, c->n_args);
	}
}

static PbImapLiteralReply
on_literal(PbImapParser *p, Run *run)
{
	const PbImapCommand *c = pb_imap_parser_command(p);
	guint64 size;
	gboolean sync, l8;
	guint depth;

	pb_imap_parser_literal(p, &size, &sync, &l8, &depth);
	g_assert_nonnull(c);
	g_string_append_printf(run->log, "L %" G_GUINT64_FORMAT " %d %u\n",
	                       size, sync, depth);
	if ((run->opts & 4) && size > 100)
		return (run->opts & 64) ? pb_imap_parser_literal_skip(p, 300)
		                        : pb_imap_parser_literal_refuse(p);
	if ((run->opts & 2) && depth == 0 &&
	    g_ascii_strcasecmp(c->name, "APPEND") == 0)
		return pb_imap_parser_literal_stream(p);
	return pb_imap_parser_literal_accept(p);
}

static gboolean
on_event(PbImapParser *p, Run *run, PbImapParseResult r, gsize n)
{
	const char *tag;

	switch (r) {
	case PB_IMAP_PARSE_COMMAND:
		on_command(p, run);
		break;
	case PB_IMAP_PARSE_LITERAL:
		g_string_append_printf(run->log, "R %d\n", on_literal(p, run));
		break;
	case PB_IMAP_PARSE_STREAM:
		g_assert_cmpuint(n, >, 0);
		run->streamed += n;
		break;
	case PB_IMAP_PARSE_STREAM_END:
		g_string_append_printf(run->log, "S %" G_GUINT64_FORMAT "\n",
		                       run->streamed);
		run->streamed = 0;
		break;
	case PB_IMAP_PARSE_LINE:
		g_string_append_printf(run->log, "N %s\n",
		                       pb_imap_parser_line(p, NULL));
		break;
	case PB_IMAP_PARSE_BAD:
		tag = pb_imap_parser_tag(p);
		g_string_append_printf(run->log, "B %s %s\n", tag ? tag : "*",
		                       pb_imap_parser_error(p));
		break;
	case PB_IMAP_PARSE_CLOSE:
		return FALSE;
	case PB_IMAP_PARSE_MORE:
		break;
	}
	return TRUE;
}

/* Feeds DATA in CHUNK-octet pieces (0: whole); the events into LOG. */
static void
drive(const uint8_t *data, size_t size, gsize chunk, Run *run)
{
	g_autoptr(PbImapParser) p = pb_imap_parser_new();
	const char *in = (const char *)data;
	gsize off = 0;

	pb_imap_parser_set_authenticated(p, run->opts & 1);
	run->budget = run->opts & 1 ? PB_IMAP_PARSER_MAX_COMMAND
	                            : PB_IMAP_PARSER_MAX_PRE_AUTH;
	for (;;) {
		gsize avail = chunk ? MIN(chunk, size - off) : size - off, n;
		PbImapParseResult r =
		    pb_imap_parser_feed(p, in + off, avail, &n);

		g_assert_cmpuint(n, <=, avail);
		off += n;
		if (!on_event(p, run, r, n) ||
		    (r == PB_IMAP_PARSE_MORE && off == size))
			break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const gsize chunks[] = {1, 2, 3, 7, 13, 64, 1000, 0};
	Run whole = {0}, chunked = {0};

	if (size < 1 || size > 100000)
		return 0;
	whole.opts = chunked.opts = data[0];
	whole.log = g_string_new(NULL);
	whole.helpers = TRUE;
	chunked.log = g_string_new(NULL);
	drive(data + 1, size - 1, 0, &whole);
	drive(data + 1, size - 1, chunks[(data[0] >> 3) & 7], &chunked);
	g_assert_cmpstr(whole.log->str, ==, chunked.log->str);
	g_string_free(whole.log, TRUE);
	g_string_free(chunked.log, TRUE);
	return 0;
}
