"""Standalone reproducers: a divergence as a program in the vmasim-program/1 format.

The program rebuilds the model's VMAs around the call as they were before it
(each as a fixed mapping, written where the model held an anon_vma, then
given its flags by madvise, mlock and mseal), moved as a whole to the
format's window ``W`` by a multiple of 2 MiB (so that THP alignment is
kept), and then makes the call.

The heap cannot move like that: brk works only on the process's own heap,
from its start_brk up.  When the layout around the call holds the heap (what
/proc labels ``[heap]``) or the call is brk, the heap is rebuilt in the
runner's heap instead: ``sbrk`` by the traced heap's size (naming the
runner's initial break ``heap``), then cut, touched and flagged like the
traced one; the heap and every VMA within reach of its growth keep their
offsets from the break (``heap+0x21000``), everything else goes to ``W``.

A reproducer is kept only when running it on the model rebuilds that layout;
when the kernel runner is available it is run there too, which says whether
the divergence is the model's (the runner shows it) or came from state no
program can set up here (anon_vma history from earlier forks, pgoffs from
earlier mremaps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmasim import constants as C
from vmasim.core.flags import (
    VM_ACCOUNT,
    VM_DONTCOPY,
    VM_DONTDUMP,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_HUGEPAGE,
    VM_LOCKED,
    VM_LOCKONFAULT,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_MERGEABLE,
    VM_NOHUGEPAGE,
    VM_RAND_READ,
    VM_READ,
    VM_SEALED,
    VM_SEQ_READ,
    VM_WIPEONFORK,
    VM_WRITE,
    mnemonics,
)
from vmasim.core.vma import File, Vma
from vmasim.render import perms
from vmasim.trace.check import Before, Divergence
from vmasim.trace.mirror import result_ranges, touched_ranges
from vmasim.trace.syscalls import ADVICE_NAMES, Call

WINDOW = 0x7E0000000000
PMD = 2 << 20
# How far above its break the runner's heap may need room: the window starts far higher still, so a
# heap-relative rebuild this size cannot reach it or the walls.
HEAP_SPAN_MAX = 1 << 44
_ADVICE_FOR_FLAG = (
    (VM_DONTDUMP, "dontdump"), (VM_DONTCOPY, "dontfork"), (VM_WIPEONFORK, "wipeonfork"),
    (VM_HUGEPAGE, "hugepage"), (VM_NOHUGEPAGE, "nohugepage"), (VM_MERGEABLE, "mergeable"),
    (VM_RAND_READ, "random"), (VM_SEQ_READ, "sequential"),
)
_MAP_FLAG_NAMES = (
    (C.MAP_FIXED, "fixed"), (C.MAP_ANONYMOUS, "anonymous"), (C.MAP_NORESERVE, "noreserve"),
    (C.MAP_POPULATE, "populate"), (C.MAP_LOCKED, "locked"), (C.MAP_GROWSDOWN, "growsdown"),
    (C.MAP_STACK, "stack"), (C.MAP_NONBLOCK, "nonblock"), (C.MAP_FIXED_NOREPLACE, "fixed_noreplace"),
)


class NotExpressible(Exception):
    """The call or the layout around it has no equivalent in the program format."""


def _prot(bits: int) -> str:
    text = ("r" if bits & VM_READ else "") + ("w" if bits & VM_WRITE else "") + ("x" if bits & VM_EXEC else "")
    return text or "none"


def _page_up(addr: int) -> int:
    return (addr + C.PAGE_SIZE - 1) & ~(C.PAGE_SIZE - 1)


def _brk_memory(vma: Vma) -> bool:
    """Whether ``vma`` is what brk makes (private, accounted anonymous memory), so sbrk can rebuild it."""
    f = vma.vm_flags
    return vma.file is None and not f & (VM_MAYSHARE | VM_GROWSDOWN) and bool(f & VM_ACCOUNT)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a reproducer puts the traced addresses in the runner's process.

    Traced addresses in ``[start_brk, heap_top)`` (the heap and what lies
    within reach of its growth) keep their offset from the break and are
    written relative to ``heap``, the runner's initial break; every other
    address moves by ``shift`` into the window.  ``heap_top == start_brk``:
    the heap is not rebuilt.  ``vmas`` are the traced VMAs the program
    rebuilds.
    """

    shift: int
    vmas: tuple[Vma, ...] = ()
    start_brk: int = 0
    brk: int = 0
    heap_top: int = 0

    @property
    def has_heap(self) -> bool:
        """Whether the reproducer rebuilds the heap."""
        return self.heap_top > self.start_brk

    def in_heap(self, addr: int) -> bool:
        """Whether the traced address ``addr`` is rebuilt relative to the heap."""
        return self.start_brk <= addr < self.heap_top

    def expr(self, addr: int) -> str:
        """The traced address ``addr`` as an address expression of the program."""
        if self.in_heap(addr):
            return f"heap+{addr - self.start_brk:#x}"
        off = addr + self.shift - WINDOW
        if off < 0:
            raise NotExpressible(f"{addr:#x} lies below everything rebuilt in the window")
        return f"W+{off:#x}"


