"""Programs: the JSON language shared by the model, the kernel runner and the CLI."""

from vmasim.program.parse import (
    FORMAT,
    AddrRef,
    Op,
    Program,
    ProgramError,
    load_program,
    parse_program,
)

__all__ = ["FORMAT", "AddrRef", "Op", "Program", "ProgramError", "load_program", "parse_program"]
