# Helpers for the efclient end-to-end tests, sourced by tests/client-*.sh:
# TAP output, a throwaway directory removed on exit, and efsession started
# per connection by systemd-socket-activate on a free loopback port, with a
# state directory of its own.

top_builddir=$(cd "${top_builddir:-.}" && pwd)
top_srcdir=${top_srcdir:-.}
EFCLIENT=$top_builddir/efclient
EFSESSION=$top_builddir/efsession
SOCKET_ACTIVATE=${SOCKET_ACTIVATE:-$(command -v systemd-socket-activate)}

tap_count=0
tap_failed=0
servers=
work=

pass() {
	tap_count=$((tap_count + 1))
	echo "ok $tap_count - $*"
}

fail() {
	tap_count=$((tap_count + 1))
	tap_failed=$((tap_failed + 1))
	echo "not ok $tap_count - $*"
}

diag() {
	printf '%s\n' "$@" | sed 's/^/#   /'
}

# check WHAT COMMAND...: one test, passing when COMMAND succeeds.
check() {
	what=$1
	shift
	if "$@"; then
		pass "$what"
	else
		fail "$what"
	fi
}

skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

done_testing() {
	echo "1..$tap_count"
	[ "$tap_failed" -eq 0 ]
}

cleanup() {
	for pid in $servers; do
		# The efsession children first: they may still be closing a connection.
		for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
			kill "$child" 2>/dev/null
		done
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	servers=
	[ -n "$work" ] && rm -rf "$work"
}

setup() {
	[ -x "$EFCLIENT" ] || skip_all "no $EFCLIENT"
	[ -x "$EFSESSION" ] || skip_all "no $EFSESSION"
	[ -n "$SOCKET_ACTIVATE" ] && [ -x "$SOCKET_ACTIVATE" ] || skip_all "systemd-socket-activate not found"
	work=$(mktemp -d "${TMPDIR:-/tmp}/efclient-test.XXXXXX") || exit 1
	trap cleanup EXIT
	trap 'exit 1' INT TERM HUP
}

# activate LOG COMMAND...: COMMAND started by systemd-socket-activate for
# each connection to 127.0.0.1:$port, on a free port; its messages and
# COMMAND's stderr go to LOG.
activate() {
	log=$1
	shift
	for try in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
		: >"$log"
		"$SOCKET_ACTIVATE" -a -l "127.0.0.1:$port" -- "$@" 2>>"$log" &
		pid=$!
		# It prints "Listening on" once the socket is bound, or exits when the port is taken.
		while kill -0 "$pid" 2>/dev/null; do
			if grep -q "Listening on" "$log"; then
				servers="$servers $pid"
				return 0
			fi
			sleep 0.05
		done
		wait "$pid" 2>/dev/null
	done
	echo "cannot listen on a free port: $(cat "$log")" >&2
	return 1
}

# server_start STATE [EFSESSION OPTION]...: efsession on 127.0.0.1:$port,
# one process per connection, its log and systemd-socket-activate's in
# STATE.log.
server_start() {
	state=$1
	shift
	mkdir -p "$state" || return 1
	activate "$state.log" "$EFSESSION" --state-dir "$state" --log-target stderr "$@"
}

# server_stop: stop the server started last (its port then refuses connections).
server_stop() {
	last=${servers##* }
	for child in $(cat /proc/"$last"/task/*/children 2>/dev/null); do
		kill "$child" 2>/dev/null
	done
	kill "$last" 2>/dev/null
	wait "$last" 2>/dev/null
	servers=${servers% *}
}

# connections STATE: how many connections the server has accepted.
connections() {
	grep -c "Connection from" "$1.log"
}

# client_id DIR: the id in DIR/me.info, as the server names its directory.
client_id() {
	sed -n 2p "$1/me.info" | tr -d -- '-\r' | tr 'A-F' 'a-f'
}

# stored STATE DIR FILE...: every FILE is stored under its base name for the client of DIR, byte for byte.
stored() {
	state=$1
	dir=$2
	shift 2
	id=$(client_id "$dir")
	[ -n "$id" ] || return 1
	for f in "$@"; do
		cmp -s "$f" "$state/files/$id/${f##*/}" || {
			diag "$f differs from $state/files/$id/${f##*/}"
			return 1
		}
	done
}

# run_client OUT [OPTION]...: efclient with its stderr in OUT.err; sets $status.
run_client() {
	out=$1
	shift
	"$EFCLIENT" "$@" >"$out.out" 2>"$out.err"
	status=$?
	if [ -s "$out.err" ]; then
		diag "efclient $*: exit $status" "$(cat "$out.err")"
	fi
	return 0
}

# says OUT TEXT: efclient's stderr in OUT.err holds TEXT.
says() {
	grep -qF -- "$2" "$1.err" || {
		diag "expected on stderr: $2"
		return 1
	}
}

# exit_is WANT: the last run_client exited with WANT.
exit_is() {
	[ "$status" -eq "$1" ] || {
		diag "exit status $status, expected $1"
		return 1
	}
}
