/*
 * standin: a small server for efclient's tests, standing in for the servers
 * of efserver-protocol(7), "Dialects and tolerances", that efsession is not:
 *
 *   --one-request  the 1025 set, one request per connection, closed after
 *                  each response (as seed 000's server does); 2104 without
 *                  payload; crc32 of the ciphertext
 *   --seed004      the seed-004 server: each request framed by what one
 *                  recv(1024) returns and unpacked at exactly its fixed
 *                  size, 8-byte response headers, 2103 with the crc32 of
 *                  the plaintext as ASCII digits (just the digits) and the
 *                  file name without ".enc", nothing in answer to 1105 and
 *                  1106
 *
 * Written from the manual page's text, its byte layouts its own (no
 * src/wire.c): it checks the client's codec rather than mirroring it. The
 * checksum is zlib's. State lives in memory for the life of the process;
 * received files go to DIR/files/<client id in hex>/<name>, as efsession's. Connections are
 * served one at a time; the listening port is written to --port-file.
 *
 * Faults on request: --drop-first-key closes the connection on the first
 * 1026 or 1101 without an answer (a registration interrupted between 2100
 * and 2102); --aes-bytes N hands out AES keys of N bytes; --ack-id-wrong
 * answers 1029 with a 2104 naming another client; --close-late waits half
 * a second before it closes a one-request connection, so that the client's
 * next request goes out before it learns of the close.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <zlib.h>

#include "crypto.h"
#include "der.h"
#include "log.h"

#define MAX_CLIENTS   64
#define SPKI_MAX      600
#define LIFETIME_S    600 /* the stand-in never outlives a test run that forgot it */
#define READ_TIMEOUT  10  /* seconds, for any one recv */
#define HEADER        23
#define NAME_FIELD    255
#define SEED004_KEY   160
#define SEED004_READ  1024 /* what the seed-004 server asks of one recv */
#define SEED004_FILE  (HEADER + 16 + 4 + NAME_FIELD)
#define CONTENT_CHUNK 65536

struct client {
	uint8_t id[16];
	char name[NAME_FIELD + 1];
	uint8_t spki[SPKI_MAX];
	size_t spki_len;
	uint8_t aes[32];
	size_t aes_len;
};

static struct {
	bool seed004;
	bool drop_first_key;
	bool ack_id_wrong;
	bool close_late;
	size_t aes_bytes;
	const char *dir;
	struct client clients[MAX_CLIENTS];
	size_t nclients;
	unsigned requests;
} S = {.aes_bytes = 16};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static bool send_all(int fd, const uint8_t *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = send(fd, buf, len, MSG_NOSIGNAL)) <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

static bool recv_all(int fd, uint8_t *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = recv(fd, buf, len, 0)) <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* A response in one write: the standard 7-byte header, or the seed-004 8-byte one (a zero byte after the version). */
static bool respond(int fd, uint16_t code, const uint8_t *payload, size_t len)
{
	uint8_t msg[8 + 16 + 512];
	size_t head = S.seed004 ? 8 : 7;

	msg[0] = 3;
	if (S.seed004)
		msg[1] = 0;
	msg[head - 6] = (uint8_t)code;
	msg[head - 5] = (uint8_t)(code >> 8);
	put32(msg + head - 4, (uint32_t)len);
	if (len)
		memcpy(msg + head, payload, len);
	return send_all(fd, msg, head + len);
}

static struct client *find_id(const uint8_t id[16])
{
	size_t i;

	for (i = 0; i < S.nclients; i++)
		if (memcmp(S.clients[i].id, id, 16) == 0)
			return &S.clients[i];
	return NULL;
}

static struct client *find_name(const char *name)
{
	size_t i;

	for (i = 0; i < S.nclients; i++)
		if (strcmp(S.clients[i].name, name) == 0)
			return &S.clients[i];
	return NULL;
}

/* The string in a 255-byte field; false without a NUL. */
static bool field_name(const uint8_t *field, char out[NAME_FIELD + 1])
{
	const uint8_t *nul = memchr(field, 0, NAME_FIELD);

	if (!nul || nul == field)
		return false;
	memcpy(out, field, (size_t)(nul - field) + 1);
	return true;
}

