/*
 * The wire codec: the request and response tables, every header and body
 * layout in the standard dialect, the seed-004 dialect and the tolerances,
 * name rules, base names and client ids (efserver-protocol(7), "Framing",
 * "Requests", "Responses", "Names" and "Dialects and tolerances"). The
 * expected bytes are written out here by hand, from the manual page.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "wire.h"

#include "tap.h"

static const struct wire_dialect *const std = &wire_standard;

static const uint8_t alice[16] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88,
                                  0x99, 0x00, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};

static void test_headers(void)
{
	/* A 1028 header from alice: id, version 3, code 1028 (04 04), payload 0x00012345. */
	static const uint8_t req[23] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x99, 0x00, 0xaa, 0xbb,
	                                0xcc, 0xdd, 0xee, 0xff, 0x03, 0x04, 0x04, 0x45, 0x23, 0x01, 0x00};
	struct wire_request_header h;
	struct wire_response_header rh;
	uint8_t out[23], resp[64];
	size_t len = 0;

	wire_parse_request_header(req, &h);
	ok(memcmp(h.client_id, req, 16) == 0, "request header: client_id is the first 16 bytes");
	is_int(h.version, 3, "request header: version is byte 16");
	is_int(h.code, 1028, "request header: code is little-endian bytes 17-18");
	is_int(h.payload_size, 0x12345, "request header: payload_size is little-endian bytes 19-22");
	wire_build_request_header(out, &h);
	ok(memcmp(out, req, sizeof(req)) == 0, "request header: building what was parsed gives the same 23 bytes");

	is_int(wire_response_header_size(std), 7, "response header: 7 bytes in the standard dialect");
	ok(wire_build_response(std, RESP_ERROR, NULL, resp, sizeof(resp), &len) == 0 && len == 7 &&
	       memcmp(resp, "\x03\x3b\x08\x00\x00\x00\x00", 7) == 0,
	   "response header: 2107 is version 3, code 2107 little-endian, payload_size 0");
	wire_parse_response_header(std, resp, &rh);
	ok(rh.version == 3 && rh.code == 2107 && rh.payload_size == 0, "response header: parses back");
	wire_parse_response_header(std, (const uint8_t *)"\x03\x37\x08\xfe\xff\xff\xff", &rh);
	ok(rh.code == 2103 && rh.payload_size == 0xfffffffe, "response header: the full 32-bit range survives");
	is_int(wire_get_u32((const uint8_t *)"\xff\xff\xff\xff"), 0xffffffff,
	       "u32 0xffffffff reads without sign extension");
	is_int(wire_get_u16((const uint8_t *)"\xff\xff"), 0xffff, "u16 0xffff reads without sign extension");
}

/* efserver-protocol(7), "Requests" and "Responses", row by row. */
static void test_request_table(void)
{
	static const struct {
		uint16_t code, set;
		enum wire_kind kind;
		uint32_t min, max;
		uint16_t success, refusal, format_error;
		unsigned flags;
	} want[] = {
	    {1025, 1025, WIRE_KIND_REGISTER, 255, 255, 2100, 2101, 2101, 0},
	    {1026, 1025, WIRE_KIND_PUBLIC_KEY, 256, 1279, 2102, 2107, 2107, 0},
	    {1027, 1025, WIRE_KIND_RECONNECT, 255, 255, 2105, 2106, 2107, 0},
	    {1028, 1025, WIRE_KIND_FILE, 259 + 16, 0xffffffff, 2103, 2107, 2107, 0},
	    {1029, 1025, WIRE_KIND_CRC_OK, 255, 255, 2104, 2107, 2107, WIRE_ACK_ID},
	    {1030, 1025, WIRE_KIND_CRC_RETRY, 255, 255, 2104, 2107, 2107, WIRE_ACK_ID},
	    {1031, 1025, WIRE_KIND_CRC_ABORT, 255, 255, 2104, 2107, 2107, WIRE_ACK_ID},
	    {1100, 1100, WIRE_KIND_REGISTER, 255, 255, 2100, 2101, 2101, 0},
	    {1101, 1100, WIRE_KIND_PUBLIC_KEY, 256, 1279, 2102, 2107, 2107, 0},
	    {1103, 1100, WIRE_KIND_FILE, 275 + 16, 0xffffffff, 2103, 2107, 2107, WIRE_ID_LEADS},
	    {1104, 1100, WIRE_KIND_CRC_OK, 271, 271, 2104, 2107, 2107, WIRE_ID_LEADS},
	    {1105, 1100, WIRE_KIND_CRC_RETRY, 271, 271, 2104, 2107, 2107, WIRE_ID_LEADS | WIRE_SILENT},
	    {1106, 1100, WIRE_KIND_CRC_ABORT, 271, 271, 2104, 2107, 2107, WIRE_ID_LEADS | WIRE_SILENT},
	};
	static const uint16_t unknown[] = {0, 1024, 1032, 1099, 1102, 1107, 2100, 2107, 0xffff};
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct wire_request_spec *rq = wire_find_request(want[i].code);

		ok(rq && rq->code == want[i].code && rq->set == want[i].set && rq->kind == want[i].kind &&
		       rq->min_payload == want[i].min && rq->max_payload == want[i].max &&
		       rq->success == want[i].success && rq->refusal == want[i].refusal &&
		       rq->format_error == want[i].format_error && rq->flags == want[i].flags,
		   "request table: %u (%s) is as the manual page says", want[i].code, wire_request_name(want[i].code));
		ok(wire_request_for(want[i].set, want[i].kind) == rq, "request table: %u is the %s request of set %u",
		   want[i].code, rq ? rq->name : "?", want[i].set);
	}
	for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		ok(wire_find_request(unknown[i]) == NULL &&
		       strcmp(wire_request_name(unknown[i]), "unknown request") == 0,
		   "request table: %u is no request", unknown[i]);
	ok(wire_request_for(1100, WIRE_KIND_RECONNECT) == NULL, "request table: the 1100 set has no reconnect");
	ok(wire_request_for(1026, WIRE_KIND_REGISTER) == NULL, "request table: 1026 is no code set");
	ok(strcmp(wire_request_name(1028), "send file") == 0 && strcmp(wire_request_name(1103), "send file") == 0,
	   "request names: 1028 and 1103 are both 'send file'");
	ok(wire_request_names_file(wire_find_request(1028)) && wire_request_names_file(wire_find_request(1106)) &&
	       !wire_request_names_file(wire_find_request(1026)) && !wire_request_names_file(wire_find_request(1100)),
	   "request table: files and verdicts name a file, registrations and keys do not");
}

