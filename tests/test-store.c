/*
 * test-store: the store module on real SQLite files in a fresh temporary
 * directory. Proves the schema, WAL and 0600 modes whatever the umask; the
 * refusals of every operation and that a refusal changes nothing; that a
 * failing callback into the files rolls its transaction back, and its
 * failure is never told in SQLite's words; kept-aside copies of verified
 * files, put in place by a confirmation and dropped by the other verdicts,
 * and rows a crash left between a confirmation's rename and its commit
 * rolled forward; that a version-1 database with rows migrates in place;
 * the counters and counts of the limits of efsession(8), and their checks;
 * that a newer schema, or a file that is no database, is refused with the
 * reason noted; that no database is created where it must not be; and that
 * eight processes opening one brand-new database at the same moment and
 * writing at once never see an error.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
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
#ifdef HAVE_POSTGRESQL
#include <libpq-fe.h>
#endif

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
/*
 * $EFSERVER_TEST_DATABASE: the PostgreSQL database to test the store on
 * (tests/store-pg.sh), emptied for each test that wants a new database;
 * else SQLite in a state directory of each test.
 */
static const char *pg_url;

/* A check of the other engine's, not of this one's: counted, and said why. */
static void skip(const char *why)
{
	printf("ok %d # SKIP %s\n", ++tap_count, why);
}

static char *xasprintf(const char *a, const char *b)
{
	char *s;

	if (asprintf(&s, "%s/%s", a, b) < 0) {
		perror("asprintf");
		exit(99);
	}
	return s;
}

struct raw;
static void raw_exec(struct raw *db, const char *sql);
static struct raw *raw_open(const char *dir);
static void raw_close(struct raw *db);

