"""``vmasim bench``: the model and the host kernel, the same calls on the same layouts, in one process.

Each workload builds a layout of N VMAs twice, once in a model
:class:`~vmasim.api.AddressSpace` and once in this very process through libc
(ctypes), and then times the same calls on both, in interleaved chunks of a
few hundred calls (model, kernel, kernel, model, ...).  A chunk's time over its
calls is one sample; the report gives the median sample of each side in
microseconds per call, and the model/kernel ratio.  Python's garbage
collector is off inside a chunk, as in ``timeit``.

The kernel side works in a private region of this process: a ``PROT_NONE``
``MAP_NORESERVE`` reservation at a fixed address far below everything else,
carved with ``MAP_FIXED`` mappings (VMA i is 4 pages at page ``5 * i``; the
fifth page is a hole).  The packed layout of the hint-less workload is built,
on both sides, by hint-less mmaps, so on the kernel side it lands among the
process's own mappings, like any hint-less mapping of a Python program.

Without Linux on x86_64 (the modelled machine) only the model side runs, and
the report says why.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vmasim import constants as C
from vmasim.api import AddressSpace
from vmasim.bench.sides import (
    FIXED,
    REGION,
    SLOT,
    Kernel,
    KernelSide,
    ModelSide,
    Op,
    Side,
    kernel_unavailable,
    max_map_count,
)

P = C.PAGE_SIZE
RW = C.PROT_READ | C.PROT_WRITE
ANON = C.MAP_PRIVATE | C.MAP_ANONYMOUS
DEFAULT_SIZES = (10, 1000, 10000, 65000)
QUICK_SIZES = (10, 60)
# Unicorn slows down so much with many regions that it only runs up to this many.
UNICORN_MAX_N = 1000


@dataclass(frozen=True)
class Settings:
    """How much to measure: calls per chunk, calls per workload and side, rounds of fork."""

    # Short chunks: on a busy machine most of them run undisturbed, and the median is one of those.
    chunk: int = 50
    calls: int = 4000
    min_rounds: int = 5
    fork_rounds: int = 7
    # Seconds one workload may take (all sides, both calls) before its rounds are cut to min_rounds.
    budget: float = 3.0

    @classmethod
    def quick(cls) -> Settings:
        """Tiny chunks and few rounds: proves the bench works, measures little."""
        return cls(chunk=8, calls=16, min_rounds=2, fork_rounds=2, budget=1.0)


# --- workloads -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Two calls, the second undoing the first, on the positions of a layout.

    ``calls(side)`` returns the two functions of an address; ``positions(base,
    n)`` the addresses they take (neighbouring positions are left apart so
    that one call never changes the VMAs the next one meets).
    """

    key: str
    names: tuple[str, str]
    layout: str
    calls: Callable[[Side], tuple[Op, Op]]
    positions: Callable[[int, int], list[int]]
    #: VMAs one first call may add, to stay under the host's max_map_count.
    adds: int = 2
    #: Time the two calls as one pair (when the first returns what the second needs).
    paired: bool = False
    #: A page of every VMA to write when the layout is made (None: none), so that every VMA has its
    #: anon_vma (and, for mlock, the page it populates is there).  At 10 VMAs the positions come round
    #: again, so a VMA's first write, which allocates its anon_vma, and mlock's first fault happen once
    #: each; at 65,000 they would happen at every call: without it, the calls timed at the two sizes would
    #: not be the same calls.
    written: int | None = None


def _vma_pages(offset: int, step: int = 1) -> Callable[[int, int], list[int]]:
    return lambda base, n: [base + i * SLOT + offset for i in range(0, n, step)]


def _holes(base: int, n: int) -> list[int]:
    # Every other hole: filling hole i merges VMAs i and i+1, so hole i+1 is left alone.
    return [base + i * SLOT + 4 * P for i in range(0, n - 1, 2)]


def _hintless(side: Side) -> tuple[Op, Op]:
    mmap = side.mmap
    munmap = side.op("munmap", P)
    return (lambda _addr: munmap(mmap(None, P, RW, ANON))), (lambda _addr: None)


