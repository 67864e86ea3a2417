/*
 * The database engines under the store (store.c): SQLite in the state
 * directory (db-sqlite.c) and PostgreSQL (db-pg.c). The store's rules are
 * written once, in store.c, over what this header offers: a transaction
 * about one client or about registration, statements named by the ids
 * below (each engine holds the SQL text of every id in one table), typed
 * parameters, rows stepped through and typed columns. Functions return 0
 * or a negative errno-style code and do not log; a failure of the database
 * is noted in its engine's own words (failure.h), a refusal (-EEXIST,
 * -ENOENT) notes nothing.
 */
#ifndef EF_DB_H
#define EF_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/*
 * The limits in the schemas of both engines are literals so that a schema
 * version never changes meaning; these tie them to the constants the code
 * relies on.
 */
_Static_assert(WIRE_ID_SIZE == 16, "clients.id CHECK");
_Static_assert(WIRE_NAME_MAX == 254, "name and file_name CHECK");
_Static_assert(STORE_PATH_MAX - 1 == 511, "path_name CHECK");
_Static_assert(DER_RSA_SPKI_MAX == 1100, "public_key CHECK");
_Static_assert(STORE_AES_MAX == 32, "aes_key CHECK");
_Static_assert(STORE_TOKEN_SIZE - 1 == 32, "pending_name CHECK");
_Static_assert(STORE_SOURCE_SIZE - 1 == 63, "registrations.source CHECK");
_Static_assert(STORE_FILE_STORED == 0 && STORE_FILE_FAILED == 1, "files.status CHECK and statements");

/* Every column of a client row, in the order store.c reads them: each a column, none a count. */
#define DB_CLIENT_COLUMNS "id, name, public_key, aes_key, last_seen, stored_bytes, stored_files"
/* Every column of a file row, in the order store.c reads them. */
#define DB_FILE_COLUMNS                                                                                                \
	"client_id, file_name, path_name, verified, status, size, checksum, attempts, received, pending_name, "        \
	"pending_size, pending_checksum, pending_received"
#define DB_PENDING_CLEARED "pending_name = NULL, pending_size = NULL, pending_checksum = NULL, pending_received = NULL"
/*
 * Rows over an hour old that one registration (or bad padding) removes at
 * most: more than the one it adds, so the tables hold about an hour of
 * them, and no request pays for a long idle spell all at once.
 */
#define DB_PRUNE_BATCH "16"
/* Further attempts after a lock wait gave up, or after a failure that another attempt may not meet. */
#define DB_RETRIES 8
/* A statement takes at most this many parameters. */
#define DB_PARAMS_MAX 13

/*
 * The statements of the store, the same on every engine. Those before
 * ST_ITERATE_FIRST are kept from their first use until the database is
 * closed; the others are made for each use (db_done ends them), so that a
 * callback of an iteration may use the store again.
 */
enum stmt_id {
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
	ST_COPY_CLIENT,
	ST_COPY_FILE,
	ST_COPY_REGISTRATION,
	ST_COPY_BAD_PADDING,
	ST_ITERATE_FIRST,
	ST_EACH_CLIENT = ST_ITERATE_FIRST,
	ST_EACH_FILE,
	ST_EACH_FILE_OF,
	ST_EACH_USAGE,
	ST_EACH_SOURCE,
	ST_REPAIR_CANDIDATES,
	ST_COPY_CLIENTS,
	ST_COPY_REGISTRATIONS,
	ST_COPY_BAD_PADDINGS,
	ST_COUNT,
};

/* What db_step found. */
enum {
	DB_DONE = 0,
	DB_ROW = 1,
};

struct db;
struct db_stmt;

