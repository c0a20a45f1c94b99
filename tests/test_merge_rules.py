"""The kernel's own VMA merge unit scenarios (tools/testing/vma), through the model's internal API."""

from __future__ import annotations

import pytest

from vmasim.core.errors import SplitRefused
from vmasim.core.flags import VM_DONTEXPAND, VM_IO, VM_MAYBE_GUARD, VM_MIXEDMAP, VM_PFNMAP, VM_READ
from vmasim.core.merge import (
    VmaMergeStruct,
    split_vma,
    vma_expand,
    vma_merge_existing_range,
    vma_merge_extend,
    vma_merge_new_range,
    vma_modify_flags,
)
from vmasim.core.mm import MmStruct
from vmasim.core.vma import AnonVma, IdSource
from vmasim.syscalls.munmap import do_vmi_munmap

from vmahelpers import RW, P, check_invariants, layout, mk, new_range

IDS = IdSource()

RO = RW & ~2  # a "different" flag set for modifications


@pytest.fixture
def mm() -> MmStruct:
    return MmStruct()


def modify(mm: MmStruct, vma, start: int, end: int, flags: int = RW):
    """Propose [start, end) pages of ``vma`` with ``flags`` to vma_merge_existing_range()."""
    prev = vma if start * P > vma.start else mm.vma_prev(vma)
    vmg = VmaMergeStruct.for_vma(mm, prev, vma, start * P, end * P)
    vmg.vm_flags = flags
    return vma_merge_existing_range(vmg)


def test_t1_simple_merge(mm):
    mk(mm, 0, 1)
    mk(mm, 2, 3)
    merged = new_range(mm, 1, 2)
    assert merged is not None
    assert layout(mm) == [(0, 3, 0)]
    assert mm.map_count == 1
    check_invariants(mm)


def test_t2_simple_modify(mm):
    vma = mk(mm, 0, 3)
    got = vma_modify_flags(mm, None, vma, 1 * P, 2 * P, RO)
    assert got is vma  # the original object now covers exactly the range
    assert layout(mm) == [(0, 1, 0), (1, 2, 1), (2, 3, 2)]
    assert mm.map_count == 3
    check_invariants(mm)


def test_t3_simple_expand(mm):
    vma = mk(mm, 0, 1)
    vmg = VmaMergeStruct(mm=mm, start=0, end=3 * P, pgoff=0, vm_flags=RW, target=vma, middle=vma)
    vma_expand(vmg)
    assert layout(mm) == [(0, 3, 0)]
    check_invariants(mm)


def test_t4_simple_shrink(mm):
    # The kernel's vma_shrink() serves exec's stack relocation; in the model a VMA shrinks when its tail is
    # unmapped: one VMA is left, keeping its pgoff.
    mk(mm, 0, 3)
    do_vmi_munmap(mm, 1 * P, 2 * P)
    assert layout(mm) == [(0, 1, 0)]
    check_invariants(mm)


