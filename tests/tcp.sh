#!/bin/bash
# efsession over real TCP: started per connection by systemd-socket-activate
# on a loopback port, a scripted client (the replay runner, connecting)
# registers, exchanges keys and uploads in both code sets, one connection per
# request and one for everything, with the connection on stdin/stdout or
# passed as fd 3 (sd_listen_fds); quiet connections are closed at the idle
# timeout, except in debug mode.
. "${top_srcdir:-.}/tests/lib.sh"
need_socket_activate

state=$WORK/state

run_replays() {
	local how=$1 f rc
	shift
	for f in "$@"; do
		rm -rf "$state" && mkdir -p "$state"
		REPLAY_CONNECT=127.0.0.1:$PORT REPLAY_STATE=$state "$REPLAY" "$top_srcdir/tests/replay/$f.replay" >"$WORK/$f.tap"
		rc=$?
		grep -q '^not ok' "$WORK/$f.tap" && rc=1
		check "over TCP ($how), tests/replay/$f.replay passes ($(grep -c '^ok' "$WORK/$f.tap") checks)" [ $rc -eq 0 ]
		[ $rc -eq 0 ] || diag "$WORK/$f.tap"
	done
}

start_server "$state"
run_replays "stdin/stdout" per-request mixed-sets upload-1100 resend-1105 give-up-1031 bad-padding
wait_sessions
check "the sessions logged to the launcher's stderr" grep -q "Stored" "$SERVER_LOG"
stop_server

SERVER_FD3=1 start_server "$state"
run_replays "socket as fd 3" per-request upload-1025
stop_server

# A 1025 register request for "quiet", byte by byte.
register_request() {
	printf '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\003\001\004\377\0\0\0quiet'
	head -c 250 /dev/zero
}

# connect_quiet SECONDS: connect, say nothing for SECONDS, then send a
# registration; prints the response code bytes, or nothing if the server had closed.
connect_quiet() {
	local resp
	exec 5<>"/dev/tcp/127.0.0.1/$PORT"
	sleep "$1"
	register_request >&5 2>/dev/null
	resp=$(timeout 10 head -c 3 <&5 | od -An -tx1 | tr -d ' \n')
	exec 5<&-
	echo "$resp"
}

rm -rf "$state" && mkdir -p "$state"
start_server "$state" --idle-timeout 1
check "a connection quiet past --idle-timeout 1 is closed without a response" [ -z "$(connect_quiet 3)" ]
wait_sessions
check "the log says why it was closed" grep -q "idle for 1 s" "$SERVER_LOG"
check "a connection that speaks in time is served (2100)" [ "$(connect_quiet 0)" = 033408 ]
stop_server

rm -rf "$state" && mkdir -p "$state"
start_server "$state" --idle-timeout 1 --debug
check "--debug turns the idle timeout off: served after 3 s of quiet" [ "$(connect_quiet 3)" = 033408 ]
stop_server
done_testing
