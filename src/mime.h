/*
 * mime.h - the structure of a message as IMAP shows it (RFC 5322, RFC
 * 2045-2047, RFC 2231; RFC 3501 ENVELOPE, BODY, BODYSTRUCTURE and
 * BODY[section]), computed from bytes fed in any chunks.
 *
 * Pure: no system calls. The parser is fed the message as stored (LF line
 * ends on disk; CRLF is accepted too) and builds a tree of parts with
 * offsets in the stored bytes and sizes/line counts in IMAP octets (every
 * LF not preceded by CR counts as CRLF). Only the headers of the parts are
 * kept (each at most PB_MIME_MAX_HEADER octets), so memory does not grow
 * with the size of the bodies.
 * Guarantees: linear time in the input; at most PB_MIME_MAX_DEPTH levels
 * of nesting and PB_MIME_MAX_PARTS parts (deeper or further structure is
 * taken as the body of the last part, as Dovecot does); the strings are
 * what Dovecot 2.3 answers for the same message (differences: README,
 * "IMAP messages: structure and Dovecot compatibility").
 */
#ifndef PB_MIME_H
#define PB_MIME_H

#include <glib.h>

#define PB_MIME_MAX_DEPTH 100         /* multipart and message/rfc822 levels */
#define PB_MIME_MAX_PARTS 10000       /* parts in one message (Dovecot's) */
#define PB_MIME_MAX_HEADER 65536      /* header octets kept per part */
#define PB_MIME_MAX_HEADERS (4 << 20) /* header octets kept in all */
#define PB_MIME_MAX_SECTION_PARTS (PB_MIME_MAX_DEPTH * 2 + 2)

typedef enum {
	PB_MIME_PART_MULTIPART = 1 << 0, /* children are its body parts */
	PB_MIME_PART_MESSAGE = 1 << 1,   /* message/rfc822 (or global):
	                                    one child, the message inside */
	PB_MIME_PART_HEADER_TRUNCATED = 1 << 2,      /* header over the limit:
	                                                only its start is kept */
	PB_MIME_PART_NO_BLANK_LINE = 1 << 3,         /* header not ended by an
	                                                empty line (no body) */
	PB_MIME_PART_BLANK_BEFORE_BOUNDARY = 1 << 4, /* its empty line is
	                                           followed by a boundary
	                                           that ends the part: Dovecot
	                                           leaves that line out of
	                                           BODY[HEADER] and [MIME] */
} PbMimePartFlags;

typedef struct _PbMimePart PbMimePart;
struct _PbMimePart {
	PbMimePart *parent;
	PbMimePart *children; /* first child */
	PbMimePart *next;     /* next sibling */
	guint flags;          /* PbMimePartFlags */
	guint depth;          /* 0 for the message itself */

	/* in the stored bytes: the header (including the empty line that
	 * ends it) and the body (without the line end before a boundary) */
	guint64 header_offset, header_size;
	guint64 body_offset, body_size;
	/* the same in IMAP octets, and the number of lines (LFs) */
	guint64 header_crlf_size, header_lines;
	guint64 body_crlf_size, body_lines;

	/* the header as stored (at most PB_MIME_MAX_HEADER octets) */
	char *header;
	gsize header_len;

	/* Content-Type, lowercase; text/plain when missing or invalid
	 * (message/rfc822 inside multipart/digest) */
	char *type, *subtype;
};

/* ---- parsing ---- */

typedef struct _PbMimeParser PbMimeParser;

PbMimeParser *pb_mime_parser_new(void);
/* Any chunk sizes, down to one byte at a time. */
void pb_mime_parser_feed(PbMimeParser *p, const char *buf, gsize len);
/* Ends the input and returns the tree (the caller frees it with
 * pb_mime_part_free); P is freed. Never NULL: any bytes are a message. */
PbMimePart *pb_mime_parser_finish(PbMimeParser *p);
void pb_mime_parser_free(PbMimeParser *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbMimeParser, pb_mime_parser_free)

/* The whole message in one buffer. */
PbMimePart *pb_mime_parse(const char *buf, gsize len);
void pb_mime_part_free(PbMimePart *root);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbMimePart, pb_mime_part_free)

/* RFC822.SIZE of a message (or of the part with its header). */
guint64 pb_mime_part_crlf_size(const PbMimePart *part);

/* The first field NAME (case-insensitive) of PART's header, unfolded
 * (CR and LF removed), leading white space dropped; NULL if none. */
char *pb_mime_header_get(const PbMimePart *part, const char *name);

/* ---- FETCH strings ---- */

/* Appends ENVELOPE of the message PART (a root or a message/rfc822's
 * child), parenthesised, as Dovecot writes it. */
void pb_mime_append_envelope(GString *out, const PbMimePart *part);
/* Appends BODYSTRUCTURE (EXTENDED) or BODY of PART. For a root (no
 * parent) the outer parentheses are left to the caller, who writes
 * "BODYSTRUCTURE (" ... ")"; parts below come parenthesised. */
void pb_mime_append_bodystructure(GString *out, const PbMimePart *part,
                                  gboolean extended);

