#!/bin/bash
# efclient against servers in the wild (efserver-protocol(7), "Dialects and
# tolerances"), played by tests/standin: a server that closes the connection
# after every response, whether the client learns it before its next request
# or only from it, is served with a new connection per request, on a first
# run and a second; the seed-004 server, which frames requests by one read,
# answers in 8-byte headers with an ASCII checksum and wants ".enc" names,
# gets efclient --compat seed004, a file per connection, on a first and a
# second run; a registration cut between 2100 and 2102 is recovered on the
# next run; an AES key of 24 bytes and a 2104 for another client id are
# refused with a clear message.

. "${top_srcdir:-.}/tests/client-lib.sh"
STANDIN=$(cd "$top_builddir" && pwd)/tests/standin
[ -x "$STANDIN" ] || skip_all "tests/standin is not built (it needs zlib: Debian package zlib1g-dev)"
setup

# standin_start DIR OPTION...: tests/standin serving into DIR, its port in $port, its messages in DIR.log.
standin_start() {
	local dir=$1 i
	shift
	mkdir -p "$dir"
	rm -f "$dir.port"
	"$STANDIN" --dir "$dir" --port-file "$dir.port" "$@" 2>"$dir.log" &
	peers="$peers $!"
	for i in $(seq 1 100); do
		[ -s "$dir.port" ] && break
		sleep 0.05
	done
	port=$(cat "$dir.port" 2>/dev/null)
	[ -n "$port" ] || {
		echo "Bail out! tests/standin did not start: $(cat "$dir.log")"
		exit 1
	}
}

printf 'a small file\n' >"$work/small.txt"
head -c 300007 /dev/urandom >"$work/big.bin"
files="$work/small.txt $work/big.bin"

# One request per connection, the close seen before the next request, or only by it.
for late in "" --close-late; do
	srv=$work/one$late
	standin_start "$srv" --one-request $late
	me=$work/me-one$late
	run_client "$work/r" -v -k crc32-ciphertext -s "127.0.0.1:$port" -n "one$late" -d "$me" $files
	check "one request per connection${late:+ (closed late)}: the first run stores every file byte for byte" \
		eval 'exit_is 0 && stored "$srv" "$me" $files'
	check "one request per connection${late:+ (closed late)}: -v says the connection was opened again" \
		says "$work/r" "the server closed the connection after its response; connecting again for public key (1026)"
	run_client "$work/r" -v -k crc32-ciphertext -s "127.0.0.1:$port" -d "$me" $files
	check "one request per connection${late:+ (closed late)}: the second run reconnects and stores them again" \
		eval 'exit_is 0 && says "$work/r" "reconnected '"'one$late'"'" && stored "$srv" "$me" $files'
	stop_peers
done

# The seed-004 server.
srv=$work/seed004
standin_start "$srv" --seed004
me=$work/me-seed004
run_client "$work/r" -v --compat seed004 -s "127.0.0.1:$port" -n "Seed Four" -d "$me" $files
check "seed004: the first run stores every file byte for byte" eval 'exit_is 0 && stored "$srv" "$me" $files'
check "seed004: each file on a connection of its own, opened with 1100 and 1101" \
	test "$(grep -c "key: 16-byte AES key for 'Seed Four'" "$srv.log")" -eq 2
check "seed004: every request arrived in a read of its own" \
	eval '! grep -q "came as\|in one read" "$srv.log" || { note "$(cat "$srv.log")"; false; }'
rm -rf "$srv/files"
run_client "$work/r" -v --compat seed004 -s "127.0.0.1:$port" -d "$me" $files
check "seed004: the second run, the name known (2101), stores them again" \
	eval 'exit_is 0 && stored "$srv" "$me" $files'
check "seed004: me.info is the one of the first run" test "$(sed -n 1p "$me/me.info")" = "Seed Four"
stop_peers

# A registration cut between 2100 and 2102, then recovered.
srv=$work/cut
standin_start "$srv" --one-request --drop-first-key
me=$work/me-cut
run_client "$work/r" -k crc32-ciphertext -s "127.0.0.1:$port" -n cut -d "$me" "$work/small.txt"
check "a registration cut before 2102 fails the run, exit 69" eval 'exit_is 69 && says "$work/r" "lost during public key (1026)"'
check "but the identity is written" test -s "$me/me.info"
run_client "$work/r" -v -k crc32-ciphertext -s "127.0.0.1:$port" -d "$me" "$work/small.txt"
check "the next run sends the public key the server lacks (2106 to its reconnect), and stores the file" \
	eval 'exit_is 0 && says "$work/r" "the server had no public key for '"'cut'"' (a registration that was interrupted): sent it" && stored "$srv" "$me" "$work/small.txt"'
stop_peers

# Honest checks of what a server sends.
srv=$work/aes24
standin_start "$srv" --one-request --aes-bytes 24
run_client "$work/r" -k crc32-ciphertext -s "127.0.0.1:$port" -n aes24 -d "$work/me-aes24" "$work/small.txt"
check "an AES key of 24 bytes is refused at once, exit 1" \
	eval 'exit_is 1 && says "$work/r" "an AES key of 24 bytes, where only 16 or 32 are used" && test ! -e "$srv/files"'
stop_peers
srv=$work/aes32
standin_start "$srv" --one-request --aes-bytes 32
run_client "$work/r" -k crc32-ciphertext -s "127.0.0.1:$port" -n aes32 -d "$work/me-aes32" "$work/small.txt"
check "one of 32 bytes is used" eval 'exit_is 0 && stored "$srv" "$work/me-aes32" "$work/small.txt"'
stop_peers
srv=$work/ackid
standin_start "$srv" --one-request --ack-id-wrong
run_client "$work/r" -k crc32-ciphertext -s "127.0.0.1:$port" -n ackid -d "$work/me-ackid" "$work/small.txt"
check "a 2104 that names another client id is refused, exit 1" \
	eval 'exit_is 1 && says "$work/r" "the acknowledgement names another client id"'
stop_peers

done_testing
