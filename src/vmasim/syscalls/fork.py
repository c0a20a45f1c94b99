"""fork(2) as far as the address space goes: kernel/fork.c's dup_mmap()."""

from __future__ import annotations

from vmasim.core.flags import VM_DONTCOPY, VM_LOCKED_MASK, VM_MAYBE_GUARD, VM_NOHUGEPAGE, VM_WIPEONFORK
from vmasim.core.mm import MmStruct
from vmasim.core.ranges import RangeSet
from vmasim.core.vma import AnonVma, Vma
from vmasim.syscalls.userfaultfd import dup_userfaultfd


def dup_mm(parent: MmStruct) -> MmStruct:
    """The child's address space: a copy of the parent's VMAs, never merged.

    VM_DONTCOPY VMAs are left out; VM_LOCKED/VM_LOCKONFAULT are cleared;
    userfaultfd registrations are dropped (no UFFD_FEATURE_EVENT_FORK); a
    VM_WIPEONFORK VMA starts without an anon_vma; every other faulted VMA
    gets an anon_vma of its own chained to the parent's, which makes it a
    fork child (anon_vma_fork()).
    """
    child = MmStruct(
        parent.target,
        mmap_base=parent.mmap_base,
        mmap_limit=parent.mmap_limit,
        start_brk=parent.start_brk,
        stack_rlimit=parent.stack_rlimit,
        ids=parent.ids,
    )
    child.max_map_count = parent.max_map_count
    child.brk = parent.brk
    child.hidden_map_count = parent.hidden_map_count
    child.def_flags = parent.def_flags & VM_NOHUGEPAGE
    child.ksm_merge_any = parent.ksm_merge_any
    child.task_policy = parent.task_policy
    # dup_mm() copies mm->context (arch_dup_pkeys()), and the child's thread inherits PKRU.
    child.pkey_allocation_map = parent.pkey_allocation_map
    child.execute_only_pkey = parent.execute_only_pkey
    child.pkru = parent.pkru
    ids = child.ids
    copied: list[Vma] = []
    # Where page tables are copied, as disjoint [start, end) spans in address order.
    spans: list[list[int]] = []
    for vma in parent.vmas:
        flags = vma.vm_flags
        if flags & VM_DONTCOPY:
            continue
        new = vma.copy()
        new.vm_flags = flags & ~VM_LOCKED_MASK
        if new.uffd_ctx is not None:
            dup_userfaultfd(new)
        if vma.anon_vma is None or flags & VM_WIPEONFORK:
            new.anon_vma = None
            new.fork_child = False
        else:
            new.anon_vma = AnonVma(ids)
            new.fork_child = True
        # Page tables are copied only where there is private memory (copy_page_range()).
        if new.anon_vma is not None or (flags & VM_MAYBE_GUARD and not flags & VM_WIPEONFORK):
            if spans and spans[-1][1] == vma.start:
                spans[-1][1] = vma.end
            else:
                spans.append([vma.start, vma.end])
        copied.append(new)
    child.link_all(copied)
    child.ptes = _copy_within(parent.ptes, spans)
    child.pages = _copy_within(parent.pages, spans)
    # Guard markers are page table entries too: a VM_WIPEONFORK VMA starts with none.
    child.guards = _copy_within(parent.guards, spans)
    return child


def _copy_within(table: RangeSet, spans: list[list[int]]) -> RangeSet:
    """The ranges of ``table`` inside ``spans`` (both in address order), in one pass over both.

    Usually every range lies inside the spans (page tables exist only in
    VMAs, and most VMAs' are copied), and then the table is copied whole.
    """
    ranges = list(table)
    pieces: list[tuple[int, int]] = []
    k = 0
    for start, end in spans:
        while k < len(ranges) and ranges[k][1] <= start:
            k += 1
        while k < len(ranges) and ranges[k][0] < end:
            s, e = ranges[k]
            pieces.append((max(s, start), min(e, end)))
            if e > end:
                break  # the range goes on into the next span
            k += 1
    if pieces == ranges:
        return table.copy()
    return RangeSet.from_runs(pieces)
