"""Branch coverage of the model's core and system calls under a fixed-seed fuzz campaign.

Generates the campaign's programs (``--count`` per category, seed ``--seed``:
the programs ``vmasim fuzz --seed S --count N --category C`` runs) and runs
each on the model of every ``--target`` under coverage.py with branch
measurement, limited to ``src/vmasim/core`` and ``src/vmasim/syscalls``.  The
kernel side of a campaign does not change which model code runs, so it is
left out.

By default the targets are the two machines the project stores kernel
reports for (the no-PKU host and the PKU one) and three variants of the host
that flip every switch of the target the built-in machines share: other
kernel behaviours (pre-6.16 anon_vma rules, no sticky guard flag, anonymous
VMA names, soft-dirty, single-VMA mremap moves); an unprivileged process
under tight limits (RLIMIT_MEMLOCK/AS/DATA, strict overcommit by size,
user-mode-only userfaultfds, two NUMA nodes, huge pages for shmem and tmpfs
files, hugetlb sizes, 5-level paging); and one without RLIMIT_MEMLOCK,
with strict overcommit by ratio and shmem huge pages forced; and the first
profile again with tiny blocks in the VMA store (2 to 8 VMAs) and the range
sets (at most 4 runs): generated programs are too small to fill a block of
the real size.
``--host-only`` measures the host's profile alone (with tiny blocks too).
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
from typing import Any

import coverage

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [str(ROOT / "src" / "vmasim" / "core"), str(ROOT / "src" / "vmasim" / "syscalls")]


def variants(host: Any) -> list[Any]:
    """The host's profile with every target switch the built-in machines share flipped (see the module doc)."""
    from dataclasses import replace

    t = host.target
    kernel = replace(t.kernel, anon_vma_relaxed=not t.kernel.anon_vma_relaxed,
                     maybe_guard_flag=not t.kernel.maybe_guard_flag, anon_vma_name=not t.kernel.anon_vma_name,
                     soft_dirty=not t.kernel.soft_dirty, multi_vma_mremap=not t.kernel.multi_vma_mremap)
    limits = replace(t.limits, privileged=False, unprivileged_userfaultfd=False, rlimit_memlock=64 << 10,
                     rlimit_as=64 << 30, rlimit_data=32 << 20, overcommit_memory=2, overcommit_kbytes=1 << 20)
    memory = replace(t.memory, numa_nodes=(0, 1), thp_shmem="always", shmem_mthp_orders=1 << 9,
                     hugetlb_sizes=(2 << 20,))
    files = replace(t.files, regular_fs="tmpfs", tmpfs_huge="always")
    cpu = replace(t.cpu, la57=True)
    # The settings one machine cannot have together with the ones above: strict overcommit by ratio,
    # no RLIMIT_MEMLOCK at all, shmem huge pages forced.
    no_memlock = replace(t.limits, privileged=False, rlimit_memlock=0, overcommit_memory=2, overcommit_kbytes=0)
    return [replace(host, name="host-other-kernel", target=replace(t, kernel=kernel)),
            replace(host, name="host-unprivileged-tight",
                    target=replace(t, limits=limits, memory=memory, files=files, cpu=cpu)),
            replace(host, name="host-no-memlock", target=replace(t, limits=no_memlock,
                                                                  memory=replace(t.memory, thp_shmem="force")))]


def main() -> int:
    """Run the campaign's programs on the model under coverage and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="programs per category (default 5000)")
    parser.add_argument("--seed", type=int, default=0, help="the campaign's seed (default 0)")
    parser.add_argument("--target", action="append", default=None,
                        help="a profile the model models (repeatable; default: linux-6.18.44-nopku and "
                        "linux-6.18.44-pku)")
    parser.add_argument("--host-only", action="store_true",
                        help="only the no-PKU host's profile (no PKU machine, no variants)")
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 below this branch coverage")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    cov = coverage.Coverage(branch=True, source=SOURCES, data_file=None, config_file=str(ROOT / "pyproject.toml"))
    cov.start()
    # Imported under coverage, so that module-level lines count too.
    from vmasim.core import ranges, store
    from vmasim.core.errors import WouldBlock
    from vmasim.fuzz.categories import CATEGORIES
    from vmasim.fuzz.generate import generate_programs
    from vmasim.profile import resolve_profile
    from vmasim.program import parse_program
    from vmasim.program.model import run_model

    if args.target:
        profiles = [resolve_profile(t) for t in args.target]
    elif args.host_only:
        profiles = [resolve_profile("linux-6.18.44-nopku")]
    else:
        profiles = [resolve_profile("linux-6.18.44-nopku"), resolve_profile("linux-6.18.44-pku"),
                    *variants(resolve_profile("linux-6.18.44-nopku"))]
    # The host's profile once more with tiny blocks (two to eight VMAs, at most four runs): the
    # programs are too small to split, fold or cross a block of the real size (the reports are the same,
    # tests/test_tiny_blocks.py checks it).
    runs = [(p, False) for p in profiles] + [(profiles[0], True)]
    loads = (store.LOAD, ranges.LOAD)
    began = time.perf_counter()
    stopped = 0
    for category in CATEGORIES:
        for lo in range(0, args.count, 1000):
            for doc in generate_programs(args.seed, min(1000, args.count - lo), category, start=lo):
                program = parse_program(doc)
                for profile, tiny in runs:
                    if tiny:
                        store.LOAD, ranges.LOAD = 4, 2
                    try:
                        run_model(program, profile, timeout=10)
                    except WouldBlock:
                        stopped += 1  # the kernel runner stops these too
                    finally:
                        store.LOAD, ranges.LOAD = loads
    cov.stop()
    seconds = time.perf_counter() - began
    total = cov.report(show_missing=True, skip_covered=True, file=sys.stdout)
    names = " and ".join(p.name for p in profiles) + f" (and {profiles[0].name} with tiny blocks)"
    print(f"{args.count} programs per category ({', '.join(CATEGORIES)}), seed {args.seed}, model of {names}: "
          f"{stopped} runs stopped on a userfaultfd wait, {seconds:.0f} s")
    print(f"branch coverage of src/vmasim/core and src/vmasim/syscalls: {total:.3f}%")
    if args.fail_under is not None and total < args.fail_under:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
