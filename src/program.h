/*
 * program.h - what every program does first: parse the common flags'
 * results into a configuration, open the log, give up root.
 */
#ifndef PB_PROGRAM_H
#define PB_PROGRAM_H

#include <glib.h>

#include "config.h"

/* Loads CONF (NULL: $PILLARBOX_CONF or the default), opens the log as
 * IDENT (TO_STDERR: log to stderr whatever the file says, for the
 * operators' tools), and unless KEEP_ROOT switches to [main] user. */
PbConfig *pb_program_start(const char *ident, const char *conf,
			   gboolean to_stderr, gboolean keep_root,
			   GError **error);

/* Prints "IDENT: message" on stderr and returns the sysexits code. */
int pb_program_fail(const char *ident, const GError *error);

/* Parses the GOptionContext; on a usage error prints it and returns
 * FALSE (the caller exits 64). */
gboolean pb_program_options(GOptionContext *ctx, int *argc, char ***argv);

#endif
