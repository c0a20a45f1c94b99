"""Benchmark: the cost of model operations with 10 VMAs versus 65,530 VMAs.

Run: python benchmarks/bench_model.py
Prints per-operation times for a small and a full address space and their
ratio (full / small), measured in the same run.  O(log n) operations keep the
ratio small (a few times at most); anything linear would be thousands.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import vmasim as v

P = 4096
BASE = 0x100000000
RW = v.PROT_READ | v.PROT_WRITE
ANON = v.MAP_PRIVATE | v.MAP_ANONYMOUS | v.MAP_FIXED


def populated(n: int) -> v.AddressSpace:
    """An address space with ``n`` one-page VMAs separated by one-page holes."""
    space = v.AddressSpace(max_map_count=70000)
    for i in range(n):
        space.mmap(BASE + 2 * i * P, P, RW, ANON)
    return space


def per_op(space: v.AddressSpace, op: Callable[[v.AddressSpace, int], None], reps: int) -> float:
    n = len(space)
    start = time.perf_counter()
    for i in range(reps):
        op(space, (i * 7919) % n)
    return (time.perf_counter() - start) / reps


def split_and_merge(space: v.AddressSpace, i: int) -> None:
    # mprotect a page in the middle of a 3-page VMA and restore it: split in three, merge back.
    addr = BASE + 2 * i * P
    space.mprotect(addr, P, v.PROT_READ)
    space.mprotect(addr, P, RW)


def map_unmap_fixed(space: v.AddressSpace, i: int) -> None:
    addr = BASE + (2 * i + 1) * P  # fill a hole (merging both neighbours), then punch it again
    space.mmap(addr, P, RW, ANON)
    space.munmap(addr, P)


def touch(space: v.AddressSpace, i: int) -> None:
    space.touch(BASE + 2 * i * P, P)


def lookup(space: v.AddressSpace, i: int) -> None:
    space.find_vma(BASE + 2 * i * P)


def mmap_hintless(space: v.AddressSpace, i: int) -> None:
    addr = space.mmap(None, P, RW, v.MAP_PRIVATE | v.MAP_ANONYMOUS)
    space.munmap(addr, P)


OPS = {
    "find_vma": (lookup, 20000),
    "touch (write fault)": (touch, 5000),
    "mprotect split+merge": (split_and_merge, 3000),
    "mmap FIXED into a hole + munmap": (map_unmap_fixed, 3000),
    "mmap without hint + munmap": (mmap_hintless, 3000),
}


def main() -> None:
    small = populated(10)
    t0 = time.perf_counter()
    big = populated(65530)
    build = time.perf_counter() - t0
    print(f"built 65,530 VMAs in {build:.2f} s ({build / 65530 * 1e6:.1f} us per mmap)")
    print(f"{'operation':<34}{'10 VMAs':>12}{'65,530 VMAs':>14}{'ratio':>8}")
    for name, (op, reps) in OPS.items():
        a = per_op(small, op, reps)
        b = per_op(big, op, reps)
        print(f"{name:<34}{a * 1e6:>10.1f}us{b * 1e6:>12.1f}us{b / a:>8.2f}")
    assert big.map_count == 65530


if __name__ == "__main__":
    main()
