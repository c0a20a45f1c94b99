"""Compare the model's layout report with the host kernel's, field by field.

:func:`diff_reports` is the single definition of "the model agrees with the
kernel" used by ``vmasim compare`` and by the fuzzer (:mod:`vmasim.fuzz`), so
both report the same differences in the same words.  Differences are listed in
the order a reader should look at them: the per-op results first (the first
call that went differently usually explains everything after it), then the
VMAs in address order, then the heap, then each fork child.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from vmasim.program import Program, ProgramError, load_program

#: The result fields of the contract; anything else a runner adds (debug data) is not compared.
RESULT_FIELDS = ("op", "ret", "errno", "pages", "fault")
#: The VMA fields of the contract, in the order they are reported.
VMA_FIELDS = ("start", "end", "perms", "offset", "file", "flags", "policy")
#: Ops whose ``ret`` only says success or failure (the contract: 0 on success, the value is not significant).
OBJECT_OPS = frozenset({"memfd", "file", "open", "dup", "userfaultfd", "fork", "pad"})

#: Runs a program on the kernel and returns its layout report (raises on runner failure).
KernelRun = Callable[[Program], dict[str, Any]]


# --- diffing -----------------------------------------------------------------------


def _as_int(value: Any) -> Any:
    """Hex strings and integers compare as numbers, so ``"0x7E00"`` equals ``"0x7e00"``."""
    if isinstance(value, str):
        text = value.strip()
        sign = 1
        if text[:1] in "+-" and text[1:3].lower() == "0x":
            sign = -1 if text[0] == "-" else 1
            text = text[1:]
        if text[:2].lower() == "0x":
            try:
                return sign * int(text, 16)
            except ValueError:
                return value
    return value


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    return bool(_as_int(a) == _as_int(b))


def _diff_results(model: Sequence[dict[str, Any]], kernel: Sequence[dict[str, Any]], pre: str) -> list[str]:
    out: list[str] = []
    for i in range(max(len(model), len(kernel))):
        if i >= len(model):
            out.append(f"{pre}results[{i}] ({kernel[i].get('op')}): missing in the model, kernel {_brief(kernel[i])}")
            continue
        if i >= len(kernel):
            out.append(f"{pre}results[{i}] ({model[i].get('op')}): model {_brief(model[i])}, missing in the kernel")
            continue
        m, k = model[i], kernel[i]
        name = m.get("op") or k.get("op")
        if name in OBJECT_OPS and m.get("errno") is None and k.get("errno") is None:
            # Both succeeded; the value (an fd, a pid) is not part of the contract.
            continue
        for key in RESULT_FIELDS:
            if key not in m and key not in k:
                continue
            if not _same(m.get(key), k.get(key)):
                out.append(
                    f"{pre}results[{i}] ({name}): {key}: model {_show(m.get(key))}, kernel {_show(k.get(key))}"
                )
    return out


def _brief(res: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_show(res[k])}" for k in RESULT_FIELDS if k in res and k != "op")


def _vma_text(v: dict[str, Any]) -> str:
    file = v.get("file")
    return f"{v.get('start')}-{v.get('end')} {v.get('perms')} {v.get('offset')}" + (f" {file}" if file else "")


def _diff_flags(m: Any, k: Any) -> str | None:
    if not isinstance(m, list) or not isinstance(k, list):
        return None if m == k else f"model {_show(m)}, kernel {_show(k)}"
    if m == k:
        return None
    only_m = [f for f in m if f not in k]
    only_k = [f for f in k if f not in m]
    if not only_m and not only_k:
        # Same set, other order: the contract promises the kernel's order, so it still counts.
        return f"same flags in another order: model {_show(m)}, kernel {_show(k)}"
    parts = []
    if only_m:
        parts.append("only in the model: " + " ".join(only_m))
    if only_k:
        parts.append("only in the kernel: " + " ".join(only_k))
    return f"{'; '.join(parts)} (model {_show(m)}, kernel {_show(k)})"


def _diff_vmas(model: Sequence[dict[str, Any]], kernel: Sequence[dict[str, Any]], what: str) -> list[str]:
    """Walk both lists in address order, pairing VMAs that start at the same address.

    Pairing by start (not by index) keeps one extra split from making every
    later VMA look different.
    """
    out: list[str] = []
    i = j = 0
    while i < len(model) or j < len(kernel):
        m = model[i] if i < len(model) else None
        k = kernel[j] if j < len(kernel) else None
        ms = _as_int(m["start"]) if m is not None else None
        ks = _as_int(k["start"]) if k is not None else None
        if m is not None and (k is None or (isinstance(ms, int) and isinstance(ks, int) and ms < ks)):
            out.append(f"{what} {m.get('start')}: only in the model: {_vma_text(m)}")
            i += 1
            continue
        if k is not None and (m is None or (isinstance(ms, int) and isinstance(ks, int) and ks < ms)):
            out.append(f"{what} {k.get('start')}: only in the kernel: {_vma_text(k)}")
            j += 1
            continue
        assert m is not None and k is not None
        keys = [f for f in VMA_FIELDS if f in m or f in k]
        for key in keys:
            if key == "flags":
                why = _diff_flags(m.get(key), k.get(key))
                if why is not None:
                    out.append(f"{what} {m.get('start')}: flags: {why}")
            elif not _same(m.get(key), k.get(key)):
                out.append(f"{what} {m.get('start')}: {key}: model {_show(m.get(key))}, kernel {_show(k.get(key))}")
        i += 1
        j += 1
    return out


def diff_reports(model: dict[str, Any], kernel: dict[str, Any], *, prefix: str = "") -> list[str]:
    """The human-readable differences between two layout reports, first difference first.

    Compared: each op's result (ret, errno, pages, fault; for ops that create
    objects only success or failure), then the VMAs in the window in address
    order with every contract field, then the heap VMAs, then each fork child
    recursively (lines prefixed with ``child <op index>:``).  An empty list
    means the reports agree.
    """
    out = _diff_results(model.get("results", []), kernel.get("results", []), prefix)
    out += _diff_vmas(model.get("vmas", []), kernel.get("vmas", []), f"{prefix}vma")
    out += _diff_vmas(model.get("heap", []), kernel.get("heap", []), f"{prefix}heap")
    mc: dict[str, Any] = model.get("children", {}) or {}
    kc: dict[str, Any] = kernel.get("children", {}) or {}
    for key in sorted(set(mc) | set(kc), key=lambda s: [int(p) if p.isdigit() else p for p in s.split(".")]):
        where = f"{prefix}child {key}: "
        if key not in mc:
            out.append(f"{where}the kernel reports a child, the model does not")
        elif key not in kc:
            out.append(f"{where}the model reports a child, the kernel does not")
        else:
            out += diff_reports(mc[key], kc[key], prefix=where)
    return out


# --- side-by-side rendering ----------------------------------------------------------


def _result_line(op: Any, res: dict[str, Any] | None) -> str:
    if res is None:
        return ""
    if res.get("op") == "touch" or "pages" in res:
        fault = res.get("fault")
        text = f"{res.get('pages')} page(s)" + (f", {fault}" if fault else "")
    elif res.get("errno"):
        text = f"-1 {res['errno']}"
    else:
        text = str(res.get("ret"))
    return f"[{op.path}] {op.op} = {text}" if op is not None else f"{res.get('op')} = {text}"


def side_by_side_rows(program: Program, model: dict[str, Any], kernel: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of (model, kernel) text: each op's result, then the maps-like layout lines, then each child."""
    from vmasim.cli import maps_lines

    rows: list[tuple[str, str]] = []
    _rows_into(rows, program.ops, model, kernel, "", maps_lines)
    return rows


