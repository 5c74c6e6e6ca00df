/* test-mailfolder.c - the IMAP storage on temporary Maildirs: names and
 * modified UTF-7, UIDs (stable across renames, ascending, kept in a
 * Dovecot-written uidlist), flags, keywords, expunge, copy, move, append,
 * folders, subscriptions, UIDVALIDITY, and other processes' renames. */
#include "error.h"
#include "mailbox.h"
#include "mailfolder.h"
#include "mutf7.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
	char *dir;
	PbMailStore *st;
} F;

static void
setup(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;

	/* on tmpfs where there is one: the same code runs, and the many
	 * fsyncs of folder operations cost nothing (the suite's time budget) */
	f->dir = g_build_filename(g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) &&
	                                  access("/dev/shm", W_OK) == 0
	                              ? "/dev/shm"
	                              : g_get_tmp_dir(),
	                          "pbfolder-XXXXXX", NULL);
	g_assert_nonnull(g_mkdtemp(f->dir));
	if (data != NULL) { /* a checked-in tree to start from */
		g_autofree char *src = g_test_build_filename(
		    G_TEST_DIST, "data", "mailfolder", data, NULL);
		g_autofree char *cmd =
		    g_strdup_printf("cp -a '%s/.' '%s'", src, f->dir);
		g_assert_cmpint(system(cmd), ==, 0);
	}
	f->st = pb_mailstore_open(f->dir, &error);
	g_assert_no_error(error);
}

static void
teardown(F *f, gconstpointer data)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);

	pb_mailstore_free(f->st);
	g_assert_cmpint(system(cmd), ==, 0);
	g_free(f->dir);
}

static char *
path(F *f, const char *a, const char *b, const char *c)
{
	return g_build_filename(f->dir, a, b, c, NULL);
}

/* A delivery as maildir.c makes it, into SUB (a folder's new/). */
static char *
deliver(F *f, const char *folder_dir, guint n, const char *text)
{
	g_autofree char *name =
	    g_strdup_printf("%u.M%uP1Q%u.host,S=%zu,W=%zu", 1700000000 + n, n,
	                    n, strlen(text), strlen(text) + 1);
	g_autofree char *p = path(f, folder_dir, "new", name);
	int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0600);

	/* no fsync: a test's files need not survive a power failure */
	g_assert_cmpint(fd, >=, 0);
	g_assert_cmpint(write(fd, text, strlen(text)), ==, (int)strlen(text));
	close(fd);
	return g_steal_pointer(&name);
}

static char *
slurp(const char *p)
{
	char *text = NULL;

	g_assert_true(g_file_get_contents(p, &text, NULL, NULL));
	return text;
}

