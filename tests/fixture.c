/* The fixture of the replay tests and the session fuzzer (fixture.h), created through the store. */
#include "config.h"

#include "fixture.h"
#include "store.h"

const uint8_t fixture_alice_id[WIRE_ID_SIZE] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88,
                                                0x99, 0x00, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
const uint8_t fixture_bob_id[WIRE_ID_SIZE] = {0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x40, 0x99,
                                              0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
const uint8_t fixture_alice_aes[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                       0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};

int fixture_seed(const char *state_dir, const uint8_t *alice_spki, size_t spki_len)
{
	return fixture_seed_database(NULL, state_dir, alice_spki, spki_len);
}

int fixture_seed_database(const char *url, const char *state_dir, const uint8_t *alice_spki, size_t spki_len)
{
	struct store *st;
	int r;

	if ((r = store_open_database(url, state_dir, 0, false, NULL, NULL, &st)) < 0)
		return r;
	if ((r = store_register_client(st, fixture_alice_id, "alice")) == 0 &&
	    (r = store_register_client(st, fixture_bob_id, "bob")) == 0)
		r = store_set_keys(st, fixture_alice_id, "alice", alice_spki, spki_len, fixture_alice_aes,
		                   sizeof(fixture_alice_aes));
	/* Into the database file itself: the session fuzzer copies that file alone. */
	if (r == 0)
		r = store_checkpoint(st);
	store_close(st);
	return r;
}
