"""Parse and validate ``vmasim-program/1`` documents into :class:`Program` values.

Each op is validated by its definition (:mod:`vmasim.program.ops`), then the
names it uses are checked against what earlier ops bound.  Whatever the input
(any bytes, any nesting, any size) a malformed program ends in one
:class:`ProgramError` naming the op and the field, before anything runs:
JSON that is not UTF-8, duplicate keys, unknown keys anywhere, values no
64-bit register could hold, names used before they are bound, forks nested
too deep, too many ops.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from vmasim import constants as C
from vmasim.program.ops import OP_NAMES, PRCTL_OPTIONS, Fork, OpDef, definition_of
from vmasim.program.values import Address, AddrRef, ObjectRef, Ranges, parse_int, shorten

FORMAT = "vmasim-program/1"
DEFAULT_WINDOW_START = 0x7E0000000000
DEFAULT_WINDOW_LENGTH = 4 << 30
#: Most ops in one program, fork children included (the executor's limit).
MAX_OPS = 65536
#: Deepest nesting of forks.
MAX_FORK_DEPTH = 64
#: Largest program text.
MAX_PROGRAM_BYTES = 64 << 20
#: Deepest nesting of JSON arrays and objects: far more than forks nested MAX_FORK_DEPTH deep need (stored
#: kernel reports included), far less than what would strain Python's recursion anywhere a value is used.
MAX_JSON_DEPTH = 256
#: The address names every program starts with: the window's start.
WINDOW_NAME = "W"


class ProgramError(ValueError):
    """A program that does not follow the contract; names the op and the field at fault."""

    def __init__(self, where: str, field_name: str | None, message: str) -> None:
        self.where = where
        self.field = field_name
        self.message = message
        # The field's name as the program wrote it, bounded and escaped: the message stays one short line.
        loc = where if field_name is None else f"{where}, field {shorten(field_name)}"
        super().__init__(f"{loc}: {message}")


@dataclass(frozen=True, slots=True)
class Op:
    """One validated op: its definition's values (``args``), where it is, and its fork child's ops."""

    index: int
    path: str
    args: OpDef
    child: tuple[Op, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def op(self) -> str:
        """The op's name."""
        return self.args.op


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


# --- JSON ----------------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {shorten(key)} in a JSON object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def decode_json(text: str | bytes) -> Any:
    """The JSON value of ``text``; :class:`ProgramError` for text that is not strict, UTF-8 JSON."""
    if len(text) > MAX_PROGRAM_BYTES:
        raise ProgramError("program", None, f"larger than {MAX_PROGRAM_BYTES >> 20} MiB")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProgramError("program", None, f"not UTF-8 text (byte {exc.start})") from None
    if text[:1] == "\ufeff":
        raise ProgramError("program", None,
                           "not valid JSON: starts with a byte-order mark (save the file as UTF-8 without one)")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ProgramError("program", None, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ProgramError("program", None, f"JSON nested more than {MAX_JSON_DEPTH} deep") from None
    except ValueError as exc:  # a duplicate key, NaN, an integer with too many digits
        if "integer string conversion" in str(exc):
            exc = ValueError(f"an integer with more than {sys.get_int_max_str_digits()} digits")
        raise ProgramError("program", None, f"not valid JSON: {exc}") from None
    if _depth_exceeds(doc, MAX_JSON_DEPTH):
        raise ProgramError("program", None, f"JSON nested more than {MAX_JSON_DEPTH} deep")
    return doc


def _depth_exceeds(doc: Any, limit: int) -> bool:
    # Iterative, so that checking the depth cannot itself run out of stack.
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > limit:
            return True
        stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list)))
    return False


# --- ops -------------------------------------------------------------------------------------------------


class _Scope:
    """The names bound so far in one process: addresses, and objects with their kind (and the address
    names an exec made invalid, with where it was)."""

    def __init__(self, addrs: set[str], objects: dict[str, str], gone: dict[str, str] | None = None) -> None:
        self.addrs = addrs
        self.objects = objects
        self.gone = gone if gone is not None else {}

    def copy(self) -> _Scope:
        return _Scope(set(self.addrs), dict(self.objects), dict(self.gone))

    def unbound(self, name: str) -> str:
        """Why an address name cannot be used here."""
        where = self.gone.get(name)
        if where is not None:
            return f"name {name!r} was bound before the exec at {where} and names nothing in the new image"
        return f"name {name!r} is used before it is bound"


