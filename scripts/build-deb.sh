#!/bin/bash
# Build the pioreactord .deb (Architecture: all) and check it: unit and binaries inside, every
# install_requires mapped to a Debian package, lintian clean at warning level.
#
#   scripts/build-deb.sh [--src DIR] [--out DIR] [--version V] [--no-lintian]
#
# --src: the source tree (default: this checkout). It is copied (git's tracked and untracked,
# not ignored, files) to a temporary folder first, because dpkg-buildpackage writes its results
# next to the source and debhelper leaves build files inside it.
# --out: where the .deb and the build log go (default: SRC/dist). Prints the .deb's path last.
# --version: build the copy as version V (a test build: the e2e test upgrades to one), with a
#   debian/changelog entry saying so.
# --no-lintian: skip lintian (for such a test build of an already checked tree).
# Needs root only to apt-get install missing build tools.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

src=$(dirname "$here")
out=
build_version=
lintian=1
while [ $# -gt 0 ]; do
    case $1 in
        --src) src=$(cd "$2" && pwd); shift 2 ;;
        --out) out=$2; shift 2 ;;
        --version) build_version=$2; shift 2 ;;
        --no-lintian) lintian=0; shift ;;
        *) echo "usage: $0 [--src DIR] [--out DIR] [--version V] [--no-lintian]" >&2; exit 2 ;;
    esac
done
out=$(mkdir -p "${out:-$src/dist}" && cd "${out:-$src/dist}" && pwd)

BUILD_TOOLS=(build-essential dpkg-dev fakeroot debhelper dh-python pybuild-plugin-pyproject
             python3-all python3-setuptools python3-wheel lintian)
# What install_requires (+ python3-pigpio from debian/control) must become in Depends.
EXPECTED_DEPENDS=(python3-paho-mqtt python3-zmq python3-psutil python3-structlog python3-click
                  python3-sdnotify python3-pigpio adduser)

work=$(mktemp -d /tmp/pioreactord-deb.XXXXXX)
cleanup() {
    report_failed_step
    rm -rf "$work"
}
trap cleanup EXIT

copy_source() {
    mkdir "$work/pioreactord"
    if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$src" && git ls-files -co --exclude-standard -z |
            xargs -0 cp -P --parents -t "$work/pioreactord")
    else
        cp -a "$src/." "$work/pioreactord/"
        rm -rf "$work/pioreactord/dist"
    fi
}

# --version: the copy becomes version V, in the package's code and in debian/changelog.
retag_version() {
    local copy=$work/pioreactord changelog maintainer
    set_package_version "$copy" "$build_version"
    changelog=$copy/debian/changelog
    maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$changelog" | head -1)
    { printf 'pioreactord (%s) unstable; urgency=medium\n\n' "$build_version"
      printf '  * Test build (scripts/build-deb.sh --version %s).\n\n' "$build_version"
      printf ' -- %s  %s\n\n' "$maintainer" "$(date -R)"
      cat "$changelog"; } >"$changelog.new"
    mv "$changelog.new" "$changelog"
}

check_version() {
    local upstream debian
    upstream=$(setup_cfg_version "$work/pioreactord")
    debian=$(cd "$work/pioreactord" && dpkg-parsechangelog -S Version)
    [ "$upstream" = "$debian" ] ||
        die "setup.cfg says version $upstream, debian/changelog says $debian: add a changelog entry (dch -v $upstream)"
    VERSION=$upstream
}

build() {
    # env -i: no pyenv python, PIP_* or virtualenv from the caller (pybuild would pick them up).
    (cd "$work/pioreactord" &&
        env -i PATH=$CLEAN_PATH HOME="$work" LANG=C.UTF-8 ${DEB_BUILD_OPTIONS:+DEB_BUILD_OPTIONS="$DEB_BUILD_OPTIONS"} \
            dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 ||
        { tail -40 "$out/build.log" >&2; die "dpkg-buildpackage failed (full log: $out/build.log)"; }
    # debian/rules already fails on this; checked again so a rules change cannot lose it.
    if grep 'Cannot find package that provides' "$out/build.log" >&2; then
        die "dh_python3 could not map a dependency: add it to debian/py3dist-overrides"
    fi
    DEB=$out/pioreactord_${VERSION}_all.deb
    mv "$work/pioreactord_${VERSION}_all.deb" "$DEB"
}

check_contents() {
    local listing depends path pkg
    listing=$(dpkg-deb -c "$DEB")
    for path in ./lib/systemd/system/pioreactord.service ./usr/bin/pioreactord ./usr/bin/pioctl \
                ./etc/pioreactord.ini ./etc/logrotate.d/pioreactord \
                ./etc/mosquitto/conf.d/pioreactord.conf \
                ./usr/share/man/man8/pioreactord.8.gz \
                ./usr/share/man/man1/pioctl.1.gz; do
        grep -q " $path\$" <<<"$listing" || die "$path is not in $DEB"
    done
    for path in /etc/pioreactord.ini /etc/logrotate.d/pioreactord /etc/mosquitto/conf.d/pioreactord.conf; do
        dpkg-deb -I "$DEB" conffiles | grep -qx "$path" || die "$path is not a conffile"
    done
    depends=$(dpkg-deb -f "$DEB" Depends)
    log "Depends: $depends"
    for pkg in "${EXPECTED_DEPENDS[@]}"; do
        grep -qE "(^|, )$pkg( |,|$)" <<<"$depends" || die "Depends lacks $pkg"
    done
}

run_lintian() {
    # lintian warns that it runs as root; that line is not a finding. Its exit status is the
    # pipeline's (pipefail), the filter's is ignored.
    env -i PATH=$CLEAN_PATH LANG=C.UTF-8 lintian --fail-on error,warning --info "$DEB" 2>&1 |
        { grep -v 'running with root privileges is not recommended' || true; }
}

step "build tools" apt_install_missing "${BUILD_TOOLS[@]}"
step "copy source" copy_source
[ -z "$build_version" ] || step "version $build_version" retag_version
step "version" check_version
step "dpkg-buildpackage" build
step "contents" check_contents
[ "$lintian" = 0 ] || step "lintian" run_lintian
echo "$DEB"
