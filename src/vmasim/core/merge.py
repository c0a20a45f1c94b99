"""Merging, splitting and modifying VMAs: the model of mm/vma.c.

The idea fits in a few lines.  A VMA is never changed in place by a system
call.  Instead the call describes the range it wants changed and the new
attributes in a :class:`VmaMergeStruct` and hands it to :func:`vma_modify`,
which first tries to fold the range into a neighbour
(:func:`vma_merge_existing_range`) and otherwise splits the VMA once or
twice so that one VMA covers exactly the range.  Either way it returns that
VMA, so callers never care which happened.  New ranges (mmap, brk) go
through :func:`vma_merge_new_range`, which may expand a neighbour instead of
creating a VMA.

Every refused merge records why on the merge struct (``refusals``), which
is what ``vmasim explain`` shows.  A refusal is kept raw (a code and the
values involved) and worded only when someone asks, so refused merges cost
the hot path next to nothing.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from vmasim.constants import PAGE_SHIFT
from vmasim.core.errors import SplitRefused, kernel_error
from vmasim.core.flags import VM_IGNORE_MERGE, VM_SPECIAL, VM_STICKY, describe
from vmasim.core.mm import MmStruct
from vmasim.core.vma import AnonVma, File, Mempolicy, UffdCtx, Vma, mpol_equal


def _anon_vma_pair(a: Any, b: Any) -> str:
    return " and ".join(sorted(str(x) for x in (a, b)))


# How each refusal code reads; ``a`` and ``b`` are the raw values recorded with it.
_WORDING: dict[str, Callable[[Any, Any], str]] = {
    "special": lambda a, b: "the flags include VM_SPECIAL (IO, DONTEXPAND, PFNMAP or MIXEDMAP)",
    "inside": lambda a, b: "the range is strictly inside one VMA",
    "policy": lambda a, b: f"mempolicy differs ({a} vs {b})",
    "flags": lambda a, b: f"vm_flags differ in {describe(a)}",
    "file": lambda a, b: "different files (struct file)",
    "uffd": lambda a, b: "different userfaultfd contexts",
    "name": lambda a, b: "different anonymous names",
    "fork_source": lambda a, b: "has no anon_vma and the range's anon_vma came through fork",
    "fork_target": lambda a, b: "its anon_vma came through fork and the range has none",
    "anon_vmas": lambda a, b: f"different anon_vmas ({_anon_vma_pair(a, b)}): each side was written to separately",
    "pgoff": lambda a, b: f"pgoff not contiguous (the lower part ends at {a:#x}, the upper starts at {b:#x})",
    "prev_next_anon": lambda a, b: "prev and next have different anon_vmas; merging with prev only",
    "close_middle": lambda a, b: "the VMA would be deleted but its vm_ops has a close hook",
    "close_next": lambda a, b: "next would be deleted but its vm_ops has a close hook; merging with prev only",
    "close_next_expand": lambda a, b: "next has a close hook and cannot be deleted; expanding prev only",
    "anon_vmas_old": lambda a, b: "the anon_vmas differ and the target's chain is not singular (pre-6.16 rule)",
}


class Refusal(NamedTuple):
    """Why a merge was refused, kept raw: a code, the side it concerns and the values involved.

    Wording it (``describe()`` over the flag names, formatting addresses) is
    left to :meth:`reason`, which only ``explain`` calls.
    """

    code: str
    side: str = ""
    a: Any = None
    b: Any = None

    def reason(self) -> str:
        """The refusal in words, without the side."""
        return _WORDING[self.code](self.a, self.b)

    def __str__(self) -> str:
        """The refusal in words, prefixed with its side (``prev: `` or ``next: ``) when it concerns one."""
        text = self.reason()
        return f"{self.side}: {text}" if self.side else text


@dataclass(slots=True, eq=False)
class VmaMergeStruct:
    """One merge attempt (struct vma_merge_struct): the candidates, the proposed attributes, the outcome.

    For an existing range ``middle`` is the VMA being modified and ``prev``
    is the VMA before it, or ``middle`` itself when the range starts inside
    it.  For a new range ``middle`` is None and ``prev``/``next`` are the
    VMAs around the gap.
    """

    mm: MmStruct
    start: int
    end: int
    pgoff: int
    vm_flags: int
    file: File | None = None
    anon_vma: AnonVma | None = None
    policy: Mempolicy | None = None
    uffd_ctx: UffdCtx | None = None
    anon_name: str | None = None
    prev: Vma | None = None
    middle: Vma | None = None
    next: Vma | None = None
    copied_from: Vma | None = None
    just_expand: bool = False
    target: Vma | None = None
    refusals: list[Refusal] = field(default_factory=list)

    @classmethod
    def for_vma(cls, mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int) -> VmaMergeStruct:
        """Like VMG_VMA_STATE(): propose ``[start, end)`` of ``vma`` with all of ``vma``'s attributes."""
        # Positional: this runs once per VMA a call changes, and keyword matching over 17 fields costs.
        return cls(
            mm,
            start,
            end,
            vma.pgoff + ((start - vma.start) >> PAGE_SHIFT),
            vma.vm_flags,
            vma.file,
            vma.anon_vma,
            vma.policy,
            vma.uffd_ctx,
            vma.anon_name,
            prev,
            vma,
        )

    @classmethod
    def for_mmap(
        cls, mm: MmStruct, start: int, end: int, pgoff: int, vm_flags: int, file: File | None, prev: Vma | None,
        nxt: Vma | None,
    ) -> VmaMergeStruct:
        """Like VMG_MMAP_STATE(): propose a new ``[start, end)`` between ``prev`` and ``nxt`` (no anon_vma yet)."""
        return cls(mm, start, end, pgoff, vm_flags, file, None, None, None, None, prev, None, nxt)

    def refuse(self, code: str, side: str = "", a: Any = None, b: Any = None) -> bool:
        """Record a refused merge (a :class:`Refusal`); always False, so predicates can ``return vmg.refuse(...)``."""
        self.refusals.append(Refusal(code, side, a, b))
        return False


