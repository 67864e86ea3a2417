/*
 * The SQLite engine of the store (db.h): STATE_DIR/efserver.db shared by
 * every efsession process of one host. Each process has one connection;
 * every write is one BEGIN IMMEDIATE transaction so that a competing writer
 * makes us wait on the busy timeout instead of failing.
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

#include "db.h"
#include "failure.h"

#define STORE_BUSY_TIMEOUT_DEFAULT_MS 60000
#define STORE_JOURNAL_MODE_SIZE       16
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

static const char *const sqlite_sql[ST_COUNT] = {
    [ST_CLIENT_INSERT] =
        "INSERT INTO clients (id, name, public_key, registered, last_seen) VALUES (?1, ?2, ?3, " SQL_NOW ", " SQL_NOW
        ")",
    [ST_CLIENT_BY_ID] = "SELECT " DB_CLIENT_COLUMNS " FROM clients WHERE id = ?1",
    [ST_CLIENT_BY_NAME] = "SELECT " DB_CLIENT_COLUMNS " FROM clients WHERE name = ?1",
    [ST_CLIENT_TOUCH] = "UPDATE clients SET last_seen = " SQL_NOW " WHERE id = ?1 RETURNING name",
    [ST_CLIENT_KEYS] = "SELECT name, public_key FROM clients WHERE id = ?1",
    [ST_CLIENT_SET_KEYS] =
        "UPDATE clients SET public_key = coalesce(public_key, ?2), aes_key = ?3, last_seen = " SQL_NOW " WHERE id = ?1",
    [ST_CLIENT_SET_AES] =
        "UPDATE clients SET aes_key = ?2, last_seen = " SQL_NOW " WHERE id = ?1 AND public_key IS NOT NULL",
    /* Only the key the failed upload was decrypted with: one issued meanwhile is not the attacker's oracle. */
    [ST_CLIENT_DROP_AES] = "UPDATE clients SET aes_key = NULL WHERE id = ?1 AND aes_key = ?2",
    [ST_FILE_GET] = "SELECT " DB_FILE_COLUMNS " FROM files WHERE client_id = ?1 AND path_name = ?2",
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
                        "	received = pending_received, " DB_PENDING_CLEARED "\n"
                        "	WHERE client_id = ?1 AND path_name = ?2 AND pending_name = ?3",
    [ST_FILE_DISCARD] =
        "UPDATE files SET " DB_PENDING_CLEARED " WHERE client_id = ?1 AND path_name = ?2 AND pending_name = ?3",
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
        " ORDER BY at LIMIT " DB_PRUNE_BATCH ")",
    /* At most ?2 rows read from the index: the cost is bounded by the limit, not by the table. */
    [ST_REGISTRATIONS_COUNT] =
        "SELECT count(*) FROM (SELECT 1 FROM registrations WHERE source = ?1 AND at > " SQL_HOUR_AGO " LIMIT ?2)",
    [ST_REGISTRATION_ADD] = "INSERT INTO registrations (source, at) VALUES (?1, " SQL_NOW ")",
    [ST_BAD_PADDINGS_PRUNE] =
        "DELETE FROM bad_paddings WHERE id IN (SELECT id FROM bad_paddings WHERE at <= " SQL_HOUR_AGO
        " ORDER BY at LIMIT " DB_PRUNE_BATCH ")",
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
    /* A row of each table as another database holds it (store_copy): the counters follow from the rows. */
    [ST_COPY_CLIENT] = "INSERT INTO clients (id, name, public_key, aes_key, last_seen, registered) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_COPY_FILE] =
        "INSERT INTO files (" DB_FILE_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_COPY_REGISTRATION] = "INSERT INTO registrations (source, at) VALUES (?1, ?2)",
    [ST_COPY_BAD_PADDING] = "INSERT INTO bad_paddings (client_id, at) VALUES (?1, ?2)",
    [ST_EACH_CLIENT] = "SELECT " DB_CLIENT_COLUMNS " FROM clients ORDER BY name",
    [ST_EACH_FILE] = "SELECT " DB_FILE_COLUMNS " FROM files ORDER BY client_id, path_name",
    [ST_EACH_FILE_OF] = "SELECT " DB_FILE_COLUMNS " FROM files WHERE client_id = ?1 ORDER BY path_name",
    [ST_EACH_USAGE] = "SELECT id, name, stored_bytes, stored_files,\n"
                      "	(SELECT count(*) FROM files WHERE client_id = clients.id AND pending_name IS NOT NULL),\n"
                      "	(SELECT count(*) FROM bad_paddings WHERE client_id = clients.id AND at > " SQL_HOUR_AGO ")\n"
                      "FROM clients ORDER BY name",
    [ST_EACH_SOURCE] = "SELECT source, count(*) AS n FROM registrations WHERE at > " SQL_HOUR_AGO
                       " GROUP BY source ORDER BY n DESC, source",
    [ST_REPAIR_CANDIDATES] = "SELECT " DB_FILE_COLUMNS " FROM files WHERE pending_name IS NOT NULL",
    [ST_COPY_CLIENTS] = "SELECT " DB_CLIENT_COLUMNS ", registered FROM clients ORDER BY id",
    [ST_COPY_REGISTRATIONS] = "SELECT source, at FROM registrations ORDER BY id",
    [ST_COPY_BAD_PADDINGS] = "SELECT client_id, at FROM bad_paddings ORDER BY id",
};

