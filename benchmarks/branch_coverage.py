"""Branch coverage of the model's core and system calls under a fixed-seed fuzz campaign.

Generates the campaign's programs (``--count`` per category, seed ``--seed``:
the programs ``vmasim fuzz --seed S --count N --category C`` runs) and runs
each on the model of ``--target`` under coverage.py with branch measurement,
limited to ``src/vmasim/core`` and ``src/vmasim/syscalls``.  The kernel side
of a campaign does not change which model code runs, so it is left out.
Prints coverage.py's report of the lines and branches not taken, then the
total; ``--fail-under`` makes the exit status 1 below a percentage.

    python benchmarks/branch_coverage.py                 # 5,000 programs per category, seed 0
    python benchmarks/branch_coverage.py --count 500     # a quick look

Every branch left uncovered is listed, with the reason, in
``docs/coverage-exclusions.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [str(ROOT / "src" / "vmasim" / "core"), str(ROOT / "src" / "vmasim" / "syscalls")]


def main() -> int:
    """Run the campaign's programs on the model under coverage and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="programs per category (default 5000)")
    parser.add_argument("--seed", type=int, default=0, help="the campaign's seed (default 0)")
    parser.add_argument("--target", default="linux-6.18.44-nopku",
                        help="the profile the model models (default: the no-PKU host's, linux-6.18.44-nopku)")
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 below this branch coverage")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    cov = coverage.Coverage(branch=True, source=SOURCES, data_file=None)
    cov.start()
    # Imported under coverage, so that module-level lines count too.
    from vmasim.core.errors import WouldBlock
    from vmasim.fuzz.categories import CATEGORIES
    from vmasim.fuzz.generate import generate_programs
    from vmasim.profile import resolve_profile
    from vmasim.program import parse_program
    from vmasim.program.model import run_model

    profile = resolve_profile(args.target)
    began = time.perf_counter()
    stopped = 0
    for category in CATEGORIES:
        for lo in range(0, args.count, 1000):
            for doc in generate_programs(args.seed, min(1000, args.count - lo), category, start=lo):
                try:
                    run_model(parse_program(doc), profile, timeout=10)
                except WouldBlock:
                    stopped += 1  # the kernel runner stops these too
    cov.stop()
    seconds = time.perf_counter() - began
    total = cov.report(show_missing=True, skip_covered=True, file=sys.stdout)
    print(f"{args.count} programs per category ({', '.join(CATEGORIES)}), seed {args.seed}, model of {profile.name}: "
          f"{stopped} stopped on a userfaultfd wait, {seconds:.0f} s")
    print(f"branch coverage of src/vmasim/core and src/vmasim/syscalls: {total:.1f}%")
    if args.fail_under is not None and total < args.fail_under:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
