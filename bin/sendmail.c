/* sendmail - local submission, sendmail-compatible (see DESIGN.md and
 * README "sendmail"): sendmail [-c FILE] [-t] [-i] [-oi] [-f ADDR]
 * [-F NAME] [-bs] [-bp] [-q] [RCPT...].
 *
 * Installed set-user-id to [main] user (as qmail-queue is setuid qmailq),
 * so that any local user can queue mail while the queue stays mode 0700.
 * It trusts nothing from its caller: the submitting user is the real uid;
 * the configuration is the one pb_config_load_trusted() accepts (-c FILE
 * or the default, never PILLARBOX_CONF); environment, umask, limits,
 * signals and descriptors are reset (pb_program_sanitize); -f, -q and
 * the whole -bp listing are only for root and the mail user; the real uid
 * is switched to the mail user before the message is read, so the caller
 * cannot signal or trace it; the delivery attempt runs in a detached
 * child. */
#include "error.h"
#include "log.h"
#include "program.h"
#include "queue.h"
#include "runq.h"
#include "smtp-serve.h"
#include "submit.h"

#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef PB_SANITIZED
/* An AddressSanitizer build only: LeakSanitizer needs ptrace, which a
 * set-user-id process does not allow, and it cannot read its options
 * from the environment there either; it is turned off in that case. */
static gboolean running_setuid;
int __lsan_is_turned_off(void);
int
__lsan_is_turned_off(void)
{
	return running_setuid;
}
#define NOTE_SETUID(x) (running_setuid = (x))
#else
#define NOTE_SETUID(x) ((void)(x))
#endif

typedef enum { MODE_SUBMIT, MODE_SMTP, MODE_LIST, MODE_RUN } Mode;

typedef struct {
	Mode mode;
	char *conf;
	char *sender;
	char *full_name;
	gboolean extract;
	gboolean dot_ends;
	GPtrArray *rcpts;
} Args;

static int
usage(const char *why, const char *arg)
{
	fprintf(stderr, "sendmail: %s%s%s\n", why, arg ? ": " : "",
	        arg ? arg : "");
	fprintf(stderr, "usage: sendmail [-c FILE] [-t] [-i] [-f ADDR] "
	                "[-F NAME] [-bs|-bp|-bm] [-q] [RCPT...]\n");
	return PB_EX_USAGE;
}

/* The value of -fADDR or -f ADDR; NULL when missing. */
static char *
value_of(char **argv, int *i, const char *arg)
{
	if (arg[2] != '\0')
		return g_strdup(arg + 2);
	if (argv[*i + 1] == NULL)
		return NULL;
	return g_strdup(argv[++*i]);
}

/* sendmail's option syntax (-oi, -fADDR, -bs) is not GOption's. */
static int
parse_args(int argc, char **argv, Args *a)
{
	int i;

	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		const char *arg = argv[i];
		char **slot = NULL;

		if (g_str_equal(arg, "--")) {
			i++;
			break;
		}
		switch (arg[1]) {
		case 't':
			a->extract = TRUE;
			break;
		case 'i':
			a->dot_ends = FALSE;
			break;
		case 'o': /* -oi, -oem, -odb... : only -oi matters */
			if (g_str_equal(arg, "-oi") || g_str_equal(arg, "-oI"))
				a->dot_ends = FALSE;
			break;
		case 'v':
		case 'm':
		case 'n':
		case 'U':
		case 'G':
		case 'e':
			break; /* harmless sendmail flags */
		case 'B':
		case 'N':
		case 'R':
		case 'V':
		case 'X':
		case 'L':
		case 'h': { /* sendmail flags with a value we do not use */
			g_autofree char *ignored = value_of(argv, &i, arg);
			if (ignored == NULL)
				return usage("missing value for", arg);
			break;
		}
		case 'f':
		case 'r':
			slot = &a->sender;
			break;
		case 'F':
			slot = &a->full_name;
			break;
		case 'c':
		case 'C':
			slot = &a->conf;
			break;
		case 'q':
			a->mode = MODE_RUN;
			break;
		case 'b':
			if (g_str_equal(arg, "-bs"))
				a->mode = MODE_SMTP;
			else if (g_str_equal(arg, "-bp"))
				a->mode = MODE_LIST;
			else if (!g_str_equal(arg, "-bm"))
				return usage("unsupported mode", arg);
			break;
		default:
			return usage("unknown option", arg);
		}
		if (slot) {
			g_free(*slot);
			if ((*slot = value_of(argv, &i, arg)) == NULL)
				return usage("missing value for", arg);
		}
	}
	for (; i < argc; i++)
		g_ptr_array_add(a->rcpts, g_strdup(argv[i]));
	return PB_EX_OK;
}

