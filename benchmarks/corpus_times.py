"""The model's time against the host kernel's, program by program, over the test corpora.

For every program of ``examples/``, ``tests/regressions``, ``tests/probes`` and
``tests/scenarios`` this measures the model's run (of the probed host's
profile) and the kernel runner's run of the same program, each the best of
``--repeat`` runs, and prints the slowest model runs with the ratio model /
kernel.  The kernel's time is the runner's whole round trip for one program
(start the executor, fork, run the ops, read /proc back), which is what
"running the program on the kernel" costs a user.  Exit status 1 if some
model run took longer than the kernel's.

    python benchmarks/corpus_times.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ("examples", "tests/regressions", "tests/probes", "tests/scenarios")


def main() -> int:
    """Time both sides on every corpus program and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per program and side (the best counts)")
    parser.add_argument("--show", type=int, default=10, help="how many of the slowest model runs to list")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from vmasim.kernel import kernel_available, run_program
    from vmasim.probe import probe_host
    from vmasim.program import parse_program
    from vmasim.program.model import run_model

    ok, why = kernel_available()
    if not ok:
        print(f"cannot run on the host kernel: {why}")
        return 2
    profile = probe_host()
    rows: list[tuple[float, float, str]] = []
    for corpus in CORPORA:
        for path in sorted((ROOT / corpus).glob("*.json")):
            program = parse_program(json.loads(path.read_text()))
            model = kernel = float("inf")
            for _ in range(args.repeat):
                began = time.perf_counter()
                # A program the model stops (a userfaultfd wait) is timed all the same.
                with contextlib.suppress(Exception):
                    run_model(program, profile)
                model = min(model, time.perf_counter() - began)
                began = time.perf_counter()
                with contextlib.suppress(Exception):
                    run_program(program)
                kernel = min(kernel, time.perf_counter() - began)
            rows.append((model, kernel, f"{corpus}/{path.name}"))
    rows.sort(key=lambda r: r[0] / r[1], reverse=True)
    print(f"{len(rows)} programs; model of {profile.name}; best of {args.repeat} runs per side")
    print(f"{'model ms':>9} {'kernel ms':>9} {'ratio':>6}  program (highest model/kernel ratios first)")
    for model, kernel, name in rows[: args.show]:
        print(f"{model * 1e3:9.2f} {kernel * 1e3:9.2f} {model / kernel:6.2f}  {name}")
    slower = [r for r in rows if r[0] > r[1]]
    worst = rows[0][0] / rows[0][1] if rows else 0.0
    print(f"highest ratio model/kernel: {worst:.2f}; model slower than the kernel on {len(slower)} program(s)")
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
