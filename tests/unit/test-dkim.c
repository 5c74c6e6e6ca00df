/* test-dkim.c - DKIM: tag lists, canonicalisation (RFC 6376 3.4.6), the
 * RFC 8463 appendix A vector, and sign-then-verify round trips fed in
 * chunks split at every offset. */
#include "dkim.h"
#include "error.h"
#include "tls.h"

#include <string.h>

/* RFC 8032 7.1's key as RFC 8463 A.2 uses it: PKCS #8 around the seed
 * nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A= */
static const char rfc8463_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";
static const char rfc8463_record[] =
    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/* RFC 6376's example message signed with that key (simple/simple, the
 * form of RFC 8463 A.3 that verifiers such as dkimpy test with). */
#define RFC8463_SIG                                                            \
	"DKIM-Signature: v=1; a=ed25519-sha256; c=simple/simple; \r\n"         \
	" d=football.example.com; i=@football.example.com; \r\n"               \
	" q=dns/txt; s=brisbane; t=1518460054; h=from : to : \r\n"             \
	" subject : date : message-id : from : subject : date; \r\n"           \
	" bh=4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=; \r\n"               \
	" b=9/dsDChY0YMTtD5Eyw3wx7x22BlSJP7M5ECbJ7GWrR45nXlTCGb8l0YB\r\n"      \
	" o0wBLR++X5LqmsxXaOYLLJe46l10AQ==\r\n"
#define RFC6376_HEADER                                                         \
	"From: Joe SixPack <joe@football.example.com>\r\n"                     \
	"To: Suzie Q <suzie@shopping.example.net>\r\n"                         \
	"Subject: Is dinner ready?\r\n"                                        \
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"                      \
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
#define RFC6376_BODY                                                           \
	"\r\nHi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\n"        \
	"Joe.\r\n"

static char *read_data(const char *name);

/* The test keys of tests/data/dkim, read at first use. */
static const char *
rsa_key(void)
{
	static char *pem;

	return pem ? pem : (pem = read_data("rsa2048.pem"));
}

static const char *
ed_key(void)
{
	static char *pem;

	return pem ? pem : (pem = read_data("ed25519.pem"));
}

/* ---- a table of key records for the verifier ---- */

#define FAILS(code) ((code) + 1)

typedef struct {
	const char *name;
	const char *const *strings; /* one record's character-strings */
	int error;                  /* or FAILS(a PB_ERROR code) */
} Record;

static GPtrArray *
lookup(const char *name, gpointer data, GError **error)
{
	const Record *r = data;
	GPtrArray *out;

	for (; r->name; r++)
		if (g_ascii_strcasecmp(r->name, name) == 0)
			break;
	if (r->name == NULL || r->error) {
		g_set_error(error, PB_ERROR,
		            r->name ? r->error - 1 : PB_ERROR_NOTFOUND, "%s",
		            name);
		return NULL;
	}
	out = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
	g_ptr_array_add(out, g_strdupv((char **)r->strings));
	return out;
}

static GPtrArray *
verify_chunked(const char *msg, gsize len, gsize chunk, const Record *keys,
               gint64 now)
{
	g_autoptr(PbDkimVerify) v = pb_dkim_verify_new();

	for (gsize i = 0; i < len; i += chunk)
		pb_dkim_verify_feed(v, msg + i, MIN(chunk, len - i));
	return pb_dkim_verify_finish(v, now, lookup, (gpointer)keys);
}

static PbDkimStatus
status_of(GPtrArray *results, guint i)
{
	g_assert_cmpuint(results->len, >, i);
	return ((PbDkimResult *)g_ptr_array_index(results, i))->status;
}

/* ---- tag lists ---- */

static void
test_tags(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) t = NULL;
	static const char *const bad[] = {
	    "a=1; novalue", "a=1; a=2", "=x",    "1a=x",
	    "a b=1",        "a=1;;b=2", "a-b=1",
	};

	t = pb_dkim_tags_parse(" v = 1 ;\r\n\tb=ab\r\n cd ; z=;", 26, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(t->len, ==, 3);
	g_assert_cmpstr(pb_dkim_tags_get(t, "v"), ==, "1");
	g_assert_cmpstr(pb_dkim_tags_get(t, "b"), ==, "ab\r\n cd");
	g_assert_cmpstr(pb_dkim_tags_get(t, "z"), ==, "");
	g_assert_null(pb_dkim_tags_get(t, "V"));
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		GPtrArray *p =
		    pb_dkim_tags_parse(bad[i], strlen(bad[i]), &error);
		g_assert_null(p);
		g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
		g_clear_error(&error);
	}
}

