/*
 * UTF-8 as RFC 3629 defines it, strictly: no overlong forms, no UTF-16
 * surrogates, nothing past U+10FFFF. The one validator behind client names
 * (efserver-protocol(7), Names) and behind what logs and efctl(8) show of
 * untrusted bytes. Pure: no I/O.
 */
#ifndef EF_UTF8_H
#define EF_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The well-formed sequence that starts s[0..n) (n > 0): its length, 1 to
 * 4, with its code point in *cp; 0 when the bytes there are not one.
 */
size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* Whether the n bytes at s are well-formed UTF-8 throughout. */
bool utf8_valid(const void *s, size_t n);

/*
 * Whether a person must be shown the code point escaped, never raw
 * (efserver-protocol(7), Names): the C0 controls, DEL and the C1 controls,
 * which a terminal obeys, and the bidirectional embeddings, overrides and
 * isolates (U+202A-U+202E, U+2066-U+2069), which reorder the text around them.
 */
bool utf8_hidden_on_display(uint32_t cp);

#endif
