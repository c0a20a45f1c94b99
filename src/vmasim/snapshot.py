"""A picture-ready copy of an address space at one moment: each VMA's state and why neighbours stay apart.

:func:`snapshot` reads an :class:`~vmasim.core.mm.MmStruct` into plain
frozen values (:class:`VmaState`, :class:`Snapshot`) that the timeline, the
step diff and the pictures compare and draw.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from vmasim.core.flags import VM_EXEC, VM_GROWSDOWN, VM_IO, VM_MIXEDMAP, VM_PFNMAP, VM_READ, VM_WRITE, mnemonics
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.explain import why_separate
from vmasim.render import file_offset, mpol_to_str, perms
from vmasim.report import FileLabels

KINDS = ("anonymous", "file", "shmem", "stack", "heap", "guard", "special")


def vma_kind(vma: Vma, mm: MmStruct) -> str:
    """What backs ``vma``, as the picture names it: one of :data:`KINDS`.

    ``special`` is a vDSO-like or raw-PFN mapping, ``shmem`` shared anonymous
    memory, ``file`` any other file (memfds included), ``stack`` a
    VM_GROWSDOWN area, ``heap`` what /proc labels ``[heap]``, ``guard`` a
    private anonymous mapping nobody may access (PROT_NONE), and
    ``anonymous`` the rest.
    """
    inode = vma.file.inode if vma.file is not None else None
    if (inode is not None and inode.kind == "special") or vma.vm_flags & (VM_PFNMAP | VM_IO | VM_MIXEDMAP):
        return "special"
    if inode is not None:
        return "shmem" if inode.kind == "shmem" else "file"
    if vma.vm_flags & VM_GROWSDOWN:
        return "stack"
    if vma.start < mm.brk and vma.end > mm.start_brk:
        return "heap"  # like show_map_vma()'s [heap] test
    if not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC):
        return "guard"
    return "anonymous"


def span(start: int, end: int) -> str:
    """A range as /proc/PID/maps writes it: ``7e0000000000-7e0000008000``."""
    return f"{start:08x}-{end:08x}"


def size_text(size: int) -> str:
    """A byte count in the program format's units: ``4K``, ``2M``, ``1G``, else hex."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return hex(size)


