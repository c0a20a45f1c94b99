"""The VMA record and the objects it points to (struct vm_area_struct and friends).

Identity matters more than value for most of these: two ``open()`` calls of
one file are different ``struct file``s and their mappings never merge, two
anon_vmas are never "equal", two userfaultfd contexts with the same flags are
different.  So :class:`File`, :class:`AnonVma` and :class:`UffdCtx` compare by
identity, while :class:`Mempolicy` has the kernel's value equality
(mm/mempolicy.c's __mpol_equal()).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

from vmasim.constants import (
    MPOL_BIND,
    MPOL_F_RELATIVE_NODES,
    MPOL_F_STATIC_NODES,
    MPOL_INTERLEAVE,
    MPOL_PREFERRED,
    MPOL_PREFERRED_MANY,
    MPOL_WEIGHTED_INTERLEAVE,
    PAGE_SHIFT,
)
from vmasim.core.flags import VM_MAYSHARE, mnemonics
from vmasim.core.ranges import RangeSet


class Inode:
    """A file's inode: what /proc shows as the mapped object.

    ``kind`` is "file" (a regular file), "memfd", "shmem" (shared anonymous
    memory), "uffd" or "special" (vDSO pages); ``fs`` is the file system it
    lives on ("shmem" for memfd and shared anonymous memory, else the
    target's file system for regular files).  ``foreign`` marks objects the
    process did not create through the model's API (a runner's own
    mappings), which reports name by their /proc path.  ``cache`` holds the
    page indexes present in the page cache, which decides whether a
    userfaultfd MISSING or MINOR fault fires on shmem.
    """

    __slots__ = ("cache", "foreign", "fs", "kind", "label", "shared_policy", "size")

    def __init__(self, kind: str, label: str, size: int = 0, *, fs: str = "", foreign: bool = False) -> None:
        self.kind = kind
        self.label = label
        self.size = size
        self.fs = fs or ("shmem" if kind in ("memfd", "shmem") else kind)
        self.foreign = foreign
        self.cache = RangeSet()
        # shmem's shared policy tree: (first page, end page, policy), disjoint.
        self.shared_policy: list[tuple[int, int, Mempolicy]] = []

    def set_shared_policy(self, start: int, end: int, policy: Mempolicy | None) -> None:
        """Like shared_policy_replace(): pages ``[start, end)`` get ``policy`` (None removes it)."""
        kept: list[tuple[int, int, Mempolicy]] = []
        for s, e, p in self.shared_policy:
            if s < start:
                kept.append((s, min(e, start), p))
            if e > end:
                kept.append((max(s, end), e, p))
        if policy is not None:
            kept.append((start, end, policy))
        self.shared_policy = sorted(kept, key=lambda t: t[0])

    def shared_policy_at(self, index: int) -> Mempolicy | None:
        """Like mpol_shared_policy_lookup(): the policy of page ``index``, if one was set."""
        for s, e, p in self.shared_policy:
            if s <= index < e:
                return p
        return None

    @property
    def is_shmem(self) -> bool:
        """Backed by shmem (memfd, shared anonymous memory, a file on tmpfs), like vma_is_shmem()."""
        return self.fs in ("shmem", "tmpfs")

    @property
    def has_pages(self) -> bool:
        """Whether faults read pages of the object (and so can fall beyond its end): not vDSO pages."""
        return self.kind != "special"

    def __repr__(self) -> str:
        return f"Inode({self.kind}, {self.label!r}, size={self.size:#x})"


class File:
    """An open file description (struct file): an inode plus the access mode it was opened with.

    ``refs`` counts the descriptors that refer to it (across processes);
    ``uffd`` is the context of a userfaultfd file.
    """

    __slots__ = ("inode", "readable", "refs", "uffd", "writable")

    def __init__(
        self, inode: Inode, *, readable: bool = True, writable: bool = True, uffd: UffdCtx | None = None
    ) -> None:
        self.inode = inode
        self.readable = readable
        self.writable = writable
        self.refs = 0
        self.uffd = uffd

    def __repr__(self) -> str:
        mode = ("r" if self.readable else "") + ("w" if self.writable else "")
        return f"File({self.inode.label!r}, {mode})"


def _in_use(space: object | None) -> bool:
    return space is not None and not getattr(space, "exited", False)


class IdSource:
    """Numbers for anon_vmas and userfaultfd contexts, shared by an address space and its fork children.

    Numbers only name objects in explanations; keeping the counters with the
    address spaces (not the process running the model) makes the same
    program give the same numbers every time.
    """

    __slots__ = ("_anon_vma", "_spaces", "_uffd")

    def __init__(self) -> None:
        self._anon_vma = count(1)
        self._uffd = count(1)
        # The address spaces of the family, for what acts on every mapping of a file in every process
        # (truncation): weakly, so that one nobody holds any more goes away with its process.  The
        # compiled build's classes take no weak references; there a space is held until it exits (an
        # exec leaves it, a program's fork child runs to its end).
        self._spaces: list[Callable[[], object | None]] = []

    def register(self, space: object) -> None:
        """Count ``space`` (an address space of this family) among those :meth:`spaces` gives."""
        ref: Callable[[], object | None]
        try:
            ref = weakref.ref(space)
        except TypeError:
            ref = lambda: space  # noqa: E731  (a strong reference with a weak one's interface)
        self._spaces = [r for r in self._spaces if _in_use(r())]
        self._spaces.append(ref)

    def spaces(self) -> list[object]:
        """The address spaces of this family still in use (alive, and not exited)."""
        return [space for r in self._spaces if _in_use(space := r())]

    def anon_vma(self) -> int:
        """The next anon_vma number."""
        return next(self._anon_vma)

    def uffd(self) -> int:
        """The next userfaultfd context number."""
        return next(self._uffd)


class AnonVma:
    """An anon_vma: only its identity matters for merging, so it is a numbered token."""

    __slots__ = ("id",)

    def __init__(self, ids: IdSource) -> None:
        self.id = ids.anon_vma()

    def __repr__(self) -> str:
        return f"AnonVma#{self.id}"


class UffdCtx:
    """A userfaultfd context; VMAs registered with different contexts never merge.

    ``mm`` is the address space the context was created in: registering
    through an inherited descriptor acts there, as the kernel's ctx->mm does.
    ``user_mode_only`` is UFFD_USER_MODE_ONLY: faults from inside the kernel
    (population by a system call) fail instead of waiting for a handler.
    """

    __slots__ = ("features", "id", "mm", "released", "user_mode_only")

    def __init__(self, mm: object, ids: IdSource, features: int = 0, *, user_mode_only: bool = False) -> None:
        self.id = ids.uffd()
        self.mm = mm
        self.features = features
        self.user_mode_only = user_mode_only
        self.released = False

    def __repr__(self) -> str:
        return f"UffdCtx#{self.id}"


@dataclass(frozen=True, slots=True)
class Mempolicy:
    """A NUMA memory policy.  MPOL_DEFAULT is never stored: a VMA without a policy has ``None``."""

    mode: int
    flags: int = 0
    nodes: int = 0
    user_nodes: int = 0

    def __eq__(self, other: object) -> bool:
        # Like mm/mempolicy.c's __mpol_equal().
        if not isinstance(other, Mempolicy):
            return NotImplemented
        if self.mode != other.mode or self.flags != other.flags:
            return False
        if self.flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES) and self.user_nodes != other.user_nodes:
            return False
        if self.mode in (MPOL_BIND, MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE, MPOL_PREFERRED, MPOL_PREFERRED_MANY):
            return self.nodes == other.nodes
        return True  # MPOL_LOCAL: no nodes to compare

    def __hash__(self) -> int:
        return hash((self.mode, self.flags))


def mpol_equal(a: Mempolicy | None, b: Mempolicy | None) -> bool:
    """Like mpol_equal(): the same object, both default, or equal by value."""
    if a is b:
        return True
    if a is None or b is None:
        return False
    return a == b


class Vma:
    """One VMA (struct vm_area_struct): ``[start, end)`` with its attributes.

    Mutable, and mutated only by the core (the address space and the
    merge/split/modify path); users see :class:`VmaView`.

    ``fork_child`` says that the anon_vma chain is not singular, i.e. the
    anon_vma came through fork (mm/vma.c's vma_is_fork_child()).  ``has_close``
    says that the backing vm_ops has a close hook, which forbids deleting the
    VMA in a merge.
    """

    __slots__ = (
        "anon_name",
        "anon_vma",
        "end",
        "file",
        "fork_child",
        "has_close",
        "pgoff",
        "policy",
        "start",
        "uffd_ctx",
        "vm_flags",
    )

    def __init__(
        self,
        start: int,
        end: int,
        pgoff: int,
        vm_flags: int,
        file: File | None = None,
        anon_vma: AnonVma | None = None,
        fork_child: bool = False,
        policy: Mempolicy | None = None,
        uffd_ctx: UffdCtx | None = None,
        anon_name: str | None = None,
        has_close: bool = False,
    ) -> None:
        self.start = start
        self.end = end
        self.pgoff = pgoff
        self.vm_flags = vm_flags
        self.file = file
        self.anon_vma = anon_vma
        self.fork_child = fork_child
        self.policy = policy
        self.uffd_ctx = uffd_ctx
        self.anon_name = anon_name
        self.has_close = has_close

    @property
    def pages(self) -> int:
        """Like vma_pages(): the length in pages."""
        return (self.end - self.start) >> PAGE_SHIFT

    @property
    def is_anonymous(self) -> bool:
        """Like vma_is_anonymous(): no backing object (private anonymous memory)."""
        return self.file is None

    def copy(self) -> Vma:
        """Like vm_area_dup(): a full copy sharing file, anon_vma, policy and uffd context."""
        # Positional: every split and fork copies, and matching keywords costs as much again.
        return Vma(
            self.start,
            self.end,
            self.pgoff,
            self.vm_flags,
            self.file,
            self.anon_vma,
            self.fork_child,
            self.policy,
            self.uffd_ctx,
            self.anon_name,
            self.has_close,
        )

    def __repr__(self) -> str:
        extra = []
        if self.file is not None:
            extra.append(repr(self.file))
        if self.anon_vma is not None:
            extra.append(repr(self.anon_vma) + ("(fork)" if self.fork_child else ""))
        if self.policy is not None:
            extra.append(repr(self.policy))
        if self.uffd_ctx is not None:
            extra.append(repr(self.uffd_ctx))
        if self.has_close:
            extra.append("close")
        tail = (" " + " ".join(extra)) if extra else ""
        return f"Vma({self.start:#x}-{self.end:#x} pgoff={self.pgoff:#x} {' '.join(mnemonics(self.vm_flags))}{tail})"


class VmaView:
    """A read-only view of a VMA, as users of :class:`vmasim.AddressSpace` see it."""

    __slots__ = ("_vma",)

    def __init__(self, vma: Vma) -> None:
        self._vma = vma

    @property
    def start(self) -> int:
        """First address of the VMA."""
        return self._vma.start

    @property
    def end(self) -> int:
        """First address after the VMA."""
        return self._vma.end

    @property
    def pgoff(self) -> int:
        """vm_pgoff; for private anonymous memory a virtual page number."""
        return self._vma.pgoff

    @property
    def vm_flags(self) -> int:
        """The vm_flags bits as an int."""
        return self._vma.vm_flags

    @property
    def file(self) -> File | None:
        """The struct file mapped, or None for anonymous memory."""
        return self._vma.file

    @property
    def anon_vma(self) -> AnonVma | None:
        """The anon_vma token; None before the first write fault."""
        return self._vma.anon_vma

    @property
    def fork_child(self) -> bool:
        """True when the anon_vma came through fork."""
        return self._vma.fork_child

    @property
    def policy(self) -> Mempolicy | None:
        """The VMA's own mempolicy, or None for the default."""
        return self._vma.policy

    @property
    def uffd_ctx(self) -> UffdCtx | None:
        """The userfaultfd context, or None."""
        return self._vma.uffd_ctx

    @property
    def anon_name(self) -> str | None:
        """The anonymous VMA name, or None."""
        return self._vma.anon_name

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self._vma.end - self._vma.start

    @property
    def flags(self) -> list[str]:
        """The VmFlags mnemonics, in smaps order."""
        return mnemonics(self._vma.vm_flags)

    @property
    def perms(self) -> str:
        """The perms column of /proc/PID/maps, e.g. ``rw-p``."""
        f = self._vma.vm_flags
        return (
            ("r" if f & 1 else "-")
            + ("w" if f & 2 else "-")
            + ("x" if f & 4 else "-")
            + ("s" if f & VM_MAYSHARE else "p")
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VmaView) and other._vma is self._vma

    def __hash__(self) -> int:
        return id(self._vma)

    def __repr__(self) -> str:
        return f"<VMA {self.start:#x}-{self.end:#x} {self.perms} {' '.join(self.flags)}>"
