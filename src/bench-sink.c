/*
 * bench-sink: the trivial server that make bench measures efsession
 * against. Per connection on stdin/stdout (inetd style), it reads each
 * request by its header's payload_size and answers 7 bytes (2104, no
 * payload), doing nothing else; with --store DIR it also writes the payload
 * of each file request (1028, 1103) into a new file in DIR and fsyncs it
 * and DIR before answering, as any server that keeps a file must. With
 * --writeback as well, it starts writeback every few MiB as it goes, so
 * that the disk works while the data still arrives.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire.h"

#define SINK_BUF       (1024u * 1024)
#define SINK_WRITEBACK (8u * 1024 * 1024)

static int read_full(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, buf + got, len - got);
		if (n == 0)
			return got == 0 ? 0 : -EPIPE;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	return 1;
}

static int write_full(int fd, const uint8_t *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static bool writeback;

/* Copy len bytes of the connection into out (-1: nowhere), a buffer at a time. */
static int copy(int in, int out, uint8_t *buf, uint64_t len)
{
	uint64_t written = 0, flushed = 0;
	size_t step;
	int r;

	while (len > 0) {
		step = len < SINK_BUF ? (size_t)len : SINK_BUF;
		if ((r = read_full(in, buf, step)) <= 0)
			return r == 0 ? -EPIPE : r;
		len -= step;
		if (out < 0)
			continue;
		if ((r = write_full(out, buf, step)) < 0)
			return r;
		written += step;
		if (writeback && written - flushed >= SINK_WRITEBACK) {
			(void)sync_file_range(out, (off_t)flushed, (off_t)(written - flushed), SYNC_FILE_RANGE_WRITE);
			flushed = written;
		}
	}
	return 0;
}

static int store(int dir, int in, uint8_t *buf, uint64_t len, unsigned seq)
{
	char name[64];
	int fd, r;

	snprintf(name, sizeof(name), "sink-%ld-%u", (long)getpid(), seq);
	fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = copy(in, fd, buf, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && fsync(dir) < 0)
		r = -errno;
	return r;
}

int main(int argc, char **argv)
{
	uint8_t head[WIRE_REQUEST_HEADER_SIZE], answer[WIRE_RESPONSE_HEADER_SIZE], *buf;
	unsigned seq = 0;
	uint16_t code;
	uint32_t size;
	int dir = -1, r;

	writeback = argc == 4 && strcmp(argv[3], "--writeback") == 0;
	if (argc != 1 && !((argc == 3 || writeback) && strcmp(argv[1], "--store") == 0)) {
		fprintf(stderr, "Usage: bench-sink [--store DIR [--writeback]]\n");
		return 100;
	}
	if (argc > 1 && (dir = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "bench-sink: %s: %s\n", argv[2], strerror(errno));
		return 111;
	}
	if (!(buf = malloc(SINK_BUF)))
		return 111;
	answer[0] = WIRE_SERVER_VERSION;
	wire_put_u16(answer + 1, RESP_ACK);
	wire_put_u32(answer + 3, 0);
	while ((r = read_full(STDIN_FILENO, head, sizeof(head))) > 0) {
		code = wire_get_u16(head + WIRE_ID_SIZE + 1);
		size = wire_get_u32(head + WIRE_ID_SIZE + 3);
		if (dir >= 0 && (code == REQ_FILE || code == REQ_FILE_1100))
			r = store(dir, STDIN_FILENO, buf, size, seq++);
		else
			r = copy(STDIN_FILENO, -1, buf, size);
		if (r < 0 || (r = write_full(STDOUT_FILENO, answer, sizeof(answer))) < 0)
			break;
	}
	free(buf);
	if (r < 0) {
		fprintf(stderr, "bench-sink: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}
