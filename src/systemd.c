/* libsystemd, loaded on first use (systemd.h). */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "systemd.h"

/* Its functions, with the types of its own headers. */
static struct {
	__typeof__(&sd_listen_fds) listen_fds;
	__typeof__(&sd_journal_sendv) journal_sendv;
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

/* dlsym's object pointer into a function pointer (dlsym(3), the POSIX rationale). */
static void *symbol(void *handle, const char *name, bool *missing)
{
	void *p = dlsym(handle, name);

	*missing = *missing || !p;
	return p;
}

static void lib_load(void)
{
	void *h = dlopen(EF_LIBSYSTEMD_SONAME, RTLD_NOW | RTLD_LOCAL);
	void *listen_fds, *journal_sendv;
	bool missing = false;

	if (!h)
		return;
	listen_fds = symbol(h, "sd_listen_fds", &missing);
	journal_sendv = symbol(h, "sd_journal_sendv", &missing);
	if (missing) {
		(void)dlclose(h);
		return;
	}
	memcpy(&lib.listen_fds, &listen_fds, sizeof(listen_fds));
	memcpy(&lib.journal_sendv, &journal_sendv, sizeof(journal_sendv));
}

static int lib_ready(void)
{
	(void)pthread_once(&lib_once, lib_load);
	return lib.journal_sendv ? 0 : -ELIBACC;
}

int systemd_listen_fds(int unset_environment)
{
	int r;

	/* What sd_listen_fds() itself does without LISTEN_PID. */
	if (!getenv("LISTEN_PID")) {
		if (unset_environment) {
			(void)unsetenv("LISTEN_FDS");
			(void)unsetenv("LISTEN_FDNAMES");
		}
		return 0;
	}
	if ((r = lib_ready()) < 0)
		return r;
	return lib.listen_fds(unset_environment);
}

int systemd_journal_sendv(const struct iovec *iov, int n)
{
	int r;

	if ((r = lib_ready()) < 0)
		return r;
	return lib.journal_sendv(iov, n);
}