def _call_ranges(call: Call) -> list[tuple[int, int]]:
    return [(a, b) for a, b in touched_ranges(call) + result_ranges(call) if b > a]


def _heap_top(call: Call, before: Before) -> int:
    """The end of what is rebuilt relative to the heap (``before.start_brk``: nothing), or NotExpressible."""
    start, heap_end = before.start_brk, _page_up(before.brk)
    is_brk = call.name == "brk"
    # The heap as /proc labels it: the VMAs meeting [start_brk, brk) (vma_is_initial_heap()).
    if not is_brk and not any(v.start < heap_end and v.end > start for v in before.vmas):
        return start
    top = max(heap_end, start)
    if is_brk and start <= call.args[0] < C.TASK_SIZE:
        top = max(top, _page_up(call.args[0]))
    # Growth looks a page (and a stack guard gap below a VM_GROWSDOWN VMA) above the new break: like
    # the brk syscall's check against the next VMA.
    top += C.PAGE_SIZE + before.stack_guard_gap
    for v in before.vmas:
        if v.start < start < v.end:
            raise NotExpressible(f"{v.start:#x}-{v.end:#x} straddles the heap's start {start:#x}: the runner's own "
                                 "memory lies below its initial break")
    # What starts within reach, or touches what does, moves with the heap.
    for lo, hi in sorted([(v.start, v.end) for v in before.vmas] + _call_ranges(call)):
        if hi > start and lo <= top:
            top = max(top, hi)
    if top - start > HEAP_SPAN_MAX:
        raise NotExpressible(f"the heap and what lies within its reach span {top - start:#x} bytes, more than "
                             "the runner has free above its initial break")
    return top


def place(call: Call, before: Before) -> Placement:
    """Where the reproducer of ``call`` puts the layout ``before``; raises :class:`NotExpressible`."""
    top = _heap_top(call, before)
    heap = Placement(0, (), before.start_brk, before.brk, top)
    ranges = _call_ranges(call)
    for lo, hi in ranges:
        if heap.in_heap(lo) != heap.in_heap(hi - 1):
            raise NotExpressible(f"the call's range {lo:#x}-{hi:#x} reaches from the heap's region "
                                 f"({before.start_brk:#x}-{top:#x}) past it")
    window_ranges = [(lo, hi) for lo, hi in ranges if not heap.in_heap(lo)]
    vmas = before.vmas
    if heap.has_heap:
        # The neighbours the call cannot reach (the executable below the heap, libraries far above) are
        # left out: they would only stretch the window, often past the top of the address space.
        vmas = [v for v in vmas if heap.in_heap(v.start)
                or any(v.start <= hi and v.end >= lo for lo, hi in window_ranges)]
    start = before.start_brk
    if heap.has_heap and call.name != "brk" and any(
            (lo == start and any(v.end == start for v in before.vmas))
            or (hi == start and any(v.start == start for v in before.vmas)) for lo, hi in ranges):
        # brk never looks below start_brk, but other calls meeting the heap's start merge across it.
        raise NotExpressible(f"the call meets the heap's start {start:#x} with memory right below it, where the "
                             "runner has its own memory")
    lo = min([v.start for v in vmas if not heap.in_heap(v.start)] + [lo for lo, _ in window_ranges], default=WINDOW)
    return Placement(WINDOW - (lo & ~(PMD - 1)), tuple(vmas), before.start_brk, before.brk, top)


