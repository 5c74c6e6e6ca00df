/*
 * config.c - loads and validates the one configuration file.
 *
 * The file is read twice: a line scan first, which knows where every
 * group and key sits (GKeyFile does not), refuses duplicate keys and lines
 * that are neither comment, group nor "key = value"; then GKeyFile for
 * the values. Every key is described once in the table below: its group,
 * its type and where it lands in PbConfig, so parsing, validation and
 * the unknown-key check cannot drift apart.
 *
 * Guarantees: a PbConfig returned is complete and valid (every duration
 * positive, every path absolute, every list parsed); any problem is a
 * PB_ERROR_CONFIG "FILE:LINE: [group] key: why" and no PbConfig.
 *
 * The parsers of values (durations, sizes, networks, endpoints) live here
 * for the modules that take such values elsewhere, and so does the
 * bounded reading of the administrator's other files, the accounts and
 * aliases tables.
 */
#include "config.h"
#include "conn.h"
#include "error.h"
#include "queue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum {
	T_STRING,   /* free text (non-empty) */
	T_OPTSTR,   /* free text, may be empty (NULL then) */
	T_HOSTNAME, /* a domain name; empty: the default */
	T_DOMAINS,  /* a list of domain names */
	T_PATH,     /* made absolute */
	T_OPTPATH,  /* made absolute; empty: NULL */
	T_LOG,      /* syslog | stderr | path */
	T_DELIVERY, /* background | queue */
	T_DELIMITER,
	T_BOOL,
	T_DURATION,
	T_SIZE,
	T_OPTSIZE, /* a size; empty: 0 (a default computed in finish()) */
	T_COUNT, /* a positive integer */
	T_LIMIT, /* a count, or 0 for no limit */
	T_PORT,
	T_CIDRS,
	T_NAMESERVERS,
	T_SELECTOR, /* a DKIM selector (a domain name's labels); empty: NULL */
	T_FIELDS,   /* a list of header field names, lower-cased */
	T_REJECT_MARK, /* reject | mark: TRUE for reject */
} KeyType;

typedef struct {
	const char *group;
	const char *key;
	KeyType type;
	gsize offset;
	const char *dflt; /* NULL: computed or none */
} KeySpec;

#define F(member) offsetof(PbConfig, member)

static const KeySpec keys[] = {
    {"main", "hostname", T_HOSTNAME, F(hostname), NULL},
    {"main", "domains", T_DOMAINS, F(domains), ""},
    {"main", "queue", T_PATH, F(queue), "queue"},
    {"main", "spool", T_PATH, F(spool), "spool"},
    {"main", "accounts", T_PATH, F(accounts), "accounts"},
    {"main", "aliases", T_PATH, F(aliases), "aliases"},
    {"main", "log", T_LOG, F(log), "syslog"},
    {"main", "delivery", T_DELIVERY, F(delivery_queue), "background"},
    {"main", "user", T_STRING, F(user), "pillarbox"},
    {"main", "recipient_delimiter", T_DELIMITER, F(recipient_delimiter), "+"},
    {"main", "max_auth_failures", T_LIMIT, F(max_auth_failures), "10"},
    {"main", "auth_failure_window", T_DURATION, F(auth_failure_window), "10m"},
    {"smtpd", "relay_networks", T_CIDRS, F(relay_networks),
     "127.0.0.0/8, ::1/128"},
    {"smtpd", "max_message_size", T_SIZE, F(max_message_size), "50M"},
    {"smtpd", "max_recipients", T_COUNT, F(max_recipients), "100"},
    {"smtpd", "max_connections", T_COUNT, F(max_connections), "100"},
    {"smtpd", "max_connections_per_ip", T_LIMIT, F(max_connections_per_ip),
     "10"},
    {"smtpd", "timeout", T_DURATION, F(smtpd_timeout), "5m"},
    {"smtpd", "max_use", T_COUNT, F(smtpd_max_use), "1"},
    {"smtpd", "max_idle", T_DURATION, F(smtpd_max_idle), "100s"},
    {"smtpd", "trust_local_socket", T_BOOL, F(trust_local_socket), "no"},
    {"delivery", "retry_interval", T_DURATION, F(retry_interval), "15m"},
    {"delivery", "max_backoff", T_DURATION, F(max_backoff), "2h"},
    {"delivery", "warn_after", T_DURATION, F(warn_after), "4h"},
    {"delivery", "bounce_after", T_DURATION, F(bounce_after), "5d"},
    {"delivery", "parallel", T_COUNT, F(parallel), "20"},
    {"delivery", "nameservers", T_NAMESERVERS, F(nameservers), ""},
    {"delivery", "port", T_PORT, F(port), "25"},
    {"delivery", "helo", T_HOSTNAME, F(helo), NULL},
    {"delivery", "connect_timeout", T_DURATION, F(connect_timeout), "30s"},
    {"delivery", "greeting_timeout", T_DURATION, F(greeting_timeout), "5m"},
    {"delivery", "command_timeout", T_DURATION, F(command_timeout), "5m"},
    {"delivery", "data_init_timeout", T_DURATION, F(data_init_timeout), "2m"},
    {"delivery", "data_block_timeout", T_DURATION, F(data_block_timeout), "3m"},
    {"delivery", "data_end_timeout", T_DURATION, F(data_end_timeout), "10m"},
    {"delivery", "immediate_timeout", T_DURATION, F(immediate_timeout), "5m"},
    {"delivery", "require_tls", T_DOMAINS, F(require_tls), ""},
    {"delivery", "require_verified_tls", T_DOMAINS, F(require_verified_tls),
     ""},
    {"delivery", "tls_ca_file", T_OPTPATH, F(tls_ca_file), ""},
    {"tls", "certificate", T_OPTPATH, F(tls_certificate), ""},
    {"tls", "key", T_OPTPATH, F(tls_key), ""},
    {"tls", "plaintext_auth", T_BOOL, F(plaintext_auth), "no"},
    {"pop3d", "timeout", T_DURATION, F(pop3d_timeout), "10m"},
    {"pop3d", "max_connections", T_COUNT, F(pop3d_max_connections), "100"},
    {"pop3d", "max_connections_per_ip", T_LIMIT,
     F(pop3d_max_connections_per_ip), "10"},
    {"imapd", "timeout", T_DURATION, F(imapd_timeout), "30m"},
    {"imapd", "max_connections", T_COUNT, F(imapd_max_connections), "100"},
    {"imapd", "max_user_connections", T_COUNT,
     F(imapd_max_user_connections), "20"},
    {"imapd", "max_message_size", T_OPTSIZE, F(imapd_max_message_size), ""},
    {"imapd", "max_connections_per_ip", T_LIMIT,
     F(imapd_max_connections_per_ip), "10"},
    {"dkim", "selector", T_SELECTOR, F(dkim_selector), ""},
    {"dkim", "key", T_OPTPATH, F(dkim_key), ""},
    {"dkim", "ed25519_key", T_OPTPATH, F(dkim_ed25519_key), ""},
    {"dkim", "ed25519_selector", T_SELECTOR, F(dkim_ed25519_selector), ""},
    {"dkim", "domains", T_DOMAINS, F(dkim_domains), ""},
    {"dkim", "headers", T_FIELDS, F(dkim_headers), ""},
    {"auth", "checks", T_BOOL, F(auth_checks), "yes"},
    {"auth", "dmarc_reject", T_BOOL, F(auth_dmarc_reject), "yes"},
    {"auth", "spoofed_local_from", T_REJECT_MARK, F(auth_spoof_reject),
     "reject"},
};

