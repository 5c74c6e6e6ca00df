/*
 * dsn.c - bounces and delay notices (RFC 3464 delivery status
 * notifications in an RFC 6522 multipart/report), queued as new messages
 * with the null sender (see dsn.h).
 *
 * Who gets the report: the envelope sender; when that is <> (the message
 * was itself a report), postmaster of the first local domain gets a
 * double bounce, still from <>. The marker of a double bounce is its
 * envelope, not its text (which anybody can forge): a failure of a
 * message from <> whose failed recipients were all addressed to a local
 * postmaster (before alias expansion: PbRecipient.orig) is a double
 * bounce that could not be delivered; it is only logged, which is what
 * ends every possible loop. Delay notices are never sent for messages
 * from <>.
 *
 * The readable part answers "where is my mail?": per recipient the last
 * reply and, for a delay, every remembered attempt and the time until
 * which delivery goes on. Every text from a remote server was sanitised
 * by the queue (printable ASCII), and long fields are folded, so no line
 * of the report exceeds 998 octets.
 */
#include "dsn.h"
#include "address.h"
#include "date.h"
#include "error.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define FOLD 76 /* where long report fields are folded */
/* the most of the original's header section a report attaches */
#define MAX_HEADERS ((off_t)256 * 1024)

/* Appends VALUE and CRLF, broken before spaces (or hard, within a long
 * run) into lines that start with INDENT, so that no line grows past
 * FOLD octets by much and never past 998. COL is where VALUE starts on
 * the current line. With INDENT " " this is RFC 5322 folding: unfolding
 * gives VALUE back (but for the hard cuts). */
static void
wrap(GString *out, gsize col, const char *indent, const char *value)
{
	gsize start = col, sp = 0;
	const char *p = value;

	while (*p) {
		gsize word = strcspn(p, " ");
		if (word == 0) {
			sp++;
			p++;
			continue;
		}
		if (col + sp + word > FOLD && col > start) {
			g_string_append_printf(out, "\r\n%s", indent);
			col = start = strlen(indent);
			sp =
			    sp > 0 ? sp - 1 : 0; /* the indent stands for one */
		}
		g_string_append_printf(out, "%*s", (int)sp, "");
		col += sp;
		sp = 0;
		while (word > 900) { /* one unbreakable run: cut it */
			g_string_append_len(out, p, 900);
			g_string_append_printf(out, "\r\n%s", indent);
			p += 900;
			word -= 900;
			col = start = strlen(indent);
		}
		g_string_append_len(out, p, word);
		col += word;
		p += word;
	}
	g_string_append(out, "\r\n");
}

/* Appends the header field "NAME: VALUE", folded. */
static void
field(GString *out, const char *name, const char *value)
{
	g_string_append_printf(out, "%s: ", name);
	wrap(out, strlen(name) + 2, " ", value);
}

static gboolean
covered(PbDsnKind kind, const PbRecipient *r)
{
	return kind == PB_DSN_FAILED ? r->state == PB_RCPT_FAILED
	                             : r->state == PB_RCPT_PENDING;
}

/* Where double bounces go: postmaster of the first local domain (of the
 * hostname when there is none). */
static char *
postmaster(const PbConfig *cfg)
{
	return g_strdup_printf(
	    "postmaster@%s", cfg->domains[0] ? cfg->domains[0] : cfg->hostname);
}

/* A local postmaster address, or the one double bounces go to. */
static gboolean
is_postmaster(const PbConfig *cfg, const char *address)
{
	g_autofree char *local = NULL;
	g_autofree char *domain = NULL;
	g_autofree char *ours = postmaster(cfg);

	if (g_ascii_strcasecmp(address, ours) == 0)
		return TRUE;
	return pb_address_split(address, &local, &domain) &&
	       g_ascii_strcasecmp(local, "postmaster") == 0 &&
	       pb_config_is_local_domain(cfg, domain);
}

/* A failed double bounce: from <>, and every failed recipient was
 * addressed to postmaster. The original recipient counts, not the alias
 * target: a postmaster aliased to an address that fails must end here
 * too, or each report would beget the next. */
