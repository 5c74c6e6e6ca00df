/*
 * local.c - local recipients: lookup, alias expansion and Maildir
 * delivery (the one local delivery code smtpd, runq and deliver share).
 *
 * Owns nothing on disk itself: the Maildir writing is maildir.c's, the
 * tables are accounts.c's and aliases.c's. Guarantees: a delivered file
 * starts with Return-Path: and Delivered-To: (then the envelope's
 * prepended fields, such as the DKIM-Signature); a message that already
 * carries our Delivered-To: for an account is a loop and is refused
 * (PB_ERROR_PERM 5.4.6) by the caller, who checks pb_local_delivered_to();
 * a queued message is delivered at most once into each mailbox, however
 * often it is retried (its Maildir name comes from its queue id: see
 * maildir.c), and deliver's message once into each mailbox however many
 * of its addresses (directly or through aliases) lead there.
 */
#include "local.h"
#include "accounts.h"
#include "address.h"
#include "aliases.h"
#include "durable.h"
#include "error.h"
#include "log.h"
#include "maildir.h"
#include "self.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define HEADER_SCAN_MAX (1024 * 1024)

struct _PbLocal {
	const PbConfig *cfg;
	PbAccounts *accounts; /* both NULL until pb_local_load() */
	PbAliases *aliases;
};

PbLocal *
pb_local_new_unloaded(const PbConfig *cfg)
{
	PbLocal *l = g_new0(PbLocal, 1);

	l->cfg = cfg;
	return l;
}

gboolean
pb_local_load(PbLocal *l, GError **error)
{
	g_autoptr(PbAccounts) accounts = NULL;

	if (l->aliases != NULL)
		return TRUE;
	if ((accounts = pb_accounts_load(l->cfg->accounts, error)) == NULL ||
	    (l->aliases = pb_aliases_load(l->cfg->aliases, error)) == NULL)
		return FALSE;
	l->accounts = g_steal_pointer(&accounts);
	return TRUE;
}

PbLocal *
pb_local_new(const PbConfig *cfg, GError **error)
{
	g_autoptr(PbLocal) l = pb_local_new_unloaded(cfg);

	if (!pb_local_load(l, error))
		return NULL;
	return g_steal_pointer(&l);
}

PbAccounts *
pb_local_accounts(PbLocal *l)
{
	g_return_val_if_fail(l->accounts != NULL, NULL);
	return l->accounts;
}

void
pb_local_free(PbLocal *l)
{
	if (l == NULL)
		return;
	if (l->accounts)
		pb_accounts_free(l->accounts);
	if (l->aliases)
		pb_aliases_free(l->aliases);
	g_free(l);
}

gboolean
pb_local_exists(PbLocal *l, const char *address)
{
	g_autofree char *canon =
	    pb_address_canonical(address, l->cfg->recipient_delimiter);
	g_autofree char *local = NULL;
	g_autofree char *domain = NULL;

	g_return_val_if_fail(l->aliases != NULL, FALSE);
	if (pb_accounts_exists(l->accounts, canon) ||
	    pb_aliases_has(l->aliases, canon))
		return TRUE;
	return pb_address_split(canon, &local, &domain) &&
	       g_ascii_strcasecmp(local, "postmaster") == 0;
}

gboolean
pb_local_resolve(PbLocal *l, const char *address, GPtrArray *out,
                 GError **error)
{
	g_autofree char *canon =
	    pb_address_canonical(address, l->cfg->recipient_delimiter);

	if (l->aliases == NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "4.3.0 the tables are not loaded");
		g_return_val_if_reached(FALSE);
	}
	if (pb_aliases_has(l->aliases, canon))
		return pb_aliases_expand(l->aliases, l->accounts, l->cfg, canon,
		                         out, error);
	if (pb_accounts_exists(l->accounts, canon)) {
		g_ptr_array_add(out, g_steal_pointer(&canon));
		return TRUE;
	}
	g_set_error(error, PB_ERROR, PB_ERROR_PERM,
	            "5.1.1 <%s>: no such user here", canon);
	return FALSE;
}

/* Adds the value of a "Delivered-To:" line (LINE without its line end). */
static void
note_delivered_to(GHashTable *set, const char *line, gsize len)
{
	static const char name[] = "delivered-to:";
	g_autofree char *value = NULL;

	if (len < sizeof(name) - 1 ||
	    g_ascii_strncasecmp(line, name, sizeof(name) - 1) != 0)
		return;
	value = g_strndup(line + sizeof(name) - 1, len - (sizeof(name) - 1));
	g_strstrip(value);
	g_hash_table_add(set, g_ascii_strdown(value, -1));
}

GHashTable *
pb_local_delivered_to(int fd, GError **error)
{
	g_autoptr(GHashTable) set =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GString) line = g_string_new(NULL);
	char buf[8192];
	off_t off = 0;

	while (off < HEADER_SCAN_MAX) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pb_throw_errno(error, "read message");
			return NULL;
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (line->len < 1024)
					g_string_append_c(line, buf[i]);
				continue;
			}
			if (line->len > 0 && line->str[line->len - 1] == '\r')
				g_string_truncate(line, line->len - 1);
			if (line->len == 0) /* end of the header section */
				return g_steal_pointer(&set);
			note_delivered_to(set, line->str, line->len);
			g_string_truncate(line, 0);
		}
		off += n;
	}
	return g_steal_pointer(&set);
}

/* The Maildir of ACCOUNT, or NULL (PB_ERROR_PERM) for a name that would
 * leave the spool. */
