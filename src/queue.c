/*
 * queue.c - the durable mail queue: QUEUE/{msg,env,tmp} (see queue.h).
 *
 * Owns everything under QUEUE/. The commit point of a new message is the
 * fsync of env/ after env/ID was renamed into place; before it the message
 * is not accepted, after it it is never lost. Per-message work never
 * scans a folder, so it does not grow with the queue.
 *
 * The envelope is a text file, one record a line, "KEY VALUE":
 *   pillarbox-envelope 1          first line, the format's version
 *   id ID                         22 upper-case hex digits
 *   arrival SECONDS
 *   sender ADDRESS                empty value: the null sender <>
 *   size OCTETS
 *   smtputf8 0|1
 *   notice 0|1                    the delay notice was sent
 *   held 0|1
 *   client TEXT                   optional
 *   prepend TEXT                  optional: header fields (CRLF-ended,
 *                                 escaped) sent before msg/ID
 *   rcpt STATE ATTEMPTS LAST NEXT ADDRESS
 *                                 STATE: pending, sent, failed, bounced
 *   orig ADDRESS                  optional, applies to the rcpt above
 *   dsn X.Y.Z                     optional, applies to the rcpt above
 *   error TEXT                    optional, applies to the rcpt above
 *   attempt SECONDS HOST TEXT     oldest first, for the rcpt above: the
 *                                 first and the last ones (queue.h)
 * Every text field is escaped: a backslash, a byte below 0x20, 0x7F and
 * every 8-bit byte are written as \xHH (HOST also escapes spaces), so no
 * CR, LF or NUL from a client or a remote server can reach the file raw.
 *
 * The size is bounded per recipient. Addresses are never cut (at most
 * 256 octets, 1024 escaped); every other text field is cut where it is
 * written, at a whole escape, to its maximum (queue.h): error and reply
 * 512, host 320, dsn 32. So a recipient takes at most
 * PB_QUEUE_RCPT_MAX_OCTETS (about 7.9 KB, typically 200 octets), and an
 * envelope at most PB_QUEUE_MAX_ENVELOPE: the header plus 1000
 * recipients, the most a message is given (RFC 5321 4.5.3.1.8 asks for
 * 100; Postfix's default limit is 1000). The limit is fixed here, not in
 * the configuration, so no later setting can make a queued envelope
 * unreadable; older envelopes (64 attempts kept, 1 MiB at most) are all
 * within it, and their history is trimmed when next written.
 * The parser is strict: an unknown record, a raw control byte, a bad
 * escape or number, a missing record or a file over the limit is
 * PB_ERROR_DATA (runq then sets the entry aside and tells postmaster).
 */
#include "queue.h"
#include "date.h"
#include "durable.h"
#include "error.h"
#include "self.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ID_LEN 22
#define BUF_SIZE (64 * 1024)
#define MAX_ENVELOPE PB_QUEUE_MAX_ENVELOPE
#define MAGIC "pillarbox-envelope 1"

static const char *const strstate[] = {"pending", "sent", "failed", "bounced"};

struct _PbQueue {
	char *dir;
	char *msg;
	char *env;
	char *tmp;
	int msg_fd, env_fd; /* the folders, held open for their fsyncs */
	char *buf;          /* BUF_SIZE, the transactions' (one at a time) */
	gboolean buf_busy;
};

struct _PbQueueTx {
	PbQueue *q;
	char *id;
	int fd;
	int env_fd;    /* tmp/ID.PID, made early: see pb_queue_tx_begin */
	char *env_tmp; /* its name, while it is there */
	char *buf;     /* the queue's, or its own when that one is busy */
	gsize used;
	guint64 size;
	gboolean failed;
	char *prepend; /* for the envelope, or NULL */
};

struct _PbQueueEntry {
	PbQueue *q;
	char *id;
	int fd;
	PbEnvelope *env;
};

/* ---- envelopes in memory ---- */

PbEnvelope *
pb_envelope_new(void)
{
	PbEnvelope *env = g_new0(PbEnvelope, 1);

	env->sender = g_strdup("");
	env->rcpts = g_ptr_array_new();
	return env;
}

static void
attempt_free(gpointer p)
{
	PbAttempt *a = p;

	g_free(a->host);
	g_free(a->reply);
	g_free(a);
}

static void
recipient_free(PbRecipient *r)
{
	g_free(r->address);
	g_free(r->orig);
	g_free(r->dsn);
	g_free(r->last_error);
	g_ptr_array_unref(r->history);
	g_free(r);
}

void
pb_envelope_free(PbEnvelope *env)
{
	if (env == NULL)
		return;
	g_free(env->id);
	g_free(env->sender);
	g_free(env->client);
	g_free(env->prepend);
	for (guint i = 0; i < env->rcpts->len; i++)
		recipient_free(g_ptr_array_index(env->rcpts, i));
	g_ptr_array_unref(env->rcpts);
	g_free(env);
}

guint64
pb_envelope_wire_size(const PbEnvelope *env)
{
	return env->size + (env->prepend ? strlen(env->prepend) : 0);
}

gboolean
pb_envelope_prepend_valid(const char *text)
{
	gsize n = text ? strlen(text) : 0;

	if (n == 0 || n > PB_QUEUE_MAX_PREPEND || text[0] == ' ' ||
	    text[0] == '\t' || text[0] == '\r' || text[n - 1] != '\n')
		return FALSE;
	for (gsize i = 0; i < n; i++)
		if ((text[i] == '\r') != (i + 1 < n && text[i + 1] == '\n') ||
		    (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) ||
		    (text[i] == '\n' && i + 1 < n && text[i + 1] == '\r'))
			return FALSE;
	return TRUE;
}

PbRecipient *
pb_envelope_add_rcpt(PbEnvelope *env, const char *address)
{
	PbRecipient *r = g_new0(PbRecipient, 1);

	r->address = g_strdup(address);
	r->state = PB_RCPT_PENDING;
	r->history = g_ptr_array_new_with_free_func(attempt_free);
	g_ptr_array_add(env->rcpts, r);
	return r;
}

static void
history_add(PbRecipient *r, gint64 time, const char *host, const char *reply)
{
	PbAttempt *a = g_new0(PbAttempt, 1);

	a->time = time;
	/* what the file keeps is cut at its escaped size: this is only so
	 * that memory is bounded too */
	a->host = g_strndup(host ? host : "", PB_QUEUE_MAX_HOST);
	a->reply = g_strndup(reply ? reply : "", PB_QUEUE_MAX_TEXT);
	g_ptr_array_add(r->history, a);
	/* the first attempts stay; the oldest of the last ones goes */
	while (r->history->len > PB_QUEUE_MAX_HISTORY)
		g_ptr_array_remove_index(r->history, PB_QUEUE_HISTORY_FIRST);
}

