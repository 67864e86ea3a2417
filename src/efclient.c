/* efclient: register or reconnect, exchange keys, upload files to an efsession server. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cksum.h"
#include "client.h"
#include "clientconf.h"
#include "crypto.h"
#include "keyfile.h"
#include "opts.h"
#include "wire.h"

/*
 * EXIT STATUS in efclient(1): below 64 what the server answered, from 64 on
 * sysexits(3), as other network clients use, so that a script can tell a
 * refusal from an outage and from a local fault.
 */
enum {
	EXIT_REFUSED = 1,              /* the server refused a request or answered nonsense */
	EXIT_CHECKSUM = 2,             /* a file was given up after its resends */
	EXIT_USAGE = EX_USAGE,         /* bad option, malformed file, unusable file to send */
	EXIT_NETWORK = EX_UNAVAILABLE, /* server unreachable, connection lost, timeout */
	EXIT_LOCAL = EX_IOERR,         /* local I/O or cryptographic failure */
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
	bool seed004; /* --compat seed004 */
	bool set_given, algo_given, bits_given;
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

/* Everything one run works with. */
struct run {
	struct options o;
	struct clientconf_transfer transfer;
	struct clientconf_identity me;
	bool have_identity;
	char *host;
	char *port;
	char server[300]; /* host:port as a user writes it, for messages */
	const char *name;
	struct client_file *files;
	size_t nfiles;
	struct keyfile_rsa *key; /* a new key, when there is no identity yet */
	struct client *client;
	struct progress progress;
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
	        "                              (default: the current directory; created,\n"
	        "                              mode 0700, if it does not exist)\n"
	        "  -c, --code-set=1025|1100    request codes to speak (default %d)\n"
	        "  -k, --checksum=ALGO         cksum, crc32 or crc32-ciphertext, as the server\n"
	        "                              is set (default cksum)\n"
	        "  -r, --retries=N             resends after a checksum mismatch (default %d)\n"
	        "  -t, --timeout=SECONDS       limit for connecting and for every read and\n"
	        "                              write (default %d)\n"
	        "      --connection-per-request  a new connection for every request\n"
	        "      --compat=seed004        speak the dialect of the seed-004 server: the\n"
	        "                              1100 set with its sizes, 8-byte response headers\n"
	        "                              and crc32, each connection opened with 1100 and\n"
	        "                              1101 and carrying one file\n"
	        "      --rsa-bits=BITS         size of a new RSA key, 1024 to 4096 (default %d)\n"
	        "  -v, --verbose               say what happens, also when stderr is no terminal\n"
	        "  -q, --quiet                 print errors only: no progress bar, no line\n"
	        "                              per stored file\n"
	        "  -h, --help                  show this help and exit\n"
	        "  -V, --version               show the version and exit\n"
	        "\n"
	        "Files are sent under their base name. Without files on the command line,\n"
	        "those listed in transfer.info from line 3 on are sent. The first run\n"
	        "registers and writes me.info and priv.key; later runs reconnect (1025\n"
	        "set) or send the stored public key again (1100 set), and send it too when\n"
	        "the server has none (a registration that was interrupted). A connection\n"
	        "the server closes after a response is opened again. Each file stored and\n"
	        "confirmed gets a line on stdout; a progress bar is drawn on stderr when it\n"
	        "is a terminal.\n"
	        "\n"
	        "Exit status: 0 all files stored and verified, 1 refused by the server,\n"
	        "2 checksum mismatch after the resends; from sysexits(3): 64 usage or\n"
	        "configuration error, 69 network error, 74 local error.\n",
	        OPTS_CODE_SET_DEFAULT, CLIENT_RETRIES_DEFAULT, CLIENT_TIMEOUT_DEFAULT, KEYFILE_RSA_BITS);
}

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
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
	/* The rest of the line takes 61 columns; the last column is left free so that the terminal does not wrap. */
	name_width = width - 62 < 8 ? 8 : width - 62;
	fprintf(stderr, "\r%-*.*s %10s / %-10s %3u%% %10s/s %-9s%s\033[K", name_width, name_width, name,
	        human((double)done, a, sizeof(a)), human((double)total, b, sizeof(b)), percent, rate, eta,
	        attempt > 1 ? " (resend)" : "");
	if (done == total) {
		fputc('\n', stderr);
		p->drawn = false;
	}
	fflush(stderr);
}

