/*
 * self.h - what a process asks the kernel about itself, asked once.
 */
#ifndef PB_SELF_H
#define PB_SELF_H

#include <glib.h>
#include <sys/types.h>

/* The caller's pid: getpid() once per process, correct in the child of
 * every fork() (a pthread_atfork handler forgets it there). */
pid_t pb_self_pid(void);

/* The host's name, as gethostname() gave it at the first call
 * ("localhost" if it failed); kept for the life of the process. */
const char *pb_self_host(void);

/* Asks now what a forked child would otherwise ask on its own: its
 * host name and GLib's locale charset (g_date_time_format reads
 * charset.alias at its first use). A listener calls it before its
 * first fork. */
void pb_self_prime(void);

#endif
