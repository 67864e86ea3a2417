/*
 * The implementations behind cksum_posix_update(), for tests and benchmarks:
 * each computes the same raw CRC, so they can be compared and chained.
 */
#ifndef EF_CKSUM_IMPL_H
#define EF_CKSUM_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* Slicing-by-8 tables; runs everywhere. */
uint32_t cksum_posix_update_table(uint32_t crc, const void *data, size_t len);
/* PCLMULQDQ folding; falls back to the table version when cksum_have_clmul() is 0. */
uint32_t cksum_posix_update_clmul(uint32_t crc, const void *data, size_t len);
/* 1 when this CPU has PCLMULQDQ and SSE4.1 (and this build has the folding code), else 0. */
int cksum_have_clmul(void);

#endif
