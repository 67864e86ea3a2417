#!/bin/bash
# Provisioning and closed doors, end to end over TCP: efctl add-client
# creates a client with its key pair and hands over me.info and priv.key,
# with which efclient uploads to an efsession whose registration is closed
# (a register request there is refused), byte for byte; add-client refuses
# a name efsession would refuse, a taken name and existing identity files,
# and leaves nothing half-made when it cannot write them. efctl tells a
# client's id from another client's name (--id, --name, and a refusal
# naming both), and shows, verifies and cleans kept-aside copies.

. "${top_srcdir:-.}/tests/efctl-lib.sh"
need python3 python3
need sqlite3 sqlite3
setup

srv=$work/state
mkdir -p "$srv"
S=(-s "$srv")
printf 'first version\n' >"$work/doc.txt"
head -c 200000 /dev/urandom >"$work/data.bin"

ctl "${S[@]}" add-client alice --out "$work/alice"
check "add-client: exit 0, saying where the identity is" eval 'ctl_is 0 && out_has "Added client alice (" && out_has "with a 1024-bit RSA key; its identity is in $work/alice/me.info and $work/alice/priv.key."'
alice=$(client_id "$work/alice")
check "add-client: DIR made 0700, me.info and priv.key 0600" \
	test "$(stat -c %a "$work/alice") $(stat -c %a "$work/alice/me.info") $(stat -c %a "$work/alice/priv.key")" = "700 600 600"
check "add-client: me.info holds the name, the id and the key of priv.key (the seeds' formats)" \
	eval '[ "$(sed -n 1p "$work/alice/me.info")" = alice ] && echo "$alice" | grep -qx "[0-9a-f]\{32\}" && [ "$(sed -n 3p "$work/alice/me.info")" = "$(cat "$work/alice/priv.key")" ]'
check "add-client: the client is stored with its public key pinned and no AES key" \
	eval '[ "$(sqlite3 "$srv/efserver.db" "SELECT name, length(public_key), aes_key IS NULL FROM clients WHERE lower(hex(id)) = '"'"'$alice'"'"'")" = "alice|160|1" ]'

server_start "$srv" --registration closed || exit 1
run_client "$work/c" -q -s "127.0.0.1:$port" -d "$work/alice" "$work/doc.txt" "$work/data.bin"
wait_sessions
check "efclient --dir with the provisioned identity uploads to a server whose registration is closed" exit_is 0
check "its files are stored byte for byte" stored "$srv" "$work/alice" "$work/doc.txt" "$work/data.bin"
check "it reconnected (1027 then 2105), registering nothing" eval 'grep -q "Reconnected '"'"'alice'"'"'" "$SERVER_LOG" && ! grep -q "Registered" "$SERVER_LOG"'
run_client "$work/c" -q -s "127.0.0.1:$port" -c 1100 -d "$work/alice" "$work/doc.txt"
check "the 1100 set works too: the key efctl pinned is the one the client sends" exit_is 0
mkdir "$work/mallory"
run_client "$work/c" -q -s "127.0.0.1:$port" -n mallory -d "$work/mallory" "$work/doc.txt"
wait_sessions
check "a client registering itself is refused (2101)" eval '! exit_is 0 && [ ! -e "$work/mallory/me.info" ]'
check "and the server logged that registration is closed" grep -q "registration is closed" "$SERVER_LOG"

# A verified file uploaded again: kept aside until the client confirms, then in place.
printf 'second version\n' >"$work/doc2.txt"
mkdir "$work/v2" && cp "$work/doc2.txt" "$work/v2/doc.txt"
run_client "$work/c" -q -s "127.0.0.1:$port" -d "$work/alice" "$work/v2/doc.txt"
wait_sessions
check "a verified file uploaded again and confirmed replaces the verified copy" \
	eval 'exit_is 0 && cmp -s "$work/doc2.txt" "$srv/files/$alice/doc.txt" && [ -z "$(ls "$srv/pending/$alice" 2>/dev/null)" ]'
check "the server kept it aside until the confirmation" eval 'grep -q "Kept .doc.txt. for .alice. aside" "$SERVER_LOG" && grep -q "the copy kept aside replaced the verified one" "$SERVER_LOG"'

