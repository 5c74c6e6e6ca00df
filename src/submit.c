/*
 * submit.c - local submission into the queue (see submit.h).
 *
 * The input is whatever a local program writes: LF or CRLF line ends,
 * maybe no header section at all, maybe lines longer than SMTP allows.
 * Lines are cut at 998 octets with CRLF SPACE, as Postfix's sendmail
 * does, so the queued message is always valid SMTP data. The header
 * section is held (bounded) until its end; the body goes straight to the
 * queue in chunks.
 */
#include "submit.h"
#include "address.h"
#include "date.h"
#include "dkim.h"
#include "error.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define MAX_LINE 998

char *
pb_submit_qualify(const PbConfig *cfg, const char *address, GError **error)
{
	g_autofree char *full = NULL;
	g_autoptr(PbAddress) addr = NULL;
	const char *rest;

	if (strchr(address, '@') == NULL)
		full = g_strdup_printf("%s@%s", address,
		                       cfg->domains[0] ? cfg->domains[0]
		                                       : cfg->hostname);
	else
		full = g_strdup(address);
	if (!pb_address_parse_path(full, strlen(full),
	                           PB_ADDRESS_NO_BRACKETS | PB_ADDRESS_UTF8,
	                           &addr, &rest, error))
		return NULL;
	if (*rest != '\0' || *addr->domain == '\0') {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "not an address: %s", address);
		return NULL;
	}
	return pb_address_to_string(addr);
}

/* One element of an address list: the part in <> if any, else the text
 * without comments and spaces. */
static void
list_element(const char *start, const char *end, GPtrArray *out)
{
	g_autoptr(GString) a = g_string_new(NULL);
	const char *lt = NULL, *gt = NULL;
	int depth = 0;
	gboolean quoted = FALSE;

	for (const char *p = start; p < end; p++) {
		if (quoted) {
			if (*p == '\\' && p + 1 < end)
				p++;
			else if (*p == '"')
				quoted = FALSE;
		} else if (*p == '"')
			quoted = TRUE;
		else if (*p == '(')
			depth++;
		else if (*p == ')' && depth > 0)
			depth--;
		else if (*p == '<' && depth == 0)
			lt = p;
		else if (*p == '>' && depth == 0 && lt)
			gt = p;
	}
	if (lt && gt > lt) {
		start = lt + 1;
		end = gt;
	}
	depth = 0;
	quoted = FALSE;
	for (const char *p = start; p < end; p++) {
		if (!quoted && *p == '(')
			depth++;
		else if (!quoted && *p == ')' && depth > 0)
			depth--;
		else if (depth == 0 && (quoted || !g_ascii_isspace(*p))) {
			if (*p == '"')
				quoted = !quoted;
			g_string_append_c(a, *p);
		}
	}
	if (a->len > 0 && strchr(a->str, '@'))
		g_ptr_array_add(out, g_string_free(g_steal_pointer(&a), FALSE));
}

void
pb_submit_address_list(const char *value, GPtrArray *out)
{
	const char *start = value;
	int depth = 0;
	gboolean quoted = FALSE, angle = FALSE;

	for (const char *p = value;; p++) {
		if (*p == '\0' || (!quoted && depth == 0 && !angle &&
		                   (*p == ',' || *p == ';' || *p == ':'))) {
			/* "group:" names a group, not an address */
			if (*p != ':')
				list_element(start, p, out);
			if (*p == '\0')
				return;
			start = p + 1;
		} else if (quoted) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				quoted = FALSE;
		} else if (*p == '"')
			quoted = TRUE;
		else if (*p == '(')
			depth++;
		else if (*p == ')' && depth > 0)
			depth--;
		else if (*p == '<' && depth == 0)
			angle = TRUE;
		else if (*p == '>' && depth == 0)
			angle = FALSE;
	}
}

typedef struct {
	const PbConfig *cfg;
	const PbSubmission *sub;
	PbQueueTx *tx;
	GString *header; /* the header section so far (CRLF lines) */
	gboolean in_body;
	gboolean done;     /* the lone dot was read */
	gboolean at_start; /* the current line has no octet yet */
	gboolean cr;       /* a CR was read: the line ends whatever follows */
	guint64 size;
	GString *line; /* the current line (at most MAX_LINE) */
	GPtrArray *rcpts;
	PbDkimSign *dkim; /* signing it as it goes, or NULL */
} Submit;

