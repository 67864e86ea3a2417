/* Strict parsing of option values, and the defaults, shared by the programs. */
#ifndef EF_OPTS_H
#define EF_OPTS_H

#include <stdint.h>

/* A decimal number in [min, max], nothing else around it: 0 or -EINVAL / -ERANGE. */
int opts_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* A size with an optional K, M, G suffix (powers of 1024) in [min, max]. */
int opts_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* "12.4 MiB": a human-readable size. */
const char *opts_human_size(uint64_t bytes, char *buf, unsigned long size);

/*
 * The defaults of the limits that efctl(8) usage measures against as
 * efsession(8) does: it cannot read the options a session runs with.
 */
#define OPTS_CLIENT_QUOTA_DEFAULT   0
#define OPTS_MIN_FREE_SPACE_DEFAULT (1024ull * 1024 * 1024)

/* The code set efclient and efbench speak unless told otherwise (efserver-protocol(7), Requests). */
#define OPTS_CODE_SET_DEFAULT 1025

/* "1025" or "1100", the two code sets: 0, or -EINVAL for anything else. */
int opts_parse_code_set(const char *s, unsigned *out);

/*
 * --compat LIST of efsession(8) and efclient(1): a comma-separated list of
 * seed004, content-after, short-name and all (seed004 and content-after,
 * every name that combines with the others), as efserver-protocol(7),
 * "Dialects and tolerances", names them. 0 and *out, or -EINVAL and *why.
 */
enum {
	OPTS_COMPAT_SEED004 = 1 << 0,
	OPTS_COMPAT_CONTENT_AFTER = 1 << 1,
	OPTS_COMPAT_SHORT_NAME = 1 << 2,
	OPTS_COMPAT_ALL = OPTS_COMPAT_SEED004 | OPTS_COMPAT_CONTENT_AFTER,
};
int opts_parse_compat(const char *list, unsigned *out, const char **why);

/*
 * The state directory of efsession(8) and efctl(8): the one given on the
 * command line, else the first entry of $STATE_DIRECTORY (systemd's
 * StateDirectory=, a colon-separated list), else EF_STATE_DIR. *out is
 * for the caller to free. 0 or -ENOMEM.
 */
int opts_state_dir(const char *given, char **out);

/* The credential of systemd that gives efsession(8) and efctl(8) their database. */
#define OPTS_DATABASE_CREDENTIAL "efserver-database.url"
/* The environment variable that does, where no --database is given. */
#define OPTS_DATABASE_ENV "EFSERVER_DATABASE"
/* Where the database comes from, as a message about it names them. */
#define OPTS_DATABASE_SOURCES "--database, $" OPTS_DATABASE_ENV " or the " OPTS_DATABASE_CREDENTIAL " credential"
/* What a build without the PostgreSQL engine answers to a PostgreSQL database. */
#define OPTS_NO_POSTGRESQL                                                                                             \
	"this program was built without PostgreSQL: install libpq-dev and build it with ./configure --with-postgresql"

/*
 * The database of efsession(8) and efctl(8): the one given with --database,
 * else $EFSERVER_DATABASE, else the efserver-database.url credential of
 * systemd (in $CREDENTIALS_DIRECTORY), each a libpq URI (postgresql://...
 * or postgres://...); *out NULL when none is set: SQLite in the state
 * directory. *out is for the caller to free. 0; -EINVAL with *why for
 * something else than a PostgreSQL URI, or a credential that cannot be
 * read; -EPROTONOSUPPORT (OPTS_NO_POSTGRESQL) in a build without PostgreSQL.
 * The URI may hold a password: never print it.
 */
int opts_database(const char *given, char **out, const char **why);

#endif
