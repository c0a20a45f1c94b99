"""Encoding programs and decoding executor output, without running anything."""

from __future__ import annotations

import pytest

from vmasim.kernel.decode import DecodeError, decode_report, errno_name, numa_policy
from vmasim.kernel.protocol import encode_program
from vmasim.program import ProgramError, parse_program

ANON = ["private", "anonymous"]


def test_encode_names_become_slots() -> None:
    prog = parse_program(
        {
            "ops": [
                {"op": "mmap", "addr": "W", "length": "8K", "prot": "rw", "flags": ANON, "as": "a"},
                {"op": "memfd", "name": "m", "size": "4K"},
                {"op": "mprotect", "addr": "a+0x1000", "length": "4K", "prot": "r"},
                {"op": "mmap", "addr": "a-4K", "length": "4K", "prot": "r", "flags": "shared", "fd": "m"},
            ]
        }
    )
    lines = encode_program(prog).splitlines()
    assert lines[0] == "P 7e0000000000 100000000 1"
    assert lines[1] == "m 0 0 9 7e0000000000 2000 3 22 ffffffffffffffff 0"
    assert lines[2] == "M 1 1 1000"
    assert lines[3] == "s 2 -1 a 0:1000 1000 1"
    assert lines[4] == f"m 3 -1 9 0:{(-4096) % 2**64:x} 1000 1 1 1:0 0"
    assert lines[-1] == "E"


def test_encode_fork_counts_nested_lines() -> None:
    prog = parse_program(
        {
            "ops": [
                {"op": "fork", "child": [{"op": "munlockall"}, {"op": "fork", "child": [{"op": "munlockall"}]}]},
                {"op": "sbrk", "increment": -4096},
            ]
        }
    )
    lines = encode_program(prog).splitlines()
    assert lines[1] == "K 0 -1 3"  # the child's two ops plus the grandchild's one
    assert lines[3] == "K 1 -1 1"
    assert lines[5] == f"b 1 -1 {2**64 - 4096:x}"


def test_prctl_name_is_hex_encoded() -> None:
    prog = parse_program(
        {"ops": [{"op": "prctl", "option": "set_vma_anon_name", "addr": "W", "length": "4K", "name": "a b"}]}
    )
    assert encode_program(prog).splitlines()[1].endswith(" x612062")


def test_file_names_are_labels_not_paths() -> None:
    with pytest.raises(ProgramError):
        parse_program({"ops": [{"op": "file", "name": "../../etc/passwd", "size": "4K"}]})


@pytest.mark.parametrize(
    ("line", "policy"),
    [
        ("7e0000004000 bind:0 anon=4 dirty=4 active=0 N0=4 kernelpagesize_kB=4", "bind:0"),
        ("7e0000004000 prefer (many):0 anon=1 N0=1", "prefer (many):0"),
        ("7e0000004000 weighted interleave:0", "weighted interleave:0"),
        ("7e0000004000 weighted interleave=relative:0 file=/memfd:x\\040(deleted)", "weighted interleave=relative:0"),
        ("00c08000 default heap anon=1", "default"),
        ("7ffd0000 default stack anon=3", "default"),
        ("7e0000004000 bind=static:0 huge", "bind=static:0"),
    ],
)
def test_numa_policy(line: str, policy: str) -> None:
    assert numa_policy(line)[1] == policy


def test_errno_name() -> None:
    assert errno_name(12) == "ENOMEM"
    assert errno_name(99999) == "E99999"


def test_decode_rejects_a_dead_child() -> None:
    prog = parse_program({"ops": [{"op": "fork", "child": []}]})
    with pytest.raises(DecodeError, match="died"):
        decode_report(["H 1000", "C 0", "Z 0 9", "R 0 0 0"], prog)


def test_decode_rejects_missing_results() -> None:
    prog = parse_program({"ops": [{"op": "munlockall"}, {"op": "munlockall"}]})
    with pytest.raises(DecodeError, match="expected 2 results"):
        decode_report(["H 1000", "R 0 0 0"], prog)
