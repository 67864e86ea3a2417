/*
 * efctl: the administrator's tool over efsession's state directory. It
 * reads the database as one more WAL reader, so it runs beside live
 * sessions; only remove-client and gc --force write, in short transactions.
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
#include "crypto.h"
#include "der.h"
#include "failure.h"
#include "io.h"
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
	EXIT_PROBLEMS = 1, /* verify found problems; decrypt met a file that does not authenticate */
	EXIT_USAGE = 2,
	EXIT_NOT_FOUND = 3,
	EXIT_SYSTEM = 4, /* state directory, database, storage key or output unusable */
};

#define CTL_BUF_SIZE (256u * 1024)
/* Room for a name escaped for the terminal. */
#define ESC_SIZE   LOG_ESCAPE_SIZE(WIRE_NAME_SIZE)
#define HEX_SHA256 (2 * 32 + 1)

enum command { CMD_CLIENTS, CMD_FILES, CMD_SHOW, CMD_VERIFY, CMD_REMOVE, CMD_GC, CMD_DECRYPT, CMD_NONE };

/* Which options each command takes. */
enum { OPT_JSON = 1, OPT_CLIENT = 2, OPT_FORCE = 4, OPT_CHECKSUM = 8, OPT_OUTPUT = 16 };

static const struct command_spec {
	const char *name;
	unsigned options;
	int args; /* operands after the command */
	const char *synopsis;
	const char *help;
} commands[] = {
    [CMD_CLIENTS] = {"clients", OPT_JSON, 0, "clients [--json]",
                     "List the clients: name, id, last seen and number of files."},
    [CMD_FILES] = {"files", OPT_JSON | OPT_CLIENT, 0, "files [--client NAME|ID] [--json]",
                   "List the files recorded (of one client with --client): size, checksum,\n"
                   "whether the client confirmed it, when it was received."},
    [CMD_SHOW] = {"show", OPT_JSON, 1, "show NAME|ID [--json]",
                  "Show one client: its id, last seen, public key fingerprint, whether it has\n"
                  "an AES key (never the key), and its files."},
    [CMD_VERIFY] = {"verify", OPT_CLIENT | OPT_CHECKSUM, 0, "verify [--client NAME|ID] [--checksum ALGO]",
                    "Recompute every stored file's size and checksum, decrypting files stored\n"
                    "encrypted at rest, and report each file that is missing or differs from\n"
                    "the database. ALGO is efsession's --checksum (default cksum)."},
    [CMD_REMOVE] = {"remove-client", 0, 1, "remove-client NAME|ID",
                    "Remove a client: its database rows first, then its files and directory.\n"
                    "If interrupted, the client is gone and what is left of its directory is\n"
                    "found by gc, or removed by running remove-client ID again."},
    [CMD_GC] = {"gc", OPT_FORCE, 0, "gc [--force]",
                "List (remove, with --force) what killed sessions and interrupted removals\n"
                "leave: temporary files of sessions no longer running, rows of stored files\n"
                "whose file is gone, directories of removed clients, empty client directories."},
    [CMD_DECRYPT] = {"decrypt", OPT_OUTPUT, 1, "decrypt FILE [-o OUT]",
                     "Write the original bytes of a file stored encrypted at rest to OUT (replaced\n"
                     "only once every segment has authenticated), or to standard output."},
};

struct ctl {
	char *state_dir;
	const char *key_file;
	const char *client;
	const char *output;
	bool json;
	bool force;
	enum cksum_algo checksum;
	int state_fd;
	struct store *st;
	struct seal_key *key;
	uint8_t *buf;
	/* The last client whose name was looked up for a file row. */
	uint8_t name_id[WIRE_ID_SIZE];
	char name[WIRE_NAME_SIZE];
	bool name_valid;
};

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
	            "                              " EF_STATE_DIR ")\n"
	            "  -k, --storage-key-file FILE the storage key for files encrypted at rest\n"
	            "                              (default: the " SEAL_CREDENTIAL " credential)\n"
	            "  -j, --json                  JSON instead of a table\n"
	            "  -c, --client NAME|ID        only that client's files\n"
	            "  -C, --checksum ALGO         cksum (default), crc32 or crc32-ciphertext\n"
	            "  -f, --force                 gc: remove, not only list\n"
	            "  -o, --output FILE           decrypt: write to FILE\n"
	            "  -h, --help                  show this help (or a command's) and exit\n"
	            "  -V, --version               show the version and exit\n"
	            "\n"
	            "Exit status: 0 ok, 1 verify found problems or a file did not authenticate,\n"
	            "2 usage error, 3 no such client or file, 4 system error. See efctl(8).\n");
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