static gboolean
put(Submit *s, const char *buf, gsize len, GError **error)
{
	s->size += len;
	if (s->size > s->cfg->max_message_size) {
		g_set_error(
		    error, PB_ERROR, PB_ERROR_DATA,
		    "message larger than max_message_size (%" G_GUINT64_FORMAT
		    " octets)",
		    s->cfg->max_message_size);
		return FALSE;
	}
	if (s->dkim != NULL)
		pb_dkim_sign_feed(s->dkim, buf, len);
	return pb_queue_tx_write(s->tx, buf, len, error);
}

/* Is LINE a header field ("Name: value") or a continuation? */
static gboolean
is_header_line(const GString *line)
{
	const char *colon;

	if (line->len > 0 && (line->str[0] == ' ' || line->str[0] == '\t'))
		return TRUE;
	colon = memchr(line->str, ':', line->len);
	if (colon == NULL || colon == line->str)
		return FALSE;
	for (const char *p = line->str; p < colon; p++)
		if (*p <= ' ' || *p > '~')
			return FALSE;
	return TRUE;
}

static gboolean
header_has(const GString *h, const char *name)
{
	gsize n = strlen(name);

	for (const char *p = h->str; p && *p;) {
		if (g_ascii_strncasecmp(p, name, n) == 0 && p[n] == ':')
			return TRUE;
		p = strstr(p, "\r\n");
		p = p ? p + 2 : NULL;
	}
	return FALSE;
}

/* -F NAME goes into From: as a quoted string; a control character (a
 * line end would start a header field of the caller's choosing) is
 * refused before anything is read. */
static gboolean
check_full_name(const char *name, GError **error)
{
	for (const guchar *p = (const guchar *)name; p && *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			g_set_error(error, PB_ERROR, PB_ERROR_USAGE,
			            "-F: a control character in the full "
			            "name: refused");
			return FALSE;
		}
	}
	return TRUE;
}

static void
append_from(GString *out, const char *name, const char *sender)
{
	g_string_append(out, "From: \"");
	for (const char *p = name; *p; p++) {
		if (*p == '"' || *p == '\\')
			g_string_append_c(out, '\\');
		g_string_append_c(out, *p);
	}
	g_string_append_printf(out, "\" <%s>\r\n", sender);
}

/* Writes the header section: ours first, then the client's without Bcc;
 * with -t, collects To, Cc and Bcc first. */
static gboolean
flush_header(Submit *s, GError **error)
{
	g_autoptr(GString) out = g_string_new(NULL);
	g_autofree char *date =
	    pb_date_rfc5322(g_get_real_time() / G_USEC_PER_SEC);
	const char *id = pb_queue_tx_id(s->tx);
	g_auto(GStrv) fields = NULL;

	g_string_append_printf(out,
	                       "Received: by %s (pillarbox, from userid %u)\r\n"
	                       "\tid %s; %s\r\n",
	                       s->cfg->hostname, s->sub->uid, id, date);
	if (!header_has(s->header, "From")) {
		if (s->sub->full_name && *s->sub->full_name)
			append_from(out, s->sub->full_name, s->sub->sender);
		else
			g_string_append_printf(
			    out, "From: %s\r\n",
			    *s->sub->sender ? s->sub->sender : "MAILER-DAEMON");
	}
	if (!header_has(s->header, "Date"))
		g_string_append_printf(out, "Date: %s\r\n", date);
	if (!header_has(s->header, "Message-ID"))
		g_string_append_printf(out, "Message-ID: <%s@%s>\r\n", id,
		                       s->cfg->hostname);
	/* fields: split before every line that does not start with WSP;
	 * RAW: header octets need not be UTF-8 (else GRegex fails) */
	fields = g_regex_split_simple("\r\n(?![ \t])", s->header->str,
	                              G_REGEX_RAW, 0);
	for (guint i = 0; fields[i]; i++) {
		gboolean bcc = g_ascii_strncasecmp(fields[i], "Bcc:", 4) == 0;
		if (*fields[i] == '\0')
			continue;
		if (s->sub->extract &&
		    (bcc || g_ascii_strncasecmp(fields[i], "To:", 3) == 0 ||
		     g_ascii_strncasecmp(fields[i], "Cc:", 3) == 0)) {
			g_autofree char *value =
			    g_strdup(strchr(fields[i], ':') + 1);
			pb_submit_address_list(value, s->rcpts);
		}
		if (bcc)
			continue;
		g_string_append_printf(out, "%s\r\n", fields[i]);
	}
	g_string_append(out, "\r\n");
	s->in_body = TRUE;
	return put(s, out->str, out->len, error);
}

