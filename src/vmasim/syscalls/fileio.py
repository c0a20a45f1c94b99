"""pwrite(2) on the model's files: fs/read_write.c's ksys_pwrite64() and generic_write_checks().

Only what the VMA layer can see is kept: the file's size (which decides
SIGBUS past the end of a mapping) and, for shmem, which pages are in the
page cache (which decides whether a userfaultfd fault is MISSING or MINOR).
"""

from __future__ import annotations

import errno

from vmasim import constants as C
from vmasim.core.errors import kernel_error
from vmasim.core.mm import MmStruct
from vmasim.core.vma import File

CALL = "pwrite"
#: The largest count one write() moves (MAX_RW_COUNT).
MAX_RW_COUNT = 0x7FFFF000


def max_file_bytes(mm: MmStruct, file: File) -> int:
    """The file system's s_maxbytes for the file: shmem's or the regular file system's."""
    files = mm.target.files
    return files.shmem_max_bytes if file.inode.is_shmem else files.regular_max_bytes


def sys_pwrite(mm: MmStruct, file: File | None, count: int, pos: int) -> int:
    """pwrite(2) of ``count`` bytes at ``pos``; returns the bytes written, the file growing past its end."""
    if pos < 0:
        raise kernel_error(errno.EINVAL, CALL, "negative offset")
    if file is None:
        raise kernel_error(errno.EBADF, CALL, "not open")
    # ksys_pwrite64(): a file without positions (FMODE_PWRITE) is ESPIPE before vfs_write() looks at
    # whether it is open for writing.
    if file.uffd is not None or file.inode.kind not in ("file", "memfd"):
        raise kernel_error(errno.ESPIPE, CALL, "not a file with positions")
    if not file.writable:
        raise kernel_error(errno.EBADF, CALL, "not open for writing")
    # rw_verify_area(): the range must not run past the largest loff_t.
    if pos + count > (1 << 63) - 1:
        raise kernel_error(errno.EINVAL, CALL, "offset plus count overflows")
    count = min(count, MAX_RW_COUNT)
    if not count:
        return 0
    # generic_write_check_limits(): at or past s_maxbytes nothing is written, below it the count is cut.
    limit = max_file_bytes(mm, file)
    if pos >= limit:
        raise kernel_error(errno.EFBIG, CALL, "at or past the largest file size")
    count = min(count, limit - pos)
    inode = file.inode
    if inode.is_shmem:
        inode.cache.add(pos >> C.PAGE_SHIFT, ((pos + count - 1) >> C.PAGE_SHIFT) + 1)
    inode.size = max(inode.size, pos + count)
    return count
