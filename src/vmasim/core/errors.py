"""Failures as the kernel reports them: ``OSError`` carrying the errno, like Python's ``os`` module."""

from __future__ import annotations

import errno
import os


def kernel_error(code: int, call: str, detail: str = "") -> OSError:
    """An ``OSError`` for ``code`` whose message names the failing call (and why, when known)."""
    return OSError(code, f"{call}: {os.strerror(code)}" + (f" ({detail})" if detail else ""))


class SplitRefused(OSError):
    """split_vma() refused: map_count is already at max_map_count (ENOMEM)."""

    def __init__(self, detail: str = "map_count would exceed max_map_count") -> None:
        super().__init__(errno.ENOMEM, f"split_vma: {os.strerror(errno.ENOMEM)} ({detail})")


class WouldBlock(Exception):
    """The call would wait forever for a userfaultfd handler (the kernel runner reports these as errors too)."""
