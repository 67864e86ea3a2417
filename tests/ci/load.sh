#!/bin/bash
# Load: 64 concurrent clients x 20 uploads each, 1 KiB to 8 MiB (every
# order of magnitude as likely), half of them with one connection per
# request, both code sets, against efsession under systemd-socket-activate:
# zero failed requests, no SQLITE_BUSY reaching a client or the log,
# PRAGMA integrity_check ok, every stored file byte-identical to its
# original, every row consistent with its file. Uses the main build.
top=$(cd "$(dirname "$0")/../.." && pwd)
export top_srcdir=$top top_builddir=$top
. "$top/tests/lib.sh"
. "$top/tests/robust-lib.sh"
need_socket_activate

CLIENTS=${LOAD_CLIENTS:-64}
UPLOADS=${LOAD_UPLOADS:-20}
make -s -C "$top" efsession tests/drive-robust >"$WORK/build.log" 2>&1 || {
	diag "$WORK/build.log"
	echo "Bail out! cannot build efsession and tests/drive-robust"
	exit 1
}
# 64 clients register from 127.0.0.1, more than --registrations-per-hour lets one source; their 1.5 GiB
# may leave less than --min-free-space's 1 GiB on a small /tmp (a tmpfs of 2.4 GiB in a container), and
# what this suite measures is concurrency, not that limit (tests/limits.sh has it).
start_server "$WORK/state" --registrations-per-hour 0 --min-free-space 0
# An upper bound against a hang; the run takes a minute or two.
timeout -k 10 900 "$top/tests/drive-robust" load 127.0.0.1 "$PORT" "$WORK/state" "$CLIENTS" "$UPLOADS" \
	>"$WORK/load.tap" 2>"$WORK/load.err"
echo "# exit $?"
fold_drive load
wait_sessions
absent_from_log() { ! grep -qiE "$1" "$SERVER_LOG"; }
check "no SQLITE_BUSY or lock error in the server's log" absent_from_log "busy|locked"
check "no error at all in the server's log" absent_from_log " (err|crit):"
stored=$(du -sm "$WORK/state/files" | cut -f1)
echo "# $stored MiB stored by $CLIENTS clients"
stop_server
done_testing
