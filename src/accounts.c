/*
 * accounts.c - the accounts file ("user@domain:CRYPT-HASH" a line) and
 * the account management of mailuser.
 *
 * Owns the accounts file. Guarantees: pb_accounts_verify() runs exactly
 * one crypt(3) whether the user exists or not (an unknown user is checked
 * against a dummy setting of the method and cost most accounts use, with
 * a salt of its own) and compares in
 * constant time; pb_accounts_save() writes the whole file with
 * pb_durable_replace (mode 0600), keeping comments and the order of the
 * lines; a password is never logged and its buffers are wiped.
 */
#include "accounts.h"
#include "durable.h"
#include "error.h"
#include "maildir.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define MAX_PASSWORD 1024

/* One line of the file: a comment or blank (ADDRESS NULL) kept as TEXT,
 * or an account written from the table. */
typedef struct {
	char *text;
	char *address;
} Line;

struct _PbAccounts {
	GPtrArray *lines;   /* Line*, in file order; new accounts at the end */
	GHashTable *hashes; /* address -> hash */
	char *dummy;        /* for unknown users: dummy_setting(), made by
	                       the first verify (known user or not) */
};

static void
line_free(gpointer p)
{
	Line *l = p;

	g_free(l->text);
	g_free(l->address);
	g_free(l);
}

static PbAccounts *
accounts_new(void)
{
	PbAccounts *a = g_new0(PbAccounts, 1);

	a->lines = g_ptr_array_new_with_free_func(line_free);
	a->hashes =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	return a;
}

void
pb_accounts_free(PbAccounts *a)
{
	if (a == NULL)
		return;
	g_ptr_array_unref(a->lines);
	g_hash_table_unref(a->hashes);
	g_free(a->dummy);
	g_free(a);
}

static gboolean
valid_address(const char *address)
{
	const char *at = strrchr(address, '@');

	if (at == NULL || at == address || at[1] == '\0')
		return FALSE;
	for (const char *p = address; *p != '\0'; p++)
		if ((guchar)*p <= 0x20 || *p == 0x7F || *p == '/' ||
		    *p == ':')
			return FALSE;
	return TRUE;
}

/* A hash is one token of printable ASCII without ':'. */
static gboolean
valid_hash(const char *hash)
{
	if (hash[0] == '\0')
		return FALSE;
	for (const char *p = hash; *p != '\0'; p++)
		if ((guchar)*p <= 0x20 || (guchar)*p >= 0x7F || *p == ':')
			return FALSE;
	return TRUE;
}

/* "address:hash", split at the last ':' (a hash never has one). */
static gboolean
parse_line(PbAccounts *a, const char *text)
{
	g_autofree char *line = g_strstrip(g_strdup(text));
	char *colon = strrchr(line, ':');
	g_autofree char *address = NULL;
	Line *l;

	if (line[0] == '\0' || line[0] == '#') {
		l = g_new0(Line, 1);
		l->text = g_strdup(text);
		g_ptr_array_add(a->lines, l);
		return TRUE;
	}
	if (colon == NULL)
		return FALSE;
	*colon = '\0';
	address = g_ascii_strdown(g_strstrip(line), -1);
	if (!valid_address(address) || !valid_hash(colon + 1) ||
	    g_hash_table_contains(a->hashes, address))
		return FALSE;
	g_hash_table_insert(a->hashes, g_strdup(address), g_strdup(colon + 1));
	l = g_new0(Line, 1);
	l->address = g_steal_pointer(&address);
	g_ptr_array_add(a->lines, l);
	return TRUE;
}

/* Where the salt of a "$id$" HASH starts: after "$2b$NN$" for bcrypt,
 * else after the '$' before the last field ("$6$rounds=N$SALT$HASH",
 * "$y$j9T$SALT$HASH"); NULL for any other form. */
static const char *
salt_of(const char *hash)
{
	const char *p;

	if (hash[0] != '$' || (p = strchr(hash + 1, '$')) == NULL)
		return NULL;
	if (g_str_has_prefix(hash, "$2"))
		return (p = strchr(p + 1, '$')) ? p + 1 : NULL;
	for (p = strrchr(hash, '$') - 1; p > hash && *p != '$'; p--)
		;
	return p > hash ? p + 1 : NULL;
}

