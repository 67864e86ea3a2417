/*
 * test-store: the store module on real SQLite files in a fresh temporary
 * directory. Proves the schema, WAL and 0600 modes whatever the umask; the
 * refusals of every operation and that a refusal changes nothing; that a
 * failing publish or remove callback rolls its transaction back, and its
 * failure is never told in SQLite's words; that a newer schema, or a file
 * that is no database, is refused with the reason noted; and that eight
 * processes opening one brand-new database at the same moment and writing
 * at once never see an error.
 */
#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "failure.h"
#include "store.h"
#include "tap.h"

#define OLD_TIME      "2000-01-01T00:00:00.000Z"
#define N_PROCS       8
#define N_ROUNDS      50 /* four writes each: 200 per process */
#define OPS_PER_ROUND 4
/* Short connections one after another, and the WAL frames (4 KiB pages) they may leave at most. */
#define N_SHORT        200
#define WAL_FRAMES_MAX 64

static char *tmpdir;

static char *xasprintf(const char *a, const char *b)
{
	char *s;

	if (asprintf(&s, "%s/%s", a, b) < 0) {
		perror("asprintf");
		exit(99);
	}
	return s;
}

static char *make_subdir(const char *name)
{
	char *d = xasprintf(tmpdir, name);

	if (mkdir(d, 0700) < 0) {
		perror(d);
		exit(99);
	}
	return d;
}

/* Permission bits of STATE_DIR/efserver.db<suffix>, or -1 if it does not exist. */
static int db_file_mode(const char *dir, const char *suffix)
{
	struct stat sb;
	char *p, *name;
	int mode;

	if (asprintf(&name, "%s%s", STORE_DB_NAME, suffix) < 0)
		exit(99);
	p = xasprintf(dir, name);
	mode = stat(p, &sb) < 0 ? -1 : (int)(sb.st_mode & 07777);
	free(p);
	free(name);
	return mode;
}

/* A direct connection, to look at the database behind the store's back. */
static sqlite3 *raw_open(const char *dir)
{
	char *p = xasprintf(dir, STORE_DB_NAME);
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", p, sqlite3_errmsg(db));
		exit(99);
	}
	sqlite3_busy_timeout(db, 60000);
	free(p);
	return db;
}

static long long raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;
	long long v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static void raw_text(sqlite3 *db, const char *sql, char *buf, size_t size)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t = NULL;

	buf[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		t = sqlite3_column_text(s, 0);
	if (t)
		snprintf(buf, size, "%s", (const char *)t);
	sqlite3_finalize(s);
}

static void raw_exec(sqlite3 *db, const char *sql)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
		exit(99);
	}
}

static void make_id(uint8_t id[WIRE_ID_SIZE], unsigned a, unsigned b)
{
	for (size_t i = 0; i < WIRE_ID_SIZE; i++)
		id[i] = (uint8_t)(0xa0 + i);
	id[0] = (uint8_t)(a >> 8);
	id[1] = (uint8_t)a;
	id[2] = (uint8_t)(b >> 8);
	id[3] = (uint8_t)b;
}

static void fill(uint8_t *buf, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 7);
}

static void make_file(struct store_file *f, const uint8_t id[WIRE_ID_SIZE], const char *file_name,
                      const char *path_name, uint64_t size, uint32_t checksum)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->client_id, id, WIRE_ID_SIZE);
	snprintf(f->file_name, sizeof(f->file_name), "%s", file_name);
	snprintf(f->path_name, sizeof(f->path_name), "%s", path_name);
	f->size = size;
	f->checksum = checksum;
	/* The store sets these itself: garbage here must not leak into the row. */
	f->verified = true;
	f->status = STORE_FILE_FAILED;
	f->attempts = 42;
}

/* A publish or remove callback that counts its calls and returns what it is told to. */
struct callback {
	int calls;
	int ret;
};

static int callback(void *ctx)
{
	struct callback *c = ctx;

	c->calls++;
	return c->ret;
}

struct walk {
	int calls;
	int stop_after;
	bool ordered;
	bool all_keyed;
	bool all_verified;
	char prev[STORE_PATH_MAX + WIRE_NAME_SIZE];
};

static int walk_client(const struct store_client *c, void *ctx)
{
	struct walk *w = ctx;

	if (w->calls > 0 && strcmp(w->prev, c->name) >= 0)
		w->ordered = false;
	if (c->public_key_len == 0 || c->aes_key_len == 0)
		w->all_keyed = false;
	snprintf(w->prev, sizeof(w->prev), "%s", c->name);
	w->calls++;
	return w->calls == w->stop_after ? 7 : 0;
}

