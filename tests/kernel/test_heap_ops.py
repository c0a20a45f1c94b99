"""Programs that name the heap (``sbrk`` with ``as``) and move the break with ``brk``: the same on model and kernel.

These are the ops trace reproducers rebuild a traced heap with: the heap grown
by sbrk and named, cut and touched, a mapping placed right above the break,
then brk calls relative to the name.
"""

from __future__ import annotations

from typing import Any

import pytest
from kernelhelpers import Run

from vmasim.profile import Profile
from vmasim.program import parse_program
from vmasim.program.model import run_model

pytestmark = [pytest.mark.kernel, pytest.mark.differential]

_FIXED = ["private", "anonymous", "fixed_noreplace"]
HEAP_OPS: list[dict[str, Any]] = [
    {"op": "sbrk", "increment": "0x21000", "as": "heap"},
    {"op": "touch", "addr": "heap", "length": "4K"},
    {"op": "mprotect", "addr": "heap+0x4000", "length": "4K", "prot": "r"},
    {"op": "mmap", "addr": "heap+0x40000", "length": "4K", "prot": "r", "flags": _FIXED},
    {"op": "brk", "addr": "heap+0x3f001"},  # its page would touch the mapping: refused
    {"op": "brk", "addr": "heap+0x3f000", "as": "top"},  # a page left free below it: allowed
    {"op": "touch", "addr": "top-0x1000", "length": "4K"},
    {"op": "brk", "addr": 0},  # only asks
    {"op": "brk", "addr": "heap-0x1000"},  # below the initial break: only asks too
    {"op": "munmap", "addr": "heap+0x10000", "length": "8K"},
    {"op": "brk", "addr": "heap+0x8010"},  # shrinks across the hole, to an unaligned break
    {"op": "sbrk", "increment": "-0x9000"},  # below the initial break: ENOMEM
    {"op": "sbrk", "increment": "0x1000", "as": "old"},
    {"op": "brk", "addr": "old+0x2000"},
    {"op": "mprotect", "addr": "heap+0x9000", "length": "4K", "prot": "rw"},
    {"op": "fork", "child": [{"op": "brk", "addr": "heap+0x30000"}, {"op": "sbrk", "increment": 0}]},
]


def test_named_heap_and_brk_match_the_kernel(run: Run, host_profile: Profile) -> None:
    kernel = run(HEAP_OPS)
    model = run_model(parse_program({"ops": HEAP_OPS}), host_profile)
    assert model == kernel
    breaks = [r["ret"] for r in kernel["results"] if r["op"] in ("sbrk", "brk") and r["errno"] is None]
    assert breaks == ["+0x0", "+0x21000", "+0x3f000", "+0x3f000", "+0x3f000", "+0x8010", "+0x8010", "+0xa010"]
    assert [r["errno"] for r in kernel["results"] if r["op"] == "sbrk"] == [None, "ENOMEM", None]
    assert [(v["start"], v["end"], v["perms"]) for v in kernel["heap"]] == [
        ("+0x0", "+0x4000", "rw-p"), ("+0x4000", "+0x5000", "r--p"), ("+0x5000", "+0xb000", "rw-p")]
    child = kernel["children"]["15"]
    assert [r["ret"] for r in child["results"]] == ["+0x30000", "+0x30000"]
    # The child's last heap VMA came from the parent (its anon_vma is a fork child's): the growth is a new VMA.
    assert [(v["start"], v["end"]) for v in child["heap"]][-2:] == [("+0x5000", "+0xb000"), ("+0xb000", "+0x30000")]
