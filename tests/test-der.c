/*
 * test-der: the RSA public key reader accepts real SPKI and PKCS#1 keys of
 * every allowed size and refuses each kind of malformed or out-of-policy key
 * with its own error, never reading past the bytes it is given; the writer
 * produces the canonical SPKI (efserver-protocol(7), Requests).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "der.h"
#include "keys.h"
#include "tap.h"

/* Room for the largest key built here: a 16384-bit modulus. */
#define TEST_BUF 4096
/* The largest public key field efserver-protocol(7), Requests, allows. */
#define TEST_FIELD_MAX 1024

struct fixture {
	const char *name;
	unsigned bits;
	unsigned long e;
	size_t spki_len;
};

/* Keys made once with OpenSSL; tests/data/keys/README says how. */
static const struct fixture fixtures[] = {
    {"rsa-1024-e17", 1024, 17, 160},       {"rsa-1024-e65537", 1024, 65537, 162}, {"rsa-1536-e3", 1536, 3, 224},
    {"rsa-2048-e65537", 2048, 65537, 294}, {"rsa-3072-e3", 3072, 3, 420},         {"rsa-4096-e17", 4096, 17, 548},
};

struct dbuf {
	size_t len;
	uint8_t b[TEST_BUF];
};

static const uint8_t oid_rsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};

/* Read from a heap copy of exactly len bytes, so that ASan or valgrind sees any over-read. */
static enum der_error read_exact(const uint8_t *p, size_t len, struct der_rsa_key *key)
{
	uint8_t *copy = malloc(len ? len : 1);
	enum der_error r;

	if (!copy)
		abort();
	if (len)
		memcpy(copy, p, len);
	r = der_read_rsa_public(copy, len, key);
	free(copy);
	return r;
}

static enum der_error read_dbuf(const struct dbuf *d)
{
	struct der_rsa_key k;

	return read_exact(d->b, d->len, &k);
}

static void d_raw(struct dbuf *d, const void *p, size_t n)
{
	if (n > TEST_BUF - d->len) {
		printf("Bail out! test buffer too small\n");
		exit(1);
	}
	if (n)
		memcpy(d->b + d->len, p, n);
	d->len += n;
}

static void d_byte(struct dbuf *d, uint8_t b)
{
	d_raw(d, &b, 1);
}

/* A length in `octets` long-form octets, or in the minimal form when octets is 0. */
static void d_length(struct dbuf *d, size_t len, size_t octets)
{
	size_t i;

	if (octets == 0) {
		if (len < 0x80) {
			d_byte(d, (uint8_t)len);
			return;
		}
		for (octets = 1; octets < sizeof(len) && len >> (8 * octets); octets++)
			;
	}
	d_byte(d, (uint8_t)(0x80 | octets));
	for (i = octets; i-- > 0;)
		d_byte(d, i < sizeof(len) ? (uint8_t)(len >> (8 * i)) : 0);
}

static void d_tlv_form(struct dbuf *d, uint8_t tag, const void *content, size_t len, size_t octets)
{
	d_byte(d, tag);
	d_length(d, len, octets);
	d_raw(d, content, len);
}

static void d_tlv(struct dbuf *d, uint8_t tag, const void *content, size_t len)
{
	d_tlv_form(d, tag, content, len, 0);
}

/* The minimal INTEGER for an unsigned big-endian value without leading zeros. */
static void d_uint(struct dbuf *d, const uint8_t *v, size_t n)
{
	struct dbuf c = {0};

	if (n == 0 || v[0] & 0x80)
		d_byte(&c, 0);
	d_raw(&c, v, n);
	d_tlv(d, 0x02, c.b, c.len);
}

/* AlgorithmIdentifier { rsaEncryption, NULL }. */
static void d_alg_rsa(struct dbuf *d)
{
	struct dbuf c = {0};

	d_tlv(&c, 0x06, oid_rsa, sizeof(oid_rsa));
	d_tlv(&c, 0x05, NULL, 0);
	d_tlv(d, 0x30, c.b, c.len);
}

/* SEQUENCE { ints } where ints holds already encoded elements. */
static void d_pkcs1_raw(struct dbuf *d, const struct dbuf *ints)
{
	d_tlv(d, 0x30, ints->b, ints->len);
}

static void d_pkcs1(struct dbuf *d, const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len)
{
	struct dbuf ints = {0};

	d_uint(&ints, n, n_len);
	d_uint(&ints, e, e_len);
	d_pkcs1_raw(d, &ints);
}

