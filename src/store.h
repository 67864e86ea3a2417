/*
 * The store: all shared state, in SQLite (efserver-protocol(7), "What the
 * server keeps"). The only module that speaks SQL. Every write is one short
 * BEGIN IMMEDIATE transaction; contention waits on the busy timeout, never
 * fails. Functions return 0 or a negative errno-style code and do not log;
 * when the database fails, SQLite's own words are noted for the caller's
 * log line (failure.h), a refusal (-ENOENT, -EEXIST, -EPERM) notes nothing.
 */
#ifndef EF_STORE_H
#define EF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "der.h"
#include "wire.h"

#define STORE_SCHEMA_VERSION 1
#define STORE_DB_NAME        "efserver.db"
#define STORE_AES_MAX        32
#define STORE_PATH_MAX       512

struct store;

struct store_client {
	uint8_t id[WIRE_ID_SIZE];
	char name[WIRE_NAME_SIZE];
	uint8_t public_key[DER_RSA_SPKI_MAX]; /* canonical SPKI DER */
	size_t public_key_len;                /* 0: none stored yet */
	uint8_t aes_key[STORE_AES_MAX];
	size_t aes_key_len; /* 0: none issued yet */
	char last_seen[32]; /* ISO 8601 UTC */
	long long file_count;
};

enum store_file_status {
	STORE_FILE_STORED = 0, /* received, waiting for or past confirmation */
	STORE_FILE_FAILED = 1, /* given up with 1031/1106: no copy kept */
};

struct store_file {
	uint8_t client_id[WIRE_ID_SIZE];
	char file_name[WIRE_NAME_SIZE]; /* as sent, up to its NUL */
	char path_name[STORE_PATH_MAX]; /* relative to the state directory */
	bool verified;
	enum store_file_status status;
	uint64_t size;     /* plaintext bytes */
	uint32_t checksum; /* true checksum of the stored plaintext */
	long long attempts;
	char received[32]; /* ISO 8601 UTC */
};

/*
 * Open (creating if needed) STATE_DIR/efserver.db: busy timeout first, then
 * WAL, synchronous FULL, foreign keys, and the schema created or migrated
 * by whichever process gets there first. busy_timeout_ms <= 0 picks the
 * default. -EPROTO for a schema newer than this program knows.
 */
int store_open(const char *state_dir, int busy_timeout_ms, struct store **out);
/* Open read-only, for tools that must not create anything: -ENOENT when no efsession has created the schema. */
int store_open_readonly(const char *state_dir, int busy_timeout_ms, struct store **out);
void store_close(struct store *st);

/* Register a new client. -EEXIST if the name is taken (or, improbably, the id). */
int store_register_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name);

/* The client with that id: 0, or -ENOENT. */
int store_get_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], struct store_client *out);
int store_find_client_by_name(struct store *st, const char *name, struct store_client *out);

/* Update last seen of a known id; an unknown id is not an error. */
int store_touch(struct store *st, const uint8_t id[WIRE_ID_SIZE]);

/*
 * 1026/1101, before any RSA work (efserver-protocol(7), Cryptography): a
 * read of what store_set_keys decides, with the same answers. Its answer
 * may be stale by the time the keys are set; store_set_keys checks again.
 */
int store_check_keys(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                     size_t spki_len);

/*
 * 1026/1101, in one transaction: the id must be registered under name
 * (-ENOENT otherwise); the first public key is kept, a different one is
 * refused with -EPERM; then store the new AES key and update last seen.
 */
int store_set_keys(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                   size_t spki_len, const uint8_t *aes, size_t aes_len);

/* 1027: replace the AES key of a known id (-ENOENT otherwise), update last seen. */
int store_set_aes_key(struct store *st, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes, size_t aes_len);

/*
 * A bad padding (efserver-protocol(7), Cryptography), in one transaction:
 * the client's AES key destroyed if it is still aes, the key the upload was
 * decrypted with (*dropped says whether it was), and last seen updated.
 */
int store_drop_aes_key(struct store *st, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes, size_t aes_len,
                       bool *dropped);

/* The row of that client and path: 0, or -ENOENT. */
int store_get_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, struct store_file *out);

/*
 * Called inside the transaction that records a file, to make the file
 * visible on disk. Returning non-zero rolls the transaction back.
 */
typedef int (*store_publish_fn)(void *ctx);

/*
 * Record a received file (status stored, verified false, attempts one more
 * than before if the row had the same file name, else 1) and update last
 * seen, calling publish inside the transaction. *attempts receives the
 * new count.
 */
int store_record_file(struct store *st, const struct store_file *f, store_publish_fn publish, void *ctx,
                      long long *attempts);

/*
 * The stored file of that client, path and file name: -ENOENT when there is
 * none, when its file name differs, or (for mark_verified) when it was
 * given up. These also update last seen.
 */
int store_mark_verified(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, const char *file_name);
int store_check_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, const char *file_name);
/* 1031/1106: status failed, verified false; remove is called inside the transaction to delete the copy. */
int store_give_up(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, const char *file_name,
                  store_publish_fn remove, void *ctx);

/* Iteration for administration tools: the callback returns non-zero to stop. */
typedef int (*store_client_fn)(const struct store_client *c, void *ctx);
typedef int (*store_file_fn)(const struct store_file *f, void *ctx);
int store_each_client(struct store *st, store_client_fn fn, void *ctx);
/* id NULL: every client's files. */
int store_each_file(struct store *st, const uint8_t *id, store_file_fn fn, void *ctx);

/* Remove a client and, by the foreign key's cascade, its file rows: 0, or -ENOENT. */
int store_remove_client(struct store *st, const uint8_t id[WIRE_ID_SIZE]);

/*
 * Delete the row of a stored (not given-up) file once gone_check, called
 * inside the transaction, returns 0 to say its file is really gone; a
 * session replacing or giving up that file meanwhile holds the write lock,
 * so the check sees its outcome. -ENOENT when there is no such row.
 */
int store_forget_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name,
                      store_publish_fn gone_check, void *ctx);

/* PRAGMA integrity_check: 0 when "ok", -EIO otherwise. */
int store_integrity_check(struct store *st);

#endif
