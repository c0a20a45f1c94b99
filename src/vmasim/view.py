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
import itertools
import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

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

# Fill by protection (the first three letters of the maps perms column).
PROT_COLOURS: dict[str, str] = {
    "---": "#e3e3e3",
    "r--": "#9ecae1",
    "rw-": "#a1d99b",
    "-w-": "#c7e9c0",
    "r-x": "#fdae6b",
    "--x": "#fdd0a2",
    "rwx": "#fb6a4a",
    "-wx": "#fc9272",
}
PROT_NAMES: dict[str, str] = {
    "---": "no access", "r--": "read", "rw-": "read/write", "r-x": "read/exec", "--x": "exec only",
    "rwx": "read/write/exec", "-w-": "write only", "-wx": "write/exec",
}
# The band along a box's top says what backs it.
KIND_COLOURS: dict[str, str] = {
    "anonymous": "#ffffff",
    "file": "#6a51a3",
    "shmem": "#0f8b8d",
    "stack": "#8c564b",
    "heap": "#b8a000",
    "guard": "#3a3a3a",
    "special": "#9e9e9e",
}
HIGHLIGHT = "#d6006f"
# What each smaps VmFlags mnemonic means (fs/proc/task_mmu.c prints them; Documentation/filesystems/proc.rst).
VMFLAG_MEANINGS: dict[str, str] = {
    "rd": "readable", "wr": "writeable", "ex": "executable", "sh": "shared", "mr": "may read",
    "mw": "may write", "me": "may execute", "ms": "may share", "gd": "stack grows down",
    "pf": "pure PFN range", "io": "memory-mapped I/O", "sr": "sequential read advised",
    "rr": "random read advised", "dc": "not copied on fork", "de": "not expanded on remap",
    "ac": "accounted (commit charge)", "nr": "swap space not reserved", "ht": "hugetlb pages",
    "sf": "synchronous page faults", "ar": "architecture specific", "wf": "wiped on fork",
    "dd": "not in core dumps", "sd": "soft dirty", "mm": "mixed map", "hg": "huge pages advised",
    "nh": "no huge pages advised", "mg": "mergeable (KSM) advised", "um": "userfaultfd missing tracking",
    "uw": "userfaultfd write-protect tracking", "ui": "userfaultfd minor-fault tracking", "lo": "locked",
    "lf": "locked on fault", "sl": "sealed", "gu": "may contain guard regions", "dp": "droppable",
}

LANE_HEIGHT = 112
BOX_TOP = 30
BOX_HEIGHT = 56
BAND = 6
MARGIN = 18


@dataclass(frozen=True, slots=True)
class Axis:
    """Where each address goes on the picture: mapped stretches to scale, the gaps between squeezed.

    ``points`` are the addresses of every boundary (sorted) and ``xs`` their
    x positions; ``runs`` the mapped stretches as ``(start, end)``; ``gaps``
    the squeezed gaps as ``(x0, x1, size in bytes)``.
    """

    points: tuple[int, ...]
    xs: tuple[float, ...]
    runs: tuple[tuple[int, int], ...]
    gaps: tuple[tuple[float, float, int], ...]
    width: float

    @classmethod
    def build(cls, ranges: Iterable[tuple[int, int]], width: float = 960, gap: float = 64, min_piece: float = 14,
              min_run: float = 72) -> Axis:
        """An axis for ``ranges`` (VMA extents from every moment to be drawn), about ``width`` pixels wide."""
        spans = sorted(set(ranges))
        bounds = sorted({a for r in spans for a in r})
        runs: list[list[int]] = []
        for s, e in spans:
            if runs and s <= runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], e)
            else:
                runs.append([s, e])
        if not runs:
            return cls((), (), (), (), width)
        room = max(width - 2 * MARGIN - gap * (len(runs) - 1), min_run * len(runs))
        weights = [math.sqrt(e - s) for s, e in runs]
        points: list[int] = []
        xs: list[float] = []
        gaps: list[tuple[float, float, int]] = []
        x = float(MARGIN)
        for (s, e), weight in zip(runs, weights, strict=True):
            if points:
                gaps.append((x, x + gap, s - points[-1]))
                x += gap
            inner = [b for b in bounds if s <= b <= e]
            pieces = _fit([b - a for a, b in itertools.pairwise(inner)],
                          max(min_run, room * weight / sum(weights)), min_piece)
            points.append(inner[0])
            xs.append(x)
            for b, w in zip(inner[1:], pieces, strict=True):
                x += w
                points.append(b)
                xs.append(x)
        return cls(tuple(points), tuple(xs), tuple((s, e) for s, e in runs), tuple(gaps), x + MARGIN)

    def x(self, addr: int) -> float:
        """The x position of ``addr``; addresses inside a piece are placed linearly within it."""
        i = bisect_right(self.points, addr) - 1
        if i < 0:
            return self.xs[0] if self.xs else 0.0
        if i >= len(self.points) - 1 or self.points[i] == addr:
            return self.xs[min(i, len(self.xs) - 1)]
        a, b = self.points[i], self.points[i + 1]
        return self.xs[i] + (self.xs[i + 1] - self.xs[i]) * (addr - a) / (b - a)

    def label(self, addr: int) -> tuple[str, str]:
        """A tick label and its SVG text-anchor: the full address at the start (anchored at its left) or
        end (at its right) of a mapped stretch, else ``+offset`` into the stretch, centred."""
        i = bisect_right([s for s, _ in self.runs], addr) - 1
        if i < 0:
            return f"{addr:x}", "middle"
        start, end = self.runs[i]
        if addr == start:
            return f"{addr:x}", "start"
        if addr == end:
            return f"{addr:x}", "end"
        return f"+{addr - start:#x}", "middle"


