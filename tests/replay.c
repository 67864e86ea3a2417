/*
 * The replay runner: pipes captured request streams (commented hex text,
 * tests/replay/ *.replay) into efsession's stdin against a state directory
 * seeded from a fixture, and checks every deterministic response byte, how
 * much input was read, the exit status, and the database and files after.
 * Output is TAP. The format is described in tests/replay/README.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gcrypt.h>
#include <sqlite3.h>
#ifdef HAVE_POSTGRESQL
#include <libpq-fe.h>
#endif

#include "cksum.h"
#include "crypto.h"
#include "der.h"
#include "failure.h"
#include "store.h"
#include "wire.h"

#include "fixture.h"
#include "keys.h"
#include "prng.h"
#include "tap.h"

#define MAX_SEGS       4096
#define MAX_ARGS       32
#define LINE_MAX_LEN   8192
#define RUN_DEADLINE_S 300

static struct {
	gcry_sexp_t priv;
	uint8_t spki[DER_RSA_SPKI_MAX];
	size_t spki_len;
	uint8_t pkcs1[DER_RSA_SPKI_MAX];
	size_t pkcs1_len;
	uint8_t other_spki[DER_RSA_SPKI_MAX]; /* a second key, for "a different key" */
	size_t other_spki_len;
} keys;

/* Input and expected output are lists of segments: literal bytes or generated content. */
enum seg_kind { SEG_BYTES, SEG_CONTENT };
enum pad_kind { PAD_OK, PAD_ZERO, PAD_BIG, PAD_UNEVEN };

struct seg {
	enum seg_kind kind;
	uint8_t *bytes;
	uint8_t *mask; /* expected output only: 0 where any byte matches */
	size_t len;
	uint64_t size; /* content: plaintext size */
	uint32_t seed;
	enum pad_kind pad;
};

struct segs {
	struct seg s[MAX_SEGS];
	size_t n;
};

static struct {
	const char *file;
	char efsession[600];
	char state[512];
	uint8_t captured_id[16];
	uint8_t content_key[32]; /* the AES key content: tokens are encrypted with */
	size_t content_key_len;
	int run_no;
	/* the current run */
	bool pending;
	int line;
	char *argv[MAX_ARGS];
	int argc;
	enum cksum_algo algo;
	struct segs in, out;
	bool capture;
	/* what it did */
	int status;
	uint64_t consumed;
	uint64_t sent;
	uint64_t input_len;
	uint8_t *got;
	size_t got_len;
	char log_path[600];
	const char *connect; /* HOST:PORT, or NULL for a child on a pipe */
	char *snapshot;
	const struct wire_dialect *dialect; /* of the run's responses, for capture-id and adopt-key */
	const char *database;               /* REPLAY_DATABASE: the PostgreSQL database, else SQLite */
} R;

static void die(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! %s:%d: ", R.file, R.line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(99);
}

#ifdef HAVE_POSTGRESQL
/*
 * A query on REPLAY_DATABASE, its rows written to m as check_sql and
 * snapshot write SQLite's: columns by "|", NULL as null_as, booleans as 1
 * and 0 (SQLite's); param, when not NULL, the 16 bytes of $1.
 */
static void pg_rows(const char *query, const uint8_t *param, FILE *m, const char *null_as, const char *row_sep)
{
	PGconn *c = PQconnectdb(R.database);
	PGresult *res = NULL;
	const char *v[1] = {(const char *)param};
	int len[1] = {16}, fmt[1] = {1};

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(m, "(cannot connect: %s)", PQerrorMessage(c));
	} else {
		/* Without a parameter, the simple protocol: several statements in one string (pg_wipe). */
		res = param ? PQexecParams(c, query, 1, NULL, v, len, fmt, 0) : PQexec(c, query);
		if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
			fprintf(m, "(error: %s)", PQerrorMessage(c));
		for (int r = 0; PQresultStatus(res) == PGRES_TUPLES_OK && r < PQntuples(res); r++) {
			fprintf(m, "%s", r ? row_sep : "");
			for (int i = 0; i < PQnfields(res); i++) {
				const char *s = PQgetisnull(res, r, i) ? null_as : PQgetvalue(res, r, i);

				if (!PQgetisnull(res, r, i) && PQftype(res, i) == 16 /* bool */)
					s = strcmp(s, "t") == 0 ? "1" : "0";
				fprintf(m, "%s%s", i ? "|" : "", s);
			}
		}
	}
	PQclear(res);
	PQfinish(c);
}

/*
 * Nothing of the last file's: with schema false, no schema at all; else the
 * schema's tables emptied (faster than creating it again for each file).
 */
static void pg_wipe(bool schema)
{
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);

	if (schema)
		pg_rows("DO $$ BEGIN IF to_regclass('efserver_schema') IS NOT NULL THEN "
		        "TRUNCATE clients, files, registrations, bad_paddings; UPDATE totals SET clients = 0; "
		        "ELSE DROP SCHEMA public CASCADE; CREATE SCHEMA public; END IF; END $$",
		        NULL, m, "", "");
	else
		pg_rows("SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public", NULL, m,
		        "", "");
	fclose(m);
	if (len)
		die("cannot empty the database: %s", out);
	free(out);
}
#endif

/* SQL only SQLite speaks, in a check: on PostgreSQL, the check is skipped. */
static bool sqlite_only(const char *sql)
{
	return strncmp(sql, "PRAGMA", 6) == 0 || strstr(sql, "hex(") || strstr(sql, "x'") || strstr(sql, "AS BLOB") ||
	       strstr(sql, "sqlite_");
}

static uint64_t padded(uint64_t size)
{
	return (size / 16 + 1) * 16;
}

/*
 * Produce the encrypted content of a segment, chunk by chunk: plaintext from
 * the seed, PKCS#7 padding (or a broken one on purpose), AES-CBC with alice's key.
 */
struct content_gen {
	const struct seg *seg;
	struct prng prng;
	struct crypto_cbc *cbc;
	uint64_t produced; /* ciphertext bytes so far */
	uint64_t total;
};

static void content_begin(struct content_gen *g, const struct seg *seg)
{
	g->seg = seg;
	g->prng.x = seg->seed ? seg->seed : 1;
	g->produced = 0;
	g->total = padded(seg->size);
	if (crypto_cbc_new(&g->cbc, R.content_key, R.content_key_len, true) < 0)
		die("cannot set up AES");
}

/* Fill buf (a multiple of 16 bytes, or what is left) with the next ciphertext. */
static size_t content_next(struct content_gen *g, uint8_t *buf, size_t cap)
{
	size_t n = g->total - g->produced < cap ? (size_t)(g->total - g->produced) : cap, i;
	uint8_t pad = (uint8_t)(g->total - g->seg->size);

	n -= n % 16;
	for (i = 0; i < n; i++) {
		uint64_t pos = g->produced + i;
		if (pos >= g->seg->size)
			buf[i] = pad;
		else
			buf[i] = g->seg->bytes ? g->seg->bytes[pos] : prng_byte(&g->prng);
	}
	if (n && g->produced + n == g->total) {
		switch (g->seg->pad) {
		case PAD_OK:
			break;
		case PAD_ZERO:
			buf[n - 1] = 0;
			break;
		case PAD_BIG:
			buf[n - 1] = 17;
			break;
		case PAD_UNEVEN:
			/* The count is right but the byte before the last differs. */
			buf[n - 1] = 2;
			buf[n - 2] = 3;
			break;
		}
	}
	if (crypto_cbc_run(g->cbc, buf, n) < 0)
		die("AES failed");
	g->produced += n;
	return n;
}

