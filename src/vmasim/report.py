"""The layout report of the program contract: what /proc/PID/smaps and numa_maps show, as JSON-ready data."""

from __future__ import annotations

import errno
from collections.abc import Iterable
from typing import Any

from vmasim.core.flags import mnemonics
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.render import ObjectNames, file_offset, mpol_to_str, perms
from vmasim.syscalls.mempolicy import numa_maps_policy


def errno_name(code: int) -> str:
    """The symbolic name of errno ``code`` (``"ENOMEM"``), or ``"E<code>"`` when there is none."""
    return errno.errorcode.get(code, f"E{code}")


def hex_addr(value: int) -> str:
    """An address as the report writes it: lowercase hex with ``0x``."""
    return hex(value)


def rel_addr(value: int, base: int) -> str:
    """An address relative to ``base`` as the report writes heap addresses: ``+0x1000``."""
    off = value - base
    return ("+" if off >= 0 else "-") + hex(abs(off))


class FileLabels:
    """Names files as the report does: the creating op's label, ``shmem#N`` by first appearance, or
    the /proc path of an object the program did not create."""

    def __init__(self) -> None:
        self._shmem: dict[int, str] = {}
        self._paths = ObjectNames()

    def label(self, vma: Vma) -> str | None:
        """The report's ``file`` value for ``vma``."""
        file = vma.file
        if file is None:
            return None
        inode = file.inode
        if inode.kind == "special":
            return None  # [vdso], [vvar]: no inode, like anonymous memory
        if inode.kind == "shmem":
            return self._shmem.setdefault(id(inode), f"shmem#{len(self._shmem) + 1}")
        if inode.foreign:
            return self._paths.columns(vma, None)[2]
        return inode.label


def vma_entry(vma: Vma, mm: MmStruct, labels: FileLabels, base: int | None = None) -> dict[str, Any]:
    """One VMA as a report entry; with ``base`` the addresses are relative to it (heap entries)."""
    policy = numa_maps_policy(vma, mm)
    return {
        "start": hex_addr(vma.start) if base is None else rel_addr(vma.start, base),
        "end": hex_addr(vma.end) if base is None else rel_addr(vma.end, base),
        "perms": perms(vma),
        "offset": hex(file_offset(vma)),
        "file": labels.label(vma),
        "flags": mnemonics(vma.vm_flags),
        "policy": mpol_to_str(policy),
    }


def layout(
    mm: MmStruct,
    window_start: int,
    window_end: int,
    heap_base: int | None,
    results: Iterable[dict[str, Any]],
    children: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole layout report for ``mm``: results, window VMAs, heap VMAs above ``heap_base``, children."""
    labels = FileLabels()
    vmas = [vma_entry(v, mm, labels) for v in mm.vmas.range(window_start, window_end)]
    heap: list[dict[str, Any]] = []
    if heap_base is not None:
        # What /proc labels [heap] (vma_is_initial_heap(): start < brk), from the initial break up.
        heap = [vma_entry(v, mm, labels, heap_base) for v in mm.vmas.range(heap_base, mm.brk) if v.start >= heap_base]
    return {"results": list(results), "vmas": vmas, "heap": heap, "children": children or {}}
