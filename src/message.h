/*
 * message.h - a stored message read for IMAP: parse it from a file
 * descriptor, send a BODY[section]<partial> of it, search it.
 *
 * The I/O side of mime.h. Every read is pread() of at most
 * PB_MESSAGE_CHUNK octets, so memory stays flat whatever the size of the
 * message (a 50 MB attachment is never held); the fd is only read, and
 * its offset is not used (pread), so one fd can serve several calls.
 * Guarantees: the octets written for a section are exactly the number
 * pb_message_section_length() announced (IMAP sends {N} before them):
 * stored LFs become CRLF, a <partial> counts CRLF octets and is clamped
 * to the section; if the file turns out shorter than parsed (it was
 * replaced), the rest is padded with spaces so the literal stays in step,
 * and FALSE is returned after writing it.
 */
#ifndef PB_MESSAGE_H
#define PB_MESSAGE_H

#include <glib.h>

#include "conn.h"
#include "mime.h"

#define PB_MESSAGE_CHUNK 65536

/* Parses the message in FD (from offset 0 to its end). Errors:
 * PB_ERROR_TEMP (I/O). */
PbMimePart *pb_message_parse_fd(int fd, GError **error);

/* A section prepared for sending: its length is known before any octet
 * is written. */
typedef struct _PbMessageSection PbMessageSection;

/* SEC of the message ROOT (parsed from FD); with PARTIAL, only COUNT
 * octets from START (CRLF octets; clamped: a START past the end gives an
 * empty string). SEC must outlive the result. */
PbMessageSection *pb_message_section_new(const PbMimePart *root,
                                         const PbMimeSection *sec,
                                         gboolean partial, guint64 start,
                                         guint64 count);
/* N of the literal {N}. */
guint64 pb_message_section_length(const PbMessageSection *ms);
/* Writes the octets to OUT in chunks of at most PB_MESSAGE_CHUNK. */
gboolean pb_message_section_write(PbMessageSection *ms, int fd, PbLineOut *out,
                                  GError **error);
void pb_message_section_free(PbMessageSection *ms);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbMessageSection, pb_message_section_free)

/* Convenience: "{N}\r\n" followed by the octets (what FETCH sends after
 * "BODY[...]<start> "). */
gboolean pb_message_section_send(PbMessageSection *ms, int fd, PbLineOut *out,
                                 GError **error);

typedef enum {
	PB_MESSAGE_SEARCH_BODY, /* decoded bodies of the text parts */
	PB_MESSAGE_SEARCH_TEXT, /* the headers (decoded) and BODY */
} PbMessageSearchKind;

/* SEARCH BODY/TEXT: sets *FOUND if NEEDLE occurs (case-insensitive, see
 * PbMimeMatcher) in the message ROOT parsed from FD. For SEARCH HEADER
 * use pb_mime_search_header (no I/O). */
gboolean pb_message_search(int fd, const PbMimePart *root,
                           PbMessageSearchKind kind, const char *needle,
                           gboolean *found, GError **error);

#endif
