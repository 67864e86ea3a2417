/*
 * Strict DER for RSA keys (efserver-protocol(7), Requests and Errors). The
 * reader sees bytes straight from the network, so every length is checked
 * against what is left of its enclosing element before it is used, and nothing
 * is allocated.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "der.h"

/* SEQUENCE { OID 1.2.840.113549.1.1.1 (rsaEncryption), NULL } */
const uint8_t der_rsa_algorithm[DER_RSA_ALGORITHM_SIZE] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                           0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
/* The content octets of that OID. */
#define DER_OID_RSA     (der_rsa_algorithm + 4)
#define DER_OID_RSA_LEN 9

/* Only the definite, minimal length forms of DER. */
enum der_error der_take(struct der_cursor *c, uint8_t tag, struct der_cursor *content)
{
	size_t header, len, nlen, i;

	/* An element missing from a complete container is a wrong structure, not a short read. */
	if (c->left == 0)
		return c->inner ? DER_MALFORMED : DER_TRUNCATED;
	if (c->p[0] != tag)
		return DER_MALFORMED;
	if (c->left < 2)
		return DER_TRUNCATED;
	if (c->p[1] < 0x80) {
		len = c->p[1];
		header = 2;
	} else {
		nlen = c->p[1] & 0x7f;
		/* 0x80 is the indefinite form, 0xff is reserved: neither is DER. */
		if (nlen == 0 || nlen == 0x7f)
			return DER_MALFORMED;
		if (nlen > c->left - 2)
			return DER_TRUNCATED;
		if (c->p[2] == 0)
			return DER_MALFORMED;
		/* A non-zero leading octet makes the length larger than any buffer. */
		if (nlen > sizeof(size_t))
			return DER_TRUNCATED;
		len = 0;
		for (i = 0; i < nlen; i++)
			len = len << 8 | c->p[2 + i];
		if (len < 0x80)
			return DER_MALFORMED;
		header = 2 + nlen;
	}
	if (len > c->left - header)
		return DER_TRUNCATED;
	content->p = c->p + header;
	content->left = len;
	content->inner = true;
	c->p += header + len;
	c->left -= header + len;
	return DER_OK;
}

enum der_error der_take_unsigned(struct der_cursor *c, const uint8_t **val, size_t *val_len)
{
	struct der_cursor v;
	enum der_error r;

	r = der_take(c, DER_TAG_INTEGER, &v);
	if (r != DER_OK)
		return r;
	if (v.left == 0 || (v.p[0] & 0x80))
		return DER_MALFORMED;
	if (v.p[0] == 0 && v.left > 1) {
		if (!(v.p[1] & 0x80))
			return DER_MALFORMED;
		v.p++;
		v.left--;
	}
	/* Zero is kept as an empty value: no modulus or exponent may be zero. */
	if (v.left == 1 && v.p[0] == 0)
		v.left = 0;
	*val = v.p;
	*val_len = v.left;
	return DER_OK;
}

/* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017 A.1.1). */
static enum der_error der_take_rsa_public_key(struct der_cursor *c, struct der_rsa_key *k)
{
	struct der_cursor seq;
	enum der_error r;

	r = der_take(c, DER_TAG_SEQUENCE, &seq);
	if (r != DER_OK)
		return r;
	r = der_take_unsigned(&seq, &k->n, &k->n_len);
	if (r != DER_OK)
		return r;
	r = der_take_unsigned(&seq, &k->e, &k->e_len);
	if (r != DER_OK)
		return r;
	return seq.left == 0 ? DER_OK : DER_MALFORMED;
}

/* RFC 3279 section 2.3.1: rsaEncryption's parameters are NULL. */
enum der_error der_take_rsa_algorithm(struct der_cursor *c, bool null_optional)
{
	struct der_cursor alg, oid, null;
	enum der_error r;

