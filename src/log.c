/*
 * Logging for efsession(8): one entry per event, to the journal, syslog,
 * a terminal or plain stderr, with the connection's context (log.h). Names
 * from the network are escaped before they reach any of them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "systemd.h"
#include "utf8.h"
#include "wire.h"

#define LOG_LINE_MAX  2048
#define LOG_FIELD_MAX 600
#define LOG_WHO_MAX   (LOG_FIELD_MAX + 160)

static struct {
	const char *ident;
	enum log_target target;
	int level;
	char peer[128];
	char client_id[WIRE_ID_HEX_SIZE];
	char client_name[LOG_FIELD_MAX];
	uint16_t request_code;
	char file_name[LOG_FIELD_MAX];
	long long file_size;
} ctx = {.ident = "efserver", .target = LOG_TARGET_STDERR, .level = LOG_INFO, .file_size = -1};

static const char *const level_names[] = {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};

/* stderr is the journal when JOURNAL_STREAM names its device and inode (systemd.exec(5)). */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

static bool stderr_is_socket(void)
{
	struct stat st;

	return fstat(STDERR_FILENO, &st) == 0 && S_ISSOCK(st.st_mode);
}

void log_open(const char *ident, enum log_target target)
{
	int fd;

	ctx.ident = ident;
	if (target == LOG_TARGET_AUTO) {
		if (stderr_is_journal())
			target = LOG_TARGET_JOURNAL;
		else if (stderr_is_socket())
			target = LOG_TARGET_SYSLOG;
		else if (isatty(STDERR_FILENO))
			target = LOG_TARGET_TERMINAL;
		else
			target = LOG_TARGET_STDERR;
	}
	ctx.target = target;
	if (target == LOG_TARGET_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	/* Under inetd fd 2 is the connection: not one stray byte may reach it. */
	if ((target == LOG_TARGET_SYSLOG || target == LOG_TARGET_JOURNAL) && stderr_is_socket() &&
	    !stderr_is_journal()) {
		fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			(void)dup3(fd, STDERR_FILENO, 0);
			close(fd);
		}
	}
}

enum log_target log_get_target(void)
{
	return ctx.target;
}

int log_target_from_name(const char *name, enum log_target *out)
{
	static const struct {
		const char *name;
		enum log_target target;
	} names[] = {
	    {"auto", LOG_TARGET_AUTO},         {"journal", LOG_TARGET_JOURNAL}, {"syslog", LOG_TARGET_SYSLOG},
	    {"terminal", LOG_TARGET_TERMINAL}, {"stderr", LOG_TARGET_STDERR},
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i].name) == 0) {
			*out = names[i].target;
			return 0;
		}
	return -EINVAL;
}

void log_set_level(int level)
{
	ctx.level = level;
}

int log_get_level(void)
{
	return ctx.level;
}

int log_level_from_name(const char *name, int *out)
{
	int i;

	if (strcmp(name, "error") == 0) {
		*out = LOG_ERR;
		return 0;
	}
	for (i = LOG_CRIT; i <= LOG_DEBUG; i++)
		if (strcmp(name, level_names[i]) == 0) {
			*out = i;
			return 0;
		}
	return -EINVAL;
}

/* What ends an escaped text that had to be cut short. */
#define LOG_ESCAPE_CUT "..."

