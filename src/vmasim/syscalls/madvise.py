"""madvise(2): mm/madvise.c's do_madvise(), madvise_walk_vmas() and madvise_vma_behavior()."""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.addr import checked_range
from vmasim.core.errors import kernel_error
from vmasim.core.fault import anon_vma_prepare, fault_in
from vmasim.core.flags import (
    VM_DONTCOPY,
    VM_DONTDUMP,
    VM_DROPPABLE,
    VM_HUGEPAGE,
    VM_HUGETLB,
    VM_IO,
    VM_LOCKED,
    VM_MAYBE_GUARD,
    VM_MAYWRITE,
    VM_MERGEABLE,
    VM_NOHUGEPAGE,
    VM_PFNMAP,
    VM_RAND_READ,
    VM_READ,
    VM_SEALED,
    VM_SEQ_READ,
    VM_SHARED,
    VM_SPECIAL,
    VM_WIPEONFORK,
    VM_WRITE,
    ksm_compatible,
)
from vmasim.core.merge import vma_modify_flags
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.core.walk import Holes, walk_range
from vmasim.syscalls.shm import vma_is_shmem

CALL = "madvise"

VALID_ADVICE = frozenset(
    {
        C.MADV_NORMAL, C.MADV_RANDOM, C.MADV_SEQUENTIAL, C.MADV_WILLNEED, C.MADV_DONTNEED,
        C.MADV_FREE, C.MADV_REMOVE, C.MADV_DONTFORK, C.MADV_DOFORK, C.MADV_MERGEABLE,
        C.MADV_UNMERGEABLE, C.MADV_HUGEPAGE, C.MADV_NOHUGEPAGE, C.MADV_DONTDUMP, C.MADV_DODUMP,
        C.MADV_WIPEONFORK, C.MADV_KEEPONFORK, C.MADV_COLD, C.MADV_PAGEOUT, C.MADV_POPULATE_READ,
        C.MADV_POPULATE_WRITE, C.MADV_DONTNEED_LOCKED, C.MADV_COLLAPSE, C.MADV_HWPOISON,
        C.MADV_SOFT_OFFLINE, C.MADV_GUARD_INSTALL, C.MADV_GUARD_REMOVE,
    }
)
# Advice that throws data away, refused on sealed read-only anonymous memory (is_discard()).
DISCARD_ADVICE = frozenset(
    {C.MADV_FREE, C.MADV_DONTNEED, C.MADV_DONTNEED_LOCKED, C.MADV_REMOVE, C.MADV_DONTFORK,
     C.MADV_WIPEONFORK, C.MADV_GUARD_INSTALL}
)


def _error(code: int, detail: str) -> OSError:
    return kernel_error(code, CALL, detail)


def _can_madvise_modify(vma: Vma, advice: int) -> bool:
    # Like can_madvise_modify(): sealed private anonymous memory that cannot be written keeps its data.
    if not vma.vm_flags & VM_SEALED or advice not in DISCARD_ADVICE:
        return True
    if vma.file is not None:
        return True
    return bool(vma.vm_flags & VM_WRITE)


