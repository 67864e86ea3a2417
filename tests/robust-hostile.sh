#!/bin/bash
# Hostile input the replay format cannot express: 10,000 registrations with
# random names (valid, taken, with control bytes, bad UTF-8, empty, without
# a NUL, noise after the NUL and in the ignored header id) from four
# connections at once, each answered as efserver-protocol(7) says, and the
# database holding exactly the clients that got 2100.
. "${top_srcdir:-.}/tests/lib.sh"
. "$top_srcdir/tests/robust-lib.sh"

SEED=${ROBUST_SEED:-$RANDOM}
echo "# seed $SEED (ROBUST_SEED=$SEED reproduces the names)"
mkdir -p "$WORK/register"
run_drive register register "$(cd "$top_builddir" && pwd)/efsession" "$WORK/register" 10000 "$SEED"
done_testing
