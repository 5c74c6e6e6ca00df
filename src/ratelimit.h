/*
 * ratelimit.h - failed logins per client address, counted across
 * connections and across processes: every smtpd and pop3d session
 * (forked by a listener or started by inetd) reads and updates one small
 * table, QUEUE/auth-failures.
 *
 * A client (pb_listener_client_key: the IPv4 address, or the IPv6 /64)
 * with [main] max_auth_failures failed logins (SMTP AUTH and POP3 count
 * together) in a window of [main] auth_failure_window that began with its
 * first failure is blocked until that window ends: the sessions answer a
 * temporary error without checking the password.
 */
#ifndef PB_RATELIMIT_H
#define PB_RATELIMIT_H

#include <glib.h>

#include "config.h"

/* TRUE (logged) if the client IP (as in PbPeer) may not try a password
 * now. FALSE as well when the table cannot be read (logged): a broken
 * table must not lock every user out. */
gboolean pb_ratelimit_blocked(const PbConfig *cfg, const char *ip);

/* Counts one failed login of IP. */
void pb_ratelimit_failed(const PbConfig *cfg, const char *ip);

#endif
