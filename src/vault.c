/*
 * The file vault (vault.h): files received, written unnamed in tmp/,
 * synced, then linked to their name or kept aside; encryption at rest
 * through seal.h; and what efctl(8) needs to find and remove what killed
 * sessions leave behind. No directory is ever locked: a client's directory
 * is made when a file is published into it, and a publisher that finds it
 * gone (efctl gc removes empty ones) makes it again.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "crypto.h"
#include "seal.h"
#include "vault.h"

/* Start writeback every this many bytes, so the final fsync has little left to do. */
#define VAULT_WRITEBACK_STEP (8u << 20)
/* Times a publisher makes again a client directory that efctl gc removed under it. */
#define VAULT_DIR_TRIES 8
/* The random part of a name in tmp/: this many hex digits. */
#define VAULT_TMP_RANDOM 16

struct vault {
	int state_fd;
	int files_fd;
	int tmp_fd;
	int pending_fd;             /* -1: no pending/ (vault_open_existing on a state directory without one) */
	const struct seal_key *key; /* NULL: files are stored as received */
	char host[VAULT_HOST_SIZE]; /* this host, as named in tmp/ (vault_host_name) */
};

struct vault_file {
	struct vault *vault;
	int fd;
	bool named; /* fd has the name tmp_name in tmp/: no O_TMPFILE here, or about to replace a file */
	bool published;
	bool synced; /* content complete and on disk */
	struct seal_writer *seal;
	char tmp_name[sizeof(VAULT_TMP_PREFIX) + VAULT_HOST_SIZE + 24 + VAULT_TMP_RANDOM];
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
	v->state_fd = v->files_fd = v->tmp_fd = v->pending_fd = -1;
	vault_host_name(v->host);
	if ((r = open_dir_at(AT_FDCWD, state_dir, false, &v->state_fd)) < 0 ||
	    (r = open_dir_at(v->state_fd, VAULT_FILES_DIR, create, &v->files_fd)) < 0 ||
	    (r = open_dir_at(v->state_fd, VAULT_TMP_DIR, create, &v->tmp_fd)) < 0 ||
	    ((r = open_dir_at(v->state_fd, VAULT_PENDING_DIR, create, &v->pending_fd)) < 0 &&
	     (create || r != -ENOENT))) {
		vault_close(v);
		return r;
	}
	*out = v;
	return 0;
}

int vault_open(const char *state_dir, struct vault **out)
{
	struct vault *v;
	int fds[4], i, r;

	if ((r = vault_new(state_dir, true, &v)) < 0)
		return r;
	/* A read-only state directory is found at start (one clear line), not at the first write. */
	fds[0] = v->state_fd;
	fds[1] = v->files_fd;
	fds[2] = v->tmp_fd;
	fds[3] = v->pending_fd;
	for (i = 0; i < 4; i++)
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
	if (v->pending_fd >= 0)
		close(v->pending_fd);
	if (v->tmp_fd >= 0)
		close(v->tmp_fd);
	if (v->files_fd >= 0)
		close(v->files_fd);
	if (v->state_fd >= 0)
		close(v->state_fd);
	free(v);
}

void vault_host_name(char out[VAULT_HOST_SIZE])
{
	char name[VAULT_HOST_SIZE] = "";
	size_t i;

	/* Linux host names have at most 64 bytes: the bound never cuts one. */
	(void)gethostname(name, sizeof(name));
	name[sizeof(name) - 1] = '\0';
	for (i = 0; name[i]; i++)
		out[i] = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
		                 (name[i] >= '0' && name[i] <= '9') || name[i] == '.' || name[i] == '-'
		             ? name[i]
		             : '_';
	out[i] = '\0';
	if (i == 0)
		snprintf(out, VAULT_HOST_SIZE, "unnamed");
}

const char *vault_host(const struct vault *v)
{
	return v->host;
}

