/*
 * fuzz-accounts.c - the accounts file reader (through pb_table_read, as
 * the daemons read it). A table that loads is saved (mailuser's
 * rewrite, keeping comments and order) and loaded again: the same
 * accounts come back. No password is checked (crypt(3) would make the
 * run slow, and the file's hashes are the administrator's).
 */
#include "accounts.h"
#include "fuzz.h"

#include <string.h>

static char *path, *path2;

void
fuzz_setup(void)
{
	path = g_build_filename(fuzz_scratch(), "accounts", NULL);
	path2 = g_build_filename(fuzz_scratch(), "accounts2", NULL);
}

static void
same_list(GPtrArray *a, GPtrArray *b)
{
	g_assert_cmpuint(a->len, ==, b->len);
	for (guint i = 0; i < a->len; i++)
		g_assert_cmpstr(a->pdata[i], ==, b->pdata[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAccounts) a = NULL;
	g_autoptr(PbAccounts) b = NULL;
	g_autoptr(GPtrArray) list = NULL;
	g_autoptr(GPtrArray) list2 = NULL;

	fuzz_write_file(path, data, size);
	if ((a = pb_accounts_load(path, &error)) == NULL) {
		g_assert_nonnull(error);
		return 0;
	}
	list = pb_accounts_list(a);
	for (guint i = 0; i < list->len; i++) {
		const char *addr = list->pdata[i];
		g_assert_true(pb_accounts_exists(a, addr));
		g_assert_null(strpbrk(addr, "\r\n:"));
	}
	(void)pb_accounts_exists(a, "alice@example.org");
	(void)unlink(path2);
	g_assert_true(pb_accounts_save(a, path2, &error));
	g_assert_no_error(error);
	b = pb_accounts_load(path2, &error);
	g_assert_no_error(error);
	list2 = pb_accounts_list(b);
	same_list(list, list2);
	return 0;
}