WORKLOADS: tuple[Workload, ...] = (
    Workload("fixed", ("mmap MAP_FIXED into a hole, merging both neighbours", "munmap of it, splitting"),
             "holed", lambda s: (s.op("mmap", P, RW, FIXED), s.op("munmap", P)), _holes),
    Workload("mprotect", ("mprotect splitting a VMA in three", "mprotect merging it back"), "holed",
             lambda s: (s.op("mprotect", P, C.PROT_READ), s.op("mprotect", P, RW)), _vma_pages(P)),
    Workload("munmap", ("munmap splitting a VMA in two", "mmap MAP_FIXED re-mapping it (merging)"), "holed",
             lambda s: (s.op("munmap", P), s.op("mmap", P, RW, FIXED)), _vma_pages(P)),
    Workload("hintless", ("mmap without a hint + munmap, VMAs packed below", ""), "packed", _hintless,
             lambda base, n: [0] * max(1, n), adds=1, paired=True),
    Workload("fault", ("write fault (touch one new page)", "madvise MADV_DONTNEED"), "holed",
             lambda s: (s.touch(), s.op("madvise", P, C.MADV_DONTNEED)), _vma_pages(0), adds=0, written=3),
    Workload("mlock", ("mlock splitting a VMA in three", "munlock merging it back"), "holed",
             lambda s: (s.op("mlock", P), s.op("munlock", P)), _vma_pages(P), written=1),
    Workload("incompatible", ("mmap MAP_FIXED between incompatible VMAs", "munmap of a whole VMA"), "holed",
             lambda s: (s.op("mmap", P, C.PROT_READ, FIXED), s.op("munmap", P)), _vma_pages(4 * P),
             adds=1),
)


@dataclass
class Row:
    """One call at one size: median microseconds per call on each side."""

    key: str
    call: str
    n: int
    model_us: float
    kernel_us: float | None = None
    unicorn_us: float | None = None

    @property
    def ratio(self) -> float | None:
        """Model time over kernel time."""
        if self.kernel_us is None or self.kernel_us <= 0:
            return None
        return self.model_us / self.kernel_us


@dataclass
class Report:
    """Everything one run measured."""

    machine: dict[str, Any]
    sizes: list[int]
    kernel_reason: str | None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    #: Building the largest size by hint-less mmap: ``n``, ``model_s``, ``kernel_s`` (None: not measured).
    build: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data."""
        rows = [
            {"workload": r.key, "call": r.call, "n": r.n, "model_us": r.model_us, "kernel_us": r.kernel_us,
             "ratio": r.ratio, "unicorn_us": r.unicorn_us}
            for r in self.rows
        ]
        return {"format": "vmasim-bench/1", "machine": self.machine, "sizes": self.sizes,
                "kernel": {"available": self.kernel_reason is None, "reason": self.kernel_reason},
                "rows": rows, "scaling": self.scaling(), "memory": self.memory, "build": self.build,
                "notes": self.notes}

    def scaling(self) -> dict[str, float]:
        """Each call's model time at the largest size over its time at the smallest (fork, linear, left out)."""
        lo, hi = min(self.sizes), max(self.sizes)
        at = {(r.call, r.n): r.model_us for r in self.rows}
        out = {}
        for r in self.rows:
            if r.key != "fork" and r.n == hi and (r.call, lo) in at and at[(r.call, lo)] > 0:
                out[r.call] = r.model_us / at[(r.call, lo)]
        return out


def machine() -> dict[str, Any]:
    """What this ran on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"system": platform.system(), "kernel": platform.release(), "arch": platform.machine(), "cpu": cpu,
            "cpus": os.cpu_count(), "python": platform.python_version(), "max_map_count": max_map_count()}


def _chunk_time(fn: Op, addrs: list[int]) -> float:
    """Seconds per call of ``fn`` over ``addrs``, with the garbage collector off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for addr in addrs:
            fn(addr)
        return (time.perf_counter() - t0) / len(addrs)
    finally:
        if enabled:
            gc.enable()


def _rounds(settings: Settings, per_chunk: int) -> int:
    return max(settings.min_rounds, math.ceil(settings.calls / per_chunk))


def _measure(work: Workload, sides: list[Side], n: int, settings: Settings, room: int | None) -> list[list[float]]:
    """Build the layout on every side, then time interleaved chunks; the samples of both calls, side by side."""
    try:
        return _measure_built(work, sides, n, settings, room)
    finally:
        for s in sides:
            s.teardown()


