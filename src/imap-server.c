/*
 * imap-server.c - the IMAP session state machine (see imap-server.h):
 * input framing through imap-parser, the per-state command table, the
 * login, mailbox and message-set commands. FETCH and STORE live in
 * imap-fetch.c, SEARCH in imap-search.c.
 *
 * Untagged updates of the selected folder are sent in one place,
 * pb_imap_ok(), just before a tagged OK: the folder is synced there,
 * without expunges while the command is FETCH, STORE or SEARCH (RFC 3501
 * 7.4.1: message numbers must stay as the client knows them), and in
 * IDLE from pb_imap_server_check().
 */
#include "imap-internal.h"

#include <string.h>

#include "error.h"

static void cmd_line(PbImapServer *s, const char *line, gsize len);

/* ------------------------------------------------------------------ */
/* output */

void
pb_imap_write(PbImapServer *s, const GString *text)
{
	pb_line_out_write(s->out, text->str, text->len);
}

void
pb_imap_reply(PbImapServer *s, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	pb_line_out_printf(s->out, "%s\r\n", text);
}

static void
close_session(PbImapServer *s)
{
	s->state = ST_LOGOUT;
	s->sub = SUB_NONE;
	s->action = PB_IMAP_CLOSE;
}

static void log_line(PbImapServer *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void
log_line(PbImapServer *s, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	if (s->hooks->log == NULL)
		return;
	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	s->hooks->log(s->data, text);
}

void
pb_imap_bad(PbImapServer *s, const char *tag, const char *text)
{
	pb_imap_reply(s, "%s BAD %s", tag ? tag : "*", text);
	if (++s->errors >= PB_IMAP_MAX_ERRORS) {
		pb_imap_reply(s, "* BYE Too many invalid IMAP commands.");
		close_session(s);
	}
}

static const char *
error_code(const GError *error)
{
	if (error->domain != PB_MAILFOLDER_ERROR)
		return "SERVERBUG";
	switch ((PbMailfolderError)error->code) {
	case PB_MAILFOLDER_ERROR_NONEXISTENT:
		return "NONEXISTENT";
	case PB_MAILFOLDER_ERROR_ALREADYEXISTS:
		return "ALREADYEXISTS";
	case PB_MAILFOLDER_ERROR_BADNAME:
	case PB_MAILFOLDER_ERROR_CANNOT:
		return "CANNOT";
	case PB_MAILFOLDER_ERROR_READONLY:
		return "READ-ONLY";
	case PB_MAILFOLDER_ERROR_LIMIT:
		return "LIMIT";
	case PB_MAILFOLDER_ERROR_EXPUNGED:
		return "EXPUNGEISSUED";
	case PB_MAILFOLDER_ERROR_TOOBIG:
		return "TOOBIG";
	}
	return "SERVERBUG";
}

void
pb_imap_no_error(PbImapServer *s, const char *tag, const GError *error)
{
	const char *code = error_code(error);

	if (g_str_equal(code, "SERVERBUG")) {
		/* the details are for the log, not for the client */
		log_line(s, "error user=%s: %s", s->user ? s->user : "",
		         error->message);
		pb_imap_reply(s,
		              "%s NO [SERVERBUG] Internal error occurred. "
		              "Refer to server log for more information.",
		              tag);
		return;
	}
	pb_imap_reply(s, "%s NO [%s] %s", tag, code, error->message);
}

void
pb_imap_ok(PbImapServer *s, const char *tag, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	if (s->state == ST_SELECTED)
		pb_imap_sync(s, !s->no_expunge);
	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	pb_line_out_printf(s->out, "%s OK %s\r\n", tag, text);
}

static void
append_capabilities(PbImapServer *s, GString *out)
{
	gboolean authed = s->state != ST_NOT_AUTH;

	g_string_append(out, "IMAP4rev1 SASL-IR");
	/* RFC 7888 5: LITERAL- limits {N+} to 4096 octets before login */
	g_string_append(out, authed ? " LITERAL+" : " LITERAL-");
	g_string_append(out, " ID ENABLE IDLE NAMESPACE UNSELECT CHILDREN"
	                     " LIST-EXTENDED SPECIAL-USE LIST-STATUS ESEARCH"
	                     " UIDPLUS MOVE STATUS=SIZE");
	if (s->max_message_size > 0)
		g_string_append_printf(out, " APPENDLIMIT=%" G_GUINT64_FORMAT,
		                       s->max_message_size);
	if (authed)
		return;
	if (s->tls_available && !s->tls)
		g_string_append(out, " STARTTLS");
	g_string_append(out,
	                s->plaintext_ok ? " AUTH=PLAIN" : " LOGINDISABLED");
}

static char *
capabilities(PbImapServer *s)
{
	GString *out = g_string_new(NULL);

	append_capabilities(s, out);
	return g_string_free(out, FALSE);
}

void
pb_imap_append_uid_set(GString *out, const GArray *uids)
{
	guint i = 0;

	while (i < uids->len) {
		guint32 lo = g_array_index(uids, guint32, i), hi = lo;
		while (i + 1 < uids->len &&
		       g_array_index(uids, guint32, i + 1) == hi + 1)
			hi = g_array_index(uids, guint32, ++i);
		i++;
		if (out->len > 0 && out->str[out->len - 1] != ' ')
			g_string_append_c(out, ',');
		if (lo == hi)
			g_string_append_printf(out, "%u", lo);
		else
			g_string_append_printf(out, "%u:%u", lo, hi);
	}
}

/* ------------------------------------------------------------------ */
/* life cycle */

PbImapServer *
pb_imap_server_new(const PbImapHooks *hooks, void *data, PbLineOut *out,
                   const PbImapSettings *settings)
{
	PbImapServer *s = g_new0(PbImapServer, 1);

	s->hooks = hooks;
	s->data = data;
	s->out = out;
	s->hostname =
	    g_strdup(settings->hostname ? settings->hostname : "localhost");
	s->tls = settings->tls_active;
	s->plaintext_ok = settings->plaintext_ok || s->tls;
	s->tls_available = settings->tls_available;
	s->max_message_size = settings->max_message_size;
	s->state = ST_NOT_AUTH;
	s->parser = pb_imap_parser_new();
	return s;
}

static void
append_reset(PbImapServer *s)
{
	g_clear_pointer(&s->append, pb_append_abort);
	g_clear_error(&s->append_error);
	pb_imap_flags_clear(&s->append_flags);
}

void
pb_imap_server_free(PbImapServer *s)
{
	if (s == NULL)
		return;
	append_reset(s);
	g_clear_pointer(&s->folder, pb_mailfolder_close);
	g_clear_pointer(&s->store, pb_mailstore_free);
	pb_imap_parser_free(s->parser);
	g_free(s->hostname);
	g_free(s->sub_tag);
	g_free(s->user);
	g_free(s);
}

void
pb_imap_server_greet(PbImapServer *s)
{
	g_autofree char *caps = capabilities(s);

	pb_imap_reply(s, "* OK [CAPABILITY %s] %s IMAP4rev1 ready.", caps,
	              s->hostname);
}

PbImapAction
pb_imap_server_next_action(PbImapServer *s)
{
	PbImapAction a = s->action;

	if (a == PB_IMAP_CLOSE)
		return a;
	s->action = PB_IMAP_NONE;
	if (s->sub == SUB_IDLE && a != PB_IMAP_AUTH_DELAY)
		return PB_IMAP_IDLE;
	return a;
}

void
pb_imap_server_tls_started(PbImapServer *s)
{
	/* nothing read before the handshake is used (the caller purged
	 * its buffer; a fresh parser forgets any partial command) */
	pb_imap_parser_free(s->parser);
	s->parser = pb_imap_parser_new();
	s->tls = TRUE;
	s->plaintext_ok = TRUE;
}

void
pb_imap_server_timeout(PbImapServer *s)
{
	if (s->state == ST_LOGOUT)
		return;
	pb_imap_reply(s, "* BYE Disconnected for inactivity.");
	close_session(s);
}

const char *
pb_imap_server_user(PbImapServer *s)
{
	return s->state == ST_NOT_AUTH ? NULL : s->user;
}

guint
pb_imap_server_timeout_seconds(PbImapServer *s, guint timeout_auth)
{
	if (s->state == ST_NOT_AUTH)
		return PB_IMAP_TIMEOUT_NOT_AUTH_SECONDS;
	return MAX(timeout_auth, PB_IMAP_TIMEOUT_MIN_AUTH_SECONDS);
}

const char *const *
pb_imap_server_watch_dirs(PbImapServer *s)
{
	if (s->folder == NULL) {
		s->no_dirs[0] = NULL;
		return s->no_dirs;
	}
	return pb_mailfolder_watch_dirs(s->folder);
}

void
pb_imap_server_check(PbImapServer *s, gboolean keepalive)
{
	if (s->sub != SUB_IDLE)
		return;
	if (s->folder != NULL)
		pb_imap_sync(s, TRUE);
	if (keepalive)
		pb_imap_reply(s, "* OK Still here");
	s->action = PB_IMAP_FLUSH;
}

/* ------------------------------------------------------------------ */
/* the selected folder's updates */

static void
append_flag_names(PbImapServer *s, GString *out, gboolean permanent)
{
	const char *const *kw = pb_mailfolder_keyword_names(s->folder);

	g_string_append(out, "(\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	for (guint k = 0; kw[k] != NULL; k++) {
		g_string_append_c(out, ' ');
		g_string_append(out, kw[k]);
	}
	if (permanent)
		g_string_append(out, " \\*");
	g_string_append_c(out, ')');
}

/* FLAGS and PERMANENTFLAGS (SELECT, and when a keyword was added). */
static void
send_flag_lists(PbImapServer *s)
{
	g_autoptr(GString) out = g_string_new("* FLAGS ");
	const char *const *kw = pb_mailfolder_keyword_names(s->folder);

	append_flag_names(s, out, FALSE);
	g_string_append(out, "\r\n* OK [PERMANENTFLAGS ");
	if (pb_mailfolder_read_only(s->folder))
		g_string_append(out, "()");
	else
		append_flag_names(s, out, TRUE);
	g_string_append(out, "] Flags permitted.\r\n");
	pb_imap_write(s, out);
	s->keywords_sent = g_strv_length((char **)kw);
}

void
pb_imap_announce_keywords(PbImapServer *s)
{
	if (g_strv_length((char **)pb_mailfolder_keyword_names(s->folder)) !=
	    s->keywords_sent)
		send_flag_lists(s);
}

void
pb_imap_append_flags(PbImapServer *s, GString *out, guint i)
{
	static const struct {
		guint bit;
		const char *name;
	} sys[] = {
	    {PB_MSG_ANSWERED, "\\Answered"}, {PB_MSG_FLAGGED, "\\Flagged"},
	    {PB_MSG_DELETED, "\\Deleted"},   {PB_MSG_SEEN, "\\Seen"},
	    {PB_MSG_DRAFT, "\\Draft"},       {PB_MSG_RECENT, "\\Recent"}};
	guint flags = pb_mailfolder_flags(s->folder, i);
	guint32 kws = pb_mailfolder_keywords(s->folder, i);
	gsize start = out->len;

	g_string_append_c(out, '(');
	for (guint k = 0; k < G_N_ELEMENTS(sys); k++)
		if (flags & sys[k].bit) {
			if (out->len > start + 1)
				g_string_append_c(out, ' ');
			g_string_append(out, sys[k].name);
		}
	/* bit K is named by dovecot-keywords' line K, which may have gaps:
	 * never by the rank in pb_mailfolder_keyword_names() */
	for (guint k = 0; k < 32; k++) {
		const char *name =
		    (kws & (1u << k)) ? pb_mailfolder_keyword_name(s->folder, k)
		                      : NULL;
		if (name == NULL)
			continue;
		if (out->len > start + 1)
			g_string_append_c(out, ' ');
		g_string_append(out, name);
	}
	g_string_append_c(out, ')');
}

void
pb_imap_send_flags(PbImapServer *s, guint i, gboolean with_uid)
{
	g_autoptr(GString) out = g_string_new(NULL);

	g_string_printf(out, "* %u FETCH (", i + 1);
	if (with_uid)
		g_string_append_printf(out, "UID %u ",
		                       pb_mailfolder_uid(s->folder, i));
	g_string_append(out, "FLAGS ");
	pb_imap_append_flags(s, out, i);
	g_string_append(out, ")\r\n");
	pb_imap_write(s, out);
}

static void
send_changes(PbImapServer *s, const PbFolderChanges *ch)
{
	guint count = pb_mailfolder_count(s->folder);

	for (guint k = 0; ch->expunged && k < ch->expunged->len; k++) {
		pb_imap_reply(s, "* %u EXPUNGE",
		              g_array_index(ch->expunged, guint, k));
		if (s->exists_sent > 0)
			s->exists_sent--;
	}
	if (ch->keywords_grew)
		send_flag_lists(s);
	else
		pb_imap_announce_keywords(s);
	/* RECENT goes with EXISTS (new messages), as Dovecot sends it; an
	 * expunge lowers it without a word (the client counts) */
	if (count != s->exists_sent) {
		pb_imap_reply(s, "* %u EXISTS", count);
		s->exists_sent = count;
		if (pb_mailfolder_recent_count(s->folder) != s->recent_sent)
			pb_imap_reply(s, "* %u RECENT",
			              pb_mailfolder_recent_count(s->folder));
	}
	s->recent_sent = pb_mailfolder_recent_count(s->folder);
	for (guint k = 0; ch->changed && k < ch->changed->len; k++) {
		guint i = g_array_index(ch->changed, guint, k);
		if (i < count)
			pb_imap_send_flags(s, i, FALSE);
	}
}

void
pb_imap_sync(PbImapServer *s, gboolean allow_expunge)
{
	g_auto(PbFolderChanges) ch;
	g_autoptr(GError) error = NULL;

	pb_folder_changes_init(&ch);
	if (!pb_mailfolder_sync(s->folder,
	                        allow_expunge ? 0 : PB_SYNC_NO_EXPUNGE, &ch,
	                        &error)) {
		log_line(s, "sync user=%s folder=%s: %s", s->user,
		         pb_mailfolder_name(s->folder), error->message);
		return;
	}
	send_changes(s, &ch);
}

/* ------------------------------------------------------------------ */
/* message sets */

static void
add_range(GArray *ranges, guint first, guint last)
{
	PbMsgRange r = {first, last};

	g_array_append_val(ranges, r);
}

/* A UID set: "*" is the highest UID in the folder; numbers are not
 * clamped (UID 100 of a folder whose last UID is 3 is no message, but
 * 5:* there is 3:5). The set is resolved first (sorted, merged), so each
 * message is in at most one range however the ranges overlap, and the
 * ranges ascend. Each range maps to the indexes of the UIDs in it. */
static GArray *
uid_ranges(PbImapServer *s, const PbImapSeqSet *set)
{
	GArray *ranges = g_array_new(FALSE, FALSE, sizeof(PbMsgRange));
	guint count = pb_mailfolder_count(s->folder);
	guint32 last = count ? pb_mailfolder_uid(s->folder, count - 1) : 0;
	PbImapSeqSet stars = {g_new(PbImapRange, MAX(set->n, 1)), set->n};
	g_autoptr(PbImapSeqSet) resolved = NULL;

	for (guint k = 0; k < set->n; k++) {
		stars.ranges[k].lo =
		    set->ranges[k].lo ? set->ranges[k].lo : last;
		stars.ranges[k].hi =
		    set->ranges[k].hi ? set->ranges[k].hi : last;
	}
	resolved = pb_imap_seqset_resolve(&stars, count ? G_MAXUINT32 : 0);
	g_free(stars.ranges);
	for (guint k = 0; k < resolved->n; k++) {
		guint first, end;

		pb_mailfolder_find_uid(s->folder, resolved->ranges[k].lo,
		                       &first);
		if (pb_mailfolder_find_uid(s->folder, resolved->ranges[k].hi,
		                           &end))
			end++;
		if (first < end)
			add_range(ranges, first, end - 1);
	}
	return ranges;
}

gboolean
pb_imap_message_ranges(PbImapServer *s, const char *tag, const PbImapArg *arg,
                       gboolean uid, GArray **ranges)
{
	g_autoptr(PbImapSeqSet) set = NULL;
	g_autoptr(PbImapSeqSet) resolved = NULL;
	g_autoptr(GError) error = NULL;
	guint count = pb_mailfolder_count(s->folder);

	if (!pb_imap_arg_seqset(arg, &set, &error)) {
		pb_imap_bad(s, tag, error->message);
		return FALSE;
	}
	if (uid) {
		*ranges = uid_ranges(s, set);
		return TRUE;
	}
	if (pb_imap_seqset_max(set) > count) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command: Invalid messageset");
		return FALSE;
	}
	resolved = pb_imap_seqset_resolve(set, count);
	*ranges = g_array_new(FALSE, FALSE, sizeof(PbMsgRange));
	for (guint k = 0; k < resolved->n; k++)
		add_range(*ranges, resolved->ranges[k].lo - 1,
		          resolved->ranges[k].hi - 1);
	return TRUE;
}

