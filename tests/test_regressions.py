"""Divergences the differential fuzzer found, shrunk, with the host kernel's report stored beside them.

The model must reproduce the stored report exactly; tests/kernel/test_model_vs_kernel.py also checks the
same programs against the live kernel.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmasim.program import parse_program
from vmasim.program.model import run_model

HERE = Path(__file__).parent
# Divergences the fuzzer found (regressions/) and hand-written corner probes (probes/).
CASES = sorted((HERE / "regressions").glob("*.json")) + sorted((HERE / "probes").glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_regression(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert run_model(parse_program(doc)) == doc["_kernel_report"], doc["_comment"]
