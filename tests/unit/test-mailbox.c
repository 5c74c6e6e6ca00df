/* test-mailbox.c - a Maildir as a POP3 session sees it: the snapshot,
 * sizes, RETR/TOP output, the lock, and the UPDATE state. */
#include "error.h"
#include "mailbox.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

typedef struct {
	char *dir;
} F;

static void
put(F *f, const char *sub, const char *name, const char *text)
{
	g_autofree char *path = g_build_filename(f->dir, sub, name, NULL);

	g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

static void
setup(F *f, gconstpointer data)
{
	f->dir = g_dir_make_tmp("pbmbox-XXXXXX", NULL);
	for (const char *const *s = (const char *[]){"tmp", "new", "cur", NULL};
	     *s; s++) {
		g_autofree char *p = g_build_filename(f->dir, *s, NULL);
		g_assert_cmpint(g_mkdir(p, 0700), ==, 0);
	}
	/* 23 octets, 5 lines: W = 28 */
	put(f, "new", "1000.M1P1Q1.host,S=23,W=28",
	    "Subject: a\n\n.dot\nl2\nl3\n");
	/* no sizes in the name: measured (CRLF already: counted once) */
	put(f, "cur", "0999.M1P1Q1.host:2,S", "Subject: b\r\n\r\nbody\n");
}

static void
teardown(F *f, gconstpointer data)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);

	g_assert_cmpint(system(cmd), ==, 0);
	g_free(f->dir);
}

static void
out_write(void *ctx, const char *data, gsize len)
{
	g_string_append_len(ctx, data, len);
}

static void
test_snapshot_and_send(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = pb_mailbox_open(f->dir, &error);
	g_autoptr(GString) got = g_string_new(NULL);
	PbLineOut out = {out_write, got};

	g_assert_no_error(error);
	g_assert_cmpuint(pb_mailbox_count(mb), ==, 2);
	/* sorted by unique name: the older first */
	g_assert_cmpstr(pb_mailbox_uid(mb, 0), ==, "0999.M1P1Q1.host");
	g_assert_cmpstr(pb_mailbox_uid(mb, 1), ==, "1000.M1P1Q1.host");
	g_assert_cmpuint(pb_mailbox_size(mb, 0), ==, 20);
	g_assert_cmpuint(pb_mailbox_size(mb, 1), ==, 28);
	g_assert_true(pb_mailbox_send(mb, 1, -1, &out, &error));
	g_assert_cmpstr(got->str, ==,
	                "Subject: a\r\n\r\n..dot\r\nl2\r\nl3\r\n.\r\n");
	/* the size is the message's (without the stuffing and the dot) */
	g_assert_cmpuint(got->len - 1 - 3, ==, 28);
	g_string_truncate(got, 0);
	g_assert_true(pb_mailbox_send(mb, 1, 1, &out, &error));
	g_assert_cmpstr(got->str, ==, "Subject: a\r\n\r\n..dot\r\n.\r\n");
	g_string_truncate(got, 0);
	g_assert_true(pb_mailbox_send(mb, 0, 0, &out, &error));
	g_assert_cmpstr(got->str, ==, "Subject: b\r\n\r\n.\r\n");
	/* a new file after the login is not seen */
	put(f, "new", "2000.M1P1Q1.host,S=3,W=4", "x\n\n");
	g_assert_cmpuint(pb_mailbox_count(mb), ==, 2);
}

