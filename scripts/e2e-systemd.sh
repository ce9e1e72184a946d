#!/bin/bash
# End-to-end test of the .deb under a real systemd: boot a Debian bookworm container with
# systemd-nspawn (this machine's PID 1 is not systemd), install the package and mosquitto inside,
# then check the service as a user would meet it:
#   start returns only once ready; runs as pioreactor (with its device groups); pioctl works as
#   pioreactor and root. With stirring and a plugin job running and an MQTT watcher on their
#   $state: systemctl reload, an upgrade to a second build, kill -9 of MainPID and a watchdog
#   kill (SIGSTOP) each leave the jobs running with their pids and pins, never `lost`, re-adopted
#   within 2 s of the daemon being back. systemctl stop stops every job cleanly first
#   (`disconnected`) and leaves no process of the unit, even when the daemon is stuck. After a
#   power cut (SIGKILL to the container's init) and a reboot the daemon comes back with an intact
#   database (and, where the build has resume_jobs, the jobs resumed); purge leaves nothing.
#
#   scripts/e2e-systemd.sh [--arch arm64] [--suite trixie] [--deb PATH] [--upgrade-deb PATH]
#
# --deb: default dist/pioreactord_<version>_all.deb (scripts/build-deb.sh makes it).
# --upgrade-deb: the build to upgrade to; default: scripts/build-deb.sh --version <version>+e2e1.
# --arch arm64: the same test in an arm64 container under qemu-user, for a person to run, not
#   CI (slow: about 3.5 min cold, 2 min with the cached rootfs). E2E_MIRROR overrides the mirror.
# --suite: the Debian release in the container (default bookworm; the package is built on
#   bookworm and must also install on trixie).
# The rootfs is cached as a tarball in /var/cache/pioreactord-e2e/ (delete it to refresh).
# The container is powered off on every path (SIGKILL to its init after 30 s) and every
# temporary file, cgroup and mount is removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
repo=$(dirname "$here")

ARCH=$(dpkg --print-architecture)
SUITE=bookworm
DEB=
UPGRADE_DEB=
while [ $# -gt 0 ]; do
    case $1 in
        --arch) ARCH=$2; shift 2 ;;
        --suite) SUITE=$2; shift 2 ;;
        --deb) DEB=$2; shift 2 ;;
        --upgrade-deb) UPGRADE_DEB=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
        *) echo "usage: $0 [--arch arm64] [--suite trixie] [--deb PATH] [--upgrade-deb PATH]" >&2; exit 2 ;;
    esac
done
DEB=${DEB:-$repo/dist/pioreactord_$(setup_cfg_version "$repo")_all.deb}
[ -f "$DEB" ] || die "$DEB not found (run scripts/build-deb.sh first)"
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")

# systemd-sysv: invoke-rc.d (mosquitto's postinst) needs `runlevel` to see a running systemd.
INCLUDE=systemd,systemd-sysv,dbus,python3,adduser
# The container has no network (--private-network: its mosquitto must not meet the host's port
# 1883 or another test's container). So the rootfs carries the package lists and, downloaded
# but not installed, what the test installs: the .deb's Depends and Recommends (first
# alternatives), mosquitto-clients (the test's view of the broker) and logrotate, with their
# Recommends (mmdebstrap's hooks default to none; apt in the container installs them).
DOWNLOAD=$(dpkg-deb -f "$DEB" Depends Recommends | sed 's/^[A-Za-z-]*: //' | tr ',' '\n' |
    sed 's/|.*//; s/(.*)//; s/:any//; s/ //g' | grep . | sort -u | xargs)