/* SEQUENCE { alg, BIT STRING { unused, key } }. */
static void d_spki_raw(struct dbuf *d, const struct dbuf *alg, uint8_t unused, const struct dbuf *key)
{
	struct dbuf bits = {0}, c = {0};

	d_byte(&bits, unused);
	d_raw(&bits, key->b, key->len);
	d_raw(&c, alg->b, alg->len);
	d_tlv(&c, 0x03, bits.b, bits.len);
	d_tlv(d, 0x30, c.b, c.len);
}

static void d_spki(struct dbuf *d, const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len)
{
	struct dbuf alg = {0}, key = {0};

	d_alg_rsa(&alg);
	d_pkcs1(&key, n, n_len, e, e_len);
	d_spki_raw(d, &alg, 0, &key);
}

/* An odd number of exactly `bits` bits; the reader never needs a real modulus. */
static size_t make_number(uint8_t *v, unsigned bits)
{
	size_t len = (bits + 7) / 8, i;
	unsigned top = (bits - 1) % 8;

	for (i = 0; i < len; i++)
		v[i] = (uint8_t)(0x5a ^ (i * 29));
	v[0] = (uint8_t)((v[0] & ((1u << top) - 1)) | 1u << top);
	v[len - 1] |= 1;
	return len;
}

static unsigned long exponent_value(const struct der_rsa_key *k)
{
	unsigned long e = 0;
	size_t i;

	for (i = 0; i < k->e_len; i++)
		e = e << 8 | k->e[i];
	return e;
}

/* Every prefix of a valid key, alone in an exact buffer, is reported as truncated. */
static void check_prefixes(const char *name, const char *form, const uint8_t *der, size_t len)
{
	size_t cut, bad = SIZE_MAX;
	struct der_rsa_key k;
	enum der_error r = DER_OK;

	for (cut = 0; cut < len && bad == SIZE_MAX; cut++) {
		r = read_exact(der, cut, &k);
		if (r != DER_TRUNCATED)
			bad = cut;
	}
	if (!ok(bad == SIZE_MAX, "%s: each of the %zu proper prefixes of its %s is refused as truncated", name, len,
	        form))
		printf("#   prefix of %zu bytes gave %s\n", bad, der_error_str(r));
}

/* A key cut short and then filled up with zeros to its old size is never accepted. */
static void check_zero_filled_cuts(const char *name, const char *form, const uint8_t *der, size_t len)
{
	uint8_t buf[TEST_BUF];
	size_t cut, bad = SIZE_MAX;
	struct der_rsa_key k;

	for (cut = 0; cut < len && bad == SIZE_MAX; cut++) {
		memset(buf, 0, len);
		memcpy(buf, der, cut);
		if (read_exact(buf, len, &k) == DER_OK)
			bad = cut;
	}
	if (!ok(bad == SIZE_MAX, "%s: its %s cut at each length and zero-filled back to %zu bytes is refused", name,
	        form, len))
		printf("#   cut at %zu was accepted\n", bad);
}

