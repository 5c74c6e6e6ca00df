/*
 * mutf7.h - modified UTF-7 (RFC 3501 5.1.3), the form of IMAP mailbox
 * names on the wire and, as Dovecot and Courier store them, on disk.
 *
 * Pure functions on bounded strings. Strict: "&" must be followed by
 * "-" (an "&") or by modified-BASE64 of UTF-16 ending in "-", with no
 * printable ASCII, no "&-" spelled in base64, no empty "&-" run other
 * than the literal "&", no zero padding bits left over, no lone
 * surrogates; outside "&...-" only printable ASCII (0x20-0x7e).
 */
#ifndef PB_MUTF7_H
#define PB_MUTF7_H

#include <glib.h>

/* TRUE when S (LEN octets) is well-formed modified UTF-7. */
gboolean pb_mutf7_valid(const char *s, gsize len);
/* Decodes to UTF-8; NULL when S is not well-formed. */
char *pb_mutf7_to_utf8(const char *s, gsize len);
/* Encodes valid UTF-8 (NULL when it is not). */
char *pb_mutf7_from_utf8(const char *s, gsize len);

#endif
