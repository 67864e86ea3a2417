#!/bin/bash
# efctl on a populated state directory served by a live efsession: every
# command lists, shows, exports, verifies, removes and cleans what it should,
# refuses bad input with its documented status and changes nothing then, and
# runs beside uploads without disturbing them.

. "${top_srcdir:-.}/tests/efctl-lib.sh"
# The JSON output is checked with python3, the database with sqlite3.
need python3 python3
need sqlite3 sqlite3
setup

srv=$work/state
server_start "$srv" || exit 1
printf 'hello\n' >"$work/h.txt"
head -c 300000 /dev/urandom >"$work/r.bin"
: >"$work/empty"
printf 'x' >"$work/it's \"quoted\".txt"
mkdir "$work/alice" "$work/bob"
run_client "$work/c" -q -s "127.0.0.1:$port" -n alice -d "$work/alice" "$work/h.txt" "$work/r.bin" "$work/empty"
run_client "$work/c" -q -s "127.0.0.1:$port" -n 'bob "the" büilder' -d "$work/bob" "$work/h.txt" \
	"$work/it's \"quoted\".txt"
wait_sessions
alice=$(client_id "$work/alice")
bob=$(client_id "$work/bob")
check "setup: two clients stored four files" eval '[ -n "$alice" ] && [ -n "$bob" ] && stored "$srv" "$work/alice" "$work/r.bin"'
S=(-s "$srv")

ctl "${S[@]}" clients
check "clients: a table with both names and ids" eval 'ctl_is 0 && out_has "NAME" && out_has "alice" && out_has "$alice" && out_has "bob \"the\" büilder" && out_has "$bob"'
check "clients: alice has 3 files" eval 'grep -q "^alice .* 3\$" "$work/ctl.out"'
ctl "${S[@]}" clients --json
check "clients --json: valid JSON holding the escaped name and the ids" eval 'ctl_is 0 && json_ok && out_has "\"bob \\\"the\\\" büilder\"" && out_has "\"id\": \"$alice\""'

ctl "${S[@]}" files
check "files: every client's files, with sizes and checksums" eval 'ctl_is 0 && [ $(grep -c "" "$work/ctl.out") -eq 6 ] && out_has "293.0 KiB" && out_has "$(cksum <"$work/r.bin" | cut -d" " -f1)"'
ctl "${S[@]}" files --client "$alice"
check "files --client ID: only that client's three" eval 'ctl_is 0 && [ $(grep -c "" "$work/ctl.out") -eq 4 ] && ! grep -q quoted "$work/ctl.out"'
ctl "${S[@]}" files --client 'bob "the" büilder' --json
check "files --client NAME --json: valid JSON, a quote in a file name escaped" eval 'ctl_is 0 && json_ok && out_has "\"file_name\": \"it'"'"'s \\\"quoted\\\".txt\"" && out_has "\"verified\": true"'
check "files --json: the fields a script needs, with the plaintext size" python3 -c '
import json, sys
rows = json.load(open(sys.argv[1]))
r = [x for x in rows if x["file_name"] == "h.txt"][0]
assert set(r) >= {"client_id", "client", "file_name", "path", "size", "checksum", "verified", "status", "attempts", "received"}
assert r["size"] == 6 and r["status"] == "stored" and r["path"].startswith("files/")
' "$work/ctl.out"

aes=$(sqlite3 "$srv/efserver.db" "SELECT hex(aes_key) FROM clients WHERE name = 'alice'" 2>/dev/null)
ctl "${S[@]}" show alice
check "show NAME: id, key fingerprint and files" eval 'ctl_is 0 && out_has "$alice" && out_has "RSA 1024 bits, SHA-256" && out_has "AES key:     issued, 128 bits" && out_has "r.bin"'
ctl "${S[@]}" show "$bob" --json
check "show ID --json: valid JSON" eval 'ctl_is 0 && json_ok && out_has "\"aes_key_bits\": 128"'

