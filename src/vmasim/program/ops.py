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
from vmasim.program.names import (
    ADVICE,
    ANON_NAME_FORMAT_MAX,
    FILE_SYSTEMS,
    MBIND_FLAGS,
    MLOCK2_FLAGS,
    MLOCKALL_FLAGS,
    MMAP_FLAGS,
    MPOL_MODE_FLAGS,
    MPOL_MODES,
    MREMAP_FLAGS,
    NR_PKEY_ALLOC,
    NR_PKEY_FREE,
    NR_PKEY_MPROTECT,
    NR_SHMAT,
    NR_SHMDT,
    OPEN_MODES,
    PKEY_RIGHTS,
    PROT_FLAGS,
    PWRITE_MAX,
    SHMAT_FLAGS,
    SHMGET_FLAGS,
    UFFD_FEATURES,
    UFFD_MODES,
)
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
    Ranges,
    Size,
    Text,
)

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
    #: ``ret`` is the number returned (a key, a byte count), or -1 and the errno's name.
    VALUE = "value"


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
    #: The op replaces the process's address space (exec): addresses bound before it are gone.
    new_image: ClassVar[bool] = False

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


_BREAK_AS = Annotated[str | None, *Name().annotation(),
                     Field(default=None, alias="as", description="binds the returned break (an address) to this name")]


class Sbrk(OpDef):
    """Grow or shrink the heap like libc's sbrk(); the old break, relative to the initial one, is returned."""

    op: Literal["sbrk"] = "sbrk"
    increment: Annotated[int, *Size(CType.I64).annotation(), Field(description="bytes to add (negative: remove)")]
    as_: _BREAK_AS
    result: ClassVar[Result] = Result.BREAK
    family: ClassVar[str] = "lifecycle"
    wire: ClassVar[Wire | None] = Wire("b", ("increment",), out="as")


class Brk(OpDef):
    """Set the break: brk(2); the new break (the old one when refused), relative to the initial one, is returned.

    ``0`` (or any address below the initial break) only asks for the break:
    the program's heap starts at the initial break.
    """

    op: Literal["brk"] = "brk"
    addr: Annotated[AddrRef, *_ADDR.annotation(), Field(description="the new break (0: query)")]
    as_: _BREAK_AS
    result: ClassVar[Result] = Result.BREAK
    family: ClassVar[str] = "lifecycle"
    wire: ClassVar[Wire | None] = Wire("k", ("addr",), out="as")


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
    """Create a file of a size: a regular file (in the runner's temporary directory) or one on a tmpfs."""

    op: Literal["file"] = "file"
    name: Annotated[str, *Name().annotation(), Field(description="the name other ops use for it")]
    size: Annotated[int, *Size(CType.I64).annotation(), Field(description="its size in bytes")]
    fs: Annotated[int, *Choice(FILE_SYSTEMS, None, raw=False).annotation(),
                  Field(default=0, description="regular: the runner's temporary directory; tmpfs: a tmpfs "
                                               "(/dev/shm, like shm_open()), a shmem file")]
    creates: ClassVar[str | None] = "file"
    result: ClassVar[Result] = Result.OBJECT
    wire: ClassVar[Wire | None] = Wire("F", ("size", "fs"), out="name")


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