static void register_name(int fd, const uint8_t *field)
{
	char name[NAME_FIELD + 1];
	struct client *c;

	if (!field_name(field, name) || find_name(name) || S.nclients == MAX_CLIENTS) {
		log_notice("register: '%s' refused (taken or invalid)", name);
		respond(fd, 2101, NULL, 0);
		return;
	}
	c = &S.clients[S.nclients++];
	memset(c, 0, sizeof(*c));
	crypto_new_client_id(c->id);
	snprintf(c->name, sizeof(c->name), "%s", name);
	log_notice("register: '%s'", name);
	respond(fd, 2100, c->id, 16);
}

/* A fresh AES key for c, sent encrypted with its stored public key: 2102 or 2105. */
static void send_key(int fd, struct client *c, uint16_t code)
{
	uint8_t payload[16 + 512];
	struct der_rsa_key key;
	size_t len;

	if (der_read_rsa_public(c->spki, c->spki_len, &key) != DER_OK) {
		respond(fd, 2107, NULL, 0);
		return;
	}
	crypto_random(c->aes, S.aes_bytes);
	c->aes_len = S.aes_bytes;
	memcpy(payload, c->id, 16);
	if (crypto_oaep_encrypt(&key, c->aes, c->aes_len, payload + 16, sizeof(payload) - 16, &len) < 0) {
		respond(fd, 2107, NULL, 0);
		return;
	}
	log_notice("key: %zu-byte AES key for '%s'", c->aes_len, c->name);
	respond(fd, code, payload, 16 + len);
}

/* 1026/1101: the key of a registered id and name (no pinning: the original servers have none). */
static bool public_key(int fd, const uint8_t id[16], const uint8_t *field, const uint8_t *spki, size_t spki_len)
{
	char name[NAME_FIELD + 1];
	struct client *c = find_id(id);

	if (S.drop_first_key) {
		S.drop_first_key = false;
		log_notice("key: closing without an answer, as a lost connection would");
		return false;
	}
	if (!c || !field_name(field, name) || strcmp(name, c->name) != 0 || spki_len > SPKI_MAX) {
		respond(fd, 2107, NULL, 0);
		return true;
	}
	memcpy(c->spki, spki, spki_len);
	c->spki_len = spki_len;
	send_key(fd, c, 2102);
	return true;
}

/*
 * Receive content_size bytes, decrypt, check the padding, store the file
 * under DIR/files/<id>/<name>; the checksum of the plaintext or of the ciphertext.
 */
