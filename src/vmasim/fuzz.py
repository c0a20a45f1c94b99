"""Differential fuzzing of the model against the host kernel.

Three parts:

* a seeded **generator** of ``vmasim-program/1`` programs (plain JSON dicts,
  so that every reproducer can be rerun with ``vmasim compare``) that make
  VMAs interact: a small region of neighbouring mappings that almost match,
  partial unmaps and mprotects across boundaries and holes, touches, files
  with contiguous and non-contiguous offsets, hint-less placement, and a
  share of invalid calls;
* a **runner** that runs batches of programs on the model and through
  :func:`vmasim.kernel.run_programs` and compares them with
  :func:`vmasim.compare.diff_reports`;
* a **shrinker** that delta-debugs each divergent program down to a small
  reproducer, re-running candidates in batches.

Everything is deterministic for a given seed and set of model-supported ops:
program ``n`` of seed ``s`` depends only on ``(s, n, category)``.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from vmasim import constants as C
from vmasim.compare import diff_reports, format_diff
from vmasim.profile import Profile
from vmasim.program import Op, Program, ProgramError, parse_program
from vmasim.program.parse import DEFAULT_WINDOW_LENGTH, DEFAULT_WINDOW_START

PAGE = C.PAGE_SIZE
Doc = dict[str, Any]
#: Runs a batch of programs on the kernel: one report, or the exception the runner gave, per program.
KernelBatch = Callable[[Sequence[Program]], Sequence[Any]]

# --- categories ------------------------------------------------------------------------

#: Ops every category uses to build the layout it then works on.
BASE_OPS = frozenset({"mmap", "munmap", "mprotect", "touch", "memfd", "file", "open", "dup", "ftruncate", "close"})
#: The ops that make up each category (what ``--category`` promises to exercise).
CATEGORY_OPS: dict[str, tuple[str, ...]] = {
    "core": ("mmap", "munmap", "mprotect", "touch", "memfd", "file", "open", "dup", "ftruncate", "close", "pad"),
    "attrs": (
        "madvise",
        "mlock",
        "munlock",
        "mlock2",
        "mlockall",
        "munlockall",
        "mbind",
        "set_mempolicy",
        "userfaultfd",
        "uffd_register",
        "uffd_unregister",
        "mseal",
        "prctl",
    ),
    # Hint-less placement, files and map_count limits are core ops; lifecycle adds the ops that move,
    # grow or copy whole address spaces.
    "lifecycle": ("mmap", "memfd", "file", "pad", "mremap", "sbrk", "fork"),
}
CATEGORY_OPS["all"] = tuple(dict.fromkeys(op for cat in ("core", "attrs", "lifecycle") for op in CATEGORY_OPS[cat]))
CATEGORIES = tuple(CATEGORY_OPS)


@dataclass(frozen=True)
class CategoryPlan:
    """Which ops a category will generate with the model as it is, and which of its ops it must leave out."""

    category: str
    ops: frozenset[str]
    missing: tuple[str, ...]

    @property
    def usable(self) -> bool:
        """False when none of the category's own ops (beyond the shared base) can be generated."""
        own = set(CATEGORY_OPS[self.category]) - (BASE_OPS if self.category != "core" else set())
        return bool(own & self.ops) and "mmap" in self.ops

    def note(self) -> str | None:
        """The plain statement of what is left out, or None when the category is fully supported."""
        if not self.missing:
            return None
        return f"category {self.category}: the model does not support {', '.join(self.missing)} yet"


