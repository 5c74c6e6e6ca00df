/*
 * local.h - local recipients: what an address in a local domain resolves
 * to (accounts, aliases, the +extension) and delivery into its Maildir.
 *
 * Shared by smtpd (is this recipient known?), runq and deliver (the one
 * local delivery code).
 */
#ifndef PB_LOCAL_H
#define PB_LOCAL_H

#include <glib.h>

#include "accounts.h"
#include "config.h"

typedef struct _PbLocal PbLocal;

/* Loads the accounts and aliases files named by CFG. */
PbLocal *pb_local_new(const PbConfig *cfg, GError **error);
/* The same, the files read only by pb_local_load(): a session reads them
 * when it first needs them (never for a connection that only says QUIT).
 * Every lookup below wants them loaded. */
PbLocal *pb_local_new_unloaded(const PbConfig *cfg);
/* Reads the tables unless they are loaded already; FALSE: they could not
 * be read (PB_ERROR_CONFIG: a bad line), and stay unloaded. */
gboolean pb_local_load(PbLocal *l, GError **error);
/* The accounts table (loaded). */
PbAccounts *pb_local_accounts(PbLocal *l);
void pb_local_free(PbLocal *l);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbLocal, pb_local_free)

/* TRUE if ADDRESS (any form) is a local account or alias, after the
 * +extension is removed; postmaster always exists. */
gboolean pb_local_exists(PbLocal *l, const char *address);

/* Appends the final addresses of local ADDRESS to OUT (char*): accounts
 * (canonical) and remote alias targets. "postmaster" without an alias or
 * account goes to the first account of the domain's postmaster alias,
 * else it is an error. PB_ERROR_PERM: no such user, alias loop. */
gboolean pb_local_resolve(PbLocal *l, const char *address, GPtrArray *out,
                          GError **error);

/* The Delivered-To: values in the header section of the message in FD
 * (read with pread from offset 0, at most 1 MiB of header), lowercased. */
GHashTable *pb_local_delivered_to(int fd, GError **error);

/* Delivers the message in FD (from offset 0) into the Maildir of ACCOUNT
 * (canonical), prepending Return-Path: <SENDER> and Delivered-To:, then
 * PREPEND (the envelope's header fields, CRLF-ended, or NULL; written
 * with LF ends like the rest). With QID (a queued message) the delivery
 * is idempotent: the file is named after the queue id, a repeated
 * delivery finds the earlier copy and writes none (*AGAIN, optional, is
 * set), and the caller calls pb_local_settle() once the outcome is
 * recorded (see maildir.h). PB_ERROR_TEMP on I/O trouble (retry later). */
gboolean pb_local_deliver(PbLocal *l, const char *qid, const char *sender,
                          const char *account, const char *prepend, int fd,
                          gboolean *again, GError **error);

/* The delivery of QID to ACCOUNT is recorded: its marker goes. */
void pb_local_settle(PbLocal *l, const char *qid, const char *account);

/* deliver's job: copies the message on IN into an unlinked temporary
 * file (memory does not grow with it) and delivers it to every address
 * (local ones only; aliases expanded, remote alias targets refused).
 * PB_ERROR_NOUSER: no such user; PB_ERROR_PERM: not local or a loop;
 * PB_ERROR_TEMP: try again. */
gboolean pb_local_deliver_stream(PbLocal *l, const char *sender,
                                 char **addresses, int in, GError **error);
#endif
