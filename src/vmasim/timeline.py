"""A program's timeline: every process's VMAs after each op, and what each op changed.

:func:`record` runs a program on the model through the runner's per-step hook
and keeps, after every op, a :class:`Snapshot` of the process that ran it:
each VMA as the layout report shows it, plus what a picture needs (its kind,
its anon_vma, where its pages are populated or guarded) and, for every two
touching neighbours, why they are two VMAs (:func:`vmasim.explain.why_separate`).

Each process is a :class:`Lane`: the program's own process, and one lane per
fork child, which starts at the fork op with a copy of the parent's VMAs.
Steps are numbered in the order the ops ran: a fork op comes first, then its
child's ops, then the parent's next op.

:func:`diff` says in words what changed between two snapshots (split, merged,
created, removed, grew, shrank, moved, changed), and :func:`steps_text` prints
a whole timeline the way ``vmasim run --steps`` shows it.
"""

from __future__ import annotations

import bisect
import difflib
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vmasim.core.errors import WouldBlock
from vmasim.core.mm import MmStruct
from vmasim.profile import Profile
from vmasim.program.model import new_address_space, run_model_space
from vmasim.program.parse import Op, Program
from vmasim.program.report import OpResult
from vmasim.snapshot import KINDS, Snapshot, SnapshotNames, VmaState, size_text, snapshot, span, vma_kind

__all__ = [
    "KINDS", "Change", "Effect", "Lane", "Snapshot", "Step", "Timeline", "VmaState", "attribute_changes",
    "changed_boundaries", "describe_op", "describe_result", "diff", "lane_of", "record_timeline", "size_text",
    "snapshot", "span", "step_lines", "steps_text", "vma_kind",
]

@dataclass(frozen=True, slots=True)
class Effect:
    """A change an op made to another process: a userfaultfd registered through an inherited
    descriptor acts on the process that created it (the kernel's ctx->mm)."""

    lane: str
    before: Snapshot
    after: Snapshot

    @property
    def changes(self) -> list[Change]:
        """What changed there, in words (see :func:`diff`)."""
        return diff(self.before.vmas, self.after.vmas)


@dataclass(frozen=True, slots=True)
class Step:
    """One op as it ran: which process (lane) ran it, its result, and that process's VMAs before and after.

    ``result`` is the op's entry in the layout report's ``results``; ``effects``
    are the changes it made to other processes, if any.
    """

    index: int
    lane: str
    op: Op
    result: Mapping[str, Any]
    before: Snapshot
    after: Snapshot
    effects: tuple[Effect, ...] = ()

    @property
    def changes(self) -> list[Change]:
        """What the op changed, in words (see :func:`diff`)."""
        return diff(self.before.vmas, self.after.vmas)


@dataclass(slots=True)
class Lane:
    """One process: the program's own (key ``""``) or a fork child (key: the fork op's path, ``"2"``).

    ``born`` is the index of the step at which it appears (the fork op; 0 for
    the program's process), ``initial`` its VMAs then (before its first op),
    ``parent`` its parent's key, ``steps`` the steps it ran, and ``history``
    every ``(step index, VMAs after it)`` at which its VMAs were recorded
    (its own steps and other processes' effects on it).
    """

    key: str
    title: str
    born: int
    initial: Snapshot
    parent: str | None = None
    steps: list[Step] = field(default_factory=list)
    history: list[tuple[int, Snapshot]] = field(default_factory=list)

    @property
    def last(self) -> Snapshot:
        """The VMAs as last recorded."""
        return self.history[-1][1] if self.history else self.initial


@dataclass(slots=True)
class Timeline:
    """A whole program's run: its lanes and its steps in the order they ran.

    ``stopped`` is set when the run could not go on (an op would wait forever
    for a userfaultfd handler); the steps up to it are kept.
    """

    program: Program
    lanes: dict[str, Lane]
    steps: list[Step]
    stopped: str | None = None

    @property
    def comment(self) -> str | None:
        """The program's ``_comment``, if it has one."""
        comment = self.program.source.get("_comment")
        return str(comment) if comment is not None else None

    def state(self, lane: str, step: int) -> Snapshot | None:
        """The VMAs of ``lane`` after step ``step`` (None if the lane did not exist yet)."""
        ln = self.lanes[lane]
        if step < ln.born:
            return None
        i = bisect.bisect_right([index for index, _ in ln.history], step)
        return ln.history[i - 1][1] if i else ln.initial


