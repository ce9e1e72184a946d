# Shared helpers for scripts/*.sh (sourced, not run). Bash, with set -euo pipefail in the caller.

# A PATH without pyenv shims or virtualenvs: Debian's tools must run Debian's python3.
CLEAN_PATH=/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '%s %s\n' "[$(date +%T)]" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# step NAME CMD...: run CMD and print how long it took. CMD runs under the caller's set -e (no
# `cmd || rc=$?` here: that would switch errexit off inside shell functions); if it fails the
# script exits and the caller's EXIT trap calls report_failed_step.
CURRENT_STEP=
STEP_START=0
step() {
    CURRENT_STEP=$1
    shift
    log "==> $CURRENT_STEP"
    STEP_START=$(now_us)
    "$@"
    log "<== $CURRENT_STEP: $(elapsed "$STEP_START") s"
    CURRENT_STEP=
}

report_failed_step() {
    [ -z "$CURRENT_STEP" ] || log "<== $CURRENT_STEP: FAILED after $(elapsed "$STEP_START") s"
}

now_us() { echo "${EPOCHREALTIME/./}"; }
# elapsed START_US: seconds since START_US, one decimal.
elapsed() {
    local tenths=$((($(now_us) - $1) / 100000))
    echo "$((tenths / 10)).$((tenths % 10))"
}

# Another apt user (unattended upgrades, a parallel job) may hold the dpkg lock: wait for it.
wait_for_apt_lock() {
    local deadline=$((SECONDS + 600))
    while fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "dpkg lock still held after 10 min"
        sleep 2
    done
}

# apt_install_missing PKG...: install (no recommends) whichever of PKG are not installed yet.
apt_install_missing() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    log "installing ${missing[*]}"
    wait_for_apt_lock
    env -i PATH=$CLEAN_PATH DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    wait_for_apt_lock
    env -i PATH=$CLEAN_PATH DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# The package version (debian/changelog must agree): setup.cfg's `version =`, or, when that says
# `attr: pioreactord.__version__`, the __version__ line of daemon/__init__.py.
setup_cfg_version() {
    local version
    version=$(sed -n 's/^version *= *//p' "$1/setup.cfg")
    case $version in
        attr:*) sed -n "s/^__version__ *= *[\"']\([^\"']*\)[\"'].*/\1/p" "$1/daemon/__init__.py" ;;
        *) echo "$version" ;;
    esac
}

# set_package_version DIR VERSION: write VERSION where setup_cfg_version reads it (in a copy of
# the source: build-deb.sh --version).
set_package_version() {
    if grep -q '^version *= *attr:' "$1/setup.cfg"; then
        sed -i "s/^__version__ *= *[\"'][^\"']*[\"']/__version__ = \"$2\"/" "$1/daemon/__init__.py"
    else
        sed -i "s/^version *= *.*/version = $2/" "$1/setup.cfg"
    fi
    [ "$(setup_cfg_version "$1")" = "$2" ] || die "could not set the version to $2 in $1"
}
