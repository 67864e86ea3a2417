/* efclient: register or reconnect, exchange keys, upload files to an efsession server. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cksum.h"
#include "client.h"
#include "clientconf.h"
#include "crypto.h"
#include "keyfile.h"
#include "wire.h"

/* EXIT STATUS in efclient(1). */
enum {
	EXIT_REFUSED = 1,  /* the server refused a request or answered nonsense */
	EXIT_CHECKSUM = 2, /* a file was given up after its resends */
	EXIT_USAGE = 64,   /* bad option, malformed file, unusable file to send */
	EXIT_NETWORK = 69, /* server unreachable, connection lost, timeout */
	EXIT_LOCAL = 74,   /* local I/O or cryptographic failure */
};

struct options {
	const char *server;
	const char *name;
	const char *dir;
	enum client_code_set code_set;
	enum cksum_algo algo;
	unsigned retries;
	unsigned timeout;
	unsigned rsa_bits;
	bool per_request;
	int verbosity; /* -1 quiet, 0 normal, 1 verbose */
};

/* What the progress hooks need to draw on stderr. */
struct progress {
	bool bar;
	bool verbose;
	struct timespec start;
	struct timespec last;
	unsigned attempt;
	bool drawn;
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: efclient [OPTION]... [FILE]...\n"
	        "Upload FILEs, encrypted, to an efsession server: register (or reconnect),\n"
	        "exchange keys, send each file and compare the server's checksum with ours.\n"
	        "Whatever is not given here comes from DIR/transfer.info and DIR/me.info.\n"
	        "\n"
	        "  -s, --server=HOST:PORT      server address (transfer.info line 1)\n"
	        "  -n, --name=NAME             client name to register (transfer.info line 2)\n"
	        "  -d, --dir=DIR               directory of transfer.info, me.info, priv.key\n"
	        "                              (default: the current directory)\n"
	        "  -c, --code-set=1025|1100    request codes to speak (default 1025)\n"
	        "  -k, --checksum=ALGO         cksum, crc32 or crc32-ciphertext, as the server\n"
	        "                              is set (default cksum)\n"
	        "  -r, --retries=N             resends after a checksum mismatch (default %d)\n"
	        "  -t, --timeout=SECONDS       limit for connecting and for every read and\n"
	        "                              write (default %d)\n"
	        "      --connection-per-request  a new connection for every request\n"
	        "      --rsa-bits=BITS         size of a new RSA key, 1024 to 4096 (default %d)\n"
	        "  -v, --verbose               say what happens, also when stderr is no terminal\n"
	        "  -q, --quiet                 print errors only, no progress bar\n"
	        "  -h, --help                  show this help and exit\n"
	        "  -V, --version               show the version and exit\n"
	        "\n"
	        "Files are sent under their base name. Without files on the command line,\n"
	        "those listed in transfer.info from line 3 on are sent. The first run\n"
	        "registers and writes me.info and priv.key; later runs reconnect.\n"
	        "\n"
	        "Exit status: 0 all files stored and verified, 1 refused by the server,\n"
	        "2 checksum mismatch after the resends, 64 usage or configuration error,\n"
	        "69 network error, 74 local error.\n",
	        CLIENT_RETRIES_DEFAULT, CLIENT_TIMEOUT_DEFAULT, KEYFILE_RSA_BITS);
}