def _definition(raw: Mapping[str, Any], where: str) -> type[OpDef]:
    cls = definition_of(dict(raw))
    if cls is not None:
        return cls
    name = raw.get("op")
    if not isinstance(name, str):
        raise ProgramError(where, "op", "missing or not a string")
    if name == "prctl":
        option = raw.get("option")
        if option is None:
            raise ProgramError(f"{where} (prctl)", "option", "missing")
        known = ", ".join(PRCTL_OPTIONS)
        raise ProgramError(f"{where} (prctl)", "option", f"unknown option {shorten(option)} (known: {known})")
    close = difflib.get_close_matches(name, OP_NAMES, n=1) if isinstance(name, str) else []
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ProgramError(where, "op", f"unknown op {shorten(name)} ({hint}`vmasim ops` lists them all)")




def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    # Missing fields first, then unknown ones, then bad values, each in the definition's order.
    rank = {"missing": 0, "extra_forbidden": 1}
    errors = sorted(exc.errors(include_url=False), key=lambda e: rank.get(e["type"], 2))
    err = errors[0]
    loc = err["loc"]
    field_name = str(loc[0]) if loc else None
    if err["type"] == "missing":
        return field_name, "missing"
    if err["type"] == "extra_forbidden":
        return field_name, "unknown field for this op"
    error = err.get("ctx", {}).get("error")
    return field_name, str(error) if isinstance(error, ValueError) else err["msg"]


def _check_names(args: OpDef, scope: _Scope, where: str) -> None:
    for key, kind in type(args).kinds().items():
        value = args.get(key)
        if isinstance(kind, Address) and isinstance(value, AddrRef) and value.name is not None:
            if value.name not in scope.addrs:
                raise ProgramError(where, key, scope.unbound(value.name))
        elif isinstance(kind, Ranges):
            for i, (ref, _length) in enumerate(value):
                if ref.name is not None and ref.name not in scope.addrs:
                    raise ProgramError(where, key, f"range {i}: {scope.unbound(ref.name)}")
        elif isinstance(kind, ObjectRef) and value is not None:
            bound = scope.objects.get(value)
            if bound is None:
                raise ProgramError(where, key, f"name {value!r} is used before it is bound")
            if bound not in kind.kinds:
                raise ProgramError(where, key, f"{value!r} is a {bound}, expected a {' or '.join(kind.kinds)}")


def _bind(args: OpDef, scope: _Scope, where: str) -> None:
    # After the op's own fields are checked, so that an op cannot refer to what it binds.
    if type(args).new_image:
        # exec: the old address space is gone, and every address bound in it with it.
        for name in scope.addrs - {WINDOW_NAME}:
            scope.gone[name] = where
        scope.addrs = {WINDOW_NAME}
    bound = getattr(args, "as_", None)
    if bound is not None:
        if bound == WINDOW_NAME:
            raise ProgramError(where, "as", f"{WINDOW_NAME!r} is the window's start and cannot be rebound")
        scope.addrs.add(bound)
        scope.gone.pop(bound, None)
    creates = type(args).creates
    if creates is not None:
        kind = scope.objects[args.get("of")] if creates == "of" else creates
        scope.objects[args.get("name")] = kind


