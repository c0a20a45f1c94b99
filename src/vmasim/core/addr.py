"""Address arithmetic as the kernel does it on unsigned 64-bit values."""

from __future__ import annotations

import errno

from vmasim.constants import MASK64, PAGE_SIZE
from vmasim.core.errors import kernel_error


def page_align(length: int) -> int:
    """Like PAGE_ALIGN() on an unsigned long: round up, wrapping to 0 at the top of 64 bits."""
    return (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & MASK64


def checked_range(call: str, start: int, length: int) -> int:
    """The end of ``[start, start+length)`` after the checks madvise(), mseal() and prctl(PR_SET_VMA_ANON_NAME)
    share (like madvise_checks() and mseal's do_mseal()): a page-aligned start, a length whose PAGE_ALIGN()
    does not wrap to 0, and an end inside 64 bits; EINVAL otherwise.  ``end == start`` means nothing to do."""
    if start & (PAGE_SIZE - 1):
        raise kernel_error(errno.EINVAL, call, "unaligned start")
    aligned = page_align(length)
    if length and not aligned:
        raise kernel_error(errno.EINVAL, call, "length wraps")
    end = start + aligned
    if end > MASK64:
        raise kernel_error(errno.EINVAL, call, "range wraps")
    return end
