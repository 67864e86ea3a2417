/*
 * The small DER reader (and writer) for RSA keys: X.509
 * SubjectPublicKeyInfo and PKCS#1 RSAPublicKey here, and the elements the
 * client's private keys are read from (keyfile.c). Strict DER only: definite,
 * minimal lengths and minimal INTEGERs. Pure: no I/O, no libgcrypt.
 */
#ifndef EF_DER_H
#define EF_DER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DER_RSA_MIN_BITS 1024
#define DER_RSA_MAX_BITS 4096
/* The public exponent is below 2^64 (efserver-protocol(7), Cryptography). */
#define DER_RSA_EXPONENT_MAX_BYTES 8
/* The room kept for a canonical SPKI: a 4096-bit key takes at most 556 bytes of it. */
#define DER_RSA_SPKI_MAX 1100

/* Why a key was refused. */
enum der_error {
	DER_OK = 0,
	DER_TRUNCATED,    /* a length runs past the end of the field */
	DER_MALFORMED,    /* not the expected structure or not strict DER */
	DER_WRONG_OID,    /* an algorithm other than rsaEncryption */
	DER_TRAILING,     /* bytes after the key that are not all zero */
	DER_MODULUS_SIZE, /* modulus outside 1024..4096 bits */
	DER_BAD_EXPONENT, /* exponent even, below 3, not below 2^64 or not below the modulus */
	DER_EVEN_MODULUS, /* modulus even */
};

struct der_rsa_key {
	const uint8_t *n; /* big-endian, no leading zero; points into the input */
	size_t n_len;
	const uint8_t *e;
	size_t e_len;
	unsigned bits;  /* modulus size in bits */
	size_t der_len; /* bytes of the DER element, without the trailing zeros */
};

#define DER_TAG_INTEGER      0x02
#define DER_TAG_BIT_STRING   0x03
#define DER_TAG_OCTET_STRING 0x04
#define DER_TAG_NULL         0x05
#define DER_TAG_OID          0x06
#define DER_TAG_SEQUENCE     0x30

/* AlgorithmIdentifier ::= SEQUENCE { rsaEncryption, NULL }: the same 15 bytes in every RSA key. */
#define DER_RSA_ALGORITHM_SIZE 15
extern const uint8_t der_rsa_algorithm[DER_RSA_ALGORITHM_SIZE];

/*
 * What is left to read: a whole input (der_input) or the content of one
 * element (der_take), in which a missing element is a wrong structure
 * rather than a short read.
 */
struct der_cursor {
	const uint8_t *p;
	size_t left;
	bool inner;
};

static inline struct der_cursor der_input(const uint8_t *buf, size_t len)
{
	return (struct der_cursor){buf, len, false};
}

/*
 * Take one element with that tag from c, its content into *content. Its
 * length must be definite, minimal and within what c holds, so a lying
 * length never moves a read past the input.
 */
enum der_error der_take(struct der_cursor *c, uint8_t tag, struct der_cursor *content);
/*
 * A positive, minimally encoded INTEGER, returned without its sign-padding
 * zero; zero is an empty value. A negative one is malformed.
 */
enum der_error der_take_unsigned(struct der_cursor *c, const uint8_t **val, size_t *val_len);
/*
 * An AlgorithmIdentifier naming rsaEncryption with NULL parameters
 * (DER_WRONG_OID for another algorithm); with null_optional, parameters
 * left out are accepted too, as some private-key writers do.
 */
enum der_error der_take_rsa_algorithm(struct der_cursor *c, bool null_optional);

/* Bytes of the tag and length of an element with len bytes of content. */
size_t der_header_size(size_t len);
/* Write them at p, which has room for der_header_size(len) bytes; returns the byte after. */
uint8_t *der_put_header(uint8_t *p, uint8_t tag, size_t len);

/*
 * Read an RSA public key, SPKI or PKCS#1, that fills buf[0..len) followed by
 * nothing but zero bytes (efserver-protocol(7), Requests). *key is written only
 * on success.
 */
enum der_error der_read_rsa_public(const uint8_t *buf, size_t len, struct der_rsa_key *key);
/*
 * The rules for an RSA public key's numbers (efserver-protocol(7),
 * Cryptography), for keys read here and keys read from a private key alike:
 * an odd modulus of 1024..4096 bits, an odd exponent with 3 <= e < 2^64 and
 * e < n. n and e are big-endian without leading zero bytes; *bits (if not
 * NULL) receives the modulus size on success.
 */
enum der_error der_check_rsa_numbers(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len, unsigned *bits);
const char *der_error_str(enum der_error e);

/*
 * Write n and e (big-endian, leading zeros allowed) as SubjectPublicKeyInfo.
 * Returns the length written, or -ENOSPC if out_size is too small.
 */
long der_write_rsa_spki(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len, uint8_t *out, size_t out_size);

#endif