/* Where each "[group] key" sits in the file: "group\nkey" -> line. */
typedef struct {
	const char *name;
	GHashTable *lines;
	GHashTable *group_lines; /* group -> line */
} Where;

static guint
where_line(const Where *w, const char *group, const char *key)
{
	g_autofree char *k =
	    key ? g_strconcat(group, "\n", key, NULL) : g_strdup(group);
	GHashTable *t = key ? w->lines : w->group_lines;

	return GPOINTER_TO_UINT(g_hash_table_lookup(t, k));
}

static gboolean G_GNUC_PRINTF(5, 6)
    bad(GError **error, const Where *w, const char *group, const char *key,
        const char *fmt, ...)
{
	va_list ap;
	g_autofree char *why = NULL;
	guint line = where_line(w, group, key);

	va_start(ap, fmt);
	why = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (line == 0) /* a rule between keys broken by the defaults */
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG, "%s: [%s] %s: %s",
		            w->name, group, key ? key : "", why);
	else if (key)
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "%s:%u: [%s] %s: %s", w->name, line, group, key,
		            why);
	else
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG, "%s:%u: [%s]: %s",
		            w->name, line, group, why);
	return FALSE;
}

/* TRUE if VALUE ends with an unpaired backslash (an escape of nothing). */
static gboolean
ends_in_escape(const char *value)
{
	gsize n = strlen(value), odd = 0;

	while (n > 0 && value[n - 1] == '\\') {
		odd ^= 1;
		n--;
	}
	return odd != 0;
}

/* The line scan: records positions, refuses duplicates and junk. */
static gboolean
scan_lines(const char *data, gsize len, Where *w, GError **error)
{
	g_autofree char *copy = g_strndup(data, len);
	g_auto(GStrv) lines = g_strsplit(copy, "\n", -1);
	g_autofree char *group = NULL;

	for (guint i = 0; lines[i] != NULL; i++) {
		char *l = g_strstrip(lines[i]);
		char *eq;
		g_autofree char *k = NULL;

		if (*l == '\0' || *l == '#')
			continue;
		if (*l == '[') {
			char *end = strchr(l, ']');
			if (end == NULL || end[1] != '\0' || end == l + 1)
				goto junk;
			g_free(group);
			group = g_strndup(l + 1, end - l - 1);
			if (g_hash_table_contains(w->group_lines, group)) {
				g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
				            "%s:%u: [%s]: group given twice",
				            w->name, i + 1, group);
				return FALSE;
			}
			g_hash_table_insert(w->group_lines, g_strdup(group),
			                    GUINT_TO_POINTER(i + 1));
			continue;
		}
		if ((eq = strchr(l, '=')) == NULL || eq == l)
			goto junk;
		*eq = '\0';
		if (group == NULL) {
			g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
			            "%s:%u: %s: key outside any [group]",
			            w->name, i + 1, g_strstrip(l));
			return FALSE;
		}
		k = g_strconcat(group, "\n", g_strstrip(l), NULL);
		if (g_hash_table_contains(w->lines, k)) {
			g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
			            "%s:%u: [%s] %s: key given twice", w->name,
			            i + 1, group, l);
			return FALSE;
		}
		g_hash_table_insert(w->lines, g_steal_pointer(&k),
		                    GUINT_TO_POINTER(i + 1));
		/* GKeyFile (2.74) sets its GError twice, with a
		 * GLib-WARNING, when such a value also has a bad escape */
		if (ends_in_escape(eq + 1)) {
			g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
			            "%s:%u: [%s] %s: a backslash ends the value",
			            w->name, i + 1, group, l);
			return FALSE;
		}
		continue;
	junk:
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "%s:%u: not a comment, [group] or key = value",
		            w->name, i + 1);
		return FALSE;
	}
	return TRUE;
}

