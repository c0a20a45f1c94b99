"""/proc/PID/maps, smaps and numa_maps text, as fs/proc/task_mmu.c and mm/mempolicy.c print them."""

from __future__ import annotations

from collections.abc import Iterable

from vmasim import constants as C
from vmasim.core.flags import VM_MAYSHARE, mnemonics
from vmasim.core.mm import MmStruct
from vmasim.core.prot import vma_pkey
from vmasim.core.vma import Mempolicy, Vma

_MODE_NAMES = {
    C.MPOL_DEFAULT: "default",
    C.MPOL_PREFERRED: "prefer",
    C.MPOL_BIND: "bind",
    C.MPOL_INTERLEAVE: "interleave",
    C.MPOL_LOCAL: "local",
    C.MPOL_PREFERRED_MANY: "prefer (many)",
    C.MPOL_WEIGHTED_INTERLEAVE: "weighted interleave",
}


def nodelist(mask: int) -> str:
    """A node mask as the kernel's ``%*pbl`` prints it: ``0``, ``0-3``, ``0,2``."""
    parts: list[str] = []
    node = 0
    while mask >> node:
        if mask >> node & 1:
            first = node
            while mask >> (node + 1) & 1:
                node += 1
            parts.append(str(first) if first == node else f"{first}-{node}")
        node += 1
    return ",".join(parts)


def mpol_to_str(policy: Mempolicy | None) -> str:
    """Like mpol_to_str(): ``default``, ``bind:0``, ``bind=static:0``, ``prefer (many):0``, ``local``…"""
    if policy is None:
        return "default"
    text = _MODE_NAMES.get(policy.mode, "unknown")
    mode_flags = policy.flags & C.MPOL_MODE_FLAGS
    if mode_flags:
        text += "="
        if mode_flags & C.MPOL_F_STATIC_NODES:
            text += "static"
        elif mode_flags & C.MPOL_F_RELATIVE_NODES:
            text += "relative"
        if mode_flags & C.MPOL_F_NUMA_BALANCING:
            if mode_flags & (mode_flags - 1):
                text += "|"
            text += "balancing"
    nodes = policy.nodes if policy.mode not in (C.MPOL_DEFAULT, C.MPOL_LOCAL) else 0
    if nodes:
        text += ":" + nodelist(nodes)
    return text


def perms(vma: Vma) -> str:
    """The maps perms column: r/w/x then ``s`` for VM_MAYSHARE, else ``p``."""
    f = vma.vm_flags
    return (
        ("r" if f & 1 else "-")
        + ("w" if f & 2 else "-")
        + ("x" if f & 4 else "-")
        + ("s" if f & VM_MAYSHARE else "p")
    )


def file_offset(vma: Vma) -> int:
    """The maps offset column: pgoff in bytes for file-backed VMAs, 0 for anonymous and special mappings."""
    if vma.file is None or vma.file.inode.kind == "special":
        return 0
    return vma.pgoff << C.PAGE_SHIFT


class ObjectNames:
    """Device, inode and path columns of maps lines; inode numbers are made up but stable."""

    def __init__(self) -> None:
        self._inodes: dict[int, int] = {}

    def columns(self, vma: Vma, mm: MmStruct | None) -> tuple[str, int, str]:
        """(device, inode, name) for ``vma``; ``mm`` (if given) decides the ``[heap]`` label."""
        # Like get_vma_name(): files (a named shared anonymous object shows its name), special
        # mappings, the initial heap, then anonymous names.
        file = vma.file
        if file is None:
            if mm is not None and vma.start < mm.brk and vma.end > mm.start_brk:
                return "00:00", 0, "[heap]"
            return "00:00", 0, f"[anon:{vma.anon_name}]" if vma.anon_name is not None else ""
        inode = file.inode
        if inode.kind == "special":
            return "00:00", 0, inode.label
        number = self._inodes.setdefault(id(inode), 1000 + len(self._inodes))
        if inode.kind == "shmem":
            if vma.anon_name is not None:
                return "00:01", number, f"[anon_shmem:{vma.anon_name}]"
            return "00:01", number, "/dev/zero (deleted)"
        if inode.kind == "memfd":
            return "00:01", number, f"/memfd:{inode.label} (deleted)"
        return "fe:00", number, f"/{inode.label}"


def maps_line(vma: Vma, dev: str = "00:00", inode: int = 0, name: str = "") -> str:
    """One /proc/PID/maps line (without the newline), padded like show_map_vma()."""
    head = f"{vma.start:08x}-{vma.end:08x} {perms(vma)} {file_offset(vma):08x} {dev} {inode} "
    if name:
        head = head.ljust(73) + name
    return head


def maps(vmas: Iterable[Vma], mm: MmStruct | None = None) -> str:
    """/proc/PID/maps text for ``vmas``."""
    names = ObjectNames()
    return "".join(maps_line(v, *names.columns(v, mm)) + "\n" for v in vmas)


def smaps(vmas: Iterable[Vma], mm: MmStruct | None = None) -> str:
    """/proc/PID/smaps text for ``vmas``: the maps header, sizes (page counts are not modelled) and VmFlags."""
    names = ObjectNames()
    out: list[str] = []
    for v in vmas:
        out.append(maps_line(v, *names.columns(v, mm)) + "\n")
        size_kb = (v.end - v.start) >> 10
        out.append(f"{'Size:':<16}{size_kb:8d} kB\n")
        out.append(f"{'KernelPageSize:':<16}{4:8d} kB\n")
        out.append(f"{'MMUPageSize:':<16}{4:8d} kB\n")
        if mm is None or mm.target.cpu.pku:
            # Printed only where the CPU has protection keys (arch_pkeys_enabled()).
            out.append(f"{'ProtectionKey:':<16}{vma_pkey(v.vm_flags):8d}\n")
        out.append("VmFlags: " + "".join(m + " " for m in mnemonics(v.vm_flags)) + "\n")
    return "".join(out)


def numa_maps(vmas: Iterable[Vma], mm: MmStruct | None = None) -> str:
    """/proc/PID/numa_maps text for ``vmas``: start address, effective policy and the mapped object."""
    names = ObjectNames()
    out: list[str] = []
    for v in vmas:
        policy = mm.effective_policy(v) if mm is not None else v.policy
        line = f"{v.start:x} {mpol_to_str(policy)}"
        _dev, _ino, name = names.columns(v, mm)
        if v.file is not None:
            line += " file=" + name.replace(" ", "\\040")
        elif name == "[heap]":
            line += " heap"
        out.append(line + "\n")
    return "".join(out)
