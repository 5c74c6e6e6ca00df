/* smtp-client.c - not written yet */
#include <glib.h>
