/*
 * The wire codec: the request and response tables, and the layout of every
 * header and body of efserver-protocol(7) in each dialect; name fields and
 * client ids. Bytes in, structs out.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"
#include "wire.h"

#define ID    WIRE_ID_SIZE
#define NAME  WIRE_NAME_SIZE
#define SIZE  4 /* content_size, u32 */
#define BLOCK WIRE_AES_BLOCK

/* The fixed fields of the bodies (efserver-protocol(7), "Requests"). */
#define KEY_MIN   (NAME + WIRE_KEY_FIELD_MIN)
#define KEY_MAX   (NAME + WIRE_KEY_FIELD_MAX)
#define FILE_1025 (SIZE + NAME)      /* 259 */
#define FILE_1100 (ID + SIZE + NAME) /* 275 */

/*
 * What each kind of request is called, how it is answered: on success,
 * with a refusal that keeps the connection, and when it is malformed
 * (efserver-protocol(7), "Responses" and "Errors"), and the limits it is
 * held to (efsession(8), Limits).
 *
 * What each costs the server at most for a client id that is not
 * registered, once its fixed fields are read (efsession(8), Limits): a
 * 1026/1101 a lookup, after its key field is parsed (1,024 bytes at most,
 * no RSA work); a 1027 a lookup; a 1028/1103 a lookup, its content unread;
 * a checksum request a lookup in a write transaction that changes
 * nothing. Each also updates last seen of a known id, a statement that
 * finds no row for an unknown one. A registration is the one write a
 * stranger can make, at most --registrations-per-hour from each source.
 */
#define REGISTER                                                                                                       \
	WIRE_KIND_REGISTER, "register", RESP_REGISTERED, RESP_REGISTER_REFUSED, RESP_REGISTER_REFUSED,                 \
	    WIRE_LIMIT_REGISTRATION
#define PUBLIC_KEY WIRE_KIND_PUBLIC_KEY, "public key", RESP_AES_KEY, RESP_ERROR, RESP_ERROR, 0
#define RECONNECT  WIRE_KIND_RECONNECT, "reconnect", RESP_RECONNECTED, RESP_RECONNECT_REFUSED, RESP_ERROR, 0
#define SEND_FILE                                                                                                      \
	WIRE_KIND_FILE, "send file", RESP_FILE_RECEIVED, RESP_ERROR, RESP_ERROR, WIRE_LIMIT_STORAGE | WIRE_LIMIT_RATE
#define CRC_OK    WIRE_KIND_CRC_OK, "checksum correct", RESP_ACK, RESP_ERROR, RESP_ERROR, 0
#define CRC_RETRY WIRE_KIND_CRC_RETRY, "checksum wrong, will resend", RESP_ACK, RESP_ERROR, RESP_ERROR, 0
#define CRC_ABORT WIRE_KIND_CRC_ABORT, "checksum wrong, giving up", RESP_ACK, RESP_ERROR, RESP_ERROR, 0

/* Every request code (efserver-protocol(7), "Requests"). */
static const struct wire_request_spec requests[] = {
    /* code, set, kind, payload_size from, to, dump, flags */
    {REQ_REGISTER, 1025, REGISTER, NAME, NAME, NAME, 0},
    {REQ_PUBLIC_KEY, 1025, PUBLIC_KEY, KEY_MIN, KEY_MAX, NAME, 0},
    {REQ_RECONNECT, 1025, RECONNECT, NAME, NAME, NAME, 0},
    {REQ_FILE, 1025, SEND_FILE, FILE_1025 + BLOCK, UINT32_MAX, FILE_1025, 0},
    {REQ_CRC_OK, 1025, CRC_OK, NAME, NAME, NAME, WIRE_ACK_ID},
    {REQ_CRC_RETRY, 1025, CRC_RETRY, NAME, NAME, NAME, WIRE_ACK_ID},
    {REQ_CRC_ABORT, 1025, CRC_ABORT, NAME, NAME, NAME, WIRE_ACK_ID},
    {REQ_REGISTER_1100, 1100, REGISTER, NAME, NAME, NAME, 0},
    {REQ_PUBLIC_KEY_1100, 1100, PUBLIC_KEY, KEY_MIN, KEY_MAX, NAME, 0},
    {REQ_FILE_1100, 1100, SEND_FILE, FILE_1100 + BLOCK, UINT32_MAX, FILE_1100, WIRE_ID_LEADS},
    {REQ_CRC_OK_1100, 1100, CRC_OK, ID + NAME, ID + NAME, ID + NAME, WIRE_ID_LEADS},
    {REQ_CRC_RETRY_1100, 1100, CRC_RETRY, ID + NAME, ID + NAME, ID + NAME, WIRE_ID_LEADS | WIRE_SILENT},
    {REQ_CRC_ABORT_1100, 1100, CRC_ABORT, ID + NAME, ID + NAME, ID + NAME, WIRE_ID_LEADS | WIRE_SILENT},
};

