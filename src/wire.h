/*
 * The wire codec: every byte layout of efserver-protocol(7) (sections
 * "Framing", "Requests" and "Responses") and the request table that holds
 * each request code's rules. Pure: bytes in, structs out, no I/O.
 *
 * A dialect of the protocol is a parameter of the codec, chosen per
 * connection: every function whose layout a dialect may change takes one.
 * wire_standard is the protocol as efserver-protocol(7) describes it,
 * wire_seed004 the dialect of the seed-004 programs (efserver-protocol(7),
 * "Dialects and tolerances"); either may come with tolerances, readings of
 * requests that are format errors otherwise.
 */
#ifndef EF_WIRE_H
#define EF_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cksum.h"
#include "der.h"

#define WIRE_ID_SIZE              16
#define WIRE_NAME_SIZE            255 /* name[255] and file_name[255] */
#define WIRE_NAME_MAX             (WIRE_NAME_SIZE - 1)
#define WIRE_REQUEST_HEADER_SIZE  23
#define WIRE_RESPONSE_HEADER_SIZE 7 /* in the standard dialect */
#define WIRE_RESPONSE_HEADER_MAX  8 /* in the seed-004 dialect */
#define WIRE_SERVER_VERSION       3
#define WIRE_CLIENT_VERSION       3
#define WIRE_AES_BLOCK            16
#define WIRE_KEY_FIELD_MIN        1 /* public_key[K], efserver-protocol(7), "Requests" */
#define WIRE_KEY_FIELD_MAX        1024
/* encrypted_aes_key[M] of 2102 and 2105: M is the modulus size in bytes. */
#define WIRE_ENCRYPTED_KEY_MAX (DER_RSA_MAX_BITS / 8)
/* The largest response payload: 2102 or 2105 under a 4096-bit key (2103 has 285 bytes at most). */
#define WIRE_RESPONSE_PAYLOAD_MAX (WIRE_ID_SIZE + WIRE_ENCRYPTED_KEY_MAX)
/* The largest request but a file's content: a public key request with the longest key field. */
#define WIRE_REQUEST_HEAD_MAX (WIRE_REQUEST_HEADER_SIZE + WIRE_NAME_SIZE + WIRE_KEY_FIELD_MAX)

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

/*
 * What a request does, whatever its code set. The kind fixes the layout of
 * the body: name[255] (register, reconnect), name[255] public_key[K],
 * content_size file_name[255] and the content (file), file_name[255]
 * (checksum verdicts); rows with WIRE_ID_LEADS put client_id[16] first.
 */
enum wire_kind {
	WIRE_KIND_REGISTER,
	WIRE_KIND_PUBLIC_KEY,
	WIRE_KIND_RECONNECT,
	WIRE_KIND_FILE,
	WIRE_KIND_CRC_OK,
	WIRE_KIND_CRC_RETRY,
	WIRE_KIND_CRC_ABORT,
	WIRE_KINDS
};

/* Flags of a request row. */
enum {
	WIRE_ID_LEADS = 1 << 0, /* client_id[16] leads the payload and must equal the header's (1103-1106) */
	WIRE_ACK_ID = 1 << 1,   /* the 2104 that answers it carries the client id (1029-1031) */
	WIRE_SILENT = 1 << 2,   /* success has no response (1105, 1106) */
};

/*
 * The limits of efsession(8) a request is held to, and where each is
 * checked (efsession(8), Limits); --max-refusals holds for every request.
 */
enum {
	/* --max-clients, --registrations-per-hour: in the transaction that registers, the request read in full. */
	WIRE_LIMIT_REGISTRATION = 1 << 0,
	/*
	 * --max-bad-paddings, --client-quota, --client-max-files and
	 * --min-free-space: before the content is read; the quota and the
	 * files again in the transaction that records the file.
	 */
	WIRE_LIMIT_STORAGE = 1 << 1,
	/* --min-rate: while the content arrives. */
	WIRE_LIMIT_RATE = 1 << 2,
};

/*
 * One row of the request table: everything that differs from one request
 * code to another (efserver-protocol(7), "Requests" and "Responses").
 * Adding a request code is adding an enum value and a row.
 */
