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

    def _last_at_or_below(self, addr: int) -> tuple[int, int] | None:
        m = self._map
        for key in m.irange(maximum=addr, reverse=True):
            return int(key), int(m[key])
        return None

    def first_in(self, start: int, end: int) -> int | None:
        """The lowest address of ``[start, end)`` covered by the set, or None."""
        below = self._last_at_or_below(start)
        if below is not None and below[1] > start:
            return start
        for key in self._map.irange(minimum=start, maximum=end, inclusive=(False, False)):
            return int(key)
        return None

    def slices(self, start: int, end: int) -> list[tuple[int, int]]:
        """The covered parts of ``[start, end)``, in order (O(log n) plus their number)."""
        out: list[tuple[int, int]] = []
        below = self._last_at_or_below(start)
        if below is not None and below[1] > start:
            out.append((start, min(below[1], end)))
        m = self._map
        for key in m.irange(minimum=start, maximum=end, inclusive=(False, False)):
            out.append((int(key), min(int(m[key]), end)))
        return out

    def first_gap(self, start: int, end: int) -> int | None:
        """The lowest address of ``[start, end)`` not covered by the set, or None (O(log n))."""
        below = self._last_at_or_below(start)
        cursor = below[1] if below is not None and below[1] > start else start
        # The ranges are coalesced: the one covering ``start`` (if any) ends in a gap.
        return cursor if cursor < end else None

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

    def add(self, start: int, end: int) -> None:
        """Cover ``[start, end)``, coalescing with ranges it overlaps or touches."""
        m = self._map
        below = self._last_at_or_below(start)
        if below is not None and below[1] >= start:
            if below[1] >= end:
                return  # already covered
            start = below[0]
        for k in list(m.irange(minimum=start, maximum=end)):
            e = m.pop(k)
            if e > end:
                end = e
        m[start] = end

    def remove(self, start: int, end: int) -> None:
        """Uncover ``[start, end)``."""
        m = self._map
        below = self._last_at_or_below(start)
        if below is not None and below[1] > start:
            s, e = below
            if s == start:
                del m[s]
            else:
                m[s] = start
            if e > end:
                m[end] = e
        for s in list(m.irange(minimum=start, maximum=end, inclusive=(True, False))):
            e = m.pop(s)
            if e > end:
                m[end] = e
