"""Turn the executor's output lines into layout reports (the contract's JSON shape).

The executor prints, per process, result lines (``R``), the identity of the
file objects it created (``N``), its filtered smaps (``V`` header + ``F``
VmFlags) and numa_maps (``Y``) lines, and nested ``C``/``Z`` blocks for fork
children.  This module rebuilds the report tree.  It owns every formatting
decision of the report (hex strings, errno names, labels), so that the
executor can stay a dumb syscall pump.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from vmasim.program import Op, Program
from vmasim.program.ops import Result
from vmasim.program.report import OpResult, Report, VmaEntry, errno_name, op_result, rel_addr

__all__ = ["DecodeError", "Report", "decode_report", "errno_name", "numa_policy"]

#: numa_maps keys that end the policy string (fs/proc/task_mmu.c show_numa_map).
_NUMA_KEYS = frozenset(
    {"file", "anon", "dirty", "mapped", "mapmax", "swapcache", "active", "writeback", "kernelpagesize_kB"}
)
_NUMA_WORDS = frozenset({"heap", "stack", "huge"})
_NODE_KEY = re.compile(r"^N\d+=")

#: touch fault codes printed by the executor
_FAULTS: dict[int, str | None] = {0: None, 11: "SIGSEGV", 7: "SIGBUS", 1: "UFFD"}

class DecodeError(ValueError):
    """The executor's output does not have the expected structure."""


def numa_policy(line: str) -> tuple[int, str]:
    """Split a numa_maps line into (start address, policy string).

    The policy can contain spaces (``prefer (many):0``, ``weighted interleave:0``),
    so it runs from the second token up to the first ``key=`` token of a known
    key, ``N<n>=`` token or ``heap``/``stack``/``huge`` word.
    """
    tokens = line.split()
    start = int(tokens[0], 16)
    policy = [tokens[1]] if len(tokens) > 1 else []
    for tok in tokens[2:]:
        key, eq, _ = tok.partition("=")
        if tok in _NUMA_WORDS or (eq and key in _NUMA_KEYS) or _NODE_KEY.match(tok):
            break
        policy.append(tok)
    return start, " ".join(policy)


@dataclass(slots=True)
class _Vma:
    start: int
    end: int
    perms: str
    offset: int
    dev: tuple[int, int]
    inode: int
    name: str
    flags: list[str] = field(default_factory=list)


def _parse_header(text: str) -> _Vma:
    # "start-end perms offset major:minor inode   name"; the name may contain spaces.
    parts = text.split(None, 5)
    start_s, _, end_s = parts[0].partition("-")
    major, _, minor = parts[3].partition(":")
    return _Vma(
        start=int(start_s, 16),
        end=int(end_s, 16),
        perms=parts[1],
        offset=int(parts[2], 16),
        dev=(int(major, 16), int(minor, 16)),
        inode=int(parts[4]),
        name=parts[5].strip() if len(parts) > 5 else "",
    )


@dataclass(slots=True)
class _Proc:
    """One process of the program (the root or a fork child) while its lines are read."""

    ops: Sequence[Op]
    labels: dict[tuple[int, int, int], str]
    results: list[OpResult] = field(default_factory=list)
    vmas: list[_Vma] = field(default_factory=list)
    policies: dict[int, str] = field(default_factory=dict)
    children: dict[str, Report] = field(default_factory=dict)
    forking: int = -1  # index of the fork op whose child is being read


def _result(op: Op, value: int, err: int) -> OpResult:
    if type(op.args).result is Result.ACCESS:
        try:
            fault = _FAULTS[err]
        except KeyError:
            raise DecodeError(f"op {op.path}: unknown touch fault code {err}") from None
        return op_result(op.args, (value, fault))
    return op_result(op.args, value, err)


