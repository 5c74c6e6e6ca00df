/*
 * mime-dump - prints what mime.c and message.c answer for a stored
 * message, in the form of an IMAP FETCH response: the sections that
 * tests/e2e/test_imap_dovecot_diff.py asks imapd and Dovecot for, and a
 * message's structure by hand (the README's memory figures). A test
 * tool: built, not installed.
 *
 *   mime-dump sections FILE...     "FILE NUMBER KIND" for every part
 *                                  (KIND: leaf, multipart, message)
 *   mime-dump fetch FILE ITEM...   "* 1 FETCH (ITEM VALUE)" per ITEM, ITEM
 *                                  one of ENVELOPE, BODY, BODYSTRUCTURE,
 *                                  RFC822.SIZE, BODY[section]<start.count>
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

int
main(int argc, char **argv)
{
	int fd;

	if (argc < 3) {
		fprintf(stderr, "usage: mime-dump sections FILE... | fetch FILE"
		                " ITEM...\n");
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
