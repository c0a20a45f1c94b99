"""Optional compiled build: ``VMASIM_MYPYC=1 pip install .`` compiles the model's core and system calls with mypyc.

Without the variable (the default) the package is pure Python and needs no
compiler.  The compiled modules behave exactly like their sources (the test
suite runs on both); they are about twice as fast.  Everything else is
declared in pyproject.toml.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup


def compiled_modules() -> list[str]:
    """The modules mypyc compiles: the core and the system calls, less the package markers, what it cannot
    compile (an OSError subclass) and the target description (its dataclasses are read back from their
    type hints, which compiled classes do not keep; nothing there is on a hot path)."""
    src = Path(__file__).parent / "src"
    paths = sorted((src / "vmasim" / "core").glob("*.py")) + sorted((src / "vmasim" / "syscalls").glob("*.py"))
    skip = ("__init__.py", "errors.py", "target.py")
    return [str(p.relative_to(Path(__file__).parent)) for p in paths if p.name not in skip]


if os.environ.get("VMASIM_MYPYC", "") not in ("", "0"):
    from mypyc.build import mypycify

    setup(ext_modules=mypycify(compiled_modules(), opt_level="3"))
else:
    setup()
