"""prctl(2) options that touch VMAs: PR_SET_VMA (anonymous names) and PR_SET_MEMORY_MERGE (KSM)."""

from __future__ import annotations

import errno

from vmasim.core.addr import checked_range
from vmasim.core.errors import kernel_error
from vmasim.core.flags import VM_MERGEABLE, ksm_compatible
from vmasim.core.merge import vma_modify_name
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.core.walk import Holes, walk_range

CALL = "prctl(PR_SET_VMA)"
#: ANON_VMA_NAME_MAX_LEN: the longest name, its terminating NUL included.
ANON_VMA_NAME_MAX_LEN = 80


def valid_anon_name(name: str) -> bool:
    """Like prctl_set_vma()'s checks: shorter than ANON_VMA_NAME_MAX_LEN, printable ASCII without \\`$[]."""
    return len(name.encode("utf-8", "surrogateescape")) < ANON_VMA_NAME_MAX_LEN and all(
        0x1F < ord(ch) < 0x7F and ch not in "\\`$[]" for ch in name
    )


def _name_vma(mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int, name: str | None) -> Vma:
    # madvise_vma_behavior() for __MADV_SET_ANON_VMA_NAME: only anonymous memory (shared too) has names.
    if vma.file is not None and vma.file.inode.kind != "shmem":
        raise kernel_error(errno.EBADF, CALL, "only anonymous mappings can be named")
    if vma.anon_name == name:
        return vma
    try:
        return vma_modify_name(mm, prev, vma, start, end, name)
    except OSError as exc:
        if exc.errno == errno.ENOMEM:
            raise kernel_error(errno.EAGAIN, CALL, "splitting the VMA was refused") from None
        raise


def sys_prctl_set_vma_anon_name(mm: MmStruct, start: int, length: int, name: str | None) -> int:
    """PR_SET_VMA_ANON_NAME: name (or unname, with None) the anonymous VMAs of a range, splitting and merging.

    EINVAL where the target kernel lacks CONFIG_ANON_VMA_NAME.  Holes are
    skipped and reported at the end, as madvise() does.
    """
    if not mm.target.kernel.anon_vma_name:
        raise kernel_error(errno.EINVAL, CALL, "anonymous VMA names are not configured")
    if name is not None and not valid_anon_name(name):
        raise kernel_error(errno.EINVAL, CALL, "invalid name")
    end = checked_range(CALL, start, length)
    if end == start:
        return 0
    # madvise_set_anon_name() walks like madvise: holes are skipped, then reported.
    walk_range(mm, start, end, lambda prev, vma, s, e: _name_vma(mm, prev, vma, s, e, name),
               holes=Holes.SKIP, call=CALL)
    return 0


def sys_prctl_set_memory_merge(mm: MmStruct, value: int) -> int:
    """PR_SET_MEMORY_MERGE: flag every KSM-compatible VMA (and future ones) VM_MERGEABLE, or undo it.

    Like ksm_enable_merge_any() and ksm_disable_merge_any(): flags change in
    place, so VMAs are neither split nor merged.
    """
    if value:
        if not mm.ksm_merge_any:
            mm.ksm_merge_any = True
            for vma in mm.vmas:
                if not vma.vm_flags & VM_MERGEABLE and ksm_compatible(vma.vm_flags):
                    mm.set_flags(vma, vma.vm_flags | VM_MERGEABLE)
    elif mm.ksm_merge_any:
        for vma in mm.vmas:
            if vma.vm_flags & VM_MERGEABLE:
                mm.set_flags(vma, vma.vm_flags & ~VM_MERGEABLE)
        mm.ksm_merge_any = False
    return 0