static void test_response_table(void)
{
	static const struct {
		uint16_t code;
		const char *name;
		bool dump;
	} want[] = {
	    {2100, "registered", true},        {2101, "registration refused", true}, {2102, "AES key", false},
	    {2103, "file received", true},     {2104, "acknowledged", true},         {2105, "reconnected", false},
	    {2106, "reconnect refused", true}, {2107, "general error", true},
	};
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct wire_response_spec *rs = wire_find_response(want[i].code);

		ok(rs && strcmp(rs->name, want[i].name) == 0 &&
		       strcmp(wire_response_name(want[i].code), want[i].name) == 0 && rs->dump == want[i].dump,
		   "response table: %u is '%s', %s", want[i].code, want[i].name,
		   want[i].dump ? "dumped in debug mode" : "never dumped (it carries a key)");
	}
	ok(wire_find_response(2108) == NULL && strcmp(wire_response_name(2099), "unknown response") == 0,
	   "response table: 2099 and 2108 are no responses");
}

static void test_frames(void)
{
	struct wire_frame f = {0};

	ok(wire_frame_request(std, wire_find_request(1025), 255, &f) == 0 && f.body == 255 && f.content == 0,
	   "frame: a 1025 is its 255-byte body");
	ok(wire_frame_request(std, wire_find_request(1025), 254, &f) == -EMSGSIZE &&
	       wire_frame_request(std, wire_find_request(1025), 256, &f) == -EMSGSIZE,
	   "frame: a 1025 of 254 or 256 bytes is refused");
	ok(wire_frame_request(std, wire_find_request(1101), 415, &f) == 0 && f.body == 415 && f.content == 0,
	   "frame: a 1101 with a 160-byte key is read whole");
	ok(wire_frame_request(std, wire_find_request(1101), 255, &f) == -EMSGSIZE &&
	       wire_frame_request(std, wire_find_request(1101), 1280, &f) == -EMSGSIZE,
	   "frame: a 1101 without a key, or with a key field of 1025 bytes, is refused");
	ok(wire_frame_request(std, wire_find_request(1028), 259 + 32, &f) == 0 && f.body == 259 && f.content == 32,
	   "frame: a 1028 is 259 bytes of fixed fields, then the content");
	ok(wire_frame_request(std, wire_find_request(1103), 0xffffffff, &f) == 0 && f.body == 275 &&
	       f.content == 0xffffffffu - 275,
	   "frame: a 1103 is 275 bytes of fixed fields, then the content, up to the u32 limit");
	ok(wire_frame_request(std, wire_find_request(1103), 275 + 15, &f) == -EMSGSIZE,
	   "frame: a 1103 with less than a block of content is refused");
	ok(wire_frame_request(std, wire_find_request(1105), 271, &f) == 0 && f.body == 271 && f.content == 0,
	   "frame: a 1105 is its 271-byte body");
}

/* What the header and the body must agree on, with the body framed as the header says. */
static enum wire_body_error check_body(const struct wire_dialect *d, const struct wire_request_spec *rq,
                                       const struct wire_request_header *h, struct wire_request_body *b)
{
	struct wire_frame f;

	if (wire_frame_request(d, rq, h->payload_size, &f) < 0)
		return WIRE_BODY_SIZE_DIFFERS;
	return wire_check_request_body(d, rq, h, b, &f);
}