void
pb_recipient_add_attempt(PbRecipient *rcpt, gint64 time, const char *host,
                         const char *reply)
{
	history_add(rcpt, time, host, reply);
	rcpt->attempts++;
	rcpt->last_attempt = time;
	/* an SMTP-style failure reply ("4..", "5..") is the last error */
	if (reply != NULL && (reply[0] == '4' || reply[0] == '5')) {
		g_free(rcpt->last_error);
		rcpt->last_error = g_strdup(reply);
	}
}

gboolean
pb_envelope_is_final(const PbEnvelope *env)
{
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (r->state == PB_RCPT_PENDING || r->state == PB_RCPT_FAILED)
			return FALSE;
	}
	return TRUE;
}

char *
pb_sanitize_text(const char *text, gsize max)
{
	GString *s = g_string_new(NULL);

	for (gsize i = 0; text != NULL && text[i] != '\0' && i < max; i++) {
		guchar c = (guchar)text[i];
		if (c >= 0x20 && c < 0x7F)
			g_string_append_c(s, (char)c);
		else
			g_string_append_printf(s, "\\x%02X", c);
	}
	return g_string_free(s, FALSE);
}

/* ---- the text form ---- */

/* Appends one octet of a text field, escaped. */
static void
escape_one(GString *out, guchar c, gboolean space)
{
	if (c > 0x20 && c < 0x7F && c != '\\')
		g_string_append_c(out, (char)c);
	else if (c == ' ' && !space)
		g_string_append_c(out, ' ');
	else
		g_string_append_printf(out, "\\x%02X", c);
}

/* Appends TEXT escaped; SPACE also escapes spaces (a field that is not
 * the last of its line). With MAX (0: no limit), a text longer than MAX
 * octets escaped is cut at a whole escape and marked "..." within MAX; a
 * text that fits is kept whole, so a cut text stays as it is. */
static void
escape_max(GString *out, const char *text, gboolean space, gsize max)
{
	gsize start = out->len;

	for (const guchar *p = (const guchar *)text; *p != '\0'; p++)
		escape_one(out, *p, space);
	if (max == 0 || out->len - start <= max)
		return;
	g_string_truncate(out, start);
	for (const guchar *p = (const guchar *)text; *p != '\0'; p++) {
		gsize before = out->len;
		escape_one(out, *p, space);
		if (out->len - start > max - 3) {
			g_string_truncate(out, before);
			break;
		}
	}
	g_string_append(out, "...");
}

static void
escape(GString *out, const char *text, gboolean space)
{
	escape_max(out, text, space, 0);
}

static void
record(GString *out, const char *key, const char *value, gsize max)
{
	g_string_append(out, key);
	g_string_append_c(out, ' ');
	escape_max(out, value, FALSE, max);
	g_string_append_c(out, '\n');
}

static void
format_rcpt(GString *out, const PbRecipient *r)
{
	g_string_append_printf(
	    out, "rcpt %s %u %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " ",
	    strstate[r->state], r->attempts, r->last_attempt, r->next_attempt);
	escape(out, r->address, FALSE);
	g_string_append_c(out, '\n');
	if (r->orig != NULL)
		record(out, "orig", r->orig, 0);
	if (r->dsn != NULL)
		record(out, "dsn", r->dsn, PB_QUEUE_MAX_DSN);
	if (r->last_error != NULL)
		record(out, "error", r->last_error, PB_QUEUE_MAX_TEXT);
	for (guint i = 0; i < r->history->len; i++) {
		const PbAttempt *a = g_ptr_array_index(r->history, i);
		g_string_append_printf(out, "attempt %" G_GINT64_FORMAT " ",
		                       a->time);
		escape_max(out, a->host[0] ? a->host : "-", TRUE,
		           PB_QUEUE_MAX_HOST);
		g_string_append_c(out, ' ');
		escape_max(out, a->reply, FALSE, PB_QUEUE_MAX_TEXT);
		g_string_append_c(out, '\n');
	}
}

GString *
pb_envelope_format(const PbEnvelope *env)
{
	GString *out = g_string_new(MAGIC "\n");

	record(out, "id", env->id ? env->id : "", 0);
	g_string_append_printf(out, "arrival %" G_GINT64_FORMAT "\n",
	                       env->arrival);
	record(out, "sender", env->sender ? env->sender : "", 0);
	g_string_append_printf(out, "size %" G_GUINT64_FORMAT "\n", env->size);
	g_string_append_printf(out, "smtputf8 %d\nnotice %d\nheld %d\n",
	                       env->smtputf8 ? 1 : 0, env->notice_sent ? 1 : 0,
	                       env->held ? 1 : 0);
	if (env->client != NULL)
		record(out, "client", env->client, PB_QUEUE_MAX_TEXT);
	if (env->prepend != NULL)
		record(out, "prepend", env->prepend, 0);
	for (guint i = 0; i < env->rcpts->len; i++)
		format_rcpt(out, g_ptr_array_index(env->rcpts, i));
	return out;
}

