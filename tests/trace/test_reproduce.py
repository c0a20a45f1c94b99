"""Reproducers built from divergences made by hand: layouts with a heap, brk calls, and what cannot be rebuilt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vmasim import constants as C
from vmasim.api import AddressSpace
from vmasim.program import parse_program
from vmasim.trace.check import Divergence
from vmasim.trace.mirror import before_call
from vmasim.trace.reproduce import NotExpressible, build, reproduce, verify_on_model
from vmasim.trace.syscalls import Call

PAGE = C.PAGE_SIZE
RW = C.PROT_READ | C.PROT_WRITE
ANON = C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_FIXED
# A traced process's start_brk: randomised, far from where the runner's heap starts.
S = 0x555555A00000


def _traced(heap: int) -> AddressSpace:
    """A model address space like a traced process's: the executable's bss a little below start_brk (the gap ASLR
    leaves) and a heap of ``heap`` bytes grown by brk and written."""
    space = AddressSpace()
    space.mm.start_brk = space.mm.brk = space.initial_break = S
    space.mmap(S - 0x5000, 0x2000, RW, ANON)
    if heap:
        assert space.brk(S + heap) == S + heap
        space.touch(S, PAGE, True)
    return space


def _divergence(space: AddressSpace, call: Call) -> Divergence:
    """A divergence after ``call`` on ``space``, recorded as the tracer records one (the call is not applied)."""
    div = Divergence(call.describe(), "result", "made by hand")
    div.context = (call, before_call(space.mm, call))
    return div


def _brk(addr: int, ret: int) -> Call:
    return Call("brk", (addr, 0, 0, 0, 0, 0), 1, ret=ret)


def _heap_entry(start: int, end: int, perms: str = "rw-p", flags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"start": f"+{start:#x}", "end": f"+{end:#x}", "perms": perms, "offset": "0x0", "file": None,
            "flags": ["rd", "wr", "mr", "mw", "me", "ac", *flags] if perms == "rw-p" else list(flags),
            "policy": "default"}


def _brk_against_a_mapping_above(target: int) -> Divergence:
    space = _traced(0x21000)
    # A mapping placed right above the heap, in the way of its growth; and a library far above.
    space.mmap(S + 0x40000, PAGE, C.PROT_READ, ANON)
    space.mmap(0x7F0000000000, PAGE, C.PROT_READ, ANON)
    return _divergence(space, _brk(S + target, S + 0x21000))


def test_a_brk_divergence_rebuilds_the_heap_in_the_runners_heap() -> None:
    div = _brk_against_a_mapping_above(0x3F001)
    assert div.context is not None
    call, before = div.context
    assert isinstance(call, Call) and before is not None
    program, where = build(call, before)
    parse_program(program)
    assert program["ops"] == [
        {"op": "sbrk", "increment": "0x21000", "as": "heap"},
        {"op": "touch", "addr": "heap+0x0", "length": "4K"},
        {"op": "mmap", "addr": "heap+0x40000", "length": "0x1000", "prot": "r",
         "flags": ["private", "fixed_noreplace", "anonymous"]},
        {"op": "brk", "addr": "heap+0x3f001"},
    ]
    # The executable below the heap and the library far above cannot change what brk does: left out.
    assert [v.start - S for v in where.vmas] == [0, 0x40000]
    assert verify_on_model(program, where) is None
    reproduce(div)
    assert div.program == program
    assert div.program_note.startswith("rebuilds the layout before the call on the model"), div.program_note


@pytest.mark.kernel
@pytest.mark.parametrize(("target", "expect_break", "heap_end"), [
    (0x3F000, "+0x3f000", 0x3F000),  # a page below the mapping is left free: the growth is allowed
    (0x3F001, "+0x21000", 0x21000),  # the new break's page would touch it: refused, the break stays
])
def test_the_brk_reproducer_runs_on_the_kernel(target: int, expect_break: str, heap_end: int) -> None:
    from vmasim.kernel import run_program

    div = _brk_against_a_mapping_above(target)
    reproduce(div)
    assert div.program is not None, div.program_note
    report = run_program(parse_program(div.program))
    assert all(r.get("errno") is None and r.get("fault") is None for r in report["results"])
    assert report["results"][-1] == {"op": "brk", "ret": expect_break, "errno": None}
    assert report["heap"] == [_heap_entry(0, heap_end)]
    # The model of the runner agrees: the divergence was made by hand, not by the model.
    assert "model and kernel agree" in div.program_note


def _cut_heap() -> AddressSpace:
    """A heap cut into pieces: a read-only page, a hole, a don't-dump piece, and an unaligned break."""
    space = _traced(0x20000)
    space.brk(S + 0x1F010)
    space.mprotect(S + 0x4000, PAGE, C.PROT_READ)
    space.munmap(S + 0x8000, 2 * PAGE)
    space.madvise(S + 0x10000, 0x4000, C.MADV_DONTDUMP)
    return space


def test_a_cut_heap_is_rebuilt_piece_by_piece() -> None:
    space = _cut_heap()
    call = Call("mprotect", (S + 0xC000, PAGE, C.PROT_READ, 0, 0, 0), 1)
    div = _divergence(space, call)
    assert div.context is not None and div.context[1] is not None
    program, where = build(call, div.context[1])
    ops = program["ops"]
    assert ops[0] == {"op": "sbrk", "increment": "0x1f010", "as": "heap"}
    assert {"op": "munmap", "addr": "heap+0x8000", "length": "0x2000"} in ops
    assert {"op": "madvise", "addr": "heap+0x10000", "length": "0x4000", "advice": "dontdump"} in ops
    assert ops[-1] == {"op": "mprotect", "addr": "heap+0xc000", "length": "0x1000", "prot": "r"}
    assert verify_on_model(program, where) is None
    reproduce(div)
    assert div.program is not None, div.program_note