/* A statement of sqlite_sql, and the first failure to bind one of its parameters. */
struct sq_stmt {
	struct db_stmt base;
	sqlite3_stmt *s;
	int bind_rc;
	long long changes;
};

struct sq_db {
	struct db base;
	sqlite3 *db;
	bool readonly;
	int wal_frames; /* in the WAL after this connection's last commit */
	sqlite3_stmt *begin, *commit, *rollback;
	struct sq_stmt stmt[ST_ITERATE_FIRST];
};

static const struct db_ops sqlite_ops;

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
static int fail_as(struct sq_db *d, int rc, int err)
{
	int sys = sqlite3_system_errno(d->db);

	rc &= 0xff;
	if (sys > 0 && (rc == SQLITE_IOERR || rc == SQLITE_CANTOPEN || rc == SQLITE_FULL))
		return failure_note(err, "SQLite: %s (%s)", sqlite3_errmsg(d->db), strerror(sys));
	return failure_note(err, "SQLite: %s", sqlite3_errmsg(d->db));
}

/* The same, with SQLite's result code turned into a negative errno. */
static int fail(struct sq_db *d, int rc)
{
	int e;

	switch (rc & 0xff) {
	case SQLITE_FULL:
		return fail_as(d, rc, -ENOSPC);
	case SQLITE_NOMEM:
		return fail_as(d, rc, -ENOMEM);
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_PROTOCOL:
		return fail_as(d, rc, -EBUSY);
	case SQLITE_READONLY:
		return fail_as(d, rc, -EROFS);
	case SQLITE_CANTOPEN:
		e = sqlite3_system_errno(d->db);
		return fail_as(d, rc, e > 0 ? -e : -EIO);
	default:
		return fail_as(d, rc, -EIO);
	}
}

/* A statement that failed: the constraints that decide, atomically, that a row is taken or missing are refusals. */
static int step_failed(struct sq_db *d, int rc)
{
	int ext = sqlite3_extended_errcode(d->db);

	if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
		return -EEXIST;
	if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
		return -ENOENT;
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return fail_as(d, rc, -EINVAL);
	return fail(d, rc);
}

static int sq_get(struct db *db, enum stmt_id id, struct db_stmt **out)
{
	struct sq_db *d = (struct sq_db *)db;
	struct sq_stmt *q;
	int rc;

	if (id >= ST_ITERATE_FIRST) {
		/* Prepared for each use, not cached: a callback may then call back into the store. */
		if (!(q = calloc(1, sizeof(*q))))
			return -ENOMEM;
		q->base.db = db;
		rc = sqlite3_prepare_v2(d->db, sqlite_sql[id], -1, &q->s, NULL);
		if (rc != SQLITE_OK) {
			free(q);
			return fail(d, rc);
		}
		*out = &q->base;
		return 0;
	}
	q = &d->stmt[id];
	if (!q->s) {
		rc = sqlite3_prepare_v3(d->db, sqlite_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &q->s, NULL);
		if (rc != SQLITE_OK)
			return fail(d, rc);
	}
	*out = &q->base;
	return 0;
}

