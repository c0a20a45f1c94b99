"""mremap(2): mm/mremap.c (6.17+ shape: struct vma_remap_struct, multi-VMA moves) and mm/vma.c's copy_vma()."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from vmasim import constants as C
from vmasim.core.addr import page_align
from vmasim.core.errors import kernel_error
from vmasim.core.fault import populate_range
from vmasim.core.flags import (
    VM_ACCOUNT,
    VM_DONTEXPAND,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_MAYSHARE,
    VM_PFNMAP,
    VM_SEALED,
    VM_SHARED,
)
from vmasim.core.merge import VmaMergeStruct, vma_merge_extend, vma_merge_new_range
from vmasim.core.mm import MmStruct
from vmasim.core.placement import get_unmapped_area
from vmasim.core.vma import Vma
from vmasim.syscalls.munmap import do_vmi_munmap
from vmasim.syscalls.shm import is_shm
from vmasim.syscalls.userfaultfd import mremap_userfaultfd_prep

CALL = "mremap"
NO_RESIZE, SHRINK, EXPAND = "no_resize", "shrink", "expand"


@dataclass(slots=True)
class VmaRemap:
    """One mremap request as it is worked through (struct vma_remap_struct)."""

    addr: int
    old_len: int
    new_len: int
    flags: int
    new_addr: int
    vma: Vma | None = None
    delta: int = 0
    remap_type: str = NO_RESIZE
    populate_expand: bool = False

    @property
    def implies_new_addr(self) -> bool:
        """MREMAP_FIXED or MREMAP_DONTUNMAP: the caller names the destination."""
        return bool(self.flags & (C.MREMAP_FIXED | C.MREMAP_DONTUNMAP))

    @property
    def move_only(self) -> bool:
        """A MREMAP_FIXED move without resizing: may span several VMAs (6.17+)."""
        return bool(self.flags & C.MREMAP_FIXED) and self.old_len == self.new_len


def _err(code: int, detail: str) -> OSError:
    return kernel_error(code, CALL, detail)


def check_mremap_params(mm: MmStruct, r: VmaRemap) -> None:
    """Like check_mremap_params(): everything that can be checked before looking at VMAs."""
    if r.flags & ~(C.MREMAP_FIXED | C.MREMAP_MAYMOVE | C.MREMAP_DONTUNMAP):
        raise _err(errno.EINVAL, "unknown flags")
    if r.addr & (C.PAGE_SIZE - 1):
        raise _err(errno.EINVAL, "unaligned old address")
    if not r.new_len:
        raise _err(errno.EINVAL, "zero new length")
    if r.new_len > mm.task_size:
        raise _err(errno.EINVAL, "new length larger than the address space")
    if not r.implies_new_addr:
        return
    if r.new_addr > mm.task_size - r.new_len:
        raise _err(errno.EINVAL, "new range beyond the address space")
    if r.new_addr & (C.PAGE_SIZE - 1):
        raise _err(errno.EINVAL, "unaligned new address")
    if not r.flags & C.MREMAP_MAYMOVE:
        raise _err(errno.EINVAL, "MREMAP_FIXED and MREMAP_DONTUNMAP need MREMAP_MAYMOVE")
    if r.flags & C.MREMAP_DONTUNMAP and r.old_len != r.new_len:
        raise _err(errno.EINVAL, "MREMAP_DONTUNMAP cannot resize")
    if r.addr + r.old_len > r.new_addr and r.new_addr + r.new_len > r.addr:
        raise _err(errno.EINVAL, "old and new ranges overlap")
    # The worst case splits both ranges in three; keep well below the limit.
    if mm.map_count + 2 >= mm.max_map_count - 3:
        raise _err(errno.ENOMEM, "too close to max_map_count")


def check_prep_vma(mm: MmStruct, r: VmaRemap) -> None:
    """Like check_prep_vma(): the VMA at the old address may be remapped as asked."""
    vma = r.vma
    if vma is None:
        raise _err(errno.EFAULT, "no mapping at the old address")
    if vma.vm_flags & VM_SEALED:
        raise _err(errno.EPERM, "the VMA is sealed")
    r.delta = abs(r.new_len - r.old_len)
    r.remap_type = NO_RESIZE if not r.delta else SHRINK if r.old_len > r.new_len else EXPAND
    if not r.implies_new_addr:
        r.new_addr = r.addr
    if r.remap_type != EXPAND and not r.implies_new_addr:
        return
    old_len, new_len = r.old_len, r.new_len
    if not old_len and not vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        raise _err(errno.EINVAL, "a zero old length only duplicates shared mappings")
    if r.flags & C.MREMAP_DONTUNMAP and vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise _err(errno.EINVAL, "MREMAP_DONTUNMAP of a special mapping")
    if r.remap_type == SHRINK:
        old_len = new_len
    if old_len > vma.end - r.addr:
        raise _err(errno.EFAULT, "the old range runs past the end of its VMA")
    if new_len == old_len:
        return
    if vma.vm_flags & VM_LOCKED:
        r.populate_expand = True
    # The kernel's "file offset overflows" check (EINVAL) cannot fire on a 64-bit kernel: a pgoff below
    # 2**52 plus a length below TASK_SIZE never wraps, so it is left out.
    if vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise _err(errno.EFAULT, "the mapping cannot grow")
    if not mm.mlock_future_ok(vma.vm_flags, r.delta):
        raise _err(errno.EAGAIN, "locking the growth would exceed RLIMIT_MEMLOCK")
    if not mm.may_expand_vm(vma.vm_flags, r.delta >> C.PAGE_SHIFT):
        raise _err(errno.ENOMEM, "RLIMIT_AS or RLIMIT_DATA would be exceeded")


def _charge(mm: MmStruct, r: VmaRemap) -> None:
    # vrm_calc_charge(): accounted memory is charged for what the call adds.
    assert r.vma is not None
    if not r.vma.vm_flags & VM_ACCOUNT:
        return
    pages = (r.new_len if r.flags & C.MREMAP_DONTUNMAP else r.delta) >> C.PAGE_SHIFT
    if not mm.vm_enough_memory(pages):
        raise _err(errno.ENOMEM, "not enough memory to commit")


def _expandable(mm: MmStruct, vma: Vma, delta: int) -> bool:
    # vma_expandable(): the space right after the VMA is free (walls count as taken).
    end = vma.end + delta
    if end > mm.task_size or end > mm.mmap_limit:
        return False
    return mm.vmas.find_intersection(vma.end, end) is None


def copy_vma(mm: MmStruct, vma: Vma, addr: int, length: int, pgoff: int) -> Vma:
    """Like copy_vma(): the destination VMA, merged into a neighbour when possible.

    An unfaulted anonymous source is re-based (pgoff from the new address) so
    that it can merge where it lands; a faulted one keeps its pgoff.
    """
    if vma.is_anonymous and vma.anon_vma is None:
        pgoff = addr >> C.PAGE_SHIFT
    vmg = VmaMergeStruct.for_vma(mm, None, vma, addr, addr + length)
    vmg.pgoff = pgoff
    vmg.prev = mm.vmas.prev_of_addr(addr)
    vmg.next = mm.find_vma(addr + length)
    # vma_merge_copied_range(): the source is remembered, not modified.
    vmg.copied_from = vma
    vmg.middle = None
    merged = vma_merge_new_range(vmg)
    if merged is not None:
        return merged
    new = vma.copy()
    new.start, new.end, new.pgoff = addr, addr + length, pgoff
    mm.link(new)
    return new


def move_vma(mm: MmStruct, r: VmaRemap) -> int:
    """Like move_vma(): copy the VMA to ``new_addr``, then unmap the source (or empty it, for DONTUNMAP)."""
    vma = r.vma
    assert vma is not None
    if mm.map_count >= mm.max_map_count - 3:
        raise _err(errno.ENOMEM, "too close to max_map_count")
    _charge(mm, r)
    pgoff = vma.pgoff + ((r.addr - vma.start) >> C.PAGE_SHIFT)
    vma_start = vma.start
    new_vma = copy_vma(mm, vma, r.new_addr, r.new_len, pgoff)
    if vma_start >= new_vma.start and vma_start < new_vma.end:
        vma = new_vma  # an unfaulted source merged with its own copy
    mm.move_page_tables(r.addr, r.old_len, r.new_addr)
    mremap_userfaultfd_prep(mm, new_vma)
    if r.flags & C.MREMAP_DONTUNMAP:
        # The source stays mapped but empty; on the host it keeps VM_ACCOUNT.
        mm.set_flags(vma, vma.vm_flags & ~VM_LOCKED_MASK)
        if new_vma is not vma and r.addr == vma.start and r.addr + r.old_len == vma.end:
            vma.anon_vma = None
            vma.fork_child = False
        return r.new_addr
    _unmap_source(mm, vma, r.addr, r.old_len)
    return r.new_addr


def _unmap_source(mm: MmStruct, vma: Vma, addr: int, length: int) -> None:
    # unmap_source_vma(): VM_ACCOUNT is dropped while unmapping and given back to what remains.
    accountable = bool(vma.vm_flags & VM_ACCOUNT)
    vm_start, vm_end = vma.start, vma.end
    if accountable:
        mm.set_flags(vma, vma.vm_flags & ~VM_ACCOUNT)
    try:
        do_vmi_munmap(mm, addr, length, CALL)
    except OSError:
        return
    if accountable:
        # What is left of the source on either side keeps the account.
        if vm_start < addr:
            prev = mm.vmas.prev_of_addr(addr)
            assert prev is not None and prev.end == addr
            mm.set_flags(prev, prev.vm_flags | VM_ACCOUNT)
        if vm_end > addr + length:
            nxt = mm.find_vma(addr + length)
            assert nxt is not None and nxt.start == addr + length
            mm.set_flags(nxt, nxt.vm_flags | VM_ACCOUNT)


def _set_new_addr(mm: MmStruct, r: VmaRemap) -> None:
    # vrm_set_new_addr(): place the destination like a mapping of the same object.
    vma = r.vma
    assert vma is not None
    pgoff = vma.pgoff + ((r.addr - vma.start) >> C.PAGE_SHIFT)
    map_flags = (C.MAP_FIXED if r.flags & C.MREMAP_FIXED else 0) | (C.MAP_SHARED if vma.vm_flags & VM_MAYSHARE else 0)
    hint = r.new_addr if r.implies_new_addr else 0
    r.new_addr = get_unmapped_area(mm, vma.file, hint, r.new_len, pgoff, map_flags)


def mremap_to(mm: MmStruct, r: VmaRemap) -> int:
    """Like mremap_to(): a move to a caller-chosen (FIXED) or hint-less (DONTUNMAP) destination."""
    # Unmapping the destination removes the source only when a zero old length let the two ranges
    # "not overlap" (check_mremap_params()); a shrink keeps the first new_len bytes.
    if r.flags & C.MREMAP_FIXED:
        do_vmi_munmap(mm, r.new_addr, r.new_len, CALL)
        r.vma = mm.vmas.lookup(r.addr)
        if r.vma is None:
            raise _err(errno.EFAULT, "the old mapping went away")
    if r.remap_type == SHRINK:
        do_vmi_munmap(mm, r.addr + r.new_len, r.delta, CALL)
        r.vma = mm.vmas.lookup(r.addr)
        assert r.vma is not None
        r.old_len = r.new_len
    _set_new_addr(mm, r)
    return move_vma(mm, r)


def mremap_at(mm: MmStruct, r: VmaRemap) -> int:
    """Like mremap_at(): resize in place when possible, else move (with MREMAP_MAYMOVE)."""
    if r.remap_type == NO_RESIZE:
        return r.addr
    if r.remap_type == SHRINK:
        do_vmi_munmap(mm, r.addr + r.new_len, r.delta, CALL)
        return r.addr
    vma = r.vma
    assert vma is not None
    if vma.end - r.addr == r.old_len and _expandable(mm, vma, r.delta):
        _charge(mm, r)
        # The VMA itself is the proposal's prev: extending it always succeeds.
        extended = vma_merge_extend(mm, vma, r.delta)
        assert extended is not None
        return r.addr
    if not r.flags & C.MREMAP_MAYMOVE:
        raise _err(errno.ENOMEM, "no room to grow in place and MREMAP_MAYMOVE not given")
    _set_new_addr(mm, r)
    return move_vma(mm, r)


def vma_multi_allowed(vma: Vma) -> bool:
    """Like vma_multi_allowed(): whether ``vma`` may move as one of several in a move-only mremap.

    Not a userfaultfd-armed VMA (its notification would drop the lock), nor
    the mapping of a file whose file_operations place mappings themselves
    (which might not obey MREMAP_FIXED) unless it is shmem: of the files the
    model knows, a SysV segment's (shm_get_unmapped_area()).
    """
    return vma.uffd_ctx is None and not is_shm(vma)


def remap_move(mm: MmStruct, r: VmaRemap) -> int:
    """Like remap_move(): move every VMA in the old range, keeping the gaps between them."""
    start, end = r.addr, r.addr + r.old_len
    target = r.new_addr
    result = -1
    seen = False
    last_end = 0
    cursor = start
    # Like the kernel's VMA iterator, the walk goes on from where the last VMA it found ended (a
    # MREMAP_DONTUNMAP source stays mapped behind it), so every VMA of the range is visited once.
    while cursor < end:
        vma = mm.vmas.find_intersection(cursor, end)
        if vma is None:
            break
        if not seen and start < vma.start:
            raise _err(errno.EFAULT, "the range starts in a hole")
        addr = max(vma.start, start)
        length = min(end, vma.end) - addr
        offset = vma.start - last_end if seen else 0
        last_end = vma.end
        piece = VmaRemap(addr, length, length, r.flags, target + offset, vma=vma)
        if not vma_multi_allowed(vma) and (seen or vma.end < end):
            # Such a VMA moves only alone: neither after another one nor with more of the range after it
            # (a VMA or a gap).
            raise _err(errno.EFAULT, "a userfaultfd-armed or SysV shm VMA cannot be moved with others")
        check_prep_vma(mm, piece)
        moved = mremap_to(mm, piece)
        if not seen:
            result = moved
        seen = True
        target = moved + piece.new_len
        cursor = last_end
    if not seen:
        raise _err(errno.EFAULT, "nothing mapped at the old address")
    return result


def sys_mremap(mm: MmStruct, addr: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
    """mremap(2): shrink, grow in place, or move; returns the (possibly new) address."""
    r = VmaRemap(addr, page_align(old_len), page_align(new_len), flags, new_addr)
    check_mremap_params(mm, r)
    if r.move_only and mm.target.kernel.multi_vma_mremap:
        return remap_move(mm, r)
    r.vma = mm.vmas.lookup(r.addr)
    check_prep_vma(mm, r)
    res = mremap_to(mm, r) if r.implies_new_addr else mremap_at(mm, r)
    if r.populate_expand:
        populate_range(mm, r.new_addr + r.old_len, r.new_addr + r.old_len + r.delta)
    return res
