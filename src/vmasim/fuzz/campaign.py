"""A fuzz campaign: generate, run on both sides, shrink and save every divergence; the ``vmasim fuzz`` command."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
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
    #: Stopped by Ctrl-C before every program ran.
    interrupted: bool = False

    @property
    def ran(self) -> int:
        """Programs run to a verdict."""
        return self.passed + self.failed + self.skipped


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


class _Recorder:
    """Shrinks and saves each divergence as soon as it is found (so that an interrupted campaign keeps it)."""

    def __init__(self, *, seed: int, category: str, out: str, kernel_batch: KernelBatch, profile: Profile | None,
                 shrink_budget_s: float, total_shrink_budget_s: float, shrinks_per_kind: int,
                 say: Callable[[str], None]) -> None:
        self.seed, self.category, self.out = seed, category, out
        self.kernel_batch, self.profile, self.say = kernel_batch, profile, say
        self.shrink_budget_s, self.total_shrink_budget_s = shrink_budget_s, total_shrink_budget_s
        self.shrinks_per_kind = shrinks_per_kind
        self.spent = 0.0
        self.per_kind: dict[str, int] = {}
        self.seen: dict[str, str] = {}
        self.count = 0
        self.saved: list[str] = []

    def record(self, index: int, outcome: Outcome) -> str:
        """Shrink (within the budgets), save and announce one divergence; the saved reproducer's path."""
        self.count += 1
        kind = outcome.signature() or "?"
        doc, final, note = outcome.doc, outcome, ""
        if self.per_kind.get(kind, 0) >= self.shrinks_per_kind:
            note = " (not shrunk: same kind as earlier ones)"
        elif self.spent >= self.total_shrink_budget_s:
            note = " (not shrunk: shrink time budget spent)"
        else:
            self.per_kind[kind] = self.per_kind.get(kind, 0) + 1
            try:
                result = shrink(outcome.doc, self.kernel_batch, first=outcome, budget_s=self.shrink_budget_s,
                                profile=self.profile)
            except KeyboardInterrupt:
                # Interrupted while shrinking: keep the divergence as generated, then stop the campaign.
                self._save(index, outcome, outcome.doc, outcome, " (not shrunk: interrupted)")
                raise
            self.spent += result.seconds
            doc, final = result.doc, result.outcome
            if not result.complete:
                note = f" (shrinking stopped after {result.seconds:.0f}s)"
        return self._save(index, outcome, doc, final, note)

    def _save(self, index: int, outcome: Outcome, doc: Doc, final: Outcome, note: str) -> str:
        key = json.dumps(doc, sort_keys=True)
        stem = f"divergence-{self.seed}-{self.count}"
        if key in self.seen:
            note += f" (same reproducer as {self.seen[key]})"
        else:
            self.seen[key] = stem
        # The reproducer says where it came from, in a field the contract ignores.
        how = "as generated" if doc is outcome.doc else "shrunk"
        doc = {**doc, "_comment": f"vmasim fuzz --seed {self.seed} --category {self.category}: program {index}, {how}"}
        path = _save(self.out, stem, doc, final, outcome.doc)
        self.saved.append(path)
        n_ops = len(_positions(doc["ops"]))
        if final.model is not None:
            walls = wall_ops(parse_program(doc), final.model)
            if walls:
                note += f" (op {walls[0]} acts on the runner's walls above the window or pads below it)"
        self.say(f"FAIL program {index}: {path} ({n_ops} op(s)){note}: {final.diffs[0] if final.diffs else '?'}")
        return path


