"""The shipped type stubs match the native module (mypy.stubtest), the package is marked
typed, and every public name has a docstring."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import a3s_lane


def test_stubtest_finds_no_difference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "a3s_lane"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_ships_its_stubs_and_py_typed() -> None:
    package = Path(a3s_lane.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_native.pyi").is_file()


def test_every_public_name_has_a_docstring() -> None:
    missing: list[str] = []
    for name in a3s_lane.__all__:
        obj = getattr(a3s_lane, name)
        if not inspect.isclass(obj):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        # A dataclass field's default is a class attribute too (its doc is the attribute
        # docstring in the source, which Python does not keep).
        fields = {field.name for field in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
        for attribute, member in vars(obj).items():
            if attribute.startswith("_") or attribute in fields:
                continue
            if not (getattr(member, "__doc__", None) or "").strip():
                missing.append(f"{name}.{attribute}")
    assert missing == []
    assert (a3s_lane.__doc__ or "").strip()
