"""The VMA store: its gap search against a brute-force walk, and its layout invariants under random changes.

Most tests use a store with tiny blocks (``LOAD = 2``) so that a few dozen VMAs
already make many blocks and a segment tree several levels deep.
"""

from __future__ import annotations

import errno
import importlib.machinery
from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmasim.constants import PAGE_SIZE
from vmasim.core import store as store_module
from vmasim.core.flags import VM_GROWSDOWN, VM_READ, VM_WRITE
from vmasim.core.mm import MmStruct
from vmasim.core.placement import unmapped_area_topdown
from vmasim.core.store import VmaStore
from vmasim.core.vma import Vma

#: The store is the mypyc-compiled module (VMASIM_MYPYC=1 builds), not its source.
COMPILED = str(store_module.__file__).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def TinyStore() -> VmaStore:
    """Blocks of 2 to 4 VMAs."""
    return VmaStore(load=2)


def ref_highest_gap(
    ranges: list[tuple[int, int]], low: int, high: int, length: int, top: int
) -> tuple[int, int] | None:
    """The gap search as a walk over every gap from ``high`` down (what the store did before it tracked gaps)."""
    above = next((s for s, _ in ranges if s >= high), top)
    for s, e in reversed([r for r in ranges if r[0] < high]):
        upper = min(high, above)
        if upper <= low:
            return None
        lower = max(low, e)
        if upper > lower and upper - lower >= length:
            return upper, above
        above = s
    upper = min(high, above)
    lower = max(low, 0)
    if upper > low and upper > lower and upper - lower >= length:
        return upper, above
    return None


