/* Encryption at rest: the sealed file format of seal.h, streamed one segment at a time. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gcrypt.h>

#include "crypto.h"
#include "failure.h"
#include "io.h"
#include "seal.h"
#include "wire.h"

#define SEAL_MAGIC       "EFSEAL"
#define SEAL_MAGIC_SIZE  6
#define SEAL_VERSION     1
#define SEAL_PREFIX_SIZE 4
#define SEAL_WRAPPED     (SEAL_KEY_SIZE + 8) /* RFC 3394 adds one 64-bit block */
#define SEAL_NONCE_SIZE  12
/* A header may name another segment size; bound what a reader will allocate for it. */
#define SEAL_SEGMENT_MIN 1024u
#define SEAL_SEGMENT_MAX (1024u * 1024)

#define OFF_VERSION  6
#define OFF_RESERVED 7
#define OFF_SEGMENT  8
#define OFF_PREFIX   12
#define OFF_WRAPPED  16
_Static_assert(OFF_WRAPPED + SEAL_WRAPPED == SEAL_HEADER_SIZE, "header layout");

struct seal_key {
	uint8_t key[SEAL_KEY_SIZE + 1]; /* one byte more, to tell a longer file from a key */
};

struct seal_writer {
	gcry_cipher_hd_t gcm;
	seal_sink_fn sink;
	void *ctx;
	uint8_t header[SEAL_HEADER_SIZE];
	uint64_t segment;
	bool finished;
	size_t fill;
	uint8_t *buf; /* one segment and its tag */
};

struct seal_reader {
	gcry_cipher_hd_t gcm;
	int fd;
	uint8_t header[SEAL_HEADER_SIZE];
	uint32_t seg_size;
	uint64_t segment; /* the next one to read */
	bool done;
	size_t have;    /* bytes in rec: at most one segment, its tag and one byte beyond */
	uint8_t *rec;   /* ciphertext as read */
	uint8_t *plain; /* the segment decrypted */
};

int seal_key_path(const char *option, char *out, size_t out_size)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	int n;

	if (option)
		n = snprintf(out, out_size, "%s", option);
	else if (dir && *dir)
		n = snprintf(out, out_size, "%s/%s", dir, SEAL_CREDENTIAL);
	else
		return -ENOKEY;
	if (n < 0 || (size_t)n >= out_size)
		return -ENAMETOOLONG;
	/* Credentials the unit does not pass are simply absent from the directory. */
	if (!option && access(out, F_OK) < 0)
		return errno == ENOENT ? -ENOKEY : -errno;
	return 0;
}

int seal_key_load(const char *path, struct seal_key **out)
{
	struct seal_key *k;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	k = gcry_malloc_secure(sizeof(*k));
	if (!k) {
		close(fd);
		return -ENOMEM;
	}
	/* One byte more than a key, to tell a longer file from one. */
	n = io_read_full(fd, k->key, sizeof(k->key), -1);
	close(fd);
	if (n != SEAL_KEY_SIZE) {
		seal_key_free(k);
		return n < 0 ? (int)n : -EMSGSIZE;
	}
	*out = k;
	return 0;
}

void seal_key_free(struct seal_key *k)
{
	if (!k)
		return;
	crypto_wipe(k, sizeof(*k));
	gcry_free(k);
}

const char *seal_strerror(int r)
{
	switch (r) {
	case -ENOKEY:
		return "no storage key (give --storage-key-file, or pass the " SEAL_CREDENTIAL " credential)";
	case -EMSGSIZE:
		return "a storage key is exactly 32 raw bytes";
	case -EPROTO:
		return "not a file encrypted at rest (no EFSEAL header of a known version)";
	case -EKEYREJECTED:
		return "the storage key does not open this file (a wrong key, or an altered header)";
	case -EBADMSG:
		return "a segment failed authentication (altered, reordered or cut short)";
	case -ENODATA:
		return "the file was cut short";
	default:
		return failure_str(r);
	}
}

uint64_t seal_sealed_size(uint64_t plain_size)
{
	uint64_t segments = plain_size == 0 ? 1 : (plain_size - 1) / SEAL_SEGMENT_SIZE + 1;

	if (plain_size > UINT64_MAX - SEAL_HEADER_SIZE - segments * SEAL_TAG_SIZE)
		return UINT64_MAX;
	return SEAL_HEADER_SIZE + plain_size + segments * SEAL_TAG_SIZE;
}

/* A GCM handle, in secure memory, keyed with the file key. */
static int gcm_open(const uint8_t *file_key, gcry_cipher_hd_t *out)
{
	gcry_cipher_hd_t hd;
	gcry_error_t err;

	err = gcry_cipher_open(&hd, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_GCM, GCRY_CIPHER_SECURE);
	if (err)
		return crypto_error(err);
	err = gcry_cipher_setkey(hd, file_key, SEAL_KEY_SIZE);
	if (err) {
		gcry_cipher_close(hd);
		return crypto_error(err);
	}
	*out = hd;
	return 0;
}

