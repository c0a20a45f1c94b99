"""Random calls of every public :class:`vmasim.AddressSpace` method, with arguments of every type.

Most arguments are plausible (addresses in a small window, page multiples,
real flag combinations, open descriptors), so that the calls reach the kernel
rules; about one in eight is hostile: ints at and past the edges of every C
type, huge ints, bools, None, floats, strings, bytes, containers.  Every call
must return or raise ``OSError``, ``TypeError``, ``ValueError`` or
``WouldBlock``; after a ``TypeError`` or ``ValueError`` the address space
must be exactly as before (maps, smaps, numa_maps, counters, map_count, the
break, descriptors, page tables).

``tests/test_api_random.py`` runs a few thousand calls through hypothesis;
on its own this file runs as many as asked and reports every traceback::

    PYTHONPATH=src python tests/apifuzz.py --calls 100000 --seed 0
"""

from __future__ import annotations

import argparse
import inspect
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import vmasim as v
from vmasim.core.errors import WouldBlock

W = 0x7E0000000000
P = 4096
SPAN = 64  # pages: a small window makes calls interact
MASK64 = (1 << 64) - 1
ALLOWED = (OSError, TypeError, ValueError, WouldBlock)

EDGE_INTS = [
    0, 1, -1, P - 1, P, -P, (1 << 31) - 1, 1 << 31, -(1 << 31), -(1 << 31) - 1, (1 << 32) - 1, 1 << 32,
    (1 << 32) + 4, (1 << 63) - 1, 1 << 63, -(1 << 63), -(1 << 63) - 1, MASK64, MASK64 - P + 1, 1 << 64,
    (1 << 64) + P, 1 << 70, (1 << 80) + 4, -(1 << 64), 0x7FFFFFFFF000, 0x800000000000, 10**30,
]
ODD_VALUES: list[Any] = [
    None, True, False, 0.0, 1.5, 4096.0, float("nan"), float("inf"), "", "3", "dontneed", "a\0b", "\ud800",
    b"", b"\xff", bytearray(b"x"), [], [1], (), {}, {"a": 1}, 1j, object(), v.PROT_READ.__class__,
]
PROTS = [v.PROT_NONE, v.PROT_READ, v.PROT_READ | v.PROT_WRITE, v.PROT_EXEC, v.PROT_READ | v.PROT_EXEC,
         v.PROT_READ | v.PROT_WRITE | v.PROT_EXEC]
MAP_EXTRAS = [0, 0, 0, v.MAP_NORESERVE, v.MAP_POPULATE, v.MAP_LOCKED, v.MAP_GROWSDOWN, v.MAP_STACK,
              v.MAP_DROPPABLE, v.MAP_HUGETLB, v.MAP_NONBLOCK, v.MAP_SYNC, 0x4000000]
ADVICE = [v.MADV_NORMAL, v.MADV_RANDOM, v.MADV_SEQUENTIAL, v.MADV_WILLNEED, v.MADV_DONTNEED, v.MADV_FREE,
          v.MADV_REMOVE, v.MADV_DONTFORK, v.MADV_DOFORK, v.MADV_MERGEABLE, v.MADV_UNMERGEABLE, v.MADV_HUGEPAGE,
          v.MADV_NOHUGEPAGE, v.MADV_DONTDUMP, v.MADV_DODUMP, v.MADV_WIPEONFORK, v.MADV_KEEPONFORK, v.MADV_COLD,
          v.MADV_PAGEOUT, v.MADV_POPULATE_READ, v.MADV_POPULATE_WRITE, v.MADV_DONTNEED_LOCKED, v.MADV_COLLAPSE,
          v.MADV_GUARD_INSTALL, v.MADV_GUARD_REMOVE, 1000]
MPOL_MODES = [v.MPOL_DEFAULT, v.MPOL_PREFERRED, v.MPOL_BIND, v.MPOL_INTERLEAVE, v.MPOL_LOCAL,
              v.MPOL_PREFERRED_MANY, v.MPOL_WEIGHTED_INTERLEAVE, v.MPOL_MAX]
MPOL_FLAGS = [0, 0, v.MPOL_F_STATIC_NODES, v.MPOL_F_RELATIVE_NODES, v.MPOL_F_NUMA_BALANCING]
MREMAP_FLAGS = [0, v.MREMAP_MAYMOVE, v.MREMAP_MAYMOVE | v.MREMAP_FIXED,
                v.MREMAP_MAYMOVE | v.MREMAP_FIXED | v.MREMAP_DONTUNMAP, v.MREMAP_MAYMOVE | v.MREMAP_DONTUNMAP, 8]
