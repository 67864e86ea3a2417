/*
 * The protocol client (efserver-protocol(7)): requests built and responses
 * read through the codec, over one connection or one per request, in the
 * standard dialect or the seed-004 one.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gcrypt.h>

#include "client.h"
#include "crypto.h"
#include "der.h"
#include "io.h"

/*
 * Upload chunk: a multiple of the AES block (plus room for the padding
 * block), small enough that each one going out within the timeout asks
 * little of a slow link.
 */
#define CLIENT_CHUNK (64 * 1024)
/*
 * The pause after a request's fixed part, for a server that frames requests
 * by what one read returns (efserver-protocol(7), "Dialects and
 * tolerances"): a few hundred milliseconds were enough in every trial.
 */
#define CLIENT_FRAME_PAUSE_MS 300

struct client {
	struct client_params p;
	struct client_hooks hooks;
	const struct wire_dialect *dialect;
	char *host;
	char *port;
	int fd;
	int timeout_ms;
	uint8_t id[WIRE_ID_SIZE];
	uint8_t *aes_key; /* secure memory, CRYPTO_AES_MAX_KEY bytes */
	size_t aes_len;
	uint8_t *chunk; /* CLIENT_CHUNK + WIRE_AES_BLOCK */
	/* A 1105 went out without a response: a 2107 read next may be its answer. */
	bool after_retry_notice;
	/* The connection's last exchange ended with a complete response, and nothing went out since. */
	bool answered;
	/* The request going out is the first after such a response: a server that closed may not have read it. */
	bool after_answer;
	/* Seed-004: the connection had its 1100, and how many files it carried. */
	bool greeted;
	unsigned files;
	char name[WIRE_NAME_SIZE];     /* seed-004: the name and key each connection opens with */
	const struct keyfile_rsa *key; /* borrowed */
	struct client_error error;
};

struct response {
	uint16_t code;
	uint32_t size;
	uint8_t payload[CLIENT_RESPONSE_MAX];
	struct wire_response_body body; /* its fields, once expect() has checked it */
};

__attribute__((format(printf, 6, 7))) static int fail(struct client *c, enum client_failure failure, int err,
                                                      uint16_t request, uint16_t response, const char *fmt, ...)
{
	va_list ap;

	c->error.failure = failure;
	c->error.err = err;
	c->error.request = request;
	c->error.response = response;
	c->error.detail[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(c->error.detail, sizeof(c->error.detail), fmt, ap);
		va_end(ap);
	}
	/* After a give-up the connection is still in step; after anything else it is not. */
	if (failure != CLIENT_FAIL_CHECKSUM)
		client_close(c);
	switch (failure) {
	case CLIENT_FAIL_REFUSED:
		return response == RESP_REGISTER_REFUSED    ? -EEXIST
		       : response == RESP_RECONNECT_REFUSED ? -EPERM
		                                            : -EACCES;
	case CLIENT_FAIL_CHECKSUM:
		return -EBADMSG;
	case CLIENT_FAIL_PROTOCOL:
		return -EPROTO;
	case CLIENT_FAIL_RESOLVE:
		return -EHOSTUNREACH;
	default:
		return err > 0 ? -err : -EIO;
	}
}

const struct client_error *client_error(const struct client *c)
{
	return &c->error;
}

int client_new(struct client **out, const struct client_params *params, const struct client_hooks *hooks)
{
	struct client *c;

	if ((params->code_set != CLIENT_SET_1025 && params->code_set != CLIENT_SET_1100) ||
	    params->timeout_seconds == 0 || params->timeout_seconds > CLIENT_TIMEOUT_MAX ||
	    params->retries > CLIENT_RETRIES_MAX ||
	    (params->seed004 && (params->code_set != CLIENT_SET_1100 || params->connection_per_request ||
	                         params->algo != wire_dialect_checksum(&wire_seed004, params->algo))))
		return -EINVAL;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->p = *params;
	if (hooks)
		c->hooks = *hooks;
	c->fd = -1;
	c->dialect = params->seed004 ? &wire_seed004 : &wire_standard;
	c->timeout_ms = (int)params->timeout_seconds * 1000;
	c->host = strdup(params->host);
	c->port = strdup(params->port);
	c->aes_key = gcry_malloc_secure(CRYPTO_AES_MAX_KEY);
	c->chunk = malloc(CLIENT_CHUNK + WIRE_AES_BLOCK);
	if (!c->host || !c->port || !c->aes_key || !c->chunk) {
		client_free(c);
		return -ENOMEM;
	}
	c->p.host = c->host;
	c->p.port = c->port;
	*out = c;
	return 0;
}