def _finish(proc: _Proc, program: Program, init_brk: int) -> Report:
    if len(proc.results) != len(proc.ops):
        raise DecodeError(f"expected {len(proc.ops)} results, got {len(proc.results)}")
    ws, we = program.window_start, program.window_end
    shmem: dict[tuple[int, int, int], str] = {}
    vmas: list[VmaEntry] = []
    heap: list[VmaEntry] = []

    def label(v: _Vma) -> str | None:
        if v.inode == 0:
            return None  # anonymous memory, [heap], [stack], [anon:...]
        key = (v.dev[0], v.dev[1], v.inode)
        known = proc.labels.get(key)
        if known is not None:
            return known
        if v.name.startswith(("/dev/zero", "[anon_shmem:")):
            # shared anonymous memory: numbered by first appearance in this report
            return shmem.setdefault(key, f"shmem#{len(shmem) + 1}")
        return v.name  # not created by the program; should not happen inside the window

    def entry(v: _Vma, start: str, end: str) -> VmaEntry:
        return {"start": start, "end": end, "perms": v.perms, "offset": hex(v.offset), "file": label(v),
                "flags": v.flags, "policy": proc.policies.get(v.start, "default")}

    for v in proc.vmas:
        if v.start < we and v.end > ws:
            vmas.append(entry(v, hex(v.start), hex(v.end)))
        elif v.name == "[heap]" and v.start >= init_brk:
            heap.append(entry(v, rel_addr(v.start, init_brk), rel_addr(v.end, init_brk)))
    return {"results": proc.results, "vmas": vmas, "heap": heap, "children": proc.children}


def decode_report(lines: Sequence[str], program: Program) -> Report:
    """Build the layout report of ``program`` from the executor's lines for it.

    ``lines`` are the lines the program's processes printed (without the
    driver's final ``D`` line).  Raises :class:`DecodeError` if a fork child
    died, or the output is incomplete or malformed.
    """
    init_brk: int | None = None
    root = _Proc(ops=program.ops, labels={})
    stack: list[_Proc] = [root]
    for raw in lines:
        if not raw:
            continue
        tag, _, rest = raw.partition(" ")
        proc = stack[-1]
        try:
            if tag == "R":
                idx_s, value_s, err_s = rest.split()
                idx = int(idx_s)
                if idx != len(proc.results):
                    raise DecodeError(f"result for op {idx} out of order")
                proc.results.append(_result(proc.ops[idx], int(value_s, 16), int(err_s)))
            elif tag == "V":
                proc.vmas.append(_parse_header(rest))
            elif tag == "F":
                if not proc.vmas:
                    raise DecodeError("VmFlags line before any VMA header")
                proc.vmas[-1].flags = rest.split()
            elif tag == "Y":
                start, policy = numa_policy(rest)
                proc.policies[start] = policy
            elif tag == "N":
                idx_s, major, minor, inode = rest.split()
                proc.labels[(int(major, 16), int(minor, 16), int(inode))] = proc.ops[int(idx_s)].args.get("name")
            elif tag == "C":
                idx = int(rest)
                op = proc.ops[idx]
                if op.op != "fork":
                    raise DecodeError(f"fork report for op {idx}, which is a {op.op}")
                # The child inherits the parent's file objects, hence its labels.
                stack.append(_Proc(ops=op.child, labels=dict(proc.labels)))
                proc.forking = idx
            elif tag == "Z":
                if len(stack) < 2:
                    raise DecodeError("unbalanced fork report")
                child = stack.pop()
                status = int(rest)
                parent = stack[-1]
                idx, parent.forking = parent.forking, -1
                if status == -1:
                    continue  # fork itself failed: there is no child report
                if status != 0:
                    raise DecodeError(f"the child of fork op {_path(parent, idx)} died (wait status {status:#x})")
                parent.children[str(idx)] = _finish(child, program, init_brk or 0)
            elif tag == "H":
                init_brk = int(rest, 16)
            else:
                raise DecodeError(f"unknown line {raw!r}")
        except (ValueError, IndexError, KeyError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"malformed executor line {raw!r}: {exc}") from None
    if len(stack) != 1:
        raise DecodeError("a fork child's report is incomplete")
    if init_brk is None:
        raise DecodeError("no output from the program")
    return _finish(root, program, init_brk)


def _path(proc: _Proc, idx: int) -> str:
    return proc.ops[idx].path if idx < len(proc.ops) else str(idx)
