/*
 * efsession: one connection of the efserver protocol on stdin/stdout (or on
 * the one connected socket systemd passes), started by systemd or inetd.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "crypto.h"
#include "failure.h"
#include "log.h"
#include "opts.h"
#include "peer.h"
#include "seal.h"
#include "session.h"
#include "store.h"
#include "systemd.h"
#include "vault.h"
#include "wire.h"

/*
 * EXIT STATUS in efsession(8): a super-server's program, 1 the peer's fault
 * (enum session_end), 100 a permanent error, 111 a passing one of the system.
 */
#define EXIT_USAGE 100

/* --database, in the help of a build that has the PostgreSQL engine. */
#ifdef HAVE_POSTGRESQL
#define USAGE_DATABASE                                                                                                 \
	"      --database URL         a PostgreSQL database shared by several hosts, a\n"                              \
	"                             libpq URI postgresql://... (default: $" OPTS_DATABASE_ENV ",\n"                  \
	"                             else the " OPTS_DATABASE_CREDENTIAL " credential,\n"                             \
	"                             else SQLite in the state directory)\n"
#else
#define USAGE_DATABASE ""
#endif

static void usage(FILE *to)
{
	fprintf(to, "Usage: efsession [OPTION]...\n"
	            "Serve one efserver protocol connection on standard input and output (or on the\n"
	            "socket passed by systemd), until the client closes it. Started per connection by\n"
	            "systemd (efserver.socket) or inetd; see efsession(8).\n"
	            "\n"
	            "  -s, --state-dir DIR        state directory (default: $STATE_DIRECTORY, else\n"
	            "                             " EF_STATE_DIR ")\n" USAGE_DATABASE
	            "  -c, --checksum ALGO        cksum (default), crc32 or crc32-ciphertext\n"
	            "  -t, --idle-timeout SECONDS close a connection quiet this long (default 30; 0: never)\n"
	            "  -m, --max-file-size BYTES  largest encrypted content accepted, K/M/G suffixes\n"
	            "                             allowed (default: what the protocol allows, 4 GiB)\n"
	            "  -k, --aes-key-bits BITS    128 (default) or 256\n"
	            "  -l, --log-level LEVEL      debug, info (default), notice, warning, err, crit\n"
	            "      --log-target TARGET    auto (default), journal, syslog, terminal, stderr\n"
	            "  -d, --debug                debug level with hex dumps of requests (never of a\n"
	            "                             key), and no idle timeout\n"
	            "      --fault-checksum N     report a wrong checksum for the first N uploads of\n"
	            "                             each file, to exercise clients' resend paths\n"
	            "      --registration MODE    open (default): anyone may register; closed: register\n"
	            "                             requests are refused, clients are added with\n"
	            "                             efctl add-client\n"
	            "      --compat LIST          accept what some clients send (comma-separated):\n"
	            "                             seed004, the seed-004 client's dialect on the\n"
	            "                             connections that open with it; content-after, an\n"
	            "                             upload whose payload_size counts the fixed fields\n"
	            "                             only; short-name, a register name without its NUL;\n"
	            "                             all: seed004 and content-after (short-name does not\n"
	            "                             combine with seed004)\n"
	            "      --encrypt-at-rest      store files encrypted under the storage key\n"
	            "      --storage-key-file FILE  the storage key, 32 raw bytes (default: the\n"
	            "                             " SEAL_CREDENTIAL " credential of systemd)\n"
	            "\n"
	            "Limits (efsession(8), Limits; 0 turns each off):\n"
	            "      --max-clients N        clients in all (default 0)\n"
	            "      --registrations-per-hour N\n"
	            "                             registrations from one source address (an IPv6 /64)\n"
	            "                             in the last hour (default 20)\n"
	            "      --client-quota BYTES   bytes one client may store, kept-aside copies\n"
	            "                             included, K/M/G suffixes allowed (default 0)\n"
	            "      --client-max-files N   file names one client may store (default 0)\n"
	            "      --min-free-space BYTES free space an upload must leave on the state\n"
	            "                             directory's file system (default 1G)\n"
	            "      --max-refusals N       close a connection at its Nth refused request\n"
	            "                             (default 8)\n"
	            "      --min-rate BYTES       bytes a second an upload's content must average,\n"
	            "                             after a grace of the idle timeout (default 4K)\n"
	            "      --max-bad-paddings N   uploads with a bad padding per client and hour\n"
	            "                             before its uploads are refused (default 4)\n"
	            "\n"
	            "  -h, --help                 show this help and exit\n"
	            "  -V, --version              show the version and exit\n"
	            "\n"
	            "Exit status: 0 the client closed the connection, 1 the client broke the protocol,\n"
	            "timed out or dropped the connection mid-request, 100 usage error (permanent:\n"
	            "fix the command line), 111 system error (state directory, database or key).\n");
}

