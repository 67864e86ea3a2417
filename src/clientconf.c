/* transfer.info, me.info and priv.key: the seeds' client files, read strictly and written atomically. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gcrypt.h>

#include "clientconf.h"
#include "der.h"
#include "io.h"

/* A whole file in memory; secure memory for the files that hold a key. */
struct text {
	char *data;
	size_t len;
	size_t size;
	bool secure;
};

struct line {
	const char *s;
	size_t len;
	unsigned number;
};

__attribute__((format(printf, 2, 3))) static void set_error(struct clientconf_error *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

static char *join_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

static void text_free(struct text *t)
{
	if (t->secure)
		keyfile_secret_free(t->data, t->size);
	else
		free(t->data);
	memset(t, 0, sizeof(*t));
}

/*
 * Read a regular file of at most max bytes into a buffer of its size (secure
 * memory is scarce). -ENOENT, -EFBIG, -EIO if it grows while being read, or
 * another negative errno.
 */
static int text_read(const char *path, size_t max, bool secure, struct text *t)
{
	struct stat st;
	ssize_t n;
	int fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		r = -EFBIG;
		goto out;
	}
	memset(t, 0, sizeof(*t));
	t->secure = secure;
	/* One byte more than stat said, to see the end of the file. */
	t->size = (size_t)st.st_size + 1;
	t->data = secure ? gcry_malloc_secure(t->size) : malloc(t->size);
	if (!t->data) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		n = read(fd, t->data + t->len, t->size - t->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			text_free(t);
			goto out;
		}
		if (n == 0)
			break;
		t->len += (size_t)n;
		if (t->len == t->size) {
			r = -EIO;
			text_free(t);
			goto out;
		}
	}
	r = 0;
out:
	close(fd);
	return r;
}

/* The next line: without its "\n" and a "\r" before it (files from Windows). 0 at the end. */
static int next_line(const struct text *t, size_t *pos, struct line *l)
{
	const char *start, *nl;
	size_t left;

	if (*pos >= t->len)
		return 0;
	start = t->data + *pos;
	left = t->len - *pos;
	/* A byte-order mark, as Windows editors put before line 1. */
	if (*pos == 0 && left >= 3 && memcmp(start, "\xef\xbb\xbf", 3) == 0) {
		start += 3;
		left -= 3;
		*pos += 3;
	}
	nl = memchr(start, '\n', left);
	l->s = start;
	l->len = nl ? (size_t)(nl - start) : left;
	*pos += l->len + (nl ? 1 : 0);
	if (l->len > 0 && l->s[l->len - 1] == '\r')
		l->len--;
	l->number++;
	return 1;
}

static void trim_blanks(struct line *l)
{
	while (l->len > 0 && (l->s[0] == ' ' || l->s[0] == '\t')) {
		l->s++;
		l->len--;
	}
	while (l->len > 0 && (l->s[l->len - 1] == ' ' || l->s[l->len - 1] == '\t'))
		l->len--;
}

int clientconf_parse_server(const char *s, size_t len, char **host, char **port, const char **why)
{
	struct line l = {s, len, 0};
	const char *colon, *h, *p;
	size_t h_len, p_len, i;
	unsigned long value = 0;
	char *hs, *ps;

	trim_blanks(&l);
	if (l.len == 0) {
		*why = "empty, expected host:port";
		return -EINVAL;
	}
	if (l.s[0] == '[') {
		const char *close = memchr(l.s, ']', l.len);

		if (!close || close + 1 == l.s + l.len || close[1] != ':') {
			*why = "expected [IPv6 address]:port";
			return -EINVAL;
		}
		h = l.s + 1;
		h_len = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = memrchr(l.s, ':', l.len);
		if (!colon) {
			*why = "no port, expected host:port";
			return -EINVAL;
		}
		if (memchr(l.s, ':', (size_t)(colon - l.s))) {
			*why = "an IPv6 address must be in brackets: [address]:port";
			return -EINVAL;
		}
		h = l.s;
		h_len = (size_t)(colon - l.s);
	}
	p = colon + 1;
	p_len = (size_t)(l.s + l.len - p);
	if (h_len == 0 || h_len > 253) {
		*why = "the host is empty or longer than 253 characters";
		return -EINVAL;
	}
	for (i = 0; i < h_len; i++)
		if ((unsigned char)h[i] <= ' ' || h[i] == 0x7f || h[i] == '/') {
			*why = "the host holds a blank, a control character or a slash";
			return -EINVAL;
		}
	for (i = 0; i < p_len && i < 6; i++) {
		if (p[i] < '0' || p[i] > '9')
			break;
		value = value * 10 + (unsigned long)(p[i] - '0');
	}
	if (p_len == 0 || i != p_len || value < 1 || value > 65535) {
		*why = "the port is not a number from 1 to 65535";
		return -EINVAL;
	}
	hs = strndup(h, h_len);
	ps = strndup(p, p_len);
	if (!hs || !ps) {
		free(hs);
		free(ps);
		return -ENOMEM;
	}
	*host = hs;
	*port = ps;
	return 0;
}

