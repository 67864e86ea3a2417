/*
 * Encryption at rest: sealed files open to exactly what was written, at
 * every size around a segment boundary, and every alteration (a flipped
 * bit anywhere, a cut, a swap, a wrong key) is refused with its own code.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "seal.h"

#include "tap.h"

#define SEG SEAL_SEGMENT_SIZE
#define REC (SEG + SEAL_TAG_SIZE)

static char root[256];

static int sink(void *ctx, const void *buf, size_t len)
{
	return write(*(int *)ctx, buf, len) == (ssize_t)len ? 0 : -EIO;
}

/* Seal len bytes of data, written in pieces of step bytes, into a new file at path. */
static int seal_to(const struct seal_key *k, const char *path, const uint8_t *data, size_t len, size_t step)
{
	struct seal_writer *w = NULL;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600), r;

	if (fd < 0)
		return -errno;
	r = seal_writer_new(k, sink, &fd, &w);
	for (size_t off = 0; r == 0 && off < len; off += step)
		r = seal_writer_write(w, data + off, len - off < step ? len - off : step);
	if (r == 0)
		r = seal_writer_finish(w);
	seal_writer_free(w);
	close(fd);
	return r;
}

/* Open path; 0 when every segment authenticates and the plaintext equals want (if given). */
static int open_from(const struct seal_key *k, const char *path, const uint8_t *want, size_t want_len)
{
	struct seal_reader *rd = NULL;
	const uint8_t *p;
	size_t n, got = 0;
	int fd = open(path, O_RDONLY), r;

	if (fd < 0)
		return -errno;
	r = seal_reader_new(k, fd, &rd);
	while (r == 0 && (r = seal_reader_next(rd, &p, &n)) == 1) {
		r = 0;
		if (want && (got + n > want_len || memcmp(want + got, p, n) != 0))
			r = -EDOM;
		got += n;
	}
	if (r == 0 && want && got != want_len)
		r = -EDOM;
	seal_reader_free(rd);
	close(fd);
	return r;
}

static void patch(const char *path, off_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || pwrite(fd, buf, len, off) != (ssize_t)len)
		abort();
	close(fd);
}

static void flip(const char *path, off_t off)
{
	uint8_t b;
	int fd = open(path, O_RDWR);

	if (fd < 0 || pread(fd, &b, 1, off) != 1)
		abort();
	b ^= 0x10;
	if (pwrite(fd, &b, 1, off) != 1)
		abort();
	close(fd);
}

static off_t size_of(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? sb.st_size : -1;
}

static struct seal_key *key_from(const char *name, const void *bytes, size_t len)
{
	struct seal_key *k = NULL;
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", root, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0400);
	if (fd < 0 || write(fd, bytes, len) != (ssize_t)len)
		abort();
	close(fd);
	return seal_key_load(path, &k) == 0 ? k : NULL;
}

