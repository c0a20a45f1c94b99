"""Helpers shared by the kernel-runner tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmasim.kernel import executor_path

#: ``run(ops, timeout=..., **top_level_fields) -> report`` (the ``run`` fixture).
Run = Callable[..., dict[str, Any]]


# Executors inherit the environment, so this token tells the ones this test session started
# apart from those of any other vmasim run on the machine (a fuzz campaign, say).
_TOKEN = f"VMASIM_TEST_SESSION={os.getpid()}"
os.environ["VMASIM_TEST_SESSION"] = str(os.getpid())


def executor_processes() -> list[int]:
    """PIDs of live executor processes started by this test session (for leak checks)."""
    exe = str(executor_path())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "exe") != exe:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if _TOKEN.encode() in environ:
            pids.append(int(entry.name))
    return pids
