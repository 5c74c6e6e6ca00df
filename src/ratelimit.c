/*
 * ratelimit.c - the table of failed logins per client (see ratelimit.h).
 *
 * Owns QUEUE/auth-failures (a fourth writer of files besides queue,
 * maildir and accounts, because the count must outlive a connection and
 * be shared by processes that have no common parent under inetd). The
 * file is a fixed array of BUCKETS x WAYS entries of 16 bytes (64 KiB at
 * most, sparse until used): the SHA-256 of the client key (its first 8
 * bytes; 0 marks a free entry), the start of the window and the count.
 * A key lives in the bucket its hash names; a new key takes a free or
 * expired entry there, else the one whose window is oldest. Each look-up
 * reads one bucket under flock (shared for a check, exclusive for a
 * count) and writes at most one entry. Guarantees: the table never
 * grows past its size, whatever the number of clients; no fsync (a count
 * lost in a crash costs nothing); the queue folder is made if missing (a
 * host with pop3d only); a table that cannot be used blocks nobody
 * (logged).
 */
#include "ratelimit.h"
#include "durable.h"
#include "listener.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUCKETS 512
#define WAYS 8

typedef struct {
	guint64 hash;  /* 0: free */
	guint32 start; /* seconds since the epoch: the first failure */
	guint32 count;
} Entry;

typedef struct {
	int fd;
	off_t off;
	Entry e[WAYS];
} Bucket;

G_STATIC_ASSERT(sizeof(Entry) == 16);

static guint64
key_hash(const char *ip)
{
	char key[80];
	guint8 digest[32];
	gsize len = sizeof(digest);
	g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
	guint64 h;

	pb_listener_client_key(ip, key, sizeof(key));
	g_checksum_update(sum, (const guchar *)key, -1);
	g_checksum_get_digest(sum, digest, &len);
	memcpy(&h, digest, sizeof(h));
	return h != 0 ? h : 1;
}

/* Opens the table, locks it (LOCK: LOCK_SH or LOCK_EX) and reads the
 * bucket of HASH; FALSE (logged) when the table cannot be used. */
static gboolean
bucket_read(const PbConfig *cfg, guint64 hash, int lock, Bucket *b)
{
	g_autofree char *path =
	    g_build_filename(cfg->queue, "auth-failures", NULL);
	struct stat st;
	int err = 0;

	b->fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	/* a pop3d-only host may have no queue yet */
	if (b->fd < 0 && errno == ENOENT && pb_mkdirs(cfg->queue, 0700, NULL))
		b->fd =
		    open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	b->off = (off_t)(hash % BUCKETS) * (off_t)sizeof(b->e);
	memset(b->e, 0, sizeof(b->e));
	if (b->fd < 0 || fstat(b->fd, &st) < 0)
		err = errno;
	else if (!S_ISREG(st.st_mode))
		err = EINVAL;
	else if (flock(b->fd, lock) < 0 ||
	         pread(b->fd, b->e, sizeof(b->e), b->off) < 0)
		err = errno;
	if (err == 0)
		return TRUE; /* a short read: the rest is unused (zero) */
	pb_log_warn(NULL, "login rate limit off: %s: %s", path,
	            g_strerror(err));
	if (b->fd >= 0)
		close(b->fd);
	return FALSE;
}

static gboolean
live(const Entry *e, guint32 now, const PbConfig *cfg)
{
	return e->hash != 0 && e->start <= now &&
	       now - e->start < cfg->auth_failure_window;
}

/* The entry of HASH, or -1. */
static int
find(const Bucket *b, guint64 hash)
{
	for (int i = 0; i < WAYS; i++)
		if (b->e[i].hash == hash)
			return i;
	return -1;
}

/* Where a new key goes: a free or expired entry, else the oldest. */
static int
victim(const Bucket *b, guint32 now, const PbConfig *cfg)
{
	int oldest = 0;

	for (int i = 0; i < WAYS; i++) {
		if (!live(&b->e[i], now, cfg))
			return i;
		if (b->e[i].start < b->e[oldest].start)
			oldest = i;
	}
	return oldest;
}

static guint32
now_seconds(void)
{
	return (guint32)(g_get_real_time() / G_USEC_PER_SEC);
}

gboolean
pb_ratelimit_blocked(const PbConfig *cfg, const char *ip)
{
	guint64 hash = key_hash(ip);
	guint32 now = now_seconds();
	gboolean blocked;
	Bucket b;
	int i;

	if (cfg->max_auth_failures == 0 || !bucket_read(cfg, hash, LOCK_SH, &b))
		return FALSE;
	i = find(&b, hash);
	blocked = i >= 0 && live(&b.e[i], now, cfg) &&
	          b.e[i].count >= cfg->max_auth_failures;
	close(b.fd);
	if (blocked)
		pb_log_info(NULL, "login refused from [%s]: too many failures",
		            ip);
	return blocked;
}

void
pb_ratelimit_failed(const PbConfig *cfg, const char *ip)
{
	guint64 hash = key_hash(ip);
	guint32 now = now_seconds();
	Entry *e;
	Bucket b;
	int i;

	if (cfg->max_auth_failures == 0 || !bucket_read(cfg, hash, LOCK_EX, &b))
		return;
	if ((i = find(&b, hash)) < 0)
		i = victim(&b, now, cfg);
	e = &b.e[i];
	if (e->hash != hash || !live(e, now, cfg)) {
		e->hash = hash;
		e->start = now;
		e->count = 0;
	}
	if (e->count < G_MAXUINT32)
		e->count++;
	if (pwrite(b.fd, e, sizeof(*e), b.off + i * (off_t)sizeof(*e)) < 0)
		pb_log_warn(NULL, "login rate limit: %s", g_strerror(errno));
	if (e->count == cfg->max_auth_failures)
		pb_log_warn(NULL,
		            "[%s]: %u failed logins; no more logins for "
		            "%" G_GINT64_FORMAT "s",
		            ip, e->count,
		            cfg->auth_failure_window -
		                (gint64)(now - e->start));
	close(b.fd);
}