ctl "${S[@]}" add-client alice --out "$work/again"
check "add-client of a taken name: exit 1, says so, writes nothing" eval 'ctl_is 1 && err_has "the name '"'"'alice'"'"' is taken" && [ ! -e "$work/again" ]'
ctl "${S[@]}" add-client bob --out "$work/alice"
check "add-client into a directory holding an identity: exit 1, replaces nothing, adds no client" eval 'ctl_is 1 && err_has "$work/alice/me.info is there already" && [ "$(sed -n 1p "$work/alice/me.info")" = alice ] && [ "$(sqlite3 "$srv/efserver.db" "SELECT count(*) FROM clients")" = 1 ]'
for bad in 0123456789abcdef0123456789ABCDEF 01234567-89ab-4def-8011-2233445566ff $'tab\there' $'bad\xffutf8' ''; do
	ctl "${S[@]}" add-client "$bad" --out "$work/bad"
	check "add-client refuses the name efsession refuses: $(printf %q "$bad")" eval 'ctl_is 2 && [ ! -e "$work/bad" ]'
done
check "the id-shaped name is refused as such" eval 'ctl "${S[@]}" add-client 0123456789abcdef0123456789abcdef --out "$work/bad"; err_has "shaped like a client id"'
ctl "${S[@]}" add-client carol --out "$work/carol" --rsa-bits 2048
check "add-client --rsa-bits 2048" eval 'ctl_is 0 && out_has "with a 2048-bit RSA key"'
ctl "${S[@]}" show carol
check "show: carol's key is RSA 2048, she has no AES key yet" eval 'ctl_is 0 && out_has "RSA 2048 bits" && out_has "AES key:     none yet"'
ctl "${S[@]}" add-client dave --out "$work/dave" --rsa-bits 1000
check "add-client --rsa-bits outside 1024..4096 or not whole bytes: exit 2" eval 'ctl_is 2 && [ ! -e "$work/dave" ]'
ctl "${S[@]}" add-client dave
check "add-client without --out: exit 2" ctl_is 2

# Writing the identity fails (a read-only directory): the client is removed again.
ro=$work/ro
mkdir -p "$ro"
if mount --bind "$ro" "$ro" 2>/dev/null && mount -o remount,bind,ro "$ro" 2>/dev/null; then
	ctl "${S[@]}" add-client erin --out "$ro"
	check "add-client whose files cannot be written: exit 4, says why" eval 'ctl_is 4 && err_has "Read-only file system"'
	check "and the client it added is gone again" eval '[ "$(sqlite3 "$srv/efserver.db" "SELECT count(*) FROM clients WHERE name = '"'"'erin'"'"'")" = 0 ]'
	umount "$ro"
else
	skip "add-client whose files cannot be written" "cannot bind-mount here"
	skip "and the client it added is gone again" "cannot bind-mount here"
fi

# A name shaped like an id, from before that rule: efctl never confuses the two.
carol=$(client_id "$work/carol")
sqlite3 "$srv/efserver.db" "INSERT INTO clients (id, name, registered, last_seen) VALUES (x'00112233445566778899aabbccddeeff', '$alice', '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z')"
recount "$srv"
ctl "${S[@]}" show "$alice"
check "an argument that is one client's id and another's name is refused, naming both" \
	eval 'ctl_is 2 && err_has "'"'"'$alice'"'"' is the id of client '"'"'alice'"'"' and the name of client 00112233445566778899aabbccddeeff; say which with --id or --name"'
ctl "${S[@]}" remove-client "$alice"
check "remove-client refuses it too, removing nothing" eval 'ctl_is 2 && [ "$(sqlite3 "$srv/efserver.db" "SELECT count(*) FROM clients")" = 3 ]'
ctl "${S[@]}" show --id "$alice"
check "show --id: the client with that id" eval 'ctl_is 0 && out_has "name:        alice"'
dashed=$(echo "$alice" | sed 's/^\(.\{8\}\)\(.\{4\}\)\(.\{4\}\)\(.\{4\}\)/\1-\2-\3-\4-/' | tr a-f A-F)
ctl "${S[@]}" files --id "$dashed"
check "files --id in the 8-4-4-4-12 form, in capitals" eval 'ctl_is 0 && out_has "doc.txt"'
ctl "${S[@]}" show --name "$alice" --json
check "show --name: the client of that name" eval 'ctl_is 0 && json_ok && out_has "\"id\": \"00112233445566778899aabbccddeeff\""'
ctl "${S[@]}" show --id carol
check "--id with something that is no id: exit 2" eval 'ctl_is 2 && err_has "--id wants 32 hex digits"'
ctl "${S[@]}" show --name "$carol"
check "--name never finds a client by id" eval 'ctl_is 3 && err_has "no client named"'
ctl "${S[@]}" show carol --id "$carol"
check "two ways of naming a client at once: exit 2" ctl_is 2
ctl "${S[@]}" verify --name alice
check "verify --name" eval 'ctl_is 0 && out_has "2 files checked"'
ctl "${S[@]}" remove-client --name "$alice"
check "remove-client --name removes the impostor only" eval 'ctl_is 0 && [ "$(sqlite3 "$srv/efserver.db" "SELECT count(*) FROM clients WHERE name = '"'"'alice'"'"'")" = 1 ]'