/* efserver-protocol(7), "Responses", in the order of their codes. A key is never dumped, not even encrypted. */
static const struct wire_response_spec responses[] = {
    {RESP_REGISTERED, "registered", WIRE_FIELD_ID, true},
    {RESP_REGISTER_REFUSED, "registration refused", 0, true},
    {RESP_AES_KEY, "AES key", WIRE_FIELD_ID | WIRE_FIELD_KEY, false},
    {RESP_FILE_RECEIVED, "file received", WIRE_FIELD_ID | WIRE_FIELD_RECEIVED, true},
    {RESP_ACK, "acknowledged", WIRE_FIELD_ID_OPT, true},
    {RESP_RECONNECTED, "reconnected", WIRE_FIELD_ID | WIRE_FIELD_KEY, false},
    {RESP_RECONNECT_REFUSED, "reconnect refused", WIRE_FIELD_ID, true},
    {RESP_ERROR, "general error", 0, true},
};

const struct wire_request_spec *wire_find_request(uint16_t code)
{
	size_t i;

	for (i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
		if (requests[i].code == code)
			return &requests[i];
	return NULL;
}

const struct wire_request_spec *wire_request_for(uint16_t set, enum wire_kind kind)
{
	size_t i;

	for (i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
		if (requests[i].set == set && requests[i].kind == kind)
			return &requests[i];
	return NULL;
}

bool wire_request_names_file(const struct wire_request_spec *rq)
{
	switch (rq->kind) {
	case WIRE_KIND_FILE:
	case WIRE_KIND_CRC_OK:
	case WIRE_KIND_CRC_RETRY:
	case WIRE_KIND_CRC_ABORT:
		return true;
	case WIRE_KIND_REGISTER:
	case WIRE_KIND_PUBLIC_KEY:
	case WIRE_KIND_RECONNECT:
	case WIRE_KINDS:
		break;
	}
	return false;
}

const char *wire_request_name(uint16_t code)
{
	const struct wire_request_spec *rq = wire_find_request(code);

	return rq ? rq->name : "unknown request";
}

const struct wire_response_spec *wire_find_response(uint16_t code)
{
	size_t i = (size_t)code - RESP_REGISTERED;

	return code >= RESP_REGISTERED && i < sizeof(responses) / sizeof(responses[0]) ? &responses[i] : NULL;
}

const char *wire_response_name(uint16_t code)
{
	const struct wire_response_spec *rs = wire_find_response(code);

	return rs ? rs->name : "unknown response";
}

/* efserver-protocol(7), "Framing". */
void wire_parse_request_header(const uint8_t buf[WIRE_REQUEST_HEADER_SIZE], struct wire_request_header *h)
{
	memcpy(h->client_id, buf, ID);
	h->version = buf[16];
	h->code = wire_get_u16(buf + 17);
	h->payload_size = wire_get_u32(buf + 19);
}

void wire_build_request_header(uint8_t buf[WIRE_REQUEST_HEADER_SIZE], const struct wire_request_header *h)
{
	memcpy(buf, h->client_id, ID);
	buf[16] = h->version;
	wire_put_u16(buf + 17, h->code);
	wire_put_u32(buf + 19, h->payload_size);
}

/* Bytes of a request body before its key or its content. */
static uint32_t fixed_size(const struct wire_request_spec *rq)
{
	return (rq->flags & WIRE_ID_LEADS ? ID : 0) + (rq->kind == WIRE_KIND_FILE ? SIZE : 0) + NAME;
}

/* Bytes before the NUL of a name[255] field; NAME when it has none. */
static size_t name_length(const uint8_t *field)
{
	const uint8_t *nul = memchr(field, 0, NAME);

	return nul ? (size_t)(nul - field) : NAME;
}

/* The seed-004 dialect (efserver-protocol(7), "Dialects and tolerances"). */
#define SEED004_KEY        160    /* its client's public key: an RSA-1024 SubjectPublicKeyInfo, e = 17 */
#define SEED004_SUFFIX     ".enc" /* what its client appends to a 1103's file name */
#define SEED004_SUFFIX_LEN 4
#define SEED004_CHECKSUM   10 /* 2103's checksum: ASCII decimal digits, NUL-padded */

enum layout { LAYOUT_STANDARD, LAYOUT_SEED004 };

/*
 * What a dialect lays out or decides its own way. Everything else (the
 * request header, the fields of the bodies and their order) is common to all.
 */
struct wire_dialect {
	const char *name;
	enum layout layout;
	unsigned tolerances; /* WIRE_TOLERATE_* */
	/* The response header: version, zero bytes up to code_at, code (2 bytes), payload_size (4). */
	size_t code_at;
	/* The server's side: payload_size bounds, how the request is read, what its body must agree on. */
	void (*bounds)(const struct wire_request_spec *rq, uint32_t *min, uint32_t *max);
	int (*frame_request)(const struct wire_dialect *d, const struct wire_request_spec *rq, uint32_t payload_size,
	                     struct wire_frame *f);
	enum wire_body_error (*check_body)(const struct wire_request_spec *rq, const struct wire_request_header *h,
	                                   struct wire_request_body *b, struct wire_frame *f);
	/* The client's side: payload_size of a request with this body of body_len bytes, and the name field sent. */
	uint64_t (*payload_size)(const struct wire_request_spec *rq, const struct wire_request_body *b,
	                         uint32_t body_len);
	int (*put_name)(const struct wire_request_spec *rq, uint8_t *out, const uint8_t *name);
	/* 2103's checksum field: checksum_min to checksum_size bytes read, checksum_size written. */
	size_t checksum_min, checksum_size;
	void (*put_checksum)(uint8_t *field, uint32_t sum);
	int (*get_checksum)(const uint8_t *field, size_t len, uint32_t *sum);
	/* The header of the first request of a connection in this dialect; NULL: any. */
	bool (*opens)(const struct wire_request_header *h);
	int checksum;        /* the checksum of its connections, or -1: the server's setting */
	size_t aes_key_len;  /* the AES key size of its connections, or 0: the server's setting */
	bool mute_silent;    /* nothing answers a WIRE_SILENT request, not even a refusal */
	bool frames_by_read; /* its server frames each request by one read */
};

static void standard_bounds(const struct wire_request_spec *rq, uint32_t *min, uint32_t *max)
{
	*min = rq->min_payload;
	*max = rq->max_payload;
}

/*
 * payload_size is exactly the body and the content; a file's content is
 * what the fixed fields leave. The tolerances read payload_size values
 * that are format errors otherwise (efserver-protocol(7), "Dialects and
 * tolerances").
 */
static int standard_frame_request(const struct wire_dialect *d, const struct wire_request_spec *rq,
                                  uint32_t payload_size, struct wire_frame *f)
{
	struct wire_frame out = {0};

	if (payload_size >= rq->min_payload && payload_size <= rq->max_payload) {
		out.body = rq->kind == WIRE_KIND_FILE ? fixed_size(rq) : payload_size;
		out.content = payload_size - out.body;
	} else if ((d->tolerances & WIRE_TOLERATE_CONTENT_AFTER) && rq->kind == WIRE_KIND_FILE &&
	           payload_size == fixed_size(rq)) {
		out.body = payload_size;
		out.sized_by_body = true;
		out.tolerated = WIRE_TOLERATE_CONTENT_AFTER;
	} else if ((d->tolerances & WIRE_TOLERATE_SHORT_NAME) && rq->kind == WIRE_KIND_REGISTER && payload_size >= 1 &&
	           payload_size < NAME) {
		out.body = payload_size;
		out.tolerated = WIRE_TOLERATE_SHORT_NAME;
	} else {
		return -EMSGSIZE;
	}
	*f = out;
	return 0;
}

static enum wire_body_error standard_check_body(const struct wire_request_spec *rq, const struct wire_request_header *h,
                                                struct wire_request_body *b, struct wire_frame *f)
{
	(void)h;
	/* The short-name tolerance reads n bytes of name, all of them the name. */
	if ((f->tolerated & WIRE_TOLERATE_SHORT_NAME) && memchr(b->name, 0, f->body))
		return WIRE_BODY_NAME_NUL;
	if (rq->kind != WIRE_KIND_FILE)
		return WIRE_BODY_OK;
	if (f->sized_by_body)
		f->content = b->content_size;
	else if (b->content_size != f->content)
		return WIRE_BODY_SIZE_DIFFERS;
	return WIRE_BODY_OK;
}

static uint64_t standard_payload_size(const struct wire_request_spec *rq, const struct wire_request_body *b,
                                      uint32_t body_len)
{
	return (uint64_t)body_len + (rq->kind == WIRE_KIND_FILE ? b->content_size : 0);
}

static int standard_put_name(const struct wire_request_spec *rq, uint8_t *out, const uint8_t *name)
{
	(void)rq;
	memcpy(out, name, NAME);
	return 0;
}

static void standard_put_checksum(uint8_t *field, uint32_t sum)
{
	wire_put_u32(field, sum);
}

static int standard_get_checksum(const uint8_t *field, size_t len, uint32_t *sum)
{
	(void)len;
	*sum = wire_get_u32(field);
	return 0;
}

/* The rows the seed-004 dialect lays out its own way: 1100, 1101 and 1103. */
static bool seed004_own(const struct wire_request_spec *rq)
{
	return rq->set == REQ_REGISTER_1100 &&
	       (rq->kind == WIRE_KIND_REGISTER || rq->kind == WIRE_KIND_PUBLIC_KEY || rq->kind == WIRE_KIND_FILE);
}

/* payload_size counts the name's bytes (1-254), not its 255-byte field. */
static void seed004_bounds(const struct wire_request_spec *rq, uint32_t *min, uint32_t *max)
{
	if (!seed004_own(rq)) {
		standard_bounds(rq, min, max);
		return;
	}
	*min = 1;
	*max = WIRE_NAME_MAX;
	if (rq->kind == WIRE_KIND_PUBLIC_KEY) {
		*min += SEED004_KEY;
		*max += SEED004_KEY;
	} else if (rq->kind == WIRE_KIND_FILE) {
		*min += ID + BLOCK;
		*max = UINT32_MAX;
	}
}

/* The fixed fields are read whatever payload_size says; a file's content is sized by its content_size. */
static int seed004_frame_request(const struct wire_dialect *d, const struct wire_request_spec *rq,
                                 uint32_t payload_size, struct wire_frame *f)
{
	uint32_t min, max;

	if (!seed004_own(rq))
		return standard_frame_request(d, rq, payload_size, f);
	seed004_bounds(rq, &min, &max);
	if (payload_size < min || payload_size > max)
		return -EMSGSIZE;
	*f = (struct wire_frame){
	    .body = fixed_size(rq) + (rq->kind == WIRE_KIND_PUBLIC_KEY ? SEED004_KEY : 0),
	    .sized_by_body = rq->kind == WIRE_KIND_FILE,
	};
	return 0;
}

/*
 * payload_size is strlen(name) for 1100, strlen(name) + 160 for 1101 and
 * 16 + content_size + strlen(file name) for 1103, whose file name ends in
 * the ".enc" the client appended: exactly one is removed.
 */
static enum wire_body_error seed004_check_body(const struct wire_request_spec *rq, const struct wire_request_header *h,
                                               struct wire_request_body *b, struct wire_frame *f)
{
	size_t len;
	uint64_t counted;

	if (!seed004_own(rq))
		return standard_check_body(rq, h, b, f);
	len = name_length(b->name);
	counted = len + (rq->kind == WIRE_KIND_PUBLIC_KEY ? SEED004_KEY
	                 : rq->kind == WIRE_KIND_FILE     ? (uint64_t)ID + b->content_size
	                                                  : 0);
	if (len == NAME || counted != h->payload_size)
		return WIRE_BODY_NAME_COUNT;
	if (rq->kind != WIRE_KIND_FILE)
		return WIRE_BODY_OK;
	f->content = b->content_size;
	if (len >= SEED004_SUFFIX_LEN &&
	    memcmp(b->name + len - SEED004_SUFFIX_LEN, SEED004_SUFFIX, SEED004_SUFFIX_LEN) == 0) {
		memcpy(b->field, b->name, NAME);
		memset(b->field + len - SEED004_SUFFIX_LEN, 0, SEED004_SUFFIX_LEN);
		b->name = b->field;
	}
	return WIRE_BODY_OK;
}

static uint64_t seed004_payload_size(const struct wire_request_spec *rq, const struct wire_request_body *b,
                                     uint32_t body_len)
{
	/* Without a name (the largest plaintext), the longest one counts. */
	uint64_t len = b->name ? name_length(b->name) : WIRE_NAME_MAX;

	if (!seed004_own(rq))
		return standard_payload_size(rq, b, body_len);
	if (rq->kind == WIRE_KIND_REGISTER)
		return len;
	/* A key of another size could not be framed: payload_size beyond what fits says so. */
	if (rq->kind == WIRE_KIND_PUBLIC_KEY)
		return b->key_len == SEED004_KEY ? len + SEED004_KEY : (uint64_t)UINT32_MAX + 1;
	return ID + (uint64_t)b->content_size + len + SEED004_SUFFIX_LEN;
}

static int seed004_put_name(const struct wire_request_spec *rq, uint8_t *out, const uint8_t *name)
{
	size_t len = name_length(name);

	memcpy(out, name, NAME);
	if (!seed004_own(rq) || rq->kind != WIRE_KIND_FILE)
		return 0;
	if (len + SEED004_SUFFIX_LEN > WIRE_NAME_MAX)
		return -EMSGSIZE;
	memcpy(out + len, SEED004_SUFFIX, SEED004_SUFFIX_LEN);
	return 0;
}

static void seed004_put_checksum(uint8_t *field, uint32_t sum)
{
	char digits[SEED004_CHECKSUM + 1];
	int n = snprintf(digits, sizeof(digits), "%" PRIu32, sum);

	memset(field, 0, SEED004_CHECKSUM);
	memcpy(field, digits, (size_t)n);
}

/* 1 to 10 decimal digits, then nothing but NULs, at most 4294967295. */
static int seed004_get_checksum(const uint8_t *field, size_t len, uint32_t *sum)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len && field[i] >= '0' && field[i] <= '9'; i++)
		if ((v = v * 10 + (uint64_t)(field[i] - '0')) > UINT32_MAX)
			return -EBADMSG;
	if (i == 0)
		return -EBADMSG;
	for (; i < len; i++)
		if (field[i] != 0)
			return -EBADMSG;
	*sum = (uint32_t)v;
	return 0;
}

