#!/bin/bash
# efbench works and counts what fails: against efsession over TCP in both
# code sets and every connection policy, uploads arrive whole and are
# confirmed; wrong checksums are counted as errors with exit status 1; key
# exchanges, new clients' whole sessions and confirmations alone work; raw
# mode drives the trivial server of make bench, which stores what it is
# sent. No timing is checked.
. "${top_srcdir:-.}/tests/lib.sh"
need_socket_activate

EFBENCH=$top_builddir/efbench
SINK=$top_builddir/src/bench-sink

# bench OUT [OPTION]...: efbench against the server on $PORT, its exit status in $status.
bench() {
	local out=$1
	shift
	"$EFBENCH" -t 20 "$@" "127.0.0.1:$PORT" >"$out" 2>"$out.err"
	status=$?
	[ "$status" -eq 0 ] || diag "$out.err"
}

errors_are() {
	grep -qx "errors: *$2" "$1"
}

stored_files() {
	find "$WORK/state/files" -type f -name 'efbench-*.bin' | wc -l
}

# efbench registers every client from 127.0.0.1, more than --registrations-per-hour lets one source.
start_server "$WORK/state" --registrations-per-hour 0

bench "$WORK/a" -c 1100 -u 20 -j 4
check "1100: 20 upload sessions, 4 at a time, no error" eval '[ $status -eq 0 ] && errors_are "$WORK/a" 0'
check "and 20 files are stored" [ "$(stored_files)" -eq 20 ]
check "the report has the rate, MB/s and latencies" \
	eval 'grep -q "^uploads/s: *[0-9]" "$WORK/a" && grep -q "^MB/s:" "$WORK/a" && grep -q "^latency p99: .* ms$" "$WORK/a"'

bench "$WORK/b" -c 1025 -p -s 3000001 -u 4 -j 2
check "1025, a connection per request, 3000001-byte files: no error" eval '[ $status -eq 0 ] && errors_are "$WORK/b" 0'
check "each stored with its plaintext size" \
	[ "$(find "$WORK/state/files" -type f -size 3000001c | wc -l)" -eq 4 ]

bench "$WORK/c" -K -s 100000 -u 6 -j 2 -k cksum
check "one connection per worker: no error" eval '[ $status -eq 0 ] && errors_are "$WORK/c" 0'
check "without --code-set, efbench speaks efclient's default set, 1025" grep -q "^mode: .*code set 1025," "$WORK/c"

bench "$WORK/d" -m keys -u 10 -j 2
check "10 key exchanges, no error" eval '[ $status -eq 0 ] && errors_are "$WORK/d" 0 && grep -q "^key exchanges/s:" "$WORK/d"'

files=$(stored_files)
dirs=$(find "$WORK/state/files" -mindepth 1 -maxdepth 1 -type d | wc -l)
bench "$WORK/n" -c 1025 -m full -p -u 6 -j 2
check "6 new clients' sessions, each request on a connection of its own: no error" \
	eval '[ $status -eq 0 ] && errors_are "$WORK/n" 0'
check "6 more clients, each with a directory and its file stored" eval '[ "$(stored_files)" -eq $((files + 6)) ] &&
	[ "$(find "$WORK/state/files" -mindepth 1 -maxdepth 1 -type d | wc -l)" -eq $((dirs + 6)) ]'
check "the report counts 4 connections a session" \
	eval 'awk -F: "/^uploads\/s/ { u = \$2 } /^connections\/s/ { c = \$2 } END { exit !(u > 0 && c >= 4 * u - 0.25 && c <= 4 * u + 0.25) }" "$WORK/n"'

files=$(stored_files)
bench "$WORK/o" -c 1100 -m confirm -n 2 -u 8 -j 2
check "8 confirmations of the 2 files the set-up uploaded: no error" \
	eval '[ $status -eq 0 ] && errors_are "$WORK/o" 0 && grep -q "^confirmations/s: *[0-9]" "$WORK/o"'
check "and just those 2 files stored" [ "$(stored_files)" -eq $((files + 2)) ]

bench "$WORK/e" -k crc32 -u 3
check "a checksum the server does not use: every upload is an error, exit 1" \
	eval '[ $status -eq 1 ] && errors_are "$WORK/e" 3'
check "each described on standard error" [ "$(grep -c "checksum .* from the server" "$WORK/e.err")" -eq 3 ]

stop_server
start_server "$WORK/state" --fault-checksum 1 --registrations-per-hour 0
bench "$WORK/f" -c 1025 -u 4 -j 2
check "--fault-checksum 1: the first upload of each file is wrong, 4 errors" \
	eval '[ $status -eq 1 ] && errors_are "$WORK/f" 4'
stop_server

"$EFBENCH" -u 1 "127.0.0.1:$PORT" >/dev/null 2>"$WORK/g.err"
check "no server listening: exit 69 before anything is timed" [ $? -eq 69 ]
check "and the message names the address and what to look at" \
	grep -qF "efbench: setting up client 0 with 127.0.0.1:$PORT: connect: Connection refused (is the server running and listening there?)" "$WORK/g.err"
"$EFBENCH" -j 0 "127.0.0.1:$PORT" >/dev/null 2>&1
check "a concurrency of 0: usage error 64" [ $? -eq 64 ]

# The trivial server of make bench, under the same launcher, storing what it is sent.
mkdir "$WORK/sink"
start_launcher "$(cd "$(dirname "$SINK")" && pwd)/bench-sink" --store "$WORK/sink"
bench "$WORK/h" -c 1100 -m raw -s 65536 -u 5 -j 2
check "raw mode against the trivial server: no error" eval '[ $status -eq 0 ] && errors_are "$WORK/h" 0'
check "which stored each upload's payload (65536 bytes padded, and the 275 bytes of the 1100 set's fixed fields)" \
	[ "$(find "$WORK/sink" -type f -size 65827c | wc -l)" -eq 5 ]

done_testing
