"""The generator draws from the whole program format (its coverage comes from the op definitions), aims its
ranges at every kind of layout, and the model runs what it makes within bounds (no kernel needed)."""

from __future__ import annotations

import importlib.machinery
import json
import random
from collections import Counter
from typing import Annotated, Any, ClassVar, Literal

import pytest
from pydantic import Field

from vmasim import constants as C
from vmasim.core import fault
from vmasim.core.fault import TouchResult
from vmasim.core.mm import MmStruct
from vmasim.fuzz import evaluate
from vmasim.fuzz.categories import CATEGORIES
from vmasim.fuzz.coverage import Coverage, field_items, format_items, legal_pairs, op_items, width_class
from vmasim.fuzz.evaluate import _op_ranges
from vmasim.fuzz.generate import ProgramGenerator, category_classes, generate_program, generate_programs
from vmasim.program import Op, parse_program, walk_ops
from vmasim.program.model import ModelTimeout, run_model, run_model_space
from vmasim.program.ops import _ADDR_T, _LEN_T, MMAP_FLAGS, Mmap, Mremap, OpDef
from vmasim.program.values import CType, Flags

#: ``vmasim fuzz``'s default count.
DEFAULT_COUNT = 1000


# --- the format's items -----------------------------------------------------------------------------


def test_items_come_from_the_definitions() -> None:
    items = set(format_items())
    assert ("mremap", "flags", "fixed|dontunmap") in items
    assert ("userfaultfd", "features", "sigbus") in items
    assert ("madvise", "advice", "raw:2**32+k") in items
    assert ("mlock2", "flags", "raw:2**32+k") in items
    assert ("prctl/set_memory_merge", "value", "raw:-1") in items
    # A pair whose bits one name already says is not a pair of its own.
    assert ("shared", "shared_validate") not in legal_pairs(MMAP_FLAGS)
    assert ("mmap", "flags", "shared|shared_validate") not in items
    # pad's headroom cannot go past 2**31 - 1: no edges for it.
    assert not [i for i in items if i[0] == "pad" and i[2].startswith("raw:")]
    assert width_class(4) is None and width_class((1 << 32) + 4) == "2**32+k" and width_class(-1) == "-1"


def test_op_items_reads_an_op_as_json() -> None:
    op = {"op": "mremap", "addr": "W", "old_length": "8K", "new_length": "8K",
          "flags": ["maymove", "fixed", "dontunmap"], "new_addr": "W+0x7d000"}
    items = {i[2] for i in op_items(op) if i[1] == "flags"}
    assert items == {"maymove", "fixed", "dontunmap", "maymove|fixed", "maymove|dontunmap", "fixed|dontunmap"}
    assert ("madvise", "advice", "raw:2**32+k") in op_items({"op": "madvise", "addr": "W", "length": 4096,
                                                             "advice": 2**32 + 4})
    assert ("touch", "write", "true") in op_items({"op": "touch", "addr": "W", "length": 4096})


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_value_of_the_format_is_generated_at_the_default_count(category: str) -> None:
    cov = Coverage(category_classes(category))
    for doc in generate_programs(0, DEFAULT_COUNT, category):
        cov.add(doc)
    assert cov.missing() == []
    assert "NEVER GENERATED" not in "\n".join(cov.table(with_kernel=False))


def test_every_op_runs_in_fork_children_and_forks_nest_three_deep() -> None:
    in_children: set[str] = set()
    depth = Counter[int]()

    def walk(ops: list[Any], d: int) -> None:
        for op in ops:
            if d:
                in_children.add(op["op"])
            if op["op"] == "fork":
                depth[d + 1] += 1
                walk(op["child"], d + 1)

    for doc in generate_programs(0, 600, "all"):
        walk(doc["ops"], 0)
    assert depth[3] > 0 and 4 not in depth
    assert in_children >= {cls.op_name() for cls in category_classes("all")} - {"pad"}


def test_a_name_added_to_a_table_is_generated_without_edits(monkeypatch: pytest.MonkeyPatch) -> None:
    kind = Mremap.kinds()["flags"]
    assert isinstance(kind, Flags)
    monkeypatch.setitem(kind.table, "brand_new", 1 << 9)
    seen = Counter[str]()
    for doc in generate_programs(0, 300, "lifecycle"):
        for op in walk_ops(parse_program(doc).ops):
            seen.update(i[2] for i in op_items(op.raw) if i[0] == "mremap" and i[1] == "flags")
    assert seen["brand_new"] > 0 and seen["maymove|brand_new"] > 0


