/*
 * test-cksum: the checksums of efserver-protocol(7), Checksums, give the
 * published vectors, agree with cksum(1) and zlib's crc32() on random inputs
 * whole and in random pieces, the table and PCLMUL versions agree everywhere,
 * and the algorithm names parse both ways. EF_TEST_SEED replays a run.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef HAVE_ZLIB
#include <zlib.h>

#include "cksum.h"
#include "cksum-impl.h"
#include "tap.h"

#define MIB           (1024 * 1024)
#define INPUT_MAX_LEN (MIB + 4096)
#define CKSUM_PROGRAM "/usr/bin/cksum"
#define DEFAULT_SEED  20240917u
#define RANDOM_INPUTS 60
#define MAX_REPORTED  5

typedef uint32_t (*update_fn)(uint32_t, const void *, size_t);

struct impl {
	const char *name;
	update_fn update;
	int usable;
};

static uint64_t rng_state;

/* splitmix64: the same sequence for the same seed on every platform. */
static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static size_t rng_below(size_t n)
{
	return n ? (size_t)(rng() % n) : 0;
}

static void rng_fill(unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)rng();
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Mostly small pieces, sometimes empty, sometimes most of what is left. */
static size_t piece_len(size_t left)
{
	switch (rng_below(4)) {
	case 0:
		return min_size(rng_below(17), left);
	case 1:
		return rng_below(left + 1);
	default:
		return min_size(rng_below(left / 4 + 2), left);
	}
}

static uint32_t stream_posix(update_fn update, const unsigned char *p, size_t len)
{
	uint32_t crc = 0;
	size_t off = 0;

	while (off < len) {
		size_t n = piece_len(len - off);

		crc = update(crc, p + off, n);
		off += n;
	}
	return cksum_posix_final(crc, len);
}

/* Pieces alternate at random between the two versions: both carry the same raw CRC. */
static uint32_t stream_mixed(const unsigned char *p, size_t len)
{
	uint32_t crc = 0;
	size_t off = 0;

	while (off < len) {
		size_t n = piece_len(len - off);

		crc = rng_below(2) ? cksum_posix_update_table(crc, p + off, n)
		                   : cksum_posix_update_clmul(crc, p + off, n);
		off += n;
	}
	return cksum_posix_final(crc, len);
}

static int stream_state(enum cksum_algo algo, const unsigned char *p, size_t len, uint32_t *out)
{
	struct cksum_state s;
	size_t off = 0;
	int r = cksum_init(&s, algo);

	if (r < 0)
		return r;
	while (off < len) {
		size_t n = piece_len(len - off);

		cksum_update(&s, p + off, n);
		off += n;
	}
	*out = cksum_final(&s);
	cksum_free(&s);
	return 0;
}

static uint32_t oneshot_posix(update_fn update, const void *p, size_t len)
{
	return cksum_posix_final(update(0, p, len), len);
}

/* Bit at a time, straight from the definition, to check the tables against. */
static uint32_t bitwise_posix(const unsigned char *p, size_t len)
{
	uint32_t crc = 0;
	uint64_t n = len;

	for (;;) {
		unsigned char byte;

		if (len > 0) {
			byte = *p++;
			len--;
		} else if (n > 0) {
			byte = (unsigned char)n;
			n >>= 8;
		} else {
			break;
		}
		crc ^= (uint32_t)byte << 24;
		for (int i = 0; i < 8; i++)
			crc = (crc << 1) ^ ((crc & 0x80000000u) ? 0x04C11DB7u : 0);
	}
	return ~crc;
}

static void skip(const char *why, const char *what)
{
	printf("ok %d # SKIP %s: %s\n", ++tap_count, why, what);
}

struct tmpfile {
	char *path;
	char *cmd;
	int fd;
};

