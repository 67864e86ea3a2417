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
/* An hour before, on the database's clock: what the counts of the last hour start after. */
#define SQL_HOUR_AGO "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')"
/*
 * Rows over an hour old that one registration (or bad padding) removes at
 * most: more than the one it adds, so the tables hold about an hour of
 * them, and no request pays for a long idle spell all at once.
 */
#define STORE_PRUNE_BATCH "16"

/*
 * The limits in the schema are literals so that a schema version never
 * changes meaning; these tie them to the constants the code relies on.
 */
_Static_assert(WIRE_ID_SIZE == 16, "clients.id CHECK");
_Static_assert(WIRE_NAME_MAX == 254, "name and file_name CHECK");
_Static_assert(STORE_PATH_MAX - 1 == 511, "path_name CHECK");
_Static_assert(DER_RSA_SPKI_MAX == 1100, "public_key CHECK");
_Static_assert(STORE_AES_MAX == 32, "aes_key CHECK");
_Static_assert(STORE_TOKEN_SIZE - 1 == 32, "pending_name CHECK");
_Static_assert(STORE_SOURCE_SIZE - 1 == 63, "registrations.source CHECK");
_Static_assert(STORE_FILE_STORED == 0 && STORE_FILE_FAILED == 1, "files.status CHECK and statements");
_Static_assert(sizeof(((struct store_client *)0)->last_seen) == STORE_TIME_SIZE, "time buffers");
_Static_assert(sizeof(((struct store_file *)0)->received) == STORE_TIME_SIZE, "time buffers");
_Static_assert(sizeof(((struct store_file *)0)->pending_received) == STORE_TIME_SIZE, "time buffers");

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

/*
 * Kept-aside copies (efserver-protocol(7), Uploads, resends and giving up):
 * a new upload of a verified file waits in pending/<client hex>/<token>
 * until it is confirmed. The four columns are set together, and only on a
 * verified row.
 */
static const char schema_v2[] =
    "ALTER TABLE files ADD COLUMN pending_name TEXT CHECK (pending_name IS NULL OR\n"
    "	(typeof(pending_name) = 'text' AND length(CAST(pending_name AS BLOB)) = 32));\n"
    "ALTER TABLE files ADD COLUMN pending_size INTEGER CHECK (pending_size IS NULL OR\n"
    "	(typeof(pending_size) = 'integer' AND pending_size >= 0));\n"
    "ALTER TABLE files ADD COLUMN pending_checksum INTEGER CHECK (pending_checksum IS NULL OR\n"
    "	(typeof(pending_checksum) = 'integer' AND pending_checksum BETWEEN 0 AND 4294967295));\n"
    "ALTER TABLE files ADD COLUMN pending_received TEXT CHECK (\n"
    "	(pending_received IS NULL) = (pending_name IS NULL) AND (pending_size IS NULL) = (pending_name IS NULL)\n"
    "	AND (pending_checksum IS NULL) = (pending_name IS NULL)\n"
    "	AND (pending_name IS NULL OR (verified = 1 AND status = 0)));\n";

/*
 * What the limits of efsession(8) count: per client, the plaintext bytes
 * of every copy it stores (under a name, or kept aside) and the names with
 * a copy (a given-up name has none); server-wide, the clients. The store
 * keeps them in the transaction of every change (account(), count_client()),
 * not by triggers, which SQLite would parse again in every process; a
 * recount checks them (store_integrity_check). Registrations per source
 * address and bad paddings per client, each with its time, for the counts
 * over the last hour. The counters are computed for the rows a migrated
 * database already holds.
 */
static const char schema_v3[] =
    "ALTER TABLE clients ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0\n"
    "	CHECK (typeof(stored_bytes) = 'integer' AND stored_bytes >= 0);\n"
    "ALTER TABLE clients ADD COLUMN stored_files INTEGER NOT NULL DEFAULT 0\n"
    "	CHECK (typeof(stored_files) = 'integer' AND stored_files >= 0);\n"
    "UPDATE clients SET\n"
    "	stored_bytes = (SELECT coalesce(sum(CASE WHEN status = 0 THEN size ELSE 0 END\n"
    "		+ coalesce(pending_size, 0)), 0) FROM files WHERE client_id = clients.id),\n"
    "	stored_files = (SELECT count(*) FROM files WHERE client_id = clients.id AND status = 0);\n"
    "CREATE TABLE totals (\n"
    "	one INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),\n"
    "	clients INTEGER NOT NULL CHECK (typeof(clients) = 'integer' AND clients >= 0)\n"
    ");\n"
    "INSERT INTO totals (one, clients) SELECT 1, count(*) FROM clients;\n"
    "CREATE TABLE registrations (\n"
    "	id INTEGER PRIMARY KEY,\n"
    "	source TEXT NOT NULL CHECK (typeof(source) = 'text' AND length(CAST(source AS BLOB)) BETWEEN 1 AND 63),\n"
    "	at TEXT NOT NULL\n"
    ");\n"
    "CREATE INDEX registrations_by_source ON registrations (source, at);\n"
    "CREATE INDEX registrations_by_time ON registrations (at);\n"
    "CREATE TABLE bad_paddings (\n"
    "	id INTEGER PRIMARY KEY,\n"
    "	client_id BLOB NOT NULL REFERENCES clients (id) ON DELETE CASCADE,\n"
    "	at TEXT NOT NULL\n"
    ");\n"
    "CREATE INDEX bad_paddings_by_client ON bad_paddings (client_id, at);\n"
    "CREATE INDEX bad_paddings_by_time ON bad_paddings (at);\n";

/* Step n takes the schema from version n-1 to version n. */
static const struct migration {
	int version;
	const char *sql;
} migrations[] = {
    {1, schema_v1},
    {2, schema_v2},
    {3, schema_v3},
};
_Static_assert(ARRAY_SIZE(migrations) == STORE_SCHEMA_VERSION, "one migration step per schema version");

/* Every column of a client row, in the order client_from_row reads them: each a column, none a count. */
#define CLIENT_COLUMNS "id, name, public_key, aes_key, last_seen, stored_bytes, stored_files"
/* Every column of a file row, in the order file_from_row reads them. */
#define FILE_COLUMNS                                                                                                   \
	"client_id, file_name, path_name, verified, status, size, checksum, attempts, received, pending_name, "        \
	"pending_size, pending_checksum, pending_received"
