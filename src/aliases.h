/*
 * aliases.h - the aliases file: "ADDRESS: TARGET, TARGET..." a line;
 * a bare local part on the left applies to every local domain; a bare
 * local part as a target means that name in the alias's own domain.
 *
 * Guarantees: expansion terminates (a depth limit and loop detection) and
 * never yields the same address twice.
 */
#ifndef PB_ALIASES_H
#define PB_ALIASES_H

#include <glib.h>

#include "accounts.h"
#include "config.h"

#define PB_ALIASES_MAX_DEPTH 10

typedef struct _PbAliases PbAliases;

/* A missing file is an empty table; bad lines are PB_ERROR_CONFIG naming
 * FILE:LINE. */
PbAliases *pb_aliases_load(const char *path, GError **error);
void pb_aliases_free(PbAliases *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbAliases, pb_aliases_free)

/* TRUE if ADDRESS (canonical, in a local domain) has an alias entry. */
gboolean pb_aliases_has(const PbAliases *a, const char *address);

/* Expands canonical ADDRESS into final addresses appended to OUT (char*,
 * caller frees): local accounts (canonical) and remote addresses (as
 * written), none that is already in OUT (a local one compared as its
 * final mailbox: lower case, +extension cut). An address that is both an alias
 * and an account, or an alias whose targets include itself, yields the account
 * too. A local target that is neither an account nor an alias, a loop or a
 * depth over PB_ALIASES_MAX_DEPTH is PB_ERROR_PERM (message fit for a bounce).
 */
gboolean pb_aliases_expand(const PbAliases *a, const PbAccounts *accounts,
                           const PbConfig *cfg, const char *address,
                           GPtrArray *out, GError **error);

#endif
