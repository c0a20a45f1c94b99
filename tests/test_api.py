"""The Python API: views, counters, /proc text, explain, fork, files and errors."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

import vmasim as v

W = 0x7E0000000000
P = 4096
RW = v.PROT_READ | v.PROT_WRITE
ANON = v.MAP_PRIVATE | v.MAP_ANONYMOUS | v.MAP_FIXED


def test_views_are_read_only_and_describe_the_vma() -> None:
    s = v.AddressSpace()
    s.mmap(W, 4 * P, RW, ANON)
    (vma,) = list(s)
    assert (vma.start, vma.end, vma.perms, vma.flags) == (W, W + 4 * P, "rw-p", ["rd", "wr", "mr", "mw", "me", "ac"])
    assert vma.anon_vma is None
    with pytest.raises(AttributeError):
        vma.start = 0  # type: ignore[misc]
    s.touch(W, P)
    assert vma.anon_vma is not None
    assert s.find_vma(W + P) == vma and s.find_vma(W + 4 * P) is None


def test_counters_follow_the_vmas() -> None:
    s = v.AddressSpace()
    s.mmap(W, 4 * P, RW, ANON)
    s.mmap(W + 8 * P, 2 * P, v.PROT_READ | v.PROT_EXEC, ANON)
    s.mlock(W, P)
    assert s.counters == {"total_vm": 6, "locked_vm": 1, "data_vm": 4, "exec_vm": 2, "stack_vm": 0}
    s.munmap(W, 16 * P)
    assert s.counters == {"total_vm": 0, "locked_vm": 0, "data_vm": 0, "exec_vm": 0, "stack_vm": 0}


def test_maps_lines_are_byte_exact() -> None:
    s = v.AddressSpace()
    s.mmap(W, P, RW, ANON)
    fd = s.memfd_create("buf", 2 * P)
    s.mmap(W + 4 * P, P, RW, v.MAP_SHARED | v.MAP_FIXED, fd, P)
    lines = s.maps().splitlines(keepends=True)
    assert lines[0] == "7e0000000000-7e0000001000 rw-p 00000000 00:00 0 \n"
    head = "7e0000004000-7e0000005000 rw-s 00001000 00:01 1000 "
    assert lines[1] == head.ljust(73) + "/memfd:buf (deleted)\n"
    assert "VmFlags: rd wr sh mr mw me ms \n" in s.smaps()
    assert s.numa_maps().splitlines()[0] == "7e0000000000 default"


def test_numa_maps_policy_strings() -> None:
    s = v.AddressSpace()
    s.mmap(W, 4 * P, RW, ANON)
    s.mbind(W, P, v.MPOL_BIND | v.MPOL_F_STATIC_NODES, 1)
    s.mbind(W + P, P, v.MPOL_PREFERRED_MANY, 1)
    s.mbind(W + 2 * P, P, v.MPOL_PREFERRED, 0)
    assert [line.split(" ", 1)[1] for line in s.numa_maps().splitlines()] == [
        "bind=static:0", "prefer (many):0", "local", "default"]


def test_explain_names_the_differing_flags() -> None:
    s = v.AddressSpace()
    s.mmap(W, 2 * P, RW, ANON)
    s.mprotect(W, P, v.PROT_READ)
    ((left, right, why),) = s.explain()
    assert (left.end, right.start) == (W + P, W + P)
    assert why == ["vm_flags differ in VM_WRITE|VM_ACCOUNT"]
    s.mprotect(W, P, RW)
    assert s.explain() == []


def test_fork_gives_the_child_its_own_address_space() -> None:
    s = v.AddressSpace()
    s.mmap(W + P, 5 * P, RW, ANON)
    s.touch(W + P, 5 * P)
    child = s.fork()
    child.mmap(W + 6 * P, 5 * P, RW, ANON)
    s.mmap(W + 6 * P, 5 * P, RW, ANON)
    assert len(child) == 2 and len(s) == 1  # forked_target_vma: no merge in the child


def test_errors_are_oserrors_naming_the_call() -> None:
    s = v.AddressSpace()
    with pytest.raises(OSError) as info:
        s.mprotect(W + 1, P, v.PROT_READ)
    assert info.value.errno == errno.EINVAL and "mprotect" in str(info.value)
    with pytest.raises(OSError) as info:
        s.close(42)
    assert info.value.errno == errno.EBADF


def test_python_dash_m_runs_the_cli() -> None:
    res = subprocess.run([sys.executable, "-m", "vmasim", "--version"], capture_output=True, text=True, check=True)
    assert "version" in res.stdout