/* ------------------------------------------------------------------ */
/* NOT AUTHENTICATED */

typedef struct {
	const char *name;
	guint states;
	void (*run)(PbImapServer *s, const char *tag, const PbImapArg *args,
	            guint n);
} Command;

static gboolean
no_args(PbImapServer *s, const char *tag, guint n)
{
	if (n == 0)
		return TRUE;
	pb_imap_bad(s, tag, "Error in IMAP command: Unexpected arguments.");
	return FALSE;
}

static void
cmd_capability(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	g_autofree char *caps = NULL;

	if (!no_args(s, tag, n))
		return;
	caps = capabilities(s);
	pb_imap_reply(s, "* CAPABILITY %s", caps);
	pb_imap_ok(s, tag, "Capability completed.");
}

static void
cmd_noop(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	if (no_args(s, tag, n))
		pb_imap_ok(s, tag, "NOOP completed.");
}

static void
cmd_logout(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	if (!no_args(s, tag, n))
		return;
	pb_imap_reply(s, "* BYE Logging out");
	pb_imap_reply(s, "%s OK Logout completed.", tag);
	close_session(s);
}

static void
cmd_starttls(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	if (!no_args(s, tag, n))
		return;
	if (s->tls) {
		pb_imap_bad(s, tag, "TLS is already active.");
		return;
	}
	if (!s->tls_available) {
		pb_imap_bad(s, tag, "TLS support isn't enabled.");
		return;
	}
	pb_imap_reply(s, "%s OK Begin TLS negotiation now.", tag);
	s->action = PB_IMAP_STARTTLS;
}