class _Builder:
    def __init__(self, place: Placement) -> None:
        self.place = place
        self.ops: list[dict[str, Any]] = []
        self.files: dict[int, str] = {}
        self.inodes: dict[int, str] = {}

    def addr(self, real: int) -> str:
        return self.place.expr(real)

    def file_name(self, file: File) -> str:
        name = self.files.get(id(file))
        if name is not None:
            return name
        inode = file.inode
        first = self.inodes.get(id(inode))
        if first is None:
            # The first struct file of an inode is the one the file or memfd op creates (read-write).
            first = f"f{len(self.inodes) + 1}"
            if inode.kind == "file":
                op: dict[str, Any] = {"op": "file", "name": first, "size": max(inode.size, C.PAGE_SIZE)}
                if inode.fs == "tmpfs":
                    op["fs"] = "tmpfs"  # a /dev/shm file: shmem, as on the traced machine
                self.ops.append(op)
            elif inode.kind == "memfd":
                self.ops.append({"op": "memfd", "name": first, "size": max(inode.size, C.PAGE_SIZE)})
            else:
                raise NotExpressible(f"a {inode.kind} mapping ({inode.label}) has no op")
            self.inodes[id(inode)] = first
            if file.writable and file.readable:
                self.files[id(file)] = first
                return first
        name = f"{first}_{len(self.files) + 1}"
        self.ops.append({"op": "open", "name": name, "of": first, "mode": "rw" if file.writable else "r"})
        self.files[id(file)] = name
        return name

    def rebuild(self, vma: Vma) -> None:
        f = vma.vm_flags
        shared = bool(f & VM_MAYSHARE)
        flags = ["shared" if shared else "private", "fixed_noreplace"]
        op: dict[str, Any] = {"op": "mmap", "addr": self.addr(vma.start), "length": hex(vma.end - vma.start)}
        if vma.file is None:
            flags.append("anonymous")
        elif vma.file.inode.kind == "sysv" or vma.file.inode.label.startswith("/SYSV"):
            self.attach(vma)
            return
        elif vma.file.inode.kind == "shmem":
            flags.append("anonymous")
            if vma.pgoff:
                raise NotExpressible("a piece of shared anonymous memory that does not start at its offset 0")
        else:
            op["fd"] = self.file_name(vma.file)
            op["offset"] = hex(vma.pgoff << C.PAGE_SHIFT)
        if f & VM_GROWSDOWN:
            flags.append("growsdown")
        writable_now = bool(f & VM_WRITE)
        touch = vma.anon_vma is not None and not shared
        if not shared and not f & VM_ACCOUNT and (writable_now or touch):
            flags.append("noreserve")
        op["prot"] = "rw" if touch and not writable_now else _prot(f)
        op["flags"] = flags
        self.ops.append(op)
        if touch:
            self.ops.append({"op": "touch", "addr": self.addr(vma.start), "length": "4K"})
            if not writable_now:
                self.range_op("mprotect", vma, prot=_prot(f))
        self.attributes(vma)

    def range_op(self, name: str, vma: Vma, **fields: Any) -> None:
        self.ops.append({"op": name, "addr": self.addr(vma.start), "length": hex(vma.end - vma.start), **fields})

    def attributes(self, vma: Vma) -> None:
        """The advice and locking of ``vma``, set on the rebuilt range."""
        f = vma.vm_flags
        for bit, advice in _ADVICE_FOR_FLAG:
            if f & bit:
                self.range_op("madvise", vma, advice=advice)
        if f & VM_LOCKONFAULT:
            self.range_op("mlock2", vma, flags=["onfault"])
        elif f & VM_LOCKED:
            self.range_op("mlock", vma)

    def rebuild_heap(self) -> list[Vma]:
        """Grow the runner's heap to the traced heap's size and cut it like the traced one.

        Returns the VMAs rebuilt from the heap itself; the other VMAs in it
        (a file mapped over part of it, say) are left unmapped for
        :meth:`rebuild`.
        """
        start, brk = self.place.start_brk, self.place.brk
        end = _page_up(brk)
        # Naming the old break gives every heap-relative address its base, even for an empty heap.
        self.ops.append({"op": "sbrk", "increment": hex(brk - start), "as": "heap"})
        pieces = [v for v in self.place.vmas if start <= v.start and v.end <= end and _brk_memory(v)]
        # What is not the heap's own memory (holes, other mappings, parts the neighbourhood did not
        # record) is unmapped.
        holes = zip([start, *(v.end for v in pieces)], [*(v.start for v in pieces), end], strict=True)
        for lo, hi in holes:
            if hi > lo:
                self.ops.append({"op": "munmap", "addr": self.addr(lo), "length": hex(hi - lo)})
        # Cut first, by protection: a touch on the uncut heap would give every piece its anon_vma.
        for v in pieces:
            if v.vm_flags & (VM_READ | VM_WRITE | VM_EXEC) != VM_READ | VM_WRITE:
                self.range_op("mprotect", v, prot=_prot(v.vm_flags))
        for v in pieces:
            if v.anon_vma is None:
                continue
            writable = bool(v.vm_flags & VM_WRITE)
            # A read fault maps the zero page and makes no anon_vma (do_anonymous_page()), so a read-only
            # piece is written through a moment of rw: merged meanwhile with a written neighbour, it shares
            # that neighbour's anon_vma, as after the usual history (the heap written, then protected).
            if not writable:
                self.range_op("mprotect", v, prot="rw")
            self.ops.append({"op": "touch", "addr": self.addr(v.start), "length": "4K"})
            if not writable:
                self.range_op("mprotect", v, prot=_prot(v.vm_flags))
        for v in pieces:
            self.attributes(v)
        return pieces

    def attach(self, vma: Vma) -> None:
        """A SysV attachment: its segment (made once) attached where it was."""
        assert vma.file is not None
        inode = vma.file.inode
        if vma.pgoff or vma.end - vma.start != (inode.size + C.PAGE_SIZE - 1) & ~(C.PAGE_SIZE - 1):
            raise NotExpressible("a fragment of a SysV attachment (shmat maps whole segments)")
        name = self.inodes.get(id(inode))
        if name is None:
            name = self.inodes[id(inode)] = f"seg{len(self.inodes) + 1}"
            self.ops.append({"op": "shmget", "name": name, "size": max(inode.size, 1)})
        flags = [] if vma.vm_flags & VM_MAYWRITE else ["rdonly"]
        if vma.vm_flags & VM_EXEC:
            flags.append("exec")
        self.ops.append({"op": "shmat", "shm": name, "addr": self.addr(vma.start), "flags": flags})

    def seal(self, vma: Vma) -> None:
        if vma.vm_flags & VM_SEALED:
            self.range_op("mseal", vma)

    def call(self, call: Call) -> dict[str, Any]:
        a = call.args
        name = call.name
        if name == "mmap":
            flags = a[3] & 0xFFFFFFFF
            names = ["shared" if flags & C.MAP_TYPE == C.MAP_SHARED else
                     "shared_validate" if flags & C.MAP_TYPE == C.MAP_SHARED_VALIDATE else "private"]
            names += [n for bit, n in _MAP_FLAG_NAMES if flags & bit]
            op: dict[str, Any] = {"op": "mmap", "addr": self.addr(a[0]) if a[0] else None, "length": hex(a[1]),
                                  "prot": _prot(a[2]), "flags": names, "as": "result"}
            if not flags & C.MAP_ANONYMOUS:
                file = call.data.get("file")
                if not isinstance(file, File):
                    raise NotExpressible("the mapped descriptor was not open")
                op["fd"] = self.file_name(file)
                op["offset"] = hex(a[5])
            return op
        if name in ("munmap", "mlock", "munlock", "mseal"):
            return {"op": name, "addr": self.addr(a[0]), "length": hex(a[1])}
        if name == "mprotect" or (name == "pkey_mprotect" and call.sarg(3) == -1):
            return {"op": "mprotect", "addr": self.addr(a[0]), "length": hex(a[1]), "prot": _prot(a[2])}
        if name == "pkey_mprotect":
            return {"op": "pkey_mprotect", "addr": self.addr(a[0]), "length": hex(a[1]), "prot": _prot(a[2]),
                    "pkey": call.sarg(3)}
        if name == "process_madvise" and a[3] in ADVICE_NAMES and call.data.get("self"):
            return {"op": "process_madvise", "advice": ADVICE_NAMES[a[3]], "flags": a[4] & 0xFFFFFFFF,
                    "ranges": [{"addr": self.addr(b), "length": hex(n)} for b, n in call.data.get("ranges", [])]}
        if name == "shmdt":
            return {"op": "shmdt", "addr": self.addr(a[0])}
        if name == "brk":
            # Below start_brk brk only reports the break (as brk(0) does), on the traced kernel and the
            # runner alike; past TASK_SIZE it is refused on both, whatever the heap's place.
            if a[0] < self.place.start_brk:
                return {"op": "brk", "addr": 0}
            return {"op": "brk", "addr": self.addr(a[0]) if a[0] < C.TASK_SIZE else hex(a[0])}
        if name == "madvise" and a[2] in ADVICE_NAMES:
            return {"op": "madvise", "addr": self.addr(a[0]), "length": hex(a[1]), "advice": ADVICE_NAMES[a[2]]}
        if name == "mlock2":
            return {"op": "mlock2", "addr": self.addr(a[0]), "length": hex(a[1]),
                    "flags": ["onfault"] if a[2] & C.MLOCK_ONFAULT else []}
        if name == "mremap":
            op = {"op": "mremap", "addr": self.addr(a[0]), "old_length": hex(a[1]), "new_length": hex(a[2]),
                  "flags": [n for bit, n in ((C.MREMAP_MAYMOVE, "maymove"), (C.MREMAP_FIXED, "fixed"),
                                             (C.MREMAP_DONTUNMAP, "dontunmap")) if a[3] & bit], "as": "result"}
            if a[3] & (C.MREMAP_FIXED | C.MREMAP_DONTUNMAP):
                op["new_addr"] = self.addr(a[4])
            return op
        raise NotExpressible(f"{name} has no op in the format (see the trace notes on format extensions)")


