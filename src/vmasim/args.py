"""The arguments of the Python API, checked and narrowed before anything happens.

Each :class:`~vmasim.api.AddressSpace` method declares, with :func:`checked`,
what each of its parameters is: ``@checked(addr=U64, length=U64, advice=INT)``.
Before the method body runs, every argument given is checked against its
spec and converted, so that a wrong Python type or an impossible value raises
``TypeError`` or ``ValueError`` naming the method and the argument, and
leaves the address space exactly as it was::

    mmap(): 'length' must be an int, not str
    brk(): 'addr' must fit in a 64-bit register (-2**63 .. 2**64-1), got an int of 71 bits

An integer argument of a system call accepts what a C caller could put in
the register: any ``int`` from ``-2**63`` to ``2**64-1`` (``bool`` is not an
int here), narrowed to the C type the kernel reads
(:class:`~vmasim.ctype.CType`): ``madvise(a, n, 2**32 + 4)`` is
MADV_DONTNEED, as on the kernel, and a length of ``-1`` is ``2**64-1``.
What the kernel then makes of the value (EINVAL, EBADF, ...) is the method's
business and raises ``OSError``.  ``None`` is accepted only where a spec says
so (``nullable``).  Defaults are not checked: they are the method's own.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from vmasim.ctype import REGISTER_MAX, REGISTER_MIN, CType

P = ParamSpec("P")
R = TypeVar("R")


def type_name(value: Any) -> str:
    """The name of ``value``'s type, as Python's own TypeErrors give it."""
    return "None" if value is None else type(value).__name__


def show_int(value: int) -> str:
    """An int for an error message: its digits when short, else its size (a huge int has no cheap decimal form)."""
    return str(value) if abs(value) < 1 << 128 else f"an int of {value.bit_length()} bits"


class Arg:
    """How one argument is checked and converted; subclasses define the kinds of argument."""

    #: Whether None is accepted (and passed through unchanged).
    nullable: bool = False

    def expected(self) -> str:
        """What the argument must be, for TypeError messages (``"an int"``)."""
        raise NotImplementedError

    def convert(self, call: str, name: str, value: Any) -> Any:
        """The value the method receives; TypeError or ValueError naming ``call`` and ``name``."""
        raise NotImplementedError

    def bind(self, call: str, name: str) -> Callable[[Any], Any]:
        """The converter of one parameter (subclasses may add a fast path for the common case)."""
        convert = self.convert
        return lambda value: convert(call, name, value)

    def type_error(self, call: str, name: str, value: Any) -> TypeError:
        """The TypeError for a value of the wrong type."""
        what = self.expected() + (" or None" if self.nullable else "")
        return TypeError(f"{call}(): {name!r} must be {what}, not {type_name(value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class CInt(Arg):
    """An integer system-call argument of C type ``ctype``: any int a 64-bit register holds, narrowed to it."""

    def __init__(self, ctype: CType, *, nullable: bool = False) -> None:
        self.ctype = ctype
        self.nullable = nullable

    def expected(self) -> str:
        """An int."""
        return "an int"

    def convert(self, call: str, name: str, value: Any) -> int | None:
        """The value as the kernel reads the register (``ctype.cast``)."""
        if value is None and self.nullable:
            return None
        if not _is_int(value):
            raise self.type_error(call, name, value)
        if not REGISTER_MIN <= value <= REGISTER_MAX:
            raise ValueError(f"{call}(): {name!r} must fit in a 64-bit register (-2**63 .. 2**64-1), "
                             f"got {show_int(value)}")
        return self.ctype.cast(int(value))

    @property
    def fast_top(self) -> int:
        """The largest int the C type holds as it is: from 0 up to it, converting changes nothing."""
        return self.ctype.sign_bit - 1 if self.ctype.signed else self.ctype.mask


class Bounded(Arg):
    """An int setting (not a system-call argument) that must lie in ``[low, high]``, a multiple of ``step``."""

    def __init__(self, low: int, high: int, *, step: int = 1, nullable: bool = False) -> None:
        self.low = low
        self.high = high
        self.step = step
        self.nullable = nullable

    def expected(self) -> str:
        """An int."""
        return "an int"

    def convert(self, call: str, name: str, value: Any) -> int | None:
        """The value, unchanged."""
        if value is None and self.nullable:
            return None
        if not _is_int(value):
            raise self.type_error(call, name, value)
        if not self.low <= value <= self.high or value % self.step:
            step = f", a multiple of {self.step:#x}" if self.step > 1 else ""
            raise ValueError(f"{call}(): {name!r} must be {self.low:#x} .. {self.high:#x}{step}, "
                             f"got {show_int(value)}")
        return int(value)


class Bool(Arg):
    """``True`` or ``False`` (no other value stands for one)."""

    def expected(self) -> str:
        """A bool."""
        return "a bool"

    def convert(self, call: str, name: str, value: Any) -> bool:
        """The bool."""
        if not isinstance(value, bool):
            raise self.type_error(call, name, value)
        return value


class CString(Arg):
    """A string a C caller could pass: no NUL, and encodable as UTF-8 (``\\udcXX`` escapes stand for bytes)."""

    def __init__(self, *, nullable: bool = False) -> None:
        self.nullable = nullable

    def expected(self) -> str:
        """A str."""
        return "a str"

    def convert(self, call: str, name: str, value: Any) -> str | None:
        """The string, unchanged."""
        if value is None and self.nullable:
            return None
        if not isinstance(value, str):
            raise self.type_error(call, name, value)
        if "\0" in value:
            raise ValueError(f"{call}(): {name!r} must not contain NUL (a C string ends there)")
        try:
            value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise ValueError(f"{call}(): {name!r} must be encodable as UTF-8 (it has a lone surrogate)") from None
        return str(value)


class Instance(Arg):
    """An instance of one of ``types`` (or None when nullable), passed unchanged."""

    def __init__(self, *types: type, nullable: bool = False) -> None:
        self.types = types
        self.nullable = nullable

    def expected(self) -> str:
        """The accepted type names."""
        names = [t.__name__ for t in self.types]
        return "a " + (" or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1])

    def convert(self, call: str, name: str, value: Any) -> Any:
        """The value, unchanged."""
        if value is None and self.nullable:
            return None
        if not isinstance(value, self.types):
            raise self.type_error(call, name, value)
        return value


class Choice(Arg):
    """One of a few strings (or None when nullable), passed unchanged."""

    def __init__(self, *values: str, nullable: bool = False) -> None:
        self.values = values
        self.nullable = nullable

    def expected(self) -> str:
        """A str."""
        return "a str"

    def convert(self, call: str, name: str, value: Any) -> str | None:
        """The value, unchanged."""
        if value is None and self.nullable:
            return None
        if not isinstance(value, str):
            raise self.type_error(call, name, value)
        if value not in self.values:
            raise ValueError(f"{call}(): {name!r} must be one of {', '.join(map(repr, self.values))}, "
                             f"got {value[:40]!r}")
        return value


class AddressRanges(Arg):
    """A sequence of ``(addr, length)`` int pairs (an iovec array), each narrowed to unsigned long.

    Its length is the system call's business (process_madvise: EINVAL past UIO_MAXIOV), not the API's.
    """

    def expected(self) -> str:
        """A list of pairs."""
        return "a list of (addr, length) pairs"

    def convert(self, call: str, name: str, value: Any) -> list[tuple[int, int]]:
        """The pairs as a list of tuples of narrowed ints."""
        if not isinstance(value, (list, tuple)):
            raise self.type_error(call, name, value)
        out: list[tuple[int, int]] = []
        for i, pair in enumerate(value):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise TypeError(f"{call}(): {name}[{i}] must be an (addr, length) pair, not {type_name(pair)}")
            addr = U64.convert(call, f"{name}[{i}][0]", pair[0])
            length = U64.convert(call, f"{name}[{i}][1]", pair[1])
            assert addr is not None and length is not None
            out.append((addr, length))
        return out


#: The C types of system-call arguments, as specs.
U64 = CInt(CType.U64)
I64 = CInt(CType.I64)
INT = CInt(CType.INT)
U32 = CInt(CType.U32)
#: A file descriptor: the kernel reads ``unsigned int fd`` (fget() takes one even where the call passes a long).
FD = U32


def checked(*, call: str | None = None, **specs: Arg) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Check and convert a method's arguments by ``specs`` (parameter name -> :class:`Arg`) before it runs.

    Every parameter after ``self`` must have a spec.  ``call`` is the name
    errors give (default: the method's).  Arguments are converted in the
    order of the parameters; arity errors are Python's own TypeError.
    Defaults are passed through the converters too (they are valid values).
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        params = list(inspect.signature(fn).parameters.values())[1:]
        missing = [p.name for p in params if p.name not in specs]
        unknown = [n for n in specs if n not in {p.name for p in params}]
        if missing or unknown:
            raise TypeError(f"@checked {fn.__qualname__}: no spec for {missing}, specs for no parameter {unknown}")
        wrapper = _wrapper(fn, params, specs, call or fn.__name__)
        # The specs stay readable on the method (documentation, tests): ``AddressSpace.mmap.__checked__``.
        wrapper.__checked__ = dict(specs)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _wrapper(fn: Callable[P, R], params: list[inspect.Parameter], specs: dict[str, Arg], call: str) -> Callable[P, R]:
    """A function with ``fn``'s own parameters that converts each argument, then calls ``fn``.

    It is written out as source and compiled (as :mod:`dataclasses` writes
    ``__init__``), so that a call costs a few comparisons per argument rather
    than a generic binding of ``*args`` and ``**kwargs``: a plain int the C
    type holds as it is (the usual case) is checked inline, anything else
    goes to the spec's converter.
    """
    namespace: dict[str, Any] = {"_fn": fn}
    signature, body, passed = ["self"], [], ["self"]
    keyword_only = False
    for p in params:
        namespace[f"_c_{p.name}"] = specs[p.name].bind(call, p.name)
        if p.kind is p.KEYWORD_ONLY and not keyword_only:
            signature.append("*")
            keyword_only = True
        if p.default is p.empty:
            signature.append(p.name)
        else:
            namespace[f"_d_{p.name}"] = p.default
            signature.append(f"{p.name}=_d_{p.name}")
        spec = specs[p.name]
        if isinstance(spec, CInt):
            namespace[f"_t_{p.name}"] = spec.fast_top
            body.append(f"    if not (type({p.name}) is int and 0 <= {p.name} <= _t_{p.name}):\n"
                        f"        {p.name} = _c_{p.name}({p.name})")
        else:
            body.append(f"    {p.name} = _c_{p.name}({p.name})")
        passed.append(f"{p.name}={p.name}" if keyword_only else p.name)
    source = (f"def {fn.__name__}({', '.join(signature)}):\n" + "\n".join(body)
              + f"\n    return _fn({', '.join(passed)})\n")
    exec(source, namespace)  # the source is built above from the parameter names only
    wrapper: Callable[P, R] = namespace[fn.__name__]
    functools.update_wrapper(wrapper, fn)
    # Python's own arity errors name the method as its qualified name says.
    wrapper.__code__ = wrapper.__code__.replace(co_qualname=fn.__qualname__)
    return wrapper
