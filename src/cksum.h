/*
 * The checksums of efserver-protocol(7), Checksums. No I/O.
 * cksum: POSIX cksum(1), by hand (no library has it).
 * crc32: zlib's crc32() (ISO-HDLC), computed by libgcrypt (GCRY_MD_CRC32).
 */
#ifndef EF_CKSUM_H
#define EF_CKSUM_H

#include <stddef.h>
#include <stdint.h>

#include <gcrypt.h>

enum cksum_algo {
	CKSUM_POSIX,            /* "cksum", over the plaintext */
	CKSUM_CRC32,            /* "crc32", over the plaintext */
	CKSUM_CRC32_CIPHERTEXT, /* "crc32-ciphertext", over the encrypted content */
};

/* 0 or -EINVAL for an unknown name. */
int cksum_algo_from_name(const char *name, enum cksum_algo *out);
const char *cksum_algo_name(enum cksum_algo algo);

/* Raw MSB-first CRC over poly 0x04C11DB7 (no length, no inversion); start with 0. */
uint32_t cksum_posix_update(uint32_t crc, const void *data, size_t len);
/* Feed the length as cksum(1) does and invert. */
uint32_t cksum_posix_final(uint32_t crc, uint64_t length);

/* One running checksum of the configured algorithm. */
struct cksum_state {
	enum cksum_algo algo;
	uint32_t crc;
	uint64_t length;
	gcry_md_hd_t md; /* crc32 variants only */
};

/* 0, or a negative errno when libgcrypt cannot open the digest. */
int cksum_init(struct cksum_state *s, enum cksum_algo algo);
void cksum_update(struct cksum_state *s, const void *data, size_t len);
/* The checksum of everything fed in; the state can be updated no further. */
uint32_t cksum_final(struct cksum_state *s);
/* Release the state; safe after cksum_final and on a zeroed state. */
void cksum_free(struct cksum_state *s);

/* Whether the algorithm is computed over the ciphertext rather than the plaintext. */
static inline int cksum_over_ciphertext(enum cksum_algo algo)
{
	return algo == CKSUM_CRC32_CIPHERTEXT;
}

#endif