static void sq_done(struct db_stmt *s)
{
	struct sq_stmt *q = (struct sq_stmt *)s;
	struct sq_db *d = (struct sq_db *)s->db;

	if (q < d->stmt || q >= d->stmt + ST_ITERATE_FIRST) {
		(void)sqlite3_finalize(q->s);
		free(q);
		return;
	}
	(void)sqlite3_reset(q->s);
	(void)sqlite3_clear_bindings(q->s);
	q->bind_rc = SQLITE_OK;
}

static void bound(struct sq_stmt *q, int rc)
{
	if (q->bind_rc == SQLITE_OK)
		q->bind_rc = rc;
}

/* The caller's buffers outlive the statement's use: SQLITE_STATIC keeps SQLite from copying keys. */
static void sq_bind_blob(struct db_stmt *s, int i, const void *v, size_t len)
{
	struct sq_stmt *q = (struct sq_stmt *)s;

	bound(q, len > INT32_MAX ? SQLITE_TOOBIG : sqlite3_bind_blob(q->s, i, v, (int)len, SQLITE_STATIC));
}

static void sq_bind_text(struct db_stmt *s, int i, const char *v)
{
	struct sq_stmt *q = (struct sq_stmt *)s;

	bound(q, sqlite3_bind_text(q->s, i, v, -1, SQLITE_STATIC));
}

static void sq_bind_int(struct db_stmt *s, int i, int64_t v)
{
	struct sq_stmt *q = (struct sq_stmt *)s;

	bound(q, sqlite3_bind_int64(q->s, i, v));
}

/*
 * The first step of a read outside any transaction can retry: in WAL mode
 * readers do not wait on writers, but a reader can still meet a lock during
 * WAL recovery or a checkpoint restart, and nothing has been read yet.
 */
static int sq_step(struct db_stmt *s)
{
	struct sq_stmt *q = (struct sq_stmt *)s;
	struct sq_db *d = (struct sq_db *)s->db;
	bool first = !sqlite3_stmt_busy(q->s);
	int rc;

	if (q->bind_rc != SQLITE_OK)
		return fail(d, q->bind_rc);
	for (unsigned i = 0;; i++) {
		rc = sqlite3_step(q->s);
		if (!first || !rc_is_busy(rc) || i >= DB_RETRIES || !sqlite3_get_autocommit(d->db))
			break;
		(void)sqlite3_reset(q->s);
		db_backoff(i);
	}
	if (rc == SQLITE_ROW)
		return DB_ROW;
	if (rc == SQLITE_DONE) {
		q->changes = sqlite3_changes(d->db);
		return DB_DONE;
	}
	return step_failed(d, rc);
}

static long long sq_changes(struct db_stmt *s)
{
	return ((struct sq_stmt *)s)->changes;
}

static bool sq_column_null(struct db_stmt *s, int col)
{
	return sqlite3_column_type(((struct sq_stmt *)s)->s, col) == SQLITE_NULL;
}

static int64_t sq_column_int(struct db_stmt *s, int col)
{
	return sqlite3_column_int64(((struct sq_stmt *)s)->s, col);
}

static const void *sq_column_text(struct db_stmt *s, int col, size_t *len)
{
	sqlite3_stmt *q = ((struct sq_stmt *)s)->s;
	const unsigned char *t = sqlite3_column_text(q, col);
	int n = sqlite3_column_bytes(q, col);

	*len = n > 0 ? (size_t)n : 0;
	return t;
}

static const void *sq_column_blob(struct db_stmt *s, int col, size_t *len)
{
	sqlite3_stmt *q = ((struct sq_stmt *)s)->s;
	const void *b = sqlite3_column_blob(q, col);
	int n = sqlite3_column_bytes(q, col);

	*len = n > 0 ? (size_t)n : 0;
	return b;
}

static void sq_rollback(struct db *db)
{
	struct sq_db *d = (struct sq_db *)db;

	/* SQLite may already have rolled back on its own (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM). */
	if (sqlite3_get_autocommit(d->db))
		return;
	(void)sqlite3_step(d->rollback);
	(void)sqlite3_reset(d->rollback);
}

/*
 * BEGIN IMMEDIATE takes the write lock at once, so it waits on the busy
 * timeout; a deferred transaction upgraded later could fail without waiting.
 * If even the timeout runs out, try a few more times before giving up. One
 * writer at a time, whatever the client.
 */
