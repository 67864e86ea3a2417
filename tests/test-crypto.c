/*
 * test-crypto: RSA-OAEP output decrypts with the matching private key (SHA-1,
 * full modulus length), AES-CBC with a zero IV matches published vectors and
 * streams like one shot, the PKCS#7 check accepts exactly the valid paddings,
 * and client ids carry RFC 4122 version-4 bits (efserver-protocol(7), Responses
 * and Cryptography).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "crypto.h"
#include "der.h"
#include "keys.h"
#include "tap.h"

#define TEST_KEY_FILE_MAX 16384
#define TEST_STREAM_SIZE  (1024 * 1024 + 48)
#define TEST_IDS          64

struct fixture {
	const char *name;
	unsigned bits;
};

/* Keys made once with OpenSSL; tests/data/keys/README says how. */
static const struct fixture fixtures[] = {
    {"rsa-1024-e17", 1024},    {"rsa-1024-e65537", 1024}, {"rsa-1536-e3", 1536},
    {"rsa-2048-e65537", 2048}, {"rsa-3072-e3", 3072},     {"rsa-4096-e17", 4096},
};

/* Hex digits from s into out; white space is skipped. Returns the byte count. */
static size_t unhex(const char *s, uint8_t *out, size_t size)
{
	size_t n = 0;
	int hi = -1, v;

	for (; *s; s++) {
		if (isspace((unsigned char)*s))
			continue;
		v = hex_value(*s);
		if (v < 0 || n == size)
			abort();
		if (hi < 0) {
			hi = v;
		} else {
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	return n;
}

/* The whole of tests/data/keys/<file> into buf, NUL-terminated; its length, or 0. */
static size_t load_file(const char *file, char *buf, size_t size)
{
	const char *top = getenv("top_srcdir");
	char path[PATH_MAX];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/data/keys/%s", top && *top ? top : ".", file);
	f = fopen(path, "r");
	if (!f) {
		printf("# cannot open %s\n", path);
		return 0;
	}
	n = fread(buf, 1, size - 1, f);
	if (!feof(f))
		n = 0;
	fclose(f);
	buf[n] = '\0';
	return n;
}

static gcry_sexp_t load_private(const char *name)
{
	char text[TEST_KEY_FILE_MAX], file[128];
	gcry_sexp_t key;
	size_t len;

	snprintf(file, sizeof(file), "%s.private.sexp", name);
	len = load_file(file, text, sizeof(text));
	if (len == 0 || gcry_sexp_new(&key, text, len, 1))
		return NULL;
	return key;
}

/* Decrypt ct with priv as RSAES-OAEP with the given hash; true when it gives back msg. */
static bool oaep_decrypts_to(gcry_sexp_t priv, const char *hash, const uint8_t *ct, size_t ct_len, const uint8_t *msg,
                             size_t msg_len)
{
	gcry_sexp_t enc = NULL, plain = NULL, value = NULL;
	const char *data = NULL;
	size_t len = 0;
	bool same = false;

	if (gcry_sexp_build(&enc, NULL, "(enc-val (flags oaep) (hash-algo %s) (rsa (a %b)))", hash, (int)ct_len, ct) ==
	        0 &&
	    gcry_pk_decrypt(&plain, enc, priv) == 0) {
		/* With (flags oaep) libgcrypt answers (value <plaintext>). */
		value = gcry_sexp_find_token(plain, "value", 0);
		if (value)
			data = gcry_sexp_nth_data(value, 1, &len);
		same = data && len == msg_len && memcmp(data, msg, msg_len) == 0;
	}
	gcry_sexp_release(value);
	gcry_sexp_release(plain);
	gcry_sexp_release(enc);
	return same;
}

/* The modulus in a private key file, to tie it to its SPKI. */
static bool private_matches(gcry_sexp_t priv, const struct der_rsa_key *key)
{
	gcry_sexp_t n = gcry_sexp_find_token(priv, "n", 0);
	const char *data = NULL;
	size_t len = 0;
	bool same;

	if (n)
		data = gcry_sexp_nth_data(n, 1, &len);
	while (data && len > 0 && data[0] == 0) {
		data++;
		len--;
	}
	same = data && len == key->n_len && memcmp(data, key->n, len) == 0;
	gcry_sexp_release(n);
	return same;
}

static void test_oaep_fixture(const struct fixture *f)
{
	uint8_t spki[DER_RSA_SPKI_MAX], msg[CRYPTO_AES_MAX_KEY], ct[DER_RSA_MAX_BITS / 8], ct2[DER_RSA_MAX_BITS / 8];
	uint8_t big[DER_RSA_MAX_BITS / 8];
	size_t spki_len, k = f->bits / 8, out_len, max_msg = k - 2 * 20 - 2;
	struct der_rsa_key key;
	gcry_sexp_t priv;
	int r;

	spki_len = load_hex(f->name, "spki", spki, sizeof(spki));
	priv = load_private(f->name);
	ok(spki_len > 0 && der_read_rsa_public(spki, spki_len, &key) == DER_OK && key.bits == f->bits,
	   "%s: the public key fixture reads as a %u-bit key", f->name, f->bits);
	ok(priv && gcry_pk_testkey(priv) == 0 && private_matches(priv, &key),
	   "%s: the private key fixture is a consistent RSA key for that modulus", f->name);
	if (spki_len == 0 || !priv) {
		gcry_sexp_release(priv);
		return;
	}

	crypto_random(msg, 16);
	out_len = 0;
	r = crypto_oaep_encrypt(&key, msg, 16, ct, sizeof(ct), &out_len);
	ok(r == 0 && out_len == k, "%s: a 16-byte AES key encrypts to exactly %zu bytes, the modulus length", f->name,
	   k);
	ok(r == 0 && oaep_decrypts_to(priv, "sha1", ct, out_len, msg, 16),
	   "%s: the private key decrypts it back with OAEP SHA-1", f->name);
	ok(r == 0 && !oaep_decrypts_to(priv, "sha256", ct, out_len, msg, 16),
	   "%s: OAEP with SHA-256 does not decrypt it, so SHA-1 was used", f->name);

	crypto_random(msg, CRYPTO_AES_MAX_KEY);
	r = crypto_oaep_encrypt(&key, msg, CRYPTO_AES_MAX_KEY, ct, k, &out_len);
	ok(r == 0 && out_len == k && oaep_decrypts_to(priv, "sha1", ct, out_len, msg, CRYPTO_AES_MAX_KEY),
	   "%s: a 32-byte AES key round-trips through an output of exactly k bytes", f->name);
	r = crypto_oaep_encrypt(&key, msg, CRYPTO_AES_MAX_KEY, ct2, sizeof(ct2), &out_len);
	ok(r == 0 && memcmp(ct, ct2, k) != 0, "%s: encrypting the same key twice gives different ciphertexts", f->name);

	crypto_random(big, max_msg);
	r = crypto_oaep_encrypt(&key, big, max_msg, ct, sizeof(ct), &out_len);
	ok(r == 0 && oaep_decrypts_to(priv, "sha1", ct, out_len, big, max_msg),
	   "%s: the longest OAEP message, k - 42 = %zu bytes, round-trips", f->name, max_msg);
	out_len = 12345;
	is_int(crypto_oaep_encrypt(&key, big, max_msg + 1, ct, sizeof(ct), &out_len), -EINVAL,
	       "%s: one byte more is -EINVAL", f->name);
	is_int(crypto_oaep_encrypt(&key, msg, 16, ct, k - 1, &out_len), -ENOSPC,
	       "%s: an output one byte shorter than the modulus is -ENOSPC", f->name);
	is_int(out_len, 12345, "%s: out_len is left alone on failure", f->name);
	gcry_sexp_release(priv);
}

/* About one ciphertext in 256 starts with a zero byte; it must still be k bytes, left-padded. */
static void test_oaep_leading_zero(void)
{
	uint8_t spki[DER_RSA_SPKI_MAX], msg[16], ct[128];
	struct der_rsa_key key;
	size_t spki_len, out_len = 0;
	gcry_sexp_t priv;
	int tries, r = -1;

	spki_len = load_hex("rsa-1024-e17", "spki", spki, sizeof(spki));
	priv = load_private("rsa-1024-e17");
	if (spki_len == 0 || !priv || der_read_rsa_public(spki, spki_len, &key) != DER_OK) {
		ok(0, "the 1024-bit fixture loads for the leading-zero test");
		gcry_sexp_release(priv);
		return;
	}
	crypto_random(msg, sizeof(msg));
	/* Missing a zero byte in 8192 tries has a probability of about 1e-14. */
	for (tries = 0; tries < 8192; tries++) {
		r = crypto_oaep_encrypt(&key, msg, sizeof(msg), ct, sizeof(ct), &out_len);
		if (r != 0 || ct[0] == 0)
			break;
	}
	ok(r == 0 && ct[0] == 0 && out_len == 128 && oaep_decrypts_to(priv, "sha1", ct, out_len, msg, sizeof(msg)),
	   "a ciphertext whose top byte is zero is still 128 bytes and decrypts");
	gcry_sexp_release(priv);
}

static bool cbc_once(const uint8_t *key, size_t key_len, bool encrypt, uint8_t *buf, size_t len)
{
	struct crypto_cbc *c = NULL;
	bool good;

	if (crypto_cbc_new(&c, key, key_len, encrypt) != 0)
		return false;
	good = crypto_cbc_run(c, buf, len) == 0;
	crypto_cbc_free(c);
	return good;
}

/*
 * Published vectors. FIPS-197 appendix C gives one block: with a zero IV that
 * is the first CBC block. SP 800-38A F.2.1 and F.2.5 use IV 000102..0f; CBC
 * with IV X over P1, P2.. equals zero-IV CBC over P1 ^ X, P2.., so folding the
 * IV into the first block checks four chained blocks.
 */
static void test_cbc_vectors(void)
{
	static const struct {
		const char *name;
		const char *key, *plain, *cipher;
		bool fold_iv;
	} vec[] = {
	    {"FIPS-197 C.1 AES-128", "000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
	     "69c4e0d86a7b0430d8cdb78070b4c55a", false},
	    {"FIPS-197 C.3 AES-256", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	     "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089", false},
	    {"SP 800-38A F.2.1 CBC-AES128", "2b7e151628aed2a6abf7158809cf4f3c",
	     "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
	     "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710",
	     "7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2"
	     "73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7",
	     true},
	    {"SP 800-38A F.2.5 CBC-AES256", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
	     "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
	     "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710",
	     "f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d"
	     "39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b",
	     true},
	};
	uint8_t key[32], plain[64], cipher[64], buf[64];
	size_t i, j, key_len, len;

	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		key_len = unhex(vec[i].key, key, sizeof(key));
		len = unhex(vec[i].plain, plain, sizeof(plain));
		(void)unhex(vec[i].cipher, cipher, sizeof(cipher));
		if (vec[i].fold_iv)
			for (j = 0; j < 16; j++)
				plain[j] ^= (uint8_t)j;
		memcpy(buf, plain, len);
		ok(cbc_once(key, key_len, true, buf, len) && memcmp(buf, cipher, len) == 0,
		   "%s: zero-IV CBC over %zu bytes gives the published ciphertext", vec[i].name, len);
		ok(cbc_once(key, key_len, false, buf, len) && memcmp(buf, plain, len) == 0,
		   "%s: decryption gives the plaintext back", vec[i].name);
	}
}

/* Zero-IV CBC computed block by block with libgcrypt's ECB, independently of crypto_cbc. */
static bool cbc_by_ecb(const uint8_t *key, size_t key_len, const uint8_t *in, uint8_t *out, size_t len)
{
	gcry_cipher_hd_t ecb;
	uint8_t chain[16] = {0}, block[16];
	size_t off, j;
	bool good = true;

	if (gcry_cipher_open(&ecb, key_len == 16 ? GCRY_CIPHER_AES128 : GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_ECB, 0))
		return false;
	if (gcry_cipher_setkey(ecb, key, key_len))
		good = false;
	for (off = 0; good && off < len; off += 16) {
		for (j = 0; j < 16; j++)
			block[j] = in[off + j] ^ chain[j];
		good = gcry_cipher_encrypt(ecb, chain, 16, block, 16) == 0;
		memcpy(out + off, chain, 16);
	}
	gcry_cipher_close(ecb);
	return good;
}

/* Runs c over buf in chunks of varying whole-block sizes. */
static bool cbc_chunked(struct crypto_cbc *c, uint8_t *buf, size_t len)
{
	static const size_t chunks[] = {16, 4096, 32, 65536, 48, 1008, 160, 16 * 1000};
	size_t off = 0, i = 0, n;

	while (off < len) {
		n = chunks[i++ % (sizeof(chunks) / sizeof(chunks[0]))];
		if (n > len - off)
			n = len - off;
		if (crypto_cbc_run(c, buf + off, n) != 0)
			return false;
		off += n;
	}
	return true;
}

static void test_cbc_stream(size_t key_len)
{
	uint8_t key[CRYPTO_AES_MAX_KEY];
	uint8_t *plain = malloc(TEST_STREAM_SIZE), *once = malloc(TEST_STREAM_SIZE), *ref = malloc(TEST_STREAM_SIZE);
	uint8_t *chunked = malloc(TEST_STREAM_SIZE + 1);
	struct crypto_cbc *c = NULL;
	unsigned bits = (unsigned)key_len * 8;

	if (!plain || !once || !ref || !chunked)
		abort();
	crypto_random(key, key_len);
	crypto_random(plain, TEST_STREAM_SIZE);

	memcpy(once, plain, TEST_STREAM_SIZE);
	ok(cbc_once(key, key_len, true, once, TEST_STREAM_SIZE) &&
	       cbc_by_ecb(key, key_len, plain, ref, TEST_STREAM_SIZE) && memcmp(once, ref, TEST_STREAM_SIZE) == 0,
	   "AES-%u: one call over %d bytes equals CBC chained by hand from single ECB blocks", bits, TEST_STREAM_SIZE);

	memcpy(chunked, plain, TEST_STREAM_SIZE);
	ok(crypto_cbc_new(&c, key, key_len, true) == 0 && cbc_chunked(c, chunked, TEST_STREAM_SIZE) &&
	       memcmp(chunked, once, TEST_STREAM_SIZE) == 0,
	   "AES-%u: encrypting in chunks of 16 to 65536 bytes equals one shot", bits);
	crypto_cbc_free(c);
	c = NULL;

	ok(crypto_cbc_new(&c, key, key_len, false) == 0 && cbc_chunked(c, chunked, TEST_STREAM_SIZE) &&
	       memcmp(chunked, plain, TEST_STREAM_SIZE) == 0,
	   "AES-%u: decrypting in chunks gives the plaintext back", bits);
	crypto_cbc_free(c);

	/* An odd address: the session's buffers need not be aligned. */
	memcpy(chunked + 1, plain, TEST_STREAM_SIZE);
	ok(cbc_once(key, key_len, true, chunked + 1, TEST_STREAM_SIZE) &&
	       memcmp(chunked + 1, once, TEST_STREAM_SIZE) == 0,
	   "AES-%u: a buffer at an odd address gives the same ciphertext", bits);

	free(plain);
	free(once);
	free(ref);
	free(chunked);
}

static void test_cbc_errors(void)
{
	static const size_t bad_lens[] = {0, 1, 15, 17, 24, 31, 33, 64};
	uint8_t key[64] = {0}, buf[32] = {0};
	struct crypto_cbc *c = (struct crypto_cbc *)&buf; /* a sentinel that must survive */
	bool all = true;
	size_t i;

	for (i = 0; i < sizeof(bad_lens) / sizeof(bad_lens[0]); i++)
		all = all && crypto_cbc_new(&c, key, bad_lens[i], true) == -EINVAL;
	ok(all && c == (struct crypto_cbc *)&buf,
	   "key lengths other than 16 and 32 (AES-192 included) are -EINVAL and leave *out alone");

	c = NULL;
	ok(crypto_cbc_new(&c, key, 16, false) == 0 && c, "a 16-byte decryption context opens");
	is_int(crypto_cbc_run(c, buf, 15), -EINVAL, "running on a partial block is -EINVAL");
	is_int(crypto_cbc_run(c, buf, 17), -EINVAL, "running on 17 bytes is -EINVAL");
	is_int(crypto_cbc_run(c, buf, 0), 0, "running on nothing is a no-op");
	crypto_cbc_free(c);
	crypto_cbc_free(NULL);
	ok(1, "crypto_cbc_free(NULL) is harmless");
}

static void test_pkcs7(void)
{
	uint8_t block[16];
	size_t pad, i, got;
	unsigned last;
	bool all;
	int r;

	all = true;
	for (pad = 1; pad <= 16; pad++) {
		/* The byte before the padding is pad + 1, so a check that reads one too many fails. */
		memset(block, (int)(pad + 1), sizeof(block));
		memset(block + 16 - pad, (int)pad, pad);
		got = 99;
		r = crypto_pkcs7_check(block, &got);
		if (r != 0 || got != pad) {
			printf("#   padding %zu: r %d, pad %zu\n", pad, r, got);
			all = false;
		}
	}
	ok(all, "pkcs7: each valid padding of 1 to 16 bytes is accepted with its length");

	memset(block, 0, sizeof(block));
	got = 99;
	ok(crypto_pkcs7_check(block, &got) == -EBADMSG && got == 99,
	   "pkcs7: a last byte of 0 is refused and *pad is left alone");

	all = true;
	for (last = 17; last <= 255; last++) {
		memset(block, (int)last, sizeof(block));
		if (crypto_pkcs7_check(block, &got) != -EBADMSG)
			all = false;
	}
	ok(all, "pkcs7: every last byte from 17 to 255 is refused, even when the whole block repeats it");

	all = true;
	for (pad = 2; pad <= 16; pad++) {
		for (i = 16 - pad; i < 15; i++) {
			memset(block, (int)pad, sizeof(block));
			block[i] ^= 0x01;
			if (crypto_pkcs7_check(block, &got) != -EBADMSG) {
				printf("#   padding %zu with byte %zu changed was accepted\n", pad, i);
				all = false;
			}
		}
	}
	ok(all, "pkcs7: a padding with any one of its bytes unequal is refused (all 120 cases)");

	memset(block, 0xaa, sizeof(block));
	block[15] = 16;
	ok(crypto_pkcs7_check(block, &got) == -EBADMSG,
	   "pkcs7: a last byte of 16 over a block of other bytes is refused");
}

static void test_random(void)
{
	uint8_t ids[TEST_IDS][16], a[32], b[32] = {0};
	uint8_t seen_one[16] = {0}, seen_zero[16] = {0};
	bool versions = true, distinct = true, varied = true;
	size_t i, j;

	for (i = 0; i < TEST_IDS; i++) {
		crypto_new_client_id(ids[i]);
		versions = versions && (ids[i][6] & 0xf0) == 0x40 && (ids[i][8] & 0xc0) == 0x80;
		for (j = 0; j < 16; j++) {
			seen_one[j] |= ids[i][j];
			seen_zero[j] |= (uint8_t)~ids[i][j];
		}
		for (j = 0; j < i; j++)
			distinct = distinct && memcmp(ids[i], ids[j], 16) != 0;
	}
	ok(versions, "client ids: all %d have version 4 and RFC 4122 variant bits", TEST_IDS);
	ok(distinct, "client ids: all %d differ", TEST_IDS);
	/* Apart from the six fixed bits, each bit takes both values (chance of a false failure ~2^-57). */
	seen_one[6] |= 0xf0;
	seen_zero[6] |= 0xf0;
	seen_one[8] |= 0xc0;
	seen_zero[8] |= 0xc0;
	for (j = 0; j < 16; j++)
		varied = varied && seen_one[j] == 0xff && seen_zero[j] == 0xff;
	ok(varied, "client ids: every one of the 122 random bits varies");

	memset(a, 0, sizeof(a));
	crypto_random(a, 31);
	crypto_random(b, 31);
	ok(memcmp(a, b, 31) != 0 && a[31] == 0 && b[31] == 0,
	   "crypto_random: two draws differ and nothing past the length is written");

	crypto_wipe(a, sizeof(a));
	for (i = 0; i < sizeof(a) && a[i] == 0; i++)
		;
	is_int(i, sizeof(a), "crypto_wipe zeroes the whole buffer");
}

/* The kB of locked memory of this process (VmLck), or -1. */
static long locked_kb(void)
{
	char line[128];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* Nothing a connection may not need: the kernel's generator, and no secure memory before the first secure allocation. */
static void test_init_needs(void)
{
	int type = 0;
	void *p;

	if (gcry_control(GCRYCTL_GET_CURRENT_RNG_TYPE, &type))
		type = -1;
	is_int(type, GCRY_RNG_TYPE_SYSTEM, "randomness comes from the system's generator");
	is_int(locked_kb(), 0, "no memory is locked after crypto_init: no secure memory pool yet");
	p = gcry_malloc_secure(64);
	ok(p && gcry_is_secure(p), "the first secure allocation gets secure memory all the same");
	gcry_free(p);
}

int main(void)
{
	size_t i;

	is_int(crypto_init(), 0, "crypto_init succeeds");
	is_int(crypto_init(), 0, "crypto_init again is a no-op that succeeds");
	ok(gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P), "libgcrypt reports its initialisation finished");
	test_init_needs();

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		test_oaep_fixture(&fixtures[i]);
	test_oaep_leading_zero();
	test_cbc_vectors();
	test_cbc_stream(16);
	test_cbc_stream(32);
	test_cbc_errors();
	test_pkcs7();
	test_random();
	return tap_done();
}