static void
test_sig_parse(void)
{
	static const struct {
		const char *value;
		int code; /* 0: parses */
	} cases[] = {
	    {"v=1; a=rsa-sha256; d=ex.org; s=s; h=From:To; bh="
	     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	     0},
	    {"v=1; a=rsa-sha1; d=ex.org; s=s; h=from; bh="
	     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	     PB_ERROR_PERM},
	    {"v=1; a=rsa-sha256; d=ex.org; s=s; h=to; bh="
	     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	     PB_ERROR_DATA},
	    {"v=2; a=rsa-sha256; d=ex.org; s=s; h=from; bh="
	     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	     PB_ERROR_DATA},
	    {"v=1; a=rsa-sha256; d=ex.org; s=s; h=from; i=@other.org; bh="
	     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	     PB_ERROR_DATA},
	    {"v=1; a=rsa-sha256; d=ex.org; s=s; h=from; i=u@sub.ex.org; bh="
	     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	     0},
	    {"v=1; a=rsa-sha256; d=ex.org; s=s; h=from; t=10; x=5; bh="
	     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	     PB_ERROR_DATA},
	    {"v=1; a=rsa-sha256; d=ex.org; s=s; h=from; bh=AAAA; b=AAAA",
	     PB_ERROR_DATA},
	    {"v=1; a=rsa-sha256; d=ex.org; h=from; bh="
	     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	     PB_ERROR_DATA},
	    {"v=1; a=rsa-sha256; c=relaxed/odd; d=ex.org; s=s; h=from; bh="
	     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA",
	     PB_ERROR_DATA},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(PbDkimSig) sig = pb_dkim_sig_parse(
		    cases[i].value, strlen(cases[i].value), &error);
		if (cases[i].code == 0) {
			g_assert_no_error(error);
			g_assert_nonnull(sig);
		} else
			g_assert_error(error, PB_ERROR, cases[i].code);
	}
}

static void
test_key_parse(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbDkimKey) k = NULL;
	static const char *const bad[] = {
	    "v=DKIM2; p=AAAA", "k=dsa; p=AAAA", "h=sha1; p=AAAA",
	    "v=DKIM1; k=rsa",  "p=AA!A",        "s=tlsrpt; p=AAAA"};

	k = pb_dkim_key_parse(rfc8463_record, strlen(rfc8463_record), &error);
	g_assert_no_error(error);
	g_assert_cmpint(k->type, ==, PB_KEY_ED25519);
	g_assert_cmpuint(g_bytes_get_size(k->key), ==, 32);
	g_clear_pointer(&k, pb_dkim_key_free);
	k = pb_dkim_key_parse("p=; t=y:s", 9, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(g_bytes_get_size(k->key), ==, 0);
	g_assert_true(k->testing && k->strict);
	for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
		PbDkimKey *p =
		    pb_dkim_key_parse(bad[i], strlen(bad[i]), &error);
		g_assert_null(p);
		g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
		g_clear_error(&error);
	}
}

/* ---- canonicalisation: RFC 6376 3.4.6 ---- */

static void
test_canon_header(void)
{
	g_autoptr(GString) out = g_string_new(NULL);
	static const char a[] = "A: X", b[] = "B : Y\t\r\n\tZ  ";
	static const char c[] = "Subject:\r\n\tHi  there ";

	pb_dkim_canon_header(a, strlen(a), TRUE, out);
	pb_dkim_canon_header(b, strlen(b), TRUE, out);
	g_assert_cmpstr(out->str, ==, "a:X\r\nb:Y Z\r\n");
	g_string_truncate(out, 0);
	pb_dkim_canon_header(a, strlen(a), FALSE, out);
	pb_dkim_canon_header(b, strlen(b), FALSE, out);
	g_assert_cmpstr(out->str, ==, "A: X\r\nB : Y\t\r\n\tZ  \r\n");
	/* folded right after the colon */
	g_string_truncate(out, 0);
	pb_dkim_canon_header(c, strlen(c), TRUE, out);
	g_assert_cmpstr(out->str, ==, "subject:Hi there\r\n");
}

static void
sha256_of(const char *s, guint8 *digest)
{
	g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);
	gsize n = 32;

	g_checksum_update(c, (const guchar *)s, (gssize)strlen(s));
	g_checksum_get_digest(c, digest, &n);
}

