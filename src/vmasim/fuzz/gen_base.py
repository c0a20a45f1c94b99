"""The program generator's base: aiming ops at the region, and building any op from its fields' kinds.

:class:`GeneratorBase` holds what every builder uses: fresh names, chances,
addresses in the region (sometimes relative to bound names), the picture's
bookkeeping, ranges over no, one, two or many VMAs (:meth:`~GeneratorBase.target`),
and the generic builder (:meth:`~GeneratorBase.generic`) that fills every
field of a definition from its kind, so that an op without a builder of its
own is still generated.  The builders of each family of ops are mixins in
:mod:`~vmasim.fuzz.gen_core`, :mod:`~vmasim.fuzz.gen_attrs` and
:mod:`~vmasim.fuzz.gen_lifecycle`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from vmasim import constants as C
from vmasim.fuzz.coverage import PROTS, WIDTH_EDGES, op_label
from vmasim.fuzz.gen_state import (
    LENGTHS,
    MMAP_FLAGS_KIND,
    NEVER_RAW,
    PAGE,
    PROTS_USUAL,
    Doc,
    FileInfo,
    GenState,
    Item,
    addr_text,
    edge_value,
    nudge,
    size_text,
)
from vmasim.program.ops import OpDef
from vmasim.program.values import (
    Address,
    Boolean,
    Choice,
    Flags,
    Kind,
    Name,
    Nodes,
    ObjectRef,
    Prot,
    Ranges,
    Size,
    Text,
)


class GeneratorBase:
    """Helpers and the generic builder shared by every family's builders (see the module's docstring)."""

    rng: random.Random
    allowed: frozenset[str]
    category: str
    counter: int
    defs: list[type[OpDef]]
    by_label: dict[str, type[OpDef]]
    focus: list[Item]

    # -- provided by the program generator and the family mixins
    def body(self, st: GenState, n: int, depth: int, focus: list[Item]) -> list[Doc]:
        """``n`` random ops for a process (see :class:`~vmasim.fuzz.generate.ProgramGenerator`)."""
        raise NotImplementedError

    def mmap_fixed(self, st: GenState, want: dict[str, str], prelude: bool = False) -> list[Doc]:
        """A FIXED-style anonymous mmap in the region (see :class:`~vmasim.fuzz.gen_core.CoreOps`)."""
        raise NotImplementedError

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

    def at(self, st: GenState, page: int, extra: int = 0) -> str:
        """The address of region page ``page``, sometimes written relative to a name bound there earlier."""
        if st.bound and self.chance(0.3):
            name = self.rng.choice(sorted(st.bound))
            return addr_text(name, (page - st.bound[name]) * PAGE + extra)
        return addr_text("W", st.base_off + page * PAGE + extra)

    def mark(self, st: GenState, start: int, n: int, mapped: bool | None = None) -> None:
        """Record the boundaries of a range just changed, so later ops aim at them."""
        for p in (start, start + n):
            if 0 <= p <= st.region and p not in st.points:
                st.points.append(p)
        if mapped is not None:
            for p in range(max(0, start), min(start + n, st.region)):
                st.mapped[p] = mapped

    def runs(self, st: GenState) -> list[tuple[int, int]]:
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

    def free_range(self, st: GenState, n: int) -> int | None:
        """A start page of ``n`` unmapped pages (as far as the generator knows), preferring ones next to mappings."""
        cands = [s for s in range(st.region - n + 1) if not any(st.mapped[s : s + n])]
        if not cands:
            return None
        near = [s for s in cands if (s > 0 and st.mapped[s - 1]) or (s + n < st.region and st.mapped[s + n])]
        return self.rng.choice(near if near and self.chance(0.8) else cands)

    # -- ranges
    def pick_range(self, st: GenState, max_len: int = 12) -> tuple[int, int]:
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

    def target(self, st: GenState, max_len: int = 12, *, edge: str | None = None) -> tuple[str, Any, int | None]:
        """An op's range: its ``addr`` and ``length`` (JSON values) and the region page it starts at, if any.

        Mostly region ranges (see :meth:`pick_range`); sometimes a range of a
        hint-less mapping, or one at the window's edge (starting below the
        window's start, or ending exactly at its end).  With ``edge`` the
        length is at that argument-width edge, placed so that it stays clear
        of the runner's walls and pads: 2**31 and 2**32+k bytes end inside the
        region (k below 2**36, or so large that the start wraps),
        2**63+k starts above the user address space, and all ones (which
        page-aligns to 0) starts in the region.
        """
        rng = self.rng
        if edge is not None:
            start, n = self.pick_range(st, max_len)
            if edge in ("2**31", "2**32+k"):
                # Below 64 GiB, or past the start of the address space (the start wraps: an invalid call), so
                # that a range ending in the region stays clear of the runner's pads (1-page VMAs it maps 64 GiB
                # below the window), its heap and its executable.
                bit = rng.choice((*range(32, 36), *range(47, 63)))
                wide = 1 << bit if edge == "2**32+k" else edge_value(edge, 0, rng)
                length = wide + rng.choice((0, 0, PAGE, 1))
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

    def _target(self, st: GenState, max_len: int) -> tuple[str, Any, int | None]:
        rng = self.rng
        if st.floating and self.chance(0.15):
            fl = rng.choice(st.floating)
            off = rng.randrange(min(fl.pages, 64))
            # Never past the mapping's end: a hint-less mapping may end at the window's end, and the
            # walls above it are the runner's, not the program's.
            n = rng.randint(1, max(1, min(max_len, fl.pages - off)))
            return addr_text(fl.name, off * PAGE), size_text(n * PAGE), None
        if st.heap and self.chance(0.1):
            return self.heap_range(st, max_len)
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

    def heap_at(self, st: GenState, off: int) -> str:
        """The address ``off`` bytes above the initial break, written relative to a name bound in the heap."""
        name = self.rng.choice(sorted(st.heap))
        return addr_text(name, off - st.heap[name])

    def heap_range(self, st: GenState, max_len: int) -> tuple[str, Any, int | None]:
        """A range of the heap (by the names sbrk and brk bound): inside it, across its top, or just above.

        Never below the initial break: the runner's own data lies there.
        """
        top = max(st.brk, PAGE) // PAGE
        start = self.rng.randrange(top + 1) if self.chance(0.85) else top + self.rng.randint(0, 3)
        n = self.rng.randint(1, max(1, min(max_len, top + 2 - start)))
        return self.heap_at(st, start * PAGE), size_text(n * PAGE), None

    def ranges(self, st: GenState, *, harmless: bool = False) -> list[Doc]:
        """A list of ``{addr, length}`` ranges (process_madvise's iovecs): none, one or a few, in any order.

        With ``harmless`` (advice that changes no page of the runner's), now
        and then a range at an argument-width edge, which the kernel rejects
        or cuts to MAX_RW_COUNT bytes; it ends inside the region, like
        :meth:`target`'s.
        """
        out: list[Doc] = []
        for _ in range(self.rng.choice((0, 1, 1, 1, 2, 2, 3, 4, 8))):
            if harmless and self.chance(0.05):
                addr, length, _ = self.target(st, edge=self.rng.choice(("2**31", "2**32+k", "2**63+k", "-1")))
            else:
                addr, length, start = self.target(st)
                if start is not None:
                    self.mark(st, start, 1)
                if self.chance(0.03):
                    addr = nudge(addr, 0x10)  # unaligned
            out.append({"addr": addr, "length": length})
        return out

    def build(self, label: str, st: GenState, want: dict[str, str], depth: int) -> list[Doc]:
        """The ops for one op of definition ``label`` (with setup ops it needs), with the wanted items."""
        cls = self.by_label.get(label)
        if cls is None:
            return []
        builder: Callable[[GenState, dict[str, str], int], list[Doc]] | None = getattr(
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
            return item if item is not None else base if base is not None else rng.choice(PROTS_USUAL)
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
        if value in NEVER_RAW:
            return 0
        if kind is MMAP_FLAGS_KIND and value & C.MAP_HUGETLB:
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

    def generic(self, cls: type[OpDef], st: GenState, want: dict[str, str]) -> list[Doc]:
        """An op built from its fields' kinds alone: ranges in the region, existing objects, fresh names."""
        doc: Doc = {"op": cls.op_name()}
        if "option" in cls.model_fields:
            doc["option"] = op_label(cls).split("/", 1)[1]
        kinds = cls.kinds()
        pre: list[Doc] = []
        length_field = next((f for f in LENGTHS if f in kinds), None)
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
                        pre += self.build("userfaultfd", st, {}, 0)
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
            elif isinstance(kind, Ranges):
                doc[name] = self.ranges(st)
            elif isinstance(kind, Text):
                doc[name] = self.rng.choice(("buf", "a b", None, "x$y", "y" * 80)) if kind.nullable else "buf"
            elif required or self.chance(0.5):
                doc[name] = self.value(kind, None)
        for name, item in want.items():
            wanted_kind = kinds.get(name)
            if wanted_kind is None or (name in LENGTHS and length_field == name):
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

    # -- files -----------------------------------------------------------------------------------------
    def new_file(self, st: GenState, want: dict[str, str] | None = None, kind: str | None = None) -> list[Doc]:
        """An op creating a memfd or a regular file, or nothing when neither is allowed."""
        kinds = [k for k in ("memfd", "file") if self.can(k)]
        if kind is not None:
            kinds = [kind] if self.can(kind) else []
        if not kinds:
            return []
        kind = self.rng.choice(kinds)
        pages = self.rng.randint(1, st.region + 4)
        info = FileInfo(self.uid("f"), pages, kind, True, self.rng.choice((0, 0, 0, 1, 2)))
        st.files.append(info)
        st.objects[info.name] = "file"
        doc: Doc = {"op": kind, "name": info.name, "size": size_text(pages * PAGE)}
        if kind == "file" and self.chance(0.6):
            doc["fs"] = self.rng.choice(("regular", "tmpfs"))
        for name, item in (want or {}).items():
            if name == "size":
                doc["size"] = edge_value(item[4:], pages * PAGE, self.rng)
                info.pages = 1 << 20  # large (or invalid): the generator stops caring about its end
            else:
                self.fill(self.by_label[kind], doc, {name: item})
        return [doc]

