/*
 * login.h - what pop3d and imapd share about a reader's login: which
 * Maildir a login name owns, the password check with the failed-login
 * limit, and which peers may log in without TLS.
 *
 * Guarantees: a login name maps to a Maildir only when its domain is
 * local and its local part cannot leave SPOOL/DOMAIN (no '/', "." or
 * ".."); every password check is logged (without the password) and a
 * failure is counted against the client's address (ratelimit.h).
 */
#ifndef PB_LOGIN_H
#define PB_LOGIN_H

#include <glib.h>

#include "accounts.h"
#include "config.h"

/* "alice@example.org" (already canonical) -> SPOOL/example.org/alice;
 * NULL when it is not a local address. */
char *pb_login_maildir(const PbConfig *cfg, const char *user);

/* Checks USER's password PASS (USER is canonicalised first), logs the
 * outcome for the client IP, and counts a failure against IP. The caller
 * asked pb_ratelimit_blocked() before. */
gboolean pb_login_verify(const PbConfig *cfg, PbAccounts *accounts,
                         const char *user, const char *pass, const char *ip);

/* TRUE for 127.0.0.0/8 and ::1. A peer without an IP address (a
 * Unix-domain socket, a pipe) is not loopback: a local proxy may relay
 * anyone. */
gboolean pb_login_is_loopback(const char *ip);

#endif
