"""Helpers shared by the kernel-runner tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmasim.kernel import executor_path

#: ``run(ops, timeout=..., **top_level_fields) -> report`` (the ``run`` fixture).
Run = Callable[..., dict[str, Any]]


def executor_processes() -> list[int]:
    """PIDs of live processes running the compiled executor (for leak checks)."""
    exe = str(executor_path())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            target = os.readlink(entry / "exe")
        except OSError:
            continue
        if target == exe:
            pids.append(int(entry.name))
    return pids