def _rows_into(
    rows: list[tuple[str, str]],
    ops: Sequence[Any],
    model: dict[str, Any],
    kernel: dict[str, Any],
    indent: str,
    maps_lines: Callable[[dict[str, Any]], list[str]],
) -> None:
    mres: list[dict[str, Any]] = model.get("results", [])
    kres: list[dict[str, Any]] = kernel.get("results", [])
    for i in range(max(len(mres), len(kres))):
        op = ops[i] if i < len(ops) else None
        rows.append(
            (
                indent + _result_line(op, mres[i] if i < len(mres) else None),
                indent + _result_line(op, kres[i] if i < len(kres) else None),
            )
        )
    counts = (len(model.get("vmas", [])), len(kernel.get("vmas", [])))
    rows.append((f"{indent}--- {counts[0]} VMA(s)", f"{indent}--- {counts[1]} VMA(s)"))
    for a, b in _align_lines(model, kernel, maps_lines):
        rows.append((indent + a if a else "", indent + b if b else ""))
    mc: dict[str, Any] = model.get("children", {}) or {}
    kc: dict[str, Any] = kernel.get("children", {}) or {}
    for key in sorted(set(mc) | set(kc)):
        rows.append((f"{indent}--- child of fork op {key}", f"{indent}--- child of fork op {key}"))
        idx = int(key) if key.isdigit() else -1
        child_ops = ops[idx].child if 0 <= idx < len(ops) else ()
        _rows_into(rows, child_ops, mc.get(key, {}), kc.get(key, {}), indent + "  ", maps_lines)


