"""How much the timeline and the ``vmasim view`` page cost on a long program.

Builds a 1,000-op program (mmap, mprotect, munmap and touch at random in a
256-page window, seeded), then measures in the same run: running it on the
model (the baseline), recording its timeline, writing the HTML page, and the
page's size.  Run: ``PYTHONPATH=src python benchmarks/bench_view.py [OPS]``.
"""

from __future__ import annotations

import random
import sys
import time

from vmasim.program import parse_program
from vmasim.program.model import run_model
from vmasim.timeline import record
from vmasim.view import html_page


def long_program(ops: int, seed: int = 1) -> dict[str, object]:
    """A seeded program of ``ops`` calls that keeps tens of VMAs alive in a 256-page window."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for _ in range(ops):
        page = rng.randrange(256)
        pages = rng.randrange(1, 9)
        addr, length = f"W+{page * 4096:#x}", f"{pages * 4}K"
        kind = rng.random()
        if kind < 0.3:
            out.append({"op": "mmap", "addr": addr, "length": length, "prot": rng.choice(["r", "rw", "none"]),
                        "flags": ["private", "anonymous", "fixed"]})
        elif kind < 0.7:
            out.append({"op": "mprotect", "addr": addr, "length": length, "prot": rng.choice(["r", "rw", "none"])})
        elif kind < 0.85:
            out.append({"op": "munmap", "addr": addr, "length": length})
        else:
            out.append({"op": "touch", "addr": addr, "length": length, "write": rng.random() < 0.5})
    return {"ops": out}


def timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def main() -> None:
    """Print the measurements."""
    ops = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    program = parse_program(long_program(ops))
    _, base = timed(run_model, program)
    timeline, rec = timed(record, program)
    page, draw = timed(html_page, timeline, "bench")
    vmas = sum(len(s.after.vmas) for s in timeline.steps) / max(1, len(timeline.steps))
    print(f"{ops} ops, {vmas:.1f} VMAs per step on average")
    print(f"run_model (baseline): {base:.3f} s")
    print(f"record the timeline:  {rec:.3f} s  ({rec / base:.0f}x the baseline)")
    print(f"write the HTML page:  {draw:.3f} s  ({draw / base:.0f}x the baseline)")
    print(f"page size:            {len(page) / 1024:.0f} KiB ({len(page) / max(1, ops):.0f} bytes per step)")


if __name__ == "__main__":
    main()
