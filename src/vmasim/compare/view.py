"""Model and kernel reports side by side: each op's result, then the layouts as maps-like lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vmasim.compare.diff import _as_int
from vmasim.program import Program


def maps_lines(report: Mapping[str, Any]) -> list[str]:
    """The report's VMAs as /proc/PID/maps-like lines (file labels in place of paths)."""
    lines = []
    for v in report["vmas"]:
        start = int(v["start"], 16)
        end = int(v["end"], 16)
        offset = int(v["offset"], 16)
        head = f"{start:08x}-{end:08x} {v['perms']} {offset:08x}"
        name = v["file"] or ""
        flags = " ".join(v["flags"])
        policy = v.get("policy", "default")
        line = f"{head} {name:<12} [{flags}]"
        if policy != "default":
            line += f" {policy}"
        lines.append(line)
    for v in report.get("heap", []):
        lines.append(f"heap {v['start']}-{v['end']} {v['perms']} [{' '.join(v['flags'])}]")
    return lines


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


def side_by_side_rows(program: Program, model: Mapping[str, Any], kernel: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Rows of (model, kernel) text: each op's result, then the maps-like layout lines, then each child."""
    rows: list[tuple[str, str]] = []
    _rows_into(rows, program.ops, model, kernel, "")
    return rows


def _rows_into(
    rows: list[tuple[str, str]],
    ops: Sequence[Any],
    model: Mapping[str, Any],
    kernel: Mapping[str, Any],
    indent: str,
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
    for a, b in _align_lines(model, kernel):
        rows.append((indent + a if a else "", indent + b if b else ""))
    mc: dict[str, Any] = model.get("children", {}) or {}
    kc: dict[str, Any] = kernel.get("children", {}) or {}
    for key in sorted(set(mc) | set(kc)):
        rows.append((f"{indent}--- child of fork op {key}", f"{indent}--- child of fork op {key}"))
        idx = int(key) if key.isdigit() else -1
        child_ops = ops[idx].child if 0 <= idx < len(ops) else ()
        _rows_into(rows, child_ops, mc.get(key, {}), kc.get(key, {}), indent + "  ")


def _align_lines(model: Mapping[str, Any], kernel: Mapping[str, Any]) -> list[tuple[str, str]]:
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


def stacked_lines(rows: Sequence[tuple[str, str]]) -> list[str]:
    """Rows one above the other, like a unified diff (``-`` the model, ``+`` the kernel, both when equal):
    what fits a narrow terminal."""
    out = ["--- model", "+++ kernel"]
    for a, b in rows:
        if a == b:
            out.append(f"  {a}")
        else:
            if a:
                out.append(f"- {a}")
            if b:
                out.append(f"+ {b}")
    return out


def print_side_by_side(
    title: str, program: Program, model: Mapping[str, Any], kernel: Mapping[str, Any], *, width: int | None = None
) -> None:
    """Print both reports: as a two-column table (model | kernel, the first differing row highlighted) when
    the terminal (or ``width``) is wide enough, else one above the other (see :func:`stacked_lines`); a pipe
    gets the table at whatever width it needs."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = side_by_side_rows(program, model, kernel)
    widest = max([len(a) for a, _ in rows] + [len(b) for _, b in rows] + [20])
    console = Console(highlight=False, soft_wrap=False)
    if width is None and console.is_terminal:
        width = console.width
    if width is not None and 2 * widest + 10 > width:
        console = Console(highlight=False, soft_wrap=True, width=width, no_color=not console.is_terminal)
        console.print(Text(title, style="bold"))
        for line in stacked_lines(rows):
            style = {"-": "red", "+": "green"}.get(line[:1])
            console.print(Text(line, style=style or ""))
        return
    if not console.is_terminal:
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


def _print_plain(
    say: Callable[[str], None], program: Program, model: Mapping[str, Any], kernel: Mapping[str, Any]
) -> None:
    rows = side_by_side_rows(program, model, kernel)
    width = max([len(a) for a, _ in rows] + [5])
    say(f"{'model':<{width}} | kernel")
    for a, b in rows:
        mark = " " if a == b else "!"
        say(f"{a:<{width}} {mark} {b}")