DOWNLOAD="$DOWNLOAD mosquitto-clients logrotate"
CACHE_DIR=/var/cache/pioreactord-e2e
CACHE=$CACHE_DIR/$SUITE-$ARCH-$(echo "$INCLUDE $DOWNLOAD" | md5sum | cut -c1-8).tar.zst
MIRROR=${E2E_MIRROR:-$(sed -n 's|^URIs: *\(.*/debian\)/*$|\1|p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MACHINE=pioe2e-$$
CGROUP=pioreactord-e2e-$$ # nspawn runs in its own cgroup, so its payload/supervisor are ours
DROPIN_DIR=/etc/systemd/system/pioreactord.service.d
PLUGIN=led_glow # examples/led_glow.py, installed as a plugin
PROBE="/usr/bin/python3 /usr/local/lib/e2e_probe.py"
SLOW=1 # deadline multiplier: qemu-user is about 10x slower
[ "$ARCH" = "$(dpkg --print-architecture)" ] || SLOW=10

WORK=$(mktemp -d /var/tmp/pioreactord-e2e.XXXXXX) # the rootfs is about 300 MB: not /tmp
ROOT=$WORK/rootfs
NSPAWN_PID=
LEADER=
SUB_PID= # the test's mosquitto_sub (its nsenter, on the host side)
STIRRING_PID=
PLUGIN_PID=
STIRRING_PINS=
MQTT_LOG= # what the watcher saw: "unixtime topic payload" lines
UPGRADE_VERSION=
BINFMT_MOUNTED=0
BINFMT_REGISTERED=
TOTAL_START=$(now_us)

# --- running things inside the container ------------------------------------------------------

# inside CMD...: run CMD in the container with a clean environment (nsenter passes the host's on).
inside() {
    nsenter -t "$LEADER" -a /usr/bin/env -i PATH=$CLEAN_PATH LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive E2E_SLOW=$SLOW "$@"
}
as_pioreactor() { inside runuser -u pioreactor -- "$@"; }
prop() { inside systemctl show -P "$1" pioreactord.service; }

# wait_for SECONDS DESCRIPTION CMD...: poll CMD until it succeeds; fail after the deadline.
wait_for() {
    local deadline=$(($(now_us) + $1 * SLOW * 1000000)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$(now_us)" -lt "$deadline" ] || die "timed out waiting for: $what"
        sleep 0.2
    done
}

# The job's field from `pioctl status --json` (read on stdin); empty if the job is not listed.
job_field() {
    /usr/bin/python3 -c 'import json, sys
job, field = sys.argv[1:]
for entry in json.load(sys.stdin):
    if entry["job_name"] == job:
        print(entry[field])' "$1" "$2"
}

unit_is() { [ "$(prop ActiveState)/$(prop SubState)" = "$1" ]; }
status_text_has() { prop StatusText | grep -q -- "$1"; }
journal_since() { inside journalctl -q -u pioreactord.service --no-pager --after-cursor="$1"; }
journal_cursor() { inside journalctl -u pioreactord.service -n 0 --show-cursor | sed -n 's/^-- cursor: //p'; }

# --- container life ---------------------------------------------------------------------------

host_tools() {
    local tools=(systemd-container mmdebstrap zstd procps)
    [ "$SLOW" = 1 ] || tools+=(qemu-user-static arch-test) # mmdebstrap wants arch-test
    apt_install_missing "${tools[@]}"
}

# Foreign architecture: register qemu with binfmt_misc by hand (no systemd-binfmt here). The F
# flag in Debian's .conf makes it work inside the container's root too.
setup_binfmt() {
    local name=qemu-${ARCH/arm64/aarch64}
    if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        BINFMT_MOUNTED=1
    fi
    if [ ! -e "/proc/sys/fs/binfmt_misc/$name" ]; then
        cat "/usr/lib/binfmt.d/$name.conf" >/proc/sys/fs/binfmt_misc/register
        BINFMT_REGISTERED=$name
    fi
}

make_rootfs() {
    if [ ! -f "$CACHE" ]; then
        local tmp
        mkdir -p "$CACHE_DIR"
        tmp=$CACHE_DIR/.partial-$$.tar.zst
        log "no cached rootfs: mmdebstrap $SUITE $ARCH from $MIRROR"
        env -i PATH=$CLEAN_PATH mmdebstrap --quiet --arch="$ARCH" --variant=minbase \
            --include="$INCLUDE" --skip=cleanup/apt \
            --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
            --customize-hook="chroot \"\$1\" apt-get install -y -qq --download-only \
                -o APT::Install-Recommends=true $DOWNLOAD" \
            --customize-hook='rm -f "$1"/var/cache/apt/*.bin' \
            "$SUITE" "$tmp" "$MIRROR" || { rm -f "$tmp"; return 1; }
        mv "$tmp" "$CACHE"
    fi
    mkdir "$ROOT"
    tar --zstd -xpf "$CACHE" -C "$ROOT" --numeric-owner
    # mmdebstrap writes no /etc/hosts; without it `localhost` (the broker in the default config)
    # does not resolve. A real installation has this one.
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
    # apt reads local .debs as _apt: /var/tmp (not the container's tmpfs /tmp) is readable.
    cp "$DEB" "$UPGRADE_DEB" "$repo/examples/$PLUGIN.py" "$ROOT/var/tmp/"
    install -D -m 0644 "$here/e2e_probe.py" "$ROOT/usr/local/lib/e2e_probe.py"
    # Test-only, for the whole run: a short watchdog, so that the SIGSTOP test takes seconds (the
    # daemon pings every WatchdogSec/3 from its first start), and a short stop timeout for the
    # stuck-daemon stop. The shipped values are 30 s each.
    install -d "$ROOT$DROPIN_DIR"
    printf '[Service]\nWatchdogSec=5\nTimeoutStopSec=6\n' >"$ROOT$DROPIN_DIR/e2e.conf"
}

# The second build the upgrade installs: the same tree, a higher version.
build_upgrade() {
    if [ -z "$UPGRADE_DEB" ]; then
        UPGRADE_VERSION="$(dpkg-deb -f "$DEB" Version)+e2e1"
        "$here/build-deb.sh" --version "$UPGRADE_VERSION" --out "$WORK/upgrade" --no-lintian >/dev/null
        UPGRADE_DEB=$WORK/upgrade/pioreactord_${UPGRADE_VERSION}_all.deb
    fi
    UPGRADE_VERSION=$(dpkg-deb -f "$UPGRADE_DEB" Version)
    dpkg --compare-versions "$UPGRADE_VERSION" gt "$(dpkg-deb -f "$DEB" Version)" ||
        die "$UPGRADE_DEB ($UPGRADE_VERSION) is not newer than $DEB"
}

boot() {
    local cg
    reset_cgroups # a second boot (after a power cut, a reboot) starts from an empty cgroup
    rm -rf "/run/systemd/nspawn/propagate/$MACHINE"
    for cg in systemd unified; do
        [ ! -d "/sys/fs/cgroup/$cg" ] || mkdir -p "/sys/fs/cgroup/$cg/$CGROUP"
    done
    # --register=no --keep-unit: there is no machined or system bus on the host.
    # --console=read-only: someone must read the console, or PID 1 blocks writing to it.
    (
        for cg in systemd unified; do
            [ ! -d "/sys/fs/cgroup/$cg" ] || echo "$BASHPID" >"/sys/fs/cgroup/$cg/$CGROUP/cgroup.procs"
        done
        exec systemd-nspawn --quiet -D "$ROOT" --machine="$MACHINE" --register=no --keep-unit \
            --boot --console=read-only --private-network
    ) </dev/null >>"$WORK/console.log" 2>&1 &
    NSPAWN_PID=$!
    wait_for 30 "the container's systemd" find_leader
    # systemctl fails until PID 1 has its bus up; then --wait blocks until boot is done. A
    # qemu-user container is `degraded` (units that use credentials fail there): also fine.
    wait_for 60 "the container's system bus" inside systemctl show -P SystemState
    local state
    state=$(inside timeout $((120 * SLOW)) systemctl is-system-running --wait || true)
    case $state in
        running) ;;
        degraded) log "container is degraded: $(inside systemctl --failed --plain --no-legend | cut -d' ' -f1 | xargs)" ;;
        *) die "container did not boot: $state" ;;
    esac
}

