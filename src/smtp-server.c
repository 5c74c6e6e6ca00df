/*
 * smtp-server.c - the SMTP server session (see smtp-server.h): a state
 * machine fed command lines and DATA octets, writing replies to a
 * PbLineOut.
 *
 * States follow RFC 5321 section 4.1.4: GREETED (HELO/EHLO required),
 * READY (MAIL allowed), MAIL (RCPT allowed), RCPT (DATA allowed), DATA
 * (octets go to the decoder), CLOSED. Every reply carries an enhanced
 * status code (RFC 3463) except the greeting, 221 and EHLO's 250.
 *
 * Guarantees: nothing a client sends reaches the queue's envelope
 * unchecked (paths go through address.c, which refuses control
 * characters; ESMTP parameters are parsed, never copied); the message is
 * streamed to the queue through the decoder, which keeps a few octets of
 * state and never the message; 250 after DATA only once tx_commit()
 * returned TRUE. Too many errors end the session (421).
 */
#include "smtp-server.h"
#include "address.h"
#include "auth.h"
#include "error.h"

#include <stddef.h>
#include <string.h>

#define MAX_ERRORS 20    /* bad commands before 421 */
#define SINK_CHUNK 16384 /* decoder output handed to the sink at once */

typedef enum {
	ST_GREETED, /* waiting for HELO/EHLO */
	ST_READY,
	ST_MAIL,
	ST_RCPT,
	ST_DATA,
	ST_AUTH_PLAIN, /* waiting for AUTH PLAIN's response */
	ST_AUTH_USER,  /* AUTH LOGIN: waiting for the user name */
	ST_AUTH_PASS,  /* AUTH LOGIN: waiting for the password */
	ST_CLOSED,
} State;

#define MAX_AUTH_FAILURES 3

struct _PbSmtpServer {
	const PbConfig *cfg;
	const PbSmtpHooks *hooks;
	void *hook_data;
	const PbSmtpPeer *peer;
	PbLineOut *out;
	State state;
	PbSmtpAction action;
	guint errors;
	char *helo;
	gboolean esmtp;
	/* the transaction */
	char *sender;
	gboolean smtputf8;
	GPtrArray *rcpts;     /* char*, canonical strings */
	GHashTable *rcpt_set; /* lowercased, for duplicates */
	void *tx;
	const char *qid;
	gboolean tx_failed;
	PbDataDecoder *dec;
	PbDkimSign *dkim;        /* signing this message, or NULL */
	PbAuthFilter *ar_filter; /* [auth] checks: forged A-R removed */
	PbDkimVerify *verify;    /* from outside: the signatures checked */
	GPtrArray *accepted;     /* char* queue ids */
	/* TLS and AUTH */
	PbSmtpOptions opts;
	gboolean tls;
	char *tls_description;
	char *auth_user;  /* the authenticated user, or NULL */
	char *login_user; /* AUTH LOGIN: the name given */
	State before_auth;
	guint auth_failures;
	/* the client sent an AUTH command (whatever became of it) or a
	 * line refused unparsed: bytes that may have held a password */
	gboolean opaque_input;
};

/* ---- the DATA decoder ---- */

typedef enum {
	D_BOL,   /* at the start of a line */
	D_DOT,   /* "." at the start of a line */
	D_DOTCR, /* ".\r" at the start of a line */
	D_TEXT,  /* inside a line */
	D_CR,    /* a CR inside a line, LF or not to follow */
} DecState;

struct _PbDataDecoder {
	guint64 max_size;
	PbDataSink sink;
	void *ctx;
	DecState state;
	guint problems;
	guint64 size;     /* octets given to the sink */
	gsize line_len;   /* octets of the current line (unstuffed) */
	gboolean in_body; /* the empty line after the header was seen */
	char prefix[10];  /* the current header line's first octets */
	guint received;
	gsize buf_len;
	char buf[SINK_CHUNK]; /* last: not zeroed (pb_data_decoder_new) */
};

PbDataDecoder *
pb_data_decoder_new(guint64 max_size, PbDataSink sink, void *ctx)
{
	PbDataDecoder *dec = g_malloc(sizeof(PbDataDecoder));

	memset(dec, 0, offsetof(PbDataDecoder, buf));
	dec->max_size = max_size;
	dec->sink = sink;
	dec->ctx = ctx;
	dec->state = D_BOL;
	return dec;
}

void
pb_data_decoder_free(PbDataDecoder *dec)
{
	g_free(dec);
}

guint
pb_data_decoder_problems(PbDataDecoder *dec)
{
	return dec->problems;
}

guint64
pb_data_decoder_size(PbDataDecoder *dec)
{
	return dec->size;
}

static void
dec_flush(PbDataDecoder *dec)
{
	if (dec->buf_len > 0)
		dec->sink(dec->ctx, dec->buf, dec->buf_len);
	dec->buf_len = 0;
}

