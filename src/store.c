/*
 * The store (efserver-protocol(7), "What the server keeps"): clients and files
 * in one SQLite database shared by every efsession process. Each process has
 * one connection; every write is one BEGIN IMMEDIATE transaction so that a
 * competing writer makes us wait on the busy timeout instead of failing.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "failure.h"
#include "store.h"

#define STORE_BUSY_TIMEOUT_DEFAULT_MS 60000
/* Further attempts after the busy timeout itself gave up, or after a lock error SQLite does not wait on. */
#define STORE_RETRIES           8
#define STORE_JOURNAL_MODE_SIZE 16
#define STORE_TIME_SIZE         32
/*
 * WAL frames (4 KiB pages) from which the last connection to close moves
 * them into the database and empties the WAL (wal_empty); and from which a
 * commit checkpoints, as SQLite's automatic checkpoint does.
 */
#define STORE_WAL_CHECKPOINT_FRAMES 32
#define STORE_WAL_AUTOCHECKPOINT    128

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ISO 8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.000Z. */
#define SQL_NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

/*
 * The limits in the schema are literals so that a schema version never
 * changes meaning; these tie them to the constants the code relies on.
 */
_Static_assert(WIRE_ID_SIZE == 16, "clients.id CHECK");
_Static_assert(WIRE_NAME_MAX == 254, "name and file_name CHECK");
_Static_assert(STORE_PATH_MAX - 1 == 511, "path_name CHECK");
_Static_assert(DER_RSA_SPKI_MAX == 1100, "public_key CHECK");
_Static_assert(STORE_AES_MAX == 32, "aes_key CHECK");
_Static_assert(STORE_FILE_STORED == 0 && STORE_FILE_FAILED == 1, "files.status CHECK and statements");
_Static_assert(sizeof(((struct store_client *)0)->last_seen) == STORE_TIME_SIZE, "time buffers");
_Static_assert(sizeof(((struct store_file *)0)->received) == STORE_TIME_SIZE, "time buffers");

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

/* Step n takes the schema from version n-1 to version n. */
static const struct migration {
	int version;
	const char *sql;
} migrations[] = {
    {1, schema_v1},
};
_Static_assert(ARRAY_SIZE(migrations) == STORE_SCHEMA_VERSION, "one migration step per schema version");

#define CLIENT_COLUMNS                                                                                                 \
	"id, name, public_key, aes_key, last_seen, (SELECT count(*) FROM files WHERE files.client_id = clients.id)"
#define FILE_COLUMNS "client_id, file_name, path_name, verified, status, size, checksum, attempts, received"

/* The statements used per request, prepared on first use and kept until store_close. */
enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_CLIENT_INSERT,
	ST_CLIENT_BY_ID,
	ST_CLIENT_BY_NAME,
	ST_CLIENT_TOUCH,
	ST_CLIENT_KEYS,
	ST_CLIENT_SET_KEYS,
	ST_CLIENT_SET_AES,
	ST_FILE_GET,
	ST_FILE_UPSERT,
	ST_FILE_ATTEMPTS,
	ST_FILE_VERIFY,
	ST_FILE_UNVERIFY,
	ST_FILE_CHECK,
	ST_FILE_GIVE_UP,
	ST_CLIENT_DELETE,
	ST_FILE_DELETE,
	ST_COUNT,
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_CLIENT_INSERT] =
        "INSERT INTO clients (id, name, registered, last_seen) VALUES (?1, ?2, " SQL_NOW ", " SQL_NOW ")",
    [ST_CLIENT_BY_ID] = "SELECT " CLIENT_COLUMNS " FROM clients WHERE id = ?1",
    [ST_CLIENT_BY_NAME] = "SELECT " CLIENT_COLUMNS " FROM clients WHERE name = ?1",
    [ST_CLIENT_TOUCH] = "UPDATE clients SET last_seen = " SQL_NOW " WHERE id = ?1",
    [ST_CLIENT_KEYS] = "SELECT name, public_key FROM clients WHERE id = ?1",
    [ST_CLIENT_SET_KEYS] =
        "UPDATE clients SET public_key = coalesce(public_key, ?2), aes_key = ?3, last_seen = " SQL_NOW " WHERE id = ?1",
    [ST_CLIENT_SET_AES] =
        "UPDATE clients SET aes_key = ?2, last_seen = " SQL_NOW " WHERE id = ?1 AND public_key IS NOT NULL",
    [ST_FILE_GET] = "SELECT " FILE_COLUMNS " FROM files WHERE client_id = ?1 AND path_name = ?2",
    /* Every column of the assignments reads the old row, so the CASE sees the previous file name. */
    [ST_FILE_UPSERT] = "INSERT INTO files (" FILE_COLUMNS ") VALUES (?1, ?2, ?3, 0, 0, ?4, ?5, 1, " SQL_NOW ")\n"
                       "ON CONFLICT (client_id, path_name) DO UPDATE SET\n"
                       "	attempts = CASE WHEN file_name = excluded.file_name THEN attempts + 1 ELSE 1 END,\n"
                       "	file_name = excluded.file_name, verified = 0, status = 0, size = excluded.size,\n"
                       "	checksum = excluded.checksum, received = excluded.received",
    [ST_FILE_ATTEMPTS] = "SELECT attempts FROM files WHERE client_id = ?1 AND path_name = ?2",
    [ST_FILE_UNVERIFY] = "UPDATE files SET verified = 0 WHERE client_id = ?1 AND path_name = ?2 AND verified = 1",
    [ST_FILE_VERIFY] = "UPDATE files SET verified = 1 WHERE client_id = ?1 AND path_name = ?2 AND file_name = ?3 AND "
                       "status = 0",
    /* A check changes no file row: the client's last seen is the only write, and only if the file is there. */
    [ST_FILE_CHECK] = "UPDATE clients SET last_seen = " SQL_NOW " WHERE id = ?1 AND EXISTS (SELECT 1 FROM files "
                      "WHERE client_id = ?1 AND path_name = ?2 AND file_name = ?3)",
    [ST_FILE_GIVE_UP] = "UPDATE files SET status = 1, verified = 0 WHERE client_id = ?1 AND path_name = ?2 AND "
                        "file_name = ?3",
    [ST_CLIENT_DELETE] = "DELETE FROM clients WHERE id = ?1",
    /* A given-up file has no copy by design: its row is history, not debris. */
    [ST_FILE_DELETE] = "DELETE FROM files WHERE client_id = ?1 AND path_name = ?2 AND status = 0",
};

