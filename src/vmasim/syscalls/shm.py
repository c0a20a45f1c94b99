"""System V shared memory: ipc/shm.c's shmget(2), shmat(2) and shmdt(2).

A segment (:class:`ShmSegment`) is a shmem file of the IPC namespace, named
``SYSV%08x`` after its key and numbered by its id (which is also the inode
number /proc shows).  Each shmat() maps it MAP_SHARED through a struct file of
its own (alloc_file_clone()), so two attachments never merge with each other,
and the mapping's vm_ops (shm_vm_ops) have a close hook.  shmdt() unmaps the
attachment starting at the address and the fragments of it that mprotect or
munmap left, as ksys_shmdt() finds them.
"""

from __future__ import annotations

import contextlib
import errno

from vmasim import constants as C
from vmasim.core.addr import page_align
from vmasim.core.errors import kernel_error
from vmasim.core.fault import populate_range
from vmasim.core.mm import MmStruct
from vmasim.core.vma import File, Inode, Vma
from vmasim.syscalls.mmap import do_mmap
from vmasim.syscalls.munmap import sys_munmap

SHM_RDONLY = 0o10000
SHM_RND = 0o20000
SHM_REMAP = 0o40000
SHM_EXEC = 0o100000
SHM_NORESERVE = 0o10000
SHM_HUGETLB = 0o4000
#: SHMLBA on x86: a page.
SHMLBA = C.PAGE_SIZE
#: The namespace's default shm_ctlmax (ULONG_MAX - 2**24), which a fresh IPC namespace has.
SHMMAX = C.MASK64 - (1 << 24)
#: MAX_LFS_FILESIZE: the largest shmem file.
MAX_LFS_FILESIZE = (1 << 63) - 1
#: The inode kind of a segment's shmem file.
SHM_KIND = "sysv"


class ShmSegment:
    """One segment (struct shmid_kernel): its id, key, size and the shmem inode behind every attachment."""

    __slots__ = ("id", "inode", "key", "size")

    def __init__(self, shmid: int, key: int, size: int, label: str) -> None:
        self.id = shmid
        self.key = key
        self.size = size
        self.inode = Inode(SHM_KIND, label, size, fs="shmem")


class IpcNamespace:
    """The segments of one IPC namespace, by id; ids are handed out from 0 like a fresh namespace's idr."""

    def __init__(self) -> None:
        self.segments: dict[int, ShmSegment] = {}
        self._next = 0

    def get(self, shmid: int) -> ShmSegment | None:
        """The segment with id ``shmid``, if there is one."""
        return self.segments.get(shmid)


def sys_shmget(mm: MmStruct, ns: IpcNamespace, size: int, flags: int, label: str) -> int:
    """shmget(IPC_PRIVATE, size, IPC_CREAT | flags) like newseg(); returns the new segment's id."""
    if flags & SHM_HUGETLB:
        raise kernel_error(errno.EINVAL, "shmget", "hugetlb segments are not modelled")
    if size < 1 or size > SHMMAX:
        raise kernel_error(errno.EINVAL, "shmget", "size outside SHMMIN..SHMMAX")
    # shmem_kernel_file_setup(): the size must fit a file, and its pages are committed unless
    # SHM_NORESERVE asks otherwise (and overcommit is not "never").
    if size > MAX_LFS_FILESIZE:
        raise kernel_error(errno.EINVAL, "shmget", "larger than a shmem file can be")
    noreserve = bool(flags & SHM_NORESERVE) and mm.target.limits.overcommit_memory != 2
    if not noreserve and not mm.vm_enough_memory(page_align(size) >> C.PAGE_SHIFT):
        raise kernel_error(errno.ENOMEM, "shmget", "not enough memory to commit")
    shmid = ns._next
    ns._next += 1
    ns.segments[shmid] = ShmSegment(shmid, 0, size, label)
    return shmid


def is_shm(vma: Vma) -> bool:
    """Whether ``vma`` maps a SysV segment (vm_ops == &shm_vm_ops): attached here, or imported from /proc."""
    if vma.file is None:
        return False
    inode = vma.file.inode
    return inode.kind == SHM_KIND or (vma.has_close and inode.label.startswith("/SYSV"))


