/* test-imap-parser.c - the IMAP command parser without a socket: every
 * framing case is fed whole, byte by byte and in chunks of 7 octets, by
 * a driver that answers literals as a session would, and the three
 * transcripts of events must be the same as the one expected. Then the
 * typed helpers on parsed commands. */
#include "imap-parser.h"

#include "error.h"

#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* the driver */

typedef enum {
	POL_ACCEPT, /* accept every literal */
	POL_STREAM, /* APPEND: stream top-level literals; others: accept */
	POL_REFUSE, /* refuse every literal */
	POL_SKIP8,  /* refuse every literal, discarding a {N+} of <= 8 */
} Policy;

typedef struct {
	PbImapParser *p;
	GString *log;
	GString *streamed;
	Policy policy;
	gsize stop_at; /* offset after the first COMMAND (STARTTLS test) */
	gboolean stop_after_command;
} Drv;

static void
render_arg(GString *o, const PbImapArg *a)
{
	switch (a->type) {
	case PB_IMAP_ARG_ATOM:
	case PB_IMAP_ARG_NIL:
		g_string_append(o, a->str);
		break;
	case PB_IMAP_ARG_QUOTED:
		g_string_append_printf(o, "\"%s\"", a->str);
		break;
	case PB_IMAP_ARG_LITERAL:
		g_string_append_printf(o, "%s{%zu}%s", a->literal8 ? "~" : "",
		                       a->len, a->str);
		break;
	case PB_IMAP_ARG_LIST:
		g_string_append_c(o, '(');
		for (guint i = 0; i < a->n; i++) {
			if (i > 0)
				g_string_append_c(o, ' ');
			render_arg(o, &a->list[i]);
		}
		g_string_append_c(o, ')');
		break;
	case PB_IMAP_ARG_STREAM:
		g_string_append_printf(o, "<stream %zu>", a->len);
		break;
	}
}

static void
log_command(Drv *d)
{
	const PbImapCommand *c = pb_imap_parser_command(d->p);

	g_assert_nonnull(c);
	g_string_append_printf(d->log, "CMD %s %s", c->tag, c->name);
	for (guint i = 0; i < c->n_args; i++) {
		g_string_append_c(d->log, ' ');
		render_arg(d->log, &c->args[i]);
	}
	g_string_append_c(d->log, '\n');
	/* a session asks for raw lines after these */
	if (g_ascii_strcasecmp(c->name, "AUTHENTICATE") == 0 ||
	    g_ascii_strcasecmp(c->name, "IDLE") == 0)
		pb_imap_parser_expect_line(d->p);
}

static void
on_literal(Drv *d)
{
	static const char *const replies[] = {"+", "feed", "refused", "close"};
	const PbImapCommand *c = pb_imap_parser_command(d->p);
	guint64 size;
	gboolean sync, l8;
	guint depth;
	PbImapLiteralReply r;

	g_autofree char *tag = NULL;

	pb_imap_parser_literal(d->p, &size, &sync, &l8, &depth);
	g_assert_nonnull(c);
	tag = g_strdup(c->tag);
	if (d->policy == POL_REFUSE)
		r = pb_imap_parser_literal_refuse(d->p);
	else if (d->policy == POL_SKIP8)
		r = pb_imap_parser_literal_skip(d->p, 8);
	else if (d->policy == POL_STREAM && depth == 0 && c->n_args >= 1 &&
	         g_ascii_strcasecmp(c->name, "APPEND") == 0)
		r = pb_imap_parser_literal_stream(d->p);
	else
		r = pb_imap_parser_literal_accept(d->p);
	g_string_append_printf(
	    d->log, "LIT %s %" G_GUINT64_FORMAT "%s%s d%u %s\n", tag, size,
	    sync ? "" : "+", l8 ? " l8" : "", depth, replies[r]);
	/* the command is gone: its tag stays for the answer */
	if (r == PB_IMAP_LITERAL_REFUSED)
		g_assert_cmpstr(pb_imap_parser_tag(d->p), ==, tag);
}

static const char *const kinds[] = {"syntax", "toobig", "depth"};

/* One event; FALSE when the driver stops. */
static gboolean
on_event(Drv *d, PbImapParseResult r, const char *chunk, gsize n)
{
	const char *tag;
	gsize len;

	switch (r) {
	case PB_IMAP_PARSE_MORE:
		break;
	case PB_IMAP_PARSE_COMMAND:
		log_command(d);
		return !d->stop_after_command;
	case PB_IMAP_PARSE_LITERAL:
		on_literal(d);
		break;
	case PB_IMAP_PARSE_STREAM:
		g_assert_cmpuint(n, >, 0);
		g_string_append_len(d->streamed, chunk, n);
		break;
	case PB_IMAP_PARSE_STREAM_END:
		g_assert_cmpuint(pb_imap_parser_stream_left(d->p), ==, 0);
		g_string_append_printf(d->log, "STREAM %s\n", d->streamed->str);
		g_string_truncate(d->streamed, 0);
		break;
	case PB_IMAP_PARSE_LINE:
		g_string_append_printf(d->log, "LINE %s\n",
		                       pb_imap_parser_line(d->p, &len));
		g_assert_cmpuint(len, ==,
		                 strlen(pb_imap_parser_line(d->p, NULL)));
		break;
	case PB_IMAP_PARSE_BAD:
		tag = pb_imap_parser_tag(d->p);
		g_string_append_printf(d->log, "BAD %s %s %s\n",
		                       tag != NULL ? tag : "*",
		                       kinds[pb_imap_parser_bad_kind(d->p)],
		                       pb_imap_parser_error(d->p));
		break;
	case PB_IMAP_PARSE_CLOSE:
		g_string_append_printf(d->log, "CLOSE %s\n",
		                       pb_imap_parser_error(d->p));
		return FALSE;
	}
	return TRUE;
}

/* Feeds IN in chunks of CHUNK octets (0: whole); returns the log. */
static char *
drive(const char *in, gsize len, gsize chunk, Policy policy,
      gboolean authenticated, gsize *stopped)
{
	Drv d = {0};
	gsize off = 0;

	d.p = pb_imap_parser_new();
	d.log = g_string_new(NULL);
	d.streamed = g_string_new(NULL);
	d.policy = policy;
	d.stop_after_command = stopped != NULL;
	pb_imap_parser_set_authenticated(d.p, authenticated);
	for (;;) {
		gsize avail = chunk ? MIN(chunk, len - off) : len - off, n;
		PbImapParseResult r =
		    pb_imap_parser_feed(d.p, in + off, avail, &n);

		g_assert_cmpuint(n, <=, avail);
		off += n;
		if (!on_event(&d, r, in + off - n, n))
			break;
		if (r == PB_IMAP_PARSE_MORE && off == len)
			break;
	}
	if (stopped != NULL)
		*stopped = off;
	pb_imap_parser_free(d.p);
	g_string_free(d.streamed, TRUE);
	return g_string_free(d.log, FALSE);
}

/* The same transcript whole, byte by byte and in 7-octet chunks. */
static void
check_len(const char *in, gsize len, Policy policy, gboolean auth,
          const char *expected)
{
	static const gsize chunks[] = {0, 1, 7};

	for (guint i = 0; i < G_N_ELEMENTS(chunks); i++) {
		g_autofree char *log =
		    drive(in, len, chunks[i], policy, auth, NULL);

		if (g_strcmp0(log, expected) != 0)
			g_test_message("chunk %zu:\n%s", chunks[i], log);
		g_assert_cmpstr(log, ==, expected);
	}
}

static void
check(const char *in, Policy policy, gboolean auth, const char *expected)
{
	check_len(in, strlen(in), policy, auth, expected);
}

/* ------------------------------------------------------------------ */
/* framing */

static void
test_simple(void)
{
	check("a1 NOOP\r\n", POL_ACCEPT, FALSE, "CMD a1 NOOP\n");
	check("a1 NOOP\r\na2 CAPABILITY\r\n", POL_ACCEPT, FALSE,
	      "CMD a1 NOOP\nCMD a2 CAPABILITY\n");
	/* bare LF, empty lines between commands, trailing spaces */
	check("\r\n\r\na1 NOOP\n\na2 noop \r\n", POL_ACCEPT, FALSE,
	      "CMD a1 NOOP\nCMD a2 noop\n");
	check("a1 LOGIN alice \"pa ss\\\"\\\\\"\r\n", POL_ACCEPT, FALSE,
	      "CMD a1 LOGIN alice \"pa ss\"\\\"\n");
	check("a1 X NIL nil \"NIL\" ()\r\n", POL_ACCEPT, FALSE,
	      "CMD a1 X NIL nil \"NIL\" ()\n");
	check(
	    "a1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)"
	    "\r\n",
	    POL_ACCEPT, FALSE,
	    "CMD a1 UID FETCH 1:* (FLAGS "
	    "BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)\n");
	/* '[' elsewhere is an atom character; "]" too */
	check("a1 SELECT [Gmail].Sent\r\na2 SELECT a[b\r\n", POL_ACCEPT, FALSE,
	      "CMD a1 SELECT [Gmail].Sent\nCMD a2 SELECT a[b\n");
	/* a section is FETCH's only: elsewhere "BODY[" is a mailbox name
	 * like any other (found by fuzz-imap-parser: "BODY.PEEK[" quoted by
	 * our own output helper did not parse back) */
	check("a1 SELECT BODY.PEEK[\r\na2 RENAME body[a b]\r\n", POL_ACCEPT,
	      FALSE, "CMD a1 SELECT BODY.PEEK[\nCMD a2 RENAME body[a b]\n");
	check("a1 uid fetch 1 body[HEADER.FIELDS (A B)]\r\n", POL_ACCEPT, FALSE,
	      "CMD a1 uid fetch 1 body[HEADER.FIELDS (A B)]\n");
	check("a1 LIST \"\" %.*\r\n", POL_ACCEPT, FALSE,
	      "CMD a1 LIST \"\" %.*\n");
	check("a1 STORE 1 +FLAGS (\\Seen \\Deleted)\r\n", POL_ACCEPT, TRUE,
	      "CMD a1 STORE 1 +FLAGS (\\Seen \\Deleted)\n");
}

