"""A set of disjoint address ranges: page-table entries, real pages, guard markers, page-cache pages.

Layout
------
The ranges (*runs*) are kept coalesced, in address order, in *blocks* of at
most ``2 * LOAD`` runs, the layout of :mod:`vmasim.core.store` (and of
sortedcontainers): each block is two plain lists, the starts and the ends of
its runs, and ``_firsts`` holds each block's first start for ``bisect``::

    _firsts:   [a0,            a64, ...]
    block 0:   starts [a0 a1 ...]  ends [b0 b1 ...]      a0 < b0 < a1 < b1 < ...
    block 1:   starts [a64 ...]    ends [b64 ...]

Runs never touch (touching runs are one run), so the ends are as ordered as
the starts, and the run that contains or follows an address is one bisect of
the firsts and one of a block's ends.

Costs
-----
Lookups are O(log n) plus the runs returned.  ``add`` and ``remove`` replace
the runs they meet by at most two in one slice assignment: O(log n + LOAD)
plus the runs dropped.  The usual set holds a handful of runs in one block
(what a few touches leave), where a change costs two bisects and a slice,
several times less than a ``SortedDict`` with its ``irange`` iterators; an
empty set answers without a lookup.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from itertools import chain

from vmasim.core.blocks import find_block

#: Blocks hold up to 2 * LOAD runs (a block that grows past it is cut in two).
LOAD = 64


class RangeSet:
    """Disjoint, coalesced ``[start, end)`` ranges with O(log n) lookup."""

    __slots__ = ("_ends", "_firsts", "_hint", "_starts", "load")

    def __init__(self, load: int | None = None) -> None:
        # An attribute, not a class constant to override, so that the class can be compiled (mypyc).
        # The module's LOAD is read here, not bound as a default, so that tests and the branch-coverage
        # measure can run whole programs with tiny blocks (every split, fold and multi-block path).
        self.load = LOAD if load is None else load
        self._starts: list[list[int]] = []
        self._ends: list[list[int]] = []
        self._firsts: list[int] = []
        self._hint = 0  # the block the last lookup landed in (see core/blocks.py)

    def __bool__(self) -> bool:
        return bool(self._firsts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return chain.from_iterable(map(zip, self._starts, self._ends))

    def copy(self) -> RangeSet:
        """An independent copy."""
        other = RangeSet(self.load)
        other._starts = [block[:] for block in self._starts]
        other._ends = [block[:] for block in self._ends]
        other._firsts = self._firsts[:]
        return other

    @classmethod
    def from_runs(cls, runs: list[tuple[int, int]], load: int | None = None) -> RangeSet:
        """A set of ``runs``: disjoint, not touching, in address order (checked by nothing but the caller)."""
        out = cls(load)
        load = out.load
        for a in range(0, len(runs), load):
            chunk = runs[a : a + load]
            out._starts.append([s for s, _ in chunk])
            out._ends.append([e for _, e in chunk])
            out._firsts.append(chunk[0][0])
        return out

    # --- lookups -------------------------------------------------------------------

    def _after(self, addr: int) -> tuple[int, int]:
        """Block and index of the first run ending above ``addr``; ``(len(blocks), 0)`` when none does."""
        j = find_block(self._firsts, self._hint, addr)
        if j < 0:
            return 0, 0
        self._hint = j
        ends = self._ends[j]
        i = bisect_right(ends, addr)
        if i < len(ends):
            return j, i
        return j + 1, 0

    def first_in(self, start: int, end: int) -> int | None:
        """The lowest address of ``[start, end)`` covered by the set, or None."""
        if not self._firsts:
            return None
        j, i = self._after(start)
        if j == len(self._firsts):
            return None
        s = self._starts[j][i]
        if s < end:
            return s if s > start else start
        return None

    def first_gap(self, start: int, end: int) -> int | None:
        """The lowest address of ``[start, end)`` not covered by the set, or None (O(log n))."""
        cursor = start
        if self._firsts:
            j, i = self._after(start)
            # The runs are coalesced: the one covering ``start`` (if any) ends in a gap.
            if j < len(self._firsts) and self._starts[j][i] <= start:
                cursor = self._ends[j][i]
        return cursor if cursor < end else None

    def slices(self, start: int, end: int) -> list[tuple[int, int]]:
        """The covered parts of ``[start, end)``, in order (O(log n) plus their number)."""
        out: list[tuple[int, int]] = []
        if not self._firsts:
            return out
        j, i = self._after(start)
        nb = len(self._firsts)
        while j < nb:
            starts, ends = self._starts[j], self._ends[j]
            while i < len(starts):
                s = starts[i]
                if s >= end:
                    return out
                e = ends[i]
                out.append((s if s > start else start, e if e < end else end))
                i += 1
            j += 1
            i = 0
        return out

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The uncovered parts of ``[start, end)``, in order (O(log n) plus their number)."""
        out: list[tuple[int, int]] = []
        cursor = start
        for s, e in self.slices(start, end):
            if s > cursor:
                out.append((cursor, s))
            cursor = e
        if cursor < end:
            out.append((cursor, end))
        return out

    # --- changes -------------------------------------------------------------------

    def add(self, start: int, end: int) -> None:
        """Cover ``[start, end)``, coalescing with ranges it overlaps or touches."""
        if not self._firsts:
            self._starts.append([start])
            self._ends.append([end])
            self._firsts.append(start)
            return
        # The runs to fold in: from the first ending at or above ``start`` to the last starting at or below ``end``.
        j, i = self._after(start - 1)
        nb = len(self._firsts)
        if j == nb:
            j -= 1  # past the last run: it goes at the end of the last block
            i = len(self._starts[j])
        starts, ends = self._starts[j], self._ends[j]
        k = i
        while k < len(starts) and starts[k] <= end:
            k += 1
        if k < len(starts) or j + 1 == nb or self._firsts[j + 1] > end:
            # Within one block: the usual case.
            if k > i:
                if k == i + 1 and starts[i] <= start and ends[i] >= end:
                    return  # already covered
                start = min(start, starts[i])
                end = max(end, ends[k - 1])
            starts[i:k] = [start]
            ends[i:k] = [end]
            self._firsts[j] = starts[0]
            if len(starts) > 2 * self.load:
                self._cut(j)
            return
        self._replace(j, i, start, end, [start], [end], merge=True)

    def remove(self, start: int, end: int) -> None:
        """Uncover ``[start, end)``."""
        if not self._firsts:
            return
        j, i = self._after(start)
        if j == len(self._firsts):
            return
        starts, ends = self._starts[j], self._ends[j]
        if starts[i] >= end:
            return  # nothing covered
        k = i
        while k < len(starts) and starts[k] < end:
            k += 1
        if k < len(starts) or j + 1 == len(self._firsts) or self._firsts[j + 1] >= end:
            new_starts, new_ends = self._kept(starts[i], ends[k - 1], start, end)
            starts[i:k] = new_starts
            ends[i:k] = new_ends
            if not starts:
                self._drop(j)
                return
            self._firsts[j] = starts[0]
            if len(starts) > 2 * self.load:
                self._cut(j)  # a hole punched in a run splits it in two
            return
        self._replace(j, i, start, end, [], [], merge=False)

    @staticmethod
    def _kept(first: int, last: int, start: int, end: int) -> tuple[list[int], list[int]]:
        """What is left of runs from ``first`` to ``last`` once ``[start, end)`` is uncovered."""
        new_starts: list[int] = []
        new_ends: list[int] = []
        if first < start:
            new_starts.append(first)
            new_ends.append(start)
        if last > end:
            new_starts.append(end)
            new_ends.append(last)
        return new_starts, new_ends

    def _replace(self, j: int, i: int, start: int, end: int, new_starts: list[int], new_ends: list[int],
                 *, merge: bool) -> None:
        """The general change, over several blocks: the runs from block ``j``, index ``i`` on that meet
        ``[start, end)`` (or touch it, with ``merge``) make way for what is left of them and the new runs."""
        nb = len(self._firsts)
        # Flatten the blocks from j on as far as the affected runs go (their number bounds the work).
        starts: list[int] = []
        ends: list[int] = []
        last = j
        while True:
            starts += self._starts[last]
            ends += self._ends[last]
            if last + 1 == nb or (self._firsts[last + 1] > end if merge else self._firsts[last + 1] >= end):
                break
            last += 1
        k = i
        while k < len(starts) and (starts[k] <= end if merge else starts[k] < end):
            k += 1
        if k > i:
            if merge:
                new_starts = [min(start, starts[i])]
                new_ends = [max(end, ends[k - 1])]
            else:
                new_starts, new_ends = self._kept(starts[i], ends[k - 1], start, end)
        starts[i:k] = new_starts
        ends[i:k] = new_ends
        load = self.load
        blocks_s = [starts[a : a + load] for a in range(0, len(starts), load)]
        blocks_e = [ends[a : a + load] for a in range(0, len(ends), load)]
        self._starts[j : last + 1] = blocks_s
        self._ends[j : last + 1] = blocks_e
        self._firsts[j : last + 1] = [block[0] for block in blocks_s]

    def _cut(self, j: int) -> None:
        """Cut the overfull block ``j`` in two."""
        half = len(self._starts[j]) // 2
        for blocks in (self._starts, self._ends):
            whole = blocks[j]
            blocks.insert(j + 1, whole[half:])
            del whole[half:]
        self._firsts.insert(j + 1, self._starts[j + 1][0])

    def _drop(self, j: int) -> None:
        """Drop the emptied block ``j``."""
        del self._starts[j]
        del self._ends[j]
        del self._firsts[j]

    def _check(self) -> None:
        """Assert every invariant of the layout (for tests)."""
        assert len(self._starts) == len(self._ends) == len(self._firsts)
        prev_end = -1
        for starts, ends, first in zip(self._starts, self._ends, self._firsts, strict=True):
            assert starts and len(starts) == len(ends) <= 2 * self.load and first == starts[0]
            for s, e in zip(starts, ends, strict=True):
                assert prev_end < s < e, "runs out of order, empty or touching"
                prev_end = e
