/*
 * The protocol's flow (efserver-protocol(7)): one handler per kind of
 * request, chosen through the codec's request table. Handlers decide the
 * response; the loop decides whether the connection goes on.
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

#define NAME         WIRE_NAME_SIZE
#define ID           WIRE_ID_SIZE
#define DUMP_MAX     64
#define NAME_ESC_MAX (4 * WIRE_NAME_SIZE + 8)
/* --min-rate's grace when the idle timeout, which it otherwise is, is off (efsession(8), Limits). */
#define RATE_GRACE_MS 30000

/* The settings of efsession(8), Limits, as the entry about a refusal names them (LIMIT=). */
static const char *const store_limit_names[STORE_LIMITS] = {
    [STORE_LIMIT_MAX_CLIENTS] = "max-clients",
    [STORE_LIMIT_REGISTRATIONS_PER_HOUR] = "registrations-per-hour",
    [STORE_LIMIT_CLIENT_QUOTA] = "client-quota",
    [STORE_LIMIT_CLIENT_MAX_FILES] = "client-max-files",
    [STORE_LIMIT_MAX_BAD_PADDINGS] = "max-bad-paddings",
};
#define LIMIT_MIN_FREE_SPACE "min-free-space"
#define LIMIT_MAX_REFUSALS   "max-refusals"
#define LIMIT_MIN_RATE       "min-rate"

enum outcome {
	OUT_CONTINUE, /* answered (or silent by the rules); next request */
	OUT_CLOSE,    /* answered a framing or format error: close */
	OUT_DROP,     /* ended or timed out mid-request: close without a response */
	OUT_FAIL,     /* a server-side failure, answered with 2107: close */
};

struct session {
	const struct session_config *cfg; /* &conn */
	struct session_config conn;       /* the server's settings, as the connection's dialect overrides them */
	struct store *st;
	struct vault *v;
	int in, out;
	int timeout_ms;
	const struct wire_dialect *dialect; /* the connection's */
	bool opening;                       /* its first request is being served */
	bool tentative;                     /* reading that request in the seed-004 dialect, not yet confirmed */
	struct wire_request_header hdr;
	struct wire_frame frame; /* how this request is read */
	uint64_t consumed;       /* bytes of its payload read so far */
	char id_hex[WIRE_ID_HEX_SIZE];
	bool touched;      /* last seen already updated by this request's own transaction */
	uint64_t refusals; /* answered on this connection, which goes on after them */
	uint8_t *buf;      /* SESSION_CHUNK bytes: payloads and file content */
};

/* How an upload's content has arrived so far, for --min-rate (efsession(8), Limits). */
struct pace {
	uint64_t min_rate; /* bytes a second it must average; 0: any */
	int64_t start;     /* io_now_ms() when its first byte came; 0: none yet */
	uint64_t got;      /* bytes of it read */
};

typedef enum outcome (*handler_fn)(struct session *s, const struct wire_request_spec *rq);

static enum outcome handle_register(struct session *s, const struct wire_request_spec *rq);
static enum outcome handle_public_key(struct session *s, const struct wire_request_spec *rq);
static enum outcome handle_reconnect(struct session *s, const struct wire_request_spec *rq);
static enum outcome handle_file(struct session *s, const struct wire_request_spec *rq);
static enum outcome handle_crc(struct session *s, const struct wire_request_spec *rq);

/* The handler of each kind of request; the request table in the codec has the rest. */
static const handler_fn handlers[WIRE_KINDS] = {
    [WIRE_KIND_REGISTER] = handle_register,   [WIRE_KIND_PUBLIC_KEY] = handle_public_key,
    [WIRE_KIND_RECONNECT] = handle_reconnect, [WIRE_KIND_FILE] = handle_file,
    [WIRE_KIND_CRC_OK] = handle_crc,          [WIRE_KIND_CRC_RETRY] = handle_crc,
    [WIRE_KIND_CRC_ABORT] = handle_crc,
};

/* Whether the dialect leaves this request without any answer, a refusal included (seed004: 1105, 1106). */
static bool muted(const struct session *s)
{
	const struct wire_request_spec *rq = wire_find_request(s->hdr.code);

	return rq && !wire_dialect_answers(s->dialect, rq);
}

/* A response with the fields of b (NULL: none), in the connection's dialect, in one write. */
static int respond(struct session *s, uint16_t code, const struct wire_response_body *b)
{
	uint8_t msg[WIRE_RESPONSE_HEADER_MAX + WIRE_RESPONSE_PAYLOAD_MAX];
	size_t head = wire_response_header_size(s->dialect), len;
	int r;

	if (muted(s)) {
		log_debug("Not answering %u: the %s dialect answers request %u with nothing.", code,
		          wire_dialect_name(s->dialect), s->hdr.code);
		return 0;
	}
	if ((r = wire_build_response(s->dialect, code, b, msg, sizeof(msg), &len)) < 0)
		return r;
	log_debug("Answering %u (%s) with %zu bytes of payload.", code, wire_response_name(code), len - head);
	if (s->cfg->debug) {
		log_hexdump("response header", msg, head, head);
		if (wire_find_response(code)->dump && len > head)
			log_hexdump("response payload", msg + head, len - head, DUMP_MAX);
	}
	r = io_write_full(s->out, msg, len, s->timeout_ms);
	if (r < 0)
		log_notice("Could not send response %u: %s.", code, strerror(-r));
	return r;
}

/* An answer after which the connection goes on, unless it could not be sent. */
static enum outcome answer(struct session *s, uint16_t code, const struct wire_response_body *b)
{
	return respond(s, code, b) < 0 ? OUT_DROP : OUT_CONTINUE;
}

/* A malformed request: its documented answer, then the connection is closed (efserver-protocol(7), "Errors"). */
__attribute__((format(printf, 3, 4))) static enum outcome
format_error(struct session *s, const struct wire_request_spec *rq, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (muted(s))
		log_warning("Malformed request %u (%s): %s; closing the connection without an answer (%s dialect).",
		            s->hdr.code, wire_request_name(s->hdr.code), why, wire_dialect_name(s->dialect));
	else
		log_warning("Malformed request %u (%s): %s; answering %u and closing the connection.", s->hdr.code,
		            wire_request_name(s->hdr.code), why, rq ? rq->format_error : RESP_ERROR);
	(void)respond(s, rq ? rq->format_error : RESP_ERROR, NULL);
	return OUT_CLOSE;
}

