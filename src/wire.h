/* The wire codec: byte layouts of PROTOCOL.md sections 1-3. Pure: no I/O. */
#ifndef EF_WIRE_H
#define EF_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_ID_SIZE              16
#define WIRE_NAME_SIZE            255 /* name[255] and file_name[255] */
#define WIRE_NAME_MAX             (WIRE_NAME_SIZE - 1)
#define WIRE_REQUEST_HEADER_SIZE  23
#define WIRE_RESPONSE_HEADER_SIZE 7
#define WIRE_SERVER_VERSION       3
#define WIRE_CLIENT_VERSION       3
#define WIRE_AES_BLOCK            16
#define WIRE_KEY_FIELD_MIN        1 /* public_key[K], PROTOCOL.md section 8 */
#define WIRE_KEY_FIELD_MAX        1024

/* Fixed fields before the content of a file request. */
#define WIRE_FILE_FIXED_1025 (4 + WIRE_NAME_SIZE)                /* 259 */
#define WIRE_FILE_FIXED_1100 (WIRE_ID_SIZE + 4 + WIRE_NAME_SIZE) /* 275 */
/* 2103: client_id, content_size, file_name, checksum. */
#define WIRE_2103_SIZE (WIRE_ID_SIZE + 4 + WIRE_NAME_SIZE + 4) /* 279 */

enum wire_request_code {
	REQ_REGISTER = 1025,
	REQ_PUBLIC_KEY = 1026,
	REQ_RECONNECT = 1027,
	REQ_FILE = 1028,
	REQ_CRC_OK = 1029,
	REQ_CRC_RETRY = 1030,
	REQ_CRC_ABORT = 1031,
	REQ_REGISTER_1100 = 1100,
	REQ_PUBLIC_KEY_1100 = 1101,
	REQ_FILE_1100 = 1103,
	REQ_CRC_OK_1100 = 1104,
	REQ_CRC_RETRY_1100 = 1105,
	REQ_CRC_ABORT_1100 = 1106,
};

enum wire_response_code {
	RESP_REGISTERED = 2100,
	RESP_REGISTER_REFUSED = 2101,
	RESP_AES_KEY = 2102,
	RESP_FILE_RECEIVED = 2103,
	RESP_ACK = 2104,
	RESP_RECONNECTED = 2105,
	RESP_RECONNECT_REFUSED = 2106,
	RESP_ERROR = 2107,
};

struct wire_request_header {
	uint8_t client_id[WIRE_ID_SIZE];
	uint8_t version;
	uint16_t code;
	uint32_t payload_size;
};

struct wire_response_header {
	uint8_t version;
	uint16_t code;
	uint32_t payload_size;
};

static inline uint16_t wire_get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t wire_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void wire_put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void wire_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

void wire_parse_request_header(const uint8_t buf[WIRE_REQUEST_HEADER_SIZE], struct wire_request_header *h);
void wire_build_request_header(uint8_t buf[WIRE_REQUEST_HEADER_SIZE], const struct wire_request_header *h);
void wire_parse_response_header(const uint8_t buf[WIRE_RESPONSE_HEADER_SIZE], struct wire_response_header *h);
void wire_build_response_header(uint8_t buf[WIRE_RESPONSE_HEADER_SIZE], uint16_t code, uint32_t payload_size);

/* Why a name field was refused (PROTOCOL.md section 8). */
enum wire_name_error {
	WIRE_NAME_OK = 0,
	WIRE_NAME_NO_NUL,
	WIRE_NAME_EMPTY,
	WIRE_NAME_CONTROL,
	WIRE_NAME_NOT_UTF8,
};

/*
 * Check a name[255] field: 1-254 bytes before its NUL, no control byte,
 * and valid UTF-8 when utf8 is set. On success *len is the string length.
 */
enum wire_name_error wire_check_name(const uint8_t field[WIRE_NAME_SIZE], bool utf8, size_t *len);
const char *wire_name_error_str(enum wire_name_error e);

/*
 * The base name of a file name (PROTOCOL.md section 6): the part after the
 * last '/' or '\'. Returns 0 and sets *base and *base_len, or -EINVAL when
 * the base name is empty, "." or "..".
 */
int wire_base_name(const char *name, size_t len, const char **base, size_t *base_len);

/* Copy a string into a name[255] field, NUL-padded. -ENAMETOOLONG if it does not fit. */
int wire_put_name(uint8_t field[WIRE_NAME_SIZE], const char *s);

/* Hex of a client id: 32 lowercase digits and a NUL. */
#define WIRE_ID_HEX_SIZE (2 * WIRE_ID_SIZE + 1)
void wire_id_to_hex(const uint8_t id[WIRE_ID_SIZE], char out[WIRE_ID_HEX_SIZE]);
/* Parse 32 hex digits, dashes allowed between them. 0 or -EINVAL. */
int wire_id_from_hex(const char *s, uint8_t id[WIRE_ID_SIZE]);

const char *wire_request_name(uint16_t code);
const char *wire_response_name(uint16_t code);

#endif
