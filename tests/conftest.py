"""Shared pytest setup: test helpers on the path, and clean skips where the host kernel cannot judge.

Tests marked ``kernel`` need the kernel runner (Linux x86_64, a C compiler).
Tests marked ``differential`` also need a host kernel that behaves like the
kernel the model targets (see vmasim.target); elsewhere they skip, saying why.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@functools.lru_cache(maxsize=1)
def _runner() -> tuple[bool, str]:
    from vmasim.kernel import kernel_available

    return kernel_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``kernel`` tests when the runner is unavailable, ``differential`` ones when the host differs."""
    wants_kernel = [i for i in items if i.get_closest_marker("kernel") or i.get_closest_marker("differential")]
    if not wants_kernel:
        return
    ok, why = _runner()
    if not ok:
        skip = pytest.mark.skip(reason=f"host kernel runner unavailable: {why}")
        for item in wants_kernel:
            item.add_marker(skip)
        return
    differential = [i for i in wants_kernel if i.get_closest_marker("differential")]
    if differential:
        from vmasim.target import host_matches_target

        same, reason = host_matches_target()
        if not same:
            skip = pytest.mark.skip(reason=reason)
            for item in differential:
                item.add_marker(skip)
