#!/bin/bash
# efctl migrate --to URL: a state directory served on SQLite moves to an
# empty PostgreSQL database (a PostgreSQL 15 this test starts for itself,
# tests/pg-lib.sh) with every client, key, file row, kept-aside copy and
# count of the last hour; efctl then lists and verifies the same on either,
# and efsession goes on serving the same clients from PostgreSQL. A
# database that holds clients already, and bad input, are refused with
# their documented status and change nothing.

. "${top_srcdir:-.}/tests/efctl-lib.sh"
. "${top_srcdir:-.}/tests/pg-lib.sh"
"$EFSESSION" --help | grep -q -- '--database' ||
	skip_all "efsession was built without PostgreSQL (configure --with-postgresql; Debian package libpq-dev)"
need python3 python3
need sqlite3 sqlite3
pg_need
setup
trap 'stop_peers; pg_stop; cleanup' EXIT

srv=$work/state
two_clients "$srv"
stop_server
S=(-s "$srv")
pg_start
P=(-s "$srv" --database "$PG_URI")

# listings LABEL OPTION...: what efctl shows of the database, in JSON, in $work/LABEL.
listings() {
	local label=$1
	shift
	{
		"$EFCTL" "$@" clients --json
		"$EFCTL" "$@" files --json
		"$EFCTL" "$@" usage --json --min-free-space 0 | python3 -c '
import json, sys
u = json.load(sys.stdin)
del u["free_space"]
print(json.dumps(u, sort_keys=True))'
	} >"$work/$label" 2>&1
}

listings sqlite "${S[@]}"
ctl "${S[@]}" migrate --to "$PG_URI"
check "migrate: copies the database into the empty PostgreSQL database" \
	eval 'ctl_is 0 && out_has "Copied 2 clients, 3 file rows, 2 registrations and 1 bad padding of the last hour"'
check "migrate: never prints the URI" eval '! grep -qF "$PG_URI" "$work/ctl.out" "$work/ctl.err"'
listings pg "${P[@]}"
check "clients, files and usage read the same from PostgreSQL" cmp -s "$work/sqlite" "$work/pg"
cmp -s "$work/sqlite" "$work/pg" || diff "$work/sqlite" "$work/pg" | sed 's/^/#   /'
check "the server's count of clients follows from the rows copied" \
	[ "$(pg_psql -A -t -c "SELECT clients FROM totals")" = 2 ]
ctl "${P[@]}" verify
check "verify on PostgreSQL: every file checked, the kept-aside copy missing on disk reported" \
	eval 'ctl_is 1 && out_has "3 files checked"'
ctl "${S[@]}" verify
sqlite_verify=$(cat "$work/ctl.out")
ctl "${P[@]}" verify
check "and the same report as on SQLite" [ "$(cat "$work/ctl.out")" = "$sqlite_verify" ]

pg_psql -q -c "UPDATE clients SET last_seen = '2000-01-01T00:00:00.000Z'"
before=$(pg_psql -A -t -c "SELECT name, last_seen FROM clients ORDER BY name")
ctl "${S[@]}" migrate --to "$PG_URI"
check "migrate again: refused, the PostgreSQL database holds clients (status 1)" \
	eval 'ctl_is 1 && err_has "already holds clients"'
check "and nothing changed there" [ "$(pg_psql -A -t -c "SELECT name, last_seen FROM clients ORDER BY name")" = "$before" ]
ctl "${S[@]}" migrate --to "$srv/efserver.db"
check "migrate --to a path: a usage error (status 2)" eval 'ctl_is 2 && err_has "not a PostgreSQL URI"'
ctl "${S[@]}" migrate
check "migrate without --to: a usage error" eval 'ctl_is 2 && err_has "migrate needs --to URL"'
ctl "${P[@]}" migrate --to "$PG_URI"
check "migrate with --database: a usage error" eval 'ctl_is 2 && err_has "migrate copies the SQLite database"'

# efsession on the migrated database: alice's key and files are there, she confirms a new upload.
server_start "$srv" --database "$PG_URI" || exit 1
printf 'after\n' >"$work/a.txt"
run_client "$work/c" -q -s "127.0.0.1:$port" -d "$work/alice" "$work/a.txt"
wait_sessions
check "efsession serves alice from PostgreSQL with the key she had: a new upload stored" \
	eval 'stored "$srv" "$work/alice" "$work/a.txt"'
check "its row is in PostgreSQL, not in SQLite" \
	eval '[ "$(pg_psql -A -t -c "SELECT count(*) FROM files WHERE file_name = '\''a.txt'\'' AND verified = 1")" = 1 ] &&
		[ "$(sqlite3 "$srv/efserver.db" "SELECT count(*) FROM files WHERE file_name = '\''a.txt'\''")" = 0 ]'
done_testing
