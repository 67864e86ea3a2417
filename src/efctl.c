/*
 * efctl: the administrator's tool over efsession's state directory. It
 * reads the database as one more WAL reader, so it runs beside live
 * sessions; only add-client, remove-client and gc --force write, in short
 * transactions.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gcrypt.h>

#include "cksum.h"
#include "clientconf.h"
#include "crypto.h"
#include "der.h"
#include "failure.h"
#include "io.h"
#include "keyfile.h"
#include "log.h"
#include "opts.h"
#include "seal.h"
#include "store.h"
#include "utf8.h"
#include "vault.h"

/*
 * EXIT STATUS in efctl(8): small numbers a script tells apart, what was
 * asked for and found wanting (1, 3) never confused with a tool that could
 * not do its work (2, 4).
 */
enum {
	EXIT_OK = 0,
	EXIT_PROBLEMS =
	    1, /* verify found problems; decrypt met a file that does not authenticate; add-client refused */
	EXIT_USAGE = 2,
	EXIT_NOT_FOUND = 3,
	EXIT_SYSTEM = 4, /* state directory, database, storage key or output unusable */
};

#define CTL_BUF_SIZE (256u * 1024)
/* Room for a name escaped for the terminal. */
#define ESC_SIZE   LOG_ESCAPE_SIZE(WIRE_NAME_SIZE)
#define HEX_SHA256 (2 * 32 + 1)

enum command {
	CMD_CLIENTS,
	CMD_FILES,
	CMD_SHOW,
	CMD_USAGE,
	CMD_VERIFY,
	CMD_ADD,
	CMD_REMOVE,
	CMD_GC,
	CMD_DECRYPT,
	CMD_MIGRATE,
	CMD_NONE
};

/* Which options each command takes. */
enum {
	OPT_JSON = 1,
	OPT_CLIENT = 2, /* --client NAME|ID */
	OPT_FORCE = 4,
	OPT_CHECKSUM = 8,
	OPT_OUTPUT = 16,
	OPT_SELECT = 32, /* --id ID or --name NAME: the client named one way only */
	OPT_OUT = 64,
	OPT_RSA_BITS = 128,
	OPT_LIMITS = 256, /* --client-quota, --min-free-space: efsession's, which efctl cannot read */
	OPT_TO = 512,     /* migrate --to URL */
};

static const struct command_spec {
	const char *name;
	unsigned options;
	int args;            /* operands after the command */
	bool client_operand; /* the operand is NAME|ID, which --id or --name may replace */
	const char *synopsis;
	const char *help;
} commands[] = {
    [CMD_CLIENTS] = {"clients", OPT_JSON, 0, false, "clients [--json]",
                     "List the clients: name, id, last seen and number of files."},
    [CMD_FILES] = {"files", OPT_JSON | OPT_CLIENT | OPT_SELECT, 0, false,
                   "files [--client NAME|ID | --id ID | --name NAME] [--json]",
                   "List the files recorded (of one client with --client): size, checksum,\n"
                   "whether the client confirmed it, when it was received, and the copy kept\n"
                   "aside until the client confirms it replaces a verified one."},
    [CMD_SHOW] = {"show", OPT_JSON | OPT_SELECT, 1, true, "show NAME|ID | --id ID | --name NAME [--json]",
                  "Show one client: its id, last seen, public key fingerprint, whether it has\n"
                  "an AES key (never the key), and its files."},
    [CMD_USAGE] = {"usage", OPT_JSON | OPT_CLIENT | OPT_SELECT | OPT_LIMITS, 0, false,
                   "usage [--client NAME|ID | --id ID | --name NAME] [--client-quota BYTES]\n"
                   "              [--min-free-space BYTES] [--json]",
                   "What the limits of efsession count: per client, the bytes it stores (kept-\n"
                   "aside copies included), its files, kept-aside copies, what is left of\n"
                   "--client-quota and its bad paddings of the last hour; the clients in all,\n"
                   "the registrations of the last hour per source address, and the free space\n"
                   "against --min-free-space. Give efsession's --client-quota and\n"
                   "--min-free-space (the defaults are the same)."},
    [CMD_VERIFY] = {"verify", OPT_CLIENT | OPT_SELECT | OPT_CHECKSUM, 0, false,
                    "verify [--client NAME|ID | --id ID | --name NAME] [--checksum ALGO]",
                    "Recompute every stored file's size and checksum, and every kept-aside\n"
                    "copy's, decrypting files stored encrypted at rest, and report each file\n"
                    "that is missing or differs from the database. ALGO is efsession's\n"
                    "--checksum (default cksum)."},
    [CMD_ADD] = {"add-client", OPT_OUT | OPT_RSA_BITS, 1, false, "add-client NAME --out DIR [--rsa-bits N]",
                 "Create a client: a fresh id and RSA key pair (1024 bits unless --rsa-bits\n"
                 "says, exponent 17), the public key stored and pinned, and its identity\n"
                 "files DIR/me.info and DIR/priv.key (mode 0600; DIR made 0700 if missing)\n"
                 "to hand to the client, whose efclient --dir DIR then needs no registration."},
    [CMD_REMOVE] = {"remove-client", OPT_SELECT, 1, true, "remove-client NAME|ID | --id ID | --name NAME",
                    "Remove a client: its database rows first, then its files and directories.\n"
                    "If interrupted, the client is gone and what is left of its directories is\n"
                    "found by gc, or removed by running remove-client ID again."},
    [CMD_GC] = {"gc", OPT_FORCE, 0, false, "gc [--force]",
                "List (remove, with --force) what killed sessions and interrupted removals\n"
                "leave: temporary files of sessions no longer running, confirmations a crash\n"
                "interrupted (completed), rows of stored files whose file is gone, kept-aside\n"
                "copies no row names, directories of removed clients, empty client directories."},
    [CMD_DECRYPT] = {"decrypt", OPT_OUTPUT, 1, false, "decrypt FILE [-o OUT]",
                     "Write the original bytes of a file stored encrypted at rest to OUT (replaced\n"
                     "only once every segment has authenticated), or to standard output."},
    [CMD_MIGRATE] = {"migrate", OPT_TO, 0, false, "migrate --to URL",
                     "Copy the SQLite database of the state directory, every client, file row\n"
                     "and count of the last hour, into the empty PostgreSQL database at URL (a\n"
                     "libpq URI), in one transaction; its schema is created if need be. Stop\n"
                     "efsession first; the files stay where they are."},
};

/* How a client was named: by id or name (the operand, --client), or explicitly. */
enum select_by { BY_EITHER, BY_ID, BY_NAME };

struct ctl {
	char *state_dir;
	char *database; /* a PostgreSQL URI, never printed (a password); NULL: SQLite in the state directory */
	const char *key_file;
	const char *client; /* the client named, if any */
	enum select_by by;
	const char *output;
	const char *out_dir;
	const char *to; /* migrate --to URL: never printed (a password) */
	unsigned rsa_bits;
	bool json;
	bool force;
	enum cksum_algo checksum;
	uint64_t client_quota;   /* efsession's --client-quota, for usage */
	uint64_t min_free_space; /* and its --min-free-space */
	int state_fd;
	struct store *st;
	struct vault *v;
	struct seal_key *key;
	uint8_t *buf;
	/* The last client whose name was looked up for a file row. */
	uint8_t name_id[WIRE_ID_SIZE];
	char name[WIRE_NAME_SIZE];
	bool name_valid;
};

/* --database, in the help of a build that has the PostgreSQL engine. */
#ifdef HAVE_POSTGRESQL
#define USAGE_DATABASE                                                                                                 \
	"      --database URL          efsession's PostgreSQL database, a libpq URI\n"                                 \
	"                              postgresql://... (default: $" OPTS_DATABASE_ENV ", else\n"                      \
	"                              the " OPTS_DATABASE_CREDENTIAL " credential, else\n"                            \
	"                              SQLite in the state directory)\n"
#else
#define USAGE_DATABASE ""
#endif

