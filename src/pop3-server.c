/*
 * pop3-server.c - the POP3 session state machine (see pop3-server.h).
 *
 * A message number is 1-based and valid while not marked deleted
 * (RFC 1939 5). STAT and LIST count only messages not deleted; sizes
 * come from the hooks and are exactly what RETR sends.
 */
#include "pop3-server.h"

#include <string.h>

#define LIST_BATCH 65536

typedef enum {
	ST_AUTH,
	ST_AUTH_PLAIN, /* waiting for the AUTH PLAIN continuation */
	ST_TRANSACTION,
	ST_CLOSED,
} State;

struct _PbPop3Server {
	const PbPop3Hooks *hooks;
	void *data;
	PbLineOut *out;
	char *hostname;
	gboolean plaintext_ok;
	gboolean tls_available, tls;
	State state;
	PbPop3Action action;
	char *user;        /* USER given, or the logged-in user */
	gboolean *deleted; /* per message in TRANSACTION */
	guint count;
	guint auth_failures, errors;
	guint retrieved, ndeleted;
};

static void G_GNUC_PRINTF(2, 3) reply(PbPop3Server *s, const char *fmt, ...)
{
	va_list ap;
	g_autoptr(GString) text = g_string_sized_new(64);

	va_start(ap, fmt);
	g_string_append_vprintf(text, fmt, ap);
	va_end(ap);
	g_string_append(text, "\r\n");
	pb_line_out_write(s->out, text->str, text->len);
}

/* V in decimal, written at the end of BUF; returns where it starts. */
static const char *
decimal(char buf[24], guint64 v)
{
	char *p = buf + 23;

	*p = '\0';
	do
		*--p = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	return p;
}

/* A LIST or UIDL line, "N VALUE\r\n", added to BATCH (100,000 of them
 * for a big mailbox: no printf, and written out in 64 KB pieces). */
static void
list_line(PbPop3Server *s, GString *batch, guint n, const char *value)
{
	char digits[24];

	g_string_append(batch, decimal(digits, n));
	g_string_append_c(batch, ' ');
	g_string_append(batch, value);
	g_string_append_len(batch, "\r\n", 2);
	if (batch->len >= LIST_BATCH) {
		pb_line_out_write(s->out, batch->str, batch->len);
		g_string_truncate(batch, 0);
	}
}

static void
close_session(PbPop3Server *s)
{
	s->state = ST_CLOSED;
	s->action = PB_POP3_CLOSE;
}

/* A bad command; too many end the session. */
static void G_GNUC_PRINTF(2, 3) bad(PbPop3Server *s, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	pb_line_out_printf(s->out, "-ERR %s\r\n", text);
	if (++s->errors >= PB_POP3_MAX_ERRORS) {
		reply(s, "-ERR Too many errors, bye");
		close_session(s);
	}
}

PbPop3Server *
pb_pop3_server_new(const PbPop3Hooks *hooks, void *hook_data, PbLineOut *out,
                   const char *hostname, gboolean plaintext_ok)
{
	PbPop3Server *s = g_new0(PbPop3Server, 1);

	s->hooks = hooks;
	s->data = hook_data;
	s->out = out;
	s->hostname = g_strdup(hostname);
	s->plaintext_ok = plaintext_ok;
	s->state = ST_AUTH;
	return s;
}

void
pb_pop3_server_free(PbPop3Server *s)
{
	if (s == NULL)
		return;
	g_free(s->hostname);
	if (s->user)
		memset(s->user, 0, strlen(s->user));
	g_free(s->user);
	g_free(s->deleted);
	g_free(s);
}

void
pb_pop3_server_set_tls_available(PbPop3Server *s, gboolean available)
{
	s->tls_available = available;
}

void
pb_pop3_server_tls_started(PbPop3Server *s)
{
	/* RFC 2595 4: nothing said in plaintext carries over (a USER may
	 * have been a man in the middle's); STLS is refused once logged in */
	g_clear_pointer(&s->user, g_free);
	s->tls = TRUE;
	s->plaintext_ok = TRUE;
}

void
pb_pop3_server_greet(PbPop3Server *s)
{
	reply(s, "+OK %s POP3 server ready", s->hostname);
}