static void
cmd_id(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	/* RFC 2971: NIL or a list of field/value pairs, which we ignore */
	if (n != 1 || (args[0].type != PB_IMAP_ARG_NIL &&
	               args[0].type != PB_IMAP_ARG_LIST)) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command ID: Invalid arguments.");
		return;
	}
	pb_imap_reply(s, "* ID (\"name\" \"pillarbox\")");
	pb_imap_ok(s, tag, "ID completed.");
}

static void
cmd_enable(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	/* RFC 5161: we offer nothing that needs enabling (no CONDSTORE,
	 * no UTF8=ACCEPT), so every name is ignored */
	if (n == 0) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command ENABLE: "
		            "Missing arguments.");
		return;
	}
	for (guint k = 0; k < n; k++)
		if (args[k].type != PB_IMAP_ARG_ATOM) {
			pb_imap_bad(s, tag,
			            "Error in IMAP command ENABLE: "
			            "Invalid arguments.");
			return;
		}
	pb_imap_reply(s, "* ENABLED");
	pb_imap_ok(s, tag, "Enabled.");
}

static void
cmd_namespace(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	if (!no_args(s, tag, n))
		return;
	pb_imap_reply(s, "* NAMESPACE ((\"\" \".\")) NIL NIL");
	pb_imap_ok(s, tag, "Namespace completed.");
}

/* Every failed login, whatever the reason, gets this one reply and the
 * socket side's pause: an unknown user looks like a wrong password. */
static void
login_failed(PbImapServer *s, const char *tag)
{
	pb_imap_reply(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed.",
	              tag);
	s->action = PB_IMAP_AUTH_DELAY;
	if (++s->auth_failures >= PB_IMAP_MAX_AUTH_FAILURES) {
		pb_imap_reply(s, "* BYE Too many invalid authentication "
		                 "attempts.");
		close_session(s);
	}
}

static gboolean
open_store(PbImapServer *s, const char *tag, const char *user)
{
	g_autofree char *maildir = NULL;
	g_autoptr(GError) error = NULL;

	switch (s->hooks->open_account(s->data, user, &maildir)) {
	case PB_IMAP_ACCOUNT_LIMIT:
		pb_imap_reply(s,
		              "%s NO [LIMIT] Too many connections of this "
		              "user, try later.",
		              tag);
		return FALSE;
	case PB_IMAP_ACCOUNT_FAILED:
		pb_imap_reply(s,
		              "%s NO [UNAVAILABLE] Mailbox not available, "
		              "try later.",
		              tag);
		return FALSE;
	case PB_IMAP_ACCOUNT_OK:
		break;
	}
	s->store = pb_mailstore_open(maildir, &error);
	if (s->store == NULL ||
	    !pb_mailstore_ensure_special(s->store, &error)) {
		log_line(s, "mailbox user=%s: %s", user, error->message);
		g_clear_pointer(&s->store, pb_mailstore_free);
		pb_imap_reply(s,
		              "%s NO [UNAVAILABLE] Mailbox not available, "
		              "try later.",
		              tag);
		return FALSE;
	}
	return TRUE;
}

static void
login(PbImapServer *s, const char *tag, const char *user, const char *pass)
{
	g_autofree char *caps = NULL;

	if (s->hooks->blocked != NULL && s->hooks->blocked(s->data)) {
		pb_imap_reply(s,
		              "%s NO [UNAVAILABLE] Too many failed logins, "
		              "try later.",
		              tag);
		pb_imap_reply(s, "* BYE Too many failed logins.");
		close_session(s);
		return;
	}
	if (*user == '\0' || !s->hooks->authenticate(s->data, user, pass)) {
		login_failed(s, tag);
		return;
	}
	if (!open_store(s, tag, user))
		return;
	g_free(s->user);
	s->user = g_strdup(user);
	s->state = ST_AUTH;
	pb_imap_parser_set_authenticated(s->parser, TRUE);
	caps = capabilities(s);
	pb_imap_reply(s, "%s OK [CAPABILITY %s] Logged in", tag, caps);
}

static gboolean
plaintext_allowed(PbImapServer *s, const char *tag)
{
	if (s->plaintext_ok)
		return TRUE;
	pb_imap_reply(s,
	              "%s NO [PRIVACYREQUIRED] Plaintext authentication "
	              "disallowed on non-secure (SSL/TLS) connections.",
	              tag);
	return FALSE;
}

static void
cmd_login(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	const char *user, *pass;
	gsize ulen, plen;

	if (n != 2 || !pb_imap_arg_astring(&args[0], &user, &ulen) ||
	    !pb_imap_arg_astring(&args[1], &pass, &plen)) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command LOGIN: "
		            "Invalid arguments.");
		return;
	}
	if (plaintext_allowed(s, tag))
		login(s, tag, user, pass);
}

/* RFC 4616: [authzid] NUL authcid NUL passwd, in base64 ("=" is empty,
 * RFC 4959). */
