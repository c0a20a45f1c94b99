"""Trace-test setup: compile the test programs with gcc, skip cleanly where ptrace or gcc is missing."""

from __future__ import annotations

import functools
import platform
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "programs"


@functools.lru_cache(maxsize=1)
def ptrace_available() -> tuple[bool, str]:
    """Whether this host lets us trace a child (Linux x86_64, ptrace and seccomp permitted)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False, f"tracing needs Linux on x86_64, not {platform.system()} {platform.machine()}"
    true = shutil.which("true")
    if true is None:
        return False, "no 'true' program to probe ptrace with"
    from vmasim.trace import Options, trace

    try:
        result = trace([true], Options(check="end"))
    except OSError as exc:
        return False, f"ptrace is not permitted here: {exc}"
    if result.error or not result.images:
        return False, f"tracing a child failed: {result.error or 'no process seen'}"
    return True, ""


@pytest.fixture
def traceable() -> None:
    """Skip the test, saying why, where processes cannot be traced."""
    ok, why = ptrace_available()
    if not ok:
        pytest.skip(why)


@pytest.fixture
def build(tmp_path: Path, traceable: None) -> Callable[[str], str]:
    """Compile ``programs/NAME.c`` into tmp_path and return the executable's path (skip without gcc)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc) to build the traced programs")

    def _build(name: str) -> str:
        out = tmp_path / name
        proc = subprocess.run([cc, "-O1", "-pthread", "-o", str(out), str(PROGRAMS / f"{name}.c")],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip(f"cannot compile {name}.c: {proc.stderr.strip()[-300:]}")
        return str(out)

    return _build