struct store {
	sqlite3 *db;
	bool readonly;
	int wal_frames; /* in the WAL after this connection's last commit */
	sqlite3_stmt *stmt[ST_COUNT];
};

/* Errors that mean another process holds a lock: worth another try. */
static bool rc_is_busy(int rc)
{
	rc &= 0xff;
	return rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_PROTOCOL;
}

/*
 * A failure of the database, rc: SQLite's own words noted (failure.h) with
 * err, and the system's where a system call failed. Read before anything
 * else runs on the connection and replaces them (the ROLLBACK that follows).
 */
static int fail_as(struct store *st, int rc, int err)
{
	int sys = sqlite3_system_errno(st->db);

	rc &= 0xff;
	if (sys > 0 && (rc == SQLITE_IOERR || rc == SQLITE_CANTOPEN || rc == SQLITE_FULL))
		return failure_note(err, "SQLite: %s (%s)", sqlite3_errmsg(st->db), strerror(sys));
	return failure_note(err, "SQLite: %s", sqlite3_errmsg(st->db));
}

/* The same, with SQLite's result code turned into a negative errno. */
static int fail(struct store *st, int rc)
{
	int e;

	switch (rc & 0xff) {
	case SQLITE_FULL:
		return fail_as(st, rc, -ENOSPC);
	case SQLITE_NOMEM:
		return fail_as(st, rc, -ENOMEM);
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_PROTOCOL:
		return fail_as(st, rc, -EBUSY);
	case SQLITE_READONLY:
		return fail_as(st, rc, -EROFS);
	case SQLITE_CANTOPEN:
		e = sqlite3_system_errno(st->db);
		return fail_as(st, rc, e > 0 ? -e : -EIO);
	default:
		return fail_as(st, rc, -EIO);
	}
}

/* A short, growing pause with a per-process offset, so that retrying processes do not collide again in step. */
static void backoff(unsigned attempt)
{
	long ms = 10L * (long)(attempt + 1) + (long)(getpid() % 10);
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		continue;
}

static int stmt_get(struct store *st, enum stmt_id id, sqlite3_stmt **out)
{
	int rc;

	if (!st->stmt[id]) {
		rc = sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[id], NULL);
		if (rc != SQLITE_OK)
			return fail(st, rc);
	}
	*out = st->stmt[id];
	return 0;
}

/* Leave a cached statement ready for its next use and holding no pointer to the caller's buffers. */
static void stmt_done(sqlite3_stmt *s)
{
	(void)sqlite3_reset(s);
	(void)sqlite3_clear_bindings(s);
}

/*
 * First step of a read outside any transaction. In WAL mode readers do not
 * wait on writers, but a reader can still meet a lock during WAL recovery or
 * a checkpoint restart: nothing has been read yet, so it is safe to retry.
 */
static int step_read(sqlite3_stmt *s)
{
	int rc;

	for (unsigned i = 0;; i++) {
		rc = sqlite3_step(s);
		if (!rc_is_busy(rc) || i >= STORE_RETRIES || !sqlite3_get_autocommit(sqlite3_db_handle(s)))
			return rc;
		(void)sqlite3_reset(s);
		backoff(i);
	}
}

/* Run a bound statement that returns no row, then reset it. */
static int stmt_exec(struct store *st, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	int r = rc == SQLITE_DONE ? 0 : fail(st, rc);

	stmt_done(s);
	return r;
}

static int bind_id(sqlite3_stmt *s, int i, const uint8_t id[WIRE_ID_SIZE])
{
	return sqlite3_bind_blob(s, i, id, WIRE_ID_SIZE, SQLITE_STATIC);
}

/* The caller's buffers outlive the statement's use: SQLITE_STATIC keeps SQLite from copying keys. */
static int bind_str(sqlite3_stmt *s, int i, const char *v)
{
	return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

static int bind_failed(struct store *st, sqlite3_stmt *s)
{
	int r = fail(st, sqlite3_errcode(st->db));

	stmt_done(s);
	return r;
}

static void tx_rollback(struct store *st)
{
	/* SQLite may already have rolled back on its own (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM). */
	if (sqlite3_get_autocommit(st->db))
		return;
	(void)sqlite3_step(st->stmt[ST_ROLLBACK]);
	(void)sqlite3_reset(st->stmt[ST_ROLLBACK]);
}

/*
 * BEGIN IMMEDIATE takes the write lock at once, so it waits on the busy
 * timeout; a deferred transaction upgraded later could fail without waiting.
 * If even the timeout runs out, try a few more times before giving up.
 */
static int tx_begin(struct store *st)
{
	sqlite3_stmt *s = st->stmt[ST_BEGIN];
	int rc, r;

	if (st->readonly)
		return -EROFS;
	for (unsigned i = 0;; i++) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_DONE || !rc_is_busy(rc) || i >= STORE_RETRIES)
			break;
		(void)sqlite3_reset(s);
		backoff(i);
	}
	r = rc == SQLITE_DONE ? 0 : fail(st, rc);
	(void)sqlite3_reset(s);
	return r;
}

