"""Probing the host: the profile of the machine vmasim runs on, from /proc, /sys and small kernel programs.

Facts the host states plainly (CPU flags, sysctls, rlimits, THP modes, NUMA
nodes, memory) are read from /proc and /sys.  Behaviours that only show when
tried (a vendor kernel's backports, whether hints are raised to an LSM's
mmap_min_addr, which userfaultfd features the kernel offers, how big a file
may grow, where the runner's process has its executable and vDSO) are found
by running small programs through the kernel runner and reading their
reports.  The result is a :class:`~vmasim.profile.Profile` named ``host``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import re
import resource
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vmasim.core.target import Cpu, Files, KernelBehaviour, Limits, Memory, Target
from vmasim.profile import ProcessLayout, Profile, ProfileError, SpecialMapping, resolve_profile

Report = dict[str, Any]

# Capability bits (include/uapi/linux/capability.h).
CAP_IPC_LOCK = 14
CAP_SYS_PTRACE = 19
#: The oldest release whose VMA layer (mm/vma.c's merge rewrite, mseal, guard regions) is modelled.
OLDEST_MODELLED = (6, 13)
#: File systems whose placement rules the model knows (see vmasim.core.placement).
KNOWN_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "erofs", "btrfs", "tmpfs"})


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _int(path: str, default: int) -> int:
    text = _read(path)
    try:
        return int(text.split()[0]) if text else default
    except (ValueError, IndexError):
        return default


def _bracketed(path: str, default: str) -> str:
    # THP sysfs files mark the active mode: "always [madvise] never".
    text = _read(path) or ""
    m = re.search(r"\[([a-z_]+)\]", text)
    return m.group(1) if m else default


def parse_node_list(text: str) -> tuple[int, ...]:
    """A kernel node list (``0``, ``0-3``, ``0,2-3``) as a tuple of node numbers."""
    nodes: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        nodes.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(nodes)


def _cpu_flags() -> set[str]:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _meminfo_pages(key: str) -> int:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) >> 2  # kB to 4 KiB pages
    return 0


def _capabilities() -> int:
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _rlimit(which: int) -> int | None:
    soft, _hard = resource.getrlimit(which)
    return None if soft == resource.RLIM_INFINITY else soft


def _mount_of(path: str) -> tuple[str, str]:
    """(file system type, mount options) of the mount holding ``path``, from /proc/self/mountinfo."""
    best, fstype, options = "", "unknown", ""
    real = os.path.realpath(path)
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fstype = mount_point, fields[sep + 1]
            options = fields[5] + "," + (fields[sep + 3] if len(fields) > sep + 3 else "")
    return fstype, options


def _shmem_mthp_orders(global_mode: str) -> int:
    # Orders the per-size shmem controls enable for anonymous shmem; "inherit" follows the global mode.
    orders = 0
    base = Path("/sys/kernel/mm/transparent_hugepage")
    for entry in base.glob("hugepages-*kB") if base.is_dir() else ():
        m = re.match(r"hugepages-(\d+)kB", entry.name)
        if m is None:
            continue
        mode = _bracketed(str(entry / "shmem_enabled"), "never")
        if mode == "inherit":
            mode = global_mode
        if mode in ("always", "within_size", "advise"):
            orders |= 1 << ((int(m.group(1)) * 1024).bit_length() - 13)
    return orders


def _hugetlb_sizes() -> tuple[int, ...]:
    # The huge page sizes the kernel has a pool for (an hstate each: MAP_HUGE_2MB, MAP_HUGE_1GB...),
    # whether or not pages are reserved in it; the default size where sysfs does not say.
    base = Path("/sys/kernel/mm/hugepages")
    sizes = sorted(int(m.group(1)) << 10 for entry in (base.glob("hugepages-*kB") if base.is_dir() else ())
                   if (m := re.fullmatch(r"hugepages-(\d+)kB", entry.name)))
    # The default size (MAP_HUGETLB without MAP_HUGE_* bits) comes first.
    m = re.search(r"^Hugepagesize:\s+(\d+) kB", _read("/proc/meminfo") or "", re.MULTILINE)
    default = int(m.group(1)) << 10 if m else 2 << 20
    return (default, *(s for s in sizes if s != default))


def _stack_guard_gap() -> int:
    # The stack_guard_gap= boot parameter, in pages (256 unless given).
    m = re.search(r"(?:^|\s)stack_guard_gap=(\d+)", _read("/proc/cmdline") or "")
    return (int(m.group(1)) if m else 256) << 12


def host_facts() -> Target:
    """What the host states plainly, as a target (behaviours that need a probe keep their defaults)."""
    flags = _cpu_flags()
    caps = _capabilities()
    thp_shmem = _bracketed("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "never")
    fstype, options = _mount_of(tempfile.gettempdir())
    tmpfs_huge = "never"
    m = re.search(r"(?:^|,)huge=([a-z_]+)", options)
    if fstype == "tmpfs" and m:
        tmpfs_huge = m.group(1)
    return Target(
        kernel=KernelBehaviour(release=platform.release()),
        cpu=Cpu(pku="pku" in flags and "ospke" in flags, la57="la57" in flags),
        limits=Limits(
            max_map_count=_int("/proc/sys/vm/max_map_count", 65530),
            mmap_min_addr=_int("/proc/sys/vm/mmap_min_addr", 4096),
            overcommit_memory=_int("/proc/sys/vm/overcommit_memory", 0),
            overcommit_ratio=_int("/proc/sys/vm/overcommit_ratio", 50),
            overcommit_kbytes=_int("/proc/sys/vm/overcommit_kbytes", 0),
            unprivileged_userfaultfd=bool(_int("/proc/sys/vm/unprivileged_userfaultfd", 0)),
            rlimit_memlock=_rlimit(resource.RLIMIT_MEMLOCK),
            rlimit_as=_rlimit(resource.RLIMIT_AS),
            rlimit_data=_rlimit(resource.RLIMIT_DATA),
            privileged=bool(caps >> CAP_IPC_LOCK & 1 and caps >> CAP_SYS_PTRACE & 1),
            stack_guard_gap=_stack_guard_gap(),
        ),
        memory=Memory(
            ram_pages=_meminfo_pages("MemTotal"),
            swap_pages=_meminfo_pages("SwapTotal"),
            thp_anon=_bracketed("/sys/kernel/mm/transparent_hugepage/enabled", "never"),
            thp_shmem=thp_shmem,
            shmem_mthp_orders=_shmem_mthp_orders(thp_shmem),
            numa_nodes=parse_node_list(_read("/sys/devices/system/node/online") or "0"),
        ),
        files=Files(
            regular_fs=fstype,
            regular_max_bytes=0xFFFFFFFF000 if fstype in ("ext2", "ext3", "ext4") else (1 << 63) - 1,
            tmpfs_huge=tmpfs_huge,
        ),
    )


# --- behaviour probes ---------------------------------------------------------------------

_RW_PRIVATE = {"prot": "rw", "flags": ["private", "anonymous", "fixed_noreplace"]}
#: An address far below the window and above the runner's image, free in the runner's process.
_LOW_HINT = 0x1000
#: A hint above the 47-bit map window: honoured only with 5-level paging.
_HIGH_HINT = 1 << 52
#: One past ext4's largest file with 4 KiB blocks.
_EXT4_TOO_BIG = 0xFFFFFFFF000 + 0x1000


def _ok(report: Report, op: int) -> bool:
    return bool(report["results"][op].get("errno") is None)


#: (what it decides, program, how to read the report) for behaviour switches.
BEHAVIOUR_PROBES: tuple[tuple[str, dict[str, Any], Callable[[Report], Any]], ...] = (
    (
        "maybe_guard_flag",
        {"ops": [{"op": "mmap", "addr": "W", "length": "8K", **_RW_PRIVATE},
                 {"op": "madvise", "addr": "W", "length": "4K", "advice": "guard_install"}]},
        lambda r: _ok(r, 1) and "gu" in r["vmas"][0]["flags"],
    ),
    (
        "anon_vma_relaxed",
        {"ops": [{"op": "mmap", "addr": "W", "length": "40K", "prot": "rw",
                  "flags": ["private", "anonymous", "fixed_noreplace", "noreserve"]},
                 {"op": "mprotect", "addr": "W", "length": "20K", "prot": "r"},
                 {"op": "touch", "addr": "W+0x5000", "length": "4K"},
                 {"op": "mprotect", "addr": "W+0x5000", "length": "20K", "prot": "r"}]},
        lambda r: len(r["vmas"]) == 1,
    ),
    (
        "multi_vma_mremap",
        {"ops": [{"op": "mmap", "addr": "W", "length": "8K", **_RW_PRIVATE},
                 {"op": "mprotect", "addr": "W+0x1000", "length": "4K", "prot": "r"},
                 {"op": "mremap", "addr": "W", "old_length": "8K", "new_length": "8K",
                  "flags": ["maymove", "fixed"], "new_addr": "W+0x100000"}]},
        lambda r: _ok(r, 2),
    ),
    (
        "anon_vma_name",
        {"ops": [{"op": "mmap", "addr": "W", "length": "8K", **_RW_PRIVATE},
                 {"op": "prctl", "option": "set_vma_anon_name", "addr": "W", "length": "4K", "name": "probe"}]},
        lambda r: _ok(r, 1),
    ),
    (
        "soft_dirty",
        {"ops": [{"op": "mmap", "addr": "W", "length": "4K", **_RW_PRIVATE}]},
        lambda r: "sd" in r["vmas"][0]["flags"],
    ),
    (
        "pku",
        {"ops": [{"op": "mmap", "addr": "W", "length": "4K", "prot": "x",
                  "flags": ["private", "anonymous", "fixed_noreplace"]},
                 {"op": "touch", "addr": "W", "length": "4K", "write": False}]},
        lambda r: r["results"][1]["fault"] == "SIGSEGV",
    ),
    (
        "effective_mmap_min_addr",
        {"ops": [{"op": "mmap", "addr": _LOW_HINT, "length": "4K", "prot": "r", "flags": ["private", "anonymous"]}]},
        lambda r: int(r["results"][0]["ret"], 16) if _ok(r, 0) else None,
    ),
    (
        "la57",
        {"ops": [{"op": "mmap", "addr": _HIGH_HINT, "length": "4K", "prot": "r", "flags": ["private", "anonymous"]}]},
        lambda r: _ok(r, 0) and int(r["results"][0]["ret"], 16) >= 1 << 47,
    ),
    (
        "hugetlb",
        {"ops": [{"op": "mmap", "addr": None, "length": "2M", "prot": "rw",
                  "flags": 0x2 | 0x20 | 0x40000}]},  # MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB
        lambda r: r["results"][0]["errno"],
    ),
    (
        "regular_max_bytes",
        {"ops": [{"op": "file", "name": "probe", "size": 0},
                 {"op": "ftruncate", "fd": "probe", "size": _EXT4_TOO_BIG}]},
        lambda r: r["results"][1]["errno"],
    ),
    (
        "layout",
        {"walls": False, "window": {"start": "0x10000", "length": hex((1 << 47) - 0x1000 - 0x10000)},
         "ops": [{"op": "sbrk", "increment": "4K"}]},
        lambda r: r,
    ),
)

_UFFD_BITS = 32
_COUNT_SPREAD = 4


def _uffd_programs() -> list[dict[str, Any]]:
    return [{"ops": [{"op": "userfaultfd", "name": "u", "features": 1 << bit}]} for bit in range(_UFFD_BITS)]


def _pad_programs(walls: bool, guess: int, max_map_count: int) -> list[dict[str, Any]]:
    return [{"walls": walls, "ops": [{"op": "pad", "headroom": max_map_count - target}]}
            for target in range(max(1, guess - _COUNT_SPREAD), guess + _COUNT_SPREAD + 1)]


def _layout_from(report: Report, guess_walls: int) -> tuple[ProcessLayout, int]:
    """The runner's process layout from the whole-address-space report of the layout probe.

    Returns the layout (baseline counts still guesses) and the number of
    walls the runner would build above the default window.
    """
    vmas = [(int(v["start"], 16), int(v["end"], 16), v) for v in report["vmas"]]
    if not vmas:
        raise ProfileError("the layout probe saw no VMAs")
    image_start = vmas[0][0]
    image_end = vmas[0][1]
    i = 1
    while i < len(vmas) and vmas[i][0] == image_end:
        image_end = vmas[i][1]
        i += 1
    if i >= len(vmas):
        raise ProfileError("the layout probe saw no heap after the executable")
    initial_break = vmas[i][0]
    stack = [s for s, _e, v in vmas if "gd" in v["flags"]]
    specials: list[SpecialMapping] = []
    vvars = 0
    for s, e, v in vmas[i + 1 :]:
        if "de" not in v["flags"] or "gd" in v["flags"]:
            continue
        if "ex" in v["flags"]:
            name = "[vdso]"
        else:
            name = "[vvar]" if vvars == 0 else "[vvar_vclock]"
            vvars += 1
        specials.append(SpecialMapping(name=name, start=s, end=e, flags=tuple(v["flags"])))
    mmap_base = max((m.end for m in specials), default=0) or (stack[0] - (128 << 20) if stack else 0x7FFFF7FFF000)
    # Without walls: every VMA but the probe's own heap page.
    baseline = len(vmas) - 1
    layout = ProcessLayout(
        image_start=image_start,
        image_end=image_end,
        initial_break=initial_break,
        mmap_base=mmap_base,
        special_mappings=tuple(specials),
        baseline_map_count=baseline,
        baseline_map_count_walls=baseline + guess_walls,
    )
    # The runner walls off [window end, stack - 2 MiB) around the special mappings.
    walls = 1
    if stack and specials and max(m.end for m in specials) < stack[0] - (2 << 20):
        walls = 2
    return layout, walls


def _smallest_reachable(reports: Sequence[Any], guess: int) -> int | None:
    # pad succeeds exactly when the target is not below the current count.
    first = max(1, guess - _COUNT_SPREAD)
    for k, rep in enumerate(reports):
        if isinstance(rep, dict) and rep["results"][0]["errno"] is None:
            return first + k
    return None


def probe_host_profile(run: Callable[[list[dict[str, Any]]], list[Any]]) -> Profile:
    """The host's profile, running probe programs through ``run`` (program documents in, reports out)."""
    facts = host_facts()
    docs = [doc for _, doc, _ in BEHAVIOUR_PROBES] + _uffd_programs()
    reports = run(docs)
    found: dict[str, Any] = {}
    for (what, _doc, read), rep in zip(BEHAVIOUR_PROBES, reports, strict=False):
        if not isinstance(rep, dict):
            raise ProfileError(f"the {what} probe did not run: {rep}")
        found[what] = read(rep)
    uffd_reports = reports[len(BEHAVIOUR_PROBES):]
    features = 0
    for bit, rep in enumerate(uffd_reports):
        if isinstance(rep, dict) and rep["results"][0]["errno"] is None:
            features |= 1 << bit
    layout, walls = _layout_from(found["layout"], 2)
    max_count = facts.limits.max_map_count
    counts = run(_pad_programs(False, layout.baseline_map_count, max_count)
                 + _pad_programs(True, layout.baseline_map_count + walls, max_count))
    half = len(counts) // 2
    no_walls = _smallest_reachable(counts[:half], layout.baseline_map_count)
    with_walls = _smallest_reachable(counts[half:], layout.baseline_map_count + walls)
    if no_walls is None or with_walls is None:
        raise ProfileError("could not measure the runner's baseline map_count")
    layout = dataclasses.replace(layout, baseline_map_count=no_walls, baseline_map_count_walls=with_walls)
    effective_min = found["effective_mmap_min_addr"] or facts.limits.mmap_min_addr
    lsm_min = effective_min if effective_min > facts.limits.mmap_min_addr else 0
    target = dataclasses.replace(
        facts,
        kernel=dataclasses.replace(
            facts.kernel,
            maybe_guard_flag=bool(found["maybe_guard_flag"]),
            anon_vma_relaxed=bool(found["anon_vma_relaxed"]),
            multi_vma_mremap=bool(found["multi_vma_mremap"]),
            anon_vma_name=bool(found["anon_vma_name"]),
            soft_dirty=bool(found["soft_dirty"]),
        ),
        cpu=dataclasses.replace(facts.cpu, pku=bool(found["pku"]), la57=bool(found["la57"])),
        limits=dataclasses.replace(facts.limits, lsm_mmap_min_addr=lsm_min),
        memory=dataclasses.replace(
            facts.memory,
            uffd_features=features,
            hugetlb_sizes=() if found["hugetlb"] == "EINVAL" else _hugetlb_sizes(),
        ),
        files=dataclasses.replace(
            facts.files, regular_max_bytes=0xFFFFFFFF000 if found["regular_max_bytes"] == "EFBIG" else (1 << 63) - 1
        ),
    )
    cpu = "protection keys" if target.cpu.pku else "no protection keys"
    return Profile(
        name="host",
        description=f"this host: Linux {target.kernel.release} on {platform.machine()}, {cpu}",
        target=target,
        layout=layout,
    )


