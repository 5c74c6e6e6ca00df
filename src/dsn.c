/*
 * dsn.c - bounces and delay notices (RFC 3464 delivery status
 * notifications in an RFC 6522 multipart/report), queued as new messages
 * with the null sender (see dsn.h).
 *
 * Who gets the report: the envelope sender; when that is <> (the message
 * was itself a report), postmaster of the first local domain gets a
 * double bounce, still from <>. A failure of a message from <> whose
 * failed recipients are all postmaster addresses of local domains is a
 * double bounce that could not be delivered: it is only logged, which is
 * what ends every possible loop. Delay notices are never sent for
 * messages from <>.
 *
 * The readable part answers "where is my mail?": per recipient the last
 * reply and, for a delay, every remembered attempt and the time until
 * which delivery goes on. Every text from a remote server was sanitised
 * by the queue (printable ASCII), and long fields are folded, so no line
 * of the report exceeds 998 octets.
 */
#include "dsn.h"
#include "address.h"
#include "error.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define FOLD 76 /* where long report fields are folded */

static char *
rfc5322_date(gint64 t)
{
	g_autoptr(GDateTime) d = g_date_time_new_from_unix_local(t);

	return d ? g_date_time_format(d, "%a, %d %b %Y %H:%M:%S %z")
	         : g_strdup("Thu, 01 Jan 1970 00:00:00 +0000");
}

/* Appends "NAME: VALUE\r\n", folded at spaces (or hard) so that no line
 * grows past FOLD octets by much and never past 998. */
static void
field(GString *out, const char *name, const char *value)
{
	gsize col = strlen(name) + 2;
	const char *p = value;

	g_string_append_printf(out, "%s: ", name);
	while (*p) {
		gsize word = strcspn(p, " ");
		if (word == 0) {
			g_string_append_c(out, ' ');
			col++;
			p++;
			continue;
		}
		if (col + word > FOLD && col > strlen(name) + 2) {
			g_string_append(out, "\r\n ");
			col = 1;
		}
		while (word > 900) { /* one unbreakable run: cut it */
			g_string_append_len(out, p, 900);
			g_string_append(out, "\r\n ");
			p += 900;
			word -= 900;
			col = 1;
		}
		g_string_append_len(out, p, word);
		col += word;
		p += word;
	}
	g_string_append(out, "\r\n");
}

static gboolean
covered(PbDsnKind kind, const PbRecipient *r)
{
	return kind == PB_DSN_FAILED ? r->state == PB_RCPT_FAILED
	                             : r->state == PB_RCPT_PENDING;
}

/* A failed double bounce: from <>, only local postmasters failed. */
static gboolean
is_dead_end(const PbConfig *cfg, const PbEnvelope *env)
{
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		g_autofree char *local = NULL;
		g_autofree char *domain = NULL;
		if (!covered(PB_DSN_FAILED, r))
			continue;
		if (!pb_address_split(r->address, &local, &domain) ||
		    g_ascii_strcasecmp(local, "postmaster") != 0 ||
		    !pb_config_is_local_domain(cfg, domain))
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

static void
text_part(GString *out, const PbConfig *cfg, PbDsnKind kind,
          const PbEnvelope *env, gboolean dbl)
{
	g_autofree char *arrived = rfc5322_date(env->arrival);
	g_autofree char *until = rfc5322_date(env->arrival + cfg->bounce_after);

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
		    "notice you get before delivery succeeds or fails.\r\n\r\n",
		    arrived, until);
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (!covered(kind, r))
			continue;
		g_string_append_printf(out, "<%s>%s%s%s:\r\n", r->address,
		                       r->orig ? " (sent to <" : "",
		                       r->orig ? r->orig : "",
		                       r->orig ? ">)" : "");
		for (guint a = 0; r->history && a < r->history->len; a++) {
			const PbAttempt *at = g_ptr_array_index(r->history, a);
			g_autofree char *when = rfc5322_date(at->time);
			g_autofree char *line = g_strdup_printf(
			    "%s, %s: %s", when, at->host ? at->host : "",
			    at->reply ? at->reply : "");
			if (kind == PB_DSN_FAILED && a + 1 < r->history->len)
				continue; /* a bounce shows the last reply */
			field(out, "   attempt", line);
		}
		if (r->last_error && kind == PB_DSN_FAILED)
			field(out, "   reason", r->last_error);
		g_string_append(out, "\r\n");
	}
}

