/*
 * efbench: load generator for any server of the efserver protocol
 * (efserver-protocol(7)). It registers its clients and exchanges their keys
 * first, untimed, then runs upload sessions, key exchanges, confirmations or
 * whole sessions of new clients from several threads at once and reports
 * their rate, latency and errors.
 *
 * The content of an upload is random ciphertext, the same for every upload
 * of a client: prepared once, so that the client's own work does not
 * compete with the server's for the CPU. Its plaintext checksum, which the
 * server must report, is worked out once per client by decrypting it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cksum.h"
#include "clientconf.h"
#include "crypto.h"
#include "der.h"
#include "io.h"
#include "keyfile.h"
#include "opts.h"
#include "wire.h"

/* EXIT STATUS in efbench(1): a client's, as efclient's, with sysexits(3) from 64 on. */
enum {
	EXIT_ERRORS = 1,               /* some operations failed */
	EXIT_USAGE = EX_USAGE,         /* bad option */
	EXIT_NETWORK = EX_UNAVAILABLE, /* the set-up could not register or exchange keys */
	EXIT_LOCAL = EX_IOERR,         /* out of memory, no randomness, a cryptographic failure */
	EXIT_DONE = -1,                /* --help or --version answered: exit 0 */
};

#define BENCH_CONCURRENCY_MAX 256
#define BENCH_CLIENTS_MAX     4096
#define BENCH_COUNT_MAX       10000000u
/* Random ciphertext repeated through a large upload; a multiple of the AES block. */
#define BENCH_PATTERN (1024u * 1024)
/* Slices of the pattern handed to one writev. */
#define BENCH_IOV_MAX 16
/* The largest response any mode expects: 2103, or 2102 for a 4096-bit key. */
#define BENCH_RESPONSE_MAX (WIRE_ID_SIZE + KEYFILE_RSA_MAX_BITS / 8 + WIRE_NAME_SIZE)
#define BENCH_ERRORS_SHOWN 10

enum bench_mode {
	MODE_UPLOAD,  /* file, then checksum confirmation */
	MODE_KEYS,    /* a public key sent, an AES key received and decrypted */
	MODE_RAW,     /* the frames of MODE_UPLOAD, any response accepted: for a trivial server as ceiling */
	MODE_FULL,    /* a new client: registration, key exchange, then MODE_UPLOAD */
	MODE_CONFIRM, /* the confirmation alone, of a file uploaded during the set-up */
};

/* Requests in one operation of each mode: with one connection per request, its connections. */
static const unsigned mode_requests[] = {
    [MODE_UPLOAD] = 2, [MODE_KEYS] = 1, [MODE_RAW] = 2, [MODE_FULL] = 4, [MODE_CONFIRM] = 1,
};

enum bench_conn {
	CONN_SESSION, /* one connection per upload session or key exchange */
	CONN_REQUEST, /* one per request */
	CONN_WORKER,  /* one per worker for all its operations */
};

struct bench_client {
	uint8_t id[WIRE_ID_SIZE];
	char name[WIRE_NAME_SIZE];
	uint8_t aes[CRYPTO_AES_MAX_KEY];
	size_t aes_len;
	uint8_t last[WIRE_AES_BLOCK]; /* the final, padded ciphertext block of an upload */
	uint32_t expected;            /* the checksum the server must report */
};

struct bench {
	enum bench_mode mode;
	enum bench_conn conn;
	uint16_t set; /* the code set: 1025 or 1100 */
	const struct wire_dialect *dialect;
	enum cksum_algo algo;
	uint64_t size;    /* plaintext bytes per upload */
	uint32_t content; /* content_size: the padded, encrypted size */
	uint64_t count;
	unsigned concurrency;
	unsigned nclients;
	int timeout_ms;
	const char *server; /* HOST:PORT as given, for messages */
	struct addrinfo *addr;
	struct keyfile_rsa *key;
	uint8_t spki[DER_RSA_SPKI_MAX];
	size_t spki_len;
	struct bench_client *clients;
	uint8_t *pattern; /* BENCH_PATTERN bytes of random ciphertext */
	size_t pattern_len;
	char tag[9];     /* random, in the names of this run's clients */
	double *latency; /* seconds per operation; negative: failed */
	atomic_uint_fast64_t next;
	atomic_uint_fast64_t errors;
	atomic_uint shown;
};

