"""munmap(2), and the unmapping that MAP_FIXED does over existing mappings (mm/vma.c's do_vmi_munmap())."""

from __future__ import annotations

import errno

from vmasim.constants import PAGE_SIZE
from vmasim.core.addr import page_align
from vmasim.core.errors import kernel_error
from vmasim.core.flags import VM_ACCOUNT, VM_SEALED
from vmasim.core.merge import split_vma
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma


def gather_munmap_vmas(mm: MmStruct, first: Vma, start: int, end: int, call: str) -> list[Vma]:
    """Like vms_gather_munmap_vmas(): split at the range's edges and collect the VMAs inside it.

    The VMAs stay in the tree until :func:`complete_munmap`.  On a sealed VMA
    the call fails with EPERM, keeping any split already made, as the kernel
    does.  A split strictly inside one VMA is refused at max_map_count so that
    the unmap cannot leave more VMAs than the limit.
    """
    if start > first.start:
        if end < first.end and mm.map_count >= mm.max_map_count:
            raise kernel_error(errno.ENOMEM, call, "splitting would exceed max_map_count")
        if first.vm_flags & VM_SEALED:
            raise kernel_error(errno.EPERM, call, "the VMA is sealed")
        split_vma(mm, first, start, True, checked=False)
    detached: list[Vma] = []
    vma: Vma | None = first
    while vma is not None and vma.start < end:
        if vma.vm_flags & VM_SEALED:
            raise kernel_error(errno.EPERM, call, "the VMA is sealed")
        if vma.end > end:
            split_vma(mm, vma, end, False, checked=False)
        detached.append(vma)
        vma = mm.vma_next(vma)
    return detached


def complete_munmap(mm: MmStruct, detached: list[Vma]) -> None:
    """Like vms_complete_munmap_vmas(): remove the gathered VMAs for good."""
    for vma in detached:
        mm.guards.remove(vma.start, vma.end)
        mm.zap_range(vma.start, vma.end)
        mm.unlink(vma)


def accounted_pages(detached: list[Vma]) -> int:
    """Pages of the gathered VMAs that carry VM_ACCOUNT (their commit charge can be reused)."""
    return sum(v.pages for v in detached if v.vm_flags & VM_ACCOUNT)


def do_vmi_munmap(mm: MmStruct, start: int, length: int, call: str = "munmap") -> None:
    """Like do_vmi_munmap(): validate, then unmap ``[start, start+length)``; holes are fine."""
    if start & (PAGE_SIZE - 1) or start > mm.task_size or length > mm.task_size - start:
        raise kernel_error(errno.EINVAL, call, "unaligned start or range beyond the address space")
    end = start + page_align(length)
    if end == start:
        raise kernel_error(errno.EINVAL, call, "zero length")
    first = mm.vmas.find_intersection(start, end)
    if first is None:
        return
    detached = gather_munmap_vmas(mm, first, start, end, call)
    complete_munmap(mm, detached)


def sys_munmap(mm: MmStruct, addr: int, length: int) -> int:
    """munmap(2): remove every mapping overlapping the range."""
    do_vmi_munmap(mm, addr, length)
    return 0
