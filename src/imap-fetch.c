/*
 * imap-fetch.c - FETCH and STORE of the IMAP session (RFC 3501 6.4.5,
 * 6.4.6, 7.4.2).
 *
 * A message's file is opened only when something in it is asked for
 * (ENVELOPE, BODY, BODYSTRUCTURE, a section); FLAGS, UID, RFC822.SIZE and
 * INTERNALDATE come from mailfolder's index. Everything that may fail is
 * done before the first octet of a message's response is written, so a
 * message that vanished is left out rather than answered half. Sections
 * stream from the file through message.h (LF -> CRLF, partials in CRLF
 * octets), never held whole.
 */
#include "imap-internal.h"

#include <glib/gstdio.h>
#include <string.h>

#include "message.h"
#include "mime.h"

/* INTERNALDATE as RFC 3501 writes it, in UTC. */
static void
append_date_time(GString *out, gint64 t)
{
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
	                                     "May", "Jun", "Jul", "Aug",
	                                     "Sep", "Oct", "Nov", "Dec"};
	g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(t);

	if (dt == NULL)
		dt = g_date_time_new_from_unix_utc(0);
	g_string_append_printf(
	    out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"",
	    g_date_time_get_day_of_month(dt),
	    months[g_date_time_get_month(dt) - 1], g_date_time_get_year(dt),
	    g_date_time_get_hour(dt), g_date_time_get_minute(dt),
	    g_date_time_get_second(dt));
}

/* What one message's response needs, gathered before writing. */
typedef struct {
	guint64 size;
	gint64 date;
	int fd;
	PbMimePart *root;
} Msg;

static void
msg_clear(Msg *m)
{
	g_clear_pointer(&m->root, pb_mime_part_free);
	if (m->fd >= 0)
		g_close(m->fd, NULL);
	m->fd = -1;
}

static gboolean
msg_load(PbImapServer *s, const PbImapFetch *fetch, guint i, Msg *m)
{
	g_autoptr(GError) error = NULL;
	guint parse = PB_IMAP_FETCH_ENVELOPE | PB_IMAP_FETCH_BODY |
	              PB_IMAP_FETCH_BODYSTRUCTURE;

	if (pb_mailfolder_is_expunged(s->folder, i))
		return FALSE;
	if ((fetch->items & PB_IMAP_FETCH_RFC822_SIZE) &&
	    !pb_mailfolder_size(s->folder, i, &m->size, &error))
		return FALSE;
	if ((fetch->items & PB_IMAP_FETCH_INTERNALDATE) &&
	    !pb_mailfolder_internaldate(s->folder, i, &m->date, &error))
		return FALSE;
	if (!(fetch->items & parse) && fetch->n_bodies == 0)
		return TRUE;
	m->fd = pb_mailfolder_open_message(s->folder, i, &error);
	if (m->fd < 0)
		return FALSE;
	m->root = pb_message_parse_fd(m->fd, &error);
	return m->root != NULL;
}

static void
section_of(const PbImapFetchBody *b, PbMimeSection *sec)
{
	memset(sec, 0, sizeof(*sec));
	sec->nparts = MIN(b->n_part, PB_MIME_MAX_SECTION_PARTS);
	for (guint k = 0; k < sec->nparts; k++)
		sec->parts[k] = b->part[k];
	switch (b->kind) {
	case PB_IMAP_SECTION_WHOLE:
		sec->kind = PB_MIME_SECTION_ALL;
		break;
	case PB_IMAP_SECTION_HEADER:
		sec->kind = PB_MIME_SECTION_HEADER;
		break;
	case PB_IMAP_SECTION_HEADER_FIELDS:
		sec->kind = PB_MIME_SECTION_HEADER_FIELDS;
		break;
	case PB_IMAP_SECTION_HEADER_FIELDS_NOT:
		sec->kind = PB_MIME_SECTION_HEADER_FIELDS_NOT;
		break;
	case PB_IMAP_SECTION_TEXT:
		sec->kind = PB_MIME_SECTION_TEXT;
		break;
	case PB_IMAP_SECTION_MIME:
		sec->kind = PB_MIME_SECTION_MIME;
		break;
	}
	sec->fields = b->fields; /* borrowed: never cleared here */
}

static void
sep(GString *out, gsize start)
{
	if (out->len > start)
		g_string_append_c(out, ' ');
}