#define PENDING_CLEARED "pending_name = NULL, pending_size = NULL, pending_checksum = NULL, pending_received = NULL"

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
	ST_CLIENT_DROP_AES,
	ST_FILE_GET,
	ST_FILE_UPSERT,
	ST_FILE_ASIDE,
	ST_FILE_ATTEMPTS,
	ST_FILE_VERIFY,
	ST_FILE_PROMOTE,
	ST_FILE_DISCARD,
	ST_FILE_GIVE_UP,
	ST_FILE_PENDING_REF,
	ST_CLIENT_DELETE,
	ST_FILE_DELETE,
	ST_FILE_COUNT,
	ST_CLIENT_TOTAL,
	ST_CLIENT_COUNT,
	ST_CLIENT_USAGE,
	ST_CLIENT_ACCOUNT,
	ST_REGISTRATIONS_PRUNE,
	ST_REGISTRATIONS_COUNT,
	ST_REGISTRATION_ADD,
	ST_BAD_PADDINGS_PRUNE,
	ST_BAD_PADDING_ADD,
	ST_UPLOAD_CHECK,
	ST_COUNT,
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_CLIENT_INSERT] =
        "INSERT INTO clients (id, name, public_key, registered, last_seen) VALUES (?1, ?2, ?3, " SQL_NOW ", " SQL_NOW
        ")",
    [ST_CLIENT_BY_ID] = "SELECT " CLIENT_COLUMNS " FROM clients WHERE id = ?1",
    [ST_CLIENT_BY_NAME] = "SELECT " CLIENT_COLUMNS " FROM clients WHERE name = ?1",
    [ST_CLIENT_TOUCH] = "UPDATE clients SET last_seen = " SQL_NOW " WHERE id = ?1 RETURNING name",
    [ST_CLIENT_KEYS] = "SELECT name, public_key FROM clients WHERE id = ?1",
    [ST_CLIENT_SET_KEYS] =
        "UPDATE clients SET public_key = coalesce(public_key, ?2), aes_key = ?3, last_seen = " SQL_NOW " WHERE id = ?1",
    [ST_CLIENT_SET_AES] =
        "UPDATE clients SET aes_key = ?2, last_seen = " SQL_NOW " WHERE id = ?1 AND public_key IS NOT NULL",
    /* Only the key the failed upload was decrypted with: one issued meanwhile is not the attacker's oracle. */
    [ST_CLIENT_DROP_AES] = "UPDATE clients SET aes_key = NULL WHERE id = ?1 AND aes_key = ?2",
    [ST_FILE_GET] = "SELECT " FILE_COLUMNS " FROM files WHERE client_id = ?1 AND path_name = ?2",
    /* In place, over a row that is not verified. Every column of the assignments reads the old row, so the CASE
       sees the previous file name. */
    [ST_FILE_UPSERT] = "INSERT INTO files (client_id, file_name, path_name, verified, status, size, checksum, "
                       "attempts, received) VALUES (?1, ?2, ?3, 0, 0, ?4, ?5, 1, " SQL_NOW ")\n"
                       "ON CONFLICT (client_id, path_name) DO UPDATE SET\n"
                       "	attempts = CASE WHEN file_name = excluded.file_name THEN attempts + 1 ELSE 1 END,\n"
                       "	file_name = excluded.file_name, verified = 0, status = 0, size = excluded.size,\n"
                       "	checksum = excluded.checksum, received = excluded.received",
    /* Kept aside, beside a verified copy that the row goes on describing. */
    [ST_FILE_ASIDE] = "UPDATE files SET attempts = CASE WHEN file_name = ?3 THEN attempts + 1 ELSE 1 END,\n"
                      "	file_name = ?3, pending_name = ?4, pending_size = ?5, pending_checksum = ?6,\n"
                      "	pending_received = " SQL_NOW " WHERE client_id = ?1 AND path_name = ?2",
    [ST_FILE_ATTEMPTS] = "SELECT attempts FROM files WHERE client_id = ?1 AND path_name = ?2",
    [ST_FILE_VERIFY] = "UPDATE files SET verified = 1 WHERE client_id = ?1 AND path_name = ?2",
    /* The kept-aside copy becomes the verified one: a confirmation, or one whose commit a crash lost. */
    [ST_FILE_PROMOTE] = "UPDATE files SET size = pending_size, checksum = pending_checksum,\n"
                        "	received = pending_received, " PENDING_CLEARED "\n"
                        "	WHERE client_id = ?1 AND path_name = ?2 AND pending_name = ?3",
    [ST_FILE_DISCARD] =
        "UPDATE files SET " PENDING_CLEARED " WHERE client_id = ?1 AND path_name = ?2 AND pending_name = ?3",
    [ST_FILE_GIVE_UP] = "UPDATE files SET status = 1, verified = 0 WHERE client_id = ?1 AND path_name = ?2",
    [ST_FILE_PENDING_REF] = "SELECT 1 FROM files WHERE client_id = ?1 AND pending_name = ?2",
    [ST_CLIENT_DELETE] = "DELETE FROM clients WHERE id = ?1",
    /* A given-up file has no copy by design: its row is history, not debris. */
    [ST_FILE_DELETE] = "DELETE FROM files WHERE client_id = ?1 AND path_name = ?2 AND status = 0",
    [ST_FILE_COUNT] = "SELECT count(*) FROM files WHERE client_id = ?1",
    [ST_CLIENT_TOTAL] = "SELECT clients FROM totals",
    [ST_CLIENT_COUNT] = "UPDATE totals SET clients = clients + ?1",
    [ST_CLIENT_USAGE] = "SELECT stored_bytes, stored_files FROM clients WHERE id = ?1",
    [ST_CLIENT_ACCOUNT] =
        "UPDATE clients SET stored_bytes = stored_bytes + ?2, stored_files = stored_files + ?3 WHERE id = ?1",
    /* The oldest first, on the index by time: a batch of them per registration. */
    [ST_REGISTRATIONS_PRUNE] =
        "DELETE FROM registrations WHERE id IN (SELECT id FROM registrations WHERE at <= " SQL_HOUR_AGO
        " ORDER BY at LIMIT " STORE_PRUNE_BATCH ")",
    /* At most ?2 rows read from the index: the cost is bounded by the limit, not by the table. */
    [ST_REGISTRATIONS_COUNT] =
        "SELECT count(*) FROM (SELECT 1 FROM registrations WHERE source = ?1 AND at > " SQL_HOUR_AGO " LIMIT ?2)",
    [ST_REGISTRATION_ADD] = "INSERT INTO registrations (source, at) VALUES (?1, " SQL_NOW ")",
    [ST_BAD_PADDINGS_PRUNE] =
        "DELETE FROM bad_paddings WHERE id IN (SELECT id FROM bad_paddings WHERE at <= " SQL_HOUR_AGO
        " ORDER BY at LIMIT " STORE_PRUNE_BATCH ")",
    /* Counted only for a client that is there: one removed meanwhile has nothing left to count against. */
    [ST_BAD_PADDING_ADD] = "INSERT INTO bad_paddings (client_id, at) SELECT id, " SQL_NOW " FROM clients WHERE id = ?1",
    /*
     * What an upload under ?2 would leave the client ?1, in one statement on
     * primary keys and an index: its counters, the row of that name, and its
     * bad paddings over the last hour, at most ?3 of them read.
     */
    [ST_UPLOAD_CHECK] =
        "SELECT c.stored_bytes, c.stored_files, f.status, f.verified, f.size, f.pending_size,\n"
        "	(SELECT count(*) FROM (SELECT 1 FROM bad_paddings WHERE client_id = ?1 AND at > " SQL_HOUR_AGO
        "		LIMIT ?3))\n"
        "FROM clients AS c LEFT JOIN files AS f ON f.client_id = c.id AND f.path_name = ?2 WHERE c.id = ?1",
};