/* The request rq with body b, built: the header, then want_body (the fields the manual page lists). */
static void check_request(uint16_t code, const uint8_t *id, const struct wire_request_body *b, const uint8_t *want_body,
                          size_t want_len, uint32_t want_payload, const char *what)
{
	const struct wire_request_spec *rq = wire_find_request(code);
	struct wire_request_header h;
	struct wire_request_body back;
	uint8_t buf[WIRE_REQUEST_HEAD_MAX];
	size_t len = 0;
	int r = wire_build_request(std, rq, id, b, buf, sizeof(buf), &len);

	wire_parse_request_header(buf, &h);
	ok(r == 0 && len == 23 + want_len && h.code == code && h.version == WIRE_CLIENT_VERSION &&
	       h.payload_size == want_payload && memcmp(buf, id, 16) == 0 && memcmp(buf + 23, want_body, want_len) == 0,
	   "request %u: %s", code, what);
	ok(wire_parse_request_body(std, rq, buf + 23, want_len, &back) == 0 &&
	       back.name == buf + 23 + (want_len - 255 - b->key_len) && back.content_size == b->content_size &&
	       back.key_len == b->key_len && (b->key_len == 0 || memcmp(back.key, b->key, b->key_len) == 0) &&
	       ((rq->flags & WIRE_ID_LEADS) ? back.id == buf + 23 : back.id == NULL) &&
	       check_body(std, rq, &h, &back) == WIRE_BODY_OK,
	   "request %u: its body parses back to the same fields, which agree with the header", code);
}

static void test_request_bodies(void)
{
	static const uint8_t key[160] = {0x30, 0x81, 0x9d};
	uint8_t name[255] = "report.pdf", body[512], buf[WIRE_REQUEST_HEAD_MAX];
	struct wire_request_body b = {.name = name}, back;
	struct wire_request_header h;
	uint8_t other[16];
	size_t len;

	check_request(1025, alice, &b, name, 255, 255, "name[255], nothing else");
	check_request(1027, alice, &b, name, 255, 255, "name[255], nothing else");
	check_request(1030, alice, &b, name, 255, 255, "file_name[255], nothing else");
	memcpy(body, alice, 16);
	memcpy(body + 16, name, 255);
	check_request(1104, alice, &b, body, 271, 271, "client_id[16] (the header's), then file_name[255]");
	check_request(1106, alice, &b, body, 271, 271, "client_id[16] (the header's), then file_name[255]");

	b.key = key;
	b.key_len = sizeof(key);
	memcpy(body, name, 255);
	memcpy(body + 255, key, sizeof(key));
	check_request(1101, alice, &b, body, 255 + 160, 415, "name[255], then the key");
	b.key = NULL;
	b.key_len = 0;

	b.content_size = 0x1020;
	memcpy(body, "\x20\x10\x00\x00", 4);
	memcpy(body + 4, name, 255);
	check_request(1028, alice, &b, body, 259, 259 + 0x1020,
	              "content_size (u32), then file_name[255]; payload_size counts the content");
	memcpy(body, alice, 16);
	memcpy(body + 16, "\x20\x10\x00\x00", 4);
	memcpy(body + 20, name, 255);
	check_request(1103, alice, &b, body, 275, 275 + 0x1020,
	              "client_id[16], content_size (u32), then file_name[255]; payload_size counts the content");

	/* What the header and the body must agree on. */
	ok(wire_build_request(std, wire_find_request(1103), alice, &b, buf, sizeof(buf), &len) == 0,
	   "request 1103: built");
	wire_parse_request_header(buf, &h);
	memcpy(other, alice, 16);
	other[15] ^= 1;
	memcpy(h.client_id, other, 16);
	ok(wire_parse_request_body(std, wire_find_request(1103), buf + 23, 275, &back) == 0 &&
	       check_body(std, wire_find_request(1103), &h, &back) == WIRE_BODY_ID_DIFFERS,
	   "request 1103: a payload client_id that is not the header's is caught");
	memcpy(h.client_id, alice, 16);
	h.payload_size += 16;
	ok(check_body(std, wire_find_request(1103), &h, &back) == WIRE_BODY_SIZE_DIFFERS,
	   "request 1103: a content_size that is not what payload_size leaves is caught");
	h.payload_size = 275 + 0x1020;
	ok(check_body(std, wire_find_request(1103), &h, &back) == WIRE_BODY_OK, "request 1103: header and body agree");

	ok(wire_parse_request_body(std, wire_find_request(1025), body, 254, &back) == -EBADMSG &&
	       wire_parse_request_body(std, wire_find_request(1104), body, 255, &back) == -EBADMSG &&
	       wire_parse_request_body(std, wire_find_request(1026), body, 255, &back) == -EBADMSG &&
	       wire_parse_request_body(std, wire_find_request(1028), body, 260, &back) == -EBADMSG,
	   "request bodies: a length that does not fit the layout is refused");
	ok(wire_build_request(std, wire_find_request(1028), alice, &b, buf, 23 + 258, &len) == -EMSGSIZE &&
	       wire_build_request(std, wire_find_request(1025), alice, &(struct wire_request_body){0}, buf, sizeof(buf),
	                          &len) == -EINVAL,
	   "request bodies: a buffer too small, or a body without its name, is refused");
	b.content_size = 0xffffffff - 259 + 1;
	ok(wire_build_request(std, wire_find_request(1028), alice, &b, buf, sizeof(buf), &len) == -EMSGSIZE,
	   "request bodies: content that would overflow payload_size is refused");
	ok(wire_build_request(std, wire_find_request(1025), NULL, &(struct wire_request_body){.name = name}, buf,
	                      sizeof(buf), &len) == 0 &&
	       memcmp(buf, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16) == 0,
	   "request bodies: without an id the header's is all zero");

	/* The dump column shows the fixed fields and nothing after them. */
	ok(wire_find_request(1026)->dump == 255 && wire_find_request(1028)->dump == 259 &&
	       wire_find_request(1103)->dump == 275 && wire_find_request(1105)->dump == 271,
	   "request table: a dump shows the name of a key request and the fixed fields of a file");
}

