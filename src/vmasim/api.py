"""The public face of the model: :class:`AddressSpace`, one process's memory map.

Methods are named after the system calls and take the same arguments; a
failure raises ``OSError`` with the kernel's errno (``exc.errno``) and a
message naming the call, just as Python's ``os`` functions do.  A failing
call leaves the address space exactly as the kernel would, which sometimes
means partly changed (mprotect over a hole, for one).

Arguments are checked first (:mod:`vmasim.args`): a wrong Python type is a
``TypeError`` and an impossible value (an int no register holds, a negative
max_map_count) a ``ValueError``, each naming the method and the argument, and
neither changes anything.  Integer arguments take any int a 64-bit register
holds and are narrowed to the C type of the kernel's parameter, as the kernel
narrows them (``madvise``'s advice is a C ``int``).  The only other exception
is :class:`~vmasim.core.errors.WouldBlock`, for a fault that would wait for a
userfaultfd handler forever.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

from vmasim import constants as C
from vmasim import render
from vmasim.args import FD, I64, INT, U32, U64, AddressRanges, Bool, Bounded, Choice, CInt, CString, Instance, checked
from vmasim.core.errors import kernel_error
from vmasim.core.fault import TouchResult, touch
from vmasim.core.mm import MmStruct
from vmasim.core.target import Target
from vmasim.core.vma import File, Inode, UffdCtx, Vma, VmaView
from vmasim.ctype import MASK64, CType
from vmasim.profile import Profile, ProfileError, resolve_profile
from vmasim.syscalls import brk as _brk
from vmasim.syscalls.fileio import sys_pwrite
from vmasim.syscalls.fork import dup_mm
from vmasim.syscalls.madvise import sys_madvise
from vmasim.syscalls.mempolicy import sys_mbind, sys_set_mempolicy
from vmasim.syscalls.mlock import sys_mlock, sys_mlock2, sys_mlockall, sys_munlock, sys_munlockall
from vmasim.syscalls.mmap import sys_mmap
from vmasim.syscalls.mprotect import sys_mprotect
from vmasim.syscalls.mremap import sys_mremap
from vmasim.syscalls.mseal import sys_mseal
from vmasim.syscalls.munmap import sys_munmap
from vmasim.syscalls.pkeys import sys_pkey_alloc, sys_pkey_free
from vmasim.syscalls.prctl import sys_prctl_set_memory_merge, sys_prctl_set_vma_anon_name
from vmasim.syscalls.process_madvise import sys_process_madvise
from vmasim.syscalls.userfaultfd import uffd_api, uffd_register, uffd_unregister, userfaultfd_release_all

#: INT_MAX: the largest value of an int sysctl such as vm.max_map_count.
INT_MAX = (1 << 31) - 1
#: MFD_NAME_MAX_LEN: the longest memfd name (NAME_MAX less the "memfd:" prefix).
MFD_NAME_MAX_LEN = 255 - len("memfd:")
#: Where an address space's mmap_base and mmap_limit may lie (page-aligned; below the target's TASK_SIZE too).
_LAYOUT_ADDR = Bounded(0, MASK64, step=C.PAGE_SIZE, nullable=True)


def _truncate_size_check(mm: MmStruct, inode: Inode, size: int) -> None:
    # do_truncate(): a negative length is EINVAL; past the file system's limit, EFBIG.
    if size < 0 or size >= 1 << 63:
        raise kernel_error(errno.EINVAL, "ftruncate", "negative size")
    files = mm.target.files
    limit = files.shmem_max_bytes if inode.is_shmem else files.regular_max_bytes
    if size > limit:
        raise kernel_error(errno.EFBIG, "ftruncate", "larger than the file system allows")


class AddressSpace:
    """A process address space (an mm_struct) that system calls act on, on the machine ``target`` describes.

    ``target`` is a :class:`~vmasim.profile.Profile`, a
    :class:`~vmasim.core.target.Target`, or a profile's name (``"default"``,
    a built-in name, ``"host"`` to probe this machine, or a JSON file); None
    is the built-in default, so the same calls give the same answers on every
    machine.  ``max_map_count`` is this address space's own limit (the
    target's sysctl by default).  ``mmap_base`` defaults to where x86_64 puts
    it without ASLR; ``mmap_limit`` is the top of the area where hint-less
    mappings are placed, top-down (``None``: mmap_base).
    """

    @checked(call="AddressSpace", target=Instance(Profile, Target, str, nullable=True),
             max_map_count=Bounded(0, INT_MAX, nullable=True), mmap_base=_LAYOUT_ADDR, mmap_limit=_LAYOUT_ADDR)
    def __init__(
        self,
        *,
        target: Profile | Target | str | None = None,
        max_map_count: int | None = None,
        mmap_base: int | None = None,
        mmap_limit: int | None = None,
    ) -> None:
        try:
            self.profile = resolve_profile(target)
        except ProfileError as exc:
            raise ProfileError(f"AddressSpace(): 'target': {exc}") from None
        for name, value in (("mmap_base", mmap_base), ("mmap_limit", mmap_limit)):
            if value is not None and value > self.profile.target.task_size:
                raise ValueError(f"AddressSpace(): {name!r} must be at most TASK_SIZE "
                                 f"({self.profile.target.task_size:#x}), got {value:#x}")
        self.mm = MmStruct(self.profile.target, mmap_base=mmap_base, mmap_limit=mmap_limit)
        if max_map_count is not None:
            self.mm.max_map_count = max_map_count
        self._files: dict[int, File] = {}
        self._next_fd = 3
        self.initial_break = self.mm.start_brk

    @classmethod
    def from_mm(cls, mm: MmStruct, profile: Profile | None = None) -> AddressSpace:
        """An AddressSpace around a core address space built elsewhere (an import from /proc, say)."""
        space = cls.__new__(cls)
        space.profile = profile if profile is not None else Profile(name="custom", target=mm.target)
        space.mm = mm
        space._files = {}
        space._next_fd = 3
        space.initial_break = mm.start_brk
        return space

    @classmethod
    def from_proc(cls, source: int | str, *, target: Profile | Target | str | None = None) -> AddressSpace:
        """The address space of a live process (a PID) or of saved maps/smaps text (a path), imported from
        /proc for what-if analysis (see :mod:`vmasim.procimport` for what is reconstructed how).

        ``target`` is the machine, as for the constructor (for a process on
        this machine: ``vmasim.probe.probe_host()``).
        """
        from vmasim.procimport import FileTable, ProcImportError, from_source, process_settings

        profile = resolve_profile(target)
        try:
            mm = from_source(str(source), FileTable(process_settings(profile.target)))
        except ProcImportError as exc:
            raise ValueError(f"from_proc(): {exc}") from None
        return cls.from_mm(mm, profile)

    # --- state ---------------------------------------------------------------

    @property
    def map_count(self) -> int:
        """The number of VMAs (mm->map_count)."""
        return self.mm.map_count

    @property
    def max_map_count(self) -> int:
        """This address space's max_map_count."""
        return self.mm.max_map_count

    @max_map_count.setter
    @checked(call="max_map_count", value=Bounded(0, INT_MAX))
    def max_map_count(self, value: int) -> None:
        self.mm.max_map_count = value

    @property
    def counters(self) -> dict[str, int]:
        """The mm counters in pages: total_vm, locked_vm, data_vm, exec_vm, stack_vm."""
        mm = self.mm
        return {
            "total_vm": mm.total_vm,
            "locked_vm": mm.locked_vm,
            "data_vm": mm.data_vm,
            "exec_vm": mm.exec_vm,
            "stack_vm": mm.stack_vm,
        }

    def __iter__(self) -> Iterator[VmaView]:
        return (VmaView(v) for v in self.mm.vmas)

    def __len__(self) -> int:
        return len(self.mm.vmas)

    @checked(start=U64, end=U64)
    def vmas(self, start: int = 0, end: int = MASK64) -> list[VmaView]:
        """Read-only views of the VMAs overlapping ``[start, end)``, in address order."""
        return [VmaView(v) for v in self.mm.vmas.range(start, end)]

    @checked(addr=U64)
    def find_vma(self, addr: int) -> VmaView | None:
        """The VMA containing ``addr``, or None."""
        vma = self.mm.vmas.lookup(addr)
        return VmaView(vma) if vma is not None else None

    def _raw(self, start: int, end: int) -> list[Vma]:
        return list(self.mm.vmas.range(start, end))

    @checked(start=U64, end=U64)
    def maps(self, start: int = 0, end: int = MASK64) -> str:
        """/proc/PID/maps text for the VMAs overlapping ``[start, end)``."""
        return render.maps(self._raw(start, end), self.mm)

    @checked(start=U64, end=U64)
    def smaps(self, start: int = 0, end: int = MASK64) -> str:
        """/proc/PID/smaps text (header, sizes and VmFlags) for the VMAs overlapping ``[start, end)``."""
        return render.smaps(self._raw(start, end), self.mm)

    @checked(start=U64, end=U64)
    def numa_maps(self, start: int = 0, end: int = MASK64) -> str:
        """/proc/PID/numa_maps text for the VMAs overlapping ``[start, end)``."""
        return render.numa_maps(self._raw(start, end), self.mm)

    def _repr_html_(self) -> str:
        # Jupyter's rich display: the VMAs as an SVG picture (vmasim.view draws it).
        from vmasim.picture import svg_snapshot
        from vmasim.snapshot import snapshot

        return svg_snapshot(snapshot(self.mm))

    @checked(start=U64, end=U64)
    def explain(self, start: int = 0, end: int = MASK64) -> list[tuple[VmaView, VmaView, list[str]]]:
        """For each pair of neighbouring VMAs overlapping ``[start, end)``: why they are two VMAs.

        An empty list of reasons means they are compatible and would merge on
        the next operation that touches their boundary.
        """
        from vmasim.explain import explain

        return [(VmaView(a), VmaView(b), why) for a, b, why in explain(self.mm, start, end)]

    # --- files ------------------------------------------------------------------

    def _install(self, file: File) -> int:
        fd = self._next_fd
        self._next_fd += 1
        self._files[fd] = file
        file.refs += 1
        return fd

    @checked(fd=FD)
    def file(self, fd: int) -> File:
        """The open file behind ``fd``; EBADF if there is none."""
        try:
            return self._files[fd]
        except KeyError:
            raise kernel_error(errno.EBADF, "fd", f"{fd} is not open") from None

    @checked(name=CString(), size=I64)
    def memfd_create(self, name: str, size: int = 0) -> int:
        """A memfd (shmem file) of ``size`` bytes, open read-write; returns its fd."""
        if len(name.encode("utf-8", "surrogateescape")) > MFD_NAME_MAX_LEN:
            raise kernel_error(errno.EINVAL, "memfd_create", f"name longer than {MFD_NAME_MAX_LEN} bytes")
        inode = Inode("memfd", name)
        _truncate_size_check(self.mm, inode, size)
        inode.size = size
        return self._install(File(inode))

    @checked(name=CString(), size=I64, fs=Choice("regular", "tmpfs", nullable=True))
    def create_file(self, name: str, size: int = 0, *, fs: str | None = None) -> int:
        """A regular file of ``size`` bytes, open read-write, on the target's file system for regular files
        (or ``fs``: "tmpfs" for one on a tmpfs, a shmem file; "regular" is the default); returns its fd."""
        inode = Inode("file", name, fs="tmpfs" if fs == "tmpfs" else self.mm.target.files.regular_fs)
        _truncate_size_check(self.mm, inode, size)
        inode.size = size
        return self._install(File(inode))

    @checked(fd=FD, writable=Bool())
    def reopen(self, fd: int, *, writable: bool = True) -> int:
        """A second open of the file behind ``fd`` (a new struct file), read-only unless ``writable``."""
        return self._install(File(self.file(fd).inode, readable=True, writable=writable))

    @checked(fd=FD)
    def dup(self, fd: int) -> int:
        """Another fd for the same open file (the same struct file)."""
        return self._install(self.file(fd))

    @checked(fd=FD)
    def close(self, fd: int) -> None:
        """Close ``fd``; mappings keep their file.  Closing a userfaultfd's last descriptor releases its ranges."""
        file = self.file(fd)
        del self._files[fd]
        file.refs -= 1
        if file.refs == 0 and file.uffd is not None and not file.uffd.released:
            userfaultfd_release_all(file.uffd)

    def exit(self) -> None:
        """The process exits: every descriptor is closed (a child's exit is what releases its userfaultfds)."""
        for fd in list(self._files):
            self.close(fd)

    @checked(fd=FD, size=I64)
    def ftruncate(self, fd: int, size: int) -> None:
        """Set a file's size (EINVAL for negative sizes or a file not open for writing)."""
        file = self.file(fd)
        if not file.writable or file.uffd is not None:
            raise kernel_error(errno.EINVAL, "ftruncate", "file not open for writing")
        inode = file.inode
        _truncate_size_check(self.mm, inode, size)
        if size < inode.size:
            # Truncation drops cached pages past the new end and zaps their PTEs here.
            # (truncate_pagecache(): in every process that maps the file, fork relatives included).
            first = (size + C.PAGE_SIZE - 1) >> C.PAGE_SHIFT
            inode.cache.remove(first, 1 << 64)
            self.mm.unmap_mapping_range(inode, first)
        inode.size = size

    @checked(features=U64)
    def userfaultfd(self, features: int = 0) -> int:
        """userfaultfd(2) plus the UFFDIO_API handshake; returns the descriptor."""
        ctx = uffd_api(self.mm, features)
        # The userfaultfd file is opened read-only (anon_inode_getfile(..., O_RDONLY)): a shared
        # writable mapping of it is EACCES before the missing mmap operation (ENODEV) is noticed.
        return self._install(File(Inode("uffd", "[userfaultfd]"), writable=False, uffd=ctx))

    def _uffd(self, fd: int) -> UffdCtx:
        ctx = self.file(fd).uffd
        if ctx is None:
            raise kernel_error(errno.ENOTTY, "ioctl", "not a userfaultfd")
        return ctx

    @checked(fd=FD, addr=U64, length=U64, mode=U64)
    def uffd_register(self, fd: int, addr: int, length: int, mode: int) -> None:
        """UFFDIO_REGISTER of ``[addr, addr+length)`` with UFFDIO_REGISTER_MODE_* ``mode``."""
        uffd_register(self._uffd(fd), addr, length, mode)

    @checked(fd=FD, addr=U64, length=U64)
    def uffd_unregister(self, fd: int, addr: int, length: int) -> None:
        """UFFDIO_UNREGISTER of ``[addr, addr+length)``."""
        uffd_unregister(self._uffd(fd), addr, length)

    # --- system calls ----------------------------------------------------------

    @checked(addr=CInt(CType.U64, nullable=True), length=U64, prot=U64, flags=U64,
             fd=CInt(CType.U32, nullable=True), offset=U64)
    def mmap(self, addr: int | None, length: int, prot: int, flags: int, fd: int | None = None, offset: int = 0) -> int:
        """mmap(2): map ``length`` bytes; returns the address.  ``addr=None`` means no hint, ``fd=None`` no file."""
        # A bad fd is only an error where the kernel looks at it (after the offset check).
        file = self._files.get(fd) if fd is not None and not flags & C.MAP_ANONYMOUS else None
        return sys_mmap(self.mm, addr or 0, length, prot, flags, file, offset)

    @checked(addr=U64, length=U64)
    def munmap(self, addr: int, length: int) -> None:
        """munmap(2): unmap every mapping overlapping ``[addr, addr+length)``."""
        sys_munmap(self.mm, addr, length)

    @checked(addr=U64, length=U64, prot=U64)
    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """mprotect(2): change the protection of ``[addr, addr+length)`` (PROT_GROWSDOWN/UP accepted)."""
        sys_mprotect(self.mm, addr, length, prot)

    @checked(addr=U64, length=U64, write=Bool())
    def touch(self, addr: int, length: int, write: bool = True) -> TouchResult:
        """Access each page of ``[addr, addr+length)`` in order, stopping at the first fault.

        Returns how many pages were accessed and the fault (``"SIGSEGV"``,
        ``"SIGBUS"`` or None).  A write fault gives a private VMA its anon_vma.
        """
        return touch(self.mm, addr, length, write)

    @checked(addr=U64, length=U64, advice=INT)
    def madvise(self, addr: int, length: int, advice: int) -> None:
        """madvise(2): flag-changing advice splits and merges; holes give ENOMEM after the mapped parts."""
        sys_madvise(self.mm, addr, length, advice)

    @checked(addr=U64, length=U64)
    def mlock(self, addr: int, length: int) -> None:
        """mlock(2): lock and populate; an unaligned start is rounded down."""
        sys_mlock(self.mm, addr, length)

    @checked(addr=U64, length=U64, flags=INT)
    def mlock2(self, addr: int, length: int, flags: int = 0) -> None:
        """mlock2(2): with MLOCK_ONFAULT pages are locked as they are faulted in."""
        sys_mlock2(self.mm, addr, length, flags)

    @checked(addr=U64, length=U64)
    def munlock(self, addr: int, length: int) -> None:
        """munlock(2)."""
        sys_munlock(self.mm, addr, length)

    @checked(flags=INT)
    def mlockall(self, flags: int) -> None:
        """mlockall(2): MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT."""
        sys_mlockall(self.mm, flags)

    def munlockall(self) -> None:
        """munlockall(2)."""
        sys_munlockall(self.mm)

    @checked(addr=U64, length=U64, mode=INT, nodes=U64, flags=U32)
    def mbind(self, addr: int, length: int, mode: int, nodes: int = 0, flags: int = 0) -> None:
        """mbind(2): ``mode`` may carry MPOL_F_STATIC_NODES/RELATIVE_NODES; ``nodes`` is a node bit mask.

        ``nodes`` is one word of the node mask (nodes 0..63), as a caller passing ``maxnode`` 64 gives it.
        """
        sys_mbind(self.mm, addr, length, mode, nodes, flags)

    @checked(mode=INT, nodes=U64)
    def set_mempolicy(self, mode: int, nodes: int = 0) -> None:
        """set_mempolicy(2): the task policy, shown by numa_maps for VMAs without a policy of their own."""
        sys_set_mempolicy(self.mm, mode, nodes)

    @checked(addr=U64, length=U64, flags=U64)
    def mseal(self, addr: int, length: int, flags: int = 0) -> None:
        """mseal(2): seal a fully mapped range."""
        sys_mseal(self.mm, addr, length, flags)

    @checked(addr=U64, old_length=U64, new_length=U64, flags=U64, new_addr=CInt(CType.U64, nullable=True))
    def mremap(self, addr: int, old_length: int, new_length: int, flags: int = 0, new_addr: int | None = None) -> int:
        """mremap(2): shrink, grow in place or move (MREMAP_MAYMOVE/FIXED/DONTUNMAP); returns the address."""
        return sys_mremap(self.mm, addr, old_length, new_length, flags, new_addr or 0)

    @checked(addr=U64)
    def brk(self, addr: int) -> int:
        """brk(2): returns the new break, or the old one when the kernel refuses."""
        return _brk.sys_brk(self.mm, addr)

    @checked(increment=I64)
    def sbrk(self, increment: int) -> int:
        """libc's sbrk(): returns the old break; ENOMEM when the heap cannot move."""
        return _brk.sbrk(self.mm, increment, self.initial_break)

    @checked(value=U64)
    def prctl_set_memory_merge(self, value: int) -> None:
        """prctl(PR_SET_MEMORY_MERGE, value): KSM for every compatible VMA, present and future."""
        sys_prctl_set_memory_merge(self.mm, value)

    @checked(addr=U64, length=U64, name=CString(nullable=True))
    def prctl_set_vma_anon_name(self, addr: int, length: int, name: str | None) -> None:
        """prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, …): name anonymous VMAs (EINVAL without CONFIG_ANON_VMA_NAME)."""
        sys_prctl_set_vma_anon_name(self.mm, addr, length, name)

    def fork(self) -> AddressSpace:
        """fork(2): the child's address space (the parent is unchanged); open files are shared."""
        child = AddressSpace.__new__(AddressSpace)
        child.profile = self.profile
        child.mm = dup_mm(self.mm)
        child._files = dict(self._files)
        for file in child._files.values():
            file.refs += 1
        child._next_fd = self._next_fd
        child.initial_break = self.initial_break
        return child

    # --- more calls ------------------------------------------------------------

    @checked(fd=FD, offset=I64, length=U64)
    def pwrite(self, fd: int, offset: int, length: int) -> int:
        """pwrite(2) of ``length`` bytes at ``offset``; returns the bytes written (the file grows past its end)."""
        return sys_pwrite(self.mm, self._files.get(fd), length, offset)

    @checked(flags=U64, access=U64)
    def pkey_alloc(self, flags: int = 0, access: int = 0) -> int:
        """pkey_alloc(2): a protection key with ``access`` rights (PKEY_DISABLE_*); returns the key."""
        return sys_pkey_alloc(self.mm, flags, access)

    @checked(pkey=INT)
    def pkey_free(self, pkey: int) -> None:
        """pkey_free(2)."""
        sys_pkey_free(self.mm, pkey)

    @checked(addr=U64, length=U64, prot=U64, pkey=INT)
    def pkey_mprotect(self, addr: int, length: int, prot: int, pkey: int) -> None:
        """pkey_mprotect(2): mprotect that also sets the protection key (-1: keep it, as mprotect does)."""
        sys_mprotect(self.mm, addr, length, prot, pkey)

    @checked(ranges=AddressRanges(), advice=INT, flags=U32)
    def process_madvise(self, ranges: list[tuple[int, int]], advice: int, flags: int = 0) -> int:
        """process_madvise(2) on this process: ``(addr, length)`` ranges in order; returns the bytes advised."""
        return sys_process_madvise(self.mm, ranges, advice, flags)
