/*
 * mime-dump - prints what mime.c and message.c answer for a stored
 * message, in the form of an IMAP FETCH response, so that
 * tests/e2e/test_imap_dovecot_diff.py can compare it with Dovecot before
 * imapd exists. A test tool: built, not installed.
 *
 *   mime-dump sections FILE...     "FILE NUMBER KIND" for every part
 *                                  (KIND: leaf, multipart, message)
 *   mime-dump fetch FILE ITEM...   "* 1 FETCH (ITEM VALUE)" per ITEM, ITEM
 *                                  one of ENVELOPE, BODY, BODYSTRUCTURE,
 *                                  RFC822.SIZE, BODY[section]<start.count>
 *   mime-dump batch                the same for "FILE<TAB>ITEM" lines read
 *                                  from stdin (one process for a corpus)
 *   mime-dump search KEY NEEDLE FILE...
 *                                  the FILEs that SEARCH KEY NEEDLE finds
 *                                  (KEY: BODY, TEXT, SENTON, SENTBEFORE,
 *                                  SENTSINCE (NEEDLE: yyyy-mm-dd) or a
 *                                  header name)
 *   mime-dump searches FILE...     the same for "KEY<TAB>NEEDLE" lines
 *                                  read from stdin: one line of the
 *                                  FILEs found (space separated) each
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "message.h"
#include "mime.h"

static void
out_write(void *ctx, const char *data, gsize len)
{
	fwrite(data, 1, len, stdout);
}

static const char *cur_file;

static void
print_sections(const PbMimePart *part, const char *prefix)
{
	guint n = 1;

	if ((part->flags & PB_MIME_PART_MESSAGE) != 0 && *prefix != '\0')
		part = part->children;
	if ((part->flags & PB_MIME_PART_MULTIPART) == 0) {
		g_autofree char *num =
		    g_strdup_printf("%s%s1", prefix, *prefix ? "." : "");
		/* a single part: "1" is its body; a message inside goes on */
		if (*prefix == '\0')
			printf("%s %s leaf\n", cur_file, num);
		return;
	}
	for (const PbMimePart *c = part->children; c != NULL; c = c->next) {
		g_autofree char *num =
		    g_strdup_printf("%s%s%u", prefix, *prefix ? "." : "", n++);
		printf("%s %s %s\n", cur_file, num,
		       (c->flags & PB_MIME_PART_MESSAGE)     ? "message"
		       : (c->flags & PB_MIME_PART_MULTIPART) ? "multipart"
		                                             : "leaf");
		if ((c->flags &
		     (PB_MIME_PART_MULTIPART | PB_MIME_PART_MESSAGE)))
			print_sections(c, num);
	}
}

static gboolean
fetch_body(const PbMimePart *root, int fd, const char *item, GString *o)
{
	const char *lb = strchr(item, '['), *rb = strrchr(item, ']');
	PbMimeSection sec;
	guint64 start = 0, count = 0;
	gboolean partial = FALSE;
	PbLineOut out = {out_write, NULL};
	g_autoptr(PbMessageSection) ms = NULL;

	if (lb == NULL || rb == NULL || rb < lb)
		return FALSE;
	if (!pb_mime_section_parse(lb + 1, rb - lb - 1, &sec))
		return FALSE;
	if (rb[1] == '<') {
		partial = TRUE;
		if (sscanf(rb + 2, "%" G_GUINT64_FORMAT ".%" G_GUINT64_FORMAT,
		           &start, &count) != 2)
			return FALSE;
	}
	ms = pb_message_section_new(root, &sec, partial, start, count);
	printf("* 1 FETCH (%.*s", (int)(rb + 1 - item), item);
	if (partial)
		printf("<%" G_GUINT64_FORMAT ">", start);
	printf(" {%" G_GUINT64_FORMAT "}\r\n", pb_message_section_length(ms));
	fflush(stdout);
	if (!pb_message_section_write(ms, fd, &out, NULL))
		return FALSE;
	printf(")\r\n");
	pb_mime_section_clear(&sec);
	return TRUE;
}

static gboolean
fetch(const PbMimePart *root, int fd, const char *item)
{
	g_autoptr(GString) o = g_string_new(NULL);

	if (strcmp(item, "ENVELOPE") == 0)
		pb_mime_append_envelope(o, root);
	else if (strcmp(item, "BODYSTRUCTURE") == 0)
		pb_mime_append_bodystructure(o, root, TRUE);
	else if (strcmp(item, "BODY") == 0)
		pb_mime_append_bodystructure(o, root, FALSE);
	else if (strcmp(item, "RFC822.SIZE") == 0)
		g_string_append_printf(o, "%" G_GUINT64_FORMAT,
		                       pb_mime_part_crlf_size(root));
	else
		return fetch_body(root, fd, item, o);
	if (strcmp(item, "BODYSTRUCTURE") == 0 || strcmp(item, "BODY") == 0)
		printf("* 1 FETCH (%s (%s))\r\n", item, o->str);
	else
		printf("* 1 FETCH (%s %s)\r\n", item, o->str);
	return TRUE;
}