static void content_end(struct content_gen *g)
{
	crypto_cbc_free(g->cbc);
	g->cbc = NULL;
}

/* The checksum the server must report for a content segment under algo. */
static uint32_t content_sum(uint64_t size, uint32_t seed, enum cksum_algo algo)
{
	struct seg seg = {.kind = SEG_CONTENT, .size = size, .seed = seed};
	struct content_gen g;
	struct cksum_state ck = {0};
	struct prng p = {seed ? seed : 1};
	uint8_t buf[65536];
	uint64_t left = size;
	size_t n, i;
	uint32_t sum;

	if (cksum_init(&ck, algo) < 0)
		die("cksum_init");
	if (algo == CKSUM_CRC32_CIPHERTEXT) {
		content_begin(&g, &seg);
		while ((n = content_next(&g, buf, sizeof(buf))) > 0)
			cksum_update(&ck, buf, n);
		content_end(&g);
	} else {
		while (left) {
			n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
			for (i = 0; i < n; i++)
				buf[i] = prng_byte(&p);
			cksum_update(&ck, buf, n);
			left -= n;
		}
	}
	sum = cksum_final(&ck);
	cksum_free(&ck);
	return sum;
}

static struct seg *seg_bytes(struct segs *ss)
{
	struct seg *s;

	if (ss->n && ss->s[ss->n - 1].kind == SEG_BYTES)
		return &ss->s[ss->n - 1];
	if (ss->n == MAX_SEGS)
		die("too many segments");
	s = &ss->s[ss->n++];
	memset(s, 0, sizeof(*s));
	s->kind = SEG_BYTES;
	return s;
}

static void emit(struct segs *ss, const uint8_t *b, size_t len, bool wildcard)
{
	struct seg *s = seg_bytes(ss);

	s->bytes = realloc(s->bytes, s->len + len);
	s->mask = realloc(s->mask, s->len + len);
	if (!s->bytes || !s->mask)
		die("out of memory");
	if (b)
		memcpy(s->bytes + s->len, b, len);
	else
		memset(s->bytes + s->len, 0, len);
	memset(s->mask + s->len, wildcard ? 0 : 1, len);
	s->len += len;
}

static void free_segs(struct segs *ss)
{
	size_t i;

	for (i = 0; i < ss->n; i++) {
		free(ss->s[i].bytes);
		free(ss->s[i].mask);
	}
	ss->n = 0;
}

/* PATH relative to the directory of the replay file, into out. */
static void beside_replay(const char *path, char *out, size_t size)
{
	const char *slash = strrchr(R.file, '/');

	if (path[0] == '/' || !slash)
		snprintf(out, size, "%s", path);
	else
		snprintf(out, size, "%.*s/%s", (int)(slash - R.file), R.file, path);
}

/* bin:PATH[:OFFSET:LENGTH]: bytes of a capture file, beside the replay file. */
static void emit_capture(struct segs *ss, const char *spec)
{
	char path[1024], full[2048];
	unsigned long long off = 0, len = ~0ULL;
	const char *colon = strchr(spec, ':');
	uint8_t *data;
	struct stat sb;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%.*s", colon ? (int)(colon - spec) : (int)strlen(spec), spec);
	if (colon && sscanf(colon + 1, "%llu:%llu", &off, &len) != 2)
		die("bin:PATH:OFFSET:LENGTH, not '%s'", spec);
	beside_replay(path, full, sizeof(full));
	if (!(f = fopen(full, "rbe")) || fstat(fileno(f), &sb) < 0)
		die("cannot open %s: %s", full, strerror(errno));
	if (sb.st_size > (1 << 20) || off > (unsigned long long)sb.st_size)
		die("%s: larger than 1 MiB, or shorter than offset %llu", full, off);
	if (len > (unsigned long long)sb.st_size - off)
		len = (unsigned long long)sb.st_size - off;
	if (!(data = malloc(len ? len : 1)) || fseek(f, (long)off, SEEK_SET) < 0 || (n = fread(data, 1, len, f)) != len)
		die("cannot read %s", full);
	fclose(f);
	emit(ss, data, n, false);
	free(data);
}

/* The crc32 a seed-004 connection reports (whatever --checksum says), as ASCII digits NUL-padded to 10 bytes. */
static void emit_crc32_text(struct segs *ss, uint64_t size, uint32_t seed);

/* Numbers and pad(N) (the padded size of N plaintext bytes) added or subtracted. */
static uint64_t eval(const char *e)
{
	uint64_t total = 0, v;
	bool minus = false;
	char *end;

	for (;;) {
		if (strncmp(e, "pad(", 4) == 0) {
			v = padded(strtoull(e + 4, &end, 0));
			if (*end != ')')
				die("bad expression '%s'", e);
			end++;
		} else {
			v = strtoull(e, &end, 0);
			if (end == e)
				die("bad expression '%s'", e);
		}
		total = minus ? total - v : total + v;
		if (*end != '+' && *end != '-')
			break;
		minus = *end == '-';
		e = end + 1;
	}
	if (*end && *end != ' ' && *end != '\t' && *end != ':')
		die("bad expression '%s'", e);
	return total;
}

/* A quoted string with \xNN, \\ and \" escapes; returns its length, *p moved past it. */
static size_t parse_quoted(const char **p, uint8_t *out, size_t cap)
{
	const char *s = *p;
	size_t n = 0;
	unsigned v;

	if (*s != '"')
		die("expected a quoted string at '%s'", s);
	for (s++; *s && *s != '"'; s++) {
		uint8_t c = (uint8_t)*s;
		if (*s == '\\') {
			s++;
			if (*s == 'x' && sscanf(s + 1, "%2x", &v) == 1) {
				c = (uint8_t)v;
				s += 2;
			} else if (*s == '\\' || *s == '"') {
				c = (uint8_t)*s;
			} else {
				die("bad escape in string");
			}
		}
		if (n == cap)
			die("string too long");
		out[n++] = c;
	}
	if (*s != '"')
		die("unterminated string");
	*p = s + 1;
	return n;
}

static const uint8_t *named_id(const char *w)
{
	static const uint8_t zero[16];

	if (strcmp(w, "alice") == 0)
		return fixture_alice_id;
	if (strcmp(w, "bob") == 0)
		return fixture_bob_id;
	if (strcmp(w, "zero-id") == 0)
		return zero;
	if (strcmp(w, "id") == 0)
		return R.captured_id;
	return NULL;
}