static void
test_literals(void)
{
	check("a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n", POL_ACCEPT, FALSE,
	      "LIT a1 5 d0 +\nLIT a1 6 d0 +\n"
	      "CMD a1 LOGIN {5}alice {6}secret\n");
	check("a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\na2 NOOP\r\n",
	      POL_ACCEPT, FALSE,
	      "LIT a1 5+ d0 feed\nLIT a1 6+ d0 feed\n"
	      "CMD a1 LOGIN {5}alice {6}secret\nCMD a2 NOOP\n");
	/* a literal's octets are never parsed: CRLF, quotes, parens */
	check("a1 X ({6}\r\n\"(\r\n)\" b)\r\n", POL_ACCEPT, FALSE,
	      "LIT a1 6 d1 +\nCMD a1 X ({6}\"(\r\n)\" b)\n");
	check("a1 X {0}\r\n\r\n", POL_ACCEPT, FALSE,
	      "LIT a1 0 d0 +\nCMD a1 X {0}\n");
	check("a1 X ~{3}\r\nabc\r\n", POL_ACCEPT, TRUE,
	      "LIT a1 3 l8 d0 +\nCMD a1 X ~{3}abc\n");
	/* what follows a literal needs a separator */
	check("a1 X {1}\r\nbc\r\na2 NOOP\r\n", POL_ACCEPT, FALSE,
	      "LIT a1 1 d0 +\nBAD a1 syntax Missing space between arguments\n"
	      "CMD a2 NOOP\n");
	check("a1 X {3} y\r\na2 NOOP\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Invalid literal\nCMD a2 NOOP\n");
	check("a1 X {}\r\na2 X {+}\r\na3 NOOP\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Invalid literal\nBAD a2 syntax Invalid literal\n"
	      "CMD a3 NOOP\n");
}

static void
test_stream(void)
{
	check("a1 APPEND INBOX (\\Seen) {13}\r\nHello\r\nWorld\n\r\n",
	      POL_STREAM, TRUE,
	      "LIT a1 13 d0 +\nSTREAM Hello\r\nWorld\n\n"
	      "CMD a1 APPEND INBOX (\\Seen) <stream 13>\n");
	/* MULTIAPPEND: two messages, the second non-synchronising */
	check("a1 APPEND INBOX {3}\r\nabc (\\Seen) {2+}\r\nde\r\na2 NOOP\r\n",
	      POL_STREAM, TRUE,
	      "LIT a1 3 d0 +\nSTREAM abc\nLIT a1 2+ d0 feed\nSTREAM de\n"
	      "CMD a1 APPEND INBOX <stream 3> (\\Seen) <stream 2>\n"
	      "CMD a2 NOOP\n");
	/* junk after the message: BAD, the streamed message is void */
	check("a1 APPEND INBOX {3}\r\nabc )\r\na2 NOOP\r\n", POL_STREAM, TRUE,
	      "LIT a1 3 d0 +\nSTREAM abc\nBAD a1 syntax Unexpected ')'\n"
	      "CMD a2 NOOP\n");
	check("a1 APPEND INBOX {0}\r\n\r\n", POL_STREAM, TRUE,
	      "LIT a1 0 d0 +\nSTREAM \nCMD a1 APPEND INBOX <stream 0>\n");
	/* streamed octets count against no budget: 100 KiB before login */
	{
		g_autoptr(GString) in =
		    g_string_new("a1 APPEND INBOX {102400}\r\n");
		g_autofree char *log = NULL;

		for (guint i = 0; i < 102400 / 8; i++)
			g_string_append(in, "\r\nline\r\n");
		g_string_append(in, "\r\n");
		log = drive(in->str, in->len, 4096, POL_STREAM, FALSE, NULL);
		g_assert_true(g_str_has_prefix(log, "LIT a1 102400 d0 +\n"));
		g_assert_true(g_str_has_suffix(
		    log, "\nCMD a1 APPEND INBOX <stream 102400>\n"));
	}
}

static void
test_refused(void)
{
	/* a synchronising literal refused: the client does not send it */
	check("a1 APPEND box {5}\r\na2 NOOP\r\n", POL_REFUSE, TRUE,
	      "LIT a1 5 d0 refused\nCMD a2 NOOP\n");
	/* a non-synchronising one within the budget (RFC 7888 4): its
	 * octets and the rest of its line are read and dropped, never taken
	 * as commands, and the parser goes on */
	check("a1 APPEND box {5+}\r\na2 NO\r\na3 NOOP\r\n", POL_REFUSE, TRUE,
	      "LIT a1 5+ d0 refused\nCMD a3 NOOP\n");
	check("a1 APPEND box {14+}\r\na2 LOGOUT\r\n x\r\na3 NOOP\r\n",
	      POL_REFUSE, TRUE, "LIT a1 14+ d0 refused\nCMD a3 NOOP\n");
	/* the rest of the line announces another {N+}: dropped too */
	check("a1 APPEND box {3+}\r\nabc {4+}\r\nwxyz\r\na2 NOOP\r\n",
	      POL_REFUSE, TRUE, "LIT a1 3+ d0 refused\nCMD a2 NOOP\n");
	check("a1 APPEND box {0+}\r\n\r\na2 NOOP\r\n", POL_REFUSE, TRUE,
	      "LIT a1 0+ d0 refused\nCMD a2 NOOP\n");
	/* over the budget (64 KiB; 4096 before login, LITERAL-): close */
	check("a1 APPEND box {70000+}\r\na2 NOOP\r\n", POL_REFUSE, TRUE,
	      "LIT a1 70000+ d0 close\nCLOSE Literal too big\n");
	check("a1 LOGIN {4097+}\r\na2 NOOP\r\n", POL_REFUSE, FALSE,
	      "LIT a1 4097+ d0 close\nCLOSE Literal too big\n");
	check("a1 LOGIN {5+}\r\nabcde\r\na2 NOOP\r\n", POL_REFUSE, FALSE,
	      "LIT a1 5+ d0 refused\nCMD a2 NOOP\n");
}

static void
test_refused_skip(void)
{
	g_autoptr(GString) in = g_string_new(NULL);
	g_autofree char *big = g_strnfill(100000, 'x');

	/* the caller's bound instead of the budget: up to it, dropped */
	check("a1 APPEND box {8+}\r\na2 NOOP\r\na3 NOOP\r\n", POL_SKIP8, TRUE,
	      "LIT a1 8+ d0 refused\nCMD a3 NOOP\n");
	check("a1 APPEND box {9+}\r\na2 NOOP\r\na3 NOOP\r\n", POL_SKIP8, TRUE,
	      "LIT a1 9+ d0 close\nCLOSE Literal too big\n");
	/* a {N} is never invited, whatever its size */
	check("a1 APPEND box {9}\r\na2 NOOP\r\n", POL_SKIP8, TRUE,
	      "LIT a1 9 d0 refused\nCMD a2 NOOP\n");
	/* a bound over the budget: 100000 octets dropped without buffering */
	g_string_printf(in, "a1 APPEND box {100000+}\r\n%s\r\na2 NOOP\r\n",
	                big);
	{
		g_autoptr(PbImapParser) p = pb_imap_parser_new();
		gsize n, off = 0;
		guint64 size;
		gboolean sync, l8;
		guint depth;

		pb_imap_parser_set_authenticated(p, TRUE);
		g_assert_cmpint(pb_imap_parser_feed(p, in->str, in->len, &n),
		                ==, PB_IMAP_PARSE_LITERAL);
		pb_imap_parser_literal(p, &size, &sync, &l8, &depth);
		g_assert_cmpuint(size, ==, 100000);
		g_assert_cmpint(pb_imap_parser_literal_skip(p, 200000), ==,
		                PB_IMAP_LITERAL_REFUSED);
		g_assert_cmpstr(pb_imap_parser_tag(p), ==, "a1");
		g_assert_null(pb_imap_parser_command(p));
		off = n;
		while (off < in->len) {
			PbImapParseResult r = pb_imap_parser_feed(
			    p, in->str + off, MIN(in->len - off, 4096), &n);

			off += n;
			if (r == PB_IMAP_PARSE_MORE)
				continue;
			g_assert_cmpint(r, ==, PB_IMAP_PARSE_COMMAND);
			g_assert_cmpstr(pb_imap_parser_command(p)->tag, ==,
			                "a2");
			g_assert_cmpuint(pb_imap_parser_command(p)->size, <,
			                 100);
			break;
		}
		g_assert_cmpuint(off, ==, in->len);
	}
}