static int walk_file(const struct store_file *f, void *ctx)
{
	struct walk *w = ctx;
	char key[sizeof(w->prev)];
	char hex[WIRE_ID_HEX_SIZE];

	for (size_t i = 0; i < WIRE_ID_SIZE; i++)
		snprintf(hex + 2 * i, 3, "%02x", f->client_id[i]);
	snprintf(key, sizeof(key), "%s/%s", hex, f->path_name);
	if (w->calls > 0 && strcmp(w->prev, key) >= 0)
		w->ordered = false;
	if (!f->verified || f->status != STORE_FILE_STORED || f->attempts != 1)
		w->all_verified = false;
	snprintf(w->prev, sizeof(w->prev), "%s", key);
	w->calls++;
	return w->calls == w->stop_after ? 9 : 0;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

static void test_schema(const char *dir, struct store **out)
{
	char mode[16];
	sqlite3 *db;

	is_int(store_open(dir, 0, out), 0, "store_open creates a new database in an empty state directory");
	is_int(db_file_mode(dir, ""), 0600, "the database file is mode 0600 under umask 0");
	is_int(db_file_mode(dir, "-wal"), 0600, "the -wal file is mode 0600 under umask 0");
	is_int(db_file_mode(dir, "-shm"), 0600, "the -shm file is mode 0600 under umask 0");

	db = raw_open(dir);
	is_int(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION, "user_version is STORE_SCHEMA_VERSION");
	raw_text(db, "PRAGMA journal_mode", mode, sizeof(mode));
	ok(strcmp(mode, "wal") == 0, "journal_mode is wal (got %s)", mode);
	is_int(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('clients', 'files')"),
	       2, "tables clients and files exist");
	sqlite3_close(db);
}

static void test_clients(const char *dir, struct store *st)
{
	uint8_t alice[WIRE_ID_SIZE], bob[WIRE_ID_SIZE], other[WIRE_ID_SIZE];
	struct store_client c;
	sqlite3 *db;

	make_id(alice, 1, 1);
	make_id(bob, 1, 2);
	make_id(other, 1, 3);

	is_int(store_register_client(st, alice, "alice"), 0, "register alice");
	is_int(store_register_client(st, other, "alice"), -EEXIST, "a taken name is refused with -EEXIST");
	is_int(store_register_client(st, alice, "alice2"), -EEXIST, "a taken id is refused with -EEXIST");
	is_int(store_register_client(st, bob, "bob"), 0, "a different name and id are registered");
	is_int(store_register_client(st, other, ""), -EINVAL, "an empty name is refused with -EINVAL");

	memset(&c, 0xee, sizeof(c));
	is_int(store_get_client(st, alice, &c), 0, "get alice by id");
	ok(strcmp(c.name, "alice") == 0 && memcmp(c.id, alice, WIRE_ID_SIZE) == 0, "get returns her id and name");
	ok(c.public_key_len == 0 && c.aes_key_len == 0, "a new client has no public key and no AES key");
	is_int(c.file_count, 0, "a new client has no files");
	ok(strlen(c.last_seen) == 24 && c.last_seen[10] == 'T' && c.last_seen[23] == 'Z',
	   "last seen is ISO 8601 UTC with milliseconds (%s)", c.last_seen);

	memset(&c, 0, sizeof(c));
	is_int(store_find_client_by_name(st, "bob", &c), 0, "find bob by name");
	ok(memcmp(c.id, bob, WIRE_ID_SIZE) == 0, "find returns bob's id");
	memset(&c, 0x55, sizeof(c));
	is_int(store_get_client(st, other, &c), -ENOENT, "get of an unknown id is -ENOENT");
	ok(c.name[0] == 0x55 && c.file_count == 0x5555555555555555LL, "a failed get leaves the output untouched");
	is_int(store_find_client_by_name(st, "carol", &c), -ENOENT, "find of an unknown name is -ENOENT");

	db = raw_open(dir);
	raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
	is_int(store_touch(st, alice), 0, "touch alice");
	is_int(store_get_client(st, alice, &c), 0, "get alice after touch");
	ok(strcmp(c.last_seen, OLD_TIME) != 0, "touch changed last seen (%s)", c.last_seen);
	is_int(store_get_client(st, bob, &c), 0, "get bob after touching alice");
	ok(strcmp(c.last_seen, OLD_TIME) == 0, "touch changed only that client's last seen");
	is_int(store_touch(st, other), 0, "touch of an unknown id is not an error");
	is_int(raw_int(db, "SELECT count(*) FROM clients"), 2, "touch of an unknown id adds no row");
	sqlite3_close(db);
}

static void test_keys(const char *dir, struct store *st)
{
	uint8_t alice[WIRE_ID_SIZE], bob[WIRE_ID_SIZE], other[WIRE_ID_SIZE];
	uint8_t key1[294], key2[294], aes1[32], aes2[32], aes3[32];
	struct store_client c;
	sqlite3 *db;

	make_id(alice, 1, 1);
	make_id(bob, 1, 2);
	make_id(other, 1, 3);
	fill(key1, sizeof(key1), 1);
	fill(key2, sizeof(key2), 2);
	fill(aes1, sizeof(aes1), 3);
	fill(aes2, sizeof(aes2), 4);
	fill(aes3, sizeof(aes3), 5);

	is_int(store_set_keys(st, other, "alice", key1, sizeof(key1), aes1, sizeof(aes1)), -ENOENT,
	       "set_keys for an unknown id is -ENOENT");
	is_int(store_set_keys(st, alice, "bob", key1, sizeof(key1), aes1, sizeof(aes1)), -ENOENT,
	       "set_keys under a name that is not the id's is -ENOENT");
	is_int(store_get_client(st, alice, &c), 0, "get alice after refused set_keys");
	ok(c.public_key_len == 0 && c.aes_key_len == 0, "refused set_keys stored nothing");

	is_int(store_set_keys(st, alice, "alice", key1, sizeof(key1), aes1, sizeof(aes1)), 0,
	       "set_keys stores alice's first public key");
	is_int(store_get_client(st, alice, &c), 0, "get alice after set_keys");
	ok(c.public_key_len == sizeof(key1) && memcmp(c.public_key, key1, sizeof(key1)) == 0,
	   "the first public key is stored");
	ok(c.aes_key_len == sizeof(aes1) && memcmp(c.aes_key, aes1, sizeof(aes1)) == 0, "the AES key is stored");

	is_int(store_set_keys(st, alice, "alice", key1, sizeof(key1), aes2, sizeof(aes2)), 0,
	       "set_keys with the same public key again is accepted");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the second set_keys");
	ok(c.aes_key_len == sizeof(aes2) && memcmp(c.aes_key, aes2, sizeof(aes2)) == 0,
	   "the same key again stores the new AES key");

	db = raw_open(dir);
	raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
	is_int(store_set_keys(st, alice, "alice", key2, sizeof(key2), aes3, sizeof(aes3)), -EPERM,
	       "a different public key is refused with -EPERM");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the refused key");
	ok(c.public_key_len == sizeof(key1) && memcmp(c.public_key, key1, sizeof(key1)) == 0,
	   "the refused key did not replace the first one");
	ok(c.aes_key_len == sizeof(aes2) && memcmp(c.aes_key, aes2, sizeof(aes2)) == 0,
	   "the refused key did not change the AES key");
	ok(strcmp(c.last_seen, OLD_TIME) == 0, "the refusal changed nothing, not even last seen");

	is_int(store_set_aes_key(st, other, aes3, sizeof(aes3)), -ENOENT, "set_aes_key for an unknown id is -ENOENT");
	is_int(store_set_aes_key(st, bob, aes3, sizeof(aes3)), -ENOENT,
	       "set_aes_key for a client with no public key is -ENOENT");
	is_int(store_get_client(st, bob, &c), 0, "get bob after the refused set_aes_key");
	ok(c.aes_key_len == 0, "the refused set_aes_key stored no key");
	is_int(store_set_aes_key(st, alice, aes3, sizeof(aes3)), 0, "set_aes_key replaces alice's AES key");
	is_int(store_get_client(st, alice, &c), 0, "get alice after set_aes_key");
	ok(c.aes_key_len == sizeof(aes3) && memcmp(c.aes_key, aes3, sizeof(aes3)) == 0, "the new AES key is stored");
	ok(strcmp(c.last_seen, OLD_TIME) != 0, "set_aes_key updated last seen");
	sqlite3_close(db);
	explicit_bzero(&c, sizeof(c));
}

static void test_files(const char *dir, struct store *st)
{
	uint8_t alice[WIRE_ID_SIZE], other[WIRE_ID_SIZE];
	const char *path = "files/a0a1/report.txt";
	struct callback pub = {0}, rm = {0};
	struct store_file f, g;
	struct store_client c;
	long long attempts = 0;
	sqlite3 *db;

	make_id(alice, 1, 1);
	make_id(other, 1, 3);

	make_file(&f, alice, "docs/report.txt", path, 1000, 0xdeadbeef);
	for (long long i = 1; i <= 3; i++) {
		attempts = 0;
		is_int(store_record_file(st, &f, callback, &pub, &attempts), 0, "record_file, upload %lld", i);
		is_int(attempts, i, "upload %lld of the same file name counts attempt %lld", i, i);
	}
	is_int(pub.calls, 3, "publish was called once per upload");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file of the recorded file");
	ok(strcmp(g.file_name, "docs/report.txt") == 0 && strcmp(g.path_name, path) == 0 &&
	       memcmp(g.client_id, alice, WIRE_ID_SIZE) == 0,
	   "the row holds the client, file name and path as recorded");
	ok(g.status == STORE_FILE_STORED && !g.verified && g.attempts == 3,
	   "a recorded file is stored, unverified, whatever the caller's struct said");
	ok(g.size == 1000 && g.checksum == 0xdeadbeef, "size and checksum are stored (full 32-bit checksum)");
	ok(strlen(g.received) == 24, "received time is set (%s)", g.received);
	is_int(store_get_client(st, alice, &c), 0, "get alice after uploads");
	is_int(c.file_count, 1, "three uploads of one file name are one row");

	make_file(&f, alice, "other\\report.txt", path, 2000, 7);
	is_int(store_record_file(st, &f, callback, &pub, &attempts), 0,
	       "record a different file name on the same path");
	is_int(attempts, 1, "a different file name on the same path starts again at attempt 1");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after the new name");
	ok(strcmp(g.file_name, "other\\report.txt") == 0 && g.size == 2000, "the row holds the latest name as sent");

	db = raw_open(dir);
	raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
	pub.ret = -EIO;
	make_file(&f, alice, "other\\report.txt", path, 3000, 8);
	attempts = -1;
	is_int(store_record_file(st, &f, callback, &pub, &attempts), -EIO,
	       "record_file returns the error of a failing publish");
	ok(strcmp(failure_str(-EIO), strerror(EIO)) == 0,
	   "and that failure is told in its own words, with none of SQLite's");
	is_int(attempts, -1, "a failed record_file does not write *attempts");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after the failed publish");
	ok(g.attempts == 1 && g.size == 2000 && g.checksum == 7, "the failed publish rolled the row back");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the failed publish");
	ok(strcmp(c.last_seen, OLD_TIME) == 0, "the failed publish rolled last seen back too");
	pub.ret = 0;

	make_file(&f, other, "x.txt", "files/00/x.txt", 1, 1);
	is_int(store_record_file(st, &f, callback, &pub, &attempts), -ENOENT,
	       "record_file for an unregistered client is -ENOENT");
	ok(strcmp(failure_str(-ENOENT), strerror(ENOENT)) == 0, "a refusal notes no failure of the database");

	is_int(store_mark_verified(st, alice, "files/a0a1/never.txt", "never.txt"), -ENOENT,
	       "mark_verified of a never uploaded file is -ENOENT");
	is_int(store_check_file(st, alice, "files/a0a1/never.txt", "never.txt"), -ENOENT,
	       "check_file of a never uploaded file is -ENOENT");
	is_int(store_give_up(st, alice, "files/a0a1/never.txt", "never.txt", callback, &rm), -ENOENT,
	       "give_up of a never uploaded file is -ENOENT");
	is_int(rm.calls, 0, "give_up of a never uploaded file does not call remove");
	is_int(store_mark_verified(st, alice, path, "docs/report.txt"), -ENOENT,
	       "mark_verified under a file name other than the stored one is -ENOENT");
	is_int(store_check_file(st, alice, path, "docs/report.txt"), -ENOENT,
	       "check_file under a file name other than the stored one is -ENOENT");
	is_int(store_give_up(st, alice, path, "docs/report.txt", callback, &rm), -ENOENT,
	       "give_up under a file name other than the stored one is -ENOENT");
	is_int(store_mark_verified(st, other, path, "other\\report.txt"), -ENOENT,
	       "mark_verified for another client's path is -ENOENT");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the refusals");
	ok(strcmp(c.last_seen, OLD_TIME) == 0, "refused file operations changed nothing, not even last seen");

	is_int(store_check_file(st, alice, path, "other\\report.txt"), 0, "check_file of the stored file");
	is_int(store_get_client(st, alice, &c), 0, "get alice after check_file");
	ok(strcmp(c.last_seen, OLD_TIME) != 0, "check_file updated last seen");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after check_file");
	ok(!g.verified && g.status == STORE_FILE_STORED && g.attempts == 1, "check_file changed no file column");

	raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
	is_int(store_mark_verified(st, alice, path, "other\\report.txt"), 0, "mark_verified of the stored file");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after mark_verified");
	ok(g.verified && g.status == STORE_FILE_STORED, "mark_verified sets verified");
	is_int(store_get_client(st, alice, &c), 0, "get alice after mark_verified");
	ok(strcmp(c.last_seen, OLD_TIME) != 0, "mark_verified updated last seen");
	is_int(store_mark_verified(st, alice, path, "other\\report.txt"), 0, "mark_verified twice is fine");

	raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
	rm.ret = -EACCES;
	is_int(store_give_up(st, alice, path, "other\\report.txt", callback, &rm), -EACCES,
	       "give_up returns the error of a failing remove");
	is_int(rm.calls, 1, "give_up called remove");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after the failed remove");
	ok(g.verified && g.status == STORE_FILE_STORED, "the failed remove rolled give_up back");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the failed remove");
	ok(strcmp(c.last_seen, OLD_TIME) == 0, "the failed remove rolled last seen back too");
	rm.ret = 0;

	is_int(store_give_up(st, alice, path, "other\\report.txt", callback, &rm), 0, "give_up of the stored file");
	is_int(rm.calls, 2, "give_up called remove inside its transaction");
	is_int(store_get_file(st, alice, path, &g), 0, "the row survives give_up");
	ok(g.status == STORE_FILE_FAILED && !g.verified, "give_up records the file as failed and not verified");
	is_int(store_mark_verified(st, alice, path, "other\\report.txt"), -ENOENT,
	       "mark_verified after give_up is -ENOENT");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after the refused mark_verified");
	ok(g.status == STORE_FILE_FAILED && !g.verified, "the refused mark_verified changed nothing");
	is_int(store_check_file(st, alice, path, "other\\report.txt"), 0, "check_file still finds a given up file");

	make_file(&f, alice, "other\\report.txt", path, 4000, 9);
	is_int(store_record_file(st, &f, NULL, NULL, &attempts), 0, "a given up file can be uploaded again");
	is_int(attempts, 2, "the new upload counts on from the earlier attempts of that name");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after the new upload");
	ok(g.status == STORE_FILE_STORED && !g.verified && g.size == 4000, "the new upload is stored again");
	is_int(store_get_file(st, alice, "files/a0a1/never.txt", &g), -ENOENT,
	       "get_file of a never uploaded path is -ENOENT");
	sqlite3_close(db);
}

static void test_iteration(struct store *st)
{
	uint8_t alice[WIRE_ID_SIZE], carol[WIRE_ID_SIZE];
	struct store_file f;
	struct walk w;

	make_id(alice, 1, 1);
	make_id(carol, 1, 4);
	is_int(store_register_client(st, carol, "aaron"), 0, "register a third client whose name sorts first");
	make_file(&f, carol, "b.txt", "files/x/b.txt", 5, 5);
	is_int(store_record_file(st, &f, NULL, NULL, NULL), 0, "record a file for him");
	make_file(&f, alice, "a.txt", "files/a0a1/a.txt", 5, 5);
	is_int(store_record_file(st, &f, NULL, NULL, NULL), 0, "record a second file for alice");

	memset(&w, 0, sizeof(w));
	w.ordered = true;
	is_int(store_each_client(st, walk_client, &w), 0, "each_client walks to the end");
	is_int(w.calls, 3, "each_client visits every client");
	ok(w.ordered, "each_client goes in name order");
	memset(&w, 0, sizeof(w));
	w.stop_after = 1;
	is_int(store_each_client(st, walk_client, &w), 7, "each_client stops with the callback's value");
	is_int(w.calls, 1, "each_client stops at the first non-zero return");

	memset(&w, 0, sizeof(w));
	w.ordered = true;
	is_int(store_each_file(st, NULL, walk_file, &w), 0, "each_file over all clients");
	is_int(w.calls, 3, "each_file visits every file");
	ok(w.ordered, "each_file goes in client then path order");
	memset(&w, 0, sizeof(w));
	w.ordered = true;
	is_int(store_each_file(st, alice, walk_file, &w), 0, "each_file of one client");
	is_int(w.calls, 2, "each_file of one client visits only hers");
	memset(&w, 0, sizeof(w));
	w.stop_after = 2;
	is_int(store_each_file(st, NULL, walk_file, &w), 9, "each_file stops with the callback's value");

	is_int(store_integrity_check(st), 0, "integrity_check passes");
}

static void test_reopen(const char *dir)
{
	uint8_t alice[WIRE_ID_SIZE];
	struct store_client c;
	struct store *st = NULL, *ro = NULL;

	make_id(alice, 1, 1);
	is_int(store_open(dir, 0, &st), 0, "store_open of an existing database");
	is_int(store_get_client(st, alice, &c), 0, "the data survives close and reopen");
	is_int(store_open_readonly(dir, 0, &ro), 0, "store_open_readonly beside a writer");
	is_int(store_find_client_by_name(ro, "alice", &c), 0, "a read-only store reads");
	is_int(store_register_client(ro, alice, "mallory"), -EROFS, "a read-only store refuses writes with -EROFS");
	is_int(store_integrity_check(ro), 0, "integrity_check on a read-only store");
	store_close(ro);
	store_close(st);
}

static void test_versions(void)
{
	char *newer = make_subdir("newer"), *none = make_subdir("none");
	const char *why;
	char sql[64];
	struct store *st = NULL;
	sqlite3 *db;

	db = raw_open(newer);
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 1);
	raw_exec(db, sql);
	sqlite3_close(db);
	is_int(store_open(newer, 0, &st), -EPROTO, "a database with a newer user_version is refused with -EPROTO");
	ok(st == NULL, "a refused open returns no store");
	why = failure_str(-EPROTO);
	ok(strstr(why, "the database schema is newer than this program knows") != NULL,
	   "and says why, though it returns no store (%s)", why);
	is_int(store_open_readonly(newer, 0, &st), -EPROTO, "store_open_readonly refuses it too");
	why = failure_str(-EPROTO);
	ok(strstr(why, "newer than this program knows") != NULL, "and says why (%s)", why);
	db = raw_open(newer);
	is_int(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION + 1, "the refused database keeps its version");
	is_int(raw_int(db, "SELECT count(*) FROM sqlite_master"), 0, "nothing was created in the refused database");
	sqlite3_close(db);

	is_int(store_open_readonly(none, 0, &st), -ENOENT, "store_open_readonly of a missing database is -ENOENT");
	is_int(db_file_mode(none, ""), -1, "store_open_readonly created no file");
	free(newer);
	free(none);
}

