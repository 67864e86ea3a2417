/* libgcrypt behind the narrow interface the session needs (efserver-protocol(7), Cryptography). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "crypto.h"
#include "failure.h"

#define CRYPTO_NEED_LIBGCRYPT "1.10.0"
#define CRYPTO_BLOCK          16
/* RFC 8017 section 7.1.1: OAEP with SHA-1 takes at most k - 2 * 20 - 2 bytes. */
#define CRYPTO_OAEP_OVERHEAD (2 * 20 + 2)

struct crypto_cbc {
	gcry_cipher_hd_t hd;
	bool encrypt;
};

int crypto_error(gcry_error_t err)
{
	int e = gcry_err_code_to_errno(gcry_err_code(err));

	return failure_note(e > 0 ? -e : -EIO, "libgcrypt: %s", gcry_strerror(err));
}

/* stderr may be the client's socket under inetd: libgcrypt must never write to it. */
static void crypto_silent_log(void *opaque, int level, const char *fmt, va_list ap)
{
	(void)opaque;
	(void)level;
	(void)fmt;
	(void)ap;
}

/*
 * Once per process, and nothing a connection may not need: randomness comes
 * from the kernel (getrandom(2)) at each request for it, rather than from
 * libgcrypt's own generator, whose pool is seeded and mixed at its first use
 * in every process; the pool of secure memory (32 KiB in libgcrypt 1.10) is
 * mapped and locked by libgcrypt at the first secure allocation, which a
 * connection that handles no key never makes.
 */
int crypto_init(void)
{
	if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P))
		return 0;
	gcry_set_log_handler(crypto_silent_log, NULL);
	/* Heeded only before gcry_check_version. */
	(void)gcry_control(GCRYCTL_SET_PREFERRED_RNG_TYPE, GCRY_RNG_TYPE_SYSTEM);
	if (!gcry_check_version(CRYPTO_NEED_LIBGCRYPT))
		return -ENOTSUP;
	/*
	 * The pool is used and wiped on free even when it cannot be locked
	 * (RLIMIT_MEMLOCK): not a reason to stop, nor to say so on stderr.
	 */
	if (gcry_control(GCRYCTL_DISABLE_SECMEM_WARN))
		return -EIO;
	if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0))
		return -EIO;
	return 0;
}

void crypto_random(void *buf, size_t len)
{
	gcry_randomize(buf, len, GCRY_STRONG_RANDOM);
}

/* RFC 4122 section 4.4: version 4 in the high nibble of byte 6, variant 10 in byte 8. */
void crypto_new_client_id(uint8_t id[16])
{
	crypto_random(id, 16);
	id[6] = (uint8_t)((id[6] & 0x0f) | 0x40);
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
}

/*
 * The ciphertext in a 2102 or 2105 (efserver-protocol(7), Responses) is exactly
 * k = modulus bytes long. libgcrypt 1.10 happens to return "a" at that fixed
 * length for OAEP, but its manual does not promise it (a plain MPI would lose
 * leading zeros), so the value is stripped and left-padded to k here.
 */
int crypto_oaep_encrypt(const struct der_rsa_key *key, const uint8_t *msg, size_t msg_len, uint8_t *out,
                        size_t out_size, size_t *out_len)
{
	gcry_sexp_t pub = NULL, data = NULL, enc = NULL, a = NULL;
	const uint8_t *n = key->n;
	size_t n_len = key->n_len, a_len, k;
	const char *a_data;
	void *secure_msg = NULL;
	gcry_error_t err;
	int r;

	failure_clear();
	while (n_len > 0 && n[0] == 0) {
		n++;
		n_len--;
	}
	k = n_len;
	if (k == 0 || k > DER_RSA_MAX_BITS / 8 || key->e_len == 0 || key->e_len > INT_MAX)
		return -EINVAL;
	if (msg_len == 0 || k < CRYPTO_OAEP_OVERHEAD || msg_len > k - CRYPTO_OAEP_OVERHEAD)
		return -EINVAL;
	if (out_size < k)
		return -ENOSPC;

	/* A secure %b argument makes gcry_sexp_build keep the whole data list in secure memory. */
	secure_msg = gcry_malloc_secure(msg_len);
	if (!secure_msg)
		return -ENOMEM;
	memcpy(secure_msg, msg, msg_len);

	err = gcry_sexp_build(&pub, NULL, "(public-key (rsa (n %b) (e %b)))", (int)n_len, n, (int)key->e_len, key->e);
	if (!err)
		err = gcry_sexp_build(&data, NULL, "(data (flags oaep) (hash-algo sha1) (value %b))", (int)msg_len,
		                      secure_msg);
	if (!err)
		err = gcry_pk_encrypt(&enc, data, pub);
	if (err) {
		r = crypto_error(err);
		goto out;
	}
	/* (enc-val (rsa (a <ciphertext>))) */
	a = gcry_sexp_find_token(enc, "a", 1);
	a_data = a ? gcry_sexp_nth_data(a, 1, &a_len) : NULL;
	if (!a_data) {
		r = failure_note(-EIO, "libgcrypt: no ciphertext in the result of RSA encryption");
		goto out;
	}
	while (a_len > 0 && a_data[0] == 0) {
		a_data++;
		a_len--;
	}
	if (a_len > k) {
		r = failure_note(-EIO, "libgcrypt: an RSA ciphertext longer than the modulus");
		goto out;
	}
	memset(out, 0, k - a_len);
	memcpy(out + (k - a_len), a_data, a_len);
	*out_len = k;
	r = 0;
out:
	gcry_sexp_release(a);
	gcry_sexp_release(enc);
	gcry_sexp_release(data);
	gcry_sexp_release(pub);
	gcry_free(secure_msg);
	return r;
}