int clientconf_check_name(const char *s, size_t len, const char **why)
{
	uint8_t field[WIRE_NAME_SIZE] = {0};
	enum wire_name_error e;
	size_t n;

	if (len > WIRE_NAME_MAX) {
		*why = "is longer than 254 bytes";
		return -EINVAL;
	}
	if (memchr(s, '\0', len)) {
		*why = "holds a NUL byte";
		return -EINVAL;
	}
	memcpy(field, s, len);
	if ((e = wire_check_name(field, true, &n)) != WIRE_NAME_OK) {
		*why = wire_name_error_str(e);
		return -EINVAL;
	}
	return 0;
}

/* Say why a file could not be read, in the words a user expects. */
static void read_error(struct clientconf_error *err, const char *path, int r, size_t max)
{
	if (r == -EFBIG)
		set_error(err, "%s: larger than %zu bytes", path, max);
	else if (r == -EIO)
		set_error(err, "%s: changed while it was read", path);
	else if (r == -EINVAL)
		set_error(err, "%s: not a regular file", path);
	else
		set_error(err, "%s: %s", path, strerror(-r));
}

static int check_no_nul(const struct line *l, const char *path, struct clientconf_error *err)
{
	if (memchr(l->s, '\0', l->len)) {
		set_error(err, "%s:%u: holds a NUL byte", path, l->number);
		return -EINVAL;
	}
	return 0;
}

void clientconf_transfer_free(struct clientconf_transfer *t)
{
	size_t i;

	free(t->host);
	free(t->port);
	free(t->name);
	for (i = 0; i < t->nfiles; i++)
		free(t->files[i]);
	free(t->files);
	memset(t, 0, sizeof(*t));
}

/* A path from transfer.info: relative ones are taken from the file's directory. */
static int add_file(struct clientconf_transfer *t, const char *dir, const struct line *l)
{
	char **files, *path;

	if (l->s[0] == '/' || strcmp(dir, ".") == 0)
		path = strndup(l->s, l->len);
	else if (asprintf(&path, "%s/%.*s", dir, (int)l->len, l->s) < 0)
		path = NULL;
	if (!path)
		return -ENOMEM;
	if (!(files = reallocarray(t->files, t->nfiles + 1, sizeof(*files)))) {
		free(path);
		return -ENOMEM;
	}
	t->files = files;
	t->files[t->nfiles++] = path;
	return 0;
}

