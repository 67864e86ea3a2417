#!/bin/bash
# efserver under a real systemd: a debootstrapped Debian 12 (cached between
# runs) booted with systemd-nspawn, systemd as PID 1, the project built from
# its distribution files and installed into it as a package would be.
# tests/deploy-nspawn-inside.sh runs in there as a oneshot unit: units
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
# man-db so that verify finds the manual pages, and efserver's libraries.
INCLUDE=systemd,systemd-sysv,dbus,man-db,libgcrypt20,libsqlite3-0,libsystemd0
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

# Built as a distribution would: from the files "make dist" ships,
# configured for /usr, installed into a staging directory.
mkdir -p "$WORK/in" "$WORK/results"
if make -s -C "$root" distdir distdir="$WORK/src" >"$WORK/build.log" 2>&1 &&
	(cd "$WORK/src" && ./configure -q --prefix=/usr --sysconfdir=/etc --localstatedir=/var \
		--with-systemdsystemunitdir=/usr/lib/systemd/system \
		--with-sysusersdir=/usr/lib/sysusers.d --with-tmpfilesdir=/usr/lib/tmpfiles.d &&
		make -s -j"$(nproc)" && make -s install DESTDIR="$WORK/in/stage") >>"$WORK/build.log" 2>&1; then
	pass "built from the distribution files, installed with make install DESTDIR="
else
	fail "built from the distribution files, installed with make install DESTDIR="
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
TimeoutStartSec=600
EOF

# --private-network: the container's 127.0.0.1:1357 is its own, whatever
# the host listens on.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 timeout -k 10 900 systemd-nspawn -q -D "$TREE" \
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
