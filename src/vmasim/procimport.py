"""Building a model address space from a real process's /proc/PID/maps and smaps (live or saved).

What /proc shows is taken as is: every VMA's range, perms, file offset,
device and inode, and (from smaps) its VmFlags.  What it does not show is
reconstructed, and these are the approximations of an import:

- *anon_vma*: a VMA gets one when it holds anonymous pages (from
  /proc/PID/pagemap for a live process, or the smaps ``Anonymous:`` line of a
  saved one; a saved plain maps file has neither, so every private writable
  VMA is assumed written).  Neighbours that could have shared one
  (mm/vma.c's anon_vma_compatible(): the same file, contiguous offsets, flags
  equal but for the access bits) and both hold pages are given the same one,
  which is what a split of one written VMA leaves.  Fork history is
  invisible: nothing is marked as having come through fork.
- *vm_pgoff of anonymous memory* is invisible; it is taken as ``start >> 12``,
  which holds unless the VMA was moved by mremap.  The stack's is what exec
  leaves (its top page at the top of the address space).
- *struct file identity*: every mapping of one inode shares one open file,
  which is what the dynamic loader and the kernel's ELF loader do.
- *mm state*: start_brk comes from /proc/PID/stat (a saved file: the
  ``[heap]`` start); the break from the ``[heap]`` end; mmap_base is the end
  of the highest VMA below the stack, which right after execve is the end of
  the program interpreter (or of the vDSO without one) — exact then, and an
  estimate later in a process's life.  Mempolicies and userfaultfd contexts
  are not read.

The machine is a :class:`~vmasim.core.target.Target` the caller gives (the
host's probed profile, for a live process); the process's own facts (stack
rlimit, mounts) are read in one place, :func:`process_settings`, and the
mapping from a real file to the model's idea of a file in one other,
:func:`inode_kind`.
"""

from __future__ import annotations

import functools
import os
import re
import resource
import stat as stat_mod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vmasim import constants as C
from vmasim.core.fault import anon_vma_compatible
from vmasim.core.flags import (
    MNEMONICS,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_PKEY_SHIFT,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
)
from vmasim.core.mm import MmStruct
from vmasim.core.target import Target
from vmasim.core.vma import AnonVma, File, IdSource, Inode, Vma

#: The highest user address the stack starts from on x86_64 (4-level paging): STACK_TOP_MAX.
STACK_TOP_MAX = C.TASK_SIZE
#: File systems whose files use thp_get_unmapped_area() (PMD-aligned placement of large mappings).
_KNOWN_FLAGS = {name: bit for bit, name in MNEMONICS}
_HEADER = re.compile(
    r"^([0-9a-f]+)-([0-9a-f]+) ([-r][-w][-x][ps]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$"
)
# The lines an import needs, found in one pass (most smaps lines are counters it does not use).
_WANTED = re.compile(
    r"^(?:([0-9a-f]+)-([0-9a-f]+) ([-r][-w][-x][ps]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)[ \t]*(.*)"
    r"|VmFlags:(.*)|Anonymous:\s*(\d+) kB|ProtectionKey:\s*(\d+))$",
    re.M,
)


class ProcImportError(ValueError):
    """The text is not /proc/PID/maps or smaps, or the process cannot be read."""


