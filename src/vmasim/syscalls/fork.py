"""fork(2) as far as the address space goes: kernel/fork.c's dup_mmap()."""

from __future__ import annotations

from vmasim.core.flags import VM_DONTCOPY, VM_LOCKED_MASK, VM_MAYBE_GUARD, VM_NOHUGEPAGE, VM_WIPEONFORK
from vmasim.core.mm import MmStruct
from vmasim.core.vma import AnonVma
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
    child.guards = parent.guards.copy()
    for vma in parent.vmas:
        if vma.vm_flags & VM_DONTCOPY:
            child.guards.remove(vma.start, vma.end)
            continue
        new = vma.copy()
        new.vm_flags &= ~VM_LOCKED_MASK
        if new.uffd_ctx is not None:
            dup_userfaultfd(new)
        if vma.anon_vma is None or vma.vm_flags & VM_WIPEONFORK:
            new.anon_vma = None
            new.fork_child = False
        else:
            new.anon_vma = AnonVma(child.ids)
            new.fork_child = True
        # Page tables are copied only where there is private memory (copy_page_range()).
        if new.anon_vma is not None or (vma.vm_flags & VM_MAYBE_GUARD and not vma.vm_flags & VM_WIPEONFORK):
            for theirs, ours in ((parent.ptes, child.ptes), (parent.pages, child.pages)):
                for s, e in theirs.slices(vma.start, vma.end):
                    ours.add(s, e)
        child.link(new)
    return child
