/*
 * privs.h - giving up root (qmail's rule: as little as possible with
 * privilege).
 *
 * Guarantees: when pb_privs_drop() returns TRUE and we were root, the real,
 * effective and saved ids are USER's and supplementary groups are USER's
 * primary group only, verified after the change; it refuses a USER that is
 * root itself. Not root: nothing happens.
 */
#ifndef PB_PRIVS_H
#define PB_PRIVS_H

#include <glib.h>

gboolean pb_privs_drop(const char *user, GError **error);

#endif
