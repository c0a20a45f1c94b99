"""Which open file (struct file) a descriptor stands for, and the descriptor tables.

Merging cares about struct file identity: two mappings of one inode through
two open() calls never merge, through one open (or a dup of it) they may.
:class:`OpenFiles` answers that at each mmap with kcmp(KCMP_FILE) against a
duplicate the tracer keeps of every description the model maps.  The
descriptor tables (:class:`FdTable`) still follow userfaultfds, whose last
close releases their registrations, and, on kernels without pidfd_getfd,
every descriptor: a :class:`Handle` stands for one open file description,
shared exactly when the kernel's descriptors share a struct file (dup, fork,
CLONE_FILES).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import stat
from collections.abc import Callable, Iterable

from vmasim.core.vma import File, Inode, UffdCtx
from vmasim.procimport import FileTable, dev_text
from vmasim.syscalls.userfaultfd import userfaultfd_release_all
from vmasim.trace.ptrace import kcmp_files, pidfd_getfd, pidfd_getfd_via


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


def reap_userfaultfds(tables: Iterable[tuple[FdTable, int]]) -> None:
    """Close, in each ``(table, tid of a task using it)``, the userfaultfd descriptors no longer open as one.

    Used where close is not stopped on: the last descriptor of a userfaultfd
    releases its registrations, and the model releases them here, before the
    next memory call or comparison, which is as early as the difference can
    show.
    """
    for fdt, tid in tables:
        for fd, handle in list(fdt.handles.items()):
            if handle.mm is None:
                continue
            try:
                still = os.readlink(f"/proc/{tid}/fd/{fd}") == "anon_inode:[userfaultfd]"
            except FileNotFoundError:
                still = False
            except OSError:
                continue
            if not still:
                fdt.close(fd)


def _lookup(pid: int, fd: int, files: FileTable) -> tuple[Inode, bool] | None:
    """The model Inode of descriptor ``fd`` of ``pid`` and whether the model can map it (None: not open).

    Mappable means a regular file not on hugetlbfs: devices, sockets and
    anonymous-inode files such as io_uring rings are not.
    """
    try:
        st = os.stat(f"/proc/{pid}/fd/{fd}")
        dev = dev_text(st.st_dev)
        # The path only names a file seen for the first time.
        path = "" if (dev, st.st_ino) in files.inodes else os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    return files.inode(dev, st.st_ino, path, st.st_size, st.st_mode), _mappable(st, dev, files)


def _mappable(st: os.stat_result, dev: str, files: FileTable) -> bool:
    """Whether the model maps the file ``st`` describes: a regular file not on hugetlbfs."""
    return stat.S_ISREG(st.st_mode) and files.settings.mounts.get(dev) != "hugetlbfs"


def _file(inode: Inode, accmode: int) -> File:
    """A model File for an open file description of ``inode`` opened with ``accmode`` (O_ACCMODE bits)."""
    return File(inode, readable=accmode in (os.O_RDONLY, os.O_RDWR), writable=accmode in (os.O_WRONLY, os.O_RDWR))


def _new_file(pid: int, fd: int, inode: Inode) -> File:
    """A model File for a newly seen open file description, with its access mode from fdinfo."""
    mode = os.O_RDWR  # unknown: allow both
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as f:
            for line in f:
                if line.startswith("flags:"):
                    mode = int(line.split()[1], 8) & os.O_ACCMODE
                    break
    except OSError:
        pass
    return _file(inode, mode)


def resolve(pid: int, fd: int, handle: Handle, files: FileTable) -> tuple[File | None, bool]:
    """The model File for descriptor ``fd`` of ``pid`` through the descriptor table's ``handle``.

    Used where closes are stopped on (no pidfd_getfd): returns the File (None
    when the descriptor is not open) and whether the model can map it.  A
    handle whose file is not the one the descriptor now refers to (a close
    the tracer missed) gets a new File.
    """
    found = _lookup(pid, fd, files)
    if found is None:
        return None, True
    inode, modelled = found
    if handle.file is None or handle.file.inode is not inode:
        handle.file = _new_file(pid, fd, inode)
    return handle.file, modelled


class OpenFiles:
    """The open file descriptions the traced processes mapped, told apart as the kernel does.

    Whether two mappings of one inode may merge depends on their struct file
    (two open() calls never merge; dup, fork and one descriptor reused do).
    Instead of following every descriptor through open and close, the tracer
    keeps a duplicate of each mapped description (pidfd_getfd) and asks
    kcmp(KCMP_FILE) at each mmap whether the descriptor is one of them: the
    same answer, without stopping the program at every close.

    A duplicate is kept only while some model VMA maps its File (a File no
    VMA uses cannot decide a merge); :meth:`sweep` closes the others.
    """

    def __init__(self, files: FileTable) -> None:
        self.files = files
        self.me = os.getpid()
        self.held: dict[Inode, list[tuple[int, File]]] = {}
        # The duplicate each (process, descriptor) was last found to be: tried first, it spares the path
        # lookup in /proc when a program maps one descriptor several times (ld.so maps a library in four).
        self.last: dict[tuple[int, int], tuple[int, File]] = {}
        self.count = 0
        self.sweep_at = 64
        self.pidfds: dict[int, int] = {}  # one pidfd per traced process that mapped a file

    @staticmethod
    @functools.cache
    def available() -> bool:
        """Whether this kernel lets the tracer duplicate another process's descriptor (pidfd_getfd, 5.6)
        and compare open files (kcmp, which needs CONFIG_KCMP); probed once per process."""
        rd, wr = os.pipe()
        try:
            dup = pidfd_getfd(os.getpid(), rd)
        except OSError:
            return False
        else:
            same = kcmp_files(os.getpid(), rd, os.getpid(), dup) and not kcmp_files(os.getpid(), wr, os.getpid(), dup)
            os.close(dup)
            return same
        finally:
            os.close(rd)
            os.close(wr)

    def resolve(self, pid: int, fd: int, live: Callable[[], tuple[set[int], int]]) -> tuple[File | None, bool]:
        """The model File for descriptor ``fd`` of ``pid`` and whether the model can map it.

        ``live`` gives, for a sweep, the ids of the Files the model still maps
        and the number of VMAs it looked at to find them.
        """
        last = self.last.get((pid, fd))
        if last is not None and kcmp_files(self.me, last[0], pid, fd):
            st = os.fstat(last[0])
            self.files.inode(dev_text(st.st_dev), st.st_ino, "", st.st_size, st.st_mode)  # its size may have grown
            return last[1], True
        try:
            ref = self._duplicate(pid, fd, live)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                return None, True
            # Not duplicated (out of descriptors): a later mapping of this description will not merge with it.
            found = _lookup(pid, fd, self.files)
            return (None, True) if found is None else (_new_file(pid, fd, found[0]), found[1])
        # The duplicate answers what /proc would: no path lookup, except to name a file seen for the first time.
        st = os.fstat(ref)
        dev = dev_text(st.st_dev)
        path = ""
        if (dev, st.st_ino) not in self.files.inodes:
            with contextlib.suppress(OSError):
                path = os.readlink(f"/proc/{pid}/fd/{fd}")
        inode = self.files.inode(dev, st.st_ino, path, st.st_size, st.st_mode)
        mode = fcntl.fcntl(ref, fcntl.F_GETFL) & os.O_ACCMODE
        modelled = _mappable(st, dev, self.files)
        for held, file in self.held.get(inode, ()) if modelled else ():
            if kcmp_files(self.me, held, self.me, ref):
                os.close(ref)
                self.last[(pid, fd)] = (held, file)
                return file, True
        file = _file(inode, mode)
        if not modelled:
            os.close(ref)  # not mapped by the model: identity never matters
            return file, False
        self.held.setdefault(inode, []).append((ref, file))
        self.last[(pid, fd)] = (ref, file)
        self.count += 1
        return file, True

    def _duplicate(self, pid: int, fd: int, live: Callable[[], tuple[set[int], int]]) -> int:
        """pidfd_getfd through a pidfd kept per process; on EMFILE, a sweep and one more try."""
        if self.count >= self.sweep_at:
            self.sweep(*live())
        for attempt in range(2):
            pidfd = self.pidfds.get(pid)
            if pidfd is None:
                pidfd = self.pidfds[pid] = os.pidfd_open(pid)
            try:
                return pidfd_getfd_via(pidfd, fd)
            except OSError as exc:
                if exc.errno == errno.EMFILE and not attempt:
                    self.sweep(*live())  # out of descriptors: close what can go, and try once more
                    continue
                if exc.errno == errno.ESRCH and not attempt:
                    self.forget(pid)  # a pidfd of an earlier process of that number
                    continue
                raise
        raise OSError(errno.EMFILE, "no descriptor left for a duplicate")

    def forget(self, pid: int) -> None:
        """Process ``pid`` has ended: close the pidfd kept for it."""
        pidfd = self.pidfds.pop(pid, None)
        if pidfd is not None:
            os.close(pidfd)

    def sweep(self, live: set[int], walked: int = 0) -> None:
        """Close the duplicates of descriptions whose File no model VMA maps any more.

        The next sweep comes after as many new duplicates again as survive
        this one, and at least ``walked / 32``: finding the live Files walked
        that many VMAs, so a big address space pays for it about once per 32
        of them, not at every 64th new file.
        """
        for inode in list(self.held):
            keep = []
            for ref, file in self.held[inode]:
                if id(file) in live:
                    keep.append((ref, file))
                else:
                    os.close(ref)
                    self.count -= 1
            if keep:
                self.held[inode] = keep
            else:
                del self.held[inode]
        kept = {ref for pairs in self.held.values() for ref, _file in pairs}
        self.last = {key: pair for key, pair in self.last.items() if pair[0] in kept}
        self.sweep_at = max(64, 2 * self.count, self.count + walked // 32)

    def close(self) -> None:
        """Close every duplicate and pidfd (the trace is over)."""
        self.sweep(set())
        for pid in list(self.pidfds):
            self.forget(pid)