/* Every connection of the seed-004 client opens with a 1100 whose payload_size is strlen(name). */
static bool seed004_opens(const struct wire_request_header *h)
{
	return h->code == REQ_REGISTER_1100 && h->payload_size >= 1 && h->payload_size <= WIRE_NAME_MAX;
}

#define STANDARD_DIALECT(tol)                                                                                          \
	{                                                                                                              \
		.name = "standard", .layout = LAYOUT_STANDARD, .tolerances = (tol), .code_at = 1,                      \
		.bounds = standard_bounds, .frame_request = standard_frame_request, .check_body = standard_check_body, \
		.payload_size = standard_payload_size, .put_name = standard_put_name, .checksum_min = SIZE,            \
		.checksum_size = SIZE, .put_checksum = standard_put_checksum, .get_checksum = standard_get_checksum,   \
		.opens = NULL, .checksum = -1, .aes_key_len = 0, .mute_silent = false, .frames_by_read = false,        \
	}

/*
 * A zero byte after the version in the response header; crc32 and 128-bit
 * AES keys, whatever the server's settings: its client knows no other.
 */
#define SEED004_DIALECT(tol)                                                                                           \
	{                                                                                                              \
		.name = "seed004", .layout = LAYOUT_SEED004, .tolerances = (tol), .code_at = 2,                        \
		.bounds = seed004_bounds, .frame_request = seed004_frame_request, .check_body = seed004_check_body,    \
		.payload_size = seed004_payload_size, .put_name = seed004_put_name, .checksum_min = 1,                 \
		.checksum_size = SEED004_CHECKSUM, .put_checksum = seed004_put_checksum,                               \
		.get_checksum = seed004_get_checksum, .opens = seed004_opens, .checksum = CKSUM_CRC32,                 \
		.aes_key_len = 16, .mute_silent = true, .frames_by_read = true,                                        \
	}

