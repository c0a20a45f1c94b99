"""The kinds of value an op's field holds, each defined once: how JSON spells it, what it becomes, its C type.

A field of an op definition (see :mod:`vmasim.program.ops`) is annotated
with one :class:`Kind`.  The kind parses the JSON value (raising
``ValueError`` with a message for the user), documents it, gives its JSON
Schema, and says which C type the system-call argument it feeds has.  Parsed
integers are what a 64-bit register would hold (two's complement, masked to
64 bits); the model narrows them to the C type the kernel reads (an ``int``
advice of ``2**32 + 4`` is ``4``), as the kernel does.  A value no 64-bit
register could hold is rejected before anything runs.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import PlainValidator, WithJsonSchema

from vmasim import constants as C
from vmasim.ctype import MASK64 as MASK64
from vmasim.ctype import CType as CType
from vmasim.ctype import fits_register as fits_register

#: The one grammar of names: what an op binds (``as``, object names) and what addresses (``NAME+N``) use.
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
NAME_RE = re.compile(rf"^{_IDENT}$")
#: Longest name: plenty for a label, short enough for any protocol line.
NAME_MAX = 64
_ADDR_RE = re.compile(rf"^\s*({_IDENT})\s*(?:([+-])\s*(\S+))?\s*$")
_SIZE_RE = re.compile(r"^\s*([+-]?)\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*([kKmMgGtT]?)\s*$")
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
#: Longest string accepted where a number is expected (a 64-bit value in hex has 18 characters).
_NUMBER_TEXT_MAX = 40


def parse_int(value: Any, *, allow_suffix: bool = True) -> int:
    """An integer, a hex string or (when allowed) a K/M/G/T-suffixed size; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and len(value) <= _NUMBER_TEXT_MAX:
        m = _SIZE_RE.match(value)
        if m and (allow_suffix or not m.group(3)):
            sign, digits, suffix = m.groups()
            n = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 10)
            n *= _SUFFIX[suffix.lower()]
            return -n if sign == "-" else n
    what = "an integer, a hex string or a size like '16K'" if allow_suffix else "an integer or a hex string"
    raise ValueError(f"expected {what}, got {shorten(value)}")


def _register(n: int, what: str = "value") -> int:
    if not fits_register(n):
        raise ValueError(f"{what} {n:#x} does not fit in a 64-bit register")
    return n & C.MASK64


@dataclass(frozen=True, slots=True)
class AddrRef:
    """An address as written in a program: ``name + offset``, or an absolute value when ``name`` is None."""

    name: str | None
    offset: int

    def resolve(self, names: Mapping[str, int]) -> int:
        """The 64-bit address this refers to, given the addresses bound so far."""
        base = 0 if self.name is None else names[self.name]
        return (base + self.offset) & C.MASK64

    def __str__(self) -> str:
        if self.name is None:
            return hex(self.offset)
        if self.offset == 0:
            return self.name
        sign = "+" if self.offset > 0 else "-"
        return f"{self.name}{sign}{hex(abs(self.offset))}"


# --- kinds ------------------------------------------------------------------------------------------


class Kind:
    """What a field holds: subclasses parse, document and describe one kind of value."""

    #: The C type of the argument the field feeds (None: the field is not a syscall argument).
    ctype: CType | None = None

    def parse(self, value: Any) -> Any:
        """The field's value from its JSON value; ValueError (the message is shown to the user)."""
        raise NotImplementedError

    def doc(self) -> str:
        """How the value is written, in a few words (for the format reference)."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the JSON value."""
        raise NotImplementedError

    def annotation(self) -> tuple[Any, ...]:
        """The pydantic metadata that makes a field of this kind: the kind itself, its parser, its schema."""
        return (self, PlainValidator(self.parse), WithJsonSchema(self.schema()))


_INT_SCHEMA: dict[str, Any] = {"type": "integer"}
_HEX_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"^[+-]?0[xX][0-9a-fA-F]+$"}