typedef struct {
	char suffix; /* lower case */
	guint64 unit;
} Unit;

/* "N" or "N" + one of UNITS' suffixes (either case), spaces around: N
 * times the unit, when 0 < N and the product is at most MAX. */
static gboolean
parse_scaled(const char *text, const Unit *units, guint64 max, guint64 *out)
{
	char *end;
	guint64 n, unit = 1;

	while (g_ascii_isspace(*text))
		text++;
	if (!g_ascii_isdigit(*text))
		return FALSE;
	errno = 0;
	n = g_ascii_strtoull(text, &end, 10);
	if (errno != 0)
		return FALSE;
	for (; units->suffix != '\0'; units++)
		if (g_ascii_tolower(*end) == units->suffix) {
			unit = units->unit;
			end++;
			break;
		}
	while (g_ascii_isspace(*end))
		end++;
	if (*end != '\0' || n == 0 || n > max / unit)
		return FALSE;
	*out = n * unit;
	return TRUE;
}

gboolean
pb_parse_duration(const char *text, gint64 *seconds)
{
	static const Unit units[] = {
	    {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'\0', 0}};
	guint64 n;

	/* ten years is more than any timeout or queue lifetime needs */
	if (!parse_scaled(text, units, (guint64)10 * 365 * 86400, &n))
		return FALSE;
	*seconds = (gint64)n;
	return TRUE;
}

gboolean
pb_parse_size(const char *text, guint64 *bytes)
{
	static const Unit units[] = {{'k', 1024},
	                             {'m', 1024 * 1024},
	                             {'g', 1024 * 1024 * 1024},
	                             {'\0', 0}};

	return parse_scaled(text, units, G_MAXINT64, bytes);
}

#define MAX_TABLE (16 * 1024 * 1024)
#define MAX_CONFIG (1024 * 1024)

/* The whole of FD, refused past MAX octets or at a NUL (while reading,
 * not after loading). */
static GString *
read_bounded(int fd, gsize max, const char *path, GError **error)
{
	g_autoptr(GString) data = g_string_new(NULL);
	char buf[8192];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			g_set_error(error, PB_ERROR, PB_ERROR_CONFIG, "%s: %s",
			            path, g_strerror(errno));
			return NULL;
		}
		if (n == 0)
			return g_steal_pointer(&data);
		if (data->len + (gsize)n > max ||
		    memchr(buf, '\0', (gsize)n) != NULL) {
			g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
			            "%s: too large or binary", path);
			return NULL;
		}
		g_string_append_len(data, buf, n);
	}
}

/* Opens NAME (PATH in messages) for reading, only if it is a regular
 * file (not a FIFO that would block, nor a device); with O_NOFOLLOW in
 * FLAGS, not through a symlink either. FD -1 and errno ENOENT when it
 * does not exist. */
static int
open_regular(int dirfd, const char *name, const char *path, int flags,
             GError **error)
{
	int fd = openat(dirfd, name,
	                O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC | flags);
	struct stat st;

	if (fd < 0) {
		int saved = errno;
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG, "%s: %s", path,
		            errno == ELOOP ? "a symbolic link: refused"
		                           : g_strerror(errno));
		errno = saved;
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "%s: not a regular file: refused", path);
		close(fd);
		errno = EINVAL;
		return -1;
	}
	return fd;
}

char **
pb_table_read(const char *path, GError **error)
{
	g_auto(PbFd) fd = open_regular(AT_FDCWD, path, path, O_NOFOLLOW, error);
	g_autoptr(GString) data = NULL;

	if (fd < 0 && errno == ENOENT) {
		g_clear_error(error);
		return g_new0(char *, 1);
	}
	if (fd < 0 || (data = read_bounded(fd, MAX_TABLE, path, error)) == NULL)
		return NULL;
	/* the empty string after the final line end is no line */
	if (data->len > 0 && data->str[data->len - 1] == '\n')
		g_string_truncate(data, data->len - 1);
	return data->len > 0 ? g_strsplit(data->str, "\n", -1)
	                     : g_new0(char *, 1);
}

gboolean
pb_cidr_parse(const char *text, PbCidr *out)
{
	g_autofree char *addr = g_strstrip(g_strdup(text));
	char *slash = strchr(addr, '/');
	guint max;

	memset(out, 0, sizeof *out);
	if (slash)
		*slash++ = '\0';
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else
		return FALSE;
	out->prefix = max;
	if (slash) {
		char *end;
		guint64 p;
		if (!g_ascii_isdigit(*slash))
			return FALSE;
		p = g_ascii_strtoull(slash, &end, 10);
		if (*end != '\0' || p > max)
			return FALSE;
		out->prefix = (guint)p;
	}
	return TRUE;
}

static gboolean
prefix_equal(const guint8 *a, const guint8 *b, guint prefix)
{
	guint bytes = prefix / 8, bits = prefix % 8;

	if (memcmp(a, b, bytes) != 0)
		return FALSE;
	if (bits == 0)
		return TRUE;
	return ((a[bytes] ^ b[bytes]) & (0xff << (8 - bits)) & 0xff) == 0;
}