static char *
mailbox_dir(PbLocal *l, const char *account, GError **error)
{
	g_autofree char *local = NULL;
	g_autofree char *domain = NULL;

	if (!pb_address_split(account, &local, &domain) || local[0] == '\0' ||
	    strchr(local, '/') || domain[0] == '.' || strchr(domain, '/') ||
	    strcmp(local, ".") == 0 || strcmp(local, "..") == 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
		            "5.1.3 <%s>: unusable mailbox name", account);
		return NULL;
	}
	return g_build_filename(l->cfg->spool, domain, local, NULL);
}

/* The stable Maildir name of queued message QID: the id's first 13 hex
 * digits (its arrival, microseconds) as SEC.M<USEC>, the other 9 (pid and
 * counter) as the key: the whole id, in a name no longer than the usual
 * ones (a POP3 UIDL has at most 70 characters). */
static char *
stable_name(const char *qid)
{
	g_autofree char *usec = g_strndup(qid, 13);

	g_return_val_if_fail(strlen(qid) > 13, NULL);
	return pb_maildir_unique_for((gint64)g_ascii_strtoull(usec, NULL, 16),
	                             qid + 13, pb_self_host());
}

gboolean
pb_local_deliver(PbLocal *l, const char *qid, const char *sender,
                 const char *account, const char *prepend, int fd,
                 gboolean *again, GError **error)
{
	g_autofree char *dir = mailbox_dir(l, account, error);
	g_autoptr(GString) header = g_string_new(NULL);
	g_autofree char *stable = qid ? stable_name(qid) : NULL;

	if (dir == NULL)
		return FALSE;
	if (lseek(fd, 0, SEEK_SET) < 0)
		return pb_throw_errno(error, "seek");
	g_string_printf(header, "Return-Path: <%s>\nDelivered-To: %s\n", sender,
	                account);
	/* the envelope's fields (a DKIM-Signature), with the LF line ends
	 * the Maildir copy has */
	for (const char *p = prepend; p != NULL && *p != '\0'; p++)
		if (*p != '\r')
			g_string_append_c(header, *p);
	return pb_maildir_deliver(dir, stable, header->str, fd, NULL, again,
	                          error);
}

void
pb_local_settle(PbLocal *l, const char *qid, const char *account)
{
	g_autofree char *dir = mailbox_dir(l, account, NULL);
	g_autofree char *stable = stable_name(qid);

	if (dir != NULL)
		pb_maildir_settle(dir, stable);
}

/* Copies IN to an unlinked temporary file; returns its fd or -1. */
static int
spool_input(int in, GError **error)
{
	g_autofree char *path = NULL;
	g_auto(PbFd) fd =
	    g_file_open_tmp("pillarbox-deliver-XXXXXX", &path, NULL);
	char buf[65536];

	if (fd < 0) {
		pb_throw_errno(error, "temporary file");
		return -1;
	}
	(void)unlink(path);
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pb_throw_errno(error, "read the message");
			return -1;
		}
		if (n == 0)
			break;
		if (!pb_write_all(fd, buf, (gsize)n, error))
			return -1;
	}
	return g_steal_fd(&fd);
}

/* Delivers to ADDRESS's mailboxes, each once per message: DONE holds the
 * mailboxes this message went into already. */
static gboolean
deliver_one(PbLocal *l, const char *sender, const char *address, int fd,
            GHashTable *seen, GHashTable *done, GError **error)
{
	g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *domain = NULL;
	g_autofree char *local = NULL;

	if (!pb_address_split(address, &local, &domain) ||
	    !pb_config_is_local_domain(l->cfg, domain)) {
		g_set_error(error, PB_ERROR, PB_ERROR_PERM,
		            "<%s>: not a local address", address);
		return FALSE;
	}
	if (!pb_local_resolve(l, address, targets, error)) {
		if (g_error_matches(*error, PB_ERROR, PB_ERROR_PERM))
			(*error)->code = PB_ERROR_NOUSER;
		return FALSE;
	}
	for (guint i = 0; i < targets->len; i++) {
		const char *t = g_ptr_array_index(targets, i);
		g_free(domain);
		g_free(local);
		domain = local = NULL;
		if (!pb_address_split(t, &local, &domain) ||
		    !pb_config_is_local_domain(l->cfg, domain)) {
			g_set_error(error, PB_ERROR, PB_ERROR_PERM,
			            "<%s>: alias target <%s> is remote; use "
			            "sendmail for it",
			            address, t);
			return FALSE;
		}
		if (g_hash_table_contains(seen, t)) {
			g_set_error(error, PB_ERROR, PB_ERROR_PERM,
			            "<%s>: mail loop (already Delivered-To)",
			            t);
			return FALSE;
		}
		if (g_hash_table_contains(done, t))
			continue; /* named twice, directly or by an alias */
		if (!pb_local_deliver(l, NULL, sender, t, NULL, fd, NULL,
		                      error))
			return FALSE;
		g_hash_table_add(done, g_strdup(t));
		pb_log_info(NULL, "to=<%s>, relay=local, status=sent (deliver)",
		            t);
	}
	return TRUE;
}

gboolean
pb_local_deliver_stream(PbLocal *l, const char *sender, char **addresses,
                        int in, GError **error)
{
	g_auto(PbFd) fd = spool_input(in, error);
	g_autoptr(GHashTable) seen = NULL;
	g_autoptr(GHashTable) done =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

	if (fd < 0 || (seen = pb_local_delivered_to(fd, error)) == NULL)
		return FALSE;
	for (guint i = 0; addresses[i] != NULL; i++)
		if (!deliver_one(l, sender, addresses[i], fd, seen, done,
		                 error))
			return FALSE;
	return TRUE;
}