ctl "${S[@]}" verify
check "verify: a clean store checks out, exit 0" eval 'ctl_is 0 && out_has "5 files checked (0 encrypted at rest, 0 given up with no copy): 0 problems."'
cp "$srv/files/$alice/r.bin" "$work/r.keep"
flip_bit "$srv/files/$alice/r.bin" 1000
rm "$srv/files/$bob/h.txt"
before=$(snapshot "$srv")
ctl "${S[@]}" verify
check "verify: a changed byte and a missing file are each reported, exit 1" eval 'ctl_is 1 && out_has "files/$alice/r.bin (alice): checksum" && out_has "files/$bob/h.txt (bob \"the\" büilder): missing" && out_has "2 problems"'
ctl "${S[@]}" verify --client alice
check "verify --client: only that client's, exit 1" eval 'ctl_is 1 && out_has "3 files checked" && out_has "1 problem."'
ctl "${S[@]}" verify --client bob\ \"the\"\ büilder --checksum crc32
check "verify --checksum crc32 against cksum sums: the surviving file differs" eval 'ctl_is 1 && out_has "quoted"'
check "verify changed nothing" eval '[ "$before" = "$(snapshot "$srv")" ]'
cp "$work/r.keep" "$srv/files/$alice/r.bin"

ctl "${S[@]}" show nobody
check "show of an unknown client: exit 3 and says so" eval 'ctl_is 3 && err_has "no client named or with the id '"'"'nobody'"'"'"'
ctl "${S[@]}" files --client 00000000000000000000000000000000
check "files of an unknown id: exit 3" ctl_is 3
ctl "${S[@]}" clients --force
check "an option the command does not take: exit 2 with its usage" eval 'ctl_is 2 && err_has "Usage: efctl" && err_has "clients [--json]"'
ctl "${S[@]}" frobnicate
check "an unknown command: exit 2" eval 'ctl_is 2 && err_has "unknown command"'
ctl "${S[@]}" show
check "a missing argument: exit 2" eval 'ctl_is 2 && err_has "wrong number of arguments"'
ctl "${S[@]}" verify --checksum md5
check "an unknown checksum: exit 2" ctl_is 2
ctl -s "$work/nowhere" clients
check "a missing state directory: exit 4, and the message says how to name another" \
	eval 'ctl_is 4 && err_has "cannot use the state directory $work/nowhere: No such file or directory (give efsession'"'"'s with --state-dir DIR)"'
mkdir "$work/blank"
ctl -s "$work/blank" files
check "a state directory without a database: exit 4, nothing created" eval 'ctl_is 4 && err_has "no efserver database" && [ -z "$(ls "$work/blank")" ]'
check "bad input changed nothing" eval '[ "$(snapshot "$srv" | sed /r.bin/d)" = "$(echo "$before" | sed /r.bin/d)" ]'
for cmd in clients files show verify remove-client gc decrypt; do
	ctl "$cmd" --help
	check "$cmd --help: its usage, exit 0" eval 'ctl_is 0 && out_has "Usage: efctl" && out_has "$cmd"'
done
ctl --help
check "--help lists every command" eval 'ctl_is 0 && out_has "remove-client NAME|ID" && out_has "decrypt FILE"'

