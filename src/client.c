/* The protocol client (PROTOCOL.md sections 1-5), one connection or one per request. */
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

struct client {
	struct client_params p;
	struct client_hooks hooks;
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
	struct client_error error;
};

struct response {
	uint16_t code;
	uint32_t size;
	uint8_t payload[CLIENT_RESPONSE_MAX];
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
	    params->retries > CLIENT_RETRIES_MAX)
		return -EINVAL;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->p = *params;
	if (hooks)
		c->hooks = *hooks;
	c->fd = -1;
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
	uint8_t h[WIRE_RESPONSE_HEADER_SIZE];
	struct wire_response_header hdr;
	ssize_t n;

	resp->code = 0;
	if ((n = io_read_full(c->fd, h, sizeof(h), c->timeout_ms)) < 0)
		return (int)n;
	if ((size_t)n < sizeof(h))
		return n == 0 ? -ENODATA : -ECONNABORTED;
	wire_parse_response_header(h, &hdr);
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

static int read_response(struct client *c, uint16_t request, struct response *resp)
{
	int r = recv_response(c, resp);

	return r < 0 ? response_failed(c, request, resp, r) : 0;
}

/*
 * The response must be want with a payload of min..max bytes; the refusal
 * codes the protocol allows for this request are failures of their own.
 */
static int expect(struct client *c, uint16_t request, const struct response *resp, uint16_t want, size_t min,
                  size_t max)
{
	bool refusal =
	    resp->code == RESP_ERROR ||
	    (resp->code == RESP_REGISTER_REFUSED && (request == REQ_REGISTER || request == REQ_REGISTER_1100)) ||
	    (resp->code == RESP_RECONNECT_REFUSED && request == REQ_RECONNECT);

	if (refusal)
		return fail(c, CLIENT_FAIL_REFUSED, 0, request, resp->code, "%s",
		            c->after_retry_notice ? "possibly refusing the checksum-wrong notice sent just before"
		                                  : "");
	if (resp->code != want)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code, "expected %u (%s)", want,
		            wire_response_name(want));
	if (resp->size < min || resp->size > max)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code, "payload of %" PRIu32 " bytes",
		            resp->size);
	return 0;
}

static size_t put_header(uint8_t *buf, const uint8_t id[WIRE_ID_SIZE], uint16_t code, uint32_t payload_size)
{
	struct wire_request_header h = {.version = WIRE_CLIENT_VERSION, .code = code, .payload_size = payload_size};

	if (id)
		memcpy(h.client_id, id, WIRE_ID_SIZE);
	wire_build_request_header(buf, &h);
	return WIRE_REQUEST_HEADER_SIZE;
}

/* After a send failed, the server may have answered (a 2107) before closing: prefer that to the bare error. */
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
	return fail(c, CLIENT_FAIL_NETWORK, -r, request, 0, NULL);
}

/* A small request sent whole: header and payload in one write. */
static int send_request(struct client *c, const uint8_t id[WIRE_ID_SIZE], uint16_t code, const uint8_t *payload,
                        size_t len)
{
	uint8_t buf[WIRE_REQUEST_HEADER_SIZE + WIRE_NAME_SIZE + DER_RSA_SPKI_MAX];
	size_t n;
	int r;

	if (len > sizeof(buf) - WIRE_REQUEST_HEADER_SIZE)
		return fail(c, CLIENT_FAIL_LOCAL, EMSGSIZE, code, 0, NULL);
	if ((r = connect_to(c, code)) < 0)
		return r;
	n = put_header(buf, id, code, (uint32_t)len);
	memcpy(buf + n, payload, len);
	if ((r = io_write_full(c->fd, buf, n + len, c->timeout_ms)) < 0)
		return send_failed(c, code, r);
	return 0;
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

int client_register(struct client *c, const char *name, uint8_t id[WIRE_ID_SIZE])
{
	uint16_t code = c->p.code_set == CLIENT_SET_1025 ? REQ_REGISTER : REQ_REGISTER_1100;
	static const uint8_t zero[WIRE_ID_SIZE];
	uint8_t field[WIRE_NAME_SIZE];
	struct response resp;
	int r;

	if (wire_put_name(field, name) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, ENAMETOOLONG, code, 0, NULL);
	if ((r = send_request(c, NULL, code, field, sizeof(field))) < 0 || (r = read_response(c, code, &resp)) < 0 ||
	    (r = expect(c, code, &resp, RESP_REGISTERED, WIRE_ID_SIZE, WIRE_ID_SIZE)) < 0)
		return r;
	if (memcmp(resp.payload, zero, WIRE_ID_SIZE) == 0)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, code, resp.code, "an all-zero client id");
	memcpy(c->id, resp.payload, WIRE_ID_SIZE);
	memcpy(id, resp.payload, WIRE_ID_SIZE);
	request_done(c);
	return 0;
}

