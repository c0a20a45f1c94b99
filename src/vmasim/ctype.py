"""The C types of system-call arguments, and how the kernel reads a register as one of them.

Every argument reaches the kernel in a 64-bit register; the system call's
prototype decides how much of it counts (``int advice`` reads the low 32 bits,
sign-extended).  The API, the program parser and the model narrow values with
:meth:`CType.cast`, so that one rule decides what ``madvise(a, n, 2**32 + 4)``
means everywhere: MADV_DONTNEED, as on the kernel.
"""

from __future__ import annotations

import enum

from vmasim.constants import MASK64 as MASK64

#: The smallest and largest Python ints a 64-bit register can hold (as a signed or an unsigned number).
REGISTER_MIN = -(1 << 63)
REGISTER_MAX = MASK64


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
        self.mask = (1 << bits) - 1
        self.sign_bit = 1 << (bits - 1) if signed else 0

    def cast(self, value: int) -> int:
        """``value`` (a register's contents) as the kernel reads it: truncated to the width, sign-extended."""
        value &= self.mask
        if value & self.sign_bit:
            value -= self.mask + 1
        return value


def fits_register(value: int) -> bool:
    """Whether a 64-bit register can hold ``value`` (as a signed or an unsigned number)."""
    return REGISTER_MIN <= value <= REGISTER_MAX
