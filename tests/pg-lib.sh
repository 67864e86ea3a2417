# What the tests that need a PostgreSQL server add to tests/lib.sh: a real
# PostgreSQL 15 from Debian, made for the test in a directory of its own
# (initdb) and run there by an unprivileged user, with fsync on, reached on a
# Unix socket in that directory and, if asked, on a TCP address, also one
# inside a network namespace; stopped and removed when the test exits, however
# it exits.
#
#   pg_need                  skip the whole test unless PostgreSQL 15 is here:
#                            call it before the first check
#   pg_start [--listen ADDRESS] [--netns NS] [-c NAME=VALUE]...
#                            initdb, start, wait until it accepts connections,
#                            create the database $PG_DB; settings for
#                            postgresql.conf with -c
#   pg_start_netns NS ADDRESS [-c NAME=VALUE]...
#                            the same, listening on ADDRESS inside the network
#                            namespace NS (which must hold that address)
#   pg_restart               pg_ctl restart -m fast, for fault tests
#   pg_stop                  stop the server, remove its directory (also at exit)
#   pg_psql [PSQL OPTION]... psql on $PG_DB over the Unix socket
#   pg_pid                   the postmaster's process id
#
# After pg_start, exported: PG_URI, the libpq URI of $PG_DB on the Unix socket
# (postgresql:///efserver?host=DIR&port=PORT&user=efserver), and with --listen
# PG_TCP_URI, the same database over TCP (postgresql://efserver@ADDRESS:PORT/efserver).
#
# PostgreSQL refuses to run as root: under root it runs as $PG_OS_USER
# (nobody unless set), which owns the server's directory and nothing else.
# Both sockets accept any role without a password (trust), only from this
# machine: the tests' servers hold nothing but test data.

# Once: a second tests/lib.sh would make a second scratch directory.
declare -F done_testing >/dev/null || . "${top_srcdir:-.}/tests/lib.sh"

: "${PG_BINDIR:=/usr/lib/postgresql/15/bin}"
: "${PG_OS_USER:=nobody}"
PG_ROLE=efserver
PG_DB=efserver
PG_DIR=
PG_DATA=
PG_LOG=
PG_PORT=
PG_NETNS=
PG_URI=
PG_TCP_URI=

trap 'pg_stop; cleanup' EXIT
trap 'exit 1' INT TERM HUP

pg_need() {
	local p
	for p in initdb pg_ctl psql; do
		[ -x "$PG_BINDIR/$p" ] ||
			skip_all "PostgreSQL 15 is not installed (Debian package postgresql; no $PG_BINDIR/$p)"
	done
	if [ "$(id -u)" -eq 0 ]; then
		need runuser util-linux
		id -u "$PG_OS_USER" >/dev/null 2>&1 ||
			skip_all "no user $PG_OS_USER to run PostgreSQL as (it refuses to run as root)"
	fi
}

# pg_as COMMAND...: COMMAND as the user the server runs as, in its directory.
pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd "$PG_DIR" && runuser -u "$PG_OS_USER" -- "$@")
	else
		(cd "$PG_DIR" && "$@")
	fi
}

# pg_ctl_run ACTION [OPTION]...: pg_ctl ACTION on the test's server, waiting
# for it; started in the server's network namespace, where the postmaster
# that start and restart launch must live.
pg_ctl_run() {
	local action=$1
	shift
	if [ -n "$PG_NETNS" ] && [ "$action" != stop ]; then
		ip netns exec "$PG_NETNS" runuser -u "$PG_OS_USER" -- \
			"$PG_BINDIR/pg_ctl" "$action" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s "$@"
	else
		pg_as "$PG_BINDIR/pg_ctl" "$action" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s "$@"
	fi
}

pg_pid() {
	head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null
}

# pg_alive PID: PID runs (a zombie does not: a postmaster's parent is gone,
# and whoever inherits it may reap it late).
pg_alive() {
	local state
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)
	[ -n "$state" ] && [ "$state" != Z ]
}

pg_psql() {
	"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$PG_URI" "$@"
}

# pg_bail WHAT LOG: the server could not be set up; LOG says why.
pg_bail() {
	[ -f "$2" ] && tail -n 20 "$2" | diag
	echo "Bail out! $1"
	exit 1
}

