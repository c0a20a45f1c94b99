"""Stored kernel reports: programs that carry what real kernels answered, each answer with its profile.

A regression or probe program keeps, beside its ops, ``_kernel_reports``: for
each machine it was run on, the name of that machine's profile and the layout
report the kernel gave there.  The model replays each with its own profile,
so the stored answers check the model on any host; ``vmasim record`` runs the
programs on this host and stores (or refreshes) this host's answers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vmasim.profile import Profile

#: The field of a program document that holds the stored reports, by profile name.
FIELD = "_kernel_reports"


def stored_reports(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The stored kernel reports of a program document, by profile name."""
    reports = doc.get(FIELD, {})
    if not isinstance(reports, dict):
        raise ValueError(f"{FIELD} must map profile names to reports")
    return reports


def profile_differences(expected: Profile, probed: Profile) -> list[str]:
    """The fields in which a probed host differs from a named profile (names and descriptions aside)."""
    out: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if dataclasses.is_dataclass(a) and not isinstance(a, type):
            for f in dataclasses.fields(a):
                walk(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}" if where else f.name)
        elif a != b:
            out.append(f"{where}: {a!r} in the profile, {b!r} on this host")

    walk(expected.target, probed.target, "target")
    walk(expected.layout, probed.layout, "layout")
    return out


def record(paths: Iterable[str | Path], profile: Profile) -> list[tuple[Path, str]]:
    """Run each program file on the host kernel and store the report under ``profile``'s name.

    Returns each path with what happened to its report for the profile:
    ``"new"``, ``"changed"`` or ``"same"``.  A program the
    kernel runner cannot run raises :class:`~vmasim.kernel.KernelRunError`
    before anything is written.
    """
    from vmasim.kernel import KernelRunError, run_programs
    from vmasim.program import parse_program

    files = [Path(p) for p in paths]
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in files]
    reports = run_programs([parse_program(doc) for doc in docs])
    for path, rep in zip(files, reports, strict=True):
        if isinstance(rep, KernelRunError):
            raise KernelRunError(f"{path}: {rep}")
    out: list[tuple[Path, str]] = []
    for path, doc, rep in zip(files, docs, reports, strict=True):
        assert isinstance(rep, dict)
        stored = dict(stored_reports(doc))
        before = stored.get(profile.name)
        stored[profile.name] = rep
        doc[FIELD] = dict(sorted(stored.items()))
        path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        out.append((path, "new" if before is None else "same" if before == rep else "changed"))
    return out
