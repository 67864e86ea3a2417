/*
 * A deterministic byte stream (xorshift32), shared by the tests in C: the
 * content a test uploads is regenerated from its seed to be checked, never
 * kept in memory.
 */
#ifndef EF_TEST_PRNG_H
#define EF_TEST_PRNG_H

#include <stddef.h>
#include <stdint.h>

/* x must not be 0. */
struct prng {
	uint32_t x;
};

static inline uint32_t prng_next(struct prng *p)
{
	p->x ^= p->x << 13;
	p->x ^= p->x >> 17;
	p->x ^= p->x << 5;
	return p->x;
}

static inline uint8_t prng_byte(struct prng *p)
{
	return (uint8_t)(prng_next(p) >> 24);
}

static inline void prng_fill(struct prng *p, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = prng_byte(p);
}

#endif