/* MODEL's method and cost with a salt of its own; MODEL itself (the same
 * cost, by definition) when its method is not one crypt_gensalt knows. */
static char *
dummy_like(const char *model)
{
	const char *salt = salt_of(model);
	g_autofree char *id = NULL;
	char *fresh;
	char *dummy;

	if (salt == NULL)
		return g_strdup(model);
	id = g_strndup(model, strchr(model + 1, '$') + 1 - model);
	if ((fresh = crypt_gensalt_ra(id, 0, NULL, 0)) == NULL)
		return g_strdup(model);
	dummy = g_strdup_printf("%.*s%s", (int)(salt - model), model,
	                        strrchr(fresh, '$') + 1);
	free(fresh);
	return dummy;
}

/* The setting an unknown user is checked against: the method and cost
 * most of the accounts use (the first of them on a tie), so that the time
 * an unknown user takes is the time a real one does; with no accounts,
 * the method and cost of new hashes. */
static char *
dummy_setting(const PbAccounts *a)
{
	g_autoptr(GHashTable) counts =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	const char *model = NULL;
	guint best = 0;
	char *s;

	for (guint i = 0; i < a->lines->len; i++) {
		const Line *l = g_ptr_array_index(a->lines, i);
		const char *hash, *salt;
		char *cost;
		guint n;

		if (l->address == NULL)
			continue;
		hash = g_hash_table_lookup(a->hashes, l->address);
		salt = salt_of(hash);
		cost = salt ? g_strndup(hash, salt - hash) : g_strdup(hash);
		n = GPOINTER_TO_UINT(g_hash_table_lookup(counts, cost)) + 1;
		g_hash_table_insert(counts, cost, GUINT_TO_POINTER(n));
		if (n > best) {
			best = n;
			model = hash;
		}
	}
	if (model)
		return dummy_like(model);
	s = crypt_gensalt_ra(NULL, 0, NULL, 0);
	model = g_strdup(s ? s : "$6$dummydummydummy$");
	free(s);
	return (char *)model;
}

/* Made on first use, not at load: most sessions that read the table
 * never check a password, and the setting costs a crypt_gensalt (with
 * getrandom) and a pass over every account. */
const char *
pb_accounts_dummy(PbAccounts *a)
{
	if (a->dummy == NULL)
		a->dummy = dummy_setting(a);
	return a->dummy;
}

PbAccounts *
pb_accounts_load(const char *path, GError **error)
{
	g_autoptr(PbAccounts) a = accounts_new();
	g_auto(GStrv) lines = pb_table_read(path, error);

	if (lines == NULL)
		return NULL;
	for (guint i = 0; lines[i] != NULL; i++) {
		if (!parse_line(a, lines[i])) {
			g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
			            "%s:%u: not ADDRESS:HASH, or a duplicate",
			            path, i + 1);
			return NULL;
		}
	}
	return g_steal_pointer(&a);
}

gboolean
pb_accounts_exists(const PbAccounts *a, const char *address)
{
	g_autofree char *key = g_ascii_strdown(address, -1);

	return g_hash_table_contains(a->hashes, key);
}

/* Constant time in the length of WANT. */
static gboolean
same(const char *got, const char *want)
{
	gsize glen = strlen(got), wlen = strlen(want);
	guchar diff = glen != wlen;

	for (gsize i = 0; i < wlen; i++)
		diff |= (guchar)(want[i] ^ (i < glen ? got[i] : 0));
	return diff == 0;
}

/* The dummy is made (on the first call) before the lookup, whoever the
 * user is: the first login costs the same for a known and an unknown
 * name. */
gboolean
pb_accounts_verify(PbAccounts *a, const char *address, const char *password)
{
	const char *dummy = pb_accounts_dummy(a);
	g_autofree char *key = g_ascii_strdown(address, -1);
	const char *stored = g_hash_table_lookup(a->hashes, key);
	struct crypt_data *cd = g_new0(struct crypt_data, 1);
	const char *got = crypt_r(password, stored ? stored : dummy, cd);
	gboolean ok =
	    got != NULL && got[0] != '*' && same(got, stored ? stored : dummy);

	explicit_bzero(cd, sizeof(*cd));
	g_free(cd);
	return ok && stored != NULL;
}