static void
test_budget(void)
{
	g_autoptr(GString) in = g_string_new(NULL);
	g_autoptr(GString) want = g_string_new(NULL);
	g_autofree char *big = g_strnfill(9000, 'x');
	g_autofree char *huge = g_strnfill(70000, 'x');

	/* before login: a literal over 8 KiB is refused before "+" */
	check("a1 LOGIN {9000}\r\na2 NOOP\r\n", POL_ACCEPT, FALSE,
	      "LIT a1 9000 d0 refused\nCMD a2 NOOP\n");
	/* ... but fits after login */
	g_string_printf(in, "a1 X {9000}\r\n%s\r\n", big);
	g_string_printf(want, "LIT a1 9000 d0 +\nCMD a1 X {9000}%s\n", big);
	check(in->str, POL_ACCEPT, TRUE, want->str);
	/* LITERAL-: a {N+} over 4096 before login closes */
	check("a1 LOGIN {5000+}\r\n", POL_ACCEPT, FALSE,
	      "LIT a1 5000+ d0 close\nCLOSE Literal too big\n");
	check("a1 LOGIN {4096+}\r\n", POL_ACCEPT, FALSE,
	      "LIT a1 4096+ d0 feed\n");
	/* after login, {N+} over 64 KiB closes */
	check("a1 X {70000+}\r\n", POL_ACCEPT, TRUE,
	      "LIT a1 70000+ d0 close\nCLOSE Literal too big\n");
	/* two literals together over the budget: the second is refused */
	check("a1 LOGIN {5000}\r\n", POL_ACCEPT, FALSE, "LIT a1 5000 d0 +\n");
	g_string_printf(in, "a1 LOGIN {5000}\r\n%.5000s {4000}\r\na2 NOOP\r\n",
	                big);
	check(in->str, POL_ACCEPT, FALSE,
	      "LIT a1 5000 d0 +\nLIT a1 4000 d0 refused\nCMD a2 NOOP\n");
	/* a line over 8 KiB before login: BAD, skipped, in step again */
	g_string_printf(in, "a1 X %s\r\na2 NOOP\r\n", big);
	check(in->str, POL_ACCEPT, FALSE,
	      "BAD a1 toobig Command too long\nCMD a2 NOOP\n");
	g_string_printf(in, "a1 X %s\r\na2 NOOP\r\n", big);
	g_string_printf(want, "CMD a1 X %s\nCMD a2 NOOP\n", big);
	check(in->str, POL_ACCEPT, TRUE, want->str);
	/* over 64 KiB after login, ending in a {N+} whose octets are skipped */
	g_string_printf(in, "a1 X %s {9+}\r\na3 NOOP\r\n\r\na2 NOOP\r\n", huge);
	check(in->str, POL_ACCEPT, TRUE,
	      "BAD a1 toobig Command too long\nCMD a2 NOOP\n");
	/* the budget runs out in the middle of the final "{5+}" */
	g_string_printf(in, "a1 X %.*s {5+}\r\nabcde\r\na2 NOOP\r\n",
	                PB_IMAP_PARSER_MAX_PRE_AUTH - 7, huge);
	check(in->str, POL_ACCEPT, FALSE,
	      "BAD a1 toobig Command too long\nCMD a2 NOOP\n");
	/* leading zeros: the size is read whole in a line parsed, and in a
	 * line skipped either it is or the parser closes */
	check("a1 X {00000000000000000000000000003}\r\nabc\r\n", POL_ACCEPT,
	      FALSE, "LIT a1 3 d0 +\nCMD a1 X {3}abc\n");
	check("a1 X ) {0000000000003+}\r\nabc\r\na2 NOOP\r\n", POL_ACCEPT,
	      FALSE, "BAD a1 syntax Unexpected ')'\nCMD a2 NOOP\n");
	check("a1 X ) {00000000000000000000000000003+}\r\nabc\r\na2 NOOP\r\n",
	      POL_ACCEPT, FALSE, "BAD a1 syntax Unexpected ')'\nCMD a2 NOOP\n");
	g_string_printf(in, "a1 X %s {%s3+}\r\nabc\r\na2 NOOP\r\n", big,
	                "0000000000000000000000000000");
	check(in->str, POL_ACCEPT, FALSE,
	      "BAD a1 toobig Command too long\n"
	      "CLOSE Literal size unreadable\n");
	/* a skipped line announcing a {N+} over the budget: close */
	check("a1 X ) {9000+}\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Unexpected ')'\nCLOSE Literal too big\n");
	/* an over-long tag: no tag to answer */
	g_string_printf(in, "%s NOOP\r\na2 NOOP\r\n", big);
	check(in->str, POL_ACCEPT, FALSE,
	      "BAD * toobig Command too long\nCMD a2 NOOP\n");
	/* a literal size that is not a 32-bit number */
	check("a1 X {99999999999}\r\na2 NOOP\r\n", POL_ACCEPT, TRUE,
	      "BAD a1 toobig Literal too big\nCMD a2 NOOP\n");
	check("a1 X {99999999999+}\r\na2 NOOP\r\n", POL_ACCEPT, TRUE,
	      "BAD a1 toobig Literal too big\nCLOSE Literal too big\n");
}

static void
test_resync(void)
{
	check("a1 FETCH (1\r\na2 NOOP\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Missing ')'\nCMD a2 NOOP\n");
	check("a1 X )\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Unexpected ')'\n");
	check("a1 X \"abc\r\na2 NOOP\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Unterminated quoted string\nCMD a2 NOOP\n");
	check("a1 X \"a\\b\"\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Bad escape in a quoted string\n");
	check("a1 X a\"b\r\na1 X a{b\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Invalid character in an atom\n"
	      "BAD a1 syntax Invalid character in an atom\n");
	check("a1 X a\rb\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Invalid character in an atom\n");
	check("a1 X \"a\rb\"\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax CR in a quoted string\n");
	check("a1 X (a)(b)\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Missing space between arguments\n");
	check("+a NOOP\r\n(x NOOP\r\n* NOOP\r\n", POL_ACCEPT, FALSE,
	      "BAD * syntax Invalid tag\nBAD * syntax Invalid tag\n"
	      "BAD * syntax Invalid tag\n");
	check("a1\r\na2 \r\na3 (\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Missing command\n"
	      "BAD a2 syntax Invalid command name\n"
	      "BAD a3 syntax Invalid command name\n");
	check("a1 FETCH 1 BODY[HEADER\r\na2 NOOP\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Unterminated section\nCMD a2 NOOP\n");
	/* a bad line ending in {N+}: its octets are not commands */
	check("a1 X ) {9+}\r\na2 NOOP\r\n\r\na3 NOOP\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Unexpected ')'\nCMD a3 NOOP\n");
	/* ... chained: the skipped literal's line ends in another one */
	check("a1 X ) {2+}\r\nab {3+}\r\nxyz\r\na3 NOOP\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Unexpected ')'\nCMD a3 NOOP\n");
	/* a bad line ending in {N}: the client gets no "+" and gives up */
	check("a1 X ) {9}\r\na2 NOOP\r\n", POL_ACCEPT, FALSE,
	      "BAD a1 syntax Unexpected ')'\nCMD a2 NOOP\n");
	/* a flood of bad lines, each answered once */
	check("x\r\nx\r\nx\r\n", POL_ACCEPT, FALSE,
	      "BAD x syntax Missing command\nBAD x syntax Missing command\n"
	      "BAD x syntax Missing command\n");
}

static void
test_nesting(void)
{
	g_autoptr(GString) in = g_string_new("a1 X ");
	g_autoptr(GString) ok = g_string_new("a1 X ");

	for (guint i = 0; i < 40; i++)
		g_string_append_c(in, '(');
	for (guint i = 0; i < 40; i++)
		g_string_append_c(in, ')');
	g_string_append(in, "\r\na2 NOOP\r\n");
	check(in->str, POL_ACCEPT, TRUE,
	      "BAD a1 depth Lists nested too deep\nCMD a2 NOOP\n");
	for (guint i = 0; i < PB_IMAP_PARSER_MAX_DEPTH; i++)
		g_string_append_c(ok, '(');
	for (guint i = 0; i < PB_IMAP_PARSER_MAX_DEPTH; i++)
		g_string_append_c(ok, ')');
	g_string_append(ok, "\r\n");
	{
		g_autofree char *log =
		    drive(ok->str, ok->len, 1, POL_ACCEPT, TRUE, NULL);

		g_assert_true(g_str_has_prefix(log, "CMD a1 X (((("));
	}
}

static void
test_nul_8bit(void)
{
	static const char nul_quoted[] = "a1 LOGIN \"a\0b\" x\r\na2 NOOP\r\n";
	static const char nul_lit[] = "a1 LOGIN {3}\r\na\0b x\r\na2 NOOP\r\n";
	static const char nul_atom[] = "a1 LOGIN a\0b x\r\na2 NOOP\r\n";

	check_len(nul_quoted, sizeof(nul_quoted) - 1, POL_ACCEPT, FALSE,
	          "BAD a1 syntax NUL in a command\nCMD a2 NOOP\n");
	check_len(
	    nul_lit, sizeof(nul_lit) - 1, POL_ACCEPT, FALSE,
	    "LIT a1 3 d0 +\nBAD a1 syntax NUL in a literal\nCMD a2 NOOP\n");
	check_len(nul_atom, sizeof(nul_atom) - 1, POL_ACCEPT, FALSE,
	          "BAD a1 syntax NUL in a command\nCMD a2 NOOP\n");
	/* 8-bit octets in quoted strings are kept (UTF-8 in SEARCH) */
	check("a1 SEARCH CHARSET UTF-8 SUBJECT \"h\xc3\xa9\"\r\n", POL_ACCEPT,
	      TRUE, "CMD a1 SEARCH CHARSET UTF-8 SUBJECT \"h\xc3\xa9\"\n");
}

static void
test_starttls(void)
{
	static const char in[] = "a1 STARTTLS\r\na2 LOGIN alice secret\r\n";

	for (gsize chunk = 0; chunk < 4; chunk++) {
		gsize stopped = 0;
		g_autofree char *log =
		    drive(in, strlen(in), chunk, POL_ACCEPT, FALSE, &stopped);

		/* the parser stops right after STARTTLS's LF: the caller
		 * purges the rest before TLS */
		g_assert_cmpstr(log, ==, "CMD a1 STARTTLS\n");
		g_assert_cmpuint(stopped, ==, strlen("a1 STARTTLS\r\n"));
	}
}

static void
test_raw_line(void)
{
	check("a1 AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\na2 NOOP\r\n",
	      POL_ACCEPT, FALSE,
	      "CMD a1 AUTHENTICATE PLAIN\nLINE AGFsaWNlAHNlY3JldA==\n"
	      "CMD a2 NOOP\n");
	/* a raw line is not parsed: quotes and braces are just text */
	check("a1 IDLE\r\n\"{5+}\r\na2 NOOP\r\n", POL_ACCEPT, TRUE,
	      "CMD a1 IDLE\nLINE \"{5+}\nCMD a2 NOOP\n");
	check("a1 IDLE\r\n\r\n", POL_ACCEPT, TRUE, "CMD a1 IDLE\nLINE \n");
	/* over the budget or with a NUL: BAD without a tag (the session
	 * knows whose line it was), then in step; a {N+} at the end of an
	 * over-long raw line is text, not a literal */
	{
		static const char nul[] = "a1 IDLE\r\nDO NE\0\r\na2 NOOP\r\n";
		g_autofree char *big = g_strnfill(9000, 'x');
		g_autofree char *in = g_strdup_printf(
		    "a1 AUTHENTICATE PLAIN\r\n%s {3+}\r\na2 NOOP\r\n", big);

		check(in, POL_ACCEPT, FALSE,
		      "CMD a1 AUTHENTICATE PLAIN\n"
		      "BAD * toobig Command too long\nCMD a2 NOOP\n");
		check_len(nul, sizeof(nul) - 1, POL_ACCEPT, TRUE,
		          "CMD a1 IDLE\nBAD * syntax NUL in a line\n"
		          "CMD a2 NOOP\n");
	}
}

