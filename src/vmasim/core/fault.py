"""Page faults as far as the VMA layer sees them: anon_vma acquisition, stack growth, population.

What a fault changes in the VMA tree is (1) a private VMA gets an anon_vma on
its first write (mm/rmap.c's anon_vma_prepare(), reusing a neighbour's when
find_mergeable_anon_vma() allows), and (2) a VM_GROWSDOWN VMA grows down to a
faulting address below it (mm/mmap.c's expand_downwards()).  Pages themselves
are tracked only as far as later faults depend on them: which addresses have
page-table entries (userfaultfd MISSING/MINOR, MPOL_MF_STRICT) and which shmem
pages are cached.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from vmasim.constants import PAGE_SHIFT, PAGE_SIZE, UFFD_FEATURE_SIGBUS
from vmasim.core.errors import WouldBlock
from vmasim.core.flags import (
    VM_ACCESS_FLAGS,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_IGNORE_MERGE,
    VM_IO,
    VM_LOCKONFAULT,
    VM_PFNMAP,
    VM_READ,
    VM_SHARED,
    VM_UFFD_MINOR,
    VM_UFFD_MISSING,
    VM_WRITE,
)
from vmasim.core.mm import MmStruct
from vmasim.core.prot import EXEC_ONLY_PKEY, pkru_allows, vma_pkey
from vmasim.core.vma import AnonVma, Vma, mpol_equal

SIGSEGV = "SIGSEGV"
SIGBUS = "SIGBUS"
UFFD = "UFFD"


def anon_vma_compatible(a: Vma, b: Vma) -> bool:
    """Like mm/vma.c's anon_vma_compatible(): ``b`` directly follows ``a`` and could have shared its pages."""
    return (
        a.end == b.start
        and mpol_equal(a.policy, b.policy)
        and a.file is b.file
        and not (a.vm_flags ^ b.vm_flags) & ~(VM_ACCESS_FLAGS | VM_IGNORE_MERGE)
        and b.pgoff == a.pgoff + ((b.start - a.start) >> PAGE_SHIFT)
    )


def find_mergeable_anon_vma(mm: MmStruct, vma: Vma) -> AnonVma | None:
    """Like find_mergeable_anon_vma(): a neighbour's anon_vma to reuse, trying next first, then prev."""
    nxt = mm.vma_next(vma)
    if (
        nxt is not None
        and anon_vma_compatible(vma, nxt)
        and nxt.anon_vma is not None
        and not nxt.fork_child
    ):
        return nxt.anon_vma
    prev = mm.vma_prev(vma)
    if prev is not None and anon_vma_compatible(prev, vma) and prev.anon_vma is not None and not prev.fork_child:
        return prev.anon_vma
    return None


def anon_vma_prepare(mm: MmStruct, vma: Vma) -> None:
    """Like anon_vma_prepare(): make sure ``vma`` has an anon_vma, reusing a neighbour's when allowed."""
    if vma.anon_vma is not None:
        return
    vma.anon_vma = find_mergeable_anon_vma(mm, vma) or AnonVma(mm.ids)
    vma.fork_child = False


def vma_is_accessible(vma: Vma) -> bool:
    """Like vma_is_accessible(): any of read, write or exec."""
    return bool(vma.vm_flags & VM_ACCESS_FLAGS)


def vma_is_user_accessible(vma: Vma, mm: MmStruct | None = None) -> bool:
    """Whether user accesses and population can reach the VMA's pages at all.

    Like vma_is_accessible() and arch_vma_access_permitted() together: any of
    read, write or exec, except memory whose protection key the task's PKRU
    denies access to (execute-only memory, a pkey_alloc()ed key without
    access), which cannot be read, faulted in or populated.  Without ``mm``
    only the execute-only key of a fresh address space counts.
    """
    flags = vma.vm_flags
    if mm is not None:
        if not pkru_allows(mm, vma_pkey(flags), write=False):
            return False
        return bool(flags & (VM_READ | VM_WRITE | VM_EXEC))
    if flags & (VM_READ | VM_WRITE):
        return True
    return bool(flags & VM_EXEC) and vma_pkey(flags) != EXEC_ONLY_PKEY


def vm_start_gap(mm: MmStruct, vma: Vma) -> int:
    """Like vm_start_gap(): a VM_GROWSDOWN VMA keeps stack_guard_gap free below it."""
    if vma.vm_flags & VM_GROWSDOWN:
        return max(vma.start - mm.stack_guard_gap, 0)
    return vma.start