struct store {
	sqlite3 *db;
	bool readonly;
	int wal_frames; /* in the WAL after this connection's last commit */
	sqlite3_stmt *stmt[ST_COUNT];
};

static int fetch_one(struct store *st, sqlite3_stmt *s, int (*from_row)(sqlite3_stmt *, void *), void *tmp, void *out,
                     size_t size);
static int iterate_prepare(struct store *st, const char *sql, sqlite3_stmt **out);

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
 * Create or migrate the schema, found at version v. Whoever finds it old
 * takes the write lock and looks again, since another process may have
 * migrated it meanwhile.
 */
static int schema_upgrade(struct store *st, sqlite3_int64 v)
{
	char sql[64];
	int rc, r;

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
 * A missing file is created only if may_create allows it.
 */
static int create_private(const char *state_dir, const char *path, store_create_fn may_create, void *ctx, bool *asked)
{
	struct stat sb;
	int fd, r = 0;

	if (may_create && stat(path, &sb) < 0 && errno == ENOENT) {
		if ((r = may_create(ctx)) < 0)
			return failure_note(r, STORE_DB_NAME " is missing");
		*asked = true;
	}
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0)
		return errno == EEXIST ? 0 : -errno;
	if (fchmod(fd, 0600) < 0)
		r = -errno;
	/* Made by root (efctl): still the database of the user efsession runs as, who owns the state directory. */
	if (r == 0 && geteuid() == 0 && stat(state_dir, &sb) == 0 && (sb.st_uid != 0 || sb.st_gid != 0) &&
	    fchown(fd, sb.st_uid, sb.st_gid) < 0)
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

int store_open(const char *state_dir, int busy_timeout_ms, store_create_fn may_create, void *ctx, struct store **out)
{
	struct store *st = NULL;
	sqlite3_int64 v = 0;
	bool asked = false, wal_was_missing;
	char *path = NULL, *wal = NULL;
	struct stat sb;
	int r;

	failure_clear();
	if (!out)
		return -EINVAL;
	r = db_path(state_dir, &path);
	if (r < 0)
		return r;
	r = create_private(state_dir, path, may_create, ctx, &asked);
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
	/* The schema's version, read before anything is written: a file we did not create without one is asked about. */
	if ((r = pragma(st, "PRAGMA user_version", &v, NULL, 0)) < 0)
		goto out;
	if (v == 0 && may_create && !asked && (r = may_create(ctx)) < 0) {
		r = failure_note(r, "%s",
		                 stat(path, &sb) == 0 && sb.st_size == 0 ? STORE_DB_NAME " is empty (0 bytes)"
		                                                         : STORE_DB_NAME " has no schema");
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
	r = schema_upgrade(st, v);
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
	    !column_str(s, 4, c->last_seen, sizeof(c->last_seen), true) || sqlite3_column_int64(s, 5) < 0 ||
	    sqlite3_column_int64(s, 6) < 0)
		return corrupt("malformed row in table clients");
	c->stored_bytes = (uint64_t)sqlite3_column_int64(s, 5);
	c->stored_files = (uint64_t)sqlite3_column_int64(s, 6);
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
	if (sqlite3_column_type(s, 9) == SQLITE_NULL)
		return 0;
	size = sqlite3_column_int64(s, 10);
	checksum = sqlite3_column_int64(s, 11);
	if (!column_str(s, 9, f->pending_name, sizeof(f->pending_name), false) ||
	    strlen(f->pending_name) != STORE_TOKEN_SIZE - 1 ||
	    !column_str(s, 12, f->pending_received, sizeof(f->pending_received), true) || size < 0 || checksum < 0 ||
	    checksum > UINT32_MAX)
		return corrupt("malformed kept-aside copy in table files");
	f->pending = true;
	f->pending_size = (uint64_t)size;
	f->pending_checksum = (uint32_t)checksum;
	return 0;
}

/* A statement about one client, ready to run: ?1 bound to its id and ?2, when text is given, to text. */
static int stmt_for(struct store *st, enum stmt_id which, const uint8_t id[WIRE_ID_SIZE], const char *text,
                    sqlite3_stmt **out)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(st, which, &s)) < 0)
		return r;
	if (bind_id(s, 1, id) != SQLITE_OK || (text && bind_str(s, 2, text) != SQLITE_OK))
		return bind_failed(st, s);
	*out = s;
	return 0;
}

/* The row of a client's file: 0 or -ENOENT. */
static int file_fetch(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, struct store_file *out)
{
	sqlite3_stmt *s = NULL;
	struct store_file f;
	int r;

	if ((r = stmt_for(st, ST_FILE_GET, id, path_name, &s)) < 0)
		return r;
	return fetch_one(st, s, file_from_row, &f, out, sizeof(f));
}

/* A bound statement that answers one integer: *out, or -ENOENT when it answers no row. Reset after. */
static int stmt_int(struct store *st, sqlite3_stmt *s, long long *out)
{
	int rc = step_read(s), r;

	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(s, 0);
		r = 0;
	} else {
		r = rc == SQLITE_DONE ? -ENOENT : fail(st, rc);
	}
	stmt_done(s);
	return r;
}