/* BODY canonicalised is WANT, fed in chunks of every size. */
static void
check_body(const char *body, gboolean relaxed, const char *want)
{
	guint8 expected[32];
	gsize len = strlen(body);

	sha256_of(want, expected);
	for (gsize chunk = 1; chunk <= MAX(len, 1); chunk++) {
		g_autoptr(PbDkimBody) b = pb_dkim_body_new(relaxed, -1);
		guint8 got[32];
		guint64 n;
		for (gsize i = 0; i < len; i += chunk)
			pb_dkim_body_feed(b, body + i, MIN(chunk, len - i));
		pb_dkim_body_finish(b, got, &n);
		g_assert_cmpuint(n, ==, strlen(want));
		g_assert_cmpmem(got, 32, expected, 32);
	}
}

static void
test_canon_body(void)
{
	static const char body[] = " C \r\nD \t E\r\n\r\n\r\n";

	check_body(body, TRUE, " C\r\nD E\r\n");
	check_body(body, FALSE, " C \r\nD \t E\r\n");
	/* an empty body (RFC 6376 3.4.3, 3.4.4) */
	check_body("", FALSE, "\r\n");
	check_body("", TRUE, "");
	check_body("\r\n\r\n", FALSE, "\r\n");
	check_body(" \r\n\t\r\n", TRUE, "");
	/* no CRLF at the end: one is added; bare LF ends a line */
	check_body("a  b", TRUE, "a b\r\n");
	check_body("a\nb \n", TRUE, "a\r\nb\r\n");
	/* 8-bit and a lone CR are content */
	check_body("caf\xc3\xa9\r \r\n", TRUE, "caf\xc3\xa9\r\r\n");
}

static void
test_body_limit(void)
{
	g_autoptr(PbDkimBody) b = pb_dkim_body_new(TRUE, 5);
	guint8 got[32], want[32];
	guint64 n;

	pb_dkim_body_feed(b, "abc\r\ndef\r\n", 10);
	pb_dkim_body_finish(b, got, &n);
	sha256_of("abc\r\n", want);
	g_assert_cmpuint(n, ==, 10);
	g_assert_cmpmem(got, 32, want, 32);
}

/* ---- RFC 8463 appendix A ---- */

static void
test_rfc8463_verify(void)
{
	static const char msg[] = RFC8463_SIG RFC6376_HEADER RFC6376_BODY;
	static const char *const rec[] = {rfc8463_record, NULL};
	const Record keys[] = {
	    {"brisbane._domainkey.football.example.com", rec, 0}, {NULL}};
	g_autoptr(GPtrArray) r =
	    verify_chunked(msg, strlen(msg), strlen(msg), keys, 1600000000);
	PbDkimResult *res;
	g_autofree char *text = NULL;

	g_assert_cmpuint(r->len, ==, 1);
	res = g_ptr_array_index(r, 0);
	g_assert_cmpstr(res->reason, ==, NULL);
	g_assert_cmpint(res->status, ==, PB_DKIM_PASS);
	text = pb_dkim_result_format(res);
	g_assert_cmpstr(text, ==,
	                "dkim=pass header.d=football.example.com "
	                "header.s=brisbane header.b=9/dsDChY0YMT");
}

/* The signature is deterministic (Ed25519): signing the same header
 * digest with the RFC's key gives the RFC's b= octet for octet. */
static void
test_rfc8463_sign(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbPrivKey) key =
	    pb_privkey_import_pem(rfc8463_key, strlen(rfc8463_key), &error);
	g_autoptr(GString) data = g_string_new(RFC6376_HEADER);
	g_autoptr(GBytes) sig = NULL;
	g_autofree char *b64 = NULL;
	const char *sigfield = RFC8463_SIG;
	const char *b = strstr(sigfield, " b=") + 3;
	guint8 digest[32];

	g_assert_no_error(error);
	g_assert_cmpint(pb_privkey_type(key), ==, PB_KEY_ED25519);
	/* simple/simple: the five fields as they are (the second from,
	 * subject and date match nothing), then the field with b= empty
	 * and no final CRLF */
	g_string_append_len(data, sigfield, b - sigfield);
	sha256_of(data->str, digest);
	sig = pb_privkey_sign_sha256(key, digest, &error);
	g_assert_no_error(error);
	b64 =
	    g_base64_encode(g_bytes_get_data(sig, NULL), g_bytes_get_size(sig));
	g_assert_cmpstr(b64, ==,
	                "9/dsDChY0YMTtD5Eyw3wx7x22BlSJP7M5ECbJ7GWrR45nXlTCGb8"
	                "l0YBo0wBLR++X5LqmsxXaOYLLJe46l10AQ==");
}

