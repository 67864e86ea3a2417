#!/bin/sh
# Failures over TCP each get one line naming the request and the exit
# status documented for them: a reconnect refused (2106) and a public key
# refused (2107) by a server that does not know the identity, an upload
# refused (2107) for its size, a peer that hangs up without an answer,
# and one that never answers (--timeout).

. "${top_srcdir:-.}/tests/client-lib.sh"
setup

printf 'some content\n' >"$work/small.txt"
head -c 40000 /dev/urandom >"$work/large.bin"

first=$work/first
server_start "$first" || exit 1
me=$work/me
mkdir "$me"
run_client "$work/r" -s "127.0.0.1:$port" -n erin -d "$me" "$work/small.txt"
check "an identity is made on a first server" exit_is 0

# A second server, with its own state, knows nothing of it.
stop_server
second=$work/second
server_start "$second" --max-file-size 16K || exit 1
run_client "$work/r" -s "127.0.0.1:$port" -d "$me" "$work/small.txt"
check "1025: a server that does not know the identity refuses the reconnect, exit 1" exit_is 1
check "1025: and the line says so" \
	says "$work/r" "efclient: server 127.0.0.1:$port refused to reconnect 'erin' (2106): it does not know this name and id"
run_client "$work/r" -s "127.0.0.1:$port" -d "$me" -c 1100 "$work/small.txt"
check "1100: it refuses the stored public key with 2107, exit 1" exit_is 1
check "1100: and the line names the request" \
	says "$work/r" "efclient: server 127.0.0.1:$port refused public key (1101): general error (2107)"

me2=$work/me2
mkdir "$me2"
run_client "$work/r" -s "127.0.0.1:$port" -n frank -d "$me2" "$work/small.txt" "$work/large.bin"
check "an upload above the server's --max-file-size is refused with 2107, exit 1" exit_is 1
check "and the line names the request and the file" \
	says "$work/r" "efclient: server 127.0.0.1:$port refused send file (1028) of large.bin: general error (2107)"
check "the files before it were stored" stored "$second" "$me2" "$work/small.txt"

# Not efsession: a peer that reads the register request (23 + 255 bytes) from the connection (fd 3) and hangs up.
peer_start "$work/hangup.log" sh -c 'head -c 278 <&3 >/dev/null' || exit 1
mkdir "$work/sub1"
run_client "$work/r" -s "127.0.0.1:$port" -n gina -d "$work/sub1" "$work/small.txt"
check "a connection closed by the server is a network error, exit 69" exit_is 69
check "naming the request it happened to" \
	says "$work/r" "efclient: connection to server 127.0.0.1:$port lost during register (1025): the server closed the connection"

# A peer that accepts and never answers.
peer_start "$work/sleep.log" sleep 60 || exit 1
mkdir "$work/sub2"
run_client "$work/r" -s "127.0.0.1:$port" -n hana -d "$work/sub2" -c 1100 --timeout 1 "$work/small.txt"
check "a server that does not answer within --timeout is a network error, exit 69" exit_is 69
check "naming the request and the limit, and asking whether it is efsession that listens" \
	says "$work/r" "efclient: no answer from server 127.0.0.1:$port to register (1100) within 1 s: is efsession, and not another program, listening on that port?"
check "no identity is written after a failed registration" test ! -e "$work/sub2/me.info"

done_testing
