#!/bin/bash
# Set up efserver on a Debian 12 machine and either serve or test it.
#   ./setup.sh serve   install what is needed, build, and serve on 127.0.0.1:1357
#                      (state in ./run/state), one efsession per connection
#   ./setup.sh check   install what is needed, build, and run the whole test suite
# Must run as root (or with sudo available) the first time, to install packages.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(build-essential autoconf automake pkg-config
	libgcrypt20-dev libsqlite3-dev libsystemd-dev zlib1g-dev
	systemd mandoc procps openbsd-inetd debootstrap systemd-container
	clang libclang-rt-14-dev valgrind sqlite3 python3 strace)

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "setup: installing ${missing[*]}" >&2
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
	[ -x configure ] || autoreconf -fi
	if [ ! -f Makefile ] || [ configure -nt config.status ]; then
		./configure --enable-werror "$@"
	fi
	make -j"$(nproc)"
}

case "${1:-}" in
serve)
	install_packages
	build
	mkdir -p run/state
	chmod 0700 run/state
	echo "setup: serving on 127.0.0.1:1357, state in $PWD/run/state (Ctrl-C stops)" >&2
	echo "setup: try: ./efclient --server 127.0.0.1:1357 --name alice --dir run/alice README.md" >&2
	exec systemd-socket-activate --listen=127.0.0.1:1357 --accept --inetd \
		"$PWD/efsession" --state-dir "$PWD/run/state"
	;;
check)
	install_packages
	build
	status=0
	make -j"$(nproc)" check || status=1
	# The suites that need their own builds or machines (tests/ci/*.sh, TAP each).
	: >ci-suites.log
	for suite in tests/ci/*.sh; do
		[ -e "$suite" ] || continue
		echo "setup: running $suite" >&2
		if ! bash "$suite" >"${suite%.sh}.log" 2>&1; then
			status=1
		fi
		grep -E '^(not )?ok ' "${suite%.sh}.log" | sed "s|^|$suite: |" >>ci-suites.log
		grep -q '^not ok' "${suite%.sh}.log" && { status=1; tail -50 "${suite%.sh}.log" >&2; }
	done
	exit $status
	;;
*)
	echo "usage: $0 serve|check" >&2
	exit 2
	;;
esac