void client_close(struct client *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->after_retry_notice = false;
	c->answered = false;
	c->greeted = false;
	c->files = 0;
}

/* Whether the server has closed its end: the end of the stream waits to be read. */
static bool peer_closed(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
	char byte;

	if (poll(&pfd, 1, 0) <= 0)
		return false;
	return (pfd.revents & (POLLHUP | POLLERR)) || recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/*
 * A server that serves one request per connection closed this one after its
 * last response (efserver-protocol(7), "Dialects and tolerances"): the
 * request goes out again on a new connection. -EAGAIN tells the caller so.
 */
static int reopen(struct client *c, uint16_t request)
{
	if (c->hooks.reopened)
		c->hooks.reopened(c->hooks.ctx, request);
	client_close(c);
	return -EAGAIN;
}

void client_free(struct client *c)
{
	if (!c)
		return;
	client_close(c);
	keyfile_secret_free(c->aes_key, CRYPTO_AES_MAX_KEY);
	free(c->chunk);
	free(c->host);
	free(c->port);
	free(c);
}

/* Wait for a connect in progress to finish, at most the timeout. */
static int wait_connected(struct client *c)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
	int r;

	do
		r = poll(&pfd, 1, c->timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	return 0;
}

/* Try each address getaddrinfo gives, each with the timeout; the last error tells why none answered. */
static int connect_to(struct client *c, uint16_t request)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
	socklen_t len = sizeof(int);
	int r, err = ECONNREFUSED, so_error, one = 1;

	/* A seed-004 connection opens with 1100 and 1101: it is never opened again behind the caller's back. */
	if (c->fd >= 0 && c->answered && !c->p.seed004 && peer_closed(c->fd))
		(void)reopen(c, request);
	if (c->fd >= 0)
		return 0;
	if ((r = getaddrinfo(c->host, c->port, &hints, &res)) != 0)
		return fail(c, CLIENT_FAIL_RESOLVE, r == EAI_SYSTEM ? errno : 0, request, 0, "%s",
		            r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	for (ai = res; ai; ai = ai->ai_next) {
		if ((c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol)) <
		    0) {
			err = errno;
			continue;
		}
		if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			if ((r = wait_connected(c)) < 0) {
				err = -r;
			} else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0) {
				err = errno;
			} else if (so_error != 0) {
				err = so_error;
			} else {
				break;
			}
		} else {
			err = errno;
		}
		close(c->fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	if (c->fd < 0)
		return fail(c, CLIENT_FAIL_CONNECT, err, request, 0, NULL);
	/* Requests go out whole; nothing is gained by holding small ones back. */
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

/*
 * A response header and its payload, bounded before anything is read into
 * it. 0, -ENODATA when the server closed the connection before the first
 * byte, -ECONNABORTED when it closed it in the middle, -EMSGSIZE for an
 * absurd payload_size (resp->code is set), or a socket error.
 */
static int recv_response(struct client *c, struct response *resp)
{
	uint8_t h[WIRE_RESPONSE_HEADER_MAX];
	size_t hlen = wire_response_header_size(c->dialect);
	struct wire_response_header hdr;
	ssize_t n;

	resp->code = 0;
	if ((n = io_read_full(c->fd, h, hlen, c->timeout_ms)) < 0)
		return (int)n;
	if ((size_t)n < hlen)
		return n == 0 ? -ENODATA : -ECONNABORTED;
	wire_parse_response_header(c->dialect, h, &hdr);
	resp->code = hdr.code;
	resp->size = hdr.payload_size;
	if (hdr.payload_size > CLIENT_RESPONSE_MAX)
		return -EMSGSIZE;
	if ((n = io_read_full(c->fd, resp->payload, hdr.payload_size, c->timeout_ms)) < 0)
		return (int)n;
	if ((size_t)n < hdr.payload_size)
		return -ECONNABORTED;
	return 0;
}

static int response_failed(struct client *c, uint16_t request, const struct response *resp, int r)
{
	switch (r) {
	case -ENODATA:
		return fail(c, CLIENT_FAIL_NETWORK, 0, request, 0, "the server closed the connection");
	case -ECONNABORTED:
		return fail(c, CLIENT_FAIL_NETWORK, 0, request, resp->code,
		            "the server closed the connection in the middle of a response");
	case -EMSGSIZE:
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code, "payload_size %" PRIu32 " is absurd",
		            resp->size);
	default:
		return fail(c, CLIENT_FAIL_NETWORK, -r, request, resp->code, NULL);
	}
}