static int sq_begin(struct db *db, const uint8_t *client)
{
	struct sq_db *d = (struct sq_db *)db;
	int rc, r;

	(void)client;
	if (d->readonly)
		return -EROFS;
	for (unsigned i = 0;; i++) {
		rc = sqlite3_step(d->begin);
		if (rc == SQLITE_DONE || !rc_is_busy(rc) || i >= DB_RETRIES)
			break;
		(void)sqlite3_reset(d->begin);
		db_backoff(i);
	}
	r = rc == SQLITE_DONE ? 0 : fail(d, rc);
	(void)sqlite3_reset(d->begin);
	return r;
}

/* On failure the transaction is rolled back; a COMMIT that met a lock is still open and can be retried. */
static int sq_commit(struct db *db)
{
	struct sq_db *d = (struct sq_db *)db;
	int rc, r;

	for (unsigned i = 0;; i++) {
		rc = sqlite3_step(d->commit);
		if (rc == SQLITE_DONE || !rc_is_busy(rc) || i >= DB_RETRIES || sqlite3_get_autocommit(d->db))
			break;
		(void)sqlite3_reset(d->commit);
		db_backoff(i);
	}
	r = rc == SQLITE_DONE ? 0 : fail(d, rc);
	(void)sqlite3_reset(d->commit);
	if (r < 0)
		sq_rollback(db);
	return r;
}

/* Run a one-shot PRAGMA, retrying while another process holds a lock; report its first column if asked. */
static int pragma(struct sq_db *d, const char *sql, sqlite3_int64 *num, char *text, size_t text_size)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;
	int rc;

	for (unsigned i = 0;; i++) {
		rc = sqlite3_prepare_v2(d->db, sql, -1, &s, NULL);
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
			int r = !rc_is_busy(rc) || i >= DB_RETRIES ? fail(d, rc) : 0;

			(void)sqlite3_finalize(s);
			s = NULL;
			if (r < 0)
				return r;
			db_backoff(i);
			continue;
		}
		(void)sqlite3_finalize(s);
		return 0;
	}
}

/*
 * Create or migrate the schema, found at version v. Whoever finds it old
 * takes the write lock and looks again, since another process may have
 * migrated it meanwhile.
 */
static int schema_upgrade(struct sq_db *d, sqlite3_int64 v)
{
	char sql[64];
	int rc, r;

	if (v == STORE_SCHEMA_VERSION)
		return 0;
	if (v < 0 || v > STORE_SCHEMA_VERSION)
		return db_schema_unknown(v);

	r = sq_begin(&d->base, NULL);
	if (r < 0)
		return r;
	r = pragma(d, "PRAGMA user_version", &v, NULL, 0);
	if (r < 0)
		goto rollback;
	if (v < 0 || v > STORE_SCHEMA_VERSION) {
		r = db_schema_unknown(v);
		goto rollback;
	}
	if (v == STORE_SCHEMA_VERSION) {
		sq_rollback(&d->base);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(migrations); i++) {
		if (migrations[i].version <= v)
			continue;
		rc = sqlite3_exec(d->db, migrations[i].sql, NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			r = fail(d, rc);
			goto rollback;
		}
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		r = fail(d, rc);
		goto rollback;
	}
	return sq_commit(&d->base);

rollback:
	sq_rollback(&d->base);
	return r;
}
static int journal_wal(struct sq_db *d)
{
	char mode[STORE_JOURNAL_MODE_SIZE];
	int r;

	r = pragma(d, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode));
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
static void wal_empty(struct sq_db *d)
{
	int persist = 1;

	if (d->wal_frames < STORE_WAL_CHECKPOINT_FRAMES ||
	    sqlite3_file_control(d->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist) != SQLITE_OK ||
	    sqlite3_exec(d->db, "PRAGMA journal_size_limit = 0", NULL, NULL, NULL) != SQLITE_OK)
		return;
	(void)sqlite3_db_config(d->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, (int *)NULL);
}

