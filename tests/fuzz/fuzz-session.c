/*
 * libFuzzer harness for a whole session: the input is what a client sends
 * on one connection, served by session_run() from a memfd against a real
 * state directory (SQLite store and file vault), so that the state machine,
 * the store and the vault are fuzzed together. Every input starts from the
 * same state: the replay fixture (client alice with a known AES key, so
 * fuzzed uploads can decrypt; client bob with no key).
 *
 * The first input byte chooses the configuration (checksum, AES key size,
 * --fault-checksum, --debug, --compat); the rest is the byte stream.
 */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "fixture.h"
#include "log.h"
#include "session.h"
#include "store.h"
#include "vault.h"
#include "wire.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The replay fixture (tests/fixture.h), with tests/data/keys/rsa-1024-e17 as alice's key. */
static const char alice_spki_hex[] =
    "30819d300d06092a864886f70d010101050003818b0030818702818100a6d46ba936d83fbe3e8718c2b7252c1334c99f"
    "553110d11ef45123e4aa4cdea184028d242bb2e000a4c1c606a964912beff4b09c6ee3e4be28bd555a98c4895582939d"
    "ec3bfae46c98c8c007d12a7d0305921af5193769603d6d51531559800e24a72610fc2de2d8d0f555763aa9f7d671fbf7"
    "4ef25f07b2562d7b740e8bec11020111";

/* Uploads stay small whatever the input claims, so every run is quick. */
#define FUZZ_MAX_FILE (1u << 20)

static struct {
	char base[256];  /* removed at exit */
	char state[300]; /* the state directory of every run */
	uint8_t *db;     /* the fixture database, restored before every run */
	size_t db_len;
	int in, out;
} F;

static void fatal(const char *what)
{
	fprintf(stderr, "fuzz-session: %s: %s\n", what, strerror(errno));
	abort();
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Empty the state directory, keeping the directory itself. */
static void clear_state(void)
{
	static const char *const names[] = {
	    "files", "tmp", "pending", STORE_DB_NAME, STORE_DB_NAME "-wal", STORE_DB_NAME "-shm"};
	char path[400];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", F.state, names[i]);
		if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
			fatal(path);
	}
}

static void remove_base(void)
{
	(void)nftw(F.base, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void restore_fixture(void);

static void seed_fixture(void)
{
	uint8_t spki[sizeof(alice_spki_hex) / 2];
	struct store_client c;
	struct store *st;
	char path[400];
	struct stat sb;
	unsigned v;
	size_t i;
	int fd;

	for (i = 0; i < sizeof(spki); i++) {
		if (sscanf(alice_spki_hex + 2 * i, "%2x", &v) != 1)
			abort();
		spki[i] = (uint8_t)v;
	}
	if (fixture_seed(F.state, spki, sizeof(spki)) < 0)
		fatal("cannot create the fixture database");
	snprintf(path, sizeof(path), "%s/%s", F.state, STORE_DB_NAME);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) < 0)
		fatal(path);
	F.db_len = (size_t)sb.st_size;
	if ((F.db = malloc(F.db_len)) == NULL || read(fd, F.db, F.db_len) != (ssize_t)F.db_len)
		fatal("cannot read the fixture database");
	close(fd);
	/* What every input starts from must hold the fixture: restored, it has alice. */
	restore_fixture();
	if (store_open_readonly(F.state, 0, &st) < 0 || store_get_client(st, fixture_alice_id, &c) < 0)
		fatal("the fixture database, restored, has no client alice");
	store_close(st);
}

static void restore_fixture(void)
{
	char path[400];
	int fd;

	clear_state();
	snprintf(path, sizeof(path), "%s/%s", F.state, STORE_DB_NAME);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    write(fd, F.db, F.db_len) != (ssize_t)F.db_len)
		fatal(path);
	close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	if (crypto_init() < 0)
		fatal("libgcrypt");
	log_open("fuzz-session", LOG_TARGET_STDERR);
	/* Every log line is still formatted (names are escaped before the level is known); only crit is printed. */
	log_set_level(LOG_CRIT);
	snprintf(F.base, sizeof(F.base), "%s/fuzz-session.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(F.base))
		fatal(F.base);
	atexit(remove_base);
	snprintf(F.state, sizeof(F.state), "%s/state", F.base);
	if (mkdir(F.state, 0700) < 0)
		fatal(F.state);
	seed_fixture();
	if ((F.in = memfd_create("fuzz-session-input", MFD_CLOEXEC)) < 0)
		fatal("memfd_create");
	if ((F.out = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
		fatal("/dev/null");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum cksum_algo algos[] = {CKSUM_POSIX, CKSUM_CRC32, CKSUM_CRC32_CIPHERTEXT, CKSUM_POSIX};
	struct session_config cfg = {.idle_timeout = 0, .max_file_size = FUZZ_MAX_FILE, .aes_key_len = 16};
	struct store *st = NULL;
	struct vault *v = NULL;
	unsigned tolerances;
	uint8_t sel;

	if (size < 1)
		return 0;
	sel = data[0];
	cfg.checksum = algos[sel & 3];
	cfg.aes_key_len = sel & 4 ? 32 : 16;
	cfg.fault_checksum = sel & 8 ? 1 : 0;
	cfg.debug = (sel & 16) != 0;
	/* --compat: content-after, short-name, seed004 (short-name left out with it, as efsession refuses that). */
	tolerances =
	    (sel & 32 ? WIRE_TOLERATE_CONTENT_AFTER : 0) | (sel & 64 && !(sel & 128) ? WIRE_TOLERATE_SHORT_NAME : 0);
	cfg.dialect = wire_dialect_tolerant(&wire_standard, tolerances);
	cfg.seed004 = sel & 128 ? wire_dialect_tolerant(&wire_seed004, tolerances) : NULL;
	data++;
	size--;

	/* The file offset is where the last session stopped reading: write at 0, then rewind. */
	if (ftruncate(F.in, 0) < 0 || (size && pwrite(F.in, data, size, 0) != (ssize_t)size) ||
	    lseek(F.in, 0, SEEK_SET) < 0)
		fatal("memfd");
	restore_fixture();
	if (vault_open(F.state, &v) < 0 || store_open(F.state, 0, NULL, NULL, &st) < 0)
		fatal("cannot open the state directory");
	(void)session_run(&cfg, st, v, F.in, F.out);
	store_close(st);
	vault_close(v);
	return 0;
}