/* The response to request; -EAGAIN when it must go out again on a new connection (reopen). */
static int read_response(struct client *c, uint16_t request, struct response *resp)
{
	int r = recv_response(c, resp);

	if ((r == -ENODATA || r == -ECONNRESET) && c->after_answer && !c->p.seed004)
		return reopen(c, request);
	if (r < 0)
		return response_failed(c, request, resp, r);
	c->answered = true;
	return 0;
}

static int bad_payload(struct client *c, uint16_t request, const struct response *resp)
{
	return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code, "payload of %" PRIu32 " bytes", resp->size);
}

/*
 * The response must be the one rq gets on success, with the fields of its
 * code, which go into resp->body; the refusals the protocol allows for rq
 * are failures of their own.
 */
static int expect(struct client *c, const struct wire_request_spec *rq, struct response *resp)
{
	if (resp->code == RESP_ERROR || resp->code == rq->refusal)
		return fail(c, CLIENT_FAIL_REFUSED, 0, rq->code, resp->code, "%s",
		            c->after_retry_notice ? "possibly refusing the checksum-wrong notice sent just before"
		                                  : "");
	if (resp->code != rq->success)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, rq->code, resp->code, "expected %u (%s)", rq->success,
		            wire_response_name(rq->success));
	if (wire_parse_response_body(c->dialect, resp->code, resp->payload, resp->size, &resp->body) < 0)
		return bad_payload(c, rq->code, resp);
	return 0;
}

/*
 * After a send failed, the server may have answered (a 2107) before closing:
 * prefer that to the bare error. A server that closed after its previous
 * response without a word gets the request on a new connection (-EAGAIN).
 */
static int send_failed(struct client *c, uint16_t request, int r)
{
	struct response resp;
	int saved = c->timeout_ms, got = -1;

	if (r != -ETIMEDOUT) {
		/* The connection is dead: whatever the server sent is there already. */
		c->timeout_ms = 1000;
		got = recv_response(c, &resp);
		c->timeout_ms = saved;
	}
	if (got == 0 && resp.code == RESP_ERROR)
		return fail(c, CLIENT_FAIL_REFUSED, 0, request, resp.code, NULL);
	if ((got == -ENODATA || got == -ECONNRESET) && c->after_answer && !c->p.seed004)
		return reopen(c, request);
	return fail(c, CLIENT_FAIL_NETWORK, -r, request, 0, NULL);
}

/* A request is going out on the connection: note whether it follows a complete response. */
static void sending(struct client *c)
{
	c->after_answer = c->answered;
	c->answered = false;
}

/* Wait before what follows a request on a connection whose server frames requests by one read. */
static void frame_pause(const struct client *c)
{
	struct timespec ts = {0, CLIENT_FRAME_PAUSE_MS * 1000000L};

	if (wire_dialect_frames_by_read(c->dialect))
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
}

/* A small request sent whole: header and body in one write. */
static int send_request(struct client *c, const uint8_t id[WIRE_ID_SIZE], const struct wire_request_spec *rq,
                        const struct wire_request_body *b)
{
	uint8_t buf[WIRE_REQUEST_HEADER_SIZE + WIRE_NAME_SIZE + DER_RSA_SPKI_MAX];
	size_t n;
	int r;

	if (wire_build_request(c->dialect, rq, id, b, buf, sizeof(buf), &n) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, EMSGSIZE, rq->code, 0, NULL);
	if ((r = connect_to(c, rq->code)) < 0)
		return r;
	sending(c);
	if ((r = io_write_full(c->fd, buf, n, c->timeout_ms)) < 0)
		return send_failed(c, rq->code, r);
	return 0;
}

