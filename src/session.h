/*
 * One client connection: requests of both code sets read from in_fd,
 * responses written to out_fd, until the client closes (efserver-protocol(7)).
 * Tests drive it through a pipe or a socketpair.
 */
#ifndef EF_SESSION_H
#define EF_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cksum.h"
#include "store.h"

struct vault;
struct wire_dialect;

/* Bytes read, decrypted, checksummed and written per step of an upload. */
#define SESSION_CHUNK (256u * 1024)

struct session_config {
	enum cksum_algo checksum;
	unsigned idle_timeout;   /* seconds; 0: none */
	uint64_t max_file_size;  /* largest content_size (encrypted) accepted; 0: what the protocol allows */
	size_t aes_key_len;      /* 16 or 32 */
	uint64_t fault_checksum; /* report a wrong checksum for the first N uploads of each file */
	bool debug;              /* hex dumps of headers and payload starts */
	/* The standard dialect with the tolerances of --compat; NULL: wire_standard, strict. */
	const struct wire_dialect *dialect;
	/* --compat seed004: the dialect of a connection that opens as the seed-004 client's do; NULL: none. */
	const struct wire_dialect *seed004;
	bool registration_closed; /* 1025/1100 refused: clients are provisioned with efctl add-client */
	/* The limits of efsession(8), Limits; 0 turns each off. */
	const char *source;         /* the connection's source address; NULL: registrations not counted by source */
	struct store_limits limits; /* those the store decides, in the transactions they guard */
	uint64_t min_free_space;    /* bytes an upload must leave free on the state directory's file system */
	uint64_t max_refusals;      /* the Nth refusal on one connection closes it */
	uint64_t min_rate;          /* bytes a second an upload's content must average, past its grace */
};

/* How a session ended; efsession's exit status. */
enum session_end {
	SESSION_DONE = 0,       /* the client closed the connection between requests */
	SESSION_PEER_ERROR = 1, /* refused framing, timeout, or a connection dropped mid-request */
	SESSION_SYSTEM_ERROR = 111,
};

/*
 * Serve one connection. st or v may be NULL when the state could not be
 * opened: every request is then answered with 2107 and the connection closed.
 */
enum session_end session_run(const struct session_config *cfg, struct store *st, struct vault *v, int in_fd,
                             int out_fd);

#endif
