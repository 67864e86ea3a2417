/* The client's RSA key: Base64, PKCS#8 / PKCS#1 DER, generation, OAEP (efserver-protocol(7), Cryptography). */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "crypto.h"
#include "der.h"
#include "keyfile.h"

struct keyfile_rsa {
	gcry_sexp_t sk; /* (private-key (rsa (n)(e)(d)(p)(q)(u))), p < q, u = p^-1 mod q */
	unsigned bits;
};

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t keyfile_b64_length(size_t len)
{
	return (len + 2) / 3 * 4;
}

int keyfile_b64_encode(const uint8_t *in, size_t len, char *out, size_t out_size)
{
	size_t i, o = 0;
	uint32_t v;

	if (len > (SIZE_MAX - 1) / 4 * 3 - 2 || out_size < keyfile_b64_length(len) + 1)
		return -ENOSPC;
	for (i = 0; i + 3 <= len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
	crypto_wipe(&v, sizeof(v));
	return 0;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

void keyfile_b64_start(struct keyfile_b64 *d, uint8_t *out, size_t out_size)
{
	memset(d, 0, sizeof(*d));
	d->out = out;
	d->out_size = out_size;
}

/* "<before> 'c' at column N<after>" */
static int b64_fail(struct keyfile_b64 *d, int r, const char *before, char c, size_t column, const char *after)
{
	char shown[16];

	if (c > 0x20 && c < 0x7f)
		snprintf(shown, sizeof(shown), "'%c'", c);
	else
		snprintf(shown, sizeof(shown), "byte 0x%02x", (unsigned char)c);
	snprintf(d->error, sizeof(d->error), "%s%s at column %zu%s", before, shown, column, after);
	crypto_wipe(&d->bits, sizeof(d->bits));
	return r;
}

/* Emit the bytes of a complete group; the spare bits of a padded group must be zero (canonical form). */
static int b64_flush(struct keyfile_b64 *d, char c, size_t column)
{
	static const unsigned spare[3] = {0, 2, 4};
	unsigned nbytes = 3 - d->npad, i;
	uint32_t v = d->bits;

	if (v & ((1u << spare[d->npad]) - 1))
		return b64_fail(d, -EINVAL, "", c, column, " leaves non-zero bits before the padding");
	v >>= spare[d->npad];
	if (d->out_size - d->out_len < nbytes) {
		snprintf(d->error, sizeof(d->error), "more than %zu bytes of Base64 data", d->out_size);
		crypto_wipe(&d->bits, sizeof(d->bits));
		return -ENOSPC;
	}
	for (i = 0; i < nbytes; i++)
		d->out[d->out_len + i] = (uint8_t)(v >> (8 * (nbytes - 1 - i)));
	d->out_len += nbytes;
	d->bits = 0;
	d->nchars = 0;
	crypto_wipe(&v, sizeof(v));
	return 0;
}

int keyfile_b64_feed(struct keyfile_b64 *d, const char *s, size_t len)
{
	size_t i;
	int v, r;

	for (i = 0; i < len; i++) {
		char c = s[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (d->npad && d->nchars == 0)
			return b64_fail(d, -EINVAL, "", c, i + 1, " after the end of the Base64 padding");
		if (c == '=') {
			/* At most two '=' and only in the last two places of a group. */
			if (d->nchars < 2)
				return b64_fail(d, -EINVAL, "misplaced padding ", c, i + 1, "");
			d->npad++;
			d->nchars++;
		} else {
			if ((v = b64_value(c)) < 0)
				return b64_fail(d, -EINVAL, "invalid Base64 character ", c, i + 1, "");
			if (d->npad)
				return b64_fail(d, -EINVAL, "", c, i + 1, " inside the Base64 padding");
			d->bits = d->bits << 6 | (uint32_t)v;
			d->nchars++;
		}
		if (d->nchars == 4 && (r = b64_flush(d, c, i + 1)) < 0)
			return r;
	}
	return 0;
}

int keyfile_b64_finish(struct keyfile_b64 *d, size_t *out_len)
{
	if (d->nchars != 0) {
		snprintf(d->error, sizeof(d->error),
		         "Base64 ends in the middle of a group (truncated, or '=' missing)");
		crypto_wipe(&d->bits, sizeof(d->bits));
		return -EINVAL;
	}
	*out_len = d->out_len;
	return 0;
}

void keyfile_secret_free(void *p, size_t len)
{
	if (!p)
		return;
	crypto_wipe(p, len);
	gcry_free(p);
}

void keyfile_free(struct keyfile_rsa *k)
{
	if (!k)
		return;
	gcry_sexp_release(k->sk);
	free(k);
}

unsigned keyfile_bits(const struct keyfile_rsa *k)
{
	return k->bits;
}

size_t keyfile_modulus_bytes(const struct keyfile_rsa *k)
{
	return (k->bits + 7) / 8;
}

static void release_mpis(gcry_mpi_t *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		gcry_mpi_release(m[i]);
		m[i] = NULL;
	}
}

/*
 * Check n, e, d, p, q against each other and build the key libgcrypt wants
 * (p < q, u = p^-1 mod q). Takes nothing over: the caller frees its MPIs.
 */
static int key_from_components(struct keyfile_rsa **out, gcry_mpi_t n, gcry_mpi_t e, gcry_mpi_t d, gcry_mpi_t p,
                               gcry_mpi_t q, const char **why)
{
	enum { P1, Q1, G, PHI, LAMBDA, T, U, NTMP };
	gcry_mpi_t t[NTMP] = {0}, lo = p, hi = q;
	struct keyfile_rsa *k = NULL;
	uint8_t nb[DER_RSA_MAX_BITS / 8], eb[DER_RSA_MAX_BITS / 8];
	size_t n_len = 0, e_len = 0, i;
	enum der_error de = DER_MODULUS_SIZE;
	unsigned bits = 0;
	int r = -EINVAL;

	/* The public half obeys the rules every public key here does (der.h); too large to print is too large. */
	if (gcry_mpi_print(GCRYMPI_FMT_USG, nb, sizeof(nb), &n_len, n) == 0) {
		de = DER_BAD_EXPONENT;
		if (gcry_mpi_print(GCRYMPI_FMT_USG, eb, sizeof(eb), &e_len, e) == 0)
			de = der_check_rsa_numbers(nb, n_len, eb, e_len, &bits);
	}
	if (de != DER_OK) {
		*why = der_error_str(de);
		return -EINVAL;
	}
	if (gcry_mpi_cmp(p, q) > 0) {
		lo = q;
		hi = p;
	}
	for (i = 0; i < NTMP; i++)
		t[i] = gcry_mpi_snew(0);
	*why = "the key's numbers do not belong together (n != p*q or d*e != 1 mod lcm(p-1, q-1))";
	if (gcry_mpi_cmp_ui(lo, 2) < 0 || gcry_mpi_cmp(lo, hi) == 0)
		goto out;
	gcry_mpi_mul(t[T], lo, hi);
	if (gcry_mpi_cmp(t[T], n) != 0)
		goto out;
	gcry_mpi_sub_ui(t[P1], lo, 1);
	gcry_mpi_sub_ui(t[Q1], hi, 1);
	gcry_mpi_gcd(t[G], t[P1], t[Q1]);
	gcry_mpi_mul(t[PHI], t[P1], t[Q1]);
	gcry_mpi_div(t[LAMBDA], NULL, t[PHI], t[G], 0);
	gcry_mpi_mulm(t[T], d, e, t[LAMBDA]);
	if (gcry_mpi_cmp_ui(t[T], 1) != 0)
		goto out;
	if (!gcry_mpi_invm(t[U], lo, hi))
		goto out;
	if (!(k = calloc(1, sizeof(*k)))) {
		r = -ENOMEM;
		goto out;
	}
	if (gcry_sexp_build(&k->sk, NULL, "(private-key(rsa(n%m)(e%m)(d%m)(p%m)(q%m)(u%m)))", n, e, d, lo, hi, t[U])) {
		r = -ENOMEM;
		goto out;
	}
	if (gcry_pk_testkey(k->sk))
		goto out;
	k->bits = bits;
	*out = k;
	k = NULL;
	*why = NULL;
	r = 0;
out:
	keyfile_free(k);
	release_mpis(t, NTMP);
	return r;
}

/* n e d p q u of a key, as secure MPIs. */
static int key_mpis(const struct keyfile_rsa *k, gcry_mpi_t m[6])
{
	if (gcry_sexp_extract_param(k->sk, NULL, "nedpqu", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], NULL))
		return -EINVAL;
	return 0;
}

int keyfile_generate(struct keyfile_rsa **out, unsigned bits)
{
	gcry_sexp_t parms = NULL, pair = NULL, sk = NULL;
	struct keyfile_rsa tmp = {0};
	gcry_mpi_t m[6] = {0};
	const char *why;
	int r = -ENOMEM;

	if (bits < KEYFILE_RSA_MIN_BITS || bits > KEYFILE_RSA_MAX_BITS || bits % 8)
		return -EINVAL;
	if (gcry_sexp_build(&parms, NULL, "(genkey(rsa(nbits%u)(rsa-use-e%u)))", bits, (unsigned)KEYFILE_RSA_E))
		goto out;
	if (gcry_pk_genkey(&pair, parms) || !(sk = gcry_sexp_find_token(pair, "private-key", 0))) {
		r = -EIO;
		goto out;
	}
	/* Through the same checks as a loaded key, so both have one shape. */
	tmp.sk = sk;
	if ((r = key_mpis(&tmp, m)) < 0)
		goto out;
	r = key_from_components(out, m[0], m[1], m[2], m[3], m[4], &why);
	if (r == -EINVAL)
		r = -EIO;
out:
	release_mpis(m, 6);
	gcry_sexp_release(sk);
	gcry_sexp_release(pair);
	gcry_sexp_release(parms);
	return r;
}

/* A positive INTEGER as a secure MPI (the DER lies in secure memory, so does the MPI); no part of a key is 0. */
static int der_take_mpi(struct der_cursor *in, gcry_mpi_t *m)
{
	const uint8_t *v;
	size_t n;

	if (der_take_unsigned(in, &v, &n) != DER_OK || n == 0)
		return -EINVAL;
	if (gcry_mpi_scan(m, GCRYMPI_FMT_USG, v, n, NULL))
		return -ENOMEM;
	return 0;
}

/* A version number: 0 and *version, or -EINVAL. */
static int der_take_version(struct der_cursor *in, unsigned *version)
{
	const uint8_t *v;
	size_t n;

	if (der_take_unsigned(in, &v, &n) != DER_OK || n > 1)
		return -EINVAL;
	*version = n ? v[0] : 0;
	return 0;
}

/* RSAPrivateKey (PKCS#1, RFC 8017 A.1.2), filling the whole of in. */
static int read_pkcs1(struct keyfile_rsa **out, struct der_cursor in, const char **why)
{
	gcry_mpi_t m[8] = {0};
	struct der_cursor seq;
	unsigned version;
	size_t i;
	int r = -EINVAL;

	*why = "not an RSA private key (RSAPrivateKey structure expected)";
	if (der_take(&in, DER_TAG_SEQUENCE, &seq) != DER_OK || in.left != 0 || der_take_version(&seq, &version) < 0)
		return -EINVAL;
	if (version != 0) {
		*why = "multi-prime RSA keys are not supported";
		return -EINVAL;
	}
	/* n e d p q, then dP dQ qInv, which are recomputed rather than trusted. */
	for (i = 0; i < 8; i++)
		if ((r = der_take_mpi(&seq, &m[i])) < 0)
			goto out;
	if (seq.left != 0) {
		r = -EINVAL;
		goto out;
	}
	r = key_from_components(out, m[0], m[1], m[2], m[3], m[4], why);
out:
	release_mpis(m, 8);
	return r;
}

int keyfile_from_der(struct keyfile_rsa **out, const uint8_t *der, size_t len, const char **why)
{
	struct der_cursor in = der_input(der, len), seq, key, skip;
	enum der_error de;
	unsigned version;

	*why = "not a PKCS#8 or PKCS#1 RSA private key";
	if (der_take(&in, DER_TAG_SEQUENCE, &seq) != DER_OK || in.left != 0 || der_take_version(&seq, &version) < 0)
		return -EINVAL;
	if (seq.left > 0 && seq.p[0] == DER_TAG_INTEGER)
		return read_pkcs1(out, der_input(der, len), why);
	/* PrivateKeyInfo / OneAsymmetricKey (RFC 5958): version 0 or 1; the parameters are NULL, or left out. */
	if (version > 1 || (de = der_take_rsa_algorithm(&seq, true)) == DER_MALFORMED || de == DER_TRUNCATED)
		return -EINVAL;
	if (de == DER_WRONG_OID) {
		*why = "not an RSA key (the algorithm is not rsaEncryption)";
		return -EINVAL;
	}
	if (der_take(&seq, DER_TAG_OCTET_STRING, &key) != DER_OK)
		return -EINVAL;
	/* Optional attributes [0] and public key [1] carry nothing we need. */
	while (seq.left > 0)
		if (der_take(&seq, 0xa0, &skip) != DER_OK && der_take(&seq, 0x81, &skip) != DER_OK &&
		    der_take(&seq, 0xa1, &skip) != DER_OK)
			return -EINVAL;
	return read_pkcs1(out, key, why);
}

/* A bounded DER writer; err sticks at the first overflow. */
struct der_out {
	uint8_t *p;
	size_t size;
	size_t pos;
	int err;
};

static void der_put(struct der_out *o, const void *data, size_t len)
{
	if (o->err || o->size - o->pos < len) {
		o->err = -ENOSPC;
		return;
	}
	memcpy(o->p + o->pos, data, len);
	o->pos += len;
}

static void der_out_header(struct der_out *o, uint8_t tag, size_t len)
{
	uint8_t h[2 + sizeof(size_t)];

	der_put(o, h, (size_t)(der_put_header(h, tag, len) - h));
}

/* Content bytes of a positive INTEGER: two's complement, so a leading zero when the top bit is set. */
static size_t mpi_der_size(gcry_mpi_t m)
{
	size_t n = 0;

	if (gcry_mpi_print(GCRYMPI_FMT_STD, NULL, 0, &n, m))
		return 0;
	return n;
}

static void der_put_mpi(struct der_out *o, gcry_mpi_t m, size_t n)
{
	size_t written = 0;

	der_out_header(o, DER_TAG_INTEGER, n);
	if (o->err || o->size - o->pos < n) {
		o->err = -ENOSPC;
		return;
	}
	if (gcry_mpi_print(GCRYMPI_FMT_STD, o->p + o->pos, n, &written, m) || written != n) {
		o->err = -EIO;
		return;
	}
	o->pos += n;
}

int keyfile_to_pkcs8(const struct keyfile_rsa *k, uint8_t **der, size_t *der_len)
{
	static const uint8_t version0[] = {DER_TAG_INTEGER, 0x01, 0x00};
	enum { N, E, D, P, Q, U, E1, E2, T, NM };
	gcry_mpi_t m[NM] = {0};
	gcry_mpi_t comp[8];
	size_t size[8], body = sizeof(version0), rsakey, octets, total, i;
	struct der_out o = {0};
	int r;

	if ((r = key_mpis(k, m)) < 0)
		return r;
	/* PKCS#1 lists the larger prime first: prime1 = q, prime2 = p, coefficient = p^-1 mod q = u. */
	m[E1] = gcry_mpi_snew(0);
	m[E2] = gcry_mpi_snew(0);
	m[T] = gcry_mpi_snew(0);
	gcry_mpi_sub_ui(m[T], m[Q], 1);
	gcry_mpi_mod(m[E1], m[D], m[T]);
	gcry_mpi_sub_ui(m[T], m[P], 1);
	gcry_mpi_mod(m[E2], m[D], m[T]);
	comp[0] = m[N];
	comp[1] = m[E];
	comp[2] = m[D];
	comp[3] = m[Q];
	comp[4] = m[P];
	comp[5] = m[E1];
	comp[6] = m[E2];
	comp[7] = m[U];
	for (i = 0; i < 8; i++) {
		if ((size[i] = mpi_der_size(comp[i])) == 0) {
			r = -EINVAL;
			goto out;
		}
		body += der_header_size(size[i]) + size[i];
	}
	rsakey = der_header_size(body) + body;
	octets = der_header_size(rsakey) + rsakey;
	total = sizeof(version0) + DER_RSA_ALGORITHM_SIZE + octets;
	o.size = der_header_size(total) + total;
	if (!(o.p = gcry_malloc_secure(o.size))) {
		r = -ENOMEM;
		goto out;
	}
	der_out_header(&o, DER_TAG_SEQUENCE, total);
	der_put(&o, version0, sizeof(version0));
	der_put(&o, der_rsa_algorithm, DER_RSA_ALGORITHM_SIZE);
	der_out_header(&o, DER_TAG_OCTET_STRING, rsakey);
	der_out_header(&o, DER_TAG_SEQUENCE, body);
	der_put(&o, version0, sizeof(version0));
	for (i = 0; i < 8; i++)
		der_put_mpi(&o, comp[i], size[i]);
	if ((r = o.err) < 0 || o.pos != o.size) {
		r = r < 0 ? r : -EIO;
		keyfile_secret_free(o.p, o.size);
		goto out;
	}
	*der = o.p;
	*der_len = o.size;
	r = 0;
out:
	release_mpis(m, NM);
	return r;
}

int keyfile_to_base64(const struct keyfile_rsa *k, char **b64, size_t *b64_len)
{
	uint8_t *der = NULL;
	size_t der_len = 0, size;
	char *text;
	int r;

	if ((r = keyfile_to_pkcs8(k, &der, &der_len)) < 0)
		return r;
	size = keyfile_b64_length(der_len) + 1;
	if (!(text = gcry_malloc_secure(size))) {
		keyfile_secret_free(der, der_len);
		return -ENOMEM;
	}
	r = keyfile_b64_encode(der, der_len, text, size);
	keyfile_secret_free(der, der_len);
	if (r < 0) {
		keyfile_secret_free(text, size);
		return r;
	}
	*b64 = text;
	*b64_len = size - 1;
	return 0;
}

/* An MPI as unsigned big-endian bytes into out. */
static int mpi_to_bytes(gcry_mpi_t m, uint8_t *out, size_t out_size, size_t *len)
{
	if (gcry_mpi_print(GCRYMPI_FMT_USG, out, out_size, len, m))
		return -ENOSPC;
	return 0;
}

int keyfile_public_spki(const struct keyfile_rsa *k, uint8_t *out, size_t out_size, size_t *out_len)
{
	uint8_t n[KEYFILE_RSA_MAX_BITS / 8], e[KEYFILE_RSA_MAX_BITS / 8];
	size_t n_len, e_len;
	gcry_mpi_t mn = NULL, me = NULL;
	long w;
	int r;

	if (gcry_sexp_extract_param(k->sk, NULL, "ne", &mn, &me, NULL))
		return -EINVAL;
	if ((r = mpi_to_bytes(mn, n, sizeof(n), &n_len)) < 0 || (r = mpi_to_bytes(me, e, sizeof(e), &e_len)) < 0)
		goto out;
	if ((w = der_write_rsa_spki(n, n_len, e, e_len, out, out_size)) < 0) {
		r = (int)w;
		goto out;
	}
	*out_len = (size_t)w;
	r = 0;
out:
	gcry_mpi_release(mn);
	gcry_mpi_release(me);
	return r;
}

int keyfile_oaep_decrypt(const struct keyfile_rsa *k, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_size,
                         size_t *out_len)
{
	gcry_sexp_t data = NULL, plain = NULL, value = NULL;
	const char *p;
	size_t n = 0;
	int r = -EBADMSG;

	if (in_len != keyfile_modulus_bytes(k))
		return -EBADMSG;
	if (gcry_sexp_build(&data, NULL, "(enc-val(flags oaep)(hash-algo sha1)(rsa(a%b)))", (int)in_len, in))
		return -ENOMEM;
	if (gcry_pk_decrypt(&plain, data, k->sk) || !(value = gcry_sexp_find_token(plain, "value", 0)))
		goto out;
	if (!(p = gcry_sexp_nth_data(value, 1, &n)))
		goto out;
	if (n > out_size) {
		r = -EMSGSIZE;
		goto out;
	}
	memcpy(out, p, n);
	*out_len = n;
	r = 0;
out:
	gcry_sexp_release(value);
	gcry_sexp_release(plain);
	gcry_sexp_release(data);
	return r;
}
