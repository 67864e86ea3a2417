/*
 * The file vault (vault.h): files received, written unnamed in their
 * client's directory, synced, then linked to their name; encryption at rest
 * through seal.h; and what efctl(8) needs to find and remove what killed
 * sessions leave behind.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "seal.h"
#include "vault.h"

/* Start writeback every this many bytes, so the final fsync has little left to do. */
#define VAULT_WRITEBACK_STEP (8u << 20)
/* Times vault_create looks again for a client directory that efctl gc removed under it. */
#define VAULT_DIR_TRIES 4

struct vault {
	int state_fd;
	int files_fd;
	int tmp_fd;
	const struct seal_key *key; /* NULL: files are stored as received */
};

struct vault_file {
	struct vault *vault;
	int dir_fd; /* the client's directory */
	int fd;
	bool named; /* O_TMPFILE unavailable: fd has the name tmp_name in tmp/ */
	bool published;
	bool synced; /* content complete and on disk */
	struct seal_writer *seal;
	char tmp_name[64];
	uint64_t written;
	uint64_t flushed; /* bytes already handed to writeback */
};

static int open_dir_at(int at, const char *name, bool create, int *out)
{
	int fd;

	if (create && mkdirat(at, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*out = fd;
	return 0;
}

static int vault_new(const char *state_dir, bool create, struct vault **out)
{
	struct vault *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	v->state_fd = v->files_fd = v->tmp_fd = -1;
	if ((r = open_dir_at(AT_FDCWD, state_dir, false, &v->state_fd)) < 0 ||
	    (r = open_dir_at(v->state_fd, VAULT_FILES_DIR, create, &v->files_fd)) < 0 ||
	    (r = open_dir_at(v->state_fd, VAULT_TMP_DIR, create, &v->tmp_fd)) < 0) {
		vault_close(v);
		return r;
	}
	*out = v;
	return 0;
}

int vault_open(const char *state_dir, struct vault **out)
{
	struct vault *v;
	int fds[3], i, r;

	if ((r = vault_new(state_dir, true, &v)) < 0)
		return r;
	/* A read-only state directory is found at start (one clear line), not at the first write. */
	fds[0] = v->state_fd;
	fds[1] = v->files_fd;
	fds[2] = v->tmp_fd;
	for (i = 0; i < 3; i++)
		if (faccessat(fds[i], ".", W_OK, AT_EACCESS) < 0) {
			r = -errno;
			vault_close(v);
			return r;
		}
	*out = v;
	return 0;
}

int vault_open_existing(const char *state_dir, struct vault **out)
{
	return vault_new(state_dir, false, out);
}

void vault_set_storage_key(struct vault *v, const struct seal_key *key)
{
	v->key = key;
}

void vault_close(struct vault *v)
{
	if (!v)
		return;
	if (v->tmp_fd >= 0)
		close(v->tmp_fd);
	if (v->files_fd >= 0)
		close(v->files_fd);
	if (v->state_fd >= 0)
		close(v->state_fd);
	free(v);
}

int vault_path_name(const uint8_t id[WIRE_ID_SIZE], const char *base, char *out, size_t out_size)
{
	char hex[WIRE_ID_HEX_SIZE];
	int n;

	wire_id_to_hex(id, hex);
	n = snprintf(out, out_size, VAULT_FILES_DIR "/%s/%s", hex, base);
	return n < 0 || (size_t)n >= out_size ? -ENAMETOOLONG : 0;
}

/* A base name is one path component that is not "." or ".." (efserver-protocol(7), Names). */
static bool safe_base(const char *base)
{
	return base[0] && !strchr(base, '/') && strcmp(base, ".") != 0 && strcmp(base, "..") != 0;
}

static int client_dir(struct vault *v, const uint8_t id[WIRE_ID_SIZE], bool create, int *out)
{
	char hex[WIRE_ID_HEX_SIZE];
	bool made = false;
	int r;

	wire_id_to_hex(id, hex);
	if (create) {
		if (mkdirat(v->files_fd, hex, 0700) == 0)
			made = true;
		else if (errno != EEXIST)
			return -errno;
	}
	r = open_dir_at(v->files_fd, hex, false, out);
	/* A new client directory must survive a crash before any file in it is reported stored. */
	if (r == 0 && made)
		(void)fsync(v->files_fd);
	return r;
}

/*
 * The client's directory, held with a shared lock for as long as a file is
 * written in it: efctl gc removes an empty directory only under an
 * exclusive lock, and one it removed just before we locked has no links left.
 */
static int client_dir_locked(struct vault *v, const uint8_t id[WIRE_ID_SIZE], int *out)
{
	struct stat sb;
	int fd, r;

	for (int i = 0; i < VAULT_DIR_TRIES; i++) {
		if ((r = client_dir(v, id, true, &fd)) < 0)
			return r;
		while ((r = flock(fd, LOCK_SH)) < 0 && errno == EINTR)
			continue;
		if (r < 0 || fstat(fd, &sb) < 0) {
			r = -errno;
			close(fd);
			return r;
		}
		if (sb.st_nlink > 0) {
			*out = fd;
			return 0;
		}
		close(fd);
	}
	return -ESTALE;
}

/* A fresh name for tmp/, upload-<pid>-<random>: efctl gc tells by the pid whether its session still runs. */
static void tmp_name(struct vault_file *f)
{
	uint8_t rnd[8];

	crypto_random(rnd, sizeof(rnd));
	snprintf(f->tmp_name, sizeof(f->tmp_name), VAULT_TMP_PREFIX "%ld-%02x%02x%02x%02x%02x%02x%02x%02x",
	         (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
}

static int raw_write(void *ctx, const void *buf, size_t len)
{
	struct vault_file *f = ctx;
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(f->fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		f->written += (uint64_t)n;
	}
	if (f->written - f->flushed >= VAULT_WRITEBACK_STEP) {
		(void)sync_file_range(f->fd, (off_t)f->flushed, (off_t)(f->written - f->flushed),
		                      SYNC_FILE_RANGE_WRITE);
		f->flushed = f->written;
	}
	return 0;
}

int vault_create(struct vault *v, const uint8_t id[WIRE_ID_SIZE], struct vault_file **out)
{
	struct vault_file *f = calloc(1, sizeof(*f));
	int r;

	if (!f)
		return -ENOMEM;
	f->vault = v;
	f->fd = -1;
	if ((r = client_dir_locked(v, id, &f->dir_fd)) < 0) {
		free(f);
		return r;
	}
	f->fd = openat(f->dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (f->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* No O_TMPFILE here: a named file in tmp/, which efctl gc can find after a crash. */
		tmp_name(f);
		f->fd = openat(v->tmp_fd, f->tmp_name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
		f->named = f->fd >= 0;
	}
	if (f->fd < 0) {
		r = -errno;
		vault_discard(f);
		return r;
	}
	if (v->key && (r = seal_writer_new(v->key, raw_write, f, &f->seal)) < 0) {
		vault_discard(f);
		return r;
	}
	*out = f;
	return 0;
}

int vault_write(struct vault_file *f, const void *buf, size_t len)
{
	return f->seal ? seal_writer_write(f->seal, buf, len) : raw_write(f, buf, len);
}

/* Give the unnamed file the name tmp_name in tmp/. */
static int link_tmp(struct vault_file *f)
{
	char proc[64];

	tmp_name(f);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
	if (linkat(AT_FDCWD, proc, f->vault->tmp_fd, f->tmp_name, AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	f->named = true;
	return 0;
}

int vault_flush(struct vault_file *f)
{
	int r;

	if (f->synced)
		return 0;
	if (f->seal && (r = seal_writer_finish(f->seal)) < 0)
		return r;
	if (fsync(f->fd) < 0)
		return -errno;
	f->synced = true;
	return 0;
}

int vault_publish(struct vault_file *f, const char *base)
{
	char proc[64];
	int r;

	if (!safe_base(base))
		return -EINVAL;
	if ((r = vault_flush(f)) < 0)
		return r;
	if (!f->named) {
		/* The common case, a new name: one atomic link and nothing to clean up. */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
		if (linkat(AT_FDCWD, proc, f->dir_fd, base, AT_SYMLINK_FOLLOW) == 0)
			goto done;
		if (errno != EEXIST)
			return -errno;
		if ((r = link_tmp(f)) < 0)
			return r;
	}
	/* Replace the earlier copy atomically. */
	if (renameat(f->vault->tmp_fd, f->tmp_name, f->dir_fd, base) < 0) {
		r = -errno;
		(void)unlinkat(f->vault->tmp_fd, f->tmp_name, 0);
		f->named = false;
		return r;
	}
	/* The name left in tmp/ is gone once the directory is; a crash before that leaves a link efctl gc removes. */
	f->named = false;
done:
	f->published = true;
	if (fsync(f->dir_fd) < 0)
		return -errno;
	return 0;
}

void vault_discard(struct vault_file *f)
{
	if (!f)
		return;
	if (f->named)
		(void)unlinkat(f->vault->tmp_fd, f->tmp_name, 0);
	seal_writer_free(f->seal);
	if (f->fd >= 0)
		close(f->fd);
	close(f->dir_fd);
	free(f);
}

int vault_remove(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *base)
{
	int dir, r = 0;

	if (!safe_base(base))
		return -EINVAL;
	if ((r = client_dir(v, id, false, &dir)) < 0)
		return r == -ENOENT ? 0 : r;
	if (unlinkat(dir, base, 0) < 0)
		r = errno == ENOENT ? 0 : -errno;
	else if (fsync(dir) < 0)
		r = -errno;
	close(dir);
	return r;
}

/* A stream over the entries of an open directory, leaving dirfd itself open and where it was. */
static int dir_stream(int dirfd, DIR **out)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	if (!(*out = fdopendir(fd))) {
		r = -errno;
		close(fd);
		return r;
	}
	return 0;
}

/* Whether a directory entry is a name of its own rather than "." or "..". */
static bool dir_entry(const struct dirent *d)
{
	return strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0;
}

/* How many entries the directory name in at holds, besides . and .. */
static int dir_entries(int at, const char *name, size_t *out)
{
	struct dirent *d;
	size_t n = 0;
	DIR *ds;
	int fd, r;

	if ((r = open_dir_at(at, name, false, &fd)) < 0)
		return r;
	r = dir_stream(fd, &ds);
	close(fd);
	if (r < 0)
		return r;
	while ((errno = 0, d = readdir(ds)))
		n += dir_entry(d);
	if (errno != 0)
		r = -errno;
	closedir(ds);
	if (r == 0)
		*out = n;
	return r;
}

/* Unlink every entry of the directory dir. */
static int empty_dir(int dir)
{
	struct dirent *d;
	DIR *ds;
	int r;

	if ((r = dir_stream(dir, &ds)) < 0)
		return r;
	while ((errno = 0, d = readdir(ds))) {
		if (!dir_entry(d))
			continue;
		if (unlinkat(dir, d->d_name, 0) < 0 && errno != ENOENT) {
			r = -errno;
			break;
		}
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(ds);
	return r;
}

int vault_remove_dir(struct vault *v, const uint8_t id[WIRE_ID_SIZE], bool content, bool if_idle)
{
	char hex[WIRE_ID_HEX_SIZE];
	int dir, r;

	wire_id_to_hex(id, hex);
	if ((r = open_dir_at(v->files_fd, hex, false, &dir)) < 0)
		return r == -ENOENT ? 0 : r;
	if (if_idle && flock(dir, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto out;
	}
	if (content && (r = empty_dir(dir)) < 0)
		goto out;
	if (unlinkat(v->files_fd, hex, AT_REMOVEDIR) < 0) {
		r = errno == ENOENT ? 0 : errno == EEXIST ? -ENOTEMPTY : -errno;
		goto out;
	}
	if (fsync(v->files_fd) < 0)
		r = -errno;
out:
	close(dir);
	return r;
}

int vault_each_client_dir(struct vault *v, vault_dir_fn fn, void *ctx)
{
	char hex[WIRE_ID_HEX_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	struct dirent *d;
	struct stat sb;
	size_t n = 0;
	DIR *ds;
	int r = 0;

	if ((r = dir_stream(v->files_fd, &ds)) < 0)
		return r;
	while ((errno = 0, d = readdir(ds))) {
		/* Only what vault_create makes: a directory named by an id in lowercase hex. */
		if (wire_id_from_hex(d->d_name, id) < 0)
			continue;
		wire_id_to_hex(id, hex);
		if (strcmp(hex, d->d_name) != 0 || fstatat(v->files_fd, hex, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(sb.st_mode))
			continue;
		if ((r = dir_entries(v->files_fd, hex, &n)) < 0 || (r = fn(id, n == 0, ctx)) != 0)
			break;
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(ds);
	return r;
}

/* The pid in a name upload-<pid>-<random>, or 0 when the name is not of that form. */
static pid_t tmp_owner(const char *name)
{
	const char *p = name + strlen(VAULT_TMP_PREFIX);
	long pid = 0;

	if (strncmp(name, VAULT_TMP_PREFIX, strlen(VAULT_TMP_PREFIX)) != 0)
		return 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		pid = pid * 10 + (*p - '0');
		if (pid > INT32_MAX)
			return 0;
	}
	return *p == '-' ? (pid_t)pid : 0;
}

int vault_each_leftover(struct vault *v, bool remove, vault_name_fn fn, void *ctx)
{
	struct dirent *d;
	DIR *ds;
	pid_t pid;
	int r = 0;

	if ((r = dir_stream(v->tmp_fd, &ds)) < 0)
		return r;
	while ((errno = 0, d = readdir(ds))) {
		pid = tmp_owner(d->d_name);
		/* EPERM: the process exists under another user, so the name is still in use. */
		if (pid <= 0 || kill(pid, 0) == 0 || errno == EPERM)
			continue;
		if (remove && unlinkat(v->tmp_fd, d->d_name, 0) < 0 && errno != ENOENT) {
			r = -errno;
			break;
		}
		if ((r = fn(d->d_name, ctx)) != 0)
			break;
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(ds);
	if (remove && r == 0 && fsync(v->tmp_fd) < 0)
		r = -errno;
	return r;
}
