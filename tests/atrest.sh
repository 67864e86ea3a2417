#!/bin/bash
# efsession --encrypt-at-rest: files of every size around a segment
# boundary, and 100 MiB, are stored sealed and restored byte for byte by
# efctl decrypt; the client still gets the plaintext's checksum; a flipped
# bit, a cut, swapped segments and a wrong key are each refused with a clear
# error and exit 1, leaving no output; a missing or malformed key stops the
# server from storing anything; no key is ever printed.

. "${top_srcdir:-.}/tests/efctl-lib.sh"
setup

seg=65536
srv=$work/state
key=$work/storage.key
head -c 32 /dev/urandom >"$key"
chmod 0400 "$key"
server_start "$srv" --encrypt-at-rest --storage-key-file "$key" || exit 1
me=$work/me
mkdir "$me"

files=()
for n in 0 1 $((seg - 1)) $seg $((seg + 1)) $((4 * seg)) 104857600; do
	head -c "$n" /dev/urandom >"$work/f$n"
	files+=("$work/f$n")
done
run_client "$work/c" -q -s "127.0.0.1:$port" -n sealer -d "$me" "${files[@]}"
wait_sessions
id=$(client_id "$me")
check "uploads to an encrypting server succeed: the client's own checksums match the server's" exit_is 0

# 56-byte header, plaintext, and a 16-byte tag per 64 KiB segment (at least one).
sealed_size() {
	local n=$1 s=$(((n + seg - 1) / seg))
	[ "$s" -ge 1 ] || s=1
	echo $((56 + n + 16 * s))
}
for n in 0 1 $((seg - 1)) $seg $((seg + 1)) $((4 * seg)) 104857600; do
	f=$srv/files/$id/f$n
	check "$n bytes: stored sealed (EFSEAL header, predicted size), not in plaintext" eval \
		'[ "$(head -c 6 "$f")" = EFSEAL ] && [ "$(stat -c %s "$f")" -eq "$(sealed_size $n)" ] && { [ $n -eq 0 ] || ! cmp -s "$f" "$work/f$n"; }'
	ctl -k "$key" decrypt "$f" -o "$work/out"
	check "$n bytes: efctl decrypt restores the exact original" eval 'ctl_is 0 && cmp "$work/out" "$work/f$n"'
done
ctl -k "$key" decrypt "$srv/files/$id/f1" >"$work/out1"
check "decrypt writes to standard output without -o" eval 'ctl_is 0 && cmp "$work/ctl.out" "$work/f1"'
ctl -s "$srv" files --client sealer --json
check "the database records the plaintext's size and checksum" eval \
	'ctl_is 0 && out_has "\"size\": 104857600, \"checksum\": $(cksum <"$work/f104857600" | cut -d" " -f1)"'

ctl -s "$srv" -k "$key" verify
check "verify decrypts and checks every file encrypted at rest" eval 'ctl_is 0 && out_has "7 files checked (7 encrypted at rest, 0 given up with no copy): 0 problems."'
ctl -s "$srv" verify
check "verify without a key: exit 4, says which key is missing" eval 'ctl_is 4 && err_has "no storage key (give --storage-key-file, or pass the efserver-storage.key credential)"'
mkdir "$work/creds"
cp "$key" "$work/creds/efserver-storage.key"
CREDENTIALS_DIRECTORY=$work/creds ctl -s "$srv" verify
check "verify with the key as a systemd credential" eval 'ctl_is 0 && out_has "0 problems"'

