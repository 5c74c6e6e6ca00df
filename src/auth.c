/*
 * auth.c - the inbound checks, their Authentication-Results field and
 * policy, and the filter of forged Authentication-Results (auth.h).
 */
#include "auth.h"

#include <arpa/inet.h>
#include <string.h>

#define AR_NAME "authentication-results"
#define AR_NAME_LEN 22
#define IPREV_MAX_NAMES 10

/* ---- the filter ---- */

typedef enum {
	F_BOL,    /* at the start of a header line */
	F_BOL_CR, /* a CR at the start of a line: the empty line? */
	F_NAME,   /* a line that may begin "Authentication-Results:" */
	F_PASS,   /* passing a line on, to its LF */
	F_AR,     /* holding an Authentication-Results field */
	F_AR_EOL, /* held, at a line end: continued or not? */
	F_DROP,   /* dropping the rest of a field's line */
	F_DROP_EOL,
	F_BODY, /* after the header section: everything passes */
} FilterState;

struct _PbAuthFilter {
	char *authserv_id;
	PbAuthSink sink;
	void *ctx;
	FilterState state;
	GString *held; /* F_NAME, F_AR: the bytes held back */
	GString *out;  /* what one feed passes on */
	guint removed;
};

PbAuthFilter *
pb_auth_filter_new(const char *authserv_id, PbAuthSink sink, void *ctx)
{
	PbAuthFilter *f = g_new0(PbAuthFilter, 1);

	f->authserv_id = g_strdup(authserv_id);
	f->sink = sink;
	f->ctx = ctx;
	f->held = g_string_new(NULL);
	f->out = g_string_new(NULL);
	return f;
}

void
pb_auth_filter_free(PbAuthFilter *f)
{
	if (f == NULL)
		return;
	g_free(f->authserv_id);
	g_string_free(f->held, TRUE);
	g_string_free(f->out, TRUE);
	g_free(f);
}

guint
pb_auth_filter_removed(const PbAuthFilter *f)
{
	return f->removed;
}

/* Skips CFWS (RFC 5322 3.2.2: blanks, line ends, nested comments). */
static const char *
skip_cfws(const char *p, const char *end)
{
	int depth = 0;

	for (; p < end; p++) {
		if (depth > 0 && *p == '\\' && p + 1 < end)
			p++;
		else if (*p == '(')
			depth++;
		else if (depth > 0 && *p == ')')
			depth--;
		else if (depth == 0 && !g_ascii_isspace(*p))
			break;
	}
	return p;
}

gboolean
pb_auth_field_is_ours(const char *field, gsize len, const char *authserv_id)
{
	const char *end = field + len;
	const char *p = memchr(field, ':', len);
	g_autoptr(GString) id = g_string_new(NULL);

	if (p == NULL)
		return TRUE;
	p = skip_cfws(p + 1, end);
	if (p < end && *p == '"') {
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < end)
				p++;
			if (*p != '\r' && *p != '\n')
				g_string_append_c(id, *p);
		}
		if (p == end)
			return TRUE; /* cut short */
	} else
		for (;
		     p < end && !g_ascii_isspace(*p) && *p != ';' && *p != '(';
		     p++)
			g_string_append_c(id, *p);
	if (id->len == 0 || p == end)
		return TRUE; /* no id, or maybe only its beginning */
	return g_ascii_strcasecmp(id->str, authserv_id) == 0;
}

/* A held field is complete: passed on, or dropped. */
static void
judge_held(PbAuthFilter *f)
{
	if (pb_auth_field_is_ours(f->held->str, f->held->len, f->authserv_id))
		f->removed++;
	else
		g_string_append_len(f->out, f->held->str, f->held->len);
	g_string_truncate(f->held, 0);
}