static gint
compare_strings(gconstpointer a, gconstpointer b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

GPtrArray *
pb_accounts_list(const PbAccounts *a)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
	GHashTableIter it;
	gpointer key;

	g_hash_table_iter_init(&it, a->hashes);
	while (g_hash_table_iter_next(&it, &key, NULL))
		g_ptr_array_add(out, g_strdup(key));
	g_ptr_array_sort(out, compare_strings);
	return out;
}

char *
pb_accounts_hash(const char *password, GError **error)
{
	char *setting = crypt_gensalt_ra(NULL, 0, NULL, 0);
	struct crypt_data *cd = g_new0(struct crypt_data, 1);
	const char *got;
	char *hash = NULL;

	if (setting == NULL)
		setting = crypt_gensalt_ra("$6$", 0, NULL, 0);
	got = setting ? crypt_r(password, setting, cd) : NULL;
	if (got != NULL && got[0] != '*')
		hash = g_strdup(got);
	else
		pb_throw_errno(error, "crypt");
	explicit_bzero(cd, sizeof(*cd));
	g_free(cd);
	free(setting);
	return hash;
}

gboolean
pb_accounts_set(PbAccounts *a, const char *address, const char *hash)
{
	g_autofree char *key = g_ascii_strdown(address, -1);
	Line *l = NULL;

	if (hash == NULL)
		return g_hash_table_remove(a->hashes, key);
	g_return_val_if_fail(valid_address(key) && valid_hash(hash), FALSE);
	/* a removed account keeps its line: set again, it is there */
	for (guint i = 0; i < a->lines->len && l == NULL; i++) {
		Line *c = g_ptr_array_index(a->lines, i);
		if (c->address != NULL && strcmp(c->address, key) == 0)
			l = c;
	}
	if (l == NULL) {
		l = g_new0(Line, 1);
		l->address = g_strdup(key);
		g_ptr_array_add(a->lines, l);
	}
	g_hash_table_insert(a->hashes, g_steal_pointer(&key), g_strdup(hash));
	return TRUE;
}

gboolean
pb_accounts_save(const PbAccounts *a, const char *path, GError **error)
{
	g_autoptr(GString) out = g_string_new(NULL);

	for (guint i = 0; i < a->lines->len; i++) {
		const Line *l = g_ptr_array_index(a->lines, i);
		const char *hash;

		if (l->address == NULL)
			g_string_append_printf(out, "%s\n", l->text);
		else if ((hash = g_hash_table_lookup(a->hashes, l->address)))
			g_string_append_printf(out, "%s:%s\n", l->address,
			                       hash);
	}
	if (!pb_durable_replace(path, out->str, out->len, 0600, error)) {
		g_prefix_error(error, "accounts %s: ", path);
		return FALSE;
	}
	return TRUE;
}

/* ---- mailuser ---- */

/* One line of stdin into BUF (SIZE octets), line end removed. */
static gboolean
read_line(char *buf, gsize size, GError **error)
{
	gsize len;

	if (fgets(buf, (int)size, stdin) == NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "no password given");
		return FALSE;
	}
	len = strlen(buf);
	if (len == size - 1 && buf[len - 1] != '\n') {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "password too long");
		return FALSE;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (len == 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA, "empty password");
		return FALSE;
	}
	return TRUE;
}

/* Prompts on the terminal with echo off. */
static gboolean
prompt(const char *text, char *buf, gsize size, GError **error)
{
	struct termios old, quiet;
	gboolean ok;

	if (tcgetattr(STDIN_FILENO, &old) < 0)
		return pb_throw_errno(error, "terminal");
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	fputs(text, stderr);
	fflush(stderr);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
		return pb_throw_errno(error, "terminal");
	ok = read_line(buf, size, error);
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fputs("\n", stderr);
	return ok;
}

