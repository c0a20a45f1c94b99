"""mprotect(2) and pkey_mprotect(2): mm/mprotect.c's do_mprotect_pkey() and mprotect_fixup()."""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.addr import page_align
from vmasim.core.errors import kernel_error
from vmasim.core.fault import populate_range
from vmasim.core.flags import (
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_DROPPABLE,
    VM_GROWSDOWN,
    VM_HUGETLB,
    VM_LOCKED,
    VM_NORESERVE,
    VM_PKEY_MASK,
    VM_SEALED,
    VM_SHARED,
    VM_WRITE,
)
from vmasim.core.merge import vma_modify_flags
from vmasim.core.mm import MmStruct
from vmasim.core.prot import calc_vm_prot_bits, mm_pkey_is_allocated, mprotect_pkey
from vmasim.core.vma import Vma
from vmasim.core.walk import Holes, walk_range

CALL = "mprotect"


def mprotect_fixup(mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int, newflags: int) -> Vma:
    """Like mprotect_fixup(): apply ``newflags`` to ``[start, end)`` of ``vma``; returns the VMA covering it."""
    if vma.vm_flags & VM_SEALED:
        raise kernel_error(errno.EPERM, CALL, "the VMA is sealed")
    oldflags = vma.vm_flags
    if newflags == oldflags:
        return vma
    if newflags & VM_WRITE:
        nrpages = (end - start) >> C.PAGE_SHIFT
        # Turning into data counts against RLIMIT_DATA.
        if not mm.may_expand_vm(newflags, nrpages) and mm.may_expand_vm(oldflags, nrpages):
            raise kernel_error(errno.ENOMEM, CALL, "RLIMIT_DATA would be exceeded")
        # Becoming writable private memory: charge it and mark it VM_ACCOUNT.
        if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE | VM_DROPPABLE):
            if not mm.vm_enough_memory(nrpages):
                raise kernel_error(errno.ENOMEM, CALL, "not enough memory to commit")
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma.is_anonymous and vma.anon_vma is None:
        # Nothing was ever written, so the charge can be given back.
        newflags &= ~VM_ACCOUNT
    vma = vma_modify_flags(mm, prev, vma, start, end, newflags)
    if oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED) == VM_LOCKED and newflags & VM_WRITE:
        # A locked private mapping made writable is populated again, now with write faults (COW).
        populate_range(mm, start, end, can_block=False)
    return vma


def sys_mprotect(mm: MmStruct, start: int, length: int, prot: int, pkey: int = -1) -> int:
    """mprotect(2) (``pkey`` -1) or pkey_mprotect(2), with the kernel's partial application on errors."""
    grows = prot & (C.PROT_GROWSDOWN | C.PROT_GROWSUP)
    prot &= ~(C.PROT_GROWSDOWN | C.PROT_GROWSUP)
    if grows == C.PROT_GROWSDOWN | C.PROT_GROWSUP:
        raise kernel_error(errno.EINVAL, CALL, "PROT_GROWSDOWN and PROT_GROWSUP together")
    if start & (C.PAGE_SIZE - 1):
        raise kernel_error(errno.EINVAL, CALL, "start not page aligned")
    if not length:
        return 0
    length = page_align(length)
    end = (start + length) & ((1 << 64) - 1)
    if end <= start:
        raise kernel_error(errno.ENOMEM, CALL, "range wraps around")
    if prot & ~(C.PROT_READ | C.PROT_WRITE | C.PROT_EXEC | C.PROT_SEM):
        raise kernel_error(errno.EINVAL, CALL, "unknown protection bits")
    if pkey != -1 and not mm_pkey_is_allocated(mm, pkey):
        # Only keys pkey_alloc() handed out (and 0 where it is allocated) may be used.
        raise kernel_error(errno.EINVAL, CALL, "protection key not allocated")

    vma = mm.vmas.find_intersection(start, end)
    if vma is None:
        raise kernel_error(errno.ENOMEM, CALL, "no mapping in the range")
    if grows & C.PROT_GROWSDOWN:
        start = vma.start
        if not vma.vm_flags & VM_GROWSDOWN:
            raise kernel_error(errno.EINVAL, CALL, "PROT_GROWSDOWN on a VMA that does not grow down")
    else:
        if vma.start > start:
            raise kernel_error(errno.ENOMEM, CALL, "the range starts in a hole")
        if grows & C.PROT_GROWSUP:
            raise kernel_error(errno.EINVAL, CALL, "PROT_GROWSUP on a VMA that does not grow up")

    def fixup(prev: Vma | None, cur: Vma, nstart: int, stop: int) -> Vma:
        key = mprotect_pkey(mm, cur.vm_flags, prot, pkey)
        newflags = calc_vm_prot_bits(prot, key) | (cur.vm_flags & ~(VM_ACCESS_FLAGS | VM_PKEY_MASK))
        # A VM_MAY* bit gates each access bit (VM_MAY* is VM_* shifted left by 4).
        if newflags & ~(newflags >> 4) & VM_ACCESS_FLAGS:
            raise kernel_error(errno.EACCES, CALL, "protection not allowed by the mapping")
        return mprotect_fixup(mm, prev, cur, nstart, stop, newflags)

    walk_range(mm, start, end, fixup, holes=Holes.STOP, call=CALL)
    return 0