/* A new state directory, and on PostgreSQL an empty database, for a test. */
static char *make_subdir(const char *name)
{
	char *d = xasprintf(tmpdir, name);
	struct raw *db;

	if (mkdir(d, 0700) < 0) {
		perror(d);
		exit(99);
	}
	if (pg_url) {
		db = raw_open(d);
		raw_exec(db, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
		raw_close(db);
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
struct raw {
	sqlite3 *lite;
#ifdef HAVE_POSTGRESQL
	PGconn *pg;
#endif
};

static struct raw *raw_open(const char *dir)
{
	struct raw *db = calloc(1, sizeof(*db));
	char *p;

	if (!db)
		exit(99);
#ifdef HAVE_POSTGRESQL
	if (pg_url) {
		db->pg = PQconnectdb(pg_url);
		if (PQstatus(db->pg) != CONNECTION_OK) {
			fprintf(stderr, "%s", PQerrorMessage(db->pg));
			exit(99);
		}
		PQclear(PQexec(db->pg, "SET client_min_messages = warning"));
		return db;
	}
#endif
	p = xasprintf(dir, STORE_DB_NAME);
	if (sqlite3_open_v2(p, &db->lite, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", p, sqlite3_errmsg(db->lite));
		exit(99);
	}
	sqlite3_busy_timeout(db->lite, 60000);
	free(p);
	return db;
}

static void raw_close(struct raw *db)
{
#ifdef HAVE_POSTGRESQL
	if (db->pg)
		PQfinish(db->pg);
#endif
	sqlite3_close(db->lite);
	free(db);
}

/* The first column of the first row, as text ("" for none). */
static void raw_text(struct raw *db, const char *sql, char *buf, size_t size)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t = NULL;

	buf[0] = '\0';
#ifdef HAVE_POSTGRESQL
	if (db->pg) {
		PGresult *res = PQexec(db->pg, sql);

		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
			snprintf(buf, size, "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		return;
	}
#endif
	if (sqlite3_prepare_v2(db->lite, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		t = sqlite3_column_text(s, 0);
	if (t)
		snprintf(buf, size, "%s", (const char *)t);
	sqlite3_finalize(s);
}

static long long raw_int(struct raw *db, const char *sql)
{
	char buf[32];

	raw_text(db, sql, buf, sizeof(buf));
	return buf[0] ? strtoll(buf, NULL, 10) : -1;
}

static void raw_exec(struct raw *db, const char *sql)
{
#ifdef HAVE_POSTGRESQL
	if (db->pg) {
		PGresult *res = PQexec(db->pg, sql);

		if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
			fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(db->pg));
			exit(99);
		}
		PQclear(res);
		return;
	}
#endif
	if (sqlite3_exec(db->lite, sql, NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db->lite));
		exit(99);
	}
}

/* The store of a test, on the engine under test. */
static int t_open(const char *dir, int timeout, store_create_fn may_create, void *ctx, struct store **out)
{
	return store_open_database(pg_url, dir, timeout, false, may_create, ctx, out);
}

static int t_open_readonly(const char *dir, int timeout, struct store **out)
{
	return store_open_database(pg_url, dir, timeout, true, NULL, NULL, out);
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

/* A callback that counts its calls and returns what it is told to. */
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

/*
 * The files on disk as the store's transactions reach them (store.h's
 * struct store_disk), seen from the test: each call counted and noted, a
 * failure on demand, and kept-aside copies that are there unless gone says
 * they are not.
 */
struct disk_log {
	int exists_calls, place_calls, promote_calls, remove_calls;
	int ret; /* what place, promote and remove return */
	bool gone;
	bool aside;
	char token[STORE_TOKEN_SIZE];
};

static int log_exists(void *ctx, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	struct disk_log *d = ctx;

	(void)id;
	(void)token;
	d->exists_calls++;
	return d->gone ? 0 : 1;
}

static int log_place(void *ctx, bool aside, const char *token)
{
	struct disk_log *d = ctx;

	d->place_calls++;
	d->aside = aside;
	snprintf(d->token, sizeof(d->token), "%s", token);
	return d->ret;
}

static int log_promote(void *ctx, const char *token)
{
	struct disk_log *d = ctx;

	d->promote_calls++;
	snprintf(d->token, sizeof(d->token), "%s", token);
	return d->ret;
}

static int log_remove(void *ctx)
{
	struct disk_log *d = ctx;

	d->remove_calls++;
	return d->ret;
}

static struct store_disk disk_of(struct disk_log *d)
{
	return (struct store_disk){
	    .ctx = d, .pending_exists = log_exists, .place = log_place, .promote = log_promote, .remove = log_remove};
}

/* Tokens as the vault makes them: 32 hex digits. */
#define TOKEN_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define TOKEN_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define TOKEN_C "cccccccccccccccccccccccccccccccc"

static int record(struct store *st, const struct store_file *f, const char *token, struct disk_log *d,
                  struct store_recorded *out)
{
	struct store_disk disk = disk_of(d);

	return store_record_file(st, f, token, &disk, NULL, out, NULL);
}

static int settle(struct store *st, enum store_verdict v, const uint8_t id[WIRE_ID_SIZE], const char *path,
                  const char *file_name, struct disk_log *d, struct store_settled *out)
{
	struct store_disk disk = disk_of(d);

	return store_settle_file(st, v, id, path, file_name, &disk, out);
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

/* Where each engine keeps the schema's version. */
static const char *version_sql(void)
{
	return pg_url ? "SELECT version FROM efserver_schema" : "PRAGMA user_version";
}

static void test_schema(const char *dir, struct store **out)
{
	char mode[16];
	struct raw *db;

	is_int(t_open(dir, 0, NULL, NULL, out), 0, "store_open creates a new database in an empty state directory");
	if (pg_url) {
		db = raw_open(dir);
		is_int(raw_int(db, version_sql()), STORE_SCHEMA_VERSION,
		       "efserver_schema.version is STORE_SCHEMA_VERSION");
		is_int(
		    raw_int(db,
		            "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('clients', 'files')"),
		    2, "tables clients and files exist");
		raw_close(db);
		return;
	}
	is_int(db_file_mode(dir, ""), 0600, "the database file is mode 0600 under umask 0");
	is_int(db_file_mode(dir, "-wal"), 0600, "the -wal file is mode 0600 under umask 0");
	is_int(db_file_mode(dir, "-shm"), 0600, "the -shm file is mode 0600 under umask 0");

	db = raw_open(dir);
	is_int(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION, "user_version is STORE_SCHEMA_VERSION");
	raw_text(db, "PRAGMA journal_mode", mode, sizeof(mode));
	ok(strcmp(mode, "wal") == 0, "journal_mode is wal (got %s)", mode);
	is_int(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('clients', 'files')"),
	       2, "tables clients and files exist");
	raw_close(db);
}

static void test_clients(const char *dir, struct store *st)
{
	uint8_t alice[WIRE_ID_SIZE], bob[WIRE_ID_SIZE], other[WIRE_ID_SIZE];
	struct store_client c;
	struct raw *db;

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
	ok(c.stored_bytes == 0 && c.stored_files == 0, "a new client stores nothing");
	ok(strlen(c.last_seen) == 24 && c.last_seen[10] == 'T' && c.last_seen[23] == 'Z',
	   "last seen is ISO 8601 UTC with milliseconds (%s)", c.last_seen);

	memset(&c, 0, sizeof(c));
	is_int(store_find_client_by_name(st, "bob", &c), 0, "find bob by name");
	ok(memcmp(c.id, bob, WIRE_ID_SIZE) == 0, "find returns bob's id");
	memset(&c, 0x55, sizeof(c));
	is_int(store_get_client(st, other, &c), -ENOENT, "get of an unknown id is -ENOENT");
	ok(c.name[0] == 0x55 && c.stored_files == 0x5555555555555555ULL, "a failed get leaves the output untouched");
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
	raw_close(db);
}

static void test_keys(const char *dir, struct store *st)
{
	uint8_t alice[WIRE_ID_SIZE], bob[WIRE_ID_SIZE], other[WIRE_ID_SIZE];
	uint8_t key1[294], key2[294], aes1[32], aes2[32], aes3[32];
	struct store_client c;
	bool dropped = true;
	struct raw *db;

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

	/* The look-up before any RSA work answers as set_keys would, and writes nothing. */
	raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
	is_int(store_check_keys(st, other, "alice", key1, sizeof(key1)), -ENOENT, "check_keys: an unknown id");
	is_int(store_check_keys(st, alice, "bob", key1, sizeof(key1)), -ENOENT, "check_keys: another client's name");
	is_int(store_check_keys(st, alice, "alice", key2, sizeof(key2)), -EPERM, "check_keys: a different key");
	is_int(store_check_keys(st, alice, "alice", key1, sizeof(key1)), 0, "check_keys: the pinned key");
	is_int(store_check_keys(st, bob, "bob", key2, sizeof(key2)), 0, "check_keys: any key for a client with none");
	is_int(raw_int(db, "SELECT count(*) FROM clients WHERE last_seen = '" OLD_TIME "'"), 2,
	       "check_keys changed nothing, not even last seen");

	/* A bad padding destroys the key the upload used, and only that one. */
	is_int(store_drop_aes_key(st, alice, aes2, sizeof(aes2), &dropped), 0, "drop_aes_key with an older key");
	is_int(store_get_client(st, alice, &c), 0, "get alice after it");
	ok(!dropped && c.aes_key_len == sizeof(aes3) && memcmp(c.aes_key, aes3, sizeof(aes3)) == 0,
	   "a key issued since the upload began is left alone");
	ok(strcmp(c.last_seen, OLD_TIME) != 0, "and last seen is updated all the same");
	is_int(store_drop_aes_key(st, alice, aes3, 16, &dropped), 0, "drop_aes_key with a key's first half");
	is_int(store_get_client(st, alice, &c), 0, "get alice after it");
	ok(!dropped && c.aes_key_len == sizeof(aes3), "a key must match whole to be dropped");
	is_int(store_drop_aes_key(st, alice, aes3, sizeof(aes3), &dropped), 0, "drop_aes_key with the current key");
	is_int(store_get_client(st, alice, &c), 0, "get alice after it");
	ok(dropped && c.aes_key_len == 0 && c.public_key_len == sizeof(key1),
	   "the key is destroyed, the public key stays");
	is_int(store_drop_aes_key(st, other, aes3, sizeof(aes3), &dropped), 0, "drop_aes_key of an unknown id");
	ok(!dropped, "destroys nothing");
	is_int(store_set_aes_key(st, alice, aes1, sizeof(aes1)), 0, "a fresh key after the destruction");
	raw_close(db);
	explicit_bzero(&c, sizeof(c));
}

static void test_files(const char *dir, struct store *st)
{
	static const enum store_verdict verdicts[] = {STORE_CONFIRM, STORE_RESEND, STORE_GIVE_UP};
	uint8_t alice[WIRE_ID_SIZE], other[WIRE_ID_SIZE];
	const char *path = "files/a0a1/report.txt";
	struct disk_log d = {0};
	struct store_recorded rec;
	struct store_settled done;
	struct store_file f, g;
	struct store_client c;
	struct raw *db;

	make_id(alice, 1, 1);
	make_id(other, 1, 3);

	make_file(&f, alice, "docs/report.txt", path, 1000, 0xdeadbeef);
	for (long long i = 1; i <= 3; i++) {
		memset(&rec, 0xee, sizeof(rec));
		is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "record_file, upload %lld", i);
		is_int(rec.attempts, i, "upload %lld of the same file name counts attempt %lld", i, i);
		ok(!rec.aside && rec.dropped[0] == '\0', "upload %lld of a file not verified goes in place", i);
	}
	ok(d.place_calls == 3 && !d.aside, "place was called once per upload, in place");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file of the recorded file");
	ok(strcmp(g.file_name, "docs/report.txt") == 0 && strcmp(g.path_name, path) == 0 &&
	       memcmp(g.client_id, alice, WIRE_ID_SIZE) == 0,
	   "the row holds the client, file name and path as recorded");
	ok(g.status == STORE_FILE_STORED && !g.verified && g.attempts == 3 && !g.pending,
	   "a recorded file is stored, unverified, nothing kept aside, whatever the caller's struct said");
	ok(g.size == 1000 && g.checksum == 0xdeadbeef, "size and checksum are stored (full 32-bit checksum)");
	ok(strlen(g.received) == 24, "received time is set (%s)", g.received);
	is_int(store_get_client(st, alice, &c), 0, "get alice after uploads");
	ok(c.stored_files == 1 && c.stored_bytes == 1000,
	   "three uploads of one file name are one name, of its last size");

	make_file(&f, alice, "other\\report.txt", path, 2000, 7);
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "record a different file name on the same path");
	is_int(rec.attempts, 1, "a different file name on the same path starts again at attempt 1");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after the new name");
	ok(strcmp(g.file_name, "other\\report.txt") == 0 && g.size == 2000, "the row holds the latest name as sent");

	db = raw_open(dir);
	raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
	d.ret = -EIO;
	make_file(&f, alice, "other\\report.txt", path, 3000, 8);
	memset(&rec, 0x5a, sizeof(rec));
	is_int(record(st, &f, TOKEN_A, &d, &rec), -EIO, "record_file returns the error of a failing place");
	ok(strcmp(failure_str(-EIO), strerror(EIO)) == 0,
	   "and that failure is told in its own words, with none of SQLite's");
	is_int(rec.attempts, 0x5a5a5a5a5a5a5a5aLL, "a failed record_file does not write its outcome");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after the failed place");
	ok(g.attempts == 1 && g.size == 2000 && g.checksum == 7, "the failed place rolled the row back");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the failed place");
	ok(strcmp(c.last_seen, OLD_TIME) == 0, "the failed place rolled last seen back too");
	d.ret = 0;

	make_file(&f, other, "x.txt", "files/00/x.txt", 1, 1);
	is_int(record(st, &f, TOKEN_A, &d, &rec), -ENOENT, "record_file for an unregistered client is -ENOENT");
	ok(strcmp(failure_str(-ENOENT), strerror(ENOENT)) == 0, "a refusal notes no failure of the database");
	is_int(record(st, &f, "short", &d, &rec), -EINVAL, "a token that is not 32 digits is refused");

	d = (struct disk_log){0};
	for (size_t i = 0; i < 3; i++) {
		is_int(settle(st, verdicts[i], alice, "files/a0a1/never.txt", "never.txt", &d, &done), -ENOENT,
		       "verdict %zu on a never uploaded file is -ENOENT", i);
		is_int(settle(st, verdicts[i], alice, path, "docs/report.txt", &d, &done), -ENOENT,
		       "verdict %zu under a file name other than the latest upload's is -ENOENT", i);
		is_int(settle(st, verdicts[i], other, path, "other\\report.txt", &d, &done), -ENOENT,
		       "verdict %zu for another client's path is -ENOENT", i);
	}
	ok(d.remove_calls == 0 && d.promote_calls == 0, "refused verdicts touch no file");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the refusals");
	ok(strcmp(c.last_seen, OLD_TIME) == 0, "refused file operations changed nothing, not even last seen");

	is_int(settle(st, STORE_RESEND, alice, path, "other\\report.txt", &d, &done), 0, "resend of the stored file");
	is_int(done.outcome, STORE_SETTLED_DONE, "a resend of a file not verified is done");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the resend");
	ok(strcmp(c.last_seen, OLD_TIME) != 0, "the resend updated last seen");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after the resend");
	ok(!g.verified && g.status == STORE_FILE_STORED && g.attempts == 1, "the resend changed no file column");

	raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
	is_int(settle(st, STORE_CONFIRM, alice, path, "other\\report.txt", &d, &done), 0, "confirm the stored file");
	ok(done.outcome == STORE_SETTLED_DONE && !done.rolled_forward, "a confirmation of a file not verified is done");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after the confirmation");
	ok(g.verified && g.status == STORE_FILE_STORED && g.size == 2000, "the confirmation sets verified");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the confirmation");
	ok(strcmp(c.last_seen, OLD_TIME) != 0, "the confirmation updated last seen");

	/* A verified file with nothing kept aside: every verdict is answered and changes nothing. */
	for (size_t i = 0; i < 3; i++) {
		raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
		is_int(settle(st, verdicts[i], alice, path, "other\\report.txt", &d, &done), 0,
		       "verdict %zu on a verified file with nothing kept aside is answered", i);
		is_int(done.outcome, STORE_SETTLED_NOTHING, "verdict %zu changes nothing", i);
		is_int(store_get_file(st, alice, path, &g), 0, "get_file after it");
		ok(g.verified && g.status == STORE_FILE_STORED && g.size == 2000 && !g.pending,
		   "the verified file stays verified and described");
		is_int(store_get_client(st, alice, &c), 0, "get alice after it");
		ok(strcmp(c.last_seen, OLD_TIME) != 0, "only last seen changed");
	}
	ok(d.remove_calls == 0 && d.promote_calls == 0, "no verdict touched the verified copy");

	/* A give-up of a file not verified removes its copy, and a failing removal rolls it back. */
	make_file(&f, alice, "g.txt", "files/a0a1/g.txt", 10, 10);
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "record a second file, not verified");
	raw_exec(db, "UPDATE clients SET last_seen = '" OLD_TIME "'");
	d.ret = -EACCES;
	is_int(settle(st, STORE_GIVE_UP, alice, "files/a0a1/g.txt", "g.txt", &d, &done), -EACCES,
	       "a give-up returns the error of a failing remove");
	is_int(d.remove_calls, 1, "the give-up called remove");
	is_int(store_get_file(st, alice, "files/a0a1/g.txt", &g), 0, "get_file after the failed remove");
	ok(!g.verified && g.status == STORE_FILE_STORED, "the failed remove rolled the give-up back");
	is_int(store_get_client(st, alice, &c), 0, "get alice after the failed remove");
	ok(strcmp(c.last_seen, OLD_TIME) == 0, "the failed remove rolled last seen back too");
	d.ret = 0;
	is_int(settle(st, STORE_GIVE_UP, alice, "files/a0a1/g.txt", "g.txt", &d, &done), 0, "give up the file");
	ok(d.remove_calls == 2 && done.outcome == STORE_SETTLED_DONE,
	   "the give-up removed the copy inside its transaction");
	is_int(store_get_file(st, alice, "files/a0a1/g.txt", &g), 0, "the row survives the give-up");
	ok(g.status == STORE_FILE_FAILED && !g.verified, "the give-up records the file as failed and not verified");
	is_int(settle(st, STORE_CONFIRM, alice, "files/a0a1/g.txt", "g.txt", &d, &done), -ENOENT,
	       "a confirmation after the give-up is -ENOENT");
	is_int(settle(st, STORE_RESEND, alice, "files/a0a1/g.txt", "g.txt", &d, &done), 0,
	       "a resend still finds a given-up file");
	is_int(settle(st, STORE_GIVE_UP, alice, "files/a0a1/g.txt", "g.txt", &d, &done), 0,
	       "and so does another give-up");
	make_file(&f, alice, "g.txt", "files/a0a1/g.txt", 40, 9);
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "a given-up file can be uploaded again");
	ok(rec.attempts == 2 && !rec.aside, "in place, counting on from the earlier attempts of that name");
	is_int(store_get_file(st, alice, "files/a0a1/g.txt", &g), 0, "get_file after the new upload");
	ok(g.status == STORE_FILE_STORED && !g.verified && g.size == 40, "the new upload is stored again");
	is_int(store_get_file(st, alice, "files/a0a1/never.txt", &g), -ENOENT,
	       "get_file of a never uploaded path is -ENOENT");
	raw_close(db);
}

/* efserver-protocol(7): a verified copy survives everything but its confirmed replacement. */
static void test_kept_aside(struct store *st)
{
	uint8_t alice[WIRE_ID_SIZE];
	const char *path = "files/a0a1/report.txt", *name = "other\\report.txt";
	struct disk_log d = {0};
	struct store_recorded rec;
	struct store_settled done;
	struct store_file f, g;

	make_id(alice, 1, 1);
	make_file(&f, alice, name, path, 5000, 50);
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "a new upload of a verified file is recorded");
	ok(rec.aside && !rec.rolled_forward && rec.dropped[0] == '\0' && rec.attempts == 2,
	   "kept aside, dropping nothing, attempt 2");
	ok(d.place_calls == 1 && d.aside && strcmp(d.token, TOKEN_A) == 0,
	   "place was asked to keep it aside as its token");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after it");
	ok(g.verified && g.size == 2000 && g.checksum == 7, "the row goes on describing the verified copy");
	ok(g.pending && strcmp(g.pending_name, TOKEN_A) == 0 && g.pending_size == 5000 && g.pending_checksum == 50 &&
	       strlen(g.pending_received) == 24,
	   "and the copy kept aside");

	make_file(&f, alice, name, path, 6000, 60);
	is_int(record(st, &f, TOKEN_B, &d, &rec), 0, "a second new upload");
	ok(rec.aside && strcmp(rec.dropped, TOKEN_A) == 0 && rec.attempts == 3,
	   "kept aside too, dropping the first for the caller to remove");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after it");
	ok(g.verified && g.size == 2000 && strcmp(g.pending_name, TOKEN_B) == 0 && g.pending_size == 6000,
	   "the row names the second");

	d.ret = -EIO;
	is_int(settle(st, STORE_CONFIRM, alice, path, name, &d, &done), -EIO,
	       "a confirmation whose rename fails returns its error");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after it");
	ok(g.size == 2000 && g.pending && strcmp(g.pending_name, TOKEN_B) == 0, "and changed nothing");
	d.ret = 0;
	is_int(settle(st, STORE_CONFIRM, alice, path, name, &d, &done), 0, "the confirmation");
	ok(done.outcome == STORE_SETTLED_REPLACED && strcmp(d.token, TOKEN_B) == 0,
	   "puts the kept-aside copy in place through promote");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after it");
	ok(g.verified && g.size == 6000 && g.checksum == 60 && !g.pending && g.attempts == 3,
	   "the row describes the new copy, verified, nothing kept aside");

	for (int v = STORE_RESEND; v <= STORE_GIVE_UP; v++) {
		make_file(&f, alice, name, path, 7000, 70);
		is_int(record(st, &f, TOKEN_C, &d, &rec), 0, "another new upload");
		is_int(settle(st, (enum store_verdict)v, alice, path, name, &d, &done), 0, "then verdict %d", v);
		ok(done.outcome == STORE_SETTLED_DISCARDED && strcmp(done.dropped, TOKEN_C) == 0,
		   "drops the kept-aside copy for the caller to remove");
		is_int(store_get_file(st, alice, path, &g), 0, "get_file after it");
		ok(g.verified && g.status == STORE_FILE_STORED && g.size == 6000 && !g.pending,
		   "the verified copy stays, verified, as it was");
	}
	ok(d.remove_calls == 0, "no verdict removed the verified copy");

	/* Killed between the rename of a confirmation and its commit: the kept-aside copy is gone, the row names it. */
	make_file(&f, alice, name, path, 8000, 80);
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "a new upload kept aside");
	d.gone = true;
	is_int(settle(st, STORE_GIVE_UP, alice, path, name, &d, &done), 0, "a give-up meets it gone");
	ok(done.rolled_forward && done.outcome == STORE_SETTLED_NOTHING,
	   "the interrupted confirmation is completed first, then there is nothing to drop");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after it");
	ok(g.verified && g.size == 8000 && g.checksum == 80 && !g.pending, "the row describes the copy put in place");

	make_file(&f, alice, name, path, 9000, 90);
	d.gone = false;
	is_int(record(st, &f, TOKEN_B, &d, &rec), 0, "a new upload kept aside");
	d.gone = true;
	make_file(&f, alice, name, path, 9500, 95);
	is_int(record(st, &f, TOKEN_C, &d, &rec), 0, "the next upload meets the first gone");
	ok(rec.rolled_forward && rec.aside && rec.dropped[0] == '\0',
	   "rolled forward first, then kept aside with nothing to drop");
	is_int(store_get_file(st, alice, path, &g), 0, "get_file after it");
	ok(g.verified && g.size == 9000 && strcmp(g.pending_name, TOKEN_C) == 0 && g.pending_size == 9500,
	   "the row describes the rolled-forward copy and the new one kept aside");

	is_int(store_pending_referenced(st, alice, TOKEN_C), 1, "a token a row names is referenced");
	is_int(store_pending_referenced(st, alice, TOKEN_A), 0, "a token no row names is not");
	d.gone = false;
	{
		struct callback rm = {0};

		is_int(store_forget_pending(st, alice, TOKEN_C, callback, &rm), -EBUSY,
		       "forget_pending of a token a row names is -EBUSY");
		is_int(rm.calls, 0, "and removes nothing");
		is_int(store_forget_pending(st, alice, TOKEN_A, callback, &rm), 0,
		       "forget_pending of one no row names");
		is_int(rm.calls, 1, "removes it inside its transaction");
	}
	d.gone = true;
	{
		struct store_disk disk = disk_of(&d);
		struct walk w = {0};

		is_int(store_repair_files(st, &disk, walk_file, &w), 0, "repair_files");
		is_int(w.calls, 1, "completes the one row whose kept-aside copy is gone");
		is_int(store_get_file(st, alice, path, &g), 0, "get_file after it");
		ok(g.verified && g.size == 9500 && !g.pending, "the row describes the copy put in place");
		w.calls = 0;
		is_int(store_repair_files(st, &disk, walk_file, &w), 0, "repair_files again");
		is_int(w.calls, 0, "finds nothing more");
	}
}