gboolean
pb_cidr_list_match(const GArray *networks, const char *ip)
{
	guint8 a[16];
	int family;

	if (inet_pton(AF_INET, ip, a) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, ip, a) == 1) {
		static const guint8 mapped[12] = {0, 0, 0, 0, 0,    0,
		                                  0, 0, 0, 0, 0xff, 0xff};
		family = AF_INET6;
		if (memcmp(a, mapped, 12) == 0) {
			memmove(a, a + 12, 4);
			family = AF_INET;
		}
	} else
		return FALSE;
	for (guint i = 0; networks && i < networks->len; i++) {
		const PbCidr *n = &g_array_index(networks, PbCidr, i);
		if (n->family == family && prefix_equal(n->addr, a, n->prefix))
			return TRUE;
	}
	return FALSE;
}

/* RFC 1035 names (letters, digits, hyphens, dots), at most 255 octets. */
static gboolean
valid_hostname(const char *name)
{
	gsize label = 0, len = strlen(name);

	if (len == 0 || len > 255 || name[0] == '.' || name[len - 1] == '.')
		return FALSE;
	for (const char *p = name; *p; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return FALSE;
			label = 0;
		} else if (g_ascii_isalnum(*p) || (*p == '-' && label > 0)) {
			if (++label > 63)
				return FALSE;
		} else
			return FALSE;
	}
	return TRUE;
}

/* The host's fully qualified name, as Postfix's myhostname defaults. */
static char *
default_hostname(void)
{
	char name[256];
	struct addrinfo hints = {.ai_flags = AI_CANONNAME};
	struct addrinfo *res = NULL;
	char *fqdn;

	if (gethostname(name, sizeof name) != 0)
		return g_strdup("localhost");
	name[sizeof name - 1] = '\0';
	if (strchr(name, '.') == NULL &&
	    getaddrinfo(name, NULL, &hints, &res) == 0 && res->ai_canonname &&
	    valid_hostname(res->ai_canonname)) {
		fqdn = g_ascii_strdown(res->ai_canonname, -1);
		freeaddrinfo(res);
		return fqdn;
	}
	if (res)
		freeaddrinfo(res);
	return valid_hostname(name) ? g_ascii_strdown(name, -1)
	                            : g_strdup("localhost");
}

gboolean
pb_parse_endpoint(const char *text, guint16 default_port,
                  struct sockaddr_storage *sa)
{
	g_autofree char *addr = NULL;
	const char *port = NULL;
	guint64 p = default_port;
	socklen_t len;

	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return FALSE;
		addr = g_strndup(text + 1, (gsize)(end - text - 1));
		port = end[1] == ':' ? end + 2 : NULL;
	} else if (strchr(text, ':') != strrchr(text, ':')) {
		addr = g_strdup(text); /* a bare IPv6 address */
	} else {
		const char *colon = strchr(text, ':');
		addr = colon ? g_strndup(text, (gsize)(colon - text))
		             : g_strdup(text);
		port = colon ? colon + 1 : NULL;
	}
	return (port == NULL ||
	        g_ascii_string_to_unsigned(port, 10, 1, 65535, &p, NULL)) &&
	       pb_sockaddr_numeric(addr, (guint)p, sa, &len);
}

/* Splits "a, b,c" into trimmed non-empty items. */
static char **
split_list(const char *value)
{
	g_auto(GStrv) parts = g_strsplit_set(value, ",", -1);
	GPtrArray *out = g_ptr_array_new();

	for (guint i = 0; parts[i]; i++) {
		char *item = g_strstrip(parts[i]);
		if (*item)
			g_ptr_array_add(out, g_strdup(item));
	}
	g_ptr_array_add(out, NULL);
	return (char **)g_ptr_array_free(out, FALSE);
}

static char *
absolute_path(const char *dir, const char *value)
{
	if (g_path_is_absolute(value))
		return g_canonicalize_filename(value, NULL);
	return g_canonicalize_filename(value, dir);
}

/* RFC 5322 2.2: printable ASCII but the colon; DKIM-Signature itself
 * is never signed by us (it cannot be, RFC 6376 3.5). */
static gboolean
valid_field_name(const char *name)
{
	if (*name == '\0' || g_ascii_strcasecmp(name, "dkim-signature") == 0)
		return FALSE;
	for (const char *p = name; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == ':')
			return FALSE;
	return TRUE;
}

#define MEMBER(cfg, spec, type) ((type *)((char *)(cfg) + (spec)->offset))

