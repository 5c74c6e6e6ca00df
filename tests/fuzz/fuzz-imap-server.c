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
deliver(const char *maildir, guint n, const char *text)
{
	static const char *const subs[] = {"tmp", "new", "cur"};
	g_autofree char *name =
	    g_strdup_printf("1700000000.M%uP1.fuzz,S=%zu", n, strlen(text));
	g_autofree char *path = NULL;

	for (guint k = 0; k < 3; k++) {
		g_autofree char *p = g_build_filename(maildir, subs[k], NULL);
		g_mkdir_with_parents(p, 0700);
	}
	path = g_build_filename(maildir, "new", name, NULL);
	fuzz_write_file(path, text, strlen(text));
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
	if (data[0] & 8) {
		deliver(maildir, 1, msg_a);
		deliver(maildir, 2, msg_b);
	}
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
	rm_rf(maildir);
	return 0;
}
