/*
 * libsystemd, opened the first time a process needs it: socket activation
 * (sd_listen_fds(3)) and the journal (sd_journal_sendv(3)). efsession starts
 * for every connection, and loading libsystemd costs more than serving a
 * small request, since it brings in the compression, capability and
 * cryptographic libraries it links; a connection without LISTEN_PID set
 * whose log goes elsewhere than the journal never loads it.
 */
#ifndef EF_SYSTEMD_H
#define EF_SYSTEMD_H

#include <sys/uio.h>

/*
 * sd_listen_fds(3): 0 without loading anything when LISTEN_PID is not set
 * (no socket was passed); -ELIBACC when libsystemd cannot be loaded.
 */
int systemd_listen_fds(int unset_environment);

/* sd_journal_sendv(3), or -ELIBACC when libsystemd cannot be loaded. */
int systemd_journal_sendv(const struct iovec *iov, int n);

#endif
