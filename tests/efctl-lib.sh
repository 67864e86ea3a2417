# What the efctl and encryption-at-rest tests add to tests/client-lib.sh:
# running efctl and looking at what it printed and how it exited.

. "${top_srcdir:-.}/tests/client-lib.sh"

EFCTL=$(cd "$top_builddir" && pwd)/efctl
[ -x "$EFCTL" ] || skip_all "efctl is not built"

# tmp_host: this host as names in tmp/ carry it (efctl(8), gc).
tmp_host() {
	uname -n | tr -c 'A-Za-z0-9.\n-' '_' | cut -c1-64
}

# ctl [OPTION|ARGUMENT]...: efctl, stdout in $work/ctl.out, stderr in $work/ctl.err, status in $ctl_status.
ctl() {
	"$EFCTL" "$@" >"$work/ctl.out" 2>"$work/ctl.err"
	ctl_status=$?
	cat "$work/ctl.out" "$work/ctl.err" >>"$work/all-output"
	return 0
}

# ctl_is STATUS: the last efctl exited with STATUS.
ctl_is() {
	[ "$ctl_status" -eq "$1" ] || {
		note "efctl exited $ctl_status, expected $1" "$(cat "$work/ctl.out" "$work/ctl.err")"
		return 1
	}
}

# out_has TEXT / err_has TEXT: the last efctl printed TEXT on stdout / stderr.
out_has() {
	grep -qF -- "$1" "$work/ctl.out" || {
		note "expected on stdout: $1" "$(cat "$work/ctl.out")"
		return 1
	}
}

err_has() {
	grep -qF -- "$1" "$work/ctl.err" || {
		note "expected on stderr: $1" "$(cat "$work/ctl.err")"
		return 1
	}
}

# json_ok: the last stdout is one valid JSON document (python3 parses it: a test using it needs python3).
json_ok() {
	python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$work/ctl.out"
}

# recount STATE: after rows were changed by hand, the counters of the limits as the store keeps them.
recount() {
	sqlite3 "$1/efserver.db" "UPDATE clients SET
		stored_bytes = (SELECT coalesce(sum(CASE WHEN status = 0 THEN size ELSE 0 END + coalesce(pending_size, 0)), 0)
			FROM files WHERE client_id = clients.id),
		stored_files = (SELECT count(*) FROM files WHERE client_id = clients.id AND status = 0);
		UPDATE totals SET clients = (SELECT count(*) FROM clients)"
}

# snapshot STATE: the database rows and the files on disk, to compare before and after.
snapshot() {
	(
		"$EFCTL" -s "$1" files --json
		"$EFCTL" -s "$1" clients --json
		cd "$1" && find files tmp -printf '%p %s\n' | sort && find files -type f -exec cksum {} + | sort
	) 2>&1
}

# two_clients STATE: efsession serving STATE on $port (running after), alice
# storing h.txt and r.bin (300000 bytes), bob h.txt; $alice and $bob their
# ids; then a copy kept aside for bob's h.txt (40 bytes) and a bad padding
# of alice's now, written into the SQLite database as sessions would record
# them, and the counters recounted. One check, of the files stored. Needs
# sqlite3.
two_clients() {
	two_state=$1
	server_start "$two_state" || exit 1
	printf 'hello\n' >"$work/h.txt"
	head -c 300000 /dev/urandom >"$work/r.bin"
	mkdir "$work/alice" "$work/bob"
	run_client "$work/c" -q -s "127.0.0.1:$port" -n alice -d "$work/alice" "$work/h.txt" "$work/r.bin"
	run_client "$work/c" -q -s "127.0.0.1:$port" -n bob -d "$work/bob" "$work/h.txt"
	wait_sessions
	alice=$(client_id "$work/alice")
	bob=$(client_id "$work/bob")
	check "setup: alice stored two files, bob one" \
		eval 'stored "$two_state" "$work/alice" "$work/h.txt" "$work/r.bin" && stored "$two_state" "$work/bob" "$work/h.txt"'
	sqlite3 "$two_state/efserver.db" "UPDATE files SET pending_name = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', pending_size = 40,
		pending_checksum = 1, pending_received = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
		WHERE file_name = 'h.txt' AND client_id = x'$bob';
		INSERT INTO bad_paddings (client_id, at) VALUES (x'$alice', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
	recount "$two_state"
}
