/* Strict parsing of option values shared by the programs. */
#ifndef EF_OPTS_H
#define EF_OPTS_H

#include <stdint.h>

/* A decimal number in [min, max], nothing else around it: 0 or -EINVAL / -ERANGE. */
int opts_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* A size with an optional K, M, G suffix (powers of 1024) in [min, max]. */
int opts_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* "12.4 MiB": a human-readable size. */
const char *opts_human_size(uint64_t bytes, char *buf, unsigned long size);

#endif
