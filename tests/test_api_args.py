"""The API checks its arguments first: TypeError/ValueError naming the method and argument, nothing changed;
integers are what a register holds, narrowed to the C type the kernel reads."""

from __future__ import annotations

import contextlib
import enum
import errno
import inspect
from typing import Any

import pytest

import vmasim as v
from vmasim.args import AddressRanges, Bool, Choice, CInt, CString

from apifuzz import state

W = 0x7E0000000000
P = 4096
RW = v.PROT_READ | v.PROT_WRITE
ANON = v.MAP_PRIVATE | v.MAP_ANONYMOUS
MASK64 = (1 << 64) - 1


@pytest.fixture
def space() -> v.AddressSpace:
    s = v.AddressSpace(mmap_limit=W + (1 << 30))
    s.mmap(W, 16 * P, RW, ANON | v.MAP_FIXED)
    s.memfd_create("m", 16 * P)  # fd 3
    return s


def public_methods() -> dict[str, Any]:
    return {name: fn for name, fn in vars(v.AddressSpace).items()
            if not name.startswith("_") and inspect.isfunction(fn)}


def params(fn: Any) -> list[str]:
    return list(inspect.signature(inspect.unwrap(fn)).parameters)[1:]


def test_every_method_with_arguments_is_checked() -> None:
    """Every public method (and the constructor and the max_map_count setter) declares a spec per argument."""
    methods = {**public_methods(), "__init__": v.AddressSpace.__init__,
               "max_map_count": v.AddressSpace.max_map_count.fset}
    unchecked = [name for name, fn in methods.items() if params(fn) and not hasattr(fn, "__checked__")]
    assert unchecked == []
    for name, fn in methods.items():
        if params(fn):
            assert sorted(fn.__checked__) == sorted(params(fn)), name


@pytest.mark.parametrize(
    ("call", "exc", "message"),
    [
        (lambda s: s.brk(2**70), ValueError,
         "brk(): 'addr' must fit in a 64-bit register (-2**63 .. 2**64-1), got 1180591620717411303424"),
        (lambda s: s.mseal(W, P, None), TypeError, "mseal(): 'flags' must be an int, not None"),
        (lambda s: s.memfd_create("m", 4096.5), TypeError, "memfd_create(): 'size' must be an int, not float"),
        (lambda s: s.madvise(W, P, "dontneed"), TypeError, "madvise(): 'advice' must be an int, not str"),
        (lambda s: s.close("3"), TypeError, "close(): 'fd' must be an int, not str"),
        (lambda s: s.mmap(W, "4096", RW, ANON), TypeError, "mmap(): 'length' must be an int, not str"),
        (lambda s: s.mmap("W", P, RW, ANON), TypeError, "mmap(): 'addr' must be an int or None, not str"),
        (lambda s: s.touch(W, P, 1), TypeError, "touch(): 'write' must be a bool, not int"),
        (lambda s: s.madvise(W, P, True), TypeError, "madvise(): 'advice' must be an int, not bool"),
        (lambda s: s.munmap(W, 1 << 64), ValueError,
         "munmap(): 'length' must fit in a 64-bit register (-2**63 .. 2**64-1), got 18446744073709551616"),
        (lambda s: s.munmap(-(1 << 63) - 1, P), ValueError,
         "munmap(): 'addr' must fit in a 64-bit register (-2**63 .. 2**64-1), got -9223372036854775809"),
        (lambda s: s.munmap(W, 1 << 100000), ValueError,
         "munmap(): 'length' must fit in a 64-bit register (-2**63 .. 2**64-1), got an int of 100001 bits"),
        (lambda s: s.prctl_set_vma_anon_name(W, P, "a\0b"), ValueError,
         "prctl_set_vma_anon_name(): 'name' must not contain NUL (a C string ends there)"),
        (lambda s: s.prctl_set_vma_anon_name(W, P, b"x"), TypeError,
         "prctl_set_vma_anon_name(): 'name' must be a str or None, not bytes"),
        (lambda s: s.memfd_create("\ud800"), ValueError,
         "memfd_create(): 'name' must be encodable as UTF-8 (it has a lone surrogate)"),
        (lambda s: s.reopen(3, writable=None), TypeError, "reopen(): 'writable' must be a bool, not None"),
        (lambda s: s.maps("0"), TypeError, "maps(): 'start' must be an int, not str"),
        (lambda s: setattr(s, "max_map_count", -5), ValueError,
         "max_map_count(): 'value' must be 0x0 .. 0x7fffffff, got -5"),
        (lambda s: setattr(s, "max_map_count", 10.0), TypeError, "max_map_count(): 'value' must be an int, not float"),
    ],
)
def test_the_messages_name_the_method_and_the_argument(space: v.AddressSpace, call: Any, exc: type,
                                                        message: str) -> None:
    before = state(space)
    with pytest.raises(exc) as info:
        call(space)
    assert str(info.value) == message
    assert state(space) == before


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"max_map_count": -5}, ValueError, "AddressSpace(): 'max_map_count' must be 0x0 .. 0x7fffffff, got -5"),
        ({"max_map_count": "5"}, TypeError, "AddressSpace(): 'max_map_count' must be an int or None, not str"),
        ({"target": 5}, TypeError, "AddressSpace(): 'target' must be a Profile, Target or str or None, not int"),
        ({"mmap_base": W + 1}, ValueError,
         "AddressSpace(): 'mmap_base' must be 0x0 .. 0xffffffffffffffff, a multiple of 0x1000, got 138538465099777"),
        ({"mmap_limit": 1 << 47}, ValueError,
         "AddressSpace(): 'mmap_limit' must be at most TASK_SIZE (0x7ffffffff000), got 0x800000000000"),
    ],
)
def test_constructor_arguments(kwargs: dict[str, Any], exc: type, message: str) -> None:
    with pytest.raises(exc) as info:
        v.AddressSpace(**kwargs)
    assert str(info.value) == message


