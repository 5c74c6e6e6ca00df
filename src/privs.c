/*
 * privs.c - switching from root to the [main] user.
 *
 * See privs.h for the guarantees. Called by smtpd and pop3d after binding
 * their sockets (and loading the TLS key), and by the other programs at
 * start, so that queue and spool are only ever written by USER.
 */
#include "privs.h"
#include "error.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

gboolean
pb_privs_drop(const char *user, GError **error)
{
	struct passwd *pw;
	uid_t r, e, s;

	if (geteuid() != 0)
		return TRUE;
	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
			    "[main] user: no such user '%s'", user);
		return FALSE;
	}
	if (pw->pw_uid == 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
			    "[main] user: refusing to run as root ('%s')",
			    user);
		return FALSE;
	}
	if (setgroups(1, &pw->pw_gid) < 0 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
		return pb_throw_errno(error, "switching to user %s", user);
	if (getresuid(&r, &e, &s) < 0 || r != pw->pw_uid || e != pw->pw_uid ||
	    s != pw->pw_uid || setuid(0) == 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
			    "could not give up root for user %s", user);
		return FALSE;
	}
	return TRUE;
}
