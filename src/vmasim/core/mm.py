"""The address space (struct mm_struct): the VMA store, map_count, limits and counters.

Every change to a VMA's range or flags goes through :class:`MmStruct` so that
the counters (total_vm, locked_vm, data_vm, exec_vm, stack_vm) always equal
what the VMAs add up to, as vm_stat_account() keeps them in the kernel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from vmasim.constants import (
    DEFAULT_MAX_MAP_COUNT,
    DEFAULT_MMAP_MIN_ADDR,
    PAGE_SHIFT,
    TASK_SIZE,
)
from vmasim.core.flags import VM_LOCKED, is_data_mapping, is_exec_mapping, is_stack_mapping
from vmasim.core.ranges import RangeSet
from vmasim.core.store import VmaStore
from vmasim.core.vma import Mempolicy, Vma

# With ASLR off, x86_64's mmap_base sits right below the stack gap.
DEFAULT_MMAP_BASE = 0x7FFFF7FFF000
DEFAULT_STACK_RLIMIT = 8 << 20


def _physical_pages() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return (24 << 30) >> PAGE_SHIFT


class MmStruct:
    """One process's address space.

    ``max_map_count`` is per address space here (the kernel's is a global
    sysctl), so that limit behaviour can be modelled without touching the
    host.  ``hidden_map_count`` counts VMAs the process has outside the model
    (what a ``pad`` op creates), and takes part in every map_count check.
    ``mmap_limit`` is the top of the area searched for hint-less mappings:
    everything from there up is treated as occupied (vDSO, stack).
    """

    def __init__(
        self,
        *,
        max_map_count: int = DEFAULT_MAX_MAP_COUNT,
        mmap_base: int = DEFAULT_MMAP_BASE,
        mmap_min_addr: int = DEFAULT_MMAP_MIN_ADDR,
        mmap_limit: int | None = None,
        start_brk: int = 0x10000000,
        commit_limit_pages: int | None = None,
    ) -> None:
        self.vmas = VmaStore()
        self.max_map_count = max_map_count
        self.hidden_map_count = 0
        self.def_flags = 0
        self.total_vm = 0
        self.locked_vm = 0
        self.data_vm = 0
        self.exec_vm = 0
        self.stack_vm = 0
        self.mmap_base = mmap_base
        self.mmap_min_addr = mmap_min_addr
        self.mmap_limit = mmap_limit if mmap_limit is not None else mmap_base
        self.task_size = TASK_SIZE
        self.start_brk = start_brk
        self.brk = start_brk
        self.stack_rlimit = DEFAULT_STACK_RLIMIT
        self.ksm_merge_any = False
        self.task_policy: Mempolicy | None = None
        # Guard-region markers (MADV_GUARD_INSTALL) live in page tables, not in VMAs.
        self.guards = RangeSet()
        # Addresses with a page table entry (what a userfaultfd fault depends on), and the
        # subset that maps a real page rather than the shared zero page (what mbind's
        # MPOL_MF_STRICT checks).
        self.ptes = RangeSet()
        self.pages = RangeSet()
        # Like the OVERCOMMIT_GUESS check in __vm_enough_memory(): one request
        # larger than RAM (+swap, none here) fails.
        self.commit_limit_pages = commit_limit_pages if commit_limit_pages is not None else _physical_pages()

    # --- map_count -------------------------------------------------------

    @property
    def map_count(self) -> int:
        """The number of VMAs, as mm->map_count counts them."""
        return len(self.vmas) + self.hidden_map_count

    def __iter__(self) -> Iterator[Vma]:
        return iter(self.vmas)

    # --- accounting --------------------------------------------------------

    def _account(self, vma: Vma, sign: int) -> None:
        pages = sign * ((vma.end - vma.start) >> PAGE_SHIFT)
        flags = vma.vm_flags
        self.total_vm += pages
        if flags & VM_LOCKED:
            self.locked_vm += pages
        if is_exec_mapping(flags):
            self.exec_vm += pages
        elif is_stack_mapping(flags):
            self.stack_vm += pages
        elif is_data_mapping(flags):
            self.data_vm += pages

    def link(self, vma: Vma) -> None:
        """Insert a new VMA (map_count += 1)."""
        self.vmas.insert(vma)
        self._account(vma, +1)

    def unlink(self, vma: Vma) -> None:
        """Remove a VMA for good (map_count -= 1)."""
        self._account(vma, -1)
        self.vmas.remove(vma)

    def set_range(self, vma: Vma, start: int, end: int, pgoff: int) -> None:
        """Change a VMA's bounds and pgoff, keeping the counters right."""
        self._account(vma, -1)
        self.vmas.set_range(vma, start, end)
        vma.pgoff = pgoff
        self._account(vma, +1)

    def set_flags(self, vma: Vma, vm_flags: int) -> None:
        """Change a VMA's vm_flags, keeping the counters right."""
        if vma.vm_flags == vm_flags:
            return
        self._account(vma, -1)
        vma.vm_flags = vm_flags
        self._account(vma, +1)

    # --- page tables ---------------------------------------------------------

    def map_pages(self, start: int, end: int, real: bool) -> None:
        """``[start, end)`` now has PTEs; ``real`` when they map pages, not the zero page."""
        self.ptes.add(start, end)
        if real:
            self.pages.add(start, end)

    def zap_range(self, start: int, end: int) -> None:
        """Like zap_page_range_single(): no PTEs left in ``[start, end)``."""
        self.ptes.remove(start, end)
        self.pages.remove(start, end)

    def move_page_tables(self, old: int, length: int, new: int) -> None:
        """Like move_page_tables(): PTEs and guard markers of ``[old, old+length)`` move to ``new``."""
        for table in (self.ptes, self.pages, self.guards):
            moved = table.slices(old, old + length)
            table.remove(old, old + length)
            for s, e in moved:
                table.add(s - old + new, e - old + new)

    # --- lookups -------------------------------------------------------------

    def find_vma(self, addr: int) -> Vma | None:
        """Like find_vma(): the first VMA ending above ``addr``."""
        return self.vmas.find(addr)

    def vma_prev(self, vma: Vma) -> Vma | None:
        """The VMA before ``vma``."""
        return self.vmas.prev(vma)

    def vma_next(self, vma: Vma) -> Vma | None:
        """The VMA after ``vma``."""
        return self.vmas.next(vma)
