/*
 * fuzz-imap-server.c - a whole IMAP session (imap-server with the real
 * parser, mailfolder and mime underneath) on a fresh Maildir in the
 * scratch folder, fed as imap-serve feeds it: in chunks, acting on every
 * action (STARTTLS purges the rest of the chunk, IDLE gets a check).
 *
 * Input: one octet of options (bit 0: plaintext allowed; bit 1: STARTTLS
 * offered; bit 2: logged in before the input; bit 3: two messages
 * delivered; bits 4-7: chunk size - 1, 0 meaning the whole input), then
 * the client's bytes.
 */
#include "fuzz.h"
#include "imap-server.h"

#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

static const char msg_a[] =
    "From: A <a@example.org>\nTo: b@example.org\nSubject: =?utf-8?q?h=C3=A9?=\n"
    "Date: Tue, 1 Dec 2026 10:00:00 +0100\nMIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=xx\n\n--xx\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n\nBanana =C3=A9\n--xx\n"
    "Content-Type: message/rfc822\n\nSubject: inner\n\nbody\n--xx--\n";
static const char msg_b[] = "Subject: two\n\nline\n";

typedef struct {
	const char *maildir;
} Acct;

static gboolean
h_auth(void *data, const char *user, const char *pass)
{
	return g_str_equal(user, "alice") && g_str_equal(pass, "secret");
}

static PbImapAccount
h_open(void *data, const char *user, char **maildir)
{
	*maildir = g_strdup(((Acct *)data)->maildir);
	return PB_IMAP_ACCOUNT_OK;
}

static const PbImapHooks hooks = {
    .authenticate = h_auth,
    .open_account = h_open,
};

static void
drop(void *ctx, const char *data, gsize len)
{
	*(gsize *)ctx += len;
}

static char *msg_a_path, *msg_b_path;

void
fuzz_setup(void)
{
	msg_a_path = g_build_filename(fuzz_scratch(), "msg-a", NULL);
	msg_b_path = g_build_filename(fuzz_scratch(), "msg-b", NULL);
	fuzz_write_file(msg_a_path, msg_a, strlen(msg_a));
	fuzz_write_file(msg_b_path, msg_b, strlen(msg_b));
}

/* MAILDIR with tmp, new and cur and the two messages (written once, in
 * fuzz_setup) linked into new/: a link is one call where writing a file
 * is three, and Maildir files are never written again (a session
 * renames and unlinks them, which leaves the originals). */
static void
make_maildir(const char *maildir)
{
	static const char *const subs[] = {"tmp", "new", "cur"};

	g_assert_cmpint(g_mkdir(maildir, 0700), ==, 0);
	for (guint k = 0; k < 3; k++) {
		g_autofree char *p = g_build_filename(maildir, subs[k], NULL);
		g_assert_cmpint(g_mkdir(p, 0700), ==, 0);
	}
	g_autofree char *a = g_strdup_printf(
	    "%s/new/1700000000.M1P1.fuzz,S=%zu", maildir, strlen(msg_a));
	g_autofree char *b = g_strdup_printf(
	    "%s/new/1700000000.M2P1.fuzz,S=%zu", maildir, strlen(msg_b));
	g_assert_cmpint(link(msg_a_path, a), ==, 0);
	g_assert_cmpint(link(msg_b_path, b), ==, 0);
}

/* Feeds DATA as imap-serve does; FALSE once the session is over. */
static gboolean
feed(PbImapServer *s, const char *data, gsize len)
{
	gsize off = 0;

	while (off < len) {
		gsize used = pb_imap_server_feed(s, data + off, len - off);
		off += used;
		switch (pb_imap_server_next_action(s)) {
		case PB_IMAP_CLOSE:
			return FALSE;
		case PB_IMAP_STARTTLS:
			pb_imap_server_tls_started(s);
			return TRUE; /* the rest of the chunk is purged */
		case PB_IMAP_IDLE:
			pb_imap_server_check(s, TRUE);
			g_assert_nonnull(pb_imap_server_watch_dirs(s));
			break;
		default:
			break;
		}
		if (used == 0)
			return TRUE; /* nothing more can be taken now */
	}
	return TRUE;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static guint run;
	g_autofree char *maildir = NULL;
	gsize written = 0, chunk;
	PbLineOut out = {drop, &written};
	PbImapSettings set = {.hostname = "fuzz", .max_message_size = 4096};
	Acct acct;
	PbImapServer *s;

	if (size < 1)
		return 0;
	maildir = g_strdup_printf("%s/m%u", fuzz_scratch(), run++);
	acct.maildir = maildir;
	set.plaintext_ok = data[0] & 1;
	set.tls_available = (data[0] & 2) != 0;
	chunk = data[0] >> 4;
	if (data[0] & 8)
		make_maildir(maildir);
	s = pb_imap_server_new(&hooks, &acct, &out, &set);
	pb_imap_server_greet(s);
	if (data[0] & 4)
		feed(s, "L LOGIN alice secret\r\n", 22);
	data++;
	size--;
	for (gsize off = 0; off < size;) {
		gsize n = chunk ? MIN(chunk, size - off) : size - off;
		if (!feed(s, (const char *)data + off, n))
			break;
		off += n;
	}
	pb_imap_server_timeout(s);
	pb_imap_server_free(s);
	fuzz_remove_tree(maildir);
	return 0;
}
