#!/bin/bash
# A conforming client's requests on an efsession run with --compat seed004
# are served exactly as without it: every replay capture that does not set
# --compat itself passes unchanged under it (REPLAY_OPTIONS), response
# bytes, bytes read, exit status, log lines and state alike. The seed-004
# dialect takes only connections that open as its client's do.
. "${top_srcdir:-.}/tests/lib.sh"

for f in "$top_srcdir"/tests/replay/*.replay; do
	name=$(basename "$f")
	grep -q '^run .*--compat' "$f" && continue
	if REPLAY_OPTIONS="--compat seed004" TMPDIR=$WORK "$REPLAY" "$f" >"$WORK/tap" 2>&1 &&
		! grep -q '^not ok' "$WORK/tap"; then
		pass "$name under --compat seed004: $(grep -c '^ok' "$WORK/tap") checks pass unchanged"
	else
		fail "$name under --compat seed004"
		grep -A12 '^not ok\|^Bail' "$WORK/tap" | diag
	fi
done
done_testing