/* A limit, as the LIMIT of a statement that reads at most that many rows. */
static sqlite3_int64 as_limit(uint64_t n)
{
	return n > INT64_MAX ? INT64_MAX : (sqlite3_int64)n;
}

/* Within a transaction: run a statement of stmt_sql that takes no argument. */
static int stmt_run(struct store *st, enum stmt_id which)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(st, which, &s)) < 0)
		return r;
	return stmt_exec(st, s);
}

/* What one row adds to its client's counters: the copy under the name unless given up, and one kept aside. */
static void row_weight(const struct store_file *f, sqlite3_int64 *bytes, sqlite3_int64 *files)
{
	*bytes = (f->status == STORE_FILE_STORED ? (sqlite3_int64)f->size : 0) +
	         (f->pending ? (sqlite3_int64)f->pending_size : 0);
	*files = f->status == STORE_FILE_STORED;
}

/*
 * Within a transaction, after a statement changed the row of path_name:
 * its client's counters follow the row, from before (NULL: there was none)
 * to the row as it is now, or none.
 */
static int account(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name,
                   const struct store_file *before)
{
	sqlite3_int64 b0 = 0, f0 = 0, b1 = 0, f1 = 0;
	struct store_file after;
	sqlite3_stmt *s = NULL;
	int r;

	if (before)
		row_weight(before, &b0, &f0);
	r = file_fetch(st, id, path_name, &after);
	if (r == 0)
		row_weight(&after, &b1, &f1);
	else if (r != -ENOENT)
		return r;
	if (b1 == b0 && f1 == f0)
		return 0;
	if ((r = stmt_for(st, ST_CLIENT_ACCOUNT, id, NULL, &s)) < 0)
		return r;
	if (sqlite3_bind_int64(s, 2, b1 - b0) != SQLITE_OK || sqlite3_bind_int64(s, 3, f1 - f0) != SQLITE_OK)
		return bind_failed(st, s);
	return stmt_exec(st, s);
}

/* Within a transaction: the server-wide count of clients, after one was added (1) or removed (-1). */
static int count_client(struct store *st, int delta)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(st, ST_CLIENT_COUNT, &s)) < 0)
		return r;
	if (sqlite3_bind_int(s, 1, delta) != SQLITE_OK)
		return bind_failed(st, s);
	return stmt_exec(st, s);
}

/*
 * Within a registering transaction: the registrations over an hour old
 * pruned, then the limits of lim on one more from source (efsession(8),
 * Limits). 0, or -EDQUOT with *refused.
 */
static int admit(struct store *st, const char *source, const struct store_limits *lim, enum store_limit *refused)
{
	sqlite3_stmt *s = NULL;
	long long n = 0;
	int r;

	if (source && (r = stmt_run(st, ST_REGISTRATIONS_PRUNE)) < 0)
		return r;
	if (source && lim && lim->registrations_per_hour) {
		if ((r = stmt_get(st, ST_REGISTRATIONS_COUNT, &s)) < 0)
			return r;
		if (bind_str(s, 1, source) != SQLITE_OK ||
		    sqlite3_bind_int64(s, 2, as_limit(lim->registrations_per_hour)) != SQLITE_OK)
			return bind_failed(st, s);
		if ((r = stmt_int(st, s, &n)) < 0)
			return r;
		if ((uint64_t)n >= lim->registrations_per_hour) {
			*refused = STORE_LIMIT_REGISTRATIONS_PER_HOUR;
			return -EDQUOT;
		}
	}
	if (lim && lim->max_clients) {
		if ((r = stmt_get(st, ST_CLIENT_TOTAL, &s)) < 0 || (r = stmt_int(st, s, &n)) < 0)
			return r == -ENOENT ? corrupt("table totals has no row") : r;
		if (n < 0 || (uint64_t)n >= lim->max_clients) {
			*refused = STORE_LIMIT_MAX_CLIENTS;
			return -EDQUOT;
		}
	}
	return 0;
}

/* A new client, with its public key or none, admitted from source under lim (NULL: neither). */
static int add_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                      size_t spki_len, const char *source, const struct store_limits *lim, enum store_limit *refused)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (!st || !id || !str_ok(name, WIRE_NAME_SIZE) || (spki && (spki_len == 0 || spki_len > DER_RSA_SPKI_MAX)) ||
	    (source && !str_ok(source, STORE_SOURCE_SIZE)) || (lim && !refused))
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	if ((r = admit(st, source, lim, refused)) < 0)
		goto rollback;
	r = stmt_get(st, ST_CLIENT_INSERT, &s);
	if (r < 0)
		goto rollback;
	if (bind_id(s, 1, id) != SQLITE_OK || bind_str(s, 2, name) != SQLITE_OK ||
	    (spki && sqlite3_bind_blob(s, 3, spki, (int)spki_len, SQLITE_STATIC) != SQLITE_OK)) {
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
	if ((r = count_client(st, 1)) < 0)
		goto rollback;
	if (source) {
		if ((r = stmt_get(st, ST_REGISTRATION_ADD, &s)) < 0)
			goto rollback;
		if (bind_str(s, 1, source) != SQLITE_OK) {
			r = bind_failed(st, s);
			goto rollback;
		}
		if ((r = stmt_exec(st, s)) < 0)
			goto rollback;
	}
	return tx_commit(st);

rollback:
	tx_rollback(st);
	return r;
}

int store_register_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name)
{
	return add_client(st, id, name, NULL, 0, NULL, NULL, NULL);
}

int store_register_from(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const char *source,
                        const struct store_limits *lim, enum store_limit *refused)
{
	return add_client(st, id, name, NULL, 0, source, lim, refused);
}

int store_add_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                     size_t spki_len)
{
	return add_client(st, id, name, spki, spki_len, NULL, NULL, NULL);
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
static int touch(struct store *st, const uint8_t id[WIRE_ID_SIZE], char name[WIRE_NAME_SIZE])
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;
	int rc, r;

	if ((r = stmt_for(st, ST_CLIENT_TOUCH, id, NULL, &s)) < 0)
		return r;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		if (name && (t = sqlite3_column_text(s, 0)))
			snprintf(name, WIRE_NAME_SIZE, "%s", (const char *)t);
		rc = sqlite3_step(s);
	}
	r = rc == SQLITE_DONE ? 0 : fail(st, rc);
	stmt_done(s);
	return r;
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
	r = touch(st, id, NULL);
	if (r < 0) {
		tx_rollback(st);
		return r;
	}
	return tx_commit(st);
}

