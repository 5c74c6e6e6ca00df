/*
 * dkim.c - DKIM signing and verification (see dkim.h).
 *
 * Owns the DKIM wire formats: tag lists, the DKIM-Signature field, key
 * records, the two canonicalisations, header selection. A message flows
 * through one splitter (Msg): the header section is kept as a list of
 * fields (bounded), every body octet goes straight to the body
 * canonicalisers, whose output is hashed and never kept.
 *
 * Guarantees: memory does not grow with the body; a header section over
 * PB_DKIM_MAX_HEADER is not signed and its signatures are not checked
 * (permerror); every input, however malformed, gives one result per
 * signature (at most PB_DKIM_MAX_SIGNATURES) and never a crash. The only
 * I/O is reading the key files in pb_dkim_signer_new.
 */
#include "dkim.h"
#include "dns.h"
#include "error.h"
#include "submit.h"

#include <string.h>

#define IS_WSP(c) ((c) == ' ' || (c) == '\t')
#define IS_FWS(c) (IS_WSP(c) || (c) == '\r' || (c) == '\n')
/* the longest line of base64 we write in b= */
#define B64_LINE 72

/* ---- tag lists ---- */

static void
tag_free(PbDkimTag *t)
{
	g_free(t->name);
	g_free(t->value);
	g_free(t);
}

static gboolean G_GNUC_PRINTF(2, 3)
    data_error(GError **error, const char *fmt, ...)
{
	g_autofree char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error_literal(error, PB_ERROR, PB_ERROR_DATA, msg);
	return FALSE;
}

/* [A, B) with FWS removed at both ends. */
static char *
trimmed(const char *a, const char *b)
{
	while (a < b && IS_FWS(*a))
		a++;
	while (b > a && IS_FWS(b[-1]))
		b--;
	return g_strndup(a, (gsize)(b - a));
}

/* One "name=value" of [A, B) into TAGS. */
static gboolean
tag_add(GPtrArray *tags, const char *a, const char *b, GError **error)
{
	const char *eq = memchr(a, '=', (gsize)(b - a));
	g_autofree char *name = NULL;
	PbDkimTag *t;

	if (eq == NULL)
		return data_error(error, "tag without '=': ");
	name = trimmed(a, eq);
	if (!g_ascii_isalpha(name[0]))
		return data_error(error, "bad tag name \"%s\"", name);
	for (const char *p = name; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '_')
			return data_error(error, "bad tag name \"%s\"", name);
	if (pb_dkim_tags_get(tags, name) != NULL)
		return data_error(error, "tag %s given twice", name);
	t = g_new0(PbDkimTag, 1);
	t->name = g_steal_pointer(&name);
	t->value = trimmed(eq + 1, b);
	g_ptr_array_add(tags, t);
	return TRUE;
}

GPtrArray *
pb_dkim_tags_parse(const char *text, gsize len, GError **error)
{
	g_autoptr(GPtrArray) tags =
	    g_ptr_array_new_with_free_func((GDestroyNotify)tag_free);
	const char *p = text, *end = text + len;

	if (len > PB_DKIM_MAX_TAG_LIST || memchr(text, '\0', len) != NULL) {
		data_error(error, "tag list too long or binary");
		return NULL;
	}
	while (p < end) {
		const char *semi = memchr(p, ';', (gsize)(end - p));
		const char *stop = semi ? semi : end;
		const char *q = p;

		while (q < stop && IS_FWS(*q))
			q++;
		/* only the last one may be empty (a trailing ';') */
		if (q == stop && semi == NULL)
			break;
		if (!tag_add(tags, p, stop, error))
			return NULL;
		p = semi ? semi + 1 : end;
	}
	return g_steal_pointer(&tags);
}

const char *
pb_dkim_tags_get(const GPtrArray *tags, const char *name)
{
	for (guint i = 0; i < tags->len; i++) {
		const PbDkimTag *t = g_ptr_array_index(tags, i);
		if (strcmp(t->name, name) == 0)
			return t->value;
	}
	return NULL;
}

/* base64 with FWS anywhere; NULL when anything else is in it. */
static GBytes *
base64_decode(const char *text)
{
	g_autoptr(GString) clean = g_string_new(NULL);
	gsize n = 0;
	guchar *raw;

	for (const char *p = text; *p; p++) {
		if (IS_FWS(*p))
			continue;
		if (!g_ascii_isalnum(*p) && *p != '+' && *p != '/' && *p != '=')
			return NULL;
		g_string_append_c(clean, *p);
	}
	if (clean->len % 4 != 0)
		return NULL;
	if (clean->len == 0)
		return g_bytes_new(NULL, 0);
	raw = g_base64_decode(clean->str, &n);
	return g_bytes_new_take(raw, n);
}

static char *
without_fws(const char *text)
{
	GString *s = g_string_new(NULL);

	for (const char *p = text; *p; p++)
		if (!IS_FWS(*p))
			g_string_append_c(s, *p);
	return g_string_free(s, FALSE);
}

/* A number of at most 18 digits (RFC 6376 allows 12 for t= and x=, 76
 * for l=: more than 18 cannot be a real length). */
static gboolean
parse_number(const char *text, gint64 *out)
{
	if (text == NULL) {
		*out = -1;
		return TRUE;
	}
	if (*text == '\0' || strlen(text) > 18)
		return FALSE;
	for (const char *p = text; *p; p++)
		if (!g_ascii_isdigit(*p))
			return FALSE;
	*out = g_ascii_strtoll(text, NULL, 10);
	return TRUE;
}

