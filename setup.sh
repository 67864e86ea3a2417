#!/bin/bash
# Set up efserver on a Debian 12 machine and either serve or test it.
#   ./setup.sh serve   install what building and serving need, build, and serve
#                      on 127.0.0.1:1357 (state in ./run/state), one efsession
#                      per connection, until Ctrl-C
#   ./setup.sh check   install that and the test tools, build, run make check
#                      and the suites of tests/ci; the last line is
#                      "N passed, N failed, N skipped", exit status 0 iff
#                      nothing failed
# Installing packages needs root (or sudo); once they are there, any user can
# run either command.
set -uo pipefail
cd "$(dirname "$0")" || exit 1

# What building and serving need: the compiler, autotools, the three
# libraries, libpq for a PostgreSQL database shared by several hosts, and
# systemd-socket-activate.
SERVE_PACKAGES=(gcc libc6-dev make autoconf automake pkgconf
	libgcrypt20-dev libsqlite3-dev libsystemd-dev libpq-dev systemd)
# What the tests add: zlib as a crc32 reference, mandoc for the manual
# pages, pgrep, a real inetd, the sqlite3 and python3 the efctl tests look
# with, and the tests/ci suites' valgrind, clang with libFuzzer, and
# debootstrap and systemd-nspawn for a booted Debian 12, strace, which
# injects disk faults, and for the tests of several hosts a PostgreSQL 15
# server, haproxy as their balancer, ip for their network namespaces and
# bindfs, a FUSE file system that, as shared ones, makes no unnamed files.
CHECK_PACKAGES=(zlib1g-dev mandoc procps openbsd-inetd sqlite3 python3
	valgrind clang libclang-rt-14-dev debootstrap systemd-container strace
	postgresql haproxy iproute2 bindfs)

say() {
	echo "setup: $*" >&2
}

# quietly LOG COMMAND...: COMMAND's output in LOG, shown only if it fails.
quietly() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 && return 0
	cat "$log" >&2
	return 1
}

# Set when install_packages installed something: configure must look again
# (check after serve adds zlib, which make check uses when configure found it).
installed=0

# install_packages PACKAGE...: whatever is not installed yet, with apt-get.
install_packages() {
	local missing=() p sudo=
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null; then
			sudo=sudo
		else
			say "these Debian packages are missing: ${missing[*]}"
			say "installing them needs root; run this as root, then run $0 ${MODE} again:"
			echo "    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
			return 1
		fi
	fi
	say "installing ${#missing[@]} Debian packages: ${missing[*]}"
	quietly apt.log $sudo apt-get update -q || return 1
	quietly apt.log $sudo env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${missing[@]}" || return 1
	installed=1
}

build() {
	if [ ! -x configure ] || [ configure.ac -nt configure ]; then
		say "generating configure (autoreconf -fi)"
		quietly autoreconf.log autoreconf -fi || return 1
	fi
	if [ ! -f Makefile ] || [ configure -nt config.status ] || [ "$installed" -eq 1 ]; then
		say "configuring (./configure --enable-werror; its report is in config.log)"
		quietly configure.log ./configure --enable-werror || return 1
	fi
	say "building"
	make -s -j"$(nproc)"
}

serve() {
	install_packages "${SERVE_PACKAGES[@]}" || exit 1
	build || { say "the build failed (see above)"; exit 1; }
	mkdir -p run/state && chmod 0700 run/state || exit 1
	say "serving on 127.0.0.1:1357, state in $PWD/run/state; Ctrl-C stops"
	say "try, from another terminal in $PWD:"
	echo "    ./efclient --server 127.0.0.1:1357 --name alice --dir run/alice README.md" >&2
	echo "    ./efctl --state-dir run/state files" >&2
	exec systemd-socket-activate --listen=127.0.0.1:1357 --accept --inetd \
		"$PWD/efsession" --state-dir "$PWD/run/state"
}

# Totals of everything check runs.
passed=0 failed=0 skipped=0
skips=()

