#!/bin/bash
# Several hosts behind a TCP balancer: three hosts as three network
# namespaces on a bridge (in a namespace of its own), each with a host name
# of its own (a UTS namespace) and running efsession per connection under
# systemd-socket-activate on its own address, all with the same database and
# the same state directory; haproxy in front on a loopback address, round
# robin, no stickiness. The state directory stands in for a shared file
# system: a FUSE mount (bindfs) which, as NFS, makes no unnamed files, so
# every upload goes through a named file in tmp/ (a local directory when
# bindfs is missing). Through it: efclient with the 1025 set and a
# connection per request (the hosts' logs show consecutive requests served
# by different hosts), efclient with the 1100 set, then 64 efbench clients x 20 uploads
# of mixed sizes, both code sets, beside efclient uploads of known files,
# while random efsession processes of one host are killed (SIGKILL) and the
# database is restarted once. Afterwards: efctl verify clean, every confirmed
# file byte-identical to what its client sent, no acknowledged file lost,
# nothing left in tmp/ once efctl gc ran on every host (each removing only
# its own host's names); the figures (uploads, kills, failures seen by
# clients, files lost) on a "# cluster:" line.
#
# The database: PostgreSQL (tests/pg-lib.sh, in a namespace of its own, over
# TCP) when efsession has --database, else the SQLite file in the shared
# state directory, which has no server to restart. EFSERVER_CLUSTER_DATABASE=sqlite
# or postgresql chooses instead. Uses the main build; needs root (network
# namespaces), haproxy, python3 and unshare.
set -u
# The database is the one chosen below, whatever this environment says.
unset EFSERVER_DATABASE CREDENTIALS_DIRECTORY
top=$(cd "$(dirname "$0")/../.." && pwd)
export top_srcdir=$top top_builddir=$top
. "$top/tests/client-lib.sh"
. "$top/tests/pg-lib.sh"

# The load: efbench runs side by side, each CLIENTS_PER_RUN clients x UPLOADS uploads.
BENCH_RUNS=("-c 1025 -p -s 1K" "-c 1100 -s 32K" "-c 1025 -s 256K" "-c 1100 -p -s 1M")
CLIENTS_PER_RUN=16
UPLOADS=20
# Known files uploaded by efclient during the load, one run per file.
KNOWN_FILES=12
DEADLINE=600

need_socket_activate
need haproxy haproxy
need ip iproute2
need ss iproute2
need python3 python3
need unshare util-linux
[ "$(id -u)" -eq 0 ] || skip_all "network namespaces need root"
nsid=efc$$
# What the network below needs: a namespace, its loopback up, a bridge and a veth pair in it.
netns_probe() {
	ip netns add "$nsid-probe" && ip -n "$nsid-probe" link set lo up &&
		ip -n "$nsid-probe" link add br0 type bridge &&
		ip -n "$nsid-probe" link add probe0 type veth peer name probe1
}
netns_probe 2>"$WORK/netns.err"
probe=$?
ip netns del "$nsid-probe" 2>/dev/null
[ "$probe" -eq 0 ] ||
	skip_all "cannot make network namespaces and their links here (no CAP_NET_ADMIN, as in a container): $(head -n 1 "$WORK/netns.err")"

backend=${EFSERVER_CLUSTER_DATABASE:-auto}
if [ "$backend" = auto ]; then
	backend=sqlite
	"$top/efsession" --help 2>/dev/null | grep -q -- --database && backend=postgresql
fi
case $backend in
sqlite) ;;
postgresql) pg_need ;;
*)
	echo "Bail out! EFSERVER_CLUSTER_DATABASE is sqlite, postgresql or auto, not '$backend'"
	exit 1
	;;
esac

if ! make -s -C "$top" efsession efclient efctl efbench >"$WORK/build.log" 2>&1; then
	diag "$WORK/build.log"
	echo "Bail out! cannot build efsession, efclient, efctl and efbench"
	exit 1
fi

state=$WORK/state
mkdir -m 0700 "$state"
# The shared file system's stand-in: a FUSE mount without O_TMPFILE over a local directory.
shared_fs="a local directory (bindfs, Debian package bindfs, is not installed)"
if command -v bindfs >/dev/null 2>&1 && [ -c /dev/fuse ]; then
	mkdir -m 0700 "$WORK/disk"
	if bindfs "$WORK/disk" "$state" 2>"$WORK/bindfs.err"; then
		shared_fs="a FUSE mount (bindfs), no O_TMPFILE"
	else
		shared_fs="a local directory (bindfs cannot mount here: $(head -n 1 "$WORK/bindfs.err"))"
	fi
