"""OpenFiles: telling open file descriptions apart with pidfd_getfd and kcmp, here on the test's own process."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmasim.procimport import FileTable, process_settings
from vmasim.profile import builtin_profiles
from vmasim.trace.fds import OpenFiles
from vmasim.trace.ptrace import pidfd_getfd_via

TARGET = builtin_profiles()["linux-6.18.44-nopku"].target


def _nothing_live() -> tuple[set[int], int]:
    return set(), 0


@pytest.fixture
def open_files() -> Iterator[OpenFiles]:
    if not OpenFiles.available():
        pytest.skip("this kernel has no pidfd_getfd or kcmp")
    table = OpenFiles(FileTable(process_settings(TARGET)))
    yield table
    table.close()


def test_one_description_is_one_file_and_two_opens_are_two(open_files: OpenFiles, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 8192)
    me = os.getpid()
    a = os.open(path, os.O_RDONLY)
    b = os.dup(a)
    c = os.open(path, os.O_RDWR)
    try:
        fa, mappable = open_files.resolve(me, a, _nothing_live)
        assert fa is not None and mappable and fa.readable and not fa.writable
        assert open_files.resolve(me, b, _nothing_live)[0] is fa  # a dup shares the description
        fc = open_files.resolve(me, c, _nothing_live)[0]
        assert fc is not None and fc is not fa and fc.inode is fa.inode and fc.writable
        assert open_files.resolve(me, a, _nothing_live)[0] is fa  # again, by the last-match shortcut
    finally:
        for fd in (a, b, c):
            os.close(fd)
    assert open_files.resolve(me, a, _nothing_live) == (None, True)  # not open any more


def test_a_device_is_not_mappable(open_files: OpenFiles) -> None:
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        file, mappable = open_files.resolve(os.getpid(), fd, _nothing_live)
    finally:
        os.close(fd)
    assert file is not None and not mappable
    assert open_files.count == 0  # no duplicate kept: its identity never matters


def test_a_pidfd_of_an_ended_process_is_replaced(open_files: OpenFiles, tmp_path: Path) -> None:
    """The pidfd kept for a process number whose process has ended (the number reused): the duplicate is
    taken through a new one."""
    child = subprocess.Popen(["true"])
    stale = os.pidfd_open(child.pid)
    child.wait()
    with pytest.raises(OSError) as exc:
        pidfd_getfd_via(stale, 0)
    assert exc.value.errno == errno.ESRCH
    me = os.getpid()
    open_files.pidfds[me] = stale
    path = tmp_path / "g"
    path.write_bytes(b"y" * 4096)
    fd = os.open(path, os.O_RDONLY)
    try:
        file, mappable = open_files.resolve(me, fd, _nothing_live)
    finally:
        os.close(fd)
    assert file is not None and mappable  # through a new pidfd: the stale one fails with ESRCH
    open_files.forget(me)
    assert me not in open_files.pidfds