#: Called after each chunk of programs with (programs run, programs that diverged).
Progress = Callable[[int, int], None]


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
    progress: Progress | None = None,
    coverage: Coverage | None = None,
) -> CampaignResult:
    """Generate ``count`` programs, run them on both sides, shrink and save every divergence.

    Prints one line per divergence as soon as it is found (shrunk and saved
    first); the caller prints the summary.  With ``coverage``, every program
    is counted into it with the kernel's report (which items of the format
    were generated, which accepted).  Divergences of a kind already
    shrunk ``shrinks_per_kind`` times, or found after the total shrink budget
    is spent, are saved as they are (said so in their line).  Ctrl-C stops the
    campaign: what was found is kept and the result says it was interrupted.
    """
    say = _printer(stream)
    res = CampaignResult()
    recorder = _Recorder(seed=seed, category=category, out=out, kernel_batch=kernel_batch, profile=profile,
                         shrink_budget_s=shrink_budget_s, total_shrink_budget_s=total_shrink_budget_s,
                         shrinks_per_kind=shrinks_per_kind, say=say)
    try:
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
                    recorder.record(lo + i, outcome)
                else:
                    res.passed += 1
            if progress is not None:
                progress(res.passed + res.failed + res.skipped, res.failed)
    except KeyboardInterrupt:
        res.interrupted = True
    res.saved = recorder.saved
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
    problem = _unwritable(out)
    if problem is not None:
        say(f"cannot save reproducers in {out}: {problem}")
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
    from vmasim.probe import resolve_target
    from vmasim.profile import ProfileError

    try:
        profile = resolve_target(target)
    except ProfileError as exc:
        say(str(exc))
        return 2
    say(f"fuzz: seed {seed}, {count} {category} program(s), jobs {jobs or 'auto'}, reproducers in {out}/; "
        f"host kernel {host_kernel_release()}, model of profile {profile.name} ({profile.release})")
    from vmasim.fuzz.generate import category_classes

    cov = Coverage(category_classes(category)) if coverage else None
    with _progress_display(count) as (progress, chunk):
        res = run_campaign(seed=seed, count=count, category=category, out=out,
                           kernel_batch=default_kernel_batch(jobs), profile=profile, progress=progress, chunk=chunk,
                           coverage=cov)
    if cov is not None:
        for line in cov.table():
            say(line)
    return finish(res, say, count)


def _unwritable(out: str) -> str | None:
    """Why reproducers could not be saved in ``out`` (made if missing), or None: checked before anything runs."""
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@contextlib.contextmanager
def _progress_display(count: int) -> Iterator[tuple[Progress, int]]:
    """A progress bar with the live divergence count on a terminal (rich, on stderr); elsewhere a line per
    chunk on stderr for long campaigns.  Yields the progress callback and the chunk size to run in."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        bar = RichProgress(TextColumn("fuzz"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("[bold]{task.fields[failed]}[/] diverged"), TimeElapsedColumn(),
                           TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                           # Lines for stdout go above the bar when it is the same terminal, else to stdout as ever.
                           redirect_stdout=sys.stdout.isatty())
        task = bar.add_task("fuzz", total=count, failed=0)

        def show(done: int, failed: int) -> None:
            bar.update(task, completed=done, failed=failed)

        with bar:
            # Small chunks keep the bar moving; the runner's batches stay long enough to use every job.
            yield show, 100
        return

    def line(done: int, failed: int) -> None:
        # Progress goes to stderr: stdout ends with the summary line.
        print(f"... {done}/{count} run, {failed} diverged", file=sys.stderr, flush=True)

    yield (line if count > 1000 else _quiet), 1000


def _quiet(done: int, failed: int) -> None:
    del done, failed


def finish(res: CampaignResult, say: Callable[[str], None], count: int | None = None) -> int:
    """Print the skipped count (if any), whether the campaign was interrupted, and the summary line last;
    the exit status (1 when a program diverged, 130 when interrupted without one, else 0)."""
    if res.skipped:
        say(f"{res.skipped} skipped (kernel runner error or model stopped)")
    if res.interrupted:
        of = f" of {count}" if count is not None else ""
        say(f"interrupted after {res.ran}{of} programs; {len(res.saved)} reproducer(s) saved")
    say(f"{res.passed} passed, {res.failed} failed")
    if res.failed:
        return 1
    return 130 if res.interrupted else 0