static void
auth_plain(PbImapServer *s, const char *tag, const char *b64)
{
	gsize len = 0;
	g_autofree guchar *raw = NULL;
	const char *authz, *authc, *pass, *end;

	if (g_str_equal(b64, "*")) {
		pb_imap_bad(s, tag, "Authentication aborted by client.");
		return;
	}
	if (!g_str_equal(b64, "=") && *b64 != '\0')
		raw = g_base64_decode(b64, &len);
	raw = g_realloc(raw, len + 1);
	raw[len] = '\0';
	end = (const char *)raw + len;
	authz = (const char *)raw;
	authc = memchr(raw, '\0', len) ? authz + strlen(authz) + 1 : NULL;
	if (authc == NULL || authc >= end ||
	    (pass = authc + strlen(authc) + 1) > end) {
		memset(raw, 0, len);
		login_failed(s, tag);
		return;
	}
	/* acting for another user (an authzid) is not supported */
	if (*authz && strcmp(authz, authc) != 0)
		login_failed(s, tag);
	else
		login(s, tag, authc, pass);
	memset(raw, 0, len);
}

static void
cmd_authenticate(PbImapServer *s, const char *tag, const PbImapArg *args,
                 guint n)
{
	if (n < 1 || n > 2 || args[0].type != PB_IMAP_ARG_ATOM ||
	    (n == 2 && args[1].type != PB_IMAP_ARG_ATOM)) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command AUTHENTICATE: "
		            "Invalid arguments.");
		return;
	}
	if (g_ascii_strcasecmp(args[0].str, "PLAIN") != 0) {
		pb_imap_reply(s, "%s NO Unsupported authentication mechanism.",
		              tag);
		return;
	}
	if (!plaintext_allowed(s, tag))
		return;
	if (n == 2) { /* SASL-IR */
		auth_plain(s, tag, args[1].str);
		return;
	}
	g_free(s->sub_tag);
	s->sub_tag = g_strdup(tag);
	s->sub = SUB_AUTHENTICATE;
	pb_imap_parser_expect_line(s->parser);
	pb_imap_reply(s, "+ ");
	s->action = PB_IMAP_FLUSH;
}

/* ------------------------------------------------------------------ */
/* AUTHENTICATED: mailboxes */

/* A mailbox argument, checked and canonical; BAD/NO replied when not. */
static char *
mailbox_arg(PbImapServer *s, const char *tag, const PbImapArg *arg)
{
	g_autofree char *name = NULL;
	g_autoptr(GError) error = NULL;

	if (!pb_imap_arg_mailbox(arg, &name, &error)) {
		pb_imap_bad(s, tag, error->message);
		return NULL;
	}
	if (!pb_mailfolder_name_check(name, &error)) {
		pb_imap_no_error(s, tag, error);
		return NULL;
	}
	return pb_mailfolder_name_canon(name);
}

static void
close_folder(PbImapServer *s)
{
	g_clear_pointer(&s->folder, pb_mailfolder_close);
	s->state = ST_AUTH;
	s->exists_sent = s->recent_sent = s->keywords_sent = 0;
}

static void
send_select(PbImapServer *s)
{
	guint count = pb_mailfolder_count(s->folder);

	send_flag_lists(s);
	pb_imap_reply(s, "* %u EXISTS", count);
	pb_imap_reply(s, "* %u RECENT", pb_mailfolder_recent_count(s->folder));
	s->exists_sent = count;
	s->recent_sent = pb_mailfolder_recent_count(s->folder);
	for (guint i = 0; i < count; i++)
		if (!(pb_mailfolder_flags(s->folder, i) & PB_MSG_SEEN)) {
			pb_imap_reply(s, "* OK [UNSEEN %u] First unseen.",
			              i + 1);
			break;
		}
	pb_imap_reply(s, "* OK [UIDVALIDITY %u] UIDs valid",
	              pb_mailfolder_uidvalidity(s->folder));
	pb_imap_reply(s, "* OK [UIDNEXT %u] Predicted next UID",
	              pb_mailfolder_uidnext(s->folder));
}

static void
select_folder(PbImapServer *s, const char *tag, const PbImapArg *args, guint n,
              gboolean read_only)
{
	g_autofree char *name = NULL;
	g_autoptr(GError) error = NULL;

	if (n != 1) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command SELECT: "
		            "Invalid arguments.");
		return;
	}
	/* RFC 3501 6.3.1: a failed SELECT leaves no folder selected;
	 * RFC 9051 7.1: [CLOSED] marks where the old folder's updates end */
	if (s->folder != NULL) {
		close_folder(s);
		pb_imap_reply(s, "* OK [CLOSED] Previous mailbox closed.");
	}
	if ((name = mailbox_arg(s, tag, &args[0])) == NULL)
		return;
	s->folder = pb_mailfolder_open(s->store, name, read_only, &error);
	if (s->folder == NULL) {
		pb_imap_no_error(s, tag, error);
		return;
	}
	s->state = ST_SELECTED;
	send_select(s);
	pb_imap_reply(s, "%s OK [%s] %s completed.", tag,
	              read_only ? "READ-ONLY" : "READ-WRITE",
	              read_only ? "Examine" : "Select");
}

static void
cmd_select(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	select_folder(s, tag, args, n, FALSE);
}

static void
cmd_examine(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	select_folder(s, tag, args, n, TRUE);
}

static void
cmd_create(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	g_autofree char *raw = NULL, *name = NULL;
	g_autoptr(GError) error = NULL;
	gsize len;

	if (n != 1 || !pb_imap_arg_mailbox(&args[0], &raw, &error)) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command CREATE: "
		            "Invalid arguments.");
		return;
	}
	/* RFC 3501 6.3.3: a trailing separator says a folder with children
	 * is meant; Maildir++ folders hold both, so it is dropped */
	len = strlen(raw);
	if (len > 1 && raw[len - 1] == '.')
		raw[len - 1] = '\0';
	if (!pb_mailfolder_name_check(raw, &error)) {
		pb_imap_no_error(s, tag, error);
		return;
	}
	name = pb_mailfolder_name_canon(raw);
	if (!pb_mailstore_create(s->store, name, &error))
		pb_imap_no_error(s, tag, error);
	else
		pb_imap_ok(s, tag, "Create completed.");
}

static void
cmd_delete(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	g_autofree char *name = NULL;
	g_autoptr(GError) error = NULL;

	if (n != 1) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command DELETE: "
		            "Invalid arguments.");
		return;
	}
	if ((name = mailbox_arg(s, tag, &args[0])) == NULL)
		return;
	if (s->folder != NULL &&
	    g_str_equal(pb_mailfolder_name(s->folder), name)) {
		/* deleting the selected folder unselects it (Dovecot
		 * disconnects instead) */
		close_folder(s);
		pb_imap_reply(s, "* OK [CLOSED] Selected mailbox was "
		                 "deleted.");
	}
	if (!pb_mailstore_delete(s->store, name, &error))
		pb_imap_no_error(s, tag, error);
	else
		pb_imap_ok(s, tag, "Delete completed.");
}

static void
cmd_rename(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	g_autofree char *from = NULL, *to = NULL;
	g_autoptr(GError) error = NULL;

	if (n != 2) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command RENAME: "
		            "Invalid arguments.");
		return;
	}
	if ((from = mailbox_arg(s, tag, &args[0])) == NULL ||
	    (to = mailbox_arg(s, tag, &args[1])) == NULL)
		return;
	if (!pb_mailstore_rename(s->store, from, to, &error))
		pb_imap_no_error(s, tag, error);
	else
		pb_imap_ok(s, tag, "Rename completed.");
}

static void
subscribe(PbImapServer *s, const char *tag, const PbImapArg *args, guint n,
          gboolean on)
{
	g_autofree char *name = NULL;
	g_autoptr(GError) error = NULL;

	if (n != 1) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command SUBSCRIBE: "
		            "Invalid arguments.");
		return;
	}
	if ((name = mailbox_arg(s, tag, &args[0])) == NULL)
		return;
	if (!pb_mailstore_subscribe(s->store, name, on, &error))
		pb_imap_no_error(s, tag, error);
	else
		pb_imap_ok(s, tag, "%s completed.",
		           on ? "Subscribe" : "Unsubscribe");
}

static void
cmd_subscribe(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	subscribe(s, tag, args, n, TRUE);
}

