"""The scenarios of tests/scenarios on the host kernel: the expected layouts hold on the real thing.

tests/test_scenarios.py checks the model against the same ``_expect`` lists,
so together the two show that model and kernel agree on every scenario.
Each expectation is ``[start page, end page, perms]`` relative to the window,
optionally followed by the VmFlags string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vmasim.kernel import KernelRunError, run_programs
from vmasim.program import parse_program

pytestmark = [pytest.mark.kernel, pytest.mark.differential]

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.json"))


def _project(report: dict[str, Any], window_start: int, expect: list[list[Any]]) -> list[list[Any]]:
    got = []
    for v, exp in zip(report["vmas"], expect, strict=False):
        entry: list[Any] = [
            (int(v["start"], 16) - window_start) // 4096,
            (int(v["end"], 16) - window_start) // 4096,
            v["perms"],
        ]
        if len(exp) > 3:
            entry.append(" ".join(v["flags"]))
        got.append(entry)
    return got


@pytest.fixture(scope="module")
def kernel_reports() -> dict[str, dict[str, Any] | KernelRunError]:
    """All scenarios in one batch: one executor exec instead of one per scenario."""
    programs = [parse_program(json.loads(p.read_text())) for p in SCENARIOS]
    return {p.stem: r for p, r in zip(SCENARIOS, run_programs(programs), strict=True)}


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_on_kernel(path: Path, kernel_reports: dict[str, dict[str, Any] | KernelRunError]) -> None:
    doc = json.loads(path.read_text())
    report = kernel_reports[path.stem]
    if isinstance(report, KernelRunError):
        raise report
    expect = doc["_expect"]
    start = parse_program(doc).window_start
    assert len(report["vmas"]) == len(expect), report["vmas"]
    assert _project(report, start, expect) == expect