struct wire_request_spec {
	uint16_t code;
	uint16_t set; /* the code set: 1025 or 1100 */
	enum wire_kind kind;
	const char *name;
	uint16_t success;      /* the response on success */
	uint16_t refusal;      /* the refusal that leaves the connection open */
	uint16_t format_error; /* the answer to a malformed request, before closing */
	unsigned limits;       /* WIRE_LIMIT_* */
	uint32_t min_payload;  /* payload_size bounds in the standard dialect */
	uint32_t max_payload;
	uint32_t dump; /* leading bytes of the payload a debug dump may show: the fixed fields */
	unsigned flags;
};

/* The row of a code, or NULL for a code the protocol does not have. */
const struct wire_request_spec *wire_find_request(uint16_t code);
/* The row of kind in a code set, or NULL (there is no reconnect in the 1100 set). */
const struct wire_request_spec *wire_request_for(uint16_t set, enum wire_kind kind);
/* Whether the request is about one file: a file or a checksum verdict. */
bool wire_request_names_file(const struct wire_request_spec *rq);
const char *wire_request_name(uint16_t code);

/* A response code's layout and whether a debug dump may show its payload. */
struct wire_response_spec {
	uint16_t code;
	const char *name;
	unsigned fields; /* WIRE_FIELD_* */
	bool dump;       /* false for the responses that carry a key */
};

enum {
	WIRE_FIELD_ID = 1 << 0,       /* client_id[16] */
	WIRE_FIELD_ID_OPT = 1 << 1,   /* client_id[16] or nothing (2104) */
	WIRE_FIELD_KEY = 1 << 2,      /* encrypted_aes_key[M] after the id */
	WIRE_FIELD_RECEIVED = 1 << 3, /* content_size, file_name[255] and the checksum after the id */
};

const struct wire_response_spec *wire_find_response(uint16_t code);
const char *wire_response_name(uint16_t code);

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

/*
 * The tolerances (efserver-protocol(7), "Dialects and tolerances"): each
 * reads a request that is a format error without it, so none changes the
 * meaning of a valid request.
 */
enum {
	WIRE_TOLERATE_CONTENT_AFTER = 1 << 0, /* 1028/1103 whose payload_size counts the fixed fields only */
	WIRE_TOLERATE_SHORT_NAME = 1 << 1,    /* 1025/1100 with payload_size n of 1-254 and n bytes of name, no NUL */
};

/* A dialect: its layouts where they differ from the standard one, and its tolerances. */
struct wire_dialect;
extern const struct wire_dialect wire_standard;
extern const struct wire_dialect wire_seed004;

/* "standard" or "seed004". */
const char *wire_dialect_name(const struct wire_dialect *d);
unsigned wire_dialect_tolerances(const struct wire_dialect *d);
/*
 * The dialect base (wire_standard or wire_seed004) with these tolerances,
 * or NULL when they do not combine: the seed-004 dialect reads a 1100
 * whose payload_size is below 255 its own way, as short-name does.
 */
const struct wire_dialect *wire_dialect_tolerant(const struct wire_dialect *base, unsigned tolerances);
/*
 * Whether a connection may be in dialect d from the header of its first
 * request: the standard dialect always; the seed-004 dialect when it is a
 * 1100 with payload_size 1-254 (wire_check_request_body then checks that
 * the name field holds exactly that many bytes before its NUL).
 */
bool wire_dialect_opens(const struct wire_dialect *d, const struct wire_request_header *h);
/* The checksum and AES key size of a connection in d, given the server's settings (seed004: crc32, 128 bits). */
enum cksum_algo wire_dialect_checksum(const struct wire_dialect *d, enum cksum_algo configured);
size_t wire_dialect_aes_key_len(const struct wire_dialect *d, size_t configured);
/* Whether anything answers rq in d, a refusal included (the seed-004 dialect answers nothing to 1105, 1106). */
bool wire_dialect_answers(const struct wire_dialect *d, const struct wire_request_spec *rq);
/* The public key field of d: 160 bytes in seed004 (RSA-1024, e = 17); 0 when K may be 1 to 1024. */
size_t wire_dialect_key_field(const struct wire_dialect *d);
/*
 * Whether a server of d frames each request by what one read returns (the
 * seed-004 server): a client sends a request's fixed part in a write of its
 * own, and pauses before whatever follows it.
 */
bool wire_dialect_frames_by_read(const struct wire_dialect *d);

/*
 * The request header is the same in every dialect: a server reads the first
 * one before it can know the connection's dialect.
 */
void wire_parse_request_header(const uint8_t buf[WIRE_REQUEST_HEADER_SIZE], struct wire_request_header *h);
void wire_build_request_header(uint8_t buf[WIRE_REQUEST_HEADER_SIZE], const struct wire_request_header *h);