static void
test_lock(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = pb_mailbox_open(f->dir, &error);
	g_autoptr(PbMailbox) second = NULL;
	g_autofree char *lock = g_build_filename(f->dir, PB_MAILBOX_LOCK, NULL);
	char host[256] = "";

	g_assert_no_error(error);
	second = pb_mailbox_open(f->dir, &error);
	g_assert_null(second);
	g_assert_error(error, PB_ERROR, PB_ERROR_BUSY);
	g_clear_error(&error);
	g_clear_pointer(&mb, pb_mailbox_close);
	g_assert_false(g_file_test(lock, G_FILE_TEST_EXISTS));
	/* a lock left by a dead process on this host is broken */
	gethostname(host, sizeof host - 1);
	{
		g_autofree char *text =
		    g_strdup_printf("%s 999999999 0\n", host);
		g_assert_true(g_file_set_contents(lock, text, -1, NULL));
	}
	mb = pb_mailbox_open(f->dir, &error);
	g_assert_no_error(error);
	g_clear_pointer(&mb, pb_mailbox_close);
	/* a live owner's lock holds (this process) */
	{
		g_autofree char *text =
		    g_strdup_printf("%s %d 0\n", host, (int)getpid());
		g_assert_true(g_file_set_contents(lock, text, -1, NULL));
	}
	mb = pb_mailbox_open(f->dir, &error);
	g_assert_error(error, PB_ERROR, PB_ERROR_BUSY);
	g_assert_cmpint(g_unlink(lock), ==, 0);
}

static void
test_commit(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = pb_mailbox_open(f->dir, &error);
	g_autoptr(GString) got = g_string_new(NULL);
	PbLineOut out = {out_write, got};
	gboolean deleted[2] = {TRUE, FALSE};
	g_autofree char *gone =
	    g_build_filename(f->dir, "cur", "0999.M1P1Q1.host:2,S", NULL);
	g_autofree char *seen = g_build_filename(
	    f->dir, "cur", "1000.M1P1Q1.host,S=23,W=28:2,S", NULL);

	g_assert_true(pb_mailbox_send(mb, 1, -1, &out, &error));
	g_assert_true(pb_mailbox_commit(mb, deleted, &error));
	g_assert_no_error(error);
	g_assert_false(g_file_test(gone, G_FILE_TEST_EXISTS));
	g_assert_true(g_file_test(seen, G_FILE_TEST_EXISTS));
	g_clear_pointer(&mb, pb_mailbox_close);
	/* the next session sees the same uid */
	mb = pb_mailbox_open(f->dir, &error);
	g_assert_cmpuint(pb_mailbox_count(mb), ==, 1);
	g_assert_cmpstr(pb_mailbox_uid(mb, 0), ==, "1000.M1P1Q1.host");
}

