#!/bin/bash
# Every figure of issue 14 beside its same-run yardstick: bash bench/run.sh [-n 10] [--lines 20000]
# Measures a regular install (pip install ., as the .deb gives), never an editable one: an editable
# install's .pth finder costs every interpreter start ~12 ms. .venv-bench is rebuilt from the
# working tree each time, so it measures the code as it is now.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-bench/bin/python ]; then
    /usr/bin/python3 -m venv .venv-bench
fi
.venv-bench/bin/pip install -q --force-reinstall --no-deps . 2>&1 | grep -v "is ignored" >&2 || true
.venv-bench/bin/pip install -q . 2>&1 | grep -v "is ignored" >&2 || true
rm -rf build
# As under systemd: a job writes its plugin's .pyc once. With this set (some shells and
# containers set it) every start compiles its plugin again: +0.7 ms a start here.
unset PYTHONDONTWRITEBYTECODE
exec .venv-bench/bin/python bench/run_all.py "$@"
