"""The code stays lint-clean (ruff) and type-clean (mypy --strict on src/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff() -> None:
    res = _run(["ruff", "check", "src", "tests"])
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    res = _run([sys.executable, "-m", "mypy", "src/vmasim"])
    assert res.returncode == 0, res.stdout + res.stderr
