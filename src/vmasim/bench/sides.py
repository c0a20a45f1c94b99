"""The two sides of a bench: the model and the host kernel (libc through ctypes), doing the same operations."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

from vmasim import constants as C
from vmasim.api import AddressSpace

P = C.PAGE_SIZE
RW = C.PROT_READ | C.PROT_WRITE
ANON = C.MAP_PRIVATE | C.MAP_ANONYMOUS
FIXED = ANON | C.MAP_FIXED
SLOT = 5 * P  # a 4-page VMA and a 1-page hole
# Where both sides lay out the holed layout: 16 TiB, far below the libraries and the hint-less area.
REGION = 0x100000000000

Op = Callable[[int], object]


# --- the host kernel through libc ------------------------------------------------------------------------


class Kernel:
    """The system calls of the workloads, made by this process through libc; OSError on failure."""

    MAP_FAILED = (1 << 64) - 1

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._mmap = libc.mmap
        self._mmap.restype = ctypes.c_void_p
        self._mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_long]
        self._calls: dict[str, Any] = {}
        for name, extra in (("munmap", []), ("mprotect", [ctypes.c_int]), ("madvise", [ctypes.c_int]),
                            ("mlock", []), ("munlock", [])):
            fn = getattr(libc, name)
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, *extra]
            self._calls[name] = fn
        # fork() and _exit() keep the GIL (PyDLL): the child only calls _exit.
        pylib = ctypes.PyDLL(None)
        self._fork = pylib.fork
        self._fork.restype = ctypes.c_int
        self._exit = pylib._exit
        self._exit.argtypes = [ctypes.c_int]

    @staticmethod
    def _fail(call: str) -> OSError:
        err = ctypes.get_errno()
        return OSError(err, f"{call}: {os.strerror(err)}")

    def mmap(self, addr: int | None, length: int, prot: int, flags: int) -> int:
        """mmap(2) of anonymous memory; returns the address."""
        ret = self._mmap(addr, length, prot, flags, -1, 0)
        if ret is None or ret == self.MAP_FAILED:
            raise self._fail("mmap")
        return int(ret)

    def call(self, name: str) -> Callable[..., None]:
        """``munmap``, ``mprotect``, ``madvise``, ``mlock`` or ``munlock`` as a function raising OSError."""
        fn = self._calls[name]
        fail = self._fail

        def checked(*args: int) -> None:
            if fn(*args):
                raise fail(name)

        return checked

    def fork_and_reap(self) -> None:
        """fork(); the child _exits at once; the parent waits for it."""
        pid = self._fork()
        if pid == 0:
            self._exit(0)
        if pid < 0:
            raise self._fail("fork")
        os.waitpid(pid, 0)

    @staticmethod
    def map_count() -> int:
        """This process's VMAs, as /proc/self/maps lists them."""
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)


def kernel_unavailable() -> str | None:
    """Why the kernel side cannot run here, or None."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"the kernel side needs Linux on x86_64 (this is {sys.platform} on {platform.machine()})"
    try:
        Kernel()
    except (OSError, AttributeError) as exc:
        return f"libc cannot be called through ctypes: {exc}"
    return None


def max_map_count() -> int | None:
    """The host's vm.max_map_count, or None when it cannot be read."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


# --- sides: the same operations on the model and on the kernel -----------------------------------------------


class Side:
    """One side of the comparison: the calls the workloads make, each taking an address."""

    name = ""

    def mmap(self, addr: int | None, length: int, prot: int, flags: int) -> int:
        """mmap(2) of anonymous memory."""
        raise NotImplementedError

    def op(self, call: str, *args: int) -> Op:
        """A function of one address making ``call(addr, *args)``."""
        raise NotImplementedError

    def touch(self) -> Op:
        """A function writing one byte at an address (a write fault on a page without one)."""
        raise NotImplementedError

    def fork(self) -> None:
        """fork(2) of the whole address space (the child is dropped at once)."""
        raise NotImplementedError

    def holed(self, n: int) -> int:
        """Lay out N 4-page read-write VMAs with a 1-page hole after each; returns the address of the first."""
        raise NotImplementedError

    def packed(self, n: int) -> list[int]:
        """Map N one-page VMAs without a hint, alternately read-write and read-only (so none merge)."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Drop the layout."""

    def vmas_in(self, start: int, end: int) -> int:
        """How many VMAs lie in ``[start, end)`` (to check that both sides hold the same layout)."""
        raise NotImplementedError


