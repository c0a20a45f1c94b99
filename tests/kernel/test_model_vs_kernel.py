"""The differential test: every example and scenario program gives the same layout report on the model
and on the host kernel, field for field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vmasim.kernel import KernelRunError, run_programs
from vmasim.program import parse_program
from vmasim.program.model import run_model

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent.parent
PROGRAMS = sorted((ROOT / "examples").glob("*.json")) + sorted((ROOT / "tests" / "scenarios").glob("*.json")) + sorted(
    (ROOT / "tests" / "regressions").glob("*.json")
)


@pytest.fixture(scope="module")
def kernel_reports() -> dict[Path, dict[str, Any] | KernelRunError]:
    programs = [parse_program(json.loads(p.read_text())) for p in PROGRAMS]
    return dict(zip(PROGRAMS, run_programs(programs), strict=True))


@pytest.mark.parametrize("path", PROGRAMS, ids=[f"{p.parent.name}/{p.stem}" for p in PROGRAMS])
def test_model_matches_kernel(path: Path, kernel_reports: dict[Path, dict[str, Any] | KernelRunError]) -> None:
    kernel = kernel_reports[path]
    if isinstance(kernel, KernelRunError):
        raise kernel
    model = run_model(parse_program(json.loads(path.read_text())))
    assert model["results"] == kernel["results"]
    assert model["vmas"] == kernel["vmas"]
    assert model["heap"] == kernel["heap"]
    assert model["children"] == kernel["children"]