/* The session's own budget (e.g. from the configuration). */
static void
test_max_command(void)
{
	g_autoptr(PbImapParser) p = pb_imap_parser_new();
	g_autofree char *xs = g_strnfill(3000, 'x');
	g_autofree char *line = g_strdup_printf("a1 X %s\r\n", xs);
	gsize n;

	pb_imap_parser_set_max_command(p, 2048);
	g_assert_cmpint(pb_imap_parser_feed(p, line, strlen(line), &n), ==,
	                PB_IMAP_PARSE_BAD);
	g_assert_cmpint(pb_imap_parser_bad_kind(p), ==, PB_IMAP_BAD_TOO_BIG);
	g_assert_cmpuint(n, ==, 2048);
	g_assert_cmpint(pb_imap_parser_feed(p, line + n, strlen(line) - n, &n),
	                ==, PB_IMAP_PARSE_MORE);
	pb_imap_parser_set_max_command(p, 4096);
	g_assert_cmpint(pb_imap_parser_feed(p, line, strlen(line), &n), ==,
	                PB_IMAP_PARSE_COMMAND);
	g_assert_cmpuint(pb_imap_parser_command(p)->size, ==, strlen(line));
}

/* ------------------------------------------------------------------ */
/* typed helpers: a parser holding one parsed command */

typedef struct {
	PbImapParser *p;
	const PbImapCommand *c;
} Cmd;

static Cmd
parse(const char *line)
{
	Cmd c = {pb_imap_parser_new(), NULL};
	gsize n, off = 0, len = strlen(line);
	PbImapParseResult r;

	pb_imap_parser_set_authenticated(c.p, TRUE);
	while ((r = pb_imap_parser_feed(c.p, line + off, len - off, &n)) ==
	       PB_IMAP_PARSE_LITERAL) {
		off += n;
		g_assert_cmpint(pb_imap_parser_literal_accept(c.p), <=,
		                PB_IMAP_LITERAL_FEED);
	}
	g_assert_cmpint(r, ==, PB_IMAP_PARSE_COMMAND);
	c.c = pb_imap_parser_command(c.p);
	return c;
}

static void
cmd_clear(Cmd *c)
{
	pb_imap_parser_free(c->p);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Cmd, cmd_clear)

static void
test_strings(void)
{
	g_auto(Cmd) c = parse("a1 X INBOX \"a b\" {2}\r\nxy NIL inbox "
	                      "\\bad (l) inbox.Foo inboxes Inbox.x.inbox\r\n");
	const char *s;
	gsize len;
	char *name = NULL;
	g_autoptr(GError) err = NULL;

	g_assert_cmpuint(c.c->n_args, ==, 10);
	g_assert_true(pb_imap_arg_astring(&c.c->args[0], &s, &len));
	g_assert_cmpstr(s, ==, "INBOX");
	g_assert_false(pb_imap_arg_string(&c.c->args[0], &s, &len));
	g_assert_true(pb_imap_arg_string(&c.c->args[1], &s, &len));
	g_assert_cmpstr(s, ==, "a b");
	g_assert_true(pb_imap_arg_string(&c.c->args[2], &s, &len));
	g_assert_cmpuint(len, ==, 2);
	g_assert_true(pb_imap_arg_nstring(&c.c->args[3], &s, &len));
	g_assert_null(s);
	g_assert_false(pb_imap_arg_astring(&c.c->args[5], &s, &len));
	g_assert_true(pb_imap_arg_mailbox(&c.c->args[4], &name, &err));
	g_assert_cmpstr(name, ==, "INBOX");
	g_free(name);
	g_assert_true(pb_imap_arg_mailbox(&c.c->args[1], &name, &err));
	g_assert_cmpstr(name, ==, "a b");
	g_free(name);
	g_assert_true(pb_imap_arg_mailbox(&c.c->args[7], &name, &err));
	g_assert_cmpstr(name, ==, "INBOX.Foo");
	g_free(name);
	g_assert_true(pb_imap_arg_mailbox(&c.c->args[8], &name, &err));
	g_assert_cmpstr(name, ==, "inboxes");
	g_free(name);
	g_assert_true(pb_imap_arg_mailbox(&c.c->args[9], &name, &err));
	g_assert_cmpstr(name, ==, "INBOX.x.inbox");
	g_free(name);
	g_assert_false(pb_imap_arg_mailbox(&c.c->args[6], &name, &err));
	g_assert_error(err, PB_ERROR, PB_ERROR_DATA);
	g_assert_true(pb_imap_arg_is_atom(&c.c->args[4], "INBOX"));
}

static PbImapSeqSet *
seq(const char *s)
{
	g_autoptr(GError) err = NULL;
	PbImapSeqSet *set = pb_imap_seqset_parse(s, strlen(s), &err);

	g_assert_no_error(err);
	return set;
}

static void
test_seqset(void)
{
	static const char *const bad[] = {
	    "",   "0", "1:",  ":1", ",",     "1,,2", "4294967296",
	    "01", "a", "1:0", "1,", "1:2:3", "**",   "99999999999"};
	g_autoptr(PbImapSeqSet) a = seq("5:*");
	g_autoptr(PbImapSeqSet) ra = pb_imap_seqset_resolve(a, 3);
	g_autoptr(PbImapSeqSet) b = seq("1:4294967295");
	g_autoptr(PbImapSeqSet) rb = pb_imap_seqset_resolve(b, 10);
	g_autoptr(PbImapSeqSet) rb0 = pb_imap_seqset_resolve(b, 0);
	g_autoptr(PbImapSeqSet) c = seq("7,1:3,2:5,*:9,12");
	g_autoptr(PbImapSeqSet) rc = pb_imap_seqset_resolve(c, 10);
	PbImapSeqIter it;
	guint32 n;
	GString *got = g_string_new(NULL);

	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autoptr(GError) err = NULL;

		g_assert_null(
		    pb_imap_seqset_parse(bad[i], strlen(bad[i]), &err));
		g_assert_error(err, PB_ERROR, PB_ERROR_DATA);
	}
	/* RFC 3501: "5:*" with 3 messages is 3:5, so 3 is in it */
	g_assert_cmpuint(ra->n, ==, 1);
	g_assert_cmpuint(ra->ranges[0].lo, ==, 3);
	g_assert_cmpuint(ra->ranges[0].hi, ==, 3);
	g_assert_cmpuint(pb_imap_seqset_max(a), ==, 5);
	/* never expanded: the whole UID space is one range */
	g_assert_cmpuint(b->n, ==, 1);
	g_assert_cmpuint(b->ranges[0].hi, ==, G_MAXUINT32);
	g_assert_cmpuint(pb_imap_seqset_count(rb), ==, 10);
	g_assert_cmpuint(rb0->n, ==, 0);
	g_assert_false(pb_imap_seqset_contains(rb0, 1));
	/* sorted and merged: 1:5, 7, 9:10 */
	g_assert_cmpuint(rc->n, ==, 3);
	g_assert_cmpuint(pb_imap_seqset_count(rc), ==, 8);
	g_assert_true(pb_imap_seqset_contains(rc, 1));
	g_assert_true(pb_imap_seqset_contains(rc, 5));
	g_assert_false(pb_imap_seqset_contains(rc, 6));
	g_assert_true(pb_imap_seqset_contains(rc, 7));
	g_assert_false(pb_imap_seqset_contains(rc, 8));
	g_assert_true(pb_imap_seqset_contains(rc, 10));
	g_assert_false(pb_imap_seqset_contains(rc, 11));
	g_assert_false(pb_imap_seqset_contains(rc, 0));
	pb_imap_seqset_iter_init(&it, rc);
	while (pb_imap_seqset_iter_next(&it, &n))
		g_string_append_printf(got, "%u ", n);
	g_assert_cmpstr(got->str, ==, "1 2 3 4 5 7 9 10 ");
	g_string_free(got, TRUE);
	/* the top of the UID space iterates without wrapping */
	{
		g_autoptr(PbImapSeqSet) t = seq("4294967294:*");
		g_autoptr(PbImapSeqSet) rt =
		    pb_imap_seqset_resolve(t, G_MAXUINT32);
		guint count = 0;

		pb_imap_seqset_iter_init(&it, rt);
		while (pb_imap_seqset_iter_next(&it, &n))
			count++;
		g_assert_cmpuint(count, ==, 2);
	}
}

/* 1,3,5,... as long as the budget allows, and beyond it */
static void
test_seqset_huge(void)
{
	g_autoptr(GString) set = g_string_new("1");
	g_autoptr(GString) line = NULL;
	g_autoptr(GError) err = NULL;
	g_autoptr(PbImapSeqSet) s = NULL;
	g_autoptr(PbImapSeqSet) r = NULL;
	g_autofree char *log = NULL;

	for (guint i = 3; set->len < 60000; i += 2)
		g_string_append_printf(set, ",%u", i);
	line = g_string_new(NULL);
	g_string_printf(line, "a1 FETCH %s FLAGS\r\n", set->str);
	{
		g_auto(Cmd) c = parse(line->str);

		g_assert_true(pb_imap_arg_seqset(&c.c->args[0], &s, &err));
	}
	g_assert_no_error(err);
	r = pb_imap_seqset_resolve(s, G_MAXUINT32);
	g_assert_cmpuint(r->n, ==, s->n);
	g_assert_cmpuint(pb_imap_seqset_count(r), ==, s->n);
	g_assert_true(pb_imap_seqset_contains(r, 4001));
	g_assert_false(pb_imap_seqset_contains(r, 4002));
	/* before login the same line is over the budget */
	log = drive(line->str, line->len, 0, POL_ACCEPT, FALSE, NULL);
	g_assert_cmpstr(log, ==, "BAD a1 toobig Command too long\n");
	g_clear_pointer(&log, g_free);
	/* and after login, twice as long */
	g_string_printf(line, "a1 FETCH %s,%s FLAGS\r\na2 NOOP\r\n", set->str,
	                set->str);
	log = drive(line->str, line->len, 0, POL_ACCEPT, TRUE, NULL);
	g_assert_cmpstr(log, ==,
	                "BAD a1 toobig Command too long\nCMD a2 NOOP\n");
}