/* One line of request (out == false) or expected response (out == true) tokens. */
static void parse_bytes_line(const char *p, struct segs *ss, bool expect)
{
	uint8_t buf[1024];
	char word[256];
	const uint8_t *id;
	size_t n, i;

	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			return;
		n = strcspn(p, " \t");
		if (n >= sizeof(word))
			n = sizeof(word) - 1;
		if (p[0] == 'n' && strncmp(p, "name:\"", 6) == 0) {
			const char *q = p + 5;
			memset(buf, 0, WIRE_NAME_SIZE);
			parse_quoted(&q, buf, WIRE_NAME_SIZE);
			emit(ss, buf, WIRE_NAME_SIZE, false);
			p = q;
			continue;
		}
		if (strncmp(p, "plain:\"", 7) == 0) {
			const char *q = p + 6;
			struct seg *sg;
			if (expect)
				die("plain belongs in a request line");
			n = parse_quoted(&q, buf, sizeof(buf));
			if (ss->n == MAX_SEGS)
				die("too many segments");
			sg = &ss->s[ss->n++];
			memset(sg, 0, sizeof(*sg));
			sg->kind = SEG_CONTENT;
			sg->size = n;
			sg->bytes = malloc(n + 1);
			memcpy(sg->bytes, buf, n);
			p = q;
			continue;
		}
		if (strncmp(p, "str:\"", 5) == 0) {
			const char *q = p + 4;
			n = parse_quoted(&q, buf, sizeof(buf));
			emit(ss, buf, n, false);
			p = q;
			continue;
		}
		memcpy(word, p, n);
		word[n] = '\0';
		p += n;
		if ((id = named_id(word))) {
			emit(ss, id, 16, false);
		} else if (strcmp(word, "capture-id") == 0) {
			if (!expect)
				die("capture-id belongs in a response line");
			R.capture = true;
			emit(ss, NULL, 16, true);
		} else if (strncmp(word, "u16:", 4) == 0) {
			wire_put_u16(buf, (uint16_t)eval(word + 4));
			emit(ss, buf, 2, false);
		} else if (strncmp(word, "u32:", 4) == 0) {
			wire_put_u32(buf, (uint32_t)eval(word + 4));
			emit(ss, buf, 4, false);
		} else if (strncmp(word, "any:", 4) == 0) {
			emit(ss, NULL, (size_t)eval(word + 4), true);
		} else if (strncmp(word, "fill:", 5) == 0) {
			unsigned long long cnt;
			unsigned v;
			if (sscanf(word + 5, "%llu:%x", &cnt, &v) != 2 || cnt > sizeof(buf))
				die("bad fill '%s'", word);
			memset(buf, (int)v, (size_t)cnt);
			emit(ss, buf, (size_t)cnt, false);
		} else if (strcmp(word, "spki") == 0) {
			emit(ss, keys.spki, keys.spki_len, false);
		} else if (strcmp(word, "pkcs1") == 0) {
			emit(ss, keys.pkcs1, keys.pkcs1_len, false);
		} else if (strcmp(word, "other-spki") == 0) {
			emit(ss, keys.other_spki, keys.other_spki_len, false);
		} else if (strncmp(word, "made-spki:", 10) == 0) {
			uint8_t mod[DER_RSA_MAX_BITS / 8 + 1], e[16];
			char ehex[40] = "", form[8] = "odd";
			unsigned bits = 0, top;
			size_t n_len, e_len;
			struct prng pr;
			long w;
			if (sscanf(word + 10, "%u:%39[0-9a-f]:%7s", &bits, ehex, form) < 2 || bits < 8 ||
			    bits > 8 * sizeof(mod) || strlen(ehex) % 2 || strlen(ehex) / 2 > sizeof(e))
				die("bad made-spki '%s'", word);
			/* Any number of that size, top bit set: a key in form only, which no test ever encrypts with. */
			n_len = (bits + 7) / 8;
			top = (bits - 1) % 8;
			pr.x = bits;
			prng_fill(&pr, mod, n_len);
			mod[0] = (uint8_t)((mod[0] & ((1u << top) - 1)) | 1u << top);
			mod[n_len - 1] = strcmp(form, "even") == 0 ? (uint8_t)(mod[n_len - 1] & 0xfe)
			                                           : (uint8_t)(mod[n_len - 1] | 1);
			for (e_len = 0; e_len < strlen(ehex) / 2; e_len++)
				e[e_len] = (uint8_t)(hex_value(ehex[2 * e_len]) << 4 | hex_value(ehex[2 * e_len + 1]));
			w = der_write_rsa_spki(mod, n_len, e, e_len, buf, sizeof(buf));
			if (w < 0)
				die("cannot encode '%s'", word);
			emit(ss, buf, (size_t)w, false);
		} else if (strncmp(word, "content:", 8) == 0) {
			unsigned long long size;
			unsigned seed;
			char pad[16] = "ok";
			struct seg *s;
			if (expect)
				die("content belongs in a request line");
			if (sscanf(word + 8, "%llu:%u:%15s", &size, &seed, pad) < 2)
				die("bad content '%s'", word);
			if (ss->n == MAX_SEGS)
				die("too many segments");
			s = &ss->s[ss->n++];
			memset(s, 0, sizeof(*s));
			s->kind = SEG_CONTENT;
			s->size = size;
			s->seed = seed;
			if (strcmp(pad, "ok") == 0)
				s->pad = PAD_OK;
			else if (strcmp(pad, "zero") == 0)
				s->pad = PAD_ZERO;
			else if (strcmp(pad, "big") == 0)
				s->pad = PAD_BIG;
			else if (strcmp(pad, "uneven") == 0)
				s->pad = PAD_UNEVEN;
			else
				die("unknown padding '%s'", pad);
		} else if (strncmp(word, "bin:", 4) == 0) {
			if (expect)
				die("bin belongs in a request line");
			emit_capture(ss, word + 4);
		} else if (strncmp(word, "crc32text:", 10) == 0) {
			unsigned long long size;
			unsigned seed;
			if (!expect || sscanf(word + 10, "%llu:%u", &size, &seed) != 2)
				die("bad crc32text '%s' (a response token)", word);
			emit_crc32_text(ss, size, seed);
		} else if (strncmp(word, "sum:", 4) == 0) {
			unsigned long long size;
			unsigned seed;
			int plus = 0;
			if (sscanf(word + 4, "%llu:%u:+%d", &size, &seed, &plus) < 2)
				die("bad sum '%s'", word);
			wire_put_u32(buf, content_sum(size, seed, R.algo) + (uint32_t)plus);
			emit(ss, buf, 4, false);
		} else {
			/* Hex digits, ".." for a byte that may be anything. */
			if (n % 2)
				die("odd number of hex digits in '%s'", word);
			for (i = 0; i < n; i += 2) {
				int hi = hex_value(word[i]), lo = hex_value(word[i + 1]);
				if (word[i] == '.' && word[i + 1] == '.' && expect) {
					emit(ss, NULL, 1, true);
					continue;
				}
				if (hi < 0 || lo < 0)
					die("not a token or hex: '%s'", word);
				buf[0] = (uint8_t)(hi << 4 | lo);
				emit(ss, buf, 1, false);
			}
		}
	}
}

static void emit_crc32_text(struct segs *ss, uint64_t size, uint32_t seed)
{
	uint8_t field[10] = {0};
	char digits[11];
	int n = snprintf(digits, sizeof(digits), "%u", content_sum(size, seed, CKSUM_CRC32));

	memcpy(field, digits, (size_t)n);
	emit(ss, field, sizeof(field), false);
}