/* An engine: each db and db_stmt starts with the struct below that leads to it. */
struct db_ops {
	void (*close)(struct db *db);
	int (*begin)(struct db *db, const uint8_t *client);
	int (*commit)(struct db *db);
	void (*rollback)(struct db *db);
	int (*get)(struct db *db, enum stmt_id id, struct db_stmt **out);
	void (*bind_blob)(struct db_stmt *s, int i, const void *v, size_t len);
	void (*bind_text)(struct db_stmt *s, int i, const char *v);
	void (*bind_int)(struct db_stmt *s, int i, int64_t v);
	int (*step)(struct db_stmt *s);
	long long (*changes)(struct db_stmt *s);
	bool (*column_null)(struct db_stmt *s, int col);
	int64_t (*column_int)(struct db_stmt *s, int col);
	const void *(*column_text)(struct db_stmt *s, int col, size_t *len);
	const void *(*column_blob)(struct db_stmt *s, int col, size_t *len);
	void (*done)(struct db_stmt *s);
	int (*checkpoint)(struct db *db);
	int (*check)(struct db *db);
};

struct db {
	const struct db_ops *ops;
};

struct db_stmt {
	struct db *db;
};

/*
 * The engines' openers, as store_open and store_open_readonly describe
 * them: SQLite's STATE_DIR/efserver.db, or the PostgreSQL database of a
 * libpq URI. busy_timeout_ms <= 0 picks the default.
 */
int db_sqlite_open(const char *state_dir, int busy_timeout_ms, bool readonly, store_create_fn may_create, void *ctx,
                   struct db **out);
#ifdef HAVE_POSTGRESQL
int db_pg_open(const char *url, int busy_timeout_ms, bool readonly, store_create_fn may_create, void *ctx,
               struct db **out);
#endif

/* A short, growing pause with a per-process offset, so that retrying processes do not collide again in step. */
void db_backoff(unsigned attempt);

/* A schema version this program cannot use (a newer efsession wrote it): -EPROTO, saying which. */
int db_schema_unknown(long long version);
/* A schema older than a read-only opener may use: -EPROTO, saying who upgrades it. */
int db_schema_old(void);

static inline void db_close(struct db *db)
{
	if (db)
		db->ops->close(db);
}

/*
 * A write transaction, concerning client (a WIRE_ID_SIZE id) or, when
 * client is NULL, registration: the clients, their names and count, the
 * registrations per source. Writers of the same client, or of registration,
 * wait for each other.
 */
static inline int db_begin(struct db *db, const uint8_t *client)
{
	return db->ops->begin(db, client);
}

/* On failure the transaction is rolled back. */
static inline int db_commit(struct db *db)
{
	return db->ops->commit(db);
}

static inline void db_rollback(struct db *db)
{
	db->ops->rollback(db);
}

static inline int db_get(struct db *db, enum stmt_id id, struct db_stmt **out)
{
	return db->ops->get(db, id, out);
}

/*
 * Parameters, numbered from 1; the values must live until db_done. A
 * parameter that cannot be bound is reported by the next db_step.
 */
static inline void db_bind_blob(struct db_stmt *s, int i, const void *v, size_t len)
{
	s->db->ops->bind_blob(s, i, v, len);
}

static inline void db_bind_text(struct db_stmt *s, int i, const char *v)
{
	s->db->ops->bind_text(s, i, v);
}

static inline void db_bind_int(struct db_stmt *s, int i, int64_t v)
{
	s->db->ops->bind_int(s, i, v);
}

/* The next row: DB_ROW, DB_DONE, or a negative errno. */
static inline int db_step(struct db_stmt *s)
{
	return s->db->ops->step(s);
}

/* After DB_DONE: the rows the statement changed. */
static inline long long db_changes(struct db_stmt *s)
{
	return s->db->ops->changes(s);
}

static inline bool db_column_null(struct db_stmt *s, int col)
{
	return s->db->ops->column_null(s, col);
}

static inline int64_t db_column_int(struct db_stmt *s, int col)
{
	return s->db->ops->column_int(s, col);
}

/* A text or blob column's bytes, valid until the next step; NULL for SQL NULL. */
static inline const void *db_column_text(struct db_stmt *s, int col, size_t *len)
{
	return s->db->ops->column_text(s, col, len);
}

static inline const void *db_column_blob(struct db_stmt *s, int col, size_t *len)
{
	return s->db->ops->column_blob(s, col, len);
}

/* The statement is ready for its next use, and holds no pointer to the caller's buffers. */
static inline void db_done(struct db_stmt *s)
{
	s->db->ops->done(s);
}

#endif
