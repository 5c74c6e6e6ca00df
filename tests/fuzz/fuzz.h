/*
 * fuzz.h - what the libFuzzer harnesses of tests/fuzz share: a PbConn
 * transport that hands out a fuzz input in chunks (so the harnesses go
 * through conn.c's line reader as the daemons do), a PbLineOut that
 * discards, a config from text, and a scratch folder on tmpfs.
 *
 * Every harness makes GLib criticals and warnings abort: a
 * g_return_if_fail tripped by outside bytes is a finding.
 */
#ifndef PB_FUZZ_H
#define PB_FUZZ_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "conn.h"

#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fuzz.c's LLVMFuzzerInitialize makes criticals abort, sends the log to
 * /dev/null, then calls the harness's fuzz_setup() if it has one. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
void fuzz_setup(void) __attribute__((weak));

/* A queue in the scratch folder; *DIR (optional) gets its path. */
PbQueue *fuzz_queue(char **dir);

/* A connection that reads DATA (borrowed) in chunks whose sizes come
 * from the input itself, then EOF; what is written to it is counted and
 * dropped. */
PbConn *fuzz_conn_new(const uint8_t *data, size_t size);

/* A PbLineOut that counts and drops. */
PbLineOut fuzz_line_out(void);

/* The config of TEXT (asserts that it loads). */
PbConfig *fuzz_config(const char *text);

/* A fresh scratch folder in $TMPDIR (scripts/fuzz points it to tmpfs,
 * where fsync is cheap, and removes it: libFuzzer does not always leave
 * through exit(), so the atexit removal is best effort). */
const char *fuzz_scratch(void);

/* Writes DATA to PATH (truncating it in place). */
void fuzz_write_file(const char *path, const void *data, size_t size);

/* Removes every file in the folder DIR and its subfolders (not DIR). */
void fuzz_empty_dir(const char *dir);

/* Removes DIR and everything in it (symbolic links are not followed). */
void fuzz_remove_tree(const char *dir);

#endif
