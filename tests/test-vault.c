/* The file vault: nothing is visible before publication, publication is atomic, nothing is left by a discard. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "seal.h"
#include "vault.h"

#include "tap.h"

static const uint8_t id[16] = {0xde, 0xad, 0xbe, 0xef, 0, 1, 0x42, 3, 0x84, 5, 6, 7, 8, 9, 10, 11};
static char root[256];

static int count_dir(const uint8_t *dir_id, bool empty, void *ctx)
{
	(void)dir_id;
	((int *)ctx)[empty ? 1 : 0]++;
	return 0;
}

static int count_name(const char *name, void *ctx)
{
	(void)name;
	(*(int *)ctx)++;
	return 0;
}

static int entries(const char *rel)
{
	char path[600];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	if (!(dir = opendir(path)))
		return -1;
	while ((d = readdir(dir)))
		if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
			n++;
	closedir(dir);
	return n;
}

static int read_file(const char *rel, char *buf, size_t cap, mode_t *mode)
{
	char path[600];
	struct stat st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	if ((fd = open(path, O_RDONLY)) < 0)
		return -1;
	fstat(fd, &st);
	*mode = st.st_mode & 07777;
	n = read(fd, buf, cap);
	close(fd);
	return (int)n;
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	char path[600], buf[64], rel[512];
	struct vault *v = NULL;
	struct vault_file *f = NULL;
	struct stat st;
	mode_t mode = 0;
	uint8_t *big;
	int r;

	crypto_init();
	snprintf(root, sizeof(root), "%s/efvault.XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(root))
		return 99;
	umask(022);

	snprintf(path, sizeof(path), "%s/missing", root);
	ok(vault_open(path, &v) == -ENOENT && v == NULL, "a missing state directory is -ENOENT and nothing is created");
	ok(stat(path, &st) < 0, "the missing state directory was not created");

	ok(vault_open(root, &v) == 0, "the vault opens in an existing state directory");
	snprintf(path, sizeof(path), "%s/files", root);
	ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0700, "files/ is created, mode 0700");
	snprintf(path, sizeof(path), "%s/tmp", root);
	ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0700, "tmp/ is created, mode 0700");

	ok(vault_path_name(id, "a.txt", rel, sizeof(rel)) == 0 &&
	       strcmp(rel, "files/deadbeef000142038405060708090a0b/a.txt") == 0,
	   "the path name is files/<lowercase hex id>/<base name>");
	ok(vault_path_name(id, "a.txt", rel, 20) == -ENAMETOOLONG, "a path name that does not fit is refused");

	ok(vault_create(v, id, &f) == 0, "a file is started for a client");
	snprintf(path, sizeof(path), "%s/files/deadbeef000142038405060708090a0b", root);
	ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0700, "the client's directory is created, mode 0700");
	ok(vault_write(f, "hello", 5) == 0, "content is written");
	is_int(entries("files/deadbeef000142038405060708090a0b"), 0, "before publication no file is visible");
	ok(vault_publish(f, "a.txt") == 0, "the file is published");
	vault_discard(f);
	ok(read_file("files/deadbeef000142038405060708090a0b/a.txt", buf, sizeof(buf), &mode) == 5 &&
	       memcmp(buf, "hello", 5) == 0 && mode == 0600,
	   "the published file holds its content, mode 0600 despite umask 022");

	ok(vault_create(v, id, &f) == 0 && vault_write(f, "second copy", 11) == 0,
	   "a second upload of a.txt is written");
	ok(read_file("files/deadbeef000142038405060708090a0b/a.txt", buf, sizeof(buf), &mode) == 5,
	   "until published, readers still see the first copy");
	ok(vault_publish(f, "a.txt") == 0, "the second copy is published over the first");
	vault_discard(f);
	ok(read_file("files/deadbeef000142038405060708090a0b/a.txt", buf, sizeof(buf), &mode) == 11 &&
	       memcmp(buf, "second copy", 11) == 0,
	   "the replacement is complete");
	is_int(entries("tmp"), 0, "replacing leaves nothing in tmp/");
	is_int(entries("files/deadbeef000142038405060708090a0b"), 1, "replacing leaves exactly one file");

	ok(vault_create(v, id, &f) == 0 && vault_write(f, "dropped", 7) == 0,
	   "an upload that will be dropped is written");
	vault_discard(f);
	is_int(entries("files/deadbeef000142038405060708090a0b"), 1, "a discarded upload leaves no file");
	is_int(entries("tmp"), 0, "a discarded upload leaves nothing in tmp/");

	ok(vault_create(v, id, &f) == 0, "a file for unsafe names is started");
	ok(vault_publish(f, "..") == -EINVAL, "publishing as '..' is refused");
	ok(vault_publish(f, ".") == -EINVAL, "publishing as '.' is refused");
	ok(vault_publish(f, "") == -EINVAL, "publishing under an empty name is refused");
	ok(vault_publish(f, "x/y") == -EINVAL, "publishing a name with a slash is refused");
	vault_discard(f);
	is_int(entries("files/deadbeef000142038405060708090a0b"), 1, "refused publications leave nothing");

	big = calloc(1, 9u << 20);
	ok(vault_create(v, id, &f) == 0 && vault_write(f, big, 9u << 20) == 0 && vault_write(f, big, 1) == 0 &&
	       vault_publish(f, "big") == 0,
	   "a 9 MiB file (past the writeback step) is written and published");
	vault_discard(f);
	free(big);
	snprintf(path, sizeof(path), "%s/files/deadbeef000142038405060708090a0b/big", root);
	ok(stat(path, &st) == 0 && st.st_size == (9 << 20) + 1, "it has all its bytes");

	ok(vault_create(v, id, &f) == 0 && vault_write(f, "flushed", 7) == 0 && vault_flush(f) == 0 &&
	       vault_flush(f) == 0,
	   "an upload is flushed to disk before publication, and flushing twice is harmless");
	is_int(entries("files/deadbeef000142038405060708090a0b"), 2, "a flushed file is still invisible");
	ok(vault_publish(f, "flushed") == 0, "a flushed file is published");
	vault_discard(f);
	ok(read_file("files/deadbeef000142038405060708090a0b/flushed", buf, sizeof(buf), &mode) == 7 &&
	       memcmp(buf, "flushed", 7) == 0,
	   "the flushed and published file holds its content");
	ok(vault_remove(v, id, "flushed") == 0, "and is removed again");

	ok(vault_remove(v, id, "a.txt") == 0, "a stored file is removed");
	is_int(entries("files/deadbeef000142038405060708090a0b"), 1, "only the other file remains");
	ok(vault_remove(v, id, "a.txt") == 0, "removing a missing file is not an error");
	ok(vault_remove(v, id, "..") == -EINVAL, "removing '..' is refused");
	r = vault_remove(v, (const uint8_t *)"0123456789abcdef", "x");
	ok(r == 0, "removing from a client without a directory is not an error");

	{
		static const uint8_t other[16] = {1, 2, 3};
		struct vault_file *g = NULL;
		struct seal_key *key = NULL;
		struct seal_reader *rd = NULL;
		const uint8_t *p;
		int counts[2] = {0, 0}, names = 0, fd;
		size_t n = 0;

		snprintf(path, sizeof(path), "%s/storage.key", root);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0400);
		ok(fd >= 0 && write(fd, "0123456789abcdef0123456789abcdef", 32) == 32 && close(fd) == 0 &&
		       seal_key_load(path, &key) == 0,
		   "a storage key is loaded");
		vault_set_storage_key(v, key);
		ok(vault_create(v, id, &f) == 0 && vault_write(f, "sealed", 6) == 0 && vault_publish(f, "s.txt") == 0,
		   "with a storage key, a file is written and published");
		vault_discard(f);
		snprintf(path, sizeof(path), "%s/files/deadbeef000142038405060708090a0b/s.txt", root);
		ok(stat(path, &st) == 0 && (uint64_t)st.st_size == seal_sealed_size(6), "it is stored sealed");
		fd = open(path, O_RDONLY);
		ok(seal_reader_new(key, fd, &rd) == 0 && seal_reader_next(rd, &p, &n) == 1 && n == 6 &&
		       memcmp(p, "sealed", 6) == 0 && seal_reader_next(rd, &p, &n) == 0,
		   "and opens to what was written");
		seal_reader_free(rd);
		close(fd);
		vault_set_storage_key(v, NULL);

		ok(vault_create(v, other, &f) == 0, "an upload holds a new client's empty directory");
		ok(vault_each_client_dir(v, count_dir, counts) == 0 && counts[0] == 1 && counts[1] == 1,
		   "client directories are listed, one with files and one empty");
		ok(vault_remove_dir(v, other, false, true) == -EBUSY, "a directory in use by an upload is left alone");
		ok(vault_create(v, other, &g) == 0, "a second upload shares the directory");
		vault_discard(g);
		vault_discard(f);
		ok(vault_remove_dir(v, other, false, true) == 0, "once idle, the empty directory is removed");
		ok(vault_create(v, other, &f) == 0 && vault_write(f, "x", 1) == 0 && vault_publish(f, "x") == 0,
		   "an upload after that recreates it");
		vault_discard(f);
		ok(vault_remove_dir(v, other, false, true) == -ENOTEMPTY,
		   "a directory with files is not removed as empty");
		ok(vault_remove_dir(v, other, true, false) == 0 && entries("files") == 1,
		   "with its content, it is removed");

		snprintf(path, sizeof(path), "%s/tmp/" VAULT_TMP_PREFIX "%d-00", root, (int)getpid());
		close(open(path, O_WRONLY | O_CREAT, 0600));
		snprintf(path, sizeof(path), "%s/tmp/" VAULT_TMP_PREFIX "2147483647-00", root);
		close(open(path, O_WRONLY | O_CREAT, 0600));
		snprintf(path, sizeof(path), "%s/tmp/unrelated", root);
		close(open(path, O_WRONLY | O_CREAT, 0600));
		ok(vault_each_leftover(v, false, count_name, &names) == 0 && names == 1 && entries("tmp") == 3,
		   "a leftover of a dead process is found, a live one's and other names are not");
		names = 0;
		ok(vault_each_leftover(v, true, count_name, &names) == 0 && names == 1 && entries("tmp") == 2,
		   "and removed on request");
		seal_key_free(key);
	}

	vault_close(v);
	snprintf(path, sizeof(path), "rm -rf '%s'", root);
	r = system(path);
	(void)r;
	return tap_done();
}