/* May this id, under this name, get a key with this SPKI? 0, -ENOENT or -EPERM; in a transaction or not. */
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
	rc = step_read(s);
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

int store_check_keys(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                     size_t spki_len)
{
	if (!st || !id || !str_ok(name, WIRE_NAME_SIZE) || !spki || spki_len == 0 || spki_len > DER_RSA_SPKI_MAX)
		return -EINVAL;
	failure_clear();
	return keys_allowed(st, id, name, spki, spki_len);
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

/* Within a transaction: a statement on a client's AES key, ?1 the id and ?2 a key; *changes, the rows it changed. */
static int aes_key_exec(struct store *st, enum stmt_id which, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes,
                        size_t aes_len, int *changes)
{
	sqlite3_stmt *s = NULL;
	int r;

	r = stmt_get(st, which, &s);
	if (r < 0)
		return r;
	if (bind_id(s, 1, id) != SQLITE_OK || sqlite3_bind_blob(s, 2, aes, (int)aes_len, SQLITE_STATIC) != SQLITE_OK)
		return bind_failed(st, s);
	if ((r = stmt_exec(st, s)) == 0)
		*changes = sqlite3_changes(st->db);
	return r;
}

int store_set_aes_key(struct store *st, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes, size_t aes_len)
{
	int changes = 0, r;

	if (!st || !id || !aes || aes_len == 0 || aes_len > STORE_AES_MAX)
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	r = aes_key_exec(st, ST_CLIENT_SET_AES, id, aes, aes_len, &changes);
	/* 1027 needs a stored public key to encrypt the new AES key with (efserver-protocol(7), Responses). */
	if (r == 0 && changes == 0)
		r = -ENOENT;
	if (r < 0) {
		tx_rollback(st);
		return r;
	}
	return tx_commit(st);
}

int store_drop_aes_key(struct store *st, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes, size_t aes_len,
                       bool *dropped)
{
	sqlite3_stmt *s = NULL;
	int changes = 0, r;

	if (!st || !id || !aes || aes_len == 0 || aes_len > STORE_AES_MAX || !dropped)
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	if ((r = aes_key_exec(st, ST_CLIENT_DROP_AES, id, aes, aes_len, &changes)) < 0 ||
	    (r = stmt_run(st, ST_BAD_PADDINGS_PRUNE)) < 0 || (r = stmt_for(st, ST_BAD_PADDING_ADD, id, NULL, &s)) < 0 ||
	    (r = stmt_exec(st, s)) < 0 || (r = touch(st, id, NULL)) < 0) {
		tx_rollback(st);
		return r;
	}
	if ((r = tx_commit(st)) < 0)
		return r;
	*dropped = changes > 0;
	return 0;
}

int store_get_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, struct store_file *out)
{
	if (!st || !id || !out || !str_ok(path_name, STORE_PATH_MAX))
		return -EINVAL;
	failure_clear();
	return file_fetch(st, id, path_name, out);
}

/* Within a transaction: the attempts count of a row just written. */
static int file_attempts(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, long long *out)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_for(st, ST_FILE_ATTEMPTS, id, path_name, &s)) < 0)
		return r;
	r = stmt_int(st, s, out);
	return r == -ENOENT ? corrupt("file row missing right after it was written") : r;
}

/*
 * What a new upload of a name replaces (efsession(8), Limits): the copy
 * under the name while it is not verified, the kept-aside copy of a
 * verified one; nothing for a new name.
 */
static uint64_t replaced_bytes(bool has_row, bool failed, bool verified, uint64_t size, bool pending,
                               uint64_t pending_size)
{
	if (!has_row || failed)
		return 0;
	return verified ? (pending ? pending_size : 0) : size;
}

int store_check_upload(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, uint64_t content_size,
                       const struct store_limits *lim, enum store_limit *refused)
{
	sqlite3_int64 bytes, files, size, pending_size, bad;
	bool has_row, failed, verified, pending;
	sqlite3_stmt *s = NULL;
	uint64_t replaced;
	int rc, r;

	if (!st || !id || !str_ok(path_name, STORE_PATH_MAX) || !lim || !refused)
		return -EINVAL;
	failure_clear();
	if (!lim->client_quota && !lim->client_max_files && !lim->max_bad_paddings)
		return 0;
	if ((r = stmt_for(st, ST_UPLOAD_CHECK, id, path_name, &s)) < 0)
		return r;
	if (sqlite3_bind_int64(s, 3, as_limit(lim->max_bad_paddings)) != SQLITE_OK)
		return bind_failed(st, s);
	rc = step_read(s);
	if (rc != SQLITE_ROW) {
		r = rc == SQLITE_DONE ? -ENOENT : fail(st, rc);
		stmt_done(s);
		return r;
	}
	bytes = sqlite3_column_int64(s, 0);
	files = sqlite3_column_int64(s, 1);
	has_row = sqlite3_column_type(s, 2) != SQLITE_NULL;
	failed = sqlite3_column_int64(s, 2) == STORE_FILE_FAILED;
	verified = sqlite3_column_int64(s, 3) != 0;
	size = sqlite3_column_int64(s, 4);
	pending = sqlite3_column_type(s, 5) != SQLITE_NULL;
	pending_size = sqlite3_column_int64(s, 5);
	bad = sqlite3_column_int64(s, 6);
	stmt_done(s);
	if (bytes < 0 || files < 0 || size < 0 || pending_size < 0)
		return corrupt("malformed counters in table clients");
	replaced = replaced_bytes(has_row, failed, verified, (uint64_t)size, pending, (uint64_t)pending_size);
	if (lim->max_bad_paddings && (uint64_t)bad >= lim->max_bad_paddings)
		*refused = STORE_LIMIT_MAX_BAD_PADDINGS;
	else if (lim->client_quota && (uint64_t)bytes + content_size > lim->client_quota + replaced)
		*refused = STORE_LIMIT_CLIENT_QUOTA;
	else if (lim->client_max_files && (!has_row || failed) && (uint64_t)files >= lim->client_max_files)
		*refused = STORE_LIMIT_CLIENT_MAX_FILES;
	else
		return 0;
	return -EDQUOT;
}

/*
 * Within the transaction that records a file, once its row is written:
 * what the client stores now, against lim. new_name: the upload gave the
 * client a name with a copy it did not have.
 */
