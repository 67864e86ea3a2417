#!/bin/bash
# The store's unit tests (tests/test-store) on PostgreSQL: the same rules,
# refusals, counters, concurrent writers and crashes inside transactions as
# on SQLite, against a PostgreSQL 15 that this test starts for itself on a
# Unix socket (tests/pg-lib.sh); each test of test-store empties the
# database it begins with.
. "${top_srcdir:-.}/tests/pg-lib.sh"

"$EFSESSION" --help | grep -q -- '--database' ||
	skip_all "efsession was built without PostgreSQL (configure --with-postgresql; Debian package libpq-dev)"
pg_need
pg_start

# Each check of test-store, counted here.
status=0
EFSERVER_TEST_DATABASE=$PG_URI "$top_builddir/tests/test-store" >"$WORK/tap" 2>"$WORK/stderr" || status=$?
while IFS= read -r line; do
	case $line in
	"ok "*" # SKIP "*) skip "${line%% # SKIP *}" "${line#* # SKIP }" ;;
	"ok "*) pass "${line#ok * - }" ;;
	"not ok "*) fail "${line#not ok * - }" ;;
	"#"*) echo "$line" ;;
	esac
done <"$WORK/tap"
check "test-store exits 0 on PostgreSQL (status $status)" [ "$status" -eq 0 ]
check "and writes nothing on stderr" [ ! -s "$WORK/stderr" ]
[ -s "$WORK/stderr" ] && diag "$WORK/stderr"
check "the database is left with the schema of the store" \
	[ "$(pg_psql -A -t -c 'SELECT version FROM efserver_schema')" = 3 ]

# A database that cannot be reached: the request is answered 2107, the exit status is 111, and the
# log says why without the URI's password, however the URI is written; efctl says so the same way.
mkdir "$WORK/state"
# A 1025 registration of "x": the zero id, version 3, code 1025, 255 bytes of name.
{
	head -c 16 /dev/zero
	printf '\x03\x01\x04\xff\x00\x00\x00x'
	head -c 254 /dev/zero
} >"$WORK/1025"
# Each unreachable server is tried again for a while (efsession(8)): all of them at once.
uris=('postgresql://efserver:s3cretpw@127.0.0.1:1/efserver' "postgresql://efserver:s3cr%zzetpw@127.0.0.1:1/x"
	"postgresql:///efserver?host=$PG_DIR/nowhere&password=s3cretpw")
pids=()
for i in "${!uris[@]}"; do
	{
		"$EFSESSION" --state-dir "$WORK/state" --database "${uris[$i]}" --log-target stderr <"$WORK/1025" \
			>"$WORK/out$i" 2>"$WORK/log$i"
		echo $? >"$WORK/status$i"
	} &
	pids+=($!)
	{
		"$top_builddir/efctl" --state-dir "$WORK/state" --database "${uris[$i]}" clients >"$WORK/ctl$i" \
			2>"$WORK/ctllog$i"
		echo $? >"$WORK/ctlstatus$i"
	} &
	pids+=($!)
done
wait "${pids[@]}"
for i in "${!uris[@]}"; do
	check "unreachable (${uris[$i]}): answered 2107, exit status 111" \
		eval '[ "$(cat "$WORK/status$i")" = 111 ] && [ "$(od -An -tx1 "$WORK/out$i" | tr -d " \n")" = 033b0800000000 ]'
	check "and the log says why, never the password" \
		eval 'grep -q "Cannot open the PostgreSQL database: PostgreSQL: " "$WORK/log$i" && ! grep -q "s3cr" "$WORK/log$i"'
	check "efctl: exit status 4, the reason, never the password" \
		eval '[ "$(cat "$WORK/ctlstatus$i")" = 4 ] && grep -q "cannot open the PostgreSQL database" "$WORK/ctllog$i" &&
			! grep -q "s3cr" "$WORK/ctllog$i"'
done

# A server that is down when a session starts, and back a moment later: the session waits for it
# (efsession(8), --database) and registers the client.
pg_ctl_run stop -m fast
status=0
"$EFSESSION" --state-dir "$WORK/state" --database "$PG_URI" --log-target stderr <"$WORK/1025" >"$WORK/out" \
	2>"$WORK/log" &
session=$!
sleep 1
pg_ctl_run start
wait "$session" || status=$?
check "a session started while PostgreSQL was down is served once it is back: 2100, exit status 0" \
	eval '[ "$status" = 0 ] && [ "$(od -An -tx1 -N3 "$WORK/out" | tr -d " \n")" = 033408 ]'
check "and the client is registered" [ "$(pg_psql -A -t -c "SELECT count(*) FROM clients WHERE name = 'x'")" = 1 ]
done_testing
