#!/bin/bash
# Names on display (efserver-protocol(7), Names): a client whose name holds
# a C1 control and a bidi override uploads a file whose name also holds an
# invalid byte and a bidi isolate. efsession's log and every efctl output
# show those characters escaped, \xNN and \u{...} in text and \uXXXX in
# JSON, and never one of their bytes raw; the database keeps them byte for byte.

. "${top_srcdir:-.}/tests/efctl-lib.sh"
need python3 python3
need sqlite3 sqlite3
setup

# U+009B (CSI, a terminal's ESC [), U+202E (RIGHT-TO-LEFT OVERRIDE), U+2066 (LEFT-TO-RIGHT ISOLATE), U+0085 (NEL).
name=$'mallory\xc2\x9b31m\xe2\x80\xaegpj.exe'
file=$'report\xff\xe2\x81\xa6x\xc2\x85.txt'
name_text='mallory\u{9b}31m\u{202e}gpj.exe'
file_text='report\xff\u{2066}x\u{85}.txt'
name_json='"mallory\u009b31m\u202egpj.exe"'
file_json='"report\ufffd\u2066x\u0085.txt"'

# raw FILE: FILE holds none of the bytes of those characters.
raw() {
	! LC_ALL=C grep -q $'\xc2\x9b\|\xe2\x80\xae\|\xe2\x81\xa6\|\xc2\x85\|\xff' "$1"
}

srv=$work/state
server_start "$srv" || exit 1
mkdir "$work/m"
printf 'quarterly\n' >"$work/$file"
run_client "$work/c" -q -s "127.0.0.1:$port" -n "$name" -d "$work/m" "$work/$file"
wait_sessions
id=$(client_id "$work/m")
check "setup: the client registered and its file is stored" eval '[ "$status" -eq 0 ] && [ -n "$id" ] && cmp -s "$work/$file" "$srv/files/$id/$file"'
check "the database keeps both names byte for byte" eval '[ "$(sqlite3 "$srv/efserver.db" "SELECT hex(name) FROM clients")" = "$(printf %s "$name" | od -An -tx1 | tr -d " \n" | tr a-f A-F)" ] && [ "$(sqlite3 "$srv/efserver.db" "SELECT hex(file_name) FROM files")" = "$(printf %s "$file" | od -An -tx1 | tr -d " \n" | tr a-f A-F)" ]'
check "efsession's log shows both names escaped" eval 'grep -qF -- "$name_text" "$SERVER_LOG" && grep -qF -- "$file_text" "$SERVER_LOG"'
check "efsession's log holds none of their bytes raw" raw "$SERVER_LOG"
S=(-s "$srv")

ctl "${S[@]}" clients
check "clients: the name escaped, nothing raw" eval 'ctl_is 0 && out_has "$name_text" && raw "$work/ctl.out"'
ctl "${S[@]}" clients --json
check "clients --json: valid JSON with the name as \\uXXXX, nothing raw" eval 'ctl_is 0 && json_ok && out_has "$name_json" && raw "$work/ctl.out"'
ctl "${S[@]}" files
check "files: both names escaped, nothing raw" eval 'ctl_is 0 && out_has "$name_text" && out_has "$file_text" && raw "$work/ctl.out"'
ctl "${S[@]}" files --json
check "files --json: valid JSON with both names as \\uXXXX, the path too, nothing raw" eval 'ctl_is 0 && json_ok && out_has "\"client\": $name_json" && out_has "\"file_name\": $file_json" && out_has "\"path\": \"files/$id/${file_json#\"}" && raw "$work/ctl.out"'
check "files --json: a JSON reader gets the valid characters back as they were" python3 -c '
import json, sys
row = json.load(open(sys.argv[1]))[0]
assert row["client"] == "mallory\u009b31m\u202egpj.exe", row["client"]
assert row["file_name"] == "report\ufffd\u2066x\u0085.txt", row["file_name"]
' "$work/ctl.out"
ctl "${S[@]}" show "$id"
check "show: the name and the file escaped, nothing raw" eval 'ctl_is 0 && out_has "name:        $name_text" && out_has "$file_text" && raw "$work/ctl.out"'
ctl "${S[@]}" show "$name" --json
check "show NAME --json: found by its raw name, shown as \\uXXXX, nothing raw" eval 'ctl_is 0 && json_ok && out_has "{\"name\": $name_json" && raw "$work/ctl.out"'
rm "$srv/files/$id/$file"
ctl "${S[@]}" verify
check "verify: the missing file reported with both names escaped, nothing raw" eval 'ctl_is 1 && out_has "files/$id/$file_text ($name_text): missing" && raw "$work/ctl.out"'
ctl "${S[@]}" remove-client "$id"
check "remove-client: the name escaped, nothing raw" eval 'ctl_is 0 && out_has "Removed client $name_text ($id)" && raw "$work/ctl.out"'
done_testing