int main(void)
{
	static const size_t sizes[] = {0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 17};
	const char *tmp = getenv("TMPDIR");
	char file[512], path[600];
	uint8_t raw[SEAL_KEY_SIZE + 1], *data, *rec;
	struct seal_key *k, *other, *k2 = NULL;
	size_t len = 3 * SEG + 17;
	int r, fd;

	crypto_init();
	snprintf(root, sizeof(root), "%s/efseal.XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(root))
		return 99;
	snprintf(file, sizeof(file), "%s/sealed", root);
	data = malloc(len);
	rec = malloc(REC);
	crypto_random(data, len);

	crypto_random(raw, sizeof(raw));
	k = key_from("key", raw, SEAL_KEY_SIZE);
	ok(k != NULL, "a 32-byte key file loads");
	raw[0] ^= 1;
	other = key_from("other", raw, SEAL_KEY_SIZE);
	snprintf(path, sizeof(path), "%s/short", root);
	ok(key_from("short", raw, SEAL_KEY_SIZE - 1) == NULL && seal_key_load(path, &k2) == -EMSGSIZE && !k2,
	   "a 31-byte key file is refused with -EMSGSIZE");
	snprintf(path, sizeof(path), "%s/long", root);
	ok(key_from("long", raw, SEAL_KEY_SIZE + 1) == NULL && seal_key_load(path, &k2) == -EMSGSIZE && !k2,
	   "a 33-byte key file is refused with -EMSGSIZE");
	snprintf(path, sizeof(path), "%s/none", root);
	ok(seal_key_load(path, &k2) == -ENOENT && !k2, "a missing key file is -ENOENT");

	unsetenv("CREDENTIALS_DIRECTORY");
	ok(seal_key_path(NULL, path, sizeof(path)) == -ENOKEY, "no option and no credentials: -ENOKEY");
	setenv("CREDENTIALS_DIRECTORY", root, 1);
	ok(seal_key_path(NULL, path, sizeof(path)) == -ENOKEY,
	   "a credentials directory without efserver-storage.key: -ENOKEY");
	snprintf(path, sizeof(path), "%s/" SEAL_CREDENTIAL, root);
	fd = open(path, O_WRONLY | O_CREAT, 0400);
	close(fd);
	ok(seal_key_path(NULL, path, sizeof(path)) == 0 && strstr(path, "/" SEAL_CREDENTIAL),
	   "the credential is found in $CREDENTIALS_DIRECTORY");
	ok(seal_key_path("/etc/k", path, sizeof(path)) == 0 && strcmp(path, "/etc/k") == 0,
	   "an explicit key file is used as given");

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ok(seal_to(k, file, data, sizes[i], 4096) == 0 && size_of(file) == (off_t)seal_sealed_size(sizes[i]) &&
		       open_from(k, file, data, sizes[i]) == 0,
		   "%zu bytes: sealed to the predicted size and opened to the same bytes", sizes[i]);
	}
	ok(seal_to(k, file, data, len, len) == 0 && open_from(k, file, data, len) == 0,
	   "written in one call, the same file opens");
	ok(memmem(data, 64, raw, 8) == NULL, "(sanity) the key bytes are not in the data");

	ok(seal_to(k, file, data, len, 1000) == 0 && open_from(other, file, NULL, 0) == -EKEYREJECTED,
	   "a wrong key is -EKEYREJECTED");
	flip(file, 20);
	ok(open_from(k, file, NULL, 0) == -EKEYREJECTED, "a flipped bit in the wrapped key is -EKEYREJECTED");
	seal_to(k, file, data, len, 1000);
	flip(file, 12);
	ok(open_from(k, file, NULL, 0) == -EBADMSG, "a flipped bit in the nonce prefix is -EBADMSG");
	seal_to(k, file, data, len, 1000);
	flip(file, 0);
	ok(open_from(k, file, NULL, 0) == -EPROTO, "a flipped bit in the magic is -EPROTO");
	seal_to(k, file, data, len, 1000);
	flip(file, 8);
	ok(open_from(k, file, NULL, 0) == -EBADMSG, "a changed segment size is -EBADMSG");
	seal_to(k, file, data, len, 1000);
	flip(file, SEAL_HEADER_SIZE + REC + 5);
	ok(open_from(k, file, NULL, 0) == -EBADMSG, "a flipped bit in the second segment is -EBADMSG");
	seal_to(k, file, data, len, 1000);
	flip(file, size_of(file) - 1);
	ok(open_from(k, file, NULL, 0) == -EBADMSG, "a flipped bit in the last tag is -EBADMSG");

	seal_to(k, file, data, len, 1000);
	ok(truncate(file, SEAL_HEADER_SIZE + 2 * REC) == 0 && open_from(k, file, NULL, 0) == -ENODATA,
	   "a file cut at a segment boundary is -ENODATA");
	seal_to(k, file, data, len, 1000);
	ok(truncate(file, size_of(file) - 1) == 0 && open_from(k, file, NULL, 0) == -EBADMSG,
	   "a file cut by one byte is -EBADMSG");
	ok(truncate(file, SEAL_HEADER_SIZE) == 0 && open_from(k, file, NULL, 0) == -ENODATA,
	   "a file cut after its header is -ENODATA");
	ok(truncate(file, 30) == 0 && open_from(k, file, NULL, 0) == -ENODATA, "a file cut in its header is -ENODATA");

	seal_to(k, file, data, len, 1000);
	fd = open(file, O_RDWR);
	if (pread(fd, rec, REC, SEAL_HEADER_SIZE) != REC)
		abort();
	uint8_t *rec2 = malloc(REC);
	if (pread(fd, rec2, REC, SEAL_HEADER_SIZE + REC) != REC)
		abort();
	close(fd);
	patch(file, SEAL_HEADER_SIZE, rec2, REC);
	patch(file, SEAL_HEADER_SIZE + REC, rec, REC);
	ok(open_from(k, file, NULL, 0) == -EBADMSG, "two swapped segments are -EBADMSG");
	free(rec2);

	seal_to(k, file, data, len, 1000);
	patch(file, size_of(file), rec, REC);
	ok(open_from(k, file, NULL, 0) == -EBADMSG, "a segment appended after the last is -EBADMSG");

	seal_to(k, file, data, 0, 1);
	ok(truncate(file, SEAL_HEADER_SIZE + SEAL_TAG_SIZE - 1) == 0 && open_from(k, file, NULL, 0) == -ENODATA,
	   "an empty file's lone tag cut short is -ENODATA");

	fd = open(file, O_WRONLY | O_TRUNC);
	ok(write(fd, "plain text, not sealed at all, long enough for a header......", 62) == 62 &&
	       open_from(k, file, NULL, 0) == -EPROTO,
	   "a plain file is -EPROTO");
	close(fd);

	ok(strstr(seal_strerror(-EKEYREJECTED), "wrong key") && strstr(seal_strerror(-EMSGSIZE), "32"),
	   "the messages say what is wrong");

	seal_key_free(k);
	seal_key_free(other);
	free(data);
	free(rec);
	snprintf(path, sizeof(path), "rm -rf '%s'", root);
	r = system(path);
	(void)r;
	return tap_done();
}