/* One octet of the message; the size limit stops output, not reading. */
static void
dec_emit(PbDataDecoder *dec, char c)
{
	if (dec->size >= dec->max_size) {
		dec->problems |= PB_DATA_TOO_BIG;
		return;
	}
	dec->size++;
	dec->buf[dec->buf_len++] = c;
	if (dec->buf_len == sizeof dec->buf)
		dec_flush(dec);
}

/* An octet of line text (not the CRLF). */
static void
dec_text(PbDataDecoder *dec, char c)
{
	if (c == '\0')
		dec->problems |= PB_DATA_NUL;
	if (!dec->in_body && dec->line_len < sizeof dec->prefix - 1)
		dec->prefix[dec->line_len] = c;
	if (++dec->line_len > PB_DATA_MAX_LINE)
		dec->problems |= PB_DATA_LONG_LINE;
	dec_emit(dec, c);
}

/* CRLF: the end of a line; counts Received: in the header section. */
static void
dec_line_end(PbDataDecoder *dec)
{
	dec_emit(dec, '\r');
	dec_emit(dec, '\n');
	if (!dec->in_body) {
		if (dec->line_len == 0)
			dec->in_body = TRUE;
		else if (dec->line_len >= 9 &&
		         g_ascii_strncasecmp(dec->prefix, "Received:", 9) ==
		             0 &&
		         ++dec->received > PB_DATA_MAX_RECEIVED)
			dec->problems |= PB_DATA_LOOP;
	}
	dec->line_len = 0;
	memset(dec->prefix, 0, sizeof dec->prefix);
}

/* One octet in D_TEXT (also where other states fall back to). */
static void
dec_in_text(PbDataDecoder *dec, char c)
{
	if (c == '\r') {
		dec->state = D_CR;
	} else if (c == '\n') {
		/* a bare LF is text, never a line end: "\n.\n" cannot end
		 * the data (SMTP smuggling) */
		dec->problems |= PB_DATA_BARE_LF;
		dec_text(dec, c);
		dec->state = D_TEXT;
	} else {
		dec_text(dec, c);
		dec->state = D_TEXT;
	}
}

gsize
pb_data_decoder_feed(PbDataDecoder *dec, const char *buf, gsize len,
                     gboolean *done)
{
	*done = FALSE;
	for (gsize i = 0; i < len; i++) {
		char c = buf[i];

		switch (dec->state) {
		case D_BOL:
			if (c == '.')
				dec->state = D_DOT;
			else
				dec_in_text(dec, c);
			break;
		case D_DOT:
			if (c == '\r')
				dec->state = D_DOTCR;
			else /* a stuffed dot: dropped */
				dec_in_text(dec, c);
			break;
		case D_DOTCR:
			if (c == '\n') {
				dec_flush(dec);
				*done = TRUE;
				return i + 1;
			}
			/* ".\r" then not LF: the dot was stuffing, the CR
			 * is bare */
			dec->problems |= PB_DATA_BARE_CR;
			dec_text(dec, '\r');
			dec_in_text(dec, c);
			break;
		case D_CR:
			if (c == '\n') {
				dec_line_end(dec);
				dec->state = D_BOL;
			} else {
				dec->problems |= PB_DATA_BARE_CR;
				dec_text(dec, '\r');
				dec_in_text(dec, c);
			}
			break;
		case D_TEXT:
			dec_in_text(dec, c);
			break;
		}
	}
	dec_flush(dec);
	return len;
}

/* ---- replies ---- */

static void G_GNUC_PRINTF(2, 3) reply(PbSmtpServer *s, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	pb_line_out_printf(s->out, "%s\r\n", text);
}

/* A reply to a bad command; too many of them end the session. */
static void G_GNUC_PRINTF(2, 3) fail(PbSmtpServer *s, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	pb_line_out_printf(s->out, "%s\r\n", text);
	if (++s->errors >= MAX_ERRORS) {
		reply(s, "421 4.7.0 %s Error: too many errors",
		      s->cfg->hostname);
		s->state = ST_CLOSED;
		s->action = PB_SMTP_CLOSE;
	}
}

/* ---- the session ---- */

static void
reset_transaction(PbSmtpServer *s)
{
	g_clear_pointer(&s->sender, g_free);
	g_ptr_array_set_size(s->rcpts, 0);
	g_hash_table_remove_all(s->rcpt_set);
	s->smtputf8 = FALSE;
	if (s->tx != NULL)
		s->hooks->tx_abort(s->tx);
	s->tx = NULL;
	s->qid = NULL;
	g_clear_pointer(&s->dec, pb_data_decoder_free);
	g_clear_pointer(&s->dkim, pb_dkim_sign_free);
	g_clear_pointer(&s->ar_filter, pb_auth_filter_free);
	g_clear_pointer(&s->verify, pb_dkim_verify_free);
	if (s->state != ST_GREETED && s->state != ST_CLOSED)
		s->state = ST_READY;
}