/* On failure the transaction is rolled back; a COMMIT that met a lock is still open and can be retried. */
static int tx_commit(struct store *st)
{
	sqlite3_stmt *s = st->stmt[ST_COMMIT];
	int rc, r;

	for (unsigned i = 0;; i++) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_DONE || !rc_is_busy(rc) || i >= STORE_RETRIES || sqlite3_get_autocommit(st->db))
			break;
		(void)sqlite3_reset(s);
		backoff(i);
	}
	r = rc == SQLITE_DONE ? 0 : fail(st, rc);
	(void)sqlite3_reset(s);
	if (r < 0)
		tx_rollback(st);
	return r;
}

/* Run a one-shot PRAGMA, retrying while another process holds a lock; report its first column if asked. */
static int pragma(struct store *st, const char *sql, sqlite3_int64 *num, char *text, size_t text_size)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;
	int rc;

	for (unsigned i = 0;; i++) {
		rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
		if (rc == SQLITE_OK) {
			rc = sqlite3_step(s);
			if (rc == SQLITE_ROW) {
				if (num)
					*num = sqlite3_column_int64(s, 0);
				if (text) {
					t = sqlite3_column_text(s, 0);
					snprintf(text, text_size, "%s", t ? (const char *)t : "");
				}
				rc = SQLITE_DONE;
			}
		}
		if (rc != SQLITE_DONE) {
			int r = !rc_is_busy(rc) || i >= STORE_RETRIES ? fail(st, rc) : 0;

			(void)sqlite3_finalize(s);
			s = NULL;
			if (r < 0)
				return r;
			backoff(i);
			continue;
		}
		(void)sqlite3_finalize(s);
		return 0;
	}
}

/* A schema version this program cannot use (a newer efsession wrote it): say which. */
static int schema_unknown(sqlite3_int64 v)
{
	return failure_note(-EPROTO,
	                    "the database schema is newer than this program knows (version %lld; this program "
	                    "knows up to %d)",
	                    (long long)v, STORE_SCHEMA_VERSION);
}

/*
 * Create or migrate the schema. Whoever finds it old takes the write lock
 * and looks again, since another process may have migrated it meanwhile.
 */
static int schema_upgrade(struct store *st)
{
	char sql[64];
	sqlite3_int64 v = 0;
	int rc, r;

	r = pragma(st, "PRAGMA user_version", &v, NULL, 0);
	if (r < 0)
		return r;
	if (v == STORE_SCHEMA_VERSION)
		return 0;
	if (v < 0 || v > STORE_SCHEMA_VERSION)
		return schema_unknown(v);

	r = tx_begin(st);
	if (r < 0)
		return r;
	r = pragma(st, "PRAGMA user_version", &v, NULL, 0);
	if (r < 0)
		goto rollback;
	if (v < 0 || v > STORE_SCHEMA_VERSION) {
		r = schema_unknown(v);
		goto rollback;
	}
	if (v == STORE_SCHEMA_VERSION) {
		tx_rollback(st);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(migrations); i++) {
		if (migrations[i].version <= v)
			continue;
		rc = sqlite3_exec(st->db, migrations[i].sql, NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			r = fail(st, rc);
			goto rollback;
		}
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		r = fail(st, rc);
		goto rollback;
	}
	return tx_commit(st);

rollback:
	tx_rollback(st);
	return r;
}

/*
 * WAL lets readers run beside the one writer. Switching a brand-new file to
 * WAL takes an exclusive lock that a process opening it at the same moment
 * may hold, hence the retries in pragma().
 */
static int journal_wal(struct store *st)
{
	char mode[STORE_JOURNAL_MODE_SIZE];
	int r;

	r = pragma(st, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode));
	if (r < 0)
		return r;
	if (strcmp(mode, "wal") != 0)
		return failure_note(-EOPNOTSUPP, "the database cannot use WAL journal mode here");
	return 0;
}

static int db_path(const char *state_dir, char **out)
{
	char *path;

	if (!state_dir || !*state_dir)
		return -EINVAL;
	if (asprintf(&path, "%s/%s", state_dir, STORE_DB_NAME) < 0)
		return -ENOMEM;
	*out = path;
	return 0;
}

/*
 * The database holds AES keys: create it 0600 whatever the umask. SQLite
 * gives the -wal, -shm and -journal files the mode of the database file.
 */
static int create_private(const char *path)
{
	int fd, r = 0;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return errno == EEXIST ? 0 : -errno;
	if (fchmod(fd, 0600) < 0)
		r = -errno;
	(void)close(fd);
	return r;
}

/*
 * The first process to open the database when no other has it open rebuilds
 * the WAL index by reading every frame of the WAL, and SQLite restarts the
 * WAL only from an index that remembers the last checkpoint: with one short
 * process per connection, one after another, the WAL never restarts, every
 * process reads it whole, and past STORE_WAL_AUTOCHECKPOINT every commit
 * copies it into the database again. So the last connection to close,
 * after its responses, empties a WAL its commits left long: SQLite's own
 * checkpoint at close, which it makes only when it can lock the database
 * file exclusively, truncating the WAL rather than deleting it. Others
 * still open, it does nothing, and the WAL restarts as it should.
 */