def _label_extent(x: float, label: str, anchor: str) -> tuple[float, float]:
    """Where a tick label's text lies (10 px monospace: about 6.1 px per character)."""
    w = 6.1 * len(label)
    if anchor == "start":
        return x, x + w
    if anchor == "end":
        return x - w, x
    return x - w / 2, x + w / 2


def _fit(sizes: list[int], width: float, least: float) -> list[float]:
    """Split ``width`` among ``sizes`` in proportion, but give each at least ``least`` pixels."""
    total = sum(sizes)
    out = [width * s / total for s in sizes]
    for _ in range(len(sizes)):
        small = [i for i, w in enumerate(out) if w < least]
        if not small:
            break
        rest = [i for i in range(len(out)) if out[i] >= least and i not in small]
        left = width - least * (len(sizes) - len(rest))
        rest_total = sum(sizes[i] for i in rest)
        if not rest or left <= least * len(rest):
            return [max(least, w) for w in out]
        out = [least if i not in rest else left * sizes[i] / rest_total for i in range(len(sizes))]
    return out


def vma_details(vma: VmaState, left: tuple[VmaState, tuple[str, ...] | None] | None = None,
                right: tuple[VmaState, tuple[str, ...] | None] | None = None) -> list[str]:
    """The lines a tooltip shows for ``vma``: range, protection, kind, VmFlags, and why neighbours stay apart."""
    pages = vma.size // 4096
    lines = [f"{vma.span}  ({size_text(vma.size)}, {pages} page{'s' if pages != 1 else ''})",
             f"{vma.perms}  {vma.file or vma.kind}" + (f"  offset {vma.offset:#x}" if vma.file else ""),
             "VmFlags: " + " ".join(vma.flags),
             "  " + ", ".join(VMFLAG_MEANINGS.get(f, f) for f in vma.flags)]
    if vma.policy != "default":
        lines.append(f"mempolicy: {vma.policy}")
    if vma.name is not None:
        lines.append(f"name: [anon:{vma.name}]")
    lines.append("anon_vma: " + (f"{vma.anon_vma}" + (" (came through fork)" if vma.forked else "")
                                 if vma.anon_vma is not None else "none yet (no write fault)"))
    populated = sum(e - s for s, e in vma.populated) // 4096
    lines.append(f"populated: {populated} of {pages} page{'s' if pages != 1 else ''}")
    if vma.guards:
        lines.append("guard pages: " + ", ".join(f"{s:x}-{e:x}" for s, e in vma.guards))
    for side, pair in (("left", left), ("right", right)):
        if pair is None or pair[1] is None:
            continue
        other, reasons = pair
        why = "; ".join(reasons) if reasons else "compatible, but nothing has tried to merge them"
        lines.append(f"not merged with {side} neighbour {other.span}: {why}")
    return lines


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
        "gaps": [[round(a, 1), round(b, 1), _gap_text(size)] for a, b, size in axis.gaps],
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


