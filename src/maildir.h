/*
 * maildir.h - delivery into Maildirs (https://cr.yp.to/proto/maildir.html).
 *
 * Files in a Maildir have LF line ends (the convention qmail, Postfix and
 * Dovecot follow); a delivered file is named
 * TIME.M<usec>P<pid>Q<n>.HOST,S=<octets>,W=<octets with CRLF> so that a POP3
 * server knows both sizes without reading it (Dovecot's S= and W=).
 *
 * Guarantees: pb_maildir_deliver() returns TRUE only after the file is
 * fsync'ed, linked into new/ and new/ is fsync'ed; it streams (memory does
 * not grow with the message); on failure nothing is left in tmp/ or new/.
 */
#ifndef PB_MAILDIR_H
#define PB_MAILDIR_H

#include <glib.h>
#include <sys/types.h>

/* The unique part of a name: "SEC.M<USEC>P<PID>Q<N>.HOST", with '/' and ':'
 * in HOST written as \057 and \072 (the spec's advice). Pure. */
char *pb_maildir_unique(gint64 sec, gint64 usec, pid_t pid, guint n,
			const char *host);

/* Creates DIR/{tmp,new,cur} (mode 0700) and missing parents. */
gboolean pb_maildir_create(const char *dir, GError **error);

/* Delivers HEADER (LF line ends, prepended as is) followed by the message
 * read from FD (from its current offset to EOF, CRLF or LF line ends; CRLF
 * is written as LF). Fills *NAME (optional) with the file name in new/.
 * A Maildir that is missing (or lost a folder) is created first. */
gboolean pb_maildir_deliver(const char *dir, const char *header, int fd,
			    char **name, GError **error);

/* Sizes encoded in a Maildir file name: S= (file octets) and W= (octets
 * with CRLF line ends); FALSE when either is missing. */
gboolean pb_maildir_name_sizes(const char *name, guint64 *s, guint64 *w);

#endif