static gboolean
is_dead_end(const PbConfig *cfg, const PbEnvelope *env)
{
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (covered(PB_DSN_FAILED, r) &&
		    !is_postmaster(cfg, r->orig ? r->orig : r->address))
			return FALSE;
	}
	return TRUE;
}

/* "mx.example.net[192.0.2.1]:25 tls=none" -> "mx.example.net" */
static char *
remote_mta(const char *host)
{
	gsize n = strcspn(host, "[ ");

	if (n == 0 || g_str_equal(host, "local"))
		return NULL;
	return g_strndup(host, n);
}

/* The readable lines on one recipient: for a delay every remembered
 * attempt, for a bounce the last one and the reason. */
static void
text_rcpt(GString *out, PbDsnKind kind, const PbRecipient *r)
{
	guint n = r->history ? r->history->len : 0;

	g_string_append_printf(out, "<%s>%s%s%s:\r\n", r->address,
	                       r->orig ? " (sent to <" : "",
	                       r->orig ? r->orig : "", r->orig ? ">)" : "");
	for (guint a = kind == PB_DSN_FAILED && n > 0 ? n - 1 : 0; a < n; a++) {
		const PbAttempt *at = g_ptr_array_index(r->history, a);
		g_autofree char *when = pb_date_rfc5322(at->time);

		/* the queue keeps the first attempts and the last ones */
		if (kind == PB_DSN_DELAYED && a == PB_QUEUE_HISTORY_FIRST &&
		    r->attempts > n)
			g_string_append_printf(
			    out, "    (%u more attempts)\r\n", r->attempts - n);
		g_string_append_printf(out, "    %s  %s\r\n", when,
		                       at->host ? at->host : "");
		g_string_append(out, "        ");
		wrap(out, 8, "        ", at->reply ? at->reply : "");
	}
	if (kind == PB_DSN_FAILED && r->last_error) {
		g_string_append(out, "    reason: ");
		wrap(out, 12, "        ", r->last_error);
	}
	g_string_append(out, "\r\n");
}

static void
text_part(GString *out, const PbConfig *cfg, PbDsnKind kind,
          const PbEnvelope *env, gboolean dbl)
{
	g_autofree char *arrived = pb_date_rfc5322(env->arrival);
	g_autofree char *until = pb_date_rfc5322(env->arrival + cfg->bounce_after);

	g_string_append_printf(
	    out, "This is the mail system at host %s.\r\n\r\n", cfg->hostname);
	if (dbl)
		g_string_append(out, "A delivery report (from <>) could not be "
		                     "delivered; it is kept here for the "
		                     "postmaster.\r\n\r\n");
	if (kind == PB_DSN_FAILED)
		g_string_append_printf(
		    out,
		    "Your message of %s could not be delivered to one or more "
		    "recipients. It is attached below (its header only).\r\n"
		    "The recipients and the reason:\r\n\r\n",
		    arrived);
	else
		g_string_append_printf(
		    out,
		    "Your message of %s has not been delivered yet to the "
		    "recipients below.\r\nThe mail system keeps trying until "
		    "%s; you need not send it again.\r\nThis is the only "
		    "notice you get before delivery succeeds or fails.\r\n"
		    "The attempts so far:\r\n\r\n",
		    arrived, until);
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (covered(kind, r))
			text_rcpt(out, kind, r);
	}
}

