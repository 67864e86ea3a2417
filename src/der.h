/*
 * The small DER reader (and writer) for RSA public keys: X.509
 * SubjectPublicKeyInfo and PKCS#1 RSAPublicKey. Pure: no I/O, no libgcrypt.
 */
#ifndef EF_DER_H
#define EF_DER_H

#include <stddef.h>
#include <stdint.h>

#define DER_RSA_MIN_BITS 1024
#define DER_RSA_MAX_BITS 4096
/* A 4096-bit key with a 4096-bit exponent stays under this. */
#define DER_RSA_SPKI_MAX 1100

/* Why a key was refused. */
enum der_error {
	DER_OK = 0,
	DER_TRUNCATED,    /* a length runs past the end of the field */
	DER_MALFORMED,    /* not the expected structure or not strict DER */
	DER_WRONG_OID,    /* an algorithm other than rsaEncryption */
	DER_TRAILING,     /* bytes after the key that are not all zero */
	DER_MODULUS_SIZE, /* modulus outside 1024..4096 bits */
	DER_BAD_EXPONENT, /* exponent even or below 3 (or not smaller than the modulus) */
};

struct der_rsa_key {
	const uint8_t *n; /* big-endian, no leading zero; points into the input */
	size_t n_len;
	const uint8_t *e;
	size_t e_len;
	unsigned bits;  /* modulus size in bits */
	size_t der_len; /* bytes of the DER element, without the trailing zeros */
};

/*
 * Read an RSA public key, SPKI or PKCS#1, that fills buf[0..len) followed by
 * nothing but zero bytes (PROTOCOL.md section 2). *key is written only on success.
 */
enum der_error der_read_rsa_public(const uint8_t *buf, size_t len, struct der_rsa_key *key);
const char *der_error_str(enum der_error e);

/*
 * Write n and e (big-endian, leading zeros allowed) as SubjectPublicKeyInfo.
 * Returns the length written, or -ENOSPC if out_size is too small.
 */
long der_write_rsa_spki(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len, uint8_t *out, size_t out_size);

#endif
