"""prctl(2) options that touch VMAs: PR_SET_VMA (anonymous names) and PR_SET_MEMORY_MERGE (KSM)."""

from __future__ import annotations

import errno

from vmasim.core.errors import kernel_error
from vmasim.core.flags import VM_MERGEABLE, ksm_compatible
from vmasim.core.mm import MmStruct


def sys_prctl_set_vma_anon_name(mm: MmStruct, start: int, length: int, name: str | None) -> int:
    """PR_SET_VMA_ANON_NAME: EINVAL, as on the modelled kernel (CONFIG_ANON_VMA_NAME is not set)."""
    raise kernel_error(errno.EINVAL, "prctl(PR_SET_VMA)", "anonymous VMA names are not configured")


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