const struct wire_dialect wire_standard = STANDARD_DIALECT(0);
const struct wire_dialect wire_seed004 = SEED004_DIALECT(0);

/* Every other dialect wire_dialect_tolerant hands out: seed004 and short-name do not combine. */
static const struct wire_dialect tolerant[] = {
    STANDARD_DIALECT(WIRE_TOLERATE_CONTENT_AFTER),
    STANDARD_DIALECT(WIRE_TOLERATE_SHORT_NAME),
    STANDARD_DIALECT(WIRE_TOLERATE_CONTENT_AFTER | WIRE_TOLERATE_SHORT_NAME),
    SEED004_DIALECT(WIRE_TOLERATE_CONTENT_AFTER),
};

const char *wire_dialect_name(const struct wire_dialect *d)
{
	return d->name;
}

unsigned wire_dialect_tolerances(const struct wire_dialect *d)
{
	return d->tolerances;
}

const struct wire_dialect *wire_dialect_tolerant(const struct wire_dialect *base, unsigned tolerances)
{
	size_t i;

	if (tolerances == 0)
		return base->layout == LAYOUT_SEED004 ? &wire_seed004 : &wire_standard;
	for (i = 0; i < sizeof(tolerant) / sizeof(tolerant[0]); i++)
		if (tolerant[i].layout == base->layout && tolerant[i].tolerances == tolerances)
			return &tolerant[i];
	return NULL;
}