static void check_response(uint16_t code, const struct wire_response_body *b, const uint8_t *want, size_t want_len,
                           const char *what)
{
	uint8_t buf[WIRE_RESPONSE_HEADER_MAX + WIRE_RESPONSE_PAYLOAD_MAX];
	struct wire_response_header h;
	struct wire_response_body back;
	size_t len = 0;
	int r = wire_build_response(std, code, b, buf, sizeof(buf), &len);

	wire_parse_response_header(std, buf, &h);
	ok(r == 0 && len == 7 + want_len && h.version == 3 && h.code == code && h.payload_size == want_len &&
	       memcmp(buf + 7, want, want_len) == 0,
	   "response %u: %s", code, what);
	ok(wire_parse_response_body(std, code, buf + 7, want_len, &back) == 0 &&
	       (b && b->id && want_len >= 16 ? back.id && memcmp(back.id, b->id, 16) == 0 : back.id == NULL) &&
	       back.key_len == (b ? b->key_len : 0) && (!back.key || memcmp(back.key, b->key, back.key_len) == 0),
	   "response %u: parses back", code);
}

static void test_response_bodies(void)
{
	uint8_t name[255] = "C:\\Users\\al\\photo.jpg\0junk after the NUL", key[128], want[512];
	struct wire_response_body b = {.id = alice}, back;
	uint8_t buf[WIRE_RESPONSE_HEADER_MAX + WIRE_RESPONSE_PAYLOAD_MAX];
	size_t len;

	memset(key, 0xa5, sizeof(key));
	check_response(2100, &b, alice, 16, "client_id[16]");
	check_response(2106, &b, alice, 16, "client_id[16]");
	check_response(2104, &b, alice, 16, "client_id[16] when there is one (1025 set)");
	check_response(2104, NULL, (const uint8_t *)"", 0, "nothing when there is no id (1100 set)");
	check_response(2101, NULL, (const uint8_t *)"", 0, "no payload");
	check_response(2107, &b, (const uint8_t *)"", 0, "no payload, whatever the fields given");
	b.key = key;
	b.key_len = sizeof(key);
	memcpy(want, alice, 16);
	memcpy(want + 16, key, sizeof(key));
	check_response(2102, &b, want, 144, "client_id[16], then encrypted_aes_key[M]");
	check_response(2105, &b, want, 144, "client_id[16], then encrypted_aes_key[M]");

	b = (struct wire_response_body){.id = alice, .content_size = 0x1020, .name = name, .checksum = 930766865};
	memcpy(want, alice, 16);
	memcpy(want + 16, "\x20\x10\x00\x00", 4);
	memcpy(want + 20, name, 255);
	memcpy(want + 275, "\x11\x60\x7a\x37", 4);
	check_response(2103, &b, want, 279,
	               "client_id[16], content_size, file_name[255] byte for byte, checksum (u32): 279 bytes");
	ok(wire_parse_response_body(std, 2103, want, 279, &back) == 0 && back.content_size == 0x1020 &&
	       back.name == want + 20 && back.checksum == 930766865,
	   "response 2103: content_size, the name field and the checksum parse back");

	ok(wire_parse_response_body(std, 2103, want, 278, &back) == -EBADMSG &&
	       wire_parse_response_body(std, 2103, want, 280, &back) == -EBADMSG,
	   "response 2103: 278 or 280 bytes are refused");
	ok(wire_parse_response_body(std, 2104, want, 5, &back) == -EBADMSG,
	   "response 2104: 5 bytes are neither an id nor nothing");
	ok(wire_parse_response_body(std, 2102, want, 16, &back) == -EBADMSG &&
	       wire_parse_response_body(std, 2102, want, 16 + WIRE_ENCRYPTED_KEY_MAX + 1, &back) == -EBADMSG,
	   "response 2102: an empty key or one above 4096 bits is refused");
	ok(wire_parse_response_body(std, 2100, want, 17, &back) == -EBADMSG &&
	       wire_parse_response_body(std, 2107, want, 1, &back) == -EBADMSG,
	   "responses: 2100 is 16 bytes, 2107 none");
	ok(wire_parse_response_body(std, 2108, want, 0, &back) == -EINVAL, "responses: 2108 is unknown");

	ok(wire_build_response(std, 2100, NULL, buf, sizeof(buf), &len) == -EINVAL &&
	       wire_build_response(std, 2103, &(struct wire_response_body){.id = alice}, buf, sizeof(buf), &len) ==
	           -EINVAL &&
	       wire_build_response(std, 2102, &(struct wire_response_body){.id = alice}, buf, sizeof(buf), &len) ==
	           -EINVAL,
	   "responses: a field the code needs and lacks is refused");
	ok(wire_build_response(std, 2099, NULL, buf, sizeof(buf), &len) == -EINVAL, "responses: 2099 is not built");
	ok(wire_build_response(std, 2103, &b, buf, 7 + 278, &len) == -EMSGSIZE,
	   "responses: a buffer too small is refused");
}

