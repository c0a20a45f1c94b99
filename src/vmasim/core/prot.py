"""Translating PROT_* bits into vm_flags (include/linux/mman.h), with x86 protection keys.

On a CPU with protection keys (PKU), PROT_EXEC alone is made execute-only with
a dedicated key (arch/x86/mm/pkeys.c): the key is part of vm_flags, keeps such
a VMA from merging with, or sharing an anon_vma with, one that has the default
key, and makes its memory unreadable.  Without PKU every VMA has key 0 and
PROT_EXEC memory is readable, as x86 page tables cannot say otherwise.
"""

from __future__ import annotations

from vmasim import constants as C
from vmasim.core.flags import VM_ACCESS_FLAGS, VM_EXEC, VM_PKEY_MASK, VM_PKEY_SHIFT

# The key execute_only_pkey() hands out: the first one allocated after the default key 0.
EXEC_ONLY_PKEY = 1


def calc_vm_prot_bits(prot: int, pkey: int = 0) -> int:
    """Like calc_vm_prot_bits(): PROT_READ/WRITE/EXEC to VM_READ/WRITE/EXEC (the same bit values) plus the key.

    Other bits (PROT_SEM, PROT_GROWSDOWN…) never reach vm_flags.
    """
    return (prot & (C.PROT_READ | C.PROT_WRITE | C.PROT_EXEC)) | (pkey << VM_PKEY_SHIFT)


def vma_pkey(vm_flags: int) -> int:
    """Like vma_pkey(): the protection key in ``vm_flags``."""
    return (vm_flags & VM_PKEY_MASK) >> VM_PKEY_SHIFT


def mmap_pkey(prot: int, pku: bool) -> int:
    """Like do_mmap(): with protection keys, a PROT_EXEC-only mapping gets the execute-only key."""
    return EXEC_ONLY_PKEY if pku and prot == C.PROT_EXEC else 0


def mprotect_pkey(vm_flags: int, prot: int, pku: bool) -> int:
    """Like __arch_override_mprotect_pkey() for plain mprotect: the key the VMA gets with ``prot``."""
    if not pku:
        return 0
    if prot == C.PROT_EXEC:
        return EXEC_ONLY_PKEY
    if vm_flags & VM_ACCESS_FLAGS == VM_EXEC and vma_pkey(vm_flags) == EXEC_ONLY_PKEY:
        return 0  # leaving execute-only: back to the default key
    return vma_pkey(vm_flags)
