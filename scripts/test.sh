#!/usr/bin/env bash
# Runs every test of the project: Rust (workspace, all features), then the SDK suites,
# then the dashboard in headless Chromium (installed with apt-get when missing),
# then the built packages (wheel, sdist, npm tarballs, crates) installed outside the tree.
# Needs nothing installed by hand: it starts a throwaway Redis on a free loopback port
# when A3S_LANE_REDIS_URL is not set, and a throwaway three-node Redis Cluster when
# A3S_LANE_REDIS_CLUSTER_URLS is not set.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/redis.sh
source scripts/redis.sh
ensure_redis
ensure_redis_cluster
ensure_redis_tools

echo "==> Rust tests (A3S_LANE_REDIS_URL=$A3S_LANE_REDIS_URL A3S_LANE_REDIS_CLUSTER_URLS=$A3S_LANE_REDIS_CLUSTER_URLS)"
cargo test --workspace --all-features --all-targets
cargo test --workspace --all-features --doc

echo "==> Python SDK (sdk/python)"
bash sdk/python/scripts/test.sh

echo "==> Node.js SDK (sdk/node)"
bash sdk/node/scripts/test.sh

echo "==> The dashboard in headless Chromium (crates/lane-dashboard/browser/run.sh)"
bash crates/lane-dashboard/browser/run.sh

echo "==> The packages as users install them (scripts/test_artifacts.sh)"
bash scripts/test_artifacts.sh
