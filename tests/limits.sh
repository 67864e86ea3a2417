#!/bin/bash
# The limits of efsession(8) over real TCP, where the replays cannot go:
# registrations counted per source address (each loopback address a source,
# an IPv4 client of a dual-stack socket by its IPv4 address, an IPv6 one by
# its /64), across connections and processes; an upload whose content comes
# slower than --min-rate dropped without a response once its grace has
# passed, a faster one stored, and --debug lifting the limit; an upload
# that passed --client-quota or --client-max-files before its content,
# refused once it is read because another connection of its client stored
# meanwhile; slow holders
# cut at the idle timeout or at their last refusal while a normal client is
# served; and, on a small tmpfs the test mounts, one client filling it
# stopped by --client-quota, then by --min-free-space, while another still
# registers and uploads.
. "${top_srcdir:-.}/tests/client-lib.sh"
. "$top_srcdir/tests/robust-lib.sh"
need sqlite3 sqlite3
setup

DRIVE=$top_builddir/tests/drive-robust
sources_of() {
	sqlite3 "$1/efserver.db" "SELECT source || '=' || count(*) FROM registrations GROUP BY source ORDER BY source" |
		paste -sd' '
}

# Registrations per source, IPv4.
start_server "$WORK/src" --registrations-per-hour 2
run_drive sources sources 127.0.0.1 "$PORT" 2 127.0.0.2 127.0.0.3
run_drive sources-again sources 127.0.0.1 "$PORT" 0 127.0.0.2
wait_sessions
check "each loopback address is a source of its own, counted in the database" \
	[ "$(sources_of "$WORK/src")" = "127.0.0.2=2 127.0.0.3=2" ]
check "the refusals say which limit, with the source" \
	grep -q "from 127.0.0.2 in the last hour, the limit of --registrations-per-hour; answered 2101. \[LIMIT=registrations-per-hour\]" "$SERVER_LOG"
stop_server

# A dual-stack socket: IPv4 clients by their IPv4 address, IPv6 ones by their /64.
if ip -6 addr show dev lo 2>/dev/null | grep -q '::1/128'; then
	LISTEN_ADDRESS='[::]' start_server "$WORK/dual" --registrations-per-hour 2
	run_drive v4-mapped sources 127.0.0.1 "$PORT" 2 127.0.0.4
	run_drive v6 sources ::1 "$PORT" 2 ::1
	wait_sessions
	check "on a dual-stack socket: 127.0.0.4 as itself, ::1 as its /64" \
		[ "$(sources_of "$WORK/dual")" = "127.0.0.4=2 ::/64=2" ]
	stop_server
else
	skip "registrations per source over IPv6" "no IPv6 loopback here"
fi

# --min-rate: 32 KiB/s after a grace of the idle timeout, 2 s.
start_server "$WORK/rate" --idle-timeout 2 --min-rate 32K
run_drive slow rate 127.0.0.1 "$PORT" 8192 262144 dropped
run_drive fast rate 127.0.0.1 "$PORT" 131072 196608 stored
wait_sessions
check "the slow upload's drop is logged with the rate seen and the limit" \
	grep -qE "bytes of the file content of request 1103 came in [0-9.]+ s, an average of [0-9.]+ KiB/s, below --min-rate 32.0 KiB/s; closing the connection. \[LIMIT=min-rate\]" "$SERVER_LOG"
check "nothing of it was kept" eval '! find "$WORK/rate/files" -name paced.bin -size +200k | grep -q . && [ -z "$(ls -A "$WORK/rate/tmp")" ]'
stop_server
start_server "$WORK/rate-debug" --idle-timeout 2 --min-rate 32K --debug
run_drive debug rate 127.0.0.1 "$PORT" 8192 24576 stored
stop_server

# Another connection of the same client stores while an upload's content arrives: refused in the record transaction.
for what in quota files; do
	mkdir -p "$WORK/race-$what"
	run_drive "record-race-$what" record-race "$(cd "$top_builddir" && pwd)/efsession" "$WORK/race-$what" "$what"
done
check "the refusals after the content are logged with their limits" \
	eval 'grep -q "after its content: .* \[LIMIT=client-quota\]" "$WORK/race-quota.log" &&
		grep -q "after its content: .* \[LIMIT=client-max-files\]" "$WORK/race-files.log"'

# Slow holders against a normal client (tests/ci/nspawn.sh does this under real systemd, with more).
start_server "$WORK/hold" --idle-timeout 2 --max-refusals 3
run_drive hold hold 127.0.0.1 "$PORT" 8 8 2 3 5
wait_sessions
stop_server

# A small file system: one client fills it, the others go on.
mnt=$WORK/tmpfs
mkdir -p "$mnt"
if mount -t tmpfs -o size=64m,mode=0700 efserver-limits "$mnt" 2>/dev/null; then
	trap 'stop_server; umount "$mnt" 2>/dev/null; stop_peers; cleanup' EXIT
	for i in $(seq 1 12); do head -c 4194304 /dev/urandom >"$WORK/fill$i"; done
	head -c 1048576 /dev/urandom >"$WORK/small"
	mkdir -p "$WORK/filler" "$WORK/other" "$WORK/third"
	# fill FROM TO: the filler uploads fillFROM..fillTO, one connection each, until one is refused;
	# $last is the last that was stored.
	fill() {
		local i
		last=0
		for i in $(seq "$1" "$2"); do
			run_client "$WORK/f" -q -s "127.0.0.1:$PORT" -n filler -d "$WORK/filler" "$WORK/fill$i"
			[ "$status" -eq 0 ] || break
			last=$i
		done
	}
	start_server "$mnt" --client-quota 12M --min-free-space 16M
	fill 1 3
	check "--client-quota 12M: the filler's first two 4 MiB files are stored, the third refused" [ "$last" = 2 ]
	check "refused by --client-quota" grep -q "\[LIMIT=client-quota\]" "$SERVER_LOG"
	check "nothing of it kept" eval '[ ! -e "$mnt/files/$(client_id "$WORK/filler")/fill3" ] && [ -z "$(ls -A "$mnt/tmp")" ]'
	run_client "$WORK/o" -q -s "127.0.0.1:$PORT" -n other -d "$WORK/other" "$WORK/small"
	check "another client registers and uploads meanwhile" eval 'exit_is 0 && stored "$mnt" "$WORK/other" "$WORK/small"'
	stop_server
	start_server "$mnt" --min-free-space 16M
	fill 3 12
	free=$(df -P -k "$mnt" | awk 'NR == 2 { print $4 }')
	echo "# without a quota, the filler stored up to fill$last; $((free / 1024)) MiB left free of 64"
	check "--min-free-space 16M stops the filler before the file system is full" \
		eval '[ "$last" -ge 5 ] && [ "$last" -lt 12 ] && [ "$free" -ge $((16 * 1024)) ]'
	check "refused by --min-free-space" grep -q "\[LIMIT=min-free-space\]" "$SERVER_LOG"
	run_client "$WORK/t" -q -s "127.0.0.1:$PORT" -n third -d "$WORK/third" "$WORK/small"
	check "a third client still registers and uploads 1 MiB" eval 'exit_is 0 && stored "$mnt" "$WORK/third" "$WORK/small"'
	stop_server
	umount "$mnt"
else
	skip "a small file system filled by one client" "cannot mount a tmpfs here (needs root)"
fi
done_testing
