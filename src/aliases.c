/*
 * aliases.c - the aliases file ("ADDRESS: TARGET, TARGET..." a line, '#'
 * comments) and its expansion.
 *
 * Owns nothing on disk (it only reads). A left side is a full address or
 * a bare local part (every local domain); a target is a full address or a
 * bare local part (the domain of the address being expanded).
 * Guarantees: expansion is a depth-first walk bounded by
 * PB_ALIASES_MAX_DEPTH; a loop, a too deep chain or a local target that
 * is neither an alias nor an account fails the whole expansion with
 * PB_ERROR_PERM and a message fit for a bounce ("5.x.y text"); each alias
 * is expanded once and each address yielded once, and none already in OUT
 * (compared as final mailboxes: a local address in lower case without its
 * +extension), so that a recipient named directly and through an alias,
 * or through two aliases, gets one copy; OUT is only appended to on
 * success.
 */
#include "aliases.h"
#include "address.h"
#include "error.h"

#include <string.h>

struct _PbAliases {
	GHashTable *full; /* "local@domain" -> GStrv of targets */
	GHashTable *bare; /* "local" -> GStrv of targets */
};

void
pb_aliases_free(PbAliases *a)
{
	if (a == NULL)
		return;
	g_hash_table_unref(a->full);
	g_hash_table_unref(a->bare);
	g_free(a);
}

/* A name or target: one token, no controls, no pipes or files. */
static gboolean
valid_token(const char *s)
{
	if (s[0] == '\0' || s[0] == '|' || s[0] == '@' || strchr(s, '/'))
		return FALSE;
	for (const char *p = s; *p != '\0'; p++)
		if ((guchar)*p <= 0x20 || *p == 0x7F || *p == ',' || *p == ':')
			return FALSE;
	return !g_str_has_suffix(s, "@");
}

static gboolean
parse_line(PbAliases *a, char *line)
{
	char *colon = strchr(line, ':');
	g_autofree char *left = NULL;
	g_auto(GStrv) targets = NULL;
	GHashTable *table;

	if (colon == NULL)
		return FALSE;
	*colon = '\0';
	left = g_ascii_strdown(g_strstrip(line), -1);
	targets = g_strsplit(colon + 1, ",", -1);
	table = strchr(left, '@') ? a->full : a->bare;
	if (!valid_token(left) || targets[0] == NULL ||
	    g_hash_table_contains(table, left))
		return FALSE;
	for (guint i = 0; targets[i] != NULL; i++)
		if (!valid_token(g_strstrip(targets[i])))
			return FALSE;
	g_hash_table_insert(table, g_steal_pointer(&left),
	                    g_steal_pointer(&targets));
	return TRUE;
}

static PbAliases *
aliases_new(void)
{
	PbAliases *a = g_new0(PbAliases, 1);

	a->full = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	                                (GDestroyNotify)g_strfreev);
	a->bare = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	                                (GDestroyNotify)g_strfreev);
	return a;
}

PbAliases *
pb_aliases_load(const char *path, GError **error)
{
	g_autoptr(PbAliases) a = aliases_new();
	g_auto(GStrv) lines = pb_table_read(path, error);

	if (lines == NULL)
		return NULL;
	for (guint i = 0; lines[i] != NULL; i++) {
		char *line = g_strstrip(lines[i]);
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (!parse_line(a, line)) {
			g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
			            "%s:%u: not \"ADDRESS: TARGET, ...\", or "
			            "a duplicate",
			            path, i + 1);
			return NULL;
		}
	}
	return g_steal_pointer(&a);
}

/* The targets of ADDRESS (canonical): its own entry, else the bare one. */
static char **
lookup(const PbAliases *a, const char *address)
{
	const char *at = strrchr(address, '@');
	char **t = g_hash_table_lookup(a->full, address);
	g_autofree char *local = NULL;

	if (t != NULL || at == NULL)
		return t;
	local = g_strndup(address, (gsize)(at - address));
	return g_hash_table_lookup(a->bare, local);
}

gboolean
pb_aliases_has(const PbAliases *a, const char *address)
{
	return lookup(a, address) != NULL;
}

/* One expansion in progress. */
typedef struct {
	const PbAliases *a;
	const PbAccounts *accounts;
	const PbConfig *cfg;
	GHashTable *path; /* aliases being expanded (loop detection) */
	GHashTable *done; /* aliases expanded */
	GHashTable *seen; /* addresses yielded */
	GPtrArray *out;
} Expand;

