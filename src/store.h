/*
 * The store: all shared state, in SQLite in the state directory or in
 * PostgreSQL (efserver-protocol(7), "What the server keeps"). The only
 * module, with its engines (db.h), that speaks SQL. Every write is one short
 * transaction; contention waits, never fails. Functions return 0 or a
 * negative errno-style code and do not log; when the database fails, its
 * own words are noted for the caller's log line (failure.h), a refusal
 * (-ENOENT, -EEXIST, -EPERM) notes nothing.
 */
#ifndef EF_STORE_H
#define EF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "der.h"
#include "wire.h"

#define STORE_SCHEMA_VERSION 3
#define STORE_DB_NAME        "efserver.db"
#define STORE_AES_MAX        32
#define STORE_PATH_MAX       512
/* A kept-aside copy's token: 32 hex digits and a NUL (the vault makes them). */
#define STORE_TOKEN_SIZE 33
/* A source address as efsession(8), Limits, writes it (an IPv6 /64 is the longest), and its NUL. */
#define STORE_SOURCE_SIZE 64

struct store;

struct store_client {
	uint8_t id[WIRE_ID_SIZE];
	char name[WIRE_NAME_SIZE];
	uint8_t public_key[DER_RSA_SPKI_MAX]; /* canonical SPKI DER */
	size_t public_key_len;                /* 0: none stored yet */
	uint8_t aes_key[STORE_AES_MAX];
	size_t aes_key_len; /* 0: none issued yet */
	char last_seen[32]; /* ISO 8601 UTC */
	/* What the database counts for the limits (efsession(8), Limits). */
	uint64_t stored_bytes; /* plaintext bytes of every copy, under a name or kept aside */
	uint64_t stored_files; /* names with a copy, under the name or kept aside */
};

/*
 * The limits of efsession(8) that span connections, decided by the store
 * inside the transaction that would pass them. 0: no limit.
 */
struct store_limits {
	uint64_t max_clients;            /* --max-clients */
	uint64_t registrations_per_hour; /* --registrations-per-hour, per source address */
	uint64_t client_quota;           /* --client-quota, bytes */
	uint64_t client_max_files;       /* --client-max-files */
	uint64_t max_bad_paddings;       /* --max-bad-paddings, per client and hour */
};

/* Which of them refused a request (-EDQUOT). */
enum store_limit {
	STORE_LIMIT_NONE = 0,
	STORE_LIMIT_MAX_CLIENTS,
	STORE_LIMIT_REGISTRATIONS_PER_HOUR,
	STORE_LIMIT_CLIENT_QUOTA,
	STORE_LIMIT_CLIENT_MAX_FILES,
	STORE_LIMIT_MAX_BAD_PADDINGS,
	STORE_LIMITS,
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
	/*
	 * A kept-aside copy (efserver-protocol(7), Uploads, resends and giving
	 * up): a new upload of a verified file, waiting for its confirmation
	 * while the fields above go on describing the verified copy.
	 */
	bool pending;
	char pending_name[STORE_TOKEN_SIZE]; /* its token */
	uint64_t pending_size;
	uint32_t pending_checksum;
	char pending_received[32];
};

/*
 * Asked before store_open creates the database or its schema: 0 lets it, a
 * negative errno refuses, and store_open returns that errno with what it
 * found noted (failure.h): the database missing, empty or without a schema.
 */
typedef int (*store_create_fn)(void *ctx);

/*
 * Open (creating if needed, and if may_create allows it when it is set)
 * STATE_DIR/efserver.db: busy timeout first, then WAL, synchronous FULL,
 * foreign keys, and the schema created or migrated by whichever process
 * gets there first. busy_timeout_ms <= 0 picks the default. -EPROTO for a
 * schema newer than this program knows.
 */
int store_open(const char *state_dir, int busy_timeout_ms, store_create_fn may_create, void *ctx, struct store **out);
/* Open read-only, for tools that must not create anything: -ENOENT when no efsession has created the schema. */
int store_open_readonly(const char *state_dir, int busy_timeout_ms, struct store **out);
/*
 * Either of them on the PostgreSQL database of url, a libpq URI
 * (postgresql://... or postgres://...), or with url NULL on SQLite in
 * state_dir. There the schema is created or migrated under an advisory
 * lock, and may_create is asked when there is none. -EPROTONOSUPPORT for a
 * URL when this program was built without PostgreSQL.
 */
int store_open_database(const char *url, const char *state_dir, int busy_timeout_ms, bool readonly,
                        store_create_fn may_create, void *ctx, struct store **out);
