/*
 * durable.h - the durability recipe in one place: write everything, fsync
 * the file, rename into place, fsync the folder.
 *
 * Used by queue, maildir and accounts, the only modules that write files.
 */
#ifndef PB_DURABLE_H
#define PB_DURABLE_H

#include <glib.h>
#include <sys/types.h>

/* write(2) until done; EINTR is retried. */
gboolean pb_write_all(int fd, const void *buf, gsize len, GError **error);

/* fsync(2) of a folder, so that a rename or link into it survives a crash. */
gboolean pb_fsync_dir(const char *dir, GError **error);

/* mkdir -p with MODE for every folder it creates, each one's name made
 * durable (its parent fsync'ed) before the next step. */
gboolean pb_mkdirs(const char *path, mode_t mode, GError **error);

/* Atomically replace PATH with DATA: a temporary file beside it
 * (O_EXCL), fsync, rename over PATH, fsync of PATH's folder. On failure
 * PATH is unchanged and the temporary file is gone. */
gboolean pb_durable_replace(const char *path, const void *data, gsize len,
			    mode_t mode, GError **error);

#endif
