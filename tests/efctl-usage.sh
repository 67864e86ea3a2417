#!/bin/bash
# efctl usage on a state directory served over TCP: per client the bytes it
# stores (kept-aside copies included), its files, kept-aside copies, what
# is left of --client-quota and its bad paddings of the last hour, as the
# database counts them; server-wide the clients, the free space against
# --min-free-space and the registrations of the last hour per source
# address; in a table and in JSON, for every client or one; bad input
# refused with its documented status.

. "${top_srcdir:-.}/tests/efctl-lib.sh"
need python3 python3
need sqlite3 sqlite3
setup

srv=$work/state
two_clients "$srv"
# One more bad padding of alice's, over an hour old.
sqlite3 "$srv/efserver.db" "INSERT INTO bad_paddings (client_id, at) VALUES (x'$alice', '2000-01-01T00:00:00.000Z')"
S=(-s "$srv")

ctl "${S[@]}" usage
check "usage: a table of both clients" eval 'ctl_is 0 && out_has "NAME" && out_has "QUOTA LEFT" && out_has "BAD PADDINGS"'
check "usage: alice stores 293.0 KiB in 2 files, no quota, one bad padding in the last hour" \
	grep -qE "^alice +293\.0 KiB +2 +0 +- +1\$" "$work/ctl.out"
check "usage: bob stores 46 bytes in one file, one kept aside" grep -qE "^bob +46 bytes +1 +1 +- +0\$" "$work/ctl.out"
check "usage: the clients in all, and the free space against the default --min-free-space of 1 GiB" \
	eval 'out_has "clients:     2" && out_has "for uploads above --min-free-space 1.0 GiB"'
check "usage: two registrations from 127.0.0.1 in the last hour" grep -qE "^  127\.0\.0\.1 +2\$" "$work/ctl.out"

ctl "${S[@]}" usage --client bob --client-quota 1K
check "usage --client NAME --client-quota 1K: bob alone, 978 bytes left" \
	eval 'ctl_is 0 && grep -qE "^bob +46 bytes +1 +1 +978 bytes +0\$" "$work/ctl.out" && ! grep -q "^alice" "$work/ctl.out"'

ctl "${S[@]}" usage --json --client-quota 300K --min-free-space 0
check "usage --json: valid JSON" eval 'ctl_is 0 && json_ok'
check "usage --json: every field, with the database's counts" python3 -c '
import json, os, sys
u = json.load(open(sys.argv[1]))
c = {x["name"]: x for x in u["clients"]}
a, b = c["alice"], c["bob"]
assert a["id"] == sys.argv[2] and a["stored_bytes"] == 300006 and a["files"] == 2, a
assert a["kept_aside"] == 0 and a["bad_paddings_last_hour"] == 1 and a["quota_left"] == 7194, a
assert b["stored_bytes"] == 46 and b["files"] == 1 and b["kept_aside"] == 1 and b["quota_left"] == 307154, b
assert u["client_count"] == 2 and u["client_quota"] == 307200, u
f = u["free_space"]
assert f["min_free_space"] == 0 and f["bytes"] == f["left_for_uploads"] > 0, f
assert u["registrations_last_hour"] == [{"source": "127.0.0.1", "registrations": 2}], u
' "$work/ctl.out" "$alice"
ctl "${S[@]}" usage --json --id "$alice"
check "usage --json --id ID: that client alone, quota_left null without a quota" python3 -c '
import json, sys
u = json.load(open(sys.argv[1]))
assert [x["name"] for x in u["clients"]] == ["alice"] and u["clients"][0]["quota_left"] is None, u
' "$work/ctl.out"

ctl "${S[@]}" usage --client-quota lots
check "usage --client-quota lots: usage error, exit 2" eval 'ctl_is 2 && err_has "--client-quota wants bytes"'
ctl "${S[@]}" clients --min-free-space 1G
check "--min-free-space with another command: exit 2" eval 'ctl_is 2 && err_has "an option this command does not take"'
ctl "${S[@]}" usage --client carol
check "usage --client of no client: exit 3" eval 'ctl_is 3 && err_has "no client"'
ctl -s "$work/none" usage
check "usage of a missing state directory: exit 4" ctl_is 4
done_testing