def layout(pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(hole, size)`` pairs laid out from address 0 upwards as disjoint ranges."""
    out = []
    addr = 0
    for hole, size in pieces:
        addr += hole
        out.append((addr, addr + size))
        addr += size
    return out


def filled(store: VmaStore, ranges: list[tuple[int, int]], order: list[int] | None = None) -> VmaStore:
    """``store`` with one VMA per range, inserted in ``order`` (indices into ``ranges``)."""
    for i in order if order is not None else range(len(ranges)):
        s, e = ranges[i]
        store.insert(Vma(s, e, 0, VM_READ))
    return store


# Up to 80 VMAs: with blocks of 2 to 4, a segment tree 5 levels deep.
pieces = st.integers(0, 80).flatmap(
    lambda n: st.lists(st.tuples(st.integers(0, 6), st.integers(1, 4)), min_size=n, max_size=n))


@settings(max_examples=300, deadline=None)
@given(pieces, st.data())
def test_highest_gap_matches_a_walk_over_every_gap(pcs: list[tuple[int, int]], data: st.DataObject) -> None:
    ranges = layout(pcs)
    order = data.draw(st.permutations(range(len(ranges))), label="insertion order")
    store = filled(TinyStore(), ranges, order)
    store._check()
    span = ranges[-1][1] if ranges else 0
    # Lengths around the gap sizes present, so that "exactly fits" and "one too many" both come up.
    sizes = sorted({b[0] - a[1] for a, b in zip([(0, 0), *ranges], ranges, strict=False)} | {0})
    length = st.sampled_from(sizes).flatmap(lambda n: st.integers(n - 1, n + 1))
    coord = st.integers(0, span + 8)
    for low, high, need, top in data.draw(st.lists(st.tuples(coord, coord, length, coord), min_size=1, max_size=20)):
        assert store.highest_gap(low, high, need, top) == ref_highest_gap(ranges, low, high, need, top), (
            low, high, need, top)


@settings(max_examples=300, deadline=None)
@given(pieces.filter(bool), st.data())
def test_repeated_searches_between_changes_match_a_walk(pcs: list[tuple[int, int]], data: st.DataObject) -> None:
    """The same search again after each insert or removal (the store remembers the last block the tree walk
    found, as long as no change can move the answer): always the walk's answer."""
    ranges = layout(pcs)
    store = filled(TinyStore(), ranges)
    span = ranges[-1][1] + 8
    query = data.draw(st.tuples(st.integers(0, 2), st.integers(1, span), st.integers(1, 6)), label="low, high, need")
    present = dict.fromkeys(ranges, True)
    by_range = {(v.start, v.end): v for v in store}
    for step in data.draw(st.lists(st.sampled_from(ranges), max_size=30), label="flips"):
        if present[step]:
            store.remove(by_range[step])
        else:
            by_range[step] = Vma(step[0], step[1], 0, VM_READ)
            store.insert(by_range[step])
        present[step] = not present[step]
        live = [r for r in ranges if present[r]]
        low, high, need = query
        assert store.highest_gap(low, high, need, span) == ref_highest_gap(live, low, high, need, span)
        store._check()


def test_highest_gap_skips_many_small_gaps_below_high() -> None:
    # 1,000 one-unit gaps right below high, then the only big gap at the bottom.
    ranges = [(100 + 3 * i, 102 + 3 * i) for i in range(1000)]
    store = filled(VmaStore(), ranges)
    top = ranges[-1][1] + 1
    assert store.highest_gap(1, top, 50, top) == (100, 100)
    assert store.highest_gap(60, top, 50, top) is None
    assert store.highest_gap(1, top, 1, top) == (top, top)
    # high inside VMA 500: its own gap is empty, the one below it is the answer.
    assert store.highest_gap(1, ranges[500][0] + 1, 1, top) == (ranges[500][0], ranges[500][0])


# --- invariants under random changes ------------------------------------------------------------------


def check_against(store: VmaStore, ranges: list[tuple[int, int]], addrs: list[int]) -> None:
    """The store's structure is sound and every lookup agrees with a plain sorted list."""
    store._check()
    assert [(v.start, v.end) for v in store] == ranges
    assert len(store) == len(ranges)
    starts = [s for s, _ in ranges]
    for addr in addrs:
        after = next((r for r in ranges if r[1] > addr), None)
        got = store.find(addr)
        assert ((got.start, got.end) if got else None) == after
        inside = after if after is not None and after[0] <= addr else None
        got = store.lookup(addr)
        assert ((got.start, got.end) if got else None) == inside
        below = ranges[bisect_left(starts, addr) - 1] if bisect_left(starts, addr) else None
        got = store.prev_of_addr(addr)
        assert ((got.start, got.end) if got else None) == below
        span = [(v.start, v.end) for v in store.range(addr, addr + 7)]
        assert span == [r for r in ranges if r[1] > addr and r[0] < addr + 7]
    vmas = list(store)
    for i, vma in enumerate(vmas):
        assert store.prev(vma) is (vmas[i - 1] if i else None)
        assert store.next(vma) is (vmas[i + 1] if i + 1 < len(vmas) else None)


@settings(max_examples=80, deadline=None)
@given(st.data(), st.sampled_from([2, 4, 8]))
def test_random_changes_keep_the_invariants(data: st.DataObject, load: int) -> None:
    store: VmaStore = VmaStore(load=load)
    ranges: list[tuple[int, int]] = []
    space = 600
    for _ in range(data.draw(st.integers(1, 120), label="steps")):
        kind = data.draw(st.sampled_from(["insert", "insert", "insert", "remove", "set_range", "split", "boundary",
                                          "coalesce"]))
        vmas = list(store)
        if kind == "insert":
            s = data.draw(st.integers(0, space - 1))
            if any(a <= s < b for a, b in ranges):
                continue
            limit = next((a for a, _ in ranges if a > s), space)
            e = data.draw(st.integers(s + 1, limit))
            store.insert(Vma(s, e, 0, VM_READ))
            ranges.append((s, e))
        elif not vmas:
            continue
        elif kind == "remove":
            i = data.draw(st.integers(0, len(vmas) - 1))
            store.remove(vmas[i])
            del ranges[i]
        elif kind == "split":
            i = data.draw(st.integers(0, len(vmas) - 1))
            s, e = ranges[i]
            if e - s < 2:
                continue
            addr = data.draw(st.integers(s + 1, e - 1))
            store.split(vmas[i], vmas[i].copy(), addr, data.draw(st.booleans()))
            ranges[i : i + 1] = [(s, addr), (addr, e)]
        elif kind == "boundary":
            touching = [i for i in range(len(ranges) - 1) if ranges[i][1] == ranges[i + 1][0]]
            if not touching:
                continue
            i = data.draw(st.sampled_from(touching))
            addr = data.draw(st.integers(ranges[i][0] + 1, ranges[i + 1][1] - 1))
            store.move_boundary(vmas[i], vmas[i + 1], addr)
            ranges[i : i + 2] = [(ranges[i][0], addr), (addr, ranges[i + 1][1])]
        elif kind == "coalesce":
            i = data.draw(st.integers(0, len(vmas) - 1))
            count = data.draw(st.integers(1, len(vmas) - i))
            keep = vmas[i + data.draw(st.integers(0, count - 1))]
            store.coalesce(vmas[i], count, keep)
            assert (keep.start, keep.end) == (ranges[i][0], ranges[i + count - 1][1])
            ranges[i : i + count] = [(keep.start, keep.end)]
        else:
            # Any new bounds that keep clear of the neighbours (shrinking, growing, or moving).
            i = data.draw(st.integers(0, len(vmas) - 1))
            floor = ranges[i - 1][1] if i else 0
            ceil = ranges[i + 1][0] if i + 1 < len(ranges) else space
            s = data.draw(st.integers(floor, ceil - 1))
            e = data.draw(st.integers(s + 1, ceil))
            store.set_range(vmas[i], s, e)
            ranges[i] = (s, e)
        ranges.sort()
        store._check()
    assert [(v.start, v.end) for v in store] == ranges
    addrs = data.draw(st.lists(st.integers(0, space + 2), max_size=8))
    check_against(store, ranges, addrs)
    for low, high, length in data.draw(st.lists(st.tuples(st.integers(0, space), st.integers(0, space + 5),
                                                          st.integers(0, 40)), max_size=8)):
        assert store.highest_gap(low, high, length, space + 5) == ref_highest_gap(ranges, low, high, length,
                                                                                 space + 5)


@pytest.mark.skipif(COMPILED, reason="compiled (mypyc): the store's calls to its own methods are bound at build time, "
                    "nothing to count")
def test_filling_one_of_many_equal_holes_does_not_rescan_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block whose largest gap several holes share keeps that maximum when one of them is filled and opened
    again: the store counts the gaps that large (once, when first needed) instead of scanning the block for a
    new maximum at every fill."""
    store = VmaStore(load=32)
    vmas = [Vma(5 * i, 5 * i + 4, 0, VM_READ) for i in range(40)]  # holes of 1, none below the first
    store.fill(vmas)
    scans: list[int] = []
    real = VmaStore._refresh_bmax
    monkeypatch.setattr(VmaStore, "_refresh_bmax", lambda self, j: scans.append(j) or real(self, j))
    for vma in vmas[5:30]:
        store.set_range(vma, vma.start, vma.end + 1)  # fill the hole above it
        store._check()
        store.set_range(vma, vma.start, vma.end - 1)
        store._check()
    assert len(scans) == 1  # the first fill counts them
    scans.clear()
    for vma in vmas[1:]:  # fill every hole: the last one filled in a block makes the block look again
        store.set_range(vma, vma.start - 1, vma.end)
    store._check()
    assert scans


def test_merging_across_some_of_the_largest_gaps_keeps_the_others_counted() -> None:
    """Holes of one size between all VMAs of a block, counted: merging a run drops some of them from the
    count, and the block keeps its largest gap without a scan."""
    store = VmaStore(load=32)
    vmas = [Vma(5 * i, 5 * i + 4, 0, VM_READ) for i in range(40)]
    store.fill(vmas)
    store.set_range(vmas[5], vmas[5].start, vmas[5].end + 1)  # fills one hole: the others are counted
    store.coalesce(vmas[10], 3, vmas[10])
    store._check()
    assert (vmas[10].start, vmas[10].end) == (50, 64) and len(store) == 38


@pytest.mark.skipif(COMPILED, reason="compiled (mypyc): ints are unboxed when read and boxed anew when stored")
def test_gaps_of_a_few_pages_share_one_int_each() -> None:
    """Small whole-page gaps are stored as one shared int per value, so that a gap costs a pointer; others as
    they are.  Pure Python only: the compiled build boxes ints anew when it stores them."""
    pages = [3, 1, 5, 3, 1]
    starts = [sum(pages[: i + 1]) * 2 * PAGE_SIZE for i in range(len(pages))]
    vmas = [Vma(s, s + PAGE_SIZE, 0, VM_READ) for s in starts]
    inserted, filled_store = VmaStore(load=2), VmaStore(load=2)
    filled(inserted, [(v.start, v.end) for v in vmas], [4, 0, 2, 1, 3])
    filled_store.fill(vmas)
    for store in (inserted, filled_store):
        store._check()
        gaps = [g for block in store._gaps for g in block][1:]  # the first runs from address 0: its own int
        assert gaps == [(2 * p - 1) * PAGE_SIZE for p in pages[1:]]
        assert gaps[0] is gaps[3]  # computed apart, stored as one object
        assert all(g is store_module._SHARED_GAPS[g // PAGE_SIZE] for g in gaps)
        big = 2 * store_module.SHARED_GAP_PAGES * PAGE_SIZE + starts[-1]
        store.insert(Vma(big, big + PAGE_SIZE, 0, VM_READ))
        assert store._gaps[-1][-1] == big - starts[-1] - PAGE_SIZE


def test_lookups_below_the_lowest_vma() -> None:
    """Below the first block (where hint-less mmaps land under packed VMAs) lookups find nothing below and
    the lowest VMA above, whatever block the previous lookup landed in."""
    store = filled(VmaStore(load=2), [(10 * i + 100, 10 * i + 105) for i in range(20)])
    lowest = store.find(0)
    assert lowest is not None and lowest.start == 100
    for addr in (0, 50, 99, 100):
        store.lookup(290)  # leaves the last block as the hint
        assert store.prev_of_addr(addr) is None
        store.lookup(290)
        assert store.find(addr) is lowest
        store.lookup(290)
        assert store.lookup(addr) is (lowest if addr == 100 else None)


def test_growing_and_shrinking_a_big_store_keeps_blocks_balanced() -> None:
    store = VmaStore()
    vmas = [Vma(2 * i, 2 * i + 1, 0, VM_READ) for i in range(5000)]
    for vma in vmas:
        store.insert(vma)
    store._check()
    for vma in vmas[::3] + vmas[1::3]:
        store.remove(vma)
    store._check()
    assert [v.start for v in store] == [v.start for v in vmas[2::3]]
    for vma in list(store)[::2]:
        store.remove(vma)
    store._check()
    assert len(store) == len(vmas[2::3]) - len(vmas[2::3][::2])


# --- placement: the same addresses as a walk over every gap -----------------------------------------


def ref_unmapped_area_topdown(mm: MmStruct, ranges: list[tuple[int, int]], length: int, align_mask: int,
                              align_offset: int) -> int | None:
    """unmapped_area_topdown() over the brute-force gap walk; None for ENOMEM."""
    need = length + align_mask
    low = max(PAGE_SIZE, mm.mmap_min_addr)
    high = min(mm.mmap_base, mm.mmap_limit)
    while True:
        found = ref_highest_gap(ranges, low, high, need, mm.mmap_limit)
        if found is None:
            return None
        gap_end, above_start = found
        gap = gap_end - length
        gap -= (gap - align_offset) & align_mask
        above = mm.vmas.lookup(above_start) if above_start < mm.mmap_limit else None
        if above is not None and above.vm_flags & VM_GROWSDOWN and max(above.start - mm.stack_guard_gap, 0) < gap_end:
            high = max(above.start - mm.stack_guard_gap, 0)
            if high < low:
                return None
            continue
        return gap


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 40), st.booleans()), max_size=40),
       st.lists(st.tuples(st.integers(1, 600), st.sampled_from([0, 15, 511]), st.integers(0, 511)), min_size=1,
                max_size=6))
def test_placement_is_the_same_as_walking_every_gap(
    pcs: list[tuple[int, int, bool]], requests: list[tuple[int, int, int]]
) -> None:
    # Page units, from 16 pages up to mmap_base at 4,096 pages; growsdown VMAs bring the guard-gap retry in.
    base = 4096 * PAGE_SIZE
    mm = MmStruct(mmap_base=base)
    mm.mmap_min_addr = 16 * PAGE_SIZE
    ranges = []
    addr = 0
    for hole, size, grows in pcs:
        addr += hole * PAGE_SIZE
        flags = VM_READ | VM_WRITE | (VM_GROWSDOWN if grows else 0)
        mm.vmas.insert(Vma(addr, addr + size * PAGE_SIZE, 0, flags))
        ranges.append((addr, addr + size * PAGE_SIZE))
        addr += size * PAGE_SIZE
    for pages, align_pages, offset_pages in requests:
        length, mask, offset = pages * PAGE_SIZE, align_pages * PAGE_SIZE, offset_pages * PAGE_SIZE
        want = ref_unmapped_area_topdown(mm, ranges, length, mask, offset)
        if want is None:
            with pytest.raises(OSError) as err:
                unmapped_area_topdown(mm, length, mask, offset)
            assert err.value.errno == errno.ENOMEM
        else:
            assert unmapped_area_topdown(mm, length, mask, offset) == want


@pytest.mark.parametrize("count", [0, 1, 2, 5, 33, 64, 65, 80, 1000])
@pytest.mark.parametrize("load", [2, 4, 32])
def test_fill_builds_the_same_store_as_inserts(count: int, load: int) -> None:
    vmas = [Vma(3 * i + (i % 2), 3 * i + 2, 0, VM_READ) for i in range(count)]
    filled_store: VmaStore = VmaStore(load=load)
    filled_store.fill(vmas)
    filled_store._check()
    assert list(filled_store) == vmas
    ranges = [(v.start, v.end) for v in vmas]
    check_against(filled_store, ranges, list(range(0, 3 * count + 3, 2)))
    for low, high, length in [(0, 3 * count + 5, 1), (0, 3 * count + 5, 2), (5, 3 * count // 2, 1)]:
        top = 3 * count + 5
        assert filled_store.highest_gap(low, high, length, top) == ref_highest_gap(ranges, low, high, length, top)
