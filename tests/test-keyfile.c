/*
 * test-keyfile: Base64 is strict yet takes keys wrapped over lines; private
 * keys load whether written as PKCS#8 (Crypto++, PyCryptodome with pkcs=8)
 * or PKCS#1 (PyCryptodome's default), with the primes in either order; what
 * is not a usable RSA key is refused with its reason; a generated key has
 * exponent 17 and the protocol's 160-byte SubjectPublicKeyInfo, survives
 * PKCS#8 and Base64, and decrypts OAEP (efserver-protocol(7), Cryptography).
 */
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
#include "tap.h"

/*
 * One RSA-1024 key with e = 17, made with OpenSSL and written four ways,
 * wrapped at 72 columns as Crypto++'s Base64Encoder does.
 */
static const char key_pkcs8[] = "MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAN0hVrNyp3afSnlHO1op5fEU\n"
                                "qIL2f0fDiAhsE7fAYwgawYzQC9I09Q52BkeWimSD3qBCL7bNO/ia6uFKhUSepoZB/STX7h0y\n"
                                "ClDD2rUcV4Ev0jRMB5Tmhsi2Viqg8+v7bvYTiwPynNV5u32ZIcW63zJIjhC+L318piOYH8pa\n"
                                "owSzAgERAoGBAMMdap5WG0qMjQGZNF6dcIlslK/KcE5hO8syL4QEGyVEyOWoguanMpRKBYp1\n"
                                "xWe/plErV0bxUwiIsSEjosQTg9468rPwdw3qJDThrQ66Gb70FUT79OcyJ0Ia7RG8Xbdwtr4K\n"
                                "nNGZiOUXSGRMTACqpP9pgyqzlXKSmwmCH3rc8EQJAkEA/2KBPt58NsQHDGwQ4CIa8J7Kj5rF\n"
                                "D1zB0+jzQ0eqemwBW28H1LwbItPriZVHwvWOAO+aBTMQ/L/VH8y6bQSAjQJBAN2ptYiIs1hQ\n"
                                "dC8h+fHT9Duj10mKdHwwu/ccRWYO2AFE6iOMY+dWpaLq3B96n1imHGmjaHX9t3NYuykeUXvB\n"
                                "aj8CQQClP70Kj/YFUao1Nt2+NC+MovuKGNncw4x6DzP+W4xtVPHRwFBcebc0pz4NuvIy2x+m\n"
                                "QK70TjgrErcUk4ev89q1AkEAj23P0NDshHBLLY50jWsHceJ8PqTh9gFqkNYOyZEiWyyXgGnm\n"
                                "SmU+AAFhQYuUSGt7y+I0iJUcWbHihASPE9eA+wJBAKMBBmRAz9u3gNoMXLgfxtkwPzVXX1Uy\n"
                                "a4EsXiOBumsTwtsyDTQUzHtimnBgCku1IgYyCSO1aGiJmzJS1v4uq34=\n";

static const char key_pkcs1[] = "MIICXQIBAAKBgQDdIVazcqd2n0p5RztaKeXxFKiC9n9Hw4gIbBO3wGMIGsGM0AvSNPUOdgZH\n"
                                "lopkg96gQi+2zTv4murhSoVEnqaGQf0k1+4dMgpQw9q1HFeBL9I0TAeU5obItlYqoPPr+272\n"
                                "E4sD8pzVebt9mSHFut8ySI4Qvi99fKYjmB/KWqMEswIBEQKBgQDDHWqeVhtKjI0BmTRenXCJ\n"
                                "bJSvynBOYTvLMi+EBBslRMjlqILmpzKUSgWKdcVnv6ZRK1dG8VMIiLEhI6LEE4PeOvKz8HcN\n"
                                "6iQ04a0Ouhm+9BVE+/TnMidCGu0RvF23cLa+CpzRmYjlF0hkTEwAqqT/aYMqs5VykpsJgh96\n"
                                "3PBECQJBAP9igT7efDbEBwxsEOAiGvCeyo+axQ9cwdPo80NHqnpsAVtvB9S8GyLT64mVR8L1\n"
                                "jgDvmgUzEPy/1R/Mum0EgI0CQQDdqbWIiLNYUHQvIfnx0/Q7o9dJinR8MLv3HEVmDtgBROoj\n"
                                "jGPnVqWi6twfep9Yphxpo2h1/bdzWLspHlF7wWo/AkEApT+9Co/2BVGqNTbdvjQvjKL7ihjZ\n"
                                "3MOMeg8z/luMbVTx0cBQXHm3NKc+DbryMtsfpkCu9E44KxK3FJOHr/PatQJBAI9tz9DQ7IRw\n"
                                "Sy2OdI1rB3HifD6k4fYBapDWDsmRIlssl4Bp5kplPgABYUGLlEhre8viNIiVHFmx4oQEjxPX\n"
                                "gPsCQQCjAQZkQM/bt4DaDFy4H8bZMD81V19VMmuBLF4jgbprE8LbMg00FMx7YppwYApLtSIG\n"
                                "MgkjtWhoiZsyUtb+Lqt+\n";