int clientconf_read_transfer(const char *dir, struct clientconf_transfer *out, struct clientconf_error *err)
{
	struct clientconf_transfer t = {0};
	struct text text = {0};
	struct line l = {0};
	const char *why;
	size_t pos = 0;
	char *path;
	int r;

	if (!(path = join_path(dir, CLIENTCONF_TRANSFER)))
		return -ENOMEM;
	if ((r = text_read(path, CLIENTCONF_TRANSFER_MAX, false, &text)) < 0) {
		read_error(err, path, r, CLIENTCONF_TRANSFER_MAX);
		goto out;
	}
	r = -EINVAL;
	if (!next_line(&text, &pos, &l)) {
		set_error(err, "%s:1: missing the server address (host:port)", path);
		goto out;
	}
	if (check_no_nul(&l, path, err) < 0)
		goto out;
	if ((r = clientconf_parse_server(l.s, l.len, &t.host, &t.port, &why)) < 0) {
		if (r == -EINVAL)
			set_error(err, "%s:1: server address %s", path, why);
		goto out;
	}
	if (next_line(&text, &pos, &l)) {
		if ((r = check_no_nul(&l, path, err)) < 0)
			goto out;
		if ((r = clientconf_check_name(l.s, l.len, &why)) < 0) {
			set_error(err, "%s:2: client name %s", path, why);
			goto out;
		}
		if (!(t.name = strndup(l.s, l.len))) {
			r = -ENOMEM;
			goto out;
		}
	}
	while (next_line(&text, &pos, &l)) {
		if ((r = check_no_nul(&l, path, err)) < 0)
			goto out;
		if (l.len == 0) {
			set_error(err, "%s:%u: empty line, expected one file path per line", path, l.number);
			r = -EINVAL;
			goto out;
		}
		if (l.len >= PATH_MAX) {
			set_error(err, "%s:%u: file path longer than %d bytes", path, l.number, PATH_MAX - 1);
			r = -EINVAL;
			goto out;
		}
		if ((r = add_file(&t, dir, &l)) < 0)
			goto out;
	}
	*out = t;
	memset(&t, 0, sizeof(t));
	r = 0;
out:
	if (r == -ENOMEM)
		set_error(err, "%s: out of memory", path);
	clientconf_transfer_free(&t);
	text_free(&text);
	free(path);
	return r;
}

void clientconf_identity_free(struct clientconf_identity *me)
{
	keyfile_free(me->key);
	memset(me, 0, sizeof(*me));
}

/*
 * Decode a Base64 key that runs from line l to the end of the text, wrapped
 * or not, and load it. Errors name the line they are found on. With pub, a
 * public key (what seed 000's client writes into me.info) is copied there,
 * its length into *pub_len, and 1 returned.
 */
static int read_key_lines(const struct text *text, size_t pos, struct line l, const char *path,
                          struct keyfile_rsa **key, uint8_t pub[DER_RSA_SPKI_MAX], size_t *pub_len,
                          struct clientconf_error *err)
{
	struct der_rsa_key public_key;
	struct keyfile_b64 dec;
	unsigned first = l.number;
	uint8_t *der;
	size_t der_len = 0;
	const char *why;
	int r;

	if (!(der = gcry_malloc_secure(KEYFILE_DER_MAX)))
		return -ENOMEM;
	keyfile_b64_start(&dec, der, KEYFILE_DER_MAX);
	do {
		if ((r = check_no_nul(&l, path, err)) < 0)
			goto out;
		if ((r = keyfile_b64_feed(&dec, l.s, l.len)) < 0) {
			set_error(err, "%s:%u: private key: %s", path, l.number, dec.error);
			goto out;
		}
	} while (next_line(text, &pos, &l));
	if ((r = keyfile_b64_finish(&dec, &der_len)) < 0) {
		set_error(err, "%s:%u: private key: %s", path, l.number, dec.error);
		goto out;
	}
	if (der_len == 0) {
		set_error(err, "%s:%u: private key: empty", path, first);
		r = -EINVAL;
		goto out;
	}
	if ((r = keyfile_from_der(key, der, der_len, &why)) == -EINVAL && pub &&
	    der_read_rsa_public(der, der_len, &public_key) == DER_OK && public_key.der_len <= DER_RSA_SPKI_MAX) {
		memcpy(pub, der, public_key.der_len);
		*pub_len = public_key.der_len;
		r = 1;
	} else if (r == -EINVAL) {
		set_error(err, "%s:%u: private key: %s", path, first, why);
	} else if (r < 0) {
		set_error(err, "%s:%u: private key: %s", path, first, strerror(-r));
	}
out:
	keyfile_secret_free(der, KEYFILE_DER_MAX);
	return r;
}

/* priv.key: the private key in Base64, possibly over several lines. */
static int read_priv_key(const char *dir, const char *me_path, bool after_public, struct keyfile_rsa **key,
                         struct clientconf_error *err)
{
	struct text text = {0};
	struct line l = {0};
	size_t pos = 0;
	char *path;
	int r;