class Address(Kind):
    """An address: an integer, a hex string, or ``NAME``, ``NAME+N``, ``NAME-N`` (``null`` where allowed)."""

    ctype = CType.U64

    def __init__(self, nullable: bool = False) -> None:
        self.nullable = nullable

    def parse(self, value: Any) -> AddrRef | None:
        """An :class:`AddrRef` (names are checked later, against what earlier ops bound)."""
        if value is None:
            if self.nullable:
                return None
            raise ValueError("an address is required here (null is only allowed for mmap and mremap hints)")
        if isinstance(value, str) and not value.lstrip()[:1].isdigit() and value.lstrip()[:1] not in "+-":
            m = _ADDR_RE.match(value) if len(value) <= NAME_MAX + _NUMBER_TEXT_MAX else None
            if m is None:
                raise ValueError(f"expected an address (integer, hex string or NAME+N), got {shorten(value)}")
            name, sign, rest = m.groups()
            off = 0
            if sign is not None:
                off = parse_int(rest, allow_suffix=True)
                if off < 0:
                    raise ValueError(f"expected NAME+N or NAME-N with a non-negative N, got {value!r}")
                off = -off if sign == "-" else off
                if not fits_register(off) or not fits_register(-off):
                    raise ValueError(f"offset {off:#x} does not fit in a 64-bit register")
            return AddrRef(name, off)
        try:
            n = parse_int(value, allow_suffix=False)
        except ValueError:
            raise ValueError(f"expected an address (integer, hex string or NAME+N), got {shorten(value)}") from None
        return AddrRef(None, _register(n, "address"))

    def doc(self) -> str:
        """The format reference's description."""
        text = "address: integer, hex string, or NAME, NAME+N, NAME-N"
        return text + "; null for no hint" if self.nullable else text

    def schema(self) -> dict[str, Any]:
        """Integers, hex strings, NAME±N strings (and null when nullable)."""
        options: list[dict[str, Any]] = [
            _INT_SCHEMA, _HEX_SCHEMA,
            {"type": "string", "pattern": rf"^\s*{_IDENT}\s*([+-]\s*\S+)?\s*$"},
        ]
        if self.nullable:
            options.append({"type": "null"})
        return {"anyOf": options}


class Size(Kind):
    """A length, size, offset or count: an integer, a hex string, or a size with a K, M, G or T suffix."""

    def __init__(self, ctype: CType = CType.U64, *, minimum: int | None = None, maximum: int | None = None) -> None:
        self.ctype = ctype
        self.minimum = minimum
        self.maximum = maximum

    def parse(self, value: Any) -> int:
        """The register value (signed C types keep their sign: sbrk's increment, ftruncate's length)."""
        n = parse_int(value)
        if (self.minimum is not None and n < self.minimum) or (self.maximum is not None and n > self.maximum):
            raise ValueError(f"expected {self.minimum}..{self.maximum}, got {n}")
        n = _register(n)
        return self.ctype.cast(n) if self.ctype is not None and self.ctype.signed else n

    def doc(self) -> str:
        """The format reference's description."""
        if self.maximum is not None:
            return f"integer {self.minimum}..{self.maximum}"
        return "size: integer, hex string, or with a K, M, G or T suffix (\"16K\")"

    def schema(self) -> dict[str, Any]:
        """Integers, hex strings and suffixed sizes."""
        if self.maximum is not None:
            return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
        return {"anyOf": [_INT_SCHEMA, {"type": "string", "pattern": _SIZE_RE.pattern}]}


class Prot(Kind):
    """Memory protection: ``"none"`` or letters r, w, x (a raw integer passes any bits)."""

    ctype = CType.U64

    def parse(self, value: Any) -> int:
        """PROT_* bits."""
        if isinstance(value, int) and not isinstance(value, bool):
            return _register(value, "raw prot value")
        if not isinstance(value, str) or len(value) > 8:
            raise ValueError(f"expected 'none' or letters r, w, x, got {shorten(value)}")
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

    def doc(self) -> str:
        """The format reference's description."""
        return "\"none\" or letters r, w, x (\"rw\"); an integer is raw PROT_* bits"

    def schema(self) -> dict[str, Any]:
        """Prot strings or integers."""
        return {"anyOf": [{"type": "string", "pattern": "^(none|[rwx-]{0,3})$"}, _INT_SCHEMA]}


