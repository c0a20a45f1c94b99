"""Importing /proc/PID/maps and smaps into an address space: saved text and a live process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import vmasim as v
from vmasim.api import AddressSpace
from vmasim.procimport import (
    FileTable,
    ProcImportError,
    ProcVma,
    from_pid,
    from_text,
    infer_mmap_base,
    inode_kind,
    parse,
    process_settings,
    read_smaps,
)
from vmasim.profile import builtin_profiles

DATA = Path(__file__).parent / "data"
SMAPS = (DATA / "cat.smaps").read_text()
MAPS = (DATA / "cat.maps").read_text()
TARGET = builtin_profiles()["linux-6.18.44-nopku"].target


def files() -> FileTable:
    """A file table for the no-PKU machine (saved text was taken on such a host)."""
    return FileTable(process_settings(TARGET))


def imported(text: str, table: FileTable | None = None) -> AddressSpace:
    return AddressSpace.from_mm(from_text(text, table or files()))


def test_parse_reads_headers_flags_and_anonymous() -> None:
    vmas = parse(SMAPS)
    assert len(vmas) == 38
    heap = next(x for x in vmas if x.path == "[heap]")
    assert (heap.start, heap.end, heap.perms) == (0x555555560000, 0x555555581000, "rw-p")
    assert heap.flags == ["rd", "wr", "mr", "mw", "me", "ac"]
    assert heap.anon_kb == 16
    assert parse(MAPS)[0].flags is None


def _fields(vmas: list[ProcVma]) -> list[tuple[object, ...]]:
    return [(v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path, v.flags, v.anon_kb, v.pkey) for v in vmas]


def test_parse_cuts_smaps_at_vmflags_as_it_would_read_it_line_by_line() -> None:
    """smaps is read by cutting it at its VmFlags lines; the line-by-line reading gives the same VMAs."""
    slow = parse(SMAPS.replace("VmFlags:", "VmFlagz:"))  # no VmFlags line: read line by line
    flags = [line[8:].split() for line in SMAPS.splitlines() if line.startswith("VmFlags:")]
    for vma, names in zip(slow, flags, strict=True):
        vma.flags = names
    assert _fields(parse(SMAPS)) == _fields(slow)


def test_parse_reads_an_entry_without_vmflags_line_by_line() -> None:
    lines = SMAPS.splitlines(keepends=True)
    first = next(k for k, line in enumerate(lines) if line.startswith("VmFlags:"))
    vmas = parse("".join(lines[:first] + lines[first + 1 :]))
    assert len(vmas) == 38
    assert vmas[0].flags is None and vmas[1].flags == parse(SMAPS)[1].flags


def test_parse_a_file_name_with_vmflags_in_it() -> None:
    vmas = parse(SMAPS.replace("[heap]", "/tmp/VmFlags: rd wr", 1))
    assert len(vmas) == 38
    assert [v.path for v in vmas].count("/tmp/VmFlags: rd wr") == 1


def test_parse_rejects_other_text() -> None:
    with pytest.raises(ProcImportError):
        parse("hello world\n")


def test_import_saved_smaps() -> None:
    table = files()
    space = imported(SMAPS, table)
    assert space.map_count == 37  # [vsyscall] lies above the user address space and is not a VMA
    mm = space.mm
    # mmap_base: the end of the dynamic loader, the highest VMA below the stack (ASLR was off).
    assert mm.mmap_base == 0x7FFFF7FFF000
    assert mm.start_brk == 0x555555560000 and mm.brk == 0x555555581000
    by_start = {x.start: x for x in space}
    heap = by_start[0x555555560000]
    assert heap.flags == ["rd", "wr", "mr", "mw", "me", "ac"] and heap.anon_vma is not None
    # The relro piece and the data of one object were written as one VMA: they share an anon_vma.
    relro, data = by_start[0x55555555E000], by_start[0x55555555F000]
    assert relro.anon_vma is not None and relro.anon_vma is data.anon_vma
    assert relro.file is data.file  # one open file per inode
    assert by_start[0x555555554000].anon_vma is None  # never written
    assert table.identity(relro.file.inode) == ("fe:00", 260131)


def test_import_explains_the_layout() -> None:
    space = imported(SMAPS)
    reasons = {(a.start, b.start): why for a, b, why in space.explain() if a.end == b.start}
    assert reasons[(0x555555554000, 0x555555556000)] == ["vm_flags differ in VM_EXEC"]
    assert any("different files" in why[0] for why in reasons.values())


def test_import_plain_maps_assumes_private_writable_memory_was_written() -> None:
    space = imported(MAPS)
    for vma in space:
        if vma.perms == "rw-p":
            assert vma.anon_vma is not None
        if vma.perms == "r-xp":
            assert vma.anon_vma is None and "ex" in vma.flags


def test_import_can_be_changed_like_any_address_space() -> None:
    space = imported(SMAPS)
    heap = space.find_vma(0x555555560000)
    assert heap is not None
    space.mprotect(heap.start + 0x1000, 0x1000, v.PROT_READ)
    assert space.map_count == 39


def test_infer_mmap_base_uses_the_highest_vma_below_the_stack() -> None:
    assert infer_mmap_base(parse(MAPS)) == 0x7FFFF7FFF000


def test_inode_kind() -> None:
    s = process_settings(TARGET)
    assert inode_kind("[vdso]", "00:00", None, s) == ("special", "special")
    assert inode_kind("/dev/zero (deleted)", "00:01", None, s) == ("shmem", "shmem")
    assert inode_kind("/memfd:x (deleted)", "00:01", None, s) == ("memfd", "shmem")
    assert inode_kind("/SYSV00000000 (deleted)", "00:01", None, s) == ("shmem", "shmem")


def test_live_import_matches_the_kernel() -> None:
    if not Path("/proc/self/smaps").exists():
        pytest.skip("no /proc/self/smaps on this host")
    # Imported before the snapshot: importing a module can map a shared library, which would then be
    # in the kernel's layout only.
    from vmasim.trace.check import Identities, compare, model_entries

    table = files()
    mm = from_pid(os.getpid(), table)
    kernel = read_smaps(os.getpid())
    # The interpreter keeps running between the two reads; compare the part that does not move.
    model = model_entries(mm, Identities(table), kernel)
    file_backed = [k for k in kernel if k.inode and not k.path.startswith("/memfd")]
    assert compare(file_backed, [m for m in model if m.inode and not m.path.startswith("memfd")]) is None


def test_resync_without_pagemap_takes_page_state_from_smaps() -> None:
    """A comparison made after the process ran on (its last one, at exit) repairs the model without the
    pagemap: a private VMA counts as written when smaps counted anonymous memory in it."""
    from vmasim.trace.check import resync

    table = files()
    mm = from_text(SMAPS, table)
    kernel = parse(SMAPS)
    heap = next(k for k in kernel if k.path == "[heap]")
    clean = next(k for k in kernel if k.perms == "rw-p" and not k.inode and not k.path)
    clean.anon_kb = 0  # smaps counted no anonymous memory there
    for k in (heap, clean):
        vma = mm.vmas.lookup(k.start)
        assert vma is not None
        vma.anon_vma = None  # as if the model had missed the writes
        resync(mm, kernel, k.start, k.end, table, None)
    heap_vma, clean_vma = mm.vmas.lookup(heap.start), mm.vmas.lookup(clean.start)
    assert heap_vma is not None and heap_vma.anon_vma is not None
    assert clean_vma is not None and clean_vma.anon_vma is None


def test_mounts_are_read_again_only_for_a_new_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """A traced command execs many processes: mountinfo is read once for all of them, and again when one
    maps a device the table has not seen (a file system mounted since)."""
    import vmasim.procimport as procimport

    table, other = files(), files()
    reads: list[int] = []
    monkeypatch.setattr(procimport, "_mounts", lambda pid: reads.append(pid) or {"ff:01": "ext4"})
    pid = os.getpid()
    assert table.mounts_of(pid, {"ff:01"})["ff:01"] == "ext4"
    assert table.mounts_of(pid, {"ff:01"})["ff:01"] == "ext4"
    assert len(reads) == 1
    table.mounts_of(pid, {"ff:01", "ff:02"})  # new: read again, and ff:02 is in no mount
    table.mounts_of(pid, {"ff:02"})
    table.mounts_of(pid, set())
    assert len(reads) == 2
    assert other.mounts_of(pid, {"ff:01"}) and len(reads) == 3  # another table reads for itself


def test_address_space_from_proc() -> None:
    if not Path("/proc/self/smaps").exists():
        pytest.skip("no /proc/self/smaps on this host")
    space = v.AddressSpace.from_proc(os.getpid(), target="linux-6.18.44-nopku")
    assert space.map_count > 10
    assert any(x.flags[:2] == ["rd", "wr"] and x.anon_vma is not None for x in space)
