"""The code stays lint-clean (ruff) and type-clean (mypy --strict on src/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff() -> None:
    pytest.importorskip("ruff", reason="ruff is not installed (pip install -e '.[test]')")
    res = _run([sys.executable, "-m", "ruff", "check", "src", "tests"])
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    res = _run([sys.executable, "-m", "mypy", "src/vmasim"])
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_public_name_has_a_docstring() -> None:
    import importlib
    import importlib.machinery
    import inspect
    import pkgutil

    import vmasim

    missing = []
    for info in pkgutil.walk_packages(vmasim.__path__, "vmasim."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        if str(module.__file__).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            continue  # compiled by mypyc (VMASIM_MYPYC=1), which drops docstrings; the pure-Python run checks them
        if not module.__doc__:
            missing.append(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                if not obj.__doc__:
                    missing.append(f"{info.name}.{name}")
                if inspect.isclass(obj):
                    missing += [f"{info.name}.{name}.{m}" for m, f in vars(obj).items()
                                if not m.startswith("_") and inspect.isfunction(f) and not f.__doc__]
    assert missing == []
