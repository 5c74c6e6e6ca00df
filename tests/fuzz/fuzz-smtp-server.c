/*
 * fuzz-smtp-server.c - the SMTP session (commands and DATA) driven as
 * smtpd's loop drives it (smtp-serve.c's converse()), through conn.c's
 * line reader, with the queue, the recipient table and AUTH faked.
 *
 * Input: one octet of options (peer in relay_networks or not, port 587,
 * STARTTLS offered, sendmail -bs), then the client's bytes.
 */
#include "fuzz.h"
#include "smtp-server.h"

#include <string.h>

static const char conf[] = "[main]\nhostname = mx.example.org\n"
                           "domains = example.org, example.net\n"
                           "[smtpd]\nmax_recipients = 5\n"
                           "max_message_size = 4K\n"
                           "relay_networks = 192.0.2.0/24, 2001:db8::/32\n";

static PbConfig *cfg;

typedef struct {
	gsize stored;
	guint open; /* transactions begun and not ended */
} Fake;

static gboolean
exists(void *data, const char *address)
{
	g_assert_nonnull(address);
	return g_str_equal(address, "alice@example.org") ||
	       g_str_equal(address, "postmaster@example.org");
}

static void *
tx_begin(void *data, const char **qid, GError **error)
{
	Fake *f = data;

	f->open++;
	*qid = "0123456789ABCDEF012345";
	return f;
}

static gboolean
tx_write(void *tx, const void *buf, gsize len, GError **error)
{
	Fake *f = tx;

	g_assert_cmpuint(f->open, ==, 1);
	f->stored += len;
	/* a long message fails its write, as a full disk would */
	if (f->stored > 3000) {
		g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOSPC, "full");
		return FALSE;
	}
	return TRUE;
}

static gboolean
tx_commit(void *tx, const char *sender, GPtrArray *rcpts, const char *helo,
          gboolean smtputf8, GError **error)
{
	Fake *f = tx;

	g_assert_cmpuint(f->open, ==, 1);
	g_assert_nonnull(sender);
	g_assert_cmpuint(rcpts->len, >, 0);
	g_assert_cmpuint(rcpts->len, <=, cfg->max_recipients);
	/* nothing that could break the envelope's lines */
	g_assert_null(strpbrk(sender, "\r\n"));
	for (guint i = 0; i < rcpts->len; i++)
		g_assert_null(strpbrk(rcpts->pdata[i], "\r\n"));
	f->open--;
	return TRUE;
}

static void
tx_abort(void *tx)
{
	Fake *f = tx;

	g_assert_cmpuint(f->open, ==, 1);
	f->open--;
}

static gint64
now(void *data)
{
	return 1763800000;
}

static gboolean
authenticate(void *data, const char *user, const char *pass)
{
	return g_str_equal(user, "alice@example.org") &&
	       g_str_equal(pass, "secret");
}

static gboolean
sender_allowed(void *data, const char *user, const char *sender)
{
	return g_str_equal(sender, user);
}

static const PbSmtpHooks hooks = {exists,       tx_begin,      tx_write,
                                  tx_commit,    tx_abort,      now,
                                  authenticate, sender_allowed};

void
fuzz_setup(void)
{
	cfg = fuzz_config(conf);
}

/* The loop of smtp-serve.c, without sockets, TLS or delays. */
static void
converse(PbConn *conn, PbSmtpServer *s)
{
	PbSmtpAction action = PB_SMTP_FLUSH;

	pb_smtp_server_greet(s);
	while (action != PB_SMTP_CLOSE) {
		if (pb_smtp_server_in_data(s)) {
			const char *buf;
			gsize len, used;
			if (!pb_conn_peek(conn, &buf, &len, G_MAXINT64, NULL))
				break;
			used = pb_smtp_server_data(s, buf, len);
			g_assert_cmpuint(used, <=, len);
			pb_conn_consume(conn, used);
		} else {
			const char *line;
			gsize len;
			guint flags;
			if (!pb_conn_read_line(conn, &line, &len, &flags,
			                       G_MAXINT64, NULL))
				break;
			g_assert_cmpuint(len, <=, PB_CONN_MAX_LINE);
			pb_smtp_server_line(s, line, len, flags);
		}
		action = pb_smtp_server_next_action(s);
		if (action == PB_SMTP_STARTTLS) {
			pb_conn_purge_input(conn);
			pb_smtp_server_tls_started(s, "TLS1.3 (fuzz)");
		}
	}
	if (action != PB_SMTP_CLOSE)
		pb_smtp_server_timeout(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	PbSmtpPeer peer = {"198.51.100.7", NULL};
	PbSmtpOptions opts = {FALSE, FALSE, NULL};
	PbLineOut out = fuzz_line_out();
	Fake fake = {0, 0};
	g_autoptr(PbConn) conn = NULL;
	g_autoptr(PbSmtpServer) s = NULL;
	guint8 o;

	if (size < 1)
		return 0;
	o = data[0];
	if (o & 1)
		peer.ip = (o & 8) ? "2001:db8::25" : "192.0.2.25";
	if (o & 2)
		peer.name = "client.example.com";
	opts.tls_available = (o & 4) != 0;
	opts.submission = (o & 16) != 0;
	if (o & 32)
		opts.user = "alice@example.org";
	conn = fuzz_conn_new(data + 1, size - 1);
	s = pb_smtp_server_new(cfg, &hooks, &fake, &peer, &out);
	pb_smtp_server_set_options(s, &opts);
	converse(conn, s);
	g_clear_pointer(&s, pb_smtp_server_free);
	/* freeing the session ends an open transaction */
	g_assert_cmpuint(fake.open, ==, 0);
	return 0;
}