# tap_counts LOG: "PASS FAIL SKIP PLANNED_SKIP_REASON" of a TAP stream. A
# plan of 1..0 # SKIP is one skip (the reason follows); a missing or wrong
# plan, or a Bail out!, is one failure more.
tap_counts() {
	awk '
		/^ok / { n++; if ($0 ~ /#[ \t]*[Ss][Kk][Ii][Pp]([^A-Za-z0-9_]|$)/) skip++; else pass++; next }
		/^not ok / { n++; if ($0 ~ /#[ \t]*[Tt][Oo][Dd][Oo]/) pass++; else fail++; next }
		/^1\.\.[0-9]+/ { plans++; planned = substr($1, 4) + 0
			if (planned == 0) { reason = $0; sub(/^1\.\.0[ \t]*#?[ \t]*([Ss][Kk][Ii][Pp])?[ \t]*/, "", reason) }
			next }
		/^Bail out!/ { bail = 1; next }
		END {
			if (plans == 1 && planned == 0 && n == 0 && !bail) { print 0, 0, 1, (reason == "" ? "no reason given" : reason); exit }
			if (bail || plans != 1 || planned != n) fail++
			print pass + 0, fail + 0, skip + 0, ""
		}' "$1"
}

# The failing checks of a TAP log and the diagnostics right after each.
tap_failures() {
	awk '/^not ok / && !/#[ \t]*[Tt][Oo][Dd][Oo]/ { show = 1; print; next }
		/^#/ && show { print; next }
		{ show = 0 }
		/^Bail out!/ { print }' "$1"
}

# make check: the unit, replay and end-to-end tests, counted from automake's summary.
run_make_check() {
	local log=check.log status p f s e x trs
	say "make check: unit, replay and end-to-end tests (results but PASS shown; all in $log)"
	rm -f test-suite.log
	make -j"$(nproc)" check 2>&1 | tee "$log" | { grep --line-buffered -vE '^PASS: ' || true; }
	status=${PIPESTATUS[0]}
	if [ ! -f test-suite.log ]; then
		say "make check stopped before running the tests (exit status $status; see above)"
		failed=$((failed + 1))
		return
	fi
	# summary WHAT: a count of automake's summary in test-suite.log, 0 if absent.
	summary() { awk -v k="# $1:" '$1 " " $2 == k { n = $3 } END { print n + 0 }' test-suite.log; }
	p=$(summary PASS) x=$(summary XFAIL) f=$(summary FAIL) e=$(summary ERROR) s=$(summary SKIP)
	passed=$((passed + p + x))
	failed=$((failed + f + e + $(summary XPASS)))
	skipped=$((skipped + s))
	while IFS= read -r line; do
		skips+=("${line#SKIP: }")
	done < <(grep -E '^SKIP: ' "$log" || true)
	if [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && [ "$e" -eq 0 ]; then
		say "make check failed (exit status $status) without a failed test; see above"
		failed=$((failed + 1))
	fi
	# The log of each test that failed (without the driver's PASS lines), nothing of those that passed.
	for trs in $(find tests -name '*.trs' -exec grep -lE '^:global-test-result: (FAIL|ERROR|XPASS)' {} + 2>/dev/null); do
		echo "---- ${trs%.trs}.log ----"
		grep -v '^PASS: ' "${trs%.trs}.log"
	done
}

# A suite of tests/ci: TAP in tests/ci/NAME.log, counted, its failures shown.
run_ci_suite() {
	local suite=$1 log=${1%.sh}.log status p f s reason
	say "running $suite"
	bash "$suite" >"$log" 2>&1
	status=$?
	read -r p f s reason < <(tap_counts "$log")
	if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	if [ -n "$reason" ]; then
		skips+=("$suite # SKIP $reason")
		say "$suite: skipped: $reason"
		return
	fi
	say "$suite: $p passed, $f failed, $s skipped"
	while IFS= read -r line; do
		skips+=("$suite: ${line#ok }")
	done < <(grep -E '^ok .*#[[:space:]]*[Ss][Kk][Ii][Pp]([^[:alnum:]_]|$)' "$log" || true)
	if [ "$f" -gt 0 ]; then
		echo "---- $log (failed checks; all of it in $log) ----"
		tap_failures "$log"
		# A suite that stopped without a failed check: how it ended.
		if ! grep -qE '^(not ok |Bail out!)' "$log"; then
			echo "# exit status $status; the end of its output:"
			tail -15 "$log"
		fi
	fi
}

check() {
	local suite
	if ! install_packages "${SERVE_PACKAGES[@]}" "${CHECK_PACKAGES[@]}"; then
		say "could not install the packages"
		echo "0 passed, 1 failed, 0 skipped"
		exit 1
	fi
	if ! build; then
		say "the build failed (see above)"
		echo "0 passed, 1 failed, 0 skipped"
		exit 1
	fi
	run_make_check
	# The suites that need their own builds or a booted machine.
	for suite in tests/ci/*.sh; do
		[ -e "$suite" ] && run_ci_suite "$suite"
	done
	for line in "${skips[@]}"; do
		say "skipped: $line"
	done
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ]
	exit
}

MODE=${1:-}
case $MODE in
serve) serve ;;
check) check ;;
*)
	echo "usage: $0 serve|check" >&2
	exit 2
	;;
esac
