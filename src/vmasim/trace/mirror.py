"""The mirror: one model address space per real one, and each traced call applied to it.

An :class:`Image` is what the report calls a process: the address space a
program got at execve (or a fork child got from its parent), followed until
the process exits or execs again.  Threads and vfork children share their
parent's Image (CLONE_VM).

Before a call is applied, the page state of the VMAs it can touch is brought
up to date (:meth:`Image.refresh`): a private VMA the model holds no anon_vma
for, but whose pages the kernel shows as anonymous, was written since, and
gets its anon_vma the way a write fault would (anon_vma_prepare(), reusing a
compatible neighbour's).
"""

from __future__ import annotations

import errno
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from vmasim import constants as C
from vmasim.api import AddressSpace
from vmasim.core.addr import page_align
from vmasim.core.errors import WouldBlock
from vmasim.core.fault import anon_vma_prepare
from vmasim.core.flags import VM_SHARED, VM_WRITE
from vmasim.core.mm import MmStruct
from vmasim.core.placement import get_unmapped_area
from vmasim.core.vma import File, Inode, Vma
from vmasim.procimport import FileTable, PageMap
from vmasim.syscalls.brk import sys_brk
from vmasim.syscalls.madvise import sys_madvise
from vmasim.syscalls.mempolicy import sys_mbind, sys_set_mempolicy
from vmasim.syscalls.mlock import sys_mlock, sys_mlock2, sys_mlockall, sys_munlock, sys_munlockall
from vmasim.syscalls.mmap import round_hint_to_min, sys_mmap
from vmasim.syscalls.mprotect import sys_mprotect
from vmasim.syscalls.mremap import sys_mremap
from vmasim.syscalls.mseal import sys_mseal
from vmasim.syscalls.munmap import sys_munmap
from vmasim.syscalls.pkeys import sys_pkey_alloc, sys_pkey_free
from vmasim.syscalls.prctl import sys_prctl_set_memory_merge, sys_prctl_set_vma_anon_name
from vmasim.syscalls.process_madvise import sys_process_madvise
from vmasim.syscalls.shm import ShmSegment, sys_shmat, sys_shmdt
from vmasim.syscalls.userfaultfd import uffd_api, uffd_register, uffd_unregister
from vmasim.trace.check import Before, Divergence, Identities
from vmasim.trace.fds import Handle
from vmasim.trace.syscalls import UFFDIO_API, UFFDIO_REGISTER, UFFDIO_UNREGISTER, Call


class Unmodelled(Exception):
    """The call is not modelled (device mappings, another process's memory…): the tracer imports its effect
    from /proc."""


@dataclass(slots=True)
class Stats:
    """Per-Image counts for the report."""

    calls: int = 0
    agreed: int = 0
    unmodelled: int = 0
    checks: int = 0
    unchecked: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    by_call: Counter[str] = field(default_factory=Counter)


