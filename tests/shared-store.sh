#!/bin/bash
# A state directory on a file system that makes no unnamed files (a FUSE
# mount, as NFS, CIFS and many shared file systems behave: O_TMPFILE is
# refused) and that two hosts share: uploads land whole through named files
# in tmp/, those names carry the host, a session killed mid-upload leaves one
# that efctl gc on its own host removes and on another host leaves alone.
# The second host is a UTS namespace with its own host name.

. "${top_srcdir:-.}/tests/efctl-lib.sh"
need bindfs bindfs
need unshare util-linux
[ "$(id -u)" = 0 ] || skip_all "mounting a FUSE file system and naming a second host need root"
[ -c /dev/fuse ] || skip_all "/dev/fuse is missing"
setup
mnt=$work/shared
mkdir "$work/under" "$mnt"
bindfs "$work/under" "$mnt" 2>"$work/bindfs.err" || skip_all "bindfs cannot mount here: $(cat "$work/bindfs.err")"
trap 'stop_peers; stop_server; umount "$mnt" 2>/dev/null; rm -rf "$WORK"' EXIT
srv=$mnt/state
host=$(tmp_host)
other=efhost-b.example

# other_host COMMAND...: COMMAND run as the second host (host name $other).
other_host() {
	unshare --uts sh -c 'hostname "$1" && shift && exec "$@"' sh "$other" "$@"
}

# upload_killed PORT FILE: start an upload of FILE through PORT, SIGKILL its
# session as soon as a new named file shows in tmp/; that name in $killed.
upload_killed() {
	local i name before
	before=$(ls "$srv/tmp")
	killed=
	for try in 1 2 3; do
		"$EFCLIENT" -q -s "127.0.0.1:$1" -n killed -d "$work/killed" "$2" >/dev/null 2>&1 &
		cpid=$!
		for i in $(seq 1 2000); do
			name=$(ls "$srv/tmp" 2>/dev/null | grep '^upload-' | grep -vxF -e "$before" -e '' | head -1)
			[ -n "$name" ] && break
			kill -0 "$cpid" 2>/dev/null || break
			sleep 0.005
		done
		if [ -n "$name" ]; then
			# upload-<host>-<pid>-<random>: the pid is the session's.
			pid=${name%-*}
			pid=${pid##*-}
			kill -KILL "$pid" 2>/dev/null
			wait "$cpid" 2>/dev/null
			[ -e "$srv/tmp/$name" ] && killed=$name && return 0
		fi
		wait "$cpid" 2>/dev/null
	done
	return 1
}

printf 'hello\n' >"$work/h.txt"
head -c 3000000 /dev/urandom >"$work/m.bin"
head -c 64000000 /dev/urandom >"$work/big.bin"
mkdir "$work/alice" "$work/killed"

server_start "$srv" || exit 1
run_client "$work/c" -q -s "127.0.0.1:$port" -n alice -d "$work/alice" "$work/h.txt" "$work/m.bin"
check "an upload to a state directory on a file system without O_TMPFILE succeeds" exit_is 0
wait_sessions
check "the files are stored whole" stored "$srv" "$work/alice" "$work/h.txt" "$work/m.bin"
head -c 1000000 /dev/urandom >"$work/m.bin"
run_client "$work/c" -q -s "127.0.0.1:$port" -d "$work/alice" "$work/m.bin"
wait_sessions
check "a second copy replaces the first" eval 'exit_is 0 && stored "$srv" "$work/alice" "$work/m.bin"'
check "nothing is left in tmp/" eval '[ -z "$(ls -A "$srv/tmp")" ]'

check "a session killed mid-upload leaves its named file in tmp/" upload_killed "$port" "$work/big.bin"
check "the name carries this host and the session's pid" eval 'case $killed in upload-"$host"-[0-9]*-????????????????) true ;; *) note "$killed"; false ;; esac'
stop_server

# The second host: its own efsession launcher on the same state directory.
real_launcher=$SOCKET_ACTIVATE
cat >"$work/other-launcher" <<EOF
#!/bin/sh
exec unshare --uts sh -c 'hostname "\$0" && exec "\$@"' $other $real_launcher "\$@"
EOF
chmod +x "$work/other-launcher"
SOCKET_ACTIVATE=$work/other-launcher
server_start "$srv" || exit 1
SOCKET_ACTIVATE=$real_launcher
mine=$killed
check "the second host's killed session leaves its own name" eval 'upload_killed "$port" "$work/big.bin" && case $killed in upload-"$other"-*) true ;; *) note "$killed"; false ;; esac'
theirs=$killed
mkdir "$work/bob"
run_client "$work/c" -q -s "127.0.0.1:$port" -n bob -d "$work/bob" "$work/h.txt" "$work/m.bin"
wait_sessions
check "the second host stores uploads in the same state directory" eval 'exit_is 0 && stored "$srv" "$work/bob" "$work/h.txt" "$work/m.bin"'
stop_server

ctl -s "$srv" gc
check "gc on this host lists its own dead session's file, not the other host's" eval 'ctl_is 0 && out_has "would remove tmp/$mine: temporary file of a session" && ! grep -q "$theirs" "$work/ctl.out" && out_has "1 temporary file of other hosts left alone"'
ctl -s "$srv" gc --force
check "gc --force on this host removes its own, leaves the other host's" eval 'ctl_is 0 && [ ! -e "$srv/tmp/$mine" ] && [ -e "$srv/tmp/$theirs" ]'
other_host "$EFCTL" -s "$srv" gc --force >"$work/ctl.out" 2>"$work/ctl.err"
ctl_status=$?
check "gc --force on the other host removes the other host's" eval 'ctl_is 0 && out_has "removed tmp/$theirs" && [ -z "$(ls -A "$srv/tmp")" ]'
ctl -s "$srv" verify
check "verify: every stored file is whole" ctl_is 0
check "alice's and bob's files are untouched" eval 'stored "$srv" "$work/alice" "$work/h.txt" "$work/m.bin" && stored "$srv" "$work/bob" "$work/h.txt" "$work/m.bin"' 
done_testing