def plan_category(category: str, supported: Iterable[str] | None = None) -> CategoryPlan:
    """The ops to generate for ``category`` given the ops the model supports (default: today's model)."""
    if category not in CATEGORY_OPS:
        raise ValueError(f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
    if supported is None:
        from vmasim.program.model import SUPPORTED_OPS

        supported = SUPPORTED_OPS
    sup = frozenset(supported)
    wanted = set(CATEGORY_OPS[category]) | BASE_OPS
    missing = tuple(op for op in dict.fromkeys((*CATEGORY_OPS[category], *sorted(BASE_OPS))) if op not in sup)
    return CategoryPlan(category, frozenset(wanted & sup), missing)


# --- value helpers ---------------------------------------------------------------------


def size_text(n: int) -> str | int:
    """A length as a contract string: ``"2M"``, ``"16K"``, or a plain integer when not KiB-aligned."""
    if n > 0 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n > 0 and n % (1 << 10) == 0:
        return f"{n >> 10}K"
    return n


def _addr_text(name: str, off: int) -> str:
    if off == 0:
        return name
    return f"{name}+{off:#x}" if off > 0 else f"{name}-{-off:#x}"


# --- the generator ---------------------------------------------------------------------

_PROTS = ("rw", "rw", "rw", "rw", "r", "r", "none", "none", "rwx", "w", "x", "rx")
_ADVICE_SPLIT = (
    "dontfork",
    "dofork",
    "dontdump",
    "dodump",
    "wipeonfork",
    "keeponfork",
    "mergeable",
    "unmergeable",
    "hugepage",
    "nohugepage",
    "random",
    "sequential",
    "normal",
)
_ADVICE_OTHER = (
    "dontneed",
    "free",
    "willneed",
    "populate_read",
    "populate_write",
    "cold",
    "pageout",
    "remove",
    "guard_install",
    "guard_remove",
    "dontneed_locked",
    "collapse",
)
_MPOL = ("bind", "preferred", "interleave", "local", "preferred_many", "weighted_interleave", "default")


@dataclass
class _Floating:
    """A mapping whose address the generator does not know (hint-less mmap, mremap): reachable by name."""

    name: str
    pages: int


@dataclass
class _FileInfo:
    name: str
    pages: int
    kind: str  # "memfd" or "file"
    writable: bool = True
    base: int = 0  # file page that region page 0 corresponds to, for contiguous offsets


@dataclass
class _State:
    """What the generator knows (approximately) about the process so far; only used to bias choices."""

    region: int  # pages
    base_off: int  # bytes from W
    mapped: list[bool]
    points: list[int]
    bound: dict[str, int]  # address name -> region page it was mapped at (FIXED-style mmaps)
    floating: list[_Floating]
    files: list[_FileInfo]
    uffds: list[str]
    uffd_registered: bool = False
    sealed: bool = False

    def clone(self) -> _State:
        return copy.deepcopy(self)


class ProgramGenerator:
    """Generates one program from a seeded random source; see :func:`generate_program`."""

    def __init__(self, rng: random.Random, ops: frozenset[str], category: str) -> None:
        self.rng = rng
        self.allowed = ops
        self.category = category
        self.counter = 0

    # -- small helpers
    def uid(self, prefix: str) -> str:
        """A fresh name with ``prefix`` (names are unique within a program)."""
        self.counter += 1
        return f"{prefix}{self.counter}"

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.rng.random() < p

    def can(self, *ops: str) -> bool:
        """Whether every op in ``ops`` may be generated (the category and the model allow it)."""
        return all(op in self.allowed for op in ops)

    def at(self, st: _State, page: int, extra: int = 0) -> str:
        """The address of region page ``page``, sometimes written relative to a name bound there earlier."""
        if st.bound and self.chance(0.3):
            name = self.rng.choice(sorted(st.bound))
            return _addr_text(name, (page - st.bound[name]) * PAGE + extra)
        return _addr_text("W", st.base_off + page * PAGE + extra)

    def pick_range(self, st: _State, max_len: int = 12) -> tuple[int, int]:
        """A page range in the region, usually starting or ending at an earlier op's boundary."""
        r = st.region
        if st.points and self.chance(0.65):
            start = self.rng.choice(st.points) + self.rng.choice((-1, 0, 0, 0, 1))
        else:
            start = self.rng.randrange(r)
        start = min(max(start, 0), r - 1)
        ends = [p for p in st.points if start < p <= r]
        if ends and self.chance(0.45):
            end = self.rng.choice(ends) + self.rng.choice((0, 0, 0, 1, -1))
        else:
            end = start + self.rng.randint(1, max(1, min(max_len, r - start)))
        end = min(max(end, start + 1), r)
        return start, end - start

    def pick_mapped_range(self, st: _State, max_len: int = 12) -> tuple[int, int] | None:
        """A page range inside (or just across the edge of) a run of pages the generator believes mapped."""
        runs: list[tuple[int, int]] = []
        p = 0
        while p < st.region:
            if st.mapped[p]:
                q = p
                while q < st.region and st.mapped[q]:
                    q += 1
                runs.append((p, q))
                p = q
            else:
                p += 1
        if not runs:
            return None
        lo, hi = self.rng.choice(runs)
        start = self.rng.randrange(lo, hi)
        if self.chance(0.5):
            start = self.rng.choice([p for p in st.points if lo <= p < hi] or [lo])
        end = self.rng.randint(start + 1, min(hi, start + max_len))
        if self.chance(0.15):
            end = min(end + 1, st.region)  # spill into the hole after the run
        return start, end - start

    def mark(self, st: _State, start: int, n: int, mapped: bool | None = None) -> None:
        """Record the boundaries of a range just mapped or unmapped, so later ops aim at them."""
        for p in (start, start + n):
            if p not in st.points:
                st.points.append(p)
        if mapped is not None:
            for p in range(start, min(start + n, st.region)):
                st.mapped[p] = mapped

    def free_range(self, st: _State, n: int) -> int | None:
        """A start page of ``n`` unmapped pages (as far as the generator knows), preferring ones next to mappings."""
        cands = [s for s in range(st.region - n + 1) if not any(st.mapped[s : s + n])]
        if not cands:
            return None
        near = [s for s in cands if (s > 0 and st.mapped[s - 1]) or (s + n < st.region and st.mapped[s + n])]
        return self.rng.choice(near if near and self.chance(0.8) else cands)

    # -- programs
    def program(self) -> Doc:
        """A whole program: a prelude that builds a layout, then a random mix of interacting ops."""
        rng = self.rng
        region = rng.choice((16, 16, 24, 32, 32, 48, 64))
        # Near the window's top the region is where hint-less mmaps land (walls are above it), so
        # placement interacts with the FIXED mappings; near the start it is easier to read.
        top = self.chance(0.35 if self.category != "lifecycle" else 0.6)
        base_off = DEFAULT_WINDOW_LENGTH - region * PAGE if top else 0
        st = _State(region, base_off, [False] * region, [0, region], {}, [], [], [])
        ops: list[Doc] = []
        if self.can("pad") and self.chance(0.03 if self.category == "core" else 0.08):
            ops.append({"op": "pad", "headroom": rng.randint(0, 6)})
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            ops += self.new_file(st)
        for _ in range(rng.randint(1, 3)):
            ops += self.mmap_fixed(st, prelude=True)
        ops += self.body(st, rng.randint(3, 18), depth=0)
        return {"format": "vmasim-program/1", "ops": ops}

    def body(self, st: _State, n: int, depth: int) -> list[Doc]:
        """``n`` ops for a process (``depth`` > 0 inside a fork child)."""
        table = self.table(depth)
        kinds = [k for k, _ in table]
        weights = [w for _, w in table]
        out: list[Doc] = []
        for _ in range(n):
            kind = self.rng.choices(kinds, weights)[0]
            out += getattr(self, kind)(st)
        return out

    def table(self, depth: int) -> list[tuple[str, float]]:
        """The weighted op generators available for this category and model."""
        attrs = self.category in ("attrs", "all")
        life = self.category in ("lifecycle", "all")
        rows: list[tuple[str, float, tuple[str, ...]]] = [
            ("mmap_fixed", 22, ("mmap",)),
            ("mmap_file", 8, ("mmap", "memfd")),
            ("mmap_hintless", 6 if not life else 14, ("mmap",)),
            ("munmap", 12, ("munmap",)),
            ("mprotect", 18 if not attrs else 8, ("mprotect",)),
            ("touch", 14, ("touch",)),
            ("invalid", 7, ("mmap", "munmap", "mprotect")),
            ("file_admin", 3, ("open", "dup", "ftruncate", "close")),
        ]
        if attrs:
            rows += [
                ("madvise", 14, ("madvise",)),
                ("mlock", 9, ("mlock", "munlock", "mlock2")),
                ("mlockall", 1.5, ("mlockall", "munlockall")),
                ("mbind", 7, ("mbind",)),
                ("set_mempolicy", 1, ("set_mempolicy",)),
                ("uffd", 5, ("userfaultfd", "uffd_register", "uffd_unregister")),
                ("mseal", 3, ("mseal",)),
                ("prctl", 2, ("prctl",)),
            ]
        if life:
            rows += [
                ("mremap", 14, ("mremap",)),
                ("sbrk", 6, ("sbrk",)),
                ("fork", 4 if depth < 2 else 0, ("fork",)),
            ]
        return [(name, w) for name, w, need in rows if w > 0 and self.can(*need)]

    # -- core ops
    def new_file(self, st: _State) -> list[Doc]:
        """An op creating a memfd or a regular file, or nothing when neither is allowed."""
        kinds = [k for k in ("memfd", "file") if self.can(k)]
        if not kinds:
            return []
        kind = self.rng.choice(kinds)
        pages = self.rng.randint(1, st.region + 4)
        info = _FileInfo(self.uid("f"), pages, kind, True, self.rng.choice((0, 0, 0, 1, 2)))
        st.files.append(info)
        return [{"op": kind, "name": info.name, "size": size_text(pages * PAGE)}]

    def anon_flags(self, st: _State, fixed: str | None) -> list[str]:
        """mmap flags for anonymous memory: private or shared, sometimes with an extra flag."""
        rng = self.rng
        flags = ["shared" if self.chance(0.18) else "private", "anonymous"]
        if fixed:
            flags.append(fixed)
        for flag, p in (("noreserve", 0.15), ("populate", 0.08), ("growsdown", 0.06), ("stack", 0.06),
                        ("locked", 0.02), ("nonblock", 0.02)):
            if self.chance(p):
                flags.append(flag)
        if self.chance(0.02):
            flags[0] = rng.choice(("shared_validate", "droppable"))
        return flags

    def mmap_fixed(self, st: _State, prelude: bool = False) -> list[Doc]:
        """A FIXED or FIXED_NOREPLACE anonymous mmap next to or over existing mappings."""
        n = self.rng.randint(1, min(8, st.region))
        start = self.free_range(st, n)
        if start is None or (not prelude and self.chance(0.3)):
            start, n = self.pick_range(st, 8)
            fixed = "fixed" if self.chance(0.7) else "fixed_noreplace"
        else:
            fixed = "fixed_noreplace" if self.chance(0.8) else "fixed"
        op: Doc = {
            "op": "mmap",
            "addr": self.at(st, start),
            "length": size_text(n * PAGE),
            "prot": self.rng.choice(_PROTS),
            "flags": self.anon_flags(st, fixed),
        }
        if self.chance(0.4):
            name = self.uid("m")
            op["as"] = name
            st.bound[name] = start
        self.mark(st, start, n, True)
        return [op]

    def mmap_file(self, st: _State) -> list[Doc]:
        """A file mapping whose offset continues a neighbour's (so they may merge) or does not."""
        out: list[Doc] = []
        if not st.files or self.chance(0.15):
            out += self.new_file(st)
            if not st.files:
                return out
        f = self.rng.choice(st.files)
        start, n = self.pick_range(st, 8)
        # Usually contiguous with any mapping of f laid out the same way (so they may merge), else anywhere.
        fpage = max(0, f.base + start) if self.chance(0.65) else self.rng.randint(0, f.pages + 2)
        shared = self.chance(0.55)
        prot = self.rng.choice(("rw", "rw", "r", "r", "none", "rx"))
        flags = ["shared" if shared else "private"]
        flags.append("fixed" if self.chance(0.4) else "fixed_noreplace")
        if self.chance(0.1):
            flags.append("populate")
        if self.chance(0.05):
            flags.append("noreserve")
        op: Doc = {
            "op": "mmap",
            "addr": self.at(st, start),
            "length": size_text(n * PAGE),
            "prot": prot,
            "flags": flags,
            "fd": f.name,
            "offset": size_text(fpage * PAGE) if fpage else 0,
        }
        if self.chance(0.3):
            name = self.uid("m")
            op["as"] = name
            st.bound[name] = start
        self.mark(st, start, n, True)
        out.append(op)
        return out

    def mmap_hintless(self, st: _State) -> list[Doc]:
        """An mmap without a hint: placed top-down from the window's end (huge-page-sized sometimes)."""
        rng = self.rng
        nbytes = rng.choice((2, 2, 4, 6)) << 20 if self.chance(0.15) else rng.randint(1, 16) * PAGE
        name = self.uid("h")
        op: Doc = {"op": "mmap", "addr": None, "length": size_text(nbytes), "prot": rng.choice(_PROTS)}
        if st.files and self.chance(0.25):
            f = rng.choice(st.files)
            op["flags"] = ["shared" if self.chance(0.5) else "private"]
            op["fd"] = f.name
            op["offset"] = 0
        else:
            op["flags"] = self.anon_flags(st, None)
        if self.chance(0.1):
            # A hint that is taken if free, else ignored: a region page or an unaligned address.
            op["addr"] = self.at(st, rng.randrange(st.region), rng.choice((0, 0, 0x123)))
        op["as"] = name
        st.floating.append(_Floating(name, max(1, nbytes // PAGE)))
        return [op]

    def target(self, st: _State, max_len: int = 12) -> tuple[str, int, int | None]:
        """An address and a length in pages: a region range, or a range of a hint-less mapping."""
        if st.floating and self.chance(0.2):
            fl = self.rng.choice(st.floating)
            off = self.rng.randrange(min(fl.pages, 64))
            # Never past the mapping's end: a hint-less mapping may end at the window's end, and the
            # walls above it are the runner's, not the program's (the model has no VMAs there).
            n = self.rng.randint(1, max(1, min(max_len, fl.pages - off)))
            return _addr_text(fl.name, off * PAGE), n, None
        picked = self.pick_mapped_range(st, max_len) if self.chance(0.6) else None
        start, n = picked if picked is not None else self.pick_range(st, max_len)
        return self.at(st, start), n, start

    def munmap(self, st: _State) -> list[Doc]:
        """A munmap op (sometimes invalid)."""
        addr, n, start = self.target(st)
        if start is not None:
            self.mark(st, start, n, False)
        return [{"op": "munmap", "addr": addr, "length": size_text(n * PAGE)}]

    def mprotect(self, st: _State) -> list[Doc]:
        """An mprotect op across nearby boundaries (sometimes invalid)."""
        addr, n, start = self.target(st)
        if start is not None:
            self.mark(st, start, n)
        op: Doc = {"op": "mprotect", "addr": addr, "length": size_text(n * PAGE), "prot": self.rng.choice(_PROTS)}
        if self.chance(0.04):
            op["prot_flags"] = ["growsdown"]
        return [op]

    def touch(self, st: _State) -> list[Doc]:
        """A touch op (a read or a write)."""
        addr, n, _ = self.target(st, 4)
        op: Doc = {"op": "touch", "addr": addr, "length": size_text(n * PAGE)}
        if self.chance(0.35):
            op["write"] = False
        if st.uffd_registered and self.chance(0.8):
            # A MISSING fault on a registered range waits for a handler until the runner's timeout: keep rare.
            return []
        return [op]

    def file_admin(self, st: _State) -> list[Doc]:
        """open (read-only or read-write), dup, ftruncate or close of a file made earlier."""
        if not st.files:
            return self.new_file(st)
        f = self.rng.choice(st.files)
        what = self.rng.choice(("open", "open", "dup", "ftruncate", "close"))
        if what == "open":
            writable = self.chance(0.3)
            info = _FileInfo(self.uid("o"), f.pages, f.kind, writable, f.base)
            st.files.append(info)
            return [{"op": "open", "name": info.name, "of": f.name, "mode": "rw" if writable else "r"}]
        if what == "dup":
            info = _FileInfo(self.uid("d"), f.pages, f.kind, f.writable, f.base)
            st.files.append(info)
            return [{"op": "dup", "name": info.name, "of": f.name}]
        if what == "ftruncate":
            f.pages = self.rng.randint(0, st.region + 4)
            return [{"op": "ftruncate", "fd": f.name, "size": size_text(f.pages * PAGE) if f.pages else 0}]
        return [{"op": "close", "fd": f.name}]

    def invalid(self, st: _State) -> list[Doc]:
        """A call the kernel must reject (or treat specially): bad alignment, lengths, prot bits, flags."""
        rng = self.rng
        start, n = self.pick_range(st, 8)
        addr = self.at(st, start)
        length: Any = size_text(n * PAGE)
        what = rng.choice(("unaligned", "zero", "huge", "negative", "past_top", "prot_bits", "flags", "offset"))
        call = rng.choice(("mmap", "munmap", "mprotect"))
        if what == "unaligned":
            addr = self.at(st, start, rng.choice((1, 0x123, 0x800, PAGE - 1)))
        elif what == "zero":
            length = 0
        elif what == "huge":
            length = rng.choice(("0xfffffffffffff000", "0x8000000000000000", "0xffffffffffffffff"))
            if call == "mprotect" and st.base_off and length == "0x8000000000000000":
                # mprotect has no TASK_SIZE check: from a region at the window's top this length would
                # walk into the runner's walls. Lengths that wrap around fail before looking at VMAs.
                length = "0xfffffffffffff000"
        elif what == "negative":
            length = -PAGE * rng.randint(1, 4)
        elif what == "past_top":
            # Ends just past the top of the user address space; never huge enough to reach beyond the
            # walls with an mprotect that succeeds, because there is a hole above a region at the window start.
            if call == "mprotect" and st.base_off:
                call = "munmap"
            here = DEFAULT_WINDOW_START + st.base_off + start * PAGE
            length = hex(C.TASK_SIZE - here + rng.choice((PAGE, 2 * PAGE)))
        if call == "mmap":
            flags: Any = ["private", "anonymous", rng.choice(("fixed", "fixed_noreplace"))]
            prot: Any = rng.choice(_PROTS)
            if what == "prot_bits":
                prot = rng.choice((0x8, 0x10, 0x20, 0x40, 0x7 | 0x10, C.PROT_GROWSDOWN | 3))
            elif what == "flags":
                flags = rng.choice(
                    (
                        ["anonymous", "fixed_noreplace"],
                        ["private", "shared", "anonymous", "fixed_noreplace"],
                        ["shared_validate", "anonymous", "fixed_noreplace", "populate"],
                        ["droppable", "private", "anonymous", "fixed_noreplace"],
                        ["droppable", "anonymous", "fixed_noreplace", "locked"],
                        ["shared", "anonymous", "fixed_noreplace", "growsdown"],
                    )
                )
            op: Doc = {"op": "mmap", "addr": addr, "length": length, "prot": prot, "flags": flags}
            if what == "offset" and st.files:
                op["flags"] = ["private", "fixed"]
                op["fd"] = rng.choice(st.files).name
                op["offset"] = rng.choice((1, 0x800, PAGE + 1, "0xfffffffffffff000"))
            if what in ("unaligned", "zero", "huge", "negative") and self.chance(0.3):
                op["addr"] = None  # hint-less with a bad length
                op["flags"] = ["private", "anonymous"]
            return [op]
        if call == "munmap":
            return [{"op": "munmap", "addr": addr, "length": length}]
        prot2: Any = rng.choice(_PROTS)
        if what in ("prot_bits", "flags", "offset"):
            prot2 = rng.choice((0x8, 0x10, 0x20, 0x40, 0x80, C.PROT_GROWSUP | 1, C.PROT_GROWSDOWN | C.PROT_GROWSUP))
        return [{"op": "mprotect", "addr": addr, "length": length, "prot": prot2}]

    # -- attrs
    def madvise(self, st: _State) -> list[Doc]:
        """A madvise op."""
        addr, n, start = self.target(st)
        if start is not None:
            self.mark(st, start, n)
        advice: Any = self.rng.choice(_ADVICE_SPLIT if self.chance(0.65) else _ADVICE_OTHER)
        if advice in ("populate_read", "populate_write", "willneed") and self._blocks(st):
            advice = "normal"
        if self.chance(0.03):
            advice = 999
        return [{"op": "madvise", "addr": addr, "length": size_text(n * PAGE), "advice": advice}]

    def _blocks(self, st: _State) -> bool:
        """Whether to leave out a populating op: with a userfaultfd registered it may wait forever on the kernel."""
        return st.uffd_registered and self.chance(0.85)

    def mlock(self, st: _State) -> list[Doc]:
        """An mlock, mlock2 or munlock op."""
        if self._blocks(st):
            return []
        addr, n, start = self.target(st)
        if start is not None:
            self.mark(st, start, n)
        what = self.rng.choice(("mlock", "munlock", "mlock2", "mlock2"))
        op: Doc = {"op": what, "addr": addr, "length": size_text(n * PAGE)}
        if what == "mlock2":
            op["flags"] = self.rng.choice((["onfault"], [], ["onfault"], 4))
        return [op]

    def mlockall(self, st: _State) -> list[Doc]:
        """An mlockall or munlockall op."""
        if self._blocks(st):
            return []
        if self.chance(0.4):
            return [{"op": "munlockall"}]
        flags: Any = self.rng.choice(
            (["current"], ["future"], ["current", "future"], ["future", "onfault"], ["current", "onfault"], [], 8)
        )
        return [{"op": "mlockall", "flags": flags}]

    def mbind(self, st: _State) -> list[Doc]:
        """An mbind op."""
        addr, n, start = self.target(st)
        if start is not None:
            self.mark(st, start, n)
        mode = self.rng.choice(_MPOL)
        op: Doc = {"op": "mbind", "addr": addr, "length": size_text(n * PAGE), "mode": mode}
        if mode not in ("default", "local") or self.chance(0.05):
            op["nodes"] = [0] if self.chance(0.93) else [1]
        if self.chance(0.1):
            op["mode_flags"] = [self.rng.choice(("static", "relative"))]
        if self.chance(0.1):
            op["flags"] = [self.rng.choice(("strict", "move"))]
        return [op]

    def set_mempolicy(self, st: _State) -> list[Doc]:
        """A set_mempolicy op."""
        mode = self.rng.choice(("bind", "interleave", "default", "preferred"))
        op: Doc = {"op": "set_mempolicy", "mode": mode}
        if mode != "default":
            op["nodes"] = [0]
        return [op]

    def uffd(self, st: _State) -> list[Doc]:
        """userfaultfd ops: open, register, unregister or close."""
        out: list[Doc] = []
        if not st.uffds or self.chance(0.15):
            name = self.uid("u")
            st.uffds.append(name)
            out.append({"op": "userfaultfd", "name": name})
        u = self.rng.choice(st.uffds)
        addr, n, start = self.target(st)
        if start is not None:
            self.mark(st, start, n)
        r = self.rng.random()
        if r < 0.6:
            mode: Any = self.rng.choice(("missing", "wp", ["missing", "wp"], "minor"))
            out.append({"op": "uffd_register", "uffd": u, "addr": addr, "length": size_text(n * PAGE), "mode": mode})
            st.uffd_registered = True
        elif r < 0.9:
            out.append({"op": "uffd_unregister", "uffd": u, "addr": addr, "length": size_text(n * PAGE)})
        else:
            out.append({"op": "close", "fd": u})
        return out

    def mseal(self, st: _State) -> list[Doc]:
        """An mseal op."""
        addr, n, start = self.target(st)
        if start is not None:
            self.mark(st, start, n)
        st.sealed = True
        return [{"op": "mseal", "addr": addr, "length": size_text(n * PAGE)}]

    def prctl(self, st: _State) -> list[Doc]:
        """A prctl op."""
        if self.chance(0.5):
            addr, n, _ = self.target(st)
            return [{"op": "prctl", "option": "set_vma_anon_name", "addr": addr, "length": size_text(n * PAGE),
                     "name": self.rng.choice(("buf", None))}]
        return [{"op": "prctl", "option": "set_memory_merge", "value": self.rng.choice((0, 1))}]

    # -- lifecycle
    def mremap(self, st: _State) -> list[Doc]:
        """An mremap op: shrink, grow, or move."""
        rng = self.rng
        addr, n, start = self.target(st, 8)
        new_n = max(0, n + rng.choice((-2, -1, 0, 1, 2, 4)))
        op: Doc = {"op": "mremap", "addr": addr, "old_length": size_text(n * PAGE) if n else 0,
                   "new_length": size_text(new_n * PAGE) if new_n else 0}
        r = rng.random()
        if r < 0.3:
            pass  # in place
        elif r < 0.6:
            op["flags"] = ["maymove"]
        elif r < 0.85:
            # The whole destination stays in the region: MREMAP_FIXED unmaps whatever it lands on,
            # and above a region at the window's top that would be the runner's walls.
            dst = self.rng.randrange(max(1, st.region - max(new_n, 1) + 1))
            op["flags"] = ["maymove", "fixed"]
            op["new_addr"] = self.at(st, dst)
            self.mark(st, dst, max(new_n, 1), True)
        elif r < 0.95:
            op["flags"] = ["maymove", "dontunmap"]
            op["new_length"] = op["old_length"]
            new_n = n
        else:
            op["flags"] = rng.choice((["fixed"], ["dontunmap"], 8))
            op["new_addr"] = self.at(st, rng.randrange(st.region))
        if start is not None:
            self.mark(st, start, n)
        name = self.uid("r")
        op["as"] = name
        st.floating.append(_Floating(name, max(new_n, 1)))
        return [op]

    def sbrk(self, st: _State) -> list[Doc]:
        """An sbrk op."""
        inc = self.rng.choice((1, 1, 2, 4, 8, -1, -2, 0)) * PAGE
        if self.chance(0.05):
            inc = self.rng.choice((-(1 << 40), 100, 1 << 20))
        return [{"op": "sbrk", "increment": inc}]

    def fork(self, st: _State) -> list[Doc]:
        """A fork op with a short child program."""
        # The child works on a copy of the parent's layout; what it binds stays in the child.
        child_state = st.clone()
        child = self.body(child_state, self.rng.randint(1, 6), depth=1)
        return [{"op": "fork", "child": child}]


def generate_program(seed: int, index: int, category: str = "core", supported: Iterable[str] | None = None) -> Doc:
    """Program ``index`` of the campaign ``seed``: a contract program (a plain JSON-able dict).

    Only ops of ``category`` that the model supports (``supported``, default
    :data:`vmasim.program.model.SUPPORTED_OPS`) are used.  The same arguments
    always give the same program.
    """
    plan = plan_category(category, supported)
    rng = random.Random(f"vmasim-fuzz:{seed}:{index}:{category}")
    return ProgramGenerator(rng, plan.ops, category).program()


def generate_programs(
    seed: int, count: int, category: str = "core", supported: Iterable[str] | None = None, *, start: int = 0
) -> list[Doc]:
    """Programs ``start .. start+count-1`` of the campaign ``seed`` (see :func:`generate_program`)."""
    return [generate_program(seed, start + i, category, supported) for i in range(count)]


# --- the walls above the window ---------------------------------------------------------------------

# Ops that change (or, with FIXED_NOREPLACE, look at) the VMAs of a range.
_RANGE_OPS = frozenset(
    {"mmap", "munmap", "mprotect", "madvise", "mlock", "munlock", "mlock2", "mbind", "mseal", "mremap",
     "uffd_register", "uffd_unregister", "prctl"}
)


def _op_ranges(op: Op, names: dict[str, int]) -> list[tuple[int, int]]:
    """The address ranges ``op`` acts on, with names resolved; empty for ops that act on no range."""
    if op.op not in _RANGE_OPS or op.get("addr") is None:
        return []
    start = int(op["addr"].resolve(names))
    if op.op in ("mlock", "munlock", "mlock2"):
        # The mlock family rounds an unaligned range outwards instead of failing.
        end = -(-(start + op["length"]) // PAGE) * PAGE
        return [(start - start % PAGE, end)]
    if start % PAGE:
        return []  # every other range op fails with EINVAL on an unaligned start, before looking at VMAs
    if op.op == "mmap":
        if not op["flags"] & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE):
            return []  # a hint never displaces anything
        return [(start, start + op["length"])]
    if op.op == "mremap":
        out = [(start, start + op["old_length"])]
        # MREMAP_FIXED without MREMAP_MAYMOVE is EINVAL before anything is looked at.
        fixed = C.MREMAP_FIXED | C.MREMAP_MAYMOVE
        if op["flags"] & fixed == fixed and op.get("new_addr") is not None:
            dst = int(op["new_addr"].resolve(names))
            out.append((dst, dst + op["new_length"]))
        return out
    if op.get("length") is None:
        return []
    return [(start, start + op["length"])]


def wall_ops(program: Program, report: dict[str, Any]) -> list[str]:
    """The paths of ops that act on the walls above the window (addresses resolved as the model ran them).

    The walls are the runner's scaffolding, not the program's: the generator
    keeps its ranges inside the window, so a divergence whose reproducer acts
    on the walls (after shrinking changed a length, say) is flagged in its
    report line, because it may be about how the walls are modelled rather
    than about the VMA layer.  Ranges that end past the top of the address
    space are deliberately invalid calls and are not counted (they fail
    before touching any VMA).
    """
    out: list[str] = []
    lo, hi = program.window_end, C.TASK_SIZE

    def walk(ops: Sequence[Op], rep: dict[str, Any], names: dict[str, int]) -> None:
        results: list[dict[str, Any]] = rep.get("results", [])
        for i, op in enumerate(ops):
            for a, b in _op_ranges(op, names):
                if a < hi and lo < b <= hi and b > a:
                    out.append(op.path)
                    break
            res = results[i] if i < len(results) else {}
            if op.get("as"):
                ret = res.get("ret")
                names[op["as"]] = int(ret, 16) if isinstance(ret, str) else (1 << 64) - 1
            if op.op == "fork":
                walk(op.child, rep.get("children", {}).get(str(i), {}), dict(names))

    walk(program.ops, report, {"W": program.window_start})
    return out


# --- running both sides -------------------------------------------------------------------


@dataclass
class Outcome:
    """One program run on both sides."""

    doc: Doc
    model: dict[str, Any] | None = None
    kernel: dict[str, Any] | None = None
    diffs: list[str] = field(default_factory=list)
    model_error: str | None = None  # the model raised (a model bug: counts as a divergence)
    kernel_error: str | None = None  # the runner could not run it (timeout...): skipped
    invalid: str | None = None  # the program does not parse (only shrinker candidates)

    @property
    def diverges(self) -> bool:
        """True when the model disagrees with the kernel or crashed."""
        return self.kernel_error is None and self.invalid is None and bool(self.diffs)

    def signature(self) -> str | None:
        """What kind of divergence this is, so that shrinking does not wander off to another bug."""
        if not self.diverges:
            return None
        if self.model_error is not None:
            return "crash:" + self.model_error.split(":", 1)[0]
        return diff_kind(self.diffs[0])


_HEX = re.compile(r"[+-]?0x[0-9a-fA-F]+|\b\d+\b")
_INDEX = re.compile(r"\[\d+\]|child [\d.]+:")


def diff_kind(line: str) -> str:
    """A difference line with addresses, indices and full flag lists removed: what kind of difference it is."""
    text = re.sub(r"\(model \[.*\], kernel \[.*\]\)", "", line)
    text = _INDEX.sub("[*]", text)
    text = _HEX.sub("#", text)
    return " ".join(text.split())


def default_kernel_batch(jobs: int | None, timeout: float = 10.0) -> KernelBatch:
    """The host kernel runner as a batch function."""

    def run(programs: Sequence[Program]) -> Sequence[Any]:
        from vmasim.kernel import run_programs

        return run_programs(list(programs), jobs=jobs, timeout=timeout)

    return run


def evaluate(docs: Sequence[Doc], kernel_batch: KernelBatch, profile: Profile | None = None) -> list[Outcome]:
    """Parse, run on the model of ``profile`` and (in one batch) on the kernel, and diff each program."""
    from vmasim.program.model import run_model

    outcomes = [Outcome(doc) for doc in docs]
    programs: list[Program] = []
    idx: list[int] = []
    for i, out in enumerate(outcomes):
        try:
            prog = parse_program(out.doc)
        except ProgramError as exc:
            out.invalid = str(exc)
            continue
        try:
            out.model = run_model(prog, profile)
        except Exception as exc:  # a model bug: report it as a divergence with its traceback
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            out.model_error = tb
            out.diffs = [f"the model raised {tb}"]
        programs.append(prog)
        idx.append(i)
    if programs:
        try:
            reports: Sequence[Any] = kernel_batch(programs)
        except Exception as exc:  # the whole batch failed (runner crash): every program is skipped, not passed
            reports = [exc] * len(programs)
        for i, rep in zip(idx, reports, strict=True):
            out = outcomes[i]
            if isinstance(rep, BaseException) or not isinstance(rep, dict):
                out.kernel_error = str(rep) or type(rep).__name__
                continue
            out.kernel = rep
            if out.model is not None:
                out.diffs = diff_reports(out.model, rep)
    return outcomes


# --- the shrinker -------------------------------------------------------------------------

_ADDR_FIELDS = ("addr", "new_addr")
_OBJ_FIELDS = ("fd", "of", "uffd")
_OBJ_BINDERS = frozenset({"memfd", "file", "open", "dup", "userfaultfd"})
_NAME_HEAD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)")


def _positions(ops: Sequence[Doc], prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Every op's path in preorder: ``(3,)`` for op 3, ``(3, 1)`` for op 1 of op 3's fork child."""
    out: list[tuple[int, ...]] = []
    for i, op in enumerate(ops):
        out.append((*prefix, i))
        if isinstance(op.get("child"), list):
            out += _positions(op["child"], (*prefix, i))
    return out


def _without(ops: Sequence[Doc], drop: set[tuple[int, ...]], prefix: tuple[int, ...] = ()) -> list[Doc]:
    out: list[Doc] = []
    for i, op in enumerate(ops):
        path = (*prefix, i)
        if path in drop:
            continue
        if isinstance(op.get("child"), list):
            op = {**op, "child": _without(op["child"], drop, path)}
        out.append(op)
    return out


def _drop_dangling(ops: Sequence[Doc], addrs: set[str], objs: set[str]) -> list[Doc]:
    """Drop ops that use a name no remaining op binds (their binder was removed), transitively."""
    out: list[Doc] = []
    for op in ops:
        ok = True
        for key in _ADDR_FIELDS:
            value = op.get(key)
            if isinstance(value, str):
                m = _NAME_HEAD.match(value)
                if m and m.group(1) not in addrs:
                    ok = False
        for key in _OBJ_FIELDS:
            value = op.get(key)
            if isinstance(value, str) and value not in objs:
                ok = False
        if not ok:
            continue
        if isinstance(op.get("child"), list):
            op = {**op, "child": _drop_dangling(op["child"], set(addrs), set(objs))}
        if isinstance(op.get("as"), str):
            addrs.add(op["as"])
        if op.get("op") in _OBJ_BINDERS and isinstance(op.get("name"), str):
            objs.add(op["name"])
        out.append(op)
    return out


def _with_ops(doc: Doc, ops: list[Doc]) -> Doc:
    return {**doc, "ops": _drop_dangling(ops, {"W"}, set())}


def _get(ops: list[Doc], path: tuple[int, ...]) -> Doc:
    op = ops[path[0]]
    for i in path[1:]:
        op = op["child"][i]
    return op


def _replace(doc: Doc, path: tuple[int, ...], new_op: Doc) -> Doc:
    def go(ops: list[Doc], rest: tuple[int, ...]) -> list[Doc]:
        out = list(ops)
        if len(rest) == 1:
            out[rest[0]] = new_op
        else:
            out[rest[0]] = {**out[rest[0]], "child": go(out[rest[0]]["child"], rest[1:])}
        return out

    return {**doc, "ops": go(doc["ops"], path)}


def _bytes(value: Any) -> int | None:
    from vmasim.program.parse import parse_int

    try:
        return parse_int(value)
    except ValueError:
        return None


_DROPPABLE_FLAGS = ("noreserve", "populate", "stack", "growsdown", "locked", "nonblock", "onfault", "dontunmap")


def _simplifications(op: Doc) -> list[Doc]:
    """Simpler variants of one op: shorter lengths, fewer flags, offset 0, no unused name."""
    out: list[Doc] = []
    for key in ("length", "old_length", "new_length", "size"):
        n = _bytes(op.get(key)) if key in op else None
        if n is not None and 0 < n < 1 << 40 and n % PAGE == 0 and n > PAGE:
            out.append({**op, key: "4K"})
            half = (n // 2) // PAGE * PAGE
            if half > PAGE:
                out.append({**op, key: size_text(half)})
    flags = op.get("flags")
    if isinstance(flags, list):
        for f in flags:
            if f in _DROPPABLE_FLAGS:
                out.append({**op, "flags": [g for g in flags if g != f]})
        if "fixed" in flags and op.get("op") == "mmap":
            out.append({**op, "flags": ["fixed_noreplace" if g == "fixed" else g for g in flags]})
    if op.get("offset") not in (None, 0):
        out.append({**op, "offset": 0})
    if "as" in op:
        out.append({k: v for k, v in op.items() if k != "as"})
    if op.get("op") == "touch" and op.get("write") is False:
        out.append({k: v for k, v in op.items() if k != "write"})
    if op.get("prot") not in (None, "rw") and isinstance(op.get("prot"), str):
        out.append({**op, "prot": "rw"})
    if isinstance(op.get("child"), list) and op["child"]:
        pass  # child ops are simplified through their own paths
    return out


@dataclass
class ShrinkResult:
    """The smallest program found and its outcome."""

    doc: Doc
    outcome: Outcome
    evaluations: int
    seconds: float
    complete: bool  # False when the time or evaluation budget ran out first


def shrink(
    doc: Doc,
    kernel_batch: KernelBatch,
    *,
    first: Outcome | None = None,
    budget_s: float = 20.0,
    max_evals: int = 3000,
    profile: Profile | None = None,
) -> ShrinkResult:
    """Delta-debug a divergent program to a small one that still shows the same kind of divergence.

    First whole ops are removed (ddmin over all ops, fork children included;
    removing an op that binds a name also removes the ops that use it), then
    single ops are simplified (shorter lengths, fewer flags).  Candidates of a
    round are run as one batch.  Stops after ``budget_s`` seconds or
    ``max_evals`` candidate runs with the best program so far.
    """
    t0 = time.monotonic()
    best = first if first is not None else evaluate([doc], kernel_batch, profile)[0]
    sig = best.signature()
    if sig is None:
        raise ValueError("shrink() needs a program that diverges")
    evals = 0

    def over() -> bool:
        return time.monotonic() - t0 > budget_s or evals >= max_evals

    def try_batch(cands: list[Doc]) -> Outcome | None:
        """Run the valid, not yet seen candidates; return the first one still showing the divergence."""
        nonlocal evals
        fresh: list[Doc] = []
        for c in cands:
            key = json.dumps(c, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            try:
                parse_program(c)
            except ProgramError:
                continue
            fresh.append(c)
        if not fresh:
            return None
        evals += len(fresh)
        for out in evaluate(fresh, kernel_batch, profile):
            if out.signature() == sig:
                return out
        return None

    seen: set[str] = {json.dumps(best.doc, sort_keys=True)}
    # 1. remove ops (ddmin)
    n = 2
    while not over():
        pos = _positions(best.doc["ops"])
        if not pos:
            break
        n = min(n, len(pos))
        size = -(-len(pos) // n)
        chunks = [pos[i : i + size] for i in range(0, len(pos), size)]
        cands = [_with_ops(best.doc, _without(best.doc["ops"], set(c))) for c in chunks]
        found = None
        # Batches bounded so that an early success is not paid for with a huge round.
        for i in range(0, len(cands), 64):
            found = try_batch(cands[i : i + 64])
            if found is not None or over():
                break
        if found is not None:
            best = found
            n = max(n - 1, 2)
            continue
        if n >= len(pos):
            break
        n = min(len(pos), n * 2)
    # 2. simplify single ops
    progress = True
    while progress and not over():
        progress = False
        cands = []
        for path in _positions(best.doc["ops"]):
            for variant in _simplifications(_get(best.doc["ops"], path)):
                cands.append(_replace(best.doc, path, variant))
        for i in range(0, len(cands), 64):
            found = try_batch(cands[i : i + 64])
            if found is not None:
                best = found
                progress = True
                break
            if over():
                break
    return ShrinkResult(best.doc, best, evals, time.monotonic() - t0, not over())


# --- the campaign -----------------------------------------------------------------------


@dataclass
class CampaignResult:
    """Counts of a fuzz campaign."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    saved: list[str] = field(default_factory=list)


def _save(out_dir: str, stem: str, doc: Doc, outcome: Outcome, original: Doc) -> str:
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, stem)
    with open(base + ".json", "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    with open(base + ".orig.json", "w", encoding="utf-8") as fh:
        json.dump(original, fh, indent=1)
        fh.write("\n")
    for suffix, rep in ((".model.json", outcome.model), (".kernel.json", outcome.kernel)):
        with open(base + suffix, "w", encoding="utf-8") as fh:
            json.dump(rep if rep is not None else {"error": outcome.model_error}, fh, indent=1)
            fh.write("\n")
    with open(base + ".diff.txt", "w", encoding="utf-8") as fh:
        fh.write(format_diff(outcome.diffs))
    return base + ".json"


def run_campaign(
    *,
    seed: int,
    count: int,
    category: str,
    out: str,
    kernel_batch: KernelBatch,
    supported: Iterable[str] | None = None,
    stream: TextIO | None = None,
    chunk: int = 1000,
    shrink_budget_s: float = 20.0,
    total_shrink_budget_s: float = 300.0,
    shrinks_per_kind: int = 3,
    profile: Profile | None = None,
) -> CampaignResult:
    """Generate ``count`` programs, run them on both sides, shrink and save every divergence.

    Prints one line per divergence; the caller prints the summary.  Divergences
    of a kind already shrunk ``shrinks_per_kind`` times, or found after the
    total shrink budget is spent, are saved as they are (said so in their line).
    """
    say = _printer(stream)
    res = CampaignResult()
    failures: list[tuple[int, Outcome]] = []
    for lo in range(0, count, chunk):
        docs = generate_programs(seed, min(chunk, count - lo), category, supported, start=lo)
        for i, outcome in enumerate(evaluate(docs, kernel_batch, profile)):
            if outcome.invalid is not None:  # a generator bug; never expected
                say(f"program {lo + i}: generator produced an invalid program: {outcome.invalid}")
                res.failed += 1
            elif outcome.kernel_error is not None:
                res.skipped += 1
                if res.skipped <= 3:  # a few examples; the count comes with the summary
                    say(f"program {lo + i}: kernel runner error: {outcome.kernel_error}")
            elif outcome.diverges:
                res.failed += 1
                failures.append((lo + i, outcome))
            else:
                res.passed += 1
        if count > chunk:
            # Progress of long campaigns goes to stderr: stdout ends with the summary line.
            print(f"... {min(lo + chunk, count)}/{count} run, {res.failed} failed", file=sys.stderr, flush=True)
    spent = 0.0
    per_kind: dict[str, int] = {}
    seen_repros: dict[str, str] = {}
    for n, (index, outcome) in enumerate(failures, start=1):
        kind = outcome.signature() or "?"
        doc, final, note = outcome.doc, outcome, ""
        if per_kind.get(kind, 0) >= shrinks_per_kind:
            note = " (not shrunk: same kind as earlier ones)"
        elif spent >= total_shrink_budget_s:
            note = " (not shrunk: shrink time budget spent)"
        else:
            per_kind[kind] = per_kind.get(kind, 0) + 1
            result = shrink(outcome.doc, kernel_batch, first=outcome, budget_s=shrink_budget_s, profile=profile)
            spent += result.seconds
            doc, final = result.doc, result.outcome
            if not result.complete:
                note = f" (shrinking stopped after {result.seconds:.0f}s)"
        key = json.dumps(doc, sort_keys=True)
        stem = f"divergence-{seed}-{n}"
        if key in seen_repros:
            note += f" (same reproducer as {seen_repros[key]})"
        else:
            seen_repros[key] = stem
        # The reproducer says where it came from, in a field the contract ignores.
        how = "as generated" if doc is outcome.doc else "shrunk"
        doc = {**doc, "_comment": f"vmasim fuzz --seed {seed} --category {category}: program {index}, {how}"}
        path = _save(out, stem, doc, final, outcome.doc)
        res.saved.append(path)
        n_ops = len(_positions(doc["ops"]))
        if final.model is not None:
            walls = wall_ops(parse_program(doc), final.model)
            if walls:
                note += f" (op {walls[0]} acts on the walls above the window)"
        say(f"FAIL program {index}: {path} ({n_ops} op(s)){note}: {final.diffs[0] if final.diffs else '?'}")
    return res


def _printer(stream: TextIO | None) -> Callable[[str], None]:
    def say(text: str) -> None:
        print(text, file=stream if stream is not None else sys.stdout, flush=True)

    return say


def fuzz_command(*, seed: int, count: int, category: str, jobs: int | None, out: str, target: str = "host") -> int:
    """``vmasim fuzz``: run a campaign on the model of ``target`` (the probed host by default) and the host
    kernel; the exit status.

    0 when no program diverged, 1 when some did, 2 when the campaign could not
    run (nothing of the category is modelled yet, or no kernel runner).  The
    last line printed is always ``N passed, M failed`` when programs ran.
    """
    say = _printer(None)
    try:
        plan = plan_category(category)
    except ValueError as exc:
        say(str(exc))
        return 2
    note = plan.note()
    if not plan.usable:
        say(f"{note}: nothing of the category can be generated")
        return 2
    if note:
        say(f"{note}; generating only from {', '.join(sorted(plan.ops))}")
    try:
        from vmasim.kernel import kernel_available
    except ImportError as exc:
        say(f"cannot run on the host kernel: the kernel runner is not available ({exc})")
        return 2
    ok, why = kernel_available()
    if not ok:
        say(f"cannot run on the host kernel: {why}")
        return 2
    from vmasim.kernel import host_kernel_release
    from vmasim.profile import ProfileError, resolve_profile

    try:
        profile = resolve_profile(target)
    except ProfileError as exc:
        say(str(exc))
        return 2
    say(f"fuzz: seed {seed}, {count} {category} program(s), jobs {jobs or 'auto'}, reproducers in {out}/; "
        f"host kernel {host_kernel_release()}, model of profile {profile.name} ({profile.release})")
    res = run_campaign(seed=seed, count=count, category=category, out=out, kernel_batch=default_kernel_batch(jobs),
                       profile=profile)
    return finish(res, say)


def finish(res: CampaignResult, say: Callable[[str], None]) -> int:
    """Print the skipped count (if any) and the summary line last; the exit status."""
    if res.skipped:
        say(f"{res.skipped} skipped (kernel runner error)")
    say(f"{res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0