/* ---- sign, then verify ---- */

static char **
record_of(const char *pem)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbPrivKey) k =
	    pb_privkey_import_pem(pem, strlen(pem), &error);
	char **rec;

	g_assert_no_error(error);
	rec = pb_dkim_key_record(k, &error);
	g_assert_no_error(error);
	for (guint i = 0; rec[i]; i++)
		g_assert_cmpuint(strlen(rec[i]), <=, 255);
	return rec;
}

/* Signs MSG (fed in CHUNK octets) and returns signature + MSG. */
static char *
sign(PbDkimSigner *signer, const char *msg, gsize chunk)
{
	g_autoptr(PbDkimSign) s = pb_dkim_sign_new(signer);
	g_autoptr(GError) error = NULL;
	g_autofree char *d = NULL;
	g_autofree char *head = NULL;
	const char *why = NULL;
	gsize len = strlen(msg);

	for (gsize i = 0; i < len; i += chunk)
		pb_dkim_sign_feed(s, msg + i, MIN(chunk, len - i));
	head = pb_dkim_sign_finish(s, 1700000000, &d, &why, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(why, ==, NULL);
	g_assert_cmpstr(d, ==, "example.org");
	return g_strconcat(head, msg, NULL);
}

static const char round_msg[] =
    "Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
    "From: Alice <alice@Example.ORG>\r\n"
    "To: bob@example.net,\r\n  carol@example.net\r\n"
    "Subject:\r\n\tfolded right after the colon  \r\n"
    "X-Dup: one\r\nX-Dup: two\r\n"
    "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
    "\r\n"
    "caf\xc3\xa9 \t with trailing space   \r\n"
    ".leading dot\r\n\r\n\r\n";

static void
test_round_trip(void)
{
	g_autoptr(GError) error = NULL;
	char *domains[] = {"example.org", NULL};
	char *headers[] = {"from", "to", "subject", "date", "x-dup", NULL};
	g_autoptr(PbDkimSigner) signer = pb_dkim_signer_new_from_pem(
	    "sel", NULL, domains, headers, rsa_key(), ed_key(), &error);
	g_auto(GStrv) rsa = record_of(rsa_key());
	g_auto(GStrv) ed = record_of(ed_key());
	Record k[] = {{"sel._domainkey.example.org", NULL, 0},
	              {"sel-ed25519._domainkey.example.org", NULL, 0},
	              {NULL}};
	gsize len = strlen(round_msg);

	g_assert_no_error(error);
	g_assert_cmpuint(g_strv_length(rsa), >, 1); /* split over strings */
	k[0].strings = (const char *const *)rsa;
	k[1].strings = (const char *const *)ed;
	for (gsize chunk = 1; chunk <= len; chunk++) {
		g_autofree char *signed_msg = sign(signer, round_msg, chunk);
		gsize slen = strlen(signed_msg);
		g_autoptr(GPtrArray) r = verify_chunked(
		    signed_msg, slen, chunk == len ? 7 : chunk, k, 1700000000);
		g_assert_cmpuint(r->len, ==, 2);
		g_assert_cmpint(status_of(r, 0), ==, PB_DKIM_PASS);
		g_assert_cmpint(status_of(r, 1), ==, PB_DKIM_PASS);
		g_assert_cmpstr(((PbDkimResult *)r->pdata[1])->selector, ==,
		                "sel-ed25519");
	}
	/* each key answering for the other's name: the type decides */
	k[0].strings = (const char *const *)ed;
	k[1].strings = (const char *const *)rsa;
	{
		g_autofree char *signed_msg = sign(signer, round_msg, 4096);
		g_autoptr(GPtrArray) r = verify_chunked(
		    signed_msg, strlen(signed_msg), 4096, k, 1700000000);
		g_assert_cmpint(status_of(r, 0), ==, PB_DKIM_PERMERROR);
		g_assert_cmpint(status_of(r, 1), ==, PB_DKIM_PERMERROR);
	}
}

/* A copy changed anywhere signed fails; one changed where nothing is
 * signed still passes; an added From fails (oversigned). */
static void
test_tamper(void)
{
	g_autoptr(GError) error = NULL;
	char *domains[] = {"example.org", NULL};
	g_autoptr(PbDkimSigner) signer = pb_dkim_signer_new_from_pem(
	    "sel", NULL, domains, NULL, rsa_key(), NULL, &error);
	g_auto(GStrv) rsa = record_of(rsa_key());
	Record k[] = {{"sel._domainkey.example.org", NULL, 0}, {NULL}};
	g_autofree char *good = sign(signer, round_msg, 4096);
	static const struct {
		const char *from, *to;
		PbDkimStatus want;
	} cases[] = {
	    {"folded right", "folded Right", PB_DKIM_FAIL},
	    {"leading dot", "leading dog", PB_DKIM_FAIL},
	    {"X-Dup: two", "X-Dup: 2", PB_DKIM_PASS},
	    {"\r\n\r\ncaf", "\r\nFrom: eve@example.org\r\n\r\ncaf",
	     PB_DKIM_FAIL},
	    {"from x by y", "from x  by y", PB_DKIM_PASS},
	};

	g_assert_no_error(error);
	k[0].strings = (const char *const *)rsa;
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_auto(GStrv) parts = g_strsplit(good, cases[i].from, 2);
		g_autofree char *bad = g_strjoinv(cases[i].to, parts);
		g_autoptr(GPtrArray) r =
		    verify_chunked(bad, strlen(bad), 100, k, 1700000000);
		g_assert_cmpuint(g_strv_length(parts), ==, 2);
		g_assert_cmpint(status_of(r, 0), ==, cases[i].want);
	}
}