static uint64_t segs_len(const struct segs *ss)
{
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < ss->n; i++)
		total += ss->s[i].kind == SEG_BYTES ? ss->s[i].len : padded(ss->s[i].size);
	return total;
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* REPLAY_CONNECT=HOST:PORT: the run goes to an efsession listening there instead of a child on a pipe. */
static int connect_to(const char *where)
{
	char host[256];
	const char *colon = strrchr(where, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	int fd;

	if (!colon || (size_t)(colon - where) >= sizeof(host))
		die("REPLAY_CONNECT wants HOST:PORT");
	snprintf(host, sizeof(host), "%.*s", (int)(colon - where), where);
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
		die("cannot resolve %s", where);
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("cannot connect to %s: %s", where, strerror(errno));
	freeaddrinfo(ai);
	return fd;
}

/*
 * With REPLAY_DUMP_DIR set, write the bytes a run sends into
 * DIR/<replay file>-<run>, so the captures seed the fuzzers' corpus.
 */
static void dump_input(void)
{
	const char *dir = getenv("REPLAY_DUMP_DIR"), *base = strrchr(R.file, '/');
	struct content_gen g = {0};
	static uint8_t buf[1 << 16];
	char path[1024];
	size_t i, n;
	FILE *f;

	if (!dir || !*dir)
		return;
	base = base ? base + 1 : R.file;
	snprintf(path, sizeof(path), "%s/%.*s-%d", dir, (int)strcspn(base, "."), base, R.run_no);
	if ((f = fopen(path, "wbe")) == NULL)
		die("cannot write %s: %s", path, strerror(errno));
	for (i = 0; i < R.in.n; i++) {
		const struct seg *s = &R.in.s[i];
		if (s->kind == SEG_BYTES) {
			fwrite(s->bytes, 1, s->len, f);
			continue;
		}
		content_begin(&g, s);
		while ((n = content_next(&g, buf, sizeof(buf))) > 0)
			fwrite(buf, 1, n, f);
		content_end(&g);
	}
	if (fclose(f) != 0)
		die("cannot write %s: %s", path, strerror(errno));
}

/* Run efsession with the input segments on a pipe, collecting its output and exit status. */
static void execute(void)
{
	int in[2], out[2], status, err_fd;
	size_t seg = 0, off = 0, buf_len = 0, buf_off = 0;
	struct content_gen g = {0};
	bool in_content = false, out_open = true;
	static uint8_t buf[1 << 16];
	time_t deadline = time(NULL) + RUN_DEADLINE_S;
	uint64_t sent = 0;
	pid_t pid;
	int pending_in;
	char *argv[MAX_ARGS + 4];
	int i, argc = 0;

	if (R.connect) {
		in[0] = -1;
		in[1] = connect_to(R.connect);
		out[0] = dup(in[1]);
		pid = -1;
		goto connected;
	}
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	snprintf(R.log_path, sizeof(R.log_path), "%s.log.%d", R.state, R.run_no);
	err_fd = open(R.log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	static char state_opt[] = "--state-dir";

	argv[argc++] = R.efsession;
	argv[argc++] = state_opt;
	argv[argc++] = R.state;
	for (i = 0; i < R.argc; i++)
		argv[argc++] = R.argv[i];
	argv[argc] = NULL;
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err_fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(out[1]);
	close(err_fd);
	set_nonblock(in[0]);
connected:
	set_nonblock(in[1]);
	set_nonblock(out[0]);
	R.got_len = 0;
	for (;;) {
		struct pollfd p[2] = {{.fd = out[0], .events = POLLIN}, {.fd = in[1], .events = POLLOUT}};
		int np = 1;

		/* Refill the write buffer from the next segment. */
		if (buf_off == buf_len && seg < R.in.n) {
			const struct seg *s = &R.in.s[seg];
			buf_off = 0;
			if (s->kind == SEG_BYTES) {
				buf_len = s->len - off < sizeof(buf) ? s->len - off : sizeof(buf);
				memcpy(buf, s->bytes + off, buf_len);
				off += buf_len;
				if (off == s->len) {
					seg++;
					off = 0;
				}
			} else {
				if (!in_content) {
					content_begin(&g, s);
					in_content = true;
				}
				buf_len = content_next(&g, buf, sizeof(buf));
				if (g.produced == g.total) {
					content_end(&g);
					in_content = false;
					seg++;
				}
			}
		}
		if (buf_off < buf_len)
			np = 2;
		else if (in[1] >= 0) {
			/* Everything sent: the client closes its side, as a client that is done does. */
			if (R.connect)
				shutdown(in[1], SHUT_WR);
			else
				close(in[1]);
			in[1] = -1;
		}
		if (!out_open)
			break;
		if (time(NULL) > deadline)
			die("run did not finish within %d s", RUN_DEADLINE_S);
		if (poll(p, (nfds_t)np, 1000) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (p[0].revents & (POLLIN | POLLHUP)) {
			uint8_t rb[65536];
			ssize_t n = read(out[0], rb, sizeof(rb));
			if (n > 0) {
				R.got = realloc(R.got, R.got_len + (size_t)n);
				memcpy(R.got + R.got_len, rb, (size_t)n);
				R.got_len += (size_t)n;
			} else if (n == 0) {
				out_open = false;
			}
		}
		if (np == 2 && (p[1].revents & POLLOUT)) {
			ssize_t n = write(in[1], buf + buf_off, buf_len - buf_off);
			if (n > 0) {
				buf_off += (size_t)n;
				sent += (uint64_t)n;
			}
		}
		if (np == 2 && (p[1].revents & (POLLERR | POLLHUP)) && !R.connect)
			die("input pipe broke");
		if (np == 2 && (p[1].revents & (POLLERR | POLLHUP)))
			buf_off = buf_len = 0, seg = R.in.n;
	}
	if (in_content)
		content_end(&g);
	if (R.connect) {
		R.status = -1;
		R.sent = sent;
		R.consumed = sent;
		if (in[1] >= 0)
			close(in[1]);
		close(out[0]);
		return;
	}
	waitpid(pid, &status, 0);
	R.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	/* What efsession did not read is still in the pipe. */
	if (ioctl(in[0], FIONREAD, &pending_in) < 0)
		pending_in = 0;
	R.sent = sent;
	R.consumed = sent - (uint64_t)pending_in;
	if (in[1] >= 0)
		close(in[1]);
	close(in[0]);
	close(out[0]);
}

static void dump_log(void)
{
	char line[1024];
	FILE *f = fopen(R.log_path, "r");

	if (!f)
		return;
	printf("#   efsession's log:\n");
	while (fgets(line, sizeof(line), f))
		printf("#     %s", line);
	fclose(f);
}

/* Whether a line of efsession's log of the last run contains pat. */
static bool log_contains(const char *pat, bool any_case)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen(R.log_path, "r");

	while (f && !found && fgets(line, sizeof(line), f))
		found = (any_case ? strcasestr(line, pat) : strstr(line, pat)) != NULL;
	if (f)
		fclose(f);
	return found;
}

static void hex_context(const char *what, const uint8_t *b, size_t len, size_t at)
{
	size_t from = at > 8 ? at - 8 : 0, to = at + 24 < len ? at + 24 : len, i;

	printf("#   %s at %zu:", what, from);
	for (i = from; i < to; i++)
		printf("%s%02x", i == at ? " [" : " ", b[i]);
	printf("\n");
}

/* The response at *at in what the last run answered: its header and payload; *at moves past it. */
static bool next_response(size_t *at, struct wire_response_header *h, const uint8_t **payload)
{
	size_t head = wire_response_header_size(R.dialect);

	if (R.got_len - *at < head)
		return false;
	wire_parse_response_header(R.dialect, R.got + *at, h);
	if (h->payload_size > R.got_len - *at - head)
		return false;
	*payload = R.got + *at + head;
	*at += head + h->payload_size;
	return true;
}

/* Compare what efsession wrote with the expected bytes (wildcards allowed). */
static void check_output(void)
{
	size_t total = 0, i, pos = 0, s;
	uint8_t *want, *mask;
	bool good = true;

	for (s = 0; s < R.out.n; s++)
		total += R.out.s[s].len;
	want = malloc(total + 1);
	mask = malloc(total + 1);
	for (s = 0; s < R.out.n; s++) {
		memcpy(want + pos, R.out.s[s].bytes, R.out.s[s].len);
		memcpy(mask + pos, R.out.s[s].mask, R.out.s[s].len);
		pos += R.out.s[s].len;
	}
	for (i = 0; i < total && i < R.got_len; i++)
		if (mask[i] && want[i] != R.got[i]) {
			good = false;
			break;
		}
	if (!ok(good && R.got_len == total, "%s:%d: responses are the %zu bytes expected", R.file, R.line, total)) {
		printf("#   got %zu bytes, want %zu; first difference at byte %zu\n", R.got_len, total, i);
		if (i < R.got_len)
			hex_context("got ", R.got, R.got_len, i);
		if (i < total)
			hex_context("want", want, total, i);
		dump_log();
	}
	/* The id a 2100 carried, for the requests that follow. */
	if (R.capture) {
		struct wire_response_header h;
		struct wire_response_body b;
		const uint8_t *payload;

		for (i = 0; next_response(&i, &h, &payload);)
			if (h.code == RESP_REGISTERED &&
			    wire_parse_response_body(R.dialect, h.code, payload, h.payload_size, &b) == 0) {
				memcpy(R.captured_id, b.id, 16);
				break;
			}
	}
	free(want);
	free(mask);
}

/* Everything a refused request must leave alone: every row but last seen, every file and its bytes. */
static char *snapshot(void)
{
	char path[700], *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);
	sqlite3 *db;
	sqlite3_stmt *st;
	int i;

#ifdef HAVE_POSTGRESQL
	if (R.database)
		pg_rows("SELECT 'client', encode(id, 'hex'), name, encode(public_key, 'hex'), encode(aes_key, 'hex'), "
		        "NULL, NULL, NULL FROM clients UNION ALL SELECT 'file', encode(client_id, 'hex'), file_name, "
		        "path_name, verified::text, status::text, size::text, checksum || '/' || attempts || '/' || "
		        "received "
		        "FROM files ORDER BY 1, 2, 3",
		        NULL, m, "", "|\n");
	else
#endif
		snprintf(path, sizeof(path), "%s/%s", R.state, STORE_DB_NAME);
	if (!R.database && sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(
	        db,
	        "SELECT 'client', hex(id), name, hex(public_key), hex(aes_key), NULL, NULL, NULL FROM clients "
	        "UNION ALL SELECT 'file', hex(client_id), file_name, path_name, verified, status, size, "
	        "checksum || '/' || attempts || '/' || received FROM files ORDER BY 1, 2, 3",
	        -1, &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			for (i = 0; i < 8; i++)
				fprintf(m, "%s|",
				        sqlite3_column_text(st, i) ? (const char *)sqlite3_column_text(st, i) : "");
			fprintf(m, "\n");
		}
		sqlite3_finalize(st);
	}
	if (!R.database)
		sqlite3_close(db);
	fflush(m);
	{
		/* Files: name, size and a hash of the content; client directories, which a failed upload must not leave. */
		char cmd[800];
		FILE *p;
		char line[1024];
		snprintf(
		    cmd, sizeof(cmd),
		    "cd '%s' 2>/dev/null && { find files tmp pending -type f; find files pending -mindepth 1 -type d "
		    "-printf '%%p/\\n'; } 2>/dev/null | LC_ALL=C sort | while read -r f; do "
		    "if [ -d \"$f\" ]; then echo \"$f\"; else printf '%%s ' \"$f\"; cksum < \"$f\"; fi; done",
		    R.state);
		p = popen(cmd, "r");
		while (p && fgets(line, sizeof(line), p))
			fputs(line, m);
		if (p)
			pclose(p);
	}
	fclose(m);
	return out;
}

static void finish_run(void)
{
	if (!R.pending)
		return;
	R.pending = false;
	free(R.snapshot);
	R.snapshot = snapshot();
	R.input_len = segs_len(&R.in);
	dump_input();
	execute();
	check_output();
	free_segs(&R.in);
	free_segs(&R.out);
}

/* sql QUERY => EXPECTED: rows joined by ", ", columns by "|". */
static void check_sql(const char *q, int line)
{
	const char *arrow = strstr(q, "=>");
	char path[700], query[LINE_MAX_LEN], *got = NULL;
	const char *want;
	size_t len = 0;
	FILE *m;
	sqlite3 *db;
	sqlite3_stmt *st;
	int i, rows = 0;

	if (!arrow)
		die("sql needs '=> expected'");
	snprintf(query, sizeof(query), "%.*s", (int)(arrow - q), q);
	want = arrow + 2;
	while (*want == ' ')
		want++;
	if (R.database && sqlite_only(query)) {
		printf("ok %d # SKIP %s:%d: SQLite's SQL: %s\n", ++tap_count, R.file, line, query);
		return;
	}
	m = open_memstream(&got, &len);
	snprintf(path, sizeof(path), "%s/%s", R.state, STORE_DB_NAME);
#ifdef HAVE_POSTGRESQL
	if (R.database) {
		pg_rows(query, NULL, m, "NULL", ", ");
		db = NULL;
	} else
#endif
	    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		fprintf(m, "(cannot open the database)");
	else if (sqlite3_prepare_v2(db, query, -1, &st, NULL) != SQLITE_OK)
		fprintf(m, "(error: %s)", sqlite3_errmsg(db));
	else {
		while (sqlite3_step(st) == SQLITE_ROW) {
			fprintf(m, "%s", rows++ ? ", " : "");
			for (i = 0; i < sqlite3_column_count(st); i++)
				fprintf(m, "%s%s", i ? "|" : "",
				        sqlite3_column_text(st, i) ? (const char *)sqlite3_column_text(st, i) : "NULL");
		}
		sqlite3_finalize(st);
	}
	if (db)
		sqlite3_close(db);
	fclose(m);
	if (!ok(strcmp(got, want) == 0, "%s:%d: database: %s=> %s", R.file, line, query, want))
		printf("#   got: %s\n", got);
	free(got);
}

/* Replace $alice, $bob and $id by the ids in hex, $sum:SIZE:SEED by a checksum in decimal. */
static void expand_ids(const char *in, char *out, size_t cap)
{
	unsigned long long size;
	unsigned seed;
	int used;

	static const char *const names[] = {"$alice", "$bob", "$id"};
	const uint8_t *ids[] = {fixture_alice_id, fixture_bob_id, R.captured_id};
	size_t o = 0, k;
	char hex[WIRE_ID_HEX_SIZE];

	while (*in && o + 40 < cap) {
		for (k = 0; k < 3; k++)
			if (strncmp(in, names[k], strlen(names[k])) == 0)
				break;
		if (sscanf(in, "$sum:%llu:%u%n", &size, &seed, &used) == 2) {
			o += (size_t)snprintf(out + o, cap - o, "%u", content_sum(size, seed, R.algo));
			in += used;
		} else if (sscanf(in, "$crc32:%llu:%u%n", &size, &seed, &used) == 2) {
			o += (size_t)snprintf(out + o, cap - o, "%u", content_sum(size, seed, CKSUM_CRC32));
			in += used;
		} else if (k < 3) {
			wire_id_to_hex(ids[k], hex);
			memcpy(out + o, hex, 32);
			o += 32;
			in += strlen(names[k]);
		} else {
			out[o++] = *in++;
		}
	}
	out[o] = '\0';
}

/* Whether two files hold the same bytes. */
static bool same_bytes(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rbe"), *fb = fopen(b, "rbe");
	bool same = fa && fb;
	int ca, cb;

	while (same) {
		ca = getc(fa);
		cb = getc(fb);
		same = ca == cb;
		if (ca == EOF)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return same;
}

/*
 * file PATH content:SIZE:SEED | file PATH equals:FILE | file PATH absent. A
 * PATH with a wildcard (a kept-aside copy's token is random) must match
 * exactly one file, or none for absent.
 */
static void check_file(const char *args, int line)
{
	char path[LINE_MAX_LEN], full[LINE_MAX_LEN + 600], spec[1024], other[2048];
	unsigned long long size;
	unsigned seed;
	struct stat sb;
	glob_t g;

	if (sscanf(args, "%4095s %1023s", path, spec) != 2)
		die("file PATH content:SIZE:SEED|equals:FILE|absent");
	snprintf(full, sizeof(full), "%s/%s", R.state, path);
	if (strpbrk(path, "*?[")) {
		int r = glob(full, GLOB_NOSORT, NULL, &g);

		if (strcmp(spec, "absent") == 0) {
			if (!ok(r == GLOB_NOMATCH, "%s:%d: no file %s", R.file, line, path))
				printf("#   %zu match\n", r == 0 ? g.gl_pathc : 0);
			if (r == 0)
				globfree(&g);
			return;
		}
		if (r != 0 || g.gl_pathc != 1) {
			ok(0, "%s:%d: exactly one file %s", R.file, line, path);
			printf("#   %zu match\n", r == 0 ? g.gl_pathc : 0);
			if (r == 0)
				globfree(&g);
			return;
		}
		snprintf(full, sizeof(full), "%s", g.gl_pathv[0]);
		globfree(&g);
	} else if (strcmp(spec, "absent") == 0) {
		ok(lstat(full, &sb) < 0 && errno == ENOENT, "%s:%d: no file %s", R.file, line, path);
		return;
	}
	if (strncmp(spec, "equals:", 7) == 0) {
		beside_replay(spec + 7, other, sizeof(other));
		ok(stat(full, &sb) == 0 && (sb.st_mode & 07777) == 0600 && same_bytes(full, other),
		   "%s:%d: %s holds the bytes of %s, mode 0600", R.file, line, path, spec + 7);
		return;
	}
	if (sscanf(spec, "content:%llu:%u", &size, &seed) != 2)
		die("bad file spec '%s'", spec);
	{
		struct prng p = {seed ? seed : 1};
		uint8_t buf[65536];
		uint64_t pos = 0;
		bool same = true;
		ssize_t n, i;
		int fd = open(full, O_RDONLY);

		if (fd < 0 || fstat(fd, &sb) < 0) {
			ok(0, "%s:%d: %s holds the %llu bytes sent", R.file, line, path, size);
			printf("#   %s: %s\n", full, strerror(errno));
			if (fd >= 0)
				close(fd);
			return;
		}
		while (same && (n = read(fd, buf, sizeof(buf))) > 0) {
			for (i = 0; i < n; i++)
				if (buf[i] != prng_byte(&p)) {
					same = false;
					break;
				}
			pos += (uint64_t)n;
		}
		close(fd);
		if (!ok(same && pos == size && (sb.st_mode & 07777) == 0600,
		        "%s:%d: %s holds the %llu bytes sent, mode 0600", R.file, line, path, size))
			printf("#   size %llu, mode %o, %s\n", (unsigned long long)sb.st_size, sb.st_mode & 07777,
			       same ? "same bytes so far" : "content differs");
	}
}

static void check_tmp_empty(int line)
{
	char path[700];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "%s/tmp", R.state);
	if ((dir = opendir(path))) {
		while ((d = readdir(dir)))
			if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
				n++;
		closedir(dir);
	}
	ok(n == 0, "%s:%d: no temporary file left behind", R.file, line);
}

/*
 * adopt-key: the last 2102 or 2105 carries an AES key that alice's private
 * key decrypts (RSA-OAEP, SHA-1) to exactly the key stored for the client
 * it names; content is encrypted with that key from now on.
 */
static void adopt_key(int line)
{
	gcry_sexp_t data = NULL, plain = NULL;
	struct wire_response_header h;
	struct wire_response_body b, resp = {0};
	const uint8_t *payload;
	char path[700];
	size_t i, klen = 0;
	const void *k = NULL;
	sqlite3 *db;
	sqlite3_stmt *st;
	bool good = false;

	for (i = 0; next_response(&i, &h, &payload);)
		if ((h.code == RESP_AES_KEY || h.code == RESP_RECONNECTED) &&
		    wire_parse_response_body(R.dialect, h.code, payload, h.payload_size, &b) == 0)
			resp = b;
	if (!resp.key)
		die("adopt-key: no 2102 or 2105 in the last run");
	if (gcry_sexp_build(&data, NULL, "(enc-val (flags oaep) (hash-algo sha1) (rsa (a %b)))", (int)resp.key_len,
	                    resp.key) == 0 &&
	    gcry_pk_decrypt(&plain, data, keys.priv) == 0) {
		gcry_sexp_t v = gcry_sexp_find_token(plain, "value", 0);
		k = v ? gcry_sexp_nth_data(v, 1, &klen) : NULL;
		if (k && (klen == 16 || klen == 32)) {
			memcpy(R.content_key, k, klen);
			R.content_key_len = klen;
		}
		gcry_sexp_release(v);
	}
	snprintf(path, sizeof(path), "%s/%s", R.state, STORE_DB_NAME);
#ifdef HAVE_POSTGRESQL
	if (R.database && R.content_key_len == klen) {
		char *hex = NULL, want[2 * 32 + 1];
		size_t hex_len = 0;
		FILE *m = open_memstream(&hex, &hex_len);

		pg_rows("SELECT encode(aes_key, 'hex') FROM clients WHERE id = $1", resp.id, m, "", "");
		fclose(m);
		for (i = 0; i < klen; i++)
			snprintf(want + 2 * i, 3, "%02x", R.content_key[i]);
		good = strcmp(hex, want) == 0;
		free(hex);
	} else
#endif
	    if (!R.database && R.content_key_len == klen &&
	        sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		if (sqlite3_prepare_v2(db, "SELECT aes_key FROM clients WHERE id = ?", -1, &st, NULL) == SQLITE_OK) {
			sqlite3_bind_blob(st, 1, resp.id, 16, SQLITE_STATIC);
			if (sqlite3_step(st) == SQLITE_ROW && (size_t)sqlite3_column_bytes(st, 0) == klen)
				good = memcmp(sqlite3_column_blob(st, 0), R.content_key, klen) == 0;
			sqlite3_finalize(st);
		}
		sqlite3_close(db);
	}
	ok(good, "%s:%d: the AES key sent decrypts with the client's private key to the %zu-bit key stored for it",
	   R.file, line, klen * 8);
	gcry_sexp_release(data);
	gcry_sexp_release(plain);
}

static void seed_state(const char *how)
{
	int r;

#ifdef HAVE_POSTGRESQL
	if (R.database)
		pg_wipe(strcmp(how, "fixture") == 0);
#endif
	if (strcmp(how, "missing") == 0) {
		rmdir(R.state);
		return;
	}
	if (strcmp(how, "empty") == 0)
		return;
	if (strcmp(how, "fixture") != 0)
		die("unknown state '%s'", how);
	if ((r = fixture_seed_database(R.database, R.state, keys.spki, keys.spki_len)) < 0)
		die("cannot create the fixture: %s", failure_str(r));
}

/*
 * "client ID \"NAME\" AES [spki|other-spki]": one more client, before the
 * first run, with that id (32 hex digits), name and AES key, and the public
 * key named (none without).
 */
static void seed_client(const char *args)
{
	char idhex[64], aeshex[80], keyword[32] = "";
	uint8_t id[16], aes[32], name[WIRE_NAME_SIZE] = {0};
	const char *p = args;
	size_t name_len, aes_len = 0, i;
	struct store *st;
	int r;

	if (sscanf(p, "%63s", idhex) != 1 || wire_id_from_hex(idhex, id) < 0)
		die("client ID \"NAME\" AES [spki|other-spki]");
	p += strlen(idhex);
	while (*p == ' ')
		p++;
	name_len = parse_quoted(&p, name, WIRE_NAME_MAX);
	name[name_len] = '\0';
	if (sscanf(p, "%79s %31s", aeshex, keyword) < 1 || strlen(aeshex) % 2 || strlen(aeshex) > 64)
		die("client: bad AES key");
	for (i = 0; i < strlen(aeshex); i += 2) {
		int hi = hex_value(aeshex[i]), lo = hex_value(aeshex[i + 1]);
		if (hi < 0 || lo < 0)
			die("client: bad AES key");
		aes[aes_len++] = (uint8_t)(hi << 4 | lo);
	}
	if ((r = store_open_database(R.database, R.state, 0, false, NULL, NULL, &st)) < 0)
		die("client: %s", failure_str(r));
	r = store_register_client(st, id, (const char *)name);
	if (r == 0 && strcmp(keyword, "spki") == 0)
		r = store_set_keys(st, id, (const char *)name, keys.spki, keys.spki_len, aes, aes_len);
	else if (r == 0 && strcmp(keyword, "other-spki") == 0)
		r = store_set_keys(st, id, (const char *)name, keys.other_spki, keys.other_spki_len, aes, aes_len);
	else if (r == 0 && keyword[0])
		die("client: unknown key '%s'", keyword);
	else if (r == 0)
		r = store_set_aes_key(st, id, aes, aes_len);
	store_close(st);
	if (r < 0)
		die("client: %s", failure_str(r));
}

/* "prepare SQL": change the seeded state before the first run, as an older or newer program would have left it. */
static void prepare_state(const char *sql)
{
	char path[600];
	sqlite3 *db;
	char *err = NULL;

	if (R.database) {
		printf("1..0 # SKIP %s: prepares SQLite's database\n", R.file);
		exit(0);
	}
	snprintf(path, sizeof(path), "%s/%s", R.state, STORE_DB_NAME);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		die("prepare: %s", err ? err : sqlite3_errmsg(db));
	sqlite3_close(db);
}

/*
 * "prepare-file PATH absent|empty|content:SIZE:SEED": before the first run,
 * remove a file of the state directory, or make it empty or hold that
 * plaintext (its directory made if needed), as a crash, a mistake or an
 * older program would have left it.
 */
static void prepare_file(const char *args)
{
	char path[LINE_MAX_LEN], full[LINE_MAX_LEN + 600], spec[128], *slash;
	unsigned long long size;
	unsigned seed;
	uint8_t buf[4096];
	struct prng p;
	int fd;

	if (sscanf(args, "%4095s %127s", path, spec) != 2)
		die("prepare-file PATH absent|empty|content:SIZE:SEED");
	if (R.database && strncmp(path, STORE_DB_NAME, strlen(STORE_DB_NAME)) == 0) {
		printf("1..0 # SKIP %s: prepares SQLite's database file\n", R.file);
		exit(0);
	}
	snprintf(full, sizeof(full), "%s/%s", R.state, path);
	if (strcmp(spec, "absent") == 0) {
		if (unlink(full) < 0 && errno != ENOENT)
			die("cannot remove %s: %s", path, strerror(errno));
		return;
	}
	for (slash = strchr(full + strlen(R.state) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(full, 0700) < 0 && errno != EEXIST)
			die("cannot make %s: %s", full, strerror(errno));
		*slash = '/';
	}
	if ((fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		die("cannot write %s: %s", path, strerror(errno));
	if (strcmp(spec, "empty") != 0) {
		if (sscanf(spec, "content:%llu:%u", &size, &seed) != 2)
			die("bad prepare-file spec '%s'", spec);
		p.x = seed ? seed : 1;
		while (size > 0) {
			size_t n = size < sizeof(buf) ? (size_t)size : sizeof(buf);

			prng_fill(&p, buf, n);
			if (write(fd, buf, n) != (ssize_t)n)
				die("cannot write %s: %s", path, strerror(errno));
			size -= n;
		}
	}
	close(fd);
}

/* The offset just past the tag and length of the DER element at pos. */
static size_t der_skip_header(const uint8_t *d, size_t pos)
{
	return pos + 2 + (d[pos + 1] & 0x80 ? (size_t)(d[pos + 1] & 0x7f) : 0);
}

static long make_key(unsigned bits, unsigned e, gcry_sexp_t *priv, uint8_t *spki, size_t spki_cap, uint8_t *pkcs1,
                     size_t pkcs1_cap, size_t *pkcs1_len)
{
	gcry_sexp_t params, key, pub, ln, le;
	gcry_mpi_t n, ee;
	uint8_t nb[1024], eb[16];
	size_t nl, el;
	long r;

	if (gcry_sexp_build(&params, NULL, "(genkey (rsa (nbits %u) (rsa-use-e %u)))", bits, e) ||
	    gcry_pk_genkey(&key, params))
		die("RSA key generation failed");
	gcry_sexp_release(params);
	pub = gcry_sexp_find_token(key, "public-key", 0);
	ln = gcry_sexp_find_token(pub, "n", 0);
	le = gcry_sexp_find_token(pub, "e", 0);
	n = gcry_sexp_nth_mpi(ln, 1, GCRYMPI_FMT_USG);
	ee = gcry_sexp_nth_mpi(le, 1, GCRYMPI_FMT_USG);
	gcry_mpi_print(GCRYMPI_FMT_USG, nb, sizeof(nb), &nl, n);
	gcry_mpi_print(GCRYMPI_FMT_USG, eb, sizeof(eb), &el, ee);
	r = der_write_rsa_spki(nb, nl, eb, el, spki, spki_cap);
	if (r < 0)
		die("cannot encode the fixture key");
	if (pkcs1) {
		/* The RSAPublicKey is what the SPKI's BIT STRING holds after its unused-bits byte. */
		size_t pos = der_skip_header(spki, 0);
		pos += 15; /* AlgorithmIdentifier: SEQUENCE { rsaEncryption, NULL } */
		pos = der_skip_header(spki, pos) + 1;
		if ((size_t)r - pos > pkcs1_cap)
			die("PKCS#1 key too big");
		memcpy(pkcs1, spki + pos, (size_t)r - pos);
		*pkcs1_len = (size_t)r - pos;
	}
	gcry_mpi_release(n);
	gcry_mpi_release(ee);
	gcry_sexp_release(ln);
	gcry_sexp_release(le);
	gcry_sexp_release(pub);
	*priv = key;
	return r;
}

/* A line that changes the state before the first run, on the fixture unless a state line said otherwise. */
static void before_runs(const char *directive, bool *seeded)
{
	if (R.run_no > 0)
		die("%s must come before the first run", directive);
	if (!*seeded) {
		seed_state("fixture");
		*seeded = true;
	}
}

static char *trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
	return s;
}

static void start_run(char *opts, int line)
{
	char *tok, *save = NULL, extra[512];
	int i;

	finish_run();
	for (i = 0; i < R.argc; i++)
		free(R.argv[i]);
	R.argc = 0;
	R.algo = CKSUM_POSIX;
	/* REPLAY_OPTIONS: options for every run, before the file's own (the suite against another configuration). */
	if (getenv("REPLAY_OPTIONS")) {
		snprintf(extra, sizeof(extra), "%s", getenv("REPLAY_OPTIONS"));
		for (tok = strtok_r(extra, " \t", &save); tok && R.argc < MAX_ARGS; tok = strtok_r(NULL, " \t", &save))
			R.argv[R.argc++] = strdup(tok);
	}
	if (R.database && R.argc + 2 <= MAX_ARGS) {
		R.argv[R.argc++] = strdup("--database");
		R.argv[R.argc++] = strdup(R.database);
	}
	for (tok = strtok_r(opts, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (R.argc == MAX_ARGS)
			die("too many options");
		R.argv[R.argc++] = strdup(tok);
		if (R.argc >= 2 && strcmp(R.argv[R.argc - 2], "--checksum") == 0 &&
		    cksum_algo_from_name(tok, &R.algo) < 0)
			die("unknown checksum '%s'", tok);
	}
	R.pending = true;
	R.capture = false;
	R.dialect = &wire_standard;
	R.line = line;
	R.run_no++;
}

int main(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR"), *builddir = getenv("top_builddir");
	char line[LINE_MAX_LEN], efs[600], *l, exp[LINE_MAX_LEN];
	bool seeded = false, keep = getenv("REPLAY_KEEP") != NULL;
	int lineno = 0;
	FILE *f;

	if (argc != 2) {
		fprintf(stderr, "usage: replay FILE.replay\n");
		return 99;
	}
	R.file = argv[1];
	if ((f = fopen(R.file, "r")) == NULL) {
		printf("Bail out! cannot open %s: %s\n", R.file, strerror(errno));
		return 99;
	}
	snprintf(efs, sizeof(efs), "%s/efsession", builddir ? builddir : ".");
	snprintf(R.efsession, sizeof(R.efsession), "%s", getenv("EFSESSION") ? getenv("EFSESSION") : efs);
	R.connect = getenv("REPLAY_CONNECT");
	/* REPLAY_DATABASE: the suite on PostgreSQL (tests/replay-pg.sh), which also gives efsession --database. */
	R.database = getenv("REPLAY_DATABASE") && *getenv("REPLAY_DATABASE") ? getenv("REPLAY_DATABASE") : NULL;
#ifndef HAVE_POSTGRESQL
	if (R.database) {
		printf("1..0 # SKIP built without PostgreSQL\n");
		return 0;
	}
#endif
	if (getenv("REPLAY_STATE")) {
		/* The state directory of the efsession behind REPLAY_CONNECT; it is the caller's to remove. */
		snprintf(R.state, sizeof(R.state), "%s", getenv("REPLAY_STATE"));
		keep = true;
	} else {
		snprintf(R.state, sizeof(R.state), "%s/efreplay.XXXXXX", tmp ? tmp : "/tmp");
		if (!mkdtemp(R.state))
			die("mkdtemp: %s", strerror(errno));
	}
	if (crypto_init() < 0)
		die("libgcrypt");
	keys.spki_len = (size_t)make_key(1024, 17, &keys.priv, keys.spki, sizeof(keys.spki), keys.pkcs1,
	                                 sizeof(keys.pkcs1), &keys.pkcs1_len);
	{
		gcry_sexp_t other;
		keys.other_spki_len =
		    (size_t)make_key(1024, 17, &other, keys.other_spki, sizeof(keys.other_spki), NULL, 0, NULL);
		gcry_sexp_release(other);
	}
	signal(SIGPIPE, SIG_IGN);
	memcpy(R.content_key, fixture_alice_aes, sizeof(fixture_alice_aes));
	R.content_key_len = sizeof(fixture_alice_aes);

	while (fgets(line, sizeof(line), f)) {
		lineno++;
		l = trim(line);
		if (!*l || *l == '#')
			continue;
		R.line = lineno;
		if (strncmp(l, "state ", 6) == 0) {
			if (seeded)
				die("state must come before the first run");
			seed_state(trim(l + 6));
			seeded = true;
		} else if (strncmp(l, "client ", 7) == 0) {
			before_runs("client", &seeded);
			seed_client(trim(l + 7));
		} else if (strncmp(l, "dialect ", 8) == 0) {
			if (!R.pending)
				die("dialect belongs to a run");
			if (strcmp(trim(l + 8), "seed004") == 0)
				R.dialect = &wire_seed004;
			else if (strcmp(trim(l + 8), "standard") == 0)
				R.dialect = &wire_standard;
			else
				die("unknown dialect '%s'", l + 8);
		} else if (strncmp(l, "prepare ", 8) == 0) {
			before_runs("prepare", &seeded);
			prepare_state(trim(l + 8));
		} else if (strncmp(l, "prepare-file ", 13) == 0) {
			if (R.run_no > 0)
				die("prepare-file must come before the first run");
			if (!seeded) {
				seed_state("fixture");
				seeded = true;
			}
			expand_ids(trim(l + 13), exp, sizeof(exp));
			prepare_file(exp);
		} else if (strncmp(l, "run", 3) == 0 && (l[3] == '\0' || l[3] == ' ')) {
			if (!seeded) {
				seed_state("fixture");
				seeded = true;
			}
			start_run(l + 3, lineno);
		} else if (l[0] == '>') {
			if (!R.pending)
				die("'>' outside a run");
			parse_bytes_line(l + 1, &R.in, false);
		} else if (l[0] == '<') {
			if (!R.pending)
				die("'<' outside a run");
			parse_bytes_line(l + 1, &R.out, true);
		} else {
			finish_run();
			expand_ids(l, exp, sizeof(exp));
			l = exp;
			if (R.connect && (strncmp(l, "exit ", 5) == 0 || strncmp(l, "consumed ", 9) == 0 ||
			                  strncmp(l, "log ", 4) == 0 || strncmp(l, "nolog ", 6) == 0)) {
				printf("ok %d - %s:%d: %s # SKIP not visible over TCP\n", ++tap_count, R.file, lineno,
				       l);
			} else if (strncmp(l, "exit ", 5) == 0) {
				int want = atoi(l + 5);
				if (!ok(R.status == want, "%s:%d: efsession exits with status %d", R.file, lineno,
				        want)) {
					printf("#   exit status %d\n", R.status);
					dump_log();
				}
			} else if (strncmp(l, "consumed ", 9) == 0) {
				const char *what = trim(l + 9);
				uint64_t want = strcmp(what, "all") == 0 ? R.input_len : eval(what);
				if (!ok(R.consumed == want, "%s:%d: efsession read %s bytes of its input", R.file,
				        lineno, what))
					printf("#   read %llu of %llu sent\n", (unsigned long long)R.consumed,
					       (unsigned long long)R.sent);
			} else if (strncmp(l, "sql ", 4) == 0) {
				check_sql(l + 4, lineno);
			} else if (strncmp(l, "file ", 5) == 0) {
				check_file(l + 5, lineno);
			} else if (strcmp(l, "unchanged") == 0) {
				char *now = snapshot();
				if (!ok(strcmp(now, R.snapshot) == 0,
				        "%s:%d: database rows (but last seen) and files unchanged", R.file, lineno))
					printf("#   before:\n%s#   after:\n%s", R.snapshot, now);
				free(now);
			} else if (strcmp(l, "adopt-key") == 0) {
				adopt_key(lineno);
			} else if (strncmp(l, "nolog ", 6) == 0) {
				const char *pat = trim(l + 6);
				if (!ok(!log_contains(pat, true), "%s:%d: the log never says \"%s\"", R.file, lineno,
				        pat))
					dump_log();
			} else if (strcmp(l, "tmp-empty") == 0) {
				check_tmp_empty(lineno);
			} else if (strncmp(l, "log ", 4) == 0) {
				const char *pat = trim(l + 4);
				if (!ok(log_contains(pat, false), "%s:%d: the log says \"%s\"", R.file, lineno, pat))
					dump_log();
			} else {
				die("unknown directive '%s'", l);
			}
		}
	}
	finish_run();
	fclose(f);
	if (!keep) {
		char cmd[2 * sizeof(R.state) + 32];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'.log.*", R.state, R.state);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", R.state);
	} else {
		printf("# state kept in %s\n", R.state);
	}
	gcry_sexp_release(keys.priv);
	free(R.got);
	free(R.snapshot);
	return tap_done();
}
