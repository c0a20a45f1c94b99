"""The ``vmasim`` command: run programs on the model or the kernel, compare them, explain, fuzz."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from vmasim.core.errors import WouldBlock
from vmasim.program import Program, ProgramError, load_program
from vmasim.program.model import NotImplementedOp, run_model


def _load(path: str) -> Program:
    try:
        return load_program(path)
    except ProgramError as exc:
        raise click.ClickException(f"invalid program: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None


def _describe_op(op: Any) -> str:
    """The op as written in the program: ``mprotect(addr=a+0x1000, length=4K, prot=r)``."""
    fields = {k: v for k, v in op.raw.items() if k not in ("op", "as", "child") and not k.startswith("_")}
    args = ", ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
    tail = f" as {op.raw['as']}" if op.raw.get("as") else ""
    return f"{op.op}({args}){tail}"


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    if value is None:
        return "null"
    return str(value)


def _result_text(res: dict[str, Any]) -> str:
    if res.get("op") == "touch":
        fault = res.get("fault")
        return f"{res['pages']} page(s)" + (f", stopped by {fault}" if fault else "")
    if res.get("errno"):
        return f"-1 {res['errno']}"
    return str(res.get("ret"))


def maps_lines(report: dict[str, Any]) -> list[str]:
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


def _print_report(program: Program, report: dict[str, Any], indent: str = "") -> None:
    for op, res in zip(program.ops, report["results"], strict=False):
        click.echo(f"{indent}[{op.path}] {_describe_op(op)} = {_result_text(res)}")
    click.echo(f"{indent}--- layout ({len(report['vmas'])} VMA(s) in the window)")
    for line in maps_lines(report):
        click.echo(indent + line)
    for key, child in report.get("children", {}).items():
        click.echo(f"{indent}--- child of fork op {key}")
        child_prog = Program(program.window_start, program.window_length, program.walls, program.ops[int(key)].child)
        _print_report(child_prog, child, indent + "    ")


@click.group()
@click.version_option(package_name="vmasim")
def main() -> None:
    """vmasim: the Linux VMA layer, modelled in Python and checked against the host kernel."""


@main.command()
@click.argument("program", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the layout report of the program contract.")
@click.option("--kernel", is_flag=True, help="Run on the host kernel instead of the model.")
def run(program: str, as_json: bool, kernel: bool) -> None:
    """Run PROGRAM (a vmasim-program/1 JSON file) and show each call's result and the final layout."""
    prog = _load(program)
    if kernel:
        from vmasim.kernel import KernelRunError, kernel_available, run_program

        ok, why = kernel_available()
        if not ok:
            raise click.ClickException(f"cannot run on the host kernel: {why}")
        try:
            report = run_program(prog)
        except KernelRunError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        try:
            report = run_model(prog)
        except (NotImplementedOp, WouldBlock) as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_report(prog, report)


@main.command()
@click.argument("program", type=click.Path(dir_okay=False))
def explain(program: str) -> None:
    """Run PROGRAM on the model and say, for each pair of neighbouring VMAs, why they did not merge."""
    from vmasim.explain import explain as explain_pairs
    from vmasim.program.model import run_model_space

    prog = _load(program)
    try:
        _report, space = run_model_space(prog)
    except (NotImplementedOp, WouldBlock) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(space.maps(prog.window_start, prog.window_end), nl=False)
    pairs = explain_pairs(space.mm, prog.window_start, prog.window_end)
    if not pairs:
        click.echo("(fewer than two VMAs in the window: nothing to explain)")
    for left, right, reasons in pairs:
        click.echo(f"{left.start:x}-{left.end:x} | {right.start:x}-{right.end:x}:")
        if reasons:
            for why in reasons:
                click.echo(f"    {why}")
        else:
            click.echo("    compatible: no operation has tried to merge them since they became so")


@main.command()
@click.argument("programs", nargs=-1, required=True, type=click.Path(dir_okay=False))
def compare(programs: tuple[str, ...]) -> None:
    """Run each PROGRAM on the model and on the host kernel and show where the layouts differ."""
    from vmasim.compare import compare_command

    sys.exit(compare_command(programs))


def _at_most_cpus(jobs: int | None) -> int | None:
    """``--jobs`` above the usable CPUs only makes the programs' timers race each other."""
    from vmasim.kernel.runner import default_jobs

    cpus = default_jobs()
    if jobs is not None and jobs > cpus:
        raise click.BadParameter(f"{jobs} is more than the {cpus} CPU(s) this process may use")
    return jobs


@main.command()
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the program generator.")
@click.option("--count", type=click.IntRange(min=0), default=1000, show_default=True, help="How many programs to run.")
@click.option(
    "--category",
    type=click.Choice(["core", "attrs", "lifecycle", "all"]),
    default="core",
    show_default=True,
    help="Which system-call families the programs exercise.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    callback=lambda ctx, param, value: _at_most_cpus(value),
    help="Parallel kernel workers, at most the CPU count (default: CPU count).",
)
@click.option("--out", type=click.Path(file_okay=False), default="fuzz-out", show_default=True,
              help="Where shrunk reproducers of divergences are saved.")
def fuzz(seed: int, count: int, category: str, jobs: int | None, out: str) -> None:
    """Generate programs, run them on both sides, shrink and save every divergence."""
    from vmasim.fuzz import fuzz_command

    sys.exit(fuzz_command(seed=seed, count=count, category=category, jobs=jobs, out=out))


if __name__ == "__main__":  # pragma: no cover
    main()
