/* smtp-serve.c - not written yet */
#include <glib.h>