/* PKCS#1 with p < q, as PyCryptodome keeps its primes. */
static const char key_pkcs1_p_below_q[] = "MIICXAIBAAKBgQDdIVazcqd2n0p5RztaKeXxFKiC9n9Hw4gIbBO3wGMIGsGM0AvSNPUOdgZH\n"
                                          "lopkg96gQi+2zTv4murhSoVEnqaGQf0k1+4dMgpQw9q1HFeBL9I0TAeU5obItlYqoPPr+272\n"
                                          "E4sD8pzVebt9mSHFut8ySI4Qvi99fKYjmB/KWqMEswIBEQKBgQDDHWqeVhtKjI0BmTRenXCJ\n"
                                          "bJSvynBOYTvLMi+EBBslRMjlqILmpzKUSgWKdcVnv6ZRK1dG8VMIiLEhI6LEE4PeOvKz8HcN\n"
                                          "6iQ04a0Ouhm+9BVE+/TnMidCGu0RvF23cLa+CpzRmYjlF0hkTEwAqqT/aYMqs5VykpsJgh96\n"
                                          "3PBECQJBAN2ptYiIs1hQdC8h+fHT9Duj10mKdHwwu/ccRWYO2AFE6iOMY+dWpaLq3B96n1im\n"
                                          "HGmjaHX9t3NYuykeUXvBaj8CQQD/YoE+3nw2xAcMbBDgIhrwnsqPmsUPXMHT6PNDR6p6bAFb\n"
                                          "bwfUvBsi0+uJlUfC9Y4A75oFMxD8v9UfzLptBICNAkEAj23P0NDshHBLLY50jWsHceJ8PqTh\n"
                                          "9gFqkNYOyZEiWyyXgGnmSmU+AAFhQYuUSGt7y+I0iJUcWbHihASPE9eA+wJBAKU/vQqP9gVR\n"
                                          "qjU23b40L4yi+4oY2dzDjHoPM/5bjG1U8dHAUFx5tzSnPg268jLbH6ZArvROOCsStxSTh6/z\n"
                                          "2rUCQFAuuUYiVscdKCH9lZAF2cAoPnK/iZ+iZSEU5rHJjatp9i0gHwKYk7DXNqRyfbqiwqkN\n"
                                          "GROWUubkeHoj5WsCR/o=\n";

/* PKCS#8 without the NULL parameters and with an empty attributes element. */
static const char key_pkcs8_no_null[] = "MIICdgIBADALBgkqhkiG9w0BAQEEggJgMIICXAIBAAKBgQDdIVazcqd2n0p5RztaKeXxFKiC\n"
                                        "9n9Hw4gIbBO3wGMIGsGM0AvSNPUOdgZHlopkg96gQi+2zTv4murhSoVEnqaGQf0k1+4dMgpQ\n"
                                        "w9q1HFeBL9I0TAeU5obItlYqoPPr+272E4sD8pzVebt9mSHFut8ySI4Qvi99fKYjmB/KWqME\n"
                                        "swIBEQKBgQDDHWqeVhtKjI0BmTRenXCJbJSvynBOYTvLMi+EBBslRMjlqILmpzKUSgWKdcVn\n"
                                        "v6ZRK1dG8VMIiLEhI6LEE4PeOvKz8HcN6iQ04a0Ouhm+9BVE+/TnMidCGu0RvF23cLa+CpzR\n"
                                        "mYjlF0hkTEwAqqT/aYMqs5VykpsJgh963PBECQJBAN2ptYiIs1hQdC8h+fHT9Duj10mKdHww\n"
                                        "u/ccRWYO2AFE6iOMY+dWpaLq3B96n1imHGmjaHX9t3NYuykeUXvBaj8CQQD/YoE+3nw2xAcM\n"
                                        "bBDgIhrwnsqPmsUPXMHT6PNDR6p6bAFbbwfUvBsi0+uJlUfC9Y4A75oFMxD8v9UfzLptBICN\n"
                                        "AkEAj23P0NDshHBLLY50jWsHceJ8PqTh9gFqkNYOyZEiWyyXgGnmSmU+AAFhQYuUSGt7y+I0\n"
                                        "iJUcWbHihASPE9eA+wJBAKU/vQqP9gVRqjU23b40L4yi+4oY2dzDjHoPM/5bjG1U8dHAUFx5\n"
                                        "tzSnPg268jLbH6ZArvROOCsStxSTh6/z2rUCQFAuuUYiVscdKCH9lZAF2cAoPnK/iZ+iZSEU\n"
                                        "5rHJjatp9i0gHwKYk7DXNqRyfbqiwqkNGROWUubkeHoj5WsCR/qgAA==\n";

