/*
 * test-log: log_escape, the form in which logs and efctl(8) show names from
 * the network (efserver-protocol(7), Names). Control characters (C0, DEL,
 * C1), bidi controls and bytes that are not valid UTF-8 (surrogates,
 * overlong forms, code points past U+10FFFF) come out escaped; valid text
 * comes out as it is; a cut-short result says so and stays in its buffer.
 */
#include "config.h"

#include <string.h>

#include "log.h"

#include "tap.h"

static void is_escaped(const char *in, size_t len, const char *want, const char *what)
{
	char out[LOG_ESCAPE_SIZE(64)];

	log_escape(in, len, out, sizeof(out));
	if (!ok(strcmp(out, want) == 0, "%s", what))
		printf("#   got \"%s\", want \"%s\"\n", out, want);
}

static void test_escapes(void)
{
	/* C0 controls and DEL: terminal escapes and line breaks never reach a log raw. */
	is_escaped("a\x01"
	           "b",
	           3, "a\\x01b", "a C0 control byte is \\xNN");
	is_escaped("\x1b[31mred", 8, "\\x1b[31mred", "ESC of a terminal sequence is \\x1b");
	is_escaped("two\nlines\r", 10, "two\\x0alines\\x0d", "newline and carriage return are escaped");
	is_escaped("del\x7f", 4, "del\\x7f", "DEL is \\x7f");
	is_escaped("back\\slash", 10, "back\\x5cslash", "the backslash is escaped, so an escape is unambiguous");
	/* C1 controls: valid UTF-8, yet CSI (U+009B) drives a terminal as ESC [ does. */
	is_escaped("\xc2\x85", 2, "\\u{85}", "C1 NEL (U+0085) is \\u{85}");
	is_escaped("\xc2\x9b"
	           "31m",
	           5, "\\u{9b}31m", "C1 CSI (U+009B) is \\u{9b}");
	is_escaped("\xc2\x80\xc2\x9f", 4, "\\u{80}\\u{9f}", "the first and last C1 controls");
	/* Bidi controls: they reorder what a person reads ("gpj.exe" shown as "exe.jpg"). */
	is_escaped("a\xe2\x80\xaegpj.exe", 11, "a\\u{202e}gpj.exe", "RIGHT-TO-LEFT OVERRIDE is \\u{202e}");
	is_escaped("\xe2\x80\xaa\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad", 12, "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
	           "the embeddings and overrides U+202A-U+202D");
	is_escaped("\xe2\x81\xa6\xe2\x81\xa7\xe2\x81\xa8\xe2\x81\xa9", 12, "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
	           "the isolates U+2066-U+2069");
	/* Bytes that are not valid UTF-8: each one is \xNN, and what follows is read afresh. */
	is_escaped("\xed\xa0\x80", 3, "\\xed\\xa0\\x80", "a surrogate (U+D800) is three \\xNN");
	is_escaped("\xc0\xaf", 2, "\\xc0\\xaf", "overlong '/' in 2 bytes is escaped");
	is_escaped("\xe0\x80\xaf", 3, "\\xe0\\x80\\xaf", "overlong '/' in 3 bytes is escaped");
	is_escaped("\xf0\x80\x80\xaf", 4, "\\xf0\\x80\\x80\\xaf", "overlong '/' in 4 bytes is escaped");
	is_escaped("\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80", "U+110000, past U+10FFFF, is escaped");
	is_escaped("caf\xe9", 4, "caf\\xe9", "Latin-1 is escaped");
	is_escaped("\xc3\xa9\xc3", 3, "\xc3\xa9\\xc3", "a sequence cut short at the end is escaped");
	is_escaped("\xe2\x82"
	           "A",
	           3, "\\xe2\\x82A", "a cut sequence does not swallow the byte after it");
	/* Valid text is shown as it is. */
	is_escaped("caf\xc3\xa9 \xf0\x9f\x93\x81 \xe2\x9c\x93", 14, "caf\xc3\xa9 \xf0\x9f\x93\x81 \xe2\x9c\x93",
	           "valid UTF-8 passes unchanged");
	is_escaped("\xc2\xa0\xe2\x80\xaf", 5, "\xc2\xa0\xe2\x80\xaf", "U+00A0 and U+202F, next to C1 and bidi, pass");
	is_escaped("a\0b", 3, "a\\x00b", "a NUL byte is \\x00");
	is_escaped("", 0, "", "nothing gives nothing");
}

static void test_bounds(void)
{
	char out[8], big[LOG_ESCAPE_SIZE(255)], in[255];

	memset(out, 'X', sizeof(out));
	log_escape("abcdefghij", 10, out, sizeof(out));
	ok(strcmp(out, "abcd...") == 0, "a cut-short result ends with ... inside its buffer (%s)", out);
	log_escape("abcdefg", 7, out, sizeof(out));
	ok(strcmp(out, "abcdefg") == 0, "a result that just fits is not cut (%s)", out);
	log_escape("ab\x01", 3, out, sizeof(out));
	ok(strcmp(out, "ab\\x01") == 0, "an escape that fits is whole (%s)", out);
	log_escape("abcd\x01", 5, out, sizeof(out));
	ok(strcmp(out, "abcd...") == 0, "an escape that does not fit is never cut in half (%s)", out);
	log_escape("\xe2\x80\xae\xe2\x80\xae", 6, out, sizeof(out));
	ok(strcmp(out, "...") == 0, "nor is a \\u{...} escape (%s)", out);
	log_escape("abc", 3, out, 1);
	ok(out[0] == '\0', "a 1-byte buffer holds the empty string");
	memset(in, 0xff, sizeof(in));
	log_escape(in, sizeof(in), big, sizeof(big));
	ok(strlen(big) == 4 * sizeof(in) && strncmp(big, "\\xff", 4) == 0,
	   "LOG_ESCAPE_SIZE holds the worst case: 255 invalid bytes, %zu characters", strlen(big));
	memset(in, 0, sizeof(in));
	for (size_t i = 0; i + 3 <= sizeof(in); i += 3)
		memcpy(in + i, "\xe2\x80\xae", 3);
	log_escape(in, sizeof(in), big, sizeof(big));
	ok(strlen(big) == 8 * sizeof(in) / 3 && !strstr(big, "..."), "and 85 bidi overrides, %zu characters, uncut",
	   strlen(big));
}

int main(void)
{
	test_escapes();
	test_bounds();
	return tap_done();
}
