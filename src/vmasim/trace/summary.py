"""What a trace says: per-process counts and divergences, and each final layout explained.

The explanation of a final layout counts its VMAs by kind and, for every
pair of adjacent VMAs, asks the model why they are two (vmasim.explain), then
sums the answers up by reason ("guard pages from mprotect", "different
anon_vma after fork", …).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from vmasim.core.flags import VM_ACCESS_FLAGS, VM_GROWSDOWN, VM_SHARED
from vmasim.core.mm import MmStruct
from vmasim.core.vma import Vma
from vmasim.explain import why_separate
from vmasim.trace.mirror import Image


def vma_kind(vma: Vma, mm: MmStruct) -> str:
    """A VMA's kind for the summary: heap, stack, anonymous, file, shared memory, special, guard."""
    if vma.file is not None and vma.file.inode.kind == "special":
        return "special (vDSO, vvar)"
    if not vma.vm_flags & VM_ACCESS_FLAGS:
        return "guard or reservation (PROT_NONE)"
    if vma.vm_flags & VM_GROWSDOWN:
        return "stack"
    if vma.file is None:
        if vma.start < mm.brk and vma.end > mm.start_brk:
            return "heap"
        return "anonymous"
    kind = vma.file.inode.kind
    if kind == "shmem":
        return "shared anonymous (shmem)"
    shared = "shared" if vma.vm_flags & VM_SHARED else "private"
    if kind == "memfd":
        return f"memfd or tmpfs file ({shared})"
    return f"file ({shared})"


def reason_category(left: Vma, right: Vma, reasons: list[str]) -> str:
    """The summary reason for a pair of adjacent VMAs that did not merge, from the first refusal."""
    if not reasons:
        return "compatible: no call has tried to merge them since they became so"
    first = reasons[0]
    if "VM_SPECIAL" in first or "close hook" in first or any(
        v.file is not None and v.file.inode.kind == "special" for v in (left, right)
    ):
        return "special mappings (vDSO, vvar) never merge"
    if "mempolicy" in first:
        return "different NUMA policies"
    if first.startswith("vm_flags differ"):
        diff = first.removeprefix("vm_flags differ in ")
        if not left.vm_flags & VM_ACCESS_FLAGS or not right.vm_flags & VM_ACCESS_FLAGS:
            return "guard pages (PROT_NONE) beside accessible memory"
        if diff == "VM_ACCOUNT":
            return "only VM_ACCOUNT differs (one side was writable private memory before)"
        if all(part in ("VM_READ", "VM_WRITE", "VM_EXEC", "VM_ACCOUNT") for part in diff.split("|")):
            return "different protections"
        if "VM_MAYSHARE" in diff:
            return "a shared mapping beside a private one"
        if "VM_GROWSDOWN" in diff:
            return "a stack (VM_GROWSDOWN) beside other memory"
        return "different flags: " + diff
    if "different files" in first:
        if (left.file is None) != (right.file is None):
            return "file-backed memory beside anonymous memory"
        return "different files, or different opens of one file"
    if "userfaultfd" in first:
        return "different userfaultfd registrations"
    if "anonymous names" in first:
        return "different anonymous names"
    if "through fork" in first:
        return "different anon_vma after fork"
    if "different anon_vmas" in first:
        return "different anon_vma: each side was written before they became neighbours"
    if "pgoff" in first:
        if left.file is None:
            return "anonymous offsets not contiguous (memory moved by mremap)"
        return "file offsets not contiguous"
    return first


