#!/bin/sh
# efclient against a real efsession over TCP, in both code sets: the first
# run registers and writes me.info and priv.key, the second reconnects (1025)
# or sends the stored key again (1100); several files per run arrive byte for
# byte; a name already taken, a me.info written by hand in the seeds' format,
# a key kept only in priv.key, seed 000's directory (its public key in
# me.info), a registration cut before its key (recovered), transfer.info
# alone, an unreachable server, and configuration errors each end as
# documented; --help lists every option and efclient(1) documents each one
# it lists.

. "${top_srcdir:-.}/tests/client-lib.sh"
setup

srv=$work/state
server_start "$srv" || exit 1

head -c 1048573 /dev/urandom >"$work/odd.bin"
head -c 4096 /dev/urandom >"$work/block.bin"
: >"$work/empty"
printf 'hello\n' >"$work/hello.txt"
files="$work/odd.bin $work/block.bin $work/empty $work/hello.txt"

for set in 1025 1100; do
	me=$work/me$set
	# The 1025 run finds its directory; the 1100 run's does not exist yet.
	[ "$set" = 1025 ] && mkdir "$me"
	run_client "$work/r" -v -s "127.0.0.1:$port" -n "alice$set" -d "$me" -c "$set" $files
	check "$set: the first run succeeds" exit_is 0
	[ "$set" = 1100 ] && check "1100: a --dir that did not exist is created, mode 0700" \
		test "$(stat -c %a "$me")" = 700
	check "$set: it registers and writes me.info and priv.key" says "$work/r" "registered 'alice$set' with 127.0.0.1:$port"
	check "$set: me.info and priv.key have mode 0600" \
		test "$(stat -c %a "$me/me.info") $(stat -c %a "$me/priv.key")" = "600 600"
	check "$set: me.info holds the name and a 32-digit id" \
		eval 'test "$(sed -n 1p "$me/me.info")" = "alice$set" && client_id "$me" | grep -qx "[0-9a-f]\{32\}"'
	check "$set: line 3 of me.info is the key of priv.key" test "$(sed -n 3p "$me/me.info")" = "$(cat "$me/priv.key")"
	check "$set: four files, one empty, all stored byte for byte" stored "$srv" "$me" $files
	cp "$me/me.info" "$work/me.info.first"

	rm -rf "$srv/files/$(client_id "$me")"
	run_client "$work/r" -v -s "127.0.0.1:$port" -d "$me" -c "$set" $files
	check "$set: the second run succeeds" exit_is 0
	if [ "$set" = 1025 ]; then
		check "1025: it reconnects with the stored identity" says "$work/r" "reconnected 'alice1025'"
	else
		check "1100: it sends the stored public key again" says "$work/r" "sent the public key of 'alice1100'"
	fi
	check "$set: and registers nothing new: me.info is unchanged" cmp -s "$me/me.info" "$work/me.info.first"
	check "$set: the files are stored again" stored "$srv" "$me" $files

	other=$work/other$set
	mkdir "$other"
	run_client "$work/r" -s "127.0.0.1:$port" -n "alice$set" -d "$other" -c "$set" "$work/hello.txt"
	check "$set: a name already taken exits 1" exit_is 1
	check "$set: and says so" says "$work/r" "efclient: server 127.0.0.1:$port refused to register 'alice$set' (2101): the name is taken"
	check "$set: and writes no identity" test ! -e "$other/me.info" -a ! -e "$other/priv.key"
done

# A larger key than the protocol's usual 160-byte one.
big=$work/rsa2048
mkdir "$big"
run_client "$work/r" -s "127.0.0.1:$port" -n rsa2048 -d "$big" --rsa-bits 2048 "$work/hello.txt"
check "--rsa-bits 2048: the server takes the larger key and its AES key decrypts" \
	eval 'exit_is 0 && stored "$srv" "$big" "$work/hello.txt"'
check "--rsa-bits 2048: the key written is a 2048-bit one (about 1.6 KB of Base64)" \
	test "$(wc -c <"$big/priv.key")" -gt 1500

# The seeds' format by hand: the id as an upper-case UUID, the key wrapped at 64 columns, CR LF line ends.
me=$work/me1025
id=$(client_id "$me")
uuid=$(echo "$id" | tr 'a-f' 'A-F' | sed 's/^\(.\{8\}\)\(.\{4\}\)\(.\{4\}\)\(.\{4\}\)/\1-\2-\3-\4-/')
{
	printf 'alice1025\r\n%s\r\n' "$uuid"
	fold -w 64 "$me/priv.key" | sed 's/$/\r/'
} >"$me/me.info.hand"
mv "$me/me.info.hand" "$me/me.info"
check "the hand-written me.info has the id with dashes and the key over several lines" \
	test "$(grep -c . "$me/me.info")" -gt 4 -a "$(sed -n 2p "$me/me.info" | tr -cd - | wc -c)" -eq 4