/* The items that need no file, in Dovecot's order. */
static void
append_plain_items(PbImapServer *s, GString *out, gsize start,
                   const PbImapFetch *fetch, guint i, const Msg *m,
                   gboolean flags)
{
	if (fetch->items & PB_IMAP_FETCH_UID) {
		sep(out, start);
		g_string_append_printf(out, "UID %u",
		                       pb_mailfolder_uid(s->folder, i));
	}
	if (flags) {
		sep(out, start);
		g_string_append(out, "FLAGS ");
		pb_imap_append_flags(s, out, i);
	}
	if (fetch->items & PB_IMAP_FETCH_RFC822_SIZE) {
		sep(out, start);
		g_string_append_printf(out, "RFC822.SIZE %" G_GUINT64_FORMAT,
		                       m->size);
	}
	if (fetch->items & PB_IMAP_FETCH_INTERNALDATE) {
		sep(out, start);
		g_string_append(out, "INTERNALDATE ");
		append_date_time(out, m->date);
	}
}

static void
append_structure_items(GString *out, gsize start, const PbImapFetch *fetch,
                       const Msg *m)
{
	if (fetch->items & PB_IMAP_FETCH_ENVELOPE) {
		sep(out, start);
		g_string_append(out, "ENVELOPE ");
		pb_mime_append_envelope(out, m->root);
	}
	if (fetch->items & PB_IMAP_FETCH_BODY) {
		sep(out, start);
		/* mime.c writes the root's structure without the outer
		 * parentheses (Dovecot's cached form) */
		g_string_append(out, "BODY (");
		pb_mime_append_bodystructure(out, m->root, FALSE);
		g_string_append_c(out, ')');
	}
	if (fetch->items & PB_IMAP_FETCH_BODYSTRUCTURE) {
		sep(out, start);
		g_string_append(out, "BODYSTRUCTURE (");
		pb_mime_append_bodystructure(out, m->root, TRUE);
		g_string_append_c(out, ')');
	}
}

/* The sections, each streamed from the file (OUT was written: it is
 * empty on entry and on return). */
static void
send_sections(PbImapServer *s, GString *out, const PbImapFetch *fetch,
              const Msg *m)
{
	for (guint k = 0; k < fetch->n_bodies; k++) {
		const PbImapFetchBody *b = &fetch->bodies[k];
		g_autoptr(PbMessageSection) ms = NULL;
		g_autoptr(GError) error = NULL;
		PbMimeSection sec;

		section_of(b, &sec);
		ms = pb_message_section_new(m->root, &sec, b->partial,
		                            b->offset, b->length);
		g_string_printf(out, "%s%s ", k > 0 ? " " : "", b->name);
		pb_imap_write(s, out);
		g_string_truncate(out, 0);
		/* on a read error message.c pads the literal: the
		 * response stays in step */
		if (!pb_message_section_send(ms, m->fd, s->out, &error) &&
		    s->hooks->log != NULL)
			s->hooks->log(s->data, error->message);
	}
}

/* Sets \Seen when a section that is not a PEEK is fetched (RFC 3501
 * 6.4.5); TRUE if the flags changed, so FLAGS go with the response. */
static gboolean
mark_seen(PbImapServer *s, const PbImapFetch *fetch, guint i)
{
	gboolean peek = TRUE;
	PbMsgRange r = {i, i};

	for (guint k = 0; k < fetch->n_bodies; k++)
		peek = peek && fetch->bodies[k].peek;
	if (peek || pb_mailfolder_read_only(s->folder) ||
	    (pb_mailfolder_flags(s->folder, i) & PB_MSG_SEEN))
		return FALSE;
	return pb_mailfolder_store(s->folder, &r, 1, PB_STORE_ADD, PB_MSG_SEEN,
	                           0, NULL, NULL);
}

/* One "* N FETCH (...)"; FALSE when the message is gone. */
static gboolean
fetch_one(PbImapServer *s, const PbImapFetch *fetch, guint i)
{
	g_autoptr(GString) out = g_string_new(NULL);
	Msg m = {.fd = -1};
	gboolean flags = (fetch->items & PB_IMAP_FETCH_FLAGS) != 0;
	gsize start;

	if (!msg_load(s, fetch, i, &m)) {
		msg_clear(&m);
		return FALSE;
	}
	if (mark_seen(s, fetch, i))
		flags = TRUE;
	g_string_printf(out, "* %u FETCH (", i + 1);
	start = out->len;
	append_plain_items(s, out, start, fetch, i, &m, flags);
	if (m.root != NULL) {
		append_structure_items(out, start, fetch, &m);
		if (fetch->n_bodies > 0) {
			if (out->len > start)
				g_string_append_c(out, ' ');
			pb_imap_write(s, out);
			g_string_truncate(out, 0);
			send_sections(s, out, fetch, &m);
		}
	}
	g_string_append(out, ")\r\n");
	pb_imap_write(s, out);
	msg_clear(&m);
	return TRUE;
}

