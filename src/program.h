/*
 * program.h - what every program does first: parse the common flags'
 * results into a configuration, open the log, give up root.
 */
#ifndef PB_PROGRAM_H
#define PB_PROGRAM_H

#include <glib.h>

#include "config.h"

/* TRUE when the program runs as a user other than the one who started
 * it, and that was not root: set-user-id sendmail run by a local user. */
gboolean pb_program_setuid(void);

/* What every program does before anything else (see program.c: fds 0-2,
 * umask 077, signals and timers; set-user-id: environment, descriptors,
 * core dumps, resource limits). Called by pb_program_options() and
 * pb_program_start(); main() calls it first when it uses neither.
 * Only the first call does anything. */
void pb_program_sanitize(void);

/* FALSE when the program is set-user-id and its caller's hard resource
 * limits are too low for a delivery to be safe from being stopped between
 * the remote server's 250 and our record of it. */
gboolean pb_program_limits_safe(void);

/* Hangup, interrupt, quit and the job-control signals are ignored: a
 * delivery a terminal cannot stop half-way. */
void pb_program_ignore_terminal(void);

/* For a forked child that outlives the caller's command: its own
 * session (no controlling terminal), /dev/null on fds 0-2, umask 077,
 * terminal signals ignored. */
void pb_program_detach(void);

/* Loads CONF (NULL: $PILLARBOX_CONF or the default; set-user-id: see
 * pb_config_load_trusted, never the environment), opens the log as
 * IDENT (TO_STDERR: log to stderr whatever the file says, for the
 * operators' tools), and unless KEEP_ROOT switches to [main] user. */
PbConfig *pb_program_start(const char *ident, const char *conf,
                           gboolean to_stderr, gboolean keep_root,
                           GError **error);

/* Prints "IDENT: message" on stderr and returns the sysexits code. */
int pb_program_fail(const char *ident, const GError *error);

/* Writes OUT to standard output: PB_EX_OK, or PB_EX_IOERR after saying
 * "IDENT: cannot write to standard output". */
int pb_program_print(const char *ident, const GString *out);

/* Parses the GOptionContext; on a usage error prints it and returns
 * FALSE (the caller exits 64). */
gboolean pb_program_options(GOptionContext *ctx, int *argc, char ***argv);

#endif
