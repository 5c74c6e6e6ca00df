/*
 * imap-search.c - SEARCH and UID SEARCH of the IMAP session (RFC 3501
 * 6.4.4), with ESEARCH's RETURN (RFC 4731).
 *
 * The key tree comes from imap-parser; every message is tested against
 * it in index order. Keys on flags, UIDs, numbers, sizes and internal
 * dates need no file; HEADER, SENT* open the message and parse it once,
 * BODY and TEXT read it through message.h's decoding matcher. Message
 * sets are normalised once per key (sorted, merged ranges, "*" = the
 * last message or UID) and tested by binary search; numbers beyond the
 * mailbox match nothing (so "UID SEARCH 1:* NOT DELETED" on an empty
 * folder is an empty "* SEARCH", not an error).
 */
#include "imap-internal.h"

#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "mime.h"

typedef struct {
	guint32 lo, hi;
} Span;

typedef struct {
	PbImapServer *s;
	GHashTable *sets; /* PbImapSearchKey * -> GArray of Span */
	/* the message being tested, opened when a key needs it */
	guint i;
	int fd;
	PbMimePart *root;
	gboolean load_failed;
} Ctx;

static int
span_cmp(const void *a, const void *b)
{
	const Span *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* SET with "*" = STAR, each range ordered, sorted and merged. */
static GArray *
normalise(const PbImapSeqSet *set, guint32 star)
{
	GArray *spans = g_array_sized_new(FALSE, FALSE, sizeof(Span), set->n);
	guint out = 0;

	for (guint k = 0; k < set->n; k++) {
		Span sp = {set->ranges[k].lo ? set->ranges[k].lo : star,
		           set->ranges[k].hi ? set->ranges[k].hi : star};
		if (sp.lo > sp.hi) {
			guint32 t = sp.lo;
			sp.lo = sp.hi;
			sp.hi = t;
		}
		g_array_append_val(spans, sp);
	}
	qsort(spans->data, spans->len, sizeof(Span), span_cmp);
	for (guint k = 0; k < spans->len; k++) {
		Span *cur = &g_array_index(spans, Span, k);
		Span *last = out ? &g_array_index(spans, Span, out - 1) : NULL;
		if (last != NULL && cur->lo <= (guint64)last->hi + 1)
			last->hi = MAX(last->hi, cur->hi);
		else
			g_array_index(spans, Span, out++) = *cur;
	}
	g_array_set_size(spans, out);
	return spans;
}

static gboolean
spans_contain(const GArray *spans, guint32 n)
{
	guint lo = 0, hi = spans->len;

	while (lo < hi) {
		guint mid = lo + (hi - lo) / 2;
		const Span *sp = &g_array_index(spans, Span, mid);
		if (n < sp->lo)
			hi = mid;
		else if (n > sp->hi)
			lo = mid + 1;
		else
			return TRUE;
	}
	return FALSE;
}

static void
prepare(Ctx *c, const PbImapSearchKey *key)
{
	guint count = pb_mailfolder_count(c->s->folder);
	guint32 last_uid =
	    count ? pb_mailfolder_uid(c->s->folder, count - 1) : 0;

	if (key->type == PB_IMAP_SKEY_SEQSET)
		g_hash_table_insert(c->sets, (gpointer)key,
		                    normalise(key->set, count));
	else if (key->type == PB_IMAP_SKEY_UID)
		g_hash_table_insert(c->sets, (gpointer)key,
		                    normalise(key->set, last_uid));
	for (guint k = 0; k < key->n_children; k++)
		prepare(c, key->children[k]);
}

static void
unload(Ctx *c)
{
	g_clear_pointer(&c->root, pb_mime_part_free);
	if (c->fd >= 0)
		g_close(c->fd, NULL);
	c->fd = -1;
	c->load_failed = FALSE;
}

/* The current message parsed; FALSE if it cannot be read. */
static gboolean
load(Ctx *c)
{
	if (c->root != NULL)
		return TRUE;
	if (c->load_failed)
		return FALSE;
	c->fd = pb_mailfolder_open_message(c->s->folder, c->i, NULL);
	if (c->fd >= 0)
		c->root = pb_message_parse_fd(c->fd, NULL);
	c->load_failed = c->root == NULL;
	return c->root != NULL;
}

static gint64
days_of(gint64 t)
{
	return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

static gboolean
date_cmp(PbImapSearchKeyType type, gint64 days, const PbImapDate *d)
{
	gint64 want = pb_imap_date_days(d);

	switch (type) {
	case PB_IMAP_SKEY_BEFORE:
	case PB_IMAP_SKEY_SENTBEFORE:
		return days < want;
	case PB_IMAP_SKEY_ON:
	case PB_IMAP_SKEY_SENTON:
		return days == want;
	default:
		return days >= want;
	}
}

static gboolean
match_sent(Ctx *c, const PbImapSearchKey *key)
{
	g_autofree char *date = NULL;
	gint64 utc;
	int tz;

	if (!load(c) || (date = pb_mime_header_get(c->root, "Date")) == NULL ||
	    !pb_mime_date_parse(date, &utc, &tz))
		return FALSE;
	return date_cmp(key->type, days_of(utc + (gint64)tz * 60), &key->date);
}

static gboolean
match_text(Ctx *c, const PbImapSearchKey *key)
{
	gboolean found = FALSE;

	if (!load(c))
		return FALSE;
	if (!pb_message_search(c->fd, c->root,
	                       key->type == PB_IMAP_SKEY_BODY
	                           ? PB_MESSAGE_SEARCH_BODY
	                           : PB_MESSAGE_SEARCH_TEXT,
	                       key->str, &found, NULL))
		return FALSE;
	return found;
}

static gboolean match(Ctx *c, const PbImapSearchKey *key);

static gboolean
match_index(Ctx *c, const PbImapSearchKey *key)
{
	PbMailFolder *f = c->s->folder;
	guint64 size = 0;
	gint64 date = 0;
	gint bit;

	switch (key->type) {
	case PB_IMAP_SKEY_SEQSET:
		return spans_contain(g_hash_table_lookup(c->sets, key),
		                     c->i + 1);
	case PB_IMAP_SKEY_UID:
		return spans_contain(g_hash_table_lookup(c->sets, key),
		                     pb_mailfolder_uid(f, c->i));
	case PB_IMAP_SKEY_KEYWORD:
		bit = pb_mailfolder_keyword(f, key->str, FALSE, NULL);
		return bit >= 0 &&
		       (pb_mailfolder_keywords(f, c->i) & (1u << bit));
	case PB_IMAP_SKEY_LARGER:
		return pb_mailfolder_size(f, c->i, &size, NULL) &&
		       size > key->number;
	case PB_IMAP_SKEY_SMALLER:
		return pb_mailfolder_size(f, c->i, &size, NULL) &&
		       size < key->number;
	case PB_IMAP_SKEY_BEFORE:
	case PB_IMAP_SKEY_ON:
	case PB_IMAP_SKEY_SINCE:
		return pb_mailfolder_internaldate(f, c->i, &date, NULL) &&
		       date_cmp(key->type, days_of(date), &key->date);
	default:
		return FALSE;
	}
}

static gboolean
match_flag(Ctx *c, guint bit)
{
	return (pb_mailfolder_flags(c->s->folder, c->i) & bit) != 0;
}

static gboolean
match(Ctx *c, const PbImapSearchKey *key)
{
	switch (key->type) {
	case PB_IMAP_SKEY_ALL:
		return TRUE;
	case PB_IMAP_SKEY_AND:
		for (guint k = 0; k < key->n_children; k++)
			if (!match(c, key->children[k]))
				return FALSE;
		return TRUE;
	case PB_IMAP_SKEY_OR:
		return match(c, key->children[0]) || match(c, key->children[1]);
	case PB_IMAP_SKEY_NOT:
		return !match(c, key->children[0]);
	case PB_IMAP_SKEY_ANSWERED:
		return match_flag(c, PB_MSG_ANSWERED);
	case PB_IMAP_SKEY_DELETED:
		return match_flag(c, PB_MSG_DELETED);
	case PB_IMAP_SKEY_DRAFT:
		return match_flag(c, PB_MSG_DRAFT);
	case PB_IMAP_SKEY_FLAGGED:
		return match_flag(c, PB_MSG_FLAGGED);
	case PB_IMAP_SKEY_SEEN:
		return match_flag(c, PB_MSG_SEEN);
	case PB_IMAP_SKEY_RECENT:
		return match_flag(c, PB_MSG_RECENT);
	case PB_IMAP_SKEY_HEADER:
		return load(c) &&
		       pb_mime_search_header(c->root, key->field, key->str);
	case PB_IMAP_SKEY_BODY:
	case PB_IMAP_SKEY_TEXT:
		return match_text(c, key);
	case PB_IMAP_SKEY_SENTBEFORE:
	case PB_IMAP_SKEY_SENTON:
	case PB_IMAP_SKEY_SENTSINCE:
		return match_sent(c, key);
	default:
		return match_index(c, key);
	}
}

static void
reply_search(PbImapServer *s, const GArray *hits)
{
	g_autoptr(GString) out = g_string_new("* SEARCH");

	for (guint k = 0; k < hits->len; k++)
		g_string_append_printf(out, " %u",
		                       g_array_index(hits, guint32, k));
	g_string_append(out, "\r\n");
	pb_imap_write(s, out);
}

/* RFC 4731: "* ESEARCH (TAG "t") [UID] MIN m MAX m COUNT c ALL set". */
static void
reply_esearch(PbImapServer *s, const char *tag, const PbImapSearch *search,
              const GArray *hits, gboolean uid)
{
	g_autoptr(GString) out = g_string_new("* ESEARCH (TAG ");
	guint ret = search->ret ? search->ret : PB_IMAP_SEARCH_RETURN_ALL;

	pb_imap_append_string(out, tag, strlen(tag));
	g_string_append_c(out, ')');
	if (uid)
		g_string_append(out, " UID");
	if ((ret & PB_IMAP_SEARCH_RETURN_MIN) && hits->len > 0)
		g_string_append_printf(out, " MIN %u",
		                       g_array_index(hits, guint32, 0));
	if ((ret & PB_IMAP_SEARCH_RETURN_MAX) && hits->len > 0)
		g_string_append_printf(
		    out, " MAX %u",
		    g_array_index(hits, guint32, hits->len - 1));
	if (ret & PB_IMAP_SEARCH_RETURN_COUNT)
		g_string_append_printf(out, " COUNT %u", hits->len);
	if ((ret & PB_IMAP_SEARCH_RETURN_ALL) && hits->len > 0) {
		g_string_append(out, " ALL ");
		pb_imap_append_uid_set(out, hits);
	}
	g_string_append(out, "\r\n");
	pb_imap_write(s, out);
}

static gboolean
charset_ok(const char *charset)
{
	return charset == NULL || g_ascii_strcasecmp(charset, "UTF-8") == 0 ||
	       g_ascii_strcasecmp(charset, "US-ASCII") == 0;
}

void
pb_imap_cmd_search(PbImapServer *s, const char *tag, const PbImapArg *args,
                   guint n, gboolean uid)
{
	g_autoptr(PbImapSearch) search = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GArray) hits = g_array_new(FALSE, FALSE, sizeof(guint32));
	Ctx c = {.s = s, .fd = -1};
	guint count = pb_mailfolder_count(s->folder);

	if (!pb_imap_args_search(args, n, &search, &error)) {
		pb_imap_bad(s, tag, error->message);
		return;
	}
	if (!charset_ok(search->charset)) {
		pb_imap_reply(s,
		              "%s NO [BADCHARSET (UTF-8 US-ASCII)] "
		              "Unsupported charset.",
		              tag);
		return;
	}
	c.sets = g_hash_table_new_full(NULL, NULL, NULL,
	                               (GDestroyNotify)g_array_unref);
	prepare(&c, search->root);
	for (c.i = 0; c.i < count; c.i++) {
		if (pb_mailfolder_is_expunged(s->folder, c.i))
			continue;
		if (match(&c, search->root)) {
			guint32 v =
			    uid ? pb_mailfolder_uid(s->folder, c.i) : c.i + 1;
			g_array_append_val(hits, v);
		}
		unload(&c);
	}
	g_hash_table_destroy(c.sets);
	if (search->esearch)
		reply_esearch(s, tag, search, hits, uid);
	else
		reply_search(s, hits);
	pb_imap_ok(s, tag, "Search completed.");
}
