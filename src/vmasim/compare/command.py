"""The ``vmasim compare`` command: each program on the model and on the host kernel, and what differs."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from vmasim.compare.diff import diff_reports
from vmasim.compare.view import _print_plain, print_side_by_side
from vmasim.program import Program, ProgramError, load_program
from vmasim.program.report import Report

#: Runs a program on the kernel and returns its layout report (raises on runner failure).
KernelRun = Callable[[Program], Report]


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
    programs: tuple[str, ...],
    *,
    kernel: KernelRun | None = None,
    out: Any = None,
    target: Any = None,
    quiet: bool = False,
    as_json: bool = False,
) -> int:
    """Run each program file on the model and on the host kernel; print both layouts and the differences.

    The model models ``target`` (a profile or its name; by default the probed
    host, or the built-in default when ``kernel`` is given), named in the
    first line printed.  Returns the exit status: 0 if every program agrees,
    1 if any differ, 2 if any program could not be compared (invalid, would
    wait forever for a userfaultfd handler, the kernel runner failed or is
    unavailable).  ``kernel`` replaces the host kernel runner (tests use a
    fake one).  ``quiet`` leaves out the layouts (only verdicts and
    differences); ``as_json`` prints one JSON object instead of text.
    """
    from vmasim.core.errors import WouldBlock
    from vmasim.program.model import run_model

    stream = out if out is not None else sys.stdout
    verdicts: list[dict[str, Any]] = []

    def say(text: str = "") -> None:
        if not as_json:
            print(text, file=stream, flush=True)

    def verdict(path: str, status_text: str, **extra: Any) -> None:
        verdicts.append({"path": path, "status": status_text, **extra})

    def finish(code: int, **extra: Any) -> int:
        if as_json:
            doc = {"status": code, **extra, "programs": verdicts}
            print(json.dumps(doc, indent=2), file=stream, flush=True)
        return code

    status = 0
    loaded: list[tuple[str, Program]] = []
    # Validate everything first: a typo in the third file should not wait for two kernel runs.
    for path in programs:
        try:
            loaded.append((path, load_program(path)))
        except ProgramError as exc:
            # load_program() already names the file, the op and the field.
            say(f"invalid program: {exc}")
            verdict(path, "invalid", error=str(exc))
            status = 2
        except OSError as exc:
            say(f"{path}: cannot read: {exc.strerror or exc}")
            verdict(path, "unreadable", error=str(exc.strerror or exc))
            status = 2
    runnable = loaded
    if not runnable:
        return finish(status)
    if kernel is None:
        kernel, why = _kernel_runner()
        if kernel is None:
            say(f"cannot run on the host kernel: {why}")
            return finish(2, error=f"cannot run on the host kernel: {why}")
        target = "host" if target is None else target
    from vmasim.probe import resolve_target
    from vmasim.profile import ProfileError

    try:
        profile = resolve_target(target)
    except ProfileError as exc:
        say(f"cannot choose what to model: {exc}")
        return finish(2, error=str(exc))
    say(f"model of profile {profile.name} ({profile.release}) against the host kernel")
    for path, prog in runnable:
        try:
            mrep = run_model(prog, profile)
        except WouldBlock as exc:  # a program that would wait forever is not compared
            say(f"{path}: not compared: {exc}")
            verdict(path, "not compared", error=str(exc))
            status = 2
            continue
        try:
            krep = kernel(prog)
        except Exception as exc:  # the runner's KernelRunError, or anything a broken runner raises
            say(f"{path}: the kernel runner failed: {exc}")
            verdict(path, "kernel runner failed", error=str(exc))
            status = 2
            continue
        diffs = diff_reports(mrep, krep)
        if not quiet and not as_json:
            if out is None:
                print_side_by_side(path, prog, mrep, krep)
            else:
                _print_plain(say, prog, mrep, krep)
        verdict(path, "differ" if diffs else "agree", differences=diffs)
        if diffs:
            say(f"{path}: {len(diffs)} difference(s):")
            for line in diffs:
                say(f"  {line}")
            status = max(status, 1)
        else:
            say(f"{path}: agree")
    return finish(status, model=profile.name, release=profile.release)
