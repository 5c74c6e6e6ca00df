/*
 * smtp-client.c - the client side of one SMTP connection (see
 * smtp-client.h).
 *
 * Blocking over a PbConn with the deadline of each stage (RFC 5321
 * 4.5.3.2: greeting, commands, DATA initiation, each data block, the
 * final dot). With PIPELINING, MAIL, every RCPT and DATA go out in one
 * write and the replies are read in order (RFC 2920 section 3.1). The
 * message is streamed from the queue file in chunks and dot-stuffed on
 * the way, so memory does not depend on its size; exactly the size the
 * envelope records is sent, and every line end goes out as CRLF (a bare
 * CR or LF in the queued data never reaches the wire).
 */
#include "smtp-client.h"
#include "error.h"
#include "queue.h"
#include "tls.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 65536

struct _PbSmtpClient {
	const PbConfig *cfg;
	PbConn *conn;
	PbSmtpCaps caps;
	gboolean dirty; /* a transaction was left unfinished: RSET first */
};

void
pb_smtp_reply_free(PbSmtpReply *r)
{
	if (r == NULL)
		return;
	g_free(r->text);
	g_free(r->dsn);
	g_free(r);
}

void
pb_smtp_result_free(PbSmtpResult *r)
{
	if (r == NULL)
		return;
	pb_smtp_reply_free(r->mail);
	g_ptr_array_unref(r->rcpt);
	pb_smtp_reply_free(r->data);
	pb_smtp_reply_free(r->final);
	g_free(r->failure);
	g_free(r);
}

gboolean
pb_smtp_reply_line(const char *line, gsize len, guint *code, gboolean *last,
                   const char **text)
{
	if (len < 3 || !g_ascii_isdigit(line[0]) || line[0] < '2' ||
	    line[0] > '5' || !g_ascii_isdigit(line[1]) ||
	    !g_ascii_isdigit(line[2]))
		return FALSE;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return FALSE;
	*code = (guint)((line[0] - '0') * 100 + (line[1] - '0') * 10 +
	                (line[2] - '0'));
	*last = len == 3 || line[3] == ' ';
	/* inside the line even when empty: callers count its length from
	 * the line's start */
	*text = line + MIN(len, 4);
	return TRUE;
}

/* "5.1.1" at the start of TEXT when its class matches CODE's. */
static char *
enhanced(guint code, const char *text)
{
	const char *p = text;

	if (*p - '0' != (int)(code / 100) || p[1] != '.')
		goto derived;
	p += 2;
	if (!g_ascii_isdigit(*p))
		goto derived;
	while (g_ascii_isdigit(*p))
		p++;
	if (*p++ != '.' || !g_ascii_isdigit(*p))
		goto derived;
	while (g_ascii_isdigit(*p))
		p++;
	if (*p != ' ' && *p != '\0')
		goto derived;
	return g_strndup(text, p - text);
derived:
	return g_strdup_printf("%u.0.0", code / 100);
}

static gint64
deadline(gint64 seconds)
{
	return pb_deadline_in(seconds);
}

/* Reads one reply, all its lines within TIMEOUT (a server dripping a
 * line at a time cannot stretch it); LINES (optional) gets each line's
 * text. NULL when the connection failed or the server spoke no SMTP. */
static PbSmtpReply *
read_reply(PbSmtpClient *c, gint64 timeout, GPtrArray *lines)
{
	g_autoptr(GString) text = g_string_new(NULL);
	gint64 end = deadline(timeout);
	guint first = 0;

	for (guint n = 0; n < PB_SMTP_REPLY_MAX_LINES; n++) {
		const char *line, *t;
		gsize len;
		guint flags, code;
		gboolean last;
		PbSmtpReply *r;

		if (!pb_conn_read_line(c->conn, &line, &len, &flags, end, NULL))
			return NULL;
		if (!pb_smtp_reply_line(line, len, &code, &last, &t) ||
		    (first && code != first))
			return NULL;
		first = code;
		if (text->len > 0)
			g_string_append_c(text, ' ');
		g_string_append_len(
		    text, t, MIN(len - (t - line), PB_SMTP_REPLY_MAX_TEXT));
		if (lines)
			g_ptr_array_add(
			    lines, g_strndup(t, MIN(len - (t - line),
			                            PB_SMTP_REPLY_MAX_TEXT)));
		if (!last)
			continue;
		r = g_new0(PbSmtpReply, 1);
		r->code = code;
		r->dsn = enhanced(code, text->str);
		/* "550 5.1.1 text", as Postfix shows remote replies */
		g_string_prepend(text, " ");
		g_string_prepend_len(text, line, 3);
		r->text = pb_sanitize_text(text->str, 2000);
		return r;
	}
	return NULL; /* an endless reply */
}