static void
capa(PbPop3Server *s)
{
	reply(s, "+OK Capability list follows");
	reply(s, "TOP");
	reply(s, "UIDL");
	reply(s, "RESP-CODES");
	reply(s, "AUTH-RESP-CODE");
	reply(s, "PIPELINING");
	reply(s, "UTF8");
	if (s->state == ST_AUTH && s->tls_available && !s->tls)
		reply(s, "STLS");
	/* RFC 2449 6.3/6.4: only what may be used now */
	if (s->state == ST_AUTH && s->plaintext_ok) {
		reply(s, "USER");
		reply(s, "SASL PLAIN");
	}
	reply(s, "IMPLEMENTATION pillarbox");
	reply(s, ".");
}

/* Every failed login, whatever the reason, gets this one reply and the
 * socket side's pause, so a client cannot tell an unknown user from a
 * wrong password. */
static void
login_failed(PbPop3Server *s)
{
	reply(s, "-ERR [AUTH] Authentication failed");
	s->action = PB_POP3_AUTH_DELAY;
	g_clear_pointer(&s->user, g_free);
	if (++s->auth_failures >= PB_POP3_MAX_AUTH_FAILURES) {
		reply(s, "-ERR Too many failures, bye");
		close_session(s);
	}
}

/* The end of a login attempt, either way. */
static void
login(PbPop3Server *s, const char *user, const char *pass)
{
	/* too many failures from this client lately: no password check */
	if (s->hooks->blocked != NULL && s->hooks->blocked(s->data)) {
		reply(s, "-ERR [SYS/TEMP] Too many failed logins, try later");
		close_session(s);
		return;
	}
	if (s->hooks->accounts_ready != NULL &&
	    !s->hooks->accounts_ready(s->data)) {
		reply(s, "-ERR [SYS/TEMP] Service not available");
		close_session(s);
		return;
	}
	if (!s->hooks->authenticate(s->data, user, pass)) {
		login_failed(s);
		return;
	}
	g_free(s->user);
	s->user = g_strdup(user);
	switch (s->hooks->open(s->data, user)) {
	case PB_POP3_OPEN_IN_USE:
		reply(s, "-ERR [IN-USE] Mailbox in use by another session");
		close_session(s);
		return;
	case PB_POP3_OPEN_FAILED:
		reply(s, "-ERR [SYS/TEMP] Cannot open the mailbox, try later");
		close_session(s);
		return;
	case PB_POP3_OPEN_OK:
		break;
	}
	s->count = s->hooks->count(s->data);
	s->deleted = g_new0(gboolean, s->count + 1);
	s->state = ST_TRANSACTION;
	reply(s, "+OK Logged in, %u message%s", s->count,
	      s->count == 1 ? "" : "s");
}

/* RFC 4616: [authzid] NUL authcid NUL passwd, base64. */
static void
auth_plain(PbPop3Server *s, const char *b64)
{
	gsize len = 0;
	g_autofree guchar *raw = NULL;
	const char *authz, *authc, *pass;

	s->state = ST_AUTH;
	if (g_str_equal(b64, "*")) {
		bad(s, "AUTH cancelled");
		return;
	}
	raw = g_base64_decode(b64, &len);
	raw = g_realloc(raw, len + 1);
	raw[len] = '\0';
	authz = (const char *)raw;
	authc = memchr(raw, '\0', len) ? authz + strlen(authz) + 1 : NULL;
	if (authc == NULL || authc >= (const char *)raw + len ||
	    (pass = authc + strlen(authc) + 1) > (const char *)raw + len) {
		bad(s, "Malformed AUTH PLAIN response");
		return;
	}
	/* acting for another user (an authzid) is not supported */
	if (*authz && strcmp(authz, authc) != 0)
		login_failed(s);
	else
		login(s, authc, pass);
	memset(raw, 0, len);
}