static int
hexval(char c)
{
	if (g_ascii_isdigit(c))
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The inverse of escape(); NULL on a raw control byte, a raw 8-bit byte
 * or a bad escape. */
static char *
unescape(const char *text)
{
	GString *s = g_string_new(NULL);

	for (const char *p = text; *p != '\0'; p++) {
		guchar c = (guchar)*p;
		if (c == '\\' && p[1] == 'x' && hexval(p[2]) >= 0 &&
		    hexval(p[3]) >= 0) {
			g_string_append_c(
			    s, (char)(hexval(p[2]) * 16 + hexval(p[3])));
			p += 3;
		} else if (c >= 0x20 && c < 0x7F && c != '\\') {
			g_string_append_c(s, (char)c);
		} else {
			g_string_free(s, TRUE);
			return NULL;
		}
	}
	return g_string_free(s, FALSE);
}

/* An address record: what the writer writes (pb_envelope_fits), at most
 * PB_ADDRESS_MAX_PATH octets; a longer one would be refused again as the
 * recipient of its own bounce. */
static char *
unescape_address(const char *text)
{
	char *a = unescape(text);

	if (a != NULL && strlen(a) > PB_ADDRESS_MAX_PATH)
		g_clear_pointer(&a, g_free);
	return a;
}

static gboolean
parse_i64(const char *text, gint64 *out)
{
	return g_ascii_string_to_signed(text, 10, 0, G_MAXINT64, out, NULL);
}

static gboolean
parse_u64(const char *text, guint64 max, guint64 *out)
{
	return g_ascii_string_to_unsigned(text, 10, 0, max, out, NULL);
}

static gboolean
parse_bool(const char *text, gboolean *out)
{
	if (strcmp(text, "0") != 0 && strcmp(text, "1") != 0)
		return FALSE;
	*out = text[0] == '1';
	return TRUE;
}

static gboolean
valid_id(const char *id)
{
	if (id == NULL || strlen(id) != ID_LEN)
		return FALSE;
	for (int i = 0; i < ID_LEN; i++)
		if (!g_ascii_isdigit(id[i]) && !(id[i] >= 'A' && id[i] <= 'F'))
			return FALSE;
	return TRUE;
}

/* The parser's state: what was seen, and the recipient lines apply to. */
typedef struct {
	PbEnvelope *env;
	PbRecipient *rcpt;
	guint seen; /* bit per singular record */
} Parse;

/* "rcpt STATE ATTEMPTS LAST NEXT ADDRESS" */
static gboolean
parse_rcpt(Parse *p, const char *value)
{
	g_auto(GStrv) f = g_strsplit(value, " ", 5);
	g_autofree char *address = NULL;
	guint64 attempts;
	gint64 last, next;
	int state = -1;

	if (g_strv_length(f) != 5)
		return FALSE;
	for (guint i = 0; i < G_N_ELEMENTS(strstate); i++)
		if (strcmp(f[0], strstate[i]) == 0)
			state = (int)i;
	if (state < 0 || !parse_u64(f[1], G_MAXUINT, &attempts) ||
	    !parse_i64(f[2], &last) || !parse_i64(f[3], &next) ||
	    (address = unescape_address(f[4])) == NULL || address[0] == '\0')
		return FALSE;
	p->rcpt = pb_envelope_add_rcpt(p->env, address);
	p->rcpt->state = (PbRcptState)state;
	p->rcpt->attempts = (guint)attempts;
	p->rcpt->last_attempt = last;
	p->rcpt->next_attempt = next;
	return TRUE;
}

/* "attempt SECONDS HOST TEXT" */
static gboolean
parse_attempt(Parse *p, const char *value)
{
	g_auto(GStrv) f = g_strsplit(value, " ", 3);
	g_autofree char *host = NULL;
	g_autofree char *reply = NULL;
	gint64 time;

	/* more than are kept now (an older envelope): trimmed on the way */
	if (p->rcpt == NULL || g_strv_length(f) != 3 ||
	    !parse_i64(f[0], &time) || f[1][0] == '\0' ||
	    (host = unescape(f[1])) == NULL || (reply = unescape(f[2])) == NULL)
		return FALSE;
	history_add(p->rcpt, time, strcmp(host, "-") == 0 ? "" : host, reply);
	return TRUE;
}

/* orig, dsn, error: a text field of the recipient above, at most once */
static gboolean
parse_rcpt_text(Parse *p, const char *key, const char *value)
{
	char **field;

	if (p->rcpt == NULL)
		return FALSE;
	field = strcmp(key, "orig") == 0  ? &p->rcpt->orig
	        : strcmp(key, "dsn") == 0 ? &p->rcpt->dsn
	                                  : &p->rcpt->last_error;
	if (*field != NULL || p->rcpt->history->len > 0)
		return FALSE;
	*field = field == &p->rcpt->orig ? unescape_address(value)
	                                 : unescape(value);
	return *field != NULL;
}

/* The singular records; each may appear once, before any rcpt. */
static gboolean
parse_header(Parse *p, const char *key, const char *value)
{
	static const char *const keys[] = {"id",   "arrival",  "sender",
	                                   "size", "smtputf8", "notice",
	                                   "held", "client",   "prepend"};
	PbEnvelope *env = p->env;
	guint i;

	for (i = 0; i < G_N_ELEMENTS(keys) && strcmp(key, keys[i]) != 0; i++)
		;
	if (i == G_N_ELEMENTS(keys) || (p->seen & (1u << i)) || p->rcpt)
		return FALSE;
	p->seen |= 1u << i;
	switch (i) {
	case 0:
		env->id = g_strdup(value);
		return valid_id(value);
	case 1:
		return parse_i64(value, &env->arrival);
	case 2:
		g_free(env->sender);
		return (env->sender = unescape_address(value)) != NULL;
	case 3:
		return parse_u64(value, G_MAXUINT64, &env->size);
	case 4:
		return parse_bool(value, &env->smtputf8);
	case 5:
		return parse_bool(value, &env->notice_sent);
	case 6:
		return parse_bool(value, &env->held);
	case 8:
		return (env->prepend = unescape(value)) != NULL &&
		       pb_envelope_prepend_valid(env->prepend);
	default:
		return (env->client = unescape(value)) != NULL;
	}
}

static gboolean
parse_line(Parse *p, const char *line)
{
	const char *sp = strchr(line, ' ');
	g_autofree char *key =
	    sp ? g_strndup(line, (gsize)(sp - line)) : g_strdup(line);
	const char *value = sp ? sp + 1 : "";

	if (strcmp(key, "rcpt") == 0)
		return parse_rcpt(p, value);
	if (strcmp(key, "attempt") == 0)
		return parse_attempt(p, value);
	if (strcmp(key, "orig") == 0 || strcmp(key, "dsn") == 0 ||
	    strcmp(key, "error") == 0)
		return parse_rcpt_text(p, key, value);
	return parse_header(p, key, value);
}

PbEnvelope *
pb_envelope_parse(const char *text, gsize len, GError **error)
{
	g_autoptr(PbEnvelope) env = pb_envelope_new();
	Parse p = {env, NULL, 0};
	gsize pos = 0;
	guint lineno = 0;

	if (len > MAX_ENVELOPE || memchr(text, '\0', len) != NULL || len == 0 ||
	    text[len - 1] != '\n')
		goto bad;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		g_autofree char *line =
		    g_strndup(text + pos, (gsize)(nl - (text + pos)));

		pos = (gsize)(nl - text) + 1;
		lineno++;
		if (lineno == 1 ? strcmp(line, MAGIC) != 0
		                : !parse_line(&p, line))
			goto bad;
	}
	/* id, arrival, sender, size, smtputf8, notice, held are required */
	if ((p.seen & 0x7f) != 0x7f)
		goto bad;
	return g_steal_pointer(&env);
bad:
	g_set_error(error, PB_ERROR, PB_ERROR_DATA,
	            "malformed envelope (line %u)", lineno);
	return NULL;
}

/* ---- ids ---- */

char *
pb_queue_new_id(void)
{
	G_LOCK_DEFINE_STATIC(id);
	static gint64 last;
	static guint counter;
	gint64 now = g_get_real_time();
	gint64 usec;
	guint n;

	/* ids must be unique and increase in this process: the counter
	 * tells apart ids of one microsecond; when it runs out, borrow the
	 * next microsecond */
	G_LOCK(id);
	if (now > last) {
		last = now;
		counter = 0;
	} else if (++counter > 0xFFF) {
		last++;
		counter = 0;
	}
	usec = last;
	n = counter;
	G_UNLOCK(id);
	return g_strdup_printf("%013" G_GINT64_MODIFIER "X%06X%03X",
	                       usec & G_GINT64_CONSTANT(0xFFFFFFFFFFFFF),
	                       (guint)pb_self_pid() & 0xFFFFFF, n);
}

/* ---- the queue folders ---- */

static gboolean
not_a_folder(const char *path, GError **error)
{
	g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
	            "%s is not a folder (a symbolic link?): refused", path);
	return FALSE;
}

/* QUEUE/SUB, made 0700 when missing; it must be a folder of its own, not
 * a symbolic link to one. The common case, a folder that is there, costs
 * one lstat. */