/* The key's public half as OpenSSL writes it: the 160 bytes the protocol expects. */
static const char key_spki[] = "MIGdMA0GCSqGSIb3DQEBAQUAA4GLADCBhwKBgQDdIVazcqd2n0p5RztaKeXxFKiC9n9Hw4gI\n"
                               "bBO3wGMIGsGM0AvSNPUOdgZHlopkg96gQi+2zTv4murhSoVEnqaGQf0k1+4dMgpQw9q1HFeB\n"
                               "L9I0TAeU5obItlYqoPPr+272E4sD8pzVebt9mSHFut8ySI4Qvi99fKYjmB/KWqMEswIBEQ==\n";

/* "0123456789abcdef" encrypted to the key by OpenSSL, OAEP with SHA-1. */
static const char key_oaep[] = "FM3hbOjI2Wmxip54/rkiAtyYe9OVlcpdv8RotMM87zoF6xzs7x7n+d78YX4j/cpyVQ9xL7eV\n"
                               "zfDPf/iCUo1RZVt2rkBfv7uw4jNcY3NaP/7gUzg/NX+cv5VJvwbt17oaSB9FnbQZYVw2kT/j\n"
                               "OM7sY6u7KWcDPBDP2AU5fRh4/jA=\n";

/* An EC P-256 key in PKCS#8. */
static const char key_ec[] = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3NbDv+tAdmYWvCERTWUAUbMH\n"
                             "w5svtYVsYa6SIr/rmeqhRANCAARCg7ItDls+sIY3nTtV1tPH7LIuAX/kSSwjsUZi3js47NCv\n"
                             "+j1reP/LG/kjn7RqQ2cJ3DTE7nzljwmRbp4LWFJf\n";

/* RSA-512, PKCS#1: below the protocol's 1024 bits. */
static const char key_512[] = "MIIBOgIBAAJBAKYysypl7EwZoBkW7x61oEWxZXp61H0RcJkSWAookWc6UQ/SDubrQn9iLvTh\n"
                              "5dsSWuBMkJTsWMAaAkJVkcpK+ncCAwEAAQJAOwymdbjy5PLx3Bg2621SvZBS4tqDZtBsdiZ7\n"
                              "W1igmNEf5kvL2EMQFItOonojtT592mgEOO4koyNM57gIydd3AQIhANGD7T/JPr0AXpLJAfI9\n"
                              "l77K08uFWWEW0Wf7juhvAiCBAiEAyxJu5QmnjF8xT5wxrjRcdmhp1/5R9qWOqD/4pYgunvcC\n"
                              "IGfjxBP6BVsQwNSGSanFsuYPiyADGoPTHbky+vT0fpiBAiBmvJil/1Boz/AemqL3wz3UGdcS\n"
                              "k3PcGL4nmNWuyUrs2QIhAI4LclXRsGyo+G59gzQnKRwSvu/UK7Vt6rKgJ9pJQOMX\n";

struct blob {
	size_t len;
	uint8_t b[KEYFILE_DER_MAX];
};

/* Decode the way clientconf does, one line at a time. */
static int decode(const char *text, struct blob *out, struct keyfile_b64 *d)
{
	const char *line = text, *nl;
	int r;

	keyfile_b64_start(d, out->b, sizeof(out->b));
	while (*line) {
		nl = strchr(line, '\n');
		if ((r = keyfile_b64_feed(d, line, nl ? (size_t)(nl - line) : strlen(line))) < 0)
			return r;
		if (!nl)
			break;
		line = nl + 1;
	}
	return keyfile_b64_finish(d, &out->len);
}

