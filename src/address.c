/*
 * address.c - RFC 5321 paths and mailboxes (section 4.1.2), with the
 * UTF-8 extension of RFC 6531 when asked for.
 *
 * Owns nothing; pure functions. Guarantees: a parsed PbAddress never holds
 * a control character, a space outside what was a quoted string, a CR, LF
 * or NUL; its local part is at most 64 octets as written, its domain at
 * most 255 and the whole path at most 256; the domain is lowercased.
 * Every input, however hostile, ends in either an address or a
 * PB_ERROR_DATA error whose message can follow a 501 code.
 */
#include "address.h"
#include "error.h"

#include <arpa/inet.h>
#include <string.h>

/* A cursor over the input; the parsers advance P and never read past END. */
typedef struct {
	const char *p;
	const char *end;
	PbAddressFlags flags;
} Cursor;

static gboolean
fail(GError **error, const char *msg)
{
	g_set_error_literal(error, PB_ERROR, PB_ERROR_DATA, msg);
	return FALSE;
}

static gboolean
at(const Cursor *c, char ch)
{
	return c->p < c->end && *c->p == ch;
}

static gboolean
is_utf8_byte(guchar ch)
{
	return ch >= 0x80;
}

/* RFC 5322 atext, plus UTF8-non-ascii (RFC 6531) when allowed. */
static gboolean
is_atext(guchar ch, gboolean utf8)
{
	if (g_ascii_isalnum(ch))
		return TRUE;
	if (ch != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL)
		return TRUE;
	return utf8 && is_utf8_byte(ch);
}

/* RFC 5321 qtextSMTP: printable ASCII but '"' and '\', space included. */
static gboolean
is_qtext(guchar ch, gboolean utf8)
{
	if (ch >= 32 && ch <= 126)
		return ch != '"' && ch != '\\';
	return utf8 && is_utf8_byte(ch);
}

/* The error for a byte no rule accepts, so that a client sending 8-bit
 * text without SMTPUTF8 learns why. */
static gboolean
bad_char(const Cursor *c, GError **error)
{
	if (c->p < c->end && is_utf8_byte((guchar)*c->p) &&
	    !(c->flags & PB_ADDRESS_UTF8))
		return fail(error, "Non-ASCII address without SMTPUTF8");
	return fail(error, "Syntax error in address");
}

/* Dot-string: atoms separated by single dots. */
static gboolean
parse_dot_string(Cursor *c, GString *local, GError **error)
{
	gboolean utf8 = (c->flags & PB_ADDRESS_UTF8) != 0;

	for (;;) {
		const char *start = c->p;

		while (c->p < c->end && is_atext((guchar)*c->p, utf8))
			c->p++;
		if (c->p == start)
			return bad_char(c, error);
		g_string_append_len(local, start, c->p - start);
		if (!at(c, '.'))
			return TRUE;
		g_string_append_c(local, '.');
		c->p++;
	}
}

/* Quoted-string; the quotes and the backslashes of quoted-pairs are
 * removed (pb_address_to_string puts them back). */
static gboolean
parse_quoted(Cursor *c, GString *local, GError **error)
{
	gboolean utf8 = (c->flags & PB_ADDRESS_UTF8) != 0;

	c->p++; /* the opening quote */
	while (c->p < c->end && *c->p != '"') {
		guchar ch = (guchar)*c->p;
		if (ch == '\\') {
			c->p++;
			if (c->p == c->end || (guchar)*c->p < 32 ||
			    (guchar)*c->p > 126)
				return fail(error, "Syntax error in address");
			ch = (guchar)*c->p;
		} else if (!is_qtext(ch, utf8))
			return bad_char(c, error);
		g_string_append_c(local, (char)ch);
		c->p++;
	}
	if (!at(c, '"'))
		return fail(error, "Syntax error in address");
	c->p++;
	return TRUE;
}

static gboolean
parse_local(Cursor *c, GString *local, GError **error)
{
	const char *start = c->p;
	gboolean ok = at(c, '"') ? parse_quoted(c, local, error)
				 : parse_dot_string(c, local, error);

	if (!ok)
		return FALSE;
	/* RFC 5321 permits "" but no mailbox has that name; refuse it */
	if (local->len == 0)
		return fail(error, "Empty local part");
	if (c->p - start > PB_ADDRESS_MAX_LOCAL)
		return fail(error, "Local part too long");
	return TRUE;
}

