"""The C types of system-call arguments: how many bits of a 64-bit register the kernel reads.

A system call's argument arrives in a 64-bit register; a parameter declared
``int`` or ``unsigned int`` keeps only the low 32 bits (sign-extended for
``int``).  Both the program format (each field's kind knows its C type, see
:mod:`vmasim.program.values`) and the Python API (which narrows its
arguments as the kernel does) use this one definition.
"""

from __future__ import annotations

import enum


class CType(enum.Enum):
    """The C type of a system-call argument: how many bits the kernel reads, and whether signed."""

    U64 = ("unsigned long", 64, False)
    I64 = ("long", 64, True)
    INT = ("int", 32, True)
    U32 = ("unsigned int", 32, False)

    def __init__(self, c_name: str, bits: int, signed: bool) -> None:
        self.c_name = c_name
        self.bits = bits
        self.signed = signed

    def cast(self, value: int) -> int:
        """``value`` (a register's contents) as the kernel reads it: truncated to the width, sign-extended."""
        value &= (1 << self.bits) - 1
        if self.signed and value >> (self.bits - 1):
            value -= 1 << self.bits
        return value
