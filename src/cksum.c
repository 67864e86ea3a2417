/*
 * The checksums of efserver-protocol(7), Checksums.
 * cksum: slicing-by-8 tables everywhere, PCLMULQDQ folding on x86-64 CPUs that
 * have it (Intel, "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
 * Instruction", non-reflected variant). crc32: libgcrypt.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "cksum.h"
#include "cksum-impl.h"
#include "crypto.h"
#include "failure.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define CKSUM_CLMUL 1
#include <cpuid.h>
#include <smmintrin.h>
#include <wmmintrin.h>
#define CKSUM_TARGET_CLMUL __attribute__((target("pclmul,sse4.1")))
#else
#define CKSUM_CLMUL 0
#endif

#define CKSUM_POLY 0x04C11DB7u

static const char *const cksum_names[] = {
    [CKSUM_POSIX] = "cksum",
    [CKSUM_CRC32] = "crc32",
    [CKSUM_CRC32_CIPHERTEXT] = "crc32-ciphertext",
};
#define CKSUM_NALGOS (sizeof(cksum_names) / sizeof(cksum_names[0]))

/* cksum_table[k][b]: the CRC of byte b followed by k zero bytes. */
static uint32_t cksum_table[8][256];
static int cksum_use_clmul;
static pthread_once_t cksum_once = PTHREAD_ONCE_INIT;

static void cksum_setup(void)
{
	for (unsigned b = 0; b < 256; b++) {
		uint32_t c = (uint32_t)b << 24;

		for (int i = 0; i < 8; i++)
			c = (c << 1) ^ ((c & 0x80000000u) ? CKSUM_POLY : 0);
		cksum_table[0][b] = c;
	}
	for (int k = 1; k < 8; k++)
		for (unsigned b = 0; b < 256; b++) {
			uint32_t c = cksum_table[k - 1][b];

			cksum_table[k][b] = (c << 8) ^ cksum_table[0][c >> 24];
		}
#if CKSUM_CLMUL
	{
		/*
		 * CPUID leaf 1 here, at the first checksum, rather than through
		 * __builtin_cpu_supports(), whose probe of every feature runs in
		 * each process before main(): a dozen CPUID instructions, each
		 * of which traps to the hypervisor in a virtual machine.
		 */
		unsigned a, b, c, d;

		cksum_use_clmul = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_PCLMUL) && (c & bit_SSE4_1);
	}
#endif
}

/* The tables and the CPU probe are set up once, whichever thread checksums first. */
static void cksum_ready(void)
{
	(void)pthread_once(&cksum_once, cksum_setup);
}

static uint32_t cksum_slice8(uint32_t crc, const unsigned char *p, size_t len)
{
	for (; len >= 8; p += 8, len -= 8) {
		crc ^= (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		crc = cksum_table[7][crc >> 24] ^ cksum_table[6][(crc >> 16) & 0xff] ^
		      cksum_table[5][(crc >> 8) & 0xff] ^ cksum_table[4][crc & 0xff] ^ cksum_table[3][p[4]] ^
		      cksum_table[2][p[5]] ^ cksum_table[1][p[6]] ^ cksum_table[0][p[7]];
	}
	for (; len > 0; p++, len--)
		crc = (crc << 8) ^ cksum_table[0][(crc >> 24) ^ *p];
	return crc;
}

#if CKSUM_CLMUL
/* x * (x^(d+64) mod P : x^d mod P) is congruent to x shifted d bits up, in under 96 bits. */
CKSUM_TARGET_CLMUL static inline __m128i cksum_fold(__m128i x, __m128i k)
{
	return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x11), _mm_clmulepi64_si128(x, k, 0x00));
}

/* n is a multiple of 16 and at least 64, p is 16-byte aligned. */
CKSUM_TARGET_CLMUL static uint32_t cksum_clmul_blocks(uint32_t crc, const unsigned char *p, size_t n)
{
	/* Byte-swapped, a block's first bit is bit 127: the CRC is MSB first. */
	const __m128i bswap = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	const __m128i k512 = _mm_set_epi64x(0x8833794c, 0xe6228b11);   /* x^576, x^512 mod P */
	const __m128i k128 = _mm_set_epi64x(0xc5b9cd4c, 0xe8a45605);   /* x^192, x^128 mod P */
	const __m128i k96 = _mm_set_epi64x(0x490d678d, 0xf200aa66);    /* x^64, x^96 mod P */
	const __m128i kbar = _mm_set_epi64x(0x104c11db7, 0x104d101df); /* P, floor(x^64 / P) */
	__m128i x0, x1, x2, x3, t;

	x0 = _mm_shuffle_epi8(_mm_load_si128((const __m128i *)p), bswap);
	x1 = _mm_shuffle_epi8(_mm_load_si128((const __m128i *)(p + 16)), bswap);
	x2 = _mm_shuffle_epi8(_mm_load_si128((const __m128i *)(p + 32)), bswap);
	x3 = _mm_shuffle_epi8(_mm_load_si128((const __m128i *)(p + 48)), bswap);
	/* A running CRC is the same as that value XORed into the next 32 message bits. */
	x0 = _mm_xor_si128(x0, _mm_set_epi32((int)crc, 0, 0, 0));
	for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
		x0 = _mm_xor_si128(cksum_fold(x0, k512), _mm_shuffle_epi8(_mm_load_si128((const __m128i *)p), bswap));
		x1 = _mm_xor_si128(cksum_fold(x1, k512),
		                   _mm_shuffle_epi8(_mm_load_si128((const __m128i *)(p + 16)), bswap));
		x2 = _mm_xor_si128(cksum_fold(x2, k512),
		                   _mm_shuffle_epi8(_mm_load_si128((const __m128i *)(p + 32)), bswap));
		x3 = _mm_xor_si128(cksum_fold(x3, k512),
		                   _mm_shuffle_epi8(_mm_load_si128((const __m128i *)(p + 48)), bswap));
	}
	x0 = _mm_xor_si128(cksum_fold(x0, k128), x1);
	x0 = _mm_xor_si128(cksum_fold(x0, k128), x2);
	x0 = _mm_xor_si128(cksum_fold(x0, k128), x3);
	for (; n >= 16; p += 16, n -= 16)
		x0 = _mm_xor_si128(cksum_fold(x0, k128), _mm_shuffle_epi8(_mm_load_si128((const __m128i *)p), bswap));

	/* The raw CRC is x0 * x^32 mod P: bring 128 bits down to 96, then 64, then Barrett. */
	t = _mm_xor_si128(_mm_clmulepi64_si128(x0, k96, 0x01), _mm_slli_si128(_mm_move_epi64(x0), 4));
	t = _mm_xor_si128(_mm_clmulepi64_si128(t, k96, 0x11), _mm_move_epi64(t));
	x1 = _mm_srli_epi64(_mm_clmulepi64_si128(_mm_srli_epi64(t, 32), kbar, 0x00), 32);
	x1 = _mm_clmulepi64_si128(x1, kbar, 0x10);
	return (uint32_t)_mm_cvtsi128_si32(_mm_xor_si128(t, x1));
}

