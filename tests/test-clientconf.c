/*
 * test-clientconf: transfer.info, me.info and priv.key in the seeds' formats
 * are read (Windows line ends, an id with dashes, a key wrapped over lines
 * or kept in priv.key), every malformed line is named with its file, line
 * and fault, and the identity written after registering reads back, with
 * mode 0600 and no temporary file left behind.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gcrypt.h>

#include "clientconf.h"
#include "der.h"
#include "crypto.h"
#include "keyfile.h"
#include "tap.h"
#include "wire.h"

static char dir[PATH_MAX];

static void put(const char *name, const char *text)
{
	char path[PATH_MAX + 32];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!(f = fopen(path, "w")) || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void drop(const char *name)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	(void)unlink(path);
}

/* The error text with the temporary directory replaced by "DIR", for exact comparisons. */
static const char *shown(const struct clientconf_error *err)
{
	static char buf[CLIENTCONF_ERROR_SIZE];
	size_t n = strlen(dir), o = 0;
	const char *s = err->text;

	while (*s && o + 4 < sizeof(buf)) {
		if (strncmp(s, dir, n) == 0) {
			memcpy(buf + o, "DIR", 3);
			o += 3;
			s += n;
		} else {
			buf[o++] = *s++;
		}
	}
	buf[o] = '\0';
	return buf;
}

static void test_server(void)
{
	static const struct {
		const char *in, *host, *port;
	} good[] = {
	    {"127.0.0.1:1357", "127.0.0.1", "1357"},
	    {"  files.example.org:80\t", "files.example.org", "80"},
	    {"[::1]:65535", "::1", "65535"},
	};
	static const struct {
		const char *in, *why;
	} bad[] = {
	    {"", "empty, expected host:port"},
	    {"localhost", "no port, expected host:port"},
	    {"::1:1357", "an IPv6 address must be in brackets: [address]:port"},
	    {"[::1]1357", "expected [IPv6 address]:port"},
	    {":1357", "the host is empty or longer than 253 characters"},
	    {"a b:1357", "the host holds a blank, a control character or a slash"},
	    {"host:0", "the port is not a number from 1 to 65535"},
	    {"host:65536", "the port is not a number from 1 to 65535"},
	    {"host:13a", "the port is not a number from 1 to 65535"},
	    {"host:", "the port is not a number from 1 to 65535"},
	    {"host:0000001357", "the port is not a number from 1 to 65535"},
	};
	char *host = NULL, *port = NULL;
	const char *why = NULL;
	size_t i;
	int r;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		r = clientconf_parse_server(good[i].in, strlen(good[i].in), &host, &port, &why);
		ok(r == 0 && strcmp(host, good[i].host) == 0 && strcmp(port, good[i].port) == 0,
		   "server \"%s\" is host %s, port %s", good[i].in, good[i].host, good[i].port);
		free(host);
		free(port);
		host = port = NULL;
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		r = clientconf_parse_server(bad[i].in, strlen(bad[i].in), &host, &port, &why);
		ok(r == -EINVAL && why && strcmp(why, bad[i].why) == 0, "server \"%s\" is refused: %s", bad[i].in,
		   bad[i].why);
	}
}

static void test_name(void)
{
	char long_name[300];
	const char *why = NULL;

	memset(long_name, 'a', sizeof(long_name));
	ok(clientconf_check_name("alice", 5, &why) == 0, "\"alice\" is a valid name");
	ok(clientconf_check_name("Zoë", strlen("Zoë"), &why) == 0, "so is a UTF-8 name");
	ok(clientconf_check_name(long_name, 254, &why) == 0, "254 bytes are allowed");
	ok(clientconf_check_name(long_name, 255, &why) == -EINVAL && strcmp(why, "is longer than 254 bytes") == 0,
	   "255 are not");
	ok(clientconf_check_name("", 0, &why) == -EINVAL && strcmp(why, "is empty") == 0, "an empty name is refused");
	ok(clientconf_check_name("a\tb", 3, &why) == -EINVAL && strcmp(why, "holds a control character") == 0,
	   "a control character is refused");
	ok(clientconf_check_name("\xff", 1, &why) == -EINVAL && strcmp(why, "is not valid UTF-8") == 0,
	   "invalid UTF-8 is refused");
}