size_t wire_response_header_size(const struct wire_dialect *d);
/* buf holds wire_response_header_size(d) bytes. */
void wire_parse_response_header(const struct wire_dialect *d, const uint8_t *buf, struct wire_response_header *h);

/*
 * The fields of a request body. Parsing points into the buffer parsed, or
 * into field where the name field as the dialect means it is not the bytes
 * sent; building reads name (a whole name[255] field), content_size and
 * the key as the kind needs them, and repeats the header's id where the row
 * says so.
 */
struct wire_request_body {
	const uint8_t *id;     /* the client_id the payload repeats (WIRE_ID_LEADS), else NULL */
	uint32_t content_size; /* file requests: the encrypted size of the content */
	const uint8_t *name;   /* name[255] or file_name[255] */
	const uint8_t *key;    /* public key requests: public_key[K] */
	size_t key_len;
	uint8_t field[WIRE_NAME_SIZE]; /* parsing: where name points when it is not the bytes sent */
};

/*
 * How a request is read: its body in one piece (every field, and the key of
 * a public key request), then `content` bytes of file content. Where the
 * dialect or a tolerance sizes the content by the body's content_size,
 * wire_check_request_body settles `content`.
 */
struct wire_frame {
	uint32_t body;
	uint32_t content;
	bool sized_by_body; /* content is content_size, known once the body is read */
	unsigned tolerated; /* the WIRE_TOLERATE_* this request needs */
};

/* Frame a request of payload_size bytes. 0, or -EMSGSIZE when payload_size is not one rq allows in d. */
int wire_frame_request(const struct wire_dialect *d, const struct wire_request_spec *rq, uint32_t payload_size,
                       struct wire_frame *f);
/* The payload_size values rq allows in d but through a tolerance, for a log line. */
void wire_payload_bounds(const struct wire_dialect *d, const struct wire_request_spec *rq, uint32_t *min,
                         uint32_t *max);
/*
 * The leading bytes of a file request's body up to its content_size (4 for
 * 1028, 20 for 1103; 0 for other requests), and the content_size in them:
 * what a log line about a refused payload_size shows.
 */
size_t wire_content_size_lead(const struct wire_request_spec *rq);
uint32_t wire_get_content_size(const struct wire_request_spec *rq, const uint8_t *lead);

/* Split a body of len bytes (the frame's body) into its fields. 0, or -EBADMSG when len does not fit rq. */
int wire_parse_request_body(const struct wire_dialect *d, const struct wire_request_spec *rq, const uint8_t *buf,
                            size_t len, struct wire_request_body *b);

/* Why a parsed body does not agree with its header. */
enum wire_body_error {
	WIRE_BODY_OK = 0,
	WIRE_BODY_ID_DIFFERS,   /* the payload's client_id is not the header's */
	WIRE_BODY_SIZE_DIFFERS, /* content_size is not what payload_size leaves for the content */
	WIRE_BODY_NAME_COUNT,   /* seed004: payload_size does not count the name's bytes as the dialect does */
	WIRE_BODY_NAME_NUL,     /* short-name: a NUL among the bytes of the name */
};

/*
 * efserver-protocol(7), "Requests" and "Dialects and tolerances": what the
 * header and the body must agree on. On WIRE_BODY_OK, f->content is settled
 * where the frame left it to content_size, and b->name is the name field
 * as the dialect means it (seed004: the ".enc" of a 1103 removed).
 */
enum wire_body_error wire_check_request_body(const struct wire_dialect *d, const struct wire_request_spec *rq,
                                             const struct wire_request_header *h, struct wire_request_body *b,
                                             struct wire_frame *f);

/*
 * Header and body of a request (all of it but a file's content) into buf,
 * its length into *len. id NULL: all zero. 0, -EINVAL when b lacks the name
 * or the key, or -EMSGSIZE when cap is too small, the payload_size would
 * not fit its field, or (seed004) the file name with ".enc" would not fit
 * its field.
 */
int wire_build_request(const struct wire_dialect *d, const struct wire_request_spec *rq, const uint8_t id[WIRE_ID_SIZE],
                       const struct wire_request_body *b, uint8_t *buf, size_t cap, size_t *len);

