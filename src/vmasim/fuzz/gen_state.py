"""What the program generator knows while it builds a program: its picture of each process, and small helpers.

The picture is approximate (the generator does not run the model): which pages
of the region it believes mapped, the boundaries earlier ops left, the names
bound with ``as``, open files and userfaultfds, and what would make the kernel
wait for a userfaultfd handler.  It is only used to aim ops.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field
from typing import Any

from vmasim import constants as C
from vmasim.program.ops import Mmap
from vmasim.program.parse import DEFAULT_WINDOW_START
from vmasim.program.values import MASK64

PAGE = C.PAGE_SIZE
Doc = dict[str, Any]
Item = tuple[str, str, str]
#: The deepest fork the generator nests (a fork in a child in a child).
MAX_DEPTH = 3
#: Items of the format each program is built around.
FOCUS_PER_PROGRAM = 2
#: Field names that are the length of the op's range (with ``addr``).
LENGTHS = ("length", "old_length")
PROTS_USUAL = ("rw", "rw", "rw", "rw", "r", "r", "none", "none", "rwx", "w", "x", "rx")
# Advice that may not reach beyond the program's own mappings: a huge range of it would discard or
# hide the runner's stack (the only advice used with lengths at the argument-width edges).
HARMLESS_ADVICE = ("normal", "random", "sequential", "hugepage", "nohugepage", "dontdump", "dodump", "cold",
                    "mergeable", "unmergeable", "keeponfork")
MMAP_FLAGS_KIND = Mmap.kinds()["flags"]
# Raw values never generated for any field: memory-failure injection advice, which a privileged runner
# would carry out on the host's memory.
NEVER_RAW = frozenset({C.MADV_HWPOISON, C.MADV_SOFT_OFFLINE})
# Which userfaultfd features make which later ops wait for a handler (the runner stops those).
EVENT_HAZARDS = {"event_fork": "fork", "event_remap": "remap", "event_unmap": "unmap", "event_remove": "remove"}


def size_text(n: int) -> str | int:
    """A length as a contract string: ``"2M"``, ``"16K"``, or a plain integer when not KiB-aligned."""
    if n > 0 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n > 0 and n % (1 << 10) == 0:
        return f"{n >> 10}K"
    return n


def addr_text(name: str, off: int) -> str:
    """An address as a contract string: ``name``, ``name+0x1000`` or ``name-0x1000``."""
    if off == 0:
        return name
    return f"{name}+{off:#x}" if off > 0 else f"{name}-{-off:#x}"


def nudge(addr: Any, by: int) -> Any:
    """An address text (``NAME``, ``NAME+0x..``, ``NAME-0x..``, hex) moved by ``by`` bytes; others unchanged."""
    if not isinstance(addr, str):
        return addr
    m = re.fullmatch(r"([A-Za-z_]\w*)?([+-]?)(0x[0-9a-fA-F]+)?", addr)
    if m is None:
        return addr
    name, sign, num = m.groups()
    off = (int(num, 16) if num else 0) * (-1 if sign == "-" else 1)
    return addr_text(name, off + by) if name else hex(off + by)


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
class Floating:
    """A mapping whose address the generator does not know (hint-less mmap, mremap): reachable by name."""

    name: str
    pages: int


@dataclass
class FileInfo:
    """An open file (memfd or file, or another descriptor of one): its size, and how it is mapped."""

    name: str
    pages: int
    kind: str  # "memfd" or "file"
    writable: bool = True
    base: int = 0  # file page that region page 0 corresponds to, for contiguous offsets


@dataclass
class GenState:
    """What the generator knows (approximately) about one process so far; only used to aim ops."""

    region: int  # pages
    base_off: int  # bytes from W
    mapped: list[bool]
    points: list[int]
    bound: dict[str, int] = field(default_factory=dict)  # address name -> region page (FIXED-style mmaps)
    floating: list[Floating] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)
    uffds: dict[str, int] = field(default_factory=dict)  # open userfaultfds and their features
    objects: dict[str, str] = field(default_factory=dict)  # every object name bound, and its kind
    hazards: set[str] = field(default_factory=set)  # what would make the kernel wait for a uffd handler
    window_start: int = DEFAULT_WINDOW_START
    walls: bool = True
    ksm: bool = False  # PR_SET_MEMORY_MERGE is on
    last: tuple[str, Any, int | None] | None = None  # the last range an op was aimed at
    brk: int = 0  # the break, in bytes above the initial break
    heap: dict[str, int] = field(default_factory=dict)  # names bound by sbrk/brk -> bytes above the initial break
    shms: dict[str, int] = field(default_factory=dict)  # System V segments -> pages
    attached: list[str] = field(default_factory=list)  # where segments are attached (address texts)
    pkeys: int = 0  # protection keys allocated so far (the kernel hands out 1, 2, ...)

    def clone(self) -> GenState:
        """A copy for a fork child, whose ops change only its own picture."""
        return copy.deepcopy(self)

    def new_image(self) -> None:
        """The picture after an exec: an empty region and heap, no names bound, no registrations.

        Objects stay (descriptors and System V segments outlive the address
        space), but a userfaultfd opened before keeps the old address space as
        its context, so it can no longer register anything.
        """
        self.mapped = [False] * self.region
        self.points = [0, self.region]
        self.bound.clear()
        self.floating.clear()
        self.uffds.clear()
        self.hazards.clear()
        self.last = None
        self.brk = 0
        self.heap.clear()
        self.attached.clear()
        self.pkeys = 0

    @property
    def at_top(self) -> bool:
        """Whether the region sits at the window's end (right below the runner's walls)."""
        return self.base_off > 0

