/* A tiny TAP producer shared by the unit tests (one "ok N - what" line per check). */
#ifndef EF_TAP_H
#define EF_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_count;
static int tap_failures;

__attribute__((format(printf, 4, 5))) static inline int tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	printf("%s %d - ", pass ? "ok" : "not ok", ++tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!pass) {
		printf("#   failed at %s:%d\n", file, line);
		tap_failures++;
	}
	fflush(stdout);
	return pass;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)                                                                                         \
	do {                                                                                                           \
		long long tap_g_ = (long long)(got), tap_w_ = (long long)(want);                                       \
		if (!ok(tap_g_ == tap_w_, __VA_ARGS__))                                                                \
			printf("#   got %lld, want %lld\n", tap_g_, tap_w_);                                               \
	} while (0)

static inline void tap_diag(const char *msg)
{
	printf("# %s\n", msg);
}

/* Print the plan and return the exit status for main(). */
static inline int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failures ? 1 : 0;
}

#endif
