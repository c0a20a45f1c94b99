"""Drawing address spaces: VMAs as boxes on an address axis with long gaps squeezed, as SVG.

Used by ``vmasim view`` (one picture per step), ``vmasim view --svg`` and
:meth:`vmasim.AddressSpace._repr_html_` (Jupyter); it draws
:class:`~vmasim.snapshot.Snapshot` values and knows nothing of programs.
"""

from __future__ import annotations

import html
import itertools
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vmasim.core.flags import MNEMONIC_MEANINGS
from vmasim.snapshot import Snapshot, VmaState, size_text

#: Per lane: the boundaries a step made, those it removed, the VMAs it changed (what to highlight).
Marks = dict[str, tuple[set[int], set[int], set[VmaState]]]

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
             "  " + ", ".join(MNEMONIC_MEANINGS.get(f, f) for f in vma.flags)]
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


def gap_text(size: int) -> str:
    """A gap's size in a few characters: ``64K``, ``1.5G``."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f}{unit}" if value >= 10 or value == int(value) else f"{value:.1f}{unit}"
    return f"{size}B"


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


def svg_rows(rows: Sequence[tuple[str, str, Snapshot | None]], axis: Axis, marks: Marks | None = None,
             caption: str | None = None) -> str:
    """The picture: one row per ``(lane key, title, VMAs)``, with the ``marks`` of a step highlighted."""
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
    marks = marks or {}
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
                       f'{gap_text(size)} gap</text>')
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


def svg_snapshot(snap: Snapshot, title: str = "address space", limit: int = 400) -> str:
    """One snapshot as SVG (at most ``limit`` VMAs, the first ones; the title says how many were left out)."""
    if len(snap.vmas) > limit:
        title += f" (first {limit} of {len(snap.vmas)} VMAs)"
        snap = Snapshot(snap.vmas[:limit], snap.apart[:limit - 1])
    axis = Axis.build((v.start, v.end) for v in snap.vmas)
    return svg_rows([("", title, snap)], axis)
