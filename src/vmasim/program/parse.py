"""Parse and validate ``vmasim-program/1`` documents into typed :class:`Program` values.

Every value is normalised to what the system call takes: protections, flags,
advice and modes become the kernel's integers, lengths become unsigned 64-bit
integers, and addresses become :class:`AddrRef` (a name bound earlier plus an
offset), resolved only when the program runs.  Both the model and the kernel
runner execute the same :class:`Program`, so they cannot disagree about what
a program means.

A malformed program raises :class:`ProgramError` naming the op and the field,
before anything runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmasim import constants as C

FORMAT = "vmasim-program/1"
DEFAULT_WINDOW_START = 0x7E0000000000
DEFAULT_WINDOW_LENGTH = 4 << 30
MASK64 = (1 << 64) - 1
#: vm.max_map_count is a C int, so no headroom below it can be larger.
MAX_HEADROOM = (1 << 31) - 1


class ProgramError(ValueError):
    """A program that does not follow the contract; names the op and the field at fault."""

    def __init__(self, where: str, field_name: str | None, message: str) -> None:
        self.where = where
        self.field = field_name
        self.message = message
        loc = where if field_name is None else f"{where}, field '{field_name}'"
        super().__init__(f"{loc}: {message}")


@dataclass(frozen=True, slots=True)
class AddrRef:
    """An address as written in a program: ``name + offset``, or an absolute value when ``name`` is None."""

    name: str | None
    offset: int

    def resolve(self, names: Mapping[str, int]) -> int:
        """The 64-bit address this refers to, given the addresses bound so far."""
        base = 0 if self.name is None else names[self.name]
        return (base + self.offset) & MASK64

    def __str__(self) -> str:
        if self.name is None:
            return hex(self.offset)
        if self.offset == 0:
            return self.name
        sign = "+" if self.offset > 0 else "-"
        return f"{self.name}{sign}{hex(abs(self.offset))}"


@dataclass(frozen=True, slots=True)
class Op:
    """One validated op.  ``args`` holds normalised values keyed by the contract's field names."""

    index: int
    path: str
    op: str
    args: Mapping[str, Any]
    child: tuple[Op, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.args[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The normalised value of field ``key``, or ``default``."""
        return self.args.get(key, default)


@dataclass(frozen=True, slots=True)
class Program:
    """A whole validated program: the window, whether walls are built, and the ops."""

    window_start: int = DEFAULT_WINDOW_START
    window_length: int = DEFAULT_WINDOW_LENGTH
    walls: bool = True
    ops: tuple[Op, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def window_end(self) -> int:
        """The first address above the window."""
        return self.window_start + self.window_length


# --- name tables ---------------------------------------------------------------

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
MSEAL_FLAGS: dict[str, int] = {}
PRCTL_OPTIONS = ("set_vma_anon_name", "set_memory_merge")

# op name -> (required fields, optional fields)
OP_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mmap": (("addr", "length", "prot", "flags"), ("fd", "offset", "as")),
    "munmap": (("addr", "length"), ()),
    "mprotect": (("addr", "length", "prot"), ("prot_flags",)),
    "madvise": (("addr", "length", "advice"), ()),
    "mlock": (("addr", "length"), ()),
    "munlock": (("addr", "length"), ()),
    "mlock2": (("addr", "length", "flags"), ()),
    "mlockall": (("flags",), ()),
    "munlockall": ((), ()),
    "mbind": (("addr", "length", "mode"), ("nodes", "mode_flags", "flags")),
    "set_mempolicy": (("mode",), ("nodes", "mode_flags")),
    "mseal": (("addr", "length"), ("flags",)),
    "mremap": (("addr", "old_length", "new_length"), ("flags", "new_addr", "as")),
    "sbrk": (("increment",), ()),
    "touch": (("addr", "length"), ("write",)),
    "memfd": (("name", "size"), ()),
    "file": (("name", "size"), ()),
    "open": (("name", "of", "mode"), ()),
    "dup": (("name", "of"), ()),
    "ftruncate": (("fd", "size"), ()),
    "close": (("fd",), ()),
    "userfaultfd": (("name",), ("features",)),
    "uffd_register": (("uffd", "addr", "length", "mode"), ()),
    "uffd_unregister": (("uffd", "addr", "length"), ()),
    "prctl": (("option",), ("addr", "length", "name", "value")),
    "fork": (("child",), ()),
    "pad": (("headroom",), ()),
}

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:#-]*$")
_ADDR_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:([+-])\s*(\S+))?\s*$")
_SIZE_RE = re.compile(r"^\s*([+-]?)\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*([kKmMgGtT]?)\s*$")
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


# --- scalar parsers --------------------------------------------------------------


class _Ctx:
    """Validation state: where we are and which names are bound."""

    def __init__(self, where: str, addr_names: set[str], fd_names: dict[str, str]) -> None:
        self.where = where
        self.addr_names = addr_names
        self.fd_names = fd_names  # name -> kind: "file" or "uffd"

    def fail(self, field_name: str | None, message: str) -> ProgramError:
        return ProgramError(self.where, field_name, message)


def parse_int(value: Any, *, allow_suffix: bool = True) -> int:
    """Parse an integer, hex string or (when allowed) a K/M/G/T-suffixed size; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and (allow_suffix or not m.group(3)):
            sign, digits, suffix = m.groups()
            n = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 10)
            n *= _SUFFIX[suffix.lower()]
            return -n if sign == "-" else n
    raise ValueError(f"expected an integer, a hex string or a size like '16K', got {value!r}")


def _size(ctx: _Ctx, args: Mapping[str, Any], key: str, *, signed: bool = False) -> int:
    try:
        n = parse_int(args[key])
    except ValueError as exc:
        raise ctx.fail(key, str(exc)) from None
    if signed:
        if not -(1 << 63) <= n < (1 << 64):
            raise ctx.fail(key, "value does not fit in 64 bits")
        return n
    if not -(1 << 63) <= n < (1 << 64):
        raise ctx.fail(key, "value does not fit in 64 bits")
    return n & MASK64


def _addr(ctx: _Ctx, args: Mapping[str, Any], key: str, *, nullable: bool = False) -> AddrRef | None:
    value = args[key]
    if value is None:
        if nullable:
            return None
        raise ctx.fail(key, "an address is required here (null is only allowed for mmap and mremap hints)")
    if isinstance(value, str):
        m = _ADDR_RE.match(value)
        if m:
            name, sign, rest = m.groups()
            if name not in ctx.addr_names:
                raise ctx.fail(key, f"name {name!r} is used before it is bound")
            off = 0
            if sign is not None:
                try:
                    off = parse_int(rest)
                except ValueError as exc:
                    raise ctx.fail(key, str(exc)) from None
                if sign == "-":
                    off = -off
            return AddrRef(name, off)
    try:
        n = parse_int(value, allow_suffix=False)
    except ValueError:
        raise ctx.fail(key, f"expected an address (integer, hex string or NAME+N), got {value!r}") from None
    if not -(1 << 63) <= n < (1 << 64):
        raise ctx.fail(key, "address does not fit in 64 bits")
    return AddrRef(None, n & MASK64)


def _names(ctx: _Ctx, args: Mapping[str, Any], key: str, table: Mapping[str, int], *, raw_ok: bool = True) -> int:
    """A list of names (or one name) from ``table``, OR-ed; a raw integer is accepted as the bits themselves."""
    value = args[key]
    if isinstance(value, int) and not isinstance(value, bool) and raw_ok:
        if value < 0 or value >= 1 << 64:
            raise ctx.fail(key, "raw flag value out of range")
        return value
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ctx.fail(key, f"expected a name or a list of names, got {value!r}")
    bits = 0
    for item in items:
        if not isinstance(item, str):
            raise ctx.fail(key, f"expected a name, got {item!r}")
        try:
            bits |= table[item.lower()]
        except KeyError:
            known = ", ".join(sorted(table)) or "none"
            raise ctx.fail(key, f"unknown name {item!r} (known: {known})") from None
    return bits


def _one_name(ctx: _Ctx, args: Mapping[str, Any], key: str, table: Mapping[str, int]) -> int:
    value = args[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return value & MASK64
    if not isinstance(value, str) or value.lower() not in table:
        known = ", ".join(sorted(table))
        raise ctx.fail(key, f"unknown value {value!r} (known: {known})")
    return table[value.lower()]


def parse_prot(value: Any) -> int:
    """``"none"`` or a string of r, w, x (or a raw integer) to PROT_* bits; raise ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value >= 1 << 32:
            raise ValueError("raw prot value out of range")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected 'none' or letters r, w, x, got {value!r}")
    text = value.strip().lower()
    if text in ("none", "", "-", "---"):
        return C.PROT_NONE
    bits = 0
    for ch in text:
        bit = {"r": C.PROT_READ, "w": C.PROT_WRITE, "x": C.PROT_EXEC, "-": 0}.get(ch)
        if bit is None:
            raise ValueError(f"expected 'none' or letters r, w, x, got {value!r}")
        bits |= bit
    return bits


def _prot(ctx: _Ctx, args: Mapping[str, Any], key: str) -> int:
    try:
        return parse_prot(args[key])
    except ValueError as exc:
        raise ctx.fail(key, str(exc)) from None


def _nodes(ctx: _Ctx, args: Mapping[str, Any], key: str) -> int:
    value = args.get(key)
    if value is None:
        return 0
    items: list[Any]
    if isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, str):
        items = []
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            lo, _, hi = part.partition("-")
            try:
                a, b = int(lo), int(hi or lo)
            except ValueError:
                raise ctx.fail(key, f"expected node numbers like '0' or '0-3', got {value!r}") from None
            items.extend(range(a, b + 1))
    elif isinstance(value, list):
        items = value
    else:
        raise ctx.fail(key, f"expected a list of node numbers, got {value!r}")
    mask = 0
    for node in items:
        if not isinstance(node, int) or isinstance(node, bool) or not 0 <= node < 64:
            raise ctx.fail(key, f"node numbers are integers 0..63, got {node!r}")
        mask |= 1 << node
    return mask


def _label(ctx: _Ctx, args: Mapping[str, Any], key: str) -> str:
    value = args[key]
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ctx.fail(key, f"expected a name (letters, digits, '_', '.', ':', '#', '-'), got {value!r}")
    return value


def _fd_ref(ctx: _Ctx, args: Mapping[str, Any], key: str, kinds: tuple[str, ...]) -> str:
    value = args[key]
    if not isinstance(value, str):
        raise ctx.fail(key, f"expected the name of an earlier op's object, got {value!r}")
    kind = ctx.fd_names.get(value)
    if kind is None:
        raise ctx.fail(key, f"name {value!r} is used before it is bound")
    if kind not in kinds:
        raise ctx.fail(key, f"{value!r} is a {kind}, expected a {' or '.join(kinds)}")
    return value


# --- ops ---------------------------------------------------------------------------


def _parse_op(raw: Any, index: int, path: str, ctx_names: tuple[set[str], dict[str, str]]) -> Op:
    addr_names, fd_names = ctx_names
    where = f"op {path}"
    if not isinstance(raw, Mapping):
        raise ProgramError(where, None, f"an op must be a JSON object, got {raw!r}")
    name = raw.get("op")
    if not isinstance(name, str):
        raise ProgramError(where, "op", "missing or not a string")
    where = f"op {path} ({name})"
    if name not in OP_FIELDS:
        raise ProgramError(where, "op", f"unknown op {name!r} (known: {', '.join(OP_FIELDS)})")
    ctx = _Ctx(where, addr_names, fd_names)
    required, optional = OP_FIELDS[name]
    for key in required:
        if key not in raw:
            raise ctx.fail(key, "missing")
    for key in raw:
        if key != "op" and key not in required and key not in optional and not key.startswith("_"):
            raise ctx.fail(key, "unknown field for this op")

    a: dict[str, Any] = {}
    child: tuple[Op, ...] = ()

    def opt(key: str) -> bool:
        return key in raw and raw[key] is not None

    if name == "mmap":
        a["addr"] = _addr(ctx, raw, "addr", nullable=True)
        a["length"] = _size(ctx, raw, "length")
        a["prot"] = _prot(ctx, raw, "prot")
        a["flags"] = _names(ctx, raw, "flags", MMAP_FLAGS)
        a["fd"] = _fd_ref(ctx, raw, "fd", ("file", "userfaultfd")) if opt("fd") else None
        a["offset"] = _size(ctx, raw, "offset") if opt("offset") else 0
    elif name in ("munmap", "mlock", "munlock"):
        a["addr"] = _addr(ctx, raw, "addr")
        a["length"] = _size(ctx, raw, "length")
    elif name == "mprotect":
        a["addr"] = _addr(ctx, raw, "addr")
        a["length"] = _size(ctx, raw, "length")
        a["prot"] = _prot(ctx, raw, "prot")
        if opt("prot_flags"):
            a["prot"] |= _names(ctx, raw, "prot_flags", PROT_FLAGS)
    elif name == "madvise":
        a["addr"] = _addr(ctx, raw, "addr")
        a["length"] = _size(ctx, raw, "length")
        a["advice"] = _one_name(ctx, raw, "advice", ADVICE)
    elif name == "mlock2":
        a["addr"] = _addr(ctx, raw, "addr")
        a["length"] = _size(ctx, raw, "length")
        a["flags"] = _names(ctx, raw, "flags", MLOCK2_FLAGS)
    elif name == "mlockall":
        a["flags"] = _names(ctx, raw, "flags", MLOCKALL_FLAGS)
    elif name == "munlockall":
        pass
    elif name in ("mbind", "set_mempolicy"):
        if name == "mbind":
            a["addr"] = _addr(ctx, raw, "addr")
            a["length"] = _size(ctx, raw, "length")
            a["flags"] = _names(ctx, raw, "flags", MBIND_FLAGS) if opt("flags") else 0
        mode = _one_name(ctx, raw, "mode", MPOL_MODES)
        if opt("mode_flags"):
            mode |= _names(ctx, raw, "mode_flags", MPOL_MODE_FLAGS)
        a["mode"] = mode
        a["nodes"] = _nodes(ctx, raw, "nodes")
    elif name == "mseal":
        a["addr"] = _addr(ctx, raw, "addr")
        a["length"] = _size(ctx, raw, "length")
        a["flags"] = _names(ctx, raw, "flags", MSEAL_FLAGS) if opt("flags") else 0
    elif name == "mremap":
        a["addr"] = _addr(ctx, raw, "addr")
        a["old_length"] = _size(ctx, raw, "old_length")
        a["new_length"] = _size(ctx, raw, "new_length")
        a["flags"] = _names(ctx, raw, "flags", MREMAP_FLAGS) if opt("flags") else 0
        a["new_addr"] = _addr(ctx, raw, "new_addr", nullable=True) if "new_addr" in raw else None
    elif name == "sbrk":
        a["increment"] = _size(ctx, raw, "increment", signed=True)
        if a["increment"] >= 1 << 63:
            raise ctx.fail("increment", "value does not fit in a signed 64-bit integer")
    elif name == "touch":
        a["addr"] = _addr(ctx, raw, "addr")
        a["length"] = _size(ctx, raw, "length")
        write = raw.get("write", True)
        if not isinstance(write, bool):
            raise ctx.fail("write", f"expected true or false, got {write!r}")
        a["write"] = write
    elif name in ("memfd", "file"):
        a["name"] = _label(ctx, raw, "name")
        a["size"] = _size(ctx, raw, "size")
    elif name == "open":
        a["name"] = _label(ctx, raw, "name")
        a["of"] = _fd_ref(ctx, raw, "of", ("file",))
        mode = raw["mode"]
        if mode not in ("r", "rw"):
            raise ctx.fail("mode", f"expected 'r' or 'rw', got {mode!r}")
        a["mode"] = mode
    elif name == "dup":
        a["name"] = _label(ctx, raw, "name")
        a["of"] = _fd_ref(ctx, raw, "of", ("file", "userfaultfd"))
    elif name == "ftruncate":
        a["fd"] = _fd_ref(ctx, raw, "fd", ("file",))
        a["size"] = _size(ctx, raw, "size")
    elif name == "close":
        a["fd"] = _fd_ref(ctx, raw, "fd", ("file", "userfaultfd"))
    elif name == "userfaultfd":
        a["name"] = _label(ctx, raw, "name")
        a["features"] = _names(ctx, raw, "features", UFFD_FEATURES) if opt("features") else 0
    elif name in ("uffd_register", "uffd_unregister"):
        a["uffd"] = _fd_ref(ctx, raw, "uffd", ("userfaultfd",))
        a["addr"] = _addr(ctx, raw, "addr")
        a["length"] = _size(ctx, raw, "length")
        if name == "uffd_register":
            a["mode"] = _names(ctx, raw, "mode", UFFD_MODES)
    elif name == "prctl":
        option = raw["option"]
        if option not in PRCTL_OPTIONS:
            raise ctx.fail("option", f"unknown option {option!r} (known: {', '.join(PRCTL_OPTIONS)})")
        a["option"] = option
        if option == "set_vma_anon_name":
            for key in ("addr", "length"):
                if key not in raw:
                    raise ctx.fail(key, "missing")
            a["addr"] = _addr(ctx, raw, "addr")
            a["length"] = _size(ctx, raw, "length")
            nm = raw.get("name")
            if nm is not None and not isinstance(nm, str):
                raise ctx.fail("name", f"expected a string or null, got {nm!r}")
            a["name"] = nm
        else:
            if "value" not in raw:
                raise ctx.fail("value", "missing")
            a["value"] = _size(ctx, raw, "value")
    elif name == "fork":
        ops = raw["child"]
        if not isinstance(ops, list):
            raise ctx.fail("child", "expected a list of ops")
        child = _parse_ops(ops, f"{path}.", (set(addr_names), dict(fd_names)))
    elif name == "pad":
        n = _size(ctx, raw, "headroom", signed=True)
        if not 0 <= n <= MAX_HEADROOM:
            raise ctx.fail("headroom", f"expected 0..{MAX_HEADROOM}, got {n}")
        a["headroom"] = n

    # Bind names after the op's own fields are checked, so an op cannot refer to itself.
    if "as" in raw and raw["as"] is not None:
        if name not in ("mmap", "mremap"):
            raise ctx.fail("as", "only mmap and mremap bind an address")
        bound = _label(ctx, raw, "as")
        if bound == "W":
            raise ctx.fail("as", "'W' is the window's start and cannot be rebound")
        a["as"] = bound
        addr_names.add(bound)
    elif name in ("mmap", "mremap"):
        a["as"] = None
    if name in ("memfd", "file", "open", "dup"):
        kind = "file"
        if name == "dup" and fd_names[a["of"]] == "userfaultfd":
            kind = "userfaultfd"
        fd_names[a["name"]] = kind
    elif name == "userfaultfd":
        fd_names[a["name"]] = "userfaultfd"
    return Op(index=index, path=path, op=name, args=a, child=child, raw=raw)


def _parse_ops(raw_ops: Sequence[Any], prefix: str, names: tuple[set[str], dict[str, str]]) -> tuple[Op, ...]:
    return tuple(_parse_op(raw, i, f"{prefix}{i}", names) for i, raw in enumerate(raw_ops))


def parse_program(doc: Mapping[str, Any] | str | bytes) -> Program:
    """Validate a program (a parsed JSON object, or JSON text) and return it as a :class:`Program`.

    Raises :class:`ProgramError` for anything the contract does not allow.
    """
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError as exc:
            raise ProgramError("program", None, f"not valid JSON: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ProgramError("program", None, "a program must be a JSON object")
    for key in doc:
        if key not in ("format", "window", "walls", "ops") and not key.startswith("_"):
            raise ProgramError("program", key, "unknown top-level field")
    fmt = doc.get("format", FORMAT)
    if fmt != FORMAT:
        raise ProgramError("program", "format", f"expected {FORMAT!r}, got {fmt!r}")
    start, length = DEFAULT_WINDOW_START, DEFAULT_WINDOW_LENGTH
    window = doc.get("window")
    if window is not None:
        if not isinstance(window, Mapping):
            raise ProgramError("program", "window", "expected an object with start and length")
        try:
            if "start" in window:
                start = parse_int(window["start"], allow_suffix=False)
            if "length" in window:
                length = parse_int(window["length"])
        except ValueError as exc:
            raise ProgramError("program", "window", str(exc)) from None
        if start % C.PAGE_SIZE or length % C.PAGE_SIZE or length <= 0 or start <= 0:
            raise ProgramError("program", "window", "start and length must be positive and page-aligned")
        if start + length > C.TASK_SIZE:
            raise ProgramError("program", "window", "the window must lie below the top of the user address space")
    walls = doc.get("walls", True)
    if not isinstance(walls, bool):
        raise ProgramError("program", "walls", f"expected true or false, got {walls!r}")
    raw_ops = doc.get("ops", [])
    if not isinstance(raw_ops, list):
        raise ProgramError("program", "ops", "expected a list of ops")
    ops = _parse_ops(raw_ops, "", ({"W"}, {}))
    return Program(window_start=start, window_length=length, walls=walls, ops=ops, source=dict(doc))


def load_program(path: str) -> Program:
    """Read and validate the program stored in the JSON file at ``path``."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        return parse_program(text)
    except ProgramError as exc:
        raise ProgramError(f"{path}: {exc.where}", exc.field, exc.message) from None
