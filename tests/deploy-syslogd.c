/*
 * A minimal syslog daemon for the tests: binds an AF_UNIX datagram socket
 * at PATH (the tests give it /dev/log inside a private mount namespace) and
 * appends every message to OUT, one line each, until SIGTERM, until its
 * parent dies, or after a bounded lifetime.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LIFETIME_S 600
#define MSG_MAX    8192

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct sigaction act = {.sa_handler = on_signal};
	char msg[MSG_MAX + 1];
	time_t end = time(NULL) + LIFETIME_S;
	int s, out;

	if (argc != 3 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: deploy-syslogd SOCKET_PATH OUTPUT_FILE\n");
		return 100;
	}
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	memcpy(sa.sun_path, argv[1], strlen(argv[1]) + 1);
	(void)unlink(argv[1]);
	out = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (out < 0 || s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "deploy-syslogd: %s: %s\n", argv[1], strerror(errno));
		return 111;
	}
	(void)chmod(argv[1], 0666);
	while (!stop && time(NULL) < end) {
		struct pollfd p = {.fd = s, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 1000) <= 0)
			continue;
		n = recv(s, msg, MSG_MAX, 0);
		if (n <= 0)
			continue;
		/* One message, one line: an embedded newline would split it. */
		for (ssize_t i = 0; i < n; i++)
			if (msg[i] == '\n' || msg[i] == '\0')
				msg[i] = ' ';
		msg[n] = '\n';
		if (write(out, msg, (size_t)n + 1) < 0)
			break;
	}
	(void)unlink(argv[1]);
	return 0;
}
