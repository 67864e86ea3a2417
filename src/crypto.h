/* libgcrypt: initialisation, randomness, RSA-OAEP and AES-CBC (efserver-protocol(7), Cryptography). */
#ifndef EF_CRYPTO_H
#define EF_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gcrypt.h>

#include "der.h"

#define CRYPTO_AES_MAX_KEY 32

/*
 * A libgcrypt error as the negative errno every function here returns, with
 * libgcrypt's own words noted for the caller's log line (failure.h): the
 * one conversion of every module on libgcrypt.
 */
int crypto_error(gcry_error_t err);

/* Initialise libgcrypt once per process: the kernel's randomness, version check, finished. */
int crypto_init(void);

/* Strong random bytes, from getrandom(2) through libgcrypt. */
void crypto_random(void *buf, size_t len);
/* A random client id with RFC 4122 version-4 bits. */
void crypto_new_client_id(uint8_t id[16]);

/*
 * RSAES-OAEP, SHA-1 and MGF1-SHA-1, empty label. out receives exactly the
 * modulus length in bytes (*out_len). 0 or a negative errno.
 */
int crypto_oaep_encrypt(const struct der_rsa_key *key, const uint8_t *msg, size_t msg_len, uint8_t *out,
                        size_t out_size, size_t *out_len);

/* AES-CBC with an all-zero IV, streamed in whole blocks. */
struct crypto_cbc;
int crypto_cbc_new(struct crypto_cbc **out, const uint8_t *key, size_t key_len, bool encrypt);
/* In place; len must be a multiple of 16. */
int crypto_cbc_run(struct crypto_cbc *c, uint8_t *buf, size_t len);
void crypto_cbc_free(struct crypto_cbc *c);

/*
 * PKCS#7 padding of the last decrypted block: 0 and *pad (1..16), or
 * -EBADMSG when the last byte is 0 or > 16 or the padding bytes differ.
 */
int crypto_pkcs7_check(const uint8_t last_block[16], size_t *pad);

/* Overwrite memory holding a secret in a way the compiler keeps. */
void crypto_wipe(void *p, size_t len);

#endif
