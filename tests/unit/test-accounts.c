/* test-accounts.c - the accounts file: parsing, verification, rewrite. */
#include "accounts.h"
#include "error.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A folder holding FILE with TEXT; returns the file's path. */
static char *
write_file(const char *text)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *dir = g_dir_make_tmp("test-accounts-XXXXXX", &error);
	char *path;

	g_assert_no_error(error);
	path = g_build_filename(dir, "accounts", NULL);
	if (text != NULL)
		g_assert_true(g_file_set_contents(path, text, -1, NULL));
	return path;
}

static void
remove_file(const char *path)
{
	g_autofree char *dir = g_path_get_dirname(path);

	(void)unlink(path);
	g_assert_cmpint(rmdir(dir), ==, 0);
}

static void
test_parse(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *hash = pb_accounts_hash("secret", &error);
	g_autofree char *text = g_strdup_printf(
	    "# accounts\n\nAlice@Example.ORG:%s\n  bob@example.org:$6$x$y  \n",
	    hash);
	g_autofree char *path = write_file(text);
	g_autoptr(PbAccounts) a = pb_accounts_load(path, &error);
	g_autoptr(GPtrArray) list = NULL;

	g_assert_no_error(error);
	g_assert_true(pb_accounts_exists(a, "alice@example.org"));
	g_assert_true(pb_accounts_exists(a, "ALICE@example.org"));
	g_assert_true(pb_accounts_exists(a, "bob@example.org"));
	g_assert_false(pb_accounts_exists(a, "carol@example.org"));
	list = pb_accounts_list(a);
	g_assert_cmpuint(list->len, ==, 2);
	g_assert_cmpstr(g_ptr_array_index(list, 0), ==, "alice@example.org");
	g_assert_cmpstr(g_ptr_array_index(list, 1), ==, "bob@example.org");
	remove_file(path);
}

static void
test_missing(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *path = write_file(NULL);
	g_autoptr(PbAccounts) a = pb_accounts_load(path, &error);
	g_autoptr(GPtrArray) list = NULL;

	g_assert_no_error(error);
	list = pb_accounts_list(a);
	g_assert_cmpuint(list->len, ==, 0);
	remove_file(path);
}

static void
test_malformed(void)
{
	static const char *const bad[] = {
	    "# ok\nalice@example.org\n",          /* no hash */
	    "# ok\nalice@example.org:\n",         /* empty hash */
	    "# ok\nalice:$6$x$y\n",               /* no domain */
	    "# ok\nalice@example.org:$6$ x\n",    /* space in the hash */
	    "# ok\na@b.org:$6$x\nA@B.org:$6$y\n", /* duplicate */
	    /* two lines run together (found by fuzz-accounts): not one
	     * account "a@b.org:$6$x$yc@d.org" */
	    "# ok\na@b.org:$6$x$yc@d.org:$6$z\n",
	};

	for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autoptr(GError) error = NULL;
		g_autofree char *path = write_file(bad[i]);
		g_autofree char *where =
		    g_strdup_printf("%s:%u:", path, i == 4 ? 3 : 2);
		g_autoptr(PbAccounts) a = pb_accounts_load(path, &error);

		g_assert_null(a);
		g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
		g_assert_true(g_str_has_prefix(error->message, where));
		remove_file(path);
	}
}

static void
test_verify(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *hash = pb_accounts_hash("correct horse", &error);
	g_autofree char *text = g_strdup_printf("alice@example.org:%s\n"
	                                        "locked@example.org:!\n",
	                                        hash);
	g_autofree char *path = write_file(text);
	g_autoptr(PbAccounts) a = pb_accounts_load(path, &error);

	g_assert_no_error(error);
	g_assert_true(
	    pb_accounts_verify(a, "alice@example.org", "correct horse"));
	g_assert_true(
	    pb_accounts_verify(a, "Alice@Example.org", "correct horse"));
	g_assert_false(
	    pb_accounts_verify(a, "alice@example.org", "correct hors"));
	g_assert_false(pb_accounts_verify(a, "alice@example.org", ""));
	g_assert_false(
	    pb_accounts_verify(a, "nobody@example.org", "correct horse"));
	g_assert_false(pb_accounts_verify(a, "locked@example.org", "!"));
	g_assert_false(pb_accounts_verify(a, "locked@example.org", ""));
	remove_file(path);
}

static void
test_hash(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *h1 = pb_accounts_hash("pw", &error);
	g_autofree char *h2 = pb_accounts_hash("pw", &error);

	g_assert_no_error(error);
	g_assert_true(g_str_has_prefix(h1, "$y$") ||
	              g_str_has_prefix(h1, "$6$"));
	/* a fresh salt each time */
	g_assert_cmpstr(h1, !=, h2);
	g_assert_null(strchr(h1, ':'));
}