/* Letters, digits, '-', '_' and dots between labels. */
static gboolean
valid_name(const char *name)
{
	if (name == NULL || *name == '\0' || *name == '.' ||
	    strlen(name) > 253 || strstr(name, "..") != NULL ||
	    name[strlen(name) - 1] == '.')
		return FALSE;
	for (const char *p = name; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_' && *p != '.')
			return FALSE;
	return TRUE;
}

void
pb_dkim_sig_free(PbDkimSig *sig)
{
	if (sig == NULL)
		return;
	g_free(sig->domain);
	g_free(sig->selector);
	g_free(sig->identity);
	g_strfreev(sig->headers);
	if (sig->b)
		g_bytes_unref(sig->b);
	if (sig->bh)
		g_bytes_unref(sig->bh);
	g_free(sig->b_text);
	g_free(sig);
}

static gboolean
sig_algorithm(PbDkimSig *sig, const char *a, GError **error)
{
	if (g_ascii_strcasecmp(a, "rsa-sha256") == 0)
		sig->type = PB_KEY_RSA;
	else if (g_ascii_strcasecmp(a, "ed25519-sha256") == 0)
		sig->type = PB_KEY_ED25519;
	else {
		if (g_ascii_strcasecmp(a, "rsa-sha1") == 0)
			g_set_error(error, PB_ERROR, PB_ERROR_PERM,
			            "rsa-sha1 is not accepted (RFC 8301)");
		else
			g_set_error(error, PB_ERROR, PB_ERROR_PERM,
			            "unsupported algorithm %s", a);
		return FALSE;
	}
	return TRUE;
}

static gboolean
sig_canon(PbDkimSig *sig, const char *c, GError **error)
{
	g_auto(GStrv) parts = g_strsplit(c ? c : "simple", "/", 3);
	guint n = g_strv_length(parts);
	gboolean relaxed[2] = {FALSE, FALSE};

	if (n < 1 || n > 2)
		return data_error(error, "bad c=%s", c);
	for (guint i = 0; i < n; i++) {
		if (g_ascii_strcasecmp(parts[i], "relaxed") == 0)
			relaxed[i] = TRUE;
		else if (g_ascii_strcasecmp(parts[i], "simple") != 0)
			return data_error(error, "bad c=%s", c);
	}
	sig->relaxed_head = relaxed[0];
	sig->relaxed_body = relaxed[1];
	return TRUE;
}

/* h=: names separated by ':' with FWS around; From among them. */
static gboolean
sig_headers(PbDkimSig *sig, const char *h, GError **error)
{
	g_auto(GStrv) parts = g_strsplit(h, ":", -1);
	gboolean from = FALSE;

	for (guint i = 0; parts[i]; i++) {
		char *name = g_strstrip(without_fws(parts[i]));
		g_free(parts[i]);
		parts[i] = g_ascii_strdown(name, -1);
		g_free(name);
		if (*parts[i] == '\0')
			return data_error(error, "empty name in h=%s", h);
		from = from || strcmp(parts[i], "from") == 0;
	}
	if (!from)
		return data_error(error, "From is not signed (h=%s)", h);
	sig->headers = g_steal_pointer(&parts);
	return TRUE;
}

/* i=: "[local]@domain", the domain d= or under it. */
static gboolean
sig_identity(PbDkimSig *sig, const char *i, GError **error)
{
	const char *at = i ? strrchr(i, '@') : NULL;
	gsize dl = strlen(sig->domain), il;

	if (i == NULL) {
		sig->identity = g_strconcat("@", sig->domain, NULL);
		return TRUE;
	}
	if (at == NULL)
		return data_error(error, "i=%s has no @", i);
	il = strlen(at + 1);
	if (!(g_ascii_strcasecmp(at + 1, sig->domain) == 0 ||
	      (il > dl && at[il - dl] == '.' &&
	       g_ascii_strcasecmp(at + 1 + (il - dl), sig->domain) == 0)))
		return data_error(error, "i=%s is not within d=", i);
	sig->identity = g_strdup(i);
	return TRUE;
}

static gboolean
sig_check(PbDkimSig *sig, const GPtrArray *tags, GError **error)
{
	static const char *const required[] = {"v", "a", "b", "bh",
	                                       "d", "h", "s"};
	const char *q = pb_dkim_tags_get(tags, "q");

	for (gsize i = 0; i < G_N_ELEMENTS(required); i++)
		if (pb_dkim_tags_get(tags, required[i]) == NULL)
			return data_error(error, "no %s= tag", required[i]);
	if (strcmp(pb_dkim_tags_get(tags, "v"), "1") != 0)
		return data_error(error, "v=%s (not 1)",
		                  pb_dkim_tags_get(tags, "v"));
	if (q != NULL && strstr(q, "dns/txt") == NULL)
		return data_error(error, "q=%s (not dns/txt)", q);
	if (!sig_algorithm(sig, pb_dkim_tags_get(tags, "a"), error) ||
	    !sig_canon(sig, pb_dkim_tags_get(tags, "c"), error))
		return FALSE;
	if (!valid_name(pb_dkim_tags_get(tags, "d")) ||
	    !valid_name(pb_dkim_tags_get(tags, "s")))
		return data_error(error, "bad d= or s= ");
	sig->domain = g_ascii_strdown(pb_dkim_tags_get(tags, "d"), -1);
	sig->selector = g_strdup(pb_dkim_tags_get(tags, "s"));
	return sig_headers(sig, pb_dkim_tags_get(tags, "h"), error) &&
	       sig_identity(sig, pb_dkim_tags_get(tags, "i"), error);
}

PbDkimSig *
pb_dkim_sig_parse(const char *value, gsize len, GError **error)
{
	g_autoptr(GPtrArray) tags = pb_dkim_tags_parse(value, len, error);
	g_autoptr(PbDkimSig) sig = NULL;

	if (tags == NULL)
		return NULL;
	sig = g_new0(PbDkimSig, 1);
	if (!sig_check(sig, tags, error))
		return NULL;
	sig->b_text = without_fws(pb_dkim_tags_get(tags, "b"));
	sig->b = base64_decode(pb_dkim_tags_get(tags, "b"));
	sig->bh = base64_decode(pb_dkim_tags_get(tags, "bh"));
	if (sig->b == NULL || sig->bh == NULL ||
	    g_bytes_get_size(sig->b) == 0 || g_bytes_get_size(sig->bh) != 32)
		return data_error(error, "bad base64 in b= or bh="), NULL;
	if (!parse_number(pb_dkim_tags_get(tags, "t"), &sig->t) ||
	    !parse_number(pb_dkim_tags_get(tags, "x"), &sig->x) ||
	    !parse_number(pb_dkim_tags_get(tags, "l"), &sig->l))
		return data_error(error, "bad number in t=, x= or l="), NULL;
	if (sig->x >= 0 && sig->t >= 0 && sig->x < sig->t)
		return data_error(error, "x= before t="), NULL;
	return g_steal_pointer(&sig);
}

void
pb_dkim_key_free(PbDkimKey *key)
{
	if (key == NULL)
		return;
	if (key->key)
		g_bytes_unref(key->key);
	g_free(key);
}

/* A ':'-separated list (h=, s=, t= of a key) has ITEM. */
static gboolean
list_has(const char *list, const char *item)
{
	g_auto(GStrv) parts = g_strsplit(list, ":", -1);

	for (guint i = 0; parts[i]; i++)
		if (g_ascii_strcasecmp(g_strstrip(parts[i]), item) == 0)
			return TRUE;
	return FALSE;
}

PbDkimKey *
pb_dkim_key_parse(const char *txt, gsize len, GError **error)
{
	g_autoptr(GPtrArray) tags = pb_dkim_tags_parse(txt, len, error);
	g_autoptr(PbDkimKey) key = NULL;
	const char *v, *k, *h, *s, *t, *p;

	if (tags == NULL)
		return NULL;
	v = pb_dkim_tags_get(tags, "v");
	k = pb_dkim_tags_get(tags, "k");
	h = pb_dkim_tags_get(tags, "h");
	s = pb_dkim_tags_get(tags, "s");
	t = pb_dkim_tags_get(tags, "t");
	p = pb_dkim_tags_get(tags, "p");
	if (v != NULL && strcmp(v, "DKIM1") != 0)
		return data_error(error, "v=%s (not DKIM1)", v), NULL;
	if (p == NULL)
		return data_error(error, "no p= in the key record"), NULL;
	if (h != NULL && !list_has(h, "sha256"))
		return data_error(error, "h=%s excludes sha256", h), NULL;
	if (s != NULL && !list_has(s, "*") && !list_has(s, "email"))
		return data_error(error, "s=%s excludes email", s), NULL;
	key = g_new0(PbDkimKey, 1);
	if (k == NULL || g_ascii_strcasecmp(k, "rsa") == 0)
		key->type = PB_KEY_RSA;
	else if (g_ascii_strcasecmp(k, "ed25519") == 0)
		key->type = PB_KEY_ED25519;
	else
		return data_error(error, "unknown key type k=%s", k), NULL;
	key->testing = t != NULL && list_has(t, "y");
	key->strict = t != NULL && list_has(t, "s");
	if ((key->key = base64_decode(p)) == NULL)
		return data_error(error, "bad base64 in p="), NULL;
	return g_steal_pointer(&key);
}

/* ---- canonicalisation ---- */

void
pb_dkim_canon_header(const char *field, gsize len, gboolean relaxed,
                     GString *out)
{
	const char *colon = memchr(field, ':', len);
	const char *p, *end = field + len;
	gboolean space = FALSE, any = FALSE;

	if (!relaxed || colon == NULL) {
		g_string_append_len(out, field, (gssize)len);
		g_string_append(out, "\r\n");
		return;
	}
	for (p = field; p < colon; p++)
		if (!IS_FWS(*p))
			g_string_append_c(out, g_ascii_tolower(*p));
	g_string_append_c(out, ':');
	/* unfolded, WSP runs as one SP, none at either end */
	for (p = colon + 1; p < end; p++) {
		if (*p == '\r' || *p == '\n')
			continue;
		if (IS_WSP(*p)) {
			space = any;
			continue;
		}
		if (space)
			g_string_append_c(out, ' ');
		space = FALSE;
		any = TRUE;
		g_string_append_c(out, *p);
	}
	g_string_append(out, "\r\n");
}

struct _PbDkimBody {
	gboolean relaxed;
	gint64 limit;     /* -1: none */
	guint64 length;   /* canonical octets so far */
	guint64 empty;    /* empty lines not yet written */
	gboolean content; /* the current line has content */
	gboolean wsp;     /* relaxed: WSP pending in the current line */
	gboolean cr;      /* a CR was the last octet */
	GChecksum *sha;
};

PbDkimBody *
pb_dkim_body_new(gboolean relaxed, gint64 limit)
{
	PbDkimBody *b = g_new0(PbDkimBody, 1);

	b->relaxed = relaxed;
	b->limit = limit;
	b->sha = g_checksum_new(G_CHECKSUM_SHA256);
	return b;
}

void
pb_dkim_body_free(PbDkimBody *b)
{
	if (b == NULL)
		return;
	g_checksum_free(b->sha);
	g_free(b);
}

/* The canonical output: hashed up to the limit, always counted. */
static void
emit(PbDkimBody *b, const char *s, gsize n)
{
	gsize take = n;

	if (b->limit >= 0) {
		guint64 room = (guint64)b->limit > b->length
		                   ? (guint64)b->limit - b->length
		                   : 0;
		take = (gsize)MIN((guint64)n, room);
	}
	if (take > 0)
		g_checksum_update(b->sha, (const guchar *)s, (gssize)take);
	b->length += n;
}

/* N octets of content at S (no WSP in relaxed, no CR or LF). */
static void
content(PbDkimBody *b, const char *s, gsize n)
{
	if (!b->content) {
		for (; b->empty > 0; b->empty--)
			emit(b, "\r\n", 2);
		b->content = TRUE;
	}
	if (b->wsp)
		emit(b, " ", 1);
	b->wsp = FALSE;
	emit(b, s, n);
}

static void
line_end(PbDkimBody *b)
{
	if (b->content)
		emit(b, "\r\n", 2);
	else
		b->empty++;
	b->content = b->wsp = FALSE;
}

/* The length of the run at S that is plain content. */
static gsize
plain_run(const PbDkimBody *b, const char *s, gsize n)
{
	gsize i = 0;

	while (i < n && s[i] != '\r' && s[i] != '\n' &&
	       !(b->relaxed && IS_WSP(s[i])))
		i++;
	return i;
}

void
pb_dkim_body_feed(PbDkimBody *b, const char *buf, gsize len)
{
	gsize i = 0;

	while (i < len) {
		char c = buf[i];
		gsize run;

		if (b->cr) {
			b->cr = FALSE;
			if (c == '\n') {
				line_end(b);
				i++;
				continue;
			}
			content(b, "\r", 1);
		}
		if (c == '\r') {
			b->cr = TRUE;
			i++;
		} else if (c == '\n') {
			line_end(b); /* a bare LF ends a line too */
			i++;
		} else if (b->relaxed && IS_WSP(c)) {
			b->wsp = TRUE;
			i++;
		} else {
			run = plain_run(b, buf + i, len - i);
			content(b, buf + i, run);
			i += run;
		}
	}
}

void
pb_dkim_body_finish(PbDkimBody *b, guint8 *digest, guint64 *length)
{
	gsize n = 32;

	if (b->cr) {
		b->cr = FALSE;
		content(b, "\r", 1);
	}
	if (b->content) /* no CRLF at the end: one is added */
		emit(b, "\r\n", 2);
	if (!b->relaxed && b->length == 0) /* simple: an empty body is CRLF */
		emit(b, "\r\n", 2);
	g_checksum_get_digest(b->sha, digest, &n);
	*length = b->length;
}

/* ---- the message: header fields kept, the body passed on ---- */

typedef struct {
	GPtrArray *fields; /* char*: "Name: value" with inner CRLFs */
	GString *field;    /* the field being read, or NULL */
	GString *line;     /* the line being read */
	gsize kept;        /* octets of the header section kept */
	gboolean too_big;
	gboolean in_body;
} Msg;

static void
msg_init(Msg *m)
{
	m->fields = g_ptr_array_new_with_free_func(g_free);
	m->line = g_string_new(NULL);
}

static void
msg_clear(Msg *m)
{
	g_ptr_array_unref(m->fields);
	if (m->field)
		g_string_free(m->field, TRUE);
	g_string_free(m->line, TRUE);
}

static void
msg_end_field(Msg *m)
{
	if (m->field != NULL)
		g_ptr_array_add(m->fields, g_string_free(m->field, FALSE));
	m->field = NULL;
}

/* One header line, without its line end. */
static void
msg_line(Msg *m, const char *line, gsize len)
{
	if (len == 0) {
		msg_end_field(m);
		m->in_body = TRUE;
		return;
	}
	m->kept += len + 2;
	if (m->kept > PB_DKIM_MAX_HEADER)
		m->too_big = TRUE;
	if (m->too_big)
		return;
	if (IS_WSP(line[0]) && m->field != NULL) {
		g_string_append(m->field, "\r\n");
		g_string_append_len(m->field, line, (gssize)len);
		return;
	}
	msg_end_field(m);
	m->field = g_string_new_len(line, (gssize)len);
}

/* Feeds the header section; returns how much of BUF was header (the
 * rest is body: m->in_body is then TRUE). */
static gsize
msg_feed(Msg *m, const char *buf, gsize len)
{
	gsize i = 0;

	while (i < len && !m->in_body) {
		const char *nl = memchr(buf + i, '\n', len - i);
		gsize n = nl ? (gsize)(nl - (buf + i)) : len - i;

		/* a line longer than the whole bound is cut (and refused) */
		if (m->line->len < PB_DKIM_MAX_HEADER)
			g_string_append_len(m->line, buf + i, (gssize)n);
		else
			m->too_big = TRUE;
		i += n;
		if (nl == NULL)
			break;
		i++;
		if (m->line->len > 0 && m->line->str[m->line->len - 1] == '\r')
			g_string_truncate(m->line, m->line->len - 1);
		msg_line(m, m->line->str, m->line->len);
		g_string_truncate(m->line, 0);
	}
	return i;
}

/* The end of the input: a header section without a body ends here. */
static void
msg_finish(Msg *m)
{
	if (m->in_body)
		return;
	if (m->line->len > 0)
		msg_line(m, m->line->str, m->line->len);
	msg_end_field(m);
	m->in_body = TRUE;
}

/* FIELD's name is NAME (any case; WSP before the colon allowed). */
static gboolean
field_is(const char *field, const char *name)
{
	gsize n = strlen(name);
	const char *p = field + n;

	if (g_ascii_strncasecmp(field, name, n) != 0)
		return FALSE;
	while (IS_WSP(*p))
		p++;
	return *p == ':';
}

static const char *
field_value(const char *field)
{
	const char *colon = strchr(field, ':');

	return colon ? colon + 1 : field + strlen(field);
}

/* SHA-256 of the fields H selects (bottom-up, each instance once) and of
 * SIG_FIELD (the DKIM-Signature with an empty b=), canonicalised, into
 * DIGEST. */
static void
header_digest(GPtrArray *fields, char **h, gboolean relaxed,
              const char *sig_field, guint8 *digest)
{
	g_autofree gboolean *used = g_new0(gboolean, fields->len + 1);
	g_autoptr(GString) data = g_string_new(NULL);
	g_autoptr(GChecksum) sha = g_checksum_new(G_CHECKSUM_SHA256);
	gsize n = 32;

	for (guint i = 0; h[i]; i++)
		for (guint j = fields->len; j-- > 0;) {
			const char *f = g_ptr_array_index(fields, j);
			if (used[j] || !field_is(f, h[i]))
				continue;
			used[j] = TRUE;
			pb_dkim_canon_header(f, strlen(f), relaxed, data);
			break;
		}
	pb_dkim_canon_header(sig_field, strlen(sig_field), relaxed, data);
	g_string_truncate(data, data->len - 2); /* no CRLF after it */
	g_checksum_update(sha, (const guchar *)data->str, (gssize)data->len);
	g_checksum_get_digest(sha, digest, &n);
}

/* ---- signing ---- */

const char *const pb_dkim_default_headers[] = {"from",
                                               "to",
                                               "cc",
                                               "subject",
                                               "date",
                                               "message-id",
                                               "reply-to",
                                               "in-reply-to",
                                               "references",
                                               "mime-version",
                                               "content-type",
                                               "list-unsubscribe",
                                               "list-unsubscribe-post",
                                               NULL};

struct _PbDkimSigner {
	char *selector, *ed_selector;
	char **domains;
	char **headers;
	char *rsa_file, *ed_file;  /* for messages; NULL: from memory */
	GString *rsa_pem, *ed_pem; /* NULL once parsed */
	PbPrivKey *rsa, *ed;
};

static void
wipe_string(GString *s)
{
	if (s == NULL)
		return;
	memset(s->str, 0, s->allocated_len);
	g_string_free(s, TRUE);
}

void
pb_dkim_signer_free(PbDkimSigner *s)
{
	if (s == NULL)
		return;
	g_free(s->selector);
	g_free(s->ed_selector);
	g_strfreev(s->domains);
	g_strfreev(s->headers);
	g_free(s->rsa_file);
	g_free(s->ed_file);
	wipe_string(s->rsa_pem);
	wipe_string(s->ed_pem);
	pb_privkey_free(s->rsa);
	pb_privkey_free(s->ed);
	g_free(s);
}

/* Parses the keys once; FALSE with an error naming the file. */
static gboolean
signer_parse(PbDkimSigner *s, GError **error)
{
	if (s->rsa_pem != NULL) {
		s->rsa = pb_privkey_import_pem(s->rsa_pem->str, s->rsa_pem->len,
		                               error);
		if (s->rsa != NULL && (pb_privkey_type(s->rsa) != PB_KEY_RSA ||
		                       pb_privkey_bits(s->rsa) < 2048)) {
			g_set_error(error, PB_ERROR, PB_ERROR_DATA,
			            "not an RSA key of at least 2048 bits");
			g_clear_pointer(&s->rsa, pb_privkey_free);
		}
		if (s->rsa == NULL)
			goto bad_rsa;
		wipe_string(g_steal_pointer(&s->rsa_pem));
	}
	if (s->ed_pem != NULL) {
		s->ed = pb_privkey_import_pem(s->ed_pem->str, s->ed_pem->len,
		                              error);
		if (s->ed != NULL && pb_privkey_type(s->ed) != PB_KEY_ED25519) {
			g_set_error(error, PB_ERROR, PB_ERROR_DATA,
			            "not an Ed25519 key");
			g_clear_pointer(&s->ed, pb_privkey_free);
		}
		if (s->ed == NULL) {
			g_prefix_error(error, "[dkim] ed25519_key %s: ",
			               s->ed_file ? s->ed_file : "");
			return FALSE;
		}
		wipe_string(g_steal_pointer(&s->ed_pem));
	}
	return TRUE;
bad_rsa:
	g_prefix_error(error,
	               "[dkim] key %s: ", s->rsa_file ? s->rsa_file : "");
	return FALSE;
}

PbDkimSigner *
pb_dkim_signer_new_from_pem(const char *selector, const char *ed25519_selector,
                            char **domains, char **headers, const char *rsa_pem,
                            const char *ed25519_pem, GError **error)
{
	g_autoptr(PbDkimSigner) s = g_new0(PbDkimSigner, 1);

	s->selector = g_strdup(selector);
	s->ed_selector = ed25519_selector
	                     ? g_strdup(ed25519_selector)
	                     : g_strconcat(selector, "-ed25519", NULL);
	s->domains = g_strdupv(domains);
	s->headers = headers ? g_strdupv(headers)
	                     : g_strdupv((char **)pb_dkim_default_headers);
	s->rsa_pem = g_string_new(rsa_pem);
	s->ed_pem = ed25519_pem ? g_string_new(ed25519_pem) : NULL;
	if (!signer_parse(s, error))
		return NULL;
	return g_steal_pointer(&s);
}

/* A key file, bounded (pb_table_read: a regular file, no symlink). */
static GString *
read_key(const char *what, const char *file, GError **error)
{
	g_auto(GStrv) lines = pb_table_read(file, error);
	GString *pem;

	if (lines == NULL) {
		g_prefix_error(error, "[dkim] %s: ", what);
		return NULL;
	}
	if (lines[0] == NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "[dkim] %s %s: missing or empty", what, file);
		return NULL;
	}
	pem = g_string_new(NULL);
	for (guint i = 0; lines[i]; i++) {
		g_string_append(pem, lines[i]);
		g_string_append_c(pem, '\n');
		memset(lines[i], 0, strlen(lines[i]));
	}
	return pem;
}

