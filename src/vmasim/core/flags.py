"""vm_flags bits of x86_64 Linux 6.18 (include/linux/mm.h) and their smaps ``VmFlags`` mnemonics.

The model stores ``vm_flags`` as a plain ``int`` for speed (an address space
may hold 65,530 VMAs); :class:`VmFlag` is the same set of bits as an
``enum.IntFlag`` for users who want names.
"""

from __future__ import annotations

import enum
from typing import Final


class VmFlag(enum.IntFlag):
    """One vm_flags bit, named as in include/linux/mm.h without the ``VM_`` prefix."""

    NONE = 0
    READ = 1 << 0
    WRITE = 1 << 1
    EXEC = 1 << 2
    SHARED = 1 << 3
    MAYREAD = 1 << 4
    MAYWRITE = 1 << 5
    MAYEXEC = 1 << 6
    MAYSHARE = 1 << 7
    GROWSDOWN = 1 << 8
    UFFD_MISSING = 1 << 9
    PFNMAP = 1 << 10
    MAYBE_GUARD = 1 << 11
    UFFD_WP = 1 << 12
    LOCKED = 1 << 13
    IO = 1 << 14
    SEQ_READ = 1 << 15
    RAND_READ = 1 << 16
    DONTCOPY = 1 << 17
    DONTEXPAND = 1 << 18
    LOCKONFAULT = 1 << 19
    ACCOUNT = 1 << 20
    NORESERVE = 1 << 21
    HUGETLB = 1 << 22
    SYNC = 1 << 23
    ARCH_1 = 1 << 24
    WIPEONFORK = 1 << 25
    DONTDUMP = 1 << 26
    SOFTDIRTY = 1 << 27
    MIXEDMAP = 1 << 28
    HUGEPAGE = 1 << 29
    NOHUGEPAGE = 1 << 30
    MERGEABLE = 1 << 31
    PKEY_BIT0 = 1 << 32
    PKEY_BIT1 = 1 << 33
    PKEY_BIT2 = 1 << 34
    PKEY_BIT3 = 1 << 35
    DROPPABLE = 1 << 40
    UFFD_MINOR = 1 << 41
    SEALED = 1 << 42


VM_NONE: Final = 0
VM_READ: Final = int(VmFlag.READ)
VM_WRITE: Final = int(VmFlag.WRITE)
VM_EXEC: Final = int(VmFlag.EXEC)
VM_SHARED: Final = int(VmFlag.SHARED)
VM_MAYREAD: Final = int(VmFlag.MAYREAD)
VM_MAYWRITE: Final = int(VmFlag.MAYWRITE)
VM_MAYEXEC: Final = int(VmFlag.MAYEXEC)
VM_MAYSHARE: Final = int(VmFlag.MAYSHARE)
VM_GROWSDOWN: Final = int(VmFlag.GROWSDOWN)
VM_UFFD_MISSING: Final = int(VmFlag.UFFD_MISSING)
VM_PFNMAP: Final = int(VmFlag.PFNMAP)
VM_MAYBE_GUARD: Final = int(VmFlag.MAYBE_GUARD)
VM_UFFD_WP: Final = int(VmFlag.UFFD_WP)
VM_LOCKED: Final = int(VmFlag.LOCKED)
VM_IO: Final = int(VmFlag.IO)
VM_SEQ_READ: Final = int(VmFlag.SEQ_READ)
VM_RAND_READ: Final = int(VmFlag.RAND_READ)
VM_DONTCOPY: Final = int(VmFlag.DONTCOPY)
VM_DONTEXPAND: Final = int(VmFlag.DONTEXPAND)
VM_LOCKONFAULT: Final = int(VmFlag.LOCKONFAULT)
VM_ACCOUNT: Final = int(VmFlag.ACCOUNT)
VM_NORESERVE: Final = int(VmFlag.NORESERVE)
VM_HUGETLB: Final = int(VmFlag.HUGETLB)
VM_SYNC: Final = int(VmFlag.SYNC)
VM_ARCH_1: Final = int(VmFlag.ARCH_1)
VM_WIPEONFORK: Final = int(VmFlag.WIPEONFORK)
VM_DONTDUMP: Final = int(VmFlag.DONTDUMP)
VM_SOFTDIRTY: Final = int(VmFlag.SOFTDIRTY)  # set on new VMAs only where the target has CONFIG_MEM_SOFT_DIRTY
VM_MIXEDMAP: Final = int(VmFlag.MIXEDMAP)
VM_HUGEPAGE: Final = int(VmFlag.HUGEPAGE)
VM_NOHUGEPAGE: Final = int(VmFlag.NOHUGEPAGE)
VM_MERGEABLE: Final = int(VmFlag.MERGEABLE)
VM_DROPPABLE: Final = int(VmFlag.DROPPABLE)
VM_UFFD_MINOR: Final = int(VmFlag.UFFD_MINOR)
VM_SEALED: Final = int(VmFlag.SEALED)