static void test_fixture(const struct fixture *f)
{
	uint8_t spki[TEST_BUF], pkcs1[TEST_BUF], out[TEST_BUF], padded[TEST_FIELD_MAX];
	size_t spki_len, pkcs1_len;
	struct der_rsa_key k;
	uint8_t *exact;
	long w;

	spki_len = load_hex(f->name, "spki", spki, sizeof(spki));
	pkcs1_len = load_hex(f->name, "pkcs1", pkcs1, sizeof(pkcs1));
	is_int(spki_len, f->spki_len, "%s: the SPKI fixture loads and is %zu bytes, as OpenSSL wrote it", f->name,
	       f->spki_len);
	ok(pkcs1_len > 0 && pkcs1_len < spki_len, "%s: the PKCS#1 fixture loads and is shorter than the SPKI", f->name);
	if (spki_len == 0 || pkcs1_len == 0)
		return;

	exact = malloc(spki_len);
	if (!exact)
		abort();
	memcpy(exact, spki, spki_len);
	is_int(der_read_rsa_public(exact, spki_len, &k), DER_OK, "%s: the SPKI form is accepted", f->name);
	is_int(k.bits, f->bits, "%s: SPKI modulus has %u bits", f->name, f->bits);
	is_int(exponent_value(&k), f->e, "%s: SPKI exponent reads as %lu", f->name, f->e);
	is_int(k.der_len, spki_len, "%s: SPKI der_len is the whole element", f->name);
	ok(k.n > exact && k.n + k.n_len <= exact + spki_len && k.n_len == f->bits / 8 && k.n[0] != 0,
	   "%s: n points into the input, without the sign zero", f->name);
	w = der_write_rsa_spki(k.n, k.n_len, k.e, k.e_len, out, sizeof(out));
	ok(w == (long)spki_len && memcmp(out, spki, spki_len) == 0,
	   "%s: writing back what the SPKI reader returned gives the fixture byte for byte", f->name);
	free(exact);

	exact = malloc(pkcs1_len);
	if (!exact)
		abort();
	memcpy(exact, pkcs1, pkcs1_len);
	is_int(der_read_rsa_public(exact, pkcs1_len, &k), DER_OK, "%s: the PKCS#1 form is accepted", f->name);
	ok(k.bits == f->bits && exponent_value(&k) == f->e && k.der_len == pkcs1_len,
	   "%s: PKCS#1 gives the same size, exponent and its own length", f->name);
	w = der_write_rsa_spki(k.n, k.n_len, k.e, k.e_len, out, sizeof(out));
	ok(w == (long)spki_len && memcmp(out, spki, spki_len) == 0,
	   "%s: the PKCS#1 key written as SPKI equals OpenSSL's SPKI of the same key", f->name);
	free(exact);

	memset(padded, 0, sizeof(padded));
	memcpy(padded, spki, spki_len);
	ok(read_exact(padded, sizeof(padded), &k) == DER_OK && k.der_len == spki_len,
	   "%s: SPKI zero-padded to a %d-byte field is accepted, der_len without the padding", f->name, TEST_FIELD_MAX);
	memset(padded, 0, sizeof(padded));
	memcpy(padded, pkcs1, pkcs1_len);
	ok(read_exact(padded, sizeof(padded), &k) == DER_OK && k.der_len == pkcs1_len,
	   "%s: PKCS#1 zero-padded to a %d-byte field is accepted", f->name, TEST_FIELD_MAX);

	memset(padded, 0, sizeof(padded));
	memcpy(padded, spki, spki_len);
	padded[spki_len] = 0x01;
	is_int(read_exact(padded, spki_len + 1, &k), DER_TRAILING, "%s: one non-zero byte after the SPKI is refused",
	       f->name);
	padded[spki_len] = 0;
	padded[sizeof(padded) - 1] = 0x80;
	is_int(read_exact(padded, sizeof(padded), &k), DER_TRAILING,
	       "%s: zero padding that ends in a non-zero byte is refused", f->name);

	check_prefixes(f->name, "SPKI", spki, spki_len);
	check_prefixes(f->name, "PKCS#1", pkcs1, pkcs1_len);
	check_zero_filled_cuts(f->name, "SPKI", spki, spki_len);
	check_zero_filled_cuts(f->name, "PKCS#1", pkcs1, pkcs1_len);
}

static void test_writer(void)
{
	uint8_t n[DER_RSA_MAX_BITS / 8 + 3], e[DER_RSA_MAX_BITS / 8], out[TEST_BUF], again[TEST_BUF];
	static const uint8_t e17[] = {0x11}, e65537_padded[] = {0x00, 0x00, 0x01, 0x00, 0x01},
	                     e65537[] = {0x01, 0x00, 0x01};
	struct der_rsa_key k;
	struct dbuf ref = {0};
	size_t n_len;
	long w;

	n_len = make_number(n, 1024);
	w = der_write_rsa_spki(n, n_len, e17, sizeof(e17), out, sizeof(out));
	is_int(w, 160, "writer: a 1024-bit key with exponent 17 is exactly 160 bytes (efserver-protocol(7), Requests)");
	d_spki(&ref, n, n_len, e17, sizeof(e17));
	ok(w == (long)ref.len && memcmp(out, ref.b, ref.len) == 0,
	   "writer: its SPKI equals one encoded independently by the test");
	is_int(der_write_rsa_spki(n, n_len, e17, sizeof(e17), out, 160), 160, "writer: an output of exactly 160 fits");
	is_int(der_write_rsa_spki(n, n_len, e17, sizeof(e17), out, 159), -ENOSPC, "writer: one byte less is -ENOSPC");
	is_int(der_write_rsa_spki(n, n_len, e17, sizeof(e17), out, 0), -ENOSPC, "writer: no room at all is -ENOSPC");

	memmove(n + 3, n, n_len);
	memset(n, 0, 3);
	w = der_write_rsa_spki(n, n_len + 3, e65537_padded, sizeof(e65537_padded), again, sizeof(again));
	memmove(n, n + 3, n_len);
	ref.len = 0;
	d_spki(&ref, n, n_len, e65537, sizeof(e65537));
	ok(w == (long)ref.len && memcmp(again, ref.b, ref.len) == 0, "writer: leading zeros of n and e are stripped");

	/* The largest key the reader accepts: 4096-bit modulus, exponent 2^64 - 1. */
	n_len = make_number(n, DER_RSA_MAX_BITS);
	memset(e, 0xff, DER_RSA_EXPONENT_MAX_BYTES);
	w = der_write_rsa_spki(n, n_len, e, DER_RSA_EXPONENT_MAX_BYTES, out, DER_RSA_SPKI_MAX);
	ok(w == 556, "writer: a 4096-bit key with the largest exponent takes 556 bytes");
	ok(w > 0 && read_exact(out, (size_t)w, &k) == DER_OK && k.e_len == DER_RSA_EXPONENT_MAX_BYTES,
	   "reader: an exponent of 2^64 - 1 is accepted");
	/* A 4096-bit exponent still fits the room kept, and the reader refuses it. */
	memcpy(e, n, n_len);
	e[n_len - 1] = (uint8_t)(e[n_len - 1] - 2); /* n - 2: odd and below n, as n's last byte is above 2 */
	w = der_write_rsa_spki(n, n_len, e, n_len, out, DER_RSA_SPKI_MAX);
	ok(w > 0 && w <= DER_RSA_SPKI_MAX, "writer: a 4096-bit key with a 4096-bit exponent fits DER_RSA_SPKI_MAX");
	ok(w > 0 && n[n_len - 1] > 2 && read_exact(out, (size_t)w, &k) == DER_BAD_EXPONENT,
	   "reader: an exponent of n - 2, odd and below the modulus but not below 2^64, is refused");
}