# Failure modes, on copies of a four-segment file.
src=$srv/files/$id/f$((4 * seg))
rec=$((seg + 16))
t=$work/tampered
bad() { # bad DESCRIPTION MESSAGE: decrypt of $t fails with exit 1 and MESSAGE, leaving no output file
	msg=$2
	rm -f "$work/out"
	ctl -k "$key" decrypt "$t" -o "$work/out"
	check "$1: decrypt exits 1 and says so" eval 'ctl_is 1 && err_has "$msg"'
	check "$1: no output is left" eval '[ ! -e "$work/out" ] && [ -z "$(ls "$work" | grep "^out\.")" ]'
}
cp "$src" "$t"
flip_bit "$t" $((56 + rec + 100))
bad "a flipped bit in segment 1" "segment 1: a segment failed authentication (altered, reordered or cut short)"
cp "$src" "$t"
flip_bit "$t" 30
bad "a changed byte in the wrapped key" "the storage key does not open this file"
head -c $((56 + 2 * rec)) "$src" >"$t"
bad "a file cut at a segment boundary" "segment 1: the file was cut short"
head -c $(($(stat -c %s "$src") - 5)) "$src" >"$t"
bad "a file cut inside its last segment" "segment 3: a segment failed authentication"
{ head -c 56 "$src"; tail -c +$((56 + rec + 1)) "$src" | head -c $rec; tail -c +57 "$src" | head -c $rec; tail -c +$((56 + 2 * rec + 1)) "$src"; } >"$t"
check "(the swapped copy has the same size)" [ "$(stat -c %s "$t")" -eq "$(stat -c %s "$src")" ]
bad "segments 0 and 1 swapped" "segment 0: a segment failed authentication"
cp "$src" "$t"
head -c 32 /dev/urandom >"$work/other.key"
rm -f "$work/out"
ctl -k "$work/other.key" decrypt "$t" -o "$work/out"
check "a wrong key: decrypt exits 1 and says the key does not open the file" eval 'ctl_is 1 && err_has "the storage key does not open this file (a wrong key, or an altered header)" && [ ! -e "$work/out" ]'
ctl -k "$key" decrypt "$work/f1"
check "a plaintext file: decrypt exits 1, not encrypted at rest" eval 'ctl_is 1 && err_has "not a file encrypted at rest"'
ctl -k "$key" decrypt "$work/none" -o "$work/out"
check "a missing file: decrypt exits 3" eval 'ctl_is 3 && [ ! -e "$work/out" ]'
head -c 31 /dev/urandom >"$work/short.key"
ctl -k "$work/short.key" decrypt "$src" -o "$work/out"
check "a 31-byte key: decrypt exits 4, the key must be exactly 32 bytes" eval 'ctl_is 4 && err_has "short.key: a storage key is exactly 32 raw bytes" && [ ! -e "$work/out" ]'

# verify sees the same tampering in the store itself, and changes nothing.
cp "$src" "$work/keep"
flip_bit "$src" $((56 + 3 * rec + 7))
head -c $((56 + rec)) "$work/keep" >"$srv/files/$id/f$seg"
before=$(snapshot "$srv")
ctl -s "$srv" -k "$key" verify
check "verify reports a flipped bit and a truncated file encrypted at rest, exit 1" eval \
	'ctl_is 1 && out_has "f$((4 * seg)) (sealer): encrypted at rest, segment 3: a segment failed authentication" && out_has "f$seg (sealer): " && out_has "2 problems"'
check "verify changed nothing" eval '[ "$before" = "$(snapshot "$srv")" ]'
ctl -s "$srv" -k "$work/other.key" verify
check "verify with a wrong key: every file reported, exit 1" eval 'ctl_is 1 && out_has "7 problems" && out_has "the storage key does not open this file"'
stop_server

# A server whose key is missing or malformed stores nothing, in plaintext or otherwise.
for case in missing short; do
	st2=$work/state-$case
	if [ $case = missing ]; then k=$work/no-such.key; want="no-such.key: No such file or directory"; else k=$work/short.key; want="short.key: a storage key is exactly 32 raw bytes"; fi
	server_start "$st2" --encrypt-at-rest --storage-key-file "$k" || exit 1
	mkdir -p "$work/me-$case"
	run_client "$work/c" -q -s "127.0.0.1:$port" -n "x$case" -d "$work/me-$case" "$work/f1"
	wait_sessions
	check "a $case key: the upload is refused and the log says why" eval '! exit_is 0 && grep -qF "Cannot load the storage key $k: ${want#*: }" "$SERVER_LOG"'
	check "a $case key: nothing is stored" eval '[ ! -e "$st2/files" ] && [ ! -e "$st2/efserver.db" ]'
	cat "$SERVER_LOG" >>"$work/all-output"
	stop_server
done
(unset CREDENTIALS_DIRECTORY; "$EFSESSION" --encrypt-at-rest -s "$work" --log-target stderr </dev/null) 2>"$work/nokey.err"
check "no key given at all: efsession says how to give one" grep -qF "no storage key (give --storage-key-file, or pass the efserver-storage.key credential)" "$work/nokey.err"
"$EFSESSION" --storage-key-file "$key" </dev/null 2>"$work/nokey.err"
status=$?
check "--storage-key-file without --encrypt-at-rest is a usage error (100)" eval 'exit_is 100 && grep -qF "only used with --encrypt-at-rest" "$work/nokey.err"'

keyhex=$(od -An -tx1 -v "$key" | tr -d ' \n')
keyb64=$(base64 -w0 <"$key")
cat "$SERVER_LOG" "$work"/c.* >>"$work/all-output" 2>/dev/null
check "no output, log or message holds the storage key, in hex or Base64" eval \
	'! grep -qiF -- "$keyhex" "$work/all-output" && ! grep -qF -- "$keyb64" "$work/all-output" && ! grep -qiF -- "${keyhex:0:16}" "$work/all-output"'

done_testing
