#!/usr/bin/env bash
# Tests the Node.js SDK from scratch: installs the locked npm dependencies, builds the
# addon from source (debug), checks that the committed index.d.ts / index.js match what
# the build generates, and runs the `node --test` suite. Needs Node.js 20+, npm and Rust.
# The Redis tests use A3S_LANE_REDIS_URL and the Redis Cluster tests
# A3S_LANE_REDIS_CLUSTER_URLS; without them a throwaway redis-server and a throwaway
# cluster are started (see scripts/redis.sh at the repository root). Any failure stops the script with a
# non-zero exit code.
#
# `scripts/test.sh bench [args]` instead builds the addon in release mode and runs
# benches/submit.mjs (shallow, burst and deep patterns against p-queue) with `args`.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=../../scripts/redis.sh
source ../../scripts/redis.sh

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "error: $1 is required ($2)" >&2
        exit 1
    fi
}
need node "Node.js 20 or newer"
need npm "it comes with Node.js"
need cargo "the Rust toolchain, https://rustup.rs"
major=$(node -p 'process.versions.node.split(".")[0]')
if (( major < 20 )); then
    echo "error: Node.js 20 or newer is required, found $(node --version)" >&2
    exit 1
fi

if [[ "${1:-}" == bench ]]; then
    shift
    echo "==> npm ci (sdk/node)"
    npm ci --no-audit --no-fund
    echo "==> building the addon (release) for the bench"
    rm -rf .napi
    npx napi build --platform --release --output-dir .napi
    cp .napi/lane.*.node .
    echo "==> node benches/submit.mjs $*"
    node benches/submit.mjs "$@"
    exit 0
fi

ensure_redis
ensure_redis_cluster

echo "==> npm ci (sdk/node)"
npm ci --no-audit --no-fund

echo "==> building the addon (debug) into .napi/, with the bindings it generates"
# Built into .napi/ so that the committed index.js and index.d.ts stay as they are and
# the suite can compare them with what this build generated.
rm -rf .napi
npx napi build --platform --output-dir .napi
cp .napi/lane.*.node .

echo "==> node --test"
node --test --test-timeout=120000 --test-reporter=spec test/*.test.mjs
python3 ../../docs/guide/check_samples.py node   # the guide's JavaScript samples, against this build
