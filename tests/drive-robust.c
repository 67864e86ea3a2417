/*
 * The robustness driver: speaks the protocol (efserver-protocol(7)) to
 * efsession, through the codec, over TCP or to a child on a socketpair it
 * can kill at chosen moments, and checks the state directory afterwards
 * through the store and the files.
 * Output is TAP; tests/robust-*.sh and tests/ci/load.sh run it.
 *
 *   load HOST PORT STATE CLIENTS UPLOADS   concurrent clients, mixed sizes, then a full audit
 *   kill EFSESSION STATE N SEED            N uploads, efsession killed with SIGKILL at random moments
 *   kill-verified EFSESSION STATE N SEED EFCTL
 *                                          N new uploads of verified files and their verdicts, killed likewise
 *   race EFSESSION STATE ROUNDS            two connections upload the same name at once
 *   record-race EFSESSION STATE quota|files
 *                                          another connection of the client stores while an upload's
 *                                          content arrives: the record transaction refuses it
 *   register EFSESSION STATE N SEED        N registrations with random names, valid or not
 *   full EFSESSION STATE SIZE [FSIZE]      an upload that cannot fit gets 2107 and leaves nothing
 *   refused EFSESSION STATE                an unusable state directory: 2107 and the connection closed
 *   idle HOST PORT N TIMEOUT               N connections never written to are all closed in time
 *   trickle HOST PORT TIMEOUT              a client sending a byte a second is cut off
 *   sources HOST PORT LIMIT SOURCE...      registrations counted per source address (efsession(8), Limits)
 *   rate HOST PORT RATE SIZE stored|dropped
 *                                          an upload's content sent at RATE bytes a second: stored, or
 *                                          dropped by --min-rate without a response
 *   burst HOST PORT N                      N connections opened at once, in under a second
 *   hold HOST PORT N ADDRESSES IDLE REFUSALS MARGIN
 *                                          N slow holders from ADDRESSES source addresses (127.0.0.2 on)
 *                                          against a normal client; IDLE and REFUSALS are the server's
 *                                          --idle-timeout and --max-refusals, MARGIN the seconds allowed
 *                                          beyond them
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cksum.h"
#include "crypto.h"
#include "io.h"
#include "keyfile.h"
#include "store.h"
#include "wire.h"

#include "prng.h"
#include "tap.h"

#define IO_TIMEOUT_MS 120000
#define CHUNK         (64u * 1024)
#define KIB           1024u
#define MIB           (1024u * 1024)

static const char *efsession_path;

static void die(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(99);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t rnd_below(struct prng *p, uint32_t n)
{
	return n ? prng_next(p) % n : 0;
}

/* io.c's full reads and writes, in the driver's terms: 0, or -1 at an early end, an error or the deadline. */
static int send_all(int fd, const void *buf, size_t len)
{
	return io_write_full(fd, buf, len, IO_TIMEOUT_MS) < 0 ? -1 : 0;
}

static int recv_all(int fd, void *buf, size_t len, int timeout_ms)
{
	return io_read_full(fd, buf, len, timeout_ms) == (ssize_t)len ? 0 : -1;
}

/* Whether the peer closed the connection (within timeout_ms) without sending anything more. */
static bool closed_quietly(int fd, int timeout_ms)
{
	uint8_t b;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return false;
	n = recv(fd, &b, 1, 0);
	/* A reset is a close too: the server leaves a payload it refused unread (efserver-protocol(7), "Errors"). */
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* A connection to host:port from the address source (NULL: any), blocking or not; -1 if it failed. */
static int tcp_open(const char *host, const char *port, const char *source, bool nonblock)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai, *src = NULL;
	int fd, r;

	if ((r = getaddrinfo(host, port, &hints, &ai)) != 0)
		die("getaddrinfo %s:%s: %s", host, port, gai_strerror(r));
	if (source) {
		hints = (struct addrinfo){
		    .ai_family = ai->ai_family, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
		if ((r = getaddrinfo(source, NULL, &hints, &src)) != 0)
			die("source address %s: %s", source, gai_strerror(r));
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd >= 0 && src && bind(fd, src->ai_addr, src->ai_addrlen) < 0)
		die("bind %s: %s", source, strerror(errno));
	if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && !(nonblock && errno == EINPROGRESS))) {
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (src)
		freeaddrinfo(src);
	return fd;
}

static int tcp_connect(const char *host, const char *port)
{
	return tcp_open(host, port, NULL, false);
}

/*
 * efsession as a child on one end of a socketpair, its log in STATE.log,
 * with the limits of efsession(8) that these runs pass on purpose turned
 * off: thousands of registrations from one source, hundreds of them
 * refused on one connection, and a file system filled up to its last byte
 * (tests/replay/limit-*.replay test the limits).
 */
struct child {
	pid_t pid;
	int fd;
};

/* One more option, and its value, for the efsession children (NULL: none). */
static const char *spawn_option[2];