def _measure_built(work: Workload, sides: list[Side], n: int, settings: Settings, room: int | None
                   ) -> list[list[float]]:
    if work.layout == "holed":
        bases = [s.holed(n) for s in sides]
        positions = [work.positions(base, n) for base in bases]
        if work.written is not None:
            for s, base in zip(sides, bases, strict=True):
                touch = s.touch()
                for i in range(n):
                    touch(base + i * SLOT + work.written * P)
    else:
        for s in sides:
            s.packed(n)
        positions = [[0] * settings.chunk for _ in sides]
    npos = len(positions[0])
    chunk = min(settings.chunk, npos)
    if room is not None and work.adds:
        chunk = max(1, min(chunk, room // work.adds))
    calls = [work.calls(s) for s in sides]
    samples: list[list[float]] = [[] for _ in range(2 * len(sides))]
    rounds = _rounds(settings, chunk)
    start = time.perf_counter()
    r = 0
    while r < rounds:
        # Walk through the positions round by round; alternate which side goes first.
        pick = [(r * chunk + j) % npos for j in range(chunk)]
        for k in _order(len(sides), r):
            addrs = [positions[k][i] for i in pick]
            first, second = calls[k]
            samples[2 * k].append(_chunk_time(first, addrs))
            if not work.paired:
                samples[2 * k + 1].append(_chunk_time(second, addrs))
        r += 1
        if r == 1:
            # Slow calls (a model with a linear gap search, say) get fewer rounds.
            per_round = time.perf_counter() - start
            rounds = max(settings.min_rounds, min(rounds, int(settings.budget / per_round)))
    if work.layout == "holed":
        _same_layout(sides, n, work.key)
    return samples


def _same_layout(sides: list[Side], n: int, what: str) -> None:
    """Both sides must hold as many VMAs in the region after a workload (the calls did the same thing)."""
    counts = {s.name: s.vmas_in(REGION, REGION + n * SLOT) for s in sides}
    if len(set(counts.values())) > 1:
        raise RuntimeError(f"{what}, N={n}: the sides hold different layouts afterwards: {counts}")


def _ignoring_addr(fn: Callable[[], object]) -> Op:
    return lambda _addr: fn()


def _order(count: int, r: int) -> list[int]:
    return list(range(count)) if r % 2 == 0 else list(reversed(range(count)))


def _fork_rows(n: int, sides: list[Side], settings: Settings) -> list[tuple[str, list[list[float]]]]:
    """fork of the holed layout, untouched and then with the first page of every VMA written."""
    try:
        return _fork_built(n, sides, settings)
    finally:
        for s in sides:
            s.teardown()


def _fork_built(n: int, sides: list[Side], settings: Settings) -> list[tuple[str, list[list[float]]]]:
    bases = [s.holed(n) for s in sides]
    out = []
    for label in ("untouched", "touched"):
        if label == "touched":
            for s, base in zip(sides, bases, strict=True):
                touch = s.touch()
                for i in range(n):
                    touch(base + i * SLOT)
        samples: list[list[float]] = [[] for _ in sides]
        for r in range(settings.fork_rounds):
            for k in _order(len(sides), r):
                samples[k].append(_chunk_time(_ignoring_addr(sides[k].fork), [0]))
        out.append((f"fork, {label}", samples))
    _same_layout(sides, n, "fork")
    return out


# --- Unicorn, when it is installed ---------------------------------------------------------------------------


def _unicorn_times(n: int, settings: Settings) -> dict[str, float]:
    """Unicorn's microseconds per call for the calls it has (mem_map, mem_protect, mem_unmap), or nothing."""
    try:
        import unicorn  # type: ignore[import-not-found]
    except ImportError:
        return {}
    if n > UNICORN_MAX_N:
        return {}
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    prot_rw = unicorn.UC_PROT_READ | unicorn.UC_PROT_WRITE
    for i in range(n):
        uc.mem_map(REGION + i * SLOT, 4 * P, prot_rw)
    pages = [REGION + i * SLOT + P for i in range(n)]
    holes = _holes(REGION, n)
    pairs: dict[str, tuple[Op, Op, list[int]]] = {
        "fixed": (lambda a: uc.mem_map(a, P, prot_rw), lambda a: uc.mem_unmap(a, P), holes),
        "mprotect": (lambda a: uc.mem_protect(a, P, unicorn.UC_PROT_READ), lambda a: uc.mem_protect(a, P, prot_rw),
                     pages),
        "munmap": (lambda a: uc.mem_unmap(a, P), lambda a: uc.mem_map(a, P, prot_rw), pages),
    }
    out: dict[str, float] = {}
    # Unicorn takes milliseconds per call with many regions: a tenth of the calls.
    few = Settings(chunk=max(1, settings.chunk // 4), calls=max(1, settings.calls // 10),
                   min_rounds=settings.min_rounds)
    for key, (first, second, positions) in pairs.items():
        if not positions:
            continue
        chunk = min(few.chunk, len(positions))
        a: list[float] = []
        b: list[float] = []
        for r in range(_rounds(few, chunk)):
            addrs = [positions[(r * chunk + j) % len(positions)] for j in range(chunk)]
            a.append(_chunk_time(first, addrs))
            b.append(_chunk_time(second, addrs))
        out[f"{key}/0"] = statistics.median(a) * 1e6
        out[f"{key}/1"] = statistics.median(b) * 1e6
    return out


# --- the run ------------------------------------------------------------------------------------------------


def model_bytes_per_vma(n: int) -> float:
    """Bytes the model allocates per VMA for the holed layout of ``n`` VMAs (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        side = ModelSide()
        side.holed(n)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del side
    return (after - before) / n


def run(sizes: Iterable[int] = DEFAULT_SIZES, *, quick: bool = False, kernel: bool = True,
        progress: Callable[[str], None] | None = None) -> Report:
    """Measure every workload at every size; ``kernel=False`` leaves the host kernel out."""
    settings = Settings.quick() if quick else Settings()
    sizes = sorted(set(sizes))
    say = progress or (lambda _msg: None)
    reason = kernel_unavailable() if kernel else "not asked for (model only)"
    report = Report(machine(), sizes, reason)
    host = Kernel() if reason is None else None
    if host is not None:
        report.notes.append(f"fork of this process alone ({Kernel.map_count()} VMAs of its own, no layout): "
                            f"{_fork_baseline(host, settings):.0f} us on the kernel")
    memlock = host is not None and _memlock_ok(settings.chunk)
    if host is not None and not memlock:
        report.notes.append("mlock: kernel side skipped: RLIMIT_MEMLOCK is too small (run as root, or raise it "
                            "with ulimit -l)")
    for n in sizes:
        limit = _kernel_room(n) if host is not None else None
        if host is not None and limit is None:
            report.notes.append(f"N={n:,}: kernel side skipped: vm.max_map_count ({max_map_count()}) leaves no "
                                f"room for {n:,} VMAs next to this process's {Kernel.map_count()}")
        unicorn_us = _unicorn_times(n, settings)
        for work in WORKLOADS:
            say(f"N={n}: {work.key}")
            sides: list[Side] = [ModelSide()]
            if host is not None and limit is not None and (work.key != "mlock" or memlock):
                sides.append(KernelSide(host))
            samples = _measure(work, sides, n, settings, limit)
            for which, name in enumerate(work.names):
                if work.paired and which == 1:
                    continue
                model = statistics.median(samples[which]) * 1e6
                kern = statistics.median(samples[2 + which]) * 1e6 if len(sides) > 1 else None
                report.rows.append(Row(work.key, name, n, model, kern, unicorn_us.get(f"{work.key}/{which}")))
        say(f"N={n}: fork")
        sides = [ModelSide()]
        if host is not None and limit is not None:
            sides.append(KernelSide(host))
        for name, samples in _fork_rows(n, sides, settings):
            kern = statistics.median(samples[1]) * 1e6 if len(sides) > 1 else None
            report.rows.append(Row("fork", name, n, statistics.median(samples[0]) * 1e6, kern))
    say("memory per VMA")
    top = max(sizes)
    report.memory = {"n": top, "bytes_per_vma": model_bytes_per_vma(top)}
    say(f"building {top:,} VMAs by hint-less mmap")
    report.build = build_times(top, host if host is not None and _kernel_room(top) is not None else None)
    return report


def build_times(n: int, host: Kernel | None) -> dict[str, Any]:
    """Seconds to map ``n`` one-page VMAs without a hint, alternately read-write and read-only (none merge),
    on the model and (with ``host``) on the kernel: how long a big address space takes to make."""
    model = AddressSpace(max_map_count=1 << 20)
    start = time.perf_counter()
    for i in range(n):
        model.mmap(None, P, RW if i % 2 == 0 else C.PROT_READ, ANON)
    out: dict[str, Any] = {"n": n, "model_s": time.perf_counter() - start, "kernel_s": None}
    del model
    if host is not None:
        side = KernelSide(host)
        start = time.perf_counter()
        try:
            side.packed(n)
            out["kernel_s"] = time.perf_counter() - start
        finally:
            side.teardown()
    return out


def _kernel_room(n: int) -> int | None:
    """How many VMAs the kernel side may add above a layout of ``n`` (max_map_count), or None if none."""
    limit = max_map_count()
    if limit is None:
        return 1 << 20
    room = limit - Kernel.map_count() - n - 16
    return room if room >= 2 else None


def _fork_baseline(host: Kernel, settings: Settings) -> float:
    fork = _ignoring_addr(host.fork_and_reap)
    return statistics.median(_chunk_time(fork, [0]) for _ in range(settings.fork_rounds)) * 1e6


def _memlock_ok(pages: int) -> bool:
    """Whether ``pages`` pages can be mlocked at once, raising the soft RLIMIT_MEMLOCK if the hard one allows."""
    if os.geteuid() == 0:
        return True
    try:
        import resource
    except ImportError:
        return False
    need = (pages + 16) * P
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return True
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (need, hard))
        return True
    return False


# --- text --------------------------------------------------------------------------------------------------


def _num(value: float | None, width: int, digits: int = 1) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def format_report(report: Report) -> str:
    """The report as text: one table per size, then scaling, memory and notes."""
    m = report.machine
    lines = [
        "vmasim bench: the model and the host kernel, same calls on the same layouts, in one process",
        f"machine: {m['system']} {m['kernel']} {m['arch']}, {m['cpu']}, {m['cpus']} CPUs, Python {m['python']}, "
        f"vm.max_map_count {m['max_map_count']}",
        "times: median microseconds per call over interleaved chunks; ratio = model / kernel",
    ]
    if report.kernel_reason is not None:
        lines.append(f"kernel side: not measured: {report.kernel_reason}")
    has_unicorn = any(r.unicorn_us is not None for r in report.rows)
    width = max(len(r.call) for r in report.rows) if report.rows else 20
    for n in report.sizes:
        lines.append("")
        head = f"N = {n:,} VMAs".ljust(width) + f"{'model':>12}{'kernel':>12}{'ratio':>8}"
        if has_unicorn:
            head += f"{'unicorn':>10}"
        lines.append(head)
        for r in (r for r in report.rows if r.n == n):
            line = r.call.ljust(width) + _num(r.model_us, 12) + _num(r.kernel_us, 12) + _num(r.ratio, 8)
            if has_unicorn:
                line += _num(r.unicorn_us, 10)
            lines.append(line)
    scaling = report.scaling()
    if scaling and len(report.sizes) > 1:
        lo, hi = min(report.sizes), max(report.sizes)
        lines.append("")
        lines.append(f"model cost at {hi:,} VMAs over its cost at {lo:,}")
        for call, ratio in scaling.items():
            lines.append(f"{call.ljust(width)}{ratio:>10.2f}")
    if report.memory:
        lines.append("")
        lines.append(f"model memory: {report.memory['bytes_per_vma']:.0f} bytes per VMA "
                     f"(tracemalloc, {report.memory['n']:,} untouched VMAs)")
    if report.build:
        b = report.build
        kernel = f", the kernel {b['kernel_s']:.2f} s" if b["kernel_s"] is not None else ""
        lines.append(f"building {b['n']:,} VMAs by hint-less mmap (none merging): the model {b['model_s']:.2f} s"
                     f"{kernel}")
    for note in report.notes:
        lines.append(f"note: {note}")
    if has_unicorn:
        lines.append(f"note: unicorn: mem_map/mem_protect/mem_unmap on the same layout, up to {UNICORN_MAX_N:,} "
                     "regions")
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    """``"10,1000"`` as ``[10, 1000]``; ValueError naming the bad item."""
    sizes = []
    for item in text.split(","):
        item = item.strip().replace("_", "")
        if not item.isdigit() or int(item) < 2:
            raise ValueError(f"bench: --sizes: expected VMA counts of at least 2, separated by commas, got {item!r}")
        sizes.append(int(item))
    return sizes


def bench_command(*, quick: bool = False, sizes: str | None = None, as_json: bool = False) -> int:
    """``vmasim bench``: run, print the text report (or JSON with ``as_json``), return the exit status."""
    import json

    try:
        chosen = parse_sizes(sizes) if sizes is not None else list(QUICK_SIZES if quick else DEFAULT_SIZES)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    report = run(chosen, quick=quick, progress=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    print(json.dumps(report.to_json(), indent=2) if as_json else format_report(report))
    return 0