static gint
cmp_str(gconstpointer a, gconstpointer b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in A/B, sorted, joined with " ". */
static char *
ls(F *f, const char *a, const char *b)
{
	g_autofree char *p = path(f, a, b, NULL);
	g_autoptr(GDir) d = g_dir_open(p, 0, NULL);
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	const char *n;

	g_assert_nonnull(d);
	while ((n = g_dir_read_name(d)) != NULL)
		g_ptr_array_add(names, g_strdup(n));
	g_ptr_array_sort(names, cmp_str);
	g_ptr_array_add(names, NULL);
	return g_strjoinv(" ", (char **)names->pdata);
}

/* ---- names ---- */

static void
test_names(void)
{
	static const char *const good[] = {"INBOX",      "inbox",    "Work",
	                                   "A.B.C",      "Caf&AOk-", "a&-b",
	                                   "Sent Items", "&2D3eAA-", "x.tmpfoo",
	                                   "INBOX.Sub",  NULL};
	static const char *const bad[] = {
	    "",      "../x",       "a/b",   "a..b",   ".a",    "a.",
	    "tmp",   "a.new",      "cur.x", "a\001b", "a\177", "&AOk",
	    "&AGE-", "&AOk-&AOk-", "&2D0-", "a*",     "b%",    "~x",
	    "a\\b",  "&AAA-",      "&AB8-", NULL};
	g_autofree char *utf8 = NULL;
	g_autofree char *back = NULL;
	g_autofree char *canon = NULL;
	g_autofree char *canon2 = NULL;
	g_autofree char *longname = g_strnfill(PB_MAILFOLDER_NAME_MAX + 1, 'x');

	for (guint i = 0; good[i]; i++) {
		g_autoptr(GError) error = NULL;
		if (!pb_mailfolder_name_check(good[i], &error))
			g_error("refused %s: %s", good[i], error->message);
	}
	for (guint i = 0; bad[i]; i++) {
		g_autoptr(GError) error = NULL;
		if (pb_mailfolder_name_check(bad[i], &error))
			g_error("accepted %s", bad[i]);
		g_assert_error(error, PB_MAILFOLDER_ERROR,
		               PB_MAILFOLDER_ERROR_BADNAME);
	}
	g_assert_false(pb_mailfolder_name_check(longname, NULL));
	canon = pb_mailfolder_name_canon("iNbOx");
	g_assert_cmpstr(canon, ==, "INBOX");
	canon2 = pb_mailfolder_name_canon("inbox.Sub");
	g_assert_cmpstr(canon2, ==, "INBOX.Sub");
	/* modified UTF-7 both ways */
	utf8 = pb_mutf7_to_utf8("Caf&AOk-&-x", 11);
	g_assert_cmpstr(utf8, ==, "Caf\xc3\xa9&x");
	back = pb_mutf7_from_utf8(utf8, strlen(utf8));
	g_assert_cmpstr(back, ==, "Caf&AOk-&-x");
	g_free(utf8);
	utf8 = pb_mutf7_to_utf8("&2D3eAA-", 8); /* U+1F600, a surrogate pair */
	g_assert_cmpstr(utf8, ==, "\xf0\x9f\x98\x80");
	g_free(back);
	back = pb_mutf7_from_utf8("\xe6\x97\xa5\xe6\x9c\xac", 6);
	g_assert_cmpstr(back, ==, "&ZeVnLA-");
	g_assert_null(pb_mutf7_from_utf8("\xff", 1));
	g_assert_null(pb_mutf7_to_utf8("&3gA-", 5)); /* lone low surrogate */
}

/* ---- the uidlist parser ---- */

static void
test_uidlist_parse(void)
{
	static const char text[] =
	    "3 V123 N7 Gabc X1\n"
	    "1 :1.M1.h,S=3:2,S\n"
	    "3 W20 G99 :3.M3.h\n"
	    "2 :out.of.order\n" /* dropped */
	    "bad line\n"        /* dropped */
	    "5 :a/b\n"          /* a path: dropped */
	    "6 :6.M6.h\n"
	    "9 :unfinished"; /* no newline: being appended */
	g_autoptr(GError) error = NULL;
	g_autoptr(PbUidlist) ul = pb_uidlist_parse(text, strlen(text), &error);
	g_autofree char *out = NULL;
	g_autoptr(PbUidlist) v1 = NULL;

	g_assert_no_error(error);
	g_assert_cmpuint(ul->uidvalidity, ==, 123);
	g_assert_cmpuint(ul->uidnext, ==, 7);
	g_assert_cmpuint(ul->recs->len, ==, 3);
	g_assert_cmpuint(g_array_index(ul->recs, PbUidRec, 1).uid, ==, 3);
	g_assert_cmpstr(g_array_index(ul->recs, PbUidRec, 1).ext, ==,
	                "W20 G99");
	g_assert_cmpstr(g_array_index(ul->recs, PbUidRec, 1).name, ==,
	                "3.M3.h");
	out = pb_uidlist_format(ul, NULL);
	g_assert_cmpstr(out, ==,
	                "3 V123 N7 Gabc X1\n1 :1.M1.h,S=3:2,S\n"
	                "3 W20 G99 :3.M3.h\n6 :6.M6.h\n");
	/* N below the last UID is raised; Dovecot 1's format is read */
	v1 = pb_uidlist_parse("1 55 2\n4 4.M.h\n", 15, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(v1->uidvalidity, ==, 55);
	g_assert_cmpuint(v1->uidnext, ==, 5);
	g_assert_null(pb_uidlist_parse("2 V1 N1\n", 8, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
	g_clear_error(&error);
	g_assert_null(pb_uidlist_parse("3 N5\n", 5, &error)); /* no V */
	g_assert_error(error, PB_ERROR, PB_ERROR_DATA);
}

static void
test_keywords_subscriptions_parse(void)
{
	static const char kw[] =
	    "0 $Forwarded\n2 Junk\n2 Dup\n3 junk\n26 Over\n"
	    "4 bad(atom\nx y\n5 NonJunk";
	static const char subs[] = "V\t2\n\nWork\nCaf&AOk-\tSub\n../x\ninbox\n";
	char **k = pb_keywords_parse(kw, strlen(kw));
	g_auto(GStrv) s = pb_subscriptions_parse(subs, strlen(subs));
	g_auto(GStrv) old = pb_subscriptions_parse("A.B\nC\n", 6);

	g_assert_cmpstr(k[0], ==, "$Forwarded");
	g_assert_null(k[1]);
	g_assert_cmpstr(k[2], ==, "Junk");
	g_assert_null(k[3]); /* "junk" again, whatever the case */
	g_assert_null(k[4]);
	g_assert_cmpstr(k[5], ==, "NonJunk");
	pb_keywords_free(k);
	g_assert_cmpuint(g_strv_length(s), ==, 3);
	g_assert_cmpstr(s[0], ==, "Work");
	g_assert_cmpstr(s[1], ==, "Caf&AOk-.Sub");
	g_assert_cmpstr(s[2], ==, "INBOX");
	g_assert_cmpstr(old[0], ==, "A.B");
	g_assert_cmpstr(old[1], ==, "C");
}

/* ---- UIDs ---- */

static PbMailFolder *
open_folder(F *f, const char *name, gboolean ro)
{
	g_autoptr(GError) error = NULL;
	PbMailFolder *mf = pb_mailfolder_open(f->st, name, ro, &error);

	g_assert_no_error(error);
	return mf;
}

static void
sync_ok(PbMailFolder *mf, guint flags, PbFolderChanges *ch)
{
	g_autoptr(GError) error = NULL;

	g_assert_true(pb_mailfolder_sync(mf, flags, ch, &error));
	g_assert_no_error(error);
}

static void
test_new_files_ascending(F *f, gconstpointer data)
{
	g_autofree char *n3 = deliver(f, ".", 3, "Subject: c\n\nthree\n");
	g_autofree char *n1 = deliver(f, ".", 1, "Subject: a\n\none\n");
	g_free(deliver(f, ".", 2, "Subject: b\n\ntwo\n"));
	g_autoptr(PbMailFolder) mf = open_folder(f, "INBOX", FALSE);
	g_autoptr(PbUidlist) ul = NULL;
	g_autofree char *uidlist = path(f, "dovecot-uidlist", NULL, NULL);
	g_autofree char *text = NULL;
	g_autofree char *newdir = NULL;
	g_auto(PbFolderChanges) ch;
	g_autofree char *n4 = NULL;
	guint idx;

	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 3);
	/* delivery order, whatever readdir says */
	for (guint i = 0; i < 3; i++)
		g_assert_cmpuint(pb_mailfolder_uid(mf, i), ==, i + 1);
	g_assert_cmpuint(pb_mailfolder_uidnext(mf), ==, 4);
	/* this session moved them to cur/: its \Recent */
	g_assert_cmpuint(pb_mailfolder_recent_count(mf), ==, 3);
	g_assert_true(pb_mailfolder_flags(mf, 0) & PB_MSG_RECENT);
	newdir = ls(f, "new", NULL);
	g_assert_cmpstr(newdir, ==, "");
	text = slurp(uidlist);
	ul = pb_uidlist_parse(text, strlen(text), NULL);
	g_assert_nonnull(ul);
	g_assert_cmpuint(ul->uidvalidity, ==, pb_mailfolder_uidvalidity(mf));
	g_assert_cmpuint(ul->recs->len, ==, 3);
	g_assert_true(
	    g_str_has_prefix(g_array_index(ul->recs, PbUidRec, 0).name, n1));
	g_assert_true(
	    g_str_has_prefix(g_array_index(ul->recs, PbUidRec, 2).name, n3));
	/* a later delivery: the next UID, reported as EXISTS */
	pb_folder_changes_init(&ch);
	n4 = deliver(f, ".", 0, "Subject: d\n\nfour\n"); /* "older" name */
	sync_ok(mf, 0, &ch);
	g_assert_cmpuint(ch.exists, ==, 4);
	g_assert_cmpuint(ch.expunged->len, ==, 0);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 3), ==, 4);
	g_assert_true(pb_mailfolder_find_uid(mf, 3, &idx));
	g_assert_cmpuint(idx, ==, 2);
	g_assert_false(pb_mailfolder_find_uid(mf, 9, &idx));
	g_assert_cmpuint(idx, ==, 4);
}

static void
test_uids_stable_across_renames(F *f, gconstpointer data)
{
	g_autofree char *n1 = deliver(f, ".", 1, "a\n");
	g_free(deliver(f, ".", 2, "b\n"));
	g_autoptr(GError) error = NULL;
	PbMailFolder *mf = open_folder(f, "INBOX", FALSE);
	PbMsgRange r = {1, 1};
	g_autoptr(GArray) changed = g_array_new(FALSE, FALSE, sizeof(guint));
	g_autofree char *cur = NULL;
	g_autofree char *from = NULL;
	g_autofree char *to = NULL;
	g_auto(PbFolderChanges) ch;
	guint32 v = pb_mailfolder_uidvalidity(mf);

	g_assert_true(pb_mailfolder_store(mf, &r, 1, PB_STORE_ADD,
	                                  PB_MSG_SEEN | PB_MSG_FLAGGED, 0,
	                                  changed, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(changed->len, ==, 1);
	g_assert_cmpuint(pb_mailfolder_flags(mf, 1) & PB_MSG_STORABLE, ==,
	                 PB_MSG_SEEN | PB_MSG_FLAGGED);
	cur = ls(f, "cur", NULL);
	g_assert_nonnull(strstr(cur, ":2,FS"));
	pb_mailfolder_close(mf);
	/* another reader (a local MUA, pop3d) renames message 1 */
	from = g_strdup_printf("%s/cur/%s:2,", f->dir, n1);
	to = g_strdup_printf("%s/cur/%s:2,RT", f->dir, n1);
	g_assert_cmpint(g_rename(from, to), ==, 0);
	mf = open_folder(f, "INBOX", FALSE);
	g_assert_cmpuint(pb_mailfolder_uidvalidity(mf), ==, v);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 0), ==, 1);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 1), ==, 2);
	g_assert_cmpuint(pb_mailfolder_flags(mf, 0), ==,
	                 PB_MSG_ANSWERED | PB_MSG_DELETED);
	g_assert_cmpuint(pb_mailfolder_flags(mf, 1), ==,
	                 PB_MSG_SEEN | PB_MSG_FLAGGED);
	/* and while it is open: a FETCH FLAGS to send */
	g_free(from);
	from = g_strdup(to);
	g_free(to);
	to = g_strdup_printf("%s/cur/%s:2,S", f->dir, n1);
	g_assert_cmpint(g_rename(from, to), ==, 0);
	pb_folder_changes_init(&ch);
	sync_ok(mf, 0, &ch);
	g_assert_cmpuint(ch.changed->len, ==, 1);
	g_assert_cmpuint(g_array_index(ch.changed, guint, 0), ==, 0);
	g_assert_cmpuint(pb_mailfolder_flags(mf, 0), ==, PB_MSG_SEEN);
	pb_mailfolder_close(mf);
}