rm -f "$me/priv.key"
run_client "$work/r" -v -s "127.0.0.1:$port" -d "$me" "$work/hello.txt"
check "a me.info written by hand in the seeds' format loads and reconnects" \
	eval 'exit_is 0 && says "$work/r" "reconnected '"'"'alice1025'"'"' ($id)"'

# Lines 1 and 2 only: the key comes from priv.key.
sed -n '3,$p' "$me/me.info" | tr -d '\r' >"$me/priv.key"
sed -n '1,2p' "$me/me.info" >"$me/me.info.short"
mv "$me/me.info.short" "$me/me.info"
run_client "$work/r" -v -s "127.0.0.1:$port" -d "$me" "$work/hello.txt"
check "a me.info without a key takes the wrapped key in priv.key" eval 'exit_is 0 && says "$work/r" "reconnected"'

# Seed 000's directory: its public key (SubjectPublicKeyInfo, Base64) on me.info line 3 on, the private key in priv.key.
if command -v sqlite3 >/dev/null; then
	spki=$(sqlite3 "$srv/efserver.db" "SELECT hex(public_key) FROM clients WHERE name = 'alice1025'")
	{
		printf 'alice1025\n%s\n' "$uuid"
		# shellcheck disable=SC2059
		printf "$(echo "$spki" | sed 's/../\\x&/g')" | base64 -w 64
	} >"$me/me.info"
	run_client "$work/r" -v -s "127.0.0.1:$port" -d "$me" "$work/hello.txt"
	check "seed 000's directory, the public key in me.info, is taken over: the key from priv.key" \
		eval 'exit_is 0 && says "$work/r" "reconnected '"'"'alice1025'"'"'"'
	cp "$me/priv.key" "$work/alice1025.key"
	cp "$work/me1100/priv.key" "$me/priv.key"
	run_client "$work/r" -s "127.0.0.1:$port" -d "$me" "$work/hello.txt"
	check "a priv.key that does not match it is refused before connecting, exit 64" \
		eval 'exit_is 64 && says "$work/r" "$me/priv.key: the private key does not match the public key on line 3 of $me/me.info"'
	cp "$work/alice1025.key" "$me/priv.key"
else
	skip "seed 000's directory is taken over" "sqlite3 is not installed (Debian package sqlite3)"
	skip "a priv.key that does not match it is refused" "sqlite3 is not installed (Debian package sqlite3)"
fi

# A registration cut between 2100 and 2102: a 1025 sent by hand, the identity written without a key stored.
exec 3<>"/dev/tcp/127.0.0.1/$port"
{
	head -c 16 /dev/zero
	printf '\003\001\004\377\000\000\000stranded'
	head -c 247 /dev/zero
} >&3
answer=$(head -c 23 <&3 | od -An -tx1 -v | tr -d ' \n')
exec 3<&-
check "a 1025 sent by hand gets 2100 and an id" test "${answer:0:14}" = 03340810000000
stranded=$work/stranded
mkdir "$stranded"
printf 'stranded\n%s\n' "${answer:14}" >"$stranded/me.info"
cp "$work/me1100/priv.key" "$stranded/priv.key"
run_client "$work/r" -v -s "127.0.0.1:$port" -d "$stranded" "$work/hello.txt"
check "the next run recovers: 2106 to the reconnect, then the public key sent (1026) and the file stored" \
	eval 'exit_is 0 && says "$work/r" "the server had no public key for '"'"'stranded'"'"' (a registration that was interrupted)" &&
		stored "$srv" "$stranded" "$work/hello.txt"'
check "efsession had said why it refused the reconnect" grep -qF "'stranded' has no public key stored" "$SERVER_LOG"

# Everything from transfer.info: server, name, and relative paths taken from its directory.
td=$work/transfer
mkdir "$td"
cp "$work/odd.bin" "$work/hello.txt" "$td/"
printf '127.0.0.1:%s\r\nbob\r\nodd.bin\r\n%s\r\n' "$port" "$td/hello.txt" >"$td/transfer.info"
(cd "$work" && "$EFCLIENT" -d "$td" >"$work/r.out" 2>"$work/r.err")
status=$?
check "transfer.info alone says where, who and what" exit_is 0
check "both of its files are stored" stored "$srv" "$td" "$td/odd.bin" "$td/hello.txt"
check "nothing is printed on stderr when it is no terminal and -v is not given" test ! -s "$work/r.err"
check "stdout has one line per file stored" eval '[ "$(wc -l <"$work/r.out")" -eq 2 ] &&
	prints "$work/r" "odd.bin: stored on 127.0.0.1:$port for bob, 1024.0 KiB, checksum confirmed" &&
	prints "$work/r" "hello.txt: stored on 127.0.0.1:$port for bob, 6 bytes, checksum confirmed"'