static void
test_flags(void)
{
	g_auto(Cmd) c = parse("a1 X (\\Seen \\answered $Forwarded foo FOO "
	                      "\\Recent) (\\Foo) (a]b) (\"q\") "
	                      "(caf\xc3\xa9) ()\r\n");
	g_auto(PbImapFlags) f = {0};
	g_autoptr(GError) err = NULL;

	g_assert_true(pb_imap_arg_flag_list(&c.c->args[0], &f, &err));
	g_assert_no_error(err);
	g_assert_cmpuint(f.system, ==,
	                 PB_IMAP_FLAG_SEEN | PB_IMAP_FLAG_ANSWERED |
	                     PB_IMAP_FLAG_RECENT);
	g_assert_cmpuint(f.keywords->len, ==, 2);
	g_assert_cmpstr(f.keywords->pdata[0], ==, "$Forwarded");
	g_assert_cmpstr(f.keywords->pdata[1], ==, "foo");
	pb_imap_flags_clear(&f);
	for (guint i = 1; i <= 4; i++) {
		g_clear_error(&err);
		g_assert_false(pb_imap_arg_flag_list(&c.c->args[i], &f, &err));
		g_assert_error(err, PB_ERROR, PB_ERROR_DATA);
		g_assert_null(f.keywords);
	}
	g_assert_true(pb_imap_arg_flag_list(&c.c->args[5], &f, NULL));
	g_assert_cmpuint(f.system, ==, 0);
	g_assert_null(f.keywords);
	g_assert_false(pb_imap_arg_flag_list(&c.c->args[0].list[0], &f, NULL));
	g_assert_true(pb_imap_keyword_valid("$Junk", 5));
	g_assert_false(pb_imap_keyword_valid("a%", 2));
	g_assert_false(pb_imap_keyword_valid("", 0));
}

static void
test_store(void)
{
	g_auto(Cmd) c = parse("a1 STORE 1:* +FLAGS.SILENT (\\Deleted $x)\r\n");
	g_auto(Cmd) d = parse("a2 STORE 1 -flags \\Seen \\Flagged\r\n");
	g_auto(Cmd) e = parse("a3 STORE 1 FLAGS ()\r\n");
	g_auto(Cmd) bad = parse("a4 STORE 1 XFLAGS (\\Seen)\r\n");
	g_auto(Cmd) bad2 = parse("a5 STORE 1 FLAGS\r\n");
	g_auto(PbImapStore) st = {0};
	g_autoptr(GError) err = NULL;

	g_assert_true(
	    pb_imap_args_store(c.c->args + 1, c.c->n_args - 1, &st, &err));
	g_assert_cmpint(st.mode, ==, PB_IMAP_STORE_ADD);
	g_assert_true(st.silent);
	g_assert_cmpuint(st.flags.system, ==, PB_IMAP_FLAG_DELETED);
	g_assert_cmpstr(st.flags.keywords->pdata[0], ==, "$x");
	pb_imap_store_clear(&st);
	g_assert_true(
	    pb_imap_args_store(d.c->args + 1, d.c->n_args - 1, &st, &err));
	g_assert_cmpint(st.mode, ==, PB_IMAP_STORE_REMOVE);
	g_assert_false(st.silent);
	g_assert_cmpuint(st.flags.system, ==,
	                 PB_IMAP_FLAG_SEEN | PB_IMAP_FLAG_FLAGGED);
	pb_imap_store_clear(&st);
	g_assert_true(
	    pb_imap_args_store(e.c->args + 1, e.c->n_args - 1, &st, &err));
	g_assert_cmpint(st.mode, ==, PB_IMAP_STORE_SET);
	g_assert_cmpuint(st.flags.system, ==, 0);
	pb_imap_store_clear(&st);
	g_assert_false(
	    pb_imap_args_store(bad.c->args + 1, bad.c->n_args - 1, &st, &err));
	g_clear_error(&err);
	g_assert_false(pb_imap_args_store(bad2.c->args + 1, bad2.c->n_args - 1,
	                                  &st, &err));
}

static void
test_dates(void)
{
	static const char *const bad[] = {"31-Feb-2020",  "29-Feb-2021",
	                                  "1-Foo-2000",   "1-Feb-94",
	                                  "123-Feb-2000", "0-Jan-2000",
	                                  "1-Jan-0000",   " 1-Jan-2000",
	                                  "1-Jan-2000x",  ""};
	g_auto(Cmd) c = parse("a1 X 1-Feb-1994 \"29-Feb-2000\" "
	                      "\"17-Jul-1996 02:44:25 -0700\" "
	                      "\" 7-Jul-1996 02:44:25 +0000\" "
	                      "\"17-Jul-1996 24:00:00 +0000\"\r\n");
	PbImapDate d;
	gint64 t;
	int zone;
	g_autoptr(GError) err = NULL;

	g_assert_true(pb_imap_arg_date(&c.c->args[0], &d, &err));
	g_assert_cmpuint(d.year, ==, 1994);
	g_assert_cmpuint(d.month, ==, 2);
	g_assert_cmpuint(d.day, ==, 1);
	g_assert_true(pb_imap_arg_date(&c.c->args[1], &d, &err));
	g_assert_cmpuint(d.day, ==, 29);
	for (guint i = 0; i < G_N_ELEMENTS(bad); i++)
		g_assert_false(pb_imap_parse_date(bad[i], strlen(bad[i]), &d));
	g_assert_true(pb_imap_parse_date("1-jan-1970", 10, &d));
	g_assert_cmpint(pb_imap_date_days(&d), ==, 0);
	g_assert_true(pb_imap_parse_date("31-Dec-1969", 11, &d));
	g_assert_cmpint(pb_imap_date_days(&d), ==, -1);
	g_assert_true(pb_imap_parse_date("1-Mar-2000", 10, &d));
	g_assert_cmpint(pb_imap_date_days(&d), ==, 11017);
	g_assert_true(pb_imap_arg_date_time(&c.c->args[2], &t, &zone, &err));
	g_assert_cmpint(t, ==, 837596665);
	g_assert_cmpint(zone, ==, -420);
	g_assert_true(pb_imap_arg_date_time(&c.c->args[3], &t, &zone, &err));
	g_assert_cmpint(t, ==, 836707465);
	g_assert_false(pb_imap_arg_date_time(&c.c->args[4], &t, &zone, &err));
	g_assert_error(err, PB_ERROR, PB_ERROR_DATA);
	/* a date-time is quoted; a date is not a date-time */
	g_clear_error(&err);
	g_assert_false(pb_imap_arg_date_time(&c.c->args[0], &t, NULL, &err));
}

static PbImapFetch *
fetch_of(const char *line)
{
	g_auto(Cmd) c = parse(line);
	g_autoptr(GError) err = NULL;
	PbImapFetch *f = NULL;

	if (!pb_imap_arg_fetch(&c.c->args[1], &f, &err))
		g_assert_error(err, PB_ERROR, PB_ERROR_DATA);
	return f;
}

/* '[' starts a section only in FETCH and UID FETCH */
static void
test_sections_fetch_only(void)
{
	g_auto(Cmd) rename = parse("a1 RENAME body[a b]\r\n");
	g_auto(Cmd) fetch = parse("a1 FETCH 1 body[HEADER.FIELDS (A B)]\r\n");
	g_auto(Cmd) uid = parse("a1 UID FETCH 1 BODY.PEEK[1 2]\r\n");
	g_auto(Cmd) search = parse("a1 UID SEARCH BODY[x y]\r\n");

	g_assert_cmpuint(rename.c->n_args, ==, 2);
	g_assert_cmpstr(rename.c->args[0].str, ==, "body[a");
	g_assert_cmpstr(rename.c->args[1].str, ==, "b]");
	g_assert_cmpuint(fetch.c->n_args, ==, 2);
	g_assert_cmpstr(fetch.c->args[1].str, ==, "body[HEADER.FIELDS (A B)]");
	g_assert_cmpuint(uid.c->n_args, ==, 3);
	g_assert_cmpstr(uid.c->args[2].str, ==, "BODY.PEEK[1 2]");
	g_assert_cmpuint(search.c->n_args, ==, 3);
}