/* The per-recipient fields of the delivery-status part. */
static void
status_rcpt(GString *out, PbDsnKind kind, const PbRecipient *r,
            const char *until)
{
	guint n = r->history ? r->history->len : 0;
	const PbAttempt *last =
	    n > 0 ? g_ptr_array_index(r->history, n - 1) : NULL;
	g_autofree char *mta =
	    last && last->host ? remote_mta(last->host) : NULL;
	g_autofree char *v = NULL;

	g_string_append(out, "\r\n");
	v = g_strdup_printf("rfc822; %s", r->address);
	field(out, "Final-Recipient", v);
	if (r->orig) {
		g_free(v);
		v = g_strdup_printf("rfc822; %s", r->orig);
		field(out, "Original-Recipient", v);
	}
	field(out, "Action", kind == PB_DSN_FAILED ? "failed" : "delayed");
	field(out, "Status",
	      r->dsn ? r->dsn : (kind == PB_DSN_FAILED ? "5.0.0" : "4.0.0"));
	if (mta) {
		g_free(v);
		v = g_strdup_printf("dns; %s", mta);
		field(out, "Remote-MTA", v);
	}
	if (r->last_error) {
		g_free(v);
		v = g_strdup_printf("smtp; %s", r->last_error);
		field(out, "Diagnostic-Code", v);
	}
	if (r->last_attempt > 0) {
		g_free(v);
		v = pb_date_rfc5322(r->last_attempt);
		field(out, "Last-Attempt-Date", v);
	}
	if (kind == PB_DSN_DELAYED)
		field(out, "Will-Retry-Until", until);
}

static void
status_part(GString *out, const PbConfig *cfg, PbDsnKind kind,
            const PbEnvelope *env)
{
	g_autofree char *arrived = pb_date_rfc5322(env->arrival);
	g_autofree char *until = pb_date_rfc5322(env->arrival + cfg->bounce_after);

	g_string_append_printf(out, "Reporting-MTA: dns; %s\r\n",
	                       cfg->hostname);
	g_string_append_printf(out, "X-Pillarbox-Queue-ID: %s\r\n", env->id);
	field(out, "Arrival-Date", arrived);
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (covered(kind, r))
			status_rcpt(out, kind, r, until);
	}
}

/* Where the original's header section ends: the offset just after the
 * CRLF that precedes the empty line, or the end of the message. A header
 * section past MAX_HEADERS (a message without an empty line, say) is cut
 * after its last whole line within the bound. */
static gboolean
header_end(int fd, off_t *end, GError **error)
{
	char buf[8192];
	/* the last four octets seen; it starts as if after a CRLF, so that a
	 * message opening with its empty line has an empty header section */
	guint32 tail = 0x0d0a;
	off_t off = 0, eol = 0;

	while (off < MAX_HEADERS) {
		ssize_t n = pread(fd, buf, sizeof buf, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pb_throw_errno(error, "reading the message");
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			tail = (tail << 8) | (guchar)buf[i];
			if (tail == 0x0d0a0d0a) {
				*end = off + i - 1;
				return TRUE;
			}
			if ((tail & 0xffff) == 0x0d0a && off + i < MAX_HEADERS)
				eol = off + i + 1;
		}
		off += n;
	}
	*end = off < MAX_HEADERS ? off : eol;
	return TRUE;
}