bool wire_dialect_opens(const struct wire_dialect *d, const struct wire_request_header *h)
{
	return !d->opens || d->opens(h);
}

enum cksum_algo wire_dialect_checksum(const struct wire_dialect *d, enum cksum_algo configured)
{
	return d->checksum < 0 ? configured : (enum cksum_algo)d->checksum;
}

size_t wire_dialect_aes_key_len(const struct wire_dialect *d, size_t configured)
{
	return d->aes_key_len ? d->aes_key_len : configured;
}

bool wire_dialect_answers(const struct wire_dialect *d, const struct wire_request_spec *rq)
{
	return !(d->mute_silent && (rq->flags & WIRE_SILENT));
}

bool wire_dialect_frames_by_read(const struct wire_dialect *d)
{
	return d->frames_by_read;
}

size_t wire_dialect_key_field(const struct wire_dialect *d)
{
	return d->layout == LAYOUT_SEED004 ? SEED004_KEY : 0;
}

size_t wire_response_header_size(const struct wire_dialect *d)
{
	return d->code_at + 2 + 4;
}

void wire_parse_response_header(const struct wire_dialect *d, const uint8_t *buf, struct wire_response_header *h)
{
	h->version = buf[0];
	h->code = wire_get_u16(buf + d->code_at);
	h->payload_size = wire_get_u32(buf + d->code_at + 2);
}

