/*
 * config.h - the pillarbox configuration: one GKeyFile, typed and
 * validated once, immutable afterwards.
 *
 * Every key of DESIGN.md (plus the documented extensions below) has a
 * default; an unknown group or key, a duplicate key or a bad value is a
 * PB_ERROR_CONFIG error whose message reads "FILE:LINE: [group] key: why".
 * Relative paths are made absolute against the folder of the file.
 */
#ifndef PB_CONFIG_H
#define PB_CONFIG_H

#include <glib.h>
#include <sys/socket.h>
#include <sys/types.h>

/* One network of relay_networks: family AF_INET or AF_INET6, the address
 * bytes (4 or 16 used) and the prefix length. */
typedef struct {
	int family;
	guint8 addr[16];
	guint prefix;
} PbCidr;

/* A static route: [routes] DOMAIN = HOST[:PORT]. */
typedef struct {
	char *host; /* a name, an IPv4 address or an IPv6 address (no []) */
	guint port; /* 0: [delivery] port */
} PbRoute;

typedef struct {
	char *path; /* the file it was loaded from (absolute), or NULL */

	/* [main] */
	char *hostname;            /* default: the host's FQDN */
	char **domains;            /* lowercased, NULL-terminated */
	char *queue;               /* absolute path */
	char *spool;               /* absolute path */
	char *accounts;            /* absolute path */
	char *aliases;             /* absolute path */
	char *log;                 /* "syslog", "stderr" or an absolute path */
	gboolean delivery_queue;   /* delivery = queue (else background) */
	char *user;                /* default "pillarbox" */
	char *recipient_delimiter; /* "" = off; default "+" */
	/* extensions: failed logins (SMTP AUTH and POP3 together) per client
	 * address (IPv4, IPv6 /64) before its logins are refused for a
	 * while, and that while */
	guint max_auth_failures;     /* default 10; 0: no limit */
	gint64 auth_failure_window;  /* seconds; default 10m */

	/* [smtpd] */
	GArray *relay_networks;   /* of PbCidr; default 127.0.0.0/8, ::1/128 */
	guint64 max_message_size; /* bytes; default 50M */
	guint max_recipients;     /* default 100 */
	guint max_connections;    /* default 100 */
	guint max_connections_per_ip; /* extension; default 10; 0: none */
	gint64 smtpd_timeout;     /* seconds; default 5m */
	/* extensions (Postfix's names): connections one session process
	 * may serve one after the other (1: a fork per connection), and how
	 * long a process kept for them waits for the next */
	guint smtpd_max_use;      /* default 1 */
	gint64 smtpd_max_idle;    /* seconds; default 100s */
	/* extension: a peer without an IP address (Unix-domain socket,
	 * pipe) trusted as loopback is (relay, plaintext AUTH); default no */
	gboolean trust_local_socket;

	/* [delivery] (all durations in seconds) */
	gint64 retry_interval; /* 15m */
	gint64 max_backoff;    /* 2h */
	gint64 warn_after;     /* 4h */
	gint64 bounce_after;   /* 5d */
	guint parallel;        /* 20 */
	char **nameservers;    /* ADDR[:PORT] strings, NULL-terminated; empty
	                          list: /etc/resolv.conf */
	guint port;            /* 25 */
	char *helo;            /* default: hostname */
	/* extensions: the RFC 5321 section 4.5.3.2 client timeouts */
	gint64 connect_timeout;    /* 30s: TCP connect */
	gint64 greeting_timeout;   /* 5m: initial 220 */
	gint64 command_timeout;    /* 5m: EHLO, MAIL, RCPT, RSET, QUIT */
	gint64 data_init_timeout;  /* 2m: reply to DATA */
	gint64 data_block_timeout; /* 3m: each block written */
	gint64 data_end_timeout;   /* 10m: reply to the final dot */
	gint64 immediate_timeout;  /* 5m: smtpd's whole immediate attempt */
	/* extensions: outbound TLS policy (domains, or "*" for all) */
	char **require_tls;          /* STARTTLS or defer */
	char **require_verified_tls; /* ... and a verified certificate */
	char *tls_ca_file;           /* trust for verification; NULL: system */

	/* [routes]: lowercased domain or "*" -> PbRoute* */
	GHashTable *routes;

	/* [tls] */
	char *tls_certificate; /* absolute path or NULL */
	char *tls_key;         /* absolute path or NULL */
	gboolean plaintext_auth;

	/* [pop3d] */
	gint64 pop3d_timeout;        /* seconds; default 10m */
	guint pop3d_max_connections; /* extension; default 100 */
	guint pop3d_max_connections_per_ip; /* extension; 10; 0: none */

	/* [imapd] */
	gint64 imapd_timeout;         /* autologout after login, seconds;
	                                 default 30m, never below 30m */
	guint imapd_max_connections;  /* default 100 */
	guint imapd_max_user_connections; /* sessions of one account at
	                                     once; default 20 */
	guint64 imapd_max_message_size; /* APPEND; default (empty): [smtpd]
	                                   max_message_size */
	guint imapd_max_connections_per_ip; /* extension; 10; 0: none */

	/* [dkim] (README "DKIM") */
	char *dkim_selector;         /* NULL: no signing */
	char *dkim_key;              /* absolute path of the RSA key (PEM) */
	char *dkim_ed25519_key;      /* absolute path, or NULL */
	char *dkim_ed25519_selector; /* default: selector + "-ed25519" */
	char **dkim_domains;         /* lower case; empty: [main] domains */
	char **dkim_headers;         /* lower case; empty: the default list */

	/* [auth] (README "Inbound checks") */
	gboolean auth_checks;       /* SPF, DKIM, DMARC, iprev; default yes */
	gboolean auth_dmarc_reject; /* refuse DMARC p=reject fails; yes */
	gboolean auth_spoof_reject; /* spoofed_local_from: reject (default)
	                               or mark */
} PbConfig;

