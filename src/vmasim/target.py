"""What the model models, and whether the host kernel behaves like it.

The model follows Linux 6.18.44 on x86_64 as found on the project's host: a
vendor build that carries two 6.19 behaviours (the sticky VM_MAYBE_GUARD flag
and the relaxed anon_vma merge rules).  :func:`host_matches_target` runs small
probe programs on the host kernel, so differential tests can skip, with the
reason, on a kernel that behaves differently rather than report false
divergences.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

MODELLED_KERNEL = "6.18.44"
MODELLED_KERNEL_DESCRIPTION = (
    "Linux 6.18.44 (x86_64, 4 KiB pages, one NUMA node) with the sticky VM_MAYBE_GUARD flag "
    "and the 6.19 anon_vma merge rules"
)

_RW_PRIVATE = {"prot": "rw", "flags": ["private", "anonymous", "fixed_noreplace"]}

# (what is probed, program, does the kernel's report show it)
PROBES: tuple[tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]], ...] = (
    (
        "the sticky VM_MAYBE_GUARD flag ('gu' after MADV_GUARD_INSTALL)",
        {"ops": [{"op": "mmap", "addr": "W", "length": "8K", **_RW_PRIVATE},
                 {"op": "madvise", "addr": "W", "length": "4K", "advice": "guard_install"}]},
        lambda r: r["results"][1]["ret"] == 0 and "gu" in r["vmas"][0]["flags"],
    ),
    (
        "the 6.16 anon_vma relaxation (selftest mprotect_unfaulted_left merges)",
        {"ops": [{"op": "mmap", "addr": "W", "length": "40K", "prot": "rw",
                  "flags": ["private", "anonymous", "fixed_noreplace", "noreserve"]},
                 {"op": "mprotect", "addr": "W", "length": "20K", "prot": "r"},
                 {"op": "touch", "addr": "W+0x5000", "length": "4K"},
                 {"op": "mprotect", "addr": "W+0x5000", "length": "20K", "prot": "r"}]},
        lambda r: len(r["vmas"]) == 1,
    ),
)


@functools.lru_cache(maxsize=1)
def host_matches_target() -> tuple[bool, str]:
    """(True, release) when the host kernel shows the modelled behaviours; (False, why) otherwise."""
    from vmasim.kernel import KernelRunError, host_kernel_release, kernel_available, run_programs
    from vmasim.program import parse_program

    ok, why = kernel_available()
    if not ok:
        return False, f"host kernel runner unavailable: {why}"
    release = host_kernel_release()
    reports = run_programs([parse_program(doc) for _, doc, _ in PROBES])
    for (what, _, shows), report in zip(PROBES, reports, strict=True):
        if isinstance(report, KernelRunError) or not shows(report):
            return False, f"host kernel {release} lacks {what}; the model targets {MODELLED_KERNEL_DESCRIPTION}"
    return True, release