/* Descriptors 0-2 must exist, so that nothing we open ends up as one of them. */
static void sanitise_fds(void)
{
	int fd;

	while ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0 && fd <= STDERR_FILENO)
		(void)fcntl(fd, F_SETFD, 0);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* Options without a short form, after every character. */
enum {
	OPT_MAX_CLIENTS = 256,
	OPT_REGISTRATIONS_PER_HOUR,
	OPT_CLIENT_QUOTA,
	OPT_CLIENT_MAX_FILES,
	OPT_MIN_FREE_SPACE,
	OPT_MAX_REFUSALS,
	OPT_MIN_RATE,
	OPT_MAX_BAD_PADDINGS,
	OPT_DATABASE,
};

/* A limit's value (efsession(8), Limits), a count or, with suffixes, a size, into cfg: 0, or a usage error said. */
static int limit_arg(int opt, const char *arg, struct session_config *cfg)
{
	static const struct {
		int opt;
		const char *name;
		bool size;
		uint64_t max;
		size_t field;
	} limits[] = {
	    {OPT_MAX_CLIENTS, "max-clients", false, UINT32_MAX, offsetof(struct session_config, limits.max_clients)},
	    {OPT_REGISTRATIONS_PER_HOUR, "registrations-per-hour", false, UINT32_MAX,
	     offsetof(struct session_config, limits.registrations_per_hour)},
	    {OPT_CLIENT_QUOTA, "client-quota", true, INT64_MAX, offsetof(struct session_config, limits.client_quota)},
	    {OPT_CLIENT_MAX_FILES, "client-max-files", false, UINT32_MAX,
	     offsetof(struct session_config, limits.client_max_files)},
	    {OPT_MIN_FREE_SPACE, "min-free-space", true, INT64_MAX, offsetof(struct session_config, min_free_space)},
	    {OPT_MAX_REFUSALS, "max-refusals", false, UINT32_MAX, offsetof(struct session_config, max_refusals)},
	    {OPT_MIN_RATE, "min-rate", true, UINT32_MAX, offsetof(struct session_config, min_rate)},
	    {OPT_MAX_BAD_PADDINGS, "max-bad-paddings", false, UINT32_MAX,
	     offsetof(struct session_config, limits.max_bad_paddings)},
	};
	uint64_t *out;

	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		if (limits[i].opt != opt)
			continue;
		out = (uint64_t *)((char *)cfg + limits[i].field);
		if ((limits[i].size ? opts_parse_size : opts_parse_u64)(arg, 0, limits[i].max, out) == 0)
			return 0;
		fprintf(stderr, "efsession: --%s wants %s, not '%s'\n", limits[i].name,
		        limits[i].size ? "bytes (K/M/G suffixes allowed)" : "a count", arg);
		return -EINVAL;
	}
	return -EINVAL;
}

/*
 * The connection's peer: its address in the log's context, and its source
 * for the limits of efsession(8) (registrations are counted by source).
 */
static void describe_peer(int fd, struct peer *p)
{
	peer_of_fd(fd, p);
	if (p->address[0])
		log_context_peer(p->address);
}

/*
 * The database is missing, empty or without a schema while files/ holds
 * client directories (store_open returned vault_refuse_new_store's
 * -EEXIST): creating one would silently forget every client and free their
 * names. Said in one line; the caller exits without serving.
 */