static gboolean G_GNUC_PRINTF(2, 3)
    command(PbSmtpClient *c, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *line = NULL;

	va_start(ap, fmt);
	line = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	return pb_conn_write(c->conn, line, strlen(line), NULL) &&
	       pb_conn_write(c->conn, "\r\n", 2, NULL);
}

static gboolean
flush(PbSmtpClient *c, gint64 timeout)
{
	return pb_conn_flush(c->conn, deadline(timeout), NULL);
}

void
pb_smtp_caps_parse(PbSmtpCaps *caps, const char *const *lines)
{
	memset(caps, 0, sizeof *caps);
	caps->esmtp = TRUE;
	/* the first line is the greeting name, not a capability */
	for (guint i = 1; lines[i]; i++) {
		const char *l = lines[i];
		if (g_ascii_strcasecmp(l, "PIPELINING") == 0)
			caps->pipelining = TRUE;
		else if (g_ascii_strcasecmp(l, "8BITMIME") == 0)
			caps->eightbitmime = TRUE;
		else if (g_ascii_strcasecmp(l, "SMTPUTF8") == 0)
			caps->smtputf8 = TRUE;
		else if (g_ascii_strcasecmp(l, "STARTTLS") == 0)
			caps->starttls = TRUE;
		else if (g_ascii_strncasecmp(l, "SIZE", 4) == 0 &&
		         (l[4] == '\0' || l[4] == ' ')) {
			caps->size = TRUE;
			if (l[4] == ' ')
				(void)g_ascii_string_to_unsigned(
				    l + 5, 10, 0, G_MAXUINT64,
				    &caps->size_limit, NULL);
		}
	}
}

PbSmtpClient *
pb_smtp_client_new(const PbConfig *cfg, PbConn *conn)
{
	PbSmtpClient *c = g_new0(PbSmtpClient, 1);

	c->cfg = cfg;
	c->conn = conn;
	pb_conn_set_write_timeout(conn, cfg->data_block_timeout);
	return c;
}

void
pb_smtp_client_free(PbSmtpClient *c)
{
	g_free(c);
}

const PbSmtpCaps *
pb_smtp_client_caps(PbSmtpClient *c)
{
	return &c->caps;
}

gboolean
pb_smtp_client_start(PbSmtpClient *c, PbSmtpReply **reply, GError **error)
{
	g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
	PbSmtpReply *r = read_reply(c, c->cfg->greeting_timeout, NULL);

	*reply = NULL;
	if (r == NULL || r->code != 220)
		goto refused;
	pb_smtp_reply_free(r);
	if (!command(c, "EHLO %s", c->cfg->helo) ||
	    !flush(c, c->cfg->command_timeout) ||
	    (r = read_reply(c, c->cfg->command_timeout, lines)) == NULL)
		goto refused;
	if (r->code == 250) {
		g_ptr_array_add(lines, NULL);
		pb_smtp_caps_parse(&c->caps, (const char *const *)lines->pdata);
		pb_smtp_reply_free(r);
		return TRUE;
	}
	/* an old server: HELO, and no extensions */
	pb_smtp_reply_free(r);
	memset(&c->caps, 0, sizeof c->caps);
	if (!command(c, "HELO %s", c->cfg->helo) ||
	    !flush(c, c->cfg->command_timeout) ||
	    (r = read_reply(c, c->cfg->command_timeout, NULL)) == NULL)
		goto refused;
	if (r->code == 250) {
		pb_smtp_reply_free(r);
		return TRUE;
	}
refused:
	*reply = r;
	g_set_error(error, PB_ERROR,
	            r && r->code >= 500 ? PB_ERROR_PERM : PB_ERROR_TEMP, "%s",
	            r ? r->text : "lost connection or no SMTP greeting");
	return FALSE;
}

gboolean
pb_smtp_client_starttls(PbSmtpClient *c, const char *server_name,
                        gboolean require_verified, gboolean *verified,
                        GError **error)
{
	g_autoptr(PbSmtpReply) r = NULL;
	g_autoptr(PbSmtpReply) again = NULL;
	g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);

	*verified = FALSE;
	if (!command(c, "STARTTLS") || !flush(c, c->cfg->command_timeout) ||
	    (r = read_reply(c, c->cfg->command_timeout, NULL)) == NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "lost connection after STARTTLS");
		return FALSE;
	}
	if (r->code != 220) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "STARTTLS refused: %s", r->text);
		return FALSE;
	}
	/* nothing the server sent before the handshake may count */
	pb_conn_purge_input(c->conn);
	if (!pb_tls_client_start(
	        c->conn, server_name, c->cfg->tls_ca_file, require_verified,
	        pb_deadline_in(c->cfg->command_timeout), verified, error))
		return FALSE;
	if (!command(c, "EHLO %s", c->cfg->helo) ||
	    !flush(c, c->cfg->command_timeout) ||
	    (again = read_reply(c, c->cfg->command_timeout, lines)) == NULL ||
	    again->code != 250) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "EHLO after STARTTLS failed");
		return FALSE;
	}
	g_ptr_array_add(lines, NULL);
	pb_smtp_caps_parse(&c->caps, (const char *const *)lines->pdata);
	return TRUE;
}

