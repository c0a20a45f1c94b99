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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import PlainValidator, WithJsonSchema

from vmasim import constants as C
from vmasim.ctype import CType as CType  # re-exported: the kinds and ops name it from here

MASK64 = (1 << 64) - 1
#: The identifier grammar of names an op binds and other ops use (``as``, object names).
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Longest name: plenty for a label, short enough for any protocol line.
NAME_MAX = 64
_ADDR_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:([+-])\s*(\S+))?\s*$")
_SIZE_RE = re.compile(r"^\s*([+-]?)\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*([kKmMgGtT]?)\s*$")
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
#: Longest string accepted where a number is expected (a 64-bit value in hex has 18 characters).
_NUMBER_TEXT_MAX = 40


def fits_register(value: int) -> bool:
    """Whether a 64-bit register can hold ``value`` (as a signed or an unsigned number)."""
    return -(1 << 63) <= value <= MASK64


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
    shown = value if not isinstance(value, str) or len(value) <= _NUMBER_TEXT_MAX else value[:20] + "..."
    raise ValueError(f"expected an integer, a hex string or a size like '16K', got {shown!r}")


def _register(n: int, what: str = "value") -> int:
    if not fits_register(n):
        raise ValueError(f"{what} {n:#x} does not fit in a 64-bit register")
    return n & MASK64


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
                raise ValueError(f"expected an address (integer, hex string or NAME+N), got {value[:80]!r}")
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
            raise ValueError(f"expected an address (integer, hex string or NAME+N), got {value!r}") from None
        return AddrRef(None, _register(n, "address"))

    def doc(self) -> str:
        """The format reference's description."""
        text = "address: integer, hex string, or NAME, NAME+N, NAME-N"
        return text + "; null for no hint" if self.nullable else text

    def schema(self) -> dict[str, Any]:
        """Integers, hex strings, NAME±N strings (and null when nullable)."""
        options: list[dict[str, Any]] = [
            _INT_SCHEMA, _HEX_SCHEMA,
            {"type": "string", "pattern": r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*([+-]\s*\S+)?\s*$"},
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
            raise ValueError(f"expected a name or a list of names, got {_short(value)}")
        bits = 0
        for item in items:
            if not isinstance(item, str):
                raise ValueError(f"expected a name, got {_short(item)}")
            try:
                bits |= self.table[item.lower()]
            except KeyError:
                known = ", ".join(sorted(self.table)) or "none"
                raise ValueError(f"unknown name {_short(item)} (known: {known})") from None
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
            raise ValueError(f"unknown value {_short(value)} (known: {', '.join(self.table)})")
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
                    raise ValueError(f"expected node numbers like '0' or '0-3', got {value!r}") from None
                # Bounds first: a range is expanded only once it is known to be small.
                if not 0 <= a <= b <= self.top:
                    raise ValueError(f"node numbers are 0..{self.top} in ascending ranges, got {part!r}")
                nodes.extend(range(a, b + 1))
        elif isinstance(value, list) and len(value) <= self.top + 1:
            nodes = value
        else:
            raise ValueError(f"expected a list of node numbers, got {_short(value)}")
        mask = 0
        for node in nodes:
            if not isinstance(node, int) or isinstance(node, bool) or not 0 <= node <= self.top:
                raise ValueError(f"node numbers are integers 0..{self.top}, got {_short(node)}")
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
        if not isinstance(value, str) or len(value) > NAME_MAX or not NAME_RE.match(value):
            raise ValueError(f"expected a name (letters, digits and '_', not starting with a digit, at most "
                             f"{NAME_MAX} characters), got {_short(value)}")
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
        if not isinstance(value, str) or len(value) > self.max_length or "\0" in value:
            raise ValueError(f"expected a string of at most {self.max_length} characters without NUL"
                             + (" or null" if self.nullable else "") + f", got {_short(value)}")
        return value

    def doc(self) -> str:
        """The format reference's description."""
        return f"a string (at most {self.max_length} characters)" + (" or null" if self.nullable else "")

    def schema(self) -> dict[str, Any]:
        """Strings (or null)."""
        text = {"type": "string", "maxLength": self.max_length}
        return {"anyOf": [text, {"type": "null"}]} if self.nullable else text


class Boolean(Kind):
    """``true`` or ``false``."""

    def parse(self, value: Any) -> bool:
        """The boolean."""
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_short(value)}")
        return value

    def doc(self) -> str:
        """The format reference's description."""
        return "true or false"

    def schema(self) -> dict[str, Any]:
        """Booleans."""
        return {"type": "boolean"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