static void
cmd_unsubscribe(PbImapServer *s, const char *tag, const PbImapArg *args,
                guint n)
{
	subscribe(s, tag, args, n, FALSE);
}

static void
append_status_items(GString *out, guint items, const PbFolderStatus *st)
{
	gsize start = out->len;

#define ITEM(bit, fmt, val)                                                    \
	if (items & (bit)) {                                                   \
		if (out->len > start)                                          \
			g_string_append_c(out, ' ');                           \
		g_string_append_printf(out, fmt, val);                         \
	}
	ITEM(PB_IMAP_STATUS_MESSAGES, "MESSAGES %u", st->messages);
	ITEM(PB_IMAP_STATUS_RECENT, "RECENT %u", st->recent);
	ITEM(PB_IMAP_STATUS_UIDNEXT, "UIDNEXT %u", st->uidnext);
	ITEM(PB_IMAP_STATUS_UIDVALIDITY, "UIDVALIDITY %u", st->uidvalidity);
	ITEM(PB_IMAP_STATUS_UNSEEN, "UNSEEN %u", st->unseen);
	ITEM(PB_IMAP_STATUS_SIZE, "SIZE %" G_GUINT64_FORMAT, st->size);
#undef ITEM
}

/* "* STATUS name (items)"; FALSE with ERROR when it cannot be read. */
static gboolean
send_status(PbImapServer *s, const char *name, guint items, GError **error)
{
	PbFolderStatus st = {0};
	g_autoptr(GString) out = g_string_new("* STATUS ");

	if (!pb_mailstore_status(s->store, name, &st, error))
		return FALSE;
	pb_imap_append_string(out, name, strlen(name));
	g_string_append(out, " (");
	append_status_items(out, items, &st);
	g_string_append(out, ")\r\n");
	pb_imap_write(s, out);
	return TRUE;
}

static void
cmd_status(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	g_autofree char *name = NULL;
	g_autoptr(GError) error = NULL;
	guint items;

	if (n != 2) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command STATUS: "
		            "Invalid arguments.");
		return;
	}
	if (!pb_imap_arg_status_items(&args[1], &items, &error)) {
		pb_imap_bad(s, tag, error->message);
		return;
	}
	if ((name = mailbox_arg(s, tag, &args[0])) == NULL)
		return;
	if (!send_status(s, name, items, &error))
		pb_imap_no_error(s, tag, error);
	else
		pb_imap_ok(s, tag, "Status completed.");
}

/* ------------------------------------------------------------------ */
/* LIST, LSUB */

static void
append_list_attrs(GString *out, guint attrs, guint ret, gboolean extended,
                  gboolean lsub)
{
	static const struct {
		guint bit;
		const char *name;
	} special[] = {{PB_FOLDER_DRAFTS, "\\Drafts"},
	               {PB_FOLDER_SENT, "\\Sent"},
	               {PB_FOLDER_TRASH, "\\Trash"},
	               {PB_FOLDER_JUNK, "\\Junk"},
	               {PB_FOLDER_ARCHIVE, "\\Archive"}};
	GPtrArray *names = g_ptr_array_new();

	if (attrs & PB_FOLDER_NONEXISTENT)
		g_ptr_array_add(names,
		                extended ? "\\NonExistent" : "\\Noselect");
	if (!lsub && (attrs & PB_FOLDER_SUBSCRIBED) &&
	    (ret & PB_IMAP_LIST_RET_SUBSCRIBED))
		g_ptr_array_add(names, "\\Subscribed");
	if (!lsub && (attrs & PB_FOLDER_HAS_CHILDREN))
		g_ptr_array_add(names, "\\HasChildren");
	if (!lsub && (attrs & PB_FOLDER_HAS_NO_CHILDREN))
		g_ptr_array_add(names, "\\HasNoChildren");
	for (guint k = 0; !lsub && k < G_N_ELEMENTS(special); k++)
		if (attrs & special[k].bit)
			g_ptr_array_add(names, (char *)special[k].name);
	g_string_append_c(out, '(');
	for (guint k = 0; k < names->len; k++) {
		if (k > 0)
			g_string_append_c(out, ' ');
		g_string_append(out, g_ptr_array_index(names, k));
	}
	g_string_append_c(out, ')');
	g_ptr_array_free(names, TRUE);
}

static gboolean
list_matches(const PbImapList *list, const char *name)
{
	for (guint k = 0; list->patterns[k] != NULL; k++) {
		g_autofree char *full =
		    g_strconcat(list->reference, list->patterns[k], NULL);
		if (pb_imap_list_match(full, name, '.'))
			return TRUE;
	}
	return FALSE;
}

/* Whether folder FI is listed, given the selection options. */
static gboolean
list_selected(const PbImapList *list, const PbFolderInfo *fi, gboolean lsub)
{
	guint special = PB_FOLDER_DRAFTS | PB_FOLDER_SENT | PB_FOLDER_TRASH |
	                PB_FOLDER_JUNK | PB_FOLDER_ARCHIVE;

	if (lsub || (list->select & PB_IMAP_LIST_SEL_SUBSCRIBED))
		return (fi->attrs & PB_FOLDER_SUBSCRIBED) != 0;
	if ((list->select & PB_IMAP_LIST_SEL_SPECIAL_USE) &&
	    !(fi->attrs & special))
		return FALSE;
	/* a subscribed name that exists neither as a folder nor as a
	 * parent: only for a subscription listing */
	if ((fi->attrs & PB_FOLDER_NONEXISTENT) &&
	    !(fi->attrs & PB_FOLDER_HAS_CHILDREN))
		return FALSE;
	return TRUE;
}

