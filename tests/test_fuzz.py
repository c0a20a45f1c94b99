"""vmasim.fuzz: the program generator, the runner and the shrinker (fake kernels; one real-kernel campaign)."""

from __future__ import annotations

import copy
import errno
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from vmasim.fuzz import (
    CATEGORIES,
    CATEGORY_OPS,
    evaluate,
    finish,
    fuzz_command,
    generate_program,
    generate_programs,
    plan_category,
    run_campaign,
    shrink,
    wall_ops,
)
from vmasim.fuzz.shrink import _drop_dangling
from vmasim.program import Program, parse_program, walk_ops
from vmasim.program.model import run_model
from vmasim.program.ops import OP_NAMES, Mprotect, Touch

_walk = walk_ops


# --- generator -------------------------------------------------------------------------------


def test_generator_is_deterministic_per_seed() -> None:
    a = generate_programs(11, 20, "core")
    b = generate_programs(11, 20, "core")
    assert a == b
    assert generate_programs(12, 20, "core") != a
    # Program n does not depend on how many were generated before it.
    assert generate_program(11, 7, "core") == a[7]
    assert generate_programs(11, 5, "core", start=7)[0] == a[7]


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_generated_program_is_valid_json_contract(category: str) -> None:
    for doc in generate_programs(3, 150, category):
        # Plain JSON: survives a round trip unchanged, and the parser accepts it.
        assert json.loads(json.dumps(doc)) == doc
        prog = parse_program(doc)
        assert set(doc) <= {"format", "window", "walls", "ops"}
        assert {op.op for op in _walk(prog.ops)} <= plan_category(category)


def test_categories_come_from_the_op_definitions() -> None:
    assert set(CATEGORY_OPS["all"]) == set(OP_NAMES)
    assert {"mmap", "munmap", "mprotect", "touch", "pad"} <= set(CATEGORY_OPS["core"])
    assert "madvise" in CATEGORY_OPS["attrs"] and "fork" in CATEGORY_OPS["lifecycle"]
    with pytest.raises(ValueError, match="unknown category"):
        plan_category("nope")


def test_categories_use_their_ops() -> None:
    seen: set[str] = set()
    for doc in generate_programs(5, 300, "all"):
        seen |= {op.op for op in _walk(parse_program(doc).ops)}
    assert seen >= {"madvise", "mlock2", "mbind", "uffd_register", "mseal", "mremap", "sbrk", "fork", "pad"}


