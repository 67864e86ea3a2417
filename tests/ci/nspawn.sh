#!/bin/bash
# efserver under a real systemd: a debootstrapped Debian 12 (cached between
# runs) booted with systemd-nspawn, systemd as PID 1, where the commands of
# README.md's "Deploying" section run exactly as written, from the
# distribution's files: build, make install, sysusers, tmpfiles, enable, then
# the upload and the efctl command it shows. tests/deploy-nspawn-inside.sh
# runs in there as a oneshot unit: the README's commands succeed, units
# verified, the socket enabled, uploads by efclient stored byte for byte,
# the sandbox in force on a live session, structured journal entries, and
# the exposure of efserver@.service by systemd-analyze security, which must
# be 1.0 or below. Needs root, debootstrap and systemd-container.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
top_srcdir=$root
top_builddir=$root
. "$root/tests/lib.sh"

MAX_EXPOSURE=1.0
CACHE=${EFSERVER_NSPAWN_CACHE:-/var/cache/efserver-nspawn}
# What the tree holds besides minbase: systemd as init, D-Bus for systemctl,
# man-db so that verify finds the manual pages, and what README.md's
# "Building by hand" says building needs.
INCLUDE=systemd,systemd-sysv,dbus,man-db,gcc,libc6-dev,make,autoconf,automake,pkgconf,libgcrypt20-dev,libsqlite3-dev,libsystemd-dev
TREE=$CACHE/bookworm-$(echo "$INCLUDE" | md5sum | cut -c1-8)

[ "$(id -u)" -eq 0 ] || skip_all "systemd-nspawn needs root"
need systemd-nspawn systemd-container
need debootstrap debootstrap
# The booted system's private network needs CAP_NET_ADMIN to bring its loopback up;
# a container that lacks it (nspawn inside nspawn) cannot give it one.
capeff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
[ $(( (0x$capeff >> 12) & 1 )) -eq 1 ] ||
	skip_all "no CAP_NET_ADMIN here (a container without it): a booted container could not bring up its loopback"

# The tree, built once and reused: runs boot it with --volatile=overlay, so
# nothing ever writes to it. A lock keeps two runs from building it at once.
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
if ! timeout 1200 flock 9; then
	echo "Bail out! $CACHE/lock is held by another run"
	exit 1
fi
built="reused from $TREE"
if [ ! -f "$TREE/.done" ]; then
	rm -rf "$TREE"
	built="built by debootstrap in $TREE"
	if ! timeout 1200 debootstrap --variant=minbase --include="$INCLUDE" bookworm "$TREE" \
		>"$CACHE/debootstrap.log" 2>&1; then
		fail "debootstrap builds a Debian 12 tree in $TREE"
		tail -20 "$CACHE/debootstrap.log" | diag
		rm -rf "$TREE"
		done_testing
		exit 1
	fi
	touch "$TREE/.done"
fi
if ! probe=$(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 timeout 120 systemd-nspawn -q --register=no --keep-unit \
	--volatile=overlay -D "$TREE" /bin/true 2>&1); then
	skip_all "systemd-nspawn cannot start a container here: $(echo "$probe" | tail -1)"
fi
pass "Debian 12 tree $built"

# readme_block N: the Nth code block of README.md's "Deploying" section, unindented.
readme_block() {
	awk -v want="$1" '
		/^## / { in_section = ($0 == "## Deploying"); next }
		!in_section || /^$/ { next }
		/^    / { if (!in_block) { in_block = 1; n++ }; if (n == want) print substr($0, 5); next }
		{ in_block = 0 }' "$root/README.md"
}

# The distribution's files, as a release tarball holds them, and the
# README's commands: the deployment, then what it shows to see it work.
mkdir -p "$WORK/in" "$WORK/results"
readme_block 1 >"$WORK/in/deploy.sh"
readme_block 2 >"$WORK/in/try.sh"
check "README.md's Deploying section: the deployment ends by enabling the socket, then an upload and efctl" \
	eval 'grep -qx "systemctl enable --now efserver.socket" "$WORK/in/deploy.sh" &&
		grep -q "^efclient " "$WORK/in/try.sh" && grep -q "^efctl " "$WORK/in/try.sh"'
sed 's/^/# deploy: /' "$WORK/in/deploy.sh"
sed 's/^/# try: /' "$WORK/in/try.sh"
if make -s -C "$root" distdir distdir="$WORK/in/src" >"$WORK/build.log" 2>&1; then
	pass "the distribution's files, from make distdir"
else
	fail "the distribution's files, from make distdir"
	tail -30 "$WORK/build.log" | diag
	done_testing
	exit 1
fi
cp "$root/tests/deploy-nspawn-inside.sh" "$WORK/in/run.sh"
cat >"$WORK/in/efserver-boot-test.service" <<'EOF'
[Unit]
Description=efserver boot test
After=multi-user.target
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/bin/bash /efserver-test/run.sh
TimeoutStartSec=900
EOF

# --private-network: the container's 127.0.0.1:1357 is its own, whatever
# the host listens on.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 timeout -k 10 1200 systemd-nspawn -q -D "$TREE" \
	--register=no --keep-unit --volatile=overlay --system-call-filter=bpf --private-network \
	--bind-ro="$WORK/in:/efserver-test" --bind="$WORK/results:/efserver-results" \
	--bind-ro="$WORK/in/efserver-boot-test.service:/etc/systemd/system/efserver-boot-test.service" \
	-b systemd.wants=efserver-boot-test.service >"$WORK/console.log" 2>&1 </dev/null
rc=$?
results=$WORK/results/tap
if grep -qx done "$results" 2>/dev/null; then
	pass "the container booted, ran the test unit and powered off (nspawn exit $rc)"
else
	fail "the container booted, ran the test unit and powered off (nspawn exit $rc)"
	tail -40 "$WORK/console.log" | diag
fi

exposure=
while IFS= read -r line; do
	case $line in
	"ok - "*) pass "${line#ok - }" ;;
	"not ok - "*) fail "${line#not ok - }" ;;
	"exposure "*) exposure=${line#exposure } ;;
	"#"*) echo "$line" ;;
	esac
done <"${results}" 2>/dev/null

echo "# systemd-analyze security efserver@.service: overall exposure ${exposure:-not reported}"
check "the exposure of efserver@.service (${exposure:-none}) is $MAX_EXPOSURE or below" \
	awk -v e="$exposure" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(e ~ /^[0-9]+(\.[0-9]+)?$/ && e + 0 <= max + 0) }'
done_testing