static void test_iteration(struct store *st)
{
	uint8_t alice[WIRE_ID_SIZE], carol[WIRE_ID_SIZE];
	struct disk_log d = {0};
	struct store_recorded rec;
	struct store_file f;
	struct walk w;

	make_id(alice, 1, 1);
	make_id(carol, 1, 4);
	is_int(store_register_client(st, carol, "aaron"), 0, "register a third client whose name sorts first");
	make_file(&f, carol, "b.txt", "files/x/b.txt", 5, 5);
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "record a file for him");
	make_file(&f, alice, "a.txt", "files/a0a1/a.txt", 5, 5);
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "record another file for alice");

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
	is_int(w.calls, 4, "each_file visits every file");
	ok(w.ordered, "each_file goes in client then path order");
	memset(&w, 0, sizeof(w));
	w.ordered = true;
	is_int(store_each_file(st, alice, walk_file, &w), 0, "each_file of one client");
	is_int(w.calls, 3, "each_file of one client visits only hers");
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
	is_int(t_open(dir, 0, NULL, NULL, &st), 0, "store_open of an existing database");
	is_int(store_get_client(st, alice, &c), 0, "the data survives close and reopen");
	is_int(t_open_readonly(dir, 0, &ro), 0, "store_open_readonly beside a writer");
	is_int(store_find_client_by_name(ro, "alice", &c), 0, "a read-only store reads");
	is_int(store_register_client(ro, alice, "mallory"), -EROFS, "a read-only store refuses writes with -EROFS");
	is_int(store_integrity_check(ro), 0, "integrity_check on a read-only store");
	store_close(ro);
	store_close(st);
}

