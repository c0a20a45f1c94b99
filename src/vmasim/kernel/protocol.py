"""Compile a :class:`~vmasim.program.Program` into the executor's line protocol.

The executor (``executor.c``) knows nothing about names.  Every name a program
binds gets a *slot*, a 64-bit cell in the executor's memory; an address is
"slot value + offset" and is resolved when the op runs, from whatever an
earlier op stored there.  Address names (``as``) and object names (memfd,
file, open, dup, userfaultfd) are separate namespaces, so they get separate
slots.  Because a fork child is a copy of its parent, bindings a child makes
stay in the child, exactly as the parser scopes them.

Line format (numbers are hex unless noted): ``<code> <op index, dec>
<output slot, dec or -1> <arg>...`` where an arg is ``<hex>`` (an
immediate), ``<slot>:<hex>`` (slot + offset, modulo 2**64) or ``x<hex bytes>``
(a NUL-terminated string; the value is its address).  See the header comment
of ``executor.c`` for the whole protocol.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from vmasim.program import AddrRef, Op, Program

MASK64 = (1 << 64) - 1

#: Limits compiled into the executor (``MAX_OPS``, ``MAX_SLOTS``, the size of ``strpool``).
MAX_OPS = 65536
MAX_SLOTS = 65536
MAX_STRING_BYTES = 1 << 18

#: The longest anon VMA name the kernel takes, NUL included (ANON_VMA_NAME_MAX_LEN).
#: prctl(PR_SET_VMA_ANON_NAME) copies the name with strndup_user(), which reads
#: at most this many bytes and fails with EINVAL when no NUL is among them; so
#: the first ANON_VMA_NAME_MAX_LEN bytes of a name get the kernel's answer for
#: the whole name, and nothing longer ever needs to reach the executor.
ANON_VMA_NAME_MAX_LEN = 80

# x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl)
NR_MPROTECT = 10
NR_MMAP = 9
NR_MUNMAP = 11
NR_MREMAP = 25
NR_MADVISE = 28
NR_FTRUNCATE = 77
NR_MLOCK = 149
NR_MUNLOCK = 150
NR_MLOCKALL = 151
NR_MUNLOCKALL = 152
NR_PRCTL = 157
NR_MLOCK2 = 325
NR_MSEAL = 462

PR_SET_VMA = 0x53564D41
PR_SET_VMA_ANON_NAME = 0
PR_SET_MEMORY_MERGE = 67
O_RDONLY = 0
O_RDWR = 2

# op -> (syscall number, argument fields) for ops that are one plain syscall
_PLAIN: dict[str, tuple[int, tuple[str, ...]]] = {
    "munmap": (NR_MUNMAP, ("addr", "length")),
    "mprotect": (NR_MPROTECT, ("addr", "length", "prot")),
    "madvise": (NR_MADVISE, ("addr", "length", "advice")),
    "mlock": (NR_MLOCK, ("addr", "length")),
    "munlock": (NR_MUNLOCK, ("addr", "length")),
    "mlock2": (NR_MLOCK2, ("addr", "length", "flags")),
    "mlockall": (NR_MLOCKALL, ("flags",)),
    "munlockall": (NR_MUNLOCKALL, ()),
    "mseal": (NR_MSEAL, ("addr", "length", "flags")),
}


class EncodeError(ValueError):
    """A valid program that exceeds a limit of the executor (too many ops or names)."""


class _Encoder:
    """Walks the op tree once, assigning slots and emitting lines."""

    def __init__(self, window_start: int) -> None:
        self.window_start = window_start
        self.slots: dict[tuple[str, str], int] = {}
        self.lines: list[str] = []
        self.string_bytes = 0

    def slot(self, kind: str, name: str) -> int:
        key = (kind, name)
        n = self.slots.get(key)
        if n is None:
            n = len(self.slots)
            if n >= MAX_SLOTS:
                raise EncodeError(f"more than {MAX_SLOTS} names in one program")
            self.slots[key] = n
        return n

    def addr(self, ref: AddrRef | None) -> str:
        """An address argument; ``None`` (no hint) is address 0."""
        if ref is None:
            return "0"
        if ref.name is None:
            return f"{ref.offset & MASK64:x}"
        if ref.name == "W":
            # The window start is known now: no need for a run-time slot.
            return f"{(self.window_start + ref.offset) & MASK64:x}"
        return f"{self.slot('a', ref.name)}:{ref.offset & MASK64:x}"

    def fd(self, name: str) -> str:
        return f"{self.slot('f', name)}:0"

    def emit(self, code: str, op: Op, out: int, *args: str | int) -> None:
        parts = [code, str(op.index), str(out)]
        parts.extend(a if isinstance(a, str) else f"{a & MASK64:x}" for a in args)
        self.lines.append(" ".join(parts))

    def out_addr(self, op: Op) -> int:
        name = op.args.get("as")
        return -1 if name is None else self.slot("a", name)

    def string(self, data: bytes) -> str:
        """A string argument (the executor adds the NUL)."""
        self.string_bytes += len(data) + 1
        if self.string_bytes >= MAX_STRING_BYTES:
            raise EncodeError(f"the program's strings take more than the executor's {MAX_STRING_BYTES} bytes")
        return "x" + data.hex()

    def ops(self, ops: Sequence[Op]) -> None:
        """Emit ``ops``, fork children included, without recursion (forks may nest deeply)."""
        # (iterator over a process's ops, index of its fork's line or -1, lines before it)
        stack: list[tuple[Iterator[Op], int, int]] = [(iter(ops), -1, len(self.lines))]
        while stack:
            it, at, first = stack[-1]
            op = next(it, None)
            if op is None:
                stack.pop()
                if at >= 0:
                    fork = self.lines[at]
                    self.lines[at] = f"{fork} {len(self.lines) - first:x}"
                continue
            if op.op == "fork":
                # the line count is known once the child's ops are emitted
                self.lines.append(f"K {op.index} -1")
                stack.append((iter(op.child), len(self.lines) - 1, len(self.lines)))
            else:
                self.op(op)

    def op(self, op: Op) -> None:
        a = op.args
        name = op.op
        if name in _PLAIN:
            nr, fields = _PLAIN[name]
            self.emit("s", op, -1, nr, *(self.addr(a[f]) if f == "addr" else int(a[f]) for f in fields))
        elif name == "mmap":
            fd = self.fd(a["fd"]) if a["fd"] is not None else MASK64
            self.emit(
                "m", op, self.out_addr(op), NR_MMAP, self.addr(a["addr"]), a["length"], a["prot"], a["flags"], fd,
                a["offset"],
            )
        elif name == "mremap":
            self.emit(
                "m", op, self.out_addr(op), NR_MREMAP, self.addr(a["addr"]), a["old_length"], a["new_length"],
                a["flags"], self.addr(a["new_addr"]),
            )
        elif name == "mbind":
            self.emit("N", op, -1, self.addr(a["addr"]), a["length"], a["mode"], a["nodes"], a["flags"])
        elif name == "set_mempolicy":
            self.emit("Q", op, -1, a["mode"], a["nodes"])
        elif name == "sbrk":
            self.emit("b", op, -1, a["increment"])
        elif name == "touch":
            self.emit("t", op, -1, self.addr(a["addr"]), a["length"], int(bool(a["write"])))
        elif name in ("memfd", "file"):
            self.emit("M" if name == "memfd" else "F", op, self.slot("f", a["name"]), a["size"])
        elif name == "open":
            self.emit("O", op, self.slot("f", a["name"]), self.fd(a["of"]), O_RDWR if a["mode"] == "rw" else O_RDONLY)
        elif name == "dup":
            self.emit("D", op, self.slot("f", a["name"]), self.fd(a["of"]))
        elif name == "ftruncate":
            self.emit("s", op, -1, NR_FTRUNCATE, self.fd(a["fd"]), a["size"])
        elif name == "close":
            self.emit("C", op, -1, self.fd(a["fd"]))
        elif name == "userfaultfd":
            self.emit("U", op, self.slot("f", a["name"]), a["features"])
        elif name == "uffd_register":
            self.emit("G", op, -1, self.fd(a["uffd"]), self.addr(a["addr"]), a["length"], a["mode"])
        elif name == "uffd_unregister":
            self.emit("g", op, -1, self.fd(a["uffd"]), self.addr(a["addr"]), a["length"])
        elif name == "prctl":
            if a["option"] == "set_vma_anon_name":
                label = a["name"]
                raw = b"" if label is None else label.encode("utf-8", "surrogateescape")
                text = 0 if label is None else self.string(raw[:ANON_VMA_NAME_MAX_LEN])
                self.emit(
                    "s", op, -1, NR_PRCTL, PR_SET_VMA, PR_SET_VMA_ANON_NAME, self.addr(a["addr"]), a["length"], text
                )
            else:
                self.emit("s", op, -1, NR_PRCTL, PR_SET_MEMORY_MERGE, a["value"], 0, 0, 0)
        elif name == "pad":
            self.emit("X", op, -1, a["headroom"])
        else:  # pragma: no cover - the parser admits only the ops above (fork is handled by ops())
            raise EncodeError(f"op {op.path}: the kernel runner does not support {name!r}")


def encode_program(program: Program) -> str:
    """The executor input for one program: a ``P`` header, one line per op, and ``E``."""
    enc = _Encoder(program.window_start)
    enc.lines.append(f"P {program.window_start:x} {program.window_length:x} {int(program.walls)}")
    enc.ops(program.ops)
    if len(enc.lines) - 1 > MAX_OPS:
        raise EncodeError(f"more than {MAX_OPS} ops in one program")
    enc.lines.append("E")
    return "\n".join(enc.lines) + "\n"