/* A request and its response, sent again on a new connection if the server had closed this one (reopen). */
static int exchange(struct client *c, const uint8_t id[WIRE_ID_SIZE], const struct wire_request_spec *rq,
                    const struct wire_request_body *b, struct response *resp)
{
	int r;

	/* Twice at most: a new connection has answered nothing yet, so it cannot ask for a third. */
	do
		if ((r = send_request(c, id, rq, b)) == 0)
			r = read_response(c, rq->code, resp);
	while (r == -EAGAIN);
	return r;
}

/* In the per-request mode every request ends its connection. */
static void request_done(struct client *c)
{
	if (c->p.connection_per_request)
		client_close(c);
}

/*
 * 1105 and 1106 get no response. Where the connection ends after one, close
 * our side and wait for the server's end: that shows it has read the
 * request, and a 2107 it sends instead is still seen.
 */
static int settle_no_response(struct client *c, uint16_t request)
{
	struct response resp;
	int r;

	if (shutdown(c->fd, SHUT_WR) < 0)
		return fail(c, CLIENT_FAIL_NETWORK, errno, request, 0, NULL);
	if ((r = recv_response(c, &resp)) == -ENODATA)
		return 0;
	if (r < 0)
		return response_failed(c, request, &resp, r);
	if (resp.code == RESP_ERROR)
		return fail(c, CLIENT_FAIL_REFUSED, 0, request, resp.code, NULL);
	return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp.code, "a response to a request that has none");
}

/* The row of kind in the client's code set. */
static const struct wire_request_spec *request_of(const struct client *c, enum wire_kind kind)
{
	return wire_request_for((uint16_t)c->p.code_set, kind);
}

int client_register(struct client *c, const char *name, uint8_t id[WIRE_ID_SIZE])
{
	const struct wire_request_spec *rq = request_of(c, WIRE_KIND_REGISTER);
	static const uint8_t zero[WIRE_ID_SIZE];
	uint8_t field[WIRE_NAME_SIZE];
	struct response resp;
	int r;

	if (wire_put_name(field, name) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, ENAMETOOLONG, rq->code, 0, NULL);
	if ((r = exchange(c, NULL, rq, &(struct wire_request_body){.name = field}, &resp)) < 0 ||
	    (r = expect(c, rq, &resp)) < 0)
		return r;
	if (memcmp(resp.body.id, zero, WIRE_ID_SIZE) == 0)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, rq->code, resp.code, "an all-zero client id");
	memcpy(c->id, resp.body.id, WIRE_ID_SIZE);
	memcpy(id, resp.body.id, WIRE_ID_SIZE);
	c->greeted = true;
	request_done(c);
	return 0;
}

/*
 * The 1100 a seed-004 connection opens with, for a client the server knows
 * already: 2101 "already registered" is the answer expected
 * (efserver-protocol(7), "Dialects and tolerances").
 */
static int seed004_hello(struct client *c)
{
	const struct wire_request_spec *rq = request_of(c, WIRE_KIND_REGISTER);
	uint8_t field[WIRE_NAME_SIZE];
	struct response resp;
	int r;

	if (wire_put_name(field, c->name) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, ENAMETOOLONG, rq->code, 0, NULL);
	if ((r = exchange(c, NULL, rq, &(struct wire_request_body){.name = field}, &resp)) < 0)
		return r;
	if (resp.code == RESP_REGISTERED)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, rq->code, resp.code,
		            "the server registered the name as a new client: it does not know this identity");
	if (resp.code != RESP_REGISTER_REFUSED)
		return expect(c, rq, &resp);
	if (resp.size != 0)
		return bad_payload(c, rq->code, &resp);
	c->greeted = true;
	return 0;
}

/*
 * 2102 or 2105: the OAEP-encrypted AES key, as long as key's modulus, for
 * our client id. Keep the key for the uploads.
 */
