"""setuptools' build backend, asking for mypy (mypyc) as a build requirement only for ``VMASIM_MYPYC=1`` builds."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the backend's other hooks, unchanged)


def _compiled() -> bool:
    return os.environ.get("VMASIM_MYPYC", "") not in ("", "0")


def _compiled_requires() -> list[str]:
    # mypyc type-checks every module the compiled ones reach, and through the package's __init__ (the API,
    # its explain and report) they reach the program format and pydantic: the dependencies must be there.
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    return ["mypy>=1.10", *project["dependencies"]]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements; for the compiled build, mypy (setuptools would run setup.py, which needs it)."""
    if _compiled():
        return _compiled_requires()
    return list(_setuptools.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    """As :func:`get_requires_for_build_wheel`, for editable installs."""
    if _compiled():
        return _compiled_requires()
    return list(_setuptools.get_requires_for_build_editable(config_settings))