_INSIDE = Refusal("inside")


# --- predicates ---------------------------------------------------------------------


def vma_is_fork_child(vma: Vma | None) -> bool:
    """Like vma_is_fork_child(): the VMA's anon_vma chain came through fork."""
    return vma is not None and vma.anon_vma is not None and vma.fork_child


def _side(merge_next: bool) -> str:
    return "next" if merge_next else "prev"


def is_mergeable_vma(vmg: VmaMergeStruct, merge_next: bool) -> bool:
    """Like is_mergeable_vma(): the proposed attributes match the neighbour's."""
    vma = vmg.next if merge_next else vmg.prev
    assert vma is not None
    if not mpol_equal(vmg.policy, vma.policy):
        return vmg.refuse("policy", _side(merge_next), vma.policy, vmg.policy)
    diff = (vma.vm_flags ^ vmg.vm_flags) & ~VM_IGNORE_MERGE
    if diff:
        return vmg.refuse("flags", _side(merge_next), diff)
    if vma.file is not vmg.file:
        return vmg.refuse("file", _side(merge_next))
    if vma.uffd_ctx is not vmg.uffd_ctx:
        return vmg.refuse("uffd", _side(merge_next))
    if vma.anon_name != vmg.anon_name:
        return vmg.refuse("name", _side(merge_next))
    return True


def is_mergeable_anon_vma(vmg: VmaMergeStruct, merge_next: bool) -> bool:
    """Like is_mergeable_anon_vma() with the 6.16 relaxation and the fork-child rule."""
    tgt = vmg.next if merge_next else vmg.prev
    assert tgt is not None
    src = vmg.middle
    tgt_anon = tgt.anon_vma
    src_anon = vmg.anon_vma
    side = _side(merge_next)
    if not vmg.mm.target.kernel.anon_vma_relaxed:
        # Before 6.16: one side may lack an anon_vma only when the target's anon_vma chain is
        # singular, i.e. it was faulted in this process (not inherited, not unfaulted).
        if (tgt_anon is None or src_anon is None) and tgt_anon is not None and not tgt.fork_child:
            return True
        if src_anon is tgt_anon:
            return True
        return vmg.refuse("anon_vmas_old", side)
    if tgt_anon is None and src_anon is not None:
        # The target would take our anon_vma; a fork child's chain cannot be shared that way.
        if vma_is_fork_child(src) or vma_is_fork_child(vmg.copied_from):
            return vmg.refuse("fork_source", side)
        return True
    if tgt_anon is not None and src_anon is None:
        if vma_is_fork_child(tgt):
            return vmg.refuse("fork_target", side)
        return True
    if src_anon is not tgt_anon:
        return vmg.refuse("anon_vmas", side, tgt_anon, src_anon)
    return True


