"""Comparing the model's VMAs with the kernel's (/proc/PID/smaps), and repairing the model after a divergence.

Each VMA is compared by range, perms, file offset, file identity (device and
inode; anonymous memory and special mappings have none) and its VmFlags.
Shared anonymous memory is a shmem file the model makes itself: its identity
is learnt the first time the kernel shows it and held to afterwards.

Two things change the kernel's layout without a system call, and are
followed silently before comparing: a stack VMA growing down on a fault, and
nothing else that the VMA list shows (anon_vma changes are invisible here and
are taken from pagemap by the mirror).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmasim import constants as C
from vmasim.core.flags import VM_GROWSDOWN, mnemonics
from vmasim.core.mm import MmStruct
from vmasim.core.vma import AnonVma, File, Inode, Vma
from vmasim.procimport import FileTable, PageMap, ProcVma, model_vma
from vmasim.render import perms

NEIGHBOURS = 2


@dataclass(slots=True)
class Before:
    """The model's state a reproducer needs from before a call: copies of the VMAs around it, and the heap.

    ``start_brk`` and ``brk`` are the model's (the heap is what /proc labels
    ``[heap]``: the VMAs meeting ``[start_brk, brk)``); ``stack_guard_gap`` is
    how far above a break a VM_GROWSDOWN VMA still blocks the heap's growth.
    """

    vmas: list[Vma]
    start_brk: int
    brk: int
    stack_guard_gap: int


@dataclass(slots=True)
class Divergence:
    """Where the model and the kernel disagreed: after which call, and both layouts around it."""

    call: str
    kind: str  # "layout" or "result"
    detail: str
    kernel: list[str] = field(default_factory=list)
    model: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    program: dict[str, object] | None = None
    program_note: str = ""
    # The call and the model's state around it before the call (for building a reproducer).
    context: tuple[object, Before | None] | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        out: dict[str, object] = {
            "call": self.call, "kind": self.kind, "detail": self.detail,
            "kernel": self.kernel, "model": self.model, "model_before": self.before,
        }
        if self.program is not None:
            out["program"] = self.program
        if self.program_note:
            out["program_note"] = self.program_note
        return out


class Identities:
    """(device, inode) of the model's files: real files from the FileTable, shmem learnt from the kernel."""

    def __init__(self, files: FileTable) -> None:
        self.files = files
        # Keyed by the Inode itself (identity hash), which keeps it alive: an id() could be reused.
        self.learnt: dict[Inode, tuple[str, int]] = {}

    def of(self, vma: Vma) -> tuple[str, int] | None:
        """The identity, or None when it is not known yet (model-made shmem before the first check)."""
        file = vma.file
        if file is None or file.inode.kind == "special":
            return ("00:00", 0)
        return self.files.identity(file.inode) or self.learnt.get(file.inode)


def path_of(vma: Vma) -> str:
    """The path column /proc would show for a model VMA (the [heap]/[stack] labels aside)."""
    if vma.file is None:
        return ""
    inode = vma.file.inode
    if inode.kind == "special":
        return inode.label
    if inode.kind == "shmem":
        return "/dev/zero (deleted)"
    if inode.kind == "memfd" and "/" not in inode.label:
        return f"/memfd:{inode.label} (deleted)"
    return "/" + inode.label


def model_entries(mm: MmStruct, ids: Identities, kernel: list[ProcVma] | None = None) -> list[ProcVma]:
    """The model's VMAs as /proc would show them; unknown shmem identities are learnt from ``kernel``."""
    by_start = {v.start: v for v in kernel} if kernel is not None else {}
    out: list[ProcVma] = []
    for vma in mm.vmas:
        ident = ids.of(vma)
        if ident is None:
            k = by_start.get(vma.start)
            if k is not None and k.inode and vma.file is not None:
                ids.learnt[vma.file.inode] = (k.dev, k.inode)
                ident = (k.dev, k.inode)
            else:
                ident = ("??", -1)
        dev, ino = ident
        offset = vma.pgoff << C.PAGE_SHIFT if ino else 0
        out.append(ProcVma(vma.start, vma.end, perms(vma), offset, dev, ino, path_of(vma),
                           mnemonics(vma.vm_flags)))
    return out


def follow_stack_growth(mm: MmStruct, kernel: list[ProcVma]) -> None:
    """Grow the model's VM_GROWSDOWN VMAs down to where the kernel's are (growth by faults, not calls)."""
    for k in kernel:
        if not k.flags or "gd" not in k.flags:
            continue
        vma = mm.vmas.lookup(k.end - 1)
        if vma is None or not vma.vm_flags & VM_GROWSDOWN or vma.end != k.end or vma.start <= k.start:
            continue
        if mm.vmas.find_intersection(k.start, vma.start) is not None:
            continue
        grow = (vma.start - k.start) >> C.PAGE_SHIFT
        mm.set_range(vma, k.start, vma.end, max(0, vma.pgoff - grow))


