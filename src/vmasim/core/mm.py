"""The address space (struct mm_struct): the VMA store, map_count, limits and counters.

Every change to a VMA's range or flags goes through :class:`MmStruct` so that
the counters (total_vm, locked_vm, data_vm, exec_vm, stack_vm) always equal
what the VMAs add up to, as vm_stat_account() keeps them in the kernel.
"""

from __future__ import annotations

from collections.abc import Iterator

from vmasim.constants import PAGE_SHIFT, PAGE_SIZE
from vmasim.core.flags import VM_ACCOUNT, VM_EXEC, VM_LOCKED, VM_SHARED, VM_STACK, VM_WRITE, is_data_mapping
from vmasim.core.ranges import RangeSet
from vmasim.core.store import VmaStore
from vmasim.core.target import DEFAULT_TARGET, Target
from vmasim.core.vma import File, IdSource, Inode, Mempolicy, Vma

DEFAULT_STACK_RLIMIT = 8 << 20
# mmap_base()'s smallest gap below the top of the address space (arch/x86/mm/mmap.c).
_MMAP_BASE_GAP_MIN = 128 << 20
# init_pkru_value: every key but the default key 0 is access-disabled until pkey_alloc() says otherwise.
INIT_PKRU = 0x55555554


def default_mmap_base(target: Target, stack_rlimit: int = DEFAULT_STACK_RLIMIT) -> int:
    """Like x86's mmap_base() without randomisation: below the stack's rlimit plus the guard gap, at least 128 MiB."""
    top = target.map_window
    gap = min(max(stack_rlimit + target.limits.stack_guard_gap, _MMAP_BASE_GAP_MIN), top // 6 * 5)
    return (top - gap) & ~0xFFF


class MmStruct:
    """One process's address space, on the machine ``target`` describes.

    ``max_map_count`` is per address space here (the kernel's is a global
    sysctl; it starts at the target's), so that limit behaviour can be
    modelled without touching the host.  ``hidden_map_count`` counts VMAs the
    process has outside the model (what a ``pad`` op creates), and takes part
    in every map_count check.  ``mmap_limit`` is the top of the area searched
    for hint-less mappings: everything from there up is treated as occupied
    (vDSO, stack).  ``ids`` numbers anon_vmas and userfaultfd contexts; a
    fork child shares its parent's, so that numbers stay unique in a run and
    the same program always gets the same numbers.
    """

    def __init__(
        self,
        target: Target = DEFAULT_TARGET,
        *,
        mmap_base: int | None = None,
        mmap_limit: int | None = None,
        start_brk: int = 0x10000000,
        stack_rlimit: int = DEFAULT_STACK_RLIMIT,
        ids: IdSource | None = None,
    ) -> None:
        self.target = target
        self.vmas = VmaStore()
        self.max_map_count = target.limits.max_map_count
        self.hidden_map_count = 0
        self.def_flags = 0
        self.total_vm = 0
        self.locked_vm = 0
        self.data_vm = 0
        self.exec_vm = 0
        self.stack_vm = 0
        # Pages of VM_ACCOUNT VMAs: this process's share of vm_committed_as.
        self.committed_vm = 0
        self.mmap_base = mmap_base if mmap_base is not None else default_mmap_base(target, stack_rlimit)
        self.mmap_min_addr = target.mmap_min_addr
        self.mmap_limit = mmap_limit if mmap_limit is not None else self.mmap_base
        self.task_size = target.task_size
        self.map_window = target.map_window
        self.stack_guard_gap = target.limits.stack_guard_gap
        self.start_brk = start_brk
        self.brk = start_brk
        self.stack_rlimit = stack_rlimit
        self.ksm_merge_any = False
        self.task_policy: Mempolicy | None = None
        self.ids = ids if ids is not None else IdSource()
        self.ids.register(self)
        # Guard-region markers (MADV_GUARD_INSTALL) live in page tables, not in VMAs.
        self.guards = RangeSet()
        # Addresses with a page table entry (what a userfaultfd fault depends on), and the
        # subset that maps a real page rather than the shared zero page (what mbind's
        # MPOL_MF_STRICT checks).
        self.ptes = RangeSet()
        self.pages = RangeSet()
        # x86 protection keys (mm->context and the task's PKRU): which keys are allocated, the key
        # execute-only memory uses (-1: none yet), and the access rights register.  Without OSPKE the
        # kernel never initialises them, so they stay zero (see vmasim.core.prot).
        pku = target.cpu.pku
        self.pkey_allocation_map = 1 if pku else 0
        self.execute_only_pkey = -1 if pku else 0
        self.pkru = INIT_PKRU if pku else 0
        # Set once the address space is torn down (execve): what still points at it (a userfaultfd
        # context) finds no live mm.
        self.exited = False

    # --- map_count -------------------------------------------------------

    @property
    def map_count(self) -> int:
        """The number of VMAs, as mm->map_count counts them."""
        return len(self.vmas) + self.hidden_map_count

    def __iter__(self) -> Iterator[Vma]:
        return iter(self.vmas)

    # --- accounting --------------------------------------------------------

    def _charge(self, flags: int, pages: int) -> None:
        # Like vm_stat_account(): the counters a VMA of these flags adds ``pages`` to (negative: takes away).
        # The three categories are is_exec_mapping(), is_stack_mapping() and is_data_mapping(), inlined.
        self.total_vm += pages
        if flags & VM_ACCOUNT:
            self.committed_vm += pages
        if flags & VM_LOCKED:
            self.locked_vm += pages
        if flags & (VM_EXEC | VM_WRITE | VM_STACK) == VM_EXEC:
            self.exec_vm += pages
        elif flags & VM_STACK:
            self.stack_vm += pages
        elif flags & (VM_WRITE | VM_SHARED) == VM_WRITE:
            self.data_vm += pages

    def link(self, vma: Vma) -> None:
        """Insert a new VMA (map_count += 1)."""
        self.vmas.insert(vma)
        self._charge(vma.vm_flags, (vma.end - vma.start) >> PAGE_SHIFT)

    def link_all(self, vmas: list[Vma]) -> None:
        """Fill an empty address space with ``vmas`` (in address order, disjoint) in O(n), as dup_mmap()
        duplicates the parent's tree in one go; each is counted as :meth:`link` would."""
        self.vmas.fill(vmas)
        charge = self._charge
        for vma in vmas:
            charge(vma.vm_flags, (vma.end - vma.start) >> PAGE_SHIFT)

    def insert_vm_struct(self, vma: Vma) -> None:
        """Like insert_vm_struct(): add a mapping built outside the mmap path (an executable's image, a
        runner's own mappings, an import from /proc); its range must be free."""
        if self.vmas.find_intersection(vma.start, vma.end) is not None:
            raise ValueError(f"insert_vm_struct: {vma.start:#x}-{vma.end:#x} overlaps a VMA")
        self.link(vma)

    def install_special_mapping(self, start: int, end: int, vm_flags: int, name: str) -> Vma:
        """Like _install_special_mapping() (vDSO, vvar): no file, but vm_ops with a close hook, so the VMA is
        never anonymous and never merges away."""
        vma = Vma(start, end, 0, vm_flags, file=File(Inode("special", name)), has_close=True)
        self.insert_vm_struct(vma)
        return vma

    def add_foreign_vmas(self, count: int) -> None:
        """Count ``count`` more VMAs that the process has but the model does not hold (a runner's stack and
        padding): they take part in every map_count check."""
        if count < 0:
            raise ValueError("add_foreign_vmas: count must not be negative")
        self.hidden_map_count += count

    def unlink(self, vma: Vma) -> None:
        """Remove a VMA for good (map_count -= 1)."""
        self._charge(vma.vm_flags, -((vma.end - vma.start) >> PAGE_SHIFT))
        self.vmas.remove(vma)

    def set_range(self, vma: Vma, start: int, end: int, pgoff: int) -> None:
        """Change a VMA's bounds and pgoff, keeping the counters right."""
        grown = ((end - start) - (vma.end - vma.start)) >> PAGE_SHIFT
        self.vmas.set_range(vma, start, end)
        vma.pgoff = pgoff
        if grown:
            self._charge(vma.vm_flags, grown)

    def move_boundary(self, lower: Vma, upper: Vma, addr: int) -> None:
        """Move the boundary between two touching VMAs to ``addr``, one giving the other pages (a merge that
        takes part of a VMA into its neighbour), keeping ``upper``'s pgoff and the counters right."""
        moved = (addr - upper.start) >> PAGE_SHIFT  # pages ``lower`` gains; negative when it gives them
        self.vmas.move_boundary(lower, upper, addr)
        upper.pgoff += moved
        if moved:
            self._charge(lower.vm_flags, moved)
            self._charge(upper.vm_flags, -moved)

    def coalesce(self, run: tuple[Vma, ...], keep: Vma, pgoff: int) -> None:
        """``keep``, one of ``run`` (VMAs next to each other in the tree), grows over the whole run and the
        holes between them, with ``pgoff``; the others are unlinked.  The counters change by the difference."""
        grown = (run[-1].end - run[0].start - (keep.end - keep.start)) >> PAGE_SHIFT
        for vma in run:
            if vma is not keep:
                self._charge(vma.vm_flags, -((vma.end - vma.start) >> PAGE_SHIFT))
        self.vmas.coalesce(run[0], len(run), keep)
        keep.pgoff = pgoff
        if grown:
            self._charge(keep.vm_flags, grown)

    def set_flags(self, vma: Vma, vm_flags: int) -> None:
        """Change a VMA's vm_flags, keeping the counters right."""
        if vma.vm_flags == vm_flags:
            return
        pages = (vma.end - vma.start) >> PAGE_SHIFT
        self._charge(vma.vm_flags, -pages)
        vma.vm_flags = vm_flags
        self._charge(vm_flags, pages)

    # --- limits ----------------------------------------------------------------

    def vm_enough_memory(self, pages: int) -> bool:
        """Like __vm_enough_memory(): may ``pages`` more pages be committed under the overcommit policy?

        Heuristic mode refuses one request larger than RAM plus swap; "never"
        mode compares with the commit limit, counting only this process's
        own commitments (other processes' are not modelled).
        """
        limits, memory = self.target.limits, self.target.memory
        if limits.overcommit_memory == 1:
            return True
        if limits.overcommit_memory == 0:
            return pages <= memory.ram_pages + memory.swap_pages
        if limits.overcommit_kbytes:
            allowed = limits.overcommit_kbytes >> (PAGE_SHIFT - 10)
        else:
            allowed = memory.ram_pages * limits.overcommit_ratio // 100
        allowed += memory.swap_pages
        return self.committed_vm + pages <= allowed

    def may_expand_vm(self, vm_flags: int, pages: int) -> bool:
        """Like may_expand_vm(): RLIMIT_AS on the whole address space, RLIMIT_DATA on data mappings."""
        limits = self.target.limits
        if limits.rlimit_as is not None and self.total_vm + pages > limits.rlimit_as >> PAGE_SHIFT:
            return False
        data = limits.rlimit_data
        return data is None or not is_data_mapping(vm_flags) or self.data_vm + pages <= data >> PAGE_SHIFT

    def mlock_future_ok(self, vm_flags: int, nbytes: int) -> bool:
        """Like mlock_future_ok(): locking ``nbytes`` more stays within RLIMIT_MEMLOCK (or need not)."""
        limits = self.target.limits
        if not vm_flags & VM_LOCKED or limits.privileged or limits.rlimit_memlock is None:
            return True
        return (nbytes >> PAGE_SHIFT) + self.locked_vm <= limits.rlimit_memlock >> PAGE_SHIFT

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

    def unmap_mapping_range(self, inode: Inode, first: int) -> None:
        """Like unmap_mapping_range(..., even_cows=1): no process of the family keeps a page table entry
        for page ``first`` or later of ``inode`` (truncation), private copies included.

        O(number of VMAs) in each address space, as the kernel walks the file's mappings.
        """
        for space in self.ids.spaces():
            assert isinstance(space, MmStruct)
            for vma in space.vmas:
                if vma.file is not None and vma.file.inode is inode and vma.pgoff + vma.pages > first:
                    space.zap_range(vma.start + max(0, first - vma.pgoff) * PAGE_SIZE, vma.end)

    def move_page_tables(self, old: int, length: int, new: int) -> None:
        """Like move_page_tables(): PTEs and guard markers of ``[old, old+length)`` move to ``new``."""
        for table in (self.ptes, self.pages, self.guards):
            moved = table.slices(old, old + length)
            table.remove(old, old + length)
            for s, e in moved:
                table.add(s - old + new, e - old + new)

    # --- policies ------------------------------------------------------------

    def effective_policy(self, vma: Vma) -> Mempolicy | None:
        """The policy numa_maps shows for ``vma`` (show_numa_map() with __get_vma_policy()): its own (for
        shmem, the object's at the VMA's first page), else the task's; None is the default policy."""
        file = vma.file
        own = file.inode.shared_policy_at(vma.pgoff) if file is not None and file.inode.is_shmem else vma.policy
        return own if own is not None else self.task_policy

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
