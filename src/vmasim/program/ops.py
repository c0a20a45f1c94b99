"""Every op of the ``vmasim-program/1`` format, each defined once.

An op is a pydantic model: its fields, their kinds (:mod:`vmasim.program.values`:
how each is written, what it becomes, the C type of the argument it feeds), a
one-line docstring, what its result is (:class:`Result`) and how the kernel
runner's executor is told to run it (:class:`Wire`).  Parsing and validation,
the executor protocol, the report decoder, the comparison of object-creating
ops, the format reference (``docs/program-format.md``), the JSON Schema, the
fuzzer's generator and its shrinker all read these definitions.  Adding an op
means adding its class here, its handler in :mod:`vmasim.program.model` and its
code in ``executor.c``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from vmasim import constants as C
from vmasim.program.values import (
    Address,
    AddrRef,
    Boolean,
    Choice,
    CType,
    Flags,
    Kind,
    Name,
    Nodes,
    ObjectRef,
    OpList,
    Prot,
    Size,
    Text,
)

# --- name tables ----------------------------------------------------------------------------------

MMAP_FLAGS: dict[str, int] = {
    "private": C.MAP_PRIVATE,
    "shared": C.MAP_SHARED,
    "shared_validate": C.MAP_SHARED_VALIDATE,
    "anonymous": C.MAP_ANONYMOUS,
    "fixed": C.MAP_FIXED,
    "fixed_noreplace": C.MAP_FIXED_NOREPLACE,
    "noreserve": C.MAP_NORESERVE,
    "populate": C.MAP_POPULATE,
    "locked": C.MAP_LOCKED,
    "growsdown": C.MAP_GROWSDOWN,
    "stack": C.MAP_STACK,
    "droppable": C.MAP_DROPPABLE,
    "nonblock": C.MAP_NONBLOCK,
}
PROT_FLAGS: dict[str, int] = {"growsdown": C.PROT_GROWSDOWN, "growsup": C.PROT_GROWSUP}
ADVICE: dict[str, int] = {
    "normal": C.MADV_NORMAL,
    "random": C.MADV_RANDOM,
    "sequential": C.MADV_SEQUENTIAL,
    "willneed": C.MADV_WILLNEED,
    "dontneed": C.MADV_DONTNEED,
    "free": C.MADV_FREE,
    "remove": C.MADV_REMOVE,
    "dontfork": C.MADV_DONTFORK,
    "dofork": C.MADV_DOFORK,
    "mergeable": C.MADV_MERGEABLE,
    "unmergeable": C.MADV_UNMERGEABLE,
    "hugepage": C.MADV_HUGEPAGE,
    "nohugepage": C.MADV_NOHUGEPAGE,
    "dontdump": C.MADV_DONTDUMP,
    "dodump": C.MADV_DODUMP,
    "wipeonfork": C.MADV_WIPEONFORK,
    "keeponfork": C.MADV_KEEPONFORK,
    "cold": C.MADV_COLD,
    "pageout": C.MADV_PAGEOUT,
    "populate_read": C.MADV_POPULATE_READ,
    "populate_write": C.MADV_POPULATE_WRITE,
    "dontneed_locked": C.MADV_DONTNEED_LOCKED,
    "collapse": C.MADV_COLLAPSE,
    "guard_install": C.MADV_GUARD_INSTALL,
    "guard_remove": C.MADV_GUARD_REMOVE,
}
MLOCK2_FLAGS: dict[str, int] = {"onfault": C.MLOCK_ONFAULT}
MLOCKALL_FLAGS: dict[str, int] = {"current": C.MCL_CURRENT, "future": C.MCL_FUTURE, "onfault": C.MCL_ONFAULT}
MPOL_MODES: dict[str, int] = {
    "default": C.MPOL_DEFAULT,
    "preferred": C.MPOL_PREFERRED,
    "bind": C.MPOL_BIND,
    "interleave": C.MPOL_INTERLEAVE,
    "local": C.MPOL_LOCAL,
    "preferred_many": C.MPOL_PREFERRED_MANY,
    "weighted_interleave": C.MPOL_WEIGHTED_INTERLEAVE,
}
MPOL_MODE_FLAGS: dict[str, int] = {"static": C.MPOL_F_STATIC_NODES, "relative": C.MPOL_F_RELATIVE_NODES}
MBIND_FLAGS: dict[str, int] = {"strict": C.MPOL_MF_STRICT, "move": C.MPOL_MF_MOVE, "move_all": C.MPOL_MF_MOVE_ALL}
MREMAP_FLAGS: dict[str, int] = {"maymove": C.MREMAP_MAYMOVE, "fixed": C.MREMAP_FIXED, "dontunmap": C.MREMAP_DONTUNMAP}
UFFD_MODES: dict[str, int] = {
    "missing": C.UFFDIO_REGISTER_MODE_MISSING,
    "wp": C.UFFDIO_REGISTER_MODE_WP,
    "minor": C.UFFDIO_REGISTER_MODE_MINOR,
}
UFFD_FEATURES: dict[str, int] = {
    "pagefault_flag_wp": 1 << 0,
    "event_fork": 1 << 1,
    "event_remap": 1 << 2,
    "event_remove": 1 << 3,
    "missing_hugetlbfs": 1 << 4,
    "missing_shmem": 1 << 5,
    "event_unmap": 1 << 6,
    "sigbus": 1 << 7,
    "thread_id": 1 << 8,
    "minor_hugetlbfs": 1 << 9,
    "minor_shmem": 1 << 10,
    "exact_address": 1 << 11,
    "wp_hugetlbfs_shmem": 1 << 12,
    "wp_unpopulated": 1 << 13,
    "poison": 1 << 14,
    "wp_async": 1 << 15,
    "move": 1 << 16,
}
OPEN_MODES: dict[str, int] = {"r": C.O_RDONLY, "rw": C.O_RDWR}
#: The longest anonymous VMA name the format takes: well past the kernel's limit, which it then judges.
ANON_NAME_FORMAT_MAX = 255


# --- what an op returns and how the executor runs it ---------------------------------------------


class Result(enum.Enum):
    """What the report says about an op's outcome."""

    #: ``ret`` 0 and ``errno`` null, or ``ret`` -1 and the errno's name.
    STATUS = "status"
    #: ``ret`` is the address returned, as a hex string (mmap, mremap).
    ADDRESS = "address"
    #: The op creates an object (a file, a userfaultfd, a child, pads): only success or failure counts.
    OBJECT = "object"
    #: ``ret`` is the old break relative to the initial break (``"+0x0"``).
    BREAK = "break"
    #: ``pages`` accessed and the ``fault`` that stopped the access.
    ACCESS = "access"


