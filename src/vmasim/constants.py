"""System-call constants, named as Python's ``mmap`` module and the Linux UAPI headers name them.

Values are those of x86_64 Linux.  They are plain ``int`` so that they can be
combined with ``|`` and passed to :class:`vmasim.AddressSpace` methods exactly
as they would be passed to the real system calls.
"""

from __future__ import annotations

from typing import Final

PAGE_SIZE: Final = 4096
PAGE_SHIFT: Final = 12
PAGE_MASK: Final = ~(PAGE_SIZE - 1)
#: What a 64-bit register holds: arguments are taken modulo 2**64, as the kernel receives them.
MASK64: Final = (1 << 64) - 1

# mmap/mprotect protection bits (include/uapi/asm-generic/mman-common.h)
PROT_NONE: Final = 0x0
PROT_READ: Final = 0x1
PROT_WRITE: Final = 0x2
PROT_EXEC: Final = 0x4
PROT_SEM: Final = 0x8
PROT_GROWSDOWN: Final = 0x01000000
PROT_GROWSUP: Final = 0x02000000

# mmap flags
MAP_SHARED: Final = 0x01
MAP_PRIVATE: Final = 0x02
MAP_SHARED_VALIDATE: Final = 0x03
MAP_DROPPABLE: Final = 0x08
MAP_TYPE: Final = 0x0F
MAP_FIXED: Final = 0x10
MAP_ANONYMOUS: Final = 0x20
MAP_ANON: Final = MAP_ANONYMOUS
MAP_32BIT: Final = 0x40
MAP_ABOVE4G: Final = 0x80
MAP_GROWSDOWN: Final = 0x0100
MAP_DENYWRITE: Final = 0x0800
MAP_EXECUTABLE: Final = 0x1000
MAP_LOCKED: Final = 0x2000
MAP_NORESERVE: Final = 0x4000
MAP_POPULATE: Final = 0x8000
MAP_NONBLOCK: Final = 0x10000
MAP_STACK: Final = 0x20000
MAP_HUGETLB: Final = 0x40000
MAP_SYNC: Final = 0x80000
MAP_FIXED_NOREPLACE: Final = 0x100000
MAP_UNINITIALIZED: Final = 0x4000000
# The huge page size of MAP_HUGETLB, as a log2 in these bits (0: the default size).
MAP_HUGE_SHIFT: Final = 26
MAP_HUGE_MASK: Final = 0x3F
MAP_HUGE_2MB: Final = 21 << MAP_HUGE_SHIFT
MAP_HUGE_1GB: Final = 30 << MAP_HUGE_SHIFT

# flags that MAP_SHARED_VALIDATE accepts (LEGACY_MAP_MASK plus the validated ones)
LEGACY_MAP_MASK: Final = (
    MAP_SHARED
    | MAP_PRIVATE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_DENYWRITE
    | MAP_EXECUTABLE
    | MAP_UNINITIALIZED
    | MAP_GROWSDOWN
    | MAP_LOCKED
    | MAP_NORESERVE
    | MAP_POPULATE
    | MAP_NONBLOCK
    | MAP_STACK
    | MAP_HUGETLB
    | MAP_32BIT
    | MAP_ABOVE4G
    | MAP_HUGE_2MB
    | MAP_HUGE_1GB
)

# madvise advice
MADV_NORMAL: Final = 0
MADV_RANDOM: Final = 1
MADV_SEQUENTIAL: Final = 2
MADV_WILLNEED: Final = 3
MADV_DONTNEED: Final = 4
MADV_FREE: Final = 8
MADV_REMOVE: Final = 9
MADV_DONTFORK: Final = 10
MADV_DOFORK: Final = 11
MADV_MERGEABLE: Final = 12
MADV_UNMERGEABLE: Final = 13
MADV_HUGEPAGE: Final = 14
MADV_NOHUGEPAGE: Final = 15
MADV_DONTDUMP: Final = 16
MADV_DODUMP: Final = 17
MADV_WIPEONFORK: Final = 18
MADV_KEEPONFORK: Final = 19
MADV_COLD: Final = 20
MADV_PAGEOUT: Final = 21
MADV_POPULATE_READ: Final = 22
MADV_POPULATE_WRITE: Final = 23
MADV_DONTNEED_LOCKED: Final = 24
MADV_COLLAPSE: Final = 25
MADV_HWPOISON: Final = 100
MADV_SOFT_OFFLINE: Final = 101
MADV_GUARD_INSTALL: Final = 102
MADV_GUARD_REMOVE: Final = 103

# mlock2 / mlockall
MLOCK_ONFAULT: Final = 0x01
MCL_CURRENT: Final = 1
MCL_FUTURE: Final = 2
MCL_ONFAULT: Final = 4

# mempolicy modes, mode flags and mbind flags (include/uapi/linux/mempolicy.h)
MPOL_DEFAULT: Final = 0
MPOL_PREFERRED: Final = 1
MPOL_BIND: Final = 2
MPOL_INTERLEAVE: Final = 3
MPOL_LOCAL: Final = 4
MPOL_PREFERRED_MANY: Final = 5
MPOL_WEIGHTED_INTERLEAVE: Final = 6
MPOL_MAX: Final = 7
MPOL_F_NUMA_BALANCING: Final = 1 << 13
MPOL_F_RELATIVE_NODES: Final = 1 << 14
MPOL_F_STATIC_NODES: Final = 1 << 15
MPOL_MODE_FLAGS: Final = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING
MPOL_MF_STRICT: Final = 1 << 0
MPOL_MF_MOVE: Final = 1 << 1
MPOL_MF_MOVE_ALL: Final = 1 << 2

# mremap
MREMAP_MAYMOVE: Final = 1
MREMAP_FIXED: Final = 2
MREMAP_DONTUNMAP: Final = 4

# userfaultfd
UFFDIO_REGISTER_MODE_MISSING: Final = 1
UFFDIO_REGISTER_MODE_WP: Final = 2
UFFDIO_REGISTER_MODE_MINOR: Final = 4
UFFD_FEATURE_EVENT_FORK: Final = 1 << 1
UFFD_FEATURE_SIGBUS: Final = 1 << 7

# prctl
PR_SET_VMA: Final = 0x53564D41
PR_SET_VMA_ANON_NAME: Final = 0
PR_SET_MEMORY_MERGE: Final = 67

# open(2) access modes
O_RDONLY: Final = 0
O_RDWR: Final = 2

# x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl)
NR_MMAP: Final = 9
NR_MPROTECT: Final = 10
NR_MUNMAP: Final = 11
NR_MREMAP: Final = 25
NR_MADVISE: Final = 28
NR_FTRUNCATE: Final = 77
NR_MLOCK: Final = 149
NR_MUNLOCK: Final = 150
NR_MLOCKALL: Final = 151
NR_MUNLOCKALL: Final = 152
NR_PRCTL: Final = 157
NR_MLOCK2: Final = 325
NR_MSEAL: Final = 462

# The top of x86_64's 47-bit user address space (DEFAULT_MAP_WINDOW; TASK_SIZE without 5-level
# paging).  Machine-dependent limits (5-level paging, mmap_min_addr, max_map_count) are the
# target's, see vmasim.core.target.
TASK_SIZE: Final = 0x7FFFFFFFF000
PMD_SIZE: Final = 2 * 1024 * 1024
