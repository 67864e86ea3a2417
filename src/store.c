/*
 * The store (efserver-protocol(7), "What the server keeps"): clients and files
 * in one database shared by every efsession process, SQLite in the state
 * directory or PostgreSQL (db.h). Each process has one connection; every
 * write is one short transaction that waits for the writers it competes
 * with instead of failing. Every rule of the store is here, once, whatever
 * the engine.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "failure.h"
#include "store.h"

#define STORE_TIME_SIZE 32

_Static_assert(sizeof(((struct store_client *)0)->last_seen) == STORE_TIME_SIZE, "time buffers");
_Static_assert(sizeof(((struct store_file *)0)->received) == STORE_TIME_SIZE, "time buffers");
_Static_assert(sizeof(((struct store_file *)0)->pending_received) == STORE_TIME_SIZE, "time buffers");

struct store {
	struct db *db;
};

int store_open(const char *state_dir, int busy_timeout_ms, store_create_fn may_create, void *ctx, struct store **out)
{
	return store_open_database(NULL, state_dir, busy_timeout_ms, false, may_create, ctx, out);
}

int store_open_readonly(const char *state_dir, int busy_timeout_ms, struct store **out)
{
	return store_open_database(NULL, state_dir, busy_timeout_ms, true, NULL, NULL, out);
}

bool store_is_url(const char *database)
{
	return database && (strncmp(database, "postgresql://", 13) == 0 || strncmp(database, "postgres://", 11) == 0);
}

int store_open_database(const char *url, const char *state_dir, int busy_timeout_ms, bool readonly,
                        store_create_fn may_create, void *ctx, struct store **out)
{
	struct store *st;
	int r;

	failure_clear();
	if (!out || (url && !store_is_url(url)) || (!url && (!state_dir || !*state_dir)))
		return -EINVAL;
	if (!(st = calloc(1, sizeof(*st))))
		return -ENOMEM;
#ifdef HAVE_POSTGRESQL
	if (url)
		r = db_pg_open(url, busy_timeout_ms, readonly, may_create, ctx, &st->db);
	else
#else
	if (url)
		r = -EPROTONOSUPPORT;
	else
#endif
		r = db_sqlite_open(state_dir, busy_timeout_ms, readonly, may_create, ctx, &st->db);
	if (r < 0) {
		free(st);
		return r;
	}
	*out = st;
	return 0;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	db_close(st->db);
	free(st);
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
static bool column_str(struct db_stmt *s, int col, char *dst, size_t size, bool may_be_empty)
{
	size_t n;
	const char *t = db_column_text(s, col, &n);

	if (!t || n >= size || (n == 0 && !may_be_empty) || memchr(t, '\0', n))
		return false;
	memcpy(dst, t, n);
	dst[n] = '\0';
	return true;
}

/* Copy a blob column (NULL reads as length 0) into a fixed field. */
static bool column_blob(struct db_stmt *s, int col, uint8_t *dst, size_t size, size_t *len)
{
	size_t n;
	const void *b = db_column_blob(s, col, &n);

	if (n > size || (n > 0 && !b))
		return false;
	if (n > 0)
		memcpy(dst, b, n);
	*len = n;
	return true;
}

/* A row or check result the schema should have made impossible. */
static int corrupt(const char *what)
{
	return failure_note(-EIO, "%s", what);
}

static int client_from_row(struct db_stmt *s, void *out)
{
	struct store_client *c = out;
	size_t id_len = 0;

	memset(c, 0, sizeof(*c));
	if (!column_blob(s, 0, c->id, sizeof(c->id), &id_len) || id_len != WIRE_ID_SIZE ||
	    !column_str(s, 1, c->name, sizeof(c->name), false) ||
	    !column_blob(s, 2, c->public_key, sizeof(c->public_key), &c->public_key_len) ||
	    !column_blob(s, 3, c->aes_key, sizeof(c->aes_key), &c->aes_key_len) ||
	    !column_str(s, 4, c->last_seen, sizeof(c->last_seen), true) || db_column_int(s, 5) < 0 ||
	    db_column_int(s, 6) < 0)
		return corrupt("malformed row in table clients");
	c->stored_bytes = (uint64_t)db_column_int(s, 5);
	c->stored_files = (uint64_t)db_column_int(s, 6);
	return 0;
}