static gboolean
make_folder(const char *path, GError **error)
{
	struct stat st;

	if (lstat(path, &st) == 0)
		return S_ISDIR(st.st_mode) || not_a_folder(path, error);
	if (errno != ENOENT)
		return pb_throw_errno(error, "lstat %s", path);
	if (!pb_mkdirs(path, 0700, error))
		return FALSE;
	if (lstat(path, &st) < 0)
		return pb_throw_errno(error, "lstat %s", path);
	return S_ISDIR(st.st_mode) || not_a_folder(path, error);
}

/* QUEUE/SUB as an fd (made when missing, as above): held for the fsyncs
 * after every create and rename in it, which then open nothing. */
static int
open_folder(const char *path, GError **error)
{
	int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	int fd = open(path, flags);

	if (fd < 0 && errno == ENOENT) {
		if (!make_folder(path, error))
			return -1;
		fd = open(path, flags);
	}
	if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
		not_a_folder(path, error);
	else if (fd < 0)
		pb_throw_errno(error, "open %s", path);
	return fd;
}

PbQueue *
pb_queue_open(const char *dir, GError **error)
{
	PbQueue *q = g_new0(PbQueue, 1);

	q->dir = g_strdup(dir);
	q->msg = g_build_filename(dir, "msg", NULL);
	q->env = g_build_filename(dir, "env", NULL);
	q->tmp = g_build_filename(dir, "tmp", NULL);
	q->env_fd = -1;
	if ((q->msg_fd = open_folder(q->msg, error)) < 0 ||
	    (q->env_fd = open_folder(q->env, error)) < 0 ||
	    !make_folder(q->tmp, error)) {
		pb_queue_free(q);
		return NULL;
	}
	return q;
}

void
pb_queue_free(PbQueue *q)
{
	if (q == NULL)
		return;
	pb_fd_clear(&q->msg_fd);
	pb_fd_clear(&q->env_fd);
	g_free(q->dir);
	g_free(q->msg);
	g_free(q->env);
	g_free(q->tmp);
	g_free(q->buf);
	g_free(q);
}

/* fsync of a held folder fd; PATH names it in the error. */
static gboolean
fsync_folder(int fd, const char *path, GError **error)
{
	if (fsync(fd) < 0)
		return pb_throw_errno(error, "fsync %s", path);
	return TRUE;
}

const char *
pb_queue_dir(PbQueue *q)
{
	return q->dir;
}

/* Every failure of the queue is temporary for the client (451). */
static gboolean
temp_failure(GError **error)
{
	if (error != NULL && *error != NULL && (*error)->domain == PB_ERROR)
		(*error)->code = PB_ERROR_TEMP;
	return FALSE;
}

/* Opens an existing queue file for reading: never through a symbolic
 * link (O_NOFOLLOW), never a FIFO's blocking open (O_NONBLOCK, harmless
 * on a regular file), and only a regular file (fstat). -1 and an error
 * that names the file otherwise. */
static int
open_regular(const char *path, int flags, GError **error)
{
	g_auto(PbFd) fd =
	    open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;

	if (fd < 0 && errno == ELOOP) {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "%s is a symbolic link: refused, never followed",
		            path);
		return -1;
	}
	if (fd < 0)
		return pb_throw_errno(error, "open %s", path), -1;
	if (fstat(fd, &st) < 0)
		return pb_throw_errno(error, "fstat %s", path), -1;
	if (!S_ISREG(st.st_mode)) {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "%s is not a regular file: refused", path);
		return -1;
	}
	return g_steal_fd(&fd);
}

/* Reads at most MAX_ENVELOPE octets of FD; NULL and PB_ERROR_DATA if the
 * file is larger. */
static char *
read_bounded(int fd, gsize *len, GError **error)
{
	g_autofree char *buf = g_malloc(BUF_SIZE);
	gsize size = BUF_SIZE, used = 0;

	for (;;) {
		ssize_t n;
		if (used == size) {
			if (size > MAX_ENVELOPE) {
				g_set_error(error, PB_ERROR, PB_ERROR_DATA,
				            "envelope larger than %d octets",
				            MAX_ENVELOPE);
				return NULL;
			}
			size *= 2;
			buf = g_realloc(buf, size);
		}
		n = read(fd, buf + used, size - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pb_throw_errno(error, "read");
			return NULL;
		}
		if (n == 0)
			break;
		used += (gsize)n;
	}
	*len = used;
	return g_steal_pointer(&buf);
}

static PbEnvelope *
read_envelope(PbQueue *q, const char *id, GError **error)
{
	g_autofree char *path = g_build_filename(q->env, id, NULL);
	g_auto(PbFd) fd = open_regular(path, O_RDONLY, error);
	g_autofree char *text = NULL;
	PbEnvelope *env;
	gsize len = 0;

	if (fd < 0)
		return NULL;
	if ((text = read_bounded(fd, &len, error)) == NULL ||
	    (env = pb_envelope_parse(text, len, error)) == NULL) {
		g_prefix_error(error, "%s: ", path);
		return NULL;
	}
	if (strcmp(env->id, id) != 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_DATA,
		            "%s: envelope of %s", path, env->id);
		pb_envelope_free(env);
		return NULL;
	}
	return env;
}

PbEnvelope *
pb_queue_read_envelope(PbQueue *q, const char *id, GError **error)
{
	if (!valid_id(id)) {
		g_set_error(error, PB_ERROR, PB_ERROR_NOTFOUND,
		            "%s: not a queue id", id);
		return NULL;
	}
	return read_envelope(q, id, error);
}

/* The envelope's mtime is when it is next due (the earliest
 * next_attempt of a pending recipient; 0 when something is due now), so
 * that pb_queue_list_due() finds the due entries with one stat each
 * instead of reading every envelope: an idle run over a large queue costs
 * a readdir and a stat per message. */
static gboolean
stamp_due(int fd, const PbEnvelope *env, GError **error)
{
	gint64 due = G_MAXINT32;
	struct timespec times[2] = {{0, UTIME_OMIT}, {0, 0}};

	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (r->state == PB_RCPT_FAILED)
			due = 0; /* a bounce is owed */
		else if (r->state == PB_RCPT_PENDING)
			due = MIN(due, r->next_attempt);
	}
	times[1].tv_sec = (time_t)MAX(due, 0);
	if (futimens(fd, times) < 0)
		return pb_throw_errno(error, "futimens");
	return TRUE;
}

/* Creates tmp/ID.PID for ID's next envelope; its name in *TMP. */
static int
create_envelope_tmp(PbQueue *q, const char *id, char **tmp, GError **error)
{
	g_autofree char *name = g_strdup_printf("%s.%ld", id, (long)pb_self_pid());
	g_autofree char *path = g_build_filename(q->tmp, name, NULL);
	int fd = open(
	    path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0 && errno == EEXIST) {
		/* left by a process of ours that died with this pid */
		(void)unlink(path);
		fd = open(path,
		          O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
		          0600);
	}
	if (fd < 0)
		pb_throw_errno(error, "create %s", path);
	else
		*tmp = g_steal_pointer(&path);
	return fd;
}

