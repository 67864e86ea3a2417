/*
 * libFuzzer harness for the wire codec (efserver-protocol(7), "Framing",
 * "Requests", "Responses", "Names" and "Dialects and tolerances"), from
 * arbitrary bytes: a request header and the body that follows it as every
 * request code would frame it in every dialect, the same bytes as the
 * payload of every response in both layouts, a name[255] field
 * checked both as a client name and as a file name, its base name, and a
 * client id in hex. Whatever the codec accepts must satisfy the rules it
 * claims to enforce, and build back to the bytes it came from.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as the wire would present it: short inputs are zero-extended. */
static void take(const uint8_t *data, size_t size, size_t off, uint8_t *out, size_t len)
{
	memset(out, 0, len);
	if (off < size)
		memcpy(out, data + off, size - off < len ? size - off : len);
}

static void check_name(const uint8_t field[WIRE_NAME_SIZE], bool utf8)
{
	char name[WIRE_NAME_SIZE], esc[4 * WIRE_NAME_SIZE + 8];
	const char *base;
	size_t len, base_len, i;

	if (wire_check_name(field, utf8, &len) != WIRE_NAME_OK)
		return;
	/* Section 8: 1-254 bytes before the NUL, none of them a control byte. */
	if (len < 1 || len > WIRE_NAME_MAX || field[len] != 0)
		abort();
	for (i = 0; i < len; i++)
		if (field[i] < 0x20 || field[i] == 0x7f)
			abort();
	memcpy(name, field, len);
	name[len] = '\0';
	(void)log_escape(name, len, esc, sizeof(esc));
	if (wire_base_name(name, len, &base, &base_len) < 0)
		return;
	/* Section 6: one path component inside the client's directory, never "." or "..". */
	if (base < name || base + base_len != name + len || base_len == 0 || memchr(base, '/', base_len) ||
	    memchr(base, '\\', base_len) || (base_len == 1 && base[0] == '.') ||
	    (base_len == 2 && base[0] == '.' && base[1] == '.'))
		abort();
}

/* Every dialect the codec hands out: strict, with the tolerances, and seed-004. */
static const struct wire_dialect *dialect(unsigned i)
{
	switch (i) {
	case 0:
		return &wire_standard;
	case 1:
		return wire_dialect_tolerant(&wire_standard, WIRE_TOLERATE_CONTENT_AFTER | WIRE_TOLERATE_SHORT_NAME);
	case 2:
		return wire_dialect_tolerant(&wire_seed004, WIRE_TOLERATE_CONTENT_AFTER);
	default:
		return NULL;
	}
}

/*
 * The input as a request of each code, in each dialect: a body the frame
 * says is there must split into fields inside it. Read as the standard
 * layout (no tolerance used), it builds back to the same body (with the
 * payload's own id where it leads); a body that agrees with its header
 * builds back to the same header too, but for the version (a client sends
 * its own) and the code (every code is tried). A seed-004 1103 whose ".enc"
 * was removed builds back, ".enc" and all, to the same bytes.
 */
static void check_requests(const uint8_t *data, size_t size, const struct wire_request_header *h)
{
	const uint8_t *body = data + WIRE_REQUEST_HEADER_SIZE;
	uint8_t again[WIRE_REQUEST_HEAD_MAX];
	const struct wire_request_spec *rq;
	const struct wire_dialect *d;
	struct wire_request_body b;
	struct wire_frame f;
	const uint8_t *sent;
	size_t len;
	unsigned code, i;
	bool plain;
	int r;

	for (i = 0; (d = dialect(i)); i++) {
		for (code = REQ_REGISTER; code <= REQ_CRC_ABORT_1100; code++) {
			if (!(rq = wire_find_request((uint16_t)code)) ||
			    wire_frame_request(d, rq, h->payload_size, &f) < 0)
				continue;
			/* The standard layout reads exactly payload_size bytes; the seed-004 one its fixed fields. */
			if (f.body > WIRE_REQUEST_HEAD_MAX || (f.tolerated & ~wire_dialect_tolerances(d)) ||
			    (d != dialect(2) && !f.sized_by_body && (uint64_t)f.body + f.content != h->payload_size))
				abort();
			plain = !f.tolerated && d != dialect(2);
			if (size - WIRE_REQUEST_HEADER_SIZE < f.body)
				continue;
			if (wire_parse_request_body(d, rq, body, f.body, &b) < 0)
				abort();
			if (b.name != b.field && (b.name < body || b.name + WIRE_NAME_SIZE + b.key_len > body + f.body))
				abort();
			sent = b.name;
			r = wire_build_request(d, rq, b.id ? b.id : h->client_id, &b, again, sizeof(again), &len);
			/* Only a content_size that leaves no room for the fixed fields in payload_size cannot be built. */
			if (plain &&
			    (r < 0 ? rq->kind != WIRE_KIND_FILE || (uint64_t)b.content_size + f.body <= UINT32_MAX
			           : len != WIRE_REQUEST_HEADER_SIZE + f.body ||
			                 memcmp(again + WIRE_REQUEST_HEADER_SIZE, body, f.body) != 0))
				abort();
			if (wire_check_request_body(d, rq, h, &b, &f) != WIRE_BODY_OK)
				continue;
			if (f.sized_by_body && f.content != b.content_size)
				abort();
			if (plain && (r < 0 || memcmp(again, data, 16) != 0 || wire_get_u16(again + 17) != code ||
			              memcmp(again + 19, data + 19, 4) != 0))
				abort();
			if (b.name != sent && (wire_build_request(d, rq, b.id ? b.id : h->client_id, &b, again,
			                                          sizeof(again), &len) < 0 ||
			                       len != WIRE_REQUEST_HEADER_SIZE + f.body ||
			                       memcmp(again + WIRE_REQUEST_HEADER_SIZE, body, f.body) != 0 ||
			                       wire_get_u32(again + 19) != h->payload_size))
				abort();
		}
	}
}

