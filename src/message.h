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
	/* the decoded bodies of the text parts (and of the message parts
	 * not parsed further), each on its own; not attachments */
	PB_MESSAGE_SEARCH_BODY,
	/* BODY and the headers of the message and of the messages inside,
	 * unfolded and RFC 2047 decoded */
	PB_MESSAGE_SEARCH_TEXT,
} PbMessageSearchKind;

/* SEARCH BODY/TEXT: sets *FOUND if NEEDLE occurs (case-insensitive, see
 * PbMimeMatcher) in the message ROOT parsed from FD; reads only the
 * parts it needs, a chunk at a time, and stops at the first match. For
 * SEARCH HEADER use pb_mime_search_header (no I/O); for SENT*, the first
 * Date (pb_mime_header_get) with pb_mime_date_parse, a message without
 * a valid one counting as sent on 1970-01-01 (Dovecot). The answers are
 * compared with Dovecot's by tests/e2e/test_imap_dovecot_diff.py. */
gboolean pb_message_search(int fd, const PbMimePart *root,
                           PbMessageSearchKind kind, const char *needle,
                           gboolean *found, GError **error);

#endif
