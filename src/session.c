/*
 * The protocol's flow: one table of request codes, one handler each
 * (PROTOCOL.md sections 2, 3, 7 and 8). Handlers decide the response;
 * the loop decides whether the connection goes on.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "der.h"
#include "failure.h"
#include "io.h"
#include "log.h"
#include "opts.h"
#include "session.h"
#include "store.h"
#include "vault.h"
#include "wire.h"

/* The largest payload other than a file's: name[255] and a 1024-byte key field. */
#define PAYLOAD_MAX  (WIRE_NAME_SIZE + WIRE_KEY_FIELD_MAX)
#define DUMP_MAX     64
#define RESPONSE_MAX (WIRE_ID_SIZE + DER_RSA_MAX_BITS / 8 + WIRE_NAME_SIZE)
#define NAME_ESC_MAX (4 * WIRE_NAME_SIZE + 8)

enum outcome {
	OUT_CONTINUE, /* answered (or silent by the rules); next request */
	OUT_CLOSE,    /* answered a framing or format error: close */
	OUT_DROP,     /* ended or timed out mid-request: close without a response */
	OUT_FAIL,     /* a server-side failure, answered with 2107: close */
};

/* Response rules of a request code. */
enum {
	ACK_WITH_ID = 1 << 0,    /* 2104 carries the client id (1025 set) */
	SILENT_SUCCESS = 1 << 1, /* no response on success (1105, 1106) */
};

struct session;
struct request_spec;
typedef enum outcome (*handler_fn)(struct session *s, const struct request_spec *rq);

struct request_spec {
	uint16_t code;
	uint16_t set;
	uint32_t min_payload;
	uint32_t max_payload;
	uint16_t format_error; /* the answer to a malformed request */
	bool id_in_payload;    /* 1103-1106: client_id[16] leads the payload */
	unsigned flags;
	handler_fn handle;
};

struct session {
	const struct session_config *cfg;
	struct store *st;
	struct vault *v;
	int in, out;
	int timeout_ms;
	struct wire_request_header hdr;
	char id_hex[WIRE_ID_HEX_SIZE];
	bool touched; /* last seen already updated by this request's own transaction */
	uint8_t *buf; /* SESSION_CHUNK bytes: payloads and file content */
};

static enum outcome handle_register(struct session *s, const struct request_spec *rq);
static enum outcome handle_public_key(struct session *s, const struct request_spec *rq);
static enum outcome handle_reconnect(struct session *s, const struct request_spec *rq);
static enum outcome handle_file(struct session *s, const struct request_spec *rq);
static enum outcome handle_crc_ok(struct session *s, const struct request_spec *rq);
static enum outcome handle_crc_retry(struct session *s, const struct request_spec *rq);
static enum outcome handle_crc_abort(struct session *s, const struct request_spec *rq);

#define NAME          WIRE_NAME_SIZE
#define ID            WIRE_ID_SIZE
#define KEY_MIN       (NAME + WIRE_KEY_FIELD_MIN)
#define KEY_MAX       (NAME + WIRE_KEY_FIELD_MAX)
#define FILE_MIN_1025 (WIRE_FILE_FIXED_1025 + WIRE_AES_BLOCK)
#define FILE_MIN_1100 (WIRE_FILE_FIXED_1100 + WIRE_AES_BLOCK)

