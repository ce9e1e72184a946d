#!/bin/bash
# The system tests, in order: build the .deb (and lintian it), check the unit file, then the
# real-systemd end-to-end test in a container. scripts/test.sh calls this as root.
# Each script prints its own timed steps; this prints each script's total.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "needs root (apt-get, systemd-nspawn, cgroups)"
started=$(now_us)
trap 'report_failed_step' EXIT

step "build-deb.sh" "$here/build-deb.sh"
step "check-unit.sh" "$here/check-unit.sh"
step "e2e-systemd.sh" "$here/e2e-systemd.sh"
log "system tests passed in $(elapsed "$started") s"
