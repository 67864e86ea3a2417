#!/bin/bash
# Every harness runs every input of its committed seed corpus once, without
# a crash, a leak or a sanitizer report: the corpus as a regression test
# (only in a build configured with --enable-fuzzing).
. "${top_srcdir:-.}/tests/lib.sh"

for h in wire der session; do
	corpus=$top_srcdir/tests/fuzz/corpus/$h
	n=$(find "$corpus" -type f | wc -l)
	if TMPDIR=$WORK "$top_builddir/tests/fuzz/fuzz-$h" -runs=0 "$corpus" >"$WORK/$h.log" 2>&1; then
		pass "fuzz-$h runs its $n seed inputs cleanly"
	else
		fail "fuzz-$h runs its $n seed inputs cleanly"
		tail -40 "$WORK/$h.log" | diag
	fi
done
done_testing