static gboolean
set_list_value(PbConfig *cfg, const KeySpec *spec, const char *value,
               const Where *w, GError **error)
{
	g_auto(GStrv) items = split_list(value);

	if (spec->type == T_CIDRS) {
		GArray *nets = *MEMBER(cfg, spec, GArray *);
		g_array_set_size(nets, 0);
		for (guint i = 0; items[i]; i++) {
			PbCidr c;
			if (!pb_cidr_parse(items[i], &c))
				return bad(error, w, spec->group, spec->key,
				           "not a network: %s", items[i]);
			g_array_append_val(nets, c);
		}
		return TRUE;
	}
	for (guint i = 0; items[i]; i++) {
		struct sockaddr_storage ss; /* T_NAMESERVERS: checked here */
		if (spec->type == T_FIELDS) {
			char *lower = g_ascii_strdown(items[i], -1);
			g_free(items[i]);
			items[i] = lower;
			if (!valid_field_name(lower))
				return bad(error, w, spec->group, spec->key,
				           "not a header field name: %s",
				           lower);
		} else if (spec->type == T_DOMAINS) {
			char *lower = g_ascii_strdown(items[i], -1);
			g_free(items[i]);
			items[i] = lower; /* "*" (every domain) in the TLS
			                     policy lists */
			if (!valid_hostname(lower) &&
			    !(g_str_equal(lower, "*") &&
			      spec->offset != F(domains)))
				return bad(error, w, spec->group, spec->key,
				           "not a domain name: %s", lower);
		} else if (!pb_parse_endpoint(items[i], 53, &ss))
			return bad(error, w, spec->group, spec->key,
			           "not ADDRESS[:PORT]: %s", items[i]);
	}
	g_strfreev(*MEMBER(cfg, spec, char **));
	*MEMBER(cfg, spec, char **) = g_steal_pointer(&items);
	return TRUE;
}

static gboolean
set_number_value(PbConfig *cfg, const KeySpec *spec, const char *value,
                 const Where *w, GError **error)
{
	guint64 n;
	char *end;

	switch (spec->type) {
	case T_DURATION:
		if (!pb_parse_duration(value, MEMBER(cfg, spec, gint64)))
			return bad(error, w, spec->group, spec->key,
			           "not a duration (N, Ns, Nm, Nh or Nd): %s",
			           value);
		return TRUE;
	case T_OPTSIZE:
		if (*value == '\0') {
			*MEMBER(cfg, spec, guint64) = 0;
			return TRUE;
		}
		if (!pb_parse_size(value, MEMBER(cfg, spec, guint64)) ||
		    *MEMBER(cfg, spec, guint64) == 0)
			return bad(error, w, spec->group, spec->key,
			           "not a size (N, NK, NM or NG; empty: the "
			           "default): %s",
			           value);
		return TRUE;
	case T_SIZE:
		if (!pb_parse_size(value, MEMBER(cfg, spec, guint64)))
			return bad(error, w, spec->group, spec->key,
			           "not a size (N, NK, NM or NG): %s", value);
		return TRUE;
	default:
		break;
	}
	n = g_ascii_strtoull(value, &end, 10);
	if (!g_ascii_isdigit(*value) || *end != '\0' ||
	    (n == 0 && spec->type != T_LIMIT) ||
	    n > (spec->type == T_PORT ? 65535 : 1000000))
		return bad(error, w, spec->group, spec->key, "%s: %s",
		           spec->type == T_PORT    ? "not a port number"
		           : spec->type == T_LIMIT ? "not a count (0: no limit)"
		                                   : "not a positive count",
		           value);
	*MEMBER(cfg, spec, guint) = (guint)n;
	return TRUE;
}

static gboolean
set_text_value(PbConfig *cfg, const KeySpec *spec, const char *value,
               const char *dir, const Where *w, GError **error)
{
	char **slot = MEMBER(cfg, spec, char *);
	char *v = NULL;

	switch (spec->type) {
	case T_STRING:
		if (*value == '\0')
			return bad(error, w, spec->group, spec->key,
			           "must not be empty");
		v = g_strdup(value);
		break;
	case T_OPTSTR:
		v = *value ? g_strdup(value) : NULL;
		break;
	case T_SELECTOR:
		if (*value && !valid_hostname(value))
			return bad(error, w, spec->group, spec->key,
			           "not a selector (letters, digits, hyphens, "
			           "dots): %s",
			           value);
		v = *value ? g_ascii_strdown(value, -1) : NULL;
		break;
	case T_HOSTNAME:
		if (*value && !valid_hostname(value))
			return bad(error, w, spec->group, spec->key,
			           "not a host name: %s", value);
		v = *value ? g_ascii_strdown(value, -1) : NULL;
		break;
	case T_PATH:
	case T_OPTPATH:
		if (*value == '\0' && spec->type == T_PATH)
			return bad(error, w, spec->group, spec->key,
			           "must not be empty");
		v = *value ? absolute_path(dir, value) : NULL;
		break;
	case T_LOG:
		if (*value == '\0')
			return bad(error, w, spec->group, spec->key,
			           "syslog, stderr or a file path");
		v = g_str_equal(value, "syslog") || g_str_equal(value, "stderr")
		        ? g_strdup(value)
		        : absolute_path(dir, value);
		break;
	case T_DELIMITER:
		if (strlen(value) > 1 || g_ascii_isalnum(*value) ||
		    (*value && !g_ascii_isgraph(*value)) || *value == '@' ||
		    *value == '"' || *value == '\\')
			return bad(error, w, spec->group, spec->key,
			           "one punctuation character or empty: %s",
			           value);
		v = g_strdup(value);
		break;
	default:
		g_assert_not_reached();
	}
	g_free(*slot);
	*slot = v;
	return TRUE;
}