def final_layout(image: Image) -> dict[str, Any] | None:
    """The final layout of ``image`` explained, once its address space ended: VMAs by kind, and why each
    adjacent pair is two VMAs."""
    if not image.ended:
        return None
    mm = image.mm
    vmas = list(mm.vmas)
    kinds = Counter(vma_kind(v, mm) for v in vmas)
    pairs: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    for left, right in itertools.pairwise(vmas):
        if left.end != right.start:
            continue
        why = why_separate(mm, left, right)
        category = reason_category(left, right, why)
        reasons[category] += 1
        pairs.append({"left": f"{left.start:#x}-{left.end:#x}", "right": f"{right.start:#x}-{right.end:#x}",
                      "reasons": why, "category": category})
    return {
        "vmas": len(vmas),
        "by_kind": dict(kinds.most_common()),
        "adjacent_pairs": len(pairs),
        "reasons": dict(reasons.most_common()),
        "pairs": pairs,
    }


def process_dict(image: Image) -> dict[str, Any]:
    """One traced process for the JSON output."""
    s = image.stats
    return {
        "pid": image.pid,
        "program": image.program,
        "parent": image.parent,
        "calls": s.calls,
        "agreed": s.agreed,
        "checks": s.checks,
        "unmodelled": s.unmodelled,
        "by_call": dict(s.by_call.most_common()),
        "divergences": [d.as_dict() for d in s.divergences],
        "final": final_layout(image),
    }


def result_dict(result: Any) -> dict[str, Any]:
    """The whole trace as one JSON object: totals on top, then every process."""
    images = result.images
    return {
        "command": result.argv,
        "exit_status": result.exit_status,
        "error": result.error,
        "wall_seconds": round(result.wall, 3),
        "calls": result.calls,
        "agreed": result.agreed,
        "unmodelled": sum(i.stats.unmodelled for i in images),
        "divergences": sum(len(i.stats.divergences) for i in images),
        "processes": [process_dict(i) for i in images],
    }


def _pct(agreed: int, calls: int) -> str:
    return f"{100.0 * agreed / calls:.2f}%" if calls else "-"


def text_report(result: Any, *, explain_all: bool = False) -> str:
    """The human summary: per process, its divergences, the totals, and the final layouts explained."""
    out: list[str] = []
    status = result.exit_status
    head = f"vmasim trace: {' '.join(result.argv)}"
    out.append(head + (f" (exit status {status})" if status is not None else "") + f", {result.wall:.2f} s")
    if result.error:
        out.append("error: " + result.error)
    for image in result.images:
        s = image.stats
        line = (f"{image.name}: {s.calls} calls mirrored, {s.agreed} agreed ({_pct(s.agreed, s.calls)}), "
                f"{s.checks} checks")
        if s.unmodelled:
            line += f", {s.unmodelled} unmodelled (imported from /proc)"
        if image.parent:
            line += f"  [from {image.parent}]"
        out.append(line)
        for n, div in enumerate(s.divergences, 1):
            out.append(f"  divergence {n} ({div.kind}) after {div.call}")
            out.append(f"    {div.detail}")
            if div.kernel:
                out.append("    kernel:")
                out.extend("      " + line for line in div.kernel)
                out.append("    model:")
                out.extend("      " + line for line in div.model)
            if div.before:
                out.append("    model before the call:")
                out.extend("      " + line for line in div.before)
            if div.program is not None:
                out.append("    reproducer: " + (div.program_note or "a program in the JSON format"))
            elif div.program_note:
                out.append("    no reproducer: " + div.program_note)
    total = result.calls
    out.append(f"total: {total} calls mirrored, {result.agreed} agreed ({_pct(result.agreed, total)}) "
               f"over {len(result.images)} process(es)")
    finished = [i for i in result.images if i.ended]
    shown = finished if explain_all else ([i for i in finished if i.pid == result.root][-1:] or finished[-1:])
    for image in shown:
        final = final_layout(image)
        if not final:
            continue
        out.append(f"final layout of {image.name}: {final['vmas']} VMAs")
        out.extend(f"  {count:5d}  {kind}" for kind, count in final["by_kind"].items())
        out.append(f"  {final['adjacent_pairs']} adjacent pairs did not merge:")
        out.extend(f"  {count:5d}  {why}" for why, count in final["reasons"].items())
    return "\n".join(out)