class ModelSide(Side):
    """The model: a fresh :class:`AddressSpace` per layout."""

    name = "model"

    def __init__(self) -> None:
        self.space = AddressSpace(max_map_count=1 << 20)

    def mmap(self, addr: int | None, length: int, prot: int, flags: int) -> int:
        """mmap(2) on the model."""
        return self.space.mmap(addr, length, prot, flags)

    def op(self, call: str, *args: int) -> Op:
        """The model's method ``call`` with the extra arguments bound."""
        method = getattr(self.space, call)
        return lambda addr: method(addr, *args)

    def touch(self) -> Op:
        """A write fault on the model."""
        touch = self.space.touch
        return lambda addr: touch(addr, 1)

    def fork(self) -> None:
        """fork(2) on the model."""
        self.space.fork()

    def vmas_in(self, start: int, end: int) -> int:
        """VMAs of the model in ``[start, end)``."""
        return len(self.space.vmas(start, end))

    def holed(self, n: int) -> int:
        """The holed layout at :data:`REGION`."""
        mmap = self.space.mmap
        for i in range(n):
            mmap(REGION + i * SLOT, 4 * P, RW, FIXED)
        return REGION

    def packed(self, n: int) -> list[int]:
        """The packed layout, mapped with MAP_FIXED where hint-less mmaps would put it (right below mmap_base).

        Mapping without a hint gives the same layout; MAP_FIXED keeps building
        it cheap even for a model whose gap search is slow.
        """
        top = self.space.mm.mmap_base
        addrs = [top - (i + 1) * P for i in range(n)]
        for i, addr in enumerate(addrs):
            self.space.mmap(addr, P, RW if i % 2 == 0 else C.PROT_READ, FIXED)
        probe = self.space.mmap(None, P, C.PROT_NONE, ANON)
        assert probe == top - (n + 1) * P, "the packed layout is not where hint-less mmaps put it"
        self.space.munmap(probe, P)
        return addrs


class KernelSide(Side):
    """The host kernel, in this process."""

    name = "kernel"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.region: tuple[int, int] | None = None
        self.pages: list[int] = []

    def mmap(self, addr: int | None, length: int, prot: int, flags: int) -> int:
        """mmap(2) through libc."""
        return self.kernel.mmap(addr, length, prot, flags)

    def op(self, call: str, *args: int) -> Op:
        """libc's ``call`` with the extra arguments bound."""
        if call == "mmap":
            mmap = self.kernel.mmap
            return lambda addr: mmap(addr, *args)
        fn = self.kernel.call(call)
        return lambda addr: fn(addr, *args)

    def touch(self) -> Op:
        """A write of one byte through ctypes.memset."""
        memset = ctypes.memset
        return lambda addr: memset(addr, 1, 1)

    def fork(self) -> None:
        """fork() + _exit() in the child + waitpid()."""
        self.kernel.fork_and_reap()

    def holed(self, n: int) -> int:
        """Reserve the region PROT_NONE, map the VMAs over it with MAP_FIXED, unmap the holes."""
        size = n * SLOT
        base = self.kernel.mmap(REGION, size, C.PROT_NONE, ANON | C.MAP_NORESERVE | C.MAP_FIXED_NOREPLACE)
        self.region = (base, size)
        if base != REGION:
            # A kernel older than MAP_FIXED_NOREPLACE took it as a hint.
            self.teardown()
            raise OSError(f"cannot reserve the bench region at {REGION:#x}")
        munmap = self.kernel.call("munmap")
        try:
            # Hole by hole, so that the rest of the reservation stays one VMA (max_map_count).
            for i in range(n):
                self.kernel.mmap(base + i * SLOT, 4 * P, RW, FIXED)
                munmap(base + i * SLOT + 4 * P, P)
        except OSError:
            self.teardown()
            raise
        return base

    def packed(self, n: int) -> list[int]:
        """Hint-less mmaps, kept for the teardown."""
        for i in range(n):
            self.pages.append(self.mmap(None, P, RW if i % 2 == 0 else C.PROT_READ, ANON))
        return self.pages

    def vmas_in(self, start: int, end: int) -> int:
        """VMAs of this process in ``[start, end)``, from /proc/self/maps."""
        count = 0
        with open("/proc/self/maps") as maps:
            for line in maps:
                lo, hi = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
                count += lo < end and hi > start
        return count

    def teardown(self) -> None:
        """Unmap the region or the pages."""
        munmap = self.kernel.call("munmap")
        if self.region is not None:
            munmap(*self.region)
            self.region = None
        for addr in self.pages:
            munmap(addr, P)
        self.pages = []
