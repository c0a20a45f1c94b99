"""A bounded differential campaign with fixed seeds: a few hundred generated programs per category,
model against host kernel, no divergence allowed.  Longer campaigns are ``vmasim fuzz`` runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmasim.fuzz import default_kernel_batch, run_campaign
from vmasim.profile import Profile

pytestmark = [pytest.mark.kernel, pytest.mark.differential]


@pytest.mark.parametrize(("category", "seed"), [("core", 1001), ("attrs", 1002), ("lifecycle", 1003), ("all", 1004)])
def test_campaign_has_no_divergence(category: str, seed: int, tmp_path: Path, host_profile: Profile) -> None:
    res = run_campaign(seed=seed, count=300, category=category, out=str(tmp_path),
                       kernel_batch=default_kernel_batch(None), shrink_budget_s=5.0, total_shrink_budget_s=20.0,
                       profile=host_profile)
    reproducers = "\n".join(res.saved)
    assert res.failed == 0, f"{res.failed} divergence(s); shrunk reproducers:\n{reproducers}"
    assert res.passed + res.skipped == 300
    assert res.skipped <= 15  # programs the kernel runner had to stop (userfaultfd waits)
