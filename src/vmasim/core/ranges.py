"""A set of disjoint address ranges (used for guard-region markers, which live in page tables, not VMAs)."""

from __future__ import annotations

from sortedcontainers import SortedDict


class RangeSet:
    """Disjoint, coalesced ``[start, end)`` ranges with O(log n) lookup."""

    __slots__ = ("_map",)

    def __init__(self) -> None:
        self._map: SortedDict = SortedDict()

    def __bool__(self) -> bool:
        return bool(self._map)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._map.items())

    def copy(self) -> RangeSet:
        """An independent copy."""
        other = RangeSet()
        other._map = self._map.copy()
        return other

    def first_in(self, start: int, end: int) -> int | None:
        """The lowest address of ``[start, end)`` covered by the set, or None."""
        i = self._map.bisect_right(start)
        if i:
            s, e = self._map.peekitem(i - 1)
            if e > start:
                return start
        if i < len(self._map):
            s = self._map.peekitem(i)[0]
            if s < end:
                return int(s)
        return None

    def add(self, start: int, end: int) -> None:
        """Cover ``[start, end)``."""
        self.remove(start, end)
        i = self._map.bisect_left(start)
        if i:
            s, e = self._map.peekitem(i - 1)
            if e == start:
                start = s
                del self._map[s]
        nxt = self._map.get(end)
        if nxt is not None:
            del self._map[end]
            end = nxt
        self._map[start] = end

    def remove(self, start: int, end: int) -> None:
        """Uncover ``[start, end)``."""
        i = self._map.bisect_right(start)
        if i:
            s, e = self._map.peekitem(i - 1)
            if e > start:
                self._map[s] = start
                if s == start:
                    del self._map[s]
                if e > end:
                    self._map[end] = e
        for s in list(self._map.irange(minimum=start, maximum=end, inclusive=(True, False))):
            e = self._map.pop(s)
            if e > end:
                self._map[end] = e
