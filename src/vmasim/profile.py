"""Target profiles: a named, JSON-serialisable description of a machine, for the model to model.

A :class:`Profile` is a :class:`~vmasim.core.target.Target` (what the kernel
and the machine do) plus a :class:`ProcessLayout` (where the kernel runner's
process has its executable, heap, vDSO and walls, which decides where
programs' hint-less mappings land).  Profiles are stored as JSON: the built-in
ones ship in ``vmasim/profiles/``; ``vmasim probe`` writes one for the host.

A profile is named with ``--target`` on the command line and ``target=`` in
the API: ``default`` (the built-in default), another built-in name, or a path
to a JSON file.  The command line also takes ``host``: the probed profile of
this machine (:func:`vmasim.probe.resolve_target`; in Python,
``AddressSpace(target=vmasim.probe.probe_host())``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vmasim.core.target import THP_ANON_MODES, THP_SHMEM_MODES, Target

#: The profile used when none is named: the machine the project was first built on.
DEFAULT_PROFILE = "linux-6.18.44-pku"
FORMAT = "vmasim-profile/1"


class ProfileError(ValueError):
    """A profile that cannot be found or does not describe a machine correctly."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecialMapping:
    """A mapping the kernel installs itself (vvar, vDSO): its name, range and VmFlags mnemonics."""

    name: str
    start: int
    end: int
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessLayout:
    """The process programs run in on the kernel runner, as the model reproduces it.

    With ASLR off, the runner's static executable (and the heap its libc
    used for TLS) occupies ``[image_start, image_end)``; the program's heap
    starts at ``initial_break``; the vDSO's special mappings lie right below
    ``mmap_base``.  ``baseline_map_count`` is how many VMAs the process has
    before the first op, without and with walls (the walls the runner builds
    above the window count too).
    """

    image_start: int = 0x400000
    image_end: int = 0xC08000
    initial_break: int = 0xC09000
    mmap_base: int = 0x7FFFF7FFF000
    stack_rlimit: int = 8 << 20
    special_mappings: tuple[SpecialMapping, ...] = ()
    baseline_map_count: int = 11
    baseline_map_count_walls: int = 13

    @property
    def walls_top(self) -> int:
        """Where the walls above the window stop: the lowest special mapping (or mmap_base)."""
        return min((m.start for m in self.special_mappings), default=self.mmap_base)


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """A named machine: what the model models (``target``) and the runner's process (``layout``)."""

    name: str
    description: str = ""
    target: Target = field(default_factory=Target)
    layout: ProcessLayout = field(default_factory=ProcessLayout)

    @property
    def release(self) -> str:
        """The kernel release the profile describes."""
        return self.target.kernel.release

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready data (integers that are addresses or masks as hex strings)."""
        return {"format": FORMAT, **_to_json(self)}

    def to_json(self) -> str:
        """The profile as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def with_name(self, name: str, description: str | None = None) -> Profile:
        """The same machine under another name."""
        text = self.description if description is None else description
        return dataclasses.replace(self, name=name, description=text)


# --- JSON conversion -------------------------------------------------------------------

#: Fields written as hex strings (addresses, sizes and masks read better that way).
_HEX_FIELDS = frozenset(
    {
        "image_start", "image_end", "initial_break", "mmap_base", "start", "end", "lsm_mmap_min_addr",
        "uffd_features", "shmem_mthp_orders", "regular_max_bytes", "shmem_max_bytes",
    }
)
#: Allowed values of string fields that are enumerations.
_CHOICES: dict[str, tuple[str, ...]] = {"thp_anon": THP_ANON_MODES, "thp_shmem": THP_SHMEM_MODES,
                                        "tmpfs_huge": THP_SHMEM_MODES}


def _to_json(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            out[f.name] = hex(value) if f.name in _HEX_FIELDS and isinstance(value, int) else _to_json(value)
        return out
    if isinstance(obj, tuple):
        return [_to_json(v) for v in obj]
    return obj


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ProfileError(f"{where}: expected a list, got {value!r}")
        (item, _ellipsis) = typing.get_args(hint)
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _from_json(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ProfileError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                raise ProfileError(f"{where}: expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProfileError(f"{where}: expected a non-negative integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ProfileError(f"{where}: expected a string, got {value!r}")
        choices = _CHOICES.get(where.rsplit(".", 1)[-1])
        if choices is not None and value not in choices:
            raise ProfileError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
        return value
    raise ProfileError(f"{where}: unsupported field type {hint!r}")  # pragma: no cover - a programming error


def _from_json(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected an object, got {data!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    kwargs = {key: _convert(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ProfileError(f"{where}: {exc}") from None


def profile_from_dict(data: Any, *, origin: str = "profile") -> Profile:
    """A profile from JSON-ready data; raises :class:`ProfileError` naming the field at fault.

    Every field but ``name`` may be left out (the default profile's value is
    then used); unknown fields are errors.
    """
    if not isinstance(data, dict):
        raise ProfileError(f"{origin}: a profile is a JSON object")
    data = dict(data)
    fmt = data.pop("format", FORMAT)
    if fmt != FORMAT:
        raise ProfileError(f"{origin}: expected format {FORMAT!r}, got {fmt!r}")
    profile: Profile = _from_json(Profile, data, origin)
    return profile


# --- finding profiles ------------------------------------------------------------------


@functools.cache
def builtin_profiles() -> dict[str, Profile]:
    """The profiles shipped with vmasim, by name."""
    out: dict[str, Profile] = {}
    folder = resources.files("vmasim").joinpath("profiles")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            profile = profile_from_dict(json.loads(entry.read_text(encoding="utf-8")), origin=entry.name)
            out[profile.name] = profile
    return out


def load_profile_file(path: str | Path) -> Profile:
    """Read a profile from a JSON file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not valid JSON: {exc}") from None
    return profile_from_dict(data, origin=str(path))


def resolve_profile(spec: str | Profile | Target | None = None) -> Profile:
    """The profile ``spec`` names: None or ``default``, a built-in name, or a JSON file (or it is one)."""
    if isinstance(spec, Profile):
        return spec
    if isinstance(spec, Target):
        return Profile(name="custom", description="a target given directly", target=spec)
    builtins = builtin_profiles()
    if spec is None or spec == "default":
        return builtins[DEFAULT_PROFILE]
    if spec == "host":
        raise ProfileError("'host' is probed by the kernel runner: use vmasim.probe.probe_host() "
                           "(vmasim.probe.resolve_target() also takes 'host')")
    if spec in builtins:
        return builtins[spec]
    if spec.endswith(".json") or "/" in spec:
        return load_profile_file(spec)
    known = ", ".join(["default", *builtins])
    raise ProfileError(f"unknown profile {spec!r} (known: {known}, or a path to a .json file)")


def default_profile() -> Profile:
    """The built-in default profile."""
    return builtin_profiles()[DEFAULT_PROFILE]