static bool receive_file(int fd, struct client *c, uint32_t content_size, const char *name, bool over_cipher,
                         uint32_t *sum)
{
	static uint8_t buf[CONTENT_CHUNK];
	char path[1024], hex[33];
	uLong crc = crc32(0L, Z_NULL, 0);
	struct crypto_cbc *cbc = NULL;
	uint32_t left = content_size;
	size_t n, out, i;
	bool good = content_size % 16 == 0 && content_size >= 16 && c->aes_len && !strchr(name, '/');
	FILE *f = NULL;

	for (i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", c->id[i]);
	snprintf(path, sizeof(path), "%s/files", S.dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/files/%s", S.dir, hex);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/files/%s/%s", S.dir, hex, name);
	if (good && (crypto_cbc_new(&cbc, c->aes, c->aes_len, false) < 0 || !(f = fopen(path, "wbe")))) {
		log_notice("file: cannot write %s: %s", path, strerror(errno));
		good = false;
	}
	while (left > 0) {
		n = left < sizeof(buf) ? left : sizeof(buf);
		if (!recv_all(fd, buf, n)) {
			log_notice("file: the connection ended in the content of '%s'", name);
			good = false;
			break;
		}
		left -= (uint32_t)n;
		if (!good)
			continue;
		if (over_cipher)
			crc = crc32(crc, buf, (uInt)n);
		crypto_cbc_run(cbc, buf, n);
		out = n;
		if (left == 0) {
			uint8_t pad = buf[n - 1];
			good = pad >= 1 && pad <= 16;
			out -= good ? pad : 0;
		}
		if (!over_cipher)
			crc = crc32(crc, buf, (uInt)out);
		fwrite(buf, 1, out, f);
	}
	crypto_cbc_free(cbc);
	if (f && fclose(f) != 0)
		good = false;
	*sum = (uint32_t)crc;
	return good;
}

/* seed 000's server: one request, its response, and the connection is closed. */
static void serve_one_request(int fd)
{
	uint8_t hdr[HEADER], *payload = NULL, resp[16 + 4 + NAME_FIELD + 4];
	uint32_t size, sum;
	struct client *c;
	char name[NAME_FIELD + 1];
	uint16_t code;

	if (!recv_all(fd, hdr, HEADER))
		return;
	code = get16(hdr + 17);
	size = get32(hdr + 19);
	c = find_id(hdr);
	S.requests++;
	if (code == 1028 && size >= 4 + NAME_FIELD + 16) {
		/* The fixed fields, then the content streamed. */
		uint8_t fixed[4 + NAME_FIELD];
		if (!recv_all(fd, fixed, sizeof(fixed)) || !c || !field_name(fixed + 4, name) ||
		    get32(fixed) != size - sizeof(fixed)) {
			log_notice("file: refused (no client, bad name or sizes): 2107");
			respond(fd, 2107, NULL, 0);
			return;
		}
		if (!receive_file(fd, c, get32(fixed), name, true, &sum)) {
			log_notice("file: '%s' could not be received: 2107", name);
			respond(fd, 2107, NULL, 0);
			return;
		}
		log_notice("file: '%s' for '%s', crc32 of the ciphertext %u", name, c->name, sum);
		memcpy(resp, c->id, 16);
		memcpy(resp + 16, fixed, sizeof(fixed));
		put32(resp + 16 + sizeof(fixed), sum);
		respond(fd, 2103, resp, sizeof(resp));
		return;
	}
	if (size < NAME_FIELD || size > NAME_FIELD + SPKI_MAX || !(payload = malloc(size)) ||
	    !recv_all(fd, payload, size)) {
		log_notice("request %u of %u bytes refused: 2107", code, size);
		respond(fd, 2107, NULL, 0);
		free(payload);
		return;
	}
	switch (code) {
	case 1025:
		register_name(fd, payload);
		break;
	case 1026:
		(void)public_key(fd, hdr, payload, payload + NAME_FIELD, size - NAME_FIELD);
		break;
	case 1027:
		if (!c || !field_name(payload, name) || strcmp(name, c->name) != 0 || !c->spki_len)
			respond(fd, 2106, hdr, 16);
		else
			send_key(fd, c, 2105);
		break;
	case 1029:
	case 1030:
	case 1031:
		if (S.ack_id_wrong) {
			uint8_t other[16];
			memcpy(other, hdr, 16);
			other[0] ^= 0xff;
			respond(fd, 2104, other, 16);
		} else {
			respond(fd, 2104, NULL, 0);
		}
		break;
	default:
		respond(fd, 2107, NULL, 0);
	}
	free(payload);
}

/* The seed-004 server: each request is what one recv(1024) returns, unpacked at exactly its fixed size. */
static void serve_seed004(int fd)
{
	uint8_t buf[SEED004_READ], resp[16 + 4 + NAME_FIELD + 10];
	char name[NAME_FIELD + 1], digits[16];
	struct client *c;
	uint32_t content_size, sum;
	uint16_t code;
	size_t len;
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
		S.requests++;
		if (n < HEADER) {
			log_notice("a read of %zd bytes is no request", n);
			return;
		}
		code = get16(buf + 17);
		c = find_id(buf);
		switch (code) {
		case 1100:
			if (n != HEADER + NAME_FIELD) {
				log_notice("1100 came as %zd bytes, not %d", n, HEADER + NAME_FIELD);
				return;
			}
			register_name(fd, buf + HEADER);
			break;
		case 1101:
			if (n != HEADER + NAME_FIELD + SEED004_KEY) {
				log_notice("1101 came as %zd bytes, not %d", n, HEADER + NAME_FIELD + SEED004_KEY);
				return;
			}
			if (!public_key(fd, buf, buf + HEADER, buf + HEADER + NAME_FIELD, SEED004_KEY))
				return;
			break;
		case 1103:
			/* The fixed part must arrive on its own: what came with it would be lost. */
			if (n != SEED004_FILE) {
				log_notice("1103: %zd bytes in one read, not the %d of the fixed part alone", n,
				           SEED004_FILE);
				return;
			}
			content_size = get32(buf + HEADER + 16);
			len = field_name(buf + HEADER + 20, name) ? strlen(name) : 0;
			if (!c || len < 5 || strcmp(name + len - 4, ".enc") != 0) {
				log_notice("1103: no client, or a name without .enc");
				return;
			}
			name[len - 4] = '\0';
			if (!receive_file(fd, c, content_size, name, false, &sum)) {
				log_notice("1103: '%s' could not be received", name);
				return;
			}
			log_notice("file: '%s' for '%s', crc32 %u", name, c->name, sum);
			/* What the seed's server sends: the name without .enc, the checksum as just its digits. */
			memcpy(resp, c->id, 16);
			put32(resp + 16, content_size);
			memset(resp + 20, 0, NAME_FIELD);
			memcpy(resp + 20, name, strlen(name));
			len = (size_t)snprintf(digits, sizeof(digits), "%u", sum);
			memcpy(resp + 20 + NAME_FIELD, digits, len);
			respond(fd, 2103, resp, 20 + NAME_FIELD + len);
			break;
		case 1104:
			if (n != HEADER + 16 + NAME_FIELD) {
				log_notice("1104 came as %zd bytes", n);
				return;
			}
			respond(fd, 2104, NULL, 0);
			break;
		case 1105:
		case 1106:
			if (n != HEADER + 16 + NAME_FIELD) {
				log_notice("%u came as %zd bytes", code, n);
				return;
			}
			log_notice("%u: no answer", code);
			break;
		default:
			log_notice("unknown request %u", code);
			return;
		}
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: standin --one-request|--seed004 --dir DIR --port-file FILE [--drop-first-key] "
	                "[--aes-bytes N] [--ack-id-wrong] [--close-late]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"one-request", no_argument, NULL, 'o'},
	    {"seed004", no_argument, NULL, 's'},
	    {"dir", required_argument, NULL, 'd'},
	    {"port-file", required_argument, NULL, 'p'},
	    {"drop-first-key", no_argument, NULL, 'k'},
	    {"aes-bytes", required_argument, NULL, 'a'},
	    {"ack-id-wrong", no_argument, NULL, 'w'},
	    {"close-late", no_argument, NULL, 'l'},
	    {NULL, 0, NULL, 0},
	};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {READ_TIMEOUT, 0};
	socklen_t sl = sizeof(sa);
	const char *port_file = NULL;
	int opt, lfd, fd, mode = 0;
	FILE *f;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o':
		case 's':
			mode = opt;
			break;
		case 'd':
			S.dir = optarg;
			break;
		case 'p':
			port_file = optarg;
			break;
		case 'k':
			S.drop_first_key = true;
			break;
		case 'a':
			S.aes_bytes = (size_t)atoi(optarg);
			if (S.aes_bytes < 1 || S.aes_bytes > 32)
				usage();
			break;
		case 'w':
			S.ack_id_wrong = true;
			break;
		case 'l':
			S.close_late = true;
			break;
		default:
			usage();
		}
	}
	if (!mode || !S.dir || !port_file)
		usage();
	S.seed004 = mode == 's';
	log_open("standin", LOG_TARGET_STDERR);
	signal(SIGPIPE, SIG_IGN);
	alarm(LIFETIME_S);
	if ((mkdir(S.dir, 0700) < 0 && errno != EEXIST) || crypto_init() < 0 ||
	    (lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 8) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
		log_notice("cannot make %s or listen: %s", S.dir, strerror(errno));
		return 1;
	}
	if (!(f = fopen(port_file, "we")) || fprintf(f, "%u\n", ntohs(sa.sin_port)) < 0 || fclose(f) != 0) {
		log_notice("cannot write %s", port_file);
		return 1;
	}
	for (;;) {
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (S.seed004) {
			serve_seed004(fd);
		} else {
			serve_one_request(fd);
			if (S.close_late)
				usleep(500 * 1000);
		}
		close(fd);
	}
}