/* PROTOCOL.md section 2 (payloads) and 3 (which request gets which response). */
static const struct request_spec requests[] = {
    {REQ_REGISTER, 1025, NAME, NAME, RESP_REGISTER_REFUSED, false, 0, handle_register},
    {REQ_PUBLIC_KEY, 1025, KEY_MIN, KEY_MAX, RESP_ERROR, false, 0, handle_public_key},
    {REQ_RECONNECT, 1025, NAME, NAME, RESP_ERROR, false, 0, handle_reconnect},
    {REQ_FILE, 1025, FILE_MIN_1025, UINT32_MAX, RESP_ERROR, false, 0, handle_file},
    {REQ_CRC_OK, 1025, NAME, NAME, RESP_ERROR, false, ACK_WITH_ID, handle_crc_ok},
    {REQ_CRC_RETRY, 1025, NAME, NAME, RESP_ERROR, false, ACK_WITH_ID, handle_crc_retry},
    {REQ_CRC_ABORT, 1025, NAME, NAME, RESP_ERROR, false, ACK_WITH_ID, handle_crc_abort},
    {REQ_REGISTER_1100, 1100, NAME, NAME, RESP_REGISTER_REFUSED, false, 0, handle_register},
    {REQ_PUBLIC_KEY_1100, 1100, KEY_MIN, KEY_MAX, RESP_ERROR, false, 0, handle_public_key},
    {REQ_FILE_1100, 1100, FILE_MIN_1100, UINT32_MAX, RESP_ERROR, true, 0, handle_file},
    {REQ_CRC_OK_1100, 1100, ID + NAME, ID + NAME, RESP_ERROR, true, 0, handle_crc_ok},
    {REQ_CRC_RETRY_1100, 1100, ID + NAME, ID + NAME, RESP_ERROR, true, SILENT_SUCCESS, handle_crc_retry},
    {REQ_CRC_ABORT_1100, 1100, ID + NAME, ID + NAME, RESP_ERROR, true, SILENT_SUCCESS, handle_crc_abort},
};