static gboolean
set_value(PbConfig *cfg, const KeySpec *spec, const char *value,
          const char *dir, const Where *w, GError **error)
{
	switch (spec->type) {
	case T_DOMAINS:
	case T_CIDRS:
	case T_NAMESERVERS:
	case T_FIELDS:
		return set_list_value(cfg, spec, value, w, error);
	case T_DURATION:
	case T_SIZE:
	case T_OPTSIZE:
	case T_COUNT:
	case T_LIMIT:
	case T_PORT:
		return set_number_value(cfg, spec, value, w, error);
	case T_BOOL:
		if (g_ascii_strcasecmp(value, "yes") == 0 ||
		    g_ascii_strcasecmp(value, "true") == 0)
			*MEMBER(cfg, spec, gboolean) = TRUE;
		else if (g_ascii_strcasecmp(value, "no") == 0 ||
		         g_ascii_strcasecmp(value, "false") == 0)
			*MEMBER(cfg, spec, gboolean) = FALSE;
		else
			return bad(error, w, spec->group, spec->key,
			           "yes or no: %s", value);
		return TRUE;
	case T_DELIVERY:
		if (!g_str_equal(value, "background") &&
		    !g_str_equal(value, "queue"))
			return bad(error, w, spec->group, spec->key,
			           "background or queue: %s", value);
		*MEMBER(cfg, spec, gboolean) = g_str_equal(value, "queue");
		return TRUE;
	case T_REJECT_MARK:
		if (!g_str_equal(value, "reject") &&
		    !g_str_equal(value, "mark"))
			return bad(error, w, spec->group, spec->key,
			           "reject or mark: %s", value);
		*MEMBER(cfg, spec, gboolean) = g_str_equal(value, "reject");
		return TRUE;
	default:
		return set_text_value(cfg, spec, value, dir, w, error);
	}
}

static void
route_free(PbRoute *r)
{
	g_free(r->host);
	g_free(r);
}

/* [routes] DOMAIN = HOST[:PORT], HOST a name, IPv4 or [IPv6]. */
static gboolean
parse_route(PbConfig *cfg, const char *domain, const char *value,
            const Where *w, GError **error)
{
	g_autofree char *host = NULL;
	const char *port = NULL;
	g_autofree char *lower = g_ascii_strdown(domain, -1);
	PbRoute *r;
	guint8 buf[16];

	if (!g_str_equal(lower, "*") && !valid_hostname(lower))
		return bad(error, w, "routes", domain, "not a domain name");
	if (value[0] == '[') {
		const char *end = strchr(value, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return bad(error, w, "routes", domain,
			           "not HOST[:PORT]: %s", value);
		host = g_strndup(value + 1, end - value - 1);
		port = end[1] == ':' ? end + 2 : NULL;
		if (inet_pton(AF_INET6, host, buf) != 1)
			return bad(error, w, "routes", domain,
			           "not an IPv6 address: %s", host);
	} else {
		const char *colon = strchr(value, ':');
		host =
		    colon ? g_strndup(value, colon - value) : g_strdup(value);
		port = colon ? colon + 1 : NULL;
		if (!valid_hostname(host))
			return bad(error, w, "routes", domain,
			           "not HOST[:PORT]: %s", value);
	}
	r = g_new0(PbRoute, 1);
	r->host = g_ascii_strdown(host, -1);
	if (port) {
		char *end;
		guint64 p = g_ascii_strtoull(port, &end, 10);
		if (!g_ascii_isdigit(*port) || *end || p == 0 || p > 65535) {
			route_free(r);
			return bad(error, w, "routes", domain,
			           "not a port number: %s", port);
		}
		r->port = (guint)p;
	}
	g_hash_table_replace(cfg->routes, g_steal_pointer(&lower), r);
	return TRUE;
}

static const KeySpec *
find_spec(const char *group, const char *key)
{
	for (gsize i = 0; i < G_N_ELEMENTS(keys); i++)
		if (g_str_equal(keys[i].group, group) &&
		    g_str_equal(keys[i].key, key))
			return &keys[i];
	return NULL;
}

static gboolean
known_group(const char *group)
{
	return g_str_equal(group, "routes") || g_str_equal(group, "main") ||
	       g_str_equal(group, "smtpd") || g_str_equal(group, "delivery") ||
	       g_str_equal(group, "tls") || g_str_equal(group, "pop3d") ||
	       g_str_equal(group, "imapd") || g_str_equal(group, "dkim") ||
	       g_str_equal(group, "auth");
}

static PbConfig *
config_new(void)
{
	PbConfig *cfg = g_new0(PbConfig, 1);

	cfg->relay_networks = g_array_new(FALSE, TRUE, sizeof(PbCidr));
	cfg->domains = g_new0(char *, 1);
	cfg->require_tls = g_new0(char *, 1);
	cfg->require_verified_tls = g_new0(char *, 1);
	cfg->nameservers = g_new0(char *, 1);
	cfg->dkim_domains = g_new0(char *, 1);
	cfg->dkim_headers = g_new0(char *, 1);
	cfg->routes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	                                    (GDestroyNotify)route_free);
	return cfg;
}

/* Every key of one group of the file: known, valid, stored. */
static gboolean
apply_group(PbConfig *cfg, GKeyFile *kf, const char *group, const char *dir,
            const Where *w, GError **error)
{
	g_auto(GStrv) names = g_key_file_get_keys(kf, group, NULL, NULL);

	if (!known_group(group))
		return bad(error, w, group, NULL, "unknown group");
	for (guint j = 0; names && names[j]; j++) {
		g_autoptr(GError) kerr = NULL;
		g_autofree char *value =
		    g_key_file_get_string(kf, group, names[j], &kerr);
		const KeySpec *spec;

		if (value == NULL)
			return bad(error, w, group, names[j], "%s",
			           kerr->message);
		g_strstrip(value);
		if (g_str_equal(group, "routes")) {
			if (!parse_route(cfg, names[j], value, w, error))
				return FALSE;
			continue;
		}
		if ((spec = find_spec(group, names[j])) == NULL)
			return bad(error, w, group, names[j], "unknown key");
		if (!set_value(cfg, spec, value, dir, w, error))
			return FALSE;
	}
	return TRUE;
}