def build(call: Call, before: Before) -> tuple[dict[str, Any], Placement]:
    """The reproducer for ``call`` made on the layout ``before``, and where it puts that layout.

    Raises :class:`NotExpressible`.
    """
    if not before.vmas and call.name != "brk":
        raise NotExpressible("no layout around the call was recorded")
    where = place(call, before)
    b = _Builder(where)
    from_heap = {id(v) for v in b.rebuild_heap()} if where.has_heap else set()
    for vma in where.vmas:
        if id(vma) not in from_heap:
            b.rebuild(vma)
    for vma in where.vmas:
        b.seal(vma)
    ops = [*b.ops, b.call(call)]
    ends = [v.end for v in where.vmas if not where.in_heap(v.start)]
    ends += [hi for lo, hi in _call_ranges(call) if not where.in_heap(lo)]
    hi = max(ends, default=WINDOW - where.shift)
    length = ((hi + where.shift - WINDOW) + PMD) & ~(PMD - 1)
    program = {"format": "vmasim-program/1", "window": {"start": hex(WINDOW), "length": hex(length)},
               "walls": True, "ops": ops}
    return program, where


def build_program(call: Call, before: Before) -> dict[str, Any]:
    """The reproducer for ``call`` made on the layout ``before``; raises :class:`NotExpressible`."""
    return build(call, before)[0]


