#!/bin/bash
# efsession over real TCP: started per connection by systemd-socket-activate
# on a loopback port, a scripted client (the replay runner, connecting)
# registers, exchanges keys and uploads in both code sets, one connection per
# request and one for everything; efsession's logs never reach the socket.
. "${top_srcdir:-.}/tests/lib.sh"

state=$WORK/state
start_server "$state"
# The runner seeds the fixture into the server's state directory and talks TCP.
for f in per-request mixed-sets upload-1100 resend-1105 give-up-1031; do
	mkdir -p "$WORK/$f"
	rm -rf "$state" && mkdir -p "$state"
	REPLAY_CONNECT=127.0.0.1:$PORT REPLAY_STATE=$state "$REPLAY" "$top_srcdir/tests/replay/$f.replay" >"$WORK/$f.tap"
	rc=$?
	grep -q '^not ok' "$WORK/$f.tap" && rc=1
	check "over TCP, tests/replay/$f.replay passes ($(grep -c '^ok' "$WORK/$f.tap") checks)" [ $rc -eq 0 ]
	[ $rc -eq 0 ] || diag "$WORK/$f.tap"
done
wait_sessions
check "every session logged to the launcher's stderr, none to the connection" grep -q "Stored" "$SERVER_LOG"
stop_server
done_testing
