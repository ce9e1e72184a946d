#!/bin/bash
# Static checks of the unit file as shipped in the .deb, on a machine without systemd as PID 1:
#   systemd-analyze verify   must print nothing (it exits 0 on non-fatal errors such as an
#                            unknown key, so any output is a failure);
#   systemd-analyze security --offline=yes must score at most 3.0 (--threshold=30).
#
#   scripts/check-unit.sh [DEB]      (default: dist/pioreactord_<version>_all.deb)
#
# verify needs ExecStart's binary to exist, so it runs with --root= on the unpacked .deb plus a
# copy of the host's systemd units (for sysinit.target and friends) and of /usr/bin/python3
# (ExecReload= and ExecStopPost= run the package's unitctl module with it).
# The Documentation= man pages are found through MANPATH. The e2e test verifies once more inside
# the container, after a real install.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

repo=$(dirname "$here")
deb=${1:-$repo/dist/pioreactord_$(setup_cfg_version "$repo")_all.deb}
[ -f "$deb" ] || die "$deb not found (run scripts/build-deb.sh first)"
MAX_EXPOSURE=30 # systemd-analyze's 0-100 scale: 3.0

root=$(mktemp -d /tmp/pioreactord-unit.XXXXXX)
cleanup() {
    report_failed_step
    rm -rf "$root"
}
trap cleanup EXIT
UNIT=$root/lib/systemd/system/pioreactord.service

make_root() {
    dpkg-deb -x "$deb" "$root"
    [ -f "$UNIT" ] || die "the .deb has no lib/systemd/system/pioreactord.service"
    # Host units next to ours; ours wins if the host happens to have one installed.
    mkdir -p "$root/usr/lib/systemd/system" "$root/usr/bin"
    cp -an /lib/systemd/system/. "$root/usr/lib/systemd/system/"
    cp -L /usr/bin/python3 "$root/usr/bin/python3"
}

verify() {
    local out
    out=$(MANPATH="$root/usr/share/man:" systemd-analyze verify --root="$root" pioreactord.service 2>&1) ||
        die "systemd-analyze verify failed: $out"
    [ -z "$out" ] || die "systemd-analyze verify printed (any output fails): $out"
}

security() {
    local out
    out=$(systemd-analyze security --offline=yes --threshold="$MAX_EXPOSURE" "$UNIT" 2>&1) ||
        { echo "$out" | grep '✗' >&2; die "exposure above $MAX_EXPOSURE/100: ${out##*$'\n'}"; }
    log "${out##*$'\n'}"
}

step "host tools" apt_install_missing systemd # systemd-analyze (systemd need not be PID 1)
step "unpack $(basename "$deb")" make_root
step "systemd-analyze verify" verify
step "systemd-analyze security" security
