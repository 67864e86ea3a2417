/*
 * The other end of a connection, as the log shows it and as the limits of
 * efsession(8) count it.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "peer.h"

/* The bytes of an IPv6 address that name its /64, the network a host is given. */
#define PEER_V6_PREFIX 8

void peer_of_address(const struct sockaddr *sa, socklen_t len, struct peer *out)
{
	char host[INET6_ADDRSTRLEN] = "?";
	struct in6_addr net;

	out->address[0] = '\0';
	snprintf(out->source, sizeof(out->source), "%s", PEER_LOCAL);
	if (!sa)
		return;
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out->address, sizeof(out->address), "%s:%u", host, ntohs(in->sin_port));
		snprintf(out->source, sizeof(out->source), "%s", host);
	} else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out->address, sizeof(out->address), "[%s]:%u", host, ntohs(in6->sin6_port));
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof(host));
			snprintf(out->source, sizeof(out->source), "%s", host);
		} else {
			net = in6->sin6_addr;
			memset(&net.s6_addr[PEER_V6_PREFIX], 0, sizeof(net.s6_addr) - PEER_V6_PREFIX);
			inet_ntop(AF_INET6, &net, host, sizeof(host));
			snprintf(out->source, sizeof(out->source), "%s/%d", host, 8 * PEER_V6_PREFIX);
		}
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(out->address, sizeof(out->address), "%s", PEER_LOCAL);
	}
}

void peer_of_fd(int fd, struct peer *out)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		peer_of_address(NULL, 0, out);
	else
		peer_of_address((struct sockaddr *)&ss, len, out);
}
