/* test-dns.c - MX sorting, nameserver parsing, and real lookups against
 * a dnsmasq started for the test on a free loopback port: MX for delivery,
 * the resolver of the authentication checks and an SPF check through it. */
#include "config.h"
#include "dns.h"
#include "error.h"
#include "spf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void
test_sort(void)
{
	g_autoptr(GRand) rand = g_rand_new_with_seed(42);
	guint firsts[3] = {0};

	for (int round = 0; round < 60; round++) {
		g_autoptr(GPtrArray) hosts =
		    g_ptr_array_new_with_free_func(g_free);
		static const guint prefs[] = {20, 10, 10, 10, 5};
		for (guint i = 0; i < G_N_ELEMENTS(prefs); i++) {
			PbMxHost *h = g_new0(PbMxHost, 1);
			h->preference = prefs[i];
			h->name = GUINT_TO_POINTER(i); /* an id, not freed */
			g_ptr_array_add(hosts, h);
		}
		pb_dns_sort_mx(hosts, rand);
		g_assert_cmpuint(((PbMxHost *)hosts->pdata[0])->preference, ==,
		                 5);
		g_assert_cmpuint(((PbMxHost *)hosts->pdata[1])->preference, ==,
		                 10);
		g_assert_cmpuint(((PbMxHost *)hosts->pdata[3])->preference, ==,
		                 10);
		g_assert_cmpuint(((PbMxHost *)hosts->pdata[4])->preference, ==,
		                 20);
		firsts[GPOINTER_TO_UINT(((PbMxHost *)hosts->pdata[1])->name) -
		       1]++;
	}
	/* equal preferences are shuffled: each came first sometimes */
	for (int i = 0; i < 3; i++)
		g_assert_cmpuint(firsts[i], >, 5);
}

static void
test_parse_server(void)
{
	struct sockaddr_storage sa;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
	g_autoptr(GError) error = NULL;

	g_assert_true(pb_dns_parse_server("127.0.0.1:5353", &sa, &error));
	g_assert_cmpint(sa.ss_family, ==, AF_INET);
	g_assert_cmpuint(ntohs(in4->sin_port), ==, 5353);
	g_assert_true(pb_dns_parse_server("192.0.2.1", &sa, &error));
	g_assert_cmpuint(ntohs(in4->sin_port), ==, 53);
	g_assert_true(pb_dns_parse_server("[::1]:54", &sa, &error));
	g_assert_cmpint(sa.ss_family, ==, AF_INET6);
	g_assert_cmpuint(ntohs(in6->sin6_port), ==, 54);
	g_assert_true(pb_dns_parse_server("2001:db8::1", &sa, &error));
	g_assert_cmpuint(ntohs(in6->sin6_port), ==, 53);
	g_assert_false(pb_dns_parse_server("ns.example.org", &sa, &error));
	g_assert_error(error, PB_ERROR, PB_ERROR_CONFIG);
	g_clear_error(&error);
	g_assert_false(pb_dns_parse_server("127.0.0.1:0", &sa, &error));
	g_clear_error(&error);
	g_assert_false(pb_dns_parse_server("[::1", &sa, &error));
}

static guint
free_udp_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&sa, &len), ==, 0);
	close(fd);
	return ntohs(sa.sin_port);
}

typedef struct {
	GPid pid;
	PbConfig *cfg;
} F;