/* One octet of the header section. */
static void
filter_byte(PbAuthFilter *f, char c)
{
	for (;;) {
		switch (f->state) {
		case F_BOL:
			if (c == '\n') {
				g_string_append_c(f->out, c);
				f->state = F_BODY;
			} else if (c == '\r') {
				g_string_append_c(f->out, c);
				f->state = F_BOL_CR;
			} else if (c == ' ' || c == '\t') {
				g_string_append_c(f->out, c);
				f->state = F_PASS;
			} else {
				f->state = F_NAME;
				continue;
			}
			return;
		case F_BOL_CR:
			g_string_append_c(f->out, c);
			f->state = c == '\n' ? F_BODY : F_PASS;
			return;
		case F_NAME:
			if (f->held->len < AR_NAME_LEN
			        ? g_ascii_tolower(c) == AR_NAME[f->held->len]
			        : c == ' ' || c == '\t' || c == ':') {
				g_string_append_c(f->held, c);
				if (c == ':')
					f->state = F_AR;
				return;
			}
			g_string_append_len(f->out, f->held->str, f->held->len);
			g_string_truncate(f->held, 0);
			g_string_append_c(f->out, c);
			f->state = c == '\n' ? F_BOL : F_PASS;
			return;
		case F_PASS:
			g_string_append_c(f->out, c);
			if (c == '\n')
				f->state = F_BOL;
			return;
		case F_AR:
			g_string_append_c(f->held, c);
			if (f->held->len >= PB_AUTH_MAX_FIELD) {
				/* judged on its beginning; the rest of the
				 * field follows the verdict */
				gboolean ours = pb_auth_field_is_ours(
				    f->held->str, f->held->len, f->authserv_id);
				judge_held(f);
				if (ours)
					f->state =
					    c == '\n' ? F_DROP_EOL : F_DROP;
				else
					f->state = c == '\n' ? F_BOL : F_PASS;
			} else if (c == '\n')
				f->state = F_AR_EOL;
			return;
		case F_AR_EOL:
			if (c == ' ' || c == '\t') {
				g_string_append_c(f->held, c);
				f->state = F_AR;
				return;
			}
			judge_held(f);
			f->state = F_BOL;
			continue;
		case F_DROP:
			if (c == '\n')
				f->state = F_DROP_EOL;
			return;
		case F_DROP_EOL:
			if (c == ' ' || c == '\t') {
				f->state = F_DROP;
				return;
			}
			f->state = F_BOL;
			continue;
		case F_BODY:
			g_string_append_c(f->out, c);
			return;
		}
	}
}

void
pb_auth_filter_feed(PbAuthFilter *f, const char *buf, gsize len)
{
	gsize i = 0;

	for (; i < len && f->state != F_BODY; i++)
		filter_byte(f, buf[i]);
	if (f->out->len > 0) {
		f->sink(f->ctx, f->out->str, f->out->len);
		g_string_truncate(f->out, 0);
	}
	if (i < len)
		f->sink(f->ctx, buf + i, len - i);
}

void
pb_auth_filter_finish(PbAuthFilter *f)
{
	if (f->state == F_AR || f->state == F_AR_EOL)
		judge_held(f);
	else if (f->state == F_NAME)
		g_string_append_len(f->out, f->held->str, f->held->len);
	g_string_truncate(f->held, 0);
	f->state = F_BODY;
	if (f->out->len > 0)
		f->sink(f->ctx, f->out->str, f->out->len);
	g_string_truncate(f->out, 0);
}

/* ---- the checks ---- */

const char *
pb_iprev_result_name(PbIprevResult result)
{
	static const char *const names[] = {"pass", "fail", "temperror",
	                                    "permerror"};
	return names[result];
}

void
pb_auth_results_clear(PbAuthResults *r)
{
	g_clear_pointer(&r->ip, g_free);
	g_clear_pointer(&r->helo, g_free);
	g_clear_pointer(&r->sender, g_free);
	pb_spf_outcome_clear(&r->spf);
	g_clear_pointer(&r->dkim, g_ptr_array_unref);
	pb_dmarc_outcome_clear(&r->dmarc);
	g_clear_pointer(&r->from_domain, g_free);
}

