# Shared by the robustness tests: for the make check scripts (after
# tests/lib.sh) run_drive, which folds tests/drive-robust's TAP into
# theirs; for the suites in tests/ci, TAP counters and a scratch copy of the
# source tree (the distribution's files, as `make distdir` lists them) for
# builds with other compilers and flags than the main one.
set -u

# run_drive NAME ARGS...: tests/drive-robust ARGS, its TAP lines renumbered into lib.sh's.
run_drive() {
	local name=$1
	shift
	"$top_builddir/tests/drive-robust" "$@" >"$WORK/$name.tap" 2>"$WORK/$name.err"
	echo "# drive-robust $name: exit status $?"
	fold_drive "$name"
}

# fold_drive NAME: the TAP of a driver run that wrote $WORK/NAME.tap and NAME.err.
fold_drive() {
	local name=$1 line
	while IFS= read -r line; do
		case $line in
		"ok "*) pass "$name: ${line#ok * - }" ;;
		"not ok "*) fail "$name: ${line#not ok * - }" ;;
		"Bail out!"*) fail "$name: $line" ;;
		"#"*) echo "$line" ;;
		esac
	done <"$WORK/$name.tap"
	grep -q '^1\.\.' "$WORK/$name.tap" || fail "$name: the driver finished its plan"
	[ -s "$WORK/$name.err" ] && tail -20 "$WORK/$name.err" | diag
}

ci_n=0
ci_failed=0

ci_pass() {
	ci_n=$((ci_n + 1))
	echo "ok $ci_n - $*"
}

ci_fail() {
	ci_n=$((ci_n + 1))
	ci_failed=$((ci_failed + 1))
	echo "not ok $ci_n - $*"
}

ci_check() {
	local desc=$1
	shift
	if "$@"; then ci_pass "$desc"; else ci_fail "$desc"; fi
}

ci_diag() {
	sed 's/^/# /' "$@"
}

# ci_skip_all REASON: the whole suite is skipped; only before its first check.
ci_skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

ci_done() {
	echo "1..$ci_n"
	[ "$ci_failed" -eq 0 ]
}

# ci_scratch_tree DIR: the distributed source tree in DIR, from the main
# build (./setup.sh check builds it before the suites run).
ci_scratch_tree() {
	local dir=$1
	if [ ! -f "$CI_TOP/Makefile" ]; then
		echo "Bail out! $CI_TOP is not configured: run ./setup.sh check (or configure and make) first"
		exit 1
	fi
	rm -rf "$dir"
	if ! make -s -C "$CI_TOP" distdir distdir="$dir" >"$dir.log" 2>&1; then
		ci_diag "$dir.log"
		echo "Bail out! make distdir failed"
		exit 1
	fi
}

CI_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
