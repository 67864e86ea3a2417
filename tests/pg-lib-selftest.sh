#!/bin/bash
# tests/pg-lib.sh, the PostgreSQL the tests start for themselves: it starts
# as an unprivileged user with fsync on, only on its Unix socket, and
# answers psql at the URI it exports; a restart keeps the data under a new
# postmaster; pg_stop, and the end of a test that fails or is killed, leave
# no process and no file behind. Where network namespaces can be made, the
# same inside one, over TCP on the namespace's address.
. "${top_srcdir:-.}/tests/pg-lib.sh"
pg_need

# gone PID DIR: no process PID and no directory DIR any more.
gone() {
	local i
	for i in $(seq 1 50); do
		pg_alive "$1" || break
		sleep 0.1
	done
	! pg_alive "$1" && [ ! -e "$2" ]
}

# sql QUERY: the single value psql prints for QUERY, on the Unix socket.
sql() {
	pg_psql -A -t -c "$1"
}

pg_start
check "pg_start exports a URI on the Unix socket in the server's directory" \
	eval '[ "$PG_URI" = "postgresql:///efserver?host=$PG_DIR&port=$PG_PORT&user=efserver" ] &&
		[ -S "$PG_DIR/.s.PGSQL.$PG_PORT" ]'
check "psql at that URI reaches the database efserver" [ "$(sql 'SELECT current_database()')" = efserver ]
owner=$(ps -o user= -p "$(pg_pid)")
if [ "$(id -u)" -eq 0 ]; then
	check "the server runs as $PG_OS_USER, not as root, and owns its directory" \
		eval '[ "$owner" = "$PG_OS_USER" ] && [ "$(stat -c %U "$PG_DATA")" = "$PG_OS_USER" ]'
else
	check "the server runs as the user running the test" [ "$owner" = "$(id -un)" ]
fi
check "fsync and synchronous commits are on" [ "$(sql 'SHOW fsync')/$(sql 'SHOW synchronous_commit')" = on/on ]
check "no TCP listener unless asked" eval '[ -z "$(sql "SHOW listen_addresses")" ] && [ -z "$PG_TCP_URI" ]'
check "a table written and read back" \
	eval 'pg_psql -c "CREATE TABLE t (v text); INSERT INTO t VALUES ('\''kept'\'')" &&
		[ "$(sql "SELECT v FROM t")" = kept ]'

pid=$(pg_pid)
check "pg_restart returns once the server accepts connections again" pg_restart
check "after the restart: a new postmaster, the same data" \
	eval '[ "$(pg_pid)" != "$pid" ] && ! pg_alive "$pid" && [ "$(sql "SELECT v FROM t")" = kept ]'

pid=$(pg_pid)
dir=$PG_DIR
pg_stop
check "pg_stop: the server has stopped and its directory is gone" gone "$pid" "$dir"
check "pg_stop again does nothing" pg_stop

# child HOW: a test that starts a server and then ends HOW (a failed exit or
# a kill); prints the postmaster's id and the server's directory.
child() {
	top_srcdir=$top_srcdir top_builddir=$top_builddir bash -c '
		. "$top_srcdir/tests/pg-lib.sh"
		pg_start
		echo "$(pg_pid) $PG_DIR"
		case $1 in
		exit) exit 3 ;;
		term) kill -TERM $$; sleep 10 ;;
		esac' child "$1"
}
for how in exit term; do
	out=$(child "$how" 2>/dev/null)
	read -r pid dir <<<"$out"
	check "a test that ends by $how leaves no server and no directory" eval '[ -n "$pid" ] && gone "$pid" "$dir"'
done

# Inside a network namespace, on a TCP address of its own.
ns=efpg$$
trap 'pg_stop; ip netns del "$ns" 2>/dev/null; cleanup' EXIT
if [ "$(id -u)" -ne 0 ] || ! { ip netns add "$ns" && ip -n "$ns" link set lo up &&
	ip -n "$ns" addr add 10.99.0.1/24 dev lo; } 2>/dev/null; then
	skip "the server in a network namespace, over TCP" "cannot make a network namespace with an address here"
else
	pg_start_netns "$ns" 10.99.0.1
	in_ns_sql() {
		ip netns exec "$ns" "$PG_BINDIR/psql" -X -A -t -c "$1" "$PG_TCP_URI"
	}
	check "pg_start_netns: psql inside the namespace reaches it at $PG_TCP_URI" \
		[ "$(in_ns_sql 'SELECT inet_server_addr()')" = 10.99.0.1 ]
	check "it listens on that address only" [ "$(sql 'SHOW listen_addresses')" = 10.99.0.1 ]
	pid=$(pg_pid)
	pg_psql -c "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')"
	check "pg_restart: a new postmaster in the namespace, with the same data, over TCP" \
		eval 'pg_restart && [ "$(pg_pid)" != "$pid" ] && [ "$(in_ns_sql "SELECT v FROM t")" = kept ]'
	pid=$(pg_pid)
	dir=$PG_DIR
	pg_stop
	check "pg_stop: the server in the namespace has stopped and its directory is gone" gone "$pid" "$dir"
	ip netns del "$ns"
fi
done_testing
