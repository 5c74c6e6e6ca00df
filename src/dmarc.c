/*
 * dmarc.c - DMARC policy discovery, alignment and disposition (see
 * dmarc.h).
 *
 * The tree walk (RFC 9989 section 4.10): _dmarc.DOMAIN first, then, for
 * a name of 8 labels or more, its last 7, then one label fewer at a time
 * down to the top-level domain: at most 8 queries. The policy is the
 * first record found; the organizational domain is where a psd=n record
 * is, one label below a psd=y record, else the shortest name with a
 * record, else the name itself. Relaxed alignment compares
 * organizational domains, strict ones the names. Every _dmarc answer is
 * kept for the check, so the walks of the From domain and of the SPF and
 * DKIM domains share their queries.
 */
#include "dmarc.h"

#include <string.h>

#define WALK_LABELS 7 /* after the first query (RFC 9989 section 4.10) */
#define MAX_DKIM 10

static const char *const results[] = {
    [PB_DMARC_NONE] = "none",           [PB_DMARC_PASS] = "pass",
    [PB_DMARC_FAIL] = "fail",           [PB_DMARC_TEMPERROR] = "temperror",
    [PB_DMARC_PERMERROR] = "permerror",
};

static const char *const policies[] = {
    [PB_DMARC_POLICY_NONE] = "none",
    [PB_DMARC_POLICY_QUARANTINE] = "quarantine",
    [PB_DMARC_POLICY_REJECT] = "reject",
};

const char *
pb_dmarc_result_name(PbDmarcResult result)
{
	return results[result];
}

const char *
pb_dmarc_policy_name(PbDmarcPolicy policy)
{
	return policies[policy];
}

void
pb_dmarc_record_free(PbDmarcRecord *r)
{
	if (r == NULL)
		return;
	g_ptr_array_unref(r->rua);
	g_ptr_array_unref(r->ruf);
	g_free(r->fo);
	g_free(r);
}

void
pb_dmarc_outcome_clear(PbDmarcOutcome *out)
{
	g_clear_pointer(&out->from_domain, g_free);
	g_clear_pointer(&out->policy_domain, g_free);
	g_clear_pointer(&out->dkim_domain, g_free);
	g_clear_pointer(&out->problem, g_free);
}

/* ---- records (RFC 9989 section 4.7, RFC 7489 section 6.3) ---- */

static gboolean
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* TEXT without leading and trailing white space, newly allocated. */
static char *
trimmed(const char *text, size_t len)
{
	while (len > 0 && is_wsp(*text))
		text++, len--;
	while (len > 0 && is_wsp(text[len - 1]))
		len--;
	return g_strndup(text, len);
}

gboolean
pb_dmarc_is_record(const char *text)
{
	const char *semi = strchr(text, ';');
	g_autofree char *first =
	    trimmed(text, semi ? (size_t)(semi - text) : strlen(text));
	const char *eq = strchr(first, '=');
	g_autofree char *name = NULL, *value = NULL;

	if (eq == NULL)
		return FALSE;
	name = trimmed(first, (size_t)(eq - first));
	value = trimmed(eq + 1, strlen(eq + 1));
	return g_str_equal(name, "v") && g_str_equal(value, "DMARC1");
}

static gboolean
parse_policy(const char *value, PbDmarcPolicy *policy)
{
	for (guint i = 0; i < G_N_ELEMENTS(policies); i++)
		if (g_ascii_strcasecmp(value, policies[i]) == 0) {
			*policy = (PbDmarcPolicy)i;
			return TRUE;
		}
	return FALSE;
}

/* The URIs of a rua= or ruf= list that have a scheme ("mailto:..."). */
static GPtrArray *
parse_uris(const char *value)
{
	g_auto(GStrv) each = g_strsplit(value, ",", -1);
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);

	for (guint i = 0; each[i]; i++) {
		char *uri = trimmed(each[i], strlen(each[i]));
		const char *p = uri;
		if (g_ascii_isalpha(*p))
			while (g_ascii_isalnum(*p) || (*p && strchr("+-.", *p)))
				p++;
		if (p > uri && *p == ':' && p[1] != '\0')
			g_ptr_array_add(out, uri);
		else
			g_free(uri);
	}
	return out;
}

/* The state of a record being parsed: which policy tags were bad. */
typedef struct {
	gboolean has_p, bad_policy;
} Parse;

