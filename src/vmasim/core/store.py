"""The ordered VMA store: the model's maple tree.

VMAs are kept in a ``sortedcontainers.SortedDict`` keyed by start address, so
lookup by address, neighbour access, insertion and removal are all O(log n).
A VMA's start is its key, so the store is the only place allowed to change it
(:meth:`VmaStore.set_range`).
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from vmasim.core.vma import Vma


class VmaStore:
    """Non-overlapping VMAs ordered by address."""

    __slots__ = ("_tree",)

    def __init__(self) -> None:
        self._tree: SortedDict = SortedDict()

    def __len__(self) -> int:
        return len(self._tree)

    def __iter__(self) -> Iterator[Vma]:
        return iter(self._tree.values())

    def find(self, addr: int) -> Vma | None:
        """Like find_vma(): the first VMA that ends above ``addr`` (it may start above it too)."""
        tree = self._tree
        below = self.prev_of_addr(addr + 1)
        if below is not None and below.end > addr:
            return below
        for key in tree.irange(minimum=addr, inclusive=(False, False)):
            nxt: Vma = tree[key]
            return nxt
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
        tree = self._tree
        for key in tree.irange(minimum=vma.start, inclusive=(False, False)):
            nxt: Vma = tree[key]
            return nxt
        return None

    def prev_of_addr(self, addr: int) -> Vma | None:
        """The last VMA that starts below ``addr``."""
        tree = self._tree
        for key in tree.irange(maximum=addr, inclusive=(False, False), reverse=True):
            vma: Vma = tree[key]
            return vma
        return None

    def gaps_down(self, high: int, top: int) -> Iterator[tuple[int, int]]:
        """The free gaps that start below ``high``, highest first, as ``(gap_start, start_above)``.

        ``start_above`` is the start of the VMA right above the gap, or ``top``
        above the last VMA; the last gap yielded starts at 0.
        """
        tree = self._tree
        above = next(iter(tree.irange(minimum=high)), top)
        for key in tree.irange(maximum=high, inclusive=(True, False), reverse=True):
            vma: Vma = tree[key]
            yield vma.end, above
            above = key
        yield 0, above

    def range(self, start: int, end: int) -> Iterator[Vma]:
        """The VMAs overlapping ``[start, end)``, in order.  Do not mutate the store while iterating."""
        first = self.find(start)
        if first is None or first.start >= end:
            return
        for key in self._tree.irange(minimum=first.start, maximum=end, inclusive=(True, False)):
            yield self._tree[key]

    def insert(self, vma: Vma) -> None:
        """Add a VMA; its range must be free."""
        assert vma.start not in self._tree, f"overlapping insert at {vma.start:#x}"
        self._tree[vma.start] = vma

    def remove(self, vma: Vma) -> None:
        """Drop a VMA."""
        del self._tree[vma.start]

    def set_range(self, vma: Vma, start: int, end: int) -> None:
        """Move a stored VMA's bounds; the caller guarantees no overlap results."""
        if start != vma.start:
            del self._tree[vma.start]
            vma.start = start
            self._tree[start] = vma
        vma.end = end
