#!/usr/bin/env bash
# Builds the pynenc drop-in and runs its Python tests: pynenc 0.1.0's own
# state-backend suites (memory://, sqlite://, postgres://), its end-to-end
# combination suite under every runner, and our interop/value/kill tests.
#
#   crates/taskstate-python/test.sh [pytest args...]
#
# Needs python3 >= 3.11.6 with venv, and network access to PyPI the first
# time. The venv lives in target/pyvenv (PYVENV overrides). PostgreSQL cases
# run when TASKSTATE_POSTGRES_URL is set, and print
# "skipped: set TASKSTATE_POSTGRES_URL" otherwise.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PYVENV:-$root/target/pyvenv}"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
# pynenc's tests (shipped in its wheel as pynenc_tests) need psutil,
# pytest-asyncio and pytest-timeout from its [tests] extra;
# pytest-rerunfailures gives its timing-raced combination tests one rerun
# (see tests/conftest.py). playwright drives the system's Chromium in the
# web monitor's browser test (its own browser download is never used).
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "pynenc==0.1.0" "pytest>=8" "maturin>=1.7,<2" psutil pytest-asyncio pytest-timeout \
    pytest-rerunfailures "playwright>=1.40,<2"

# The `taskstate` binary the browser test serves the store with.
(cd "$root" && cargo build --quiet -p taskstate --bin taskstate)
export TASKSTATE_BIN="${TASKSTATE_BIN:-$root/target/debug/taskstate}"

# Release build: pynenc's combination suite has timing assertions.
(cd "$here" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
    maturin develop --release --quiet)

cd "$here"
exec "$venv/bin/python" -m pytest tests -p no:cacheprovider --timeout 300 -q -rfEsR "$@"