static void
test_fetch(void)
{
	static const char *const bad[] = {"BODY[MIME]",
	                                  "BODY[1.]",
	                                  "BODY[HEADER.FIELDS ()]",
	                                  "BODY[]<1>",
	                                  "BODY[]<0.0>",
	                                  "BODY[TEXTX]",
	                                  "()",
	                                  "(ALL)",
	                                  "FOO",
	                                  "BODY[0]",
	                                  "BODY[HEADER.FIELDS]",
	                                  "BODY[1.2.HEADER.FIELDS (A:B)]",
	                                  "BINARY[1]",
	                                  "\"FLAGS\"",
	                                  "BODY[1]<01.2>",
	                                  "BODY[HEADER.FIELDS (A B]"};
	g_autoptr(PbImapFetch) all = fetch_of("a1 FETCH 1 ALL\r\n");
	g_autoptr(PbImapFetch) full = fetch_of("a1 FETCH 1 full\r\n");
	g_autoptr(PbImapFetch) one = fetch_of("a1 FETCH 1 BODYSTRUCTURE\r\n");
	g_autoptr(PbImapFetch) f = fetch_of(
	    "a1 FETCH 1 (FLAGS uid BODY.PEEK[HEADER.FIELDS (From "
	    "\"To\")]<0.100> "
	    "BODY[1.2.MIME] body[] RFC822.HEADER rfc822 RFC822.TEXT "
	    "BODY[2.HEADER.FIELDS.NOT (X-A)] BODY[3.TEXT]<5.10> RFC822.SIZE "
	    "INTERNALDATE ENVELOPE BODY)\r\n");

	g_assert_cmpuint(all->items, ==,
	                 PB_IMAP_FETCH_FLAGS | PB_IMAP_FETCH_INTERNALDATE |
	                     PB_IMAP_FETCH_RFC822_SIZE |
	                     PB_IMAP_FETCH_ENVELOPE);
	g_assert_true(full->items & PB_IMAP_FETCH_BODY);
	g_assert_cmpuint(one->items, ==, PB_IMAP_FETCH_BODYSTRUCTURE);
	g_assert_cmpuint(f->items, ==,
	                 PB_IMAP_FETCH_FLAGS | PB_IMAP_FETCH_UID |
	                     PB_IMAP_FETCH_RFC822_SIZE |
	                     PB_IMAP_FETCH_INTERNALDATE |
	                     PB_IMAP_FETCH_ENVELOPE | PB_IMAP_FETCH_BODY);
	g_assert_cmpuint(f->n_bodies, ==, 8);
	/* as Dovecot answers: upper case, quoted where the client quoted */
	g_assert_cmpstr(f->bodies[0].name, ==,
	                "BODY[HEADER.FIELDS (FROM \"TO\")]<0>");
	g_assert_cmpint(f->bodies[0].kind, ==, PB_IMAP_SECTION_HEADER_FIELDS);
	g_assert_cmpstr(f->bodies[0].fields[1], ==, "TO");
	g_assert_null(f->bodies[0].fields[2]);
	g_assert_true(f->bodies[0].peek);
	g_assert_true(f->bodies[0].partial);
	g_assert_cmpuint(f->bodies[0].length, ==, 100);
	g_assert_cmpstr(f->bodies[1].name, ==, "BODY[1.2.MIME]");
	g_assert_cmpuint(f->bodies[1].n_part, ==, 2);
	g_assert_cmpuint(f->bodies[1].part[1], ==, 2);
	g_assert_false(f->bodies[1].peek);
	g_assert_cmpstr(f->bodies[2].name, ==, "BODY[]");
	g_assert_cmpint(f->bodies[2].kind, ==, PB_IMAP_SECTION_WHOLE);
	g_assert_cmpuint(f->bodies[2].n_part, ==, 0);
	g_assert_cmpstr(f->bodies[3].name, ==, "RFC822.HEADER");
	g_assert_true(f->bodies[3].peek);
	g_assert_cmpint(f->bodies[3].kind, ==, PB_IMAP_SECTION_HEADER);
	g_assert_cmpstr(f->bodies[4].name, ==, "RFC822");
	g_assert_false(f->bodies[4].peek);
	g_assert_cmpint(f->bodies[5].kind, ==, PB_IMAP_SECTION_TEXT);
	g_assert_cmpstr(f->bodies[6].name, ==,
	                "BODY[2.HEADER.FIELDS.NOT (X-A)]");
	g_assert_cmpstr(f->bodies[7].name, ==, "BODY[3.TEXT]<5>");
	g_assert_cmpuint(f->bodies[7].offset, ==, 5);
	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autofree char *line =
		    g_strdup_printf("a1 FETCH 1 %s\r\n", bad[i]);
		g_autoptr(PbImapFetch) b = fetch_of(line);

		if (b != NULL)
			g_test_message("accepted: %s", bad[i]);
		g_assert_null(b);
	}
}

static PbImapSearch *
search_of(const char *line)
{
	g_auto(Cmd) c = parse(line);
	g_autoptr(GError) err = NULL;
	PbImapSearch *s = NULL;
	guint skip = g_ascii_strcasecmp(c.c->name, "UID") == 0 ? 1 : 0;

	if (!pb_imap_args_search(c.c->args + skip, c.c->n_args - skip, &s,
	                         &err))
		g_assert_error(err, PB_ERROR, PB_ERROR_DATA);
	return s;
}

static void
render_key(GString *o, const PbImapSearchKey *k)
{
	static const char *const names[] = {
	    "ALL",    "AND",       "OR",      "NOT",    "SEQ",
	    "UID",    "ANSWERED",  "DELETED", "DRAFT",  "FLAGGED",
	    "SEEN",   "RECENT",    "KEYWORD", "HEADER", "BODY",
	    "TEXT",   "BEFORE",    "ON",      "SINCE",  "SENTBEFORE",
	    "SENTON", "SENTSINCE", "LARGER",  "SMALLER"};

	g_string_append(o, names[k->type]);
	if (k->field != NULL)
		g_string_append_printf(o, " %s", k->field);
	if (k->str != NULL)
		g_string_append_printf(o, " '%s'", k->str);
	if (k->type >= PB_IMAP_SKEY_BEFORE && k->type <= PB_IMAP_SKEY_SENTSINCE)
		g_string_append_printf(o, " %u-%u-%u", k->date.year,
		                       k->date.month, k->date.day);
	if (k->type == PB_IMAP_SKEY_LARGER || k->type == PB_IMAP_SKEY_SMALLER)
		g_string_append_printf(o, " %" G_GUINT64_FORMAT, k->number);
	if (k->set != NULL)
		g_string_append_printf(o, " %u:%u", k->set->ranges[0].lo,
		                       k->set->ranges[0].hi);
	if (k->n_children > 0) {
		g_string_append(o, " (");
		for (guint i = 0; i < k->n_children; i++) {
			if (i > 0)
				g_string_append(o, ", ");
			render_key(o, k->children[i]);
		}
		g_string_append_c(o, ')');
	}
}

static void
check_search(const char *line, const char *expected)
{
	g_autoptr(PbImapSearch) s = search_of(line);
	g_autoptr(GString) o = g_string_new(NULL);

	g_assert_nonnull(s);
	render_key(o, s->root);
	g_assert_cmpstr(o->str, ==, expected);
}

static void
test_search(void)
{
	static const char *const bad[] = {"FOO",
	                                  "OR SEEN",
	                                  "NOT",
	                                  "SINCE foo",
	                                  "LARGER x",
	                                  "LARGER -1",
	                                  "KEYWORD \\Seen",
	                                  "HEADER X",
	                                  "UID x",
	                                  "0",
	                                  "()",
	                                  "CHARSET",
	                                  "RETURN (SAVE) ALL",
	                                  "RETURN ALL",
	                                  "FROM (a)",
	                                  ""};
	g_autoptr(PbImapSearch) e = NULL;
	g_autoptr(GString) deep = g_string_new("a1 SEARCH");

	check_search("a1 UID SEARCH 1:* NOT DELETED\r\n",
	             "AND (SEQ 1:0, NOT (DELETED))");
	check_search("a1 SEARCH UNSEEN\r\n", "NOT (SEEN)");
	check_search("a1 SEARCH NEW\r\n", "AND (RECENT, NOT (SEEN))");
	check_search("a1 SEARCH OLD UNKEYWORD $Junk\r\n",
	             "AND (NOT (RECENT), NOT (KEYWORD '$Junk'))");
	check_search("a1 SEARCH OR FROM alice (TO bob CC \"c d\")\r\n",
	             "OR (HEADER FROM 'alice', AND (HEADER TO 'bob', "
	             "HEADER CC 'c d'))");
	check_search(
	    "a1 SEARCH header X-Spam yes SINCE 1-Feb-1994 "
	    "SENTBEFORE \"2-Mar-2001\" LARGER 100 smaller 4294967296\r\n",
	    "AND (HEADER X-SPAM 'yes', SINCE 1994-2-1, "
	    "SENTBEFORE 2001-3-2, LARGER 100, SMALLER 4294967296)");
	check_search("a1 SEARCH CHARSET UTF-8 TEXT {4}\r\nh\xc3\xa9! "
	             "BODY \"\"\r\n",
	             "AND (TEXT 'h\xc3\xa9!', BODY '')");
	check_search(
	    "a1 SEARCH UID 1:5 ANSWERED DRAFT FLAGGED RECENT SEEN ALL "
	    "BEFORE 1-Jan-2000 ON 1-Jan-2000 SENTON 1-Jan-2000 "
	    "SENTSINCE 1-Jan-2000 SUBJECT s BCC b UNANSWERED UNDELETED "
	    "UNDRAFT UNFLAGGED\r\n",
	    "AND (UID 1:5, ANSWERED, DRAFT, FLAGGED, RECENT, SEEN, ALL, "
	    "BEFORE 2000-1-1, ON 2000-1-1, SENTON 2000-1-1, "
	    "SENTSINCE 2000-1-1, HEADER SUBJECT 's', HEADER BCC 'b', "
	    "NOT (ANSWERED), NOT (DELETED), NOT (DRAFT), "
	    "NOT (FLAGGED))");
	e = search_of("a1 SEARCH RETURN (MIN COUNT) CHARSET us-ascii ALL\r\n");
	g_assert_true(e->esearch);
	g_assert_cmpuint(e->ret, ==,
	                 PB_IMAP_SEARCH_RETURN_MIN |
	                     PB_IMAP_SEARCH_RETURN_COUNT);
	g_assert_cmpstr(e->charset, ==, "us-ascii");
	g_clear_pointer(&e, pb_imap_search_free);
	e = search_of("a1 SEARCH RETURN () ALL\r\n");
	g_assert_cmpuint(e->ret, ==, PB_IMAP_SEARCH_RETURN_ALL);
	g_clear_pointer(&e, pb_imap_search_free);
	e = search_of("a1 SEARCH ALL\r\n");
	g_assert_false(e->esearch);
	g_assert_null(e->charset);
	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autofree char *line =
		    g_strdup_printf("a1 SEARCH %s\r\n", bad[i]);
		g_autoptr(PbImapSearch) b = search_of(line);

		if (b != NULL)
			g_test_message("accepted: %s", bad[i]);
		g_assert_null(b);
	}
	g_clear_pointer(&e, pb_imap_search_free);
	/* NOT NOT NOT ... and OR OR OR ... are bounded */
	for (guint i = 0; i < 200; i++)
		g_string_append(deep, " NOT");
	g_string_append(deep, " ALL\r\n");
	g_assert_null((e = search_of(deep->str)));
	g_string_assign(deep, "a1 SEARCH");
	for (guint i = 0; i < 200; i++)
		g_string_append(deep, " OR SEEN");
	g_string_append(deep, " ALL\r\n");
	g_assert_null((e = search_of(deep->str)));
	g_string_assign(deep, "a1 SEARCH");
	for (guint i = 0; i < 40; i++)
		g_string_append(deep, " OR SEEN");
	g_string_append(deep, " ALL\r\n");
	g_assert_nonnull((e = search_of(deep->str)));
}

