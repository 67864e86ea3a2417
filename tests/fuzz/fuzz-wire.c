/*
 * libFuzzer harness for the request codec (PROTOCOL.md sections 1, 2 and 8):
 * a request header, a name[255] field checked both as a client name and as
 * a file name, its base name, and a client id in hex, from arbitrary bytes.
 * Whatever the codec accepts must satisfy the rules it claims to enforce.
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
	wire_parse_response_header(hdr, &rh);
	(void)wire_response_name(rh.code);

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