static void
parse_tag(PbDmarcRecord *r, Parse *ps, const char *name, const char *value)
{
	if (g_ascii_strcasecmp(name, "p") == 0)
		ps->has_p = parse_policy(value, &r->p);
	else if (g_ascii_strcasecmp(name, "sp") == 0)
		ps->bad_policy |= !(r->has_sp = parse_policy(value, &r->sp));
	else if (g_ascii_strcasecmp(name, "np") == 0)
		ps->bad_policy |= !(r->has_np = parse_policy(value, &r->np));
	else if (g_ascii_strcasecmp(name, "adkim") == 0)
		r->adkim_strict = g_ascii_strcasecmp(value, "s") == 0;
	else if (g_ascii_strcasecmp(name, "aspf") == 0)
		r->aspf_strict = g_ascii_strcasecmp(value, "s") == 0;
	else if (g_ascii_strcasecmp(name, "pct") == 0) {
		guint64 v;
		if (g_ascii_string_to_unsigned(value, 10, 0, 100, &v, NULL))
			r->pct = (guint)v;
	} else if (g_ascii_strcasecmp(name, "t") == 0)
		r->testing = g_ascii_strcasecmp(value, "y") == 0;
	else if (g_ascii_strcasecmp(name, "psd") == 0 && strlen(value) == 1 &&
	         strchr("ynu", g_ascii_tolower(*value)))
		r->psd = g_ascii_tolower(*value);
	else if (g_ascii_strcasecmp(name, "rua") == 0) {
		g_ptr_array_unref(r->rua);
		r->rua = parse_uris(value);
	} else if (g_ascii_strcasecmp(name, "ruf") == 0) {
		g_ptr_array_unref(r->ruf);
		r->ruf = parse_uris(value);
	} else if (g_ascii_strcasecmp(name, "fo") == 0) {
		g_free(r->fo);
		r->fo = g_strdup(value);
	}
}

static PbDmarcRecord *
record_new(void)
{
	PbDmarcRecord *r = g_new0(PbDmarcRecord, 1);

	r->pct = 100;
	r->psd = 'u';
	r->rua = g_ptr_array_new_with_free_func(g_free);
	r->ruf = g_ptr_array_new_with_free_func(g_free);
	return r;
}

PbDmarcRecord *
pb_dmarc_record_parse(const char *text, char **problem)
{
	g_autoptr(PbDmarcRecord) r = record_new();
	g_auto(GStrv) tags = g_strsplit(text, ";", 64);
	g_autoptr(GHashTable) seen =
	    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	Parse ps = {0};

	if (!pb_dmarc_is_record(text)) {
		if (problem != NULL)
			*problem = g_strdup("not a v=DMARC1 record");
		return NULL;
	}
	for (guint i = 1; tags[i]; i++) {
		const char *eq = strchr(tags[i], '=');
		g_autofree char *name = NULL, *value = NULL;
		if (eq == NULL)
			continue; /* an empty tag, or garbage: ignored */
		name = trimmed(tags[i], (size_t)(eq - tags[i]));
		value = trimmed(eq + 1, strlen(eq + 1));
		/* a tag given twice: the first counts */
		if (!g_hash_table_add(seen, g_ascii_strdown(name, -1)))
			continue;
		parse_tag(r, &ps, name, value);
	}
	if (ps.has_p && !ps.bad_policy)
		return g_steal_pointer(&r);
	if (r->rua->len == 0) {
		if (problem != NULL)
			*problem = g_strdup("DMARC record without a valid p= "
			                    "(nor sp=, np=) and without rua=");
		return NULL;
	}
	/* RFC 9989: then it is p=none, for the sake of the reports */
	r->p = PB_DMARC_POLICY_NONE;
	r->has_sp = r->has_np = FALSE;
	return g_steal_pointer(&r);
}

/* ---- the tree walk ---- */

typedef enum { FOUND, ABSENT, BROKEN, TEMP } Status;

/* What _dmarc.NAME holds. */
typedef struct {
	Status status;
	PbDmarcRecord *record; /* FOUND */
	char *problem;         /* BROKEN */
} Answer;

typedef struct {
	PbResolver *resolver;
	gint64 deadline;
	GHashTable *answers; /* name -> Answer* */
} Walk;

static void
answer_free(Answer *a)
{
	pb_dmarc_record_free(a->record);
	g_free(a->problem);
	g_free(a);
}

static void
walk_init(Walk *w, PbResolver *resolver, gint64 deadline)
{
	w->resolver = resolver;
	w->deadline = deadline;
	w->answers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	                                   (GDestroyNotify)answer_free);
}

/* The DMARC record at _dmarc.NAME: several records are none (RFC 9989
 * section 4.10, step 3). */
