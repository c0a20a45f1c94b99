"""Caps on what one program may take from the host: memory and tasks.

A program is stopped, never answered differently, when it goes over a cap:

* **Memory.**  Each executor gets its own memory cgroup, made under the cgroup
  vmasim runs in (so any limit above still applies), which it joins when it
  starts, so that the programs it forks are born in it.  Programs run one at
  a time, so the cap is per program (the executor's own few MiB count too);
  a program's processes make themselves the OOM killer's first choice
  (``oom_score_adj`` 1000), so that it never picks the executor itself.
  (Moving each program instead takes a system-wide lock that can make every
  move wait milliseconds.)  A memory cgroup changes no system call's
  answer below its limit (unlike ``RLIMIT_AS`` or ``RLIMIT_DATA``, which make
  ``mmap``, ``mremap`` and ``brk`` fail early).  Swap is disabled inside it, so
  a program over the cap is killed at once instead of swapping until the
  timeout.  The executor reports the cgroup's OOM kills per program.  cgroup v1
  (a ``memory`` hierarchy) and v2 (a unified hierarchy whose ``memory``
  controller is delegated to our cgroup) are both used.  Where no cgroup can
  be made (not root, nothing delegated, ``VMASIM_CGROUP=off``), the executor
  falls back to a watchdog that samples the resident memory of the program's
  processes, which the error message says.
* **Tasks.**  A program's processes are its chain of nested forks (a parent
  waits for its child), so the executor counts them itself and stops a fork
  that would make more than the cap; a ``pids`` cgroup, where there is one,
  backs that up with room for the uffd watcher helpers.

Making and removing a memory cgroup costs about a millisecond, so a process
keeps the cgroups of its finished executors for
the next ones (:class:`CgroupPool`; one executor at a time per cgroup, so the
cap stays per program) and removes them when it exits.  An executor removes
the cgroups it holds when vmasim dies under it (its parent-death signal is
SIGTERM, which it handles); what a killed vmasim held in reserve is removed by
the next run, which removes the ``vmasim-<pid>-*`` cgroups of every process
that is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: The default memory cap of one program (all its processes together), in bytes.
DEFAULT_MEMORY_LIMIT = 1 << 30

#: The default task cap: the most processes one program may have at a time.
DEFAULT_TASK_LIMIT = 256

#: Environment variables that override the defaults (a size such as ``512M``, a count).
MEMORY_LIMIT_ENV = "VMASIM_MEMORY_LIMIT"
TASK_LIMIT_ENV = "VMASIM_TASK_LIMIT"
#: ``off`` makes the runner skip cgroups (and use the RSS watchdog).
CGROUP_ENV = "VMASIM_CGROUP"

#: A cap below this could not even run the executor and its walls.
MIN_MEMORY_LIMIT = 16 << 20

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_STALE = re.compile(r"^vmasim-(\d+)-[0-9a-f]+$")
_STALE_FILE = re.compile(r"^\.vmasim-(\d+)-\d+-\d+$")


def format_size(n: int) -> str:
    """``n`` bytes as the largest binary unit that divides it (``1 GiB``, ``1536 MiB``)."""
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def parse_size(text: str) -> int:
    """A size such as ``1073741824``, ``512M`` or ``1GiB``; ValueError if it is not one."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"expected a size such as 512M or 1G, got {text!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps every program of a run gets: ``memory`` in bytes, ``tasks`` in processes."""

    memory: int = DEFAULT_MEMORY_LIMIT
    tasks: int = DEFAULT_TASK_LIMIT

    def __post_init__(self) -> None:
        if isinstance(self.memory, bool) or not isinstance(self.memory, int):
            raise TypeError(f"Limits: memory must be an int, not {type(self.memory).__name__}")
        if isinstance(self.tasks, bool) or not isinstance(self.tasks, int):
            raise TypeError(f"Limits: tasks must be an int, not {type(self.tasks).__name__}")
        if self.memory < MIN_MEMORY_LIMIT:
            raise ValueError(f"Limits: memory must be at least {format_size(MIN_MEMORY_LIMIT)}, got {self.memory}")
        if self.tasks < 1:
            raise ValueError(f"Limits: tasks must be at least 1, got {self.tasks}")

    @classmethod
    def from_env(cls, memory: int | None = None, tasks: int | None = None) -> Limits:
        """The given caps, else those of ``$VMASIM_MEMORY_LIMIT`` / ``$VMASIM_TASK_LIMIT``, else the defaults."""
        if memory is None:
            text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
            try:
                memory = parse_size(text) if text else DEFAULT_MEMORY_LIMIT
            except ValueError as exc:
                raise ValueError(f"${MEMORY_LIMIT_ENV}: {exc}") from None
        if tasks is None:
            text = os.environ.get(TASK_LIMIT_ENV, "").strip()
            if text and not text.isdigit():
                raise ValueError(f"${TASK_LIMIT_ENV}: expected a number of processes, got {text!r}")
            tasks = int(text) if text else DEFAULT_TASK_LIMIT
        return cls(memory=memory, tasks=tasks)


@dataclass(slots=True)
class Caps:
    """The caps of one executor: its command-line options and what to remove afterwards.

    ``mechanism`` says how the memory cap is enforced, for messages:
    ``"cgroup v1"``, ``"cgroup v2"`` or ``"watchdog"``.
    """

    limits: Limits
    mechanism: str
    args: list[str]
    dirs: list[Path] = field(default_factory=list)

    def close(self) -> None:
        """Remove the executor's cgroups (it normally did already); gives up after about a second."""
        for d in self.dirs:
            _rmdir(d, wait=1.0)
        self.dirs = []


def _rmdir(d: Path, wait: float = 0.0) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            d.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            # EBUSY: a process that was just reaped can keep the cgroup populated for a moment
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


@dataclass(frozen=True, slots=True)
class _Hierarchy:
    version: int
    controller: str
    path: Path  # our cgroup in it


def _mounts() -> Iterator[tuple[str, Path, str, set[str]]]:
    """(fstype, mount point, root inside the hierarchy, super options) of cgroup mounts."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        yield tail[0], Path(fields[4].replace("\\040", " ")), fields[3], set(tail[2].split(","))


def _inside(mount: Path, root: str, path: str) -> Path | None:
    """The directory of cgroup ``path`` under a mount of the hierarchy's ``root``."""
    if root != "/" and path != root and not path.startswith(root.rstrip("/") + "/"):
        return None
    rel = path[len(root) :] if root != "/" else path
    d = mount / rel.lstrip("/")
    return d if d.is_dir() else None


@functools.lru_cache(maxsize=1)
def _hierarchies() -> tuple[_Hierarchy, ...]:
    """The hierarchies holding the memory and pids controllers for this process, memory first."""
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return ()
    v1: dict[str, str] = {}
    v2_path: str | None = None
    for line in own:
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            v2_path = path
        for c in controllers.split(","):
            v1[c] = path
    found: dict[str, _Hierarchy] = {}
    for fstype, mount, root, opts in _mounts():
        if fstype == "cgroup":
            for c in ("memory", "pids"):
                if c in opts and c in v1 and c not in found:
                    d = _inside(mount, root, v1[c])
                    if d is not None:
                        found[c] = _Hierarchy(1, c, d)
        elif v2_path is not None:
            d = _inside(mount, root, v2_path)
            if d is None:
                continue
            try:
                available = set((d / "cgroup.controllers").read_text().split())
            except OSError:
                continue
            for c in ("memory", "pids"):
                if c in available and c not in found:
                    found[c] = _Hierarchy(2, c, d)
    return tuple(found[c] for c in ("memory", "pids") if c in found)


@functools.lru_cache(maxsize=4)
def _delegated(h: _Hierarchy) -> bool:
    """cgroup v2: whether children of our cgroup can get the controller (enabling it if we may)."""
    ctl = h.path / "cgroup.subtree_control"
    try:
        if h.controller in ctl.read_text().split():
            return True
        # Only possible where our cgroup holds no process (the root, or a delegated parent).
        ctl.write_text(f"+{h.controller}")
        return h.controller in ctl.read_text().split()
    except OSError:
        return False


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(tmpdir: str | None = None) -> None:
    """Remove what killed runs left: ``vmasim-<pid>-*`` cgroups and ``.vmasim-<pid>-*`` files of dead pids."""
    for h in _hierarchies():
        try:
            entries = list(h.path.iterdir())
        except OSError:
            continue
        for d in entries:
            m = _STALE.match(d.name)
            if m and not _is_alive(int(m.group(1))):
                _rmdir(d)
    base = Path(tmpdir or tempfile.gettempdir())
    try:
        names = [p for p in base.iterdir() if _STALE_FILE.match(p.name)]
    except OSError:
        names = []
    for p in names:
        m = _STALE_FILE.match(p.name)
        if m and not _is_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                p.unlink()


@functools.lru_cache(maxsize=1)
def _cleaned_once() -> bool:
    remove_stale()
    return True


def _make(h: _Hierarchy, name: str, settings: list[tuple[str, str, bool]]) -> Path | None:
    """mkdir a cgroup in ``h`` and apply ``(file, value, required)`` settings; None if it cannot."""
    d = h.path / name
    try:
        d.mkdir()
    except OSError:
        return None
    for fname, value, required in settings:
        try:
            (d / fname).write_text(value)
        except OSError:
            if required:
                _rmdir(d)
                return None
    return d


def _cgroups_wanted() -> bool:
    return os.environ.get(CGROUP_ENV, "").strip().lower() not in ("off", "0", "no", "false")


def open_caps(limits: Limits) -> Caps:
    """Make the cgroups of one executor (or choose the watchdog) for ``limits``."""
    _cleaned_once()
    watchdog = Caps(limits, "watchdog", [f"tasks={limits.tasks}", f"rss={limits.memory}"])
    if not _cgroups_wanted():
        return watchdog
    hs = {h.controller: h for h in _hierarchies() if h.version == 1 or _delegated(h)}
    mem = hs.get("memory")
    if mem is None:
        return watchdog
    name = f"vmasim-{os.getpid()}-{secrets.token_hex(4)}"
    pids_max = str(2 * limits.tasks + 8)  # room for each process's uffd watcher
    if mem.version == 1:
        memdir = _make(
            mem,
            name,
            [
                ("memory.limit_in_bytes", str(limits.memory), True),
                ("memory.memsw.limit_in_bytes", str(limits.memory), False),
                ("memory.swappiness", "0", False),
            ],
        )
        if memdir is None:
            return watchdog
        caps = Caps(limits, "cgroup v1", [f"tasks={limits.tasks}"], [memdir])
        caps.args += [*_cgroup_args(mem, memdir), f"oom={memdir / 'memory.oom_control'}"]
        pids = hs.get("pids")
        if pids is not None and pids.version == 1:
            piddir = _make(pids, name, [("pids.max", pids_max, True)])
            if piddir is not None:
                caps.dirs.append(piddir)
                caps.args += _cgroup_args(pids, piddir)
        return caps
    # (not memory.oom.group: it would kill the executor too, which shares the cgroup)
    settings = [("memory.max", str(limits.memory), True), ("memory.swap.max", "0", False)]
    pids = hs.get("pids")
    if pids is not None and pids.version == 2 and pids.path == mem.path:
        settings.append(("pids.max", pids_max, False))
    memdir = _make(mem, name, settings)
    if memdir is None:
        return watchdog
    args = [f"tasks={limits.tasks}", *_cgroup_args(mem, memdir), f"oom={memdir / 'memory.events'}"]
    return Caps(limits, "cgroup v2", args, [memdir])


def _cgroup_args(h: _Hierarchy, d: Path) -> list[str]:
    """Join ``d``; should vmasim die first, go back to our own cgroup and remove ``d``."""
    return [f"join={d / 'cgroup.procs'}", f"leave={h.path / 'cgroup.procs'}", f"rmdir={d}"]


class CgroupPool:
    """The caps of this process's idle executors, kept for the next ones with the same limits.

    :meth:`acquire` hands out caps no running executor holds; :meth:`release`
    takes them back (or removes them if the executor ended badly); everything
    idle is removed when the process exits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[Caps] = []
        self._pid = os.getpid()
        atexit.register(self.close)

    def acquire(self, limits: Limits) -> Caps:
        """Caps for ``limits`` that no running executor holds."""
        if not _cgroups_wanted():
            return open_caps(limits)
        with self._lock:
            if self._pid != os.getpid():  # a forked copy of this process: its reserve is not ours
                self._free, self._pid = [], os.getpid()
            for i, caps in enumerate(self._free):
                if caps.limits == limits:
                    return self._free.pop(i)
        return open_caps(limits)

    def release(self, caps: Caps, *, reusable: bool) -> None:
        """Take back caps whose executor has exited; kept only if ``reusable`` and still there."""
        if caps.mechanism == "watchdog" or not reusable or not all(d.is_dir() for d in caps.dirs):
            caps.close()
            return
        with self._lock:
            self._free.append(caps)

    def close(self) -> None:
        """Remove every idle cgroup."""
        with self._lock:
            free, self._free = self._free, []
        for caps in free:
            caps.close()


@functools.lru_cache(maxsize=1)
def cgroup_pool() -> CgroupPool:
    """This process's pool of executor cgroups."""
    return CgroupPool()
