/* pop3-server.c - not written yet */
#include <glib.h>
