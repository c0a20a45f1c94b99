"""What machine the model models: the target, passed into every address space, never read from the host.

Whether two VMAs merge, where a mapping lands and which call fails depend on
more than the kernel's source: the kernel release and its backports, the CPU
(protection keys, 5-level paging), sysctls and rlimits, THP modes, NUMA nodes,
the file systems.  :class:`Target` holds all of that as one frozen value, in
sections that follow those lines.  The core reads it through ``mm.target``;
building one from a host (``vmasim probe``) or from JSON is the business of
:mod:`vmasim.profiles`, outside the core.

The defaults describe the machine the project was first built on: Linux
6.18.44 on x86_64 with protection keys, a vendor build carrying two 6.19
behaviours (the sticky ``VM_MAYBE_GUARD`` flag and the relaxed anon_vma merge
rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: THP modes as /sys/kernel/mm/transparent_hugepage/enabled and shmem_enabled name them.
THP_ANON_MODES = ("always", "madvise", "never")
THP_SHMEM_MODES = ("always", "within_size", "advise", "never", "deny", "force")


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelBehaviour:
    """The kernel release and the version- or config-dependent rules the model follows."""

    release: str = "6.18.44"
    #: MADV_GUARD_INSTALL marks the VMA with the sticky VM_MAYBE_GUARD flag ('gu'), which survives
    #: merges and never blocks one (6.19, backported by some vendors).
    maybe_guard_flag: bool = True
    #: The 6.16 rules of is_mergeable_anon_vma(): a faulted range may merge into an unfaulted
    #: neighbour and the reverse, except through fork; off means the older rules (target singular).
    anon_vma_relaxed: bool = True
    #: mremap(MREMAP_FIXED) with equal lengths may move several VMAs at once, keeping the gaps (6.17).
    multi_vma_mremap: bool = True
    #: CONFIG_ANON_VMA_NAME: prctl(PR_SET_VMA_ANON_NAME) names anonymous VMAs (else EINVAL).
    anon_vma_name: bool = False
    #: CONFIG_MEM_SOFT_DIRTY: new VMAs carry VM_SOFTDIRTY ('sd'), which never blocks a merge.
    soft_dirty: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Cpu:
    """CPU features that reach the VMA layer."""

    #: Protection keys (x86 'pku' with 'ospke'): PROT_EXEC alone gets the execute-only key, which
    #: makes the memory unreadable and keeps it from merging with default-key neighbours.
    pku: bool = True
    #: 5-level paging ('la57'): TASK_SIZE grows to 56 bits, reached only with hints above 47 bits.
    la57: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Sysctls, rlimits and privileges (``None`` for an rlimit means unlimited)."""

    max_map_count: int = 65530
    #: vm.mmap_min_addr, the sysctl.
    mmap_min_addr: int = 4096
    #: CONFIG_LSM_MMAP_MIN_ADDR (0 where the kernel has none): the kernel's mmap_min_addr, which
    #: hints are raised to and searches stay above, is the larger of the two.
    lsm_mmap_min_addr: int = 65536
    #: The stack_guard_gap boot parameter (256 pages by default): kept free below a stack VMA.
    stack_guard_gap: int = 256 << 12
    #: vm.overcommit_memory: 0 heuristic, 1 always, 2 never.
    overcommit_memory: int = 0
    overcommit_ratio: int = 50
    overcommit_kbytes: int = 0
    #: vm.unprivileged_userfaultfd.
    unprivileged_userfaultfd: bool = False
    rlimit_memlock: int | None = 8 << 20
    rlimit_as: int | None = None
    rlimit_data: int | None = None
    #: Root, with CAP_IPC_LOCK, CAP_SYS_RESOURCE and CAP_SYS_PTRACE: mlock ignores RLIMIT_MEMLOCK
    #: and userfaultfd needs no sysctl.
    privileged: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Memory:
    """Memory, THP, NUMA, hugetlb and userfaultfd facts."""

    #: MemTotal and SwapTotal in pages: the heuristic overcommit check refuses one request larger.
    ram_pages: int = (24 << 30) >> 12
    swap_pages: int = 0
    thp_anon: str = "madvise"
    thp_shmem: str = "never"
    #: Orders enabled for anonymous shmem by the per-size controls (hugepages-*kB/shmem_enabled),
    #: as a bit mask of orders (bit 9 = 2 MiB); used for shared anonymous placement.
    shmem_mthp_orders: int = 0
    #: Online NUMA nodes.
    numa_nodes: tuple[int, ...] = (0,)
    #: Huge page sizes the kernel has pools for (MAP_HUGE_*), the default first (empty: MAP_HUGETLB is EINVAL).
    hugetlb_sizes: tuple[int, ...] = ()
    #: The features UFFDIO_API offers (features=0 answers this mask).
    uffd_features: int = 0x1FFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class Files:
    """The file systems files live on."""

    #: The file system of regular files ('file' objects): "ext4", "xfs", "btrfs" or "tmpfs".
    regular_fs: str = "ext4"
    #: The largest regular file (ext4 with 4 KiB blocks: 2**32 - 1 blocks); ftruncate beyond is EFBIG.
    regular_max_bytes: int = 0xFFFFFFFF000
    #: Where regular files are on tmpfs: the mount's huge= option (their huge-page placement).
    tmpfs_huge: str = "never"
    #: The largest shmem file (memfd): MAX_LFS_FILESIZE.
    shmem_max_bytes: int = (1 << 63) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The whole modelled machine: kernel behaviour, CPU, limits, memory and file systems."""

    kernel: KernelBehaviour = field(default_factory=KernelBehaviour)
    cpu: Cpu = field(default_factory=Cpu)
    limits: Limits = field(default_factory=Limits)
    memory: Memory = field(default_factory=Memory)
    files: Files = field(default_factory=Files)

    @property
    def task_size(self) -> int:
        """TASK_SIZE_MAX: the top of the user address space (47 or 56 bits, less a page)."""
        return (1 << 56) - 4096 if self.cpu.la57 else (1 << 47) - 4096

    @property
    def map_window(self) -> int:
        """DEFAULT_MAP_WINDOW: the top of the space searched without a hint above it."""
        return (1 << 47) - 4096

    @property
    def mmap_min_addr(self) -> int:
        """The effective mmap_min_addr: what hints are raised to."""
        return max(self.limits.mmap_min_addr, self.limits.lsm_mmap_min_addr)


DEFAULT_TARGET = Target()
