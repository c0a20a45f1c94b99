"""The kernel runner against the host kernel: report shape, placement, fork, touch, pad, heap, hygiene."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from kernelhelpers import Run, executor_processes

from vmasim.kernel import KernelRunError, run_program, run_programs
from vmasim.program import parse_program

pytestmark = pytest.mark.kernel

ANON = ["private", "anonymous"]
W = 0x7E0000000000
WEND = W + (4 << 30)


def mmap(
    addr: str | None, length: str, prot: str = "rw", flags: list[str] | None = None, **kw: object
) -> dict[str, object]:
    """An mmap op; fixed_noreplace private anonymous by default when an address is given."""
    if flags is None:
        flags = [*ANON, "fixed_noreplace"] if addr is not None else ANON
    return {"op": "mmap", "addr": addr, "length": length, "prot": prot, "flags": flags, **kw}


def spans(report: dict[str, Any]) -> list[tuple[int, int, str]]:
    """VMAs as (start page, end page, perms) relative to the default window."""
    return [((int(v["start"], 16) - W) >> 12, (int(v["end"], 16) - W) >> 12, v["perms"]) for v in report["vmas"]]


def test_contract_example(run: Run) -> None:
    doc = {
        "format": "vmasim-program/1",
        "window": {"start": "0x7e0000000000", "length": "4G"},
        "walls": True,
        "ops": [
            mmap("W", "16K") | {"as": "a"},
            {"op": "touch", "addr": "a", "length": "4K"},
            {"op": "mprotect", "addr": "a+0x1000", "length": "4K", "prot": "r"},
            {"op": "mprotect", "addr": "a+0x1000", "length": "4K", "prot": "rw"},
        ],
    }
    expected = {
        "results": [
            {"op": "mmap", "ret": "0x7e0000000000", "errno": None},
            {"op": "touch", "pages": 1, "fault": None},
            {"op": "mprotect", "ret": 0, "errno": None},
            {"op": "mprotect", "ret": 0, "errno": None},
        ],
        "vmas": [
            {
                "start": "0x7e0000000000",
                "end": "0x7e0000004000",
                "perms": "rw-p",
                "offset": "0x0",
                "file": None,
                "flags": ["rd", "wr", "mr", "mw", "me", "ac"],
                "policy": "default",
            }
        ],
        "heap": [],
        "children": {},
    }
    report = run_program(parse_program(doc))
    assert json.dumps(report, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_walls_place_hintless_maps_top_down_from_window_end(run: Run) -> None:
    r = run([mmap(None, "4K"), mmap(None, "4K", prot="r"), mmap(None, "2M")])
    assert [x["ret"] for x in r["results"]] == [hex(WEND - 0x1000), hex(WEND - 0x2000), hex(WEND - (4 << 20))]


def test_walls_follow_a_custom_window(run: Run) -> None:
    r = run([mmap(None, "4K")], window={"start": "0x500000000000", "length": "1G"})
    assert r["results"][0]["ret"] == hex(0x500000000000 + (1 << 30) - 0x1000)
    assert r["vmas"][0]["start"] == hex(0x500000000000 + (1 << 30) - 0x1000)


def test_failed_mmap_binds_map_failed(run: Run) -> None:
    r = run([mmap("W", "0") | {"as": "x"}, {"op": "munmap", "addr": "x+1", "length": "4K"}], walls=False)
    assert r["results"][0] == {"op": "mmap", "ret": -1, "errno": "EINVAL"}
    # x is MAP_FAILED (2**64-1); x+1 wraps to 0, a page-aligned address with nothing mapped
    assert r["results"][1] == {"op": "munmap", "ret": 0, "errno": None}


def test_fork_child_reports_nested(run: Run) -> None:
    r = run(
        [
            mmap("W", "16K") | {"as": "a"},
            {"op": "madvise", "addr": "a+0x3000", "length": "4K", "advice": "dontfork"},
            {
                "op": "fork",
                "child": [
                    {"op": "munmap", "addr": "a", "length": "4K"},
                    {"op": "fork", "child": [{"op": "munmap", "addr": "a+0x1000", "length": "4K"}]},
                ],
            },
            {"op": "mprotect", "addr": "a", "length": "4K", "prot": "r"},
        ]
    )
    assert [x["op"] for x in r["results"]] == ["mmap", "madvise", "fork", "mprotect"]
    assert spans(r) == [(0, 1, "r--p"), (1, 3, "rw-p"), (3, 4, "rw-p")]
    child = r["children"]["2"]
    assert spans(child) == [(1, 3, "rw-p")]  # dontfork range absent in the child
    assert spans(child["children"]["1"]) == [(2, 3, "rw-p")]
    assert child["children"]["1"]["children"] == {}


def test_touch_faults(run: Run) -> None:
    r = run(
        [
            mmap("W", "8K") | {"as": "a"},
            {"op": "touch", "addr": "a", "length": "16K"},
            {"op": "memfd", "name": "m", "size": "4K"},
            mmap("W+0x10000", "12K", flags=["shared", "fixed"], fd="m"),
            {"op": "touch", "addr": "W+0x10000", "length": "12K", "write": False},
            mmap("W+0x20000", "8K") | {"as": "b"},
            {"op": "touch", "addr": "b", "length": "4K"},
            {"op": "userfaultfd", "name": "u"},
            {"op": "uffd_register", "uffd": "u", "addr": "b+0x1000", "length": "4K", "mode": "missing"},
            {"op": "touch", "addr": "b", "length": "8K"},
            {"op": "touch", "addr": "b+0x800", "length": "0"},
            {"op": "touch", "addr": "b+0xfff", "length": "2"},
        ]
    )
    touches = [x for x in r["results"] if x["op"] == "touch"]
    assert touches[0] == {"op": "touch", "pages": 2, "fault": "SIGSEGV"}
    assert touches[1] == {"op": "touch", "pages": 1, "fault": "SIGBUS"}  # beyond the memfd's EOF
    assert touches[2] == {"op": "touch", "pages": 1, "fault": None}
    # page 0 is populated; page 1 is a uffd MISSING page and would block forever
    assert touches[3] == {"op": "touch", "pages": 1, "fault": "UFFD"}
    assert touches[4] == {"op": "touch", "pages": 0, "fault": None}
    # two bytes straddling a page boundary touch two pages; the second is the uffd page again
    assert touches[5] == {"op": "touch", "pages": 1, "fault": "UFFD"}
    flags = {v["start"]: v["flags"] for v in r["vmas"]}
    assert "um" in flags[hex(W + 0x21000)]


@pytest.mark.parametrize(
    "op",
    [
        {"op": "fork", "child": []},  # blocks until the event_fork message is read
        {"op": "mlock", "addr": "a", "length": "4K"},  # populating a MISSING page waits killably
        {"op": "madvise", "addr": "a", "length": "4K", "advice": "populate_write"},
    ],
    ids=["event_fork", "mlock", "populate_write"],
)
def test_uffd_blocking_ops_fail_fast(run: Run, op: dict[str, Any]) -> None:
    ops = [
        mmap("W", "4K") | {"as": "a"},
        {"op": "userfaultfd", "name": "u", "features": ["event_fork"]},
        {"op": "uffd_register", "uffd": "u", "addr": "a", "length": "4K", "mode": "missing"},
        op,
    ]
    t = time.monotonic()
    with pytest.raises(KernelRunError, match=r"op 3 .* userfaultfd"):
        run(ops, timeout=30)
    assert time.monotonic() - t < 10  # detected, not timed out
    assert executor_processes() == []


def test_timeout_kills_the_program() -> None:
    pad = {"op": "pad", "headroom": 0}
    slow = parse_program({"ops": [pad, {"op": "fork", "child": [pad]}]})
    fast = parse_program({"ops": [mmap(None, "4K")]})
    results = run_programs([slow, fast], jobs=1, timeout=0.05)
    assert isinstance(results[0], KernelRunError)
    assert "timed out" in str(results[0])
    assert isinstance(results[1], dict)
    assert executor_processes() == []


def test_pad_to_headroom_then_split_fails(run: Run) -> None:
    r = run(
        [
            mmap("W", "12K") | {"as": "a"},
            {"op": "pad", "headroom": 0},
            {"op": "mprotect", "addr": "a+0x1000", "length": "4K", "prot": "r"},
            {"op": "munmap", "addr": "a+0x1000", "length": "4K"},
            {"op": "munmap", "addr": "a", "length": "4K"},
            mmap(None, "4K"),
            mmap(None, "4K", prot="r"),
        ]
    )
    res = r["results"]
    assert res[1] == {"op": "pad", "ret": 0, "errno": None}
    assert res[2] == {"op": "mprotect", "ret": -1, "errno": "ENOMEM"}
    assert res[3] == {"op": "munmap", "ret": -1, "errno": "ENOMEM"}  # strictly inside one VMA at the limit
    assert res[4] == {"op": "munmap", "ret": 0, "errno": None}  # an edge unmap needs no split
    assert res[5]["errno"] is None  # at max, one more still fits (the check is count > max)
    assert res[6] == {"op": "mmap", "ret": -1, "errno": "ENOMEM"}
    assert spans(r)[0] == (1, 3, "rw-p")


def test_small_pad(run: Run) -> None:
    r = run([{"op": "pad", "headroom": 65000}, {"op": "pad", "headroom": 65000}, {"op": "pad", "headroom": 65530}])
    assert [x["errno"] for x in r["results"]] == [None, None, "EINVAL"]


def test_sbrk(run: Run) -> None:
    r = run(
        [
            {"op": "sbrk", "increment": "8K"},
            {"op": "sbrk", "increment": 0},
            {"op": "sbrk", "increment": "-4K"},
            {"op": "sbrk", "increment": "-8K"},
            {"op": "sbrk", "increment": "100"},
        ]
    )
    assert [x["ret"] for x in r["results"]] == ["+0x0", "+0x2000", "+0x2000", -1, "+0x1000"]
    assert r["results"][3]["errno"] == "ENOMEM"
    # the break is at +0x1064: the kernel's heap VMA ends at the page boundary above it
    assert [(h["start"], h["end"], h["perms"]) for h in r["heap"]] == [("+0x0", "+0x2000", "rw-p")]
    assert r["heap"][0]["file"] is None


def test_heap_starts_empty_and_unmerged(run: Run) -> None:
    r = run([{"op": "sbrk", "increment": "4K"}])
    assert [(h["start"], h["end"]) for h in r["heap"]] == [("+0x0", "+0x1000")]


def test_files_are_labelled_by_their_creator(run: Run) -> None:
    r = run(
        [
            {"op": "memfd", "name": "m", "size": "16K"},
            {"op": "file", "name": "f", "size": "16K"},
            {"op": "open", "name": "f_ro", "of": "f", "mode": "r"},
            {"op": "dup", "name": "m2", "of": "m"},
            mmap("W", "8K", flags=["shared", "fixed"], fd="m2"),
            mmap("W+0x4000", "4K", prot="r", flags=["shared", "fixed"], fd="f_ro", offset="8K"),
            mmap("W+0x8000", "4K", flags=["shared", "fixed"], fd="f_ro"),
            mmap("W+0xc000", "4K", flags=["shared", "anonymous", "fixed"]),
            mmap("W+0xd000", "4K", flags=["shared", "anonymous", "fixed"]),
            {"op": "close", "fd": "m2"},
            mmap(None, "4K", flags=["shared"], fd="m2"),
        ]
    )
    assert r["results"][6] == {"op": "mmap", "ret": -1, "errno": "EACCES"}
    assert r["results"][10] == {"op": "mmap", "ret": -1, "errno": "EBADF"}
    got = [(v["start"], v["file"], v["offset"], v["perms"]) for v in r["vmas"]]
    assert got == [
        (hex(W), "m", "0x0", "rw-s"),
        (hex(W + 0x4000), "f", "0x2000", "r--s"),
        (hex(W + 0xC000), "shmem#1", "0x0", "rw-s"),
        (hex(W + 0xD000), "shmem#2", "0x0", "rw-s"),
    ]


def test_files_stay_in_a_private_temp_dir(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cwd_before = set(os.listdir("."))
    r = run([{"op": "file", "name": "passwd", "size": "4K"}, {"op": "file", "name": "passwd", "size": "4K"}])
    assert [x["errno"] for x in r["results"]] == [None, None]
    assert list(tmp_path.iterdir()) == []  # the run's directory is gone
    assert set(os.listdir(".")) == cwd_before


def test_mempolicy_strings(run: Run) -> None:
    r = run(
        [
            mmap("W", "12K") | {"as": "a"},
            {"op": "mbind", "addr": "a", "length": "4K", "mode": "preferred_many", "nodes": [0]},
            {"op": "mbind", "addr": "a+0x1000", "length": "4K", "mode": "bind", "nodes": [0], "mode_flags": "static"},
            {"op": "mbind", "addr": "a+0x2000", "length": "4K", "mode": "bind", "nodes": [1]},
        ]
    )
    assert [v["policy"] for v in r["vmas"]] == ["prefer (many):0", "bind=static:0", "default"]
    assert r["results"][3]["errno"] == "EINVAL"  # one NUMA node on this kind of host


def test_batch_keeps_order_and_isolates_failures() -> None:
    good = parse_program({"ops": [mmap(None, "4K")]})
    crash = parse_program({"ops": [{"op": "munmap", "addr": "0x10000", "length": hex(0x7FFF00000000)}]})
    results = run_programs([good, crash, good] * 3, jobs=2, timeout=5)
    assert len(results) == 9
    for i, res in enumerate(results):
        if i % 3 == 1:
            assert isinstance(res, KernelRunError)
            assert "SIGSEGV" in str(res)
        else:
            assert isinstance(res, dict)
            assert res["results"][0]["ret"] == hex(WEND - 0x1000)


def test_batch_is_deterministic() -> None:
    prog = parse_program(
        {"ops": [mmap(None, "8K"), {"op": "touch", "addr": "W", "length": "4K"}, {"op": "sbrk", "increment": "4K"}]}
    )
    results = run_programs([prog] * 20)
    first = json.dumps(results[0], sort_keys=True)
    assert all(json.dumps(r, sort_keys=True) == first for r in results)


def test_no_stray_processes_or_temp_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    progs = [parse_program({"ops": [{"op": "fork", "child": [{"op": "file", "name": "x", "size": "4K"}]}]})] * 10
    assert all(isinstance(r, dict) for r in run_programs(progs, jobs=2))
    assert executor_processes() == []
    assert list(tmp_path.iterdir()) == []


# -- caps: memory and tasks --------------------------------------------------------------------------

HOG = [mmap(None, "256M") | {"as": "a"}, {"op": "touch", "addr": "a", "length": "256M"}]


def test_memory_cap_stops_the_program_and_names_the_op(run: Run) -> None:
    with pytest.raises(KernelRunError) as info:
        run_program(parse_program({"ops": HOG}), memory_limit=64 << 20)
    err = info.value
    assert (err.kind, err.op_path) == ("memory", "1")
    assert str(err).startswith("op 1 (touch): stopped: out of memory (limit 64 MiB")
    assert err.partial is not None and err.partial["results"][0]["errno"] is None


def test_memory_cap_without_a_cgroup_is_a_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMASIM_CGROUP", "off")
    with pytest.raises(KernelRunError, match=r"op 1 \(touch\): stopped: out of memory .*watchdog") as info:
        run_program(parse_program({"ops": HOG}), memory_limit=64 << 20)
    assert info.value.kind == "memory"
    assert executor_processes() == []


def test_memory_cap_does_not_change_answers_below_it(run: Run) -> None:
    examples = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))
    programs = [parse_program(json.loads(p.read_text())) for p in examples]
    capped = run_programs(programs, memory_limit=64 << 20, task_limit=8)
    free = run_programs(programs, memory_limit=8 << 30, task_limit=1000)
    assert all(isinstance(r, dict) for r in capped)
    assert capped == free


def test_task_cap_stops_a_fork_too_deep() -> None:
    ops: list[dict[str, Any]] = [{"op": "munlockall"}]
    for _ in range(5):
        ops = [{"op": "fork", "child": ops}]
    ok = run_programs([parse_program({"ops": ops})], task_limit=6)[0]
    assert isinstance(ok, dict)  # six processes: the first and five nested children
    err = run_programs([parse_program({"ops": ops})], task_limit=3)[0]
    assert isinstance(err, KernelRunError)
    assert (err.kind, err.op_path) == ("tasks", "0.0.0")
    assert str(err) == "op 0.0.0 (fork): stopped: too many tasks (limit 3)"
    assert executor_processes() == []


def test_bad_jobs_and_limits_are_rejected() -> None:
    prog = [parse_program({"ops": [mmap(None, "4K")]})]
    for jobs in (0, -1):
        with pytest.raises(ValueError, match="jobs"):
            run_programs(prog, jobs=jobs)
    with pytest.raises(ValueError, match="memory"):
        run_programs(prog, memory_limit=4096)
    with pytest.raises(ValueError, match="tasks"):
        run_programs(prog, task_limit=0)
    assert isinstance(run_programs(prog, jobs=1000)[0], dict)  # more jobs than CPUs: as many as CPUs


def test_runs_keep_empty_cgroups_for_reuse_and_remove_them() -> None:
    from vmasim.kernel.cgroup import _hierarchies, cgroup_pool

    def mine() -> list[Path]:
        return [d for h in _hierarchies() for d in h.path.iterdir() if d.name.startswith(f"vmasim-{os.getpid()}-")]

    run_programs([parse_program({"ops": [mmap(None, "4K")]})] * 4, jobs=2)
    kept = mine()
    run_programs([parse_program({"ops": [mmap(None, "4K")]})] * 4, jobs=2)
    assert mine() == kept  # reused, not made again
    assert all((d / "cgroup.procs").read_text() == "" for d in kept)  # nothing runs in them
    cgroup_pool().close()  # (what happens at exit)
    assert mine() == []


def test_more_than_256_userfaultfds_still_fail_fast(run: Run) -> None:
    ops = [mmap("W", "4K") | {"as": "a"}] + [{"op": "userfaultfd", "name": f"u{i}"} for i in range(300)]
    ops += [
        {"op": "uffd_register", "uffd": "u0", "addr": "a", "length": "4K", "mode": "missing"},
        {"op": "close", "fd": "u1"},
        {"op": "touch", "addr": "a", "length": "4K"},
        {"op": "mlock", "addr": "a", "length": "4K"},
    ]
    with pytest.raises(KernelRunError, match=r"op 304 \(mlock\): would wait forever") as info:
        run(ops, timeout=30)
    assert info.value.partial is not None
    assert info.value.partial["results"][-1] == {"op": "touch", "pages": 0, "fault": "UFFD"}


def test_file_objects_are_never_named_in_the_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ops = [{"op": "file", "name": "f", "size": "1G"}, {"op": "open", "name": "g", "of": "f", "mode": "rw"}]
    ops += [mmap("W", "8K", flags=["shared", "fixed"], fd="g"), {"op": "touch", "addr": "W", "length": "8K"}]
    report = run_program(parse_program({"ops": ops}))
    assert [v["file"] for v in report["vmas"]] == ["f"]  # labelled by inode, as before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("advice", [100, 101, (1 << 32) + 100])
@pytest.mark.parametrize("op", ["madvise", "process_madvise"])
def test_memory_failure_injection_is_never_run(op: str, advice: int) -> None:
    # The runner may be root: MADV_HWPOISON / MADV_SOFT_OFFLINE would poison the host's pages.
    call: dict[str, Any] = ({"op": "madvise", "addr": "W", "length": "4K", "advice": advice} if op == "madvise" else
                            {"op": "process_madvise", "ranges": [{"addr": "W", "length": "4K"}], "advice": advice})
    prog = parse_program({"ops": [mmap("W", "4K"), {"op": "touch", "addr": "W", "length": "4K"}, call]})
    err = run_programs([prog])[0]
    assert isinstance(err, KernelRunError) and err.kind == "rejected"
    assert str(err) == (f"op 2 ({op}): the kernel runner does not run MADV_HWPOISON or MADV_SOFT_OFFLINE "
                        "(they inject memory failures into the host)")
