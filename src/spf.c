/*
 * spf.c - RFC 7208 check_host() (see spf.h).
 *
 * A record is fetched (TXT only: type SPF is gone, section 3.1), selected
 * (exactly one "v=spf1" record, section 4.5), parsed in full into terms,
 * then evaluated left to right. Macros (section 7) are checked at parse
 * time and expanded when a term is evaluated; an expanded name that is
 * not a valid DNS name (empty label, label over 63 octets) is a name
 * that does not exist: the mechanism does not match and no query is sent
 * (RFC 7208 leaves this open; the test suite accepts fail or permerror).
 * Counters live in one Eval for the whole check, includes and redirects
 * too: DNS-querying terms (10), void lookups (2).
 */
#include "spf.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_DNS_TERMS 10 /* section 4.6.4 */
#define MAX_VOID 2
#define MAX_NAMES 10 /* MX names per mx, PTR names per ptr */
#define MAX_DOMAIN 253
#define MAX_LABEL 63

typedef enum {
	M_ALL,
	M_INCLUDE,
	M_A,
	M_MX,
	M_PTR,
	M_IP4,
	M_IP6,
	M_EXISTS,
} Kind;

typedef struct {
	char qualifier; /* + - ~ ? */
	Kind kind;
	char *spec; /* domain-spec, NULL: the current domain */
	int cidr4, cidr6;
	guint8 net[16]; /* ip4, ip6 */
	char *text;     /* as written, for the outcome */
} Term;

typedef struct {
	GPtrArray *terms; /* Term* */
	char *redirect;   /* domain-spec */
	char *exp;        /* domain-spec */
} Record;

typedef enum { NO, YES, TEMP, PERM } Match;

typedef struct {
	PbResolver *resolver;
	const PbSpfRequest *req;
	int family; /* AF_INET, AF_INET6 */
	guint8 addr[16];
	char *local, *domain, *sender;
	guint terms, voids;
	char *ptr_name; /* %{p}, once found */
	char *problem;
	char *mechanism;
} Eval;

static const char *const names[] = {
    [PB_SPF_NONE] = "none",           [PB_SPF_NEUTRAL] = "neutral",
    [PB_SPF_PASS] = "pass",           [PB_SPF_FAIL] = "fail",
    [PB_SPF_SOFTFAIL] = "softfail",   [PB_SPF_TEMPERROR] = "temperror",
    [PB_SPF_PERMERROR] = "permerror",
};

const char *
pb_spf_result_name(PbSpfResult result)
{
	return names[result];
}

void
pb_spf_outcome_clear(PbSpfOutcome *out)
{
	g_clear_pointer(&out->domain, g_free);
	g_clear_pointer(&out->mechanism, g_free);
	g_clear_pointer(&out->explanation, g_free);
	g_clear_pointer(&out->problem, g_free);
}

static void
term_free(Term *t)
{
	g_free(t->spec);
	g_free(t->text);
	g_free(t);
}

static void
record_free(Record *r)
{
	g_ptr_array_unref(r->terms);
	g_free(r->redirect);
	g_free(r->exp);
	g_free(r);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Record, record_free)

static void problem(char **where, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
problem(char **where, const char *fmt, ...)
{
	va_list ap;

	if (where == NULL || *where != NULL)
		return; /* the first problem is the one reported */
	va_start(ap, fmt);
	*where = g_strdup_vprintf(fmt, ap);
	va_end(ap);
}

/* ---- names ---- */

/* A name DNS can ask for: labels of 1 to 63 octets, 253 in all, an
 * optional final dot; MULTI: at least two labels (section 4.3). */
static gboolean
name_valid(const char *name, gboolean multi)
{
	size_t len = strlen(name), label = 0;
	guint dots = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > MAX_DOMAIN || name[0] == '[')
		return FALSE;
	for (size_t i = 0; i < len; i++) {
		if (name[i] != '.') {
			if (++label > MAX_LABEL)
				return FALSE;
			continue;
		}
		if (label == 0)
			return FALSE;
		label = 0;
		dots++;
	}
	return label > 0 && (!multi || dots > 0);
}

/* Section 7.3: an expansion over 253 octets loses labels on the left. */
static void
truncate_name(GString *name)
{
	while (name->len > MAX_DOMAIN) {
		const char *dot = strchr(name->str, '.');
		if (dot == NULL) {
			g_string_truncate(name, 0);
			return;
		}
		g_string_erase(name, 0, dot + 1 - name->str);
	}
}

/* NAME is DOMAIN or below it. */
static gboolean
name_within(const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (d > 0 && domain[d - 1] == '.')
		d--;
	if (n < d || g_ascii_strncasecmp(name + n - d, domain, d) != 0)
		return FALSE;
	return n == d || name[n - d - 1] == '.';
}

