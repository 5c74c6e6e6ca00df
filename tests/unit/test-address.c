/* test-address.c - RFC 5321 paths: what is accepted, how it is stored,
 * and what is refused. */
#include "address.h"
#include "error.h"

#include <string.h>

static PbAddress *
parse(const char *text, PbAddressFlags flags, const char **rest, GError **error)
{
	PbAddress *a = NULL;
	const char *r = NULL;

	if (!pb_address_parse_path(text, strlen(text), flags, &a, &r, error))
		return NULL;
	if (rest)
		*rest = r;
	return a;
}

static void
test_good(void)
{
	static const struct {
		const char *in;
		PbAddressFlags flags;
		const char *local, *domain, *string;
	} cases[] = {
	    {"<alice@Example.ORG>", 0, "alice", "example.org",
	     "alice@example.org"},
	    {"<>", PB_ADDRESS_ALLOW_NULL, "", "", ""},
	    {"<Postmaster>", PB_ADDRESS_ALLOW_POSTMASTER, "postmaster", "",
	     "postmaster"},
	    {"<@relay.example,@b.example:bob@example.net>", 0, "bob",
	     "example.net", "bob@example.net"},
	    {"<\"john doe\"@example.org>", 0, "john doe", "example.org",
	     "\"john doe\"@example.org"},
	    {"<\"a\\\"b\"@example.org>", 0, "a\"b", "example.org",
	     "\"a\\\"b\"@example.org"},
	    {"<x@[192.0.2.1]>", 0, "x", "[192.0.2.1]", "x@[192.0.2.1]"},
	    {"<x@[IPv6:2001:db8::1]>", 0, "x", "[ipv6:2001:db8::1]",
	     "x@[ipv6:2001:db8::1]"},
	    {"plain@example.org", PB_ADDRESS_NO_BRACKETS, "plain",
	     "example.org", "plain@example.org"},
	    {"<j\xc3\xbcrgen@b\xc3\xbc"
	     "cher.example>",
	     PB_ADDRESS_UTF8, "j\xc3\xbcrgen",
	     "b\xc3\xbc"
	     "cher.example",
	     "j\xc3\xbcrgen@b\xc3\xbc"
	     "cher.example"},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(PbAddress) a =
		    parse(cases[i].in, cases[i].flags, NULL, &error);
		g_autofree char *s = NULL;

		if (a == NULL)
			g_error("%s: %s", cases[i].in, error->message);
		g_assert_cmpstr(a->local, ==, cases[i].local);
		g_assert_cmpstr(a->domain, ==, cases[i].domain);
		s = pb_address_to_string(a);
		g_assert_cmpstr(s, ==, cases[i].string);
	}
}

static void
test_rest(void)
{
	g_autoptr(GError) error = NULL;
	const char *rest = NULL;
	g_autoptr(PbAddress) a =
	    parse("<a@example.org> SIZE=10", 0, &rest, &error);

	g_assert_no_error(error);
	g_assert_nonnull(a);
	g_assert_cmpstr(rest, ==, " SIZE=10");
}

static void
test_bad(void)
{
	static const struct {
		const char *in;
		PbAddressFlags flags;
	} cases[] = {
	    {"alice@example.org", 0},
	    {"<>", 0},
	    {"<Postmaster>", 0},
	    {"<alice>", PB_ADDRESS_ALLOW_POSTMASTER},
	    {"<alice@example.org", 0},
	    {"<alice@@example.org>", 0},
	    {"<alice@example..org>", 0},
	    {"<alice@-example.org>", 0},
	    {"<ali ce@example.org>", 0},
	    {"<alice@exa\rmple.org>", 0},
	    {"<\"a\nb\"@example.org>", 0},
	    {"<\"a\x01\"@example.org>", 0},
	    {"<a@[300.1.1.1]>", 0},
	    {"<a@[IPv6:zz]>", 0},
	    {"<j\xc3\xbcrgen@example.org>", 0},
	    {"<j\xc3rgen@example.org>", PB_ADDRESS_UTF8},
	    {"<@relay:>", 0},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(PbAddress) a =
		    parse(cases[i].in, cases[i].flags, NULL, &error);

		if (a != NULL)
			g_error("accepted %s", cases[i].in);
		g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	}
}