@dataclass(slots=True)
class ProcVma:
    """One VMA as /proc shows it; ``flags`` (VmFlags) and ``anon_kb`` only from smaps."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str
    flags: list[str] | None = None
    anon_kb: int | None = None
    pkey: int = 0

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.end - self.start

    def key(self) -> tuple[int, int, str, int, str, int, tuple[str, ...]]:
        """What a comparison looks at: range, perms, offset, file identity and VmFlags."""
        return (self.start, self.end, self.perms, self.offset if self.inode else 0, self.dev, self.inode,
                tuple(self.flags or ()))

    def line(self) -> str:
        """The maps line, with the VmFlags appended in brackets when known."""
        head = f"{self.start:08x}-{self.end:08x} {self.perms} {self.offset:08x} {self.dev} {self.inode}"
        if self.path:
            head = head.ljust(73) + self.path
        if self.flags is not None:
            head += "  [" + " ".join(self.flags) + "]"
        return head


def parse(text: str) -> list[ProcVma]:
    """The VMAs of maps or smaps text, in order; raises :class:`ProcImportError` on anything else."""
    first = text.lstrip().partition("\n")[0]
    if first and not _HEADER.match(first):
        raise ProcImportError(f"not a /proc/PID/maps or smaps line: {first[:60]!r}")
    if "VmFlags:" in text:
        fast = _parse_smaps(text)
        if fast is not None:
            return fast
    vmas: list[ProcVma] = []
    for m in _WANTED.finditer(text):
        start, end, perms, offset, dev, ino, path, flags, anon, pkey = m.groups()
        if start is not None:
            vmas.append(ProcVma(int(start, 16), int(end, 16), perms, int(offset, 16), dev, int(ino), path.strip()))
        elif not vmas:
            continue
        elif flags is not None:
            vmas[-1].flags = flags.split()
        elif anon is not None:
            vmas[-1].anon_kb = int(anon)
        else:
            vmas[-1].pkey = int(pkey)
    return vmas


def _parse_smaps(text: str) -> list[ProcVma] | None:
    """smaps text cut at its VmFlags lines, the last line of every entry (about twice as fast as the line
    by line regex); None when the text does not have that shape, for :func:`parse` to read it line by line."""
    vmas: list[ProcVma] = []
    prev: ProcVma | None = None
    for chunk in text.split("VmFlags:"):
        if prev is not None:
            flags, _, chunk = chunk.partition("\n")
            prev.flags = flags.split()
        if not chunk.strip():
            continue
        head, _, body = chunk.lstrip("\n").partition("\n")
        m = _HEADER.match(head)
        if m is None or ("\n" + body).count("\nSize:") != 1:  # not one entry: an entry without VmFlags
            return None
        start, end, perms, offset, dev, ino, path = m.groups()
        prev = ProcVma(int(start, 16), int(end, 16), perms, int(offset, 16), dev, int(ino), path.strip())
        anon = body.find("Anonymous:")
        if anon >= 0:
            prev.anon_kb = int(body[anon + 10 : body.index("kB", anon)])
        pkey = body.find("ProtectionKey:")
        if pkey >= 0:
            prev.pkey = int(body[pkey + 14 : body.index("\n", pkey)])
        vmas.append(prev)
    if vmas and vmas[-1].flags is None:
        return None
    return vmas


def read_smaps(pid: int) -> list[ProcVma]:
    """The VMAs of a live process from /proc/PID/smaps (without the [vsyscall] gate area)."""
    return smaps_vmas(read_smaps_text(pid))


def read_smaps_text(pid: int) -> str:
    """/proc/PID/smaps as text, to parse later with :func:`smaps_vmas` (a tracer reads it while the process
    is stopped, and parses it once the process runs on)."""
    fd = os.open(f"/proc/{pid}/smaps", os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 18):  # few large reads: the kernel makes the text as it is read
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def smaps_vmas(text: str) -> list[ProcVma]:
    """The VMAs of a live process's smaps ``text`` (without the [vsyscall] gate area)."""
    return [v for v in parse(text) if v.start < C.TASK_SIZE]


# --- host facts ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostSettings:
    """What the model needs to know about the machine a process runs on: its target, and per process facts."""

    target: Target
    stack_rlimit: int
    mounts: dict[str, str] = field(default_factory=dict)  # "major:minor" -> file system type


def _read_int(path: str, default: int) -> int:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _stack_rlimit(pid: int | None) -> int:
    try:
        limit = resource.prlimit(pid or 0, resource.RLIMIT_STACK)[0]  # one call, no text to parse
        return C.TASK_SIZE if limit == resource.RLIM_INFINITY else limit
    except (OSError, ValueError):
        pass
    try:
        text = Path(f"/proc/{pid if pid else 'self'}/limits").read_text()
    except OSError:
        return 8 << 20
    for line in text.splitlines():
        if line.startswith("Max stack size"):
            soft = line.split()[3]
            return C.TASK_SIZE if soft == "unlimited" else int(soft)
    return 8 << 20