static int tmpfile_open(struct tmpfile *t)
{
	const char *dir = getenv("TMPDIR");
	size_t n;

	/* The path goes into a shell command inside single quotes. */
	if (!dir || !*dir || strchr(dir, '\''))
		dir = "/tmp";
	n = strlen(dir) + sizeof("/test-cksum.XXXXXX");
	t->path = malloc(n);
	t->cmd = malloc(n + sizeof(CKSUM_PROGRAM " < ''"));
	if (!t->path || !t->cmd)
		return -ENOMEM;
	snprintf(t->path, n, "%s/test-cksum.XXXXXX", dir);
	t->fd = mkstemp(t->path);
	if (t->fd < 0)
		return -errno;
	snprintf(t->cmd, n + sizeof(CKSUM_PROGRAM " < ''"), CKSUM_PROGRAM " < '%s'", t->path);
	return 0;
}

static void tmpfile_close(struct tmpfile *t)
{
	if (t->path && t->fd >= 0) {
		(void)unlink(t->path);
		(void)close(t->fd);
	}
	free(t->path);
	free(t->cmd);
}

/* The first number cksum(1) prints for these bytes. */
static int reference_cksum(struct tmpfile *t, const unsigned char *p, size_t len, uint32_t *out)
{
	unsigned long crc;
	unsigned long long size;
	size_t off = 0;
	FILE *f;
	int n, status;

	if (ftruncate(t->fd, 0) < 0)
		return -errno;
	while (off < len) {
		ssize_t w = pwrite(t->fd, p + off, len - off, (off_t)off);

		if (w < 0)
			return -errno;
		off += (size_t)w;
	}
	f = popen(t->cmd, "r");
	if (!f)
		return -errno;
	n = fscanf(f, "%lu %llu", &crc, &size);
	status = pclose(f);
	if (n != 2 || status != 0 || size != len || crc > UINT32_MAX)
		return -EIO;
	*out = (uint32_t)crc;
	return 0;
}

static void test_vectors(const struct impl *impls, size_t nimpls, unsigned char *zeros)
{
	static const struct {
		const char *what;
		const char *data;
		size_t len;
		uint32_t want;
	} v[] = {
	    {"the empty input", "", 0, 4294967295u},
	    {"\"a\"", "a", 1, 1220704766u},
	    {"\"123456789\"", "123456789", 9, 930766865u},
	    {"1 MiB of zero bytes", NULL, MIB, 3018728591u},
	};

	for (size_t i = 0; i < nimpls; i++)
		for (size_t j = 0; j < sizeof(v) / sizeof(v[0]); j++) {
			const void *data = v[j].data ? (const void *)v[j].data : zeros;

			if (!impls[i].usable) {
				skip("no PCLMUL", "efserver-protocol(7) cksum vector");
				continue;
			}
			is_int(oneshot_posix(impls[i].update, data, v[j].len), v[j].want,
			       "%s cksum of %s is %lu as in efserver-protocol(7)", impls[i].name, v[j].what,
			       (unsigned long)v[j].want);
		}

	for (size_t j = 0; j < sizeof(v) / sizeof(v[0]); j++) {
		const void *data = v[j].data ? (const void *)v[j].data : zeros;
		struct cksum_state s;
		int r = cksum_init(&s, CKSUM_POSIX);

		if (r == 0) {
			cksum_update(&s, data, v[j].len);
			is_int(cksum_final(&s), v[j].want, "cksum_state with \"cksum\" gives %lu for %s",
			       (unsigned long)v[j].want, v[j].what);
			cksum_free(&s);
		} else {
			ok(0, "cksum_init(\"cksum\") succeeds (got %d)", r);
		}
	}

	is_int(crc32(0, (const Bytef *)"123456789", 9), 3421780262u, "zlib, the crc32 reference, gives the vector");
	for (enum cksum_algo a = CKSUM_CRC32; a <= CKSUM_CRC32_CIPHERTEXT; a++) {
		struct cksum_state s;
		int r = cksum_init(&s, a);

		if (r == 0) {
			cksum_update(&s, "123456789", 9);
			is_int(cksum_final(&s), 3421780262u,
			       "%s of \"123456789\" is 3421780262 as in efserver-protocol(7)", cksum_algo_name(a));
			is_int(cksum_final(&s), 3421780262u, "%s: a second cksum_final gives the same value",
			       cksum_algo_name(a));
			cksum_free(&s);
			cksum_free(&s);
			ok(s.md == NULL, "%s: cksum_free after cksum_final leaves nothing open, and twice is harmless",
			   cksum_algo_name(a));
		} else {
			ok(0, "cksum_init(\"%s\") succeeds (got %d)", cksum_algo_name(a), r);
		}
	}
}