/* Writes ENV into FD (the empty file TMP), fsync, rename to env/ID,
 * fsync env/; FD is closed and TMP gone either way. The rename is
 * journaled with its source, so tmp/ needs no fsync. */
static gboolean
finish_envelope(PbQueue *q, const PbEnvelope *env, int fd, const char *tmp,
                GError **error)
{
	g_autoptr(GString) text = pb_envelope_format(env);
	g_autofree char *path = g_build_filename(q->env, env->id, NULL);
	g_auto(PbFd) owned = fd;

	if (!pb_write_all(fd, text->str, text->len, error) ||
	    !stamp_due(fd, env, error) ||
	    (fsync(fd) < 0 && !pb_throw_errno(error, "fsync %s", tmp)) ||
	    (close(g_steal_fd(&owned)) < 0 &&
	     !pb_throw_errno(error, "close %s", tmp)) ||
	    (rename(tmp, path) < 0 &&
	     !pb_throw_errno(error, "rename %s", tmp))) {
		(void)unlink(tmp);
		return FALSE;
	}
	return fsync_folder(q->env_fd, q->env, error);
}

/* Writes ENV as env/ID: tmp/ID.PID, fsync, rename, fsync env/. */
static gboolean
write_envelope(PbQueue *q, const PbEnvelope *env, GError **error)
{
	g_autofree char *tmp = NULL;
	int fd = create_envelope_tmp(q, env->id, &tmp, error);

	return fd >= 0 && finish_envelope(q, env, fd, tmp, error);
}

/* ---- a new message ---- */

/* The queue's buffer, made once and reused by each transaction (a session
 * of many messages, a runq pass sending bounces: no heap growth, no brk,
 * per message); a second transaction at the same time gets its own. */
static char *
tx_buffer(PbQueue *q)
{
	if (q->buf_busy)
		return g_malloc(BUF_SIZE);
	if (q->buf == NULL)
		q->buf = g_malloc(BUF_SIZE);
	q->buf_busy = TRUE;
	return q->buf;
}

PbQueueTx *
pb_queue_tx_begin(PbQueue *q, GError **error)
{
	for (int tries = 0; tries < 100; tries++) {
		g_autofree char *id = pb_queue_new_id();
		g_autofree char *path = g_build_filename(q->msg, id, NULL);
		int fd = open(
		    path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
		    0600);
		PbQueueTx *tx;

		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0) {
			pb_throw_errno(error, "create %s", path);
			temp_failure(error);
			return NULL;
		}
		/* held until commit, so that clean_stale leaves it alone */
		(void)flock(fd, LOCK_EX | LOCK_NB);
		tx = g_new0(PbQueueTx, 1);
		tx->q = q;
		tx->id = g_steal_pointer(&id);
		tx->fd = fd;
		tx->env_fd = -1;
		/* msg/ is fsync'ed and the envelope's file made now, while
		 * the client sends the data: neither waits after its final
		 * dot. A crash leaves only what clean_stale removes. */
		if (!fsync_folder(q->msg_fd, q->msg, error) ||
		    (tx->env_fd = create_envelope_tmp(q, tx->id, &tx->env_tmp,
		                                      error)) < 0) {
			temp_failure(error);
			pb_queue_tx_abort(tx);
			return NULL;
		}
		tx->buf = tx_buffer(q);
		return tx;
	}
	g_set_error(error, PB_ERROR, PB_ERROR_TEMP, "no free queue id");
	return NULL;
}

const char *
pb_queue_tx_id(PbQueueTx *tx)
{
	return tx->id;
}

void
pb_queue_tx_set_prepend(PbQueueTx *tx, const char *text)
{
	g_free(tx->prepend);
	tx->prepend = g_strdup(text);
}

static gboolean
tx_flush(PbQueueTx *tx, GError **error)
{
	if (!pb_write_all(tx->fd, tx->buf, tx->used, error)) {
		tx->failed = TRUE;
		return temp_failure(error);
	}
	tx->used = 0;
	return TRUE;
}

gboolean
pb_queue_tx_write(PbQueueTx *tx, const void *buf, gsize len, GError **error)
{
	if (tx->failed) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "queue %s: an earlier write failed", tx->id);
		return FALSE;
	}
	tx->size += len;
	if (tx->used + len > BUF_SIZE && !tx_flush(tx, error))
		return FALSE;
	if (len >= BUF_SIZE) {
		if (!pb_write_all(tx->fd, buf, len, error)) {
			tx->failed = TRUE;
			return temp_failure(error);
		}
		return TRUE;
	}
	memcpy(tx->buf + tx->used, buf, len);
	tx->used += len;
	return TRUE;
}

static void
tx_free(PbQueueTx *tx)
{
	if (tx->fd >= 0)
		(void)close(tx->fd);
	if (tx->env_fd >= 0)
		(void)close(tx->env_fd);
	if (tx->env_tmp != NULL)
		(void)unlink(tx->env_tmp);
	g_free(tx->env_tmp);
	g_free(tx->id);
	g_free(tx->prepend);
	if (tx->buf == tx->q->buf)
		tx->q->buf_busy = FALSE;
	else
		g_free(tx->buf);
	g_free(tx);
}

void
pb_queue_tx_abort(PbQueueTx *tx)
{
	g_autofree char *path = NULL;

	if (tx == NULL)
		return;
	path = g_build_filename(tx->q->msg, tx->id, NULL);
	(void)unlink(path);
	tx_free(tx);
}

/* The data: flush, fsync, close (msg/ was fsync'ed at the start). */
static gboolean
tx_finish_data(PbQueueTx *tx, GError **error)
{
	if (tx->failed) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "an earlier write failed");
		return FALSE;
	}
	if (!tx_flush(tx, error))
		return FALSE;
	if (fsync(tx->fd) < 0)
		return pb_throw_errno(error, "fsync");
	if (close(g_steal_fd(&tx->fd)) < 0)
		return pb_throw_errno(error, "close");
	return TRUE;
}

gboolean
pb_envelope_fits(const PbEnvelope *env, GError **error)
{
	if (env->rcpts->len > PB_QUEUE_MAX_RCPTS) {
		g_set_error(
		    error, PB_ERROR, PB_ERROR_PERM,
		    "5.5.3 too many recipients: %u (at most %d a message)",
		    env->rcpts->len, PB_QUEUE_MAX_RCPTS);
		return FALSE;
	}
	if (strlen(env->sender) > PB_ADDRESS_MAX_PATH)
		goto long_address;
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		if (strlen(r->address) > PB_ADDRESS_MAX_PATH ||
		    (r->orig && strlen(r->orig) > PB_ADDRESS_MAX_PATH))
			goto long_address;
	}
	return TRUE;