def expand_downwards(mm: MmStruct, vma: Vma, address: int) -> bool:
    """Like expand_downwards(): grow a VM_GROWSDOWN VMA down to ``address``; False when refused."""
    if not vma.vm_flags & VM_GROWSDOWN:
        return False
    address &= ~(PAGE_SIZE - 1)
    if address < mm.mmap_min_addr:
        return False
    prev = mm.vma_prev(vma)
    if (
        prev is not None
        and not prev.vm_flags & VM_GROWSDOWN
        and vma_is_accessible(prev)
        and address - prev.end < mm.stack_guard_gap
    ):
        return False
    anon_vma_prepare(mm, vma)
    if address < vma.start:
        grow = (vma.start - address) >> PAGE_SHIFT
        if grow > vma.pgoff:
            return False
        # acct_stack_growth(): the whole stack VMA must stay within RLIMIT_STACK.
        if vma.end - address > mm.stack_rlimit:
            return False
        mm.set_range(vma, address, vma.end, vma.pgoff - grow)
    return True


@dataclass(slots=True)
class TouchResult:
    """What a ``touch`` did: pages accessed, and the fault that stopped it (None, SIGSEGV, SIGBUS or UFFD)."""

    pages: int
    fault: str | None


def _page_index(vma: Vma, addr: int) -> int:
    return vma.pgoff + ((addr - vma.start) >> PAGE_SHIFT)


def _map_pages(mm: MmStruct, vma: Vma, start: int, end: int, write: bool) -> None:
    # The pages now have PTEs (a read of private anonymous memory maps the zero page);
    # shmem pages are in the page cache too.
    if start >= end:
        return
    mm.map_pages(start, end, write or vma.file is not None)
    if vma.file is not None and vma.file.inode.is_shmem:
        vma.file.inode.cache.add(_page_index(vma, start), _page_index(vma, end))


def _first_trap(mm: MmStruct, vma: Vma, start: int, end: int) -> int | None:
    """The first page of ``[start, end)`` whose fault would go to the VMA's userfaultfd.

    MISSING fires where no page exists yet (anonymous: no page table entry;
    shmem: not in the page cache), MINOR on shmem where the page is cached but
    not mapped; write-protect tracking never fires (nothing is write-protected
    by the model's programs).  Only pages without a page table entry fault at
    all: the walk visits the runs of such pages (and, on shmem, the page
    cache's runs within them), not pages one by one.
    """
    f = vma.vm_flags
    if vma.uffd_ctx is None or not f & (VM_UFFD_MISSING | VM_UFFD_MINOR):
        return None
    if vma.file is None:
        return mm.ptes.first_gap(start, end) if f & VM_UFFD_MISSING else None
    # Only anonymous and shmem memory can be registered for MISSING or MINOR faults.
    cache = vma.file.inode.cache
    missing, minor = bool(f & VM_UFFD_MISSING), bool(f & VM_UFFD_MINOR)
    for gap_start, gap_end in mm.ptes.gaps(start, end):
        if missing and minor:
            return gap_start
        first, last = _page_index(vma, gap_start), _page_index(vma, gap_end)
        # MISSING fires where the page is not cached, MINOR where it is.
        idx = cache.first_gap(first, last) if missing else cache.first_in(first, last)
        if idx is not None:
            return vma.start + ((idx - vma.pgoff) << PAGE_SHIFT)
    return None


def _eof_limit(vma: Vma) -> int:
    """The first address of ``vma`` past the end of its file (faults there are SIGBUS); the VMA's end if none."""
    if vma.file is None or not vma.file.inode.has_pages:
        return vma.end
    return max(vma.start, min(vma.end, vma.start + (_file_pages(vma) - vma.pgoff) * PAGE_SIZE))


def _access_vma(mm: MmStruct, vma: Vma, start: int, end: int, write: bool) -> tuple[int, str | None]:
    """Access every page of ``[start, end)`` inside ``vma`` in order: where it stopped, and the fault.

    Equivalent to handle_mm_fault() page by page (access rights, guard markers,
    the anon_vma of the first write, pages that are present, past the end of
    the file or trapped by userfaultfd), in O(log n) per run of pages.
    """
    if write:
        if not vma.vm_flags & VM_WRITE or not pkru_allows(mm, vma_pkey(vma.vm_flags), write=True):
            return start, SIGSEGV
    elif not vma_is_user_accessible(vma, mm):
        return start, SIGSEGV
    stop, fault = end, None
    guard = mm.guards.first_in(start, end) if mm.guards else None
    if guard is not None:
        stop, fault = guard, SIGSEGV
        if guard == start:
            return start, SIGSEGV
    if write and not vma.vm_flags & VM_SHARED:
        # do_anonymous_page(), do_cow_fault() and do_wp_page() prepare the anon_vma before
        # anything else (reading the file, asking userfaultfd).
        anon_vma_prepare(mm, vma)
    limit = max(start, _eof_limit(vma))
    if limit < stop:
        beyond = mm.ptes.first_gap(limit, stop)
        if beyond is not None:
            stop, fault = beyond, SIGBUS
    trap = _first_trap(mm, vma, start, stop)
    if trap is not None:
        # handle_userfault(): with UFFD_FEATURE_SIGBUS nothing waits, the fault is SIGBUS.
        assert vma.uffd_ctx is not None
        stop, fault = trap, SIGBUS if vma.uffd_ctx.features & UFFD_FEATURE_SIGBUS else UFFD
    for gap_start, gap_end in mm.ptes.gaps(start, stop):
        _map_pages(mm, vma, gap_start, gap_end, write)
    return stop, fault


