/* Numbers and sizes from the command line, parsed with explicit bounds (opts.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opts.h"
#include "store.h"

static int parse_scaled(const char *s, uint64_t min, uint64_t max, int allow_suffix, uint64_t *out)
{
	unsigned long long v;
	uint64_t scale = 1;
	char *end;

	/* strtoull accepts leading blanks and a minus sign: refuse both. */
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (allow_suffix && *end) {
		switch (*end) {
		case 'K':
		case 'k':
			scale = 1024;
			break;
		case 'M':
			scale = 1024 * 1024;
			break;
		case 'G':
			scale = 1024 * 1024 * 1024;
			break;
		default:
			return -EINVAL;
		}
		end++;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
	}
	if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / scale)
		return -ERANGE;
	v *= scale;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int opts_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	return parse_scaled(s, min, max, 0, out);
}

int opts_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	return parse_scaled(s, min, max, 1, out);
}

int opts_parse_code_set(const char *s, unsigned *out)
{
	uint64_t v;

	if (parse_scaled(s, 0, UINT16_MAX, 0, &v) < 0 || (v != 1025 && v != 1100))
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

int opts_parse_compat(const char *list, unsigned *out, const char **why)
{
	static const struct {
		const char *name;
		unsigned flags;
	} names[] = {
	    {"seed004", OPTS_COMPAT_SEED004},
	    {"content-after", OPTS_COMPAT_CONTENT_AFTER},
	    {"short-name", OPTS_COMPAT_SHORT_NAME},
	    {"all", OPTS_COMPAT_ALL},
	};
	unsigned flags = 0;
	const char *p = list;
	size_t len, i;

	for (;;) {
		len = strcspn(p, ",");
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strlen(names[i].name) == len && strncmp(p, names[i].name, len) == 0)
				break;
		if (i == sizeof(names) / sizeof(names[0])) {
			*why = len ? "names something other than seed004, content-after, short-name or all"
			           : "has an empty item";
			return -EINVAL;
		}
		flags |= names[i].flags;
		if (!p[len])
			break;
		p += len + 1;
	}
	*out = flags;
	return 0;
}

int opts_state_dir(const char *given, char **out)
{
	const char *env = getenv("STATE_DIRECTORY"), *dir = EF_STATE_DIR;
	size_t len;
	char *s;

	if (given)
		dir = given;
	else if (env && *env)
		dir = env;
	len = dir == env ? strcspn(env, ":") : strlen(dir);
	if (!(s = strndup(dir, len)))
		return -ENOMEM;
	*out = s;
	return 0;
}

/* A URI is a line of a few hundred bytes; a credential file longer than this is not one. */
#define OPTS_DATABASE_MAX 4096

/* The credential's one line, without its newline: 0, or -EINVAL and *why. */
static int read_credential(const char *dir, char **out, const char **why)
{
	char path[OPTS_DATABASE_MAX], *s;
	ssize_t n;
	size_t len = 0;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, OPTS_DATABASE_CREDENTIAL) >= (int)sizeof(path)) {
		*why = "$CREDENTIALS_DIRECTORY is too long";
		return -EINVAL;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		if (errno == ENOENT)
			return 0;
		*why = "the " OPTS_DATABASE_CREDENTIAL " credential cannot be read";
		return -EINVAL;
	}
	if (!(s = malloc(OPTS_DATABASE_MAX + 1))) {
		(void)close(fd);
		return -ENOMEM;
	}
	while (len <= OPTS_DATABASE_MAX && (n = read(fd, s + len, OPTS_DATABASE_MAX + 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	(void)close(fd);
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
		len--;
	if (len == 0 || len >= OPTS_DATABASE_MAX || memchr(s, '\0', len) || memchr(s, '\n', len)) {
		free(s);
		*why = "the " OPTS_DATABASE_CREDENTIAL " credential is not one line of a URI";
		return -EINVAL;
	}
	s[len] = '\0';
	*out = s;
	return 0;
}

int opts_database(const char *given, char **out, const char **why)
{
	const char *env = getenv(OPTS_DATABASE_ENV), *dir = getenv("CREDENTIALS_DIRECTORY");
	char *s = NULL;
	int r;

	*out = NULL;
	if (given)
		s = strdup(given);
	else if (env && *env)
		s = strdup(env);
	else if (dir && *dir && (r = read_credential(dir, &s, why)) < 0)
		return r;
	else if (!s)
		return 0;
	if (!s)
		return -ENOMEM;
	if (!store_is_url(s) || strlen(s) >= OPTS_DATABASE_MAX) {
		free(s);
		*why = "not a PostgreSQL URI (postgresql://... or postgres://...)";
		return -EINVAL;
	}
#ifndef HAVE_POSTGRESQL
	free(s);
	*why = OPTS_NO_POSTGRESQL;
	return -EPROTONOSUPPORT;
#else
	*out = s;
	return 0;
#endif
}

const char *opts_human_size(uint64_t bytes, char *buf, unsigned long size)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, size, "%llu byte%s", (unsigned long long)bytes, bytes == 1 ? "" : "s");
		return buf;
	}
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, "%.1f %s", v, units[u]);
	return buf;
}