/* The reverse DNS name of IP, or NULL when it is no numeric address. */
static char *
reverse_name(const char *ip, int *family, guint8 *addr)
{
	if (inet_pton(AF_INET, ip, addr) == 1)
		*family = AF_INET;
	else if (inet_pton(AF_INET6, ip, addr) == 1)
		*family = AF_INET6;
	else
		return NULL;
	return pb_dns_reverse_name(*family, addr);
}

/* RFC 8601 section 3: a PTR name of the address whose A or AAAA
 * records include it. */
static PbIprevResult
iprev(PbResolver *resolver, const char *ip, gint64 deadline)
{
	guint8 addr[16], other[16];
	int family = 0;
	g_autofree char *rev = reverse_name(ip, &family, addr);
	PbDnsQuery ptr;
	PbDnsQuery fwd[IPREV_MAX_NAMES];
	PbDnsQuery *qs[IPREV_MAX_NAMES];
	PbIprevResult result = PB_IPREV_FAIL;
	PbDnsQuery *p = &ptr;
	guint n;

	if (rev == NULL)
		return PB_IPREV_PERMERROR;
	pb_dns_query_init(&ptr, rev, PB_DNS_PTR);
	resolver->lookup(resolver, &p, 1, deadline);
	if (ptr.status != PB_DNS_OK) {
		result = ptr.status == PB_DNS_TEMP ? PB_IPREV_TEMPERROR
		                                   : PB_IPREV_FAIL;
		pb_dns_query_clear(&ptr);
		return result;
	}
	n = MIN(ptr.records->len, IPREV_MAX_NAMES);
	for (guint i = 0; i < n; i++) {
		pb_dns_query_init(&fwd[i], g_ptr_array_index(ptr.records, i),
		                  family == AF_INET ? PB_DNS_A : PB_DNS_AAAA);
		qs[i] = &fwd[i];
	}
	resolver->lookup(resolver, qs, n, deadline);
	for (guint i = 0; i < n; i++) {
		if (fwd[i].status == PB_DNS_TEMP && result == PB_IPREV_FAIL)
			result = PB_IPREV_TEMPERROR;
		for (guint j = 0;
		     fwd[i].status == PB_DNS_OK && j < fwd[i].records->len; j++)
			if (inet_pton(family,
			              g_ptr_array_index(fwd[i].records, j),
			              other) == 1 &&
			    memcmp(addr, other, family == AF_INET ? 4 : 16) ==
			        0)
				result = PB_IPREV_PASS;
		pb_dns_query_clear(&fwd[i]);
	}
	pb_dns_query_clear(&ptr);
	return result;
}

/* How many From fields, and the first one's domain (DMARC asks about
 * it even when there are several). */
static char *
first_from_domain(const GPtrArray *fields, guint *count)
{
	const char *first = NULL;

	*count = 0;
	for (guint i = 0; i < fields->len; i++) {
		const char *f = g_ptr_array_index(fields, i);
		if (g_ascii_strncasecmp(f, "from", 4) != 0)
			continue;
		const char *p = f + 4;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != ':')
			continue;
		if ((*count)++ == 0)
			first = f;
	}
	if (first == NULL)
		return NULL;
	g_autoptr(GPtrArray) one = g_ptr_array_new();
	g_ptr_array_add(one, (gpointer)first);
	return pb_dkim_from_domain(one);
}

