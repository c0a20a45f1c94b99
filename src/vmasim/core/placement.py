"""Choosing an address for a mapping: __get_unmapped_area() and x86_64's top-down allocator.

Everything at or above ``mm.mmap_limit`` (the top of the mmap area: the vDSO,
the stack) counts as occupied, so a hint-less mapping lands top-down from
there, or from the highest VMA below it.  The store finds the highest gap that
fits in O(log n) (:meth:`~vmasim.core.store.VmaStore.highest_gap`, which tracks
the largest gap per block as the maple tree does per node), however many small
gaps lie above it.
"""

from __future__ import annotations

import errno

from vmasim.constants import MAP_FIXED, MAP_SHARED, PAGE_SIZE, PMD_SIZE, TASK_SIZE
from vmasim.core.errors import kernel_error
from vmasim.core.fault import vm_start_gap
from vmasim.core.flags import VM_STARTGAP_FLAGS
from vmasim.core.mm import MmStruct
from vmasim.core.vma import File

PAGE_MASK = ~(PAGE_SIZE - 1)


def _no_memory(detail: str) -> OSError:
    return kernel_error(errno.ENOMEM, "get_unmapped_area", detail)


def unmapped_area_topdown(mm: MmStruct, length: int, align_mask: int = 0, align_offset: int = 0) -> int:
    """Like mm/vma.c's unmapped_area_topdown(): the top of the highest gap that fits, below mmap_base."""
    need = length + align_mask
    low = max(PAGE_SIZE, mm.mmap_min_addr)
    high = min(mm.mmap_base, mm.mmap_limit)
    while True:
        found = mm.vmas.highest_gap(low, high, need, mm.mmap_limit)
        if found is None:
            raise _no_memory("no gap large enough")
        gap_end, above_start = found
        gap = gap_end - length
        gap -= (gap - align_offset) & align_mask
        above = mm.vmas.lookup(above_start) if above_start < mm.mmap_limit else None
        if above is not None and above.vm_flags & VM_STARTGAP_FLAGS and vm_start_gap(above) < gap_end:
            # Keep the stack guard gap below a VM_GROWSDOWN neighbour and search again.
            high = vm_start_gap(above)
            if high < low:
                raise _no_memory("no gap large enough")
            continue
        return gap


def _hint_fits(mm: MmStruct, addr: int, length: int) -> bool:
    # mmap_address_hint_valid(): inside the 47-bit space and not straddling its top.
    if TASK_SIZE - length < addr:
        return False
    if addr + length > mm.mmap_limit:
        return False
    vma = mm.find_vma(addr)
    return vma is None or addr + length <= vm_start_gap(vma)


def arch_get_unmapped_area_topdown(mm: MmStruct, addr: int, length: int, flags: int) -> int:
    """Like x86's arch_get_unmapped_area_topdown(): MAP_FIXED as given, else a free hint, else a search."""
    if length > TASK_SIZE:
        raise _no_memory("length larger than the address space")
    if flags & MAP_FIXED:
        return addr
    if addr:
        addr &= PAGE_MASK
        if _hint_fits(mm, addr, length):
            return addr
    return unmapped_area_topdown(mm, length)


def _thp_get_unmapped_area(mm: MmStruct, addr: int, length: int, off: int, flags: int) -> int | None:
    """Like __thp_get_unmapped_area(): search with 2 MiB of slack and align the result; None to fall back."""
    off_end = off + length
    off_align = (off + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
    if off_end <= off_align or off_end - off_align < PMD_SIZE:
        return None
    len_pad = length + PMD_SIZE
    try:
        ret = arch_get_unmapped_area_topdown(mm, addr, len_pad, flags)
    except OSError:
        return None
    if ret == addr:
        return addr
    off_sub = (off - ret) & (PMD_SIZE - 1)
    if not off_sub:
        # Top-down: the padding is below the result, so take its aligned top.
        return ret + PMD_SIZE
    return ret + off_sub


def get_unmapped_area(mm: MmStruct, file: File | None, addr: int, length: int, pgoff: int, flags: int) -> int:
    """Like __get_unmapped_area(): pick (or check) the address of a new mapping; raises ENOMEM or EINVAL."""
    if length > TASK_SIZE:
        raise _no_memory("length larger than the address space")
    if file is None:
        pgoff = 0
    if file is not None and file.inode.kind == "file":
        # Regular files on ext4 use thp_get_unmapped_area() for every length.
        ret = _thp_get_unmapped_area(mm, addr, length, pgoff * PAGE_SIZE, flags)
        if ret is None:
            ret = arch_get_unmapped_area_topdown(mm, addr, length, flags)
    elif file is None and not flags & MAP_SHARED and not addr and length % PMD_SIZE == 0:
        # Anonymous private mappings of whole 2 MiB multiples, without a hint, are THP aligned.
        ret = _thp_get_unmapped_area(mm, addr, length, 0, flags)
        if ret is None:
            ret = arch_get_unmapped_area_topdown(mm, addr, length, flags)
    else:
        # Generic, or shmem's which is generic when shmem THP is "never".
        ret = arch_get_unmapped_area_topdown(mm, addr, length, flags)
    if ret >= (1 << 64) - 4095:
        # IS_ERR_VALUE(): a MAP_FIXED address in the top 4095 bytes reads as an error code.
        code = (1 << 64) - ret
        raise kernel_error(code, "get_unmapped_area", "the address is an error value")
    if ret > TASK_SIZE - length:
        raise _no_memory("the range ends above the top of the address space")
    if ret & ~PAGE_MASK:
        raise kernel_error(errno.EINVAL, "get_unmapped_area", "address not page aligned")
    return ret