def test_an_unknown_target_names_the_constructor() -> None:
    with pytest.raises(v.ProfileError, match=r"^AddressSpace\(\): 'target': unknown profile 'nope'"):
        v.AddressSpace(target="nope")


BAD_TYPES: list[Any] = [1.5, float("nan"), "3", b"3", [], {}, (), object(), 1j]


def valid_args(name: str, fn: Any) -> dict[str, Any]:
    """Arguments of the right types for every parameter (the checks come before any kernel rule)."""
    out: dict[str, Any] = {}
    for param, spec in fn.__checked__.items():
        if isinstance(spec, Bool):
            out[param] = True
        elif isinstance(spec, CString):
            out[param] = "n"
        elif isinstance(spec, Choice):
            out[param] = spec.values[0]
        elif isinstance(spec, AddressRanges):
            out[param] = []
        elif param == "fd":
            out[param] = 3
        else:
            out[param] = 0
    return out


@pytest.mark.parametrize("name", sorted(n for n, fn in public_methods().items() if params(fn)))
def test_every_argument_rejects_every_wrong_type(space: v.AddressSpace, name: str) -> None:
    """Each argument of each method, given a value of a wrong type, is a TypeError naming both; nothing changes."""
    fn = getattr(v.AddressSpace, name)
    base = valid_args(name, fn)
    for param, spec in fn.__checked__.items():
        wrong = [x for x in BAD_TYPES if not (isinstance(spec, CString | Choice) and isinstance(x, str))
                 and not (isinstance(spec, AddressRanges) and isinstance(x, list | tuple))]
        wrong.append(1 if isinstance(spec, Bool) else True)
        if not spec.nullable:
            wrong.append(None)
        for value in wrong:
            before = state(space)
            with pytest.raises(TypeError) as info:
                getattr(space, name)(**{**base, param: value})
            assert str(info.value).startswith(f"{name}(): {param!r} must be "), (param, value, info.value)
            assert state(space) == before


@pytest.mark.parametrize("name", sorted(n for n, fn in public_methods().items() if params(fn)))
def test_every_int_argument_takes_exactly_what_a_register_holds(space: v.AddressSpace, name: str) -> None:
    fn = getattr(v.AddressSpace, name)
    base = valid_args(name, fn)
    for param, spec in fn.__checked__.items():
        if not isinstance(spec, CInt):
            continue
        for value in (1 << 64, -(1 << 63) - 1, 1 << 70, -(1 << 200)):
            before = state(space)
            with pytest.raises(ValueError, match=rf"^{name}\(\): '{param}' must fit in a 64-bit register"):
                getattr(space, name)(**{**base, param: value})
            assert state(space) == before
        for value in (MASK64, -(1 << 63), 0):
            with contextlib.suppress(OSError):  # the kernel's rules may refuse it; the argument itself was taken
                getattr(space, name)(**{**base, param: value})


