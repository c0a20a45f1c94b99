"""The timeline (every process's VMAs after each op), the step diff, and ``vmasim run --steps``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from vmasim.cli import main
from vmasim.program import load_program, parse_program
from vmasim.program.model import run_model
from vmasim.report import rel_addr
from vmasim.timeline import VmaState, diff, record_timeline, steps_text

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEED = EXAMPLES / "01-seed-split-and-merge.json"
FORK = EXAMPLES / "09-fork-child-never-merges.json"
W = 0x7E0000000000


def _spans(vmas: tuple[VmaState, ...]) -> list[tuple[int, int]]:
    return [(v.start - W, v.end - W) for v in vmas]


def test_seed_example_splits_into_three_and_merges_back() -> None:
    tl = record_timeline(load_program(str(SEED)))
    assert list(tl.lanes) == [""]
    assert [s.op.path for s in tl.steps] == ["0", "1", "2", "3", "4", "5", "6"]
    assert [len(s.after.vmas) for s in tl.steps] == [1, 3, 1, 2, 2, 4, 2]
    split = tl.steps[1]
    assert _spans(split.after.vmas) == [(0, 0x2000), (0x2000, 0x4000), (0x4000, 0x8000)]
    assert [v.perms for v in split.after.vmas] == ["rw-p", "r--p", "rw-p"]
    assert [c.kind for c in split.changes] == ["split"]
    assert str(split.changes[0]).startswith(
        "split 7e0000000000-7e0000008000 into 3; 7e0000002000-7e0000004000 rw-p -> r--p")
    # why the three pieces stay apart, for each touching pair
    assert all(r is not None and any("vm_flags differ in VM_WRITE" in t for t in r) for r in split.after.apart)
    merged = tl.steps[2]
    assert [str(c) for c in merged.changes] == ["merged 3 VMAs into 7e0000000000-7e0000008000"]
    assert merged.changes[0].before == split.after.vmas
    # the touch gives the second mapping an anon_vma; its split and merge keep it on every piece
    touch = tl.steps[4]
    assert touch.after.vmas[1].anon_vma is not None and touch.before.vmas[1].anon_vma is None
    got = touch.after.vmas[1].anon_vma
    assert [str(c) for c in touch.changes] == [f"7e0000100000-7e0000108000: got anon_vma {got}"]
    assert sum(e - s for s, e in touch.after.vmas[1].populated) == 0x8000
    assert {v.anon_vma for v in tl.steps[5].after.vmas[1:]} == {touch.after.vmas[1].anon_vma}
    assert [c.kind for c in tl.steps[5].changes] == ["split"]
    assert [str(c) for c in tl.steps[6].changes] == ["merged 3 VMAs into 7e0000100000-7e0000108000"]


def test_fork_child_is_its_own_lane_starting_at_the_fork() -> None:
    tl = record_timeline(load_program(str(FORK)))
    assert list(tl.lanes) == ["", "2"]
    child = tl.lanes["2"]
    # steps in the order they ran: the fork, then the child's op, then the parent's next op
    assert [(s.lane, s.op.path) for s in tl.steps] == [("", "0"), ("", "1"), ("", "2"), ("2", "2.0"), ("", "3")]
    assert child.born == 2 and child.parent == ""
    assert tl.steps[2].result == {"op": "fork", "ret": 0, "errno": None}
    assert tl.state("2", 1) is None
    # the child starts with a copy whose anon_vma came through fork
    (copy,) = child.initial.vmas
    assert copy.forked and copy.anon_vma != tl.steps[1].after.vmas[0].anon_vma
    after_child = tl.steps[3].after
    assert _spans(after_child.vmas) == [(0x1000, 0x6000), (0x6000, 0xB000)]
    assert [c.kind for c in tl.steps[3].changes] == ["created"]
    reasons = after_child.apart[0]
    assert reasons is not None and any("came through fork" in r for r in reasons)
    # the parent's same mmap merges
    assert [str(c) for c in tl.steps[4].changes] == [
        "grew 7e0000001000-7e0000006000 to 7e0000001000-7e000000b000 (+20K)"]
    state = tl.state("2", 4)
    assert state is not None and len(state.vmas) == 2


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_last_snapshots_are_the_layout_report(path: Path) -> None:
    program = load_program(str(path))
    tl = record_timeline(program)
    report = run_model(load_program(str(path)))

    def check(lane: str, rep: dict[str, object]) -> None:
        last = tl.lanes[lane].last
        window = [v.entry() for v in last.vmas if program.window_start <= v.start < program.window_end]
        assert window == rep["vmas"]
        heap = [v for v in last.vmas if not program.window_start <= v.start < program.window_end]
        assert [(rel_addr(v.start, 0xC09000), v.perms) for v in heap] == [
            (h["start"], h["perms"]) for h in rep["heap"]]  # type: ignore[attr-defined]
        for key, child in rep["children"].items():  # type: ignore[attr-defined]
            check(key if not lane else f"{lane}.{key}", child)

    check("", report)
    assert [s.result for s in tl.steps if not s.lane] == report["results"]


def _v(start: int, end: int, perms: str = "rw-p", **kw: object) -> VmaState:
    flags = (*(f for f, letter in (("rd", "r"), ("wr", "w")) if letter in perms), "mr", "mw", "me")
    fields: dict[str, object] = {"offset": 0, "file": None, "flags": flags, "policy": "default", "kind": "anonymous"}
    fields.update(kw)
    return VmaState(W + start, W + end, perms, **fields)  # type: ignore[arg-type]


def test_diff_names_each_kind_of_change() -> None:
    a, b = _v(0, 0x4000), _v(0x8000, 0xC000)
    assert [str(c) for c in diff([], [a])] == ["created 7e0000000000-7e0000004000 (16K rw-p anonymous)"]
    assert [str(c) for c in diff([a, b], [b])] == ["removed 7e0000000000-7e0000004000 (16K rw-p anonymous)"]
    assert [str(c) for c in diff([a], [_v(0, 0x6000)])] == [
        "grew 7e0000000000-7e0000004000 to 7e0000000000-7e0000006000 (+8K)"]
    assert [str(c) for c in diff([a], [_v(0x1000, 0x4000)])] == [
        "shrank 7e0000000000-7e0000004000 to 7e0000001000-7e0000004000 (-4K)"]
    assert [str(c) for c in diff([a], [_v(0, 0x4000, "r--p")])] == ["7e0000000000-7e0000004000: rw-p -> r--p"]
    # munmap of the middle: one VMA split in two around a hole
    assert [str(c) for c in diff([a], [_v(0, 0x1000), _v(0x2000, 0x4000)])] == [
        "split 7e0000000000-7e0000004000 into 2; 7e0000001000-7e0000002000 unmapped"]
    assert [str(c) for c in diff([_v(0, 0x8000), b], [_v(0, 0xC000)])] == [
        "merged 2 VMAs into 7e0000000000-7e000000c000"]
    # a new mapping that fills the hole between two neighbours and merges with both
    hole = [str(c) for c in diff([a, b], [_v(0, 0xC000)])]
    assert hole == ["merged 2 VMAs into 7e0000000000-7e000000c000 (with the new range 7e0000004000-7e0000008000)"]
    # mremap: the same anon_vma at another address
    moved = diff([_v(0, 0x4000, anon_vma=7)], [_v(0x10000, 0x14000, anon_vma=7)])
    assert [(c.kind, str(c)) for c in moved] == [
        ("moved", "moved 7e0000000000-7e0000004000 to 7e0000010000-7e0000014000 (16K rw-p anonymous)")]
    # the boundary between two VMAs moves: told as one change over both
    assert [c.kind for c in diff([a, _v(0x4000, 0x8000, "r--p")], [_v(0, 0x2000), _v(0x2000, 0x8000, "r--p")])] == [
        "reshaped"]
    # pages populated by a fault are not a VMA change
    assert diff([a], [_v(0, 0x4000, populated=((W, W + 0x1000),))]) == []


def test_run_steps_shows_the_split_and_the_merge() -> None:
    res = CliRunner().invoke(main, ["run", "--steps", str(SEED)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("The seed patch's scenario: mprotect a middle range and restore it;")
    text = res.output
    step1 = text[text.index("[1] mprotect"):text.index("[2] mprotect")]
    assert "    split 7e0000000000-7e0000008000 into 3; 7e0000002000-7e0000004000 rw-p -> r--p" in step1
    assert "    not merged at 7e0000002000: vm_flags differ in VM_WRITE|VM_ACCOUNT" in step1
    assert "    - 7e0000000000-7e0000008000 rw-p 00000000          [rd wr mr mw me ac]" in step1
    assert "    + 7e0000002000-7e0000004000 r--p 00000000          [rd mr mw me]" in step1
    assert step1.count("\n    + ") == 3
    step2 = text[text.index("[2] mprotect"):text.index("[3] mmap")]
    assert "    merged 3 VMAs into 7e0000000000-7e0000008000" in step2
    assert step2.count("\n    - ") == 3 and step2.count("\n    + ") == 1
    # context: the untouched first mapping is shown around the change to the second
    step5 = text[text.index("[5] mprotect"):text.index("[6] mprotect")]
    assert "\n      7e0000000000-7e0000008000 rw-p" in step5
    assert lines[-3:] == ["--- layout (2 VMAs)", "7e0000000000-7e0000008000 rw-p 00000000          [rd wr mr mw me ac]",
                          lines[-1]]
    assert lines[-1].startswith("7e0000100000-7e0000108000 rw-p 00000000          [rd wr mr mw me ac] anon_vma ")


def test_run_steps_indents_fork_children() -> None:
    res = CliRunner().invoke(main, ["run", "--steps", str(FORK)])
    assert res.exit_code == 0, res.output
    text = res.output
    assert "[2] fork() = 0\n" in text
    assert "    child of fork op 2 starts with a copy of 1 VMA:\n" in text
    assert "    [2.0] (child of fork op 2) mmap(addr=a+0x5000" in text
    assert "        not merged at 7e0000006000: its anon_vma came through fork" in text
    assert "\n    child of fork op 2 exits\n" in text
    assert text.index("[2.0]") < text.index("[3] mmap")


def test_run_steps_reads_standard_input_and_refuses_other_modes() -> None:
    res = CliRunner().invoke(main, ["run", "--steps", "-"], input=SEED.read_text())
    assert res.exit_code == 0, res.output
    assert "merged 3 VMAs into 7e0000000000-7e0000008000" in res.output
    res = CliRunner().invoke(main, ["run", "-"], input=SEED.read_text())
    assert res.exit_code == 0 and "[6] mprotect" in res.output
    res = CliRunner().invoke(main, ["run", "--steps", "--json", str(SEED)])
    assert res.exit_code == 2 and "--steps" in res.output


def test_a_run_that_would_block_keeps_the_steps_before_it() -> None:
    program = parse_program({"ops": [
        {"op": "mmap", "addr": "W", "length": "16K", "prot": "rw", "flags": ["private", "anonymous", "fixed"],
         "as": "a"},
        {"op": "userfaultfd", "name": "u"},
        {"op": "uffd_register", "uffd": "u", "addr": "a", "length": "16K", "mode": "missing"},
        {"op": "madvise", "addr": "a", "length": "16K", "advice": "populate_write"},
        {"op": "munmap", "addr": "a", "length": "16K"},
    ]})
    tl = record_timeline(program)
    assert tl.stopped is not None
    assert [s.op.path for s in tl.steps] == ["0", "1", "2"]
    text = list(steps_text(tl))
    assert any(line.startswith("stopped: ") for line in text)



def test_readme_shows_what_run_steps_prints() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Seeing it step by step"):]
    block = section.split("```\n", 2)[1]
    res = CliRunner().invoke(main, ["run", "--steps", str(SEED)])
    assert block in res.output


def test_diff_tells_mremap_moves_as_one_change() -> None:
    a, r = _v(0, 0x4000), _v(0x10000, 0x14000)
    assert [str(c) for c in diff([a, r], [_v(0, 0x8000)])] == [
        "moved 7e0000010000-7e0000014000 to 7e0000004000-7e0000008000, where it merged into 7e0000000000-7e0000008000"]
    written = _v(0, 0x8000, anon_vma=3)
    assert [str(c) for c in diff([written], [_v(0, 0x4000, anon_vma=3), _v(0x10000, 0x14000, anon_vma=3)])] == [
        "moved 7e0000004000-7e0000008000 out of 7e0000000000-7e0000008000 to 7e0000010000-7e0000014000"]
    c = _v(0x8000, 0xC000)
    assert [str(c) for c in diff([a, c, r], [_v(0, 0xC000)])] == [
        "moved 7e0000010000-7e0000014000 to 7e0000004000-7e0000008000, where it merged 2 VMAs into "
        "7e0000000000-7e000000c000"]
    # a different anon_vma is not the same memory: told as two changes
    assert [x.kind for x in diff([written], [_v(0, 0x4000, anon_vma=3), _v(0x10000, 0x14000, anon_vma=4)])] == [
        "shrank", "created"]


def test_a_change_to_another_process_is_its_own_effect() -> None:
    # A userfaultfd registered through an inherited descriptor acts on the process that created it.
    program = parse_program({"ops": [
        {"op": "mmap", "addr": "W", "length": "16K", "prot": "rw", "flags": ["private", "anonymous", "fixed"],
         "as": "a"},
        {"op": "userfaultfd", "name": "u"},
        {"op": "fork", "child": [
            {"op": "uffd_register", "uffd": "u", "addr": "a", "length": "16K", "mode": "missing"}]},
    ]})
    tl = record_timeline(program)
    fork, register = tl.steps[2], tl.steps[3]
    assert fork.changes == [] and fork.effects == ()
    assert register.lane == "2" and register.changes == []
    (effect,) = register.effects
    assert effect.lane == "" and [str(c) for c in effect.changes] == ["7e0000000000-7e0000004000: VmFlags +um"]
    assert tl.state("", 2) == fork.after and tl.state("", 3) == effect.after
    assert "um" in tl.lanes[""].last.vmas[0].flags
    text = "\n".join(steps_text(tl))
    assert "    in process: 7e0000000000-7e0000004000: VmFlags +um" in text