static void
cmd_auth(PbPop3Server *s, const char *verb, const char *arg)
{
	if (g_ascii_strcasecmp(verb, "CAPA") == 0)
		capa(s);
	else if (g_ascii_strcasecmp(verb, "QUIT") == 0) {
		reply(s, "+OK Bye");
		close_session(s);
	} else if (g_ascii_strcasecmp(verb, "NOOP") == 0)
		reply(s, "+OK");
	else if (g_ascii_strcasecmp(verb, "UTF8") == 0)
		reply(s, "+OK UTF8 enabled");
	else if (g_ascii_strcasecmp(verb, "STLS") == 0) {
		if (s->tls)
			bad(s, "Already in TLS");
		else if (!s->tls_available)
			bad(s, "STLS not available");
		else {
			reply(s, "+OK Begin TLS negotiation");
			s->action = PB_POP3_STLS;
		}
	} else if (!s->plaintext_ok && (g_ascii_strcasecmp(verb, "USER") == 0 ||
	                                g_ascii_strcasecmp(verb, "PASS") == 0 ||
	                                g_ascii_strcasecmp(verb, "AUTH") == 0))
		bad(s, "[AUTH] Plaintext authentication is not allowed "
		       "without TLS");
	else if (g_ascii_strcasecmp(verb, "USER") == 0) {
		if (*arg == '\0') {
			bad(s, "Syntax: USER name");
			return;
		}
		g_free(s->user);
		s->user = g_strdup(arg);
		reply(s, "+OK");
	} else if (g_ascii_strcasecmp(verb, "PASS") == 0) {
		g_autofree char *user = g_strdup(s->user);
		if (user == NULL) {
			bad(s, "USER first");
			return;
		}
		login(s, user, arg);
	} else if (g_ascii_strcasecmp(verb, "AUTH") == 0) {
		g_auto(GStrv) parts = g_strsplit(arg, " ", 2);
		if (parts[0] == NULL) {
			reply(s, "+OK");
			reply(s, "PLAIN");
			reply(s, ".");
		} else if (g_ascii_strcasecmp(parts[0], "PLAIN") != 0)
			bad(s, "Unsupported mechanism");
		else if (parts[1] != NULL)
			auth_plain(s, parts[1]);
		else {
			reply(s, "+ ");
			s->state = ST_AUTH_PLAIN;
		}
	} else
		bad(s, "Unknown command in AUTHORIZATION state");
}

/* A message number argument: 1..count, not deleted. */
static gboolean
message_number(PbPop3Server *s, const char *arg, guint *index)
{
	guint64 n;

	/* an empty mailbox has no valid number (and 1..0 is no range) */
	if (s->count == 0 ||
	    !g_ascii_string_to_unsigned(arg, 10, 1, s->count, &n, NULL) ||
	    s->deleted[n - 1]) {
		bad(s, "No such message");
		return FALSE;
	}
	*index = (guint)n - 1;
	return TRUE;
}

static void
cmd_stat(PbPop3Server *s)
{
	guint n = 0;
	guint64 octets = 0;

	for (guint i = 0; i < s->count; i++)
		if (!s->deleted[i]) {
			n++;
			octets += s->hooks->size(s->data, i);
		}
	reply(s, "+OK %u %" G_GUINT64_FORMAT, n, octets);
}

/* LIST and UIDL: one message, or all that are not deleted. */
static void
cmd_list(PbPop3Server *s, const char *arg, gboolean uidl)
{
	g_autoptr(GString) batch = NULL;
	guint i;

	if (*arg != '\0') {
		if (!message_number(s, arg, &i))
			return;
		if (uidl)
			reply(s, "+OK %u %s", i + 1, s->hooks->uid(s->data, i));
		else
			reply(s, "+OK %u %" G_GUINT64_FORMAT, i + 1,
			      s->hooks->size(s->data, i));
		return;
	}
	reply(s, "+OK");
	batch = g_string_sized_new(LIST_BATCH + 128);
	for (i = 0; i < s->count; i++) {
		char size[24];
		if (s->deleted[i])
			continue;
		list_line(s, batch, i + 1,
		          uidl ? s->hooks->uid(s->data, i)
		               : decimal(size, s->hooks->size(s->data, i)));
	}
	g_string_append(batch, ".\r\n");
	pb_line_out_write(s->out, batch->str, batch->len);
}

static void
cmd_retr(PbPop3Server *s, const char *arg, gboolean top)
{
	g_auto(GStrv) parts = g_strsplit(arg, " ", -1);
	guint i;
	guint64 lines = 0;

	if (parts[0] == NULL ||
	    (top && (parts[1] == NULL || parts[2] != NULL ||
	             !g_ascii_string_to_unsigned(parts[1], 10, 0, G_MAXINT64,
	                                         &lines, NULL))) ||
	    (!top && parts[1] != NULL)) {
		bad(s, top ? "Syntax: TOP msg lines" : "Syntax: RETR msg");
		return;
	}
	if (!message_number(s, parts[0], &i))
		return;
	if (top)
		reply(s, "+OK");
	else
		reply(s, "+OK %" G_GUINT64_FORMAT " octets",
		      s->hooks->size(s->data, i));
	if (!s->hooks->send(s->data, i, top ? (gint64)lines : -1, s->out)) {
		/* the "+OK" is out: end the response, then the session */
		reply(s, ".");
		reply(s, "-ERR [SYS/TEMP] Cannot read the message");
		close_session(s);
		return;
	}
	if (!top)
		s->retrieved++;
}