PbPrivKey *
pb_dkim_privkey_load(const char *what, const char *file, GError **error)
{
	g_autoptr(GString) pem = read_key(what, file, error);
	g_autoptr(GError) why = NULL;
	PbPrivKey *key;

	if (pem == NULL)
		return NULL;
	key = pb_privkey_import_pem(pem->str, pem->len, &why);
	explicit_bzero(pem->str, pem->len);
	if (key == NULL)
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG, "[dkim] %s %s: %s",
		            what, file, why->message);
	return key;
}

PbDkimSigner *
pb_dkim_signer_new(const PbConfig *cfg, GError **error)
{
	g_autoptr(PbDkimSigner) s = NULL;

	if (cfg->dkim_selector == NULL)
		return NULL;
	s = g_new0(PbDkimSigner, 1);
	s->selector = g_strdup(cfg->dkim_selector);
	s->ed_selector = g_strdup(cfg->dkim_ed25519_selector);
	s->domains =
	    g_strdupv(cfg->dkim_domains[0] ? cfg->dkim_domains : cfg->domains);
	s->headers =
	    g_strdupv(cfg->dkim_headers[0] ? cfg->dkim_headers
	                                   : (char **)pb_dkim_default_headers);
	s->rsa_file = g_strdup(cfg->dkim_key);
	s->ed_file = g_strdup(cfg->dkim_ed25519_key);
	if ((s->rsa_pem = read_key("key", cfg->dkim_key, error)) == NULL)
		return NULL;
	if (cfg->dkim_ed25519_key != NULL &&
	    (s->ed_pem =
	         read_key("ed25519_key", cfg->dkim_ed25519_key, error)) == NULL)
		return NULL;
	return g_steal_pointer(&s);
}

