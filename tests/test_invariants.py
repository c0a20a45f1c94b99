"""Long random call sequences on the model, checking the address-space invariants after every call."""

from __future__ import annotations

import errno

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmasim as v
from vmasim.explain import why_separate

from vmahelpers import P, check_invariants

BASE = 0x7E0000000000
SPAN = 64  # pages: a small region makes VMAs interact
ERRNOS = {errno.EINVAL, errno.ENOMEM, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EOVERFLOW, errno.EBADF,
          errno.EAGAIN, errno.EFAULT, errno.EIO}

page = st.integers(min_value=0, max_value=SPAN)
npages = st.integers(min_value=0, max_value=24)
prot = st.sampled_from([v.PROT_NONE, v.PROT_READ, v.PROT_READ | v.PROT_WRITE, v.PROT_READ | v.PROT_WRITE | v.PROT_EXEC])
extra = st.sampled_from([0, v.MAP_NORESERVE, v.MAP_POPULATE, v.MAP_STACK, v.MAP_GROWSDOWN, v.MAP_LOCKED])

advice = st.sampled_from([v.MADV_DONTFORK, v.MADV_DOFORK, v.MADV_DONTDUMP, v.MADV_HUGEPAGE, v.MADV_NOHUGEPAGE,
                          v.MADV_MERGEABLE, v.MADV_DONTNEED, v.MADV_GUARD_INSTALL, v.MADV_POPULATE_WRITE,
                          v.MADV_WIPEONFORK, v.MADV_RANDOM])
mremap_flags = st.sampled_from([0, v.MREMAP_MAYMOVE, v.MREMAP_MAYMOVE | v.MREMAP_FIXED,
                                v.MREMAP_MAYMOVE | v.MREMAP_FIXED | v.MREMAP_DONTUNMAP])

call = st.one_of(
    st.tuples(st.just("mmap_fixed"), page, npages, prot, extra, st.booleans()),
    st.tuples(st.just("mmap_hint"), page, npages, prot, extra, st.booleans()),
    st.tuples(st.just("munmap"), page, npages),
    st.tuples(st.just("mprotect"), page, npages, prot),
    st.tuples(st.just("touch"), page, npages, st.booleans()),
    st.tuples(st.just("unaligned"), page, npages),
    st.tuples(st.just("madvise"), page, npages, advice),
    st.tuples(st.just("mlock"), page, npages, st.booleans()),
    st.tuples(st.just("mbind"), page, npages, st.sampled_from([v.MPOL_DEFAULT, v.MPOL_BIND, v.MPOL_INTERLEAVE])),
    st.tuples(st.just("mseal"), page, npages),
    st.tuples(st.just("mremap"), page, npages, npages, mremap_flags, page),
)


def apply(space: v.AddressSpace, c: tuple) -> None:
    kind = c[0]
    try:
        if kind in ("mmap_fixed", "mmap_hint"):
            _, p, n, pr, ex, shared = c
            flags = (v.MAP_SHARED if shared else v.MAP_PRIVATE) | v.MAP_ANONYMOUS | ex
            if shared:
                flags &= ~v.MAP_GROWSDOWN
            if kind == "mmap_fixed":
                flags |= v.MAP_FIXED
            addr = space.mmap(BASE + p * P, n * P, pr, flags)
            check_new_mapping_merged(space, addr)
        elif kind == "munmap":
            space.munmap(BASE + c[1] * P, c[2] * P)
        elif kind == "mprotect":
            space.mprotect(BASE + c[1] * P, c[2] * P, c[3])
        elif kind == "touch":
            space.touch(BASE + c[1] * P, c[2] * P, c[3])
        elif kind == "unaligned":
            space.mprotect(BASE + c[1] * P + 1, c[2] * P, v.PROT_READ)
        elif kind == "madvise":
            space.madvise(BASE + c[1] * P, c[2] * P, c[3])
        elif kind == "mlock":
            (space.mlock if c[3] else space.munlock)(BASE + c[1] * P, c[2] * P)
        elif kind == "mbind":
            space.mbind(BASE + c[1] * P, c[2] * P, c[3], 0 if c[3] == v.MPOL_DEFAULT else 1)
        elif kind == "mseal":
            space.mseal(BASE + c[1] * P, c[2] * P)
        elif kind == "mremap":
            space.mremap(BASE + c[1] * P, c[2] * P, c[3] * P, c[4], BASE + c[5] * P)
    except OSError as exc:
        assert exc.errno in ERRNOS, exc


def check_new_mapping_merged(space: v.AddressSpace, addr: int) -> None:
    """A new mapping merges with every compatible neighbour at once (vma_merge_new_range()): right after an
    mmap, the VMA holding it has no neighbour that explain() calls compatible."""
    mm = space.mm
    vma = mm.vmas.lookup(addr)
    assert vma is not None
    for left, right in ((mm.vma_prev(vma), vma), (vma, mm.vma_next(vma))):
        if left is not None and right is not None and left.end == right.start:
            assert why_separate(mm, left, right), f"missed merge: {left} | {right}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(call, min_size=1, max_size=60), st.integers(min_value=1, max_value=40))
def test_invariants_hold_after_every_call(calls: list[tuple], max_map_count: int) -> None:
    space = v.AddressSpace(max_map_count=max_map_count, mmap_limit=BASE + SPAN * P)
    for c in calls:
        apply(space, c)
        check_invariants(space.mm)
        assert space.map_count <= max_map_count + 1  # mmap may take it one above the limit


@settings(max_examples=60, deadline=None)
@given(st.lists(call, min_size=1, max_size=40))
def test_failed_validation_changes_nothing(calls: list[tuple]) -> None:
    """Calls rejected by argument validation leave the address space exactly as it was."""
    space = v.AddressSpace(mmap_limit=BASE + SPAN * P)
    for c in calls:
        apply(space, c)
    before = [(x.start, x.end, x.pgoff, x.vm_flags, id(x.anon_vma)) for x in space.mm.vmas]
    bad = [
        lambda: space.mmap(BASE + 1, P, v.PROT_READ, v.MAP_PRIVATE | v.MAP_ANONYMOUS | v.MAP_FIXED),
        lambda: space.mmap(BASE, 0, v.PROT_READ, v.MAP_PRIVATE | v.MAP_ANONYMOUS | v.MAP_FIXED),
        lambda: space.mmap(BASE, P, v.PROT_READ, v.MAP_ANONYMOUS | v.MAP_FIXED),
        lambda: space.munmap(BASE + 1, P),
        lambda: space.munmap(BASE, 0),
        lambda: space.mprotect(BASE + 1, P, v.PROT_READ),
        lambda: space.mprotect(BASE, P, 0x10),
        lambda: space.mprotect(BASE, -P, v.PROT_READ),
    ]
    for call_ in bad:
        try:
            call_()
        except OSError:
            pass
        else:  # pragma: no cover - every one of these must fail
            raise AssertionError("bad call succeeded")
        after = [(x.start, x.end, x.pgoff, x.vm_flags, id(x.anon_vma)) for x in space.mm.vmas]
        assert after == before
