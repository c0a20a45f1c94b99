"""brk(2) and a libc-style sbrk(): mm/mmap.c's brk syscall and mm/vma.c's do_brk_flags()."""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.addr import page_align
from vmasim.core.errors import kernel_error
from vmasim.core.fault import populate_range, vm_start_gap
from vmasim.core.flags import (
    VM_ACCOUNT,
    VM_DATA_DEFAULT_FLAGS,
    VM_LOCKED,
    VM_MERGEABLE,
    VM_SOFTDIRTY,
    ksm_compatible,
)
from vmasim.core.merge import VmaMergeStruct, vma_merge_new_range
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.syscalls.munmap import complete_munmap, gather_munmap_vmas


def do_brk_flags(mm: MmStruct, brkvma: Vma | None, addr: int, length: int) -> None:
    """Like do_brk_flags(): expand the heap VMA ending at ``addr`` (never merging with what follows) or add one."""
    vm_flags = VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT | mm.def_flags
    if mm.ksm_merge_any and ksm_compatible(vm_flags):
        vm_flags |= VM_MERGEABLE
    if not mm.may_expand_vm(vm_flags, length >> C.PAGE_SHIFT):
        raise kernel_error(errno.ENOMEM, "brk", "RLIMIT_AS or RLIMIT_DATA would be exceeded")
    if mm.map_count > mm.max_map_count:
        raise kernel_error(errno.ENOMEM, "brk", "map_count above max_map_count")
    if not mm.vm_enough_memory(length >> C.PAGE_SHIFT):
        raise kernel_error(errno.ENOMEM, "brk", "not enough memory to commit")
    vma: Vma | None = None
    if brkvma is not None and brkvma.end == addr:
        vmg = VmaMergeStruct(
            mm=mm, start=addr, end=addr + length, pgoff=addr >> C.PAGE_SHIFT, vm_flags=vm_flags,
            prev=brkvma, just_expand=True,
        )
        vma = vma_merge_new_range(vmg)
    if vma is None:
        vma = Vma(addr, addr + length, addr >> C.PAGE_SHIFT, vm_flags)
        mm.link(vma)
    if mm.target.kernel.soft_dirty:
        mm.set_flags(vma, vma.vm_flags | VM_SOFTDIRTY)


def sys_brk(mm: MmStruct, brk: int) -> int:
    """brk(2): move the break; on any failure the old break is returned (there is no errno)."""
    origbrk = mm.brk
    if brk < mm.start_brk:
        return origbrk
    data = mm.target.limits.rlimit_data
    if data is not None and brk - mm.start_brk > data:
        # check_data_rlimit() (the executable's data segment is not counted here).
        return origbrk
    newbrk = page_align(brk)
    oldbrk = page_align(mm.brk)
    if oldbrk == newbrk:
        mm.brk = brk
        return brk
    if brk <= mm.brk:
        # Shrinking: whatever lies in [newbrk, oldbrk) is unmapped.
        first = mm.vmas.find_intersection(newbrk, oldbrk)
        if first is None:
            return origbrk
        try:
            detached = gather_munmap_vmas(mm, first, newbrk, oldbrk, "brk")
        except OSError:
            return origbrk
        complete_munmap(mm, detached)
        mm.brk = brk
        return brk
    # check_brk_limits(): the range must fit in the address space, and its locking in RLIMIT_MEMLOCK.  The
    # length is an unsigned difference: a break whose PAGE_ALIGN() wrapped to 0 makes it huge, not negative.
    grow = (newbrk - oldbrk) & ((1 << 64) - 1)
    if newbrk > mm.task_size or grow > mm.task_size:
        return origbrk
    if not mm.mlock_future_ok(mm.def_flags, grow):
        return origbrk
    # Keep a page (and a stack guard gap below a VM_GROWSDOWN VMA) free above the heap.
    nxt = mm.vmas.find_intersection(oldbrk, newbrk + C.PAGE_SIZE + mm.stack_guard_gap)
    if nxt is not None and newbrk + C.PAGE_SIZE > vm_start_gap(mm, nxt):
        return origbrk
    brkvma = mm.vmas.prev_of_addr(oldbrk)
    if brkvma is not None and brkvma.end <= mm.start_brk:
        brkvma = None
    try:
        do_brk_flags(mm, brkvma, oldbrk, grow)
    except OSError:
        return origbrk
    mm.brk = brk
    if mm.def_flags & VM_LOCKED:
        populate_range(mm, oldbrk, newbrk)
    return brk


def sbrk(mm: MmStruct, increment: int, initial_break: int) -> int:
    """Like libc's sbrk(): grow or shrink the break; returns the old break, ENOMEM when brk refuses."""
    old = mm.brk
    if increment == 0:
        return old
    new = old + increment
    if new < initial_break or new >= 1 << 64:
        raise kernel_error(errno.ENOMEM, "sbrk", "below the initial break")
    if sys_brk(mm, new) != new:
        raise kernel_error(errno.ENOMEM, "sbrk", "brk refused")
    return old