static PbMimePart *
load(const char *path, int *fd)
{
	g_autoptr(GError) err = NULL;
	PbMimePart *root;

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0 || (root = pb_message_parse_fd(*fd, &err)) == NULL) {
		fprintf(stderr, "mime-dump: %s: cannot read\n", path);
		exit(74);
	}
	return root;
}

static int
batch(void)
{
	char line[4096];

	while (fgets(line, sizeof(line), stdin) != NULL) {
		char *tab = strchr(line, '\t');
		g_autoptr(PbMimePart) root = NULL;
		int fd;

		if (tab == NULL)
			return 64;
		*tab = '\0';
		g_strchomp(tab + 1);
		root = load(line, &fd);
		if (!fetch(root, fd, tab + 1)) {
			fprintf(stderr, "mime-dump: bad item %s\n", tab + 1);
			return 64;
		}
		close(fd);
	}
	return 0;
}

/* SENT*: the Date's day where it was written, compared with DAY (days
 * since the epoch); no Date, or one that does not parse, is 1970-01-01
 * (as in Dovecot) */
static gboolean
sent(const PbMimePart *root, const char *key, gint64 day)
{
	g_autofree char *date = pb_mime_header_get(root, "Date");
	gint64 utc = 0, d;
	int tz = 0;

	if (date == NULL || !pb_mime_date_parse(date, &utc, &tz))
		utc = tz = 0;
	d = (utc + (gint64)tz * 60);
	d = d >= 0 ? d / 86400 : -((-d + 86399) / 86400);
	if (g_ascii_strcasecmp(key, "SENTON") == 0)
		return d == day;
	if (g_ascii_strcasecmp(key, "SENTBEFORE") == 0)
		return d < day;
	return d >= day;
}

static gboolean
found_in(const char *path, const char *key, const char *needle, gboolean *found)
{
	int fd;
	g_autoptr(PbMimePart) root = load(path, &fd);
	gboolean ok = TRUE;

	*found = FALSE;
	if (g_ascii_strcasecmp(key, "BODY") == 0 ||
	    g_ascii_strcasecmp(key, "TEXT") == 0) {
		ok = pb_message_search(fd, root,
		                       g_ascii_strcasecmp(key, "BODY") == 0
		                           ? PB_MESSAGE_SEARCH_BODY
		                           : PB_MESSAGE_SEARCH_TEXT,
		                       needle, found, NULL);
	} else if (g_str_has_prefix(key, "SENT")) {
		int y, m, d;
		g_autoptr(GDateTime) dt = NULL;
		if (sscanf(needle, "%d-%d-%d", &y, &m, &d) != 3 ||
		    (dt = g_date_time_new_utc(y, m, d, 0, 0, 0)) == NULL)
			ok = FALSE;
		else
			*found =
			    sent(root, key, g_date_time_to_unix(dt) / 86400);
	} else
		*found = pb_mime_search_header(root, key, needle);
	close(fd);
	return ok;
}

static int
search(const char *key, const char *needle, int nfiles, char **files)
{
	const char *sep = "";

	for (int i = 0; i < nfiles; i++) {
		gboolean found;
		if (!found_in(files[i], key, needle, &found))
			return 74;
		if (found)
			printf("%s%s", sep,
			       strrchr(files[i], '/') != NULL
			           ? strrchr(files[i], '/') + 1
			           : files[i]);
		if (found)
			sep = " ";
	}
	printf("\n");
	return 0;
}

static int
searches(int nfiles, char **files)
{
	char line[4096];

	while (fgets(line, sizeof(line), stdin) != NULL) {
		char *tab = strchr(line, '\t');
		int ret;
		if (tab == NULL)
			return 64;
		*tab = '\0';
		tab[1 + strcspn(tab + 1, "\n")] = '\0';
		if ((ret = search(line, tab + 1, nfiles, files)) != 0)
			return ret;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	int fd;

	if (argc >= 4 && strcmp(argv[1], "search") == 0)
		return search(argv[2], argv[3], argc - 4, argv + 4);
	if (argc >= 2 && strcmp(argv[1], "searches") == 0)
		return searches(argc - 2, argv + 2);
	if (argc == 2 && strcmp(argv[1], "batch") == 0)
		return batch();
	if (argc < 3) {
		fprintf(stderr, "usage: mime-dump sections FILE... | fetch FILE"
		                " ITEM... | batch\n");
		return 64;
	}
	if (strcmp(argv[1], "sections") == 0) {
		for (int i = 2; i < argc; i++) {
			g_autoptr(PbMimePart) root = load(argv[i], &fd);
			cur_file = strrchr(argv[i], '/')
			               ? strrchr(argv[i], '/') + 1
			               : argv[i];
			print_sections(root, "");
			close(fd);
		}
		return 0;
	}
	g_autoptr(PbMimePart) root = load(argv[2], &fd);
	for (int i = 3; strcmp(argv[1], "fetch") == 0 && i < argc; i++)
		if (!fetch(root, fd, argv[i])) {
			fprintf(stderr, "mime-dump: bad item %s\n", argv[i]);
			return 64;
		}
	close(fd);
	return 0;
}