def lane_of(op: Op) -> str:
    """The key of the lane an op runs in: its fork's path, or ``""`` for the program's own ops."""
    return op.path.rsplit(".", 1)[0] if "." in op.path else ""


class _Recorder:
    """The runner's step hook: takes a snapshot after every op of every process."""

    def __init__(self, program: Program, profile: Profile | str | None) -> None:
        self.program = program
        self.names = SnapshotNames()
        fresh = new_address_space(program, profile)
        self.heap_base = fresh.initial_break
        first = Lane("", "process", 0, self.snap(fresh.mm))
        self.lanes: dict[str, Lane] = {"": first}
        self.steps: list[Step] = []
        self.pending: dict[str, int] = {}  # fork op path -> the index reserved for its step
        self.mms: dict[str, MmStruct] = {}  # the address space of each lane seen so far

    def snap(self, mm: MmStruct) -> Snapshot:
        return snapshot(mm, self.program.window_start, self.program.window_end, self.heap_base, self.names)

    def __call__(self, run: Any, op: Op, result: OpResult | None) -> None:
        lane = self.lanes[lane_of(op)]
        if result is None:
            # A fork child is starting: the fork op takes its place in the order now,
            # before the child's ops, and the child's lane begins with its copy.
            index = len(self.steps)
            self.pending[op.path] = index
            placeholder = {"op": op.op, "ret": None, "errno": None}
            self.steps.append(Step(index, lane.key, op, placeholder, lane.last, lane.last))
            lane.history.append((index, lane.last))
            self.lanes[op.path] = Lane(op.path, f"child of fork op {op.path}", index, self.snap(run.space.mm),
                                       lane.key)
            self.mms[op.path] = run.space.mm
            return
        mm: MmStruct = run.space.mm
        self.mms[lane.key] = mm
        if op.path in self.pending:
            index = self.pending.pop(op.path)
            step = self.steps[index] = replace(self.steps[index], result=result)
            if index == len(self.steps) - 1:
                # A child without ops: whatever its exit changed here is the fork's doing.
                step = self.steps[index] = replace(step, after=self.snap(mm))
                lane.history[-1] = (index, step.after)
            else:
                # Anything the child's exit changed here belongs to the child's last step.
                self._effects(len(self.steps) - 1, {lane.key})
        else:
            index = len(self.steps)
            step = Step(index, lane.key, op, result, lane.last, self.snap(mm))
            self.steps.append(step)
            lane.history.append((index, step.after))
            self._effects(index, set())
        lane.steps.append(step)  # record() swaps in the final version of each step

    def _effects(self, index: int, also: set[str]) -> None:
        """Record what step ``index`` did to the processes waiting on a fork (no other can be changed)."""
        found = []
        waiting = {lane_of(self.steps[i].op) for i in self.pending.values()} | also
        for key in sorted(waiting - {self.steps[index].lane}):
            lane, mm = self.lanes[key], self.mms.get(key)
            now = self.snap(mm) if mm is not None else lane.last
            if now != lane.last:
                found.append(Effect(key, lane.last, now))
                lane.history.append((index, now))
        if found:
            self.steps[index] = replace(self.steps[index], effects=self.steps[index].effects + tuple(found))


def record_timeline(program: Program, profile: Profile | str | None = None) -> Timeline:
    """Run ``program`` on the model of ``profile`` and keep every process's VMAs after each op.

    An op that would wait forever for a
    userfaultfd handler ends the run early, with :attr:`Timeline.stopped` set.
    """
    rec = _Recorder(program, profile)
    stopped = None
    try:
        run_model_space(program, profile, on_step=rec)
    except WouldBlock as exc:
        stopped = str(exc)
        # A fork whose child stopped never returned: its step keeps the placeholder result.
        for index in rec.pending.values():
            step = rec.steps[index]
            rec.lanes[step.lane].steps.append(step)
    for lane in rec.lanes.values():
        lane.steps.sort(key=lambda s: s.index)
        lane.steps = [rec.steps[s.index] for s in lane.steps]
    return Timeline(program, rec.lanes, rec.steps, stopped)


