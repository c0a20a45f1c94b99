"""The executor cache: builds named by content, verified before use, old builds pruned."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmasim.kernel import build
from vmasim.kernel.build import ORPHAN_GRACE, PRUNE_AFTER, executor_path, prune

pytestmark = pytest.mark.kernel


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache directory of our own; the session's executor path is restored afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    executor_path.cache_clear()
    yield tmp_path / "vmasim"
    monkeypatch.undo()
    executor_path.cache_clear()


def test_builds_are_named_by_content_and_verified(private_cache: Path) -> None:
    first = executor_path()
    assert first.parent == private_cache
    assert first.name == f"executor-{build._digest(first)[:32]}"
    recipes = list(private_cache.glob("recipe-*"))
    assert len(recipes) == 1 and recipes[0].read_text().strip() == build._digest(first)
    # A binary whose content no longer matches its name is not trusted: it is rebuilt.
    with open(first, "ab") as fh:
        fh.write(b"\0")
    executor_path.cache_clear()
    again = executor_path()
    assert again == first and build._digest(again) == recipes[0].read_text().strip()
    # So is one that others may write.
    os.chmod(again, 0o777)
    assert not build._trusted(again, build._digest(again))


def test_prune_removes_unused_recipes_and_orphans(tmp_path: Path) -> None:
    now = time.time()

    def make(name: str, age: float, text: str = "") -> Path:
        p = tmp_path / name
        p.write_text(text)
        os.utime(p, (now - age, now - age))
        return p

    digest_keep, digest_old = "a" * 64, "b" * 64
    keep = make("recipe-keep", PRUNE_AFTER * 2, digest_keep)  # ours: never pruned however old
    old = make("recipe-old", PRUNE_AFTER * 2, digest_old)
    fresh = make("recipe-fresh", 0, "c" * 64)
    kept_bin = make(f"executor-{digest_keep[:32]}", ORPHAN_GRACE * 2)
    old_bin = make(f"executor-{digest_old[:32]}", ORPHAN_GRACE * 2)
    legacy = make("executor-0123456789abcdef", ORPHAN_GRACE * 2)  # the old naming scheme
    young_orphan = make("executor-" + "d" * 32, 10)
    leftover = make(".build-1-0.tmp", ORPHAN_GRACE * 2)
    removed = set(prune(tmp_path, keep, now=now))
    assert removed == {old, old_bin, legacy, leftover}
    assert all(p.exists() for p in (keep, fresh, kept_bin, young_orphan))
