"""The ``vmasim view`` page in a real browser: headless Chromium driven by playwright.

Skips where playwright or a Chromium executable is missing (Debian:
``apt-get install chromium``; ``.ci/run`` installs it when it can).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmasim.program import load_program
from vmasim.timeline import record_timeline
from vmasim.view import find_chromium, html_page

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "01-seed-split-and-merge.json"
FORK = ROOT / "examples" / "09-fork-child-never-merges.json"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page opened from file:// that records console errors and every request it makes."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.url = path.as_uri()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.url)

    def boxes(self, lane: int = 0) -> int:
        return int(self.page.locator(f'#picture g.lane[data-lane="{lane}"] g.vma').count())

    def counter(self) -> str:
        return str(self.page.locator("#counter").text_content())

    def picture(self) -> str:
        return str(self.page.locator("#picture").inner_html())

    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests if u != self.url]


def _page(browser: Any, tmp_path: Path, program: Path) -> Page:
    out = tmp_path / (program.stem + ".html")
    out.write_text(html_page(record_timeline(load_program(str(program))), program.name), encoding="utf-8")
    return Page(browser, out)


def test_every_step_of_the_seed_example_renders(browser: Any, tmp_path: Path) -> None:
    p = _page(browser, tmp_path, SEED)
    assert p.counter() == "step 7 of 7"  # opens at the last step
    p.page.keyboard.press("Home")
    seen = []
    for k in range(7):
        assert p.counter() == f"step {k + 1} of 7"
        seen.append(p.boxes())
        p.page.keyboard.press("ArrowRight")
    # split into three, merged back; then the same for the touched mapping next to the first one
    assert seen == [1, 3, 1, 2, 2, 4, 2]
    assert p.counter() == "step 7 of 7"  # ArrowRight at the end stays there
    p.page.keyboard.press("End")
    assert p.counter() == "step 7 of 7"
    p.page.keyboard.press("ArrowLeft")
    assert p.counter() == "step 6 of 7" and p.boxes() == 4
    assert p.errors == []
    assert p.foreign_requests() == []


def test_slider_and_arrow_keys_change_the_picture(browser: Any, tmp_path: Path) -> None:
    p = _page(browser, tmp_path, SEED)
    last = p.picture()
    p.page.locator("#slider").fill("1")
    assert p.counter() == "step 2 of 7"
    split = p.picture()
    assert split != last and p.boxes() == 3
    assert "split 7e0000000000-7e0000008000 into 3" in str(p.page.locator("#changes").text_content())
    assert p.page.locator("#picture .newb").count() == 2  # the two boundaries the split made
    # the slider itself answers arrow keys when it has the focus
    p.page.locator("#slider").focus()
    p.page.keyboard.press("ArrowRight")
    assert p.counter() == "step 3 of 7"
    assert p.picture() != split and p.boxes() == 1
    assert p.page.locator("#picture .goneb").count() == 2  # ... and the merge removed them
    assert "merged 3 VMAs into 7e0000000000-7e0000008000" in str(p.page.locator("#changes").text_content())
    p.page.locator("#prev").click()
    assert p.counter() == "step 2 of 7"
    p.page.locator("#steps li").nth(5).click()
    assert p.counter() == "step 6 of 7" and p.boxes() == 4
    assert p.errors == []
    assert p.foreign_requests() == []


def test_hover_shows_vmflags_and_why_neighbours_did_not_merge(browser: Any, tmp_path: Path) -> None:
    p = _page(browser, tmp_path, SEED)
    p.page.locator("#slider").fill("1")
    middle = p.page.locator('#picture g.vma[data-start="7e0000002000"]')
    middle.hover()
    tip = p.page.locator("#tip")
    assert tip.is_visible()
    text = str(tip.text_content())
    assert "VmFlags: rd mr mw me" in text
    assert "not merged with left neighbour 7e0000000000-7e0000002000: vm_flags differ" in text
    assert "not merged with right neighbour 7e0000004000-7e0000008000" in text
    p.page.mouse.move(0, 0)
    assert not tip.is_visible()
    middle.focus()  # keyboard users get the same
    assert tip.is_visible()
    assert p.errors == []


def test_fork_children_are_their_own_lanes(browser: Any, tmp_path: Path) -> None:
    p = _page(browser, tmp_path, FORK)
    p.page.keyboard.press("Home")
    assert p.page.locator("#picture g.lane").count() == 2
    assert "not forked yet" in str(p.page.locator('#picture g.lane[data-lane="1"]').text_content())
    counts = []
    for _ in range(5):
        counts.append((p.boxes(0), p.boxes(1)))
        p.page.keyboard.press("ArrowRight")
    # mmap, touch, fork (the child starts with a copy), the child's mmap does not merge (its lane keeps
    # its last picture after it exits), the parent's does
    assert counts == [(1, 0), (1, 0), (1, 1), (1, 2), (1, 2)]
    assert "(exited)" in str(p.page.locator('#picture g.lane[data-lane="1"]').text_content())
    assert p.errors == []
    assert p.foreign_requests() == []
