"""``vmasim view`` without a browser: the page's data, the SVG pictures, the axis, and the command."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

import vmasim as v
from vmasim.cli import main
from vmasim.program import load_program
from vmasim.timeline import record_timeline
from vmasim.view import Axis, html_page, svg_step

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEED = EXAMPLES / "01-seed-split-and-merge.json"
FORK = EXAMPLES / "09-fork-child-never-merges.json"
SVG = "{http://www.w3.org/2000/svg}"


def _data(page: str) -> dict[str, object]:
    m = re.search(r'<script type="application/json" id="vmasim-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))  # type: ignore[no-any-return]


def _boxes(svg_text: str) -> list[ET.Element]:
    root = ET.fromstring(svg_text)
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "vma"]


def test_page_is_one_offline_file_with_every_step() -> None:
    page = html_page(record_timeline(load_program(str(SEED))), SEED.name)
    # nothing to fetch: no external scripts, styles or images, and a policy that forbids any
    assert "default-src 'none'" in page
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', page)
    assert set(re.findall(r"https?://[^\s\"'<]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert len(page) < 40_000
    data = _data(page)
    steps = data["steps"]
    assert isinstance(steps, list) and len(steps) == 7
    assert [len(s["set"]["0"][0]) for s in steps] == [1, 3, 1, 2, 2, 4, 2]
    assert steps[1]["changes"][0].startswith("split 7e0000000000-7e0000008000 into 3")
    assert len(steps[1]["marks"]["0"][0]) == 2 and len(steps[2]["marks"]["0"][1]) == 2  # boundaries made, removed
    assert data["comment"] == json.loads(SEED.read_text())["_comment"]


def test_page_carries_fork_children_as_lanes() -> None:
    data = _data(html_page(record_timeline(load_program(str(FORK))), FORK.name))
    assert [(ln["title"], ln["born"]) for ln in data["lanes"]] == [  # type: ignore[attr-defined]
        ("process", 0), ("child of fork op 2", 2)]
    steps = data["steps"]
    assert sorted(steps[2]["set"]) == ["0", "1"]  # type: ignore[index]
    assert "child of fork op 2 starts with a copy of 1 VMA" in steps[2]["changes"]  # type: ignore[index]


def test_svg_of_one_step_highlights_what_it_changed() -> None:
    tl = record_timeline(load_program(str(SEED)))
    split = svg_step(tl, 1)
    boxes = _boxes(split)
    assert len(boxes) == 3
    assert "step 2 of 7: [1] mprotect(addr=a+0x2000, length=8K, prot=r) = 0" in split
    assert split.count('stroke="#d6006f" stroke-width="3"') == 2  # the two new boundaries
    title = boxes[1].find(f"{SVG}title")
    assert title is not None and "not merged with left neighbour" in (title.text or "")
    assert len(_boxes(svg_step(tl))) == 2  # the last step by default
    fork = svg_step(record_timeline(load_program(str(FORK))), 3)
    assert "child of fork op 2 \u00b7 2 VMAs" in fork and "process \u00b7 1 VMA" in fork


def test_axis_squeezes_gaps_and_keeps_small_pieces_visible() -> None:
    axis = Axis.build([(0x1000, 0x9000), (0x9000, 0xA000), (0x10_0000_0000, 0x10_0020_0000)])
    assert len(axis.gaps) == 1 and axis.gaps[0][2] == 0x10_0000_0000 - 0xA000
    assert axis.gaps[0][1] - axis.gaps[0][0] == pytest.approx(64)
    xs = [axis.x(a) for a in (0x1000, 0x9000, 0xA000, 0x10_0000_0000, 0x10_0020_0000)]
    assert xs == sorted(xs)
    assert xs[2] - xs[1] >= 14  # a 4K piece next to a 32K one stays visible
    assert axis.x(0x5000) == pytest.approx((xs[0] + xs[1]) / 2)  # linear inside a piece
    assert axis.label(0x1000) == ("1000", "start") and axis.label(0x9000) == ("+0x8000", "middle")


def test_view_command_writes_page_svg_and_checks_the_step(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "seed.html"
    res = runner.invoke(main, ["view", str(SEED), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert _data(out.read_text())["title"] == SEED.name
    svg = tmp_path / "seed.svg"
    res = runner.invoke(main, ["view", str(SEED), "--svg", "--step", "2", "-o", str(svg)])
    assert res.exit_code == 0, res.output
    assert len(_boxes(svg.read_text())) == 3
    res = runner.invoke(main, ["view", str(SEED), "--step", "8", "-o", str(out)])
    assert res.exit_code == 1 and "--step 8: the program has 7 steps (1 to 7)" in res.output
    res = runner.invoke(main, ["view", "-", "--svg"], input=SEED.read_text())
    assert res.exit_code == 0 and res.output.startswith("<svg ")


def test_address_space_draws_itself_for_jupyter() -> None:
    mm = v.AddressSpace()
    a = mm.mmap(0x7E0000000000, 8 * 4096, v.PROT_READ | v.PROT_WRITE, v.MAP_PRIVATE | v.MAP_ANONYMOUS | v.MAP_FIXED)
    mm.mprotect(a + 4096, 4096, v.PROT_READ)
    picture = mm._repr_html_()
    assert len(_boxes(picture)) == 3
    assert "address space \u00b7 3 VMAs" in picture