/* Streams the original's header section into TX, in chunks. */
static gboolean
copy_headers(PbQueueTx *tx, int fd, GError **error)
{
	char buf[8192];
	off_t end = 0, off = 0;

	if (!header_end(fd, &end, error))
		return FALSE;
	while (off < end) {
		ssize_t n =
		    pread(fd, buf, MIN((off_t)sizeof buf, end - off), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return pb_throw_errno(error, "reading the message");
		if (!pb_queue_tx_write(tx, buf, (gsize)n, error))
			return FALSE;
		off += n;
	}
	return TRUE;
}

static GString *
report_head(const PbConfig *cfg, PbDsnKind kind, const char *to, const char *id,
            gint64 now, const char *boundary)
{
	GString *out = g_string_new(NULL);
	g_autofree char *date = pb_date_rfc5322(now);

	g_string_append_printf(
	    out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n",
	    cfg->hostname);
	g_string_append_printf(out, "To: <%s>\r\n", to);
	g_string_append_printf(out, "Subject: %s\r\n",
	                       kind == PB_DSN_FAILED
	                           ? "Undelivered Mail Returned to Sender"
	                           : "Delayed Mail (still being retried)");
	g_string_append_printf(out, "Date: %s\r\n", date);
	g_string_append_printf(out, "Message-ID: <%s.dsn@%s>\r\n", id,
	                       cfg->hostname);
	g_string_append(out, "Auto-Submitted: auto-replied\r\n"
	                     "MIME-Version: 1.0\r\n");
	g_string_append_printf(out,
	                       "Content-Type: multipart/report; "
	                       "report-type=delivery-status;\r\n"
	                       "\tboundary=\"%s\"\r\n\r\n"
	                       "This is a MIME-encapsulated message.\r\n\r\n",
	                       boundary);
	return out;
}

static GString *
report_body(const PbConfig *cfg, PbDsnKind kind, const PbEnvelope *env,
            gboolean dbl, const char *boundary)
{
	GString *out = g_string_new(NULL);

	g_string_append_printf(
	    out,
	    "--%s\r\nContent-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n",
	    boundary);
	text_part(out, cfg, kind, env, dbl);
	g_string_append_printf(
	    out,
	    "--%s\r\nContent-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n",
	    boundary);
	status_part(out, cfg, kind, env);
	g_string_append_printf(
	    out,
	    "\r\n--%s\r\nContent-Description: Undelivered Message Headers\r\n"
	    "Content-Type: text/rfc822-headers\r\n\r\n",
	    boundary);
	return out;
}

/* Writes the whole report into TX, the original's header streamed. */
static gboolean
write_report(PbQueueTx *tx, const PbConfig *cfg, PbDsnKind kind,
             const PbEnvelope *env, const char *to, int data_fd, gint64 now,
             GError **error)
{
	/* unique (the new queue id) and unguessable (random), so that no
	 * line of the attached header can pose as a delimiter; <= 70 chars */
	g_autofree char *boundary =
	    g_strdup_printf("%s/%08X.dsn", pb_queue_tx_id(tx), g_random_int());
	g_autoptr(GString) head =
	    report_head(cfg, kind, to, pb_queue_tx_id(tx), now, boundary);
	g_autoptr(GString) body =
	    report_body(cfg, kind, env, *env->sender == '\0', boundary);
	g_autofree char *tail = g_strdup_printf("\r\n--%s--\r\n", boundary);

	return pb_queue_tx_write(tx, head->str, head->len, error) &&
	       pb_queue_tx_write(tx, body->str, body->len, error) &&
	       copy_headers(tx, data_fd, error) &&
	       pb_queue_tx_write(tx, tail, strlen(tail), error);
}

gboolean
pb_dsn_queue(PbQueue *q, const PbConfig *cfg, PbDsnKind kind,
             const PbEnvelope *env, int data_fd, gint64 now, char **new_id,
             GError **error)
{
	gboolean dbl = *env->sender == '\0';
	g_autofree char *to = NULL;
	g_autoptr(PbEnvelope) out = pb_envelope_new();
	PbQueueTx *tx;

	if (new_id)
		*new_id = NULL;
	if (dbl && (kind == PB_DSN_DELAYED || is_dead_end(cfg, env))) {
		pb_log_warn(env->id, "%s from <> not reported (it would loop)",
		            kind == PB_DSN_FAILED ? "undeliverable report"
		                                  : "delay");
		return TRUE;
	}
	to = dbl ? postmaster(cfg) : g_strdup(env->sender);
	if ((tx = pb_queue_tx_begin(q, error)) == NULL)
		return FALSE;
	if (!write_report(tx, cfg, kind, env, to, data_fd, now, error)) {
		pb_queue_tx_abort(tx);
		return FALSE;
	}
	out->client = g_strdup_printf("local (report on %s)", env->id);
	/* its addresses and attached header are the original's: they need
	 * what the original needed */
	out->smtputf8 = env->smtputf8;
	pb_envelope_add_rcpt(out, to);
	if (!pb_queue_tx_commit(tx, out, error))
		return FALSE;
	pb_log_info(env->id, "%s: %s to <%s>",
	            kind == PB_DSN_FAILED ? "sender non-delivery notification"
	                                  : "sender delay notification",
	            out->id, to);
	if (new_id)
		*new_id = g_strdup(out->id);
	return TRUE;
}

/* The notice's text: what happened, where the files are, what could be
 * read of the envelope. */
static GString *
unreadable_text(const PbConfig *cfg, const char *id, const char *reason,
                const char *salvage)
{
	GString *out = g_string_new(NULL);
	g_autofree char *why = pb_sanitize_text(reason, 1000);
	g_auto(GStrv) lines = g_strsplit(salvage, "\n", -1);

	g_string_append_printf(
	    out,
	    "This is the mail system at host %s.\r\n\r\n"
	    "The envelope of queue entry %s could not be read:\r\n    ",
	    cfg->hostname, id);
	wrap(out, 4, "    ", why);
	g_string_append_printf(
	    out,
	    "\r\nSo that nothing is lost, the entry was set aside, not "
	    "deleted:\r\n    %s/corrupt/%s.msg (the message)\r\n"
	    "    %s/corrupt/%s.env (the envelope)\r\n"
	    "It is not delivered or retried any more; its sender was not "
	    "told.\r\nWhat could be read of the envelope:\r\n\r\n",
	    cfg->queue, id, cfg->queue, id);
	for (guint i = 0; lines[i] != NULL; i++) {
		g_autofree char *line = pb_sanitize_text(lines[i], 400);
		if (*line == '\0')
			continue;
		g_string_append(out, "    ");
		wrap(out, 4, "      ", line);
	}
	g_string_append(out, "\r\nThe message's header is attached.\r\n");
	return out;
}

static gboolean
write_unreadable(PbQueueTx *tx, const PbConfig *cfg, const char *to,
                 const char *id, const char *reason, const char *salvage,
                 int data_fd, gint64 now, GError **error)
{
	g_autofree char *boundary =
	    g_strdup_printf("%s/%08X.dsn", pb_queue_tx_id(tx), g_random_int());
	g_autofree char *date = pb_date_rfc5322(now);
	g_autoptr(GString) text = unreadable_text(cfg, id, reason, salvage);
	g_autoptr(GString) head = g_string_new(NULL);
	g_autofree char *tail = g_strdup_printf("\r\n--%s--\r\n", boundary);

	g_string_append_printf(
	    head,
	    "From: Mail Delivery System <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n"
	    "Subject: Queue entry %s set aside: its envelope is unreadable\r\n"
	    "Date: %s\r\nMessage-ID: <%s.dsn@%s>\r\n"
	    "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed;\r\n\tboundary=\"%s\"\r\n\r\n"
	    "This is a MIME-encapsulated message.\r\n\r\n--%s\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
	    cfg->hostname, to, id, date, pb_queue_tx_id(tx), cfg->hostname,
	    boundary, boundary);
	g_string_append_len(head, text->str, text->len);
	g_string_append_printf(head,
	                       "\r\n--%s\r\nContent-Description: Message "
	                       "Headers\r\nContent-Type: "
	                       "text/rfc822-headers\r\n\r\n",
	                       boundary);
	return pb_queue_tx_write(tx, head->str, head->len, error) &&
	       copy_headers(tx, data_fd, error) &&
	       pb_queue_tx_write(tx, tail, strlen(tail), error);
}

gboolean
pb_dsn_queue_unreadable(PbQueue *q, const PbConfig *cfg, const char *id,
                        const char *reason, const char *salvage, int data_fd,
                        gint64 now, char **new_id, GError **error)
{
	g_autofree char *to = postmaster(cfg);
	g_autoptr(PbEnvelope) out = pb_envelope_new();
	PbQueueTx *tx;

	*new_id = NULL;
	if ((tx = pb_queue_tx_begin(q, error)) == NULL)
		return FALSE;
	if (!write_unreadable(tx, cfg, to, id, reason, salvage, data_fd, now,
	                      error)) {
		pb_queue_tx_abort(tx);
		return FALSE;
	}
	out->client = g_strdup_printf("local (report on %s)", id);
	pb_envelope_add_rcpt(out, to);
	if (!pb_queue_tx_commit(tx, out, error))
		return FALSE;
	pb_log_info(id, "postmaster notification: %s to <%s>", out->id, to);
	*new_id = g_strdup(out->id);
	return TRUE;
}
