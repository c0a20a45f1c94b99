"""Divergences the differential fuzzer found, shrunk, with the kernel reports of every machine they were
recorded on stored beside them.

The model must reproduce each stored report exactly when it models the machine the report came from (its
profile), so these tests pass on any host; tests/kernel/test_model_vs_kernel.py also checks the same programs
against the live kernel with the probed profile.  ``vmasim record --as NAME FILES`` refreshes a machine's
reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmasim.profile import builtin_profiles
from vmasim.program import parse_program
from vmasim.program.model import run_model
from vmasim.stored import stored_reports

HERE = Path(__file__).parent
# Divergences the fuzzer found (regressions/) and hand-written corner probes (probes/).
FILES = sorted((HERE / "regressions").glob("*.json")) + sorted((HERE / "probes").glob("*.json"))
CASES = [(path, name) for path in FILES for name in stored_reports(json.loads(path.read_text()))]


@pytest.mark.parametrize(("path", "profile"), CASES, ids=[f"{p.parent.name}/{p.stem}@{n}" for p, n in CASES])
def test_regression(path: Path, profile: str) -> None:
    doc = json.loads(path.read_text())
    assert run_model(parse_program(doc), profile) == stored_reports(doc)[profile], doc["_comment"]


def test_every_stored_report_has_a_known_profile() -> None:
    names = {name for _, name in CASES}
    assert names <= set(builtin_profiles())
    # Every program carries the answer of the no-PKU host, where the project runs now; those from before
    # the project left the protection-keys host carry that host's too.
    assert all("linux-6.18.44-nopku" in stored_reports(json.loads(p.read_text())) for p in FILES)
