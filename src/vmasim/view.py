"""Pictures of an address space: one self-contained HTML page for a whole timeline, SVG for one moment.

The picture puts VMAs as boxes on an address axis.  Every address range that
is mapped at some moment of the timeline gets room; the unmapped stretches
between them are squeezed to a fixed width and labelled with their size.
Inside a mapped stretch the scale is linear, except that no piece is drawn
narrower than a few pixels.  A box is filled by its protection and banded by
its kind (anonymous, file, shmem, stack, heap, guard, special); the
boundaries an op created are drawn in a strong colour, those it removed
dashed, and the VMAs it changed outlined.

:func:`html_page` embeds the timeline as JSON plus a little plain JavaScript
that draws each step (no network, no build step; it works from ``file://``).
:func:`svg_step` and :func:`svg_snapshot` draw the same picture as standalone
SVG in Python, for documents, terminals that show images and Jupyter.  The page's template and script
are ``assets/view.html`` and ``assets/view.js`` beside this module.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from vmasim.picture import (
    BAND,
    BOX_HEIGHT,
    BOX_TOP,
    HIGHLIGHT,
    KIND_COLOURS,
    LANE_HEIGHT,
    PROT_COLOURS,
    PROT_NAMES,
    Axis,
    Marks,
    gap_text,
    svg_rows,
    vma_details,
)
from vmasim.profile import Profile
from vmasim.program.parse import Program
from vmasim.timeline import (
    Snapshot,
    Step,
    Timeline,
    VmaState,
    changed_boundaries,
    describe_op,
    describe_result,
    size_text,
)

# --- the HTML page ---------------------------------------------------------------


def page_data(timeline: Timeline, title: str) -> dict[str, Any]:
    """The JSON the page draws from: the axis, each distinct VMA once, and per step what it set.

    A VMA that looks the same at many steps is stored once and referred to
    by number, as are the reasons two VMAs stay apart, so a long program
    costs a few numbers per VMA per step.
    """
    lanes = list(timeline.lanes.values())
    lane_index = {ln.key: i for i, ln in enumerate(lanes)}
    snapshots = [ln.initial for ln in lanes] + [s.after for s in timeline.steps]
    axis = Axis.build((v.start, v.end) for snap in snapshots for v in snap.vmas)
    vma_ids: dict[VmaState, int] = {}
    vmas: list[dict[str, Any]] = []
    reason_ids: dict[str, int] = {}

    def vma_id(v: VmaState) -> int:
        if v not in vma_ids:
            vma_ids[v] = len(vmas)
            x0, x1 = axis.x(v.start), axis.x(v.end)
            vmas.append({
                "x": round(x0, 1), "w": round(x1 - x0, 1), "s": f"{v.start:x}", "e": f"{v.end:x}",
                "sl": axis.label(v.start), "el": axis.label(v.end), "size": size_text(v.size),
                "perms": v.perms, "file": v.file, "kind": v.kind, "av": v.anon_vma, "forked": v.forked,
                "details": vma_details(v),
                "guards": [_sub(axis, s, e) for s, e in v.guards],
                "pop": [_sub(axis, s, e) for s, e in v.populated],
            })
        return vma_ids[v]

    def state(snap: Snapshot) -> list[Any]:
        apart = [None if r is None else [reason_ids.setdefault(t, len(reason_ids)) for t in r] for r in snap.apart]
        return [[vma_id(v) for v in snap.vmas], apart]

    steps = []
    for step in timeline.steps:
        lane = lane_index[step.lane]
        sets = {str(lane): state(step.after)}
        sets.update({str(lane_index[ln.key]): state(ln.initial) for ln in lanes if ln.key and ln.born == step.index})
        words = [str(c) for c in step.changes]
        for effect in step.effects:
            sets[str(lane_index[effect.lane])] = state(effect.after)
            words += [f"in {timeline.lanes[effect.lane].title}: {c}" for c in effect.changes]
        for ln in lanes:
            if ln.key and ln.born == step.index:
                count = len(ln.initial.vmas)
                words.append(f"{ln.title} starts with a copy of {count} VMA{'s' if count != 1 else ''}")
        marks = {str(lane_index[key]): [sorted(round(axis.x(a), 1) for a in new),
                                        sorted(round(axis.x(a), 1) for a in gone),
                                        sorted(vma_id(v) for v in changed)]
                 for key, (new, gone, changed) in step_marks(step).items()}
        steps.append({
            "lane": lane, "path": step.op.path, "op": describe_op(step.op), "result": describe_result(step.result),
            "changes": words, "set": sets, "marks": marks,
        })
    return {
        "title": title,
        "comment": timeline.comment,
        "stopped": timeline.stopped,
        "width": round(axis.width, 1),
        "runs": [[round(axis.x(a), 1), round(axis.x(b), 1)] for a, b in axis.runs],
        "gaps": [[round(a, 1), round(b, 1), gap_text(size)] for a, b, size in axis.gaps],
        "lanes": [{"title": ln.title, "born": ln.born, "last": ln.steps[-1].index if ln.steps else ln.born,
                   "child": bool(ln.key), "depth": ln.key.count(".") + 1 if ln.key else 0} for ln in lanes],
        "vmas": vmas,
        "reasons": list(reason_ids),
        "steps": steps,
        "prot": PROT_COLOURS,
        "kinds": KIND_COLOURS,
        "highlight": HIGHLIGHT,
        "geometry": {"lane": LANE_HEIGHT, "top": BOX_TOP, "height": BOX_HEIGHT, "band": BAND},
    }


def step_marks(step: Step) -> Marks:
    """What to highlight after ``step``, per lane: the boundaries it made, those it removed, the VMAs it changed."""
    out = {}
    for lane, before, after, changes in [(step.lane, step.before, step.after, step.changes)] + [
            (e.lane, e.before, e.after, e.changes) for e in step.effects]:
        new, gone = changed_boundaries(before, after)
        out[lane] = (new, gone, {v for c in changes for v in c.after})
    return out


def _sub(axis: Axis, start: int, end: int) -> list[float]:
    x0 = axis.x(start)
    return [round(x0, 1), round(axis.x(end) - x0, 1)]


def html_page(timeline: Timeline, title: str, start_step: int | None = None) -> str:
    """The whole timeline as one self-contained HTML page (opens at the last step, or ``start_step``)."""
    data = page_data(timeline, title)
    data["start"] = len(timeline.steps) - 1 if start_step is None else start_step
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    legend_prot = "".join(
        f'<span class="sw" style="background:{c}"></span>{html.escape(PROT_NAMES[p])} '
        for p, c in PROT_COLOURS.items() if p in ("---", "r--", "rw-", "r-x", "--x", "rwx"))
    legend_kind = "".join(
        f'<span class="sw band" style="border-top-color:{c}"></span>{k} ' for k, c in KIND_COLOURS.items())
    assets = resources.files("vmasim") / "assets"
    template = (assets / "view.html").read_text(encoding="utf-8")
    script = (assets / "view.js").read_text(encoding="utf-8")
    head, _, rest = template.partition("__DATA__")
    middle, _, tail = rest.partition("__SCRIPT__")
    head = (head.replace("__TITLE__", html.escape(title)).replace("__LEGEND_PROT__", legend_prot)
            .replace("__LEGEND_KIND__", legend_kind).replace("__HIGHLIGHT__", HIGHLIGHT))
    return head + payload + middle + script + tail


def svg_step(timeline: Timeline, step: int | None = None) -> str:
    """The picture after step ``step`` (0-based; default the last) as a standalone SVG document.

    Every process that exists then is a row; the boundaries the step
    created or removed and the VMAs it changed are highlighted.
    """
    if not timeline.steps:
        return svg_rows([("", "process", timeline.lanes[""].initial)], Axis.build([]), caption="(no ops)")
    k = len(timeline.steps) - 1 if step is None else step
    if not 0 <= k < len(timeline.steps):
        raise ValueError(f"svg_step: step {k} is out of range (the program has {len(timeline.steps)} steps)")
    current = timeline.steps[k]
    rows = [(ln.key, ln.title, timeline.state(ln.key, k)) for ln in timeline.lanes.values() if ln.born <= k]
    axis = Axis.build((v.start, v.end) for _, _, snap in rows if snap is not None for v in snap.vmas)
    caption = f"step {k + 1} of {len(timeline.steps)}: [{current.op.path}] {describe_op(current.op)}" \
              f" = {describe_result(current.result)}"
    return svg_rows(rows, axis, step_marks(current), caption)


# --- vmasim view ------------------------------------------------------------------


class ViewError(Exception):
    """``vmasim view`` cannot do what was asked (a step out of range, no Chromium for a screenshot...)."""


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on PATH, or None."""
    import shutil

    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(page: str, png: str, step: int | None = None, lanes: int = 1, steps: int = 10,
               width: int = 1180) -> None:
    """Save a PNG of the HTML file ``page`` (at 1-based ``step``) as headless Chromium draws it.

    The window is sized for a page with ``lanes`` processes and ``steps`` steps.
    """
    import pathlib
    import subprocess
    import tempfile

    exe = find_chromium()
    if exe is None:
        raise ViewError("no Chromium found on PATH for --screenshot (Debian: apt-get install chromium)")
    url = pathlib.Path(page).resolve().as_uri() + (f"#step={step}" if step is not None else "")
    height = 380 + LANE_HEIGHT * lanes + min(300, 18 * steps + 12)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={pathlib.Path(png).resolve()}", url]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            raise ViewError("Chromium took more than 2 minutes to take the screenshot") from None
    if res.returncode != 0 or not pathlib.Path(png).exists():
        raise ViewError(f"Chromium failed to take the screenshot: {res.stderr.strip()[-500:]}")