struct _PbDkimSign {
	PbDkimSigner *signer;
	Msg msg;
	PbDkimBody *body;
};

PbDkimSign *
pb_dkim_sign_new(PbDkimSigner *signer)
{
	PbDkimSign *s = g_new0(PbDkimSign, 1);

	s->signer = signer;
	msg_init(&s->msg);
	s->body = pb_dkim_body_new(TRUE, -1);
	return s;
}

void
pb_dkim_sign_free(PbDkimSign *s)
{
	if (s == NULL)
		return;
	msg_clear(&s->msg);
	pb_dkim_body_free(s->body);
	g_free(s);
}

void
pb_dkim_sign_feed(PbDkimSign *s, const char *buf, gsize len)
{
	gsize used = s->msg.in_body ? 0 : msg_feed(&s->msg, buf, len);

	if (used < len)
		pb_dkim_body_feed(s->body, buf + used, len - used);
}

char *
pb_dkim_from_domain(const GPtrArray *fields)
{
	g_autoptr(GPtrArray) addrs = g_ptr_array_new_with_free_func(g_free);
	const char *at;
	guint froms = 0;

	for (guint i = 0; i < fields->len; i++) {
		const char *f = g_ptr_array_index(fields, i);
		if (!field_is(f, "from"))
			continue;
		froms++;
		pb_submit_address_list(field_value(f), addrs);
	}
	if (froms != 1 || addrs->len != 1)
		return NULL;
	at = strrchr(g_ptr_array_index(addrs, 0), '@');
	return at && at[1] ? g_ascii_strdown(at + 1, -1) : NULL;
}

