"""Encoding programs and decoding executor output, without running anything."""

from __future__ import annotations

import pytest

from vmasim.kernel import KernelRunError
from vmasim.kernel.decode import DecodeError, Report, RunInfo, decode_outcome, decode_report, errno_name, numa_policy
from vmasim.kernel.protocol import ANON_VMA_NAME_MAX_LEN, MAX_STRING_BYTES, EncodeError, encode_program
from vmasim.program import ProgramError, parse_program
from vmasim.program.parse import MAX_FORK_DEPTH

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


def test_anon_names_reach_the_executor_capped_at_the_kernels_length() -> None:
    # The kernel reads at most ANON_VMA_NAME_MAX_LEN bytes: what follows cannot change its answer.
    ops = [
        {"op": "prctl", "option": "set_vma_anon_name", "addr": "W", "length": "4K", "name": "y" * n}
        for n in (79, 80, 300000)
    ]
    lines = encode_program(parse_program({"ops": ops})).splitlines()
    sent = [bytes.fromhex(line.rsplit(" x", 1)[1]) for line in lines[1:4]]
    assert sent == [b"y" * 79, b"y" * ANON_VMA_NAME_MAX_LEN, b"y" * ANON_VMA_NAME_MAX_LEN]
    assert max(map(len, lines)) < 400


def test_too_many_string_bytes_is_an_encode_error() -> None:
    op = {"op": "prctl", "option": "set_vma_anon_name", "addr": "W", "length": "4K", "name": "z" * 100}
    with pytest.raises(EncodeError, match="strings"):
        encode_program(parse_program({"ops": [op] * (MAX_STRING_BYTES // ANON_VMA_NAME_MAX_LEN + 1)}))


def test_encode_deep_forks_without_recursion() -> None:
    ops: list[dict[str, object]] = [{"op": "munlockall"}]
    for _ in range(MAX_FORK_DEPTH):
        ops = [{"op": "fork", "child": ops}]
    lines = encode_program(parse_program({"ops": ops})).splitlines()
    assert lines[1] == f"K 0 -1 {MAX_FORK_DEPTH:x}"
    assert lines[MAX_FORK_DEPTH] == "K 0 -1 1"
    assert lines[MAX_FORK_DEPTH + 1] == "s 0 -1 98" and lines[-1] == "E"


# -- decoding what stopped programs leave: synthetic executor output ------------------------------

FORKY = {
    "ops": [
        {"op": "munlockall"},
        {"op": "fork", "child": [{"op": "munlockall"}, {"op": "fork", "child": [{"op": "munlockall"}]}]},
        {"op": "munlockall"},
    ]
}
KILLED, SEGV = 9, 11  # wait statuses of processes killed by SIGKILL and SIGSEGV


def _outcome(lines: list[str], **info: object) -> Report | KernelRunError:
    return decode_outcome(lines, parse_program(FORKY), RunInfo(**info))  # type: ignore[arg-type]


def test_a_crash_names_the_op_and_keeps_the_results_before_it() -> None:
    err = _outcome(["H 1000", "R 0 0 0"], status=SEGV)
    assert isinstance(err, KernelRunError)
    assert err.kind == "crash" and err.op_path == "1"
    assert str(err) == "op 1 (fork): the program's process died (killed by SIGSEGV)"
    assert err.partial == {
        "results": [{"op": "munlockall", "ret": 0, "errno": None}],
        "children": {},
        "stopped": "the program's process died (killed by SIGSEGV)",
    }


def test_a_crashing_child_keeps_the_parent_report_and_finished_children() -> None:
    lines = ["H 1000", "R 0 0 0", "C 1", "R 0 0 0", "C 1", "R 0 0 0", "Z 1 0", "R 1 0 0"]
    lines += ["", "Z 0 11", "R 1 0 0", "R 2 0 0", "V 7e0000000000-7e0000001000 rw-p 00000000 00:00 0"]
    err = _outcome(lines)
    assert isinstance(err, KernelRunError)
    # the child finished its ops, so it died while reporting its layout
    assert err.kind == "crash" and err.op_path is None
    assert str(err).startswith("after op 1.1 (fork), while reporting the layout: the fork child died")
    assert err.partial is not None
    assert len(err.partial["results"]) == 3 and len(err.partial["vmas"]) == 1
    child = err.partial["children"]["1"]
    assert "SIGSEGV" in child["stopped"] and "vmas" not in child
    assert child["children"]["1"]["results"] == [{"op": "munlockall", "ret": 0, "errno": None}]
    assert "stopped" not in child["children"]["1"]


def test_a_child_that_died_with_its_unflushed_children_does_not_shift_the_tree() -> None:
    # the grandchild's report never ended (its parent died before printing "Z 1 ..."): "Z 0" closes both
    lines = ["H 1000", "R 0 0 0", "C 1", "R 0 0 0", "C 1", "R 0 0 0", "Z 0 9", "R 1 0 0", "R 2 0 0"]
    err = _outcome(lines, oom_kills=1, memory_limit=1 << 30)
    assert isinstance(err, KernelRunError)
    assert err.kind == "memory"
    assert str(err) == "op 1.1 (fork): stopped: out of memory (limit 1 GiB)"
    assert err.partial is not None and len(err.partial["results"]) == 3


def test_a_timeout_names_the_innermost_running_op() -> None:
    err = _outcome(["H 1000", "R 0 0 0", "C 1", "R 0 0 0", "C 1"], status=KILLED, kind="T", timeout=2.5)
    assert isinstance(err, KernelRunError)
    assert (err.kind, err.op_path) == ("timeout", "1.1.0")
    assert str(err) == "op 1.1.0 (munlockall): the program timed out after 2.5 s"


def test_the_task_cap_and_the_uffd_watcher_name_their_op() -> None:
    err = _outcome(["H 1000", "R 0 0 0", "C 1", "R 0 0 0", "L 1 0"], status=KILLED, task_limit=2)
    assert isinstance(err, KernelRunError)
    assert (err.kind, err.op_path, str(err)) == ("tasks", "1.1", "op 1.1 (fork): stopped: too many tasks (limit 2)")
    err = _outcome(["H 1000", "R 0 0 0", "C 1", "", "U 0 1"], status=KILLED)
    assert isinstance(err, KernelRunError)
    assert (err.kind, err.op_path) == ("uffd", "1")


def test_a_failed_self_check_says_the_results_cannot_be_trusted() -> None:
    err = _outcome(["H 1000", "R 0 0 0", "Q 1"], status=KILLED)
    assert isinstance(err, KernelRunError)
    assert err.kind == "crash" and "executor's own memory" in str(err)


def test_a_memory_stop_by_the_watchdog_says_so() -> None:
    err = _outcome(["H 1000"], status=KILLED, kind="M", memory_limit=256 << 20, mechanism="watchdog")
    assert isinstance(err, KernelRunError)
    assert str(err).startswith("op 0 (munlockall): stopped: out of memory (limit 256 MiB of resident memory")


def test_a_process_dead_before_its_first_op() -> None:
    err = _outcome([], status=SEGV)
    assert isinstance(err, KernelRunError)
    assert str(err) == "the program's process died (killed by SIGSEGV), before its first op"


def test_garbage_after_a_crash_is_not_an_error_of_its_own() -> None:
    err = _outcome(["H 1000", "R 0 0 0", "R 1 7e00"], status=KILLED, oom_kills=1, memory_limit=1 << 30)
    assert isinstance(err, KernelRunError) and err.kind == "memory"
    ok = _outcome(["H 1000", "R 0 0 0", "R 7 0 0"])
    assert isinstance(ok, KernelRunError) and "out of order" in str(ok)
