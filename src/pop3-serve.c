/* pop3-serve.c - not written yet */
#include <glib.h>