class Pwrite(OpDef):
    """Write bytes at an offset: pwrite(2); a write past the end grows the file (under its mappings too)."""

    op: Literal["pwrite"] = "pwrite"
    fd: Annotated[str, *ObjectRef(("file", "userfaultfd")).annotation(), Field(description="the file")]
    offset: Annotated[int, *Size(CType.I64).annotation(), Field(description="where to write, in bytes")]
    length: Annotated[int, *Size(CType.U64, minimum=0, maximum=PWRITE_MAX).annotation(),
                      Field(description="how many bytes to write")]
    result: ClassVar[Result] = Result.VALUE
    wire: ClassVar[Wire | None] = Wire("W", ("fd", "offset", "length"))


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
    option: Annotated[Literal["set_vma_anon_name"], Field(description="the prctl option")]
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
    option: Annotated[Literal["set_memory_merge"], Field(description="the prctl option")]
    value: Annotated[int, *Size().annotation(), Field(description="non-zero to turn it on")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", (C.PR_SET_MEMORY_MERGE, "value", 0, 0, 0), nr=C.NR_PRCTL)


class Exec(OpDef):
    """Execute the runner's program again (execve(2)): a new address space, laid out as at the program's start.

    Descriptors stay open (a userfaultfd's context stays with the old address
    space, so registering through it fails); addresses bound before it can no
    longer be used; the task's memory policy and KSM's merge-any setting carry
    over, locks and protection keys do not.
    """

    op: Literal["exec"] = "exec"
    new_image: ClassVar[bool] = True
    family: ClassVar[str] = "lifecycle"
    wire: ClassVar[Wire | None] = Wire("e", ())


class Shmget(OpDef):
    """Create a System V shared memory segment: shmget(IPC_PRIVATE, size, IPC_CREAT | flags)."""

    op: Literal["shmget"] = "shmget"
    name: Annotated[str, *Name().annotation(), Field(description="the name other ops use for it")]
    size: Annotated[int, *Size().annotation(), Field(description="its size in bytes")]
    flags: Annotated[int, *Flags(SHMGET_FLAGS, CType.INT).annotation(),
                     Field(default=0, description="SHM_* flags (other bits are dropped)")]
    creates: ClassVar[str | None] = "shm"
    result: ClassVar[Result] = Result.OBJECT
    family: ClassVar[str] = "lifecycle"
    wire: ClassVar[Wire | None] = Wire("I", ("size", "flag_bits"), out="name")

    @property
    def flag_bits(self) -> int:
        """The flags the call gets: only the named ones (hugetlb segments are not modelled)."""
        return int(self.flags) & SHMGET_FLAGS["noreserve"]


class Shmat(OpDef):
    """Attach a segment: shmat(2); the attachment's address is returned."""

    op: Literal["shmat"] = "shmat"
    shm: Annotated[str, *ObjectRef(("shm",)).annotation(), Field(description="the segment")]
    addr: Annotated[AddrRef | None, *_HINT.annotation(),
                    Field(default=None, description="where to attach it; null: the kernel chooses")]
    flags: Annotated[int, *Flags(SHMAT_FLAGS, CType.INT).annotation(), Field(default=0, description="SHM_* flags")]
    as_: _AS
    result: ClassVar[Result] = Result.ADDRESS
    family: ClassVar[str] = "lifecycle"
    wire: ClassVar[Wire | None] = Wire("m", ("shm", "addr", "flags"), nr=NR_SHMAT, out="as")


class Shmdt(OpDef):
    """Detach the attachment that starts at an address (and its fragments): shmdt(2)."""

    op: Literal["shmdt"] = "shmdt"
    addr: Annotated[AddrRef, *_ADDR.annotation(), Field(description="where the attachment starts")]
    family: ClassVar[str] = "lifecycle"
    wire: ClassVar[Wire | None] = Wire("s", ("addr",), nr=NR_SHMDT)


class PkeyAlloc(OpDef):
    """Allocate a protection key with initial access rights: pkey_alloc(2); the key is returned."""

    op: Literal["pkey_alloc"] = "pkey_alloc"
    access: Annotated[int, *Flags(PKEY_RIGHTS).annotation(), Field(default=0, description="PKEY_DISABLE_* rights")]
    flags: Annotated[int, *Size().annotation(), Field(default=0, description="must be 0")]
    result: ClassVar[Result] = Result.VALUE
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("v", ("flags", "access"), nr=NR_PKEY_ALLOC)


class PkeyFree(OpDef):
    """Free a protection key: pkey_free(2)."""

    op: Literal["pkey_free"] = "pkey_free"
    pkey: Annotated[int, *Size(CType.INT).annotation(), Field(description="the key")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", ("pkey",), nr=NR_PKEY_FREE)


class PkeyMprotect(OpDef):
    """Change the protection and protection key of a range: pkey_mprotect(2) (key -1: like mprotect)."""

    op: Literal["pkey_mprotect"] = "pkey_mprotect"
    addr: _ADDR_T
    length: _LEN_T
    prot: Annotated[int, *Prot().annotation(), Field(description="the new protection")]
    pkey: Annotated[int, *Size(CType.INT).annotation(), Field(description="the key (-1: keep it, as mprotect)")]
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("s", ("addr", "length", "prot", "pkey"), nr=NR_PKEY_MPROTECT)


class ProcessMadvise(OpDef):
    """Give advice about several ranges of the program's own process: process_madvise(2) through a pidfd.

    The ranges are advised in order until one fails; the bytes of those
    advised are returned (the error when the first one fails).
    """

    op: Literal["process_madvise"] = "process_madvise"
    ranges: Annotated[tuple[tuple[AddrRef, int], ...], *Ranges(1024).annotation(),
                      Field(description="the ranges, in order")]
    advice: Annotated[int, *Choice(ADVICE, CType.INT).annotation(), Field(description="MADV_* advice")]
    flags: Annotated[int, *Size(CType.U32).annotation(), Field(default=0, description="must be 0")]
    result: ClassVar[Result] = Result.VALUE
    family: ClassVar[str] = "attrs"
    wire: ClassVar[Wire | None] = Wire("V", ("ranges", "count", "advice", "flags"))

    @property
    def count(self) -> int:
        """How many ranges there are."""
        return len(self.ranges)


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
    Brk, Pwrite, Exec, Shmget, Shmat, Shmdt, PkeyAlloc, PkeyFree, PkeyMprotect, ProcessMadvise,
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
