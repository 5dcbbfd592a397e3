#!/usr/bin/env python3
"""Runs the guide's Python and JavaScript samples against the built SDKs.

The guide (docs/guide/src/*.md) marks each ```python and ```js block: `runnable` blocks
are run here, `norun` ones are fragments (a block with neither is an error, so no sample
goes unchecked by accident), and `redis` ones need A3S_LANE_REDIS_URL (skipped, and
said so, without it). The Rust samples are doc tests of the facade crate
(`cargo test -p a3s-lane --doc`), not run here.

    python3 docs/guide/check_samples.py python   # with the Python that has a3s_lane installed
    python3 docs/guide/check_samples.py node     # against sdk/node (its built .node file)

sdk/python/scripts/test.sh and sdk/node/scripts/test.sh call it at their end. Each
sample runs in a fresh temporary directory; a JavaScript sample is an ES module when it
has an `import` statement, CommonJS otherwise, and resolves `@a3s-lab/lane` to sdk/node.
Exits non-zero when a sample fails (its output is shown), times out, or leaves accepted
work at exit (the SDKs' `a3s_lane: ...` report on stderr).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

GUIDE = Path(__file__).resolve().parent
REPO = GUIDE.parent.parent
FENCE = re.compile(r"^```(\S*)\s*$")
TIMEOUT_S = 120
LANGS = {"python": "python", "js": "node"}


def blocks(path: Path):
    """(line, language, attributes, code) of each fenced block of a chapter."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match and match.group(1):
            start = i + 1
            info = match.group(1).split(",")
            i += 1
            body = []
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            yield start, info[0], set(info[1:]), "\n".join(body) + "\n"
        i += 1


def run(kind: str, code: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    if kind == "python":
        file = workdir / "sample.py"
        file.write_text(code, encoding="utf-8")
        command = [sys.executable, str(file)]
    else:
        module = re.search(r"^\s*import\s", code, re.MULTILINE) is not None
        file = workdir / ("sample.mjs" if module else "sample.cjs")
        file.write_text(code, encoding="utf-8")
        scope = workdir / "node_modules" / "@a3s-lab"
        scope.mkdir(parents=True)
        (scope / "lane").symlink_to(REPO / "sdk" / "node", target_is_directory=True)
        command = ["node", str(file)]
    return subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def main() -> int:
    wanted = sys.argv[1:] or ["python", "node"]
    unknown = [w for w in wanted if w not in LANGS.values()]
    if unknown:
        print(f"usage: check_samples.py [python] [node]; unknown: {unknown}", file=sys.stderr)
        return 2
    if "python" in wanted:
        probe = subprocess.run([sys.executable, "-c", "import a3s_lane"], capture_output=True, check=False)
        if probe.returncode != 0:
            print(
                f"error: {sys.executable} cannot import a3s_lane; run this with the Python the "
                "package is installed in (sdk/python/scripts/test.sh uses sdk/python/.venv)",
                file=sys.stderr,
            )
            return 1
    failures, ran, skipped = 0, 0, 0
    for chapter in sorted((GUIDE / "src").glob("*.md")):
        for line, lang, attrs, code in blocks(chapter):
            kind = LANGS.get(lang)
            if kind is None:
                continue
            where = f"{chapter.relative_to(REPO)}:{line}"
            if not attrs & {"runnable", "norun"}:
                print(f"error: {where}: mark the ```{lang} block runnable or norun")
                failures += 1
                continue
            if kind not in wanted or "norun" in attrs:
                continue
            if "redis" in attrs and not os.environ.get("A3S_LANE_REDIS_URL"):
                print(f"skipped {where} ({lang}): needs A3S_LANE_REDIS_URL")
                skipped += 1
                continue
            with tempfile.TemporaryDirectory(prefix="a3s-lane-guide-") as tmp:
                try:
                    done = run(kind, code, Path(tmp))
                except subprocess.TimeoutExpired:
                    print(f"FAILED {where} ({lang}): no end after {TIMEOUT_S} s")
                    failures += 1
                    continue
            ran += 1
            if done.returncode != 0:
                failures += 1
                print(f"FAILED {where} ({lang}): exit status {done.returncode}")
                print(done.stdout + done.stderr)
            elif "a3s_lane:" in done.stderr:
                # The SDKs' exit report: the sample left accepted work behind.
                failures += 1
                print(f"FAILED {where} ({lang}): it left work at exit")
                print(done.stderr)
            else:
                print(f"ok {where} ({lang})")
    print(f"==> guide samples ({', '.join(wanted)}): {ran} ran, {skipped} skipped, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
