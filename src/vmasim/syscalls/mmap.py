"""mmap(2): mm/mmap.c's do_mmap() and mm/vma.c's mmap_region()."""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.addr import page_align
from vmasim.core.errors import kernel_error
from vmasim.core.fault import populate_range
from vmasim.core.flags import (
    VM_ACCOUNT,
    VM_DONTDUMP,
    VM_DROPPABLE,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_HUGETLB,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_MERGEABLE,
    VM_NOHUGEPAGE,
    VM_NORESERVE,
    VM_SHARED,
    VM_SOFTDIRTY,
    VM_SPECIAL,
    VM_SYNC,
    VM_WIPEONFORK,
    VM_WRITE,
    ksm_compatible,
)
from vmasim.core.merge import VmaMergeStruct, vma_merge_new_range
from vmasim.core.mm import MmStruct
from vmasim.core.placement import get_unmapped_area
from vmasim.core.prot import calc_vm_prot_bits, mmap_pkey
from vmasim.core.vma import File, Inode, Vma
from vmasim.syscalls.mlock import can_do_mlock
from vmasim.syscalls.munmap import accounted_pages, complete_munmap, gather_munmap_vmas

CALL = "mmap"
#: File systems whose mmap hook refuses MAP_SYNC (VM_SYNC) on files without DAX.
SYNC_CHECKING_FS = frozenset({"ext4", "xfs"})


def calc_vm_flag_bits(flags: int) -> int:
    """Like calc_vm_flag_bits(): MAP_GROWSDOWN, MAP_LOCKED, MAP_SYNC and MAP_STACK (which asks for VM_NOHUGEPAGE)."""
    vm_flags = 0
    if flags & C.MAP_GROWSDOWN:
        vm_flags |= VM_GROWSDOWN
    if flags & C.MAP_LOCKED:
        vm_flags |= VM_LOCKED
    if flags & C.MAP_SYNC:
        # Translated before MAP_SHARED drops the flag, so even anonymous memory shows 'sf'.
        vm_flags |= VM_SYNC
    if flags & C.MAP_STACK:
        vm_flags |= VM_NOHUGEPAGE
    return vm_flags


def round_hint_to_min(mm: MmStruct, hint: int) -> int:
    """Like round_hint_to_min(): a non-zero hint below mmap_min_addr is raised to it."""
    hint &= ~(C.PAGE_SIZE - 1)
    if hint and hint < mm.mmap_min_addr:
        return page_align(mm.mmap_min_addr)
    return hint


