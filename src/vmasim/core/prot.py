"""Translating PROT_* bits into vm_flags (include/linux/mman.h), with x86 protection keys.

On a CPU with protection keys (PKU), PROT_EXEC alone is made execute-only with
a dedicated key (arch/x86/mm/pkeys.c): the key is part of vm_flags, keeps such
a VMA from merging with, or sharing an anon_vma with, one that has the default
key, and makes its memory unreadable.  Without PKU every VMA has key 0 and
PROT_EXEC memory is readable, as x86 page tables cannot say otherwise.

The keys of an address space are allocated from a bit map (mm->context), the
execute-only key lazily, on the first PROT_EXEC-only mapping, as the first
free key; what a key allows is the task's PKRU register (two bits per key:
access-disable, write-disable).  Without OSPKE none of that is initialised,
which is why pkey_alloc() there fails with EINVAL once and ENOSPC after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmasim import constants as C
from vmasim.core.flags import VM_ACCESS_FLAGS, VM_EXEC, VM_PKEY_MASK, VM_PKEY_SHIFT

if TYPE_CHECKING:
    from vmasim.core.mm import MmStruct

# The key execute_only_pkey() hands out in a fresh address space: the first one after the default key 0.
EXEC_ONLY_PKEY = 1
#: PKEY_DISABLE_ACCESS and PKEY_DISABLE_WRITE, the rights pkey_alloc() takes.
PKEY_DISABLE_ACCESS = 1
PKEY_DISABLE_WRITE = 2
PKEY_ACCESS_MASK = PKEY_DISABLE_ACCESS | PKEY_DISABLE_WRITE


def calc_vm_prot_bits(prot: int, pkey: int = 0) -> int:
    """Like calc_vm_prot_bits(): PROT_READ/WRITE/EXEC to VM_READ/WRITE/EXEC (the same bit values) plus the key.

    Other bits (PROT_SEM, PROT_GROWSDOWN…) never reach vm_flags.
    """
    return (prot & (C.PROT_READ | C.PROT_WRITE | C.PROT_EXEC)) | (pkey << VM_PKEY_SHIFT)


def vma_pkey(vm_flags: int) -> int:
    """Like vma_pkey(): the protection key in ``vm_flags``."""
    return (vm_flags & VM_PKEY_MASK) >> VM_PKEY_SHIFT


def arch_max_pkey(mm: MmStruct) -> int:
    """Like arch_max_pkey(): 16 keys with OSPKE, else only the default one."""
    return 16 if mm.target.cpu.pku else 1


def mm_pkey_is_allocated(mm: MmStruct, pkey: int) -> bool:
    """Like mm_pkey_is_allocated(): a key pkey_alloc() returned (or 0), never the execute-only key."""
    if pkey < 0 or pkey >= arch_max_pkey(mm) or pkey == mm.execute_only_pkey:
        return False
    return bool(mm.pkey_allocation_map >> pkey & 1)


def mm_pkey_alloc(mm: MmStruct) -> int:
    """Like mm_pkey_alloc(): the lowest free key, marked allocated; -1 when none is left."""
    every = (1 << arch_max_pkey(mm)) - 1
    if mm.pkey_allocation_map & every == every:
        return -1
    free = ~mm.pkey_allocation_map & every
    key = (free & -free).bit_length() - 1  # ffz(): the lowest clear bit
    mm.pkey_allocation_map |= 1 << key
    return key


def mm_pkey_free(mm: MmStruct, pkey: int) -> bool:
    """Like mm_pkey_free(): False (EINVAL) for a key that is not allocated."""
    if not mm_pkey_is_allocated(mm, pkey):
        return False
    mm.pkey_allocation_map &= ~(1 << pkey)
    return True


def arch_set_user_pkey_access(mm: MmStruct, pkey: int, rights: int) -> bool:
    """Like arch_set_user_pkey_access(): set the key's rights in PKRU; False (EINVAL) without OSPKE."""
    if not mm.target.cpu.pku or pkey >= arch_max_pkey(mm):
        return False
    shift = 2 * pkey
    mm.pkru = (mm.pkru & ~(3 << shift)) | ((rights & PKEY_ACCESS_MASK) << shift)
    return True


def pkru_allows(mm: MmStruct, pkey: int, write: bool) -> bool:
    """Like __pkru_allows_pkey(): whether the task's PKRU lets it read (or write) memory with ``pkey``."""
    rights = mm.pkru >> (2 * pkey) & 3
    if rights & PKEY_DISABLE_ACCESS:
        return False
    return not (write and rights & PKEY_DISABLE_WRITE)


def execute_only_pkey(mm: MmStruct) -> int:
    """Like execute_only_pkey(): the execute-only key, allocated (access-disabled) on first use; -1 if none."""
    if not mm.target.cpu.pku:
        return 0
    key = mm.execute_only_pkey
    fresh = key == -1
    if fresh:
        key = mm_pkey_alloc(mm)
        if key < 0:
            return -1
    elif not pkru_allows(mm, key, write=False):
        return key  # already access-disabled: nothing to set
    arch_set_user_pkey_access(mm, key, PKEY_DISABLE_ACCESS)
    if fresh:
        mm.execute_only_pkey = key
    return key


def mmap_pkey(mm: MmStruct, prot: int) -> int:
    """Like do_mmap(): with protection keys, a PROT_EXEC-only mapping gets the execute-only key."""
    if prot != C.PROT_EXEC:
        return 0
    return max(execute_only_pkey(mm), 0)


def mprotect_pkey(mm: MmStruct, vm_flags: int, prot: int, pkey: int = -1) -> int:
    """Like arch_override_mprotect_pkey(): the key a VMA gets from mprotect (``pkey`` -1) or pkey_mprotect."""
    if not mm.target.cpu.pku:
        return 0
    if pkey != -1:
        return pkey  # pkey_mprotect(): the caller's key, never overridden
    if prot == C.PROT_EXEC:
        key = execute_only_pkey(mm)
        if key > 0:
            return key
    elif vm_flags & VM_ACCESS_FLAGS == VM_EXEC and vma_pkey(vm_flags) == mm.execute_only_pkey:
        return 0  # leaving execute-only: back to the default key
    return vma_pkey(vm_flags)