static void wal_empty(struct store *st)
{
	int persist = 1;

	if (st->wal_frames < STORE_WAL_CHECKPOINT_FRAMES ||
	    sqlite3_file_control(st->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist) != SQLITE_OK ||
	    sqlite3_exec(st->db, "PRAGMA journal_size_limit = 0", NULL, NULL, NULL) != SQLITE_OK)
		return;
	(void)sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, (int *)NULL);
}

/* After each commit: what SQLite's automatic checkpoint does, and the WAL's length for wal_empty. */
static int wal_committed(void *ctx, sqlite3 *db, const char *name, int frames)
{
	struct store *st = ctx;

	st->wal_frames = frames;
	if (frames >= STORE_WAL_AUTOCHECKPOINT)
		(void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	return SQLITE_OK;
}

/* In place of the unix VFS's opener of a file's directory: SQLite then skips its directory sync. */
static int no_directory(const char *path, int *fd)
{
	(void)path;
	(void)fd;
	return SQLITE_CANTOPEN;
}

/*
 * SQLite syncs the directory at the first sync of any WAL it opens with
 * leave to create it, in case the file is new: with a process per request,
 * one more sync for every request that writes. The WAL is on disk with its
 * directory entry once any connection has synced the directory after the
 * file appeared, and every connection does so before its first commit when
 * the WAL was missing before it opened the database, or is still empty now
 * that it has (no commit yet, or emptied by wal_empty); so SQLite's own
 * directory sync is turned off. No other connection can delete the WAL
 * while this one has the database open. Errors are ignored, as SQLite
 * ignores them.
 */
static void wal_directory(const char *state_dir, const char *wal, bool wal_was_missing)
{
	sqlite3_vfs *vfs = sqlite3_vfs_find(NULL);
	struct stat sb;
	int fd;

	if (wal_was_missing || stat(wal, &sb) < 0 || sb.st_size == 0) {
		fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			(void)fsync(fd);
			(void)close(fd);
		}
	}
	if (vfs && vfs->iVersion >= 3 && vfs->xSetSystemCall)
		(void)vfs->xSetSystemCall(vfs, "openDirectory", (sqlite3_syscall_ptr)no_directory);
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(st->stmt); i++)
		(void)sqlite3_finalize(st->stmt[i]);
	wal_empty(st);
	(void)sqlite3_close_v2(st->db);
	free(st);
}

static int store_new(const char *path, int flags, int busy_timeout_ms, struct store **out)
{
	struct store *st;
	int rc, r;

	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->readonly = (flags & SQLITE_OPEN_READONLY) != 0;
	rc = sqlite3_open_v2(path, &st->db, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE, NULL);
	if (rc != SQLITE_OK) {
		/* Without a handle SQLite could not even allocate one. */
		r = st->db ? fail(st, rc) : -ENOMEM;
		store_close(st);
		return r;
	}
	/* Before any statement reads the file: every lock from here on waits. */
	(void)sqlite3_busy_timeout(st->db, busy_timeout_ms > 0 ? busy_timeout_ms : STORE_BUSY_TIMEOUT_DEFAULT_MS);
	/* The schema is ours alone: refuse tricks a crafted database file could play. */
	(void)sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	(void)sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
	/*
	 * Each connection is one short process: a checkpoint at every close would
	 * sync the database and delete the WAL that the next process recreates.
	 * Commits are synced to the WAL all the same (synchronous FULL); the
	 * last connection to close after the WAL has grown moves it into the
	 * database (wal_empty).
	 */
	(void)sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	*out = st;
	return 0;
}

int store_open(const char *state_dir, int busy_timeout_ms, struct store **out)
{
	struct store *st = NULL;
	struct stat sb;
	char *path = NULL, *wal = NULL;
	bool wal_was_missing;
	int r;

	failure_clear();
	if (!out)
		return -EINVAL;
	r = db_path(state_dir, &path);
	if (r < 0)
		return r;
	r = create_private(path);
	if (r < 0)
		goto out;
	if (asprintf(&wal, "%s-wal", path) < 0) {
		r = -ENOMEM;
		goto out;
	}
	wal_was_missing = stat(wal, &sb) < 0;
	/* No SQLITE_OPEN_CREATE: the file exists with mode 0600; if it vanished meanwhile, fail rather than recreate it. */
	r = store_new(path, SQLITE_OPEN_READWRITE, busy_timeout_ms, &st);
	if (r < 0)
		goto out;
	for (enum stmt_id id = ST_BEGIN; id <= ST_ROLLBACK; id++) {
		sqlite3_stmt *s = NULL;

		/* Prepared now so that a ROLLBACK never has to allocate. */
		r = stmt_get(st, id, &s);
		if (r < 0)
			goto out;
	}
	r = journal_wal(st);
	if (r < 0)
		goto out;
	/* FULL syncs the WAL at every commit: a file acknowledged with 2103 survives a power loss. */
	r = pragma(st, "PRAGMA synchronous = FULL", NULL, NULL, 0);
	if (r < 0)
		goto out;
	/* The automatic checkpoint at commit, and the WAL's length for wal_empty. */
	(void)sqlite3_wal_hook(st->db, wal_committed, st);
	r = pragma(st, "PRAGMA foreign_keys = ON", NULL, NULL, 0);
	if (r < 0)
		goto out;
	r = schema_upgrade(st);
	if (r < 0)
		goto out;
	wal_directory(state_dir, wal, wal_was_missing);
	*out = st;
	st = NULL;
out:
	store_close(st);
	free(wal);
	free(path);
	return r;
}

