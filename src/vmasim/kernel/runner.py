"""Run programs on the host kernel: one executor exec per chunk, one fresh child per program.

The executor is started with its own session so that a runaway chunk can be
killed as a group.  Its parent-death signal is SIGTERM, on which it kills the
program it runs and removes its cgroups; every process a program forks dies
with its parent (PR_SET_PDEATHSIG), so nothing outlives a run.  The program's
``file`` objects are born unnamed in the temporary directory (O_TMPFILE), so
no signal to vmasim, not even SIGKILL, can leave one behind.  Each program
runs under the caps of :mod:`~vmasim.kernel.cgroup` (memory and tasks).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vmasim.kernel.build import executor_path
from vmasim.kernel.cgroup import Limits, cgroup_pool
from vmasim.kernel.decode import Report, RunInfo, decode_outcome
from vmasim.kernel.errors import KernelRunError
from vmasim.kernel.protocol import EncodeError, encode_program
from vmasim.program import Program

#: Most programs handed to one executor exec.  Large enough that exec and
#: compile-cache costs vanish, small enough that two jobs stay balanced.
CHUNK_MAX = 256

#: Extra seconds a whole chunk may take beyond the sum of its programs' timeouts
#: before Python stops trusting the executor's own per-program timer.
CHUNK_SLACK = 30.0


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


def _describe_returncode(rc: int) -> str:
    if rc == 0:
        return ""
    if rc < 0:
        try:
            return f"the executor was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"the executor was killed by signal {-rc}"
    return f"the executor exited with status {rc}"


def _outcome(
    program: Program, lines: list[str], trailer: str, timeout: float, limits: Limits, mechanism: str
) -> Report | KernelRunError:
    try:
        _, status_s, kind, oom_s = trailer.split()
        info = RunInfo(
            status=int(status_s),
            kind=kind,
            oom_kills=int(oom_s),
            timeout=timeout,
            memory_limit=limits.memory,
            task_limit=limits.tasks,
            mechanism=mechanism,
        )
    except ValueError:
        return KernelRunError(f"malformed executor line {trailer[:200]!r}")
    return decode_outcome(lines, program, info)


def _run_chunk(
    exe: Path, programs: Sequence[Program], texts: Sequence[str], timeout: float, limits: Limits
) -> list[Report | KernelRunError]:
    caps = cgroup_pool().acquire(limits)
    reusable = False
    try:
        proc = subprocess.Popen(
            [str(exe), tempfile.gettempdir(), str(max(1, int(timeout * 1000))), *caps.args],
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
            failure = _describe_returncode(proc.returncode)
            if err:
                failure += f" ({err.decode(errors='replace')[-500:].strip()})"
            reusable = proc.returncode == 0
    finally:
        cgroup_pool().release(caps, reusable=reusable)
    parts = _split_output(out.decode(errors="replace"))
    results: list[Report | KernelRunError] = []
    for i, program in enumerate(programs):
        if i < len(parts):
            lines, trailer = parts[i]
            results.append(_outcome(program, lines, trailer, timeout, limits, caps.mechanism))
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
    programs: Sequence[Program],
    *,
    jobs: int | None = None,
    timeout: float = 10.0,
    memory_limit: int | None = None,
    task_limit: int | None = None,
) -> list[Report | KernelRunError]:
    """Run each program in a fresh process on the host kernel; one report (or error) per program, in order.

    ``jobs`` executors run in parallel (default and most: the usable CPUs);
    each runs a chunk of programs, forking a fresh child per program.
    ``timeout`` is per program, in seconds: a program that takes longer (for
    example a fork that blocks on a userfaultfd ``event_fork``) is killed with
    all its processes and reported as a :class:`KernelRunError`.
    ``memory_limit`` (bytes) and ``task_limit`` (processes) cap each program
    (default: ``$VMASIM_MEMORY_LIMIT`` or 1 GiB, ``$VMASIM_TASK_LIMIT`` or
    256); a program that goes over one is stopped and reported as a
    :class:`KernelRunError` that names the op it was running.  Raises
    :class:`BuildError` (a :class:`KernelRunError`) if the executor cannot be
    built, ValueError for a bad ``jobs``, ``timeout`` or limit.
    """
    if timeout <= 0:
        raise ValueError("run_programs: timeout must be positive")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"run_programs: jobs must be a positive int, got {jobs!r}")
    limits = Limits.from_env(memory_limit, task_limit)
    exe = executor_path()
    if not exe.exists():
        # another vmasim pruned it (it had not used it for weeks, or it named a stale build)
        executor_path.cache_clear()
        exe = executor_path()
    out: list[Report | KernelRunError | None] = [None] * len(programs)
    todo: list[int] = []
    texts: dict[int, str] = {}
    for i, program in enumerate(programs):
        try:
            texts[i] = encode_program(program)
            todo.append(i)
        except EncodeError as exc:
            out[i] = KernelRunError(str(exc), kind="rejected")
    # More executors than CPUs only make the programs' timers race each other.
    njobs = min(jobs if jobs is not None else default_jobs(), default_jobs())
    size = max(1, min(CHUNK_MAX, -(-len(todo) // (2 * njobs)) if todo else 1))
    chunks = [todo[k : k + size] for k in range(0, len(todo), size)]

    def work(chunk: list[int]) -> list[Report | KernelRunError]:
        return _run_chunk(exe, [programs[i] for i in chunk], [texts[i] for i in chunk], timeout, limits)

    if njobs == 1 or len(chunks) <= 1:
        done = [work(c) for c in chunks]
    else:
        with ThreadPoolExecutor(max_workers=njobs) as pool:
            done = list(pool.map(work, chunks))
    for chunk, reports in zip(chunks, done, strict=True):
        for i, report in zip(chunk, reports, strict=True):
            out[i] = report
    return [r if r is not None else KernelRunError("internal error: no result") for r in out]


def run_program(
    program: Program, *, timeout: float = 10.0, memory_limit: int | None = None, task_limit: int | None = None
) -> Report:
    """Run ``program`` in a fresh process on the host kernel and return its layout report.

    The report is a plain JSON-able dict in the contract's shape (results,
    vmas, heap, children).  Raises :class:`KernelRunError` if the program
    times out, a process of it dies or it goes over a cap (see
    :func:`run_programs`), and :class:`BuildError` if the executor cannot be
    built.
    """
    result = run_programs([program], jobs=1, timeout=timeout, memory_limit=memory_limit, task_limit=task_limit)[0]
    if isinstance(result, KernelRunError):
        raise result
    return result
