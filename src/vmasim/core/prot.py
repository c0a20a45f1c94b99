"""Translating PROT_* bits into vm_flags (include/linux/mman.h)."""

from __future__ import annotations

from vmasim import constants as C


def calc_vm_prot_bits(prot: int) -> int:
    """Like calc_vm_prot_bits(): PROT_READ/WRITE/EXEC to VM_READ/WRITE/EXEC (the same bit values).

    Other bits (PROT_SEM, PROT_GROWSDOWN…) never reach vm_flags.
    """
    return prot & (C.PROT_READ | C.PROT_WRITE | C.PROT_EXEC)