/*
 * A refusal with the framing intact, which limit (a setting of
 * efsession(8), Limits, or NULL) decided: answered, and the connection goes
 * on, unless it was the --max-refusals-th on this connection.
 */
__attribute__((format(printf, 5, 6))) static enum outcome
refuse_by(struct session *s, uint16_t code, const struct wire_response_body *b, const char *limit, const char *fmt, ...)
{
	char why[512];
	enum outcome o;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (muted(s))
		log_limit(LOG_NOTICE, limit, "Refused request %u (%s): %s; not answered (%s dialect).", s->hdr.code,
		          wire_request_name(s->hdr.code), why, wire_dialect_name(s->dialect));
	else
		log_limit(LOG_NOTICE, limit, "Refused request %u (%s): %s; answered %u.", s->hdr.code,
		          wire_request_name(s->hdr.code), why, code);
	if ((o = answer(s, code, b)) != OUT_CONTINUE || !s->cfg->max_refusals || ++s->refusals < s->cfg->max_refusals)
		return o;
	log_limit(LOG_NOTICE, LIMIT_MAX_REFUSALS,
	          "That was refusal %llu on this connection, the limit of --max-refusals; closing the connection.",
	          (unsigned long long)s->refusals);
	return OUT_CLOSE;
}

/* A refusal no limit decided: a taken name, an unknown id or file. */
#define refuse(s, code, b, ...) refuse_by(s, code, b, NULL, __VA_ARGS__)

/*
 * An upload refused before its content (efserver-protocol(7), "Errors"):
 * answered, and the connection closed without reading what it will not
 * use. limit: the setting of efsession(8) that decided, or NULL.
 */
