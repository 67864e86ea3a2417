/* Full reads and writes with deadlines, on pipes and sockets alike. */
#ifndef EF_IO_H
#define EF_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Read len bytes within timeout_ms (for the whole call; negative: no
 * deadline). Returns the bytes read, fewer than len only at end of input,
 * or -ETIMEDOUT, or another negative errno.
 */
ssize_t io_read_full(int fd, void *buf, size_t len, int timeout_ms);

/* Milliseconds on the monotonic clock: what io_read_before's deadlines are in. */
int64_t io_now_ms(void);

/*
 * Read what has arrived, 1 to len bytes, waiting until the absolute
 * deadline (io_now_ms; negative: none) for the first of them. Returns the
 * bytes read, 0 at end of input, -ETIMEDOUT, or another negative errno.
 */
ssize_t io_read_before(int fd, void *buf, size_t len, int64_t deadline);

/* Write all of buf within timeout_ms (negative: no deadline). 0 or a negative errno. */
int io_write_full(int fd, const void *buf, size_t len, int timeout_ms);

#endif
