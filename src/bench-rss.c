/*
 * bench-rss: run a program as a child and, when it ends, append its peak
 * resident set size (KiB, from wait4), its exit status and the CPU seconds
 * it used (user, system) to a log, then exit as it did. make bench starts
 * efsession through it to learn its peak memory and CPU per connection.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	struct rusage ru;
	char line[128];
	pid_t pid;
	int status, fd, r, n;

	if (argc < 3) {
		fprintf(stderr, "Usage: bench-rss LOG PROGRAM [ARGUMENT]...\n");
		return 100;
	}
	/* posix_spawn shares our small address space until exec, so nothing of ours is counted as the child's. */
	if ((r = posix_spawn(&pid, argv[2], NULL, NULL, argv + 2, environ)) != 0) {
		fprintf(stderr, "bench-rss: %s: %s\n", argv[2], strerror(r));
		return 111;
	}
	/* The connection must end when the child closes it, not when we exit. */
	if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
		(void)dup2(fd, STDIN_FILENO);
		(void)dup2(fd, STDOUT_FILENO);
		close(fd);
	}
	while (wait4(pid, &status, 0, &ru) < 0)
		if (errno != EINTR)
			return 111;
	n = snprintf(line, sizeof(line), "%ld %d %ld.%06ld %ld.%06ld\n", ru.ru_maxrss,
	             WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), (long)ru.ru_utime.tv_sec,
	             (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
	/* One short O_APPEND write: lines of concurrent connections never mix. A lost line is a failure. */
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || n < 0 || (size_t)n >= sizeof(line) || write(fd, line, (size_t)n) != n)
		r = 111;
	else
		r = WIFEXITED(status) ? WEXITSTATUS(status) : 111;
	if (fd >= 0)
		close(fd);
	return r;
}