/* A file that is not a database: the open fails, and SQLite's words say so. */
static void test_not_a_database(void)
{
	char *dir = make_subdir("garbage"), *path = xasprintf(dir, STORE_DB_NAME);
	struct store *st = NULL;
	FILE *f = fopen(path, "w");
	const char *why;
	int r;

	if (!f || fputs("This is not an SQLite database, but it is long enough to be read as one.\n", f) < 0 ||
	    fclose(f) != 0) {
		perror(path);
		exit(99);
	}
	r = store_open(dir, 0, &st);
	ok(r < 0 && st == NULL, "store_open of a file that is not a database fails (%d)", r);
	why = failure_str(r);
	ok(strstr(why, "SQLite: file is not a database") != NULL, "with SQLite's words for it (%s)", why);
	free(path);
	free(dir);
}

struct child_result {
	int index;
	int ops;
	int errors;
	int busy;
	int published;
	int first_error;
};

static int publish_nothing(void *ctx)
{
	int *published = ctx;

	(*published)++;
	return 0;
}

static void child_note(struct child_result *res, int r)
{
	res->ops++;
	if (r >= 0)
		return;
	res->errors++;
	if (r == -EBUSY)
		res->busy++;
	if (res->first_error == 0)
		res->first_error = r;
}

/* One efsession's worth of writes: register, send a key, upload, confirm. */
static void child_run(const char *dir, int index, int start_fd, int result_fd)
{
	struct child_result res = {.index = index};
	uint8_t id[WIRE_ID_SIZE], spki[300], aes[32];
	char name[32], path[64];
	struct store_file f;
	struct store *st = NULL;
	long long attempts;
	char c;
	int r;

	/* Everyone blocks here until the parent closes the pipe, then all open at once. */
	while (read(start_fd, &c, 1) > 0)
		continue;
	r = store_open(dir, 0, &st);
	if (r < 0) {
		child_note(&res, r);
	} else {
		for (int i = 0; i < N_ROUNDS; i++) {
			make_id(id, 0x100 + (unsigned)index, (unsigned)i);
			snprintf(name, sizeof(name), "proc%d-client%d", index, i);
			snprintf(path, sizeof(path), "files/p%d/c%d.bin", index, i);
			fill(spki, sizeof(spki), (uint8_t)i);
			fill(aes, sizeof(aes), (uint8_t)(i + index));
			child_note(&res, store_register_client(st, id, name));
			child_note(&res, store_set_keys(st, id, name, spki, sizeof(spki), aes, sizeof(aes)));
			make_file(&f, id, "upload.bin", path, (uint64_t)i * 16, (uint32_t)i);
			attempts = 0;
			r = store_record_file(st, &f, publish_nothing, &res.published, &attempts);
			child_note(&res, r == 0 && attempts != 1 ? -EILSEQ : r);
			child_note(&res, store_mark_verified(st, id, path, "upload.bin"));
		}
		store_close(st);
	}
	if (write(result_fd, &res, sizeof(res)) != (ssize_t)sizeof(res))
		_exit(2);
	_exit(0);
}

