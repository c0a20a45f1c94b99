"""Choosing an address for a mapping: __get_unmapped_area() and x86_64's top-down allocator.

Everything from ``mm.mmap_limit`` (the top of the mmap area: the vDSO, the
stack) up to the 47-bit map window counts as occupied, so a hint-less mapping
lands top-down from there, or from the highest VMA below it.  The store finds
the highest gap that fits in O(log n)
(:meth:`~vmasim.core.store.VmaStore.highest_gap`, which tracks the largest gap
per block as the maple tree does per node), however many small gaps lie above
it.  Which allocator a mapping uses depends on its object, as in the kernel:
regular files on ext2/ext4/xfs/erofs align to huge pages
(thp_get_unmapped_area()), shmem follows the target's shmem THP settings
(shmem_get_unmapped_area()), anonymous private mappings of whole 2 MiB
multiples are THP aligned.
"""

from __future__ import annotations

import errno

from vmasim.constants import MAP_32BIT, MAP_FIXED, MAP_SHARED, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE
from vmasim.core.errors import kernel_error
from vmasim.core.fault import vm_start_gap
from vmasim.core.flags import VM_STARTGAP_FLAGS
from vmasim.core.mm import MmStruct
from vmasim.core.vma import File

PAGE_MASK = ~(PAGE_SIZE - 1)
#: File systems whose file_operations use thp_get_unmapped_area().
THP_ALIGNED_FS = frozenset({"ext2", "ext4", "xfs", "erofs"})


def _no_memory(detail: str) -> OSError:
    return kernel_error(errno.ENOMEM, "get_unmapped_area", detail)


def unmapped_area_topdown(
    mm: MmStruct, length: int, align_mask: int = 0, align_offset: int = 0, *, high: int | None = None
) -> int:
    """Like mm/vma.c's unmapped_area_topdown(): the top of the highest gap that fits, below mmap_base."""
    need = length + align_mask
    low = max(PAGE_SIZE, mm.mmap_min_addr)
    high = min(mm.mmap_base, mm.mmap_limit) if high is None else high
    while True:
        found = mm.vmas.highest_gap(low, high, need, mm.mmap_limit)
        if found is None:
            raise _no_memory("no gap large enough")
        gap_end, above_start = found
        gap = gap_end - length
        gap -= (gap - align_offset) & align_mask
        above = mm.vmas.lookup(above_start) if above_start < mm.mmap_limit else None
        if above is not None and above.vm_flags & VM_STARTGAP_FLAGS and vm_start_gap(mm, above) < gap_end:
            # Keep the stack guard gap below a VM_GROWSDOWN neighbour and search again.
            high = vm_start_gap(mm, above)
            if high < low:
                raise _no_memory("no gap large enough")
            continue
        return gap


def _hint_fits(mm: MmStruct, addr: int, length: int) -> bool:
    # mmap_address_hint_valid(): inside the address space and not straddling the 47-bit window's top.
    if mm.task_size - length < addr:
        return False
    if (addr > mm.map_window) != (addr + length > mm.map_window):
        return False
    if addr < mm.map_window and addr + length > mm.mmap_limit:
        return False
    vma = mm.find_vma(addr)
    return vma is None or addr + length <= vm_start_gap(mm, vma)


#: Where x86's find_start_end() confines MAP_32BIT mappings: the second gigabyte.
MAP_32BIT_START, MAP_32BIT_END = 0x40000000, 0x80000000


def unmapped_area(mm: MmStruct, length: int, low: int, high: int) -> int:
    """Like mm/vma.c's unmapped_area(): the lowest gap in ``[low, high)`` that holds ``length`` bytes.

    One step per VMA passed over (the VMAs of ``[low, high)`` only).
    """
    cursor = max(low, mm.mmap_min_addr)
    while cursor + length <= high:
        above = mm.find_vma(cursor)
        if above is None or vm_start_gap(mm, above) >= cursor + length:
            return cursor
        cursor = max(cursor, above.end)
    raise _no_memory("no gap large enough")


def arch_get_unmapped_area(mm: MmStruct, addr: int, length: int, flags: int) -> int:
    """Like x86's bottom-up arch_get_unmapped_area(), which MAP_32BIT mappings use: a hint that fits below
    2 GiB, else the lowest gap of the second gigabyte."""
    begin, end = MAP_32BIT_START, MAP_32BIT_END
    if length > end:
        raise _no_memory("length larger than the 32-bit area")
    if addr:
        addr = (addr + PAGE_SIZE - 1) & PAGE_MASK
        vma = mm.find_vma(addr)
        if end - length >= addr and (vma is None or addr + length <= vm_start_gap(mm, vma)):
            return addr
    return unmapped_area(mm, length, begin, end)