static const Answer *
record_at(Walk *w, const char *name)
{
	Answer *a = g_hash_table_lookup(w->answers, name);
	PbDnsQuery q, *qs[1] = {&q};
	g_autofree char *qname = g_strconcat("_dmarc.", name, NULL);
	const char *text = NULL;
	guint n = 0;

	if (a != NULL)
		return a;
	a = g_new0(Answer, 1);
	g_hash_table_insert(w->answers, g_strdup(name), a);
	pb_dns_query_init(&q, qname, PB_DNS_TXT);
	w->resolver->lookup(w->resolver, qs, 1, w->deadline);
	for (guint i = 0; q.records && i < q.records->len; i++)
		if (pb_dmarc_is_record(q.records->pdata[i]))
			text = q.records->pdata[i], n++;
	if (q.status == PB_DNS_TEMP)
		a->status = TEMP;
	else if (n != 1)
		a->status = ABSENT;
	else if ((a->record = pb_dmarc_record_parse(text, &a->problem)))
		a->status = FOUND;
	else
		a->status = BROKEN;
	pb_dns_query_clear(&q);
	return a;
}

/* The names the walk from DOMAIN visits, longest first. */
static GPtrArray *
walk_names(const char *domain)
{
	GPtrArray *names = g_ptr_array_new();
	GPtrArray *suffixes = g_ptr_array_new(); /* [k]: the last k+1 labels */
	guint n;

	for (const char *p = domain + strlen(domain); p > domain; p--)
		if (p[-1] == '.')
			g_ptr_array_add(suffixes, (gpointer)p);
	g_ptr_array_add(suffixes, (gpointer)domain);
	n = suffixes->len;
	g_ptr_array_add(names, (gpointer)domain);
	for (guint k = MIN(n - 1, WALK_LABELS); k >= 1; k--)
		g_ptr_array_add(names, suffixes->pdata[k - 1]);
	g_ptr_array_unref(suffixes);
	return names;
}

/* The policy record for DOMAIN: the first on the walk. NULL: none
 * (*STATUS ABSENT), or TEMP, or BROKEN (*WHERE set). */
static const Answer *
discover(Walk *w, const char *domain, const char **where)
{
	g_autoptr(GPtrArray) names = walk_names(domain);

	for (guint i = 0; i < names->len; i++) {
		const Answer *a = record_at(w, names->pdata[i]);
		if (a->status != ABSENT) {
			*where = names->pdata[i];
			return a;
		}
	}
	return NULL;
}

/* RFC 9989 section 4.10.2. NULL: a DNS error. */
static char *
org_domain(Walk *w, const char *domain)
{
	g_autoptr(GPtrArray) names = walk_names(domain);
	const char *shortest = domain;

	for (guint i = 0; i < names->len; i++) {
		const char *name = names->pdata[i];
		const Answer *a = record_at(w, name);
		if (a->status == TEMP)
			return NULL;
		if (a->status != FOUND)
			continue;
		if (a->record->psd == 'n')
			return g_strdup(name);
		if (a->record->psd == 'y') {
			/* one label below, or the name itself if it is the
			 * start of the walk */
			const char *below = name - 1; /* its dot */
			if (i == 0)
				return g_strdup(name);
			while (below > domain && below[-1] != '.')
				below--;
			return g_strdup(below);
		}
		shortest = name;
	}
	return g_strdup(shortest);
}

char *
pb_dmarc_organizational_domain(PbResolver *resolver, const char *domain,
                               gint64 deadline)
{
	Walk w;
	g_autofree char *name = g_ascii_strdown(domain, -1);
	char *org;

	walk_init(&w, resolver, deadline);
	org = org_domain(&w, name);
	g_hash_table_unref(w.answers);
	return org;
}

/* ---- the check (RFC 9989 section 5.3) ---- */

typedef enum { ALIGNED, NOT_ALIGNED, ALIGN_TEMP } Alignment;

/* Is ID aligned with the From domain FROM (both lower case)? */
static Alignment
aligned(Walk *w, const char *id, const char *from, gboolean strict)
{
	g_autofree char *a = NULL, *b = NULL;

	if (g_str_equal(id, from))
		return ALIGNED;
	if (strict)
		return NOT_ALIGNED;
	if ((a = org_domain(w, id)) == NULL ||
	    (b = org_domain(w, from)) == NULL)
		return ALIGN_TEMP;
	return g_str_equal(a, b) ? ALIGNED : NOT_ALIGNED;
}

/* A name a domain can have: labels of 1 to 63 octets, at most 253. */
static char *
normal_domain(const char *domain)
{
	size_t len = domain ? strlen(domain) : 0, label = 0;

	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (domain[i] == '.' && label == 0)
			return NULL;
		label = domain[i] == '.' ? 0 : label + 1;
		if (label > 63)
			return NULL;
	}
	if (label == 0)
		return NULL;
	{
		g_autofree char *cut = g_strndup(domain, len);
		return g_ascii_strdown(cut, -1);
	}
}

/* SPF and DKIM alignment; FALSE: neither aligned, ALIGN_TEMP in *TEMP
 * when a DNS error kept one from being known. */