static int open_store(struct ctl *c, bool writable)
{
	int r = writable ? store_open(c->state_dir, 0, &c->st) : store_open_readonly(c->state_dir, 0, &c->st);

	if (r == -ENOENT)
		fprintf(stderr, "efctl: no efserver database in %s (has efsession run there?)\n", c->state_dir);
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

/* A client by id (32 hex digits, dashes allowed), else by name. */
static int find_client(struct ctl *c, const char *arg, struct store_client *out, bool quiet)
{
	uint8_t id[WIRE_ID_SIZE];
	int r = -ENOENT;

	if (wire_id_from_hex(arg, id) == 0)
		r = store_get_client(c->st, id, out);
	if (r == -ENOENT && *arg && strlen(arg) < WIRE_NAME_SIZE)
		r = store_find_client_by_name(c->st, arg, out);
	if (r == 0)
		crypto_wipe(out->aes_key, sizeof(out->aes_key));
	else if (r == -ENOENT && !quiet)
		fprintf(stderr, "efctl: no client named or with the id '%s'\n", arg);
	else if (r != -ENOENT)
		fprintf(stderr, "efctl: cannot look up '%s': %s\n", arg, failure_str(r));
	return r;
}

static int exit_for(int r)
{
	return r == -ENOENT ? EXIT_NOT_FOUND : EXIT_SYSTEM;
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

	wire_id_to_hex(cl->id, hex);
	esc(cl->name, e);
	if (t->measure) {
		if (width(e) > t->w_name)
			t->w_name = width(e);
		return 0;
	}
	if (t->c->json) {
		printf("%s\n  {\"name\": ", t->rows ? "," : "");
		json_str(cl->name);
		printf(", \"id\": \"%s\", \"last_seen\": \"%s\", \"files\": %lld}", hex, cl->last_seen, cl->file_count);
	} else {
		cell(e, t->w_name + 2);
		printf("%s  %-24s  %5lld\n", hex, cl->last_seen, cl->file_count);
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
	char hex[WIRE_ID_HEX_SIZE];

	wire_id_to_hex(f->client_id, hex);
	printf("%s{\"client_id\": \"%s\", \"client\": ", indent, hex);
	json_str(client_name(c, f->client_id));
	fputs(", \"file_name\": ", stdout);
	json_str(f->file_name);
	fputs(", \"path\": ", stdout);
	json_str(f->path_name);
	printf(", \"size\": %llu, \"checksum\": %u, \"verified\": %s, \"status\": \"%s\", \"attempts\": %lld, "
	       "\"received\": \"%s\"}",
	       (unsigned long long)f->size, f->checksum, f->verified ? "true" : "false",
	       f->status == STORE_FILE_FAILED ? "given up" : "stored", f->attempts, f->received);
}

static int file_row(const struct store_file *f, void *ctx)
{
	struct table *t = ctx;
	char e1[ESC_SIZE], e2[ESC_SIZE], hs[32];

	esc(f->file_name, e1);
	if (t->measure) {
		if (width(e1) > t->w_file)
			t->w_file = width(e1);
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
	if (c->client && (r = find_client(c, c->client, cl, false)) < 0)
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

static int cmd_show(struct ctl *c, const char *who)
{
	struct store_client cl;
	struct der_rsa_key k;
	struct file_list l = {.c = c};
	char hex[WIRE_ID_HEX_SIZE], fp[HEX_SHA256], e[ESC_SIZE];
	uint8_t sha[32];
	unsigned bits = 0;
	int r;

	if ((r = open_store(c, false)) < 0)
		return EXIT_SYSTEM;
	if ((r = find_client(c, who, &cl, false)) < 0)
		return exit_for(r);
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
		printf(", \"aes_key_bits\": %zu, \"file_count\": %lld, \"files\": [", cl.aes_key_len * 8,
		       cl.file_count);
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
		printf("files:       %lld\n", cl.file_count);
		if (cl.file_count > 0) {
			putchar('\n');
			r = list(c, cl.id, true);
		}
	}
	if (r < 0)
		return read_failed(r);
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
	long long checked, sealed, problems, given_up;
	int error; /* a failure of ours, not of a file: stop */
};

static void problem(struct verify *v, const struct store_file *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(struct verify *v, const struct store_file *f, const char *fmt, ...)
{
	char e[ESC_SIZE], e2[ESC_SIZE];
	va_list ap;

	printf("%s (%s): ", esc(f->path_name, e), esc(client_name(v->c, f->client_id), e2));
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

static int verify_file(const struct store_file *f, void *ctx)
{
	struct verify *v = ctx;
	struct cksum_state ck = {0};
	struct stat sb;
	uint64_t bytes, segment = 0;
	uint32_t sum;
	bool sealed;
	int fd, r;

	if (f->status == STORE_FILE_FAILED) {
		v->given_up++;
		return 0;
	}
	v->checked++;
	if (!path_ok(f)) {
		problem(v, f, "the database gives a path efsession does not write");
		return 0;
	}
	fd = openat(v->c->state_fd, f->path_name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		problem(v, f, "%s",
		        fd < 0 && errno == ENOENT ? "missing"
		        : fd < 0                  ? strerror(errno)
		                                  : "not a regular file");
		if (fd >= 0)
			close(fd);
		return 0;
	}
	/* The two sizes never coincide, so a plaintext that happens to look sealed is read as what it is. */
	sealed = (uint64_t)sb.st_size != f->size;
	if (sealed && (uint64_t)sb.st_size != seal_sealed_size(f->size)) {
		problem(v, f, "%lld bytes on disk, neither the %llu recorded nor their size encrypted at rest",
		        (long long)sb.st_size, (unsigned long long)f->size);
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
		problem(v, f, "encrypted at rest, segment %llu: %s", (unsigned long long)segment, seal_strerror(r));
	else if (r < 0)
		problem(v, f, "%s", seal_strerror(r));
	else if (bytes != f->size)
		problem(v, f, "%llu bytes, %llu recorded", (unsigned long long)bytes, (unsigned long long)f->size);
	else if (!cksum_over_ciphertext(v->c->checksum) && sum != f->checksum)
		problem(v, f, "checksum %u, %u recorded", sum, f->checksum);
	return 0;
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
	printf("%lld file%s checked (%lld encrypted at rest, %lld given up with no copy): %lld problem%s.\n", v.checked,
	       v.checked == 1 ? "" : "s", v.sealed, v.given_up, v.problems, v.problems == 1 ? "" : "s");
	if (cksum_over_ciphertext(c->checksum))
		printf("With crc32-ciphertext the checksum covers what the client sent, encrypted: only sizes and "
		       "authentication were checked.\n");
	return v.problems ? EXIT_PROBLEMS : EXIT_OK;
}

static int cmd_remove(struct ctl *c, const char *who)
{
	struct store_client cl;
	struct vault *v = NULL;
	char hex[WIRE_ID_HEX_SIZE], e[ESC_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	int r;

	if ((r = open_store(c, true)) < 0)
		return EXIT_SYSTEM;
	if ((r = vault_open_existing(c->state_dir, &v)) < 0) {
		fprintf(stderr, "efctl: cannot use the state directory %s: %s\n", c->state_dir, strerror(-r));
		return EXIT_SYSTEM;
	}
	r = find_client(c, who, &cl, true);
	/* The rows go first: an id without rows may still have a directory an interrupted removal left. */
	if (r == -ENOENT && wire_id_from_hex(who, id) == 0) {
		wire_id_to_hex(id, hex);
		snprintf(e, sizeof(e), VAULT_FILES_DIR "/%s", hex);
		if (faccessat(c->state_fd, e, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
			if ((r = vault_remove_dir(v, id, true, false)) == 0)
				printf("Removed what was left of client %s.\n", hex);
			goto out;
		}
	}
	if (r < 0) {
		if (r == -ENOENT)
			fprintf(stderr, "efctl: no client named or with the id '%s'\n", who);
		vault_close(v);
		return exit_for(r);
	}
	wire_id_to_hex(cl.id, hex);
	if ((r = store_remove_client(c->st, cl.id)) < 0) {
		fprintf(stderr, "efctl: cannot remove %s from the database: %s\n", hex, failure_str(r));
		vault_close(v);
		return exit_for(r);
	}
	r = vault_remove_dir(v, cl.id, true, false);
	if (r == 0)
		printf("Removed client %s (%s) and its %lld file%s.\n", esc(cl.name, e), hex, cl.file_count,
		       cl.file_count == 1 ? "" : "s");
out:
	if (r < 0)
		fprintf(stderr, "efctl: cannot remove the files of %s: %s (efctl gc finds what is left)\n", who,
		        strerror(-r));
	vault_close(v);
	return r == 0 ? EXIT_OK : EXIT_SYSTEM;
}

struct gc {
	struct ctl *c;
	struct vault *v;
	long long found, busy;
	/* Rows whose file is gone, collected first: the database is not written while it is being read. */
	struct gc_row {
		uint8_t id[WIRE_ID_SIZE];
		char path[STORE_PATH_MAX];
	} * rows;
	size_t nrows, cap;
	int error;
};

static void gc_say(struct gc *g, const char *what, const char *why)
{
	char e[ESC_SIZE];

	printf("%s %s: %s\n", g->c->force ? "removed" : "would remove", log_escape(what, strlen(what), e, sizeof(e)),
	       why);
	g->found++;
}

static int gc_leftover(const char *name, void *ctx)
{
	char path[NAME_MAX + sizeof(VAULT_TMP_DIR) + 2];

	snprintf(path, sizeof(path), VAULT_TMP_DIR "/%s", name);
	gc_say(ctx, path, "temporary file of a session that is no longer running");
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

static int gc_dir(const uint8_t id[WIRE_ID_SIZE], bool empty, void *ctx)
{
	struct gc *g = ctx;
	struct store_client cl;
	char path[sizeof(VAULT_FILES_DIR) + WIRE_ID_HEX_SIZE + 1];
	bool orphan;
	int r;

	r = store_get_client(g->c->st, id, &cl);
	if (r < 0 && r != -ENOENT) {
		g->error = r;
		return 1;
	}
	crypto_wipe(cl.aes_key, sizeof(cl.aes_key));
	orphan = r == -ENOENT;
	if (!orphan && !empty)
		return 0;
	memcpy(path, VAULT_FILES_DIR "/", sizeof(VAULT_FILES_DIR));
	wire_id_to_hex(id, path + sizeof(VAULT_FILES_DIR));
	if (g->c->force && (r = vault_remove_dir(g->v, id, orphan, true)) < 0) {
		/* An upload has the directory open, or filled it meanwhile: it is in use, not debris. */
		if (r == -EBUSY || r == -ENOTEMPTY) {
			g->busy++;
			return 0;
		}
		g->error = r;
		return 1;
	}
	gc_say(g, path, orphan ? "directory of a client no longer in the database" : "empty client directory");
	return 0;
}

static int cmd_gc(struct ctl *c)
{
	struct gc g = {.c = c};
	char e[ESC_SIZE];
	int r;

	if ((r = open_store(c, c->force)) < 0)
		return EXIT_SYSTEM;
	if ((r = vault_open_existing(c->state_dir, &g.v)) < 0) {
		fprintf(stderr, "efctl: cannot use the state directory %s: %s\n", c->state_dir, strerror(-r));
		return EXIT_SYSTEM;
	}
	if ((r = vault_each_leftover(g.v, c->force, gc_leftover, &g)) < 0)
		fprintf(stderr, "efctl: cannot clean %s/" VAULT_TMP_DIR ": %s\n", c->state_dir, strerror(-r));
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
	if (r == 0 && (r = vault_each_client_dir(g.v, gc_dir, &g)) != 0)
		fprintf(stderr, "efctl: cannot clean %s/" VAULT_FILES_DIR ": %s\n", c->state_dir,
		        failure_str(g.error ? g.error : r));
	free(g.rows);
	vault_close(g.v);
	if (r != 0)
		return EXIT_SYSTEM;
	if (g.busy)
		printf("%lld client director%s in use by uploads left alone.\n", g.busy, g.busy == 1 ? "y" : "ies");
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

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"storage-key-file", required_argument, NULL, 'k'},
	    {"json", no_argument, NULL, 'j'},
	    {"client", required_argument, NULL, 'c'},
	    {"checksum", required_argument, NULL, 'C'},
	    {"force", no_argument, NULL, 'f'},
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0, 0, 0, 0},
	};
	struct ctl c = {.checksum = CKSUM_POSIX, .state_fd = -1};
	enum command cmd = CMD_NONE;
	unsigned given = 0;
	const char *state_arg = NULL;
	bool help = false;
	static char program[] = "efctl";
	int opt, r;

	/* getopt's messages name argv[0]: the program, not the path it was started by. */
	argv[0] = program;
	while ((opt = getopt_long(argc, argv, "s:k:jc:C:fo:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			state_arg = optarg;
			break;
		case 'k':
			c.key_file = optarg;
			break;
		case 'j':
			c.json = true;
			given |= OPT_JSON;
			break;
		case 'c':
			c.client = optarg;
			given |= OPT_CLIENT;
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
	if (argc - optind != commands[cmd].args || (given & ~commands[cmd].options)) {
		fprintf(stderr, "efctl: %s\n",
		        argc - optind != commands[cmd].args ? "wrong number of arguments"
		                                            : "an option this command does not take");
		command_usage(stderr, cmd);
		return EXIT_USAGE;
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
	if ((r = opts_state_dir(state_arg, &c.state_dir)) < 0) {
		fprintf(stderr, "efctl: cannot settle the state directory: %s\n", strerror(-r));
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
		r = cmd_show(&c, argv[optind]);
		break;
	case CMD_VERIFY:
		r = cmd_verify(&c);
		break;
	case CMD_REMOVE:
		r = cmd_remove(&c, argv[optind]);
		break;
	case CMD_GC:
		r = cmd_gc(&c);
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
	seal_key_free(c.key);
	if (c.state_fd >= 0)
		close(c.state_fd);
	free(c.buf);
	free(c.state_dir);
	return r;
}