	r = der_take(c, DER_TAG_SEQUENCE, &alg);
	if (r != DER_OK)
		return r;
	r = der_take(&alg, DER_TAG_OID, &oid);
	if (r != DER_OK)
		return r;
	if (oid.left != DER_OID_RSA_LEN || memcmp(oid.p, DER_OID_RSA, DER_OID_RSA_LEN) != 0)
		return DER_WRONG_OID;
	if (null_optional && alg.left == 0)
		return DER_OK;
	r = der_take(&alg, DER_TAG_NULL, &null);
	if (r != DER_OK)
		return r;
	return null.left == 0 && alg.left == 0 ? DER_OK : DER_MALFORMED;
}

/* SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, BIT STRING }. */
static enum der_error der_take_spki(struct der_cursor *c, struct der_rsa_key *k)
{
	struct der_cursor spki, bits;
	enum der_error r;

	r = der_take(c, DER_TAG_SEQUENCE, &spki);
	if (r != DER_OK)
		return r;
	r = der_take_rsa_algorithm(&spki, false);
	if (r != DER_OK)
		return r;
	r = der_take(&spki, DER_TAG_BIT_STRING, &bits);
	if (r != DER_OK)
		return r;
	/* The key is a whole number of bytes: no unused bits. */
	if (bits.left == 0 || bits.p[0] != 0)
		return DER_MALFORMED;
	bits.p++;
	bits.left--;
	r = der_take_rsa_public_key(&bits, k);
	if (r != DER_OK)
		return r;
	if (bits.left != 0 || spki.left != 0)
		return DER_MALFORMED;
	return DER_OK;
}

/* Bits in a big-endian number without leading zero bytes. */
static unsigned der_bit_length(const uint8_t *v, size_t len)
{
	unsigned bits;
	uint8_t top;

	if (len == 0)
		return 0;
	bits = (unsigned)(len - 1) * 8;
	for (top = v[0]; top; top >>= 1)
		bits++;
	return bits;
}

/* a < b for big-endian numbers without leading zero bytes. */
static int der_less(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
	if (a_len != b_len)
		return a_len < b_len;
	return memcmp(a, b, a_len) < 0;
}

enum der_error der_check_rsa_numbers(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len, unsigned *bits)
{
	unsigned n_bits;

	if (n_len > DER_RSA_MAX_BITS / 8)
		return DER_MODULUS_SIZE;
	n_bits = der_bit_length(n, n_len);
	if (n_bits < DER_RSA_MIN_BITS || n_bits > DER_RSA_MAX_BITS)
		return DER_MODULUS_SIZE;
	/* An even modulus has the factor 2: no RSA key, whatever it claims. */
	if (!(n[n_len - 1] & 1))
		return DER_EVEN_MODULUS;
	/* Odd, 3 <= e < 2^64, and an exponent not below n is no RSA key. */
	if (e_len == 0 || e_len > DER_RSA_EXPONENT_MAX_BYTES || !(e[e_len - 1] & 1) || (e_len == 1 && e[0] < 3) ||
	    !der_less(e, e_len, n, n_len))
		return DER_BAD_EXPONENT;
	if (bits)
		*bits = n_bits;
	return DER_OK;
}

enum der_error der_read_rsa_public(const uint8_t *buf, size_t len, struct der_rsa_key *key)
{
	struct der_cursor c = der_input(buf, len), peek = c, first;
	struct der_rsa_key k = {0};
	enum der_error r;
	size_t i;

	/* Both forms are a SEQUENCE: SPKI's starts with a SEQUENCE, PKCS#1's with an INTEGER. */
	r = der_take(&peek, DER_TAG_SEQUENCE, &first);
	if (r != DER_OK)
		return r;
	if (first.left > 0 && first.p[0] == DER_TAG_SEQUENCE)
		r = der_take_spki(&c, &k);
	else
		r = der_take_rsa_public_key(&c, &k);
	if (r != DER_OK)
		return r;
	k.der_len = len - c.left;

