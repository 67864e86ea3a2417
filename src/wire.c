/* The wire codec (PROTOCOL.md sections 1-3): bytes in, structs out. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "utf8.h"
#include "wire.h"

void wire_parse_request_header(const uint8_t buf[WIRE_REQUEST_HEADER_SIZE], struct wire_request_header *h)
{
	memcpy(h->client_id, buf, WIRE_ID_SIZE);
	h->version = buf[16];
	h->code = wire_get_u16(buf + 17);
	h->payload_size = wire_get_u32(buf + 19);
}

void wire_build_request_header(uint8_t buf[WIRE_REQUEST_HEADER_SIZE], const struct wire_request_header *h)
{
	memcpy(buf, h->client_id, WIRE_ID_SIZE);
	buf[16] = h->version;
	wire_put_u16(buf + 17, h->code);
	wire_put_u32(buf + 19, h->payload_size);
}

void wire_parse_response_header(const uint8_t buf[WIRE_RESPONSE_HEADER_SIZE], struct wire_response_header *h)
{
	h->version = buf[0];
	h->code = wire_get_u16(buf + 1);
	h->payload_size = wire_get_u32(buf + 3);
}

void wire_build_response_header(uint8_t buf[WIRE_RESPONSE_HEADER_SIZE], uint16_t code, uint32_t payload_size)
{
	buf[0] = WIRE_SERVER_VERSION;
	wire_put_u16(buf + 1, code);
	wire_put_u32(buf + 3, payload_size);
}

/* PROTOCOL.md section 8, "Valid names". */
enum wire_name_error wire_check_name(const uint8_t field[WIRE_NAME_SIZE], bool utf8, size_t *len)
{
	const uint8_t *nul = memchr(field, 0, WIRE_NAME_SIZE);
	size_t n, i;

	if (!nul)
		return WIRE_NAME_NO_NUL;
	n = (size_t)(nul - field);
	if (n == 0)
		return WIRE_NAME_EMPTY;
	for (i = 0; i < n; i++)
		if (field[i] < 0x20 || field[i] == 0x7f)
			return WIRE_NAME_CONTROL;
	if (utf8 && !utf8_valid(field, n))
		return WIRE_NAME_NOT_UTF8;
	*len = n;
	return WIRE_NAME_OK;
}

const char *wire_name_error_str(enum wire_name_error e)
{
	switch (e) {
	case WIRE_NAME_OK:
		return "valid";
	case WIRE_NAME_NO_NUL:
		return "no NUL terminator in the 255-byte field";
	case WIRE_NAME_EMPTY:
		return "empty";
	case WIRE_NAME_CONTROL:
		return "holds a control character";
	case WIRE_NAME_NOT_UTF8:
		return "not valid UTF-8";
	}
	return "invalid";
}

/* PROTOCOL.md section 6: the part after the last '/' or '\'. */
int wire_base_name(const char *name, size_t len, const char **base, size_t *base_len)
{
	size_t start = 0, i, n;

	for (i = 0; i < len; i++)
		if (name[i] == '/' || name[i] == '\\')
			start = i + 1;
	n = len - start;
	if (n == 0 || (n == 1 && name[start] == '.') || (n == 2 && name[start] == '.' && name[start + 1] == '.'))
		return -EINVAL;
	*base = name + start;
	*base_len = n;
	return 0;
}

int wire_put_name(uint8_t field[WIRE_NAME_SIZE], const char *s)
{
	size_t n = strnlen(s, WIRE_NAME_SIZE);

	if (n > WIRE_NAME_MAX)
		return -ENAMETOOLONG;
	memset(field, 0, WIRE_NAME_SIZE);
	memcpy(field, s, n);
	return 0;
}

void wire_id_to_hex(const uint8_t id[WIRE_ID_SIZE], char out[WIRE_ID_HEX_SIZE])
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < WIRE_ID_SIZE; i++) {
		out[2 * i] = digits[id[i] >> 4];
		out[2 * i + 1] = digits[id[i] & 0xf];
	}
	out[2 * WIRE_ID_SIZE] = '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int wire_id_from_hex(const char *s, uint8_t id[WIRE_ID_SIZE])
{
	uint8_t tmp[WIRE_ID_SIZE];
	size_t digits = 0;
	int hi = -1, v;

	for (; *s; s++) {
		if (*s == '-') {
			/* Dashes only between bytes, as in 8-4-4-4-12. */
			if (digits == 0 || hi >= 0 || s[1] == '-' || s[1] == '\0')
				return -EINVAL;
			continue;
		}
		if ((v = hex_value(*s)) < 0 || digits == 2 * WIRE_ID_SIZE)
			return -EINVAL;
		if (hi < 0) {
			hi = v;
		} else {
			tmp[digits / 2] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
		digits++;
	}
	if (digits != 2 * WIRE_ID_SIZE)
		return -EINVAL;
	memcpy(id, tmp, WIRE_ID_SIZE);
	return 0;
}

const char *wire_request_name(uint16_t code)
{
	switch (code) {
	case REQ_REGISTER:
	case REQ_REGISTER_1100:
		return "register";
	case REQ_PUBLIC_KEY:
	case REQ_PUBLIC_KEY_1100:
		return "public key";
	case REQ_RECONNECT:
		return "reconnect";
	case REQ_FILE:
	case REQ_FILE_1100:
		return "send file";
	case REQ_CRC_OK:
	case REQ_CRC_OK_1100:
		return "checksum correct";
	case REQ_CRC_RETRY:
	case REQ_CRC_RETRY_1100:
		return "checksum wrong, will resend";
	case REQ_CRC_ABORT:
	case REQ_CRC_ABORT_1100:
		return "checksum wrong, giving up";
	}
	return "unknown request";
}

const char *wire_response_name(uint16_t code)
{
	switch (code) {
	case RESP_REGISTERED:
		return "registered";
	case RESP_REGISTER_REFUSED:
		return "registration refused";
	case RESP_AES_KEY:
		return "AES key";
	case RESP_FILE_RECEIVED:
		return "file received";
	case RESP_ACK:
		return "acknowledged";
	case RESP_RECONNECTED:
		return "reconnected";
	case RESP_RECONNECT_REFUSED:
		return "reconnect refused";
	case RESP_ERROR:
		return "general error";
	}
	return "unknown response";
}
