#!/bin/bash
# Run by tests/ci/nspawn.sh inside a booted Debian 12 container, with systemd
# as PID 1, as the oneshot efserver-boot-test.service. It runs the commands of
# README.md's "Deploying" section as written, as root in a copy of the
# distribution's files: build, install, create the user and the state
# directory, enable efserver.socket, then the upload and efctl command it
# shows; then it looks closer and uploads more over 127.0.0.1:1357; then the
# limits: a burst of 5,000 connections leaves the socket active and a client
# served (the same burst under systemd's default trigger limit stops it),
# and slow holders from many loopback addresses, fewer and more than
# MaxConnections=, are cut at the idle timeout while a normal client is
# served. Results go to /efserver-results/tap as unnumbered TAP lines
# ("ok - ...", "not ok - ...", "# ..."), then "done".
set -u
results=/efserver-results/tap
state=/var/lib/efserver
: >"$results"

pass() { echo "ok - $*" >>"$results"; }
fail() { echo "not ok - $*" >>"$results"; }
note() { sed 's/^/# /' >>"$results"; }
check() {
	local desc=$1
	shift
	if "$@"; then pass "$desc"; else fail "$desc"; fi
}
not() { ! "$@"; }
finish() {
	echo done >>"$results"
	exit 0
}

# README.md's commands, each line as written, stopping at the first that fails.
src=/root/efserver
cp -a /efserver-test/src "$src" && cd "$src" || finish
if bash -e /efserver-test/deploy.sh >/root/deploy.log 2>&1; then
	pass "README.md's deployment commands succeed as written: $(paste -sd ';' /efserver-test/deploy.sh)"
else
	fail "README.md's deployment commands succeed as written"
	tail -30 /root/deploy.log | note
fi
check "make install put efsession and efctl in /usr/local/sbin, efclient in /usr/local/bin" \
	test -x /usr/local/sbin/efsession -a -x /usr/local/sbin/efctl -a -x /usr/local/bin/efclient
if bash -e /efserver-test/try.sh >/root/try.log 2>&1; then
	pass "README.md's commands to see it work succeed as written: $(paste -sd ';' /efserver-test/try.sh)"
else
	fail "README.md's commands to see it work succeed as written"
fi
check "efclient confirmed README.md in one line" grep -qx "README.md: stored on 127.0.0.1:1357 for alice, .*, checksum confirmed" /root/try.log
check "efctl files, with its default state directory, lists alice's README.md" grep -qE "^alice +README\.md " /root/try.log
note </root/try.log
cd / || finish
uid=$(id -u efserver 2>/dev/null)
check "systemd-sysusers created the system user efserver (uid ${uid:-none})" test -n "$uid" -a "${uid:-1000}" -lt 1000
check "the service user has no login shell" test "$(getent passwd efserver | cut -d: -f7)" = /usr/sbin/nologin

units=$(systemctl show -P FragmentPath efserver.socket efserver@probe.service | sed 's/@probe/@/')
out=$(systemd-analyze verify $units 2>&1)
check "systemd-analyze verify $(echo $units) prints nothing (their man pages found)" test -z "$out"
[ -z "$out" ] || note <<<"$out"

security=$(systemd-analyze security --no-pager efserver@probe.service 2>&1)
exposure=$(sed -n 's/.*Overall exposure level for efserver@probe.service: \([0-9.]*\).*/\1/p' <<<"$security")
echo "exposure ${exposure:-none}" >>"$results"
grep -v '^✓' <<<"$security" | note

systemctl enable --now efserver.socket >/dev/null 2>&1
check "systemctl enable --now efserver.socket: enabled" test "$(systemctl is-enabled efserver.socket)" = enabled
check "efserver.socket is active" systemctl -q is-active efserver.socket
check "StateDirectory= made $state 0700, owned by efserver" \
	test "$(stat -c '%a %U' "$state" 2>/dev/null)" = "700 efserver"

