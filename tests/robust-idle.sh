#!/bin/bash
# 500 connections opened and never written to are all closed by efsession's
# idle timeout, without a byte of response, while the machine holds them
# (their total resident memory is reported); the launcher serves afterwards.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/robust-lib.sh"
need_socket_activate
need pgrep procps

N=${ROBUST_IDLE_CONNECTIONS:-500}
TIMEOUT=3
start_server "$WORK/state" --idle-timeout "$TIMEOUT"
"$top_builddir/tests/drive-robust" idle 127.0.0.1 "$PORT" "$N" "$TIMEOUT" >"$WORK/idle.tap" 2>"$WORK/idle.err" &
drive=$!
# While they are open: how many efsession processes, and their memory.
peak=0 rss=0
for i in $(seq 1 100); do
	n=$(pgrep -c -P "$SERVER_PID" || true)
	if [ "${n:-0}" -gt "$peak" ]; then
		peak=$n
		# Proportional set size: shared library pages are counted once, not once per process.
		rss=$(for p in $(pgrep -P "$SERVER_PID"); do cat "/proc/$p/smaps_rollup" 2>/dev/null; done |
			awk '/^Pss:/ {s += $2} END {print s + 0}')
	fi
	[ "${n:-0}" -ge "$N" ] && break
	sleep 0.1
done
wait $drive
fold_drive idle
echo "# at most $peak efsession processes at once, $((rss / 1024)) MiB in all by proportional set size ($((rss / (peak > 0 ? peak : 1))) KiB each)"
check "every efsession is gone once the connections are closed" wait_sessions
check "an efsession served each connection and logged its idle timeout" [ "$(grep -c "idle for $TIMEOUT s" "$SERVER_LOG")" -ge "$N" ]
stop_server
done_testing