/* efserver-protocol(7), Names: what a person reads never holds a control, a bidi control or an invalid byte raw. */
const char *log_escape(const void *data, size_t len, char *out, size_t out_size)
{
	const uint8_t *s = data;
	size_t o = 0, i = 0, n, room, cut = 0, piece_len;
	const void *piece;
	uint32_t cp = 0;
	char e[16];

	if (out_size == 0)
		return out;
	/* Where the text goes back to, at the end of a whole escape, if "..." has to follow. */
	room = out_size > sizeof(LOG_ESCAPE_CUT) ? out_size - sizeof(LOG_ESCAPE_CUT) : out_size - 1;
	while (i < len) {
		n = utf8_decode(s + i, len - i, &cp);
		piece = e;
		if (n == 0 || (n == 1 && (cp == '\\' || utf8_hidden_on_display(cp)))) {
			/* A control byte, the backslash itself, or a byte that starts no valid sequence. */
			n = 1;
			piece_len = (size_t)snprintf(e, sizeof(e), "\\x%02x", s[i]);
		} else if (utf8_hidden_on_display(cp)) {
			piece_len = (size_t)snprintf(e, sizeof(e), "\\u{%x}", (unsigned)cp);
		} else {
			piece = s + i;
			piece_len = n;
		}
		if (piece_len >= out_size - o)
			break;
		memcpy(out + o, piece, piece_len);
		o += piece_len;
		i += n;
		if (o <= room)
			cut = o;
	}
	if (i < len) {
		o = cut;
		if (sizeof(LOG_ESCAPE_CUT) <= out_size - o) {
			memcpy(out + o, LOG_ESCAPE_CUT, sizeof(LOG_ESCAPE_CUT) - 1);
			o += sizeof(LOG_ESCAPE_CUT) - 1;
		}
	}
	out[o] = '\0';
	return out;
}

/* A dual-stack socket (ListenStream=1357) reports IPv4 clients as [::ffff:a.b.c.d]:port: log a.b.c.d:port. */
void log_context_peer(const char *peer)
{
	static const char mapped[] = "[::ffff:";
	const size_t plen = sizeof(mapped) - 1;
	const char *end;

	if (peer && strncmp(peer, mapped, plen) == 0 && (end = strchr(peer + plen, ']')) &&
	    memchr(peer + plen, '.', (size_t)(end - peer) - plen) && end[1] == ':')
		snprintf(ctx.peer, sizeof(ctx.peer), "%.*s%s", (int)(end - peer - plen), peer + plen, end + 1);
	else
		snprintf(ctx.peer, sizeof(ctx.peer), "%s", peer ? peer : "");
}

void log_context_client(const uint8_t *id, const char *name)
{
	if (id)
		wire_id_to_hex(id, ctx.client_id);
	else
		ctx.client_id[0] = '\0';
	log_escape(name ? name : "", name ? strlen(name) : 0, ctx.client_name, sizeof(ctx.client_name));
}

void log_context_request(uint16_t code)
{
	ctx.request_code = code;
}

void log_context_file(const char *name, long long size)
{
	log_escape(name ? name : "", name ? strlen(name) : 0, ctx.file_name, sizeof(ctx.file_name));
	ctx.file_size = size;
}

/* The entry with its fields; -ELIBACC when libsystemd, opened at the first entry, is not there. */
static int emit_journal(int level, const char *file, int line, const char *func, const char *limit, const char *msg)
{
	char f[13][LOG_FIELD_MAX + 32];
	struct iovec iov[13];
	int n = 0;

#define FIELD(...)                                                                                                     \
	do {                                                                                                           \
		int len_ = snprintf(f[n], sizeof(f[n]), __VA_ARGS__);                                                  \
		iov[n].iov_base = f[n];                                                                                \
		iov[n].iov_len = len_ < 0 ? 0 : (size_t)len_ < sizeof(f[n]) ? (size_t)len_ : sizeof(f[n]) - 1;         \
		n++;                                                                                                   \
	} while (0)
	FIELD("MESSAGE=%s", msg);
	FIELD("PRIORITY=%d", level);
	FIELD("SYSLOG_IDENTIFIER=%s", ctx.ident);
	FIELD("CODE_FILE=%s", file);
	FIELD("CODE_LINE=%d", line);
	FIELD("CODE_FUNC=%s", func);
	if (ctx.peer[0])
		FIELD("PEER=%s", ctx.peer);
	if (ctx.client_id[0])
		FIELD("CLIENT_ID=%s", ctx.client_id);
	if (ctx.client_name[0])
		FIELD("CLIENT_NAME=%s", ctx.client_name);
	if (ctx.request_code)
		FIELD("REQUEST_CODE=%u", ctx.request_code);
	if (ctx.file_name[0])
		FIELD("FILE_NAME=%s", ctx.file_name);
	if (ctx.file_size >= 0)
		FIELD("FILE_SIZE=%lld", ctx.file_size);
	if (limit)
		FIELD("LIMIT=%s", limit);
#undef FIELD
	return systemd_journal_sendv(iov, n);
}

