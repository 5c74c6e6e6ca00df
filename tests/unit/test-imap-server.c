/* test-imap-server.c - the IMAP session driven without a socket: a
 * temporary Maildir tree behind mailfolder, fake hooks for passwords and
 * connection slots, replies collected in a GString. Every conversation
 * can be fed whole or one byte at a time (the replies must not differ). */
#include "imap-server.h"

#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
	GString *replies;
	PbLineOut out;
	PbImapServer *s;
	char *tmp, *maildir;
	PbImapSettings settings;
	gboolean bytewise;
	gboolean blocked, limit;
	guint checks, delays, deliveries;
	PbImapAction last;
} F;

static gboolean
h_auth(void *data, const char *user, const char *pass)
{
	((F *)data)->checks++;
	return g_str_equal(user, "alice") && g_str_equal(pass, "s3cret");
}

static gboolean
h_blocked(void *data)
{
	return ((F *)data)->blocked;
}

static PbImapAccount
h_open(void *data, const char *user, char **maildir)
{
	F *f = data;

	if (f->limit)
		return PB_IMAP_ACCOUNT_LIMIT;
	*maildir = g_strdup(f->maildir);
	return PB_IMAP_ACCOUNT_OK;
}

static const PbImapHooks hooks = {
    .authenticate = h_auth,
    .blocked = h_blocked,
    .open_account = h_open,
};

static void
out_write(void *ctx, const char *data, gsize len)
{
	g_string_append_len(ctx, data, len);
}

static void
start(F *f)
{
	f->s = pb_imap_server_new(&hooks, f, &f->out, &f->settings);
	pb_imap_server_greet(f->s);
}

static void
setup(F *f, gconstpointer bytewise)
{
	f->replies = g_string_new(NULL);
	f->out.write = out_write;
	f->out.ctx = f->replies;
	f->tmp = g_dir_make_tmp("imap-server-XXXXXX", NULL);
	g_assert_nonnull(f->tmp);
	f->maildir = g_build_filename(f->tmp, "alice", NULL);
	f->settings.hostname = "mx.example.org";
	f->settings.plaintext_ok = TRUE;
	f->settings.tls_available = TRUE;
	f->settings.max_message_size = 1000;
	f->bytewise = GPOINTER_TO_INT(bytewise);
	start(f);
}

