"""userfaultfd(2) as far as VMAs go: fs/userfaultfd.c's register/unregister and mm/userfaultfd.c's
userfaultfd_register_range(), userfaultfd_clear_vma() and userfaultfd_release_all()."""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.errors import kernel_error
from vmasim.core.flags import (
    VM_DROPPABLE,
    VM_HUGETLB,
    VM_MAYWRITE,
    VM_UFFD_FLAGS,
    VM_UFFD_MINOR,
    VM_UFFD_MISSING,
    VM_UFFD_WP,
)
from vmasim.core.merge import vma_modify_flags_uffd
from vmasim.core.mm import MmStruct
from vmasim.core.vma import UffdCtx, Vma
from vmasim.core.walk import Holes, walk_all, walk_range
from vmasim.syscalls.shm import vma_is_shmem

UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFD_FEATURE_EVENT_REMAP = 1 << 2
REGISTER_MODES = C.UFFDIO_REGISTER_MODE_MISSING | C.UFFDIO_REGISTER_MODE_WP | C.UFFDIO_REGISTER_MODE_MINOR


def uffd_api(mm: MmStruct, features: int) -> UffdCtx:
    """userfaultfd() plus the UFFDIO_API handshake: a new context, EINVAL for features the target lacks.

    Without CAP_SYS_PTRACE and with vm.unprivileged_userfaultfd off, only a
    UFFD_USER_MODE_ONLY context can be had (what the kernel runner falls back to).
    """
    if features & ~mm.target.memory.uffd_features:
        raise kernel_error(errno.EINVAL, "UFFDIO_API", "unsupported features")
    limits = mm.target.limits
    user_mode_only = not (limits.privileged or limits.unprivileged_userfaultfd)
    return UffdCtx(mm, mm.ids, features, user_mode_only=user_mode_only)


def vma_can_userfault(vma: Vma, vm_flags: int, wp_async: bool) -> bool:
    """Like vma_can_userfault(): anonymous or shmem memory; MINOR on shmem only; never droppable."""
    vm_flags &= VM_UFFD_FLAGS
    if vma.vm_flags & VM_DROPPABLE:
        return False
    shmem = vma_is_shmem(vma)
    hugetlb = bool(vma.vm_flags & VM_HUGETLB)
    if vm_flags & VM_UFFD_MINOR and not (hugetlb or shmem):
        return False
    if wp_async and vm_flags == VM_UFFD_WP:
        return True
    return vma.is_anonymous or hugetlb or shmem


def _validate_range(mm: MmStruct, start: int, length: int, call: str) -> int:
    # validate_range(): page-aligned, non-empty, inside the address space (the kernel has no
    # mmap_min_addr check here any more: a mapping at 0, which privilege allows, can be registered).
    if start & (C.PAGE_SIZE - 1) or length & (C.PAGE_SIZE - 1) or not length:
        raise kernel_error(errno.EINVAL, call, "unaligned or empty range")
    if start >= mm.task_size or length > mm.task_size - start:
        raise kernel_error(errno.EINVAL, call, "range outside the user address space")
    return start + length


def _prepare(ctx: UffdCtx, start: int, length: int, call: str) -> tuple[MmStruct, int, bool, list[Vma]]:
    # The common start of register and unregister: the context's mm, the validated range (at least
    # one VMA in it; holes are fine) and whether asynchronous write-protection was negotiated.
    mm = ctx.mm
    assert isinstance(mm, MmStruct)
    end = _validate_range(mm, start, length, call)
    if mm.exited:
        # The context's mm was torn down by an execve: mmget_not_zero() fails.
        raise kernel_error(errno.ENOMEM, call, "the userfaultfd's address space is gone")
    vmas = list(mm.vmas.range(start, end))
    if not vmas:
        raise kernel_error(errno.EINVAL, call, "nothing mapped in the range")
    return mm, end, bool(ctx.features & UFFD_FEATURE_WP_ASYNC), vmas


def _set_ctx(mm: MmStruct, vma: Vma, ctx: UffdCtx | None, flags: int) -> None:
    # userfaultfd_set_ctx() / userfaultfd_reset_ctx(): in place, no merge.
    vma.uffd_ctx = ctx
    mm.set_flags(vma, (vma.vm_flags & ~VM_UFFD_FLAGS) | flags)