static int file_from_row(struct db_stmt *s, void *out)
{
	struct store_file *f = out;
	size_t id_len = 0;
	int64_t status, size, checksum;

	memset(f, 0, sizeof(*f));
	status = db_column_int(s, 4);
	size = db_column_int(s, 5);
	checksum = db_column_int(s, 6);
	if (!column_blob(s, 0, f->client_id, sizeof(f->client_id), &id_len) || id_len != WIRE_ID_SIZE ||
	    !column_str(s, 1, f->file_name, sizeof(f->file_name), false) ||
	    !column_str(s, 2, f->path_name, sizeof(f->path_name), false) ||
	    !column_str(s, 8, f->received, sizeof(f->received), true) ||
	    (status != STORE_FILE_STORED && status != STORE_FILE_FAILED) || size < 0 || checksum < 0 ||
	    checksum > UINT32_MAX)
		return corrupt("malformed row in table files");
	f->verified = db_column_int(s, 3) != 0;
	f->status = (enum store_file_status)status;
	f->size = (uint64_t)size;
	f->checksum = (uint32_t)checksum;
	f->attempts = db_column_int(s, 7);
	if (db_column_null(s, 9))
		return 0;
	size = db_column_int(s, 10);
	checksum = db_column_int(s, 11);
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
                    struct db_stmt **out)
{
	struct db_stmt *s = NULL;
	int r;

	if ((r = db_get(st->db, which, &s)) < 0)
		return r;
	db_bind_blob(s, 1, id, WIRE_ID_SIZE);
	if (text)
		db_bind_text(s, 2, text);
	*out = s;
	return 0;
}

/* Run a bound statement that returns no row, then reset it: the rows it changed, or a negative errno. */
static long long stmt_exec(struct db_stmt *s)
{
	int r = db_step(s);
	long long n = r == DB_DONE ? db_changes(s) : r == DB_ROW ? corrupt("a statement returned a row") : r;

	db_done(s);
	return n;
}

/*
 * The row a bound SELECT of one row finds, read by from_row into tmp and
 * copied to out (size bytes) only on success: 0 or -ENOENT. tmp is wiped
 * after, since a client's row holds its AES key.
 */
static int fetch_one(struct db_stmt *s, int (*from_row)(struct db_stmt *, void *), void *tmp, void *out, size_t size)
{
	int r;

	r = db_step(s);
	if (r == DB_ROW)
		r = from_row(s, tmp);
	else if (r == DB_DONE)
		r = -ENOENT;
	db_done(s);
	if (r == 0)
		memcpy(out, tmp, size);
	explicit_bzero(tmp, size);
	return r;
}

/* The row of a client's file: 0 or -ENOENT. */
static int file_fetch(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, struct store_file *out)
{
	struct db_stmt *s = NULL;
	struct store_file f;
	int r;

	if ((r = stmt_for(st, ST_FILE_GET, id, path_name, &s)) < 0)
		return r;
	return fetch_one(s, file_from_row, &f, out, sizeof(f));
}

/* A bound statement that answers one integer: *out, or -ENOENT when it answers no row. Reset after. */
static int stmt_int(struct db_stmt *s, long long *out)
{
	int r = db_step(s);

	if (r == DB_ROW) {
		*out = db_column_int(s, 0);
		r = 0;
	} else if (r == DB_DONE) {
		r = -ENOENT;
	}
	db_done(s);
	return r;
}

/* A limit, as the LIMIT of a statement that reads at most that many rows. */
static int64_t as_limit(uint64_t n)
{
	return n > INT64_MAX ? INT64_MAX : (int64_t)n;
}

/* Within a transaction: run a statement that takes no argument. */
static int stmt_run(struct store *st, enum stmt_id which)
{
	struct db_stmt *s = NULL;
	long long n;
	int r;

	if ((r = db_get(st->db, which, &s)) < 0)
		return r;
	n = stmt_exec(s);
	return n < 0 ? (int)n : 0;
}

/* What one row adds to its client's counters: the copy under the name unless given up, and one kept aside. */
static void row_weight(const struct store_file *f, int64_t *bytes, int64_t *files)
{
	*bytes = (f->status == STORE_FILE_STORED ? (int64_t)f->size : 0) + (f->pending ? (int64_t)f->pending_size : 0);
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
	int64_t b0 = 0, f0 = 0, b1 = 0, f1 = 0;
	struct store_file after;
	struct db_stmt *s = NULL;
	long long n;
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
	db_bind_int(s, 2, b1 - b0);
	db_bind_int(s, 3, f1 - f0);
	n = stmt_exec(s);
	return n < 0 ? (int)n : 0;
}

/* Within a transaction: the server-wide count of clients, after one was added (1) or removed (-1). */
static int count_client(struct store *st, int delta)
{
	struct db_stmt *s = NULL;
	long long n;
	int r;

	if ((r = db_get(st->db, ST_CLIENT_COUNT, &s)) < 0)
		return r;
	db_bind_int(s, 1, delta);
	n = stmt_exec(s);
	return n < 0 ? (int)n : 0;
}

/*
 * Within a registering transaction: the registrations over an hour old
 * pruned, then the limits of lim on one more from source (efsession(8),
 * Limits). 0, or -EDQUOT with *refused.
 */