static void
test_list_args(void)
{
	g_auto(Cmd) a = parse("a1 LIST \"\" *\r\n");
	g_auto(Cmd) b = parse("a1 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" "
	                      "(INBOX \"Sent Items\" %.%) RETURN (CHILDREN "
	                      "STATUS (MESSAGES UNSEEN) SPECIAL-USE)\r\n");
	g_auto(Cmd) c = parse("a1 LIST (RECURSIVEMATCH) \"\" %\r\n");
	g_auto(Cmd) d = parse("a1 LIST \"\" % RETURN (FOO)\r\n");
	g_auto(Cmd) e = parse("a1 LIST \"\" % extra\r\n");
	g_auto(Cmd) f = parse("a1 LIST \"\" % RETURN (STATUS)\r\n");
	g_auto(Cmd) g = parse("a1 LIST \"\"\r\n");
	g_auto(Cmd) h = parse("a1 LIST \"\" \\x\r\n");
	g_auto(Cmd) i = parse("a1 LIST () Mail ()\r\n");
	g_autoptr(PbImapList) l = NULL;
	g_autoptr(GError) err = NULL;

	g_assert_true(pb_imap_args_list(a.c->args, a.c->n_args, &l, &err));
	g_assert_cmpstr(l->reference, ==, "");
	g_assert_cmpstr(l->patterns[0], ==, "*");
	g_assert_null(l->patterns[1]);
	g_assert_false(l->extended);
	g_clear_pointer(&l, pb_imap_list_free);
	g_assert_true(pb_imap_args_list(b.c->args, b.c->n_args, &l, &err));
	g_assert_true(l->extended);
	g_assert_cmpuint(l->select, ==,
	                 PB_IMAP_LIST_SEL_SUBSCRIBED |
	                     PB_IMAP_LIST_SEL_RECURSIVEMATCH);
	g_assert_cmpuint(l->ret, ==,
	                 PB_IMAP_LIST_RET_CHILDREN | PB_IMAP_LIST_RET_STATUS |
	                     PB_IMAP_LIST_RET_SPECIAL_USE);
	g_assert_cmpuint(l->status_items, ==,
	                 PB_IMAP_STATUS_MESSAGES | PB_IMAP_STATUS_UNSEEN);
	g_assert_cmpstr(l->patterns[1], ==, "Sent Items");
	g_assert_cmpstr(l->patterns[2], ==, "%.%");
	g_clear_pointer(&l, pb_imap_list_free);
	g_assert_false(pb_imap_args_list(c.c->args, c.c->n_args, &l, &err));
	g_clear_error(&err);
	g_assert_false(pb_imap_args_list(d.c->args, d.c->n_args, &l, &err));
	g_clear_error(&err);
	g_assert_false(pb_imap_args_list(e.c->args, e.c->n_args, &l, &err));
	g_clear_error(&err);
	g_assert_false(pb_imap_args_list(f.c->args, f.c->n_args, &l, &err));
	g_clear_error(&err);
	g_assert_false(pb_imap_args_list(g.c->args, g.c->n_args, &l, &err));
	g_clear_error(&err);
	g_assert_false(pb_imap_args_list(h.c->args, h.c->n_args, &l, &err));
	g_clear_error(&err);
	g_assert_false(pb_imap_args_list(i.c->args, i.c->n_args, &l, &err));
	g_assert_error(err, PB_ERROR, PB_ERROR_DATA);
}

static void
test_status(void)
{
	g_auto(Cmd) c =
	    parse("a1 STATUS INBOX (MESSAGES uidnext SIZE "
	          "UIDVALIDITY RECENT UNSEEN) () (FOO) MESSAGES\r\n");
	guint items;
	g_autoptr(GError) err = NULL;

	g_assert_true(pb_imap_arg_status_items(&c.c->args[1], &items, &err));
	g_assert_cmpuint(items, ==, 0x3f);
	for (guint i = 2; i <= 4; i++) {
		g_clear_error(&err);
		g_assert_false(
		    pb_imap_arg_status_items(&c.c->args[i], &items, &err));
		g_assert_error(err, PB_ERROR, PB_ERROR_DATA);
	}
}

static void
test_list_match(void)
{
	static const struct {
		const char *pat, *name;
		gboolean match, below;
	} cases[] = {
	    {"*", "INBOX", TRUE, TRUE},
	    {"%", "INBOX", TRUE, FALSE},
	    {"%", "A.B", FALSE, FALSE},
	    {"*", "A.B", TRUE, TRUE},
	    {"A.%", "A.B", TRUE, FALSE},
	    {"A.%", "A", FALSE, TRUE},
	    {"A.*", "A.B.C", TRUE, TRUE},
	    {"A%", "AB", TRUE, FALSE},
	    {"A%", "A", TRUE, FALSE},
	    {"%.%", "A.B", TRUE, FALSE},
	    {"%.%", "A", FALSE, TRUE},
	    {"inbox", "INBOX", TRUE, FALSE},
	    {"inbox.%", "INBOX.x", TRUE, FALSE},
	    {"INBOX", "inboxes", FALSE, FALSE},
	    {"Sent", "sent", FALSE, FALSE},
	    {"", "", TRUE, FALSE},
	    {"", "A", FALSE, FALSE},
	    {"*B*", "A.B.C", TRUE, TRUE},
	    {"%B%", "A.B.C", FALSE, FALSE},
	    {"A*C", "A.B.C", TRUE, TRUE},
	    {"A%C", "A.B.C", FALSE, FALSE},
	    {"%*", "A.B", TRUE, TRUE},
	    {"*%", "A.B", TRUE, TRUE},
	    {"%%.%%", "A.B", TRUE, FALSE},
	    {"A.%%", "A", FALSE, TRUE},
	    {"%.B", "A", FALSE, TRUE},
	    {"%.C", "A.B", FALSE, FALSE},
	    {"*.C", "A.B", FALSE, TRUE},
	};
	g_autoptr(GString) name = g_string_new(NULL);
	g_autoptr(GString) pat = g_string_new(NULL);
	clock_t start;

	for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
		if (pb_imap_list_match(cases[i].pat, cases[i].name, '.') !=
		        cases[i].match ||
		    pb_imap_list_match_below(cases[i].pat, cases[i].name,
		                             '.') != cases[i].below)
			g_test_message("case %s %s", cases[i].pat,
			               cases[i].name);
		g_assert_cmpint(
		    pb_imap_list_match(cases[i].pat, cases[i].name, '.'), ==,
		    cases[i].match);
		g_assert_cmpint(
		    pb_imap_list_match_below(cases[i].pat, cases[i].name, '.'),
		    ==, cases[i].below);
	}
	/* the backtracking killer: no exponential time */
	for (guint i = 0; i < 2000; i++)
		g_string_append_c(name, 'a');
	for (guint i = 0; i < 200; i++)
		g_string_append(pat, "*a%");
	g_string_append_c(pat, 'b');
	/* CPU time, not wall time: the machine may be busy */
	start = clock();
	g_assert_false(pb_imap_list_match(pat->str, name->str, '.'));
	/* a pattern as long as the budget allows, against 1000 names of
	 * 255 octets: bounded by the names, not the pattern */
	g_string_truncate(pat, 0);
	while (pat->len < 60000)
		g_string_append(pat, "*a%%b");
	g_string_truncate(name, 255);
	for (guint i = 0; i < 1000; i++) {
		g_assert_false(pb_imap_list_match(pat->str, name->str, '.'));
		g_assert_true(
		    pb_imap_list_match_below(pat->str, name->str, '.'));
	}
	g_assert_cmpint(clock() - start, <, 2 * CLOCKS_PER_SEC);
}

/* The obvious backtracking matcher, for small inputs only. */
static gboolean
naive_match(const char *pat, const char *name)
{
	if (*pat == '\0')
		return *name == '\0';
	if (*pat == '*' || *pat == '%') {
		for (const char *n = name;; n++) {
			if (naive_match(pat + 1, n))
				return TRUE;
			if (*n == '\0' || (*pat == '%' && *n == '.'))
				return FALSE;
		}
	}
	return *name == *pat && naive_match(pat + 1, name + 1);
}

static void
random_word(GRand *r, GString *w, const char *alphabet, guint max)
{
	guint len = (guint)g_rand_int_range(r, 0, (gint32)max + 1);

	g_string_truncate(w, 0);
	for (guint i = 0; i < len; i++)
		g_string_append_c(
		    w,
		    alphabet[g_rand_int_range(r, 0, (gint32)strlen(alphabet))]);
}

/* The NFA against the backtracking matcher on 20000 random pairs; and
 * "below" against matching some child name. */
static void
test_list_match_random(void)
{
	g_autoptr(GRand) r = g_rand_new_with_seed(12345);
	g_autoptr(GString) pat = g_string_new(NULL);
	g_autoptr(GString) name = g_string_new(NULL);
	g_autoptr(GString) child = g_string_new(NULL);

	for (guint i = 0; i < 20000; i++) {
		gboolean below = FALSE;

		random_word(r, pat, "ab.*%", 8);
		random_word(r, name, "ab.", 6);
		g_assert_cmpint(pb_imap_list_match(pat->str, name->str, '.'),
		                ==, naive_match(pat->str, name->str));
		/* every child of up to 8 octets */
		for (guint k = 0; k < 400 && !below; k++) {
			random_word(r, child, "ab.", 8);
			if (child->len == 0)
				continue;
			g_string_prepend(child, ".");
			g_string_prepend(child, name->str);
			below = naive_match(pat->str, child->str);
		}
		if (below)
			g_assert_true(
			    pb_imap_list_match_below(pat->str, name->str, '.'));
	}
}

static void
test_append(void)
{
	g_auto(Cmd) c = parse("a1 APPEND INBOX (\\Seen $x) "
	                      "\"17-Jul-1996 02:44:25 -0700\" {1}\r\nx\r\n");
	g_auto(PbImapFlags) f = {0};
	gboolean has_date;
	gint64 t = 0;
	g_autoptr(GError) err = NULL;

	g_assert_true(
	    pb_imap_args_append(c.c->args + 1, 2, &f, &has_date, &t, &err));
	g_assert_true(has_date);
	g_assert_cmpint(t, ==, 837596665);
	g_assert_cmpuint(f.system, ==, PB_IMAP_FLAG_SEEN);
	pb_imap_flags_clear(&f);
	g_assert_true(
	    pb_imap_args_append(c.c->args + 2, 1, &f, &has_date, &t, &err));
	g_assert_true(has_date);
	g_assert_true(
	    pb_imap_args_append(c.c->args + 1, 0, &f, &has_date, &t, &err));
	g_assert_false(has_date);
	g_assert_false(
	    pb_imap_args_append(c.c->args, 2, &f, &has_date, &t, &err));
	g_assert_error(err, PB_ERROR, PB_ERROR_DATA);
	g_assert_null(f.keywords);
}