static void test_sizes(void)
{
	is_int(wire_content_size(0), 16, "content_size: an empty file is one block of padding");
	is_int(wire_content_size(15), 16, "content_size: 15 bytes take one block");
	is_int(wire_content_size(16), 32, "content_size: 16 bytes take two (PKCS#7 always pads)");
	is_int(wire_max_plaintext(std, wire_find_request(1028)), 4294967023,
	       "largest plaintext of a 1028: its content fills the u32 payload_size with its 259 fixed bytes");
	is_int(wire_max_plaintext(std, wire_find_request(1103)), 4294967007,
	       "largest plaintext of a 1103: its content fills the u32 payload_size with its 275 fixed bytes");
	ok(wire_content_size(4294967007) + 275 <= 0xffffffff && wire_content_size(4294967008) + 275 > 0xffffffff,
	   "largest plaintext of a 1103: one byte more would not fit");
	ok(strcmp(wire_dialect_name(std), "standard") == 0, "the standard dialect is called so");
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
	ok(wire_id_from_hex("0123456789ab4def80112233445566FF", back) == 0 && memcmp(back, id, 16) == 0,
	   "hex to id: plain digits in mixed case accepted");
	ok(wire_id_from_hex("01-23456789ab4def80112233445566ff", back) == -EINVAL,
	   "hex to id: a dash between bytes outside the 8-4-4-4-12 places refused");
	ok(wire_id_from_hex("01234567-89ab4def80112233445566ff", back) == -EINVAL,
	   "hex to id: only some of the dashes of 8-4-4-4-12 refused");
	ok(wire_id_from_hex("01234567-89ab-4def-8011-2233445566ff-", back) == -EINVAL,
	   "hex to id: a trailing dash refused");
	ok(wire_id_from_hex("0123456789ab-4def-8011-2233-445566ff", back) == -EINVAL,
	   "hex to id: four dashes in other places refused");
	ok(wire_id_from_hex("01234567-89ab-4def-8011-2233445566f-", back) == -EINVAL,
	   "hex to id: a dash in place of a digit refused");
	ok(wire_id_from_hex("{01234567-89ab-4def-8011-2233445566ff}", back) == -EINVAL, "hex to id: braces refused");
	ok(wire_id_from_hex(" 0123456789ab4def80112233445566ff", back) == -EINVAL, "hex to id: a space refused");
}

/* A name shaped like an id is valid but refused to a new client (efserver-protocol(7), Names). */
static void test_new_client_name(void)
{
	static const struct {
		const char *name;
		enum wire_name_error want;
	} cases[] = {
	    {"0123456789ab4def80112233445566ff", WIRE_NAME_LIKE_ID},
	    {"0123456789AB4DEF80112233445566FF", WIRE_NAME_LIKE_ID},
	    {"01234567-89ab-4def-8011-2233445566ff", WIRE_NAME_LIKE_ID},
	    {"01234567-89AB-4dEf-8011-2233445566Ff", WIRE_NAME_LIKE_ID},
	    {"00000000000000000000000000000000", WIRE_NAME_LIKE_ID},
	    {"0123456789ab4def80112233445566f", WIRE_NAME_OK},
	    {"0123456789ab4def80112233445566fff", WIRE_NAME_OK},
	    {"0123456789ab4def80112233445566fg", WIRE_NAME_OK},
	    {"01-23456789ab4def80112233445566ff", WIRE_NAME_OK},
	    {"{01234567-89ab-4def-8011-2233445566ff}", WIRE_NAME_OK},
	    {"0123456789ab4def80112233445566ff ", WIRE_NAME_OK},
	    {"alice", WIRE_NAME_OK},
	    {"caf\xc3\xa9", WIRE_NAME_OK},
	    {"bad\xff", WIRE_NAME_NOT_UTF8},
	    {"", WIRE_NAME_EMPTY},
	};
	uint8_t field[WIRE_NAME_SIZE];
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(field, 0, sizeof(field));
		memcpy(field, cases[i].name, strlen(cases[i].name));
		len = 0;
		is_int(wire_check_new_client_name(field, &len), cases[i].want, "new client name '%s': %s",
		       cases[i].name, wire_name_error_str(cases[i].want));
		if (cases[i].want == WIRE_NAME_OK || cases[i].want == WIRE_NAME_LIKE_ID)
			is_int(len, strlen(cases[i].name), "new client name '%s': its length is given", cases[i].name);
	}
}

