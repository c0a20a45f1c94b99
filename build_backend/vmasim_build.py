"""setuptools' build backend, asking for mypy (mypyc) as a build requirement only for ``VMASIM_MYPYC=1`` builds."""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the backend's other hooks, unchanged)


def _compiled() -> bool:
    return os.environ.get("VMASIM_MYPYC", "") not in ("", "0")


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements; for the compiled build, mypy (setuptools would run setup.py, which needs it)."""
    if _compiled():
        return ["mypy>=1.10"]
    return list(_setuptools.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    """As :func:`get_requires_for_build_wheel`, for editable installs."""
    if _compiled():
        return ["mypy>=1.10"]
    return list(_setuptools.get_requires_for_build_editable(config_settings))
