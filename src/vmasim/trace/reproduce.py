"""Standalone reproducers: a divergence as a program in the vmasim-program/1 format.

The program rebuilds the model's VMAs around the call as they were before it
(each as a fixed mapping, written where the model held an anon_vma, then
given its flags by madvise, mlock and mseal), moved as a whole to the
format's window ``W`` by a multiple of 2 MiB (so that THP alignment is
kept), and then makes the call.  A reproducer is kept only when running it on
the model rebuilds that layout and gives the mirror's result; when the kernel
runner is available it is run there too, which says whether the divergence
is the model's (the runner shows it) or came from state no program can set up
here (anon_vma history from earlier forks, pgoffs from earlier mremaps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from vmasim.trace.check import Divergence
from vmasim.trace.syscalls import ADVICE_NAMES, Call

WINDOW = 0x7E0000000000
PMD = 2 << 20
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


class _Builder:
    def __init__(self, shift: int) -> None:
        self.shift = shift
        self.ops: list[dict[str, Any]] = []
        self.files: dict[int, str] = {}
        self.inodes: dict[int, str] = {}

    def addr(self, real: int) -> str:
        return f"W+{real + self.shift - WINDOW:#x}"

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
                self.ops.append({"op": "mprotect", "addr": self.addr(vma.start), "length": hex(vma.end - vma.start),
                                 "prot": _prot(f)})
        for bit, advice in _ADVICE_FOR_FLAG:
            if f & bit:
                self.ops.append({"op": "madvise", "addr": self.addr(vma.start), "length": hex(vma.end - vma.start),
                                 "advice": advice})
        if f & VM_LOCKONFAULT:
            self.ops.append({"op": "mlock2", "addr": self.addr(vma.start), "length": hex(vma.end - vma.start),
                             "flags": ["onfault"]})
        elif f & VM_LOCKED:
            self.ops.append({"op": "mlock", "addr": self.addr(vma.start), "length": hex(vma.end - vma.start)})

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
            self.ops.append({"op": "mseal", "addr": self.addr(vma.start), "length": hex(vma.end - vma.start)})

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


def build_program(call: Call, before: list[Vma]) -> dict[str, Any]:
    """The reproducer for ``call`` made on the layout ``before``; raises :class:`NotExpressible`."""
    if not before:
        raise NotExpressible("no layout around the call was recorded")
    lo = min(v.start for v in before)
    hi = max(v.end for v in before)
    if call.name == "mmap" and not call.args[0] and not call.err:
        hi = max(hi, call.ret + call.args[1])
        lo = min(lo, call.ret)
    shift = WINDOW - (lo & ~(PMD - 1))
    b = _Builder(shift)
    for vma in before:
        b.rebuild(vma)
    for vma in before:
        b.seal(vma)
    ops = [*b.ops, b.call(call)]
    length = ((hi + shift - WINDOW) + PMD) & ~(PMD - 1)
    return {"format": "vmasim-program/1", "window": {"start": hex(WINDOW), "length": hex(length)},
            "walls": True, "ops": ops}


def _layout_key(vmas: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(v["start"], v["end"], v["perms"], tuple(v["flags"])) for v in vmas]


def verify_on_model(program: dict[str, Any], before: list[Vma], shift: int) -> str | None:
    """None when the program's ops rebuild ``before`` on the model; else what differs."""
    from vmasim.program import parse_program
    from vmasim.program.model import run_model_space

    setup = dict(program, ops=program["ops"][:-1])
    report, _space = run_model_space(parse_program(setup))
    want = [(hex(v.start + shift), hex(v.end + shift), _perms(v), tuple(mnemonics(v.vm_flags))) for v in before]
    got = _layout_key(report["vmas"])
    if got != want:
        return f"the rebuilt layout differs: {got} != {want}"
    return None


def _perms(vma: Vma) -> str:
    f = vma.vm_flags
    return ("r" if f & 1 else "-") + ("w" if f & 2 else "-") + ("x" if f & 4 else "-") + (
        "s" if f & VM_MAYSHARE else "p")


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
        program = build_program(call, before)
    except NotExpressible as exc:
        div.program_note = str(exc)
        return
    lo = min(v.start for v in before)
    shift = WINDOW - (lo & ~(PMD - 1))
    try:
        problem = verify_on_model(program, before, shift)
    except Exception as exc:  # a program the parser or model rejects is simply not a reproducer
        problem = f"the model cannot run it: {exc}"
    if problem is not None:
        div.program_note = problem
        return
    div.program = program
    div.program_note = "rebuilds the layout before the call on the model" + _kernel_verdict(program, call)


def _kernel_verdict(program: dict[str, Any], call: Call) -> str:
    from vmasim.kernel import KernelRunError, kernel_available, run_program
    from vmasim.program import parse_program
    from vmasim.program.model import run_model

    ok, _why = kernel_available()
    if not ok:
        return ""
    parsed = parse_program(program)
    try:
        kernel = run_program(parsed)
    except KernelRunError as exc:
        return f"; the kernel runner could not run it ({exc})"
    model = run_model(parsed)
    if kernel["vmas"] == model["vmas"] and kernel["results"] == model["results"]:
        return "; on the kernel runner model and kernel agree: the divergence depends on earlier history"
    return "; the kernel runner reproduces the divergence"


def attach_reproducers(result: Any) -> None:
    """Give each divergence of a trace a reproducer where one can be built."""
    for image in result.images:
        for div in image.stats.divergences:
            reproduce(div)