long_address:
	g_set_error(error, PB_ERROR, PB_ERROR_PERM,
	            "5.1.3 an address is longer than %d octets",
	            PB_ADDRESS_MAX_PATH);
	return FALSE;
}

gboolean
pb_queue_tx_commit(PbQueueTx *tx, PbEnvelope *env, GError **error)
{
	g_autofree char *envpath = g_build_filename(tx->q->env, tx->id, NULL);

	/* the envelope's bound (see above) holds from the start */
	if (!pb_envelope_fits(env, error)) {
		g_prefix_error(error, "queue %s: ", tx->id);
		pb_queue_tx_abort(tx);
		return FALSE;
	}

	if (env->prepend == NULL && tx->prepend != NULL)
		env->prepend = g_strdup(tx->prepend);
	if (env->prepend != NULL && !pb_envelope_prepend_valid(env->prepend)) {
		g_set_error(error, PB_ERROR, PB_ERROR_TEMP,
		            "queue %s: malformed header fields to prepend",
		            tx->id);
		pb_queue_tx_abort(tx);
		return FALSE;
	}
	g_free(env->id);
	env->id = g_strdup(tx->id);
	env->size = tx->size;
	if (env->arrival == 0)
		env->arrival = g_get_real_time() / G_USEC_PER_SEC;
	if (tx_finish_data(tx, error)) {
		/* finish_envelope closes it and removes the file */
		g_autofree char *tmp = g_steal_pointer(&tx->env_tmp);
		if (finish_envelope(tx->q, env, g_steal_fd(&tx->env_fd), tmp,
		                    error)) {
			tx_free(tx);
			return TRUE;
		}
	}
	/* not accepted: env first (it may be in place when only the fsync
	 * of env/ failed), then the data */
	(void)unlink(envpath);
	g_prefix_error(error, "queue %s: ", tx->id);
	pb_queue_tx_abort(tx);
	return temp_failure(error);
}

/* ---- queued messages ---- */

PbQueueEntry *
pb_queue_lock(PbQueue *q, const char *id, GError **error)
{
	g_autofree char *path = NULL;
	g_auto(PbFd) fd = -1;
	PbQueueEntry *e;
	PbEnvelope *env;

	if (!valid_id(id)) {
		g_set_error(error, PB_ERROR, PB_ERROR_NOTFOUND,
		            "%s: not a queue id", id);
		return NULL;
	}
	path = g_build_filename(q->msg, id, NULL);
	if ((fd = open_regular(path, O_RDONLY, error)) < 0) {
		g_prefix_error(error, "queue %s: ", id);
		return NULL;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK)
			g_set_error(error, PB_ERROR, PB_ERROR_BUSY,
			            "queue %s: locked by another process", id);
		else
			pb_throw_errno(error, "queue %s: flock", id);
		return NULL;
	}
	/* ENOENT now: it was finished while we were opening it */
	if ((env = read_envelope(q, id, error)) == NULL)
		return NULL;
	e = g_new0(PbQueueEntry, 1);
	e->q = q;
	e->id = g_strdup(id);
	e->fd = g_steal_fd(&fd);
	e->env = env;
	return e;
}

PbEnvelope *
pb_queue_entry_envelope(PbQueueEntry *e)
{
	return e->env;
}

int
pb_queue_entry_data_fd(PbQueueEntry *e)
{
	(void)lseek(e->fd, 0, SEEK_SET);
	return e->fd;
}

gboolean
pb_queue_entry_update(PbQueueEntry *e, GError **error)
{
	/* the id is the file's, whatever the caller did to the envelope */
	if (strcmp(e->env->id, e->id) != 0) {
		g_free(e->env->id);
		e->env->id = g_strdup(e->id);
	}
	if (!write_envelope(e->q, e->env, error)) {
		g_prefix_error(error, "queue %s: ", e->id);
		return temp_failure(error);
	}
	return TRUE;
}

gboolean
pb_queue_entry_remove(PbQueueEntry *e, GError **error)
{
	g_autofree char *env = g_build_filename(e->q->env, e->id, NULL);
	g_autofree char *msg = g_build_filename(e->q->msg, e->id, NULL);

	if (unlink(env) < 0 && errno != ENOENT)
		return pb_throw_errno(error, "queue %s: unlink", e->id);
	if (!fsync_folder(e->q->env_fd, e->q->env, error))
		return temp_failure(error);
	/* a msg/ file left by a crash here is garbage for clean_stale */
	if (unlink(msg) < 0 && errno != ENOENT)
		return pb_throw_errno(error, "queue %s: unlink", e->id);
	return TRUE;
}

void
pb_queue_entry_free(PbQueueEntry *e)
{
	if (e == NULL)
		return;
	if (e->fd >= 0)
		(void)close(e->fd);
	pb_envelope_free(e->env);
	g_free(e->id);
	g_free(e);
}

/* ---- unreadable envelopes ---- */

#define SALVAGE_READ (64 * 1024) /* what is read of a damaged envelope */
#define SALVAGE_RCPTS 50         /* recipients it lists at most */

/* A text field of a damaged envelope, for a human: unescaped if it can
 * be, and sanitised either way. */
static char *
salvage_field(const char *raw)
{
	g_autofree char *plain = unescape(raw);

	return pb_sanitize_text(plain ? plain : raw, 300);
}

char *
pb_envelope_salvage(const char *text, gsize len)
{
	g_autoptr(GString) out = g_string_new(NULL);
	g_autofree char *copy = g_strndup(text, len); /* cut at a NUL */
	g_auto(GStrv) lines = g_strsplit(copy, "\n", -1);
	guint rcpts = 0;

	for (guint i = 0; lines[i] != NULL; i++) {
		const char *l = lines[i];
		g_auto(GStrv) f = NULL;

		if (g_str_has_prefix(l, "sender ")) {
			g_autofree char *v = salvage_field(l + 7);
			g_string_append_printf(out, "sender: <%s>\n", v);
		} else if (g_str_has_prefix(l, "arrival ")) {
			g_autofree char *v = salvage_field(l + 8);
			g_string_append_printf(out, "arrival: %s\n", v);
		} else if (g_str_has_prefix(l, "rcpt ") &&
		           g_strv_length(f = g_strsplit(l + 5, " ", 5)) == 5 &&
		           rcpts++ < SALVAGE_RCPTS) {
			g_autofree char *state = salvage_field(f[0]);
			g_autofree char *v = salvage_field(f[4]);
			g_string_append_printf(out, "recipient: <%s> (%s)\n", v,
			                       state);
		}
	}
	if (rcpts > SALVAGE_RCPTS)
		g_string_append_printf(out, "and %u more recipients\n",
		                       rcpts - SALVAGE_RCPTS);
	if (out->len == 0)
		g_string_append(out, "nothing (no sender, no recipient)\n");
	return g_string_free(g_steal_pointer(&out), FALSE);
}