	if (!(path = join_path(dir, CLIENTCONF_PRIVKEY)))
		return -ENOMEM;
	r = text_read(path, CLIENTCONF_SECRET_MAX, true, &text);
	if (r == -ENOENT) {
		set_error(err,
		          after_public ? "%s:3: a public key, as seed 000's client writes it, and there is no %s with "
		                         "its private key"
		                       : "%s:3: missing the private key, and there is no %s",
		          me_path, path);
		r = -EINVAL;
		goto out;
	}
	if (r < 0) {
		read_error(err, path, r, CLIENTCONF_SECRET_MAX);
		goto out;
	}
	if (!next_line(&text, &pos, &l)) {
		set_error(err, "%s:1: empty, expected the private key in Base64", path);
		r = -EINVAL;
		goto out;
	}
	r = read_key_lines(&text, pos, l, path, key, NULL, NULL, err);
out:
	text_free(&text);
	free(path);
	return r;
}

/* Whether key is the private half of the public key pub (DER): the same modulus and exponent. */
static bool key_matches(const struct keyfile_rsa *key, const uint8_t *pub, size_t pub_len)
{
	uint8_t spki[DER_RSA_SPKI_MAX];
	struct der_rsa_key a, b;
	size_t len;

	return keyfile_public_spki(key, spki, sizeof(spki), &len) == 0 &&
	       der_read_rsa_public(spki, len, &a) == DER_OK && der_read_rsa_public(pub, pub_len, &b) == DER_OK &&
	       a.n_len == b.n_len && a.e_len == b.e_len && memcmp(a.n, b.n, a.n_len) == 0 &&
	       memcmp(a.e, b.e, a.e_len) == 0;
}

/*
 * A seed-000 directory (efserver-protocol(7), "Dialects and tolerances"):
 * me.info holds the public key, priv.key the private one, which must match.
 */
static int read_seed000_key(const char *dir, const char *me_path, const uint8_t *pub, size_t pub_len,
                            struct keyfile_rsa **key, struct clientconf_error *err)
{
	int r = read_priv_key(dir, me_path, true, key, err);

	if (r < 0)
		return r;
	if (!key_matches(*key, pub, pub_len)) {
		set_error(err, "%s/%s: the private key does not match the public key on line 3 of %s", dir,
		          CLIENTCONF_PRIVKEY, me_path);
		keyfile_free(*key);
		*key = NULL;
		return -EINVAL;
	}
	return 0;
}

int clientconf_read_identity(const char *dir, struct clientconf_identity *out, struct clientconf_error *err)
{
	struct clientconf_identity me = {0};
	uint8_t pub[DER_RSA_SPKI_MAX];
	struct text text = {0};
	struct line l = {0};
	size_t pub_len = 0;
	char id_text[64];
	const char *why;
	size_t pos = 0;
	char *path;
	int r;

	if (!(path = join_path(dir, CLIENTCONF_ME)))
		return -ENOMEM;
	if ((r = text_read(path, CLIENTCONF_SECRET_MAX, true, &text)) < 0) {
		read_error(err, path, r, CLIENTCONF_SECRET_MAX);
		goto out;
	}
	r = -EINVAL;
	if (!next_line(&text, &pos, &l)) {
		set_error(err, "%s:1: missing the client name", path);
		goto out;
	}
	if (check_no_nul(&l, path, err) < 0)
		goto out;
	if (clientconf_check_name(l.s, l.len, &why) < 0) {
		set_error(err, "%s:1: client name %s", path, why);
		goto out;
	}
	memcpy(me.name, l.s, l.len);
	if (!next_line(&text, &pos, &l)) {
		set_error(err, "%s:2: missing the client id", path);
		goto out;
	}
	if (check_no_nul(&l, path, err) < 0)
		goto out;
	trim_blanks(&l);
	if (l.len >= sizeof(id_text)) {
		set_error(err, "%s:2: client id too long, expected 32 hex digits", path);
		goto out;
	}
	memcpy(id_text, l.s, l.len);
	id_text[l.len] = '\0';
	if (wire_id_from_hex(id_text, me.id) < 0) {
		set_error(err, "%s:2: client id is not 32 hex digits, plain or in the 8-4-4-4-12 form", path);
		goto out;
	}
	if (!next_line(&text, &pos, &l))
		r = read_priv_key(dir, path, false, &me.key, err);
	else if ((r = read_key_lines(&text, pos, l, path, &me.key, pub, &pub_len, err)) == 1)
		r = read_seed000_key(dir, path, pub, pub_len, &me.key, err);
	if (r < 0)
		goto out;
	*out = me;
	memset(&me, 0, sizeof(me));
out:
	if (r == -ENOMEM)
		set_error(err, "%s: out of memory", path);
	clientconf_identity_free(&me);
	text_free(&text);
	free(path);
	return r;
}