static void
test_recent_once(F *f, gconstpointer data)
{
	g_free(deliver(f, ".", 1, "a\n"));
	g_autoptr(PbMailFolder) a = open_folder(f, "INBOX", FALSE);
	g_autoptr(PbMailFolder) b = open_folder(f, "INBOX", FALSE);
	g_autoptr(PbMailFolder) ro = NULL;
	g_autofree char *n2 = NULL;
	g_autofree char *newdir = NULL;

	g_assert_cmpuint(pb_mailfolder_recent_count(a), ==, 1);
	g_assert_cmpuint(pb_mailfolder_recent_count(b), ==, 0);
	g_assert_cmpuint(pb_mailfolder_uid(b, 0), ==, 1);
	/* EXAMINE moves nothing */
	n2 = deliver(f, ".", 2, "b\n");
	ro = open_folder(f, "INBOX", TRUE);
	g_assert_cmpuint(pb_mailfolder_count(ro), ==, 2);
	newdir = ls(f, "new", NULL);
	g_assert_cmpstr(newdir, ==, n2);
	sync_ok(b, 0, NULL);
	sync_ok(a, 0, NULL);
	g_assert_cmpuint(pb_mailfolder_recent_count(b), ==, 1);
	g_assert_cmpuint(pb_mailfolder_recent_count(a), ==, 1);
	g_assert_cmpuint(pb_mailfolder_uid(a, 1), ==, 2);
	g_assert_cmpuint(pb_mailfolder_uid(ro, 1), ==, 2);
}

/* ---- Dovecot's files ---- */

static gboolean
has_keyword(PbMailFolder *mf, guint i, const char *name)
{
	guint32 kw = pb_mailfolder_keywords(mf, i);

	for (guint k = 0; k < 26; k++)
		if ((kw & (1u << k)) &&
		    g_strcmp0(pb_mailfolder_keyword_name(mf, k), name) == 0)
			return TRUE;
	return FALSE;
}

static void
test_dovecot_kept(F *f, gconstpointer data)
{
	g_autofree char *uidlist = path(f, "dovecot-uidlist", NULL, NULL);
	g_autofree char *before = slurp(uidlist);
	g_autofree char *after = NULL;
	g_autoptr(PbMailFolder) mf = open_folder(f, "INBOX", FALSE);
	g_autoptr(PbMailFolder) sub = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) list = NULL;
	g_auto(GStrv) subs = NULL;
	const char *const *names = pb_mailfolder_keyword_names(mf);
	guint64 size;

	g_assert_cmpuint(pb_mailfolder_uidvalidity(mf), ==, 1796203525);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 3);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 0), ==, 1);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 1), ==, 3);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 2), ==, 4);
	g_assert_cmpuint(pb_mailfolder_uidnext(mf), ==, 5);
	g_assert_cmpuint(g_strv_length((char **)names), ==, 3);
	g_assert_cmpuint(pb_mailfolder_flags(mf, 0), ==, PB_MSG_SEEN);
	g_assert_true(has_keyword(mf, 0, "$Forwarded"));
	g_assert_true(has_keyword(mf, 0, "NonJunk"));
	g_assert_false(has_keyword(mf, 0, "Junk"));
	g_assert_cmpuint(pb_mailfolder_flags(mf, 1), ==, PB_MSG_FLAGGED);
	g_assert_true(has_keyword(mf, 1, "Junk"));
	g_assert_cmpuint(pb_mailfolder_flags(mf, 2), ==, 0);
	g_assert_true(pb_mailfolder_size(mf, 2, &size, &error));
	g_assert_cmpuint(size, ==, 28);
	/* opening wrote nothing: every file was in Dovecot's uidlist */
	after = slurp(uidlist);
	g_assert_cmpstr(after, ==, before);
	sub = open_folder(f, "Caf&AOk-.Sub", FALSE);
	g_assert_cmpuint(pb_mailfolder_uidvalidity(sub), ==, 1796203524);
	g_assert_cmpuint(pb_mailfolder_uid(sub, 0), ==, 1);
	g_assert_cmpuint(pb_mailfolder_flags(sub, 0), ==, PB_MSG_ANSWERED);
	list = pb_mailstore_list(f->st, FALSE, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(list->len, ==, 4);
	g_assert_cmpstr(((PbFolderInfo *)list->pdata[0])->name, ==, "INBOX");
	g_assert_cmpstr(((PbFolderInfo *)list->pdata[1])->name, ==, "Caf&AOk-");
	g_assert_cmpuint(((PbFolderInfo *)list->pdata[1])->attrs, ==,
	                 PB_FOLDER_NONEXISTENT | PB_FOLDER_HAS_CHILDREN);
	g_assert_cmpuint(((PbFolderInfo *)list->pdata[2])->attrs, ==,
	                 PB_FOLDER_HAS_NO_CHILDREN | PB_FOLDER_SUBSCRIBED);
	g_assert_cmpstr(((PbFolderInfo *)list->pdata[3])->name, ==, "Work");
	subs = pb_mailstore_subscriptions(f->st, &error);
	g_assert_cmpstr(subs[0], ==, "Work");
	g_assert_cmpstr(subs[1], ==, "Caf&AOk-.Sub");
	g_assert_null(subs[2]);
}

