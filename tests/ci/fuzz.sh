#!/bin/bash
# Each libFuzzer harness (tests/fuzz) runs for FUZZ_SECONDS (default 60)
# from its committed seed corpus, built with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer: any crash, leak, timeout or sanitizer report
# fails the suite. Each TAP line states the executions reached. The tree is
# configured without PostgreSQL, which the harnesses do not use: efsession
# and efctl built so must say so when given a PostgreSQL database.
. "$(dirname "$0")/../robust-lib.sh"

command -v clang >/dev/null || ci_skip_all "clang is not installed (Debian packages clang and libclang-rt-14-dev)"
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return d && n ? 0 : 0; }\n' |
	clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null ||
	ci_skip_all "clang cannot link libFuzzer harnesses (Debian package libclang-rt-14-dev)"

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
WORK=$(mktemp -d /tmp/effuzz.XXXXXX)
# The session harness writes a state directory per input: on tmpfs, fsync costs nothing.
STATE_TMP=$(mktemp -d /dev/shm/effuzz.XXXXXX 2>/dev/null || mktemp -d "$WORK/state.XXXXXX")
trap 'rm -rf "$WORK" "$STATE_TMP"' EXIT

src=$WORK/src
ci_scratch_tree "$src"
if (cd "$src" && CC=clang ./configure --enable-fuzzing --enable-sanitizers --enable-werror --disable-hardening \
	--without-postgresql &&
	make -j"$(nproc)" tests/fuzz/fuzz-wire tests/fuzz/fuzz-der tests/fuzz/fuzz-session efsession efctl) \
	>"$WORK/build.log" 2>&1; then
	ci_pass "the harnesses build with clang, libFuzzer, ASan and UBSan, without a warning"
else
	ci_fail "the harnesses build with clang, libFuzzer, ASan and UBSan, without a warning"
	tail -40 "$WORK/build.log" | ci_diag
	ci_done
	exit 1
fi

# Without PostgreSQL: a URL in the environment (with a password) is refused in the programs' own words.
nopg="the database (--database, \$EFSERVER_DATABASE or the efserver-database.url credential): this program was built without PostgreSQL: install libpq-dev and build it with ./configure --with-postgresql"
EFSERVER_DATABASE=postgresql://efserver:secret@db.example/efserver "$src/efsession" --state-dir "$WORK" \
	</dev/null >/dev/null 2>"$WORK/nopg.err"
rc=$?
if [ $rc -eq 100 ] && grep -qxF "efsession: $nopg" "$WORK/nopg.err" && ! grep -q secret "$WORK/nopg.err"; then
	ci_pass "built without PostgreSQL, efsession given a PostgreSQL database exits 100 and says how to build it"
else
	ci_fail "built without PostgreSQL, efsession given a PostgreSQL database exits 100 and says how to build it (exit $rc)"
	ci_diag <"$WORK/nopg.err"
fi
"$src/efctl" --database postgresql://efserver:secret@db.example/efserver clients >/dev/null 2>"$WORK/nopg.err"
rc=$?
if [ $rc -eq 2 ] && grep -qxF "efctl: $nopg" "$WORK/nopg.err" && ! grep -q secret "$WORK/nopg.err" &&
	! "$src/efsession" --help | grep -q -- --database; then
	ci_pass "and efctl exits 2 saying the same; efsession --help offers no --database"
else
	ci_fail "and efctl exits 2 saying the same; efsession --help offers no --database (exit $rc)"
	ci_diag <"$WORK/nopg.err"
fi

for h in wire der session; do
	log=$WORK/$h.log
	mkdir -p "$WORK/new-$h"
	# -timeout bounds one input; timeout(1) bounds the whole run against a hang of libFuzzer itself.
	TMPDIR=$STATE_TMP timeout -k 10 $((FUZZ_SECONDS + 120)) "$src/tests/fuzz/fuzz-$h" \
		-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$WORK/crash-$h-" "$WORK/new-$h" "$src/tests/fuzz/corpus/$h" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	if [ $rc -eq 0 ] && [ -n "$execs" ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
		ci_pass "fuzz-$h: ${execs} executions in ${FUZZ_SECONDS} s (coverage ${cov:-?} edges), no crash, leak, timeout or sanitizer report"
	else
		ci_fail "fuzz-$h: ${execs:-?} executions in ${FUZZ_SECONDS} s, exit status $rc: no crash, leak, timeout or sanitizer report"
		grep -E -A30 'ERROR:|runtime error:|Test unit written' "$log" | head -60 | ci_diag
		for a in "$WORK/crash-$h-"*; do
			[ -e "$a" ] || continue
			echo "# the input, in base64 ($a):"
			base64 "$a" | head -40 | ci_diag
		done
	fi
done
ci_done