@dataclass(frozen=True, slots=True)
class Wire:
    """How the executor runs an op: a line ``<code> <index> <out slot> <args...>``.

    ``args`` are field names (encoded by their kind: an address, an object's
    descriptor slot, a number, a string) or integer constants; ``nr`` is
    prepended for the generic syscall codes; ``out`` names the field whose
    name the result is bound to (``as`` for addresses, ``name`` for objects).
    """

    code: str
    args: tuple[str | int, ...] = ()
    nr: int | None = None
    out: str | None = None


class OpDef(BaseModel):
    """The base of every op definition: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, arbitrary_types_allowed=True)

    op: str
    #: What the report says of the op's outcome.
    result: ClassVar[Result] = Result.STATUS
    #: How the executor runs it (None: the protocol has a rule of its own, see fork).
    wire: ClassVar[Wire | None] = None
    #: Which fuzzing category the op belongs to ("core", "attrs", "lifecycle").
    family: ClassVar[str] = "core"
    #: The kind of object the op creates and names with its ``name`` field ("file", "userfaultfd"; "of":
    #: whatever its ``of`` field names), or None.
    creates: ClassVar[str | None] = None

    @classmethod
    def op_name(cls) -> str:
        """The op's name, as programs write it."""
        return str(cls.model_fields["op"].default)

    @classmethod
    def kinds(cls) -> dict[str, Kind]:
        """Each field's :class:`~vmasim.program.values.Kind`, by the field's name in programs."""
        out: dict[str, Kind] = {}
        for attr, info in cls.model_fields.items():
            for meta in info.metadata:
                if isinstance(meta, Kind):
                    out[info.alias or attr] = meta
        return out

    @classmethod
    def required(cls) -> tuple[str, ...]:
        """The fields a program must give, by name."""
        return tuple(info.alias or attr for attr, info in cls.model_fields.items()
                     if info.is_required() and attr != "op")

    def get(self, field: str) -> Any:
        """A field's value by its name in programs (``as`` included)."""
        return getattr(self, "as_" if field == "as" else field)