(cd "$work" && "$EFCLIENT" -q -d "$td" >"$work/r.out" 2>"$work/r.err")
status=$?
check "with -q, nothing at all is printed" eval 'exit_is 0 && test ! -s "$work/r.out" -a ! -s "$work/r.err"'

# A me.info line that is wrong is named, and nothing is sent.
printf 'bob\nnot-an-id\nAAAA\n' >"$td/me.info"
run_client "$work/r" -d "$td"
check "a malformed me.info exits 64" exit_is 64
check "naming the file, the line and the fault" \
	says "$work/r" "$td/me.info:2: client id is not 32 hex digits, plain or in the 8-4-4-4-12 form"
rm -f "$td/me.info"
sed -i 's/^bob/bo\x01b/' "$td/transfer.info"
run_client "$work/r" -d "$td"
check "a malformed transfer.info line is named too" \
	eval 'exit_is 64 && says "$work/r" "$td/transfer.info:2: client name holds a control character"'

run_client "$work/r" -s "127.0.0.1:$port" -n carol -d "$td" "$work/missing.bin"
check "a file that does not exist is refused before connecting" \
	eval 'exit_is 64 && says "$work/r" "$work/missing.bin: No such file or directory" && test ! -e "$td/me.info"'
run_client "$work/r" -s "127.0.0.1:$port" -n carol -d "$work/no/such/dir" "$work/hello.txt"
check "a --dir whose parent does not exist is a configuration error" \
	eval 'exit_is 64 && says "$work/r" "directory $work/no/such/dir: No such file or directory"'
mkdir "$work/sub"
cp "$work/hello.txt" "$work/sub/hello.txt"
run_client "$work/r" -s "127.0.0.1:$port" -n carol -d "$td" "$work/hello.txt" "$work/sub/hello.txt"
check "two files with one base name are refused" eval 'exit_is 64 && says "$work/r" "would both be stored as '"'"'hello.txt'"'"'"'
run_client "$work/r" -s "127.0.0.1:$port" -n carol -d "$td" -c 1200 "$work/hello.txt"
check "an unknown code set is a usage error" eval 'exit_is 64 && says "$work/r" "--code-set: '"'"'1200'"'"' is neither 1025 nor 1100"'
run_client "$work/r" --no-such-option "$work/hello.txt"
check "an unknown option is a usage error, named by the program, not the path it was run by" \
	eval 'exit_is 64 && says "$work/r" "efclient: unrecognized option '"'"'--no-such-option'"'"'" && ! grep -q "/efclient" "$work/r.err"'
run_client "$work/r" -d "$work/sub" "$work/hello.txt"
check "without --server or transfer.info there is nowhere to go, and the message says what to give" \
	eval 'exit_is 64 && says "$work/r" "no server given, and no $work/sub/transfer.info to read it from: run efclient --server HOST:PORT --name NAME FILE..."'

# Nobody listens once the server is stopped.
stop_server
run_client "$work/r" -s "127.0.0.1:$port" -n dave -d "$work/sub" "$work/hello.txt"
check "an unreachable server exits 69" exit_is 69
check "and says which and why, and what to look at" \
	says "$work/r" "efclient: server 127.0.0.1:$port unreachable: connection refused (is efsession listening on that port?)"
check "no identity is written" test ! -e "$work/sub/me.info"

"$EFCLIENT" --version >"$work/v.out" 2>&1
check "--version names the program and version" grep -q '^efclient (efserver) [0-9]' "$work/v.out"
"$EFCLIENT" --help >"$work/h.out" 2>&1
lists_all() {
	for o in --server --name --dir --code-set --checksum --retries --timeout --connection-per-request \
		--compat --rsa-bits --verbose --quiet --help --version; do
		grep -q -- "$o" "$1" || return 1
	done
}
check "--help lists every option" lists_all "$work/h.out"
for opt in $(grep -oE -- '--[a-z-]+' "$work/h.out" | sort -u); do
	check "efclient(1) documents $opt" grep -qF -- "Fl $(echo "${opt#-}" | sed 's/-/\\-/g')" "$top_srcdir/man/efclient.1"
done

done_testing
