/*
 * Encryption at rest: a stored file sealed under its own random key, that
 * key wrapped by the server's storage key. The plaintext is cut into
 * fixed-size segments, each AES-256-GCM with the segment's number in its
 * nonce and the whole header plus a last-segment flag as additional data,
 * so a changed bit, a swapped or dropped segment, or a cut-off end fails
 * authentication. Memory is one segment whatever the file size.
 *
 * Layout (efctl(8), ENCRYPTION AT REST):
 *   header, SEAL_HEADER_SIZE bytes:
 *     0  "EFSEAL"        magic
 *     6  1               version
 *     7  0               reserved, must be zero
 *     8  u32 LE          segment size (plaintext bytes per segment)
 *     12 4 bytes         random nonce prefix
 *     16 40 bytes        file key, AES-256 key wrap (RFC 3394) under the storage key
 *   then segments: ciphertext (segment size bytes, the last one 0..segment
 *   size) followed by its 16-byte GCM tag. An empty file is one empty last
 *   segment. Segment i: nonce = prefix || i (u64 big-endian), additional
 *   data = header || (1 if last, else 0).
 */
#ifndef EF_SEAL_H
#define EF_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_SIZE     32
#define SEAL_SEGMENT_SIZE (64u * 1024)
#define SEAL_HEADER_SIZE  56
#define SEAL_TAG_SIZE     16
/* The systemd credential name (LoadCredential=efserver-storage.key:...). */
#define SEAL_CREDENTIAL "efserver-storage.key"

struct seal_key;

/*
 * Where the storage key comes from: option (--storage-key-file) when given,
 * else $CREDENTIALS_DIRECTORY/efserver-storage.key when systemd passes that
 * credential. -ENOKEY when neither, -ENAMETOOLONG when it does not fit.
 */
int seal_key_path(const char *option, char *out, size_t out_size);
/* Exactly SEAL_KEY_SIZE raw bytes from a regular file, kept in secure memory; -EMSGSIZE for any other size. */
int seal_key_load(const char *path, struct seal_key **out);
void seal_key_free(struct seal_key *k);

/* A message for the codes seal functions return; for the others, failure_str() (failure.h). */
const char *seal_strerror(int r);

/* Bytes on disk for a plaintext of that many bytes; UINT64_MAX on overflow. */
uint64_t seal_sealed_size(uint64_t plain_size);

/* Where a writer's sealed bytes go: 0 or a negative errno. */
typedef int (*seal_sink_fn)(void *ctx, const void *buf, size_t len);

struct seal_writer;
/* Draw a file key and write the header to the sink. */
int seal_writer_new(const struct seal_key *k, seal_sink_fn sink, void *ctx, struct seal_writer **out);
int seal_writer_write(struct seal_writer *w, const void *buf, size_t len);
/* Seal what is buffered as the last segment (once; again is a no-op); nothing may be written after. */
int seal_writer_finish(struct seal_writer *w);
void seal_writer_free(struct seal_writer *w);

struct seal_reader;
/*
 * Read and check the header from fd: -EPROTO when it is not a sealed file
 * of a known version, -EKEYREJECTED when the storage key does not unwrap
 * its file key (a wrong key, or an altered header), -ENODATA when the file
 * ends inside the header.
 */
int seal_reader_new(const struct seal_key *k, int fd, struct seal_reader **out);
/*
 * The next segment's plaintext, authenticated: 1 with *data and *len
 * (valid until the next call), 0 once the last segment has been returned,
 * -EBADMSG when a segment fails authentication (altered, swapped, or data
 * after the last segment), -ENODATA when the file was cut short.
 */
int seal_reader_next(struct seal_reader *r, const uint8_t **data, size_t *len);
/* For messages: the number (from 0) of the segment that failed, or of the next one. */
uint64_t seal_reader_segment(const struct seal_reader *r);
void seal_reader_free(struct seal_reader *r);

#endif