static int admit(struct store *st, const char *source, const struct store_limits *lim, enum store_limit *refused)
{
	struct db_stmt *s = NULL;
	long long n = 0;
	int r;

	if (source && (r = stmt_run(st, ST_REGISTRATIONS_PRUNE)) < 0)
		return r;
	if (source && lim && lim->registrations_per_hour) {
		if ((r = db_get(st->db, ST_REGISTRATIONS_COUNT, &s)) < 0)
			return r;
		db_bind_text(s, 1, source);
		db_bind_int(s, 2, as_limit(lim->registrations_per_hour));
		if ((r = stmt_int(s, &n)) < 0)
			return r;
		if ((uint64_t)n >= lim->registrations_per_hour) {
			*refused = STORE_LIMIT_REGISTRATIONS_PER_HOUR;
			return -EDQUOT;
		}
	}
	if (lim && lim->max_clients) {
		if ((r = db_get(st->db, ST_CLIENT_TOTAL, &s)) < 0 || (r = stmt_int(s, &n)) < 0)
			return r == -ENOENT ? corrupt("table totals has no row") : r;
		if (n < 0 || (uint64_t)n >= lim->max_clients) {
			*refused = STORE_LIMIT_MAX_CLIENTS;
			return -EDQUOT;
		}
	}
	return 0;
}

/*
 * A new client, with its public key or none, admitted from source under lim
 * (NULL: neither), in a transaction of registration. The UNIQUE and PRIMARY
 * KEY constraints decide, atomically, that the name or id is taken
 * (-EEXIST).
 */
static int add_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                      size_t spki_len, const char *source, const struct store_limits *lim, enum store_limit *refused)
{
	struct db_stmt *s = NULL;
	long long n;
	int r;

	if (!st || !id || !str_ok(name, WIRE_NAME_SIZE) || (spki && (spki_len == 0 || spki_len > DER_RSA_SPKI_MAX)) ||
	    (source && !str_ok(source, STORE_SOURCE_SIZE)) || (lim && !refused))
		return -EINVAL;
	failure_clear();
	r = db_begin(st->db, NULL);
	if (r < 0)
		return r;
	if ((r = admit(st, source, lim, refused)) < 0)
		goto rollback;
	r = db_get(st->db, ST_CLIENT_INSERT, &s);
	if (r < 0)
		goto rollback;
	db_bind_blob(s, 1, id, WIRE_ID_SIZE);
	db_bind_text(s, 2, name);
	if (spki)
		db_bind_blob(s, 3, spki, spki_len);
	if ((n = stmt_exec(s)) < 0) {
		r = (int)n;
		goto rollback;
	}
	if ((r = count_client(st, 1)) < 0)
		goto rollback;
	if (source) {
		if ((r = db_get(st->db, ST_REGISTRATION_ADD, &s)) < 0)
			goto rollback;
		db_bind_text(s, 1, source);
		if ((n = stmt_exec(s)) < 0) {
			r = (int)n;
			goto rollback;
		}
	}
	return db_commit(st->db);

rollback:
	db_rollback(st->db);
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

static int client_fetch(struct db_stmt *s, struct store_client *out)
{
	struct store_client c;

	return fetch_one(s, client_from_row, &c, out, sizeof(c));
}

int store_get_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], struct store_client *out)
{
	struct db_stmt *s = NULL;
	int r;

	if (!st || !id || !out)
		return -EINVAL;
	failure_clear();
	if ((r = stmt_for(st, ST_CLIENT_BY_ID, id, NULL, &s)) < 0)
		return r;
	return client_fetch(s, out);
}

int store_find_client_by_name(struct store *st, const char *name, struct store_client *out)
{
	struct db_stmt *s = NULL;
	int r;

	if (!st || !out || !str_ok(name, WIRE_NAME_SIZE))
		return -EINVAL;
	failure_clear();
	r = db_get(st->db, ST_CLIENT_BY_NAME, &s);
	if (r < 0)
		return r;
	db_bind_text(s, 1, name);
	return client_fetch(s, out);
}

/* Within a transaction: last seen of a known id; an unknown id changes nothing. */
static int touch(struct store *st, const uint8_t id[WIRE_ID_SIZE], char name[WIRE_NAME_SIZE])
{
	struct db_stmt *s = NULL;
	const char *t;
	size_t n;
	int r;

	if ((r = stmt_for(st, ST_CLIENT_TOUCH, id, NULL, &s)) < 0)
		return r;
	r = db_step(s);
	if (r == DB_ROW) {
		if (name && (t = db_column_text(s, 0, &n)))
			snprintf(name, WIRE_NAME_SIZE, "%.*s", (int)(n < WIRE_NAME_SIZE ? n : WIRE_NAME_SIZE - 1), t);
		r = db_step(s);
	}
	db_done(s);
	return r == DB_ROW ? corrupt("two clients with one id") : r;
}

int store_touch(struct store *st, const uint8_t id[WIRE_ID_SIZE])
{
	int r;

	if (!st || !id)
		return -EINVAL;
	failure_clear();
	r = db_begin(st->db, id);
	if (r < 0)
		return r;
	r = touch(st, id, NULL);
	if (r < 0) {
		db_rollback(st->db);
		return r;
	}
	return db_commit(st->db);
}