/* Wrap (encrypt) or unwrap the file key under the storage key: RFC 3394, with its integrity check. */
static int key_wrap(const struct seal_key *k, bool wrap, const uint8_t *in, uint8_t *out)
{
	gcry_cipher_hd_t hd;
	gcry_error_t err;

	err = gcry_cipher_open(&hd, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_AESWRAP, GCRY_CIPHER_SECURE);
	if (err)
		return crypto_error(err);
	err = gcry_cipher_setkey(hd, k->key, SEAL_KEY_SIZE);
	if (!err)
		err = wrap ? gcry_cipher_encrypt(hd, out, SEAL_WRAPPED, in, SEAL_KEY_SIZE)
		           : gcry_cipher_decrypt(hd, out, SEAL_KEY_SIZE, in, SEAL_WRAPPED);
	gcry_cipher_close(hd);
	if (gcry_err_code(err) == GPG_ERR_CHECKSUM)
		return -EKEYREJECTED;
	return err ? crypto_error(err) : 0;
}

/* Set up segment i: nonce = prefix || i, additional data = header || last. */
static int segment_start(gcry_cipher_hd_t hd, const uint8_t header[SEAL_HEADER_SIZE], uint64_t i, bool last)
{
	uint8_t nonce[SEAL_NONCE_SIZE], flag = last ? 1 : 0;
	gcry_error_t err;

	memcpy(nonce, header + OFF_PREFIX, SEAL_PREFIX_SIZE);
	for (int b = 0; b < 8; b++)
		nonce[SEAL_PREFIX_SIZE + b] = (uint8_t)(i >> (56 - 8 * b));
	err = gcry_cipher_setiv(hd, nonce, sizeof(nonce));
	if (!err)
		err = gcry_cipher_authenticate(hd, header, SEAL_HEADER_SIZE);
	if (!err)
		err = gcry_cipher_authenticate(hd, &flag, 1);
	/* Each segment is one encrypt or decrypt call, so it is also the final one of its message. */
	if (!err)
		err = gcry_cipher_final(hd);
	return err ? crypto_error(err) : 0;
}

/* A file key lives in secure memory and is wiped before it is freed. */
static void free_file_key(uint8_t *file_key)
{
	if (!file_key)
		return;
	crypto_wipe(file_key, SEAL_KEY_SIZE);
	gcry_free(file_key);
}

int seal_writer_new(const struct seal_key *k, seal_sink_fn sink, void *ctx, struct seal_writer **out)
{
	struct seal_writer *w;
	uint8_t *file_key;
	int r;

	failure_clear();
	if (!k || !sink || !out)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	file_key = gcry_malloc_secure(SEAL_KEY_SIZE);
	if (!w || !file_key || !(w->buf = malloc(SEAL_SEGMENT_SIZE + SEAL_TAG_SIZE))) {
		r = -ENOMEM;
		goto fail;
	}
	w->sink = sink;
	w->ctx = ctx;
	gcry_randomize(file_key, SEAL_KEY_SIZE, GCRY_VERY_STRONG_RANDOM);
	memcpy(w->header, SEAL_MAGIC, SEAL_MAGIC_SIZE);
	w->header[OFF_VERSION] = SEAL_VERSION;
	w->header[OFF_RESERVED] = 0;
	wire_put_u32(w->header + OFF_SEGMENT, SEAL_SEGMENT_SIZE);
	gcry_create_nonce(w->header + OFF_PREFIX, SEAL_PREFIX_SIZE);
	if ((r = key_wrap(k, true, file_key, w->header + OFF_WRAPPED)) < 0 || (r = gcm_open(file_key, &w->gcm)) < 0)
		goto fail;
	if ((r = sink(ctx, w->header, SEAL_HEADER_SIZE)) < 0)
		goto fail;
	free_file_key(file_key);
	*out = w;
	return 0;
fail:
	free_file_key(file_key);
	seal_writer_free(w);
	return r;
}

static int seal_segment(struct seal_writer *w, bool last)
{
	gcry_error_t err;
	int r;

	if ((r = segment_start(w->gcm, w->header, w->segment, last)) < 0)
		return r;
	err = gcry_cipher_encrypt(w->gcm, w->buf, w->fill, NULL, 0);
	if (!err)
		err = gcry_cipher_gettag(w->gcm, w->buf + w->fill, SEAL_TAG_SIZE);
	if (err)
		return crypto_error(err);
	if ((r = w->sink(w->ctx, w->buf, w->fill + SEAL_TAG_SIZE)) < 0)
		return r;
	w->segment++;
	w->fill = 0;
	return 0;
}

int seal_writer_write(struct seal_writer *w, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t n;
	int r;

	failure_clear();
	if (w->finished)
		return -EINVAL;
	while (len > 0) {
		/* A full segment is sealed only once more data shows it is not the last. */
		if (w->fill == SEAL_SEGMENT_SIZE && (r = seal_segment(w, false)) < 0)
			return r;
		n = SEAL_SEGMENT_SIZE - w->fill;
		if (n > len)
			n = len;
		memcpy(w->buf + w->fill, p, n);
		w->fill += n;
		p += n;
		len -= n;
	}
	return 0;
}

