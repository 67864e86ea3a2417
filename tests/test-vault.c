/*
 * The file vault: nothing is visible before publication, publication is
 * atomic, nothing is left by a discard, not even a client directory; a
 * kept-aside copy is under no file's name until it is promoted over one; a
 * client directory removed under a publisher is made again.
 */
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

static int count_pending(const uint8_t *dir_id, const char *token, void *ctx)
{
	(void)dir_id;
	(void)token;
	(*(int *)ctx)++;
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

	ok(vault_create(v, &f) == 0, "a file is started");
	ok(vault_write(f, "hello", 5) == 0, "content is written");
	snprintf(path, sizeof(path), "%s/files/deadbeef000142038405060708090a0b", root);
	ok(stat(path, &st) < 0 && errno == ENOENT, "before publication the client has no directory");
	is_int(entries("tmp"), 0, "nor any named file in tmp/ (O_TMPFILE)");
	ok(vault_publish(f, id, "a.txt") == 0, "the file is published");
	ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0700, "the client's directory is made then, mode 0700");
	vault_discard(f);
	ok(read_file("files/deadbeef000142038405060708090a0b/a.txt", buf, sizeof(buf), &mode) == 5 &&
	       memcmp(buf, "hello", 5) == 0 && mode == 0600,
	   "the published file holds its content, mode 0600 despite umask 022");

	ok(vault_create(v, &f) == 0 && vault_write(f, "second copy", 11) == 0, "a second upload of a.txt is written");
	ok(read_file("files/deadbeef000142038405060708090a0b/a.txt", buf, sizeof(buf), &mode) == 5,
	   "until published, readers still see the first copy");
	ok(vault_publish(f, id, "a.txt") == 0, "the second copy is published over the first");
	vault_discard(f);
	ok(read_file("files/deadbeef000142038405060708090a0b/a.txt", buf, sizeof(buf), &mode) == 11 &&
	       memcmp(buf, "second copy", 11) == 0,
	   "the replacement is complete");
	is_int(entries("tmp"), 0, "replacing leaves nothing in tmp/");
	is_int(entries("files/deadbeef000142038405060708090a0b"), 1, "replacing leaves exactly one file");

	ok(vault_create(v, &f) == 0 && vault_write(f, "dropped", 7) == 0, "an upload that will be dropped is written");
	vault_discard(f);
	ok(vault_create(v, &f) == 0 && vault_write(f, "dropped", 7) == 0, "so is one of a client with no directory");
	vault_discard(f);
	is_int(entries("files"), 1, "a discarded upload makes no client directory");
	is_int(entries("files/deadbeef000142038405060708090a0b"), 1, "a discarded upload leaves no file");
	is_int(entries("tmp"), 0, "a discarded upload leaves nothing in tmp/");

	ok(vault_create(v, &f) == 0, "a file for unsafe names is started");
	ok(vault_publish(f, id, "..") == -EINVAL, "publishing as '..' is refused");
	ok(vault_publish(f, id, ".") == -EINVAL, "publishing as '.' is refused");
	ok(vault_publish(f, id, "") == -EINVAL, "publishing under an empty name is refused");
	ok(vault_publish(f, id, "x/y") == -EINVAL, "publishing a name with a slash is refused");
	vault_discard(f);
	is_int(entries("files/deadbeef000142038405060708090a0b"), 1, "refused publications leave nothing");

	big = calloc(1, 9u << 20);
	ok(vault_create(v, &f) == 0 && vault_write(f, big, 9u << 20) == 0 && vault_write(f, big, 1) == 0 &&
	       vault_publish(f, id, "big") == 0,
	   "a 9 MiB file (past the writeback step) is written and published");
	vault_discard(f);
	free(big);
	snprintf(path, sizeof(path), "%s/files/deadbeef000142038405060708090a0b/big", root);
	ok(stat(path, &st) == 0 && st.st_size == (9 << 20) + 1, "it has all its bytes");

	ok(vault_create(v, &f) == 0 && vault_write(f, "flushed", 7) == 0 && vault_flush(f) == 0 && vault_flush(f) == 0,
	   "an upload is flushed to disk before publication, and flushing twice is harmless");
	is_int(entries("files/deadbeef000142038405060708090a0b"), 2, "a flushed file is still invisible");
	ok(vault_publish(f, id, "flushed") == 0, "a flushed file is published");
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
		ok(vault_create(v, &f) == 0 && vault_write(f, "sealed", 6) == 0 && vault_publish(f, id, "s.txt") == 0,
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

		ok(vault_create(v, &f) == 0 && vault_write(f, "x", 1) == 0 && vault_publish(f, other, "x") == 0,
		   "a file of a second client");
		vault_discard(f);
		ok(vault_remove(v, other, "x") == 0, "removed, it leaves its client's directory empty");
		ok(vault_each_client_dir(v, VAULT_FILES, count_dir, counts) == 0 && counts[0] == 1 && counts[1] == 1,
		   "client directories are listed, one with files and one empty");
		ok(vault_remove_dir(v, VAULT_FILES, other, false) == 0 && entries("files") == 1,
		   "the empty directory is removed");
		ok(vault_create(v, &f) == 0 && vault_write(f, "y", 1) == 0 && vault_publish(f, other, "y") == 0,
		   "a publisher that finds the directory gone makes it again");
		vault_discard(f);
		ok(vault_remove_dir(v, VAULT_FILES, other, false) == -ENOTEMPTY,
		   "a directory with files is not removed as empty");
		ok(vault_remove_dir(v, VAULT_FILES, other, true) == 0 && entries("files") == 1,
		   "with its content, it is removed");

		{
			char host[VAULT_HOST_SIZE];
			char names_in_tmp[7][200];
			/* Names of no session: no host before the pid, no random part, no pid, pid 0. */
			static const char *const not_ours[] = {"upload--5-aa", "upload-5-", "upload-x-y-zz",
			                                       "upload-0-aa"};
			long elsewhere = -1;
			bool safe = true;
			int me = (int)getpid();

			vault_host_name(host);
			for (size_t i = 0; host[i]; i++)
				safe &= strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_",
				               host[i]) != NULL;
			ok(host[0] && strlen(host) < VAULT_HOST_SIZE && safe && strcmp(host, vault_host(v)) == 0,
			   "this host's name in tmp/ is non-empty, bounded and of safe characters");
			/* An earlier version's, live and dead; this host's, live and dead; other hosts'. */
			snprintf(names_in_tmp[0], 200, "%d-00", me);
			snprintf(names_in_tmp[1], 200, "2147483647-00");
			snprintf(names_in_tmp[2], 200, "%s-%d-0123456789abcdef", host, me);
			snprintf(names_in_tmp[3], 200, "%s-2147483646-0123456789abcdef", host);
			snprintf(names_in_tmp[4], 200, "other-host.example-%d-00aa", me);
			snprintf(names_in_tmp[5], 200, "other-host.example-2147483647-00bb");
			snprintf(names_in_tmp[6], 200, "7-host-1-2147483647-00cc");
			for (size_t i = 0; i < 7; i++) {
				snprintf(path, sizeof(path), "%s/tmp/" VAULT_TMP_PREFIX "%.199s", root,
				         names_in_tmp[i]);
				close(open(path, O_WRONLY | O_CREAT, 0600));
			}
			snprintf(path, sizeof(path), "%s/tmp/unrelated", root);
			close(open(path, O_WRONLY | O_CREAT, 0600));
			for (size_t i = 0; i < sizeof(not_ours) / sizeof(*not_ours); i++) {
				snprintf(path, sizeof(path), "%s/tmp/%s", root, not_ours[i]);
				close(open(path, O_WRONLY | O_CREAT, 0600));
			}
			ok(vault_each_leftover(v, false, count_name, &names, &elsewhere) == 0 && names == 2 &&
			       elsewhere == 3 && entries("tmp") == 12,
			   "leftovers of this host's dead processes are found; live ones, other hosts' and other names "
			   "are not");
			names = 0;
			ok(vault_each_leftover(v, true, count_name, &names, &elsewhere) == 0 && names == 2 &&
			       elsewhere == 3 && entries("tmp") == 10,
			   "and removed on request");
			snprintf(path, sizeof(path), "%s/tmp/" VAULT_TMP_PREFIX "%s-2147483646-0123456789abcdef", root,
			         host);
			ok(access(path, F_OK) < 0, "this host's dead one is gone");
			snprintf(path, sizeof(path), "%s/tmp/" VAULT_TMP_PREFIX "other-host.example-2147483647-00bb",
			         root);
			ok(access(path, F_OK) == 0, "another host's, whose pid means nothing here, is left");
			snprintf(path, sizeof(path), "%s/tmp/" VAULT_TMP_PREFIX "%s-%d-0123456789abcdef", root, host,
			         (int)getpid());
			ok(access(path, F_OK) == 0, "this host's live one is left");
			/* Left for what follows: an earlier version's live name and an unrelated one. */
			for (size_t i = 2; i < 7; i++) {
				snprintf(path, sizeof(path), "%s/tmp/" VAULT_TMP_PREFIX "%.199s", root,
				         names_in_tmp[i]);
				unlink(path);
			}
			for (size_t i = 0; i < sizeof(not_ours) / sizeof(*not_ours); i++) {
				snprintf(path, sizeof(path), "%s/tmp/%s", root, not_ours[i]);
				unlink(path);
			}
		}
		seal_key_free(key);
	}

	{
		char token[VAULT_TOKEN_SIZE], other_token[VAULT_TOKEN_SIZE], aside[600];
		int found = 0;

		vault_new_token(token);
		vault_new_token(other_token);
		ok(vault_token_ok(token) && strlen(token) == 32 && strcmp(token, other_token) != 0,
		   "tokens are 32 hex digits, a fresh one each time");
		ok(!vault_token_ok("../../files/x/a.txt0123456789abc") &&
		       !vault_token_ok("0123456789ABCDEF0123456789abcdef") &&
		       !vault_token_ok("0123456789abcdef0123456789abcde"),
		   "a path, upper case or 31 digits is no token");
		ok(vault_pending_path(id, token, aside, sizeof(aside)) == 0 &&
		       strncmp(aside, "pending/deadbeef", 16) == 0,
		   "a kept-aside copy is pending/<hex>/<token>");
		snprintf(path, sizeof(path), "%s/pending", root);
		ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0700, "pending/ was created, mode 0700");
		is_int(vault_pending_exists(v, id, token), 0, "a token not yet used names nothing");
		ok(vault_create(v, &f) == 0 && vault_write(f, "new one", 7) == 0 &&
		       vault_publish_aside(f, id, token) == 0,
		   "a file is kept aside");
		vault_discard(f);
		is_int(vault_pending_exists(v, id, token), 1, "it exists as its token");
		snprintf(path, sizeof(path), "%s/files/deadbeef000142038405060708090a0b/big", root);
		ok(stat(path, &st) == 0 && st.st_size == (9 << 20) + 1, "the file under its name is untouched");
		ok(vault_create(v, &f) == 0 && vault_publish_aside(f, id, token) == -EEXIST,
		   "a token is never used twice: a second copy under it is refused");
		vault_discard(f);
		ok(vault_create(v, &f) == 0 && vault_publish_aside(f, id, "../x") == -EINVAL,
		   "a name that is no token is refused");
		vault_discard(f);
		ok(vault_create(v, &f) == 0 && vault_write(f, "other", 5) == 0 &&
		       vault_publish_aside(f, id, other_token) == 0,
		   "a second copy is kept aside under its own token");
		vault_discard(f);
		ok(vault_each_pending(v, count_pending, &found) == 0 && found == 2, "both are listed");
		ok(vault_promote(v, id, token, "big") == 0, "the first is put in place of a stored file");
		ok(read_file("files/deadbeef000142038405060708090a0b/big", buf, sizeof(buf), &mode) == 7 &&
		       memcmp(buf, "new one", 7) == 0,
		   "the name holds it now");
		is_int(vault_pending_exists(v, id, token), 0, "and its token names nothing any more");
		ok(vault_promote(v, id, token, "big") == -ENOENT, "a token gone cannot be promoted");
		ok(vault_remove_pending(v, id, other_token) == 0 && vault_pending_exists(v, id, other_token) == 0,
		   "the second is removed");
		ok(vault_remove_pending(v, id, other_token) == 0, "removing it again is not an error");
		{
			int counts[2] = {0, 0};

			ok(vault_each_client_dir(v, VAULT_PENDING, count_dir, counts) == 0 && counts[0] == 0 &&
			       counts[1] == 1,
			   "the client's pending/ directory is listed, empty");
		}
		ok(vault_remove_dir(v, VAULT_PENDING, id, false) == 0 && entries("pending") == 0, "and is removed");
		vault_new_token(token);
		ok(vault_create(v, &f) == 0 && vault_write(f, "again", 5) == 0 &&
		       vault_publish_aside(f, id, token) == 0 && vault_pending_exists(v, id, token) == 1,
		   "a copy kept aside after that makes the directory again");
		vault_discard(f);
		ok(vault_remove_dir(v, VAULT_PENDING, id, false) == -ENOTEMPTY,
		   "a directory of kept-aside copies that is not empty stays");
		ok(vault_remove_dir(v, VAULT_PENDING, id, true) == 0 && entries("pending") == 0,
		   "with its content, it is removed");
		is_int(entries("tmp"), 2, "nothing of all that is left in tmp/ (but the two names put there above)");
	}

	vault_close(v);
	snprintf(path, sizeof(path), "rm -rf '%s'", root);
	r = system(path);
	(void)r;
	return tap_done();
}