PbSmtpServer *
pb_smtp_server_new(const PbConfig *cfg, const PbSmtpHooks *hooks,
                   void *hook_data, const PbSmtpPeer *peer, PbLineOut *out)
{
	PbSmtpServer *s = g_new0(PbSmtpServer, 1);

	s->cfg = cfg;
	s->hooks = hooks;
	s->hook_data = hook_data;
	s->peer = peer;
	s->out = out;
	s->state = ST_GREETED;
	s->rcpts = g_ptr_array_new_with_free_func(g_free);
	s->rcpt_set =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	s->accepted = g_ptr_array_new_with_free_func(g_free);
	return s;
}

void
pb_smtp_server_free(PbSmtpServer *s)
{
	if (s == NULL)
		return;
	reset_transaction(s);
	g_free(s->helo);
	g_free(s->tls_description);
	g_free(s->auth_user);
	g_free(s->login_user);
	g_ptr_array_unref(s->rcpts);
	g_hash_table_unref(s->rcpt_set);
	g_ptr_array_unref(s->accepted);
	g_free(s);
}

void
pb_smtp_server_set_options(PbSmtpServer *s, const PbSmtpOptions *opts)
{
	s->opts = *opts;
	g_free(s->auth_user);
	s->auth_user = g_strdup(opts->user);
}

void
pb_smtp_server_tls_started(PbSmtpServer *s, const char *description)
{
	reset_transaction(s);
	s->state = ST_GREETED;
	g_clear_pointer(&s->helo, g_free);
	s->esmtp = FALSE;
	/* RFC 3207 4.2: an AUTH before STARTTLS may have been a
	 * man-in-the-middle's; only the kernel's word (sendmail -bs) stays */
	g_free(s->auth_user);
	s->auth_user = g_strdup(s->opts.user);
	g_clear_pointer(&s->login_user, g_free);
	s->tls = TRUE;
	g_free(s->tls_description);
	s->tls_description = g_strdup(description);
}

/* Loopback, or a peer without IP that was declared trusted. */
static gboolean
peer_local(const PbSmtpPeer *peer)
{
	return peer->local || g_str_has_prefix(peer->ip, "127.") ||
	       g_str_equal(peer->ip, "::1");
}

/* AUTH may be offered: over TLS, from loopback, or when configured. */
static gboolean
auth_allowed(PbSmtpServer *s)
{
	return s->hooks->authenticate != NULL &&
	       (s->tls || s->cfg->plaintext_auth || peer_local(s->peer));
}

void
pb_smtp_server_greet(PbSmtpServer *s)
{
	reply(s, "220 %s ESMTP pillarbox", s->cfg->hostname);
}

/* HELO/EHLO's argument: a domain or an address literal, printable. */
static gboolean
valid_helo(const char *arg)
{
	if (*arg == '\0' || strlen(arg) > 255)
		return FALSE;
	for (const char *p = arg; *p; p++)
		if (*p <= ' ' || *p > '~')
			return FALSE;
	return TRUE;
}

