"""Exceptions of the kernel runner."""

from __future__ import annotations


class KernelRunError(Exception):
    """The executor could not produce a report for a program.

    Raised (or, in batch mode, returned in the program's place) when the
    executor times out, crashes, prints something it should not, or cannot be
    built at all.  A system call that fails is *not* an error: it is a result.
    """


class BuildError(KernelRunError):
    """The executor could not be compiled (wrong platform, no compiler, or the compiler failed)."""