def _new_flags(vma: Vma, advice: int) -> int | None:
    """The flags a flag-changing advice asks for (None for advice that does not change flags)."""
    f = vma.vm_flags
    if advice == C.MADV_NORMAL:
        return f & ~(VM_RAND_READ | VM_SEQ_READ)
    if advice == C.MADV_SEQUENTIAL:
        return (f & ~VM_RAND_READ) | VM_SEQ_READ
    if advice == C.MADV_RANDOM:
        return (f & ~VM_SEQ_READ) | VM_RAND_READ
    if advice == C.MADV_DONTFORK:
        return f | VM_DONTCOPY
    if advice == C.MADV_DOFORK:
        if f & VM_IO:
            raise _error(errno.EINVAL, "MADV_DOFORK on a VM_IO mapping")
        return f & ~VM_DONTCOPY
    if advice == C.MADV_WIPEONFORK:
        if vma.file is not None or f & VM_SHARED:
            raise _error(errno.EINVAL, "MADV_WIPEONFORK works on private anonymous memory only")
        return f | VM_WIPEONFORK
    if advice == C.MADV_KEEPONFORK:
        if f & VM_DROPPABLE:
            raise _error(errno.EINVAL, "MADV_KEEPONFORK on droppable memory")
        return f & ~VM_WIPEONFORK
    if advice == C.MADV_DONTDUMP:
        return f | VM_DONTDUMP
    if advice == C.MADV_DODUMP:
        if (not f & VM_HUGETLB and f & VM_SPECIAL) or f & VM_DROPPABLE:
            raise _error(errno.EINVAL, "MADV_DODUMP on a special or droppable mapping")
        return f & ~VM_DONTDUMP
    if advice == C.MADV_MERGEABLE:
        # ksm_madvise(): silently ignored where KSM cannot work.
        if f & VM_MERGEABLE or not ksm_compatible(f):
            return f
        return f | VM_MERGEABLE
    if advice == C.MADV_UNMERGEABLE:
        return f & ~VM_MERGEABLE
    if advice == C.MADV_HUGEPAGE:
        return (f & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
    if advice == C.MADV_NOHUGEPAGE:
        return (f & ~VM_HUGEPAGE) | VM_NOHUGEPAGE
    return None


def _other_behaviour(mm: MmStruct, vma: Vma, start: int, end: int, advice: int) -> None:
    """Advice that leaves the VMA tree alone (apart from guard install's flag and anon_vma)."""
    f = vma.vm_flags
    if advice in (C.MADV_DONTNEED, C.MADV_FREE, C.MADV_DONTNEED_LOCKED):
        forbidden = VM_PFNMAP | (0 if advice == C.MADV_DONTNEED_LOCKED else VM_LOCKED)
        if f & forbidden:
            raise _error(errno.EINVAL, "cannot discard locked or PFN-mapped memory")
        if advice == C.MADV_FREE and not vma.is_anonymous:
            raise _error(errno.EINVAL, "MADV_FREE works on private anonymous memory only")
        if advice != C.MADV_FREE:
            mm.zap_range(start, end)  # MADV_FREE pages stay until reclaimed
    elif advice in (C.MADV_COLD, C.MADV_PAGEOUT):
        if f & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB):
            raise _error(errno.EINVAL, "cannot age locked, PFN-mapped or hugetlb memory")
    elif advice == C.MADV_REMOVE:
        if f & VM_LOCKED:
            raise _error(errno.EINVAL, "MADV_REMOVE on locked memory")
        if vma.file is None:
            raise _error(errno.EINVAL, "MADV_REMOVE needs a file mapping")
        if not (f & VM_SHARED and f & VM_MAYWRITE):
            raise _error(errno.EACCES, "MADV_REMOVE needs a shared writable mapping")
        mm.zap_range(start, end)
        first = vma.pgoff + ((start - vma.start) >> C.PAGE_SHIFT)
        vma.file.inode.cache.remove(first, first + ((end - start) >> C.PAGE_SHIFT))
    elif advice == C.MADV_COLLAPSE:
        madvise_collapse(mm, vma, start, end)
    elif advice == C.MADV_GUARD_INSTALL:
        if f & (VM_SPECIAL | VM_HUGETLB | VM_LOCKED):
            raise _error(errno.EINVAL, "guard regions need an ordinary unlocked mapping")
        if mm.target.kernel.maybe_guard_flag:
            # The sticky flag goes on the whole VMA, without a split.
            mm.set_flags(vma, f | VM_MAYBE_GUARD)
        if vma.is_anonymous:
            anon_vma_prepare(mm, vma)
        mm.zap_range(start, end)
        mm.guards.add(start, end)
    elif advice == C.MADV_GUARD_REMOVE:
        if f & (VM_SPECIAL | VM_HUGETLB):
            raise _error(errno.EINVAL, "guard regions need an ordinary mapping")
        mm.guards.remove(start, end)
    elif advice in (C.MADV_HWPOISON, C.MADV_SOFT_OFFLINE):
        raise _error(errno.EINVAL, "memory-failure injection is not modelled")


def _collapse_allowed(mm: MmStruct, vma: Vma) -> bool:
    # thp_vma_allowable_order(..., TVA_FORCED_COLLAPSE, PMD_ORDER): the sysfs THP modes do not count for
    # anonymous memory, only MADV_NOHUGEPAGE does; the highest PMD-aligned block below the end must fit
    # in the VMA, at a page offset a huge page can map (thp_vma_suitable_order()).
    f = vma.vm_flags
    if f & (VM_NOHUGEPAGE | VM_SPECIAL | VM_HUGETLB):
        return False
    huge = C.PMD_SIZE
    # In unsigned arithmetic, as the kernel computes it: below 2 MiB the block wraps past the top of the
    # address space and its end back to 0, so a VMA there passes.
    block = (vma.end - huge) & ~(huge - 1) & C.MASK64
    if block < vma.start or (block + huge) & C.MASK64 > vma.end:
        return False
    if ((vma.start >> C.PAGE_SHIFT) - vma.pgoff) % (huge >> C.PAGE_SHIFT):
        return False
    if vma.is_anonymous:
        return vma.anon_vma is not None  # no anon_vma, nothing was ever faulted: refused
    # shmem: allowed unless huge pages are denied (the per-size controls of anonymous shmem are not
    # modelled); regular files are refused (no CONFIG_READ_ONLY_THP_FOR_FS on the modelled hosts).
    return vma_is_shmem(vma) and mm.target.memory.thp_shmem != "deny"


