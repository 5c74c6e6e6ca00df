/* zone.c - zone data served through a PbResolver (see zone.h). */
#include "zone.h"

#include <string.h>

typedef struct {
	char *type;
	char *value; /* MX: the name; TXT: the strings joined */
} Entry;

struct TestZone {
	PbResolver base;
	GHashTable *names; /* lower-case name -> GPtrArray of Entry* */
	guint queries;
};

static void
entry_free(Entry *e)
{
	g_free(e->type);
	g_free(e->value);
	g_free(e);
}

static void lookup(PbResolver *self, PbDnsQuery **qs, guint n, gint64 deadline);

static void
destroy(PbResolver *self)
{
}

TestZone *
test_zone_new(void)
{
	TestZone *z = g_new0(TestZone, 1);

	z->base.lookup = lookup;
	z->base.destroy = destroy;
	z->names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	                                 (GDestroyNotify)g_ptr_array_unref);
	return z;
}

void
test_zone_free(TestZone *z)
{
	if (z == NULL)
		return;
	g_hash_table_unref(z->names);
	g_free(z);
}

PbResolver *
test_zone_resolver(TestZone *z)
{
	return &z->base;
}

guint
test_zone_queries(TestZone *z)
{
	return z->queries;
}

void
test_zone_reset_counts(TestZone *z)
{
	z->queries = 0;
}

/* The name as the suite's driver looks it up: empty labels dropped,
 * lower case, no final dot; NULL: a label over 63 octets. */
static char *
normal(const char *name)
{
	g_auto(GStrv) labels = g_strsplit(name, ".", -1);
	GString *s = g_string_new(NULL);

	for (guint i = 0; labels[i]; i++) {
		if (labels[i][0] == '\0')
			continue;
		if (strlen(labels[i]) > 63) {
			g_string_free(s, TRUE);
			return NULL;
		}
		g_string_append_printf(s, "%s%s", s->len ? "." : "", labels[i]);
	}
	for (gsize i = 0; i < s->len; i++)
		s->str[i] = g_ascii_tolower(s->str[i]);
	return g_string_free(s, FALSE);
}

/* The value an entry of TYPE keeps; NULL: none DNS could carry. */
static char *
entry_value(const char *type, const char *const *values)
{
	if (g_str_equal(type, "TXT"))
		return values ? g_strjoinv("", (char **)values) : NULL;
	if (values == NULL || values[0] == NULL)
		return NULL;
	if (g_str_equal(type, "MX"))
		return values[1] ? normal(values[1]) : NULL;
	if (g_str_equal(type, "A") || g_str_equal(type, "AAAA"))
		return g_strdup(values[0]);
	return normal(values[0]);
}

void
test_zone_add(TestZone *z, const char *name, const char *type,
              const char *const *values)
{
	g_autofree char *key = normal(name);
	GPtrArray *list;
	Entry *e;

	if (key == NULL)
		return; /* a label too long for DNS */
	if ((list = g_hash_table_lookup(z->names, key)) == NULL) {
		list =
		    g_ptr_array_new_with_free_func((GDestroyNotify)entry_free);
		g_hash_table_insert(z->names, g_strdup(key), list);
	}
	e = g_new0(Entry, 1);
	e->type = g_strdup(type);
	e->value = entry_value(type, values);
	if (e->value == NULL && !g_str_equal(type, "TIMEOUT")) {
		entry_free(e);
		return;
	}
	g_ptr_array_add(list, e);
}

void
test_zone_add1(TestZone *z, const char *name, const char *type,
               const char *value)
{
	const char *values[] = {value, NULL};

	test_zone_add(z, name, type, values);
}

static const char *const types[] = {
    [PB_DNS_A] = "A",     [PB_DNS_AAAA] = "AAAA", [PB_DNS_MX] = "MX",
    [PB_DNS_TXT] = "TXT", [PB_DNS_PTR] = "PTR",
};

/* testspf.py's DNSLookup: records of TYPE up to a TIMEOUT (a timeout
 * when none came before it), a CNAME followed one level. */
static PbDnsStatus
answer(TestZone *z, const char *name, PbDnsType type, int level, GPtrArray *out)
{
	g_autofree char *key = normal(name);
	GPtrArray *list = key ? g_hash_table_lookup(z->names, key) : NULL;
	gboolean seen = FALSE;

	if (key == NULL)
		return PB_DNS_TEMP;
	if (list == NULL)
		return g_str_has_prefix(key, "error.") ? PB_DNS_TEMP
		                                       : PB_DNS_NXDOMAIN;
	for (guint i = 0; i < list->len; i++) {
		Entry *e = list->pdata[i];
		if (g_str_equal(e->type, "TIMEOUT")) {
			if (!seen)
				return PB_DNS_TEMP;
			break;
		}
		if (g_str_equal(e->type, types[type])) {
			seen = TRUE;
			g_ptr_array_add(out, g_strdup(e->value));
		} else if (g_str_equal(e->type, "CNAME") && level == 0 &&
		           answer(z, e->value, type, 1, out) == PB_DNS_TEMP)
			return PB_DNS_TEMP;
	}
	return out->len ? PB_DNS_OK : PB_DNS_NODATA;
}

static void
lookup(PbResolver *self, PbDnsQuery **qs, guint n, gint64 deadline)
{
	TestZone *z = (TestZone *)self;
	gboolean late = g_get_monotonic_time() / 1000 >= deadline;

	for (guint i = 0; i < n; i++) {
		GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
		z->queries++;
		g_clear_pointer(&qs[i]->records, g_ptr_array_unref);
		qs[i]->status =
		    late ? PB_DNS_TEMP
		         : answer(z, qs[i]->name, qs[i]->type, 0, out);
		if (qs[i]->status == PB_DNS_OK)
			qs[i]->records = out;
		else
			g_ptr_array_unref(out);
	}
}

char **
test_zone_fields(const char *line)
{
	char **f = g_strsplit(line, "\t", -1);

	for (guint i = 0; f[i]; i++) {
		char *w = f[i];
		for (const char *r = f[i]; *r; r++) {
			if (r[0] == '\\' && g_ascii_isdigit(r[1]) &&
			    g_ascii_isdigit(r[2]) && g_ascii_isdigit(r[3])) {
				int v = (r[1] - '0') * 64 + (r[2] - '0') * 8 +
				        (r[3] - '0');
				*w++ = v ? (char)v : 0x7f;
				r += 3;
			} else
				*w++ = *r;
		}
		*w = '\0';
	}
	return f;
}
