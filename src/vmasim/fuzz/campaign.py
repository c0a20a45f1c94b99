"""A fuzz campaign: generate, run on both sides, shrink and save every divergence; the ``vmasim fuzz`` command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from vmasim.compare.diff import format_diff
from vmasim.fuzz.categories import plan_category
from vmasim.fuzz.coverage import Coverage
from vmasim.fuzz.evaluate import Doc, KernelBatch, Outcome, default_kernel_batch, evaluate, wall_ops
from vmasim.fuzz.generate import generate_programs
from vmasim.fuzz.shrink import _positions, shrink
from vmasim.profile import Profile
from vmasim.program import parse_program


@dataclass
class CampaignResult:
    """Counts of a fuzz campaign."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    saved: list[str] = field(default_factory=list)


def _save(out_dir: str, stem: str, doc: Doc, outcome: Outcome, original: Doc) -> str:
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, stem)
    with open(base + ".json", "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    with open(base + ".orig.json", "w", encoding="utf-8") as fh:
        json.dump(original, fh, indent=1)
        fh.write("\n")
    for suffix, rep in ((".model.json", outcome.model), (".kernel.json", outcome.kernel)):
        with open(base + suffix, "w", encoding="utf-8") as fh:
            json.dump(rep if rep is not None else {"error": outcome.model_error}, fh, indent=1)
            fh.write("\n")
    with open(base + ".diff.txt", "w", encoding="utf-8") as fh:
        fh.write(format_diff(outcome.diffs))
    return base + ".json"


def run_campaign(
    *,
    seed: int,
    count: int,
    category: str,
    out: str,
    kernel_batch: KernelBatch,
    stream: TextIO | None = None,
    chunk: int = 1000,
    shrink_budget_s: float = 20.0,
    total_shrink_budget_s: float = 300.0,
    shrinks_per_kind: int = 3,
    profile: Profile | None = None,
    coverage: Coverage | None = None,
) -> CampaignResult:
    """Generate ``count`` programs, run them on both sides, shrink and save every divergence.

    With ``coverage``, every program is counted into it with the kernel's
    report (which items of the format were generated, which accepted).
    Prints one line per divergence; the caller prints the summary.  Divergences
    of a kind already shrunk ``shrinks_per_kind`` times, or found after the
    total shrink budget is spent, are saved as they are (said so in their line).
    """
    say = _printer(stream)
    res = CampaignResult()
    failures: list[tuple[int, Outcome]] = []
    for lo in range(0, count, chunk):
        docs = generate_programs(seed, min(chunk, count - lo), category, start=lo)
        for i, outcome in enumerate(evaluate(docs, kernel_batch, profile)):
            if coverage is not None:
                coverage.add(outcome.doc, outcome.kernel)
            if outcome.invalid is not None:  # a generator bug; never expected
                say(f"program {lo + i}: generator produced an invalid program: {outcome.invalid}")
                res.failed += 1
            elif outcome.skip_reason is not None:
                res.skipped += 1
                if res.skipped <= 3:  # a few examples; the count comes with the summary
                    say(f"program {lo + i}: {outcome.skip_reason}")
            elif outcome.diverges:
                res.failed += 1
                failures.append((lo + i, outcome))
            else:
                res.passed += 1
        if count > chunk:
            # Progress of long campaigns goes to stderr: stdout ends with the summary line.
            print(f"... {min(lo + chunk, count)}/{count} run, {res.failed} failed", file=sys.stderr, flush=True)
    spent = 0.0
    per_kind: dict[str, int] = {}
    seen_repros: dict[str, str] = {}
    for n, (index, outcome) in enumerate(failures, start=1):
        kind = outcome.signature() or "?"
        doc, final, note = outcome.doc, outcome, ""
        if per_kind.get(kind, 0) >= shrinks_per_kind:
            note = " (not shrunk: same kind as earlier ones)"
        elif spent >= total_shrink_budget_s:
            note = " (not shrunk: shrink time budget spent)"
        else:
            per_kind[kind] = per_kind.get(kind, 0) + 1
            result = shrink(outcome.doc, kernel_batch, first=outcome, budget_s=shrink_budget_s, profile=profile)
            spent += result.seconds
            doc, final = result.doc, result.outcome
            if not result.complete:
                note = f" (shrinking stopped after {result.seconds:.0f}s)"
        key = json.dumps(doc, sort_keys=True)
        stem = f"divergence-{seed}-{n}"
        if key in seen_repros:
            note += f" (same reproducer as {seen_repros[key]})"
        else:
            seen_repros[key] = stem
        # The reproducer says where it came from, in a field the contract ignores.
        how = "as generated" if doc is outcome.doc else "shrunk"
        doc = {**doc, "_comment": f"vmasim fuzz --seed {seed} --category {category}: program {index}, {how}"}
        path = _save(out, stem, doc, final, outcome.doc)
        res.saved.append(path)
        n_ops = len(_positions(doc["ops"]))
        if final.model is not None:
            walls = wall_ops(parse_program(doc), final.model)
            if walls:
                note += f" (op {walls[0]} acts on the walls above the window)"
        say(f"FAIL program {index}: {path} ({n_ops} op(s)){note}: {final.diffs[0] if final.diffs else '?'}")
    return res


def _printer(stream: TextIO | None) -> Callable[[str], None]:
    def say(text: str) -> None:
        print(text, file=stream if stream is not None else sys.stdout, flush=True)

    return say


def fuzz_command(*, seed: int, count: int, category: str, jobs: int | None, out: str, target: str = "host",
                 coverage: bool = False) -> int:
    """``vmasim fuzz``: run a campaign on the model of ``target`` (the probed host by default) and the host
    kernel; the exit status.

    0 when no program diverged, 1 when some did, 2 when the campaign could not
    run (an unknown category or profile, or no kernel runner).  With
    ``coverage`` the table of the format's items (generated, accepted by the
    kernel) is printed before the summary.  The last line printed is always
    ``N passed, M failed`` when programs ran.
    """
    say = _printer(None)
    try:
        plan_category(category)
    except ValueError as exc:
        say(str(exc))
        return 2
    try:
        from vmasim.kernel import kernel_available
    except ImportError as exc:
        say(f"cannot run on the host kernel: the kernel runner is not available ({exc})")
        return 2
    ok, why = kernel_available()
    if not ok:
        say(f"cannot run on the host kernel: {why}")
        return 2
    from vmasim.kernel import host_kernel_release
    from vmasim.profile import ProfileError, resolve_profile

    try:
        profile = resolve_profile(target)
    except ProfileError as exc:
        say(str(exc))
        return 2
    say(f"fuzz: seed {seed}, {count} {category} program(s), jobs {jobs or 'auto'}, reproducers in {out}/; "
        f"host kernel {host_kernel_release()}, model of profile {profile.name} ({profile.release})")
    from vmasim.fuzz.generate import category_classes

    cov = Coverage(category_classes(category)) if coverage else None
    res = run_campaign(seed=seed, count=count, category=category, out=out, kernel_batch=default_kernel_batch(jobs),
                       profile=profile, coverage=cov)
    if cov is not None:
        for line in cov.table():
            say(line)
    return finish(res, say)


def finish(res: CampaignResult, say: Callable[[str], None]) -> int:
    """Print the skipped count (if any) and the summary line last; the exit status."""
    if res.skipped:
        say(f"{res.skipped} skipped (kernel runner error or model stopped)")
    say(f"{res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0
