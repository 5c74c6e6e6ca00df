/* test-aliases.c - the aliases file and its expansion. */
#include "aliases.h"
#include "error.h"

#include <string.h>
#include <unistd.h>

typedef struct {
	char *dir;
	PbConfig *cfg;
	PbAccounts *accounts;
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
	static const char conf[] = "[main]\n"
	                           "domains = example.org, example.net\n";
	g_autoptr(GError) error = NULL;
	g_autofree char *path = NULL;

	f->dir = g_dir_make_tmp("test-aliases-XXXXXX", &error);
	g_assert_no_error(error);
	f->cfg = pb_config_load_data(conf, strlen(conf), "test.conf", f->dir,
	                             &error);
	g_assert_no_error(error);
	path = g_build_filename(f->dir, "accounts", NULL);
	g_assert_true(g_file_set_contents(path,
	                                  "alice@example.org:$6$a$a\n"
	                                  "bob@example.org:$6$b$b\n"
	                                  "bob@example.net:$6$b$b\n"
	                                  "carol@example.net:$6$c$c\n",
	                                  -1, NULL));
	f->accounts = pb_accounts_load(path, &error);
	g_assert_no_error(error);
	(void)unlink(path);
}

static void
teardown(Fixture *f, gconstpointer data)
{
	g_autofree char *path = g_build_filename(f->dir, "aliases", NULL);

	(void)unlink(path);
	(void)rmdir(f->dir);
	g_free(f->dir);
	pb_config_free(f->cfg);
	pb_accounts_free(f->accounts);
}

static PbAliases *
load(Fixture *f, const char *text, GError **error)
{
	g_autofree char *path = g_build_filename(f->dir, "aliases", NULL);

	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	return pb_aliases_load(path, error);
}

/* Expands ADDRESS; returns the result joined by spaces, or NULL. */
static char *
expand(Fixture *f, PbAliases *a, const char *address, GError **error)
{
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);

	if (!pb_aliases_expand(a, f->accounts, f->cfg, address, out, error)) {
		g_assert_cmpuint(out->len, ==, 0);
		return NULL;
	}
	g_ptr_array_add(out, NULL);
	return g_strjoinv(" ", (char **)out->pdata);
}

static void
test_bare(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAliases) a =
	    load(f,
	         "# comment\n\n"
	         "postmaster: bob\n"
	         "Info@Example.ORG: alice, carol@example.net\n",
	         &error);
	g_autofree char *r1 = NULL;
	g_autofree char *r2 = NULL;
	g_autofree char *r3 = NULL;

	g_assert_no_error(error);
	g_assert_true(pb_aliases_has(a, "postmaster@example.org"));
	g_assert_true(pb_aliases_has(a, "postmaster@example.net"));
	g_assert_true(pb_aliases_has(a, "info@example.org"));
	g_assert_false(pb_aliases_has(a, "info@example.net"));
	g_assert_false(pb_aliases_has(a, "alice@example.org"));
	r1 = expand(f, a, "postmaster@example.org", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(r1, ==, "bob@example.org");
	r2 = expand(f, a, "postmaster@example.net", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(r2, ==, "bob@example.net");
	r3 = expand(f, a, "info@example.org", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(r3, ==, "alice@example.org carol@example.net");
}

static void
test_recursive(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAliases) a = load(
	    f,
	    "all@example.org: staff, ops, Friend@Remote.example\n"
	    "staff: alice, bob+lists\n"
	    "ops@example.org: bob, alice@example.org, friend@remote.example, "
	    "Friend@REMOTE.example\n",
	    &error);
	g_autofree char *r = NULL;

	g_assert_no_error(error);
	r = expand(f, a, "all@example.org", &error);
	g_assert_no_error(error);
	/* depth first, each address once (a domain has no case, a remote
	 * local part may); remote ones as written */
	g_assert_cmpstr(r, ==,
	                "alice@example.org bob@example.org "
	                "friend@remote.example Friend@REMOTE.example");
}

static void
test_no_duplicates_in_out(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAliases) a = load(f, "team: alice, bob\n", &error);
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);

	g_assert_no_error(error);
	g_ptr_array_add(out, g_strdup("alice@example.org"));
	g_assert_true(pb_aliases_expand(a, f->accounts, f->cfg,
	                                "team@example.org", out, &error));
	g_assert_cmpuint(out->len, ==, 2);
	g_assert_cmpstr(g_ptr_array_index(out, 1), ==, "bob@example.org");
}

/* Item 10 of issue 12: the final mailboxes of one message are unique.
 * A recipient named directly in another form (case, +extension) is not
 * added again, nor is a target named in several forms or by two aliases. */