__attribute__((format(printf, 1, 2))) static void error(const char *fmt, ...)
{
	va_list ap;

	fputs("efclient: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* strerror() as the tail of a sentence: "connection refused". */
static const char *reason(int err, char *buf, size_t size)
{
	snprintf(buf, size, "%s", strerror(err));
	if (buf[0] && isupper((unsigned char)buf[0]) && !isupper((unsigned char)buf[1]))
		buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

static int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *out)
{
	unsigned long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static double seconds_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static const char *human(double bytes, char *buf, size_t size)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	unsigned i = 0;

	while (bytes >= 1024 && i < 4) {
		bytes /= 1024;
		i++;
	}
	snprintf(buf, size, i ? "%.1f %s" : "%.0f %s", bytes, unit[i]);
	return buf;
}

/* File, bytes, percent, rate and time left, redrawn in place at most ten times a second. */
static void on_progress(void *ctx, const char *name, unsigned attempt, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;
	char a[32], b[32], rate[32], eta[32];
	struct winsize ws;
	double elapsed, speed;
	int width = 80, name_width;
	unsigned percent;

	if (!p->bar)
		return;
	if (attempt != p->attempt || !p->drawn) {
		p->attempt = attempt;
		clock_gettime(CLOCK_MONOTONIC, &p->start);
		p->last = p->start;
	} else if (done < total && seconds_since(&p->last) < 0.1) {
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &p->last);
	p->drawn = true;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 40)
		width = ws.ws_col;
	elapsed = seconds_since(&p->start);
	speed = elapsed > 0 ? (double)done / elapsed : 0;
	percent = total ? (unsigned)(done * 100 / total) : 100;
	if (speed > 0 && done < total) {
		unsigned long left = (unsigned long)((double)(total - done) / speed);

		snprintf(eta, sizeof(eta), "ETA %lu:%02lu", left / 60, left % 60);
	} else {
		snprintf(eta, sizeof(eta), "%s", done < total ? "ETA --:--" : "");
	}
	human(speed, rate, sizeof(rate));
	name_width = width - 58;
	fprintf(stderr, "\r%-*.*s %10s / %-10s %3u%% %10s/s %-9s%s\033[K", name_width, name_width, name,
	        human((double)done, a, sizeof(a)), human((double)total, b, sizeof(b)), percent, rate, eta,
	        attempt > 1 ? " (resend)" : "");
	if (done == total) {
		fputc('\n', stderr);
		p->drawn = false;
	}
	fflush(stderr);
}

static void on_mismatch(void *ctx, const char *name, unsigned attempt, uint32_t ours, uint32_t theirs)
{
	struct progress *p = ctx;

	if (p->verbose)
		error("%s: checksum mismatch on upload %u (ours %" PRIu32 ", server's %" PRIu32 ")", name, attempt,
		      ours, theirs);
}

/* One line for a failed request, and the exit status it calls for. */
static int report(const struct client_error *e, const char *server, const char *name, const char *file,
                  unsigned timeout)
{
	const char *what = wire_request_name(e->request);
	char why[sizeof(e->detail)], about[WIRE_NAME_SIZE + 16] = "";
	bool file_request = e->request == REQ_FILE || e->request == REQ_FILE_1100 ||
	                    (e->request >= REQ_CRC_OK && e->request <= REQ_CRC_ABORT) ||
	                    (e->request >= REQ_CRC_OK_1100 && e->request <= REQ_CRC_ABORT_1100);

	if (file && file_request)
		snprintf(about, sizeof(about), " of %s", file);
	switch (e->failure) {
	case CLIENT_FAIL_RESOLVE:
		error("server %s unreachable: %s", server, e->detail);
		return EXIT_NETWORK;
	case CLIENT_FAIL_CONNECT:
		error("server %s unreachable: %s", server, reason(e->err, why, sizeof(why)));
		return EXIT_NETWORK;
	case CLIENT_FAIL_NETWORK:
		if (e->err == ETIMEDOUT)
			snprintf(why, sizeof(why), "no answer within %u s", timeout);
		else if (e->err)
			reason(e->err, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "%s", e->detail);
		error("connection to server %s lost during %s (%u)%s: %s", server, what, e->request, about, why);
		return EXIT_NETWORK;
	case CLIENT_FAIL_REFUSED:
		if (e->response == RESP_REGISTER_REFUSED)
			error("name '%s' already registered", name);
		else if (e->response == RESP_RECONNECT_REFUSED)
			error("server %s refused to reconnect '%s' (2106): it does not know this name and id", server,
			      name);
		else
			error("server %s refused %s (%u)%s: %s (%u)%s%s", server, what, e->request, about,
			      wire_response_name(e->response), e->response, e->detail[0] ? ", " : "", e->detail);
		return EXIT_REFUSED;
	case CLIENT_FAIL_PROTOCOL:
		error("bad response %u from server %s to %s (%u)%s: %s", e->response, server, what, e->request, about,
		      e->detail);
		return EXIT_REFUSED;
	case CLIENT_FAIL_CHECKSUM:
		error("checksum mismatch: %s", file ? file : "?");
		return EXIT_CHECKSUM;
	case CLIENT_FAIL_LOCAL:
		error("%s%s%s%s%s", file ? file : what, e->err ? ": " : "", e->err ? strerror(e->err) : "",
		      e->detail[0] ? ": " : "", e->detail);
		return EXIT_LOCAL;
	case CLIENT_FAIL_NONE:
		break;
	}
	error("%s (%u) failed", what, e->request);
	return EXIT_LOCAL;
}

/* 0 to go on, 1 when --help or --version has done all there is to do, -EINVAL on a usage error. */
static int parse_options(int argc, char **argv, struct options *o)
{
	enum { OPT_PER_REQUEST = 256, OPT_RSA_BITS };
	static const struct option longopts[] = {
	    {"server", required_argument, NULL, 's'},
	    {"name", required_argument, NULL, 'n'},
	    {"dir", required_argument, NULL, 'd'},
	    {"code-set", required_argument, NULL, 'c'},
	    {"checksum", required_argument, NULL, 'k'},
	    {"retries", required_argument, NULL, 'r'},
	    {"timeout", required_argument, NULL, 't'},
	    {"connection-per-request", no_argument, NULL, OPT_PER_REQUEST},
	    {"rsa-bits", required_argument, NULL, OPT_RSA_BITS},
	    {"verbose", no_argument, NULL, 'v'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	unsigned set;
	int c;

	while ((c = getopt_long(argc, argv, "s:n:d:c:k:r:t:vqhV", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->server = optarg;
			break;
		case 'n':
			o->name = optarg;
			break;
		case 'd':
			o->dir = optarg;
			break;
		case 'c':
			if (parse_unsigned(optarg, 0, 65535, &set) < 0 ||
			    (set != CLIENT_SET_1025 && set != CLIENT_SET_1100)) {
				error("--code-set: '%s' is neither 1025 nor 1100", optarg);
				return -EINVAL;
			}
			o->code_set = set;
			break;
		case 'k':
			if (cksum_algo_from_name(optarg, &o->algo) < 0) {
				error("--checksum: '%s' is not cksum, crc32 or crc32-ciphertext", optarg);
				return -EINVAL;
			}
			break;
		case 'r':
			if (parse_unsigned(optarg, 0, CLIENT_RETRIES_MAX, &o->retries) < 0) {
				error("--retries: '%s' is not a number from 0 to %d", optarg, CLIENT_RETRIES_MAX);
				return -EINVAL;
			}
			break;
		case 't':
			if (parse_unsigned(optarg, 1, CLIENT_TIMEOUT_MAX, &o->timeout) < 0) {
				error("--timeout: '%s' is not a number of seconds from 1 to %d", optarg,
				      CLIENT_TIMEOUT_MAX);
				return -EINVAL;
			}
			break;
		case OPT_PER_REQUEST:
			o->per_request = true;
			break;
		case OPT_RSA_BITS:
			if (parse_unsigned(optarg, KEYFILE_RSA_MIN_BITS, KEYFILE_RSA_MAX_BITS, &o->rsa_bits) < 0 ||
			    o->rsa_bits % 8) {
				error("--rsa-bits: '%s' is not a multiple of 8 from %d to %d", optarg,
				      KEYFILE_RSA_MIN_BITS, KEYFILE_RSA_MAX_BITS);
				return -EINVAL;
			}
			break;
		case 'v':
			o->verbosity = 1;
			break;
		case 'q':
			o->verbosity = -1;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("efclient (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return 1;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

/* Why a file cannot be sent, before any connection is made. */
static void file_error(const char *path, int r, enum client_code_set set)
{
	switch (r) {
	case -EFBIG:
		error("%s: too large for the protocol (at most %" PRIu64 " bytes)", path, client_max_file_size(set));
		break;
	case -EILSEQ:
		error("%s: its base name is empty, '.', '..' or holds a control character", path);
		break;
	case -ENAMETOOLONG:
		error("%s: its base name is longer than %d bytes", path, WIRE_NAME_MAX);
		break;
	case -EINVAL:
		error("%s: not a regular file", path);
		break;
	default:
		error("%s: %s", path, strerror(-r));
	}
}

int main(int argc, char **argv)
{
	struct options o = {.dir = ".",
	                    .code_set = CLIENT_SET_1025,
	                    .algo = CKSUM_POSIX,
	                    .retries = CLIENT_RETRIES_DEFAULT,
	                    .timeout = CLIENT_TIMEOUT_DEFAULT,
	                    .rsa_bits = KEYFILE_RSA_BITS};
	struct clientconf_transfer transfer = {0};
	struct clientconf_identity me = {0};
	struct clientconf_error cerr;
	struct client_file *files = NULL;
	struct client *client = NULL;
	struct keyfile_rsa *key = NULL;
	struct progress progress = {0};
	char *host = NULL, *port = NULL, server[300], hex[WIRE_ID_HEX_SIZE];
	char *const *paths;
	const char *why, *name;
	bool have_identity;
	size_t npaths, i, j;
	unsigned attempts;
	uint8_t id[WIRE_ID_SIZE];
	struct stat st;
	int r, status = EXIT_SUCCESS;

	if ((r = parse_options(argc, argv, &o)) < 0) {
		fprintf(stderr, "Try 'efclient --help' for more information.\n");
		return EXIT_USAGE;
	}
	if (r > 0)
		return EXIT_SUCCESS;
	paths = argv + optind;
	npaths = (size_t)(argc - optind);
	if ((r = crypto_init()) < 0) {
		error("cannot initialise libgcrypt: %s", strerror(-r));
		return EXIT_LOCAL;
	}
	if (stat(o.dir, &st) < 0) {
		error("directory %s: %s", o.dir, strerror(errno));
		return EXIT_USAGE;
	}
	if (!S_ISDIR(st.st_mode)) {
		error("directory %s: not a directory", o.dir);
		return EXIT_USAGE;
	}

	r = clientconf_read_identity(o.dir, &me, &cerr);
	if (r < 0 && r != -ENOENT) {
		error("%s", cerr.text);
		return EXIT_USAGE;
	}
	have_identity = r == 0;
	if (have_identity && o.name && strcmp(o.name, me.name) != 0) {
		error("--name '%s' differs from the name '%s' in %s/%s", o.name, me.name, o.dir, CLIENTCONF_ME);
		status = EXIT_USAGE;
		goto out;
	}
	if (!o.server || npaths == 0 || (!o.name && !have_identity)) {
		if (clientconf_read_transfer(o.dir, &transfer, &cerr) < 0) {
			error("%s", cerr.text);
			status = EXIT_USAGE;
			goto out;
		}
	}
	if (o.server) {
		if (clientconf_parse_server(o.server, strlen(o.server), &host, &port, &why) < 0) {
			error("--server '%s': %s", o.server, why);
			status = EXIT_USAGE;
			goto out;
		}
	} else {
		host = transfer.host;
		port = transfer.port;
		transfer.host = transfer.port = NULL;
	}
	/* As the user would write it, brackets around an IPv6 address. */
	snprintf(server, sizeof(server), "%s%s%s:%s", strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
	         port);
	name = have_identity ? me.name : o.name ? o.name : transfer.name;
	if (!name) {
		error("no client name: give --name or put it on line 2 of %s/%s", o.dir, CLIENTCONF_TRANSFER);
		status = EXIT_USAGE;
		goto out;
	}
	if (clientconf_check_name(name, strlen(name), &why) < 0) {
		error("--name '%s': %s", name, why);
		status = EXIT_USAGE;
		goto out;
	}
	if (npaths == 0) {
		paths = transfer.files;
		npaths = transfer.nfiles;
	}
	if (npaths == 0) {
		error("no file to send: give files as arguments or list them in %s/%s from line 3", o.dir,
		      CLIENTCONF_TRANSFER);
		status = EXIT_USAGE;
		goto out;
	}
	if (!(files = calloc(npaths, sizeof(*files)))) {
		error("out of memory");
		status = EXIT_LOCAL;
		goto out;
	}
	for (i = 0; i < npaths; i++) {
		if ((r = client_check_file(paths[i], o.code_set, &files[i])) < 0) {
			file_error(paths[i], r, o.code_set);
			status = EXIT_USAGE;
			goto out;
		}
		/* The server keeps one file per base name: a second would silently replace the first. */
		for (j = 0; j < i; j++)
			if (strcmp(files[i].name, files[j].name) == 0) {
				error("%s and %s would both be stored as '%s'", files[j].path, files[i].path,
				      files[i].name);
				status = EXIT_USAGE;
				goto out;
			}
	}

	progress.bar = o.verbosity >= 0 && isatty(STDERR_FILENO);
	progress.verbose = o.verbosity > 0;
	r = client_new(&client,
	               &(struct client_params){.host = host,
	                                       .port = port,
	                                       .code_set = o.code_set,
	                                       .algo = o.algo,
	                                       .retries = o.retries,
	                                       .timeout_seconds = o.timeout,
	                                       .connection_per_request = o.per_request},
	               &(struct client_hooks){.ctx = &progress, .progress = on_progress, .mismatch = on_mismatch});
	if (r < 0) {
		error("cannot set up the client: %s", strerror(-r));
		status = EXIT_LOCAL;
		goto out;
	}

	if (!have_identity) {
		/* Before connecting, so that a slow key does not meet the server's idle timeout. */
		if ((r = keyfile_generate(&key, o.rsa_bits)) < 0) {
			error("cannot generate an RSA-%u key: %s", o.rsa_bits, strerror(-r));
			status = EXIT_LOCAL;
			goto out;
		}
		if (client_register(client, name, id) < 0) {
			status = report(client_error(client), server, name, NULL, o.timeout);
			goto out;
		}
		wire_id_to_hex(id, hex);
		if (clientconf_write_identity(o.dir, name, id, key, &cerr) < 0) {
			error("registered '%s' as %s, but %s", name, hex, cerr.text);
			status = EXIT_LOCAL;
			goto out;
		}
		if (progress.verbose)
			error("registered '%s' with %s as %s; wrote %s/%s and %s/%s", name, server, hex, o.dir,
			      CLIENTCONF_ME, o.dir, CLIENTCONF_PRIVKEY);
		r = client_send_public_key(client, name, id, key);
	} else if (o.code_set == CLIENT_SET_1025) {
		r = client_reconnect(client, name, me.id, me.key);
	} else {
		r = client_send_public_key(client, name, me.id, me.key);
	}
	if (r < 0) {
		status = report(client_error(client), server, name, NULL, o.timeout);
		goto out;
	}
	if (progress.verbose && have_identity) {
		wire_id_to_hex(me.id, hex);
		error("%s '%s' (%s) with %s", o.code_set == CLIENT_SET_1025 ? "reconnected" : "sent the public key of",
		      name, hex, server);
	}

	for (i = 0; i < npaths; i++) {
		if (progress.verbose)
			error("sending %s as '%s' (%" PRIu64 " bytes)", files[i].path, files[i].name, files[i].size);
		r = client_upload(client, &files[i], &attempts);
		if (r == 0) {
			if (progress.verbose)
				error("%s: stored and verified%s", files[i].name,
				      attempts > 1 ? " after resending" : "");
			continue;
		}
		if (client_error(client)->failure == CLIENT_FAIL_CHECKSUM) {
			/* Given up; the other files still have their chance. */
			error("checksum mismatch after %u resends: %s", attempts - 1, files[i].name);
			status = EXIT_CHECKSUM;
			continue;
		}
		status = report(client_error(client), server, name, files[i].name, o.timeout);
		break;
	}
out:
	client_free(client);
	keyfile_free(key);
	clientconf_identity_free(&me);
	clientconf_transfer_free(&transfer);
	free(files);
	free(host);
	free(port);
	return status;
}