class _Parser:
    """Walks the op tree once, counting ops and fork depth."""

    def __init__(self) -> None:
        self.count = 0

    def ops(self, raw_ops: Any, prefix: str, scope: _Scope, depth: int, where: str) -> tuple[Op, ...]:
        if not isinstance(raw_ops, list):
            raise ProgramError(where, "ops" if not prefix else "child", "expected a list of ops")
        return tuple(self.op(raw, i, f"{prefix}{i}", scope, depth) for i, raw in enumerate(raw_ops))

    def op(self, raw: Any, index: int, path: str, scope: _Scope, depth: int) -> Op:
        where = f"op {path}"
        self.count += 1
        if self.count > MAX_OPS:
            raise ProgramError(where, None, f"more than {MAX_OPS} ops in one program")
        if not isinstance(raw, Mapping):
            raise ProgramError(where, None, f"an op must be a JSON object, got {type(raw).__name__}")
        cls = _definition(raw, where)
        where = f"op {path} ({cls.op_name()})"
        try:
            args = cls.model_validate({k: v for k, v in raw.items() if not (isinstance(k, str) and k[:1] == "_")})
        except ValidationError as exc:
            field_name, message = _first_error(exc)
            raise ProgramError(where, field_name, message) from None
        _check_names(args, scope, where)
        child: tuple[Op, ...] = ()
        if isinstance(args, Fork):
            if depth >= MAX_FORK_DEPTH:
                raise ProgramError(where, "child", f"forks nested more than {MAX_FORK_DEPTH} deep")
            child = self.ops(args.child, f"{path}.", scope.copy(), depth + 1, where)
        _bind(args, scope, where)
        return Op(index=index, path=path, args=args, child=child, raw=raw)


def _window(window: Any) -> tuple[int, int]:
    start, length = DEFAULT_WINDOW_START, DEFAULT_WINDOW_LENGTH
    if window is None:
        return start, length
    if not isinstance(window, Mapping):
        raise ProgramError("program", "window", f"expected an object with start and length, got {shorten(window)}")
    for key in window:
        if key not in ("start", "length"):
            raise ProgramError("program", "window", f"unknown key {shorten(key)} (known: start, length)")
    try:
        if "start" in window:
            start = parse_int(window["start"], allow_suffix=False)
    except ValueError as exc:
        raise ProgramError("program", "window.start", str(exc)) from None
    try:
        if "length" in window:
            length = parse_int(window["length"])
    except ValueError as exc:
        raise ProgramError("program", "window.length", str(exc)) from None
    if start <= 0 or start % C.PAGE_SIZE:
        raise ProgramError("program", "window.start", f"must be positive and page-aligned, got {start:#x}")
    if length <= 0 or length % C.PAGE_SIZE:
        raise ProgramError("program", "window.length", f"must be positive and page-aligned, got {length:#x}")
    if start + length > C.TASK_SIZE:
        raise ProgramError("program", "window", f"{start:#x}-{start + length:#x} reaches past the top of the user "
                           f"address space ({C.TASK_SIZE:#x})")
    return start, length


def parse_program(doc: Mapping[str, Any] | str | bytes) -> Program:
    """Validate a program (a parsed JSON object, or JSON text or bytes) and return it as a :class:`Program`.

    Raises :class:`ProgramError` for anything the contract does not allow.
    """
    if isinstance(doc, (str, bytes)):
        doc = decode_json(doc)
    if not isinstance(doc, Mapping):
        raise ProgramError("program", None, "a program must be a JSON object")
    for key in doc:
        if key not in ("format", "window", "walls", "ops") and not (isinstance(key, str) and key[:1] == "_"):
            raise ProgramError("program", str(key), "unknown top-level field")
    fmt = doc.get("format", FORMAT)
    if fmt != FORMAT:
        raise ProgramError("program", "format", f"expected {FORMAT!r}, got {shorten(fmt)}")
    start, length = _window(doc.get("window"))
    walls = doc.get("walls", True)
    if not isinstance(walls, bool):
        raise ProgramError("program", "walls", f"expected true or false, got {shorten(walls)}")
    ops = _Parser().ops(doc.get("ops", []), "", _Scope({WINDOW_NAME}, {}), 0, "program")
    return Program(window_start=start, window_length=length, walls=walls, ops=ops, source=dict(doc))


def load_program(path: str) -> Program:
    """Read and validate the program stored in the JSON file at ``path`` (``-``: standard input)."""
    if path == "-":
        data = sys.stdin.buffer.read(MAX_PROGRAM_BYTES + 1)
    else:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PROGRAM_BYTES + 1)
    try:
        return parse_program(data)
    except ProgramError as exc:
        raise ProgramError(f"{path}: {exc.where}", exc.field, exc.message) from None


def walk_ops(ops: Sequence[Op]) -> list[Op]:
    """Every op of ``ops`` and of their fork children, in preorder."""
    out: list[Op] = []
    for op in ops:
        out.append(op)
        out.extend(walk_ops(op.child))
    return out