__attribute__((format(printf, 4, 5))) static enum outcome
refuse_upload(struct session *s, const struct wire_request_spec *rq, const char *limit, const char *fmt, ...)
{
	char why[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_limit(LOG_WARNING, limit, "Refused file %s; closing without reading the content.", why);
	(void)respond(s, rq->refusal, NULL);
	return OUT_CLOSE;
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
	(void)respond(s, RESP_ERROR, NULL);
	return OUT_FAIL;
}

/*
 * When an upload's content, p of it in so far, must have brought its next
 * byte to keep its average at --min-rate: never before the grace (the idle
 * timeout, or RATE_GRACE_MS without one) has passed since its first byte.
 * -1: no such moment (the limit is off, or nothing has come yet).
 */
static int64_t rate_deadline(const struct session *s, const struct pace *p)
{
	int64_t grace = s->timeout_ms >= 0 ? s->timeout_ms : RATE_GRACE_MS, due;

	if (!p || !p->min_rate || !p->start)
		return -1;
	due = (int64_t)(p->got * 1000 / p->min_rate);
	return p->start + (due > grace ? due : grace);
}

/*
 * Read len bytes of the request: all of them within the idle timeout or,
 * for an upload's content (p not NULL), each within the idle timeout of the
 * one before and by the moment --min-rate sets; false when the connection
 * ended, went quiet or fell behind.
 */
static bool read_paced(struct session *s, void *buf, size_t len, const char *what, struct pace *p)
{
	int64_t idle = s->timeout_ms >= 0 ? io_now_ms() + s->timeout_ms : -1, rate = -1, now;
	char hs[32], hm[32];
	size_t got = 0;
	ssize_t n = 0;

	while (got < len) {
		rate = rate_deadline(s, p);
		n = io_read_before(s->in, (uint8_t *)buf + got, len - got,
		                   rate >= 0 && (idle < 0 || rate < idle) ? rate : idle);
		if (n <= 0)
			break;
		got += (size_t)n;
		s->consumed += (size_t)n;
		if (!p)
			continue;
		now = io_now_ms();
		p->start = p->start ? p->start : now;
		p->got += (uint64_t)n;
		idle = s->timeout_ms >= 0 ? now + s->timeout_ms : -1;
	}
	if (got == len)
		return true;
	if (n == -ETIMEDOUT && rate >= 0 && (idle < 0 || rate < idle)) {
		now = io_now_ms();
		log_limit(
		    LOG_NOTICE, LIMIT_MIN_RATE,
		    "%llu bytes of %s of request %u came in %.1f s, an average of %s/s, below --min-rate %s/s; closing "
		    "the connection.",
		    (unsigned long long)p->got, what, s->hdr.code, (double)(now - p->start) / 1000.0,
		    opts_human_size(p->got * 1000 / (uint64_t)(now > p->start ? now - p->start : 1), hs, sizeof(hs)),
		    opts_human_size(p->min_rate, hm, sizeof(hm)));
	} else if (n == -ETIMEDOUT) {
		log_notice("No data for %u s while reading %s of request %u; closing the connection.",
		           s->cfg->idle_timeout, what, s->hdr.code);
	} else if (n >= 0) {
		log_notice("The connection ended in the middle of %s of request %u.", what, s->hdr.code);
	} else {
		log_notice("Reading %s of request %u failed: %s.", what, s->hdr.code, strerror((int)-n));
	}
	return false;
}

/* Read len bytes of the request within the idle timeout; false when the connection ended or went quiet. */
static bool read_exact(struct session *s, void *buf, size_t len, const char *what)
{
	return read_paced(s, buf, len, what, NULL);
}

/*
 * The first request of a connection read in the seed-004 dialect has shown
 * whether the connection is one (efserver-protocol(7), "Dialects and
 * tolerances"): keep the dialect for the connection, with its checksum and
 * key size, or fall back to the standard one, in which the request is the
 * format error it always was.
 */
static void settle_dialect(struct session *s, bool confirmed)
{
	s->tentative = false;
	if (!confirmed) {
		s->dialect = s->cfg->dialect ? s->cfg->dialect : &wire_standard;
		return;
	}
	s->conn.checksum = wire_dialect_checksum(s->dialect, s->conn.checksum);
	s->conn.aes_key_len = wire_dialect_aes_key_len(s->dialect, s->conn.aes_key_len);
	log_notice(
	    "The connection opens as a seed-004 client's do (1100 with payload_size %u, the length of the name): "
	    "it is served in the %s dialect, with %s checksums and %zu-bit AES keys (--compat seed004).",
	    s->hdr.payload_size, wire_dialect_name(s->dialect), cksum_algo_name(s->conn.checksum),
	    s->conn.aes_key_len * 8);
}

/* A request read through a tolerance: accepted, and said so (efserver-protocol(7), "Dialects and tolerances"). */
static void note_tolerance(struct session *s, const struct wire_request_spec *rq, const struct wire_request_body *b)
{
	if (s->frame.tolerated & WIRE_TOLERATE_CONTENT_AFTER)
		log_notice(
		    "Request %u (%s) has payload_size %u, the fixed fields only; reading content_size %u bytes of "
		    "content after them (--compat content-after).",
		    rq->code, rq->name, s->hdr.payload_size, b->content_size);
	if (s->frame.tolerated & WIRE_TOLERATE_SHORT_NAME)
		log_notice(
		    "Request %u (%s) has payload_size %u and a name of that many bytes without a NUL; reading it "
		    "as the name (--compat short-name).",
		    rq->code, rq->name, s->hdr.payload_size);
}

/*
 * Read the body of the request in one piece into s->buf (all of the payload
 * but a file's content, which follows its fixed fields), split it into its
 * fields and check them against the header (efserver-protocol(7), "Requests").
 */
static enum outcome take_body(struct session *s, const struct wire_request_spec *rq, struct wire_request_body *b)
{
	uint32_t len = s->frame.body, min, max;
	enum wire_body_error e;
	int r;

	if (len > SESSION_CHUNK)
		return server_error(s, -EMSGSIZE, "A body of %u bytes does not fit the buffer", len);
	if (!read_exact(s, s->buf, len, s->frame.content ? "the fixed fields" : "the payload"))
		return OUT_DROP;
	if (s->cfg->debug)
		log_hexdump("request payload", s->buf, len < rq->dump ? len : rq->dump, DUMP_MAX);
	if ((r = wire_parse_request_body(s->dialect, rq, s->buf, len, b)) < 0)
		return server_error(s, r, "The body of request %u could not be split into its fields", rq->code);
	e = wire_check_request_body(s->dialect, rq, &s->hdr, b, &s->frame);
	if (s->tentative) {
		settle_dialect(s, e == WIRE_BODY_OK);
		if (e != WIRE_BODY_OK) {
			wire_payload_bounds(s->dialect, rq, &min, &max);
			return format_error(
			    s, rq,
			    "payload_size %u is outside %u..%u, and not the length of the name before its "
			    "NUL either, as the seed-004 client's is",
			    s->hdr.payload_size, min, max);
		}
	}
	switch (e) {
	case WIRE_BODY_OK:
		break;
	case WIRE_BODY_ID_DIFFERS:
		return format_error(s, rq, "the client_id in the payload differs from the header's");
	case WIRE_BODY_SIZE_DIFFERS:
		return format_error(s, rq, "content_size %u does not match payload_size %u (it should be %u)",
		                    b->content_size, s->hdr.payload_size, s->frame.content);
	case WIRE_BODY_NAME_NUL:
		return format_error(s, rq, "the %u bytes of the name hold a NUL", s->frame.body);
	case WIRE_BODY_NAME_COUNT:
		return format_error(s, rq, "payload_size %u does not count the fields as the %s dialect does",
		                    s->hdr.payload_size, wire_dialect_name(s->dialect));
	}
	note_tolerance(s, rq, b);
	return OUT_CONTINUE;
}

/* A name[255] field as a C string; utf8 for client names (efserver-protocol(7), "Names"). */
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

/* The body of a request that names a client, and that name. */
static enum outcome take_client_name(struct session *s, const struct wire_request_spec *rq, struct wire_request_body *b,
                                     char name[NAME])
{
	enum wire_name_error ne;
	enum outcome o;

	if ((o = take_body(s, rq, b)) != OUT_CONTINUE)
		return o;
	if (!take_name(b->name, true, name, &ne))
		return format_error(s, rq, "the client name %s", wire_name_error_str(ne));
	return OUT_CONTINUE;
}

static const char *esc(const char *s, char buf[NAME_ESC_MAX])
{
	return log_escape(s, strlen(s), buf, NAME_ESC_MAX);
}

/*
 * A file_name[255] field: valid, with a usable base name
 * (efserver-protocol(7), "Names"), and the path it is stored under.
 */
static enum outcome take_file_name(struct session *s, const struct wire_request_spec *rq, const uint8_t *field,
                                   char name[NAME], char base[NAME], char path[STORE_PATH_MAX])
{
	char e1[NAME_ESC_MAX];
	enum wire_name_error ne;
	const char *b;
	size_t blen;

	if (!take_name(field, false, name, &ne))
		return format_error(s, rq, "the file name %s", wire_name_error_str(ne));
	if (wire_base_name(name, strlen(name), &b, &blen) < 0)
		return format_error(s, rq, "the file name '%s' has no usable base name", esc(name, e1));
	memcpy(base, b, blen);
	base[blen] = '\0';
	log_context_file(name, -1);
	if (vault_path_name(s->hdr.client_id, base, path, STORE_PATH_MAX) < 0)
		return format_error(s, rq, "the file name '%s' is too long", esc(name, e1));
	return OUT_CONTINUE;
}

static enum outcome handle_register(struct session *s, const struct wire_request_spec *rq)
{
	char name[NAME], e1[NAME_ESC_MAX];
	enum store_limit refused = STORE_LIMIT_NONE;
	struct wire_request_body b;
	enum wire_name_error ne;
	uint8_t id[ID];
	enum outcome o;
	size_t len;
	int r;

	if ((o = take_body(s, rq, &b)) != OUT_CONTINUE)
		return o;
	/* A malformed name is a format error; a valid one shaped like an id, a refusal (efserver-protocol(7), Names). */
	ne = wire_check_new_client_name(b.name, &len);
	if (ne != WIRE_NAME_OK && ne != WIRE_NAME_LIKE_ID)
		return format_error(s, rq, "the client name %s", wire_name_error_str(ne));
	memcpy(name, b.name, len);
	name[len] = '\0';
	if (s->cfg->registration_closed)
		return refuse(s, rq->refusal, NULL, "registration is closed (clients are added with efctl add-client)");
	if (ne == WIRE_NAME_LIKE_ID)
		return refuse(s, rq->refusal, NULL, "the name '%s' is shaped like a client id", esc(name, e1));
	crypto_new_client_id(id);
	r = store_register_from(s->st, id, name, s->cfg->source,
	                        rq->limits & WIRE_LIMIT_REGISTRATION ? &s->cfg->limits : NULL, &refused);
	if (r == -EDQUOT && refused == STORE_LIMIT_MAX_CLIENTS)
		return refuse_by(s, rq->refusal, NULL, store_limit_names[refused],
		                 "the server has %llu clients, the limit of --max-clients",
		                 (unsigned long long)s->cfg->limits.max_clients);
	if (r == -EDQUOT)
		return refuse_by(s, rq->refusal, NULL, store_limit_names[refused],
		                 "%llu clients were registered from %s in the last hour, the limit of "
		                 "--registrations-per-hour",
		                 (unsigned long long)s->cfg->limits.registrations_per_hour, s->cfg->source);
	if (r == -EEXIST)
		return refuse(s, rq->refusal, NULL, "the name '%s' is already registered", esc(name, e1));
	if (r < 0)
		return server_error(s, r, "Could not register '%s'", esc(name, e1));
	log_context_client(id, name);
	wire_id_to_hex(id, s->id_hex);
	log_info("Registered '%s' as client %s.", esc(name, e1), s->id_hex);
	return answer(s, rq->success, &(struct wire_response_body){.id = id});
}

/*
 * A fresh AES key into aes, and RSA-OAEP-encrypted for key into enc
 * (efserver-protocol(7), "Cryptography"): the RSA work of a request, done
 * only for a client whose id and name checked out.
 */
static int new_aes_key(struct session *s, const struct der_rsa_key *key, uint8_t aes[CRYPTO_AES_MAX_KEY],
                       uint8_t enc[WIRE_ENCRYPTED_KEY_MAX], size_t *enc_len)
{
	log_debug("Encrypting a fresh AES key with a %u-bit RSA key.", key->bits);
	crypto_random(aes, s->cfg->aes_key_len);
	return crypto_oaep_encrypt(key, aes, s->cfg->aes_key_len, enc, WIRE_ENCRYPTED_KEY_MAX, enc_len);
}

static enum outcome handle_public_key(struct session *s, const struct wire_request_spec *rq)
{
	uint8_t spki[DER_RSA_SPKI_MAX], aes[CRYPTO_AES_MAX_KEY], enc[WIRE_ENCRYPTED_KEY_MAX];
	char name[NAME], e1[NAME_ESC_MAX];
	struct wire_request_body b;
	size_t enc_len;
	struct der_rsa_key key;
	enum der_error de;
	enum outcome o;
	long spki_len;
	int r;

	if ((o = take_client_name(s, rq, &b, name)) != OUT_CONTINUE)
		return o;
	if ((de = der_read_rsa_public(b.key, b.key_len, &key)) != DER_OK)
		return format_error(s, rq, "the public key (%zu bytes) is refused: %s", b.key_len, der_error_str(de));
	spki_len = der_write_rsa_spki(key.n, key.n_len, key.e, key.e_len, spki, sizeof(spki));
	if (spki_len < 0)
		return server_error(s, (int)spki_len, "Could not encode the public key of '%s'", esc(name, e1));
	/* A lookup first: an unknown id, a wrong name or another key costs no RSA work. */
	r = store_check_keys(s->st, s->hdr.client_id, name, spki, (size_t)spki_len);
	if (r == 0) {
		if ((r = new_aes_key(s, &key, aes, enc, &enc_len)) < 0) {
			crypto_wipe(aes, sizeof(aes));
			return server_error(s, r, "Could not encrypt an AES key for '%s'", esc(name, e1));
		}
		/* The transaction checks id, name and pinned key again: another connection may have acted meanwhile. */
		r = store_set_keys(s->st, s->hdr.client_id, name, spki, (size_t)spki_len, aes, s->cfg->aes_key_len);
		crypto_wipe(aes, sizeof(aes));
	}
	if (r == -ENOENT)
		return refuse(s, rq->refusal, NULL, "client %s is not registered under the name '%s'", s->id_hex,
		              esc(name, e1));
	if (r == -EPERM)
		return refuse(s, rq->refusal, NULL, "client '%s' already has a different public key", esc(name, e1));
	if (r < 0)
		return server_error(s, r, "Could not store the keys of '%s'", esc(name, e1));
	s->touched = true;
	log_context_client(s->hdr.client_id, name);
	log_info("Sent a new %zu-bit AES key to '%s', encrypted with its %u-bit RSA key.", s->cfg->aes_key_len * 8,
	         esc(name, e1), key.bits);
	return answer(s, rq->success,
	              &(struct wire_response_body){.id = s->hdr.client_id, .key = enc, .key_len = enc_len});
}

static enum outcome handle_reconnect(struct session *s, const struct wire_request_spec *rq)
{
	const struct wire_response_body refused = {.id = s->hdr.client_id};
	uint8_t aes[CRYPTO_AES_MAX_KEY], enc[WIRE_ENCRYPTED_KEY_MAX];
	char name[NAME], e1[NAME_ESC_MAX], e2[NAME_ESC_MAX];
	struct wire_request_body b;
	struct store_client c;
	struct der_rsa_key key;
	enum outcome o;
	size_t enc_len;
	int r;

	if ((o = take_client_name(s, rq, &b, name)) != OUT_CONTINUE)
		return o;
	r = store_get_client(s->st, s->hdr.client_id, &c);
	if (r < 0 && r != -ENOENT)
		return server_error(s, r, "Could not look up client %s", s->id_hex);
	crypto_wipe(c.aes_key, sizeof(c.aes_key));
	if (r == -ENOENT)
		return refuse(s, rq->refusal, &refused, "client %s is not registered", s->id_hex);
	if (strcmp(c.name, name) != 0)
		return refuse(s, rq->refusal, &refused, "client %s is registered as '%s', not '%s'", s->id_hex,
		              esc(c.name, e1), esc(name, e2));
	log_context_client(c.id, c.name);
	if (c.public_key_len == 0)
		return refuse(s, rq->refusal, &refused, "'%s' has no public key stored", esc(name, e1));
	if (der_read_rsa_public(c.public_key, c.public_key_len, &key) != DER_OK)
		return server_error(s, -EPROTO, "The stored public key of '%s' is unreadable", esc(name, e1));
	if ((r = new_aes_key(s, &key, aes, enc, &enc_len)) < 0) {
		crypto_wipe(aes, sizeof(aes));
		return server_error(s, r, "Could not encrypt an AES key for '%s'", esc(name, e1));
	}
	r = store_set_aes_key(s->st, s->hdr.client_id, aes, s->cfg->aes_key_len);
	crypto_wipe(aes, sizeof(aes));
	if (r == -ENOENT)
		return refuse(s, rq->refusal, &refused, "client %s vanished", s->id_hex);
	if (r < 0)
		return server_error(s, r, "Could not store the new AES key of '%s'", esc(name, e1));
	s->touched = true;
	log_info("Reconnected '%s' with a new %zu-bit AES key.", esc(name, e1), s->cfg->aes_key_len * 8);
	return answer(s, rq->success,
	              &(struct wire_response_body){.id = s->hdr.client_id, .key = enc, .key_len = enc_len});
}

_Static_assert(VAULT_TOKEN_SIZE == STORE_TOKEN_SIZE, "a kept-aside copy's token fits its column");

/*
 * One client's file, as the store's transactions reach it on disk
 * (store.h's struct store_disk): the file received (uploads) and its base
 * name, and what was done, to undo it if the transaction fails to commit.
 */
struct on_disk {
	struct vault *v;
	const uint8_t *id;
	const char *base;
	struct vault_file *file;
	bool published, aside;
};

static int disk_pending_exists(void *ctx, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	struct on_disk *d = ctx;

	return vault_pending_exists(d->v, id, token);
}

static int disk_place(void *ctx, bool aside, const char *token)
{
	struct on_disk *d = ctx;
	int r = aside ? vault_publish_aside(d->file, d->id, token) : vault_publish(d->file, d->id, d->base);

	d->published = r == 0 || d->published;
	d->aside = aside;
	return r;
}

static int disk_promote(void *ctx, const char *token)
{
	struct on_disk *d = ctx;

	return vault_promote(d->v, d->id, token, d->base);
}

static int disk_remove(void *ctx)
{
	struct on_disk *d = ctx;

	return vault_remove(d->v, d->id, d->base);
}

/* A kept-aside copy no row names any more (the store said so): removed now, or else by efctl gc. */
static void drop_pending(struct session *s, const char *token)
{
	int r;

	if (token[0] && (r = vault_remove_pending(s->v, s->hdr.client_id, token)) < 0)
		log_warning("Could not remove the kept-aside copy %s of client %s: %s; efctl gc removes it.", token,
		            s->id_hex, strerror(-r));
}

/*
 * Stream the content: read a chunk, checksum (ciphertext or plaintext),
 * decrypt in place, strip the padding at the end, write. One pass, memory
 * bounded by SESSION_CHUNK whatever the size of the file.
 * Returns OUT_CONTINUE with *bad_padding set or not, OUT_DROP, or OUT_FAIL.
 */
static enum outcome receive_content(struct session *s, const struct wire_request_spec *rq, struct crypto_cbc *cbc,
                                    struct cksum_state *ck, struct vault_file *file, uint32_t content_size,
                                    uint64_t *plain_size, bool *bad_padding)
{
	bool over_cipher = cksum_over_ciphertext(s->cfg->checksum), first = true;
	/* --debug turns --min-rate off, as it does the idle timeout. */
	struct pace pace = {.min_rate = (rq->limits & WIRE_LIMIT_RATE) && !s->cfg->debug ? s->cfg->min_rate : 0};
	uint32_t remaining = content_size;
	size_t n, out_len, pad;
	int r;

	*plain_size = 0;
	*bad_padding = false;
	while (remaining > 0) {
		n = remaining < SESSION_CHUNK ? remaining : SESSION_CHUNK;
		if (!read_paced(s, s->buf, n, "the file content", &pace))
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

/*
 * A padding that does not check out (efserver-protocol(7), Cryptography):
 * nothing is kept, the AES key the content was decrypted with is destroyed
 * if it is still the client's, and the connection is closed, so that a
 * captured ciphertext gets at most one answer per key.
 */
static enum outcome refuse_bad_padding(struct session *s, const struct wire_request_spec *rq,
                                       const struct store_client *c, const char *name)
{
	char e1[NAME_ESC_MAX], e2[NAME_ESC_MAX];
	bool dropped = false;
	int r;

	r = store_drop_aes_key(s->st, c->id, c->aes_key, c->aes_key_len, &dropped);
	if (r < 0)
		return server_error(s, r, "Could not destroy the AES key of '%s' after a bad padding",
		                    esc(c->name, e1));
	s->touched = true;
	if (dropped)
		log_warning("Refused file '%s': its padding does not check out (wrong key or corrupt content); nothing "
		            "was kept and the AES key of '%s' was destroyed, a new one comes with 1026/1101 (its "
		            "registered public key) or 1027; answering %u and closing the connection.",
		            esc(name, e1), esc(c->name, e2), rq->refusal);
	else
		log_warning("Refused file '%s': its padding does not check out (wrong key or corrupt content); nothing "
		            "was kept, and the AES key it was decrypted with is no longer the one of '%s', which "
		            "stays; answering %u and closing the connection.",
		            esc(name, e1), esc(c->name, e2), rq->refusal);
	(void)respond(s, rq->refusal, NULL);
	return OUT_CLOSE;
}

/* What the content of an upload must be, decided before a byte of it is read. */
static enum outcome check_content(struct session *s, const struct wire_request_spec *rq, uint32_t content)
{
	char hs[32], hm[32];

	if (content < WIRE_AES_BLOCK)
		return format_error(s, rq, "content of %u bytes is less than one AES block", content);
	if (content % WIRE_AES_BLOCK)
		return format_error(s, rq, "content of %u bytes is not a whole number of AES blocks", content);
	if (s->cfg->max_file_size && content > s->cfg->max_file_size)
		return format_error(s, rq, "content of %s is above the limit of %s",
		                    opts_human_size(content, hs, sizeof(hs)),
		                    opts_human_size(s->cfg->max_file_size, hm, sizeof(hm)));
	return OUT_CONTINUE;
}

/*
 * The limits an upload must pass before its content is read (efsession(8),
 * Limits): what the database counts for client c, then the free space the
 * content would leave.
 */
static enum outcome check_storage(struct session *s, const struct wire_request_spec *rq, const struct store_client *c,
                                  const char *name, const char *path, uint32_t content)
{
	const struct store_limits *lim = &s->cfg->limits;
	char e1[NAME_ESC_MAX], e2[NAME_ESC_MAX], hs[32], hq[32], hc[32];
	enum store_limit refused = STORE_LIMIT_NONE;
	uint64_t avail;
	int r;

	r = store_check_upload(s->st, c->id, path, content, lim, &refused);
	if (r == -ENOENT)
		return refuse_upload(s, rq, NULL, "'%s': client %s is not registered", esc(name, e1), s->id_hex);
	if (r < 0 && r != -EDQUOT)
		return server_error(s, r, "Could not look up what '%s' stores", esc(c->name, e1));
	opts_human_size(content, hc, sizeof(hc));
	switch (r == 0 ? STORE_LIMIT_NONE : refused) {
	case STORE_LIMIT_MAX_BAD_PADDINGS:
		return refuse_upload(
		    s, rq, store_limit_names[refused],
		    "'%s': '%s' has sent %llu uploads with a bad padding in the last hour, the limit of "
		    "--max-bad-paddings",
		    esc(name, e1), esc(c->name, e2), (unsigned long long)lim->max_bad_paddings);
	case STORE_LIMIT_CLIENT_QUOTA:
		return refuse_upload(s, rq, store_limit_names[refused],
		                     "'%s' (%s): '%s' stores %s, and with it would pass its --client-quota of %s",
		                     esc(name, e1), hc, esc(c->name, e2),
		                     opts_human_size(c->stored_bytes, hs, sizeof(hs)),
		                     opts_human_size(lim->client_quota, hq, sizeof(hq)));
	case STORE_LIMIT_CLIENT_MAX_FILES:
		return refuse_upload(s, rq, store_limit_names[refused],
		                     "'%s': '%s' has %llu files, the limit of --client-max-files, and this one is new",
		                     esc(name, e1), esc(c->name, e2), (unsigned long long)lim->client_max_files);
	default:
		break;
	}
	if (!s->cfg->min_free_space)
		return OUT_CONTINUE;
	if ((r = vault_free_space(s->v, &avail)) < 0)
		return server_error(s, r, "Could not tell the free space of the state directory");
	if (avail >= content && avail - content >= s->cfg->min_free_space)
		return OUT_CONTINUE;
	return refuse_upload(s, rq, LIMIT_MIN_FREE_SPACE,
	                     "'%s' (%s): the state directory's file system has %s free, and --min-free-space is %s",
	                     esc(name, e1), hc, opts_human_size(avail, hs, sizeof(hs)),
	                     opts_human_size(s->cfg->min_free_space, hq, sizeof(hq)));
}

static enum outcome handle_file(struct session *s, const struct wire_request_spec *rq)
{
	uint32_t content;
	char name[NAME], base[NAME], e1[NAME_ESC_MAX], e2[NAME_ESC_MAX], hs[32];
	uint8_t field[NAME];
	struct wire_request_body b;
	struct wire_response_body received = {.id = s->hdr.client_id, .name = field};
	struct on_disk pub = {.v = s->v, .id = s->hdr.client_id, .base = base};
	struct store_disk disk = {.ctx = &pub, .pending_exists = disk_pending_exists, .place = disk_place};
	struct store_recorded rec;
	enum store_limit refused = STORE_LIMIT_NONE;
	char token[VAULT_TOKEN_SIZE];
	struct crypto_cbc *cbc = NULL;
	struct cksum_state ck = {0};
	struct store_client c;
	struct store_file f = {0};
	uint64_t plain_size;
	uint32_t sum, reported;
	bool bad_padding;
	enum outcome o;
	int r;

	/* Everything decidable from the header is decided before a byte of payload is read. */
	if (!s->frame.sized_by_body && (o = check_content(s, rq, s->frame.content)) != OUT_CONTINUE)
		return o;
	if ((o = take_body(s, rq, &b)) != OUT_CONTINUE)
		return o;
	/* A content sized by content_size, from the fixed fields just read. */
	if (s->frame.sized_by_body && (o = check_content(s, rq, s->frame.content)) != OUT_CONTINUE)
		return o;
	content = s->frame.content;
	received.content_size = content;
	/* 2103 echoes the field byte for byte (as the dialect means it); s->buf is about to hold the content. */
	memcpy(field, b.name, NAME);
	if ((o = take_file_name(s, rq, field, name, base, f.path_name)) != OUT_CONTINUE)
		return o;

	r = store_get_client(s->st, s->hdr.client_id, &c);
	if (r < 0 && r != -ENOENT)
		return server_error(s, r, "Could not look up client %s", s->id_hex);
	if (r == -ENOENT)
		return refuse_upload(s, rq, NULL, "'%s': client %s is not registered", esc(name, e1), s->id_hex);
	log_context_client(c.id, c.name);
	if (c.aes_key_len == 0)
		return refuse_upload(s, rq, NULL,
		                     "'%s': '%s' has no AES key (none issued yet, or destroyed after a bad padding)",
		                     esc(name, e1), esc(c.name, e2));
	if ((rq->limits & WIRE_LIMIT_STORAGE) &&
	    (o = check_storage(s, rq, &c, name, f.path_name, content)) != OUT_CONTINUE)
		goto out;
	/* The key stays in c until the end: a bad padding destroys it only if it is still the client's. */
	if ((r = crypto_cbc_new(&cbc, c.aes_key, c.aes_key_len, false)) < 0) {
		o = server_error(s, r, "Could not set up AES for '%s'", esc(c.name, e1));
		goto out;
	}
	if ((r = cksum_init(&ck, s->cfg->checksum)) < 0) {
		o = server_error(s, r, "Could not set up the checksum");
		goto out;
	}
	if ((r = vault_create(s->v, &pub.file)) < 0) {
		o = server_error(s, r, "Could not create a file for '%s' in the state directory", esc(name, e1));
		goto out;
	}
	o = receive_content(s, rq, cbc, &ck, pub.file, content, &plain_size, &bad_padding);
	if (o != OUT_CONTINUE) {
		if (o == OUT_DROP)
			log_notice("Nothing of '%s' was kept.", esc(name, e1));
		goto out;
	}
	if (bad_padding) {
		o = refuse_bad_padding(s, rq, &c, name);
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
	/* Used only if the store keeps the file aside: a token names exactly one content. */
	vault_new_token(token);
	r = store_record_file(s->st, &f, token, &disk, rq->limits & WIRE_LIMIT_STORAGE ? &s->cfg->limits : NULL, &rec,
	                      &refused);
	if (r == -EDQUOT) {
		/* Another connection of the client stored meanwhile: the check before the content no longer holds. */
		log_limit(LOG_WARNING, store_limit_names[refused],
		          "Refused file '%s' after its content: with what '%s' stored meanwhile it would pass --%s; "
		          "nothing was kept; answering %u and closing the connection.",
		          esc(name, e1), esc(c.name, e2), store_limit_names[refused], rq->refusal);
		(void)respond(s, rq->refusal, NULL);
		o = OUT_CLOSE;
		goto out;
	}
	if (r < 0) {
		/* Undone, with the client's directory if this publication made it: a failed upload leaves nothing. */
		if (pub.published && pub.aside)
			(void)vault_remove_pending(s->v, s->hdr.client_id, token);
		else if (pub.published)
			(void)vault_remove(s->v, s->hdr.client_id, base);
		if (pub.published)
			(void)vault_remove_dir(s->v, pub.aside ? VAULT_PENDING : VAULT_FILES, s->hdr.client_id, false);
		o = server_error(s, r, "Could not store '%s'", esc(name, e1));
		goto out;
	}
	s->touched = true;
	if (rec.rolled_forward)
		log_notice("The interrupted confirmation of '%s' of client %s was completed before this upload.",
		           esc(name, e1), s->id_hex);
	drop_pending(s, rec.dropped);
	reported = (uint64_t)rec.attempts <= s->cfg->fault_checksum ? sum + 1 : sum;
	log_context_file(name, (long long)plain_size);
	if (rec.aside)
		log_info(
		    "Kept '%s' for '%s' aside: %s, checksum %u%s; its verified copy stays under the name until the "
		    "client confirms this one.",
		    esc(name, e1), esc(c.name, e2), opts_human_size(plain_size, hs, sizeof(hs)), sum,
		    reported != sum ? " (reporting a wrong one on purpose)" : "");
	else
		log_info("Stored '%s' for '%s': %s, checksum %u%s.", esc(name, e1), esc(c.name, e2),
		         opts_human_size(plain_size, hs, sizeof(hs)), sum,
		         reported != sum ? " (reporting a wrong one on purpose)" : "");

	received.checksum = reported;
	o = answer(s, rq->success, &received);
out:
	crypto_wipe(c.aes_key, sizeof(c.aes_key));
	vault_discard(pub.file);
	cksum_free(&ck);
	crypto_cbc_free(cbc);
	return o;
}

/* 1029-1031 and 1104-1106 (efserver-protocol(7), "Uploads, resends and giving up"). */
static enum outcome handle_crc(struct session *s, const struct wire_request_spec *rq)
{
	static const struct {
		enum store_verdict verdict;
		const char *verb;
	} verdicts[WIRE_KINDS] = {
	    [WIRE_KIND_CRC_OK] = {STORE_CONFIRM, "confirmed"},
	    [WIRE_KIND_CRC_RETRY] = {STORE_RESEND, "will resend"},
	    [WIRE_KIND_CRC_ABORT] = {STORE_GIVE_UP, "gave up on"},
	};
	char name[NAME], base[NAME], path[STORE_PATH_MAX], e1[NAME_ESC_MAX], e2[NAME_ESC_MAX];
	struct on_disk d = {.v = s->v, .id = s->hdr.client_id, .base = base};
	struct store_disk disk = {
	    .ctx = &d, .pending_exists = disk_pending_exists, .promote = disk_promote, .remove = disk_remove};
	const char *verb = verdicts[rq->kind].verb;
	struct wire_request_body b;
	struct store_settled done;
	enum outcome o;
	int r;

	if ((o = take_body(s, rq, &b)) != OUT_CONTINUE)
		return o;
	if ((o = take_file_name(s, rq, b.name, name, base, path)) != OUT_CONTINUE)
		return o;

	r = store_settle_file(s->st, verdicts[rq->kind].verdict, s->hdr.client_id, path, name, &disk, &done);
	if (r == -ENOENT)
		return refuse(s, rq->refusal, NULL, "client %s has no file '%s' to confirm", s->id_hex, esc(name, e1));
	if (r < 0)
		return server_error(s, r, "Could not record that client %s %s '%s'", s->id_hex, verb, esc(name, e1));
	s->touched = true;
	if (done.rolled_forward)
		log_notice(
		    "The interrupted confirmation of '%s' of '%s' was completed: its copy kept aside had been put "
		    "in place.",
		    esc(name, e1), esc(done.client_name, e2));
	switch (done.outcome) {
	case STORE_SETTLED_DONE:
		if (rq->kind == WIRE_KIND_CRC_ABORT)
			log_warning("'%s' gave up on '%s' after checksum mismatches; its copy was removed.",
			            esc(done.client_name, e2), esc(name, e1));
		else
			log_info("'%s' %s '%s'.", esc(done.client_name, e2), verb, esc(name, e1));
		break;
	case STORE_SETTLED_REPLACED:
		log_info("'%s' confirmed '%s': the copy kept aside replaced the verified one.",
		         esc(done.client_name, e2), esc(name, e1));
		break;
	case STORE_SETTLED_DISCARDED:
		drop_pending(s, done.dropped);
		log_notice("'%s' %s '%s': the copy kept aside was dropped, the verified copy stays.",
		           esc(done.client_name, e2), verb, esc(name, e1));
		break;
	case STORE_SETTLED_NOTHING:
		log_notice("'%s' %s '%s', which is verified with nothing kept aside: nothing changed.",
		           esc(done.client_name, e2), verb, esc(name, e1));
		break;
	}
	if (rq->flags & WIRE_SILENT)
		return OUT_CONTINUE;
	return answer(s, rq->success,
	              &(struct wire_response_body){.id = rq->flags & WIRE_ACK_ID ? s->hdr.client_id : NULL});
}

/*
 * A handler that keeps the connection must have read exactly the request
 * as it was framed: anything else would read the next request out of step,
 * and is a bug of ours.
 */
static enum outcome check_consumed(struct session *s, const struct wire_request_spec *rq, enum outcome o)
{
	uint64_t framed = (uint64_t)s->frame.body + s->frame.content;

	if (o != OUT_CONTINUE || s->consumed == framed)
		return o;
	log_error("Request %u (%s) was handled after reading %llu of its %llu bytes; closing the connection.", rq->code,
	          rq->name, (unsigned long long)s->consumed, (unsigned long long)framed);
	return OUT_FAIL;
}

/*
 * A payload_size the code does not allow. For an upload the log line shows
 * content_size too, read from the fixed fields when the payload holds it:
 * it tells a client author what payload_size should have counted.
 */
static enum outcome refuse_payload_size(struct session *s, const struct wire_request_spec *rq)
{
	const struct wire_dialect *after =
	    wire_dialect_tolerant(s->dialect, wire_dialect_tolerances(s->dialect) | WIRE_TOLERATE_CONTENT_AFTER);
	size_t lead = wire_content_size_lead(rq);
	struct wire_frame f;
	uint32_t min, max;
	char seen[160] = "";

	wire_payload_bounds(s->dialect, rq, &min, &max);
	if (lead && s->hdr.payload_size >= lead) {
		if (!read_exact(s, s->buf, lead, "the fixed fields"))
			return OUT_DROP;
		snprintf(seen, sizeof(seen), " (content_size is %u%s)", wire_get_content_size(rq, s->buf),
		         after && wire_frame_request(after, rq, s->hdr.payload_size, &f) == 0
		             ? ": payload_size counts the fixed fields only, which --compat content-after accepts"
		             : "");
	}
	return format_error(s, rq, "payload_size %u is outside %u..%u%s", s->hdr.payload_size, min, max, seen);
}

static enum outcome serve_request(struct session *s)
{
	const struct wire_request_spec *rq = wire_find_request(s->hdr.code);
	/* The header's id of a register request is ignored: it names no client. */
	const bool registers = rq && rq->kind == WIRE_KIND_REGISTER;
	enum outcome o;
	int r;

	wire_id_to_hex(s->hdr.client_id, s->id_hex);
	log_context_request(s->hdr.code);
	/* The header's id until the handler knows the client's name; never the previous request's. */
	log_context_client(registers ? NULL : s->hdr.client_id, NULL);
	log_context_file(NULL, -1);
	log_debug("Request %u (%s) from %s, version %u, %u bytes of payload.", s->hdr.code,
	          wire_request_name(s->hdr.code), s->id_hex, s->hdr.version, s->hdr.payload_size);
	if (!s->st || !s->v) {
		log_error("The state directory is unavailable; answering 2107 and closing the connection.");
		(void)respond(s, RESP_ERROR, NULL);
		return OUT_FAIL;
	}
	s->touched = false;
	s->consumed = 0;
	/* efserver-protocol(7), "Dialects and tolerances": the first request may open a seed-004 connection. */
	if (s->opening && rq && s->cfg->seed004 && wire_dialect_opens(s->cfg->seed004, &s->hdr)) {
		s->dialect = s->cfg->seed004;
		s->tentative = true;
	}
	s->opening = false;
	if (!rq)
		o = format_error(s, NULL, "unknown request code");
	else if (wire_frame_request(s->dialect, rq, s->hdr.payload_size, &s->frame) < 0)
		o = refuse_payload_size(s, rq);
	else
		o = check_consumed(s, rq, handlers[rq->kind](s, rq));
	/*
	 * Every request naming a known id updates last seen, refused or not
	 * (efserver-protocol(7), "What the server keeps").
	 */
	if (!s->touched && !registers && (r = store_touch(s->st, s->hdr.client_id)) < 0)
		log_warning("Could not update last seen of client %s: %s.", s->id_hex, failure_str(r));
	return o;
}

enum session_end session_run(const struct session_config *cfg, struct store *st, struct vault *v, int in_fd, int out_fd)
{
	struct session s = {
	    .conn = *cfg,
	    .st = st,
	    .v = v,
	    .in = in_fd,
	    .out = out_fd,
	    .dialect = cfg->dialect ? cfg->dialect : &wire_standard,
	    .opening = true,
	    .timeout_ms = cfg->idle_timeout && !cfg->debug ? (int)(cfg->idle_timeout * 1000) : -1,
	};
	uint8_t hdr[WIRE_REQUEST_HEADER_SIZE];
	enum session_end end = SESSION_PEER_ERROR;
	ssize_t n;

	s.cfg = &s.conn;
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