	/* efserver-protocol(7), Requests: the field may be longer than the key, but only by zero bytes. */
	for (i = 0; i < c.left; i++)
		if (c.p[i] != 0)
			return DER_TRAILING;
	r = der_check_rsa_numbers(k.n, k.n_len, k.e, k.e_len, &k.bits);
	if (r != DER_OK)
		return r;
	*key = k;
	return DER_OK;
}

const char *der_error_str(enum der_error e)
{
	switch (e) {
	case DER_OK:
		return "valid";
	case DER_TRUNCATED:
		return "truncated";
	case DER_MALFORMED:
		return "not a strict DER SubjectPublicKeyInfo or RSAPublicKey";
	case DER_WRONG_OID:
		return "not an rsaEncryption key";
	case DER_TRAILING:
		return "trailing bytes after the key are not zero";
	case DER_MODULUS_SIZE:
		return "modulus size outside 1024 to 4096 bits";
	case DER_BAD_EXPONENT:
		return "exponent even, below 3, not below 2^64 or not below the modulus";
	case DER_EVEN_MODULUS:
		return "modulus even";
	}
	return "unknown error";
}

size_t der_header_size(size_t len)
{
	size_t n = 2;

	if (len < 0x80)
		return n;
	for (; len; len >>= 8)
		n++;
	return n;
}

uint8_t *der_put_header(uint8_t *p, uint8_t tag, size_t len)
{
	size_t n = der_header_size(len) - 2;

	*p++ = tag;
	if (n == 0) {
		*p++ = (uint8_t)len;
		return p;
	}
	*p++ = (uint8_t)(0x80 | n);
	while (n--)
		*p++ = (uint8_t)(len >> (8 * n));
	return p;
}

/* Content length of the minimal INTEGER for an unsigned value of len bytes, no leading zero. */
static size_t der_integer_content(const uint8_t *v, size_t len)
{
	return len == 0 || (v[0] & 0x80) ? len + 1 : len;
}

static uint8_t *der_put_integer(uint8_t *p, const uint8_t *v, size_t len)
{
	size_t content = der_integer_content(v, len);

	p = der_put_header(p, DER_TAG_INTEGER, content);
	if (content != len)
		*p++ = 0;
	if (len)
		memcpy(p, v, len);
	return p + len;
}

static size_t der_element_size(size_t content)
{
	return der_header_size(content) + content;
}

long der_write_rsa_spki(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len, uint8_t *out, size_t out_size)
{
	size_t n_int, e_int, rsa_seq, bit_str, spki, total;
	uint8_t *p;

	while (n_len > 0 && n[0] == 0) {
		n++;
		n_len--;
	}
	while (e_len > 0 && e[0] == 0) {
		e++;
		e_len--;
	}
	/* Bounding the inputs by the output keeps the size sums below from overflowing. */
	if (n_len > out_size || e_len > out_size || out_size - n_len < e_len)
		return -ENOSPC;

	n_int = der_element_size(der_integer_content(n, n_len));
	e_int = der_element_size(der_integer_content(e, e_len));
	rsa_seq = der_element_size(n_int + e_int);
	bit_str = der_element_size(1 + rsa_seq);
	spki = DER_RSA_ALGORITHM_SIZE + bit_str;
	total = der_element_size(spki);
	if (total > out_size || total > (size_t)LONG_MAX)
		return -ENOSPC;

	p = der_put_header(out, DER_TAG_SEQUENCE, spki);
	memcpy(p, der_rsa_algorithm, DER_RSA_ALGORITHM_SIZE);
	p += DER_RSA_ALGORITHM_SIZE;
	p = der_put_header(p, DER_TAG_BIT_STRING, 1 + rsa_seq);
	*p++ = 0;
	p = der_put_header(p, DER_TAG_SEQUENCE, n_int + e_int);
	p = der_put_integer(p, n, n_len);
	p = der_put_integer(p, e, e_len);
	return (long)(p - out);
}