char *
pb_accounts_read_password(GError **error)
{
	char one[MAX_PASSWORD + 2], two[MAX_PASSWORD + 2];
	char *password = NULL;

	if (!isatty(STDIN_FILENO)) {
		if (read_line(one, sizeof(one), error))
			password = g_strdup(one);
	} else if (prompt("Password: ", one, sizeof(one), error) &&
	           prompt("Retype password: ", two, sizeof(two), error)) {
		if (strcmp(one, two) == 0)
			password = g_strdup(one);
		else
			g_set_error(error, PB_ERROR, PB_ERROR_DATA,
			            "the passwords do not match");
	}
	explicit_bzero(one, sizeof(one));
	explicit_bzero(two, sizeof(two));
	return password;
}

/* ADDRESS as an account name: lowercased; its domain local; a local part
 * usable as a folder name. */
static char *
account_name(const PbConfig *cfg, const char *address, GError **error)
{
	g_autofree char *name = g_ascii_strdown(address, -1);
	const char *at = strrchr(name, '@');
	g_autofree char *local =
	    at ? g_strndup(name, (gsize)(at - name)) : NULL;

	if (!valid_address(name) || strcmp(local, ".") == 0 ||
	    strcmp(local, "..") == 0 || strchr(local, ':') != NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "%s: not a usable address", address);
		return NULL;
	}
	if (!pb_config_is_local_domain(cfg, at + 1)) {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "%s: %s is not in [main] domains", address, at + 1);
		return NULL;
	}
	return g_steal_pointer(&name);
}

/* add and passwd: a new hash for NAME, after creating its Maildir. */
static gboolean
set_password(const PbConfig *cfg, PbAccounts *a, const char *name, gboolean add,
             GError **error)
{
	const char *at = strrchr(name, '@');
	g_autofree char *local = g_strndup(name, (gsize)(at - name));
	g_autofree char *dir =
	    g_build_filename(cfg->spool, at + 1, local, NULL);
	g_autofree char *password = NULL;
	g_autofree char *hash = NULL;

	if (add == pb_accounts_exists(a, name)) {
		g_set_error(
		    error, PB_ERROR, add ? PB_ERROR_DATA : PB_ERROR_NOUSER,
		    add ? "%s: the account exists" : "%s: no such account",
		    name);
		return FALSE;
	}
	if ((password = pb_accounts_read_password(error)) == NULL)
		return FALSE;
	hash = pb_accounts_hash(password, error);
	explicit_bzero(password, strlen(password));
	if (hash == NULL || (add && !pb_maildir_create(dir, error)))
		return FALSE;
	pb_accounts_set(a, name, hash);
	return pb_accounts_save(a, cfg->accounts, error);
}

gboolean
pb_accounts_manage(const PbConfig *cfg, const char *command,
                   const char *address, GError **error)
{
	g_autoptr(PbAccounts) a = pb_accounts_load(cfg->accounts, error);
	g_autofree char *name = NULL;
	g_autofree char *local = NULL;
	g_autofree char *dir = NULL;
	const char *at;

	if (a == NULL)
		return FALSE;
	if (g_strcmp0(command, "list") == 0 && address == NULL) {
		g_autoptr(GPtrArray) all = pb_accounts_list(a);
		for (guint i = 0; i < all->len; i++)
			printf("%s\n", (char *)g_ptr_array_index(all, i));
		return fflush(stdout) == 0 || pb_throw_errno(error, "stdout");
	}
	if (address == NULL || (g_strcmp0(command, "add") != 0 &&
	                        g_strcmp0(command, "passwd") != 0 &&
	                        g_strcmp0(command, "del") != 0)) {
		g_set_error(error, PB_ERROR, PB_ERROR_USAGE,
		            "usage: mailuser [-c FILE] add|passwd|del ADDRESS "
		            "| list");
		return FALSE;
	}
	if ((name = account_name(cfg, address, error)) == NULL)
		return FALSE;
	if (strcmp(command, "del") != 0)
		return set_password(cfg, a, name, command[0] == 'a', error);
	if (!pb_accounts_set(a, name, NULL)) {
		g_set_error(error, PB_ERROR, PB_ERROR_NOUSER,
		            "%s: no such account", name);
		return FALSE;
	}
	if (!pb_accounts_save(a, cfg->accounts, error))
		return FALSE;
	at = strrchr(name, '@');
	local = g_strndup(name, (gsize)(at - name));
	dir = g_build_filename(cfg->spool, at + 1, local, NULL);
	printf("removed %s; its Maildir %s is kept\n", name, dir);
	return TRUE;
}