int wire_frame_request(const struct wire_dialect *d, const struct wire_request_spec *rq, uint32_t payload_size,
                       struct wire_frame *f)
{
	return d->frame_request(d, rq, payload_size, f);
}

void wire_payload_bounds(const struct wire_dialect *d, const struct wire_request_spec *rq, uint32_t *min, uint32_t *max)
{
	d->bounds(rq, min, max);
}

size_t wire_content_size_lead(const struct wire_request_spec *rq)
{
	return rq->kind == WIRE_KIND_FILE ? (rq->flags & WIRE_ID_LEADS ? ID : 0) + SIZE : 0;
}

uint32_t wire_get_content_size(const struct wire_request_spec *rq, const uint8_t *lead)
{
	return wire_get_u32(lead + wire_content_size_lead(rq) - SIZE);
}

/*
 * The body: [client_id] [content_size] name [public_key], as the row and
 * its kind say. A register body of fewer bytes than the name field is the
 * short-name tolerance: those bytes are the field, NUL-padded.
 */
int wire_parse_request_body(const struct wire_dialect *d, const struct wire_request_spec *rq, const uint8_t *buf,
                            size_t len, struct wire_request_body *b)
{
	struct wire_request_body out = {0};
	size_t fixed = fixed_size(rq), off = 0;
	bool short_name =
	    (d->tolerances & WIRE_TOLERATE_SHORT_NAME) && rq->kind == WIRE_KIND_REGISTER && len >= 1 && len < fixed;

	if (short_name) {
		*b = out;
		memcpy(b->field, buf, len);
		b->name = b->field;
		return 0;
	}
	if (rq->kind == WIRE_KIND_PUBLIC_KEY ? len < fixed + WIRE_KEY_FIELD_MIN || len > fixed + WIRE_KEY_FIELD_MAX
	                                     : len != fixed)
		return -EBADMSG;
	if (rq->flags & WIRE_ID_LEADS) {
		out.id = buf;
		off += ID;
	}
	if (rq->kind == WIRE_KIND_FILE) {
		out.content_size = wire_get_u32(buf + off);
		off += SIZE;
	}
	out.name = buf + off;
	off += NAME;
	if (rq->kind == WIRE_KIND_PUBLIC_KEY) {
		out.key = buf + off;
		out.key_len = len - off;
	}
	*b = out;
	return 0;
}

enum wire_body_error wire_check_request_body(const struct wire_dialect *d, const struct wire_request_spec *rq,
                                             const struct wire_request_header *h, struct wire_request_body *b,
                                             struct wire_frame *f)
{
	if ((rq->flags & WIRE_ID_LEADS) && memcmp(b->id, h->client_id, ID) != 0)
		return WIRE_BODY_ID_DIFFERS;
	return d->check_body(rq, h, b, f);
}

