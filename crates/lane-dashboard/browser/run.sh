#!/usr/bin/env bash
# Browser test of the dashboard in real headless Chromium.
#
#   bash crates/lane-dashboard/browser/run.sh                  # the test
#   bash crates/lane-dashboard/browser/run.sh --screenshots docs  # and save docs/dashboard-*.png
#
# Installs what it needs: Debian's chromium (apt-get, as root, when missing) and
# playwright-core from the npm registry (npm ci, into browser/node_modules; no browser
# download). Builds the demo example, and runs test.mjs against it. Fails with
# instructions when chromium or node cannot be had.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

fail() {
    echo "browser test: $*" >&2
    exit 1
}

find_chromium() {
    local c
    for c in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
        [[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
    done
    return 1
}

if ! chromium_bin="$(find_chromium)"; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "==> installing chromium with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >&2 ||
            fail "apt-get could not install chromium"
    fi
    chromium_bin="$(find_chromium)" || fail "no chromium found. Install Debian's chromium \
(as root: apt-get install -y chromium), or set CHROMIUM=/path/to/chrome, then run again."
fi
export CHROMIUM="$chromium_bin"

command -v node >/dev/null && command -v npm >/dev/null ||
    fail "node and npm are needed (apt-get install -y nodejs npm), then run again."

if [[ ! -d "$here/node_modules/playwright-core" ]]; then
    echo "==> npm ci (playwright-core, no browser download)" >&2
    (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent) ||
        fail "npm ci failed: the npm registry must be reachable to install playwright-core"
fi

echo "==> building the demo server" >&2
(cd "$root" && cargo build --quiet -p lane-dashboard --example demo)
demo="${CARGO_TARGET_DIR:-$root/target}/debug/examples/demo"

args=()
if [[ "${1:-}" == "--screenshots" ]]; then
    dir="${2:-docs}"
    [[ "$dir" = /* ]] || dir="$root/$dir"
    args=(--screenshots "$dir")
fi
echo "==> browser test with $chromium_bin" >&2
exec node "$here/test.mjs" "$demo" "${args[@]}"