def vma_is_shmem(vma: Vma) -> bool:
    """Like vma_is_shmem(): a mapping with shmem's vm_ops (memfd, tmpfs, shared anonymous memory).

    A SysV segment is shmem underneath, but its VMA has its own vm_ops, so it is not.
    """
    return vma.file is not None and vma.file.inode.is_shmem and not is_shm(vma)


def sys_shmat(mm: MmStruct, seg: ShmSegment | None, shmid: int, addr: int, flags: int) -> int:
    """shmat(2) like do_shmat(); returns the address of the new attachment."""
    if shmid < 0:
        raise kernel_error(errno.EINVAL, "shmat", "negative id")
    map_flags = C.MAP_SHARED
    if addr:
        if addr & (SHMLBA - 1):
            if not flags & SHM_RND:
                raise kernel_error(errno.EINVAL, "shmat", "address not aligned (and no SHM_RND)")
            addr &= ~(SHMLBA - 1)
            if not addr and flags & SHM_REMAP:
                raise kernel_error(errno.EINVAL, "shmat", "SHM_RND rounded the address to 0 with SHM_REMAP")
        map_flags |= C.MAP_FIXED
    elif flags & SHM_REMAP:
        raise kernel_error(errno.EINVAL, "shmat", "SHM_REMAP without an address")
    prot = C.PROT_READ if flags & SHM_RDONLY else C.PROT_READ | C.PROT_WRITE
    if flags & SHM_EXEC:
        prot |= C.PROT_EXEC
    if seg is None:
        raise kernel_error(errno.EINVAL, "shmat", "no such segment")
    file = File(seg.inode, readable=True, writable=not flags & SHM_RDONLY)
    size = seg.size
    if addr and not flags & SHM_REMAP:
        if addr + size >= 1 << 64:
            raise kernel_error(errno.EINVAL, "shmat", "the segment would wrap around")
        if mm.vmas.find_intersection(addr, addr + size) is not None:
            raise kernel_error(errno.EINVAL, "shmat", "the range is not free (and no SHM_REMAP)")
    ret, populate = do_mmap(mm, file, addr, size, prot, map_flags, 0)
    vma = mm.vmas.lookup(ret)
    if vma is not None and vma.file is file:
        vma.has_close = True  # shm_vm_ops: shm_close()
    if populate:
        populate_range(mm, ret, ret + page_align(size))
    return ret


def sys_shmdt(mm: MmStruct, addr: int) -> int:
    """shmdt(2) like ksys_shmdt(): the first shm VMA at or above ``addr`` whose offset matches starts
    the detach; then every fragment of the same attachment within the segment's size."""
    if addr & (C.PAGE_SIZE - 1):
        raise kernel_error(errno.EINVAL, "shmdt", "address not page aligned")
    found = False
    vma = mm.find_vma(addr)
    size = 0
    file: File | None = None
    while vma is not None:
        nxt = mm.vmas.next(vma)
        if is_shm(vma) and ((vma.start - addr) & C.MASK64) // C.PAGE_SIZE == vma.pgoff:
            file = vma.file
            assert file is not None
            size = file.inode.size
            _unmap(mm, vma)
            found = True
            vma = nxt
            break
        vma = nxt
    size = page_align(size)
    while vma is not None and ((vma.end - addr) & C.MASK64) <= size:
        nxt = mm.vmas.next(vma)
        if is_shm(vma) and ((vma.start - addr) & C.MASK64) // C.PAGE_SIZE == vma.pgoff and vma.file is file:
            _unmap(mm, vma)
        vma = nxt
    if not found:
        raise kernel_error(errno.EINVAL, "shmdt", "no attachment starts at the address")
    return 0


def _unmap(mm: MmStruct, vma: Vma) -> None:
    # do_munmap() of the whole VMA; its errors (a sealed VMA) are ignored, as ksys_shmdt() ignores them.
    with contextlib.suppress(OSError):
        sys_munmap(mm, vma.start, vma.end - vma.start)