Key = tuple[str, str, str, tuple[str, ...]]


def _layout_key(vmas: Sequence[Mapping[str, Any]]) -> list[Key]:
    return [(v["start"], v["end"], v["perms"], tuple(v["flags"])) for v in vmas]


def _key(vma: Vma, start: str, end: str) -> Key:
    return (start, end, perms(vma), tuple(mnemonics(vma.vm_flags)))


def _rel(off: int) -> str:
    return ("+" if off >= 0 else "-") + hex(abs(off))


def verify_on_model(program: dict[str, Any], where: Placement) -> str | None:
    """None when the program's ops rebuild the traced VMAs ``where`` places on the model; else what differs.

    VMAs moved to the window are compared at their new addresses; those
    rebuilt in the heap by their offset from the break (the runner's initial
    break is not the traced start_brk), and so is the break itself.
    """
    from vmasim.program import parse_program
    from vmasim.program.model import run_model_space

    setup = dict(program, ops=program["ops"][:-1])
    report, space = run_model_space(parse_program(setup))
    want = [_key(v, hex(v.start + where.shift), hex(v.end + where.shift))
            for v in where.vmas if not where.in_heap(v.start)]
    got = _layout_key(report["vmas"])
    if got != want:
        return f"the rebuilt layout differs: {got} != {want}"
    if not where.has_heap:
        return None
    base, start = space.initial_break, where.start_brk
    want = [_key(v, _rel(v.start - start), _rel(v.end - start)) for v in where.vmas if where.in_heap(v.start)]
    got = [_key(v, _rel(v.start - base), _rel(v.end - base))
           for v in space.mm.vmas.range(base, base + where.heap_top - start)]
    if got != want:
        return f"the rebuilt heap differs (offsets from the break): {got} != {want}"
    if space.mm.brk - base != where.brk - start:
        return f"the rebuilt break is at {_rel(space.mm.brk - base)}, not {_rel(where.brk - start)}"
    return None