int store_open_readonly(const char *state_dir, int busy_timeout_ms, struct store **out)
{
	struct store *st = NULL;
	struct stat sb;
	char *path = NULL;
	sqlite3_int64 v = 0;
	int r;

	failure_clear();
	if (!out)
		return -EINVAL;
	r = db_path(state_dir, &path);
	if (r < 0)
		return r;
	if (stat(path, &sb) < 0) {
		r = -errno;
		goto out;
	}
	r = store_new(path, SQLITE_OPEN_READONLY, busy_timeout_ms, &st);
	if (r < 0)
		goto out;
	r = pragma(st, "PRAGMA user_version", &v, NULL, 0);
	if (r < 0)
		goto out;
	/* Version 0: the file exists but no efsession has created the schema yet. */
	if (v == 0) {
		r = -ENOENT;
		goto out;
	}
	if (v != STORE_SCHEMA_VERSION) {
		r = v > STORE_SCHEMA_VERSION ? schema_unknown(v)
		                             : failure_note(-EPROTO, "the database schema is older than this program "
		                                                     "knows; efsession upgrades it when it next runs");
		goto out;
	}
	*out = st;
	st = NULL;
out:
	store_close(st);
	free(path);
	return r;
}

/* A string argument must fit its column and the struct field it is read back into. */
static bool str_ok(const char *s, size_t size)
{
	size_t n;

	if (!s)
		return false;
	n = strnlen(s, size);
	return n > 0 && n < size;
}

/* Copy a text column into a fixed field; a value that cannot fit means the row was not written by us. */
static bool column_str(sqlite3_stmt *s, int col, char *dst, size_t size, bool may_be_empty)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	int n = sqlite3_column_bytes(s, col);

	if (!t || n < 0 || (size_t)n >= size || (n == 0 && !may_be_empty) || memchr(t, '\0', (size_t)n))
		return false;
	memcpy(dst, t, (size_t)n);
	dst[n] = '\0';
	return true;
}

/* Copy a blob column (NULL reads as length 0) into a fixed field. */
static bool column_blob(sqlite3_stmt *s, int col, uint8_t *dst, size_t size, size_t *len)
{
	const void *b = sqlite3_column_blob(s, col);
	int n = sqlite3_column_bytes(s, col);

	if (n < 0 || (size_t)n > size || (n > 0 && !b))
		return false;
	if (n > 0)
		memcpy(dst, b, (size_t)n);
	*len = (size_t)n;
	return true;
}

/* A row or check result the schema should have made impossible. */
static int corrupt(const char *what)
{
	return failure_note(-EIO, "%s", what);
}

static int client_from_row(sqlite3_stmt *s, void *out)
{
	struct store_client *c = out;
	size_t id_len = 0;

	memset(c, 0, sizeof(*c));
	if (!column_blob(s, 0, c->id, sizeof(c->id), &id_len) || id_len != WIRE_ID_SIZE ||
	    !column_str(s, 1, c->name, sizeof(c->name), false) ||
	    !column_blob(s, 2, c->public_key, sizeof(c->public_key), &c->public_key_len) ||
	    !column_blob(s, 3, c->aes_key, sizeof(c->aes_key), &c->aes_key_len) ||
	    !column_str(s, 4, c->last_seen, sizeof(c->last_seen), true))
		return corrupt("malformed row in table clients");
	c->file_count = sqlite3_column_int64(s, 5);
	return 0;
}

static int file_from_row(sqlite3_stmt *s, void *out)
{
	struct store_file *f = out;
	size_t id_len = 0;
	sqlite3_int64 status, size, checksum;

	memset(f, 0, sizeof(*f));
	status = sqlite3_column_int64(s, 4);
	size = sqlite3_column_int64(s, 5);
	checksum = sqlite3_column_int64(s, 6);
	if (!column_blob(s, 0, f->client_id, sizeof(f->client_id), &id_len) || id_len != WIRE_ID_SIZE ||
	    !column_str(s, 1, f->file_name, sizeof(f->file_name), false) ||
	    !column_str(s, 2, f->path_name, sizeof(f->path_name), false) ||
	    !column_str(s, 8, f->received, sizeof(f->received), true) ||
	    (status != STORE_FILE_STORED && status != STORE_FILE_FAILED) || size < 0 || checksum < 0 ||
	    checksum > UINT32_MAX)
		return corrupt("malformed row in table files");
	f->verified = sqlite3_column_int64(s, 3) != 0;
	f->status = (enum store_file_status)status;
	f->size = (uint64_t)size;
	f->checksum = (uint32_t)checksum;
	f->attempts = sqlite3_column_int64(s, 7);
	return 0;
}

int store_register_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (!st || !id || !str_ok(name, WIRE_NAME_SIZE))
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	r = stmt_get(st, ST_CLIENT_INSERT, &s);
	if (r < 0)
		goto rollback;
	if (bind_id(s, 1, id) != SQLITE_OK || bind_str(s, 2, name) != SQLITE_OK) {
		r = bind_failed(st, s);
		goto rollback;
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		/* The UNIQUE and PRIMARY KEY constraints decide, atomically, that the name or id is taken. */
		int ext = sqlite3_extended_errcode(st->db);

		if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
			r = -EEXIST;
		else if ((rc & 0xff) == SQLITE_CONSTRAINT)
			r = fail_as(st, rc, -EINVAL);
		else
			r = fail(st, rc);
		stmt_done(s);
		goto rollback;
	}
	stmt_done(s);
	return tx_commit(st);

