/*
 * test-peer: the source address registrations are counted by
 * (efsession(8), Limits) and the address the log shows, from the
 * addresses getpeername(2) gives: IPv4 as it is, IPv4-mapped IPv6 as IPv4,
 * any other IPv6 address as its /64 (one host's network), and a pipe or a
 * Unix socket as "local"; and from real descriptors, a pipe and a
 * socketpair.
 */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "peer.h"
#include "store.h"

#include "tap.h"

_Static_assert(PEER_SOURCE_SIZE <= STORE_SOURCE_SIZE, "every source fits its column");

static void is_peer(const struct peer *p, const char *address, const char *source, const char *what)
{
	if (!ok(strcmp(p->address, address) == 0 && strcmp(p->source, source) == 0, "%s", what))
		printf("#   got address \"%s\", source \"%s\"; want \"%s\", \"%s\"\n", p->address, p->source, address,
		       source);
}

static void v4(const char *addr, unsigned port, const char *address, const char *source, const char *what)
{
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct peer p;

	inet_pton(AF_INET, addr, &in.sin_addr);
	peer_of_address((struct sockaddr *)&in, sizeof(in), &p);
	is_peer(&p, address, source, what);
}

static void v6(const char *addr, unsigned port, const char *address, const char *source, const char *what)
{
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	struct peer p;

	inet_pton(AF_INET6, addr, &in6.sin6_addr);
	peer_of_address((struct sockaddr *)&in6, sizeof(in6), &p);
	is_peer(&p, address, source, what);
}

int main(void)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	struct sockaddr_in short_in = {.sin_family = AF_INET};
	struct peer p;
	int fds[2];

	v4("192.0.2.7", 40112, "192.0.2.7:40112", "192.0.2.7", "IPv4: the address is the source");
	v4("127.0.0.5", 1, "127.0.0.5:1", "127.0.0.5", "every loopback address is a source of its own");
	v6("::ffff:198.51.100.7", 5000, "[::ffff:198.51.100.7]:5000", "198.51.100.7",
	   "IPv4-mapped, as a dual-stack socket gives IPv4 clients: the IPv4 address is the source");
	v6("2001:db8:1:2:3:4:5:6", 80, "[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::/64", "IPv6: its /64 is the source");
	v6("2001:db8:1:2:ffff:ffff:ffff:ffff", 80, "[2001:db8:1:2:ffff:ffff:ffff:ffff]:80", "2001:db8:1:2::/64",
	   "another address of the same /64 is the same source");
	v6("2001:db8:1:3::1", 80, "[2001:db8:1:3::1]:80", "2001:db8:1:3::/64", "the next /64 is another source");
	v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
	   "ffff:ffff:ffff:ffff::/64", "the longest address and source fit");
	v6("::1", 9, "[::1]:9", "::/64", "IPv6 loopback");

	peer_of_address((struct sockaddr *)&un, sizeof(un), &p);
	is_peer(&p, "local", PEER_LOCAL, "a Unix socket is local");
	peer_of_address(NULL, 0, &p);
	is_peer(&p, "", PEER_LOCAL, "no address (a pipe) is local, with no address to log");
	peer_of_address((struct sockaddr *)&short_in, 2, &p);
	is_peer(&p, "", PEER_LOCAL, "an address cut short is read as none");

	if (pipe(fds) == 0) {
		peer_of_fd(fds[0], &p);
		is_peer(&p, "", PEER_LOCAL, "a pipe's descriptor");
		close(fds[0]);
		close(fds[1]);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0) {
		peer_of_fd(fds[0], &p);
		is_peer(&p, "local", PEER_LOCAL, "a socketpair's descriptor");
		close(fds[0]);
		close(fds[1]);
	}
	return tap_done();
}
