/*
 * dkim.h - DomainKeys Identified Mail (RFC 6376, RFC 8301, RFC 8463):
 * signing our users' outgoing mail and verifying signatures of any mail.
 *
 * Pure and streamed: a message is fed in chunks of any size (CRLF line
 * ends; a bare LF is taken as a line end too), only its header section is
 * kept (bounded by PB_DKIM_MAX_HEADER), the body goes through one
 * canonicaliser per distinct (canonicalisation, l=) and a SHA-256
 * GChecksum. No network inside: the verifier asks a PbDkimLookup for key
 * records (pb_dkim_lookup_dns in dns.c, or a table in tests). Keys and
 * signatures go through tls.h, which loads GnuTLS only then: a process
 * that only hashes never maps it.
 *
 * Limits: at most PB_DKIM_MAX_SIGNATURES signatures are verified (later
 * ones are ignored); RSA keys under PB_DKIM_MIN_RSA_BITS are refused
 * (RFC 8301); rsa-sha1 is refused (RFC 8301); a signature with l= that
 * leaves part of the body unsigned gets "policy", not "pass".
 */
#ifndef PB_DKIM_H
#define PB_DKIM_H

#include <glib.h>

#include "config.h"
#include "tls.h"

#define PB_DKIM_MAX_SIGNATURES 10
#define PB_DKIM_MAX_HEADER (256 * 1024)
#define PB_DKIM_MIN_RSA_BITS 1024
/* a DKIM-Signature field or key record longer than this is refused */
#define PB_DKIM_MAX_TAG_LIST 8192

/* ---- tag lists (RFC 6376 3.2) ---- */

typedef struct {
	char *name;  /* as written (case matters) */
	char *value; /* FWS removed at both ends; inner FWS kept */
} PbDkimTag;

/* Parses "name=value; name=value;" (a trailing ';' allowed). PB_ERROR_DATA
 * for a bad name, a missing '=', a duplicate name, a NUL or over
 * PB_DKIM_MAX_TAG_LIST octets. An array of PbDkimTag*. */
GPtrArray *pb_dkim_tags_parse(const char *text, gsize len, GError **error);
/* The value of NAME in TAGS, or NULL. */
const char *pb_dkim_tags_get(const GPtrArray *tags, const char *name);

/* A DKIM-Signature's value, checked (RFC 6376 3.5, 6.1.1). */
typedef struct {
	PbKeyType type;        /* a=rsa-sha256 or ed25519-sha256 */
	gboolean relaxed_head; /* c= */
	gboolean relaxed_body;
	char *domain;   /* d=, lower case */
	char *selector; /* s= */
	char *identity; /* i=, or "@" d= */
	char **headers; /* h=, lower case */
	GBytes *b, *bh; /* decoded */
	char *b_text;   /* b= without FWS, for header.b */
	gint64 t, x, l; /* -1: absent */
} PbDkimSig;

/* PB_ERROR_DATA with the reason (a permerror) when VALUE is no valid
 * signature; PB_ERROR_PERM for a valid one we do not support (another
 * algorithm, rsa-sha1). */
PbDkimSig *pb_dkim_sig_parse(const char *value, gsize len, GError **error);
void pb_dkim_sig_free(PbDkimSig *sig);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbDkimSig, pb_dkim_sig_free)

/* A key record (RFC 6376 3.6.1). */
typedef struct {
	PbKeyType type;   /* k=, rsa by default */
	GBytes *key;      /* p=, decoded; empty: revoked */
	gboolean testing; /* t=y */
	gboolean strict;  /* t=s: i= must be d= itself */
} PbDkimKey;

PbDkimKey *pb_dkim_key_parse(const char *txt, gsize len, GError **error);
void pb_dkim_key_free(PbDkimKey *key);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbDkimKey, pb_dkim_key_free)

/* ---- canonicalisation (RFC 6376 3.4) ---- */

/* Appends header FIELD ("Name: value", folded lines joined by CRLF, no
 * final CRLF) canonicalised, with its CRLF, to OUT. */
void pb_dkim_canon_header(const char *field, gsize len, gboolean relaxed,
                          GString *out);

/* The body canonicaliser: a state machine fed any chunks, whose output
 * goes to a SHA-256 digest, cut after LIMIT octets (-1: no limit). */
typedef struct _PbDkimBody PbDkimBody;
PbDkimBody *pb_dkim_body_new(gboolean relaxed, gint64 limit);
void pb_dkim_body_feed(PbDkimBody *b, const char *buf, gsize len);
/* Ends the body; DIGEST gets the 32 octets; *LENGTH the canonical
 * body's length (before the cut). */
void pb_dkim_body_finish(PbDkimBody *b, guint8 *digest, guint64 *length);
void pb_dkim_body_free(PbDkimBody *b);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbDkimBody, pb_dkim_body_free)

/* ---- signing ---- */

/* The signing keys and what to sign ([dkim]). */
typedef struct _PbDkimSigner PbDkimSigner;

/* The header fields signed by default (oversigned: each listed once
 * more than the message has it). */
extern const char *const pb_dkim_default_headers[];