@pytest.mark.kernel
def test_a_cut_heap_is_rebuilt_on_the_kernel() -> None:
    from vmasim.kernel import run_program

    # For brk the tracer records the whole heap: every piece is rebuilt, then the last one grows.
    div = _divergence(_cut_heap(), _brk(S + 0x30000, S + 0x30000))
    reproduce(div)
    assert div.program is not None, div.program_note
    report = run_program(parse_program(div.program))
    assert report["results"][-1] == {"op": "brk", "ret": "+0x30000", "errno": None}
    read_only = ("rd", "mr", "mw", "me", "ac")
    assert report["heap"] == [
        _heap_entry(0, 0x4000), _heap_entry(0x4000, 0x5000, "r--p", read_only), _heap_entry(0x5000, 0x8000),
        _heap_entry(0xA000, 0x10000), _heap_entry(0x10000, 0x14000, flags=("dd",)), _heap_entry(0x14000, 0x30000),
    ]
    assert "model and kernel agree" in div.program_note


def test_brk_queries_and_impossible_breaks() -> None:
    space = _traced(0x3000)
    query, _ = build(_brk(0, S + 0x3000), before_call(space.mm, _brk(0, S + 0x3000)))
    assert query["ops"][-1] == {"op": "brk", "addr": 0}
    far = _brk(0xFFFF800000000000, S + 0x3000)
    beyond, _ = build(far, before_call(space.mm, far))
    assert beyond["ops"][-1] == {"op": "brk", "addr": "0xffff800000000000"}  # refused on every side


def test_an_empty_heap_is_named_too() -> None:
    space = _traced(0)
    call = _brk(S + 0x21000, S + 0x21000)
    program, where = build(call, before_call(space.mm, call))
    assert program["ops"] == [{"op": "sbrk", "increment": "0x0", "as": "heap"},
                              {"op": "brk", "addr": "heap+0x21000"}]
    assert verify_on_model(program, where) is None


_MPROTECT_HEAP_START = Call("mprotect", (S, PAGE, C.PROT_READ, 0, 0, 0), 1)


@pytest.mark.parametrize(("setup", "call", "reason"), [
    # Making the heap's first page read-only could merge it with the read-only page right below.
    (lambda s: s.mmap(S - PAGE, PAGE, C.PROT_READ, ANON), _MPROTECT_HEAP_START, "right below"),
    # Anonymous memory mapped right below the heap merged with it: the heap VMA starts below start_brk.
    (lambda s: s.mmap(S - PAGE, PAGE, RW, ANON), _MPROTECT_HEAP_START, "straddles the heap's start"),
    (lambda s: None, Call("munmap", (S - 0x5000, 0x7000, 0, 0, 0, 0), 1), "reaches from"),
], ids=["memory-below-the-heap", "heap-merged-below-start-brk", "range-across-the-heap-start"])
def test_what_the_runner_cannot_place_is_not_expressible(
        setup: Callable[[AddressSpace], object], call: Call, reason: str) -> None:
    space = _traced(0x10000)
    setup(space)
    with pytest.raises(NotExpressible, match=reason):
        build(call, before_call(space.mm, call))
    div = _divergence(space, call)
    reproduce(div)
    assert div.program is None and reason in div.program_note


def test_a_layout_without_the_heap_stays_in_the_window() -> None:
    space = _traced(0x10000)
    space.mmap(0x7F0000000000, PAGE, C.PROT_READ, ANON)
    space.mmap(0x7F0000001000, 4 * PAGE, RW, ANON)
    call = Call("mprotect", (0x7F0000002000, PAGE, C.PROT_READ, 0, 0, 0), 1)
    program, where = build(call, before_call(space.mm, call))
    assert not where.has_heap
    assert all(op["op"] != "sbrk" for op in program["ops"])
    assert program["ops"][-1]["addr"] == "W+0x2000"
    assert verify_on_model(program, where) is None


def test_a_far_heap_neighbour_is_rebuilt_in_the_heap() -> None:
    # The heap is the previous VMA of a call far above it: rebuilt in the runner's heap, not stretching the window
    # from the heap to the call.
    space = _traced(0x10000)
    space.mmap(0x7F0000000000, 4 * PAGE, RW, ANON)
    call = Call("mprotect", (0x7F0000001000, PAGE, C.PROT_READ, 0, 0, 0), 1)
    program, where = build(call, before_call(space.mm, call))
    assert program["ops"][0] == {"op": "sbrk", "increment": "0x10000", "as": "heap"}
    assert program["ops"][-1]["addr"] == "W+0x1000"
    assert program["window"]["length"] == "0x200000"
    assert verify_on_model(program, where) is None


def test_the_tracer_records_the_whole_heap_for_brk() -> None:
    space = _cut_heap()
    space.mmap(S + 0x80000, PAGE, RW, ANON)
    before = before_call(space.mm, _brk(S + 0x30000, 0))
    assert (before.start_brk, before.brk) == (S, S + 0x1F010)
    # Every heap VMA, the bss below (the neighbour) and the first VMA above what the break reaches.
    assert [v.start - S for v in before.vmas] == [-0x5000, 0, 0x4000, 0x5000, 0xA000, 0x10000, 0x14000, 0x80000]
