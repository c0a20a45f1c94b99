"""mseal(2): mm/mseal.c's do_mseal() and mseal_apply()."""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.errors import kernel_error
from vmasim.core.flags import VM_SEALED, VM_STICKY
from vmasim.core.merge import modify_prev, vma_modify_flags
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.syscalls.munmap import page_align

CALL = "mseal"


def range_contains_unmapped(mm: MmStruct, start: int, end: int) -> bool:
    """Like range_contains_unmapped(): any byte of ``[start, end)`` outside every VMA."""
    prev_end = start
    for vma in mm.vmas.range(start, end):
        if vma.start > prev_end:
            return True
        prev_end = vma.end
    return prev_end < end


def sys_mseal(mm: MmStruct, start: int, length: int, flags: int) -> int:
    """mseal(2): seal every VMA in a hole-free range; sealed VMAs refuse munmap, mprotect and more."""
    if flags:
        raise kernel_error(errno.EINVAL, CALL, "flags must be 0")
    if start & (C.PAGE_SIZE - 1):
        raise kernel_error(errno.EINVAL, CALL, "unaligned start")
    aligned = page_align(length)
    if length and not aligned:
        raise kernel_error(errno.EINVAL, CALL, "length wraps")
    end = start + aligned
    if end >= 1 << 64:
        raise kernel_error(errno.EINVAL, CALL, "range wraps")
    if end == start:
        return 0
    if range_contains_unmapped(mm, start, end):
        raise kernel_error(errno.ENOMEM, CALL, "the range is not fully mapped")
    vma = mm.vmas.lookup(start)
    assert vma is not None
    prev = modify_prev(mm, vma, start)
    cur: Vma | None = vma
    cursor = start
    while cur is not None and cur.start < end:
        stop = min(cur.end, end)
        if not cur.vm_flags & VM_SEALED:
            flags_new = cur.vm_flags | VM_SEALED
            cur = vma_modify_flags(mm, prev, cur, max(cursor, cur.start), stop, flags_new)
            mm.set_flags(cur, flags_new | (cur.vm_flags & VM_STICKY))
        prev = cur
        cursor = stop
        cur = mm.vma_next(cur)
    return 0
