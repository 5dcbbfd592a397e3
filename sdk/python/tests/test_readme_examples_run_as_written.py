"""Every Python example in README.md runs as written, each in a fresh interpreter (the
Redis examples on the server of A3S_LANE_REDIS_URL)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import redis_url, run_python

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index: int) -> None:
    if "RedisQueue(" in EXAMPLES[index]:
        redis_url()  # fails, saying how to get Redis, when there is none
    result = run_python(EXAMPLES[index], timeout=120, cwd=README.parent)
    assert result.returncode == 0, f"example {index + 1} failed:\n{EXAMPLES[index]}\n{result.stdout}\n{result.stderr}"