# Kept-aside copies as a crash or an unconfirmed upload leaves them.
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p "$srv/pending/$alice"
cp "$work/doc.txt" "$srv/pending/$alice/$token"
sqlite3 "$srv/efserver.db" "UPDATE files SET pending_name = '$token', pending_size = $(stat -c %s "$work/doc.txt"), pending_checksum = $(cksum <"$work/doc.txt" | cut -d' ' -f1), pending_received = '2024-05-01T12:00:00.000Z' WHERE file_name = 'doc.txt'"
recount "$srv"
ctl "${S[@]}" files --id "$alice"
check "files: a kept-aside copy on its own line under its file" eval 'ctl_is 0 && grep -q "^  kept aside .* pending *2024-05-01T12:00:00.000Z\$" "$work/ctl.out"'
ctl "${S[@]}" files --json
check "files --json: the kept-aside copy with its path, size, checksum and time" python3 -c '
import json, sys
rows = {r["file_name"]: r for r in json.load(open(sys.argv[1]))}
k = rows["doc.txt"]["kept_aside"]
assert k["path"] == "pending/%s/%s" % (sys.argv[2], sys.argv[3]) and k["size"] == 14, k
assert k["received"] == "2024-05-01T12:00:00.000Z" and rows["data.bin"]["kept_aside"] is None
' "$work/ctl.out" "$alice" "$token"
ctl "${S[@]}" verify
check "verify: the kept-aside copy is checked too" eval 'ctl_is 0 && out_has "(0 encrypted at rest, 0 given up with no copy, 1 kept aside): 0 problems."'
flip_bit "$srv/pending/$alice/$token" 3
ctl "${S[@]}" verify
check "verify: a changed byte in it is reported under its own path" eval 'ctl_is 1 && out_has "pending/$alice/$token (alice): checksum"'
cp "$work/doc.txt" "$srv/pending/$alice/$token"
orphan_token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
cp "$work/doc.txt" "$srv/pending/$alice/$orphan_token"
ctl "${S[@]}" gc
check "gc: a kept-aside copy no row names is listed, the one a row names is not" eval 'ctl_is 0 && out_has "would remove pending/$alice/$orphan_token: copy kept aside that no database row names" && ! grep -q "$token" "$work/ctl.out"'
ctl "${S[@]}" gc --force
check "gc --force removes it, and only it" eval 'ctl_is 0 && [ ! -e "$srv/pending/$alice/$orphan_token" ] && [ -e "$srv/pending/$alice/$token" ]'

# A confirmation interrupted between its rename and its commit.
mv "$srv/pending/$alice/$token" "$srv/files/$alice/doc.txt"
ctl "${S[@]}" verify
check "verify: an interrupted confirmation is reported as such, and the file checked against the copy kept aside" \
	eval 'ctl_is 1 && out_has "files/$alice/doc.txt (alice): an interrupted confirmation" && out_has "1 problem."'
ctl "${S[@]}" gc
check "gc lists it as a confirmation to complete" eval 'ctl_is 0 && out_has "would complete files/$alice/doc.txt: a confirmation a crash interrupted"'
ctl "${S[@]}" gc --force
check "gc --force completes it and removes the empty directory of kept-aside copies" eval 'ctl_is 0 && out_has "completed files/$alice/doc.txt" && out_has "removed pending/$alice: empty directory of kept-aside copies" && [ ! -e "$srv/pending/$alice" ]'
ctl "${S[@]}" verify
check "verify afterwards: the row describes the file under the name" eval 'ctl_is 0 && out_has "0 problems"'
check "the row was rolled forward, still verified" eval '[ "$(sqlite3 "$srv/efserver.db" "SELECT size, verified, pending_name IS NULL FROM files WHERE file_name = '"'"'doc.txt'"'"'")" = "14|1|1" ]'

mkdir -p "$srv/pending/$alice" && cp "$work/doc.txt" "$srv/pending/$alice/$orphan_token"
ctl "${S[@]}" remove-client --id "$alice"
check "remove-client removes the client's kept-aside copies too" eval 'ctl_is 0 && [ ! -e "$srv/files/$alice" ] && [ ! -e "$srv/pending/$alice" ]'
done_testing
