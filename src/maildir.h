/*
 * maildir.h - delivery into Maildirs (https://cr.yp.to/proto/maildir.html).
 *
 * Files in a Maildir have LF line ends (the convention qmail, Postfix and
 * Dovecot follow); a delivered file is named
 * TIME.M<usec>P<pid>Q<n>.HOST,S=<octets>,W=<octets with CRLF> so that a POP3
 * server knows both sizes without reading it (Dovecot's S= and W=).
 *
 * Guarantees: pb_maildir_deliver() returns TRUE only after the file is
 * fsync'ed, linked into new/ and new/ is fsync'ed (or, for a stable name,
 * an earlier attempt's copy was found); it streams (memory does not grow
 * with the message); on failure nothing is left in tmp/ or new/ but an
 * earlier attempt's marker. No symbolic link is followed inside the
 * Maildir; files are 0600 and folders 0700 whatever the umask.
 */
#ifndef PB_MAILDIR_H
#define PB_MAILDIR_H

#include <glib.h>
#include <sys/types.h>

/* The unique part of a name: "SEC.M<USEC>P<PID>Q<N>.HOST", with '/' and ':'
 * in HOST written as \057 and \072 (the spec's advice). Pure. */
char *pb_maildir_unique(gint64 sec, gint64 usec, pid_t pid, guint n,
                        const char *host);

/* The unique part for a delivery that may be repeated (after a crash):
 * "SEC.M<USEC>Q<KEY>.HOST", the same for the same TIME_USEC and KEY (an
 * alphanumeric key, unique on this host for that time: local.c gives a
 * queue id's arrival and the id's pid and counter digits). */
char *pb_maildir_unique_for(gint64 time_usec, const char *key,
                            const char *host);

/* Creates DIR/{tmp,new,cur} (mode 0700) and missing parents (0700), never
 * through a symbolic link at DIR or below. */
gboolean pb_maildir_create(const char *dir, GError **error);

/* Delivers HEADER (LF line ends, prepended as is) followed by the message
 * read from FD (from its current offset to EOF, CRLF or LF line ends; CRLF
 * is written as LF). Fills *NAME (optional) with the file name in new/.
 * A Maildir that is missing (or lost a folder) is created first.
 * STABLE NULL: a fresh unique name. STABLE (from pb_maildir_unique_for):
 * the delivery is idempotent; *AGAIN (optional) is set when an earlier
 * attempt's copy was found in new/ or cur/ (then *NAME is its name and
 * nothing is written); tmp/STABLE stays as a marker until
 * pb_maildir_settle(). */
gboolean pb_maildir_deliver(const char *dir, const char *stable,
                            const char *header, int fd, char **name,
                            gboolean *again, GError **error);

/* After the outcome of a STABLE delivery is recorded for good: removes
 * its marker tmp/STABLE (no fsync: a marker that comes back after a
 * crash only costs a later retry a folder scan, and there is none). */
void pb_maildir_settle(const char *dir, const char *stable);

/* Files in tmp/ older than this are left-overs (the Maildir spec's 36
 * hours): a crash's half-written file, or an unsettled marker. */
#define PB_MAILDIR_TMP_STALE (36 * 3600)

/* Removes the regular files of DIR/tmp last modified more than
 * PB_MAILDIR_TMP_STALE seconds before NOW (best effort, a read of
 * tmp/: for a reader opening the mailbox). */
void pb_maildir_clean_tmp(const char *dir, gint64 now);

/* Delivery order of two Maildir names: a name starts "SECONDS.M<usec>",
 * numbers that are not zero-padded, so they are compared as numbers;
 * then the rest of the name (strcmp). */
gint pb_maildir_name_compare(const char *x, const char *y);

/* Sizes encoded in a Maildir file name: S= (file octets) and W= (octets
 * with CRLF line ends); FALSE when either is missing. */
gboolean pb_maildir_name_sizes(const char *name, guint64 *s, guint64 *w);

#endif