# What killed sessions and interrupted removals leave.
touch "$srv/tmp/upload-4194305-00aa"
touch "$srv/tmp/upload-$$-00bb"
orphan=0123456789abcdef0123456789abcdef
mkdir -p "$srv/files/$orphan" && echo left >"$srv/files/$orphan/x"
mkdir "$work/carol"
run_client "$work/c" -q -s "127.0.0.1:$port" -n carol -d "$work/carol" "$work/h.txt"
wait_sessions
carol=$(client_id "$work/carol")
rm "$srv/files/$carol/h.txt"
before=$(snapshot "$srv")
ctl "${S[@]}" gc
check "gc: lists a dead session's temporary file, a row without its file, an orphan and an empty directory" eval 'ctl_is 0 && out_has "would remove tmp/upload-4194305-00aa" && out_has "would remove files/$carol/h.txt: database row" && out_has "would remove files/$orphan: directory of a client no longer" && out_has "would remove files/$bob/h.txt" && out_has "would remove files/$carol: empty client directory" && out_has "efctl gc --force removes them"'
check "gc: a live process's temporary file is not listed" eval '! grep -q "upload-$$-" "$work/ctl.out"'
check "gc without --force changed nothing" eval '[ "$before" = "$(snapshot "$srv")" ]'
ctl "${S[@]}" gc --force
check "gc --force: removes them" eval 'ctl_is 0 && out_has "removed files/$orphan" && [ ! -e "$srv/tmp/upload-4194305-00aa" ] && [ -e "$srv/tmp/upload-$$-00bb" ] && [ ! -e "$srv/files/$orphan" ] && [ ! -e "$srv/files/$carol" ]'
ctl "${S[@]}" files --client carol
check "gc --force: the row whose file was gone is deleted, the client kept" eval 'ctl_is 0 && [ $(grep -c "" "$work/ctl.out") -eq 1 ]'
rm "$srv/tmp/upload-$$-00bb"
ctl "${S[@]}" gc
check "gc afterwards: nothing to clean" eval 'ctl_is 0 && out_has "Nothing to clean."'
ctl "${S[@]}" verify
check "verify afterwards: all good" ctl_is 0
sqlite3 "$srv/efserver.db" "UPDATE clients SET stored_files = stored_files + 1 WHERE name = 'alice'"
ctl "${S[@]}" verify
check "verify: a client's counter that a recount contradicts is a problem of the database, exit 1" \
	eval 'ctl_is 1 && out_has "the database: counters that disagree with a recount: client '"'"'alice'"'"'" && out_has "1 problem."'
sqlite3 "$srv/efserver.db" "UPDATE clients SET stored_files = stored_files - 1 WHERE name = 'alice'"

ctl "${S[@]}" remove-client 'bob "the" büilder'
check "remove-client NAME: says what it removed" eval 'ctl_is 0 && out_has "Removed client bob \"the\" büilder ($bob) and its 1 file."'
ctl "${S[@]}" clients
check "remove-client: the client is gone, the others stay" eval '! grep -q "$bob" "$work/ctl.out" && out_has alice && out_has carol'
check "remove-client: its directory is gone" test ! -e "$srv/files/$bob"
check "remove-client: its file rows are gone" eval '[ "$(sqlite3 "$srv/efserver.db" "SELECT count(*) FROM files WHERE hex(client_id) = upper('"'"'$bob'"'"')")" = 0 ]'
ctl "${S[@]}" remove-client "$bob"
check "remove-client again: exit 3" eval 'ctl_is 3 && err_has "no client"'
mkdir -p "$srv/files/$orphan" && echo left >"$srv/files/$orphan/x"
ctl "${S[@]}" remove-client "$orphan"
check "remove-client ID finishes an interrupted removal (rows gone, directory left)" eval 'ctl_is 0 && out_has "Removed what was left" && [ ! -e "$srv/files/$orphan" ]'
run_client "$work/c" -q -s "127.0.0.1:$port" -d "$work/bob" "$work/h.txt"
check "a removed client can no longer upload" eval '! exit_is 0'

# Beside live uploads: every command works, and every upload still succeeds.
head -c 3000000 /dev/urandom >"$work/m.bin"
(
	for i in 1 2 3 4 5 6; do
		mkdir -p "$work/u$i"
		"$EFCLIENT" -q -s "127.0.0.1:$port" -n "up$i" -d "$work/u$i" "$work/m.bin" "$work/h.txt" || echo "upload $i failed"
	done >"$work/uploads.log" 2>&1
) &
uploads=$!
bad=0
while kill -0 "$uploads" 2>/dev/null; do
	for args in clients files verify gc "gc --force" "show alice"; do
		# shellcheck disable=SC2086
		"$EFCTL" "${S[@]}" $args >"$work/live.out" 2>&1 || { bad=1; note "efctl $args: $(cat "$work/live.out")"; }
	done
done
wait "$uploads"
wait_sessions
check "every command succeeded while uploads ran" [ "$bad" -eq 0 ]
check "every upload beside them succeeded" eval '[ ! -s "$work/uploads.log" ] || { note "$(cat "$work/uploads.log")"; false; }'
ctl "${S[@]}" verify
check "afterwards every stored file checks out" eval 'ctl_is 0 && out_has "0 problems"'
check "the AES key of alice was read from the database" [ -n "$aes" ]
check "no AES key in any output" eval '[ -n "$aes" ] && ! grep -qi -- "$aes" "$work/all-output"'

done_testing