void
pb_auth_check(PbResolver *resolver, const PbAuthRequest *req, PbDkimVerify *v,
              PbAuthResults *out)
{
	PbSpfRequest spf = {.ip = req->ip,
	                    .sender = req->sender,
	                    .helo = req->helo,
	                    .receiver = req->hostname,
	                    .now = req->now,
	                    .deadline = req->deadline};
	PbDnsTxtLookup txt = {resolver, req->deadline};
	g_autoptr(GPtrArray) passed = g_ptr_array_new();
	guint from_fields = 0;

	memset(out, 0, sizeof *out);
	out->ip = g_strdup(req->ip);
	out->helo = g_strdup(req->helo);
	out->sender = g_strdup(req->sender);
	out->iprev = iprev(resolver, req->ip, req->deadline);
	out->spf_helo = *req->sender == '\0';
	if (out->spf_helo)
		pb_spf_check_helo(resolver, &spf, &out->spf);
	else
		pb_spf_check_mailfrom(resolver, &spf, &out->spf);
	out->dkim = pb_dkim_verify_finish(v, req->now, pb_dns_txt_lookup, &txt);
	for (guint i = 0; i < out->dkim->len; i++) {
		const PbDkimResult *d = g_ptr_array_index(out->dkim, i);
		if (d->status == PB_DKIM_PASS && d->domain != NULL)
			g_ptr_array_add(passed, d->domain);
	}
	g_ptr_array_add(passed, NULL);
	out->from_domain =
	    first_from_domain(pb_dkim_verify_fields(v), &from_fields);
	PbDmarcRequest dmarc = {
	    .from_domain = out->from_domain,
	    .from_fields = from_fields,
	    .spf_domain =
	        out->spf.domain && *out->spf.domain ? out->spf.domain : NULL,
	    .spf_result = out->spf.result,
	    .dkim_domains = (const char *const *)passed->pdata,
	    .sample = req->sample,
	    .deadline = req->deadline};
	pb_dmarc_check(resolver, &dmarc, &out->dmarc);
}

/* ---- the policy ---- */

/* DOMAIN is D or a subdomain of D. */
static gboolean
within(const char *domain, const char *d)
{
	gsize n = strlen(domain), m = strlen(d);

	return g_ascii_strcasecmp(domain, d) == 0 ||
	       (n > m && domain[n - m - 1] == '.' &&
	        g_ascii_strcasecmp(domain + n - m, d) == 0);
}

/* DMARC, or a DKIM signature of the From domain (or a parent), passed:
 * TRUE; *TEMP: one of them failed for a temporary error. */
static gboolean
from_authenticated(const PbAuthResults *r, gboolean *temp)
{
	*temp = r->dmarc.result == PB_DMARC_TEMPERROR;
	if (r->dmarc.result == PB_DMARC_PASS)
		return TRUE;
	for (guint i = 0; r->dkim && i < r->dkim->len; i++) {
		const PbDkimResult *d = g_ptr_array_index(r->dkim, i);
		if (d->domain == NULL || !within(r->from_domain, d->domain))
			continue;
		if (d->status == PB_DKIM_PASS)
			return TRUE;
		if (d->status == PB_DKIM_TEMPERROR)
			*temp = TRUE;
	}
	return FALSE;
}

char *
pb_auth_decide(const PbConfig *cfg, PbAuthResults *r)
{
	gboolean temp = FALSE;

	r->spoofed_local = r->from_domain != NULL &&
	                   pb_config_is_local_domain(cfg, r->from_domain) &&
	                   !from_authenticated(r, &temp);
	if (r->dmarc.result == PB_DMARC_FAIL &&
	    r->dmarc.disposition == PB_DMARC_POLICY_REJECT &&
	    cfg->auth_dmarc_reject)
		return g_strdup_printf(
		    "550 5.7.1 Error: refused by the DMARC policy of %s",
		    r->dmarc.policy_domain ? r->dmarc.policy_domain
		                           : r->dmarc.from_domain);
	if (r->spoofed_local && cfg->auth_spoof_reject)
		return temp ? g_strdup_printf(
		                  "451 4.7.0 Error: From domain %s is local; "
		                  "its check failed for now, try again later",
		                  r->from_domain)
		            : g_strdup_printf(
		                  "550 5.7.1 Error: From domain %s is local: "
		                  "log in to send as it",
		                  r->from_domain);
	return NULL;
}

