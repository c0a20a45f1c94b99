"""Random values of every type at every public AddressSpace method (tests/apifuzz.py draws the calls).

Only OSError, TypeError, ValueError and WouldBlock may come out, and a
TypeError or ValueError leaves the address space exactly as it was.  The
suite runs a few thousand calls; ``python tests/apifuzz.py --calls 100000``
runs as many as asked.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apifuzz import run


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large])
@given(st.randoms(use_true_random=False), st.sampled_from([0.05, 0.125, 0.5]))
def test_random_calls_raise_only_documented_errors(rng: random.Random, bad_rate: float) -> None:
    stats = run(rng, 30, per_space=30, bad_rate=bad_rate)
    assert stats.failures == []


def test_a_fixed_seed_run() -> None:
    """A longer run with a fixed seed (the same calls every time): 3000 calls over 15 address spaces."""
    stats = run(random.Random(2024), 3000, per_space=200)
    assert stats.failures == []
    assert stats.outcomes.get("ok", 0) > 1000  # the calls reach the kernel rules, not only the checks
