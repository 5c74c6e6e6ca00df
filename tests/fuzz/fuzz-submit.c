/*
 * fuzz-submit.c - sendmail's reading of a message (src/submit.c): lines
 * and their ends, the header section, -t's To/Cc/Bcc extraction
 * (pb_submit_address_list), Bcc removal, the lone dot. Input: one octet
 * of options (-t, -i), then the message. The queue lives on tmpfs and is
 * emptied after each input.
 *
 * What is queued must be what the SMTP client can send as it is: CRLF
 * line ends only, no NUL, and every recipient a valid address.
 */
#include "address.h"
#include "fuzz.h"
#include "queue.h"
#include "submit.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char conf[] = "[main]\nhostname = mx.example.org\n"
                           "domains = example.org\n"
                           "[smtpd]\nmax_message_size = 64K\n";

static PbConfig *cfg;
static PbQueue *queue;
static char *qdir;
static int in_fd = -1; /* sendmail's stdin, written again per input */

void
fuzz_setup(void)
{
	cfg = fuzz_config(conf);
	queue = fuzz_queue(&qdir);
	in_fd = memfd_create("stdin", MFD_CLOEXEC);
	g_assert_cmpint(in_fd, >=, 0);
}

/* The stored message has CRLF line ends only (no bare LF, no bare CR)
 * and no NUL. */
static void
check_message(const char *id)
{
	g_autofree char *path = g_build_filename(qdir, "msg", id, NULL);
	g_autofree char *text = NULL;
	gsize len;

	g_assert_true(g_file_get_contents(path, &text, &len, NULL));
	g_assert_null(memchr(text, '\0', len));
	g_assert_cmpuint(len, >=, 2);
	g_assert_true(text[len - 2] == '\r' && text[len - 1] == '\n');
	for (gsize i = 0; i < len; i++) {
		if (text[i] == '\n')
			g_assert_true(i > 0 && text[i - 1] == '\r');
		if (text[i] == '\r')
			g_assert_true(i + 1 < len && text[i + 1] == '\n');
	}
}

static void
check_envelope(const char *id)
{
	g_autoptr(PbEnvelope) env = pb_queue_read_envelope(queue, id, NULL);

	g_assert_nonnull(env);
	g_assert_cmpuint(env->rcpts->len, >, 0);
	for (guint i = 0; i < env->rcpts->len; i++) {
		const PbRecipient *r = env->rcpts->pdata[i];
		g_autoptr(PbAddress) a = NULL;
		g_assert_true(pb_address_parse_path(
		    r->address, strlen(r->address),
		    PB_ADDRESS_NO_BRACKETS | PB_ADDRESS_UTF8, &a, NULL, NULL));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *rcpts[] = {"bob@example.org", NULL};
	PbSubmission sub = {"alice@example.org", "Alice", "alice", 1000,
	                    rcpts, FALSE, FALSE};
	g_autoptr(GError) error = NULL;
	g_autofree char *id = NULL;
	int in = in_fd;

	if (size < 1)
		return 0;
	sub.extract = (data[0] & 1) != 0;
	sub.dot_ends = (data[0] & 2) != 0;
	if (sub.extract && (data[0] & 4))
		sub.recipients = NULL;
	g_assert_cmpint(ftruncate(in, 0), ==, 0);
	g_assert_cmpint(pwrite(in, data + 1, size - 1, 0), ==,
	                (ssize_t)size - 1);
	g_assert_cmpint(lseek(in, 0, SEEK_SET), ==, 0);
	if (pb_submit(cfg, queue, &sub, in, &id, &error)) {
		check_message(id);
		check_envelope(id);
	} else
		g_assert_nonnull(error);
	fuzz_empty_dir(qdir);
	return 0;
}
