/*
 * The client's RSA key: Base64 text, PKCS#8 and PKCS#1 DER, generation and
 * RSA-OAEP decryption of the AES key (efserver-protocol(7), Cryptography), on
 * libgcrypt. Private key material lives in libgcrypt secure memory and is wiped
 * on free.
 */
#ifndef EF_KEYFILE_H
#define EF_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "der.h"

#define KEYFILE_RSA_BITS     1024 /* its SubjectPublicKeyInfo is the protocol's 160 bytes */
#define KEYFILE_RSA_MIN_BITS DER_RSA_MIN_BITS
#define KEYFILE_RSA_MAX_BITS DER_RSA_MAX_BITS
#define KEYFILE_RSA_E        17
/* A PKCS#8 RSA-4096 key is about 2.4 KB; the bound also fits libgcrypt's small secure memory. */
#define KEYFILE_DER_MAX    4096
#define KEYFILE_ERROR_SIZE 96

/* Bytes of Base64 for len bytes of data, padding included, without the NUL. */
size_t keyfile_b64_length(size_t len);
/* Base64 with padding, no line breaks, NUL-terminated. 0 or -ENOSPC. */
int keyfile_b64_encode(const uint8_t *in, size_t len, char *out, size_t out_size);

/*
 * A strict Base64 decoder fed piece by piece (a key wrapped over lines):
 * white space is skipped, anything else outside the alphabet, misplaced
 * padding, data after the padding, a truncated last group or non-zero
 * spare bits are errors, described in error[].
 */
struct keyfile_b64 {
	uint8_t *out;
	size_t out_size;
	size_t out_len;
	uint32_t bits;
	unsigned nchars; /* characters in the current group of four */
	unsigned npad;   /* '=' seen; nothing but white space and '=' may follow */
	char error[KEYFILE_ERROR_SIZE];
};

void keyfile_b64_start(struct keyfile_b64 *d, uint8_t *out, size_t out_size);
/* 0, -EINVAL (bad input) or -ENOSPC (more data than out_size); see d->error. */
int keyfile_b64_feed(struct keyfile_b64 *d, const char *s, size_t len);
/* 0 and *out_len, or -EINVAL when the input ends in the middle of a group. */
int keyfile_b64_finish(struct keyfile_b64 *d, size_t *out_len);

struct keyfile_rsa;

/* A fresh key with public exponent 17. bits: KEYFILE_RSA_MIN_BITS..MAX, a multiple of 8. */
int keyfile_generate(struct keyfile_rsa **out, unsigned bits);

/*
 * Load a private key from DER: PKCS#8 PrivateKeyInfo or PKCS#1
 * RSAPrivateKey, as Crypto++ and PyCryptodome write them. The components
 * are checked against each other. On -EINVAL *why says what is wrong.
 */
int keyfile_from_der(struct keyfile_rsa **out, const uint8_t *der, size_t len, const char **why);

/*
 * The key as PKCS#8 PrivateKeyInfo in DER, then in Base64. The result is in
 * secure memory; release it with keyfile_secret_free(p, length).
 */
int keyfile_to_pkcs8(const struct keyfile_rsa *k, uint8_t **der, size_t *der_len);
int keyfile_to_base64(const struct keyfile_rsa *k, char **b64, size_t *b64_len);

/* The public key as SubjectPublicKeyInfo DER (160 bytes for RSA-1024, e = 17). */
int keyfile_public_spki(const struct keyfile_rsa *k, uint8_t *out, size_t out_size, size_t *out_len);

/* Modulus size in bits and in bytes (the size of an OAEP ciphertext). */
unsigned keyfile_bits(const struct keyfile_rsa *k);
size_t keyfile_modulus_bytes(const struct keyfile_rsa *k);

/*
 * RSAES-OAEP decryption, SHA-1 and MGF1-SHA-1, empty label. in_len must be
 * the modulus size. -EBADMSG when the ciphertext does not decrypt.
 */
int keyfile_oaep_decrypt(const struct keyfile_rsa *k, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_size,
                         size_t *out_len);

void keyfile_free(struct keyfile_rsa *k);
/* Wipe and free a buffer from gcry_malloc_secure (NULL is fine). */
void keyfile_secret_free(void *p, size_t len);

#endif