def test_none_only_where_documented(space: v.AddressSpace) -> None:
    assert space.mmap(None, P, RW, ANON, None) > 0  # no hint, no file
    with pytest.raises(OSError):  # None unnames (EINVAL here: the default target has no anonymous VMA names)
        space.prctl_set_vma_anon_name(W, P, None)


class Advice(enum.IntEnum):
    DONTFORK = v.MADV_DONTFORK


def test_int_subclasses_are_ints(space: v.AddressSpace) -> None:
    space.madvise(W, P, Advice.DONTFORK)
    assert "dc" in space.find_vma(W).flags


def test_narrowed_to_the_kernels_c_types(space: v.AddressSpace) -> None:
    """What the kernel reads of the register: int advice and mlock2 flags, int mbind mode, unsigned int fds."""
    space.madvise(W, P, (1 << 32) + v.MADV_DONTFORK)  # int behavior: MADV_DONTFORK
    assert "dc" in space.find_vma(W).flags
    space.mlock2(W + 2 * P, P, (7 << 32) | v.MLOCK_ONFAULT)  # int flags: MLOCK_ONFAULT
    assert "lf" in space.find_vma(W + 2 * P).flags
    space.mbind(W + 4 * P, P, (1 << 40) | v.MPOL_BIND, 1)  # kernel_mbind()'s int lmode = mode
    assert "bind:0" in space.numa_maps(W + 4 * P, W + 5 * P)
    space.close((1 << 32) + 3)  # close(unsigned int fd): fd 3
    with pytest.raises(OSError) as info:
        space.dup(3)
    assert info.value.errno == errno.EBADF
    for length in (-P, MASK64 - P + 1):  # size_t: the same huge length
        with pytest.raises(OSError) as info:
            space.mprotect(W, length, v.PROT_READ)
        assert info.value.errno == errno.ENOMEM
    space.mlockall((1 << 32) | v.MCL_CURRENT)
    assert space.counters["locked_vm"] > 0


def test_signed_arguments_keep_their_sign() -> None:
    s = v.AddressSpace()
    start = s.sbrk(0)
    s.sbrk(4 * P)
    assert s.sbrk(MASK64 - P + 1) == start + 4 * P  # intptr_t: -P
    assert s.sbrk(0) == start + 3 * P
    fd = s.memfd_create("m", P)
    with pytest.raises(OSError) as info:
        s.ftruncate(fd, MASK64)  # off_t: -1
    assert info.value.errno == errno.EINVAL


def test_brk_far_beyond_the_address_space_is_refused() -> None:
    s = v.AddressSpace()
    start = s.brk(0)
    for value in (MASK64, MASK64 - P + 1, 1 << 63, v.TASK_SIZE + P):
        assert s.brk(value) == start
    assert s.maps() == ""
    with pytest.raises(ValueError, match=r"^brk\(\)"):
        s.brk(1 << 70)


def test_arity_errors_are_pythons() -> None:
    s = v.AddressSpace()
    with pytest.raises(TypeError, match="positional argument"):
        s.munmap(W, P, 0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        s.munmap(W, P, bogus=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing"):
        s.munmap(W)  # type: ignore[call-arg]


def test_a_file_system_is_one_the_api_knows(space: v.AddressSpace) -> None:
    before = state(space)
    with pytest.raises(ValueError, match=r"^create_file\(\): 'fs' must be one of 'regular', 'tmpfs', got 'ext2'"):
        space.create_file("f", 0, fs="ext2")
    assert state(space) == before
    fd = space.create_file("f", P, fs="tmpfs")
    assert space.file(fd).inode.is_shmem


def test_process_madvise_ranges_are_pairs_of_register_ints(space: v.AddressSpace) -> None:
    before = state(space)
    with pytest.raises(TypeError, match=r"^process_madvise\(\): ranges\[1\] must be an \(addr, length\) pair"):
        space.process_madvise([(W, P), (W,)], v.MADV_COLD)
    with pytest.raises(ValueError, match=r"^process_madvise\(\): 'ranges\[0\]\[1\]' must fit in a 64-bit register"):
        space.process_madvise([(W, 1 << 64)], v.MADV_COLD)
    assert state(space) == before
    with pytest.raises(OSError) as info:  # the count is the kernel's rule: EINVAL past UIO_MAXIOV
        space.process_madvise([(W, P)] * 1025, v.MADV_COLD)
    assert info.value.errno == errno.EINVAL
