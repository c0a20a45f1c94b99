"""The ``vmasim`` command: run programs on the model or the kernel, compare them, explain, fuzz."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from vmasim.core.errors import WouldBlock
from vmasim.program import Program, ProgramError, load_program, parse_program
from vmasim.program.model import NotImplementedOp, run_model
from vmasim.timeline import describe_op as _describe_op
from vmasim.timeline import describe_result as _result_text


def _load(path: str) -> Program:
    try:
        if path == "-":
            return parse_program(sys.stdin.read())
        return load_program(path)
    except ProgramError as exc:
        raise click.ClickException(f"invalid program: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None


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
@click.option("--steps", is_flag=True, help="After each call, show what changed and the maps lines around it.")
def run(program: str, as_json: bool, kernel: bool, steps: bool) -> None:
    """Run PROGRAM (a vmasim-program/1 JSON file, or - for standard input) and show each call's result and the
    final layout."""
    prog = _load(program)
    if steps:
        if as_json or kernel:
            raise click.UsageError("--steps shows the model's steps; it does not combine with --json or --kernel")
        _print_steps(prog)
        return
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


def _print_steps(prog: Program) -> None:
    from vmasim.timeline import record, steps_text

    try:
        timeline = record(prog)
    except NotImplementedOp as exc:
        raise click.ClickException(str(exc)) from None
    for line in steps_text(timeline):
        # Coloured like a diff on a terminal (click drops the colours elsewhere).
        body = line.lstrip()
        colour = {"- ": "red", "+ ": "green"}.get(body[:2])
        bold = body[:1] == "["
        click.echo(click.style(line, fg=colour, bold=bold) if colour or bold else line)
    if timeline.stopped:
        sys.exit(1)


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
@click.argument("program", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to write the page (default: PROGRAM with .html, or .svg with --svg).")
@click.option("--svg", "as_svg", is_flag=True, help="Write the picture of one step as a standalone SVG instead.")
@click.option("--step", type=int, default=None, help="The step to show (1 = after the first op; default: the last).")
@click.option("--screenshot", type=click.Path(dir_okay=False), default=None,
              help="Also save a PNG of the page at that step, taken with headless Chromium.")
def view(program: str, output: str | None, as_svg: bool, step: int | None, screenshot: str | None) -> None:
    """Draw PROGRAM's address space after every step: one self-contained HTML page (or SVG with --svg)."""
    from vmasim.view import ViewError, view_command

    try:
        for line in view_command(program, _load(program), output, as_svg, step, screenshot):
            click.echo(line, err=True)
    except ViewError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("programs", nargs=-1, required=True, type=click.Path(dir_okay=False))
def compare(programs: tuple[str, ...]) -> None:
    """Run each PROGRAM on the model and on the host kernel and show where the layouts differ."""
    from vmasim.compare import compare_command

    sys.exit(compare_command(programs))


@main.command()
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the program generator.")
@click.option("--count", type=int, default=1000, show_default=True, help="How many programs to run.")
@click.option(
    "--category",
    type=click.Choice(["core", "attrs", "lifecycle", "all"]),
    default="core",
    show_default=True,
    help="Which system-call families the programs exercise.",
)
@click.option("--jobs", type=int, default=None, help="Parallel kernel workers (default: CPU count).")
@click.option("--out", type=click.Path(file_okay=False), default="fuzz-out", show_default=True,
              help="Where shrunk reproducers of divergences are saved.")
def fuzz(seed: int, count: int, category: str, jobs: int | None, out: str) -> None:
    """Generate programs, run them on both sides, shrink and save every divergence."""
    from vmasim.fuzz import fuzz_command

    sys.exit(fuzz_command(seed=seed, count=count, category=category, jobs=jobs, out=out))


if __name__ == "__main__":  # pragma: no cover
    main()