static gboolean
authenticated(Walk *w, const PbDmarcRequest *req, const char *from,
              const PbDmarcRecord *r, PbDmarcOutcome *out, gboolean *temp)
{
	g_autofree char *spf = normal_domain(req->spf_domain);
	Alignment a;

	*temp = FALSE;
	if (req->spf_result == PB_SPF_PASS && spf != NULL) {
		a = aligned(w, spf, from, r->aspf_strict);
		out->spf_aligned = a == ALIGNED;
		*temp |= a == ALIGN_TEMP;
	}
	for (guint i = 0; req->dkim_domains && req->dkim_domains[i] &&
	                  i < MAX_DKIM && out->dkim_domain == NULL;
	     i++) {
		g_autofree char *d = normal_domain(req->dkim_domains[i]);
		if (d == NULL)
			continue;
		a = aligned(w, d, from, r->adkim_strict);
		if (a == ALIGNED)
			out->dkim_domain = g_steal_pointer(&d);
		*temp |= a == ALIGN_TEMP;
	}
	return out->spf_aligned || out->dkim_domain != NULL;
}

/* The From domain does not exist: no A, AAAA or MX (RFC 9989 np=). */
static gboolean
nonexistent(Walk *w, const char *from)
{
	PbDnsQuery q[3], *qs[3] = {&q[0], &q[1], &q[2]};
	gboolean gone = TRUE;

	pb_dns_query_init(&q[0], from, PB_DNS_A);
	pb_dns_query_init(&q[1], from, PB_DNS_AAAA);
	pb_dns_query_init(&q[2], from, PB_DNS_MX);
	w->resolver->lookup(w->resolver, qs, 3, w->deadline);
	for (guint i = 0; i < 3; i++) {
		gone &= q[i].status == PB_DNS_NXDOMAIN;
		pb_dns_query_clear(&q[i]);
	}
	return gone;
}

/* p=, or sp= (np= for a domain that does not exist) when the record is
 * of a domain above FROM. */
static PbDmarcPolicy
policy_for(Walk *w, const PbDmarcRecord *r, const char *from, const char *where)
{
	if (g_str_equal(from, where))
		return r->p;
	if (r->has_np && nonexistent(w, from))
		return r->np;
	return r->has_sp ? r->sp : r->p;
}

/* On fail: the policy, one step milder for a message sampled out by
 * pct= or a record in testing (t=y). */
static PbDmarcPolicy
disposition(const PbDmarcRecord *r, PbDmarcPolicy policy, guint sample)
{
	if ((r->testing || sample >= r->pct) && policy != PB_DMARC_POLICY_NONE)
		return policy - 1;
	return policy;
}

static PbDmarcResult
evaluate(Walk *w, const PbDmarcRequest *req, PbDmarcOutcome *out)
{
	const char *from = out->from_domain, *where = NULL;
	const Answer *a = discover(w, from, &where);
	gboolean temp;

	if (a == NULL) {
		out->problem = g_strdup_printf("no DMARC record for %s", from);
		return req->from_fields > 1 ? PB_DMARC_FAIL : PB_DMARC_NONE;
	}
	if (a->status == TEMP) {
		out->problem =
		    g_strdup_printf("DNS error or timeout on _dmarc.%s", where);
		return PB_DMARC_TEMPERROR;
	}
	out->policy_domain = g_strdup(where);
	if (a->status == BROKEN) {
		out->problem =
		    g_strdup_printf("_dmarc.%s: %s", where, a->problem);
		return PB_DMARC_PERMERROR;
	}
	out->policy = policy_for(w, a->record, from, where);
	if (req->from_fields > 1)
		out->problem =
		    g_strdup_printf("%u From fields", req->from_fields);
	else if (authenticated(w, req, from, a->record, out, &temp))
		return PB_DMARC_PASS;
	else if (temp) {
		out->problem = g_strdup("DNS error during alignment");
		return PB_DMARC_TEMPERROR;
	} else
		out->problem = g_strdup_printf("neither SPF nor DKIM aligned "
		                               "with %s",
		                               from);
	out->disposition = disposition(a->record, out->policy, req->sample);
	return PB_DMARC_FAIL;
}

PbDmarcResult
pb_dmarc_check(PbResolver *resolver, const PbDmarcRequest *req,
               PbDmarcOutcome *out)
{
	Walk w;

	memset(out, 0, sizeof *out);
	out->from_domain = normal_domain(req->from_domain);
	if (req->from_fields == 0 || out->from_domain == NULL) {
		out->problem = g_strdup("no From domain");
		out->result = PB_DMARC_PERMERROR;
		return out->result;
	}
	walk_init(&w, resolver, req->deadline);
	out->result = evaluate(&w, req, out);
	g_hash_table_unref(w.answers);
	return out->result;
}
