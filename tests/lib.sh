# Shared by the shell tests: TAP output, a scratch directory, and efsession
# started per connection by systemd-socket-activate on a free loopback port.
set -u

: "${top_builddir:=.}"
: "${top_srcdir:=.}"
: "${SOCKET_ACTIVATE:=$(command -v systemd-socket-activate || true)}"
EFSESSION=$top_builddir/efsession
EFCLIENT=$top_builddir/efclient
REPLAY=$top_builddir/tests/replay-run

tap_n=0
tap_failed=0
SERVER_PID=
WORK=$(mktemp -d "${TMPDIR:-/tmp}/eftest.XXXXXX")

cleanup() {
	stop_server
	rm -rf "$WORK"
}
trap cleanup EXIT

pass() {
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $*"
}

fail() {
	tap_n=$((tap_n + 1))
	tap_failed=$((tap_failed + 1))
	echo "not ok $tap_n - $*"
}

# check DESCRIPTION COMMAND...: one TAP line for whether COMMAND succeeds.
check() {
	local desc=$1
	shift
	if "$@"; then pass "$desc"; else fail "$desc"; fi
}

skip() {
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $1 # SKIP $2"
}

# skip_all REASON: the whole test is skipped. Only before the first check:
# a test that has counted checks cannot be skipped any more, and says so.
skip_all() {
	if [ "$tap_n" -gt 0 ]; then
		echo "Bail out! $* (after $tap_n checks: this test must check what it needs before its first check)"
		exit 1
	fi
	echo "1..0 # SKIP $*"
	trap - EXIT
	rm -rf "$WORK"
	exit 0
}

# need PROGRAM PACKAGE: skip the whole test unless PROGRAM is installed. Call
# it at the top of a test, before any check, for every optional tool it uses.
need() {
	command -v "$1" >/dev/null 2>&1 || skip_all "$1 is not installed (Debian package $2)"
}

# need_socket_activate: what start_server needs.
need_socket_activate() {
	[ -n "$SOCKET_ACTIVATE" ] || skip_all "systemd-socket-activate is not installed (Debian package systemd)"
}

# flip_bit FILE OFFSET: invert the lowest bit of the byte at OFFSET, so that
# it changes whatever it was (writing a fixed byte leaves it as it was once
# in 256 random files).
flip_bit() {
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	[ -n "$b" ] || return 1
	# shellcheck disable=SC2059
	printf "\\$(printf %03o $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

diag() {
	sed 's/^/# /' "$@"
}

done_testing() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ]
}

# start_server STATE_DIR [EFSESSION OPTIONS...]: efsession per connection on
# 127.0.0.1:$PORT, its log in $SERVER_LOG. Retries on another port if taken.
# The connection is on stdin/stdout (inetd style), or with SERVER_FD3=1 passed
# as fd 3 with LISTEN_FDS=1, as systemd does without StandardInput=socket.
start_server() {
	local state=$1
	shift
	mkdir -p "$state"
	start_launcher "$(cd "$(dirname "$EFSESSION")" && pwd)/efsession" --state-dir "$state" --log-target stderr "$@"
}

# start_launcher PROGRAM [ARGS...]: PROGRAM (an absolute path) per connection
# under systemd-socket-activate on 127.0.0.1:$PORT (or $LISTEN_ADDRESS:$PORT,
# [::] for both IPv6 and IPv4), its stderr and the launcher's in $SERVER_LOG,
# as start_server. Retries on another port if taken.
start_launcher() {
	local try style=--inetd
	[ "${SERVER_FD3:-0}" = 1 ] && style=
	need_socket_activate
	SERVER_LOG=$WORK/server.log
	for try in 1 2 3 4 5 6 7 8 9 10; do
		PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		: >"$SERVER_LOG"
		"$SOCKET_ACTIVATE" --listen="${LISTEN_ADDRESS:-127.0.0.1}:$PORT" --accept $style "$@" 2>>"$SERVER_LOG" &
		SERVER_PID=$!
		while kill -0 "$SERVER_PID" 2>/dev/null && ! grep -q "^Listening on" "$SERVER_LOG"; do
			sleep 0.05
		done
		grep -q "^Listening on" "$SERVER_LOG" && kill -0 "$SERVER_PID" 2>/dev/null && return 0
		wait "$SERVER_PID" 2>/dev/null
		SERVER_PID=
	done
	echo "Bail out! could not start systemd-socket-activate on a free port"
	exit 1
}

stop_server() {
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
		SERVER_PID=
	fi
	return 0
}

# wait_sessions: until no efsession child of the launcher is left (sessions end when clients close).
wait_sessions() {
	local i
	for i in $(seq 1 200); do
		[ -z "$(cat /proc/"$SERVER_PID"/task/*/children 2>/dev/null)" ] && return 0
		sleep 0.05
	done
	return 1
}
