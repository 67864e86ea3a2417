/*
 * libFuzzer harness for the DER public-key reader (efserver-protocol(7),
 * Requests): any bytes as the public_key[K] field of 1026/1101. A key it
 * accepts lies inside the field, has a 1024-4096-bit modulus and an odd
 * exponent of at least 3, and survives re-encoding as SPKI unchanged.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "der.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(const uint8_t *p, size_t len, const uint8_t *buf, size_t size)
{
	return p >= buf && len <= size && (size_t)(p - buf) <= size - len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf, spki[DER_RSA_SPKI_MAX];
	struct der_rsa_key k, k2;
	size_t i;
	long n;

	/* The session hands the reader exactly K bytes: a copy of that size lets ASan see any overread. */
	if (size > WIRE_KEY_FIELD_MAX)
		return 0;
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (der_read_rsa_public(buf, size, &k) == DER_OK) {
		if (!inside(k.n, k.n_len, buf, size) || !inside(k.e, k.e_len, buf, size) || k.der_len > size)
			abort();
		if (k.bits < DER_RSA_MIN_BITS || k.bits > DER_RSA_MAX_BITS || k.n_len != (k.bits + 7) / 8 ||
		    k.n[0] == 0)
			abort();
		if (!(k.n[k.n_len - 1] & 1) || k.e_len == 0 || k.e_len > DER_RSA_EXPONENT_MAX_BYTES ||
		    !(k.e[k.e_len - 1] & 1) || (k.e_len == 1 && k.e[0] < 3))
			abort();
		for (i = k.der_len; i < size; i++)
			if (buf[i] != 0)
				abort();
		n = der_write_rsa_spki(k.n, k.n_len, k.e, k.e_len, spki, sizeof(spki));
		if (n < 0)
			abort();
		if (der_read_rsa_public(spki, (size_t)n, &k2) != DER_OK || k2.der_len != (size_t)n ||
		    k2.n_len != k.n_len || memcmp(k2.n, k.n, k.n_len) != 0 || k2.e_len != k.e_len ||
		    memcmp(k2.e, k.e, k.e_len) != 0)
			abort();
	}
	free(buf);
	return 0;
}