/* May this id, under this name, get a key with this SPKI? 0, -ENOENT or -EPERM; in a transaction or not. */
static int keys_allowed(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                        size_t spki_len)
{
	struct db_stmt *s = NULL;
	const void *stored_name, *stored_key;
	size_t name_len = strlen(name), n;
	int r;

	if ((r = stmt_for(st, ST_CLIENT_KEYS, id, NULL, &s)) < 0)
		return r;
	r = db_step(s);
	if (r == DB_DONE) {
		r = -ENOENT;
	} else if (r == DB_ROW) {
		r = 0;
		stored_name = db_column_text(s, 0, &n);
		if (!stored_name || n != name_len || memcmp(stored_name, name, name_len) != 0) {
			r = -ENOENT;
		} else {
			/* The first key a client sends is its identity: a different one later is refused. */
			stored_key = db_column_blob(s, 1, &n);
			if (n > 0 && (!stored_key || n != spki_len || memcmp(stored_key, spki, spki_len) != 0))
				r = -EPERM;
		}
	}
	db_done(s);
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
	struct db_stmt *s = NULL;
	long long n;
	int r;

	if (!st || !id || !str_ok(name, WIRE_NAME_SIZE) || !spki || spki_len == 0 || spki_len > DER_RSA_SPKI_MAX ||
	    !aes || aes_len == 0 || aes_len > STORE_AES_MAX)
		return -EINVAL;
	failure_clear();
	r = db_begin(st->db, id);
	if (r < 0)
		return r;
	r = keys_allowed(st, id, name, spki, spki_len);
	if (r < 0)
		goto rollback;
	r = stmt_for(st, ST_CLIENT_SET_KEYS, id, NULL, &s);
	if (r < 0)
		goto rollback;
	db_bind_blob(s, 2, spki, spki_len);
	db_bind_blob(s, 3, aes, aes_len);
	if ((n = stmt_exec(s)) < 0) {
		r = (int)n;
		goto rollback;
	}
	return db_commit(st->db);

rollback:
	db_rollback(st->db);
	return r;
}

/* Within a transaction: a statement on a client's AES key, ?1 the id and ?2 a key; *changes, the rows it changed. */
static int aes_key_exec(struct store *st, enum stmt_id which, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes,
                        size_t aes_len, long long *changes)
{
	struct db_stmt *s = NULL;
	long long n;
	int r;

	if ((r = stmt_for(st, which, id, NULL, &s)) < 0)
		return r;
	db_bind_blob(s, 2, aes, aes_len);
	if ((n = stmt_exec(s)) < 0)
		return (int)n;
	*changes = n;
	return 0;
}

int store_set_aes_key(struct store *st, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes, size_t aes_len)
{
	long long changes = 0;
	int r;

	if (!st || !id || !aes || aes_len == 0 || aes_len > STORE_AES_MAX)
		return -EINVAL;
	failure_clear();
	r = db_begin(st->db, id);
	if (r < 0)
		return r;
	r = aes_key_exec(st, ST_CLIENT_SET_AES, id, aes, aes_len, &changes);
	/* 1027 needs a stored public key to encrypt the new AES key with (efserver-protocol(7), Responses). */
	if (r == 0 && changes == 0)
		r = -ENOENT;
	if (r < 0) {
		db_rollback(st->db);
		return r;
	}
	return db_commit(st->db);
}

