"""touch() takes the pages after each VMA's first in one step: it must do exactly what page-by-page faults do."""

from __future__ import annotations

import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

import vmasim as v
from vmasim.core.fault import TouchResult, access_range
from vmasim.core.mm import MmStruct

W = 0x7E0000000000
P = 4096
SPAN = 16  # pages: small, so that the setup calls overlap and the touch crosses them


def touch_page_by_page(mm: MmStruct, addr: int, length: int, write: bool) -> TouchResult:
    """The reference: one page's access at a time, stopping at the first fault."""
    if length == 0:
        return TouchResult(0, None)
    page, last, pages = addr & ~(P - 1), min(addr + length - 1, (1 << 64) - 1), 0
    while page <= last:
        fault = access_range(mm, page, page + P, write).fault
        if fault is not None:
            return TouchResult(pages, fault)
        pages += 1
        page += P
    return TouchResult(pages, None)


pg = st.integers(0, SPAN)
n = st.integers(0, 8)
setup_call = st.one_of(
    st.tuples(st.just("anon"), pg, n, st.sampled_from([v.PROT_READ, v.PROT_READ | v.PROT_WRITE, v.PROT_NONE]),
              st.booleans()),
    st.tuples(st.just("memfd"), pg, n, st.integers(0, 8), st.booleans()),
    st.tuples(st.just("file"), pg, n, st.integers(0, 8)),
    st.tuples(st.just("stack"), pg, n),
    st.tuples(st.just("guard"), pg, n),
    st.tuples(st.just("uffd"), pg, n, st.sampled_from([v.UFFDIO_REGISTER_MODE_MISSING, v.UFFDIO_REGISTER_MODE_MINOR,
                                                       v.UFFDIO_REGISTER_MODE_MISSING
                                                       | v.UFFDIO_REGISTER_MODE_MINOR]), st.booleans()),
    st.tuples(st.just("touch"), pg, n, st.booleans()),
    st.tuples(st.just("dontneed"), pg, n),
    st.tuples(st.just("truncate"), st.integers(0, 8)),
    st.tuples(st.just("munmap"), pg, n),
)


def build(calls: list[tuple]) -> v.AddressSpace:
    s = v.AddressSpace(mmap_limit=W + (SPAN + 32) * P)
    memfd = s.memfd_create("m", 6 * P)
    file = s.create_file("f", 6 * P)
    for c in calls:
        kind, rest = c[0], c[1:]
        try:
            if kind == "anon":
                p, k, prot, shared = rest
                s.mmap(W + p * P, k * P, prot, (v.MAP_SHARED if shared else v.MAP_PRIVATE) | v.MAP_ANONYMOUS
                       | v.MAP_FIXED)
            elif kind == "memfd":
                p, k, off, private = rest
                s.mmap(W + p * P, k * P, v.PROT_READ | v.PROT_WRITE,
                       (v.MAP_PRIVATE if private else v.MAP_SHARED) | v.MAP_FIXED, memfd, off * P)
            elif kind == "file":
                p, k, off = rest
                s.mmap(W + p * P, k * P, v.PROT_READ | v.PROT_WRITE, v.MAP_SHARED | v.MAP_FIXED, file, off * P)
            elif kind == "stack":
                p, k = rest
                s.mmap(W + p * P, k * P, v.PROT_READ | v.PROT_WRITE,
                       v.MAP_PRIVATE | v.MAP_ANONYMOUS | v.MAP_FIXED | v.MAP_GROWSDOWN)
            elif kind == "guard":
                s.madvise(W + rest[0] * P, rest[1] * P, v.MADV_GUARD_INSTALL)
            elif kind == "uffd":
                p, k, mode, sigbus = rest
                fd = s.userfaultfd(v.UFFD_FEATURE_SIGBUS if sigbus else 0)
                s.uffd_register(fd, W + p * P, k * P, mode)
            elif kind == "touch":
                s.touch(W + rest[0] * P, rest[1] * P, rest[2])
            elif kind == "dontneed":
                s.madvise(W + rest[0] * P, rest[1] * P, v.MADV_DONTNEED)
            elif kind == "truncate":
                s.ftruncate(memfd, rest[0] * P)
            elif kind == "munmap":
                s.munmap(W + rest[0] * P, rest[1] * P)
        except OSError:
            pass
    return s