void
pb_smtp_stuff(PbSmtpStuffer *st, const char *in, gsize len, GString *out)
{
	for (gsize i = 0; i < len; i++) {
		char ch = in[i];

		if (st->cr) { /* a CR ends the line, with or without LF */
			st->cr = FALSE;
			st->bol = TRUE;
			g_string_append_len(out, "\r\n", 2);
			if (ch == '\n')
				continue;
		}
		if (ch == '\r') {
			st->cr = TRUE;
			continue;
		}
		if (ch == '\n') { /* a bare LF */
			g_string_append_len(out, "\r\n", 2);
			st->bol = TRUE;
			continue;
		}
		if (st->bol && ch == '.')
			g_string_append_c(out, '.');
		g_string_append_c(out, ch);
		st->bol = FALSE;
	}
}

void
pb_smtp_stuff_end(PbSmtpStuffer *st, GString *out)
{
	if (st->cr || !st->bol)
		g_string_append_len(out, "\r\n", 2);
	st->cr = FALSE;
	st->bol = TRUE;
	g_string_append_len(out, ".\r\n", 3);
}

/* Gives up the transaction on our side: RES says why. */
static gboolean G_GNUC_PRINTF(2, 3)
    give_up(PbSmtpResult *res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	g_free(res->failure);
	res->failure = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	return FALSE;
}

/* Exactly SIZE octets of the message from FD, then the final dot. A
 * short file, or one that cannot be read, is never sent as it is: the
 * dot is withheld, so the server discards what it got. */