def _align_lines(
    model: dict[str, Any], kernel: dict[str, Any], maps_lines: Callable[[dict[str, Any]], list[str]]
) -> list[tuple[str, str]]:
    """Pair the maps lines of both sides by VMA start so that an extra VMA leaves a gap on the other side."""
    empty: dict[str, Any] = {"vmas": [], "heap": []}
    out: list[tuple[str, str]] = []
    for key in ("vmas", "heap"):
        mv: list[dict[str, Any]] = list(model.get(key, []))
        kv: list[dict[str, Any]] = list(kernel.get(key, []))
        i = j = 0
        while i < len(mv) or j < len(kv):
            ms = _as_int(mv[i]["start"]) if i < len(mv) else None
            ks = _as_int(kv[j]["start"]) if j < len(kv) else None
            take_m = ms is not None and (ks is None or ms <= ks)
            take_k = ks is not None and (ms is None or ks <= ms)
            a = maps_lines({**empty, key: [mv[i]]})[0] if take_m else ""
            b = maps_lines({**empty, key: [kv[j]]})[0] if take_k else ""
            out.append((a, b))
            i += take_m
            j += take_k
    return out


def print_side_by_side(title: str, program: Program, model: dict[str, Any], kernel: dict[str, Any]) -> None:
    """Print a two-column table (model | kernel), the first differing row highlighted."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = side_by_side_rows(program, model, kernel)
    widest = max([len(a) for a, _ in rows] + [len(b) for _, b in rows] + [20])
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Plain output (a pipe, a test): make it wide enough that maps lines are not wrapped.
        console = Console(highlight=False, width=2 * widest + 12, no_color=True)
    table = Table(title=title, show_lines=False, expand=False)
    # The marker column keeps the first difference findable where colour is not shown (pipes, logs).
    table.add_column("", no_wrap=True, width=1)
    table.add_column("model", no_wrap=True, overflow="fold")
    table.add_column("kernel", no_wrap=True, overflow="fold")
    first = True
    for a, b in rows:
        style, mark = "", ""
        if a != b and not a.lstrip().startswith("---"):
            style, mark = ("bold white on red", ">") if first else ("yellow", "!")
            first = False
        # Text objects, not strings: maps lines contain "[rd wr ...]", which rich would read as markup.
        table.add_row(mark, Text(a), Text(b), style=style or None)
    console.print(table)


# --- the command ------------------------------------------------------------------------


def _kernel_runner() -> tuple[KernelRun | None, str]:
    """The host kernel runner, or None and the reason it cannot be used."""
    try:
        from vmasim.kernel import kernel_available, run_program
    except ImportError as exc:
        return None, f"the kernel runner is not available ({exc})"
    ok, why = kernel_available()
    if not ok:
        return None, why
    return run_program, ""


def compare_command(
    programs: tuple[str, ...], *, kernel: KernelRun | None = None, out: Any = None, target: Any = None
) -> int:
    """Run each program file on the model and on the host kernel; print both layouts and the differences.

    The model models ``target`` (a profile or its name; by default the probed
    host, or the built-in default when ``kernel`` is given), named in the
    first line printed.  Returns the exit status: 0 if
    every program agrees, 1 if any differ, 2 if any program could not be
    compared (invalid, uses an op the model does not implement yet, the
    kernel runner failed or is unavailable).  ``kernel`` replaces the host
    kernel runner (tests use a fake one).
    """
    from vmasim.core.errors import WouldBlock
    from vmasim.program.model import NotImplementedOp, run_model, unsupported_ops

    stream = out if out is not None else sys.stdout

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    status = 0
    loaded: list[tuple[str, Program]] = []
    # Validate everything first: a typo in the third file should not wait for two kernel runs.
    for path in programs:
        try:
            loaded.append((path, load_program(path)))
        except ProgramError as exc:
            # load_program() already names the file, the op and the field.
            say(f"invalid program: {exc}")
            status = 2
        except OSError as exc:
            say(f"{path}: cannot read: {exc.strerror or exc}")
            status = 2
    runnable: list[tuple[str, Program]] = []
    for path, prog in loaded:
        missing = unsupported_ops(prog)
        if missing:
            names = ", ".join(sorted({op.op for op in missing}))
            where = ", ".join(f"op {op.path}" for op in missing[:5])
            say(f"{path}: not compared: the model does not implement {names} yet ({where})")
            status = 2
        else:
            runnable.append((path, prog))
    if not runnable:
        return status
    if kernel is None:
        kernel, why = _kernel_runner()
        if kernel is None:
            say(f"cannot run on the host kernel: {why}")
            return 2
        target = "host" if target is None else target
    from vmasim.profile import ProfileError, resolve_profile

    try:
        profile = resolve_profile(target)
    except ProfileError as exc:
        say(f"cannot choose what to model: {exc}")
        return 2
    say(f"model of profile {profile.name} ({profile.release}) against the host kernel")
    for path, prog in runnable:
        try:
            mrep = run_model(prog, profile)
        except (NotImplementedOp, WouldBlock) as exc:  # a program that would wait forever is not compared
            say(f"{path}: not compared: {exc}")
            status = 2
            continue
        try:
            krep = kernel(prog)
        except Exception as exc:  # the runner's KernelRunError, or anything a broken runner raises
            say(f"{path}: the kernel runner failed: {exc}")
            status = 2
            continue
        diffs = diff_reports(mrep, krep)
        if out is None:
            print_side_by_side(path, prog, mrep, krep)
        else:
            _print_plain(say, prog, mrep, krep)
        if diffs:
            say(f"{path}: {len(diffs)} difference(s):")
            for line in diffs:
                say(f"  {line}")
            status = max(status, 1)
        else:
            say(f"{path}: agree")
    return status


def _print_plain(say: Callable[[str], None], program: Program, model: dict[str, Any], kernel: dict[str, Any]) -> None:
    rows = side_by_side_rows(program, model, kernel)
    width = max([len(a) for a, _ in rows] + [5])
    say(f"{'model':<{width}} | kernel")
    for a, b in rows:
        mark = " " if a == b else "!"
        say(f"{a:<{width}} {mark} {b}")


def format_diff(diffs: Iterable[str]) -> str:
    """The differences as text, one per line (what the fuzzer saves next to a reproducer)."""
    return "".join(f"{line}\n" for line in diffs)
