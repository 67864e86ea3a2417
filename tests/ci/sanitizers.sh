#!/bin/bash
# The whole test suite (make check) on a build with AddressSanitizer and
# UndefinedBehaviorSanitizer: every program the tests start (efsession under
# systemd-socket-activate included) writes any report to a file, and the
# suite fails on a failed test or on any report, leaks included.
. "$(dirname "$0")/../robust-lib.sh"

WORK=$(mktemp -d /tmp/efsan.XXXXXX)
[ -n "${CI_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT

src=$WORK/src
ci_scratch_tree "$src"
if (cd "$src" && ./configure --enable-sanitizers --enable-werror && make -j"$(nproc)") >"$WORK/build.log" 2>&1; then
	ci_pass "the tree builds with -fsanitize=address,undefined and no warning"
else
	ci_fail "the tree builds with -fsanitize=address,undefined and no warning"
	tail -40 "$WORK/build.log" | ci_diag
	ci_done
	exit 1
fi

reports=$WORK/reports
mkdir -p "$reports"
# Leaks are judged from the reports rather than by exit status: libgcrypt
# keeps the 128 KiB buffer of its jitter entropy source, allocated on the
# first very strong random number (key generation, encryption at rest),
# through a pointer in its own secure memory, which LeakSanitizer does not
# scan. That one allocation, made wholly inside libgcrypt, is not counted;
# every other leak is. Linked in (configure's default), libgcrypt's frames
# are known by their functions (_gcry_*, jent_*, its do_malloc) rather than
# by libgcrypt.so.
export LSAN_OPTIONS="exitcode=0"
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:fast_unwind_on_malloc=0:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
(cd "$src" && make -j"$(nproc)" check) >"$WORK/check.log" 2>&1
rc=$?
# "TOTAL 1789, PASS 1789, ...": no "#" in a description, where TAP would read "# SKIP" as a directive.
summary=$(sed -nE 's/^# (TOTAL|PASS|SKIP|FAIL|ERROR): *([0-9]+)/\1 \2/p' "$WORK/check.log" | paste -sd, - | sed 's/,/, /g')
if [ $rc -eq 0 ]; then
	ci_pass "make check passes under ASan and UBSan ($summary)"
else
	ci_fail "make check passes under ASan and UBSan ($summary)"
	grep -E '^(FAIL|ERROR):' "$WORK/check.log" | head -30 | ci_diag
	for f in $(grep -lE '^(not ok|FAIL|ERROR)' "$src"/tests/*.log "$src"/tests/*/*.log 2>/dev/null | head -5); do
		echo "# $f:"
		grep -vE '^(ok|PASS)' "$f" | tail -30 | ci_diag
	done
fi
# Print what is left of a report once libgcrypt's entropy buffer is taken out.
real_findings() {
	awk '
		/^(Direct|Indirect) leak of / { flush(); inleak = 1; block = $0 "\n"; benign = ($4 == 131072 && $7 == 1); frames = 0; next }
		inleak && /^ *#[0-9]+ / {
			block = block $0 "\n"; frames++
			if (frames >= 2 && frames <= 8 && $0 !~ /libgcrypt\.so| in (do_malloc|_?gcry_|_?jent_)[A-Za-z0-9_.]* \(/) benign = 0
			next
		}
		inleak && /^$/ { flush(); next }
		/^SUMMARY: AddressSanitizer: [0-9]+ byte\(s\) leaked/ || /^=+$/ || /^$/ { next }
		/LeakSanitizer: detected memory leaks/ { next }
		{ flush(); print }
		function flush() { if (inleak && !(benign && frames >= 8)) printf "%s", block; inleak = 0; block = "" }
		END { flush() }
	' "$1"
}
n=0
for f in "$reports"/*; do
	[ -e "$f" ] || continue
	if [ -n "$(real_findings "$f")" ]; then
		n=$((n + 1))
		[ $n -le 5 ] && { echo "# $f:"; real_findings "$f" | head -40 | ci_diag; }
	fi
done
if [ "$n" -eq 0 ]; then
	ci_pass "no program the suite ran wrote a sanitizer report ($(find "$reports" -type f | wc -l) reports of libgcrypt's entropy buffer set aside)"
else
	ci_fail "no program the suite ran wrote a sanitizer report ($n reports)"
fi
ci_done