static void test_versions(void)
{
	char *newer = make_subdir("newer"), *none = NULL;
	const char *why;
	char sql[64];
	struct store *st = NULL;
	struct raw *db;

	if (pg_url) {
		is_int(t_open(newer, 0, NULL, NULL, &st), 0, "a new database gets the schema");
		store_close(st);
		st = NULL;
	}
	db = raw_open(newer);
	snprintf(sql, sizeof(sql), pg_url ? "UPDATE efserver_schema SET version = %d" : "PRAGMA user_version = %d",
	         STORE_SCHEMA_VERSION + 1);
	raw_exec(db, sql);
	raw_close(db);
	is_int(t_open(newer, 0, NULL, NULL, &st), -EPROTO,
	       "a database with a newer user_version is refused with -EPROTO");
	ok(st == NULL, "a refused open returns no store");
	why = failure_str(-EPROTO);
	ok(strstr(why, "the database schema is newer than this program knows") != NULL,
	   "and says why, though it returns no store (%s)", why);
	is_int(t_open_readonly(newer, 0, &st), -EPROTO, "store_open_readonly refuses it too");
	why = failure_str(-EPROTO);
	ok(strstr(why, "newer than this program knows") != NULL, "and says why (%s)", why);
	db = raw_open(newer);
	is_int(raw_int(db, version_sql()), STORE_SCHEMA_VERSION + 1, "the refused database keeps its version");
	if (pg_url)
		is_int(raw_int(db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"), 6,
		       "nothing was created in the refused database");
	else
		is_int(raw_int(db, "SELECT count(*) FROM sqlite_master"), 0,
		       "nothing was created in the refused database");
	raw_close(db);

	none = make_subdir("none");
	is_int(t_open_readonly(none, 0, &st), -ENOENT, "store_open_readonly of a missing database is -ENOENT");
	if (pg_url) {
		db = raw_open(none);
		is_int(raw_int(db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"), 0,
		       "store_open_readonly created nothing");
		raw_close(db);
	} else {
		is_int(db_file_mode(none, ""), -1, "store_open_readonly created no file");
	}
	free(newer);
	free(none);
}

/* A file that is not a database: the open fails, and SQLite's words say so. */
static void test_not_a_database(void)
{
	char *dir = make_subdir("garbage"), *path = xasprintf(dir, STORE_DB_NAME);
	struct store *st = NULL;
	FILE *f;
	const char *why;
	int r;

	if (pg_url) {
		skip("SQLite's file that is not a database");
		free(path);
		free(dir);
		return;
	}
	if (!(f = fopen(path, "w")) ||
	    fputs("This is not an SQLite database, but it is long enough to be read as one.\n", f) < 0 ||
	    fclose(f) != 0) {
		perror(path);
		exit(99);
	}
	r = t_open(dir, 0, NULL, NULL, &st);
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

static int place_nothing(void *ctx, bool aside, const char *token)
{
	int *published = ctx;

	(void)aside;
	(void)token;
	(*published)++;
	return 0;
}

static int exists_never(void *ctx, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	(void)ctx;
	(void)id;
	(void)token;
	return 0;
}

static int promote_nothing(void *ctx, const char *token)
{
	(void)ctx;
	(void)token;
	return -EIO;
}

static int remove_nothing(void *ctx)
{
	(void)ctx;
	return -EIO;
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
	struct store_disk disk = {.ctx = &res.published,
	                          .pending_exists = exists_never,
	                          .place = place_nothing,
	                          .promote = promote_nothing,
	                          .remove = remove_nothing};
	struct store_recorded rec;
	struct store_settled done;
	struct store_file f;
	struct store *st = NULL;
	char c;
	int r;

	/* Everyone blocks here until the parent closes the pipe, then all open at once. */
	while (read(start_fd, &c, 1) > 0)
		continue;
	r = t_open(dir, 0, NULL, NULL, &st);
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
			r = store_record_file(st, &f, TOKEN_A, &disk, NULL, &rec, NULL);
			child_note(&res, r == 0 && (rec.attempts != 1 || rec.aside) ? -EILSEQ : r);
			r = store_settle_file(st, STORE_CONFIRM, id, path, "upload.bin", &disk, &done);
			child_note(&res, r == 0 && done.outcome != STORE_SETTLED_DONE ? -EILSEQ : r);
		}
		store_close(st);
	}
	if (write(result_fd, &res, sizeof(res)) != (ssize_t)sizeof(res))
		_exit(2);
	_exit(0);
}

/*
 * N_PROCS processes running fn at once on the store of dir, released
 * together; what they reported added up in *total, with how many reported
 * (*reports). Returns how many exited cleanly.
 */
static int run_children(const char *dir, void (*fn)(const char *dir, int index, int start_fd, int result_fd),
                        struct child_result *total, int *reports)
{
	struct child_result res;
	int start[2], results[2], status, exited_ok = 0;
	pid_t pids[N_PROCS];

	memset(total, 0, sizeof(*total));
	*reports = 0;
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
			fn(dir, i, start[0], results[1]);
		}
	}
	close(start[0]);
	close(results[1]);
	close(start[1]);
	while (read(results[0], &res, sizeof(res)) == (ssize_t)sizeof(res)) {
		(*reports)++;
		total->ops += res.ops;
		total->errors += res.errors;
		total->busy += res.busy;
		total->published += res.published;
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
	return exited_ok;
}

static void test_concurrency(void)
{
	char *dir = make_subdir("concurrent");
	struct child_result total;
	int exited_ok, reports;
	struct store *st = NULL;
	struct walk w;
	char mode[16];
	struct raw *db;

	exited_ok = run_children(dir, child_run, &total, &reports);

	is_int(exited_ok, N_PROCS, "all %d processes exited cleanly", N_PROCS);
	is_int(reports, N_PROCS, "all %d processes reported", N_PROCS);
	is_int(total.ops, N_PROCS * N_ROUNDS * OPS_PER_ROUND, "%d write operations were made", total.ops);
	is_int(total.busy, 0, "no operation returned -EBUSY");
	is_int(total.errors, 0, "no operation returned any error");
	is_int(total.published, N_PROCS * N_ROUNDS, "publish ran once per recorded file");
	printf("# %d processes, %d operations, %d errors, %d -EBUSY\n", N_PROCS, total.ops, total.errors, total.busy);

	is_int(t_open(dir, 0, NULL, NULL, &st), 0, "open the database the processes wrote");
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
	is_int(raw_int(db, version_sql()), STORE_SCHEMA_VERSION, "the racing opens created the schema once");
	if (!pg_url) {
		raw_text(db, "PRAGMA journal_mode", mode, sizeof(mode));
		ok(strcmp(mode, "wal") == 0, "the racing opens left the database in WAL mode");
	}
	raw_close(db);
	if (!pg_url)
		is_int(db_file_mode(dir, ""), 0600, "the racing opens created the database 0600");
	free(dir);
}

/* Every kept-aside copy is on disk: nothing to roll forward. */
static int exists_always(void *ctx, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	(void)ctx;
	(void)id;
	(void)token;
	return 1;
}

