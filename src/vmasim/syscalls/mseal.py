"""mseal(2): mm/mseal.c's do_mseal() and mseal_apply()."""

from __future__ import annotations

import errno

from vmasim.core.addr import checked_range
from vmasim.core.errors import kernel_error
from vmasim.core.flags import VM_SEALED
from vmasim.core.merge import vma_modify_flags
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.core.walk import Holes, walk_range

CALL = "mseal"


def sys_mseal(mm: MmStruct, start: int, length: int, flags: int) -> int:
    """mseal(2): seal every VMA in a hole-free range; sealed VMAs refuse munmap, mprotect and more."""
    if flags:
        raise kernel_error(errno.EINVAL, CALL, "flags must be 0")
    end = checked_range(CALL, start, length)
    if end == start:
        return 0

    def fixup(prev: Vma | None, cur: Vma, nstart: int, stop: int) -> Vma:
        # mseal_apply(): VMAs already sealed are left alone (no split).
        if cur.vm_flags & VM_SEALED:
            return cur
        return vma_modify_flags(mm, prev, cur, nstart, stop, cur.vm_flags | VM_SEALED)

    # range_contains_unmapped() first: a hole anywhere is ENOMEM before anything is sealed.
    walk_range(mm, start, end, fixup, holes=Holes.FIRST, call=CALL)
    return 0