def do_mmap(
    mm: MmStruct,
    file: File | None,
    addr: int,
    length: int,
    prot: int,
    flags: int,
    pgoff: int,
) -> tuple[int, bool]:
    """Like do_mmap(): validate, pick the address, build vm_flags and map.  Returns (address, populate)."""
    if not length:
        raise kernel_error(errno.EINVAL, CALL, "zero length")
    if flags & C.MAP_FIXED_NOREPLACE:
        flags |= C.MAP_FIXED
    if not flags & C.MAP_FIXED:
        addr = round_hint_to_min(mm, addr)
    length = page_align(length)
    if not length:
        raise kernel_error(errno.ENOMEM, CALL, "length overflows")
    # The kernel's "offset + length overflows" check (EOVERFLOW) cannot fire on a 64-bit kernel: the
    # offset is at most 2**52 pages and the length less than that, so it is left out.
    if mm.map_count > mm.max_map_count:
        raise kernel_error(errno.ENOMEM, CALL, "map_count above max_map_count")

    vm_flags = calc_vm_prot_bits(prot, mmap_pkey(mm, prot)) | calc_vm_flag_bits(flags) | mm.def_flags
    vm_flags |= VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC

    addr = get_unmapped_area(mm, file, addr, length, pgoff, flags)

    if flags & C.MAP_FIXED_NOREPLACE and mm.vmas.find_intersection(addr, addr + length) is not None:
        raise kernel_error(errno.EEXIST, CALL, "MAP_FIXED_NOREPLACE over an existing mapping")
    if flags & C.MAP_LOCKED and not can_do_mlock(mm):
        raise kernel_error(errno.EPERM, CALL, "RLIMIT_MEMLOCK is 0")
    if not mm.mlock_future_ok(vm_flags, length):
        raise kernel_error(errno.EAGAIN, CALL, "locking it would exceed RLIMIT_MEMLOCK")

    map_type = flags & C.MAP_TYPE
    if file is not None:
        # file_mmap_ok(): regular inodes (files, memfds) end at MAX_LFS_FILESIZE; the userfaultfd's
        # anonymous inode is not one, and only ULONG_MAX limits it.
        max_size = (1 << 64) - 1 if file.inode.kind == "uffd" else (1 << 63) - 1
        if length > max_size or pgoff > (max_size - length) >> C.PAGE_SHIFT:
            raise kernel_error(errno.EOVERFLOW, CALL, "beyond the largest file offset")
        if map_type in (C.MAP_SHARED, C.MAP_SHARED_VALIDATE):
            if map_type == C.MAP_SHARED:
                flags &= C.LEGACY_MAP_MASK
            if flags & ~C.LEGACY_MAP_MASK:
                raise kernel_error(errno.EOPNOTSUPP, CALL, "flags MAP_SHARED_VALIDATE does not know")
            if prot & C.PROT_WRITE and not file.writable:
                raise kernel_error(errno.EACCES, CALL, "shared writable mapping of a file not open for writing")
            vm_flags |= VM_SHARED | VM_MAYSHARE
            if not file.writable:
                vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
        elif map_type != C.MAP_PRIVATE:
            raise kernel_error(errno.EINVAL, CALL, "no valid mapping type")
        if not file.readable:
            raise kernel_error(errno.EACCES, CALL, "file not open for reading")
        if file.inode.kind == "uffd":
            # Anonymous inodes live on a noexec mount (path_noexec()), and have no mmap operation.
            if vm_flags & VM_EXEC:
                raise kernel_error(errno.EPERM, CALL, "executable mapping of a file on a noexec mount")
            raise kernel_error(errno.ENODEV, CALL, "this file cannot be mapped")
        if vm_flags & VM_GROWSDOWN:
            raise kernel_error(errno.EINVAL, CALL, "MAP_GROWSDOWN on a file")
    else:
        if map_type == C.MAP_SHARED:
            if vm_flags & VM_GROWSDOWN:
                raise kernel_error(errno.EINVAL, CALL, "MAP_GROWSDOWN on shared memory")
            pgoff = 0
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif map_type in (C.MAP_PRIVATE, C.MAP_DROPPABLE):
            if map_type == C.MAP_DROPPABLE:
                if flags & (C.MAP_LOCKED | C.MAP_HUGETLB):
                    raise kernel_error(errno.EINVAL, CALL, "MAP_DROPPABLE cannot be locked or huge")
                if vm_flags & VM_GROWSDOWN:
                    raise kernel_error(errno.EINVAL, CALL, "MAP_DROPPABLE cannot grow down")
                vm_flags |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP
            pgoff = addr >> C.PAGE_SHIFT
        else:
            raise kernel_error(errno.EINVAL, CALL, "no valid mapping type")

    if flags & C.MAP_NORESERVE:
        vm_flags |= VM_NORESERVE

    addr = mmap_region(mm, file, addr, length, vm_flags, pgoff)
    populate = bool(vm_flags & VM_LOCKED) or flags & (C.MAP_POPULATE | C.MAP_NONBLOCK) == C.MAP_POPULATE
    return addr, populate


def mmap_region(mm: MmStruct, file: File | None, addr: int, length: int, vm_flags: int, pgoff: int) -> int:
    """Like mm/vma.c's __mmap_region(): unmap what is there, then merge with a neighbour or add a VMA."""
    end = addr + length
    first = mm.vmas.find_intersection(addr, end)
    detached = gather_munmap_vmas(mm, first, addr, end, CALL) if first is not None else []
    prev = mm.vmas.prev_of_addr(addr)
    nxt = mm.find_vma(end)

    if not mm.may_expand_vm(vm_flags, (length >> C.PAGE_SHIFT) - sum(v.pages for v in detached)):
        raise kernel_error(errno.ENOMEM, CALL, "RLIMIT_AS or RLIMIT_DATA would be exceeded")
    # accountable_mapping(): private writable memory is charged, unless NORESERVE.
    if vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE) == VM_WRITE:
        charged = (length >> C.PAGE_SHIFT) - accounted_pages(detached)
        if not mm.vm_enough_memory(charged):
            raise kernel_error(errno.ENOMEM, CALL, "not enough memory to commit")
        vm_flags |= VM_ACCOUNT
    if mm.ksm_merge_any and ksm_compatible(vm_flags):
        # check_ksm_early: anonymous and shmem mappings get VM_MERGEABLE before the merge attempt.
        vm_flags |= VM_MERGEABLE

    complete_munmap(mm, detached)
    if file is not None and vm_flags & VM_SYNC and file.inode.kind == "file" and file.inode.fs in SYNC_CHECKING_FS:
        # ext4's and xfs's mmap hooks refuse VM_SYNC without DAX (daxdev_mapping_supported()), once the
        # range is already unmapped: the hole stays.
        raise kernel_error(errno.EOPNOTSUPP, CALL, "MAP_SYNC on a file system without DAX")
    # shmem_zero_setup() -> shmem_acct_size(): the object behind shared anonymous memory is charged
    # when it is made.  By then what the range held is gone (vms_abort_munmap_vmas() cannot put it
    # back once the page tables are cleared): a refusal leaves a hole.
    shmem_object = file is None and vm_flags & (VM_SHARED | VM_NORESERVE) == VM_SHARED
    if shmem_object and not mm.vm_enough_memory(length >> C.PAGE_SHIFT):
        raise kernel_error(errno.ENOMEM, CALL, "not enough memory for the shared memory object")
    vma: Vma | None = None
    if prev is not None or nxt is not None:
        vmg = VmaMergeStruct.for_mmap(mm, addr, end, pgoff, vm_flags, file, prev, nxt)
        vma = vma_merge_new_range(vmg)
    if vma is None:
        if file is None and vm_flags & VM_SHARED:
            # shmem_zero_setup(): shared anonymous memory is a hidden shmem file of its own.
            file = File(Inode("shmem", "/dev/zero (deleted)", length))
        vma = Vma(addr, end, pgoff, vm_flags, file=file)
        mm.link(vma)
    if vma.vm_flags & VM_LOCKED and vma.vm_flags & (VM_SPECIAL | VM_HUGETLB | VM_DROPPABLE):
        # __mmap_complete(): memory that cannot be locked drops the lock flags (droppable too, on the host).
        mm.set_flags(vma, vma.vm_flags & ~VM_LOCKED_MASK)
    if mm.target.kernel.soft_dirty:
        # __mmap_complete(): a new or expanded VMA is always soft-dirty.
        mm.set_flags(vma, vma.vm_flags | VM_SOFTDIRTY)
    return addr