static void test_transfer(void)
{
	static const struct {
		const char *text, *error;
	} bad[] = {
	    {"", "DIR/transfer.info:1: missing the server address (host:port)"},
	    {"localhost\nalice\n", "DIR/transfer.info:1: server address no port, expected host:port"},
	    {"127.0.0.1:1357\nal\x01ice\n", "DIR/transfer.info:2: client name holds a control character"},
	    {"127.0.0.1:1357\n\nx\n", "DIR/transfer.info:2: client name is empty"},
	    {"127.0.0.1:1357\nalice\na\n\nb\n", "DIR/transfer.info:4: empty line, expected one file path per line"},
	    {"127.0.0.1:1357\nalice\na\nb\0c\n", "DIR/transfer.info:4: holds a NUL byte"},
	};
	struct clientconf_transfer t = {0};
	struct clientconf_error err;
	char want[PATH_MAX + 32], path[PATH_MAX + 32];
	size_t i;
	int r;

	drop(CLIENTCONF_TRANSFER);
	r = clientconf_read_transfer(dir, &t, &err);
	ok(r == -ENOENT && strcmp(shown(&err), "DIR/transfer.info: No such file or directory") == 0,
	   "a missing transfer.info is -ENOENT: %s", shown(&err));

	/* As the seeds' Windows client leaves it: a byte-order mark and CR LF. */
	put(CLIENTCONF_TRANSFER, "\xef\xbb\xbf"
	                         "127.0.0.1:1357\r\nalice\r\nreport.pdf\r\n/srv/data/a b.txt\r\n");
	r = clientconf_read_transfer(dir, &t, &err);
	snprintf(want, sizeof(want), "%s/report.pdf", dir);
	ok(r == 0 && strcmp(t.host, "127.0.0.1") == 0 && strcmp(t.port, "1357") == 0 && strcmp(t.name, "alice") == 0,
	   "transfer.info lines 1 and 2: server and name, CR LF and byte-order mark dropped");
	ok(r == 0 && t.nfiles == 2 && strcmp(t.files[0], want) == 0 && strcmp(t.files[1], "/srv/data/a b.txt") == 0,
	   "lines 3 and after: one path each, relative ones taken from the directory of transfer.info");
	clientconf_transfer_free(&t);

	put(CLIENTCONF_TRANSFER, "[::1]:1357");
	r = clientconf_read_transfer(dir, &t, &err);
	ok(r == 0 && strcmp(t.host, "::1") == 0 && !t.name && t.nfiles == 0,
	   "a transfer.info of one line without its newline gives the server alone");
	clientconf_transfer_free(&t);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* Written with its length: one of them holds a NUL. */
		size_t len = strlen(bad[i].text);
		FILE *f;

		if (strstr(bad[i].error, "NUL"))
			len = strlen(bad[i].text) + 3;
		snprintf(path, sizeof(path), "%s/%s", dir, CLIENTCONF_TRANSFER);
		f = fopen(path, "w");
		fwrite(bad[i].text, 1, len, f);
		fclose(f);
		r = clientconf_read_transfer(dir, &t, &err);
		ok(r == -EINVAL && strcmp(shown(&err), bad[i].error) == 0, "%s", bad[i].error);
		if (r == 0)
			clientconf_transfer_free(&t);
		else if (strcmp(shown(&err), bad[i].error) != 0)
			printf("#   got \"%s\"\n", shown(&err));
	}
}

static int same_public_key(const struct keyfile_rsa *a, const struct keyfile_rsa *b)
{
	uint8_t ka[1200], kb[1200];
	size_t la = 0, lb = 0;

	return a && b && keyfile_public_spki(a, ka, sizeof(ka), &la) == 0 &&
	       keyfile_public_spki(b, kb, sizeof(kb), &lb) == 0 && la == lb && memcmp(ka, kb, la) == 0;
}

static mode_t mode_of(const char *name)
{
	char path[PATH_MAX + 32];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0 ? st.st_mode & 07777 : 0;
}

/* Only the files the test put there: no temporary file is left behind. */
static int only_known_files(void)
{
	struct dirent *e;
	DIR *d = opendir(dir);
	int clean = 1;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			clean = 0;
	closedir(d);
	return clean;
}