/* The identity of an address: its final mailbox for a local one (lower
 * case, the +extension cut: recipient_delimiter folding), else the address
 * with its domain in lower case (a remote local part may have case). */
static char *
identity(const PbConfig *cfg, const char *address)
{
	const char *at = strrchr(address, '@');
	g_autofree char *domain = g_ascii_strdown(at ? at + 1 : "", -1);

	if (at != NULL && pb_config_is_local_domain(cfg, domain))
		return pb_address_canonical(address, cfg->recipient_delimiter);
	return g_strdup_printf("%.*s@%s", at ? (int)(at - address) : 0, address,
	                       domain);
}

static void
yield(Expand *x, const char *address)
{
	char *key = identity(x->cfg, address);

	if (g_hash_table_add(x->seen, key))
		g_ptr_array_add(x->out, g_strdup(address));
}

static gboolean expand(Expand *x, const char *alias, guint depth,
                       GError **error);

/* One target T of ALIAS; *SELF is set when T is ALIAS itself. */
static gboolean
target(Expand *x, const char *alias, const char *t, guint depth, gboolean *self,
       GError **error)
{
	g_autofree char *full =
	    strchr(t, '@')
	        ? g_strdup(t)
	        : g_strdup_printf("%s@%s", t, strrchr(alias, '@') + 1);
	g_autofree char *canon = NULL;

	if (!pb_config_is_local_domain(x->cfg, strrchr(full, '@') + 1)) {
		yield(x, t);
		return TRUE;
	}
	canon = pb_address_canonical(full, x->cfg->recipient_delimiter);
	if (strcmp(canon, alias) == 0) {
		*self = TRUE;
		return TRUE;
	}
	if (g_hash_table_contains(x->done, canon))
		return TRUE;
	if (g_hash_table_contains(x->path, canon)) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
		            "5.4.6 alias %s: loop through %s", alias, canon);
		return FALSE;
	}
	if (lookup(x->a, canon) != NULL)
		return expand(x, canon, depth + 1, error);
	if (pb_accounts_exists(x->accounts, canon)) {
		yield(x, canon);
		return TRUE;
	}
	g_set_error(error, PB_ERROR, PB_ERROR_PERM,
	            "5.1.1 alias %s: no such user %s", alias, canon);
	return FALSE;
}

static gboolean
expand(Expand *x, const char *alias, guint depth, GError **error)
{
	char **targets = lookup(x->a, alias);
	gboolean self = FALSE;

	if (depth > PB_ALIASES_MAX_DEPTH) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
		            "5.4.6 alias %s: nested more than %d deep", alias,
		            PB_ALIASES_MAX_DEPTH);
		return FALSE;
	}
	g_hash_table_add(x->path, g_strdup(alias));
	for (guint i = 0; targets[i] != NULL; i++)
		if (!target(x, alias, targets[i], depth, &self, error))
			return FALSE;
	/* an alias that is also an account, or names itself, keeps it */
	if (pb_accounts_exists(x->accounts, alias))
		yield(x, alias);
	else if (self) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
		            "5.1.1 alias %s: no such user %s", alias, alias);
		return FALSE;
	}
	g_hash_table_remove(x->path, alias);
	g_hash_table_add(x->done, g_strdup(alias));
	return TRUE;
}

gboolean
pb_aliases_expand(const PbAliases *a, const PbAccounts *accounts,
                  const PbConfig *cfg, const char *address, GPtrArray *out,
                  GError **error)
{
	g_autoptr(GHashTable) path =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GHashTable) done =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GHashTable) seen =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func(g_free);
	Expand x = {a, accounts, cfg, path, done, seen, found};

	g_return_val_if_fail(strchr(address, '@') != NULL, FALSE);
	for (guint i = 0; i < out->len; i++)
		g_hash_table_add(seen,
		                 identity(cfg, g_ptr_array_index(out, i)));
	if (lookup(a, address) == NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
		            "5.1.1 %s: no such alias", address);
		return FALSE;
	}
	if (!expand(&x, address, 0, error))
		return FALSE;
	for (guint i = 0; i < found->len; i++)
		g_ptr_array_add(out, g_steal_pointer(&found->pdata[i]));
	return TRUE;
}
