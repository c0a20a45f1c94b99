"""mseal(2): mm/mseal.c's do_mseal() and mseal_apply()."""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.errors import kernel_error
from vmasim.core.flags import VM_SEALED, VM_STICKY
from vmasim.core.merge import modify_contiguous, vma_modify_flags
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

    def fixup(prev: Vma | None, cur: Vma, nstart: int, stop: int) -> Vma:
        # mseal_apply(): VMAs already sealed are left alone (no split).
        if cur.vm_flags & VM_SEALED:
            return cur
        new_flags = cur.vm_flags | VM_SEALED
        done = vma_modify_flags(mm, prev, cur, nstart, stop, new_flags)
        mm.set_flags(done, new_flags | (done.vm_flags & VM_STICKY))
        return done

    # The range has no holes (checked above), so the contiguous walk never fails on one.
    modify_contiguous(mm, vma, start, end, fixup, CALL)
    return 0