def _mounts(pid: int | None) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = Path(f"/proc/{pid if pid else 'self'}/mountinfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if "-" in parts:
            dash = parts.index("-")
            major, minor = parts[2].split(":")
            out[f"{int(major):02x}:{int(minor):02x}"] = parts[dash + 1]
    return out


def process_settings(target: Target, pid: int | None = None, mounts: dict[str, str] | None = None) -> HostSettings:
    """The settings of process ``pid`` (or this process) on the machine ``target`` describes: its own stack
    rlimit and mounts are read from /proc (``mounts``, when given, are the mounts already known)."""
    return HostSettings(target=target, stack_rlimit=_stack_rlimit(pid),
                        mounts=_mounts(pid) if mounts is None else mounts)


@functools.lru_cache(maxsize=256)
def dev_text(st_dev: int) -> str:
    """A device number as /proc/PID/maps prints it: ``fe:00``."""
    return f"{os.major(st_dev):02x}:{os.minor(st_dev):02x}"


def inode_kind(path: str, dev: str, mode: int | None, settings: HostSettings) -> tuple[str, str]:
    """The model's kind of file and its file system, for a real one (the one place this mapping is made).

    ``path`` as /proc shows it, ``dev`` as ``major:minor``, ``mode`` the
    st_mode when known.  Kinds: "special" (no inode: vDSO pages), "shmem"
    (shared anonymous or SysV memory), "memfd" (a memfd), "file" (any other
    file, on its file system: tmpfs files are shmem, ext4 and xfs ones are
    placed huge-page aligned, anything else generically).
    """
    if path.startswith("[") and path.endswith("]"):
        return "special", "special"
    if path.startswith("/SYSV") or (path.startswith("/dev/zero") and path.endswith("(deleted)")):
        return "shmem", "shmem"
    if path.startswith("/memfd:"):
        return "memfd", "shmem"
    fstype = settings.mounts.get(dev, "")
    if mode is not None and not stat_mod.S_ISREG(mode):
        return "file", "device"
    if fstype in ("tmpfs", "shmem", "ramfs") or (not fstype and dev.startswith("00:")):
        return "file", "tmpfs"
    return "file", fstype or "unknown"


# --- page state -----------------------------------------------------------------------------------------

_PM_PRESENT = 1 << 63
_PM_SWAP = 1 << 62
_PM_FILE = 1 << 61
_PFN_MASK = (1 << 55) - 1
# High byte of a pagemap entry -> 1 when it may be an anonymous page: present or swapped, not file/shmem.
_MAYBE_ANON = bytes(1 if (b & 0xC0) and not b & 0x20 else 0 for b in range(256))
_KPF_ANON = 1 << 12
_KPF_ZERO_PAGE = 1 << 24


class PageMap:
    """Which pages of a process are anonymous, from /proc/PID/pagemap (and /proc/kpageflags as root).

    A private mapping's page is anonymous when it is present or swapped and
    not a file or shmem page; the shared zero page (what a read of untouched
    anonymous memory maps) looks the same, so each candidate's frame is
    checked in /proc/kpageflags where it can be read.
    """

    def __init__(self, pid: int) -> None:
        self.fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._kpf: int | None = os.open("/proc/kpageflags", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._kpf = None

    def close(self) -> None:
        """Close the descriptors."""
        os.close(self.fd)
        if self._kpf is not None:
            os.close(self._kpf)
            self._kpf = None

    def _is_anon(self, entry: int) -> bool:
        if entry & _PM_SWAP:
            return True
        pfn = entry & _PFN_MASK
        if self._kpf is None or not pfn:
            return True
        raw = os.pread(self._kpf, 8, pfn * 8)
        if len(raw) != 8:
            return True
        kflags = int.from_bytes(raw, "little")
        return bool(kflags & _KPF_ANON) and not kflags & _KPF_ZERO_PAGE

    def first_anon(self, start: int, end: int) -> int | None:
        """The address of the first anonymous page in ``[start, end)``, or None."""
        first = start >> C.PAGE_SHIFT
        count = (end - start) >> C.PAGE_SHIFT
        chunk = 1 << 16
        for base in range(0, count, chunk):
            n = min(chunk, count - base)
            data = os.pread(self.fd, n * 8, (first + base) * 8)
            marks = data[7::8].translate(_MAYBE_ANON)
            idx = marks.find(1)
            while idx >= 0:
                entry = int.from_bytes(data[idx * 8: idx * 8 + 8], "little")
                if self._is_anon(entry):
                    return start + ((base + idx) << C.PAGE_SHIFT)
                idx = marks.find(1, idx + 1)
        return None


# --- building the address space ---------------------------------------------------------------------------


class FileTable:
    """Model files for real ones: one Inode per (device, inode), created on first sight.

    Shared by every address space built from one machine, so that two
    processes mapping a file map the same model Inode.
    """

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        self.inodes: dict[tuple[str, int], Inode] = {}
        self.ids: dict[int, tuple[str, int]] = {}  # id(Inode) -> (dev, ino)
        # The mounts seen so far (device -> file system type), and the devices found in none of them.
        self._mounts: dict[str, str] = dict(settings.mounts)
        self._unmounted: set[str] = set()

    def inode(self, dev: str, ino: int, path: str, size: int = 0, mode: int | None = None) -> Inode:
        """The model Inode of the real file ``(dev, ino)``, its size raised to ``size``."""
        key = (dev, ino)
        inode = self.inodes.get(key)
        if inode is None:
            # Labels as the model renders them: a memfd's name, a file's path without the leading "/".
            label = path.removeprefix("/memfd:").removesuffix(" (deleted)").removeprefix("/") or f"{dev}:{ino}"
            kind, fs = inode_kind(path, dev, mode, self.settings)
            inode = Inode(kind, label, size, fs=fs)
            self.inodes[key] = inode
            self.ids[id(inode)] = key
        elif size > inode.size:
            inode.size = size
        return inode

    def mounts_of(self, pid: int, devices: set[str]) -> dict[str, str]:
        """Device -> file system type, for every device this table has seen, ``devices`` (the ones process
        ``pid`` maps) included.

        A device number names one mounted file system whatever the mount
        namespace, so mountinfo is read again only when one of ``devices`` is
        new to this table: reading it was a third of the cost of importing a
        process just after execve, and a traced command execs many.  A device
        in no mount (an anonymous inode's) is remembered as such.  What this
        misses: a file system unmounted during the trace whose device number
        a new one of another type then reuses.
        """
        if devices <= self._mounts.keys() | self._unmounted:
            return self._mounts
        self._mounts = {**self._mounts, **_mounts(pid)}
        self._unmounted |= devices - self._mounts.keys()
        return self._mounts

    def identity(self, inode: Inode) -> tuple[str, int] | None:
        """The (device, inode) of a model Inode made by this table, or None."""
        return self.ids.get(id(inode))


def vm_flags_of(v: ProcVma) -> tuple[int, list[str]]:
    """vm_flags from the VmFlags (or, from plain maps, the perms) and the mnemonics not modelled."""
    unknown: list[str] = []
    if v.flags is None:
        bits = (VM_READ if v.perms[0] == "r" else 0) | (VM_WRITE if v.perms[1] == "w" else 0)
        bits |= (VM_EXEC if v.perms[2] == "x" else 0) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        if v.perms[3] == "s":
            bits |= VM_SHARED | VM_MAYSHARE
        return bits, unknown
    bits = 0
    for name in v.flags:
        bit = _KNOWN_FLAGS.get(name)
        if bit is None:
            unknown.append(name)
        else:
            bits |= bit
    return bits | (v.pkey << VM_PKEY_SHIFT), unknown


def _is_special(v: ProcVma) -> bool:
    return v.inode == 0 and v.path.startswith("[") and v.path not in ("[heap]", "[stack]") and not (
        v.path.startswith(("[anon:", "[anon_shmem:")))


def model_vma(v: ProcVma, files: FileTable, file_cache: dict[tuple[str, int], File], size: int = 0,
              mode: int | None = None) -> Vma:
    """The model VMA for one /proc VMA (without anon_vma), files shared through ``file_cache``."""
    vm_flags, _unknown = vm_flags_of(v)
    if _is_special(v):
        return Vma(v.start, v.end, 0, vm_flags, file=File(Inode("special", v.path)), has_close=True)
    if v.inode == 0:
        # exec leaves the stack's top page at pgoff STACK_TOP_MAX >> PAGE_SHIFT - 1; growth lowers it.
        pgoff = ((STACK_TOP_MAX - v.size) if vm_flags & VM_GROWSDOWN else v.start) >> C.PAGE_SHIFT
        return Vma(v.start, v.end, pgoff, vm_flags)
    key = (v.dev, v.inode)
    file = file_cache.get(key)
    if file is None:
        inode = files.inode(v.dev, v.inode, v.path, max(size, v.offset + v.size), mode)
        file = File(inode, writable=bool(vm_flags & VM_MAYWRITE) or not vm_flags & VM_MAYSHARE)
        file_cache[key] = file
    elif v.offset + v.size > file.inode.size and size == 0:
        file.inode.size = v.offset + v.size
    has_close = v.path.startswith("/SYSV")  # shm_vm_ops has a close hook
    return Vma(v.start, v.end, v.offset >> C.PAGE_SHIFT, vm_flags, file=file, has_close=has_close)


def assign_anon_vmas(vmas: list[Vma], written: Iterable[bool], ids: IdSource) -> None:
    """Give each written VMA an anon_vma, shared with a written anon_vma-compatible left neighbour."""
    prev: Vma | None = None
    for vma, was_written in zip(vmas, written, strict=True):
        if was_written and not vma.vm_flags & VM_SHARED:
            if prev is not None and prev.anon_vma is not None and anon_vma_compatible(prev, vma):
                vma.anon_vma = prev.anon_vma
            else:
                vma.anon_vma = AnonVma(ids)
        prev = vma


def infer_mmap_base(vmas: list[ProcVma]) -> int:
    """mmap_base as exec leaves it: the end of the highest VMA below the stack (the interpreter or vDSO)."""
    stack = next((v for v in vmas if v.path == "[stack]"), None)
    limit = stack.start if stack is not None else C.TASK_SIZE
    ends = [v.end for v in vmas if v.end <= limit and v.path != "[stack]"]
    return max(ends) if ends else limit - (128 << 20)


def _start_brk(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # Field 47 of stat (start_brk) is the 45th after the command name.
    return int(fields[44]) if len(fields) > 44 else None


def _live_file_stat(pid: int, v: ProcVma) -> os.stat_result | None:
    for path in (f"/proc/{pid}/map_files/{v.start:x}-{v.end:x}", v.path):
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_ino == v.inode:
            return st
    return None


def build(
    vmas: list[ProcVma],
    *,
    settings: HostSettings,
    files: FileTable | None = None,
    written: list[bool] | None = None,
    start_brk: int | None = None,
    pid: int | None = None,
) -> MmStruct:
    """An address space holding ``vmas`` (see the module notes for what is reconstructed how).

    ``written`` says, per VMA, whether it holds anonymous pages; by default
    the smaps ``Anonymous:`` line decides, or with plain maps "private and
    writable".
    """
    files = files or FileTable(settings)
    vmas = [v for v in vmas if v.start < C.TASK_SIZE]
    heap = next((v for v in vmas if v.path == "[heap]"), None)
    if start_brk is None:
        start_brk = heap.start if heap is not None else (max((v.end for v in vmas if v.end < 1 << 44), default=0))
    brk = max(start_brk, heap.end) if heap is not None and heap.start >= start_brk else start_brk
    mm = MmStruct(settings.target, mmap_base=infer_mmap_base(vmas), mmap_limit=settings.target.task_size,
                  stack_rlimit=settings.stack_rlimit)
    mm.start_brk = start_brk
    mm.brk = brk
    cache: dict[tuple[str, int], File] = {}
    stats: dict[tuple[str, int], tuple[int, int | None]] = {}
    made: list[Vma] = []
    for v in vmas:
        size, mode = 0, None
        if pid is not None and v.inode:
            key = (v.dev, v.inode)
            if key not in stats:
                st = _live_file_stat(pid, v)
                stats[key] = (st.st_size, st.st_mode) if st is not None else (0, None)
            size, mode = stats[key]
        made.append(model_vma(v, files, cache, size, mode))
    if written is None:
        written = [
            (v.anon_kb > 0) if v.anon_kb is not None else (v.perms[1] == "w" and v.perms[3] == "p") for v in vmas
        ]
    assign_anon_vmas(made, written, mm.ids)
    for vma in made:
        mm.link(vma)
    return mm


def written_from_pagemap(pid: int, vmas: list[ProcVma]) -> list[bool]:
    """Per VMA: whether it holds an anonymous page, from the live process's pagemap."""
    pm = PageMap(pid)
    try:
        return [v.perms[3] == "p" and pm.first_anon(v.start, v.end) is not None for v in vmas]
    finally:
        pm.close()


def from_pid(pid: int, files: FileTable) -> MmStruct:
    """The address space of live process ``pid`` (smaps, pagemap, stat, limits) on ``files``' machine."""
    try:
        vmas = read_smaps(pid)
        settings = process_settings(files.settings.target, pid, files.mounts_of(pid, {v.dev for v in vmas if v.inode}))
        try:
            written: list[bool] | None = written_from_pagemap(pid, vmas)
        except OSError:
            written = None  # no pagemap access: fall back to smaps Anonymous
    except OSError as exc:
        raise ProcImportError(f"cannot read process {pid}: {exc.strerror}") from None
    return build(vmas, settings=settings, files=files, written=written, start_brk=_start_brk(pid), pid=pid)


def from_text(text: str, files: FileTable) -> MmStruct:
    """The address space described by saved maps or smaps text."""
    vmas = parse(text)
    if not vmas:
        raise ProcImportError("no VMAs in the text")
    return build(vmas, settings=files.settings, files=files)


def from_source(source: str, files: FileTable) -> MmStruct:
    """``vmasim import``'s argument: a PID (all digits) or a file holding maps or smaps text."""
    if source.isdigit():
        return from_pid(int(source), files)
    try:
        text = Path(source).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ProcImportError(f"cannot read {source}: {exc.strerror}") from None
    return from_text(text, files)
