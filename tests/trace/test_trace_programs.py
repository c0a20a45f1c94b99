"""Tracing small programs the suite builds: the model must follow every call exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vmasim.trace import Options, TraceResult, trace
from vmasim.trace.summary import final_layout


def _trace(argv: list[str], check: str = "every") -> TraceResult:
    result = trace(argv, Options(check=check))
    assert result.error is None
    assert result.exit_status == 0
    return result


def _assert_all_agreed(result: TraceResult) -> None:
    for image in result.images:
        assert image.stats.divergences == [], [d.as_dict() for d in image.stats.divergences]
        assert image.stats.agreed == image.stats.calls
    assert result.calls > 0
    assert result.agreed == result.calls


def _calls(result: TraceResult, name: str) -> int:
    return sum(i.stats.by_call[name] for i in result.images)


def test_threads_with_guard_pages(build: Callable[[str], str]) -> None:
    result = _trace([build("threads"), "4"])
    _assert_all_agreed(result)
    assert len(result.images) == 1  # threads share one address space
    final = final_layout(result.images[0])
    assert final is not None
    # glibc's thread stacks have a PROT_NONE guard below them.
    assert final["reasons"].get("guard pages (PROT_NONE) beside accessible memory", 0) >= 4


def test_fork_and_exec(build: Callable[[str], str]) -> None:
    result = _trace([build("forkexec"), "/bin/true"])
    _assert_all_agreed(result)
    programs = [(i.program, i.parent is not None) for i in result.images]
    assert programs[0] == ("forkexec", False)
    assert ("forkexec", True) in programs  # the fork child, before its exec
    assert programs[-1][0] == "true"
    child = result.images[1]
    assert child.stats.by_call["mprotect"] == 2 and child.stats.by_call["munmap"] == 1


def test_fork_and_exec_need_no_exit_stop(build: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork's and a successful exec's event stops tell the tracer all it needs: it lets them run through
    their exit, even with a comparison after every call."""
    from vmasim.trace.tracer import Task, Tracer

    at_exit: list[str] = []
    real = Tracer._exit_stop

    def exit_stop(self: Tracer, task: Task) -> None:
        if task.call is not None:
            at_exit.append(task.call.name)
        real(self, task)

    monkeypatch.setattr(Tracer, "_exit_stop", exit_stop)
    result = _trace([build("forkexec"), "/bin/true"], check="every")
    _assert_all_agreed(result)
    assert at_exit and not {"clone", "clone3", "fork", "vfork", "execve"} & set(at_exit)


def test_realloc_grows_through_mremap(build: Callable[[str], str]) -> None:
    result = _trace([build("realloc")])
    _assert_all_agreed(result)
    assert _calls(result, "mremap") >= 20


def test_many_malloc_arenas(build: Callable[[str], str]) -> None:
    result = _trace([build("arenas"), "8"], check="10")
    _assert_all_agreed(result)
    assert _calls(result, "mprotect") >= 8  # each arena's heap grows by mprotect


def test_stacks_files_and_memfds(build: Callable[[str], str]) -> None:
    result = _trace([build("stacks")])
    _assert_all_agreed(result)
    image = result.images[0]
    for name in ("mprotect", "madvise", "munmap", "mlock", "munlock"):
        assert image.stats.by_call[name] > 0, name
    final = final_layout(image)
    assert final is not None
    assert any(kind.startswith("memfd") for kind in final["by_kind"])


def test_check_end_counts_every_call_once(build: Callable[[str], str]) -> None:
    result = _trace([build("realloc")], check="end")
    _assert_all_agreed(result)
    assert all(i.stats.checks == 1 for i in result.images)