def unmodelled(profile: Profile) -> list[str]:
    """What the profile's machine does that no profile switch covers: reasons differential tests skip."""
    reasons: list[str] = []
    m = re.match(r"(\d+)\.(\d+)", profile.release)
    if m is None or (int(m.group(1)), int(m.group(2))) < OLDEST_MODELLED:
        reasons.append(f"kernel {profile.release} is older than the oldest modelled release "
                       f"{OLDEST_MODELLED[0]}.{OLDEST_MODELLED[1]}")
    fs = profile.target.files.regular_fs
    if fs not in KNOWN_FS:
        reasons.append(f"regular files live on {fs}, whose mmap placement is not modelled")
    return reasons


def resolve_target(spec: str | Profile | None) -> Profile:
    """Like :func:`vmasim.profile.resolve_profile`, and ``host`` is this machine's probed profile."""
    if spec == "host":
        return probe_host()
    return resolve_profile(spec)


@functools.lru_cache(maxsize=1)
def probe_host() -> Profile:
    """The host's profile, probed once per process through the kernel runner.

    Raises :class:`~vmasim.profile.ProfileError` when the runner cannot be used.
    """
    from vmasim.kernel import KernelRunError, kernel_available, run_programs
    from vmasim.program import parse_program

    ok, why = kernel_available()
    if not ok:
        raise ProfileError(f"cannot probe the host: the kernel runner is unavailable ({why})")

    def run(docs: list[dict[str, Any]]) -> list[Any]:
        reports = run_programs([parse_program(doc) for doc in docs])
        return [str(r) if isinstance(r, KernelRunError) else r for r in reports]

    return probe_host_profile(run)
