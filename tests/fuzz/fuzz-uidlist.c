/*
 * fuzz-uidlist.c - the readers of Dovecot's files that mailfolder.c
 * trusts (dovecot-uidlist, dovecot-keywords, subscriptions: written by
 * anyone with access to the Maildir) and the modified UTF-7 decoder of
 * mailbox names. The first octet picks the reader, the rest is the file.
 *
 * Checked beyond "no crash": a uidlist that parses is written and parsed
 * again to the same records (UIDs ascending, names without "/"); every
 * keyword is a valid atom and no two are the same; every subscription
 * passes the name check; a valid mUTF-7 name decodes to UTF-8 that
 * encodes back to it.
 */
#include "error.h"
#include "fuzz.h"
#include "mailfolder.h"
#include "mutf7.h"

#include <string.h>

static void
uidlist(const char *text, size_t len)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbUidlist) a = pb_uidlist_parse(text, len, &error);
	g_autoptr(PbUidlist) b = NULL;
	g_autofree char *out = NULL;
	gsize outlen;

	if (a == NULL) {
		g_assert_nonnull(error);
		return;
	}
	out = pb_uidlist_format(a, &outlen);
	b = pb_uidlist_parse(out, outlen, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(a->uidvalidity, ==, b->uidvalidity);
	g_assert_cmpuint(a->uidnext, ==, b->uidnext);
	g_assert_cmpuint(a->recs->len, ==, b->recs->len);
	for (guint i = 0; i < a->recs->len; i++) {
		PbUidRec *x = &g_array_index(a->recs, PbUidRec, i);
		PbUidRec *y = &g_array_index(b->recs, PbUidRec, i);
		g_assert_cmpuint(x->uid, ==, y->uid);
		g_assert_cmpuint(x->uid, <, a->uidnext);
		g_assert_true(i == 0 ||
		              x->uid >
		                  g_array_index(a->recs, PbUidRec, i - 1).uid);
		g_assert_cmpstr(x->name, ==, y->name);
		g_assert_null(strchr(x->name, '/'));
	}
}

static void
keywords(const char *text, size_t len)
{
	char **kw = pb_keywords_parse(text, len);

	for (guint k = 0; k < PB_MAILFOLDER_KEYWORDS_MAX; k++) {
		if (kw[k] == NULL)
			continue;
		g_assert_null(strpbrk(kw[k], " (){%*\"\\]\r\n"));
		for (guint j = 0; j < k; j++)
			g_assert_true(kw[j] == NULL ||
			              g_ascii_strcasecmp(kw[j], kw[k]) != 0);
	}
	g_assert_null(kw[PB_MAILFOLDER_KEYWORDS_MAX]);
	pb_keywords_free(kw);
}

static void
subscriptions(const char *text, size_t len)
{
	g_auto(GStrv) subs = pb_subscriptions_parse(text, len);

	for (guint i = 0; subs[i]; i++)
		g_assert_true(pb_mailfolder_name_check(subs[i], NULL));
}

static void
mutf7(const char *text, size_t len)
{
	g_autofree char *utf8 = pb_mutf7_to_utf8(text, len);
	g_autofree char *again = NULL;
	g_autofree char *name = g_strndup(text, len);

	if (pb_mutf7_valid(text, len)) {
		g_assert_nonnull(utf8);
		g_assert_true(g_utf8_validate(utf8, -1, NULL));
		again = pb_mutf7_from_utf8(utf8, strlen(utf8));
		g_assert_cmpstr(again, ==, name);
	}
	if (utf8 && g_utf8_validate(utf8, -1, NULL)) {
		g_autofree char *enc = pb_mutf7_from_utf8(utf8, strlen(utf8));
		g_autofree char *dec = NULL;
		g_assert_nonnull(enc);
		dec = pb_mutf7_to_utf8(enc, strlen(enc));
		g_assert_cmpstr(dec, ==, utf8);
	}
	if (pb_mailfolder_name_check(name, NULL)) {
		g_autofree char *canon = pb_mailfolder_name_canon(name);
		g_assert_true(pb_mailfolder_name_check(canon, NULL));
		g_assert_null(strchr(name, '/'));
		g_assert_false(strstr(name, "..") != NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data + 1;

	if (size == 0)
		return 0;
	switch (data[0] % 4) {
	case 0:
		uidlist(text, size - 1);
		break;
	case 1:
		keywords(text, size - 1);
		break;
	case 2:
		subscriptions(text, size - 1);
		break;
	default:
		mutf7(text, size - 1);
		break;
	}
	return 0;
}