class Image:
    """One model address space following one real one."""

    def __init__(self, space: AddressSpace, pid: int, program: str, files: FileTable, parent: str | None) -> None:
        self.space = space
        self.mm: MmStruct = space.mm
        self.pid = pid
        self.program = program
        self.parent = parent
        self.files = files
        self.ids = Identities(files)
        self.users: set[int] = set()  # live tasks using it (until their exit event)
        self.holder: int | None = None  # the task whose memory call is in flight
        self.waiting: deque[int] = deque()
        self.stats = Stats()
        self.pagemap: PageMap | None = None
        self.ended = False
        self.since_check = 0

    @property
    def name(self) -> str:
        """``pid 1234 (program)``."""
        return f"pid {self.pid} ({self.program})"

    def mirrored(self, call: Call) -> None:
        """Count ``call`` as applied to the model, one more since the last comparison."""
        self.stats.calls += 1
        self.stats.by_call[call.name] += 1
        self.since_check += 1

    def open_pagemap(self, tid: int) -> None:
        """Open the pagemap of the address space ``tid`` now uses (pagemap is bound to one mm)."""
        self.close_pagemap()
        try:
            self.pagemap = PageMap(tid)
        except OSError:
            self.pagemap = None

    def close_pagemap(self) -> None:
        """Release the pagemap descriptor."""
        if self.pagemap is not None:
            self.pagemap.close()
            self.pagemap = None

    # --- page state ----------------------------------------------------------------------------------

    def refresh(self, ranges: Iterable[tuple[int, int]], *, neighbours: bool = True) -> None:
        """Give written VMAs overlapping ``ranges`` (and their neighbours) their anon_vma, as faults would."""
        if self.pagemap is None:
            return
        seen: set[int] = set()
        todo: list[Vma] = []
        store = self.mm.vmas
        for start, end in ranges:
            if end <= start:
                continue
            found = list(store.range(start, end))
            if neighbours:
                before = store.prev_of_addr(start) if not found else store.prev(found[0])
                after = store.find(end) if not found else store.next(found[-1])
                found = [v for v in (before, *found, after) if v is not None]
            for vma in found:
                if id(vma) not in seen:
                    seen.add(id(vma))
                    todo.append(vma)
        self._refresh_vmas(todo)

    def refresh_all(self) -> None:
        """Refresh every VMA (before a fork copies anon_vmas, and before the final explanation)."""
        if self.pagemap is not None:
            self._refresh_vmas(list(self.mm.vmas))

    def _refresh_vmas(self, vmas: list[Vma]) -> None:
        assert self.pagemap is not None
        for vma in sorted(vmas, key=lambda v: v.start):
            # Only private writable memory gains anonymous pages by being written; a VMA made
            # read-only since was refreshed before the mprotect that did it.
            if vma.anon_vma is not None or vma.vm_flags & VM_SHARED or not vma.vm_flags & VM_WRITE:
                continue
            try:
                page = self.pagemap.first_anon(vma.start, vma.end)
            except OSError:
                return
            if page is not None and self.mm.vmas.lookup(page) is vma:
                anon_vma_prepare(self.mm, vma)
                self.mm.map_pages(page, page + C.PAGE_SIZE, True)


def _mmap_file(call: Call) -> File | None:
    file = call.data.get("file")
    return file if isinstance(file, File) else None


def _node_mask(call: Call) -> int:
    return int(call.data.get("nodes", 0))


def unmodelled_mmap(call: Call) -> str | None:
    """Why the model cannot follow mmap ``call`` (None: it can), known from the arguments alone."""
    flags = call.args[3] & 0xFFFFFFFF
    if call.data.get("device"):
        return "mapping of a device or special file"
    if flags & C.MAP_32BIT and not flags & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE):
        return "MAP_32BIT placement is randomised"
    return None


def apply(image: Image, call: Call) -> int:
    """Apply ``call`` to the model; returns the model's result, raises OSError with the model's errno.

    Raises :class:`Unmodelled` for calls the model cannot follow.
    """
    mm = image.mm
    a = call.args
    name = call.name
    if name == "mmap":
        reason = unmodelled_mmap(call)
        if reason is not None:
            raise Unmodelled(reason)
        return sys_mmap(mm, a[0], a[1], a[2] & 0xFFFFFFFF, a[3] & 0xFFFFFFFF, _mmap_file(call), a[5])
    if name == "munmap":
        return sys_munmap(mm, a[0], a[1])
    if name == "mprotect":
        return sys_mprotect(mm, a[0], a[1], a[2] & 0xFFFFFFFF)
    if name == "pkey_mprotect":
        return sys_mprotect(mm, a[0], a[1], a[2] & 0xFFFFFFFF, call.sarg(3))
    if name == "pkey_alloc":
        return sys_pkey_alloc(mm, a[0], a[1])
    if name == "pkey_free":
        return sys_pkey_free(mm, call.sarg(0))
    if name == "process_madvise":
        if not call.data.get("self"):
            raise Unmodelled("process_madvise on another process")
        return sys_process_madvise(mm, list(call.data.get("ranges", [])), a[3] & 0xFFFFFFFF, a[4] & 0xFFFFFFFF)
    if name == "shmat":
        return _shmat(mm, call)
    if name == "shmdt":
        return sys_shmdt(mm, a[0])
    if name == "brk":
        return sys_brk(mm, a[0])
    if name == "mremap":
        return sys_mremap(mm, a[0], a[1], a[2], a[3] & 0xFFFFFFFF, a[4])
    if name == "madvise":
        return sys_madvise(mm, a[0], a[1], a[2] & 0xFFFFFFFF)
    if name == "mlock":
        return sys_mlock(mm, a[0], a[1])
    if name == "munlock":
        return sys_munlock(mm, a[0], a[1])
    if name == "mlock2":
        return sys_mlock2(mm, a[0], a[1], a[2] & 0xFFFFFFFF)
    if name == "mlockall":
        return sys_mlockall(mm, a[0] & 0xFFFFFFFF)
    if name == "munlockall":
        return sys_munlockall(mm)
    if name == "mbind":
        return sys_mbind(mm, a[0], a[1], a[2] & 0xFFFFFFFF, _node_mask(call), a[5] & 0xFFFFFFFF)
    if name == "set_mempolicy":
        return sys_set_mempolicy(mm, a[0] & 0xFFFFFFFF, _node_mask(call))
    if name == "mseal":
        return sys_mseal(mm, a[0], a[1], a[2])
    if name == "prctl":
        if a[0] == C.PR_SET_MEMORY_MERGE:
            return sys_prctl_set_memory_merge(mm, a[1])
        if a[0] == C.PR_SET_VMA and a[1] == C.PR_SET_VMA_ANON_NAME:
            return sys_prctl_set_vma_anon_name(mm, a[2], a[3], None)
        raise Unmodelled("prctl option")
    if name == "ioctl":
        return _uffd_ioctl(image, call)
    raise Unmodelled(f"{name} is not modelled")


