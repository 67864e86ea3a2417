/*
 * Logging to wherever efsession's messages belong: the journal under
 * systemd (through libsystemd, opened at the first entry; syslog if it
 * cannot be), syslog under inetd (where fd 2 is the connection itself),
 * coloured lines on a terminal, plain lines otherwise. Every entry carries
 * the context fields of the connection (PEER, CLIENT_ID, CLIENT_NAME,
 * REQUEST_CODE, FILE_NAME, FILE_SIZE) and its source file and line; an
 * entry about a limit, LIMIT too.
 */
#ifndef EF_LOG_H
#define EF_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

enum log_target {
	LOG_TARGET_AUTO,
	LOG_TARGET_JOURNAL,
	LOG_TARGET_SYSLOG,
	LOG_TARGET_TERMINAL,
	LOG_TARGET_STDERR,
};

/*
 * Choose the target (AUTO: journal if stderr is the journal stream, syslog
 * if stderr is a socket, terminal if a tty, plain stderr otherwise). When
 * the target is not stderr and stderr is a socket, fd 2 is pointed at
 * /dev/null so that no library can ever write into the connection.
 */
void log_open(const char *ident, enum log_target target);
enum log_target log_get_target(void);
int log_target_from_name(const char *name, enum log_target *out);

void log_set_level(int level);
int log_get_level(void);
/* "debug", "info", "notice", "warning", "err"/"error", "crit": 0 or -EINVAL. */
int log_level_from_name(const char *name, int *out);

/* Connection context, attached to every entry until changed; NULL or 0 clears. */
void log_context_peer(const char *peer);
void log_context_client(const uint8_t *id, const char *name);
void log_context_request(uint16_t code);
void log_context_file(const char *name, long long size);

__attribute__((format(printf, 5, 6))) void log_emit(int level, const char *file, int line, const char *func,
                                                    const char *fmt, ...);

/*
 * One entry about a request refused (or a connection closed) by a limit of
 * efsession(8): limit is the setting's name without its dashes
 * ("client-quota"), in the field LIMIT of that entry in the journal and as
 * " [LIMIT=client-quota]" at the end of a line elsewhere.
 */
__attribute__((format(printf, 6, 7))) void log_emit_limit(int level, const char *limit, const char *file, int line,
                                                          const char *func, const char *fmt, ...);

#define log_limit(level, limit, ...) log_emit_limit(level, limit, __FILE__, __LINE__, __func__, __VA_ARGS__)

#define log_debug(...)   log_emit(LOG_DEBUG, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_info(...)    log_emit(LOG_INFO, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_notice(...)  log_emit(LOG_NOTICE, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_warning(...) log_emit(LOG_WARNING, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_error(...)   log_emit(LOG_ERR, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_crit(...)    log_emit(LOG_CRIT, __FILE__, __LINE__, __func__, __VA_ARGS__)

/* Debug level only: a hex dump of at most max bytes of buf. Never pass a key. */
void log_hexdump(const char *what, const void *buf, size_t len, size_t max);

/*
 * The form of untrusted bytes a person may read (efserver-protocol(7),
 * Names): valid UTF-8 as it is, but \xNN for a control byte (C0, DEL), the
 * backslash and every byte that is not part of valid UTF-8, and \u{XX} for
 * a C1 control or a bidi control. At most 4 characters per byte; cut
 * short, with "...", when out_size is smaller. Returns out.
 */
#define LOG_ESCAPE_SIZE(len) (4 * (len) + 1)
const char *log_escape(const void *data, size_t len, char *out, size_t out_size);

#endif
