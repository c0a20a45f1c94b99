"""Turn the executor's output lines into layout reports (the contract's JSON shape).

The executor prints, per process, result lines (``R``), the identity of the
file objects it created (``N``), its filtered smaps (``V`` header + ``F``
VmFlags) and numa_maps (``Y``) lines, and nested ``C``/``Z`` blocks for fork
children.  This module rebuilds the report tree.  It owns every formatting
decision of the report (hex strings, errno names, labels), so that the
executor can stay a dumb syscall pump.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from vmasim.kernel.cgroup import format_size
from vmasim.kernel.errors import KernelRunError
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

#: the wait status of a process killed by SIGKILL (for descendants that died with their parent)
_KILLED = int(signal.SIGKILL)


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
    shm: dict[int, str] = field(default_factory=dict)  # SysV segment id (its inode number) -> name
    results: list[OpResult] = field(default_factory=list)
    vmas: list[_Vma] = field(default_factory=list)
    policies: dict[int, str] = field(default_factory=dict)
    kids: dict[str, _Proc] = field(default_factory=dict)
    forking: int = -1  # index of the fork op whose child is being read
    status: int | None = None  # wait status; None while it runs (or if it never said)
    blocked: int | None = None  # op index of a "would wait forever for a uffd" note
    task_stop: tuple[int, bool] | None = None  # (fork op index, refused by the host)
    corrupt: int | None = None  # the op index (-1: the layout) before which a self-check failed
    stop: tuple[str, str] | None = None  # (kind, why) once it is known not to have finished

    def running(self) -> Op | None:
        """The op it was running: the first without a result (None once all have one)."""
        return self.ops[len(self.results)] if len(self.results) < len(self.ops) else None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What the driver said about one program (its ``D`` line) and the caps it ran under."""

    status: int = 0
    kind: str = "O"  # O ended by itself, T timed out, B rejected, M stopped by the RSS watchdog
    oom_kills: int = 0
    timeout: float = 10.0
    memory_limit: int | None = None
    task_limit: int | None = None
    mechanism: str = "cgroup"


def _result(op: Op, value: int, err: int) -> OpResult:
    if type(op.args).result is Result.ACCESS:
        try:
            fault = _FAULTS[err]
        except KeyError:
            raise DecodeError(f"op {op.path}: unknown touch fault code {err}") from None
        return op_result(op.args, (value, fault))
    return op_result(op.args, value, err)


def _finish(proc: _Proc, program: Program, init_brk: int, children: dict[str, Report]) -> Report:
    ws, we = program.window_start, program.window_end
    shmem: dict[tuple[int, int, int], str] = {}
    vmas: list[VmaEntry] = []
    heap: list[VmaEntry] = []

    def label(v: _Vma) -> str | None:
        if v.name.startswith("/SYSV"):
            # A segment's shmem file: its inode number is the segment's id (newseg()), and the first
            # segment of an IPC namespace of the program's own has id 0.
            return proc.shm.get(v.inode, v.name)
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
    return {"results": proc.results, "vmas": vmas, "heap": heap, "children": children}


@dataclass(slots=True)
class _Stream:
    """The executor's lines for one program, read into a tree of processes."""

    root: _Proc
    open: list[_Proc]  # processes whose report had not ended: the root first
    init_brk: int | None = None
    garbled: str | None = None  # the first line that could not be read, and why


