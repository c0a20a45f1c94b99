"""The VMA store and the range sets give the same answers whatever their block size.

Generated programs are small, so with the real block sizes they never split,
fold or cross a block.  Run with blocks of a few entries, the same programs
take every multi-block path of ``core/store.py`` and ``core/ranges.py``, and
their reports must not change by a byte.
"""

from __future__ import annotations

import pytest

from vmasim.core import ranges, store
from vmasim.core.errors import WouldBlock
from vmasim.fuzz.categories import CATEGORIES
from vmasim.fuzz.generate import generate_programs
from vmasim.program import parse_program
from vmasim.program.model import ModelTimeout, run_model

PROFILE = "linux-6.18.44-nopku"


def _report(doc: dict[str, object]) -> object:
    try:
        return run_model(parse_program(doc), PROFILE, timeout=10)
    except (WouldBlock, ModelTimeout) as exc:
        return type(exc).__name__


@pytest.mark.parametrize("category", CATEGORIES)
def test_tiny_blocks_change_no_report(category: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = generate_programs(4242, 150, category)
    expected = [_report(doc) for doc in docs]
    monkeypatch.setattr(store, "LOAD", 4)  # blocks of 2 to 8 VMAs: splits and joins
    monkeypatch.setattr(ranges, "LOAD", 2)
    assert store.VmaStore().load == 4 and ranges.RangeSet().load == 2
    for i, doc in enumerate(docs):
        assert _report(doc) == expected[i], f"program {i} of seed 4242 ({category})"