struct worker {
	struct bench *b;
	pthread_t thread;
	int fd;
	uint8_t *scratch; /* MODE_FULL: pattern_len bytes, to work out each new client's checksum */
	char why[160];
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((format(printf, 2, 3))) static int failed(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
	return -EPROTO;
}

static void disconnect(struct worker *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}

/* A connect that gives up after the timeout; the socket is left blocking, every read and write polls first. */
static int connect_server(struct worker *w)
{
	struct bench *b = w->b;
	struct pollfd p = {.events = POLLOUT};
	socklen_t len = sizeof(int);
	int fd, err = 0, one = 1, r;

	if (w->fd >= 0)
		return 0;
	fd = socket(b->addr->ai_family, b->addr->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, b->addr->ai_protocol);
	if (fd < 0)
		return failed(w, "socket: %s", strerror(errno));
	if (connect(fd, b->addr->ai_addr, b->addr->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			err = errno;
		} else {
			p.fd = fd;
			do
				r = poll(&p, 1, b->timeout_ms);
			while (r < 0 && errno == EINTR);
			if (r <= 0)
				err = r == 0 ? ETIMEDOUT : errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				err = errno;
		}
	}
	if (err == 0 && fcntl(fd, F_SETFL, 0) < 0)
		err = errno;
	if (err) {
		close(fd);
		return failed(w, "connect: %s", strerror(err));
	}
	/* Every request leaves in whole writes: nothing is gained by holding small ones back. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	w->fd = fd;
	return 0;
}

/* Write all of iov, waiting at most the timeout for each step of progress. */
static int send_iov(struct worker *w, struct iovec *iov, int n)
{
	struct pollfd p = {.fd = w->fd, .events = POLLOUT};
	ssize_t done;
	int r;

	while (n > 0) {
		do
			r = poll(&p, 1, w->b->timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r <= 0)
			return failed(w, "sending: %s", r == 0 ? "timed out" : strerror(errno));
		done = writev(w->fd, iov, n);
		if (done < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return failed(w, "sending: %s", strerror(errno));
		}
		while (n > 0 && (size_t)done >= iov->iov_len) {
			done -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + done;
			iov->iov_len -= (size_t)done;
		}
	}
	return 0;
}

/* The row of kind in the code set benchmarked. */
static const struct wire_request_spec *request_of(const struct bench *b, enum wire_kind kind)
{
	return wire_request_for(b->set, kind);
}

static int send_request(struct worker *w, const uint8_t id[WIRE_ID_SIZE], const struct wire_request_spec *rq,
                        const struct wire_request_body *body)
{
	uint8_t buf[WIRE_REQUEST_HEADER_SIZE + WIRE_NAME_SIZE + DER_RSA_SPKI_MAX];
	struct iovec iov;

	if (wire_build_request(w->b->dialect, rq, id, body, buf, sizeof(buf), &iov.iov_len) < 0)
		return failed(w, "request %u does not fit its buffer", rq->code);
	iov.iov_base = buf;
	return send_iov(w, &iov, 1);
}

/* A response whose payload is bounded before it is read. */
static int recv_response(struct worker *w, uint16_t *code, uint8_t *payload, uint32_t *len)
{
	uint8_t h[WIRE_RESPONSE_HEADER_MAX];
	size_t hlen = wire_response_header_size(w->b->dialect);
	struct wire_response_header hdr;
	ssize_t n;

	n = io_read_full(w->fd, h, hlen, w->b->timeout_ms);
	if (n != (ssize_t)hlen)
		return failed(w, "no response: %s",
		              n == -ETIMEDOUT ? "timed out"
		              : n < 0         ? strerror((int)-n)
		                              : "the server closed the connection");
	wire_parse_response_header(w->b->dialect, h, &hdr);
	if (hdr.payload_size > BENCH_RESPONSE_MAX)
		return failed(w, "response %u with an absurd payload_size %" PRIu32, hdr.code, hdr.payload_size);
	n = io_read_full(w->fd, payload, hdr.payload_size, w->b->timeout_ms);
	if (n != (ssize_t)hdr.payload_size)
		return failed(w, "response %u cut short", hdr.code);
	*code = hdr.code;
	*len = hdr.payload_size;
	return 0;
}

static int bad_payload(struct worker *w, uint16_t code, uint32_t len)
{
	return failed(w, "response %u with %" PRIu32 " bytes of payload", code, len);
}

/* The response rq gets on success: its payload into payload (*len bytes), its fields into *body. */
static int expect(struct worker *w, const struct wire_request_spec *rq, uint8_t *payload, uint32_t *len,
                  struct wire_response_body *body)
{
	uint16_t code;
	int r;

	if ((r = recv_response(w, &code, payload, len)) < 0)
		return r;
	if (code != rq->success)
		return failed(w, "request %u answered %u (%s), expected %u", rq->code, code, wire_response_name(code),
		              rq->success);
	if (wire_parse_response_body(w->b->dialect, code, payload, *len, body) < 0)
		return bad_payload(w, code, *len);
	return 0;
}

/* After a request: a new connection for the next one, if that is the policy. */
static void request_done(struct worker *w)
{
	if (w->b->conn == CONN_REQUEST)
		disconnect(w);
}

static void file_name(uint64_t op, uint8_t field[WIRE_NAME_SIZE])
{
	char name[32];

	snprintf(name, sizeof(name), "efbench-%" PRIu64 ".bin", op);
	(void)wire_put_name(field, name);
}

/* 1028/1103: header and fixed fields, the pattern repeated, the client's last block, in few writev calls. */
static int send_file(struct worker *w, const struct bench_client *c, const uint8_t field[WIRE_NAME_SIZE])
{
	struct bench *b = w->b;
	const struct wire_request_spec *rq = request_of(b, WIRE_KIND_FILE);
	struct wire_request_body fields = {.content_size = b->content, .name = field};
	uint8_t head[WIRE_REQUEST_HEAD_MAX], last[WIRE_AES_BLOCK];
	struct iovec iov[BENCH_IOV_MAX + 2];
	uint64_t body = b->content - WIRE_AES_BLOCK, off = 0;
	size_t at, len, head_len;
	int n = 0, r;

	if (wire_build_request(b->dialect, rq, c->id, &fields, head, sizeof(head), &head_len) < 0)
		return failed(w, "request %u does not fit its buffer", rq->code);
	memcpy(last, c->last, sizeof(last));
	iov[n++] = (struct iovec){head, head_len};
	for (;;) {
		while (off < body && n < BENCH_IOV_MAX) {
			at = (size_t)(off % b->pattern_len);
			len = b->pattern_len - at;
			if (len > body - off)
				len = (size_t)(body - off);
			iov[n++] = (struct iovec){b->pattern + at, len};
			off += len;
		}
		if (off == body)
			iov[n++] = (struct iovec){last, sizeof(last)};
		if ((r = send_iov(w, iov, n)) < 0)
			return r;
		if (off == body)
			return 0;
		n = 0;
	}
}

/* Whatever a trivial server answers, header and payload. */
static int raw_response(struct worker *w)
{
	uint8_t payload[BENCH_RESPONSE_MAX];
	uint16_t code;
	uint32_t len;

	return recv_response(w, &code, payload, &len);
}

/* 1029/1104, or 1031/1106 after a wrong checksum. */
static int send_verdict(struct worker *w, const struct bench_client *c, const uint8_t field[WIRE_NAME_SIZE], bool ok)
{
	struct bench *b = w->b;
	const struct wire_request_spec *rq = request_of(b, ok ? WIRE_KIND_CRC_OK : WIRE_KIND_CRC_ABORT);
	struct wire_response_body ack;
	uint8_t resp[BENCH_RESPONSE_MAX];
	uint32_t len;
	int r;

	if ((r = connect_server(w)) < 0 ||
	    (r = send_request(w, c->id, rq, &(struct wire_request_body){.name = field})) < 0)
		return r;
	/* 1106 has no response; the client closes after it. */
	if (rq->flags & WIRE_SILENT) {
		disconnect(w);
		return 0;
	}
	if (b->mode == MODE_RAW)
		r = raw_response(w);
	else /* 2104 carries the client id or, from some servers, nothing: the codec takes both. */
		r = expect(w, rq, resp, &len, &ack);
	if (r < 0)
		return r;
	request_done(w);
	return 0;
}

/* MODE_CONFIRM: the confirmation of the file the set-up uploaded for client i. */
static int confirm(struct worker *w, const struct bench_client *c, uint64_t i)
{
	uint8_t field[WIRE_NAME_SIZE];

	file_name(i, field);
	return send_verdict(w, c, field, true);
}

static int upload(struct worker *w, struct bench_client *c, uint64_t op)
{
	struct bench *b = w->b;
	uint8_t field[WIRE_NAME_SIZE], resp[BENCH_RESPONSE_MAX];
	struct wire_response_body received;
	uint32_t len;
	int r;

	file_name(op, field);
	if ((r = connect_server(w)) < 0 || (r = send_file(w, c, field)) < 0)
		return r;
	if (b->mode == MODE_RAW) {
		if ((r = raw_response(w)) < 0)
			return r;
		request_done(w);
		return send_verdict(w, c, field, true);
	}
	if ((r = expect(w, request_of(b, WIRE_KIND_FILE), resp, &len, &received)) < 0)
		return r;
	if (memcmp(received.id, c->id, WIRE_ID_SIZE) != 0 || received.content_size != b->content ||
	    memcmp(received.name, field, WIRE_NAME_SIZE) != 0)
		return failed(w, "2103 does not echo the client id, size and name sent");
	request_done(w);
	if (received.checksum != c->expected) {
		/* Give the file up, as a client would, so the server's state stays in step. */
		(void)send_verdict(w, c, field, false);
		return failed(w, "checksum %" PRIu32 " from the server, %" PRIu32 " expected", received.checksum,
		              c->expected);
	}
	return send_verdict(w, c, field, true);
}

/* 1026/1101: the client's public key out, a fresh AES key back; out receives it if asked. */
static int key_exchange(struct worker *w, struct bench_client *c, uint8_t *out, size_t *out_len)
{
	struct bench *b = w->b;
	const struct wire_request_spec *rq = request_of(b, WIRE_KIND_PUBLIC_KEY);
	uint8_t field[WIRE_NAME_SIZE], resp[BENCH_RESPONSE_MAX], aes[CRYPTO_AES_MAX_KEY];
	struct wire_request_body body = {.name = field, .key = b->spki, .key_len = b->spki_len};
	struct wire_response_body key;
	size_t m = keyfile_modulus_bytes(b->key), len = 0;
	uint32_t resp_len;
	int r;

	(void)wire_put_name(field, c->name);
	if ((r = connect_server(w)) < 0 || (r = send_request(w, c->id, rq, &body)) < 0 ||
	    (r = expect(w, rq, resp, &resp_len, &key)) < 0)
		return r;
	if (key.key_len != m)
		return bad_payload(w, rq->success, resp_len);
	if (memcmp(key.id, c->id, WIRE_ID_SIZE) != 0)
		return failed(w, "2102 for another client id");
	if (keyfile_oaep_decrypt(b->key, key.key, m, aes, sizeof(aes), &len) < 0)
		return failed(w, "the AES key does not decrypt with our private key");
	if (len != 16 && len != 24 && len != 32) {
		crypto_wipe(aes, sizeof(aes));
		return failed(w, "an AES key of %zu bytes", len);
	}
	if (out) {
		memcpy(out, aes, len);
		*out_len = len;
	}
	crypto_wipe(aes, sizeof(aes));
	request_done(w);
	return 0;
}

static int register_client(struct worker *w, struct bench_client *c)
{
	struct bench *b = w->b;
	const struct wire_request_spec *rq = request_of(b, WIRE_KIND_REGISTER);
	static const uint8_t zero[WIRE_ID_SIZE];
	uint8_t field[WIRE_NAME_SIZE], resp[BENCH_RESPONSE_MAX];
	struct wire_response_body registered;
	uint32_t len;
	int r;

	(void)wire_put_name(field, c->name);
	if ((r = connect_server(w)) < 0 ||
	    (r = send_request(w, NULL, rq, &(struct wire_request_body){.name = field})) < 0 ||
	    (r = expect(w, rq, resp, &len, &registered)) < 0)
		return r;
	if (memcmp(registered.id, zero, WIRE_ID_SIZE) == 0)
		return failed(w, "an all-zero client id");
	memcpy(c->id, registered.id, WIRE_ID_SIZE);
	request_done(w);
	return 0;
}

/* A name of this run: the set-up's clients by index, MODE_FULL's new ones by operation ("new-N"). */
static void client_name(const struct bench *b, const char *kind, uint64_t i, char name[WIRE_NAME_SIZE])
{
	snprintf(name, WIRE_NAME_SIZE, "efbench-%ld-%s-%s%" PRIu64, (long)getpid(), b->tag, kind, i);
}

static int prepare_content(struct bench *b, struct bench_client *c, uint8_t *scratch);

/*
 * MODE_FULL: a client that did not exist, as a first-time client goes: it
 * registers, sends its public key, and uploads a file under the AES key it
 * got (whose checksum is worked out anew, the content being the same), then
 * confirms it.
 */
static int new_client(struct worker *w, uint64_t op)
{
	struct bench_client c = {0};
	int r;

	client_name(w->b, "new-", op, c.name);
	if ((r = register_client(w, &c)) == 0 && (r = key_exchange(w, &c, c.aes, &c.aes_len)) == 0) {
		if ((r = prepare_content(w->b, &c, w->scratch)) < 0)
			r = failed(w, "preparing the content: %s", strerror(-r));
		else
			r = upload(w, &c, op);
	}
	crypto_wipe(&c, sizeof(c));
	return r;
}

static void report_error(struct worker *w, uint64_t op)
{
	struct bench *b = w->b;
	unsigned k;

	atomic_fetch_add(&b->errors, 1);
	k = atomic_fetch_add(&b->shown, 1);
	if (k < BENCH_ERRORS_SHOWN)
		fprintf(stderr, "efbench: operation %" PRIu64 ": %s\n", op, w->why);
	else if (k == BENCH_ERRORS_SHOWN)
		fprintf(stderr, "efbench: further errors are only counted\n");
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	struct bench_client *c;
	uint64_t op;
	double t;
	int r;

	while ((op = atomic_fetch_add(&b->next, 1)) < b->count) {
		c = &b->clients[op % b->nclients];
		t = now_s();
		if (b->mode == MODE_KEYS)
			r = key_exchange(w, c, NULL, NULL);
		else if (b->mode == MODE_FULL)
			r = new_client(w, op);
		else if (b->mode == MODE_CONFIRM)
			r = confirm(w, c, op % b->nclients);
		else
			r = upload(w, c, op);
		if (b->conn != CONN_WORKER || r < 0)
			disconnect(w);
		b->latency[op] = r < 0 ? -1 : now_s() - t;
		if (r < 0)
			report_error(w, op);
	}
	disconnect(w);
	return NULL;
}

/*
 * The last ciphertext block of an upload for client c (its padding must
 * check out under c's key), and the checksum the server must report: the
 * pattern is decrypted once, piece by piece, as the server will.
 */
static int prepare_content(struct bench *b, struct bench_client *c, uint8_t *scratch)
{
	uint64_t body = b->content - WIRE_AES_BLOCK, off, step;
	size_t tail = (size_t)(b->size % WIRE_AES_BLOCK), at;
	uint8_t block[WIRE_AES_BLOCK] = {0};
	struct crypto_cbc *cbc = NULL;
	struct cksum_state ck = {0};
	bool over_cipher = cksum_over_ciphertext(b->algo);
	int r;

	if (b->mode == MODE_RAW) {
		crypto_random(c->last, sizeof(c->last));
		return 0;
	}
	/* Plaintext of the last block: tail zero bytes, then PKCS#7 padding, chained on the block before it. */
	memset(block + tail, (int)(WIRE_AES_BLOCK - tail), WIRE_AES_BLOCK - tail);
	if (body > 0) {
		at = (size_t)((body - WIRE_AES_BLOCK) % b->pattern_len);
		for (size_t i = 0; i < WIRE_AES_BLOCK; i++)
			block[i] ^= b->pattern[at + i];
	}
	if ((r = crypto_cbc_new(&cbc, c->aes, c->aes_len, true)) < 0)
		return r;
	r = crypto_cbc_run(cbc, block, sizeof(block));
	crypto_cbc_free(cbc);
	cbc = NULL;
	if (r < 0)
		return r;
	memcpy(c->last, block, sizeof(block));

	if ((r = cksum_init(&ck, b->algo)) < 0)
		return r;
	if (!over_cipher && (r = crypto_cbc_new(&cbc, c->aes, c->aes_len, false)) < 0)
		goto out;
	for (off = 0; off < body; off += step) {
		at = (size_t)(off % b->pattern_len);
		step = b->pattern_len - at < body - off ? b->pattern_len - at : body - off;
		if (over_cipher) {
			cksum_update(&ck, b->pattern + at, (size_t)step);
			continue;
		}
		memcpy(scratch, b->pattern + at, (size_t)step);
		if ((r = crypto_cbc_run(cbc, scratch, (size_t)step)) < 0)
			goto out;
		cksum_update(&ck, scratch, (size_t)step);
	}
	if (over_cipher) {
		cksum_update(&ck, c->last, sizeof(c->last));
	} else {
		memset(block, 0, sizeof(block));
		cksum_update(&ck, block, tail);
	}
	c->expected = cksum_final(&ck);
	r = 0;
out:
	crypto_cbc_free(cbc);
	cksum_free(&ck);
	return r;
}

/* Register every client and give it an AES key, one after the other, before anything is timed. */
static int setup(struct bench *b)
{
	struct worker w = {.b = b, .fd = -1};
	uint8_t tag[4], *scratch = NULL;
	int r = 0;

	crypto_random(tag, sizeof(tag));
	snprintf(b->tag, sizeof(b->tag), "%02x%02x%02x%02x", tag[0], tag[1], tag[2], tag[3]);
	if (b->mode == MODE_FULL)
		return 0;
	for (unsigned i = 0; i < b->nclients; i++)
		client_name(b, "", i, b->clients[i].name);
	if (b->mode != MODE_RAW) {
		for (unsigned i = 0; i < b->nclients; i++) {
			struct bench_client *c = &b->clients[i];

			r = register_client(&w, c);
			if (r == 0)
				r = key_exchange(&w, c, c->aes, &c->aes_len);
			disconnect(&w);
			if (r < 0) {
				fprintf(stderr, "efbench: setting up client %u with %s: %s%s\n", i, b->server, w.why,
				        strncmp(w.why, "connect:", 8) == 0
				            ? " (is the server running and listening there?)"
				            : "");
				return EXIT_NETWORK;
			}
		}
	}
	if (b->mode == MODE_KEYS)
		return 0;
	if (!(scratch = malloc(b->pattern_len)))
		return EXIT_LOCAL;
	for (unsigned i = 0; i < b->nclients && r == 0; i++)
		r = prepare_content(b, &b->clients[i], scratch);
	free(scratch);
	if (r < 0) {
		fprintf(stderr, "efbench: preparing the content: %s\n", strerror(-r));
		return EXIT_LOCAL;
	}
	/* The files MODE_CONFIRM confirms, uploaded and confirmed once; named as its operations name them. */
	for (unsigned i = 0; b->mode == MODE_CONFIRM && i < b->nclients; i++) {
		r = upload(&w, &b->clients[i], i);
		disconnect(&w);
		if (r < 0) {
			fprintf(stderr, "efbench: uploading the file of client %u to %s: %s\n", i, b->server, w.why);
			return EXIT_NETWORK;
		}
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n), nearest rank. */
static double quantile(const double *v, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(q * (double)n + 0.999999);
	return v[i == 0 ? 0 : (i > n ? n : i) - 1];
}

static void report(struct bench *b, double elapsed)
{
	static const char *const conns[] = {"one connection per session", "one connection per request",
	                                    "one connection per worker"};
	static const char *const modes[] = {"upload", "keys", "raw", "full", "confirm"};
	uint64_t errors = atomic_load(&b->errors), ok = b->count - errors;
	const char *rate = b->mode == MODE_KEYS      ? "key exchanges/s:"
	                   : b->mode == MODE_CONFIRM ? "confirmations/s:"
	                                             : "uploads/s:";
	size_t n = 0;

	for (uint64_t i = 0; i < b->count; i++)
		if (b->latency[i] >= 0)
			b->latency[n++] = b->latency[i];
	qsort(b->latency, n, sizeof(*b->latency), cmp_double);
	printf("mode:          %s, code set %u, %u client%s, %u at a time, %s\n", modes[b->mode], b->set, b->nclients,
	       b->nclients == 1 ? "" : "s", b->concurrency, conns[b->conn]);
	if (b->mode == MODE_KEYS)
		printf("operations:    %" PRIu64 " key exchanges, RSA-%u\n", b->count, keyfile_bits(b->key));
	else if (b->mode == MODE_CONFIRM)
		printf("operations:    %" PRIu64 " confirmations\n", b->count);
	else if (b->mode == MODE_FULL)
		printf("operations:    %" PRIu64
		       " new clients, each registered with an RSA-%u key and uploading %" PRIu64
		       " bytes, checksum %s\n",
		       b->count, keyfile_bits(b->key), b->size, cksum_algo_name(b->algo));
	else
		printf("operations:    %" PRIu64 " uploads of %" PRIu64 " bytes, checksum %s\n", b->count, b->size,
		       cksum_algo_name(b->algo));
	printf("errors:        %" PRIu64 "\n", errors);
	printf("seconds:       %.3f\n", elapsed);
	printf("%-14s %.1f\n", rate, (double)ok / elapsed);
	if (b->mode != MODE_KEYS && b->mode != MODE_CONFIRM)
		printf("MB/s:          %.1f\n", (double)ok * (double)b->size / elapsed / 1e6);
	/* What a server started per connection pays for most: its starts. */
	if (b->conn != CONN_WORKER)
		printf("connections/s: %.1f\n",
		       (double)ok * (b->conn == CONN_REQUEST ? mode_requests[b->mode] : 1) / elapsed);
	printf("latency p50:   %.3f ms\n", quantile(b->latency, n, 0.50) * 1e3);
	printf("latency p99:   %.3f ms\n", quantile(b->latency, n, 0.99) * 1e3);
}

static void usage(FILE *to)
{
	fprintf(to,
	        "Usage: efbench [OPTION]... HOST:PORT\n"
	        "Load an efserver protocol server: register clients and exchange their keys,\n"
	        "then run upload sessions, key exchanges, confirmations or new clients'\n"
	        "sessions concurrently; print the rate, the latency and the number of errors.\n"
	        "See efbench(1).\n"
	        "\n"
	        "  -m, --mode MODE              upload (default), keys, raw (upload frames to a\n"
	        "                               trivial server, any response accepted), full (a\n"
	        "                               new client: register, key, upload, confirm) or\n"
	        "                               confirm (confirmations of a file uploaded before)\n"
	        "  -c, --code-set SET           1025 or 1100 (default %d)\n"
	        "  -s, --size BYTES             plaintext bytes per upload, K/M/G suffixes (default 1K)\n"
	        "  -u, --count N                operations in all (default 100)\n"
	        "  -j, --concurrency N          operations at a time, 1 to 256 (default 1)\n"
	        "  -n, --clients N              clients to register (default: the concurrency)\n"
	        "  -p, --connection-per-request one connection per request\n"
	        "  -K, --keep-alive             one connection per worker for all its operations\n"
	        "  -k, --checksum ALGO          cksum (default), crc32 or crc32-ciphertext\n"
	        "      --rsa-bits BITS          client RSA key size, 1024 (default) to 4096\n"
	        "  -t, --timeout SECONDS        for connecting and every read and write (default 30)\n"
	        "  -h, --help                   show this help and exit\n"
	        "  -V, --version                show the version and exit\n"
	        "\n"
	        "Exit status: 0 no errors, 1 some operations failed; from sysexits(3): 64 usage\n"
	        "error, 69 the clients could not be set up, 74 local failure.\n",
	        OPTS_CODE_SET_DEFAULT);
}

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (opts_parse_u64(s, min, max, out) == 0)
		return 0;
	fprintf(stderr, "efbench: %s wants a number from %" PRIu64 " to %" PRIu64 ", not '%s'\n", opt, min, max, s);
	return -EINVAL;
}

static int parse_options(int argc, char **argv, struct bench *b, unsigned *rsa_bits)
{
	static const struct option longopts[] = {
	    {"mode", required_argument, NULL, 'm'},
	    {"code-set", required_argument, NULL, 'c'},
	    {"size", required_argument, NULL, 's'},
	    {"count", required_argument, NULL, 'u'},
	    {"concurrency", required_argument, NULL, 'j'},
	    {"clients", required_argument, NULL, 'n'},
	    {"connection-per-request", no_argument, NULL, 'p'},
	    {"keep-alive", no_argument, NULL, 'K'},
	    {"checksum", required_argument, NULL, 'k'},
	    {"rsa-bits", required_argument, NULL, 'R'},
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0, 0, 0, 0},
	};
	uint64_t u, max_size;
	unsigned set;
	int opt;

	while ((opt = getopt_long(argc, argv, "m:c:s:u:j:n:pKk:t:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (strcmp(optarg, "upload") == 0)
				b->mode = MODE_UPLOAD;
			else if (strcmp(optarg, "keys") == 0)
				b->mode = MODE_KEYS;
			else if (strcmp(optarg, "raw") == 0)
				b->mode = MODE_RAW;
			else if (strcmp(optarg, "full") == 0)
				b->mode = MODE_FULL;
			else if (strcmp(optarg, "confirm") == 0)
				b->mode = MODE_CONFIRM;
			else {
				fprintf(stderr, "efbench: --mode is upload, keys, raw, full or confirm, not '%s'\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 'c':
			if (opts_parse_code_set(optarg, &set) < 0) {
				fprintf(stderr, "efbench: --code-set is 1025 or 1100, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			b->set = (uint16_t)set;
			break;
		case 's':
			if (opts_parse_size(optarg, 0, UINT32_MAX, &b->size) < 0) {
				fprintf(stderr, "efbench: --size wants bytes (K/M/G suffixes allowed), not '%s'\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 'u':
			if (parse_u64("--count", optarg, 1, BENCH_COUNT_MAX, &b->count) < 0)
				return EXIT_USAGE;
			break;
		case 'j':
			if (parse_u64("--concurrency", optarg, 1, BENCH_CONCURRENCY_MAX, &u) < 0)
				return EXIT_USAGE;
			b->concurrency = (unsigned)u;
			break;
		case 'n':
			if (parse_u64("--clients", optarg, 1, BENCH_CLIENTS_MAX, &u) < 0)
				return EXIT_USAGE;
			b->nclients = (unsigned)u;
			break;
		case 'p':
			b->conn = CONN_REQUEST;
			break;
		case 'K':
			b->conn = CONN_WORKER;
			break;
		case 'k':
			if (cksum_algo_from_name(optarg, &b->algo) < 0) {
				fprintf(stderr, "efbench: unknown checksum '%s' (cksum, crc32 or crc32-ciphertext)\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 'R':
			if (parse_u64("--rsa-bits", optarg, KEYFILE_RSA_MIN_BITS, KEYFILE_RSA_MAX_BITS, &u) < 0)
				return EXIT_USAGE;
			if (u % 8) {
				fprintf(stderr, "efbench: --rsa-bits must be a multiple of 8\n");
				return EXIT_USAGE;
			}
			*rsa_bits = (unsigned)u;
			break;
		case 't':
			if (parse_u64("--timeout", optarg, 1, 86400, &u) < 0)
				return EXIT_USAGE;
			b->timeout_ms = (int)u * 1000;
			break;
		case 'h':
			usage(stdout);
			return EXIT_DONE;
		case 'V':
			printf("efbench (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return EXIT_DONE;
		default:
			fprintf(stderr, "Try 'efbench --help' for more information.\n");
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "efbench: %s\n",
		        optind < argc ? "one HOST:PORT, nothing after it" : "no HOST:PORT given");
		return EXIT_USAGE;
	}
	max_size = wire_max_plaintext(b->dialect, request_of(b, WIRE_KIND_FILE));
	if (b->size > max_size) {
		fprintf(stderr, "efbench: --size is at most %" PRIu64 " bytes in this code set\n", max_size);
		return EXIT_USAGE;
	}
	b->content = (uint32_t)wire_content_size(b->size);
	if (!b->nclients)
		b->nclients = b->concurrency;
	return 0;
}

static int resolve(struct bench *b, const char *server)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	char *host = NULL, *port = NULL;
	const char *why = NULL;
	int r;

	if (clientconf_parse_server(server, strlen(server), &host, &port, &why) < 0) {
		fprintf(stderr, "efbench: %s: %s\n", server, why ? why : "expected host:port");
		return EXIT_USAGE;
	}
	r = getaddrinfo(host, port, &hints, &b->addr);
	free(host);
	free(port);
	if (r != 0) {
		fprintf(stderr, "efbench: %s: %s\n", server, gai_strerror(r));
		return EXIT_NETWORK;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b = {
	    .mode = MODE_UPLOAD,
	    .conn = CONN_SESSION,
	    .set = OPTS_CODE_SET_DEFAULT,
	    .dialect = &wire_standard,
	    .algo = CKSUM_POSIX,
	    .size = 1024,
	    .count = 100,
	    .concurrency = 1,
	    .timeout_ms = 30000,
	};
	struct worker *workers = NULL;
	static char program[] = "efbench";
	unsigned rsa_bits = KEYFILE_RSA_BITS, started = 0;
	double t0, t1;
	int r, status;

	/* getopt's messages name argv[0]: the program, not the path it was started by. */
	argv[0] = program;
	if ((status = parse_options(argc, argv, &b, &rsa_bits)) != 0)
		return status == EXIT_DONE ? 0 : status;
	/* A server that hangs up is an error to count, not a signal to die of. */
	signal(SIGPIPE, SIG_IGN);
	if ((r = crypto_init()) < 0) {
		fprintf(stderr, "efbench: cannot initialise libgcrypt: %s\n", strerror(-r));
		return EXIT_LOCAL;
	}
	b.server = argv[optind];
	if ((status = resolve(&b, b.server)) != 0)
		return status;
	status = EXIT_LOCAL;
	b.clients = calloc(b.nclients, sizeof(*b.clients));
	b.latency = calloc(b.count, sizeof(*b.latency));
	workers = calloc(b.concurrency, sizeof(*workers));
	b.pattern_len = b.content - WIRE_AES_BLOCK < BENCH_PATTERN ? b.content - WIRE_AES_BLOCK : BENCH_PATTERN;
	if (b.pattern_len == 0)
		b.pattern_len = WIRE_AES_BLOCK;
	b.pattern = malloc(b.pattern_len);
	if (!b.clients || !b.latency || !workers || !b.pattern) {
		fprintf(stderr, "efbench: out of memory\n");
		goto out;
	}
	crypto_random(b.pattern, b.pattern_len);
	if (b.mode != MODE_RAW) {
		if ((r = keyfile_generate(&b.key, rsa_bits)) < 0 ||
		    (r = keyfile_public_spki(b.key, b.spki, sizeof(b.spki), &b.spki_len)) < 0) {
			fprintf(stderr, "efbench: cannot make an RSA key: %s\n", strerror(-r));
			goto out;
		}
	}
	t0 = now_s();
	if ((status = setup(&b)) != 0)
		goto out;
	t1 = now_s();
	if (b.mode != MODE_RAW && b.mode != MODE_FULL)
		fprintf(stderr, "efbench: %u client%s registered with keys in %.3f s\n", b.nclients,
		        b.nclients == 1 ? "" : "s", t1 - t0);

	for (unsigned i = 0; b.mode == MODE_FULL && i < b.concurrency; i++)
		if (!(workers[i].scratch = malloc(b.pattern_len))) {
			fprintf(stderr, "efbench: out of memory\n");
			goto out;
		}
	t0 = now_s();
	for (started = 0; started < b.concurrency; started++) {
		workers[started].b = &b;
		workers[started].fd = -1;
		if ((r = pthread_create(&workers[started].thread, NULL, worker_run, &workers[started])) != 0) {
			fprintf(stderr, "efbench: cannot start a thread: %s\n", strerror(r));
			/* No operation is taken once next passes count: the started workers finish and stop. */
			atomic_store(&b.next, b.count);
			break;
		}
	}
	for (unsigned i = 0; i < started; i++)
		(void)pthread_join(workers[i].thread, NULL);
	t1 = now_s();
	if (started < b.concurrency)
		goto out;
	report(&b, t1 - t0);
	status = atomic_load(&b.errors) ? EXIT_ERRORS : 0;
out:
	if (b.clients)
		crypto_wipe(b.clients, b.nclients * sizeof(*b.clients));
	free(b.clients);
	free(b.latency);
	free(b.pattern);
	for (unsigned i = 0; workers && i < b.concurrency; i++)
		free(workers[i].scratch);
	free(workers);
	keyfile_free(b.key);
	if (b.addr)
		freeaddrinfo(b.addr);
	return status;
}
