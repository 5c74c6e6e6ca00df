/*
 * fuzz-config.c - the configuration reader (pb_config_load_data: the
 * comment and duplicate pre-pass, GKeyFile, every typed value parser).
 * A config that loads is asked what the daemons ask of it.
 */
#include "config.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const domains[] = {"example.org", "EXAMPLE.ORG",
	                                      "example.net", "", "*"};
	static const char *const ips[] = {"127.0.0.1", "::1", "192.0.2.1",
	                                  "::ffff:192.0.2.1", "2001:db8::1"};
	g_autoptr(GError) error = NULL;
	g_autoptr(PbConfig) cfg = pb_config_load_data(
	    (const char *)data, size, "fuzz.conf", fuzz_scratch(), &error);

	if (cfg == NULL) {
		g_assert_nonnull(error);
		return 0;
	}
	g_assert_nonnull(cfg->hostname);
	g_assert_nonnull(cfg->domains);
	for (guint i = 0; i < G_N_ELEMENTS(domains); i++) {
		const PbRoute *r = pb_config_route(cfg, domains[i]);
		if (r)
			g_assert_nonnull(r->host);
		(void)pb_config_is_local_domain(cfg, domains[i]);
		(void)pb_config_domain_listed(cfg->require_tls, domains[i]);
	}
	for (guint i = 0; i < G_N_ELEMENTS(ips); i++)
		(void)pb_cidr_list_match(cfg->relay_networks, ips[i]);
	return 0;
}
