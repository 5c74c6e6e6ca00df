/*
 * mutf7.c - modified UTF-7 (RFC 3501 5.1.3) decoding and encoding.
 *
 * Owns nothing; pure. Validity is strict and canonical: a string is
 * valid only when decoding it and encoding the result gives it back, so
 * one mailbox has one spelling (no "&AGE-" for "a", no two adjacent
 * base64 runs, no stray padding bits).
 */
#include "mutf7.h"

#include <string.h>

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int
b64_value(char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(b64, c);
	return p ? (int)(p - b64) : -1;
}

/* Appends one UTF-16 unit; *HIGH holds a pending high surrogate. */
static gboolean
put_unit(GString *out, guint unit, guint *high)
{
	if (*high != 0) {
		if (unit < 0xdc00 || unit > 0xdfff)
			return FALSE;
		g_string_append_unichar(
		    out, 0x10000 + ((*high - 0xd800) << 10) + (unit - 0xdc00));
		*high = 0;
		return TRUE;
	}
	if (unit >= 0xd800 && unit <= 0xdbff) {
		*high = unit;
		return TRUE;
	}
	if (unit >= 0xdc00 && unit <= 0xdfff)
		return FALSE;
	g_string_append_unichar(out, unit);
	return TRUE;
}

/* Decodes the base64 run at S (after "&"); returns the octets used up to
 * and including the "-", or 0 when the run is bad. */
static gsize
decode_run(const char *s, gsize len, GString *out)
{
	guint32 bits = 0;
	guint nbits = 0, high = 0, units = 0;
	gsize i;

	for (i = 0; i < len && s[i] != '-'; i++) {
		int v = b64_value(s[i]);
		if (v < 0)
			return 0;
		bits = (bits << 6) | (guint32)v;
		nbits += 6;
		if (nbits >= 16) {
			nbits -= 16;
			if (!put_unit(out, (bits >> nbits) & 0xffff, &high))
				return 0;
			units++;
			bits &= (1u << nbits) - 1;
		}
	}
	if (i == len || units == 0 || high != 0 || nbits >= 6 || bits != 0)
		return 0;
	return i + 1;
}

char *
pb_mutf7_to_utf8(const char *s, gsize len)
{
	g_autoptr(GString) out = g_string_sized_new(len);
	gsize i = 0;

	while (i < len) {
		gsize used;
		if ((guchar)s[i] < 0x20 || (guchar)s[i] > 0x7e)
			return NULL;
		if (s[i] != '&') {
			g_string_append_c(out, s[i++]);
			continue;
		}
		if (i + 1 < len && s[i + 1] == '-') {
			g_string_append_c(out, '&');
			i += 2;
			continue;
		}
		used = decode_run(s + i + 1, len - i - 1, out);
		if (used == 0)
			return NULL;
		i += 1 + used;
	}
	return g_string_free(g_steal_pointer(&out), FALSE);
}

static void
flush_bits(GString *out, guint32 *bits, guint *nbits)
{
	while (*nbits >= 6) {
		*nbits -= 6;
		g_string_append_c(out, b64[(*bits >> *nbits) & 0x3f]);
	}
	*bits &= (1u << *nbits) - 1;
}

static void
put_b64_unit(GString *out, guint unit, guint32 *bits, guint *nbits)
{
	*bits = (*bits << 16) | unit;
	*nbits += 16;
	flush_bits(out, bits, nbits);
}

char *
pb_mutf7_from_utf8(const char *s, gsize len)
{
	g_autoptr(GString) out = g_string_sized_new(len + 8);
	const char *p = s, *end = s + len;
	gboolean in_run = FALSE;
	guint32 bits = 0;
	guint nbits = 0;

	if (!g_utf8_validate(s, (gssize)len, NULL))
		return NULL;
	while (p < end) {
		gunichar c = g_utf8_get_char(p);
		p = g_utf8_next_char(p);
		if (c >= 0x20 && c <= 0x7e) {
			if (in_run) {
				if (nbits > 0)
					g_string_append_c(
					    out,
					    b64[(bits << (6 - nbits)) & 0x3f]);
				g_string_append_c(out, '-');
				bits = nbits = 0;
				in_run = FALSE;
			}
			g_string_append(out,
			                c == '&' ? "&-" : (char[]){(char)c, 0});
			continue;
		}
		if (!in_run)
			g_string_append_c(out, '&');
		in_run = TRUE;
		if (c >= 0x10000) {
			put_b64_unit(out, 0xd800 + ((c - 0x10000) >> 10), &bits,
			             &nbits);
			c = 0xdc00 + ((c - 0x10000) & 0x3ff);
		}
		put_b64_unit(out, c, &bits, &nbits);
	}
	if (in_run) {
		if (nbits > 0)
			g_string_append_c(out,
			                  b64[(bits << (6 - nbits)) & 0x3f]);
		g_string_append_c(out, '-');
	}
	return g_string_free(g_steal_pointer(&out), FALSE);
}

gboolean
pb_mutf7_valid(const char *s, gsize len)
{
	g_autofree char *utf8 = pb_mutf7_to_utf8(s, len);
	g_autofree char *again = NULL;

	if (utf8 == NULL)
		return FALSE;
	again = pb_mutf7_from_utf8(utf8, strlen(utf8));
	/* a NUL decoded from base64 shortens UTF8: then AGAIN differs */
	return again != NULL && strlen(again) == len &&
	       memcmp(again, s, len) == 0;
}
