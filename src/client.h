/*
 * The protocol client: connects to efsession, registers or reconnects,
 * exchanges keys and uploads files, streamed and checksummed in one pass,
 * with the resend rules of efserver-protocol(7), "Uploads, resends and
 * giving up", in the standard dialect or the seed-004 one, to servers that
 * keep a connection or close it after every response ("Dialects and
 * tolerances"). It prints nothing: a failed call returns a negative errno and
 * leaves the details in client_error() for the caller to put into words.
 * The program must ignore SIGPIPE: a server that hangs up is an error to
 * report, not a signal.
 */
#ifndef EF_CLIENT_H
#define EF_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cksum.h"
#include "keyfile.h"
#include "wire.h"

enum client_code_set {
	CLIENT_SET_1025 = 1025,
	CLIENT_SET_1100 = 1100,
};

#define CLIENT_RETRIES_DEFAULT 3
#define CLIENT_RETRIES_MAX     100
#define CLIENT_TIMEOUT_DEFAULT 30 /* seconds, for connecting and for every read and write */
#define CLIENT_TIMEOUT_MAX     86400
/* No response the client expects has more payload than 2103 or a 4096-bit key; anything above is refused. */
#define CLIENT_RESPONSE_MAX 1024

struct client_params {
	const char *host;
	const char *port;
	enum client_code_set code_set;
	enum cksum_algo algo;
	unsigned retries; /* resends after a checksum mismatch before giving up */
	unsigned timeout_seconds;
	bool connection_per_request;
	/*
	 * The seed-004 dialect (code set 1100, crc32): every connection opens with
	 * 1100 and 1101 and carries one file.
	 */
	bool seed004;
};

/* Progress of an upload: plaintext bytes sent so far of total; attempt counts from 1. */
typedef void client_progress_fn(void *ctx, const char *name, unsigned attempt, uint64_t done, uint64_t total);
/* A checksum mismatch on an attempt; a resend or the give-up follows. */
typedef void client_mismatch_fn(void *ctx, const char *name, unsigned attempt, uint32_t ours, uint32_t theirs);
/* The server closed the connection after its last response: request goes out on a new one. */
typedef void client_reopen_fn(void *ctx, uint16_t request);

struct client_hooks {
	void *ctx;
	client_progress_fn *progress;
	client_mismatch_fn *mismatch;
	client_reopen_fn *reopened;
};

enum client_failure {
	CLIENT_FAIL_NONE,
	CLIENT_FAIL_RESOLVE,  /* detail: the resolver's message */
	CLIENT_FAIL_CONNECT,  /* err: why no address could be reached */
	CLIENT_FAIL_NETWORK,  /* err: 0 when the server closed the connection, ETIMEDOUT, or a socket error */
	CLIENT_FAIL_REFUSED,  /* response: the server's refusal (2101, 2106, 2107) */
	CLIENT_FAIL_PROTOCOL, /* response (0 if none yet), detail: what in it is wrong */
	CLIENT_FAIL_CHECKSUM, /* the checksum still differed after every resend; the file was given up */
	CLIENT_FAIL_LOCAL,    /* err: reading the file, or a cryptographic failure */
};

struct client_error {
	enum client_failure failure;
	int err;
	uint16_t request;  /* the request it happened to (0: while connecting) */
	uint16_t response; /* the response received, if any */
	char detail[160];
};

/* A file checked before connecting: it is readable, small enough, and its base name is a valid file name. */
struct client_file {
	const char *path;
	char name[WIRE_NAME_SIZE]; /* the base name sent to the server */
	uint64_t size;
};

struct client;

int client_new(struct client **out, const struct client_params *params, const struct client_hooks *hooks);
/* Closes the connection, wipes the AES key. */
void client_free(struct client *c);
const struct client_error *client_error(const struct client *c);

/* The largest plaintext the code set's u32 payload_size can carry once padded. */
uint64_t client_max_file_size(enum client_code_set set);
/* The longest base name a file may have: 254 bytes, 250 in the seed-004 dialect (it appends ".enc"). */
size_t client_max_name(bool seed004);

/*
 * Check path before connecting. -ENOENT and friends from open/stat, -EISDIR
 * or -EINVAL (not a regular file), -EFBIG (too large for the protocol),
 * -ENAMETOOLONG or -EILSEQ (base name longer than client_max_name(), or
 * empty, "." or "..", or holding a control character).
 */
int client_check_file(const char *path, enum client_code_set set, bool seed004, struct client_file *f);

/* 1025/1100: register name. -EEXIST when the server refuses it (2101). */
int client_register(struct client *c, const char *name, uint8_t id[WIRE_ID_SIZE]);

/*
 * 1026/1101: send the public key of key, receive and decrypt the AES key for
 * the uploads. In the seed-004 dialect a connection opens with a 1100 first
 * (the server knows the name: 2101), and name, id and key are kept to open
 * the next connection the same way: key must stay valid until client_free.
 */
int client_send_public_key(struct client *c, const char *name, const uint8_t id[WIRE_ID_SIZE],
                           const struct keyfile_rsa *key);

/* 1027: reconnect as name and id, receive and decrypt a fresh AES key. -EPERM on 2106. */
int client_reconnect(struct client *c, const char *name, const uint8_t id[WIRE_ID_SIZE], const struct keyfile_rsa *key);

/*
 * Upload one file and settle its checksum: on a mismatch resend up to
 * params.retries times, then give up (1031/1106) and return -EBADMSG.
 * *attempts tells how many uploads it took.
 */
int client_upload(struct client *c, const struct client_file *f, unsigned *attempts);

/* Close the connection (the server sees a clean end). */
void client_close(struct client *c);

#endif
