/* remote.c - not written yet */
#include <glib.h>