/* Lengths where the CRC loops or cksum(1)'s length bytes change shape, then random ones. */
static size_t input_lengths(size_t *lens, size_t max)
{
	static const size_t edges[] = {511,   512,   513,   1023,  1024,    4095, 4096,    4097,      65534,
	                               65535, 65536, 65537, 65600, MIB - 1, MIB,  MIB + 1, MIB + 4095};
	size_t n = 0;

	for (size_t len = 0; len <= 300 && n < max; len++)
		lens[n++] = len;
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]) && n < max; i++)
		lens[n++] = edges[i];
	for (size_t i = 0; i < RANDOM_INPUTS && n < max; i++)
		lens[n++] = rng_below(2) ? rng_below(70000) : rng_below(INPUT_MAX_LEN + 1);
	return n;
}

struct tally {
	const char *what;
	int usable;
	unsigned bad;
};

static void tally_check(struct tally *t, uint32_t got, uint32_t want, size_t len)
{
	if (!t->usable || got == want)
		return;
	if (t->bad++ < MAX_REPORTED)
		printf("# %s: length %zu: got %lu, cksum(1) says %lu\n", t->what, len, (unsigned long)got,
		       (unsigned long)want);
}

static void test_against_cksum_program(const struct impl *impls, unsigned char *buf)
{
	static size_t lens[400];
	struct tally t[] = {
	    {"table, one shot", impls[0].usable, 0},
	    {"table, random pieces", impls[0].usable, 0},
	    {"PCLMUL, one shot", impls[1].usable, 0},
	    {"PCLMUL, random pieces", impls[1].usable, 0},
	    {"table and PCLMUL alternating in random pieces", impls[1].usable, 0},
	    {"cksum_state \"cksum\", random pieces", 1, 0},
	};
	size_t ntally = sizeof(t) / sizeof(t[0]);
	size_t n = input_lengths(lens, sizeof(lens) / sizeof(lens[0]));
	struct tmpfile tf = {NULL, NULL, -1};
	unsigned failed_runs = 0;
	int r;

	if (access(CKSUM_PROGRAM, X_OK) < 0) {
		for (size_t i = 0; i < ntally; i++)
			skip("no " CKSUM_PROGRAM, t[i].what);
		return;
	}
	r = tmpfile_open(&tf);
	if (!ok(r == 0, "a temporary file for cksum(1) can be made (%s)", r ? strerror(-r) : "ok")) {
		tmpfile_close(&tf);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		/* Start at a random offset so PCLMUL sees every alignment of the head. */
		unsigned char *p = buf + rng_below(16);
		size_t len = lens[i];
		uint32_t want = 0, got;

		rng_fill(p, len);
		r = reference_cksum(&tf, p, len, &want);
		if (r < 0) {
			failed_runs++;
			continue;
		}
		tally_check(&t[0], oneshot_posix(cksum_posix_update_table, p, len), want, len);
		tally_check(&t[1], stream_posix(cksum_posix_update_table, p, len), want, len);
		if (impls[1].usable) {
			tally_check(&t[2], oneshot_posix(cksum_posix_update_clmul, p, len), want, len);
			tally_check(&t[3], stream_posix(cksum_posix_update_clmul, p, len), want, len);
			tally_check(&t[4], stream_mixed(p, len), want, len);
		}
		r = stream_state(CKSUM_POSIX, p, len, &got);
		tally_check(&t[5], r == 0 ? got : ~want, want, len);
	}
	tmpfile_close(&tf);
	ok(failed_runs == 0, "%s ran and reported the right size for all %zu inputs", CKSUM_PROGRAM, n);
	for (size_t i = 0; i < ntally; i++) {
		if (!t[i].usable)
			skip("no PCLMUL", t[i].what);
		else
			ok(t[i].bad == 0, "%s agrees with %s on %zu inputs of 0 to %d bytes", t[i].what, CKSUM_PROGRAM,
			   n - failed_runs, INPUT_MAX_LEN);
	}
}