static void usage(FILE *to)
{
	fprintf(to, "Usage: efctl [OPTION]... COMMAND [ARGUMENT]...\n"
	            "Look after the state of efsession: clients, stored files, files encrypted at rest.\n"
	            "\n"
	            "Commands:\n");
	for (size_t i = 0; i < CMD_NONE; i++)
		fprintf(to, "  efctl %s\n", commands[i].synopsis);
	fprintf(to, "\n"
	            "Options:\n"
	            "  -s, --state-dir DIR         state directory (default: $STATE_DIRECTORY, else\n"
	            "                              " EF_STATE_DIR ")\n" USAGE_DATABASE
	            "  -k, --storage-key-file FILE the storage key for files encrypted at rest\n"
	            "                              (default: the " SEAL_CREDENTIAL " credential)\n"
	            "  -j, --json                  JSON instead of a table\n"
	            "  -c, --client NAME|ID        only that client's files\n"
	            "  -i, --id ID                 the client with that id (32 hex digits, plain or\n"
	            "                              8-4-4-4-12), never one of that name\n"
	            "  -n, --name NAME             the client of that name, never one with that id\n"
	            "  -C, --checksum ALGO         cksum (default), crc32 or crc32-ciphertext\n"
	            "  -f, --force                 gc: remove, not only list\n"
	            "  -o, --output FILE           decrypt: write to FILE\n"
	            "      --out DIR               add-client: write the identity files into DIR\n"
	            "      --rsa-bits N            add-client: the RSA key size, 1024 (default) to 4096\n"
	            "      --to URL                migrate: the PostgreSQL database to copy into\n"
	            "      --client-quota BYTES    usage: efsession's --client-quota (default 0: none)\n"
	            "      --min-free-space BYTES  usage: efsession's --min-free-space (default 1G)\n"
	            "  -h, --help                  show this help (or a command's) and exit\n"
	            "  -V, --version               show the version and exit\n"
	            "\n"
	            "Exit status: 0 ok, 1 verify found problems, a file did not authenticate or\n"
	            "add-client was refused, 2 usage error, 3 no such client or file, 4 system\n"
	            "error. See efctl(8).\n");
}

static void command_usage(FILE *to, enum command cmd)
{
	fprintf(to, "Usage: efctl [-s DIR] [-k KEYFILE] %s\n%s\n", commands[cmd].synopsis, commands[cmd].help);
}

/*
 * A JSON string (RFC 8259): quotes and backslashes escaped, and, as for
 * every name shown (efserver-protocol(7), Names), control and bidi
 * characters as \uXXXX; a byte that is not UTF-8 becomes U+FFFD.
 */
static void json_str(const char *s)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t left = strlen(s), n;
	uint32_t cp = 0;

	putchar('"');
	while (left > 0) {
		n = utf8_decode(p, left, &cp);
		if (n == 0) {
			fputs("\\ufffd", stdout);
			n = 1;
		} else if (cp == '"' || cp == '\\') {
			printf("\\%c", (char)cp);
		} else if (utf8_hidden_on_display(cp)) {
			/* Every one of them is in the Basic Multilingual Plane: one \uXXXX each. */
			printf("\\u%04x", (unsigned)cp);
		} else {
			fwrite(p, 1, n, stdout);
		}
		p += n;
		left -= n;
	}
	putchar('"');
}