def step_marks(step: Step) -> dict[str, tuple[set[int], set[int], set[VmaState]]]:
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


def _gap_text(size: int) -> str:
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f}{unit}" if value >= 10 or value == int(value) else f"{value:.1f}{unit}"
    return f"{size}B"


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


# --- SVG ------------------------------------------------------------------------


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _box_svg(vma: VmaState, axis: Axis, tip: list[str], outline: bool) -> list[str]:
    x0, x1 = axis.x(vma.start), axis.x(vma.end)
    w = x1 - x0
    fill = PROT_COLOURS.get(vma.perms[:3], "#cccccc")
    out = [f'<g class="vma"><title>{_esc(chr(10).join(tip))}</title>',
           f'<rect x="{x0:.1f}" y="{BOX_TOP}" width="{w:.1f}" height="{BOX_HEIGHT}" fill="{fill}" '
           f'stroke="{HIGHLIGHT if outline else "#555"}" stroke-width="{2.5 if outline else 1}"/>']
    band = KIND_COLOURS.get(vma.kind, "#fff")
    if vma.kind != "anonymous":
        out.append(f'<rect x="{x0 + 0.5:.1f}" y="{BOX_TOP + 0.5}" width="{max(w - 1, 0):.1f}" height="{BAND}" '
                   f'fill="{band}"/>')
    for s, e in vma.guards:
        gx = axis.x(s)
        out.append(f'<rect x="{gx:.1f}" y="{BOX_TOP}" width="{axis.x(e) - gx:.1f}" height="{BOX_HEIGHT}" '
                   f'fill="url(#vs-hatch)"/>')
    for s, e in vma.populated:
        px = axis.x(s)
        out.append(f'<rect x="{px:.1f}" y="{BOX_TOP + BOX_HEIGHT - 5}" width="{axis.x(e) - px:.1f}" height="4" '
                   f'fill="#333" opacity="0.55"/>')
    for i, text in enumerate(_box_labels(vma, w)):
        out.append(f'<text x="{x0 + 4:.1f}" y="{BOX_TOP + BAND + 13 + 13 * i}" class="vs-t">{_esc(text)}</text>')
    out.append("</g>")
    return out


def _box_labels(vma: VmaState, width: float) -> list[str]:
    """What fits inside a box: perms, then what backs it, then its anon_vma (6.6 px per character)."""
    fits = int((width - 6) / 6.6)
    labels = [vma.perms, vma.file or vma.kind]
    if vma.anon_vma is not None:
        labels.append(f"anon_vma {vma.anon_vma}" + ("*" if vma.forked else ""))
    return [t for t in labels if len(t) <= fits]