/* After each commit: what SQLite's automatic checkpoint does, and the WAL's length for wal_empty. */
static int wal_committed(void *ctx, sqlite3 *db, const char *name, int frames)
{
	struct sq_db *d = ctx;

	d->wal_frames = frames;
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

static void sq_close(struct db *db)
{
	struct sq_db *d = (struct sq_db *)db;

	for (size_t i = 0; i < ARRAY_SIZE(d->stmt); i++)
		(void)sqlite3_finalize(d->stmt[i].s);
	(void)sqlite3_finalize(d->begin);
	(void)sqlite3_finalize(d->commit);
	(void)sqlite3_finalize(d->rollback);
	wal_empty(d);
	(void)sqlite3_close_v2(d->db);
	free(d);
}

static int sq_new(const char *path, int flags, int busy_timeout_ms, struct sq_db **out)
{
	struct sq_db *d;
	int rc, r;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->base.ops = &sqlite_ops;
	for (size_t i = 0; i < ARRAY_SIZE(d->stmt); i++)
		d->stmt[i].base.db = &d->base;
	d->readonly = (flags & SQLITE_OPEN_READONLY) != 0;
	rc = sqlite3_open_v2(path, &d->db, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE, NULL);
	if (rc != SQLITE_OK) {
		/* Without a handle SQLite could not even allocate one. */
		r = d->db ? fail(d, rc) : -ENOMEM;
		sq_close(&d->base);
		return r;
	}
	/* Before any statement reads the file: every lock from here on waits. */
	(void)sqlite3_busy_timeout(d->db, busy_timeout_ms > 0 ? busy_timeout_ms : STORE_BUSY_TIMEOUT_DEFAULT_MS);
	/* The schema is ours alone: refuse tricks a crafted database file could play. */
	(void)sqlite3_db_config(d->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	(void)sqlite3_db_config(d->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
	/*
	 * Each connection is one short process: a checkpoint at every close would
	 * sync the database and delete the WAL that the next process recreates.
	 * Commits are synced to the WAL all the same (synchronous FULL); the
	 * last connection to close after the WAL has grown moves it into the
	 * database (wal_empty).
	 */
	(void)sqlite3_db_config(d->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	*out = d;
	return 0;
}

static int open_writable(const char *state_dir, const char *path, int busy_timeout_ms, store_create_fn may_create,
                         void *ctx, struct sq_db **out)
{
	struct sq_db *d = NULL;
	sqlite3_int64 v = 0;
	bool asked = false, wal_was_missing;
	char *wal = NULL;
	struct stat sb;
	int r;

	r = create_private(state_dir, path, may_create, ctx, &asked);
	if (r < 0)
		goto out;
	if (asprintf(&wal, "%s-wal", path) < 0) {
		r = -ENOMEM;
		goto out;
	}
	wal_was_missing = stat(wal, &sb) < 0;
	/* No SQLITE_OPEN_CREATE: the file exists with mode 0600; if it vanished meanwhile, fail rather than recreate it. */
	r = sq_new(path, SQLITE_OPEN_READWRITE, busy_timeout_ms, &d);
	if (r < 0)
		goto out;
	/* Prepared now so that a ROLLBACK never has to allocate. */
	if ((r = sqlite3_prepare_v3(d->db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &d->begin, NULL)) != 0 ||
	    (r = sqlite3_prepare_v3(d->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &d->commit, NULL)) != 0 ||
	    (r = sqlite3_prepare_v3(d->db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &d->rollback, NULL)) != 0) {
		r = fail(d, r);
		goto out;
	}
	/* The schema's version, read before anything is written: a file we did not create without one is asked about. */
	if ((r = pragma(d, "PRAGMA user_version", &v, NULL, 0)) < 0)
		goto out;
	if (v == 0 && may_create && !asked && (r = may_create(ctx)) < 0) {
		r = failure_note(r, "%s",
		                 stat(path, &sb) == 0 && sb.st_size == 0 ? STORE_DB_NAME " is empty (0 bytes)"
		                                                         : STORE_DB_NAME " has no schema");
		goto out;
	}
	r = journal_wal(d);
	if (r < 0)
		goto out;
	/* FULL syncs the WAL at every commit: a file acknowledged with 2103 survives a power loss. */
	r = pragma(d, "PRAGMA synchronous = FULL", NULL, NULL, 0);
	if (r < 0)
		goto out;
	/* The automatic checkpoint at commit, and the WAL's length for wal_empty. */
	(void)sqlite3_wal_hook(d->db, wal_committed, d);
	r = pragma(d, "PRAGMA foreign_keys = ON", NULL, NULL, 0);
	if (r < 0)
		goto out;
	r = schema_upgrade(d, v);
	if (r < 0)
		goto out;
	wal_directory(state_dir, wal, wal_was_missing);
	*out = d;
	d = NULL;
out:
	if (d)
		sq_close(&d->base);
	free(wal);
	return r;
}

static int open_readonly(const char *path, int busy_timeout_ms, struct sq_db **out)
{
	struct sq_db *d = NULL;
	struct stat sb;
	sqlite3_int64 v = 0;
	int r;

	if (stat(path, &sb) < 0)
		return -errno;
	r = sq_new(path, SQLITE_OPEN_READONLY, busy_timeout_ms, &d);
	if (r < 0)
		return r;
	r = pragma(d, "PRAGMA user_version", &v, NULL, 0);
	if (r < 0)
		goto out;
	/* Version 0: the file exists but no efsession has created the schema yet. */
	if (v == 0) {
		r = -ENOENT;
		goto out;
	}
	if (v != STORE_SCHEMA_VERSION) {
		r = v > STORE_SCHEMA_VERSION ? db_schema_unknown(v) : db_schema_old();
		goto out;
	}
	*out = d;
	d = NULL;
out:
	if (d)
		sq_close(&d->base);
	return r;
}

int db_sqlite_open(const char *state_dir, int busy_timeout_ms, bool readonly, store_create_fn may_create, void *ctx,
                   struct db **out)
{
	struct sq_db *d = NULL;
	char *path = NULL;
	int r;

	r = db_path(state_dir, &path);
	if (r < 0)
		return r;
	r = readonly ? open_readonly(path, busy_timeout_ms, &d)
	             : open_writable(state_dir, path, busy_timeout_ms, may_create, ctx, &d);
	free(path);
	if (r == 0)
		*out = &d->base;
	return r;
}

/* Move what the write-ahead log holds into the database file. */
static int sq_checkpoint(struct db *db)
{
	return pragma((struct sq_db *)db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, 0);
}

/*
 * Run a check that answers with rows of problems: the first row becomes the
 * error message, with problem before it when given; a check that says
 * healthy answers that alone.
 */
static int check_rows(struct sq_db *d, const char *sql, const char *healthy, const char *problem)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;
	int rc, r;

	rc = sqlite3_prepare_v2(d->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return fail(d, rc);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		t = sqlite3_column_text(s, 0);
		if (healthy && t && strcmp((const char *)t, healthy) == 0 && sqlite3_step(s) == SQLITE_DONE)
			r = 0;
		else
			r = failure_note(-EIO, "%s%s", problem ? problem : "", t ? (const char *)t : "(no detail)");
	} else if (rc == SQLITE_DONE) {
		r = healthy ? failure_note(-EIO, "integrity check returned nothing") : 0;
	} else {
		r = fail(d, rc);
	}
	(void)sqlite3_finalize(s);
	return r;
}

/* The clients whose counters a recount of their rows contradicts, and the count of clients if it is wrong. */
#define COUNTERS_WRONG                                                                                                 \
	"SELECT 'client ' || quote(name) FROM clients AS c WHERE stored_bytes != (SELECT coalesce(sum(CASE WHEN "      \
	"status = 0 THEN size ELSE 0 END + coalesce(pending_size, 0)), 0) FROM files WHERE client_id = c.id) OR "      \
	"stored_files != (SELECT count(*) FROM files WHERE client_id = c.id AND status = 0)\n"                         \
	"UNION ALL SELECT 'the count of clients' FROM totals WHERE clients != (SELECT count(*) FROM clients)"

/* The pages (integrity_check), the references between tables (foreign_key_check) and the counters (a recount). */
static int sq_check(struct db *db)
{
	struct sq_db *d = (struct sq_db *)db;
	int r;

	if ((r = check_rows(d, "PRAGMA integrity_check", "ok", NULL)) < 0 ||
	    (r = check_rows(d, "PRAGMA foreign_key_check", NULL, "a row refers to a missing row of another table: ")) <
	        0 ||
	    (r = check_rows(d, COUNTERS_WRONG, NULL, "counters that disagree with a recount: ")) < 0)
		return r;
	return 0;
}

static const struct db_ops sqlite_ops = {
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .get = sq_get,
    .bind_blob = sq_bind_blob,
    .bind_text = sq_bind_text,
    .bind_int = sq_bind_int,
    .step = sq_step,
    .changes = sq_changes,
    .column_null = sq_column_null,
    .column_int = sq_column_int,
    .column_text = sq_column_text,
    .column_blob = sq_column_blob,
    .done = sq_done,
    .checkpoint = sq_checkpoint,
    .check = sq_check,
};