static void test_base64(void)
{
	static const struct {
		const char *plain, *b64;
	} rfc4648[] = {{"", ""},
	               {"f", "Zg=="},
	               {"fo", "Zm8="},
	               {"foo", "Zm9v"},
	               {"foob", "Zm9vYg=="},
	               {"fooba", "Zm9vYmE="},
	               {"foobar", "Zm9vYmFy"}};
	static const struct {
		const char *in, *shown, *error;
	} bad[] = {
	    {"Zm9v!", "Zm9v!", "invalid Base64 character '!' at column 5"},
	    {"Zm9v\x01", "Zm9v^A", "invalid Base64 character byte 0x01 at column 5"},
	    {"Z===", "Z===", "misplaced padding '=' at column 2"},
	    {"Zg==Zg==", "Zg==Zg==", "'Z' at column 5 after the end of the Base64 padding"},
	    {"Zm=v", "Zm=v", "'v' at column 4 inside the Base64 padding"},
	    {"Zh==", "Zh==", "'=' at column 4 leaves non-zero bits before the padding"},
	    {"Zm9", "Zm9", "Base64 ends in the middle of a group (truncated, or '=' missing)"},
	    {"Zm8", "Zm8", "Base64 ends in the middle of a group (truncated, or '=' missing)"},
	};
	struct keyfile_b64 d;
	struct blob out;
	char enc[16];
	uint8_t small[2];
	size_t i, len;

	for (i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
		size_t n = strlen(rfc4648[i].plain);

		ok(keyfile_b64_encode((const uint8_t *)rfc4648[i].plain, n, enc, sizeof(enc)) == 0 &&
		       strcmp(enc, rfc4648[i].b64) == 0 && keyfile_b64_length(n) == strlen(rfc4648[i].b64),
		   "Base64 of \"%s\" is \"%s\" (RFC 4648)", rfc4648[i].plain, rfc4648[i].b64);
		ok(decode(rfc4648[i].b64, &out, &d) == 0 && out.len == n && memcmp(out.b, rfc4648[i].plain, n) == 0,
		   "\"%s\" decodes to \"%s\"", rfc4648[i].b64, rfc4648[i].plain);
	}
	is_int(keyfile_b64_encode((const uint8_t *)"foo", 3, enc, 4), -ENOSPC, "encoding refuses a short buffer");
	ok(decode(" Zm9v\r\n\tYmFy\n\n", &out, &d) == 0 && out.len == 6 && memcmp(out.b, "foobar", 6) == 0,
	   "blanks, CR and line breaks between groups are skipped");
	keyfile_b64_start(&d, out.b, sizeof(out.b));
	ok(keyfile_b64_feed(&d, "Zm", 2) == 0 && keyfile_b64_feed(&d, "9vYm", 4) == 0 &&
	       keyfile_b64_feed(&d, "Fy", 2) == 0 && keyfile_b64_finish(&d, &len) == 0 && len == 6 &&
	       memcmp(out.b, "foobar", 6) == 0,
	   "a group may be split across lines");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = decode(bad[i].in, &out, &d);

		ok(r == -EINVAL && strcmp(d.error, bad[i].error) == 0, "\"%s\" is refused: %s", bad[i].shown,
		   bad[i].error);
		if (strcmp(d.error, bad[i].error) != 0)
			printf("#   got \"%s\"\n", d.error);
	}
	keyfile_b64_start(&d, small, sizeof(small));
	ok(keyfile_b64_feed(&d, "Zm9v", 4) == -ENOSPC && strstr(d.error, "more than 2 bytes"),
	   "more data than the output holds is refused, not written past it");
}

static struct keyfile_rsa *load(const char *b64, int *r, const char **why)
{
	struct keyfile_rsa *k = NULL;
	struct keyfile_b64 d;
	struct blob der;

	*why = NULL;
	if ((*r = decode(b64, &der, &d)) < 0)
		return NULL;
	*r = keyfile_from_der(&k, der.b, der.len, why);
	return k;
}