/* A kept-aside copy put in place: nothing on disk to move. */
static int promote_ok(void *ctx, const char *token)
{
	(void)ctx;
	(void)token;
	return 0;
}

/*
 * One client's uploads and confirmations of the same file from several
 * processes at once: each decides from the row as its transaction finds it
 * (in place, or kept aside beside the verified copy), so every operation
 * succeeds whatever the interleaving.
 */
static void same_client_run(const char *dir, int index, int start_fd, int result_fd)
{
	struct child_result res = {.index = index};
	struct store_disk disk = {.ctx = &res.published,
	                          .pending_exists = exists_always,
	                          .place = place_nothing,
	                          .promote = promote_ok,
	                          .remove = remove_nothing};
	uint8_t id[WIRE_ID_SIZE];
	struct store_recorded rec;
	struct store_settled done;
	struct store_file f;
	struct store *st = NULL;
	char token[STORE_TOKEN_SIZE], c;
	int r;

	while (read(start_fd, &c, 1) > 0)
		continue;
	make_id(id, 0x200, 0);
	if ((r = t_open(dir, 0, NULL, NULL, &st)) < 0) {
		child_note(&res, r);
	} else {
		for (int i = 0; i < N_ROUNDS; i++) {
			snprintf(token, sizeof(token), "%08x%024x", (unsigned)index, (unsigned)i);
			make_file(&f, id, "same.bin", "files/same/same.bin", (uint64_t)(16 * (index + 1)), (uint32_t)i);
			child_note(&res, store_record_file(st, &f, token, &disk, NULL, &rec, NULL));
			r = store_settle_file(st, STORE_CONFIRM, id, "files/same/same.bin", "same.bin", &disk, &done);
			child_note(&res, r);
		}
		store_close(st);
	}
	if (write(result_fd, &res, sizeof(res)) != (ssize_t)sizeof(res))
		_exit(2);
	_exit(0);
}

static void test_same_client(void)
{
	char *dir = make_subdir("same");
	struct child_result total;
	int exited_ok, reports;
	uint8_t id[WIRE_ID_SIZE];
	struct store_file g;
	struct store_client c;
	struct store *st = NULL;

	make_id(id, 0x200, 0);
	if (t_open(dir, 0, NULL, NULL, &st) < 0 || store_register_client(st, id, "same") < 0) {
		ok(0, "same-client set-up");
		store_close(st);
		free(dir);
		return;
	}
	exited_ok = run_children(dir, same_client_run, &total, &reports);
	is_int(exited_ok, N_PROCS, "%d processes uploading and confirming one client's file exited cleanly", N_PROCS);
	is_int(total.ops, N_PROCS * N_ROUNDS * 2, "they made %d uploads and confirmations", total.ops);
	is_int(total.errors, 0, "none of them failed, whatever the interleaving");
	is_int(store_get_file(st, id, "files/same/same.bin", &g), 0, "the file's row");
	ok(g.verified && g.status == STORE_FILE_STORED && g.attempts >= 1 && g.attempts <= N_PROCS * N_ROUNDS,
	   "verified, its attempts counted (%lld)", g.attempts);
	is_int(store_get_client(st, id, &c), 0, "the client's row");
	ok(c.stored_files == 1 && c.stored_bytes == g.size + (g.pending ? g.pending_size : 0),
	   "its counters are the one copy it keeps and any kept aside (%llu bytes, %llu files)",
	   (unsigned long long)c.stored_bytes, (unsigned long long)c.stored_files);
	is_int(store_integrity_check(st), 0, "integrity_check passes after them");
	store_close(st);
	free(dir);
}

/* Registrations at once from several processes, under --max-clients: N_CLIENTS_MAX pass, no more. */
#define N_CLIENTS_MAX 50

static void register_run(const char *dir, int index, int start_fd, int result_fd)
{
	struct store_limits lim = {.max_clients = N_CLIENTS_MAX, .registrations_per_hour = 1000};
	struct child_result res = {.index = index};
	enum store_limit why;
	uint8_t id[WIRE_ID_SIZE];
	struct store *st = NULL;
	char name[32], c;
	int r;

	while (read(start_fd, &c, 1) > 0)
		continue;
	if ((r = t_open(dir, 0, NULL, NULL, &st)) < 0) {
		child_note(&res, r);
	} else {
		for (int i = 0; i < N_ROUNDS / 2; i++) {
			make_id(id, 0x300 + (unsigned)index, (unsigned)i);
			snprintf(name, sizeof(name), "reg%d-%d", index, i);
			r = store_register_from(st, id, name, "192.0.2.7", &lim, &why);
			if (r == 0)
				res.published++;
			else if (r != -EDQUOT || why != STORE_LIMIT_MAX_CLIENTS)
				child_note(&res, r);
		}
		store_close(st);
	}
	if (write(result_fd, &res, sizeof(res)) != (ssize_t)sizeof(res))
		_exit(2);
	_exit(0);
}

static void test_registrations_at_once(void)
{
	char *dir = make_subdir("registrations");
	struct child_result total;
	int exited_ok, reports;
	struct store *st = NULL;
	long long clients = -1;

	exited_ok = run_children(dir, register_run, &total, &reports);
	is_int(exited_ok, N_PROCS, "%d processes registering at once under --max-clients %d exited cleanly", N_PROCS,
	       N_CLIENTS_MAX);
	is_int(total.errors, 0, "each registration either passed or was refused by --max-clients");
	is_int(total.published, N_CLIENTS_MAX, "exactly %d passed", N_CLIENTS_MAX);
	is_int(t_open(dir, 0, NULL, NULL, &st), 0, "open the store after them");
	is_int(store_count_clients(st, &clients), 0, "count the clients");
	is_int(clients, N_CLIENTS_MAX, "the server's count is %d", N_CLIENTS_MAX);
	is_int(store_integrity_check(st), 0, "integrity_check passes");
	store_close(st);
	free(dir);
}

/* Callbacks of a process killed inside its transaction, before its commit. */
static int die_in_place(void *ctx, bool aside, const char *token)
{
	(void)ctx;
	(void)aside;
	(void)token;
	_exit(0);
}

static int die_in_promote(void *ctx, const char *token)
{
	(void)ctx;
	(void)token;
	_exit(0);
}

/* Run fn in a child process that opens its own store and is killed inside the transaction: whether it got there. */
static bool killed_inside(const char *dir, const struct store_file *f, enum store_verdict v, bool upload)
{
	struct disk_log d = {0};
	struct store_disk disk = disk_of(&d);
	struct store_recorded rec;
	struct store_settled done;
	int status = -1;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct store *child = NULL;

		disk.place = die_in_place;
		disk.promote = die_in_promote;
		if (t_open(dir, 0, NULL, NULL, &child) == 0) {
			if (upload)
				(void)store_record_file(child, f, TOKEN_B, &disk, NULL, &rec, NULL);
			else
				(void)store_settle_file(child, v, f->client_id, f->path_name, f->file_name, &disk,
				                        &done);
		}
		_exit(1);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

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
		if (t_open(dir, 0, NULL, NULL, &st) < 0 || store_register_client(st, id, name) < 0)
			failed++;
		store_close(st);
		if (stat(wal, &sb) == 0 && sb.st_size > largest)
			largest = sb.st_size;
	}
	is_int(failed, 0, "%d short connections open the store and register a client each", N_SHORT);
	if (pg_url)
		skip("SQLite's WAL");
	else
		ok(largest <= 32 + WAL_FRAMES_MAX * (4096 + 24),
		   "the WAL never held more than %d frames (largest %lld bytes)", WAL_FRAMES_MAX, largest);
	st = NULL;
	is_int(t_open_readonly(dir, 0, &st), 0, "open the store after them");
	if (st)
		is_int(store_each_client(st, walk_client, &w), 0, "walk the clients");
	is_int(w.calls, N_SHORT, "every client registered is there");
	if (st)
		is_int(store_integrity_check(st), 0, "integrity_check passes");
	store_close(st);
	free(wal);
	free(dir);
}

/*
 * Sessions killed inside their transactions: an upload of a verified file
 * killed while its copy is being kept aside leaves the row as it was; a
 * confirmation killed after its rename leaves a row naming a kept-aside
 * copy that is gone, which the next look rolls forward.
 */
