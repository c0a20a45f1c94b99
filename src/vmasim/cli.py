"""The ``vmasim`` command: run programs on the model or the kernel, compare them, explain, fuzz, bench."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from vmasim.api import AddressSpace
from vmasim.core.errors import WouldBlock
from vmasim.profile import Profile, ProfileError
from vmasim.program import Program, ProgramError, load_program
from vmasim.program.model import run_model
from vmasim.timeline import describe_op as _describe_op
from vmasim.timeline import describe_result as _result_text

F = TypeVar("F", bound=Callable[..., Any])


def target_option(default: str) -> Callable[[F], F]:
    """The ``--target`` option: which machine the model models."""
    return click.option(
        "--target",
        default=default,
        show_default=True,
        metavar="host|NAME|FILE.json",
        help="The machine the model models: 'host' (probe this one), 'default' or another built-in "
        "profile's name, or a profile JSON file.",
    )


def _profile(spec: str) -> Profile:
    from vmasim.probe import resolve_target

    try:
        return resolve_target(spec)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from None


def _load(path: str) -> Program:
    try:
        # Read as bytes (standard input too): the parser judges the encoding, so any bytes end in one line.
        return load_program(path)
    except ProgramError as exc:
        raise click.ClickException(f"invalid program: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None


def _print_report(program: Program, report: Mapping[str, Any], indent: str = "") -> None:
    for op, res in zip(program.ops, report["results"], strict=False):
        click.echo(f"{indent}[{op.path}] {_describe_op(op)} = {_result_text(res)}")
    click.echo(f"{indent}--- layout ({len(report['vmas'])} VMA(s) in the window)")
    from vmasim.compare.view import maps_lines

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
@target_option("default")
def run(program: str, as_json: bool, kernel: bool, steps: bool, target: str) -> None:
    """Run PROGRAM (a vmasim-program/1 JSON file, or - for standard input) and show each call's result and the
    final layout."""
    prog = _load(program)
    if steps:
        if as_json or kernel:
            raise click.UsageError("--steps shows the model's steps; it does not combine with --json or --kernel")
        _print_steps(prog, _profile(target))
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
            report = run_model(prog, _profile(target))
        except WouldBlock as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_report(prog, report)


def _print_steps(prog: Program, profile: Profile) -> None:
    from vmasim.timeline import record_timeline, steps_text

    timeline = record_timeline(prog, profile)
    for line in steps_text(timeline):
        # Coloured like a diff on a terminal (click drops the colours elsewhere).
        body = line.lstrip()
        colour = {"- ": "red", "+ ": "green"}.get(body[:2])
        bold = body[:1] == "["
        click.echo(click.style(line, fg=colour, bold=bold) if colour or bold else line)
    if timeline.stopped:
        sys.exit(1)


@main.command()
@click.argument("program", type=click.Path(dir_okay=False), required=False)
@click.option("--pid", type=int, default=None, help="Explain a live process's layout instead (imported from /proc).")
@target_option("default")
def explain(program: str | None, pid: int | None, target: str) -> None:
    """Run PROGRAM on the model and say, for each pair of neighbouring VMAs, why they did not merge."""
    from vmasim.explain import explain as explain_pairs
    from vmasim.program.model import run_model_space

    if pid is not None:
        from vmasim.trace.command import explain_pid_command

        sys.exit(explain_pid_command(pid))
    if program is None:
        raise click.UsageError("give a PROGRAM or --pid PID")
    prog = _load(program)
    # Fork children explained too: the runner's hook hands over each child's address space as it starts.
    processes: list[tuple[str, AddressSpace]] = []

    def keep_children(run: Any, op: Any, result: Any) -> None:
        if result is None:
            processes.append((op.path, run.space))

    try:
        _report, space = run_model_space(prog, _profile(target), on_step=keep_children)
    except WouldBlock as exc:
        raise click.ClickException(str(exc)) from None
    for path, proc in [("", space), *processes]:
        if path:
            click.echo(f"--- the child of fork op {path}")
        click.echo(proc.maps(prog.window_start, prog.window_end), nl=False)
        pairs = explain_pairs(proc.mm, prog.window_start, prog.window_end)
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
@target_option("default")
def view(program: str, output: str | None, as_svg: bool, step: int | None, screenshot: str | None,
         target: str) -> None:
    """Draw PROGRAM's address space after every step: one self-contained HTML page (or SVG with --svg)."""
    from vmasim.view import ViewError, view_command

    try:
        for line in view_command(program, _load(program), output, as_svg, step, screenshot, _profile(target)):
            click.echo(line, err=True)
    except ViewError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("programs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@target_option("host")
@click.option("-q", "--quiet", is_flag=True, help="Only each program's verdict and its differences, no layouts.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: each program's verdict and differences.")
def compare(programs: tuple[str, ...], target: str, quiet: bool, as_json: bool) -> None:
    """Run each PROGRAM on the model and on the host kernel and show where the layouts differ.

    Exit status: 0 all agree, 1 some differ, 2 some could not be compared.
    """
    from vmasim.compare import compare_command

    sys.exit(compare_command(programs, target=target, quiet=quiet, as_json=as_json))


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
@click.option("--coverage", is_flag=True,
              help="Also print, per op, field and value of the format, how often it was generated and accepted.")
@target_option("host")
def fuzz(seed: int, count: int, category: str, jobs: int | None, out: str, coverage: bool, target: str) -> None:
    """Generate programs, run them on both sides, shrink and save every divergence."""
    from vmasim.fuzz import fuzz_command

    sys.exit(fuzz_command(seed=seed, count=count, category=category, jobs=jobs, out=out, target=target,
                          coverage=coverage))


@main.command()
def ops() -> None:
    """List the ops of the program format and their fields (docs/program-format.md has the whole reference)."""
    from vmasim.program.reference import ops_table

    for line in ops_table():
        click.echo(line)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON (the vmasim-profile/1 format).")
@click.option("--name", default="host", show_default=True, help="The name to give the probed profile.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the JSON profile to this file.")
def probe(as_json: bool, name: str, output: str | None) -> None:
    """Probe this machine (CPU, sysctls, limits, THP, NUMA, kernel behaviours) and print its profile."""
    from vmasim.probe import probe_host, unmodelled

    prof = _profile("host").with_name(name) if name != "host" else probe_host()
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(prof.to_json())
    if as_json:
        click.echo(prof.to_json(), nl=False)
    elif not output:
        _print_profile(prof)
    for reason in unmodelled(prof):
        click.echo(f"warning: {reason}", err=True)


@main.command()
@click.argument("programs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--as", "as_profile", required=True, metavar="NAME|FILE.json",
              help="The profile this host's answers are stored under (a built-in name or a profile file).")
@click.option("--force", is_flag=True, help="Record even where this host differs from the profile.")
def record(programs: tuple[str, ...], as_profile: str, force: bool) -> None:
    """Run each PROGRAM on this host's kernel and store its report in the program, under a profile's name.

    The programs keep the reports of every machine they were recorded on
    (``_kernel_reports``); the model replays each with its own profile.
    """
    from vmasim.kernel import KernelRunError
    from vmasim.probe import probe_host
    from vmasim.stored import profile_differences
    from vmasim.stored import record as record_reports

    prof = _profile(as_profile)
    try:
        host = probe_host()
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from None
    differences = profile_differences(prof, host)
    for line in differences:
        click.echo(f"this host differs from {prof.name}: {line}", err=True)
    ignorable = all(line.startswith(("target.kernel.release", "target.memory.ram_pages")) for line in differences)
    if differences and not ignorable and not force:
        raise click.ClickException(f"this host is not a {prof.name} machine (use --force to record anyway)")
    try:
        done = record_reports(programs, prof)
    except KernelRunError as exc:
        raise click.ClickException(str(exc)) from None
    for path, status in done:
        if status != "same":
            click.echo(f"{path}: {status} report for {prof.name}")
    counts = {status: sum(1 for _, s in done if s == status) for status in ("new", "changed", "same")}
    click.echo(f"{len(done)} program(s) recorded under {prof.name}: "
               + ", ".join(f"{n} {status}" for status, n in counts.items()))


def _print_profile(prof: Profile) -> None:
    t = prof.target
    rows = [
        ("profile", prof.name),
        ("description", prof.description),
        ("kernel", t.kernel.release),
        ("behaviours", ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in (
            ("maybe_guard_flag", t.kernel.maybe_guard_flag), ("anon_vma_relaxed", t.kernel.anon_vma_relaxed),
            ("multi_vma_mremap", t.kernel.multi_vma_mremap), ("anon_vma_name", t.kernel.anon_vma_name),
            ("soft_dirty", t.kernel.soft_dirty)))),
        ("cpu", f"pku={'yes' if t.cpu.pku else 'no'}, la57={'yes' if t.cpu.la57 else 'no'}"),
        ("max_map_count", str(t.limits.max_map_count)),
        ("mmap_min_addr", f"{t.limits.mmap_min_addr:#x} (effective {t.mmap_min_addr:#x})"),
        ("overcommit", f"mode {t.limits.overcommit_memory}, ratio {t.limits.overcommit_ratio}"),
        ("rlimits", ", ".join(f"{k}={'unlimited' if v is None else v}" for k, v in (
            ("memlock", t.limits.rlimit_memlock), ("as", t.limits.rlimit_as), ("data", t.limits.rlimit_data)))),
        ("privileged", "yes" if t.limits.privileged else "no"),
        ("memory", f"{t.memory.ram_pages * 4 >> 10} MiB RAM, {t.memory.swap_pages * 4 >> 10} MiB swap"),
        ("thp", f"anon {t.memory.thp_anon}, shmem {t.memory.thp_shmem}"),
        ("numa nodes", ",".join(map(str, t.memory.numa_nodes))),
        ("uffd features", hex(t.memory.uffd_features)),
        ("files", f"{t.files.regular_fs}, largest {t.files.regular_max_bytes:#x}"),
        ("runner layout", f"image {prof.layout.image_start:#x}-{prof.layout.image_end:#x}, "
                          f"break {prof.layout.initial_break:#x}, mmap_base {prof.layout.mmap_base:#x}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--check", default="end", show_default=True,
              help="When to compare the model with /proc: every, end, or every N calls.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (totals, then every process).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write trace.json and one reproducer program per divergence here.")
@click.option("--no-aslr", is_flag=True, help="Run the command with address-space randomisation off.")
@click.option("--explain-all", is_flag=True, help="Explain the final layout of every process, not only the first.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def trace(check: str, as_json: bool, out: str | None, no_aslr: bool, explain_all: bool,
          command: tuple[str, ...]) -> None:
    """Run COMMAND under ptrace, mirror each memory call on the model and compare with /proc."""
    from vmasim.trace.command import trace_command

    sys.exit(trace_command(list(command), check=check, as_json=as_json, out=out, no_aslr=no_aslr,
                           explain_all=explain_all))


@main.command("import")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print the imported VMAs as JSON.")
def import_(source: str, as_json: bool) -> None:
    """Build an address space from a live process (PID) or a saved maps/smaps FILE and show it."""
    from vmasim.trace.command import import_command

    sys.exit(import_command(source, as_json=as_json))


@main.command()
@click.option("--quick", is_flag=True, help="Tiny sizes and few repetitions: shows that the bench works.")
@click.option("--sizes", help="VMA counts, separated by commas (default 10,1000,10000,65000).")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def bench(quick: bool, sizes: str | None, as_json: bool) -> None:
    """Time the model against the host kernel: the same calls on the same layouts, at several VMA counts."""
    from vmasim.bench import bench_command

    sys.exit(bench_command(quick=quick, sizes=sizes, as_json=as_json))


if __name__ == "__main__":  # pragma: no cover
    main()
