/*
 * The state every replay test and every input of the session fuzzer starts
 * from (tests/replay/README): client "alice" with a public key and the
 * AES key 000102...0f, client "bob" registered with no key.
 */
#ifndef EF_TEST_FIXTURE_H
#define EF_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

extern const uint8_t fixture_alice_id[WIRE_ID_SIZE];
extern const uint8_t fixture_bob_id[WIRE_ID_SIZE];
extern const uint8_t fixture_alice_aes[16];

/* Create STATE_DIR's database with the fixture, alice_spki as alice's key: 0, or a negative errno (failure.h). */
int fixture_seed(const char *state_dir, const uint8_t *alice_spki, size_t spki_len);
/* The same in the PostgreSQL database of url (a libpq URI), or with url NULL as fixture_seed. */
int fixture_seed_database(const char *url, const char *state_dir, const uint8_t *alice_spki, size_t spki_len);

#endif
