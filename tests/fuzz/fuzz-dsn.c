/*
 * fuzz-dsn.c - the bounce and delay writer reading what it did not
 * write: the original message (its header section is found and
 * attached) and the envelope (its addresses and sanitised replies go
 * into the report). Input: an envelope text, a NUL, then the original
 * message; a first part that does not parse is replaced by a fixed
 * envelope. The report is queued on tmpfs and read back.
 */
#include "dsn.h"
#include "fuzz.h"
#include "queue.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char conf[] = "[main]\nhostname = mx.example.org\n"
                           "domains = example.org\n";

static PbConfig *cfg;
static PbQueue *queue;
static char *qdir;
static int msg_fd = -1; /* the original message, written again per input */

void
fuzz_setup(void)
{
	cfg = fuzz_config(conf);
	queue = fuzz_queue(&qdir);
	msg_fd = memfd_create("msg", MFD_CLOEXEC);
	g_assert_cmpint(msg_fd, >=, 0);
}

static PbEnvelope *
fixed_envelope(void)
{
	PbEnvelope *env = pb_envelope_new();
	PbRecipient *r;

	env->id = g_strdup("0123456789ABCDEF012345");
	g_free(env->sender);
	env->sender = g_strdup("alice@example.org");
	env->arrival = 1763800000;
	r = pb_envelope_add_rcpt(env, "bob@example.net");
	r->state = PB_RCPT_FAILED;
	pb_recipient_add_attempt(r, 1763800100, "mx.example.net[192.0.2.1]:25",
	                         "550 5.1.1 no such user");
	r = pb_envelope_add_rcpt(env, "carol@example.net");
	pb_recipient_add_attempt(r, 1763800100, "mx.example.net[192.0.2.1]:25",
	                         "451 4.3.0 try later");
	return env;
}

static void
check_report(const char *id)
{
	g_autoptr(PbEnvelope) env = pb_queue_read_envelope(queue, id, NULL);

	g_assert_nonnull(env);
	g_assert_cmpstr(env->sender, ==, "");
	g_assert_cmpuint(env->rcpts->len, ==, 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	gsize elen = nul ? (gsize)(nul - data) : 0;
	gsize mlen = nul ? size - elen - 1 : size;
	g_autoptr(PbEnvelope) env = NULL;
	g_autoptr(GError) error = NULL;
	g_autofree char *id = NULL;
	int fd = msg_fd;

	if (elen > 0)
		env = pb_envelope_parse((const char *)data, elen, NULL);
	if (env == NULL)
		env = fixed_envelope();
	g_assert_cmpint(ftruncate(fd, 0), ==, 0);
	g_assert_cmpint(pwrite(fd, nul ? nul + 1 : data, mlen, 0), ==,
	                (ssize_t)mlen);
	for (int kind = PB_DSN_FAILED; kind <= PB_DSN_DELAYED; kind++) {
		g_clear_pointer(&id, g_free);
		gboolean queued = pb_dsn_queue(queue, cfg, kind, env, fd,
		                               1763900000, &id, &error);
		g_assert_no_error(error); /* says why, before the next line */
		g_assert_true(queued);
		if (id)
			check_report(id);
	}
	fuzz_empty_dir(qdir);
	return 0;
}