class Flags(Kind):
    """A set of named flags: a list of names or one name, OR-ed (an integer is the raw bits)."""

    def __init__(self, table: Mapping[str, int], ctype: CType = CType.U64) -> None:
        self.table = dict(table)
        self.ctype = ctype

    def parse(self, value: Any) -> int:
        """The OR of the named bits."""
        if isinstance(value, int) and not isinstance(value, bool):
            return _register(value, "raw flag value")
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or len(items) > 64:
            raise ValueError(f"expected a name or a list of names, got {shorten(value)}")
        bits = 0
        for item in items:
            if not isinstance(item, str):
                raise ValueError(f"expected a name, got {shorten(item)}")
            try:
                bits |= self.table[item.lower()]
            except KeyError:
                known = ", ".join(sorted(self.table)) or "none"
                raise ValueError(f"unknown name {shorten(item)} (known: {known})") from None
        return bits

    def doc(self) -> str:
        """The format reference's description."""
        names = ", ".join(self.table) or "(none defined; 0 or [])"
        return f"list of names (or one name): {names}; an integer is the raw bits"

    def schema(self) -> dict[str, Any]:
        """Names, lists of names, or integers."""
        name: dict[str, Any] = {"type": "string", "enum": sorted(self.table)} if self.table else {"not": {}}
        return {"anyOf": [name, {"type": "array", "items": name}, _INT_SCHEMA]}


class Choice(Kind):
    """One value by name (an integer is the raw value)."""

    def __init__(self, table: Mapping[str, int], ctype: CType | None = CType.INT, *, raw: bool = True) -> None:
        self.table = dict(table)
        self.ctype = ctype
        self.raw = raw

    def parse(self, value: Any) -> int:
        """The named value."""
        if self.raw and isinstance(value, int) and not isinstance(value, bool):
            return _register(value, "raw value")
        if not isinstance(value, str) or value.lower() not in self.table:
            raise ValueError(f"unknown value {shorten(value)} (known: {', '.join(self.table)})")
        return self.table[value.lower()]

    def doc(self) -> str:
        """The format reference's description."""
        text = "one of " + ", ".join(self.table)
        return text + "; an integer is the raw value" if self.raw else text

    def schema(self) -> dict[str, Any]:
        """Names (or integers)."""
        names = {"type": "string", "enum": list(self.table)}
        return {"anyOf": [names, _INT_SCHEMA]} if self.raw else names


class Nodes(Kind):
    """NUMA nodes: a list of node numbers, one number, or a node list string ``"0-3,5"``; nodes 0..63."""

    ctype = CType.U64
    top = 63

    def parse(self, value: Any) -> int:
        """A node mask."""
        if value is None:
            return 0
        nodes: list[int] = []
        if isinstance(value, int) and not isinstance(value, bool):
            nodes = [value]
        elif isinstance(value, str):
            if len(value) > 256:
                raise ValueError("node list too long")
            for part in value.split(","):
                part = part.strip()
                if not part:
                    continue
                lo, _, hi = part.partition("-")
                try:
                    a, b = int(lo), int(hi or lo)
                except ValueError:
                    raise ValueError(f"expected node numbers like '0' or '0-3', got {shorten(value)}") from None
                # Bounds first: a range is expanded only once it is known to be small.
                if not 0 <= a <= b <= self.top:
                    raise ValueError(f"node numbers are 0..{self.top} in ascending ranges, got {shorten(part)}")
                nodes.extend(range(a, b + 1))
        elif isinstance(value, list):
            if len(value) > self.top + 1:
                raise ValueError(f"at most {self.top + 1} node numbers, got a list of {len(value)}")
            nodes = value
        else:
            raise ValueError(f"expected a list of node numbers, got {shorten(value)}")
        mask = 0
        for node in nodes:
            if not isinstance(node, int) or isinstance(node, bool) or not 0 <= node <= self.top:
                raise ValueError(f"node numbers are integers 0..{self.top}, got {shorten(node)}")
            mask |= 1 << node
        return mask

    def doc(self) -> str:
        """The format reference's description."""
        return "node numbers 0..63: a list, one number, or a node list like \"0-3,5\""

    def schema(self) -> dict[str, Any]:
        """Node lists."""
        node = {"type": "integer", "minimum": 0, "maximum": self.top}
        return {"anyOf": [node, {"type": "array", "items": node}, {"type": "string"}, {"type": "null"}]}


class Name(Kind):
    """A name an op binds (``as``, an object's ``name``): letters, digits and ``_``, not starting with a digit."""

    def parse(self, value: Any) -> str:
        """The name."""
        if not isinstance(value, str) or len(value) > NAME_MAX or not NAME_RE.fullmatch(value):
            raise ValueError(f"expected a name (letters, digits and '_', not starting with a digit, at most "
                             f"{NAME_MAX} characters), got {shorten(value)}")
        return value

    def doc(self) -> str:
        """The format reference's description."""
        return "a name: letters, digits and _, not starting with a digit"

    def schema(self) -> dict[str, Any]:
        """Identifiers."""
        return {"type": "string", "pattern": NAME_RE.pattern, "maxLength": NAME_MAX}