/* What can be read of env/ID: its first SALVAGE_READ octets. */
static char *
salvage_file(PbQueue *q, const char *id)
{
	g_autofree char *path = g_build_filename(q->env, id, NULL);
	g_auto(PbFd) fd = open_regular(path, O_RDONLY, NULL);
	g_autofree char *buf = NULL;
	gsize used = 0;

	if (fd < 0)
		return g_strdup("nothing (the envelope cannot be opened)\n");
	buf = g_malloc(SALVAGE_READ);
	while (used < SALVAGE_READ) {
		ssize_t n = read(fd, buf + used, SALVAGE_READ - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (gsize)n;
	}
	return pb_envelope_salvage(buf, used);
}

/* Links msg/ID to corrupt/ID.msg and moves env/ID to corrupt/ID.env,
 * each step fsync'ed; a step found done already (a crash between) is
 * skipped. The data is never without a name. */
static gboolean
move_to_corrupt(PbQueue *q, const char *id, GError **error)
{
	g_autofree char *dir = g_build_filename(q->dir, "corrupt", NULL);
	g_autofree char *msg = g_build_filename(q->msg, id, NULL);
	g_autofree char *env = g_build_filename(q->env, id, NULL);
	g_autofree char *msg_name = g_strdup_printf("%s.msg", id);
	g_autofree char *env_name = g_strdup_printf("%s.env", id);
	g_autofree char *msg_to = g_build_filename(dir, msg_name, NULL);
	g_autofree char *env_to = g_build_filename(dir, env_name, NULL);

	if (!make_folder(dir, error))
		return FALSE;
	if (link(msg, msg_to) < 0 && errno != EEXIST)
		return pb_throw_errno(error, "link %s", msg_to);
	if (!pb_fsync_dir(dir, error))
		return FALSE;
	if (rename(env, env_to) < 0 && errno != ENOENT)
		return pb_throw_errno(error, "rename %s", env);
	if (!pb_fsync_dir(dir, error) ||
	    !fsync_folder(q->env_fd, q->env, error))
		return FALSE;
	/* left behind by a crash, msg/ID is an orphan clean_stale removes:
	 * its data has a name in corrupt/ already */
	if (unlink(msg) < 0 && errno != ENOENT)
		return pb_throw_errno(error, "unlink %s", msg);
	return TRUE;
}

int
pb_queue_set_aside(PbQueue *q, const char *id, char **salvage, GError **error)
{
	g_autofree char *path = NULL;
	g_autoptr(PbEnvelope) env = NULL;
	g_autoptr(GError) why = NULL;
	g_auto(PbFd) fd = -1;

	*salvage = NULL;
	if (!valid_id(id)) {
		g_set_error(error, PB_ERROR, PB_ERROR_NOTFOUND,
		            "%s: not a queue id", id);
		return -1;
	}
	path = g_build_filename(q->msg, id, NULL);
	if ((fd = open_regular(path, O_RDONLY, error)) < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		g_set_error(error, PB_ERROR, PB_ERROR_BUSY,
		            "queue %s: locked by another process", id);
		return -1;
	}
	/* under the lock, the envelope may have been mended meanwhile */
	if ((env = read_envelope(q, id, &why)) != NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_BUSY,
		            "queue %s: the envelope is readable now", id);
		return -1;
	}
	/* only a damaged envelope goes: a read that failed for another
	 * reason (EIO, EMFILE) leaves the entry for the next run */
	if (!g_error_matches(why, PB_ERROR, PB_ERROR_DATA)) {
		g_propagate_error(error, g_steal_pointer(&why));
		return -1;
	}
	*salvage = salvage_file(q, id);
	if (!move_to_corrupt(q, id, error)) {
		g_prefix_error(error, "queue %s: ", id);
		g_clear_pointer(salvage, g_free);
		return -1;
	}
	return g_steal_fd(&fd);
}

static gint
compare_ids(gconstpointer a, gconstpointer b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in DIR but dotfiles; with IDS_ONLY only queue ids. */
static GPtrArray *
list_dir(const char *dir, gboolean ids_only, GError **error)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL) {
		pb_throw_errno(error, "opendir %s", dir);
		g_ptr_array_unref(names);
		return NULL;
	}
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' && (!ids_only || valid_id(de->d_name)))
			g_ptr_array_add(names, g_strdup(de->d_name));
		errno = 0;
	}
	if (errno != 0) {
		pb_throw_errno(error, "readdir %s", dir);
		g_ptr_array_unref(names);
		names = NULL;
	}
	(void)closedir(d);
	return names;
}

GPtrArray *
pb_queue_list(PbQueue *q, GError **error)
{
	GPtrArray *ids = list_dir(q->env, TRUE, error);

	if (ids != NULL)
		g_ptr_array_sort(ids, compare_ids);
	return ids;
}