static void test_concurrency(void)
{
	char *dir = make_subdir("concurrent");
	struct child_result res, total = {0};
	int start[2], results[2], status;
	int exited_ok = 0, reports = 0;
	struct store *st = NULL;
	struct walk w;
	char mode[16];
	sqlite3 *db;
	pid_t pids[N_PROCS];

	if (pipe(start) < 0 || pipe(results) < 0) {
		perror("pipe");
		exit(99);
	}
	fflush(stdout);
	for (int i = 0; i < N_PROCS; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			exit(99);
		}
		if (pids[i] == 0) {
			close(start[1]);
			close(results[0]);
			child_run(dir, i, start[0], results[1]);
		}
	}
	close(start[0]);
	close(results[1]);
	close(start[1]);
	while (read(results[0], &res, sizeof(res)) == (ssize_t)sizeof(res)) {
		reports++;
		total.ops += res.ops;
		total.errors += res.errors;
		total.busy += res.busy;
		total.published += res.published;
		if (res.errors) {
			printf("# process %d: %d errors, %d -EBUSY, first %s\n", res.index, res.errors, res.busy,
			       strerror(-res.first_error));
		}
	}
	close(results[0]);
	for (int i = 0; i < N_PROCS; i++) {
		if (waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			exited_ok++;
	}

	is_int(exited_ok, N_PROCS, "all %d processes exited cleanly", N_PROCS);
	is_int(reports, N_PROCS, "all %d processes reported", N_PROCS);
	is_int(total.ops, N_PROCS * N_ROUNDS * OPS_PER_ROUND, "%d write operations were made", total.ops);
	is_int(total.busy, 0, "no operation returned -EBUSY");
	is_int(total.errors, 0, "no operation returned any error");
	is_int(total.published, N_PROCS * N_ROUNDS, "publish ran once per recorded file");
	printf("# %d processes, %d operations, %d errors, %d -EBUSY\n", N_PROCS, total.ops, total.errors, total.busy);

	is_int(store_open(dir, 0, &st), 0, "open the database the processes wrote");
	memset(&w, 0, sizeof(w));
	w.all_keyed = true;
	is_int(store_each_client(st, walk_client, &w), 0, "walk the clients");
	is_int(w.calls, N_PROCS * N_ROUNDS, "every registration is there");
	ok(w.all_keyed, "every client has its public key and AES key");
	memset(&w, 0, sizeof(w));
	w.all_verified = true;
	is_int(store_each_file(st, NULL, walk_file, &w), 0, "walk the files");
	is_int(w.calls, N_PROCS * N_ROUNDS, "every recorded file is there");
	ok(w.all_verified, "every file is verified after one attempt");
	is_int(store_integrity_check(st), 0, "integrity_check passes after the concurrent writes");
	store_close(st);

	db = raw_open(dir);
	is_int(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION, "the racing opens created the schema once");
	raw_text(db, "PRAGMA journal_mode", mode, sizeof(mode));
	ok(strcmp(mode, "wal") == 0, "the racing opens left the database in WAL mode");
	sqlite3_close(db);
	is_int(db_file_mode(dir, ""), 0600, "the racing opens created the database 0600");
	free(dir);
}

