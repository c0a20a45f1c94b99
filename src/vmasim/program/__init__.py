"""Programs: the JSON language shared by the model, the kernel runner and the CLI.

- :mod:`~vmasim.program.values`: the kinds of value a field holds.
- :mod:`~vmasim.program.ops`: every op, defined once.
- :mod:`~vmasim.program.parse`: documents to validated :class:`Program` values.
- :mod:`~vmasim.program.model`: running programs on the model.
- :mod:`~vmasim.program.reference`: the format reference and JSON Schema, generated from the definitions.
"""

from vmasim.program.parse import (
    FORMAT,
    Op,
    Program,
    ProgramError,
    load_program,
    parse_program,
    walk_ops,
)
from vmasim.program.values import AddrRef

__all__ = ["FORMAT", "AddrRef", "Op", "Program", "ProgramError", "load_program", "parse_program", "walk_ops"]
