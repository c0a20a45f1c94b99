"""Walking a range VMA by VMA, as every call that changes an attribute of a range does.

The kernel's callers (do_mprotect_pkey(), apply_vma_lock_flags(),
madvise_walk_vmas(), mbind_range()'s loop, mseal_apply(),
userfaultfd_register_range()...) all iterate the VMAs of a range with a
``prev`` that the modify path needs, and differ only in what a hole means.
:func:`walk_range` is that one loop; :class:`Holes` says what a hole does::

    range:      [start ....................................... end)
    VMAs:   |--- A ---|   hole   |--- B ---|--- C ---|   hole
            visit(prev, A, start, A.end) -> A'    (A' is what now covers it)
                                 visit(A', B, B.start, B.end) -> B'
                                           visit(B', C, C.start, end) -> C'

``visit`` changes one VMA's part of the range and returns the VMA that now
covers it (merged or split: it does not matter which), which becomes the
next ``prev``.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Callable

from vmasim.core.errors import kernel_error
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma

#: ``visit(prev, vma, start, end)``: change ``[start, end)`` of ``vma``; the VMA now covering it.
Visit = Callable[[Vma | None, Vma, int, int], Vma]


class Holes(enum.Enum):
    """What an unmapped part of the range does to the walk."""

    #: The walk stops at the hole with the error; the VMAs before it keep their changes (mprotect, mlock).
    STOP = "stop"
    #: Holes are skipped; the error comes once every mapped part has been visited (madvise).
    SKIP = "skip"
    #: Any hole is the error before anything changes (mseal, mbind with a policy).
    FIRST = "first"
    #: Holes are fine (userfaultfd, mbind with the default policy).
    ALLOW = "allow"


def range_contains_unmapped(mm: MmStruct, start: int, end: int) -> bool:
    """Like mm/mseal.c's range_contains_unmapped(): any byte of ``[start, end)`` outside every VMA."""
    prev_end = start
    for vma in mm.vmas.range(start, end):
        if vma.start > prev_end:
            return True
        prev_end = vma.end
    return prev_end < end


def prev_for(mm: MmStruct, vma: Vma, start: int) -> Vma | None:
    """The ``prev`` the modify path is given for a range starting at ``start`` in (or before) ``vma``:
    ``vma`` itself when the range starts inside it, else the VMA before it."""
    return vma if start > vma.start else mm.vma_prev(vma)


def walk_range(
    mm: MmStruct,
    start: int,
    end: int,
    visit: Visit,
    *,
    holes: Holes,
    call: str,
    hole_errno: int = errno.ENOMEM,
) -> None:
    """Visit each VMA's part of ``[start, end)`` in address order, tracking ``prev``.

    A hole raises ``hole_errno`` (naming ``call``) as ``holes`` says; so
    does a range with nothing mapped in it, unless holes are allowed.
    """
    if holes is Holes.FIRST and range_contains_unmapped(mm, start, end):
        raise kernel_error(hole_errno, call, "the range is not fully mapped")
    cur = mm.find_vma(start)
    if cur is None or cur.start >= end:
        if holes is Holes.ALLOW:
            return
        raise kernel_error(hole_errno, call, "nothing mapped in the range")
    prev = prev_for(mm, cur, start)
    cursor = start
    skipped = False
    while cur is not None and cur.start < end:
        if cur.start > cursor:
            if holes is Holes.STOP:
                raise kernel_error(hole_errno, call, "hole in the range")
            skipped = True
        done = visit(prev, cur, max(cursor, cur.start), min(cur.end, end))
        cursor = done.end
        prev = done
        cur = mm.vma_next(done)
    if cursor < end:
        skipped = True
        if holes is Holes.STOP:
            raise kernel_error(hole_errno, call, "hole at the end of the range")
    if skipped and holes is Holes.SKIP:
        raise kernel_error(hole_errno, call, "the range has holes")


def walk_all(mm: MmStruct, visit: Visit) -> None:
    """Visit every VMA of the address space whole, in order (mlockall, userfaultfd release)."""
    prev: Vma | None = None
    vma = mm.find_vma(0)
    while vma is not None:
        prev = visit(prev, vma, vma.start, vma.end)
        vma = mm.vma_next(prev)