/* Structural errors, each in an otherwise valid 1024-bit key built by the test. */
static void test_structure(void)
{
	static const uint8_t e17[] = {0x11};
	static const uint8_t oid_pss[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a};
	static const uint8_t oid_ec[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
	static const uint8_t one_zero[] = {0x00};
	uint8_t n[128];
	struct dbuf d, alg, key, ints, c;
	size_t n_len = make_number(n, 1024), i;
	unsigned unused;
	bool all;

	d = (struct dbuf){0};
	d_spki(&d, n, n_len, e17, sizeof(e17));
	is_int(read_dbuf(&d), DER_OK, "builder: the test's own 1024-bit SPKI is accepted (the cases below vary it)");
	d = (struct dbuf){0};
	d_pkcs1(&d, n, n_len, e17, sizeof(e17));
	is_int(read_dbuf(&d), DER_OK, "builder: the test's own 1024-bit PKCS#1 is accepted");

	key = (struct dbuf){0};
	d_pkcs1(&key, n, n_len, e17, sizeof(e17));

	alg = (struct dbuf){0};
	c = (struct dbuf){0};
	d_tlv(&c, 0x06, oid_pss, sizeof(oid_pss));
	d_tlv(&c, 0x05, NULL, 0);
	d_tlv(&alg, 0x30, c.b, c.len);
	d = (struct dbuf){0};
	d_spki_raw(&d, &alg, 0, &key);
	is_int(read_dbuf(&d), DER_WRONG_OID, "spki: RSASSA-PSS OID is refused as the wrong algorithm");

	alg = (struct dbuf){0};
	c = (struct dbuf){0};
	d_tlv(&c, 0x06, oid_ec, sizeof(oid_ec));
	d_tlv(&c, 0x05, NULL, 0);
	d_tlv(&alg, 0x30, c.b, c.len);
	d = (struct dbuf){0};
	d_spki_raw(&d, &alg, 0, &key);
	is_int(read_dbuf(&d), DER_WRONG_OID, "spki: id-ecPublicKey OID is refused as the wrong algorithm");

	alg = (struct dbuf){0};
	c = (struct dbuf){0};
	{
		uint8_t longer[sizeof(oid_rsa) + 1];

		memcpy(longer, oid_rsa, sizeof(oid_rsa));
		longer[sizeof(oid_rsa)] = 0x01;
		d_tlv(&c, 0x06, longer, sizeof(longer));
	}
	d_tlv(&c, 0x05, NULL, 0);
	d_tlv(&alg, 0x30, c.b, c.len);
	d = (struct dbuf){0};
	d_spki_raw(&d, &alg, 0, &key);
	is_int(read_dbuf(&d), DER_WRONG_OID, "spki: an OID that only starts with rsaEncryption is refused");

	alg = (struct dbuf){0};
	c = (struct dbuf){0};
	d_tlv(&c, 0x06, oid_rsa, sizeof(oid_rsa));
	d_tlv(&alg, 0x30, c.b, c.len);
	d = (struct dbuf){0};
	d_spki_raw(&d, &alg, 0, &key);
	is_int(read_dbuf(&d), DER_MALFORMED, "spki: missing NULL parameters are refused as malformed");

	alg = (struct dbuf){0};
	c = (struct dbuf){0};
	d_tlv(&c, 0x06, oid_rsa, sizeof(oid_rsa));
	d_tlv(&c, 0x05, one_zero, sizeof(one_zero));
	d_tlv(&alg, 0x30, c.b, c.len);
	d = (struct dbuf){0};
	d_spki_raw(&d, &alg, 0, &key);
	is_int(read_dbuf(&d), DER_MALFORMED, "spki: a NULL with content is refused");

	alg = (struct dbuf){0};
	c = (struct dbuf){0};
	d_tlv(&c, 0x06, oid_rsa, sizeof(oid_rsa));
	d_tlv(&c, 0x02, one_zero, sizeof(one_zero));
	d_tlv(&alg, 0x30, c.b, c.len);
	d = (struct dbuf){0};
	d_spki_raw(&d, &alg, 0, &key);
	is_int(read_dbuf(&d), DER_MALFORMED, "spki: parameters that are an INTEGER instead of NULL are refused");

	alg = (struct dbuf){0};
	c = (struct dbuf){0};
	d_tlv(&c, 0x06, oid_rsa, sizeof(oid_rsa));
	d_tlv(&c, 0x05, NULL, 0);
	d_tlv(&c, 0x05, NULL, 0);
	d_tlv(&alg, 0x30, c.b, c.len);
	d = (struct dbuf){0};
	d_spki_raw(&d, &alg, 0, &key);
	is_int(read_dbuf(&d), DER_MALFORMED, "spki: an extra element after the NULL parameters is refused");

	alg = (struct dbuf){0};
	d_alg_rsa(&alg);
	all = true;
	for (unused = 1; unused <= 7; unused++) {
		d = (struct dbuf){0};
		d_spki_raw(&d, &alg, (uint8_t)unused, &key);
		all = all && read_dbuf(&d) == DER_MALFORMED;
	}
	ok(all, "spki: a BIT STRING with 1 to 7 unused bits is refused as malformed");

	d = (struct dbuf){0};
	c = (struct dbuf){0};
	d_raw(&c, alg.b, alg.len);
	d_tlv(&c, 0x03, NULL, 0);
	d_tlv(&d, 0x30, c.b, c.len);
	is_int(read_dbuf(&d), DER_MALFORMED, "spki: an empty BIT STRING is refused");

	d = (struct dbuf){0};
	c = (struct dbuf){0};
	{
		struct dbuf bits = {0};

		d_byte(&bits, 0);
		d_raw(&bits, key.b, key.len);
		d_raw(&c, alg.b, alg.len);
		d_tlv(&c, 0x04, bits.b, bits.len);
	}
	d_tlv(&d, 0x30, c.b, c.len);
	is_int(read_dbuf(&d), DER_MALFORMED, "spki: an OCTET STRING in place of the BIT STRING is refused");

	{
		struct dbuf key_plus = key;

		d_byte(&key_plus, 0x00);
		d = (struct dbuf){0};
		d_spki_raw(&d, &alg, 0, &key_plus);
		is_int(read_dbuf(&d), DER_MALFORMED,
		       "spki: a byte after the RSAPublicKey inside the BIT STRING is refused");
	}

	d = (struct dbuf){0};
	c = (struct dbuf){0};
	d_spki(&c, n, n_len, e17, sizeof(e17));
	/* Re-wrap the SPKI's content with one more element inside it. */
	{
		struct dbuf inner = {0};

		d_raw(&inner, c.b + 3, c.len - 3);
		d_tlv(&inner, 0x05, NULL, 0);
		d_tlv(&d, 0x30, inner.b, inner.len);
	}
	is_int(read_dbuf(&d), DER_MALFORMED, "spki: an extra element after the BIT STRING is refused");

	ints = (struct dbuf){0};
	d_uint(&ints, n, n_len);
	d_uint(&ints, e17, sizeof(e17));
	d_tlv(&ints, 0x02, one_zero, sizeof(one_zero));
	d = (struct dbuf){0};
	d_pkcs1_raw(&d, &ints);
	is_int(read_dbuf(&d), DER_MALFORMED, "pkcs1: a third INTEGER after n and e is refused");

	ints = (struct dbuf){0};
	d_uint(&ints, n, n_len);
	d = (struct dbuf){0};
	d_pkcs1_raw(&d, &ints);
	is_int(read_dbuf(&d), DER_MALFORMED, "pkcs1: a SEQUENCE holding only n is refused as malformed");

	d = (struct dbuf){0};
	d_tlv(&d, 0x30, NULL, 0);
	is_int(read_dbuf(&d), DER_MALFORMED, "an empty SEQUENCE is refused");

	d = (struct dbuf){0};
	d_pkcs1(&d, n, n_len, e17, sizeof(e17));
	d.b[0] = 0x31;
	is_int(read_dbuf(&d), DER_MALFORMED, "a SET instead of the outer SEQUENCE is refused");
	d.b[0] = 0x3f;
	is_int(read_dbuf(&d), DER_MALFORMED, "a high-tag-number form instead of the outer SEQUENCE is refused");

	d = (struct dbuf){0};
	is_int(read_dbuf(&d), DER_TRUNCATED, "an empty input is refused as truncated");
	d.len = 160;
	memset(d.b, 0, d.len);
	is_int(read_dbuf(&d), DER_MALFORMED, "a field of 160 zero bytes is refused as malformed");

	d = (struct dbuf){0};
	for (i = 0; i < 3; i++)
		d_byte(&d, (uint8_t[]){0x30, 0x82, 0x01}[i]);
	is_int(read_dbuf(&d), DER_TRUNCATED, "length octets cut off after the first are refused as truncated");
}

/* Integer and length encodings that BER allows and DER does not, and lengths that lie. */
static void test_encodings(void)
{
	static const uint8_t e17[] = {0x11};
	uint8_t n[128], content[TEST_BUF];
	struct dbuf d, ints, key, spki;
	size_t n_len = make_number(n, 1024), len;

	ints = (struct dbuf){0};
	d_tlv(&ints, 0x02, n, n_len); /* top bit set, no sign zero */
	d_uint(&ints, e17, sizeof(e17));
	d = (struct dbuf){0};
	d_pkcs1_raw(&d, &ints);
	is_int(read_dbuf(&d), DER_MALFORMED, "a negative modulus (no sign zero before a set top bit) is refused");

	ints = (struct dbuf){0};
	d_uint(&ints, n, n_len);
	d_tlv(&ints, 0x02, (uint8_t[]){0xef}, 1);
	d = (struct dbuf){0};
	d_pkcs1_raw(&d, &ints);
	is_int(read_dbuf(&d), DER_MALFORMED, "a negative exponent is refused");

	content[0] = 0;
	content[1] = 0;
	memcpy(content + 2, n, n_len);
	ints = (struct dbuf){0};
	d_tlv(&ints, 0x02, content, n_len + 2);
	d_uint(&ints, e17, sizeof(e17));
	d = (struct dbuf){0};
	d_pkcs1_raw(&d, &ints);
	is_int(read_dbuf(&d), DER_MALFORMED, "a modulus with two leading zero bytes is refused as not minimal");

	ints = (struct dbuf){0};
	d_uint(&ints, n, n_len);
	d_tlv(&ints, 0x02, (uint8_t[]){0x00, 0x11}, 2);
	d = (struct dbuf){0};
	d_pkcs1_raw(&d, &ints);
	is_int(read_dbuf(&d), DER_MALFORMED, "exponent 17 written as 00 11 is refused as not minimal");

	ints = (struct dbuf){0};
	d_uint(&ints, n, n_len);
	d_tlv(&ints, 0x02, NULL, 0);
	d = (struct dbuf){0};
	d_pkcs1_raw(&d, &ints);
	is_int(read_dbuf(&d), DER_MALFORMED, "an INTEGER with no content octets is refused");

	ints = (struct dbuf){0};
	d_uint(&ints, n, n_len);
	d_tlv_form(&ints, 0x02, e17, sizeof(e17), 1);
	d = (struct dbuf){0};
	d_pkcs1_raw(&d, &ints);
	is_int(read_dbuf(&d), DER_MALFORMED, "a length of 1 in long form (81 01) is refused");

	ints = (struct dbuf){0};
	d_uint(&ints, n, n_len);
	d_uint(&ints, e17, sizeof(e17));
	d = (struct dbuf){0};
	d_tlv_form(&d, 0x30, ints.b, ints.len, 2);
	is_int(read_dbuf(&d), DER_MALFORMED, "an outer length with a leading zero octet (82 00 ..) is refused");

	content[0] = 0;
	memcpy(content + 1, n, n_len);
	ints = (struct dbuf){0};
	d_tlv_form(&ints, 0x02, content, n_len + 1, 2);
	d_uint(&ints, e17, sizeof(e17));
	d = (struct dbuf){0};
	d_pkcs1_raw(&d, &ints);
	is_int(read_dbuf(&d), DER_MALFORMED, "a modulus length in three octets where two fit is refused");

	d = (struct dbuf){0};
	d_pkcs1(&d, n, n_len, e17, sizeof(e17));
	len = d.len;
	/* Indefinite form: 30 80 <content> 00 00. */
	ints = (struct dbuf){0};
	d_byte(&ints, 0x30);
	d_byte(&ints, 0x80);
	d_raw(&ints, d.b + 3, len - 3);
	d_byte(&ints, 0);
	d_byte(&ints, 0);
	is_int(read_dbuf(&ints), DER_MALFORMED, "an indefinite outer length (30 80 .. 00 00) is refused");
	ints.b[1] = 0xff;
	is_int(read_dbuf(&ints), DER_MALFORMED, "the reserved length octet ff is refused");

	/* Lengths that claim more than is there, in buffers that end where the key does. */
	{
		static const uint8_t claims[][10] = {
		    {0x84, 0xff, 0xff, 0xff, 0xff},
		    {0x84, 0x7f, 0xff, 0xff, 0xff},
		    {0x84, 0x00, 0x00, 0x01, 0x00},
		    {0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		    {0x89, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		};
		static const char *const names[] = {"84 ff ff ff ff", "84 7f ff ff ff", "84 00 00 01 00 (leading zero)",
		                                    "88 ff ff ff ff ff ff ff ff", "89 01 00 .. (nine octets)"};
		static const enum der_error want[] = {DER_TRUNCATED, DER_TRUNCATED, DER_MALFORMED, DER_TRUNCATED,
		                                      DER_TRUNCATED};
		size_t i, octets;

		for (i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
			octets = 1 + (claims[i][0] & 0x7f);
			ints = (struct dbuf){0};
			d_byte(&ints, 0x30);
			d_raw(&ints, claims[i], octets);
			d_raw(&ints, d.b + 3, len - 3);
			is_int(read_dbuf(&ints), want[i], "an outer length of %s over a %zu-byte input is refused",
			       names[i], ints.len);
		}
	}

	ints = (struct dbuf){0};
	d_raw(&ints, d.b, len);
	ints.b[2]++; /* outer length one more than the bytes present */
	is_int(read_dbuf(&ints), DER_TRUNCATED,
	       "an outer length one byte longer than the input is refused as truncated");

	ints = (struct dbuf){0};
	d_raw(&ints, d.b, len);
	ints.b[4] = 0x82; /* n: 02 81 81 00 becomes 02 82 81 00, past the SEQUENCE's end */
	is_int(read_dbuf(&ints), DER_TRUNCATED, "a modulus length that runs past its SEQUENCE is refused as truncated");

	ints = (struct dbuf){0};
	d_raw(&ints, d.b, len);
	ints.b[len - 2] = 0x7f; /* e: 02 01 11 becomes 02 7f 11 */
	is_int(read_dbuf(&ints), DER_TRUNCATED, "an exponent length that runs past its SEQUENCE is refused");

	/* In SPKI the lie can also sit in the BIT STRING or in the AlgorithmIdentifier. */
	key = (struct dbuf){0};
	d_pkcs1(&key, n, n_len, e17, sizeof(e17));
	spki = (struct dbuf){0};
	d_spki(&spki, n, n_len, e17, sizeof(e17));
	ints = spki;
	ints.b[20] = 0xff; /* BIT STRING 03 81 8b becomes 03 81 ff */
	is_int(read_dbuf(&ints), DER_TRUNCATED, "a BIT STRING length that runs past the SPKI is refused");
	ints = spki;
	ints.b[4] = 0x7f; /* AlgorithmIdentifier 30 0d becomes 30 7f, swallowing the BIT STRING */
	is_int(read_dbuf(&ints), DER_MALFORMED, "an AlgorithmIdentifier length that swallows the key is refused");
	ints = spki;
	ints.b[6] = 0x0c; /* OID 06 09 becomes 06 0c, past the AlgorithmIdentifier */
	is_int(read_dbuf(&ints), DER_TRUNCATED, "an OID length past its AlgorithmIdentifier is refused");
}

/* efserver-protocol(7), Cryptography: modulus odd, 1024..4096 bits; exponent odd, 3 <= e < 2^64, e < n. */
static void test_policy(void)
{
	static const uint8_t e17[] = {0x11};
	static const struct {
		unsigned bits;
		enum der_error want;
	} sizes[] = {
	    {512, DER_MODULUS_SIZE}, {1023, DER_MODULUS_SIZE}, {1024, DER_OK},
	    {4096, DER_OK},          {4097, DER_MODULUS_SIZE}, {16384, DER_MODULUS_SIZE},
	};
	static const struct {
		const char *name;
		uint8_t e[9];
		size_t len;
		enum der_error want;
	} exps[] = {
	    {"0", {0x00}, 0, DER_BAD_EXPONENT},
	    {"1", {0x01}, 1, DER_BAD_EXPONENT},
	    {"2", {0x02}, 1, DER_BAD_EXPONENT},
	    {"3", {0x03}, 1, DER_OK},
	    {"16", {0x10}, 1, DER_BAD_EXPONENT},
	    {"65536", {0x01, 0x00, 0x00}, 3, DER_BAD_EXPONENT},
	    {"65537", {0x01, 0x00, 0x01}, 3, DER_OK},
	    {"2^64 - 1", {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8, DER_OK},
	    {"2^64 - 59", {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc5}, 8, DER_OK},
	    {"2^64 + 1", {0x01, 0, 0, 0, 0, 0, 0, 0, 0x01}, 9, DER_BAD_EXPONENT},
	    {"2^72 - 1", {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, DER_BAD_EXPONENT},
	};
	uint8_t n[2048], e[2050];
	struct dbuf d;
	size_t n_len, i;
	struct der_rsa_key k, before;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		n_len = make_number(n, sizes[i].bits);
		d = (struct dbuf){0};
		d_spki(&d, n, n_len, e17, sizeof(e17));
		is_int(read_dbuf(&d), sizes[i].want, "a %u-bit modulus is %s", sizes[i].bits,
		       sizes[i].want == DER_OK ? "accepted" : "refused for its size");
	}
	d = (struct dbuf){0};
	d_pkcs1(&d, (const uint8_t[]){0}, 0, e17, sizeof(e17));
	is_int(read_dbuf(&d), DER_MODULUS_SIZE, "a zero modulus is refused for its size");

	n_len = make_number(n, 1024);
	for (i = 0; i < sizeof(exps) / sizeof(exps[0]); i++) {
		d = (struct dbuf){0};
		d_pkcs1(&d, n, n_len, exps[i].e, exps[i].len);
		is_int(read_dbuf(&d), exps[i].want, "exponent %s is %s", exps[i].name,
		       exps[i].want == DER_OK ? "accepted" : "refused");
	}

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		if (sizes[i].want != DER_OK)
			continue;
		n_len = make_number(n, sizes[i].bits);
		n[n_len - 1] &= 0xfe;
		d = (struct dbuf){0};
		d_spki(&d, n, n_len, e17, sizeof(e17));
		is_int(read_dbuf(&d), DER_EVEN_MODULUS, "an even %u-bit modulus is refused", sizes[i].bits);
	}
	n_len = make_number(n, 1024);

	d = (struct dbuf){0};
	d_pkcs1(&d, n, n_len, n, n_len);
	is_int(read_dbuf(&d), DER_BAD_EXPONENT, "an exponent equal to the modulus is refused");
	memcpy(e, n, n_len);
	e[n_len - 1] = (uint8_t)(e[n_len - 1] + 2); /* n + 2: odd, larger, same length (n ends in 0x..1 or 0x..3) */
	d = (struct dbuf){0};
	d_pkcs1(&d, n, n_len, e, n_len);
	ok(e[n_len - 1] > n[n_len - 1] && read_dbuf(&d) == DER_BAD_EXPONENT,
	   "an odd exponent just above the modulus is refused");
	e[0] = 0x01;
	memcpy(e + 1, n, n_len);
	d = (struct dbuf){0};
	d_pkcs1(&d, n, n_len, e, n_len + 1);
	is_int(read_dbuf(&d), DER_BAD_EXPONENT, "an odd exponent longer than the modulus is refused");

	/* der.h's rule: *key is written only on success. */
	memset(&k, 0xa5, sizeof(k));
	before = k;
	d = (struct dbuf){0};
	d_pkcs1(&d, n, n_len, (const uint8_t[]){0x10}, 1);
	(void)der_read_rsa_public(d.b, d.len, &k);
	ok(memcmp(&k, &before, sizeof(k)) == 0, "a refused key leaves *key untouched");
}

static void test_error_strings(void)
{
	const char *s[DER_EVEN_MODULUS + 1];
	bool distinct = true;
	int i, j;

	for (i = 0; i <= DER_EVEN_MODULUS; i++)
		s[i] = der_error_str((enum der_error)i);
	for (i = 0; i <= DER_EVEN_MODULUS; i++)
		for (j = 0; j < i; j++)
			distinct = distinct && s[i] && s[j] && *s[i] && strcmp(s[i], s[j]) != 0;
	ok(distinct, "der_error_str gives each error its own non-empty phrase");
	is_int(strcmp(der_error_str(DER_TRAILING), "trailing bytes after the key are not zero"), 0,
	       "der_error_str(DER_TRAILING) reads as documented");
	ok(der_error_str((enum der_error)99) != NULL, "der_error_str of an unknown value is still a string");
}

int main(void)
{
	size_t i;

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		test_fixture(&fixtures[i]);
	test_writer();
	test_structure();
	test_encodings();
	test_policy();
	test_error_strings();
	return tap_done();
}
