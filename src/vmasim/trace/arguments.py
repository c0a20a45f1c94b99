"""What a stopped call's pointer and descriptor arguments stand for, read while the task waits at the entry.

The mirror applies calls to the model, which takes values, not pointers:
this module reads node masks, iovecs and userfaultfd structures from the
tracee's memory, finds the open file behind an mmap's descriptor, and the
SysV segment behind an shmat, and leaves them in ``Call.data``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from vmasim import constants as C
from vmasim.core.vma import Inode
from vmasim.procimport import FileTable
from vmasim.syscalls.shm import SHM_KIND
from vmasim.trace import ptrace as P
from vmasim.trace.fds import FdTable, OpenFiles, resolve
from vmasim.trace.syscalls import UFFDIO_API, UFFDIO_REGISTER, UFFDIO_UNREGISTER, Call


class ArgumentReader:
    """Reads the arguments of calls stopped at their entry (one per trace: it remembers SysV segments)."""

    def __init__(self, files: FileTable, open_files: OpenFiles | None,
                 live_files: Callable[[], tuple[set[int], int]]) -> None:
        self.files = files
        self.open_files = open_files
        self.live_files = live_files
        self.segments: dict[int, Inode] = {}  # SysV segments attached so far, by id

    def read(self, tid: int, tgid: int, fdt: FdTable, call: Call) -> None:
        """Fill ``call.data`` for ``call``, made by ``tid`` of process ``tgid`` with descriptor table ``fdt``.

        Memory the tracee cannot show (a bad pointer) marks the call
        ``unreadable``: the kernel fails it, and the mirror imports its effect.
        """
        a = call.args
        name = call.name
        try:
            if name == "mmap" and not a[3] & C.MAP_ANONYMOUS:
                fd = call.sarg(4)
                if fd < 0:
                    file, modelled = None, True
                elif self.open_files is not None:
                    file, modelled = self.open_files.resolve(tgid, fd, self.live_files)
                else:
                    file, modelled = resolve(tgid, fd, fdt.get(fd), self.files)
                call.data["file"] = file
                call.data["device"] = not modelled
            elif name == "mbind":
                call.data["nodes"] = node_mask(tid, a[3], a[4])
            elif name == "set_mempolicy":
                call.data["nodes"] = node_mask(tid, a[1], a[2])
            elif name == "process_madvise":
                call.data.update(iovecs(tid, tgid, call))
            elif name == "shmat":
                call.data.update(self.segment(call.sarg(0)))
            elif name == "ioctl":
                call.data["handle"] = fdt.handles.get(call.sarg(0))
                req = a[1] & 0xFFFFFFFF
                if req == UFFDIO_API:
                    raw = P.read_memory(tid, a[2], 16)
                    call.data["features"] = int.from_bytes(raw[8:16], "little")
                elif req in (UFFDIO_REGISTER, UFFDIO_UNREGISTER):
                    raw = P.read_memory(tid, a[2], 24 if req == UFFDIO_REGISTER else 16)
                    call.data["start"] = int.from_bytes(raw[0:8], "little")
                    call.data["len"] = int.from_bytes(raw[8:16], "little")
                    if req == UFFDIO_REGISTER:
                        call.data["mode"] = int.from_bytes(raw[16:24], "little")
        except OSError:
            call.data["unreadable"] = True

    def segment(self, shmid: int) -> dict[str, object]:
        """What /proc/sysvipc/shm says of segment ``shmid``: its size, and the model inode of its shmem file
        (the same one an import of the attachment from /proc gives: same device and inode number)."""
        for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1]) == shmid:
                key, size = int(f[0]) & 0xFFFFFFFF, int(f[3])
                # Not the file table's: segment ids share the shmem mount's inode numbers with other files.
                inode = self.segments.get(shmid)
                if inode is None or inode.size != size:
                    inode = self.segments[shmid] = Inode(SHM_KIND, f"/SYSV{key:08x} (deleted)", size, fs="shmem")
                return {"shm_size": size, "shm_key": key, "shm_inode": inode}
        return {}


def node_mask(tid: int, ptr: int, maxnode: int) -> int:
    """The node mask of mbind or set_mempolicy: ``maxnode - 1`` bits (at most 64 read) at ``ptr``."""
    if not ptr or maxnode <= 1:
        return 0
    nbits = min(maxnode - 1, 64)
    raw = P.read_memory(tid, ptr, (nbits + 7) // 8)
    return int.from_bytes(raw, "little") & ((1 << nbits) - 1)


def iovecs(tid: int, tgid: int, call: Call) -> dict[str, object]:
    """process_madvise's ranges and whether its pidfd names the caller's own process."""
    a = call.args
    count = a[2]
    if count > 1024:
        return {"ranges": [(0, 0)] * (count if count < 4096 else 1025), "self": True}
    raw = P.read_memory(tid, a[1], 16 * count) if count else b""
    ranges = [(int.from_bytes(raw[k:k + 8], "little"), int.from_bytes(raw[k + 8:k + 16], "little"))
              for k in range(0, len(raw), 16)]
    target = -1
    try:
        with open(f"/proc/{tgid}/fdinfo/{call.sarg(0)}", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pid:"):
                    target = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return {"ranges": ranges, "self": target == tgid}


def exec_target_exists(tid: int, call: Call) -> bool:
    """Whether execve's file exists (a PATH search fails on most directories; those need no last look)."""
    ptr = call.args[0] if call.name == "execve" else call.args[1]
    try:
        raw = P.read_memory(tid, ptr, 256)
    except OSError:
        try:
            raw = P.read_memory(tid, ptr, 1 + (-ptr - 1) % 4096)  # up to the end of its page
        except OSError:
            return True
    path = raw.split(b"\0", 1)[0].decode(errors="surrogateescape")
    if not path or call.name == "execveat":
        return True
    if not path.startswith("/"):
        path = f"/proc/{tid}/cwd/{path}"
    return os.path.exists(path)