def hugetlb_anonymous(mm: MmStruct, addr: int, length: int, flags: int) -> None:
    """Like ksys_mmap_pgoff() and do_mmap() for anonymous MAP_HUGETLB; always raises, as hugetlb is not modelled.

    Without the huge page size asked for (MAP_HUGE_* bits, or the default)
    the call is EINVAL.  Otherwise the mapping is one of a hugetlbfs file
    whose length is rounded up to the huge page size, and do_mmap()'s checks
    come in their order (a fixed address must be aligned to the size); the
    model takes no huge pages to be reserved, so the mapping fails with
    ENOMEM when hugetlbfs's mmap tries to reserve them: by then a fixed
    mapping has unmapped its range, which stays empty.
    """
    sizes = mm.target.memory.hugetlb_sizes
    log = (flags >> C.MAP_HUGE_SHIFT) & C.MAP_HUGE_MASK
    size = (1 << log) if log else (sizes[0] if sizes else 0)
    if size not in sizes:
        raise kernel_error(errno.EINVAL, CALL, "no such huge page size")
    if not length:
        raise kernel_error(errno.EINVAL, CALL, "zero length")
    if mm.map_count > mm.max_map_count:
        raise kernel_error(errno.ENOMEM, CALL, "map_count above max_map_count")
    fixed = flags & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE)
    if fixed and addr % size:
        raise kernel_error(errno.EINVAL, CALL, "fixed address not aligned to the huge page size")
    end = addr + -(-length // size) * size
    first = mm.vmas.find_intersection(addr, end) if fixed and end <= mm.task_size else None
    if first is not None and flags & C.MAP_FIXED_NOREPLACE:
        raise kernel_error(errno.EEXIST, CALL, "MAP_FIXED_NOREPLACE over an existing mapping")
    if flags & C.MAP_LOCKED and not can_do_mlock(mm):
        raise kernel_error(errno.EPERM, CALL, "RLIMIT_MEMLOCK is 0")
    map_type = flags & C.MAP_TYPE
    if map_type == C.MAP_SHARED_VALIDATE and flags & ~C.LEGACY_MAP_MASK:
        raise kernel_error(errno.EOPNOTSUPP, CALL, "flags MAP_SHARED_VALIDATE does not know")
    if map_type not in (C.MAP_SHARED, C.MAP_SHARED_VALIDATE, C.MAP_PRIVATE):
        raise kernel_error(errno.EINVAL, CALL, "no valid mapping type")
    if flags & C.MAP_GROWSDOWN:
        raise kernel_error(errno.EINVAL, CALL, "MAP_GROWSDOWN on a file")
    if first is not None:
        complete_munmap(mm, gather_munmap_vmas(mm, first, addr, end, CALL))
    raise kernel_error(errno.ENOMEM, CALL, "no huge pages reserved (hugetlb mappings are not modelled)")


def sys_mmap(
    mm: MmStruct, addr: int, length: int, prot: int, flags: int, file: File | None, offset: int
) -> int:
    """mmap(2) as x86_64's sys_mmap(): the offset must be page aligned; anonymous mappings ignore ``file``."""
    if offset & (C.PAGE_SIZE - 1):
        raise kernel_error(errno.EINVAL, CALL, "offset not page aligned")
    if flags & C.MAP_ANONYMOUS:
        file = None
        if flags & C.MAP_HUGETLB:
            hugetlb_anonymous(mm, addr, length, flags)
    elif file is None:
        raise kernel_error(errno.EBADF, CALL, "not anonymous and no file descriptor")
    elif flags & C.MAP_HUGETLB:
        raise kernel_error(errno.EINVAL, CALL, "MAP_HUGETLB on a file that is not on hugetlbfs")
    ret, populate = do_mmap(mm, file, addr, length, prot, flags, offset >> C.PAGE_SHIFT)
    if populate:
        populate_range(mm, ret, ret + page_align(length))
    return ret
