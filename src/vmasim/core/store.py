"""The ordered VMA store: the model's maple tree, with the gap search of mas_empty_area_rev().

Layout
------
VMAs are kept in address order in *blocks*: short Python lists of at most
``2 * LOAD`` VMAs, the layout sortedcontainers uses (a list of lists beats a
tree of nodes in pure Python).  Next to each block's VMAs the store keeps their
start addresses (for ``bisect``) and the *gap below* each VMA: the free bytes
between it and the VMA before it (or address 0 for the lowest VMA), as an int
in a list (see :func:`_shared` for what a gap costs).  Each block
knows its largest gap, and a max segment tree over the blocks knows the largest
gap of every run of blocks::

                         tree[1] = max gap of all
                        /                        \\
             tree[2] = max of blocks 0-1    tree[3] = max of blocks 2-3
              /             \\                  /           \\
         block 0          block 1          block 2        block 3 (bmax: largest gap below a VMA)
    [v0 v1 v2 ...]   [v40 v41 ...]    [...]            [...]
    starts, gaps     starts, gaps     starts, gaps     starts, gaps

    gap below v41 = v41.start - v40.end

The gap above the highest VMA runs to a ``top`` the caller gives (the top of
the mmap area), so it is not stored.

Costs
-----
Lookups bisect the block firsts, then one block: O(log n).  insert, remove
and set_range change one block and the gap of the VMA above: O(log n + LOAD)
(a list insert, and ``max()`` over the block when its largest gap shrank).
They do not touch the segment tree: they note the blocks whose largest gap
changed, and the next search fixes those leaf-to-root paths first (O(log n)
each).  Splitting a full block, folding a block that fell under ``LOAD / 2``
into a neighbour, or more than ``LOAD`` noted blocks, make the next search
rebuild the tree instead (O(n / LOAD)).  So a run of changes without a
hint-less mmap in between costs the tree nothing.

:meth:`VmaStore.highest_gap`, the search of get_unmapped_area(), looks at the
gap that straddles ``high``, then asks for the highest gap of at least the
needed size below it: one block scan, a walk up and down the segment tree, one
more block scan.  Every gap it skips is unclipped and too small, except the
one that straddles ``low``, which it checks last.  So the search costs
O(log n + LOAD) however the VMAs are packed.

A VMA's start is its key, so the store is the only place allowed to change a
stored VMA's bounds (:meth:`VmaStore.set_range`); callers shrink a VMA before
growing its neighbour over the freed range, so the order never changes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import chain, pairwise
from operator import sub
from typing import Any

from vmasim.constants import PAGE_SIZE
from vmasim.core.blocks import find_block
from vmasim.core.vma import Vma

#: Blocks hold LOAD / 2 to 2 * LOAD VMAs (fewer only when the store is that small).  16 to 128
#: measured the same within noise at 65,000 VMAs; smaller blocks cost memory, larger ones max().
LOAD = 32


#: Gaps of whole pages below this many pages share one int object each (see _shared).
SHARED_GAP_PAGES = 1024
_SHARED_GAPS = [page * PAGE_SIZE for page in range(SHARED_GAP_PAGES)]


def _shared(gap: int) -> int:
    """``gap``, as the one shared int of its value when it is a small number of whole pages.

    Gaps live in lists, not in an ``array`` of machine words, because the gap
    search scans them, and reading a list element makes no int object (the
    compiled build reads it at C speed).  Most gaps are 0 or a few pages (guard
    gaps, alignment holes): shared, a gap costs a pointer, as in an array.  The
    compiled build boxes ints anew when it stores them, so there it shares none.
    """
    if not gap & (PAGE_SIZE - 1) and gap < SHARED_GAP_PAGES * PAGE_SIZE:
        return _SHARED_GAPS[gap // PAGE_SIZE]
    return gap


# The columns of a block are its VMAs, their starts and their gaps; these two helpers move any of them.
def _cut(blocks: list[Any], j: int, at: int) -> None:
    """Move the tail of block ``j`` from index ``at`` into a new block after it."""
    whole = blocks[j]
    blocks.insert(j + 1, whole[at:])
    del whole[at:]


def _glue(blocks: list[Any], j: int) -> None:
    """Append block ``j`` to block ``j - 1``."""
    blocks[j - 1] += blocks.pop(j)


class VmaStore:
    """Non-overlapping VMAs ordered by address, with the largest free gap tracked per block."""

    __slots__ = (
        "_bcount", "_bmax", "_cap", "_dirty", "_firsts", "_gaps", "_hint", "_last_rightmost", "_len", "_stale",
        "_starts", "_top_hint", "_tree", "_vmas", "load",
    )

    def __init__(self, load: int | None = None) -> None:
        # An attribute, not a class constant to override, so that the class can be compiled (mypyc).
        # The module's LOAD is read here, not bound as a default, so that tests and the branch-coverage
        # measure can run whole programs with tiny blocks (every split, fold and multi-block path).
        self.load = LOAD if load is None else load
        self._vmas: list[list[Vma]] = []
        self._starts: list[list[int]] = []
        self._gaps: list[list[int]] = []
        self._firsts: list[int] = []  # the start of each block's first VMA
        self._bmax: list[int] = []  # the largest gap of each block
        # How many of each block's gaps are that large (-1: not counted yet): a gap shrinking from the
        # maximum needs the block scanned for the new one only when it was the last one that large (one
        # hole among many filled).  Counted when first needed, so a scan for a new maximum is one pass.
        self._bcount: list[int] = []
        self._cap = 1  # leaves in the segment tree, a power of two >= the number of blocks
        self._tree: list[int] = [-1, -1]
        # The tree is brought up to date only when a search needs it: blocks whose largest
        # gap changed since, or a full rebuild once blocks were split, joined or dropped.
        self._dirty: list[int] = []
        self._stale = False
        self._len = 0
        self._hint = 0  # the block the last lookup landed in (see core/blocks.py)
        self._top_hint = 0  # the block holding the top of the last gap search
        # The last answer of _tree_rightmost, (j, need, block): kept while no block from that block up to j
        # changes whether its largest gap holds ``need`` (see _touch), so a search that keeps landing in
        # the same gap, as hint-less mmaps below packed VMAs do, neither walks nor fixes the tree.
        self._last_rightmost: tuple[int, int, int] | None = None

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Vma]:
        return chain.from_iterable(self._vmas)

    # --- lookups -------------------------------------------------------------------

    def _block(self, addr: int) -> int:
        """The block of the last VMA starting at or below ``addr`` (-1: none), remembered for the next lookup."""
        j = find_block(self._firsts, self._hint, addr)
        if j >= 0:
            self._hint = j
        return j

    def _find_pos(self, addr: int) -> tuple[int, int]:
        """Block and index of the first VMA ending above ``addr``; ``(len(blocks), 0)`` when none does."""
        j = self._block(addr)
        if j < 0:
            return 0, 0
        starts = self._starts[j]
        i = bisect_right(starts, addr) - 1
        if self._vmas[j][i].end > addr:
            return j, i
        i += 1
        if i < len(starts):
            return j, i
        return j + 1, 0

    def find(self, addr: int) -> Vma | None:
        """Like find_vma(): the first VMA that ends above ``addr`` (it may start above it too)."""
        j, i = self._find_pos(addr)
        if j < len(self._vmas):
            return self._vmas[j][i]
        return None

    def find_intersection(self, start: int, end: int) -> Vma | None:
        """Like find_vma_intersection(): the first VMA overlapping ``[start, end)``."""
        vma = self.find(start)
        if vma is not None and vma.start < end:
            return vma
        return None

    def lookup(self, addr: int) -> Vma | None:
        """Like vma_lookup(): the VMA containing ``addr``, if any."""
        vma = self.find(addr)
        if vma is not None and vma.start <= addr:
            return vma
        return None

    def prev(self, vma: Vma) -> Vma | None:
        """The VMA before ``vma`` (not necessarily adjacent)."""
        return self.prev_of_addr(vma.start)

    def next(self, vma: Vma) -> Vma | None:
        """The VMA after ``vma`` (not necessarily adjacent)."""
        j = self._block(vma.start)
        if j < 0:
            return self._vmas[0][0] if self._vmas else None
        i = bisect_right(self._starts[j], vma.start)
        block = self._vmas[j]
        if i < len(block):
            return block[i]
        if j + 1 < len(self._vmas):
            return self._vmas[j + 1][0]
        return None

    def prev_of_addr(self, addr: int) -> Vma | None:
        """The last VMA that starts below ``addr``."""
        j = self._block(addr - 1)  # starting below addr is starting at or below addr - 1
        if j < 0:
            return None
        return self._vmas[j][bisect_left(self._starts[j], addr) - 1]

    def range(self, start: int, end: int) -> Iterator[Vma]:
        """The VMAs overlapping ``[start, end)``, in order.  Do not mutate the store while iterating."""
        j, i = self._find_pos(start)
        blocks = self._vmas
        while j < len(blocks):
            block = blocks[j]
            while i < len(block):
                vma = block[i]
                if vma.start >= end:
                    return
                yield vma
                i += 1
            j += 1
            i = 0

    # --- the gap search ----------------------------------------------------------------

    def highest_gap(self, low: int, high: int, length: int, top: int) -> tuple[int, int] | None:
        """The highest free gap whose part inside ``[low, high)`` holds ``length`` bytes, like mas_empty_area_rev().

        A gap runs from the end of a VMA (or 0) to the start of the next VMA
        (or ``top`` above the highest one).  Returns ``(end, above)``: the end
        of the gap's part inside ``[low, high)``, and where the gap itself
        ends (the start of the VMA right above it, or ``top``).  None when no
        gap fits.
        """
        need = max(length, 1)
        firsts = self._firsts
        nb = len(firsts)
        # The gap under the first VMA at or above ``high``: clipped by ``high``, maybe by ``low``.
        # Searches start from the same top (mmap_base) call after call: remember its block, as lookups do.
        j = find_block(firsts, self._top_hint, high - 1)
        if j < 0:
            above = firsts[0] if nb else top
            upper = min(high, above)
            if upper - max(low, 0) >= need:
                return upper, above
            return None
        self._top_hint = j
        starts = self._starts[j]
        i = bisect_left(starts, high)
        if i < len(starts):
            above = starts[i]
        elif j + 1 < nb:
            above = firsts[j + 1]
        else:
            above = top
        upper = min(high, above)
        if upper - max(low, self._vmas[j][i - 1].end) >= need:
            return upper, above
        if upper <= low:
            return None
        # Every lower gap ends at a VMA below ``high``: only ``low`` can clip it.
        gaps = self._gaps[j]
        k = i - 1
        if self._bmax[j] >= need:
            while k >= 0 and gaps[k] < need:
                k -= 1
        else:
            k = -1
        if k < 0:
            j = self._tree_rightmost(j, need)
            if j < 0:
                return None
            gaps = self._gaps[j]
            k = len(gaps) - 1
            while gaps[k] < need:
                k -= 1
        gap_end = self._starts[j][k]
        if gap_end - max(low, gap_end - gaps[k]) >= need:
            return gap_end, gap_end
        # It straddles ``low`` and what is left above ``low`` is too small; lower gaps are below ``low``.
        return None

    # --- changes ----------------------------------------------------------------------

    def insert(self, vma: Vma) -> None:
        """Add a VMA; its range must be free."""
        start = vma.start
        firsts = self._firsts
        self._len += 1
        if not firsts:
            self._vmas.append([vma])
            self._starts.append([start])
            self._gaps.append([_shared(start)])
            firsts.append(start)
            self._bmax.append(start)
            self._bcount.append(1)
            self._restructured()
            return
        j = self._block(start)
        if j < 0:
            j = 0
        starts = self._starts[j]
        block = self._vmas[j]
        i = bisect_left(starts, start)
        assert i == len(starts) or starts[i] != start, f"overlapping insert at {start:#x}"
        if i:
            prev_end = block[i - 1].end
        elif j:
            prev_end = self._vmas[j - 1][-1].end
        else:
            prev_end = 0
        gap = start - prev_end
        block.insert(i, vma)
        starts.insert(i, start)
        self._gaps[j].insert(i, _shared(gap))
        if not i:
            firsts[j] = start
        self._count_in(j, gap)
        i += 1
        if i < len(starts):
            self._set_gap(j, i, starts[i] - vma.end)
        elif j + 1 < len(firsts):
            self._set_gap(j + 1, 0, firsts[j + 1] - vma.end)
        if len(starts) > 2 * self.load:
            self._split(j)

    def remove(self, vma: Vma) -> None:
        """Drop a VMA."""
        j, i = self._locate(vma)
        block = self._vmas[j]
        starts = self._starts[j]
        gaps = self._gaps[j]
        if i:
            prev_end = block[i - 1].end
        elif j:
            prev_end = self._vmas[j - 1][-1].end
        else:
            prev_end = 0
        del block[i]
        del starts[i]
        bmax = self._bmax[j]
        # One of the largest gaps goes: settled below, once the gap above it has grown (which may be larger).
        dropped_max = gaps.pop(i) == bmax
        if dropped_max and self._bcount[j] > 0:
            self._bcount[j] -= 1
        self._len -= 1
        if i < len(starts):
            self._set_gap(j, i, starts[i] - prev_end)
        elif j + 1 < len(self._firsts):
            self._set_gap(j + 1, 0, self._firsts[j + 1] - prev_end)
        if not block:
            self._drop_block(j)
            return
        if not i:
            self._firsts[j] = starts[0]
        if dropped_max and self._bmax[j] == bmax and self._bcount[j] <= 0:
            self._refresh_bmax(j)  # the last one that large, or not counted: look
        if len(block) < self.load // 2 and len(self._firsts) > 1:
            self._join(j)

    def set_range(self, vma: Vma, start: int, end: int) -> None:
        """Move a stored VMA's bounds; the caller guarantees no overlap results."""
        j, i = self._locate(vma)
        if start != vma.start:
            if i:
                prev_end = self._vmas[j][i - 1].end
            elif j:
                prev_end = self._vmas[j - 1][-1].end
            else:
                prev_end = 0
            vma.start = start
            self._starts[j][i] = start
            if not i:
                self._firsts[j] = start
            self._set_gap(j, i, start - prev_end)
        if end != vma.end:
            vma.end = end
            i += 1
            if i < len(self._starts[j]):
                self._set_gap(j, i, self._starts[j][i] - end)
            elif j + 1 < len(self._firsts):
                self._set_gap(j + 1, 0, self._firsts[j + 1] - end)

    def split(self, vma: Vma, new: Vma, addr: int, new_below: bool) -> None:
        """Cut a stored VMA at ``addr``: ``new`` (a copy of it, not stored) takes the part below ``addr`` (with
        ``new_below``) or above it, ``vma`` keeps the rest; one lookup, like __split_vma()'s store of the new
        piece next to the shrunk one.

        No gap changes size (the two pieces touch), so neither the block maximum nor the tree is touched.
        """
        j, i = self._locate(vma)
        block = self._vmas[j]
        starts = self._starts[j]
        if new_below:
            new.end = vma.start = addr
            block.insert(i, new)
        else:
            new.start = vma.end = addr
            block.insert(i + 1, new)
        # Index i + 1 now holds the upper piece, with nothing free below it; the lower one keeps the old gap.
        i += 1
        starts.insert(i, addr)
        self._gaps[j].insert(i, 0)
        self._count_in(j, 0)  # counts only in a block of touching VMAs, whose largest gap is 0
        self._len += 1
        if len(starts) > 2 * self.load:
            self._split(j)

    def move_boundary(self, lower: Vma, upper: Vma, addr: int) -> None:
        """Move the boundary between two stored VMAs that touch (``lower.end == upper.start``) to ``addr``,
        strictly inside their union: one grows by what the other gives up, so no gap changes."""
        j = self._block(upper.start)
        starts = self._starts[j]
        i = bisect_left(starts, upper.start)
        assert self._vmas[j][i] is upper and lower.end == upper.start, f"{lower} and {upper} do not touch"
        lower.end = addr
        upper.start = addr
        starts[i] = addr
        if not i:
            self._firsts[j] = addr

    def coalesce(self, first: Vma, count: int, keep: Vma) -> None:
        """Replace the run of ``count`` stored VMAs from ``first`` by ``keep``, one of them, which now spans the
        run (holes between them included): what a merge stores over the range in one go in mm/vma.c.

        The gaps above the run and below it do not change; only the dropped VMAs' gaps go.
        """
        j, i = self._locate(first)
        block = self._vmas[j]
        k = i + count
        if k > len(block):
            # The run crosses into the next block: rare enough to take the general path.
            run = [first]
            while len(run) < count:
                nxt = self.next(run[-1])
                assert nxt is not None
                run.append(nxt)
            start, end = first.start, run[-1].end
            for vma in run:
                if vma is not keep:
                    self.remove(vma)
            self.set_range(keep, start, end)
            return
        assert keep in block[i:k], f"{keep} is not in the run"
        start, end = first.start, block[k - 1].end
        keep.start, keep.end = start, end
        block[i:k] = [keep]
        starts = self._starts[j]
        del starts[i + 1 : k]
        starts[i] = start
        gaps = self._gaps[j]
        dropped = gaps[i + 1 : k].count(self._bmax[j])  # the gaps between merged VMAs: usually none
        del gaps[i + 1 : k]
        self._len -= count - 1
        if dropped:
            self._bcount[j] -= dropped
            if self._bcount[j] <= 0:
                self._refresh_bmax(j)  # none of them left, or not counted: look
        if len(block) < self.load // 2 and len(self._firsts) > 1:
            self._join(j)

    def fill(self, vmas: list[Vma]) -> None:
        """Fill an empty store with ``vmas``, in address order and disjoint, in O(n): whole blocks at once
        instead of one insert each (like dup_mmap() duplicating the parent's tree in one go)."""
        assert not self._len, "fill() needs an empty store"
        if not vmas:
            return
        starts = [vma.start for vma in vmas]
        ends = [vma.end for vma in vmas]
        ends.insert(0, 0)  # the gap below the lowest VMA runs from address 0
        gaps = list(map(_shared, map(sub, starts, ends)))
        load = self.load
        n = len(vmas)
        cuts = list(range(0, n, load))
        if len(cuts) > 1 and n - cuts[-1] < load // 2:
            cuts.pop()  # a short last block goes with the one before it (at most 1.5 * LOAD)
        cuts.append(n)
        for a, b in pairwise(cuts):
            self._vmas.append(vmas[a:b])
            self._starts.append(starts[a:b])
            block_gaps = gaps[a:b]
            self._gaps.append(block_gaps)
            self._firsts.append(starts[a])
            self._bmax.append(max(block_gaps))
            self._bcount.append(-1)
        self._len = n
        self._restructured()

    # --- block and tree upkeep ------------------------------------------------------------

    def _locate(self, vma: Vma) -> tuple[int, int]:
        """Block and index of a stored VMA."""
        start = vma.start
        j = self._block(start)
        i = bisect_left(self._starts[j], start)
        assert j >= 0 and self._vmas[j][i] is vma, f"{vma} is not in the store"
        return j, i

    def _set_gap(self, j: int, i: int, gap: int) -> None:
        """Set the gap below VMA ``i`` of block ``j``, keeping the block maximum and the tree right."""
        gaps = self._gaps[j]
        old = gaps[i]
        if gap == old:
            return  # counted already: counting it in again would count it twice
        gap = _shared(gap)
        if old == self._bmax[j] and gap < old:
            gaps[i] = gap
            left = self._bcount[j] - 1
            if left > 0:
                self._bcount[j] = left
            elif not left:
                self._refresh_bmax(j)  # it was the last that large
            else:
                # Not counted: one scan tells whether it was the only one (a big gap shrinking, as below
                # packed VMAs), and otherwise the count, once.
                self._refresh_bmax(j)
                if self._bmax[j] == old:
                    self._bcount[j] = gaps.count(old)
            return
        gaps[i] = gap
        self._count_in(j, gap)

    def _count_in(self, j: int, gap: int) -> None:
        """A gap of block ``j`` now has size ``gap``: raise the block maximum, or count one more that large."""
        bmax = self._bmax[j]
        if gap > bmax:
            self._bmax[j] = gap
            self._bcount[j] = 1
            self._touch(j)
        elif gap == bmax and self._bcount[j] >= 0:
            self._bcount[j] += 1

    def _refresh_bmax(self, j: int) -> None:
        """Find block ``j``'s largest gap again (O(block)), counting it later if need be."""
        m = max(self._gaps[j])
        self._bcount[j] = -1
        if m != self._bmax[j]:
            self._bmax[j] = m
            self._touch(j)

    def _touch(self, j: int) -> None:
        """Block ``j``'s largest gap changed: its tree path needs fixing before the next search."""
        last = self._last_rightmost
        if last is not None and last[2] <= j < last[0]:
            fits = self._bmax[j] >= last[1]
            if fits != (j == last[2]):
                self._last_rightmost = None
        if not self._stale:
            dirty = self._dirty
            if not dirty or dirty[-1] != j:
                dirty.append(j)
                if len(dirty) > self.load:
                    self._stale = True

    def _restructured(self) -> None:
        """Blocks were added, dropped, split or joined: block numbers changed, the tree must be rebuilt."""
        self._stale = True
        self._last_rightmost = None

    def _split(self, j: int) -> None:
        """Cut block ``j`` in two halves."""
        half = len(self._starts[j]) // 2
        _cut(self._vmas, j, half)
        _cut(self._starts, j, half)
        _cut(self._gaps, j, half)
        self._firsts.insert(j + 1, self._starts[j + 1][0])
        self._bmax[j] = max(self._gaps[j])
        self._bcount[j] = -1
        self._bmax.insert(j + 1, max(self._gaps[j + 1]))
        self._bcount.insert(j + 1, -1)
        self._restructured()

    def _join(self, j: int) -> None:
        """Fold the short block ``j`` into a neighbour, splitting again if that overflows."""
        if j == 0:
            j = 1
        _glue(self._vmas, j)
        _glue(self._starts, j)
        _glue(self._gaps, j)
        del self._firsts[j]
        low, high = self._bmax[j - 1], self._bmax.pop(j)
        count = self._bcount.pop(j)
        if high > low:
            self._bmax[j - 1], self._bcount[j - 1] = high, count
        elif high == low:
            self._bcount[j - 1] = -1 if min(count, self._bcount[j - 1]) < 0 else self._bcount[j - 1] + count
        self._restructured()
        if len(self._starts[j - 1]) > 2 * self.load:
            self._split(j - 1)

    def _drop_block(self, j: int) -> None:
        for lists in (self._vmas, self._starts, self._gaps, self._firsts, self._bmax, self._bcount):
            del lists[j]
        self._restructured()

    def _sync_tree(self) -> None:
        """Bring the segment tree up to date with the blocks' largest gaps."""
        if self._stale:
            self._rebuild_tree()
        else:
            bmax = self._bmax
            for j in self._dirty:
                self._tree_set(j, bmax[j])
        self._dirty.clear()
        self._stale = False

    def _rebuild_tree(self) -> None:
        """Build the max segment tree over the blocks' largest gaps (-1 in unused leaves)."""
        nb = len(self._bmax)
        cap = 1
        while cap < nb:
            cap <<= 1
        tree = [-1] * (2 * cap)
        tree[cap : cap + nb] = self._bmax
        h = cap
        while h > 1:
            half = h >> 1
            pairs = zip(tree[h : 2 * h : 2], tree[h + 1 : 2 * h : 2], strict=True)
            tree[half:h] = [a if a > b else b for a, b in pairs]
            h = half
        self._cap = cap
        self._tree = tree

    def _tree_set(self, j: int, value: int) -> None:
        """Block ``j``'s largest gap is now ``value``: fix its path to the root, stopping where nothing changes."""
        tree = self._tree
        k = j + self._cap
        tree[k] = value
        k >>= 1
        while k:
            left = tree[2 * k]
            right = tree[2 * k + 1]
            m = left if left > right else right
            if tree[k] == m:
                return
            tree[k] = m
            k >>= 1

    def _tree_rightmost(self, j: int, need: int) -> int:
        """The last block before block ``j`` whose largest gap is at least ``need``, or -1."""
        last = self._last_rightmost
        if last is not None and last[0] == j and last[1] == need:
            return last[2]
        found = self._tree_climb(j, need)
        if found >= 0:
            self._last_rightmost = (j, need, found)
        return found

    def _tree_climb(self, j: int, need: int) -> int:
        if self._dirty or self._stale:
            self._sync_tree()
        tree = self._tree
        cap = self._cap
        k = j + cap
        # Climbing from the leaf, the left siblings met cover the blocks below j, nearest first.
        while k > 1:
            if k & 1 and tree[k - 1] >= need:
                k -= 1
                while k < cap:
                    k = 2 * k + 1 if tree[2 * k + 1] >= need else 2 * k
                return k - cap
            k >>= 1
        return -1

    def _check(self) -> None:
        """Assert every invariant of the layout (for tests)."""
        nb = len(self._vmas)
        assert len(self._starts) == len(self._gaps) == len(self._firsts) == len(self._bmax) == len(self._bcount) == nb
        assert self._len == sum(map(len, self._vmas))
        prev_end = 0
        prev_start = -1
        for j in range(nb):
            block, starts, gaps = self._vmas[j], self._starts[j], self._gaps[j]
            assert block, "empty block"
            assert len(block) <= 2 * self.load
            assert nb == 1 or len(block) >= self.load // 2
            assert len(starts) == len(gaps) == len(block)
            assert self._firsts[j] == starts[0]
            for vma, start, gap in zip(block, starts, gaps, strict=True):
                assert vma.start == start and start > prev_start and start < vma.end
                assert start >= prev_end, "overlapping VMAs"
                assert gap == start - prev_end
                prev_end, prev_start = vma.end, start
            assert self._bmax[j] == max(gaps)
            assert self._bcount[j] in (-1, gaps.count(self._bmax[j]))
        self._sync_tree()
        cap = self._cap
        assert cap >= nb and cap & (cap - 1) == 0 and len(self._tree) == 2 * cap
        assert self._tree[cap : cap + nb] == self._bmax
        assert all(v == -1 for v in self._tree[cap + nb :])
        for k in range(1, cap):
            assert self._tree[k] == max(self._tree[2 * k], self._tree[2 * k + 1])
        if self._last_rightmost is not None:
            j, need, found = self._last_rightmost
            assert found == max((b for b in range(j) if self._bmax[b] >= need), default=-1)