static void
status_part(GString *out, const PbConfig *cfg, PbDsnKind kind,
            const PbEnvelope *env)
{
	g_autofree char *arrived = rfc5322_date(env->arrival);
	g_autofree char *until = rfc5322_date(env->arrival + cfg->bounce_after);

	g_string_append_printf(out, "Reporting-MTA: dns; %s\r\n",
	                       cfg->hostname);
	g_string_append_printf(out, "X-Pillarbox-Queue-ID: %s\r\n", env->id);
	field(out, "Arrival-Date", arrived);
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		const PbAttempt *last = NULL;
		g_autofree char *mta = NULL;
		g_autofree char *v = NULL;
		if (!covered(kind, r))
			continue;
		if (r->history && r->history->len > 0)
			last =
			    g_ptr_array_index(r->history, r->history->len - 1);
		g_string_append(out, "\r\n");
		v = g_strdup_printf("rfc822; %s", r->address);
		field(out, "Final-Recipient", v);
		if (r->orig) {
			g_free(v);
			v = g_strdup_printf("rfc822; %s", r->orig);
			field(out, "Original-Recipient", v);
		}
		field(out, "Action",
		      kind == PB_DSN_FAILED ? "failed" : "delayed");
		field(out, "Status",
		      r->dsn ? r->dsn
		             : (kind == PB_DSN_FAILED ? "5.0.0" : "4.0.0"));
		if (last && last->host && (mta = remote_mta(last->host))) {
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
			v = rfc5322_date(r->last_attempt);
			field(out, "Last-Attempt-Date", v);
		}
		if (kind == PB_DSN_DELAYED)
			field(out, "Will-Retry-Until", until);
	}
}

/* Where the original's header section ends: the offset just after the
 * CRLF that precedes the empty line (or the end of the message). */
static gboolean
header_end(int fd, off_t *end, GError **error)
{
	char buf[8192];
	guint32 tail = 0; /* the last four octets seen */
	off_t off = 0;

	for (;;) {
		ssize_t n = pread(fd, buf, sizeof buf, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pb_throw_errno(error, "reading the message");
		if (n == 0) {
			*end = off;
			return TRUE;
		}
		for (ssize_t i = 0; i < n; i++) {
			tail = (tail << 8) | (guchar)buf[i];
			if (tail == 0x0d0a0d0a) {
				*end = off + i - 1;
				return TRUE;
			}
		}
		off += n;
	}
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
	/* a header section always ends with CRLF in the attachment */
	if (end < 2)
		return pb_queue_tx_write(tx, "\r\n", 2, error);
	return TRUE;
}

static GString *
report_head(const PbConfig *cfg, PbDsnKind kind, const char *to, const char *id,
            gint64 now, const char *boundary)
{
	GString *out = g_string_new(NULL);
	g_autofree char *date = rfc5322_date(now);

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

gboolean
pb_dsn_queue(PbQueue *q, const PbConfig *cfg, PbDsnKind kind,
             const PbEnvelope *env, int data_fd, gint64 now, char **new_id,
             GError **error)
{
	gboolean dbl = *env->sender == '\0';
	g_autofree char *to = NULL;
	g_autofree char *boundary = NULL;
	g_autoptr(GString) head = NULL;
	g_autoptr(GString) body = NULL;
	g_autoptr(PbEnvelope) out = pb_envelope_new();
	g_autofree char *tail = NULL;
	PbQueueTx *tx;

	if (new_id)
		*new_id = NULL;
	if (dbl && (kind == PB_DSN_DELAYED || is_dead_end(cfg, env))) {
		pb_log_warn(env->id, "%s from <> not reported (it would loop)",
		            kind == PB_DSN_FAILED ? "undeliverable report"
		                                  : "delay");
		return TRUE;
	}
	to = dbl ? g_strdup_printf("postmaster@%s", cfg->domains[0]
	                                                ? cfg->domains[0]
	                                                : cfg->hostname)
	         : g_strdup(env->sender);
	if ((tx = pb_queue_tx_begin(q, error)) == NULL)
		return FALSE;
	boundary = g_strdup_printf("%s/%s", pb_queue_tx_id(tx), cfg->hostname);
	head = report_head(cfg, kind, to, pb_queue_tx_id(tx), now, boundary);
	body = report_body(cfg, kind, env, dbl, boundary);
	tail = g_strdup_printf("\r\n--%s--\r\n", boundary);
	if (!pb_queue_tx_write(tx, head->str, head->len, error) ||
	    !pb_queue_tx_write(tx, body->str, body->len, error) ||
	    !copy_headers(tx, data_fd, error) ||
	    !pb_queue_tx_write(tx, tail, strlen(tail), error)) {
		pb_queue_tx_abort(tx);
		return FALSE;
	}
	out->client = g_strdup_printf("local (report on %s)", env->id);
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