/* h=: every name once more than the message has it (oversigning: no
 * instance can be added unnoticed), folded between names. */
static void
append_h(GString *out, GPtrArray *fields, char **names, GPtrArray *listed)
{
	gsize col = 5;

	g_string_append(out, " h=");
	for (guint i = 0; names[i]; i++) {
		guint n = 1;
		for (guint j = 0; j < fields->len; j++)
			n += field_is(g_ptr_array_index(fields, j), names[i]);
		while (n-- > 0) {
			gsize len = strlen(names[i]);
			if (out->str[out->len - 1] != '=') {
				g_string_append_c(out, ':');
				col++;
				if (col + len > 76) {
					g_string_append(out, "\r\n\t");
					col = 1;
				}
			}
			g_string_append(out, names[i]);
			g_ptr_array_add(listed, names[i]);
			col += len;
		}
	}
	g_string_append(out, ";\r\n");
}

/* "DKIM-Signature: ..." up to an empty b=, then signed and completed. */
static gboolean
sign_one(PbDkimSign *s, PbPrivKey *key, const char *domain, gint64 now,
         const char *bh, GString *out, GError **error)
{
	g_autoptr(GString) f = g_string_new(NULL);
	g_autoptr(GBytes) sig = NULL;
	g_autofree char *b64 = NULL;
	g_autoptr(GPtrArray) names = g_ptr_array_new();
	guint8 digest[32];

	g_string_append_printf(
	    f,
	    "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed;\r\n\td=%s; "
	    "s=%s; t=%" G_GINT64_FORMAT ";\r\n\t",
	    pb_privkey_type(key) == PB_KEY_RSA ? "rsa-sha256"
	                                       : "ed25519-sha256",
	    domain,
	    pb_privkey_type(key) == PB_KEY_RSA ? s->signer->selector
	                                       : s->signer->ed_selector,
	    now);
	append_h(f, s->msg.fields, s->signer->headers, names);
	g_ptr_array_add(names, NULL);
	g_string_append_printf(f, "\tbh=%s;\r\n\tb=", bh);
	header_digest(s->msg.fields, (char **)names->pdata, TRUE, f->str,
	              digest);
	if ((sig = pb_privkey_sign_sha256(key, digest, error)) == NULL)
		return FALSE;
	b64 =
	    g_base64_encode(g_bytes_get_data(sig, NULL), g_bytes_get_size(sig));
	for (gsize i = 0, n = strlen(b64); i < n; i += B64_LINE) {
		if (i > 0)
			g_string_append(f, "\r\n\t ");
		g_string_append_len(f, b64 + i, (gssize)MIN(B64_LINE, n - i));
	}
	g_string_append(f, "\r\n");
	g_string_append_len(out, f->str, (gssize)f->len);
	return TRUE;
}