static int take_aes_key(struct client *c, uint16_t request, const struct response *resp, const struct keyfile_rsa *key)
{
	size_t len = 0;
	int r;

	if (resp->body.key_len != keyfile_modulus_bytes(key))
		return bad_payload(c, request, resp);
	if (memcmp(resp->body.id, c->id, WIRE_ID_SIZE) != 0)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code, "the key is for another client id");
	r = keyfile_oaep_decrypt(key, resp->body.key, resp->body.key_len, c->aes_key, CRYPTO_AES_MAX_KEY, &len);
	if (r < 0)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code,
		            "the AES key does not decrypt with our private key");
	/* efserver-protocol(7), "Cryptography": 128 or 256 bits, nothing else. */
	if (len != 16 && len != 32) {
		crypto_wipe(c->aes_key, CRYPTO_AES_MAX_KEY);
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code,
		            "an AES key of %zu bytes, where only 16 or 32 are used", len);
	}
	c->aes_len = len;
	request_done(c);
	return 0;
}

int client_send_public_key(struct client *c, const char *name, const uint8_t id[WIRE_ID_SIZE],
                           const struct keyfile_rsa *key)
{
	const struct wire_request_spec *rq = request_of(c, WIRE_KIND_PUBLIC_KEY);
	uint8_t field[WIRE_NAME_SIZE], spki[DER_RSA_SPKI_MAX];
	struct wire_request_body b = {.name = field, .key = spki};
	struct response resp;
	int r;

	memcpy(c->id, id, WIRE_ID_SIZE);
	if (wire_put_name(field, name) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, ENAMETOOLONG, rq->code, 0, NULL);
	if ((r = keyfile_public_spki(key, spki, sizeof(spki), &b.key_len)) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, -r, rq->code, 0, "cannot encode the public key");
	if (wire_dialect_key_field(c->dialect) && b.key_len != wire_dialect_key_field(c->dialect))
		return fail(c, CLIENT_FAIL_LOCAL, 0, rq->code, 0,
		            "the %s dialect carries a %zu-byte public key (RSA-1024, e = 17), not one of %zu bytes",
		            wire_dialect_name(c->dialect), wire_dialect_key_field(c->dialect), b.key_len);
	if (c->p.seed004) {
		if (name != c->name)
			snprintf(c->name, sizeof(c->name), "%s", name);
		c->key = key;
		if (!c->greeted && (r = seed004_hello(c)) < 0)
			return r;
	}
	if ((r = exchange(c, id, rq, &b, &resp)) < 0 || (r = expect(c, rq, &resp)) < 0)
		return r;
	return take_aes_key(c, rq->code, &resp, key);
}

int client_reconnect(struct client *c, const char *name, const uint8_t id[WIRE_ID_SIZE], const struct keyfile_rsa *key)
{
	/* The 1100 set has no reconnect: both sets use 1027. */
	const struct wire_request_spec *rq = wire_find_request(REQ_RECONNECT);
	uint8_t field[WIRE_NAME_SIZE];
	struct response resp;
	int r;

	memcpy(c->id, id, WIRE_ID_SIZE);
	if (wire_put_name(field, name) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, ENAMETOOLONG, rq->code, 0, NULL);
	if ((r = exchange(c, id, rq, &(struct wire_request_body){.name = field}, &resp)) < 0 ||
	    (r = expect(c, rq, &resp)) < 0)
		return r;
	return take_aes_key(c, rq->code, &resp, key);
}

uint64_t client_max_file_size(enum client_code_set set)
{
	return wire_max_plaintext(&wire_standard, wire_request_for((uint16_t)set, WIRE_KIND_FILE));
}

size_t client_max_name(bool seed004)
{
	return wire_file_name_max(seed004 ? &wire_seed004 : &wire_standard,
	                          wire_request_for(REQ_REGISTER_1100, WIRE_KIND_FILE));
}

int client_check_file(const char *path, enum client_code_set set, bool seed004, struct client_file *f)
{
	uint8_t field[WIRE_NAME_SIZE];
	const char *base;
	size_t base_len, n;
	struct stat st;
	int fd, r = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (!S_ISREG(st.st_mode))
		r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	else if ((uint64_t)st.st_size > client_max_file_size(set))
		r = -EFBIG;
	close(fd);
	if (r < 0)
		return r;
	if (wire_base_name(path, strlen(path), &base, &base_len) < 0)
		return -EILSEQ;
	if (base_len > client_max_name(seed004))
		return -ENAMETOOLONG;
	memset(field, 0, sizeof(field));
	memcpy(field, base, base_len);
	if (wire_check_name(field, false, &n) != WIRE_NAME_OK)
		return -EILSEQ;
	f->path = path;
	memcpy(f->name, field, sizeof(f->name));
	f->size = (uint64_t)st.st_size;
	return 0;
}