static int within_limits(struct store *st, const uint8_t id[WIRE_ID_SIZE], const struct store_limits *lim,
                         bool new_name, enum store_limit *refused)
{
	sqlite3_stmt *s = NULL;
	sqlite3_int64 bytes, files;
	int rc, r;

	if (!lim || (!lim->client_quota && !lim->client_max_files))
		return 0;
	if ((r = stmt_for(st, ST_CLIENT_USAGE, id, NULL, &s)) < 0)
		return r;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		r = rc == SQLITE_DONE ? corrupt("client row missing while its file is recorded") : fail(st, rc);
		stmt_done(s);
		return r;
	}
	bytes = sqlite3_column_int64(s, 0);
	files = sqlite3_column_int64(s, 1);
	stmt_done(s);
	if (lim->client_quota && bytes >= 0 && (uint64_t)bytes > lim->client_quota)
		*refused = STORE_LIMIT_CLIENT_QUOTA;
	else if (lim->client_max_files && new_name && files >= 0 && (uint64_t)files > lim->client_max_files)
		*refused = STORE_LIMIT_CLIENT_MAX_FILES;
	else
		return 0;
	return -EDQUOT;
}

/* A callback inside a transaction: a positive value must not read as success to a caller testing r < 0. */
static int run_callback(int r)
{
	return r > 0 ? -ECANCELED : r;
}

/*
 * Within a transaction: one statement on the row of a client's file, ?1 the
 * id, ?2 the path and ?3, when text is given, a name or token; -ENOENT when
 * it changes no row.
 */
static int file_stmt(struct store *st, enum stmt_id which, const uint8_t id[WIRE_ID_SIZE], const char *path_name,
                     const char *text)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_for(st, which, id, path_name, &s)) < 0)
		return r;
	if (text && bind_str(s, 3, text) != SQLITE_OK)
		return bind_failed(st, s);
	r = stmt_exec(st, s);
	if (r == 0 && sqlite3_changes(st->db) == 0)
		r = -ENOENT;
	return r;
}

/*
 * Within a transaction: the row of a client's file, as it is now. A row
 * naming a kept-aside copy that is no longer on disk is first rolled
 * forward: a token's file is removed only after its row stopped naming it,
 * or by the rename of its confirmation, so that state means the rename of
 * a confirmation happened and its commit did not (efserver-protocol(7),
 * Uploads, resends and giving up). *rolled says whether it was.
 */
static int file_current(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name,
                        const struct store_disk *disk, struct store_file *row, bool *rolled)
{
	int r;

	*rolled = false;
	if ((r = file_fetch(st, id, path_name, row)) < 0 || !row->pending)
		return r;
	if (!disk || !disk->pending_exists)
		return -EINVAL;
	r = disk->pending_exists(disk->ctx, id, row->pending_name);
	if (r != 0)
		return r < 0 ? r : 0;
	if ((r = file_stmt(st, ST_FILE_PROMOTE, id, path_name, row->pending_name)) < 0)
		return r == -ENOENT ? corrupt("file row changed inside its transaction") : r;
	if ((r = account(st, id, path_name, row)) < 0)
		return r;
	row->size = row->pending_size;
	row->checksum = row->pending_checksum;
	memcpy(row->received, row->pending_received, sizeof(row->received));
	row->pending = false;
	row->pending_name[0] = '\0';
	*rolled = true;
	return 0;
}

/*
 * The row and the file on disk change together: place runs inside the
 * transaction, so a failed publication leaves the row as it was, and a
 * failed COMMIT is reported for the caller to undo the publication. The
 * choice between in place and aside is made here, from the row as it is
 * inside the transaction: a confirmation on another connection may have
 * made it verified since the upload began. In place, the row was not
 * verified, so a crash between the rename and the COMMIT leaves new content
 * under a row that claims no confirmation.
 */
int store_record_file(struct store *st, const struct store_file *f, const char *token, const struct store_disk *disk,
                      const struct store_limits *lim, struct store_recorded *out, enum store_limit *refused)
{
	struct store_file row;
	sqlite3_stmt *s = NULL;
	bool aside = false, rolled, new_name, had_row;
	char dropped[STORE_TOKEN_SIZE] = "";
	long long n = 0;
	int rc, r;

	if (!st || !f || !str_ok(f->file_name, sizeof(f->file_name)) || !str_ok(f->path_name, sizeof(f->path_name)) ||
	    f->size > INT64_MAX || !token || strlen(token) != STORE_TOKEN_SIZE - 1 || !disk || !disk->place || !out ||
	    (lim && !refused))
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	r = file_current(st, f->client_id, f->path_name, disk, &row, &rolled);
	if (r < 0 && r != -ENOENT)
		goto rollback;
	had_row = r == 0;
	/* efserver-protocol(7): a verified copy survives everything but its confirmed replacement. */
	aside = had_row && row.verified;
	new_name = !had_row || row.status == STORE_FILE_FAILED;
	if (aside) {
		if (row.pending)
			memcpy(dropped, row.pending_name, sizeof(dropped));
		r = stmt_get(st, ST_FILE_ASIDE, &s);
		if (r < 0)
			goto rollback;
		if (bind_id(s, 1, f->client_id) != SQLITE_OK || bind_str(s, 2, f->path_name) != SQLITE_OK ||
		    bind_str(s, 3, f->file_name) != SQLITE_OK || bind_str(s, 4, token) != SQLITE_OK ||
		    sqlite3_bind_int64(s, 5, (sqlite3_int64)f->size) != SQLITE_OK ||
		    sqlite3_bind_int64(s, 6, (sqlite3_int64)f->checksum) != SQLITE_OK) {
			r = bind_failed(st, s);
			goto rollback;
		}
		rc = sqlite3_step(s);
	} else {
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
	}
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
	if ((r = account(st, f->client_id, f->path_name, had_row ? &row : NULL)) < 0 ||
	    (r = within_limits(st, f->client_id, lim, new_name, refused)) < 0)
		goto rollback;
	r = file_attempts(st, f->client_id, f->path_name, &n);
	if (r < 0)
		goto rollback;
	r = touch(st, f->client_id, NULL);
	if (r < 0)
		goto rollback;
	if ((r = run_callback(disk->place(disk->ctx, aside, token))) < 0)
		goto rollback;
	r = tx_commit(st);
	if (r < 0)
		return r;
	out->attempts = n;
	out->aside = aside;
	memcpy(out->dropped, dropped, sizeof(out->dropped));
	out->rolled_forward = rolled;
	return 0;

rollback:
	tx_rollback(st);
	return r;
}