char *
pb_dkim_sign_finish(PbDkimSign *s, gint64 now, char **domain, const char **why,
                    GError **error)
{
	g_autofree char *d = NULL;
	g_autofree char *bh = NULL;
	g_autoptr(GString) out = g_string_new(NULL);
	guint8 digest[32];
	guint64 length;

	msg_finish(&s->msg);
	*why = NULL;
	if (s->msg.too_big) {
		*why = "the header section is too large";
		return NULL;
	}
	if ((d = pb_dkim_from_domain(s->msg.fields)) == NULL) {
		*why = "no single From address";
		return NULL;
	}
	if (!pb_config_domain_listed(s->signer->domains, d) ||
	    g_str_equal(d, "*")) {
		*why = "the From domain is not one of [dkim] domains";
		return NULL;
	}
	if ((s->signer->rsa_pem || s->signer->ed_pem) &&
	    !signer_parse(s->signer, error))
		return NULL;
	pb_dkim_body_finish(s->body, digest, &length);
	bh = g_base64_encode(digest, 32);
	if (!sign_one(s, s->signer->rsa, d, now, bh, out, error) ||
	    (s->signer->ed != NULL &&
	     !sign_one(s, s->signer->ed, d, now, bh, out, error)))
		return NULL;
	if (domain)
		*domain = g_steal_pointer(&d);
	return g_string_free(g_steal_pointer(&out), FALSE);
}

/* ---- verification ---- */

const char *
pb_dkim_status_name(PbDkimStatus status)
{
	static const char *const names[] = {"pass",   "fail",      "neutral",
	                                    "policy", "temperror", "permerror"};

	return names[status];
}

void
pb_dkim_result_free(PbDkimResult *r)
{
	if (r == NULL)
		return;
	g_free(r->domain);
	g_free(r->selector);
	g_free(r->identity);
	g_free(r->b);
	g_free(r->algorithm);
	g_free(r->reason);
	g_free(r);
}