@dataclass(frozen=True, slots=True)
class VmaState:
    """One VMA at one moment: the layout report's fields, plus its kind, anon_vma and page state.

    ``anon_vma`` is the anon_vma's number (``AnonVma#N``, the number explain's
    reasons use) or None; ``forked`` says it came through fork.  ``guards``
    and ``populated`` are the ranges with guard markers and with page table
    entries; ``populated`` is for the picture only and is left out of
    equality, so a fault that only populates pages is not a VMA change.
    """

    start: int
    end: int
    perms: str
    offset: int
    file: str | None
    flags: tuple[str, ...]
    policy: str
    kind: str
    anon_vma: int | None = None
    forked: bool = False
    name: str | None = None
    guards: tuple[tuple[int, int], ...] = ()
    populated: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.end - self.start

    @property
    def span(self) -> str:
        """The range as maps writes it."""
        return span(self.start, self.end)

    def entry(self) -> dict[str, Any]:
        """The layout report's entry for this VMA (start, end, perms, offset, file, flags, policy)."""
        return {
            "start": hex(self.start),
            "end": hex(self.end),
            "perms": self.perms,
            "offset": hex(self.offset),
            "file": self.file,
            "flags": list(self.flags),
            "policy": self.policy,
        }

    def line(self) -> str:
        """A maps-like line: range, perms, offset, object, VmFlags, then policy, name, anon_vma and guards."""
        label = self.file or ("" if self.kind == "anonymous" else f"[{self.kind}]")
        text = f"{self.span} {self.perms} {self.offset:08x} {label:<8} [{' '.join(self.flags)}]"
        if self.policy != "default":
            text += f" {self.policy}"
        if self.name is not None:
            text += f" [anon:{self.name}]"
        if self.anon_vma is not None:
            text += f" anon_vma {self.anon_vma}" + (" (forked)" if self.forked else "")
        if self.guards:
            text += " guard " + ",".join(span(s, e) for s, e in self.guards)
        return text

    def describe(self) -> str:
        """A short description: ``32K rw-p anonymous``."""
        what = self.file if self.file is not None else self.kind
        return f"{size_text(self.size)} {self.perms} {what}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The VMAs of one process at one moment, in address order.

    ``apart[i]`` says why ``vmas[i]`` and ``vmas[i + 1]`` are two VMAs: the
    reasons (an empty tuple when nothing forbids a merge but nothing has
    tried one since), or None when they do not touch.
    """

    vmas: tuple[VmaState, ...] = ()
    apart: tuple[tuple[str, ...] | None, ...] = ()

    def boundaries(self) -> set[int]:
        """Every address where a VMA starts or ends."""
        return {a for v in self.vmas for a in (v.start, v.end)}


class SnapshotNames:
    """What stays the same across a whole timeline: files as the report names them, and merge verdicts."""

    def __init__(self) -> None:
        self.files = FileLabels()
        self._apart: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def apart(self, mm: MmStruct, left: Vma, right: Vma) -> tuple[str, ...]:
        """``why_separate(mm, left, right)``, asked once for each pair of VMAs that look alike to the
        merge predicates (which read only the two VMAs), since most pairs outlive many steps."""
        key = (_merge_key(left), _merge_key(right))
        found = self._apart.get(key)
        if found is None:
            found = self._apart[key] = tuple(why_separate(mm, left, right))
        return found


def _merge_key(vma: Vma) -> tuple[Any, ...]:
    # The objects themselves, not their id()s: File, AnonVma and UffdCtx compare by identity, and
    # holding them keeps a freed object's id from being reused by another.
    return (vma.start, vma.end, vma.pgoff, vma.vm_flags, vma.file, vma.anon_vma, vma.fork_child, vma.policy,
            vma.uffd_ctx, vma.anon_name, vma.has_close)


def _state(vma: Vma, mm: MmStruct, names: SnapshotNames) -> VmaState:
    return VmaState(
        start=vma.start,
        end=vma.end,
        perms=perms(vma),
        offset=file_offset(vma),
        file=names.files.label(vma),
        flags=tuple(mnemonics(vma.vm_flags)),
        policy=mpol_to_str(mm.effective_policy(vma)),
        kind=vma_kind(vma, mm),
        anon_vma=vma.anon_vma.id if vma.anon_vma is not None else None,
        forked=vma.fork_child and vma.anon_vma is not None,
        name=vma.anon_name,
        guards=tuple(mm.guards.slices(vma.start, vma.end)) if mm.guards else (),
        populated=tuple(mm.ptes.slices(vma.start, vma.end)) if mm.ptes else (),
    )


def snapshot(mm: MmStruct, start: int = 0, end: int = (1 << 64) - 1, heap_base: int | None = None,
             names: SnapshotNames | None = None) -> Snapshot:
    """The VMAs of ``mm`` overlapping ``[start, end)``, plus the heap above ``heap_base`` when given."""
    names = names or SnapshotNames()
    vmas = list(mm.vmas.range(start, end))
    if heap_base is not None:
        # The report's heap: what /proc labels [heap], from the initial break up.
        seen = {id(v) for v in vmas}
        heap = [v for v in mm.vmas.range(heap_base, mm.brk) if v.start >= heap_base and id(v) not in seen]
        vmas = sorted(vmas + heap, key=lambda v: v.start)
    states = tuple(_state(v, mm, names) for v in vmas)
    apart = tuple(names.apart(mm, a, b) if a.end == b.start else None for a, b in itertools.pairwise(vmas))
    return Snapshot(states, apart)