/* Delivery order, though "M100" sorts before "M99" as text. */
static void
test_order(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = NULL;

	put(f, "new", "1000.M100P1Q1.host,S=2,W=3", "b\n");
	put(f, "new", "1000.M99P1Q1.host,S=2,W=3", "a\n");
	put(f, "new", "999.M5P1Q1.host,S=2,W=3", "z\n");
	/* past 2^32 microseconds (a foreign name): still numeric order */
	put(f, "new", "1001.M10000000000P1Q1.host,S=2,W=3", "d\n");
	put(f, "new", "1001.M9999999999P1Q1.host,S=2,W=3", "c\n");
	mb = pb_mailbox_open(f->dir, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(pb_mailbox_count(mb), ==, 7);
	g_assert_cmpstr(pb_mailbox_uid(mb, 0), ==, "0999.M1P1Q1.host");
	g_assert_cmpstr(pb_mailbox_uid(mb, 1), ==, "999.M5P1Q1.host");
	g_assert_cmpstr(pb_mailbox_uid(mb, 2), ==, "1000.M1P1Q1.host");
	g_assert_cmpstr(pb_mailbox_uid(mb, 3), ==, "1000.M99P1Q1.host");
	g_assert_cmpstr(pb_mailbox_uid(mb, 4), ==, "1000.M100P1Q1.host");
	g_assert_cmpstr(pb_mailbox_uid(mb, 5), ==, "1001.M9999999999P1Q1.host");
	g_assert_cmpstr(pb_mailbox_uid(mb, 6), ==,
	                "1001.M10000000000P1Q1.host");
}

static char *
path_of(F *f, const char *sub, const char *name)
{
	return g_build_filename(f->dir, sub, name, NULL);
}

/* A local MUA moves and flags messages under a POP3 session (it knows
 * nothing of the lock): RETR and the UPDATE state follow them. */
static void
test_moved_by_another_reader(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = pb_mailbox_open(f->dir, &error);
	g_autoptr(GString) got = g_string_new(NULL);
	PbLineOut out = {out_write, got};
	gboolean deleted[2] = {TRUE, FALSE};
	g_autofree char *a_new =
	    path_of(f, "new", "1000.M1P1Q1.host,S=23,W=28");
	g_autofree char *a_mua =
	    path_of(f, "cur", "1000.M1P1Q1.host,S=23,W=28:2,RS");
	g_autofree char *b_cur = path_of(f, "cur", "0999.M1P1Q1.host:2,S");
	g_autofree char *b_mua = path_of(f, "cur", "0999.M1P1Q1.host:2,FS");

	g_assert_no_error(error);
	g_assert_cmpint(g_rename(a_new, a_mua), ==, 0);
	g_assert_cmpint(g_rename(b_cur, b_mua), ==, 0);
	g_assert_true(pb_mailbox_send(mb, 1, -1, &out, &error));
	g_assert_no_error(error);
	g_assert_cmpstr(got->str, ==,
	                "Subject: a\r\n\r\n..dot\r\nl2\r\nl3\r\n.\r\n");
	/* DELE of the reflagged one removes it; the retrieved one stays as
	 * the MUA left it */
	g_assert_true(pb_mailbox_commit(mb, deleted, &error));
	g_assert_no_error(error);
	g_assert_false(g_file_test(b_mua, G_FILE_TEST_EXISTS));
	g_assert_true(g_file_test(a_mua, G_FILE_TEST_EXISTS));
	/* one deleted by the other reader is an error only for RETR */
	g_clear_pointer(&mb, pb_mailbox_close);
	mb = pb_mailbox_open(f->dir, &error);
	g_assert_cmpuint(pb_mailbox_count(mb), ==, 1);
	g_assert_cmpint(g_unlink(a_mua), ==, 0);
	g_assert_false(pb_mailbox_send(mb, 0, -1, &out, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_NOTFOUND);
	g_clear_error(&error);
	deleted[0] = TRUE;
	g_assert_true(pb_mailbox_commit(mb, deleted, &error));
	g_assert_no_error(error);
}

/* A second process (imapd storing flags, a MUA) moves a message from new/
 * to cur/ and then changes its flags over and over, every 10 microseconds
 * (far more than STORE commands do): every RETR still finds it, though a
 * scan and an open can each lose a race with a rename. */
static void
test_rename_storm(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = pb_mailbox_open(f->dir, &error);
	const char *names[] = {"new/1000.M1P1Q1.host,S=23,W=28",
	                       "cur/1000.M1P1Q1.host,S=23,W=28:2,",
	                       "cur/1000.M1P1Q1.host,S=23,W=28:2,F",
	                       "cur/1000.M1P1Q1.host,S=23,W=28:2,Fa"};
	pid_t pid;
	int status;

	g_assert_no_error(error);
	pid = fork();
	g_assert_cmpint(pid, >=, 0);
	if (pid == 0) {
		/* a failed assertion in the parent must not leave it behind */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (guint i = 0;; i++) {
			/* new/ once, then round the three names in cur/ */
			guint n = G_N_ELEMENTS(names) - 1;
			g_autofree char *from = g_build_filename(
			    f->dir, names[i == 0 ? 0 : 1 + (i - 1) % n], NULL);
			g_autofree char *to = g_build_filename(
			    f->dir, names[1 + i % n], NULL);
			if (g_rename(from, to) < 0)
				_exit(1);
			g_usleep(10);
		}
	}
	for (guint i = 0; i < 3000; i++) {
		g_autoptr(GString) got = g_string_new(NULL);
		PbLineOut out = {out_write, got};

		g_assert_true(pb_mailbox_send(mb, 1, -1, &out, &error));
		g_assert_no_error(error);
		g_assert_cmpstr(got->str, ==,
		                "Subject: a\r\n\r\n..dot\r\nl2\r\nl3\r\n.\r\n");
	}
	g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
	g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
}

/* A foreign message with Dovecot's S= alone gets W= when it moves to cur/,
 * and a message without either gets both. */
static void
test_sizes_added(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = NULL;
	g_autoptr(GString) got = g_string_new(NULL);
	PbLineOut out = {out_write, got};
	gboolean deleted[4] = {FALSE, FALSE, FALSE, FALSE};
	g_autofree char *s_only =
	    path_of(f, "cur", "1001.M1P1Q1.host,S=4,W=6:2,S");
	g_autofree char *none =
	    path_of(f, "cur", "1002.M1P1Q1.host,S=4,W=6:2,S");

	put(f, "new", "1001.M1P1Q1.host,S=4", "a\nb\n");
	put(f, "new", "1002.M1P1Q1.host", "a\nb\n");
	mb = pb_mailbox_open(f->dir, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(pb_mailbox_count(mb), ==, 4);
	g_assert_cmpuint(pb_mailbox_size(mb, 2), ==, 6);
	g_assert_cmpuint(pb_mailbox_size(mb, 3), ==, 6);
	g_assert_true(pb_mailbox_send(mb, 2, -1, &out, &error));
	g_assert_true(pb_mailbox_send(mb, 3, -1, &out, &error));
	g_assert_true(pb_mailbox_commit(mb, deleted, &error));
	g_assert_no_error(error);
	g_assert_true(g_file_test(s_only, G_FILE_TEST_EXISTS));
	g_assert_true(g_file_test(none, G_FILE_TEST_EXISTS));
}

static void
test_keep_locked(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = pb_mailbox_open(f->dir, &error);
	g_autofree char *lock = g_build_filename(f->dir, PB_MAILBOX_LOCK, NULL);
	struct utimbuf old = {time(NULL) - 3600, time(NULL) - 3600};
	GStatBuf st;

	g_assert_no_error(error);
	g_assert_cmpint(utime(lock, &old), ==, 0);
	pb_mailbox_keep_locked(mb);
	g_assert_cmpint(g_stat(lock, &st), ==, 0);
	g_assert_cmpint(time(NULL) - st.st_mtime, <, 60);
	/* looked at once a second at most, but still looked at */
	g_assert_cmpint(utime(lock, &old), ==, 0);
	g_usleep(1100 * 1000);
	pb_mailbox_keep_locked(mb);
	g_assert_cmpint(g_stat(lock, &st), ==, 0);
	g_assert_cmpint(time(NULL) - st.st_mtime, <, 60);
}

/* What a delivery left in tmp/ (a crash's half-written file, or the
 * marker of a delivery whose queue entry was settled by a process that
 * died before removing it: a link to a message the user may delete) goes
 * after 36 hours, as the Maildir spec says; a younger one stays. */
static void
test_stale_tmp_removed(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = NULL;
	g_autofree char *old = g_build_filename(f->dir, "tmp", "old", NULL);
	g_autofree char *young = g_build_filename(f->dir, "tmp", "young", NULL);
	struct utimbuf t37 = {time(NULL) - 37 * 3600, time(NULL) - 37 * 3600};
	struct utimbuf t35 = {time(NULL) - 35 * 3600, time(NULL) - 35 * 3600};

	put(f, "tmp", "old", "Subject: deleted long ago\n\n");
	put(f, "tmp", "young", "Subject: being delivered\n\n");
	g_assert_cmpint(utime(old, &t37), ==, 0);
	g_assert_cmpint(utime(young, &t35), ==, 0);
	mb = pb_mailbox_open(f->dir, &error);
	g_assert_no_error(error);
	g_assert_false(g_file_test(old, G_FILE_TEST_EXISTS));
	g_assert_true(g_file_test(young, G_FILE_TEST_EXISTS));
	g_assert_cmpuint(pb_mailbox_count(mb), ==, 2);
}

/* What RETR and TOP send, octet by octet (RFC 1939 3 and 7): LF becomes
 * CRLF, a CR before LF stays one, a line's leading dot is doubled; TOP
 * sends the header, the empty line and BODY_LINES lines (< 0: all). */
static GString *
reference_send(const char *text, gsize len, gint64 body_lines)
{
	GString *out = g_string_new(NULL);
	gboolean bol = TRUE, cr = FALSE, header = TRUE, empty = TRUE;

	for (gsize i = 0; i < len && (header || body_lines != 0); i++) {
		char c = text[i];
		if (bol && c == '.')
			g_string_append_c(out, '.');
		bol = c == '\n';
		if (c != '\n') {
			g_string_append_c(out, c);
			cr = c == '\r';
			empty &= c == '\r';
			continue;
		}
		g_string_append(out, cr ? "\n" : "\r\n");
		if (header && empty)
			header = FALSE;
		else if (!header && body_lines > 0)
			body_lines--;
		cr = FALSE;
		empty = TRUE;
	}
	if (!bol && len > 0)
		g_string_append(out, "\r\n");
	g_string_append(out, ".\r\n");
	return out;
}

/* A message of 200 KB (three of pb_mailbox_send's 64 KB reads) with
 * dots, CRs, bare CRs and empty lines, some of them exactly at the read
 * boundaries: RETR and TOP send what the octet-by-octet reference does,
 * and RETR's size (measured: the name has no W=) is what it sends. */
static void
test_send_across_reads(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailbox) mb = NULL;
	g_autoptr(GRand) rand = g_rand_new_with_seed(14);
	const char alphabet[] = "..\r\n\n\naaaaaaaaaaaaaaaaaaaa  ";
	gsize len = 200 * 1024;
	g_autofree char *text = g_malloc(len);
	g_autofree char *path = path_of(f, "new", "3000.M1P1Q1.host");
	const gint64 tops[] = {0, 1, 7, 1000, 100000, -1};

	const char head[] = "Subject: big\r\n\r\n";

	memcpy(text, head, sizeof head - 1);
	for (gsize i = sizeof head - 1; i < len; i++)
		text[i] = alphabet[g_rand_int_range(rand, 0,
		                                    sizeof alphabet - 1)];
	/* a CRLF split by the first boundary, a dot just after the second */
	memcpy(text + 65535, "\r\n", 2);
	memcpy(text + 131071, "\n.", 2);
	text[len - 1] = 'z'; /* no final LF: one is added */
	g_assert_true(g_file_set_contents(path, text, (gssize)len, NULL));
	mb = pb_mailbox_open(f->dir, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(pb_mailbox_uid(mb, 2), ==, "3000.M1P1Q1.host");
	for (guint k = 0; k < G_N_ELEMENTS(tops); k++) {
		g_autoptr(GString) got = g_string_new(NULL);
		g_autoptr(GString) want = reference_send(text, len, tops[k]);
		PbLineOut out = {out_write, got};
		g_assert_true(pb_mailbox_send(mb, 2, tops[k], &out, &error));
		g_assert_no_error(error);
		g_assert_cmpuint(got->len, ==, want->len);
		g_assert_true(memcmp(got->str, want->str, got->len) == 0);
	}
	{
		g_autoptr(GString) unstuffed = reference_send(text, len, -1);
		gsize dots = 0;
		for (gsize i = 0; i < len; i++)
			dots += text[i] == '.' && (i == 0 || text[i - 1] == '\n');
		/* the size counts neither the stuffing, nor the CRLF added
		 * after the last line, nor the final "." */
		g_assert_cmpuint(pb_mailbox_size(mb, 2), ==,
		                 unstuffed->len - dots - 2 - 3);
	}
}

#define ADD(path, fn) g_test_add(path, F, NULL, setup, fn, teardown)

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	ADD("/mailbox/snapshot-and-send", test_snapshot_and_send);
	ADD("/mailbox/lock", test_lock);
	ADD("/mailbox/commit", test_commit);
	ADD("/mailbox/order", test_order);
	ADD("/mailbox/moved-by-another-reader", test_moved_by_another_reader);
	ADD("/mailbox/rename-storm", test_rename_storm);
	ADD("/mailbox/send-across-reads", test_send_across_reads);
	ADD("/mailbox/sizes-added", test_sizes_added);
	ADD("/mailbox/keep-locked", test_keep_locked);
	ADD("/mailbox/stale-tmp-removed", test_stale_tmp_removed);
	return g_test_run();
}
