/* Hex digits and the key fixtures of tests/data/keys/, shared by the tests in C. */
#ifndef EF_TEST_KEYS_H
#define EF_TEST_KEYS_H

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline int hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* tests/data/keys/<name>.<kind>.hex: hex digits; white space and '#' lines ignored. 0 on any error. */
static inline size_t load_hex(const char *name, const char *kind, uint8_t *out, size_t size)
{
	const char *top = getenv("top_srcdir");
	char path[PATH_MAX];
	bool comment = false, line_start = true;
	size_t n = 0;
	int c, hi = -1, v;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/data/keys/%s.%s.hex", top && *top ? top : ".", name, kind);
	f = fopen(path, "r");
	if (!f) {
		printf("# cannot open %s\n", path);
		return 0;
	}
	while ((c = getc(f)) != EOF) {
		if (line_start && c == '#')
			comment = true;
		line_start = c == '\n';
		if (comment) {
			comment = c != '\n';
			continue;
		}
		if (isspace(c))
			continue;
		v = hex_value(c);
		if (v < 0 || n == size) {
			n = 0;
			hi = -1;
			break;
		}
		if (hi < 0) {
			hi = v;
		} else {
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	fclose(f);
	return hi < 0 ? n : 0;
}

#endif
