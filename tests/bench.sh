#!/bin/bash
# make bench: efsession under systemd-socket-activate on loopback, each
# figure beside a ceiling measured in the same run on the same machine:
# (a) one large upload against a plain copy of the same bytes into a file,
# fsynced; (b) 1 KiB upload sessions against a trivial per-connection
# program under the same launcher; (c) key exchanges; (d) efsession's peak
# RSS; (e) new clients' sessions with a connection per request, as the
# seeds' 1025-set client makes them, against the trivial program's
# connections; (f) the CPU one connection costs, for a confirmation alone
# (logged to stderr, and to the journal as under systemd) and for the
# trivial program; (g) when efsession has --database and PostgreSQL 15 is
# installed, (b) at concurrency 8 and (c) again with the database on a
# PostgreSQL server this run starts (tests/pg-lib.sh), beside SQLite's. Prints
# the results and writes them to bench-results.txt in the build directory.
# BENCH_BIG (default 1G) and BENCH_ROUNDS (default 3) shorten a run.
set -u
# The database is the state directory's SQLite file unless said otherwise, whatever this environment says.
unset EFSERVER_DATABASE CREDENTIALS_DIRECTORY

: "${top_builddir:=.}"
: "${top_srcdir:=.}"
: "${SOCKET_ACTIVATE:=$(command -v systemd-socket-activate || true)}"
BUILD=$(cd "$top_builddir" && pwd)
EFSESSION=$BUILD/efsession
EFBENCH=$BUILD/efbench
SINK=$BUILD/src/bench-sink
RSS=$BUILD/src/bench-rss
RESULTS=$BUILD/bench-results.txt
BIG=${BENCH_BIG:-1G}
ROUNDS=${BENCH_ROUNDS:-3}
SMALL_1=300  # 1 KiB sessions at concurrency 1
SMALL_8=1000 # and at concurrency 8
KEYS=400
FULL_1=100   # new clients' sessions (4 connections each) at concurrency 1
FULL_8=300   # and at concurrency 8
CONFIRMS=300 # confirmations, a connection each, for the CPU of one
SETTLE=3 # seconds after a large file is deleted

die() {
	echo "bench: $*" >&2
	exit 1
}

[ -n "$SOCKET_ACTIVATE" ] || die "systemd-socket-activate is not installed"
for p in "$EFSESSION" "$EFBENCH" "$SINK" "$RSS"; do
	[ -x "$p" ] || die "$p is not built"
done

# (g) needs efsession's --database and a PostgreSQL 15 to start; else the results say which is missing.
pg_why=
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
if ! "$EFSESSION" --help 2>/dev/null | grep -q -- --database; then
	pg_why="efsession has no --database option (a build without the PostgreSQL engine)"
elif [ ! -x "$PG_BINDIR/initdb" ] || [ ! -x "$PG_BINDIR/pg_ctl" ] || [ ! -x "$PG_BINDIR/psql" ]; then
	pg_why="PostgreSQL 15 is not installed (Debian package postgresql; no $PG_BINDIR/initdb)"
elif [ "$(id -u)" -eq 0 ] && { ! command -v runuser >/dev/null || ! id -u "${PG_OS_USER:-nobody}" >/dev/null 2>&1; }; then
	pg_why="PostgreSQL refuses to run as root, and there is no runuser or no user ${PG_OS_USER:-nobody} to run it as"
else
	# Its scratch directory and traps are replaced by this script's below.
	. "${top_srcdir}/tests/pg-lib.sh"
	rm -rf "$WORK"
	EFSESSION=$BUILD/efsession
fi

