"""Kernel-runner test setup: skip cleanly where the host kernel cannot be used."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kernelhelpers import Run

from vmasim.kernel import run_program
from vmasim.program import parse_program

# Skipping where the runner is unavailable happens in tests/conftest.py.


@pytest.fixture
def run() -> Run:
    """Run a program given as its ``ops`` list (plus optional top-level fields) and return the report."""

    def _run(ops: list[dict[str, Any]], timeout: float = 10.0, **top: Any) -> dict[str, Any]:
        return run_program(parse_program({"ops": ops, **top}), timeout=timeout)

    return _run
