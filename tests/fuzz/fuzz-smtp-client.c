/*
 * fuzz-smtp-client.c - a hostile remote server: its bytes are the
 * replies read by the SMTP client (pb_smtp_reply_line, the multi-line
 * joining, the capabilities of EHLO) as it goes through the greeting,
 * EHLO or HELO, two transactions (the second after an RSET when the
 * first was left unfinished) and QUIT, over conn.c's line reader.
 */
#include "fuzz.h"
#include "smtp-client.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char conf[] = "[main]\nhostname = mx.example.org\n"
                           "domains = example.org\n";
static const char message[] = "From: a@example.org\r\nSubject: x\r\n\r\n"
                              ".leading dot\r\nbody\r\n.\r\nend\r\n";

static PbConfig *cfg;
static int data_fd;

void
fuzz_setup(void)
{
	cfg = fuzz_config(conf);
	data_fd = memfd_create("message", MFD_CLOEXEC);
	g_assert_cmpint(data_fd, >=, 0);
	g_assert_cmpint(write(data_fd, message, strlen(message)), ==,
	                (ssize_t)strlen(message));
}

static void
check_reply(const PbSmtpReply *r)
{
	if (r == NULL)
		return;
	g_assert_cmpuint(r->code, >=, 200);
	g_assert_cmpuint(r->code, <=, 599);
	g_assert_nonnull(r->dsn);
	g_assert_cmpint(r->dsn[0] - '0', ==, (int)(r->code / 100));
	for (const char *p = r->text; *p; p++)
		g_assert_true(*p >= 0x20 && *p < 0x7f);
}

/* One transaction; FALSE when the connection is gone. */
static gboolean
send_one(PbSmtpClient *c, char **rcpts)
{
	g_autoptr(PbSmtpResult) res = pb_smtp_client_send(
	    c, "sender@example.org", rcpts, data_fd, strlen(message), FALSE);

	check_reply(res->mail);
	check_reply(res->data);
	check_reply(res->final);
	g_assert_true(res->rcpt->len <= g_strv_length(rcpts));
	for (guint i = 0; i < res->rcpt->len; i++)
		check_reply(res->rcpt->pdata[i]);
	g_assert_true(!res->after_dot || res->dropped);
	return !res->dropped;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *rcpts[] = {"a@example.net", "b@example.net",
	                        "c@example.net", NULL};
	g_autoptr(PbConn) conn = fuzz_conn_new(data, size);
	g_autoptr(PbSmtpClient) c = pb_smtp_client_new(cfg, conn);
	g_autoptr(PbSmtpReply) refused = NULL;
	g_autoptr(GError) error = NULL;

	if (!pb_smtp_client_start(c, &refused, &error)) {
		g_assert_nonnull(error);
		check_reply(refused);
		return 0;
	}
	if (send_one(c, rcpts) && send_one(c, rcpts + 1))
		pb_smtp_client_quit(c);
	return 0;
}