void
pb_imap_cmd_fetch(PbImapServer *s, const char *tag, const PbImapArg *args,
                  guint n, gboolean uid)
{
	g_autoptr(PbImapFetch) fetch = NULL;
	g_autoptr(GArray) ranges = NULL;
	g_autoptr(GError) error = NULL;
	gboolean gone = FALSE;

	if (n != 2) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command FETCH: "
		            "Invalid arguments.");
		return;
	}
	if (!pb_imap_message_ranges(s, tag, &args[0], uid, &ranges))
		return;
	if (!pb_imap_arg_fetch(&args[1], &fetch, &error)) {
		pb_imap_bad(s, tag, error->message);
		return;
	}
	if (uid)
		fetch->items |= PB_IMAP_FETCH_UID;
	for (guint k = 0; k < ranges->len; k++) {
		const PbMsgRange *r = &g_array_index(ranges, PbMsgRange, k);
		for (guint i = r->first; i <= r->last; i++)
			if (!fetch_one(s, fetch, i))
				gone = TRUE;
	}
	if (gone)
		pb_imap_reply(s,
		              "%s NO [EXPUNGEISSUED] Some messages were "
		              "expunged.",
		              tag);
	else
		pb_imap_ok(s, tag, "Fetch completed.");
}

/* ------------------------------------------------------------------ */
/* STORE */

/* The keyword bits of FLAGS; FALSE (NO replied) when one cannot be
 * added. Unknown keywords are nothing to remove. */
static gboolean
keyword_bits(PbImapServer *s, const char *tag, const PbImapFlags *flags,
             gboolean create, guint32 *bits)
{
	*bits = 0;
	for (guint k = 0; flags->keywords && k < flags->keywords->len; k++) {
		g_autoptr(GError) error = NULL;
		const char *name = g_ptr_array_index(flags->keywords, k);
		gint bit =
		    pb_mailfolder_keyword(s->folder, name, create, &error);
		if (bit < 0 && error != NULL) {
			pb_imap_no_error(s, tag, error);
			return FALSE;
		}
		if (bit >= 0)
			*bits |= 1u << bit;
	}
	return TRUE;
}

static void
store_replies(PbImapServer *s, const GArray *ranges, gboolean uid)
{
	for (guint k = 0; k < ranges->len; k++) {
		const PbMsgRange *r = &g_array_index(ranges, PbMsgRange, k);
		for (guint i = r->first; i <= r->last; i++)
			if (!pb_mailfolder_is_expunged(s->folder, i))
				pb_imap_send_flags(s, i, uid);
	}
}

void
pb_imap_cmd_store(PbImapServer *s, const char *tag, const PbImapArg *args,
                  guint n, gboolean uid)
{
	g_auto(PbImapStore) store = {0};
	g_autoptr(GArray) ranges = NULL;
	g_autoptr(GError) error = NULL;
	static const PbStoreOp ops[] = {PB_STORE_REPLACE, PB_STORE_ADD,
	                                PB_STORE_REMOVE};
	guint32 kws;

	if (n < 2) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command STORE: "
		            "Invalid arguments.");
		return;
	}
	if (!pb_imap_message_ranges(s, tag, &args[0], uid, &ranges))
		return;
	if (!pb_imap_args_store(args + 1, n - 1, &store, &error)) {
		pb_imap_bad(s, tag, error->message);
		return;
	}
	if (store.flags.system & PB_IMAP_FLAG_RECENT) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command STORE: "
		            "Invalid system flag \\Recent");
		return;
	}
	if (pb_mailfolder_read_only(s->folder)) {
		pb_imap_reply(s, "%s NO [READ-ONLY] Mailbox is read-only.",
		              tag);
		return;
	}
	if (!keyword_bits(s, tag, &store.flags,
	                  store.mode != PB_IMAP_STORE_REMOVE, &kws))
		return;
	if (ranges->len > 0 &&
	    !pb_mailfolder_store(s->folder, (PbMsgRange *)ranges->data,
	                         ranges->len, ops[store.mode],
	                         pb_imap_msg_flags(store.flags.system), kws,
	                         NULL, &error)) {
		pb_imap_no_error(s, tag, error);
		return;
	}
	pb_imap_announce_keywords(s);
	if (!store.silent)
		store_replies(s, ranges, uid);
	pb_imap_ok(s, tag, "Store completed.");
}