# A connection held open: its efsession runs sandboxed, and answers on the
# socket systemd accepted, although it has no network of its own.
if exec 3<>/dev/tcp/127.0.0.1/1357; then
	unit=
	pid=0
	for _ in $(seq 1 100); do
		unit=$(systemctl list-units --plain --no-legend --state=running 'efserver@*.service' | awk 'NR == 1 { print $1 }')
		[ -n "$unit" ] && pid=$(systemctl show -P MainPID "$unit")
		# Until the exec, MainPID is systemd's child still setting up the sandbox.
		[ "${pid:-0}" -gt 0 ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = efsession ] && break
		pid=0
		sleep 0.1
	done
	if [ "$pid" -gt 0 ]; then
		pass "a connection to 127.0.0.1:1357 started $unit"
		check "efsession runs as efserver" \
			grep -qE "^Uid:\s+$uid\s+$uid\s+$uid\s+$uid$" /proc/"$pid"/status
		check "efsession is in a network namespace of its own (PrivateNetwork=yes)" \
			test "$(readlink /proc/"$pid"/ns/net)" != "$(readlink /proc/1/ns/net)"
		check "efsession has no capabilities" grep -qE '^CapEff:\s+0+$' /proc/"$pid"/status
		check "efsession cannot gain privileges" grep -qE '^NoNewPrivs:\s+1$' /proc/"$pid"/status
		check "efsession runs under a seccomp filter" grep -qE '^Seccomp:\s+2$' /proc/"$pid"/status
		# A 1025 register request: a zero id, version 3, code 1025, name[255] "probe".
		printf '\0%.0s' $(seq 16) >&3
		printf '\x03\x01\x04\xff\x00\x00\x00probe' >&3
		printf '\0%.0s' $(seq 250) >&3
		# All 23 bytes of 2100 are read, so that closing does not reset the connection.
		reply=$(timeout 10 head -c 23 <&3 | od -An -tx1 | tr -d ' \n' | cut -c1-14)
		check "the accepted socket works in the private namespace: 1025 answered with 2100 (got $reply)" \
			test "$reply" = 03340810000000
	else
		fail "a connection to 127.0.0.1:1357 started an efserver@ instance"
	fi
	exec 3>&-
else
	fail "connect to 127.0.0.1:1357"
fi

# Uploads with efclient, both code sets, files of several sizes.
upload() {
	local desc=$1 out
	shift
	if out=$(timeout 120 efclient -q "$@" 2>&1); then
		pass "$desc"
	else
		fail "$desc"
		note <<<"$out"
	fi
}
mkdir -p /root/dana /root/bob /root/files
head -c 1 /dev/urandom >/root/files/one-byte
head -c 4096 /dev/urandom >"/root/files/annual report.pdf"
head -c $((1024 * 1024 + 7)) /dev/urandom >/root/files/odd.bin
head -c $((3 * 1024 * 1024)) /dev/urandom >/root/files/big.tar
files=(/root/files/one-byte "/root/files/annual report.pdf" /root/files/odd.bin /root/files/big.tar)
upload "efclient (1025 set) registers dana and uploads ${#files[@]} files over 127.0.0.1:1357" \
	--server 127.0.0.1:1357 --name dana --dir /root/dana "${files[@]}"
upload "efclient (1100 set) registers bob and uploads ${#files[@]} files" \
	--code-set 1100 --server 127.0.0.1:1357 --name bob --dir /root/bob "${files[@]}"
upload "efclient reconnects as dana, one connection per request, and uploads again" \
	--connection-per-request --server 127.0.0.1:1357 --dir /root/dana /root/files/odd.bin