UFFD_MODES = [v.UFFDIO_REGISTER_MODE_MISSING, v.UFFDIO_REGISTER_MODE_MINOR, v.UFFDIO_REGISTER_MODE_WP,
              v.UFFDIO_REGISTER_MODE_MISSING | v.UFFDIO_REGISTER_MODE_MINOR, 0, 8]
TARGETS: list[Any] = [None, "default", "linux-6.18.44-nopku", "linux-6.18.44-pku", "no-such-profile", 5, b"x"]


def methods() -> dict[str, inspect.Signature]:
    """Every public method of AddressSpace, with its signature (the setter and constructor are added apart)."""
    out = {}
    for name, fn in vars(v.AddressSpace).items():
        if not name.startswith("_") and inspect.isfunction(fn):
            out[name] = inspect.signature(fn)
    return out


METHODS = methods()
# Calls that build up an address space come more often than those that only look at it.
_BUILDERS = {"mmap": 6, "mprotect": 2, "munmap": 2, "touch": 2, "madvise": 2, "memfd_create": 2, "mremap": 2}
_NAMES = list(METHODS)
_WEIGHTS = [_BUILDERS.get(name, 1) for name in _NAMES]


class Gen:
    """Plausible and hostile argument values, drawn from ``rng``, for one address space at a time."""

    def __init__(self, rng: random.Random, bad_rate: float = 0.125) -> None:
        self.rng = rng
        self.bad_rate = bad_rate
        self.addrs: list[int] = [W]

    def hostile(self) -> Any:
        """A value of any type, or an int at or past the edge of some C type."""
        r = self.rng
        pick = r.random()
        if pick < 0.4:
            return r.choice(EDGE_INTS)
        if pick < 0.55:
            return r.choice([1, -1]) * ((1 << r.randrange(0, 300)) + r.randrange(-2, 3))
        if pick < 0.58:
            return 1 << r.randrange(14000, 40000)  # more digits than int -> str allows
        return r.choice(ODD_VALUES)

    def addr(self) -> int:
        """An address: mostly in the window or one returned earlier, sometimes unaligned or out of range."""
        r = self.rng
        pick = r.random()
        if pick < 0.6:
            return W + r.randrange(0, SPAN) * P
        if pick < 0.8:
            return r.choice(self.addrs)
        if pick < 0.9:
            return W + r.randrange(0, SPAN) * P + r.choice([1, P - 1])
        return r.choice([0, P, 0x10000000, v.TASK_SIZE - P, v.TASK_SIZE, MASK64 - P + 1, W - P])

    def length(self) -> int:
        """A length: mostly a few pages, sometimes 0, unaligned, or huge."""
        r = self.rng
        pick = r.random()
        if pick < 0.8:
            return r.randrange(0, 24) * P
        if pick < 0.9:
            return r.randrange(0, 24) * P + r.choice([1, P - 1])
        return r.choice([1 << 30, 1 << 40, 1 << 46, 1 << 47, MASK64 - P + 1, MASK64, -P])

    def fd(self, space: v.AddressSpace) -> int:
        """An open descriptor, mostly; sometimes a closed or impossible one."""
        fds = list(space._files)
        if fds and self.rng.random() < 0.85:
            return self.rng.choice(fds)
        return self.rng.choice([-1, 0, 1, 2, 999, space._next_fd])

    def value(self, method: str, param: str, space: v.AddressSpace) -> Any:
        """A plausible value of ``param`` of ``method``."""
        r = self.rng
        if param in ("addr", "start", "new_addr"):
            if param != "start" and method in ("mmap", "mremap") and r.random() < 0.2:
                return None
            return self.addr()
        if param == "end":
            return r.choice([W + r.randrange(0, SPAN + 1) * P, MASK64])
        if param in ("length", "old_length", "new_length"):
            return self.length()
        if param == "size":
            return r.choice([r.randrange(0, 32) * P, r.randrange(0, 32) * P + 100, -P, 1 << 40, 1 << 63])
        if param == "offset":
            return r.choice([0, 0, r.randrange(0, 16) * P, 100, 1 << 62, MASK64 - P + 1])
        if param == "prot":
            extra = r.choice([0] * 8 + [v.PROT_GROWSDOWN, v.PROT_GROWSUP, v.PROT_SEM, 0x10])
            return r.choice(PROTS) | extra
        if param == "flags":
            return self.flags(method)
        if param == "fd":
            if method == "mmap" and r.random() < 0.5:
                return None
            return self.fd(space)
        if param == "advice":
            return r.choice(ADVICE)
        if param == "mode":
            if method == "uffd_register":
                return r.choice(UFFD_MODES)
            return r.choice(MPOL_MODES) | r.choice(MPOL_FLAGS)
        if param == "nodes":
            return r.choice([0, 1, 2, 3, 1 << 63, MASK64])
        if param == "features":
            return r.choice([0, 0, v.UFFD_FEATURE_SIGBUS, v.UFFD_FEATURE_EVENT_FORK, 1 << 40])
        if param == "value":
            return r.choice([0, 1, 2])
        if param == "increment":
            return r.choice([0, P, -P, 8 * P, -8 * P, 1 << 40, -(1 << 40)])
        if param == "name":
            names = ["m", "f", "heap", "x" * 80, "x" * 300, "bad[name", "tab\there", "é"]
            if method == "prctl_set_vma_anon_name":
                names.append(None)
            return r.choice(names)
        if param in ("write", "writable"):
            return r.random() < 0.5
        if param == "ranges":  # process_madvise's iovecs
            return [(self.addr(), self.length()) for _ in range(r.randrange(0, 4))]
        if param == "pkey":
            return r.choice([-1, 0, 1, 2, 15, 16])
        if param == "access":
            return r.choice([0, 1, 2, 3])
        if param == "fs":
            return r.choice([None, "tmpfs", "ext4", "xfs", "nope"])
        # A parameter this file does not know yet (a new method): small ints, then the hostile values.
        return r.choice([0, 1, P, W])

    def flags(self, method: str) -> int:
        """Flags of ``method``."""
        r = self.rng
        if method == "mmap":
            kind = r.choice([v.MAP_PRIVATE] * 4 + [v.MAP_SHARED] * 2 + [v.MAP_SHARED_VALIDATE, 0])
            anon = v.MAP_ANONYMOUS if r.random() < 0.7 else 0
            fixed = r.choice([0, v.MAP_FIXED, v.MAP_FIXED, v.MAP_FIXED_NOREPLACE])
            return kind | anon | fixed | r.choice(MAP_EXTRAS)
        if method == "mlock2":
            return r.choice([0, v.MLOCK_ONFAULT, 2])
        if method == "mlockall":
            return r.choice([0, v.MCL_CURRENT, v.MCL_FUTURE, v.MCL_CURRENT | v.MCL_ONFAULT, v.MCL_ONFAULT, 8])
        if method == "mremap":
            return r.choice(MREMAP_FLAGS)
        if method == "mbind":
            return r.choice([0, 0, v.MPOL_MF_STRICT, v.MPOL_MF_MOVE, v.MPOL_MF_MOVE_ALL, 8])
        return r.choice([0, 0, 0, 1])

    def args(self, method: str, sig: inspect.Signature, space: v.AddressSpace) -> tuple[list[Any], dict[str, Any]]:
        """Arguments for one call: positional for the required parameters, by keyword (or left out) otherwise."""
        r = self.rng
        pos: list[Any] = []
        kw: dict[str, Any] = {}
        for p in list(sig.parameters.values())[1:]:
            if p.default is not p.empty and r.random() < 0.3:
                continue
            value = self.hostile() if r.random() < self.bad_rate else self.value(method, p.name, space)
            if p.kind is p.KEYWORD_ONLY or (p.default is not p.empty and r.random() < 0.5):
                kw[p.name] = value
            else:
                if kw:  # a positional argument cannot follow keyword ones
                    kw[p.name] = value
                else:
                    pos.append(value)
        return pos, kw


