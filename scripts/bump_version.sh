#!/usr/bin/env bash
# One version for the Rust crates, the Python package and the npm packages.
#
#   bash scripts/bump_version.sh 0.6.0          # set 0.6.0 everywhere
#   bash scripts/bump_version.sh --check        # every place carries the same version
#   bash scripts/bump_version.sh --check 0.6.0  # ... and it is 0.6.0 (a release tag v0.6.0)
#   bash scripts/bump_version.sh --print        # the current version
#
# Where the version lives (the Python package takes its version from Cargo through
# maturin, so it has no file of its own):
#   Cargo.toml             [workspace.package] version, and the `version` of every
#                          workspace crate in [workspace.dependencies]
#   Cargo.lock             the entries of the workspace's own packages
#   sdk/node/package.json, sdk/node/package-lock.json (the root package),
#   sdk/node/npm/*/package.json (the per-platform packages),
#   sdk/node/index.js      the version the napi-rs loader compares a platform package with
#                          (generated from package.json; rewritten here the same way)
# Needs python3 (3.11+, for tomllib) and nothing else; it does not touch the network.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
mode="set"
case "$1" in
--check) mode=check ;;
--print) mode=print ;;
-h | --help) usage ;;
-*) usage ;;
esac
if [[ $mode == set ]]; then
    new="$1"
else
    new="${2:-}"
fi

exec python3 - "$root" "$mode" "$new" <<'PY'
import json
import re
import sys
import tomllib
from pathlib import Path

root, mode, wanted = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")

cargo_toml = root / "Cargo.toml"
cargo_lock = root / "Cargo.lock"
node = root / "sdk" / "node"
package_json = node / "package.json"
package_lock = node / "package-lock.json"
index_js = node / "index.js"
platform_manifests = sorted((node / "npm").glob("*/package.json"))

manifest = tomllib.loads(cargo_toml.read_text())
current = manifest["workspace"]["package"]["version"]
# The workspace's own crates: the members' names, and the path entries of
# [workspace.dependencies] (which name them for each other).
members = []
for member in manifest["workspace"]["members"]:
    member_toml = tomllib.loads((root / member / "Cargo.toml").read_text())
    members.append(member_toml["package"]["name"])
members.append(manifest["package"]["name"])
path_deps = {
    name: spec
    for name, spec in manifest["workspace"].get("dependencies", {}).items()
    if isinstance(spec, dict) and "path" in spec
}


def found():
    """(place, version) for every place that carries the version."""
    places = [("Cargo.toml [workspace.package]", current)]
    for name, spec in path_deps.items():
        places.append((f"Cargo.toml [workspace.dependencies] {name}", spec.get("version")))
    lock = tomllib.loads(cargo_lock.read_text())
    for package in lock["package"]:
        if package["name"] in members and "source" not in package:
            places.append((f"Cargo.lock {package['name']}", package["version"]))
    places.append(("sdk/node/package.json", json.loads(package_json.read_text())["version"]))
    lock_json = json.loads(package_lock.read_text())
    places.append(("sdk/node/package-lock.json", lock_json["version"]))
    places.append(('sdk/node/package-lock.json packages[""]', lock_json["packages"][""]["version"]))
    for path in platform_manifests:
        places.append((str(path.relative_to(root)), json.loads(path.read_text())["version"]))
    in_loader = set(re.findall(r"bindingPackageVersion !== '([^']+)'", index_js.read_text()))
    for version in sorted(in_loader) or [None]:
        places.append(("sdk/node/index.js", version))
    return places


if mode == "print":
    print(current)
    sys.exit(0)

if mode == "check":
    expected = wanted or current
    wrong = [(place, version) for place, version in found() if version != expected]
    for place, version in wrong:
        print(f"version mismatch: {place} has {version}, expected {expected}", file=sys.stderr)
    if wrong:
        print("fix: bash scripts/bump_version.sh " + expected, file=sys.stderr)
        sys.exit(1)
    print(f"version {expected}: Cargo.toml, Cargo.lock, sdk/node (package.json, package-lock.json, "
          f"{len(platform_manifests)} platform packages, index.js) agree")
    sys.exit(0)

# mode == "set"
if not SEMVER.match(wanted):
    sys.exit(f"error: {wanted!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRE])")
old = current


def rewrite(path, transform):
    text = path.read_text()
    updated = transform(text)
    if updated != text:
        path.write_text(updated)


def bump_cargo_toml(text):
    # [workspace.package] version: the first `version = "..."` after the header.
    text = re.sub(
        r'(\[workspace\.package\][^\[]*?\nversion = ")[^"]*(")',
        lambda m: m.group(1) + wanted + m.group(2),
        text,
        count=1,
    )
    for name in path_deps:
        text = re.sub(
            rf'(?m)^({re.escape(name)} = \{{[^}}\n]*\bversion = "=?)[^"]*(")',
            lambda m: m.group(1) + wanted + m.group(2),
            text,
        )
    return text


def bump_cargo_lock(text):
    def entry(match):
        block = match.group(0)
        name = re.search(r'^name = "([^"]+)"', block, re.M).group(1)
        if name in members and "\nsource = " not in block:
            block = re.sub(r'(?m)^version = "[^"]*"', f'version = "{wanted}"', block, count=1)
        return block

    return re.sub(r"(?s)\[\[package\]\]\n.*?(?=\n\[\[package\]\]|\Z)", entry, text)


def bump_json(keys_path):
    def transform(text):
        data = json.loads(text)
        for keys in keys_path:
            target = data
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = wanted
        # Keep npm's own format: two spaces, a newline at the end.
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    return transform


def bump_loader(text):
    text = re.sub(r"(bindingPackageVersion !== ')[^']*(')", lambda m: m.group(1) + wanted + m.group(2), text)
    return re.sub(r"(package version mismatch, expected )\S+( but got)", lambda m: m.group(1) + wanted + m.group(2), text)


rewrite(cargo_toml, bump_cargo_toml)
rewrite(cargo_lock, bump_cargo_lock)
rewrite(package_json, bump_json([("version",)]))
rewrite(package_lock, bump_json([("version",), ("packages", "", "version")]))
for path in platform_manifests:
    rewrite(path, bump_json([("version",)]))
rewrite(index_js, bump_loader)

manifest = tomllib.loads(cargo_toml.read_text())
current = manifest["workspace"]["package"]["version"]
path_deps = {
    name: spec
    for name, spec in manifest["workspace"].get("dependencies", {}).items()
    if isinstance(spec, dict) and "path" in spec
}
wrong = [(place, version) for place, version in found() if version != wanted]
for place, version in wrong:
    print(f"error: {place} still has {version}", file=sys.stderr)
if wrong:
    sys.exit(1)
print(f"version {old} -> {wanted}: Cargo.toml, Cargo.lock, sdk/node/package.json, package-lock.json, "
      f"{len(platform_manifests)} platform packages, index.js (the Python package follows Cargo)")
print("next: add a CHANGELOG.md section, commit, tag v" + wanted)
PY