@dataclass(slots=True)
class Mismatch:
    """The differing region of one comparison: ``[lo, hi)`` and the lines around it on both sides."""

    lo: int
    hi: int
    kernel: list[str]
    model: list[str]
    first: str


def _around(entries: list[ProcVma], lo: int, hi: int) -> list[str]:
    idx = [i for i, v in enumerate(entries) if v.end > lo and v.start < hi]
    if not idx:
        before = [i for i, v in enumerate(entries) if v.end <= lo]
        idx = before[-1:] or [0]
    a = max(0, idx[0] - NEIGHBOURS)
    b = min(len(entries), idx[-1] + NEIGHBOURS + 1)
    return [entries[i].line() for i in range(a, b)]


def compare(kernel: list[ProcVma], model: list[ProcVma]) -> Mismatch | None:
    """None when the two lists agree; else the differing region."""
    kkeys = [v.key() for v in kernel]
    mkeys = [v.key() for v in model]
    if kkeys == mkeys:
        return None
    kset, mset = set(kkeys), set(mkeys)
    diff = [v for v, key in zip(kernel, kkeys, strict=True) if key not in mset]
    diff += [v for v, key in zip(model, mkeys, strict=True) if key not in kset]
    lo = min(v.start for v in diff)
    hi = max(v.end for v in diff)
    first = min(diff, key=lambda v: v.start)
    return Mismatch(lo, hi, _around(kernel, lo, hi), _around(model, lo, hi), _describe_first(kernel, model, first))


def _describe_first(kernel: list[ProcVma], model: list[ProcVma], first: ProcVma) -> str:
    k = next((v for v in kernel if v.start == first.start), None)
    m = next((v for v in model if v.start == first.start), None)
    if k is None:
        return f"the model has {first.start:#x}-{first.end:#x} where the kernel has nothing starting there"
    if m is None:
        return f"the kernel has {first.start:#x}-{first.end:#x} where the model has nothing starting there"
    parts = []
    if k.end != m.end:
        parts.append(f"end {k.end:#x} (kernel) vs {m.end:#x} (model)")
    if k.perms != m.perms:
        parts.append(f"perms {k.perms} vs {m.perms}")
    if k.key()[3] != m.key()[3]:
        parts.append(f"offset {k.offset:#x} vs {m.offset:#x}")
    if (k.dev, k.inode) != (m.dev, m.inode):
        parts.append(f"file {k.dev}:{k.inode} vs {m.dev}:{m.inode}")
    if k.flags != m.flags:
        ks, ms = set(k.flags or ()), set(m.flags or ())
        parts.append("VmFlags " + " ".join([f"+{f}" for f in sorted(ks - ms)] + [f"-{f}" for f in sorted(ms - ks)])
                     + " (kernel vs model)")
    return f"at {first.start:#x}: " + "; ".join(parts)


def resync(mm: MmStruct, kernel: list[ProcVma], lo: int, hi: int, files: FileTable,
           pagemap: PageMap | None) -> None:
    """Make ``[lo, hi)`` of the model what the kernel shows, keeping files and anon_vmas where they fit
    (a new private VMA is written if ``pagemap`` finds an anonymous page in it; without one, if smaps
    counted any)."""
    removed = list(mm.vmas.range(lo, hi))
    cache: dict[tuple[str, int], File] = {}
    for vma in list(mm.vmas):
        if vma.file is not None:
            ident = files.identity(vma.file.inode)
            if ident is not None:
                cache.setdefault(ident, vma.file)
    for vma in removed:
        if vma.file is not None:
            ident = files.identity(vma.file.inode)
            if ident is not None:
                cache[ident] = vma.file
        mm.unlink(vma)
        mm.zap_range(vma.start, vma.end)
    for k in kernel:
        if k.end <= lo or k.start >= hi:
            continue
        new = model_vma(k, files, cache)
        donor = next((r for r in removed if r.anon_vma is not None and r.start < k.end and r.end > k.start
                      and (r.file is None) == (new.file is None)), None)
        if donor is not None:
            new.anon_vma, new.fork_child = donor.anon_vma, donor.fork_child
        elif k.perms[3] == "p" and (pagemap.first_anon(k.start, k.end) is not None if pagemap is not None
                                    else bool(k.anon_kb)):
            new.anon_vma = AnonVma(mm.ids)
        mm.link(new)
