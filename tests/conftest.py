"""Shared pytest setup: test helpers on the path, and clean skips where the host kernel cannot judge.

Tests marked ``kernel`` need the kernel runner (Linux x86_64, a C compiler).
Tests marked ``differential`` compare the model of the probed host (see
vmasim.probe) with the host kernel; they also need a host whose behaviour
every profile switch covers, and elsewhere skip, saying why.  The
``host_profile`` fixture is the probed profile.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

from vmasim.profile import Profile

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
        reasons = _unmodelled()
        if reasons:
            skip = pytest.mark.skip(reason="the host does what no profile covers: " + "; ".join(reasons))
            for item in differential:
                item.add_marker(skip)


@functools.lru_cache(maxsize=1)
def _unmodelled() -> list[str]:
    from vmasim.probe import probe_host, unmodelled
    from vmasim.profile import ProfileError

    try:
        return unmodelled(probe_host())
    except ProfileError as exc:
        return [str(exc)]


@pytest.fixture(scope="session")
def host_profile() -> Profile:
    """The probed profile of this host (kernel tests only: it runs probe programs)."""
    from vmasim.probe import probe_host

    return probe_host()