static void test_load(void)
{
	static const struct {
		const char *what, *b64;
	} forms[] = {
	    {"PKCS#8 (Crypto++, PyCryptodome pkcs=8)", key_pkcs8},
	    {"PKCS#1 (PyCryptodome's default)", key_pkcs1},
	    {"PKCS#1 with p < q", key_pkcs1_p_below_q},
	    {"PKCS#8 without NULL parameters, with attributes", key_pkcs8_no_null},
	};
	struct blob spki, ct, pkcs8, pkcs1, long_form;
	struct keyfile_b64 d;
	struct keyfile_rsa *k;
	uint8_t out[DER_RSA_SPKI_MAX], plain[64], *der = NULL;
	size_t out_len = 0, plain_len = 0, der_len = 0, i;
	const char *why;
	int r;

	decode(key_spki, &spki, &d);
	decode(key_oaep, &ct, &d);
	decode(key_pkcs8, &pkcs8, &d);
	decode(key_pkcs1, &pkcs1, &d);
	is_int(spki.len, 160, "the reference SubjectPublicKeyInfo is 160 bytes");
	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		k = load(forms[i].b64, &r, &why);
		ok(r == 0 && k && keyfile_bits(k) == 1024 && keyfile_modulus_bytes(k) == 128, "%s loads: RSA-1024",
		   forms[i].what);
		if (!k) {
			printf("#   r=%d, %s\n", r, why ? why : "");
			continue;
		}
		ok(keyfile_public_spki(k, out, sizeof(out), &out_len) == 0 && out_len == spki.len &&
		       memcmp(out, spki.b, spki.len) == 0,
		   "%s: its public key is the reference SubjectPublicKeyInfo", forms[i].what);
		ok(keyfile_oaep_decrypt(k, ct.b, ct.len, plain, sizeof(plain), &plain_len) == 0 && plain_len == 16 &&
		       memcmp(plain, "0123456789abcdef", 16) == 0,
		   "%s: decrypts the AES key OpenSSL encrypted with OAEP/SHA-1", forms[i].what);
		ok(keyfile_to_pkcs8(k, &der, &der_len) == 0 && der_len == pkcs8.len &&
		       memcmp(der, pkcs8.b, der_len) == 0,
		   "%s: written back as PKCS#8, byte for byte what OpenSSL writes", forms[i].what);
		keyfile_secret_free(der, der_len);
		der = NULL;
		keyfile_free(k);
	}

	k = load(key_pkcs8, &r, &why);
	ok(k && keyfile_oaep_decrypt(k, ct.b, ct.len - 1, plain, sizeof(plain), &plain_len) == -EBADMSG,
	   "a ciphertext shorter than the modulus is refused");
	ct.b[40] ^= 1;
	ok(k && keyfile_oaep_decrypt(k, ct.b, ct.len, plain, sizeof(plain), &plain_len) == -EBADMSG,
	   "a corrupted ciphertext does not decrypt");
	ok(k && keyfile_oaep_decrypt(k, ct.b, ct.len, plain, 8, &plain_len) < 0, "nor into a buffer too small");
	keyfile_free(k);

	k = load(key_ec, &r, &why);
	ok(!k && r == -EINVAL && why && strstr(why, "not an RSA key"), "an EC key is refused: %s", why ? why : "?");
	k = load(key_512, &r, &why);
	ok(!k && r == -EINVAL && why && strstr(why, "1024 to 4096"), "an RSA-512 key is refused: %s", why ? why : "?");
	/* Byte 20 lies inside the modulus of the PKCS#1 form. */
	pkcs1.b[20] ^= 0x40;
	r = keyfile_from_der(&k, pkcs1.b, pkcs1.len, &why);
	ok(r == -EINVAL && strstr(why, "do not belong together"), "a key whose modulus was altered is refused: %s",
	   why);
	pkcs1.b[20] ^= 0x40;
	r = keyfile_from_der(&k, pkcs1.b, pkcs1.len - 1, &why);
	ok(r == -EINVAL && strstr(why, "not a PKCS#8 or PKCS#1"), "a truncated key is refused: %s", why);
	pkcs1.b[pkcs1.len] = 0;
	r = keyfile_from_der(&k, pkcs1.b, pkcs1.len + 1, &why);
	ok(r == -EINVAL && strstr(why, "not a PKCS#8 or PKCS#1"), "a byte after the key is refused: %s", why);
	r = keyfile_from_der(&k, spki.b, spki.len, &why);
	ok(r == -EINVAL && strstr(why, "not a PKCS#8 or PKCS#1"), "a public key is not a private key: %s", why);
	/* The same key with its outer length in three octets, 83 00 xx xx, where DER says 82 xx xx. */
	ok(pkcs1.b[1] == 0x82 && pkcs1.len + 1 <= sizeof(long_form.b), "the PKCS#1 key has a two-octet outer length");
	long_form.b[0] = pkcs1.b[0];
	long_form.b[1] = 0x83;
	long_form.b[2] = 0;
	memcpy(long_form.b + 3, pkcs1.b + 2, pkcs1.len - 2);
	long_form.len = pkcs1.len + 1;
	r = keyfile_from_der(&k, long_form.b, long_form.len, &why);
	ok(r == -EINVAL && strstr(why, "not a PKCS#8 or PKCS#1"),
	   "a length in a longer form than DER allows is refused, as in a public key: %s", why);
	r = keyfile_from_der(&k, pkcs8.b, 0, &why);
	ok(r == -EINVAL, "nothing is not a key");
}