def view_command(path: str, program: Program, output: str | None, as_svg: bool, step: int | None,
                 png: str | None, profile: Profile | str | None = None) -> list[str]:
    """What ``vmasim view`` does: record the program, write the page or SVG (and a screenshot); returns messages.

    ``output`` ``"-"`` (or no output for a program read from standard input)
    means standard output.
    """
    import pathlib
    import sys

    from vmasim.timeline import record_timeline

    if png is not None and as_svg:
        raise ViewError("--screenshot takes a picture of the HTML page; leave out --svg")
    timeline = record_timeline(program, profile)
    count = len(timeline.steps)
    if step is not None and not 1 <= step <= count:
        raise ViewError(f"--step {step}: the program has {count} step{'s' if count != 1 else ''} (1 to {count})")
    index = None if step is None else step - 1
    name = "stdin" if path == "-" else pathlib.Path(path).name
    text = svg_step(timeline, index) if as_svg else html_page(timeline, name, index)
    if output == "-" or (output is None and path == "-"):
        if png is not None:
            raise ViewError("--screenshot needs the page in a file: give -o PAGE.html")
        sys.stdout.write(text)
        return []
    out = output or str(pathlib.Path(path).with_suffix(".svg" if as_svg else ".html").name)
    pathlib.Path(out).write_text(text, encoding="utf-8")
    messages = [f"wrote {out}: {count} step{'s' if count != 1 else ''}, {len(text) // 1024 or 1} KiB"]
    if png is not None:
        screenshot(out, png, step, len(timeline.lanes), count)
        messages.append(f"wrote {png}")
    return messages
