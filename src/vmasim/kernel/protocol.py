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
(a NUL-terminated string; the value is its address).  Each op's code and
arguments come from its definition's :class:`~vmasim.program.ops.Wire`; see
the header comment of ``executor.c`` for the whole protocol.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

from vmasim.constants import MADV_HWPOISON, MADV_SOFT_OFFLINE, MASK64
from vmasim.ctype import CType
from vmasim.program import AddrRef, Op, Program, walk_ops
from vmasim.program.ops import Fork, Madvise, OpDef, ProcessMadvise, Shmget
from vmasim.program.values import Address, ObjectRef, Ranges, Text

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

    def fd(self, name: str | None) -> str:
        """An object's descriptor, from its slot; an absent one is -1."""
        return f"{MASK64:x}" if name is None else f"{self.slot('f', name)}:0"

    def arg(self, args: OpDef, spec: str | int) -> str:
        """One argument: a constant, or a field encoded by its kind."""
        if isinstance(spec, int):
            return f"{spec & MASK64:x}"
        kind = type(args).kinds().get(spec)
        value = args.get(spec)
        if isinstance(kind, Address):
            return self.addr(value)
        if isinstance(kind, ObjectRef):
            return self.fd(value)
        if isinstance(kind, Ranges):
            # Packed for the executor: per range a slot (-1: an absolute address), an offset and a length.
            packed = b"".join(self.range_entry(ref, length) for ref, length in value)
            return self.string(packed)
        if isinstance(kind, Text):
            # Anonymous VMA names are the only strings: the kernel reads at most ANON_VMA_NAME_MAX_LEN bytes
            # of one, so that much gets its answer for the whole name.
            if value is None:
                return "0"
            return self.string(value.encode("utf-8", "surrogateescape")[:ANON_VMA_NAME_MAX_LEN])
        return f"{int(value) & MASK64:x}"

    def range_entry(self, ref: AddrRef, length: int) -> bytes:
        """One range of a process_madvise op: ``<i32 slot> <u64 offset> <u64 length>``, little-endian."""
        if ref.name is None or ref.name == "W":
            base = self.window_start if ref.name == "W" else 0
            return struct.pack("<iQQ", -1, (base + ref.offset) & MASK64, length & MASK64)
        return struct.pack("<iQQ", self.slot("a", ref.name), ref.offset & MASK64, length & MASK64)

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
            if isinstance(op.args, Fork):
                # the line count is known once the child's ops are emitted
                self.lines.append(f"K {op.index} -1")
                stack.append((iter(op.child), len(self.lines) - 1, len(self.lines)))
            else:
                self.op(op)

    def op(self, op: Op) -> None:
        args = op.args
        wire = type(args).wire
        assert wire is not None, f"op {op.op} has no executor encoding"
        out = -1
        if wire.out is not None and args.get(wire.out) is not None:
            out = self.slot("a" if wire.out == "as" else "f", args.get(wire.out))
        parts = [wire.code, str(op.index), str(out)]
        if wire.nr is not None:
            parts.append(f"{wire.nr:x}")
        parts.extend(self.arg(args, spec) for spec in wire.args)
        self.lines.append(" ".join(parts))


_MEMORY_FAILURE = (MADV_HWPOISON, MADV_SOFT_OFFLINE)


def encode_program(program: Program) -> str:
    """The executor input for one program: a ``P`` header, one line per op, and ``E``."""
    for op in walk_ops(program.ops):
        # Memory-failure injection would poison the host's own pages (the runner may be privileged):
        # never run, whatever the register's upper bits.
        if isinstance(op.args, Madvise | ProcessMadvise) and CType.INT.cast(op.args.advice) in _MEMORY_FAILURE:
            raise EncodeError(f"op {op.path} ({op.op}): the kernel runner does not run MADV_HWPOISON or "
                              "MADV_SOFT_OFFLINE (they inject memory failures into the host)")
    enc = _Encoder(program.window_start)
    # Feature bit 1: the program makes SysV segments (the executor gives it an IPC namespace of its own).
    features = int(any(isinstance(op.args, Shmget) for op in walk_ops(program.ops)))
    header = f"P {program.window_start:x} {program.window_length:x} {int(program.walls)}"
    enc.lines.append(f"{header} {features}" if features else header)
    enc.ops(program.ops)
    if len(enc.lines) - 1 > MAX_OPS:
        raise EncodeError(f"more than {MAX_OPS} ops in one program")
    enc.lines.append("E")
    return "\n".join(enc.lines) + "\n"