def test_fuzz_command_refuses_an_unknown_category(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert fuzz_command(seed=0, count=5, category="nope", jobs=1, out=str(tmp_path)) == 2
    assert "unknown category 'nope'" in capsys.readouterr().out


def test_model_runs_every_generated_core_program() -> None:
    names = set(errno.errorcode.values())
    for doc in generate_programs(0, 300, "core"):
        rep = run_model(parse_program(doc))
        assert len(rep["results"]) == len(doc["ops"])
        for res in rep["results"]:
            if res["op"] == "touch":
                assert res["fault"] in (None, "SIGSEGV", "SIGBUS")
            elif res["errno"] is not None:
                assert res["ret"] == -1 and res["errno"] in names


def test_generated_core_programs_exercise_interactions() -> None:
    results: dict[tuple[str, str | None], int] = {}
    for doc in generate_programs(1, 300, "core"):
        rep = run_model(parse_program(doc))
        for res in rep["results"]:
            key = (res["op"], res.get("errno") or res.get("fault"))
            results[key] = results.get(key, 0) + 1
    for key in [("mmap", "EEXIST"), ("mprotect", "ENOMEM"), ("mprotect", "EINVAL"), ("munmap", "EINVAL"),
                ("touch", "SIGSEGV"), ("touch", "SIGBUS"), ("mmap", None), ("touch", None), ("pad", None)]:
        assert results.get(key, 0) > 0, key


# --- fake kernels ------------------------------------------------------------------------------


def _has_none_mprotect(program: Program) -> bool:
    return any(isinstance(op.args, Mprotect) and op.args.prot == 0 for op in _walk(program.ops))


def fake_kernel(programs: Sequence[Program]) -> list[Any]:
    """Agrees with the model, except that mprotect(PROT_NONE) 'fails' with EFAULT on the 'kernel'."""
    out: list[Any] = []
    for prog in programs:
        rep = copy.deepcopy(run_model(prog))
        for op, res in zip(prog.ops, rep["results"], strict=True):
            if isinstance(op.args, Mprotect) and op.args.prot == 0:
                res.update(ret=-1, errno="EFAULT")
        out.append(rep)
    return out


SYNTHETIC: dict[str, Any] = {
    "ops": [
        {"op": "memfd", "name": "buf", "size": "64K"},
        {"op": "mmap", "addr": "W", "length": "16K", "prot": "rw",
         "flags": ["private", "anonymous", "fixed_noreplace", "noreserve"], "as": "a"},
        {"op": "mmap", "addr": "W+0x8000", "length": "16K", "prot": "r", "flags": ["shared", "fixed_noreplace"],
         "fd": "buf", "offset": "16K", "as": "b"},
        {"op": "touch", "addr": "a", "length": "8K"},
        {"op": "mprotect", "addr": "b", "length": "4K", "prot": "rw"},
        {"op": "munmap", "addr": "W+0x4000", "length": "4K"},
        {"op": "mprotect", "addr": "a+0x1000", "length": "8K", "prot": "none"},
        {"op": "touch", "addr": "b", "length": "4K", "write": False},
        {"op": "mmap", "addr": None, "length": "8K", "prot": "rw", "flags": ["private", "anonymous"], "as": "h"},
        {"op": "munmap", "addr": "h", "length": "4K"},
    ]
}


def test_shrinker_reduces_to_the_op_and_what_it_depends_on() -> None:
    first = evaluate([SYNTHETIC], fake_kernel)[0]
    assert first.diverges
    result = shrink(SYNTHETIC, fake_kernel, first=first, budget_s=10)
    ops = result.doc["ops"]
    assert [op["op"] for op in ops] == ["mmap", "mprotect"], ops
    assert ops[1]["addr"].startswith(ops[0]["as"])  # the mmap stays because the mprotect uses its name
    assert ops[1]["prot"] == "none"
    assert "noreserve" not in ops[0]["flags"]  # simplified away
    assert result.outcome.diffs[0].startswith("results[1] (mprotect)")
    parse_program(result.doc)


def test_shrinker_handles_fork_children() -> None:
    doc = {
        "ops": [
            {"op": "mmap", "addr": "W", "length": "16K", "prot": "rw",
             "flags": ["private", "anonymous", "fixed_noreplace"], "as": "a"},
            {"op": "touch", "addr": "a", "length": "4K"},
            {"op": "fork", "child": [{"op": "munmap", "addr": "a", "length": "4K"},
                                     {"op": "mprotect", "addr": "a+0x1000", "length": "4K", "prot": "none"}]},
        ]
    }

    # The 'kernel' agrees with the model, but shows one more VMA when a PROT_NONE mprotect is anywhere.
    def kernel(programs: Sequence[Program]) -> list[Any]:
        out: list[Any] = []
        for prog in programs:
            rep = copy.deepcopy(run_model(prog))
            if _has_none_mprotect(prog):  # anywhere, fork children included
                rep["vmas"].append({"start": "0x7e0100001000", "end": "0x7e0100002000", "perms": "---p",
                                    "offset": "0x0", "file": None, "flags": ["mr", "mw", "me"], "policy": "default"})
            out.append(rep)
        return out

    first = evaluate([doc], kernel)[0]
    assert first.diverges
    result = shrink(doc, kernel, first=first, budget_s=10)
    assert [op["op"] for op in result.doc["ops"]] == ["mmap", "fork"]
    assert [op["op"] for op in result.doc["ops"][1]["child"]] == ["mprotect"]


def test_drop_dangling_removes_users_of_removed_names() -> None:
    ops: list[dict[str, Any]] = [
        {"op": "mmap", "addr": "m1+0x1000", "length": "4K", "prot": "rw", "flags": ["private", "anonymous"]},
        {"op": "mmap", "addr": "W", "length": "4K", "prot": "rw", "flags": ["private", "anonymous"], "as": "m2"},
        {"op": "munmap", "addr": "m2", "length": "4K"},
        {"op": "close", "fd": "gone"},
        {"op": "fork", "child": [{"op": "touch", "addr": "m1", "length": "4K"},
                                 {"op": "touch", "addr": "m2", "length": "4K"}]},
    ]
    kept = _drop_dangling(ops, {"W"}, set())
    assert [op["op"] for op in kept] == ["mmap", "munmap", "fork"]
    assert kept[2]["child"] == [{"op": "touch", "addr": "m2", "length": "4K"}]


# --- the campaign ----------------------------------------------------------------------------------


class _RunnerError(Exception):
    pass


def flaky_kernel(programs: Sequence[Program]) -> list[Any]:
    """Like fake_kernel, and it 'times out' on every program with a read-only touch."""
    reports = fake_kernel(programs)
    return [
        _RunnerError("timeout after 10s") if any(isinstance(op.args, Touch) and not op.args.write for op in prog.ops)
        else rep
        for prog, rep in zip(programs, reports, strict=True)
    ]


def test_campaign_counts_saves_and_summarises(tmp_path: Path) -> None:
    out = io.StringIO()
    res = run_campaign(seed=4, count=60, category="core", out=str(tmp_path), kernel_batch=flaky_kernel,
                       stream=out, shrink_budget_s=5, shrinks_per_kind=1)
    assert res.passed + res.failed + res.skipped == 60
    assert res.failed > 0 and res.skipped > 0 and res.passed > 0
    lines = out.getvalue().splitlines()
    assert len([line for line in lines if line.startswith("FAIL program")]) == res.failed
    assert any("not shrunk: same kind" in line for line in lines)
    first = tmp_path / "divergence-4-1.json"
    for suffix in (".json", ".model.json", ".kernel.json", ".diff.txt", ".orig.json"):
        assert (tmp_path / f"divergence-4-1{suffix}").exists()
    prog = parse_program(first.read_text())
    assert _has_none_mprotect(prog)
    assert "mprotect" in (tmp_path / "divergence-4-1.diff.txt").read_text()
    summary = io.StringIO()
    status = finish(res, lambda s: print(s, file=summary))
    assert status == 1
    tail = summary.getvalue().splitlines()
    assert tail[-2] == f"{res.skipped} skipped (kernel runner error or model stopped)"
    assert tail[-1] == f"{res.passed} passed, {res.failed} failed"


def test_campaign_without_divergence_passes(tmp_path: Path) -> None:
    def agreeing(programs: Sequence[Program]) -> list[Any]:
        return [run_model(p) for p in programs]

    res = run_campaign(seed=9, count=30, category="core", out=str(tmp_path), kernel_batch=agreeing,
                       stream=io.StringIO())
    assert (res.passed, res.failed, res.skipped) == (30, 0, 0)
    assert finish(res, lambda s: None) == 0
    assert not list(tmp_path.iterdir())


# --- the real kernel -----------------------------------------------------------------------------


@pytest.mark.kernel
def test_core_campaign_on_the_host_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kernel = pytest.importorskip("vmasim.kernel", reason="the kernel runner is not installed")
    ok, why = kernel.kernel_available()
    if not ok:
        pytest.skip(f"host kernel runner unavailable: {why}")
    status = fuzz_command(seed=0, count=200, category="core", jobs=None, out=str(tmp_path))
    lines = capsys.readouterr().out.splitlines()
    passed, failed = (int(w) for w in lines[-1].replace(" passed,", "").replace(" failed", "").split())
    skipped = int(lines[-2].split()[0]) if "skipped" in lines[-2] else 0
    assert passed + failed + skipped == 200
    assert status == (1 if failed else 0)
    # Every saved reproducer is a valid program that the model runs.
    for path in tmp_path.glob("divergence-0-*[0-9].json"):
        run_model(parse_program(path.read_text()))


def test_wall_ops_finds_ops_that_reach_above_the_window() -> None:
    top = "W+0xfffff000"  # the last page of the default 4 GiB window
    ok = {"ops": [{"op": "mmap", "addr": top, "length": "4K", "prot": "rw",
                   "flags": ["private", "anonymous", "fixed_noreplace"], "as": "t"},
                  {"op": "munmap", "addr": "t", "length": "4K"},
                  # deliberately invalid: ends past the top of the address space, fails before any VMA
                  {"op": "munmap", "addr": "t", "length": "0x8000000000000000"}]}
    bad = {"ops": [*ok["ops"][:1], {"op": "mprotect", "addr": "t", "length": "8K", "prot": "r"}]}
    child = {"ops": [*ok["ops"][:1], {"op": "fork", "child": [{"op": "munmap", "addr": "t+0x1000", "length": "4K"}]}]}
    for doc, want in ((ok, []), (bad, ["1"]), (child, ["1.0"])):
        prog = parse_program(doc)
        assert wall_ops(prog, run_model(prog)) == want


def test_each_divergence_is_announced_and_saved_as_found(tmp_path: Path) -> None:
    out = io.StringIO()
    seen: list[int] = []

    def watching(programs: Sequence[Program]) -> list[Any]:
        seen.append(sum(line.startswith("FAIL program") for line in out.getvalue().splitlines()))
        return fake_kernel(programs)

    progress: list[tuple[int, int]] = []
    res = run_campaign(seed=4, count=60, category="core", out=str(tmp_path), kernel_batch=watching, stream=out,
                       chunk=20, shrinks_per_kind=0, progress=lambda done, failed: progress.append((done, failed)))
    assert res.failed > 0
    # Before the last chunk ran, the divergences of the earlier chunks were already printed and saved.
    assert progress[-1] == (60, res.failed) and [d for d, _ in progress] == [20, 40, 60]
    assert seen[-1] == progress[1][1] > 0


def test_ctrl_c_keeps_what_was_found_and_prints_the_summary(tmp_path: Path) -> None:
    calls = 0

    def interrupted(programs: Sequence[Program]) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return fake_kernel(programs)

    res = run_campaign(seed=4, count=100, category="core", out=str(tmp_path), kernel_batch=interrupted,
                       stream=io.StringIO(), chunk=20, shrinks_per_kind=0)
    assert res.interrupted and res.ran == 40 and res.failed > 0
    assert len(res.saved) == res.failed and all(Path(p).exists() for p in res.saved)
    lines: list[str] = []
    assert finish(res, lines.append, 100) == 1
    assert lines[-2:] == [f"interrupted after 40 of 100 programs; {res.failed} reproducer(s) saved",
                          f"{res.passed} passed, {res.failed} failed"]


def test_fuzz_checks_its_output_directory_before_it_starts(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert fuzz_command(seed=0, count=5, category="core", jobs=1, out=str(blocker / "out")) == 2
    assert capsys.readouterr().out.startswith(f"cannot save reproducers in {blocker / 'out'}: ")
