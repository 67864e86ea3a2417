#!/bin/bash
# A failure of the server is logged in the words of the layer that failed,
# never another's: an upload whose fsync fails with EIO (injected by strace
# into efsession) logs the disk's "Input/output error" and no SQLite
# message; one whose database commit cannot sync logs SQLite's "disk I/O
# error". Both answer 2107, close, exit 111 and keep nothing. (A database
# too new for this efsession is proved by tests/replay/state-newer-schema.replay.)
. "${top_srcdir:-.}/tests/lib.sh"

need strace strace
[ -x "$REPLAY" ] || skip_all "tests/replay-run is not built"
efs=$(cd "$(dirname "$EFSESSION")" && pwd)/efsession
# Injection needs ptrace; a container may forbid it.
strace -f -qq -o /dev/null -e trace=none true 2>/dev/null || skip_all "strace cannot trace here (no ptrace)"

# inject SYSCALL NAME LOG-LINE: an upload by the replay fixture's alice while every SYSCALL fails with EIO.
inject() {
	local syscall=$1 name=$2 line=$3 dir=$WORK/$2
	mkdir -p "$dir"
	# LeakSanitizer cannot work under ptrace: a sanitizer build checks leaks in every other test.
	cat >"$dir/efsession" <<-WRAP
	#!/bin/bash
	export ASAN_OPTIONS="\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}detect_leaks=0"
	exec strace -f -qq -o /dev/null -e trace=$syscall -e inject=$syscall:error=EIO "$efs" "\$@"
	WRAP
	chmod +x "$dir/efsession"
	cat >"$dir/upload.replay" <<-REPLAY
	# An upload while every $syscall fails.
	run
	> alice 03 u16:1028 u32:pad(1000)+259 u32:pad(1000) name:"report.pdf" content:1000:7
	< 03 u16:2107 u32:0
	exit 111
	log $line; answering 2107 and closing the connection.
	file files/\$alice/report.pdf absent
	unchanged
	tmp-empty
	REPLAY
	EFSESSION=$dir/efsession REPLAY_KEEP=1 TMPDIR=$dir "$REPLAY" "$dir/upload.replay" >"$dir/tap"
	status=$?
	# The runner's TAP lines, renumbered into this script's.
	while IFS= read -r l; do
		case $l in
		"ok "*) pass "$name: ${l#*:[0-9]*: }" ;;
		"not ok "*) fail "$name: ${l#*:[0-9]*: }" ;;
		"#   "*) echo "$l" ;;
		esac
	done <"$dir/tap"
	[ "$status" -le 1 ] || fail "$name: the replay could not run (exit $status): $(grep -i 'bail' "$dir/tap")"
	LOG=$(cat "$dir"/efreplay.*.log.1 2>/dev/null)
}

inject fsync fsync "Could not write 'report.pdf' to disk: Input/output error"
check "fsync: the log names no SQLite error for the disk's failure" eval '! grep -qi sqlite <<<"$LOG"'
inject fdatasync commit "Could not store 'report.pdf': SQLite: disk I/O error"
done_testing