char *
pb_dkim_result_format(const PbDkimResult *r)
{
	GString *s = g_string_new("dkim=");

	g_string_append(s, pb_dkim_status_name(r->status));
	if (r->reason != NULL) {
		g_string_append(s, " reason=\"");
		for (const char *p = r->reason; *p; p++)
			if (g_ascii_isprint(*p) && *p != '"' && *p != '\\')
				g_string_append_c(s, *p);
		g_string_append_c(s, '"');
	}
	if (r->domain)
		g_string_append_printf(s, " header.d=%s", r->domain);
	if (r->selector)
		g_string_append_printf(s, " header.s=%s", r->selector);
	if (r->b)
		g_string_append_printf(s, " header.b=%s", r->b);
	return g_string_free(s, FALSE);
}

/* One body canonicaliser shared by the signatures with its parameters. */
typedef struct {
	gboolean relaxed;
	gint64 limit;
	PbDkimBody *body;
	gboolean done;
	guint8 digest[32];
	guint64 length;
} Hasher;

static void
hasher_free(Hasher *h)
{
	pb_dkim_body_free(h->body);
	g_free(h);
}

/* One DKIM-Signature field of the message. */
typedef struct {
	char *field;    /* as it came */
	PbDkimSig *sig; /* NULL: unparsable, ERROR says why */
	GError *error;
	Hasher *hasher;
} Slot;

static void
slot_free(Slot *s)
{
	g_free(s->field);
	pb_dkim_sig_free(s->sig);
	g_clear_error(&s->error);
	g_free(s);
}

struct _PbDkimVerify {
	Msg msg;
	gboolean started;   /* the header section was looked at */
	GPtrArray *slots;   /* Slot* */
	GPtrArray *hashers; /* Hasher* */
};

PbDkimVerify *
pb_dkim_verify_new(void)
{
	PbDkimVerify *v = g_new0(PbDkimVerify, 1);

	msg_init(&v->msg);
	v->slots = g_ptr_array_new_with_free_func((GDestroyNotify)slot_free);
	v->hashers =
	    g_ptr_array_new_with_free_func((GDestroyNotify)hasher_free);
	return v;
}

void
pb_dkim_verify_free(PbDkimVerify *v)
{
	if (v == NULL)
		return;
	msg_clear(&v->msg);
	g_ptr_array_unref(v->slots);
	g_ptr_array_unref(v->hashers);
	g_free(v);
}

static Hasher *
hasher_for(PbDkimVerify *v, gboolean relaxed, gint64 limit)
{
	Hasher *h;

	for (guint i = 0; i < v->hashers->len; i++) {
		h = g_ptr_array_index(v->hashers, i);
		if (h->relaxed == relaxed && h->limit == limit)
			return h;
	}
	h = g_new0(Hasher, 1);
	h->relaxed = relaxed;
	h->limit = limit;
	h->body = pb_dkim_body_new(relaxed, limit);
	g_ptr_array_add(v->hashers, h);
	return h;
}

/* The header section is complete: the signatures, parsed. */
static void
verify_start(PbDkimVerify *v)
{
	v->started = TRUE;
	for (guint i = 0; i < v->msg.fields->len; i++) {
		const char *f = g_ptr_array_index(v->msg.fields, i);
		const char *value = field_value(f);
		Slot *slot;

		if (!field_is(f, "dkim-signature"))
			continue;
		if (v->slots->len == PB_DKIM_MAX_SIGNATURES)
			break;
		slot = g_new0(Slot, 1);
		slot->field = g_strdup(f);
		slot->sig =
		    pb_dkim_sig_parse(value, strlen(value), &slot->error);
		if (slot->sig != NULL)
			slot->hasher = hasher_for(v, slot->sig->relaxed_body,
			                          slot->sig->l);
		g_ptr_array_add(v->slots, slot);
	}
}

void
pb_dkim_verify_feed(PbDkimVerify *v, const char *buf, gsize len)
{
	gsize used = v->msg.in_body ? 0 : msg_feed(&v->msg, buf, len);

	if (v->msg.in_body && !v->started)
		verify_start(v);
	if (v->started && used < len)
		for (guint i = 0; i < v->hashers->len; i++) {
			Hasher *h = g_ptr_array_index(v->hashers, i);
			pb_dkim_body_feed(h->body, buf + used, len - used);
		}
}

/* The field with the value of b= emptied (RFC 6376 3.7). */
static char *
without_b(const char *field)
{
	GString *out = g_string_new(NULL);
	const char *p = field_value(field);

	g_string_append_len(out, field, (gssize)(p - field));
	while (*p) {
		const char *semi = strchr(p, ';');
		const char *end = semi ? semi : p + strlen(p);
		const char *q = p, *eq = memchr(p, '=', (gsize)(end - p));
		while (q < end && IS_FWS(*q))
			q++;
		if (eq && *q == 'b') {
			const char *r = q + 1;
			while (r < eq && IS_FWS(*r))
				r++;
			if (r == eq) { /* "b" FWS "=": keep up to '=' */
				g_string_append_len(out, p,
				                    (gssize)(eq + 1 - p));
				p = end;
				continue;
			}
		}
		g_string_append_len(out, p, (gssize)(end - p));
		p = end;
		if (*p == ';')
			g_string_append_c(out, *p++);
	}
	return g_string_free(out, FALSE);
}

static void
set_status(PbDkimResult *r, PbDkimStatus status, const char *reason)
{
	r->status = status;
	g_free(r->reason);
	r->reason = reason ? g_strdup(reason) : NULL;
}