/* [dkim]: a selector needs the RSA key (RFC 8463 signatures come in
 * addition, several receivers verify RSA only); From must be signed. */
static gboolean
dkim_finish(PbConfig *cfg, const Where *w, GError **error)
{
	if (cfg->dkim_selector == NULL) {
		if (cfg->dkim_key || cfg->dkim_ed25519_key)
			return bad(error, w, "dkim",
			           cfg->dkim_key ? "key" : "ed25519_key",
			           "a key needs a selector");
		return TRUE;
	}
	if (cfg->dkim_key == NULL)
		return bad(error, w, "dkim", "selector",
		           "needs key (an RSA key: some receivers verify "
		           "nothing else)");
	/* its own selector: verifiers that read one record a name */
	if (cfg->dkim_ed25519_selector == NULL)
		cfg->dkim_ed25519_selector =
		    g_strconcat(cfg->dkim_selector, "-ed25519", NULL);
	if (g_str_equal(cfg->dkim_ed25519_selector, cfg->dkim_selector))
		return bad(error, w, "dkim", "ed25519_selector",
		           "must differ from selector (one key record a "
		           "name)");
	if (g_strv_contains((const char *const *)cfg->dkim_domains, "*"))
		return bad(error, w, "dkim", "domains",
		           "domains we hold keys for, not *");
	if (cfg->dkim_headers[0] &&
	    !g_strv_contains((const char *const *)cfg->dkim_headers, "from"))
		return bad(error, w, "dkim", "headers",
		           "must include From (RFC 6376 5.4)");
	return TRUE;
}

/* Rules between keys, and the computed defaults. */
static gboolean
finish(PbConfig *cfg, const Where *w, GError **error)
{
	if (cfg->hostname == NULL)
		cfg->hostname = default_hostname();
	if (cfg->helo == NULL)
		cfg->helo = g_strdup(cfg->hostname);
	if (cfg->max_backoff < cfg->retry_interval)
		return bad(error, w, "delivery", "max_backoff",
		           "shorter than retry_interval");
	if (cfg->bounce_after <= cfg->warn_after)
		return bad(error, w, "delivery", "bounce_after",
		           "not longer than warn_after");
	/* the envelope's bound (queue.h) holds whatever this file says */
	if (cfg->max_recipients > PB_QUEUE_MAX_RCPTS)
		return bad(error, w, "smtpd", "max_recipients",
		           "more than %d (the queue's limit)",
		           PB_QUEUE_MAX_RCPTS);
	if ((cfg->tls_certificate == NULL) != (cfg->tls_key == NULL))
		return bad(error, w, "tls",
		           cfg->tls_certificate ? "certificate" : "key",
		           "certificate and key go together");
	/* RFC 3501 5.4: an autologout timer of at least 30 minutes */
	if (cfg->imapd_timeout < 30 * 60)
		return bad(error, w, "imapd", "timeout",
		           "shorter than 30m (RFC 3501 5.4)");
	if (!dkim_finish(cfg, w, error))
		return FALSE;
	if (cfg->imapd_max_message_size == 0)
		cfg->imapd_max_message_size = cfg->max_message_size;
	return TRUE;
}

PbConfig *
pb_config_load_data(const char *data, gsize len, const char *name,
                    const char *dir, GError **error)
{
	g_autoptr(PbConfig) cfg = config_new();
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autoptr(GError) kerr = NULL;
	g_autoptr(GHashTable) lines =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GHashTable) group_lines =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	Where w = {name, lines, group_lines};
	g_auto(GStrv) groups = NULL;

	if (memchr(data, '\0', len) != NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "%s: a NUL byte in the file", name);
		return NULL;
	}
	if (!scan_lines(data, len, &w, error))
		return NULL;
	if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, &kerr)) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG, "%s: %s", name,
		            kerr->message);
		return NULL;
	}
	for (gsize i = 0; i < G_N_ELEMENTS(keys); i++)
		if (keys[i].dflt &&
		    !set_value(cfg, &keys[i], keys[i].dflt, dir, &w, error))
			return NULL;
	groups = g_key_file_get_groups(kf, NULL);
	for (guint i = 0; groups[i]; i++)
		if (!apply_group(cfg, kf, groups[i], dir, &w, error))
			return NULL;
	if (!finish(cfg, &w, error))
		return NULL;
	return g_steal_pointer(&cfg);
}

/* The configuration in FD, which was opened as ABS (absolute). */
static PbConfig *
load_fd(int fd, const char *abs, GError **error)
{
	g_autoptr(GString) data = read_bounded(fd, MAX_CONFIG, abs, error);
	g_autofree char *dir = g_path_get_dirname(abs);
	PbConfig *cfg;

	if (data == NULL)
		return NULL;
	cfg = pb_config_load_data(data->str, data->len, abs, dir, error);
	if (cfg)
		cfg->path = g_strdup(abs);
	return cfg;
}

static gboolean
no_path(const char *path, GError **error)
{
	if (path != NULL && *path == '\0') {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "an empty configuration path: refused");
		return TRUE;
	}
	return FALSE;
}