/* An address literal: "[" (IPv4 | "IPv6:" IPv6) "]". The general form
 * (tag:text) names nothing we could deliver to, so it is refused. */
static gboolean
parse_literal(Cursor *c, GString *domain, GError **error)
{
	const char *start = c->p + 1;
	const char *close = memchr(start, ']', c->end - start);
	char text[INET6_ADDRSTRLEN + 8];
	guint8 bin[16];
	gsize n;

	/* inet_pton stops at a NUL: one inside would pass unchecked */
	if (close == NULL || (n = close - start) == 0 || n >= sizeof(text) ||
	    memchr(start, '\0', n) != NULL)
		return fail(error, "Bad address literal");
	memcpy(text, start, n);
	text[n] = '\0';
	if (g_ascii_strncasecmp(text, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, text + 5, bin) != 1)
			return fail(error, "Bad address literal");
	} else if (inet_pton(AF_INET, text, bin) != 1)
		return fail(error, "Bad address literal");
	g_string_append_len(domain, c->p, n + 2);
	c->p = close + 1;
	return TRUE;
}

/* One label: letters, digits, hyphens inside (RFC 5321 sub-domain), or
 * with UTF-8 allowed also U-label bytes. */
static gboolean
parse_label(Cursor *c, GError **error)
{
	gboolean utf8 = (c->flags & PB_ADDRESS_UTF8) != 0;
	const char *start = c->p;

	while (c->p < c->end &&
	       (g_ascii_isalnum(*c->p) || *c->p == '-' ||
		(utf8 && is_utf8_byte((guchar)*c->p))))
		c->p++;
	if (c->p == start)
		return bad_char(c, error);
	if (*start == '-' || c->p[-1] == '-')
		return fail(error, "Syntax error in address");
	if (c->p - start > 63)
		return fail(error, "Domain label too long");
	return TRUE;
}

static gboolean
parse_domain(Cursor *c, GString *domain, GError **error)
{
	const char *start = c->p;

	if (at(c, '['))
		return parse_literal(c, domain, error);
	for (;;) {
		if (!parse_label(c, error))
			return FALSE;
		if (!at(c, '.'))
			break;
		c->p++;
	}
	if (c->p - start > PB_ADDRESS_MAX_DOMAIN)
		return fail(error, "Domain too long");
	g_string_append_len(domain, start, c->p - start);
	return TRUE;
}

/* A-d-l ":" (RFC 5321 4.1.2): checked, then dropped (4.1.1.3). */
static gboolean
skip_route(Cursor *c, GError **error)
{
	g_autoptr(GString) scratch = g_string_new(NULL);

	while (at(c, '@')) {
		c->p++;
		if (!parse_domain(c, scratch, error))
			return FALSE;
		if (at(c, ':')) {
			c->p++;
			return TRUE;
		}
		if (!at(c, ','))
			return fail(error, "Syntax error in address");
		c->p++;
	}
	return fail(error, "Syntax error in address");
}

/* "<postmaster>" (any case) with nothing after it but '>'. */
static gboolean
is_bare_postmaster(const Cursor *c, gboolean bracketed)
{
	gsize left = c->end - c->p;

	if (left < 10 || g_ascii_strncasecmp(c->p, "postmaster", 10) != 0)
		return FALSE;
	if (bracketed)
		return left > 10 && c->p[10] == '>';
	return left == 10 || c->p[10] == ' ';
}

/* Mailbox, or bare postmaster; fills ADDR. */
static gboolean
parse_mailbox(Cursor *c, gboolean bracketed, PbAddress *addr,
	      GError **error)
{
	g_autoptr(GString) local = g_string_new(NULL);
	g_autoptr(GString) domain = g_string_new(NULL);

	if ((c->flags & PB_ADDRESS_ALLOW_POSTMASTER) &&
	    is_bare_postmaster(c, bracketed)) {
		c->p += 10;
		addr->local = g_strdup("postmaster");
		addr->domain = g_strdup("");
		return TRUE;
	}
	if (!parse_local(c, local, error))
		return FALSE;
	if (!at(c, '@'))
		return fail(error, c->p == c->end || *c->p == '>'
				       ? "Domain missing in address"
				       : "Syntax error in address");
	c->p++;
	if (!parse_domain(c, domain, error))
		return FALSE;
	addr->local = g_string_free(g_steal_pointer(&local), FALSE);
	addr->domain = g_ascii_strdown(domain->str, domain->len);
	return TRUE;
}