# --- what changed -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One thing an op did to the VMAs, in words.

    ``kind`` is ``split``, ``merged``, ``created``, ``removed``, ``grew``,
    ``shrank``, ``moved``, ``changed`` or ``reshaped``; ``before`` and
    ``after`` are the VMAs involved on each side.
    """

    kind: str
    before: tuple[VmaState, ...]
    after: tuple[VmaState, ...]
    text: str

    def __str__(self) -> str:
        return self.text


def attribute_changes(old: VmaState, new: VmaState) -> list[str]:
    """How ``new``'s attributes differ from ``old``'s (its range aside), in words."""
    out: list[str] = []
    if old.perms != new.perms:
        out.append(f"{old.perms} -> {new.perms}")
    if (old.file, old.kind) != (new.file, new.kind):
        out.append(f"now {new.file or new.kind}")
    elif old.file is not None and old.offset + (new.start - old.start) != new.offset:
        out.append(f"offset {old.offset:#x} -> {new.offset:#x}")
    implied = {"rd", "wr", "ex"} if old.perms != new.perms else set()
    added = [f"+{f}" for f in new.flags if f not in old.flags and f not in implied]
    gone = [f"-{f}" for f in old.flags if f not in new.flags and f not in implied]
    if added or gone:
        out.append("VmFlags " + " ".join(added + gone))
    if old.policy != new.policy:
        out.append(f"policy {old.policy} -> {new.policy}")
    if old.name != new.name:
        out.append(f"name {old.name or '(none)'} -> {new.name or '(none)'}")
    if old.anon_vma != new.anon_vma:
        if old.anon_vma is None:
            out.append(f"got anon_vma {new.anon_vma}" + (" (forked)" if new.forked else ""))
        elif new.anon_vma is None:
            out.append(f"dropped anon_vma {old.anon_vma}")
        else:
            out.append(f"anon_vma {old.anon_vma} -> {new.anon_vma}")
    old_guards = [(s, e) for s, e in old.guards if new.start <= s and e <= new.end]
    if tuple(old_guards) != new.guards:
        out.append("guard pages " + (", ".join(span(s, e) for s, e in new.guards) if new.guards else "removed"))
    return out


def _components(removed: list[VmaState], added: list[VmaState]) -> list[tuple[list[VmaState], list[VmaState]]]:
    """Group removed and added VMAs that overlap, directly or through each other."""
    items = sorted([(v.start, 0, v) for v in removed] + [(v.start, 1, v) for v in added], key=lambda t: (t[0], t[1]))
    groups: list[tuple[list[VmaState], list[VmaState]]] = []
    reach = -1
    for start, side, vma in items:
        if not groups or start >= reach:
            groups.append(([], []))
            reach = vma.end
        groups[-1][side].append(vma)
        reach = max(reach, vma.end)
    return groups


def _uncovered(whole: VmaState, parts: Sequence[VmaState]) -> list[tuple[int, int]]:
    holes = []
    at = whole.start
    for p in parts:
        if p.start > at:
            holes.append((at, min(p.start, whole.end)))
        at = max(at, p.end)
    if at < whole.end:
        holes.append((at, whole.end))
    return [(s, e) for s, e in holes if s < e]


def _describe(old: list[VmaState], new: list[VmaState]) -> Change:
    if not new:
        (gone,) = old
        return Change("removed", (gone,), (), f"removed {gone.span} ({gone.describe()})")
    if not old:
        (made,) = new
        return Change("created", (), (made,), f"created {made.span} ({made.describe()})")
    lo, hi = min(v.start for v in old + new), max(v.end for v in old + new)
    if len(old) == 1 and len(new) == 1:
        a, b = old[0], new[0]
        attrs = attribute_changes(a, b)
        tail = (": " + ", ".join(attrs)) if attrs else ""
        if (a.start, a.end) == (b.start, b.end):
            return Change("changed", (a,), (b,), f"{a.span}{tail or ': changed'}")
        if a.start <= b.start and b.end <= a.end:
            return Change("shrank", (a,), (b,), f"shrank {a.span} to {b.span} (-{size_text(a.size - b.size)}){tail}")
        if b.start <= a.start and a.end <= b.end:
            return Change("grew", (a,), (b,), f"grew {a.span} to {b.span} (+{size_text(b.size - a.size)}){tail}")
        return Change("reshaped", (a,), (b,), f"{a.span} became {b.span}{tail}")
    if len(old) == 1:
        (a,) = old
        text = f"split {a.span} into {len(new)}"
        notes = [f"{span(s, e)} unmapped" for s, e in _uncovered(a, new)]
        notes += [f"{b.span} {', '.join(attrs)}" for b in new if (attrs := attribute_changes(a, b))]
        return Change("split", (a,), tuple(new), text + ("; " + "; ".join(notes) if notes else ""))
    if len(new) == 1:
        (b,) = new
        text = f"merged {len(old)} VMAs into {b.span}"
        filled = _uncovered(b, old)
        if filled:
            text += " (with the new range " + ", ".join(span(s, e) for s, e in filled) + ")"
        perms_before = {a.perms for a in old}
        if len(perms_before) == 1 and b.perms not in perms_before:
            text += f", now {b.perms}"
        return Change("merged", tuple(old), (b,), text)
    return Change("reshaped", tuple(old), tuple(new),
                  f"{len(old)} VMAs in {span(lo, hi)} became {len(new)}: " + ", ".join(b.span for b in new))


def _moved(gone: VmaState, made: VmaState) -> bool:
    """Whether a removed and a created VMA look like one VMA moved (by mremap): same size and contents."""
    if gone.size != made.size or gone.perms != made.perms or gone.flags != made.flags:
        return False
    if gone.anon_vma is not None:
        return gone.anon_vma == made.anon_vma
    return gone.file is not None and (gone.file, gone.offset) == (made.file, made.offset)


def diff(before: Sequence[VmaState], after: Sequence[VmaState]) -> list[Change]:
    """What changed between two snapshots of one process, in address order.

    VMAs present unchanged on both sides are left out; the others are
    grouped by overlap and each group is told as one change: one VMA split
    into several, several merged into one, one created, removed, grown,
    shrunk or moved (by mremap: same size and anon_vma or file offset), or
    one whose attributes changed.
    """
    kept_before, kept_after = set(before), set(after)
    removed = [v for v in before if v not in kept_after]
    added = [v for v in after if v not in kept_before]
    changes = _pair_moves([_describe(old, new) for old, new in _components(removed, added)])
    return sorted(changes, key=lambda c: min(v.start for v in c.before + c.after))


def _pair_moves(changes: list[Change]) -> list[Change]:
    """Tell a move as one change.  Only mremap takes a range away in one place and puts it in another
    in one call, so a range gone here and the same range (size, attributes, anon_vma) come there is one
    VMA moved: on its own, into a neighbour it merged with, or out of a VMA that shrank."""

    def moved_alone(g: Change, m: Change) -> Change | None:
        a, b = g.before[0], m.after[0]
        if not _moved(a, b):
            return None
        return Change("moved", (a,), (b,), f"moved {a.span} to {b.span} ({b.describe()})")

    def moved_into(g: Change, c: Change) -> Change | None:
        r, (a,), (b,) = g.before[0], c.before, c.after
        piece = _one_piece(b, a)
        if piece is None or piece[1] - piece[0] != r.size or not _alike(r, b):
            return None
        return Change("moved", (r, a), (b,), f"moved {r.span} to {span(*piece)}, where it merged into {b.span}")

    def moved_out(c: Change, m: Change) -> Change | None:
        (a,), (a2,), made = c.before, c.after, m.after[0]
        piece = _one_piece(a, a2)
        if piece is None or piece[1] - piece[0] != made.size or not _alike(a, made):
            return None
        return Change("moved", (a,), (a2, made), f"moved {span(*piece)} out of {a.span} to {made.span}")

    def moved_between(g: Change, c: Change) -> Change | None:
        r, (b,) = g.before[0], c.after
        holes = _uncovered(b, c.before)
        if len(holes) != 1 or holes[0][1] - holes[0][0] != r.size or not _alike(r, b):
            return None
        return Change("moved", (r, *c.before), (b,),
                      f"moved {r.span} to {span(*holes[0])}, where it merged {len(c.before)} VMAs into {b.span}")

    out = list(changes)
    for first, second, pair in (("removed", "created", moved_alone), ("removed", "grew", moved_into),
                                ("removed", "merged", moved_between), ("shrank", "created", moved_out)):
        for x in [c for c in out if c.kind == first]:
            for y in [c for c in out if c.kind == second]:
                joined = pair(x, y)
                if joined is not None:
                    out[out.index(x)] = joined
                    out.remove(y)
                    break
    return out


def _one_piece(big: VmaState, small: VmaState) -> tuple[int, int] | None:
    """The part of ``big`` outside ``small`` (which lies inside it), when that part is one range."""
    if small.start == big.start and small.end < big.end:
        return small.end, big.end
    if small.end == big.end and small.start > big.start:
        return big.start, small.start
    return None


def _alike(a: VmaState, b: VmaState) -> bool:
    """Whether ``b`` can hold what was in ``a``: same protection, flags, file, policy, and anon_vma if any."""
    return ((a.perms, a.flags, a.file, a.policy) == (b.perms, b.flags, b.file, b.policy)
            and (a.anon_vma is None or a.anon_vma == b.anon_vma))


def changed_boundaries(before: Snapshot, after: Snapshot) -> tuple[set[int], set[int]]:
    """The boundaries that appeared (new VMA starts and ends) and those that disappeared."""
    b, a = before.boundaries(), after.boundaries()
    return a - b, b - a


# --- vmasim run --steps -----------------------------------------------------------


def describe_op(op: Op) -> str:
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
    if isinstance(value, bool):
        return "true" if value else "false"  # as the program writes it
    return str(value)


def describe_result(res: Mapping[str, Any]) -> str:
    """An op's result as ``run`` prints it: the return value, ``-1 ENOMEM``, or ``8 page(s)`` for touch."""
    if res.get("op") == "touch":
        fault = res.get("fault")
        return f"{res['pages']} page(s)" + (f", stopped by {fault}" if fault else "")
    if res.get("errno"):
        return f"-1 {res['errno']}"
    if res.get("ret") is None:
        return "(did not return)"
    return str(res.get("ret"))