static void
cmd_quit(PbPop3Server *s)
{
	if (!s->hooks->commit(s->data, s->deleted)) {
		reply(s, "-ERR [SYS/TEMP] Some deleted messages not removed");
		close_session(s);
		return;
	}
	reply(s, "+OK Bye, %u deleted", s->ndeleted);
	close_session(s);
}

static void
cmd_transaction(PbPop3Server *s, const char *verb, const char *arg)
{
	guint i;

	if (g_ascii_strcasecmp(verb, "STAT") == 0)
		cmd_stat(s);
	else if (g_ascii_strcasecmp(verb, "LIST") == 0)
		cmd_list(s, arg, FALSE);
	else if (g_ascii_strcasecmp(verb, "UIDL") == 0)
		cmd_list(s, arg, TRUE);
	else if (g_ascii_strcasecmp(verb, "RETR") == 0)
		cmd_retr(s, arg, FALSE);
	else if (g_ascii_strcasecmp(verb, "TOP") == 0)
		cmd_retr(s, arg, TRUE);
	else if (g_ascii_strcasecmp(verb, "DELE") == 0) {
		if (!message_number(s, arg, &i))
			return;
		s->deleted[i] = TRUE;
		s->ndeleted++;
		reply(s, "+OK Marked for deletion");
	} else if (g_ascii_strcasecmp(verb, "RSET") == 0) {
		memset(s->deleted, 0, sizeof(gboolean) * s->count);
		s->ndeleted = 0;
		reply(s, "+OK");
	} else if (g_ascii_strcasecmp(verb, "NOOP") == 0)
		reply(s, "+OK");
	else if (g_ascii_strcasecmp(verb, "CAPA") == 0)
		capa(s);
	else if (g_ascii_strcasecmp(verb, "QUIT") == 0)
		cmd_quit(s);
	else
		bad(s, "Unknown command in TRANSACTION state");
}

void
pb_pop3_server_line(PbPop3Server *s, const char *line, gsize len, guint flags)
{
	g_autofree char *copy = NULL;
	char *arg;

	if (s->state == ST_CLOSED)
		return;
	if (flags & PB_LINE_TOO_LONG) {
		bad(s, "Line too long");
		return;
	}
	if ((flags & (PB_LINE_HAS_NUL | PB_LINE_BARE_CR)) ||
	    memchr(line, '\0', len) != NULL) {
		bad(s, "Bad characters in command");
		return;
	}
	copy = g_strndup(line, len);
	if (s->state == ST_AUTH_PLAIN) {
		auth_plain(s, g_strstrip(copy));
		memset(copy, 0, len);
		return;
	}
	arg = strchr(copy, ' ');
	if (arg != NULL)
		*arg++ = '\0';
	else
		arg = copy + len;
	/* PASS may contain spaces; other arguments are trimmed */
	if (g_ascii_strcasecmp(copy, "PASS") != 0)
		g_strstrip(arg);
	if (s->state == ST_AUTH)
		cmd_auth(s, copy, arg);
	else
		cmd_transaction(s, copy, arg);
	memset(copy, 0, len); /* passwords do not linger */
}

void
pb_pop3_server_timeout(PbPop3Server *s)
{
	if (s->state == ST_CLOSED)
		return;
	reply(s, "-ERR Autologout; idle for too long");
	close_session(s);
}

PbPop3Action
pb_pop3_server_next_action(PbPop3Server *s)
{
	PbPop3Action a = s->action;

	if (a != PB_POP3_CLOSE)
		s->action = PB_POP3_NONE;
	return a;
}

const char *
pb_pop3_server_user(PbPop3Server *s)
{
	return s->state == ST_TRANSACTION || s->deleted ? s->user : NULL;
}

guint
pb_pop3_server_retrieved(PbPop3Server *s)
{
	return s->retrieved;
}

guint
pb_pop3_server_deleted(PbPop3Server *s)
{
	return s->ndeleted;
}
