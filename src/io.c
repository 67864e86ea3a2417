/*
 * Full reads and writes on pipes and sockets, each under a deadline, so that
 * a peer that goes quiet never holds a process (efsession(8), --idle-timeout).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "io.h"

int64_t io_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events or the deadline passes. */
static int wait_ready(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int64_t left;
	int r;

	for (;;) {
		left = deadline - io_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t io_read_before(int fd, void *buf, size_t len, int64_t deadline)
{
	ssize_t n;
	int r;

	for (;;) {
		if (deadline >= 0 && (r = wait_ready(fd, POLLIN, deadline)) < 0)
			return r;
		n = read(fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
	}
}

ssize_t io_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = timeout_ms >= 0 ? io_now_ms() + timeout_ms : -1;
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = io_read_before(fd, (char *)buf + got, len - got, deadline);
		if (n == 0)
			break;
		if (n < 0)
			return n;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int io_write_full(int fd, const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = timeout_ms >= 0 ? io_now_ms() + timeout_ms : 0;
	size_t done = 0;
	ssize_t n;
	int r;

	while (done < len) {
		if (timeout_ms >= 0 && (r = wait_ready(fd, POLLOUT, deadline)) < 0)
			return r;
		n = write(fd, (const char *)buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}