/* efserver-protocol(7), "Dialects and tolerances": a server that serves one request per connection. */
static void on_reopen(void *ctx, uint16_t request)
{
	struct progress *p = ctx;

	if (p->verbose)
		say("the server closed the connection after its response; connecting again for %s (%u)",
		    wire_request_name(request), request);
}

static void on_mismatch(void *ctx, const char *name, unsigned attempt, uint32_t ours, uint32_t theirs)
{
	struct progress *p = ctx;

	if (p->verbose)
		say("%s: checksum mismatch on upload %u (ours %" PRIu32 ", server's %" PRIu32 ")", name, attempt, ours,
		    theirs);
}

/* One line for a failed request, and the exit status it calls for. */
static int report(const struct client_error *e, const struct run *run, const char *file)
{
	const char *server = run->server, *name = run->name;
	const char *what = wire_request_name(e->request);
	const struct wire_request_spec *rq = wire_find_request(e->request);
	char why[sizeof(e->detail)], about[WIRE_NAME_SIZE + 16] = "";
	bool file_request = rq && wire_request_names_file(rq);

	if (file && file_request)
		snprintf(about, sizeof(about), " of %s", file);
	switch (e->failure) {
	case CLIENT_FAIL_RESOLVE:
		say("server %s unreachable: %s", server, e->detail);
		return EXIT_NETWORK;
	case CLIENT_FAIL_CONNECT:
		say("server %s unreachable: %s%s", server, reason(e->err, why, sizeof(why)),
		    e->err == ECONNREFUSED ? " (is efsession listening on that port?)" : "");
		return EXIT_NETWORK;
	case CLIENT_FAIL_NETWORK:
		if (e->err == ETIMEDOUT) {
			say("no answer from server %s to %s (%u)%s within %u s: is efsession, and not another "
			    "program, listening on that port? (--timeout sets the wait)",
			    server, what, e->request, about, run->o.timeout);
			return EXIT_NETWORK;
		}
		if (e->err)
			reason(e->err, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "%s", e->detail);
		/* A server of the standard dialect answers the seed-004 opening in 7 bytes, and closes. */
		say("connection to server %s lost during %s (%u)%s: %s%s", server, what, e->request, about, why,
		    run->o.seed004 && e->request == REQ_REGISTER_1100
		        ? " (does the server speak the seed-004 dialect? efsession needs --compat seed004)"
		        : "");
		return EXIT_NETWORK;
	case CLIENT_FAIL_REFUSED:
		if (e->response == RESP_REGISTER_REFUSED)
			say("server %s refused to register '%s' (2101): the name is taken or not allowed, or "
			    "registration is closed there (its operator then hands out identities made with efctl "
			    "add-client)",
			    server, name);
		else if (e->response == RESP_RECONNECT_REFUSED)
			say("server %s refused to reconnect '%s' (2106): it does not know this name and id", server,
			    name);
		else
			say("server %s refused %s (%u)%s: %s (%u)%s%s", server, what, e->request, about,
			    wire_response_name(e->response), e->response, e->detail[0] ? ", " : "", e->detail);
		return EXIT_REFUSED;
	case CLIENT_FAIL_PROTOCOL:
		say("bad response %u from server %s to %s (%u)%s: %s (is efsession, and not another program, listening "
		    "on that port?)",
		    e->response, server, what, e->request, about, e->detail);
		return EXIT_REFUSED;
	case CLIENT_FAIL_CHECKSUM:
		say("checksum mismatch: %s", file ? file : "?");
		return EXIT_CHECKSUM;
	case CLIENT_FAIL_LOCAL:
		say("%s%s%s%s%s", file ? file : what, e->err ? ": " : "", e->err ? strerror(e->err) : "",
		    e->detail[0] ? ": " : "", e->detail);
		return EXIT_LOCAL;
	case CLIENT_FAIL_NONE:
		break;
	}
	say("%s (%u) failed", what, e->request);
	return EXIT_LOCAL;
}

