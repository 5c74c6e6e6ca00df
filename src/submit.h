/*
 * submit.h - local submission (sendmail): a message from a local program
 * on a file descriptor into the queue.
 *
 * Guarantees: the message is streamed (only the header section, bounded
 * by PB_SUBMIT_MAX_HEADER, is held, to read recipients and see which
 * headers are missing); line ends (LF, CRLF, or a CR alone) become CRLF,
 * so no bare CR or LF is queued; a full name (-F) with a control character
 * is refused with PB_ERROR_USAGE before anything is read; a NUL byte, an
 * oversized message or a header section over the bound is refused with
 * PB_ERROR_DATA and nothing is queued; the queue id is returned only once
 * the message is durable (pb_queue_tx_commit).
 */
#ifndef PB_SUBMIT_H
#define PB_SUBMIT_H

#include <glib.h>

#include "config.h"
#include "queue.h"

#define PB_SUBMIT_MAX_HEADER (256 * 1024)

typedef struct {
	const char *sender;    /* envelope sender, "" for <> */
	const char *full_name; /* -F, or NULL */
	const char *login;     /* the submitting user, for Received: */
	guint uid;
	char **recipients; /* from the command line (may be empty) */
	gboolean extract;  /* -t: also To, Cc, Bcc; Bcc is removed */
	gboolean dot_ends; /* without -i: a line "." ends the input */
} PbSubmission;

/* Qualifies a bare local part with the first local domain (or the
 * hostname when there is none); checks the syntax. */
char *pb_submit_qualify(const PbConfig *cfg, const char *address,
                        GError **error);

/* The addresses of an RFC 5322 address-list header value ("A <a@b>,
 * c@d, group: e@f;"), appended to OUT as "local@domain". */
void pb_submit_address_list(const char *value, GPtrArray *out);

/* Whose message is it, for sendmail -bp by a local user: one they queued
 * with sendmail (the envelope's "local uid UID"), or in a sendmail -bs
 * session (no IP address, and the sender is ADDRESS, the only one such a
 * session lets them use). */
gboolean pb_submit_is_users(const PbEnvelope *env, guint uid,
                            const char *address);

/* Reads the message from IN and queues it; *ID is set to the queue id. */
gboolean pb_submit(const PbConfig *cfg, PbQueue *q, const PbSubmission *sub,
                   int in, char **id, GError **error);

#endif