static void test_identity(void)
{
	static const uint8_t id[WIRE_ID_SIZE] = {0x5e, 0x0f, 0x3a, 0x71, 0x2b, 0x44, 0x4c, 0x8d,
	                                         0x9a, 0x10, 0xc2, 0xd3, 0xe4, 0xf5, 0x06, 0x17};
	struct clientconf_identity me = {0};
	struct clientconf_error err;
	struct keyfile_rsa *key = NULL;
	char *b64 = NULL, text[8192], wrapped[4096], priv[4096];
	size_t b64_len = 0, i, o;
	int r;

	drop(CLIENTCONF_ME);
	drop(CLIENTCONF_PRIVKEY);
	r = clientconf_read_identity(dir, &me, &err);
	is_int(r, -ENOENT, "no me.info: no identity yet");

	if (keyfile_generate(&key, KEYFILE_RSA_BITS) < 0 || keyfile_to_base64(key, &b64, &b64_len) < 0) {
		tap_diag("cannot make a key");
		exit(1);
	}
	r = clientconf_write_identity(dir, "alice", id, key, &err);
	ok(r == 0, "the identity is written");
	ok(mode_of(CLIENTCONF_ME) == 0600 && mode_of(CLIENTCONF_PRIVKEY) == 0600,
	   "me.info and priv.key have mode 0600");
	ok(only_known_files(), "no temporary file is left behind");
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == 0 && strcmp(me.name, "alice") == 0 && memcmp(me.id, id, sizeof(id)) == 0 &&
	       same_public_key(me.key, key),
	   "and reads back: name, id and key");
	clientconf_identity_free(&me);
	snprintf(text, sizeof(text), "alice\n5e0f3a712b444c8d9a10c2d3e4f50617\n%s\n", b64);
	{
		char path[PATH_MAX + 32], got[4096] = "";
		FILE *f;
		size_t n;

		snprintf(path, sizeof(path), "%s/%s", dir, CLIENTCONF_ME);
		f = fopen(path, "r");
		n = f ? fread(got, 1, sizeof(got) - 1, f) : 0;
		got[n] = '\0';
		if (f)
			fclose(f);
		ok(strcmp(got, text) == 0, "me.info: name, id in hex, the PKCS#8 key in Base64 on one line");
		snprintf(path, sizeof(path), "%s/%s", dir, CLIENTCONF_PRIVKEY);
		f = fopen(path, "r");
		n = f ? fread(got, 1, sizeof(got) - 1, f) : 0;
		got[n] = '\0';
		if (f)
			fclose(f);
		snprintf(priv, sizeof(priv), "%s\n", b64);
		ok(strcmp(got, priv) == 0, "priv.key: the same key in Base64");
	}

	/* By hand, as the seeds describe it: the id as a UUID, the key wrapped over lines, CR LF. */
	for (i = 0, o = 0; i < b64_len; i++) {
		wrapped[o++] = b64[i];
		if (i % 64 == 63 || i + 1 == b64_len) {
			wrapped[o++] = '\r';
			wrapped[o++] = '\n';
		}
	}
	wrapped[o] = '\0';
	snprintf(text, sizeof(text), "alice\r\n5E0F3A71-2B44-4C8D-9A10-C2D3E4F50617\r\n%s", wrapped);
	put(CLIENTCONF_ME, text);
	drop(CLIENTCONF_PRIVKEY);
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == 0 && memcmp(me.id, id, sizeof(id)) == 0 && same_public_key(me.key, key),
	   "a me.info written by hand loads: id with dashes, key wrapped over lines");
	clientconf_identity_free(&me);

	put(CLIENTCONF_ME, "alice\n5e0f3a712b444c8d9a10c2d3e4f50617\n");
	put(CLIENTCONF_PRIVKEY, wrapped);
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == 0 && same_public_key(me.key, key), "a me.info without a key takes it from priv.key");
	clientconf_identity_free(&me);

	{
		static const char *const lines[] = {
		    "",
		    "alice\n",
		    "alice\nnot-an-id\n",
		    "alice\n5e0f3a712b444c8d9a10c2d3e4f5061\n",
		    "\x01lice\n5e0f3a712b444c8d9a10c2d3e4f50617\n",
		};
		static const char *const errors[] = {
		    "DIR/me.info:1: missing the client name",
		    "DIR/me.info:2: missing the client id",
		    "DIR/me.info:2: client id is not 32 hex digits, plain or in the 8-4-4-4-12 form",
		    "DIR/me.info:2: client id is not 32 hex digits, plain or in the 8-4-4-4-12 form",
		    "DIR/me.info:1: client name holds a control character",
		};

		for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
			put(CLIENTCONF_ME, lines[i]);
			r = clientconf_read_identity(dir, &me, &err);
			ok(r == -EINVAL && strcmp(shown(&err), errors[i]) == 0, "%s", errors[i]);
			if (r == 0)
				clientconf_identity_free(&me);
		}
	}

	/* A bad character on the third line of the key: line 5 of the file. */
	snprintf(text, sizeof(text), "alice\n5e0f3a712b444c8d9a10c2d3e4f50617\n%s", wrapped);
	{
		char *line5 = text;

		for (i = 0; i < 4; i++)
			line5 = strchr(line5, '\n') + 1;
		line5[2] = '#';
	}
	put(CLIENTCONF_ME, text);
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == -EINVAL &&
	       strcmp(shown(&err), "DIR/me.info:5: private key: invalid Base64 character '#' at column 3") == 0,
	   "a bad Base64 character is named with its line and column: %s", shown(&err));

	/* The key cut short in its last group: named on the last line. */
	snprintf(text, sizeof(text), "alice\n5e0f3a712b444c8d9a10c2d3e4f50617\n%.*s\n", 201, b64);
	put(CLIENTCONF_ME, text);
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == -EINVAL &&
	       strcmp(shown(&err),
	              "DIR/me.info:3: private key: Base64 ends in the middle of a group (truncated, or '=' missing)") ==
	           0,
	   "a truncated key is refused: %s", shown(&err));

	/* Whole groups, but not a whole key. */
	snprintf(text, sizeof(text), "alice\n5e0f3a712b444c8d9a10c2d3e4f50617\n%.*s\n", 200, b64);
	put(CLIENTCONF_ME, text);
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == -EINVAL &&
	       strcmp(shown(&err), "DIR/me.info:3: private key: not a PKCS#8 or PKCS#1 RSA private key") == 0,
	   "so is a key cut at a group boundary: %s", shown(&err));

	put(CLIENTCONF_ME, "alice\n5e0f3a712b444c8d9a10c2d3e4f50617\n");
	drop(CLIENTCONF_PRIVKEY);
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == -EINVAL &&
	       strcmp(shown(&err), "DIR/me.info:3: missing the private key, and there is no DIR/priv.key") == 0,
	   "no key anywhere: %s", shown(&err));

	put(CLIENTCONF_PRIVKEY, "QUJD\nR!==\n");
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == -EINVAL &&
	       strcmp(shown(&err), "DIR/priv.key:2: private key: invalid Base64 character '!' at column 2") == 0,
	   "errors in priv.key name priv.key: %s", shown(&err));

	/* Three times 8 KiB: past the 16 KiB a key file may hold. */
	memset(text, 'A', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	{
		char path[PATH_MAX + 32];
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s", dir, CLIENTCONF_PRIVKEY);
		if ((f = fopen(path, "w"))) {
			for (i = 0; i < 3; i++)
				fputs(text, f);
			fclose(f);
		}
	}
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == -EFBIG && strcmp(shown(&err), "DIR/priv.key: larger than 16384 bytes") == 0,
	   "a key file larger than any key is refused unread: %s", shown(&err));

	put(CLIENTCONF_PRIVKEY, "");
	r = clientconf_read_identity(dir, &me, &err);
	ok(r == -EINVAL && strcmp(shown(&err), "DIR/priv.key:1: empty, expected the private key in Base64") == 0,
	   "an empty priv.key: %s", shown(&err));

	/* Seed 000's directory: the public key on me.info line 3 (wrapped), the private one in priv.key. */
	{
		uint8_t spki[DER_RSA_SPKI_MAX];
		char pub64[1024], other[4096];
		struct keyfile_rsa *key2 = NULL;
		char *b64_2 = NULL;
		size_t spki_len = 0, len2 = 0;

		if (keyfile_public_spki(key, spki, sizeof(spki), &spki_len) < 0 ||
		    keyfile_b64_encode(spki, spki_len, pub64, sizeof(pub64)) < 0 || keyfile_generate(&key2, 1024) < 0 ||
		    keyfile_to_base64(key2, &b64_2, &len2) < 0) {
			tap_diag("cannot make the keys");
			exit(1);
		}
		snprintf(text, sizeof(text), "alice\r\n5e0f3a712b444c8d9a10c2d3e4f50617\r\n%.64s\r\n%s\r\n", pub64,
		         pub64 + 64);
		put(CLIENTCONF_ME, text);
		put(CLIENTCONF_PRIVKEY, priv);
		r = clientconf_read_identity(dir, &me, &err);
		ok(r == 0 && strcmp(me.name, "alice") == 0 && memcmp(me.id, id, sizeof(id)) == 0 &&
		       same_public_key(me.key, key),
		   "seed 000's me.info with the public key on line 3 takes the private key from priv.key");
		clientconf_identity_free(&me);
		snprintf(other, sizeof(other), "%s\n", b64_2);
		put(CLIENTCONF_PRIVKEY, other);
		r = clientconf_read_identity(dir, &me, &err);
		ok(r == -EINVAL &&
		       strcmp(shown(&err),
		              "DIR/priv.key: the private key does not match the public key on line 3 of DIR/me.info") ==
		           0,
		   "and refuses a priv.key whose key is another: %s", shown(&err));
		drop(CLIENTCONF_PRIVKEY);
		r = clientconf_read_identity(dir, &me, &err);
		ok(r == -EINVAL &&
		       strcmp(shown(&err),
		              "DIR/me.info:3: a public key, as seed 000's client writes it, and there is no "
		              "DIR/priv.key with its private key") == 0,
		   "or no priv.key at all: %s", shown(&err));
		keyfile_secret_free(b64_2, len2 + 1);
		keyfile_free(key2);
	}

	keyfile_secret_free(b64, b64_len + 1);
	keyfile_free(key);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	char cmd[PATH_MAX + 16];

	if (crypto_init() < 0) {
		tap_diag("libgcrypt does not initialise");
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/test-clientconf.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_server();
	test_name();
	test_transfer();
	test_identity();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		tap_diag("could not remove the temporary directory");
	return tap_done();
}