fi
launchers=()
haproxy_pid=
helpers=()

cluster_cleanup() {
	local pid child ns
	for pid in "${helpers[@]}" $haproxy_pid; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${launchers[@]}"; do
		for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
			kill -KILL "$child" 2>/dev/null
		done
		kill "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	pg_stop
	umount "$state" 2>/dev/null
	for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
		case $ns in "$nsid"-*) ip netns del "$ns" ;; esac
	done
	ip link del "$nsid" 2>/dev/null
	cleanup
}
trap cluster_cleanup EXIT
trap 'exit 1' INT TERM HUP

# What a run that was killed outright left: namespaces named after a process that is gone.
for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
	case $ns in efc[0-9]*-*) ;; *) continue ;; esac
	pid=${ns#efc}
	pid=${pid%%-*}
	kill -0 "$pid" 2>/dev/null && continue
	ip netns del "$ns" 2>/dev/null
	ip link del "efc$pid" 2>/dev/null
done

# A /24 of 10/8 that no route of this machine reaches yet.
for try in $(seq 1 50); do
	net=10.$((RANDOM % 256)).$((RANDOM % 256))
	[ -z "$(ip -4 route show match "$net.0/24" | grep -v '^default')" ] &&
		[ -z "$(ip -4 route show root "$net.0/24")" ] && break
	net=
done
[ -n "$net" ] || {
	echo "Bail out! no free /24 in 10.0.0.0/8"
	exit 1
}

# netns_up NS: a namespace with its loopback up.
netns_up() {
	ip netns add "$1" && ip -n "$1" link set lo up
}

# plug NS ADDRESS: NS joins the bridge as ADDRESS, on its eth0.
plug() {
	local port=${1#"$nsid"-}
	ip -n "$1" link add eth0 type veth peer name "$port" netns "$nsid-sw" &&
		ip -n "$nsid-sw" link set "$port" master br0 up &&
		ip -n "$1" addr add "$2/24" dev eth0 &&
		ip -n "$1" link set eth0 up
}

# The network: the bridge in $nsid-sw, where no firewall of this machine filters
# bridged traffic; the hosts at .1 to .3, the database at .10, this namespace
# (the balancer and the clients) at .254.
hosts=(1 2 3)
db_address=$net.10
net_setup() {
	local k
	netns_up "$nsid-sw" && ip -n "$nsid-sw" link add br0 type bridge && ip -n "$nsid-sw" link set br0 up || return 1
	for k in "${hosts[@]}"; do
		netns_up "$nsid-h$k" && plug "$nsid-h$k" "$net.$k" || return 1
	done
	ip link add "$nsid" type veth peer name uplink netns "$nsid-sw" && ip -n "$nsid-sw" link set uplink master br0 up &&
		ip addr add "$net.254/24" dev "$nsid" && ip link set "$nsid" up || return 1
	if [ "$backend" = postgresql ]; then
		netns_up "$nsid-db" && plug "$nsid-db" "$db_address"
	fi
}
net_setup >"$WORK/net.log" 2>&1 || {
	diag "$WORK/net.log"
	echo "Bail out! cannot set up the network of namespaces"
	exit 1
}

db_opt=()
if [ "$backend" = postgresql ]; then
	pg_start_netns "$nsid-db" "$db_address" -c max_connections=300
	db_opt=(--database "$PG_TCP_URI")
	for k in "${hosts[@]}"; do
		check "host $k reaches the database at $PG_TCP_URI" \
			eval '[ "$(ip netns exec "$nsid-h$k" "$PG_BINDIR/psql" -X -A -t -c "SELECT 1" "$PG_TCP_URI")" = 1 ]'
	done
	# A build offers --database but must also work with it: one session against the database, no request.
	if ! ip netns exec "$nsid-h1" "$top/efsession" --state-dir "$state" --log-target stderr "${db_opt[@]}" \
		</dev/null >/dev/null 2>"$WORK/probe.err"; then
		head -n 5 "$WORK/probe.err" | diag
		echo "Bail out! efsession --database $PG_TCP_URI does not work (EFSERVER_CLUSTER_DATABASE=sqlite runs this suite on SQLite)"
		exit 1
	fi
fi

# on_host K: the command that runs what follows on host K, in its network
# namespace, under its host name $nsid-hK; the process is what follows.
on_host() {
	# shellcheck disable=SC2016
	host_cmd=(ip netns exec "$nsid-h$1" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$nsid-h$1")
}

# Host k: efsession per connection on $net.k:1357, its log in host$k.log. Every client comes
# through the balancer, one source address: --registrations-per-hour would stop the load.
for k in "${hosts[@]}"; do
	log=$WORK/host$k.log
	: >"$log"
	on_host "$k"
	"${host_cmd[@]}" "$SOCKET_ACTIVATE" --listen="$net.$k:1357" --accept --inetd \
		"$top/efsession" --state-dir "$state" --log-target stderr --log-level debug --registrations-per-hour 0 \
		"${db_opt[@]}" 2>"$log" &
	launchers[k]=$!
	while kill -0 "${launchers[k]}" 2>/dev/null && ! grep -q "^Listening on" "$log"; do
		sleep 0.05
	done
	grep -q "^Listening on" "$log" || {
		diag "$log"
		echo "Bail out! host $k did not start"
		exit 1
	}
done

# The balancer, on a free loopback port.
for try in $(seq 1 10); do
	port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
	{
		printf 'global\n\tmaxconn 4096\n'
		printf 'defaults\n\tmode tcp\n\ttimeout connect 5s\n\ttimeout client 120s\n\ttimeout server 120s\n'
		# A host that refuses connections is tried again, then another one is.
		printf '\tretries 3\n\toption redispatch\n'
		printf 'frontend efserver\n\tbind 127.0.0.1:%s\n\tdefault_backend hosts\n' "$port"
		printf 'backend hosts\n\tbalance roundrobin\n'
		for k in "${hosts[@]}"; do
			printf '\tserver h%s %s:1357\n' "$k" "$net.$k"
		done
	} >"$WORK/haproxy.cfg"
	haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
	haproxy_pid=$!
	while kill -0 "$haproxy_pid" 2>/dev/null && [ -z "$(ss -Hltn "sport = :$port")" ]; do
		sleep 0.05
	done
	kill -0 "$haproxy_pid" 2>/dev/null && break
	wait "$haproxy_pid"
	haproxy_pid=
done
[ -n "$haproxy_pid" ] || {
	diag "$WORK/haproxy.log"
	echo "Bail out! haproxy did not start"
	exit 1
}
server=127.0.0.1:$port
echo "# database: $backend${PG_TCP_URI:+ at $PG_TCP_URI}; hosts $net.1-3:1357 in $nsid-h1..3; haproxy on $server"
echo "# state directory: $shared_fs"

# sessions_done: no efsession left on any host (each ends when its client closes).
sessions_done() {
	local i pid
	for i in $(seq 1 200); do
		for pid in "${launchers[@]}"; do
			[ -n "$(cat /proc/"$pid"/task/*/children 2>/dev/null)" ] && sleep 0.05 && continue 2
		done
		return 0
	done
	return 1
}

# requests_of ID NAME: "PID HOST CODE" for every request of the client ID,
# registered as NAME, in the order they were served. The hosts share no
# clock in their logs, but a session's process id is the order it was
# started in: the client waits for each response before its next request.
# Sorted on the ring of process ids, starting after its largest gap, in case
# the ids wrapped round.
requests_of() {
	local k
	for k in "${hosts[@]}"; do
		awk -v host="$k" -v id="$1" -v reg="Registered '$2' as client $1." '
			!match($0, /^efsession\[[0-9]+\] /) { next }
			{ pid = substr($0, 11, RLENGTH - 12) }
			match($0, / Request [0-9]+ \([^)]*\) from [0-9a-f]+,/) {
				split(substr($0, RSTART, RLENGTH), w, " ")
				from = substr(w[length(w)], 1, 32)
				if (from == id) print pid, host, w[2]
				else if (from ~ /^0+$/) zero[pid] = w[2]
				next
			}
			index($0, reg) && (pid in zero) { print pid, host, zero[pid] }' "$WORK/host$k.log"
	done | sort -n | awk -v max="$(cat /proc/sys/kernel/pid_max)" '
		{ line[NR] = $0; pid[NR] = $1 }
		END {
			start = 1; gap = pid[1] + max - pid[NR]
			for (i = 2; i <= NR; i++) if (pid[i] - pid[i - 1] > gap) { gap = pid[i] - pid[i - 1]; start = i }
			for (i = 0; i < NR; i++) print line[(start - 1 + i) % NR + 1]
		}'
}

# 1. The 1025 set with a connection per request: each request is a new
# connection, which the balancer hands to the next host.
for i in 1 2 3; do
	head -c $((RANDOM * 8 + i * 1000)) /dev/urandom >"$WORK/rr$i.bin"
done
mkdir -p "$WORK/rr1025"
run_client "$WORK/rr" -s "$server" -n rr1025 -d "$WORK/rr1025" -c 1025 --connection-per-request -q \
	"$WORK/rr1.bin" "$WORK/rr2.bin" "$WORK/rr3.bin"
check "1025 set, a connection per request, through the balancer: exit 0, every file stored byte for byte" \
	eval 'exit_is 0 && stored "$state" "$WORK/rr1025" "$WORK"/rr[123].bin'
sessions_done
requests_of "$(client_id "$WORK/rr1025")" rr1025 >"$WORK/rr.order"
diag "$WORK/rr.order"
check "the hosts' logs hold its 8 requests in order: register, public key, then a file and its confirmation, three times" \
	[ "$(awk '{ printf "%s ", $3 }' "$WORK/rr.order")" = "1025 1026 1028 1029 1028 1029 1028 1029 " ]
check "consecutive requests were served by different hosts, and every host served some" \
	eval '[ "$(awk "NR > 1 && \$2 == last { n++ } { last = \$2 } END { print n + 0 }" "$WORK/rr.order")" = 0 ] &&
		[ "$(awk "{ print \$2 }" "$WORK/rr.order" | sort -u | wc -l)" = 3 ]'

# 2. The 1100 set, one connection for everything.
mkdir -p "$WORK/one1100"
head -c 123457 /dev/urandom >"$WORK/one1100.bin"
run_client "$WORK/one" -s "$server" -n one1100 -d "$WORK/one1100" -c 1100 -q "$WORK/one1100.bin" "$WORK/rr1.bin"
check "1100 set, one connection, through the balancer: exit 0, every file stored byte for byte" \
	eval 'exit_is 0 && stored "$state" "$WORK/one1100" "$WORK/one1100.bin" "$WORK/rr1.bin"'

# 3. The load. Two efclient clients upload known files beside efbench, one
# run per file, so that what each confirmed can be compared byte for byte;
# registered first, before anything is killed.
known=(1025:--connection-per-request 1100:)
for c in "${known[@]}"; do
	me=$WORK/known${c%%:*}
	mkdir -p "$me/src"
	for i in $(seq 1 "$KNOWN_FILES"); do
		# 1 KiB to 1 MiB, every order of magnitude as likely.
		head -c $((1024 << (RANDOM % 11))) /dev/urandom >"$me/src/k$i.bin"
		head -c $((RANDOM % 1000)) /dev/urandom >>"$me/src/k$i.bin"
	done
	"$EFCLIENT" -s "$server" -n "known${c%%:*}" -d "$me" -c "${c%%:*}" ${c#*:} "$me/src/k1.bin" \
		>"$me/out" 2>"$me/err" || {
		diag "$me/err"
		echo "Bail out! efclient could not register known${c%%:*} before the load"
		exit 1
	}
done

bench_pids=()
for r in "${!BENCH_RUNS[@]}"; do
	# shellcheck disable=SC2086
	"$top/efbench" ${BENCH_RUNS[r]} -n "$CLIENTS_PER_RUN" -j "$CLIENTS_PER_RUN" \
		-u $((CLIENTS_PER_RUN * UPLOADS)) -t 60 "$server" >"$WORK/bench$r.out" 2>"$WORK/bench$r.err" &
	bench_pids[r]=$!
done
known_pids=()
for c in "${known[@]}"; do
	me=$WORK/known${c%%:*}
	(
		for i in $(seq 2 "$KNOWN_FILES"); do
			"$EFCLIENT" -s "$server" -d "$me" -c "${c%%:*}" ${c#*:} -t 60 "$me/src/k$i.bin" >>"$me/out" 2>>"$me/err"
			echo $? >>"$me/status"
		done
	) &
	known_pids+=($!)
	helpers+=($!)
done

# load_running: some efbench run has not finished.
load_running() {
	local pid
	for pid in "${bench_pids[@]}"; do
		kill -0 "$pid" 2>/dev/null && return 0
	done
	return 1
}

# load_started: every efbench run has registered its clients (or ended).
load_started() {
	local r
	for r in "${!BENCH_RUNS[@]}"; do
		grep -q "registered with keys" "$WORK/bench$r.err" || ! kill -0 "${bench_pids[r]}" 2>/dev/null || return 1
	done
}

# stored_count: uploads the hosts have stored so far.
stored_count() {
	cat "$WORK"/host[123].log | grep -c ": Stored "
}

# The killer: once the clients are set up, every 0.2 to 0.9 s, SIGKILL to a
# random efsession of host 2 while the load runs; each victim in kills.
(
	while ! load_started; do sleep 0.1; done
	while load_running; do
		sleep "0.$((RANDOM % 8 + 2))"
		read -ra victims < <(cat /proc/"${launchers[2]}"/task/*/children 2>/dev/null)
		[ ${#victims[@]} -gt 0 ] || continue
		victim=${victims[RANDOM % ${#victims[@]}]}
		kill -KILL "$victim" 2>/dev/null && echo "$victim" >>"$WORK/kills"
	done
) &
helpers+=($!)

# The database restarted once, when about half the uploads are stored.
total=$((${#BENCH_RUNS[@]} * CLIENTS_PER_RUN * UPLOADS))
if [ "$backend" = postgresql ]; then
	(
		while ! load_started; do sleep 0.1; done
		while load_running && [ "$(stored_count)" -lt $((total / 2)) ]; do sleep 0.1; done
		if pg_restart; then echo "restarted after $(stored_count) uploads"; else echo failed; fi >"$WORK/restart"
	) &
	helpers+=($!)
fi

# A hang must not stall the suite: efbench still running at the deadline is stopped.
(
	for i in $(seq 1 $((DEADLINE * 10))); do
		load_running || exit 0
		sleep 0.1
	done
	kill "${bench_pids[@]}"
) >/dev/null 2>&1 &
helpers+=($!)
for r in "${!BENCH_RUNS[@]}"; do
	wait "${bench_pids[r]}"
	echo $? >"$WORK/bench$r.status"
done
wait "${helpers[@]}"
helpers=()
sessions_done
kills=$( [ -f "$WORK/kills" ] && wc -l <"$WORK/kills" || echo 0)

# What the clients saw: efbench's errors (the first ten described on its
# stderr) and the efclient runs that failed.
failures=0
acked=0
: >"$WORK/expect"
for r in "${!BENCH_RUNS[@]}"; do
	status=$(cat "$WORK/bench$r.status")
	errors=$(awk '$1 == "errors:" { print $2 }' "$WORK/bench$r.out")
	check "efbench ${BENCH_RUNS[r]}: it ran to its report (exit $status, ${errors:-no} errors)" \
		eval '[ "$status" -le 1 ] && [ -n "$errors" ]'
	[ -s "$WORK/bench$r.err" ] && diag "$WORK/bench$r.err"
	errors=${errors:-$((CLIENTS_PER_RUN * UPLOADS))}
	failures=$((failures + errors))
	acked=$((acked + CLIENTS_PER_RUN * UPLOADS - errors))
	pid=${bench_pids[r]}
	size=$(awk '$1 == "operations:" { print $5 }' "$WORK/bench$r.out")
	failed=$(sed -n 's/^efbench: operation \([0-9]*\): .*/\1/p' "$WORK/bench$r.err" | paste -sd, -)
	# One line per run for the check below: the failed operations are known when efbench described them all.
	complete=0
	[ "$errors" -le 10 ] && complete=1
	echo "bench efbench-$pid- ${size:-0} $((CLIENTS_PER_RUN * UPLOADS)) $CLIENTS_PER_RUN $errors $complete ${failed:--}" \
		>>"$WORK/expect"
done
for c in "${known[@]}"; do
	me=$WORK/known${c%%:*}
	bad=$(grep -cv '^0$' "$me/status")
	failures=$((failures + bad))
	confirmed=$(grep -c 'checksum confirmed' "$me/out")
	acked=$((acked + confirmed))
	check "efclient, ${c%%:*} set${c#*:}: every run confirmed its file or failed ($confirmed confirmed, $bad failed)" \
		[ $((confirmed + bad)) -eq "$KNOWN_FILES" ]
	sed -n 's/^\([^:]*\): stored .*checksum confirmed$/\1/p' "$me/out" | while read -r f; do
		echo "known known${c%%:*} $me/src/$f"
	done >>"$WORK/expect"
done
echo "# $failures operations failed as clients saw them"
check "efsession processes of host 2 were killed during the load ($kills)" [ "$kills" -gt 0 ]

# A failure a client saw is a connection cut by a kill (or, with a database
# server, a 2107 while it restarted), never a wrong answer: efbench's errors
# as it describes them, efclient's by its exit status (69: the network).
cut='no response: (the server closed the connection|Connection reset by peer)|response [0-9]+ cut short|sending: (Connection reset by peer|Broken pipe)'
bad_errors() {
	local c
	{ if [ "$backend" = postgresql ]; then cat "$WORK"/bench*.err | grep -v 'answered 2107'; else cat "$WORK"/bench*.err; fi; } |
		grep '^efbench: operation' | grep -vE "$cut"
	for c in "${known[@]}"; do
		me=$WORK/known${c%%:*}
		if [ "$backend" = postgresql ] && grep -q 2107 "$me/err"; then
			grep -vxE '0|69|1' "$me/status"
		else
			grep -vxE '0|69' "$me/status"
		fi | sed "s/^/efclient known${c%%:*} exited /"
	done
}
cut_why="a connection cut short"
[ "$backend" = postgresql ] && cut_why="$cut_why, or a 2107 while the database restarted"
check "every failure the clients saw was $cut_why" eval '[ -z "$(bad_errors | tee "$WORK/bad")" ]'
[ -s "$WORK/bad" ] && diag "$WORK/bad"
if [ "$backend" = sqlite ]; then
	check "no more failures than kills: a kill cuts one operation, nothing else fails" [ "$failures" -le "$kills" ]
	skip "the database restarted mid-run" "the hosts share one SQLite file, there is no database server to restart"
else
	check "the database restarted mid-run ($(cat "$WORK/restart" 2>/dev/null))" grep -q "^restarted" "$WORK/restart"
fi
for k in "${hosts[@]}"; do
	n=$(grep -c ": Stored " "$WORK/host$k.log")
	check "host $k stored a share of the uploads ($n)" [ "$n" -ge $((total / 10)) ]
done
if [ "$backend" = sqlite ]; then
	check "no error in the hosts' logs: no SQLITE_BUSY, no lock across the namespaces" \
		eval '! grep -hiE " (err|crit|alert|emerg):|busy|locked" "$WORK"/host[123].log | head -5 | tee "$WORK/errlines" | grep -q .'
	[ -s "$WORK/errlines" ] && diag "$WORK/errlines"
fi

# The hosts stop; what they left is checked.
kill "$haproxy_pid"
for k in "${hosts[@]}"; do
	kill "${launchers[k]}" 2>/dev/null
	wait "${launchers[k]}" 2>/dev/null
done
launchers=()

ctl() {
	"$top/efctl" --state-dir "$state" "${db_opt[@]}" "$@"
}
check "efctl verify: every stored file matches its record" \
	eval 'ctl verify >"$WORK/verify.out" 2>&1 && grep -q ": 0 problems\\.$" "$WORK/verify.out"'
diag "$WORK/verify.out"
ctl files --json >"$WORK/files.json" 2>"$WORK/files.err" || diag "$WORK/files.err"

# Every acknowledged upload is in the database, confirmed, and its file holds
# what the client sent. efbench sends the same ciphertext for every upload of
# a client, so its files must be byte-identical to each other, of the size
# it sent, and each matched the checksum efbench worked out from its own
# plaintext; efclient's files are compared with the originals.
python3 - "$WORK/files.json" "$state" "$WORK/expect" >"$WORK/files.check" <<'EOF'
import collections, hashlib, json, os, sys

rows = json.load(open(sys.argv[1]))
state, expect = sys.argv[2], sys.argv[3]
confirmed = {(r["client"], r["file_name"]): r for r in rows if r["verified"] and r["status"] == "stored"}
by_client = collections.defaultdict(list)
for (client, _), r in confirmed.items():
    by_client[client].append(r)


def digest(path):
    """SHA-256 of a file, read in pieces; None if it is not there."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for piece in iter(lambda: f.read(1 << 20), b""):
                h.update(piece)
    except FileNotFoundError:
        return None
    return h.digest()


acked = lost = 0
for line in open(expect):
    f = line.split()
    if f[0] == "known":
        client, src = f[1], f[2]
        acked += 1
        r = confirmed.get((client, os.path.basename(src)))
        if not r or digest(os.path.join(state, r["path"])) != digest(src):
            lost += 1
            print("%s %s: %s" % ("DIFFERS" if r else "LOST", client, src))
        continue
    prefix, size, count, nclients, errors, complete = f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5]), f[6] == "1"
    failed = set() if f[7] == "-" else {int(x) for x in f[7].split(",")}
    clients = {c.rsplit("-", 1)[1]: c for c in by_client if c.startswith(prefix)}
    acked += count - errors
    good = bad = 0
    for c in clients.values():
        # Every upload of a client carried the same bytes: what most of its files hold.
        sums = {r["file_name"]: digest(os.path.join(state, r["path"])) for r in by_client[c]}
        common = collections.Counter(v for v in sums.values() if v).most_common(1)
        for r in by_client[c]:
            if r["size"] == size and sums[r["file_name"]] and sums[r["file_name"]] == common[0][0]:
                good += 1
                continue
            print("%s %s: %s" % ("DIFFERS" if sums[r["file_name"]] else "LOST", c, r["path"]))
            bad += 1
    if complete:
        for op in sorted(set(range(count)) - failed):
            if (clients.get(str(op % nclients)), "efbench-%d.bin" % op) not in confirmed:
                bad += 1
                print("LOST %s%d: efbench-%d.bin, acknowledged" % (prefix, op % nclients, op))
    if good < count - errors:
        print("LOST %s*: %d intact confirmed files, %d uploads acknowledged" % (prefix, good, count - errors))
    lost += max(bad, count - errors - good)
print("acknowledged %d lost %d" % (acked, lost))
EOF
grep -v '^acknowledged' "$WORK/files.check" | diag
read -r _ checked _ lost < <(grep '^acknowledged' "$WORK/files.check")
check "every acknowledged upload ($acked) is confirmed in the database, its file byte-identical to what was sent" \
	eval '[ "${checked:-0}" -eq "$acked" ] && [ "${lost:-1}" -eq 0 ]'

# tmp/: a session killed while its file had a name there leaves the name
# (on a file system without O_TMPFILE, every killed upload does), carrying
# its host. efctl gc on each host removes its own host's, none of another's.
# tmp_of K: how many names of host K are in tmp/.
tmp_of() {
	find "$state/tmp" -mindepth 1 -name "upload-$nsid-h$1-*" | wc -l
}
ctl_on() {
	on_host "$1"
	"${host_cmd[@]}" "$top/efctl" --state-dir "$state" "${db_opt[@]}" "${@:2}"
}
leftover=$(find "$state/tmp" -mindepth 1 | wc -l)
for k in 1 3 2; do
	mine=$(tmp_of "$k")
	others=$(($(find "$state/tmp" -mindepth 1 | wc -l) - mine))
	ctl_on "$k" gc --force >"$WORK/gc$k.out" 2>&1
	diag "$WORK/gc$k.out"
	check "efctl gc on host $k removed its $mine names in tmp/ and left the $others of other hosts" \
		eval '[ "$(tmp_of "$k")" = 0 ] && [ "$(grep -c "temporary file of a session" "$WORK/gc$k.out")" -eq "$mine" ] &&
			[ "$(find "$state/tmp" -mindepth 1 | wc -l)" -eq "$others" ] &&
			{ [ "$others" -eq 0 ] || grep -q "^$others temporary files\? of other hosts left alone" "$WORK/gc$k.out"; }'
	check "efctl gc on host $k found nothing else to clean: no row without its file, no stray directory" \
		eval '! grep -v "temporary file" "$WORK/gc$k.out" | grep -q "^removed "'
done
check "tmp/ empty after efctl gc on every host ($leftover names of killed sessions were left)" \
	eval '[ -z "$(find "$state/tmp" -mindepth 1)" ]'
echo "# cluster: $backend, $total efbench uploads and $((2 * KNOWN_FILES)) efclient uploads; $acked acknowledged; $kills kills; $failures failures seen by clients; ${lost:-?} files lost"
done_testing