class ObjectRef(Kind):
    """The name of an object (file or userfaultfd) an earlier op created."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.kinds = kinds

    def parse(self, value: Any) -> str:
        """The name (checked against what earlier ops bound later on)."""
        return Name().parse(value)

    def doc(self) -> str:
        """The format reference's description."""
        return f"the name of a {' or '.join(self.kinds)} an earlier op created"

    def schema(self) -> dict[str, Any]:
        """Identifiers."""
        return Name().schema()


class Text(Kind):
    """A string passed to the kernel (a VMA name), or null."""

    def __init__(self, max_length: int, *, nullable: bool = True) -> None:
        self.max_length = max_length
        self.nullable = nullable

    def parse(self, value: Any) -> str | None:
        """The string; the kernel judges its characters (and its length below the format's limit)."""
        if value is None and self.nullable:
            return None
        if not isinstance(value, str):
            raise ValueError("expected a string" + (" or null" if self.nullable else "") + f", got {shorten(value)}")
        if len(value) > self.max_length:
            raise ValueError(f"at most {self.max_length} characters, got {len(value)}")
        if "\0" in value:
            raise ValueError(f"a C string cannot hold NUL, got {shorten(value)}")
        if not _encodable(value):
            raise ValueError(f"not encodable as UTF-8 (a lone surrogate), got {shorten(value)}")
        return value

    def doc(self) -> str:
        """The format reference's description."""
        return f"a string (at most {self.max_length} characters)" + (" or null" if self.nullable else "")

    def schema(self) -> dict[str, Any]:
        """Strings (or null)."""
        text = {"type": "string", "maxLength": self.max_length}
        return {"anyOf": [text, {"type": "null"}]} if self.nullable else text


def _encodable(text: str) -> bool:
    # What the executor is sent: UTF-8, with escaped bytes (U+DC80..U+DCFF) standing for themselves; a lone
    # surrogate outside that range is no string a C program could pass.
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


class OpList(Kind):
    """A list of ops (a fork's child): only its shape is checked here; the parser parses each op in its place."""

    def parse(self, value: Any) -> list[Any]:
        """The list, as JSON gave it."""
        if not isinstance(value, list):
            raise ValueError(f"expected a list of ops, got {shorten(value)}")
        return value

    def doc(self) -> str:
        """The format reference's description."""
        return "a list of ops"

    def schema(self) -> dict[str, Any]:
        """Lists of objects."""
        return {"type": "array", "items": {"type": "object"}}


class Boolean(Kind):
    """``true`` or ``false``."""

    def parse(self, value: Any) -> bool:
        """The boolean."""
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {shorten(value)}")
        return value

    def doc(self) -> str:
        """The format reference's description."""
        return "true or false"

    def schema(self) -> dict[str, Any]:
        """Booleans."""
        return {"type": "boolean"}


class Ranges(Kind):
    """Address ranges (process_madvise's iovecs): a list of ``{"addr": ADDRESS, "length": SIZE}``."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items

    def parse(self, value: Any) -> tuple[tuple[AddrRef, int], ...]:
        """(address, length) pairs; the names are checked later, like an address field's."""
        if not isinstance(value, list) or len(value) > self.max_items:
            raise ValueError(f"expected a list of at most {self.max_items} ranges, got {shorten(value)}")
        out: list[tuple[AddrRef, int]] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict) or set(item) != {"addr", "length"}:
                raise ValueError(f"range {i}: expected an object with addr and length, got {shorten(item)}")
            try:
                addr = Address().parse(item["addr"])
                length = Size().parse(item["length"])
            except ValueError as exc:
                raise ValueError(f"range {i}: {exc}") from None
            assert addr is not None
            out.append((addr, length))
        return tuple(out)

    def doc(self) -> str:
        """The format reference's description."""
        return f'a list of at most {self.max_items} ranges {{"addr": address, "length": size}}'

    def schema(self) -> dict[str, Any]:
        """Lists of range objects."""
        return {"type": "array", "maxItems": self.max_items,
                "items": {"type": "object", "additionalProperties": False, "required": ["addr", "length"],
                          "properties": {"addr": Address().schema(), "length": Size().schema()}}}


def shorten(value: Any) -> str:
    """A short ``repr`` of a JSON value for an error message: bounded in length and depth, whatever the value."""
    return _REPR.repr(value)


def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 2, 60, 60, 40
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 6
    return r


_REPR = _bounded_repr()