/* "top/<hex>/name" relative to the state directory. */
static int client_path(const char *top, const uint8_t id[WIRE_ID_SIZE], const char *name, char *out, size_t out_size)
{
	char hex[WIRE_ID_HEX_SIZE];
	int n;

	wire_id_to_hex(id, hex);
	n = snprintf(out, out_size, "%s/%s/%s", top, hex, name);
	return n < 0 || (size_t)n >= out_size ? -ENAMETOOLONG : 0;
}

int vault_path_name(const uint8_t id[WIRE_ID_SIZE], const char *base, char *out, size_t out_size)
{
	return client_path(VAULT_FILES_DIR, id, base, out, out_size);
}

int vault_pending_path(const uint8_t id[WIRE_ID_SIZE], const char *token, char *out, size_t out_size)
{
	return client_path(VAULT_PENDING_DIR, id, token, out, out_size);
}

/* A base name is one path component that is not "." or ".." (efserver-protocol(7), Names). */
static bool safe_base(const char *base)
{
	return base[0] && !strchr(base, '/') && strcmp(base, ".") != 0 && strcmp(base, "..") != 0;
}

/* The directory of files/ or pending/ for area, or -1 when pending/ is missing (vault_open_existing). */
static int area_fd(const struct vault *v, enum vault_area area)
{
	return area == VAULT_PENDING ? v->pending_fd : v->files_fd;
}

/* A client's directory in an area, opened: -ENOENT when it does not exist. */
static int client_dir(struct vault *v, enum vault_area area, const uint8_t id[WIRE_ID_SIZE], int *out)
{
	char hex[WIRE_ID_HEX_SIZE];

	if (area_fd(v, area) < 0)
		return -ENOENT;
	wire_id_to_hex(id, hex);
	return open_dir_at(area_fd(v, area), hex, false, out);
}

/* Make a client's directory if it is missing; a new one is on disk (its parent synced) before anything goes in. */
static int make_client_dir(int area, const char *hex)
{
	if (mkdirat(area, hex, 0700) == 0)
		return fsync(area) < 0 ? -errno : 0;
	return errno == EEXIST ? 0 : -errno;
}