def _shmat(mm: MmStruct, call: Call) -> int:
    shmid = call.sarg(0)
    inode = call.data.get("shm_inode")
    if not isinstance(inode, Inode):
        if call.err:
            return sys_shmat(mm, None, shmid, call.args[1], call.sarg(2))
        raise Unmodelled("shmat of a segment /proc/sysvipc/shm does not list")
    seg = ShmSegment(shmid, int(call.data.get("shm_key", 0)), int(call.data.get("shm_size", 0)), inode.label)
    seg.inode = inode  # the inode an import from /proc gives the attachment
    return sys_shmat(mm, seg, shmid, call.args[1], call.sarg(2))


def _uffd_ioctl(image: Image, call: Call) -> int:
    handle = call.data.get("handle")
    if not isinstance(handle, Handle) or handle.mm is None:
        raise Unmodelled("ioctl on a descriptor not known as a userfaultfd")
    req = call.args[1] & 0xFFFFFFFF
    if req == UFFDIO_API:
        mm = handle.mm
        assert isinstance(mm, MmStruct)
        handle.uffd = uffd_api(mm, int(call.data.get("features", 0)))
        handle.file = File(Inode("uffd", "[userfaultfd]"), uffd=handle.uffd)
        return 0
    ctx = handle.uffd
    if ctx is None:
        raise OSError(errno.EINVAL, "userfaultfd: no UFFDIO_API yet")
    if req == UFFDIO_REGISTER:
        return uffd_register(ctx, int(call.data["start"]), int(call.data["len"]), int(call.data["mode"]))
    if req == UFFDIO_UNREGISTER:
        return uffd_unregister(ctx, int(call.data["start"]), int(call.data["len"]))
    raise Unmodelled("userfaultfd ioctl")


def uffd_target(call: Call) -> MmStruct | None:
    """The address space a userfaultfd ioctl acts on (the context's), when it is not the caller's."""
    handle = call.data.get("handle")
    if isinstance(handle, Handle) and isinstance(handle.mm, MmStruct):
        return handle.mm
    return None


def run(image: Image, call: Call) -> tuple[int | None, int]:
    """Apply ``call`` and return (model result or None, model errno).  Unmodelled propagates."""
    try:
        ret = apply(image, call)
    except WouldBlock:
        raise Unmodelled("the model says the call would wait for a userfaultfd handler") from None
    except OSError as exc:
        return None, exc.errno or errno.EINVAL
    return ret, 0


