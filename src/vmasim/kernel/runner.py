"""Run programs on the host kernel: one executor exec per chunk, one fresh child per program.

The executor is started with its own session so that a runaway chunk can be
killed as a group, and every process it forks dies with its parent
(PR_SET_PDEATHSIG), so nothing outlives a run.  Each chunk gets a private
temporary directory for the program's ``file`` objects, removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vmasim.kernel.build import executor_path
from vmasim.kernel.decode import DecodeError, Report, decode_report
from vmasim.kernel.errors import KernelRunError
from vmasim.kernel.protocol import EncodeError, encode_program
from vmasim.program import Program

#: Most programs handed to one executor exec.  Large enough that exec and
#: compile-cache costs vanish, small enough that two jobs stay balanced.
CHUNK_MAX = 256

#: Extra seconds a whole chunk may take beyond the sum of its programs' timeouts
#: before Python stops trusting the executor's own per-program timer.
CHUNK_SLACK = 30.0


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"wait status {status:#x}"


def _split_output(text: str) -> list[tuple[list[str], str]]:
    """Cut the executor's stdout into (lines, ``D`` trailer) per program."""
    done: list[tuple[list[str], str]] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.startswith("D "):
            done.append((current, line))
            current = []
        elif line:
            current.append(line)
    return done


def _outcome(program: Program, lines: list[str], trailer: str, timeout: float) -> Report | KernelRunError:
    _, status_s, kind = trailer.split()
    status = int(status_s)
    if kind == "T":
        return KernelRunError(f"the program timed out after {timeout:g} s")
    if kind == "B":
        return KernelRunError("the executor rejected the encoded program (executor limits exceeded?)")
    if status != 0:
        blocked = [line.split()[1] for line in lines if line.startswith("U ")]
        if blocked:
            # printed by the executor's uffd watcher just before it killed the process
            return KernelRunError(
                f"op {blocked[-1]} (an index in its process's op list) would wait forever for a userfaultfd "
                "handler (a fault inside a syscall, or a uffd event such as event_fork); the program was stopped"
            )
        return KernelRunError(f"the program's process {_describe_status(status)}")
    try:
        return decode_report(lines, program)
    except DecodeError as exc:
        return KernelRunError(str(exc))


def _run_chunk(
    exe: Path, programs: Sequence[Program], texts: Sequence[str], timeout: float
) -> list[Report | KernelRunError]:
    tmp = tempfile.mkdtemp(prefix="vmasim-run-")
    try:
        proc = subprocess.Popen(
            [str(exe), tmp, str(max(1, int(timeout * 1000)))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate("".join(texts).encode(), timeout=(timeout + 1.0) * len(texts) + CHUNK_SLACK)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            failure = f"the executor did not finish the chunk in time: {err.decode(errors='replace')[-500:]}"
        else:
            failure = f"the executor {_describe_status(proc.returncode)}" if proc.returncode else ""
            if err:
                failure += f" ({err.decode(errors='replace')[-500:].strip()})"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    parts = _split_output(out.decode(errors="replace"))
    results: list[Report | KernelRunError] = []
    for i, program in enumerate(programs):
        if i < len(parts):
            lines, trailer = parts[i]
            results.append(_outcome(program, lines, trailer, timeout))
        else:
            results.append(KernelRunError(failure or "the executor stopped before running this program"))
    return results


def default_jobs() -> int:
    """How many executors to run side by side: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_programs(
    programs: Sequence[Program], *, jobs: int | None = None, timeout: float = 10.0
) -> list[Report | KernelRunError]:
    """Run each program in a fresh process on the host kernel; one report (or error) per program, in order.

    ``jobs`` executors run in parallel (default: the usable CPUs); each runs a
    chunk of programs, forking a fresh child per program.  ``timeout`` is per
    program, in seconds: a program that takes longer (for example a fork that
    blocks on a userfaultfd ``event_fork``) is killed with all its processes
    and reported as a :class:`KernelRunError`.  Raises :class:`BuildError`
    (a :class:`KernelRunError`) if the executor cannot be built.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    exe = executor_path()
    out: list[Report | KernelRunError | None] = [None] * len(programs)
    todo: list[int] = []
    texts: dict[int, str] = {}
    for i, program in enumerate(programs):
        try:
            texts[i] = encode_program(program)
            todo.append(i)
        except EncodeError as exc:
            out[i] = KernelRunError(str(exc))
    njobs = max(1, jobs if jobs is not None else default_jobs())
    size = max(1, min(CHUNK_MAX, -(-len(todo) // (2 * njobs)) if todo else 1))
    chunks = [todo[k : k + size] for k in range(0, len(todo), size)]

    def work(chunk: list[int]) -> list[Report | KernelRunError]:
        return _run_chunk(exe, [programs[i] for i in chunk], [texts[i] for i in chunk], timeout)

    if njobs == 1 or len(chunks) <= 1:
        done = [work(c) for c in chunks]
    else:
        with ThreadPoolExecutor(max_workers=njobs) as pool:
            done = list(pool.map(work, chunks))
    for chunk, reports in zip(chunks, done, strict=True):
        for i, report in zip(chunk, reports, strict=True):
            out[i] = report
    return [r if r is not None else KernelRunError("internal error: no result") for r in out]


def run_program(program: Program, *, timeout: float = 10.0) -> Report:
    """Run ``program`` in a fresh process on the host kernel and return its layout report.

    The report is a plain JSON-able dict in the contract's shape (results,
    vmas, heap, children).  Raises :class:`KernelRunError` if the program
    times out or its process dies, and :class:`BuildError` if the executor
    cannot be built.
    """
    result = run_programs([program], jobs=1, timeout=timeout)[0]
    if isinstance(result, KernelRunError):
        raise result
    return result
