"""Which system calls the tracer stops on, and how a stopped call is decoded and described (x86_64).

Three groups, each with its own handling in the tracer:

- *memory calls* change an address space and are mirrored on the model,
  one at a time per address space, each compared with the kernel's result;
- *descriptor calls* keep the tracer's view of the descriptor tables right
  (which open file an mmap of a descriptor maps);
- *process calls* create or replace address spaces (clone, fork, vfork,
  execve).

``open`` and friends are not stopped on, nor, on kernels with
pidfd_getfd (5.6 and later), is ``close``: the open file an mmap maps is
recognised by kcmp against the tracer's own duplicates
(:class:`vmasim.trace.fds.OpenFiles`).  Compilers and git open and close
hundreds of files; those calls then cost the program nothing.  On older
kernels every close is stopped on, and a descriptor number the tracer knows
nothing about is a file opened since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmasim import constants as C

NR: dict[str, int] = {
    "close": 3, "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12, "ioctl": 16, "mremap": 25,
    "madvise": 28, "shmat": 30, "dup": 32, "dup2": 33, "clone": 56, "fork": 57, "vfork": 58,
    "execve": 59, "shmdt": 67, "fcntl": 72, "mlock": 149, "munlock": 150, "mlockall": 151,
    "munlockall": 152, "prctl": 157, "remap_file_pages": 216, "mbind": 237, "set_mempolicy": 238,
    "dup3": 292, "execveat": 322, "userfaultfd": 323, "mlock2": 325, "pkey_mprotect": 329,
    "pkey_alloc": 330, "pkey_free": 331, "clone3": 435, "close_range": 436, "process_madvise": 440,
    "set_mempolicy_home_node": 450,
    "mseal": 462,
}
NAME: dict[int, str] = {nr: name for name, nr in NR.items()}

MEMORY_CALLS = frozenset({
    "mmap", "mprotect", "munmap", "brk", "mremap", "madvise", "shmat", "shmdt", "mlock", "munlock",
    "mlockall", "munlockall", "remap_file_pages", "mbind", "set_mempolicy", "mlock2", "pkey_mprotect",
    "process_madvise", "set_mempolicy_home_node", "mseal", "prctl", "ioctl", "pkey_alloc", "pkey_free",
})
DESCRIPTOR_CALLS = frozenset({"close", "close_range", "dup", "dup2", "dup3", "fcntl", "userfaultfd"})
PROCESS_CALLS = frozenset({"clone", "clone3", "fork", "vfork", "execve", "execveat"})

F_DUPFD = 0
F_DUPFD_CLOEXEC = 1030
UFFDIO_API = 0xC018AA3F
UFFDIO_REGISTER = 0xC020AA00
UFFDIO_UNREGISTER = 0x8010AA01
USERFAULTFD_IOC_NEW = 0xAA00
CLONE_VM = 0x100
CLONE_FILES = 0x400
CLONE_VFORK = 0x4000
CLONE_THREAD = 0x10000

#: Memory calls whose result the model predicts (mmap's and brk's addresses too: placement is part of
#: what the model gets right), mirrored at their entry when no comparison follows them (see
#: vmasim.trace.tracer.Tracer._unwatched).
ONE_STOP_CALLS = frozenset({"mmap", "brk", "munmap", "mprotect", "pkey_mprotect", "munlock", "mseal"})
#: madvise advice among those: not the ones that fault pages in (POPULATE_*, which can be interrupted
#: and restarted) or depend on allocating huge pages (COLLAPSE).
ONE_STOP_ADVICE = frozenset({
    C.MADV_NORMAL, C.MADV_RANDOM, C.MADV_SEQUENTIAL, C.MADV_WILLNEED, C.MADV_DONTNEED, C.MADV_FREE,
    C.MADV_DONTFORK, C.MADV_DOFORK, C.MADV_HUGEPAGE, C.MADV_NOHUGEPAGE, C.MADV_DONTDUMP, C.MADV_DODUMP,
    C.MADV_WIPEONFORK, C.MADV_KEEPONFORK, C.MADV_COLD, C.MADV_PAGEOUT,
})
#: Calls stopped on whatever their arguments.
TRACED = tuple(
    NR[n] for n in sorted(MEMORY_CALLS | DESCRIPTOR_CALLS | PROCESS_CALLS) if n not in ("ioctl", "fcntl", "prctl")
)

#: Calls stopped on only for some values of one argument: {nr: (argument index, values)}.
TRACED_IF: dict[int, tuple[int, tuple[int, ...]]] = {
    NR["ioctl"]: (1, (UFFDIO_API, UFFDIO_REGISTER, UFFDIO_UNREGISTER, USERFAULTFD_IOC_NEW)),
    NR["fcntl"]: (1, (F_DUPFD, F_DUPFD_CLOEXEC)),
    NR["prctl"]: (0, (C.PR_SET_VMA, C.PR_SET_MEMORY_MERGE)),
}


def traced_calls(*, close: bool) -> tuple[int, ...]:
    """:data:`TRACED`, without ``close`` when the tracer tells open files apart by kcmp instead."""
    return TRACED if close else tuple(nr for nr in TRACED if nr != NR["close"])


@dataclass(slots=True)
class Call:
    """One traced call: who made it, its arguments, and (after the exit stop) its result.

    ``ret`` is the raw return value and ``err`` the errno (0 on success);
    ``data`` holds what was read from the tracee's memory for pointer
    arguments (a node mask, iovecs, userfaultfd structures, clone flags).
    """

    name: str
    args: tuple[int, ...]
    tid: int
    ret: int = 0
    err: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    def arg(self, i: int) -> int:
        """Argument ``i`` as an unsigned 64-bit value."""
        return self.args[i]

    def sarg(self, i: int) -> int:
        """Argument ``i`` as a signed int (descriptors, pkeys)."""
        v = self.args[i] & 0xFFFFFFFF
        return v - (1 << 32) if v & 0x80000000 else v

    def describe(self, *, result: bool = True) -> str:
        """The call as strace would show it, roughly: ``mmap(NULL, 0x2000, rw-, PRIVATE|ANONYMOUS, -1, 0)``."""
        text = f"{self.name}({', '.join(_format_args(self))})"
        if result:
            text += " = " + self.result_text()
        return text

    def result_text(self) -> str:
        """The result as ``0x7f...``, ``0`` or ``-1 ENOMEM``."""
        if self.err:
            import errno as _errno

            return f"-1 {_errno.errorcode.get(self.err, f'E{self.err}')}"
        if self.name in ("mmap", "mremap", "brk", "shmat"):
            return hex(self.ret)
        return str(self.ret)


def decode(name: str, args: tuple[int, ...], tid: int) -> Call:
    """A :class:`Call` for call ``name`` with raw arguments ``args`` made by ``tid``."""
    return Call(name, tuple(args), tid)


def _names(value: int, table: tuple[tuple[int, str], ...]) -> str:
    parts = []
    rest = value
    for bit, name in table:
        if value & bit == bit and bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) or "0"


_MAP_FLAGS = (
    (C.MAP_SHARED_VALIDATE, "SHARED_VALIDATE"), (C.MAP_SHARED, "SHARED"), (C.MAP_PRIVATE, "PRIVATE"),
    (C.MAP_DROPPABLE, "DROPPABLE"), (C.MAP_FIXED, "FIXED"), (C.MAP_ANONYMOUS, "ANONYMOUS"),
    (C.MAP_32BIT, "32BIT"), (C.MAP_GROWSDOWN, "GROWSDOWN"), (C.MAP_DENYWRITE, "DENYWRITE"),
    (C.MAP_EXECUTABLE, "EXECUTABLE"), (C.MAP_LOCKED, "LOCKED"), (C.MAP_NORESERVE, "NORESERVE"),
    (C.MAP_POPULATE, "POPULATE"), (C.MAP_NONBLOCK, "NONBLOCK"), (C.MAP_STACK, "STACK"),
    (C.MAP_HUGETLB, "HUGETLB"), (C.MAP_SYNC, "SYNC"), (C.MAP_FIXED_NOREPLACE, "FIXED_NOREPLACE"),
)
_MREMAP_FLAGS = ((C.MREMAP_MAYMOVE, "MAYMOVE"), (C.MREMAP_FIXED, "FIXED"), (C.MREMAP_DONTUNMAP, "DONTUNMAP"))
ADVICE_NAMES = {v: k[5:].lower() for k, v in vars(C).items() if k.startswith("MADV_")}


def prot_text(prot: int) -> str:
    """PROT bits as ``rw-`` (``---`` for PROT_NONE), with other bits in hex."""
    text = ("r" if prot & 1 else "-") + ("w" if prot & 2 else "-") + ("x" if prot & 4 else "-")
    rest = prot & ~7
    return text + (f"|{rest:#x}" if rest else "")


def _format_args(call: Call) -> list[str]:
    a = call.args
    name = call.name
    if name == "mmap":
        return [hex(a[0]) if a[0] else "NULL", hex(a[1]), prot_text(a[2]), _names(a[3] & 0xFFFFFFFF, _MAP_FLAGS),
                str(call.sarg(4)), hex(a[5])]
    if name in ("munmap", "mlock", "munlock", "mseal"):
        return [hex(a[0]), hex(a[1])] + ([str(a[2])] if name == "mseal" and a[2] else [])
    if name in ("mprotect", "pkey_mprotect"):
        return [hex(a[0]), hex(a[1]), prot_text(a[2])] + ([str(call.sarg(3))] if name == "pkey_mprotect" else [])
    if name == "madvise":
        return [hex(a[0]), hex(a[1]), ADVICE_NAMES.get(a[2], str(a[2])).upper()]
    if name == "mremap":
        out = [hex(a[0]), hex(a[1]), hex(a[2]), _names(a[3], _MREMAP_FLAGS)]
        if a[3] & (C.MREMAP_FIXED | C.MREMAP_DONTUNMAP):
            out.append(hex(a[4]))
        return out
    if name == "brk":
        return [hex(a[0])]
    if name == "mlock2":
        return [hex(a[0]), hex(a[1]), str(a[2])]
    if name in ("mlockall",):
        return [hex(a[0])]
    if name == "munlockall":
        return []
    if name == "mbind":
        return [hex(a[0]), hex(a[1]), str(a[2]), hex(call.data.get("nodes", 0)), str(a[5])]
    if name == "set_mempolicy":
        return [str(a[0]), hex(call.data.get("nodes", 0))]
    if name == "ioctl":
        return [str(call.sarg(0)), {UFFDIO_API: "UFFDIO_API", UFFDIO_REGISTER: "UFFDIO_REGISTER",
                                    UFFDIO_UNREGISTER: "UFFDIO_UNREGISTER",
                                    USERFAULTFD_IOC_NEW: "USERFAULTFD_IOC_NEW"}.get(a[1] & 0xFFFFFFFF, hex(a[1]))]
    if name == "prctl":
        return [hex(a[0]), hex(a[1]), hex(a[2]), hex(a[3])]
    return [hex(x) for x in a[:3]]
