"""The ``vmasim trace``, ``vmasim import`` and ``vmasim explain --pid`` commands, behind thin click wrappers."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from vmasim.api import AddressSpace
from vmasim.core.flags import mnemonics
from vmasim.core.vma import Vma
from vmasim.procimport import FileTable, ProcImportError, from_source
from vmasim.render import perms
from vmasim.trace.host import host_files


def trace_command(argv: list[str], *, check: str, as_json: bool, out: str | None, no_aslr: bool,
                  explain_all: bool = False) -> int:
    """Trace ``argv`` and print the report; the exit status is 0 if every check agreed, 1 if not, 2 on error."""
    from vmasim.trace.interface import Options
    from vmasim.trace.reproduce import attach_reproducers
    from vmasim.trace.summary import result_dict, text_report
    from vmasim.trace.tracer import trace

    if check not in ("every", "end") and not (check.isdigit() and int(check) > 0):
        print(f"vmasim trace: --check must be every, end or a positive number, not {check!r}", file=sys.stderr)
        return 2
    try:
        result = trace(argv, Options(check=check, no_aslr=no_aslr))
    except OSError as exc:
        print(f"vmasim trace: cannot trace {argv[0]}: {exc}", file=sys.stderr)
        return 2
    attach_reproducers(result)
    doc = result_dict(result)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "trace.json").write_text(json.dumps(doc, indent=2) + "\n")
        n = 0
        for image in result.images:
            for div in image.stats.divergences:
                if div.program is not None:
                    n += 1
                    (folder / f"divergence-{n}.json").write_text(json.dumps(div.program, indent=2) + "\n")
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        print(text_report(result, explain_all=explain_all))
    if result.error:
        return 2
    return 0 if result.agreed == result.calls else 1


def _file_columns(files: FileTable, vma: Vma) -> str:
    if vma.file is None:
        return "00:00 0"
    ident = files.identity(vma.file.inode)
    if ident is None:
        return f"00:00 0 {vma.file.inode.label}"
    return f"{ident[0]} {ident[1]} /{vma.file.inode.label}"


def layout_lines(space: AddressSpace, files: FileTable) -> list[str]:
    """The address space as maps-like lines (real devices and inodes) with VmFlags and anon_vma."""
    lines = []
    for vma in space.mm.vmas:
        offset = vma.pgoff << 12 if vma.file is not None and vma.file.inode.kind != "special" else 0
        line = f"{vma.start:x}-{vma.end:x} {perms(vma)} {offset:08x} {_file_columns(files, vma)}"
        line += "  [" + " ".join(mnemonics(vma.vm_flags)) + "]"
        if vma.anon_vma is not None:
            line += f" {vma.anon_vma}"
        lines.append(line)
    return lines


def import_command(source: str, *, as_json: bool) -> int:
    """Print the address space imported from a live process or a saved maps/smaps file."""
    files = host_files()
    try:
        space = AddressSpace.from_mm(from_source(source, files))
    except ProcImportError as exc:
        print(f"vmasim import: {exc}", file=sys.stderr)
        return 2
    mm = space.mm
    if as_json:
        doc = {
            "vmas": [{"start": hex(v.start), "end": hex(v.end), "perms": v.perms, "flags": v.flags,
                      "offset": hex(v.pgoff << 12 if v.file is not None else 0),
                      "file": v.file.inode.label if v.file is not None else None,
                      "anon_vma": v.anon_vma is not None} for v in space],
            "map_count": space.map_count, "mmap_base": hex(mm.mmap_base), "start_brk": hex(mm.start_brk),
            "brk": hex(mm.brk),
        }
        print(json.dumps(doc, indent=2))
        return 0
    print("\n".join(layout_lines(space, files)))
    print(f"{space.map_count} VMAs; mmap_base {mm.mmap_base:#x} (inferred), start_brk {mm.start_brk:#x}, "
          f"brk {mm.brk:#x}")
    return 0


def explain_pid_command(pid: int) -> int:
    """Import live process ``pid`` and say why each pair of adjacent VMAs did not merge, then sum up."""
    from vmasim.trace.summary import reason_category

    try:
        space = AddressSpace.from_mm(from_source(str(pid), host_files()))
    except ProcImportError as exc:
        print(f"vmasim explain: {exc}", file=sys.stderr)
        return 2
    counts: Counter[str] = Counter()
    for left, right, reasons in space.explain():
        if left.end != right.start:
            continue
        print(f"{left.start:x}-{left.end:x} | {right.start:x}-{right.end:x}:")
        for why in reasons or ["compatible: no operation has tried to merge them since they became so"]:
            print(f"    {why}")
        counts[reason_category(left._vma, right._vma, reasons)] += 1
    print(f"{len(space)} VMAs in process {pid}; adjacent pairs that did not merge, by reason:")
    for why, n in counts.most_common():
        print(f"  {n:5d}  {why}")
    return 0
