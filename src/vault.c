#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "vault.h"

/* Start writeback every this many bytes, so the final fsync has little left to do. */
#define VAULT_WRITEBACK_STEP (8u << 20)

struct vault {
	int state_fd;
	int files_fd;
	int tmp_fd;
};

struct vault_file {
	struct vault *vault;
	int dir_fd; /* the client's directory */
	int fd;
	bool named; /* O_TMPFILE unavailable: fd has the name tmp_name in tmp/ */
	bool published;
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

int vault_open(const char *state_dir, struct vault **out)
{
	struct vault *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	v->state_fd = v->files_fd = v->tmp_fd = -1;
	if ((r = open_dir_at(AT_FDCWD, state_dir, false, &v->state_fd)) < 0 ||
	    (r = open_dir_at(v->state_fd, VAULT_FILES_DIR, true, &v->files_fd)) < 0 ||
	    (r = open_dir_at(v->state_fd, VAULT_TMP_DIR, true, &v->tmp_fd)) < 0) {
		vault_close(v);
		return r;
	}
	*out = v;
	return 0;
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

/* A base name is one path component that is not "." or ".." (PROTOCOL.md section 6). */
static bool safe_base(const char *base)
{
	return base[0] && !strchr(base, '/') && strcmp(base, ".") != 0 && strcmp(base, "..") != 0;
}

static int client_dir(struct vault *v, const uint8_t id[WIRE_ID_SIZE], bool create, int *out)
{
	char hex[WIRE_ID_HEX_SIZE];
	int r;

	wire_id_to_hex(id, hex);
	r = open_dir_at(v->files_fd, hex, create, out);
	/* A new client directory must survive a crash before any file in it is reported stored. */
	if (r == 0 && create)
		(void)fsync(v->files_fd);
	return r;
}

int vault_create(struct vault *v, const uint8_t id[WIRE_ID_SIZE], struct vault_file **out)
{
	struct vault_file *f = calloc(1, sizeof(*f));
	uint8_t rnd[8];
	int r;

	if (!f)
		return -ENOMEM;
	f->vault = v;
	f->fd = -1;
	if ((r = client_dir(v, id, true, &f->dir_fd)) < 0) {
		free(f);
		return r;
	}
	f->fd = openat(f->dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (f->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* No O_TMPFILE here: a named file in tmp/, which efctl gc can find after a crash. */
		crypto_random(rnd, sizeof(rnd));
		snprintf(f->tmp_name, sizeof(f->tmp_name), VAULT_TMP_PREFIX "%ld-%02x%02x%02x%02x%02x%02x%02x%02x",
		         (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
		f->fd = openat(v->tmp_fd, f->tmp_name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
		f->named = f->fd >= 0;
	}
	if (f->fd < 0) {
		r = -errno;
		close(f->dir_fd);
		free(f);
		return r;
	}
	*out = f;
	return 0;
}

int vault_write(struct vault_file *f, const void *buf, size_t len)
{
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

/* Give the unnamed file the name tmp_name in tmp/. */
static int link_tmp(struct vault_file *f)
{
	char proc[64];
	uint8_t rnd[8];

	crypto_random(rnd, sizeof(rnd));
	snprintf(f->tmp_name, sizeof(f->tmp_name), VAULT_TMP_PREFIX "%ld-%02x%02x%02x%02x%02x%02x%02x%02x",
	         (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
	if (linkat(AT_FDCWD, proc, f->vault->tmp_fd, f->tmp_name, AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	f->named = true;
	return 0;
}

int vault_publish(struct vault_file *f, const char *base)
{
	char proc[64];
	int r;

	if (!safe_base(base))
		return -EINVAL;
	if (fsync(f->fd) < 0)
		return -errno;
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
	f->named = false;
	(void)fsync(f->vault->tmp_fd);
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