/* A folder created here gets a UIDVALIDITY above Dovecot's counter. */
static void
test_dovecot_uidvalidity(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailFolder) mf = NULL;
	g_autofree char *counter = path(f, "dovecot-uidvalidity", NULL, NULL);
	g_autofree char *text = NULL;
	g_autofree char *marker = NULL;

	/* as if the clock were behind Dovecot's counter */
	g_assert_true(g_file_set_contents(counter, "fffffff0", -1, NULL));
	g_assert_true(pb_mailstore_create(f->st, "New", &error));
	g_assert_no_error(error);
	mf = open_folder(f, "New", FALSE);
	g_assert_cmpuint(pb_mailfolder_uidvalidity(mf), ==, 0xfffffff1);
	text = slurp(counter);
	g_assert_cmpstr(text, ==, "fffffff1");
	marker = path(f, "dovecot-uidvalidity.fffffff1", NULL, NULL);
	g_assert_true(g_file_test(marker, G_FILE_TEST_EXISTS));
}

static void
test_uidvalidity_never_reused(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	guint32 v[3];

	for (guint i = 0; i < 3; i++) {
		g_autoptr(PbMailFolder) mf = NULL;
		g_assert_true(pb_mailstore_create(f->st, "X", &error));
		g_assert_no_error(error);
		mf = open_folder(f, "X", FALSE);
		v[i] = pb_mailfolder_uidvalidity(mf);
		g_assert_cmpuint(v[i], >=,
		                 (guint32)(g_get_real_time() / G_USEC_PER_SEC) -
		                     5);
		g_assert_true(pb_mailstore_delete(f->st, "X", &error));
		g_assert_no_error(error);
		g_assert_false(pb_mailstore_exists(f->st, "X"));
	}
	g_assert_cmpuint(v[1], >, v[0]);
	g_assert_cmpuint(v[2], >, v[1]);
}

/* ---- EXPUNGE, COPY, MOVE ---- */

static PbMailFolder *
four_messages(F *f)
{
	for (guint i = 1; i <= 4; i++) {
		g_autofree char *text =
		    g_strdup_printf("Subject: %u\n\nx\n", i);
		g_free(deliver(f, ".", i, text));
	}
	return open_folder(f, "INBOX", FALSE);
}

static void
store_ok(PbMailFolder *mf, guint first, guint last, PbStoreOp op, guint flags,
         guint32 kw)
{
	g_autoptr(GError) error = NULL;
	PbMsgRange r = {first, last};

	g_assert_true(
	    pb_mailfolder_store(mf, &r, 1, op, flags, kw, NULL, &error));
	g_assert_no_error(error);
}

static void
test_expunge(F *f, gconstpointer data)
{
	g_autoptr(PbMailFolder) mf = four_messages(f);
	g_autoptr(GError) error = NULL;
	g_autoptr(GArray) ex = g_array_new(FALSE, FALSE, sizeof(guint));
	g_autofree char *cur = NULL;
	PbMsgRange only = {2, 2};

	store_ok(mf, 1, 2, PB_STORE_ADD, PB_MSG_DELETED, 0);
	store_ok(mf, 3, 3, PB_STORE_REPLACE, PB_MSG_DELETED | PB_MSG_SEEN, 0);
	/* UID EXPUNGE: only within the set */
	g_assert_true(pb_mailfolder_expunge(mf, &only, 1, ex, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(ex->len, ==, 1);
	g_assert_cmpuint(g_array_index(ex, guint, 0), ==, 3);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 3);
	/* EXPUNGE: the rest with \Deleted; numbers as they are sent */
	g_array_set_size(ex, 0);
	g_assert_true(pb_mailfolder_expunge(mf, NULL, 0, ex, &error));
	g_assert_cmpuint(ex->len, ==, 2);
	g_assert_cmpuint(g_array_index(ex, guint, 0), ==, 2);
	g_assert_cmpuint(g_array_index(ex, guint, 1), ==, 2);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 1);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 0), ==, 1);
	cur = ls(f, "cur", NULL);
	g_assert_null(strchr(cur, ' ')); /* one file left */
}

