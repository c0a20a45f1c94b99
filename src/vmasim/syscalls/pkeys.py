"""pkey_alloc(2) and pkey_free(2): mm/mprotect.c's system calls over arch/x86's key allocation.

pkey_mprotect(2) is mprotect with a key (:func:`vmasim.syscalls.mprotect.sys_mprotect`).
"""

from __future__ import annotations

import errno

from vmasim.core.errors import kernel_error
from vmasim.core.mm import MmStruct
from vmasim.core.prot import PKEY_ACCESS_MASK, arch_set_user_pkey_access, mm_pkey_alloc, mm_pkey_free


def sys_pkey_alloc(mm: MmStruct, flags: int, init_val: int) -> int:
    """pkey_alloc(2): the lowest free key, with ``init_val`` rights in PKRU; returns the key.

    Like the kernel, a key whose rights cannot be set (no OSPKE) is handed
    back with mm_pkey_free(), which refuses the key the never-initialised
    execute-only key equals: so on a CPU without protection keys the first
    call fails with EINVAL and leaves the key taken, and every later one
    fails with ENOSPC.
    """
    if flags:
        raise kernel_error(errno.EINVAL, "pkey_alloc", "no flags are defined")
    if init_val & ~PKEY_ACCESS_MASK:
        raise kernel_error(errno.EINVAL, "pkey_alloc", "unknown access rights")
    key = mm_pkey_alloc(mm)
    if key == -1:
        raise kernel_error(errno.ENOSPC, "pkey_alloc", "every protection key is allocated")
    if not arch_set_user_pkey_access(mm, key, init_val):
        mm_pkey_free(mm, key)
        raise kernel_error(errno.EINVAL, "pkey_alloc", "the CPU has no protection keys")
    return key


def sys_pkey_free(mm: MmStruct, pkey: int) -> int:
    """pkey_free(2): EINVAL for a key that is not allocated (PKRU keeps the key's rights)."""
    if not mm_pkey_free(mm, pkey):
        raise kernel_error(errno.EINVAL, "pkey_free", "protection key not allocated")
    return 0