static void test_table_vs_bitwise(unsigned char *buf)
{
	static const uint64_t lengths[] = {0,        1,        255,         256,         65535,           65536,
	                                   16777215, 16777216, 4294967295u, 4294967296u, UINT64_MAX >> 8, UINT64_MAX};
	unsigned bad = 0;

	for (size_t len = 0; len <= 300; len++) {
		rng_fill(buf, len);
		if (oneshot_posix(cksum_posix_update_table, buf, len) != bitwise_posix(buf, len))
			bad++;
	}
	ok(bad == 0, "the table version equals a bit-at-a-time CRC for every length 0 to 300");

	/* Lengths too big to checksum for real: feed a length only, as after that many bytes. */
	bad = 0;
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		uint32_t crc = (uint32_t)rng(), want = crc;
		uint64_t n = lengths[i];

		for (; n > 0; n >>= 8) {
			want ^= (uint32_t)(n & 0xff) << 24;
			for (int b = 0; b < 8; b++)
				want = (want << 1) ^ ((want & 0x80000000u) ? 0x04C11DB7u : 0);
		}
		if (cksum_posix_final(crc, lengths[i]) != ~want)
			bad++;
	}
	ok(bad == 0, "cksum_posix_final feeds lengths up to 2^64-1 least significant byte first, no zero bytes after");
}

static void test_clmul_vs_table(const struct impl *impls, unsigned char *buf)
{
	unsigned bad = 0;

	if (!impls[1].usable) {
		skip("no PCLMUL", "PCLMUL equals table at every length and alignment");
		return;
	}
	rng_fill(buf, 1024 + 16);
	for (size_t off = 0; off < 16; off++)
		for (size_t len = 0; len <= 1024; len++) {
			uint32_t crc = (uint32_t)rng();

			if (cksum_posix_update_clmul(crc, buf + off, len) !=
			    cksum_posix_update_table(crc, buf + off, len))
				bad++;
		}
	ok(bad == 0, "PCLMUL raw CRC equals the table's for lengths 0 to 1024 at all 16 alignments, from random CRCs");
}

/* len random bytes checksummed by algorithm a in random pieces, against zlib: counts an error or a difference. */
static void against_zlib(enum cksum_algo a, unsigned char *buf, size_t len, unsigned *errors, unsigned *bad)
{
	uint32_t got;

	rng_fill(buf, len);
	if (stream_state(a, buf, len, &got) < 0)
		(*errors)++;
	else if (got != crc32_z(0, buf, len))
		(*bad)++;
}

static void test_crc32_against_zlib(unsigned char *buf)
{
	for (enum cksum_algo a = CKSUM_CRC32; a <= CKSUM_CRC32_CIPHERTEXT; a++) {
		unsigned bad = 0, errors = 0, n = 0;

		for (size_t len = 0; len <= 300; len += 1 + rng_below(13), n++)
			against_zlib(a, buf, len, &errors, &bad);
		for (int i = 0; i < RANDOM_INPUTS; i++, n++)
			against_zlib(a, buf, rng_below(INPUT_MAX_LEN + 1), &errors, &bad);
		ok(errors == 0 && bad == 0,
		   "%s streamed in random pieces equals zlib's crc32() on %u inputs of 0 to %d bytes",
		   cksum_algo_name(a), n, INPUT_MAX_LEN);
	}
}

