/*
 * The PostgreSQL engine of the store (db.h): one database shared by the
 * efsession processes of any number of hosts. Each process has one
 * connection. A write transaction is READ COMMITTED and starts by taking a
 * transaction-level advisory lock: the one of the client it concerns, or
 * the one of registration (names, the count of clients, registrations per
 * source). Writers that could decide from the same rows thus wait for each
 * other, as SQLite's one writer at a time makes them; no transaction takes
 * two of these locks, so they never wait in a cycle, and the rows they
 * share (table totals) are taken once each, last. Statements are unnamed
 * (parsed with their parameters in the round trip that runs them), so that
 * a connection prepares nothing it does not use and a pooler in
 * transaction mode can stand between; results come in binary.
 */
#include "config.h"

#include <dlfcn.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "db.h"
#include "failure.h"

#define PG_TIMEOUT_DEFAULT_MS 60000
#define PG_CONNECT_TIMEOUT_S  "10"
/* How long a server that cannot be connected to is tried again. */
#define PG_RECONNECT_MS 10000
/*
 * A server that stops answering is given up (every read under a deadline):
 * data unacknowledged for a minute, or a silent connection after 10 s and
 * three unanswered probes 5 s apart. The URI may say otherwise.
 */
#define PG_TCP_USER_TIMEOUT_MS   "60000"
#define PG_KEEPALIVES_IDLE_S     "10"
#define PG_KEEPALIVES_INTERVAL_S "5"
#define PG_KEEPALIVES_COUNT      "3"
/* The advisory locks of the two-key space: registration, and the schema's creation or migration. */
#define PG_LOCK_CLASS        1701213811
#define PG_LOCK_REGISTRATION 1
#define PG_LOCK_SCHEMA       2
#define PG_SQL_SIZE          256
#define PG_NOTE_SIZE         512

/* The parameter types of pg_bind_*, as pg_type knows them. */
#define PG_BYTEA 17
#define PG_INT8  20
#define PG_TEXT  25

/* ISO 8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.000Z, on the database's clock. */
#define PG_TIME(t) "to_char((" t ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define SQL_NOW    PG_TIME("statement_timestamp()")
/* An hour before: what the counts of the last hour start after. */
#define SQL_HOUR_AGO PG_TIME("statement_timestamp() - interval '1 hour'")

/*
 * Schema version 3 of SQLite's, with the same columns, constraints and
 * counters (which the store keeps): bytea for blobs, bigint for integers,
 * and text compared byte by byte (COLLATE "C") as SQLite does.
 */
static const char schema_v3[] =
    "CREATE TABLE clients (\n"
    "	id bytea NOT NULL PRIMARY KEY CHECK (length(id) = 16),\n"
    "	name text COLLATE \"C\" NOT NULL UNIQUE CHECK (octet_length(name) BETWEEN 1 AND 254),\n"
    "	public_key bytea CHECK (public_key IS NULL OR length(public_key) BETWEEN 1 AND 1100),\n"
    "	aes_key bytea CHECK (aes_key IS NULL OR length(aes_key) BETWEEN 1 AND 32),\n"
    "	registered text COLLATE \"C\" NOT NULL,\n"
    "	last_seen text COLLATE \"C\" NOT NULL,\n"
    "	stored_bytes bigint NOT NULL DEFAULT 0 CHECK (stored_bytes >= 0),\n"
    "	stored_files bigint NOT NULL DEFAULT 0 CHECK (stored_files >= 0)\n"
    ");\n"
    "CREATE TABLE files (\n"
    "	client_id bytea NOT NULL REFERENCES clients (id) ON DELETE CASCADE,\n"
    "	file_name text COLLATE \"C\" NOT NULL CHECK (octet_length(file_name) BETWEEN 1 AND 254),\n"
    "	path_name text COLLATE \"C\" NOT NULL CHECK (octet_length(path_name) BETWEEN 1 AND 511),\n"
    "	verified integer NOT NULL CHECK (verified IN (0, 1)),\n"
    "	status integer NOT NULL CHECK (status IN (0, 1)),\n"
    "	size bigint NOT NULL CHECK (size >= 0),\n"
    "	checksum bigint NOT NULL CHECK (checksum BETWEEN 0 AND 4294967295),\n"
    "	attempts bigint NOT NULL CHECK (attempts >= 1),\n"
    "	received text COLLATE \"C\" NOT NULL,\n"
    "	pending_name text COLLATE \"C\" CHECK (pending_name IS NULL OR octet_length(pending_name) = 32),\n"
    "	pending_size bigint CHECK (pending_size IS NULL OR pending_size >= 0),\n"
    "	pending_checksum bigint CHECK (pending_checksum IS NULL OR pending_checksum BETWEEN 0 AND 4294967295),\n"
    "	pending_received text COLLATE \"C\",\n"
    "	PRIMARY KEY (client_id, path_name),\n"
    "	CHECK (verified = 0 OR status = 0),\n"
    "	CHECK ((pending_received IS NULL) = (pending_name IS NULL) AND (pending_size IS NULL) = (pending_name IS "
    "NULL)\n"
    "		AND (pending_checksum IS NULL) = (pending_name IS NULL)\n"
    "		AND (pending_name IS NULL OR (verified = 1 AND status = 0)))\n"
    ");\n"
    "CREATE TABLE totals (\n"
    "	one integer NOT NULL PRIMARY KEY CHECK (one = 1),\n"
    "	clients bigint NOT NULL CHECK (clients >= 0)\n"
    ");\n"
    "INSERT INTO totals (one, clients) SELECT 1, count(*) FROM clients;\n"
    "CREATE TABLE registrations (\n"
    "	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "	source text COLLATE \"C\" NOT NULL CHECK (octet_length(source) BETWEEN 1 AND 63),\n"
    "	at text COLLATE \"C\" NOT NULL\n"
    ");\n"
    "CREATE INDEX registrations_by_source ON registrations (source, at);\n"
    "CREATE INDEX registrations_by_time ON registrations (at);\n"
    "CREATE TABLE bad_paddings (\n"
    "	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "	client_id bytea NOT NULL REFERENCES clients (id) ON DELETE CASCADE,\n"
    "	at text COLLATE \"C\" NOT NULL\n"
    ");\n"
    "CREATE INDEX bad_paddings_by_client ON bad_paddings (client_id, at);\n"
    "CREATE INDEX bad_paddings_by_time ON bad_paddings (at);\n"
    "CREATE TABLE efserver_schema (\n"
    "	one integer NOT NULL PRIMARY KEY CHECK (one = 1),\n"
    "	version integer NOT NULL\n"
    ");\n"
    "INSERT INTO efserver_schema (one, version) VALUES (1, 0);\n";