/*
 * One upload (1028/1103): the header knows content_size from the file size,
 * then the file goes out in chunks, each checksummed and encrypted on the
 * way, and the 2103 comes back with the server's checksum.
 */
static int send_file(struct client *c, const struct client_file *f, unsigned attempt, uint32_t *ours, uint32_t *theirs)
{
	const struct wire_request_spec *rq = request_of(c, WIRE_KIND_FILE);
	const uint16_t code = rq->code;
	uint8_t head[WIRE_REQUEST_HEAD_MAX];
	struct wire_request_body b = {.name = (const uint8_t *)f->name};
	struct cksum_state cs = {0};
	struct crypto_cbc *cbc = NULL;
	uint64_t size = f->size, remaining = size, sent = 0, content;
	struct response resp;
	struct stat st;
	size_t want, len, pad, head_len;
	ssize_t n;
	int fd, r;

	if ((fd = open(f->path, O_RDONLY | O_CLOEXEC)) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, errno, code, 0, NULL);
	if (fstat(fd, &st) < 0) {
		r = fail(c, CLIENT_FAIL_LOCAL, errno, code, 0, NULL);
		close(fd);
		return r;
	}
	/* content_size goes out first: it must be the size that was checked. */
	if ((uint64_t)st.st_size != size) {
		r = fail(c, CLIENT_FAIL_LOCAL, EIO, code, 0, "the file changed size since it was checked");
		close(fd);
		return r;
	}
	content = wire_content_size(size);
	b.content_size = (uint32_t)content;
	if (wire_build_request(c->dialect, rq, c->id, &b, head, sizeof(head), &head_len) < 0) {
		r = fail(c, CLIENT_FAIL_LOCAL, EMSGSIZE, code, 0, NULL);
		goto out;
	}
	if ((r = cksum_init(&cs, c->p.algo)) < 0) {
		r = fail(c, CLIENT_FAIL_LOCAL, -r, code, 0, "cannot start the checksum");
		goto out;
	}
	if ((r = crypto_cbc_new(&cbc, c->aes_key, c->aes_len, true)) < 0) {
		r = fail(c, CLIENT_FAIL_LOCAL, -r, code, 0, "cannot start AES");
		goto out;
	}
	if ((r = connect_to(c, code)) < 0)
		goto out;
	sending(c);
	if ((r = io_write_full(c->fd, head, head_len, c->timeout_ms)) < 0) {
		r = send_failed(c, code, r);
		goto out;
	}
	/* The fixed part arrives on its own at a server that frames requests by one read. */
	frame_pause(c);
	if (c->hooks.progress)
		c->hooks.progress(c->hooks.ctx, f->name, attempt, 0, size);
	for (;;) {
		want = remaining < CLIENT_CHUNK ? (size_t)remaining : CLIENT_CHUNK;
		/* A local file: no deadline. Fewer bytes than checked means it shrank, and the frame cannot be finished. */
		if ((n = io_read_full(fd, c->chunk, want, -1)) < 0 || (size_t)n < want) {
			r = fail(c, CLIENT_FAIL_LOCAL, n < 0 ? (int)-n : EIO, code, 0,
			         n < 0 ? NULL : "the file shrank while it was sent");
			goto out;
		}
		remaining -= want;
		len = want;
		if (!cksum_over_ciphertext(c->p.algo))
			cksum_update(&cs, c->chunk, len);
		/* PKCS#7 (efserver-protocol(7), "Cryptography"): 1..16 bytes, so the last chunk grows by a block at most. */
		if (remaining == 0) {
			pad = WIRE_AES_BLOCK - len % WIRE_AES_BLOCK;
			memset(c->chunk + len, (int)pad, pad);
			len += pad;
		}
		if ((r = crypto_cbc_run(cbc, c->chunk, len)) < 0) {
			r = fail(c, CLIENT_FAIL_LOCAL, -r, code, 0, "AES failed");
			goto out;
		}
		if (cksum_over_ciphertext(c->p.algo))
			cksum_update(&cs, c->chunk, len);
		if ((r = io_write_full(c->fd, c->chunk, len, c->timeout_ms)) < 0) {
			r = send_failed(c, code, r);
			goto out;
		}
		sent += want;
		if (c->hooks.progress)
			c->hooks.progress(c->hooks.ctx, f->name, attempt, sent, size);
		if (remaining == 0)
			break;
	}
	if ((r = read_response(c, code, &resp)) < 0 || (r = expect(c, rq, &resp)) < 0)
		goto out;
	/* 2103 echoes the client id, content_size and file name of the request. */
	if (memcmp(resp.body.id, c->id, WIRE_ID_SIZE) != 0 || resp.body.content_size != content ||
	    strncmp((const char *)resp.body.name, f->name, WIRE_NAME_SIZE) != 0) {
		r = fail(c, CLIENT_FAIL_PROTOCOL, 0, code, resp.code,
		         "it does not echo the client id, size and name sent");
		goto out;
	}
	*theirs = resp.body.checksum;
	*ours = cksum_final(&cs);
	c->after_retry_notice = false;
	request_done(c);
	r = 0;
out:
	crypto_cbc_free(cbc);
	cksum_free(&cs);
	close(fd);
	return r;
}