static void
setup(F *f, gconstpointer data)
{
	guint port = free_udp_port();
	g_autofree char *portarg = g_strdup_printf("--port=%u", port);
	g_autofree char *conf =
	    g_strdup_printf("[delivery]\nnameservers = 127.0.0.1:%u\n", port);
	const char *argv[] = {"/usr/sbin/dnsmasq",
	                      "--keep-in-foreground",
	                      "--no-resolv",
	                      "--no-hosts",
	                      "--listen-address=127.0.0.1",
	                      "--bind-interfaces",
	                      "--local=/test/",
	                      "--user=root",
	                      "--pid-file=",
	                      portarg,
	                      "--mx-host=example.test,mx2.example.test,20",
	                      "--mx-host=example.test,mx1.example.test,10",
	                      "--host-record=mx1.example.test,127.0.0.2",
	                      "--host-record=mx2.example.test,127.0.0.3,::1",
	                      "--host-record=implicit.test,127.0.0.4",
	                      "--dns-rr=nullmx.test,15,000000",
	                      "--mx-host=noaddr.test,missing.noaddr.test,10",
	                      /* SPF: two strings joined, a, mx */
	                      "--txt-record=spf.test,v=spf1 ip4:127.0.0.,"
	                      "1 a:mx1.example.test mx:example.test -all",
	                      "--txt-record=spf.test,other text",
	                      NULL};
	g_autoptr(GError) error = NULL;

	g_assert_true(g_spawn_async(NULL, (char **)argv, NULL,
	                            G_SPAWN_DO_NOT_REAP_CHILD |
	                                G_SPAWN_STDOUT_TO_DEV_NULL |
	                                G_SPAWN_STDERR_TO_DEV_NULL,
	                            NULL, NULL, &f->pid, &error));
	g_assert_no_error(error);
	f->cfg = pb_config_load_data(conf, strlen(conf), "t", "/tmp", &error);
	g_assert_no_error(error);
	/* wait until its port is taken (then it answers at once) */
	for (int i = 0; i < 200; i++) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons((guint16)port)};
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		int r;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
		close(fd);
		if (r < 0)
			return;
		g_usleep(20000);
	}
	g_error("dnsmasq did not start");
}

static void
teardown(F *f, gconstpointer data)
{
	kill(f->pid, SIGTERM);
	waitpid(f->pid, NULL, 0);
	g_spawn_close_pid(f->pid);
	pb_config_free(f->cfg);
}

static void
test_mx(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMxList) mx =
	    pb_dns_resolve_mx(f->cfg, "example.test", &error);
	PbMxHost *h;

	g_assert_no_error(error);
	g_assert_false(mx->implicit);
	g_assert_cmpuint(mx->hosts->len, ==, 2);
	h = mx->hosts->pdata[0];
	g_assert_cmpstr(h->name, ==, "mx1.example.test");
	g_assert_cmpuint(h->preference, ==, 10);
	g_assert_cmpuint(h->addresses->len, ==, 1);
	g_assert_cmpstr(h->addresses->pdata[0], ==, "127.0.0.2");
	h = mx->hosts->pdata[1];
	g_assert_cmpstr(h->name, ==, "mx2.example.test");
	/* IPv6 first, then IPv4 */
	g_assert_cmpuint(h->addresses->len, ==, 2);
	g_assert_cmpstr(h->addresses->pdata[0], ==, "::1");
	g_assert_cmpstr(h->addresses->pdata[1], ==, "127.0.0.3");
}

static void
test_implicit(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMxList) mx =
	    pb_dns_resolve_mx(f->cfg, "implicit.test", &error);

	g_assert_no_error(error);
	g_assert_true(mx->implicit);
	g_assert_cmpuint(mx->hosts->len, ==, 1);
	g_assert_cmpstr(((PbMxHost *)mx->hosts->pdata[0])->name, ==,
	                "implicit.test");
}

static void
test_failures(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbMxList) mx =
	    pb_dns_resolve_mx(f->cfg, "nullmx.test", &error);

	g_assert_null(mx);
	g_assert_error(error, PB_ERROR, PB_ERROR_PERM);
	g_assert_true(g_str_has_prefix(error->message, "5.1.10 "));
	g_clear_error(&error);
	mx = pb_dns_resolve_mx(f->cfg, "nosuch.test", &error);
	g_assert_null(mx);
	g_assert_error(error, PB_ERROR, PB_ERROR_PERM);
	g_assert_true(g_str_has_prefix(error->message, "5.1.2 "));
	g_clear_error(&error);
	mx = pb_dns_resolve_mx(f->cfg, "noaddr.test", &error);
	g_assert_null(mx);
	g_assert_error(error, PB_ERROR, PB_ERROR_TEMP);
	g_assert_true(g_str_has_prefix(error->message, "4.4.3 "));
}

