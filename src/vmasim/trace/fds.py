"""Descriptor tables: which open file (struct file) a descriptor number stands for.

Merging cares about struct file identity: two mappings of one inode through
two open() calls never merge, through one open (or a dup of it) they may.
A :class:`Handle` stands for one open file description; descriptors share a
handle exactly when the kernel's descriptors share a struct file (dup, fork,
CLONE_FILES).  The model File behind a handle is made at the handle's first
mmap, from what /proc/PID/fd and fdinfo say about the descriptor then.
"""

from __future__ import annotations

import os
import stat

from vmasim.core.vma import File, UffdCtx
from vmasim.procimport import FileTable, dev_text
from vmasim.syscalls.userfaultfd import userfaultfd_release_all


class Handle:
    """One open file description; ``file`` is its model File once known, ``refs`` the descriptors on it."""

    __slots__ = ("file", "mm", "refs", "uffd")

    def __init__(self, file: File | None = None) -> None:
        self.file = file
        self.refs = 0
        # A userfaultfd: the address space it was created in (the model MmStruct), and its context
        # once UFFDIO_API has run.
        self.mm: object | None = None
        self.uffd: UffdCtx | None = None


class FdTable:
    """A descriptor table (struct files_struct), shared by tasks cloned with CLONE_FILES."""

    __slots__ = ("handles", "users")

    def __init__(self) -> None:
        self.handles: dict[int, Handle] = {}
        self.users = 0

    def copy(self) -> FdTable:
        """Like dup_fd(): a new table whose descriptors share the open files."""
        other = FdTable()
        for fd, handle in self.handles.items():
            other._install(fd, handle)
        return other

    def _install(self, fd: int, handle: Handle) -> None:
        self.close(fd)
        self.handles[fd] = handle
        handle.refs += 1

    def get(self, fd: int) -> Handle:
        """The handle of ``fd``, made (unknown) if the tracer has not seen it yet."""
        handle = self.handles.get(fd)
        if handle is None:
            handle = Handle()
            self._install(fd, handle)
        return handle

    def install(self, fd: int, handle: Handle) -> None:
        """``fd`` now refers to ``handle`` (a new descriptor)."""
        self._install(fd, handle)

    def dup(self, old: int, new: int) -> None:
        """``new`` now refers to the open file of ``old`` (dup, dup2, dup3, F_DUPFD)."""
        if old == new:
            return
        self._install(new, self.get(old))

    def close(self, fd: int) -> None:
        """Close ``fd``; the last descriptor of a userfaultfd releases its registrations."""
        handle = self.handles.pop(fd, None)
        if handle is None:
            return
        handle.refs -= 1
        if handle.refs == 0 and handle.uffd is not None and not handle.uffd.released:
            userfaultfd_release_all(handle.uffd)

    def close_range(self, first: int, last: int) -> None:
        """close_range(2) without flags."""
        for fd in [fd for fd in self.handles if first <= fd <= last]:
            self.close(fd)

    def close_all(self) -> None:
        """The table's last user is gone: every descriptor is closed."""
        for fd in list(self.handles):
            self.close(fd)

    def keep_only(self, fds: set[int]) -> None:
        """After execve: close what close-on-exec closed (the descriptors no longer open)."""
        for fd in [fd for fd in self.handles if fd not in fds]:
            self.close(fd)


def open_fds(pid: int) -> set[int]:
    """The descriptor numbers open in process ``pid``."""
    try:
        return {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return set()


def resolve(pid: int, fd: int, handle: Handle, files: FileTable) -> tuple[File | None, bool]:
    """The model File for descriptor ``fd`` of ``pid``, made or checked against the real file.

    Returns the File (None when the descriptor is not open) and whether it is
    a file the model can map: a regular file not on hugetlbfs (devices,
    sockets and anonymous-inode files such as io_uring rings are not).  A
    handle whose file is not the one the descriptor now refers to (a close
    the tracer missed) gets a new File.
    """
    try:
        st = os.stat(f"/proc/{pid}/fd/{fd}")
        path = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None, True
    dev = dev_text(st.st_dev)
    modelled = stat.S_ISREG(st.st_mode) and files.settings.mounts.get(dev) != "hugetlbfs"
    inode = files.inode(dev, st.st_ino, path, st.st_size, st.st_mode)
    if handle.file is not None and handle.file.inode is inode:
        return handle.file, modelled
    readable, writable = True, True
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as f:
            for line in f:
                if line.startswith("flags:"):
                    mode = int(line.split()[1], 8) & os.O_ACCMODE
                    readable = mode in (os.O_RDONLY, os.O_RDWR)
                    writable = mode in (os.O_WRONLY, os.O_RDWR)
                    break
    except OSError:
        pass
    handle.file = File(inode, readable=readable, writable=writable)
    return handle.file, modelled
