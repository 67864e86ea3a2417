#!/bin/sh
# Checksums and resends over TCP: each algorithm works when client and
# server are set the same way and fails when they are not; with the
# server's --fault-checksum 1 one resend is enough, with 4 the client gives
# up (1031/1106), the server keeps nothing and the exit status is 2; the
# other files of the run are still sent; in both code sets and with a
# connection per request.

. "${top_srcdir:-.}/tests/client-lib.sh"
setup

head -c 300001 /dev/urandom >"$work/a.bin"
head -c 65536 /dev/urandom >"$work/b.bin"

n=0
for algo in cksum crc32 crc32-ciphertext; do
	srv=$work/$algo
	server_start "$srv" --checksum "$algo" || exit 1
	for set in 1025 1100; do
		n=$((n + 1))
		me=$work/$algo-$set
		mkdir "$me"
		run_client "$work/r" -s "127.0.0.1:$port" -n "user$n" -d "$me" -c "$set" -k "$algo" "$work/a.bin" "$work/b.bin"
		check "$algo, $set: client and server agree, exit 0" exit_is 0
		check "$algo, $set: both files stored byte for byte" stored "$srv" "$me" "$work/a.bin" "$work/b.bin"
	done
	# The server's checksum is another algorithm's: every upload mismatches.
	other=crc32
	[ "$algo" = crc32 ] && other=cksum
	me=$work/$algo-wrong
	mkdir "$me"
	run_client "$work/r" -s "127.0.0.1:$port" -n "wrong-$algo" -d "$me" -k "$other" "$work/a.bin"
	check "$algo server, $other client: checksum failure, exit 2" exit_is 2
	check "$algo server, $other client: the file is given up and not kept" \
		eval 'says "$work/r" "a.bin: checksum mismatch after 3 resends, given up" && test ! -e "$srv/files/$(client_id "$me")/a.bin"'
	check "$algo server, $other client: the message points at --checksum" \
		says "$work/r" "the server's checksum is not $other: see --checksum"
	check "$algo server, $other client: no line on stdout for a file given up" test ! -s "$work/r.out"
	stop_server
done

srv=$work/fault1
server_start "$srv" --fault-checksum 1 || exit 1
for mode in "" --connection-per-request; do
	for set in 1025 1100; do
		n=$((n + 1))
		me=$work/fault1-$set$mode
		mkdir "$me"
		run_client "$work/r" -v -s "127.0.0.1:$port" -n "user$n" -d "$me" -c "$set" $mode "$work/a.bin" "$work/b.bin"
		check "fault 1, $set ${mode:-one connection}: one resend each, then success" \
			eval 'exit_is 0 && prints "$work/r" "a.bin: stored on 127.0.0.1:$port for user$n, 293.0 KiB, checksum confirmed after 1 resend" &&
				prints "$work/r" "b.bin: stored on 127.0.0.1:$port for user$n, 64.0 KiB, checksum confirmed after 1 resend"'
		check "fault 1, $set ${mode:-one connection}: exactly one mismatch per file" \
			test "$(grep -c 'checksum mismatch on upload 1 ' "$work/r.err")" -eq 2 -a \
			"$(grep -c 'checksum mismatch on upload 2 ' "$work/r.err")" -eq 0
		check "fault 1, $set ${mode:-one connection}: the files are stored byte for byte" \
			stored "$srv" "$me" "$work/a.bin" "$work/b.bin"
	done
done
stop_server

srv=$work/fault4
server_start "$srv" --fault-checksum 4 || exit 1
for mode in "" --connection-per-request; do
	for set in 1025 1100; do
		n=$((n + 1))
		me=$work/fault4-$set$mode
		mkdir "$me"
		run_client "$work/r" -v -s "127.0.0.1:$port" -n "user$n" -d "$me" -c "$set" $mode "$work/a.bin" "$work/b.bin"
		check "fault 4, $set ${mode:-one connection}: four mismatches give up, exit 2" exit_is 2
		check "fault 4, $set ${mode:-one connection}: one line per file given up" \
			eval 'says "$work/r" "efclient: a.bin: checksum mismatch after 3 resends, given up" &&
				says "$work/r" "efclient: b.bin: checksum mismatch after 3 resends, given up"'
		check "fault 4, $set ${mode:-one connection}: four uploads of each, no more" \
			test "$(grep -c 'checksum mismatch on upload [1-4] ' "$work/r.err")" -eq 8 -a \
			"$(grep -c 'checksum mismatch on upload 5 ' "$work/r.err")" -eq 0
		check "fault 4, $set ${mode:-one connection}: the server keeps neither file" \
			test ! -e "$srv/files/$(client_id "$me")/a.bin" -a ! -e "$srv/files/$(client_id "$me")/b.bin"
	done
done
# The fault counts per file across connections: a fifth upload gets the true checksum.
run_client "$work/r" -s "127.0.0.1:$port" -d "$work/fault4-1025" "$work/a.bin"
check "fault 4: the next run's upload of a.bin gets the true checksum" \
	eval 'exit_is 0 && stored "$srv" "$work/fault4-1025" "$work/a.bin"'
me=$work/fault4-retries
mkdir "$me"
run_client "$work/r" -s "127.0.0.1:$port" -n retries -d "$me" --retries 4 "$work/b.bin"
check "fault 4 with --retries 4: the fourth resend succeeds" eval 'exit_is 0 && stored "$srv" "$me" "$work/b.bin"'
me=$work/fault4-none
mkdir "$me"
run_client "$work/r" -s "127.0.0.1:$port" -n noretries -d "$me" --retries 0 "$work/b.bin"
check "--retries 0: the first mismatch gives up" \
	eval 'exit_is 2 && says "$work/r" "b.bin: checksum mismatch after 0 resends, given up"'

done_testing
