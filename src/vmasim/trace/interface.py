"""What a trace is asked to do (:class:`Options`) and what it gives back (:class:`TraceResult`)."""

from __future__ import annotations

from dataclasses import dataclass

from vmasim.trace.mirror import Image


@dataclass(slots=True)
class Options:
    """How to trace: when to compare (``"every"``, ``"end"`` or every N calls), with ASLR or not, how long to poll."""

    check: str = "end"
    no_aslr: bool = False
    #: How long the tracer polls for the next stop before sleeping (seconds; see ptrace.wait_any), where it
    #: has a CPU to itself: 0.3 ms made programs of a few milliseconds 20-30% faster to trace on the 2-vCPU
    #: machine measured, and changed nothing for longer ones.
    spin: float = 0.0003
    stdout: int | None = None  # a descriptor for the command's standard output (None: the tracer's)

    @property
    def every(self) -> int:
        """Compare after this many mirrored calls of an address space (0: only at its end)."""
        if self.check == "every":
            return 1
        if self.check == "end":
            return 0
        return int(self.check)


@dataclass(slots=True)
class TraceResult:
    """What a trace produced: every address space followed, the command's exit status and timing."""

    argv: list[str]
    images: list[Image]
    exit_status: int | None
    wall: float
    error: str | None = None
    root: int = 0

    @property
    def calls(self) -> int:
        """Mirrored calls over every traced process."""
        return sum(i.stats.calls for i in self.images)

    @property
    def agreed(self) -> int:
        """Calls after which the model's layout matched the kernel's exactly."""
        return sum(i.stats.agreed for i in self.images)