/* The publication callback of a process killed before its commit. */
static int die_in_publish(void *ctx)
{
	(void)ctx;
	_exit(0);
}

/*
 * A session killed after its file replaced the stored copy but before the
 * row recording it committed: the row that said verified must not say so
 * of content the client never confirmed.
 */
/*
 * One short connection after another, as with a process per request: each
 * one rebuilds the WAL index, which remembers no checkpoint, so the WAL must
 * be emptied by a closing connection or it grows with every commit (and
 * every process reads it whole). It stays within a few dozen frames, and
 * no commit is lost.
 */
static void test_short_connections(void)
{
	char *dir = make_subdir("short"), *wal = xasprintf(dir, STORE_DB_NAME "-wal");
	long long largest = 0;
	uint8_t id[WIRE_ID_SIZE];
	char name[32];
	struct stat sb;
	struct store *st;
	struct walk w = {0};
	int failed = 0;

	for (unsigned i = 0; i < N_SHORT; i++) {
		make_id(id, 3, i);
		snprintf(name, sizeof(name), "short-%u", i);
		st = NULL;
		if (store_open(dir, 0, &st) < 0 || store_register_client(st, id, name) < 0)
			failed++;
		store_close(st);
		if (stat(wal, &sb) == 0 && sb.st_size > largest)
			largest = sb.st_size;
	}
	is_int(failed, 0, "%d short connections open the store and register a client each", N_SHORT);
	ok(largest <= 32 + WAL_FRAMES_MAX * (4096 + 24), "the WAL never held more than %d frames (largest %lld bytes)",
	   WAL_FRAMES_MAX, largest);
	st = NULL;
	is_int(store_open_readonly(dir, 0, &st), 0, "open the store after them");
	if (st)
		is_int(store_each_client(st, walk_client, &w), 0, "walk the clients");
	is_int(w.calls, N_SHORT, "every client registered is there");
	if (st)
		is_int(store_integrity_check(st), 0, "integrity_check passes");
	store_close(st);
	free(wal);
	free(dir);
}