/* content_size of a plaintext: PKCS#7 pads it to the next whole AES block, by 1 to 16 bytes. */
uint64_t wire_content_size(uint64_t plaintext);
/* The largest plaintext a file request rq can carry once padded. */
uint64_t wire_max_plaintext(const struct wire_dialect *d, const struct wire_request_spec *rq);
/* The longest file name rq can carry in d: 254 bytes, 250 in a seed004 1103 (it appends ".enc"). */
size_t wire_file_name_max(const struct wire_dialect *d, const struct wire_request_spec *rq);

/* The fields of a response body; parsing points into the payload parsed. */
struct wire_response_body {
	const uint8_t *id;     /* NULL: none (2101, 2107, a 2104 without id) */
	const uint8_t *key;    /* 2102, 2105: encrypted_aes_key[M] */
	size_t key_len;        /* 1 to WIRE_ENCRYPTED_KEY_MAX */
	uint32_t content_size; /* 2103: the request's content_size */
	const uint8_t *name;   /* 2103: the request's file_name[255], echoed byte for byte (seed004: without ".enc") */
	uint32_t checksum;     /* 2103: a u32, or (seed004) ASCII decimal digits NUL-padded to 10 bytes */
};

/*
 * Header and body of a response into buf, its length into *len; b NULL: no
 * fields. 0, -EINVAL for a code the protocol does not have or fields it
 * lacks, or -EMSGSIZE when cap is too small.
 */
int wire_build_response(const struct wire_dialect *d, uint16_t code, const struct wire_response_body *b, uint8_t *buf,
                        size_t cap, size_t *len);

/* Split the payload of a response. 0, -EINVAL for an unknown code, or -EBADMSG when len does not fit it. */
int wire_parse_response_body(const struct wire_dialect *d, uint16_t code, const uint8_t *payload, size_t len,
                             struct wire_response_body *b);

/* Why a name field was refused (efserver-protocol(7), "Names"). */
enum wire_name_error {
	WIRE_NAME_OK = 0,
	WIRE_NAME_NO_NUL,
	WIRE_NAME_EMPTY,
	WIRE_NAME_CONTROL,
	WIRE_NAME_NOT_UTF8,
	WIRE_NAME_LIKE_ID, /* a valid name a new client may not take: it reads as a client id */
};

/*
 * Check a name[255] field: 1-254 bytes before its NUL, no control byte,
 * and valid UTF-8 when utf8 is set. On success *len is the string length.
 */
enum wire_name_error wire_check_name(const uint8_t field[WIRE_NAME_SIZE], bool utf8, size_t *len);
/*
 * A name a new client may take (efserver-protocol(7), Names): a valid
 * client name (wire_check_name with utf8) that does not read as a client id
 * (wire_id_from_hex), so that tools addressing clients by id or by name
 * never confuse the two. WIRE_NAME_LIKE_ID is a refusal, not a format
 * error: *len is set for it as for a name that may be taken.
 */
enum wire_name_error wire_check_new_client_name(const uint8_t field[WIRE_NAME_SIZE], size_t *len);
/* What is wrong, as the rest of a sentence about the name: "is empty", "holds a control character". */
const char *wire_name_error_str(enum wire_name_error e);

/*
 * The base name of a file name (efserver-protocol(7), "Names"): the part
 * after the last '/' or '\'. Returns 0 and sets *base and *base_len, or
 * -EINVAL when the base name is empty, "." or "..".
 */
int wire_base_name(const char *name, size_t len, const char **base, size_t *base_len);

/* Copy a string into a name[255] field, NUL-padded. -ENAMETOOLONG if it does not fit. */
int wire_put_name(uint8_t field[WIRE_NAME_SIZE], const char *s);

/* Hex of a client id: 32 lowercase digits and a NUL. */
#define WIRE_ID_HEX_LEN  (2 * WIRE_ID_SIZE)
#define WIRE_ID_HEX_SIZE (WIRE_ID_HEX_LEN + 1)
/* The same digits with the dashes of the 8-4-4-4-12 form. */
#define WIRE_ID_UUID_LEN (WIRE_ID_HEX_LEN + 4)
void wire_id_to_hex(const uint8_t id[WIRE_ID_SIZE], char out[WIRE_ID_HEX_SIZE]);
/*
 * The one definition of a client id written out (efserver-protocol(7),
 * Names): 32 hex digits, plain or with the dashes of the 8-4-4-4-12 form,
 * in any case, and nothing else. 0 or -EINVAL (*id untouched).
 */
int wire_id_from_hex(const char *s, uint8_t id[WIRE_ID_SIZE]);

#endif
