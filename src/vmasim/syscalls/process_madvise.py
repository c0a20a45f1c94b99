"""process_madvise(2) on the caller's own address space: mm/madvise.c's vector_madvise().

Each range is one madvise(); the call stops at the first that fails and
returns the bytes of the ranges advised before it (or, when it was the first,
its error).  On its own process every advice madvise() takes is allowed
(process_madvise_remote_valid() restricts only other processes).  The
vector is read like import_iovec(): at most UIO_MAXIOV ranges, each inside
the user address space (access_ok(), else EFAULT for the whole call), their
total cut at MAX_RW_COUNT.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from vmasim import constants as C
from vmasim.core.errors import kernel_error
from vmasim.core.mm import MmStruct
from vmasim.syscalls.madvise import sys_madvise

CALL = "process_madvise"
#: UIO_MAXIOV: the most ranges one call takes.
UIO_MAXIOV = 1024
#: MAX_RW_COUNT: INT_MAX rounded down to a page, the most bytes one vector may cover.
MAX_RW_COUNT = 0x7FFFF000


def import_ranges(mm: MmStruct, ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Like import_iovec(): the ranges as the kernel takes them, lengths cut so that they total MAX_RW_COUNT."""
    if len(ranges) > UIO_MAXIOV:
        raise kernel_error(errno.EINVAL, CALL, "more than UIO_MAXIOV ranges")
    vector = [(base & C.MASK64, length & C.MASK64) for base, length in ranges]
    # The whole vector is copied in first (copy_iovec_from_user(), which refuses a negative length),
    # and only then is each range checked against the address space.
    if any(length >> 63 for _, length in vector):
        raise kernel_error(errno.EINVAL, CALL, "a negative length")
    out: list[tuple[int, int]] = []
    total = 0
    for base, length in vector:
        end = base + length
        if end > mm.task_size or end >= 1 << 64:
            raise kernel_error(errno.EFAULT, CALL, "a range outside the user address space")
        length = min(length, MAX_RW_COUNT - total)
        total += length
        out.append((base, length))
    return out


def sys_process_madvise(mm: MmStruct, ranges: Sequence[tuple[int, int]], advice: int, flags: int = 0) -> int:
    """process_madvise(2) with a pidfd of the calling process; returns the bytes advised."""
    if flags:
        raise kernel_error(errno.EINVAL, CALL, "no flags are defined")
    iov = import_ranges(mm, ranges)
    remaining = sum(length for _, length in iov)
    total = remaining
    err: OSError | None = None
    i = 0
    # The iterator visits the range it stands on (even an empty first one, which is still checked),
    # and advancing past a range skips every empty range after it (iov_iter_advance()).
    while remaining and i < len(iov):
        base, length = iov[i]
        try:
            sys_madvise(mm, base, length, advice)
        except OSError as exc:
            err = exc
            break
        remaining -= length
        i += 1
        while i < len(iov) and not iov[i][1]:
            i += 1
    done = total - remaining
    if not done and err is not None:
        raise err
    return done
