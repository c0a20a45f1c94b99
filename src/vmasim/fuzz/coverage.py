"""What the program format can say, value by value, and how much of it a set of programs says.

The *items* of the format come from the op definitions (:mod:`vmasim.program.ops`) alone:

- every name of a field's table (``Flags``: mmap flags, mremap flags, advice...;
  ``Choice``: mbind modes...), alone and, for flag sets, every legal pair (two
  names whose bits neither equal nor contain each other's);
- every protection (``none``, ``r``... ``rwx``) and both booleans;
- the argument-width edges of every numeric field, by its C type: a raw value
  with bit 31 set (``2**31``), with bits above 32 (``2**32+k``, which an ``int``
  or ``unsigned int`` drops), with bit 63 (``2**63+k``) and all ones (``-1``).

:func:`op_items` says which items one op (as JSON) uses; :class:`Coverage`
counts them over programs, with how often the kernel accepted the op (errno
null), and prints the table ``vmasim fuzz --coverage`` shows.  Adding an op, a
field or a name to the definitions adds its items here without other edits.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmasim.ctype import CType
from vmasim.program.ops import OP_DEFS, OpDef, definition_of
from vmasim.program.values import MASK64, Address, AddrRef, Boolean, Choice, Flags, Kind, Prot, Size, parse_int

#: The protections, as programs write them.
PROTS = ("none", "r", "w", "x", "rw", "rx", "wx", "rwx")
#: The argument-width edges every numeric field is tried at (see :func:`width_class`), with the least
#: register value at each.
WIDTH_EDGES = {"2**31": 1 << 31, "2**32+k": 1 << 32, "2**63+k": 1 << 63, "-1": MASK64}


def op_label(cls: type[OpDef]) -> str:
    """How reports name an op definition: its name, and for prctl its option (``prctl/set_memory_merge``)."""
    name = cls.op_name()
    if name == "prctl":
        option = cls.model_fields["option"].annotation
        args = getattr(option, "__args__", ())
        return f"prctl/{args[0]}" if args else name
    return name


def legal_pairs(table: Mapping[str, int]) -> list[tuple[str, str]]:
    """The pairs of distinct names of a flag table that say more than either name alone."""
    out: list[tuple[str, str]] = []
    for a, b in itertools.combinations(table, 2):
        both = table[a] | table[b]
        if both not in (table[a], table[b]):
            out.append((a, b))
    return out


def numeric_ctype(kind: Kind) -> CType | None:
    """The C type of a field whose value can be a raw number (None for names, text, booleans, node lists)."""
    if isinstance(kind, (Flags, Prot, Size, Address)) or (isinstance(kind, Choice) and kind.raw):
        return kind.ctype
    return None


def width_class(value: int) -> str | None:
    """Which argument-width edge a register value is at (see :data:`WIDTH_EDGES`), or None below 2**31."""
    value &= MASK64
    if value == MASK64:
        return "-1"
    if value >> 63:
        return "2**63+k"
    if value >> 32:
        return "2**32+k"
    if value >> 31:
        return "2**31"
    return None


def field_items(kind: Kind) -> list[str]:
    """Every item of one field: its names (and legal pairs), protections or booleans, and width edges."""
    items: list[str] = []
    if isinstance(kind, Flags):
        items += ["[]", *kind.table, *(f"{a}|{b}" for a, b in legal_pairs(kind.table))]
    elif isinstance(kind, Choice):
        items += list(kind.table)
    elif isinstance(kind, Prot):
        items += list(PROTS)
    elif isinstance(kind, Boolean):
        items += ["true", "false"]
    if numeric_ctype(kind) is not None:
        # A field with a maximum (pad's headroom) cannot take values past it at all.
        top = kind.maximum if isinstance(kind, Size) and kind.maximum is not None else MASK64
        items += [f"raw:{edge}" for edge, least in WIDTH_EDGES.items() if least <= top]
    return items


def format_items(classes: Sequence[type[OpDef]] = OP_DEFS) -> list[tuple[str, str, str]]:
    """Every item of the format, as (op label, field, value), in the definitions' order."""
    return [(op_label(cls), name, item) for cls in classes for name, kind in cls.kinds().items()
            for item in field_items(kind)]


def _names(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value.lower()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.lower() for v in value]
    return None