/*
 * The seed-004 dialect is the 1100 set with crc32, RSA-1024 keys and one
 * connection per file by design (efserver-protocol(7), "Dialects and
 * tolerances"): options that say otherwise are refused, the rest follow.
 */
static int check_seed004(struct options *o)
{
	if (!o->seed004)
		return 0;
	if ((o->set_given && o->code_set != CLIENT_SET_1100) ||
	    (o->algo_given && o->algo != wire_dialect_checksum(&wire_seed004, o->algo)) ||
	    (o->bits_given && o->rsa_bits != KEYFILE_RSA_BITS) || o->per_request) {
		say("--compat seed004 speaks the 1100 set with crc32 and %d-bit keys, a connection per file: "
		    "--code-set, --checksum, --rsa-bits and --connection-per-request cannot say otherwise",
		    KEYFILE_RSA_BITS);
		return -EINVAL;
	}
	o->code_set = CLIENT_SET_1100;
	o->algo = wire_dialect_checksum(&wire_seed004, o->algo);
	return 0;
}

/* 0 to go on, 1 when --help or --version has done all there is to do, -EINVAL on a usage error. */
static int parse_options(int argc, char **argv, struct options *o)
{
	enum { OPT_PER_REQUEST = 256, OPT_RSA_BITS, OPT_COMPAT };
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
	    {"compat", required_argument, NULL, OPT_COMPAT},
	    {"verbose", no_argument, NULL, 'v'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	unsigned set, compat;
	const char *why;
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
			if (opts_parse_code_set(optarg, &set) < 0) {
				say("--code-set: '%s' is neither 1025 nor 1100", optarg);
				return -EINVAL;
			}
			o->code_set = (enum client_code_set)set;
			o->set_given = true;
			break;
		case 'k':
			if (cksum_algo_from_name(optarg, &o->algo) < 0) {
				say("--checksum: '%s' is not cksum, crc32 or crc32-ciphertext", optarg);
				return -EINVAL;
			}
			o->algo_given = true;
			break;
		case 'r':
			if (parse_unsigned(optarg, 0, CLIENT_RETRIES_MAX, &o->retries) < 0) {
				say("--retries: '%s' is not a number from 0 to %d", optarg, CLIENT_RETRIES_MAX);
				return -EINVAL;
			}
			break;
		case 't':
			if (parse_unsigned(optarg, 1, CLIENT_TIMEOUT_MAX, &o->timeout) < 0) {
				say("--timeout: '%s' is not a number of seconds from 1 to %d", optarg,
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
				say("--rsa-bits: '%s' is not a multiple of 8 from %d to %d", optarg,
				    KEYFILE_RSA_MIN_BITS, KEYFILE_RSA_MAX_BITS);
				return -EINVAL;
			}
			o->bits_given = true;
			break;
		case OPT_COMPAT:
			if (opts_parse_compat(optarg, &compat, &why) < 0) {
				say("--compat '%s' %s", optarg, why);
				return -EINVAL;
			}
			if (compat != OPTS_COMPAT_SEED004) {
				say("--compat: efclient speaks seed004 only; content-after and short-name are what a "
				    "server tolerates");
				return -EINVAL;
			}
			o->seed004 = true;
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
	return check_seed004(o);
}

/* Why a file cannot be sent, before any connection is made. */
static void file_error(const char *path, int r, enum client_code_set set, bool seed004)
{
	switch (r) {
	case -EFBIG:
		say("%s: too large for the protocol (at most %" PRIu64 " bytes)", path, client_max_file_size(set));
		break;
	case -EILSEQ:
		say("%s: its base name is empty, '.', '..' or holds a control character", path);
		break;
	case -ENAMETOOLONG:
		say("%s: its base name is longer than %zu bytes", path, client_max_name(seed004));
		break;
	case -EINVAL:
		say("%s: not a regular file", path);
		break;
	default:
		say("%s: %s", path, strerror(-r));
	}
}

/* Every file is checked before connecting, so that a bad one stops the run before anything is sent. */
static int check_files(struct run *run, char *const *paths, size_t n)
{
	size_t i, j;
	int r;

	if (!(run->files = calloc(n, sizeof(*run->files)))) {
		say("out of memory");
		return EXIT_LOCAL;
	}
	for (i = 0; i < n; i++) {
		if ((r = client_check_file(paths[i], run->o.code_set, run->o.seed004, &run->files[i])) < 0) {
			file_error(paths[i], r, run->o.code_set, run->o.seed004);
			return EXIT_USAGE;
		}
		/* The server keeps one file per base name: a second would silently replace the first. */
		for (j = 0; j < i; j++)
			if (strcmp(run->files[i].name, run->files[j].name) == 0) {
				say("%s and %s would both be stored as '%s'", run->files[j].path, run->files[i].path,
				    run->files[i].name);
				return EXIT_USAGE;
			}
	}
	run->nfiles = n;
	return EXIT_SUCCESS;
}

/* Settle server, name and files from the command line, me.info and transfer.info, in that order. */
static int resolve_settings(struct run *run, char *const *args, size_t nargs)
{
	struct options *o = &run->o;
	struct clientconf_error cerr;
	const char *why;
	int r;

	r = clientconf_read_identity(o->dir, &run->me, &cerr);
	if (r < 0 && r != -ENOENT) {
		say("%s", cerr.text);
		return EXIT_USAGE;
	}
	run->have_identity = r == 0;
	if (run->have_identity && o->name && strcmp(o->name, run->me.name) != 0) {
		say("--name '%s' differs from the name '%s' in %s/%s", o->name, run->me.name, o->dir, CLIENTCONF_ME);
		return EXIT_USAGE;
	}
	if (!o->server || nargs == 0 || (!o->name && !run->have_identity)) {
		r = clientconf_read_transfer(o->dir, &run->transfer, &cerr);
		if (r == -ENOENT) {
			say("no %s given, and no %s/%s to read it from: run efclient --server HOST:PORT "
			    "--name NAME FILE... (or write %s, see efclient(1))",
			    !o->server   ? "server"
			    : nargs == 0 ? "file to send"
			                 : "client name",
			    o->dir, CLIENTCONF_TRANSFER, CLIENTCONF_TRANSFER);
			return EXIT_USAGE;
		}
		if (r < 0) {
			say("%s", cerr.text);
			return EXIT_USAGE;
		}
	}
	if (o->server) {
		if (clientconf_parse_server(o->server, strlen(o->server), &run->host, &run->port, &why) < 0) {
			say("--server '%s': %s", o->server, why);
			return EXIT_USAGE;
		}
	} else {
		run->host = run->transfer.host;
		run->port = run->transfer.port;
		run->transfer.host = run->transfer.port = NULL;
	}
	snprintf(run->server, sizeof(run->server), "%s%s%s:%s", strchr(run->host, ':') ? "[" : "", run->host,
	         strchr(run->host, ':') ? "]" : "", run->port);
	run->name = run->have_identity ? run->me.name : o->name ? o->name : run->transfer.name;
	if (!run->name) {
		say("no client name: give --name or put it on line 2 of %s/%s", o->dir, CLIENTCONF_TRANSFER);
		return EXIT_USAGE;
	}
	if (clientconf_check_name(run->name, strlen(run->name), &why) < 0) {
		say("--name '%s': the client name %s", run->name, why);
		return EXIT_USAGE;
	}
	if (nargs == 0) {
		args = run->transfer.files;
		nargs = run->transfer.nfiles;
	}
	if (nargs == 0) {
		say("no file to send: give files as arguments or list them in %s/%s from line 3", o->dir,
		    CLIENTCONF_TRANSFER);
		return EXIT_USAGE;
	}
	return check_files(run, args, nargs);
}

/*
 * A 2106 for an identity we hold may mean that the server has no public key
 * for it: a registration interrupted between 2100 and 2102
 * (efserver-protocol(7), "Dialects and tolerances"). The key is sent then;
 * a server that does not know the identity refuses it too, and the 2106 is
 * what is reported.
 */
static int recover_registration(struct run *run)
{
	const struct client_error refused = *client_error(run->client);

	if (client_send_public_key(run->client, run->name, run->me.id, run->me.key) < 0) {
		if (client_error(run->client)->failure == CLIENT_FAIL_REFUSED)
			return report(&refused, run, NULL);
		return report(client_error(run->client), run, NULL);
	}
	if (run->progress.verbose)
		say("the server had no public key for '%s' (a registration that was interrupted): sent it to %s",
		    run->name, run->server);
	return EXIT_SUCCESS;
}

/* Register (and write the identity) or reconnect, and end up with an AES key. */
static int identify(struct run *run)
{
	const struct options *o = &run->o;
	struct clientconf_error cerr;
	char hex[WIRE_ID_HEX_SIZE];
	uint8_t id[WIRE_ID_SIZE];
	int r;

	if (!run->have_identity) {
		/* Before connecting, so that a slow key does not meet the server's idle timeout. */
		if ((r = keyfile_generate(&run->key, o->rsa_bits)) < 0) {
			say("cannot generate an RSA-%u key: %s", o->rsa_bits, strerror(-r));
			return EXIT_LOCAL;
		}
		if (client_register(run->client, run->name, id) < 0)
			return report(client_error(run->client), run, NULL);
		wire_id_to_hex(id, hex);
		if (clientconf_write_identity(o->dir, run->name, id, run->key, &cerr) < 0) {
			say("registered '%s' as %s, but %s", run->name, hex, cerr.text);
			return EXIT_LOCAL;
		}
		if (run->progress.verbose)
			say("registered '%s' with %s as %s; wrote %s/%s and %s/%s", run->name, run->server, hex, o->dir,
			    CLIENTCONF_ME, o->dir, CLIENTCONF_PRIVKEY);
		if (client_send_public_key(run->client, run->name, id, run->key) < 0)
			return report(client_error(run->client), run, NULL);
		return EXIT_SUCCESS;
	}
	/* The 1100 set has no reconnect: the stored public key is sent again for a fresh AES key. */
	if (o->code_set == CLIENT_SET_1025)
		r = client_reconnect(run->client, run->name, run->me.id, run->me.key);
	else
		r = client_send_public_key(run->client, run->name, run->me.id, run->me.key);
	wire_id_to_hex(run->me.id, hex);
	if (r == -EPERM)
		return recover_registration(run);
	if (r < 0)
		return report(client_error(run->client), run, NULL);
	if (run->progress.verbose)
		say("%s '%s' (%s) with %s", o->code_set == CLIENT_SET_1025 ? "reconnected" : "sent the public key of",
		    run->name, hex, run->server);
	return EXIT_SUCCESS;
}

/* The line on stdout that confirms a file: the server stored it and its checksum matched ours. */
static void stored(const struct run *run, const struct client_file *f, unsigned attempts)
{
	char size[32];

	printf("%s: stored on %s for %s, %s, checksum confirmed", f->name, run->server, run->name,
	       opts_human_size(f->size, size, sizeof(size)));
	if (attempts > 1)
		printf(" after %u resend%s", attempts - 1, attempts == 2 ? "" : "s");
	putchar('\n');
	/* One line per file as it is confirmed, also when stdout is a pipe or a file. */
	fflush(stdout);
}

/* A checksum given up does not stop the run; anything else does. */
static int upload_all(struct run *run)
{
	const struct client_file *f;
	int status = EXIT_SUCCESS;
	unsigned attempts;
	size_t i;

	for (i = 0; i < run->nfiles; i++) {
		f = &run->files[i];
		if (run->progress.verbose)
			say("sending %s as '%s' (%" PRIu64 " bytes)", f->path, f->name, f->size);
		if (client_upload(run->client, f, &attempts) == 0) {
			if (run->o.verbosity >= 0)
				stored(run, f, attempts);
			continue;
		}
		if (client_error(run->client)->failure != CLIENT_FAIL_CHECKSUM)
			return report(client_error(run->client), run, f->name);
		say("%s: checksum mismatch after %u resend%s, given up (if every file fails so, the server's "
		    "checksum is not %s: see --checksum)",
		    f->name, attempts - 1, attempts == 2 ? "" : "s", cksum_algo_name(run->o.algo));
		status = EXIT_CHECKSUM;
	}
	return status;
}

static int start_client(struct run *run)
{
	const struct options *o = &run->o;
	struct client_params params = {
	    .host = run->host,
	    .port = run->port,
	    .code_set = o->code_set,
	    .algo = o->algo,
	    .retries = o->retries,
	    .timeout_seconds = o->timeout,
	    .connection_per_request = o->per_request,
	    .seed004 = o->seed004,
	};
	struct client_hooks hooks = {
	    .ctx = &run->progress, .progress = on_progress, .mismatch = on_mismatch, .reopened = on_reopen};
	int r;

	run->progress.bar = o->verbosity >= 0 && isatty(STDERR_FILENO);
	run->progress.verbose = o->verbosity > 0;
	if ((r = client_new(&run->client, &params, &hooks)) < 0) {
		say("cannot set up the client: %s", strerror(-r));
		return EXIT_LOCAL;
	}
	return EXIT_SUCCESS;
}

static void run_free(struct run *run)
{
	client_free(run->client);
	keyfile_free(run->key);
	clientconf_identity_free(&run->me);
	clientconf_transfer_free(&run->transfer);
	free(run->files);
	free(run->host);
	free(run->port);
}

int main(int argc, char **argv)
{
	struct run run = {.o = {.dir = ".",
	                        .code_set = OPTS_CODE_SET_DEFAULT,
	                        .algo = CKSUM_POSIX,
	                        .retries = CLIENT_RETRIES_DEFAULT,
	                        .timeout = CLIENT_TIMEOUT_DEFAULT,
	                        .rsa_bits = KEYFILE_RSA_BITS}};
	static char program[] = "efclient";
	struct stat st;
	int r, status;

	/* getopt's messages name argv[0]: the program, not the path it was started by. */
	argv[0] = program;
	if ((r = parse_options(argc, argv, &run.o)) < 0) {
		fprintf(stderr, "Try 'efclient --help' for more information.\n");
		return EXIT_USAGE;
	}
	if (r > 0)
		return EXIT_SUCCESS;
	/* A server that hangs up mid-upload is reported with the request it broke off. */
	signal(SIGPIPE, SIG_IGN);
	if ((r = crypto_init()) < 0) {
		say("cannot initialise libgcrypt: %s", strerror(-r));
		return EXIT_LOCAL;
	}
	/* A first run may name a new directory for its identity: it is made private. */
	if (stat(run.o.dir, &st) < 0 && (errno != ENOENT || mkdir(run.o.dir, 0700) < 0 || stat(run.o.dir, &st) < 0)) {
		say("directory %s: %s", run.o.dir, strerror(errno));
		return EXIT_USAGE;
	}
	if (!S_ISDIR(st.st_mode)) {
		say("directory %s: not a directory", run.o.dir);
		return EXIT_USAGE;
	}
	status = resolve_settings(&run, argv + optind, (size_t)(argc - optind));
	if (status == EXIT_SUCCESS)
		status = start_client(&run);
	if (status == EXIT_SUCCESS)
		status = identify(&run);
	if (status == EXIT_SUCCESS)
		status = upload_all(&run);
	run_free(&run);
	return status;
}
