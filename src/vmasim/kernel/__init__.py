"""The kernel runner: run vmasim programs on the host's real kernel.

Architecture (one concern per module):

* ``executor.c`` -- a static C program with no malloc and no stdio, so that
  nothing maps memory behind a program's back.  One exec is a *driver* that
  forks a fresh child per program; the child runs the ops as raw syscalls and
  prints its results and its smaps/numa_maps, filtered in C to the window and
  the heap.  Package data, compiled on first use.
* :mod:`~vmasim.kernel.build` -- compiles the executor into the per-user cache.
* :mod:`~vmasim.kernel.protocol` -- compiles a :class:`~vmasim.program.Program`
  into the executor's line protocol (names become slots resolved at run time).
* :mod:`~vmasim.kernel.decode` -- rebuilds the contract's layout report from
  the executor's output.
* :mod:`~vmasim.kernel.runner` -- process management, batching and timeouts.
* :mod:`~vmasim.kernel.cgroup` -- the caps on each program: memory (a memory
  cgroup, else an RSS watchdog) and tasks.

The process a program runs in is set up as the contract describes: ASLR off
and an 8 MiB soft stack limit (so the layout is the standard top-down one),
walls from the window end up to the stack (hint-less mmaps land top-down from
the window end), and an empty heap (a one-page hole below the initial break).
"""

from __future__ import annotations

import functools
import platform

from vmasim.kernel.build import cache_dir, executor_path
from vmasim.kernel.cgroup import DEFAULT_MEMORY_LIMIT, DEFAULT_TASK_LIMIT, Limits
from vmasim.kernel.decode import Report, numa_policy
from vmasim.kernel.errors import BuildError, KernelRunError
from vmasim.kernel.protocol import encode_program
from vmasim.kernel.runner import default_jobs, run_program, run_programs
from vmasim.program import parse_program
from vmasim.program.report import errno_name


@functools.lru_cache(maxsize=1)
def kernel_available() -> tuple[bool, str]:
    """Whether programs can run on this host's kernel: ``(True, "")`` or ``(False, reason)``.

    False on anything but Linux x86_64, without a C compiler, when the
    executor does not compile, or when a one-op smoke program does not run as
    expected.  Compiles the executor on first call; the answer is cached.
    """
    try:
        executor_path()
        # A smoke run: a sandbox (seccomp, no /proc) can break the executor after it builds.
        report = run_program(
            parse_program(
                {"ops": [{"op": "mmap", "addr": None, "length": 4096, "prot": "r", "flags": ["private", "anonymous"]}]}
            ),
            timeout=30,
        )
    except KernelRunError as exc:
        return False, str(exc)
    except OSError as exc:
        return False, f"cannot run the executor: {exc}"
    if report["results"][0]["errno"] is not None or len(report["vmas"]) != 1:
        return False, f"the executor's smoke test gave an unexpected report: {report}"
    return True, ""


def host_kernel_release() -> str:
    """The host kernel's release string, as ``uname -r`` prints it."""
    return platform.release()


__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_TASK_LIMIT",
    "BuildError",
    "KernelRunError",
    "Limits",
    "Report",
    "cache_dir",
    "default_jobs",
    "encode_program",
    "errno_name",
    "executor_path",
    "host_kernel_release",
    "kernel_available",
    "numa_policy",
    "run_program",
    "run_programs",
]
