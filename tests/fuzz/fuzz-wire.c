/*
 * libFuzzer harness for the wire codec (efserver-protocol(7), "Framing",
 * "Requests", "Responses" and "Names"), from arbitrary bytes: a request
 * header and the body that follows it as every request code would frame
 * it, the same bytes as the payload of every response, a name[255] field
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

/*
 * The input as a request of each code: a body the frame says is there must
 * split into fields inside it, which build back to the same body (with the
 * payload's own id where it leads); a body that agrees with its header
 * builds back to the same header too, but for the version (a client sends
 * its own) and the code (every code is tried).
 */
static void check_requests(const uint8_t *data, size_t size, const struct wire_request_header *h)
{
	const struct wire_dialect *d = &wire_standard;
	const uint8_t *body = data + WIRE_REQUEST_HEADER_SIZE;
	uint8_t again[WIRE_REQUEST_HEAD_MAX];
	const struct wire_request_spec *rq;
	struct wire_request_body b;
	struct wire_frame f;
	size_t len;
	unsigned code;
	int r;

	for (code = REQ_REGISTER; code <= REQ_CRC_ABORT_1100; code++) {
		if (!(rq = wire_find_request((uint16_t)code)) || wire_frame_request(d, rq, h->payload_size, &f) < 0)
			continue;
		if ((uint64_t)f.body + f.content != h->payload_size || f.body > WIRE_REQUEST_HEAD_MAX)
			abort();
		if (size - WIRE_REQUEST_HEADER_SIZE < f.body)
			continue;
		if (wire_parse_request_body(d, rq, body, f.body, &b) < 0)
			abort();
		if (b.name < body || b.name + WIRE_NAME_SIZE + b.key_len > body + f.body)
			abort();
		r = wire_build_request(d, rq, b.id ? b.id : h->client_id, &b, again, sizeof(again), &len);
		/* Only a content_size that leaves no room for the fixed fields in payload_size cannot be built. */
		if (r < 0 ? rq->kind != WIRE_KIND_FILE || (uint64_t)b.content_size + f.body <= UINT32_MAX
		          : len != WIRE_REQUEST_HEADER_SIZE + f.body ||
		                memcmp(again + WIRE_REQUEST_HEADER_SIZE, body, f.body) != 0)
			abort();
		if (wire_check_request_body(d, rq, h, &b) != WIRE_BODY_OK)
			continue;
		if (r < 0 || memcmp(again, data, 16) != 0 || wire_get_u16(again + 17) != code ||
		    memcmp(again + 19, data + 19, 4) != 0)
			abort();
	}
}

/* The input after a response header as the payload of each response: what parses builds back to it. */
static void check_responses(const uint8_t *data, size_t size)
{
	static const uint16_t codes[] = {
	    RESP_REGISTERED, RESP_REGISTER_REFUSED, RESP_AES_KEY,           RESP_FILE_RECEIVED,
	    RESP_ACK,        RESP_RECONNECTED,      RESP_RECONNECT_REFUSED, RESP_ERROR};
	const struct wire_dialect *d = &wire_standard;
	uint8_t again[WIRE_RESPONSE_HEADER_MAX + WIRE_RESPONSE_PAYLOAD_MAX];
	size_t head = wire_response_header_size(d), len, i;
	struct wire_response_header rh;
	struct wire_response_body b;

	if (size < head)
		return;
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		if (wire_parse_response_body(d, codes[i], data + head, size - head, &b) < 0)
			continue;
		if (size - head > WIRE_RESPONSE_PAYLOAD_MAX ||
		    wire_build_response(d, codes[i], &b, again, sizeof(again), &len) < 0 || len != size ||
		    memcmp(again + head, data + head, size - head) != 0)
			abort();
		wire_parse_response_header(d, again, &rh);
		if (rh.code != codes[i] || rh.payload_size != size - head || rh.version != WIRE_SERVER_VERSION)
			abort();
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