def can_vma_merge_before(vmg: VmaMergeStruct) -> bool:
    """Like can_vma_merge_before(): the range can be prepended to ``next``."""
    nxt = vmg.next
    assert nxt is not None
    if not (is_mergeable_vma(vmg, True) and is_mergeable_anon_vma(vmg, True)):
        return False
    pglen = (vmg.end - vmg.start) >> PAGE_SHIFT
    if nxt.pgoff != vmg.pgoff + pglen:
        return vmg.refuse("pgoff", "next", vmg.pgoff + pglen, nxt.pgoff)
    return True


def can_vma_merge_after(vmg: VmaMergeStruct) -> bool:
    """Like can_vma_merge_after(): the range can be appended to ``prev``."""
    prev = vmg.prev
    assert prev is not None
    if not (is_mergeable_vma(vmg, False) and is_mergeable_anon_vma(vmg, False)):
        return False
    if prev.pgoff + prev.pages != vmg.pgoff:
        return vmg.refuse("pgoff", "prev", prev.pgoff + prev.pages, vmg.pgoff)
    return True


def can_vma_merge_left(vmg: VmaMergeStruct) -> bool:
    """Like can_vma_merge_left(): ``prev`` ends where the range starts and is compatible."""
    prev = vmg.prev
    if prev is None or prev.end != vmg.start:
        return False
    return can_vma_merge_after(vmg)


def can_vma_merge_right(vmg: VmaMergeStruct, can_merge_left: bool) -> bool:
    """Like can_vma_merge_right(), including the check that prev and next agree on anon_vma."""
    nxt = vmg.next
    if nxt is None or vmg.end != nxt.start or not can_vma_merge_before(vmg):
        return False
    if not can_merge_left:
        return True
    prev = vmg.prev
    assert prev is not None
    # Each neighbour may accept the range while disagreeing with the other.
    if prev.anon_vma is None or nxt.anon_vma is None or prev.anon_vma is nxt.anon_vma:
        return True
    return vmg.refuse("prev_next_anon")


def can_merge_remove_vma(vma: Vma) -> bool:
    """Like can_merge_remove_vma(): a VMA whose vm_ops has a close hook may not be deleted by a merge."""
    return not vma.has_close


def dup_anon_vma(dst: Vma, src: Vma | None) -> None:
    """Like dup_anon_vma(): a target without an anon_vma takes (and clones the chain of) the source's."""
    if src is not None and src.anon_vma is not None and dst.anon_vma is None:
        dst.anon_vma = src.anon_vma
        dst.fork_child = src.fork_child


# --- merging an existing range --------------------------------------------------------


def vma_merge_existing_range(vmg: VmaMergeStruct) -> Vma | None:
    """Like vma_merge_existing_range(): fold ``[start, end)`` of ``middle`` into prev and/or next.

    Returns the VMA that now covers the range, or None (and ``vmg.refusals``
    says why) when nothing merges.
    """
    mm = vmg.mm
    middle = vmg.middle
    prev = vmg.prev
    assert middle is not None
    start, end = vmg.start, vmg.end
    left_side = start == middle.start
    right_side = end == middle.end
    sticky = vmg.vm_flags & VM_STICKY

    if vmg.vm_flags & VM_SPECIAL:
        vmg.refuse("special")
        return None
    if not left_side and not right_side:
        vmg.refusals.append(_INSIDE)  # the common refusal of a split in three, so made once
        return None

    merge_left = left_side and can_vma_merge_left(vmg)
    nxt: Vma | None = None
    merge_right = False
    if right_side:
        nxt = vmg.next = mm.vma_next(middle)
        merge_right = can_vma_merge_right(vmg, merge_left)
    if not merge_left and not merge_right:
        return None

    remove_middle = left_side and right_side
    if remove_middle and not can_merge_remove_vma(middle):
        vmg.refuse("close_middle")
        return None
    merge_both = merge_left and merge_right
    if merge_both:
        assert nxt is not None
        if not can_merge_remove_vma(nxt):
            vmg.refuse("close_next")
            merge_right = merge_both = False

    if merge_right:
        assert nxt is not None
        vmg.target = nxt
        sticky |= nxt.vm_flags & VM_STICKY
    if merge_left:
        assert prev is not None
        vmg.target = prev
        sticky |= prev.vm_flags & VM_STICKY

    if merge_both:
        #  prev      middle    next
        #  extend    delete    delete
        assert prev is not None and nxt is not None
        dup_anon_vma(prev, nxt if nxt.anon_vma is not None else middle)
        mm.coalesce((prev, middle, nxt), prev, prev.pgoff)
        target = prev
    elif merge_left:
        #  prev      middle
        #  extend    shrink or delete
        assert prev is not None
        dup_anon_vma(prev, middle)
        if remove_middle:
            mm.coalesce((prev, middle), prev, prev.pgoff)
        else:
            mm.move_boundary(prev, middle, end)
        target = prev
    else:
        #  middle            next
        #  shrink or delete  extend
        assert nxt is not None
        dup_anon_vma(nxt, middle)
        if remove_middle:
            mm.coalesce((middle, nxt), nxt, nxt.pgoff - ((nxt.start - start) >> PAGE_SHIFT))
        else:
            mm.move_boundary(middle, nxt, start)
        target = nxt

    mm.set_flags(target, target.vm_flags | sticky)
    vmg.target = target
    return target