def _read(lines: Sequence[str], program: Program) -> _Stream:
    """Read every line it can; a malformed line is remembered and skipped.

    A process that dies can leave half a line, which the executor ends with a
    newline before its next line (``\\nZ``, ``\\nU``, ``\\nD``), so reading on
    keeps the lines of the processes that go on.
    """
    root = _Proc(ops=program.ops, labels={})
    st = _Stream(root=root, open=[root])
    for raw in lines:
        if not raw:
            continue
        tag, _, rest = raw.partition(" ")
        stack = st.open
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
                stack.append(_Proc(ops=op.child, labels=dict(proc.labels), shm=dict(proc.shm)))
                proc.forking = idx
            elif tag == "Z":
                depth_s, status_s = rest.split()
                depth, status = int(depth_s), int(status_s)
                if not 0 <= depth < len(stack) - 1:
                    raise DecodeError("unbalanced fork report")
                # Descendants of the child that died before ending their own
                # report were killed with it: close theirs first.
                while len(stack) > depth + 2:
                    lost = stack.pop()
                    lost.status = _KILLED
                    stack[-1].kids[str(stack[-1].forking)] = lost
                    stack[-1].forking = -1
                child = stack.pop()
                parent = stack[-1]
                idx, parent.forking = parent.forking, -1
                if status != -1:  # -1: fork itself failed, there is no child
                    child.status = status
                    parent.kids[str(idx)] = child
            elif tag == "U":
                depth_s, idx_s = rest.split()
                stack[int(depth_s)].blocked = int(idx_s)
            elif tag == "L":
                idx_s, refused = rest.split()
                proc.task_stop = (int(idx_s), refused == "1")
            elif tag == "Q":
                proc.corrupt = int(rest)
            elif tag == "S":
                idx_s, shmid, _ns = rest.split()
                proc.shm[int(shmid)] = proc.ops[int(idx_s)].args.get("name")
            elif tag == "H":
                st.init_brk = int(rest, 16)
            else:
                raise DecodeError(f"unknown line {raw[:200]!r}")
        except (ValueError, IndexError, KeyError) as exc:
            if st.garbled is None:
                why = str(exc) if isinstance(exc, DecodeError) else f"malformed executor line {raw[:200]!r}: {exc}"
                st.garbled = why
    return st