_FROB_FLAGS = Annotated[int, *Flags({"onfault": 1}, CType.INT).annotation(), Field(description="flags")]


class _Frobnicate(OpDef):
    """A made-up op, to show that an op the generator has no builder for is still generated."""

    op: Literal["frobnicate"] = "frobnicate"
    addr: _ADDR_T
    length: _LEN_T
    flags: _FROB_FLAGS
    family: ClassVar[str] = "attrs"


def test_an_op_added_to_the_definitions_is_generated_without_edits(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmasim.fuzz import generate

    monkeypatch.setattr(generate, "OP_DEFS", (*generate.OP_DEFS, _Frobnicate))
    allowed = frozenset({"mmap", "munmap", "frobnicate"})
    made = []
    for i in range(200):
        gen = ProgramGenerator(random.Random(i), allowed, "attrs", [("frobnicate", "flags", "onfault")])
        made += [op for op in gen.program()["ops"] if op["op"] == "frobnicate"]
    assert made and all({"addr", "length", "flags"} <= set(op) for op in made)
    assert any(op["flags"] == ["onfault"] for op in made)


# --- ranges -------------------------------------------------------------------------------------------


def _range_classes(docs: list[dict[str, Any]]) -> Counter[str]:
    """What the ranges of range ops covered when they ran on the model: VMAs, holes, edges, window edges."""
    seen = Counter[str]()
    for doc in docs:
        _classify_program(parse_program(doc), seen)
    return seen


def _classify_program(prog: Any, seen: Counter[str]) -> None:
    siblings: dict[int, tuple[tuple[Op, ...], int]] = {}

    def index(ops: tuple[Op, ...]) -> None:
        for i, op in enumerate(ops):
            siblings[id(op)] = (ops, i)
            index(op.child)

    index(prog.ops)

    def classify(mm: MmStruct, op: Op, names: dict[str, int]) -> None:
        if op.op in ("mmap", "touch"):
            return
        for start, end in _op_ranges(op, names)[:1]:
            if not start < end <= C.TASK_SIZE:
                continue
            vmas = list(mm.vmas.range(start, end))
            seen[f"vmas:{min(len(vmas), 3)}"] += 1
            covered = sum(min(v.end, end) - max(v.start, start) for v in vmas)
            if vmas and covered < end - start:
                seen["hole"] += 1
            edges = {b for v in vmas for b in (v.start, v.end)}
            if start in edges or end in edges:
                seen["vma edge"] += 1
            if start < prog.window_start < end:
                seen["window start"] += 1
            if end == prog.window_end:
                seen["window end"] += 1

    def hook(run: Any, op: Op, result: Any) -> None:
        ops, i = (op.child, -1) if result is None else siblings[id(op)]
        if i + 1 < len(ops):
            classify(run.space.mm, ops[i + 1], run.addrs)

    run_model_space(prog, "linux-6.18.44-nopku", on_step=hook)


def test_ranges_cover_no_one_two_and_many_vmas_holes_and_edges() -> None:
    docs = [d for d in generate_programs(5, 300, "attrs") if not _blocks(d)]
    seen = _range_classes(docs)
    for cls in ("vmas:0", "vmas:1", "vmas:2", "vmas:3", "hole", "vma edge", "window start", "window end"):
        assert seen[cls] >= 5, (cls, seen)


def _blocks(doc: dict[str, Any]) -> bool:
    try:
        run_model(parse_program(doc), "linux-6.18.44-nopku")
    except Exception:
        return True
    return False


# --- the model stays within bounds ---------------------------------------------------------------------------


def _touch_page_by_page(mm: MmStruct, addr: int, length: int, write: bool = True) -> TouchResult:
    """The reference: one access per page, each through the range access of a single page."""
    if length == 0:
        return TouchResult(0, None)
    first = addr & ~(C.PAGE_SIZE - 1)
    last = min(addr + length - 1, (1 << 64) - 1)
    pages, page = 0, first
    while page <= last:
        res = fault.access_range(mm, page, page + C.PAGE_SIZE, write)
        if res.fault is not None:
            return TouchResult(pages, res.fault)
        pages += 1
        page += C.PAGE_SIZE
    return TouchResult(pages, None)


def test_touch_by_ranges_gives_what_touching_page_by_page_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [d for c in ("core", "attrs") for d in generate_programs(7, 150, c)]
    docs = [d for d in docs if any(op["op"] == "touch" for op in d["ops"]) and not _blocks(d)]
    fast = [run_model(parse_program(d), "linux-6.18.44-nopku") for d in docs]
    from vmasim import api

    monkeypatch.setattr(api, "touch", _touch_page_by_page)
    slow = [run_model(parse_program(d), "linux-6.18.44-nopku") for d in docs]
    assert len(docs) > 100
    for doc, a, b in zip(docs, fast, slow, strict=True):
        assert a == b, json.dumps(doc)


def test_touching_a_tebibyte_is_one_step_per_vma() -> None:
    import vmasim as v

    mm = v.AddressSpace()
    addr = mm.mmap(None, 1 << 40, v.PROT_READ | v.PROT_WRITE, v.MAP_PRIVATE | v.MAP_ANONYMOUS | v.MAP_NORESERVE)
    calls = 0
    original = fault._access_vma

    def counting(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args)

    fault._access_vma = counting  # type: ignore[assignment]
    try:
        res = mm.touch(addr, 1 << 40)
        res2 = mm.touch(addr, (1 << 40) + C.PAGE_SIZE)
    finally:
        fault._access_vma = original  # type: ignore[assignment]
    assert (res.pages, res.fault) == (1 << 28, None)
    assert (res2.pages, res2.fault) == (1 << 28, "SIGSEGV")
    # Compiled (mypyc), the module's calls to its own functions are bound at build time: nothing to count.
    compiled = str(fault.__file__).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert calls == (0 if compiled else 2)


def test_a_model_run_past_its_time_limit_is_stopped_and_skipped() -> None:
    doc = generate_program(0, 3, "core")
    with pytest.raises(ModelTimeout, match="stopped after"):
        run_model(parse_program(doc), timeout=1e-9)
    with pytest.raises(ValueError, match="timeout"):
        run_model(parse_program(doc), timeout=0)

    def kernel(programs: Any) -> list[Any]:
        return [run_model(p) for p in programs]

    out = evaluate([doc], kernel, model_timeout=1e-9)[0]
    assert not out.diverges and out.skip_reason is not None and out.skip_reason.startswith("model stopped")
    assert run_model(parse_program(doc), timeout=60) == kernel([parse_program(doc)])[0]


def test_width_edges_narrow_like_the_kernel() -> None:
    doc = {"ops": [
        {"op": "mmap", "addr": "W", "length": "16K", "prot": "rw", "flags": ["private", "anonymous", "fixed"]},
        {"op": "madvise", "addr": "W", "length": "4K", "advice": 2**32 + 10},  # MADV_DONTFORK once narrowed
        {"op": "madvise", "addr": "W", "length": "4K", "advice": 2**31 + 10},  # a negative int: EINVAL
        {"op": "mlock2", "addr": "W", "length": "4K", "flags": 2**32 + 1},  # MLOCK_ONFAULT
        {"op": "mbind", "addr": "W", "length": "4K", "mode": 2**32 + 2, "nodes": [0], "flags": 2**32 + 1},
        {"op": "set_mempolicy", "mode": -1},
    ]}
    rep = run_model(parse_program(doc))
    assert [r["errno"] for r in rep["results"]] == [None, None, "EINVAL", None, None, "EINVAL"]
    assert {"dc", "lo", "lf"} <= set(rep["vmas"][0]["flags"])
    assert rep["vmas"][0]["policy"] == "bind:0"


def test_mmap_items_include_every_flag_alone_and_paired() -> None:
    kind = Mmap.kinds()["flags"]
    assert isinstance(kind, Flags)
    items = field_items(kind)
    assert all(name in items for name in MMAP_FLAGS)
    assert "fixed|populate" in items and "[]" in items


def test_campaign_counts_coverage_with_the_kernels_answers(tmp_path: Any) -> None:
    import io

    from vmasim.fuzz import run_campaign

    def kernel(programs: Any) -> list[Any]:
        return [run_model(p) for p in programs]

    cov = Coverage(category_classes("core"))
    res = run_campaign(seed=3, count=40, category="core", out=str(tmp_path), kernel_batch=kernel,
                       stream=io.StringIO(), coverage=cov)
    assert res.passed == 40 and cov.programs == 40
    assert cov.accepted.get(("mmap", "flags", "fixed_noreplace"), 0) > 0
    assert cov.accepted.get(("mmap", "length", "raw:-1"), 0) == 0  # page-aligns to 0: always refused
    lines = cov.table()
    assert lines[-1].startswith(f"{len(cov.items()) - len(cov.missing())} of {len(cov.items())} values generated")
    assert any("never accepted" in line for line in lines)


def test_the_fuzz_command_has_a_coverage_option() -> None:
    from click.testing import CliRunner

    from vmasim.cli import main

    out = CliRunner().invoke(main, ["fuzz", "--help"]).output
    assert "--coverage" in out