/* A checksum verdict on the file: 1029-1031 or 1104-1106. */
static int send_verdict(struct client *c, enum wire_kind kind, const struct client_file *f)
{
	const struct wire_request_spec *rq = request_of(c, kind);
	const struct wire_request_body b = {.name = (const uint8_t *)f->name};
	struct response resp;
	int r;

	if (!(rq->flags & WIRE_SILENT)) {
		/* 2104 comes with the client id or, from some servers, with nothing: the codec takes both. */
		if ((r = exchange(c, c->id, rq, &b, &resp)) < 0 || (r = expect(c, rq, &resp)) < 0)
			return r;
		if ((rq->flags & WIRE_ACK_ID) && resp.body.id && memcmp(resp.body.id, c->id, WIRE_ID_SIZE) != 0)
			return fail(c, CLIENT_FAIL_PROTOCOL, 0, rq->code, resp.code,
			            "the acknowledgement names another client id");
		request_done(c);
		return 0;
	}
	while ((r = send_request(c, c->id, rq, &b)) == -EAGAIN)
		;
	if (r < 0)
		return r;
	if (kind == WIRE_KIND_CRC_RETRY && !c->p.connection_per_request) {
		/* The file follows at once on this connection, once the notice has arrived on its own. */
		c->after_retry_notice = true;
		frame_pause(c);
		return 0;
	}
	r = settle_no_response(c, rq->code);
	client_close(c);
	return r;
}

int client_upload(struct client *c, const struct client_file *f, unsigned *attempts)
{
	uint32_t ours = 0, theirs = 0;
	unsigned attempt;
	int r;

	if (c->aes_len == 0)
		return fail(c, CLIENT_FAIL_LOCAL, ENOKEY, request_of(c, WIRE_KIND_FILE)->code, 0, "no AES key yet");
	/* Seed-004: one file per connection, each opened with 1100 and 1101 (and so with a fresh key). */
	if (c->p.seed004 && (c->fd < 0 || c->files > 0)) {
		client_close(c);
		if ((r = client_send_public_key(c, c->name, c->id, c->key)) < 0)
			return r;
	}
	c->files++;
	for (attempt = 1;; attempt++) {
		*attempts = attempt;
		while ((r = send_file(c, f, attempt, &ours, &theirs)) == -EAGAIN)
			;
		if (r < 0)
			return r;
		if (ours == theirs)
			return send_verdict(c, WIRE_KIND_CRC_OK, f);
		if (c->hooks.mismatch)
			c->hooks.mismatch(c->hooks.ctx, f->name, attempt, ours, theirs);
		if (attempt > c->p.retries)
			break;
		if ((r = send_verdict(c, WIRE_KIND_CRC_RETRY, f)) < 0)
			return r;
	}
	if ((r = send_verdict(c, WIRE_KIND_CRC_ABORT, f)) < 0)
		return r;
	return fail(c, CLIENT_FAIL_CHECKSUM, 0, request_of(c, WIRE_KIND_CRC_ABORT)->code, 0, NULL);
}