static void
test_save(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *path = write_file("# head\nb@example.org:$6$b$b\n"
	                                   "# middle\na@example.org:$6$a$a\n"
	                                   "c@example.org:$6$c$c\n");
	g_autoptr(PbAccounts) a = pb_accounts_load(path, &error);
	g_autoptr(PbAccounts) back = NULL;
	g_autofree char *got = NULL;
	g_autofree char *hash = pb_accounts_hash("new", &error);
	struct stat st;

	g_assert_no_error(error);
	g_assert_true(pb_accounts_set(a, "A@example.org", "$6$A$A"));
	g_assert_true(pb_accounts_set(a, "c@example.org", NULL));
	g_assert_false(pb_accounts_set(a, "zz@example.org", NULL));
	g_assert_true(pb_accounts_set(a, "d@example.org", hash));
	g_assert_true(pb_accounts_save(a, path, &error));
	g_assert_no_error(error);
	g_assert_true(g_file_get_contents(path, &got, NULL, NULL));
	g_assert_true(g_str_has_prefix(got, "# head\nb@example.org:$6$b$b\n"
	                                    "# middle\na@example.org:$6$A$A\n"
	                                    "d@example.org:$y$") ||
	              g_str_has_prefix(got, "# head\nb@example.org:$6$b$b\n"
	                                    "# middle\na@example.org:$6$A$A\n"
	                                    "d@example.org:$6$"));
	g_assert_cmpint(stat(path, &st), ==, 0);
	g_assert_cmpint(st.st_mode & 0777, ==, 0600);
	back = pb_accounts_load(path, &error);
	g_assert_no_error(error);
	g_assert_true(pb_accounts_verify(back, "d@example.org", "new"));
	g_assert_false(pb_accounts_exists(back, "c@example.org"));
	remove_file(path);
}

/* A hash of PASSWORD with crypt_gensalt(PREFIX, COUNT). */
static char *
hash_with(const char *prefix, unsigned long count, const char *password)
{
	char *setting = crypt_gensalt_ra(prefix, count, NULL, 0);
	struct crypt_data cd = {0};
	char *hash;

	g_assert_nonnull(setting);
	hash = g_strdup(crypt_r(password, setting, &cd));
	free(setting);
	g_assert_true(hash[0] == '$');
	return hash;
}

/* The dummy of a file whose accounts mostly use PREFIX/COUNT has their
 * method and cost (the text up to the salt, COST), a salt of its own,
 * and yields such a hash. */
static void
check_dummy(const char *prefix, unsigned long count, const char *cost)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *a = hash_with(prefix, count, "pw-a");
	g_autofree char *b = hash_with(prefix, count, "pw-b");
	g_autofree char *other =
	    hash_with(g_str_equal(prefix, "$y$") ? "$6$" : "$y$", 0, "pw-c");
	g_autofree char *text = g_strdup_printf(
	    "c@example.org:%s\na@example.org:%s\nb@example.org:%s\n", other, a,
	    b);
	g_autofree char *path = write_file(text);
	g_autoptr(PbAccounts) acc = pb_accounts_load(path, &error);
	const char *dummy;
	struct crypt_data cd = {0};
	const char *got;

	g_assert_no_error(error);
	dummy = pb_accounts_dummy(acc);
	g_assert_true(g_str_has_prefix(a, cost));
	g_assert_true(g_str_has_prefix(dummy, cost));
	/* bcrypt: 22 salt characters, then the hash without a '$' */
	g_assert_cmpuint(strlen(dummy), ==,
	                 g_str_equal(prefix, "$2b$")
	                     ? strlen(cost) + 22
	                     : (gsize)(strrchr(a, '$') - a));
	g_assert_false(strncmp(dummy, a, strlen(dummy)) == 0);
	g_assert_false(strncmp(dummy, b, strlen(dummy)) == 0);
	got = crypt_r("anything", dummy, &cd);
	g_assert_true(g_str_has_prefix(got, dummy));
	g_assert_cmpuint(strlen(got), ==, strlen(a));
	g_assert_false(pb_accounts_verify(acc, "nobody@example.org", "pw-a"));
	g_assert_true(pb_accounts_verify(acc, "a@example.org", "pw-a"));
	remove_file(path);
}

static void
test_dummy(void)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *path = write_file("# nobody yet\n");
	g_autoptr(PbAccounts) none = pb_accounts_load(path, &error);

	check_dummy("$6$", 20000, "$6$rounds=20000$");
	check_dummy("$6$", 0, "$6$");
	check_dummy("$y$", 7, "$y$jBT$");
	check_dummy("$2b$", 6, "$2b$06$");
	/* no accounts: the method of new hashes */
	g_assert_no_error(error);
	g_assert_true(g_str_has_prefix(pb_accounts_dummy(none), "$"));
	remove_file(path);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/accounts/parse", test_parse);
	g_test_add_func("/accounts/missing", test_missing);
	g_test_add_func("/accounts/malformed", test_malformed);
	g_test_add_func("/accounts/verify", test_verify);
	g_test_add_func("/accounts/dummy", test_dummy);
	g_test_add_func("/accounts/hash", test_hash);
	g_test_add_func("/accounts/save", test_save);
	return g_test_run();
}