/*
 * 1029-1031 and 1104-1106 on a row as it is inside the transaction
 * (efserver-protocol(7), Uploads, resends and giving up). A verified row
 * keeps its copy whatever comes: its kept-aside copy is put in place by a
 * confirmation and dropped by the others, and with nothing kept aside the
 * request changes nothing but last seen.
 */
int store_settle_file(struct store *st, enum store_verdict verdict, const uint8_t id[WIRE_ID_SIZE],
                      const char *path_name, const char *file_name, const struct store_disk *disk,
                      struct store_settled *out)
{
	struct store_file row;
	struct store_settled done = {.outcome = STORE_SETTLED_NOTHING};
	bool rolled;
	int r;

	if (!st || !id || !str_ok(path_name, STORE_PATH_MAX) || !str_ok(file_name, WIRE_NAME_SIZE) || !disk ||
	    !disk->pending_exists || !out || (verdict == STORE_CONFIRM && !disk->promote) ||
	    (verdict == STORE_GIVE_UP && !disk->remove) ||
	    (verdict != STORE_CONFIRM && verdict != STORE_RESEND && verdict != STORE_GIVE_UP))
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	if ((r = file_current(st, id, path_name, disk, &row, &rolled)) < 0)
		goto rollback;
	/* The request must name the file as its latest upload did; a given-up file cannot be confirmed. */
	if (strcmp(row.file_name, file_name) != 0 || (verdict == STORE_CONFIRM && row.status == STORE_FILE_FAILED)) {
		r = -ENOENT;
		goto rollback;
	}
	if ((r = touch(st, id, done.client_name)) < 0)
		goto rollback;
	if (row.verified && row.pending && verdict == STORE_CONFIRM) {
		if ((r = file_stmt(st, ST_FILE_PROMOTE, id, path_name, row.pending_name)) < 0 ||
		    (r = account(st, id, path_name, &row)) < 0 ||
		    (r = run_callback(disk->promote(disk->ctx, row.pending_name))) < 0)
			goto rollback;
		done.outcome = STORE_SETTLED_REPLACED;
	} else if (row.verified && row.pending) {
		if ((r = file_stmt(st, ST_FILE_DISCARD, id, path_name, row.pending_name)) < 0 ||
		    (r = account(st, id, path_name, &row)) < 0)
			goto rollback;
		done.outcome = STORE_SETTLED_DISCARDED;
		memcpy(done.dropped, row.pending_name, sizeof(done.dropped));
	} else if (row.verified || verdict == STORE_RESEND) {
		done.outcome = row.verified ? STORE_SETTLED_NOTHING : STORE_SETTLED_DONE;
	} else if (verdict == STORE_CONFIRM) {
		if ((r = file_stmt(st, ST_FILE_VERIFY, id, path_name, NULL)) < 0)
			goto rollback;
		done.outcome = STORE_SETTLED_DONE;
	} else {
		if ((r = file_stmt(st, ST_FILE_GIVE_UP, id, path_name, NULL)) < 0 ||
		    (r = account(st, id, path_name, &row)) < 0 || (r = run_callback(disk->remove(disk->ctx))) < 0)
			goto rollback;
		done.outcome = STORE_SETTLED_DONE;
	}
	if ((r = tx_commit(st)) < 0)
		return r;
	done.rolled_forward = rolled;
	*out = done;
	return 0;

rollback:
	tx_rollback(st);
	return r;
}

int store_remove_client(struct store *st, const uint8_t id[WIRE_ID_SIZE])
{
	sqlite3_stmt *s = NULL;
	int r;

	if (!st || !id)
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	if ((r = stmt_for(st, ST_CLIENT_DELETE, id, NULL, &s)) == 0 && (r = stmt_exec(st, s)) == 0)
		r = sqlite3_changes(st->db) == 0 ? -ENOENT : count_client(st, -1);
	if (r < 0) {
		tx_rollback(st);
		return r;
	}
	return tx_commit(st);
}

int store_forget_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name,
                      store_publish_fn gone_check, void *ctx)
{
	struct store_file row;
	int r;

	if (!st || !id || !str_ok(path_name, STORE_PATH_MAX))
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	if ((r = file_fetch(st, id, path_name, &row)) < 0 ||
	    (r = file_stmt(st, ST_FILE_DELETE, id, path_name, NULL)) < 0 ||
	    (r = account(st, id, path_name, &row)) < 0 || (r = run_callback(gone_check ? gone_check(ctx) : 0)) < 0)
		goto rollback;
	return tx_commit(st);

rollback:
	tx_rollback(st);
	return r;
}

/* Whether a row names a kept-aside copy token of client id, in a transaction or not: 1, 0, or a negative errno. */
static int pending_referenced(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = stmt_for(st, ST_FILE_PENDING_REF, id, token, &s)) < 0)
		return r;
	rc = step_read(s);
	r = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : fail(st, rc);
	stmt_done(s);
	return r;
}

int store_pending_referenced(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	if (!st || !id || !token)
		return -EINVAL;
	failure_clear();
	return pending_referenced(st, id, token);
}

int store_forget_pending(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *token, store_publish_fn remove,
                         void *ctx)
{
	int r;

	if (!st || !id || !token || !remove)
		return -EINVAL;
	failure_clear();
	r = tx_begin(st);
	if (r < 0)
		return r;
	r = pending_referenced(st, id, token);
	if (r > 0)
		r = -EBUSY;
	if (r < 0 || (r = run_callback(remove(ctx))) < 0)
		goto rollback;
	return tx_commit(st);

rollback:
	tx_rollback(st);
	return r;
}

/* A row a crash left between the rename of a confirmation and its commit, for store_repair_files. */
struct repair_row {
	uint8_t id[WIRE_ID_SIZE];
	char path[STORE_PATH_MAX];
};

