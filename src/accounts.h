/*
 * accounts.h - the accounts file: "user@domain:CRYPT-HASH" a line, '#'
 * comments, blank lines ignored.
 *
 * Guarantees: pb_accounts_verify() takes the same time (one crypt(3)) for
 * an unknown user as for a wrong password; pb_accounts_save() rewrites the
 * file atomically (pb_durable_replace), mode 0600.
 */
#ifndef PB_ACCOUNTS_H
#define PB_ACCOUNTS_H

#include <glib.h>

typedef struct _PbAccounts PbAccounts;

/* A missing file is an empty table; a malformed line is PB_ERROR_CONFIG
 * naming FILE:LINE. Addresses are kept lowercased. */
PbAccounts *pb_accounts_load(const char *path, GError **error);
void pb_accounts_free(PbAccounts *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbAccounts, pb_accounts_free)

gboolean pb_accounts_exists(const PbAccounts *a, const char *address);
gboolean pb_accounts_verify(const PbAccounts *a, const char *address,
			    const char *password);
/* Sorted addresses. */
GPtrArray *pb_accounts_list(const PbAccounts *a);

/* A new hash of PASSWORD: yescrypt where crypt_gensalt supports it, else
 * SHA-512 ($6$). */
char *pb_accounts_hash(const char *password, GError **error);

/* Set (HASH non-NULL) or remove (HASH NULL) ADDRESS in the table, then
 * write it to PATH atomically, keeping comments. */
gboolean pb_accounts_set(PbAccounts *a, const char *address,
			 const char *hash);
gboolean pb_accounts_save(const PbAccounts *a, const char *path,
			  GError **error);

#endif
