/* The wire codec: header layouts, name rules and base names (PROTOCOL.md sections 1, 2, 6 and 8). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "wire.h"

#include "tap.h"

static void test_headers(void)
{
	/* A 1028 header from alice: id, version 3, code 1028 (04 04), payload 0x00012345. */
	static const uint8_t req[23] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x99, 0x00, 0xaa, 0xbb,
	                                0xcc, 0xdd, 0xee, 0xff, 0x03, 0x04, 0x04, 0x45, 0x23, 0x01, 0x00};
	struct wire_request_header h;
	struct wire_response_header rh;
	uint8_t out[23], resp[7];

	wire_parse_request_header(req, &h);
	ok(memcmp(h.client_id, req, 16) == 0, "request header: client_id is the first 16 bytes");
	is_int(h.version, 3, "request header: version is byte 16");
	is_int(h.code, 1028, "request header: code is little-endian bytes 17-18");
	is_int(h.payload_size, 0x12345, "request header: payload_size is little-endian bytes 19-22");
	wire_build_request_header(out, &h);
	ok(memcmp(out, req, sizeof(req)) == 0, "request header: building what was parsed gives the same 23 bytes");

	wire_build_response_header(resp, RESP_FILE_RECEIVED, 279);
	ok(memcmp(resp, "\x03\x37\x08\x17\x01\x00\x00", 7) == 0,
	   "response header: version 3, code 2103 and payload 279, little-endian, 7 bytes");
	wire_parse_response_header(resp, &rh);
	ok(rh.version == 3 && rh.code == 2103 && rh.payload_size == 279, "response header: parses back");

	wire_build_response_header(resp, RESP_ERROR, 0xfffffffe);
	wire_parse_response_header(resp, &rh);
	ok(rh.payload_size == 0xfffffffe && resp[6] == 0xff && resp[3] == 0xfe,
	   "response header: the full 32-bit range survives");
	is_int(wire_get_u32((const uint8_t *)"\xff\xff\xff\xff"), 0xffffffff,
	       "u32 0xffffffff reads without sign extension");
	is_int(wire_get_u16((const uint8_t *)"\xff\xff"), 0xffff, "u16 0xffff reads without sign extension");
}

static enum wire_name_error check(const char *s, size_t n, bool utf8, size_t *len)
{
	uint8_t field[WIRE_NAME_SIZE];

	memset(field, 0, sizeof(field));
	memcpy(field, s, n);
	return wire_check_name(field, utf8, len);
}

static void test_names(void)
{
	uint8_t field[WIRE_NAME_SIZE];
	size_t len = 999;

	ok(check("alice", 5, true, &len) == WIRE_NAME_OK && len == 5, "name: 'alice' is valid, 5 bytes");
	memset(field, 'a', sizeof(field));
	ok(wire_check_name(field, false, &len) == WIRE_NAME_NO_NUL, "name: 255 bytes without NUL are refused");
	field[254] = 0;
	ok(wire_check_name(field, true, &len) == WIRE_NAME_OK && len == 254, "name: 254 bytes and a NUL are valid");
	memset(field, 0, sizeof(field));
	ok(wire_check_name(field, false, &len) == WIRE_NAME_EMPTY, "name: an empty name is refused");
	ok(check("a\x01", 2, false, &len) == WIRE_NAME_CONTROL, "name: 0x01 is a control byte");
	ok(check("a\x1f", 2, false, &len) == WIRE_NAME_CONTROL, "name: 0x1f is a control byte");
	ok(check("a\x7f", 2, false, &len) == WIRE_NAME_CONTROL, "name: 0x7f is a control byte");
	ok(check("\x20~", 2, false, &len) == WIRE_NAME_OK, "name: space and tilde are not control bytes");
	ok(check("x\0\x01\x02", 4, false, &len) == WIRE_NAME_OK && len == 1,
	   "name: bytes after the first NUL are ignored");
	ok(check("caf\xc3\xa9", 5, true, &len) == WIRE_NAME_OK, "name: UTF-8 'café' is valid");
	ok(check("\xf0\x9f\x93\x81", 4, true, &len) == WIRE_NAME_OK, "name: a 4-byte UTF-8 sequence is valid");
	ok(check("caf\xe9", 4, true, &len) == WIRE_NAME_NOT_UTF8, "name: Latin-1 'café' is not UTF-8");
	ok(check("caf\xe9", 4, false, &len) == WIRE_NAME_OK, "file name: Latin-1 bytes are allowed (no UTF-8 rule)");
	ok(check("\xc0\xaf", 2, true, &len) == WIRE_NAME_NOT_UTF8, "name: an overlong sequence is not UTF-8");
	ok(check("\xed\xa0\x80", 3, true, &len) == WIRE_NAME_NOT_UTF8, "name: a UTF-16 surrogate is not UTF-8");
	ok(check("\xf4\x90\x80\x80", 4, true, &len) == WIRE_NAME_NOT_UTF8,
	   "name: a code point past U+10FFFF is not UTF-8");
	ok(check("\xe2\x82", 2, true, &len) == WIRE_NAME_NOT_UTF8, "name: a truncated sequence is not UTF-8");
	ok(wire_put_name(field, "bob") == 0 && memcmp(field, "bob\0\0", 5) == 0 && field[254] == 0,
	   "wire_put_name NUL-pads the field");
	{
		char long_name[300];
		memset(long_name, 'x', sizeof(long_name) - 1);
		long_name[255] = '\0';
		ok(wire_put_name(field, long_name) == -ENAMETOOLONG, "wire_put_name refuses 255 bytes");
		long_name[254] = '\0';
		ok(wire_put_name(field, long_name) == 0, "wire_put_name takes 254 bytes");
	}
}