def _why_lines(step: Step) -> list[str]:
    """For each new boundary between touching VMAs: why they did not merge."""
    new_bounds, _ = changed_boundaries(step.before, step.after)
    vmas, apart = step.after.vmas, step.after.apart
    made = {v for c in step.changes for v in c.after}
    out = []
    for i, reasons in enumerate(apart):
        left, right = vmas[i], vmas[i + 1]
        if reasons is None or (left.end not in new_bounds and left not in made and right not in made):
            continue
        why = "; ".join(reasons) if reasons else "nothing forbids it, but no call has tried since they became alike"
        out.append(f"not merged at {left.end:08x}: {why}")
    return out


def _diff_lines(before: Snapshot, after: Snapshot, context: int) -> list[str]:
    """The maps lines around the change, like a unified diff: ``-`` before, ``+`` after, ``' '`` context."""
    a = [v.line() for v in before.vmas]
    b = [v.line() for v in after.vmas]
    out: list[str] = []
    for group in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_grouped_opcodes(context):
        if out:
            out.append("  ...")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += ["  " + line for line in a[i1:i2]]
                continue
            out += ["- " + line for line in a[i1:i2]]
            out += ["+ " + line for line in b[j1:j2]]
    return out


def step_lines(step: Step, context: int = 2) -> list[str]:
    """One step as ``vmasim run --steps`` prints it: the call, what changed, the maps lines around it."""
    who = "" if not step.lane else f"(child of fork op {step.lane}) "
    lines = [f"[{step.op.path}] {who}{describe_op(step.op)} = {describe_result(step.result)}"]
    changes = step.changes
    body = [str(c) for c in changes] or ["no VMA of its own changed" if step.effects else "no VMA changed"]
    if changes:
        body += _why_lines(step)
        body += _diff_lines(step.before, step.after, context)
    lines += ["    " + line for line in body]
    for effect in step.effects:
        title = f"child of fork op {effect.lane}" if effect.lane else "process"
        lines += [f"    in {title}: {c}" for c in effect.changes]
        lines += ["    " + line for line in _diff_lines(effect.before, effect.after, context)]
    return lines