static struct child spawn_rlimit(const char *state, rlim_t fsize)
{
	int sv[2], log;
	char logpath[600];
	struct child c;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	snprintf(logpath, sizeof(logpath), "%s.log", state);
	c.pid = fork();
	if (c.pid < 0)
		die("fork: %s", strerror(errno));
	if (c.pid == 0) {
		log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		if (log >= 0)
			dup2(log, 2);
		if (fsize != RLIM_INFINITY) {
			struct rlimit rl = {fsize, fsize};
			/* Ignored, SIGXFSZ turns a write past the limit into EFBIG, as a full disk gives ENOSPC. */
			signal(SIGXFSZ, SIG_IGN);
			setrlimit(RLIMIT_FSIZE, &rl);
		}
		/* spawn_option[0] NULL ends the list there. */
		execl(efsession_path, efsession_path, "--state-dir", state, "--log-target", "stderr", "--idle-timeout",
		      "60", "--registrations-per-hour", "0", "--min-free-space", "0", "--max-refusals", "0",
		      spawn_option[0], spawn_option[1], (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	c.fd = sv[0];
	return c;
}

static struct child spawn(const char *state)
{
	return spawn_rlimit(state, RLIM_INFINITY);
}

static int reap(struct child *c)
{
	int status;

	close(c->fd);
	if (waitpid(c->pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Header and body of a request of kind in the 1025 or the 1100 set (all but a file's content) into buf. */
static size_t build(uint8_t *buf, size_t cap, bool set1100, enum wire_kind kind, const uint8_t id[16],
                    const struct wire_request_body *b)
{
	size_t len;

	if (wire_build_request(&wire_standard, wire_request_for(set1100 ? 1100 : 1025, kind), id, b, buf, cap, &len) <
	    0)
		die("cannot build a request of kind %d", (int)kind);
	return len;
}

/* One response: its code, its payload into buf (up to cap). 0, or -1 when none came. */
static int get_response(int fd, uint16_t *code, uint8_t *buf, size_t cap, size_t *len)
{
	uint8_t h[WIRE_RESPONSE_HEADER_MAX];
	size_t hlen = wire_response_header_size(&wire_standard);
	struct wire_response_header rh;

	if (recv_all(fd, h, hlen, IO_TIMEOUT_MS) < 0)
		return -1;
	wire_parse_response_header(&wire_standard, h, &rh);
	if (rh.version != WIRE_SERVER_VERSION || rh.payload_size > cap)
		return -1;
	if (recv_all(fd, buf, rh.payload_size, IO_TIMEOUT_MS) < 0)
		return -1;
	*code = rh.code;
	*len = rh.payload_size;
	return 0;
}

/* A client of the driver: one RSA key for all (the server does not mind), its id and AES key. */
struct ident {
	char name[WIRE_NAME_SIZE];
	uint8_t id[16];
	uint8_t aes[32];
	size_t aes_len;
};

static struct keyfile_rsa *rsa;
static uint8_t rsa_spki[DER_RSA_SPKI_MAX];
static size_t rsa_spki_len;

static void init_crypto(void)
{
	if (crypto_init() < 0)
		die("libgcrypt");
	if (keyfile_generate(&rsa, 1024) < 0 || keyfile_public_spki(rsa, rsa_spki, sizeof(rsa_spki), &rsa_spki_len) < 0)
		die("cannot make an RSA key");
}

/* A name[255] field holding name. */
static const uint8_t *name_field(const char *name, uint8_t field[WIRE_NAME_SIZE])
{
	if (wire_put_name(field, name) < 0)
		die("name too long");
	return field;
}

static int do_register(int fd, bool set1100, const char *name, uint8_t id[16], uint16_t *code)
{
	uint8_t msg[WIRE_REQUEST_HEAD_MAX], resp[64], field[WIRE_NAME_SIZE];
	struct wire_response_body rb;
	size_t n, len;

	n = build(msg, sizeof(msg), set1100, WIRE_KIND_REGISTER, NULL,
	          &(struct wire_request_body){.name = name_field(name, field)});
	if (send_all(fd, msg, n) < 0 || get_response(fd, code, resp, sizeof(resp), &len) < 0)
		return -1;
	if (*code == RESP_REGISTERED && wire_parse_response_body(&wire_standard, *code, resp, len, &rb) == 0)
		memcpy(id, rb.id, 16);
	return 0;
}

/* 1026/1101 with the driver's key; the AES key it returns, decrypted. */
static int do_public_key(int fd, bool set1100, struct ident *c)
{
	uint8_t msg[WIRE_REQUEST_HEAD_MAX], resp[WIRE_RESPONSE_PAYLOAD_MAX], field[WIRE_NAME_SIZE];
	struct wire_request_body b = {.name = name_field(c->name, field), .key = rsa_spki, .key_len = rsa_spki_len};
	struct wire_response_body rb;
	uint16_t code;
	size_t n, len;

	n = build(msg, sizeof(msg), set1100, WIRE_KIND_PUBLIC_KEY, c->id, &b);
	if (send_all(fd, msg, n) < 0 || get_response(fd, &code, resp, sizeof(resp), &len) < 0 || code != RESP_AES_KEY ||
	    wire_parse_response_body(&wire_standard, code, resp, len, &rb) < 0 || memcmp(rb.id, c->id, 16) != 0)
		return -1;
	return keyfile_oaep_decrypt(rsa, rb.key, rb.key_len, c->aes, sizeof(c->aes), &c->aes_len) < 0 ? -1 : 0;
}

/* Register and exchange keys on a fresh efsession child. */
static void make_ident(const char *state, const char *name, struct ident *c)
{
	struct child ch = spawn(state);
	uint16_t code;

	snprintf(c->name, sizeof(c->name), "%s", name);
	if (do_register(ch.fd, true, name, c->id, &code) < 0 || code != RESP_REGISTERED ||
	    do_public_key(ch.fd, true, c) < 0)
		die("cannot set up client '%s'", name);
	reap(&ch);
}

/* The plaintext of an upload: size bytes from seed. */
struct content {
	uint64_t size;
	uint32_t seed;
};

static uint32_t content_cksum(const struct content *ct)
{
	struct cksum_state ck;
	struct prng p = {ct->seed ? ct->seed : 1};
	static uint8_t buf[CHUNK];
	uint64_t left = ct->size;
	uint32_t sum;
	size_t n;

	cksum_init(&ck, CKSUM_POSIX);
	while (left) {
		n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
		prng_fill(&p, buf, n);
		cksum_update(&ck, buf, n);
		left -= n;
	}
	sum = cksum_final(&ck);
	cksum_free(&ck);
	return sum;
}

/* Header and fixed fields of a 1028 or 1103 of total bytes of content into buf; their length. */
static size_t upload_head(uint8_t buf[WIRE_REQUEST_HEAD_MAX], bool set1100, const struct ident *c, const char *name,
                          uint64_t total)
{
	uint8_t field[WIRE_NAME_SIZE];

	return build(buf, WIRE_REQUEST_HEAD_MAX, set1100, WIRE_KIND_FILE, c->id,
	             &(struct wire_request_body){.content_size = (uint32_t)total, .name = name_field(name, field)});
}

/*
 * The rate, in bytes a second, at which send_upload sends an upload's
 * content (its header and fixed fields go at once); 0: as fast as it can.
 */
static uint64_t upload_rate;

/* Sleep until ms on the monotonic clock. */
static void sleep_until(int64_t ms)
{
	int64_t left = ms - now_ms();
	struct timespec ts;

	if (left <= 0)
		return;
	ts.tv_sec = left / 1000;
	ts.tv_nsec = (left % 1000) * 1000000;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		continue;
}

/*
 * send_all, with the bytes from skip on no faster than upload_rate since
 * *start (set by the first of them); *paced counts them.
 */
static int send_paced(int fd, const uint8_t *buf, size_t len, size_t skip, int64_t *start, uint64_t *paced)
{
	size_t slice = upload_rate / 20 > 0 ? (size_t)(upload_rate / 20) : 1, n;

	if (!upload_rate)
		return send_all(fd, buf, len);
	if (skip > len)
		skip = len;
	if (skip && send_all(fd, buf, skip) < 0)
		return -1;
	for (size_t at = skip; at < len; at += n) {
		n = len - at < slice ? len - at : slice;
		if (!*start)
			*start = now_ms();
		sleep_until(*start + (int64_t)(*paced * 1000 / upload_rate));
		if (send_all(fd, buf + at, n) < 0)
			return -1;
		*paced += n;
	}
	return 0;
}

/*
 * Where an upload stops on purpose: after `cut` bytes of the request
 * (UINT64_MAX: never). Returns the bytes sent.
 */
static int send_upload(int fd, bool set1100, const struct ident *c, const char *name, const struct content *ct,
                       uint64_t cut, uint64_t *sent_out)
{
	static uint8_t buf[WIRE_REQUEST_HEAD_MAX + CHUNK];
	const uint64_t total = wire_content_size(ct->size);
	struct crypto_cbc *cbc;
	struct prng p = {ct->seed ? ct->seed : 1};
	uint64_t done = 0, sent = 0, n, i, limit, paced = 0;
	size_t off = upload_head(buf, set1100, c, name, total), len;
	int64_t start = 0;
	int r = 0;

	if (crypto_cbc_new(&cbc, c->aes, c->aes_len, true) < 0)
		die("AES");
	for (;;) {
		n = total - done < CHUNK ? total - done : CHUNK;
		for (i = 0; i < n; i++) {
			uint64_t pos = done + i;
			buf[off + i] = pos < ct->size ? prng_byte(&p) : (uint8_t)(total - ct->size);
		}
		crypto_cbc_run(cbc, buf + off, (size_t)n);
		done += n;
		len = off + (size_t)n;
		limit = cut - sent < len ? cut - sent : len;
		if (send_paced(fd, buf, (size_t)limit, off, &start, &paced) < 0) {
			r = -1;
			break;
		}
		sent += limit;
		if (sent == cut || done == total)
			break;
		off = 0;
	}
	crypto_cbc_free(cbc);
	if (sent_out)
		*sent_out = sent;
	return r;
}

/* Upload and read 2103: 0 when it carries the right id, sizes, name and checksum. */
static int upload(int fd, bool set1100, const struct ident *c, const char *name, const struct content *ct,
                  uint16_t *code)
{
	uint8_t resp[WIRE_RESPONSE_PAYLOAD_MAX], field[WIRE_NAME_SIZE];
	struct wire_response_body rb;
	size_t len;

	*code = 0;
	if (send_upload(fd, set1100, c, name, ct, UINT64_MAX, NULL) < 0 ||
	    get_response(fd, code, resp, sizeof(resp), &len) < 0)
		return -1;
	if (*code != RESP_FILE_RECEIVED || wire_parse_response_body(&wire_standard, *code, resp, len, &rb) < 0 ||
	    memcmp(rb.id, c->id, 16) != 0 || rb.content_size != wire_content_size(ct->size) ||
	    memcmp(rb.name, name_field(name, field), WIRE_NAME_SIZE) != 0 || rb.checksum != content_cksum(ct))
		return -1;
	return 0;
}

/* Send 1029 or 1104. */
static int send_confirm(int fd, bool set1100, const struct ident *c, const char *name)
{
	uint8_t msg[WIRE_REQUEST_HEAD_MAX], field[WIRE_NAME_SIZE];
	size_t n = build(msg, sizeof(msg), set1100, WIRE_KIND_CRC_OK, c->id,
	                 &(struct wire_request_body){.name = name_field(name, field)});

	return send_all(fd, msg, n);
}

/* 1029 (answered 2104 with the id) or 1104 (2104, no payload). */
static int confirm(int fd, bool set1100, const struct ident *c, const char *name)
{
	uint8_t resp[64];
	struct wire_response_body rb;
	uint16_t code;
	size_t len;

	if (send_confirm(fd, set1100, c, name) < 0 || get_response(fd, &code, resp, sizeof(resp), &len) < 0)
		return -1;
	if (code != RESP_ACK || wire_parse_response_body(&wire_standard, code, resp, len, &rb) < 0 ||
	    (rb.id != NULL) == set1100)
		return -1;
	return 0;
}

/* Whether the file at path holds exactly the content (and its size). */
static bool file_matches(const char *path, const struct content *ct)
{
	static uint8_t want[CHUNK], got[CHUNK];
	struct prng p = {ct->seed ? ct->seed : 1};
	uint64_t left = ct->size;
	struct stat sb;
	bool same = true;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n;

	if (fd < 0)
		return false;
	if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_size != ct->size)
		same = false;
	while (same && left) {
		n = left < CHUNK ? (size_t)left : CHUNK;
		prng_fill(&p, want, n);
		if (read(fd, got, n) != (ssize_t)n || memcmp(want, got, n) != 0)
			same = false;
		left -= n;
	}
	close(fd);
	return same;
}

/* The cksum of a stored file, and its size. */
static int file_cksum(const char *path, uint32_t *sum, uint64_t *size)
{
	static uint8_t buf[CHUNK];
	struct cksum_state ck;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	cksum_init(&ck, CKSUM_POSIX);
	*size = 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		cksum_update(&ck, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	close(fd);
	*sum = cksum_final(&ck);
	cksum_free(&ck);
	return n < 0 ? -1 : 0;
}

/* Entries in a directory, "." and ".." aside; -1 if it cannot be read. */
static long count_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	long n = 0;

	if (!d)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* Every file under files/, in all client directories. */
static long count_stored_files(const char *state)
{
	char path[700], sub[1000];
	DIR *d;
	struct dirent *e;
	long n = 0, k;

	snprintf(path, sizeof(path), "%s/files", state);
	if (!(d = opendir(path)))
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		if ((k = count_entries(sub)) < 0) {
			n = -1;
			break;
		}
		n += k;
	}
	closedir(d);
	return n;
}

static bool tmp_empty(const char *state)
{
	char path[700];

	snprintf(path, sizeof(path), "%s/tmp", state);
	return count_entries(path) == 0;
}

/* Rows against files: each row's file exists with the row's size and checksum. */
struct audit {
	const char *state;
	bool quiet;
	long rows, bad, bad_verified, unverified, interrupted;
	long long attempts_over_one;
};

static int audit_file(const struct store_file *f, void *ctx)
{
	struct audit *a = ctx;
	char path[1200];
	uint32_t sum, want_sum = f->checksum;
	uint64_t size, want_size = f->size;

	a->rows++;
	if (f->status != STORE_FILE_STORED)
		return 0;
	if (!f->verified)
		a->unverified++;
	if (f->attempts > 1)
		a->attempts_over_one++;
	/*
	 * A row whose copy kept aside is gone had its confirmation's rename done
	 * and its commit cut short: the name holds that copy, which the next
	 * look (efctl gc, any request on the file) records.
	 */
	if (f->pending) {
		char hex[WIRE_ID_HEX_SIZE];

		wire_id_to_hex(f->client_id, hex);
		snprintf(path, sizeof(path), "%s/pending/%s/%s", a->state, hex, f->pending_name);
		if (access(path, F_OK) < 0 && errno == ENOENT) {
			want_size = f->pending_size;
			want_sum = f->pending_checksum;
			a->interrupted++;
		}
	}
	snprintf(path, sizeof(path), "%s/%s", a->state, f->path_name);
	if (file_cksum(path, &sum, &size) < 0 || size != want_size || sum != want_sum) {
		if (!a->quiet && a->bad < 5)
			printf("#   row %s (size %llu, checksum %u) does not match its file\n", f->path_name,
			       (unsigned long long)want_size, want_sum);
		a->bad++;
		if (f->verified)
			a->bad_verified++;
	}
	return 0;
}

static bool db_ok(const char *state, struct audit *a)
{
	struct store *st;
	bool good;

	bool quiet = a->quiet;

	memset(a, 0, sizeof(*a));
	a->state = state;
	a->quiet = quiet;
	if (store_open_readonly(state, 5000, &st) < 0)
		return false;
	good = store_integrity_check(st) == 0 && store_each_file(st, NULL, audit_file, a) == 0;
	store_close(st);
	return good;
}

/* load: CLIENTS processes, UPLOADS each, sizes 1 KiB to 8 MiB (log-uniform), then the audit. */
static uint64_t load_size(struct prng *p, int j)
{
	uint32_t k = 10 + rnd_below(p, 13); /* 2^10 .. 2^23: every order of magnitude as likely */

	if (j == 0)
		return KIB;
	if (j == 1)
		return 8 * MIB;
	return ((uint64_t)1 << k) + rnd_below(p, (uint32_t)1 << k);
}

static struct content load_content(int client, int j, struct prng *sizes)
{
	struct content ct = {.seed = (uint32_t)(client * 1000 + j + 1)};

	ct.size = load_size(sizes, j);
	return ct;
}

/* One load client; exit status 0 when every request got its success response. */
static int load_client(const char *host, const char *port, int i, int uploads)
{
	bool per_request = i % 2 == 1, set1100 = (i / 2) % 2 == 1;
	struct prng sizes = {(uint32_t)(7919 * (i + 1))};
	struct ident c = {0};
	char name[64], fname[64];
	uint16_t code = 0;
	int fd = -1, j, failed = 0;

	snprintf(name, sizeof(name), "load-%03d", i);
	snprintf(c.name, sizeof(c.name), "%s", name);
	if ((fd = tcp_connect(host, port)) < 0 || do_register(fd, set1100, name, c.id, &code) < 0 ||
	    code != RESP_REGISTERED) {
		fprintf(stderr, "client %d: register failed (%u)\n", i, code);
		return 1;
	}
	if (per_request) {
		close(fd);
		fd = tcp_connect(host, port);
	}
	if (fd < 0 || do_public_key(fd, set1100, &c) < 0) {
		fprintf(stderr, "client %d: key exchange failed\n", i);
		return 1;
	}
	for (j = 0; j < uploads; j++) {
		struct content ct = load_content(i, j, &sizes);
		snprintf(fname, sizeof(fname), "file-%02d.bin", j);
		if (per_request) {
			close(fd);
			fd = tcp_connect(host, port);
		}
		if (fd < 0 || upload(fd, set1100, &c, fname, &ct, &code) < 0) {
			fprintf(stderr, "client %d: upload %d (%llu bytes) failed: response %u\n", i, j,
			        (unsigned long long)ct.size, code);
			failed++;
			if (fd >= 0)
				close(fd);
			fd = tcp_connect(host, port);
			continue;
		}
		if (per_request) {
			close(fd);
			fd = tcp_connect(host, port);
		}
		if (fd < 0 || confirm(fd, set1100, &c, fname) < 0) {
			fprintf(stderr, "client %d: confirmation %d failed\n", i, j);
			failed++;
			if (fd >= 0)
				close(fd);
			fd = tcp_connect(host, port);
		}
	}
	if (fd >= 0)
		close(fd);
	return failed ? 1 : 0;
}

struct load_audit {
	const char *state;
	long clients, missing, mismatched;
	int uploads;
};

static int audit_load_client(const struct store_client *cl, void *ctx)
{
	struct load_audit *a = ctx;
	struct prng sizes;
	char hex[WIRE_ID_HEX_SIZE], path[1200];
	int i, j;

	if (sscanf(cl->name, "load-%d", &i) != 1)
		return 0;
	a->clients++;
	sizes.x = (uint32_t)(7919 * (i + 1));
	wire_id_to_hex(cl->id, hex);
	for (j = 0; j < a->uploads; j++) {
		struct content ct = load_content(i, j, &sizes);
		snprintf(path, sizeof(path), "%s/files/%s/file-%02d.bin", a->state, hex, j);
		if (access(path, F_OK) < 0)
			a->missing++;
		else if (!file_matches(path, &ct)) {
			printf("#   %s differs from what client %d sent\n", path, i);
			a->mismatched++;
		}
	}
	return 0;
}

static int cmd_load(char **argv)
{
	const char *host = argv[0], *port = argv[1], *state = argv[2];
	int clients = atoi(argv[3]), uploads = atoi(argv[4]), i, status, failed_clients = 0;
	struct load_audit la = {.state = state, .uploads = uploads};
	struct audit a = {0};
	struct store *st;
	int64_t t0 = now_ms();
	pid_t *pids = calloc((size_t)clients, sizeof(*pids));

	init_crypto();
	fflush(stdout);
	for (i = 0; i < clients; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork: %s", strerror(errno));
		if (pids[i] == 0)
			_exit(load_client(host, port, i, uploads));
	}
	for (i = 0; i < clients; i++)
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed_clients++;
	printf("# %d clients x %d uploads in %.1f s\n", clients, uploads, (double)(now_ms() - t0) / 1000.0);
	is_int(failed_clients, 0,
	       "%d concurrent clients (half one connection per request, both code sets) x %d uploads of 1 KiB to "
	       "8 MiB: every request got its success response (no 2107, so no SQLITE_BUSY reached a client)",
	       clients, uploads);
	ok(db_ok(state, &a), "PRAGMA integrity_check is ok and every row could be read");
	is_int(a.rows, (long)clients * uploads, "the database holds one row per upload");
	is_int(a.bad, 0, "every row's size and checksum match its stored file");
	is_int(a.unverified, 0, "every row is marked verified");
	is_int(a.attempts_over_one, 0, "every row counts one attempt");
	if (store_open_readonly(state, 5000, &st) < 0)
		die("cannot open the store");
	store_each_client(st, audit_load_client, &la);
	store_close(st);
	is_int(la.clients, clients, "every client is registered once");
	ok(la.missing == 0 && la.mismatched == 0,
	   "every stored file is byte-identical to its original (%ld missing, %ld different)", la.missing,
	   la.mismatched);
	is_int(count_stored_files(state), (long)clients * uploads, "no file on disk beyond those uploaded");
	ok(tmp_empty(state), "no temporary file left in tmp/");
	free(pids);
	return tap_done();
}

/* The row of a client's file, read from the store: true when there is one. */
static bool row_of(const char *state, const struct ident *c, const char *fname, struct store_file *f)
{
	char hex[WIRE_ID_HEX_SIZE], rel[900];
	struct store *st;
	bool found;

	wire_id_to_hex(c->id, hex);
	snprintf(rel, sizeof(rel), "files/%s/%s", hex, fname);
	if (store_open_readonly(state, 5000, &st) < 0)
		die("cannot open the store");
	found = store_get_file(st, c->id, rel, f) == 0;
	store_close(st);
	return found;
}

/* Whether a row keeps aside exactly that content. */
static bool kept_aside(const struct store_file *f, const struct content *ct)
{
	return f->pending && f->pending_size == ct->size && f->pending_checksum == content_cksum(ct);
}

/*
 * kill: N uploads to efsession children on socketpairs, each killed with
 * SIGKILL at a random moment: mid-header, mid-content, right after the
 * content, after a random delay (inside decryption, fsync, link or commit),
 * after 2103 and before the confirmation, or after the confirmation was sent.
 * After each kill the state must be whole.
 */
enum kill_point { K_HEADER, K_CONTENT, K_AFTER_CONTENT, K_TIMER, K_BEFORE_CONFIRM, K_AFTER_CONFIRM, K_POINTS };
static const char *const kill_names[] = {
    "in the header",      "during the content",       "after the content",
    "at a random moment", "between 2103 and confirm", "after the confirmation was sent"};

static int cmd_kill(char **argv)
{
	const char *state = argv[1];
	int n = atoi(argv[2]), k, i, st_code, kills = 0, by_point[K_POINTS] = {0}, published = 0;
	struct prng p = {(uint32_t)strtoul(argv[3], NULL, 0) | 1};
	struct content *stored; /* what each name holds after its last complete upload */
	long bad_final = 0, bad_rows = 0, leftovers = 0, integrity = 0, lost = 0, ahead = 0, ahead_verified = 0,
	     prev_bad = 0, prev_bad_verified = 0;
	struct ident c;
	char path[1200], hex[WIRE_ID_HEX_SIZE], fname[64];

	efsession_path = argv[0];
	init_crypto();
	make_ident(state, "victim", &c);
	wire_id_to_hex(c.id, hex);
	stored = calloc((size_t)n, sizeof(*stored));
	for (k = 0; k < n; k++) {
		/* One name in four is a resend of an earlier name with different content: a replacement. */
		int slot = k > 4 && rnd_below(&p, 4) == 0 ? (int)rnd_below(&p, (uint32_t)k) : k;
		enum kill_point kp = (enum kill_point)rnd_below(&p, K_POINTS);
		struct content ct = {.size = rnd_below(&p, 3) == 0 ? rnd_below(&p, 64) : rnd_below(&p, 3 * MIB),
		                     .seed = (uint32_t)(k + 1) * 2654435761u};
		bool set1100 = rnd_below(&p, 2), got2103 = false, confirm_sent = false, was_verified;
		uint8_t head[WIRE_REQUEST_HEAD_MAX];
		uint64_t content = wire_content_size(ct.size), total, cut = UINT64_MAX;
		struct child ch = spawn(state);
		uint16_t code;
		struct audit a = {.quiet = true};
		struct store_file f;

		snprintf(fname, sizeof(fname), "k%03d.bin", slot);
		/* A verified file's new upload is kept aside: under its name only once its confirmation lands. */
		was_verified = row_of(state, &c, fname, &f) && f.verified;
		total = upload_head(head, set1100, &c, fname, content) + content;
		if (kp == K_HEADER)
			cut = 1 + rnd_below(&p, WIRE_REQUEST_HEADER_SIZE - 1);
		else if (kp == K_CONTENT)
			cut = total - content + rnd_below(&p, (uint32_t)content);
		if (kp == K_TIMER) {
			/* Sent from a child of ours, so that the kill can land while efsession works. */
			pid_t w = fork();
			if (w == 0) {
				(void)send_upload(ch.fd, set1100, &c, fname, &ct, UINT64_MAX, NULL);
				_exit(0);
			}
			usleep(rnd_below(&p, 2000 + (uint32_t)(ct.size / 20)));
			kill(ch.pid, SIGKILL);
			waitpid(w, NULL, 0);
		} else {
			(void)send_upload(ch.fd, set1100, &c, fname, &ct, cut, NULL);
			if (kp == K_AFTER_CONTENT)
				usleep(rnd_below(&p, 3000));
			if (kp == K_BEFORE_CONFIRM || kp == K_AFTER_CONFIRM) {
				uint8_t resp[WIRE_RESPONSE_PAYLOAD_MAX];
				size_t len;
				got2103 = get_response(ch.fd, &code, resp, sizeof(resp), &len) == 0 &&
				          code == RESP_FILE_RECEIVED;
				if (got2103 && kp == K_AFTER_CONFIRM)
					confirm_sent = send_confirm(ch.fd, set1100, &c, fname) == 0;
			}
			kill(ch.pid, SIGKILL);
		}
		st_code = reap(&ch);
		if (st_code == 128 + SIGKILL)
			kills++;
		by_point[kp]++;

		snprintf(path, sizeof(path), "%s/files/%s/%s", state, hex, fname);
		if (access(path, F_OK) == 0) {
			/* Under its final name: the whole new content or the whole earlier one, nothing else. */
			if (file_matches(path, &ct) && was_verified && !confirm_sent) {
				printf("#   upload %d (%s, killed %s): it replaced a verified copy unconfirmed\n", k,
				       fname, kill_names[kp]);
				bad_final++;
			} else if (file_matches(path, &ct)) {
				if (stored[slot].seed != ct.seed)
					published++;
				stored[slot] = ct;
			} else if (!(stored[slot].seed && file_matches(path, &stored[slot]))) {
				printf("#   upload %d (%s, killed %s): %s is partial or corrupt\n", k, fname,
				       kill_names[kp], path);
				bad_final++;
			}
		} else if (stored[slot].seed) {
			printf("#   upload %d (killed %s): the earlier copy of %s was lost\n", k, kill_names[kp],
			       fname);
			lost++;
		}
		if (got2103 && !file_matches(path, &ct) && !(row_of(state, &c, fname, &f) && kept_aside(&f, &ct))) {
			printf("#   upload %d: 2103 was sent but %s neither holds the upload nor keeps it aside\n", k,
			       fname);
			lost++;
		}
		if (!db_ok(state, &a))
			integrity++;
		if (a.bad > prev_bad) {
			/*
			 * A replacement is renamed into place inside the transaction that
			 * records it: killed before the commit, the new file stands with
			 * the earlier row, which must no longer say verified.
			 */
			if (a.bad - prev_bad == 1 && slot != k && file_matches(path, &ct)) {
				printf("#   upload %d (replacing %s, killed %s): the new file stands with the earlier "
				       "row%s\n",
				       k, fname, kill_names[kp],
				       a.bad_verified > prev_bad_verified ? ", verified" : "");
				ahead++;
				if (a.bad_verified > prev_bad_verified)
					ahead_verified++;
			} else {
				printf("#   upload %d (%s, killed %s): %ld rows differ from their files\n", k, fname,
				       kill_names[kp], a.bad - prev_bad);
				bad_rows++;
			}
		}
		prev_bad = a.bad;
		prev_bad_verified = a.bad_verified;
		if (!tmp_empty(state))
			leftovers++;
	}
	for (i = 0; i < K_POINTS; i++)
		printf("# killed %s: %d times\n", kill_names[i], by_point[i]);
	is_int(kills, n, "%d uploads, efsession killed with SIGKILL in each (%d after its file was already named)", n,
	       published);
	is_int(bad_final, 0, "never a partial or corrupt file under a final name");
	is_int(lost, 0, "a file acknowledged with 2103, or stored before, is never lost");
	is_int(integrity, 0, "PRAGMA integrity_check is ok after every kill");
	is_int(bad_rows, 0, "after every kill, every row matches the file it names (but for the case below)");
	is_int(ahead_verified, 0,
	       "a replacement killed between its rename and its commit never leaves the new file under a row that "
	       "says verified (%ld such kills)",
	       ahead);
	is_int(leftovers, 0, "no temporary file is ever left in tmp/");
	{
		/* The killed sessions leave no file outside the names the driver used. */
		char dir[900];
		long named = 0;
		snprintf(dir, sizeof(dir), "%s/files/%s", state, hex);
		for (i = 0; i < n; i++)
			if (stored[i].seed)
				named++;
		is_int(count_entries(dir), named, "the client directory holds only complete files under their names");
	}
	{
		/* And the server still serves: an upload after all that goes through. */
		struct child ch = spawn(state);
		struct content ct = {.size = 100000, .seed = 4242};
		uint16_t code;
		ok(upload(ch.fd, true, &c, "after.bin", &ct, &code) == 0 && confirm(ch.fd, true, &c, "after.bin") == 0,
		   "after the kills an upload and its confirmation succeed");
		reap(&ch);
	}
	free(stored);
	return tap_done();
}

/* Send a checksum verdict (1029-1031 or 1104-1106) without reading its answer. */
static int send_verdict(int fd, bool set1100, enum wire_kind kind, const struct ident *c, const char *name)
{
	uint8_t msg[WIRE_REQUEST_HEAD_MAX], field[WIRE_NAME_SIZE];
	size_t n =
	    build(msg, sizeof(msg), set1100, kind, c->id, &(struct wire_request_body){.name = name_field(name, field)});

	return send_all(fd, msg, n);
}

/*
 * efctl gc --force on the state directory: how many interrupted
 * confirmations it completed, or -1 when it did not exit 0.
 */
static int run_gc(const char *efctl, const char *state)
{
	char line[1024];
	int status, out[2], completed = 0;
	FILE *f;
	pid_t pid;

	if (pipe2(out, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(out[1], 1);
		execl(efctl, efctl, "--state-dir", state, "gc", "--force", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	if (!(f = fdopen(out[0], "r")))
		die("fdopen: %s", strerror(errno));
	while (fgets(line, sizeof(line), f))
		completed += strncmp(line, "completed ", 10) == 0;
	fclose(f);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	return completed;
}

/* Files in the client's pending/ directory that no row names: what efctl gc must have left none of. */
static long unnamed_pending(const char *state, struct store *st, const struct ident *c)
{
	char dir[900], hex[WIRE_ID_HEX_SIZE];
	struct dirent *e;
	long n = 0;
	DIR *d;

	wire_id_to_hex(c->id, hex);
	snprintf(dir, sizeof(dir), "%s/pending/%s", state, hex);
	if (!(d = opendir(dir)))
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && store_pending_referenced(st, c->id, e->d_name) != 1)
			n++;
	closedir(d);
	return n;
}

/*
 * kill-verified: N new uploads of verified files, each followed by a
 * confirmation (mostly) or a resend or give-up verdict, efsession killed
 * with SIGKILL at a random moment of it. After each kill and an efctl gc,
 * the name holds its verified copy or the replacement whose confirmation
 * was sent, whole; the row describes it and is still verified; a copy kept
 * aside is whole and named by its row; nothing is left in tmp/ or pending/
 * that no row names.
 */
enum kv_point { KV_CONTENT, KV_AFTER_CONTENT, KV_BEFORE_VERDICT, KV_AFTER_VERDICT, KV_TIMER, KV_POINTS };
static const char *const kv_names[] = {"during the content", "after the content", "between 2103 and the verdict",
                                       "after the verdict was sent", "at a random moment"};

#define KV_SLOTS 8

static int cmd_kill_verified(char **argv)
{
	const char *state = argv[1], *efctl = argv[4];
	int n = atoi(argv[2]), k, r, kills = 0, by_point[KV_POINTS] = {0}, confirmed = 0, kept = 0, completed = 0;
	struct prng p = {(uint32_t)strtoul(argv[3], NULL, 0) | 1};
	struct content current[KV_SLOTS];
	long bad_content = 0, bad_row = 0, bad_aside = 0, lost_aside = 0, leftovers = 0, unnamed = 0, gc_failed = 0,
	     integrity = 0;
	char path[1200], hex[WIRE_ID_HEX_SIZE], fname[64], rel[900];
	struct ident c;
	struct store *st;

	efsession_path = argv[0];
	init_crypto();
	make_ident(state, "keeper", &c);
	wire_id_to_hex(c.id, hex);
	/* Every name starts verified. */
	for (k = 0; k < KV_SLOTS; k++) {
		struct child ch = spawn(state);
		uint16_t code;

		current[k] = (struct content){.size = 1000 + 4099 * (uint64_t)k, .seed = 7000u + (uint32_t)k};
		snprintf(fname, sizeof(fname), "v%d.bin", k);
		if (upload(ch.fd, k % 2, &c, fname, &current[k], &code) < 0 || confirm(ch.fd, k % 2, &c, fname) < 0)
			die("cannot set up verified file %s", fname);
		reap(&ch);
	}
	for (k = 0; k < n; k++) {
		int slot = (int)rnd_below(&p, KV_SLOTS);
		enum kv_point kp = (enum kv_point)rnd_below(&p, KV_POINTS);
		uint32_t roll = rnd_below(&p, 10);
		enum wire_kind verdict = roll < 7   ? WIRE_KIND_CRC_OK
		                         : roll < 8 ? WIRE_KIND_CRC_RETRY
		                                    : WIRE_KIND_CRC_ABORT;
		struct content ct = {.size = rnd_below(&p, 4) == 0 ? rnd_below(&p, 100) : rnd_below(&p, MIB),
		                     .seed = (uint32_t)(k + 1) * 2246822519u};
		bool set1100 = rnd_below(&p, 2), got2103 = false, verdict_sent = false, have_row;
		uint8_t head[WIRE_REQUEST_HEAD_MAX], resp[WIRE_RESPONSE_PAYLOAD_MAX];
		uint64_t content = wire_content_size(ct.size), total, cut = UINT64_MAX;
		struct child ch = spawn(state);
		struct store_file f;
		uint16_t code;
		uint32_t sum;
		uint64_t size;
		size_t len;

		snprintf(fname, sizeof(fname), "v%d.bin", slot);
		total = upload_head(head, set1100, &c, fname, content) + content;
		if (kp == KV_CONTENT)
			cut = total - content + rnd_below(&p, (uint32_t)content);
		if (kp == KV_TIMER) {
			/* Sent from a child of ours, so that the kill can land while efsession works. */
			pid_t w = fork();
			if (w == 0) {
				(void)send_upload(ch.fd, set1100, &c, fname, &ct, UINT64_MAX, NULL);
				(void)send_verdict(ch.fd, set1100, verdict, &c, fname);
				_exit(0);
			}
			verdict_sent = true;
			usleep(rnd_below(&p, 3000 + (uint32_t)(ct.size / 50)));
			kill(ch.pid, SIGKILL);
			waitpid(w, NULL, 0);
		} else {
			(void)send_upload(ch.fd, set1100, &c, fname, &ct, cut, NULL);
			if (kp == KV_AFTER_CONTENT)
				usleep(rnd_below(&p, 3000));
			if (kp == KV_BEFORE_VERDICT || kp == KV_AFTER_VERDICT)
				got2103 = get_response(ch.fd, &code, resp, sizeof(resp), &len) == 0 &&
				          code == RESP_FILE_RECEIVED;
			if (got2103 && kp == KV_AFTER_VERDICT) {
				verdict_sent = send_verdict(ch.fd, set1100, verdict, &c, fname) == 0;
				usleep(rnd_below(&p, 3000));
			}
			kill(ch.pid, SIGKILL);
		}
		if (reap(&ch) == 128 + SIGKILL)
			kills++;
		by_point[kp]++;
		if ((r = run_gc(efctl, state)) < 0)
			gc_failed++;
		else
			completed += r;

		snprintf(path, sizeof(path), "%s/files/%s/%s", state, hex, fname);
		if (file_matches(path, &current[slot])) {
			/* The verified copy stayed. */
		} else if (verdict_sent && verdict == WIRE_KIND_CRC_OK && file_matches(path, &ct)) {
			current[slot] = ct;
			confirmed++;
		} else {
			printf("#   upload %d (%s, killed %s): %s is neither its verified copy nor a confirmed "
			       "replacement\n",
			       k, fname, kv_names[kp], path);
			bad_content++;
		}
		if (store_open_readonly(state, 5000, &st) < 0)
			die("cannot open the store");
		if (store_integrity_check(st) < 0)
			integrity++;
		snprintf(rel, sizeof(rel), "files/%s/%s", hex, fname);
		have_row = store_get_file(st, c.id, rel, &f) == 0;
		if (!have_row || !f.verified || f.status != STORE_FILE_STORED || file_cksum(path, &sum, &size) < 0 ||
		    size != f.size || sum != f.checksum) {
			printf("#   upload %d (%s, killed %s): its row does not describe the verified file\n", k, fname,
			       kv_names[kp]);
			bad_row++;
		} else if (f.pending) {
			char aside[1200];

			kept++;
			snprintf(aside, sizeof(aside), "%s/pending/%s/%s", state, hex, f.pending_name);
			if (file_cksum(aside, &sum, &size) < 0 || size != f.pending_size || sum != f.pending_checksum) {
				printf(
				    "#   upload %d (%s, killed %s): its copy kept aside is not the one its row names\n",
				    k, fname, kv_names[kp]);
				bad_aside++;
			}
		}
		/* Acknowledged with 2103 and no verdict sent: the copy must be waiting, whole. */
		if (got2103 && !verdict_sent && !(have_row && kept_aside(&f, &ct))) {
			printf("#   upload %d (%s, killed %s): acknowledged with 2103, but no longer kept aside\n", k,
			       fname, kv_names[kp]);
			lost_aside++;
		}
		if (unnamed_pending(state, st, &c) != 0)
			unnamed++;
		store_close(st);
		if (!tmp_empty(state))
			leftovers++;
	}
	for (k = 0; k < KV_POINTS; k++)
		printf("# killed %s: %d times\n", kv_names[k], by_point[k]);
	printf("# %d replacements confirmed (%d of them between their rename and their commit, completed by efctl "
	       "gc), %d copies found kept aside after a kill\n",
	       confirmed, completed, kept);
	is_int(kills, n, "%d new uploads of verified files, efsession killed with SIGKILL in each", n);
	is_int(gc_failed, 0, "efctl gc --force succeeded after every kill");
	is_int(bad_content, 0,
	       "the name always holds its verified copy or a replacement whose confirmation was sent, byte for byte");
	is_int(bad_row, 0, "its row always describes that file, and is still verified");
	is_int(bad_aside, 0, "a copy kept aside is always whole and the one its row names");
	is_int(lost_aside, 0, "an upload acknowledged with 2103 and not yet settled is always kept aside");
	is_int(unnamed, 0, "after efctl gc, pending/ never holds a copy no row names");
	is_int(leftovers, 0, "no temporary file is ever left in tmp/");
	is_int(integrity, 0, "PRAGMA integrity_check is ok after every kill");
	{
		struct child ch = spawn(state);
		struct content ct = {.size = 50000, .seed = 4243};
		uint16_t code;

		snprintf(path, sizeof(path), "%s/files/%s/v0.bin", state, hex);
		ok(upload(ch.fd, true, &c, "v0.bin", &ct, &code) == 0 && confirm(ch.fd, true, &c, "v0.bin") == 0 &&
		       file_matches(path, &ct),
		   "after the kills a replacement and its confirmation go through");
		reap(&ch);
	}
	return tap_done();
}

/* race: two connections upload the same name with different content at the same moment. */
static int cmd_race(char **argv)
{
	const char *state = argv[1];
	int rounds = atoi(argv[2]), r, both = 0, whole = 0, consistent = 0;
	struct ident c;
	char path[1200], hex[WIRE_ID_HEX_SIZE];
	struct store *st;

	efsession_path = argv[0];
	init_crypto();
	make_ident(state, "racer", &c);
	wire_id_to_hex(c.id, hex);
	snprintf(path, sizeof(path), "%s/files/%s/same.bin", state, hex);
	for (r = 0; r < rounds; r++) {
		struct content a = {.size = 1 * MIB + 17 * (uint64_t)r, .seed = 1000u + (uint32_t)r},
		               b = {.size = 2 * MIB - 5 * (uint64_t)r, .seed = 5000u + (uint32_t)r};
		struct child ca = spawn(state), cb = spawn(state);
		pid_t w;
		int status, ok_a, ok_b = 0;
		uint16_t code;
		struct store_file f;

		fflush(stdout);
		w = fork();
		if (w == 0)
			_exit(upload(cb.fd, r % 2 == 0, &c, "same.bin", &b, &code) == 0 ? 0 : 1);
		ok_a = upload(ca.fd, r % 2 == 1, &c, "same.bin", &a, &code) == 0;
		if (waitpid(w, &status, 0) == w && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ok_b = 1;
		reap(&ca);
		reap(&cb);
		both += ok_a && ok_b;
		whole += file_matches(path, &a) || file_matches(path, &b);
		if (store_open_readonly(state, 5000, &st) == 0) {
			char rel[900];
			uint32_t sum;
			uint64_t size;
			snprintf(rel, sizeof(rel), "files/%s/same.bin", hex);
			if (store_get_file(st, c.id, rel, &f) == 0 && file_cksum(path, &sum, &size) == 0 &&
			    f.size == size && f.checksum == sum && f.attempts == 2LL * (r + 1))
				consistent++;
			store_close(st);
		}
	}
	is_int(both, rounds, "%d rounds of two connections uploading the same name at once: both get 2103", rounds);
	is_int(whole, rounds, "the stored file is always one of the two uploads, whole");
	is_int(consistent, rounds, "its row always matches the file that won, and counts every attempt");
	ok(tmp_empty(state), "no temporary file left in tmp/");
	return tap_done();
}

/*
 * record-race: a client's upload passes --client-quota (or
 * --client-max-files) before its content; while the content trickles in,
 * another connection of the same client stores a file that leaves no room
 * for it. The transaction that would record it finds that out: 2107, the
 * connection closed, nothing kept (efsession(8), LIMITS).
 */
static int cmd_record_race(char **argv)
{
	const char *state = argv[1];
	bool quota = strcmp(argv[2], "quota") == 0;
	struct content slow = {.size = 2 * MIB, .seed = 31}, fast = {.size = 2 * MIB, .seed = 32};
	uint8_t resp[WIRE_RESPONSE_PAYLOAD_MAX];
	char path[1200], hex[WIRE_ID_HEX_SIZE];
	struct store_client cl = {0};
	struct child ca, cb;
	struct ident c;
	struct store *st;
	uint16_t code = 0;
	int status = -1;
	size_t len;
	pid_t w;

	efsession_path = argv[0];
	init_crypto();
	make_ident(state, "sharer", &c);
	wire_id_to_hex(c.id, hex);
	spawn_option[0] = quota ? "--client-quota" : "--client-max-files";
	spawn_option[1] = quota ? "3M" : "1";
	ca = spawn(state);
	cb = spawn(state);
	fflush(stdout);
	w = fork();
	if (w == 0) {
		/* 2 MiB at 1 MiB/s: its check before the content passes, its record comes 2 s later. */
		upload_rate = MIB;
		if (send_upload(ca.fd, true, &c, "slow.bin", &slow, UINT64_MAX, NULL) < 0 ||
		    get_response(ca.fd, &code, resp, sizeof(resp), &len) < 0)
			_exit(2);
		_exit(code == RESP_ERROR && len == 0 && closed_quietly(ca.fd, IO_TIMEOUT_MS) ? 0 : 1);
	}
	sleep_until(now_ms() + 500);
	ok(upload(cb.fd, false, &c, "fast.bin", &fast, &code) == 0, "another connection of the client stores 2 MiB");
	ok(waitpid(w, &status, 0) == w && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "the upload that passed --%s before its content gets 2107 once it is read, and is closed",
	   spawn_option[0] + 2);
	reap(&ca);
	reap(&cb);
	snprintf(path, sizeof(path), "%s/files/%s/slow.bin", state, hex);
	ok(access(path, F_OK) < 0 && tmp_empty(state), "nothing of it is kept");
	snprintf(path, sizeof(path), "%s/files/%s/fast.bin", state, hex);
	ok(file_matches(path, &fast), "the other file is stored whole");
	if (store_open_readonly(state, 5000, &st) == 0) {
		(void)store_get_client(st, c.id, &cl);
		store_close(st);
	}
	ok(cl.stored_bytes == fast.size && cl.stored_files == 1,
	   "the client's counters count the stored file alone (%llu bytes, %llu files)",
	   (unsigned long long)cl.stored_bytes, (unsigned long long)cl.stored_files);
	spawn_option[0] = spawn_option[1] = NULL;
	return tap_done();
}

/*
 * register: N registrations with random names on a few efsession children.
 * Valid names get 2100; a name taken gets 2101 and the connection goes on;
 * an invalid one (control byte, bad UTF-8, empty, no NUL) 2101 and the
 * connection closes (efserver-protocol(7), "Names").
 */
enum name_kind { N_VALID, N_DUPLICATE, N_CONTROL, N_BAD_UTF8, N_EMPTY, N_NO_NUL };

static size_t random_valid_name(struct prng *p, uint8_t *out, int tag)
{
	static const char *const multi[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xd0\x96", "\xe4\xb8\xad"};
	size_t len = 0, want = 1 + rnd_below(p, rnd_below(p, 4) == 0 ? 240 : 24), m;

	out[len++] = (uint8_t)('A' + tag); /* keeps each child's names apart */
	while (len < want) {
		if (rnd_below(p, 6) == 0) {
			const char *s = multi[rnd_below(p, 5)];
			m = strlen(s);
			if (len + m > 254)
				break;
			memcpy(out + len, s, m);
			len += m;
		} else {
			out[len++] = (uint8_t)(0x20 + rnd_below(p, 0x7f - 0x20));
		}
	}
	return len;
}

struct reg_stats {
	long sent, registered, taken, refused_invalid, wrong;
};

static int register_child(const char *state, int tag, int count, uint32_t seed, int out_fd)
{
	struct prng p = {seed | 1};
	struct reg_stats s = {0};
	uint8_t(*valid)[WIRE_NAME_SIZE] = calloc((size_t)count, WIRE_NAME_SIZE);
	int nvalid = 0, i;
	struct child ch = spawn(state);

	for (i = 0; i < count; i++) {
		uint8_t msg[WIRE_REQUEST_HEAD_MAX], resp[32], field[WIRE_NAME_SIZE], noise[16];
		struct wire_response_body rb;
		uint32_t roll = rnd_below(&p, 100);
		enum name_kind kind = roll < 80   ? N_VALID
		                      : roll < 88 ? N_DUPLICATE
		                      : roll < 92 ? N_CONTROL
		                      : roll < 96 ? N_BAD_UTF8
		                      : roll < 98 ? N_EMPTY
		                                  : N_NO_NUL;
		size_t len, at, n;
		uint16_t code = 0;
		bool closes = kind != N_VALID && kind != N_DUPLICATE, set1100;

		if (kind == N_DUPLICATE && nvalid == 0)
			kind = N_VALID;
		memset(field, 0, WIRE_NAME_SIZE);
		/* Bytes after the NUL are ignored: fill them with noise. */
		prng_fill(&p, field, WIRE_NAME_SIZE);
		switch (kind) {
		case N_VALID:
			len = random_valid_name(&p, field, tag);
			field[len] = 0;
			break;
		case N_DUPLICATE:
			memcpy(field, valid[rnd_below(&p, (uint32_t)nvalid)], WIRE_NAME_SIZE);
			break;
		case N_CONTROL:
			len = random_valid_name(&p, field, tag);
			at = rnd_below(&p, (uint32_t)len);
			field[at] = rnd_below(&p, 2) ? 0x7f : (uint8_t)(1 + rnd_below(&p, 31));
			field[len] = 0;
			break;
		case N_BAD_UTF8: {
			static const char *const bad[] = {
			    "\x80", "\xc0\xaf", "\xe0\x80\xaf",    "\xed\xa0\x80", "\xf8\x88\x80\x80\x80",
			    "\xff", "\xc3",     "\xf4\x90\x80\x80"};
			const char *b = bad[rnd_below(&p, 8)];
			len = random_valid_name(&p, field, tag);
			if (len > 200)
				len = 200;
			at = rnd_below(&p, (uint32_t)len + 1);
			memmove(field + at + strlen(b), field + at, len - at);
			memcpy(field + at, b, strlen(b));
			len += strlen(b);
			field[len] = 0;
			break;
		}
		case N_EMPTY:
			field[0] = 0;
			break;
		case N_NO_NUL:
			for (at = 0; at < WIRE_NAME_SIZE; at++)
				field[at] = (uint8_t)('a' + rnd_below(&p, 26));
			break;
		}
		if (kind == N_VALID)
			field[0] = (uint8_t)('A' + tag);
		set1100 = !rnd_below(&p, 2);
		/* The header's id of a register request is ignored: make it noise too. */
		prng_fill(&p, noise, sizeof(noise));
		n = build(msg, sizeof(msg), set1100, WIRE_KIND_REGISTER, noise,
		          &(struct wire_request_body){.name = field});
		s.sent++;
		{
			bool taken = false;
			size_t rl = 0;
			int v;

			if (send_all(ch.fd, msg, n) < 0 || get_response(ch.fd, &code, resp, sizeof(resp), &rl) < 0)
				code = 0;
			/* A short random name may repeat an earlier one by chance: then it is taken too. */
			for (v = 0; kind == N_VALID && v < nvalid && !taken; v++)
				taken = strcmp((const char *)valid[v], (const char *)field) == 0;
			if (kind == N_VALID && !taken && code == RESP_REGISTERED &&
			    wire_parse_response_body(&wire_standard, code, resp, rl, &rb) == 0) {
				memcpy(valid[nvalid++], field, WIRE_NAME_SIZE);
				s.registered++;
			} else if ((kind == N_DUPLICATE || taken) && code == RESP_REGISTER_REFUSED) {
				s.taken++;
			} else if (closes && code == RESP_REGISTER_REFUSED && closed_quietly(ch.fd, IO_TIMEOUT_MS)) {
				s.refused_invalid++;
			} else {
				if (s.wrong < 5) {
					char hx[2 * WIRE_NAME_SIZE + 1];
					for (at = 0; at < 40; at++)
						snprintf(hx + 2 * at, 3, "%02x", field[at]);
					printf("#   registration %d (kind %d, name %s...) got %u\n", i, kind, hx, code);
				}
				s.wrong++;
			}
		}
		if (closes || code == 0) {
			reap(&ch);
			ch = spawn(state);
		}
	}
	reap(&ch);
	free(valid);
	return write(out_fd, &s, sizeof(s)) == (ssize_t)sizeof(s) ? 0 : 1;
}

struct name_audit {
	long clients, bad_ids;
	uint8_t (*ids)[16];
};

static int audit_client(const struct store_client *cl, void *ctx)
{
	struct name_audit *a = ctx;

	/* RFC 4122 version 4, variant 10. */
	if ((cl->id[6] & 0xf0) != 0x40 || (cl->id[8] & 0xc0) != 0x80)
		a->bad_ids++;
	memcpy(a->ids[a->clients++], cl->id, 16);
	return 0;
}

static int cmp_id(const void *x, const void *y)
{
	return memcmp(x, y, 16);
}

static int cmd_register(char **argv)
{
	const char *state = argv[1];
	int n = atoi(argv[2]), workers = 4, i, pipefd[2], status;
	uint32_t seed = (uint32_t)strtoul(argv[3], NULL, 0);
	struct reg_stats total = {0}, s;
	struct name_audit na = {0};
	struct store *st;
	long dups = 0;
	int64_t t0 = now_ms();

	efsession_path = argv[0];
	if (crypto_init() < 0)
		die("libgcrypt");
	if (pipe(pipefd) < 0)
		die("pipe");
	fflush(stdout);
	for (i = 0; i < workers; i++)
		if (fork() == 0)
			_exit(register_child(state, i, n / workers + (i < n % workers), seed + (uint32_t)i * 7777u,
			                     pipefd[1]));
	close(pipefd[1]);
	for (i = 0; i < workers; i++) {
		if (read(pipefd[0], &s, sizeof(s)) != (ssize_t)sizeof(s))
			die("a registration worker failed");
		total.sent += s.sent;
		total.registered += s.registered;
		total.taken += s.taken;
		total.refused_invalid += s.refused_invalid;
		total.wrong += s.wrong;
	}
	while (wait(&status) > 0)
		;
	printf("# %ld registrations in %.1f s: %ld registered, %ld names taken, %ld invalid names refused\n",
	       total.sent, (double)(now_ms() - t0) / 1000.0, total.registered, total.taken, total.refused_invalid);
	is_int(total.sent, n, "%d registrations sent on %d connections at once", n, workers);
	is_int(total.wrong, 0,
	       "each got its documented response: 2100 for a new valid name, 2101 for a taken one (connection open), "
	       "2101 and the connection closed for an invalid one");
	if (store_open_readonly(state, 5000, &st) < 0)
		die("cannot open the store");
	na.ids = calloc((size_t)total.registered + 16, 16);
	ok(store_integrity_check(st) == 0, "PRAGMA integrity_check is ok");
	store_each_client(st, audit_client, &na);
	store_close(st);
	is_int(na.clients, total.registered, "the database holds exactly the clients that got 2100");
	qsort(na.ids, (size_t)na.clients, 16, cmp_id);
	for (i = 1; i < na.clients; i++)
		dups += memcmp(na.ids[i - 1], na.ids[i], 16) == 0;
	ok(dups == 0 && na.bad_ids == 0, "every client id is unique and a version-4 UUID");
	free(na.ids);
	return tap_done();
}

/* full: an upload that does not fit (small file system, or RLIMIT_FSIZE) gets 2107 and leaves nothing. */
static int cmd_full(char **argv)
{
	const char *state = argv[1];
	uint64_t size = strtoull(argv[2], NULL, 0);
	rlim_t fsize = argv[3] ? (rlim_t)strtoull(argv[3], NULL, 0) : RLIM_INFINITY;
	const char *how = argv[3] ? "a file size limit (RLIMIT_FSIZE)" : "a full file system";
	struct content ct = {.size = size, .seed = 99}, small = {.size = 1000, .seed = 7};
	uint8_t resp[WIRE_RESPONSE_PAYLOAD_MAX];
	struct ident c;
	struct child ch;
	struct audit a = {0};
	uint16_t code = 0;
	size_t len;
	char dir[900], hex[WIRE_ID_HEX_SIZE];

	efsession_path = argv[0];
	init_crypto();
	make_ident(state, "filler", &c);
	wire_id_to_hex(c.id, hex);
	snprintf(dir, sizeof(dir), "%s/files/%s", state, hex);
	ch = spawn_rlimit(state, fsize);
	(void)send_upload(ch.fd, true, &c, "big.bin", &ct, UINT64_MAX, NULL);
	ok(get_response(ch.fd, &code, resp, sizeof(resp), &len) == 0 && code == RESP_ERROR && len == 0,
	   "with %s, an upload of %llu bytes gets 2107", how, (unsigned long long)size);
	ok(closed_quietly(ch.fd, IO_TIMEOUT_MS), "and the connection is closed");
	is_int(reap(&ch), 111, "efsession exits with status 111 (system error)");
	is_int(count_entries(dir), 0, "nothing is left in the client's directory");
	ok(tmp_empty(state), "nothing is left in tmp/");
	ok(db_ok(state, &a) && a.rows == 0, "the database is intact and holds no row for the file");
	ch = spawn_rlimit(state, fsize);
	ok(upload(ch.fd, true, &c, "small.bin", &small, &code) == 0 && confirm(ch.fd, true, &c, "small.bin") == 0,
	   "a small upload afterwards succeeds");
	reap(&ch);
	return tap_done();
}

/* refused: the state directory cannot be used; every request gets 2107 and the connection closes. */
static int cmd_refused(char **argv)
{
	uint8_t msg[WIRE_REQUEST_HEAD_MAX], resp[32], field[WIRE_NAME_SIZE];
	struct child ch;
	uint16_t code = 0;
	size_t len, n;

	efsession_path = argv[0];
	ch = spawn(argv[1]);
	n = build(msg, sizeof(msg), true, WIRE_KIND_REGISTER, NULL,
	          &(struct wire_request_body){.name = name_field("nobody", field)});
	ok(send_all(ch.fd, msg, n) == 0 && get_response(ch.fd, &code, resp, sizeof(resp), &len) == 0 &&
	       code == RESP_ERROR && len == 0,
	   "a register request gets 2107");
	ok(closed_quietly(ch.fd, IO_TIMEOUT_MS), "and the connection is closed");
	is_int(reap(&ch), 111, "efsession exits with status 111 (system error)");
	return tap_done();
}

/* idle: N connections opened and never written to; all are closed by the server's idle timeout. */
static int cmd_idle(char **argv)
{
	const char *host = argv[0], *port = argv[1];
	int n = atoi(argv[2]), timeout = atoi(argv[3]), i, opened = 0, closed = 0, silent = 0, left;
	int *fds = calloc((size_t)n, sizeof(int));
	struct pollfd *pfds = calloc((size_t)n, sizeof(struct pollfd));
	int64_t t0 = now_ms(), deadline, last = 0;
	uint8_t b;

	for (i = 0; i < n; i++) {
		fds[i] = tcp_connect(host, port);
		opened += fds[i] >= 0;
	}
	is_int(opened, n, "%d connections opened and never written to", n);
	printf("# opened in %.1f s\n", (double)(now_ms() - t0) / 1000.0);
	fflush(stdout);
	/* Upper bound against a hang: the timeout, the time to open them all, and a wide margin. */
	deadline = now_ms() + (int64_t)timeout * 1000 + (now_ms() - t0) + 60000;
	left = opened;
	while (left > 0 && now_ms() < deadline) {
		int np = 0, r;
		for (i = 0; i < n; i++)
			if (fds[i] >= 0)
				pfds[np++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
		r = poll(pfds, (nfds_t)np, 1000);
		if (r <= 0)
			continue;
		for (i = 0; i < np; i++) {
			ssize_t k;
			if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			k = recv(pfds[i].fd, &b, 1, MSG_DONTWAIT);
			if (k > 0) {
				continue; /* counted below: a byte means a response was sent */
			}
			if (k < 0 && errno == EAGAIN)
				continue;
			closed++;
			silent++;
			close(pfds[i].fd);
			for (int j = 0; j < n; j++)
				if (fds[j] == pfds[i].fd)
					fds[j] = -1;
			left--;
			last = now_ms();
		}
	}
	is_int(closed, opened, "every one is closed by the server");
	is_int(silent, closed, "without a byte of response");
	if (last)
		printf("# the last one closed %.1f s after they were all open (idle timeout %d s)\n",
		       (double)(last - t0) / 1000.0, timeout);
	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	{
		/* The launcher still serves. */
		int fd = tcp_connect(host, port);
		uint8_t id[16];
		uint16_t code = 0;
		char name[64];
		snprintf(name, sizeof(name), "after-idle-%ld", (long)getpid());
		ok(fd >= 0 && do_register(fd, true, name, id, &code) == 0 && code == RESP_REGISTERED,
		   "afterwards a new connection registers a client (2100)");
		if (fd >= 0)
			close(fd);
	}
	free(fds);
	free(pfds);
	return tap_done();
}

/* trickle: one byte a second, in the header and then in the content: cut off at the idle timeout. */
static int trickle_one(const char *host, const char *port, int timeout, const uint8_t *prefix, size_t prefix_len,
                       const char *what)
{
	int fd = tcp_connect(host, port);
	int64_t t0;
	bool cut = false, answered = false;
	uint8_t b = 0;
	int sent = 0;

	if (fd < 0)
		die("connect");
	if (prefix_len && send_all(fd, prefix, prefix_len) < 0)
		die("send");
	t0 = now_ms();
	/* At most timeout + 30 s of trickling: the upper bound against a server that never cuts. */
	while (now_ms() - t0 < (int64_t)(timeout + 30) * 1000) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t k;
		if (send(fd, &b, 1, MSG_NOSIGNAL) < 0) {
			cut = true;
			break;
		}
		sent++;
		if (poll(&pfd, 1, 1000) > 0) {
			k = recv(fd, &b, 1, 0);
			if (k > 0)
				answered = true;
			cut = true;
			break;
		}
	}
	close(fd);
	ok(cut && !answered, "a client trickling one byte a second %s is cut off without a response (after %d bytes)",
	   what, sent);
	ok(sent <= timeout + 3, "it could send no more than the idle timeout allows (%d s, %d bytes sent)", timeout,
	   sent);
	return 0;
}

static int cmd_trickle(char **argv)
{
	const char *host = argv[0], *port = argv[1];
	int timeout = atoi(argv[2]);
	uint8_t pre[WIRE_REQUEST_HEAD_MAX], field[WIRE_NAME_SIZE] = {0};

	trickle_one(host, port, timeout, NULL, 0, "in a request header");
	/* The header of a register request, and then its payload a byte a second. */
	(void)build(pre, sizeof(pre), true, WIRE_KIND_REGISTER, NULL, &(struct wire_request_body){.name = field});
	trickle_one(host, port, timeout, pre, WIRE_REQUEST_HEADER_SIZE, "in a payload");
	return tap_done();
}

/* A client of the driver registered, with its AES key, from source over TCP (NULL: any address). */
static int tcp_ident(const char *host, const char *port, const char *source, const char *name, struct ident *c)
{
	int fd = tcp_open(host, port, source, false);
	uint16_t code = 0;
	int r = -1;

	snprintf(c->name, sizeof(c->name), "%s", name);
	if (fd >= 0 && do_register(fd, true, name, c->id, &code) == 0 && code == RESP_REGISTERED &&
	    do_public_key(fd, true, c) == 0)
		r = 0;
	if (fd >= 0)
		close(fd);
	return r;
}

/* sources: LIMIT registrations from each source address, then the next refused (2101) with the connection open. */
static int cmd_sources(char **argv)
{
	const char *host = argv[0], *port = argv[1];
	int limit = atoi(argv[2]), ok_count, fd, r;
	uint8_t id[16];
	uint16_t code;
	char name[96];

	for (char **src = argv + 3; *src; src++) {
		fd = tcp_open(host, port, *src, false);
		ok_count = 0;
		for (int i = 0; fd >= 0 && i < limit; i++) {
			snprintf(name, sizeof(name), "from-%s-%ld-%d", *src, (long)getpid(), i);
			code = 0;
			ok_count += do_register(fd, true, name, id, &code) == 0 && code == RESP_REGISTERED;
		}
		is_int(ok_count, limit, "%d registrations from %s: 2100 each", limit, *src);
		snprintf(name, sizeof(name), "from-%s-%ld-over", *src, (long)getpid());
		code = 0;
		r = fd >= 0 ? do_register(fd, true, name, id, &code) : -1;
		ok(r == 0 && code == RESP_REGISTER_REFUSED, "the next from %s: 2101 (got %u)", *src, code);
		snprintf(name, sizeof(name), "from-%s-%ld-again", *src, (long)getpid());
		code = 0;
		r = fd >= 0 ? do_register(fd, false, name, id, &code) : -1;
		ok(r == 0 && code == RESP_REGISTER_REFUSED,
		   "and the connection is still open: another gets 2101 as well");
		if (fd >= 0)
			close(fd);
	}
	return tap_done();
}

/* rate: an upload whose content goes at RATE bytes a second; stored (2103) or dropped (closed, no response). */
static int cmd_rate(char **argv)
{
	const char *host = argv[0], *port = argv[1], *want = argv[4];
	struct content ct = {.size = strtoull(argv[3], NULL, 0), .seed = 5};
	uint8_t resp[WIRE_RESPONSE_PAYLOAD_MAX];
	bool dropped = strcmp(want, "dropped") == 0;
	struct ident c;
	uint16_t code = 0;
	char name[64];
	int64_t t0;
	size_t len;
	int fd, r;

	upload_rate = strtoull(argv[2], NULL, 0);
	init_crypto();
	snprintf(name, sizeof(name), "rate-%ld", (long)getpid());
	if (tcp_ident(host, port, NULL, name, &c) < 0)
		die("cannot set up client '%s'", name);
	if ((fd = tcp_connect(host, port)) < 0)
		die("connect");
	t0 = now_ms();
	r = send_upload(fd, true, &c, "paced.bin", &ct, UINT64_MAX, NULL);
	if (dropped) {
		r = r < 0 || closed_quietly(fd, IO_TIMEOUT_MS);
		ok(r, "%llu bytes at %llu bytes a second: the connection is closed without a response, after %.1f s",
		   (unsigned long long)ct.size, (unsigned long long)upload_rate, (double)(now_ms() - t0) / 1000.0);
	} else {
		ok(r == 0 && get_response(fd, &code, resp, sizeof(resp), &len) == 0 && code == RESP_FILE_RECEIVED,
		   "%llu bytes at %llu bytes a second: stored (2103) after %.1f s", (unsigned long long)ct.size,
		   (unsigned long long)upload_rate, (double)(now_ms() - t0) / 1000.0);
	}
	close(fd);
	return tap_done();
}

/* As many descriptors as the hard limit allows, for the connections a test opens at once. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* burst: N connections opened at once (non-blocking), each closed once connected or refused. */
static int cmd_burst(char **argv)
{
	const char *host = argv[0], *port = argv[1];
	int n = atoi(argv[2]), opened = 0, connected = 0, failed = 0, left;
	int *fds = calloc((size_t)n, sizeof(int));
	struct pollfd *p = calloc((size_t)n, sizeof(struct pollfd));
	int64_t t0, t_open, deadline;

	if (!fds || !p)
		die("out of memory");
	raise_nofile();
	t0 = now_ms();
	for (int i = 0; i < n; i++) {
		fds[i] = tcp_open(host, port, NULL, true);
		opened += fds[i] >= 0;
		failed += fds[i] < 0;
	}
	t_open = now_ms();
	/* Each is closed as soon as its handshake is done (or refused): the burst, not a hold. */
	deadline = now_ms() + 10000;
	left = opened;
	while (left > 0 && now_ms() < deadline) {
		int np = 0;

		for (int i = 0; i < n; i++)
			if (fds[i] >= 0)
				p[np++] = (struct pollfd){.fd = fds[i], .events = POLLOUT};
		if (poll(p, (nfds_t)np, 200) <= 0)
			continue;
		for (int j = 0; j < np; j++) {
			int err = 0;
			socklen_t el = sizeof(err);

			if (!p[j].revents)
				continue;
			(void)getsockopt(p[j].fd, SOL_SOCKET, SO_ERROR, &err, &el);
			connected += err == 0;
			failed += err != 0;
			close(p[j].fd);
			for (int i = 0; i < n; i++)
				if (fds[i] == p[j].fd)
					fds[i] = -1;
			left--;
		}
	}
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	printf("# %d connections started in %.3f s: %d connected, %d refused or failed\n", n,
	       (double)(t_open - t0) / 1000.0, connected, failed);
	ok(t_open - t0 < 1000, "%d connections were started in under a second (%.3f s)", n,
	   (double)(t_open - t0) / 1000.0);
	ok(connected > 0, "and connected");
	free(fds);
	free(p);
	return tap_done();
}

/*
 * hold: how slow holders fare. Four kinds, in turn: a connection that says
 * nothing; one that trickles a request header, a byte every 2 s; an upload
 * whose content trickles at 64 bytes a second (its client registered
 * beforehand from the holder's address); one that sends a refused request
 * (a confirmation of a file no client has) every IDLE/2 seconds. A normal
 * client from 127.0.0.1 registers every 250 ms until it is served. Reports
 * how many held a slot and for how long.
 */
enum hold_kind { HOLD_IDLE, HOLD_TRICKLE, HOLD_UPLOAD, HOLD_REFUSE, HOLD_KINDS };

struct holder {
	enum hold_kind kind;
	int fd;
	char source[32];
	struct ident c;
	int64_t closed; /* when the server closed it; 0: not yet */
	int64_t next;   /* when it sends next */
	int sent;       /* trickle: header bytes sent; refuse: requests sent */
	bool answered;  /* the server sent something (a refusal) */
	uint8_t msg[WIRE_REQUEST_HEAD_MAX];
	size_t msg_len;
};

static const char *const hold_names[HOLD_KINDS] = {"silent", "trickling a header", "trickling an upload",
                                                   "sending refused requests"};

/* The normal client: a registration on a connection of its own; true when it got 2100. */
static bool normal_client_served(const char *host, const char *port)
{
	int fd = tcp_open(host, port, "127.0.0.1", false);
	char name[64];
	uint8_t id[16];
	uint16_t code = 0;
	bool served;

	if (fd < 0)
		return false;
	snprintf(name, sizeof(name), "normal-%ld-%lld", (long)getpid(), (long long)now_ms());
	served = do_register(fd, true, name, id, &code) == 0 && code == RESP_REGISTERED;
	close(fd);
	return served;
}

static int cmd_hold(char **argv)
{
	const char *host = argv[0], *port = argv[1];
	int n = atoi(argv[2]), naddr = atoi(argv[3]), idle = atoi(argv[4]), refusals = atoi(argv[5]),
	    margin = atoi(argv[6]);
	struct holder *h = calloc((size_t)n, sizeof(*h));
	struct pollfd *p = calloc((size_t)n, sizeof(*p));
	int64_t t0, served = 0, at_1s = -1, last_try = 0, longest[HOLD_KINDS] = {0}, end;
	int held[HOLD_KINDS] = {0}, open_at_1s = 0, left;
	struct content ct = {.size = 1u << 20, .seed = 9};
	uint8_t field[WIRE_NAME_SIZE], b;
	char name[96];
	bool bad = false;

	if (!h || !p || naddr < 1)
		die("hold: bad arguments");
	raise_nofile();
	init_crypto();
	for (int i = 0; i < n; i++) {
		h[i].kind = (enum hold_kind)(i % HOLD_KINDS);
		snprintf(h[i].source, sizeof(h[i].source), "127.0.0.%d", 2 + i % naddr);
		if (h[i].kind == HOLD_UPLOAD) {
			snprintf(name, sizeof(name), "holder-%ld-%d", (long)getpid(), i);
			if (tcp_ident(host, port, h[i].source, name, &h[i].c) < 0)
				die("cannot set up holder %d from %s", i, h[i].source);
		}
	}
	t0 = now_ms();
	for (int i = 0; i < n; i++) {
		h[i].fd = tcp_open(host, port, h[i].source, false);
		h[i].next = now_ms();
		if (h[i].fd < 0) {
			h[i].closed = now_ms();
			continue;
		}
		if (h[i].kind == HOLD_UPLOAD) {
			/* The header and fixed fields, then nothing but the trickle. */
			h[i].msg_len = upload_head(h[i].msg, true, &h[i].c, "held.bin", wire_content_size(ct.size));
			(void)send_all(h[i].fd, h[i].msg, h[i].msg_len);
			h[i].sent = 0;
		} else if (h[i].kind == HOLD_TRICKLE || h[i].kind == HOLD_REFUSE) {
			h[i].msg_len = build(h[i].msg, sizeof(h[i].msg), true, WIRE_KIND_CRC_OK,
			                     (const uint8_t *)"0123456789abcdef",
			                     &(struct wire_request_body){.name = name_field("nothing", field)});
		}
	}
	printf("# %d holders connected in %.1f s, from %d source addresses\n", n, (double)(now_ms() - t0) / 1000.0,
	       naddr);
	end = t0 + (int64_t)(refusals + 2) * idle * 1000 / 2 + 60000;
	left = n;
	for (int i = 0; i < n; i++)
		left -= h[i].closed != 0;
	while ((left > 0 || !served) && now_ms() < end) {
		int np = 0;
		int64_t now = now_ms();

		for (int i = 0; i < n; i++) {
			struct holder *x = &h[i];

			if (x->closed || now < x->next)
				continue;
			if (x->kind == HOLD_TRICKLE && x->sent < WIRE_REQUEST_HEADER_SIZE) {
				(void)send(x->fd, x->msg + x->sent++, 1, MSG_NOSIGNAL);
				x->next = now + 2000;
			} else if (x->kind == HOLD_UPLOAD) {
				uint8_t junk[16] = {0};

				/* 64 bytes a second, in blocks: the content is never finished. */
				(void)send(x->fd, junk, sizeof(junk), MSG_NOSIGNAL);
				x->next = now + 250;
			} else if (x->kind == HOLD_REFUSE) {
				(void)send(x->fd, x->msg, x->msg_len, MSG_NOSIGNAL);
				x->sent++;
				x->next = now + (int64_t)idle * 500;
			} else {
				x->next = INT64_MAX;
			}
		}
		if (at_1s < 0 && now - t0 >= 1000) {
			at_1s = now;
			for (int i = 0; i < n; i++)
				open_at_1s += !h[i].closed;
		}
		if (!served && now - last_try >= 250) {
			last_try = now;
			if (normal_client_served(host, port))
				served = now_ms();
		}
		for (int i = 0; i < n; i++)
			if (!h[i].closed)
				p[np++] = (struct pollfd){.fd = h[i].fd, .events = POLLIN};
		if (np && poll(p, (nfds_t)np, 50) > 0) {
			for (int j = 0; j < np; j++) {
				ssize_t k;

				if (!p[j].revents)
					continue;
				while ((k = recv(p[j].fd, &b, 1, MSG_DONTWAIT)) > 0)
					for (int i = 0; i < n; i++)
						if (h[i].fd == p[j].fd)
							h[i].answered = true;
				if (k < 0 && errno == EAGAIN)
					continue;
				for (int i = 0; i < n; i++) {
					if (h[i].fd != p[j].fd || h[i].closed)
						continue;
					h[i].closed = now_ms();
					close(h[i].fd);
					left--;
				}
			}
		} else if (!np) {
			sleep_until(now_ms() + 50);
		}
	}
	for (int i = 0; i < n; i++) {
		int64_t lived = (h[i].closed ? h[i].closed : now_ms()) - t0;

		/* A holder still open at 1 s held a slot or waited for one; one closed before was turned away at once. */
		if (h[i].closed && h[i].closed - t0 < 1000)
			continue;
		held[h[i].kind]++;
		if (lived > longest[h[i].kind])
			longest[h[i].kind] = lived;
		if (!h[i].closed) {
			bad = true;
			close(h[i].fd);
		}
	}
	printf("# %d of %d holders were still connected 1 s after they connected (served, or waiting to be)\n",
	       open_at_1s, n);
	for (int k = 0; k < HOLD_KINDS; k++)
		printf("#   %d %s: the longest held its slot %.1f s\n", held[k], hold_names[k], longest[k] / 1000.0);
	if (served)
		printf("# the normal client was served %.1f s after the holders connected (idle timeout %d s)\n",
		       (double)(served - t0) / 1000.0, idle);
	ok(!bad, "every holder's connection was closed by the server");
	for (int k = 0; k < HOLD_REFUSE; k++)
		ok(longest[k] <= (int64_t)(idle + margin) * 1000,
		   "holders %s held their slots no longer than the idle timeout and a margin (%.1f s <= %d s + %d s)",
		   hold_names[k], longest[k] / 1000.0, idle, margin);
	ok(longest[HOLD_REFUSE] <= (int64_t)((refusals - 1) * idle / 2 + margin) * 1000,
	   "holders %s were closed at their refusal %d (%.1f s <= %d s + %d s)", hold_names[HOLD_REFUSE], refusals,
	   longest[HOLD_REFUSE] / 1000.0, (refusals - 1) * idle / 2, margin);
	ok(served && served - t0 <= (int64_t)(idle + margin) * 1000,
	   "the normal client was served within the idle timeout and a margin (%.1f s <= %d s + %d s)",
	   served ? (double)(served - t0) / 1000.0 : -1.0, idle, margin);
	free(h);
	free(p);
	return tap_done();
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int args;
		int (*fn)(char **argv);
	} cmds[] = {
	    {"load", 5, cmd_load},
	    {"kill", 4, cmd_kill},
	    {"kill-verified", 5, cmd_kill_verified},
	    {"race", 3, cmd_race},
	    {"register", 4, cmd_register},
	    {"full", 3, cmd_full},
	    {"record-race", 3, cmd_record_race},
	    {"refused", 2, cmd_refused},
	    {"idle", 4, cmd_idle},
	    {"trickle", 3, cmd_trickle},
	    {"sources", 4, cmd_sources},
	    {"rate", 5, cmd_rate},
	    {"burst", 3, cmd_burst},
	    {"hold", 7, cmd_hold},
	};
	size_t i;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; argc >= 2 && i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0 && argc - 2 >= cmds[i].args)
			return cmds[i].fn(argv + 2);
	fprintf(
	    stderr,
	    "usage: drive-robust load|kill|kill-verified|race|register|full|refused|idle|trickle|sources|rate|burst|"
	    "hold ARGS (see the source)\n");
	return 99;
}