rollback:
	tx_rollback(st);
	return r;
}

/*
 * The row a bound SELECT of one row finds, read by from_row into tmp and
 * copied to out (size bytes) only on success: 0 or -ENOENT. tmp is wiped
 * after, since a client's row holds its AES key.
 */
static int fetch_one(struct store *st, sqlite3_stmt *s, int (*from_row)(sqlite3_stmt *, void *), void *tmp, void *out,
                     size_t size)
{
	int rc, r;

	rc = step_read(s);
	if (rc == SQLITE_ROW)
		r = from_row(s, tmp);
	else if (rc == SQLITE_DONE)
		r = -ENOENT;
	else
		r = fail(st, rc);
	stmt_done(s);
	if (r == 0)
		memcpy(out, tmp, size);
	explicit_bzero(tmp, size);
	return r;
}

static int client_fetch(struct store *st, sqlite3_stmt *s, struct store_client *out)
{
	struct store_client c;

	return fetch_one(st, s, client_from_row, &c, out, sizeof(c));
}

int store_get_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], struct store_client *out)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (!st || !id || !out)
		return -EINVAL;
	failure_clear();
	r = stmt_get(st, ST_CLIENT_BY_ID, &s);
	if (r < 0)
		return r;
	if (bind_id(s, 1, id) != SQLITE_OK)
		return bind_failed(st, s);
	return client_fetch(st, s, out);
}

int store_find_client_by_name(struct store *st, const char *name, struct store_client *out)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (!st || !out || !str_ok(name, WIRE_NAME_SIZE))
		return -EINVAL;
	failure_clear();
	r = stmt_get(st, ST_CLIENT_BY_NAME, &s);
	if (r < 0)
		return r;
	if (bind_str(s, 1, name) != SQLITE_OK)
		return bind_failed(st, s);
	return client_fetch(st, s, out);
}

/* Within a transaction: last seen of a known id; an unknown id changes nothing. */
static int touch(struct store *st, const uint8_t id[WIRE_ID_SIZE])
{
	sqlite3_stmt *s = NULL;
	int r;

	r = stmt_get(st, ST_CLIENT_TOUCH, &s);
	if (r < 0)
		return r;
	if (bind_id(s, 1, id) != SQLITE_OK)
		return bind_failed(st, s);
	return stmt_exec(st, s);
}

int store_touch(struct store *st, const uint8_t id[WIRE_ID_SIZE])
{
	int r;

	if (!st || !id)
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	r = touch(st, id);
	if (r < 0) {
		tx_rollback(st);
		return r;
	}
	return tx_commit(st);
}

/* Within a transaction: may this id, under this name, get a key with this SPKI? 0, -ENOENT or -EPERM. */
static int keys_allowed(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                        size_t spki_len)
{
	sqlite3_stmt *s = NULL;
	const void *stored_name, *stored_key;
	size_t name_len = strlen(name);
	int rc, r, n;

	r = stmt_get(st, ST_CLIENT_KEYS, &s);
	if (r < 0)
		return r;
	if (bind_id(s, 1, id) != SQLITE_OK)
		return bind_failed(st, s);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		r = -ENOENT;
	} else if (rc != SQLITE_ROW) {
		r = fail(st, rc);
	} else {
		stored_name = sqlite3_column_text(s, 0);
		n = sqlite3_column_bytes(s, 0);
		if (!stored_name || (size_t)n != name_len || memcmp(stored_name, name, name_len) != 0) {
			r = -ENOENT;
		} else {
			/* The first key a client sends is its identity: a different one later is refused. */
			stored_key = sqlite3_column_blob(s, 1);
			n = sqlite3_column_bytes(s, 1);
			if (n > 0 && (!stored_key || (size_t)n != spki_len || memcmp(stored_key, spki, spki_len) != 0))
				r = -EPERM;
		}
	}
	stmt_done(s);
	return r;
}

int store_set_keys(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                   size_t spki_len, const uint8_t *aes, size_t aes_len)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (!st || !id || !str_ok(name, WIRE_NAME_SIZE) || !spki || spki_len == 0 || spki_len > DER_RSA_SPKI_MAX ||
	    !aes || aes_len == 0 || aes_len > STORE_AES_MAX)
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	r = keys_allowed(st, id, name, spki, spki_len);
	if (r < 0)
		goto rollback;
	r = stmt_get(st, ST_CLIENT_SET_KEYS, &s);
	if (r < 0)
		goto rollback;
	if (bind_id(s, 1, id) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 2, spki, (int)spki_len, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 3, aes, (int)aes_len, SQLITE_STATIC) != SQLITE_OK) {
		r = bind_failed(st, s);
		goto rollback;
	}
	r = stmt_exec(st, s);
	if (r < 0)
		goto rollback;
	return tx_commit(st);

rollback:
	tx_rollback(st);
	return r;
}