/*
 * The input after a response header as the payload of each response: what
 * parses in the standard dialect builds back to it; what parses in the
 * seed-004 one builds to a response that parses to the same fields.
 */
static void check_responses(const uint8_t *data, size_t size)
{
	static const uint16_t codes[] = {
	    RESP_REGISTERED, RESP_REGISTER_REFUSED, RESP_AES_KEY,           RESP_FILE_RECEIVED,
	    RESP_ACK,        RESP_RECONNECTED,      RESP_RECONNECT_REFUSED, RESP_ERROR};
	const struct wire_dialect *const dialects[] = {&wire_standard, &wire_seed004};
	uint8_t again[WIRE_RESPONSE_HEADER_MAX + WIRE_RESPONSE_PAYLOAD_MAX];
	struct wire_response_header rh;
	struct wire_response_body b, b2;
	const struct wire_dialect *d;
	size_t head, len, i, k;

	for (k = 0; k < 2; k++) {
		d = dialects[k];
		head = wire_response_header_size(d);
		if (size < head)
			continue;
		for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
			if (wire_parse_response_body(d, codes[i], data + head, size - head, &b) < 0)
				continue;
			if (size - head > WIRE_RESPONSE_PAYLOAD_MAX ||
			    wire_build_response(d, codes[i], &b, again, sizeof(again), &len) < 0 ||
			    (d == &wire_standard &&
			     (len != size || memcmp(again + head, data + head, size - head) != 0)))
				abort();
			wire_parse_response_header(d, again, &rh);
			if (rh.code != codes[i] || rh.payload_size != len - head || rh.version != WIRE_SERVER_VERSION ||
			    wire_parse_response_body(d, codes[i], again + head, len - head, &b2) < 0 ||
			    b2.checksum != b.checksum || b2.content_size != b.content_size || b2.key_len != b.key_len ||
			    !b2.id != !b.id)
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t hdr[WIRE_REQUEST_HEADER_SIZE], again[WIRE_REQUEST_HEADER_SIZE], field[WIRE_NAME_SIZE];
	uint8_t id[WIRE_ID_SIZE], id2[WIRE_ID_SIZE];
	char hex[WIRE_ID_HEX_SIZE], text[80];
	struct wire_request_header h;
	struct wire_response_header rh;
	size_t n;

	take(data, size, 0, hdr, sizeof(hdr));
	wire_parse_request_header(hdr, &h);
	wire_build_request_header(again, &h);
	if (memcmp(hdr, again, sizeof(hdr)) != 0)
		abort();
	(void)wire_request_name(h.code);
	wire_parse_response_header(&wire_standard, hdr, &rh);
	(void)wire_response_name(rh.code);
	wire_parse_response_header(&wire_seed004, hdr, &rh);
	if (size >= WIRE_REQUEST_HEADER_SIZE)
		check_requests(data, size, &h);
	check_responses(data, size);

	take(data, size, WIRE_REQUEST_HEADER_SIZE, field, sizeof(field));
	check_name(field, true);
	check_name(field, false);

	/* Whatever follows the name field, as a NUL-terminated string, is a client id in hex. */
	n = size > WIRE_REQUEST_HEADER_SIZE + WIRE_NAME_SIZE ? size - WIRE_REQUEST_HEADER_SIZE - WIRE_NAME_SIZE : 0;
	n = n < sizeof(text) - 1 ? n : sizeof(text) - 1;
	memcpy(text, data + size - n, n);
	text[n] = '\0';
	if (wire_id_from_hex(text, id) == 0) {
		wire_id_to_hex(id, hex);
		if (wire_id_from_hex(hex, id2) != 0 || memcmp(id, id2, sizeof(id)) != 0)
			abort();
	}
	return 0;
}
