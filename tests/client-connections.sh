#!/bin/sh
# Connections: by default a run is one connection whatever it sends;
# --connection-per-request opens one per request (register, key, and an
# upload and a confirmation per file), in both code sets, with the same
# result; 16 clients uploading at once each get every file stored intact.

. "${top_srcdir:-.}/tests/client-lib.sh"
setup

srv=$work/state
server_start "$srv" || exit 1
for i in 1 2 3; do
	head -c $((100000 * i + 7)) /dev/urandom >"$work/f$i.bin"
done
files="$work/f1.bin $work/f2.bin $work/f3.bin"

for set in 1025 1100; do
	for mode in "" --connection-per-request; do
		me=$work/c$set$mode
		mkdir "$me"
		before=$(connections)
		run_client "$work/r" -s "127.0.0.1:$port" -n "c$set$mode" -d "$me" -c "$set" $mode $files
		used=$(($(connections) - before))
		if [ -n "$mode" ]; then
			# register, public key, then an upload and a confirmation for each file.
			want=8
		else
			want=1
		fi
		check "$set ${mode:-one connection}: exit 0, all files stored byte for byte" \
			eval 'exit_is 0 && stored "$srv" "$me" $files'
		check "$set ${mode:-one connection}: $want connection(s) for the first run" test "$used" -eq "$want"
		rm -rf "$srv/files/$(client_id "$me")"
		before=$(connections)
		run_client "$work/r" -s "127.0.0.1:$port" -d "$me" -c "$set" $mode $files
		used=$(($(connections) - before))
		# reconnect or public key, then two per file.
		[ -n "$mode" ] && want=7
		check "$set ${mode:-one connection}: the second run too, in $want connection(s)" \
			eval 'exit_is 0 && stored "$srv" "$me" $files && test "$used" -eq "$want"'
	done
done

# 16 clients at once, half of each code set, every other one with a connection per request.
pids=
for i in $(seq 1 16); do
	me=$work/many$i
	mkdir "$me"
	head -c $((200000 + i * 1000)) /dev/urandom >"$me/own.bin"
	set=1025
	[ $((i % 2)) -eq 0 ] && set=1100
	mode=
	[ $((i % 4)) -lt 2 ] && mode=--connection-per-request
	(
		"$EFCLIENT" -s "127.0.0.1:$port" -n "many$i" -d "$me" -c "$set" $mode "$me/own.bin" $files \
			>"$me/out" 2>"$me/err"
		echo $? >"$me/status"
	) &
	pids="$pids $!"
done
for pid in $pids; do
	wait "$pid"
done
ok_all=1
for i in $(seq 1 16); do
	me=$work/many$i
	if [ "$(cat "$me/status")" != 0 ]; then
		ok_all=0
		note "client $i: exit $(cat "$me/status")" "$(cat "$me/err")"
	fi
done
check "16 clients at once all exit 0" test "$ok_all" -eq 1
ok_all=1
for i in $(seq 1 16); do
	stored "$srv" "$work/many$i" "$work/many$i/own.bin" $files || ok_all=0
done
check "and each one's four files are stored byte for byte" test "$ok_all" -eq 1
check "under 16 different client ids" test "$(for i in $(seq 1 16); do client_id "$work/many$i"; done | sort -u | wc -l)" -eq 16

done_testing