/* client_id[16] then the OAEP-encrypted AES key (2102, 2105): keep the key for the uploads. */
static int take_aes_key(struct client *c, uint16_t request, const struct response *resp, const struct keyfile_rsa *key)
{
	size_t len = 0;
	int r;

	if (memcmp(resp->payload, c->id, WIRE_ID_SIZE) != 0)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code, "the key is for another client id");
	r = keyfile_oaep_decrypt(key, resp->payload + WIRE_ID_SIZE, resp->size - WIRE_ID_SIZE, c->aes_key,
	                         CRYPTO_AES_MAX_KEY, &len);
	if (r < 0)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code,
		            "the AES key does not decrypt with our private key");
	if (len != 16 && len != 24 && len != 32) {
		crypto_wipe(c->aes_key, CRYPTO_AES_MAX_KEY);
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, request, resp->code, "an AES key of %zu bytes", len);
	}
	c->aes_len = len;
	request_done(c);
	return 0;
}

int client_send_public_key(struct client *c, const char *name, const uint8_t id[WIRE_ID_SIZE],
                           const struct keyfile_rsa *key)
{
	uint16_t code = c->p.code_set == CLIENT_SET_1025 ? REQ_PUBLIC_KEY : REQ_PUBLIC_KEY_1100;
	uint8_t payload[WIRE_NAME_SIZE + DER_RSA_SPKI_MAX];
	size_t spki_len = 0, m = keyfile_modulus_bytes(key);
	struct response resp;
	int r;

	memcpy(c->id, id, WIRE_ID_SIZE);
	if (wire_put_name(payload, name) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, ENAMETOOLONG, code, 0, NULL);
	if ((r = keyfile_public_spki(key, payload + WIRE_NAME_SIZE, DER_RSA_SPKI_MAX, &spki_len)) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, -r, code, 0, "cannot encode the public key");
	if ((r = send_request(c, id, code, payload, WIRE_NAME_SIZE + spki_len)) < 0 ||
	    (r = read_response(c, code, &resp)) < 0 ||
	    (r = expect(c, code, &resp, RESP_AES_KEY, WIRE_ID_SIZE + m, WIRE_ID_SIZE + m)) < 0)
		return r;
	return take_aes_key(c, code, &resp, key);
}

int client_reconnect(struct client *c, const char *name, const uint8_t id[WIRE_ID_SIZE], const struct keyfile_rsa *key)
{
	uint8_t field[WIRE_NAME_SIZE];
	size_t m = keyfile_modulus_bytes(key);
	struct response resp;
	int r;

	memcpy(c->id, id, WIRE_ID_SIZE);
	if (wire_put_name(field, name) < 0)
		return fail(c, CLIENT_FAIL_LOCAL, ENAMETOOLONG, REQ_RECONNECT, 0, NULL);
	if ((r = send_request(c, id, REQ_RECONNECT, field, sizeof(field))) < 0 ||
	    (r = read_response(c, REQ_RECONNECT, &resp)) < 0 ||
	    (r = expect(c, REQ_RECONNECT, &resp, RESP_RECONNECTED, WIRE_ID_SIZE + m, WIRE_ID_SIZE + m)) < 0)
		return r;
	return take_aes_key(c, REQ_RECONNECT, &resp, key);
}

uint64_t client_max_file_size(enum client_code_set set)
{
	uint32_t fixed = set == CLIENT_SET_1025 ? WIRE_FILE_FIXED_1025 : WIRE_FILE_FIXED_1100;
	uint64_t max_content = (UINT32_MAX - fixed) & ~(uint64_t)(WIRE_AES_BLOCK - 1);

	/* PKCS#7 always adds 1..16 bytes, so the largest plaintext is one byte short of that. */
	return max_content - 1;
}