int store_repair_files(struct store *st, const struct store_disk *disk, store_file_fn fn, void *ctx)
{
	struct repair_row *rows = NULL, *grown;
	size_t n = 0, cap = 0, i;
	struct store_file f, row;
	sqlite3_stmt *s = NULL;
	bool rolled;
	int rc, r;

	if (!st || !disk || !disk->pending_exists)
		return -EINVAL;
	failure_clear();
	/* The candidates first, read outside any transaction; each is then looked at again inside its own. */
	r = iterate_prepare(st, "SELECT " FILE_COLUMNS " FROM files WHERE pending_name IS NOT NULL", &s);
	if (r < 0)
		return r;
	for (rc = step_read(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
		if ((r = file_from_row(s, &f)) < 0)
			break;
		r = disk->pending_exists(disk->ctx, f.client_id, f.pending_name);
		if (r < 0)
			break;
		if (r > 0) {
			r = 0;
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			if (!(grown = reallocarray(rows, cap, sizeof(*rows)))) {
				r = -ENOMEM;
				break;
			}
			rows = grown;
		}
		memcpy(rows[n].id, f.client_id, WIRE_ID_SIZE);
		memcpy(rows[n].path, f.path_name, sizeof(rows[n].path));
		n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = fail(st, rc);
	(void)sqlite3_finalize(s);
	for (i = 0; r == 0 && i < n; i++) {
		if ((r = tx_begin(st)) < 0)
			break;
		r = file_current(st, rows[i].id, rows[i].path, disk, &row, &rolled);
		if (r == -ENOENT) {
			r = 0;
			rolled = false;
		}
		r = r < 0 ? r : tx_commit(st);
		if (r < 0) {
			tx_rollback(st);
			break;
		}
		if (rolled && fn && (r = fn(&row, ctx)) != 0)
			break;
	}
	free(rows);
	return r;
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

int store_count_files(struct store *st, const uint8_t id[WIRE_ID_SIZE], long long *rows)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (!st || !id || !rows)
		return -EINVAL;
	failure_clear();
	if ((r = stmt_for(st, ST_FILE_COUNT, id, NULL, &s)) < 0)
		return r;
	return stmt_int(st, s, rows);
}

int store_count_clients(struct store *st, long long *clients)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (!st || !clients)
		return -EINVAL;
	failure_clear();
	if ((r = stmt_get(st, ST_CLIENT_TOTAL, &s)) < 0)
		return r;
	r = stmt_int(st, s, clients);
	return r == -ENOENT ? corrupt("table totals has no row") : r;
}

/* A listing counts as it goes: efctl's, never a request's. */
int store_each_usage(struct store *st, store_usage_fn fn, void *ctx)
{
	struct store_usage u;
	sqlite3_stmt *s = NULL;
	size_t id_len;
	int rc, r;

	if (!st || !fn)
		return -EINVAL;
	failure_clear();
	r = iterate_prepare(
	    st,
	    "SELECT id, name, stored_bytes, stored_files,\n"
	    "	(SELECT count(*) FROM files WHERE client_id = clients.id AND pending_name IS NOT NULL),\n"
	    "	(SELECT count(*) FROM bad_paddings WHERE client_id = clients.id AND at > " SQL_HOUR_AGO ")\n"
	    "FROM clients ORDER BY name",
	    &s);
	if (r < 0)
		return r;
	for (rc = step_read(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
		memset(&u, 0, sizeof(u));
		if (!column_blob(s, 0, u.id, sizeof(u.id), &id_len) || id_len != WIRE_ID_SIZE ||
		    !column_str(s, 1, u.name, sizeof(u.name), false) || sqlite3_column_int64(s, 2) < 0 ||
		    sqlite3_column_int64(s, 3) < 0) {
			r = corrupt("malformed row in table clients");
			break;
		}
		u.stored_bytes = (uint64_t)sqlite3_column_int64(s, 2);
		u.stored_files = (uint64_t)sqlite3_column_int64(s, 3);
		u.kept_aside = sqlite3_column_int64(s, 4);
		u.bad_paddings = sqlite3_column_int64(s, 5);
		if ((r = fn(&u, ctx)) != 0)
			break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = fail(st, rc);
	(void)sqlite3_finalize(s);
	return r;
}

int store_each_source(struct store *st, store_source_fn fn, void *ctx)
{
	char source[STORE_SOURCE_SIZE];
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (!st || !fn)
		return -EINVAL;
	failure_clear();
	r = iterate_prepare(st,
	                    "SELECT source, count(*) AS n FROM registrations WHERE at > " SQL_HOUR_AGO
	                    " GROUP BY source ORDER BY n DESC, source",
	                    &s);
	if (r < 0)
		return r;
	for (rc = step_read(s); rc == SQLITE_ROW; rc = sqlite3_step(s)) {
		if (!column_str(s, 0, source, sizeof(source), false)) {
			r = corrupt("malformed row in table registrations");
			break;
		}
		if ((r = fn(source, sqlite3_column_int64(s, 1), ctx)) != 0)
			break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = fail(st, rc);
	(void)sqlite3_finalize(s);
	return r;
}

/*
 * Run a check that answers with rows of problems: the first row becomes the
 * error message, with problem before it when given; a check that says
 * healthy answers that alone.
 */
static int check_rows(struct store *st, const char *sql, const char *healthy, const char *problem)
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
		if (healthy && t && strcmp((const char *)t, healthy) == 0 && sqlite3_step(s) == SQLITE_DONE)
			r = 0;
		else
			r = failure_note(-EIO, "%s%s", problem ? problem : "", t ? (const char *)t : "(no detail)");
	} else if (rc == SQLITE_DONE) {
		r = healthy ? corrupt("integrity check returned nothing") : 0;
	} else {
		r = fail(st, rc);
	}
	(void)sqlite3_finalize(s);
	return r;
}

int store_checkpoint(struct store *st)
{
	if (!st)
		return -EINVAL;
	failure_clear();
	return pragma(st, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, 0);
}

/* The clients whose counters a recount of their rows contradicts, and the count of clients if it is wrong. */
#define COUNTERS_WRONG                                                                                                 \
	"SELECT 'client ' || quote(name) FROM clients AS c WHERE stored_bytes != (SELECT coalesce(sum(CASE WHEN "      \
	"status = 0 THEN size ELSE 0 END + coalesce(pending_size, 0)), 0) FROM files WHERE client_id = c.id) OR "      \
	"stored_files != (SELECT count(*) FROM files WHERE client_id = c.id AND status = 0)\n"                         \
	"UNION ALL SELECT 'the count of clients' FROM totals WHERE clients != (SELECT count(*) FROM clients)"

/* The pages (integrity_check), the references between tables (foreign_key_check) and the counters (a recount). */
int store_integrity_check(struct store *st)
{
	int r;

	if (!st)
		return -EINVAL;
	failure_clear();
	if ((r = check_rows(st, "PRAGMA integrity_check", "ok", NULL)) < 0 ||
	    (r = check_rows(st, "PRAGMA foreign_key_check", NULL, "a row refers to a missing row of another table: ")) <
	        0 ||
	    (r = check_rows(st, COUNTERS_WRONG, NULL, "counters that disagree with a recount: ")) < 0)
		return r;
	return 0;
}