/* Step n takes the schema from the version before it to version n; PostgreSQL's first was 3. */
static const struct migration {
	int version;
	const char *sql;
} migrations[] = {
    {3, schema_v3},
};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == 1 && STORE_SCHEMA_VERSION == 3,
               "one migration step per schema version since the first");

static const char *const pg_sql[ST_COUNT] = {
    [ST_CLIENT_INSERT] =
        "INSERT INTO clients (id, name, public_key, registered, last_seen) VALUES ($1, $2, $3, " SQL_NOW ", " SQL_NOW
        ")",
    [ST_CLIENT_BY_ID] = "SELECT " DB_CLIENT_COLUMNS " FROM clients WHERE id = $1",
    [ST_CLIENT_BY_NAME] = "SELECT " DB_CLIENT_COLUMNS " FROM clients WHERE name = $1",
    [ST_CLIENT_TOUCH] = "UPDATE clients SET last_seen = " SQL_NOW " WHERE id = $1 RETURNING name",
    [ST_CLIENT_KEYS] = "SELECT name, public_key FROM clients WHERE id = $1",
    [ST_CLIENT_SET_KEYS] =
        "UPDATE clients SET public_key = coalesce(public_key, $2), aes_key = $3, last_seen = " SQL_NOW " WHERE id = $1",
    [ST_CLIENT_SET_AES] =
        "UPDATE clients SET aes_key = $2, last_seen = " SQL_NOW " WHERE id = $1 AND public_key IS NOT NULL",
    [ST_CLIENT_DROP_AES] = "UPDATE clients SET aes_key = NULL WHERE id = $1 AND aes_key = $2",
    [ST_FILE_GET] = "SELECT " DB_FILE_COLUMNS " FROM files WHERE client_id = $1 AND path_name = $2",
    [ST_FILE_UPSERT] = "INSERT INTO files AS f (client_id, file_name, path_name, verified, status, size, checksum, "
                       "attempts, received) VALUES ($1, $2, $3, 0, 0, $4, $5, 1, " SQL_NOW ")\n"
                       "ON CONFLICT (client_id, path_name) DO UPDATE SET\n"
                       "	attempts = CASE WHEN f.file_name = excluded.file_name THEN f.attempts + 1 ELSE 1 END,\n"
                       "	file_name = excluded.file_name, verified = 0, status = 0, size = excluded.size,\n"
                       "	checksum = excluded.checksum, received = excluded.received",
    [ST_FILE_ASIDE] = "UPDATE files SET attempts = CASE WHEN file_name = $3 THEN attempts + 1 ELSE 1 END,\n"
                      "	file_name = $3, pending_name = $4, pending_size = $5, pending_checksum = $6,\n"
                      "	pending_received = " SQL_NOW " WHERE client_id = $1 AND path_name = $2",
    [ST_FILE_ATTEMPTS] = "SELECT attempts FROM files WHERE client_id = $1 AND path_name = $2",
    [ST_FILE_VERIFY] = "UPDATE files SET verified = 1 WHERE client_id = $1 AND path_name = $2",
    [ST_FILE_PROMOTE] = "UPDATE files SET size = pending_size, checksum = pending_checksum,\n"
                        "	received = pending_received, " DB_PENDING_CLEARED "\n"
                        "	WHERE client_id = $1 AND path_name = $2 AND pending_name = $3",
    [ST_FILE_DISCARD] =
        "UPDATE files SET " DB_PENDING_CLEARED " WHERE client_id = $1 AND path_name = $2 AND pending_name = $3",
    [ST_FILE_GIVE_UP] = "UPDATE files SET status = 1, verified = 0 WHERE client_id = $1 AND path_name = $2",
    [ST_FILE_PENDING_REF] = "SELECT 1 FROM files WHERE client_id = $1 AND pending_name = $2",
    [ST_CLIENT_DELETE] = "DELETE FROM clients WHERE id = $1",
    [ST_FILE_DELETE] = "DELETE FROM files WHERE client_id = $1 AND path_name = $2 AND status = 0",
    [ST_FILE_COUNT] = "SELECT count(*) FROM files WHERE client_id = $1",
    [ST_CLIENT_TOTAL] = "SELECT clients FROM totals",
    [ST_CLIENT_COUNT] = "UPDATE totals SET clients = clients + $1",
    [ST_CLIENT_USAGE] = "SELECT stored_bytes, stored_files FROM clients WHERE id = $1",
    [ST_CLIENT_ACCOUNT] =
        "UPDATE clients SET stored_bytes = stored_bytes + $2, stored_files = stored_files + $3 WHERE id = $1",
    [ST_REGISTRATIONS_PRUNE] =
        "DELETE FROM registrations WHERE id IN (SELECT id FROM registrations WHERE at <= " SQL_HOUR_AGO
        " ORDER BY at LIMIT " DB_PRUNE_BATCH ")",
    [ST_REGISTRATIONS_COUNT] =
        "SELECT count(*) FROM (SELECT 1 FROM registrations WHERE source = $1 AND at > " SQL_HOUR_AGO
        " LIMIT $2) AS recent",
    [ST_REGISTRATION_ADD] = "INSERT INTO registrations (source, at) VALUES ($1, " SQL_NOW ")",
    [ST_BAD_PADDINGS_PRUNE] =
        "DELETE FROM bad_paddings WHERE id IN (SELECT id FROM bad_paddings WHERE at <= " SQL_HOUR_AGO
        " ORDER BY at LIMIT " DB_PRUNE_BATCH ")",
    [ST_BAD_PADDING_ADD] = "INSERT INTO bad_paddings (client_id, at) SELECT id, " SQL_NOW " FROM clients WHERE id = $1",
    [ST_UPLOAD_CHECK] =
        "SELECT c.stored_bytes, c.stored_files, f.status, f.verified, f.size, f.pending_size,\n"
        "	(SELECT count(*) FROM (SELECT 1 FROM bad_paddings WHERE client_id = $1 AND at > " SQL_HOUR_AGO
        "		LIMIT $3) AS recent)\n"
        "FROM clients AS c LEFT JOIN files AS f ON f.client_id = c.id AND f.path_name = $2 WHERE c.id = $1",
    /* A row of each table as another database holds it (store_copy): the counters follow from the rows. */
    [ST_COPY_CLIENT] = "INSERT INTO clients (id, name, public_key, aes_key, last_seen, registered) "
                       "VALUES ($1, $2, $3, $4, $5, $6)",
    [ST_COPY_FILE] =
        "INSERT INTO files (" DB_FILE_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    [ST_COPY_REGISTRATION] = "INSERT INTO registrations (source, at) VALUES ($1, $2)",
    [ST_COPY_BAD_PADDING] = "INSERT INTO bad_paddings (client_id, at) VALUES ($1, $2)",
    [ST_EACH_CLIENT] = "SELECT " DB_CLIENT_COLUMNS " FROM clients ORDER BY name",
    [ST_EACH_FILE] = "SELECT " DB_FILE_COLUMNS " FROM files ORDER BY client_id, path_name",
    [ST_EACH_FILE_OF] = "SELECT " DB_FILE_COLUMNS " FROM files WHERE client_id = $1 ORDER BY path_name",
    [ST_EACH_USAGE] = "SELECT id, name, stored_bytes, stored_files,\n"
                      "	(SELECT count(*) FROM files WHERE client_id = clients.id AND pending_name IS NOT NULL),\n"
                      "	(SELECT count(*) FROM bad_paddings WHERE client_id = clients.id AND at > " SQL_HOUR_AGO ")\n"
                      "FROM clients ORDER BY name",
    [ST_EACH_SOURCE] = "SELECT source, count(*) AS n FROM registrations WHERE at > " SQL_HOUR_AGO
                       " GROUP BY source ORDER BY n DESC, source",
    [ST_REPAIR_CANDIDATES] = "SELECT " DB_FILE_COLUMNS " FROM files WHERE pending_name IS NOT NULL",
    [ST_COPY_CLIENTS] = "SELECT " DB_CLIENT_COLUMNS ", registered FROM clients ORDER BY id",
    [ST_COPY_REGISTRATIONS] = "SELECT source, at FROM registrations ORDER BY id",
    [ST_COPY_BAD_PADDINGS] = "SELECT client_id, at FROM bad_paddings ORDER BY id",
};