/* One complete line (without its end); CUT: it continues (over 998). */
static gboolean
line_done(Submit *s, gboolean cut, GError **error)
{
	GString *l = s->line;

	if (!cut && s->sub->dot_ends && l->len == 1 && l->str[0] == '.' &&
	    s->at_start) {
		s->done = TRUE;
		return TRUE;
	}
	if (!s->in_body) {
		if (l->len == 0 && !cut)
			return flush_header(s, error);
		if (!is_header_line(l)) {
			/* no empty line before the body: add it */
			if (!flush_header(s, error))
				return FALSE;
		} else {
			if (s->header->len + l->len > PB_SUBMIT_MAX_HEADER) {
				g_set_error(error, PB_ERROR, PB_ERROR_DATA,
				            "header section over %u octets",
				            PB_SUBMIT_MAX_HEADER);
				return FALSE;
			}
			g_string_append_len(s->header, l->str, l->len);
			g_string_append(s->header, cut ? "\r\n " : "\r\n");
			g_string_truncate(l, 0);
			return TRUE;
		}
	}
	g_string_append(l, cut ? "\r\n " : "\r\n");
	if (!put(s, l->str, l->len, error))
		return FALSE;
	g_string_truncate(l, 0);
	return TRUE;
}

/* The line so far is complete: a line end was read. */
static gboolean
end_line(Submit *s, GError **error)
{
	s->cr = FALSE;
	if (!line_done(s, FALSE, error))
		return FALSE;
	s->at_start = TRUE;
	return TRUE;
}

/* Feeds input octets: a line ends at LF, CRLF or a CR alone (as a bare
 * LF would, a bare CR becomes CRLF: no other server sees a bare CR). */
static gboolean
feed(Submit *s, const char *buf, gsize len, GError **error)
{
	for (gsize i = 0; i < len && !s->done; i++) {
		char c = buf[i];
		if (s->cr && c != '\n') {
			if (!end_line(s, error))
				return FALSE;
			if (s->done)
				break; /* a "." line that ended with a CR */
		}
		if (c == '\0') {
			g_set_error(error, PB_ERROR, PB_ERROR_DATA,
			            "a NUL byte in the message");
			return FALSE;
		}
		if (c == '\r') {
			s->cr = TRUE;
			continue;
		}
		if (c == '\n') {
			if (!end_line(s, error))
				return FALSE;
			continue;
		}
		if (s->line->len >= MAX_LINE - 1) {
			if (!line_done(s, TRUE, error))
				return FALSE;
			s->at_start = FALSE;
		}
		g_string_append_c(s->line, c);
	}
	return TRUE;
}

static gboolean
read_all(Submit *s, int in, GError **error)
{
	char buf[65536];

	while (!s->done) {
		ssize_t n = read(in, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pb_throw_errno(error, "reading the message");
		if (n == 0)
			break;
		if (!feed(s, buf, (gsize)n, error))
			return FALSE;
	}
	if (!s->done && (s->cr || s->line->len > 0) && !end_line(s, error))
		return FALSE;
	return s->in_body || flush_header(s, error);
}

/* The recipients: the command line's and (-t) the headers', qualified,
 * without duplicates. */
static GPtrArray *
final_recipients(Submit *s, GError **error)
{
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

	guint at = 0;

	/* "a@b, c" as one argument is common in scripts */
	for (guint i = 0; s->sub->recipients && s->sub->recipients[i]; i++) {
		g_auto(GStrv) parts =
		    g_strsplit(s->sub->recipients[i], ",", -1);
		for (guint p = 0; parts[p]; p++)
			if (*g_strstrip(parts[p]))
				g_ptr_array_insert(s->rcpts, at++,
				                   g_strdup(parts[p]));
	}
	for (guint i = 0; i < s->rcpts->len; i++) {
		char *a = pb_submit_qualify(
		    s->cfg, g_ptr_array_index(s->rcpts, i), error);
		if (a == NULL)
			return NULL;
		if (g_hash_table_contains(seen, a)) {
			g_free(a);
			continue;
		}
		g_hash_table_add(seen, a);
		g_ptr_array_add(out, a);
	}
	if (out->len == 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_USAGE,
		            "no recipients (give them as arguments, or -t)");
		return NULL;
	}
	return g_steal_pointer(&out);
}

/* the envelope's client of a local submission: LOCAL_MARK "LOGIN)" */
#define LOCAL_MARK "local uid %u ("