_ADDR = Address()
_HINT = Address(nullable=True)
_LEN = Size()
_AS = Annotated[str | None, *Name().annotation(), Field(default=None, alias="as",
                                                       description="binds the returned address to this name")]
_ADDR_T = Annotated[AddrRef, *_ADDR.annotation(), Field(description="start of the range")]
_LEN_T = Annotated[int, *_LEN.annotation(), Field(description="length of the range in bytes")]


# --- the ops ----------------------------------------------------------------------------------------


class Mmap(OpDef):
    """Map memory: mmap(2)."""

    op: Literal["mmap"] = "mmap"
    addr: Annotated[AddrRef | None, *_HINT.annotation(),
                    Field(description="the address (a hint, or where to map with fixed flags); null: no hint")]
    length: _LEN_T
    prot: Annotated[int, *Prot().annotation(), Field(description="the protection")]
    flags: Annotated[int, *Flags(MMAP_FLAGS).annotation(), Field(description="MAP_* flags")]
    fd: Annotated[str | None, *ObjectRef(("file", "userfaultfd")).annotation(),
                  Field(default=None, description="the file to map (absent: none, for anonymous memory)")]
    offset: Annotated[int, *Size().annotation(), Field(default=0, description="offset in the file, in bytes")]
    as_: _AS
    result: ClassVar[Result] = Result.ADDRESS
    wire: ClassVar[Wire | None] = Wire("m", ("addr", "length", "prot", "flags", "fd", "offset"), nr=C.NR_MMAP,
                                       out="as")


class Munmap(OpDef):
    """Unmap a range: munmap(2)."""

    op: Literal["munmap"] = "munmap"
    addr: _ADDR_T
    length: _LEN_T
    wire: ClassVar[Wire | None] = Wire("s", ("addr", "length"), nr=C.NR_MUNMAP)


class Mprotect(OpDef):
    """Change the protection of a range: mprotect(2)."""

    op: Literal["mprotect"] = "mprotect"
    addr: _ADDR_T
    length: _LEN_T
    prot: Annotated[int, *Prot().annotation(), Field(description="the new protection")]
    prot_flags: Annotated[int, *Flags(PROT_FLAGS).annotation(),
                          Field(default=0, description="PROT_GROWSDOWN/PROT_GROWSUP, OR-ed into prot")]
    wire: ClassVar[Wire | None] = Wire("s", ("addr", "length", "prot_bits"), nr=C.NR_MPROTECT)

    @property
    def prot_bits(self) -> int:
        """The prot argument as the call receives it: prot with the prot_flags."""
        return int(self.prot | self.prot_flags)