def describe_status(status: int) -> str:
    """A wait status in words: ``killed by SIGSEGV``, ``exited with status 1``."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"wait status {status:#x}"


def _memory_stop(info: RunInfo) -> str:
    limit = format_size(info.memory_limit) if info.memory_limit else "unknown"
    if info.mechanism == "watchdog":
        return f"stopped: out of memory (limit {limit} of resident memory, by a watchdog: no memory cgroup)"
    return f"stopped: out of memory (limit {limit})"


def _uffd_stop(root: bool) -> str:
    return (
        "would wait forever for a userfaultfd handler (a fault inside a syscall, or a uffd event such as "
        f"event_fork); {'the program' if root else 'its process'} was stopped"
    )


def _task_stop(info: RunInfo, refused: bool) -> str:
    limit = info.task_limit if info.task_limit is not None else "unknown"
    if refused:
        return f"stopped: too many tasks (the host refused a fork with EAGAIN; limit {limit} per program)"
    return f"stopped: too many tasks (limit {limit})"


def _name(op: Op) -> str:
    """``op 3 (mmap)``; a path through many forks is shortened (the error's ``op_path`` has it whole)."""
    parts = op.path.split(".")
    if len(parts) <= 8:
        return f"op {op.path} ({op.op})"
    return f"op {'.'.join(parts[:3])}...{'.'.join(parts[-3:])} ({op.op}, {len(parts) - 1} forks deep)"


def _message(op: Op | None, proc: _Proc, why: str) -> str:
    if op is not None:
        return f"{_name(op)}: {why}"
    if proc.ops:
        return f"after {_name(proc.ops[-1])}, while reporting the layout: {why}"
    return why


def _judge(st: _Stream, info: RunInfo) -> KernelRunError | None:
    """Mark every process that did not finish; return the error that names the first stop, or None."""
    st.root.status = info.status
    if st.root.status != 0 or info.kind != "O":
        return _judge_stopped(st, info)
    return _judge_children(st.root, info)


def _judge_stopped(st: _Stream, info: RunInfo) -> KernelRunError:
    """The program was stopped as a whole (or its first process died): blame the
    innermost process that was still running, at the op it was running."""
    chain = st.open
    culprit = chain[-1]
    op, kind, why = culprit.running(), "crash", ""
    stopped = [p for p in chain if p.task_stop is not None]
    blocked = [p for p in chain if p.blocked is not None]
    corrupt = [p for p in chain if p.corrupt is not None]
    if corrupt:
        culprit = corrupt[-1]
        at = culprit.corrupt if culprit.corrupt is not None else -1
        op = culprit.ops[at] if 0 <= at < len(culprit.ops) else None
        why = (
            "the program wrote into the executor's own memory (a self-check failed before "
            f"{'this op' if op else 'reading the layout'}); its results cannot be trusted"
        )
    elif stopped:
        culprit = stopped[-1]
        idx, refused = culprit.task_stop or (0, False)
        op, kind, why = culprit.ops[idx], "tasks", _task_stop(info, refused)
    elif blocked:
        culprit = blocked[-1]
        op, kind, why = culprit.ops[culprit.blocked or 0], "uffd", _uffd_stop(culprit is st.root)
    elif info.kind == "T":
        kind, why = "timeout", f"the program timed out after {info.timeout:g} s"
    elif info.kind == "M" or (info.oom_kills > 0 and _sigkilled(st.root.status)):
        kind, why = "memory", _memory_stop(info)
    else:
        who = "the program's process" if len(chain) == 1 else "a process of the program"
        why = f"{who} died ({describe_status(st.root.status or 0)})"
    for p in chain:
        p.stop = (kind, why)
    if st.init_brk is None:
        # it never got to its first op: setting up the process (walls) failed
        return KernelRunError(f"{why}, before its first op", kind=kind)
    return KernelRunError(_message(op, culprit, why), kind=kind, op_path=op.path if op else None)


def _judge_children(root: _Proc, info: RunInfo) -> KernelRunError | None:
    """The program's first process finished: find the fork children that did not."""
    memory = info.oom_kills > 0
    first: KernelRunError | None = None
    for proc in _walk(root)[1:]:
        op = proc.running()
        if proc.blocked is not None:
            op, kind, why = proc.ops[proc.blocked], "uffd", _uffd_stop(False)
        elif proc.status and memory and _sigkilled(proc.status):
            kind, why = "memory", _memory_stop(info)
        elif proc.status:
            kind, why = "crash", f"the fork child died ({describe_status(proc.status)})"
        elif len(proc.results) != len(proc.ops):
            kind, why = "crash", f"the fork child printed {len(proc.results)} results for {len(proc.ops)} ops"
        else:
            continue
        proc.stop = (kind, why)
        if first is None:
            first = KernelRunError(_message(op, proc, why), kind=kind, op_path=op.path if op else None)
    if first is None and memory:
        first = KernelRunError(_memory_stop(info), kind="memory")
    return first


def _sigkilled(status: int | None) -> bool:
    return status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _walk(proc: _Proc) -> Sequence[_Proc]:
    """The processes under ``proc`` (itself first) in the order they ran, without recursion."""
    out: list[_Proc] = []
    todo = [proc]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(reversed(list(p.kids.values())))
    return out


def _reports(st: _Stream, program: Program) -> dict[str, Any]:
    """The report tree: full reports for processes that finished, partial ones (results, children and why it
    stopped) for the others."""
    init_brk = st.init_brk or 0
    done: dict[int, Any] = {}
    for proc in reversed(_walk(st.root)):  # children before their parents
        children = {k: done[id(kid)] for k, kid in proc.kids.items()}
        if proc.stop is None:
            done[id(proc)] = _finish(proc, program, init_brk, children)
        else:
            done[id(proc)] = {"results": proc.results, "children": children, "stopped": proc.stop[1]}
    root: dict[str, Any] = done[id(st.root)]
    return root


def decode_outcome(lines: Sequence[str], program: Program, info: RunInfo) -> Report | KernelRunError:
    """The layout report of ``program`` from the executor's lines for it, or the error that stopped it.

    ``lines`` are the lines the program's processes printed (without the
    driver's ``D`` line, which ``info`` carries).  An error keeps what the
    processes reported before the program stopped in its ``partial``.
    """
    if info.kind == "B":
        return KernelRunError(
            "the executor rejected the encoded program (executor limits exceeded?)", kind="rejected"
        )
    st = _read(lines, program)
    error = _judge(st, info)
    if error is None and st.garbled is not None:
        return KernelRunError(st.garbled, kind="executor")
    if error is None and st.init_brk is None:
        return KernelRunError("no output from the program", kind="executor")
    if error is None and len(st.root.results) != len(st.root.ops):
        return KernelRunError(f"expected {len(st.root.ops)} results, got {len(st.root.results)}", kind="executor")
    if error is None and len(st.open) != 1:
        return KernelRunError("a fork child's report is incomplete", kind="executor")
    report = _reports(st, program)
    if error is not None:
        error.partial = report
        return error
    return cast(Report, report)  # every process finished: a whole report


def decode_report(lines: Sequence[str], program: Program) -> Report:
    """Build the layout report of ``program`` from the lines of a program that ended normally.

    Raises :class:`DecodeError` if a process died or stopped, or the output is
    incomplete or malformed (:func:`decode_outcome` says more).
    """
    outcome = decode_outcome(lines, program, RunInfo())
    if isinstance(outcome, KernelRunError):
        raise DecodeError(str(outcome))
    return outcome
