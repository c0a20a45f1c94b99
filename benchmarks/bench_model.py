"""Benchmark of the model alone: ``vmasim bench`` without the host kernel side.

Run: ``python benchmarks/bench_model.py [SIZES]`` (default ``10,65000``).  The
workloads, layouts and report are those of :mod:`vmasim.bench`; use
``vmasim bench`` to compare with the host kernel as well.
"""

from __future__ import annotations

import sys

from vmasim.bench import format_report, parse_sizes, run


def main() -> None:
    sizes = parse_sizes(sys.argv[1]) if len(sys.argv) > 1 else [10, 65000]
    report = run(sizes, kernel=False, progress=lambda msg: print(f"bench: {msg}", file=sys.stderr))
    print(format_report(report))


if __name__ == "__main__":
    main()
