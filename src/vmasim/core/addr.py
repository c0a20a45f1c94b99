"""Address arithmetic as the kernel does it on unsigned 64-bit values."""

from __future__ import annotations

from vmasim.constants import MASK64, PAGE_SIZE


def page_align(length: int) -> int:
    """Like PAGE_ALIGN() on an unsigned long: round up, wrapping to 0 at the top of 64 bits."""
    return (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & MASK64