/* Characters a terminal shows for s (UTF-8 continuation bytes take no column). */
static int width(const char *s)
{
	int w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

static void cell(const char *s, int w)
{
	fputs(s, stdout);
	printf("%*s", w - width(s) > 0 ? w - width(s) : 0, "");
}

static const char *esc(const char *s, char *out)
{
	return log_escape(s, strlen(s), out, ESC_SIZE);
}

/* store_open's may_create: never a new database beside client directories (efsession(8), FILES). */
static int may_create_store(void *ctx)
{
	struct ctl *c = ctx;

	return c->v ? vault_refuse_new_store(c->v) : 0;
}

/*
 * The database, read-only or to be written; to be written, with the state
 * directory's files (c->v) open first when there are any.
 */
static int open_store(struct ctl *c, bool writable)
{
	int r = 0;

	if (writable && (r = vault_open_existing(c->state_dir, &c->v)) < 0 && r != -ENOENT) {
		fprintf(stderr, "efctl: cannot use the state directory %s: %s\n", c->state_dir, strerror(-r));
		return r;
	}
	r = store_open_database(c->database, c->state_dir, 0, !writable, may_create_store, c, &c->st);
	if (r == -ENOENT && c->database)
		fprintf(stderr, "efctl: no efserver schema in the PostgreSQL database (has efsession used it?)\n");
	else if (r == -ENOENT)
		fprintf(stderr, "efctl: no efserver database in %s (has efsession run there?)\n", c->state_dir);
	else if (r == -EEXIST)
		fprintf(stderr,
		        "efctl: not creating a database in %s: %s, but " VAULT_FILES_DIR "/ holds client directories; "
		        "restore " STORE_DB_NAME " from a backup, or move " VAULT_FILES_DIR "/ aside\n",
		        c->state_dir, failure_str(r));
	else if (r < 0 && c->database)
		fprintf(stderr, "efctl: cannot open the PostgreSQL database: %s\n", failure_str(r));
	else if (r < 0)
		fprintf(stderr, "efctl: cannot open the database in %s: %s\n", c->state_dir, failure_str(r));
	return r;
}

/* The storage key, loaded the first time a file encrypted at rest needs it. */
static int need_key(struct ctl *c)
{
	char path[PATH_MAX];
	int r;

	if (c->key)
		return 0;
	if ((r = seal_key_path(c->key_file, path, sizeof(path))) < 0 || (r = seal_key_load(path, &c->key)) < 0)
		fprintf(stderr, "efctl: cannot load the storage key%s%s: %s\n", r == -ENOKEY ? "" : " ",
		        r == -ENOKEY ? "" : path, seal_strerror(r));
	return r;
}

/*
 * The client c->client names: by id (32 hex digits, plain or 8-4-4-4-12) or
 * by name, or only one way with --id or --name. A string that is one
 * client's id and another's name is refused, naming both (efserver-protocol(7),
 * Names): a name shaped like an id can only come from before that rule.
 */
static int find_client(struct ctl *c, struct store_client *out, bool quiet)
{
	struct store_client by_id, by_name;
	const char *arg = c->client;
	char e1[ESC_SIZE], e2[ESC_SIZE], hex[WIRE_ID_HEX_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	bool is_id = c->by != BY_NAME && wire_id_from_hex(arg, id) == 0;
	int ri = -ENOENT, rn = -ENOENT, r;

	if (c->by == BY_ID && !is_id) {
		fprintf(stderr, "efctl: --id wants 32 hex digits, plain or 8-4-4-4-12, not '%s'\n", esc(arg, e1));
		return -EINVAL;
	}
	if (is_id)
		ri = store_get_client(c->st, id, &by_id);
	if (ri == -ENOENT && c->by != BY_ID && *arg && strlen(arg) < WIRE_NAME_SIZE)
		rn = store_find_client_by_name(c->st, arg, &by_name);
	else if (ri == 0 && c->by == BY_EITHER && strlen(arg) < WIRE_NAME_SIZE)
		rn = store_find_client_by_name(c->st, arg, &by_name);
	r = ri < 0 && ri != -ENOENT ? ri : rn < 0 && rn != -ENOENT ? rn : 0;
	if (r == 0 && ri == 0 && rn == 0 && memcmp(by_id.id, by_name.id, WIRE_ID_SIZE) != 0) {
		wire_id_to_hex(by_name.id, hex);
		fprintf(stderr,
		        "efctl: '%s' is the id of client '%s' and the name of client %s; say which with --id or "
		        "--name\n",
		        esc(arg, e1), esc(by_id.name, e2), hex);
		r = -ENOTUNIQ;
	} else if (r == 0 && ri != 0 && rn != 0) {
		r = -ENOENT;
		if (!quiet)
			fprintf(stderr, "efctl: no client %s '%s'\n",
			        c->by == BY_ID     ? "with the id"
			        : c->by == BY_NAME ? "named"
			                           : "named or with the id",
			        esc(arg, e1));
	} else if (r < 0) {
		fprintf(stderr, "efctl: cannot look up '%s': %s\n", esc(arg, e1), failure_str(r));
	} else {
		*out = ri == 0 ? by_id : by_name;
		crypto_wipe(out->aes_key, sizeof(out->aes_key));
	}
	crypto_wipe(&by_id, sizeof(by_id));
	crypto_wipe(&by_name, sizeof(by_name));
	return r;
}

static int exit_for(int r)
{
	return r == -ENOENT ? EXIT_NOT_FOUND : r == -EINVAL || r == -ENOTUNIQ ? EXIT_USAGE : EXIT_SYSTEM;
}

/* The name of a file row's client, cached across the rows of one client. */
static const char *client_name(struct ctl *c, const uint8_t id[WIRE_ID_SIZE])
{
	struct store_client cl;

	if (c->name_valid && memcmp(c->name_id, id, WIRE_ID_SIZE) == 0)
		return c->name;
	memcpy(c->name_id, id, WIRE_ID_SIZE);
	c->name_valid = true;
	if (store_get_client(c->st, id, &cl) == 0) {
		snprintf(c->name, sizeof(c->name), "%s", cl.name);
		crypto_wipe(cl.aes_key, sizeof(cl.aes_key));
	} else {
		snprintf(c->name, sizeof(c->name), "?");
	}
	return c->name;
}

struct table {
	struct ctl *c;
	bool measure; /* first pass: column widths only */
	bool with_client;
	int w_name, w_file;
	long long rows;
};

static int client_row(const struct store_client *cl, void *ctx)
{
	struct table *t = ctx;
	char hex[WIRE_ID_HEX_SIZE], e[ESC_SIZE];
	long long files = 0;
	int r;

	wire_id_to_hex(cl->id, hex);
	esc(cl->name, e);
	if (t->measure) {
		if (width(e) > t->w_name)
			t->w_name = width(e);
		return 0;
	}
	/* Every row, given-up files included. */
	if ((r = store_count_files(t->c->st, cl->id, &files)) < 0)
		return r;
	if (t->c->json) {
		printf("%s\n  {\"name\": ", t->rows ? "," : "");
		json_str(cl->name);
		printf(", \"id\": \"%s\", \"last_seen\": \"%s\", \"files\": %lld}", hex, cl->last_seen, files);
	} else {
		cell(e, t->w_name + 2);
		printf("%s  %-24s  %5lld\n", hex, cl->last_seen, files);
	}
	t->rows++;
	return 0;
}

static const char *file_state(const struct store_file *f)
{
	return f->status == STORE_FILE_FAILED ? "gave up" : f->verified ? "yes" : "no";
}

static void file_json(struct ctl *c, const struct store_file *f, const char *indent)
{
	char hex[WIRE_ID_HEX_SIZE], path[STORE_PATH_MAX];

	wire_id_to_hex(f->client_id, hex);
	printf("%s{\"client_id\": \"%s\", \"client\": ", indent, hex);
	json_str(client_name(c, f->client_id));
	fputs(", \"file_name\": ", stdout);
	json_str(f->file_name);
	fputs(", \"path\": ", stdout);
	json_str(f->path_name);
	printf(", \"size\": %llu, \"checksum\": %u, \"verified\": %s, \"status\": \"%s\", \"attempts\": %lld, "
	       "\"received\": \"%s\", \"kept_aside\": ",
	       (unsigned long long)f->size, f->checksum, f->verified ? "true" : "false",
	       f->status == STORE_FILE_FAILED ? "given up" : "stored", f->attempts, f->received);
	if (f->pending && vault_pending_path(f->client_id, f->pending_name, path, sizeof(path)) == 0)
		printf("{\"path\": \"%s\", \"size\": %llu, \"checksum\": %u, \"received\": \"%s\"}}", path,
		       (unsigned long long)f->pending_size, f->pending_checksum, f->pending_received);
	else
		fputs("null}", stdout);
}

/* A kept-aside copy's line under its file's: what replaces the verified copy once the client confirms it. */
#define KEPT_ASIDE_CELL "  kept aside"

static int file_row(const struct store_file *f, void *ctx)
{
	struct table *t = ctx;
	char e1[ESC_SIZE], e2[ESC_SIZE], hs[32];

	esc(f->file_name, e1);
	if (t->measure) {
		if (width(e1) > t->w_file)
			t->w_file = width(e1);
		if (f->pending && width(KEPT_ASIDE_CELL) > t->w_file)
			t->w_file = width(KEPT_ASIDE_CELL);
		if (t->with_client && width(esc(client_name(t->c, f->client_id), e2)) > t->w_name)
			t->w_name = width(e2);
		return 0;
	}
	if (t->c->json) {
		printf("%s\n", t->rows ? "," : "");
		file_json(t->c, f, "  ");
	} else {
		if (t->with_client)
			cell(esc(client_name(t->c, f->client_id), e2), t->w_name + 2);
		cell(e1, t->w_file + 2);
		printf("%10s  %10u  %-8s  %s\n", opts_human_size(f->size, hs, sizeof(hs)), f->checksum, file_state(f),
		       f->received);
		if (f->pending) {
			if (t->with_client)
				cell("", t->w_name + 2);
			cell(KEPT_ASIDE_CELL, t->w_file + 2);
			printf("%10s  %10u  %-8s  %s\n", opts_human_size(f->pending_size, hs, sizeof(hs)),
			       f->pending_checksum, "pending", f->pending_received);
		}
	}
	t->rows++;
	return 0;
}

/* Two passes over the rows, so that the columns line up without holding them in memory. */
static int list(struct ctl *c, const uint8_t *id, bool files)
{
	struct table t = {.c = c, .measure = true, .with_client = id == NULL, .w_name = 4, .w_file = 4};
	int r = 0;

	if (!c->json)
		r = files ? store_each_file(c->st, id, file_row, &t) : store_each_client(c->st, client_row, &t);
	if (r != 0)
		return r;
	t.measure = false;
	if (c->json) {
		fputs("[", stdout);
	} else if (files) {
		if (t.with_client)
			cell("CLIENT", t.w_name + 2);
		cell("FILE", t.w_file + 2);
		printf("%10s  %10s  %-8s  %s\n", "SIZE", "CHECKSUM", "VERIFIED", "RECEIVED");
	} else {
		cell("NAME", t.w_name + 2);
		printf("%-32s  %-24s  %5s\n", "ID", "LAST SEEN", "FILES");
	}
	r = files ? store_each_file(c->st, id, file_row, &t) : store_each_client(c->st, client_row, &t);
	if (c->json)
		fputs("\n]\n", stdout);
	return r;
}

/* The database, opened to be read, and the client --client names if it was given: EXIT_OK or an exit status. */
static int open_selection(struct ctl *c, struct store_client *cl)
{
	int r;

	if (open_store(c, false) < 0)
		return EXIT_SYSTEM;
	if (c->client && (r = find_client(c, cl, false)) < 0)
		return exit_for(r);
	return EXIT_OK;
}

/* Reading rows failed with r: said once; the exit status. */
static int read_failed(int r)
{
	fprintf(stderr, "efctl: cannot read the database: %s\n", failure_str(r));
	return EXIT_SYSTEM;
}

static int cmd_list(struct ctl *c, enum command cmd)
{
	struct store_client cl;
	int r;

	if ((r = open_selection(c, &cl)) != EXIT_OK)
		return r;
	if ((r = list(c, c->client ? cl.id : NULL, cmd == CMD_FILES)) < 0)
		return read_failed(r);
	return EXIT_OK;
}

struct file_list {
	struct ctl *c;
	long long rows;
};

static int show_file_json(const struct store_file *f, void *ctx)
{
	struct file_list *l = ctx;

	printf("%s\n", l->rows++ ? "," : "");
	file_json(l->c, f, "    ");
	return 0;
}

static int cmd_show(struct ctl *c)
{
	struct store_client cl;
	struct der_rsa_key k;
	struct file_list l = {.c = c};
	char hex[WIRE_ID_HEX_SIZE], fp[HEX_SHA256], e[ESC_SIZE];
	uint8_t sha[32];
	unsigned bits = 0;
	long long files = 0;
	int r;

	if ((r = open_store(c, false)) < 0)
		return EXIT_SYSTEM;
	if ((r = find_client(c, &cl, false)) < 0)
		return exit_for(r);
	if ((r = store_count_files(c->st, cl.id, &files)) < 0)
		return read_failed(r);
	wire_id_to_hex(cl.id, hex);
	if (cl.public_key_len > 0) {
		gcry_md_hash_buffer(GCRY_MD_SHA256, sha, cl.public_key, cl.public_key_len);
		for (size_t i = 0; i < sizeof(sha); i++)
			snprintf(fp + 2 * i, 3, "%02x", sha[i]);
		if (der_read_rsa_public(cl.public_key, cl.public_key_len, &k) == DER_OK)
			bits = k.bits;
	}
	if (c->json) {
		fputs("{\"name\": ", stdout);
		json_str(cl.name);
		printf(", \"id\": \"%s\", \"last_seen\": \"%s\", \"public_key\": ", hex, cl.last_seen);
		if (cl.public_key_len > 0)
			printf("{\"bits\": %u, \"sha256\": \"%s\"}", bits, fp);
		else
			fputs("null", stdout);
		printf(", \"aes_key_bits\": %zu, \"file_count\": %lld, \"files\": [", cl.aes_key_len * 8, files);
		r = store_each_file(c->st, cl.id, show_file_json, &l);
		fputs("\n  ]}\n", stdout);
	} else {
		printf("name:        %s\nid:          %s\nlast seen:   %s\n", esc(cl.name, e), hex, cl.last_seen);
		if (cl.public_key_len > 0)
			printf("public key:  RSA %u bits, SHA-256 %s\n", bits, fp);
		else
			printf("public key:  none yet\n");
		if (cl.aes_key_len > 0)
			printf("AES key:     issued, %zu bits\n", cl.aes_key_len * 8);
		else
			printf("AES key:     none yet\n");
		printf("files:       %lld\n", files);
		if (files > 0) {
			putchar('\n');
			r = list(c, cl.id, true);
		}
	}
	if (r < 0)
		return read_failed(r);
	return EXIT_OK;
}

/* The rows of efctl usage: one client's, or every client's, measured, then printed. */
struct usage_table {
	struct ctl *c;
	const uint8_t *only; /* the client --client names, or NULL */
	bool measure;
	int w_name;
	long long rows;
};

static int usage_row(const struct store_usage *u, void *ctx)
{
	struct usage_table *t = ctx;
	struct ctl *c = t->c;
	char hex[WIRE_ID_HEX_SIZE], e[ESC_SIZE], hs[32], hq[32];
	uint64_t left = c->client_quota > u->stored_bytes ? c->client_quota - u->stored_bytes : 0;

	if (t->only && memcmp(t->only, u->id, WIRE_ID_SIZE) != 0)
		return 0;
	esc(u->name, e);
	if (t->measure) {
		if (width(e) > t->w_name)
			t->w_name = width(e);
		return 0;
	}
	wire_id_to_hex(u->id, hex);
	if (c->json) {
		printf("%s\n    {\"name\": ", t->rows ? "," : "");
		json_str(u->name);
		printf(", \"id\": \"%s\", \"stored_bytes\": %llu, \"files\": %llu, \"kept_aside\": %lld, "
		       "\"bad_paddings_last_hour\": %lld, \"quota_left\": ",
		       hex, (unsigned long long)u->stored_bytes, (unsigned long long)u->stored_files, u->kept_aside,
		       u->bad_paddings);
		if (c->client_quota)
			printf("%llu}", (unsigned long long)left);
		else
			fputs("null}", stdout);
	} else {
		cell(e, t->w_name + 2);
		printf("%10s  %5llu  %10lld  %10s  %12lld\n", opts_human_size(u->stored_bytes, hs, sizeof(hs)),
		       (unsigned long long)u->stored_files, u->kept_aside,
		       c->client_quota ? opts_human_size(left, hq, sizeof(hq)) : "-", u->bad_paddings);
	}
	t->rows++;
	return 0;
}

static int usage_source(const char *source, long long registrations, void *ctx)
{
	struct usage_table *t = ctx;

	if (t->c->json) {
		printf("%s\n    {\"source\": ", t->rows ? "," : "");
		json_str(source);
		printf(", \"registrations\": %lld}", registrations);
	} else {
		printf("  %-40s  %5lld\n", source, registrations);
	}
	t->rows++;
	return 0;
}

/*
 * efctl usage: what the limits of efsession(8) count, as the database
 * counts it, against the --client-quota and --min-free-space efctl is
 * given (it cannot read a session's options).
 */
static int cmd_usage(struct ctl *c)
{
	struct usage_table t = {.c = c, .measure = true, .w_name = 4};
	struct store_client cl;
	char hs[32], hm[32], hl[32];
	uint64_t avail = 0, left;
	long long clients = 0;
	int r;

	if ((r = open_selection(c, &cl)) != EXIT_OK)
		return r;
	if ((r = vault_open_existing(c->state_dir, &c->v)) < 0) {
		fprintf(stderr, "efctl: cannot use the state directory %s: %s\n", c->state_dir, strerror(-r));
		return EXIT_SYSTEM;
	}
	if ((r = vault_free_space(c->v, &avail)) < 0) {
		fprintf(stderr, "efctl: cannot tell the free space of %s: %s\n", c->state_dir, strerror(-r));
		return EXIT_SYSTEM;
	}
	if ((r = store_count_clients(c->st, &clients)) < 0)
		return read_failed(r);
	t.only = c->client ? cl.id : NULL;
	left = avail > c->min_free_space ? avail - c->min_free_space : 0;
	if (c->json) {
		fputs("{\"clients\": [", stdout);
	} else {
		if ((r = store_each_usage(c->st, usage_row, &t)) < 0)
			return read_failed(r);
		cell("NAME", t.w_name + 2);
		printf("%10s  %5s  %10s  %10s  %12s\n", "STORED", "FILES", "KEPT ASIDE", "QUOTA LEFT", "BAD PADDINGS");
	}
	t.measure = false;
	if ((r = store_each_usage(c->st, usage_row, &t)) < 0)
		return read_failed(r);
	if (c->json) {
		printf(
		    "\n  ],\n  \"client_count\": %lld,\n  \"client_quota\": %llu,\n  \"free_space\": {\"bytes\": %llu, "
		    "\"min_free_space\": %llu, \"left_for_uploads\": %llu},\n  \"registrations_last_hour\": [",
		    clients, (unsigned long long)c->client_quota, (unsigned long long)avail,
		    (unsigned long long)c->min_free_space, (unsigned long long)left);
	} else {
		printf("\nclients:     %lld\n", clients);
		printf("free space:  %s on the state directory's file system; %s of it for uploads above "
		       "--min-free-space %s\n",
		       opts_human_size(avail, hs, sizeof(hs)), opts_human_size(left, hl, sizeof(hl)),
		       opts_human_size(c->min_free_space, hm, sizeof(hm)));
		printf("registrations in the last hour, by source address:\n");
	}
	t.rows = 0;
	if ((r = store_each_source(c->st, usage_source, &t)) < 0)
		return read_failed(r);
	if (c->json)
		fputs(t.rows ? "\n  ]\n}\n" : "]\n}\n", stdout);
	else if (t.rows == 0)
		printf("  none\n");
	return EXIT_OK;
}

/* A path name as efsession writes it (files/<hex>/<base>), so a row cannot point outside the state directory. */
static bool path_ok(const struct store_file *f)
{
	const char *base = strrchr(f->path_name, '/');
	char want[STORE_PATH_MAX];

	return base && base[1] && strcmp(base + 1, ".") != 0 && strcmp(base + 1, "..") != 0 &&
	       vault_path_name(f->client_id, base + 1, want, sizeof(want)) == 0 && strcmp(want, f->path_name) == 0;
}

struct verify {
	struct ctl *c;
	long long checked, sealed, problems, given_up, aside;
	int error; /* a failure of ours, not of a file: stop */
};

static void problem(struct verify *v, const struct store_file *f, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(struct verify *v, const struct store_file *f, const char *path, const char *fmt, ...)
{
	char e[ESC_SIZE], e2[ESC_SIZE];
	va_list ap;

	printf("%s (%s): ", log_escape(path, strlen(path), e, sizeof(e)), esc(client_name(v->c, f->client_id), e2));
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	v->problems++;
}

/* Read fd to the end, plaintext or sealed, counting and checksumming what it holds. */
static int measure(struct verify *v, int fd, bool sealed, struct cksum_state *ck, uint64_t *bytes, uint64_t *segment)
{
	struct seal_reader *rd = NULL;
	const uint8_t *p;
	size_t n;
	ssize_t got;
	int r;

	*bytes = 0;
	if (!sealed) {
		while ((got = io_read_full(fd, v->c->buf, CTL_BUF_SIZE, -1)) > 0) {
			cksum_update(ck, v->c->buf, (size_t)got);
			*bytes += (uint64_t)got;
		}
		return got < 0 ? (int)got : 0;
	}
	r = seal_reader_new(v->c->key, fd, &rd);
	while (r == 0 && (r = seal_reader_next(rd, &p, &n)) == 1) {
		cksum_update(ck, p, n);
		*bytes += n;
		r = 0;
	}
	*segment = rd ? seal_reader_segment(rd) : 0;
	seal_reader_free(rd);
	return r;
}

/* One copy on disk (path, relative to the state directory) against the size and checksum recorded for it. */
static int check_copy(struct verify *v, const struct store_file *f, const char *path, uint64_t size, uint32_t checksum)
{
	struct cksum_state ck = {0};
	struct stat sb;
	uint64_t bytes, segment = 0;
	uint32_t sum;
	bool sealed;
	int fd, r;

	fd = openat(v->c->state_fd, path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		problem(v, f, path, "%s",
		        fd < 0 && errno == ENOENT ? "missing"
		        : fd < 0                  ? strerror(errno)
		                                  : "not a regular file");
		if (fd >= 0)
			close(fd);
		return 0;
	}
	/* The two sizes never coincide, so a plaintext that happens to look sealed is read as what it is. */
	sealed = (uint64_t)sb.st_size != size;
	if (sealed && (uint64_t)sb.st_size != seal_sealed_size(size)) {
		problem(v, f, path, "%lld bytes on disk, neither the %llu recorded nor their size encrypted at rest",
		        (long long)sb.st_size, (unsigned long long)size);
		close(fd);
		return 0;
	}
	if (sealed && (r = need_key(v->c)) < 0) {
		close(fd);
		v->error = r;
		return 1;
	}
	if ((r = cksum_init(&ck, v->c->checksum)) < 0) {
		close(fd);
		v->error = r;
		return 1;
	}
	v->sealed += sealed;
	r = measure(v, fd, sealed, &ck, &bytes, &segment);
	sum = cksum_final(&ck);
	cksum_free(&ck);
	close(fd);
	if (r == -EBADMSG || r == -ENODATA)
		problem(v, f, path, "encrypted at rest, segment %llu: %s", (unsigned long long)segment,
		        seal_strerror(r));
	else if (r < 0)
		problem(v, f, path, "%s", seal_strerror(r));
	else if (bytes != size)
		problem(v, f, path, "%llu bytes, %llu recorded", (unsigned long long)bytes, (unsigned long long)size);
	else if (!cksum_over_ciphertext(v->c->checksum) && sum != checksum)
		problem(v, f, path, "checksum %u, %u recorded", sum, checksum);
	return 0;
}

/*
 * A stored file, and its kept-aside copy if it has one. A row naming a
 * kept-aside copy that is gone had its confirmation's rename done and its
 * commit lost: the file under the name is then the one kept aside.
 */
static int verify_file(const struct store_file *f, void *ctx)
{
	struct verify *v = ctx;
	char pending[STORE_PATH_MAX];
	uint64_t size = f->size;
	uint32_t checksum = f->checksum;
	int r;

	if (f->status == STORE_FILE_FAILED) {
		v->given_up++;
		return 0;
	}
	v->checked++;
	if (!path_ok(f)) {
		problem(v, f, f->path_name, "the database gives a path efsession does not write");
		return 0;
	}
	if (f->pending && (!vault_token_ok(f->pending_name) ||
	                   vault_pending_path(f->client_id, f->pending_name, pending, sizeof(pending)) < 0)) {
		problem(v, f, f->path_name, "the database names a kept-aside copy efsession does not write");
		return 0;
	}
	if (f->pending && faccessat(v->c->state_fd, pending, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
		problem(v, f, f->path_name,
		        "an interrupted confirmation: the copy kept aside was put in place, the database not yet "
		        "updated; efctl gc --force completes it");
		size = f->pending_size;
		checksum = f->pending_checksum;
	} else if (f->pending) {
		v->aside++;
		if ((r = check_copy(v, f, pending, f->pending_size, f->pending_checksum)) != 0)
			return r;
	}
	return check_copy(v, f, f->path_name, size, checksum);
}

static int cmd_verify(struct ctl *c)
{
	struct verify v = {.c = c};
	struct store_client cl;
	int r;

	if ((r = open_selection(c, &cl)) != EXIT_OK)
		return r;
	r = store_each_file(c->st, c->client ? cl.id : NULL, verify_file, &v);
	if (v.error)
		return EXIT_SYSTEM;
	if (r < 0)
		return read_failed(r);
	/* The database itself, whichever client was asked for: its pages, references and counters. */
	if ((r = store_integrity_check(c->st)) == -EIO) {
		printf("the database: %s\n", failure_str(r));
		v.problems++;
	} else if (r < 0) {
		return read_failed(r);
	}
	printf("%lld file%s checked (%lld encrypted at rest, %lld given up with no copy", v.checked,
	       v.checked == 1 ? "" : "s", v.sealed, v.given_up);
	if (v.aside)
		printf(", %lld kept aside", v.aside);
	printf("): %lld problem%s.\n", v.problems, v.problems == 1 ? "" : "s");
	if (cksum_over_ciphertext(c->checksum))
		printf("With crc32-ciphertext the checksum covers what the client sent, encrypted: only sizes and "
		       "authentication were checked.\n");
	return v.problems ? EXIT_PROBLEMS : EXIT_OK;
}

/* The state directory's files, opened once: c->v. */
static int open_vault(struct ctl *c)
{
	int r;

	if (c->v)
		return 0;
	if ((r = vault_open_existing(c->state_dir, &c->v)) < 0)
		fprintf(stderr, "efctl: cannot use the state directory %s: %s\n", c->state_dir, strerror(-r));
	return r;
}

/* Remove both directories of a client, files/<hex> and pending/<hex>, with everything in them. */
static int remove_client_dirs(struct ctl *c, const uint8_t id[WIRE_ID_SIZE])
{
	int r = vault_remove_dir(c->v, VAULT_FILES, id, true);

	return r < 0 ? r : vault_remove_dir(c->v, VAULT_PENDING, id, true);
}

static int cmd_remove(struct ctl *c)
{
	struct store_client cl;
	char hex[WIRE_ID_HEX_SIZE], e[ESC_SIZE], path[sizeof(VAULT_PENDING_DIR) + WIRE_ID_HEX_SIZE + 1];
	uint8_t id[WIRE_ID_SIZE];
	long long files = 0;
	int r;

	if (open_store(c, true) < 0 || open_vault(c) < 0)
		return EXIT_SYSTEM;
	r = find_client(c, &cl, true);
	/* The rows go first: an id without rows may still have directories an interrupted removal left. */
	if (r == -ENOENT && c->by != BY_NAME && wire_id_from_hex(c->client, id) == 0) {
		wire_id_to_hex(id, hex);
		snprintf(e, sizeof(e), VAULT_FILES_DIR "/%s", hex);
		snprintf(path, sizeof(path), VAULT_PENDING_DIR "/%s", hex);
		if (faccessat(c->state_fd, e, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ||
		    faccessat(c->state_fd, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
			if ((r = remove_client_dirs(c, id)) == 0)
				printf("Removed what was left of client %s.\n", hex);
			goto out;
		}
	}
	if (r < 0) {
		if (r == -ENOENT)
			fprintf(stderr, "efctl: no client %s '%s'\n",
			        c->by == BY_ID     ? "with the id"
			        : c->by == BY_NAME ? "named"
			                           : "named or with the id",
			        esc(c->client, e));
		return exit_for(r);
	}
	wire_id_to_hex(cl.id, hex);
	if ((r = store_count_files(c->st, cl.id, &files)) < 0 || (r = store_remove_client(c->st, cl.id)) < 0) {
		fprintf(stderr, "efctl: cannot remove %s from the database: %s\n", hex, failure_str(r));
		return exit_for(r);
	}
	r = remove_client_dirs(c, cl.id);
	if (r == 0)
		printf("Removed client %s (%s) and its %lld file%s.\n", esc(cl.name, e), hex, files,
		       files == 1 ? "" : "s");
out:
	if (r < 0)
		fprintf(stderr, "efctl: cannot remove the files of %s: %s (efctl gc finds what is left)\n",
		        esc(c->client, e), strerror(-r));
	return r == 0 ? EXIT_OK : EXIT_SYSTEM;
}

struct gc {
	struct ctl *c;
	long long found, busy;
	/* Rows whose file is gone, collected first: the database is not written while it is being read. */
	struct gc_row {
		uint8_t id[WIRE_ID_SIZE];
		char path[STORE_PATH_MAX];
	} * rows;
	size_t nrows, cap;
	int error;
};

/* One thing found: done with --force ("removed"), else only said ("would remove"). */
static void gc_report(struct gc *g, const char *done, const char *would, const char *what, const char *why)
{
	char e[ESC_SIZE];

	printf("%s %s: %s\n", g->c->force ? done : would, log_escape(what, strlen(what), e, sizeof(e)), why);
	g->found++;
}

static void gc_say(struct gc *g, const char *what, const char *why)
{
	gc_report(g, "removed", "would remove", what, why);
}

static int gc_leftover(const char *name, void *ctx)
{
	char path[NAME_MAX + sizeof(VAULT_TMP_DIR) + 2];

	snprintf(path, sizeof(path), VAULT_TMP_DIR "/%s", name);
	gc_say(ctx, path, "temporary file of a session that is no longer running");
	return 0;
}

/* store_disk's question, for the store's transactions that efctl runs. */
static int ctl_pending_exists(void *ctx, const uint8_t id[WIRE_ID_SIZE], const char *token)
{
	struct ctl *c = ctx;

	return vault_pending_exists(c->v, id, token);
}

#define INTERRUPTED "a confirmation a crash interrupted: its copy kept aside is under the name, the row not yet updated"

/* With --force, a row store_repair_files completed. */
static int gc_repaired(const struct store_file *f, void *ctx)
{
	gc_report(ctx, "completed", "would complete", f->path_name, INTERRUPTED);
	return 0;
}

/* Without --force, a row store_repair_files would complete. */
static int gc_interrupted(const struct store_file *f, void *ctx)
{
	struct gc *g = ctx;
	int r;

	if (!f->pending)
		return 0;
	if ((r = vault_pending_exists(g->c->v, f->client_id, f->pending_name)) < 0) {
		g->error = r;
		return 1;
	}
	if (r == 0)
		gc_repaired(f, g);
	return 0;
}

static int gc_row(const struct store_file *f, void *ctx)
{
	struct gc *g = ctx;
	struct gc_row *n;
	struct stat sb;

	if (f->status == STORE_FILE_FAILED || !path_ok(f) ||
	    fstatat(g->c->state_fd, f->path_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
		return 0;
	if (g->nrows == g->cap) {
		g->cap = g->cap ? 2 * g->cap : 16;
		if (!(n = reallocarray(g->rows, g->cap, sizeof(*n)))) {
			g->error = -ENOMEM;
			return 1;
		}
		g->rows = n;
	}
	memcpy(g->rows[g->nrows].id, f->client_id, WIRE_ID_SIZE);
	snprintf(g->rows[g->nrows].path, STORE_PATH_MAX, "%s", f->path_name);
	g->nrows++;
	return 0;
}

struct gone {
	int state_fd;
	const char *path;
};

/* Inside the deleting transaction: 0 only if the file is still absent. */
static int gone_check(void *ctx)
{
	struct gone *g = ctx;
	struct stat sb;

	return fstatat(g->state_fd, g->path, &sb, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT ? 0 : -EEXIST;
}

struct unnamed {
	struct vault *v;
	const uint8_t *id;
	const char *token;
};

/* Inside the transaction that found no row naming it: the kept-aside copy goes. */
static int unnamed_remove(void *ctx)
{
	struct unnamed *u = ctx;

	return vault_remove_pending(u->v, u->id, u->token);
}

/* A kept-aside copy on disk: debris when no row names it (an upload replaced, dropped, or cut by a crash). */
static int gc_pending(const uint8_t id[WIRE_ID_SIZE], const char *token, void *ctx)
{
	struct gc *g = ctx;
	struct unnamed u = {g->c->v, id, token};
	char path[STORE_PATH_MAX];
	int r;

	r = g->c->force ? store_forget_pending(g->c->st, id, token, unnamed_remove, &u)
	                : store_pending_referenced(g->c->st, id, token);
	if (r == -EBUSY || r == 1)
		return 0;
	if (r < 0) {
		g->error = r;
		return 1;
	}
	if (vault_pending_path(id, token, path, sizeof(path)) == 0)
		gc_say(g, path, "copy kept aside that no database row names");
	return 0;
}

static int gc_dir(struct gc *g, enum vault_area area, const uint8_t id[WIRE_ID_SIZE], bool empty)
{
	const char *top = area == VAULT_PENDING ? VAULT_PENDING_DIR : VAULT_FILES_DIR;
	char path[sizeof(VAULT_PENDING_DIR) + sizeof(VAULT_FILES_DIR) + WIRE_ID_HEX_SIZE + 1];
	struct store_client cl;
	bool orphan;
	int r;

	r = store_get_client(g->c->st, id, &cl);
	if (r < 0 && r != -ENOENT) {
		g->error = r;
		return 1;
	}
	crypto_wipe(cl.aes_key, sizeof(cl.aes_key));
	/* Kept-aside copies go one by one (gc_pending), each checked against the database. */
	orphan = r == -ENOENT && area == VAULT_FILES;
	if (!orphan && !empty)
		return 0;
	snprintf(path, sizeof(path), "%s/", top);
	wire_id_to_hex(id, path + strlen(path));
	/* Without the content, the kernel removes only an empty directory: never one filled meanwhile. */
	if (g->c->force && (r = vault_remove_dir(g->c->v, area, id, orphan)) < 0) {
		if (r == -ENOTEMPTY) {
			g->busy++;
			return 0;
		}
		g->error = r;
		return 1;
	}
	gc_say(g, path,
	       orphan                  ? "directory of a client no longer in the database"
	       : area == VAULT_PENDING ? "empty directory of kept-aside copies"
	                               : "empty client directory");
	return 0;
}

static int gc_files_dir(const uint8_t id[WIRE_ID_SIZE], bool empty, void *ctx)
{
	return gc_dir(ctx, VAULT_FILES, id, empty);
}

static int gc_pending_dir(const uint8_t id[WIRE_ID_SIZE], bool empty, void *ctx)
{
	return gc_dir(ctx, VAULT_PENDING, id, empty);
}

/* SQLite in the state directory, copied into an empty PostgreSQL database. */
static int cmd_migrate(struct ctl *c)
{
	struct store_copied n;
	struct store *to = NULL;
	const char *why;
	char *url = NULL;
	int r;

	if (c->database) {
		fprintf(stderr, "efctl: migrate copies the SQLite database of the state directory: give no --database, "
		                "$" OPTS_DATABASE_ENV " or " OPTS_DATABASE_CREDENTIAL " credential with it\n");
		return EXIT_USAGE;
	}
	if ((r = opts_database(c->to, &url, &why)) < 0) {
		fprintf(stderr, "efctl: --to: %s\n", r == -ENOMEM ? strerror(-r) : why);
		return r == -ENOMEM ? EXIT_SYSTEM : EXIT_USAGE;
	}
	if (open_store(c, false) < 0) {
		free(url);
		return EXIT_SYSTEM;
	}
	r = store_open_database(url, c->state_dir, 0, false, NULL, NULL, &to);
	free(url);
	if (r < 0) {
		fprintf(stderr, "efctl: cannot open the PostgreSQL database: %s\n", failure_str(r));
		return EXIT_SYSTEM;
	}
	r = store_copy(c->st, to, &n);
	store_close(to);
	if (r == -EEXIST) {
		fprintf(stderr, "efctl: the PostgreSQL database already holds clients; migrate copies into an empty "
		                "one\n");
		return EXIT_PROBLEMS;
	}
	if (r < 0) {
		fprintf(stderr, "efctl: cannot copy the database: %s (nothing was copied)\n", failure_str(r));
		return EXIT_SYSTEM;
	}
	printf("Copied %lld client%s, %lld file row%s, %lld registration%s and %lld bad padding%s of the last hour "
	       "from %s/" STORE_DB_NAME " into the PostgreSQL database.\n",
	       n.clients, n.clients == 1 ? "" : "s", n.files, n.files == 1 ? "" : "s", n.registrations,
	       n.registrations == 1 ? "" : "s", n.bad_paddings, n.bad_paddings == 1 ? "" : "s", c->state_dir);
	return EXIT_OK;
}

static int cmd_gc(struct ctl *c)
{
	struct gc g = {.c = c};
	long elsewhere = 0;
	struct store_disk disk = {.ctx = c, .pending_exists = ctl_pending_exists};
	char e[ESC_SIZE];
	int r;

	if (open_store(c, c->force) < 0 || open_vault(c) < 0)
		return EXIT_SYSTEM;
	if ((r = vault_each_leftover(c->v, c->force, gc_leftover, &g, &elsewhere)) < 0)
		fprintf(stderr, "efctl: cannot clean %s/" VAULT_TMP_DIR ": %s\n", c->state_dir, strerror(-r));
	/* Interrupted confirmations first: once completed, their rows describe the files under their names. */
	if (r == 0) {
		r = c->force ? store_repair_files(c->st, &disk, gc_repaired, &g)
		             : store_each_file(c->st, NULL, gc_interrupted, &g);
		if (r != 0)
			fprintf(stderr, "efctl: cannot complete interrupted confirmations: %s\n",
			        failure_str(g.error ? g.error : r));
	}
	if (r == 0 && (r = store_each_file(c->st, NULL, gc_row, &g)) != 0)
		(void)read_failed(g.error ? g.error : r);
	for (size_t i = 0; r == 0 && i < g.nrows; i++) {
		struct gone gone = {.state_fd = c->state_fd, .path = g.rows[i].path};

		if (c->force && (r = store_forget_file(c->st, g.rows[i].id, g.rows[i].path, gone_check, &gone)) < 0) {
			/* Replaced, given up or removed meanwhile: no longer a row without its file. */
			if (r == -ENOENT || r == -EEXIST) {
				r = 0;
				continue;
			}
			fprintf(stderr, "efctl: cannot delete the row of %s: %s\n", esc(g.rows[i].path, e),
			        failure_str(r));
			break;
		}
		gc_say(&g, g.rows[i].path, "database row of a stored file that is gone");
	}
	if (r == 0 && (r = vault_each_pending(c->v, gc_pending, &g)) != 0)
		fprintf(stderr, "efctl: cannot clean %s/" VAULT_PENDING_DIR ": %s\n", c->state_dir,
		        failure_str(g.error ? g.error : r));
	if (r == 0 && (r = vault_each_client_dir(c->v, VAULT_FILES, gc_files_dir, &g)) != 0)
		fprintf(stderr, "efctl: cannot clean %s/" VAULT_FILES_DIR ": %s\n", c->state_dir,
		        failure_str(g.error ? g.error : r));
	if (r == 0 && (r = vault_each_client_dir(c->v, VAULT_PENDING, gc_pending_dir, &g)) != 0)
		fprintf(stderr, "efctl: cannot clean %s/" VAULT_PENDING_DIR ": %s\n", c->state_dir,
		        failure_str(g.error ? g.error : r));
	free(g.rows);
	if (r != 0)
		return EXIT_SYSTEM;
	if (g.busy)
		printf("%lld client director%s filled meanwhile left alone.\n", g.busy, g.busy == 1 ? "y" : "ies");
	if (elsewhere)
		printf("%ld temporary file%s of other hosts left alone (efctl gc on each host judges its own; this is "
		       "%s).\n",
		       elsewhere, elsewhere == 1 ? "" : "s", vault_host(c->v));
	if (g.found == 0)
		printf("Nothing to clean.\n");
	else if (!c->force)
		printf("%lld item%s; efctl gc --force removes %s.\n", g.found, g.found == 1 ? "" : "s",
		       g.found == 1 ? "it" : "them");
	return EXIT_OK;
}

/* Where decrypt writes: stdout, a device as it is, or a new file renamed over OUT once all is authenticated. */
struct output {
	int fd;
	char *tmp; /* the temporary name, when renaming */
};

static int output_open(const char *path, struct output *o)
{
	struct stat sb;

	o->tmp = NULL;
	if (!path || strcmp(path, "-") == 0) {
		o->fd = STDOUT_FILENO;
		return 0;
	}
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		o->fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
		return o->fd < 0 ? -errno : 0;
	}
	if (asprintf(&o->tmp, "%s.XXXXXX", path) < 0)
		return -ENOMEM;
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	if (o->fd < 0) {
		free(o->tmp);
		o->tmp = NULL;
		return -errno;
	}
	return 0;
}

/* Finish the output: on success give it its name; on failure leave nothing of it. */
static int output_close(const char *path, struct output *o, bool ok)
{
	int r = 0;

	if (o->tmp && ok && (fsync(o->fd) < 0 || rename(o->tmp, path) < 0))
		r = -errno;
	if (o->tmp && (!ok || r < 0))
		(void)unlink(o->tmp);
	if (o->fd != STDOUT_FILENO && close(o->fd) < 0 && r == 0 && ok)
		r = -errno;
	free(o->tmp);
	return r;
}

static int cmd_decrypt(struct ctl *c, const char *file)
{
	struct seal_reader *rd = NULL;
	struct output o;
	const uint8_t *p;
	size_t n;
	int in, r, w = 0;

	if ((!c->output || strcmp(c->output, "-") == 0) && isatty(STDOUT_FILENO)) {
		fprintf(stderr, "efctl: not writing a file's bytes to a terminal: use -o OUT or a redirection\n");
		return EXIT_USAGE;
	}
	if ((in = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		fprintf(stderr, "efctl: %s: %s\n", file, strerror(errno));
		return errno == ENOENT ? EXIT_NOT_FOUND : EXIT_SYSTEM;
	}
	if (need_key(c) < 0) {
		close(in);
		return EXIT_SYSTEM;
	}
	if ((r = seal_reader_new(c->key, in, &rd)) < 0) {
		fprintf(stderr, "efctl: %s: %s\n", file, seal_strerror(r));
		close(in);
		return r == -EPROTO || r == -EKEYREJECTED || r == -ENODATA ? EXIT_PROBLEMS : EXIT_SYSTEM;
	}
	if ((w = output_open(c->output, &o)) < 0) {
		fprintf(stderr, "efctl: %s: %s\n", c->output, strerror(-w));
		seal_reader_free(rd);
		close(in);
		return EXIT_SYSTEM;
	}
	while ((r = seal_reader_next(rd, &p, &n)) == 1)
		if ((w = io_write_full(o.fd, p, n, -1)) < 0)
			break;
	if (r < 0)
		fprintf(stderr, "efctl: %s: segment %llu: %s%s\n", file, (unsigned long long)seal_reader_segment(rd),
		        seal_strerror(r), o.tmp ? "; nothing was written" : "; discard what was written");
	else if (w < 0)
		fprintf(stderr, "efctl: %s: %s\n", c->output ? c->output : "standard output", strerror(-w));
	if ((w = output_close(c->output, &o, r == 0 && w == 0)) < 0)
		fprintf(stderr, "efctl: %s: %s\n", c->output, strerror(-w));
	seal_reader_free(rd);
	close(in);
	if (r == -EBADMSG || r == -ENODATA)
		return EXIT_PROBLEMS;
	return r < 0 || w < 0 ? EXIT_SYSTEM : EXIT_OK;
}

/*
 * Provisioning (efserver-protocol(7), Limits and access): a client made
 * here, with its key pair, for a server whose registration may be closed.
 * The name passes the rule a register request does; the client and its
 * pinned public key go in in one transaction; the identity files are
 * written only if none are there, and if they cannot be, the client is
 * removed again, so that nothing half-made remains.
 */
static int cmd_add(struct ctl *c, const char *name)
{
	static const char *const identity[] = {CLIENTCONF_ME, CLIENTCONF_PRIVKEY};
	uint8_t field[WIRE_NAME_SIZE], id[WIRE_ID_SIZE], spki[DER_RSA_SPKI_MAX], raw[DER_RSA_SPKI_MAX];
	struct keyfile_rsa *key = NULL;
	struct clientconf_error err;
	struct der_rsa_key pub;
	char hex[WIRE_ID_HEX_SIZE], e[ESC_SIZE], *path;
	enum wire_name_error ne = WIRE_NAME_OK;
	bool made_dir = false;
	size_t len, raw_len;
	long spki_len = -EINVAL;
	struct stat sb;
	int r, status = EXIT_SYSTEM;

	if (wire_put_name(field, name) < 0 || (ne = wire_check_new_client_name(field, &len)) != WIRE_NAME_OK) {
		fprintf(stderr, "efctl: the client name '%s' %s\n", esc(name, e),
		        ne == WIRE_NAME_OK ? "longer than 254 bytes" : wire_name_error_str(ne));
		return EXIT_USAGE;
	}
	if (mkdir(c->out_dir, 0700) == 0)
		made_dir = true;
	else if (errno != EEXIST || stat(c->out_dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "efctl: cannot use %s for the identity files: %s\n", c->out_dir,
		        strerror(errno == EEXIST ? ENOTDIR : errno));
		return EXIT_SYSTEM;
	}
	/* The identity files hold a client's only copy of its private key: never replaced. */
	for (size_t i = 0; i < sizeof(identity) / sizeof(identity[0]); i++) {
		if (asprintf(&path, "%s/%s", c->out_dir, identity[i]) < 0)
			return EXIT_SYSTEM;
		r = lstat(path, &sb) == 0 || errno != ENOENT;
		if (r)
			fprintf(stderr, "efctl: %s is there already; not replacing an identity\n", path);
		free(path);
		if (r)
			return EXIT_PROBLEMS;
	}
	if (open_store(c, true) < 0)
		goto out;
	if ((r = keyfile_generate(&key, c->rsa_bits)) < 0 ||
	    (r = keyfile_public_spki(key, raw, sizeof(raw), &raw_len)) < 0) {
		fprintf(stderr, "efctl: cannot make an RSA key: %s\n", strerror(-r));
		goto out;
	}
	/* Pinned in the form efsession stores a key it receives, so that the client's own key matches it. */
	if (der_read_rsa_public(raw, raw_len, &pub) == DER_OK)
		spki_len = der_write_rsa_spki(pub.n, pub.n_len, pub.e, pub.e_len, spki, sizeof(spki));
	if (spki_len < 0) {
		fprintf(stderr, "efctl: cannot encode the public key\n");
		goto out;
	}
	crypto_new_client_id(id);
	wire_id_to_hex(id, hex);
	if ((r = store_add_client(c->st, id, name, spki, (size_t)spki_len)) == -EEXIST) {
		fprintf(stderr, "efctl: the name '%s' is taken\n", esc(name, e));
		status = EXIT_PROBLEMS;
		goto out;
	} else if (r < 0) {
		fprintf(stderr, "efctl: cannot add '%s' to the database: %s\n", esc(name, e), failure_str(r));
		goto out;
	}
	if ((r = clientconf_create_identity(c->out_dir, name, id, key, &err)) < 0) {
		fprintf(stderr, "efctl: %s\n", err.text);
		if ((r = store_remove_client(c->st, id)) < 0)
			fprintf(stderr, "efctl: and cannot remove client %s again: %s (efctl remove-client %s does)\n",
			        hex, failure_str(r), hex);
		goto out;
	}
	printf("Added client %s (%s) with a %u-bit RSA key; its identity is in %s/" CLIENTCONF_ME
	       " and %s/" CLIENTCONF_PRIVKEY ".\n",
	       esc(name, e), hex, keyfile_bits(key), c->out_dir, c->out_dir);
	status = EXIT_OK;
out:
	keyfile_free(key);
	if (status != EXIT_OK && made_dir)
		(void)rmdir(c->out_dir);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"database", required_argument, NULL, 'D'},
	    {"storage-key-file", required_argument, NULL, 'k'},
	    {"json", no_argument, NULL, 'j'},
	    {"client", required_argument, NULL, 'c'},
	    {"checksum", required_argument, NULL, 'C'},
	    {"force", no_argument, NULL, 'f'},
	    {"output", required_argument, NULL, 'o'},
	    {"id", required_argument, NULL, 'i'},
	    {"name", required_argument, NULL, 'n'},
	    {"out", required_argument, NULL, 'O'},
	    {"to", required_argument, NULL, 'T'},
	    {"rsa-bits", required_argument, NULL, 'B'},
	    {"client-quota", required_argument, NULL, 'Q'},
	    {"min-free-space", required_argument, NULL, 'M'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0, 0, 0, 0},
	};
	struct ctl c = {.checksum = CKSUM_POSIX,
	                .state_fd = -1,
	                .rsa_bits = KEYFILE_RSA_BITS,
	                .client_quota = OPTS_CLIENT_QUOTA_DEFAULT,
	                .min_free_space = OPTS_MIN_FREE_SPACE_DEFAULT};
	enum command cmd = CMD_NONE;
	unsigned given = 0, selectors = 0;
	uint64_t u;
	const char *state_arg = NULL, *database_arg = NULL, *why;
	bool help = false;
	static char program[] = "efctl";
	int opt, r, want;

	/* getopt's messages name argv[0]: the program, not the path it was started by. */
	argv[0] = program;
	while ((opt = getopt_long(argc, argv, "s:k:jc:C:fo:i:n:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			state_arg = optarg;
			break;
		case 'D':
			database_arg = optarg;
			break;
		case 'k':
			c.key_file = optarg;
			break;
		case 'j':
			c.json = true;
			given |= OPT_JSON;
			break;
		case 'c':
		case 'i':
		case 'n':
			c.client = optarg;
			c.by = opt == 'i' ? BY_ID : opt == 'n' ? BY_NAME : BY_EITHER;
			given |= opt == 'c' ? OPT_CLIENT : OPT_SELECT;
			selectors++;
			break;
		case 'O':
			c.out_dir = optarg;
			given |= OPT_OUT;
			break;
		case 'T':
			c.to = optarg;
			given |= OPT_TO;
			break;
		case 'B':
			if (opts_parse_u64(optarg, KEYFILE_RSA_MIN_BITS, KEYFILE_RSA_MAX_BITS, &u) < 0 || u % 8) {
				fprintf(stderr, "efctl: --rsa-bits wants a multiple of 8 from %u to %u, not '%s'\n",
				        KEYFILE_RSA_MIN_BITS, KEYFILE_RSA_MAX_BITS, optarg);
				return EXIT_USAGE;
			}
			c.rsa_bits = (unsigned)u;
			given |= OPT_RSA_BITS;
			break;
		case 'Q':
		case 'M':
			if (opts_parse_size(optarg, 0, INT64_MAX, opt == 'Q' ? &c.client_quota : &c.min_free_space) <
			    0) {
				fprintf(stderr, "efctl: --%s wants bytes (K/M/G suffixes allowed), not '%s'\n",
				        opt == 'Q' ? "client-quota" : "min-free-space", optarg);
				return EXIT_USAGE;
			}
			given |= OPT_LIMITS;
			break;
		case 'C':
			if (cksum_algo_from_name(optarg, &c.checksum) < 0) {
				fprintf(stderr, "efctl: unknown checksum '%s' (cksum, crc32 or crc32-ciphertext)\n",
				        optarg);
				return EXIT_USAGE;
			}
			given |= OPT_CHECKSUM;
			break;
		case 'f':
			c.force = true;
			given |= OPT_FORCE;
			break;
		case 'o':
			c.output = optarg;
			given |= OPT_OUTPUT;
			break;
		case 'h':
			help = true;
			break;
		case 'V':
			printf("efctl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return EXIT_OK;
		default:
			fprintf(stderr, "Try 'efctl --help'.\n");
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		for (cmd = 0; cmd < CMD_NONE && strcmp(argv[optind], commands[cmd].name) != 0; cmd++)
			continue;
		if (cmd == CMD_NONE) {
			fprintf(stderr, "efctl: unknown command '%s'; try 'efctl --help'\n", argv[optind]);
			return EXIT_USAGE;
		}
		optind++;
	}
	if (help) {
		if (cmd == CMD_NONE)
			usage(stdout);
		else
			command_usage(stdout, cmd);
		return EXIT_OK;
	}
	if (cmd == CMD_NONE) {
		usage(stderr);
		return EXIT_USAGE;
	}
	/* A client named by --id or --name takes the place of a NAME|ID operand. */
	want = commands[cmd].client_operand && (given & OPT_SELECT) ? 0 : commands[cmd].args;
	if (argc - optind != want || (given & ~commands[cmd].options) || selectors > 1 ||
	    (cmd == CMD_ADD && !c.out_dir) || (cmd == CMD_MIGRATE && !c.to)) {
		fprintf(stderr, "efctl: %s\n",
		        argc - optind != want            ? "wrong number of arguments"
		        : selectors > 1                  ? "one client at most: NAME|ID, --client, --id or --name"
		        : given & ~commands[cmd].options ? "an option this command does not take"
		        : cmd == CMD_ADD                 ? "add-client needs --out DIR"
		                                         : "migrate needs --to URL");
		command_usage(stderr, cmd);
		return EXIT_USAGE;
	}
	if (commands[cmd].client_operand && want == 1) {
		c.client = argv[optind];
		c.by = BY_EITHER;
	}

	umask(077);
	if ((r = crypto_init()) < 0) {
		fprintf(stderr, "efctl: cannot initialise libgcrypt: %s\n", strerror(-r));
		return EXIT_SYSTEM;
	}
	if (cmd == CMD_DECRYPT) {
		r = cmd_decrypt(&c, argv[optind]);
		seal_key_free(c.key);
		return r;
	}
	/* Never printed: a URI may hold a password. */
	if ((r = opts_database(database_arg, &c.database, &why)) == -ENOMEM) {
		fprintf(stderr, "efctl: out of memory\n");
		return EXIT_SYSTEM;
	} else if (r < 0) {
		fprintf(stderr, "efctl: the database (" OPTS_DATABASE_SOURCES "): %s\n", why);
		return EXIT_USAGE;
	}
	if ((r = opts_state_dir(state_arg, &c.state_dir)) < 0) {
		fprintf(stderr, "efctl: cannot settle the state directory: %s\n", strerror(-r));
		free(c.database);
		return EXIT_SYSTEM;
	}
	if ((c.state_fd = open(c.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		r = errno;
		fprintf(stderr, "efctl: cannot use the state directory %s: %s%s\n", c.state_dir, strerror(r),
		        r == ENOENT   ? " (give efsession's with --state-dir DIR)"
		        : r == EACCES ? " (run efctl as root, or as the user efsession runs as)"
		                      : "");
		r = EXIT_SYSTEM;
		goto out;
	}
	if (!(c.buf = malloc(CTL_BUF_SIZE))) {
		fprintf(stderr, "efctl: out of memory\n");
		r = EXIT_SYSTEM;
		goto out;
	}
	switch (cmd) {
	case CMD_CLIENTS:
	case CMD_FILES:
		r = cmd_list(&c, cmd);
		break;
	case CMD_SHOW:
		r = cmd_show(&c);
		break;
	case CMD_USAGE:
		r = cmd_usage(&c);
		break;
	case CMD_VERIFY:
		r = cmd_verify(&c);
		break;
	case CMD_ADD:
		r = cmd_add(&c, argv[optind]);
		break;
	case CMD_REMOVE:
		r = cmd_remove(&c);
		break;
	case CMD_GC:
		r = cmd_gc(&c);
		break;
	case CMD_MIGRATE:
		r = cmd_migrate(&c);
		break;
	default:
		r = EXIT_USAGE;
		break;
	}
	if (fflush(stdout) != 0 && r == EXIT_OK) {
		fprintf(stderr, "efctl: cannot write the output: %s\n", strerror(errno));
		r = EXIT_SYSTEM;
	}
out:
	store_close(c.st);
	vault_close(c.v);
	seal_key_free(c.key);
	if (c.state_fd >= 0)
		close(c.state_fd);
	free(c.buf);
	free(c.state_dir);
	free(c.database);
	return r;
}