# Protection-key bits (VM_PKEY_BIT0..3): not shown in VmFlags, but part of vm_flags.
VM_PKEY_SHIFT: Final = 32
VM_PKEY_MASK: Final = 0xF << VM_PKEY_SHIFT

VM_ACCESS_FLAGS: Final = VM_READ | VM_WRITE | VM_EXEC
VM_SPECIAL: Final = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
VM_LOCKED_MASK: Final = VM_LOCKED | VM_LOCKONFAULT
VM_UFFD_FLAGS: Final = VM_UFFD_MISSING | VM_UFFD_WP | VM_UFFD_MINOR
VM_STACK: Final = VM_GROWSDOWN  # x86 stacks grow down
VM_STARTGAP_FLAGS: Final = VM_GROWSDOWN
# Sticky flags survive merges (OR-ed into the result) and never block one, as in 6.19.  On a
# target without the VM_MAYBE_GUARD flag nothing sets it; soft-dirty VMAs are all soft-dirty
# (nothing clears the bit), so OR-ing it changes nothing either.
VM_STICKY: Final = VM_SOFTDIRTY | VM_MAYBE_GUARD
VM_IGNORE_MERGE: Final = VM_SOFTDIRTY | VM_STICKY
# x86's VM_DATA_DEFAULT_FLAGS (without READ_IMPLIES_EXEC), used for brk.
VM_DATA_DEFAULT_FLAGS: Final = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC

# The smaps VmFlags mnemonics in bit order, like fs/proc/task_mmu.c's show_smap_vma_flags().
MNEMONICS: tuple[tuple[int, str], ...] = (
    (VM_READ, "rd"),
    (VM_WRITE, "wr"),
    (VM_EXEC, "ex"),
    (VM_SHARED, "sh"),
    (VM_MAYREAD, "mr"),
    (VM_MAYWRITE, "mw"),
    (VM_MAYEXEC, "me"),
    (VM_MAYSHARE, "ms"),
    (VM_GROWSDOWN, "gd"),
    (VM_UFFD_MISSING, "um"),
    (VM_PFNMAP, "pf"),
    (VM_MAYBE_GUARD, "gu"),
    (VM_UFFD_WP, "uw"),
    (VM_LOCKED, "lo"),
    (VM_IO, "io"),
    (VM_SEQ_READ, "sr"),
    (VM_RAND_READ, "rr"),
    (VM_DONTCOPY, "dc"),
    (VM_DONTEXPAND, "de"),
    (VM_LOCKONFAULT, "lf"),
    (VM_ACCOUNT, "ac"),
    (VM_NORESERVE, "nr"),
    (VM_HUGETLB, "ht"),
    (VM_SYNC, "sf"),
    (VM_ARCH_1, "ar"),
    (VM_WIPEONFORK, "wf"),
    (VM_DONTDUMP, "dd"),
    (VM_SOFTDIRTY, "sd"),
    (VM_MIXEDMAP, "mm"),
    (VM_HUGEPAGE, "hg"),
    (VM_NOHUGEPAGE, "nh"),
    (VM_MERGEABLE, "mg"),
    (VM_DROPPABLE, "dp"),
    (VM_UFFD_MINOR, "ui"),
    (VM_SEALED, "sl"),
)
_BY_MNEMONIC = {name: bit for bit, name in MNEMONICS}
#: What each smaps VmFlags mnemonic means, in a few words.
MNEMONIC_MEANINGS: dict[str, str] = {
    "rd": "readable", "wr": "writeable", "ex": "executable", "sh": "shared", "mr": "may read",
    "mw": "may write", "me": "may execute", "ms": "may share", "gd": "stack grows down",
    "pf": "pure PFN range", "io": "memory-mapped I/O", "sr": "sequential read advised",
    "rr": "random read advised", "dc": "not copied on fork", "de": "not expanded on remap",
    "ac": "accounted (commit charge)", "nr": "swap space not reserved", "ht": "hugetlb pages",
    "sf": "synchronous page faults", "ar": "architecture specific", "wf": "wiped on fork",
    "dd": "not in core dumps", "sd": "soft dirty", "mm": "mixed map", "hg": "huge pages advised",
    "nh": "no huge pages advised", "mg": "mergeable (KSM) advised", "um": "userfaultfd missing tracking",
    "uw": "userfaultfd write-protect tracking", "ui": "userfaultfd minor-fault tracking", "lo": "locked",
    "lf": "locked on fault", "sl": "sealed", "gu": "may contain guard regions", "dp": "droppable",
}



_MNEMONICS_OF: dict[int, tuple[str, ...]] = {}


def mnemonics(vm_flags: int) -> list[str]:
    """The VmFlags mnemonics of ``vm_flags`` in the order smaps prints them."""
    # Rendering and comparing a layout asks this for every VMA, and a process has few distinct vm_flags.
    names = _MNEMONICS_OF.get(vm_flags)
    if names is None:
        if len(_MNEMONICS_OF) >= 4096:
            _MNEMONICS_OF.clear()
        names = _MNEMONICS_OF[vm_flags] = tuple(name for bit, name in MNEMONICS if vm_flags & bit)
    return list(names)


def from_mnemonics(names: list[str] | str) -> int:
    """The vm_flags bits named by smaps mnemonics (a list or a space-separated string)."""
    if isinstance(names, str):
        names = names.split()
    bits = 0
    for name in names:
        bits |= _BY_MNEMONIC[name]
    return bits


# (bit, "VM_NAME") as plain ints: describe() runs on every refused merge, where enum arithmetic is slow.
_VM_NAMES: tuple[tuple[int, str], ...] = tuple((int(flag), f"VM_{flag.name}") for flag in VmFlag if flag)


def describe(vm_flags: int) -> str:
    """The flags as ``VM_`` names joined with ``|`` (``VM_NONE`` for none)."""
    return "|".join(name for bit, name in _VM_NAMES if vm_flags & bit) or "VM_NONE"


def is_exec_mapping(vm_flags: int) -> bool:
    """Like include/linux/mm.h's is_exec_mapping(): executable, not writable, not a stack."""
    return vm_flags & (VM_EXEC | VM_WRITE | VM_STACK) == VM_EXEC


def is_stack_mapping(vm_flags: int) -> bool:
    """Like is_stack_mapping(): a VM_GROWSDOWN area."""
    return vm_flags & VM_STACK == VM_STACK


def is_data_mapping(vm_flags: int) -> bool:
    """Like is_data_mapping(): private and writable, not a stack."""
    return vm_flags & (VM_WRITE | VM_SHARED | VM_STACK) == VM_WRITE


def ksm_compatible(vm_flags: int) -> bool:
    """Like mm/ksm.c's vma_ksm_compatible(): KSM works on private, ordinary memory only."""
    bad = VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_HUGETLB | VM_MIXEDMAP | VM_DROPPABLE
    return not vm_flags & bad