static gboolean
send_body(PbSmtpClient *c, PbSmtpResult *res, const char *prefix, int fd,
          guint64 size)
{
	g_autofree char *buf = g_malloc(CHUNK);
	g_autoptr(GString) out = g_string_sized_new(2 * CHUNK + 8);
	PbSmtpStuffer st = PB_SMTP_STUFFER_INIT;
	guint64 off = 0;

	if (prefix != NULL) {
		pb_smtp_stuff(&st, prefix, strlen(prefix), out);
		if (!pb_conn_write(c->conn, out->str, out->len, NULL))
			return FALSE;
	}
	while (off < size) {
		ssize_t n =
		    pread(fd, buf, (size_t)MIN(CHUNK, size - off), (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return give_up(res,
			               "cannot read the queued message after "
			               "%" G_GUINT64_FORMAT
			               " of %" G_GUINT64_FORMAT " octets",
			               off, size);
		if (n == 0)
			return give_up(
			    res,
			    "the queued message has %" G_GUINT64_FORMAT
			    " octets, not the %" G_GUINT64_FORMAT
			    " its envelope records",
			    off, size);
		g_string_truncate(out, 0);
		pb_smtp_stuff(&st, buf, (gsize)n, out);
		if (!pb_conn_write(c->conn, out->str, out->len, NULL))
			return FALSE;
		off += (guint64)n;
	}
	g_string_truncate(out, 0);
	pb_smtp_stuff_end(&st, out);
	return pb_conn_write(c->conn, out->str, out->len, NULL) &&
	       flush(c, c->cfg->data_block_timeout);
}

static gboolean
any_accepted(const PbSmtpResult *res)
{
	for (guint i = 0; i < res->rcpt->len; i++) {
		const PbSmtpReply *r = g_ptr_array_index(res->rcpt, i);
		if (r && r->code / 100 == 2)
			return TRUE;
	}
	return FALSE;
}

/* MAIL, RCPT..., DATA: pipelined when offered. FALSE: connection lost. */
static gboolean
envelope(PbSmtpClient *c, PbSmtpResult *res, const char *sender, char **rcpts,
         guint64 size, gboolean smtputf8)
{
	g_autofree char *size_param =
	    c->caps.size ? g_strdup_printf(" SIZE=%" G_GUINT64_FORMAT, size)
	                 : g_strdup("");
	/* BODY: the stored message may hold 8-bit text (RFC 6152) */
	g_autofree char *params = g_strdup_printf(
	    "%s%s%s", size_param, c->caps.eightbitmime ? " BODY=8BITMIME" : "",
	    smtputf8 && c->caps.smtputf8 ? " SMTPUTF8" : "");
	gboolean pipe = c->caps.pipelining;
	gint64 t = c->cfg->command_timeout;

	if (!command(c, "MAIL FROM:<%s>%s", sender, params))
		return FALSE;
	if (pipe) {
		for (guint i = 0; rcpts[i]; i++)
			if (!command(c, "RCPT TO:<%s>", rcpts[i]))
				return FALSE;
		if (!command(c, "DATA"))
			return FALSE;
	}
	if (!flush(c, t) || (res->mail = read_reply(c, t, NULL)) == NULL)
		return FALSE;
	for (guint i = 0; rcpts[i]; i++) {
		PbSmtpReply *r = NULL;
		if (!pipe && res->mail->code / 100 == 2 &&
		    (!command(c, "RCPT TO:<%s>", rcpts[i]) || !flush(c, t)))
			return FALSE;
		if ((pipe || res->mail->code / 100 == 2) &&
		    (r = read_reply(c, t, NULL)) == NULL)
			return FALSE;
		g_ptr_array_add(res->rcpt, r);
	}
	if (!pipe && (res->mail->code / 100 != 2 || !any_accepted(res)))
		return TRUE;
	if (!pipe && (!command(c, "DATA") || !flush(c, t)))
		return FALSE;
	res->data = read_reply(c, c->cfg->data_init_timeout, NULL);
	return res->data != NULL;
}

/* The transaction itself; RES->rcpt may end short when the connection
 * drops (pb_smtp_client_send pads it). */
static void
transact(PbSmtpClient *c, PbSmtpResult *res, const char *sender, char **rcpts,
         const char *prefix, int data_fd, guint64 size, gboolean smtputf8)
{
	guint64 wire = size + (prefix ? strlen(prefix) : 0);

	g_autoptr(PbSmtpReply) rset = NULL;
	g_autoptr(PbSmtpReply) empty = NULL; /* to the empty message */

	if (c->dirty) {
		if (!command(c, "RSET") || !flush(c, c->cfg->command_timeout) ||
		    (rset = read_reply(c, c->cfg->command_timeout, NULL)) ==
		        NULL) {
			res->dropped = TRUE;
			return;
		}
		c->dirty = FALSE;
	}
	if (!envelope(c, res, sender, rcpts, wire, smtputf8)) {
		res->dropped = TRUE;
		return;
	}
	if (res->data == NULL || res->data->code != 354 ||
	    res->mail->code / 100 != 2 || !any_accepted(res)) {
		/* RFC 2920: a 354 despite no valid recipient gets an empty
		 * message, which the server then refuses */
		if (res->data && res->data->code == 354 &&
		    (!pb_conn_write(c->conn, ".\r\n", 3, NULL) ||
		     !flush(c, c->cfg->command_timeout) ||
		     (empty = read_reply(c, c->cfg->data_end_timeout, NULL)) ==
		         NULL))
			res->dropped = TRUE;
		c->dirty = TRUE;
		return;
	}
	if (!send_body(c, res, prefix, data_fd, size)) {
		res->dropped = TRUE;
		return;
	}
	res->final = read_reply(c, c->cfg->data_end_timeout, NULL);
	if (res->final == NULL)
		res->dropped = res->after_dot = TRUE;
}

PbSmtpResult *
pb_smtp_client_send(PbSmtpClient *c, const char *sender, char **rcpts,
                    int data_fd, guint64 size, gboolean smtputf8)
{
	return pb_smtp_client_send_prefixed(c, sender, rcpts, NULL, data_fd,
	                                    size, smtputf8);
}

PbSmtpResult *
pb_smtp_client_send_prefixed(PbSmtpClient *c, const char *sender, char **rcpts,
                             const char *prefix, int data_fd, guint64 size,
                             gboolean smtputf8)
{
	PbSmtpResult *res = g_new0(PbSmtpResult, 1);
	guint n = g_strv_length(rcpts);

	res->rcpt =
	    g_ptr_array_new_with_free_func((GDestroyNotify)pb_smtp_reply_free);
	transact(c, res, sender, rcpts, prefix, data_fd, size, smtputf8);
	/* one entry per recipient, whatever happened: NULL = no reply */
	while (res->rcpt->len < n)
		g_ptr_array_add(res->rcpt, NULL);
	return res;
}

void
pb_smtp_client_quit(PbSmtpClient *c)
{
	g_autoptr(PbSmtpReply) r = NULL;

	if (command(c, "QUIT") && flush(c, 10))
		r = read_reply(c, 10, NULL);
}