static void
list_one(PbImapServer *s, const PbImapList *list, const PbFolderInfo *fi,
         gboolean lsub, gboolean childinfo)
{
	g_autoptr(GString) out = g_string_new(lsub ? "* LSUB " : "* LIST ");
	g_autoptr(GError) error = NULL;
	guint ret = list->ret;

	if (list->select & PB_IMAP_LIST_SEL_SUBSCRIBED)
		ret |= PB_IMAP_LIST_RET_SUBSCRIBED;
	append_list_attrs(out, fi->attrs, ret, list->extended, lsub);
	g_string_append(out, " \".\" ");
	pb_imap_append_string(out, fi->name, strlen(fi->name));
	if (childinfo)
		g_string_append(out, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
	g_string_append(out, "\r\n");
	pb_imap_write(s, out);
	if ((list->ret & PB_IMAP_LIST_RET_STATUS) &&
	    !(fi->attrs & PB_FOLDER_NONEXISTENT) &&
	    !send_status(s, fi->name, list->status_items, &error))
		log_line(s, "status user=%s folder=%s: %s", s->user, fi->name,
		         error->message);
}

static gboolean
list_subscribed(const GPtrArray *folders, const char *name)
{
	for (guint k = 0; k < folders->len; k++) {
		const PbFolderInfo *fi = g_ptr_array_index(folders, k);
		if (g_str_equal(fi->name, name))
			return (fi->attrs & PB_FOLDER_SUBSCRIBED) != 0;
	}
	return FALSE;
}

/* Is a folder below NAME subscribed? (RFC 5258 CHILDINFO) */
static gboolean
subscribed_below(const GPtrArray *folders, const char *name)
{
	gsize len = strlen(name);

	for (guint k = 0; k < folders->len; k++) {
		const PbFolderInfo *fi = g_ptr_array_index(folders, k);
		if ((fi->attrs & PB_FOLDER_SUBSCRIBED) &&
		    strncmp(fi->name, name, len) == 0 && fi->name[len] == '.')
			return TRUE;
	}
	return FALSE;
}

/* RFC 3501 6.3.9: when "%" stops above a subscribed folder, its
 * unsubscribed ancestor at that level is listed as \Noselect. */
static void
lsub_parents(PbImapServer *s, const PbImapList *list, const GPtrArray *folders)
{
	g_autoptr(GHashTable) sent =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

	for (guint k = 0; k < folders->len; k++) {
		const PbFolderInfo *fi = g_ptr_array_index(folders, k);
		g_autofree char *name = g_strdup(fi->name);
		char *dot;

		if (!(fi->attrs & PB_FOLDER_SUBSCRIBED) ||
		    list_matches(list, fi->name))
			continue;
		while ((dot = strrchr(name, '.')) != NULL) {
			*dot = '\0';
			if (list_matches(list, name) &&
			    !list_subscribed(folders, name) &&
			    !g_hash_table_contains(sent, name)) {
				g_hash_table_add(sent, g_strdup(name));
				g_autoptr(GString) out =
				    g_string_new("* LSUB (\\Noselect) \".\" ");
				pb_imap_append_string(out, name, strlen(name));
				g_string_append(out, "\r\n");
				pb_imap_write(s, out);
			}
		}
	}
}

static void
list_run(PbImapServer *s, const char *tag, const PbImapArg *args, guint n,
         gboolean lsub)
{
	g_autoptr(PbImapList) list = NULL;
	g_autoptr(GPtrArray) folders = NULL;
	g_autoptr(GError) error = NULL;
	gboolean subs;

	if (!pb_imap_args_list(args, n, &list, &error)) {
		pb_imap_bad(s, tag, error->message);
		return;
	}
	if (lsub && list->extended) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command LSUB: "
		            "Invalid arguments.");
		return;
	}
	/* RFC 3501 6.3.8: an empty pattern asks for the separator */
	if (!list->extended && list->patterns[1] == NULL &&
	    list->patterns[0][0] == '\0') {
		if (!lsub)
			pb_imap_reply(s, "* LIST (\\Noselect) \".\" \"\"");
		pb_imap_ok(s, tag, "%s completed.", lsub ? "Lsub" : "List");
		return;
	}
	subs = lsub || (list->select & PB_IMAP_LIST_SEL_SUBSCRIBED) ||
	       (list->ret & PB_IMAP_LIST_RET_SUBSCRIBED);
	folders = pb_mailstore_list(s->store, subs, &error);
	if (folders == NULL) {
		pb_imap_no_error(s, tag, error);
		return;
	}
	for (guint k = 0; k < folders->len; k++) {
		const PbFolderInfo *fi = g_ptr_array_index(folders, k);
		if (!list_matches(list, fi->name))
			continue;
		if (list_selected(list, fi, lsub))
			list_one(s, list, fi, lsub, FALSE);
		else if ((list->select & PB_IMAP_LIST_SEL_RECURSIVEMATCH) &&
		         subscribed_below(folders, fi->name))
			list_one(s, list, fi, FALSE, TRUE);
	}
	if (lsub)
		lsub_parents(s, list, folders);
	pb_imap_ok(s, tag, "%s completed.", lsub ? "Lsub" : "List");
}

static void
cmd_list(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	list_run(s, tag, args, n, FALSE);
}

static void
cmd_lsub(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	list_run(s, tag, args, n, TRUE);
}

/* ------------------------------------------------------------------ */
/* APPEND: the message literal streams into the folder */

guint
pb_imap_msg_flags(guint imap_flags)
{
	guint f = 0;

	if (imap_flags & PB_IMAP_FLAG_SEEN)
		f |= PB_MSG_SEEN;
	if (imap_flags & PB_IMAP_FLAG_ANSWERED)
		f |= PB_MSG_ANSWERED;
	if (imap_flags & PB_IMAP_FLAG_FLAGGED)
		f |= PB_MSG_FLAGGED;
	if (imap_flags & PB_IMAP_FLAG_DELETED)
		f |= PB_MSG_DELETED;
	if (imap_flags & PB_IMAP_FLAG_DRAFT)
		f |= PB_MSG_DRAFT;
	return f;
}

/* APPEND's literal announced is refused: the client gets "TAG TEXT"
 * (a {N} one, or a {N+} one of at most max_message_size, whose octets
 * the parser discards, RFC 7888 4) or BYE (a larger {N+}). TEXT is
 * "NO ..." or "BAD ...". */
static void
refuse_literal(PbImapServer *s, const char *tag_arg, const char *text)
{
	/* the refusal frees the command the tag may belong to */
	g_autofree char *tag = g_strdup(tag_arg);
	guint64 max =
	    s->max_message_size > 0 ? s->max_message_size : G_MAXUINT32;

	if (pb_imap_parser_literal_skip(s->parser, max) ==
	    PB_IMAP_LITERAL_CLOSE) {
		/* "NO [TOOBIG] text" becomes "* BYE [TOOBIG] text" */
		pb_imap_reply(s, "* BYE %s", strchr(text, ' ') + 1);
		close_session(s);
		return;
	}
	pb_imap_reply(s, "%s %s", tag, text);
}

static void
literal_go_ahead(PbImapServer *s, PbImapLiteralReply r, const char *tag)
{
	switch (r) {
	case PB_IMAP_LITERAL_SEND_PLUS:
		pb_imap_reply(s, "+ OK");
		s->action = PB_IMAP_FLUSH;
		break;
	case PB_IMAP_LITERAL_FEED:
		break;
	case PB_IMAP_LITERAL_REFUSED:
		pb_imap_bad(s, tag,
		            "Error in IMAP command: Too long argument.");
		break;
	case PB_IMAP_LITERAL_CLOSE:
		pb_imap_reply(s, "* BYE Too long argument.");
		close_session(s);
		break;
	}
}

/* Checks APPEND's arguments before its message literal and opens the
 * file it goes to. FALSE when the literal was refused. */
static gboolean
append_begin(PbImapServer *s, const PbImapCommand *cmd, guint64 size)
{
	g_autofree char *name = NULL;
	g_autoptr(GError) error = NULL;
	gboolean has_date = FALSE;

	append_reset(s);
	s->append_date = -1;
	if (!pb_imap_arg_mailbox(&cmd->args[0], &name, &error) ||
	    !pb_imap_args_append(cmd->args + 1, cmd->n_args - 1,
	                         &s->append_flags, &has_date, &s->append_date,
	                         &error)) {
		g_autofree char *text =
		    g_strdup_printf("BAD %s", error->message);
		refuse_literal(s, cmd->tag, text);
		return FALSE;
	}
	if (!has_date)
		s->append_date = -1;
	if (s->max_message_size > 0 && size > s->max_message_size) {
		refuse_literal(s, cmd->tag, "NO [TOOBIG] Mail too big.");
		return FALSE;
	}
	if (!pb_mailfolder_name_check(name, &error)) {
		g_autofree char *text =
		    g_strdup_printf("NO [CANNOT] %s", error->message);
		refuse_literal(s, cmd->tag, text);
		return FALSE;
	}
	g_autofree char *canon = pb_mailfolder_name_canon(name);
	s->append =
	    pb_append_begin(s->store, canon, s->max_message_size, &error);
	if (s->append == NULL) {
		refuse_literal(s, cmd->tag,
		               g_error_matches(error, PB_MAILFOLDER_ERROR,
		                               PB_MAILFOLDER_ERROR_NONEXISTENT)
		                   ? "NO [TRYCREATE] Mailbox doesn't exist."
		                   : "NO [SERVERBUG] Cannot append now.");
		return FALSE;
	}
	return TRUE;
}

static void
literal_event(PbImapServer *s)
{
	const PbImapCommand *cmd = pb_imap_parser_command(s->parser);
	/* a copy: accepting or refusing may free the command */
	g_autofree char *tag = g_strdup(cmd && cmd->tag ? cmd->tag : "*");
	guint64 size;
	gboolean sync, literal8;
	guint depth;

	pb_imap_parser_literal(s->parser, &size, &sync, &literal8, &depth);
	if (cmd != NULL && cmd->name != NULL && depth == 0 &&
	    cmd->n_args >= 1 && (s->state & (ST_AUTH | ST_SELECTED)) &&
	    g_ascii_strcasecmp(cmd->name, "APPEND") == 0) {
		if (s->sub == SUB_APPEND) {
			/* MULTIAPPEND is not offered */
			refuse_literal(s, tag,
			               "BAD Error in IMAP command "
			               "APPEND: Invalid arguments.");
			append_reset(s);
			s->sub = SUB_NONE;
			return;
		}
		if (!append_begin(s, cmd, size))
			return;
		s->sub = SUB_APPEND;
		literal_go_ahead(s, pb_imap_parser_literal_stream(s->parser),
		                 tag);
		return;
	}
	literal_go_ahead(s, pb_imap_parser_literal_accept(s->parser), tag);
}