for who in dana bob; do
	id=$(sed -n 2p /root/$who/me.info 2>/dev/null | tr 'A-F' 'a-f')
	dir=$state/files/$id
	same=0
	for f in "${files[@]}"; do
		cmp -s "$f" "$dir/$(basename "$f")" && same=$((same + 1))
	done
	check "every file of $who is stored byte for byte under $dir ($same of ${#files[@]})" \
		test -n "$id" -a "$same" -eq ${#files[@]}
	check "$who's files are 0600, owned by efserver" \
		test "$(stat -c '%a %U' "$dir"/* | sort -u)" = "600 efserver"
done

# Encryption at rest as efserver(8) describes it: the key a credential, the
# option through EFSESSION_OPTIONS, both in a drop-in.
install -d -m 0700 /etc/efserver
(umask 077 && head -c 32 /dev/urandom >/etc/efserver/storage.key)
mkdir -p /etc/systemd/system/efserver@.service.d
printf '[Service]\nLoadCredential=efserver-storage.key:/etc/efserver/storage.key\nEnvironment=EFSESSION_OPTIONS=--encrypt-at-rest\n' \
	>/etc/systemd/system/efserver@.service.d/encrypt.conf
systemctl daemon-reload
mkdir -p /root/carol
upload "with encryption at rest, efclient registers carol and uploads ${#files[@]} files" \
	--server 127.0.0.1:1357 --name carol --dir /root/carol "${files[@]}"
carol=$(sed -n 2p /root/carol/me.info 2>/dev/null | tr 'A-F' 'a-f')
stored=$state/files/$carol/odd.bin
decrypts_to() {
	efctl --state-dir "$state" --storage-key-file /etc/efserver/storage.key decrypt "$1" -o /root/decrypted &&
		cmp -s /root/decrypted "$2"
}
check "carol's odd.bin is stored" test -n "$carol" -a -s "$stored"
check "carol's odd.bin is not stored as its plaintext" not cmp -s /root/files/odd.bin "$stored"
check "efctl decrypt gives back carol's odd.bin byte for byte" decrypts_to "$stored" /root/files/odd.bin
rm /etc/systemd/system/efserver@.service.d/encrypt.conf && systemctl daemon-reload

for _ in $(seq 1 100); do
	[ -z "$(systemctl list-units --plain --no-legend --state=active 'efserver@*.service')" ] && break
	sleep 0.1
done
failed=$(systemctl list-units --plain --no-legend --all --state=failed 'efserver*')
check "no efserver unit failed (every efsession exited 0)" test -z "$failed"
[ -z "$failed" ] || note <<<"$failed"

# The journal: efsession's own structured entries, nothing through stderr.
journalctl --sync 2>/dev/null
dana=$(sed -n 2p /root/dana/me.info | tr 'A-F' 'a-f')
stored=$(journalctl -q --no-pager -o export SYSLOG_IDENTIFIER=efsession |
	awk -v RS= "/(^|\n)MESSAGE=Stored 'annual report\\.pdf' for 'dana': 4\\.0 KiB, checksum [0-9]+\\.\n/")
check "journalctl shows \"Stored 'annual report.pdf' for 'dana': 4.0 KiB, checksum N.\"" test -n "$stored"
for field in "PRIORITY=6" "PEER=127.0.0.1:" "CLIENT_ID=$dana" "CLIENT_NAME=dana" "REQUEST_CODE=1028" \
	"FILE_NAME=annual report.pdf" "FILE_SIZE=4096" "CODE_FILE=src/session.c" "CODE_LINE=" \
	"CODE_FUNC=handle_file" "_SYSTEMD_UNIT=efserver@" "_TRANSPORT=journal"; do
	check "that entry carries $field" grep -q "^$field" <<<"$stored"
done
stray=$(journalctl -q --no-pager -o cat _TRANSPORT=stdout SYSLOG_IDENTIFIER=efsession)
check "efsession wrote nothing to its stderr stream" test -z "$stray"
journalctl -q --no-pager -o short SYSLOG_IDENTIFIER=efsession | tail -6 | note

# The limits under systemd (efserver(8), "Limits"): a burst, slow holders, what a session costs.
driver=$src/tests/drive-robust
if ! make -s -C "$src" tests/drive-robust >/root/drive-build.log 2>&1; then
	fail "tests/drive-robust builds in the deployed tree"
	tail -20 /root/drive-build.log | note
	finish
fi
check "efserver.socket has no trigger limit (TriggerLimitIntervalSec=0)" \
	test "$(systemctl show -P TriggerLimitIntervalUSec efserver.socket)" = 0
check "efserver.socket bounds the sessions: MaxConnections=128, MaxConnectionsPerSource=8" \
	test "$(systemctl show -P MaxConnections efserver.socket) $(systemctl show -P MaxConnectionsPerSource efserver.socket)" = "128 8"
echo "# efserver@.service: RuntimeMaxSec=$(systemctl show -P RuntimeMaxUSec efserver@probe.service)" >>"$results"

# drive NAME ARGS...: tests/drive-robust, its TAP lines folded into ours.
drive() {
	local name=$1 line
	shift
	"$driver" "$@" >"/root/$name.tap" 2>"/root/$name.err"
	while IFS= read -r line; do
		case $line in
		"ok "*) pass "$name: ${line#ok * - }" ;;
		"not ok "*) fail "$name: ${line#not ok * - }" ;;
		"Bail out!"*) fail "$name: $line" ;;
		"#"*) echo "$line" >>"$results" ;;
		esac
	done <"/root/$name.tap"
	grep -q '^1\.\.' "/root/$name.tap" || { fail "$name: the driver finished"; tail -5 "/root/$name.err" | note; }
}
# sessions_gone: until no efserver@ instance runs.
sessions_gone() {
	for _ in $(seq 1 300); do
		[ -z "$(systemctl list-units --plain --no-legend --state=active,activating 'efserver@*.service')" ] && return 0
		sleep 0.2
	done
	return 1
}
dropped() {
	journalctl -q --no-pager -o cat -u efserver.socket --since "$1" | grep -c "Too many incoming connections"
}
# drained: until the listening socket's queue of connections not yet accepted (/proc/net/tcp6, port 1357) is empty
# and no session runs.
drained() {
	local q
	for _ in $(seq 1 300); do
		q=$(awk '$2 ~ /:054D$/ && $4 == "0A" { split($5, a, ":"); print a[2]; exit }' /proc/net/tcp6 /proc/net/tcp)
		[ $((16#${q:-0})) -eq 0 ] && sessions_gone && return 0
		sleep 0.2
	done
	return 1
}

since=$(date '+%Y-%m-%d %H:%M:%S')
drive burst burst 127.0.0.1 1357 5000
burst_end=$(date +%s.%N)
drained
echo "# systemd took $(awk -v a="$burst_end" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s more to accept them all, and turned away $(dropped "$since") of them (MaxConnections=, MaxConnectionsPerSource=)" >>"$results"
check "after the burst efserver.socket is still active ($(systemctl show -P Result efserver.socket))" \
	systemctl -q is-active efserver.socket
mkdir -p /root/erin
upload "after the burst, efclient registers erin and uploads" --server 127.0.0.1:1357 --name erin --dir /root/erin \
	/root/files/one-byte

# The same burst against a socket with a trigger limit, as systemd 252 has by default: it stops.
mkdir -p /etc/systemd/system/efserver.socket.d
printf '[Socket]\nTriggerLimitIntervalSec=2s\nTriggerLimitBurst=200\n' >/etc/systemd/system/efserver.socket.d/trigger.conf
systemctl daemon-reload && systemctl restart efserver.socket
"$driver" burst 127.0.0.1 1357 5000 >/dev/null 2>&1
drained
result=$(systemctl show -P Result efserver.socket)
check "with systemd's default trigger limit instead, the same burst stops the socket (Result=$result)" \
	test "$result" = trigger-limit-hit
rm /etc/systemd/system/efserver.socket.d/trigger.conf
systemctl daemon-reload && systemctl reset-failed efserver.socket && systemctl restart efserver.socket
check "without it again, efserver.socket is active" systemctl -q is-active efserver.socket
drained

# Slow holders, with an idle timeout of 10 s to keep the run short.
mkdir -p /etc/systemd/system/efserver@.service.d
printf '[Service]\nEnvironment="EFSESSION_OPTIONS=--idle-timeout 10"\n' >/etc/systemd/system/efserver@.service.d/idle.conf
systemctl daemon-reload
# memory_now: the efsession processes running, their private memory (KiB), and their units' memory by
# their cgroups (KiB, with the kernel's memory for their sockets and namespaces).
memory_now() {
	local priv=0 cg=0 n=0 d u m
	for d in /proc/[0-9]*; do
		[ "$(cat "$d/comm" 2>/dev/null)" = efsession ] || continue
		priv=$((priv + $(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s + 0}' "$d/smaps_rollup" 2>/dev/null)))
		n=$((n + 1))
	done
	for u in $(systemctl list-units --plain --no-legend --state=active 'efserver@*.service' | awk '{ print $1 }'); do
		m=$(systemctl show -P MemoryCurrent "$u")
		case $m in *[!0-9]* | "") ;; *) cg=$((cg + m)) ;; esac
	done
	echo "$n $priv $((cg / 1024))"
}
for phase in "100 100" "200 25"; do
	set -- $phase
	since=$(date '+%Y-%m-%d %H:%M:%S')
	# The margin: systemd starts the sessions one after the other, each in its sandbox.
	drive "hold-$1" hold 127.0.0.1 1357 "$1" "$2" 10 8 15 &
	holders=$!
	most=0 most_priv=0 most_cg=0
	while kill -0 $holders 2>/dev/null; do
		read -r n priv cg <<<"$(memory_now)"
		[ "$n" -gt "$most" ] && most=$n most_priv=$priv most_cg=$cg
		sleep 0.5
	done
	wait $holders
	if [ "$most_cg" -gt 0 ]; then
		cgroup="$((most_cg / (most > 0 ? most : 1))) KiB per unit by its cgroup ($((most_cg / 1024)) MiB in all)"
	else
		cgroup="the units' memory not accounted by their cgroups here"
	fi
	echo "# $1 holders from $2 addresses: at most $most sessions at once, $((most_priv / (most > 0 ? most : 1))) KiB private memory each, $cgroup" >>"$results"
	echo "# systemd turned away $(dropped "$since") connections of this run" >>"$results"
	drained
done
rm /etc/systemd/system/efserver@.service.d/idle.conf && systemctl daemon-reload
journalctl --sync 2>/dev/null
for limit in max-refusals min-rate; do
	check "the journal holds refusals with LIMIT=$limit" \
		test -n "$(journalctl -q --no-pager -o cat LIMIT=$limit SYSLOG_IDENTIFIER=efsession | head -1)"
done
journalctl -q --no-pager -o cat LIMIT=min-rate SYSLOG_IDENTIFIER=efsession | head -1 | note
systemctl reset-failed 'efserver@*' 2>/dev/null

finish
