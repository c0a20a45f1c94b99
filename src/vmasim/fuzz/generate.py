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

The generator is a :class:`ProgramGenerator`: the base
(:mod:`~vmasim.fuzz.gen_base`: aiming, the generic builder) with each family's
builders (:mod:`~vmasim.fuzz.gen_core`, :mod:`~vmasim.fuzz.gen_attrs`,
:mod:`~vmasim.fuzz.gen_lifecycle`) over the picture of
:mod:`~vmasim.fuzz.gen_state`.

Programs that would make the host kernel wait forever for a userfaultfd
handler (a MISSING fault inside a system call, a fork or remap event nobody
reads) are kept rare, not avoided: the runner stops them and they count as
skipped.  Programs are plain JSON-able dicts in the ``vmasim-program/1`` format.
"""

from __future__ import annotations

import random

from vmasim.fuzz.categories import plan_category
from vmasim.fuzz.coverage import format_items, op_label
from vmasim.fuzz.gen_attrs import AttrOps
from vmasim.fuzz.gen_core import CoreOps
from vmasim.fuzz.gen_lifecycle import LifecycleOps
from vmasim.fuzz.gen_state import FOCUS_PER_PROGRAM, MAX_DEPTH, PAGE, Doc, GenState, Item, size_text
from vmasim.program.ops import OP_DEFS, OpDef
from vmasim.program.parse import DEFAULT_WINDOW_LENGTH, DEFAULT_WINDOW_START

__all__ = ["ProgramGenerator", "category_classes", "category_items", "generate_program", "generate_programs",
           "size_text"]

#: How often each op is picked for a process body, relative to the others; ops not named here
#: (a new definition, say) get the default weight, so that they are generated without edits.
_WEIGHTS: dict[str, float] = {
    "mmap": 30, "munmap": 12, "mprotect": 14, "touch": 14, "madvise": 12, "mlock": 3, "munlock": 3,
    "mlock2": 3, "mlockall": 1.2, "munlockall": 0.8, "mbind": 6, "set_mempolicy": 1, "mseal": 2.5,
    "mremap": 14, "sbrk": 5, "memfd": 1.5, "file": 1.5, "open": 1.5, "dup": 1, "ftruncate": 1.5, "close": 1,
    "userfaultfd": 1.5, "uffd_register": 4, "uffd_unregister": 2, "prctl/set_vma_anon_name": 1.5,
    "prctl/set_memory_merge": 1, "fork": 4, "pad": 0.3, "brk": 3, "pwrite": 1.5, "exec": 0.7, "shmget": 1,
    "shmat": 3, "shmdt": 1.5, "pkey_alloc": 1.2, "pkey_free": 0.8, "pkey_mprotect": 3, "process_madvise": 4,
}
_DEFAULT_WEIGHT = 3.0


class ProgramGenerator(CoreOps, AttrOps, LifecycleOps):
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
        st = GenState(region, base_off, [False] * region, [0, region], window_start=window_start)
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

    def body(self, st: GenState, n: int, depth: int, focus: list[Item]) -> list[Doc]:
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