int wire_build_request(const struct wire_dialect *d, const struct wire_request_spec *rq, const uint8_t id[WIRE_ID_SIZE],
                       const struct wire_request_body *b, uint8_t *buf, size_t cap, size_t *len)
{
	struct wire_request_header h = {.version = WIRE_CLIENT_VERSION, .code = rq->code};
	size_t key_len = rq->kind == WIRE_KIND_PUBLIC_KEY ? b->key_len : 0;
	uint64_t payload_size;
	uint32_t body_len;
	uint8_t *p;

	if (!b->name || (key_len && !b->key))
		return -EINVAL;
	if (key_len > UINT32_MAX - NAME || cap < WIRE_REQUEST_HEADER_SIZE + fixed_size(rq) + key_len)
		return -EMSGSIZE;
	body_len = fixed_size(rq) + (uint32_t)key_len;
	payload_size = d->payload_size(rq, b, body_len);
	if (payload_size > UINT32_MAX)
		return -EMSGSIZE;
	h.payload_size = (uint32_t)payload_size;
	if (id)
		memcpy(h.client_id, id, ID);
	p = buf + WIRE_REQUEST_HEADER_SIZE;
	if (rq->flags & WIRE_ID_LEADS) {
		memcpy(p, h.client_id, ID);
		p += ID;
	}
	if (rq->kind == WIRE_KIND_FILE) {
		wire_put_u32(p, b->content_size);
		p += SIZE;
	}
	if (d->put_name(rq, p, b->name) < 0)
		return -EMSGSIZE;
	p += NAME;
	if (key_len)
		memcpy(p, b->key, key_len);
	wire_build_request_header(buf, &h);
	*len = WIRE_REQUEST_HEADER_SIZE + body_len;
	return 0;
}

uint64_t wire_content_size(uint64_t plaintext)
{
	return plaintext / BLOCK * BLOCK + BLOCK;
}

uint64_t wire_max_plaintext(const struct wire_dialect *d, const struct wire_request_spec *rq)
{
	const struct wire_request_body none = {0};
	uint64_t overhead = d->payload_size(rq, &none, fixed_size(rq));

	/* The largest whole number of blocks that fits payload_size, less the one byte PKCS#7 always adds. */
	return ((UINT32_MAX - overhead) & ~(uint64_t)(BLOCK - 1)) - 1;
}

size_t wire_file_name_max(const struct wire_dialect *d, const struct wire_request_spec *rq)
{
	return d->layout == LAYOUT_SEED004 && seed004_own(rq) && rq->kind == WIRE_KIND_FILE
	           ? WIRE_NAME_MAX - SEED004_SUFFIX_LEN
	           : WIRE_NAME_MAX;
}

/* Payload bytes of the fields of rs but a key and the optional id of 2104 (the longest checksum field). */
static size_t response_fixed(const struct wire_dialect *d, const struct wire_response_spec *rs)
{
	return (rs->fields & WIRE_FIELD_ID ? ID : 0) +
	       (rs->fields & WIRE_FIELD_RECEIVED ? SIZE + NAME + d->checksum_size : 0);
}

int wire_build_response(const struct wire_dialect *d, uint16_t code, const struct wire_response_body *b, uint8_t *buf,
                        size_t cap, size_t *len)
{
	static const struct wire_response_body none;
	const struct wire_response_spec *rs = wire_find_response(code);
	const size_t head = wire_response_header_size(d);
	const uint8_t *id;
	size_t payload, key_len;
	uint8_t *p;

	if (!b)
		b = &none;
	if (!rs || ((rs->fields & WIRE_FIELD_ID) && !b->id) || ((rs->fields & WIRE_FIELD_RECEIVED) && !b->name) ||
	    ((rs->fields & WIRE_FIELD_KEY) && (b->key_len == 0 || b->key_len > WIRE_ENCRYPTED_KEY_MAX)))
		return -EINVAL;
	id = rs->fields & (WIRE_FIELD_ID | WIRE_FIELD_ID_OPT) ? b->id : NULL;
	key_len = rs->fields & WIRE_FIELD_KEY ? b->key_len : 0;
	payload = response_fixed(d, rs) + (rs->fields & WIRE_FIELD_ID_OPT && id ? ID : 0) + key_len;
	if (cap < head + payload)
		return -EMSGSIZE;
	buf[0] = WIRE_SERVER_VERSION;
	memset(buf + 1, 0, d->code_at - 1);
	wire_put_u16(buf + d->code_at, code);
	wire_put_u32(buf + d->code_at + 2, (uint32_t)payload);
	p = buf + head;
	if (id) {
		memcpy(p, id, ID);
		p += ID;
	}
	if (key_len) {
		memcpy(p, b->key, key_len);
		p += key_len;
	}
	if (rs->fields & WIRE_FIELD_RECEIVED) {
		wire_put_u32(p, b->content_size);
		memcpy(p + SIZE, b->name, NAME);
		d->put_checksum(p + SIZE + NAME, b->checksum);
	}
	*len = head + payload;
	return 0;
}

