#!/bin/bash
# libsystemd is opened only by a process that needs it (efsession(8),
# --log-target): a registration logged to stderr or to syslog never loads
# it, as the dynamic loader's own account shows (LD_DEBUG); one logged to
# the journal loads it, and, when a private mount namespace can give it a
# journal socket of its own, sends its entries there in the journal's
# native protocol with their fields.
. "${top_srcdir:-.}/tests/lib.sh"

need python3 python3
efs=$(cd "$(dirname "$EFSESSION")" && pwd)/efsession
state=$WORK/state
mkdir -p "$state"

# A 1025 request registering NAME: a zero client id, version 3, the code, 255 bytes of name.
register() {
	head -c 16 /dev/zero
	printf '\003\001\004\377\000\000\000%s' "$1"
	head -c $((255 - ${#1})) /dev/zero
}

# serve NAME TARGET: a registration of NAME by efsession logging to TARGET, under the loader's eye.
serve() {
	rm -f "$WORK/ld".*
	register "$1" | LD_DEBUG=files LD_DEBUG_OUTPUT=$WORK/ld "$efs" --state-dir "$state" --log-target "$2" \
		>"$WORK/$1.out" 2>"$WORK/$1.err"
	status=$?
}

# answered NAME: the 2100 of a registration, and exit status 0.
answered() {
	[ "$status" -eq 0 ] && [ "$(head -c 7 "$WORK/$1.out" | od -An -tx1 | tr -d ' \n')" = 03340810000000 ]
}

loaded() {
	cat "$WORK/ld".* 2>/dev/null | grep -q 'file=libsystemd\.so'
}

serve plain stderr
check "logging to stderr: the registration is answered with 2100 and logged" \
	eval 'answered plain && grep -q "Registered .plain." "$WORK/plain.err"'
check "the loader's account exists (LD_DEBUG works here)" eval 'cat "$WORK/ld".* | grep -q "file=libc\.so"'
check "and libsystemd was never loaded" eval '! loaded'

serve sys syslog
check "logging to syslog: answered, libsystemd never loaded" eval 'answered sys && ! loaded'

serve jour journal
check "logging to the journal: answered, and libsystemd loaded for it" eval 'answered jour && loaded'

# A journal of our own: a private /run/systemd with a socket that python3 reads the datagrams from.
cat >"$WORK/journald.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
open(sys.argv[2], "w").close()
s.settimeout(10)
with open(sys.argv[3], "wb") as out:
    try:
        while True:
            d = s.recv(65536)
            out.write(d + b"\n--\n")
            out.flush()
            if b"MESSAGE=Registered" in d:
                break
    except socket.timeout:
        pass
PY
cat >"$WORK/inside.sh" <<INSIDE
mount -t tmpfs tmpfs /run/systemd 2>/dev/null || exit 77
mkdir /run/systemd/journal
python3 "$WORK/journald.py" /run/systemd/journal/socket "$WORK/ready" "$WORK/entries" &
for i in \$(seq 100); do [ -e "$WORK/ready" ] && break; sleep 0.05; done
$(declare -f register)
register named | "$efs" --state-dir "$state" --log-target journal >"$WORK/named.out" 2>"$WORK/named.err"
echo \$? >"$WORK/named.status"
wait
INSIDE
if [ "$(id -u)" -ne 0 ] || [ ! -d /run/systemd ] || ! command -v unshare >/dev/null; then
	skip "entries in the journal's protocol" "needs root, /run/systemd and unshare for a private journal socket"
else
	unshare -m --propagation private bash "$WORK/inside.sh"
	if [ $? -eq 77 ]; then
		skip "entries in the journal's protocol" "no private mount namespace here"
	else
		entry=$(awk 'BEGIN { RS = "\n--\n" } /MESSAGE=Registered .named./' "$WORK/entries")
		check "the registration's entry reached the journal socket" [ -n "$entry" ]
		for field in PRIORITY=6 SYSLOG_IDENTIFIER=efsession REQUEST_CODE=1025 CLIENT_NAME=named CODE_FUNC=handle_register; do
			check "with $field" grep -qx "$field" <<<"$entry"
		done
		check "and nothing on stderr" [ ! -s "$WORK/named.err" ]
	fi
fi

done_testing