def state(space: v.AddressSpace) -> tuple[Any, ...]:
    """Everything a call could change, as comparable values."""
    mm = space.mm
    files = tuple((fd, id(f), f.refs, f.inode.size, tuple(f.inode.cache)) for fd, f in sorted(space._files.items()))
    return (space.maps(), space.smaps(), space.numa_maps(), space.counters, space.map_count, space.max_map_count,
            mm.brk, mm.def_flags, mm.ksm_merge_any, mm.task_policy, space._next_fd, files,
            tuple(mm.ptes), tuple(mm.pages), tuple(mm.guards))


def describe(method: str, pos: list[Any], kw: dict[str, Any]) -> str:
    """The call as Python source, for reports (huge ints shortened)."""
    def show(x: Any) -> str:
        if isinstance(x, int) and not isinstance(x, bool) and abs(x) >= 1 << 80:
            return f"(1 << {x.bit_length() - 1}){' * -1' if x < 0 else ''} # approx"
        return hex(x) if isinstance(x, int) and not isinstance(x, bool) and abs(x) > 4096 else repr(x)

    parts = [show(a) for a in pos] + [f"{k}={show(a)}" for k, a in kw.items()]
    return f"{method}({', '.join(parts)})"


@dataclass
class Stats:
    """What a run did: calls, outcomes by exception type, the slowest call, and failures."""

    calls: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    slowest: tuple[float, str] = (0.0, "")
    failures: list[str] = field(default_factory=list)