/* ---- DNS ---- */

static void
lookup(Eval *e, PbDnsQuery **qs, guint n)
{
	e->resolver->lookup(e->resolver, qs, n, e->req->deadline);
}

/* One query; its status, with the records in *RECORDS when found. */
static PbDnsStatus
lookup1(Eval *e, const char *name, PbDnsType type, GPtrArray **records)
{
	PbDnsQuery q, *qs[1] = {&q};

	pb_dns_query_init(&q, name, type);
	lookup(e, qs, 1);
	*records = g_steal_pointer(&q.records);
	pb_dns_query_clear(&q);
	return q.status;
}

/* Counts a void lookup (section 4.6.4); FALSE: one too many. */
static gboolean
count_void(Eval *e, PbDnsStatus status)
{
	if (status != PB_DNS_NODATA && status != PB_DNS_NXDOMAIN)
		return TRUE;
	if (++e->voids <= MAX_VOID)
		return TRUE;
	problem(&e->problem, "more than %d void DNS lookups", MAX_VOID);
	return FALSE;
}

/* The first BITS bits of A and NET agree. */
static gboolean
prefix_equal(const guint8 *a, const guint8 *net, int bits)
{
	int whole = bits / 8, rest = bits % 8;

	if (memcmp(a, net, (size_t)whole) != 0)
		return FALSE;
	return rest == 0 ||
	       ((a[whole] ^ net[whole]) & (0xff00 >> rest) & 0xff) == 0;
}

/* ADDR (numeric) lies in the network of BITS around NET? */
static gboolean
in_network(const char *addr, int family, const guint8 *net, int bits)
{
	guint8 a[16];

	return inet_pton(family, addr, a) == 1 && prefix_equal(a, net, bits);
}

static gboolean
client_in(Eval *e, const char *addr, int cidr4, int cidr6)
{
	return in_network(addr, e->family, e->addr,
	                  e->family == AF_INET ? cidr4 : cidr6);
}

/* The reverse name of the client address (section 5.5). */
static char *
reverse_name(Eval *e)
{
	return pb_dns_reverse_name(e->family, e->addr);
}

/* The validated names of the client (section 5.5): the first 10 PTR
 * names whose addresses include the client's. NULL: no PTR answer. */
static GPtrArray *
validated_names(Eval *e, PbDnsStatus *status)
{
	g_autofree char *rev = reverse_name(e);
	g_autoptr(GPtrArray) ptrs = NULL;
	GPtrArray *out;
	PbDnsQuery q[MAX_NAMES], *qs[MAX_NAMES];
	guint n;

	*status = lookup1(e, rev, PB_DNS_PTR, &ptrs);
	if (ptrs == NULL)
		return NULL;
	n = MIN(ptrs->len, MAX_NAMES);
	for (guint i = 0; i < n; i++) {
		pb_dns_query_init(&q[i], ptrs->pdata[i],
		                  e->family == AF_INET ? PB_DNS_A
		                                       : PB_DNS_AAAA);
		qs[i] = &q[i];
	}
	lookup(e, qs, n);
	out = g_ptr_array_new_with_free_func(g_free);
	for (guint i = 0; i < n; i++) {
		for (guint j = 0; q[i].records && j < q[i].records->len; j++)
			if (client_in(e, q[i].records->pdata[j], 32, 128)) {
				g_ptr_array_add(out, g_strdup(q[i].name));
				break;
			}
		pb_dns_query_clear(&q[i]);
	}
	return out;
}

/* %{p} (section 7.3): a validated name within DOMAIN, else any, else
 * "unknown". */
static const char *
ptr_macro(Eval *e, const char *domain)
{
	g_autoptr(GPtrArray) valid = NULL;
	PbDnsStatus status;

	if (e->ptr_name != NULL)
		return e->ptr_name;
	valid = validated_names(e, &status);
	for (guint i = 0; valid && i < valid->len; i++)
		if (name_within(valid->pdata[i], domain)) {
			e->ptr_name = g_strdup(valid->pdata[i]);
			return e->ptr_name;
		}
	e->ptr_name =
	    g_strdup(valid && valid->len ? valid->pdata[0] : "unknown");
	return e->ptr_name;
}

/* ---- macros (section 7) ---- */

