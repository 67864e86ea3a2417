#!/bin/bash
# Full sessions at debug level, with hex dumps (efsession --debug) and a
# verbose client: no AES key the server issued, and no part of a client's
# private key, appears in any log output — as hex, as a hex dump, in
# Base64 or as raw bytes.
. "${top_srcdir:-.}/tests/lib.sh"

AESKEY=$top_builddir/tests/deploy-aeskey
[ -x "$EFCLIENT" ] || skip_all "efclient is not built"
[ -x "$AESKEY" ] || skip_all "tests/deploy-aeskey is not built"
need_socket_activate

state=$WORK/state
clientlog=$WORK/client.log
patterns=$WORK/patterns
logs=$WORK/logs
mkdir -p "$logs" "$WORK/files"
: >"$patterns"
head -c 3000 /dev/urandom >"$WORK/files/a.bin"
head -c $((300 * 1024)) /dev/urandom >"$WORK/files/b.bin"

# upload DESC NAME [EFCLIENT OPTION]...: both files, verbose, output in $clientlog.
upload() {
	local desc=$1 name=$2
	shift 2
	mkdir -p "$WORK/$name"
	if timeout 60 "$EFCLIENT" -v --server "127.0.0.1:$PORT" --name "$name" --dir "$WORK/$name" "$@" \
		"$WORK/files/a.bin" "$WORK/files/b.bin" >>"$clientlog" 2>&1; then
		pass "$desc"
	else
		fail "$desc"
	fi
}

hex_windows() { # HEX N: every N-byte window of the bytes HEX spells, as contiguous and as spaced hex
	local hex=$1 n=$2 i
	for ((i = 0; i + 2 * n <= ${#hex}; i += 2)); do
		echo "${hex:i:2*n}"
		echo "${hex:i:2*n}" | sed 's/../& /g; s/ $//'
	done
}

# The AES key in the database right after each key exchange: 1026, 1027, 1101, and a 256-bit one.
aes_key() {
	local key
	key=$("$AESKEY" "$state" "$1") || return 1
	echo "$key" >>"$WORK/keys"
	{
		echo "$key"
		hex_windows "$key" 8
		printf "$(echo "$key" | sed 's/../\\x&/g')" | base64 -w0 | tr -d =
		echo
	} >>"$patterns"
}

start_server "$state" --debug
upload "alice registers, sends her key (1025, 1026) and uploads at debug level" alice
aes_key alice
upload "alice reconnects (1027) and uploads again" alice
aes_key alice
upload "bob registers and uploads with the 1100 set" bob --code-set 1100
aes_key bob
cp "$SERVER_LOG" "$logs/server-128.log"
stop_server
start_server "$state" --debug --aes-key-bits 256
upload "carol gets a 256-bit key and uploads" carol
aes_key carol
cp "$SERVER_LOG" "$logs/server-256.log"
stop_server
cp "$clientlog" "$logs/client.log"
check "four distinct AES keys were issued" test "$(sort -u "$WORK/keys" | wc -l)" -eq 4

# The private keys: their last 256 bytes are private (primes, exponents,
# coefficient), unlike the modulus, which the public key shows anyway.
for name in alice bob carol; do
	b64=$(sed -n '3,$p' "$WORK/$name/me.info" | tr -d '\r\n')
	[ -n "$b64" ] || b64=$(tr -d '\r\n' <"$WORK/$name/priv.key")
	der=$(echo "$b64" | base64 -d 2>/dev/null | od -An -v -tx1 | tr -d ' \n')
	check "$name's private key read from its files (${#der} hex digits)" test "${#der}" -gt 1000
	hex_windows "${der: -512}" 8 >>"$patterns"
	tail=${b64: -256}
	for ((i = 0; i + 16 <= ${#tail}; i += 4)); do echo "${tail:i:16}"; done >>"$patterns"
done

# The logs as text, and as their bytes in hex (for raw key bytes).
for f in "$logs"/*.log; do
	od -An -v -tx1 "$f" | tr '\n' ' ' | tr -s ' ' >"$f.hex"
done
check "the logs are debug logs with hex dumps" grep -q "request header" "$logs/server-128.log"
check "a 16-byte key as a hex dump line would be caught" grep -qiF -f "$patterns" <<<"  0010  $(head -1 "$WORK/keys" | sed 's/../& /g')"

for f in "$logs"/*.log "$logs"/*.hex; do
	found=$(grep -oiF -f "$patterns" "$f" | head -3)
	check "no key material in $(basename "$f") ($(wc -c <"$f") bytes)" test -z "$found"
	[ -z "$found" ] || echo "$found" | sed 's/^/#   found: /'
done
done_testing