/* "peer name: ", the prefix that tells connections apart where entries have no fields. */
static const char *who(char *buf, size_t size)
{
	buf[0] = '\0';
	if (ctx.peer[0] || ctx.client_name[0])
		snprintf(buf, size, "%s%s%s: ", ctx.peer, ctx.peer[0] && ctx.client_name[0] ? " " : "",
		         ctx.client_name);
	return buf;
}

static void emit_stream(int level, const char *msg, bool colour)
{
	static const char *const colours[] = {"\033[1;31m", "\033[1;31m", "\033[1;31m", "\033[31m",
	                                      "\033[33m",   "\033[1m",    "",           "\033[2m"};
	char line[LOG_LINE_MAX + 256];
	char prefix[LOG_WHO_MAX];
	int len;

	who(prefix, sizeof(prefix));
	if (colour)
		len = snprintf(line, sizeof(line), "%s%s[%ld] %s: %s%s\033[0m\n", colours[level], ctx.ident,
		               (long)getpid(), level_names[level], prefix, msg);
	else
		len = snprintf(line, sizeof(line), "%s[%ld] %s: %s%s\n", ctx.ident, (long)getpid(), level_names[level],
		               prefix, msg);
	if (len > 0)
		(void)!write(STDERR_FILENO, line, (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
}

/* The text lines' form of the journal's LIMIT field, and room for it. */
#define LOG_LIMIT_TEXT " [LIMIT=%s]"
#define LOG_LIMIT_MAX  64

__attribute__((format(printf, 6, 0))) static void emit(int level, const char *limit, const char *file, int line,
                                                       const char *func, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX], prefix[LOG_WHO_MAX], tail[LOG_LIMIT_MAX];
	int saved = errno, n, t;
	size_t at;

	if (level > ctx.level)
		return;
	if (level < LOG_EMERG)
		level = LOG_EMERG;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Without libsystemd, syslog from then on: it reaches journald too, and never the connection. */
	if (ctx.target == LOG_TARGET_JOURNAL && emit_journal(level, file, line, func, limit, msg) == -ELIBACC) {
		ctx.target = LOG_TARGET_SYSLOG;
		openlog(ctx.ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	}
	/* At the end of the line even when the message had to be cut short. */
	if (limit && ctx.target != LOG_TARGET_JOURNAL &&
	    (t = snprintf(tail, sizeof(tail), LOG_LIMIT_TEXT, limit)) > 0 && (size_t)t < sizeof(tail)) {
		at = n < 0 ? 0 : (size_t)n < sizeof(msg) - (size_t)t ? (size_t)n : sizeof(msg) - 1 - (size_t)t;
		memcpy(msg + at, tail, (size_t)t + 1);
	}
	switch (ctx.target) {
	case LOG_TARGET_JOURNAL:
		break;
	case LOG_TARGET_SYSLOG:
		syslog(level, "%s%s", who(prefix, sizeof(prefix)), msg);
		break;
	case LOG_TARGET_TERMINAL:
		emit_stream(level, msg, true);
		break;
	case LOG_TARGET_AUTO:
	case LOG_TARGET_STDERR:
		emit_stream(level, msg, false);
		break;
	}
	errno = saved;
}

void log_emit(int level, const char *file, int line, const char *func, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(level, NULL, file, line, func, fmt, ap);
	va_end(ap);
}

void log_emit_limit(int level, const char *limit, const char *file, int line, const char *func, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(level, limit, file, line, func, fmt, ap);
	va_end(ap);
}

void log_hexdump(const char *what, const void *buf, size_t len, size_t max)
{
	const uint8_t *p = buf;
	char hex[3 * 16 + 1];
	size_t i, j, n = len < max ? len : max;

	if (ctx.level < LOG_DEBUG)
		return;
	log_debug("%s: %zu byte%s%s", what, len, len == 1 ? "" : "s", n < len ? ", first bytes:" : ":");
	for (i = 0; i < n; i += 16) {
		for (j = 0; j < 16 && i + j < n; j++)
			snprintf(hex + 3 * j, sizeof(hex) - 3 * j, "%02x ", p[i + j]);
		hex[3 * j - 1] = '\0';
		log_debug("  %04zx  %s", i, hex);
	}
}
