#!/usr/bin/env bash
# Builds a3s-lane in release mode in its own virtualenv (.venv-release, so that the
# debug build of scripts/test.sh is left alone) and runs the benches. Figures from a
# debug build mean nothing: always measure through this script.
#
#   sdk/python/scripts/bench.sh                       # benches/patterns.py, every pattern
#   sdk/python/scripts/bench.sh --pattern burst --rounds 3
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=.venv-release
if [[ ! -x "$venv/bin/python" ]]; then
    echo "==> creating $PWD/$venv" >&2
    "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "maturin>=1.9,<2"
echo "==> building a3s-lane (release)" >&2
maturin develop --quiet --release
echo "==> benches/patterns.py $*" >&2
python benches/patterns.py "$@"