PbConfig *
pb_config_load(const char *path, GError **error)
{
	g_autofree char *abs = NULL;
	g_auto(PbFd) fd = -1;

	if (no_path(path, error))
		return NULL;
	if (path == NULL)
		path = g_getenv("PILLARBOX_CONF");
	if (path == NULL || *path == '\0')
		path = PB_CONFIG_DEFAULT;
	abs = g_canonicalize_filename(path, NULL);
	/* the administrator's choice (root's): a symlink is followed */
	if ((fd = open_regular(AT_FDCWD, abs, abs, 0, error)) < 0) {
		g_prefix_error(error, "cannot read the configuration: ");
		return NULL;
	}
	return load_fd(fd, abs, error);
}

/* Safe from everybody but root and OWNER: owned by one of them and
 * writable by nobody else; a folder may be writable by all when it is
 * root's and sticky (/tmp), as nobody can then rename what is not
 * theirs. */
static gboolean
trusted(const struct stat *st, uid_t owner, gboolean folder)
{
	if (st->st_uid != 0 && st->st_uid != owner)
		return FALSE;
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0)
		return TRUE;
	return folder && (st->st_mode & S_ISVTX) && st->st_uid == 0;
}

static gboolean
refuse(GError **error, const char *what, const char *path)
{
	g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
	            "%s %s: not owned by root or the mail user, or writable by "
	            "others: refused",
	            what, path);
	return FALSE;
}

/* The folder of REAL (absolute, symlinks resolved), walked from / one
 * component at a time, each folder checked before the step into it and
 * no step following a symlink: what was checked is what is opened, and a
 * folder swapped after its check is not followed. -1 when refused. */
static int
walk_trusted(char **parts, guint n, uid_t owner, GError **error)
{
	g_auto(PbFd) dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	g_autoptr(GString) walked = g_string_new("/");
	struct stat st;

	for (guint i = 0;; i++) {
		if (dir < 0 || fstat(dir, &st) < 0) {
			pb_throw_errno(error, "%s", walked->str);
			return -1;
		}
		if (!trusted(&st, owner, TRUE)) {
			refuse(error, "the folder", walked->str);
			return -1;
		}
		if (i + 1 >= n)
			return g_steal_fd(&dir);
		g_string_append_printf(walked, "%s%s", i ? "/" : "", parts[i]);
		int next =
		    openat(dir, parts[i],
		           O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(dir);
		dir = next;
	}
}

static int
open_trusted(const char *real, uid_t owner, GError **error)
{
	g_auto(GStrv) parts = g_strsplit(real + 1, "/", -1);
	guint n = g_strv_length(parts);
	g_auto(PbFd) dir = walk_trusted(parts, n, owner, error);
	struct stat st;
	int fd;

	if (dir < 0 ||
	    (fd = open_regular(dir, parts[n - 1], real, O_NOFOLLOW, error)) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !trusted(&st, owner, FALSE)) {
		close(fd);
		refuse(error, "the configuration", real);
		return -1;
	}
	return fd;
}

PbConfig *
pb_config_load_trusted(const char *path, uid_t owner, GError **error)
{
	g_autofree char *real = NULL;
	g_auto(PbFd) fd = -1;

	if (no_path(path, error))
		return NULL;
	if (path == NULL)
		path = PB_CONFIG_DEFAULT;
	if (!g_path_is_absolute(path)) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "%s: a relative configuration path: refused", path);
		return NULL;
	}
	if ((real = realpath(path, NULL)) == NULL) {
		g_set_error(error, PB_ERROR, PB_ERROR_CONFIG,
		            "cannot read the configuration: %s: %s", path,
		            g_strerror(errno));
		return NULL;
	}
	if ((fd = open_trusted(real, owner, error)) < 0)
		return NULL;
	return load_fd(fd, real, error);
}

void
pb_config_free(PbConfig *cfg)
{
	if (cfg == NULL)
		return;
	g_free(cfg->path);
	for (gsize i = 0; i < G_N_ELEMENTS(keys); i++) {
		switch (keys[i].type) {
		case T_DOMAINS:
		case T_NAMESERVERS:
		case T_FIELDS:
			g_strfreev(*MEMBER(cfg, &keys[i], char **));
			break;
		case T_CIDRS:
			g_array_unref(*MEMBER(cfg, &keys[i], GArray *));
			break;
		case T_STRING:
		case T_OPTSTR:
		case T_HOSTNAME:
		case T_PATH:
		case T_OPTPATH:
		case T_LOG:
		case T_DELIMITER:
		case T_SELECTOR:
			g_free(*MEMBER(cfg, &keys[i], char *));
			break;
		default:
			break;
		}
	}
	g_hash_table_unref(cfg->routes);
	g_free(cfg);
}

gboolean
pb_config_is_local_domain(const PbConfig *cfg, const char *domain)
{
	for (guint i = 0; cfg->domains[i]; i++)
		if (g_ascii_strcasecmp(cfg->domains[i], domain) == 0)
			return TRUE;
	return FALSE;
}

gboolean
pb_config_domain_listed(char **list, const char *domain)
{
	for (guint i = 0; list && list[i]; i++)
		if (g_str_equal(list[i], "*") ||
		    g_ascii_strcasecmp(list[i], domain) == 0)
			return TRUE;
	return FALSE;
}

const PbRoute *
pb_config_route(const PbConfig *cfg, const char *domain)
{
	g_autofree char *lower = g_ascii_strdown(domain, -1);
	const PbRoute *r = g_hash_table_lookup(cfg->routes, lower);

	return r ? r : g_hash_table_lookup(cfg->routes, "*");
}