def madvise_collapse(mm: MmStruct, vma: Vma, start: int, end: int) -> None:
    """Like mm/khugepaged.c's madvise_collapse(): make every whole PMD-sized block of ``[start, end)`` a huge page.

    A block collapses when it already has something to collapse: anonymous
    memory a page table (pages or the zero page) in a writable VMA, shmem a
    page of its object within the object's size.  Blocks that cannot are
    passed over, and the call fails with EINVAL after the others collapsed.
    A range with no whole block succeeds doing nothing, unless it starts in
    one block and ends in the one before (the kernel's count of blocks then
    wraps, so it is never met: EINVAL).
    """
    if not _collapse_allowed(mm, vma):
        raise _error(errno.EINVAL, "the VMA cannot hold a huge page")
    huge = C.PMD_SIZE
    first = (start + huge - 1) & ~(huge - 1)
    last = end & ~(huge - 1)
    if first > last:
        raise _error(errno.EINVAL, "a range inside one huge page block that does not start it")
    failed = False
    for addr in range(first, last, huge):
        if vma.is_anonymous:
            ok = bool(vma.vm_flags & VM_WRITE) and mm.ptes.first_in(addr, addr + huge) is not None
            if ok:
                mm.map_pages(addr, addr + huge, True)
        else:
            assert vma.file is not None
            inode = vma.file.inode
            index = vma.pgoff + ((addr - vma.start) >> C.PAGE_SHIFT)
            blocks = huge >> C.PAGE_SHIFT
            within = (index + blocks) << C.PAGE_SHIFT <= inode.size
            ok = within and inode.cache.first_in(index, index + blocks) is not None
            if ok:
                inode.cache.add(index, index + blocks)
        failed = failed or not ok
    if failed:
        raise _error(errno.EINVAL, "a huge page block had nothing to collapse")


def madvise_vma_behavior(mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int, advice: int) -> Vma:
    """Like madvise_vma_behavior(): apply advice to ``[start, end)`` of one VMA; the VMA covering it after."""
    if not _can_madvise_modify(vma, advice):
        raise _error(errno.EPERM, "discarding advice on sealed read-only anonymous memory")
    new_flags = _new_flags(vma, advice)
    if new_flags is None:
        _other_behaviour(mm, vma, start, end, advice)
        return vma
    if new_flags == vma.vm_flags:
        return vma
    try:
        return vma_modify_flags(mm, prev, vma, start, end, new_flags)
    except OSError as exc:
        # madvise() reports resource shortage, such as a refused split, as EAGAIN.
        if exc.errno == errno.ENOMEM:
            raise _error(errno.EAGAIN, "splitting the VMA was refused") from None
        raise


def _madvise_populate(mm: MmStruct, start: int, end: int, write: bool) -> None:
    # Like madvise_populate(): fault in page by page, stopping at holes (ENOMEM) and bad VMAs (EINVAL).
    cursor = start
    while cursor < end:
        vma = mm.vmas.lookup(cursor)
        if vma is None:
            raise _error(errno.ENOMEM, "hole in the range")
        f = vma.vm_flags
        if f & (VM_IO | VM_PFNMAP) or (write and not f & VM_WRITE) or (not write and not f & VM_READ):
            raise _error(errno.EINVAL, "mapping does not allow this population")
        stop = min(end, vma.end)
        if fault_in(mm, vma, cursor, stop, write):
            raise _error(errno.EFAULT, "a fault failed while populating")
        cursor = stop


def sys_madvise(mm: MmStruct, start: int, length: int, advice: int) -> int:
    """madvise(2): holes are skipped (ENOMEM at the end); an error from one VMA stops the walk."""
    if advice not in VALID_ADVICE:
        raise _error(errno.EINVAL, "unknown advice")
    end = checked_range(CALL, start, length)
    if end == start:
        return 0
    if advice in (C.MADV_POPULATE_READ, C.MADV_POPULATE_WRITE):
        _madvise_populate(mm, start, end, advice == C.MADV_POPULATE_WRITE)
        return 0
    # madvise_walk_vmas(): holes are skipped, and reported once every mapped part had its advice.
    walk_range(mm, start, end, lambda prev, vma, s, e: madvise_vma_behavior(mm, prev, vma, s, e, advice),
               holes=Holes.SKIP, call=CALL)
    return 0
