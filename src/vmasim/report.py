"""The model's layout report (the program contract's): what /proc/PID/smaps and numa_maps would show."""

from __future__ import annotations

from collections.abc import Iterable

from vmasim.core.flags import mnemonics
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.program.report import OpResult, Report, VmaEntry, rel_addr
from vmasim.render import ObjectNames, file_offset, mpol_to_str, perms


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


def vma_entry(vma: Vma, mm: MmStruct, labels: FileLabels, base: int | None = None) -> VmaEntry:
    """One VMA as a report entry; with ``base`` the addresses are relative to it (heap entries)."""
    return {
        "start": hex(vma.start) if base is None else rel_addr(vma.start, base),
        "end": hex(vma.end) if base is None else rel_addr(vma.end, base),
        "perms": perms(vma),
        "offset": hex(file_offset(vma)),
        "file": labels.label(vma),
        "flags": mnemonics(vma.vm_flags),
        "policy": mpol_to_str(mm.effective_policy(vma)),
    }


def layout(
    mm: MmStruct,
    window_start: int,
    window_end: int,
    heap_base: int | None,
    results: Iterable[OpResult],
    children: dict[str, Report] | None = None,
) -> Report:
    """The whole layout report for ``mm``: results, window VMAs, heap VMAs above ``heap_base``, children."""
    labels = FileLabels()
    vmas = [vma_entry(v, mm, labels) for v in mm.vmas.range(window_start, window_end)]
    heap: list[VmaEntry] = []
    if heap_base is not None:
        # What /proc labels [heap] (vma_is_initial_heap(): start < brk), from the initial break up.
        heap = [vma_entry(v, mm, labels, heap_base) for v in mm.vmas.range(heap_base, mm.brk) if v.start >= heap_base]
    return {"results": list(results), "vmas": vmas, "heap": heap, "children": children or {}}
