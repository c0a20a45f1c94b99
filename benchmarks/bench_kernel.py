"""Throughput of the kernel runner: short programs per second, one by one and in batch.

Run: ``python benchmarks/bench_kernel.py [N]``.  Not a test: numbers depend on the host.
"""

from __future__ import annotations

import sys
import time

from vmasim.kernel import default_jobs, kernel_available, run_program, run_programs
from vmasim.program import Program, parse_program


def short_programs(n: int) -> list[Program]:
    """``n`` small, varied programs of 3-6 ops (mmap, touch, mprotect, munmap, hint-less mmap)."""
    out = []
    for i in range(n):
        pages = 1 + i % 8
        ops = [
            {"op": "mmap", "addr": "W", "length": pages * 4096, "prot": "rw",
             "flags": ["private", "anonymous", "fixed_noreplace"], "as": "a"},
            {"op": "touch", "addr": "a", "length": "4K"},
            {"op": "mprotect", "addr": "a", "length": "4K", "prot": "r"},
        ]
        if i % 2:
            ops.append({"op": "mmap", "addr": None, "length": "8K", "prot": "r", "flags": ["private", "anonymous"]})
        if i % 3 == 0:
            ops.append({"op": "munmap", "addr": "a", "length": "4K"})
        out.append(parse_program({"ops": ops}))
    return out


def main() -> None:
    ok, why = kernel_available()
    if not ok:
        sys.exit(f"kernel runner unavailable: {why}")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    programs = short_programs(n)
    run_programs(programs[:4])  # warm up: compile, page cache

    k = min(n, 300)
    t = time.perf_counter()
    for p in programs[:k]:
        run_program(p)
    single = k / (time.perf_counter() - t)
    print(f"run_program, one at a time: {single:8.0f} programs/s ({k} programs)")

    for jobs in sorted({1, default_jobs()}):
        t = time.perf_counter()
        res = run_programs(programs, jobs=jobs)
        rate = n / (time.perf_counter() - t)
        bad = sum(1 for r in res if not isinstance(r, dict))
        print(f"run_programs, jobs={jobs}:     {rate:8.0f} programs/s ({n} programs, {bad} errors)")


if __name__ == "__main__":
    main()