@pytest.mark.parametrize("sticky_on", [None, "a", "b", "new"])
def test_t5_merge_new_sequence(mm, sticky_on):
    x = AnonVma(IDS)
    g = VM_MAYBE_GUARD
    a = mk(mm, 0, 2, close=True, flags=RW | (g if sticky_on == "a" else 0))
    b = mk(mm, 3, 4, flags=RW | (g if sticky_on == "b" else 0))
    mk(mm, 0xB, 0xC)
    assert mm.map_count == 3
    # (a) far from everything: no merge
    assert new_range(mm, 7, 9) is None
    d = mk(mm, 7, 9)
    assert mm.map_count == 4
    # (b) B faulted; filling [2,3) merges A, the range and B
    b.anon_vma = x
    merged = new_range(mm, 2, 3, flags=RW | (g if sticky_on == "new" else 0))
    assert merged is a and layout(mm)[0] == (0, 4, 0) and a.anon_vma is x
    assert mm.map_count == 3
    # (c) [4,5) extends A
    assert new_range(mm, 4, 5) is a
    assert layout(mm)[0] == (0, 5, 0) and mm.map_count == 3
    # (d) D faulted with X and a close hook: [6,7) is prepended to D
    d.anon_vma = x
    d.has_close = True
    assert new_range(mm, 6, 7) is d
    assert (d.start // P, d.end // P, d.pgoff) == (6, 9, 6) and mm.map_count == 3
    # (e) D's close hook removed: [5,6) joins A, range and D
    d.has_close = False
    assert new_range(mm, 5, 6) is a
    assert layout(mm)[0] == (0, 9, 0) and mm.map_count == 2
    # (f) C faulted with X: [0xa,0xb) is prepended to C
    c = mm.find_vma(0xB * P)
    c.anon_vma = x
    assert new_range(mm, 0xA, 0xB) is c
    assert (c.start // P, c.end // P, c.pgoff) == (0xA, 0xC, 0xA) and mm.map_count == 2
    # (g) [9,0xa) joins everything
    assert new_range(mm, 9, 0xA) is a
    assert layout(mm) == [(0, 0xC, 0)] and mm.map_count == 1
    assert bool(a.vm_flags & g) == (sticky_on is not None)
    check_invariants(mm)


@pytest.mark.parametrize("special", [VM_IO, VM_DONTEXPAND, VM_PFNMAP, VM_MIXEDMAP])
def test_t6_special_flags_never_merge(mm, special):
    mk(mm, 0, 3, flags=RW | special)
    assert new_range(mm, 3, 4, flags=RW | special) is None
    v = mk(mm, 3, 4)
    assert modify(mm, v, 3, 4, RW | special) is None
    assert mm.map_count == 2


def test_t7a_new_range_next_with_close(mm):
    mk(mm, 0, 3)
    mk(mm, 5, 9, close=True)
    new_range(mm, 3, 5)
    assert layout(mm) == [(0, 5, 0), (5, 9, 5)]
    assert mm.map_count == 2


def test_t7b_to_e_close_hooks(mm):
    # (b) P, V(close): modifying all of V would delete it -> no merge
    mk(mm, 0, 3)
    v = mk(mm, 3, 5, flags=RO, close=True)
    assert modify(mm, v, 3, 5) is None
    # (c) V(close), N: same
    mm2 = MmStruct()
    v2 = mk(mm2, 3, 5, flags=RO, close=True)
    mk(mm2, 5, 9)
    assert modify(mm2, v2, 3, 5) is None
    # (d) P, V(close), N
    mm3 = MmStruct()
    mk(mm3, 0, 3)
    v3 = mk(mm3, 3, 5, flags=RO, close=True)
    mk(mm3, 5, 9)
    assert modify(mm3, v3, 3, 5) is None
    # (e) P, V, N(close): merge with P only
    mm4 = MmStruct()
    p = mk(mm4, 0, 3)
    v4 = mk(mm4, 3, 5, flags=RO)
    n = mk(mm4, 5, 9, close=True)
    assert modify(mm4, v4, 3, 5) is p
    assert layout(mm4) == [(0, 5, 0), (5, 9, 5)] and mm4.map_count == 2
    assert mm4.find_vma(5 * P) is n


def test_t8_new_with_close_on_both(mm):
    mk(mm, 0, 2, close=True)
    mk(mm, 5, 7, close=True)
    new_range(mm, 2, 5)
    assert layout(mm) == [(0, 5, 0), (5, 7, 5)]
    assert mm.map_count == 2


def test_t9_merge_existing(mm):
    # (a) right partial
    v = mk(mm, 2, 6, flags=RO)
    n = mk(mm, 6, 9)
    v.anon_vma = AnonVma(IDS)
    assert modify(mm, v, 3, 6) is n
    assert layout(mm) == [(2, 3, 2), (3, 9, 3)] and n.anon_vma is v.anon_vma
    # (b) right full
    assert modify(mm, v, 2, 3) is n
    assert layout(mm) == [(2, 9, 2)] and mm.map_count == 1
    # (c) left partial, (d) left full
    mm2 = MmStruct()
    p = mk(mm2, 0, 3)
    v2 = mk(mm2, 3, 7, flags=RO)
    assert modify(mm2, v2, 3, 6) is p
    assert layout(mm2) == [(0, 6, 0), (6, 7, 6)] and mm2.map_count == 2
    assert modify(mm2, v2, 6, 7) is p
    assert layout(mm2) == [(0, 7, 0)] and mm2.map_count == 1
    # (e) both
    mm3 = MmStruct()
    p3 = mk(mm3, 0, 3)
    v3 = mk(mm3, 3, 7, flags=RO)
    mk(mm3, 7, 9)
    assert modify(mm3, v3, 3, 7) is p3
    assert layout(mm3) == [(0, 9, 0)] and mm3.map_count == 1
    check_invariants(mm3)


@pytest.mark.parametrize("rng", [(4, 5), (5, 6), (6, 7), (4, 7), (4, 6)])
def test_t9f_inner_ranges_never_merge(rng):
    mm = MmStruct()
    mk(mm, 0, 3)
    v = mk(mm, 3, 8, flags=RO)
    mk(mm, 8, 0xA)
    assert modify(mm, v, *rng) is None
    assert mm.map_count == 3


def test_t10_anon_vma_non_mergeable():
    mm = MmStruct()
    x, y = AnonVma(IDS), AnonVma(IDS)
    p = mk(mm, 0, 3, anon=x)
    v = mk(mm, 3, 7, flags=RO)
    n = mk(mm, 7, 9, anon=y)
    assert modify(mm, v, 3, 7) is p
    assert layout(mm) == [(0, 7, 0), (7, 9, 7)] and n.anon_vma is y
    # new-range variant
    mm2 = MmStruct()
    p2 = mk(mm2, 0, 3, anon=x)
    mk(mm2, 7, 9, anon=y)
    assert new_range(mm2, 3, 7) is p2
    assert layout(mm2) == [(0, 7, 0), (7, 9, 7)]


def test_t11_dup_anon_vma():
    x = AnonVma(IDS)
    # expanding P over N(X)
    mm = MmStruct()
    p = mk(mm, 0, 3)
    mk(mm, 3, 5, anon=x)
    vmg = VmaMergeStruct(mm=mm, start=0, end=5 * P, pgoff=0, vm_flags=RW, target=p, next=mm.find_vma(3 * P))
    vma_expand(vmg)
    assert layout(mm) == [(0, 5, 0)] and p.anon_vma is x
    # P, V, N(X): modify all of V
    mm = MmStruct()
    p = mk(mm, 0, 3)
    v = mk(mm, 3, 5, flags=RO)
    mk(mm, 5, 8, anon=x)
    assert modify(mm, v, 3, 5) is p and p.anon_vma is x and layout(mm) == [(0, 8, 0)]
    # P, V(X), N
    mm = MmStruct()
    p = mk(mm, 0, 3)
    v = mk(mm, 3, 5, flags=RO, anon=x)
    mk(mm, 5, 8)
    assert modify(mm, v, 3, 5) is p and p.anon_vma is x and layout(mm) == [(0, 8, 0)]
    # P, V(X): modify [3,5)
    mm = MmStruct()
    p = mk(mm, 0, 3)
    v = mk(mm, 3, 8, flags=RO, anon=x)
    assert modify(mm, v, 3, 5) is p and p.anon_vma is x and layout(mm) == [(0, 5, 0), (5, 8, 5)]
    # V(X), N: modify [3,5)
    mm = MmStruct()
    v = mk(mm, 0, 5, flags=RO, anon=x)
    n = mk(mm, 5, 8)
    assert modify(mm, v, 3, 5) is n and n.anon_vma is x and layout(mm) == [(0, 3, 0), (3, 8, 3)]


def test_t12_merge_extend():
    mm = MmStruct()
    v = mk(mm, 0, 1)
    mk(mm, 3, 4)
    assert vma_merge_extend(mm, v, 2 * P) is v
    assert layout(mm) == [(0, 4, 0)] and mm.map_count == 1


def test_t13_expand_only_brk():
    mm = MmStruct()
    mk(mm, 0, 2)
    p = mk(mm, 3, 5)
    vmg = VmaMergeStruct(mm=mm, start=5 * P, end=9 * P, pgoff=5, vm_flags=RW, prev=p, just_expand=True)
    assert vma_merge_new_range(vmg) is p
    assert layout(mm) == [(0, 2, 0), (3, 9, 3)]


def test_fork_child_rules():
    """A fork child's anon_vma is never given to an unfaulted neighbour, nor does it accept one."""
    mm = MmStruct()
    child = mk(mm, 1, 6, anon=AnonVma(IDS))
    child.fork_child = True
    assert new_range(mm, 6, 11) is None  # forked_target_vma
    mm2 = MmStruct()
    src = mk(mm2, 1, 6, anon=AnonVma(IDS), flags=RO)
    src.fork_child = True
    mk(mm2, 6, 11)
    assert modify(mm2, src, 1, 6, RW) is None  # forked_source_vma


def test_split_refused_at_max_map_count():
    mm = MmStruct()
    mm.max_map_count = 2
    v = mk(mm, 0, 4)
    split_vma(mm, v, 1 * P, True)
    with pytest.raises(SplitRefused):
        split_vma(mm, v, 2 * P, True)
    # vma_modify keeps the first split when the second is refused
    mm = MmStruct()
    mm.max_map_count = 2
    v = mk(mm, 0, 4)
    with pytest.raises(OSError):
        vma_modify_flags(mm, v, v, 1 * P, 2 * P, RW & ~VM_READ)
    assert layout(mm) == [(0, 1, 0), (1, 4, 1)]
    check_invariants(mm)


def test_refusals_are_recorded_raw_and_worded_on_demand(mm, monkeypatch):
    import vmasim.core.merge as merge_module

    prev = mk(mm, 0, 1, flags=RO)
    mk(mm, 2, 3, pgoff=7)
    # Wording a refusal must not happen while merging: describe() is what made refusals slow.
    monkeypatch.setattr(merge_module, "describe", lambda flags: pytest.fail("worded on the merge path"))
    vmg = VmaMergeStruct(mm=mm, start=1 * P, end=2 * P, pgoff=1, vm_flags=RW, prev=prev, next=mm.find_vma(2 * P))
    assert vma_merge_new_range(vmg) is None
    monkeypatch.undo()
    assert [(r.code, r.side) for r in vmg.refusals] == [("flags", "prev"), ("pgoff", "next")]
    assert vmg.refusals[0].a == RW ^ RO
    assert [str(r) for r in vmg.refusals] == ["prev: vm_flags differ in VM_WRITE",
                                             "next: pgoff not contiguous (the lower part ends at 0x2, the upper "
                                             "starts at 0x7)"]
    assert vmg.refusals[1].reason() == "pgoff not contiguous (the lower part ends at 0x2, the upper starts at 0x7)"