def test_a_divergence_is_reported_and_repaired(build: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that skips one mprotect diverges once; the mirror repairs itself and agrees afterwards."""
    from vmasim.trace import mirror

    real_apply = mirror.apply
    skipped: list[str] = []

    def apply(image: mirror.Image, call: mirror.Call) -> int:
        if call.name == "mprotect" and not skipped and image.program == "stacks":
            skipped.append(call.describe(result=False))
            return 0
        return real_apply(image, call)

    monkeypatch.setattr(mirror, "apply", apply)
    result = trace([build("stacks")], Options(check="every"))
    image = result.images[0]
    assert len(image.stats.divergences) == 1
    div = image.stats.divergences[0]
    assert div.kind == "layout" and div.call.startswith(skipped[0])
    assert div.kernel and div.model and div.kernel != div.model
    assert image.stats.agreed == image.stats.calls - 1
    # The reproducer rebuilds the layout before the call and makes the call; on the real model (which does
    # not skip calls) it agrees with the kernel.
    from vmasim.program import parse_program
    from vmasim.trace.reproduce import attach_reproducers

    attach_reproducers(result)
    assert div.program is not None, div.program_note
    assert div.program["ops"][-1]["op"] == "mprotect"
    parse_program(div.program)


def test_rarer_calls(build: Callable[[str], str]) -> None:
    """userfaultfd, mseal, mlock2, mlockall, guard regions, DONTFORK/WIPEONFORK forks, mbind, KSM, SysV shm."""
    result = _trace([build("misc")])
    _assert_all_agreed(result)
    parent = result.images[0]
    for name in ("ioctl", "mseal", "mlock2", "mlockall", "munlockall", "mbind", "set_mempolicy", "prctl", "mremap"):
        assert parent.stats.by_call[name] > 0, name
    assert parent.stats.unmodelled == 0  # shmat and shmdt are mirrored too
    assert parent.stats.by_call["shmat"] > 0 and parent.stats.by_call["shmdt"] > 0
    final = final_layout(parent)
    assert final is not None
    assert "different flags: VM_SEALED" in final["reasons"]
    assert "different flags: VM_WIPEONFORK" in final["reasons"]


def test_a_brk_divergence_gets_a_reproducer_that_rebuilds_the_heap(
        build: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that skips the heap's growth after a page inside it was made read-only: the reproducer rebuilds the
    cut heap in the runner's heap and makes the brk there."""
    from vmasim.trace import mirror
    from vmasim.trace.reproduce import attach_reproducers

    real_apply = mirror.apply
    grows: list[int] = []

    def apply(image: mirror.Image, call: mirror.Call) -> int:
        if call.name == "brk" and call.args[0] and image.program == "heap":
            grows.append(call.args[0])
            if len(grows) == 2:  # sbrk(8 pages), after the mprotect
                return image.mm.brk
        return real_apply(image, call)

    monkeypatch.setattr(mirror, "apply", apply)
    result = trace([build("heap")], Options(check="every"))
    assert result.exit_status == 0
    image = result.images[0]
    assert len(image.stats.divergences) == 1  # the model's break is repaired from the kernel's result
    div = image.stats.divergences[0]
    assert div.call.startswith("brk(") and "the kernel returned" in div.detail
    attach_reproducers(result)
    assert div.program is not None, div.program_note
    ops = div.program["ops"]
    assert ops[0] == {"op": "sbrk", "increment": "0x10000", "as": "heap"}
    assert {"op": "mprotect", "addr": "heap+0x4000", "length": "0x1000", "prot": "r"} in ops
    assert ops[-1] == {"op": "brk", "addr": "heap+0x18000"}
    from vmasim.kernel import kernel_available

    if kernel_available()[0]:
        assert "model and kernel agree" in div.program_note


@pytest.mark.parametrize("close_stops", [False, True], ids=["kcmp", "close-stops"])
@pytest.mark.parametrize("check", ["every", "end"])
def test_open_files_are_told_apart(build: Callable[[str], str], monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path, close_stops: bool, check: str) -> None:
    """Two opens of one file never merge, one open (a dup, a fork's copy) may, a number reused is a new open:
    with kcmp against the tracer's duplicates, and with every close stopped on (kernels without pidfd_getfd)."""
    from vmasim.trace import fds

    if close_stops:
        monkeypatch.setattr(fds.OpenFiles, "available", staticmethod(lambda: False))
    elif not fds.OpenFiles.available():
        pytest.skip("this kernel has no pidfd_getfd or kcmp: the tracer stops on every close instead")
    held: list[int] = []
    real_sweep = fds.OpenFiles.sweep

    def sweep(self: fds.OpenFiles, live: set[int], walked: int = 0) -> None:
        real_sweep(self, live, walked)
        held.append(self.count)

    monkeypatch.setattr(fds.OpenFiles, "sweep", sweep)
    result = _trace([build("opens"), str(tmp_path / "mapped")], check=check)
    _assert_all_agreed(result)
    assert [i.program for i in result.images] == ["opens", "opens"]
    final = final_layout(result.images[0])
    assert final is not None
    assert final["reasons"]["different files, or different opens of one file"] >= 3
    if not close_stops:
        # 150 opens mapped one page each, over 8 slots: the duplicates of the unmapped ones were closed.
        assert len(held) >= 2 and max(held[:-1]) < 150 and held[-1] == 0


def test_check_end_mirrors_calls_at_their_entry_and_still_sees_a_wrong_one(
        build: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With no comparison due, a call whose result the model predicts is mirrored at its entry (one stop, not
    two); a model that got one of those calls wrong still diverges at the comparison at the end."""
    from vmasim.trace import mirror
    from vmasim.trace import ptrace as P

    exit_stops: list[bool] = []
    real_resume = P.resume

    def resume(pid: int, sig: int = 0, *, to_exit: bool = False) -> bool:
        exit_stops.append(to_exit)
        return real_resume(pid, sig, to_exit=to_exit)

    monkeypatch.setattr(P, "resume", resume)
    result = _trace([build("stacks")], check="end")
    _assert_all_agreed(result)
    calls = result.images[0].stats.calls
    assert sum(exit_stops) < calls / 2  # most calls never stopped at their exit

    real_apply = mirror.apply
    skipped: list[str] = []

    def apply(image: mirror.Image, call: mirror.Call) -> int:
        if call.name == "munmap" and not skipped:
            skipped.append(call.describe(result=False))
            return 0
        return real_apply(image, call)

    monkeypatch.setattr(mirror, "apply", apply)
    result = _trace([build("stacks")], check="end")
    image = result.images[0]
    assert skipped and len(image.stats.divergences) == 1
    assert image.stats.divergences[0].call == "(end of process)"
    assert image.stats.agreed == 0


def test_a_failure_of_the_mirror_lets_the_program_finish(
        build: Callable[[str], str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the model (here: an exception on the fifth mirrored call) stops the mirroring, not the program:
    every process runs to its end, and the result says what failed and where."""
    from vmasim.trace import mirror

    real_apply = mirror.apply
    seen: list[str] = []

    def apply(image: mirror.Image, call: mirror.Call) -> int:
        seen.append(call.name)
        if len(seen) == 5:
            raise RuntimeError("a model bug")
        return real_apply(image, call)

    monkeypatch.setattr(mirror, "apply", apply)
    result = trace([build("forkexec"), "/bin/true"], Options(check="end"))
    assert result.exit_status == 0  # the parent waited for its child, which exec'd true: all ran
    assert result.error is not None and "RuntimeError" in result.error and "a model bug" in result.error
    assert "test_trace_programs.py" in result.error
    assert result.calls == 4 and len(seen) == 5


def test_the_tracer_out_of_descriptors_sweeps_and_tries_again(
        build: Callable[[str], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pidfd_getfd failing with EMFILE: the duplicates of unmapped files are closed and the call retried, so
    open files are still told apart."""
    import errno

    from vmasim.trace import fds

    real = fds.pidfd_getfd_via
    calls: list[int] = []

    def pidfd_getfd_via(pidfd: int, fd: int) -> int:
        calls.append(fd)
        if len(calls) % 2:
            raise OSError(errno.EMFILE, "Too many open files")
        return real(pidfd, fd)

    if not fds.OpenFiles.available():
        pytest.skip("this kernel has no pidfd_getfd or kcmp: the tracer stops on every close instead")
    monkeypatch.setattr(fds.OpenFiles, "available", staticmethod(lambda: True))
    monkeypatch.setattr(fds, "pidfd_getfd_via", pidfd_getfd_via)
    result = _trace([build("opens"), str(tmp_path / "mapped")], check="every")
    _assert_all_agreed(result)
    assert len(calls) >= 20


def test_a_tracer_that_sleeps_at_once_follows_the_same(build: Callable[[str], str]) -> None:
    """``spin=0``: no polling before waitpid sleeps (as on a single CPU); nothing else changes."""
    result = trace([build("realloc")], Options(check="every", spin=0.0))
    assert result.error is None and result.exit_status == 0
    _assert_all_agreed(result)