#define PB_CONFIG_DEFAULT SYSCONFDIR "/pillarbox/pillarbox.conf"

/* Loads PATH; NULL means $PILLARBOX_CONF, else PB_CONFIG_DEFAULT. An
 * empty PATH, a missing file, a symlink as the last component and
 * anything but a regular file are errors (PB_ERROR_CONFIG). */
PbConfig *pb_config_load(const char *path, GError **error);

/* The one trust rule of a program started by someone else (set-user-id
 * sendmail): PATH (NULL: PB_CONFIG_DEFAULT; never the environment) must
 * be absolute; the file, opened without following a symlink, and every
 * folder from / down to it must be owned by root or OWNER and writable by
 * nobody else (a folder: unless it is root's and sticky, like /tmp), and
 * the configuration is read from the very descriptor that was checked.
 * Anything else is PB_ERROR_CONFIG "...: refused". */
PbConfig *pb_config_load_trusted(const char *path, uid_t owner, GError **error);

/* Loads from memory; DIR anchors relative paths and NAME is used in error
 * messages. For tests and for pb_config_load. */
PbConfig *pb_config_load_data(const char *data, gsize len, const char *name,
                              const char *dir, GError **error);

void pb_config_free(PbConfig *cfg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PbConfig, pb_config_free)

/* Parsers shared with other modules (and tested on their own). */
gboolean pb_parse_duration(const char *text, gint64 *seconds);
gboolean pb_parse_size(const char *text, guint64 *bytes);
gboolean pb_cidr_parse(const char *text, PbCidr *out);

/* A numeric address with an optional port: "ADDR", "ADDR:PORT",
 * "[ADDR]:PORT", "[ADDR]" or a bare IPv6 "ADDR" into SA, whose port is
 * DEFAULT_PORT when none is given. No names: FALSE. */
gboolean pb_parse_endpoint(const char *text, guint16 default_port,
                           struct sockaddr_storage *sa);

/* The lines of a table the administrator keeps (accounts, aliases),
 * without their line ends: read through a bound of 16 MiB, so that a
 * runaway file is refused rather than loaded; no lines when the file does
 * not exist. PB_ERROR_CONFIG when it cannot be read, is larger or holds a
 * NUL. */
char **pb_table_read(const char *path, GError **error);

/* TRUE if the textual IP address (IPv4, IPv6, or IPv4-mapped IPv6) lies in
 * one of the networks. */
gboolean pb_cidr_list_match(const GArray *networks, const char *ip);

/* TRUE if DOMAIN (any case) is one of [main] domains. */
gboolean pb_config_is_local_domain(const PbConfig *cfg, const char *domain);

/* TRUE if DOMAIN is in LIST (exact, any case) or LIST has "*". */
gboolean pb_config_domain_listed(char **list, const char *domain);

/* The route for DOMAIN: exact match, else "*", else NULL (use MX). */
const PbRoute *pb_config_route(const PbConfig *cfg, const char *domain);

#endif