int store_drop_aes_key(struct store *st, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes, size_t aes_len,
                       bool *dropped)
{
	struct db_stmt *s = NULL;
	long long changes = 0, n = 0;
	int r;

	if (!st || !id || !aes || aes_len == 0 || aes_len > STORE_AES_MAX || !dropped)
		return -EINVAL;
	failure_clear();
	r = db_begin(st->db, id);
	if (r < 0)
		return r;
	if ((r = aes_key_exec(st, ST_CLIENT_DROP_AES, id, aes, aes_len, &changes)) < 0 ||
	    (r = stmt_run(st, ST_BAD_PADDINGS_PRUNE)) < 0 || (r = stmt_for(st, ST_BAD_PADDING_ADD, id, NULL, &s)) < 0 ||
	    (r = (n = stmt_exec(s)) < 0 ? (int)n : 0) < 0 || (r = touch(st, id, NULL)) < 0) {
		db_rollback(st->db);
		return r;
	}
	if ((r = db_commit(st->db)) < 0)
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
	struct db_stmt *s = NULL;
	int r;

	if ((r = stmt_for(st, ST_FILE_ATTEMPTS, id, path_name, &s)) < 0)
		return r;
	r = stmt_int(s, out);
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
	int64_t bytes, files, size, pending_size, bad;
	bool has_row, failed, verified, pending;
	struct db_stmt *s = NULL;
	uint64_t replaced;
	int r;

	if (!st || !id || !str_ok(path_name, STORE_PATH_MAX) || !lim || !refused)
		return -EINVAL;
	failure_clear();
	if (!lim->client_quota && !lim->client_max_files && !lim->max_bad_paddings)
		return 0;
	if ((r = stmt_for(st, ST_UPLOAD_CHECK, id, path_name, &s)) < 0)
		return r;
	db_bind_int(s, 3, as_limit(lim->max_bad_paddings));
	r = db_step(s);
	if (r != DB_ROW) {
		db_done(s);
		return r == DB_DONE ? -ENOENT : r;
	}
	bytes = db_column_int(s, 0);
	files = db_column_int(s, 1);
	has_row = !db_column_null(s, 2);
	failed = has_row && db_column_int(s, 2) == STORE_FILE_FAILED;
	verified = has_row && db_column_int(s, 3) != 0;
	size = has_row ? db_column_int(s, 4) : 0;
	pending = !db_column_null(s, 5);
	pending_size = pending ? db_column_int(s, 5) : 0;
	bad = db_column_int(s, 6);
	db_done(s);
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
	struct db_stmt *s = NULL;
	int64_t bytes, files;
	int r;

	if (!lim || (!lim->client_quota && !lim->client_max_files))
		return 0;
	if ((r = stmt_for(st, ST_CLIENT_USAGE, id, NULL, &s)) < 0)
		return r;
	r = db_step(s);
	if (r != DB_ROW) {
		db_done(s);
		return r == DB_DONE ? corrupt("client row missing while its file is recorded") : r;
	}
	bytes = db_column_int(s, 0);
	files = db_column_int(s, 1);
	db_done(s);
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
	struct db_stmt *s = NULL;
	long long n;
	int r;

	if ((r = stmt_for(st, which, id, path_name, &s)) < 0)
		return r;
	if (text)
		db_bind_text(s, 3, text);
	n = stmt_exec(s);
	return n < 0 ? (int)n : n == 0 ? -ENOENT : 0;
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
 * under a row that claims no confirmation. The foreign key says the client
 * is not registered (-ENOENT).
 */
int store_record_file(struct store *st, const struct store_file *f, const char *token, const struct store_disk *disk,
                      const struct store_limits *lim, struct store_recorded *out, enum store_limit *refused)
{
	struct store_file row;
	struct db_stmt *s = NULL;
	bool aside = false, rolled, new_name, had_row;
	char dropped[STORE_TOKEN_SIZE] = "";
	long long n = 0;
	int r;

	if (!st || !f || !str_ok(f->file_name, sizeof(f->file_name)) || !str_ok(f->path_name, sizeof(f->path_name)) ||
	    f->size > INT64_MAX || !token || strlen(token) != STORE_TOKEN_SIZE - 1 || !disk || !disk->place || !out ||
	    (lim && !refused))
		return -EINVAL;
	failure_clear();
	r = db_begin(st->db, f->client_id);
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
		if ((r = stmt_for(st, ST_FILE_ASIDE, f->client_id, f->path_name, &s)) < 0)
			goto rollback;
		db_bind_text(s, 3, f->file_name);
		db_bind_text(s, 4, token);
		db_bind_int(s, 5, (int64_t)f->size);
		db_bind_int(s, 6, (int64_t)f->checksum);
	} else {
		if ((r = stmt_for(st, ST_FILE_UPSERT, f->client_id, f->file_name, &s)) < 0)
			goto rollback;
		db_bind_text(s, 3, f->path_name);
		db_bind_int(s, 4, (int64_t)f->size);
		db_bind_int(s, 5, (int64_t)f->checksum);
	}
	if ((n = stmt_exec(s)) < 0) {
		r = (int)n;
		goto rollback;
	}
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
	r = db_commit(st->db);
	if (r < 0)
		return r;
	out->attempts = n;
	out->aside = aside;
	memcpy(out->dropped, dropped, sizeof(out->dropped));
	out->rolled_forward = rolled;
	return 0;

rollback:
	db_rollback(st->db);
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
	r = db_begin(st->db, id);
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
	if ((r = db_commit(st->db)) < 0)
		return r;
	done.rolled_forward = rolled;
	*out = done;
	return 0;

rollback:
	db_rollback(st->db);
	return r;
}

int store_remove_client(struct store *st, const uint8_t id[WIRE_ID_SIZE])
{
	struct db_stmt *s = NULL;
	long long n = 0;
	int r;

	if (!st || !id)
		return -EINVAL;
	failure_clear();
	r = db_begin(st->db, id);
	if (r < 0)
		return r;
	if ((r = stmt_for(st, ST_CLIENT_DELETE, id, NULL, &s)) == 0)
		r = (n = stmt_exec(s)) < 0 ? (int)n : n == 0 ? -ENOENT : count_client(st, -1);
	if (r < 0) {
		db_rollback(st->db);
		return r;
	}
	return db_commit(st->db);
}

