"""A seeded generator of programs that make VMAs interact.

A small region of neighbouring mappings that almost match, partial unmaps and
mprotects across boundaries and holes, touches, files with contiguous and
non-contiguous offsets, hint-less placement, and a share of invalid calls.
Programs are plain JSON-able dicts in the ``vmasim-program/1`` format.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

from vmasim import constants as C
from vmasim.fuzz.categories import plan_category
from vmasim.program.parse import DEFAULT_WINDOW_LENGTH, DEFAULT_WINDOW_START

PAGE = C.PAGE_SIZE
Doc = dict[str, Any]


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


def generate_program(seed: int, index: int, category: str = "core") -> Doc:
    """Program ``index`` of the campaign ``seed``: a contract program (a plain JSON-able dict).

    Only the ops of ``category`` (and the core ones) are used.  The same arguments
    always give the same program.
    """
    rng = random.Random(f"vmasim-fuzz:{seed}:{index}:{category}")
    return ProgramGenerator(rng, plan_category(category), category).program()


def generate_programs(
    seed: int, count: int, category: str = "core", *, start: int = 0
) -> list[Doc]:
    """Programs ``start .. start+count-1`` of the campaign ``seed`` (see :func:`generate_program`)."""
    return [generate_program(seed, start + i, category) for i in range(count)]