struct pg_stmt {
	struct db_stmt base;
	enum stmt_id id;
	int nparams; /* the highest $n of its text; -1: not counted yet */
	Oid types[DB_PARAMS_MAX];
	const char *values[DB_PARAMS_MAX];
	int lengths[DB_PARAMS_MAX];
	int formats[DB_PARAMS_MAX];
	uint64_t ints[DB_PARAMS_MAX]; /* big-endian */
	int bind_error;
	PGresult *res;
	int row, rows;
	long long changes;
};

struct pg_db {
	struct db base;
	PGconn *conn;
	bool readonly;
	bool in_tx;
	long long txid; /* of the open transaction, to learn the outcome of a COMMIT the connection lost */
	int backend;    /* the server process of the connection that began it */
	int timeout_ms;
	struct pg_stmt stmt[ST_ITERATE_FIRST];
};

static const struct db_ops pg_ops;

/*
 * libpq, loaded when a PostgreSQL database is first opened, so that a
 * session on SQLite loads neither it nor the libraries it links in turn.
 */
#define PQ_FUNCTIONS(X)                                                                                                \
	X(PQconnectdbParams)                                                                                           \
	X(PQstatus)                                                                                                    \
	X(PQerrorMessage)                                                                                              \
	X(PQreset)                                                                                                     \
	X(PQfinish)                                                                                                    \
	X(PQexecParams)                                                                                                \
	X(PQexec)                                                                                                      \
	X(PQresultStatus)                                                                                              \
	X(PQresultErrorField)                                                                                          \
	X(PQclear)                                                                                                     \
	X(PQntuples)                                                                                                   \
	X(PQnfields)                                                                                                   \
	X(PQgetvalue)                                                                                                  \
	X(PQgetlength)                                                                                                 \
	X(PQgetisnull)                                                                                                 \
	X(PQcmdTuples)                                                                                                 \
	X(PQcmdStatus)                                                                                                 \
	X(PQsetNoticeProcessor)                                                                                        \
	X(PQconninfoParse)                                                                                             \
	X(PQconninfoFree)                                                                                              \
	X(PQfreemem)                                                                                                   \
	X(PQbackendPID)