# --- merging a new range ------------------------------------------------------------------


def vma_expand(vmg: VmaMergeStruct) -> Vma:
    """Like vma_expand(): grow ``target`` over ``[start, end)``, deleting ``next`` when fully covered."""
    mm = vmg.mm
    target = vmg.target
    assert target is not None
    nxt = vmg.next
    sticky = (vmg.vm_flags | target.vm_flags) & VM_STICKY
    delete_next = nxt is not None and nxt is not target and vmg.end == nxt.end
    if delete_next:
        assert nxt is not None
        sticky |= nxt.vm_flags & VM_STICKY
        dup_anon_vma(target, nxt)
    if vmg.copied_from is not None:
        dup_anon_vma(target, vmg.copied_from)
    if delete_next:
        # target is prev: it grows over the new range and next in one store.
        assert nxt is not None and vmg.start == target.start
        mm.coalesce((target, nxt), target, vmg.pgoff)
    else:
        mm.set_range(target, vmg.start, vmg.end, vmg.pgoff)
    mm.set_flags(target, target.vm_flags | sticky)
    return target


def vma_merge_new_range(vmg: VmaMergeStruct) -> Vma | None:
    """Like vma_merge_new_range(): expand prev and/or next over a new ``[start, end)`` instead of adding a VMA.

    In ``just_expand`` mode (brk) only prev is considered.  Returns the
    expanded VMA or None.
    """
    prev, nxt = vmg.prev, vmg.next
    end = vmg.end
    if vmg.vm_flags & VM_SPECIAL:
        vmg.refuse("special")
        return None
    if prev is None and nxt is None:
        return None

    merge_left = can_vma_merge_left(vmg)
    merge_right = not vmg.just_expand and can_vma_merge_right(vmg, merge_left)
    if merge_right:
        assert nxt is not None
        vmg.end = nxt.end
        vmg.target = nxt
    if merge_left:
        assert prev is not None
        vmg.start = prev.start
        vmg.target = prev
        vmg.pgoff = prev.pgoff
        if merge_right:
            assert nxt is not None
            if not can_merge_remove_vma(nxt):
                vmg.refuse("close_next_expand")
                vmg.end = end
    if vmg.target is None:
        return None
    target = vma_expand(vmg)
    return target


def vma_merge_extend(mm: MmStruct, vma: Vma, delta: int) -> Vma | None:
    """Like vma_merge_extend(): grow ``vma`` by ``delta`` bytes in place, absorbing a compatible next.

    The proposal carries ``vma``'s own attributes and anon_vma, with ``vma``
    as prev; None when even ``vma`` itself cannot take the range.
    """
    vmg = VmaMergeStruct.for_vma(mm, vma, vma, vma.end, vma.end + delta)
    vmg.middle = None
    vmg.next = mm.find_vma(vma.end)
    return vma_merge_new_range(vmg)


# --- splitting --------------------------------------------------------------------------------