static void test_names(void)
{
	static const char *const unknown[] = {"",       "CKSUM", "Crc32",          "crc", "crc32-", "crc32 ",
	                                      " cksum", "md5",   "crc32-plaintext"};
	static const struct {
		const char *name;
		enum cksum_algo algo;
	} known[] = {
	    {"cksum", CKSUM_POSIX},
	    {"crc32", CKSUM_CRC32},
	    {"crc32-ciphertext", CKSUM_CRC32_CIPHERTEXT},
	};
	unsigned refused = 0, untouched = 0;
	struct cksum_state s;

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		enum cksum_algo a = (enum cksum_algo)99;
		int r = cksum_algo_from_name(known[i].name, &a);

		ok(r == 0 && a == known[i].algo, "\"%s\" parses to its algorithm", known[i].name);
		ok(cksum_algo_name(known[i].algo) && strcmp(cksum_algo_name(known[i].algo), known[i].name) == 0,
		   "the algorithm of \"%s\" is named \"%s\" back", known[i].name, known[i].name);
	}
	ok(cksum_over_ciphertext(CKSUM_CRC32_CIPHERTEXT) && !cksum_over_ciphertext(CKSUM_CRC32) &&
	       !cksum_over_ciphertext(CKSUM_POSIX),
	   "only crc32-ciphertext is computed over the ciphertext");

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		enum cksum_algo a = (enum cksum_algo)99;

		if (cksum_algo_from_name(unknown[i], &a) == -EINVAL)
			refused++;
		if (a == (enum cksum_algo)99)
			untouched++;
	}
	ok(refused == sizeof(unknown) / sizeof(unknown[0]),
	   "unknown, miscased and padded names are refused with -EINVAL");
	ok(untouched == sizeof(unknown) / sizeof(unknown[0]), "a refused name leaves the output alone");
	is_int(cksum_algo_from_name(NULL, &(enum cksum_algo){CKSUM_POSIX}), -EINVAL, "a NULL name is refused");
	ok(cksum_algo_name((enum cksum_algo)3) == NULL && cksum_algo_name((enum cksum_algo) - 1) == NULL,
	   "an algorithm out of range has no name");
	is_int(cksum_init(&s, (enum cksum_algo)3), -EINVAL, "cksum_init refuses an algorithm out of range");

	memset(&s, 0, sizeof(s));
	cksum_free(&s);
	ok(1, "cksum_free on a zeroed state returns");
}

static int parse_seed(uint64_t *seed)
{
	const char *env = getenv("EF_TEST_SEED");
	char *end;
	unsigned long long v;

	if (!env || !*env) {
		*seed = DEFAULT_SEED;
		return 0;
	}
	errno = 0;
	v = strtoull(env, &end, 0);
	if (errno || *end || env[0] == '-')
		return -EINVAL;
	*seed = v;
	return 0;
}

int main(void)
{
	unsigned char *buf, *zeros;
	uint64_t seed;
	struct impl impls[] = {
	    {"table", cksum_posix_update_table, 1},
	    {"PCLMUL", cksum_posix_update_clmul, cksum_have_clmul()},
	    {"default", cksum_posix_update, 1},
	};

	if (parse_seed(&seed) < 0) {
		printf("Bail out! EF_TEST_SEED must be an unsigned number\n");
		return 1;
	}
	printf("# seed %llu (set EF_TEST_SEED to replay another)\n", (unsigned long long)seed);
	printf("# PCLMUL %s\n", impls[1].usable ? "available" : "not available on this CPU");
	rng_state = seed;

	if (!gcry_check_version(NULL)) {
		printf("Bail out! libgcrypt does not initialise\n");
		return 1;
	}
	(void)gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);

	buf = malloc(INPUT_MAX_LEN + 16);
	zeros = calloc(1, MIB);
	if (!buf || !zeros) {
		printf("Bail out! out of memory\n");
		return 1;
	}

	test_vectors(impls, sizeof(impls) / sizeof(impls[0]), zeros);
	test_table_vs_bitwise(buf);
	test_clmul_vs_table(impls, buf);
	test_against_cksum_program(impls, buf);
	test_crc32_against_zlib(buf);
	test_names();

	free(buf);
	free(zeros);
	return tap_done();
}
#else
int main(void)
{
	printf("1..0 # SKIP zlib, the crc32 reference, is not installed (Debian package zlib1g-dev)\n");
	return 0;
}
#endif