int wire_parse_response_body(const struct wire_dialect *d, uint16_t code, const uint8_t *payload, size_t len,
                             struct wire_response_body *b)
{
	const struct wire_response_spec *rs = wire_find_response(code);
	struct wire_response_body out = {0};
	size_t fixed;
	bool fits;

	if (!rs)
		return -EINVAL;
	fixed = response_fixed(d, rs);
	if (rs->fields & WIRE_FIELD_ID_OPT)
		fits = len == 0 || len == ID;
	else if (rs->fields & WIRE_FIELD_KEY)
		fits = len > fixed && len - fixed <= WIRE_ENCRYPTED_KEY_MAX;
	else if (rs->fields & WIRE_FIELD_RECEIVED)
		fits = len <= fixed && len + d->checksum_size >= fixed + d->checksum_min;
	else
		fits = len == fixed;
	if (!fits)
		return -EBADMSG;
	if ((rs->fields & WIRE_FIELD_ID) || ((rs->fields & WIRE_FIELD_ID_OPT) && len == ID))
		out.id = payload;
	if (rs->fields & WIRE_FIELD_KEY) {
		out.key = payload + ID;
		out.key_len = len - ID;
	}
	if (rs->fields & WIRE_FIELD_RECEIVED) {
		out.content_size = wire_get_u32(payload + ID);
		out.name = payload + ID + SIZE;
		if (d->get_checksum(payload + ID + SIZE + NAME, len - (ID + SIZE + NAME), &out.checksum) < 0)
			return -EBADMSG;
	}
	*b = out;
	return 0;
}

/* efserver-protocol(7), "Names". */
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

enum wire_name_error wire_check_new_client_name(const uint8_t field[WIRE_NAME_SIZE], size_t *len)
{
	char name[WIRE_NAME_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	enum wire_name_error e;
	size_t n;

	if ((e = wire_check_name(field, true, &n)) != WIRE_NAME_OK)
		return e;
	memcpy(name, field, n + 1);
	*len = n;
	return wire_id_from_hex(name, id) == 0 ? WIRE_NAME_LIKE_ID : WIRE_NAME_OK;
}

const char *wire_name_error_str(enum wire_name_error e)
{
	switch (e) {
	case WIRE_NAME_OK:
		return "is valid";
	case WIRE_NAME_NO_NUL:
		return "has no NUL terminator in its 255-byte field";
	case WIRE_NAME_EMPTY:
		return "is empty";
	case WIRE_NAME_CONTROL:
		return "holds a control character";
	case WIRE_NAME_NOT_UTF8:
		return "is not valid UTF-8";
	case WIRE_NAME_LIKE_ID:
		return "is shaped like a client id";
	}
	return "is invalid";
}

/* efserver-protocol(7), "Names": the part after the last '/' or '\'. */
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
	/* Where the 8-4-4-4-12 form has its dashes: before these digits. */
	static const size_t dash_before[] = {8, 12, 16, 20};
	size_t len = strlen(s), d = 0, i;
	uint8_t tmp[WIRE_ID_SIZE];
	bool dashed;
	int hi = -1, v;

	if (len != WIRE_ID_HEX_LEN && len != WIRE_ID_UUID_LEN)
		return -EINVAL;
	dashed = len == WIRE_ID_UUID_LEN;
	for (i = 0; i < len; i++) {
		if (dashed && d < 4 && i == dash_before[d] + d) {
			if (s[i] != '-')
				return -EINVAL;
			d++;
			continue;
		}
		if ((v = hex_value(s[i])) < 0)
			return -EINVAL;
		if (hi < 0) {
			hi = v;
		} else {
			tmp[(i - d) / 2] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	memcpy(id, tmp, WIRE_ID_SIZE);
	return 0;
}
