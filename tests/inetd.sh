#!/bin/bash
# efsession under a real inetd (Debian's openbsd-inetd), from an inetd.conf
# line like the one in efserver(8), on a loopback port: efclient uploads
# through it; fd 2 of efsession, the connection under inetd, is turned to
# /dev/null so not one log byte reaches the client, even at debug level;
# and the log goes to syslog. /dev/log is a listener of the test's own, in a
# private mount namespace, so the host's /dev is left alone.
. "${top_srcdir:-.}/tests/lib.sh"

INETD=$(command -v inetd || echo /usr/sbin/inetd)
SYSLOGD=$top_builddir/tests/deploy-syslogd
[ -x "$INETD" ] || skip_all "inetd is not installed (Debian package openbsd-inetd)"
need pgrep procps
[ "$(id -u)" -eq 0 ] || skip_all "a private /dev/log needs root (unshare -m)"
unshare -m true 2>/dev/null || skip_all "unshare -m is not permitted here"

INETD_PID=
stop_inetd() {
	if [ -n "$INETD_PID" ]; then
		kill "$INETD_PID" 2>/dev/null
		wait "$INETD_PID" 2>/dev/null
		INETD_PID=
	fi
}
trap 'stop_inetd; cleanup' EXIT

abs() { (cd "$(dirname "$1")" && echo "$PWD/$(basename "$1")"); }
EFSESSION=$(abs "$EFSESSION")
SYSLOGD=$(abs "$SYSLOGD")
state=$WORK/state
syslog=$WORK/syslog
mkdir -p "$state" "$WORK/dev" "$WORK/alice" "$WORK/files"
chmod 0700 "$state"
: >"$syslog"

# The mount namespace: a /dev of our own with the host's devices bound in,
# and the syslog listener at /dev/log; then inetd, which its children inherit.
cat >"$WORK/ns.sh" <<EOF
set -e
mount --bind /dev "$WORK/dev"
mount -t tmpfs -o mode=0755 tmpfs /dev
for node in null zero full random urandom tty; do
	[ -e "$WORK/dev/\$node" ] || continue
	touch /dev/\$node
	mount --bind "$WORK/dev/\$node" /dev/\$node
done
ln -s /proc/self/fd /dev/fd
"$SYSLOGD" /dev/log "$syslog" &
for i in \$(seq 1 100); do [ -S /dev/log ] && break; sleep 0.05; done
exec "$INETD" -i "$WORK/inetd.conf"
EOF

# start_inetd: on a free loopback port ($PORT), efsession at debug level.
start_inetd() {
	local try i
	for try in 1 2 3 4 5 6 7 8 9 10; do
		PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		# What an attempt on a port found taken logged is not this run's.
		: >"$syslog"
		echo "127.0.0.1:$PORT stream tcp4 nowait root $EFSESSION efsession --state-dir $state --debug" \
			>"$WORK/inetd.conf"
		unshare -m --propagation private bash "$WORK/ns.sh" 2>"$WORK/inetd.log" &
		INETD_PID=$!
		for i in $(seq 1 100); do
			kill -0 "$INETD_PID" 2>/dev/null || break
			if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
				return 0
			fi
			sleep 0.1
		done
		stop_inetd
	done
	echo "Bail out! inetd did not listen on a free loopback port"
	diag "$WORK/inetd.log"
	exit 1
}

start_inetd
pass "inetd listens on 127.0.0.1:$PORT with the line: $(cat "$WORK/inetd.conf")"

# One connection held open: what efsession's descriptors are under inetd.
# First let the session of start_inetd's probe connection end, so that the one found is ours.
for _ in $(seq 1 100); do
	pgrep -P "$INETD_PID" -x efsession >/dev/null || break
	sleep 0.05
done
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
pid=
for _ in $(seq 1 100); do
	pid=$(pgrep -P "$INETD_PID" -x efsession | head -1)
	[ -n "$pid" ] && break
	sleep 0.05
