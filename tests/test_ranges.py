"""RangeSet against a plain set of units, under random changes that cross blocks.

Sets with tiny blocks (``load=2``: 2 to 4 runs a block) start from many runs, so
that one change often spans several blocks.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vmasim.core.ranges import RangeSet

UNIVERSE = 200


def runs_of(units: set[int]) -> list[tuple[int, int]]:
    """The coalesced runs of a set of units."""
    out: list[tuple[int, int]] = []
    for u in sorted(units):
        if out and out[-1][1] == u:
            out[-1] = (out[-1][0], u + 1)
        else:
            out.append((u, u + 1))
    return out


def agrees(rs: RangeSet, units: set[int], probes: list[tuple[int, int]]) -> None:
    rs._check()
    assert list(rs) == runs_of(units)
    assert bool(rs) == bool(units)
    for a, b in probes:
        inside = [u for u in range(a, b) if u in units]
        outside = [u for u in range(a, b) if u not in units]
        assert rs.first_in(a, b) == (inside[0] if inside else None)
        assert rs.first_gap(a, b) == (outside[0] if outside else None)
        assert rs.slices(a, b) == runs_of(set(inside))
        assert rs.gaps(a, b) == runs_of(set(outside))


span = st.tuples(st.integers(0, UNIVERSE), st.integers(1, 60)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=300, deadline=None)
@given(
    start=st.sampled_from(["empty", "every_other", "every_third"]),
    ops=st.lists(st.tuples(st.booleans(), span), max_size=40),
    probes=st.lists(span, min_size=1, max_size=6),
    load=st.sampled_from([2, 64]),
)
def test_rangeset_matches_a_set_of_units(start: str, ops: list[tuple[bool, tuple[int, int]]],
                                         probes: list[tuple[int, int]], load: int) -> None:
    step = {"empty": 0, "every_other": 2, "every_third": 3}[start]
    units = set(range(0, UNIVERSE, step)) if step else set()
    rs = RangeSet.from_runs(runs_of(units), load) if step == 2 else RangeSet(load)
    if step == 3:
        for s, e in runs_of(units):
            rs.add(s, e)
    agrees(rs, units, probes)
    for adding, (a, b) in ops:
        copy = rs.copy()
        before = list(rs)
        if adding:
            rs.add(a, b)
            units |= set(range(a, b))
        else:
            rs.remove(a, b)
            units -= set(range(a, b))
        assert list(copy) == before, "a copy changed with its original"
        agrees(rs, units, [*probes, (a, b)])


def test_rangeset_grows_and_empties_in_order() -> None:
    """Runs added in address order (touching page after page of many VMAs), then taken away one by one."""
    rs = RangeSet(load=4)
    for i in range(100):
        rs.add(3 * i, 3 * i + 1)
    rs._check()
    assert len(rs._firsts) > 10
    assert rs.slices(0, 7) == [(0, 1), (3, 4), (6, 7)]
    for i in reversed(range(100)):
        rs.remove(3 * i, 3 * i + 1)
        rs._check()
    assert not rs and list(rs) == []
    rs.add(5, 9)
    rs.add(1, 3)
    rs.add(3, 5)  # joins both
    assert list(rs) == [(1, 9)]
    rs.remove(0, 100)
    assert not rs


def test_a_hole_punched_in_a_full_block_cuts_it() -> None:
    """Removing the middle of a run adds a run: a block already at 2 * load runs must be cut."""
    rs = RangeSet(load=2)
    for s, e in [(0, 3), (4, 5), (6, 7), (8, 9)]:
        rs.add(s, e)
    rs.remove(1, 2)
    rs._check()
    assert list(rs) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
