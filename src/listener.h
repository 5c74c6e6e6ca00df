/*
 * listener.h - how smtpd and pop3d get their connections (DESIGN.md):
 *   no LISTEN and no $LISTEN_FDS: one session on fds 0 and 1 (inetd
 *     nowait, systemd Accept=yes, tcpserver);
 *   $LISTEN_FDS (systemd Accept=no, with $LISTEN_PID = our pid): accept on
 *     fds 3.. ;
 *   LISTEN ("ADDR:PORT", "[IPv6]:PORT", repeatable): bind and accept.
 * In the last two, one child is forked per connection and at most
 * max_connections run at once (further connections wait in the backlog);
 * with max_use above 1, a child whose session allows it (smtpd's, after
 * a session without AUTH) is kept and given further connections, at
 * most max_use in all, one at a time, through a socket pair (the
 * accepted socket and its PbPeer); one idle for max_idle is ended;
 * a client address (IPv4, or an IPv6 /64) with max_per_ip sessions
 * running gets the busy reply and is closed at once, so a few idle
 * clients cannot take every slot.
 *
 * Guarantees: children never return into the accept loop (they _exit);
 * the parent reaps every child, and also any process a child left
 * behind (it is the children's subreaper: a detached delivery attempt
 * ends reaped, never a zombie); SIGTERM stops accepting and returns.
 * GLib's own warnings go to the mail log, and in the inetd style, where
 * the client's socket may also be stderr, nothing reaches it from
 * stderr (see pb_listener_shield_stderr).
 */
#ifndef PB_LISTENER_H
#define PB_LISTENER_H

#include <glib.h>

/* Who connected, as text: "192.0.2.1" or "2001:db8::1" (IPv4-mapped IPv6
 * is shown as IPv4); "" when unknown (a pipe). LOCAL is our own address. */
typedef struct {
	char ip[64];
	guint port;
	char local_ip[64];
	guint local_port;
	guint64 slot; /* the listener's slot of this session (0: no
	                 listener, inetd style): see pb_listener_release */
} PbPeer;

/* Limits of the accepting styles. */
typedef struct {
	guint max_connections; /* sessions at once */
	guint max_per_ip;      /* sessions at once per client; 0: no limit */
	const char *busy;      /* the reply (with CRLF) to a client over
	                          max_per_ip before it is closed */
	guint max_use;  /* connections a session process may serve one after
	                   the other (0 or 1: a fork per connection) */
	guint max_idle; /* seconds a process kept for max_use waits for its
	                   next connection before the listener ends it */
} PbListenLimits;

/* Serves one connection; runs in the child (or in the only process).
 * Returns TRUE when the process may serve another client after this one
 * (max_use): it has closed RFD and WFD, reaped or handed over what it
 * started, and kept nothing of this client's (see smtp-serve.c). */
typedef gboolean (*PbServeFunc)(void *ctx, int rfd, int wfd,
                                const PbPeer *peer);

/* Binds every LISTEN address (NULL or empty: see above), then, when
 * started as root, calls DROP (may be NULL) to give up privileges, then
 * serves. Returns when the inetd-style session ends or after SIGTERM;
 * FALSE with PB_ERROR_CONFIG for a bad address, PB_ERROR_TEMP when a bind
 * fails. */
gboolean pb_listener_run(char **listen, const PbListenLimits *limits,
			 gboolean (*drop)(void *ctx, GError **error),
			 PbServeFunc serve, void *ctx, GError **error);

/* Call first in main(): when fd 2 is the same socket as fd 0 (inetd,
 * systemd Accept=yes with the default StandardError), points fd 2 at
 * /dev/null, so that no message written to stderr reaches the client.
 * TRUE if it did (the caller then must not log to "stderr"). */
gboolean pb_listener_shield_stderr(void);

/* The key a client is counted under: its IPv4 address, or the /64 of
 * its IPv6 address (one host usually has a whole /64); IP as in PbPeer.
 * "" (no address) stays "". */
void pb_listener_client_key(const char *ip, char *key, gsize size);

/* In a listener's child, after the client's connection is closed: the
 * session tells the listener it is done with the connection, so that
 * what the process still does (its local delivery) holds no slot against
 * max_connections and max_per_ip; the process is still reaped. FALSE: no
 * listener to tell (inetd style, PEER->slot 0), or it could not be told
 * (then the slot stays taken until the process ends). */
gboolean pb_listener_release(const PbPeer *peer);

/* Parses "ADDR:PORT" / "[IPv6]:PORT" / "*:PORT" (for flag checking). */
gboolean pb_listener_parse(const char *text, char **addr, guint *port,
			   GError **error);

#endif