static PbDnsStatus
ask(PbResolver *r, const char *name, PbDnsType type, GPtrArray **records)
{
	PbDnsQuery q, *qs[1] = {&q};
	PbDnsStatus status;

	pb_dns_query_init(&q, name, type);
	r->lookup(r, qs, 1, pb_deadline_in(10));
	status = q.status;
	*records = g_steal_pointer(&q.records);
	pb_dns_query_clear(&q);
	return status;
}

static void
test_resolver(F *f, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(PbResolver) r = pb_dns_resolver_new(f->cfg, &error);
	g_autoptr(GPtrArray) rr = NULL;
	PbSpfRequest req = {.sender = "x@spf.test", .helo = "h.test"};
	PbSpfOutcome out;
	const char *pass[] = {"127.0.0.1", "127.0.0.2", "::1"};

	g_assert_no_error(error);
	g_assert_cmpint(ask(r, "spf.test", PB_DNS_TXT, &rr), ==, PB_DNS_OK);
	g_assert_cmpuint(rr->len, ==, 2);
	g_assert_true(g_ptr_array_find_with_equal_func(
	    rr, "v=spf1 ip4:127.0.0.1 a:mx1.example.test mx:example.test -all",
	    g_str_equal, NULL));
	g_clear_pointer(&rr, g_ptr_array_unref);
	g_assert_cmpint(ask(r, "mx2.example.test", PB_DNS_AAAA, &rr), ==,
	                PB_DNS_OK);
	g_assert_cmpstr(rr->pdata[0], ==, "::1");
	g_clear_pointer(&rr, g_ptr_array_unref);
	g_assert_cmpint(ask(r, "nosuch.test", PB_DNS_A, &rr), ==,
	                PB_DNS_NXDOMAIN);
	g_assert_cmpint(ask(r, "implicit.test", PB_DNS_MX, &rr), ==,
	                PB_DNS_NODATA);
	g_assert_null(rr);
	/* SPF through udns: ip4 (from two strings), a, mx (IPv6 too) */
	for (guint i = 0; i < G_N_ELEMENTS(pass); i++) {
		req.ip = pass[i];
		req.deadline = pb_deadline_in(10);
		g_assert_cmpint(pb_spf_check_mailfrom(r, &req, &out), ==,
		                PB_SPF_PASS);
		pb_spf_outcome_clear(&out);
	}
	req.ip = "127.0.0.9";
	g_assert_cmpint(pb_spf_check_mailfrom(r, &req, &out), ==, PB_SPF_FAIL);
	pb_spf_outcome_clear(&out);
}

/* A server that never answers: the lookup ends at its deadline. */
static void
test_resolver_deadline(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	g_autofree char *conf = NULL;
	g_autoptr(GError) error = NULL;
	PbConfig *cfg;
	PbResolver *r;
	PbDnsQuery q, *qs[1] = {&q};
	gint64 start = g_get_monotonic_time();

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&sa, &len), ==, 0);
	conf = g_strdup_printf("[delivery]\nnameservers = 127.0.0.1:%u\n",
	                       ntohs(sa.sin_port));
	cfg = pb_config_load_data(conf, strlen(conf), "t", "/tmp", &error);
	g_assert_no_error(error);
	r = pb_dns_resolver_new(cfg, &error);
	g_assert_no_error(error);
	pb_dns_query_init(&q, "slow.test", PB_DNS_TXT);
	r->lookup(r, qs, 1, pb_deadline_in(0) + 300);
	g_assert_cmpint(q.status, ==, PB_DNS_TEMP);
	g_assert_cmpint(g_get_monotonic_time() - start, <, 2 * G_USEC_PER_SEC);
	pb_dns_query_clear(&q);
	pb_resolver_free(r);
	pb_config_free(cfg);
	close(fd);
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/dns/sort", test_sort);
	g_test_add_func("/dns/parse-server", test_parse_server);
	g_test_add("/dns/mx", F, NULL, setup, test_mx, teardown);
	g_test_add("/dns/implicit", F, NULL, setup, test_implicit, teardown);
	g_test_add("/dns/failures", F, NULL, setup, test_failures, teardown);
	g_test_add("/dns/resolver", F, NULL, setup, test_resolver, teardown);
	g_test_add_func("/dns/resolver-deadline", test_resolver_deadline);
	return g_test_run();
}