def access_range(mm: MmStruct, first: int, end: int, write: bool) -> TouchResult:
    """Access the pages of ``[first, end)`` (page aligned) in order, VMA by VMA, stopping at the first fault."""
    cursor = first
    while cursor < end:
        vma = mm.find_vma(cursor)
        if vma is None:
            return TouchResult((cursor - first) >> PAGE_SHIFT, SIGSEGV)
        if vma.start > cursor and not expand_downwards(mm, vma, cursor):
            return TouchResult((cursor - first) >> PAGE_SHIFT, SIGSEGV)
        stop, fault = _access_vma(mm, vma, cursor, min(end, vma.end), write)
        if fault is not None:
            return TouchResult((stop - first) >> PAGE_SHIFT, fault)
        cursor = stop
    return TouchResult((end - first) >> PAGE_SHIFT, None)


def touch(mm: MmStruct, addr: int, length: int, write: bool = True) -> TouchResult:
    """Access the start of every page overlapping ``[addr, addr+length)`` in order, stopping at the first fault.

    The cost is O(log n) per VMA (and per run of present pages) crossed,
    whatever the number of pages.
    """
    if length == 0:
        return TouchResult(0, None)
    first = addr & ~(PAGE_SIZE - 1)
    last = min(addr + length - 1, (1 << 64) - 1)
    return access_range(mm, first, (last & ~(PAGE_SIZE - 1)) + PAGE_SIZE, write)


def populate_range(
    mm: MmStruct, start: int, end: int, *, ignore_errors: bool = True, can_block: bool = True
) -> int:
    """Like __mm_populate(): fault in ``[start, end)`` VMA by VMA; the errno that stopped it (0 if none).

    Private writable VMAs are populated with write faults (so they get an
    anon_vma); others with read faults, which change nothing here.  With
    ``ignore_errors`` (mmap, mlockall) a failing VMA is skipped; without it
    (mlock) population stops there.  Without ``can_block`` (mprotect's
    populate_vma_page_range() without a lock to drop) a userfaultfd fault
    fails instead of waiting.
    """
    cursor = start
    while cursor < end:
        vma = mm.vmas.find_intersection(cursor, end)
        if vma is None:
            break
        cursor = max(cursor, vma.start)
        stop = min(end, vma.end)
        if not vma.vm_flags & (VM_IO | VM_PFNMAP):
            err = _populate_vma(mm, vma, cursor, stop, can_block)
            if err and not ignore_errors:
                return err
        cursor = stop
    return 0


def _populate_vma(mm: MmStruct, vma: Vma, start: int, end: int, can_block: bool = True) -> int:
    """Like populate_vma_page_range() with get_user_pages() faulting page by page."""
    if vma.vm_flags & VM_LOCKONFAULT:
        return 0
    if not vma_is_user_accessible(vma, mm):
        return errno.EFAULT
    write = vma.vm_flags & (VM_WRITE | VM_SHARED) == VM_WRITE
    return fault_in(mm, vma, start, end, write, can_block=can_block)


def fault_in(mm: MmStruct, vma: Vma, start: int, end: int, write: bool, *, can_block: bool = True) -> int:
    """Fault in ``[start, end)`` of ``vma`` as get_user_pages() would; EFAULT where a fault fails.

    Raises :class:`WouldBlock` where the kernel would wait for a userfaultfd
    handler forever.
    """
    stop, err = end, 0
    guard = mm.guards.first_in(start, end) if mm.guards else None
    if guard is not None:
        stop, err = guard, errno.EFAULT
    if vma.file is not None and vma.file.inode.has_pages:
        limit = vma.start + max(0, _file_pages(vma) - vma.pgoff) * PAGE_SIZE
        if limit < stop:
            stop, err = max(limit, start), errno.EFAULT
    ctx = vma.uffd_ctx
    if ctx is not None:
        # handle_userfault() answers SIGBUS at once (EFAULT here) with UFFD_FEATURE_SIGBUS, and for
        # a fault from inside the kernel on a UFFD_USER_MODE_ONLY context.
        can_block = can_block and not (ctx.features & UFFD_FEATURE_SIGBUS or ctx.user_mode_only)
        page = _first_trap(mm, vma, start, stop)
        if page is not None:
            if can_block:
                raise WouldBlock(f"populating {page:#x} would wait for a userfaultfd handler forever")
            stop, err = page, errno.EFAULT  # handle_userfault() answers SIGBUS when it cannot wait
    if write and not vma.vm_flags & VM_SHARED and (stop > start or guard != start):
        anon_vma_prepare(mm, vma)
    _map_pages(mm, vma, start, stop, write)
    return err


def _file_pages(vma: Vma) -> int:
    assert vma.file is not None
    return (vma.file.inode.size + PAGE_SIZE - 1) >> PAGE_SHIFT
