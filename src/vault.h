/*
 * The file vault: where received files live (efserver-protocol(7), "What the
 * server keeps"), STATE_DIR/files/<client id hex>/<base name>. A file is
 * written unnamed, fsynced, and only then linked to its name, so no reader ever
 * sees a partial file and a dropped connection leaves nothing behind.
 */
#ifndef EF_VAULT_H
#define EF_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define VAULT_FILES_DIR "files"
#define VAULT_TMP_DIR   "tmp"
/* Names in tmp/ that a live or dead session may leave: upload-<pid>-<random>. */
#define VAULT_TMP_PREFIX "upload-"

struct vault;
struct vault_file;
struct seal_key;

/*
 * Open STATE_DIR (which must exist) and create files/ and tmp/ in it (0700)
 * if needed; -EROFS or -EACCES when they cannot be written.
 */
int vault_open(const char *state_dir, struct vault **out);
/* The same for tools run by another user (efctl as root): create nothing, -ENOENT if files/ or tmp/ is missing. */
int vault_open_existing(const char *state_dir, struct vault **out);
void vault_close(struct vault *v);
/*
 * From now on, files are sealed under key as they are written (seal.h);
 * the key must outlive the vault. NULL: stored as received.
 */
void vault_set_storage_key(struct vault *v, const struct seal_key *key);

/* "files/<hex>/<base>" relative to the state directory. -ENAMETOOLONG if it does not fit. */
int vault_path_name(const uint8_t id[WIRE_ID_SIZE], const char *base, char *out, size_t out_size);

/*
 * Start a file for that client: an unnamed file in its directory (created
 * 0700 if needed), which stays locked against efctl gc until vault_discard.
 */
int vault_create(struct vault *v, const uint8_t id[WIRE_ID_SIZE], struct vault_file **out);
int vault_write(struct vault_file *f, const void *buf, size_t len);
/*
 * Complete the content (the last sealed segment) and fsync it: the slow part
 * of publication, which callers do before taking any lock.
 */
int vault_flush(struct vault_file *f);
/*
 * vault_flush if not done, then give the file its name atomically (replacing
 * an earlier copy), then fsync the directory. The file stays open until
 * vault_discard.
 */
int vault_publish(struct vault_file *f, const char *base);
/* Close the file; if it was never published, nothing of it remains. */
void vault_discard(struct vault_file *f);

/* Remove a client's stored file and fsync its directory; a missing file is not an error. */
int vault_remove(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *base);

/*
 * For efctl. Remove a client's directory, with everything in it when
 * content is set (else -ENOTEMPTY if it holds anything); a missing one is
 * not an error. With if_idle, a directory a file is being written in is
 * left alone: -EBUSY.
 */
int vault_remove_dir(struct vault *v, const uint8_t id[WIRE_ID_SIZE], bool content, bool if_idle);

/* Every client directory under files/, and whether it is empty; fn returns non-zero to stop. */
typedef int (*vault_dir_fn)(const uint8_t id[WIRE_ID_SIZE], bool empty, void *ctx);
int vault_each_client_dir(struct vault *v, vault_dir_fn fn, void *ctx);

/*
 * Every name in tmp/ left by a session that is no longer running
 * (upload-<pid>-..., no such process), unlinked first when remove is set.
 */
typedef int (*vault_name_fn)(const char *name, void *ctx);
int vault_each_leftover(struct vault *v, bool remove, vault_name_fn fn, void *ctx);

#endif