static bool refused_new_store(const char *state_dir, struct vault *v, int r)
{
	long dirs = 0;

	if (r != -EEXIST || vault_count_client_dirs(v, &dirs) < 0 || dirs == 0)
		return false;
	log_crit("Refusing to create a database in %s: %s, but %s/ holds %ld client director%s; restore %s from a "
	         "backup, or move %s/ aside to start afresh.",
	         state_dir, failure_str(r), VAULT_FILES_DIR, dirs, dirs == 1 ? "y" : "ies", STORE_DB_NAME,
	         VAULT_FILES_DIR);
	return true;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"database", required_argument, NULL, OPT_DATABASE},
	    {"checksum", required_argument, NULL, 'c'},
	    {"idle-timeout", required_argument, NULL, 't'},
	    {"max-file-size", required_argument, NULL, 'm'},
	    {"aes-key-bits", required_argument, NULL, 'k'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"log-target", required_argument, NULL, 'L'},
	    {"debug", no_argument, NULL, 'd'},
	    {"fault-checksum", required_argument, NULL, 'F'},
	    {"compat", required_argument, NULL, 'C'},
	    {"encrypt-at-rest", no_argument, NULL, 'E'},
	    {"storage-key-file", required_argument, NULL, 'K'},
	    {"registration", required_argument, NULL, 'R'},
	    {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
	    {"registrations-per-hour", required_argument, NULL, OPT_REGISTRATIONS_PER_HOUR},
	    {"client-quota", required_argument, NULL, OPT_CLIENT_QUOTA},
	    {"client-max-files", required_argument, NULL, OPT_CLIENT_MAX_FILES},
	    {"min-free-space", required_argument, NULL, OPT_MIN_FREE_SPACE},
	    {"max-refusals", required_argument, NULL, OPT_MAX_REFUSALS},
	    {"min-rate", required_argument, NULL, OPT_MIN_RATE},
	    {"max-bad-paddings", required_argument, NULL, OPT_MAX_BAD_PADDINGS},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0, 0, 0, 0},
	};
	struct session_config cfg = {
	    .checksum = CKSUM_POSIX,
	    .idle_timeout = 30,
	    .aes_key_len = 16,
	    .limits = {.registrations_per_hour = 20, .client_quota = OPTS_CLIENT_QUOTA_DEFAULT, .max_bad_paddings = 4},
	    .min_free_space = OPTS_MIN_FREE_SPACE_DEFAULT,
	    .max_refusals = 8,
	    .min_rate = 4096,
	};
	struct peer peer;
	const char *state_arg = NULL, *key_file = NULL, *database_arg = NULL;
	char key_path[PATH_MAX];
	struct seal_key *key = NULL;
	bool encrypt = false;
	char *state_dir = NULL, *database = NULL;
	enum log_target target = LOG_TARGET_AUTO;
	int level = LOG_INFO, level_set = 0, opt, r, in = STDIN_FILENO, out = STDOUT_FILENO, n;
	struct store *st = NULL;
	struct vault *v = NULL;
	enum session_end end = SESSION_SYSTEM_ERROR;
	const char *why;
	unsigned compat = 0, tolerances;
	uint64_t u;

	sanitise_fds();
	while ((opt = getopt_long(argc, argv, "s:c:t:m:k:l:dhV", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			state_arg = optarg;
			break;
		case OPT_DATABASE:
			database_arg = optarg;
			break;
		case 'c':
			if (cksum_algo_from_name(optarg, &cfg.checksum) < 0) {
				fprintf(stderr, "efsession: unknown checksum '%s' (cksum, crc32 or crc32-ciphertext)\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 't':
			if (opts_parse_u64(optarg, 0, 86400, &u) < 0) {
				fprintf(stderr, "efsession: --idle-timeout wants seconds from 0 to 86400, not '%s'\n",
				        optarg);
				return EXIT_USAGE;
			}
			cfg.idle_timeout = (unsigned)u;
			break;
		case 'm':
			if (opts_parse_size(optarg, 16, UINT32_MAX, &cfg.max_file_size) < 0) {
				fprintf(stderr, "efsession: --max-file-size wants 16 bytes to 4 GiB, not '%s'\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 'k':
			if (strcmp(optarg, "128") != 0 && strcmp(optarg, "256") != 0) {
				fprintf(stderr, "efsession: --aes-key-bits is 128 or 256, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			cfg.aes_key_len = optarg[0] == '1' ? 16 : 32;
			break;
		case 'l':
			if (log_level_from_name(optarg, &level) < 0) {
				fprintf(stderr, "efsession: unknown log level '%s'\n", optarg);
				return EXIT_USAGE;
			}
			level_set = 1;
			break;
		case 'L':
			if (log_target_from_name(optarg, &target) < 0) {
				fprintf(stderr, "efsession: unknown log target '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd':
			cfg.debug = true;
			break;
		case 'F':
			if (opts_parse_u64(optarg, 0, UINT32_MAX, &cfg.fault_checksum) < 0) {
				fprintf(stderr, "efsession: --fault-checksum wants a count, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'C':
			if (opts_parse_compat(optarg, &compat, &why) < 0) {
				fprintf(stderr, "efsession: --compat '%s' %s\n", optarg, why);
				return EXIT_USAGE;
			}
			break;
		case 'E':
			encrypt = true;
			break;
		case 'K':
			key_file = optarg;
			break;
		case 'R':
			if (strcmp(optarg, "open") != 0 && strcmp(optarg, "closed") != 0) {
				fprintf(stderr, "efsession: --registration is open or closed, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			cfg.registration_closed = optarg[0] == 'c';
			break;
		case OPT_MAX_CLIENTS:
		case OPT_REGISTRATIONS_PER_HOUR:
		case OPT_CLIENT_QUOTA:
		case OPT_CLIENT_MAX_FILES:
		case OPT_MIN_FREE_SPACE:
		case OPT_MAX_REFUSALS:
		case OPT_MIN_RATE:
		case OPT_MAX_BAD_PADDINGS:
			if (limit_arg(opt, optarg, &cfg) < 0)
				return EXIT_USAGE;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("efsession (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "efsession: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (key_file && !encrypt) {
		fprintf(stderr, "efsession: --storage-key-file is only used with --encrypt-at-rest\n");
		return EXIT_USAGE;
	}
	/* Never printed: a URI may hold a password. */
	if ((r = opts_database(database_arg, &database, &why)) == -ENOMEM) {
		fprintf(stderr, "efsession: out of memory\n");
		return SESSION_SYSTEM_ERROR;
	} else if (r < 0) {
		fprintf(stderr, "efsession: the database (" OPTS_DATABASE_SOURCES "): %s\n", why);
		return EXIT_USAGE;
	}
	if (cfg.debug && !level_set)
		level = LOG_DEBUG;
	/* efserver-protocol(7), "Dialects and tolerances". */
	tolerances = (compat & OPTS_COMPAT_CONTENT_AFTER ? WIRE_TOLERATE_CONTENT_AFTER : 0) |
	             (compat & OPTS_COMPAT_SHORT_NAME ? WIRE_TOLERATE_SHORT_NAME : 0);
	cfg.dialect = wire_dialect_tolerant(&wire_standard, tolerances);
	if (compat & OPTS_COMPAT_SEED004 && !(cfg.seed004 = wire_dialect_tolerant(&wire_seed004, tolerances))) {
		fprintf(stderr,
		        "efsession: --compat: seed004 and short-name cannot be combined: both read a 1100 whose "
		        "payload_size is below 255, each its own way\n");
		return EXIT_USAGE;
	}

	/* A client that goes away must not kill us mid-transaction; writes report EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	log_open("efsession", target);
	log_set_level(level);

	n = systemd_listen_fds(1);
	if (n == -ELIBACC) {
		log_crit("systemd passed sockets, but libsystemd cannot be loaded to take them.");
		return SESSION_SYSTEM_ERROR;
	}
	if (n > 1) {
		log_crit("systemd passed %d sockets; efsession serves exactly one connection (use Accept=yes).", n);
		return SESSION_SYSTEM_ERROR;
	}
	if (n == 1)
		in = out = SD_LISTEN_FDS_START;
	describe_peer(in, &peer);
	cfg.source = peer.source;

	if ((r = crypto_init()) < 0) {
		log_crit("Could not initialise libgcrypt: %s.", strerror(-r));
		return SESSION_SYSTEM_ERROR;
	}
	if ((r = opts_state_dir(state_arg, &state_dir)) < 0) {
		log_crit("Could not settle the state directory: %s.", strerror(-r));
		return SESSION_SYSTEM_ERROR;
	}

	/* Never fall back to plaintext: without its key the session answers 2107, like without its state. */
	if (encrypt &&
	    ((r = seal_key_path(key_file, key_path, sizeof(key_path))) < 0 || (r = seal_key_load(key_path, &key)) < 0))
		log_error("Cannot load the storage key%s%s: %s.", r == -ENOKEY ? "" : " ", r == -ENOKEY ? "" : key_path,
		          seal_strerror(r));
	else if ((r = vault_open(state_dir, &v)) < 0)
		log_error("Cannot use the state directory %s: %s.", state_dir, strerror(-r));
	else if ((r = store_open_database(database, state_dir, 0, false, vault_refuse_new_store, v, &st)) < 0 &&
	         refused_new_store(state_dir, v, r))
		goto out;
	else if (r < 0 && database)
		log_error("Cannot open the PostgreSQL database: %s.", failure_str(r));
	else if (r < 0)
		log_error("Cannot open the database in %s: %s.", state_dir, failure_str(r));

	if (v)
		vault_set_storage_key(v, key);
	end = session_run(&cfg, st, v, in, out);
	/* efsession(8), EXIT STATUS: a session that could not use its state failed, even if no request came. */
	if (!st || !v)
		end = SESSION_SYSTEM_ERROR;
out:
	store_close(st);
	vault_close(v);
	seal_key_free(key);
	free(state_dir);
	free(database);
	return (int)end;
}