def reproduce(div: Divergence) -> None:
    """Attach a verified reproducer to ``div``, or say why there is none."""
    if div.context is None:
        div.program_note = "no call recorded"
        return
    call, before = div.context
    if not isinstance(call, Call):
        div.program_note = "the divergence was found at the end of the process, not after one call"
        return
    if before is None:
        div.program_note = "the layout before the call was not recorded (use --check every)"
        return
    try:
        program, where = build(call, before)
    except NotExpressible as exc:
        div.program_note = str(exc)
        return
    try:
        problem = verify_on_model(program, where)
    except Exception as exc:  # a program the parser or model rejects is simply not a reproducer
        problem = f"the model cannot run it: {exc}"
    if problem is not None:
        div.program_note = problem
        return
    div.program = program
    div.program_note = "rebuilds the layout before the call on the model" + _kernel_verdict(program)


def _kernel_verdict(program: dict[str, Any]) -> str:
    from vmasim.kernel import KernelRunError, kernel_available, run_program
    from vmasim.probe import probe_host
    from vmasim.profile import ProfileError
    from vmasim.program import parse_program
    from vmasim.program.model import run_model

    ok, _why = kernel_available()
    if not ok:
        return ""
    parsed = parse_program(program)
    try:
        kernel = run_program(parsed)
        # The runner's process is this host's: the model must model it (its process layout included).
        model = run_model(parsed, probe_host())
    except (KernelRunError, ProfileError) as exc:
        return f"; the kernel runner could not run it ({exc})"
    if all(kernel[k] == model[k] for k in ("vmas", "heap", "results")):
        return "; on the kernel runner model and kernel agree: the divergence depends on earlier history"
    return "; the kernel runner reproduces the divergence"


def attach_reproducers(result: Any) -> None:
    """Give each divergence of a trace a reproducer where one can be built."""
    for image in result.images:
        for div in image.stats.divergences:
            reproduce(div)