int store_set_aes_key(struct store *st, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes, size_t aes_len)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (!st || !id || !aes || aes_len == 0 || aes_len > STORE_AES_MAX)
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	r = stmt_get(st, ST_CLIENT_SET_AES, &s);
	if (r < 0)
		goto rollback;
	if (bind_id(s, 1, id) != SQLITE_OK || sqlite3_bind_blob(s, 2, aes, (int)aes_len, SQLITE_STATIC) != SQLITE_OK) {
		r = bind_failed(st, s);
		goto rollback;
	}
	r = stmt_exec(st, s);
	if (r < 0)
		goto rollback;
	/* 1027 needs a stored public key to encrypt the new AES key with (efserver-protocol(7), Responses). */
	if (sqlite3_changes(st->db) == 0) {
		r = -ENOENT;
		goto rollback;
	}
	return tx_commit(st);

rollback:
	tx_rollback(st);
	return r;
}

int store_get_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, struct store_file *out)
{
	struct store_file f;
	sqlite3_stmt *s = NULL;
	int r;

	if (!st || !id || !out || !str_ok(path_name, STORE_PATH_MAX))
		return -EINVAL;
	failure_clear();
	r = stmt_get(st, ST_FILE_GET, &s);
	if (r < 0)
		return r;
	if (bind_id(s, 1, id) != SQLITE_OK || bind_str(s, 2, path_name) != SQLITE_OK)
		return bind_failed(st, s);
	return fetch_one(st, s, file_from_row, &f, out, sizeof(f));
}

/* Within a transaction: the attempts count of a row just written. */
static int file_attempts(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, long long *out)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	r = stmt_get(st, ST_FILE_ATTEMPTS, &s);
	if (r < 0)
		return r;
	if (bind_id(s, 1, id) != SQLITE_OK || bind_str(s, 2, path_name) != SQLITE_OK)
		return bind_failed(st, s);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(s, 0);
		r = 0;
	} else if (rc == SQLITE_DONE) {
		r = corrupt("file row missing right after it was written");
	} else {
		r = fail(st, rc);
	}
	stmt_done(s);
	return r;
}

/* A callback inside a transaction: a positive value must not read as success to a caller testing r < 0. */
static int run_callback(store_publish_fn fn, void *ctx)
{
	int r = fn ? fn(ctx) : 0;

	return r > 0 ? -ECANCELED : r;
}

/*
 * One statement on a client's row, or on the row of one of its files (path
 * and, when given, file name), in one transaction: -ENOENT, nothing
 * changed, when it changes no row; then last seen when touch is set, then
 * fn.
 */
static int row_op(struct store *st, enum stmt_id which, const uint8_t id[WIRE_ID_SIZE], const char *path_name,
                  const char *file_name, bool touch_too, store_publish_fn fn, void *ctx)
{
	sqlite3_stmt *s = NULL;
	int r;

	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	r = stmt_get(st, which, &s);
	if (r < 0)
		goto rollback;
	if (bind_id(s, 1, id) != SQLITE_OK || (path_name && bind_str(s, 2, path_name) != SQLITE_OK) ||
	    (file_name && bind_str(s, 3, file_name) != SQLITE_OK)) {
		r = bind_failed(st, s);
		goto rollback;
	}
	r = stmt_exec(st, s);
	if (r < 0)
		goto rollback;
	if (sqlite3_changes(st->db) == 0) {
		r = -ENOENT;
		goto rollback;
	}
	if (touch_too && (r = touch(st, id)) < 0)
		goto rollback;
	if ((r = run_callback(fn, ctx)) < 0)
		goto rollback;
	return tx_commit(st);

rollback:
	tx_rollback(st);
	return r;
}

/*
 * publish() replaces the file before the transaction that records it
 * commits; a crash in between would leave the new content under the old
 * row. So a row that says verified says no more before that, in a
 * transaction of its own: after a crash a row may fail to claim a good
 * file, never claim one the client did not confirm.
 */
static int unverify(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name)
{
	int r = row_op(st, ST_FILE_UNVERIFY, id, path_name, NULL, false, NULL, NULL);

	/* No verified row (the common case): nothing was committed, so nothing was synced. */
	return r == -ENOENT ? 0 : r;
}

/*
 * The row and the file on disk change together: publish runs inside the
 * transaction, so a failed publication leaves the row as it was, and a
 * failed COMMIT is reported for the caller to undo the publication.
 */
int store_record_file(struct store *st, const struct store_file *f, store_publish_fn publish, void *ctx,
                      long long *attempts)
{
	sqlite3_stmt *s = NULL;
	long long n = 0;
	int rc, r;

	if (!st || !f || !str_ok(f->file_name, sizeof(f->file_name)) || !str_ok(f->path_name, sizeof(f->path_name)) ||
	    f->size > INT64_MAX)
		return -EINVAL;
	failure_clear();
	if ((r = unverify(st, f->client_id, f->path_name)) < 0)
		return r;
	r = tx_begin(st);
	if (r < 0)
		return r;
	r = stmt_get(st, ST_FILE_UPSERT, &s);
	if (r < 0)
		goto rollback;
	if (bind_id(s, 1, f->client_id) != SQLITE_OK || bind_str(s, 2, f->file_name) != SQLITE_OK ||
	    bind_str(s, 3, f->path_name) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 4, (sqlite3_int64)f->size) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 5, (sqlite3_int64)f->checksum) != SQLITE_OK) {
		r = bind_failed(st, s);
		goto rollback;
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		int ext = sqlite3_extended_errcode(st->db);

		/* The foreign key says the client is not registered. */
		if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
			r = -ENOENT;
		else if ((rc & 0xff) == SQLITE_CONSTRAINT)
			r = fail_as(st, rc, -EINVAL);
		else
			r = fail(st, rc);
		stmt_done(s);
		goto rollback;
	}
	stmt_done(s);
	r = file_attempts(st, f->client_id, f->path_name, &n);
	if (r < 0)
		goto rollback;
	r = touch(st, f->client_id);
	if (r < 0)
		goto rollback;
	if ((r = run_callback(publish, ctx)) < 0)
		goto rollback;
	r = tx_commit(st);
	if (r < 0)
		return r;
	if (attempts)
		*attempts = n;
	return 0;

