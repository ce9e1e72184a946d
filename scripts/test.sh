#!/usr/bin/env bash
# The test command (README, .ci/run). On a fresh Debian 12 machine as root it installs what it
# needs, then runs the whole suite twice: against the newest releases on PyPI, and against Debian
# bookworm's own python3-* packages (what the .deb depends on). Then the system tests (Debian
# package + systemd in a container) when scripts/test-system.sh exists and we are root.
#   PIOREACTORD_SKIP_SYSTEM=1  skips the system tests (a quick local run).
#   PIOREACTORD_REQUIRE_NETWORK=  (empty) lets the tests that need PyPI (Pioreactor's published
#   plugins) skip, saying so, on a machine without it; by default they must run.
#   PIOREACTORD_REQUIRE_ROOT=1 (set when run as root) makes a test that needs root fail, not skip.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
# CI reaches PyPI: the published-plugin tests must run there, not skip.
export PIOREACTORD_REQUIRE_NETWORK=${PIOREACTORD_REQUIRE_NETWORK-1}
# As root (CI), the tests that need root (tmpfs mounts, a second user) must run, not skip.
if [ "$(id -u)" = 0 ]; then export PIOREACTORD_REQUIRE_ROOT=${PIOREACTORD_REQUIRE_ROOT-1}; fi
step() { printf '\n==> %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

APT_PACKAGES=(mosquitto python3-venv python3-setuptools python3-wheel python3-pytest
              python3-pytest-timeout python3-paho-mqtt python3-zmq python3-psutil
              python3-structlog python3-click python3-sdnotify python3-pigpio
              python3-smbus2)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  step "apt-get install ${missing[*]}"
  while fuser /var/lib/dpkg/lock-frontend >/dev/null 2>&1; do sleep 3; done
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The broker the tests start is their own; the packaged one must not hold port 1883 meanwhile.
systemctl disable --now mosquitto >/dev/null 2>&1 || true

step "PyPI: newest releases"
/usr/bin/python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'
.venv/bin/pip list 2>/dev/null | grep -iE '^(paho-mqtt|pyzmq|psutil|structlog|click|sdnotify) '
step "lint: ruff, mypy"
.venv/bin/pip install -q ruff mypy
.venv/bin/ruff check daemon jobs tests bench examples
.venv/bin/mypy daemon jobs
.venv/bin/python -m pytest -q -p no:cacheprovider tests

step "Debian bookworm: python3-* packages from apt"
/usr/bin/python3 -m venv --system-site-packages .venv-bookworm
.venv-bookworm/bin/pip install -q --no-deps --no-build-isolation -e . >/dev/null
.venv-bookworm/bin/python - <<'PY'
import importlib.metadata as m
for name in ("paho-mqtt", "pyzmq", "psutil", "structlog", "click", "sdnotify"):
    print(f"{name:10} {m.version(name)}")
PY
.venv-bookworm/bin/python -m pytest -q -p no:cacheprovider tests

if [[ -z "${PIOREACTORD_SKIP_SYSTEM:-}" && -f scripts/test-system.sh && $(id -u) == 0 ]]; then
  step "system tests: Debian package, systemd unit, container end-to-end"
  bash scripts/test-system.sh
fi
step "all tests passed"