static void base(const char *name, const char *want)
{
	const char *b;
	size_t n;
	int r = wire_base_name(name, strlen(name), &b, &n);

	if (want)
		ok(r == 0 && n == strlen(want) && memcmp(b, want, n) == 0, "base name of '%s' is '%s'", name, want);
	else
		ok(r == -EINVAL, "'%s' has no usable base name", name);
}

static void test_base_names(void)
{
	base("report.pdf", "report.pdf");
	base("docs/report.pdf", "report.pdf");
	base("/etc/passwd", "passwd");
	base("../../etc/shadow", "shadow");
	base("C:\\Users\\al\\photo.jpg", "photo.jpg");
	base("a/b\\c", "c");
	base("...", "...");
	base("   ", "   ");
	base(".hidden", ".hidden");
	base("dir/", NULL);
	base("a\\", NULL);
	base(".", NULL);
	base("..", NULL);
	base("x/..", NULL);
	base("x\\.", NULL);
	base("/", NULL);
}

static void test_ids(void)
{
	static const uint8_t id[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4d, 0xef,
	                               0x80, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xff};
	uint8_t back[16], untouched[16];
	char hex[WIRE_ID_HEX_SIZE];

	wire_id_to_hex(id, hex);
	ok(strcmp(hex, "0123456789ab4def80112233445566ff") == 0, "id to hex: 32 lowercase digits");
	ok(wire_id_from_hex(hex, back) == 0 && memcmp(back, id, 16) == 0, "hex to id: round trip");
	ok(wire_id_from_hex("01234567-89AB-4DEF-8011-2233445566FF", back) == 0 && memcmp(back, id, 16) == 0,
	   "hex to id: dashes and uppercase accepted");
	memset(untouched, 0x5a, sizeof(untouched));
	memcpy(back, untouched, 16);
	ok(wire_id_from_hex("0123456789ab4def80112233445566f", back) == -EINVAL && memcmp(back, untouched, 16) == 0,
	   "hex to id: 31 digits refused, output untouched");
	ok(wire_id_from_hex("0123456789ab4def80112233445566fff", back) == -EINVAL, "hex to id: 33 digits refused");
	ok(wire_id_from_hex("0123456789ab4def80112233445566fg", back) == -EINVAL, "hex to id: a non-hex digit refused");
	ok(wire_id_from_hex("-0123456789ab4def80112233445566ff", back) == -EINVAL, "hex to id: a leading dash refused");
	ok(wire_id_from_hex("0-123456789ab4def80112233445566ff", back) == -EINVAL,
	   "hex to id: a dash inside a byte refused");
	ok(wire_id_from_hex("", back) == -EINVAL, "hex to id: empty refused");
}

static void test_names_of_codes(void)
{
	ok(strcmp(wire_request_name(1028), "send file") == 0 && strcmp(wire_request_name(1103), "send file") == 0,
	   "request names: 1028 and 1103 are both 'send file'");
	ok(strcmp(wire_request_name(1102), "unknown request") == 0, "request names: 1102 is unknown");
	ok(strcmp(wire_response_name(2107), "general error") == 0, "response names: 2107");
}

int main(void)
{
	test_headers();
	test_names();
	test_base_names();
	test_ids();
	test_names_of_codes();
	return tap_done();
}