static void test_crash(void)
{
	const char *path = "files/c0/doc.txt";
	char *dir = make_subdir("crash");
	uint8_t id[WIRE_ID_SIZE];
	struct disk_log d = {0};
	struct store_recorded rec;
	struct store_settled done;
	struct store *st = NULL;
	struct store_file f, g;

	make_id(id, 7, 7);
	make_file(&f, id, "doc.txt", path, 100, 1);
	if (t_open(dir, 0, NULL, NULL, &st) < 0 || store_register_client(st, id, "crash") < 0 ||
	    record(st, &f, TOKEN_A, &d, &rec) < 0 || settle(st, STORE_CONFIRM, id, path, "doc.txt", &d, &done) < 0) {
		ok(0, "crash set-up: a verified file");
		store_close(st);
		free(dir);
		return;
	}
	make_file(&f, id, "doc.txt", path, 200, 2);
	ok(killed_inside(dir, &f, STORE_CONFIRM, true),
	   "a session uploading a verified file again dies keeping it aside");
	is_int(store_get_file(st, id, path, &g), 0, "the row survives the crash");
	ok(g.verified && g.size == 100 && g.checksum == 1 && g.attempts == 1 && !g.pending,
	   "as it was: verified, describing the verified copy, nothing kept aside");

	is_int(record(st, &f, TOKEN_B, &d, &rec), 0, "the upload again, kept aside");
	ok(killed_inside(dir, &f, STORE_CONFIRM, false), "a session confirming it dies right after its rename");
	is_int(store_get_file(st, id, path, &g), 0, "the row survives the crash");
	ok(g.verified && g.size == 100 && g.pending && strcmp(g.pending_name, TOKEN_B) == 0,
	   "naming the kept-aside copy, which the rename took away");
	d.gone = true;
	is_int(settle(st, STORE_CONFIRM, id, path, "doc.txt", &d, &done), 0, "the client's confirmation again");
	ok(done.rolled_forward && done.outcome == STORE_SETTLED_NOTHING && d.promote_calls == 0,
	   "completes the interrupted one and renames nothing more");
	is_int(store_get_file(st, id, path, &g), 0, "get_file after it");
	ok(g.verified && g.size == 200 && g.checksum == 2 && !g.pending, "the row describes the confirmed copy");
	is_int(store_integrity_check(st), 0, "the database is intact after the crashes");
	store_close(st);
	free(dir);
}

static void is_usage(struct store *st, const uint8_t id[WIRE_ID_SIZE], uint64_t bytes, uint64_t files,
                     const char *what);

/* The schema of version 1, as efsession wrote it before kept-aside copies. */
static const char schema_v1[] =
    "CREATE TABLE clients (\n"
    "	id BLOB NOT NULL PRIMARY KEY CHECK (typeof(id) = 'blob' AND length(id) = 16),\n"
    "	name TEXT NOT NULL UNIQUE\n"
    "		CHECK (typeof(name) = 'text' AND length(CAST(name AS BLOB)) BETWEEN 1 AND 254),\n"
    "	public_key BLOB CHECK (public_key IS NULL OR\n"
    "		(typeof(public_key) = 'blob' AND length(public_key) BETWEEN 1 AND 1100)),\n"
    "	aes_key BLOB CHECK (aes_key IS NULL OR\n"
    "		(typeof(aes_key) = 'blob' AND length(aes_key) BETWEEN 1 AND 32)),\n"
    "	registered TEXT NOT NULL,\n"
    "	last_seen TEXT NOT NULL\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE files (\n"
    "	client_id BLOB NOT NULL REFERENCES clients (id) ON DELETE CASCADE,\n"
    "	file_name TEXT NOT NULL\n"
    "		CHECK (typeof(file_name) = 'text' AND length(CAST(file_name AS BLOB)) BETWEEN 1 AND 254),\n"
    "	path_name TEXT NOT NULL\n"
    "		CHECK (typeof(path_name) = 'text' AND length(CAST(path_name AS BLOB)) BETWEEN 1 AND 511),\n"
    "	verified INTEGER NOT NULL CHECK (verified IN (0, 1)),\n"
    "	status INTEGER NOT NULL CHECK (status IN (0, 1)),\n"
    "	size INTEGER NOT NULL CHECK (typeof(size) = 'integer' AND size >= 0),\n"
    "	checksum INTEGER NOT NULL CHECK (typeof(checksum) = 'integer' AND checksum BETWEEN 0 AND 4294967295),\n"
    "	attempts INTEGER NOT NULL CHECK (typeof(attempts) = 'integer' AND attempts >= 1),\n"
    "	received TEXT NOT NULL,\n"
    "	PRIMARY KEY (client_id, path_name),\n"
    "	CHECK (verified = 0 OR status = 0)\n"
    ") WITHOUT ROWID;\n";

/* A version-1 database with clients and files migrates in place: every row kept, nothing kept aside. */
static void test_migration(void)
{
	char *dir = make_subdir("v1");
	uint8_t id[WIRE_ID_SIZE];
	struct disk_log d = {0};
	struct store_recorded rec;
	struct store_client c;
	struct store *st = NULL;
	struct store_file f, g;
	char out[64];
	struct raw *db;

	if (pg_url) {
		skip("SQLite's schema of version 1, which PostgreSQL never had");
		free(dir);
		return;
	}
	make_id(id, 9, 9);
	db = raw_open(dir);
	raw_exec(db, "PRAGMA journal_mode = WAL");
	raw_exec(db, schema_v1);
	raw_exec(db, "INSERT INTO clients VALUES (x'00090009a4a5a6a7a8a9aaabacadaeaf', 'old', x'3082', x'0011', "
	             "'" OLD_TIME "', '" OLD_TIME "')");
	raw_exec(db,
	         "INSERT INTO files VALUES (x'00090009a4a5a6a7a8a9aaabacadaeaf', 'v.txt', 'files/v/v.txt', 1, 0, "
	         "11, 111, 2, '" OLD_TIME "'), (x'00090009a4a5a6a7a8a9aaabacadaeaf', 'u.txt', 'files/v/u.txt', 0, 1, "
	         "0, 0, 3, '" OLD_TIME "')");
	raw_exec(db, "PRAGMA user_version = 1");
	raw_close(db);

	is_int(t_open(dir, 0, NULL, NULL, &st), 0, "a version-1 database opens");
	db = raw_open(dir);
	is_int(raw_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION, "it is migrated to the current version");
	is_int(raw_int(db, "SELECT count(*) FROM files WHERE pending_name IS NULL AND pending_size IS NULL AND "
	                   "pending_checksum IS NULL AND pending_received IS NULL"),
	       2, "every row kept, with nothing kept aside");
	raw_text(db, "PRAGMA integrity_check", out, sizeof(out));
	ok(strcmp(out, "ok") == 0, "and the database is intact (%s)", out);
	raw_close(db);
	is_int(store_get_client(st, id, &c), 0, "the client is there");
	ok(strcmp(c.name, "old") == 0 && c.public_key_len == 2 && c.aes_key_len == 2, "with its name and keys");
	ok(c.stored_bytes == 11 && c.stored_files == 1,
	   "its counters computed: the verified copy, not the given-up one");
	db = raw_open(dir);
	is_int(raw_int(db, "SELECT clients FROM totals"), 1, "and the server's count of clients");
	raw_close(db);
	is_int(store_get_file(st, id, "files/v/v.txt", &g), 0, "its verified file is there");
	ok(g.verified && g.size == 11 && g.checksum == 111 && g.attempts == 2 && !g.pending, "as it was");
	is_int(store_get_file(st, id, "files/v/u.txt", &g), 0, "its given-up file is there");
	ok(g.status == STORE_FILE_FAILED && g.attempts == 3, "as it was");
	make_file(&f, id, "v.txt", "files/v/v.txt", 22, 222);
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "a new upload of the verified file");
	ok(rec.aside && rec.attempts == 3, "is kept aside, counting on");
	is_usage(st, id, 33, 1, "and counted from then on");
	store_close(st);
	free(dir);
}

/* What efctl usage reads: a client's usage, found by name. */
struct usage_seen {
	char name[WIRE_NAME_SIZE];
	struct store_usage u;
	bool found;
	long long sources, registrations;
};

static int see_usage(const struct store_usage *u, void *ctx)
{
	struct usage_seen *w = ctx;

	if (strcmp(u->name, w->name) == 0) {
		w->u = *u;
		w->found = true;
	}
	return 0;
}

static int see_source(const char *source, long long n, void *ctx)
{
	struct usage_seen *w = ctx;

	w->sources++;
	if (strcmp(source, w->name) == 0)
		w->registrations = n;
	return 0;
}

/* A client's counters as the store reads them for a request. */
static void is_usage(struct store *st, const uint8_t id[WIRE_ID_SIZE], uint64_t bytes, uint64_t files, const char *what)
{
	struct store_client c;

	memset(&c, 0, sizeof(c));
	if (!ok(store_get_client(st, id, &c) == 0 && c.stored_bytes == bytes && c.stored_files == files, "%s", what))
		printf("#   got %llu bytes in %llu files, want %llu in %llu\n", (unsigned long long)c.stored_bytes,
		       (unsigned long long)c.stored_files, (unsigned long long)bytes, (unsigned long long)files);
}

/*
 * The limits of efsession(8) the store decides: the counters the store
 * keep through every change of a file row, registrations per source and
 * bad paddings per client over the last hour (older ones not counted, and
 * pruned), the server-wide count of clients, the check before an upload's
 * content and the one inside the transaction that records it.
 */