int store_forget_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name,
                      store_publish_fn gone_check, void *ctx)
{
	struct store_file row;
	int r;

	if (!st || !id || !str_ok(path_name, STORE_PATH_MAX))
		return -EINVAL;
	failure_clear();
	r = db_begin(st->db, id);
	if (r < 0)
		return r;
	if ((r = file_fetch(st, id, path_name, &row)) < 0 ||
	    (r = file_stmt(st, ST_FILE_DELETE, id, path_name, NULL)) < 0 ||
	    (r = account(st, id, path_name, &row)) < 0 || (r = run_callback(gone_check ? gone_check(ctx) : 0)) < 0)
		goto rollback;
	return db_commit(st->db);

rollback:
	db_rollback(st->db);
	return r;
}

/* Whether a row names a kept-aside copy token of client id, in a transaction or not: 1, 0, or a negative errno. */
static int pending_referenced(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	struct db_stmt *s = NULL;
	int r;

	if ((r = stmt_for(st, ST_FILE_PENDING_REF, id, token, &s)) < 0)
		return r;
	r = db_step(s);
	db_done(s);
	return r == DB_ROW ? 1 : r;
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
	r = db_begin(st->db, id);
	if (r < 0)
		return r;
	r = pending_referenced(st, id, token);
	if (r > 0)
		r = -EBUSY;
	if (r < 0 || (r = run_callback(remove(ctx))) < 0)
		goto rollback;
	return db_commit(st->db);

rollback:
	db_rollback(st->db);
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
	struct db_stmt *s = NULL;
	bool rolled;
	int step, r;

	if (!st || !disk || !disk->pending_exists)
		return -EINVAL;
	failure_clear();
	/* The candidates first, read outside any transaction; each is then looked at again inside its own. */
	r = db_get(st->db, ST_REPAIR_CANDIDATES, &s);
	if (r < 0)
		return r;
	while ((step = db_step(s)) == DB_ROW) {
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
	if (r == 0 && step < 0)
		r = step;
	db_done(s);
	for (i = 0; r == 0 && i < n; i++) {
		if ((r = db_begin(st->db, rows[i].id)) < 0)
			break;
		r = file_current(st, rows[i].id, rows[i].path, disk, &row, &rolled);
		if (r == -ENOENT) {
			r = 0;
			rolled = false;
		}
		r = r < 0 ? r : db_commit(st->db);
		if (r < 0) {
			db_rollback(st->db);
			break;
		}
		if (rolled && fn && (r = fn(&row, ctx)) != 0)
			break;
	}
	free(rows);
	return r;
}

/*
 * Rows of an iteration statement, each read by from_row into tmp and given
 * to fn until fn returns non-zero; tmp is wiped after.
 */
static int iterate(struct db_stmt *s, int (*from_row)(struct db_stmt *, void *), void *tmp, size_t size,
                   int (*fn)(void *row, void *ctx), void *ctx)
{
	int step, r = 0;

	while ((step = db_step(s)) == DB_ROW) {
		if ((r = from_row(s, tmp)) != 0 || (r = fn(tmp, ctx)) != 0)
			break;
	}
	if (r == 0 && step < 0)
		r = step;
	explicit_bzero(tmp, size);
	db_done(s);
	return r;
}

struct each_client {
	store_client_fn fn;
	void *ctx;
};

static int each_client(void *row, void *ctx)
{
	struct each_client *e = ctx;

	return e->fn(row, e->ctx);
}

int store_each_client(struct store *st, store_client_fn fn, void *ctx)
{
	struct each_client e = {fn, ctx};
	struct store_client c;
	struct db_stmt *s = NULL;
	int r;

	if (!st || !fn)
		return -EINVAL;
	failure_clear();
	if ((r = db_get(st->db, ST_EACH_CLIENT, &s)) < 0)
		return r;
	return iterate(s, client_from_row, &c, sizeof(c), each_client, &e);
}

struct each_file {
	store_file_fn fn;
	void *ctx;
};

static int each_file(void *row, void *ctx)
{
	struct each_file *e = ctx;

	return e->fn(row, e->ctx);
}

int store_each_file(struct store *st, const uint8_t *id, store_file_fn fn, void *ctx)
{
	struct each_file e = {fn, ctx};
	struct store_file f;
	struct db_stmt *s = NULL;
	int r;

	if (!st || !fn)
		return -EINVAL;
	failure_clear();
	if ((r = db_get(st->db, id ? ST_EACH_FILE_OF : ST_EACH_FILE, &s)) < 0)
		return r;
	if (id)
		db_bind_blob(s, 1, id, WIRE_ID_SIZE);
	return iterate(s, file_from_row, &f, sizeof(f), each_file, &e);
}

int store_count_files(struct store *st, const uint8_t id[WIRE_ID_SIZE], long long *rows)
{
	struct db_stmt *s = NULL;
	int r;

	if (!st || !id || !rows)
		return -EINVAL;
	failure_clear();
	if ((r = stmt_for(st, ST_FILE_COUNT, id, NULL, &s)) < 0)
		return r;
	return stmt_int(s, rows);
}

int store_count_clients(struct store *st, long long *clients)
{
	struct db_stmt *s = NULL;
	int r;

	if (!st || !clients)
		return -EINVAL;
	failure_clear();
	if ((r = db_get(st->db, ST_CLIENT_TOTAL, &s)) < 0)
		return r;
	r = stmt_int(s, clients);
	return r == -ENOENT ? corrupt("table totals has no row") : r;
}

static int usage_from_row(struct db_stmt *s, void *out)
{
	struct store_usage *u = out;
	size_t id_len;

	memset(u, 0, sizeof(*u));
	if (!column_blob(s, 0, u->id, sizeof(u->id), &id_len) || id_len != WIRE_ID_SIZE ||
	    !column_str(s, 1, u->name, sizeof(u->name), false) || db_column_int(s, 2) < 0 || db_column_int(s, 3) < 0)
		return corrupt("malformed row in table clients");
	u->stored_bytes = (uint64_t)db_column_int(s, 2);
	u->stored_files = (uint64_t)db_column_int(s, 3);
	u->kept_aside = db_column_int(s, 4);
	u->bad_paddings = db_column_int(s, 5);
	return 0;
}

struct each_usage {
	store_usage_fn fn;
	void *ctx;
};

static int each_usage(void *row, void *ctx)
{
	struct each_usage *e = ctx;

	return e->fn(row, e->ctx);
}

/* A listing counts as it goes: efctl's, never a request's. */
int store_each_usage(struct store *st, store_usage_fn fn, void *ctx)
{
	struct each_usage e = {fn, ctx};
	struct store_usage u;
	struct db_stmt *s = NULL;
	int r;

	if (!st || !fn)
		return -EINVAL;
	failure_clear();
	if ((r = db_get(st->db, ST_EACH_USAGE, &s)) < 0)
		return r;
	return iterate(s, usage_from_row, &u, sizeof(u), each_usage, &e);
}

struct source_row {
	char source[STORE_SOURCE_SIZE];
	long long registrations;
};

static int source_from_row(struct db_stmt *s, void *out)
{
	struct source_row *row = out;

	if (!column_str(s, 0, row->source, sizeof(row->source), false))
		return corrupt("malformed row in table registrations");
	row->registrations = db_column_int(s, 1);
	return 0;
}

struct each_source {
	store_source_fn fn;
	void *ctx;
};

static int each_source(void *row, void *ctx)
{
	struct each_source *e = ctx;
	struct source_row *sr = row;

	return e->fn(sr->source, sr->registrations, e->ctx);
}

int store_each_source(struct store *st, store_source_fn fn, void *ctx)
{
	struct each_source e = {fn, ctx};
	struct source_row row;
	struct db_stmt *s = NULL;
	int r;

	if (!st || !fn)
		return -EINVAL;
	failure_clear();
	if ((r = db_get(st->db, ST_EACH_SOURCE, &s)) < 0)
		return r;
	return iterate(s, source_from_row, &row, sizeof(row), each_source, &e);
}

/* A client row of ST_COPY_CLIENTS, with when it registered. */
struct copy_client {
	struct store_client c;
	char registered[STORE_TIME_SIZE];
};

static int copy_client_from_row(struct db_stmt *s, void *out)
{
	struct copy_client *cc = out;
	int r;

	if ((r = client_from_row(s, &cc->c)) < 0)
		return r;
	return column_str(s, 7, cc->registered, sizeof(cc->registered), true)
	           ? 0
	           : corrupt("malformed row in table clients");
}

/* Run a bound insert of store_copy: 0 or a negative errno. */
static int copy_insert(struct db_stmt *s, long long *count)
{
	long long n = stmt_exec(s);

	if (n < 0)
		return (int)n;
	(*count)++;
	return 0;
}

static int copy_clients(struct store *from, struct store *to, struct store_copied *n)
{
	struct db_stmt *s = NULL, *ins = NULL;
	struct copy_client cc;
	int step, r = 0;

	if ((r = db_get(from->db, ST_COPY_CLIENTS, &s)) < 0)
		return r;
	while ((step = db_step(s)) == DB_ROW) {
		if ((r = copy_client_from_row(s, &cc)) < 0 || (r = db_get(to->db, ST_COPY_CLIENT, &ins)) < 0)
			break;
		db_bind_blob(ins, 1, cc.c.id, WIRE_ID_SIZE);
		db_bind_text(ins, 2, cc.c.name);
		if (cc.c.public_key_len)
			db_bind_blob(ins, 3, cc.c.public_key, cc.c.public_key_len);
		if (cc.c.aes_key_len)
			db_bind_blob(ins, 4, cc.c.aes_key, cc.c.aes_key_len);
		db_bind_text(ins, 5, cc.c.last_seen);
		db_bind_text(ins, 6, cc.registered);
		if ((r = copy_insert(ins, &n->clients)) < 0 || (r = count_client(to, 1)) < 0)
			break;
	}
	if (r == 0 && step < 0)
		r = step;
	explicit_bzero(&cc, sizeof(cc));
	db_done(s);
	return r;
}

static int copy_files(struct store *from, struct store *to, struct store_copied *n)
{
	struct db_stmt *s = NULL, *ins = NULL;
	struct store_file f;
	int step, r = 0;

	if ((r = db_get(from->db, ST_EACH_FILE, &s)) < 0)
		return r;
	while ((step = db_step(s)) == DB_ROW) {
		if ((r = file_from_row(s, &f)) < 0 || (r = db_get(to->db, ST_COPY_FILE, &ins)) < 0)
			break;
		db_bind_blob(ins, 1, f.client_id, WIRE_ID_SIZE);
		db_bind_text(ins, 2, f.file_name);
		db_bind_text(ins, 3, f.path_name);
		db_bind_int(ins, 4, f.verified);
		db_bind_int(ins, 5, f.status);
		db_bind_int(ins, 6, (int64_t)f.size);
		db_bind_int(ins, 7, f.checksum);
		db_bind_int(ins, 8, f.attempts);
		db_bind_text(ins, 9, f.received);
		/* Not bound: NULL, nothing kept aside. */
		if (f.pending) {
			db_bind_text(ins, 10, f.pending_name);
			db_bind_int(ins, 11, (int64_t)f.pending_size);
			db_bind_int(ins, 12, f.pending_checksum);
			db_bind_text(ins, 13, f.pending_received);
		}
		if ((r = copy_insert(ins, &n->files)) < 0 || (r = account(to, f.client_id, f.path_name, NULL)) < 0)
			break;
	}
	if (r == 0 && step < 0)
		r = step;
	db_done(s);
	return r;
}

/* The rows of registrations or bad_paddings, each a text or id and a time. */
static int copy_times(struct store *from, struct store *to, enum stmt_id read, enum stmt_id write, bool by_id,
                      long long *count)
{
	struct db_stmt *s = NULL, *ins = NULL;
	char source[STORE_SOURCE_SIZE], at[STORE_TIME_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	size_t id_len = 0;
	int step, r = 0;

	if ((r = db_get(from->db, read, &s)) < 0)
		return r;
	while ((step = db_step(s)) == DB_ROW) {
		if ((by_id ? !column_blob(s, 0, id, sizeof(id), &id_len) || id_len != WIRE_ID_SIZE
		           : !column_str(s, 0, source, sizeof(source), false)) ||
		    !column_str(s, 1, at, sizeof(at), false)) {
			r = corrupt("malformed row in a table of the last hour's counts");
			break;
		}
		if ((r = db_get(to->db, write, &ins)) < 0)
			break;
		if (by_id)
			db_bind_blob(ins, 1, id, WIRE_ID_SIZE);
		else
			db_bind_text(ins, 1, source);
		db_bind_text(ins, 2, at);
		if ((r = copy_insert(ins, count)) < 0)
			break;
	}
	if (r == 0 && step < 0)
		r = step;
	db_done(s);
	return r;
}

int store_copy(struct store *from, struct store *to, struct store_copied *out)
{
	struct store_copied n = {0};
	struct db_stmt *s = NULL;
	long long clients = 0;
	int r;

	if (!from || !to || !out)
		return -EINVAL;
	failure_clear();
	if ((r = db_begin(to->db, NULL)) < 0)
		return r;
	if ((r = db_get(to->db, ST_CLIENT_TOTAL, &s)) < 0 || (r = stmt_int(s, &clients)) < 0)
		goto rollback;
	if (clients != 0) {
		r = -EEXIST;
		goto rollback;
	}
	if ((r = copy_clients(from, to, &n)) < 0 || (r = copy_files(from, to, &n)) < 0 ||
	    (r = copy_times(from, to, ST_COPY_REGISTRATIONS, ST_COPY_REGISTRATION, false, &n.registrations)) < 0 ||
	    (r = copy_times(from, to, ST_COPY_BAD_PADDINGS, ST_COPY_BAD_PADDING, true, &n.bad_paddings)) < 0)
		goto rollback;
	if ((r = db_commit(to->db)) < 0)
		return r;
	*out = n;
	return 0;

rollback:
	db_rollback(to->db);
	return r;
}

int store_checkpoint(struct store *st)
{
	if (!st)
		return -EINVAL;
	failure_clear();
	return st->db->ops->checkpoint(st->db);
}

int store_integrity_check(struct store *st)
{
	if (!st)
		return -EINVAL;
	failure_clear();
	return st->db->ops->check(st->db);
}
