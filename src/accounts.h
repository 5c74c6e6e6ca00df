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

#include "config.h"

typedef struct _PbAccounts PbAccounts;

/* A missing file is an empty table; a malformed line is PB_ERROR_CONFIG
 * naming FILE:LINE. Addresses are kept lowercased. */
PbAccounts *pb_accounts_load(const char *path, GError **error);
void pb_accounts_free(PbAccounts *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbAccounts, pb_accounts_free)

gboolean pb_accounts_exists(const PbAccounts *a, const char *address);
/* The dummy setting is made by the first call, whoever USER is. */
gboolean pb_accounts_verify(PbAccounts *a, const char *address,
                            const char *password);
/* The setting an unknown user is checked against: the method and cost
 * (e.g. "$6$rounds=N$", "$y$j9T$") most accounts' hashes use, with a
 * fresh salt; with no accounts, those of new hashes. Made on the first
 * call (not by pb_accounts_load), then kept. */
const char *pb_accounts_dummy(PbAccounts *a);

/* Sorted addresses. */
GPtrArray *pb_accounts_list(const PbAccounts *a);

/* A new hash of PASSWORD: yescrypt where crypt_gensalt supports it, else
 * SHA-512 ($6$). */
char *pb_accounts_hash(const char *password, GError **error);

/* Set (HASH non-NULL) or remove (HASH NULL) ADDRESS in the table (FALSE:
 * removing an address that is not there); pb_accounts_save() then writes
 * it to PATH atomically, keeping comments and the order of lines. */
gboolean pb_accounts_set(PbAccounts *a, const char *address, const char *hash);
gboolean pb_accounts_save(const PbAccounts *a, const char *path,
                          GError **error);

/* mailuser: the password from stdin, its first line when stdin is not a
 * terminal, else asked twice with echo off. PB_ERROR_DATA when empty, too
 * long (over 1024 octets) or not confirmed. */
char *pb_accounts_read_password(GError **error);

/* mailuser's commands on CFG's accounts file: "add" (refuses an existing
 * address or a domain not in [main] domains; creates the Maildir
 * SPOOL/DOMAIN/LOCAL), "passwd", "del" (keeps the Maildir) and "list"
 * (ADDRESS NULL; prints the addresses). PB_ERROR_USAGE for a bad command,
 * PB_ERROR_NOUSER for an unknown account. */
gboolean pb_accounts_manage(const PbConfig *cfg, const char *command,
                            const char *address, GError **error);

#endif
