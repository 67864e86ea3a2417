#!/bin/bash
# Each request syncs what its answer promises is on disk, and nothing more,
# before it answers (efsession(8), "What each request commits"): one sync
# of the WAL for each kind of request that commits, the file and its
# directory besides for an upload, the directory for a given-up copy, the
# state directory only when the WAL is new; a process per request, as the
# seeds' 1025-set client makes them, and no more syncs for it. strace counts
# the syncs of each efsession and the first write of its response.
. "${top_srcdir:-.}/tests/lib.sh"

need strace strace
[ -x "$REPLAY" ] || skip_all "tests/replay-run is not built"
efs=$(cd "$(dirname "$EFSESSION")" && pwd)/efsession
strace -f -qq -o /dev/null -e trace=none true 2>/dev/null || skip_all "strace cannot trace here (no ptrace)"

# Each efsession under strace, its trace in $WORK/trace.N (N counting the runs from 1).
cat >"$WORK/efsession" <<WRAP
#!/bin/bash
export ASAN_OPTIONS="\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}detect_leaks=0"
n=\$(ls "$WORK" | grep -c '^trace\.')
exec strace -f -qq -y -o "$WORK/trace.\$((n + 1))" -e trace=fsync,fdatasync,write "$efs" "\$@"
WRAP
chmod +x "$WORK/efsession"

# syncs N: what run N synced before its first response, one word each, in order: wal, db,
# state (the state directory), files (files/), dir (any other directory), file (any file).
syncs() {
	local line p words=()
	while IFS= read -r line; do
		[[ $line == *" write(1<"* ]] && break
		[[ $line == *sync\(* ]] || continue
		p=${line#*<}
		p=${p%%>*}
		case $p in
		*-wal) words+=(wal) ;;
		*.db) words+=(db) ;;
		"$STATE") words+=(state) ;;
		"$STATE/files") words+=(files) ;;
		*) if [ -d "$p" ]; then words+=(dir); else words+=(file); fi ;;
		esac
	done <"$WORK/trace.$1"
	echo "${words[*]}"
}

# replay NAME STATE-LINE: the replay file $WORK/NAME.replay, its state kept in $WORK/NAME.
replay() {
	mkdir -p "$WORK/$1"
	rm -f "$WORK"/trace.*
	EFSESSION=$WORK/efsession REPLAY_KEEP=1 TMPDIR=$WORK/$1 "$REPLAY" "$WORK/$1.replay" >"$WORK/$1.tap"
	if grep -q '^not ok\|^Bail' "$WORK/$1.tap"; then
		fail "$1: the replay runs as written"
		sed 's/^/# /' "$WORK/$1.tap"
	else
		pass "$1: the replay runs as written"
	fi
	STATE=$(ls -d "$WORK/$1"/efreplay.* | grep -v '\.log' | head -1)
}

# expect N WHAT SYNCS: run N synced exactly SYNCS before it answered, in whatever order.
expect() {
	local got
	got=$(syncs "$1")
	check "$2 syncs: ${3:-nothing} (got: ${got:-nothing})" [ "$(sorted $got)" = "$(sorted $3)" ]
}

sorted() {
	printf '%s\n' "$@" | sort | paste -sd' '
}

# A run of the replay: an upload by the fixture's alice of NAME (content SEED), or a checksum request CODE on NAME answered RESPONSE.
upload() {
	printf 'run\n> alice 03 u16:1028 u32:pad(1000)+259 u32:pad(1000) name:"%s" content:1000:%s\n' "$1" "$2"
	printf '< 03 u16:2103 u32:279 alice u32:pad(1000) name:"%s" sum:1000:%s\nexit 0\n' "$1" "$2"
}
about() {
	printf 'run\n> alice 03 u16:%s u32:255 name:"%s"\n< 03 %s\nexit 0\n' "$1" "$2" "$3"
}
{
	echo "# One request per process, from the fixture's alice and a new client,"
	echo "# after a first commit that leaves the WAL neither new nor empty."
	about 1030 never.txt "u16:2107 u32:0"
	upload a.txt 1
	upload b.txt 2
	about 1029 b.txt "u16:2104 u32:16 alice"
	upload b.txt 3
	about 1030 a.txt "u16:2104 u32:16 alice"
	about 1031 a.txt "u16:2104 u32:16 alice"
	about 1029 never.txt "u16:2107 u32:0"
	cat <<'REPLAY'
run
> zero-id 03 u16:1025 u32:255 name:"carol"
< 03 u16:2100 u32:16 capture-id
exit 0
run
> id 03 u16:1026 u32:415 name:"carol" spki
< 03 u16:2102 u32:144 id any:128
exit 0
run
> id 03 u16:1027 u32:255 name:"carol"
< 03 u16:2105 u32:144 id any:128
exit 0
REPLAY
} >"$WORK/requests.replay"
replay requests
expect 2 "the first upload into a new client directory (1028)" "files file dir wal"
expect 3 "an upload (1028)" "file dir wal"
expect 4 "a confirmation (1029)" "wal"
# Kept aside: the client's new directory in pending/ is synced into pending/, and the copy into it.
expect 5 "an upload over a confirmed copy (1028), kept aside" "file dir dir wal"
expect 6 "a resend request (1030)" "wal"
expect 7 "a give-up (1031)" "dir wal"
expect 8 "a refused confirmation (its last seen is committed after the answer)" ""
expect 9 "a registration (1025)" "wal"
expect 10 "a key exchange (1026)" "wal"
expect 11 "a reconnection (1027)" "wal"

cat >"$WORK/new.replay" <<'REPLAY'
# The first registration on an empty state directory, then the next.
state empty
run
> zero-id 03 u16:1025 u32:255 name:"dave"
< 03 u16:2100 u32:16 capture-id
exit 0
run
> zero-id 03 u16:1025 u32:255 name:"erin"
< 03 u16:2100 u32:16 any:16
exit 0
REPLAY
replay new
got=$(syncs 1)
check "the first efsession on a new state directory syncs it after creating the WAL, before answering (got: $got)" \
	eval '[[ " $got " == *" wal "*" state "* ]]'
expect 2 "the next registration" "wal"

# Many processes, one request each: no more syncs before the answers, and the WAL stays short.
{
	echo "# Registrations, a process each."
	for i in $(seq 60); do
		printf 'run --registrations-per-hour 0\n> zero-id 03 u16:1025 u32:255 name:"many-%d"\n< 03 u16:2100 u32:16 any:16\nexit 0\n' "$i"
	done
} >"$WORK/many.replay"
replay many
bad=0 dirs=0
for i in $(seq 60); do
	case $(syncs "$i") in
	wal) ;;
	# The first commit into an emptied WAL: the directory (the WAL may be new), the WAL's new header, the commit.
	"state wal wal") dirs=$((dirs + 1)) ;;
	*) bad=$((bad + 1)) ;;
	esac
done
check "60 registrations, a process each: each synced the WAL once before answering, or after an emptying of the WAL its header and the state directory too ($bad did otherwise)" [ "$bad" -eq 0 ]
emptied=$(cat "$WORK"/trace.* | grep -c 'sync(.*\.db>')
check "the database itself was synced after the answers, when a closing process emptied the WAL ($emptied times)" \
	[ "$emptied" -ge 1 ]
# The first registration may find the WAL as the seeded state left it, emptied.
check "the state directory was synced at most once per emptying of the WAL ($dirs times)" [ "$dirs" -le $((emptied + 1)) ]
wal=$(stat -c %s "$STATE/efserver.db-wal")
check "the WAL is short after them ($wal bytes)" [ "$wal" -le $((64 * 4120 + 32)) ]

done_testing