# What nspawn left in our cgroup: the payload/ and supervisor/ sub-cgroups.
reset_cgroups() {
    local cg
    for cg in systemd unified; do
        [ ! -d "/sys/fs/cgroup/$cg/$CGROUP" ] ||
            find "/sys/fs/cgroup/$cg/$CGROUP" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

# wait_container_gone SECONDS: wait until the container's nspawn has exited; its exit status in
# CONTAINER_RC.
CONTAINER_RC=
wait_container_gone() {
    local deadline=$((SECONDS + $1 * SLOW))
    while kill -0 "$NSPAWN_PID" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "the container is still up after $1 s"
        sleep 0.2
    done
    CONTAINER_RC=0
    wait "$NSPAWN_PID" 2>/dev/null || CONTAINER_RC=$?
    NSPAWN_PID= LEADER=
}

find_leader() {
    kill -0 "$NSPAWN_PID" 2>/dev/null || die "systemd-nspawn exited: $(tail -5 "$WORK/console.log")"
    LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd)
}

poweroff() {
    # A host-side nsenter left running would hold a zombie in the container's PID namespace,
    # and that namespace's init cannot finish exiting until it is reaped.
    [ -z "$SUB_PID" ] || kill -KILL "$SUB_PID" 2>/dev/null || true
    [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null || return 0
    timeout 10 nsenter -t "$LEADER" -a /usr/bin/env -i PATH=$CLEAN_PATH systemctl poweroff \
        >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$NSPAWN_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
        log "container still up 30 s after poweroff: SIGKILL to its init ($LEADER)"
        kill -KILL "$LEADER" 2>/dev/null || true # the PID namespace dies with its init
        deadline=$((SECONDS + 10))
        while kill -0 "$NSPAWN_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null || true
    fi
    wait "$NSPAWN_PID" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    report_failed_step
    if [ "$rc" != 0 ] && [ -n "$LEADER" ] && kill -0 "$LEADER" 2>/dev/null; then
        log "diagnostics:"
        inside systemctl status --no-pager pioreactord.service >&2 || true
        inside journalctl --no-pager -n 60 -u pioreactord.service >&2 || true
    fi
    poweroff
    local cg cleanup_start
    cleanup_start=$(now_us)
    for cg in systemd unified; do
        [ ! -d "/sys/fs/cgroup/$cg/$CGROUP" ] ||
            find "/sys/fs/cgroup/$cg/$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    # nspawn leaves this behind when /run is not a tmpfs (it is on disk on this machine).
    rm -rf "/run/systemd/nspawn/propagate/$MACHINE"
    [ -z "$BINFMT_REGISTERED" ] || echo -1 >"/proc/sys/fs/binfmt_misc/$BINFMT_REGISTERED"
    [ "$BINFMT_MOUNTED" = 0 ] || umount /proc/sys/fs/binfmt_misc
    rm -rf "$WORK"
    log "cleanup: $(elapsed "$cleanup_start") s"
    log "e2e-systemd ($SUITE/$ARCH): $([ "$rc" = 0 ] && echo PASSED || echo "FAILED rc=$rc") in $(elapsed "$TOTAL_START") s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the checks -------------------------------------------------------------------------------

install_package() {
    # A Pi has gpio (and i2c, spi); this container gets only gpio, to see both cases: the user
    # joins gpio, and the missing i2c/spi groups do not stop the unit.
    inside groupadd --system gpio
    # mosquitto comes in as a Recommends; mosquitto-clients is the test's own view of the broker;
    # logrotate (on every real system) runs the package's rotation. All from the rootfs's cache.
    inside timeout $((600 * SLOW)) apt-get install -y -q "/var/tmp/$(basename "$DEB")" \
        mosquitto-clients logrotate >"$WORK/apt.log" 2>&1 || { tail -30 "$WORK/apt.log" >&2; return 1; }
    # postinst does `deb-systemd-invoke start ... || true`: apt succeeds even if the unit failed.
    [ "$(inside systemctl is-enabled pioreactord.service)" = enabled ] || die "unit not enabled"
    unit_is active/running || die "postinst did not start the unit: $(prop ActiveState)/$(prop Result)"
    wait_for 30 "mosquitto active" inside systemctl is-active mosquitto.service
    inside grep -qx 'set_tcp_nodelay true' /etc/mosquitto/conf.d/pioreactord.conf ||
        die "no mosquitto drop-in setting set_tcp_nodelay"
    local out
    out=$(inside systemd-analyze verify --man=no pioreactord.service 2>&1) || die "$out"
    [ -z "$out" ] || die "systemd-analyze verify in the container printed: $out"
}

check_start_waits_for_ready() {
    # This daemon was started by postinst before mosquitto was set up, so it may still be
    # retrying the broker: SIGTERM must give exit status 0 all the same.
    inside systemctl stop pioreactord.service
    [ "$(prop Result)/$(prop ExecMainStatus)" = success/0 ] ||
        die "stopping the first daemon: Result=$(prop Result) status=$(prop ExecMainStatus)"
    local start
    start=$(now_us)
    inside systemctl start pioreactord.service
    log "systemctl start returned after $(elapsed "$start") s"
    # Type=notify: start returned only after READY=1, so everything READY=1 promises holds now,
    # without any retry.
    [ "$(prop Type)" = notify ] || die "Type is $(prop Type)"
    unit_is active/running || die "after start: $(prop ActiveState)/$(prop SubState)"
    inside test -S /run/pioreactord/control.sock || die "no control socket after start returned"
    inside test -S /run/pioreactord/jobs.sock || die "no job socket after start returned"
    inside pioctl status --json >/dev/null || die "pioctl status failed right after start"
    wait_for 10 "STATUS= with 0 jobs" status_text_has "^0 jobs"
}

check_user_and_groups() {
    local pid uid gpio_gid
    pid=$(prop MainPID)
    uid=$(inside id -u pioreactor)
    gpio_gid=$(inside getent group gpio | cut -d: -f3)
    inside grep -q "^Uid:[[:space:]]*$uid[[:space:]]" "/proc/$pid/status" ||
        die "MainPID $pid does not run as pioreactor ($uid)"
    inside grep -qE "^Groups:.*\\b$gpio_gid\\b" "/proc/$pid/status" ||
        die "MainPID $pid is not in group gpio ($gpio_gid): $(inside grep Groups "/proc/$pid/status")"
    log "MainPID $pid: uid $uid (pioreactor), in gpio"
}

forkserver_ready() { inside journalctl -u pioreactord --no-pager -o cat | grep -q "fork server ready"; }

# The pid of JOB in `pioctl status` (empty if it does not run).
job_pid() { inside pioctl status --json | job_field "$1" pid; }

start_jobs() {
    local comm ppid
    # Under the unit's sandbox (SystemCallFilter, MemoryDenyWriteExecute) the daemon must still
    # become a subreaper and fork jobs from the pre-imported server.
    wait_for 15 "the fork server ready" forkserver_ready
    inside install -o pioreactor -g pioreactor -m 0644 "/var/tmp/$PLUGIN.py" \
        "/home/pioreactor/.pioreactor/plugins/$PLUGIN.py"
    as_pioreactor pioctl start stirring >/dev/null
    as_pioreactor pioctl start "$PLUGIN" >/dev/null
    STIRRING_PID=$(as_pioreactor pioctl status --json | job_field stirring pid)
    PLUGIN_PID=$(job_pid "$PLUGIN") # root may use pioctl too
    [ -n "$STIRRING_PID" ] && [ -n "$PLUGIN_PID" ] || die "jobs not running: $(inside pioctl status --json)"
    wait_for 10 "STATUS= naming both jobs" status_text_has "stirring"
    comm=$(inside cat "/proc/$STIRRING_PID/comm")
    ppid=$(inside awk '/^PPid:/ {print $2}' "/proc/$STIRRING_PID/status")
    [ "$comm" = stirring ] && [ "$ppid" = "$(prop MainPID)" ] ||
        die "stirring was not forked by the fork server as the daemon's child (comm $comm, ppid $ppid)"
    log "stirring pid $STIRRING_PID (forked, the daemon's child), $PLUGIN pid $PLUGIN_PID; STATUS=$(prop StatusText)"
}

# The test's MQTT watcher, for the rest of the container's life: every $state and pwms/dc.
start_watcher() {
    MQTT_LOG=$WORK/mqtt-$(now_us).log
    inside sh -c 'echo $$ >/run/e2e-sub.pid
        exec mosquitto_sub -h localhost -q 2 -F "%U %t %p" -t "pioreactor/+/+/+/\$state" \
            -t "pioreactor/+/+/pwms/dc"' </dev/null >"$MQTT_LOG" 2>&1 &
    SUB_PID=$!
    # Retained states arrive at once: seeing the daemon's proves the subscription.
    wait_for 10 "the watcher subscribed" grep -q '/pioreactord/\$state ' "$MQTT_LOG"
}

stop_watcher() {
    [ -n "$SUB_PID" ] || return 0
    inside sh -c 'kill "$(cat /run/e2e-sub.pid)"; rm /run/e2e-sub.pid' 2>/dev/null || true
    wait "$SUB_PID" 2>/dev/null || true
    SUB_PID=
}

# No job of the survivors ever showed `lost` to the watcher, and the last pwms/dc has stirring's
# pin on.
check_watched() {
    local lost pins
    lost=$(grep -E "/(stirring|$PLUGIN)/\\\$state lost\$" "$MQTT_LOG" || true)
    [ -z "$lost" ] || die "the watcher saw a surviving job lost: $lost"
    pins=$(inside pioctl locks --json | /usr/bin/python3 -c 'import json, sys
print(" ".join(str(r["pin"]) for r in json.load(sys.stdin) if r["job_name"] == "stirring" and r["pid"] == int(sys.argv[1])))' "$STIRRING_PID")
    [ -n "$pins" ] || die "stirring ($STIRRING_PID) holds no pin: $(inside pioctl locks --json)"
    STIRRING_PINS=$pins
    wait_for 5 "pwms/dc with stirring's pin on" last_dc_on "$pins"
}

last_dc_on() {
    grep ' pioreactor/[^/]*/[^/]*/pwms/dc ' "$MQTT_LOG" | tail -1 | cut -d' ' -f3- |
        /usr/bin/python3 -c 'import json, sys
dc = json.loads(sys.stdin.read() or "{}")
sys.exit(0 if all(float(dc.get(pin, 0)) > 0 for pin in sys.argv[1:]) else 1)' $1
}

# How many pwms/dc messages from line $1 of the watcher's log on show one of pins $2... off.
pins_shown_off() {
    local from=$1
    shift
    tail -n "+$from" "$MQTT_LOG" | grep ' pioreactor/[^/]*/[^/]*/pwms/dc ' | cut -d' ' -f3- |
        /usr/bin/python3 -c 'import json, sys
print(sum(1 for line in sys.stdin if not all(float(json.loads(line or "{}").get(p, 0)) > 0 for p in sys.argv[1:])))' "$@"
}

# survive ACTION [VERSION]: the daemon goes through ACTION; the jobs survive it (e2e_probe.py).
survive() {
    local report cursor from off
    from=$(($(wc -l <"$MQTT_LOG") + 1))
    cursor=$(journal_cursor)
    report=$(inside $PROBE survive "$1" "stirring=$STIRRING_PID,$PLUGIN=$PLUGIN_PID" ${2:+--version "$2"}) ||
        die "the jobs did not survive $1 (journal: $(journal_since "$cursor" | tail -20))"
    log "$1: $report"
    check_watched
    off=$(pins_shown_off "$from" $STIRRING_PINS)
    [ "$off" = 0 ] || die "during $1, pwms/dc showed stirring's pin ($STIRRING_PINS) off $off time(s)"
    inside $PROBE db >/dev/null
    if grep -q 'stop-sweep: keeping' <<<"$(journal_since "$cursor")"; then
        log "the stop-sweep kept them: $(journal_since "$cursor" | grep -o 'stop-sweep: keeping.*' | cut -c1-160)"
    fi
}

# The fork server's pid (comm pio-forkserver), if one runs.
forkserver_pid() {
    inside sh -c 'for d in /proc/[0-9]*; do
        [ "$(cat "$d/comm" 2>/dev/null)" = pio-forkserver ] && echo "${d#/proc/}"; done' | head -1
}
new_forkserver() { local pid=$(forkserver_pid); [ -n "$pid" ] && [ "$pid" != "$1" ]; }

check_reload() {
    local nrestarts=$(prop NRestarts) server=$(forkserver_pid)
    [ -n "$server" ] || die "no fork server runs"
    survive reload
    wait_for 15 "a fork server of the new image" new_forkserver "$server"
    [ "$(prop NRestarts)" = "$nrestarts" ] || die "reload restarted the unit"
    # Still the daemon's children: a re-exec keeps the process.
    [ "$(inside awk '/^PPid:/ {print $2}' "/proc/$STIRRING_PID/status")" = "$(prop MainPID)" ] ||
        die "stirring is no longer the daemon's child after the reload"
    inside journalctl -u pioreactord --no-pager -o cat | grep -q "re-executing in place" ||
        die "the daemon did not say it re-executed"
}

check_upgrade() {
    local nrestarts=$(prop NRestarts)
    survive "upgrade:/var/tmp/$(basename "$UPGRADE_DEB")" "$UPGRADE_VERSION"
    [ "$(prop NRestarts)" = "$nrestarts" ] || die "the upgrade restarted the unit"
    [ "$(inside dpkg-query -W -f '${Version}' pioreactord)" = "$UPGRADE_VERSION" ] || die "not upgraded"
}

check_kill9() { survive kill9; }

check_watchdog() {
    local cursor=$(journal_cursor)
    survive sigstop
    journal_since "$cursor" | grep -q "Failed with result 'watchdog'" ||
        die "restarted, but not by the watchdog: $(journal_since "$cursor" | tail -20)"
}

# Nothing of the unit runs: no process of the pioreactor user (the unit's only user).
nothing_of_the_unit_left() {
    local uid left
    uid=$(inside id -u pioreactor)
    left=$(inside sh -c "grep -l '^Uid:[[:space:]]*$uid[[:space:]]' /proc/[0-9]*/status 2>/dev/null || true")
    [ -z "$left" ] || die "processes of the unit outlived its stop: $left $(inside ps -o pid,comm -u pioreactor 2>/dev/null)"
    ! journal_since "$1" | grep -E 'remains running after unit stopped|left-over process' >&2 ||
        die "systemd found processes of the unit left over (see above)"
}

check_stop_is_clean() {
    local cursor from stirring_line daemon_line
    from=$(($(wc -l <"$MQTT_LOG") + 1))
    cursor=$(journal_cursor)
    inside systemctl stop pioreactord.service
    wait_for 10 "stirring disconnected on the broker" tail_has "$from" '/stirring/\$state disconnected$'
    wait_for 10 "the daemon's own disconnected" tail_has "$from" '/pioreactord/\$state disconnected$'
    stirring_line=$(tail -n "+$from" "$MQTT_LOG" | grep -n '/stirring/\$state disconnected$' | cut -d: -f1)
    daemon_line=$(tail -n "+$from" "$MQTT_LOG" | grep -n '/pioreactord/\$state disconnected$' | cut -d: -f1)
    [ "$stirring_line" -lt "$daemon_line" ] || die "the daemon said disconnected before stirring did"
    [ "$(prop Result)/$(prop ExecMainStatus)" = success/0 ] ||
        die "daemon did not exit 0: Result=$(prop Result) status=$(prop ExecMainStatus)"
    ! journal_since "$cursor" | grep -iE 'SIGKILL|timed out|stop-sweep' >&2 ||
        die "the stop was not clean (see the journal lines above)"
    nothing_of_the_unit_left "$cursor"
}

tail_has() { tail -n "+$1" "$MQTT_LOG" | grep -q "$2"; }

# systemctl stop of a daemon whose main loop is stuck (ptrace-stopped: SIGTERM and SIGCONT do
# nothing): systemd SIGKILLs it at TimeoutStopSec (6 s here), then the stop-sweep ends the jobs.
check_stuck_stop() {
    local cursor freezer start
    inside systemctl start pioreactord.service
    ensure_jobs
    cursor=$(journal_cursor)
    inside $PROBE freeze "$(prop MainPID)" >"$WORK/freeze.log" 2>&1 &
    freezer=$!
    wait_for 10 "the daemon frozen" grep -q froze "$WORK/freeze.log"
    start=$(now_us)
    inside systemctl stop pioreactord.service
    log "stop of the stuck daemon took $(elapsed "$start") s"
    wait "$freezer" || die "the freezer failed: $(cat "$WORK/freeze.log")"
    [ "$(prop Result)" = timeout ] || die "expected Result=timeout, got $(prop Result)"
    # By pid: a job resumed at the start before may still carry the runner's process name.
    journal_since "$cursor" | grep -qE "stop-sweep: SIGTERM to .*\b$STIRRING_PID\b" ||
        die "the stop-sweep did not end stirring ($STIRRING_PID): $(journal_since "$cursor" | tail -20)"
    log "$(journal_since "$cursor" | grep -o 'stop-sweep: .*' | cut -c1-200 | paste -sd'|')"
    nothing_of_the_unit_left "$cursor"
    # The next start closes the rows the killed daemon left running.
    inside systemctl start pioreactord.service
    inside $PROBE db >/dev/null
}

# The jobs that run now (after a boot): with resume_jobs in this build, the ones that ran when the
# unit went down, minus the one a user stopped (pioctl stop); without it, none.
check_resumed() {
    local want=$1 stopped=$2
    inside $PROBE db >/dev/null
    if ! inside $PROBE has-setting resume_jobs; then
        log "resume_jobs is not in this build: the resume checks are skipped"
        return 0
    fi
    inside $PROBE jobs "$want" >/dev/null || die "not resumed: $want"
    [ -z "$stopped" ] || inside $PROBE absent "$stopped" || die "$stopped was resumed, but a user had stopped it"
    log "resumed: $want${stopped:+; not $stopped (stopped by a user)}"
}

# stirring and the plugin run (started if they do not: resume_jobs may have started them).
ensure_jobs() {
    [ -n "$(job_pid stirring)" ] || as_pioreactor pioctl start stirring >/dev/null
    [ -n "$(job_pid "$PLUGIN")" ] || as_pioreactor pioctl start "$PLUGIN" >/dev/null
    STIRRING_PID=$(job_pid stirring)
    PLUGIN_PID=$(job_pid "$PLUGIN")
}

wait_daemon_up() {
    wait_for 60 "pioreactord active after the boot" unit_is active/running
    wait_for 10 "pioctl answering" inside pioctl status --json
}

# Power cut: SIGKILL to the container's init ends everything at once, no stop of any unit.
check_power_cut() {
    local start
    ensure_jobs
    as_pioreactor pioctl stop "$PLUGIN" >/dev/null # a user's stop: not to be resumed
    stop_watcher
    kill -KILL "$LEADER"
    wait_container_gone 30
    start=$(now_us)
    boot
    wait_daemon_up
    log "power cut: the daemon was serving $(elapsed "$start") s after the boot began"
    check_resumed "stirring=0" "$PLUGIN"
}

check_reboot() {
    local start
    ensure_jobs
    stop_watcher
    inside systemctl reboot || true
    start=$(now_us)
    wait_container_gone 60
    log "reboot: the container went down in $(elapsed "$start") s (nspawn exit $CONTAINER_RC)"
    boot
    wait_daemon_up
    log "reboot: the daemon was serving $(elapsed "$start") s after the reboot began"
    check_resumed "stirring=0,$PLUGIN=0" ""
}

check_logrotate() {
    local log=/var/log/pioreactord/pioreactord.log
    inside logrotate --force /etc/logrotate.d/pioreactord
    inside test -s "$log.1" || die "logrotate did not move $log"
    # Anything the daemon logs now must go to a fresh file: a reload logs a line.
    inside systemctl reload pioreactord.service
    wait_for 10 "the daemon reopening $log" inside test -s "$log"
}

check_purge() {
    local uid path leftovers
    uid=$(inside id -u pioreactor)
    inside timeout $((300 * SLOW)) apt-get purge -y -q pioreactord >"$WORK/purge.log" 2>&1 ||
        { tail -30 "$WORK/purge.log" >&2; return 1; }
    # A user's plugin survives a purge (and so its folder); nothing else of ours does.
    inside test -f "/home/pioreactor/.pioreactor/plugins/$PLUGIN.py" || die "purge removed a user's plugin"
    inside rm -r /home/pioreactor
    ! inside getent passwd pioreactor >/dev/null || die "user pioreactor is still there"
    ! inside getent group pioreactor >/dev/null || die "group pioreactor is still there"
    [ "$(inside getent group gpio)" = "gpio:x:$(inside getent group gpio | cut -d: -f3):" ] ||
        die "gpio (not ours) should remain, without members: $(inside getent group gpio)"
    [ "$(prop LoadState)" = not-found ] || die "the unit is still known to systemd"
    for path in /lib/systemd/system/pioreactord.service /etc/pioreactord.ini \
                /etc/systemd/system/multi-user.target.wants/pioreactord.service \
                /var/lib/systemd/deb-systemd-helper-enabled/pioreactord.service.dsh-also \
                /var/lib/pioreactord /var/log/pioreactord /run/pioreactord \
                /etc/mosquitto/conf.d/pioreactord.conf \
                /usr/bin/pioreactord /usr/bin/pioctl; do
        inside test ! -e "$path" || die "$path is left after purge"
    done
    leftovers=$(inside sh -c "grep -l '^Uid:[[:space:]]*$uid[[:space:]]' /proc/[0-9]*/status 2>/dev/null || true")
    [ -z "$leftovers" ] || die "processes of the old pioreactor uid $uid remain: $leftovers"
}

# Pioreactor's published plugins, as a user installs them: `pioctl plugins install` as
# pioreactor (no root), into /var/lib/pioreactord/plugins, seen by the running daemon's jobs.
# The container has no network: the wheels come from PyPI on the host (pip download), and pip
# inside installs those files (PIP_NO_INDEX). Without PyPI on the host the step is skipped
# (PIOREACTORD_REQUIRE_NETWORK=1 fails it instead).
PLUGIN_WHEELS="pioreactor-air-bubbler==0.11.0 pioreactor-relay-plugin==0.8.1"
# plugin_job_ok JOB < `pioctl jobs --json`: JOB is listed, without an import error.
plugin_job_ok() {
    python3 -c 'import json, sys; sys.exit(not any(e["name"] == sys.argv[1] and not e["error"]
                for e in json.load(sys.stdin)))' "$1"
}
check_plugins() {
    local dir=$ROOT/var/tmp/wheels spec wheel started found job
    mkdir -p "$dir"
    for spec in $PLUGIN_WHEELS; do
        if ! env -i PATH=$CLEAN_PATH python3 -m pip download -q --no-deps \
                --disable-pip-version-check -d "$dir" "$spec" >"$WORK/pip-download.log" 2>&1; then
            [ -z "${PIOREACTORD_REQUIRE_NETWORK:-}" ] || die "pip download $spec: $(tail -1 "$WORK/pip-download.log")"
            log "SKIPPED: PyPI not reachable from the host ($(tail -1 "$WORK/pip-download.log"))"
            return 0
        fi
    done
    # The shipped [PWM] gives channels 3 and 4 to alt_media and waste: a user hands them over
    # (and this step gives them back at its end, for the upgrade steps' untouched conffile).
    inside cp -p /etc/pioreactord.ini /var/tmp/pioreactord.ini.orig
    inside sed -i 's/^3 = alt_media$/3 = air_bubbler/; s/^4 = waste$/4 = relay/' /etc/pioreactord.ini
    for wheel in "$dir"/*.whl; do
        started=$(now_us)
        as_pioreactor env PIP_NO_INDEX=1 pioctl plugins install "/var/tmp/wheels/$(basename "$wheel")" \
            >"$WORK/plugin-install.log" 2>&1 || die "pioctl plugins install $(basename "$wheel"): $(tail -3 "$WORK/plugin-install.log")"
        log "$(grep -E '^(installed|note)' "$WORK/plugin-install.log" | paste -sd' ') (wall $(elapsed "$started") s)"
    done
    found=$(inside find /usr /etc /home -name 'pioreactor_air_bubbler*' 2>/dev/null || true)
    [ -z "$found" ] || die "plugin files outside /var/lib/pioreactord: $found"
    for job in air_bubbler relay; do
        as_pioreactor pioctl jobs --json | plugin_job_ok "$job" || die "pioctl jobs: $job missing or broken"
        as_pioreactor pioctl start "$job" >/dev/null || die "pioctl start $job failed"
        [ "$(as_pioreactor pioctl status --json | job_field "$job" state)" = ready ] || die "$job not ready"
    done
    as_pioreactor pioctl locks | grep -qE '^12 +relay ' || die "relay holds no lock on pin 12: $(as_pioreactor pioctl locks)"
    as_pioreactor pioctl stop air_bubbler relay >/dev/null
    as_pioreactor pioctl plugins uninstall pioreactor-relay-plugin >/dev/null
    ! as_pioreactor pioctl jobs --json | plugin_job_ok relay || die "relay still listed after uninstall"
    inside cp -p /var/tmp/pioreactord.ini.orig /etc/pioreactord.ini
    log "left installed: $(as_pioreactor pioctl plugins list | awk 'NR > 1 {print $1, $2}' | paste -sd,)"
}

# --- main -------------------------------------------------------------------------------------

log "e2e-systemd: $(basename "$DEB") on $SUITE/$ARCH"
step "host tools" host_tools
[ "$SLOW" = 1 ] || step "binfmt ($ARCH)" setup_binfmt
step "upgrade .deb" build_upgrade
step "rootfs" make_rootfs
step "boot" boot
step "install .deb + mosquitto" install_package
step "start returns once ready" check_start_waits_for_ready
step "runs as pioreactor" check_user_and_groups
step "start stirring and $PLUGIN" start_jobs
step "MQTT watcher" start_watcher
step "reload: re-exec in place" check_reload
step "plugins from PyPI, as pioreactor" check_plugins
step "logrotate" check_logrotate
step "upgrade to $UPGRADE_VERSION: reload" check_upgrade
step "kill -9 of MainPID" check_kill9
step "watchdog kill (SIGSTOP)" check_watchdog
step "stop stops jobs first" check_stop_is_clean
step "stop of a stuck daemon" check_stuck_stop
step "power cut" check_power_cut
step "reboot" check_reboot
step "purge leaves nothing" check_purge
step "poweroff" poweroff