static void
stream_event(PbImapServer *s, const char *buf, gsize len)
{
	if (s->append == NULL || s->append_error != NULL)
		return;
	if (!pb_append_write(s->append, buf, len, &s->append_error))
		g_clear_pointer(&s->append, pb_append_abort);
}

static void
append_commit(PbImapServer *s, const char *tag)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) kws = g_ptr_array_new();
	PbAppend *a = g_steal_pointer(&s->append);
	guint32 uidvalidity = 0, uid = 0;

	for (guint k = 0;
	     s->append_flags.keywords && k < s->append_flags.keywords->len; k++)
		g_ptr_array_add(kws,
		                g_ptr_array_index(s->append_flags.keywords, k));
	g_ptr_array_add(kws, NULL);
	if (!pb_append_commit(a, pb_imap_msg_flags(s->append_flags.system),
	                      (const char *const *)kws->pdata, s->append_date,
	                      &uidvalidity, &uid, &error)) {
		pb_imap_no_error(s, tag, error);
		return;
	}
	pb_imap_ok(s, tag, "[APPENDUID %u %u] Append completed.", uidvalidity,
	           uid);
}

static void
cmd_append(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	gboolean streamed = s->sub == SUB_APPEND;

	s->sub = SUB_NONE;
	if (!streamed || n < 2 || args[n - 1].type != PB_IMAP_ARG_STREAM) {
		append_reset(s);
		pb_imap_bad(s, tag,
		            "Error in IMAP command APPEND: "
		            "Invalid arguments.");
		return;
	}
	if (s->append_error != NULL || s->append == NULL) {
		if (s->append_error != NULL)
			pb_imap_no_error(s, tag, s->append_error);
		else
			pb_imap_reply(s, "%s NO [SERVERBUG] Append failed.",
			              tag);
		append_reset(s);
		return;
	}
	append_commit(s, tag);
	append_reset(s);
}

/* ------------------------------------------------------------------ */
/* SELECTED */

static void
cmd_check(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	if (no_args(s, tag, n))
		pb_imap_ok(s, tag, "Check completed.");
}

static void
cmd_close(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	g_autoptr(GArray) expunged = g_array_new(FALSE, FALSE, sizeof(guint));
	g_autoptr(GError) error = NULL;

	if (!no_args(s, tag, n))
		return;
	/* RFC 3501 6.4.2: expunge silently, unless read-only */
	if (!pb_mailfolder_read_only(s->folder) &&
	    !pb_mailfolder_expunge(s->folder, NULL, 0, expunged, &error))
		log_line(s, "close user=%s: %s", s->user, error->message);
	close_folder(s);
	pb_imap_reply(s, "%s OK Close completed.", tag);
}

static void
cmd_unselect(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	if (!no_args(s, tag, n))
		return;
	close_folder(s);
	pb_imap_reply(s, "%s OK Unselect completed.", tag);
}

static void
send_expunged(PbImapServer *s, const GArray *expunged)
{
	for (guint k = 0; k < expunged->len; k++) {
		pb_imap_reply(s, "* %u EXPUNGE",
		              g_array_index(expunged, guint, k));
		if (s->exists_sent > 0)
			s->exists_sent--;
	}
}

static void
expunge(PbImapServer *s, const char *tag, const PbImapArg *args, guint n,
        gboolean uid)
{
	g_autoptr(GArray) expunged = g_array_new(FALSE, FALSE, sizeof(guint));
	g_autoptr(GArray) ranges = NULL;
	g_autoptr(GError) error = NULL;

	if (n != (uid ? 1u : 0u)) {
		pb_imap_bad(s, tag,
		            "Error in IMAP command EXPUNGE: "
		            "Invalid arguments.");
		return;
	}
	if (uid && !pb_imap_message_ranges(s, tag, &args[0], TRUE, &ranges))
		return;
	if (uid && ranges->len == 0) {
		pb_imap_ok(s, tag, "Expunge completed.");
		return;
	}
	if (!pb_mailfolder_expunge(
	        s->folder, ranges ? (PbMsgRange *)ranges->data : NULL,
	        ranges ? ranges->len : 0, expunged, &error)) {
		pb_imap_no_error(s, tag, error);
		return;
	}
	send_expunged(s, expunged);
	pb_imap_ok(s, tag, "Expunge completed.");
}

static void
cmd_expunge(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	expunge(s, tag, args, n, FALSE);
}

static void
copy_reply(PbImapServer *s, const char *tag, gboolean move, guint32 uv,
           const GArray *src, const GArray *dst, const GArray *expunged)
{
	g_autoptr(GString) code = g_string_new(NULL);

	if (src->len > 0) {
		g_string_printf(code, "[COPYUID %u ", uv);
		pb_imap_append_uid_set(code, src);
		g_string_append_c(code, ' ');
		pb_imap_append_uid_set(code, dst);
		g_string_append(code, "] ");
	}
	if (!move) {
		pb_imap_ok(s, tag, "%s%s", code->str,
		           src->len ? "Copy completed." : "No messages found.");
		return;
	}
	if (src->len > 0)
		pb_imap_reply(s, "* OK %sMoved UIDs.", code->str);
	send_expunged(s, expunged);
	pb_imap_ok(s, tag, "%s",
	           src->len ? "Move completed." : "No messages found.");
}

static void
copy_move(PbImapServer *s, const char *tag, const PbImapArg *args, guint n,
          gboolean uid, gboolean move)
{
	g_autoptr(GArray) ranges = NULL;
	g_autoptr(GArray) src = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_autoptr(GArray) dst = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_autoptr(GArray) expunged = g_array_new(FALSE, FALSE, sizeof(guint));
	g_autoptr(GError) error = NULL;
	g_autofree char *name = NULL;
	guint32 uv = 0;

	if (n != 2) {
		pb_imap_bad(s, tag,
		            move ? "Error in IMAP command MOVE: "
		                   "Invalid arguments."
		                 : "Error in IMAP command COPY: "
		                   "Invalid arguments.");
		return;
	}
	if (!pb_imap_message_ranges(s, tag, &args[0], uid, &ranges) ||
	    (name = mailbox_arg(s, tag, &args[1])) == NULL)
		return;
	if (ranges->len > 0 &&
	    !pb_mailfolder_copy(s->folder, (PbMsgRange *)ranges->data,
	                        ranges->len, name, move, &uv, src, dst,
	                        expunged, &error)) {
		if (g_error_matches(error, PB_MAILFOLDER_ERROR,
		                    PB_MAILFOLDER_ERROR_NONEXISTENT))
			pb_imap_reply(s,
			              "%s NO [TRYCREATE] Mailbox doesn't "
			              "exist.",
			              tag);
		else
			pb_imap_no_error(s, tag, error);
		return;
	}
	copy_reply(s, tag, move, uv, src, dst, expunged);
}

static void
cmd_copy(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	copy_move(s, tag, args, n, FALSE, FALSE);
}

static void
cmd_move(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	copy_move(s, tag, args, n, FALSE, TRUE);
}

static void
cmd_fetch(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	pb_imap_cmd_fetch(s, tag, args, n, FALSE);
}

static void
cmd_store(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	pb_imap_cmd_store(s, tag, args, n, FALSE);
}

static void
cmd_search(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	pb_imap_cmd_search(s, tag, args, n, FALSE);
}