static void
rm_rf(const char *path)
{
	GDir *d = g_dir_open(path, 0, NULL);
	const char *name;

	if (d == NULL) {
		g_unlink(path);
		return;
	}
	while ((name = g_dir_read_name(d)) != NULL) {
		g_autofree char *p = g_build_filename(path, name, NULL);
		if (g_file_test(p, G_FILE_TEST_IS_DIR) &&
		    !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
			rm_rf(p);
		else
			g_unlink(p);
	}
	g_dir_close(d);
	g_rmdir(path);
}

static void
teardown(F *f, gconstpointer data)
{
	pb_imap_server_free(f->s);
	rm_rf(f->tmp);
	g_free(f->tmp);
	g_free(f->maildir);
	g_string_free(f->replies, TRUE);
}

/* Feeds INPUT (whole or byte by byte), acting on the actions as the
 * socket side would. */
static void
talk(F *f, const char *input)
{
	gsize len = strlen(input), off = 0;

	while (off < len) {
		gsize n = f->bytewise ? 1 : len - off;
		gsize used = pb_imap_server_feed(f->s, input + off, n);
		off += used;
		f->last = pb_imap_server_next_action(f->s);
		if (f->last == PB_IMAP_AUTH_DELAY)
			f->delays++;
		if (f->last == PB_IMAP_CLOSE)
			break;
		if (f->last == PB_IMAP_STARTTLS)
			break; /* the caller purges the rest */
		if (used == 0 && !f->bytewise)
			break;
	}
}

/* The replies since the last take(), and forget them. */
static char *
take(F *f)
{
	char *r = g_strdup(f->replies->str);

	g_string_truncate(f->replies, 0);
	return r;
}

static char *
say(F *f, const char *input)
{
	talk(f, input);
	return take(f);
}

#define ASSERT_SAY(f, in, want)                                                \
	do {                                                                   \
		g_autofree char *got_ = say(f, in);                            \
		g_assert_cmpstr(got_, ==, want);                               \
	} while (0)

/* The reply starts with WANT (the rest is mailfolder's wording). */
#define ASSERT_PREFIX(f, in, want)                                             \
	do {                                                                   \
		g_autofree char *got_ = say(f, in);                            \
		if (!g_str_has_prefix(got_, want))                             \
			g_error("%s: \"%s\" does not start with \"%s\"",       \
			        G_STRLOC, got_, want);                         \
	} while (0)

static gboolean
has(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

#define ASSERT_HAS(got, needle)                                                \
	do {                                                                   \
		if (!has(got, needle))                                         \
			g_error("%s: no \"%s\" in:\n%s", G_STRLOC, needle,     \
			        got);                                          \
	} while (0)
#define ASSERT_HAS_NOT(got, needle)                                            \
	do {                                                                   \
		if (has(got, needle))                                          \
			g_error("%s: \"%s\" unexpected in:\n%s", G_STRLOC,     \
			        needle, got);                                  \
	} while (0)

/* A delivery as deliver/runq make it: a file in new/ with LF ends. */
static char *
deliver(F *f, const char *folder, const char *text)
{
	g_autofree char *dir =
	    folder ? g_strdup_printf("%s/.%s", f->maildir, folder)
	           : g_strdup(f->maildir);
	g_autofree char *name =
	    g_strdup_printf("17000000%02u.M%uP1.test,S=%zu", f->deliveries,
	                    f->deliveries, strlen(text));
	char *path;

	f->deliveries++;
	for (guint k = 0; k < 3; k++) {
		static const char *const subs[] = {"tmp", "new", "cur"};
		g_autofree char *p = g_build_filename(dir, subs[k], NULL);
		g_assert_cmpint(g_mkdir_with_parents(p, 0700), ==, 0);
	}
	path = g_build_filename(dir, "new", name, NULL);
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	return path;
}

static const char msg1[] = "From: Ann <ann@example.org>\n"
                           "To: alice@example.org\n"
                           "Subject: hello one\n"
                           "Date: Mon, 30 Nov 2026 10:00:00 +0000\n"
                           "\n"
                           "first body line\n"
                           "second\n";
static const char msg2[] = "From: bob@example.org\n"
                           "Subject: second message\n"
                           "Date: Tue, 1 Dec 2026 10:00:00 +0000\n"
                           "\n"
                           "Banana split\n";
static const char msg3[] = "From: carol@example.org\n"
                           "Subject: third\n"
                           "\n"
                           "x\n";

static void
login(F *f)
{
	g_autofree char *r = say(f, "L1 LOGIN alice s3cret\r\n");
	ASSERT_HAS(r, "L1 OK [CAPABILITY IMAP4rev1");
}

static void
login_select(F *f)
{
	g_autofree char *r = NULL;

	login(f);
	r = say(f, "S1 SELECT INBOX\r\n");
	ASSERT_HAS(r, "S1 OK [READ-WRITE] Select completed.\r\n");
}

/* ------------------------------------------------------------------ */

static void
test_greeting(F *f, gconstpointer d)
{
	g_autofree char *g = take(f);

	g_assert_cmpstr(g, ==,
	                "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID ENABLE "
	                "IDLE NAMESPACE UNSELECT CHILDREN LIST-EXTENDED "
	                "SPECIAL-USE LIST-STATUS ESEARCH UIDPLUS MOVE "
	                "STATUS=SIZE APPENDLIMIT=1000 STARTTLS AUTH=PLAIN] "
	                "mx.example.org IMAP4rev1 ready.\r\n");
	ASSERT_SAY(f, "a NOOP\r\n", "a OK NOOP completed.\r\n");
	ASSERT_SAY(f, "b ID NIL\r\n",
	           "* ID (\"name\" \"pillarbox\")\r\nb OK ID completed.\r\n");
	ASSERT_SAY(f, "c ID (\"name\" \"test\")\r\n",
	           "* ID (\"name\" \"pillarbox\")\r\nc OK ID completed.\r\n");
	ASSERT_SAY(f, "d LOGOUT\r\n",
	           "* BYE Logging out\r\nd OK Logout completed.\r\n");
	g_assert_cmpint(f->last, ==, PB_IMAP_CLOSE);
	g_assert_cmpuint(pb_imap_server_feed(f->s, "e NOOP\r\n", 8), ==, 0);
}

static void
test_not_auth_state(F *f, gconstpointer d)
{
	g_free(take(f));
	ASSERT_SAY(f, "a SELECT INBOX\r\n",
	           "a BAD Error in IMAP command SELECT: Login first.\r\n");
	ASSERT_SAY(f, "b FETCH 1 FLAGS\r\n",
	           "b BAD Error in IMAP command FETCH: Login first.\r\n");
	ASSERT_SAY(f, "c ENABLE IDLE\r\n",
	           "c BAD Error in IMAP command ENABLE: Login first.\r\n");
	ASSERT_SAY(f, "d FOO\r\n",
	           "d BAD Error in IMAP command received by server.\r\n");
	g_assert_null(pb_imap_server_user(f->s));
	g_assert_cmpuint(pb_imap_server_timeout_seconds(f->s, 3600), ==, 180);
	login(f);
	g_assert_cmpstr(pb_imap_server_user(f->s), ==, "alice");
	g_assert_cmpuint(pb_imap_server_timeout_seconds(f->s, 60), ==, 1800);
	g_assert_cmpuint(pb_imap_server_timeout_seconds(f->s, 3600), ==, 3600);
	ASSERT_SAY(f, "e LOGIN alice s3cret\r\n",
	           "e BAD Error in IMAP command LOGIN: Already logged in.\r\n");
	ASSERT_SAY(f, "f STARTTLS\r\n",
	           "f BAD Error in IMAP command STARTTLS: Already logged "
	           "in.\r\n");
	ASSERT_SAY(f, "g FETCH 1 FLAGS\r\n",
	           "g BAD Error in IMAP command FETCH: No mailbox "
	           "selected.\r\n");
	ASSERT_SAY(
	    f, "h CLOSE\r\n",
	    "h BAD Error in IMAP command CLOSE: No mailbox selected.\r\n");
}

static void
test_login_failures(F *f, gconstpointer d)
{
	g_free(take(f));
	ASSERT_SAY(f, "a LOGIN alice wrong\r\n",
	           "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
	g_assert_cmpint(f->last, ==, PB_IMAP_AUTH_DELAY);
	ASSERT_SAY(f, "b LOGIN nobody s3cret\r\n",
	           "b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
	ASSERT_SAY(f, "c AUTHENTICATE PLAIN AGFsaWNlAG5v\r\n",
	           "c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
	           "* BYE Too many invalid authentication attempts.\r\n");
	g_assert_cmpint(f->last, ==, PB_IMAP_CLOSE);
	g_assert_cmpuint(f->delays, ==, 2);
	g_assert_cmpuint(f->checks, ==, 3);
}

static void
test_login_pause_stops_input(F *f, gconstpointer d)
{
	const char *in = "a LOGIN alice wrong\r\nb LOGIN alice s3cret\r\n";
	gsize used;

	g_free(take(f));
	/* the pause comes before the pipelined second try is read */
	used = pb_imap_server_feed(f->s, in, strlen(in));
	g_assert_cmpuint(used, ==, strlen("a LOGIN alice wrong\r\n"));
	g_assert_cmpint(pb_imap_server_next_action(f->s), ==,
	                PB_IMAP_AUTH_DELAY);
	g_assert_cmpint(pb_imap_server_next_action(f->s), ==, PB_IMAP_NONE);
}

static void
test_login_blocked_and_limit(F *f, gconstpointer d)
{
	g_free(take(f));
	f->limit = TRUE;
	ASSERT_SAY(f, "a LOGIN alice s3cret\r\n",
	           "a NO [LIMIT] Too many connections of this user, try "
	           "later.\r\n");
	g_assert_null(pb_imap_server_user(f->s));
	f->limit = FALSE;
	f->blocked = TRUE;
	ASSERT_SAY(f, "b LOGIN alice s3cret\r\n",
	           "b NO [UNAVAILABLE] Too many failed logins, try later.\r\n"
	           "* BYE Too many failed logins.\r\n");
	g_assert_cmpint(f->last, ==, PB_IMAP_CLOSE);
	g_assert_cmpuint(f->checks, ==, 1);
}

static void
test_authenticate(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(take(f));
	ASSERT_SAY(f, "a AUTHENTICATE PLAIN\r\n", "+ \r\n");
	ASSERT_SAY(f, "*\r\n", "a BAD Authentication aborted by client.\r\n");
	ASSERT_SAY(f, "b AUTHENTICATE CRAM-MD5\r\n",
	           "b NO Unsupported authentication mechanism.\r\n");
	ASSERT_SAY(f, "c AUTHENTICATE PLAIN\r\n", "+ \r\n");
	/* "\0alice\0s3cret" */
	r = say(f, "AGFsaWNlAHMzY3JldA==\r\n");
	ASSERT_HAS(r, "c OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ");
	ASSERT_HAS_NOT(r, "AUTH=PLAIN");
	ASSERT_HAS_NOT(r, "STARTTLS");
	g_assert_cmpstr(pb_imap_server_user(f->s), ==, "alice");
}

static void
test_authenticate_ir(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(take(f));
	r = say(f, "a AUTHENTICATE PLAIN YWxpY2UAYWxpY2UAczNjcmV0\r\n");
	ASSERT_HAS(r, "a OK [CAPABILITY ");
	g_assert_cmpstr(pb_imap_server_user(f->s), ==, "alice");
}

static void
test_logindisabled_starttls(F *f, gconstpointer d)
{
	const char *in = "a STARTTLS\r\nb LOGIN alice s3cret\r\n";
	g_autofree char *g = NULL;
	gsize used;

	pb_imap_server_free(f->s);
	g_string_truncate(f->replies, 0);
	f->settings.plaintext_ok = FALSE;
	start(f);
	g = take(f);
	ASSERT_HAS(g, " STARTTLS LOGINDISABLED] ");
	ASSERT_HAS_NOT(g, "AUTH=PLAIN");
	ASSERT_SAY(f, "x LOGIN alice s3cret\r\n",
	           "x NO [PRIVACYREQUIRED] Plaintext authentication disallowed "
	           "on non-secure (SSL/TLS) connections.\r\n");
	g_assert_cmpuint(f->checks, ==, 0);
	/* STARTTLS: nothing pipelined after it is consumed */
	used = pb_imap_server_feed(f->s, in, strlen(in));
	g_assert_cmpuint(used, ==, strlen("a STARTTLS\r\n"));
	g_assert_cmpint(pb_imap_server_next_action(f->s), ==, PB_IMAP_STARTTLS);
	g_free(g);
	g = take(f);
	g_assert_cmpstr(g, ==, "a OK Begin TLS negotiation now.\r\n");
	/* half a command before the handshake is forgotten too */
	g_assert_cmpuint(pb_imap_server_feed(f->s, "z NO", 4), ==, 4);
	pb_imap_server_tls_started(f->s);
	g_free(g);
	g = say(f, "c CAPABILITY\r\n");
	ASSERT_HAS(g, " AUTH=PLAIN\r\nc OK Capability completed.\r\n");
	ASSERT_HAS_NOT(g, "STARTTLS");
	ASSERT_HAS_NOT(g, "LOGINDISABLED");
	ASSERT_SAY(f, "d STARTTLS\r\n", "d BAD TLS is already active.\r\n");
	login(f);
}

static void
test_auth_commands(F *f, gconstpointer d)
{
	g_free(take(f));
	login(f);
	ASSERT_SAY(f, "a NAMESPACE\r\n",
	           "* NAMESPACE ((\"\" \".\")) NIL NIL\r\na OK Namespace "
	           "completed.\r\n");
	ASSERT_SAY(f, "b ENABLE CONDSTORE\r\n",
	           "* ENABLED\r\nb OK Enabled.\r\n");
	ASSERT_SAY(
	    f, "c LIST \"\" \"\"\r\n",
	    "* LIST (\\Noselect) \".\" \"\"\r\nc OK List completed.\r\n");
	ASSERT_SAY(f, "d NOOP\r\n", "d OK NOOP completed.\r\n");
	ASSERT_SAY(f, "e CHECK\r\n",
	           "e BAD Error in IMAP command CHECK: No mailbox "
	           "selected.\r\n");
}

static void
test_list_folders(F *f, gconstpointer d)
{
	g_autofree char *r = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL;

	g_free(take(f));
	login(f);
	r = say(f, "a LIST \"\" \"*\"\r\n");
	ASSERT_HAS(r, "* LIST (\\HasNoChildren) \".\" \"INBOX\"\r\n");
	ASSERT_HAS(r, "* LIST (\\HasNoChildren \\Drafts) \".\" \"Drafts\"\r\n");
	ASSERT_HAS(r, "* LIST (\\HasNoChildren \\Sent) \".\" \"Sent\"\r\n");
	ASSERT_HAS(r, "* LIST (\\HasNoChildren \\Trash) \".\" \"Trash\"\r\n");
	ASSERT_HAS(r, "\\Junk) \".\" \"Junk\"\r\n");
	ASSERT_HAS(r, "\\Archive) \".\" \"Archive\"\r\n");
	ASSERT_HAS(r, "a OK List completed.\r\n");
	ASSERT_SAY(f, "b CREATE Work.Projects.\r\n",
	           "b OK Create completed.\r\n");
	ASSERT_SAY(f, "c CREATE Work\r\n",
	           "c NO [ALREADYEXISTS] Mailbox already exists: Work\r\n");
	r2 = say(f, "d LIST \"\" \"Work%\"\r\n");
	g_assert_cmpstr(r2, ==,
	                "* LIST (\\HasChildren) \".\" \"Work\"\r\n"
	                "d OK List completed.\r\n");
	r3 = say(f, "e LIST \"Work.\" \"%\"\r\n");
	g_assert_cmpstr(r3, ==,
	                "* LIST (\\HasNoChildren) \".\" \"Work.Projects\"\r\n"
	                "e OK List completed.\r\n");
	ASSERT_SAY(f, "f RENAME Work.Projects Work.Done\r\n",
	           "f OK Rename completed.\r\n");
	ASSERT_SAY(f, "g SUBSCRIBE Work.Done\r\n",
	           "g OK Subscribe completed.\r\n");
	r4 = say(f, "h LSUB \"\" \"Work.*\"\r\n");
	g_assert_cmpstr(r4, ==,
	                "* LSUB () \".\" \"Work.Done\"\r\n"
	                "h OK Lsub completed.\r\n");
	g_free(r4);
	r4 = say(f, "h2 LSUB \"\" \"W%\"\r\n");
	g_assert_cmpstr(r4, ==,
	                "* LSUB (\\Noselect) \".\" \"Work\"\r\n"
	                "h2 OK Lsub completed.\r\n");
	g_free(r4);
	r4 = say(f, "h3 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"W%\"\r\n");
	g_assert_cmpstr(r4, ==,
	                "* LIST (\\HasChildren) \".\" \"Work\" "
	                "(\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
	                "h3 OK List completed.\r\n");
	g_free(r4);
	r4 = say(f, "i LIST (SUBSCRIBED) \"\" \"Work*\" RETURN (CHILDREN)\r\n");
	g_assert_cmpstr(r4, ==,
	                "* LIST (\\Subscribed \\HasNoChildren) \".\" "
	                "\"Work.Done\"\r\n"
	                "i OK List completed.\r\n");
	g_free(r4);
	r4 = say(f, "j LIST (SPECIAL-USE) \"\" \"*\"\r\n");
	ASSERT_HAS(r4, "\"Trash\"");
	ASSERT_HAS_NOT(r4, "INBOX");
	ASSERT_HAS_NOT(r4, "Work");
	ASSERT_SAY(f, "k UNSUBSCRIBE Work.Done\r\n",
	           "k OK Unsubscribe completed.\r\n");
	ASSERT_SAY(f, "l DELETE Work.Done\r\n", "l OK Delete completed.\r\n");
	ASSERT_PREFIX(f, "m DELETE Nope\r\n", "m NO [NONEXISTENT] ");
	ASSERT_SAY(f, "n CREATE \"a/b\"\r\n",
	           "n NO [CANNOT] Character not allowed in mailbox name\r\n");
	ASSERT_PREFIX(f, "o SELECT ..\r\n", "o NO [CANNOT] ");
}

static void
test_status_list_status(F *f, gconstpointer d)
{
	g_autofree char *r = NULL, *r2 = NULL;

	g_free(take(f));
	g_free(deliver(f, NULL, msg1));
	g_free(deliver(f, NULL, msg2));
	login(f);
	r = say(f, "a STATUS INBOX (MESSAGES UNSEEN RECENT SIZE)\r\n");
	g_assert_cmpstr(r, ==,
	                "* STATUS \"INBOX\" (MESSAGES 2 RECENT 2 UNSEEN 2 "
	                "SIZE 240)\r\na OK Status completed.\r\n");
	ASSERT_PREFIX(f, "b STATUS Nope (MESSAGES)\r\n", "b NO [NONEXISTENT] ");
	r2 = say(
	    f, "c LIST \"\" \"INBOX\" RETURN (STATUS (MESSAGES UIDNEXT))\r\n");
	g_assert_cmpstr(r2, ==,
	                "* LIST (\\HasNoChildren) \".\" \"INBOX\"\r\n"
	                "* STATUS \"INBOX\" (MESSAGES 2 UIDNEXT 3)\r\n"
	                "c OK List completed.\r\n");
}

static void
test_select_empty_search(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(take(f));
	login(f);
	r = say(f, "a SELECT inbox\r\n");
	ASSERT_HAS(r, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen "
	              "\\Draft)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged "
	              "\\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n"
	              "* 0 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY ");
	ASSERT_HAS(r, "* OK [UIDNEXT 1] Predicted next UID\r\n"
	              "a OK [READ-WRITE] Select completed.\r\n");
	ASSERT_HAS_NOT(r, "UNSEEN");
	ASSERT_SAY(f, "b UID SEARCH 1:* NOT DELETED\r\n",
	           "* SEARCH\r\nb OK Search completed.\r\n");
	ASSERT_SAY(f, "c SEARCH ALL\r\n",
	           "* SEARCH\r\nc OK Search completed.\r\n");
	ASSERT_SAY(
	    f, "d SEARCH RETURN (COUNT) ALL\r\n",
	    "* ESEARCH (TAG \"d\") COUNT 0\r\nd OK Search completed.\r\n");
	ASSERT_SAY(f, "e FETCH 1:* FLAGS\r\n",
	           "e BAD Error in IMAP command: Invalid messageset\r\n");
	ASSERT_SAY(f, "f UID FETCH 1:* FLAGS\r\n", "f OK Fetch completed.\r\n");
	ASSERT_SAY(f, "g EXPUNGE\r\n", "g OK Expunge completed.\r\n");
	ASSERT_SAY(f, "h UNSELECT\r\n", "h OK Unselect completed.\r\n");
	ASSERT_SAY(f, "i CHECK\r\n",
	           "i BAD Error in IMAP command CHECK: No mailbox "
	           "selected.\r\n");
}

static void
test_select_fetch(F *f, gconstpointer d)
{
	g_autofree char *r = NULL, *r2 = NULL, *r3 = NULL;

	g_free(take(f));
	g_free(deliver(f, NULL, msg1));
	g_free(deliver(f, NULL, msg2));
	g_free(deliver(f, NULL, msg3));
	login(f);
	r = say(f, "a SELECT INBOX\r\n");
	ASSERT_HAS(r, "* 3 EXISTS\r\n* 3 RECENT\r\n* OK [UNSEEN 1] First "
	              "unseen.\r\n");
	ASSERT_HAS(r, "* OK [UIDNEXT 4] Predicted next UID\r\n");
	ASSERT_SAY(f, "b FETCH 1:3 (UID RFC822.SIZE FLAGS)\r\n",
	           "* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE 138)\r\n"
	           "* 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE 102)\r\n"
	           "* 3 FETCH (UID 3 FLAGS (\\Recent) RFC822.SIZE 46)\r\n"
	           "b OK Fetch completed.\r\n");
	ASSERT_SAY(f, "c UID FETCH 2 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n",
	           "* 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] {27}\r\n"
	           "Subject: second message\r\n\r\n)\r\n"
	           "c OK Fetch completed.\r\n");
	ASSERT_SAY(f, "d FETCH 2 BODY.PEEK[TEXT]<0.6>\r\n",
	           "* 2 FETCH (BODY[TEXT]<0> {6}\r\nBanana)\r\n"
	           "d OK Fetch completed.\r\n");
	ASSERT_SAY(
	    f, "e FETCH 3 BODY[TEXT]\r\n",
	    "* 3 FETCH (FLAGS (\\Seen \\Recent) BODY[TEXT] {3}\r\nx\r\n)\r\n"
	    "e OK Fetch completed.\r\n");
	ASSERT_SAY(
	    f, "f FETCH 3 RFC822.HEADER\r\n",
	    "* 3 FETCH (RFC822.HEADER {43}\r\nFrom: carol@example.org\r\n"
	    "Subject: third\r\n\r\n)\r\nf OK Fetch completed.\r\n");
	r2 = say(f, "g FETCH 1 (ENVELOPE BODYSTRUCTURE INTERNALDATE)\r\n");
	ASSERT_HAS(r2, "* 1 FETCH (INTERNALDATE \"");
	ASSERT_HAS(r2, "ENVELOPE (\"Mon, 30 Nov 2026 10:00:00 +0000\" "
	               "\"hello one\" ((\"Ann\" NIL \"ann\" \"example.org\"))");
	ASSERT_HAS(r2,
	           "BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" "
	           "\"us-ascii\") NIL NIL \"7bit\" 25 2 NIL NIL NIL NIL))\r\n");
	ASSERT_HAS(r2, "g OK Fetch completed.\r\n");
	r3 = say(f, "h FETCH 1 BODY[]\r\n");
	ASSERT_HAS(r3, "BODY[] {138}\r\nFrom: Ann <ann@example.org>\r\n");
	ASSERT_HAS(r3, "second\r\n)\r\nh OK Fetch completed.\r\n");
	ASSERT_SAY(f, "i FETCH 4 FLAGS\r\n",
	           "i BAD Error in IMAP command: Invalid messageset\r\n");
	ASSERT_SAY(f, "j UID FETCH 9 FLAGS\r\n", "j OK Fetch completed.\r\n");
	ASSERT_SAY(f, "k UID FETCH 3:* UID\r\n",
	           "* 3 FETCH (UID 3)\r\nk OK Fetch completed.\r\n");
	ASSERT_SAY(f, "l UID FETCH 7:* UID\r\n",
	           "* 3 FETCH (UID 3)\r\nl OK Fetch completed.\r\n");
}

static void
test_store_expunge(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(take(f));
	g_free(deliver(f, NULL, msg1));
	g_free(deliver(f, NULL, msg2));
	g_free(deliver(f, NULL, msg3));
	login_select(f);
	ASSERT_SAY(f, "a STORE 1:2 +FLAGS (\\Deleted)\r\n",
	           "* 1 FETCH (FLAGS (\\Deleted \\Recent))\r\n"
	           "* 2 FETCH (FLAGS (\\Deleted \\Recent))\r\n"
	           "a OK Store completed.\r\n");
	ASSERT_SAY(f, "b UID STORE 3 FLAGS.SILENT (\\Seen $Work)\r\n",
	           "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
	           "$Work)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged "
	           "\\Deleted \\Seen \\Draft $Work \\*)] Flags permitted.\r\n"
	           "b OK Store completed.\r\n");
	ASSERT_SAY(f, "c UID SEARCH 1:* NOT DELETED\r\n",
	           "* SEARCH 3\r\nc OK Search completed.\r\n");
	ASSERT_SAY(f, "d SEARCH KEYWORD $Work\r\n",
	           "* SEARCH 3\r\nd OK Search completed.\r\n");
	ASSERT_SAY(f, "e STORE 1 +FLAGS (\\Recent)\r\n",
	           "e BAD Error in IMAP command STORE: Invalid system flag "
	           "\\Recent\r\n");
	ASSERT_SAY(f, "f UID EXPUNGE 2\r\n",
	           "* 2 EXPUNGE\r\nf OK Expunge completed.\r\n");
	ASSERT_SAY(f, "g FETCH 1:* UID\r\n",
	           "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\n"
	           "g OK Fetch completed.\r\n");
	ASSERT_SAY(f, "h EXPUNGE\r\n",
	           "* 1 EXPUNGE\r\nh OK Expunge completed.\r\n");
	ASSERT_SAY(f, "i STORE 1 -FLAGS (\\Seen)\r\n",
	           "* 1 FETCH (FLAGS (\\Recent $Work))\r\n"
	           "i OK Store completed.\r\n");
	r = say(f, "j EXAMINE INBOX\r\n");
	g_assert_true(g_str_has_prefix(r, "* OK [CLOSED] Previous mailbox "
	                                  "closed.\r\n* FLAGS "));
	ASSERT_HAS(r, "[PERMANENTFLAGS ()]");
	ASSERT_HAS(r, "j OK [READ-ONLY] Examine completed.\r\n");
	ASSERT_SAY(f, "k STORE 1 +FLAGS (\\Seen)\r\n",
	           "k NO [READ-ONLY] Mailbox is read-only.\r\n");
	ASSERT_SAY(f, "l CLOSE\r\n", "l OK Close completed.\r\n");
}

static void
test_search_keys(F *f, gconstpointer d)
{
	g_free(take(f));
	g_free(deliver(f, NULL, msg1));
	g_free(deliver(f, NULL, msg2));
	g_free(deliver(f, NULL, msg3));
	login_select(f);
	ASSERT_SAY(f, "a SEARCH SUBJECT \"HELLO\"\r\n",
	           "* SEARCH 1\r\na OK Search completed.\r\n");
	ASSERT_SAY(f, "b SEARCH BODY banana\r\n",
	           "* SEARCH 2\r\nb OK Search completed.\r\n");
	ASSERT_SAY(f, "c SEARCH OR FROM carol TEXT \"second\"\r\n",
	           "* SEARCH 1 2 3\r\nc OK Search completed.\r\n");
	ASSERT_SAY(f, "d SEARCH NOT (FROM bob)\r\n",
	           "* SEARCH 1 3\r\nd OK Search completed.\r\n");
	ASSERT_SAY(f, "e SEARCH SENTON 1-Dec-2026\r\n",
	           "* SEARCH 2\r\ne OK Search completed.\r\n");
	ASSERT_SAY(f, "f SEARCH SENTBEFORE 1-Dec-2026\r\n",
	           "* SEARCH 1\r\nf OK Search completed.\r\n");
	ASSERT_SAY(f, "g SEARCH LARGER 110\r\n",
	           "* SEARCH 1\r\ng OK Search completed.\r\n");
	ASSERT_SAY(f, "h SEARCH SMALLER 50 2:*\r\n",
	           "* SEARCH 3\r\nh OK Search completed.\r\n");
	ASSERT_SAY(f, "i UID SEARCH UID 2:5 RECENT\r\n",
	           "* SEARCH 2 3\r\ni OK Search completed.\r\n");
	ASSERT_SAY(f, "j SEARCH CHARSET UTF-8 HEADER To alice\r\n",
	           "* SEARCH 1\r\nj OK Search completed.\r\n");
	ASSERT_SAY(
	    f, "k SEARCH CHARSET KOI8-R ALL\r\n",
	    "k NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.\r\n");
	ASSERT_SAY(f, "l UID SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN\r\n",
	           "* ESEARCH (TAG \"l\") UID MIN 1 MAX 3 COUNT 3 ALL 1:3\r\n"
	           "l OK Search completed.\r\n");
	ASSERT_SAY(f, "m SEARCH SINCE 1-Jan-2000 BEFORE 1-Jan-2100 SEEN\r\n",
	           "* SEARCH\r\nm OK Search completed.\r\n");
	ASSERT_SAY(f, "n SEARCH 10\r\n",
	           "* SEARCH\r\nn OK Search completed.\r\n");
}

/* RFC 3501 7.4.1: no EXPUNGE during FETCH, STORE, SEARCH; EXISTS is
 * fine. The NOOP after them reports it. */
static void
test_untagged_rules(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;
	g_autoptr(GDir) dir = NULL;
	g_autofree char *cur = g_build_filename(f->maildir, "cur", NULL);
	const char *name;

	g_free(deliver(f, NULL, msg1));
	g_free(deliver(f, NULL, msg2));
	g_free(take(f));
	login_select(f);
	/* another process expunges message 1 and a new one arrives */
	dir = g_dir_open(cur, 0, NULL);
	while ((name = g_dir_read_name(dir)) != NULL)
		if (strstr(name, "P1.test") && strstr(name, ".M0P1")) {
			g_autofree char *p = g_build_filename(cur, name, NULL);
			g_assert_cmpint(g_unlink(p), ==, 0);
		}
	g_free(deliver(f, NULL, msg3));
	r = say(f, "a FETCH 2 UID\r\n");
	ASSERT_HAS_NOT(r, "EXPUNGE");
	ASSERT_HAS(r, "* 2 FETCH (UID 2)\r\n");
	ASSERT_HAS(r, "* 3 EXISTS\r\n");
	ASSERT_HAS(r, "a OK Fetch completed.\r\n");
	g_free(r);
	r = say(f, "b SEARCH ALL\r\n");
	ASSERT_HAS_NOT(r, "EXPUNGE");
	g_free(r);
	r = say(f, "b2 STORE 2 +FLAGS.SILENT (\\Flagged)\r\n");
	ASSERT_HAS_NOT(r, "EXPUNGE");
	ASSERT_HAS(r, "b2 OK Store completed.\r\n");
	g_free(r);
	r = say(f, "c NOOP\r\n");
	ASSERT_HAS(r, "* 1 EXPUNGE\r\n");
	ASSERT_HAS(r, "c OK NOOP completed.\r\n");
	g_free(r);
	r = say(f, "d FETCH 1:* UID\r\n");
	g_assert_cmpstr(r, ==,
	                "* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 3)\r\n"
	                "d OK Fetch completed.\r\n");
}

/* The UID forms may carry EXPUNGE (RFC 3501 7.4.1). */
static void
test_untagged_uid_fetch(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;
	g_autofree char *cur = g_build_filename(f->maildir, "cur", NULL);
	g_autoptr(GDir) dir = NULL;
	const char *name;

	g_free(deliver(f, NULL, msg1));
	g_free(deliver(f, NULL, msg2));
	g_free(take(f));
	login_select(f);
	dir = g_dir_open(cur, 0, NULL);
	while ((name = g_dir_read_name(dir)) != NULL)
		if (strstr(name, ".M0P1")) {
			g_autofree char *p = g_build_filename(cur, name, NULL);
			g_assert_cmpint(g_unlink(p), ==, 0);
		}
	r = say(f, "a UID FETCH 2 UID\r\n");
	ASSERT_HAS(r, "* 1 EXPUNGE\r\na OK Fetch completed.\r\n");
	g_free(r);
	r = say(f, "b FETCH 1 UID\r\n");
	g_assert_cmpstr(r, ==,
	                "* 1 FETCH (UID 2)\r\nb OK Fetch completed.\r\n");
}

/* Another session's expunges and flag changes reach this one at its next
 * command that may carry them (an expunge not during FETCH). */
static void
test_two_sessions(F *f, gconstpointer d)
{
	PbImapServer *a, *b;
	g_autofree char *r1 = NULL, *r2 = NULL, *both = NULL;

	g_free(deliver(f, NULL, msg1));
	g_free(deliver(f, NULL, msg2));
	g_free(take(f));
	login_select(f);
	a = f->s;
	start(f);
	g_free(take(f));
	login_select(f);
	b = f->s;
	f->s = a;
	ASSERT_SAY(f, "a1 STORE 1 +FLAGS.SILENT (\\Flagged \\Deleted)\r\n",
	           "a1 OK Store completed.\r\n");
	ASSERT_SAY(f, "a2 EXPUNGE\r\n",
	           "* 1 EXPUNGE\r\na2 OK Expunge completed.\r\n");
	ASSERT_SAY(f, "a3 STORE 1 +FLAGS.SILENT (\\Answered)\r\n",
	           "a3 OK Store completed.\r\n");
	pb_imap_server_free(a);
	f->s = b;
	r1 = say(f, "b1 FETCH 1:* UID\r\n");
	ASSERT_HAS_NOT(r1, "EXPUNGE");
	ASSERT_HAS(r1, "* 2 FETCH (UID 2)\r\n");
	r2 = say(f, "b2 NOOP\r\n");
	ASSERT_HAS(r2, "* 1 EXPUNGE\r\n");
	ASSERT_HAS(r2, "b2 OK NOOP completed.\r\n");
	both = g_strconcat(r1, r2, NULL);
	ASSERT_HAS(both, "FETCH (FLAGS (\\Answered))\r\n");
	g_free(r1);
	r1 = say(f, "b3 FETCH 1 (UID FLAGS)\r\n");
	g_assert_cmpstr(r1, ==,
	                "* 1 FETCH (UID 2 FLAGS (\\Answered))\r\n"
	                "b3 OK Fetch completed.\r\n");
}

/* \Recent belongs to exactly one session. */
static void
test_recent_once(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;
	PbImapServer *first;

	g_free(deliver(f, NULL, msg1));
	g_free(take(f));
	login_select(f);
	first = f->s;
	start(f);
	g_free(take(f));
	login(f);
	r = say(f, "x SELECT INBOX\r\n");
	ASSERT_HAS(r, "* 1 EXISTS\r\n* 0 RECENT\r\n");
	pb_imap_server_free(first);
}

static void
test_append(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(take(f));
	login_select(f);
	ASSERT_SAY(f, "a APPEND INBOX (\\Seen) {15}\r\n", "+ OK\r\n");
	r = say(f, "Subject: hi\r\n\r\n\r\n");
	ASSERT_HAS(r, "* 1 EXISTS\r\n");
	ASSERT_HAS(r, "a OK [APPENDUID ");
	ASSERT_HAS(r, " 1] Append completed.\r\n");
	g_free(r);
	/* LITERAL+: no continuation */
	r = say(f,
	        "b APPEND Sent (\\Seen $Sent) \"01-Dec-2026 10:00:00 +0100\" "
	        "{15+}\r\nSubject: yo\r\n\r\n\r\n");
	ASSERT_HAS(r, "b OK [APPENDUID ");
	ASSERT_HAS_NOT(r, "+ OK");
	g_free(r);
	r = say(f, "c STATUS Sent (MESSAGES)\r\n");
	ASSERT_HAS(r, "* STATUS \"Sent\" (MESSAGES 1)\r\n");
	ASSERT_SAY(f, "d APPEND Nope {3}\r\n",
	           "d NO [TRYCREATE] Mailbox doesn't exist.\r\n");
	ASSERT_SAY(f, "e APPEND INBOX {2000}\r\n",
	           "e NO [TOOBIG] Mail too big.\r\n");
	/* the refused literal is not read as a command */
	ASSERT_SAY(f, "f NOOP\r\n", "f OK NOOP completed.\r\n");
	/* LITERAL+ refused for its folder or arguments (RFC 7888 4, as
	 * mbsync sends it): the octets are read and dropped, the tag gets
	 * its NO or BAD and the session goes on */
	ASSERT_SAY(f,
	           "h APPEND Nope {11+}\r\nh2 LOGOUT\r\n\r\n"
	           "i NOOP\r\n",
	           "h NO [TRYCREATE] Mailbox doesn't exist.\r\n"
	           "i OK NOOP completed.\r\n");
	g_assert_cmpint(f->last, !=, PB_IMAP_CLOSE);
	ASSERT_SAY(f,
	           "j APPEND INBOX (\\Bogus) {5+}\r\nj2 LOGOUT\r\n"
	           "k NOOP\r\n",
	           "j BAD Unknown system flag\r\n"
	           "k OK NOOP completed.\r\n");
	/* ... up to max_message_size (1000 here, over it: BYE) */
	{
		g_autofree char *big = g_strnfill(1000, 'x');
		g_autofree char *in = g_strdup_printf(
		    "l APPEND Nope {1000+}\r\n%s\r\nm NOOP\r\n", big);

		ASSERT_SAY(f, in,
		           "l NO [TRYCREATE] Mailbox doesn't exist.\r\n"
		           "m OK NOOP completed.\r\n");
	}
	ASSERT_SAY(f, "g APPEND INBOX {2000+}\r\n",
	           "* BYE [TOOBIG] Mail too big.\r\n");
	g_assert_cmpint(f->last, ==, PB_IMAP_CLOSE);
}

/* Overlapping or reversed ranges: each message once, in order (a line
 * of "1:*,1:*,..." must not multiply the answers). */
static void
test_overlapping_sets(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(deliver(f, NULL, msg1));
	g_free(deliver(f, NULL, msg2));
	g_free(deliver(f, NULL, msg3));
	g_free(take(f));
	login_select(f);
	ASSERT_SAY(f, "a UID FETCH 4294967295:1,1:*,2,3:2 (UID)\r\n",
	           "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n"
	           "* 3 FETCH (UID 3)\r\na OK Fetch completed.\r\n");
	ASSERT_SAY(f, "b UID FETCH 3,1:2,2:*,* (UID)\r\n",
	           "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n"
	           "* 3 FETCH (UID 3)\r\nb OK Fetch completed.\r\n");
	ASSERT_SAY(f, "c FETCH 3,1:*,2:1 (UID)\r\n",
	           "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n"
	           "* 3 FETCH (UID 3)\r\nc OK Fetch completed.\r\n");
	ASSERT_SAY(f, "d UID STORE 2:3,3:2,* +FLAGS (\\Flagged)\r\n",
	           "* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))\r\n"
	           "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Recent))\r\n"
	           "d OK Store completed.\r\n");
	/* copied once each: three new UIDs, not five */
	r = say(f, "e UID COPY 1:*,2:3,4294967295 Archive\r\n");
	ASSERT_HAS(r, " 1:3 1:3] Copy completed.\r\n");
	ASSERT_SAY(f, "f STATUS Archive (MESSAGES)\r\n",
	           "* STATUS \"Archive\" (MESSAGES 3)\r\n"
	           "f OK Status completed.\r\n");
	ASSERT_SAY(f, "g UID SEARCH UID 3:1,2,1:*\r\n",
	           "* SEARCH 1 2 3\r\ng OK Search completed.\r\n");
}

/* dovecot-keywords with a gap (hand-edited, or Dovecot's after a
 * removal): bit K is named by its line "K name", not by its rank. */
static void
test_keyword_gaps(F *f, gconstpointer d)
{
	g_autofree char *p1 = deliver(f, NULL, msg1);
	g_autofree char *p2 = deliver(f, NULL, msg2);
	g_autofree char *kw =
	    g_build_filename(f->maildir, "dovecot-keywords", NULL);
	g_autofree char *r = NULL, *r2 = NULL;
	const char *letters[] = {"c", "b"};
	const char *paths[] = {p1, p2};

	for (guint k = 0; k < 2; k++) {
		g_autofree char *base = g_path_get_basename(paths[k]);
		g_autofree char *cur = g_strdup_printf(
		    "%s/cur/%s:2,%s", f->maildir, base, letters[k]);
		g_assert_cmpint(g_rename(paths[k], cur), ==, 0);
	}
	g_assert_true(g_file_set_contents(kw, "0 $Junk\n2 Work\n", -1, NULL));
	g_free(take(f));
	login(f);
	r = say(f, "a SELECT INBOX\r\n");
	ASSERT_HAS(r, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen "
	              "\\Draft $Junk Work)\r\n");
	/* "c" is Work; "b" has no name: kept on disk, not shown */
	r2 = say(f, "b FETCH 1:2 (FLAGS)\r\n");
	ASSERT_HAS(r2, "* 1 FETCH (FLAGS (Work))\r\n");
	ASSERT_HAS(r2, "* 2 FETCH (FLAGS ())\r\n");
	ASSERT_SAY(f, "c STORE 2 +FLAGS ($Junk Work)\r\n",
	           "* 2 FETCH (FLAGS ($Junk Work))\r\n"
	           "c OK Store completed.\r\n");
	ASSERT_SAY(f, "d SEARCH KEYWORD Work\r\n",
	           "* SEARCH 1 2\r\nd OK Search completed.\r\n");
}

static void
test_copy_move(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(deliver(f, NULL, msg1));
	g_free(deliver(f, NULL, msg2));
	g_free(deliver(f, NULL, msg3));
	g_free(take(f));
	login_select(f);
	r = say(f, "a COPY 1:2 Archive\r\n");
	g_assert_true(g_str_has_prefix(r, "a OK [COPYUID "));
	ASSERT_HAS(r, " 1:2 1:2] Copy completed.\r\n");
	g_free(r);
	ASSERT_SAY(f, "b COPY 1 Nope\r\n",
	           "b NO [TRYCREATE] Mailbox doesn't exist.\r\n");
	r = say(f, "c UID MOVE 2:3 Trash\r\n");
	g_assert_true(g_str_has_prefix(r, "* OK [COPYUID "));
	ASSERT_HAS(r, " 2:3 1:2] Moved UIDs.\r\n* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n"
	              "c OK Move completed.\r\n");
	g_free(r);
	r = say(f, "d MOVE 1 Trash\r\n");
	ASSERT_HAS(r, " 1 3] Moved UIDs.\r\n* 1 EXPUNGE\r\nd OK Move "
	              "completed.\r\n");
	g_free(r);
	r = say(f, "e STATUS Trash (MESSAGES)\r\n");
	ASSERT_HAS(r, "* STATUS \"Trash\" (MESSAGES 3)\r\n");
}

static void
test_idle(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;
	const char *const *dirs;

	g_free(take(f));
	login_select(f);
	dirs = pb_imap_server_watch_dirs(f->s);
	g_assert_nonnull(dirs[0]);
	ASSERT_SAY(f, "a IDLE\r\n", "+ idling\r\n");
	g_assert_cmpint(f->last, ==, PB_IMAP_IDLE);
	g_free(deliver(f, NULL, msg1));
	pb_imap_server_check(f->s, FALSE);
	r = take(f);
	g_assert_cmpstr(r, ==, "* 1 EXISTS\r\n* 1 RECENT\r\n");
	g_assert_cmpint(pb_imap_server_next_action(f->s), ==, PB_IMAP_IDLE);
	pb_imap_server_check(f->s, TRUE);
	g_free(r);
	r = take(f);
	g_assert_cmpstr(r, ==, "* OK Still here\r\n");
	ASSERT_SAY(f, "DONE\r\n", "a OK Idle completed.\r\n");
	g_assert_cmpint(f->last, !=, PB_IMAP_IDLE);
	ASSERT_SAY(f, "b IDLE\r\n", "+ idling\r\n");
	ASSERT_SAY(f, "NOPE\r\n", "b BAD Expected DONE.\r\n");
	/* outside IDLE, check() says nothing */
	pb_imap_server_check(f->s, TRUE);
	g_free(r);
	r = take(f);
	g_assert_cmpstr(r, ==, "");
}

static void
test_literals_budget(F *f, gconstpointer d)
{
	g_free(take(f));
	/* before login: 8 KiB, checked before "+" */
	ASSERT_SAY(f, "a LOGIN {9000}\r\n",
	           "a BAD Error in IMAP command: Too long argument.\r\n");
	ASSERT_SAY(f, "b LOGIN {5}\r\n", "+ OK\r\n");
	ASSERT_SAY(f, "alice {6}\r\n", "+ OK\r\n");
	{
		g_autofree char *r = say(f, "s3cret\r\n");
		ASSERT_HAS(r, "b OK [CAPABILITY ");
	}
}

static void
test_literal_minus(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(take(f));
	/* LITERAL-: a {N+} over 4096 octets before login ends it */
	r = say(f, "a LOGIN {5000+}\r\n");
	g_assert_true(g_str_has_prefix(r, "* BYE "));
	g_assert_cmpint(f->last, ==, PB_IMAP_CLOSE);
}

static void
test_bad_flood(F *f, gconstpointer d)
{
	g_autoptr(GString) in = g_string_new(NULL);
	g_autofree char *r = NULL;

	g_free(take(f));
	for (guint k = 0; k < PB_IMAP_MAX_ERRORS + 5; k++)
		g_string_append_printf(in, "t%u BOGUS\r\n", k);
	r = say(f, in->str);
	ASSERT_HAS(r, "* BYE Too many invalid IMAP commands.\r\n");
	g_assert_cmpint(f->last, ==, PB_IMAP_CLOSE);
	ASSERT_HAS_NOT(r, "t21 BAD");
}

static void
test_timeout(F *f, gconstpointer d)
{
	g_free(take(f));
	login(f);
	pb_imap_server_timeout(f->s);
	{
		g_autofree char *r = take(f);
		g_assert_cmpstr(r, ==,
		                "* BYE Disconnected for inactivity.\r\n");
	}
	g_assert_cmpint(pb_imap_server_next_action(f->s), ==, PB_IMAP_CLOSE);
}

/* Every command outside its states. */
static void
test_state_table(F *f, gconstpointer d)
{
	static const char *const authed[] = {
	    "ENABLE", "NAMESPACE", "SELECT",    "EXAMINE",     "CREATE",
	    "DELETE", "RENAME",    "SUBSCRIBE", "UNSUBSCRIBE", "LIST",
	    "LSUB",   "STATUS",    "APPEND",    "IDLE"};
	static const char *const selected[] = {
	    "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH",
	    "FETCH", "STORE", "COPY",     "MOVE",    "UID"};
	static const char *const not_auth[] = {"STARTTLS", "LOGIN",
	                                       "AUTHENTICATE"};

	g_free(take(f));
	for (guint k = 0; k < G_N_ELEMENTS(authed); k++) {
		g_autofree char *in = g_strdup_printf("t %s x\r\n", authed[k]);
		g_autofree char *want = g_strdup_printf(
		    "t BAD Error in IMAP command %s: Login first.\r\n",
		    authed[k]);
		ASSERT_SAY(f, in, want);
	}
	/* a fresh session: 20 BAD replies end one */
	pb_imap_server_free(f->s);
	start(f);
	g_free(take(f));
	for (guint k = 0; k < G_N_ELEMENTS(selected); k++) {
		g_autofree char *in =
		    g_strdup_printf("t %s x\r\n", selected[k]);
		g_autofree char *want = g_strdup_printf(
		    "t BAD Error in IMAP command %s: Login first.\r\n",
		    selected[k]);
		ASSERT_SAY(f, in, want);
	}
	pb_imap_server_free(f->s);
	start(f);
	g_free(take(f));
	login(f);
	for (guint k = 0; k < G_N_ELEMENTS(selected); k++) {
		g_autofree char *in =
		    g_strdup_printf("t %s x\r\n", selected[k]);
		g_autofree char *want = g_strdup_printf(
		    "t BAD Error in IMAP command %s: No mailbox selected.\r\n",
		    selected[k]);
		ASSERT_SAY(f, in, want);
	}
	for (guint k = 0; k < G_N_ELEMENTS(not_auth); k++) {
		g_autofree char *in =
		    g_strdup_printf("t %s x\r\n", not_auth[k]);
		g_autofree char *want = g_strdup_printf(
		    "t BAD Error in IMAP command %s: Already logged in.\r\n",
		    not_auth[k]);
		ASSERT_SAY(f, in, want);
	}
}

static const char multipart[] =
    "From: d@example.org\n"
    "Subject: parts\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\n"
    "\n"
    "--b1\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "caf=C3=A9 au lait\n"
    "--b1\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "Subject: inner\n"
    "\n"
    "inner body\n"
    "--b1--\n";

static void
test_fetch_sections(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(deliver(f, NULL, multipart));
	g_free(take(f));
	login_select(f);
	ASSERT_SAY(f, "a FETCH 1 BODY.PEEK[1]\r\n",
	           "* 1 FETCH (BODY[1] {17}\r\ncaf=C3=A9 au lait)\r\n"
	           "a OK Fetch completed.\r\n");
	ASSERT_SAY(f, "b FETCH 1 BODY.PEEK[1.MIME]\r\n",
	           "* 1 FETCH (BODY[1.MIME] {88}\r\nContent-Type: text/plain; "
	           "charset=utf-8\r\nContent-Transfer-Encoding: "
	           "quoted-printable\r\n\r\n)\r\nb OK Fetch completed.\r\n");
	ASSERT_SAY(
	    f, "c FETCH 1 BODY.PEEK[2.HEADER]\r\n",
	    "* 1 FETCH (BODY[2.HEADER] {18}\r\nSubject: inner\r\n\r\n)\r\n"
	    "c OK Fetch completed.\r\n");
	ASSERT_SAY(f, "d FETCH 1 BODY.PEEK[2.TEXT]\r\n",
	           "* 1 FETCH (BODY[2.TEXT] {10}\r\ninner body)\r\n"
	           "d OK Fetch completed.\r\n");
	ASSERT_SAY(f, "e FETCH 1 BODY.PEEK[3]\r\n",
	           "* 1 FETCH (BODY[3] {0}\r\n)\r\ne OK Fetch completed.\r\n");
	/* partials are clamped to the section */
	ASSERT_SAY(f, "f FETCH 1 BODY.PEEK[2.TEXT]<6.100>\r\n",
	           "* 1 FETCH (BODY[2.TEXT]<6> {4}\r\nbody)\r\n"
	           "f OK Fetch completed.\r\n");
	ASSERT_SAY(f, "g FETCH 1 BODY.PEEK[1]<100.5>\r\n",
	           "* 1 FETCH (BODY[1]<100> {0}\r\n)\r\n"
	           "g OK Fetch completed.\r\n");
	ASSERT_SAY(f,
	           "h FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS.NOT (From "
	           "MIME-Version Content-Type)])\r\n",
	           "* 1 FETCH (FLAGS (\\Recent) BODY[HEADER.FIELDS.NOT (FROM "
	           "MIME-VERSION CONTENT-TYPE)] {18}\r\nSubject: parts\r\n\r\n)"
	           "\r\nh OK Fetch completed.\r\n");
	r = say(f, "i FETCH 1 BODYSTRUCTURE\r\n");
	ASSERT_HAS(r,
	           "* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" "
	           "(\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 17 ");
	ASSERT_HAS(r, "\"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))\r\n");
	ASSERT_SAY(f, "j SEARCH BODY \"CAFÉ\"\r\n",
	           "* SEARCH 1\r\nj OK Search completed.\r\n");
	ASSERT_SAY(f, "k SEARCH BODY \"inner body\"\r\n",
	           "* SEARCH 1\r\nk OK Search completed.\r\n");
	ASSERT_SAY(f, "l SEARCH HEADER Subject inner\r\n",
	           "* SEARCH\r\nl OK Search completed.\r\n");
}

/* APPEND streams a message far larger than the 64 KiB command budget. */
static void
test_append_large(F *f, gconstpointer d)
{
	g_autoptr(GString) in = g_string_new(NULL);
	g_autofree char *r = NULL, *want = NULL;
	gsize size = 0;

	if (f->bytewise)
		return; /* a megabyte byte by byte is slow and adds nothing */
	pb_imap_server_free(f->s);
	f->settings.max_message_size = 2000000;
	start(f);
	g_free(take(f));
	login_select(f);
	for (guint k = 0; size + 80 < 1000000; k++) {
		g_string_append_printf(in, "line %06u %060u\r\n", k, 0);
		size = in->len;
	}
	g_string_prepend(in, "Subject: big\r\n\r\n");
	size = in->len;
	want = g_strdup_printf("a APPEND INBOX {%zu}\r\n", size);
	ASSERT_SAY(f, want, "+ OK\r\n");
	g_string_append(in, "\r\n");
	r = say(f, in->str);
	ASSERT_HAS(r, "* 1 EXISTS\r\n");
	ASSERT_HAS(r, "a OK [APPENDUID ");
	g_free(want);
	want = g_strdup_printf("* 1 FETCH (RFC822.SIZE %zu)\r\n", size);
	ASSERT_SAY(f, "b FETCH 1 RFC822.SIZE\r\n",
	           (g_free(r),
	            r = g_strconcat(want, "b OK Fetch completed.\r\n", NULL)));
}

static void
test_folders_more(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(deliver(f, NULL, msg1));
	g_free(take(f));
	login(f);
	ASSERT_SAY(f, "a CREATE A.B.C\r\n", "a OK Create completed.\r\n");
	ASSERT_SAY(f, "b DELETE A\r\n", "b OK Delete completed.\r\n");
	r = say(f, "c LIST (REMOTE) \"\" (\"A\" \"A.*\")\r\n");
	g_assert_cmpstr(r, ==,
	                "* LIST (\\NonExistent \\HasChildren) \".\" \"A\"\r\n"
	                "* LIST (\\HasChildren) \".\" \"A.B\"\r\n"
	                "* LIST (\\HasNoChildren) \".\" \"A.B.C\"\r\n"
	                "c OK List completed.\r\n");
	g_free(r);
	r = say(f, "d LIST \"\" \"A\"\r\n");
	g_assert_cmpstr(r, ==,
	                "* LIST (\\Noselect \\HasChildren) \".\" \"A\"\r\n"
	                "d OK List completed.\r\n");
	ASSERT_SAY(f, "e RENAME INBOX Old\r\n", "e OK Rename completed.\r\n");
	g_free(r);
	r = say(f, "f STATUS Old (MESSAGES)\r\n");
	ASSERT_HAS(r, "* STATUS \"Old\" (MESSAGES 1)\r\n");
	g_free(r);
	r = say(f, "g STATUS INBOX (MESSAGES)\r\n");
	ASSERT_HAS(r, "* STATUS \"INBOX\" (MESSAGES 0)\r\n");
	g_free(r);
	r = say(f, "h SELECT Old\r\n");
	ASSERT_HAS(r, "h OK [READ-WRITE] Select completed.\r\n");
	ASSERT_SAY(f, "i DELETE Old\r\n",
	           "* OK [CLOSED] Selected mailbox was deleted.\r\n"
	           "i OK Delete completed.\r\n");
	ASSERT_PREFIX(f, "j DELETE INBOX\r\n", "j NO [CANNOT] ");
	ASSERT_PREFIX(f, "k CREATE INBOX\r\n", "k NO [ALREADYEXISTS] ");
	ASSERT_PREFIX(f, "l CREATE a.tmp\r\n", "l NO [CANNOT] ");
	ASSERT_SAY(f, "m SELECT Nope\r\n",
	           "m NO [NONEXISTENT] Mailbox doesn't exist: Nope\r\n");
}

static void
test_argument_errors(F *f, gconstpointer d)
{
	g_autofree char *r = NULL;

	g_free(take(f));
	pb_imap_server_free(f->s);
	f->settings.tls_available = FALSE;
	start(f);
	r = take(f);
	ASSERT_HAS_NOT(r, "STARTTLS");
	ASSERT_SAY(f, "a STARTTLS\r\n", "a BAD TLS support isn't enabled.\r\n");
	ASSERT_SAY(f, "b ID\r\n",
	           "b BAD Error in IMAP command ID: Invalid arguments.\r\n");
	ASSERT_SAY(f, "c NOOP x\r\n",
	           "c BAD Error in IMAP command: Unexpected arguments.\r\n");
	ASSERT_SAY(f, "d LOGIN alice\r\n",
	           "d BAD Error in IMAP command LOGIN: Invalid arguments.\r\n");
	login(f);
	ASSERT_SAY(
	    f, "e ENABLE\r\n",
	    "e BAD Error in IMAP command ENABLE: Missing arguments.\r\n");
	ASSERT_SAY(
	    f, "f SELECT\r\n",
	    "f BAD Error in IMAP command SELECT: Invalid arguments.\r\n");
	ASSERT_PREFIX(f, "g STATUS INBOX (BOGUS)\r\n", "g BAD ");
	ASSERT_PREFIX(f, "h LIST\r\n", "h BAD ");
	ASSERT_SAY(
	    f, "i APPEND INBOX\r\n",
	    "i BAD Error in IMAP command APPEND: Invalid arguments.\r\n");
	g_free(r);
	r = say(f, "j SELECT INBOX\r\n");
	ASSERT_HAS(r, "j OK [READ-WRITE]");
	ASSERT_PREFIX(f, "k FETCH 1:x FLAGS\r\n", "k BAD ");
	ASSERT_PREFIX(f, "l SEARCH BOGUS\r\n", "l BAD ");
	ASSERT_PREFIX(f, "m STORE 1 FLAGS\r\n", "m BAD ");
	ASSERT_SAY(f, "n UID BOGUS 1\r\n",
	           "n BAD Error in IMAP command UID: Unknown command.\r\n");
	ASSERT_SAY(f, "o COPY 1\r\n",
	           "o BAD Error in IMAP command COPY: Invalid arguments.\r\n");
}

static void
add(const char *name, void (*fn)(F *, gconstpointer))
{
	g_autofree char *whole = g_strdup_printf("/imap-server/%s", name);
	g_autofree char *bytes =
	    g_strdup_printf("/imap-server/bytewise/%s", name);

	g_test_add(whole, F, GINT_TO_POINTER(0), setup, fn, teardown);
	g_test_add(bytes, F, GINT_TO_POINTER(1), setup, fn, teardown);
}

int
main(int argc, char **argv)
{
	/* the storage fsyncs every change: on tmpfs that is free, on a disk
	 * shared with seven builds it made this file take 20 s instead of
	 * half a second (durability is test-mailfolder's to check) */
	if (g_getenv("TMPDIR") == NULL &&
	    g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) &&
	    g_access("/dev/shm", W_OK) == 0)
		g_setenv("TMPDIR", "/dev/shm", TRUE);
	g_test_init(&argc, &argv, NULL);
	add("greeting", test_greeting);
	add("not-auth-state", test_not_auth_state);
	add("login-failures", test_login_failures);
	g_test_add("/imap-server/login-pause-stops-input", F, NULL, setup,
	           test_login_pause_stops_input, teardown);
	add("login-blocked-and-limit", test_login_blocked_and_limit);
	add("authenticate", test_authenticate);
	add("authenticate-ir", test_authenticate_ir);
	g_test_add("/imap-server/logindisabled-starttls", F, NULL, setup,
	           test_logindisabled_starttls, teardown);
	add("auth-commands", test_auth_commands);
	add("list-folders", test_list_folders);
	add("status", test_status_list_status);
	add("select-empty-search", test_select_empty_search);
	add("select-fetch", test_select_fetch);
	add("store-expunge", test_store_expunge);
	add("search-keys", test_search_keys);
	add("untagged-rules", test_untagged_rules);
	add("untagged-uid-fetch", test_untagged_uid_fetch);
	add("two-sessions", test_two_sessions);
	add("recent-once", test_recent_once);
	add("append", test_append);
	add("copy-move", test_copy_move);
	add("overlapping-sets", test_overlapping_sets);
	add("keyword-gaps", test_keyword_gaps);
	add("idle", test_idle);
	add("literals-budget", test_literals_budget);
	add("literal-minus", test_literal_minus);
	add("bad-flood", test_bad_flood);
	add("timeout", test_timeout);
	add("state-table", test_state_table);
	add("argument-errors", test_argument_errors);
	add("fetch-sections", test_fetch_sections);
	add("append-large", test_append_large);
	add("folders-more", test_folders_more);
	return g_test_run();
}
