# What the efclient end-to-end tests (tests/client-*.sh) add to the shared
# tests/lib.sh: running efclient and looking at what it did, and peers other
# than efsession (one that hangs up, one that never answers) under
# systemd-socket-activate.

. "${top_srcdir:-.}/tests/lib.sh"

# Absolute, for the tests that run it from another directory.
EFCLIENT=$(cd "$top_builddir" && pwd)/efclient
work=$WORK
peers=
status=0

note() {
	printf '%s\n' "$@" | sed 's/^/#   /'
}

stop_peers() {
	for pid in $peers; do
		# The command started for a connection first, then the launcher.
		for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
			kill "$child" 2>/dev/null
		done
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	peers=
}

setup() {
	[ -x "$EFCLIENT" ] || skip_all "efclient is not built"
	[ -x "$EFSESSION" ] || skip_all "efsession is not built"
	need_socket_activate
	trap 'stop_peers; cleanup' EXIT
	trap 'exit 1' INT TERM HUP
}

# server_start STATE [EFSESSION OPTION]...: start_server of tests/lib.sh, the port in $port.
server_start() {
	start_server "$@" && port=$PORT
}

# peer_start LOG COMMAND...: COMMAND started by systemd-socket-activate for
# each connection to 127.0.0.1:$port (the connection is its fd 3), on a free
# port; messages in LOG.
peer_start() {
	log=$1
	shift
	for try in 1 2 3 4 5 6 7 8 9 10; do
		port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
		: >"$log"
		"$SOCKET_ACTIVATE" --listen="127.0.0.1:$port" --accept -- "$@" 2>>"$log" &
		pid=$!
		# It prints "Listening on" once the socket is bound, or exits when the port is taken.
		while kill -0 "$pid" 2>/dev/null; do
			if grep -q "^Listening on" "$log"; then
				peers="$peers $pid"
				return 0
			fi
			sleep 0.05
		done
		wait "$pid" 2>/dev/null
	done
	echo "Bail out! cannot listen on a free port: $(cat "$log")"
	exit 1
}

# connections: how many connections the running server has accepted.
connections() {
	grep -c "Connection from" "$SERVER_LOG"
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
			note "$f differs from $state/files/$id/${f##*/}"
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
		note "efclient $*: exit $status" "$(cat "$out.err")"
	fi
	return 0
}

# says OUT TEXT: efclient's stderr in OUT.err holds TEXT.
says() {
	grep -qF -- "$2" "$1.err" || {
		note "expected on stderr: $2"
		return 1
	}
}

# prints OUT LINE: efclient's stdout in OUT.out holds LINE, the whole line.
prints() {
	grep -qxF -- "$2" "$1.out" || {
		note "expected on stdout: $2" "$(cat "$1.out")"
		return 1
	}
}

# exit_is WANT: the last run_client exited with WANT.
exit_is() {
	[ "$status" -eq "$1" ] || {
		note "exit status $status, expected $1"
		return 1
	}
}
