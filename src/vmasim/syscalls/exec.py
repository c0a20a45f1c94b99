"""execve(2) as the VMA layer sees it: fs/exec.c's exec_mmap() swapping in a new address space.

The new address space (the program's image, its stack, its heap) is laid
out by whoever runs the program; this module says what crosses over from
the old one and what dies with it:

- the task's memory policy crosses (it belongs to the task, not the mm);
- so does KSM's merge-any setting (MMF_VM_MERGE_ANY is in MMF_INIT_MASK, and
  ksm_execve() re-enters KSM);
- locks do not: the new mm has no VM_LOCKED default (mlockall(MCL_FUTURE)
  ends), nor does the protection-key state (a fresh mm->context and PKRU);
- the old mm is torn down: every VMA goes with it, and a userfaultfd context
  created in it (whose descriptor survives the exec) has no mm left, so its
  registration calls fail (mmget_not_zero() fails: ENOMEM).
"""

from __future__ import annotations

from vmasim.core.mm import MmStruct


def exec_mmap(old: MmStruct, new: MmStruct) -> None:
    """The task moves from ``old`` to ``new`` (a fresh address space laid out for the new image)."""
    new.task_policy = old.task_policy
    new.ksm_merge_any = old.ksm_merge_any
    old.exited = True