def arch_get_unmapped_area_topdown(mm: MmStruct, addr: int, length: int, flags: int) -> int:
    """Like x86's arch_get_unmapped_area_topdown(): MAP_FIXED as given, else a free hint, else a search."""
    if length > mm.task_size:
        raise _no_memory("length larger than the address space")
    if flags & MAP_FIXED:
        return addr
    if flags & MAP_32BIT:
        # The legacy bottom-up allocator, in the second gigabyte.
        return arch_get_unmapped_area(mm, addr, length, flags)
    if addr:
        addr &= PAGE_MASK
        if _hint_fits(mm, addr, length):
            return addr
    # A hint above the 47-bit window opens the whole (5-level) space; nothing is mapped there
    # unless the program put it there, so the search starts at its top.
    if addr > mm.map_window:
        return unmapped_area_topdown(mm, length, high=mm.task_size)
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


def _shmem_sb_huge(mm: MmStruct, file: File | None) -> str:
    # SHMEM_SB(sb)->huge: the internal mount (memfd, shared anonymous memory) follows the global
    # shmem_enabled setting; a tmpfs mount has its own huge= option.
    if file is not None and file.inode.fs == "tmpfs":
        return mm.target.files.tmpfs_huge
    return mm.target.memory.thp_shmem


def shmem_get_unmapped_area(mm: MmStruct, file: File | None, uaddr: int, length: int, pgoff: int, flags: int) -> int:
    """Like mm/shmem.c's shmem_get_unmapped_area(): the generic address, moved to a huge-page boundary
    when the shmem THP settings allow huge pages for the object."""
    addr = arch_get_unmapped_area_topdown(mm, uaddr, length, flags)
    if addr & ~PAGE_MASK or addr > mm.task_size - length:
        return addr
    mode = mm.target.memory.thp_shmem
    if mode == "deny" or flags & MAP_FIXED or uaddr == addr:
        return addr
    hpage_size = PMD_SIZE
    if mode != "force":
        order = 0
        if file is None:
            # Shared anonymous memory: the largest order the per-size controls allow.
            orders = mm.target.memory.shmem_mthp_orders
            if orders:
                order = orders.bit_length() - 1
                hpage_size = PAGE_SIZE << order
        if _shmem_sb_huge(mm, file) == "never" and not order:
            return addr
    if length < hpage_size:
        return addr
    offset = (pgoff << PAGE_SHIFT) & (hpage_size - 1)
    if offset and offset + length < 2 * hpage_size:
        return addr
    if addr & (hpage_size - 1) == offset:
        return addr
    inflated_len = length + hpage_size - PAGE_SIZE
    if inflated_len > mm.task_size:
        return addr
    try:
        inflated_addr = arch_get_unmapped_area_topdown(mm, uaddr, inflated_len, flags)
    except OSError:
        return addr
    inflated_offset = inflated_addr & (hpage_size - 1)
    inflated_addr += offset - inflated_offset
    if inflated_offset > offset:
        inflated_addr += hpage_size
    if inflated_addr > mm.task_size - length:
        return addr
    return inflated_addr


def get_unmapped_area(mm: MmStruct, file: File | None, addr: int, length: int, pgoff: int, flags: int) -> int:
    """Like __get_unmapped_area(): pick (or check) the address of a new mapping; raises ENOMEM or EINVAL."""
    if length > mm.task_size:
        raise _no_memory("length larger than the address space")
    if file is None:
        pgoff = 0
    if file is not None and file.inode.kind == "file" and file.inode.fs in THP_ALIGNED_FS:
        # These file systems use thp_get_unmapped_area() for every length.
        ret = _thp_get_unmapped_area(mm, addr, length, pgoff * PAGE_SIZE, flags)
        if ret is None:
            ret = arch_get_unmapped_area_topdown(mm, addr, length, flags)
    elif (file is not None and file.inode.is_shmem) or (file is None and flags & MAP_SHARED):
        ret = shmem_get_unmapped_area(mm, file, addr, length, pgoff, flags)
    elif file is None and not addr and length % PMD_SIZE == 0:
        # Anonymous private mappings of whole 2 MiB multiples, without a hint, are THP aligned.
        ret = _thp_get_unmapped_area(mm, addr, length, 0, flags)
        if ret is None:
            ret = arch_get_unmapped_area_topdown(mm, addr, length, flags)
    else:
        ret = arch_get_unmapped_area_topdown(mm, addr, length, flags)
    if ret >= (1 << 64) - 4095:
        # IS_ERR_VALUE(): a MAP_FIXED address in the top 4095 bytes reads as an error code.
        code = (1 << 64) - ret
        raise kernel_error(code, "get_unmapped_area", "the address is an error value")
    if ret > mm.task_size - length:
        raise _no_memory("the range ends above the top of the address space")
    if ret & ~PAGE_MASK:
        raise kernel_error(errno.EINVAL, "get_unmapped_area", "address not page aligned")
    if ret < mm.target.limits.mmap_min_addr and not mm.target.limits.privileged:
        # security_mmap_addr(): below the sysctl's mmap_min_addr only with CAP_SYS_RAWIO.
        raise kernel_error(errno.EPERM, "get_unmapped_area", "below mmap_min_addr")
    return ret
