"""A seeded generator of programs that draws from the whole program format.

*What* is generated comes from the op definitions (:mod:`vmasim.program.ops`):
the ops of a category are its definitions' family, every field is filled by
its kind, and every item of the format (:mod:`vmasim.fuzz.coverage`: each
flag, advice, mode and feature, alone and in every legal pair, each
protection and boolean, each numeric field at the edges of its C type) is
scheduled: program ``n`` is built around items ``2n`` and ``2n + 1`` of its
category's list (rotated by the seed), so a campaign of a few hundred
programs says everything the format can say.  Adding an op or a name to the
definitions makes the generator use it without edits here.

*How* ops are aimed comes from what makes VMAs interact: a small region of
neighbouring mappings that almost match, ranges that start and end at earlier
ops' boundaries and cover no, one, two or many VMAs with holes, ranges at the
window's edges, files with contiguous and non-contiguous offsets, hint-less
placement, names bound with ``as``, and forks up to three deep whose
children use every op.  Ops some fields of which need aiming (mmap, mremap,
files, userfaultfd...) have a builder here; any other op is built from its
fields' kinds alone.

Programs that would make the host kernel wait forever for a userfaultfd
handler (a MISSING fault inside a system call, a fork or remap event nobody
reads) are kept rare, not avoided: the runner stops them and they count as
skipped.  Programs are plain JSON-able dicts in the ``vmasim-program/1`` format.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vmasim import constants as C
from vmasim.fuzz.categories import plan_category
from vmasim.fuzz.coverage import PROTS, WIDTH_EDGES, format_items, op_label
from vmasim.program.ops import OP_DEFS, Mmap, OpDef
from vmasim.program.parse import DEFAULT_WINDOW_LENGTH, DEFAULT_WINDOW_START
from vmasim.program.values import (
    MASK64,
    Address,
    Boolean,
    Choice,
    Flags,
    Kind,
    Name,
    Nodes,
    ObjectRef,
    Prot,
    Size,
    Text,
)

PAGE = C.PAGE_SIZE
Doc = dict[str, Any]
Item = tuple[str, str, str]
#: The deepest fork the generator nests (a fork in a child in a child).
MAX_DEPTH = 3
#: Items of the format each program is built around.
FOCUS_PER_PROGRAM = 2
#: Field names that are the length of the op's range (with ``addr``).
_LENGTHS = ("length", "old_length")
#: How often each op is picked for a process body, relative to the others; ops not named here
#: (a new definition, say) get the default weight, so that they are generated without edits.
_WEIGHTS: dict[str, float] = {
    "mmap": 30, "munmap": 12, "mprotect": 14, "touch": 14, "madvise": 12, "mlock": 3, "munlock": 3,
    "mlock2": 3, "mlockall": 1.2, "munlockall": 0.8, "mbind": 6, "set_mempolicy": 1, "mseal": 2.5,
    "mremap": 14, "sbrk": 5, "memfd": 1.5, "file": 1.5, "open": 1.5, "dup": 1, "ftruncate": 1.5, "close": 1,
    "userfaultfd": 1.5, "uffd_register": 4, "uffd_unregister": 2, "prctl/set_vma_anon_name": 1.5,
    "prctl/set_memory_merge": 1, "fork": 4, "pad": 0.3,
}
_DEFAULT_WEIGHT = 3.0
_PROTS_USUAL = ("rw", "rw", "rw", "rw", "r", "r", "none", "none", "rwx", "w", "x", "rx")
# Advice that may not reach beyond the program's own mappings: a huge range of it would discard or
# hide the runner's stack (the only advice used with lengths at the argument-width edges).
_HARMLESS_ADVICE = ("normal", "random", "sequential", "hugepage", "nohugepage", "dontdump", "dodump", "cold",
                    "mergeable", "unmergeable", "keeponfork")
_MMAP_FLAGS_KIND = Mmap.kinds()["flags"]
# Raw values never generated for any field: memory-failure injection advice, which a privileged runner
# would carry out on the host's memory.
_NEVER_RAW = frozenset({C.MADV_HWPOISON, C.MADV_SOFT_OFFLINE})
# Which userfaultfd features make which later ops wait for a handler (the runner stops those).
_EVENT_HAZARDS = {"event_fork": "fork", "event_remap": "remap", "event_unmap": "unmap", "event_remove": "remove"}


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


def edge_value(edge: str, base: int, rng: random.Random) -> int:
    """A raw register value at an argument-width edge that keeps ``base`` in the bits below it.

    ``2**32+k`` and ``2**63+k`` read as ``base`` once truncated to 32 bits;
    ``2**31`` sets the sign bit of a 32-bit int; ``-1`` is all ones (written
    as ``-1`` or as 2**64 - 1, both of which the format takes).
    """
    base &= 0x7FFFFFFF
    if edge == "2**31":
        return base | (1 << 31)
    if edge == "2**32+k":
        return base | (1 << (32 + rng.randrange(31)))
    if edge == "2**63+k":
        return base | (1 << 63)
    return -1 if rng.random() < 0.5 else MASK64


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
    """What the generator knows (approximately) about one process so far; only used to aim ops."""

    region: int  # pages
    base_off: int  # bytes from W
    mapped: list[bool]
    points: list[int]
    bound: dict[str, int] = field(default_factory=dict)  # address name -> region page (FIXED-style mmaps)
    floating: list[_Floating] = field(default_factory=list)
    files: list[_FileInfo] = field(default_factory=list)
    uffds: dict[str, int] = field(default_factory=dict)  # open userfaultfds and their features
    objects: dict[str, str] = field(default_factory=dict)  # every object name bound, and its kind
    hazards: set[str] = field(default_factory=set)  # what would make the kernel wait for a uffd handler
    window_start: int = DEFAULT_WINDOW_START
    walls: bool = True
    ksm: bool = False  # PR_SET_MEMORY_MERGE is on
    last: tuple[str, Any, int | None] | None = None  # the last range an op was aimed at

    def clone(self) -> _State:
        return copy.deepcopy(self)

    @property
    def at_top(self) -> bool:
        """Whether the region sits at the window's end (right below the runner's walls)."""
        return self.base_off > 0


class ProgramGenerator:
    """Generates one program from a seeded random source; see :func:`generate_program`."""

    def __init__(self, rng: random.Random, ops: frozenset[str], category: str, focus: list[Item] | None = None
                 ) -> None:
        self.rng = rng
        self.allowed = ops
        self.category = category
        self.counter = 0
        self.defs = [cls for cls in OP_DEFS if cls.op_name() in ops]
        self.by_label = {op_label(cls): cls for cls in self.defs}
        self.focus = list(focus or [])

    # -- small helpers
    def uid(self, prefix: str) -> str:
        """A fresh name with ``prefix`` (names are unique within a program)."""
        self.counter += 1
        return f"{prefix}{self.counter}"

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.rng.random() < p

    def can(self, *ops: str) -> bool:
        """Whether every op in ``ops`` may be generated (the category allows it)."""
        return all(op in self.allowed for op in ops)

    def at(self, st: _State, page: int, extra: int = 0) -> str:
        """The address of region page ``page``, sometimes written relative to a name bound there earlier."""
        if st.bound and self.chance(0.3):
            name = self.rng.choice(sorted(st.bound))
            return _addr_text(name, (page - st.bound[name]) * PAGE + extra)
        return _addr_text("W", st.base_off + page * PAGE + extra)

    def mark(self, st: _State, start: int, n: int, mapped: bool | None = None) -> None:
        """Record the boundaries of a range just changed, so later ops aim at them."""
        for p in (start, start + n):
            if 0 <= p <= st.region and p not in st.points:
                st.points.append(p)
        if mapped is not None:
            for p in range(max(0, start), min(start + n, st.region)):
                st.mapped[p] = mapped

    def runs(self, st: _State) -> list[tuple[int, int]]:
        """The runs of region pages the generator believes mapped."""
        out: list[tuple[int, int]] = []
        p = 0
        while p < st.region:
            if st.mapped[p]:
                q = p
                while q < st.region and st.mapped[q]:
                    q += 1
                out.append((p, q))
                p = q
            else:
                p += 1
        return out

    def free_range(self, st: _State, n: int) -> int | None:
        """A start page of ``n`` unmapped pages (as far as the generator knows), preferring ones next to mappings."""
        cands = [s for s in range(st.region - n + 1) if not any(st.mapped[s : s + n])]
        if not cands:
            return None
        near = [s for s in cands if (s > 0 and st.mapped[s - 1]) or (s + n < st.region and st.mapped[s + n])]
        return self.rng.choice(near if near and self.chance(0.8) else cands)

    # -- ranges
    def pick_range(self, st: _State, max_len: int = 12) -> tuple[int, int]:
        """A page range of the region: at earlier boundaries, inside a mapped run, over a hole, or wide.

        The mix gives ranges over no VMA, one, two and many (with holes between).
        """
        r, rng = st.region, self.rng
        how = rng.random()
        runs = self.runs(st)
        if how < 0.2 and runs:
            lo, hi = rng.choice(runs)  # inside a mapped run (one VMA, or neighbours that did not merge)
            start = rng.randrange(lo, hi)
            end = rng.randint(start + 1, min(hi, start + max_len))
            if self.chance(0.15):
                end = min(end + 1, r)  # spill into the hole after the run
            return start, end - start
        if how < 0.3:
            start, end = 0, r  # the whole region: many VMAs with holes
            if self.chance(0.5):
                start = rng.randrange(r)
            return start, end - start
        if how < 0.38:
            free = [p for p in range(r) if not st.mapped[p]]
            if free:  # a hole (no VMA at all, or one across the hole's edge)
                start = rng.choice(free)
                end = start + 1
                while end < r and not st.mapped[end] and self.chance(0.7):
                    end += 1
                return start, end - start
        if st.points and self.chance(0.7):
            start = rng.choice(st.points) + rng.choice((-1, 0, 0, 0, 1))
        else:
            start = rng.randrange(r)
        start = min(max(start, 0), r - 1)
        ends = [p for p in st.points if start < p <= r]
        if ends and self.chance(0.5):
            end = rng.choice(ends) + rng.choice((0, 0, 0, 1, -1))
        else:
            end = start + rng.randint(1, max(1, min(max_len, r - start)))
        end = min(max(end, start + 1), r)
        return start, end - start

    def target(self, st: _State, max_len: int = 12, *, edge: str | None = None) -> tuple[str, Any, int | None]:
        """An op's range: its ``addr`` and ``length`` (JSON values) and the region page it starts at, if any.

        Mostly region ranges (see :meth:`pick_range`); sometimes a range of a
        hint-less mapping, or one at the window's edge (starting below the
        window's start, or ending exactly at its end).  With ``edge`` the
        length is at that argument-width edge, placed so that it stays clear
        of the runner's walls: 2**31 and 2**32+k bytes end inside the region,
        2**63+k starts above the user address space, and all ones (which
        page-aligns to 0) starts in the region.
        """
        rng = self.rng
        if edge is not None:
            start, n = self.pick_range(st, max_len)
            if edge in ("2**31", "2**32+k"):
                length = edge_value(edge, 0, rng) + rng.choice((0, 0, PAGE, 1))
                end = st.window_start + st.base_off + (start + n) * PAGE
                return hex(end - length), length, None
            if edge == "2**63+k":
                return hex(C.TASK_SIZE + PAGE * rng.choice((1, 1, 16))), edge_value(edge, n * PAGE, rng), None
            return self.at(st, start), edge_value(edge, 0, rng), start
        if st.last is not None and self.chance(0.1):
            return st.last  # the same range again: what is already so, and undoing what was done
        picked = self._target(st, max_len)
        st.last = picked
        return picked

    def _target(self, st: _State, max_len: int) -> tuple[str, Any, int | None]:
        rng = self.rng
        if st.floating and self.chance(0.15):
            fl = rng.choice(st.floating)
            off = rng.randrange(min(fl.pages, 64))
            # Never past the mapping's end: a hint-less mapping may end at the window's end, and the
            # walls above it are the runner's, not the program's.
            n = rng.randint(1, max(1, min(max_len, fl.pages - off)))
            return _addr_text(fl.name, off * PAGE), size_text(n * PAGE), None
        start, n = self.pick_range(st, max_len)
        if self.chance(0.03):
            return self.at(st, start), 0, None  # an empty range: most calls check it first
        if self.chance(0.06):
            if st.at_top:
                # Up to the window's last byte, never past it (the walls start there).
                n = st.region - start
            else:
                below = rng.randint(1, 4)  # from below the window's start into the region
                return f"W-{below * PAGE:#x}", size_text((below + start + n) * PAGE), None
        return self.at(st, start), size_text(n * PAGE), start

    # -- programs
    def program(self) -> Doc:
        """A whole program: a prelude that builds a layout, then a random mix of interacting ops."""
        rng = self.rng
        region = rng.choice((16, 16, 24, 32, 32, 48, 64))
        # Near the window's top the region is where hint-less mmaps land (walls are above it), so
        # placement interacts with the FIXED mappings; near the start, ranges can begin below the window.
        top = self.chance(0.35 if self.category != "lifecycle" else 0.6)
        doc: Doc = {"format": "vmasim-program/1"}
        window_start, window_length = DEFAULT_WINDOW_START, DEFAULT_WINDOW_LENGTH
        if self.chance(0.05):
            # Another window: elsewhere in the address space, or smaller (hint-less mappings then land
            # right above the region).
            window_start = rng.choice((window_start, 0x100000000000, 0x7F0000000000))
            window_length = rng.choice((16 << 20, 1 << 30, window_length))
            doc["window"] = {"start": hex(window_start), "length": size_text(window_length)}
        base_off = window_length - region * PAGE if top else 0
        st = _State(region, base_off, [False] * region, [0, region], window_start=window_start)
        if self.chance(0.03):
            # Without walls the process's own layout decides placement: such programs place nothing
            # themselves (no hint-less mmap, no move to a place of the kernel's choosing).
            doc["walls"] = st.walls = False
        ops: list[Doc] = []
        if self.can("pad") and self.chance(0.03 if self.category == "core" else 0.06):
            ops += self.build("pad", st, {}, 0)
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            ops += self.new_file(st)
        for _ in range(rng.randint(1, 3)):
            ops += self.mmap_fixed(st, {}, prelude=True)
        ops += self.body(st, rng.randint(3, 16), 0, self.focus)
        doc["ops"] = ops
        return doc

    def body(self, st: _State, n: int, depth: int, focus: list[Item]) -> list[Doc]:
        """``n`` random ops for a process (``depth`` > 0 inside a fork child), plus one op per focus item."""
        labels = [label for label in self.by_label if label != "fork" or depth < MAX_DEPTH]
        # Children fork more often than their parents, so that forks nest the whole way down.
        weights = [_WEIGHTS.get(label, _DEFAULT_WEIGHT) * (1 + 3 * depth if label == "fork" else 1)
                   for label in labels]
        plan: list[tuple[str, dict[str, str]]] = [(rng_label, {}) for rng_label in
                                                  self.rng.choices(labels, weights, k=n)] if labels else []
        for label, fld, item in focus:
            plan.insert(self.rng.randint(0, len(plan)), (label, {fld: item}))
        out: list[Doc] = []
        for label, want in plan:
            out += self.build(label, st, want, depth)
        return out

    def build(self, label: str, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """The ops for one op of definition ``label`` (with setup ops it needs), with the wanted items."""
        cls = self.by_label.get(label)
        if cls is None:
            return []
        builder: Callable[[_State, dict[str, str], int], list[Doc]] | None = getattr(
            self, "op_" + label.replace("/", "_"), None)
        if builder is not None:
            return builder(st, want, depth)
        return self.generic(cls, st, want)

    # -- the generic builder: every field from its kind ------------------------------------------------
    def value(self, kind: Kind, item: str | None, base: Any = None) -> Any:
        """A JSON value for a field of ``kind``: the wanted item, else ``base``, else one drawn at random."""
        rng = self.rng
        if item is not None and item.startswith("raw:"):
            bits = 0
            if base is not None and not isinstance(kind, (Address, Size)):
                try:
                    bits = int(kind.parse(base) or 0)
                except (ValueError, TypeError):
                    bits = 0
            return edge_value(item[4:], bits, rng)
        if isinstance(kind, Flags):
            if item is not None:
                return [] if item == "[]" else item.split("|")
            if base is not None:
                return base
            names = list(kind.table)
            return rng.sample(names, min(len(names), rng.choice((0, 1, 1, 2)))) if names else []
        if isinstance(kind, Choice):
            return item if item is not None else base if base is not None else rng.choice(list(kind.table))
        if isinstance(kind, Prot):
            return item if item is not None else base if base is not None else rng.choice(_PROTS_USUAL)
        if isinstance(kind, Boolean):
            return item == "true" if item is not None else base if base is not None else self.chance(0.6)
        return base

    def fill(self, cls: type[OpDef], doc: Doc, want: dict[str, str]) -> Doc:
        """Put the wanted items into ``doc`` (a built op), and now and then a random value of another field."""
        kinds = cls.kinds()
        for name, item in want.items():
            kind = kinds.get(name)
            if kind is not None:
                doc[name] = self.value(kind, item, doc.get(name))
        valued = sorted(name for name, kind in kinds.items() if isinstance(kind, (Flags, Choice, Prot, Boolean)))
        if not want and valued and self.chance(0.06):
            # A value from anywhere in the field's kind: a name the builder would not pick, a raw edge, or
            # raw bits the format has no name for.
            name = self.rng.choice(valued)
            kind = kinds[name]
            if isinstance(kind, (Flags, Choice, Prot)) and self.chance(0.3):
                doc[name] = self.random_raw(kind, doc.get(name))
            elif isinstance(kind, (Flags, Choice, Prot, Boolean)):
                doc[name] = self.value(kind, self.random_item(kind), doc.get(name))
        return doc

    def random_raw(self, kind: Kind, base: Any) -> int:
        """A raw value near ``base`` with one more bit, or a small number: unknown flags, advice, modes."""
        try:
            bits = int(kind.parse(base) or 0) if base is not None else 0
        except (ValueError, TypeError):
            bits = 0
        value = self.rng.randrange(128) if self.chance(0.5) else bits | (1 << self.rng.randrange(32))
        # MADV_HWPOISON and MADV_SOFT_OFFLINE (100, 101) would inject memory failures into the host
        # (the runner is privileged): never generated.
        if value in _NEVER_RAW:
            return 0
        if kind is _MMAP_FLAGS_KIND and value & C.MAP_HUGETLB:
            # Hugetlb mappings are not modelled (see the README's limits): MAP_HUGETLB is generated only
            # where it fails (without MAP_NORESERVE there are no huge pages to reserve).
            value &= ~C.MAP_NORESERVE
        return value

    def random_item(self, kind: Kind) -> str | None:
        """An item of ``kind`` drawn at random (names, protections; width edges more rarely)."""
        rng = self.rng
        if isinstance(kind, Boolean):
            return rng.choice(("true", "false"))
        if self.chance(0.25) and not isinstance(kind, Boolean):
            return "raw:" + rng.choice(list(WIDTH_EDGES))
        if isinstance(kind, Flags):
            names = list(kind.table)
            return "|".join(rng.sample(names, min(len(names), 2))) if names else "[]"
        if isinstance(kind, Choice):
            return rng.choice(list(kind.table))
        if isinstance(kind, Prot):
            return rng.choice(PROTS)
        return None

    def generic(self, cls: type[OpDef], st: _State, want: dict[str, str]) -> list[Doc]:
        """An op built from its fields' kinds alone: ranges in the region, existing objects, fresh names."""
        doc: Doc = {"op": cls.op_name()}
        if "option" in cls.model_fields:
            doc["option"] = op_label(cls).split("/", 1)[1]
        kinds = cls.kinds()
        pre: list[Doc] = []
        length_field = next((f for f in _LENGTHS if f in kinds), None)
        if "addr" in kinds and length_field is not None:
            edge = want.get(length_field, "")
            addr, length, start = self.target(st, edge=edge[4:] if edge.startswith("raw:") else None)
            doc["addr"], doc[length_field] = addr, length
            if start is not None:
                self.mark(st, start, 1)
        for name, kind in kinds.items():
            if name in doc or name == "as":
                continue
            required = name in cls.required()
            if isinstance(kind, ObjectRef):
                names = [n for n, k in st.objects.items() if k in kind.kinds]
                if not names and required:
                    # Create what the op needs first.
                    if "file" in kind.kinds:
                        pre += self.new_file(st)
                    elif "userfaultfd" in kind.kinds and self.can("userfaultfd"):
                        pre += self.op_userfaultfd(st, {}, 0)
                    names = [n for n, k in st.objects.items() if k in kind.kinds]
                if not names:
                    if required:
                        return pre
                    continue
                doc[name] = self.rng.choice(names)
            elif isinstance(kind, Name):
                doc[name] = self.uid("o")
            elif isinstance(kind, Address):
                if kind.nullable and self.chance(0.5):
                    doc[name] = None
                else:
                    doc[name] = self.at(st, self.rng.randrange(st.region))
            elif isinstance(kind, Size):
                lo = kind.minimum if kind.minimum is not None else 0
                hi = kind.maximum if kind.maximum is not None else st.region
                doc[name] = size_text(self.rng.randint(lo, min(hi, st.region)) * (PAGE if kind.maximum is None
                                                                                 else 1)) or 0
            elif isinstance(kind, Nodes):
                doc[name] = self.nodes()
            elif isinstance(kind, Text):
                doc[name] = self.rng.choice(("buf", "a b", None, "x$y", "y" * 80)) if kind.nullable else "buf"
            elif required or self.chance(0.5):
                doc[name] = self.value(kind, None)
        for name, item in want.items():
            wanted_kind = kinds.get(name)
            if wanted_kind is None or (name in _LENGTHS and length_field == name):
                continue  # the range's length was placed with its address above
            kind = wanted_kind
            if isinstance(kind, Address) and item.startswith("raw:"):
                # An address far from the window: low memory, non-canonical, or all ones (unaligned).
                edge = item[4:]
                doc[name] = edge_value(edge, 0, self.rng) & ~(PAGE - 1) if edge != "-1" else -1
            elif isinstance(kind, Size) and item.startswith("raw:"):
                doc[name] = edge_value(item[4:], 0, self.rng)
            else:
                doc[name] = self.value(kind, item, doc.get(name))
        if not want:
            self.fill(cls, doc, {})
        creates = cls.creates
        if creates is not None and isinstance(doc.get("name"), str):
            st.objects[doc["name"]] = creates if creates != "of" else st.objects.get(str(doc.get("of")), "file")
        return [*pre, doc]

    def nodes(self) -> Any:
        """A node list: usually node 0 (the one node most hosts have), sometimes others or none."""
        return self.rng.choice(([0], [0], [0], [0], [1], [0, 1], "0-63", []))

    # -- core ops ------------------------------------------------------------------------------------------
    def new_file(self, st: _State, want: dict[str, str] | None = None, kind: str | None = None) -> list[Doc]:
        """An op creating a memfd or a regular file, or nothing when neither is allowed."""
        kinds = [k for k in ("memfd", "file") if self.can(k)]
        if kind is not None:
            kinds = [kind] if self.can(kind) else []
        if not kinds:
            return []
        kind = self.rng.choice(kinds)
        pages = self.rng.randint(1, st.region + 4)
        info = _FileInfo(self.uid("f"), pages, kind, True, self.rng.choice((0, 0, 0, 1, 2)))
        st.files.append(info)
        st.objects[info.name] = "file"
        doc: Doc = {"op": kind, "name": info.name, "size": size_text(pages * PAGE)}
        if want and "size" in want:
            doc["size"] = edge_value(want["size"][4:], pages * PAGE, self.rng)
            info.pages = 1 << 20  # large (or invalid): the generator stops caring about its end
        return [doc]

    def op_memfd(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A memfd."""
        return self.new_file(st, want, "memfd")

    def op_file(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A regular file."""
        return self.new_file(st, want, "file")

    def anon_flags(self, fixed: str | None) -> list[str]:
        """mmap flags for anonymous memory: private or shared, sometimes with an extra flag."""
        rng = self.rng
        flags = ["shared" if self.chance(0.18) else "private", "anonymous"]
        if fixed:
            flags.append(fixed)
        for flag, p in (("noreserve", 0.15), ("populate", 0.08), ("growsdown", 0.06), ("stack", 0.06),
                        ("locked", 0.02), ("nonblock", 0.02)):
            if self.chance(p):
                flags.append(flag)
        if self.chance(0.03):
            flags[0] = rng.choice(("shared_validate", "droppable"))
        return flags

    def _complete_mmap_flags(self, forced: list[str], base: list[str]) -> list[str]:
        # The wanted names, made into a call that can succeed: a mapping type, the anonymous flag and
        # the fixed-ness of the base call are added unless the wanted names bring their own.
        if not forced or self.chance(0.15):
            return forced  # sometimes just as wanted, however incomplete
        out = list(forced)
        types = {"private", "shared", "shared_validate", "droppable"}
        if not types & set(out):
            out += [n for n in base if n in types]
        if "anonymous" in base and "anonymous" not in out:
            out.append("anonymous")
        if not {"fixed", "fixed_noreplace"} & set(out):
            out += [n for n in base if n in ("fixed", "fixed_noreplace")]
        return out

    def _mmap_want(self, op: Doc, want: dict[str, str], st: _State) -> Doc:
        kinds = Mmap.kinds()
        for name, item in want.items():
            if name == "flags" and not item.startswith("raw:"):
                forced = [] if item == "[]" else item.split("|")
                op["flags"] = self._complete_mmap_flags(forced, op["flags"])
            elif name == "length" and item.startswith("raw:"):
                edge = item[4:]
                if edge in ("2**31", "2**32+k") and op.get("addr") is not None:
                    # A FIXED mapping this large ends where it would have ended, clear of the walls.
                    _addr, op["length"], _ = self.target(st, edge=edge)
                    op["addr"] = _addr
                else:
                    op["length"] = edge_value(edge, 0, self.rng)
            elif name == "offset" and item.startswith("raw:"):
                op["offset"] = edge_value(item[4:], 0, self.rng)
                if item == "raw:2**63+k" and self.chance(0.5):
                    op["offset"] = MASK64 & ~(PAGE - 1)  # the offset plus the length wraps around
            elif name in kinds:
                op[name] = self.value(kinds[name], item, op.get(name))
        return op

    def op_mmap(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An mmap: FIXED-style next to or over the region's mappings, of a file, or without a hint."""
        if "fd" in want or "offset" in want or (not ({"addr"} & set(want)) and self.chance(0.25)):
            return self.mmap_file(st, want)
        if st.walls and ("addr" in want or self.chance(0.2)):
            return self.mmap_hintless(st, want)
        return self.mmap_fixed(st, want)

    def mmap_fixed(self, st: _State, want: dict[str, str], prelude: bool = False) -> list[Doc]:
        """A FIXED or FIXED_NOREPLACE anonymous mmap next to or over existing mappings."""
        n = self.rng.randint(1, min(8, st.region))
        start = self.free_range(st, n)
        if start is None or (not prelude and self.chance(0.3)):
            start, n = self.pick_range(st, 8)
            fixed = "fixed" if self.chance(0.7) else "fixed_noreplace"
        else:
            fixed = "fixed_noreplace" if self.chance(0.8) else "fixed"
        op: Doc = {"op": "mmap", "addr": self.at(st, start), "length": size_text(n * PAGE) if self.chance(0.98) else 0,
                   "prot": self.rng.choice(_PROTS_USUAL), "flags": self.anon_flags(fixed)}
        if self.chance(0.4):
            name = self.uid("m")
            op["as"] = name
            st.bound[name] = start
        self.mark(st, start, n, True)
        return [self._mmap_want(op, want, st) if want else self.fill(Mmap, op, {})]

    def mmap_file(self, st: _State, want: dict[str, str]) -> list[Doc]:
        """A file mapping whose offset continues a neighbour's (so they may merge) or does not."""
        out: list[Doc] = []
        objs = [n for n, k in st.objects.items() if k == "userfaultfd"]
        if "fd" in want and not objs and self.can("userfaultfd"):
            # Mapping something that cannot be mapped: a userfaultfd (read-only, without mmap).
            out += self.op_userfaultfd(st, {}, 0)
            objs = [n for n, k in st.objects.items() if k == "userfaultfd"]
        if not st.files or self.chance(0.12):
            out += self.new_file(st)
        if not st.files and not objs:
            return out + self.mmap_fixed(st, {k: v for k, v in want.items() if k != "offset"})
        start, n = self.pick_range(st, 8)
        shared = self.chance(0.55)
        flags = ["shared" if shared else "private", "fixed" if self.chance(0.4) else "fixed_noreplace"]
        if self.chance(0.1):
            flags.append("populate")
        if self.chance(0.05):
            flags.append("noreserve")
        op: Doc = {"op": "mmap", "addr": self.at(st, start), "length": size_text(n * PAGE),
                   "prot": self.rng.choice(("rw", "rw", "r", "r", "none", "rx")), "flags": flags}
        if objs and ("fd" in want or not st.files or self.chance(0.08)):
            op["fd"] = self.rng.choice(objs)
            op["offset"] = 0
        else:
            f = self.rng.choice(st.files)
            # Usually contiguous with any mapping of f laid out the same way (so they may merge).
            fpage = max(0, f.base + start) if self.chance(0.65) else self.rng.randint(0, f.pages + 2)
            op["fd"] = f.name
            op["offset"] = size_text(fpage * PAGE) if fpage else 0
        if self.chance(0.3):
            name = self.uid("m")
            op["as"] = name
            st.bound[name] = start
        self.mark(st, start, n, True)
        want = {k: v for k, v in want.items() if k != "fd"}
        out.append(self._mmap_want(op, want, st) if want else self.fill(Mmap, op, {}))
        return out

    def mmap_hintless(self, st: _State, want: dict[str, str]) -> list[Doc]:
        """An mmap without a hint (placed top-down from the window's end), or with one that may be taken."""
        rng = self.rng
        nbytes = rng.choice((2, 2, 4, 6)) << 20 if self.chance(0.15) else rng.randint(1, 16) * PAGE
        name = self.uid("h")
        op: Doc = {"op": "mmap", "addr": None, "length": size_text(nbytes), "prot": rng.choice(_PROTS_USUAL)}
        if st.files and self.chance(0.25):
            f = rng.choice(st.files)
            op["flags"] = ["shared" if self.chance(0.5) else "private"]
            op["fd"] = f.name
            op["offset"] = 0
        else:
            op["flags"] = self.anon_flags(None)
        if self.chance(0.1):
            op["addr"] = self.at(st, rng.randrange(st.region), rng.choice((0, 0, 0x123)))
        addr_item = want.get("addr", "")
        if addr_item.startswith("raw:"):
            edge = addr_item[4:]
            # An address far from the window: low memory (2**31, 2**32+k), non-canonical, or all ones.
            op["addr"] = edge_value(edge, 0, rng) & ~(PAGE - 1) if edge != "-1" else edge_value(edge, 0, rng)
            if self.chance(0.5):
                op["flags"] = [*op["flags"], rng.choice(("fixed", "fixed_noreplace"))]
        op["as"] = name
        st.floating.append(_Floating(name, max(1, nbytes // PAGE)))
        want = {k: v for k, v in want.items() if k != "addr"}
        op = self._mmap_want(op, want, st) if want else self.fill(Mmap, op, {})
        try:
            bits = int(_MMAP_FLAGS_KIND.parse(op.get("flags")))
        except ValueError:
            bits = 0
        at_zero = op.get("addr") is None and bits & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE)
        if at_zero and (not isinstance(op["length"], str) or not op["length"].endswith("K")):
            # A fixed mapping at address 0 (which privilege allows) must stay below the runner's
            # executable at 4 MiB: over it, the runner's process dies and the program is skipped.
            op["length"] = size_text(PAGE * self.rng.randint(1, 16))
        return [op]

    def op_munmap(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A munmap (its range, sometimes invalid)."""
        ops = self.generic(self.by_label["munmap"], st, want)
        self._unmark(st, ops[-1])
        return ops

    def _unmark(self, st: _State, op: Doc) -> None:
        # The generator's picture of the region after an unmap of a region range.
        addr = op.get("addr")
        length = op.get("length")
        if isinstance(addr, str) and addr.startswith("W") and isinstance(length, str) and length.endswith("K"):
            off = int(addr[2:], 16) if len(addr) > 1 and addr[1] == "+" else 0 if addr == "W" else None
            if off is not None and off >= st.base_off:
                start = (off - st.base_off) // PAGE
                self.mark(st, start, int(length[:-1]) // 4, False)

    def op_mprotect(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An mprotect across nearby boundaries (sometimes invalid)."""
        ops = self.generic(self.by_label["mprotect"], st, want)
        op = ops[-1]
        if "prot" not in want:
            op["prot"] = self.rng.choice(_PROTS_USUAL)
        if "prot_flags" not in want:
            op.pop("prot_flags", None)
            if self.chance(0.04):
                op["prot_flags"] = ["growsdown"]
        return ops

    def op_touch(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A read or write access of a range."""
        if not want and "missing" in st.hazards and self.chance(0.85):
            return []  # a MISSING fault would wait for a handler (the runner stops it): keep rare
        ops = self.generic(self.by_label["touch"], st, want)
        if "write" not in want:
            ops[-1].pop("write", None)
            if self.chance(0.35):
                ops[-1]["write"] = False
        return ops

    # -- attributes -------------------------------------------------------------------------------------
    def _populates(self, st: _State, want: dict[str, str]) -> bool:
        """Whether to leave out an op that faults pages in: with a MISSING registration it may wait forever."""
        return not want and "missing" in st.hazards and self.chance(0.85)

    def op_madvise(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A madvise: flag-changing advice more often than the rest."""
        ops = self.generic(self.by_label["madvise"], st, want)
        op = ops[-1]
        if "advice" not in want:
            if any(w.startswith("raw:") for w in want.values()):
                op["advice"] = self.rng.choice(_HARMLESS_ADVICE)
            elif self.chance(0.55):
                op["advice"] = self.rng.choice((*_HARMLESS_ADVICE, "dontfork", "dofork", "wipeonfork"))
            if op["advice"] in ("populate_read", "populate_write", "willneed") and self._populates(st, want):
                op["advice"] = "normal"
            if op["advice"] in ("dontneed", "remove", "free") and "remove" in st.hazards and self.chance(0.85):
                op["advice"] = "normal"
        return ops

    def op_mlock(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An mlock."""
        return [] if self._populates(st, want) else self.generic(self.by_label["mlock"], st, want)

    def op_mlock2(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An mlock2, usually with MLOCK_ONFAULT."""
        if self._populates(st, want):
            return []
        ops = self.generic(self.by_label["mlock2"], st, want)
        if "flags" not in want:
            ops[-1]["flags"] = self.rng.choice((["onfault"], ["onfault"], []))
        return ops

    def op_mlockall(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An mlockall (usually with flags that make sense together)."""
        if self._populates(st, want):
            return []
        flags: Any = self.rng.choice((["current"], ["future"], ["current", "future"], ["future", "onfault"],
                                      ["current", "onfault"]))
        return [self.fill(self.by_label["mlockall"], {"op": "mlockall", "flags": flags}, want)]

    def op_mbind(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An mbind: nodes where the mode needs them, mode flags and flags now and then."""
        ops = self.generic(self.by_label["mbind"], st, want)
        op = ops[-1]
        mode = op.get("mode")
        if "nodes" in op and isinstance(mode, str) and mode in ("default", "local") and self.chance(0.9):
            del op["nodes"]
        for name in ("mode_flags", "flags"):
            if name not in want and self.chance(0.8):
                op.pop(name, None)
        return ops

    def op_set_mempolicy(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A set_mempolicy."""
        return self.op_mbind_like("set_mempolicy", st, want)

    def op_mbind_like(self, label: str, st: _State, want: dict[str, str]) -> list[Doc]:
        """A policy op built generically, with nodes only where the mode takes them."""
        ops = self.generic(self.by_label[label], st, want)
        op = ops[-1]
        if op.get("mode") in ("default", "local") and self.chance(0.9):
            op.pop("nodes", None)
        if "mode_flags" not in want and self.chance(0.8):
            op.pop("mode_flags", None)
        return ops

    def op_mseal(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An mseal (flags 0 unless wanted)."""
        ops = self.generic(self.by_label["mseal"], st, want)
        if "flags" not in want:
            ops[-1].pop("flags", None)
        return ops

    def op_userfaultfd(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A userfaultfd, usually without features (SIGBUS now and then)."""
        name = self.uid("u")
        doc: Doc = {"op": "userfaultfd", "name": name}
        if "features" in want:
            doc = self.fill(self.by_label["userfaultfd"], doc, want)
        elif self.chance(0.3):
            doc["features"] = self.rng.choice((["sigbus"], ["sigbus"], ["event_remap"], ["missing_shmem"],
                                               ["minor_shmem", "sigbus"], ["wp_async"], ["event_unmap"]))
        features = doc.get("features", [])
        names = set(features) if isinstance(features, list) else set()
        st.uffds[name] = 1 if "sigbus" in names else 0
        st.objects[name] = "userfaultfd"
        for feature, hazard in _EVENT_HAZARDS.items():
            if feature in names:
                st.hazards.add(hazard)
        return [doc]

    def op_uffd_register(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A registration of a range (opening a userfaultfd first when there is none)."""
        pre: list[Doc] = []
        if not st.uffds and self.can("userfaultfd"):
            pre = self.op_userfaultfd(st, {}, depth)
        ops = self.generic(self.by_label["uffd_register"], st, want)
        op = ops[-1]
        if op.get("op") != "uffd_register":
            return pre + ops
        if "mode" not in want:
            op["mode"] = self.rng.choice(("missing", "wp", ["missing", "wp"], "minor", "missing"))
        mode = op["mode"]
        uffd = str(op.get("uffd"))
        if ("missing" in mode if isinstance(mode, (list, str)) else True) and not st.uffds.get(uffd):
            st.hazards.add("missing")
        return pre + ops

    def op_close(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A close of a file or a userfaultfd."""
        ops = self.generic(self.by_label["close"], st, want)
        closed = ops[-1].get("fd")
        if ops[-1].get("op") == "close" and isinstance(closed, str):
            st.uffds.pop(closed, None)
            st.files = [f for f in st.files if f.name != closed]
        return ops

    def op_ftruncate(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An ftruncate of a file to a size around the region's."""
        pre = [] if st.files else self.new_file(st)
        if not st.files:
            return pre
        f = self.rng.choice(st.files)
        f.pages = self.rng.randint(0, st.region + 4)
        doc: Doc = {"op": "ftruncate", "fd": f.name, "size": size_text(f.pages * PAGE) if f.pages else 0}
        if "size" in want:
            doc["size"] = edge_value(want["size"][4:], f.pages * PAGE, self.rng)
            f.pages = 1 << 20
        return [*pre, doc]

    def op_open(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A second open of a file, read-only or read-write."""
        if not st.files:
            return self.new_file(st)
        f = self.rng.choice(st.files)
        mode = want.get("mode") or ("rw" if self.chance(0.3) else "r")
        info = _FileInfo(self.uid("o"), f.pages, f.kind, mode == "rw", f.base)
        st.files.append(info)
        st.objects[info.name] = "file"
        return [{"op": "open", "name": info.name, "of": f.name, "mode": mode}]

    def op_dup(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A dup of a file (or a userfaultfd)."""
        if st.uffds and self.chance(0.15):
            u = self.rng.choice(sorted(st.uffds))
            name = self.uid("d")
            st.uffds[name] = st.uffds[u]
            st.objects[name] = "userfaultfd"
            return [{"op": "dup", "name": name, "of": u}]
        if not st.files:
            return self.new_file(st)
        f = self.rng.choice(st.files)
        info = _FileInfo(self.uid("d"), f.pages, f.kind, f.writable, f.base)
        st.files.append(info)
        st.objects[info.name] = "file"
        return [{"op": "dup", "name": info.name, "of": f.name}]

    def op_prctl_set_memory_merge(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """KSM on or off."""
        # Mostly turning it off once it is on, and on otherwise.
        doc: Doc = {"op": "prctl", "option": "set_memory_merge", "value": 0 if st.ksm and self.chance(0.7) else 1}
        st.ksm = bool(doc["value"])
        if "value" in want:
            doc["value"] = edge_value(want["value"][4:], 0, self.rng)
        return [doc]

    # -- lifecycle ----------------------------------------------------------------------------------------
    def op_mremap(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An mremap: shrink, grow, move (to a hint, a fixed place, or leaving the source mapped)."""
        rng = self.rng
        if not want and "remap" in st.hazards and self.chance(0.85):
            return []
        old_item = want.get("old_length", "")
        addr, old, start = self.target(st, 8, edge=old_item[4:] if old_item.startswith("raw:") else None)
        n = 0 if not isinstance(old, str) else int(old[:-1]) // 4 if old.endswith("K") else 0
        new_n = max(0, n + rng.choice((-2, -1, 0, 0, 1, 2, 4)))
        op: Doc = {"op": "mremap", "addr": addr, "old_length": old,
                   "new_length": size_text(new_n * PAGE) if new_n else 0}
        r = rng.random()
        if r < 0.2:
            pass  # in place
        elif r < 0.4:
            op["flags"] = ["maymove"]
        elif r < 0.65:
            op["flags"] = ["maymove", "fixed"]
        elif r < 0.8:
            op["flags"] = ["maymove", "dontunmap"]
            op["new_length"] = op["old_length"]
        elif r < 0.93:
            op["flags"] = ["maymove", "fixed", "dontunmap"]
            op["new_length"] = op["old_length"]
        else:
            op["flags"] = rng.choice((["fixed"], ["dontunmap"], ["fixed", "dontunmap"]))
        if not st.walls and "maymove" in op.get("flags", []) and "fixed" not in op["flags"]:
            op["flags"] = ["maymove", "fixed"]  # no placement of the kernel's choosing without walls
        flags_item = want.get("flags")
        if flags_item is not None:
            op["flags"] = self.value(self.by_label["mremap"].kinds()["flags"], flags_item, op.get("flags"))
        flags = op.get("flags")
        names: list[Any] = flags if isinstance(flags, list) else []
        if "fixed" in names or "dontunmap" in names or "new_addr" in want:
            # The whole destination stays in the region: MREMAP_FIXED unmaps whatever it lands on,
            # and above a region at the window's top that would be the runner's walls.
            span = max(new_n, 1)
            dst = rng.randrange(max(1, st.region - span + 1))
            op["new_addr"] = self.at(st, dst)
            if "fixed" in names:
                self.mark(st, dst, span, True)
        new_item = want.get("new_length", "")
        if new_item.startswith("raw:"):
            edge = new_item[4:]
            op["new_length"] = edge_value(edge, 0, rng) + (PAGE if edge in ("2**31", "2**32+k") else 0)
            if "new_addr" in op and edge in ("2**31", "2**32+k"):
                # A large fixed destination ends inside the region, clear of the walls.
                op["new_addr"] = hex(st.window_start + st.base_off + st.region * PAGE - op["new_length"])
        addr_item = want.get("new_addr", "")
        if addr_item.startswith("raw:"):
            edge = addr_item[4:]
            op["new_addr"] = edge_value(edge, 0, rng) & ~(PAGE - 1) if edge != "-1" else -1
        a_item = want.get("addr", "")
        if a_item.startswith("raw:"):
            edge = a_item[4:]
            op["addr"] = edge_value(edge, 0, rng) & ~(PAGE - 1) if edge != "-1" else -1
        if start is not None:
            self.mark(st, start, max(n, 1))
        name = self.uid("r")
        op["as"] = name
        st.floating.append(_Floating(name, max(new_n, 1)))
        return [op]

    def op_sbrk(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """An sbrk of a few pages either way (rarely something large or unaligned)."""
        inc = self.rng.choice((1, 1, 2, 4, 8, -1, -2, 0)) * PAGE
        if self.chance(0.05):
            inc = self.rng.choice((-(1 << 40), 100, 1 << 20))
        if "increment" in want:
            inc = edge_value(want["increment"][4:], PAGE, self.rng)
        return [{"op": "sbrk", "increment": inc}]

    def op_pad(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """Fill the process with VMAs until a few below max_map_count (only at the start of a process)."""
        return [{"op": "pad", "headroom": self.rng.randint(0, 6)}]

    def op_fork(self, st: _State, want: dict[str, str], depth: int) -> list[Doc]:
        """A fork whose child runs a short program of its own (forks nest up to three deep)."""
        if depth >= MAX_DEPTH or ("fork" in st.hazards and self.chance(0.85)):
            return []
        # The child works on a copy of the parent's picture; what it binds stays in the child.
        child_state = st.clone()
        focus: list[Item] = []
        if self.focus and self.chance(0.3):
            focus = [self.rng.choice(self.focus)]
        child = self.body(child_state, self.rng.randint(1, 6), depth + 1, focus)
        return [{"op": "fork", "child": child}]


def category_classes(category: str) -> list[type[OpDef]]:
    """The op definitions programs of ``category`` are made of."""
    allowed = plan_category(category)
    return [cls for cls in OP_DEFS if cls.op_name() in allowed]


def category_items(category: str) -> list[Item]:
    """The items of the format that programs of ``category`` use: those of its ops' definitions."""
    return format_items(category_classes(category))


def generate_program(seed: int, index: int, category: str = "core") -> Doc:
    """Program ``index`` of the campaign ``seed``: a contract program (a plain JSON-able dict).

    Only the ops of ``category`` (and the core ones) are used; the program is
    built around items ``2 * index`` and ``2 * index + 1`` of the category's
    items (:func:`category_items`, rotated by the seed).  The same arguments
    always give the same program.
    """
    rng = random.Random(f"vmasim-fuzz:{seed}:{index}:{category}")
    items = category_items(category)
    offset = random.Random(f"vmasim-fuzz-items:{seed}").randrange(len(items)) if items else 0
    focus = [items[(offset + FOCUS_PER_PROGRAM * index + j) % len(items)] for j in range(FOCUS_PER_PROGRAM)
             ] if items else []
    return ProgramGenerator(rng, plan_category(category), category, focus).program()


def generate_programs(
    seed: int, count: int, category: str = "core", *, start: int = 0
) -> list[Doc]:
    """Programs ``start .. start+count-1`` of the campaign ``seed`` (see :func:`generate_program`)."""
    return [generate_program(seed, start + i, category) for i in range(count)]