def one_call(gen: Gen, space: v.AddressSpace, stats: Stats) -> v.AddressSpace:
    """Make one random call on ``space``; returns the space to go on with (a fork child, a new space)."""
    r = gen.rng
    pick = r.random()
    if pick < 0.005:
        kw = {k: (gen.hostile() if r.random() < 0.3 else val) for k, val in (
            ("target", r.choice(TARGETS)), ("max_map_count", r.choice([None, 10, 65530, 0])),
            ("mmap_base", r.choice([None, W + SPAN * P])), ("mmap_limit", r.choice([None, W + SPAN * P])))
            if r.random() < 0.7}
        method, pos, call = "AddressSpace", [], lambda: v.AddressSpace(**kw)
    elif pick < 0.015:
        value = gen.hostile() if r.random() < 0.3 else space.map_count + r.randrange(-1, 4)
        kw, pos, method = {}, [value], "max_map_count="
        call = lambda: setattr(space, "max_map_count", value)  # noqa: E731
    else:
        method = r.choices(_NAMES, _WEIGHTS)[0]
        if method == "exit" and r.random() < 0.8:  # keep descriptors around most of the time
            method = "touch"
        pos, kw = gen.args(method, METHODS[method], space)
        bound = getattr(space, method)
        call = lambda: bound(*pos, **kw)  # noqa: E731
    before = state(space)
    text = describe(method, pos, kw)
    t0 = time.perf_counter()
    outcome = "ok"
    result: Any = None
    try:
        result = call()
    except ALLOWED as exc:
        outcome = type(exc).__name__
        if isinstance(exc, (TypeError, ValueError)) and not isinstance(exc, OSError):
            after = state(space)
            if after != before:
                stats.failures.append(f"{text} raised {exc!r} but changed the address space")
            if not str(exc).startswith((f"{method.rstrip('=')}(): ", f"AddressSpace.{method}() ")):
                stats.failures.append(f"{text}: {exc!r} does not name the method")
    except Exception:  # anything else is a failure of the hardening
        outcome = "unexpected"
        stats.failures.append(f"{text}\n{traceback.format_exc()}")
    elapsed = time.perf_counter() - t0
    stats.calls += 1
    stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1
    if elapsed > stats.slowest[0]:
        stats.slowest = (elapsed, text)
    if outcome == "ok":
        if method in ("mmap", "mremap") and isinstance(result, int):
            gen.addrs.append(result)
        if method == "fork" and r.random() < 0.5:
            return result  # type: ignore[no-any-return]
        if method == "AddressSpace" and r.random() < 0.5:
            return result  # type: ignore[no-any-return]
    return space


def fresh_space() -> v.AddressSpace:
    """An address space whose hint-less mappings land in the window."""
    return v.AddressSpace(mmap_limit=W + SPAN * P)


def run(rng: random.Random, calls: int, *, per_space: int = 200, bad_rate: float = 0.125,
        progress: Callable[[Stats], None] | None = None) -> Stats:
    """Make ``calls`` random calls, starting a fresh address space every ``per_space`` calls."""
    stats = Stats()
    gen = Gen(rng, bad_rate)
    space = fresh_space()
    for i in range(calls):
        if i % per_space == 0 and i:
            gen = Gen(rng, bad_rate)
            space = fresh_space()
        space = one_call(gen, space, stats)
        if progress is not None and (i + 1) % 10000 == 0:
            progress(stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    """Run the random calls and report; exit status 1 if any call failed the hardening."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-space", type=int, default=200, help="calls on one address space before a fresh one")
    ap.add_argument("--bad-rate", type=float, default=0.125, help="share of hostile argument values")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    def progress(s: Stats) -> None:
        print(f"  {s.calls} calls, {len(s.failures)} failures, {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    stats = run(random.Random(args.seed), args.calls, per_space=args.per_space, bad_rate=args.bad_rate,
                progress=progress)
    elapsed = time.perf_counter() - t0
    for failure in stats.failures[:20]:
        print("FAILED:", failure)
    outcomes = ", ".join(f"{k} {n}" for k, n in sorted(stats.outcomes.items(), key=lambda kv: -kv[1]))
    print(f"{stats.calls} calls (seed {args.seed}) in {elapsed:.0f} s: {outcomes}")
    print(f"slowest call: {stats.slowest[0] * 1000:.1f} ms: {stats.slowest[1]}")
    print(f"{len(stats.failures)} failure(s)")
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