#define PQ_MEMBER(f) __typeof__(&f) f;
static struct {
	PQ_FUNCTIONS(PQ_MEMBER)
} pq;
static void *pq_handle;

/* 0, or -ELIBACC with what dlopen or dlsym said. */
static int pq_load(void)
{
	void *h, *p;

	if (pq_handle)
		return 0;
	if (!(h = dlopen(EF_LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL)))
		return failure_note(-ELIBACC, "cannot load " EF_LIBPQ_SONAME ": %s", dlerror());
#define PQ_LOAD(f)                                                                                                     \
	if (!(p = dlsym(h, #f))) {                                                                                     \
		(void)dlclose(h);                                                                                      \
		return failure_note(-ELIBACC, EF_LIBPQ_SONAME " has no " #f);                                          \
	}                                                                                                              \
	memcpy(&pq.f, &p, sizeof(p));
	PQ_FUNCTIONS(PQ_LOAD)
#undef PQ_LOAD
	pq_handle = h;
	return 0;
}

/* The message of a failure, on one line. */
static int note(int err, const char *msg)
{
	char line[PG_NOTE_SIZE];
	size_t n = 0;

	/* libpq's messages may run over lines (a hint after a newline and a tab): one line for the log. */
	for (; msg && *msg && n + 1 < sizeof(line); msg++) {
		if (*msg == '\n' || *msg == '\t' || *msg == '\r')
			line[n++] = ' ';
		else
			line[n++] = *msg;
		while (*msg == '\n' && (msg[1] == '\t' || msg[1] == ' '))
			msg++;
	}
	while (n > 0 && line[n - 1] == ' ')
		n--;
	line[n] = '\0';
	return failure_note(err, "PostgreSQL: %s", n ? line : "unknown error");
}

static bool connected(const struct pg_db *d)
{
	return pq.PQstatus(d->conn) == CONNECTION_OK;
}

/*
 * A failed result (res may be NULL): the constraints that decide, atomically,
 * that a row is taken or missing are refusals; the rest is noted, as the
 * server said it. A lost connection is -EIO.
 */
static int fail(struct pg_db *d, const PGresult *res)
{
	const char *state = res ? pq.PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? pq.PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	int err = -EIO;

	if (!msg || !connected(d))
		msg = pq.PQerrorMessage(d->conn);
	if (!state || !connected(d))
		return note(-EIO, msg);
	if (strcmp(state, "23505") == 0)
		return -EEXIST;
	if (strcmp(state, "23503") == 0)
		return -ENOENT;
	if (strncmp(state, "23", 2) == 0)
		err = -EINVAL;
	else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0)
		err = -EBUSY;
	else if (strcmp(state, "53100") == 0)
		err = -ENOSPC;
	else if (strcmp(state, "53200") == 0)
		err = -ENOMEM;
	else if (strcmp(state, "25006") == 0)
		err = -EROFS;
	return note(err, msg);
}

/* Worth another try from the start of a transaction: a lock wait given up, a cycle broken, the connection lost. */
static bool retryable(int r, const struct pg_db *d)
{
	return r == -EBUSY || !connected(d);
}

static long elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/*
 * A new connection with the same parameters, after one failed or was lost:
 * tried again for PG_RECONNECT_MS, so that a server restarting (or one
 * with all its connection slots taken for a moment) is waited for. 0, or
 * -EIO with the reason noted.
 */
static int reconnect(struct pg_db *d)
{
	struct timespec start;

	(void)clock_gettime(CLOCK_MONOTONIC, &start);
	for (unsigned i = 0;; i++) {
		pq.PQreset(d->conn);
		if (connected(d))
			return 0;
		if (elapsed_ms(&start) >= PG_RECONNECT_MS)
			return note(-EIO, pq.PQerrorMessage(d->conn));
		db_backoff(i < DB_RETRIES ? i : DB_RETRIES);
	}
}

/* A statement outside the store's table, with no parameter, its result in text: the result or NULL. */
static PGresult *exec(struct pg_db *d, const char *sql, ExecStatusType want, int *r)
{
	PGresult *res = pq.PQexec(d->conn, sql);

	if (pq.PQresultStatus(res) == want) {
		*r = 0;
		return res;
	}
	*r = fail(d, res);
	pq.PQclear(res);
	return NULL;
}

static int exec_command(struct pg_db *d, const char *sql)
{
	int r;

	pq.PQclear(exec(d, sql, PGRES_COMMAND_OK, &r));
	return r;
}

/* The highest $n in a statement's text. */
static int count_params(const char *sql)
{
	long n, max = 0;
	char *end;

	for (const char *p = strchr(sql, '$'); p; p = strchr(p + 1, '$')) {
		n = strtol(p + 1, &end, 10);
		if (end != p + 1 && n > max)
			max = n;
	}
	return (int)max;
}

static void stmt_init(struct pg_stmt *q, struct pg_db *d, enum stmt_id id)
{
	q->base.db = &d->base;
	q->id = id;
	q->nparams = -1;
}

static int pg_get(struct db *db, enum stmt_id id, struct db_stmt **out)
{
	struct pg_db *d = (struct pg_db *)db;
	struct pg_stmt *q;

	if (id >= ST_ITERATE_FIRST) {
		if (!(q = calloc(1, sizeof(*q))))
			return -ENOMEM;
		stmt_init(q, d, id);
	} else {
		q = &d->stmt[id];
	}
	if (q->nparams < 0 && (q->nparams = count_params(pg_sql[id])) > DB_PARAMS_MAX) {
		q->nparams = -1;
		if (id >= ST_ITERATE_FIRST)
			free(q);
		return failure_note(-EINVAL, "PostgreSQL: a statement takes more than %d parameters", DB_PARAMS_MAX);
	}
	*out = &q->base;
	return 0;
}

static void pg_done(struct db_stmt *s)
{
	struct pg_stmt *q = (struct pg_stmt *)s;

	pq.PQclear(q->res);
	q->res = NULL;
	if (q->id >= ST_ITERATE_FIRST) {
		free(q);
		return;
	}
	memset(q->types, 0, sizeof(q->types));
	memset(q->values, 0, sizeof(q->values));
	memset(q->lengths, 0, sizeof(q->lengths));
	memset(q->formats, 0, sizeof(q->formats));
	q->bind_error = 0;
	q->row = q->rows = 0;
}

static void bind(struct pg_stmt *q, int i, Oid type, const void *v, size_t len, int format)
{
	if (q->bind_error)
		return;
	if (i < 1 || i > q->nparams || len > INT32_MAX) {
		q->bind_error = failure_note(-EINVAL, "PostgreSQL: parameter %d cannot be bound", i);
		return;
	}
	q->types[i - 1] = type;
	q->values[i - 1] = v;
	q->lengths[i - 1] = (int)len;
	q->formats[i - 1] = format;
}

static void pg_bind_blob(struct db_stmt *s, int i, const void *v, size_t len)
{
	/* An empty value, not SQL NULL: libpq reads a NULL pointer as NULL. */
	bind((struct pg_stmt *)s, i, PG_BYTEA, v ? v : "", len, 1);
}

static void pg_bind_text(struct db_stmt *s, int i, const char *v)
{
	bind((struct pg_stmt *)s, i, PG_TEXT, v, strlen(v), 0);
}

static void pg_bind_int(struct db_stmt *s, int i, int64_t v)
{
	struct pg_stmt *q = (struct pg_stmt *)s;

	if (i >= 1 && i <= DB_PARAMS_MAX)
		q->ints[i - 1] = htobe64((uint64_t)v);
	bind(q, i, PG_INT8, i >= 1 && i <= DB_PARAMS_MAX ? &q->ints[i - 1] : NULL, sizeof(uint64_t), 1);
}

/*
 * Run the statement at its first step. Outside a transaction nothing has
 * been read yet, so a connection lost since the last use is made again and
 * the statement run once more.
 */
static int run(struct pg_db *d, struct pg_stmt *q)
{
	ExecStatusType st;
	int r;

	for (unsigned i = 0;; i++) {
		q->res =
		    pq.PQexecParams(d->conn, pg_sql[q->id], q->nparams, q->types, q->values, q->lengths, q->formats, 1);
		st = pq.PQresultStatus(q->res);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
			break;
		r = fail(d, q->res);
		pq.PQclear(q->res);
		q->res = NULL;
		if (d->in_tx || i >= DB_RETRIES || !retryable(r, d))
			return r;
		db_backoff(i);
		if (!connected(d) && reconnect(d) < 0)
			return r;
	}
	q->rows = pq.PQntuples(q->res);
	q->row = -1;
	q->changes = strtoll(pq.PQcmdTuples(q->res), NULL, 10);
	return 0;
}

static int pg_step(struct db_stmt *s)
{
	struct pg_stmt *q = (struct pg_stmt *)s;
	int r;

	if (!q->res) {
		if (q->bind_error)
			return q->bind_error;
		if ((r = run((struct pg_db *)s->db, q)) < 0)
			return r;
	}
	if (q->row < q->rows)
		q->row++;
	return q->row < q->rows ? DB_ROW : DB_DONE;
}

static long long pg_changes(struct db_stmt *s)
{
	return ((struct pg_stmt *)s)->changes;
}

static bool pg_column_null(struct db_stmt *s, int col)
{
	struct pg_stmt *q = (struct pg_stmt *)s;

	return col >= pq.PQnfields(q->res) || pq.PQgetisnull(q->res, q->row, col);
}

/* An integer column in binary: bigint, integer, smallint or boolean; 0 for NULL. */
static int64_t pg_column_int(struct db_stmt *s, int col)
{
	struct pg_stmt *q = (struct pg_stmt *)s;
	const unsigned char *v;
	uint64_t u = 0;
	int n;

	if (pg_column_null(s, col))
		return 0;
	v = (const unsigned char *)pq.PQgetvalue(q->res, q->row, col);
	n = pq.PQgetlength(q->res, q->row, col);
	if (n != 1 && n != 2 && n != 4 && n != 8)
		return 0;
	for (int i = 0; i < n; i++)
		u = u << 8 | v[i];
	/* Sign-extended from its width. */
	if (n < 8 && (v[0] & 0x80))
		u |= ~0ull << (8 * n);
	return (int64_t)u;
}

static const void *pg_column_bytes(struct db_stmt *s, int col, size_t *len)
{
	struct pg_stmt *q = (struct pg_stmt *)s;
	int n;

	*len = 0;
	if (pg_column_null(s, col))
		return NULL;
	n = pq.PQgetlength(q->res, q->row, col);
	*len = n > 0 ? (size_t)n : 0;
	return pq.PQgetvalue(q->res, q->row, col);
}

static void pg_rollback(struct db *db)
{
	struct pg_db *d = (struct pg_db *)db;

	if (!d->in_tx)
		return;
	d->in_tx = false;
	if (connected(d))
		(void)exec_command(d, "ROLLBACK");
}

/* The lock of a client: its id's first 8 bytes, in the one-key space of advisory locks. */
static long long client_lock(const uint8_t *client)
{
	uint64_t k = 0;

	for (int i = 0; i < 8; i++)
		k = k << 8 | client[i];
	return (long long)k;
}

/*
 * BEGIN, the lock that orders this transaction with those that could decide
 * from the same rows, and the transaction's id, in one round trip. A lock
 * wait given up, or a connection lost (the server restarted since the last
 * transaction), is tried again a few times.
 */
static int pg_begin(struct db *db, const uint8_t *client)
{
	struct pg_db *d = (struct pg_db *)db;
	char sql[PG_SQL_SIZE];
	PGresult *res;
	int r;

	if (d->readonly)
		return -EROFS;
	if (client)
		snprintf(sql, sizeof(sql),
		         "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = %d; "
		         "SET LOCAL statement_timeout = %d; SELECT pg_advisory_xact_lock(%lld), txid_current()",
		         d->timeout_ms, d->timeout_ms, client_lock(client));
	else
		snprintf(sql, sizeof(sql),
		         "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = %d; "
		         "SET LOCAL statement_timeout = %d; SELECT pg_advisory_xact_lock(%d, %d), txid_current()",
		         d->timeout_ms, d->timeout_ms, PG_LOCK_CLASS, PG_LOCK_REGISTRATION);
	for (unsigned i = 0;; i++) {
		if (!connected(d) && (r = reconnect(d)) < 0)
			return r;
		res = exec(d, sql, PGRES_TUPLES_OK, &r);
		if (res) {
			d->in_tx = true;
			d->txid = pq.PQntuples(res) == 1 ? strtoll(pq.PQgetvalue(res, 0, 1), NULL, 10) : 0;
			d->backend = pq.PQbackendPID(d->conn);
			pq.PQclear(res);
			return 0;
		}
		if (connected(d))
			(void)exec_command(d, "ROLLBACK");
		if (i >= DB_RETRIES || !retryable(r, d))
			return r;
		db_backoff(i);
	}
}

/*
 * The connection was lost while the COMMIT was on its way: it may have
 * committed or not. Never guessed: a new connection asks the server what
 * became of the transaction, for up to the timeout. Still in progress, its
 * server process has not noticed the loss (the COMMIT never arrived): it is
 * ended, if it is still the one running that transaction, so that the
 * transaction is rolled back and its locks freed rather than waited for.
 */
static int commit_outcome(struct pg_db *d)
{
	char sql[PG_SQL_SIZE], end[PG_SQL_SIZE];
	bool ended = false;
	struct timespec start;
	PGresult *res;
	const char *status;
	int r = -EIO;

	snprintf(sql, sizeof(sql), "SELECT txid_status(%lld)", d->txid);
	snprintf(end, sizeof(end),
	         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %d AND backend_xid::text = '%lld'",
	         d->backend, d->txid & 0xffffffffLL);
	(void)clock_gettime(CLOCK_MONOTONIC, &start);
	for (unsigned i = 0;; i++) {
		if (connected(d) || reconnect(d) == 0) {
			res = exec(d, sql, PGRES_TUPLES_OK, &r);
			status = res && pq.PQntuples(res) == 1 && !pq.PQgetisnull(res, 0, 0) ? pq.PQgetvalue(res, 0, 0)
			                                                                     : NULL;
			if (status && strcmp(status, "committed") == 0) {
				pq.PQclear(res);
				return 0;
			}
			if (status && strcmp(status, "aborted") == 0) {
				pq.PQclear(res);
				return failure_note(-EIO,
				                    "PostgreSQL: the connection was lost during COMMIT, which did "
				                    "not commit");
			}
			pq.PQclear(res);
			if (status && !ended) {
				pq.PQclear(pq.PQexec(d->conn, end));
				ended = true;
			}
		}
		if (elapsed_ms(&start) > d->timeout_ms)
			return failure_note(
			    -EIO,
			    "PostgreSQL: the connection was lost during COMMIT, and whether it committed "
			    "is still unknown (transaction %lld)",
			    d->txid);
		db_backoff(i < DB_RETRIES ? i : DB_RETRIES);
	}
}

static int pg_commit(struct db *db)
{
	struct pg_db *d = (struct pg_db *)db;
	PGresult *res = pq.PQexec(d->conn, "COMMIT");
	int r = 0;

	d->in_tx = false;
	if (pq.PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(pq.PQcmdStatus(res), "COMMIT") == 0)
		r = 0;
	else if (!connected(d))
		r = commit_outcome(d);
	else if (pq.PQresultStatus(res) == PGRES_COMMAND_OK)
		r = failure_note(-EIO, "PostgreSQL: the transaction was rolled back");
	else
		r = fail(d, res);
	pq.PQclear(res);
	return r;
}

/* The schema's version: 0 when there is none yet. */
static int schema_version(struct pg_db *d, long long *v)
{
	PGresult *res = pq.PQexec(d->conn, "SELECT version FROM efserver_schema");
	const char *state;
	int r = 0;

	if (pq.PQresultStatus(res) == PGRES_TUPLES_OK && pq.PQntuples(res) == 1) {
		*v = strtoll(pq.PQgetvalue(res, 0, 0), NULL, 10);
	} else if (pq.PQresultStatus(res) == PGRES_FATAL_ERROR &&
	           (state = pq.PQresultErrorField(res, PG_DIAG_SQLSTATE)) && strcmp(state, "42P01") == 0) {
		*v = 0;
	} else {
		r = pq.PQresultStatus(res) == PGRES_TUPLES_OK ? failure_note(-EIO, "PostgreSQL: table efserver_schema "
		                                                                   "does not hold one row")
		                                              : fail(d, res);
	}
	pq.PQclear(res);
	return r;
}

/*
 * Create or migrate the schema, found at version v, in one transaction that
 * first takes the advisory lock of the schema: whoever gets it looks again,
 * since another process may have done it meanwhile, and the steps and the
 * new version commit together. A transaction-level lock, so that a pooler
 * in transaction mode may stand between.
 */
static int schema_upgrade(struct pg_db *d, long long v)
{
	char sql[PG_SQL_SIZE];
	PGresult *res;
	bool exists;
	int r;

	snprintf(sql, sizeof(sql),
	         "BEGIN; SET LOCAL lock_timeout = %d; SELECT pg_advisory_xact_lock(%d, %d); "
	         "SELECT to_regclass('efserver_schema') IS NOT NULL",
	         d->timeout_ms, PG_LOCK_CLASS, PG_LOCK_SCHEMA);
	if (!(res = exec(d, sql, PGRES_TUPLES_OK, &r)))
		goto rollback;
	/*
	 * Whether the table of the version is there, looked at by a statement
	 * of its own once the lock is held, so that it sees what the holder
	 * before committed: reading a missing table would end the transaction.
	 */
	exists = pq.PQntuples(res) == 1 && strcmp(pq.PQgetvalue(res, 0, 0), "t") == 0;
	pq.PQclear(res);
	v = 0;
	if (exists && (r = schema_version(d, &v)) < 0)
		goto rollback;
	if (v < 0 || v > STORE_SCHEMA_VERSION) {
		r = db_schema_unknown(v);
		goto rollback;
	}
	for (size_t i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
		if (migrations[i].version <= v)
			continue;
		snprintf(sql, sizeof(sql), "UPDATE efserver_schema SET version = %d", migrations[i].version);
		if ((r = exec_command(d, migrations[i].sql)) < 0 || (r = exec_command(d, sql)) < 0)
			goto rollback;
	}
	return exec_command(d, "COMMIT");

rollback:
	if (connected(d))
		(void)exec_command(d, "ROLLBACK");
	return r;
}

static void pg_close(struct db *db)
{
	struct pg_db *d = (struct pg_db *)db;

	for (size_t i = 0; i < ST_ITERATE_FIRST; i++)
		pq.PQclear(d->stmt[i].res);
	pq.PQfinish(d->conn);
	free(d);
}

/* libpq's notices (a NOTICE from the server, say) are not ours to print on stdout or stderr. */
static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int db_pg_open(const char *url, int busy_timeout_ms, bool readonly, store_create_fn may_create, void *ctx,
               struct db **out)
{
	/*
	 * Ours first: whatever the URL sets itself wins. No startup option
	 * (options=-c ...), which a pooler would refuse.
	 */
	const char *keywords[] = {"connect_timeout",
	                          "fallback_application_name",
	                          "client_encoding",
	                          "tcp_user_timeout",
	                          "keepalives_idle",
	                          "keepalives_interval",
	                          "keepalives_count",
	                          "dbname",
	                          NULL};
	const char *values[] = {PG_CONNECT_TIMEOUT_S,
	                        program_invocation_short_name,
	                        "UTF8",
	                        PG_TCP_USER_TIMEOUT_MS,
	                        PG_KEEPALIVES_IDLE_S,
	                        PG_KEEPALIVES_INTERVAL_S,
	                        PG_KEEPALIVES_COUNT,
	                        url,
	                        NULL};
	PQconninfoOption *parsed;
	char *why = NULL;
	struct pg_db *d;
	long long v = 0;
	int r;

	if ((r = pq_load()) < 0)
		return r;
	/* libpq's word for a URI it cannot parse may quote it, password and all: not ours to log. */
	if (!(parsed = pq.PQconninfoParse(url, &why))) {
		pq.PQfreemem(why);
		return failure_note(-EINVAL, "PostgreSQL: the database URI cannot be parsed");
	}
	pq.PQconninfoFree(parsed);
	if (!(d = calloc(1, sizeof(*d))))
		return -ENOMEM;
	d->base.ops = &pg_ops;
	d->readonly = readonly;
	d->timeout_ms = busy_timeout_ms > 0 ? busy_timeout_ms : PG_TIMEOUT_DEFAULT_MS;
	for (size_t i = 0; i < ST_ITERATE_FIRST; i++)
		stmt_init(&d->stmt[i], d, (enum stmt_id)i);
	d->conn = pq.PQconnectdbParams(keywords, values, 1);
	if (!d->conn) {
		free(d);
		return -ENOMEM;
	}
	(void)pq.PQsetNoticeProcessor(d->conn, quiet, NULL);
	if (!connected(d) && (r = reconnect(d)) < 0)
		goto out;
	if ((r = schema_version(d, &v)) < 0)
		goto out;
	if (v == STORE_SCHEMA_VERSION) {
		*out = &d->base;
		return 0;
	}
	if (v < 0 || v > STORE_SCHEMA_VERSION) {
		r = db_schema_unknown(v);
		goto out;
	}
	if (readonly) {
		r = v == 0 ? -ENOENT : db_schema_old();
		goto out;
	}
	if (v == 0 && may_create && (r = may_create(ctx)) < 0) {
		r = failure_note(r, "the PostgreSQL database has no efserver schema");
		goto out;
	}
	if ((r = schema_upgrade(d, v)) < 0)
		goto out;
	*out = &d->base;
	return 0;
out:
	pg_close(&d->base);
	return r;
}

static int pg_checkpoint(struct db *db)
{
	(void)db;
	return 0;
}

/* The counters against a recount of the rows, and the row of totals; the references are the server's to keep. */
static int pg_check(struct db *db)
{
	static const char sql[] =
	    "SELECT 'client ' || quote_literal(name) FROM clients AS c WHERE c.stored_bytes <> (SELECT\n"
	    "	coalesce(sum(CASE WHEN status = 0 THEN size ELSE 0 END + coalesce(pending_size, 0)), 0)\n"
	    "	FROM files WHERE client_id = c.id)\n"
	    "	OR c.stored_files <> (SELECT count(*) FROM files WHERE client_id = c.id AND status = 0)\n"
	    "UNION ALL SELECT 'the count of clients' FROM totals WHERE clients <> (SELECT count(*) FROM clients)\n"
	    "UNION ALL SELECT 'the count of clients (no row)' WHERE NOT EXISTS (SELECT 1 FROM totals)\n"
	    "LIMIT 1";
	struct pg_db *d = (struct pg_db *)db;
	PGresult *res;
	int r;

	if (!(res = exec(d, sql, PGRES_TUPLES_OK, &r)))
		return r;
	r = pq.PQntuples(res) == 0
	        ? 0
	        : failure_note(-EIO, "counters that disagree with a recount: %s", pq.PQgetvalue(res, 0, 0));
	pq.PQclear(res);
	return r;
}

static const struct db_ops pg_ops = {
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .get = pg_get,
    .bind_blob = pg_bind_blob,
    .bind_text = pg_bind_text,
    .bind_int = pg_bind_int,
    .step = pg_step,
    .changes = pg_changes,
    .column_null = pg_column_null,
    .column_int = pg_column_int,
    .column_text = pg_column_bytes,
    .column_blob = pg_column_bytes,
    .done = pg_done,
    .checkpoint = pg_checkpoint,
    .check = pg_check,
};
