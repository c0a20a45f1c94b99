"""Helpers shared by the tests: building VMAs by page number and checking the address-space invariants."""

from __future__ import annotations

from vmasim.core.flags import (
    VM_LOCKED,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_READ,
    VM_WRITE,
    is_data_mapping,
    is_exec_mapping,
    is_stack_mapping,
)
from vmasim.core.merge import VmaMergeStruct, vma_merge_new_range
from vmasim.core.mm import MmStruct
from vmasim.core.vma import AnonVma, Vma

P = 4096
RW = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE


def mk(
    mm: MmStruct,
    start: int,
    end: int,
    pgoff: int | None = None,
    flags: int = RW,
    anon: AnonVma | None = None,
    close: bool = False,
) -> Vma:
    """Link a VMA ``[start, end)`` given in pages (pgoff defaults to ``start``)."""
    vma = Vma(start * P, end * P, start if pgoff is None else pgoff, flags, anon_vma=anon, has_close=close)
    mm.link(vma)
    return vma


def new_range(mm: MmStruct, start: int, end: int, pgoff: int | None = None, flags: int = RW) -> Vma | None:
    """Propose a new range ``[start, end)`` (pages) to vma_merge_new_range(); the merged VMA or None."""
    prev = mm.vmas.prev_of_addr(start * P)
    nxt = mm.find_vma(end * P)
    vmg = VmaMergeStruct(mm=mm, start=start * P, end=end * P, pgoff=start if pgoff is None else pgoff,
                         vm_flags=flags, prev=prev, next=nxt)
    return vma_merge_new_range(vmg)


def layout(mm: MmStruct) -> list[tuple[int, int, int]]:
    """The VMAs as (start page, end page, pgoff)."""
    return [(v.start // P, v.end // P, v.pgoff) for v in mm.vmas]


def check_invariants(mm: MmStruct) -> None:
    """Sorted, non-overlapping, page-aligned, map_count and counters equal to what the VMAs add up to."""
    vmas = list(mm.vmas)
    last_end = 0
    total = locked = data = exec_ = stack = 0
    for v in vmas:
        assert v.start % P == 0 and v.end % P == 0, v
        assert v.start < v.end, v
        assert v.start >= last_end, f"overlap or disorder at {v}"
        last_end = v.end
        pages = (v.end - v.start) // P
        total += pages
        if v.vm_flags & VM_LOCKED:
            locked += pages
        if is_exec_mapping(v.vm_flags):
            exec_ += pages
        elif is_stack_mapping(v.vm_flags):
            stack += pages
        elif is_data_mapping(v.vm_flags):
            data += pages
        if v.fork_child:
            assert v.anon_vma is not None
    assert mm.map_count == len(vmas) + mm.hidden_map_count
    # Page-table state (PTEs, real pages, guard markers) only exists inside VMAs.
    for table in (mm.ptes, mm.pages, mm.guards):
        for s, e in table:
            cursor = s
            for vma in mm.vmas.range(s, e):
                assert vma.start <= cursor, f"page state over a hole at {cursor:#x}"
                cursor = vma.end
            assert cursor >= e, f"page state over a hole at {cursor:#x}"
    for s, e in mm.pages:
        assert mm.ptes.slices(s, e) == [(s, e)], "a real page without a PTE"
    assert (mm.total_vm, mm.locked_vm, mm.data_vm, mm.exec_vm, mm.stack_vm) == (total, locked, data, exec_, stack)
