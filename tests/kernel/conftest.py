"""Kernel-runner test setup: skip cleanly where the host kernel cannot be used."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kernelhelpers import Run

from vmasim.kernel import kernel_available, run_program
from vmasim.program import parse_program


@functools.lru_cache(maxsize=1)
def _available() -> tuple[bool, str]:
    return kernel_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked ``kernel`` (with the reason) when the runner is unavailable."""
    ok, why = _available()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"host kernel runner unavailable: {why}")
    for item in items:
        if item.get_closest_marker("kernel") is not None:
            item.add_marker(skip)


@pytest.fixture
def run() -> Run:
    """Run a program given as its ``ops`` list (plus optional top-level fields) and return the report."""

    def _run(ops: list[dict[str, Any]], timeout: float = 10.0, **top: Any) -> dict[str, Any]:
        return run_program(parse_program({"ops": ops, **top}), timeout=timeout)

    return _run
