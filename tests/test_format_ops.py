"""The ops added for real traces (brk, file fs, pwrite, exec, SysV shm, protection keys, process_madvise):
how they parse, what they bind, and how the model answers; their differential checks are the probes in
tests/probes/ (run against the stored reports and the live kernel)."""

from __future__ import annotations

from typing import Any

import pytest

from vmasim.program import ProgramError, parse_program
from vmasim.program.model import run_model


def _run(ops: list[dict[str, Any]], profile: str = "linux-6.18.44-nopku") -> dict[str, Any]:
    return dict(run_model(parse_program({"ops": ops}), profile))


@pytest.mark.parametrize(("op", "field", "message"), [
    ({"op": "brk"}, "addr", "missing"),
    ({"op": "file", "name": "f", "size": 1, "fs": "ext4"}, "fs", "unknown value"),
    ({"op": "pwrite", "fd": "nope", "offset": 0, "length": 1}, "fd", "used before it is bound"),
    ({"op": "pwrite", "fd": "m", "offset": 0, "length": 65537}, "length", "expected 0..65536"),
    ({"op": "shmat", "shm": "m"}, "shm", "is a file, expected a shm"),
    ({"op": "shmat", "shm": "s", "flags": "private"}, "flags", "unknown name"),
    ({"op": "shmdt"}, "addr", "missing"),
    ({"op": "pkey_alloc", "access": "read"}, "access", "unknown name"),
    ({"op": "pkey_mprotect", "addr": "W", "length": 1, "prot": "r"}, "pkey", "missing"),
    ({"op": "process_madvise", "ranges": [{"addr": "W"}], "advice": "cold"}, "ranges", "range 0"),
    ({"op": "process_madvise", "ranges": [{"addr": "zz", "length": 1}], "advice": "cold"}, "ranges",
     "range 0: name 'zz' is used before it is bound"),
    ({"op": "exec", "argv": []}, "argv", "unknown field"),
])
def test_bad_fields_are_named(op: dict[str, Any], field: str, message: str) -> None:
    setup = [{"op": "memfd", "name": "m", "size": 4096}, {"op": "shmget", "name": "s", "size": 4096}]
    with pytest.raises(ProgramError) as info:
        parse_program({"ops": [*setup, op]})
    assert info.value.where.startswith(f"op 2 ({op['op']})")
    assert info.value.field == field
    assert message in info.value.message


def test_exec_invalidates_addresses_bound_before_it() -> None:
    ops = [{"op": "mmap", "addr": None, "length": 4096, "prot": "r", "flags": ["private", "anonymous"], "as": "a"},
           {"op": "exec"}, {"op": "munmap", "addr": "a", "length": 4096}]
    with pytest.raises(ProgramError) as info:
        parse_program({"ops": ops})
    assert info.value.field == "addr"
    assert "bound before the exec at op 1 (exec)" in info.value.message
    # Bound again after the exec, the name is fine; and W always is.
    parse_program({"ops": [*ops[:2], {**ops[0]}, ops[2], {"op": "munmap", "addr": "W", "length": 4096}]})
    # A fork child's exec leaves the parent's names alone.
    parse_program({"ops": [ops[0], {"op": "fork", "child": [{"op": "exec"}]}, ops[2]]})


def test_brk_and_sbrk_bind_the_break_as_an_address() -> None:
    report = _run([{"op": "sbrk", "increment": "8K", "as": "h"},
                   {"op": "brk", "addr": "h+0x3000", "as": "b"},
                   {"op": "mprotect", "addr": "b-0x1000", "length": 4096, "prot": "r"},
                   {"op": "brk", "addr": 0}])
    assert [r["ret"] for r in report["results"]] == ["+0x0", "+0x3000", 0, "+0x3000"]
    assert [(v["start"], v["perms"]) for v in report["heap"]] == [("+0x0", "rw-p"), ("+0x2000", "r--p")]


def test_exec_gives_the_baseline_layout_and_keeps_descriptors() -> None:
    report = _run([{"op": "memfd", "name": "m", "size": 8192},
                   {"op": "mmap", "addr": "W", "length": 8192, "prot": "rw", "flags": ["shared", "fixed"], "fd": "m"},
                   {"op": "sbrk", "increment": 4096},
                   {"op": "exec"},
                   {"op": "mmap", "addr": "W", "length": 4096, "prot": "r", "flags": ["shared", "fixed"], "fd": "m"}])
    assert report["heap"] == []
    assert [(v["start"], v["end"], v["file"]) for v in report["vmas"]] == [("0x7e0000000000", "0x7e0000001000", "m")]


def test_shm_attachments_are_named_by_their_segment_and_never_merge() -> None:
    report = _run([{"op": "shmget", "name": "seg", "size": 8192},
                   {"op": "shmat", "shm": "seg", "addr": "W", "as": "a"},
                   {"op": "shmat", "shm": "seg", "addr": "W+0x2000"}])
    assert [(v["start"], v["file"], v["perms"]) for v in report["vmas"]] == [
        ("0x7e0000000000", "seg", "rw-s"), ("0x7e0000002000", "seg", "rw-s")]


def test_pkeys_follow_the_target() -> None:
    ops = [{"op": "pkey_alloc"}, {"op": "pkey_alloc", "access": "disable_access"}]
    assert [r["ret"] for r in _run(ops)["results"]] == [-1, -1]
    assert [r["ret"] for r in _run(ops, "linux-6.18.44-pku")["results"]] == [1, 2]


def test_pkey_rights_decide_touches_on_pku() -> None:
    ops = [{"op": "mmap", "addr": "W", "length": 8192, "prot": "rw", "flags": ["private", "anonymous", "fixed"]},
           {"op": "pkey_alloc", "access": "disable_write"},
           {"op": "pkey_mprotect", "addr": "W+0x1000", "length": 4096, "prot": "rw", "pkey": 1},
           {"op": "touch", "addr": "W", "length": 8192, "write": False},
           {"op": "touch", "addr": "W", "length": 8192}]
    results = _run(ops, "linux-6.18.44-pku")["results"]
    assert results[3] == {"op": "touch", "pages": 2, "fault": None}
    assert results[4] == {"op": "touch", "pages": 1, "fault": "SIGSEGV"}


def test_process_madvise_counts_bytes_until_a_failure() -> None:
    ops = [{"op": "mmap", "addr": "W", "length": 16384, "prot": "rw", "flags": ["private", "anonymous", "fixed"]},
           {"op": "process_madvise", "advice": "dontfork",
            "ranges": [{"addr": "W", "length": 4096}, {"addr": "W+0x2000", "length": 4096},
                       {"addr": "W+0x100000", "length": 4096}, {"addr": "W+0x3000", "length": 4096}]}]
    report = _run(ops)
    assert report["results"][1]["ret"] == 8192
    assert [v["perms"] for v in report["vmas"]] == ["rw-p"] * 4  # split by the dontfork flag, twice
