/*
 * login.c - what pop3d and imapd share about a reader's login (see
 * login.h).
 */
#include "login.h"

#include "address.h"
#include "log.h"
#include "ratelimit.h"

#include <string.h>

char *
pb_login_maildir(const PbConfig *cfg, const char *user)
{
	g_autofree char *local = NULL;
	g_autofree char *domain = NULL;

	if (!pb_address_split(user, &local, &domain) ||
	    !pb_config_is_local_domain(cfg, domain) || strchr(local, '/') ||
	    g_str_equal(local, ".") || g_str_equal(local, ".."))
		return NULL;
	return g_build_filename(cfg->spool, domain, local, NULL);
}

gboolean
pb_login_verify(const PbConfig *cfg, PbAccounts *accounts, const char *user,
                const char *pass, const char *ip)
{
	g_autofree char *canonical = pb_address_canonical(user, "");
	gboolean ok = pb_accounts_verify(accounts, canonical, pass);

	pb_log_info(NULL, "login %s for <%s> from [%s]", ok ? "ok" : "failed",
	            canonical, ip);
	if (!ok)
		pb_ratelimit_failed(cfg, ip);
	return ok;
}

gboolean
pb_login_is_loopback(const char *ip)
{
	return g_str_has_prefix(ip, "127.") || g_str_equal(ip, "::1");
}
