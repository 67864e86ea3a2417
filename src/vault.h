/*
 * The file vault: where received files live (efserver-protocol(7), "What the
 * server keeps"), STATE_DIR/files/<client id hex>/<base name>, and where a
 * new upload of a verified file waits for its confirmation,
 * STATE_DIR/pending/<client id hex>/<token>. A file is written unnamed in
 * tmp/, fsynced, and only then linked to its name, so no reader ever sees a
 * partial file and a dropped connection leaves nothing behind, not even a
 * client directory.
 */
#ifndef EF_VAULT_H
#define EF_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define VAULT_FILES_DIR   "files"
#define VAULT_TMP_DIR     "tmp"
#define VAULT_PENDING_DIR "pending"
/*
 * Names in tmp/ that a live or dead session may leave:
 * upload-<host>-<pid>-<random>, so that on a state directory several hosts
 * share, each judges only its own (efserver(8), "Running on several hosts").
 */
#define VAULT_TMP_PREFIX "upload-"
/* The host in those names: gethostname's, at most 64 bytes, each byte outside [A-Za-z0-9.-] as '_'. */
#define VAULT_HOST_SIZE 65
/* A kept-aside copy's name: 32 random lowercase hex digits, a fresh one per upload, never reused. */
#define VAULT_TOKEN_LEN  32
#define VAULT_TOKEN_SIZE (VAULT_TOKEN_LEN + 1)

/* The two trees of client directories. */
enum vault_area {
	VAULT_FILES,   /* files/<hex>/<base>: the files under their names */
	VAULT_PENDING, /* pending/<hex>/<token>: kept-aside copies */
};

struct vault;
struct vault_file;
struct seal_key;

/*
 * Open STATE_DIR (which must exist) and create files/, tmp/ and pending/ in
 * it (0700) if needed; -EROFS or -EACCES when they cannot be written.
 */
int vault_open(const char *state_dir, struct vault **out);
/*
 * The same for tools run by another user (efctl as root): create nothing,
 * -ENOENT if files/ or tmp/ is missing; a missing pending/ holds nothing.
 */
int vault_open_existing(const char *state_dir, struct vault **out);
void vault_close(struct vault *v);
/* This host's name as tmp/ names carry it; vault_host: the one a vault was opened with. */
void vault_host_name(char out[VAULT_HOST_SIZE]);
const char *vault_host(const struct vault *v);
/*
 * From now on, files are sealed under key as they are written (seal.h);
 * the key must outlive the vault. NULL: stored as received.
 */
void vault_set_storage_key(struct vault *v, const struct seal_key *key);

/* "files/<hex>/<base>" relative to the state directory. -ENAMETOOLONG if it does not fit. */
int vault_path_name(const uint8_t id[WIRE_ID_SIZE], const char *base, char *out, size_t out_size);

/* "pending/<hex>/<token>" relative to the state directory. -ENAMETOOLONG if it does not fit. */
int vault_pending_path(const uint8_t id[WIRE_ID_SIZE], const char *token, char *out, size_t out_size);

/* A fresh token for a kept-aside copy, and whether a string is one. */
void vault_new_token(char out[VAULT_TOKEN_SIZE]);
bool vault_token_ok(const char *token);

/* Start a file: unnamed in tmp/ (or named upload-<host>-<pid>-... where the file system makes no unnamed files). */
int vault_create(struct vault *v, struct vault_file **out);
int vault_write(struct vault_file *f, const void *buf, size_t len);
/*
 * Complete the content (the last sealed segment) and fsync it: the slow part
 * of publication, which callers do before taking any lock.
 */
int vault_flush(struct vault_file *f);
/*
 * vault_flush if not done, then give the file its name files/<hex>/<base>
 * atomically (replacing an earlier copy), making the client's directory if
 * needed, then fsync the directory. The file stays open until vault_discard.
 */
int vault_publish(struct vault_file *f, const uint8_t id[WIRE_ID_SIZE], const char *base);
/* The same, but kept aside as pending/<hex>/<token>: under no file's name. -EEXIST if the token is taken. */
int vault_publish_aside(struct vault_file *f, const uint8_t id[WIRE_ID_SIZE], const char *token);
/* Close the file; if it was never published, nothing of it remains. */
void vault_discard(struct vault_file *f);

/* Remove a client's stored file and fsync its directory; a missing file is not an error. */
int vault_remove(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *base);

/* Whether the kept-aside copy token of that client is on disk: 1, 0, or a negative errno. */
int vault_pending_exists(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *token);
/* Rename the kept-aside copy token over files/<hex>/<base> and fsync the directory. */
int vault_promote(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *token, const char *base);
/* Remove a kept-aside copy; a missing one is not an error. */
int vault_remove_pending(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *token);

/*
 * Remove a client's directory in an area, with everything in it when
 * content is set (efctl); without, a directory that is not empty (a file
 * was published into it meanwhile) is left: -ENOTEMPTY. A missing one is
 * not an error.
 */
int vault_remove_dir(struct vault *v, enum vault_area area, const uint8_t id[WIRE_ID_SIZE], bool content);

/* Every client directory of an area, and whether it is empty; fn returns non-zero to stop. */
typedef int (*vault_dir_fn)(const uint8_t id[WIRE_ID_SIZE], bool empty, void *ctx);
int vault_each_client_dir(struct vault *v, enum vault_area area, vault_dir_fn fn, void *ctx);
/* How many client directories files/ holds. */
int vault_count_client_dirs(struct vault *v, long *count);
/*
 * For store_open's may_create (ctx: the vault): 0 when files/ holds no
 * client directory, else -EEXIST, since a database created now would
 * forget whose they are (efsession(8), FILES).
 */
int vault_refuse_new_store(void *vault);

/*
 * The bytes free to an unprivileged user on the file system of the state
 * directory (efsession(8), --min-free-space): 0, or a negative errno.
 */
int vault_free_space(struct vault *v, uint64_t *bytes);

/* Every kept-aside copy on disk; fn returns non-zero to stop. */
typedef int (*vault_pending_fn)(const uint8_t id[WIRE_ID_SIZE], const char *token, void *ctx);
int vault_each_pending(struct vault *v, vault_pending_fn fn, void *ctx);

/*
 * Every name in tmp/ left by a session of this host that is no longer
 * running (upload-<host>-<pid>-..., no such process here; also the
 * upload-<pid>-... of earlier versions), unlinked first when remove is set.
 * Another host's names are never judged: *elsewhere counts them.
 */
typedef int (*vault_name_fn)(const char *name, void *ctx);
int vault_each_leftover(struct vault *v, bool remove, vault_name_fn fn, void *ctx, long *elsewhere);

#endif