/* ---- the header ---- */

/* A value of RFC 8601 (RFC 2045 token, or a quoted-string), with the
 * local-part@domain form of section 2.2 left as it is. */
static void
append_value(GString *s, const char *v)
{
	const char *p;

	for (p = v; *p; p++)
		if (!(g_ascii_isalnum(*p) || strchr("-._+@!#$%&'*^`{|}~", *p)))
			break;
	if (*p == '\0' && *v != '\0') {
		g_string_append(s, v);
		return;
	}
	g_string_append_c(s, '"');
	for (p = v; *p; p++) {
		if (*p == '\r' || *p == '\n' || (guchar)*p < 0x20)
			continue;
		if (*p == '"' || *p == '\\')
			g_string_append_c(s, '\\');
		g_string_append_c(s, *p);
	}
	g_string_append_c(s, '"');
}

char *
pb_auth_header(const char *authserv_id, const PbAuthResults *r)
{
	GString *s = g_string_new("Authentication-Results: ");

	append_value(s, authserv_id);
	g_string_append_printf(
	    s, ";\r\n\tiprev=%s policy.iprev=", pb_iprev_result_name(r->iprev));
	append_value(s, r->ip);
	g_string_append_printf(
	    s, ";\r\n\tspf=%s smtp.%s=", pb_spf_result_name(r->spf.result),
	    r->spf_helo ? "helo" : "mailfrom");
	append_value(s, r->spf_helo ? r->helo : r->sender);
	if (r->dkim == NULL || r->dkim->len == 0)
		g_string_append(s, ";\r\n\tdkim=none");
	for (guint i = 0; r->dkim && i < r->dkim->len; i++) {
		g_autofree char *d =
		    pb_dkim_result_format(g_ptr_array_index(r->dkim, i));
		g_string_append_printf(s, ";\r\n\t%s", d);
	}
	g_string_append_printf(s, ";\r\n\tdmarc=%s",
	                       pb_dmarc_result_name(r->dmarc.result));
	if (r->spoofed_local)
		g_string_append(s, " (From is a local domain, not "
		                   "authenticated)");
	if (r->from_domain) {
		g_string_append(s, " header.from=");
		append_value(s, r->from_domain);
	}
	if (r->dmarc.result == PB_DMARC_PASS ||
	    r->dmarc.result == PB_DMARC_FAIL)
		g_string_append_printf(
		    s, " policy.dmarc=%s",
		    pb_dmarc_policy_name(r->dmarc.result == PB_DMARC_FAIL
		                             ? r->dmarc.disposition
		                             : r->dmarc.policy));
	g_string_append(s, "\r\n");
	return g_string_free(s, FALSE);
}

char *
pb_auth_summary(const PbAuthResults *r)
{
	GString *s = g_string_new(NULL);

	g_string_append_printf(s, "iprev=%s spf=%s",
	                       pb_iprev_result_name(r->iprev),
	                       pb_spf_result_name(r->spf.result));
	if (r->dkim == NULL || r->dkim->len == 0)
		g_string_append(s, " dkim=none");
	for (guint i = 0; r->dkim && i < r->dkim->len; i++) {
		const PbDkimResult *d = g_ptr_array_index(r->dkim, i);
		g_string_append_printf(s, " dkim=%s(%s)",
		                       pb_dkim_status_name(d->status),
		                       d->domain ? d->domain : "?");
	}
	g_string_append_printf(s, " dmarc=%s",
	                       pb_dmarc_result_name(r->dmarc.result));
	if (r->dmarc.result == PB_DMARC_FAIL)
		g_string_append_printf(
		    s, "(%s)", pb_dmarc_policy_name(r->dmarc.disposition));
	if (r->spoofed_local)
		g_string_append(s, " spoofed-local-from");
	return g_string_free(s, FALSE);
}