/* ---- sections: BODY[section] ---- */

typedef enum {
	PB_MIME_SECTION_ALL,    /* BODY[] or BODY[1.2]: the whole part */
	PB_MIME_SECTION_HEADER, /* [HEADER], [1.HEADER] */
	PB_MIME_SECTION_HEADER_FIELDS,
	PB_MIME_SECTION_HEADER_FIELDS_NOT,
	PB_MIME_SECTION_TEXT,
	PB_MIME_SECTION_MIME,
} PbMimeSectionKind;

typedef struct {
	guint nparts;
	guint parts[PB_MIME_MAX_SECTION_PARTS]; /* 1-based part numbers */
	PbMimeSectionKind kind;
	char **fields; /* HEADER.FIELDS (.NOT): NULL-terminated, owned */
} PbMimeSection;

/* Parses the text between the brackets of BODY[...], e.g. "",
 * "1.2.MIME", "HEADER.FIELDS (From To)" (field names as atoms or quoted
 * strings, case kept). FALSE if it is not a valid section. */
gboolean pb_mime_section_parse(const char *text, gsize len, PbMimeSection *sec);
void pb_mime_section_clear(PbMimeSection *sec);

/* Where a section's octets are in the stored message. */
typedef struct {
	gboolean exists;   /* FALSE: a part that is not there (answer "") */
	guint64 offset;    /* in the stored bytes */
	guint64 size;      /* stored octets */
	guint64 crlf_size; /* IMAP octets (before any filtering) */
	/* header filtering: when FILTER, the octets sent are
	 * pb_mime_filter_header(header of PART, FIELDS, FIELDS_NOT) instead
	 * of the range */
	gboolean filter;
	const PbMimePart *part;
	const char *const *fields; /* borrowed from the section */
	gboolean fields_not;
} PbMimeRange;

/* Resolves SEC in the message ROOT (always returns a range; see
 * RANGE->exists). A part number that does not exist gives an empty
 * range, as Dovecot answers. */
void pb_mime_section_resolve(const PbMimePart *root, const PbMimeSection *sec,
                             PbMimeRange *range);

/* Appends to OUT, with CRLF line ends, the fields of PART's header whose
 * names are (NOT: are not) in FIELDS, followed by the empty line. */
void pb_mime_filter_header(const PbMimePart *part, const char *const *fields,
                           gboolean not, GString *out);

/* ---- SEARCH ---- */

/* RFC 5322 date-time (obsolete forms too) to seconds since the epoch
 * (UTC) and the zone's offset in minutes; FALSE if not a date. The date
 * SENTBEFORE/SENTON/SENTSINCE compare is (*UTC + *TZ_MIN * 60) / 86400. */
gboolean pb_mime_date_parse(const char *s, gint64 *utc, int *tz_min);

/* A case-insensitive substring matcher over decoded text fed in chunks:
 * UTF-8 (and so US-ASCII) compared code point by code point after
 * simple case folding; invalid UTF-8 octets compared as themselves. */
typedef struct _PbMimeMatcher PbMimeMatcher;
PbMimeMatcher *pb_mime_matcher_new(const char *needle);
void pb_mime_matcher_reset(PbMimeMatcher *m); /* before each new text */
/* TRUE once the needle was seen in the text fed since the reset. */
gboolean pb_mime_matcher_feed(PbMimeMatcher *m, const char *buf, gsize len);
gboolean pb_mime_matcher_found(const PbMimeMatcher *m);
void pb_mime_matcher_free(PbMimeMatcher *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbMimeMatcher, pb_mime_matcher_free)

/* SEARCH HEADER NAME S: does a field NAME of the message ROOT's header
 * contain NEEDLE once unfolded and RFC 2047 decoded ("" matches any
 * message that has the field)? */
gboolean pb_mime_search_header(const PbMimePart *root, const char *name,
                               const char *needle);

/* Streaming Content-Transfer-Encoding decoder (quoted-printable, base64;
 * anything else passes through), writing decoded octets to OUT. As in
 * Dovecot's SEARCH, the last Content-Transfer-Encoding of PART counts,
 * with or without MIME-Version. */
typedef struct _PbMimeDecoder PbMimeDecoder;
PbMimeDecoder *pb_mime_decoder_new(const PbMimePart *part);
void pb_mime_decoder_feed(PbMimeDecoder *d, const char *buf, gsize len,
                          GString *out);
void pb_mime_decoder_free(PbMimeDecoder *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbMimeDecoder, pb_mime_decoder_free)

/* TRUE if SEARCH BODY/TEXT looks into PART's body: a leaf part that is
 * text/... (or message/... not parsed further). */
gboolean pb_mime_part_searchable(const PbMimePart *part);

/* The charset parameter of PART's last Content-Type (lowercase), or
 * NULL: what SEARCH decodes the part with (Dovecot's rule). */
char *pb_mime_part_charset(const PbMimePart *part);

/* Appends PART's header unfolded with RFC 2047 words decoded to UTF-8
 * (what SEARCH TEXT sees of a header). */
void pb_mime_append_decoded_header(GString *out, const PbMimePart *part);

#endif