/* Found by fuzz-address: inet_pton stopped at a NUL inside an address
 * literal, so "[IPv6:2001:db8::\0junk]" was accepted with the NUL and
 * the junk in the domain. */
static void
test_literal_nul(void)
{
	static const char path4[] = "<a@[192.0.2.1\0x]>";
	static const char path6[] = "<a@[IPv6:2001:db8::\0<x@[IPv6:2001]>";
	g_autoptr(GError) error = NULL;
	g_autoptr(GError) error6 = NULL;
	g_autoptr(PbAddress) a = NULL;
	g_autoptr(PbAddress) a6 = NULL;

	g_assert_false(pb_address_parse_path(path4, sizeof path4 - 1, 0, &a,
	                                     NULL, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	g_assert_false(pb_address_parse_path(path6, sizeof path6 - 1, 0, &a6,
	                                     NULL, &error6));
	g_assert_error(error6, PB_ERROR, PB_ERROR_DATA);
}

static void
test_bounds(void)
{
	g_autoptr(GString) local = g_string_new("<");
	g_autoptr(GString) domain = g_string_new("<a@");
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAddress) a = NULL;

	for (int i = 0; i < PB_ADDRESS_MAX_LOCAL; i++)
		g_string_append_c(local, 'x');
	g_string_append(local, "@example.org>");
	a = parse(local->str, 0, NULL, &error);
	g_assert_no_error(error);
	g_clear_pointer(&a, pb_address_free);
	g_string_insert_c(local, 1, 'x'); /* 65 */
	a = parse(local->str, 0, NULL, &error);
	g_assert_null(a);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	g_clear_error(&error);
	for (int i = 0; i < 60; i++)
		g_string_append(domain, "abcd.");
	g_string_append(domain, "org>");
	a = parse(domain->str, 0, NULL, &error);
	g_assert_null(a);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
}

/* A path is at most 256 octets with its brackets (RFC 5321 4.5.3.1.3): a
 * bare address (sendmail, aliases) at most 254, so that what it is
 * written as later, bracketed, parses again (found by fuzz-address). */
static void
test_path_length(void)
{
	g_autoptr(GString) bare = g_string_new("1@");
	g_autofree char *bracketed = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAddress) a = NULL;

	while (bare->len < PB_ADDRESS_MAX_PATH - 2)
		g_string_append(bare, bare->len % 50 == 49 ? "." : "d");
	g_assert_cmpuint(bare->len, ==, 254);
	a = parse(bare->str, PB_ADDRESS_NO_BRACKETS, NULL, &error);
	g_assert_no_error(error);
	g_clear_pointer(&a, pb_address_free);
	bracketed = g_strdup_printf("<%s>", bare->str);
	a = parse(bracketed, 0, NULL, &error);
	g_assert_no_error(error);
	g_clear_pointer(&a, pb_address_free);
	g_string_append_c(bare, 'd'); /* 255 bare, 257 bracketed */
	a = parse(bare->str, PB_ADDRESS_NO_BRACKETS, NULL, &error);
	g_assert_null(a);
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
}

static void
test_canonical(void)
{
	g_autofree char *a =
	    pb_address_canonical("Alice+Lists@Example.ORG", "+");
	g_autofree char *b =
	    pb_address_canonical("Alice+Lists@Example.ORG", "");
	g_autofree char *c = pb_address_canonical("bob-x-y@example.org", "-");
	g_autofree char *l = NULL;
	g_autofree char *d = NULL;

	g_assert_cmpstr(a, ==, "alice@example.org");
	g_assert_cmpstr(b, ==, "alice+lists@example.org");
	g_assert_cmpstr(c, ==, "bob@example.org");
	g_assert_true(pb_address_split("\"a@b\"@example.org", &l, &d));
	g_assert_cmpstr(l, ==, "\"a@b\"");
	g_assert_cmpstr(d, ==, "example.org");
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/address/good", test_good);
	g_test_add_func("/address/rest", test_rest);
	g_test_add_func("/address/bad", test_bad);
	g_test_add_func("/address/literal-nul", test_literal_nul);
	g_test_add_func("/address/bounds", test_bounds);
	g_test_add_func("/address/path-length", test_path_length);
	g_test_add_func("/address/canonical", test_canonical);
	return g_test_run();
}
