"""Selftest (M*) and host-observation (K*) scenarios as programs, run on the model with exact expected layouts.

The same programs run on the host kernel in tests/kernel/test_differential.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmasim.program import parse_program
from vmasim.program.model import run_model

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))


def load(path: Path) -> tuple[dict, list]:
    doc = json.loads(path.read_text())
    return doc, doc["_expect"]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_layout(path: Path) -> None:
    doc, expect = load(path)
    program = parse_program(doc)
    report = run_model(program)
    check_layout(report, program.window_start, expect)
    for key, child_expect in doc.get("_expect_children", {}).items():
        check_layout(report["children"][key], program.window_start, child_expect)


def check_layout(report: dict, window_start: int, expect: list) -> None:
    got = []
    for v, exp in zip(report["vmas"], expect, strict=False):
        entry = [(int(v["start"], 16) - window_start) // 4096, (int(v["end"], 16) - window_start) // 4096, v["perms"]]
        if len(exp) > 3:
            entry.append(" ".join(v["flags"]))
        got.append(entry)
    assert len(report["vmas"]) == len(expect), report["vmas"]
    assert got == expect