/* The seed-004 dialect, from the bytes of the real capture in tests/data/seed004-client. */
static void test_seed004(void)
{
	static const uint8_t james[16] = {0x8b, 0xeb, 0xa2, 0x28, 0x22, 0x6e, 0x41, 0x11,
	                                  0xab, 0x6c, 0xd0, 0x8e, 0x3c, 0x8f, 0x10, 0x42};
	static const uint8_t key[160] = {0x30, 0x81, 0x9d};
	const struct wire_dialect *s4 = &wire_seed004;
	uint8_t name[255] = "James Brice", file[255] = "1KB.txt", buf[WIRE_REQUEST_HEAD_MAX], want[300];
	uint8_t resp[WIRE_RESPONSE_HEADER_MAX + WIRE_RESPONSE_PAYLOAD_MAX];
	struct wire_request_body b = {.name = name}, back;
	struct wire_response_body rb;
	struct wire_request_header h = {.code = 1100, .payload_size = 11};
	struct wire_response_header rh;
	struct wire_frame f;
	size_t len;

	ok(strcmp(wire_dialect_name(s4), "seed004") == 0 && wire_response_header_size(s4) == 8,
	   "seed004: its responses have 8-byte headers");
	ok(wire_dialect_opens(s4, &h) && wire_dialect_opens(std, &h), "seed004: a 1100 of 11 bytes may open it");
	h.payload_size = 255;
	ok(!wire_dialect_opens(s4, &h), "seed004: a 1100 of 255 bytes does not");
	h.payload_size = 0;
	ok(!wire_dialect_opens(s4, &h), "seed004: nor one of 0 bytes");
	h = (struct wire_request_header){.code = 1025, .payload_size = 11};
	ok(!wire_dialect_opens(s4, &h), "seed004: nor a 1025");
	ok(wire_dialect_checksum(s4, CKSUM_POSIX) == CKSUM_CRC32 &&
	       wire_dialect_checksum(std, CKSUM_POSIX) == CKSUM_POSIX && wire_dialect_aes_key_len(s4, 32) == 16 &&
	       wire_dialect_aes_key_len(std, 32) == 32,
	   "seed004: crc32 and 128-bit keys whatever the server's settings");
	ok(!wire_dialect_answers(s4, wire_find_request(1105)) && !wire_dialect_answers(s4, wire_find_request(1106)) &&
	       wire_dialect_answers(s4, wire_find_request(1104)) && wire_dialect_answers(std, wire_find_request(1105)),
	   "seed004: nothing ever answers 1105 and 1106");
	ok(wire_dialect_frames_by_read(s4) && !wire_dialect_frames_by_read(std),
	   "seed004: its server frames requests by what one read returns");

	/* Requests as the capture has them. */
	ok(wire_build_request(s4, wire_find_request(1100), NULL, &b, buf, sizeof(buf), &len) == 0 && len == 278 &&
	       wire_get_u32(buf + 19) == 11 && memcmp(buf + 23, name, 255) == 0,
	   "seed004: 1100 is the whole 255-byte field, payload_size the name's 11 bytes");
	ok(wire_frame_request(s4, wire_find_request(1100), 11, &f) == 0 && f.body == 255 && f.content == 0 &&
	       !f.sized_by_body,
	   "seed004: 1100 is framed as its 255-byte field whatever payload_size says");
	ok(wire_frame_request(s4, wire_find_request(1100), 0, &f) == -EMSGSIZE &&
	       wire_frame_request(s4, wire_find_request(1100), 255, &f) == -EMSGSIZE,
	   "seed004: a 1100 of 0 or 255 is refused");
	h = (struct wire_request_header){.code = 1100, .payload_size = 11};
	wire_frame_request(s4, wire_find_request(1100), 11, &f);
	ok(wire_parse_request_body(s4, wire_find_request(1100), buf + 23, 255, &back) == 0 &&
	       wire_check_request_body(s4, wire_find_request(1100), &h, &back, &f) == WIRE_BODY_OK,
	   "seed004: its payload_size agrees with the name");
	h.payload_size = 10;
	ok(wire_check_request_body(s4, wire_find_request(1100), &h, &back, &f) == WIRE_BODY_NAME_COUNT,
	   "seed004: a payload_size that is not the name's length is caught");

	b.key = key;
	b.key_len = sizeof(key);
	ok(wire_build_request(s4, wire_find_request(1101), james, &b, buf, sizeof(buf), &len) == 0 && len == 438 &&
	       wire_get_u32(buf + 19) == 171,
	   "seed004: 1101 has payload_size 11 + 160, then the field and the key: 438 bytes");
	h = (struct wire_request_header){.code = 1101, .payload_size = 171};
	ok(wire_frame_request(s4, wire_find_request(1101), 171, &f) == 0 && f.body == 415 &&
	       wire_parse_request_body(s4, wire_find_request(1101), buf + 23, 415, &back) == 0 && back.key_len == 160 &&
	       wire_check_request_body(s4, wire_find_request(1101), &h, &back, &f) == WIRE_BODY_OK,
	   "seed004: 1101 is framed as the field and a 160-byte key, and agrees with its header");
	b.key_len = 162;
	ok(wire_build_request(s4, wire_find_request(1101), james, &b, buf, sizeof(buf), &len) == -EMSGSIZE &&
	       wire_dialect_key_field(s4) == 160 && wire_dialect_key_field(std) == 0,
	   "seed004: its 1101 carries a 160-byte key, no other");
	ok(wire_frame_request(s4, wire_find_request(1101), 160, &f) == -EMSGSIZE &&
	       wire_frame_request(s4, wire_find_request(1101), 415, &f) == -EMSGSIZE,
	   "seed004: a 1101 of 160 or 415 is refused");

	b = (struct wire_request_body){.name = file, .content_size = 112};
	ok(wire_build_request(s4, wire_find_request(1103), james, &b, buf, sizeof(buf), &len) == 0 && len == 298 &&
	       wire_get_u32(buf + 19) == 139 && memcmp(buf + 23, james, 16) == 0 && wire_get_u32(buf + 39) == 112 &&
	       strcmp((const char *)buf + 43, "1KB.txt.enc") == 0,
	   "seed004: 1103 of 1KB.txt has the name 1KB.txt.enc and payload_size 16 + 112 + 11: 298 bytes of fixed part");
	h = (struct wire_request_header){.code = 1103, .payload_size = 139};
	memcpy(h.client_id, james, 16);
	ok(wire_frame_request(s4, wire_find_request(1103), 139, &f) == 0 && f.body == 275 && f.sized_by_body &&
	       wire_parse_request_body(s4, wire_find_request(1103), buf + 23, 275, &back) == 0 &&
	       wire_check_request_body(s4, wire_find_request(1103), &h, &back, &f) == WIRE_BODY_OK &&
	       f.content == 112 && strcmp((const char *)back.name, "1KB.txt") == 0 && back.name == back.field,
	   "seed004: its 1103 reads 112 bytes of content, and the name without .enc");
	h.payload_size = 140;
	wire_parse_request_body(s4, wire_find_request(1103), buf + 23, 275, &back);
	ok(wire_check_request_body(s4, wire_find_request(1103), &h, &back, &f) == WIRE_BODY_NAME_COUNT,
	   "seed004: a 1103 whose payload_size is off by one is caught");
	memset(file, 'a', 250);
	ok(wire_build_request(s4, wire_find_request(1103), james, &b, buf, sizeof(buf), &len) == 0 &&
	       wire_file_name_max(s4, wire_find_request(1103)) == 250,
	   "seed004: a 250-byte file name still fits with .enc");
	file[250] = 'a';
	ok(wire_build_request(s4, wire_find_request(1103), james, &b, buf, sizeof(buf), &len) == -EMSGSIZE &&
	       wire_file_name_max(std, wire_find_request(1103)) == 254,
	   "seed004: a 251-byte one does not");
	memset(file, 0, sizeof(file));
	memcpy(file, "1KB.txt", 7);
	ok(wire_build_request(s4, wire_find_request(1104), james, &b, buf, sizeof(buf), &len) == 0 && len == 294 &&
	       wire_get_u32(buf + 19) == 271 && strcmp((const char *)buf + 39, "1KB.txt") == 0,
	   "seed004: 1104 is as documented, 294 bytes, the name without .enc");

	/* Responses. */
	rb = (struct wire_response_body){.id = james};
	ok(wire_build_response(s4, 2100, &rb, resp, sizeof(resp), &len) == 0 && len == 24 &&
	       memcmp(resp, "\x03\x00\x34\x08\x10\x00\x00\x00", 8) == 0 && memcmp(resp + 8, james, 16) == 0,
	   "seed004: 2100 is 03 00 34 08 10 00 00 00 and the id");
	rb = (struct wire_response_body){.id = james, .content_size = 112, .name = file, .checksum = 2814591149u};
	memcpy(want, james, 16);
	memcpy(want + 16, "\x70\x00\x00\x00", 4);
	memcpy(want + 20, file, 255);
	memcpy(want + 275, "2814591149", 10);
	ok(wire_build_response(s4, 2103, &rb, resp, sizeof(resp), &len) == 0 && len == 8 + 285 &&
	       wire_get_u32(resp + 4) == 285 && memcmp(resp + 8, want, 285) == 0,
	   "seed004: 2103 carries the checksum as the ASCII digits \"2814591149\": 285 bytes of payload");
	rb.checksum = 7;
	ok(wire_build_response(s4, 2103, &rb, resp, sizeof(resp), &len) == 0 &&
	       memcmp(resp + 8 + 275, "7\0\0\0\0\0\0\0\0\0", 10) == 0,
	   "seed004: a short checksum is NUL-padded to 10 bytes");
	wire_parse_response_header(s4, (const uint8_t *)"\x03\x00\x37\x08\x1a\x01\x00\x00", &rh);
	ok(rh.version == 3 && rh.code == 2103 && rh.payload_size == 282, "seed004: an 8-byte header parses");
	ok(wire_parse_response_body(s4, 2103, want, 285, &rb) == 0 && rb.checksum == 2814591149u &&
	       rb.content_size == 112 && rb.name == want + 20,
	   "seed004: a 2103 with 10 digits parses");
	memcpy(want + 275, "123", 3);
	ok(wire_parse_response_body(s4, 2103, want, 278, &rb) == 0 && rb.checksum == 123,
	   "seed004: a 2103 with just the digits, as its server sends them, parses");
	memcpy(want + 275, "4294967295", 10);
	ok(wire_parse_response_body(s4, 2103, want, 285, &rb) == 0 && rb.checksum == 4294967295u,
	   "seed004: the largest checksum parses");
	memcpy(want + 275, "4294967296", 10);
	ok(wire_parse_response_body(s4, 2103, want, 285, &rb) == -EBADMSG, "seed004: one more is refused");
	memcpy(want + 275,
	       "12\0"
	       "3\0\0\0\0\0\0",
	       10);
	ok(wire_parse_response_body(s4, 2103, want, 285, &rb) == -EBADMSG,
	   "seed004: a digit after the NUL padding is refused");
	memcpy(want + 275, "\0\0\0\0\0\0\0\0\0\0", 10);
	ok(wire_parse_response_body(s4, 2103, want, 285, &rb) == -EBADMSG &&
	       wire_parse_response_body(s4, 2103, want, 275, &rb) == -EBADMSG &&
	       wire_parse_response_body(s4, 2103, want, 286, &rb) == -EBADMSG,
	   "seed004: no digit at all, no checksum field, or 11 bytes of it, are refused");
}

