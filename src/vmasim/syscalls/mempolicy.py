"""mbind(2) and set_mempolicy(2): mm/mempolicy.c's do_mbind(), mbind_range() and do_set_mempolicy().

Node masks are cut down to the target's online nodes, as mpol_set_nodemask()
does, and an empty result is EINVAL.  Pages are taken to live on the first
online node (where a task on that node allocates them); which node a page of
a multi-node machine really landed on is not modelled.
"""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.addr import page_align
from vmasim.core.errors import kernel_error
from vmasim.core.merge import vma_modify_policy
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Mempolicy, Vma, mpol_equal
from vmasim.core.walk import Holes, walk_range

MPOL_MF_VALID = C.MPOL_MF_STRICT | C.MPOL_MF_MOVE | C.MPOL_MF_MOVE_ALL


def _relative(user: int, allowed: int) -> int:
    # mpol_relative_nodemask(): node i of the request means the (i mod weight)-th allowed node.
    allowed_nodes = [n for n in range(64) if allowed >> n & 1]
    out = 0
    for n in range(64):
        if user >> n & 1:
            out |= 1 << allowed_nodes[n % len(allowed_nodes)]
    return out


def sanitize_mode(mode_arg: int, call: str) -> tuple[int, int]:
    """Like sanitize_mpol_flags(): split the mode argument into (mode, mode flags), EINVAL if invalid."""
    flags = mode_arg & C.MPOL_MODE_FLAGS
    mode = mode_arg & ~C.MPOL_MODE_FLAGS
    if not 0 <= mode < C.MPOL_MAX:  # compared as an unsigned int: a negative mode is out of range too
        raise kernel_error(errno.EINVAL, call, "unknown mode")
    if flags & C.MPOL_F_STATIC_NODES and flags & C.MPOL_F_RELATIVE_NODES:
        raise kernel_error(errno.EINVAL, call, "static and relative nodes together")
    if flags & C.MPOL_F_NUMA_BALANCING and mode not in (C.MPOL_BIND, C.MPOL_PREFERRED_MANY):
        raise kernel_error(errno.EINVAL, call, "NUMA balancing only with bind or preferred-many")
    return mode, flags


def online_nodes(mm: MmStruct) -> int:
    """The target's online nodes as a mask (the task's allowed nodes: no cpuset restricts them)."""
    mask = 0
    for node in mm.target.memory.numa_nodes:
        mask |= 1 << node
    return mask


def mpol_new(mm: MmStruct, mode: int, flags: int, nodes: int, call: str) -> Mempolicy | None:
    """Like mpol_new() + mpol_set_nodemask(): the policy, or None for MPOL_DEFAULT."""
    if mode == C.MPOL_DEFAULT:
        if nodes:
            raise kernel_error(errno.EINVAL, call, "MPOL_DEFAULT takes no nodes")
        return None
    if mode == C.MPOL_PREFERRED and not nodes:
        if flags & (C.MPOL_F_STATIC_NODES | C.MPOL_F_RELATIVE_NODES):
            raise kernel_error(errno.EINVAL, call, "local preference with node flags")
        mode = C.MPOL_LOCAL
    elif mode == C.MPOL_LOCAL:
        if nodes or flags & (C.MPOL_F_STATIC_NODES | C.MPOL_F_RELATIVE_NODES):
            raise kernel_error(errno.EINVAL, call, "MPOL_LOCAL takes no nodes")
    elif not nodes:
        raise kernel_error(errno.EINVAL, call, "empty node mask")
    if mode == C.MPOL_LOCAL:
        return Mempolicy(mode, flags)
    online = online_nodes(mm)
    effective = _relative(nodes, online) if flags & C.MPOL_F_RELATIVE_NODES else nodes & online
    if not effective:
        raise kernel_error(errno.EINVAL, call, "no online node in the mask")
    if mode == C.MPOL_PREFERRED:
        effective &= -effective  # the first node only
    user = nodes if flags & (C.MPOL_F_STATIC_NODES | C.MPOL_F_RELATIVE_NODES) else 0
    return Mempolicy(mode, flags, effective, user)


def mbind_range(mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int, policy: Mempolicy | None) -> Vma:
    """Like mbind_range(): give ``[start, end)`` of ``vma`` the policy; no split when it already has it."""
    if mpol_equal(vma.policy, policy):
        return vma
    vma = vma_modify_policy(mm, prev, vma, start, end, policy)
    if vma.file is not None and vma.file.inode.is_shmem:
        # shmem_set_policy(): shmem keeps the policy with the object, for the whole VMA's pages.
        vma.file.inode.set_shared_policy(vma.pgoff, vma.pgoff + vma.pages, policy)
    return vma


def sys_mbind(mm: MmStruct, start: int, length: int, mode: int, nodes: int, flags: int) -> int:
    """mbind(2): a hole fails the whole call with EFAULT before anything changes (except for MPOL_DEFAULT)."""
    call = "mbind"
    mode, mode_flags = sanitize_mode(mode, call)
    if flags & ~MPOL_MF_VALID:
        raise kernel_error(errno.EINVAL, call, "unknown flags")
    if start & (C.PAGE_SIZE - 1):
        raise kernel_error(errno.EINVAL, call, "unaligned start")
    end = start + page_align(length)
    if end >= 1 << 64:
        raise kernel_error(errno.EINVAL, call, "range wraps")
    if end == start:
        return 0
    policy = mpol_new(mm, mode, mode_flags, nodes, call)
    # queue_pages_range() walks the range VMA by VMA: a hole before the first VMA or right after the
    # VMA being walked is EFAULT (holes are fine for MPOL_DEFAULT, but a range with no mapping at all
    # is EFAULT either way); then, with MPOL_MF_STRICT and no move, a page of that VMA on a node
    # outside the requested ones (every page is on the first online node here) is EIO.  Either way
    # nothing changes, and whichever the walk meets first decides.
    first = mm.vmas.find_intersection(start, end)
    if first is None:
        raise kernel_error(errno.EFAULT, call, "nothing mapped in the range")
    strict = flags & C.MPOL_MF_STRICT and not flags & (C.MPOL_MF_MOVE | C.MPOL_MF_MOVE_ALL)
    home = online_nodes(mm) & -online_nodes(mm)
    misplaced = bool(strict) and policy is not None and not nodes & home
    if policy is not None:
        if first.start > start:
            raise kernel_error(errno.EFAULT, call, "hole at the start of the range")
        for vma in mm.vmas.range(start, end):
            if vma.end < end:
                nxt = mm.vma_next(vma)
                if nxt is None or nxt.start > vma.end:
                    raise kernel_error(errno.EFAULT, call, "hole in the range")
            if misplaced and mm.pages.first_in(max(start, vma.start), min(end, vma.end)) is not None:
                raise kernel_error(errno.EIO, call, "pages on other nodes and MPOL_MF_STRICT")
    walk_range(mm, start, end, lambda prev, vma, s, e: mbind_range(mm, prev, vma, s, e, policy),
               holes=Holes.ALLOW, call=call)
    return 0


def sys_set_mempolicy(mm: MmStruct, mode: int, nodes: int) -> int:
    """set_mempolicy(2): the task policy, which numa_maps shows for VMAs without their own."""
    mode, mode_flags = sanitize_mode(mode, "set_mempolicy")
    mm.task_policy = mpol_new(mm, mode, mode_flags, nodes, "set_mempolicy")
    return 0
