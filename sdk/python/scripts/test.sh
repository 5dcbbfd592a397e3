#!/usr/bin/env bash
# Builds the Python package in a fresh virtualenv and runs its proof: the type stubs
# against the module (mypy.stubtest) and the pytest suite. Needs Python >= 3.11 with pip
# and a Rust toolchain; everything else comes from PyPI. The Redis tests use
# A3S_LANE_REDIS_URL, or a throwaway redis-server started here, and the Redis Cluster
# tests A3S_LANE_REDIS_CLUSTER_URLS, or a throwaway cluster started here (see
# scripts/redis.sh).
# Fails on any error, including a suite that collected no tests.
#
#   sdk/python/scripts/test.sh            # debug build (what CI runs)
#   A3S_LANE_PY_RELEASE=1 sdk/python/scripts/test.sh   # optimised build in this venv
# Benchmarks need the release build: run scripts/bench.sh (its own .venv-release).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $python is $("$python" --version 2>&1); a3s-lane needs Python >= 3.11 (set PYTHON=...)" >&2
    exit 1
fi

venv=.venv
if [[ ! -x "$venv/bin/python" ]]; then
    echo "==> creating $PWD/$venv"
    "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"

echo "==> installing the build and test tools"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "maturin>=1.9,<2" "pytest>=8" "pytest-timeout>=2.3" "mypy>=1.13"

echo "==> building and installing a3s-lane"
profile=()
if [[ -n "${A3S_LANE_PY_RELEASE:-}" ]]; then profile=(--release); fi
maturin develop --quiet "${profile[@]}"

echo "==> mypy.stubtest a3s_lane"
# From outside the source tree, so that the installed package is the one checked.
(cd / && python -m mypy.stubtest a3s_lane)

echo "==> mypy --strict on the tests and the benchmark (the stubs as users see them)"
mypy --strict --no-incremental tests benches

# shellcheck disable=SC1091  # the repository's scripts/redis.sh
source ../../scripts/redis.sh
ensure_redis
ensure_redis_cluster

echo "==> pytest (A3S_LANE_REDIS_URL=$A3S_LANE_REDIS_URL A3S_LANE_REDIS_CLUSTER_URLS=$A3S_LANE_REDIS_CLUSTER_URLS)"
# Exit status 5 (no tests collected) is a failure like any other non-zero status.
python -m pytest -q tests
python ../../docs/guide/check_samples.py python   # the guide's Python samples, against this build