static void test_limits(void)
{
	char *dir = make_subdir("limits");
	const char *path = "files/l/a.txt";
	const char *detail;
	struct store_limits lim = {0};
	enum store_limit why = STORE_LIMIT_NONE;
	uint8_t id[WIRE_ID_SIZE], other[WIRE_ID_SIZE], aes[16];
	struct usage_seen seen = {0};
	struct store_recorded rec;
	struct store_settled done;
	struct disk_log d = {0};
	struct store_file f;
	struct store *st = NULL;
	bool dropped;
	long long n = -1;
	struct raw *db;

	make_id(id, 7, 1);
	make_id(other, 7, 2);
	fill(aes, sizeof(aes), 3);
	if (t_open(dir, 0, NULL, NULL, &st) < 0) {
		ok(0, "open a store for the limits");
		return;
	}
	/* Registrations: counted per source, refused beyond the limit, refusals not counted. */
	lim.registrations_per_hour = 2;
	is_int(store_register_from(st, id, "one", "192.0.2.1", &lim, &why), 0, "a first registration from a source");
	is_int(store_register_from(st, other, "one", "192.0.2.1", &lim, &why), -EEXIST, "a taken name: -EEXIST");
	make_id(other, 7, 3);
	is_int(store_register_from(st, other, "two", "192.0.2.1", &lim, &why), 0, "the refusal was not counted");
	make_id(other, 7, 4);
	why = STORE_LIMIT_NONE;
	is_int(store_register_from(st, other, "three", "192.0.2.1", &lim, &why), -EDQUOT, "a third one: -EDQUOT");
	is_int(why, STORE_LIMIT_REGISTRATIONS_PER_HOUR, "refused by --registrations-per-hour");
	is_int(store_find_client_by_name(st, "three", &(struct store_client){0}), -ENOENT, "nothing registered");
	is_int(store_register_from(st, other, "three", "2001:db8::/64", &lim, &why), 0, "another source is not held");
	db = raw_open(dir);
	is_int(raw_int(db, "SELECT count(*) FROM registrations"), 3, "three registrations counted");
	/* Over an hour old: not counted, and pruned by the next registration. */
	raw_exec(db, "UPDATE registrations SET at = '" OLD_TIME "' WHERE source = '192.0.2.1'");
	raw_exec(db, "INSERT INTO registrations (source, at) SELECT '192.0.2.9', '" OLD_TIME "' FROM files");
	make_id(other, 7, 5);
	is_int(store_register_from(st, other, "four", "192.0.2.1", &lim, &why), 0,
	       "registrations over an hour old do not count");
	is_int(raw_int(db, "SELECT count(*) FROM registrations WHERE at = '" OLD_TIME "'"), 0,
	       "and they are pruned in the registering transaction");
	is_int(store_register_client(st, (uint8_t[WIRE_ID_SIZE]){1}, "unlimited"), 0,
	       "store_register_client counts against nothing");
	is_int(raw_int(db, "SELECT count(*) FROM registrations"), 2, "and is not counted");
	/* The clients in all: the server-wide counter. */
	is_int(store_count_clients(st, &n), 0, "count the clients");
	is_int(n, 5, "five clients");
	lim = (struct store_limits){.max_clients = 5};
	make_id(other, 7, 6);
	why = STORE_LIMIT_NONE;
	is_int(store_register_from(st, other, "five", NULL, &lim, &why), -EDQUOT, "a sixth beyond --max-clients 5");
	is_int(why, STORE_LIMIT_MAX_CLIENTS, "refused by --max-clients");
	is_int(store_remove_client(st, (uint8_t[WIRE_ID_SIZE]){1}), 0, "a client removed");
	is_int(store_register_from(st, other, "five", NULL, &lim, &why), 0, "makes room for another");
	is_int(raw_int(db, "SELECT clients FROM totals"), 5, "the counter follows");

	/* Files: the counters follow every change, and the checks read them. */
	lim = (struct store_limits){.client_quota = 100, .client_max_files = 2};
	is_usage(st, id, 0, 0, "a new client stores nothing");
	make_file(&f, id, "a.txt", path, 40, 1);
	is_int(store_check_upload(st, id, path, 48, &lim, &why), 0, "48 bytes fit a quota of 100");
	is_int(store_record_file(st, &f, TOKEN_A,
	                         &(struct store_disk){.ctx = &d, .pending_exists = log_exists, .place = log_place},
	                         &lim, &rec, &why),
	       0, "record 40 bytes");
	is_usage(st, id, 40, 1, "40 bytes in one file");
	is_int(store_check_upload(st, id, path, 96, &lim, &why), 0, "a new upload replaces the unverified copy");
	is_int(store_check_upload(st, id, "files/l/b.txt", 64, &lim, &why), -EDQUOT, "another name: 40 + 64");
	is_int(why, STORE_LIMIT_CLIENT_QUOTA, "refused by --client-quota");
	is_int(store_check_upload(st, other, "files/l/b.txt", 64, &lim, &why), 0, "another client is not held");
	is_int(settle(st, STORE_CONFIRM, id, path, "a.txt", &d, &done), 0, "confirm it");
	is_int(store_check_upload(st, id, path, 64, &lim, &why), -EDQUOT, "kept aside, it would add to the copy");
	make_file(&f, id, "a.txt", path, 30, 2);
	is_int(record(st, &f, TOKEN_B, &d, &rec), 0, "kept aside, without limits");
	ok(rec.aside, "kept aside");
	is_usage(st, id, 70, 1, "the kept-aside copy counts");
	is_int(store_check_upload(st, id, path, 48, &lim, &why), 0,
	       "a new one replaces the kept-aside copy: 70 - 30 + 48");
	is_int(store_check_upload(st, id, path, 64, &lim, &why), -EDQUOT, "but not 70 - 30 + 64");
	make_file(&f, id, "b.txt", "files/l/b.txt", 10, 3);
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "a second name");
	is_usage(st, id, 80, 2, "80 bytes in two names");
	lim.client_quota = 0;
	is_int(store_check_upload(st, id, "files/l/c.txt", 16, &lim, &why), -EDQUOT, "a third name");
	is_int(why, STORE_LIMIT_CLIENT_MAX_FILES, "refused by --client-max-files");
	is_int(store_check_upload(st, id, "files/l/b.txt", 16, &lim, &why), 0, "a name it has is not new");
	is_int(settle(st, STORE_GIVE_UP, id, "files/l/b.txt", "b.txt", &d, &done), 0, "give b.txt up");
	is_usage(st, id, 70, 1, "a given-up name has no copy");
	is_int(store_check_upload(st, id, "files/l/c.txt", 16, &lim, &why), 0, "room for a new name");
	/* Inside the record transaction: another connection stored meanwhile. */
	lim = (struct store_limits){.client_quota = 100};
	memset(&d, 0, sizeof(d));
	make_file(&f, id, "c.txt", "files/l/c.txt", 31, 4);
	why = STORE_LIMIT_NONE;
	is_int(store_record_file(st, &f, TOKEN_C,
	                         &(struct store_disk){.ctx = &d, .pending_exists = log_exists, .place = log_place},
	                         &lim, &rec, &why),
	       -EDQUOT, "31 more bytes than the quota leaves: -EDQUOT in the transaction");
	ok(why == STORE_LIMIT_CLIENT_QUOTA && d.place_calls == 0, "by --client-quota, the file never placed");
	is_usage(st, id, 70, 1, "nothing changed");
	is_int(store_get_file(st, id, "files/l/c.txt", &f), -ENOENT, "no row for it");
	lim = (struct store_limits){.client_max_files = 1};
	make_file(&f, id, "c.txt", "files/l/c.txt", 1, 4);
	is_int(store_record_file(st, &f, TOKEN_C,
	                         &(struct store_disk){.ctx = &d, .pending_exists = log_exists, .place = log_place},
	                         &lim, &rec, &why),
	       -EDQUOT, "a second name beyond --client-max-files 1, in the transaction");
	is_int(why, STORE_LIMIT_CLIENT_MAX_FILES, "refused by --client-max-files");
	make_file(&f, id, "b.txt", "files/l/b.txt", 1, 4);
	is_int(store_record_file(st, &f, TOKEN_C,
	                         &(struct store_disk){.ctx = &d, .pending_exists = log_exists, .place = log_place},
	                         &lim, &rec, &why),
	       -EDQUOT, "a given-up name uploaded again is new");
	/* Bad paddings: counted per client over the last hour. */
	lim = (struct store_limits){.max_bad_paddings = 2};
	is_int(store_check_upload(st, id, path, 16, &lim, &why), 0, "no bad padding yet");
	is_int(store_drop_aes_key(st, id, aes, sizeof(aes), &dropped), 0, "a bad padding");
	is_int(store_drop_aes_key(st, id, aes, sizeof(aes), &dropped), 0, "another, with a key already gone");
	is_int(store_drop_aes_key(st, (uint8_t[WIRE_ID_SIZE]){9}, aes, sizeof(aes), &dropped), 0,
	       "one for an unknown id");
	is_int(raw_int(db, "SELECT count(*) FROM bad_paddings"), 2, "is not counted");
	is_int(store_check_upload(st, id, path, 16, &lim, &why), -EDQUOT, "two bad paddings: -EDQUOT");
	is_int(why, STORE_LIMIT_MAX_BAD_PADDINGS, "refused by --max-bad-paddings");
	is_int(store_check_upload(st, other, path, 16, &lim, &why), 0, "another client is not held");
	raw_exec(db, "UPDATE bad_paddings SET at = '" OLD_TIME "'");
	is_int(store_check_upload(st, id, path, 16, &lim, &why), 0, "bad paddings over an hour old do not count");
	is_int(store_drop_aes_key(st, id, aes, sizeof(aes), &dropped), 0, "a third");
	is_int(raw_int(db, "SELECT count(*) FROM bad_paddings"), 1, "the old ones pruned in its transaction");
	/* efctl usage. */
	snprintf(seen.name, sizeof(seen.name), "one");
	is_int(store_each_usage(st, see_usage, &seen), 0, "each_usage");
	ok(seen.found && seen.u.stored_bytes == 70 && seen.u.stored_files == 1 && seen.u.kept_aside == 1 &&
	       seen.u.bad_paddings == 1,
	   "a client's usage: bytes, files, kept-aside copies, bad paddings of the last hour");
	is_int(store_count_files(st, id, &n), 0, "count_files");
	is_int(n, 2, "counts every row, the given-up one too");
	snprintf(seen.name, sizeof(seen.name), "2001:db8::/64");
	is_int(store_each_source(st, see_source, &seen), 0, "each_source");
	ok(seen.sources == 2 && seen.registrations == 1, "the sources of the last hour, with their registrations");
	/* The counters are what a recount finds, and the integrity check is the recount. */
	is_int(raw_int(db,
	               "SELECT count(*) FROM clients WHERE stored_bytes != (SELECT coalesce(sum(CASE WHEN status = 0 "
	               "THEN size ELSE 0 END + coalesce(pending_size, 0)), 0) FROM files WHERE client_id = clients.id) "
	               "OR stored_files != (SELECT count(*) FROM files WHERE client_id = clients.id AND status = 0)"),
	       0, "every client's counters are what a recount finds");
	is_int(store_integrity_check(st), 0, "the integrity check finds them right");
	raw_exec(db, "UPDATE clients SET stored_bytes = stored_bytes + 1");
	is_int(store_integrity_check(st), -EIO, "a client's bytes off by one: the integrity check says so");
	detail = failure_str(-EIO);
	ok(strstr(detail, "counters that disagree with a recount: client '") != NULL, "naming the client (%s)", detail);
	raw_exec(db, "UPDATE clients SET stored_bytes = stored_bytes - 1");
	raw_exec(db, "UPDATE totals SET clients = clients + 1");
	is_int(store_integrity_check(st), -EIO, "the count of clients off by one: the integrity check says so");
	detail = failure_str(-EIO);
	ok(strstr(detail, "the count of clients") != NULL, "naming the count (%s)", detail);
	raw_exec(db, "UPDATE totals SET clients = clients - 1");
	is_int(store_remove_client(st, id), 0, "remove the client");
	is_int(raw_int(db, "SELECT count(*) FROM bad_paddings"), 0, "its bad paddings go with it");
	is_int(store_integrity_check(st), 0, "the database is intact");
	raw_close(db);
	store_close(st);
	free(dir);
}