/* The path proper: after the optional '<' up to the optional '>'. */
static gboolean
parse_inner(Cursor *c, gboolean bracketed, PbAddress *addr, GError **error)
{
	if ((bracketed && at(c, '>')) || (!bracketed && c->p == c->end)) {
		if (!(c->flags & PB_ADDRESS_ALLOW_NULL))
			return fail(error, "Null address not allowed here");
		addr->local = g_strdup("");
		addr->domain = g_strdup("");
		return TRUE;
	}
	if (bracketed && at(c, '@') && !skip_route(c, error))
		return FALSE;
	return parse_mailbox(c, bracketed, addr, error);
}

gboolean
pb_address_parse_path(const char *text, gsize len, PbAddressFlags flags,
		      PbAddress **out, const char **rest, GError **error)
{
	g_autoptr(PbAddress) addr = g_new0(PbAddress, 1);
	Cursor c = {text, text + len, flags};
	gboolean bracketed = at(&c, '<');

	if (!bracketed && !(flags & PB_ADDRESS_NO_BRACKETS))
		return fail(error, "Address must be in angle brackets");
	if (bracketed)
		c.p++;
	if (!parse_inner(&c, bracketed, addr, error))
		return FALSE;
	if (bracketed && !at(&c, '>'))
		return fail(error, "Syntax error in address");
	if (bracketed)
		c.p++;
	else if (c.p < c.end && *c.p != ' ')
		return fail(error, "Syntax error in address");
	/* RFC 5321 4.5.3.1.3: 256 octets with the brackets, so a bare
	 * address has two fewer (it is written bracketed later) */
	if (c.p - text + (bracketed ? 0 : 2) > PB_ADDRESS_MAX_PATH)
		return fail(error, "Address too long");
	if ((flags & PB_ADDRESS_UTF8) && !g_utf8_validate(text, c.p - text, NULL))
		return fail(error, "Invalid UTF-8 in address");
	*out = g_steal_pointer(&addr);
	if (rest != NULL)
		*rest = c.p;
	return TRUE;
}

/* TRUE if LOCAL is a dot-string and needs no quotes. */
static gboolean
is_dot_string(const char *local)
{
	gboolean after_dot = TRUE;

	for (const char *p = local; *p != '\0'; p++) {
		if (*p == '.') {
			if (after_dot)
				return FALSE;
			after_dot = TRUE;
		} else if (is_atext((guchar)*p, TRUE))
			after_dot = FALSE;
		else
			return FALSE;
	}
	return !after_dot;
}

static void
append_local(GString *out, const char *local)
{
	if (is_dot_string(local)) {
		g_string_append(out, local);
		return;
	}
	g_string_append_c(out, '"');
	for (const char *p = local; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_c(out, '\\');
		g_string_append_c(out, *p);
	}
	g_string_append_c(out, '"');
}

char *
pb_address_to_string(const PbAddress *addr)
{
	GString *out;

	g_return_val_if_fail(addr != NULL, NULL);
	if (addr->domain[0] == '\0')
		return g_strdup(addr->local);
	out = g_string_new(NULL);
	append_local(out, addr->local);
	g_string_append_c(out, '@');
	g_string_append(out, addr->domain);
	return g_string_free(out, FALSE);
}

char *
pb_address_canonical(const char *address, const char *delimiter)
{
	const char *at_sign = strrchr(address, '@');
	gsize llen = at_sign ? (gsize)(at_sign - address) : strlen(address);
	g_autofree char *local = g_ascii_strdown(address, llen);
	g_autofree char *domain = NULL;

	/* a quoted local part is left whole: cutting it would break the
	 * quotes, and extensions are a dot-string convention */
	if (delimiter != NULL && delimiter[0] != '\0' && local[0] != '"') {
		gsize cut = strcspn(local, delimiter);
		if (cut > 0 && local[cut] != '\0')
			local[cut] = '\0';
	}
	if (at_sign == NULL)
		return g_steal_pointer(&local);
	domain = g_ascii_strdown(at_sign + 1, -1);
	return g_strdup_printf("%s@%s", local, domain);
}

gboolean
pb_address_split(const char *address, char **local, char **domain)
{
	const char *at_sign = strrchr(address, '@');

	if (at_sign == NULL)
		return FALSE;
	*local = g_strndup(address, at_sign - address);
	*domain = g_strdup(at_sign + 1);
	return TRUE;
}

void
pb_address_free(PbAddress *addr)
{
	if (addr == NULL)
		return;
	g_free(addr->local);
	g_free(addr->domain);
	g_free(addr);
}