int client_check_file(const char *path, enum client_code_set set, struct client_file *f)
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
	if (base_len > WIRE_NAME_MAX)
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
	bool set1025 = c->p.code_set == CLIENT_SET_1025;
	uint16_t code = set1025 ? REQ_FILE : REQ_FILE_1100;
	uint32_t fixed = set1025 ? WIRE_FILE_FIXED_1025 : WIRE_FILE_FIXED_1100;
	uint8_t head[WIRE_REQUEST_HEADER_SIZE + WIRE_FILE_FIXED_1100], *p;
	struct cksum_state cs = {0};
	struct crypto_cbc *cbc = NULL;
	uint64_t size = f->size, remaining = size, sent = 0, content;
	struct response resp;
	struct stat st;
	size_t want, len, pad;
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
	content = size / WIRE_AES_BLOCK * WIRE_AES_BLOCK + WIRE_AES_BLOCK;
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
	p = head + put_header(head, c->id, code, (uint32_t)(fixed + content));
	if (!set1025) {
		memcpy(p, c->id, WIRE_ID_SIZE);
		p += WIRE_ID_SIZE;
	}
	wire_put_u32(p, (uint32_t)content);
	memcpy(p + 4, f->name, WIRE_NAME_SIZE);
	if ((r = io_write_full(c->fd, head, WIRE_REQUEST_HEADER_SIZE + fixed, c->timeout_ms)) < 0) {
		r = send_failed(c, code, r);
		goto out;
	}
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
		/* PROTOCOL.md section 4: PKCS#7, always 1..16 bytes, so the last chunk grows by a block at most. */
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
	if ((r = read_response(c, code, &resp)) < 0 ||
	    (r = expect(c, code, &resp, RESP_FILE_RECEIVED, WIRE_2103_SIZE, WIRE_2103_SIZE)) < 0)
		goto out;
	/* 2103 echoes the client id, content_size and file name of the request. */
	if (memcmp(resp.payload, c->id, WIRE_ID_SIZE) != 0 || wire_get_u32(resp.payload + WIRE_ID_SIZE) != content ||
	    strncmp((const char *)resp.payload + WIRE_ID_SIZE + 4, f->name, WIRE_NAME_SIZE) != 0) {
		r = fail(c, CLIENT_FAIL_PROTOCOL, 0, code, resp.code,
		         "it does not echo the client id, size and name sent");
		goto out;
	}
	*theirs = wire_get_u32(resp.payload + WIRE_ID_SIZE + 4 + WIRE_NAME_SIZE);
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

/* 1029-1031 and 1104-1106: client_id (1100 set only) and the file name. */
static int send_verdict(struct client *c, uint16_t code, const struct client_file *f)
{
	uint8_t payload[WIRE_ID_SIZE + WIRE_NAME_SIZE];
	size_t len = 0;
	struct response resp;
	int r;

	if (c->p.code_set == CLIENT_SET_1100) {
		memcpy(payload, c->id, WIRE_ID_SIZE);
		len = WIRE_ID_SIZE;
	}
	memcpy(payload + len, f->name, WIRE_NAME_SIZE);
	len += WIRE_NAME_SIZE;
	if ((r = send_request(c, c->id, code, payload, len)) < 0)
		return r;
	if (code == REQ_CRC_RETRY_1100 && !c->p.connection_per_request) {
		/* The 1103 follows at once on this connection. */
		c->after_retry_notice = true;
		return 0;
	}
	if (code == REQ_CRC_RETRY_1100 || code == REQ_CRC_ABORT_1100) {
		r = settle_no_response(c, code);
		client_close(c);
		return r;
	}
	/* 2104 comes with the client id or, from some servers, with nothing. */
	if ((r = read_response(c, code, &resp)) < 0 || (r = expect(c, code, &resp, RESP_ACK, 0, WIRE_ID_SIZE)) < 0)
		return r;
	if (resp.size != 0 && resp.size != WIRE_ID_SIZE)
		return fail(c, CLIENT_FAIL_PROTOCOL, 0, code, resp.code, "payload of %" PRIu32 " bytes", resp.size);
	request_done(c);
	return 0;
}

int client_upload(struct client *c, const struct client_file *f, unsigned *attempts)
{
	bool set1025 = c->p.code_set == CLIENT_SET_1025;
	uint32_t ours = 0, theirs = 0;
	unsigned attempt;
	int r;

	if (c->aes_len == 0)
		return fail(c, CLIENT_FAIL_LOCAL, ENOKEY, set1025 ? REQ_FILE : REQ_FILE_1100, 0, "no AES key yet");
	for (attempt = 1;; attempt++) {
		*attempts = attempt;
		if ((r = send_file(c, f, attempt, &ours, &theirs)) < 0)
			return r;
		if (ours == theirs)
			return send_verdict(c, set1025 ? REQ_CRC_OK : REQ_CRC_OK_1100, f);
		if (c->hooks.mismatch)
			c->hooks.mismatch(c->hooks.ctx, f->name, attempt, ours, theirs);
		if (attempt > c->p.retries)
			break;
		if ((r = send_verdict(c, set1025 ? REQ_CRC_RETRY : REQ_CRC_RETRY_1100, f)) < 0)
			return r;
	}
	if ((r = send_verdict(c, set1025 ? REQ_CRC_ABORT : REQ_CRC_ABORT_1100, f)) < 0)
		return r;
	return fail(c, CLIENT_FAIL_CHECKSUM, 0, set1025 ? REQ_CRC_ABORT : REQ_CRC_ABORT_1100, 0, NULL);
}