static int refuse_creation(void *ctx)
{
	(*(int *)ctx)++;
	return -EEXIST;
}

/* No database is made where the caller says one would lose what the state directory holds. */
static void test_no_creation(void)
{
	char *dir = make_subdir("nocreate"), *path = xasprintf(dir, STORE_DB_NAME);
	struct store *st = NULL;
	struct stat sb;
	int asked = 0, fd;
	struct raw *db;

	if (pg_url) {
		is_int(t_open(dir, 0, refuse_creation, &asked, &st), -EEXIST, "a database with no schema, refused");
		ok(asked == 1 && st == NULL, "the callback was asked");
		ok(strcmp(failure_str(-EEXIST), "the PostgreSQL database has no efserver schema") == 0,
		   "the note says what was found");
		db = raw_open(dir);
		is_int(raw_int(db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"), 0,
		       "nothing was created");
		raw_close(db);
	} else {
		is_int(t_open(dir, 0, refuse_creation, &asked, &st), -EEXIST, "a missing database, creation refused");
		ok(asked == 1 && st == NULL && stat(path, &sb) < 0, "the callback was asked, nothing was created");
		ok(strcmp(failure_str(-EEXIST), STORE_DB_NAME " is missing") == 0, "the note says what was found");
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		close(fd);
		is_int(t_open(dir, 0, refuse_creation, &asked, &st), -EEXIST, "an empty (0-byte) database, refused");
		ok(strcmp(failure_str(-EEXIST), STORE_DB_NAME " is empty (0 bytes)") == 0, "the note says so");
		ok(stat(path, &sb) == 0 && sb.st_size == 0, "the file is left as it was");
		db = raw_open(dir);
		raw_exec(db, "CREATE TABLE t (x); DROP TABLE t");
		raw_close(db);
		is_int(t_open(dir, 0, refuse_creation, &asked, &st), -EEXIST, "a database with no schema, refused");
		ok(strcmp(failure_str(-EEXIST), STORE_DB_NAME " has no schema") == 0, "the note says so");
	}
	asked = 0;
	is_int(t_open(dir, 0, NULL, NULL, &st), 0, "allowed, the schema is created");
	store_close(st);
	is_int(t_open(dir, 0, refuse_creation, &asked, &st), 0, "an existing database opens, whatever the callback");
	is_int(asked, 0, "without asking it");
	store_close(st);
	free(path);
	free(dir);
}

#ifdef HAVE_POSTGRESQL
/* The server ends the store's connection, as a restart or a network failure would. */
static struct raw *killer;

static void kill_connections(void)
{
	raw_exec(killer, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	                 "WHERE application_name = 'test-store' AND pid <> pg_backend_pid()");
}

/* A publication during which the connection is lost: the transaction cannot commit. */
static int place_and_kill(void *ctx, bool aside, const char *token)
{
	(void)ctx;
	(void)aside;
	(void)token;
	kill_connections();
	return 0;
}

/*
 * PostgreSQL's connection lost: between transactions, a read or a write
 * makes it again and succeeds; inside one, the request fails and changes
 * nothing, and a COMMIT that could not be sent is found not to have
 * committed (txid_status) rather than guessed; then the store goes on.
 */
static void test_lost_connection(void)
{
	char *dir = make_subdir("lost");
	const char *path = "files/l0/lost.txt";
	uint8_t id[WIRE_ID_SIZE];
	struct store_client c;
	struct store_file f, g;
	struct store_recorded rec;
	struct disk_log d = {0};
	struct store_disk disk = disk_of(&d);
	struct store *st = NULL;
	const char *why;
	int r;

	make_id(id, 8, 8);
	if (t_open(dir, 0, NULL, NULL, &st) < 0 || store_register_client(st, id, "lost") < 0) {
		ok(0, "lost-connection set-up");
		store_close(st);
		free(dir);
		return;
	}
	killer = raw_open(dir);
	kill_connections();
	is_int(store_get_client(st, id, &c), 0, "a read after the connection was lost connects again");
	kill_connections();
	is_int(store_touch(st, id), 0, "so does a write transaction");
	make_file(&f, id, "lost.txt", path, 10, 1);
	disk.place = place_and_kill;
	r = store_record_file(st, &f, TOKEN_A, &disk, NULL, &rec, NULL);
	is_int(r, -EIO, "an upload whose connection is lost inside its transaction fails with -EIO");
	why = failure_str(r);
	ok(strstr(why, "PostgreSQL: ") != NULL, "and the note says what PostgreSQL said (%s)", why);
	is_int(store_get_file(st, id, path, &g), -ENOENT, "its row was not written");
	disk.place = log_place;
	is_int(record(st, &f, TOKEN_A, &d, &rec), 0, "the next upload is recorded");
	is_int(store_get_file(st, id, path, &g), 0, "and its row is there");
	is_int(store_integrity_check(st), 0, "the database is intact");
	raw_close(killer);
	store_close(st);
	free(dir);
}
#endif

int main(void)
{
	const char *base = getenv("TMPDIR");
	struct store *st = NULL;
	char *dir;

	if (!base || !*base)
		base = "/tmp";
	pg_url = getenv("EFSERVER_TEST_DATABASE");
	if (pg_url && !*pg_url)
		pg_url = NULL;
#ifndef HAVE_POSTGRESQL
	if (pg_url) {
		printf("1..0 # SKIP built without PostgreSQL (libpq-dev)\n");
		return 0;
	}
#endif
	if (pg_url)
		printf("# the store on PostgreSQL\n");
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
		test_kept_aside(st);
		test_iteration(st);
		store_close(st);
		test_reopen(dir);
	}
	test_versions();
	test_not_a_database();
	test_crash();
	test_migration();
	test_limits();
	test_no_creation();
	test_short_connections();
	test_concurrency();
	test_same_client();
	test_registrations_at_once();
#ifdef HAVE_POSTGRESQL
	if (pg_url)
		test_lost_connection();
#endif

	free(dir);
	if (nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
		perror(tmpdir);
	free(tmpdir);
	return tap_done();
}
