"""The differential test: every example and scenario program gives the same layout report on the model
and on the host kernel, field for field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vmasim.kernel import KernelRunError, run_programs
from vmasim.profile import Profile
from vmasim.program import parse_program
from vmasim.program.model import run_model

pytestmark = [pytest.mark.kernel, pytest.mark.differential]

ROOT = Path(__file__).resolve().parent.parent.parent
FOLDERS = (ROOT / "examples", ROOT / "tests" / "scenarios", ROOT / "tests" / "regressions", ROOT / "tests" / "probes")
PROGRAMS = [path for folder in FOLDERS for path in sorted(folder.glob("*.json"))]


@pytest.fixture(scope="module")
def kernel_reports() -> dict[Path, dict[str, Any] | KernelRunError]:
    programs = [parse_program(json.loads(p.read_text())) for p in PROGRAMS]
    return dict(zip(PROGRAMS, run_programs(programs), strict=True))


@pytest.mark.parametrize("path", PROGRAMS, ids=[f"{p.parent.name}/{p.stem}" for p in PROGRAMS])
def test_model_matches_kernel(
    path: Path, kernel_reports: dict[Path, dict[str, Any] | KernelRunError], host_profile: Profile
) -> None:
    kernel = kernel_reports[path]
    if isinstance(kernel, KernelRunError):
        raise kernel
    model = run_model(parse_program(json.loads(path.read_text())), host_profile)
    assert model["results"] == kernel["results"]
    assert model["vmas"] == kernel["vmas"]
    assert model["heap"] == kernel["heap"]
    assert model["children"] == kernel["children"]


def test_model_geometry_matches_the_executor(host_profile: Profile) -> None:
    """The probed layout is the runner's: image end, initial break, first hint-less address."""
    from vmasim.kernel import run_program

    layout = host_profile.layout
    program = parse_program({"walls": False, "window": {"start": "0x10000", "length": "0x7ff000000000"},
                             "ops": [{"op": "sbrk", "increment": "4K"},
                                     {"op": "mmap", "addr": None, "length": "4K", "prot": "r",
                                      "flags": ["private", "anonymous"]}]})
    report = run_program(program)
    vmas = [(int(v["start"], 16), int(v["end"], 16)) for v in report["vmas"]]
    assert (layout.initial_break, layout.initial_break + 4096) in vmas
    assert max(end for _, end in vmas if end <= layout.initial_break) == layout.image_end
    assert report["results"][1]["ret"] == hex(layout.walls_top - 4096)
    assert run_model(program, host_profile)["results"] == report["results"]


@pytest.mark.parametrize("walls", [True, False])
def test_model_map_count_baseline_matches_the_executor(walls: bool, host_profile: Profile) -> None:
    """pad fails (EINVAL) exactly when the process already has more VMAs than asked for, on both sides."""
    layout = host_profile.layout
    base = layout.baseline_map_count_walls if walls else layout.baseline_map_count
    limit = host_profile.target.limits.max_map_count
    programs = [parse_program({"walls": walls, "ops": [{"op": "pad", "headroom": limit - target}]})
                for target in (base - 1, base)]
    models = [run_model(program, host_profile) for program in programs]
    for model, kernel in zip(models, run_programs(programs), strict=True):
        assert not isinstance(kernel, KernelRunError)
        assert model["results"] == kernel["results"]
    assert [m["results"][0]["errno"] for m in models] == ["EINVAL", None]
