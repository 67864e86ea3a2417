/*
 * test-utf8: the one UTF-8 validator refuses every ill-formed sequence of
 * RFC 3629 (overlong forms, surrogates, code points past U+10FFFF, cut
 * sequences, stray continuation bytes) and accepts every well-formed one;
 * and exactly the control and bidi characters are marked for escaping.
 */
#include "config.h"

#include <string.h>

#include "utf8.h"

#include "tap.h"

/* The length utf8_decode gives the bytes of s, and the code point it reads. */
static size_t decode(const char *s, size_t n, uint32_t *cp)
{
	*cp = 0xffffffff;
	return utf8_decode((const uint8_t *)s, n, cp);
}

static void test_well_formed(void)
{
	static const struct {
		const char *s;
		size_t len;
		uint32_t cp;
		const char *what;
	} good[] = {
	    {"A", 1, 0x41, "ASCII"},
	    {"\x7f", 1, 0x7f, "DEL (well formed, if a control)"},
	    {"\xc2\x80", 2, 0x80, "the first 2-byte code point"},
	    {"\xc3\xa9", 2, 0xe9, "e with acute"},
	    {"\xdf\xbf", 2, 0x7ff, "the last 2-byte code point"},
	    {"\xe0\xa0\x80", 3, 0x800, "the first 3-byte code point"},
	    {"\xed\x9f\xbf", 3, 0xd7ff, "the code point just below the surrogates"},
	    {"\xee\x80\x80", 3, 0xe000, "the code point just above the surrogates"},
	    {"\xef\xbf\xbd", 3, 0xfffd, "the replacement character"},
	    {"\xf0\x90\x80\x80", 4, 0x10000, "the first 4-byte code point"},
	    {"\xf0\x9f\x93\x81", 4, 0x1f4c1, "a folder emoji"},
	    {"\xf4\x8f\xbf\xbf", 4, 0x10ffff, "U+10FFFF, the last code point"},
	};
	uint32_t cp;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t n = decode(good[i].s, good[i].len, &cp);

		ok(n == good[i].len && cp == good[i].cp, "well formed: %s (U+%04X, %zu bytes)", good[i].what,
		   (unsigned)good[i].cp, good[i].len);
		ok(utf8_valid(good[i].s, good[i].len), "utf8_valid agrees: %s", good[i].what);
	}
	ok(utf8_valid("", 0), "the empty string is valid");
	ok(utf8_valid("caf\xc3\xa9 \xf0\x9f\x93\x81", 10), "a mixed string is valid");
}

static void test_ill_formed(void)
{
	static const struct {
		const char *s;
		size_t len;
		const char *what;
	} bad[] = {
	    {"\x80", 1, "a lone continuation byte"},
	    {"\xbf", 1, "another lone continuation byte"},
	    {"\xc0\xaf", 2, "overlong '/' in 2 bytes (0xc0 0xaf)"},
	    {"\xc1\xbf", 2, "overlong 2-byte form with 0xc1"},
	    {"\xe0\x80\xaf", 3, "overlong '/' in 3 bytes"},
	    {"\xe0\x9f\xbf", 3, "overlong U+07FF in 3 bytes"},
	    {"\xf0\x80\x80\xaf", 4, "overlong '/' in 4 bytes"},
	    {"\xf0\x8f\xbf\xbf", 4, "overlong U+FFFF in 4 bytes"},
	    {"\xed\xa0\x80", 3, "the surrogate U+D800"},
	    {"\xed\xbf\xbf", 3, "the surrogate U+DFFF"},
	    {"\xed\xa0\xbd\xed\xb2\xa9", 6, "a surrogate pair written as CESU-8"},
	    {"\xf4\x90\x80\x80", 4, "U+110000, past the last code point"},
	    {"\xf5\x80\x80\x80", 4, "a lead byte 0xf5"},
	    {"\xf8\x88\x80\x80\x80", 5, "a 5-byte form"},
	    {"\xfe", 1, "the byte 0xfe"},
	    {"\xff", 1, "the byte 0xff"},
	    {"\xc3", 1, "a 2-byte sequence cut short"},
	    {"\xe2\x82", 2, "a 3-byte sequence cut short"},
	    {"\xf0\x9f\x93", 3, "a 4-byte sequence cut short"},
	    {"\xc3\x41", 2, "a lead byte followed by ASCII"},
	    {"\xe9", 1, "Latin-1 e with acute"},
	};
	uint32_t cp;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ok(decode(bad[i].s, bad[i].len, &cp) == 0 && cp == 0xffffffff,
		   "ill formed: %s is refused and no code point is written", bad[i].what);
		ok(!utf8_valid(bad[i].s, bad[i].len), "utf8_valid agrees: %s", bad[i].what);
	}
	ok(!utf8_valid("caf\xc3\xa9\xff", 6), "one bad byte at the end makes a string invalid");
	ok(decode("\xc3\xa9", 1, &cp) == 0, "a sequence is never read past the length given");
}

static void test_hidden_on_display(void)
{
	static const uint32_t hidden[] = {0x00,   0x01,   0x0a,   0x1b,   0x1f,   0x7f,   0x80,   0x85,   0x9b,  0x9f,
	                                  0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069};
	static const uint32_t shown[] = {0x20,   0x41,   0x5c,   0x7e,   0xa0,    0xe9,    0x2029,
	                                 0x202f, 0x2065, 0x206a, 0xfffd, 0x1f4c1, 0x10ffff};

	for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
		ok(utf8_hidden_on_display(hidden[i]), "U+%04X is shown escaped", (unsigned)hidden[i]);
	for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
		ok(!utf8_hidden_on_display(shown[i]), "U+%04X is shown as it is", (unsigned)shown[i]);
}

int main(void)
{
	test_well_formed();
	test_ill_formed();
	test_hidden_on_display();
	return tap_done();
}
