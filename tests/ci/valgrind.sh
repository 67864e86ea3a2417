#!/bin/bash
# valgrind --error-exitcode=1 --leak-check=full: end-to-end uploads with
# efclient over TCP to efsession under systemd-socket-activate (both code
# sets, one connection per request too, the seed-004 dialect, a resend
# forced by --fault-checksum), with both programs under valgrind; efclient
# against a server that closes after every response (tests/standin); and
# the replay captures piped into efsession under valgrind: no invalid
# access, no use of uninitialised memory, no leak. Uses the main build.
top=$(cd "$(dirname "$0")/../.." && pwd)
export top_srcdir=$top top_builddir=$top
. "$top/tests/lib.sh"
. "$top/tests/robust-lib.sh"

need valgrind valgrind
need_socket_activate
make -s -C "$top" efsession efclient tests/replay-run >"$WORK/build.log" 2>&1 &&
	{ make -s -C "$top" tests/standin >>"$WORK/build.log" 2>&1 || true; } || {
	diag "$WORK/build.log"
	echo "Bail out! cannot build efsession, efclient and tests/replay-run"
	exit 1
}
VG=(valgrind --quiet --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect,possible
	--errors-for-leak-kinds=definite,indirect,possible --track-fds=no)
# efsession under valgrind, each process's report in its own file.
# (start_server runs the program named efsession in EFSESSION's directory.)
mkdir -p "$WORK/vg"
cat >"$WORK/vg/efsession" <<WRAP
#!/bin/sh
exec ${VG[*]} --log-file=$WORK/vg-efsession.%p "$top/efsession" "\$@"
WRAP
chmod +x "$WORK/vg/efsession"
# A report file holds nothing but valgrind's own lines when all is well; any "==PID== " line with text is a finding.
clean_reports() {
	local f bad=0
	for f in "$WORK"/vg-"$1".*; do
		[ -e "$f" ] || continue
		if grep -q '^==[0-9]*== .' "$f"; then
			bad=1
			diag "$f" | head -40
		fi
	done
	return $bad
}
count_reports() { ls "$WORK"/vg-"$1".* 2>/dev/null | wc -l; }

dd if=/dev/urandom of="$WORK/a.bin" bs=1024 count=3000 status=none
dd if=/dev/urandom of="$WORK/b.bin" bs=1 count=17 status=none
SOCKET_ACTIVATE=${SOCKET_ACTIVATE:-$(command -v systemd-socket-activate)}
EFSESSION=$WORK/vg/efsession
start_server "$WORK/state" --fault-checksum 1 --compat all
for mode in "-c 1025" "-c 1100" "-c 1025 --connection-per-request" "-c 1100 --connection-per-request" \
	"--compat seed004"; do
	dir=$WORK/client-${mode// /}
	mkdir -p "$dir"
	# shellcheck disable=SC2086
	"${VG[@]}" --log-file="$WORK/vg-efclient.%p" "$top/efclient" -s "127.0.0.1:$PORT" -n "vg${#dir}${RANDOM}" \
		-d "$dir" --timeout 120 $mode "$WORK/a.bin" "$WORK/b.bin" >"$WORK/client.log" 2>&1
	rc=$?
	check "efclient $mode under valgrind uploads two files (one resent after a wrong checksum), exit 0" [ $rc -eq 0 ]
	[ $rc -eq 0 ] || diag "$WORK/client.log"
done
wait_sessions
stop_server
check "stored files are byte-identical to the originals" \
	[ "$(find "$WORK/state/files" -name a.bin -exec cmp -s {} "$WORK/a.bin" \; -print | wc -l)" -eq 5 ]
check "efsession under valgrind: no error and no leak in any of its $(count_reports efsession) processes" clean_reports efsession

# A server that closes the connection after each response, late: efclient opens new ones.
if [ -x "$top/tests/standin" ]; then
	"$top/tests/standin" --one-request --close-late --dir "$WORK/standin" --port-file "$WORK/standin.port" \
		2>"$WORK/standin.log" &
	standin=$!
	for _ in $(seq 1 100); do
		[ -s "$WORK/standin.port" ] && break
		sleep 0.05
	done
	mkdir -p "$WORK/client-standin"
	"${VG[@]}" --log-file="$WORK/vg-efclient.%p" "$top/efclient" -s "127.0.0.1:$(cat "$WORK/standin.port")" \
		-n wild -d "$WORK/client-standin" -k crc32-ciphertext --timeout 120 "$WORK/a.bin" "$WORK/b.bin" \
		>"$WORK/client.log" 2>&1
	rc=$?
	kill "$standin"
	wait "$standin" 2>/dev/null
	check "efclient under valgrind against a server that closes after each response, exit 0" [ $rc -eq 0 ]
	[ $rc -eq 0 ] || diag "$WORK/client.log"
else
	skip "efclient under valgrind against a server that closes after each response" "tests/standin needs zlib"
fi
check "efclient under valgrind: no error and no leak in any of its $(count_reports efclient) runs" clean_reports efclient

# The captures, piped into efsession under valgrind (whose exit status the runner checks).
for f in upload-1025 upload-1100 resend-1105 give-up-1031 bad-framing bad-public-key hostile-names hostile-keys \
	hostile-padding padding-oracle kept-aside verified-stranger key-rules state-orphaned \
	seed004-capture seed004-dialect tolerances limit-client-quota limit-client-max-files limit-max-bad-paddings \
	limit-max-refusals limit-registrations schema-v2; do
	EFSESSION=$WORK/vg/efsession "$top/tests/replay-run" "$top/tests/replay/$f.replay" >"$WORK/$f.tap" 2>&1
	rc=$?
	check "tests/replay/$f.replay passes with efsession under valgrind" [ $rc -eq 0 ]
	[ $rc -eq 0 ] || grep -v '^ok' "$WORK/$f.tap" | head -20 | diag
done
check "efsession under valgrind: no error and no leak in the $(count_reports efsession) processes of all runs" clean_reports efsession

# Some of them again with the store on PostgreSQL (tests/pg-lib.sh), where it is installed and built in.
. "$top/tests/pg-lib.sh"
rm -f "$WORK"/vg-efsession.*
if [ ! -x "$PG_BINDIR/initdb" ]; then
	skip "the captures on PostgreSQL" "PostgreSQL 15 is not installed (Debian package postgresql)"
elif ! "$top/efsession" --help | grep -q -- '--database'; then
	skip "the captures on PostgreSQL" "efsession was built without PostgreSQL (libpq-dev)"
else
	pg_start
	for f in upload-1025 resend-1105 give-up-1031 kept-aside verified-stranger key-rules padding-oracle \
		limit-client-quota limit-registrations; do
		REPLAY_DATABASE=$PG_URI EFSESSION=$WORK/vg/efsession "$top/tests/replay-run" "$top/tests/replay/$f.replay" \
			>"$WORK/$f-pg.tap" 2>&1
		rc=$?
		check "tests/replay/$f.replay passes on PostgreSQL with efsession under valgrind" [ $rc -eq 0 ]
		[ $rc -eq 0 ] || grep -v '^ok' "$WORK/$f-pg.tap" | head -20 | diag
	done
	check "efsession on PostgreSQL under valgrind: no error and no leak in the $(count_reports efsession) processes" \
		clean_reports efsession
fi
done_testing