def page_state(s: v.AddressSpace) -> tuple:
    files = [f for f in s._files.values()] + [x.file for x in s.mm.vmas if x.file is not None]
    inodes = {id(f.inode): f.inode for f in files}
    return (s.smaps(), tuple(s.mm.ptes), tuple(s.mm.pages), tuple(s.mm.guards),
            tuple(sorted((i.label, tuple(i.cache)) for i in inodes.values())),
            tuple((x.start, x.anon_vma is not None) for x in s.mm.vmas))


@settings(max_examples=500, deadline=None)
@given(st.lists(setup_call, min_size=1, max_size=8), st.integers(0, 4), st.integers(SPAN - 8, SPAN + 4),
       st.sampled_from([0, 0, 0, 1, P - 1]), st.booleans())
@example([("memfd", 0, 8, 0, False)], 2, SPAN, 0, True)  # past the end of the file: SIGBUS
@example([("anon", 0, 8, v.PROT_READ | v.PROT_WRITE, False), ("guard", 3, 1)], 2, SPAN, 0, False)
def test_touch_is_page_by_page(calls: list[tuple], start: int, pages: int, skew: int, write: bool) -> None:
    a, b = build(calls), build(calls)
    addr, length = W - 2 * P + start * P + skew, pages * P
    assert a.touch(addr, length, write) == touch_page_by_page(b.mm, addr, length, write)
    assert page_state(a) == page_state(b)


uffd_setup = st.tuples(
    st.sampled_from(["anon", "memfd_shared", "memfd_private"]),
    st.tuples(pg, n), st.tuples(pg, n, st.booleans()),  # pre-touches: (page, pages, write)
    st.tuples(pg, n, st.booleans()),
    st.sampled_from([v.UFFDIO_REGISTER_MODE_MISSING, v.UFFDIO_REGISTER_MODE_MINOR,
                     v.UFFDIO_REGISTER_MODE_MISSING | v.UFFDIO_REGISTER_MODE_MINOR]),
    st.tuples(pg, n),  # MADV_DONTNEED after registering
)


@settings(max_examples=300, deadline=None)
@given(uffd_setup, st.booleans())
def test_touch_with_userfaultfd_is_page_by_page(setup: tuple, write: bool) -> None:
    """Pages present, cached or neither under a userfaultfd: the bulk path stops exactly where a page traps."""
    kind, first, second, third, mode, dontneed = setup
    calls: list[tuple] = []
    if kind == "anon":
        calls.append(("anon", 0, SPAN, v.PROT_READ | v.PROT_WRITE, False))
    else:
        calls.append(("memfd", 0, 6, 0, kind == "memfd_private"))
    calls += [("touch", first[0], first[1], True), ("touch", *second), ("touch", *third)]
    calls.append(("uffd", 0, SPAN, mode, False))
    calls.append(("dontneed", *dontneed))
    a, b = build(calls), build(calls)
    assert a.touch(W, SPAN * P, write) == touch_page_by_page(b.mm, W, SPAN * P, write)
    assert page_state(a) == page_state(b)


def test_a_terabyte_touch_is_one_step_per_vma() -> None:
    s = v.AddressSpace()
    s.mmap(W, 1 << 40, v.PROT_READ | v.PROT_WRITE, v.MAP_PRIVATE | v.MAP_ANONYMOUS | v.MAP_FIXED | v.MAP_NORESERVE)
    t0 = time.perf_counter()
    assert s.touch(W, 1 << 40) == TouchResult(1 << 28, None)
    assert s.touch(W - P, 1 << 40) == TouchResult(0, "SIGSEGV")
    assert time.perf_counter() - t0 < 60  # page by page this would take hours, not a measurement