static void test_crash_during_publish(void)
{
	const char *path = "files/c0/doc.txt";
	char *dir = make_subdir("crash");
	uint8_t id[WIRE_ID_SIZE];
	struct store *st = NULL;
	struct store_file f, g;
	int status = -1;
	pid_t pid;

	make_id(id, 7, 7);
	make_file(&f, id, "doc.txt", path, 100, 1);
	if (store_open(dir, 0, &st) < 0 || store_register_client(st, id, "crash") < 0 ||
	    store_record_file(st, &f, NULL, NULL, NULL) < 0 || store_mark_verified(st, id, path, "doc.txt") < 0) {
		ok(0, "crash set-up: a verified file");
		store_close(st);
		free(dir);
		return;
	}
	pid = fork();
	if (pid == 0) {
		struct store *child = NULL;
		make_file(&f, id, "doc.txt", path, 200, 2);
		if (store_open(dir, 0, &child) == 0)
			(void)store_record_file(child, &f, die_in_publish, NULL, NULL);
		_exit(1);
	}
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "a session replacing a verified file dies inside publication");
	is_int(store_get_file(st, id, path, &g), 0, "the row survives the crash");
	ok(!g.verified, "it no longer says verified: the content under its name may be the unconfirmed new copy");
	ok(g.size == 100 && g.checksum == 1 && g.attempts == 1, "its size, checksum and attempts are the earlier ones");
	is_int(store_integrity_check(st), 0, "the database is intact after the crash");
	store_close(st);
	free(dir);
}

int main(void)
{
	const char *base = getenv("TMPDIR");
	struct store *st = NULL;
	char *dir;

	if (!base || !*base)
		base = "/tmp";
	tmpdir = xasprintf(base, "test-store.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror(tmpdir);
		return 99;
	}
	/* The store must not rely on the caller's umask to keep the database private. */
	umask(0);

	dir = make_subdir("state");
	test_schema(dir, &st);
	if (st) {
		test_clients(dir, st);
		test_keys(dir, st);
		test_files(dir, st);
		test_iteration(st);
		store_close(st);
		test_reopen(dir);
	}
	test_versions();
	test_not_a_database();
	test_crash_during_publish();
	test_short_connections();
	test_concurrency();

	free(dir);
	if (nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
		perror(tmpdir);
	free(tmpdir);
	return tap_done();
}
