#!/bin/bash
# Faults: efsession killed with SIGKILL at random moments of 100 uploads
# loses nothing and leaves nothing half-done; killed at random moments of
# 100 new uploads of verified files and their confirmations (or other
# verdicts), it leaves under each name its verified copy or the replacement
# the client confirmed, with a row that describes it, and nothing efctl gc
# would not clear from pending/; two connections uploading the
# same name at once leave one whole file and a matching row; a full disk
# (RLIMIT_FSIZE, and a small tmpfs when we may mount one) gives 2107 and
# leaves nothing; a read-only or missing state directory gives one clear
# log line and 2107; a client trickling a byte a second is cut off at the
# idle timeout. tests/drive-robust.c does the talking.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/robust-lib.sh"
need_socket_activate

EFS=$(cd "$top_builddir" && pwd)/efsession
SEED=${ROBUST_SEED:-$RANDOM}
echo "# seed $SEED (ROBUST_SEED=$SEED reproduces this run)"

mkdir -p "$WORK/kill" "$WORK/kill-verified" "$WORK/race" "$WORK/fsize"
run_drive kill kill "$EFS" "$WORK/kill" 100 "$SEED"
run_drive kill-verified kill-verified "$EFS" "$WORK/kill-verified" 100 "$SEED" "$(cd "$top_builddir" && pwd)/efctl"
run_drive race race "$EFS" "$WORK/race" 20
run_drive fsize full "$EFS" "$WORK/fsize" 3000000 1000000

# A real full file system: a 4 MiB tmpfs (needs the right to mount).
mnt=$WORK/tmpfs
mkdir -p "$mnt"
if mount -t tmpfs -o size=4m,mode=0700 efserver-test "$mnt" 2>/dev/null; then
	run_drive enospc full "$EFS" "$mnt" 6000000
	check "the log of the full disk names the failure" grep -q "No space left on device" "$mnt.log"
	umount "$mnt"
else
	skip "enospc: an upload larger than a small tmpfs" "cannot mount a tmpfs here"
fi

# A read-only state directory (root ignores modes: a read-only bind mount).
ro=$WORK/ro
mkdir -p "$ro"
"$EFSESSION" --state-dir "$ro" --log-target stderr </dev/null 2>/dev/null
if mount --bind "$ro" "$ro" 2>/dev/null && mount -o remount,bind,ro "$ro" 2>/dev/null; then
	run_drive read-only refused "$EFS" "$ro"
	check "read-only: the log says why in one line" [ "$(grep -c "Read-only file system" "$ro.log")" -eq 1 ]
	check "read-only: that line names the state directory" grep -q "Cannot use the state directory $ro.*Read-only" "$ro.log"
	umount "$ro"
else
	umount "$ro" 2>/dev/null
	skip "read-only: a read-only state directory" "cannot bind-mount here"
fi
run_drive missing refused "$EFS" "$WORK/missing"
check "missing: the log says once, in one line, which directory and why" \
	[ "$(grep -c "$WORK/missing: No such file or directory" "$WORK/missing.log")" -eq 1 ]

# The idle timeout cuts off a client that sends a byte a second.
start_server "$WORK/trickle-state" --idle-timeout 3
run_drive trickle trickle 127.0.0.1 "$PORT" 3
wait_sessions
check "trickle: the server logged the timeouts" grep -q "No data for 3 s" "$SERVER_LOG"
check "trickle: nothing was registered" [ -z "$(ls "$WORK/trickle-state/files")" ]
stop_server
done_testing
