/*
 * address.h - RFC 5321 paths and mailboxes (pure functions, no I/O).
 *
 * Accepts "<local@domain>", "<>" (when allowed), source routes
 * ("<@a,@b:local@domain>", the route is dropped as RFC 5321 4.1.1.3 says),
 * quoted local parts ("<\"john doe\"@example.org>"), address literals
 * ("<x@[192.0.2.1]>", "<x@[IPv6:...]>"), and with PB_ADDRESS_UTF8 the
 * UTF-8 of RFC 6531. Bounds: local part 64, domain 255, path 256 octets.
 * Never accepts CR, LF, NUL or other control characters anywhere, so a
 * parsed address can be written into the envelope as it is.
 */
#ifndef PB_ADDRESS_H
#define PB_ADDRESS_H

#include <glib.h>

#define PB_ADDRESS_MAX_LOCAL 64
#define PB_ADDRESS_MAX_DOMAIN 255
#define PB_ADDRESS_MAX_PATH 256

typedef enum {
	PB_ADDRESS_ALLOW_NULL = 1 << 0,	      /* "<>" (MAIL FROM) */
	PB_ADDRESS_ALLOW_POSTMASTER = 1 << 1, /* "<Postmaster>" (RCPT TO) */
	PB_ADDRESS_UTF8 = 1 << 2,	      /* SMTPUTF8 was given */
	PB_ADDRESS_NO_BRACKETS = 1 << 3,      /* bare "a@b" (sendmail, aliases) */
} PbAddressFlags;

typedef struct {
	char *local;  /* as written, quotes removed; "" for <> */
	char *domain; /* lowercased; "" for <> and bare postmaster */
} PbAddress;

/* Parses a path at the start of TEXT (LEN bytes). On success *REST points
 * just after the closing '>' (ESMTP parameters follow). Errors are
 * PB_ERROR_DATA with a message fit for a 501/553 reply. */
gboolean pb_address_parse_path(const char *text, gsize len,
			       PbAddressFlags flags, PbAddress **out,
			       const char **rest, GError **error);

/* The address as "local@domain", the local part quoted when it needs it;
 * "" for the null path, "postmaster" for bare postmaster. */
char *pb_address_to_string(const PbAddress *addr);

/* For lookups: "local@domain" with the local part lowercased and, if
 * DELIMITER is non-empty, the extension after its first occurrence
 * removed ("Alice+lists@Example.ORG" -> "alice@example.org"). */
char *pb_address_canonical(const char *address, const char *delimiter);

/* Splits a string address at its last '@' (local part may be quoted). */
gboolean pb_address_split(const char *address, char **local, char **domain);

void pb_address_free(PbAddress *addr);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbAddress, pb_address_free)

#endif
