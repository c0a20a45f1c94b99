"""The name tables of the program format: how programs spell flags, advice, modes and the like.

Each table maps the names a program may write to the values the system call
receives; :mod:`vmasim.program.ops` builds the op definitions from them.
"""

from __future__ import annotations

from vmasim import constants as C

MMAP_FLAGS: dict[str, int] = {
    "private": C.MAP_PRIVATE,
    "shared": C.MAP_SHARED,
    "shared_validate": C.MAP_SHARED_VALIDATE,
    "anonymous": C.MAP_ANONYMOUS,
    "fixed": C.MAP_FIXED,
    "fixed_noreplace": C.MAP_FIXED_NOREPLACE,
    "noreserve": C.MAP_NORESERVE,
    "populate": C.MAP_POPULATE,
    "locked": C.MAP_LOCKED,
    "growsdown": C.MAP_GROWSDOWN,
    "stack": C.MAP_STACK,
    "droppable": C.MAP_DROPPABLE,
    "nonblock": C.MAP_NONBLOCK,
}
PROT_FLAGS: dict[str, int] = {"growsdown": C.PROT_GROWSDOWN, "growsup": C.PROT_GROWSUP}
ADVICE: dict[str, int] = {
    "normal": C.MADV_NORMAL,
    "random": C.MADV_RANDOM,
    "sequential": C.MADV_SEQUENTIAL,
    "willneed": C.MADV_WILLNEED,
    "dontneed": C.MADV_DONTNEED,
    "free": C.MADV_FREE,
    "remove": C.MADV_REMOVE,
    "dontfork": C.MADV_DONTFORK,
    "dofork": C.MADV_DOFORK,
    "mergeable": C.MADV_MERGEABLE,
    "unmergeable": C.MADV_UNMERGEABLE,
    "hugepage": C.MADV_HUGEPAGE,
    "nohugepage": C.MADV_NOHUGEPAGE,
    "dontdump": C.MADV_DONTDUMP,
    "dodump": C.MADV_DODUMP,
    "wipeonfork": C.MADV_WIPEONFORK,
    "keeponfork": C.MADV_KEEPONFORK,
    "cold": C.MADV_COLD,
    "pageout": C.MADV_PAGEOUT,
    "populate_read": C.MADV_POPULATE_READ,
    "populate_write": C.MADV_POPULATE_WRITE,
    "dontneed_locked": C.MADV_DONTNEED_LOCKED,
    "collapse": C.MADV_COLLAPSE,
    "guard_install": C.MADV_GUARD_INSTALL,
    "guard_remove": C.MADV_GUARD_REMOVE,
}
MLOCK2_FLAGS: dict[str, int] = {"onfault": C.MLOCK_ONFAULT}
MLOCKALL_FLAGS: dict[str, int] = {"current": C.MCL_CURRENT, "future": C.MCL_FUTURE, "onfault": C.MCL_ONFAULT}
MPOL_MODES: dict[str, int] = {
    "default": C.MPOL_DEFAULT,
    "preferred": C.MPOL_PREFERRED,
    "bind": C.MPOL_BIND,
    "interleave": C.MPOL_INTERLEAVE,
    "local": C.MPOL_LOCAL,
    "preferred_many": C.MPOL_PREFERRED_MANY,
    "weighted_interleave": C.MPOL_WEIGHTED_INTERLEAVE,
}
MPOL_MODE_FLAGS: dict[str, int] = {"static": C.MPOL_F_STATIC_NODES, "relative": C.MPOL_F_RELATIVE_NODES}
MBIND_FLAGS: dict[str, int] = {"strict": C.MPOL_MF_STRICT, "move": C.MPOL_MF_MOVE, "move_all": C.MPOL_MF_MOVE_ALL}
MREMAP_FLAGS: dict[str, int] = {"maymove": C.MREMAP_MAYMOVE, "fixed": C.MREMAP_FIXED, "dontunmap": C.MREMAP_DONTUNMAP}
UFFD_MODES: dict[str, int] = {
    "missing": C.UFFDIO_REGISTER_MODE_MISSING,
    "wp": C.UFFDIO_REGISTER_MODE_WP,
    "minor": C.UFFDIO_REGISTER_MODE_MINOR,
}
UFFD_FEATURES: dict[str, int] = {
    "pagefault_flag_wp": 1 << 0,
    "event_fork": 1 << 1,
    "event_remap": 1 << 2,
    "event_remove": 1 << 3,
    "missing_hugetlbfs": 1 << 4,
    "missing_shmem": 1 << 5,
    "event_unmap": 1 << 6,
    "sigbus": 1 << 7,
    "thread_id": 1 << 8,
    "minor_hugetlbfs": 1 << 9,
    "minor_shmem": 1 << 10,
    "exact_address": 1 << 11,
    "wp_hugetlbfs_shmem": 1 << 12,
    "wp_unpopulated": 1 << 13,
    "poison": 1 << 14,
    "wp_async": 1 << 15,
    "move": 1 << 16,
}
OPEN_MODES: dict[str, int] = {"r": C.O_RDONLY, "rw": C.O_RDWR}
#: Where a ``file`` lives: the runner's temporary directory, or a tmpfs (like shm_open(): /dev/shm).
FILE_SYSTEMS: dict[str, int] = {"regular": 0, "tmpfs": 1}
SHMGET_FLAGS: dict[str, int] = {"noreserve": 0o10000}
SHMAT_FLAGS: dict[str, int] = {"rdonly": 0o10000, "rnd": 0o20000, "remap": 0o40000, "exec": 0o100000}
PKEY_RIGHTS: dict[str, int] = {"disable_access": 1, "disable_write": 2}
#: The most bytes one pwrite op writes (the runner writes from a buffer of this size).
PWRITE_MAX = 1 << 16
NR_PKEY_MPROTECT = 329
NR_PKEY_ALLOC = 330
NR_PKEY_FREE = 331
NR_SHMAT = 30
NR_SHMDT = 67
#: The longest anonymous VMA name the format takes: far past the kernel's limit, which then judges it.
ANON_NAME_FORMAT_MAX = 1 << 20