/* The immediate delivery attempt, in a detached child so the caller
 * need not wait for it; bounded in number and time as smtpd's is. */
static void
deliver_soon(const PbConfig *cfg, PbQueue *q, char *id)
{
	char *ids[] = {id, NULL};

	if (!cfg->delivery_queue)
		pb_smtp_attempt_detached(cfg, q, NULL, ids, TRUE);
}

static int
submit(const PbConfig *cfg, Args *a, const char *login, uid_t ruid,
       gboolean trusted)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbQueue) q = pb_queue_open(cfg->queue, &error);
	g_autofree char *mine = NULL;
	g_autofree char *sender = NULL;
	g_autofree char *id = NULL;
	PbSubmission sub = {0};

	if (q == NULL || (mine = pb_submit_qualify(cfg, login, &error)) == NULL)
		return pb_program_fail("sendmail", error);
	if (a->sender && *a->sender && strcmp(a->sender, "<>") != 0 &&
	    (sender = pb_submit_qualify(cfg, a->sender, &error)) == NULL)
		return pb_program_fail("sendmail", error);
	if (a->sender && sender == NULL)
		sender = g_strdup(""); /* -f '' or -f '<>': the null sender */
	if (sender && !trusted && strcmp(sender, mine) != 0) {
		fprintf(stderr,
		        "sendmail: -f %s: only root and %s may set "
		        "another sender; you are %s\n",
		        a->sender, cfg->user, login);
		return PB_EX_NOPERM;
	}
	g_ptr_array_add(a->rcpts, NULL);
	sub.sender = sender ? sender : mine;
	sub.full_name = a->full_name;
	sub.login = login;
	sub.uid = (guint)ruid;
	sub.recipients = (char **)a->rcpts->pdata;
	sub.extract = a->extract;
	sub.dot_ends = a->dot_ends;
	if (!pb_submit(cfg, q, &sub, 0, &id, &error))
		return pb_program_fail("sendmail", error);
	deliver_soon(cfg, q, id);
	return PB_EX_OK;
}

/* -bp by a local user: their own messages only. */
typedef struct {
	guint uid;
	const char *address;
} Owner;

static gboolean
owned(const PbEnvelope *env, gpointer data)
{
	const Owner *o = data;

	return pb_submit_is_users(env, o->uid, o->address);
}

static int
list(const PbConfig *cfg, const Owner *owner)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbQueue) q = pb_queue_open(cfg->queue, &error);
	g_autoptr(GString) out = NULL;

	if (q == NULL ||
	    (out = pb_queue_format_listing_of(q, FALSE, 0, owner ? owned : NULL,
	                                      (gpointer)owner, &error)) == NULL)
		return pb_program_fail("sendmail", error);
	fwrite(out->str, 1, out->len, stdout);
	return fflush(stdout) == 0 ? PB_EX_OK : PB_EX_IOERR;
}

/* -bs, -bp, -q. OWNER: the local user when not trusted, whose -bs
 * session may then send only as that user (as submission does), whose
 * -bp lists only their messages, and who may not start a queue run. */