static void
cmd_uid(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	const char *sub =
	    n > 0 && args[0].type == PB_IMAP_ARG_ATOM ? args[0].str : "";

	if (g_ascii_strcasecmp(sub, "FETCH") == 0)
		pb_imap_cmd_fetch(s, tag, args + 1, n - 1, TRUE);
	else if (g_ascii_strcasecmp(sub, "STORE") == 0)
		pb_imap_cmd_store(s, tag, args + 1, n - 1, TRUE);
	else if (g_ascii_strcasecmp(sub, "SEARCH") == 0)
		pb_imap_cmd_search(s, tag, args + 1, n - 1, TRUE);
	else if (g_ascii_strcasecmp(sub, "COPY") == 0)
		copy_move(s, tag, args + 1, n - 1, TRUE, FALSE);
	else if (g_ascii_strcasecmp(sub, "MOVE") == 0)
		copy_move(s, tag, args + 1, n - 1, TRUE, TRUE);
	else if (g_ascii_strcasecmp(sub, "EXPUNGE") == 0)
		expunge(s, tag, args + 1, n - 1, TRUE);
	else
		pb_imap_bad(s, tag,
		            "Error in IMAP command UID: "
		            "Unknown command.");
}

static void
cmd_idle(PbImapServer *s, const char *tag, const PbImapArg *args, guint n)
{
	if (!no_args(s, tag, n))
		return;
	if (s->state == ST_SELECTED)
		pb_imap_sync(s, TRUE);
	g_free(s->sub_tag);
	s->sub_tag = g_strdup(tag);
	s->sub = SUB_IDLE;
	pb_imap_parser_expect_line(s->parser);
	pb_imap_reply(s, "+ idling");
	s->action = PB_IMAP_FLUSH;
}

/* ------------------------------------------------------------------ */
/* dispatch */

#define ANY (ST_NOT_AUTH | ST_AUTH | ST_SELECTED)
#define AUTHED (ST_AUTH | ST_SELECTED)

static const Command commands[] = {
    {"CAPABILITY", ANY, cmd_capability},
    {"NOOP", ANY, cmd_noop},
    {"LOGOUT", ANY, cmd_logout},
    {"ID", ANY, cmd_id},
    {"STARTTLS", ST_NOT_AUTH, cmd_starttls},
    {"LOGIN", ST_NOT_AUTH, cmd_login},
    {"AUTHENTICATE", ST_NOT_AUTH, cmd_authenticate},
    {"ENABLE", AUTHED, cmd_enable},
    {"NAMESPACE", AUTHED, cmd_namespace},
    {"SELECT", AUTHED, cmd_select},
    {"EXAMINE", AUTHED, cmd_examine},
    {"CREATE", AUTHED, cmd_create},
    {"DELETE", AUTHED, cmd_delete},
    {"RENAME", AUTHED, cmd_rename},
    {"SUBSCRIBE", AUTHED, cmd_subscribe},
    {"UNSUBSCRIBE", AUTHED, cmd_unsubscribe},
    {"LIST", AUTHED, cmd_list},
    {"LSUB", AUTHED, cmd_lsub},
    {"STATUS", AUTHED, cmd_status},
    {"APPEND", AUTHED, cmd_append},
    {"IDLE", AUTHED, cmd_idle},
    {"CHECK", ST_SELECTED, cmd_check},
    {"CLOSE", ST_SELECTED, cmd_close},
    {"UNSELECT", ST_SELECTED, cmd_unselect},
    {"EXPUNGE", ST_SELECTED, cmd_expunge},
    {"SEARCH", ST_SELECTED, cmd_search},
    {"FETCH", ST_SELECTED, cmd_fetch},
    {"STORE", ST_SELECTED, cmd_store},
    {"COPY", ST_SELECTED, cmd_copy},
    {"MOVE", ST_SELECTED, cmd_move},
    {"UID", ST_SELECTED, cmd_uid},
};

static void
wrong_state(PbImapServer *s, const char *tag, const Command *cmd)
{
	g_autofree char *text = NULL;
	const char *why = s->state == ST_NOT_AUTH      ? "Login first"
	                  : cmd->states == ST_NOT_AUTH ? "Already logged in"
	                                               : "No mailbox selected";

	text = g_strdup_printf("Error in IMAP command %s: %s.", cmd->name, why);
	pb_imap_bad(s, tag, text);
}

static void
dispatch(PbImapServer *s, const PbImapCommand *cmd)
{
	g_autofree char *name = g_ascii_strup(cmd->name, -1);

	if (s->sub == SUB_APPEND && strcmp(name, "APPEND") != 0) {
		append_reset(s);
		s->sub = SUB_NONE;
	}
	for (guint k = 0; k < G_N_ELEMENTS(commands); k++) {
		if (strcmp(commands[k].name, name) != 0)
			continue;
		if (!(commands[k].states & s->state)) {
			wrong_state(s, cmd->tag, &commands[k]);
			return;
		}
		/* RFC 3501 7.4.1: no EXPUNGE while answering these */
		s->no_expunge = strcmp(name, "FETCH") == 0 ||
		                strcmp(name, "STORE") == 0 ||
		                strcmp(name, "SEARCH") == 0;
		commands[k].run(s, cmd->tag, cmd->args, cmd->n_args);
		s->no_expunge = FALSE;
		return;
	}
	pb_imap_bad(s, cmd->tag, "Error in IMAP command received by server.");
}

/* A line asked for with expect_line: IDLE's DONE or a SASL response. */
static void
cmd_line(PbImapServer *s, const char *line, gsize len)
{
	g_autofree char *tag = g_steal_pointer(&s->sub_tag);
	ImapSub sub = s->sub;

	s->sub = SUB_NONE;
	if (sub == SUB_AUTHENTICATE) {
		auth_plain(s, tag, line);
		return;
	}
	if (sub != SUB_IDLE)
		return;
	if (g_ascii_strcasecmp(line, "DONE") == 0)
		pb_imap_ok(s, tag, "Idle completed.");
	else
		pb_imap_bad(s, tag, "Expected DONE.");
}

static void
bad_event(PbImapServer *s)
{
	g_autofree char *text = g_strdup_printf(
	    "Error in IMAP command: %s", pb_imap_parser_error(s->parser));
	const char *tag = pb_imap_parser_tag(s->parser);
	g_autofree char *sub_tag = g_steal_pointer(&s->sub_tag);

	if (s->sub == SUB_IDLE || s->sub == SUB_AUTHENTICATE)
		tag = sub_tag; /* the line in place of DONE or the response */
	if (s->sub == SUB_APPEND)
		append_reset(s);
	s->sub = SUB_NONE;
	pb_imap_bad(s, tag, text);
}

/* Handles one parser event; FALSE when feeding must stop for now. */
static gboolean
event(PbImapServer *s, PbImapParseResult r, const char *buf, gsize used)
{
	gsize len;
	const char *line;

	switch (r) {
	case PB_IMAP_PARSE_MORE:
		return FALSE;
	case PB_IMAP_PARSE_COMMAND:
		dispatch(s, pb_imap_parser_command(s->parser));
		break;
	case PB_IMAP_PARSE_LITERAL:
		literal_event(s);
		break;
	case PB_IMAP_PARSE_STREAM:
		stream_event(s, buf, used);
		break;
	case PB_IMAP_PARSE_STREAM_END:
		break;
	case PB_IMAP_PARSE_LINE:
		line = pb_imap_parser_line(s->parser, &len);
		cmd_line(s, line, len);
		break;
	case PB_IMAP_PARSE_BAD:
		bad_event(s);
		break;
	case PB_IMAP_PARSE_CLOSE:
		pb_imap_reply(s, "* BYE %s", pb_imap_parser_error(s->parser));
		close_session(s);
		break;
	}
	/* a pause, TLS or the end come before anything else is read */
	return s->action != PB_IMAP_STARTTLS && s->action != PB_IMAP_CLOSE &&
	       s->action != PB_IMAP_AUTH_DELAY;
}

gsize
pb_imap_server_feed(PbImapServer *s, const char *buf, gsize len)
{
	gsize total = 0;

	if (s->state == ST_LOGOUT || s->action == PB_IMAP_CLOSE)
		return 0;
	while (total < len) {
		gsize used = 0;
		PbImapParseResult r = pb_imap_parser_feed(
		    s->parser, buf + total, len - total, &used);
		total += used;
		if (!event(s, r, buf + total - used, used))
			break;
	}
	return total;
}
