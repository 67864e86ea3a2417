/*
 * The other end of a connection: its address for the log (PEER), and its
 * source, by which registrations are counted (efsession(8), Limits).
 */
#ifndef EF_PEER_H
#define EF_PEER_H

#include <netinet/in.h>
#include <sys/socket.h>

/* "[IPv6 address]:port" at the longest. */
#define PEER_ADDRESS_SIZE (INET6_ADDRSTRLEN + 8)
/* An IPv6 /64 at the longest: eight groups' worth of digits, "::/64" and a NUL. */
#define PEER_SOURCE_SIZE 48
/* The source of a pipe or a Unix socket: all of them are one. */
#define PEER_LOCAL "local"

struct peer {
	char address[PEER_ADDRESS_SIZE]; /* "a.b.c.d:port" or "[v6]:port"; "local" on a Unix socket, "" on a pipe */
	char source[PEER_SOURCE_SIZE];
};

/*
 * The peer of an address getpeername(2) gave (NULL: none, a pipe). Its
 * source: an IPv4 address as a.b.c.d, also when a dual-stack socket gives
 * it IPv4-mapped; an IPv6 address as its /64 ("2001:db8:1:2::/64"), since
 * one host commonly holds a whole /64; anything else, PEER_LOCAL.
 */
void peer_of_address(const struct sockaddr *sa, socklen_t len, struct peer *out);
/* The peer on the other end of fd. */
void peer_of_fd(int fd, struct peer *out);

#endif