pg_start() {
	local listen= settings=() s try host
	while [ $# -gt 0 ]; do
		case $1 in
		--listen) listen=$2 ;;
		--netns) PG_NETNS=$2 ;;
		-c) settings+=("$2") ;;
		*) pg_bail "pg_start: unknown argument $1" /dev/null ;;
		esac
		shift 2
	done
	[ -n "$PG_NETNS" ] && [ -z "$listen" ] && pg_bail "pg_start: --netns without --listen" /dev/null
	PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/efpg.XXXXXX") || pg_bail "cannot make a directory for PostgreSQL" /dev/null
	PG_DATA=$PG_DIR/data
	PG_LOG=$PG_DIR/server.log
	if [ "$(id -u)" -eq 0 ]; then
		chown "$PG_OS_USER:" "$PG_DIR" || pg_bail "cannot give $PG_DIR to $PG_OS_USER" /dev/null
	fi
	# --no-sync: a fresh cluster need not reach the disk; the server itself runs with fsync on.
	pg_as "$PG_BINDIR/initdb" -D "$PG_DATA" -U "$PG_ROLE" --auth=trust -E UTF8 --locale=C --no-sync \
		>"$PG_DIR/initdb.log" 2>&1 || pg_bail "initdb failed" "$PG_DIR/initdb.log"
	echo "include 'efserver-test.conf'" >>"$PG_DATA/postgresql.conf"
	# samenet: the addresses of the networks the server's own interfaces are on.
	[ -n "$listen" ] && echo "host all all samenet trust" >>"$PG_DATA/pg_hba.conf"
	# A port of its own, in case ADDRESS is shared (the socket's name carries it too).
	for try in 1 2 3 4 5; do
		PG_PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		{
			echo "listen_addresses = '$listen'"
			echo "port = $PG_PORT"
			echo "unix_socket_directories = '$PG_DIR'"
			echo "fsync = on"
			echo "synchronous_commit = on"
			for s in "${settings[@]}"; do
				echo "${s%%=*} = '${s#*=}'"
			done
		} | pg_as tee "$PG_DATA/efserver-test.conf" >/dev/null
		rm -f "$PG_LOG"
		pg_ctl_run start >"$PG_DIR/pg_ctl.log" 2>&1 && break
		cat "$PG_DIR/pg_ctl.log" >>"$PG_LOG"
		grep -q "could not bind" "$PG_LOG" || pg_bail "PostgreSQL did not start" "$PG_LOG"
		[ "$try" = 5 ] && pg_bail "PostgreSQL found no free port" "$PG_LOG"
	done
	PG_URI="postgresql:///$PG_DB?host=$PG_DIR&port=$PG_PORT&user=$PG_ROLE"
	host=$listen
	case $host in *:*) host="[$host]" ;; esac
	[ -n "$listen" ] && PG_TCP_URI="postgresql://$PG_ROLE@$host:$PG_PORT/$PG_DB"
	export PG_URI PG_TCP_URI
	"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "postgresql:///postgres?host=$PG_DIR&port=$PG_PORT&user=$PG_ROLE" \
		-c "CREATE DATABASE $PG_DB" >"$PG_DIR/createdb.log" 2>&1 ||
		pg_bail "PostgreSQL does not accept connections" "$PG_DIR/createdb.log"
}

pg_start_netns() {
	local ns=$1 address=$2
	shift 2
	pg_start --netns "$ns" --listen "$address" "$@"
}

# pg_restart: 0 once the server, stopped fast (sessions cut, transactions
# rolled back), accepts connections again.
pg_restart() {
	pg_ctl_run restart -m fast >>"$PG_DIR/pg_ctl.log" 2>&1
}

# pg_stop: the server stopped, forcibly if it does not stop in time, and its
# directory removed.
pg_stop() {
	local pid i
	[ -n "$PG_DIR" ] || return 0
	pid=$(pg_pid)
	if [ -n "$pid" ] && pg_alive "$pid"; then
		pg_ctl_run stop -m fast >/dev/null 2>&1 || pg_ctl_run stop -m immediate >/dev/null 2>&1 ||
			kill -KILL "$pid" 2>/dev/null
		for i in $(seq 1 100); do
			pg_alive "$pid" || break
			sleep 0.1
		done
	fi
	rm -rf "$PG_DIR"
	PG_DIR= PG_DATA= PG_LOG= PG_PORT= PG_NETNS= PG_URI= PG_TCP_URI=
	return 0
}
