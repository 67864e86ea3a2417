/*
 * The client's files, in the seeds' formats: transfer.info (server, name,
 * files to send), me.info (name, client id, private key) and priv.key (the
 * private key). Errors come back as "file:line: what is wrong" text for the
 * caller to print.
 */
#ifndef EF_CLIENTCONF_H
#define EF_CLIENTCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyfile.h"
#include "wire.h"

#define CLIENTCONF_TRANSFER "transfer.info"
#define CLIENTCONF_ME       "me.info"
#define CLIENTCONF_PRIVKEY  "priv.key"
/* Caps on what is read: a list of paths, and a name, an id and one key. */
#define CLIENTCONF_TRANSFER_MAX (1024 * 1024)
#define CLIENTCONF_SECRET_MAX   (16 * 1024)
#define CLIENTCONF_ERROR_SIZE   1024

struct clientconf_error {
	char text[CLIENTCONF_ERROR_SIZE];
};

/*
 * "host:port" or "[IPv6]:port", port 1..65535. On success *host and *port
 * are new strings; on -EINVAL *why says what is wrong.
 */
int clientconf_parse_server(const char *s, size_t len, char **host, char **port, const char **why);

/* A client name as efserver-protocol(7), Names, wants it: 1-254 bytes of UTF-8, no control character. */
int clientconf_check_name(const char *s, size_t len, const char **why);

struct clientconf_transfer {
	char *host;
	char *port;
	char *name;   /* NULL when the file has no second line */
	char **files; /* relative paths are taken from the directory of transfer.info */
	size_t nfiles;
};

/* Read DIR/transfer.info. -ENOENT when it does not exist (err says so as well). */
int clientconf_read_transfer(const char *dir, struct clientconf_transfer *t, struct clientconf_error *err);
void clientconf_transfer_free(struct clientconf_transfer *t);

struct clientconf_identity {
	char name[WIRE_NAME_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	struct keyfile_rsa *key;
};

/*
 * Read DIR/me.info, and DIR/priv.key when me.info holds no key, or holds
 * the public key (as seed 000's client writes it), which the private key
 * in priv.key must match. -ENOENT when there is no me.info: no identity yet.
 */
int clientconf_read_identity(const char *dir, struct clientconf_identity *me, struct clientconf_error *err);
void clientconf_identity_free(struct clientconf_identity *me);

/* Write DIR/priv.key and DIR/me.info, each atomically and with mode 0600. */
int clientconf_write_identity(const char *dir, const char *name, const uint8_t id[WIRE_ID_SIZE],
                              const struct keyfile_rsa *key, struct clientconf_error *err);
/*
 * The same for a new identity, which replaces nothing: -EEXIST when either
 * file exists, and on any failure neither file is left.
 */
int clientconf_create_identity(const char *dir, const char *name, const uint8_t id[WIRE_ID_SIZE],
                               const struct keyfile_rsa *key, struct clientconf_error *err);

#endif