rollback:
	tx_rollback(st);
	return r;
}

/*
 * The common shape of 1029/1030/1031: one statement on the row of that
 * client, path and file name, which must exist (else -ENOENT, nothing
 * changed), then last seen, then the callback, all in one transaction.
 */
static int file_op(struct store *st, enum stmt_id which, const uint8_t id[WIRE_ID_SIZE], const char *path_name,
                   const char *file_name, store_publish_fn fn, void *ctx)
{
	if (!st || !id || !str_ok(path_name, STORE_PATH_MAX) || !str_ok(file_name, WIRE_NAME_SIZE))
		return -EINVAL;
	/* ST_FILE_CHECK updates last seen itself. */
	return row_op(st, which, id, path_name, file_name, which != ST_FILE_CHECK, fn, ctx);
}

int store_mark_verified(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, const char *file_name)
{
	return file_op(st, ST_FILE_VERIFY, id, path_name, file_name, NULL, NULL);
}

int store_check_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, const char *file_name)
{
	return file_op(st, ST_FILE_CHECK, id, path_name, file_name, NULL, NULL);
}

int store_give_up(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, const char *file_name,
                  store_publish_fn remove, void *ctx)
{
	return file_op(st, ST_FILE_GIVE_UP, id, path_name, file_name, remove, ctx);
}

int store_remove_client(struct store *st, const uint8_t id[WIRE_ID_SIZE])
{
	if (!st || !id)
		return -EINVAL;
	return row_op(st, ST_CLIENT_DELETE, id, NULL, NULL, false, NULL, NULL);
}

int store_forget_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name,
                      store_publish_fn gone_check, void *ctx)
{
	if (!st || !id || !str_ok(path_name, STORE_PATH_MAX))
		return -EINVAL;
	return row_op(st, ST_FILE_DELETE, id, path_name, NULL, false, gone_check, ctx);
}

/*
 * Iteration statements are prepared per call, not cached: a callback may
 * then call back into the store, even start another iteration.
 */
static int iterate_prepare(struct store *st, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v2(st->db, sql, -1, out, NULL);

	return rc == SQLITE_OK ? 0 : fail(st, rc);
}

int store_each_client(struct store *st, store_client_fn fn, void *ctx)
{
	struct store_client c;
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (!st || !fn)
		return -EINVAL;
	failure_clear();
	r = iterate_prepare(st, "SELECT " CLIENT_COLUMNS " FROM clients ORDER BY name", &s);
	if (r < 0)
		return r;
	memset(&c, 0, sizeof(c));
	for (rc = step_read(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
		r = client_from_row(s, &c);
		if (r == 0)
			r = fn(&c, ctx);
		if (r != 0)
			break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = fail(st, rc);
	explicit_bzero(&c, sizeof(c));
	(void)sqlite3_finalize(s);
	return r;
}

int store_each_file(struct store *st, const uint8_t *id, store_file_fn fn, void *ctx)
{
	struct store_file f;
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (!st || !fn)
		return -EINVAL;
	failure_clear();
	if (id)
		r = iterate_prepare(st, "SELECT " FILE_COLUMNS " FROM files WHERE client_id = ?1 ORDER BY path_name",
		                    &s);
	else
		r = iterate_prepare(st, "SELECT " FILE_COLUMNS " FROM files ORDER BY client_id, path_name", &s);
	if (r < 0)
		return r;
	if (id && bind_id(s, 1, id) != SQLITE_OK) {
		r = fail(st, sqlite3_errcode(st->db));
		(void)sqlite3_finalize(s);
		return r;
	}
	for (rc = step_read(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
		r = file_from_row(s, &f);
		if (r == 0)
			r = fn(&f, ctx);
		if (r != 0)
			break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = fail(st, rc);
	(void)sqlite3_finalize(s);
	return r;
}

/* Run a check PRAGMA that answers with rows of problems; the first one becomes the error message. */
static int check_rows(struct store *st, const char *sql, const char *healthy)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;
	int rc, r;

	r = iterate_prepare(st, sql, &s);
	if (r < 0)
		return r;
	rc = step_read(s);
	if (rc == SQLITE_ROW) {
		t = sqlite3_column_text(s, 0);
		if (healthy && t && strcmp((const char *)t, healthy) == 0 && sqlite3_step(s) == SQLITE_DONE) {
			r = 0;
		} else {
			/* integrity_check says what is wrong; foreign_key_check only names a table. */
			r = corrupt(healthy && t ? (const char *)t : "a row refers to a missing row of another table");
		}
	} else if (rc == SQLITE_DONE) {
		r = healthy ? corrupt("integrity check returned nothing") : 0;
	} else {
		r = fail(st, rc);
	}
	(void)sqlite3_finalize(s);
	return r;
}

/* The pages (integrity_check) and the references between tables (foreign_key_check). */
int store_integrity_check(struct store *st)
{
	int r;

	if (!st)
		return -EINVAL;
	failure_clear();
	r = check_rows(st, "PRAGMA integrity_check", "ok");
	if (r < 0)
		return r;
	return check_rows(st, "PRAGMA foreign_key_check", NULL);
}