int seal_writer_finish(struct seal_writer *w)
{
	int r;

	failure_clear();
	if (w->finished)
		return 0;
	r = seal_segment(w, true);
	w->finished = r == 0;
	return r;
}

void seal_writer_free(struct seal_writer *w)
{
	if (!w)
		return;
	if (w->gcm)
		gcry_cipher_close(w->gcm);
	if (w->buf) {
		/* Plaintext of a received file. */
		crypto_wipe(w->buf, SEAL_SEGMENT_SIZE + SEAL_TAG_SIZE);
		free(w->buf);
	}
	free(w);
}

int seal_reader_new(const struct seal_key *k, int fd, struct seal_reader **out)
{
	struct seal_reader *rd;
	uint8_t *file_key = NULL;
	ssize_t n;
	int r;

	failure_clear();
	if (!k || !out)
		return -EINVAL;
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->fd = fd;
	n = io_read_full(fd, rd->header, SEAL_HEADER_SIZE, -1);
	if (n < 0) {
		r = (int)n;
		goto fail;
	}
	if ((size_t)n >= SEAL_MAGIC_SIZE + 1 &&
	    (memcmp(rd->header, SEAL_MAGIC, SEAL_MAGIC_SIZE) != 0 || rd->header[OFF_VERSION] != SEAL_VERSION)) {
		r = -EPROTO;
		goto fail;
	}
	if (n < SEAL_HEADER_SIZE) {
		r = n < SEAL_MAGIC_SIZE + 1 ? -EPROTO : -ENODATA;
		goto fail;
	}
	rd->seg_size = wire_get_u32(rd->header + OFF_SEGMENT);
	if (rd->header[OFF_RESERVED] != 0 || rd->seg_size < SEAL_SEGMENT_MIN || rd->seg_size > SEAL_SEGMENT_MAX) {
		r = -EPROTO;
		goto fail;
	}
	file_key = gcry_malloc_secure(SEAL_KEY_SIZE);
	rd->rec = malloc(rd->seg_size + SEAL_TAG_SIZE + 1);
	rd->plain = malloc(rd->seg_size);
	if (!file_key || !rd->rec || !rd->plain) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = key_wrap(k, false, rd->header + OFF_WRAPPED, file_key)) < 0 || (r = gcm_open(file_key, &rd->gcm)) < 0)
		goto fail;
	free_file_key(file_key);
	*out = rd;
	return 0;
fail:
	free_file_key(file_key);
	seal_reader_free(rd);
	return r;
}

/* Decrypt and authenticate rec[0..len) as segment i into plain. */
static int open_segment(struct seal_reader *rd, size_t len, uint64_t i, bool last)
{
	size_t clen = len - SEAL_TAG_SIZE;
	gcry_error_t err;
	int r;

	if ((r = segment_start(rd->gcm, rd->header, i, last)) < 0)
		return r;
	err = gcry_cipher_decrypt(rd->gcm, rd->plain, rd->seg_size, rd->rec, clen);
	if (!err)
		err = gcry_cipher_checktag(rd->gcm, rd->rec + clen, SEAL_TAG_SIZE);
	if (gcry_err_code(err) == GPG_ERR_CHECKSUM)
		return -EBADMSG;
	return err ? crypto_error(err) : 0;
}

int seal_reader_next(struct seal_reader *rd, const uint8_t **data, size_t *len)
{
	const size_t full = rd->seg_size + SEAL_TAG_SIZE;
	size_t rec_len;
	ssize_t n;
	bool last;
	int r;

	failure_clear();
	if (rd->done)
		return 0;
	/* Read one byte past a full segment: only the end of the file makes a segment the last. */
	n = io_read_full(rd->fd, rd->rec + rd->have, full + 1 - rd->have, -1);
	if (n < 0)
		return (int)n;
	rd->have += (size_t)n;
	last = rd->have <= full;
	rec_len = last ? rd->have : full;
	if (rec_len < SEAL_TAG_SIZE)
		return -ENODATA;
	r = open_segment(rd, rec_len, rd->segment, last);
	/* A last segment that authenticates as a middle one: the file was cut at a segment boundary. */
	if (r == -EBADMSG && last && rec_len == full && open_segment(rd, rec_len, rd->segment, false) == 0)
		r = -ENODATA;
	if (r < 0)
		return r;
	*data = rd->plain;
	*len = rec_len - SEAL_TAG_SIZE;
	rd->segment++;
	if (last) {
		rd->done = true;
		rd->have = 0;
	} else {
		rd->rec[0] = rd->rec[full];
		rd->have = 1;
	}
	return 1;
}

uint64_t seal_reader_segment(const struct seal_reader *rd)
{
	return rd->segment;
}

void seal_reader_free(struct seal_reader *rd)
{
	if (!rd)
		return;
	if (rd->gcm)
		gcry_cipher_close(rd->gcm);
	free(rd->rec);
	if (rd->plain) {
		crypto_wipe(rd->plain, rd->seg_size);
		free(rd->plain);
	}
	free(rd);
}
