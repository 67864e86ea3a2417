#!/bin/bash
# The replay suite (tests/replay/*.replay) once more with the store on
# PostgreSQL: efsession runs with --database on a PostgreSQL 15 this test
# starts for itself (tests/pg-lib.sh), the fixture is seeded through the
# store, and every response must be the same bytes as on SQLite. A file
# that prepares SQLite's database file, and a check written in SQL only
# SQLite speaks, are skipped, saying so.
. "${top_srcdir:-.}/tests/pg-lib.sh"

"$EFSESSION" --help | grep -q -- '--database' ||
	skip_all "efsession was built without PostgreSQL (configure --with-postgresql; Debian package libpq-dev)"
pg_need
pg_start

for file in "$top_srcdir"/tests/replay/*.replay; do
	name=${file##*/}
	status=0
	REPLAY_DATABASE=$PG_URI "$REPLAY" "$file" >"$WORK/tap" 2>&1 || status=$?
	while IFS= read -r line; do
		case $line in
		"1..0 # SKIP "*) skip "$name" "${line#1..0 # SKIP }" ;;
		"ok "*" # SKIP "*) skip "${line%% # SKIP *}" "${line#* # SKIP }" ;;
		"ok "*) pass "${line#ok * - }" ;;
		"not ok "*) fail "${line#not ok * - }" ;;
		"Bail out!"*) fail "$name: ${line#Bail out! }" ;;
		"#"*) echo "$line" ;;
		esac
	done <"$WORK/tap"
	[ "$status" -eq 0 ] || fail "$name: the runner exits with status $status"
done
done_testing
