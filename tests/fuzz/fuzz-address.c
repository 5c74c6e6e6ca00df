/*
 * fuzz-address.c - RFC 5321 paths. Input: one octet of PbAddressFlags,
 * then the text. What parses must stay within the bounds, hold no
 * control character, and read back as the same address.
 */
#include "address.h"
#include "fuzz.h"

#include <string.h>

static void
check_clean(const char *s)
{
	for (const char *p = s; *p; p++)
		g_assert_true((guchar)*p >= 0x20 && *p != 0x7f);
}

/* The string form parsed again (bare) gives the same string. */
static void
round_trip(const char *str, PbAddressFlags flags)
{
	g_autoptr(PbAddress) again = NULL;
	g_autofree char *str2 = NULL;
	g_autofree char *bracketed = g_strdup_printf("<%s>", str);
	const char *rest;

	if (*str == '\0')
		flags |= PB_ADDRESS_ALLOW_NULL;
	g_assert_true(pb_address_parse_path(bracketed, strlen(bracketed),
	                                    flags & ~PB_ADDRESS_NO_BRACKETS,
	                                    &again, &rest, NULL));
	g_assert_cmpstr(rest, ==, "");
	str2 = pb_address_to_string(again);
	g_assert_cmpstr(str, ==, str2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(PbAddress) addr = NULL;
	g_autofree char *str = NULL;
	g_autofree char *canon = NULL;
	g_autofree char *canon2 = NULL;
	g_autofree char *local = NULL;
	g_autofree char *domain = NULL;
	PbAddressFlags flags;
	const char *text, *rest = NULL;

	if (size < 1)
		return 0;
	flags = data[0] & 0xf;
	text = (const char *)data + 1;
	if (!pb_address_parse_path(text, size - 1, flags, &addr, &rest,
	                           NULL))
		return 0;
	g_assert_true(rest >= text && rest <= text + size - 1);
	g_assert_cmpuint(strlen(addr->local), <=, PB_ADDRESS_MAX_LOCAL);
	g_assert_cmpuint(strlen(addr->domain), <=, PB_ADDRESS_MAX_DOMAIN);
	check_clean(addr->local);
	check_clean(addr->domain);
	str = pb_address_to_string(addr);
	g_assert_cmpuint(strlen(str), <=, PB_ADDRESS_MAX_PATH);
	check_clean(str);
	round_trip(str, flags | PB_ADDRESS_ALLOW_POSTMASTER);
	canon = pb_address_canonical(str, "+");
	canon2 = pb_address_canonical(str, "");
	if (*str && pb_address_split(str, &local, &domain))
		g_assert_nonnull(local);
	return 0;
}
