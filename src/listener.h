/*
 * listener.h - how smtpd and pop3d get their connections (DESIGN.md):
 *   no LISTEN and no $LISTEN_FDS: one session on fds 0 and 1 (inetd
 *     nowait, systemd Accept=yes, tcpserver);
 *   $LISTEN_FDS (systemd Accept=no, with $LISTEN_PID = our pid): accept on
 *     fds 3.. ;
 *   LISTEN ("ADDR:PORT", "[IPv6]:PORT", repeatable): bind and accept.
 * In the last two, one child is forked per connection and at most
 * MAX_CONNECTIONS run at once (further connections wait in the backlog).
 *
 * Guarantees: children never return into the accept loop (they _exit);
 * the parent reaps every child; SIGTERM stops accepting and returns.
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
} PbPeer;

/* Serves one connection; runs in the child (or in the only process). */
typedef void (*PbServeFunc)(void *ctx, int rfd, int wfd, const PbPeer *peer);

/* Binds every LISTEN address (NULL or empty: see above), then, when
 * started as root, calls DROP (may be NULL) to give up privileges, then
 * serves. Returns when the inetd-style session ends or after SIGTERM;
 * FALSE with PB_ERROR_CONFIG for a bad address, PB_ERROR_TEMP when a bind
 * fails. */
gboolean pb_listener_run(char **listen, guint max_connections,
			 gboolean (*drop)(void *ctx, GError **error),
			 PbServeFunc serve, void *ctx, GError **error);

/* Parses "ADDR:PORT" / "[IPv6]:PORT" / "*:PORT" (for flag checking). */
gboolean pb_listener_parse(const char *text, char **addr, guint *port,
			   GError **error);

#endif