/* Command lines as real clients write them (Thunderbird, Apple Mail,
 * K-9, mutt, mbsync, offlineimap, curl, fetchmail): each is parsed and
 * goes through the helper its command needs. */
static void
test_clients(void)
{
	static const char *const lines[] = {
	    "2 capability",
	    "5 select \"INBOX\" (CONDSTORE)",
	    "6 UID fetch 1:* (FLAGS)",
	    "8 UID fetch 1:5 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS "
	    "(From To Cc Bcc Subject Date Message-ID Priority X-Priority "
	    "References Newsgroups In-Reply-To Content-Type Reply-To)])",
	    "10 list (subscribed) \"\" \"*\" return (special-use)",
	    "11 UID fetch 3 (UID RFC822.SIZE BODY.PEEK[])",
	    "12 uid store 3 +Flags (\\Seen)",
	    "15 uid move 3 \"Trash\"",
	    "17 STATUS \"Sent\" (UIDNEXT MESSAGES UNSEEN RECENT)",
	    "19 ID (\"name\" \"Thunderbird\" \"version\" \"115.0\")",
	    "20 UID SEARCH OR FROM \"bob\" SUBJECT \"bob\"",
	    "3.2 LIST \"\" \"\"",
	    "4.3 LSUB \"\" \"*\"",
	    "8 UID SEARCH 1:* NOT DELETED",
	    "9 UID FETCH 1:3 (BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS "
	    "(references x-priority x-uniform-type-identifier)])",
	    "10 UID FETCH 3 (BODY.PEEK[1]<0.6004>)",
	    "11 UID STORE 3 +FLAGS.SILENT (\\Deleted)",
	    "a0005 FETCH 1:3 (UID FLAGS INTERNALDATE RFC822.SIZE "
	    "BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC "
	    "MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION "
	    "IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL X-ORIGINAL-TO)])",
	    "a0006 UID FETCH 3 BODY.PEEK[]",
	    "a0007 UID STORE 3 +FLAGS.SILENT (\\Seen)",
	    "5 UID FETCH 1:1000000000 (UID FLAGS)",
	    "7 UID STORE 2 +FLAGS.SILENT \\Seen",
	    "8 UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TUID)])",
	    "9 UID SEARCH HEADER X-TUID 0123456789ab",
	    "10 UID SEARCH (HEADER X-OfflineIMAP \"123-456\")",
	    "A003 LIST \"\" *",
	    "A005 FETCH 1 BODY[]",
	    "A0005 FETCH 1:3 RFC822.SIZE",
	    "A0006 FETCH 1 RFC822.HEADER",
	    "A0007 FETCH 1 BODY.PEEK[TEXT]",
	    "A0008 STORE 1 +FLAGS (\\Seen \\Deleted)",
	    "k9 UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE "
	    "BODY.PEEK[HEADER.FIELDS (date subject from content-type to cc "
	    "reply-to message-id references in-reply-to X-K9mail-Identity)] "
	    "UID)",
	    "s1 SEARCH CHARSET UTF-8 SINCE 01-Jan-2024 UNDELETED",
	    "s2 UID SEARCH RETURN (ALL) UID 1:* SEEN",
	};

	for (guint i = 0; i < G_N_ELEMENTS(lines); i++) {
		g_autofree char *line = g_strdup_printf("%s\r\n", lines[i]);
		g_auto(Cmd) c = parse(line);
		const PbImapArg *a = c.c->args;
		guint n = c.c->n_args;
		const char *verb = c.c->name;
		g_autoptr(GError) err = NULL;
		gboolean ok = TRUE;

		if (g_ascii_strcasecmp(verb, "UID") == 0)
			verb = a[0].str, a++, n--;
		if (g_ascii_strcasecmp(verb, "FETCH") == 0) {
			g_autoptr(PbImapSeqSet) set = NULL;
			g_autoptr(PbImapFetch) f = NULL;

			ok = pb_imap_arg_seqset(&a[0], &set, &err) &&
			     pb_imap_arg_fetch(&a[1], &f, &err);
		} else if (g_ascii_strcasecmp(verb, "STORE") == 0) {
			g_auto(PbImapStore) st = {0};

			ok = pb_imap_args_store(a + 1, n - 1, &st, &err);
		} else if (g_ascii_strcasecmp(verb, "SEARCH") == 0) {
			g_autoptr(PbImapSearch) se = NULL;

			ok = pb_imap_args_search(a, n, &se, &err);
		} else if (g_ascii_strcasecmp(verb, "LIST") == 0 ||
		           g_ascii_strcasecmp(verb, "LSUB") == 0) {
			g_autoptr(PbImapList) l = NULL;

			ok = pb_imap_args_list(a, n, &l, &err);
		} else if (g_ascii_strcasecmp(verb, "STATUS") == 0) {
			guint items;

			ok = pb_imap_arg_status_items(&a[1], &items, &err);
		}
		if (n > 0 && (g_ascii_strcasecmp(verb, "SELECT") == 0 ||
		              g_ascii_strcasecmp(verb, "STATUS") == 0 ||
		              g_ascii_strcasecmp(verb, "MOVE") == 0)) {
			g_autofree char *mbox = NULL;
			guint at =
			    g_ascii_strcasecmp(verb, "MOVE") == 0 ? 1 : 0;

			ok = ok && pb_imap_arg_mailbox(&a[at], &mbox, &err);
		}
		if (!ok)
			g_test_message("%s: %s", lines[i], err->message);
		g_assert_no_error(err);
		g_assert_true(ok);
	}
}

static void
check_out(void (*fn)(GString *, const char *, gsize), const char *s, gsize len,
          const char *expected)
{
	g_autoptr(GString) o = g_string_new(NULL);

	fn(o, s, len);
	g_assert_cmpstr(o->str, ==, expected);
}

static void
test_output(void)
{
	g_autofree char *long_name = g_strnfill(2000, 'a');
	g_autofree char *long_out = g_strdup_printf("{2000}\r\n%s", long_name);

	check_out(pb_imap_append_string, "a\"b\\", 4, "\"a\\\"b\\\\\"");
	check_out(pb_imap_append_string, "a\r\nb", 4, "{4}\r\na\r\nb");
	check_out(pb_imap_append_string, "caf\xc3\xa9", 5,
	          "{5}\r\ncaf\xc3\xa9");
	check_out(pb_imap_append_string, "", 0, "\"\"");
	check_out(pb_imap_append_string, long_name, 2000, long_out);
	check_out(pb_imap_append_astring, "INBOX", 5, "INBOX");
	check_out(pb_imap_append_astring, "[Gmail]", 7, "[Gmail]");
	check_out(pb_imap_append_astring, "NIL", 3, "\"NIL\"");
	check_out(pb_imap_append_astring, "", 0, "\"\"");
	check_out(pb_imap_append_astring, "a b", 3, "\"a b\"");
	check_out(pb_imap_append_astring, "a%", 2, "\"a%\"");
	check_out(pb_imap_append_nstring, NULL, 0, "NIL");
	check_out(pb_imap_append_nstring, "x", 1, "\"x\"");
}

/* What the output helper writes, the parser reads back the same. */
static void
test_output_roundtrip(void)
{
	static const char *const names[] = {
	    "INBOX",     "a b", "q\"uo\\te", "caf\xc3\xa9", "l\r\nf", "NIL",
	    "Sent.2024", "%*",  ""};

	for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
		g_autoptr(GString) line = g_string_new("a1 SELECT ");
		const char *s;
		gsize len;

		pb_imap_append_astring(line, names[i], strlen(names[i]));
		g_string_append(line, "\r\n");
		{
			g_auto(Cmd) c = parse(line->str);

			g_assert_true(
			    pb_imap_arg_astring(&c.c->args[0], &s, &len));
			g_assert_cmpuint(len, ==, strlen(names[i]));
			g_assert_cmpmem(s, len, names[i], len);
		}
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/imap-parser/frame/simple", test_simple);
	g_test_add_func("/imap-parser/frame/literals", test_literals);
	g_test_add_func("/imap-parser/frame/stream", test_stream);
	g_test_add_func("/imap-parser/frame/refused", test_refused);
	g_test_add_func("/imap-parser/frame/refused-skip", test_refused_skip);
	g_test_add_func("/imap-parser/frame/budget", test_budget);
	g_test_add_func("/imap-parser/frame/resync", test_resync);
	g_test_add_func("/imap-parser/frame/nesting", test_nesting);
	g_test_add_func("/imap-parser/frame/nul-8bit", test_nul_8bit);
	g_test_add_func("/imap-parser/frame/starttls", test_starttls);
	g_test_add_func("/imap-parser/frame/raw-line", test_raw_line);
	g_test_add_func("/imap-parser/frame/max-command", test_max_command);
	g_test_add_func("/imap-parser/args/strings", test_strings);
	g_test_add_func("/imap-parser/args/seqset", test_seqset);
	g_test_add_func("/imap-parser/args/seqset-huge", test_seqset_huge);
	g_test_add_func("/imap-parser/args/flags", test_flags);
	g_test_add_func("/imap-parser/args/store", test_store);
	g_test_add_func("/imap-parser/args/dates", test_dates);
	g_test_add_func("/imap-parser/args/fetch", test_fetch);
	g_test_add_func("/imap-parser/args/sections-fetch-only",
	                test_sections_fetch_only);
	g_test_add_func("/imap-parser/args/search", test_search);
	g_test_add_func("/imap-parser/args/list", test_list_args);
	g_test_add_func("/imap-parser/args/status", test_status);
	g_test_add_func("/imap-parser/args/list-match", test_list_match);
	g_test_add_func("/imap-parser/args/list-match-random",
	                test_list_match_random);
	g_test_add_func("/imap-parser/args/append", test_append);
	g_test_add_func("/imap-parser/args/clients", test_clients);
	g_test_add_func("/imap-parser/output/quote", test_output);
	g_test_add_func("/imap-parser/output/roundtrip", test_output_roundtrip);
	return g_test_run();
}
