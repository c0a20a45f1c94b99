"""Exceptions of the kernel runner."""

from __future__ import annotations

from typing import Any


class KernelRunError(Exception):
    """The executor could not produce a report for a program.

    Raised (or, in batch mode, returned in the program's place) when the
    program times out, crashes, is stopped by a limit, when the executor prints
    something it should not, or when it cannot be built at all.  A system call
    that fails is *not* an error: it is a result.

    Attributes, for callers that want more than the message:

    * ``kind`` -- why: ``"timeout"``, ``"crash"`` (a process of the program
      died), ``"memory"`` (the memory cap stopped it), ``"tasks"`` (the task
      cap stopped it), ``"uffd"`` (an op would wait forever for a userfaultfd
      handler), ``"rejected"`` (the program exceeds a limit of the executor),
      ``"build"`` or ``"executor"`` (the runner itself failed).
    * ``op_path`` -- the op that was running when the program stopped (``"3"``,
      ``"5.1"`` for op 1 of the child of fork op 5), or None when no op is to
      blame (or the program stopped after its last op, while reporting).
    * ``partial`` -- what the program's processes reported before it stopped,
      or None: a report in the contract's shape in which every process that
      did not finish has ``results`` for the ops it finished, the ``children``
      that finished before it stopped, no ``vmas`` or ``heap``, and a
      ``stopped`` string saying why.
    """

    def __init__(
        self, message: str, *, kind: str = "executor", op_path: str | None = None, partial: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.op_path = op_path
        self.partial = partial


class BuildError(KernelRunError):
    """The executor could not be compiled (wrong platform, no compiler, or the compiler failed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="build")
