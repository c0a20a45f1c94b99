"""Bad input of every kind gives the kernel's errno, and the address space is left as the kernel leaves it."""

from __future__ import annotations

import errno

import pytest

import vmasim as v

W = 0x7E0000000000
P = 4096
ANON = v.MAP_PRIVATE | v.MAP_ANONYMOUS
RW = v.PROT_READ | v.PROT_WRITE
U64 = (1 << 64) - 1


@pytest.fixture
def space() -> v.AddressSpace:
    s = v.AddressSpace(mmap_limit=W + (4 << 30))
    s.mmap(W, 16 * P, RW, ANON | v.MAP_FIXED)
    return s


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)
    assert isinstance(info.value.errno, int)
    return info.value.errno


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((W, 0, RW, ANON | v.MAP_FIXED), errno.EINVAL),  # zero length
        ((W + 1, P, RW, ANON | v.MAP_FIXED), errno.EINVAL),  # unaligned FIXED
        ((W, P, RW, v.MAP_ANONYMOUS | v.MAP_FIXED), errno.EINVAL),  # no mapping type
        ((W, P, RW, v.MAP_SHARED_VALIDATE | v.MAP_ANONYMOUS | v.MAP_FIXED), errno.EINVAL),
        ((W, U64 - P, RW, ANON), errno.ENOMEM),  # absurd length, rounds to 0
        ((W, 1 << 62, RW, ANON), errno.ENOMEM),  # larger than the address space
        ((W, P, RW, ANON | v.MAP_FIXED_NOREPLACE), errno.EEXIST),
        ((0x7FFFFFFFF000, 2 * P, RW, ANON | v.MAP_FIXED), errno.ENOMEM),  # past the top
        ((W, P, RW, v.MAP_DROPPABLE | v.MAP_ANONYMOUS | v.MAP_LOCKED | v.MAP_FIXED), errno.EINVAL),
        ((W, P, RW, v.MAP_SHARED | v.MAP_ANONYMOUS | v.MAP_GROWSDOWN | v.MAP_FIXED), errno.EINVAL),
        ((W, P, RW, v.MAP_PRIVATE | v.MAP_FIXED), errno.EBADF),  # a file mapping without a file
    ],
)
def test_mmap_errors(space: v.AddressSpace, args: tuple, code: int) -> None:
    before = space.maps()
    assert errno_of(space.mmap, *args) == code
    assert space.maps() == before


def test_mmap_unaligned_offset(space: v.AddressSpace) -> None:
    fd = space.memfd_create("m", 16 * P)
    assert errno_of(space.mmap, W + 32 * P, P, RW, v.MAP_SHARED | v.MAP_FIXED, fd, 100) == errno.EINVAL


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((W + 1, P), errno.EINVAL),
        ((W, 0), errno.EINVAL),
        ((W, U64), errno.EINVAL),  # length past the top
        ((0x800000000000, P), errno.EINVAL),  # start past TASK_SIZE
    ],
)
def test_munmap_errors(space: v.AddressSpace, args: tuple, code: int) -> None:
    before = space.maps()
    assert errno_of(space.munmap, *args) == code
    assert space.maps() == before


def test_munmap_of_nothing_succeeds(space: v.AddressSpace) -> None:
    space.munmap(W + 100 * P, 4 * P)
    assert len(space) == 1


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((W + 1, P, v.PROT_READ), errno.EINVAL),
        ((W, P, 0x10), errno.EINVAL),  # unknown prot bit
        ((W, P, v.PROT_READ | v.PROT_GROWSDOWN | v.PROT_GROWSUP), errno.EINVAL),
        ((W, P, v.PROT_READ | v.PROT_GROWSDOWN), errno.EINVAL),  # not a growsdown VMA
        ((W, U64 - P, v.PROT_READ), errno.ENOMEM),  # wraps
        ((W + 100 * P, P, v.PROT_READ), errno.ENOMEM),  # nothing mapped
        ((W - P, 2 * P, v.PROT_READ), errno.ENOMEM),  # starts in a hole: no change
    ],
)
def test_mprotect_errors(space: v.AddressSpace, args: tuple, code: int) -> None:
    before = space.maps()
    assert errno_of(space.mprotect, *args) == code
    assert space.maps() == before


def test_mprotect_zero_length_is_a_no_op(space: v.AddressSpace) -> None:
    before = space.maps()
    assert space.mprotect(W + 100 * P, 0, v.PROT_READ) is None  # nothing mapped there, and no error
    assert space.mprotect(W, 0, v.PROT_NONE) is None
    assert space.maps() == before


def test_mprotect_eacces_applies_up_to_the_refusing_vma() -> None:
    s = v.AddressSpace()
    s.mmap(W, 4 * P, v.PROT_READ, ANON | v.MAP_FIXED)
    ro = s.reopen(s.memfd_create("f", 16 * P), writable=False)
    s.mmap(W + 4 * P, 4 * P, v.PROT_READ, v.MAP_SHARED | v.MAP_FIXED, ro, 0)
    s.mmap(W + 8 * P, 4 * P, v.PROT_READ, ANON | v.MAP_FIXED)
    assert errno_of(s.mprotect, W, 12 * P, RW) == errno.EACCES
    assert [x.perms for x in s] == ["rw-p", "r--s", "r--p"]


def test_touch_faults() -> None:
    s = v.AddressSpace()
    s.mmap(W, 2 * P, v.PROT_READ, ANON | v.MAP_FIXED)
    s.mmap(W + 2 * P, P, v.PROT_NONE, ANON | v.MAP_FIXED)
    assert s.touch(W, 2 * P, write=False) == v.TouchResult(2, None)
    assert s.touch(W, 2 * P) == v.TouchResult(0, "SIGSEGV")
    assert s.touch(W, 3 * P, write=False) == v.TouchResult(2, "SIGSEGV")
    assert s.touch(W + 8 * P, P) == v.TouchResult(0, "SIGSEGV")
    fd = s.memfd_create("m", P)
    s.mmap(W + 16 * P, 2 * P, RW, v.MAP_SHARED | v.MAP_FIXED, fd, 0)
    assert s.touch(W + 16 * P, 2 * P) == v.TouchResult(1, "SIGBUS")
