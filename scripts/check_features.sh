#!/usr/bin/env bash
# Checks that the facade crate a3s-lane builds, warning-free, with no default features and
# with each of its features on its own:
#
#   cargo check -p a3s-lane --no-default-features
#   cargo check -p a3s-lane --no-default-features --features F     (for every F)
#
# The features are read from the root Cargo.toml's [features] table at run time (through
# `cargo metadata`), so a new feature is checked without editing this script. `default` is
# left out: it is what every other build uses.
#
# Extra arguments go to every `cargo check`, e.g. `bash scripts/check_features.sh --all-targets`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Warnings fail, as in .ci/run (not added twice, so the flags, and the build cache, stay
# the same when .ci/run has set them already).
case " ${RUSTFLAGS:-} " in
    *" -D warnings "*) ;;
    *) export RUSTFLAGS="${RUSTFLAGS:-} -D warnings" ;;
esac

features="$(
    cargo metadata --format-version 1 --no-deps |
        python3 -c '
import json, sys
meta = json.load(sys.stdin)
[facade] = [p for p in meta["packages"] if p["name"] == "a3s-lane"]
for name in sorted(facade["features"]):
    if name != "default":
        print(name)
'
)"

if [[ -z "$features" ]]; then
    echo "no features found in the a3s-lane manifest" >&2
    exit 1
fi

echo "==> a3s-lane features: $(echo "$features" | tr '\n' ' ')(RUSTFLAGS=$RUSTFLAGS)"

failed=()
run() {
    local label="$1"
    shift
    echo "==> cargo check -p a3s-lane --no-default-features${*:+ $*}"
    if ! cargo check -p a3s-lane --no-default-features "$@"; then
        failed+=("$label")
    fi
}

run "(none)" "${@}"
while IFS= read -r feature; do
    run "$feature" --features "$feature" "${@}"
done <<<"$features"

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "==> a3s-lane does not build with: ${failed[*]}" >&2
    exit 1
fi
echo "==> a3s-lane builds with no default features and with each feature alone"
