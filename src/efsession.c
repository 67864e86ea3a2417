/*
 * efsession: one connection of the efserver protocol on stdin/stdout (or on
 * the one connected socket systemd passes), started by systemd or inetd.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "crypto.h"
#include "failure.h"
#include "log.h"
#include "opts.h"
#include "seal.h"
#include "session.h"
#include "store.h"
#include "systemd.h"
#include "vault.h"

/*
 * EXIT STATUS in efsession(8): a super-server's program, 1 the peer's fault
 * (enum session_end), 100 a permanent error, 111 a passing one of the system.
 */
#define EXIT_USAGE 100

static void usage(FILE *to)
{
	fprintf(to, "Usage: efsession [OPTION]...\n"
	            "Serve one efserver protocol connection on standard input and output (or on the\n"
	            "socket passed by systemd), until the client closes it. Started per connection by\n"
	            "systemd (efserver.socket) or inetd; see efsession(8).\n"
	            "\n"
	            "  -s, --state-dir DIR        state directory (default: $STATE_DIRECTORY, else\n"
	            "                             " EF_STATE_DIR ")\n"
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
	            "      --encrypt-at-rest      store files encrypted under the storage key\n"
	            "      --storage-key-file FILE  the storage key, 32 raw bytes (default: the\n"
	            "                             " SEAL_CREDENTIAL " credential of systemd)\n"
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

static void describe_peer(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?", peer[INET6_ADDRSTRLEN + 16];

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(peer, sizeof(peer), "%s:%u", host, ntohs(in->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(peer, sizeof(peer), "[%s]:%u", host, ntohs(in6->sin6_port));
	} else if (ss.ss_family == AF_UNIX) {
		snprintf(peer, sizeof(peer), "local");
	} else {
		return;
	}
	log_context_peer(peer);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"checksum", required_argument, NULL, 'c'},
	    {"idle-timeout", required_argument, NULL, 't'},
	    {"max-file-size", required_argument, NULL, 'm'},
	    {"aes-key-bits", required_argument, NULL, 'k'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"log-target", required_argument, NULL, 'L'},
	    {"debug", no_argument, NULL, 'd'},
	    {"fault-checksum", required_argument, NULL, 'F'},
	    {"encrypt-at-rest", no_argument, NULL, 'E'},
	    {"storage-key-file", required_argument, NULL, 'K'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0, 0, 0, 0},
	};
	struct session_config cfg = {
	    .checksum = CKSUM_POSIX,
	    .idle_timeout = 30,
	    .aes_key_len = 16,
	};
	const char *state_arg = NULL, *key_file = NULL;
	char key_path[PATH_MAX];
	struct seal_key *key = NULL;
	bool encrypt = false;
	char *state_dir = NULL;
	enum log_target target = LOG_TARGET_AUTO;
	int level = LOG_INFO, level_set = 0, opt, r, in = STDIN_FILENO, out = STDOUT_FILENO, n;
	struct store *st = NULL;
	struct vault *v = NULL;
	enum session_end end;
	uint64_t u;

	sanitise_fds();
	while ((opt = getopt_long(argc, argv, "s:c:t:m:k:l:dhV", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			state_arg = optarg;
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
		case 'E':
			encrypt = true;
			break;
		case 'K':
			key_file = optarg;
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
	if (cfg.debug && !level_set)
		level = LOG_DEBUG;

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
	describe_peer(in);

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
	else if ((r = store_open(state_dir, 0, &st)) < 0)
		log_error("Cannot open the database in %s: %s.", state_dir, failure_str(r));

	if (v)
		vault_set_storage_key(v, key);
	end = session_run(&cfg, st, v, in, out);
	/* efsession(8), EXIT STATUS: a session that could not use its state failed, even if no request came. */
	if (!st || !v)
		end = SESSION_SYSTEM_ERROR;

	store_close(st);
	vault_close(v);
	seal_key_free(key);
	free(state_dir);
	return (int)end;
}