/* fsync a client's directory after a name in it changed. */
static int sync_client_dir(int area, const char *hex)
{
	int fd, r = 0;

	if ((r = open_dir_at(area, hex, false, &fd)) < 0)
		return r;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/*
 * A fresh name for tmp/, upload-<host>-<pid>-<random>: efctl gc on the same
 * host tells by the pid whether its session still runs.
 */
static void tmp_name(struct vault_file *f)
{
	uint8_t rnd[VAULT_TMP_RANDOM / 2];
	int n;

	crypto_random(rnd, sizeof(rnd));
	n = snprintf(f->tmp_name, sizeof(f->tmp_name), VAULT_TMP_PREFIX "%s-%ld-", f->vault->host, (long)getpid());
	for (size_t i = 0; i < sizeof(rnd); i++)
		n += snprintf(f->tmp_name + n, sizeof(f->tmp_name) - (size_t)n, "%02x", rnd[i]);
}

/*
 * Whether open's errno says this file system makes no unnamed files: an old
 * kernel (EISDIR), a file system without them (EOPNOTSUPP, as NFS, CIFS and
 * FUSE answer), or one that refuses the flags (EINVAL, ENOSYS).
 */
static bool no_tmpfile(int e)
{
	return e == EOPNOTSUPP || e == EISDIR || e == EINVAL || e == ENOSYS;
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

int vault_create(struct vault *v, struct vault_file **out)
{
	struct vault_file *f = calloc(1, sizeof(*f));
	int r;

	if (!f)
		return -ENOMEM;
	f->vault = v;
	f->fd = openat(v->tmp_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (f->fd < 0 && no_tmpfile(errno)) {
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

/*
 * Give the file the name area/<hex>/<name>, replacing an earlier one if
 * replace is set (else -EEXIST), and sync the directory. Every path is
 * relative to the area, so that a client directory efctl gc removed
 * meanwhile gives ENOENT, never a link into a removed directory: it is then
 * made again, a bounded number of times.
 */
static int place(struct vault_file *f, enum vault_area area, const uint8_t id[WIRE_ID_SIZE], const char *name,
                 bool replace)
{
	char hex[WIRE_ID_HEX_SIZE], rel[WIRE_ID_HEX_SIZE + NAME_MAX + 1], proc[64];
	int dir = area_fd(f->vault, area), r;

	if (dir < 0)
		return -ENOENT;
	if ((r = vault_flush(f)) < 0)
		return r;
	wire_id_to_hex(id, hex);
	if ((size_t)snprintf(rel, sizeof(rel), "%s/%s", hex, name) >= sizeof(rel))
		return -ENAMETOOLONG;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
	for (int i = 0; i < VAULT_DIR_TRIES; i++) {
		if ((r = make_client_dir(dir, hex)) < 0)
			return r;
		/* The common case, a new name: one atomic link and nothing to clean up. */
		if (!f->named) {
			if (linkat(AT_FDCWD, proc, dir, rel, AT_SYMLINK_FOLLOW) == 0)
				goto done;
			if (errno == ENOENT)
				continue;
			if (errno != EEXIST || !replace)
				return -errno;
			if ((r = link_tmp(f)) < 0)
				return r;
		}
		/* Replace the earlier copy atomically. */
		if (renameat(f->vault->tmp_fd, f->tmp_name, dir, rel) == 0) {
			/* The name left in tmp/ is gone once the directory is; a crash before that leaves a link efctl gc removes. */
			f->named = false;
			goto done;
		}
		if (errno != ENOENT)
			break;
	}
	r = -errno;
	if (f->named) {
		(void)unlinkat(f->vault->tmp_fd, f->tmp_name, 0);
		f->named = false;
	}
	return r;
done:
	f->published = true;
	return sync_client_dir(dir, hex);
}

int vault_publish(struct vault_file *f, const uint8_t id[WIRE_ID_SIZE], const char *base)
{
	if (!safe_base(base))
		return -EINVAL;
	return place(f, VAULT_FILES, id, base, true);
}

int vault_publish_aside(struct vault_file *f, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	if (!vault_token_ok(token))
		return -EINVAL;
	return place(f, VAULT_PENDING, id, token, false);
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
	free(f);
}

void vault_new_token(char out[VAULT_TOKEN_SIZE])
{
	uint8_t rnd[VAULT_TOKEN_LEN / 2];

	crypto_random(rnd, sizeof(rnd));
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(out + 2 * i, 3, "%02x", rnd[i]);
}

bool vault_token_ok(const char *token)
{
	size_t i;

	for (i = 0; i < VAULT_TOKEN_LEN; i++)
		if (!((token[i] >= '0' && token[i] <= '9') || (token[i] >= 'a' && token[i] <= 'f')))
			return false;
	return token[i] == '\0';
}

/* pending/<hex>/<token>, relative to pending/. */
static int pending_rel(const uint8_t id[WIRE_ID_SIZE], const char *token, char out[WIRE_ID_HEX_SIZE + VAULT_TOKEN_SIZE])
{
	char hex[WIRE_ID_HEX_SIZE];

	if (!vault_token_ok(token))
		return -EINVAL;
	wire_id_to_hex(id, hex);
	snprintf(out, WIRE_ID_HEX_SIZE + VAULT_TOKEN_SIZE, "%s/%s", hex, token);
	return 0;
}

int vault_pending_exists(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	char rel[WIRE_ID_HEX_SIZE + VAULT_TOKEN_SIZE];
	struct stat sb;
	int r;

	if ((r = pending_rel(id, token, rel)) < 0)
		return r;
	/* Without pending/ the question has no answer: never read it as "the copy is gone". */
	if (v->pending_fd < 0)
		return -ENOTDIR;
	if (fstatat(v->pending_fd, rel, &sb, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

int vault_promote(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *token, const char *base)
{
	char hex[WIRE_ID_HEX_SIZE], from[WIRE_ID_HEX_SIZE + VAULT_TOKEN_SIZE], to[WIRE_ID_HEX_SIZE + NAME_MAX + 1];
	int r, i;

	if (!safe_base(base))
		return -EINVAL;
	if ((r = pending_rel(id, token, from)) < 0)
		return r;
	if (v->pending_fd < 0)
		return -ENOTDIR;
	wire_id_to_hex(id, hex);
	if ((size_t)snprintf(to, sizeof(to), "%s/%s", hex, base) >= sizeof(to))
		return -ENAMETOOLONG;
	for (i = 0; i < VAULT_DIR_TRIES; i++) {
		if ((r = make_client_dir(v->files_fd, hex)) < 0)
			return r;
		if (renameat(v->pending_fd, from, v->files_fd, to) == 0)
			break;
		if (errno != ENOENT || faccessat(v->pending_fd, from, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (i == VAULT_DIR_TRIES)
		return -ENOENT;
	if ((r = sync_client_dir(v->files_fd, hex)) < 0)
		return r;
	/* The name gone from pending/ matters less: left behind, it is a copy no row names, which efctl gc removes. */
	(void)sync_client_dir(v->pending_fd, hex);
	return 0;
}

int vault_remove_pending(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	char rel[WIRE_ID_HEX_SIZE + VAULT_TOKEN_SIZE];
	int r;

	if ((r = pending_rel(id, token, rel)) < 0)
		return r;
	if (v->pending_fd < 0 || unlinkat(v->pending_fd, rel, 0) == 0)
		return 0;
	return errno == ENOENT ? 0 : -errno;
}

int vault_remove(struct vault *v, const uint8_t id[WIRE_ID_SIZE], const char *base)
{
	int dir, r = 0;

	if (!safe_base(base))
		return -EINVAL;
	if ((r = client_dir(v, VAULT_FILES, id, &dir)) < 0)
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

int vault_remove_dir(struct vault *v, enum vault_area area, const uint8_t id[WIRE_ID_SIZE], bool content)
{
	char hex[WIRE_ID_HEX_SIZE];
	int dir, r;

	if ((r = client_dir(v, area, id, &dir)) < 0)
		return r == -ENOENT ? 0 : r;
	if (content)
		r = empty_dir(dir);
	close(dir);
	if (r < 0)
		return r;
	/* The kernel refuses a directory that is not empty: a file published into it meanwhile keeps it. */
	wire_id_to_hex(id, hex);
	if (unlinkat(area_fd(v, area), hex, AT_REMOVEDIR) < 0)
		return errno == ENOENT ? 0 : errno == EEXIST ? -ENOTEMPTY : -errno;
	return fsync(area_fd(v, area)) < 0 ? -errno : 0;
}

int vault_each_client_dir(struct vault *v, enum vault_area area, vault_dir_fn fn, void *ctx)
{
	char hex[WIRE_ID_HEX_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	struct dirent *d;
	struct stat sb;
	size_t n = 0;
	DIR *ds;
	int at = area_fd(v, area), r = 0;

	if (at < 0)
		return 0;
	if ((r = dir_stream(at, &ds)) < 0)
		return r;
	while ((errno = 0, d = readdir(ds))) {
		/* Only what a publisher makes: a directory named by an id in lowercase hex. */
		if (wire_id_from_hex(d->d_name, id) < 0)
			continue;
		wire_id_to_hex(id, hex);
		if (strcmp(hex, d->d_name) != 0 || fstatat(at, hex, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(sb.st_mode))
			continue;
		if ((r = dir_entries(at, hex, &n)) < 0 || (r = fn(id, n == 0, ctx)) != 0)
			break;
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(ds);
	return r;
}

int vault_free_space(struct vault *v, uint64_t *bytes)
{
	struct statvfs sv;

	if (!v || !bytes)
		return -EINVAL;
	if (fstatvfs(v->state_fd, &sv) < 0)
		return -errno;
	*bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
	return 0;
}

int vault_count_client_dirs(struct vault *v, long *count)
{
	char hex[WIRE_ID_HEX_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	struct dirent *d;
	struct stat sb;
	long n = 0;
	DIR *ds;
	int r = 0;

	if ((r = dir_stream(v->files_fd, &ds)) < 0)
		return r;
	while ((errno = 0, d = readdir(ds))) {
		if (wire_id_from_hex(d->d_name, id) < 0)
			continue;
		wire_id_to_hex(id, hex);
		if (strcmp(hex, d->d_name) == 0 && fstatat(v->files_fd, hex, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(sb.st_mode))
			n++;
	}
	if (errno != 0)
		r = -errno;
	closedir(ds);
	if (r == 0)
		*count = n;
	return r;
}

int vault_refuse_new_store(void *vault)
{
	long n = 0;
	int r = vault_count_client_dirs(vault, &n);

	return r < 0 ? r : n > 0 ? -EEXIST : 0;
}

int vault_each_pending(struct vault *v, vault_pending_fn fn, void *ctx)
{
	char hex[WIRE_ID_HEX_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	struct dirent *d, *t;
	DIR *ds, *ts;
	int dir, r = 0;

	if (v->pending_fd < 0)
		return 0;
	if ((r = dir_stream(v->pending_fd, &ds)) < 0)
		return r;
	while (r == 0 && (errno = 0, d = readdir(ds))) {
		if (wire_id_from_hex(d->d_name, id) < 0)
			continue;
		wire_id_to_hex(id, hex);
		if (strcmp(hex, d->d_name) != 0 || open_dir_at(v->pending_fd, hex, false, &dir) < 0)
			continue;
		r = dir_stream(dir, &ts);
		close(dir);
		if (r < 0)
			break;
		while ((errno = 0, t = readdir(ts)))
			if (vault_token_ok(t->d_name) && (r = fn(id, t->d_name, ctx)) != 0)
				break;
		if (r == 0 && errno != 0)
			r = -errno;
		closedir(ts);
	}
	if (r == 0 && errno != 0)
		r = -errno;
	closedir(ds);
	return r;
}

/*
 * The host and pid in a name upload-<host>-<pid>-<random> (host empty in the
 * upload-<pid>-<random> of earlier versions, written on one host only):
 * read from the right, since a host name may hold '-'. 0, or -EINVAL when
 * the name is not of that form.
 */
static int tmp_owner(const char *name, char host[VAULT_HOST_SIZE], pid_t *pid)
{
	const char *start = name + strlen(VAULT_TMP_PREFIX), *end = strrchr(name, '-'), *p;
	long n = 0;
	size_t len;

	if (strncmp(name, VAULT_TMP_PREFIX, strlen(VAULT_TMP_PREFIX)) != 0 || !end || end < start || !end[1])
		return -EINVAL;
	for (p = end; p > start && p[-1] >= '0' && p[-1] <= '9'; p--)
		;
	if (p == end || (p != start && p[-1] != '-'))
		return -EINVAL;
	for (const char *d = p; d < end; d++) {
		n = n * 10 + (*d - '0');
		if (n > INT32_MAX)
			return -EINVAL;
	}
	len = p == start ? 0 : (size_t)(p - 1 - start);
	if (len >= VAULT_HOST_SIZE || (p != start && len == 0))
		return -EINVAL;
	memcpy(host, start, len);
	host[len] = '\0';
	*pid = (pid_t)n;
	return n > 0 ? 0 : -EINVAL;
}

int vault_each_leftover(struct vault *v, bool remove, vault_name_fn fn, void *ctx, long *elsewhere)
{
	char host[VAULT_HOST_SIZE];
	struct dirent *d;
	DIR *ds;
	pid_t pid;
	int r = 0;

	*elsewhere = 0;
	if ((r = dir_stream(v->tmp_fd, &ds)) < 0)
		return r;
	while ((errno = 0, d = readdir(ds))) {
		if (tmp_owner(d->d_name, host, &pid) < 0)
			continue;
		/* Another host's pid means nothing here: only that host judges its names. */
		if (host[0] && strcmp(host, v->host) != 0) {
			(*elsewhere)++;
			continue;
		}
		/* EPERM: the process exists under another user, so the name is still in use. */
		if (kill(pid, 0) == 0 || errno == EPERM)
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