/* The tolerances of --compat (efserver-protocol(7), "Dialects and tolerances"). */
static void test_tolerances(void)
{
	const struct wire_dialect *ca = wire_dialect_tolerant(std, WIRE_TOLERATE_CONTENT_AFTER);
	const struct wire_dialect *sn = wire_dialect_tolerant(std, WIRE_TOLERATE_SHORT_NAME);
	uint8_t body[300] = "carol";
	struct wire_request_header h = {.code = 1025, .payload_size = 5};
	struct wire_request_body b;
	struct wire_frame f;

	ok(ca && sn && wire_dialect_tolerances(ca) == WIRE_TOLERATE_CONTENT_AFTER &&
	       wire_dialect_tolerances(sn) == WIRE_TOLERATE_SHORT_NAME && wire_dialect_tolerant(std, 0) == std &&
	       wire_dialect_tolerant(ca, 0) == std && wire_response_header_size(ca) == 7,
	   "tolerances: the standard dialect with each of them, and without");
	ok(wire_dialect_tolerant(&wire_seed004, WIRE_TOLERATE_SHORT_NAME) == NULL &&
	       wire_dialect_tolerant(&wire_seed004, WIRE_TOLERATE_CONTENT_AFTER) != NULL,
	   "tolerances: seed004 combines with content-after, not with short-name");

	ok(wire_frame_request(std, wire_find_request(1028), 259, &f) == -EMSGSIZE &&
	       wire_frame_request(ca, wire_find_request(1028), 259, &f) == 0 && f.body == 259 && f.sized_by_body &&
	       f.tolerated == WIRE_TOLERATE_CONTENT_AFTER,
	   "content-after: a 1028 of 259 bytes is its fixed fields, the content sized by content_size");
	ok(wire_frame_request(ca, wire_find_request(1103), 275, &f) == 0 && f.body == 275 && f.sized_by_body &&
	       wire_frame_request(ca, wire_find_request(1103), 274, &f) == -EMSGSIZE &&
	       wire_frame_request(ca, wire_find_request(1028), 260, &f) == -EMSGSIZE,
	   "content-after: a 1103 of 275 too, and nothing else the strict frame refuses");
	ok(wire_frame_request(ca, wire_find_request(1028), 259 + 32, &f) == 0 && !f.sized_by_body && !f.tolerated &&
	       f.content == 32,
	   "content-after: a valid 1028 is framed as ever");
	memset(body, 0, sizeof(body));
	wire_put_u32(body, 4096);
	h = (struct wire_request_header){.code = 1028, .payload_size = 259};
	wire_frame_request(ca, wire_find_request(1028), 259, &f);
	ok(wire_parse_request_body(ca, wire_find_request(1028), body, 259, &b) == 0 &&
	       wire_check_request_body(ca, wire_find_request(1028), &h, &b, &f) == WIRE_BODY_OK && f.content == 4096,
	   "content-after: the content is content_size bytes");
	ok(wire_content_size_lead(wire_find_request(1028)) == 4 &&
	       wire_content_size_lead(wire_find_request(1103)) == 20 &&
	       wire_content_size_lead(wire_find_request(1025)) == 0 &&
	       wire_get_content_size(wire_find_request(1028), body) == 4096,
	   "content_size: where it is in the fixed fields");

	memset(body, 0, sizeof(body));
	memcpy(body, "carol", 5);
	h = (struct wire_request_header){.code = 1025, .payload_size = 5};
	ok(wire_frame_request(std, wire_find_request(1025), 5, &f) == -EMSGSIZE &&
	       wire_frame_request(sn, wire_find_request(1025), 5, &f) == 0 && f.body == 5 &&
	       f.tolerated == WIRE_TOLERATE_SHORT_NAME,
	   "short-name: a 1025 of 5 bytes is 5 bytes of name");
	body[5] = 'x';
	ok(wire_parse_request_body(sn, wire_find_request(1025), body, 5, &b) == 0 && b.name == b.field &&
	       strcmp((const char *)b.name, "carol") == 0 &&
	       wire_check_request_body(sn, wire_find_request(1025), &h, &b, &f) == WIRE_BODY_OK,
	   "short-name: they are the name field, NUL-padded");
	memcpy(body, "ca\0ol", 5);
	ok(wire_parse_request_body(sn, wire_find_request(1025), body, 5, &b) == 0 &&
	       wire_check_request_body(sn, wire_find_request(1025), &h, &b, &f) == WIRE_BODY_NAME_NUL,
	   "short-name: a NUL among them is caught");
	ok(wire_frame_request(sn, wire_find_request(1100), 254, &f) == 0 && f.body == 254 &&
	       wire_frame_request(sn, wire_find_request(1100), 0, &f) == -EMSGSIZE &&
	       wire_frame_request(sn, wire_find_request(1027), 5, &f) == -EMSGSIZE,
	   "short-name: in 1100 too, never empty, and not in a reconnect");
}

int main(void)
{
	test_headers();
	test_request_table();
	test_response_table();
	test_frames();
	test_request_bodies();
	test_response_bodies();
	test_sizes();
	test_names();
	test_base_names();
	test_ids();
	test_new_client_name();
	test_seed004();
	test_tolerances();
	return tap_done();
}
