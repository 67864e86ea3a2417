#!/bin/sh
# A 256 MiB file goes up streamed: it arrives byte for byte in both code
# sets, and the client does it within 64 MiB of address space, so it never
# holds the file in memory. A file larger than the protocol allows is
# refused before any connection is made.

. "${top_srcdir:-.}/tests/client-lib.sh"
setup

srv=$work/state
server_start "$srv" || exit 1
head -c 268435456 /dev/urandom >"$work/big.bin" || exit 1

me=$work/c1025
mkdir "$me"
run_client "$work/r" -s "127.0.0.1:$port" -n big1025 -d "$me" "$work/big.bin"
check "1025: a 256 MiB file is stored byte for byte" eval 'exit_is 0 && stored "$srv" "$me" "$work/big.bin"'

me=$work/c1100
mkdir "$me"
# Sanitizer builds reserve terabytes of address space: the bound only means something without them.
if grep -q __asan_init "$EFCLIENT"; then
	limit=unlimited
else
	limit=65536
fi
(ulimit -v "$limit" && exec "$EFCLIENT" -s "127.0.0.1:$port" -n big1100 -d "$me" -c 1100 \
	"$work/big.bin") >"$work/r.out" 2>"$work/r.err"
status=$?
[ -s "$work/r.err" ] && note "$(cat "$work/r.err")"
check "1100: so it is with the client limited to 64 MiB of address space" \
	eval 'exit_is 0 && stored "$srv" "$me" "$work/big.bin"'
rm -f "$work/big.bin"

# One byte more than the 1025 set can carry once padded; sparse, so it costs no disk.
truncate -s 4294967024 "$work/huge.bin"
before=$(connections)
run_client "$work/r" -s "127.0.0.1:$port" -d "$me" "$work/huge.bin"
check "a file too large for the protocol is refused, exit 64" \
	eval 'exit_is 64 && says "$work/r" "huge.bin: too large for the protocol (at most 4294967023 bytes)"'
check "before connecting" test "$(connections)" -eq "$before"

done_testing
