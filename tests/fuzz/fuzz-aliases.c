/*
 * fuzz-aliases.c - the aliases file reader and the expansion. Every
 * left side of the file, and a few fixed addresses, are expanded: the
 * expansion ends, yields no address twice, and yields only addresses.
 */
#include "accounts.h"
#include "address.h"
#include "aliases.h"
#include "fuzz.h"

#include <string.h>

static const char conf[] = "[main]\nhostname = mx.example.org\n"
                           "domains = example.org, example.net\n";
static const char accounts[] =
    "alice@example.org:$6$salt$x\nbob@example.org:$6$salt$x\n"
    "carol@example.net:$6$salt$x\n";

static PbConfig *cfg;
static PbAccounts *acc;
static char *path;

void
fuzz_setup(void)
{
	g_autofree char *apath = NULL;

	cfg = fuzz_config(conf);
	apath = g_build_filename(fuzz_scratch(), "accounts", NULL);
	fuzz_write_file(apath, accounts, strlen(accounts));
	acc = pb_accounts_load(apath, NULL);
	g_assert_nonnull(acc);
	path = g_build_filename(fuzz_scratch(), "aliases", NULL);
}

static void
expand(PbAliases *a, const char *address)
{
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
	g_autoptr(GError) error = NULL;
	g_autofree char *canon =
	    pb_address_canonical(address, cfg->recipient_delimiter);

	if (!pb_aliases_expand(a, acc, cfg, canon, out, &error)) {
		g_assert_nonnull(error);
		g_assert_cmpuint(out->len, ==, 0);
		return;
	}
	for (guint i = 0; i < out->len; i++) {
		const char *t = out->pdata[i];
		g_assert_null(strpbrk(t, "\r\n"));
		g_assert_true(g_hash_table_add(seen, (gpointer)t));
	}
}

/* Each left side of the file, qualified when bare. */
static void
expand_names(PbAliases *a, const uint8_t *data, size_t size)
{
	g_autofree char *text = g_strndup((const char *)data, size);
	g_auto(GStrv) lines = g_strsplit(text, "\n", 64);

	for (guint i = 0; lines[i]; i++) {
		char *colon = strchr(lines[i], ':');
		g_autofree char *name = NULL;
		if (colon == NULL)
			continue;
		*colon = '\0';
		name = g_strstrip(g_strdup(lines[i]));
		if (*name == '\0' || strchr(name, '@')) {
			if (*name)
				expand(a, name);
			continue;
		}
		g_autofree char *full = g_strconcat(name, "@example.org", NULL);
		expand(a, full);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAliases) a = NULL;

	fuzz_write_file(path, data, size);
	if ((a = pb_aliases_load(path, &error)) == NULL) {
		g_assert_nonnull(error);
		return 0;
	}
	expand(a, "alice@example.org");
	expand(a, "postmaster@example.org");
	expand(a, "root@example.net");
	expand_names(a, data, size);
	return 0;
}