static void
cmd_helo(PbSmtpServer *s, const char *arg, gboolean esmtp)
{
	if (!valid_helo(arg)) {
		fail(s, "501 5.5.4 Syntax: %s hostname",
		     esmtp ? "EHLO" : "HELO");
		return;
	}
	s->state = ST_READY;
	reset_transaction(s);
	g_free(s->helo);
	s->helo = g_strdup(arg);
	s->esmtp = esmtp;
	if (!esmtp) {
		reply(s, "250 %s", s->cfg->hostname);
		return;
	}
	reply(s, "250-%s", s->cfg->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %" G_GUINT64_FORMAT, s->cfg->max_message_size);
	reply(s, "250-8BITMIME");
	reply(s, "250-ENHANCEDSTATUSCODES");
	if (s->opts.tls_available && !s->tls)
		reply(s, "250-STARTTLS");
	if (auth_allowed(s) && s->auth_user == NULL)
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250 SMTPUTF8");
}

/* "FROM:" / "TO:" then optional spaces; returns the path's start. */
static const char *
after_keyword(const char *arg, const char *keyword)
{
	gsize n = strlen(keyword);

	if (g_ascii_strncasecmp(arg, keyword, n) != 0)
		return NULL;
	arg += n;
	while (*arg == ' ')
		arg++;
	return arg;
}

/* MAIL's ESMTP parameters (RFC 1870, 6152, 6531). FALSE: replied. */
static gboolean
mail_params(PbSmtpServer *s, const char *rest, gboolean *utf8)
{
	g_auto(GStrv) params = g_strsplit(rest, " ", -1);

	for (guint i = 0; params[i]; i++) {
		const char *p = params[i];
		guint64 size;
		if (*p == '\0')
			continue;
		if (g_ascii_strncasecmp(p, "SIZE=", 5) == 0) {
			if (!g_ascii_string_to_unsigned(
			        p + 5, 10, 0, G_MAXUINT64, &size, NULL)) {
				fail(s, "501 5.5.4 Bad SIZE parameter");
				return FALSE;
			}
			if (size > s->cfg->max_message_size) {
				fail(s, "552 5.3.4 Message size exceeds fixed "
				        "limit");
				return FALSE;
			}
		} else if (g_ascii_strncasecmp(p, "BODY=", 5) == 0) {
			if (g_ascii_strcasecmp(p + 5, "7BIT") != 0 &&
			    g_ascii_strcasecmp(p + 5, "8BITMIME") != 0) {
				fail(s, "501 5.5.4 Unsupported BODY parameter");
				return FALSE;
			}
		} else if (g_ascii_strcasecmp(p, "SMTPUTF8") == 0) {
			*utf8 = TRUE;
		} else {
			fail(s, "555 5.5.4 Unsupported MAIL parameter");
			return FALSE;
		}
	}
	return TRUE;
}

static gboolean
is_ascii(const char *text)
{
	for (const guchar *p = (const guchar *)text; *p; p++)
		if (*p >= 0x80)
			return FALSE;
	return TRUE;
}

static gboolean
lookup_failed(PbSmtpServer *s)
{
	return s->hooks->lookup_failed != NULL &&
	       s->hooks->lookup_failed(s->hook_data);
}

static void
cmd_mail(PbSmtpServer *s, const char *arg)
{
	const char *path = after_keyword(arg, "FROM:");
	g_autoptr(PbAddress) addr = NULL;
	g_autoptr(GError) error = NULL;
	g_autofree char *text = NULL;
	const char *rest;
	gboolean utf8 = FALSE;

	if (s->state == ST_GREETED) {
		fail(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->state != ST_READY) {
		fail(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (path == NULL) {
		fail(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (s->opts.submission && s->auth_user == NULL) {
		fail(s, "530 5.7.0 Authentication required");
		return;
	}
	if (!pb_address_parse_path(path, strlen(path),
	                           PB_ADDRESS_ALLOW_NULL | PB_ADDRESS_UTF8,
	                           &addr, &rest, &error)) {
		fail(s, "501 5.1.7 Bad sender address syntax: %s",
		     error->message);
		return;
	}
	if (*rest != '\0' && *rest != ' ') {
		fail(s, "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]");
		return;
	}
	if (!mail_params(s, rest, &utf8))
		return;
	text = pb_address_to_string(addr);
	if (!utf8 && !is_ascii(text)) {
		fail(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		return;
	}
	if (s->opts.submission &&
	    (s->hooks->sender_allowed == NULL ||
	     !s->hooks->sender_allowed(s->hook_data, s->auth_user, text))) {
		if (lookup_failed(s)) {
			fail(s, "451 4.3.0 <%s>: Temporary lookup failure",
			     text);
			return;
		}
		fail(s,
		     "553 5.7.1 <%s>: Sender address rejected: not owned "
		     "by user %s",
		     text, s->auth_user);
		return;
	}
	s->sender = g_steal_pointer(&text);
	s->smtputf8 = utf8;
	s->state = ST_MAIL;
	reply(s, "250 2.1.0 Ok");
}

/* The policy of RCPT: postmaster always, a local domain's known
 * recipients, others only for relay_networks. FALSE: replied. */
static gboolean
rcpt_allowed(PbSmtpServer *s, const PbAddress *addr, const char *text)
{
	g_autofree char *canonical = NULL;

	if (*addr->domain == '\0' ||
	    (pb_config_is_local_domain(s->cfg, addr->domain) &&
	     g_ascii_strcasecmp(addr->local, "postmaster") == 0))
		return TRUE;
	if (pb_config_is_local_domain(s->cfg, addr->domain)) {
		canonical =
		    pb_address_canonical(text, s->cfg->recipient_delimiter);
		if (s->hooks->recipient_exists(s->hook_data, canonical))
			return TRUE;
		if (lookup_failed(s)) {
			fail(s, "451 4.3.0 <%s>: Temporary lookup failure",
			     text);
			return FALSE;
		}
		fail(s,
		     "550 5.1.1 <%s>: Recipient address rejected: User "
		     "unknown",
		     text);
		return FALSE;
	}
	if (s->auth_user != NULL || s->peer->local ||
	    pb_cidr_list_match(s->cfg->relay_networks, s->peer->ip))
		return TRUE;
	fail(s, "554 5.7.1 <%s>: Relay access denied", text);
	return FALSE;
}

static void
cmd_rcpt(PbSmtpServer *s, const char *arg)
{
	const char *path = after_keyword(arg, "TO:");
	g_autoptr(PbAddress) addr = NULL;
	g_autoptr(GError) error = NULL;
	g_autofree char *text = NULL;
	const char *rest;
	PbAddressFlags flags = PB_ADDRESS_ALLOW_POSTMASTER;

	if (s->state != ST_MAIL && s->state != ST_RCPT) {
		fail(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (path == NULL) {
		fail(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (s->smtputf8)
		flags |= PB_ADDRESS_UTF8;
	if (!pb_address_parse_path(path, strlen(path), flags, &addr, &rest,
	                           &error)) {
		fail(s, "501 5.1.3 Bad recipient address syntax: %s",
		     error->message);
		return;
	}
	while (*rest == ' ')
		rest++;
	if (*rest != '\0') {
		fail(s, "555 5.5.4 Unsupported RCPT parameter");
		return;
	}
	if (s->rcpts->len >= s->cfg->max_recipients) {
		reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (*addr->domain == '\0') /* bare <postmaster> */
		text = g_strdup_printf("postmaster@%s", s->cfg->domains[0]
		                                            ? s->cfg->domains[0]
		                                            : s->cfg->hostname);
	else
		text = pb_address_to_string(addr);
	if (!rcpt_allowed(s, addr, text))
		return;
	if (g_hash_table_add(s->rcpt_set, g_utf8_strdown(text, -1)))
		g_ptr_array_add(s->rcpts, g_steal_pointer(&text));
	s->state = ST_RCPT;
	reply(s, "250 2.1.5 Ok");
}

static void
data_sink(void *ctx, const char *buf, gsize len)
{
	PbSmtpServer *s = ctx;
	g_autoptr(GError) error = NULL;

	if (s->tx_failed)
		return;
	if (!s->hooks->tx_write(s->tx, buf, len, &error))
		s->tx_failed = TRUE;
	if (s->dkim != NULL)
		pb_dkim_sign_feed(s->dkim, buf, len);
	if (s->verify != NULL)
		pb_dkim_verify_feed(s->verify, buf, len);
}

/* The client's data, before data_sink: forged A-R removed. */
static void
filter_sink(void *ctx, const char *buf, gsize len)
{
	PbSmtpServer *s = ctx;

	pb_auth_filter_feed(s->ar_filter, buf, len);
}

/* A message from outside gets the inbound checks: not from a client
 * that authenticated, a local program, relay_networks, nor from a peer
 * without an address (nothing to check SPF against). */
static gboolean
inbound(PbSmtpServer *s)
{
	return s->auth_user == NULL && !s->peer->local &&
	       *s->peer->ip != '\0' &&
	       !pb_cidr_list_match(s->cfg->relay_networks, s->peer->ip);
}

/* The checks before commit; FALSE: refused (replied). */
static gboolean
check_inbound(PbSmtpServer *s, void *tx)
{
	g_autofree char *refusal = NULL;
	PbSmtpInbound in = {.ip = s->peer->ip,
	                    .helo = s->helo,
	                    .sender = s->sender,
	                    .verify = s->verify};

	if (s->ar_filter == NULL)
		return TRUE;
	in.removed = pb_auth_filter_removed(s->ar_filter);
	if ((refusal = s->hooks->tx_check(tx, &in)) == NULL)
		return TRUE;
	reply(s, "%s", refusal);
	return FALSE;
}

/* DKIM signs what our users send out: a client that authenticated, a
 * local program, relay_networks; for a remote recipient (a local copy
 * is not signed: nothing checks it). */
static gboolean
dkim_wanted(PbSmtpServer *s)
{
	if (s->opts.dkim == NULL || s->hooks->tx_signed == NULL ||
	    !(s->auth_user != NULL || s->peer->local ||
	      pb_cidr_list_match(s->cfg->relay_networks, s->peer->ip)))
		return FALSE;
	for (guint i = 0; i < s->rcpts->len; i++) {
		const char *at = strrchr(g_ptr_array_index(s->rcpts, i), '@');
		if (at && !pb_config_is_local_domain(s->cfg, at + 1))
			return TRUE;
	}
	return FALSE;
}

/* Signs the message before commit; FALSE: signing failed (a key that
 * cannot be used): the message is not sent unsigned. */
static gboolean
dkim_sign(PbSmtpServer *s, void *tx)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *domain = NULL;
	g_autofree char *fields = NULL;
	const char *why = NULL;

	if (s->dkim == NULL)
		return TRUE;
	fields = pb_dkim_sign_finish(s->dkim, s->hooks->now(s->hook_data),
	                             &domain, &why, &error);
	if (error != NULL)
		why = error->message;
	s->hooks->tx_signed(tx, fields, domain, why);
	return error == NULL;
}

/* Our trace header (RFC 5321 4.4), first in the stored message. */
static char *
received_header(PbSmtpServer *s)
{
	g_autoptr(GDateTime) t =
	    g_date_time_new_from_unix_utc(s->hooks->now(s->hook_data));
	g_autofree char *date =
	    t ? g_date_time_format(t, "%a, %d %b %Y %H:%M:%S +0000")
	      : g_strdup("?");
	g_autofree char *for_clause =
	    s->rcpts->len == 1
	        ? g_strdup_printf("\r\n\tfor <%s>",
	                          (char *)g_ptr_array_index(s->rcpts, 0))
	        : g_strdup("");

	/* RFC 3848 and RFC 6531 3.7.3: ESMTP, then S for TLS and A for
	 * AUTH; UTF8SMTP when the transaction used SMTPUTF8 */
	g_autofree char *protocol = g_strdup_printf(
	    "%s%s%s",
	    s->smtputf8 ? "UTF8SMTP"
	    : s->esmtp  ? "ESMTP"
	                : "SMTP",
	    s->tls && (s->esmtp || s->smtputf8) ? "S" : "",
	    s->auth_user && (s->esmtp || s->smtputf8) ? "A" : "");
	/* no IP address: a Unix-domain socket or a pipe on this host */
	g_autofree char *tcp_info =
	    *s->peer->ip == '\0' ? g_strdup("local")
	    : s->peer->name
	        ? g_strdup_printf("%s [%s]", s->peer->name, s->peer->ip)
	        : g_strdup_printf("[%s]", s->peer->ip);

	return g_strdup_printf("Received: from %s (%s)\r\n\tby %s (pillarbox) "
	                       "with %s id %s%s;\r\n\t%s\r\n",
	                       s->helo, tcp_info, s->cfg->hostname, protocol,
	                       s->qid, for_clause, date);
}

static void
cmd_data(PbSmtpServer *s, const char *arg)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *header = NULL;

	if (s->state != ST_RCPT) {
		fail(s, "503 5.5.1 Error: need %s command",
		     s->state == ST_MAIL ? "RCPT" : "MAIL");
		return;
	}
	if (*arg != '\0') {
		fail(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	s->tx = s->hooks->tx_begin(s->hook_data, &s->qid, &error);
	if (s->tx == NULL) {
		reply(s, "451 4.3.0 Error: queue file write error");
		reset_transaction(s);
		return;
	}
	s->tx_failed = FALSE;
	header = received_header(s);
	data_sink(s, header, strlen(header));
	/* from the client's first octet on: our Received: is not signed */
	if (dkim_wanted(s))
		s->dkim = pb_dkim_sign_new(s->opts.dkim);
	if (s->hooks->tx_check != NULL && s->cfg->auth_checks) {
		s->ar_filter =
		    pb_auth_filter_new(s->cfg->hostname, data_sink, s);
		if (inbound(s))
			s->verify = pb_dkim_verify_new();
	}
	s->dec = pb_data_decoder_new(s->cfg->max_message_size,
	                             s->ar_filter ? filter_sink : data_sink, s);
	s->state = ST_DATA;
	s->action = PB_SMTP_FLUSH;
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* The reply for the decoder's problems, or NULL. */
static const char *
problem_reply(guint problems)
{
	if (problems & PB_DATA_TOO_BIG)
		return "552 5.3.4 Error: message too big";
	if (problems & (PB_DATA_BARE_LF | PB_DATA_BARE_CR))
		return "554 5.6.0 Error: bare CR or LF in message "
		       "(RFC 5321 2.3.8)";
	if (problems & PB_DATA_NUL)
		return "554 5.6.0 Error: NUL character in message";
	if (problems & PB_DATA_LONG_LINE)
		return "554 5.6.0 Error: line longer than 998 characters "
		       "(RFC 5322 2.1.1)";
	if (problems & PB_DATA_LOOP)
		return "554 5.4.6 Error: too many Received: headers (mail "
		       "loop)";
	return NULL;
}

/* The final dot was read: commit or refuse. */
static void
data_done(PbSmtpServer *s)
{
	const char *refusal = problem_reply(pb_data_decoder_problems(s->dec));
	g_autoptr(GError) error = NULL;
	g_autofree char *qid = g_strdup(s->qid);
	void *tx = s->tx;

	if (s->ar_filter != NULL)
		pb_auth_filter_finish(s->ar_filter);
	if (refusal != NULL || s->tx_failed) {
		reply(s, "%s",
		      refusal ? refusal
		              : "451 4.3.0 Error: queue file write error");
		reset_transaction(s);
		return;
	}
	if (!dkim_sign(s, tx)) {
		reply(s, "451 4.7.0 Error: the message could not be signed "
		         "(DKIM)");
		reset_transaction(s);
		return;
	}
	if (!check_inbound(s, tx)) {
		reset_transaction(s);
		return;
	}
	s->tx = NULL; /* commit frees it, whatever the outcome */
	if (!s->hooks->tx_commit(tx, s->sender, s->rcpts, s->helo, s->smtputf8,
	                         &error)) {
		reply(s, "451 4.3.0 Error: queue file write error");
		reset_transaction(s);
		return;
	}
	reply(s, "250 2.0.0 Ok: queued as %s", qid);
	g_ptr_array_add(s->accepted, g_steal_pointer(&qid));
	reset_transaction(s);
}

gboolean
pb_smtp_server_in_data(PbSmtpServer *s)
{
	return s->state == ST_DATA;
}

gsize
pb_smtp_server_data(PbSmtpServer *s, const char *buf, gsize len)
{
	gboolean done = FALSE;
	gsize used;

	if (s->state != ST_DATA)
		return 0;
	used = pb_data_decoder_feed(s->dec, buf, len, &done);
	if (done)
		data_done(s);
	return used;
}

/* RFC 3207. The socket side empties its input buffer before the
 * handshake, so nothing pipelined after STARTTLS is ever answered. */
static void
cmd_starttls(PbSmtpServer *s, const char *arg)
{
	if (*arg != '\0') {
		fail(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->tls) {
		fail(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (!s->opts.tls_available) {
		fail(s, "454 4.7.0 TLS not available");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	s->action = PB_SMTP_STARTTLS;
}

/* The end of an AUTH exchange, either way. */
static void
auth_check(PbSmtpServer *s, const char *user, const char *pass)
{
	s->state = s->before_auth;
	if (s->hooks->authenticate(s->hook_data, user, pass)) {
		g_free(s->auth_user);
		s->auth_user = g_strdup(user);
		reply(s, "235 2.7.0 Authentication successful");
		return;
	}
	reply(s, "535 5.7.8 Error: authentication failed");
	s->action = PB_SMTP_DELAY;
	if (++s->auth_failures >= MAX_AUTH_FAILURES) {
		reply(s, "421 4.7.0 %s Error: too many failed authentications",
		      s->cfg->hostname);
		s->state = ST_CLOSED;
		s->action = PB_SMTP_CLOSE;
	}
}

/* Decodes a base64 response line; NULL (replied) when it is bad. */
static char *
auth_decode(PbSmtpServer *s, const char *b64, gsize *len)
{
	guchar *raw;

	if (g_str_equal(b64, "*")) {
		s->state = s->before_auth;
		fail(s, "501 5.7.0 Authentication cancelled");
		return NULL;
	}
	for (const char *p = b64; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '+' && *p != '/' &&
		    *p != '=') {
			s->state = s->before_auth;
			fail(s, "501 5.5.2 Error: bad base64 data");
			return NULL;
		}
	raw = g_base64_decode(b64, len);
	raw = g_realloc(raw, *len + 1);
	raw[*len] = '\0';
	return (char *)raw;
}

/* RFC 4616: [authzid] NUL authcid NUL passwd. */
static void
auth_plain(PbSmtpServer *s, const char *b64)
{
	gsize len = 0;
	g_autofree char *raw = auth_decode(s, b64, &len);
	const char *authc, *pass;

	if (raw == NULL)
		return;
	authc = memchr(raw, '\0', len) ? raw + strlen(raw) + 1 : NULL;
	pass = authc && authc < raw + len ? authc + strlen(authc) + 1 : NULL;
	if (pass == NULL || pass > raw + len || (*raw && strcmp(raw, authc))) {
		s->state = s->before_auth;
		fail(s, "501 5.5.2 Error: malformed AUTH PLAIN response");
	} else
		auth_check(s, authc, pass);
	memset(raw, 0, len);
}

/* A response line inside AUTH (the states ST_AUTH_*). */
static void
auth_response(PbSmtpServer *s, char *line)
{
	gsize len = 0;
	g_autofree char *raw = NULL;

	if (s->state == ST_AUTH_PLAIN) {
		auth_plain(s, line);
		return;
	}
	if ((raw = auth_decode(s, line, &len)) == NULL)
		return;
	if (s->state == ST_AUTH_USER) {
		g_free(s->login_user);
		s->login_user = g_strdup(raw);
		s->state = ST_AUTH_PASS;
		reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
	} else {
		g_autofree char *user = g_steal_pointer(&s->login_user);
		auth_check(s, user, raw);
	}
	memset(raw, 0, len);
}

/* RFC 4954: AUTH PLAIN [initial-response] | AUTH LOGIN [user]. */
static void
cmd_auth(PbSmtpServer *s, const char *arg)
{
	g_auto(GStrv) parts = g_strsplit(arg, " ", 2);

	s->opaque_input = TRUE;
	if (s->state == ST_GREETED) {
		fail(s, "503 5.5.1 Error: send EHLO first");
		return;
	}
	if (s->auth_user != NULL || s->state != ST_READY) {
		fail(s, "503 5.5.1 Error: %s",
		     s->auth_user ? "already authenticated"
		                  : "AUTH not allowed during a transaction");
		return;
	}
	if (s->hooks->authenticate == NULL || !auth_allowed(s)) {
		fail(s, "%s",
		     s->hooks->authenticate
		         ? "538 5.7.11 Encryption required for "
		           "requested authentication mechanism"
		         : "502 5.5.1 Error: AUTH not available");
		return;
	}
	if (s->hooks->auth_blocked != NULL &&
	    s->hooks->auth_blocked(s->hook_data)) {
		fail(s, "454 4.7.0 Too many failed authentications, try later");
		return;
	}
	s->before_auth = s->state;
	if (parts[0] && g_ascii_strcasecmp(parts[0], "PLAIN") == 0) {
		if (parts[1] && !g_str_equal(parts[1], "=")) {
			auth_plain(s, parts[1]);
			return;
		}
		s->state = ST_AUTH_PLAIN;
		reply(s, "334 ");
	} else if (parts[0] && g_ascii_strcasecmp(parts[0], "LOGIN") == 0) {
		s->state = ST_AUTH_USER;
		if (parts[1]) {
			s->state = ST_AUTH_USER;
			auth_response(s, parts[1]);
			return;
		}
		reply(s, "334 VXNlcm5hbWU6"); /* "Username:" */
	} else
		fail(s,
		     "504 5.5.4 Error: unsupported authentication mechanism");
}

static void
dispatch(PbSmtpServer *s, const char *verb, const char *arg)
{
	if (g_ascii_strcasecmp(verb, "EHLO") == 0)
		cmd_helo(s, arg, TRUE);
	else if (g_ascii_strcasecmp(verb, "HELO") == 0)
		cmd_helo(s, arg, FALSE);
	else if (g_ascii_strcasecmp(verb, "MAIL") == 0)
		cmd_mail(s, arg);
	else if (g_ascii_strcasecmp(verb, "RCPT") == 0)
		cmd_rcpt(s, arg);
	else if (g_ascii_strcasecmp(verb, "DATA") == 0)
		cmd_data(s, arg);
	else if (g_ascii_strcasecmp(verb, "RSET") == 0) {
		reset_transaction(s);
		reply(s, "250 2.0.0 Ok");
	} else if (g_ascii_strcasecmp(verb, "NOOP") == 0)
		reply(s, "250 2.0.0 Ok");
	else if (g_ascii_strcasecmp(verb, "QUIT") == 0) {
		reply(s, "221 2.0.0 Bye");
		reset_transaction(s);
		s->state = ST_CLOSED;
		s->action = PB_SMTP_CLOSE;
	} else if (g_ascii_strcasecmp(verb, "HELP") == 0)
		reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET "
		         "NOOP QUIT HELP VRFY");
	else if (g_ascii_strcasecmp(verb, "VRFY") == 0) {
		if (*arg == '\0')
			fail(s, "501 5.5.4 Syntax: VRFY address");
		else /* RFC 5321 3.5.3: never reveal accounts */
			reply(s, "252 2.5.2 Cannot VRFY user, but will accept "
			         "message and attempt delivery");
	} else if (g_ascii_strcasecmp(verb, "EXPN") == 0)
		fail(s, "502 5.5.1 Error: EXPN not available");
	else if (g_ascii_strcasecmp(verb, "VERB") == 0)
		fail(s, "502 5.5.1 Error: VERB is obsolete");
	else if (g_ascii_strcasecmp(verb, "STARTTLS") == 0)
		cmd_starttls(s, arg);
	else if (g_ascii_strcasecmp(verb, "AUTH") == 0)
		cmd_auth(s, arg);
	else
		fail(s, "500 5.5.2 Error: command not recognized");
}

void
pb_smtp_server_line(PbSmtpServer *s, const char *line, gsize len, guint flags)
{
	g_autofree char *copy = NULL;
	char *arg;

	if (s->state == ST_CLOSED || s->state == ST_DATA)
		return;
	if (flags & PB_LINE_TOO_LONG) {
		s->opaque_input = TRUE;
		fail(s, "500 5.5.6 Error: line too long");
		return;
	}
	if ((flags & (PB_LINE_HAS_NUL | PB_LINE_BARE_CR)) ||
	    memchr(line, '\0', len) != NULL) {
		s->opaque_input = TRUE;
		fail(s, "500 5.5.2 Error: bad characters in command");
		return;
	}
	copy = g_strndup(line, len);
	if (s->state == ST_AUTH_PLAIN || s->state == ST_AUTH_USER ||
	    s->state == ST_AUTH_PASS) {
		auth_response(s, g_strstrip(copy));
		memset(copy, 0, len); /* a password does not linger */
		return;
	}
	arg = strchr(copy, ' ');
	if (arg != NULL) {
		*arg++ = '\0';
		while (*arg == ' ')
			arg++;
		g_strchomp(arg);
	} else
		arg = copy + len;
	dispatch(s, copy, arg);
}

void
pb_smtp_server_timeout(PbSmtpServer *s)
{
	if (s->state == ST_CLOSED)
		return;
	reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
	reset_transaction(s);
	s->state = ST_CLOSED;
	s->action = PB_SMTP_CLOSE;
}

PbSmtpAction
pb_smtp_server_next_action(PbSmtpServer *s)
{
	PbSmtpAction a = s->action;

	if (a == PB_SMTP_FLUSH || a == PB_SMTP_STARTTLS || a == PB_SMTP_DELAY)
		s->action = PB_SMTP_NONE;
	return a;
}

const GPtrArray *
pb_smtp_server_accepted(PbSmtpServer *s)
{
	return s->accepted;
}

gboolean
pb_smtp_server_opaque_input(PbSmtpServer *s)
{
	return s->opaque_input;
}
