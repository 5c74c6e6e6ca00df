/* smtp-server.c - not written yet */
#include <glib.h>