static int
serve_modes(const PbConfig *cfg, Mode mode, const Owner *owner)
{
	PbSmtpServe how = {.cfg = cfg,
	                   .submission = owner != NULL,
	                   .user = owner ? owner->address : NULL,
	                   .local_program = TRUE};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbDkimSigner) dkim = NULL;
	PbRunqStats stats;
	PbPeer peer = {.ip = ""};

	switch (mode) {
	case MODE_SMTP:
		if ((dkim = pb_dkim_signer_new(cfg, &error)) == NULL && error)
			return pb_program_fail("sendmail", error);
		how.dkim = dkim;
		/* its delivery attempt follows in this process */
		if (owner)
			pb_program_ignore_terminal();
		(void)pb_smtp_serve(&how, 0, 1, &peer);
		return PB_EX_OK;
	case MODE_LIST:
		return list(cfg, owner);
	case MODE_RUN:
		if (owner) {
			fprintf(stderr,
			        "sendmail: -q: only root and %s may "
			        "start a queue run (runq does it)\n",
			        cfg->user);
			return PB_EX_NOPERM;
		}
		pb_program_ignore_terminal();
		if (!pb_runq_run(cfg, NULL, FALSE, &stats, &error))
			return pb_program_fail("sendmail", error);
		return PB_EX_OK;
	default:
		g_assert_not_reached();
	}
}

/* The caller's login; the configuration (set-user-id: the trusted one);
 * then the mail user for good. */
static int
start(Args *a, char **login, PbConfig **cfg)
{
	g_autoptr(GError) error = NULL;
	uid_t ruid = getuid(), euid = geteuid();
	struct passwd *pw = getpwuid(ruid);

	*login = pw ? g_strdup(pw->pw_name) : g_strdup_printf("uid%u", ruid);
	*cfg = pb_program_start("sendmail", a->conf, FALSE, FALSE, &error);
	if (*cfg == NULL)
		return pb_program_fail("sendmail", error);
	/* set-user-id: become the mail user entirely */
	if (ruid != euid && setresuid(euid, euid, euid) < 0) {
		perror("sendmail: setresuid");
		return PB_EX_OSERR;
	}
	return PB_EX_OK;
}

int
main(int argc, char **argv)
{
	Args a = {.mode = MODE_SUBMIT, .dot_ends = TRUE};
	g_autoptr(GPtrArray) rcpts = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = NULL;
	g_autofree char *login = NULL;
	g_autofree char *mine = NULL;
	struct passwd *pw;
	uid_t ruid = getuid();
	Owner owner = {(guint)ruid, NULL};
	gboolean trusted;
	int status;

	pb_program_sanitize(); /* before anything is opened or read */
	NOTE_SETUID(ruid != geteuid());
	a.rcpts = rcpts = g_ptr_array_new_with_free_func(g_free);
	if ((status = parse_args(argc, argv, &a)) != PB_EX_OK ||
	    (status = start(&a, &login, &cfg)) != PB_EX_OK)
		goto out;
	if (!pb_program_limits_safe()) {
		/* no delivery in this process (-bs delivers in it too) */
		pb_log_warn(NULL,
		            "the caller's hard resource limits are too "
		            "low for a delivery: the mail waits for runq");
		cfg->delivery_queue = TRUE;
	}
	pw = getpwnam(cfg->user);
	trusted = ruid == 0 || (pw && ruid == pw->pw_uid);
	if (!trusted &&
	    (mine = pb_submit_qualify(cfg, login, &error)) == NULL) {
		status = pb_program_fail("sendmail", error);
		goto out;
	}
	owner.address = mine;
	if (a.mode != MODE_SUBMIT)
		status = serve_modes(cfg, a.mode, trusted ? NULL : &owner);
	else
		status = submit(cfg, &a, login, ruid, trusted);
out:
	g_free(a.conf);
	g_free(a.sender);
	g_free(a.full_name);
	return status;
}