/* "v=DKIM1; p=..." of the key in tests/data/dkim/NAME. */
static char *
public_record(const char *name)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *pem = read_data(name);
	g_autoptr(PbPrivKey) key =
	    pb_privkey_import_pem(pem, strlen(pem), &error);
	g_autoptr(GBytes) pub = NULL;
	g_autofree char *b64 = NULL;

	g_assert_no_error(error);
	pub = pb_privkey_public(key, &error);
	g_assert_no_error(error);
	b64 =
	    g_base64_encode(g_bytes_get_data(pub, NULL), g_bytes_get_size(pub));
	return g_strconcat("v=DKIM1; p=", b64, NULL);
}

/* Results other than pass and fail. */
static void
test_results(void)
{
	g_autoptr(GError) error = NULL;
	char *domains[] = {"example.org", NULL};
	g_autoptr(PbDkimSigner) signer = pb_dkim_signer_new_from_pem(
	    "sel", NULL, domains, NULL, rsa_key(), NULL, &error);
	g_autofree char *msg = sign(signer, round_msg, 4096);
	static const char *const revoked[] = {"v=DKIM1; p=", NULL};
	const char *strings[] = {NULL, NULL};
	Record k[] = {{"sel._domainkey.example.org", NULL, 0}, {NULL}};
	g_autoptr(GPtrArray) r = NULL;

	g_assert_no_error(error);
	k[0].error = FAILS(PB_ERROR_TEMP);
	r = verify_chunked(msg, strlen(msg), 64, k, 0);
	g_assert_cmpint(status_of(r, 0), ==, PB_DKIM_TEMPERROR);
	g_clear_pointer(&r, g_ptr_array_unref);
	k[0].error = FAILS(PB_ERROR_NOTFOUND);
	r = verify_chunked(msg, strlen(msg), 64, k, 0);
	g_assert_cmpint(status_of(r, 0), ==, PB_DKIM_PERMERROR);
	g_clear_pointer(&r, g_ptr_array_unref);
	k[0].error = 0;
	k[0].strings = revoked;
	r = verify_chunked(msg, strlen(msg), 64, k, 0);
	g_assert_cmpint(status_of(r, 0), ==, PB_DKIM_PERMERROR);
	g_clear_pointer(&r, g_ptr_array_unref);
	/* a 1024-bit key is used (it did not sign this: fail); a key under
	 * 1024 bits is refused before any signature check */
	k[0].strings = strings;
	strings[0] = public_record("rsa1024.pem");
	r = verify_chunked(msg, strlen(msg), 64, k, 0);
	g_assert_cmpint(status_of(r, 0), ==, PB_DKIM_FAIL);
	g_clear_pointer(&r, g_ptr_array_unref);
	g_free((char *)strings[0]);
	strings[0] = public_record("rsa768.pem");
	r = verify_chunked(msg, strlen(msg), 64, k, 0);
	g_assert_cmpint(status_of(r, 0), ==, PB_DKIM_PERMERROR);
	g_assert_nonnull(strstr(
	    ((PbDkimResult *)g_ptr_array_index(r, 0))->reason, "768-bit"));
	g_clear_pointer(&r, g_ptr_array_unref);
	g_free((char *)strings[0]);
	/* no signature: no result */
	r = verify_chunked(round_msg, strlen(round_msg), 64, k, 0);
	g_assert_cmpuint(r->len, ==, 0);
}