/* Whether database names a PostgreSQL database (a libpq URI) rather than anything else. */
bool store_is_url(const char *database);
void store_close(struct store *st);
/*
 * Move what the write-ahead log holds into the database file, for a tool
 * that copies the file alone (a session leaves it to the automatic
 * checkpoints). 0, or a negative errno (failure.h).
 */
int store_checkpoint(struct store *st);

/* Register a new client, counted against no limit. -EEXIST if the name is taken (or, improbably, the id). */
int store_register_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name);
/*
 * The same for a register request from source (efsession(8), Limits), in
 * one transaction: -EDQUOT with *refused set when lim's --max-clients or
 * --registrations-per-hour (from that source, over the last hour) would
 * be passed, else -EEXIST as above; registered, the registration is
 * counted for source, and those over an hour old are pruned.
 */
int store_register_from(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const char *source,
                        const struct store_limits *lim, enum store_limit *refused);
/*
 * The same with its public key (canonical SPKI) stored and pinned in the same
 * transaction, and no AES key: a client provisioned by efctl add-client.
 */
int store_add_client(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *name, const uint8_t *spki,
                     size_t spki_len);

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
 * decrypted with (*dropped says whether it was), the bad padding counted
 * for --max-bad-paddings (those over an hour old pruned), and last seen
 * updated.
 */
int store_drop_aes_key(struct store *st, const uint8_t id[WIRE_ID_SIZE], const uint8_t *aes, size_t aes_len,
                       bool *dropped);

/* The row of that client and path: 0, or -ENOENT. */
int store_get_file(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, struct store_file *out);

/*
 * Called inside a transaction, to change what is on disk with the row:
 * returning non-zero rolls the transaction back.
 */
typedef int (*store_publish_fn)(void *ctx);

/*
 * How the store reaches the files on disk from inside its transactions, so
 * that a row and its file change together and no other module speaks SQL.
 * Each operation says which of these it calls.
 */
struct store_disk {
	void *ctx;
	/* Whether the kept-aside copy token of client id is on disk: 1, 0, or a negative errno. */
	int (*pending_exists)(void *ctx, const uint8_t id[WIRE_ID_SIZE], const char *token);
	/* Make the received file visible: under its name, or (aside) kept aside as token. */
	int (*place)(void *ctx, bool aside, const char *token);
	/* Put the kept-aside copy token in place of the file under its name. */
	int (*promote)(void *ctx, const char *token);
	/* Remove the copy under the name (the give-up of a file never verified). */
	int (*remove)(void *ctx);
};

/*
 * Before the content of an upload of content_size (encrypted) bytes under
 * path_name is read (efsession(8), Limits): 0 when lim lets it in, as far
 * as the database can tell now, or -EDQUOT with *refused set: the client's
 * bad paddings over the last hour have reached --max-bad-paddings; what it
 * stores, plus content_size, minus the copy not yet verified that the
 * upload would replace, is above --client-quota; or the name is new and
 * the client has --client-max-files names with a copy. -ENOENT for an
 * unknown client. One statement, on indexes.
 */
int store_check_upload(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *path_name, uint64_t content_size,
                       const struct store_limits *lim, enum store_limit *refused);

/* What store_record_file did. */
struct store_recorded {
	long long attempts;             /* uploads of that file name so far, this one included */
	bool aside;                     /* kept aside: the verified copy stays under the name */
	char dropped[STORE_TOKEN_SIZE]; /* the kept-aside copy this one replaced, or "": remove it now */
	bool rolled_forward;            /* an interrupted confirmation was completed first */
};

/*
 * Record a received file and update last seen, in one transaction that
 * decides, from the row as it then is, where the file goes. Not verified
 * (or no row): in place, the row describing it (status stored, verified
 * false, attempts one more than before if the row had the same file name,
 * else 1). Verified: kept aside as token (a fresh one), the row going on
 * describing the verified copy but for the file name and attempts; a copy
 * kept aside before is dropped. disk->place is called inside the
 * transaction; disk->pending_exists may be. -ENOENT when the client is not
 * registered. -EDQUOT with *refused set, and nothing changed, when the
 * file would take the client above lim's --client-quota, or add a name
 * beyond its --client-max-files (lim NULL: no limit): another connection
 * of the client may have stored meanwhile.
 */
int store_record_file(struct store *st, const struct store_file *f, const char *token, const struct store_disk *disk,
                      const struct store_limits *lim, struct store_recorded *out, enum store_limit *refused);