def value_items(kind: Kind, value: Any) -> list[str]:
    """The items one field's JSON value uses."""
    out: list[str] = []
    raw: int | None = None
    if isinstance(kind, Flags):
        names = _names(value)
        if names is not None:
            present = sorted(set(names), key=list(kind.table).index)
            out += present or ["[]"]
            out += [f"{a}|{b}" for a, b in legal_pairs({n: kind.table[n] for n in present})]
        elif isinstance(value, int) and not isinstance(value, bool):
            raw = value
    elif isinstance(kind, Choice):
        if isinstance(value, str):
            out.append(value.lower())
        elif isinstance(value, int) and not isinstance(value, bool):
            raw = value
    elif isinstance(kind, Prot):
        if isinstance(value, str):
            text = "".join(ch for ch in "rwx" if ch in value.lower())
            out.append(text or "none")
        elif isinstance(value, int) and not isinstance(value, bool):
            raw = value
    elif isinstance(kind, Boolean):
        out.append("true" if value else "false")
    elif isinstance(kind, Size):
        try:
            kind.parse(value)
            # The register value, not what the C type makes of it: an int's 2**31 reads as negative.
            raw = parse_int(value)
        except ValueError:
            raw = None
    elif isinstance(kind, Address) and value is not None:
        try:
            ref = kind.parse(value)
        except ValueError:
            ref = None
        # Only absolute addresses have a value before the program runs.
        raw = ref.offset if isinstance(ref, AddrRef) and ref.name is None else None
    if raw is not None:
        edge = width_class(raw)
        if edge is not None:
            out.append(f"raw:{edge}")
    return out


def op_items(raw_op: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The items one op (a JSON object) uses, as (op label, field, value)."""
    cls = definition_of(raw_op)
    if cls is None:
        return []
    label = op_label(cls)
    out: list[tuple[str, str, str]] = []
    for name, kind in cls.kinds().items():
        if name in raw_op:
            out += [(label, name, item) for item in value_items(kind, raw_op[name])]
        elif isinstance(kind, Boolean):
            default = cls.model_fields[name].default
            out.append((label, name, "true" if default else "false"))
        elif isinstance(kind, Flags) and name in cls.model_fields and not cls.model_fields[name].is_required():
            out.append((label, name, "[]"))
    return out


def walk_with_results(ops: Sequence[Mapping[str, Any]], report: Mapping[str, Any] | None
                      ) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    """Every op of a program (fork children included) with its result in ``report`` (None without one)."""
    results = report.get("results", []) if report is not None else []
    children = report.get("children", {}) if report is not None else {}
    for i, op in enumerate(ops):
        yield op, results[i] if i < len(results) else None
        child = op.get("child")
        if isinstance(child, list):
            yield from walk_with_results(child, children.get(str(i)) if report is not None else None)


def accepted(result: Mapping[str, Any] | None) -> bool:
    """Whether the kernel accepted an op: no errno (and, for touch, no fault)."""
    if result is None:
        return False
    if "fault" in result:
        return result.get("fault") is None
    return result.get("errno") is None


@dataclass
class Coverage:
    """How often each item of the format was generated and accepted by the kernel."""

    classes: Sequence[type[OpDef]] = OP_DEFS
    generated: dict[tuple[str, str, str], int] = field(default_factory=dict)
    accepted: dict[tuple[str, str, str], int] = field(default_factory=dict)
    programs: int = 0

    def add(self, doc: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> None:
        """Count the items of one program; with the kernel's ``report``, also which were accepted."""
        self.programs += 1
        for op, result in walk_with_results(doc.get("ops", []), report):
            ok = report is not None and accepted(result)
            for item in set(op_items(op)):
                self.generated[item] = self.generated.get(item, 0) + 1
                if ok:
                    self.accepted[item] = self.accepted.get(item, 0) + 1

    def items(self) -> list[tuple[str, str, str]]:
        """The items of the format for the definitions this coverage is about."""
        return format_items(self.classes)

    def missing(self) -> list[tuple[str, str, str]]:
        """Items never generated."""
        return [item for item in self.items() if not self.generated.get(item)]

    def never_accepted(self) -> list[tuple[str, str, str]]:
        """Items generated but never accepted by the kernel."""
        return [item for item in self.items() if self.generated.get(item) and not self.accepted.get(item)]

    def table(self, *, with_kernel: bool = True) -> list[str]:
        """The coverage table: one line per item, generated and accepted counts, flagged when zero."""
        lines = [f"coverage of the program format over {self.programs} program(s): "
                 "op, field, value, generated, accepted by the kernel"]
        for item in self.items():
            gen = self.generated.get(item, 0)
            acc = self.accepted.get(item, 0)
            flag = "  NEVER GENERATED" if not gen else "  never accepted" if with_kernel and not acc else ""
            acc_text = str(acc) if with_kernel else "-"
            lines.append(f"  {item[0]:<24} {item[1]:<12} {item[2]:<34} {gen:>7} {acc_text:>7}{flag}")
        total = len(self.items())
        gen_n = total - len(self.missing())
        summary = f"{gen_n} of {total} values generated"
        if with_kernel:
            acc_n = sum(1 for item in self.items() if self.accepted.get(item))
            summary += f", {acc_n} accepted by the kernel at least once"
        lines.append(summary)
        return lines