/* From [dkim]: reads the key files (PB_ERROR_CONFIG naming the file);
 * NULL without error when [dkim] selector is not set. The keys are parsed
 * (and GnuTLS loaded) at the first signature. */
PbDkimSigner *pb_dkim_signer_new(const PbConfig *cfg, GError **error);
/* From memory: RSA_PEM required, ED25519_PEM optional (signed with
 * ED25519_SELECTOR, NULL: SELECTOR-ed25519); DOMAINS and HEADERS (NULL:
 * the default) lower case. Parses the keys at once. */
PbDkimSigner *
pb_dkim_signer_new_from_pem(const char *selector, const char *ed25519_selector,
                            char **domains, char **headers, const char *rsa_pem,
                            const char *ed25519_pem, GError **error);
void pb_dkim_signer_free(PbDkimSigner *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbDkimSigner, pb_dkim_signer_free)

/* One message being signed. */
typedef struct _PbDkimSign PbDkimSign;
PbDkimSign *pb_dkim_sign_new(PbDkimSigner *signer);
void pb_dkim_sign_feed(PbDkimSign *s, const char *buf, gsize len);
/* The DKIM-Signature fields to put before the message (RSA, then
 * Ed25519), each with its CRLF, t= NOW; *DOMAIN (may be NULL) the d=.
 * NULL without error when the message is not ours to sign (no From, or
 * several, or its domain not in [dkim] domains, or the header section
 * too large): *WHY says so. NULL with an error when signing failed. */
char *pb_dkim_sign_finish(PbDkimSign *s, gint64 now, char **domain,
                          const char **why, GError **error);
void pb_dkim_sign_free(PbDkimSign *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbDkimSign, pb_dkim_sign_free)

/* ---- verification ---- */

typedef enum {
	PB_DKIM_PASS,
	PB_DKIM_FAIL,
	PB_DKIM_NEUTRAL,
	PB_DKIM_POLICY,
	PB_DKIM_TEMPERROR,
	PB_DKIM_PERMERROR,
} PbDkimStatus;

/* "pass", "fail", ... (RFC 8601 2.7.1). */
const char *pb_dkim_status_name(PbDkimStatus status);

/* One signature's outcome. */
typedef struct {
	PbDkimStatus status;
	char *domain;     /* d= or NULL (unparsable) */
	char *selector;   /* s= or NULL */
	char *identity;   /* i= (or "@" d=) or NULL */
	char *b;          /* the first 12 characters of b=, for header.b */
	char *algorithm;  /* "rsa-sha256", "ed25519-sha256" or NULL */
	guint bits;       /* the key's size, 0 when unknown */
	gboolean testing; /* the key says t=y */
	char *reason;     /* why not pass, or NULL */
} PbDkimResult;

void pb_dkim_result_free(PbDkimResult *r);
/* "dkim=pass header.d=example.org header.s=sel header.b=abcdefgh1234"
 * with "reason=..." for other results: one resinfo of RFC 8601. */
char *pb_dkim_result_format(const PbDkimResult *r);

/* The TXT records of NAME, each a NULL-terminated array of its
 * character-strings (which the verifier joins). PB_ERROR_NOTFOUND: no
 * such name or no TXT record; PB_ERROR_TEMP: try later. */
typedef GPtrArray *(*PbDkimLookup)(const char *name, gpointer data,
                                   GError **error);

typedef struct _PbDkimVerify PbDkimVerify;
PbDkimVerify *pb_dkim_verify_new(void);
void pb_dkim_verify_feed(PbDkimVerify *v, const char *buf, gsize len);
/* Checks every signature (the first PB_DKIM_MAX_SIGNATURES) with keys
 * from LOOKUP; x= is compared with NOW. An array of PbDkimResult*, empty
 * when the message has no DKIM-Signature. */
GPtrArray *pb_dkim_verify_finish(PbDkimVerify *v, gint64 now,
                                 PbDkimLookup lookup, gpointer data);
/* After finish: the message's header fields as kept ("Name: value",
 * folded lines joined by CRLF, in order; empty when the section was
 * over PB_DKIM_MAX_HEADER), for the checks that follow (DMARC's From). */
const GPtrArray *pb_dkim_verify_fields(const PbDkimVerify *v);
/* The domain of the one From address of FIELDS, lower case; NULL when
 * there is no From field, or several, or not exactly one address. */
char *pb_dkim_from_domain(const GPtrArray *fields);
void pb_dkim_verify_free(PbDkimVerify *v);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbDkimVerify, pb_dkim_verify_free)

/* ---- key records ---- */

/* The TXT record for KEY ("v=DKIM1; k=...; p=..."), split into strings
 * of at most 255 octets, as an array of strings. */
char **pb_dkim_key_record(PbPrivKey *key, GError **error);

/* The private key in FILE, the [dkim] WHAT ("key", "ed25519_key"), read
 * as the signer reads it (bounded, no symlink) and parsed; the PEM text
 * is wiped. PB_ERROR_CONFIG naming the key when it cannot be read or is
 * no RSA or Ed25519 key. */
PbPrivKey *pb_dkim_privkey_load(const char *what, const char *file,
                                GError **error);

#endif