static void
test_no_duplicate_mailboxes(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAliases) a =
	    load(f,
	         "team: Alice+list, bob, sub\n"
	         "sub: ALICE, alice@EXAMPLE.ORG, bob+x, Dave@Far.example, "
	         "dave@far.example\n",
	         &error);
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *r = NULL;

	g_assert_no_error(error);
	r = expand(f, a, "team@example.org", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(r, ==,
	                "alice@example.org bob@example.org Dave@Far.example "
	                "dave@far.example");
	g_ptr_array_add(out, g_strdup("Alice+news@EXAMPLE.org"));
	g_assert_true(pb_aliases_expand(a, f->accounts, f->cfg,
	                                "team@example.org", out, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(out->len, ==, 4);
	g_assert_cmpstr(g_ptr_array_index(out, 1), ==, "bob@example.org");
}

static void
test_loop(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAliases) a = load(f, "a: b\nb: c\nc: alice, a\n", &error);
	g_autofree char *r = NULL;

	g_assert_no_error(error);
	r = expand(f, a, "a@example.org", &error);
	g_assert_null(r);
	g_assert_error(error, PB_ERROR, PB_ERROR_PERM);
	g_assert_true(g_str_has_prefix(error->message, "5.4.6 "));
}

static void
test_depth(Fixture *f, gconstpointer data)
{
	g_autoptr(GString) text = g_string_new(NULL);
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAliases) a = NULL;
	g_autofree char *ok = NULL;
	g_autofree char *deep = NULL;

	/* a0 -> a1 -> ... -> a11 -> alice */
	for (int i = 0; i < 11; i++)
		g_string_append_printf(text, "a%d: a%d\n", i, i + 1);
	g_string_append(text, "a11: alice\n");
	a = load(f, text->str, &error);
	g_assert_no_error(error);
	ok = expand(f, a, "a1@example.org", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(ok, ==, "alice@example.org");
	deep = expand(f, a, "a0@example.org", &error);
	g_assert_null(deep);
	g_assert_error(error, PB_ERROR, PB_ERROR_PERM);
	g_assert_nonnull(strstr(error->message, "deep"));
}

static void
test_self(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAliases) a = load(f,
	                              "alice: alice, bob\n"
	                              "bob@example.org: carol@example.net\n"
	                              "ghost: ghost, alice\n",
	                              &error);
	g_autofree char *r1 = NULL;
	g_autofree char *r2 = NULL;
	g_autofree char *r3 = NULL;

	g_assert_no_error(error);
	r1 = expand(f, a, "alice@example.org", &error);
	g_assert_no_error(error);
	/* bob is an alias and an account: both */
	g_assert_cmpstr(r1, ==,
	                "carol@example.net bob@example.org alice@example.org");
	/* an alias that is also an account keeps the account */
	r2 = expand(f, a, "bob@example.org", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(r2, ==, "carol@example.net bob@example.org");
	/* naming itself without being an account */
	r3 = expand(f, a, "ghost@example.org", &error);
	g_assert_null(r3);
	g_assert_error(error, PB_ERROR, PB_ERROR_PERM);
}

static void
test_missing_target(Fixture *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAliases) a =
	    load(f, "sales: alice, nobody\nfar: x@elsewhere.example\n", &error);
	g_autofree char *r = NULL;
	g_autofree char *far = NULL;

	g_assert_no_error(error);
	r = expand(f, a, "sales@example.org", &error);
	g_assert_null(r);
	g_assert_error(error, PB_ERROR, PB_ERROR_PERM);
	g_assert_cmpstr(error->message, ==,
	                "5.1.1 alias sales@example.org: no such user "
	                "nobody@example.org");
	g_clear_error(&error);
	far = expand(f, a, "far@example.net", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(far, ==, "x@elsewhere.example");
}

static void
test_malformed(Fixture *f, gconstpointer data)
{
	static const char *const bad[] = {
	    "ok: alice\nno colon here\n",  "ok: alice\nx:\n",
	    "ok: alice\nx: a,,b\n",        "ok: alice\nx: |/bin/sh\n",
	    "ok: alice\nx: /var/mail/x\n", "ok: alice\nOK: bob\n",
	    "ok: alice\nx y: bob\n",
	};

	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autoptr(GError) error = NULL;
		g_autoptr(PbAliases) a = load(f, bad[i], &error);

		g_assert_null(a);
		g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
		g_assert_nonnull(strstr(error->message, "aliases:2:"));
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, setup, fn, teardown)
	ADD("/aliases/bare", test_bare);
	ADD("/aliases/recursive", test_recursive);
	ADD("/aliases/no-duplicates", test_no_duplicates_in_out);
	ADD("/aliases/no-duplicate-mailboxes", test_no_duplicate_mailboxes);
	ADD("/aliases/loop", test_loop);
	ADD("/aliases/depth", test_depth);
	ADD("/aliases/self", test_self);
	ADD("/aliases/missing-target", test_missing_target);
	ADD("/aliases/malformed", test_malformed);
	return g_test_run();
}