/* The header fields the verifier kept, for DMARC: in order, folded
 * lines joined; the From domain only for exactly one From address. */
static void
test_fields(void)
{
	static const Record none[] = {{NULL}};
	g_autoptr(PbDkimVerify) v = pb_dkim_verify_new();
	g_autoptr(GPtrArray) r = NULL;
	g_autoptr(GPtrArray) two = g_ptr_array_new();
	g_autofree char *from = NULL;
	const GPtrArray *f;

	pb_dkim_verify_feed(v, round_msg, strlen(round_msg));
	r = pb_dkim_verify_finish(v, 0, lookup, (gpointer)none);
	f = pb_dkim_verify_fields(v);
	g_assert_cmpuint(f->len, ==, 7);
	g_assert_cmpstr(g_ptr_array_index(f, 2), ==,
	                "To: bob@example.net,\r\n  carol@example.net");
	from = pb_dkim_from_domain(f);
	g_assert_cmpstr(from, ==, "example.org");
	g_ptr_array_add(two, "From: a@example.org");
	g_ptr_array_add(two, "from : b@example.org");
	g_assert_null(pb_dkim_from_domain(two));
	g_ptr_array_remove_index(two, 0);
	g_free(from);
	from = pb_dkim_from_domain(two);
	g_assert_cmpstr(from, ==, "example.org");
}

/* Not ours to sign: several From, a From elsewhere. */
static void
test_not_ours(void)
{
	g_autoptr(GError) error = NULL;
	char *domains[] = {"example.org", NULL};
	g_autoptr(PbDkimSigner) signer = pb_dkim_signer_new_from_pem(
	    "sel", NULL, domains, NULL, rsa_key(), NULL, &error);
	static const char *const msgs[] = {
	    "From: a@example.net\r\n\r\nx\r\n",
	    "From: a@example.org\r\nFrom: b@example.org\r\n\r\n",
	    "To: a@example.org\r\n\r\n",
	};

	g_assert_no_error(error);
	for (gsize i = 0; i < G_N_ELEMENTS(msgs); i++) {
		g_autoptr(PbDkimSign) s = pb_dkim_sign_new(signer);
		const char *why = NULL;
		char *out;
		pb_dkim_sign_feed(s, msgs[i], strlen(msgs[i]));
		out = pb_dkim_sign_finish(s, 1, NULL, &why, &error);
		g_assert_no_error(error);
		g_assert_null(out);
		g_assert_nonnull(why);
	}
	/* a weak RSA key is refused for signing */
	g_assert_null(pb_dkim_signer_new_from_pem("s", NULL, domains, NULL,
	                                          ed_key(), NULL, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
}

static char *
read_data(const char *name)
{
	char *text = NULL;

	g_assert_true(g_file_get_contents(
	    g_test_get_filename(G_TEST_DIST, "data", "dkim", name, NULL), &text,
	    NULL, NULL));
	return text;
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/dkim/tags", test_tags);
	g_test_add_func("/dkim/sig-parse", test_sig_parse);
	g_test_add_func("/dkim/key-parse", test_key_parse);
	g_test_add_func("/dkim/canon/header", test_canon_header);
	g_test_add_func("/dkim/canon/body", test_canon_body);
	g_test_add_func("/dkim/canon/body-limit", test_body_limit);
	g_test_add_func("/dkim/rfc8463/verify", test_rfc8463_verify);
	g_test_add_func("/dkim/rfc8463/sign", test_rfc8463_sign);
	g_test_add_func("/dkim/round-trip", test_round_trip);
	g_test_add_func("/dkim/tamper", test_tamper);
	g_test_add_func("/dkim/results", test_results);
	g_test_add_func("/dkim/not-ours", test_not_ours);
	g_test_add_func("/dkim/fields", test_fields);
	return g_test_run();
}