/* The key record at s._domainkey.d: the first one that parses. */
static PbDkimKey *
find_key(const PbDkimSig *sig, PbDkimLookup lookup, gpointer data,
         PbDkimResult *r)
{
	g_autofree char *name =
	    g_strdup_printf("%s._domainkey.%s", sig->selector, sig->domain);
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) records = lookup(name, data, &error);
	PbDkimKey *key = NULL;

	if (records == NULL) {
		set_status(
		    r,
		    error && error->code == PB_ERROR_TEMP ? PB_DKIM_TEMPERROR
		                                          : PB_DKIM_PERMERROR,
		    error && error->code == PB_ERROR_TEMP ? "key lookup failed"
		                                          : "no key record");
		return NULL;
	}
	/* several records: the first of the signature's type that parses
	 * (RFC 6376 3.6.2.2 lets the verifier cycle through them) */
	for (guint i = 0; i < records->len; i++) {
		g_autofree char *txt =
		    g_strjoinv("", g_ptr_array_index(records, i));
		PbDkimKey *k;
		g_clear_error(&error);
		k = pb_dkim_key_parse(txt, strlen(txt), &error);
		if (k != NULL && (key == NULL || key->type != sig->type)) {
			pb_dkim_key_free(key);
			key = k;
		} else
			pb_dkim_key_free(k);
	}
	if (key == NULL)
		set_status(r, PB_DKIM_PERMERROR,
		           error ? error->message : "no key record");
	return key;
}

/* Checks the key against the signature; FALSE: R says why. */
static gboolean
key_usable(const PbDkimSig *sig, const PbDkimKey *key, PbDkimResult *r)
{
	const char *at = strrchr(sig->identity, '@');

	r->testing = key->testing;
	if (g_bytes_get_size(key->key) == 0)
		set_status(r, PB_DKIM_PERMERROR, "key revoked");
	else if (key->type != sig->type)
		set_status(r, PB_DKIM_PERMERROR, "key type does not match a=");
	else if (key->strict && g_ascii_strcasecmp(at + 1, sig->domain) != 0)
		set_status(r, PB_DKIM_PERMERROR, "key t=s: i= must be d=");
	else
		return TRUE;
	return FALSE;
}

static void
check_slot(PbDkimVerify *v, Slot *slot, gint64 now, PbDkimLookup lookup,
           gpointer data, PbDkimResult *r)
{
	PbDkimSig *sig = slot->sig;
	Hasher *h = slot->hasher;
	g_autoptr(PbDkimKey) key = NULL;
	g_autoptr(GError) error = NULL;
	g_autofree char *emptied = NULL;
	guint8 digest[32];

	if (!h->done) {
		pb_dkim_body_finish(h->body, h->digest, &h->length);
		h->done = TRUE;
	}
	if (sig->x >= 0 && sig->x < now)
		return set_status(r, PB_DKIM_PERMERROR, "signature expired");
	if (sig->l >= 0 && (guint64)sig->l > h->length)
		return set_status(r, PB_DKIM_FAIL, "l= beyond the body");
	if (memcmp(h->digest, g_bytes_get_data(sig->bh, NULL), 32) != 0)
		return set_status(r, PB_DKIM_FAIL, "body hash did not verify");
	if ((key = find_key(sig, lookup, data, r)) == NULL ||
	    !key_usable(sig, key, r))
		return;
	emptied = without_b(slot->field);
	header_digest(v->msg.fields, sig->headers, sig->relaxed_head, emptied,
	              digest);
	if (!pb_pubkey_verify_sha256(
	        sig->type, g_bytes_get_data(key->key, NULL),
	        g_bytes_get_size(key->key), PB_DKIM_MIN_RSA_BITS, digest,
	        g_bytes_get_data(sig->b, NULL), g_bytes_get_size(sig->b),
	        &r->bits, &error))
		return set_status(r,
		                  error->code == PB_ERROR_DATA ? PB_DKIM_FAIL
		                  : error->code == PB_ERROR_TEMP
		                      ? PB_DKIM_TEMPERROR
		                      : PB_DKIM_PERMERROR,
		                  error->message);
	if (sig->l >= 0 && (guint64)sig->l < h->length)
		return set_status(r, PB_DKIM_POLICY,
		                  "l= leaves part of the body unsigned");
	set_status(r, PB_DKIM_PASS, NULL);
}

GPtrArray *
pb_dkim_verify_finish(PbDkimVerify *v, gint64 now, PbDkimLookup lookup,
                      gpointer data)
{
	GPtrArray *results =
	    g_ptr_array_new_with_free_func((GDestroyNotify)pb_dkim_result_free);

	msg_finish(&v->msg);
	if (!v->started)
		verify_start(v);
	for (guint i = 0; i < v->slots->len; i++) {
		Slot *slot = g_ptr_array_index(v->slots, i);
		PbDkimResult *r = g_new0(PbDkimResult, 1);

		g_ptr_array_add(results, r);
		if (slot->sig == NULL) {
			set_status(r,
			           slot->error->code == PB_ERROR_PERM
			               ? PB_DKIM_NEUTRAL
			               : PB_DKIM_PERMERROR,
			           slot->error->message);
			continue;
		}
		r->domain = g_strdup(slot->sig->domain);
		r->selector = g_strdup(slot->sig->selector);
		r->identity = g_strdup(slot->sig->identity);
		r->b = g_strndup(slot->sig->b_text, 12);
		r->algorithm =
		    g_strdup(slot->sig->type == PB_KEY_RSA ? "rsa-sha256"
		                                           : "ed25519-sha256");
		if (v->msg.too_big)
			set_status(r, PB_DKIM_PERMERROR,
			           "header section too large");
		else
			check_slot(v, slot, now, lookup, data, r);
	}
	return results;
}

const GPtrArray *
pb_dkim_verify_fields(const PbDkimVerify *v)
{
	static GPtrArray *none;

	if (v->msg.too_big) {
		if (g_once_init_enter(&none))
			g_once_init_leave(&none, g_ptr_array_new());
		return none;
	}
	return v->msg.fields;
}

/* ---- key records ---- */

char **
pb_dkim_key_record(PbPrivKey *key, GError **error)
{
	g_autoptr(GBytes) pub = pb_privkey_public(key, error);
	g_autofree char *b64 = NULL;
	g_autofree char *txt = NULL;

	if (pub == NULL)
		return NULL;
	b64 =
	    g_base64_encode(g_bytes_get_data(pub, NULL), g_bytes_get_size(pub));
	txt = g_strdup_printf(
	    "v=DKIM1; k=%s; p=%s",
	    pb_privkey_type(key) == PB_KEY_RSA ? "rsa" : "ed25519", b64);
	return pb_dns_txt_split(txt);
}
