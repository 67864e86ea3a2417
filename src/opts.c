/* Numbers and sizes from the command line, parsed with explicit bounds (opts.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"

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