/* efserver-protocol(7), Cryptography: AES-128 by default, AES-256 where configured; CBC with an all-zero IV. */
int crypto_cbc_new(struct crypto_cbc **out, const uint8_t *key, size_t key_len, bool encrypt)
{
	static const uint8_t zero_iv[CRYPTO_BLOCK];
	struct crypto_cbc *c;
	gcry_error_t err;
	int algo;

	failure_clear();
	switch (key_len) {
	case 16:
		algo = GCRY_CIPHER_AES128;
		break;
	case 32:
		algo = GCRY_CIPHER_AES256;
		break;
	default:
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->encrypt = encrypt;
	/* SECURE keeps the expanded key schedule in the wiped, locked pool. */
	err = gcry_cipher_open(&c->hd, algo, GCRY_CIPHER_MODE_CBC, GCRY_CIPHER_SECURE);
	if (!err)
		err = gcry_cipher_setkey(c->hd, key, key_len);
	if (!err)
		err = gcry_cipher_setiv(c->hd, zero_iv, sizeof(zero_iv));
	if (err) {
		crypto_cbc_free(c);
		return crypto_error(err);
	}
	*out = c;
	return 0;
}

/* In place (libgcrypt's NULL input), so one call runs its bulk code over the whole buffer. */
int crypto_cbc_run(struct crypto_cbc *c, uint8_t *buf, size_t len)
{
	gcry_error_t err;

	failure_clear();
	if (len % CRYPTO_BLOCK)
		return -EINVAL;
	if (len == 0)
		return 0;
	if (c->encrypt)
		err = gcry_cipher_encrypt(c->hd, buf, len, NULL, 0);
	else
		err = gcry_cipher_decrypt(c->hd, buf, len, NULL, 0);
	return err ? crypto_error(err) : 0;
}

void crypto_cbc_free(struct crypto_cbc *c)
{
	if (!c)
		return;
	gcry_cipher_close(c->hd);
	free(c);
}

/*
 * efserver-protocol(7), Cryptography: the padding is 1..16 bytes all equal to
 * the last one. The bytes are plaintext, so the check runs over the whole block
 * with masks rather than stopping at the first mismatch.
 */
int crypto_pkcs7_check(const uint8_t last_block[16], size_t *pad)
{
	uint32_t p = last_block[CRYPTO_BLOCK - 1];
	uint32_t bad, in_pad;
	size_t i;

	/* p - 1 wraps for p == 0; 16 - p wraps for p > 16: either sets the top bit. */
	bad = ((p - 1) | (CRYPTO_BLOCK - p)) >> 31;
	for (i = 0; i < CRYPTO_BLOCK; i++) {
		/* Byte i is padding when its distance from the end, 16 - i, is at most p. */
		in_pad = 1 ^ ((p - (uint32_t)(CRYPTO_BLOCK - i)) >> 31);
		bad |= (0u - in_pad) & (last_block[i] ^ p);
	}
	if (bad)
		return -EBADMSG;
	*pad = p;
	return 0;
}

void crypto_wipe(void *p, size_t len)
{
	explicit_bzero(p, len);
}
