"""The layout report of the program contract, typed: what both the model and the kernel runner produce.

The report stays plain JSON-ready data (dicts and lists), so that it can be
saved and compared as it is; these TypedDicts give it a checked shape, and
:func:`op_result` is the one place an op's outcome becomes its result entry.
"""

from __future__ import annotations

import errno
from typing import Any, NotRequired, TypedDict

from vmasim.program.ops import OpDef, Result


class OpResult(TypedDict):
    """One op's result: ``ret`` and ``errno`` (or ``pages`` and ``fault`` for touch)."""

    op: str
    ret: NotRequired[int | str]
    errno: NotRequired[str | None]
    pages: NotRequired[int]
    fault: NotRequired[str | None]


class VmaEntry(TypedDict):
    """One VMA as /proc/PID/smaps and numa_maps show it (heap entries have addresses relative to the break)."""

    start: str
    end: str
    perms: str
    offset: str
    file: str | None
    flags: list[str]
    policy: str


class Report(TypedDict):
    """A process's layout report: results, the window's VMAs, the heap's, and each fork child's report."""

    results: list[OpResult]
    vmas: list[VmaEntry]
    heap: list[VmaEntry]
    children: dict[str, Report]


def errno_name(code: int) -> str:
    """The symbolic name of errno ``code`` (``"ENOMEM"``), or ``"E<code>"`` when there is none."""
    return errno.errorcode.get(code, f"E{code}")


def rel_addr(value: int, base: int) -> str:
    """An address relative to ``base`` as the report writes heap addresses and breaks: ``+0x1000``."""
    off = value - base
    return ("+" if off >= 0 else "-") + hex(abs(off))


def op_result(op: OpDef, value: Any, err: int = 0) -> OpResult:
    """The result entry of ``op`` given what it returned (or the errno it failed with).

    ``value`` is the address for ops that return one, the old break relative
    to the initial one for sbrk, and ``(pages, fault)`` for touch.
    """
    kind = type(op).result
    if kind is Result.ACCESS:
        pages, fault = value
        return {"op": op.op, "pages": pages, "fault": fault}
    if err:
        return {"op": op.op, "ret": -1, "errno": errno_name(err)}
    if kind is Result.ADDRESS:
        return {"op": op.op, "ret": hex(value), "errno": None}
    if kind is Result.BREAK:
        return {"op": op.op, "ret": rel_addr(value, 0), "errno": None}
    if kind is Result.VALUE:
        return {"op": op.op, "ret": int(value), "errno": None}
    return {"op": op.op, "ret": 0, "errno": None}


def empty_report() -> Report:
    """A report with nothing in it."""
    return {"results": [], "vmas": [], "heap": [], "children": {}}