done
if [ -n "$pid" ]; then
	# Found as soon as inetd forks: give it until its set-up is done (bounded), then look.
	for _ in $(seq 1 100); do
		[ "$(readlink /proc/"$pid"/fd/2)" = /dev/null ] && break
		sleep 0.05
	done
	check "efsession's standard input is the connection" \
		test "$(readlink /proc/"$pid"/fd/0)" = "$(readlink /proc/"$pid"/fd/1)"
	check "efsession's fd 2, the connection too under inetd, now points at /dev/null" \
		test "$(readlink /proc/"$pid"/fd/2)" = /dev/null
else
	fail "inetd started efsession for a connection"
fi

# A register request, then an unknown code: both logged at length (debug
# level, hex dumps), answered with 2100 then 2107, and the connection closed.
{
	printf '\0%.0s' $(seq 16)
	printf '\x03\x01\x04\xff\x00\x00\x00carol'
	printf '\0%.0s' $(seq 250)
	printf '\0%.0s' $(seq 16)
	printf '\x03\x39\x05\x00\x00\x00\x00'
} >&3
timeout 10 cat <&3 >"$WORK/reply"
exec 3>&-
reply=$(od -An -tx1 -v "$WORK/reply" | tr -d ' \n')
check "the client received exactly 2100 with its id and 2107, 30 bytes ($(stat -c %s "$WORK/reply"))" \
	test "$(stat -c %s "$WORK/reply")" -eq 30 -a "${reply:0:14}" = 03340810000000 -a "${reply:46}" = 033b0800000000

# efclient uploads through inetd.
head -c 1 /dev/urandom >"$WORK/files/one-byte"
head -c 4096 /dev/urandom >"$WORK/files/annual report.pdf"
head -c $((1024 * 1024 + 5)) /dev/urandom >"$WORK/files/odd.bin"
if out=$(timeout 120 "$(abs "$EFCLIENT")" -q --server "127.0.0.1:$PORT" --name alice --dir "$WORK/alice" \
	"$WORK/files/one-byte" "$WORK/files/annual report.pdf" "$WORK/files/odd.bin" 2>&1); then
	pass "efclient registers and uploads 3 files through inetd"
else
	fail "efclient registers and uploads 3 files through inetd"
	echo "$out" | sed 's/^/# /'
fi
id=$(sed -n 2p "$WORK/alice/me.info" 2>/dev/null | tr 'A-F' 'a-f')
same=0
for f in "$WORK"/files/*; do
	cmp -s "$f" "$state/files/$id/$(basename "$f")" && same=$((same + 1))
done
check "every file is stored byte for byte ($same of 3)" test -n "$id" -a "$same" -eq 3

# Syslog got the log: facility daemon, efsession's identity, the client named.
for _ in $(seq 1 50); do
	grep -q "Stored 'odd.bin'" "$syslog" && break
	sleep 0.1
done
check "syslog has \"Stored 'annual report.pdf' for 'alice': 4.0 KiB, checksum N.\" at daemon.info" \
	grep -qE "^<30>.* efsession\[[0-9]+\]: 127\.0\.0\.1:[0-9]+ alice: Stored 'annual report\.pdf' for 'alice': 4\.0 KiB, checksum [0-9]+\.\$" "$syslog"
check "syslog has the refused unknown code at daemon.warning" \
	grep -qE '^<28>.* efsession\[[0-9]+\]: .*Malformed request 1337 \(unknown request\): unknown request code' "$syslog"
check "syslog has debug lines with hex dumps (daemon.debug)" grep -qE '^<31>.* efsession\[[0-9]+\]: .*request header' "$syslog"
inetd_errors=$(grep -E '^<2[4-7]>.* inetd\[[0-9]+\]:' "$syslog")
check "inetd logged no error of its own" test -z "$inetd_errors"
[ -z "$inetd_errors" ] || echo "$inetd_errors" | sed 's/^/# /'
check "nothing was written on inetd's stderr" test ! -s "$WORK/inetd.log"
echo "# $(wc -l <"$syslog") syslog lines, for example:"
grep -m3 'alice: Stored' "$syslog" | sed 's/^/#   /'
done_testing
