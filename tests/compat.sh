#!/bin/bash
# efsession --compat and efclient --compat over TCP (efserver-protocol(7),
# "Dialects and tolerances"): seed004 with short-name, or a name that is
# none, is a usage error (100) that says why; efclient --compat seed004
# completes against efsession --compat seed004, a connection per file, on a
# first and a second run, with crc32 and 128-bit keys although the server
# issues cksum and 256-bit ones, while conforming clients of both code sets
# go on as before on the same port; a new key for the same id stays refused
# (key pinning), and efctl remove-client lets the name register again;
# without --compat seed004 the dialect fails at its first request, and
# efclient says what to look at; efclient refuses options that contradict
# the dialect.

. "${top_srcdir:-.}/tests/client-lib.sh"
setup
EFCTL=$(cd "$top_builddir" && pwd)/efctl

"$EFSESSION" --compat seed004,short-name </dev/null >"$work/u.out" 2>"$work/u.err"
status=$?
check "--compat seed004,short-name is a usage error (100)" \
	eval 'exit_is 100 && grep -qF "seed004 and short-name cannot be combined" "$work/u.err"'
"$EFSESSION" --compat all,short-name </dev/null >"$work/u.out" 2>"$work/u.err"
status=$?
check "so is --compat all,short-name" exit_is 100
"$EFSESSION" --compat seed04 </dev/null >"$work/u.out" 2>"$work/u.err"
status=$?
check "a name that is none is a usage error too" \
	eval 'exit_is 100 && grep -qF "names something other than seed004, content-after, short-name or all" "$work/u.err"'

printf 'seed-004 text\n' >"$work/a.txt"
head -c 1300000 /dev/urandom >"$work/b.bin"
files="$work/a.txt $work/b.bin"

srv=$work/state
server_start "$srv" --compat seed004 --aes-key-bits 256 || exit 1
me=$work/me
before=$(connections)
run_client "$work/r" -v --compat seed004 -s "127.0.0.1:$port" -n "Ann Seed" -d "$me" $files
check "efclient --compat seed004 against efsession --compat seed004: every file stored byte for byte" \
	eval 'exit_is 0 && stored "$srv" "$me" $files'
check "a connection per file" test $(($(connections) - before)) -eq 2
check "efsession served them in the dialect, with crc32 and 128-bit keys whatever its settings" \
	grep -qF "served in the seed004 dialect, with crc32 checksums and 128-bit AES keys" "$SERVER_LOG"
check "and logged the names quoted" grep -qF "Stored 'b.bin' for 'Ann Seed'" "$SERVER_LOG"
rm -rf "$srv/files"
run_client "$work/r" -v --compat seed004 -s "127.0.0.1:$port" -d "$me" $files
check "the second run too: 2101 for the name, the same key accepted" \
	eval 'exit_is 0 && stored "$srv" "$me" $files'

for set in 1025 1100; do
	run_client "$work/r" -s "127.0.0.1:$port" -n "std$set" -d "$work/std$set" -c "$set" $files
	check "$set: a conforming client on the same server is served as ever (cksum, 256-bit keys)" \
		eval 'exit_is 0 && stored "$srv" "$work/std$set" $files'
done

# A new key for the same id: refused, as the seed-004 client's second run would be.
mkdir "$work/other"
run_client "$work/r" -s "127.0.0.1:$port" -n other -d "$work/other" "$work/a.txt"
cp "$work/other/priv.key" "$me/priv.key"
sed -n 1,2p "$me/me.info" >"$work/me.info.short" && mv "$work/me.info.short" "$me/me.info"
run_client "$work/r" --compat seed004 -s "127.0.0.1:$port" -d "$me" "$work/a.txt"
check "a new key for a known id is refused (2107), the first one stays pinned" \
	eval 'exit_is 1 && says "$work/r" "refused public key (1101): general error (2107)"'
check "efsession says why" grep -qF "client 'Ann Seed' already has a different public key" "$SERVER_LOG"
"$EFCTL" --state-dir "$srv" remove-client "Ann Seed" >"$work/ctl.out" 2>&1
rm -f "$me/me.info" "$me/priv.key"
run_client "$work/r" --compat seed004 -s "127.0.0.1:$port" -n "Ann Seed" -d "$me" "$work/a.txt"
check "after efctl remove-client the name registers again" eval 'exit_is 0 && stored "$srv" "$me" "$work/a.txt"'
stop_server

# Without --compat seed004 the dialect's first request is the format error it always was.
server_start "$work/strict" || exit 1
run_client "$work/r" --compat seed004 -s "127.0.0.1:$port" -n "Ann Seed" -d "$work/me-strict" "$work/a.txt"
check "efclient --compat seed004 against a strict efsession fails at once, exit 69" \
	eval 'exit_is 69 && says "$work/r" "lost during register (1100): " &&
		says "$work/r" "(does the server speak the seed-004 dialect? efsession needs --compat seed004)"'
check "efsession refused it as ever" grep -qF "payload_size 8 is outside 255..255" "$SERVER_LOG"
stop_server

for bad in "-c 1025" "-k cksum" "--rsa-bits 2048" "--connection-per-request"; do
	# shellcheck disable=SC2086
	run_client "$work/r" --compat seed004 $bad -s 127.0.0.1:1 -n x -d "$work/bad" "$work/a.txt"
	check "efclient --compat seed004 $bad is a usage error (64)" \
		eval 'exit_is 64 && says "$work/r" "--compat seed004 speaks the 1100 set with crc32 and 1024-bit keys"'
done
run_client "$work/r" --compat content-after -s 127.0.0.1:1 -n x -d "$work/bad" "$work/a.txt"
check "efclient --compat content-after is a usage error: a server's tolerance" \
	eval 'exit_is 64 && says "$work/r" "efclient speaks seed004 only"'

done_testing