def uffd_register(ctx: UffdCtx, start: int, length: int, mode: int) -> int:
    """UFFDIO_REGISTER: all VMAs in the range are checked first, then registered (holes are fine)."""
    call = "UFFDIO_REGISTER"
    if not mode or mode & ~REGISTER_MODES:
        raise kernel_error(errno.EINVAL, call, "bad mode")
    vm_flags = (
        (VM_UFFD_MISSING if mode & C.UFFDIO_REGISTER_MODE_MISSING else 0)
        | (VM_UFFD_WP if mode & C.UFFDIO_REGISTER_MODE_WP else 0)
        | (VM_UFFD_MINOR if mode & C.UFFDIO_REGISTER_MODE_MINOR else 0)
    )
    mm, end, wp_async, vmas = _prepare(ctx, start, length, call)
    for vma in vmas:
        if not vma_can_userfault(vma, vm_flags, wp_async):
            raise kernel_error(errno.EINVAL, call, "memory of this kind cannot be registered")
        if not vma.vm_flags & VM_MAYWRITE:
            raise kernel_error(errno.EPERM, call, "mapping can never be writable")
        if vma.uffd_ctx is not None and vma.uffd_ctx is not ctx:
            raise kernel_error(errno.EBUSY, call, "already registered with another userfaultfd")

    def register(prev: Vma | None, vma: Vma, s: int, e: int) -> Vma:
        # userfaultfd_register_range(): VMAs registered already, the same way, are left alone.
        if vma.uffd_ctx is ctx and vma.vm_flags & vm_flags == vm_flags:
            return vma
        return vma_modify_flags_uffd(mm, prev, vma, s, e, (vma.vm_flags & ~VM_UFFD_FLAGS) | vm_flags, ctx)

    walk_range(mm, start, end, register, holes=Holes.ALLOW, call=call)
    return 0


def userfaultfd_clear_vma(mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int) -> Vma:
    """Like userfaultfd_clear_vma(): drop the registration of ``[start, end)``, merging where possible."""
    whole = start == vma.start and end == vma.end
    try:
        return vma_modify_flags_uffd(mm, prev, vma, start, end, vma.vm_flags & ~VM_UFFD_FLAGS, None)
    except OSError:
        if not whole:
            raise
        _set_ctx(mm, vma, None, 0)  # give_up_on_oom: just clear the flags without merging
        return vma


def uffd_unregister(ctx: UffdCtx, start: int, length: int) -> int:
    """UFFDIO_UNREGISTER: EINVAL if any VMA belongs to another context or cannot userfault."""
    call = "UFFDIO_UNREGISTER"
    mm, end, wp_async, vmas = _prepare(ctx, start, length, call)
    for vma in vmas:
        if vma.uffd_ctx is not None and vma.uffd_ctx is not ctx:
            raise kernel_error(errno.EINVAL, call, "registered with another userfaultfd")
        if not vma_can_userfault(vma, vma.vm_flags, wp_async):
            raise kernel_error(errno.EINVAL, call, "memory of this kind cannot be registered")

    def unregister(prev: Vma | None, vma: Vma, s: int, e: int) -> Vma:
        return userfaultfd_clear_vma(mm, prev, vma, s, e) if vma.uffd_ctx is not None else vma

    walk_range(mm, start, end, unregister, holes=Holes.ALLOW, call=call)
    return 0


def userfaultfd_release_all(ctx: UffdCtx) -> None:
    """Like userfaultfd_release_all(): the last descriptor closed; every VMA of the context is cleared."""
    mm = ctx.mm
    assert isinstance(mm, MmStruct)
    ctx.released = True
    if mm.exited:
        return  # its VMAs went with the address space

    def release(prev: Vma | None, vma: Vma, s: int, e: int) -> Vma:
        return userfaultfd_clear_vma(mm, prev, vma, s, e) if vma.uffd_ctx is ctx else vma

    walk_all(mm, release)


def dup_userfaultfd(vma: Vma) -> None:
    """Like dup_userfaultfd() without UFFD_FEATURE_EVENT_FORK: the child's copy forgets the registration."""
    vma.uffd_ctx = None
    vma.vm_flags &= ~VM_UFFD_FLAGS


def mremap_userfaultfd_prep(mm: MmStruct, new_vma: Vma) -> None:
    """Like mremap_userfaultfd_prep(): without UFFD_FEATURE_EVENT_REMAP the moved VMA is unregistered in place."""
    ctx = new_vma.uffd_ctx
    if ctx is not None and not ctx.features & UFFD_FEATURE_EVENT_REMAP:
        _set_ctx(mm, new_vma, None, 0)
