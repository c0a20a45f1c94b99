"""Why two adjacent VMAs are separate: the merge predicates of mm/vma.c, asked out loud."""

from __future__ import annotations

import itertools

from vmasim.core.flags import VM_SPECIAL, describe
from vmasim.core.merge import VmaMergeStruct, can_vma_merge_left, can_vma_merge_right
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma


def why_separate(mm: MmStruct, left: Vma, right: Vma) -> list[str]:
    """Reasons why ``left`` and ``right`` are two VMAs rather than one.

    The question asked is the kernel's own: if ``right`` were modified as a
    whole with its current attributes, could it merge into ``left``
    (vma_merge_existing_range()), or could ``left`` merge into ``right``?
    An empty list means they are compatible: nothing has tried to merge them
    since they became so (the kernel only merges when a range is mapped or
    modified).
    """
    if left.end != right.start:
        return [f"not adjacent: a hole of {right.start - left.end:#x} bytes lies between them"]
    reasons: list[str] = []
    for vma in (left, right):
        if vma.vm_flags & VM_SPECIAL:
            reasons.append(f"{vma.start:#x}: has {describe(vma.vm_flags & VM_SPECIAL)}, which never merges")
    if reasons:
        return reasons
    into_left = VmaMergeStruct.for_vma(mm, left, right, right.start, right.end)
    if can_vma_merge_left(into_left):
        if right.has_close:
            return ["the right VMA's vm_ops has a close hook, so a merge may not delete it"]
        return []
    into_right = VmaMergeStruct.for_vma(mm, left, left, left.start, left.end)
    into_right.next = right
    if can_vma_merge_right(into_right, False):
        if left.has_close:
            return ["the left VMA's vm_ops has a close hook, so a merge may not delete it"]
        return []
    seen: set[str] = set()
    for refusal in into_left.refusals + into_right.refusals:
        text = refusal.reason()
        if text not in seen:
            seen.add(text)
            reasons.append(text)
    return reasons


def explain(mm: MmStruct, start: int = 0, end: int = (1 << 64) - 1) -> list[tuple[Vma, Vma, list[str]]]:
    """For each pair of neighbouring VMAs overlapping ``[start, end)``, the reasons they are separate."""
    vmas = list(mm.vmas.range(start, end))
    return [(a, b, why_separate(mm, a, b)) for a, b in itertools.pairwise(vmas)]