def split_vma(mm: MmStruct, vma: Vma, addr: int, new_below: bool, *, checked: bool = True) -> Vma:
    """Like split_vma() (``checked``) or __split_vma(): cut ``vma`` at ``addr``, returning the new piece.

    With ``new_below`` the new VMA is the lower part and ``vma`` keeps the
    upper part; otherwise the new VMA is the upper part.  The checked form
    refuses with ENOMEM when map_count is already at max_map_count.
    """
    assert vma.start < addr < vma.end, f"split at {addr:#x} outside {vma}"
    if checked and mm.map_count >= mm.max_map_count:
        raise SplitRefused()
    if vma.file is not None and vma.file.inode.kind == "special":
        # special_mapping_split(): the vDSO's mappings forbid splitting (their vm_ops' may_split).
        raise kernel_error(errno.EINVAL, "split_vma", "special mappings cannot be split")
    new = vma.copy()
    offset = (addr - vma.start) >> PAGE_SHIFT
    # The counters do not change: the pieces keep the flags and the pages between them, so __split_vma()
    # only stores the new piece next to the shrunk one.
    mm.vmas.split(vma, new, addr, new_below)
    if new_below:
        vma.pgoff += offset
    else:
        new.pgoff += offset
    return new


# --- the one modify path --------------------------------------------------------------------------


def vma_modify(vmg: VmaMergeStruct) -> Vma:
    """Like vma_modify(): return the VMA that now covers exactly ``[start, end)``, merged or split.

    Raises ``OSError(ENOMEM)`` when a needed split is refused; a first split
    that succeeded before a second one failed stays, as in the kernel.
    """
    merged = vma_merge_existing_range(vmg)
    if merged is not None:
        return merged
    vma = vmg.middle
    assert vma is not None
    if vma.start < vmg.start:
        split_vma(vmg.mm, vma, vmg.start, True)
    if vma.end > vmg.end:
        split_vma(vmg.mm, vma, vmg.end, False)
    return vma


def _set_flags_keeping_sticky(mm: MmStruct, vma: Vma, vm_flags: int) -> None:
    # The sticky flags the covering VMA carries (its own, or picked up in a merge) survive the update,
    # as vma_modify_flags() hands them back to its caller in 6.19.
    mm.set_flags(vma, vm_flags | (vma.vm_flags & VM_STICKY))


def vma_modify_flags(mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int, vm_flags: int) -> Vma:
    """Like vma_modify_flags(): ``[start, end)`` of ``vma`` gets ``vm_flags``; the VMA that now covers it."""
    vmg = VmaMergeStruct.for_vma(mm, prev, vma, start, end)
    vmg.vm_flags = vm_flags
    done = vma_modify(vmg)
    _set_flags_keeping_sticky(mm, done, vm_flags)
    return done


def vma_modify_name(mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int, name: str | None) -> Vma:
    """Like vma_modify_name(): ``[start, end)`` of ``vma`` gets an anonymous name; the VMA that now covers it."""
    vmg = VmaMergeStruct.for_vma(mm, prev, vma, start, end)
    vmg.anon_name = name
    done = vma_modify(vmg)
    done.anon_name = name  # replace_anon_vma_name()
    return done


def vma_modify_policy(
    mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int, policy: Mempolicy | None
) -> Vma:
    """Like vma_modify_policy(): ``[start, end)`` of ``vma`` gets a mempolicy; the VMA that now covers it."""
    vmg = VmaMergeStruct.for_vma(mm, prev, vma, start, end)
    vmg.policy = policy
    done = vma_modify(vmg)
    done.policy = policy  # vma_replace_policy()
    return done


def vma_modify_flags_uffd(
    mm: MmStruct, prev: Vma | None, vma: Vma, start: int, end: int, vm_flags: int, ctx: UffdCtx | None
) -> Vma:
    """Like vma_modify_flags_uffd(): ``[start, end)`` of ``vma`` gets new flags and userfaultfd context; the
    VMA that now covers it."""
    vmg = VmaMergeStruct.for_vma(mm, prev, vma, start, end)
    vmg.vm_flags = vm_flags
    vmg.uffd_ctx = ctx
    done = vma_modify(vmg)
    _set_flags_keeping_sticky(mm, done, vm_flags)
    done.uffd_ctx = ctx  # userfaultfd_set_ctx()
    return done
