"""Run the hostile corpus on the host kernel; print one JSON line per program, then a summary line.

Used by ``test_hostile.py``, which runs it in a subprocess (inside a memory
cgroup when it can make one).  By hand::

    PYTHONPATH=src python tests/hostile/run_corpus.py [--jobs N] [--timeout S]

Each line: ``{"name", "seconds", "kind"}`` (``kind`` is ``"report"`` for a
report, else the :class:`~vmasim.kernel.KernelRunError` kind) plus
``op_path``, ``message`` and ``partial`` for errors, ``report`` for reports.
The last line: ``{"summary": true, "seconds", "maxrss_children_kib"}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vmasim.kernel import KernelRunError, run_programs
from vmasim.program import load_program

HERE = Path(__file__).parent


def run_one(path: Path, timeout: float) -> dict[str, Any]:
    """Run the program in ``path`` alone in a fresh executor; its outcome as a JSON-able dict."""
    program = load_program(str(path))
    # A program may ask for tighter caps in comment keys, which the format ignores.
    caps = {"memory_limit": program.source.get("_memory_limit"), "task_limit": program.source.get("_task_limit")}
    start = time.monotonic()
    outcome = run_programs([program], jobs=1, timeout=timeout, **caps)[0]
    line: dict[str, Any] = {"name": path.stem, "seconds": round(time.monotonic() - start, 3)}
    if isinstance(outcome, KernelRunError):
        line |= {"kind": outcome.kind, "op_path": outcome.op_path, "message": str(outcome), "partial": outcome.partial}
    else:
        line |= {"kind": "report", "report": outcome}
    return line


def main() -> None:
    """Run every ``*.json`` next to this file, ``--jobs`` at a time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--skip", action="append", default=[], help="a program not to run (repeatable)")
    args = parser.parse_args()
    paths = [p for p in sorted(HERE.glob("*.json")) if p.stem not in args.skip]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for line in pool.map(lambda p: run_one(p, args.timeout), paths):
            print(json.dumps(line), flush=True)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = {"summary": True, "seconds": round(time.monotonic() - start, 3), "maxrss_children_kib": usage.ru_maxrss}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