/*
 * Replace DIR/name with data: a 0600 temporary file, flushed, renamed over
 * it, and the directory flushed. With exclusive, an existing DIR/name is
 * never replaced: the temporary file is linked to the name (-EEXIST if it
 * is taken), then unlinked.
 */
static int write_atomic(const char *dir, const char *name, const char *data, size_t len, bool exclusive)
{
	char *tmp = NULL, *path = NULL;
	int fd = -1, dfd, r = 0;

	if (asprintf(&tmp, "%s/.%s.XXXXXX", dir, name) < 0) {
		tmp = NULL;
		return -ENOMEM;
	}
	if (!(path = join_path(dir, name))) {
		r = -ENOMEM;
		goto out;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		r = -errno;
		goto out;
	}
	if (fchmod(fd, 0600) < 0 || (r = io_write_full(fd, data, len, -1)) < 0 || fsync(fd) < 0) {
		r = r < 0 ? r : -errno;
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto fail;
	}
	fd = -1;
	if (exclusive ? link(tmp, path) < 0 : rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	if (exclusive)
		(void)unlink(tmp);
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	r = 0;
	goto out;
fail:
	(void)unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	free(tmp);
	free(path);
	return r;
}

static int write_identity(const char *dir, const char *name, const uint8_t id[WIRE_ID_SIZE],
                          const struct keyfile_rsa *key, bool exclusive, struct clientconf_error *err)
{
	char hex[WIRE_ID_HEX_SIZE], *b64 = NULL, *me = NULL, *priv;
	size_t b64_len = 0, name_len = strlen(name), me_size = 0;
	const char *failed = CLIENTCONF_PRIVKEY;
	int r;

	if ((r = keyfile_to_base64(key, &b64, &b64_len)) < 0) {
		set_error(err, "cannot encode the private key: %s", strerror(-r));
		return r;
	}
	wire_id_to_hex(id, hex);
	/* The key line without its NUL, then "\n"; me.info adds the name and the id. */
	b64[b64_len] = '\n';
	if ((r = write_atomic(dir, CLIENTCONF_PRIVKEY, b64, b64_len + 1, exclusive)) < 0)
		goto out;
	failed = CLIENTCONF_ME;
	me_size = name_len + 1 + WIRE_ID_HEX_SIZE + b64_len + 1;
	if (!(me = gcry_malloc_secure(me_size))) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(me, name, name_len);
	me[name_len] = '\n';
	memcpy(me + name_len + 1, hex, WIRE_ID_HEX_SIZE - 1);
	me[name_len + WIRE_ID_HEX_SIZE] = '\n';
	memcpy(me + name_len + 1 + WIRE_ID_HEX_SIZE, b64, b64_len + 1);
	r = write_atomic(dir, CLIENTCONF_ME, me, me_size, exclusive);
	/* A new identity is whole or absent: the key file written for it goes if me.info could not be. */
	if (r < 0 && exclusive && (priv = join_path(dir, CLIENTCONF_PRIVKEY))) {
		(void)unlink(priv);
		free(priv);
	}
out:
	if (r < 0)
		set_error(err, "cannot write %s/%s: %s", dir, failed, strerror(-r));
	keyfile_secret_free(me, me_size);
	keyfile_secret_free(b64, b64_len + 1);
	return r;
}

int clientconf_write_identity(const char *dir, const char *name, const uint8_t id[WIRE_ID_SIZE],
                              const struct keyfile_rsa *key, struct clientconf_error *err)
{
	return write_identity(dir, name, id, key, false, err);
}

int clientconf_create_identity(const char *dir, const char *name, const uint8_t id[WIRE_ID_SIZE],
                               const struct keyfile_rsa *key, struct clientconf_error *err)
{
	return write_identity(dir, name, id, key, true, err);
}