def _indent(lane: str) -> str:
    return "    " * (lane.count(".") + 1 if lane else 0)


def steps_text(timeline: Timeline, context: int = 2) -> Iterator[str]:
    """The whole timeline as ``vmasim run --steps`` prints it, line by line."""
    if timeline.comment:
        yield from _wrap(timeline.comment)
        yield ""
    last_of = {key: lane.steps[-1].index for key, lane in timeline.lanes.items() if key and lane.steps}
    for step in timeline.steps:
        pad = _indent(step.lane)
        if step.index:
            yield ""
        for line in step_lines(step, context):
            yield pad + line
        for key, lane in timeline.lanes.items():
            if key and lane.born == step.index:
                count = len(lane.initial.vmas)
                yield pad + f"    child of fork op {key} starts with a copy of {count} VMA{'s' if count != 1 else ''}:"
                for v in lane.initial.vmas:
                    yield pad + "      " + v.line()
                if not lane.steps:
                    yield pad + f"    child of fork op {key} exits"
        for key, index in last_of.items():
            if index == step.index:
                yield _indent(key) + f"child of fork op {key} exits"
    if timeline.stopped:
        yield f"stopped: {timeline.stopped}"
    final = timeline.lanes[""].last
    yield f"--- layout ({len(final.vmas)} VMA{'s' if len(final.vmas) != 1 else ''})"
    for v in final.vmas:
        yield v.line()


def _wrap(text: str, width: int = 100) -> Iterable[str]:
    return textwrap.wrap(text, width) or [""]