# State and the ceiling's files share the build directory's file system.
WORK=$(mktemp -d "$BUILD/bench.XXXXXX") || die "cannot make a scratch directory"
LAUNCHERS=()
cleanup() {
	local pid
	for pid in "${LAUNCHERS[@]}"; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	[ -z "$pg_why" ] && pg_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

big_bytes=$(numfmt --from=iec "$BIG") || die "BENCH_BIG=$BIG is not a size"
avail=$(($(df -P -k "$WORK" | awk 'NR == 2 { print $4 }') * 1024))
[ "$avail" -gt $((big_bytes + big_bytes / 4)) ] ||
	die "$BIG upload needs $(numfmt --to=iec $((big_bytes + big_bytes / 4))) free in $BUILD, only $(numfmt --to=iec "$avail")"
mkdir -p "$WORK/state" "$WORK/sink" "$WORK/bin"
# Copies, so that a rebuild of the tree while this runs cannot pull a program from under the launcher.
cp "$EFSESSION" "$EFBENCH" "$SINK" "$RSS" "$WORK/bin/" || die "cannot copy the programs"
EFSESSION=$WORK/bin/efsession
EFBENCH=$WORK/bin/efbench
SINK=$WORK/bin/bench-sink
RSS=$WORK/bin/bench-rss

# launch NAME PROGRAM [ARG]...: PROGRAM per connection on a free loopback port ${PORT[NAME]}, launcher ${PID[NAME]}.
declare -A PORT PID
launch() {
	local name=$1 try pid log=$WORK/$1.log
	shift
	for try in 1 2 3 4 5 6 7 8 9 10; do
		PORT[$name]=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		: >"$log"
		"$SOCKET_ACTIVATE" --listen="127.0.0.1:${PORT[$name]}" --accept --inetd "$@" 2>>"$log" &
		pid=$!
		while kill -0 "$pid" 2>/dev/null && ! grep -q "^Listening on" "$log"; do
			sleep 0.05
		done
		if kill -0 "$pid" 2>/dev/null; then
			LAUNCHERS+=("$pid")
			PID[$name]=$pid
			return 0
		fi
		wait "$pid" 2>/dev/null
	done
	die "cannot start systemd-socket-activate for $name"
}

# Every round registers clients anew from 127.0.0.1, more than --registrations-per-hour lets one source.
EFARGS=(--state-dir "$WORK/state" --log-target stderr --registrations-per-hour 0)
launch ef "$EFSESSION" "${EFARGS[@]}"
launch efrss "$RSS" "$WORK/rss.log" "$EFSESSION" "${EFARGS[@]}"
launch trivial "$SINK"
launch trivrss "$RSS" "$WORK/rss-trivial.log" "$SINK"
# As under systemd, where standard error is the journal: libsystemd is opened at the first entry.
launch efjournal "$RSS" "$WORK/rss-journal.log" "$EFSESSION" --state-dir "$WORK/state" --log-target journal --registrations-per-hour 0
launch copy "$SINK" --store "$WORK/sink"
launch copywb "$RSS" "$WORK/rss-copy.log" "$SINK" --store "$WORK/sink" --writeback
if [ -z "$pg_why" ]; then
	# The same efsession with its database on a PostgreSQL server of this machine, on its Unix socket.
	pg_start >&2
	mkdir -p "$WORK/state-pg"
	launch efpg "$EFSESSION" --state-dir "$WORK/state-pg" --log-target stderr --registrations-per-hour 0 \
		--database "$PG_URI"
fi

# run OUT NAME [EFBENCH OPTION]...: efbench against launcher NAME, in the 1100 code set the
# published figures are for; its report in OUT. Failed operations are counted in the results; an
# efbench that could not run at all stops the benchmark.
run() {
	local out=$1 name=$2 status
	shift 2
	"$EFBENCH" -c 1100 "$@" "127.0.0.1:${PORT[$name]}" >"$out" 2>"$out.err"
	status=$?
	if [ "$status" -eq 1 ]; then
		echo "efbench $* against $name: $(field "$out" errors) operations failed" >>"$WORK/errors"
		head -3 "$out.err" >&2
	elif [ "$status" -ne 0 ]; then
		cat "$out.err" >&2
		die "efbench $* against $name failed"
	fi
}

field() {
	awk -F: -v k="$2" '$1 == k { sub(/^ */, "", $2); split($2, a, " "); print a[1] }' "$1"
}

# best FILE...: the highest rate of the reports.
best() {
	local f v b=0
	for f in "$@"; do
		v=$(field "$f" "${KEY:-uploads/s}")
		b=$(awk -v a="$b" -v c="$v" 'BEGIN { print (c > a ? c : a) }')
	done
	echo "$b"
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}

mib() {
	awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

# The most anonymous memory (its own, not shared library pages) of efsession under launcher efrss, sampled.
sample_anon() {
	local top=0 kids pid a
	while :; do
		for kids in $(pgrep -P "${PID[efrss]}"); do
			for pid in $(pgrep -P "$kids"); do
				a=$(awk '/^Anonymous:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null)
				[ -n "$a" ] && [ "$a" -gt "$top" ] && top=$a && echo "$top" >"$WORK/anon"
			done
		done
		sleep 0.1
	done
}

echo "bench: $BIG upload, $ROUNDS rounds; scratch space in $WORK" >&2

# (a) one large upload, until 2103 arrives, against the same bytes copied into a file and fsynced.
# Every round starts from the same state: a virtual machine may hand the pages a deleted file
# freed back to its host a moment later (virtio-balloon free page reporting, after 2 s), and
# the next writer then waits on the host for each page; a run that starts sooner finds them
# still there and is faster for it. So each round waits out the reporting after the deletion.
sleep "$SETTLE"
for r in $(seq "$ROUNDS"); do
	run "$WORK/a-copy.$r" copy -m raw -s "$BIG" -u 1
	rm -f "$WORK"/sink/*
	sleep "$SETTLE"
done
for r in $(seq "$ROUNDS"); do
	run "$WORK/a-copywb.$r" copywb -m raw -s "$BIG" -u 1
	rm -f "$WORK"/sink/*
	sleep "$SETTLE"
done
for r in $(seq "$ROUNDS"); do
	: >"$WORK/rss.log"
	sample_anon &
	sampler=$!
	run "$WORK/a-ef.$r" efrss -s "$BIG" -u 1 -n 1
	kill "$sampler" 2>/dev/null
	wait "$sampler" 2>/dev/null
	sort -n "$WORK/rss.log" | tail -1 >>"$WORK/rss-a"
	awk '{ print $3 + $4, $0 }' "$WORK/rss.log" | sort -n | tail -1 | cut -d' ' -f2- >>"$WORK/cpu-a"
	rm -rf "$WORK"/state/files/*
	sleep "$SETTLE"
done
KEY=MB/s
a_ef=$(best "$WORK"/a-ef.*)
a_copy=$(best "$WORK"/a-copy.*)
a_copywb=$(best "$WORK"/a-copywb.*)
unset KEY
a_ceiling=$(awk -v a="$a_copy" -v b="$a_copywb" 'BEGIN { print (a > b ? a : b) }')
rss_a=$(sort -n "$WORK/rss-a" | tail -1 | cut -d' ' -f1)
# CPU seconds (user, system) of the large upload's process, least and most over the rounds.
cpu() {
	awk '{ t = $3 + $4; if (!n++ || t < lo) { lo = t; lu = $3; ls = $4 }
		if (t > hi) { hi = t; hu = $3; hs = $4 } }
		END { printf "user %.2f-%.2f s, system %.2f-%.2f s", lu, hu, ls, hs }' "$1"
}
cpu_ef=$(cpu "$WORK/cpu-a")
cpu_copy=$(cpu "$WORK/rss-copy.log")
anon_a=$(cat "$WORK/anon" 2>/dev/null || echo 0)

# (b) 1 KiB sessions (upload and confirmation on one connection) against the trivial program.
for r in $(seq "$ROUNDS"); do
	run "$WORK/b1-ef.$r" ef -u "$SMALL_1" -j 1
	run "$WORK/b1-triv.$r" trivial -m raw -u "$SMALL_1" -j 1
	run "$WORK/b8-ef.$r" ef -u "$SMALL_8" -j 8
	run "$WORK/b8-triv.$r" trivial -m raw -u "$SMALL_8" -j 8
	[ -z "$pg_why" ] && run "$WORK/b8-pg.$r" efpg -u "$SMALL_8" -j 8
done
b1_ef=$(best "$WORK"/b1-ef.*)
b1_triv=$(best "$WORK"/b1-triv.*)
b8_ef=$(best "$WORK"/b8-ef.*)
b8_triv=$(best "$WORK"/b8-triv.*)
b8_lat=$(ls -1 "$WORK"/b8-ef.* | head -1)
: >"$WORK/rss.log"
run "$WORK/b-rss" efrss -u 200 -j 8
rss_b=$(sort -n "$WORK/rss.log" | tail -1 | cut -d' ' -f1)

# (c) key exchanges: a public key in, a fresh AES key out and decrypted, one connection each.
run "$WORK/c1" ef -m keys -u $((KEYS / 4)) -j 1
run "$WORK/c8" ef -m keys -u "$KEYS" -j 8
if [ -z "$pg_why" ]; then
	run "$WORK/c1-pg" efpg -m keys -u $((KEYS / 4)) -j 1
	run "$WORK/c8-pg" efpg -m keys -u "$KEYS" -j 8
fi
KEY="key exchanges/s"
c1=$(best "$WORK/c1")
c8=$(best "$WORK/c8")
if [ -z "$pg_why" ]; then
	c1_pg=$(best "$WORK/c1-pg")
	c8_pg=$(best "$WORK/c8-pg")
fi
unset KEY
[ -z "$pg_why" ] && b8_pg=$(best "$WORK"/b8-pg.*)

# (e) new clients, 1025 set, each request on a connection of its own; the trivial program's connections beside.
for r in $(seq "$ROUNDS"); do
	run "$WORK/e1-ef.$r" ef -c 1025 -m full -p -u "$FULL_1" -j 1
	run "$WORK/e1-triv.$r" trivial -c 1025 -m raw -p -u "$SMALL_1" -j 1
	run "$WORK/e8-ef.$r" ef -c 1025 -m full -p -u "$FULL_8" -j 8
	run "$WORK/e8-triv.$r" trivial -c 1025 -m raw -p -u "$SMALL_8" -j 8
done
KEY=connections/s
e1_ef=$(best "$WORK"/e1-ef.*)
e1_triv=$(best "$WORK"/e1-triv.*)
e8_ef=$(best "$WORK"/e8-ef.*)
e8_triv=$(best "$WORK"/e8-triv.*)
unset KEY
e8_lat=$(ls -1 "$WORK"/e8-ef.* | head -1)

# (f) CPU (user + system, exec to exit) of one connection: a confirmation alone, and the trivial program's.
: >"$WORK/rss.log"
run "$WORK/f" efrss -c 1025 -m confirm -n 1 -u "$CONFIRMS"
: >"$WORK/rss-trivial.log"
run "$WORK/f-triv" trivrss -c 1025 -m raw -p -u $((CONFIRMS / 2))
# median LOG: the median CPU of the processes logged, in ms (the set-up's two are among them).
median() {
	awk '{ print ($3 + $4) * 1000 }' "$1" | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", NR ? v[int((NR + 1) / 2)] : 0 }'
}
: >"$WORK/rss-journal.log"
run "$WORK/f-journal" efjournal -c 1025 -m confirm -n 1 -u "$CONFIRMS"
f_ef=$(median "$WORK/rss.log")
f_journal=$(median "$WORK/rss-journal.log")
f_triv=$(median "$WORK/rss-trivial.log")

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
fs=$(df -P -T "$WORK" | awk 'NR == 2 { print $1 " (" $2 ")" }')
{
	echo "efserver benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $("$EFSESSION" --version)"
	echo "machine: $cpu, $(nproc) cores, $mem, load average $(cut -d' ' -f1-3 /proc/loadavg); state on $fs"
	echo "efsession under systemd-socket-activate on 127.0.0.1, code set 1100, checksum cksum;"
	echo "each figure is the best of $ROUNDS rounds, its ceiling measured in the same run."
	echo
	echo "(a) one $BIG upload, end to end (until 2103: decrypted, checksummed, fsynced)"
	printf '    efsession                                   %8.1f MB/s\n' "$a_ef"
	printf '    ceiling: same bytes into a file, then fsync %8.1f MB/s\n' "$a_copy"
	printf '    ceiling: the same, writeback as it goes     %8.1f MB/s\n' "$a_copywb"
	printf '    ratio to the better ceiling                 %8s      (target 0.9)\n' "$(ratio "$a_ef" "$a_ceiling")"
	echo "    CPU of one upload, least and most over the rounds:"
	echo "        efsession $cpu_ef; the copy with writeback $cpu_copy"
	echo "(b) 1 KiB upload sessions, upload and confirmation on one connection each"
	printf '    concurrency 1: efsession %7.1f/s, trivial program %7.1f/s, ratio %s\n' "$b1_ef" "$b1_triv" \
		"$(ratio "$b1_ef" "$b1_triv")"
	printf '    concurrency 8: efsession %7.1f/s, trivial program %7.1f/s, ratio %s (target 0.5)\n' "$b8_ef" \
		"$b8_triv" "$(ratio "$b8_ef" "$b8_triv")"
	printf '    latency at concurrency 8: p50 %s ms, p99 %s ms\n' "$(field "$b8_lat" "latency p50")" \
		"$(field "$b8_lat" "latency p99")"
	echo "(c) key exchanges (RSA-1024 public key in, AES key out), one connection each"
	printf '    concurrency 1: %7.1f/s; concurrency 8: %7.1f/s\n' "$c1" "$c8"
	echo "(d) efsession peak RSS (wait4 ru_maxrss, shared library pages included; target 6 MiB)"
	printf '    during (a): %s MiB, of it anonymous memory %s MiB; during (b): %s MiB\n' "$(mib "$rss_a")" \
		"$(mib "$anon_a")" "$(mib "$rss_b")"
	"$RSS" "$WORK/rss-trivial" "$SINK" </dev/null
	printf '    the trivial program, for scale: %s MiB\n' "$(mib "$(cut -d' ' -f1 "$WORK/rss-trivial")")"
	echo "(e) new clients' sessions, code set 1025, each request on a connection of its own (register, key,"
	echo "    upload of 1 KiB, confirm: 4 connections), against the trivial program's connections"
	printf '    concurrency 1: efsession %7.1f connections/s (%5.1f sessions/s), trivial program %7.1f/s, ratio %s\n' \
		"$e1_ef" "$(awk -v c="$e1_ef" 'BEGIN { print c / 4 }')" "$e1_triv" "$(ratio "$e1_ef" "$e1_triv")"
	printf '    concurrency 8: efsession %7.1f connections/s (%5.1f sessions/s), trivial program %7.1f/s, ratio %s (target 0.4)\n' \
		"$e8_ef" "$(awk -v c="$e8_ef" 'BEGIN { print c / 4 }')" "$e8_triv" "$(ratio "$e8_ef" "$e8_triv")"
	printf '    session latency at concurrency 8: p50 %s ms, p99 %s ms\n' "$(field "$e8_lat" "latency p50")" \
		"$(field "$e8_lat" "latency p99")"
	echo "(f) CPU of one connection (user + system, exec to exit, median of $CONFIRMS)"
	printf '    efsession, a confirmation (1029) alone: %s ms (target 1.5); the trivial program: %s ms\n' "$f_ef" \
		"$f_triv"
	printf '    the same confirmation logged to the journal, libsystemd opened for it: %s ms\n' "$f_journal"
	if [ -z "$pg_why" ]; then
		echo "(g) the database on PostgreSQL $("$PG_BINDIR/postgres" --version | awk '{ print $3 }') (this machine, Unix socket, fsync on) beside SQLite, same run"
		printf '    1 KiB upload sessions, concurrency 8: SQLite %7.1f/s, PostgreSQL %7.1f/s, ratio %s\n' "$b8_ef" \
			"$b8_pg" "$(ratio "$b8_pg" "$b8_ef")"
		printf '    key exchanges, concurrency 1: SQLite %7.1f/s, PostgreSQL %7.1f/s, ratio %s\n' "$c1" "$c1_pg" \
			"$(ratio "$c1_pg" "$c1")"
		printf '    key exchanges, concurrency 8: SQLite %7.1f/s, PostgreSQL %7.1f/s, ratio %s\n' "$c8" "$c8_pg" \
			"$(ratio "$c8_pg" "$c8")"
	else
		echo "(g) PostgreSQL beside SQLite: not measured: $pg_why"
	fi
	if [ -s "$WORK/errors" ]; then
		echo "ERRORS (the rates above count only the operations that succeeded):"
		sed 's/^/    /' "$WORK/errors"
	fi
} >"$RESULTS"
cat "$RESULTS"
[ ! -s "$WORK/errors" ]