static void test_generate(void)
{
	struct keyfile_rsa *k = NULL, *back = NULL;
	struct der_rsa_key pub;
	struct keyfile_b64 d;
	struct blob der;
	uint8_t spki[DER_RSA_SPKI_MAX], spki2[DER_RSA_SPKI_MAX], aes[16], ct[512], plain[64];
	size_t spki_len = 0, spki2_len = 0, ct_len = 0, plain_len = 0, b64_len = 0;
	const char *why = NULL;
	char *b64 = NULL;

	is_int(keyfile_generate(&k, 1000), -EINVAL, "keys below 1024 bits are not made");
	is_int(keyfile_generate(&k, 4104), -EINVAL, "nor above 4096 bits");
	is_int(keyfile_generate(&k, 1028), -EINVAL, "nor of a size that is not a multiple of 8");
	ok(keyfile_generate(&k, KEYFILE_RSA_BITS) == 0 && k && keyfile_bits(k) == 1024, "an RSA-1024 key is generated");
	if (!k)
		return;
	ok(keyfile_public_spki(k, spki, sizeof(spki), &spki_len) == 0 && spki_len == 160,
	   "its SubjectPublicKeyInfo is the protocol's 160 bytes");
	ok(der_read_rsa_public(spki, spki_len, &pub) == DER_OK && pub.bits == 1024 && pub.e_len == 1 && pub.e[0] == 17,
	   "the server's reader takes it: 1024 bits, exponent 17");
	crypto_random(aes, sizeof(aes));
	ok(crypto_oaep_encrypt(&pub, aes, sizeof(aes), ct, sizeof(ct), &ct_len) == 0 &&
	       keyfile_oaep_decrypt(k, ct, ct_len, plain, sizeof(plain), &plain_len) == 0 && plain_len == sizeof(aes) &&
	       memcmp(plain, aes, sizeof(aes)) == 0,
	   "an AES key encrypted by the server's OAEP decrypts to itself");
	ok(keyfile_to_base64(k, &b64, &b64_len) == 0 && b64_len == strlen(b64) && gcry_is_secure(b64),
	   "the key exports as Base64 PKCS#8 in secure memory");
	ok(b64 && decode(b64, &der, &d) == 0 && keyfile_from_der(&back, der.b, der.len, &why) == 0 &&
	       keyfile_public_spki(back, spki2, sizeof(spki2), &spki2_len) == 0 && spki2_len == spki_len &&
	       memcmp(spki, spki2, spki_len) == 0,
	   "and loads back as the same key");
	ok(back && keyfile_oaep_decrypt(back, ct, ct_len, plain, sizeof(plain), &plain_len) == 0 &&
	       memcmp(plain, aes, sizeof(aes)) == 0,
	   "the reloaded key decrypts what was encrypted to the original");
	keyfile_secret_free(b64, b64_len + 1);
	keyfile_free(back);
	keyfile_free(k);
	k = NULL;
	ok(keyfile_generate(&k, 2048) == 0 && k && keyfile_bits(k) == 2048 &&
	       keyfile_public_spki(k, spki, sizeof(spki), &spki_len) == 0 && spki_len == 292,
	   "--rsa-bits 2048 makes a 2048-bit key (292-byte SubjectPublicKeyInfo)");
	keyfile_free(k);
}

int main(void)
{
	if (crypto_init() < 0) {
		tap_diag("libgcrypt does not initialise");
		return 1;
	}
	test_base64();
	test_load();
	test_generate();
	return tap_done();
}
