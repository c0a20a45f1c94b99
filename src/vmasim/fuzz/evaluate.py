"""Running programs on both sides: the model of a profile and the host kernel, in batches, and diffing them."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from vmasim import constants as C
from vmasim.compare.diff import diff_reports
from vmasim.profile import Profile
from vmasim.program import Op, Program, ProgramError, ops, parse_program, walk_ops
from vmasim.program.report import Report
from vmasim.program.values import AddrRef

PAGE = C.PAGE_SIZE
Doc = dict[str, Any]
#: Runs a batch of programs on the kernel: one report, or the exception the runner gave, per program.
KernelBatch = Callable[[Sequence[Program]], Sequence[Any]]


# --- the walls above the window ---------------------------------------------------------------------

def _op_ranges(op: Op, names: dict[str, int]) -> list[tuple[int, int]]:
    """The address ranges ``op`` acts on, with names resolved; empty for ops that act on no range.

    A range is an op's ``addr`` with its ``length`` (mremap: ``old_length``,
    and ``new_addr`` with ``new_length`` for a fixed move; process_madvise: each
    of its ranges).
    """
    a = op.args
    if isinstance(a, ops.ProcessMadvise):
        # Each range like madvise's (an unaligned one fails, and so do those after it).
        out: list[tuple[int, int]] = []
        for ref, length in a.ranges:
            start = ref.resolve(names)
            if start % PAGE:
                break
            out.append((start, start + length))
        return out
    if isinstance(a, ops.Touch) or not isinstance(a.get("addr") if "addr" in type(a).kinds() else None, AddrRef):
        return []
    start = a.get("addr").resolve(names)
    if isinstance(a, (ops.Mlock, ops.Munlock, ops.Mlock2)):
        # The mlock family rounds an unaligned range outwards instead of failing.
        end = -(-(start + a.length) // PAGE) * PAGE
        return [(start - start % PAGE, end)]
    if start % PAGE:
        return []  # every other range op fails with EINVAL on an unaligned start, before looking at VMAs
    if isinstance(a, ops.Mmap):
        if not a.flags & (C.MAP_FIXED | C.MAP_FIXED_NOREPLACE):
            return []  # a hint never displaces anything
        return [(start, start + a.length)]
    if isinstance(a, ops.Mremap):
        out = [(start, start + a.old_length)]
        # MREMAP_FIXED without MREMAP_MAYMOVE is EINVAL before anything is looked at.
        fixed = C.MREMAP_FIXED | C.MREMAP_MAYMOVE
        if a.flags & fixed == fixed and a.new_addr is not None:
            dst = a.new_addr.resolve(names)
            out.append((dst, dst + a.new_length))
        return out
    # Ops with an address and no length (brk, shmat, shmdt) act on no range the program chose the size of.
    size = a.get("length") if "length" in type(a).kinds() else None
    return [(start, start + size)] if isinstance(size, int) else []


#: The runner's pads (``pad`` op) lie this far below the window, downwards over at most 512 MiB.
PAD_DEPTH = 64 << 30


def wall_ops(program: Program, report: Mapping[str, Any]) -> list[str]:
    """The paths of ops that act on the walls above the window, or on the pads below it (addresses resolved as
    the model ran them).

    The walls and pads are the runner's scaffolding, not the program's: the
    generator keeps its ranges inside the window, so a divergence whose
    reproducer acts on them (after shrinking changed a length, say) is
    flagged in its report line, because it may be about how the runner's
    process is modelled (pads are counted, not held) rather than about the
    VMA layer.  Ranges that end past the top of the address space are
    deliberately invalid calls and are not counted (they fail before
    touching any VMA).
    """
    out: list[str] = []
    lo, hi = program.window_end, C.TASK_SIZE
    pads = (program.window_start - PAD_DEPTH - (1 << 30), program.window_start - PAD_DEPTH)
    has_pads = any(op.op == "pad" for op in walk_ops(program.ops))

    def walk(process_ops: Sequence[Op], rep: Mapping[str, Any], names: dict[str, int]) -> None:
        results: list[dict[str, Any]] = rep.get("results", [])
        for i, op in enumerate(process_ops):
            for a, b in _op_ranges(op, names):
                if b > a and ((a < hi and lo < b <= hi) or (has_pads and a < pads[1] and pads[0] < b <= hi)):
                    out.append(op.path)
                    break
            res = results[i] if i < len(results) else {}
            bound = getattr(op.args, "as_", None)
            if bound is not None:
                ret = res.get("ret")
                names[bound] = int(ret, 16) if isinstance(ret, str) else (1 << 64) - 1
            if op.child:
                walk(op.child, rep.get("children", {}).get(str(i), {}), dict(names))

    walk(program.ops, report, {"W": program.window_start})
    return out



# --- running both sides -------------------------------------------------------------------


@dataclass
class Outcome:
    """One program run on both sides."""

    doc: Doc
    model: Report | None = None
    kernel: Report | None = None
    diffs: list[str] = field(default_factory=list)
    model_error: str | None = None  # the model raised (a model bug: counts as a divergence)
    kernel_error: str | None = None  # the runner could not run it (timeout...): skipped
    model_stopped: str | None = None  # the model run went past its time limit: skipped, like a kernel timeout
    invalid: str | None = None  # the program does not parse (only shrinker candidates)

    @property
    def diverges(self) -> bool:
        """True when the model disagrees with the kernel or crashed."""
        return self.skip_reason is None and self.invalid is None and bool(self.diffs)

    @property
    def skip_reason(self) -> str | None:
        """Why the program was not compared (a side was stopped or could not run it), or None."""
        if self.kernel_error is not None:
            return f"kernel runner error: {self.kernel_error}"
        if self.model_stopped is not None:
            return f"model stopped: {self.model_stopped}"
        return None

    def signature(self) -> str | None:
        """What kind of divergence this is, so that shrinking does not wander off to another bug."""
        if not self.diverges:
            return None
        if self.model_error is not None:
            return "crash:" + self.model_error.split(":", 1)[0]
        return diff_kind(self.diffs[0])


_HEX = re.compile(r"[+-]?0x[0-9a-fA-F]+|\b\d+\b")
_INDEX = re.compile(r"\[\d+\]|child [\d.]+:")


def diff_kind(line: str) -> str:
    """A difference line with addresses, indices and full flag lists removed: what kind of difference it is."""
    text = re.sub(r"\(model \[.*\], kernel \[.*\]\)", "", line)
    text = _INDEX.sub("[*]", text)
    text = _HEX.sub("#", text)
    return " ".join(text.split())


def default_kernel_batch(jobs: int | None, timeout: float = 10.0) -> KernelBatch:
    """The host kernel runner as a batch function."""

    def run(programs: Sequence[Program]) -> Sequence[Any]:
        from vmasim.kernel import run_programs

        return run_programs(list(programs), jobs=jobs, timeout=timeout)

    return run


#: The model's time limit per program, in seconds: the kernel runner's (see default_kernel_batch()).
MODEL_TIMEOUT = 10.0


def evaluate(
    docs: Sequence[Doc], kernel_batch: KernelBatch, profile: Profile | None = None, *,
    model_timeout: float = MODEL_TIMEOUT,
) -> list[Outcome]:
    """Parse, run on the model of ``profile`` and (in one batch) on the kernel, and diff each program.

    A model run past ``model_timeout`` seconds is stopped and the program
    skipped, with the reason, as the kernel runner does with its timeout.
    """
    from vmasim.program.model import ModelTimeout, run_model

    outcomes = [Outcome(doc) for doc in docs]
    programs: list[Program] = []
    idx: list[int] = []
    for i, out in enumerate(outcomes):
        try:
            prog = parse_program(out.doc)
        except ProgramError as exc:
            out.invalid = str(exc)
            continue
        try:
            out.model = run_model(prog, profile, timeout=model_timeout)
        except ModelTimeout as exc:
            out.model_stopped = str(exc)
        except Exception as exc:  # a model bug: report it as a divergence with its traceback
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            out.model_error = tb
            out.diffs = [f"the model raised {tb}"]
        programs.append(prog)
        idx.append(i)
    if programs:
        try:
            reports: Sequence[Any] = kernel_batch(programs)
        except Exception as exc:  # the whole batch failed (runner crash): every program is skipped, not passed
            reports = [exc] * len(programs)
        for i, rep in zip(idx, reports, strict=True):
            out = outcomes[i]
            if isinstance(rep, BaseException) or not isinstance(rep, dict):
                out.kernel_error = str(rep) or type(rep).__name__
                continue
            out.kernel = cast(Report, rep)
            if out.model is not None:
                out.diffs = diff_reports(out.model, rep)
    return outcomes