/* The checksum verdicts of efserver-protocol(7): 1029/1104, 1030/1105, 1031/1106. */
enum store_verdict {
	STORE_CONFIRM,
	STORE_RESEND,
	STORE_GIVE_UP,
};

struct store_settled {
	enum {
		STORE_SETTLED_DONE,      /* a file not verified: verified, left for a resend, or given up */
		STORE_SETTLED_REPLACED,  /* confirmed: the kept-aside copy is now the verified one */
		STORE_SETTLED_DISCARDED, /* the kept-aside copy dropped: remove it now; the verified copy stays */
		STORE_SETTLED_NOTHING,   /* a verified file with nothing kept aside: nothing changed */
	} outcome;
	char dropped[STORE_TOKEN_SIZE];   /* STORE_SETTLED_DISCARDED: its token */
	bool rolled_forward;              /* an interrupted confirmation was completed first */
	char client_name[WIRE_NAME_SIZE]; /* the client's, for the log */
};

/*
 * A checksum verdict on the stored file of that client, path and file name,
 * in one transaction, with last seen: -ENOENT when there is none, when its
 * file name differs from the latest upload's, or (to confirm) when it was
 * given up. A verified file keeps its copy: a confirmation puts the
 * kept-aside copy in place (disk->promote), the other verdicts drop it, and
 * with nothing kept aside the request changes nothing. A file not verified:
 * a confirmation marks it verified, a resend changes nothing, a give-up
 * marks it failed and removes its copy (disk->remove).
 */
int store_settle_file(struct store *st, enum store_verdict verdict, const uint8_t id[WIRE_ID_SIZE],
                      const char *path_name, const char *file_name, const struct store_disk *disk,
                      struct store_settled *out);

/* Iteration for administration tools: the callback returns non-zero to stop. */
typedef int (*store_client_fn)(const struct store_client *c, void *ctx);
typedef int (*store_file_fn)(const struct store_file *f, void *ctx);
int store_each_client(struct store *st, store_client_fn fn, void *ctx);
/* id NULL: every client's files. */
int store_each_file(struct store *st, const uint8_t *id, store_file_fn fn, void *ctx);

/* How many file rows a client has, given-up files included (efctl's listings). */
int store_count_files(struct store *st, const uint8_t id[WIRE_ID_SIZE], long long *rows);

/* What a client uses of the limits (efctl usage). */
struct store_usage {
	uint8_t id[WIRE_ID_SIZE];
	char name[WIRE_NAME_SIZE];
	uint64_t stored_bytes;
	uint64_t stored_files;
	long long kept_aside;   /* kept-aside copies */
	long long bad_paddings; /* over the last hour */
};
typedef int (*store_usage_fn)(const struct store_usage *u, void *ctx);
/* Every client's usage, by name. */
int store_each_usage(struct store *st, store_usage_fn fn, void *ctx);
/* How many clients there are: the server-wide counter. */
int store_count_clients(struct store *st, long long *clients);
/* Registrations over the last hour, per source address, the most first. */
typedef int (*store_source_fn)(const char *source, long long registrations, void *ctx);
int store_each_source(struct store *st, store_source_fn fn, void *ctx);

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

/*
 * Rows whose kept-aside copy is no longer on disk: a crash came between the
 * rename of a confirmation and its commit. Each is completed in a
 * transaction of its own (efctl gc), then given to fn if fn is not NULL.
 */
int store_repair_files(struct store *st, const struct store_disk *disk, store_file_fn fn, void *ctx);

/* Whether a row names the kept-aside copy token of client id: 1, 0, or a negative errno. */
int store_pending_referenced(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *token);

/*
 * Remove a kept-aside copy no row names (efctl gc): remove is called inside
 * a transaction that found no row naming it, so a session keeping a copy
 * aside meanwhile (which names it in the same transaction that creates it)
 * is never robbed. -EBUSY when a row names it.
 */
int store_forget_pending(struct store *st, const uint8_t id[WIRE_ID_SIZE], const char *token, store_publish_fn remove,
                         void *ctx);

/* What store_copy copied. */
struct store_copied {
	long long clients, files, registrations, bad_paddings;
};

/*
 * Copy every row of from into to (efctl migrate), in one transaction of to,
 * which must hold no client (-EEXIST otherwise); the counters of to follow
 * from the rows. The rows are read outside any transaction of from: no
 * efsession may write to it meanwhile.
 */
int store_copy(struct store *from, struct store *to, struct store_copied *out);

/* The database's own checks (PRAGMA integrity_check, or the counters recounted): 0 when sound, -EIO otherwise. */
int store_integrity_check(struct store *st);

#endif