/* Aligned 16-byte blocks by folding, the unaligned head and the tail by table. */
static uint32_t cksum_clmul(uint32_t crc, const unsigned char *p, size_t len)
{
	size_t head = (size_t)(-(uintptr_t)p & 15), body;

	if (len < head + 64)
		return cksum_slice8(crc, p, len);
	crc = cksum_slice8(crc, p, head);
	p += head;
	len -= head;
	body = len & ~(size_t)15;
	crc = cksum_clmul_blocks(crc, p, body);
	return cksum_slice8(crc, p + body, len - body);
}
#endif

int cksum_have_clmul(void)
{
	cksum_ready();
	return cksum_use_clmul;
}

uint32_t cksum_posix_update_table(uint32_t crc, const void *data, size_t len)
{
	cksum_ready();
	return cksum_slice8(crc, data, len);
}

uint32_t cksum_posix_update_clmul(uint32_t crc, const void *data, size_t len)
{
	cksum_ready();
#if CKSUM_CLMUL
	if (cksum_use_clmul)
		return cksum_clmul(crc, data, len);
#endif
	return cksum_slice8(crc, data, len);
}

uint32_t cksum_posix_update(uint32_t crc, const void *data, size_t len)
{
	return cksum_posix_update_clmul(crc, data, len);
}

/* cksum(1) appends the length least significant byte first, stopping at its last non-zero byte. */
uint32_t cksum_posix_final(uint32_t crc, uint64_t length)
{
	cksum_ready();
	for (; length > 0; length >>= 8)
		crc = (crc << 8) ^ cksum_table[0][(crc >> 24) ^ (length & 0xff)];
	return ~crc;
}

int cksum_algo_from_name(const char *name, enum cksum_algo *out)
{
	if (!name)
		return -EINVAL;
	for (size_t i = 0; i < CKSUM_NALGOS; i++)
		if (strcmp(name, cksum_names[i]) == 0) {
			*out = (enum cksum_algo)i;
			return 0;
		}
	return -EINVAL;
}

const char *cksum_algo_name(enum cksum_algo algo)
{
	if ((size_t)algo >= CKSUM_NALGOS)
		return NULL;
	return cksum_names[algo];
}

int cksum_init(struct cksum_state *s, enum cksum_algo algo)
{
	gcry_md_hd_t md = NULL;

	failure_clear();
	if (!cksum_algo_name(algo))
		return -EINVAL;
	if (algo != CKSUM_POSIX) {
		gcry_error_t err = gcry_md_open(&md, GCRY_MD_CRC32, 0);

		if (err)
			return crypto_error(err);
	}
	*s = (struct cksum_state){.algo = algo, .md = md};
	return 0;
}

void cksum_update(struct cksum_state *s, const void *data, size_t len)
{
	if (len == 0)
		return;
	if (s->algo == CKSUM_POSIX)
		s->crc = cksum_posix_update(s->crc, data, len);
	else if (s->md)
		gcry_md_write(s->md, data, len);
	s->length += len;
}

/* The crc32 digest is closed here, its value kept, so a second call returns the same. */
uint32_t cksum_final(struct cksum_state *s)
{
	if (s->algo == CKSUM_POSIX)
		return cksum_posix_final(s->crc, s->length);
	if (s->md) {
		/* libgcrypt hands the CRC out big-endian. */
		const unsigned char *d = gcry_md_read(s->md, GCRY_MD_CRC32);

		s->crc = d ? (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3] : 0;
		gcry_md_close(s->md);
		s->md = NULL;
	}
	return s->crc;
}

void cksum_free(struct cksum_state *s)
{
	if (s->md)
		gcry_md_close(s->md);
	s->md = NULL;
}
