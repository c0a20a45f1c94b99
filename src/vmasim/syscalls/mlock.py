"""mlock(2), mlock2(2), munlock(2), mlockall(2), munlockall(2): mm/mlock.c."""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.errors import kernel_error
from vmasim.core.fault import populate_range
from vmasim.core.flags import (
    VM_DROPPABLE,
    VM_HUGETLB,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_LOCKONFAULT,
    VM_SPECIAL,
)
from vmasim.core.merge import vma_modify_flags
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.core.walk import Holes, walk_all, walk_range


def mlock_fixup(mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int, newflags: int) -> Vma:
    """Like mlock_fixup(): lock flags for ``[start, end)``; special, hugetlb and droppable VMAs are left alone."""
    oldflags = vma.vm_flags
    if newflags == oldflags or oldflags & (VM_SPECIAL | VM_HUGETLB | VM_DROPPABLE):
        return vma
    return vma_modify_flags(mm, prev, vma, start, end, newflags)


def apply_vma_lock_flags(mm: MmStruct, start: int, length: int, flags: int, call: str) -> None:
    """Like apply_vma_lock_flags(): the range must start in a VMA; a hole stops it with ENOMEM."""
    end = start + length
    if end > C.MASK64:
        raise kernel_error(errno.EINVAL, call, "range wraps")
    if end == start:
        return

    def fixup(prev: Vma | None, cur: Vma, nstart: int, stop: int) -> Vma:
        return mlock_fixup(mm, prev, cur, nstart, stop, (cur.vm_flags & ~VM_LOCKED_MASK) | flags)

    walk_range(mm, start, end, fixup, holes=Holes.STOP, call=call)


def _align(start: int, length: int) -> tuple[int, int]:
    # mlock and munlock accept an unaligned start: the range is widened to whole pages.
    length = (length + (start & (C.PAGE_SIZE - 1)) + C.PAGE_SIZE - 1) & ~(C.PAGE_SIZE - 1) & C.MASK64
    return start & ~(C.PAGE_SIZE - 1), length


def can_do_mlock(mm: MmStruct) -> bool:
    """Like can_do_mlock(): a non-zero RLIMIT_MEMLOCK, or CAP_IPC_LOCK."""
    return mm.target.limits.rlimit_memlock != 0 or mm.target.limits.privileged


def count_mm_mlocked_page_nr(mm: MmStruct, start: int, length: int) -> int:
    """Like count_mm_mlocked_page_nr(): pages of ``[start, start+length)`` that are already locked."""
    count = 0
    for vma in mm.vmas.range(start, start + length):
        if vma.vm_flags & VM_LOCKED:
            count += min(vma.end, start + length) - max(vma.start, start)
    return count >> C.PAGE_SHIFT


def do_mlock(mm: MmStruct, start: int, length: int, flags: int, call: str) -> int:
    """Like do_mlock(): lock within RLIMIT_MEMLOCK, then populate; population errors become ENOMEM (EFAULT)
    or EAGAIN."""
    if not can_do_mlock(mm):
        raise kernel_error(errno.EPERM, call, "RLIMIT_MEMLOCK is 0")
    start, length = _align(start, length)
    limits = mm.target.limits
    if not limits.privileged and limits.rlimit_memlock is not None:
        limit = limits.rlimit_memlock >> C.PAGE_SHIFT
        locked = (length >> C.PAGE_SHIFT) + mm.locked_vm
        if locked > limit:
            # Pages locked already do not count twice.
            locked -= count_mm_mlocked_page_nr(mm, start, length)
        if locked > limit:
            raise kernel_error(errno.ENOMEM, call, "RLIMIT_MEMLOCK would be exceeded")
    apply_vma_lock_flags(mm, start, length, flags, call)
    err = populate_range(mm, start, start + length, ignore_errors=False)
    if err == errno.EFAULT:
        raise kernel_error(errno.ENOMEM, call, "part of the range could not be faulted in")
    if err == errno.ENOMEM:
        raise kernel_error(errno.EAGAIN, call, "out of memory while populating")
    return 0


def sys_mlock(mm: MmStruct, start: int, length: int) -> int:
    """mlock(2)."""
    return do_mlock(mm, start, length, VM_LOCKED, "mlock")


def sys_mlock2(mm: MmStruct, start: int, length: int, flags: int) -> int:
    """mlock2(2): MLOCK_ONFAULT locks without populating."""
    if flags & ~C.MLOCK_ONFAULT:
        raise kernel_error(errno.EINVAL, "mlock2", "unknown flags")
    vm_flags = VM_LOCKED | (VM_LOCKONFAULT if flags & C.MLOCK_ONFAULT else 0)
    return do_mlock(mm, start, length, vm_flags, "mlock2")


def sys_munlock(mm: MmStruct, start: int, length: int) -> int:
    """munlock(2)."""
    start, length = _align(start, length)
    apply_vma_lock_flags(mm, start, length, 0, "munlock")
    return 0


def apply_mlockall_flags(mm: MmStruct, flags: int) -> None:
    """Like apply_mlockall_flags(): set def_flags for MCL_FUTURE and relock every VMA for MCL_CURRENT."""
    mm.def_flags &= ~VM_LOCKED_MASK
    if flags & C.MCL_FUTURE:
        mm.def_flags |= VM_LOCKED
        if flags & C.MCL_ONFAULT:
            mm.def_flags |= VM_LOCKONFAULT
        if not flags & C.MCL_CURRENT:
            return
    to_add = 0
    if flags & C.MCL_CURRENT:
        to_add = VM_LOCKED | (VM_LOCKONFAULT if flags & C.MCL_ONFAULT else 0)

    def fixup(prev: Vma | None, vma: Vma, start: int, end: int) -> Vma:
        try:
            return mlock_fixup(mm, prev, vma, start, end, (vma.vm_flags & ~VM_LOCKED_MASK) | to_add)
        except OSError:
            return vma  # errors are ignored, but prev must stay right

    walk_all(mm, fixup)


def sys_mlockall(mm: MmStruct, flags: int) -> int:
    """mlockall(2)."""
    if not flags or flags & ~(C.MCL_CURRENT | C.MCL_FUTURE | C.MCL_ONFAULT) or flags == C.MCL_ONFAULT:
        raise kernel_error(errno.EINVAL, "mlockall", "bad flags")
    if not can_do_mlock(mm):
        raise kernel_error(errno.EPERM, "mlockall", "RLIMIT_MEMLOCK is 0")
    limits = mm.target.limits
    if (
        flags & C.MCL_CURRENT
        and not limits.privileged
        and limits.rlimit_memlock is not None
        and mm.total_vm > limits.rlimit_memlock >> C.PAGE_SHIFT
    ):
        raise kernel_error(errno.ENOMEM, "mlockall", "the address space exceeds RLIMIT_MEMLOCK")
    apply_mlockall_flags(mm, flags)
    if flags & C.MCL_CURRENT:
        populate_range(mm, 0, mm.task_size)
    return 0


def sys_munlockall(mm: MmStruct) -> int:
    """munlockall(2)."""
    apply_mlockall_flags(mm, 0)
    return 0