static gboolean
is_delimiter(char c)
{
	return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

/* The value of macro LETTER (lower case) for DOMAIN. */
static char *
letter_value(Eval *e, char letter, const char *domain)
{
	char buf[INET6_ADDRSTRLEN];

	switch (letter) {
	case 's':
		return g_strdup(e->sender);
	case 'l':
		return g_strdup(e->local);
	case 'o':
		return g_strdup(e->domain);
	case 'd':
		return g_strdup(domain);
	case 'i':
		if (e->family == AF_INET)
			return g_strdup_printf("%u.%u.%u.%u", e->addr[0],
			                       e->addr[1], e->addr[2],
			                       e->addr[3]);
		else {
			/* nibbles, upper case as in section 7.4's example */
			GString *s = g_string_new(NULL);
			for (int i = 0; i < 16; i++)
				g_string_append_printf(
				    s, "%s%X.%X", i ? "." : "", e->addr[i] >> 4,
				    e->addr[i] & 0xf);
			return g_string_free(s, FALSE);
		}
	case 'p':
		return g_strdup(ptr_macro(e, domain));
	case 'v':
		return g_strdup(e->family == AF_INET ? "in-addr" : "ip6");
	case 'h':
		return g_strdup(e->req->helo ? e->req->helo : "");
	case 'c':
		inet_ntop(e->family, e->addr, buf, sizeof buf);
		return g_strdup(buf);
	case 'r':
		return g_strdup(e->req->receiver ? e->req->receiver
		                                 : "unknown");
	case 't':
		return g_strdup_printf("%" G_GINT64_FORMAT,
		                       e->req->now ? e->req->now
		                                   : g_get_real_time() /
		                                         G_USEC_PER_SEC);
	}
	g_assert_not_reached();
}

/* Applies the transformers: split VALUE on DELIMS, reverse, keep the
 * KEEP rightmost parts (0: all), join with dots. */
static char *
transform(const char *value, const char *delims, guint keep, gboolean reverse)
{
	GPtrArray *parts = g_ptr_array_new();
	GString *out = g_string_new(NULL);
	const char *start = value;
	guint first;

	for (const char *p = value;; p++)
		if (*p == '\0' || strchr(delims, *p)) {
			g_ptr_array_add(parts, g_strndup(start, p - start));
			if (*p == '\0')
				break;
			start = p + 1;
		}
	if (reverse)
		for (guint i = 0; i < parts->len / 2; i++) {
			gpointer t = parts->pdata[i];
			parts->pdata[i] = parts->pdata[parts->len - 1 - i];
			parts->pdata[parts->len - 1 - i] = t;
		}
	first = keep && keep < parts->len ? parts->len - keep : 0;
	for (guint i = first; i < parts->len; i++)
		g_string_append_printf(out, "%s%s", i > first ? "." : "",
		                       (char *)parts->pdata[i]);
	g_ptr_array_set_free_func(parts, g_free);
	g_ptr_array_unref(parts);
	return g_string_free(out, FALSE);
}

/* URL-escapes VALUE into OUT (section 7.3: upper-case macro letters). */
static void
url_escape(GString *out, const char *value)
{
	for (const guchar *p = (const guchar *)value; *p; p++)
		if (g_ascii_isalnum(*p) || strchr("-._~", *p))
			g_string_append_c(out, (char)*p);
		else
			g_string_append_printf(out, "%%%02X", *p);
}

/* One "%{...}" at *P (just past "%{"); E NULL: syntax only. */
static gboolean
expand_macro(Eval *e, const char *domain, const char **pp, gboolean explain,
             GString *out, char **why)
{
	const char *p = *pp;
	char letter = g_ascii_tolower(*p), delims[8] = "";
	gboolean upper = g_ascii_isupper(*p);
	guint keep = 0, ndelims = 0;
	gboolean digits = FALSE, reverse = FALSE;

	if (*p == '\0' ||
	    !strchr(explain ? "slodiphvcrt" : "slodiphv", letter)) {
		problem(why, "bad macro letter in %%{%.1s", p);
		return FALSE;
	}
	for (p++; g_ascii_isdigit(*p); p++, digits = TRUE)
		keep = MIN(keep * 10 + (guint)(*p - '0'), 1000);
	if (digits && keep == 0) {
		problem(why, "macro keeps 0 parts");
		return FALSE;
	}
	if (g_ascii_tolower(*p) == 'r')
		reverse = TRUE, p++;
	for (; is_delimiter(*p); p++)
		if (!strchr(delims, *p) && ndelims < sizeof delims - 1)
			delims[ndelims++] = *p;
	if (*p != '}') {
		problem(why, "macro not closed by }");
		return FALSE;
	}
	*pp = p + 1;
	if (e != NULL && out != NULL) {
		g_autofree char *v = letter_value(e, letter, domain);
		g_autofree char *t =
		    transform(v, ndelims ? delims : ".", keep, reverse);
		if (upper)
			url_escape(out, t);
		else
			g_string_append(out, t);
	}
	return TRUE;
}

/* Expands macro-string TEXT into OUT (E NULL: checks the syntax only).
 * *TAIL: where the literal text after the last macro begins. */
static gboolean
expand(Eval *e, const char *domain, const char *text, gboolean explain,
       GString *out, size_t *tail, char **why)
{
	const char *p = text;
	size_t lit = 0;

	while (*p) {
		guchar c = (guchar)*p;
		if (c != '%') {
			if (c < 0x20 || c > 0x7e || (c == ' ' && !explain)) {
				problem(why, "byte 0x%02x in a macro-string",
				        c);
				return FALSE;
			}
			if (out != NULL)
				g_string_append_c(out, (char)c);
			p++;
			continue;
		}
		if (p[1] == '%' || p[1] == '_' || p[1] == '-') {
			if (out != NULL)
				g_string_append(out, p[1] == '%'   ? "%"
				                     : p[1] == '_' ? " "
				                                   : "%20");
			p += 2;
		} else if (p[1] == '{') {
			p += 2;
			if (!expand_macro(e, domain, &p, explain, out, why))
				return FALSE;
		} else {
			problem(why, "'%%' not followed by {, %%, _ or -");
			return FALSE;
		}
		lit = (size_t)(p - text);
	}
	if (tail != NULL)
		*tail = lit;
	return TRUE;
}

/* toplabel of section 7.1: letters, digits, inner hyphens, not all
 * digits. */
static gboolean
toplabel_valid(const char *s, size_t len)
{
	gboolean alpha = FALSE;

	if (len == 0 || s[0] == '-' || s[len - 1] == '-')
		return FALSE;
	for (size_t i = 0; i < len; i++) {
		if (!g_ascii_isalnum(s[i]) && s[i] != '-')
			return FALSE;
		alpha |= !g_ascii_isdigit(s[i]);
	}
	return alpha;
}

/* domain-spec of section 7.1: a macro-string ending in a macro or in
 * "." toplabel [ "." ]. */
static gboolean
domain_spec_valid(const char *spec, char **why)
{
	const char *run, *dot;
	size_t tail, len;

	if (*spec == '\0') {
		problem(why, "empty domain-spec");
		return FALSE;
	}
	if (!expand(NULL, NULL, spec, FALSE, NULL, &tail, why))
		return FALSE;
	run = spec + tail;
	if ((len = strlen(run)) == 0)
		return TRUE;
	if (run[len - 1] == '.')
		len--;
	dot = g_strrstr_len(run, (gssize)len, ".");
	if (dot == NULL || !toplabel_valid(dot + 1, len - (dot + 1 - run))) {
		problem(why, "domain-spec %s does not end in a top label",
		        spec);
		return FALSE;
	}
	return TRUE;
}

/* The name a domain-spec names for DOMAIN (NULL spec: DOMAIN itself),
 * truncated as section 7.3 says. */
static char *
target_name(Eval *e, const char *domain, const char *spec)
{
	GString *s = g_string_new(NULL);

	if (spec == NULL)
		g_string_assign(s, domain);
	else if (!expand(e, domain, spec, FALSE, s, NULL, &e->problem))
		g_assert_not_reached(); /* checked when parsed */
	truncate_name(s);
	return g_string_free(s, FALSE);
}

/* ---- parsing (section 4.6, 5, 6) ---- */

/* A CIDR length of DIGITS (LEN octets): no leading zero, at most MAX. */
static int
cidr_value(const char *digits, size_t len, int max)
{
	int v = 0;

	if (len == 0 || len > 3 || (len > 1 && digits[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++)
		v = v * 10 + (digits[i] - '0');
	return v <= max ? v : -1;
}

/* Takes a dual-cidr-length off the end of ARG (its length *END). */
static gboolean
take_dual_cidr(const char *arg, size_t *end, Term *t, char **why)
{
	size_t i = *end;

	while (i > 0 && g_ascii_isdigit(arg[i - 1]))
		i--;
	if (i < *end && i >= 2 && arg[i - 1] == '/' && arg[i - 2] == '/') {
		if ((t->cidr6 = cidr_value(arg + i, *end - i, 128)) < 0)
			goto bad;
		*end = i - 2;
		for (i = *end; i > 0 && g_ascii_isdigit(arg[i - 1]); i--)
			;
	}
	if (i < *end && i >= 1 && arg[i - 1] == '/') {
		if ((t->cidr4 = cidr_value(arg + i, *end - i, 32)) < 0)
			goto bad;
		*end = i - 1;
	}
	return TRUE;
bad:
	problem(why, "bad CIDR length in %s", t->text);
	return FALSE;
}

/* ip4:NETWORK[/LEN] and ip6:NETWORK[/LEN]. */
static gboolean
parse_network(const char *arg, Term *t, char **why)
{
	int family = t->kind == M_IP4 ? AF_INET : AF_INET6;
	const char *slash;
	g_autofree char *addr = NULL;
	int *cidr = family == AF_INET ? &t->cidr4 : &t->cidr6;

	if (*arg++ != ':')
		goto bad;
	slash = strchr(arg, '/');
	addr = g_strndup(arg, slash ? (size_t)(slash - arg) : strlen(arg));
	if (inet_pton(family, addr, t->net) != 1)
		goto bad;
	if (slash != NULL &&
	    (*cidr = cidr_value(slash + 1, strlen(slash + 1),
	                        family == AF_INET ? 32 : 128)) < 0)
		goto bad;
	return TRUE;
bad:
	problem(why, "bad network in %s", t->text);
	return FALSE;
}

/* The argument of a mechanism with an optional or required
 * ":domain-spec"; DUAL: a dual-cidr-length may follow. */
static gboolean
parse_target(const char *arg, Term *t, gboolean required, gboolean dual,
             char **why)
{
	size_t end = strlen(arg);

	if (dual && !take_dual_cidr(arg, &end, t, why))
		return FALSE;
	if (end == 0 && !required)
		return TRUE;
	if (arg[0] != ':') {
		problem(why, "bad argument in %s", t->text);
		return FALSE;
	}
	t->spec = g_strndup(arg + 1, end - 1);
	return domain_spec_valid(t->spec, why);
}

static Term *
parse_mechanism(const char *word, char **why)
{
	static const char *const kinds[] = {
	    [M_ALL] = "all", [M_INCLUDE] = "include", [M_A] = "a",
	    [M_MX] = "mx",   [M_PTR] = "ptr",         [M_IP4] = "ip4",
	    [M_IP6] = "ip6", [M_EXISTS] = "exists",
	};
	Term *t = g_new0(Term, 1);
	const char *name = word, *arg;
	gboolean ok = FALSE;
	guint k;

	t->text = g_strdup(word);
	t->qualifier = strchr("+-~?", *word) ? *name++ : '+';
	t->cidr4 = 32;
	t->cidr6 = 128;
	arg = name + strcspn(name, ":/");
	for (k = 0; k < G_N_ELEMENTS(kinds); k++)
		if (strlen(kinds[k]) == (size_t)(arg - name) &&
		    g_ascii_strncasecmp(name, kinds[k], arg - name) == 0)
			break;
	t->kind = (Kind)k;
	switch (k) {
	case M_ALL:
		ok = *arg == '\0';
		break;
	case M_INCLUDE:
	case M_EXISTS:
		ok = parse_target(arg, t, TRUE, FALSE, why);
		break;
	case M_A:
	case M_MX:
	case M_PTR:
		ok = parse_target(arg, t, FALSE, k != M_PTR, why);
		break;
	case M_IP4:
	case M_IP6:
		ok = parse_network(arg, t, why);
		break;
	}
	if (!ok) {
		problem(why, "bad term %s", word);
		term_free(t);
		return NULL;
	}
	return t;
}

/* A modifier (name "=" value)? Sets *VALUE past the "=". */
static gboolean
is_modifier(const char *word, const char **value)
{
	const char *p = word;

	if (!g_ascii_isalpha(*p))
		return FALSE;
	while (g_ascii_isalnum(*p) || *p == '-' || *p == '_' || *p == '.')
		p++;
	if (*p != '=')
		return FALSE;
	*value = p + 1;
	return TRUE;
}

static gboolean
parse_modifier(Record *r, const char *word, const char *value, char **why)
{
	size_t len = (size_t)(value - 1 - word);
	char **slot = NULL;

	if (len == 8 && g_ascii_strncasecmp(word, "redirect", 8) == 0)
		slot = &r->redirect;
	else if (len == 3 && g_ascii_strncasecmp(word, "exp", 3) == 0)
		slot = &r->exp;
	if (slot == NULL) /* unknown modifiers are ignored (section 6) */
		return expand(NULL, NULL, value, FALSE, NULL, NULL, why);
	if (*slot != NULL) {
		problem(why, "%.*s= given twice", (int)len, word);
		return FALSE;
	}
	*slot = g_strdup(value);
	return domain_spec_valid(value, why);
}

/* An "v=spf1" record: NULL (with a reason) when any term is bad. */
static Record *
parse_record(const char *text, char **why)
{
	g_autoptr(Record) r = g_new0(Record, 1);
	g_auto(GStrv) words = NULL;

	r->terms = g_ptr_array_new_with_free_func((GDestroyNotify)term_free);
	for (const guchar *p = (const guchar *)text; *p; p++)
		if (*p < 0x20 || *p > 0x7e) {
			problem(why, "byte 0x%02x in the record", *p);
			return NULL;
		}
	words = g_strsplit(text + 6, " ", -1);
	for (guint i = 0; words[i]; i++) {
		const char *value;
		Term *t;
		if (words[i][0] == '\0')
			continue;
		if (is_modifier(words[i], &value)) {
			if (!parse_modifier(r, words[i], value, why))
				return NULL;
			continue;
		}
		if ((t = parse_mechanism(words[i], why)) == NULL)
			return NULL;
		g_ptr_array_add(r->terms, t);
	}
	return g_steal_pointer(&r);
}

static gboolean
is_spf1(const char *text)
{
	return g_ascii_strncasecmp(text, "v=spf1", 6) == 0 &&
	       (text[6] == '\0' || text[6] == ' ');
}

gboolean
pb_spf_record_valid(const char *record, char **why)
{
	g_autoptr(Record) r = NULL;

	if (!is_spf1(record)) {
		problem(why, "not a v=spf1 record");
		return FALSE;
	}
	r = parse_record(record, why);
	return r != NULL;
}

/* ---- evaluation (sections 4.4 to 6) ---- */

static PbSpfResult check_host(Eval *e, const char *domain, gboolean explain,
                              char **explanation);

/* Section 4.4 and 4.5: the one "v=spf1" record of DOMAIN. NULL with
 * the result to return when there is none or it is bad. */
static Record *
fetch_record(Eval *e, const char *domain, PbSpfResult *result)
{
	g_autoptr(GPtrArray) txt = NULL;
	PbDnsStatus status = lookup1(e, domain, PB_DNS_TXT, &txt);
	const char *found = NULL;
	Record *r;

	*result = PB_SPF_NONE;
	if (status == PB_DNS_TEMP) {
		problem(&e->problem, "DNS error or timeout on TXT %s", domain);
		*result = PB_SPF_TEMPERROR;
		return NULL;
	}
	for (guint i = 0; txt && i < txt->len; i++) {
		if (!is_spf1(txt->pdata[i]))
			continue;
		if (found != NULL) {
			problem(&e->problem, "%s has several SPF records",
			        domain);
			*result = PB_SPF_PERMERROR;
			return NULL;
		}
		found = txt->pdata[i];
	}
	if (found == NULL) {
		problem(&e->problem, "%s has no SPF record", domain);
		return NULL;
	}
	if ((r = parse_record(found, &e->problem)) == NULL)
		*result = PB_SPF_PERMERROR;
	return r;
}

/* Counts a DNS-querying term; FALSE: over the limit. */
static gboolean
count_term(Eval *e)
{
	if (++e->terms <= MAX_DNS_TERMS)
		return TRUE;
	problem(&e->problem, "more than %d DNS-querying terms", MAX_DNS_TERMS);
	return FALSE;
}

static PbDnsType
address_type(Eval *e)
{
	return e->family == AF_INET ? PB_DNS_A : PB_DNS_AAAA;
}

/* a (section 5.3) */
static Match
match_a(Eval *e, const char *name, const Term *t)
{
	g_autoptr(GPtrArray) addrs = NULL;
	PbDnsStatus status = lookup1(e, name, address_type(e), &addrs);

	if (status == PB_DNS_TEMP) {
		problem(&e->problem, "DNS error or timeout on %s", name);
		return TEMP;
	}
	if (!count_void(e, status))
		return PERM;
	for (guint i = 0; addrs && i < addrs->len; i++)
		if (client_in(e, addrs->pdata[i], t->cidr4, t->cidr6))
			return YES;
	return NO;
}

/* mx (section 5.4): the addresses of all (at most 10) names at once. */
static Match
match_mx(Eval *e, const char *name, const Term *t)
{
	g_autoptr(GPtrArray) mx = NULL;
	PbDnsStatus status = lookup1(e, name, PB_DNS_MX, &mx);
	PbDnsQuery q[MAX_NAMES], *qs[MAX_NAMES];
	Match m = NO;
	guint n = 0;

	if (status == PB_DNS_TEMP) {
		problem(&e->problem, "DNS error or timeout on MX %s", name);
		return TEMP;
	}
	if (!count_void(e, status))
		return PERM;
	if (mx != NULL && mx->len > MAX_NAMES) {
		problem(&e->problem, "%s has more than %d MX", name, MAX_NAMES);
		return PERM;
	}
	for (guint i = 0; mx && i < mx->len; i++)
		if (name_valid(mx->pdata[i], FALSE)) {
			pb_dns_query_init(&q[n], mx->pdata[i], address_type(e));
			qs[n] = &q[n];
			n++;
		}
	lookup(e, qs, n);
	for (guint i = 0; i < n; i++) {
		for (guint j = 0; q[i].records && j < q[i].records->len; j++)
			if (client_in(e, q[i].records->pdata[j], t->cidr4,
			              t->cidr6))
				m = YES;
		if (q[i].status == PB_DNS_TEMP && m == NO)
			m = TEMP;
		pb_dns_query_clear(&q[i]);
	}
	if (m == TEMP)
		problem(&e->problem, "DNS error or timeout on an MX of %s",
		        name);
	return m;
}

/* ptr (section 5.5): DNS errors are no match. */
static Match
match_ptr(Eval *e, const char *name)
{
	PbDnsStatus status;
	g_autoptr(GPtrArray) valid = validated_names(e, &status);

	if (!count_void(e, status))
		return PERM;
	for (guint i = 0; valid && i < valid->len; i++)
		if (name_within(valid->pdata[i], name))
			return YES;
	return NO;
}

/* exists (section 5.7): an A query, whatever the client's family. */
static Match
match_exists(Eval *e, const char *name)
{
	g_autoptr(GPtrArray) addrs = NULL;
	PbDnsStatus status = lookup1(e, name, PB_DNS_A, &addrs);

	if (status == PB_DNS_TEMP) {
		problem(&e->problem, "DNS error or timeout on %s", name);
		return TEMP;
	}
	if (!count_void(e, status))
		return PERM;
	return addrs != NULL ? YES : NO;
}

/* include (section 5.2) */
static Match
match_include(Eval *e, const char *name)
{
	g_autofree char *ignored = NULL;

	switch (check_host(e, name, FALSE, &ignored)) {
	case PB_SPF_PASS:
		return YES;
	case PB_SPF_TEMPERROR:
		return TEMP;
	case PB_SPF_NONE:
		problem(&e->problem, "include:%s has no SPF record", name);
		return PERM;
	case PB_SPF_PERMERROR:
		return PERM;
	default:
		return NO;
	}
}

static Match
match_term(Eval *e, const char *domain, const Term *t)
{
	g_autofree char *name = NULL;

	if (t->kind == M_ALL)
		return YES;
	if (t->kind == M_IP4 || t->kind == M_IP6)
		return (t->kind == M_IP4) == (e->family == AF_INET) &&
		               prefix_equal(e->addr, t->net,
		                            t->kind == M_IP4 ? t->cidr4
		                                             : t->cidr6)
		           ? YES
		           : NO;
	if (!count_term(e))
		return PERM;
	name = target_name(e, domain, t->spec);
	if (!name_valid(name, FALSE))
		return t->kind == M_INCLUDE ? PERM : NO;
	switch (t->kind) {
	case M_INCLUDE:
		return match_include(e, name);
	case M_A:
		return match_a(e, name, t);
	case M_MX:
		return match_mx(e, name, t);
	case M_PTR:
		return match_ptr(e, name);
	default:
		return match_exists(e, name);
	}
}

/* The exp= text (section 6.2), or NULL when anything is wrong with it. */
static char *
explain(Eval *e, const char *domain, const char *spec)
{
	g_autofree char *name = target_name(e, domain, spec);
	g_autoptr(GPtrArray) txt = NULL;
	g_autoptr(GString) out = g_string_new(NULL);
	char *ignored = NULL;

	if (!name_valid(name, FALSE) ||
	    lookup1(e, name, PB_DNS_TXT, &txt) != PB_DNS_OK || txt->len != 1)
		return NULL;
	if (!expand(e, domain, txt->pdata[0], TRUE, out, NULL, &ignored)) {
		g_free(ignored);
		return NULL;
	}
	return g_string_free(g_steal_pointer(&out), FALSE);
}

static PbSpfResult
qualified(char qualifier)
{
	switch (qualifier) {
	case '-':
		return PB_SPF_FAIL;
	case '~':
		return PB_SPF_SOFTFAIL;
	case '?':
		return PB_SPF_NEUTRAL;
	default:
		return PB_SPF_PASS;
	}
}

/* redirect= (section 6.1), after no mechanism matched. */
static PbSpfResult
redirect(Eval *e, const char *domain, const char *spec, gboolean want,
         char **explanation)
{
	g_autofree char *name = NULL;
	PbSpfResult r;

	if (!count_term(e))
		return PB_SPF_PERMERROR;
	name = target_name(e, domain, spec);
	r = check_host(e, name, want, explanation);
	if (r == PB_SPF_NONE) {
		problem(&e->problem, "redirect=%s has no SPF record", name);
		return PB_SPF_PERMERROR;
	}
	return r;
}

/* check_host() of section 4; WANT: not inside an include, where the
 * deciding term and a fail's exp= text (section 5.2) are of interest. */
static PbSpfResult
check_host(Eval *e, const char *domain, gboolean want, char **explanation)
{
	g_autoptr(Record) r = NULL;
	PbSpfResult result;

	if (!name_valid(domain, TRUE)) {
		problem(&e->problem, "%s is not a domain name", domain);
		return PB_SPF_NONE;
	}
	if ((r = fetch_record(e, domain, &result)) == NULL)
		return result;
	for (guint i = 0; i < r->terms->len; i++) {
		const Term *t = r->terms->pdata[i];
		switch (match_term(e, domain, t)) {
		case NO:
			continue;
		case TEMP:
			return PB_SPF_TEMPERROR;
		case PERM:
			return PB_SPF_PERMERROR;
		case YES:
			break;
		}
		result = qualified(t->qualifier);
		if (!want) /* inside an include: its includer decides */
			return result;
		e->mechanism = g_strdup(t->text);
		if (result == PB_SPF_FAIL && r->exp != NULL)
			*explanation = explain(e, domain, r->exp);
		return result;
	}
	if (r->redirect != NULL)
		return redirect(e, domain, r->redirect, want, explanation);
	return PB_SPF_NEUTRAL;
}

/* Sets up E for REQ's identity SENDER; FALSE: the address is bad. */
static gboolean
eval_init(Eval *e, PbResolver *resolver, const PbSpfRequest *req,
          const char *sender)
{
	const char *at = strrchr(sender, '@');
	guint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	e->resolver = resolver;
	e->req = req;
	e->local = at && at > sender ? g_strndup(sender, at - sender)
	                             : g_strdup("postmaster");
	e->domain = g_strdup(at ? at + 1 : sender);
	e->sender = g_strdup_printf("%s@%s", e->local, e->domain);
	if (inet_pton(AF_INET, req->ip, e->addr) == 1)
		e->family = AF_INET;
	else if (inet_pton(AF_INET6, req->ip, e->addr) == 1) {
		e->family = AF_INET6;
		/* an IPv4-mapped address is the IPv4 client it maps
		 * (section 5) */
		if (memcmp(e->addr, mapped, 12) == 0) {
			memmove(e->addr, e->addr + 12, 4);
			e->family = AF_INET;
		}
	} else
		return FALSE;
	return TRUE;
}

static PbSpfResult
check(PbResolver *resolver, const PbSpfRequest *req, const char *sender,
      PbSpfOutcome *out)
{
	Eval e = {0};

	memset(out, 0, sizeof *out);
	if (!eval_init(&e, resolver, req, sender)) {
		problem(&e.problem, "client address %s is not numeric",
		        req->ip);
		out->result = PB_SPF_PERMERROR;
	} else
		out->result = check_host(&e, e.domain, TRUE, &out->explanation);
	out->domain = g_steal_pointer(&e.domain);
	out->mechanism = g_steal_pointer(&e.mechanism);
	if (out->result == PB_SPF_NONE || out->result == PB_SPF_TEMPERROR ||
	    out->result == PB_SPF_PERMERROR)
		out->problem = g_steal_pointer(&e.problem);
	g_free(e.local);
	g_free(e.sender);
	g_free(e.ptr_name);
	g_free(e.problem);
	return out->result;
}

PbSpfResult
pb_spf_check_helo(PbResolver *resolver, const PbSpfRequest *req,
                  PbSpfOutcome *out)
{
	g_autofree char *sender =
	    g_strdup_printf("postmaster@%s", req->helo ? req->helo : "");

	return check(resolver, req, sender, out);
}

PbSpfResult
pb_spf_check_mailfrom(PbResolver *resolver, const PbSpfRequest *req,
                      PbSpfOutcome *out)
{
	if (req->sender == NULL || req->sender[0] == '\0')
		return pb_spf_check_helo(resolver, req, out);
	return check(resolver, req, req->sender, out);
}

char *
pb_spf_expand(PbResolver *resolver, const PbSpfRequest *req, const char *domain,
              const char *text, gboolean explain_text, char **why)
{
	Eval e = {0};
	g_autoptr(GString) out = g_string_new(NULL);
	gboolean ok;

	if (!eval_init(&e, resolver, req,
	               req->sender && *req->sender ? req->sender : "")) {
		problem(why, "client address %s is not numeric", req->ip);
		ok = FALSE;
	} else
		ok = expand(&e, domain, text, explain_text, out, NULL, why);
	g_free(e.local);
	g_free(e.domain);
	g_free(e.sender);
	g_free(e.ptr_name);
	g_free(e.problem);
	return ok ? g_string_free(g_steal_pointer(&out), FALSE) : NULL;
}