def _svg(rows: Sequence[tuple[str, str, Snapshot | None]], axis: Axis, step: Step | None = None,
         caption: str | None = None) -> str:
    """The picture: one row per ``(lane key, title, VMAs)``, with what ``step`` changed highlighted."""
    top = 26 if caption else 0
    height = top + LANE_HEIGHT * max(len(rows), 1) + 6
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{axis.width:.0f}" height="{height}" '
           f'viewBox="0 0 {axis.width:.0f} {height}" font-family="monospace" font-size="11">',
           "<style>.vs-t{font:11px monospace;fill:#111}.vs-lt{font:bold 12px sans-serif;fill:#222}"
           ".vs-tk{font:10px monospace;fill:#555}.vs-gp{font:10px sans-serif;fill:#777}</style>",
           '<defs><pattern id="vs-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff" opacity="0.35"/>'
           '<line x1="0" y1="0" x2="0" y2="6" stroke="#222" stroke-width="2.5"/></pattern></defs>',
           '<rect width="100%" height="100%" fill="#fff"/>']
    if caption:
        out.append(f'<text x="{MARGIN}" y="17" class="vs-lt">{_esc(caption)}</text>')
    marks = step_marks(step) if step is not None else {}
    for row, (key, title, snap) in enumerate(rows):
        y0 = top + row * LANE_HEIGHT
        out.append(f'<g transform="translate(0,{y0})">')
        if snap is not None:
            title += f" \u00b7 {len(snap.vmas)} VMA{'s' if len(snap.vmas) != 1 else ''}"
        out.append(f'<text x="{MARGIN}" y="16" class="vs-lt">{_esc(title)}</text>')
        if snap is None:
            out.append("</g>")
            continue
        mid = BOX_TOP + BOX_HEIGHT / 2
        for start, end in axis.runs:
            out.append(f'<line x1="{axis.x(start):.1f}" y1="{BOX_TOP + BOX_HEIGHT}" x2="{axis.x(end):.1f}" '
                       f'y2="{BOX_TOP + BOX_HEIGHT}" stroke="#999"/>')
        for x0, x1, size in axis.gaps:
            out.append(f'<path d="M{x0 + 4:.1f},{mid} l6,-6 l6,12 l6,-12 l6,12 l6,-6 H{x1 - 4:.1f}" fill="none" '
                       f'stroke="#aaa"/>')
            out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{BOX_TOP - 4}" text-anchor="middle" class="vs-gp">'
                       f'{_gap_text(size)} gap</text>')
        new, gone, changed = marks.get(key, (set(), set(), set()))
        for i, vma in enumerate(snap.vmas):
            left = (snap.vmas[i - 1], snap.apart[i - 1]) if i else None
            right = (snap.vmas[i + 1], snap.apart[i]) if i + 1 < len(snap.vmas) else None
            out += _box_svg(vma, axis, vma_details(vma, left, right), vma in changed)
        last = -1e9
        for addr in sorted(snap.boundaries()):
            x = axis.x(addr)
            out.append(f'<line x1="{x:.1f}" y1="{BOX_TOP + BOX_HEIGHT}" x2="{x:.1f}" y2="{BOX_TOP + BOX_HEIGHT + 5}" '
                       f'stroke="#555"/>')
            label, anchor = axis.label(addr)
            x0, x1 = _label_extent(x, label, anchor)
            if x0 >= last + 4:
                out.append(f'<text x="{x:.1f}" y="{BOX_TOP + BOX_HEIGHT + 17}" text-anchor="{anchor}" class="vs-tk">'
                           f'{_esc(label)}</text>')
                last = x1
        for addr in sorted(new):
            x = axis.x(addr)
            out.append(f'<line x1="{x:.1f}" y1="{BOX_TOP - 7}" x2="{x:.1f}" y2="{BOX_TOP + BOX_HEIGHT + 7}" '
                       f'stroke="{HIGHLIGHT}" stroke-width="3"/>')
        for addr in sorted(gone):
            x = axis.x(addr)
            out.append(f'<line x1="{x:.1f}" y1="{BOX_TOP - 7}" x2="{x:.1f}" y2="{BOX_TOP + BOX_HEIGHT + 7}" '
                       f'stroke="{HIGHLIGHT}" stroke-width="2" stroke-dasharray="4 3"/>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def svg_step(timeline: Timeline, step: int | None = None) -> str:
    """The picture after step ``step`` (0-based; default the last) as a standalone SVG document.

    Every process that exists then is a row; the boundaries the step
    created or removed and the VMAs it changed are highlighted.
    """
    if not timeline.steps:
        return _svg([("", "process", timeline.lanes[""].initial)], Axis.build([]), caption="(no ops)")
    k = len(timeline.steps) - 1 if step is None else step
    if not 0 <= k < len(timeline.steps):
        raise ValueError(f"svg_step: step {k} is out of range (the program has {len(timeline.steps)} steps)")
    current = timeline.steps[k]
    rows = [(ln.key, ln.title, timeline.state(ln.key, k)) for ln in timeline.lanes.values() if ln.born <= k]
    axis = Axis.build((v.start, v.end) for _, _, snap in rows if snap is not None for v in snap.vmas)
    caption = f"step {k + 1} of {len(timeline.steps)}: [{current.op.path}] {describe_op(current.op)}" \
              f" = {describe_result(current.result)}"
    return _svg(rows, axis, current, caption)


def svg_snapshot(snap: Snapshot, title: str = "address space", limit: int = 400) -> str:
    """One snapshot as SVG (at most ``limit`` VMAs, the first ones; the title says how many were left out)."""
    if len(snap.vmas) > limit:
        title += f" (first {limit} of {len(snap.vmas)} VMAs)"
        snap = Snapshot(snap.vmas[:limit], snap.apart[:limit - 1])
    axis = Axis.build((v.start, v.end) for v in snap.vmas)
    return _svg([("", title, snap)], axis)




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