static const struct request_spec *find_request(uint16_t code)
{
	size_t i;

	for (i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
		if (requests[i].code == code)
			return &requests[i];
	return NULL;
}

static bool is_register(uint16_t code)
{
	return code == REQ_REGISTER || code == REQ_REGISTER_1100;
}

static int respond(struct session *s, uint16_t code, const void *payload, size_t len, bool dump_payload)
{
	uint8_t msg[WIRE_RESPONSE_HEADER_SIZE + RESPONSE_MAX];
	int r;

	if (len > RESPONSE_MAX)
		return -EMSGSIZE;
	wire_build_response_header(msg, code, (uint32_t)len);
	if (len)
		memcpy(msg + WIRE_RESPONSE_HEADER_SIZE, payload, len);
	log_debug("Answering %u (%s) with %zu bytes of payload.", code, wire_response_name(code), len);
	if (s->cfg->debug) {
		log_hexdump("response header", msg, WIRE_RESPONSE_HEADER_SIZE, WIRE_RESPONSE_HEADER_SIZE);
		if (dump_payload && len)
			log_hexdump("response payload", payload, len, DUMP_MAX);
	}
	r = io_write_full(s->out, msg, WIRE_RESPONSE_HEADER_SIZE + len, s->timeout_ms);
	if (r < 0)
		log_notice("Could not send response %u: %s.", code, strerror(-r));
	return r;
}

/* A malformed request: its documented answer, then the connection is closed (PROTOCOL.md section 7). */
__attribute__((format(printf, 3, 4))) static enum outcome format_error(struct session *s, const struct request_spec *rq,
                                                                       const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warning("Malformed request %u (%s): %s; answering %u and closing the connection.", s->hdr.code,
	            wire_request_name(s->hdr.code), why, rq ? rq->format_error : RESP_ERROR);
	(void)respond(s, rq ? rq->format_error : RESP_ERROR, NULL, 0, false);
	return OUT_CLOSE;
}

/* A refusal with the framing intact: answered, and the connection goes on. */
__attribute__((format(printf, 5, 6))) static enum outcome refuse(struct session *s, uint16_t code, const void *payload,
                                                                 size_t len, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_notice("Refused request %u (%s): %s; answered %u.", s->hdr.code, wire_request_name(s->hdr.code), why, code);
	return respond(s, code, payload, len, true) < 0 ? OUT_DROP : OUT_CONTINUE;
}

/* A failure of ours (disk, database): 2107 and close, so a client never waits on a broken server. */
__attribute__((format(printf, 3, 4))) static enum outcome server_error(struct session *s, int err, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	log_error("%s: %s; answering 2107 and closing the connection.", what, failure_str(err));
	(void)respond(s, RESP_ERROR, NULL, 0, false);
	return OUT_FAIL;
}

/* Read len bytes of the request within the idle timeout; false when the connection ended or went quiet. */
static bool read_exact(struct session *s, void *buf, size_t len, const char *what)
{
	ssize_t n = io_read_full(s->in, buf, len, s->timeout_ms);

	if (n == (ssize_t)len)
		return true;
	if (n == -ETIMEDOUT)
		log_notice("No data for %u s while reading %s of request %u; closing the connection.",
		           s->cfg->idle_timeout, what, s->hdr.code);
	else if (n >= 0)
		log_notice("The connection ended in the middle of %s of request %u.", what, s->hdr.code);
	else
		log_notice("Reading %s of request %u failed: %s.", what, s->hdr.code, strerror((int)-n));
	return false;
}

/*
 * Read a whole small payload into s->buf and check the client_id that
 * 1103-1106 repeat there (PROTOCOL.md section 2).
 */
static enum outcome read_payload(struct session *s, const struct request_spec *rq, size_t len)
{
	if (!read_exact(s, s->buf, len, "the payload"))
		return OUT_DROP;
	if (s->cfg->debug)
		log_hexdump("request payload", s->buf,
		            rq->code == REQ_PUBLIC_KEY || rq->code == REQ_PUBLIC_KEY_1100 ? (len < NAME ? len : NAME)
		                                                                          : len,
		            DUMP_MAX);
	if (rq->id_in_payload && memcmp(s->buf, s->hdr.client_id, ID) != 0)
		return format_error(s, rq, "the client_id in the payload differs from the header's");
	return OUT_CONTINUE;
}

/* A name[255] field as a C string; utf8 for client names (PROTOCOL.md section 8). */
static bool take_name(const uint8_t *field, bool utf8, char out[NAME], enum wire_name_error *err)
{
	size_t len;

	*err = wire_check_name(field, utf8, &len);
	if (*err != WIRE_NAME_OK)
		return false;
	memcpy(out, field, len);
	out[len] = '\0';
	return true;
}

static const char *esc(const char *s, char buf[NAME_ESC_MAX])
{
	return log_escape(s, strlen(s), buf, NAME_ESC_MAX);
}

/*
 * A file_name[255] field: valid (PROTOCOL.md section 8), with a usable base
 * name (section 6), and the path it is stored under.
 */
static enum outcome take_file_name(struct session *s, const struct request_spec *rq, const uint8_t *field,
                                   char name[NAME], char base[NAME], char path[STORE_PATH_MAX])
{
	char e1[NAME_ESC_MAX];
	enum wire_name_error ne;
	const char *b;
	size_t blen;

	if (!take_name(field, false, name, &ne))
		return format_error(s, rq, "the file name is %s", wire_name_error_str(ne));
	if (wire_base_name(name, strlen(name), &b, &blen) < 0)
		return format_error(s, rq, "the file name '%s' has no usable base name", esc(name, e1));
	memcpy(base, b, blen);
	base[blen] = '\0';
	log_context_file(name, -1);
	if (vault_path_name(s->hdr.client_id, base, path, STORE_PATH_MAX) < 0)
		return format_error(s, rq, "the file name '%s' is too long", esc(name, e1));
	return OUT_CONTINUE;
}

static enum outcome handle_register(struct session *s, const struct request_spec *rq)
{
	char name[NAME], e1[NAME_ESC_MAX];
	uint8_t id[ID];
	enum wire_name_error ne;
	enum outcome o;
	int r;

	if ((o = read_payload(s, rq, NAME)) != OUT_CONTINUE)
		return o;
	if (!take_name(s->buf, true, name, &ne))
		return format_error(s, rq, "the client name is %s", wire_name_error_str(ne));
	crypto_new_client_id(id);
	r = store_register_client(s->st, id, name);
	if (r == -EEXIST)
		return refuse(s, RESP_REGISTER_REFUSED, NULL, 0, "the name '%s' is already registered", esc(name, e1));
	if (r < 0)
		return server_error(s, r, "Could not register '%s'", esc(name, e1));
	log_context_client(id, name);
	wire_id_to_hex(id, s->id_hex);
	log_info("Registered '%s' as client %s.", esc(name, e1), s->id_hex);
	return respond(s, RESP_REGISTERED, id, ID, true) < 0 ? OUT_DROP : OUT_CONTINUE;
}

/* A fresh AES key, RSA-OAEP-encrypted for key, into msg after the client id (PROTOCOL.md section 4). */
static int new_aes_key(struct session *s, const struct der_rsa_key *key, uint8_t aes[CRYPTO_AES_MAX_KEY], uint8_t *msg,
                       size_t msg_size, size_t *msg_len)
{
	size_t enc_len;
	int r;

	crypto_random(aes, s->cfg->aes_key_len);
	memcpy(msg, s->hdr.client_id, ID);
	r = crypto_oaep_encrypt(key, aes, s->cfg->aes_key_len, msg + ID, msg_size - ID, &enc_len);
	if (r < 0)
		return r;
	*msg_len = ID + enc_len;
	return 0;
}

static enum outcome handle_public_key(struct session *s, const struct request_spec *rq)
{
	uint8_t spki[DER_RSA_SPKI_MAX], aes[CRYPTO_AES_MAX_KEY], msg[RESPONSE_MAX];
	char name[NAME], e1[NAME_ESC_MAX];
	size_t klen = s->hdr.payload_size - NAME, msg_len;
	struct der_rsa_key key;
	enum wire_name_error ne;
	enum der_error de;
	enum outcome o;
	long spki_len;
	int r;

	if ((o = read_payload(s, rq, s->hdr.payload_size)) != OUT_CONTINUE)
		return o;
	if (!take_name(s->buf, true, name, &ne))
		return format_error(s, rq, "the client name is %s", wire_name_error_str(ne));
	if ((de = der_read_rsa_public(s->buf + NAME, klen, &key)) != DER_OK)
		return format_error(s, rq, "the public key (%zu bytes) is refused: %s", klen, der_error_str(de));
	spki_len = der_write_rsa_spki(key.n, key.n_len, key.e, key.e_len, spki, sizeof(spki));
	if (spki_len < 0)
		return server_error(s, (int)spki_len, "Could not encode the public key of '%s'", esc(name, e1));
	if ((r = new_aes_key(s, &key, aes, msg, sizeof(msg), &msg_len)) < 0) {
		crypto_wipe(aes, sizeof(aes));
		return server_error(s, r, "Could not encrypt an AES key for '%s'", esc(name, e1));
	}
	r = store_set_keys(s->st, s->hdr.client_id, name, spki, (size_t)spki_len, aes, s->cfg->aes_key_len);
	crypto_wipe(aes, sizeof(aes));
	if (r == -ENOENT)
		return refuse(s, RESP_ERROR, NULL, 0, "client %s is not registered under the name '%s'", s->id_hex,
		              esc(name, e1));
	if (r == -EPERM)
		return refuse(s, RESP_ERROR, NULL, 0, "client '%s' already has a different public key", esc(name, e1));
	if (r < 0)
		return server_error(s, r, "Could not store the keys of '%s'", esc(name, e1));
	s->touched = true;
	log_context_client(s->hdr.client_id, name);
	log_info("Sent a new %zu-bit AES key to '%s', encrypted with its %u-bit RSA key.", s->cfg->aes_key_len * 8,
	         esc(name, e1), key.bits);
	return respond(s, RESP_AES_KEY, msg, msg_len, false) < 0 ? OUT_DROP : OUT_CONTINUE;
}

static enum outcome handle_reconnect(struct session *s, const struct request_spec *rq)
{
	uint8_t aes[CRYPTO_AES_MAX_KEY], msg[RESPONSE_MAX];
	char name[NAME], e1[NAME_ESC_MAX], e2[NAME_ESC_MAX];
	struct store_client c;
	struct der_rsa_key key;
	enum wire_name_error ne;
	enum outcome o;
	size_t msg_len;
	int r;

	if ((o = read_payload(s, rq, NAME)) != OUT_CONTINUE)
		return o;
	if (!take_name(s->buf, true, name, &ne))
		return format_error(s, rq, "the client name is %s", wire_name_error_str(ne));
	r = store_get_client(s->st, s->hdr.client_id, &c);
	if (r < 0 && r != -ENOENT)
		return server_error(s, r, "Could not look up client %s", s->id_hex);
	crypto_wipe(c.aes_key, sizeof(c.aes_key));
	if (r == -ENOENT)
		return refuse(s, RESP_RECONNECT_REFUSED, s->hdr.client_id, ID, "client %s is not registered",
		              s->id_hex);
	if (strcmp(c.name, name) != 0)
		return refuse(s, RESP_RECONNECT_REFUSED, s->hdr.client_id, ID,
		              "client %s is registered as '%s', not '%s'", s->id_hex, esc(c.name, e1), esc(name, e2));
	log_context_client(c.id, c.name);
	if (c.public_key_len == 0)
		return refuse(s, RESP_RECONNECT_REFUSED, s->hdr.client_id, ID, "'%s' has no public key stored",
		              esc(name, e1));
	if (der_read_rsa_public(c.public_key, c.public_key_len, &key) != DER_OK)
		return server_error(s, -EPROTO, "The stored public key of '%s' is unreadable", esc(name, e1));
	if ((r = new_aes_key(s, &key, aes, msg, sizeof(msg), &msg_len)) < 0) {
		crypto_wipe(aes, sizeof(aes));
		return server_error(s, r, "Could not encrypt an AES key for '%s'", esc(name, e1));
	}
	r = store_set_aes_key(s->st, s->hdr.client_id, aes, s->cfg->aes_key_len);
	crypto_wipe(aes, sizeof(aes));
	if (r == -ENOENT)
		return refuse(s, RESP_RECONNECT_REFUSED, s->hdr.client_id, ID, "client %s vanished", s->id_hex);
	if (r < 0)
		return server_error(s, r, "Could not store the new AES key of '%s'", esc(name, e1));
	s->touched = true;
	log_info("Reconnected '%s' with a new %zu-bit AES key.", esc(name, e1), s->cfg->aes_key_len * 8);
	return respond(s, RESP_RECONNECTED, msg, msg_len, false) < 0 ? OUT_DROP : OUT_CONTINUE;
}

struct publication {
	struct vault_file *file;
	const char *base;
	bool published;
};

static int publish(void *ctx)
{
	struct publication *p = ctx;
	int r = vault_publish(p->file, p->base);

	p->published = r == 0 || p->published;
	return r;
}

/*
 * Stream the content: read a chunk, checksum (ciphertext or plaintext),
 * decrypt in place, strip the padding at the end, write. One pass, memory
 * bounded by SESSION_CHUNK (ARCHITECTURE.md, "How a request flows").
 * Returns OUT_CONTINUE with *bad_padding set or not, OUT_DROP, or OUT_FAIL.
 */
static enum outcome receive_content(struct session *s, struct crypto_cbc *cbc, struct cksum_state *ck,
                                    struct vault_file *file, uint32_t content_size, uint64_t *plain_size,
                                    bool *bad_padding)
{
	bool over_cipher = cksum_over_ciphertext(s->cfg->checksum), first = true;
	uint32_t remaining = content_size;
	size_t n, out_len, pad;
	int r;

	*plain_size = 0;
	*bad_padding = false;
	while (remaining > 0) {
		n = remaining < SESSION_CHUNK ? remaining : SESSION_CHUNK;
		if (!read_exact(s, s->buf, n, "the file content"))
			return OUT_DROP;
		if (first && s->cfg->debug)
			log_hexdump("file content (encrypted)", s->buf, n, DUMP_MAX);
		first = false;
		if (over_cipher)
			cksum_update(ck, s->buf, n);
		if ((r = crypto_cbc_run(cbc, s->buf, n)) < 0) {
			server_error(s, r, "AES decryption failed");
			return OUT_FAIL;
		}
		remaining -= (uint32_t)n;
		out_len = n;
		if (remaining == 0) {
			if (crypto_pkcs7_check(s->buf + n - WIRE_AES_BLOCK, &pad) < 0) {
				*bad_padding = true;
				return OUT_CONTINUE;
			}
			out_len -= pad;
		}
		if (!over_cipher)
			cksum_update(ck, s->buf, out_len);
		if ((r = vault_write(file, s->buf, out_len)) < 0) {
			server_error(s, r, "Could not write the received file");
			return OUT_FAIL;
		}
		*plain_size += out_len;
	}
	return OUT_CONTINUE;
}

static enum outcome handle_file(struct session *s, const struct request_spec *rq)
{
	const uint32_t fixed = rq->id_in_payload ? WIRE_FILE_FIXED_1100 : WIRE_FILE_FIXED_1025;
	const uint32_t content = s->hdr.payload_size - fixed;
	const size_t id_off = rq->id_in_payload ? ID : 0;
	char name[NAME], base[NAME], e1[NAME_ESC_MAX], e2[NAME_ESC_MAX], hs[32], hm[32];
	uint8_t field[NAME], msg[WIRE_2103_SIZE];
	struct publication pub = {0};
	struct crypto_cbc *cbc = NULL;
	struct cksum_state ck = {0};
	struct store_client c;
	struct store_file f = {0};
	uint64_t plain_size;
	uint32_t sum, reported;
	long long attempts;
	bool bad_padding;
	enum outcome o;
	int r;

	/* Everything decidable from the header is decided before a byte of payload is read. */
	if (content % WIRE_AES_BLOCK)
		return format_error(s, rq, "content of %u bytes is not a whole number of AES blocks", content);
	if (s->cfg->max_file_size && content > s->cfg->max_file_size)
		return format_error(s, rq, "content of %s is above the limit of %s",
		                    opts_human_size(content, hs, sizeof(hs)),
		                    opts_human_size(s->cfg->max_file_size, hm, sizeof(hm)));
	if (!read_exact(s, s->buf, fixed, "the fixed fields"))
		return OUT_DROP;
	if (s->cfg->debug)
		log_hexdump("request payload", s->buf, fixed, DUMP_MAX);
	if (rq->id_in_payload && memcmp(s->buf, s->hdr.client_id, ID) != 0)
		return format_error(s, rq, "the client_id in the payload differs from the header's");
	if (wire_get_u32(s->buf + id_off) != content)
		return format_error(s, rq, "content_size %u does not match payload_size %u (it should be %u)",
		                    wire_get_u32(s->buf + id_off), s->hdr.payload_size, content);
	memcpy(field, s->buf + id_off + 4, NAME);
	if ((o = take_file_name(s, rq, field, name, base, f.path_name)) != OUT_CONTINUE)
		return o;

	r = store_get_client(s->st, s->hdr.client_id, &c);
	if (r < 0 && r != -ENOENT)
		return server_error(s, r, "Could not look up client %s", s->id_hex);
	if (r == -ENOENT) {
		log_warning("Refused file '%s': client %s is not registered; closing without reading the content.",
		            esc(name, e1), s->id_hex);
		(void)respond(s, RESP_ERROR, NULL, 0, false);
		return OUT_CLOSE;
	}
	log_context_client(c.id, c.name);
	if (c.aes_key_len == 0) {
		log_warning("Refused file '%s': no AES key was ever sent to '%s'; closing without reading the content.",
		            esc(name, e1), esc(c.name, e2));
		(void)respond(s, RESP_ERROR, NULL, 0, false);
		return OUT_CLOSE;
	}
	r = crypto_cbc_new(&cbc, c.aes_key, c.aes_key_len, false);
	crypto_wipe(c.aes_key, sizeof(c.aes_key));
	if (r < 0)
		return server_error(s, r, "Could not set up AES for '%s'", esc(c.name, e1));
	if ((r = cksum_init(&ck, s->cfg->checksum)) < 0) {
		crypto_cbc_free(cbc);
		return server_error(s, r, "Could not set up the checksum");
	}
	if ((r = vault_create(s->v, s->hdr.client_id, &pub.file)) < 0) {
		o = server_error(s, r, "Could not create a file for '%s' in the state directory", esc(name, e1));
		goto out;
	}
	o = receive_content(s, cbc, &ck, pub.file, content, &plain_size, &bad_padding);
	if (o != OUT_CONTINUE) {
		if (o == OUT_DROP)
			log_notice("Nothing of '%s' was kept.", esc(name, e1));
		goto out;
	}
	if (bad_padding) {
		o = refuse(s, RESP_ERROR, NULL, 0,
		           "the padding of '%s' does not check out (wrong key or corrupt content); nothing was kept",
		           esc(name, e1));
		goto out;
	}
	sum = cksum_final(&ck);
	/* On disk before the database's write lock is taken, so concurrent uploads do not queue behind this fsync. */
	if ((r = vault_flush(pub.file)) < 0) {
		o = server_error(s, r, "Could not write '%s' to disk", esc(name, e1));
		goto out;
	}

	memcpy(f.client_id, s->hdr.client_id, ID);
	snprintf(f.file_name, sizeof(f.file_name), "%s", name);
	f.size = plain_size;
	f.checksum = sum;
	pub.base = base;
	r = store_record_file(s->st, &f, publish, &pub, &attempts);
	if (r < 0) {
		if (pub.published)
			(void)vault_remove(s->v, s->hdr.client_id, base);
		o = server_error(s, r, "Could not store '%s'", esc(name, e1));
		goto out;
	}
	s->touched = true;
	reported = (uint64_t)attempts <= s->cfg->fault_checksum ? sum + 1 : sum;
	log_context_file(name, (long long)plain_size);
	log_info("Stored %s for %s: %s, checksum %u%s.", esc(name, e1), esc(c.name, e2),
	         opts_human_size(plain_size, hs, sizeof(hs)), sum,
	         reported != sum ? " (reporting a wrong one on purpose)" : "");

	memcpy(msg, s->hdr.client_id, ID);
	wire_put_u32(msg + ID, content);
	memcpy(msg + ID + 4, field, NAME);
	wire_put_u32(msg + ID + 4 + NAME, reported);
	o = respond(s, RESP_FILE_RECEIVED, msg, sizeof(msg), true) < 0 ? OUT_DROP : OUT_CONTINUE;
out:
	vault_discard(pub.file);
	cksum_free(&ck);
	crypto_cbc_free(cbc);
	return o;
}

/* What 1029-1031 and 1104-1106 do once their request is read and checked. */
enum crc_action { CRC_OK, CRC_RETRY, CRC_ABORT };

struct removal {
	struct vault *v;
	const uint8_t *id;
	const char *base;
};

static int remove_copy(void *ctx)
{
	struct removal *rm = ctx;

	return vault_remove(rm->v, rm->id, rm->base);
}

static enum outcome handle_crc(struct session *s, const struct request_spec *rq, enum crc_action action)
{
	static const char *const verbs[] = {"confirmed", "will resend", "gave up on"};
	const size_t off = rq->id_in_payload ? ID : 0;
	char name[NAME], base[NAME], path[STORE_PATH_MAX], e1[NAME_ESC_MAX];
	struct removal rm = {s->v, s->hdr.client_id, base};
	enum outcome o;
	int r;

	if ((o = read_payload(s, rq, s->hdr.payload_size)) != OUT_CONTINUE)
		return o;
	if ((o = take_file_name(s, rq, s->buf + off, name, base, path)) != OUT_CONTINUE)
		return o;

	switch (action) {
	case CRC_OK:
		r = store_mark_verified(s->st, s->hdr.client_id, path, name);
		break;
	case CRC_RETRY:
		r = store_check_file(s->st, s->hdr.client_id, path, name);
		break;
	case CRC_ABORT:
		r = store_give_up(s->st, s->hdr.client_id, path, name, remove_copy, &rm);
		break;
	}
	if (r == -ENOENT)
		return refuse(s, RESP_ERROR, NULL, 0, "client %s has no file '%s' to confirm", s->id_hex,
		              esc(name, e1));
	if (r < 0)
		return server_error(s, r, "Could not record that client %s %s '%s'", s->id_hex, verbs[action],
		                    esc(name, e1));
	s->touched = true;
	if (action == CRC_ABORT)
		log_warning("Client %s gave up on '%s' after checksum mismatches; its copy was removed.", s->id_hex,
		            esc(name, e1));
	else
		log_info("Client %s %s '%s'.", s->id_hex, verbs[action], esc(name, e1));
	if (rq->flags & SILENT_SUCCESS)
		return OUT_CONTINUE;
	if (rq->flags & ACK_WITH_ID)
		return respond(s, RESP_ACK, s->hdr.client_id, ID, true) < 0 ? OUT_DROP : OUT_CONTINUE;
	return respond(s, RESP_ACK, NULL, 0, false) < 0 ? OUT_DROP : OUT_CONTINUE;
}

static enum outcome handle_crc_ok(struct session *s, const struct request_spec *rq)
{
	return handle_crc(s, rq, CRC_OK);
}

static enum outcome handle_crc_retry(struct session *s, const struct request_spec *rq)
{
	return handle_crc(s, rq, CRC_RETRY);
}

static enum outcome handle_crc_abort(struct session *s, const struct request_spec *rq)
{
	return handle_crc(s, rq, CRC_ABORT);
}

static enum outcome serve_request(struct session *s)
{
	const struct request_spec *rq = find_request(s->hdr.code);
	enum outcome o;
	int r;

	wire_id_to_hex(s->hdr.client_id, s->id_hex);
	log_context_request(s->hdr.code);
	/* The header's id until the handler knows the client's name; never the previous request's. */
	log_context_client(is_register(s->hdr.code) ? NULL : s->hdr.client_id, NULL);
	log_context_file(NULL, -1);
	log_debug("Request %u (%s) from %s, version %u, %u bytes of payload.", s->hdr.code,
	          wire_request_name(s->hdr.code), s->id_hex, s->hdr.version, s->hdr.payload_size);
	if (!s->st || !s->v) {
		log_error("The state directory is unavailable; answering 2107 and closing the connection.");
		(void)respond(s, RESP_ERROR, NULL, 0, false);
		return OUT_FAIL;
	}
	s->touched = false;
	if (!rq)
		o = format_error(s, NULL, "unknown request code");
	else if (s->hdr.payload_size < rq->min_payload || s->hdr.payload_size > rq->max_payload)
		o = format_error(s, rq, "payload_size %u is outside %u..%u", s->hdr.payload_size, rq->min_payload,
		                 rq->min_payload == rq->max_payload ? rq->min_payload : rq->max_payload);
	else
		o = rq->handle(s, rq);
	/* PROTOCOL.md section 8: every request naming a known id updates last seen, refused or not. */
	if (!s->touched && !is_register(s->hdr.code) && (r = store_touch(s->st, s->hdr.client_id)) < 0)
		log_warning("Could not update last seen of client %s: %s.", s->id_hex, failure_str(r));
	return o;
}

enum session_end session_run(const struct session_config *cfg, struct store *st, struct vault *v, int in_fd, int out_fd)
{
	struct session s = {
	    .cfg = cfg,
	    .st = st,
	    .v = v,
	    .in = in_fd,
	    .out = out_fd,
	    .timeout_ms = cfg->idle_timeout && !cfg->debug ? (int)(cfg->idle_timeout * 1000) : -1,
	};
	uint8_t hdr[WIRE_REQUEST_HEADER_SIZE];
	enum session_end end = SESSION_PEER_ERROR;
	ssize_t n;

	s.buf = malloc(SESSION_CHUNK);
	if (!s.buf) {
		log_crit("Out of memory.");
		return SESSION_SYSTEM_ERROR;
	}
	for (;;) {
		log_context_request(0);
		log_context_file(NULL, -1);
		n = io_read_full(in_fd, hdr, sizeof(hdr), s.timeout_ms);
		if (n == 0) {
			log_debug("The client closed the connection.");
			end = SESSION_DONE;
			break;
		}
		if (n == -ETIMEDOUT) {
			log_notice("The connection was idle for %u s; closing it.", cfg->idle_timeout);
			break;
		}
		if (n < 0) {
			log_notice("Reading a request failed: %s; closing the connection.", strerror((int)-n));
			break;
		}
		if ((size_t)n < sizeof(hdr)) {
			log_notice("The connection ended in the middle of a request header (%zd of %zu bytes).", n,
			           sizeof(hdr));
			break;
		}
		if (cfg->debug)
			log_hexdump("request header", hdr, sizeof(hdr), sizeof(hdr));
		wire_parse_request_header(hdr, &s.hdr);
		switch (serve_request(&s)) {
		case OUT_CONTINUE:
			continue;
		case OUT_CLOSE:
		case OUT_DROP:
			end = SESSION_PEER_ERROR;
			break;
		case OUT_FAIL:
			end = SESSION_SYSTEM_ERROR;
			break;
		}
		break;
	}
	free(s.buf);
	return end;
}