gboolean
pb_submit_is_users(const PbEnvelope *env, guint uid, const char *address)
{
	g_autofree char *mark = g_strdup_printf(LOCAL_MARK, uid);

	if (env->client == NULL)
		return FALSE;
	if (g_str_has_prefix(env->client, mark))
		return TRUE;
	return g_str_has_suffix(env->client, " []") &&
	       g_ascii_strcasecmp(env->sender, address) == 0;
}

/* The DKIM-Signature for a message with a remote recipient (a local
 * program's mail is our users'), into ENV; FALSE: signing failed. */
static gboolean
dkim_sign(Submit *s, PbEnvelope *env, GPtrArray *rcpts, const char *id,
          GError **error)
{
	g_autofree char *domain = NULL;
	const char *why = NULL;
	gboolean remote = FALSE;

	for (guint i = 0; i < rcpts->len; i++) {
		const char *at = strrchr(g_ptr_array_index(rcpts, i), '@');
		remote = remote ||
		         (at && !pb_config_is_local_domain(s->cfg, at + 1));
	}
	if (s->dkim == NULL || !remote)
		return TRUE;
	env->prepend = pb_dkim_sign_finish(
	    s->dkim, g_get_real_time() / G_USEC_PER_SEC, &domain, &why, error);
	if (env->prepend != NULL)
		pb_log_info(id, "dkim: signed d=%s", domain);
	else if (why != NULL)
		pb_log_info(id, "dkim: not signed: %s", why);
	if (error != NULL && *error != NULL) {
		(*error)->code = PB_ERROR_TEMP;
		return FALSE;
	}
	return TRUE;
}

/* The [dkim] signer in *SIGNER and a signature begun in *SIGN, NULL
 * both when there is none; FALSE when the key cannot be read. It is read
 * before the message (sendmail runs as [main] user, the key's owner). */
static gboolean
dkim_start(const PbConfig *cfg, PbDkimSigner **signer, PbDkimSign **sign,
           GError **error)
{
	g_autoptr(GError) local = NULL;

	*signer = pb_dkim_signer_new(cfg, &local);
	*sign = *signer ? pb_dkim_sign_new(*signer) : NULL;
	if (local == NULL)
		return TRUE;
	g_propagate_error(error, g_steal_pointer(&local));
	return FALSE;
}

gboolean
pb_submit(const PbConfig *cfg, PbQueue *q, const PbSubmission *sub, int in,
          char **id, GError **error)
{
	g_autoptr(PbDkimSigner) signer = NULL;
	g_autoptr(PbDkimSign) dkim = NULL;
	g_autoptr(GString) header = g_string_new(NULL);
	g_autoptr(GString) line = g_string_sized_new(MAX_LINE + 4);
	g_autoptr(GPtrArray) rcpts = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) final = NULL;
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	Submit s = {.cfg = cfg,
	            .sub = sub,
	            .header = header,
	            .at_start = TRUE,
	            .line = line,
	            .rcpts = rcpts};

	/* recipients on the command line are checked before reading */
	if (!check_full_name(sub->full_name, error))
		return FALSE;
	if (!sub->extract && (sub->recipients == NULL || !sub->recipients[0])) {
		g_set_error(error, PB_ERROR, PB_ERROR_USAGE,
		            "no recipients (give them as arguments, or -t)");
		return FALSE;
	}
	if (!dkim_start(cfg, &signer, &dkim, error))
		return FALSE;
	s.dkim = dkim;
	if ((s.tx = pb_queue_tx_begin(q, error)) == NULL)
		return FALSE;
	if (!read_all(&s, in, error) ||
	    (final = final_recipients(&s, error)) == NULL ||
	    !dkim_sign(&s, env, final, pb_queue_tx_id(s.tx), error)) {
		pb_queue_tx_abort(s.tx);
		return FALSE;
	}
	g_free(env->sender);
	env->sender = g_strdup(sub->sender);
	env->client = g_strdup_printf(LOCAL_MARK "%s)", sub->uid, sub->login);
	for (guint i = 0; i < final->len; i++)
		pb_envelope_add_rcpt(env, g_ptr_array_index(final, i));
	*id = g_strdup(pb_queue_tx_id(s.tx));
	if (!pb_queue_tx_commit(s.tx, env, error)) {
		g_clear_pointer(id, g_free);
		return FALSE;
	}
	pb_log_info(*id,
	            "from=<%s>, size=%" G_GUINT64_FORMAT
	            ", nrcpt=%u (queued by uid %u %s)",
	            env->sender, env->size, final->len, sub->uid, sub->login);
	return TRUE;
}