static void
test_read_only(F *f, gconstpointer data)
{
	g_autoptr(PbMailFolder) rw = four_messages(f);
	g_autoptr(PbMailFolder) mf = open_folder(f, "INBOX", TRUE);
	g_autoptr(GError) error = NULL;
	PbMsgRange r = {0, 3};

	g_assert_false(pb_mailfolder_read_only(rw));
	g_assert_true(pb_mailfolder_read_only(mf));
	g_assert_false(pb_mailfolder_store(mf, &r, 1, PB_STORE_ADD, PB_MSG_SEEN,
	                                   0, NULL, &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_READONLY);
	g_clear_error(&error);
	g_assert_false(pb_mailfolder_expunge(mf, NULL, 0, NULL, &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_READONLY);
}

static void
test_copy_move(F *f, gconstpointer data)
{
	g_autoptr(PbMailFolder) mf = four_messages(f);
	g_autoptr(PbMailFolder) work = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GArray) su = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_autoptr(GArray) du = g_array_new(FALSE, FALSE, sizeof(guint32));
	g_autoptr(GArray) ex = g_array_new(FALSE, FALSE, sizeof(guint));
	PbMsgRange r[2] = {{0, 0}, {2, 3}};
	guint32 v = 0;
	gint k;
	char *moved_base;

	g_assert_true(pb_mailstore_create(f->st, "Work", &error));
	g_assert_no_error(error);
	k = pb_mailfolder_keyword(mf, "$Label1", TRUE, &error);
	g_assert_cmpint(k, ==, 0);
	g_assert_cmpint(pb_mailfolder_keyword(mf, "$label1", FALSE, NULL), ==,
	                0);
	g_assert_cmpint(pb_mailfolder_keyword(mf, "Other", FALSE, NULL), ==,
	                -1);
	store_ok(mf, 0, 0, PB_STORE_ADD, PB_MSG_SEEN, 1u << k);
	/* COPY 1,3:4 Work */
	g_assert_true(pb_mailfolder_copy(mf, r, 2, "Work", FALSE, &v, su, du,
	                                 NULL, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(su->len, ==, 3);
	g_assert_cmpuint(g_array_index(su, guint32, 1), ==, 3);
	g_assert_cmpuint(g_array_index(du, guint32, 0), ==, 1);
	g_assert_cmpuint(g_array_index(du, guint32, 2), ==, 3);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 4);
	work = open_folder(f, "Work", FALSE);
	g_assert_cmpuint(pb_mailfolder_uidvalidity(work), ==, v);
	g_assert_cmpuint(pb_mailfolder_count(work), ==, 3);
	g_assert_cmpuint(pb_mailfolder_flags(work, 0), ==, PB_MSG_SEEN);
	g_assert_true(has_keyword(work, 0, "$Label1"));
	/* MOVE 2 Work: gone here, the next UID there, same base name */
	r[0].first = r[0].last = 1;
	moved_base = g_strdup_printf("1700000002.M2P1Q2.host,S=%zu,W=%zu:2,",
	                             strlen("Subject: 2\n\nx\n"),
	                             strlen("Subject: 2\n\nx\n") + 1);
	g_array_set_size(su, 0);
	g_array_set_size(du, 0);
	g_assert_true(
	    pb_mailfolder_copy(mf, r, 1, "Work", TRUE, &v, su, du, ex, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(g_array_index(su, guint32, 0), ==, 2);
	g_assert_cmpuint(g_array_index(du, guint32, 0), ==, 4);
	g_assert_cmpuint(ex->len, ==, 1);
	g_assert_cmpuint(g_array_index(ex, guint, 0), ==, 2);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 3);
	sync_ok(work, 0, NULL);
	g_assert_cmpuint(pb_mailfolder_count(work), ==, 4);
	g_assert_cmpuint(pb_mailfolder_uid(work, 3), ==, 4);
	{
		g_autofree char *p = path(f, ".Work", "cur", moved_base);
		g_assert_true(g_file_test(p, G_FILE_TEST_IS_REGULAR));
		g_free(moved_base);
	}
	/* COPY into the folder itself (any case of INBOX): new UIDs */
	g_array_set_size(du, 0);
	g_assert_true(pb_mailfolder_copy(mf, r, 1, "inbox", FALSE, &v, su, du,
	                                 NULL, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(v, ==, pb_mailfolder_uidvalidity(mf));
	g_assert_cmpuint(g_array_index(du, guint32, 0), ==, 5);
	sync_ok(mf, 0, NULL);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 4);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 3), ==, 5);
	g_assert_cmpstr(pb_mailfolder_name(mf), ==, "INBOX");
	/* MOVE to the folder itself is refused */
	g_assert_false(pb_mailfolder_copy(mf, r, 1, "inbox", TRUE, &v, su, du,
	                                  ex, &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR, PB_MAILFOLDER_ERROR_CANNOT);
	g_clear_error(&error);
	g_assert_false(pb_mailfolder_copy(mf, r, 1, "Nope", FALSE, &v, su, du,
	                                  ex, &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_NONEXISTENT);
}

static void
test_keyword_limit(F *f, gconstpointer data)
{
	g_autoptr(PbMailFolder) mf = four_messages(f);
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailFolder) again = NULL;
	g_autofree char *kwfile = path(f, "dovecot-keywords", NULL, NULL);
	g_autofree char *text = NULL;

	for (guint i = 0; i < 26; i++) {
		g_autofree char *name = g_strdup_printf("kw%u", i);
		g_assert_cmpint(pb_mailfolder_keyword(mf, name, TRUE, &error),
		                ==, (gint)i);
		g_assert_no_error(error);
	}
	g_assert_cmpint(pb_mailfolder_keyword(mf, "kw26", TRUE, &error), ==,
	                -1);
	g_assert_error(error, PB_MAILFOLDER_ERROR, PB_MAILFOLDER_ERROR_LIMIT);
	g_clear_error(&error);
	g_assert_cmpint(pb_mailfolder_keyword(mf, "bad(", TRUE, &error), ==,
	                -1);
	g_assert_error(error, PB_MAILFOLDER_ERROR, PB_MAILFOLDER_ERROR_BADNAME);
	g_clear_error(&error);
	g_assert_cmpint(pb_mailfolder_keyword(mf, "\\Seen", TRUE, &error), ==,
	                -1);
	g_assert_error(error, PB_MAILFOLDER_ERROR, PB_MAILFOLDER_ERROR_BADNAME);
	store_ok(mf, 0, 3, PB_STORE_ADD, 0, (1u << 25) | 1u);
	again = open_folder(f, "INBOX", FALSE);
	g_assert_true(has_keyword(again, 3, "kw25"));
	g_assert_true(has_keyword(again, 3, "kw0"));
	text = slurp(kwfile);
	g_assert_true(g_str_has_prefix(text, "0 kw0\n1 kw1\n"));
}

/* ---- APPEND ---- */

static void
test_append(F *f, gconstpointer data)
{
	static const char msg[] = "Subject: hi\r\n\r\nline\r\nbare\rcr\r\n";
	g_autoptr(GError) error = NULL;
	g_autoptr(PbAppend) a = NULL;
	g_autoptr(PbMailFolder) mf = NULL;
	const char *const kws[] = {"$Junk", NULL};
	guint32 v = 0, uid = 0, v2 = 0, uid2 = 0;
	g_autofree char *cur = NULL;
	g_autofree char *newdir = NULL;
	g_autofree char *file = NULL;
	g_autofree char *text = NULL;
	gint64 date;
	guint64 size;
	int fd;

	g_assert_true(pb_mailstore_create(f->st, "Sent", &error));
	a = pb_append_begin(f->st, "Sent", 0, &error);
	g_assert_no_error(error);
	/* split at every CR: the CR LF pairs still become LF */
	for (gsize i = 0; i < sizeof msg - 1; i++)
		g_assert_true(pb_append_write(a, msg + i, 1, &error));
	g_assert_true(pb_append_commit(g_steal_pointer(&a), PB_MSG_SEEN, kws,
	                               1000000000, &v, &uid, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(uid, ==, 1);
	cur = ls(f, ".Sent", "cur");
	g_assert_true(g_str_has_suffix(cur, ",S=26,W=30:2,Sa"));
	file = path(f, ".Sent", "cur", cur);
	text = slurp(file);
	g_assert_cmpstr(text, ==, "Subject: hi\n\nline\nbare\rcr\n");
	/* no flag: into new/ */
	a = pb_append_begin(f->st, "Sent", 0, &error);
	g_assert_true(pb_append_write(a, "x\r\n", 3, &error));
	g_assert_true(pb_append_commit(g_steal_pointer(&a), 0, NULL, -1, &v2,
	                               &uid2, &error));
	g_assert_cmpuint(v2, ==, v);
	g_assert_cmpuint(uid2, ==, 2);
	newdir = ls(f, ".Sent", "new");
	g_assert_true(g_str_has_suffix(newdir, ",S=2,W=3"));
	mf = open_folder(f, "Sent", FALSE);
	g_assert_cmpuint(pb_mailfolder_uidvalidity(mf), ==, v);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 2);
	g_assert_true(has_keyword(mf, 0, "$Junk"));
	g_assert_true(pb_mailfolder_internaldate(mf, 0, &date, &error));
	g_assert_cmpint(date, ==, 1000000000);
	g_assert_true(pb_mailfolder_size(mf, 0, &size, &error));
	g_assert_cmpuint(size, ==, sizeof msg - 1);
	fd = pb_mailfolder_open_message(mf, 1, &error);
	g_assert_cmpint(fd, >=, 0);
	close(fd);
	g_assert_cmpuint(pb_mailfolder_recent_count(mf), ==, 1);
	/* too big, and aborted: nothing left in tmp/ */
	a = pb_append_begin(f->st, "Sent", 4, &error);
	g_assert_false(pb_append_write(a, "12345", 5, &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR, PB_MAILFOLDER_ERROR_TOOBIG);
	g_clear_error(&error);
	g_clear_pointer(&a, pb_append_abort);
	g_free(newdir);
	newdir = ls(f, ".Sent", "tmp");
	g_assert_cmpstr(newdir, ==, "");
	g_assert_null(pb_append_begin(f->st, "Nope", 0, &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_NONEXISTENT);
}

/* ---- other processes ---- */

static void
test_concurrent_renames(F *f, gconstpointer data)
{
	g_autoptr(PbMailFolder) mf = four_messages(f);
	g_autoptr(GError) error = NULL;
	g_auto(PbFolderChanges) ch;
	g_autofree char *cur = ls(f, "cur", NULL);
	g_auto(GStrv) names = g_strsplit(cur, " ", 0);
	g_autofree char *p0 = path(f, "cur", names[0], NULL);
	g_autofree char *p0b = NULL;
	g_autofree char *p2 = path(f, "cur", names[2], NULL);
	g_autofree char *p3 = path(f, "cur", names[3], NULL);
	g_autofree char *p3b = NULL;
	g_autofree char *n5 = NULL;
	int fd;

	g_assert_cmpuint(g_strv_length(names), ==, 4);
	/* a reader renames message 1 (flags) and moves message 4 back to
	 * new/ (any rename at all), pop3d deletes message 3 */
	p0b = g_strdup_printf("%.*s:2,S", (int)(strchr(p0, ':') - p0), p0);
	g_assert_cmpint(g_rename(p0, p0b), ==, 0);
	p3b = path(f, "new", names[3], NULL);
	g_assert_cmpint(g_rename(p3, p3b), ==, 0);
	g_assert_cmpint(g_unlink(p2), ==, 0);
	/* reading before the sync finds the renamed ones */
	fd = pb_mailfolder_open_message(mf, 0, &error);
	g_assert_no_error(error);
	g_assert_cmpint(fd, >=, 0);
	close(fd);
	fd = pb_mailfolder_open_message(mf, 3, &error);
	g_assert_cmpint(fd, >=, 0);
	close(fd);
	fd = pb_mailfolder_open_message(mf, 2, &error);
	g_assert_cmpint(fd, ==, -1);
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_EXPUNGED);
	g_clear_error(&error);
	/* during a FETCH: no EXPUNGE yet, but the new mail is seen */
	n5 = deliver(f, ".", 5, "five\n");
	pb_folder_changes_init(&ch);
	sync_ok(mf, PB_SYNC_NO_EXPUNGE, &ch);
	g_assert_cmpuint(ch.expunged->len, ==, 0);
	g_assert_cmpuint(ch.exists, ==, 5);
	g_assert_true(pb_mailfolder_is_expunged(mf, 2));
	g_assert_cmpuint(pb_mailfolder_uid(mf, 4), ==, 5);
	/* then the EXPUNGE; message 4 keeps its UID after its trip */
	pb_folder_changes_clear(&ch);
	pb_folder_changes_init(&ch);
	sync_ok(mf, 0, &ch);
	g_assert_cmpuint(ch.expunged->len, ==, 1);
	g_assert_cmpuint(g_array_index(ch.expunged, guint, 0), ==, 3);
	g_assert_cmpuint(ch.exists, ==, 4);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 2), ==, 4);
	g_assert_cmpuint(pb_mailfolder_flags(mf, 0) & PB_MSG_STORABLE, ==,
	                 PB_MSG_SEEN);
	/* a STORE on a message renamed meanwhile follows it */
	g_free(p0);
	p0 = g_strdup_printf("%.*s:2,F", (int)(strchr(p0b, ':') - p0b), p0b);
	g_assert_cmpint(g_rename(p0b, p0), ==, 0);
	store_ok(mf, 0, 0, PB_STORE_ADD, PB_MSG_DRAFT, 0);
	g_assert_cmpuint(pb_mailfolder_flags(mf, 0) & PB_MSG_STORABLE, ==,
	                 PB_MSG_SEEN | PB_MSG_DRAFT);
	g_free(cur);
	cur = ls(f, "cur", NULL);
	g_assert_nonnull(strstr(cur, ":2,DS"));
	g_assert_false(g_file_test(p0, G_FILE_TEST_EXISTS));
}

/* ---- folders ---- */

static guint
attrs_of(GPtrArray *list, const char *name)
{
	for (guint i = 0; i < list->len; i++) {
		PbFolderInfo *fi = list->pdata[i];
		if (g_str_equal(fi->name, name))
			return fi->attrs;
	}
	return G_MAXUINT;
}

static void
test_folders(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) list = NULL;
	g_autoptr(PbMailFolder) old = NULL;
	g_auto(GStrv) subs = NULL;
	g_autofree char *mf = path(f, ".A", "maildirfolder", NULL);
	struct stat sb;

	g_assert_true(pb_mailstore_create(f->st, "A.B.C", &error));
	g_assert_no_error(error);
	/* the levels above were made too, each a real folder */
	g_assert_true(pb_mailstore_exists(f->st, "A"));
	g_assert_true(pb_mailstore_exists(f->st, "A.B"));
	g_assert_cmpint(g_stat(mf, &sb), ==, 0);
	g_assert_cmpint(sb.st_mode & 0777, ==, 0600);
	g_free(mf);
	mf = path(f, ".A", NULL, NULL);
	g_assert_cmpint(g_stat(mf, &sb), ==, 0);
	g_assert_cmpint(sb.st_mode & 0777, ==, 0700);
	g_assert_false(pb_mailstore_create(f->st, "A.B", &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_ALREADYEXISTS);
	g_clear_error(&error);
	g_assert_false(pb_mailstore_create(f->st, "inbox", &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_ALREADYEXISTS);
	g_clear_error(&error);
	g_assert_false(pb_mailstore_create(f->st, "../evil", &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR, PB_MAILFOLDER_ERROR_BADNAME);
	g_clear_error(&error);
	g_assert_true(pb_mailstore_subscribe(f->st, "A.B", TRUE, &error));
	g_assert_true(pb_mailstore_subscribe(f->st, "Gone", TRUE, &error));
	g_assert_true(pb_mailstore_ensure_special(f->st, &error));
	g_assert_no_error(error);
	list = pb_mailstore_list(f->st, TRUE, &error);
	g_assert_cmpuint(attrs_of(list, "A"), ==, PB_FOLDER_HAS_CHILDREN);
	g_assert_cmpuint(attrs_of(list, "A.B"), ==,
	                 PB_FOLDER_HAS_CHILDREN | PB_FOLDER_SUBSCRIBED);
	g_assert_cmpuint(attrs_of(list, "A.B.C"), ==,
	                 PB_FOLDER_HAS_NO_CHILDREN);
	g_assert_cmpuint(attrs_of(list, "Gone"), ==,
	                 PB_FOLDER_NONEXISTENT | PB_FOLDER_SUBSCRIBED |
	                     PB_FOLDER_HAS_NO_CHILDREN);
	g_assert_cmpuint(attrs_of(list, "Trash"), ==,
	                 PB_FOLDER_TRASH | PB_FOLDER_SUBSCRIBED |
	                     PB_FOLDER_HAS_NO_CHILDREN);
	g_assert_cmpuint(attrs_of(list, "Sent"), &, PB_FOLDER_SENT);
	g_assert_cmpuint(attrs_of(list, "INBOX"), ==,
	                 PB_FOLDER_HAS_NO_CHILDREN);
	g_clear_pointer(&list, g_ptr_array_unref);
	/* RENAME A Z: the children go along, and the subscription */
	g_assert_false(pb_mailstore_rename(f->st, "A", "A.B.X", &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR, PB_MAILFOLDER_ERROR_CANNOT);
	g_clear_error(&error);
	g_assert_false(pb_mailstore_rename(f->st, "A", "Trash", &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_ALREADYEXISTS);
	g_clear_error(&error);
	g_assert_true(pb_mailstore_rename(f->st, "A", "Z", &error));
	g_assert_no_error(error);
	g_assert_false(pb_mailstore_exists(f->st, "A.B"));
	g_assert_true(pb_mailstore_exists(f->st, "Z.B.C"));
	subs = pb_mailstore_subscriptions(f->st, &error);
	g_assert_true(g_strv_contains((const char *const *)subs, "Z.B"));
	g_assert_false(g_strv_contains((const char *const *)subs, "A.B"));
	/* RENAME INBOX Old: the messages move, INBOX stays */
	g_free(deliver(f, ".", 1, "one\n"));
	g_assert_true(pb_mailstore_rename(f->st, "INBOX", "Old", &error));
	g_assert_no_error(error);
	old = open_folder(f, "Old", FALSE);
	g_assert_cmpuint(pb_mailfolder_count(old), ==, 1);
	g_clear_pointer(&old, pb_mailfolder_close);
	old = open_folder(f, "INBOX", FALSE);
	g_assert_cmpuint(pb_mailfolder_count(old), ==, 0);
	/* DELETE */
	g_assert_false(pb_mailstore_delete(f->st, "INBOX", &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR, PB_MAILFOLDER_ERROR_CANNOT);
	g_clear_error(&error);
	g_assert_true(pb_mailstore_delete(f->st, "Old", &error));
	g_assert_false(pb_mailstore_exists(f->st, "Old"));
	g_assert_false(pb_mailstore_delete(f->st, "Old", &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_NONEXISTENT);
	g_clear_error(&error);
	g_assert_null(pb_mailfolder_open(f->st, "Old", FALSE, &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_NONEXISTENT);
}

/* A symbolic link where a folder should be leads nowhere. */
static void
test_symlink_refused(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *link = path(f, ".Evil", NULL, NULL);

	g_assert_cmpint(symlink("/tmp", link), ==, 0);
	g_assert_null(pb_mailfolder_open(f->st, "Evil", FALSE, &error));
	g_assert_nonnull(error);
	g_clear_error(&error);
	g_assert_null(pb_append_begin(f->st, "Evil", 0, &error));
	g_assert_nonnull(error);
}

static void
test_status(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailFolder) mf = four_messages(f);
	PbFolderStatus s;
	g_autofree char *n5 = NULL;

	store_ok(mf, 0, 1, PB_STORE_ADD, PB_MSG_SEEN, 0);
	n5 = deliver(f, ".", 5, "Subject: 5\n\nx\n");
	g_assert_true(pb_mailstore_status(f->st, "inbox", &s, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(s.messages, ==, 5);
	g_assert_cmpuint(s.recent, ==, 1);
	g_assert_cmpuint(s.unseen, ==, 3);
	g_assert_cmpuint(s.uidnext, ==, 6);
	g_assert_cmpuint(s.uidvalidity, ==, pb_mailfolder_uidvalidity(mf));
	g_assert_cmpuint(s.size, ==, 4 * 15 + 15);
	/* the UID given by STATUS is the one the session then sees */
	sync_ok(mf, 0, NULL);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 4), ==, 5);
	g_assert_false(pb_mailstore_status(f->st, "Nope", &s, &error));
	g_assert_error(error, PB_MAILFOLDER_ERROR,
	               PB_MAILFOLDER_ERROR_NONEXISTENT);
}

/* A message without W= is measured once, and the uidlist keeps it. */
static void
test_size_kept(F *f, gconstpointer data)
{
	g_autofree char *p = path(f, "cur", "1.M1P1.h:2,S", NULL);
	g_autofree char *ul = path(f, "dovecot-uidlist", NULL, NULL);
	g_autofree char *text = NULL;
	g_autoptr(GError) error = NULL;
	PbMailFolder *mf;
	guint64 size;

	g_assert_true(g_file_set_contents(p, "a\nb\r\nc\n", -1, NULL));
	mf = open_folder(f, "INBOX", FALSE);
	g_assert_true(pb_mailfolder_size(mf, 0, &size, &error));
	g_assert_cmpuint(size, ==, 9);
	pb_mailfolder_close(mf);
	text = slurp(ul);
	g_assert_nonnull(strstr(text, "\n1 W9 :1.M1P1.h:2,S\n"));
	g_assert_cmpint(g_unlink(p), ==, 0); /* W now from the uidlist alone */
	g_assert_true(g_file_set_contents(p, "", -1, NULL));
	mf = open_folder(f, "INBOX", FALSE);
	g_assert_true(pb_mailfolder_size(mf, 0, &size, &error));
	g_assert_cmpuint(size, ==, 9);
	pb_mailfolder_close(mf);
}

/* Files nobody should have made: skipped, never a hang or a bad uidlist. */
static void
test_odd_files(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *nl = path(f, "cur", "1.M1.h\nX:2,S", NULL);
	g_autofree char *fifo = path(f, "dovecot-keywords", NULL, NULL);
	g_autofree char *gone = path(f, "..pillarbox-deleted.1.2", NULL, NULL);
	g_autofree char *gone_cur =
	    path(f, "..pillarbox-deleted.1.2", "cur", NULL);
	g_free(deliver(f, ".", 1, "a\n"));
	g_autofree char *want_new = path(f, "new", NULL, NULL);
	g_autofree char *want_cur = path(f, "cur", NULL, NULL);
	g_autoptr(PbMailFolder) mf = NULL;
	g_autoptr(GPtrArray) list = NULL;
	const char *const *watch;

	g_assert_true(g_file_set_contents(nl, "x", -1, NULL));
	g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
	g_assert_cmpint(g_mkdir_with_parents(gone_cur, 0700), ==, 0);
	mf = open_folder(f, "INBOX", FALSE);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 1);
	g_assert_cmpuint(
	    g_strv_length((char **)pb_mailfolder_keyword_names(mf)), ==, 0);
	watch = pb_mailfolder_watch_dirs(mf);
	g_assert_cmpstr(watch[0], ==, want_new);
	g_assert_cmpstr(watch[1], ==, want_cur);
	g_assert_null(watch[2]);
	/* an interrupted DELETE is finished by the next LIST */
	list = pb_mailstore_list(f->st, FALSE, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(list->len, ==, 1);
	g_assert_false(g_file_test(gone, G_FILE_TEST_EXISTS));
}

/* A reader renaming messages all the time (flag changes, as a local MUA
 * or pop3d would) while the session syncs: no message is ever reported
 * expunged, no UID changes. */
static void
test_rename_storm(F *f, gconstpointer data)
{
	g_autoptr(PbMailFolder) mf = NULL;
	g_autofree char *curdir = path(f, "cur", NULL, NULL);
	guint32 uids[10000];
	pid_t pid;
	int status;

	for (guint i = 1; i <= 1000; i++)
		g_free(deliver(f, ".", i, "x\n"));
	mf = open_folder(f, "INBOX", FALSE);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 1000);
	for (guint i = 0; i < 1000; i++)
		uids[i] = pb_mailfolder_uid(mf, i);
	pid = fork();
	g_assert_cmpint(pid, >=, 0);
	if (pid == 0) { /* toggles \Seen on every message for 0.5 s */
		gint64 end = g_get_monotonic_time() + 500000;
		while (g_get_monotonic_time() < end) {
			g_autoptr(GDir) d = g_dir_open(curdir, 0, NULL);
			const char *n;
			while (d && (n = g_dir_read_name(d)) != NULL) {
				g_autofree char *from =
				    g_build_filename(curdir, n, NULL);
				g_autofree char *to =
				    g_str_has_suffix(n, ":2,S")
				        ? g_strndup(from, strlen(from) - 1)
				        : g_strconcat(from, "S", NULL);
				(void)rename(from, to);
			}
		}
		_exit(0);
	}
	for (guint round = 0; round < 25; round++) {
		g_auto(PbFolderChanges) ch;
		pb_folder_changes_init(&ch);
		sync_ok(mf, 0, &ch);
		g_assert_cmpuint(ch.expunged->len, ==, 0);
		g_assert_cmpuint(pb_mailfolder_count(mf), ==, 1000);
		g_usleep(20000);
	}
	g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
	for (guint i = 0; i < 1000; i++)
		g_assert_cmpuint(pb_mailfolder_uid(mf, i), ==, uids[i]);
}

static void
discard(void *ctx, const char *data, gsize len)
{
	*(gsize *)ctx += len;
}

/* pop3d (mailbox.c) on the same INBOX: it retrieves one message (moved
 * to cur/ as seen) and deletes another while IMAP has the folder open. */
static void
test_pop3d_alongside(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMailFolder) mf = NULL;
	g_autoptr(PbMailbox) mb = NULL;
	g_auto(PbFolderChanges) ch;
	gboolean deleted[3] = {FALSE, TRUE, FALSE};
	gsize sent = 0;
	PbLineOut out = {discard, &sent};

	for (guint i = 1; i <= 3; i++)
		g_free(deliver(f, ".", i, "Subject: x\n\nbody\n"));
	/* EXAMINE first: the messages stay in new/ for pop3d */
	mf = open_folder(f, "INBOX", TRUE);
	mb = pb_mailbox_open(f->dir, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(pb_mailbox_count(mb), ==, 3);
	g_assert_true(pb_mailbox_send(mb, 2, -1, &out, &error));
	g_assert_cmpuint(sent, >, 0);
	g_assert_true(pb_mailbox_commit(mb, deleted, &error));
	g_assert_no_error(error);
	g_clear_pointer(&mb, pb_mailbox_close);
	pb_folder_changes_init(&ch);
	sync_ok(mf, 0, &ch);
	g_assert_cmpuint(ch.expunged->len, ==, 1);
	g_assert_cmpuint(g_array_index(ch.expunged, guint, 0), ==, 2);
	g_assert_cmpuint(ch.changed->len, ==, 1);
	g_assert_cmpuint(g_array_index(ch.changed, guint, 0), ==, 1);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 0), ==, 1);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 1), ==, 3);
	g_assert_true(pb_mailfolder_flags(mf, 1) & PB_MSG_SEEN);
	g_assert_false(pb_mailfolder_flags(mf, 0) & PB_MSG_SEEN);
}

/* A lock left by a dead session (its pid gone on this host) or untouched
 * for over 2 minutes (a host that died) is broken. */
static void
test_stale_locks(F *f, gconstpointer data)
{
	g_autofree char *lock = path(f, "dovecot-uidlist.lock", NULL, NULL);
	g_free(deliver(f, ".", 1, "a\n"));
	g_autofree char *n2 = NULL;
	g_autoptr(PbMailFolder) mf = NULL;
	char host[256] = "";
	g_autofree char *dead = NULL;
	struct timeval old[2] = {{time(NULL) - 180, 0}, {time(NULL) - 180, 0}};
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
	gethostname(host, sizeof host - 1);
	dead = g_strdup_printf("%ld:%s\n", (long)pid, host);
	g_assert_true(g_file_set_contents(lock, dead, -1, NULL));
	mf = open_folder(f, "INBOX", FALSE);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 1);
	g_assert_false(g_file_test(lock, G_FILE_TEST_EXISTS));
	/* another host's lock, old */
	g_assert_true(g_file_set_contents(lock, "1:elsewhere\n", -1, NULL));
	g_assert_cmpint(utimes(lock, old), ==, 0);
	n2 = deliver(f, ".", 2, "b\n");
	sync_ok(mf, 0, NULL);
	g_assert_cmpuint(pb_mailfolder_count(mf), ==, 2);
	g_assert_cmpuint(pb_mailfolder_uid(mf, 1), ==, 2);
	g_assert_false(g_file_test(lock, G_FILE_TEST_EXISTS));
}

#define ADD(name, fn) g_test_add(name, F, NULL, setup, fn, teardown)
#define ADD_FROM(name, tree, fn) g_test_add(name, F, tree, setup, fn, teardown)

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/mailfolder/names", test_names);
	g_test_add_func("/mailfolder/uidlist/parse", test_uidlist_parse);
	g_test_add_func("/mailfolder/keywords-subscriptions/parse",
	                test_keywords_subscriptions_parse);
	ADD("/mailfolder/uids/new-ascending", test_new_files_ascending);
	ADD("/mailfolder/uids/stable-across-renames",
	    test_uids_stable_across_renames);
	ADD("/mailfolder/recent/once", test_recent_once);
	ADD_FROM("/mailfolder/dovecot/kept", "dovecot", test_dovecot_kept);
	ADD_FROM("/mailfolder/dovecot/uidvalidity", "dovecot",
	         test_dovecot_uidvalidity);
	ADD("/mailfolder/uidvalidity/never-reused",
	    test_uidvalidity_never_reused);
	ADD("/mailfolder/expunge", test_expunge);
	ADD("/mailfolder/read-only", test_read_only);
	ADD("/mailfolder/copy-move", test_copy_move);
	ADD("/mailfolder/keywords/limit", test_keyword_limit);
	ADD("/mailfolder/append", test_append);
	ADD("/mailfolder/concurrent-renames", test_concurrent_renames);
	ADD("/mailfolder/folders", test_folders);
	ADD("/mailfolder/symlink-refused", test_symlink_refused);
	ADD("/mailfolder/status", test_status);
	ADD("/mailfolder/size-kept", test_size_kept);
	ADD("/mailfolder/odd-files", test_odd_files);
	ADD("/mailfolder/rename-storm", test_rename_storm);
	ADD("/mailfolder/pop3d-alongside", test_pop3d_alongside);
	ADD("/mailfolder/stale-locks", test_stale_locks);
	return g_test_run();
}