def touched_ranges(call: Call) -> list[tuple[int, int]]:
    """The address ranges whose VMAs (and neighbours) ``call`` can split, merge or move, as known at entry."""
    a = call.args
    name = call.name
    page = C.PAGE_SIZE - 1
    if name == "mmap":
        flags = a[3] & 0xFFFFFFFF
        if flags & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE) or a[0]:
            return [(a[0] & ~page, (a[0] + a[1] + page) & ~page & C.MASK64)]
        return []
    if name in ("munmap", "mprotect", "pkey_mprotect", "madvise", "mlock", "munlock", "mlock2", "mbind", "mseal"):
        return [(a[0] & ~page, (a[0] + a[1] + page) & ~page & C.MASK64)]
    if name == "mremap":
        out = [(a[0] & ~page, (a[0] + max(a[1], a[2]) + page) & ~page & C.MASK64)]
        if a[3] & (C.MREMAP_FIXED | C.MREMAP_DONTUNMAP):
            out.append((a[4] & ~page, (a[4] + a[2] + page) & ~page & C.MASK64))
        return out
    if name == "process_madvise":
        return [(b & ~page, (b + n + page) & ~page & C.MASK64) for b, n in call.data.get("ranges", [])[:64]]
    if name == "ioctl":
        if "start" in call.data:
            start = int(call.data["start"])
            return [(start, start + int(call.data["len"]))]
        return []
    if name == "prctl" and a[0] == C.PR_SET_VMA:
        return [(a[2], a[2] + a[3])]
    return []


def result_ranges(call: Call) -> list[tuple[int, int]]:
    """Ranges known only from the kernel's result whose neighbours the model's merge depends on."""
    a = call.args
    page = C.PAGE_SIZE - 1
    if call.err:
        return []
    if call.name == "mmap":
        return [(call.ret, (call.ret + a[1] + page) & ~page)]
    if call.name == "shmat":
        return [(call.ret, (call.ret + int(call.data.get("shm_size", 0)) + page) & ~page)]
    if call.name == "mremap" and call.ret != a[0]:
        return [(call.ret, (call.ret + a[2] + page) & ~page)]
    return []


def predicted_ranges(image: Image, call: Call) -> list[tuple[int, int]]:
    """Where the model will place a non-fixed mmap mirrored at its entry (standing in for
    :func:`result_ranges`, which needs the kernel's result), when the page state there matters.

    It matters only for private writable memory: a new mapping merges only
    with neighbours of the same flags, and refreshing gives anon_vmas only to
    private writable VMAs.  Empty otherwise, and when the model refuses the call.
    """
    a = call.args
    flags = a[3] & 0xFFFFFFFF
    if call.name != "mmap" or flags & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE) or not a[1]:
        return []
    if not a[2] & C.PROT_WRITE or flags & C.MAP_TYPE not in (C.MAP_PRIVATE, C.MAP_DROPPABLE):
        return []
    mm = image.mm
    length = page_align(a[1])
    if not length:
        return []
    try:
        addr = get_unmapped_area(mm, _mmap_file(call), round_hint_to_min(mm, a[0]), length,
                                 a[5] >> C.PAGE_SHIFT, flags)
    except OSError:
        return []
    return [(addr, addr + length)]


def before_call(mm: MmStruct, call: Call) -> Before:
    """Copies of the VMAs ``call`` can change and their neighbours, with the heap's bounds, for a reproducer.

    For brk the range is the whole heap up to the highest break involved: a
    shrink unmaps from the new break, growth expands the last heap VMA, and the
    first VMA above (the neighbour) decides whether the heap may grow there.
    """
    ranges = touched_ranges(call) + result_ranges(call)
    if call.name == "brk":
        page = C.PAGE_SIZE - 1
        top = max(mm.brk, call.args[0] if call.args[0] >= mm.start_brk else 0)
        ranges.append((mm.start_brk, min((top + page) & ~page, mm.task_size)))
    out: dict[int, Vma] = {}
    for start, end in ranges:
        vmas = list(mm.vmas.range(start, end))
        first = vmas[0] if vmas else None
        prev = mm.vmas.prev(first) if first is not None else mm.vmas.prev_of_addr(start)
        nxt = mm.vmas.next(vmas[-1]) if vmas else mm.find_vma(end)
        for v in (prev, *vmas, nxt):
            if v is not None:
                out[v.start] = v.copy()
    return Before([out[k] for k in sorted(out)], mm.start_brk, mm.brk, mm.stack_guard_gap)