GPtrArray *
pb_queue_list_due(PbQueue *q, gint64 now, GError **error)
{
	g_autoptr(GPtrArray) ids = pb_queue_list(q, error);
	GPtrArray *due;
	g_auto(PbFd) dfd = -1;

	if (ids == NULL)
		return NULL;
	dfd = open(q->env, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return pb_throw_errno(error, "open %s", q->env), NULL;
	due = g_ptr_array_new_with_free_func(g_free);
	for (guint i = 0; i < ids->len; i++) {
		struct stat st;
		char *id = g_ptr_array_index(ids, i);
		if (fstatat(dfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_mtime > now)
			continue; /* not due; a vanished one is skipped later */
		g_ptr_array_add(due, g_steal_pointer(&ids->pdata[i]));
	}
	return due;
}

static gboolean
is_old(const char *path, gint64 max_age)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	       (gint64)st.st_mtime <
	           g_get_real_time() / G_USEC_PER_SEC - max_age;
}

/* msg/ID is garbage when old, without an envelope and not locked (a
 * session writing it holds the lock). */
static gboolean
remove_orphan(PbQueue *q, const char *id, gint64 max_age)
{
	g_autofree char *msg = g_build_filename(q->msg, id, NULL);
	g_autofree char *env = g_build_filename(q->env, id, NULL);
	g_auto(PbFd) fd = -1;

	if (!is_old(msg, max_age) || access(env, F_OK) == 0 || errno != ENOENT)
		return FALSE;
	fd = open(msg, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
		return FALSE;
	if (access(env, F_OK) == 0 || errno != ENOENT)
		return FALSE;
	return unlink(msg) == 0;
}

guint
pb_queue_clean_stale(PbQueue *q, gint64 max_age, GError **error)
{
	g_autoptr(GPtrArray) msgs = list_dir(q->msg, FALSE, error);
	g_autoptr(GPtrArray) tmps = NULL;
	guint n = 0;

	if (msgs == NULL || (tmps = list_dir(q->tmp, FALSE, error)) == NULL)
		return 0;
	for (guint i = 0; i < msgs->len; i++)
		n += remove_orphan(q, g_ptr_array_index(msgs, i), max_age);
	for (guint i = 0; i < tmps->len; i++) {
		g_autofree char *path =
		    g_build_filename(q->tmp, g_ptr_array_index(tmps, i), NULL);
		if (is_old(path, max_age) && unlink(path) == 0)
			n++;
	}
	return n;
}

/* ---- mailq ---- */

static void
json_string_or_null(GString *out, const char *text)
{
	if (text == NULL)
		g_string_append(out, "null");
	else
		pb_json_string(out, text);
}

static void
json_rcpt(GString *out, const PbRecipient *r)
{
	g_string_append(out, "{\"address\":");
	pb_json_string(out, r->address);
	g_string_append(out, ",\"orig\":");
	json_string_or_null(out, r->orig);
	g_string_append_printf(
	    out,
	    ",\"state\":\"%s\",\"attempts\":%u,"
	    "\"last_attempt\":%" G_GINT64_FORMAT
	    ",\"next_attempt\":%" G_GINT64_FORMAT ",\"last_error\":",
	    strstate[r->state], r->attempts, r->last_attempt, r->next_attempt);
	json_string_or_null(out, r->last_error);
	g_string_append(out, ",\"dsn\":");
	json_string_or_null(out, r->dsn);
	g_string_append_c(out, '}');
}

static void
json_envelope(GString *out, const PbEnvelope *env, gint64 bounce_after)
{
	g_string_append(out, "{\"id\":");
	pb_json_string(out, env->id);
	g_string_append_printf(out,
	                       ",\"size\":%" G_GUINT64_FORMAT
	                       ",\"arrival\":%" G_GINT64_FORMAT ",\"sender\":",
	                       pb_envelope_wire_size(env), env->arrival);
	pb_json_string(out, env->sender);
	g_string_append_printf(
	    out,
	    ",\"held\":%s,\"notice_sent\":%s,\"bounce_at\":%" G_GINT64_FORMAT
	    ",\"recipients\":[",
	    env->held ? "true" : "false", env->notice_sent ? "true" : "false",
	    env->arrival + bounce_after);
	for (guint i = 0; i < env->rcpts->len; i++) {
		if (i > 0)
			g_string_append_c(out, ',');
		json_rcpt(out, g_ptr_array_index(env->rcpts, i));
	}
	g_string_append(out, "]}");
}

/* Postfix's mailq layout: the recipients under the sender's column. */
#define INDENT "                                         "

static void
text_envelope(GString *out, const PbEnvelope *env)
{
	g_autoptr(GDateTime) t = pb_date_local(env->arrival);
	g_autofree char *when =
	    t ? g_date_time_format(t, "%a %b %e %H:%M:%S") : g_strdup("?");
	g_autofree char *sender = pb_sanitize_text(env->sender, 1000);

	g_string_append_printf(out, "%s%c %8" G_GUINT64_FORMAT " %s  %s\n",
	                       env->id, env->held ? '!' : ' ',
	                       pb_envelope_wire_size(env), when,
	                       env->sender[0] ? sender : "MAILER-DAEMON");
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = g_ptr_array_index(env->rcpts, i);
		g_autofree char *addr = pb_sanitize_text(r->address, 1000);
		g_autofree char *err = pb_sanitize_text(r->last_error, 1000);

		if (r->state != PB_RCPT_PENDING && r->state != PB_RCPT_FAILED)
			continue;
		if (r->last_error != NULL)
			g_string_append_printf(out, INDENT "(%s)\n", err);
		g_string_append_printf(out, INDENT "%s\n", addr);
	}
	g_string_append_c(out, '\n');
}

/* The entries set aside in corrupt/ (unreadable envelopes), one each:
 * in JSON {"id": ID, "corrupt": true}; COMMA: entries came before. */
static void
list_corrupt(PbQueue *q, GString *out, gboolean json, gboolean comma)
{
	g_autofree char *dir = g_build_filename(q->dir, "corrupt", NULL);
	g_autoptr(GPtrArray) names = list_dir(dir, FALSE, NULL);
	g_autoptr(GHashTable) ids = g_hash_table_new(g_str_hash, g_str_equal);

	if (names != NULL)
		g_ptr_array_sort(names, compare_ids);
	for (guint i = 0; names != NULL && i < names->len; i++) {
		char *name = g_ptr_array_index(names, i);
		char *dot = strrchr(name, '.');
		if (dot == NULL || (strcmp(dot, ".env") && strcmp(dot, ".msg")))
			continue;
		*dot = '\0';
		if (!valid_id(name) || !g_hash_table_add(ids, name))
			continue;
		if (json)
			g_string_append_printf(
			    out, "%s{\"id\":\"%s\",\"corrupt\":true}",
			    comma ? "," : "", name);
		else
			g_string_append_printf(out,
			                       "%s!  (unreadable envelope: set "
			                       "aside in corrupt/)\n\n",
			                       name);
		comma = TRUE;
	}
}

static void
listing_close(GString *out, gboolean json, guint64 octets, guint n)
{
	if (json)
		g_string_append(out, "]\n");
	else if (n == 0)
		g_string_append(out, "Mail queue is empty\n");
	else
		g_string_append_printf(
		    out, "-- %" G_GUINT64_FORMAT " Kbytes in %u Request%s.\n",
		    (octets + 1023) / 1024, n, n == 1 ? "" : "s");
}

GString *
pb_queue_format_listing(PbQueue *q, gboolean json, gint64 bounce_after,
                        GError **error)
{
	return pb_queue_format_listing_of(q, json, bounce_after, NULL, NULL,
	                                  error);
}

GString *
pb_queue_format_listing_of(PbQueue *q, gboolean json, gint64 bounce_after,
                           PbQueueFilter keep, gpointer data, GError **error)
{
	g_autoptr(GPtrArray) ids = pb_queue_list(q, error);
	GString *out;
	guint64 octets = 0;
	guint n = 0;

	if (ids == NULL)
		return NULL;
	out = g_string_new(json ? "[" : "");
	if (!json && ids->len > 0)
		g_string_append(out,
		                "-Queue ID-             --Size-- "
		                "----Arrival Time---- -Sender/Recipient-----"
		                "--\n");
	for (guint i = 0; i < ids->len; i++) {
		const char *id = g_ptr_array_index(ids, i);
		g_autoptr(GError) err = NULL;
		g_autoptr(PbEnvelope) env = read_envelope(q, id, &err);

		if (env == NULL &&
		    g_error_matches(err, PB_ERROR, PB_ERROR_NOTFOUND))
			continue; /* delivered meanwhile */
		if (keep && (env == NULL || !keep(env, data)))
			continue;
		if (env == NULL) {
			if (json)
				continue;
			g_string_append_printf(out, "%s  (%s)\n\n", id,
			                       err->message);
			continue;
		}
		if (json && n > 0)
			g_string_append_c(out, ',');
		if (json)
			json_envelope(out, env, bounce_after);
		else
			text_envelope(out, env);
		octets += pb_envelope_wire_size(env);
		n++;
	}
	/* whose they were is unknown: only the full listing shows them */
	if (keep == NULL)
		list_corrupt(q, out, json, n > 0);
	listing_close(out, json, octets, n);
	return out;
}