class Madvise(OpDef):
    """Give advice about a range: madvise(2)."""

    op: Literal["madvise"] = "madvise"
    addr: _ADDR_T
    length: _LEN_T
    advice: Annotated[int, *Choice(ADVICE, CType.INT).annotation(), Field(description="MADV_* advice")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", ("addr", "length", "advice"), nr=C.NR_MADVISE)


class Mlock(OpDef):
    """Lock a range in memory: mlock(2)."""

    op: Literal["mlock"] = "mlock"
    addr: _ADDR_T
    length: _LEN_T
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", ("addr", "length"), nr=C.NR_MLOCK)


class Munlock(OpDef):
    """Unlock a range: munlock(2)."""

    op: Literal["munlock"] = "munlock"
    addr: _ADDR_T
    length: _LEN_T
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", ("addr", "length"), nr=C.NR_MUNLOCK)


class Mlock2(OpDef):
    """Lock a range, possibly only as it is faulted in: mlock2(2)."""

    op: Literal["mlock2"] = "mlock2"
    addr: _ADDR_T
    length: _LEN_T
    flags: Annotated[int, *Flags(MLOCK2_FLAGS, CType.INT).annotation(), Field(description="MLOCK_* flags")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", ("addr", "length", "flags"), nr=C.NR_MLOCK2)


class Mlockall(OpDef):
    """Lock the whole address space (and future mappings): mlockall(2)."""

    op: Literal["mlockall"] = "mlockall"
    flags: Annotated[int, *Flags(MLOCKALL_FLAGS, CType.INT).annotation(), Field(description="MCL_* flags")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", ("flags",), nr=C.NR_MLOCKALL)


class Munlockall(OpDef):
    """Unlock the whole address space: munlockall(2)."""

    op: Literal["munlockall"] = "munlockall"
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", (), nr=C.NR_MUNLOCKALL)


_MODE = Annotated[int, *Choice(MPOL_MODES, CType.INT).annotation(), Field(description="MPOL_* mode")]
_MODE_FLAGS = Annotated[int, *Flags(MPOL_MODE_FLAGS, CType.INT).annotation(),
                        Field(default=0, description="MPOL_F_* mode flags, OR-ed into mode")]
_NODES = Annotated[int, *Nodes().annotation(), Field(default=0, description="the node mask")]


class Mbind(OpDef):
    """Set the memory policy of a range: mbind(2)."""

    op: Literal["mbind"] = "mbind"
    addr: _ADDR_T
    length: _LEN_T
    mode: _MODE
    nodes: _NODES
    mode_flags: _MODE_FLAGS
    flags: Annotated[int, *Flags(MBIND_FLAGS, CType.U32).annotation(),
                     Field(default=0, description="MPOL_MF_* flags")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("N", ("addr", "length", "mode_bits", "nodes", "flags"))

    @property
    def mode_bits(self) -> int:
        """The mode argument as the call receives it: mode with the mode flags."""
        return int(self.mode | self.mode_flags)


class SetMempolicy(OpDef):
    """Set the task's memory policy: set_mempolicy(2)."""

    op: Literal["set_mempolicy"] = "set_mempolicy"
    mode: _MODE
    nodes: _NODES
    mode_flags: _MODE_FLAGS
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("Q", ("mode_bits", "nodes"))

    @property
    def mode_bits(self) -> int:
        """The mode argument as the call receives it: mode with the mode flags."""
        return int(self.mode | self.mode_flags)


class Mseal(OpDef):
    """Seal a range against changes: mseal(2)."""

    op: Literal["mseal"] = "mseal"
    addr: _ADDR_T
    length: _LEN_T
    flags: Annotated[int, *Flags({}).annotation(), Field(default=0, description="must be 0")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", ("addr", "length", "flags"), nr=C.NR_MSEAL)


class Mremap(OpDef):
    """Shrink, grow or move a mapping: mremap(2)."""

    op: Literal["mremap"] = "mremap"
    addr: _ADDR_T
    old_length: Annotated[int, *Size().annotation(), Field(description="the old length")]
    new_length: Annotated[int, *Size().annotation(), Field(description="the new length")]
    flags: Annotated[int, *Flags(MREMAP_FLAGS).annotation(), Field(default=0, description="MREMAP_* flags")]
    new_addr: Annotated[AddrRef | None, *_HINT.annotation(),
                        Field(default=None, description="the destination (with fixed or dontunmap)")]
    as_: _AS
    result: ClassVar[Result] = Result.ADDRESS
    family: ClassVar[str] = "lifecycle"
    wire: ClassVar[Wire | None] = Wire("m", ("addr", "old_length", "new_length", "flags", "new_addr"),
                                       nr=C.NR_MREMAP, out="as")


class Sbrk(OpDef):
    """Grow or shrink the heap like libc's sbrk(); the old break, relative to the initial one, is returned."""

    op: Literal["sbrk"] = "sbrk"
    increment: Annotated[int, *Size(CType.I64).annotation(), Field(description="bytes to add (negative: remove)")]
    result: ClassVar[Result] = Result.BREAK
    family: ClassVar[str] = "lifecycle"
    wire: ClassVar[Wire | None] = Wire("b", ("increment",))


class Touch(OpDef):
    """Access the start of each page of a range in order, stopping at the first fault."""

    op: Literal["touch"] = "touch"
    addr: _ADDR_T
    length: _LEN_T
    write: Annotated[bool, *Boolean().annotation(), Field(default=True, description="write (true) or read")]
    result: ClassVar[Result] = Result.ACCESS
    wire: ClassVar[Wire | None] = Wire("t", ("addr", "length", "write"))


class Memfd(OpDef):
    """Create a memfd (a shmem file) of a size."""

    op: Literal["memfd"] = "memfd"
    name: Annotated[str, *Name().annotation(), Field(description="the name other ops use for it")]
    size: Annotated[int, *Size(CType.I64).annotation(), Field(description="its size in bytes")]
    creates: ClassVar[str | None] = "file"
    result: ClassVar[Result] = Result.OBJECT
    wire: ClassVar[Wire | None] = Wire("M", ("size",), out="name")


class FileOp(OpDef):
    """Create a regular file of a size (in the runner's temporary directory)."""

    op: Literal["file"] = "file"
    name: Annotated[str, *Name().annotation(), Field(description="the name other ops use for it")]
    size: Annotated[int, *Size(CType.I64).annotation(), Field(description="its size in bytes")]
    creates: ClassVar[str | None] = "file"
    result: ClassVar[Result] = Result.OBJECT
    wire: ClassVar[Wire | None] = Wire("F", ("size",), out="name")


class Open(OpDef):
    """Open a file again: a new open file description (struct file) of the same file."""

    op: Literal["open"] = "open"
    name: Annotated[str, *Name().annotation(), Field(description="the name other ops use for it")]
    of: Annotated[str, *ObjectRef(("file",)).annotation(), Field(description="the file to open")]
    mode: Annotated[int, *Choice(OPEN_MODES, None, raw=False).annotation(),
                    Field(description="r (read-only) or rw")]
    creates: ClassVar[str | None] = "file"
    result: ClassVar[Result] = Result.OBJECT
    wire: ClassVar[Wire | None] = Wire("O", ("of", "mode"), out="name")


class Dup(OpDef):
    """Another descriptor for the same open file: dup(2)."""

    op: Literal["dup"] = "dup"
    name: Annotated[str, *Name().annotation(), Field(description="the name other ops use for it")]
    of: Annotated[str, *ObjectRef(("file", "userfaultfd")).annotation(), Field(description="what to duplicate")]
    creates: ClassVar[str | None] = "of"
    result: ClassVar[Result] = Result.OBJECT
    wire: ClassVar[Wire | None] = Wire("D", ("of",), out="name")


class Ftruncate(OpDef):
    """Set a file's size: ftruncate(2)."""

    op: Literal["ftruncate"] = "ftruncate"
    fd: Annotated[str, *ObjectRef(("file",)).annotation(), Field(description="the file")]
    size: Annotated[int, *Size(CType.I64).annotation(), Field(description="the new size in bytes")]
    wire: ClassVar[Wire | None] = Wire("s", ("fd", "size"), nr=C.NR_FTRUNCATE)


class Close(OpDef):
    """Close a file or a userfaultfd (closing a userfaultfd's last descriptor releases its ranges)."""

    op: Literal["close"] = "close"
    fd: Annotated[str, *ObjectRef(("file", "userfaultfd")).annotation(), Field(description="what to close")]
    wire: ClassVar[Wire | None] = Wire("C", ("fd",))


class Userfaultfd(OpDef):
    """Open a userfaultfd and do the UFFDIO_API handshake."""

    op: Literal["userfaultfd"] = "userfaultfd"
    name: Annotated[str, *Name().annotation(), Field(description="the name other ops use for it")]
    features: Annotated[int, *Flags(UFFD_FEATURES).annotation(),
                        Field(default=0, description="UFFD_FEATURE_* asked for in the handshake")]
    creates: ClassVar[str | None] = "userfaultfd"
    result: ClassVar[Result] = Result.OBJECT
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("U", ("features",), out="name")


class UffdRegister(OpDef):
    """Register a range with a userfaultfd: UFFDIO_REGISTER."""

    op: Literal["uffd_register"] = "uffd_register"
    uffd: Annotated[str, *ObjectRef(("userfaultfd",)).annotation(), Field(description="the userfaultfd")]
    addr: _ADDR_T
    length: _LEN_T
    mode: Annotated[int, *Flags(UFFD_MODES).annotation(), Field(description="UFFDIO_REGISTER_MODE_* modes")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("G", ("uffd", "addr", "length", "mode"))


class UffdUnregister(OpDef):
    """Unregister a range from a userfaultfd: UFFDIO_UNREGISTER."""

    op: Literal["uffd_unregister"] = "uffd_unregister"
    uffd: Annotated[str, *ObjectRef(("userfaultfd",)).annotation(), Field(description="the userfaultfd")]
    addr: _ADDR_T
    length: _LEN_T
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("g", ("uffd", "addr", "length"))


class PrctlSetVmaAnonName(OpDef):
    """Name (or unname) the anonymous memory of a range: prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME)."""

    op: Literal["prctl"] = "prctl"
    option: Literal["set_vma_anon_name"]
    addr: _ADDR_T
    length: _LEN_T
    name: Annotated[str | None, *Text(ANON_NAME_FORMAT_MAX).annotation(),
                    Field(description="the name, or null to remove it")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", (C.PR_SET_VMA, C.PR_SET_VMA_ANON_NAME, "addr", "length", "name"),
                                       nr=C.NR_PRCTL)


class PrctlSetMemoryMerge(OpDef):
    """Turn KSM on (or off) for every compatible VMA, present and future: prctl(PR_SET_MEMORY_MERGE)."""

    op: Literal["prctl"] = "prctl"
    option: Literal["set_memory_merge"]
    value: Annotated[int, *Size().annotation(), Field(description="non-zero to turn it on")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", (C.PR_SET_MEMORY_MERGE, "value", 0, 0, 0), nr=C.NR_PRCTL)


class Fork(OpDef):
    """Fork: the child runs its ops, reports and exits; then the parent goes on."""

    op: Literal["fork"] = "fork"
    # Parsed op by op by vmasim.program.parse (so errors name the child op); the raw JSON here.
    child: Annotated[list[Any], *OpList().annotation(), Field(description="the child's ops")]
    result: ClassVar[Result] = Result.OBJECT
    family: ClassVar[str] = "lifecycle"


class Pad(OpDef):
    """Fill the process with unrelated VMAs outside the window until map_count is max_map_count - headroom."""

    op: Literal["pad"] = "pad"
    headroom: Annotated[int, *Size(CType.INT, minimum=0, maximum=(1 << 31) - 1).annotation(),
                        Field(description="how many VMAs below max_map_count to stop")]
    result: ClassVar[Result] = Result.OBJECT
    wire: ClassVar[Wire | None] = Wire("X", ("headroom",))


#: Every op definition, in the order the format reference lists them.
OP_DEFS: tuple[type[OpDef], ...] = (
    Mmap, Munmap, Mprotect, Madvise, Mlock, Munlock, Mlock2, Mlockall, Munlockall, Mbind, SetMempolicy, Mseal,
    Mremap, Sbrk, Touch, Memfd, FileOp, Open, Dup, Ftruncate, Close, Userfaultfd, UffdRegister, UffdUnregister,
    PrctlSetVmaAnonName, PrctlSetMemoryMerge, Fork, Pad,
)
#: The prctl options and their definitions.
PRCTL_OPTIONS: dict[str, type[OpDef]] = {"set_vma_anon_name": PrctlSetVmaAnonName,
                                         "set_memory_merge": PrctlSetMemoryMerge}
#: Op names, each with its definition (prctl's are chosen by ``option``).
OPS: dict[str, type[OpDef]] = {cls.op_name(): cls for cls in OP_DEFS if cls.op_name() != "prctl"}
OP_NAMES: tuple[str, ...] = tuple(dict.fromkeys(cls.op_name() for cls in OP_DEFS))


def definition_of(raw: Any) -> type[OpDef] | None:
    """The definition a JSON op (a dict) is an instance of, or None when its ``op`` (or option) is unknown."""
    if not isinstance(raw, dict):
        return None
    name = raw.get("op")
    if name == "prctl":
        option = raw.get("option")
        return PRCTL_OPTIONS.get(option) if isinstance(option, str) else None
    return OPS.get(name) if isinstance(name, str) else None
