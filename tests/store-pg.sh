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
done_testing
